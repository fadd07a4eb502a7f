"""The forkaudit command line: one verb per module under forkaudit/commands."""
import argparse
import sys

from .commands import doctor, imports, report, run

MESSAGE_CHARS = 300


class Parser(argparse.ArgumentParser):
    """argparse, but an error never echoes a huge argument whole (subcommands use it too)."""

    def error(self, message):
        message = " ".join(message.split())
        if len(message) > MESSAGE_CHARS:
            message = "%s... (%d characters)" % (message[:MESSAGE_CHARS], len(message))
        super().error(message)


def parser():
    ap = Parser(prog="forkaudit", description="Explain fork-after-threads deadlocks.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    for module in (run, report, imports, doctor):
        module.add_parser(sub)
    return ap


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ap = parser()
    args = ap.parse_args(argv)
    if not args.command:
        ap.print_help(sys.stderr)
        return 2
    return args.func(args)
