"""forkaudit imports [--strict] [--json PATH] [--repeat N] [--timeout S] MODULE...

Imports the modules one at a time, in the order given, in a fresh interpreter
with forkaudit active, and reports what each import leaves behind that makes a
later fork unsafe: threads started, threads Python never saw, at-fork hooks
registered, and a trial fork's own audit record. Exit status: 0 clean, 1
fork-unsafe, 3 fork-risky (with --strict; otherwise 0 and a warning line), 2
usage or import error.

The import record (--json, one JSON line per module):

  forkaudit_imports  1 (the version of this record)
  module, python, pid, import_seconds, already_imported (it was in sys.modules
                     before its turn: its import-time effects were not observed)
  verdict            "unsafe" | "risky" | "clean" | "error";  error: "Type: message" or null
  threads            [{name, target, daemon, native_id, alive, started_at: FRAME, stack: [FRAME]}]
                     threads started by threading during the import (stack outermost first)
  native_threads     [{native_id, name (kernel comm), library, function, pc_library, how}]
                     threads that appeared during the import and that Python never saw
  at_fork_hooks      [{before, after_in_parent, after_in_child (qualified names), registered_at}]
  at_fork_hooks_listed  false when hooks could not be observed for this module
  trials             [{pid, seconds, came_back, exit_code, record, earlier_owners, owner_modules}]
                     record: the child's forkaudit record, unchanged (report-format.md), or null;
                     earlier_owners: native ids of hazard owners started by an earlier import
                     (such hazards do not count against this module)
"""
import json
import os
import subprocess
import sys
import tempfile
import time

from .. import render
from ..errors import SettingsError
from ..settings import SCANS, check_json_path
from . import _importworker

EXIT_CLEAN, EXIT_UNSAFE, EXIT_USAGE, EXIT_RISKY = 0, 1, 2, 3
IMPORT_TIMEOUT = 120.0  # seconds one import may take before the audit gives up


def add_parser(sub):
    p = sub.add_parser("imports", help="audit what importing modules leaves behind for a later fork",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("modules", nargs="+", metavar="MODULE")
    p.add_argument("--json", metavar="PATH", help="append one JSON record per module to PATH")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="trial forks per module (catches locks held only now and then; default 1)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="seconds a trial child has to come back before it is killed as hung (default 10)")
    p.add_argument("--strict", action="store_true", help="exit 3 when a module is fork-risky")
    p.add_argument("--scan", choices=SCANS, default="full", help="memory scanned for C locks (default full)")
    p.set_defaults(func=main)
    return p


def counted_hazards(trial):
    rec = trial.get("record") or {}
    earlier = set(trial.get("earlier_owners") or ())
    return [h for h in rec.get("hazards", []) if (h.get("owner") or {}).get("native_id") not in earlier]


def verdict(rec):
    if rec.get("error"):
        return "error"
    trials = rec.get("trials") or []
    if any(not t["came_back"] or counted_hazards(t) for t in trials):
        return "unsafe"
    if any(t["alive"] for t in rec.get("threads", [])) or rec.get("native_threads"):
        return "risky"
    return "clean"


def _where(frame):
    if not frame:
        return "?"
    return "%s:%s (in %s)" % (frame.get("file"), frame.get("line"), frame.get("function"))


def _indent(text, pad):
    return "".join(pad + line + "\n" if line else "\n" for line in text.splitlines())


def render_block(rec):
    v = rec["verdict"]
    lines = []
    trials = rec.get("trials") or []
    if v == "unsafe":
        hung = sum(1 for t in trials if not t["came_back"])
        found = sum(1 for t in trials if counted_hazards(t))
        why = []
        if found:
            why.append("%d of %d trial forks found a lock held by a thread the child does not have"
                       % (found, len(trials)))
        if hung:
            why.append("%d of %d trial children did not come back" % (hung, len(trials)))
        lines.append("%s: fork-unsafe (%s)" % (rec["module"], "; ".join(why)))
    elif v == "risky":
        lines.append("%s: fork-risky (threads left running may hold a lock at a later fork; the trial "
                     "fork%s clean)" % (rec["module"], "s were" if len(trials) > 1 else " was"))
    else:
        lines.append("%s: clean" % rec["module"])
    note = ""
    if rec.get("already_imported"):
        note = " (already imported before its turn%s: its import-time threads and hooks were not observed)" % (
            " by forkaudit's own start-up" if rec.get("preloaded_by_startup") else "")
    lines.append("  imported in %.3f s%s" % (rec["import_seconds"], note))
    started = rec.get("threads") or []
    if started:
        lines.append("  threads started (%d still running):" % sum(1 for t in started if t["alive"]))
        for t in started:
            lines.append("    %r target %s, %s, %s, native id %s" % (
                t["name"], t.get("target") or "?", "daemon" if t["daemon"] else "not daemon",
                "running" if t["alive"] else "finished", t.get("native_id")))
            lines.append("      started at %s" % _where(t.get("started_at")))
            outside = [f for f in (t.get("stack") or [])
                       if not f["file"].startswith("<frozen") and "/lib/python" not in f["file"]]
            if outside and outside[-1] != t.get("started_at"):
                lines.append("      from %s" % _where(outside[-1]))
    else:
        lines.append("  threads started: none")
    unseen = rec.get("native_threads") or []
    if unseen:
        lines.append("  threads Python never saw (started by C code):")
        for t in unseen:
            where = "runs code of %s%s" % (t["library"], " (%s)" % t["function"] if t.get("function") else "") \
                if t.get("library") else "library not found (%s)" % (t.get("how") or "no stack")
            lines.append("    %r (kernel name), native id %s, %s" % (t.get("name"), t["native_id"], where))
    else:
        lines.append("  threads Python never saw: none")
    hooks = rec.get("at_fork_hooks") or []
    if not rec.get("at_fork_hooks_listed"):
        lines.append("  at-fork hooks: not observed (registered before the audit started; CPython does not list them)")
    elif hooks:
        lines.append("  at-fork hooks registered:")
        for h in hooks:
            which = ", ".join("%s=%s" % (k, h[k]) for k in ("before", "after_in_parent", "after_in_child") if h.get(k))
            lines.append("    %s  at %s" % (which, _where(h.get("registered_at"))))
    else:
        lines.append("  at-fork hooks registered: none")
    shown = False
    for i, t in enumerate(trials, 1):
        label = "trial fork %d/%d" % (i, len(trials)) if len(trials) > 1 else "trial fork"
        recd = t.get("record")
        hz = counted_hazards(t)
        if not t["came_back"]:
            lines.append("  %s: child %s did not come back within the timeout (%.1f s): killed, hung%s"
                         % (label, t["pid"], t["seconds"], "" if recd else "; it wrote no record"))
        elif recd is None:
            lines.append("  %s: child %s came back in %.3f s (exit %s) but wrote no record"
                         % (label, t["pid"], t["seconds"], t.get("exit_code")))
        else:
            lines.append("  %s: child %s came back in %.3f s; %s" % (
                label, t["pid"], t["seconds"],
                "no lock held by a vanished thread" if not recd.get("hazards") else
                "%d lock(s) held by vanished threads%s" % (
                    len(recd["hazards"]), "" if len(hz) == len(recd["hazards"]) else
                    " (%d by threads of earlier imports: %s)" % (
                        len(recd["hazards"]) - len(hz),
                        ", ".join(sorted(set(t.get("owner_modules", {}).values()) - {rec["module"]}))))))
        if recd and hz and not shown:
            shown = True
            lines.append(_indent(render.text(recd), "    ").rstrip("\n"))
    return "\n".join(lines) + "\n"


def run_worker(args, out_path, report_path, cwd=None):
    cfg = {"modules": args.modules, "out": out_path, "report": report_path, "repeat": args.repeat,
           "timeout": args.timeout, "scan": args.scan}
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORKAUDIT")}
    budget = len(args.modules) * (IMPORT_TIMEOUT + max(1, args.repeat) * (args.timeout + 1))
    proc = subprocess.Popen([sys.executable, "-c", _importworker.BOOT, json.dumps(cfg)], env=env, cwd=cwd,
                            stdout=sys.stderr.fileno(), stdin=subprocess.DEVNULL)
    try:
        proc.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return "the audit interpreter did not finish within %d s" % budget
    if proc.returncode != 0:
        return "the audit interpreter exited with status %s" % proc.returncode
    return None


def read_lines(path):
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    out.append(json.loads(line))
    except OSError:
        pass
    return out


def main(args):
    if args.repeat < 1 or args.timeout <= 0:
        print("forkaudit imports: --repeat must be at least 1 and --timeout positive", file=sys.stderr)
        return EXIT_USAGE
    try:
        json_path = check_json_path(args.json) if args.json else None
    except SettingsError as e:
        print("forkaudit imports: %s" % e, file=sys.stderr)
        return EXIT_USAGE
    with tempfile.TemporaryDirectory(prefix="forkaudit-imports-") as tmp:
        out_path = os.path.join(tmp, "imports.jsonl")
        problem = run_worker(args, out_path, os.path.join(tmp, "trials.jsonl"))
        records = read_lines(out_path)
    fatal = [r["fatal"] for r in records if "fatal" in r]
    if fatal:
        print("forkaudit imports: %s" % fatal[0], file=sys.stderr)
        return EXIT_USAGE
    status = EXIT_CLEAN
    risky = []
    first = True
    for rec in records:
        rec["verdict"] = verdict(rec)
        if json_path:
            from ..sink import append_json
            append_json(json_path, rec)
        if rec["verdict"] == "error":
            print("forkaudit imports: cannot import %s: %s" % (rec["module"], rec["error"]), file=sys.stderr)
            status = EXIT_USAGE
            continue
        if not first:
            sys.stdout.write("\n")
        first = False
        sys.stdout.write(render_block(rec))
        if rec["verdict"] == "unsafe" and status != EXIT_USAGE:
            status = EXIT_UNSAFE
        elif rec["verdict"] == "risky":
            risky.append(rec["module"])
    sys.stdout.flush()
    done = {r.get("module") for r in records}
    missing = [m for m in args.modules if m not in done]
    if problem or missing:
        print("forkaudit imports: %s%s" % (problem or "the audit stopped",
                                          "; not audited: %s" % ", ".join(missing) if missing else ""),
              file=sys.stderr)
        return EXIT_USAGE
    if risky and status == EXIT_CLEAN:
        if args.strict:
            return EXIT_RISKY
        print("forkaudit imports: warning: fork-risky (threads left running): %s (--strict exits 3)"
              % ", ".join(risky), file=sys.stderr)
    return status
