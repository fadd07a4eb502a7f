"""forkaudit run [--policy P] [--json PATH] [--scan S] [--scan-every-fork] [--show-keys] [--watchdog SECONDS] -- CMD...

Runs CMD with forkaudit active in every Python process it starts (through
the FORKAUDIT* environment variables and the installed .pth hook), and exits
with CMD's exit status.
"""
import argparse
import os
import signal
import subprocess
import sys

from ..errors import SettingsError
from ..settings import POLICIES, SCANS, check_json_path, parse_watchdog, shown


def _choice(name, values):
    """An argparse type for one of `values` that echoes a bad value shortened (argparse's
    own `choices` would print a 100 KB value whole)."""
    def check(value):
        v = value.strip().lower()
        if v not in values:
            raise argparse.ArgumentTypeError("%s must be one of %s, not %s" % (name, ", ".join(values), shown(value)))
        return v
    check.__name__ = name
    return check


def add_parser(sub):
    p = sub.add_parser("run", help="run a command with every fork audited",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("--policy", type=_choice("policy", POLICIES), default="warn",
                   metavar="{%s}" % ",".join(POLICIES),
                   help="warn: report on the child's stderr; record: JSON only; "
                        "abort: a child stuck on an inherited lock exits with status 86; "
                        "abort-now: a child with a hazard exits 86 at the fork; raise: os.fork() refuses")
    p.add_argument("--json", metavar="PATH", help="append one JSON line per audited fork to PATH")
    p.add_argument("--scan", type=_choice("scan", SCANS), default="full", metavar="{%s}" % ",".join(SCANS),
                   help="memory scanned for C locks: full, libs (libraries' data only) or off")
    p.add_argument("--scan-every-fork", action="store_true",
                   help="scan in every child, even where no other thread has run since a fork whose "
                        "scan found nothing of theirs held (default: such a child reuses that finding)")
    p.add_argument("--show-keys", action="store_true",
                   help="show dict keys on object paths whole (default: keys that are not short "
                        "identifier-like strings or numbers appear as [<str #1a2b3c>])")
    p.add_argument("--watchdog", metavar="SECONDS", default=None,
                   help="report a fork that has not returned, or a child blocked on an inherited "
                        "lock, after SECONDS (default 5; 0: off)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD", help="the command, after --")
    p.set_defaults(func=main)
    return p


def environment(args):
    env = dict(os.environ)
    env["FORKAUDIT"] = args.policy
    env["FORKAUDIT_SCAN"] = args.scan
    if args.scan_every_fork:
        env["FORKAUDIT_SCAN_EVERY_FORK"] = "1"
    if args.show_keys:
        env["FORKAUDIT_SHOW_KEYS"] = "1"
    else:
        env.pop("FORKAUDIT_SHOW_KEYS", None)
    if args.watchdog is not None:
        parse_watchdog(args.watchdog, "--watchdog")
        env["FORKAUDIT_WATCHDOG"] = args.watchdog.strip()
    if args.json is not None:  # an empty --json "" is refused, not taken as "no report"
        env["FORKAUDIT_JSON"] = check_json_path(args.json)
    else:
        env.pop("FORKAUDIT_JSON", None)
    return env


def main(args):
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        print("forkaudit run: no command given (forkaudit run [options] -- CMD...)", file=sys.stderr)
        return 2
    try:
        env = environment(args)
    except SettingsError as e:
        print("forkaudit run: %s" % e, file=sys.stderr)
        return 2
    try:
        proc = subprocess.Popen(cmd, env=env)
    except OSError as e:
        print("forkaudit run: cannot run %s: %s" % (shown(cmd[0]), e.strerror or e), file=sys.stderr)
        return 127
    forwarded = {}

    def forward(signum, frame):
        proc.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        forwarded[sig] = signal.signal(sig, forward)
    try:
        status = proc.wait()
    finally:
        for sig, old in forwarded.items():
            signal.signal(sig, old)
    return 128 - status if status < 0 else status
