"""forkaudit report PATH [--pid N] [--all]

Renders a JSON-lines report file as the human report: every record that has
hazards (or every record, with --all)."""
import json
import sys

from .. import render


def add_parser(sub):
    p = sub.add_parser("report", help="render a JSON-lines report file as text",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("path")
    p.add_argument("--pid", type=int, help="only the record of this child pid")
    p.add_argument("--all", action="store_true", help="also records without hazards (one line each)")
    p.set_defaults(func=main)
    return p


def read_records(path):
    records, bad = [], 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if isinstance(rec, dict) and rec.get("forkaudit") == 1:
                records.append(rec)
    return records, bad


def main(args):
    try:
        records, bad = read_records(args.path)
    except OSError as e:
        print("forkaudit report: cannot read %s: %s" % (args.path, e.strerror or e), file=sys.stderr)
        return 2
    if args.pid is not None:
        records = [r for r in records if r.get("pid") == args.pid]
    shown = 0
    out = sys.stdout
    for rec in records:
        if rec.get("hazards"):
            if shown:
                out.write("\n")
            out.write(render.text(rec))
            shown += 1
        elif args.all:
            out.write("%s\n" % render.summary(rec))
    hazardous = sum(1 for r in records if r.get("hazards"))
    out.write("%d record(s), %d with hazards%s\n" % (len(records), hazardous,
                                                   ", %d unreadable line(s)" % bad if bad else ""))
    return 0
