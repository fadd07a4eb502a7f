"""Stress: thousands of forks at once, under load, under every policy; nothing may break.

    python bench/stress.py [--quick] [--policies none,record,warn,abort,raise]
                           [--forkers 4] [--forks 300] [--signal-forks 200] [--grandchild-every 10]
                           [--hammers 8] [--scan full] [--timeout 600]

For each policy, a fresh interpreter (this file with --worker) runs, at once:

  * --hammers threads (8) looping on a threading.Lock, an RLock, a queue.Queue
    (put + get), logging through a QueueHandler (a QueueListener thread drains it)
    and a C mutex (pthread_mutex_lock/unlock in a 20-line C library, built here
    with cc and called through ctypes, the GIL released);
  * --forkers threads, each forking --forks times (every --grandchild-every-th
    child forks a grandchild before it leaves);
  * a SIGALRM handler (setitimer, 20 ms) in the main thread that forks and waits,
    --signal-forks times, sometimes inside forkaudit's own at-fork hook.

Children leave at once with os._exit(0). Then this script checks, from the
worker's account of every fork and the JSON report:

  * every fork succeeded (or, under 'raise', was refused with ForkHazardError;
    counted), every child and grandchild exited 0 (under 'abort', 86 when it
    inherited a lock held by another thread: counted);
  * every audited child and grandchild has exactly one record, valid against the
    report schema when jsonschema is installed (tests/data/report.schema.json),
    naming its own forking thread and its own parent; a fork made by a signal
    handler that ran inside forkaudit's before-fork hook is not audited (at most
    one record); no record belongs to a pid nobody forked;
  * the parent's open fds (/proc/self/fd), threads (threading.enumerate) and
    warnings.filters are the same after the forks as before;
  * the worker finished within --timeout (it is killed otherwise).

Figures are printed per policy; the exit status is 1 if any check failed.
tests/test_stress.py runs the same worker at CI size. Time is reported, never
asserted: the machine is shared.
"""
import argparse
import collections
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(HERE, "..", "tests", "data", "report.schema.json")
POLICIES = ("none", "record", "warn", "abort", "raise")
ABORT_STATUS = 86

C_SOURCE = r'''
#include <pthread.h>

static pthread_mutex_t stress_mutex = PTHREAD_MUTEX_INITIALIZER;
static volatile unsigned long stress_counter;

/* n rounds of: lock, a little work, unlock. Returns the rounds done. */
unsigned long stress_hammer(int n)
{
    for (int i = 0; i < n; i++) {
        pthread_mutex_lock(&stress_mutex);
        for (int k = 0; k < 100; k++)
            stress_counter++;
        pthread_mutex_unlock(&stress_mutex);
    }
    return (unsigned long)n;
}
'''

FULL = dict(forkers=4, forks=300, signal_forks=200, grandchild_every=10, hammers=8)
QUICK = dict(forkers=4, forks=100, signal_forks=50, grandchild_every=10, hammers=8)


def build_clib(directory, cc=None):
    cc = cc or os.environ.get("CC", "cc")
    src = os.path.join(directory, "stressmutex.c")
    lib = os.path.join(directory, "libstressmutex.so")
    with open(src, "w") as f:
        f.write(C_SOURCE)
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-std=c99", "-Wall", "-Wextra", "-o", lib, src, "-lpthread"],
                   check=True, capture_output=True)
    return lib


# ---- the worker: the audited process --------------------------------------------------------

def _inside_forkaudit_hook():
    """Whether this signal handler interrupted forkaudit while it was working for another fork
    of this thread (its before-fork hook, its after-in-parent hook, or policy raise's check):
    forkaudit then lets the handler's fork go unaudited instead of recursing. The hooks mark
    such a thread in hooks._busy; this is the same fact they act on."""
    hooks = sys.modules.get("forkaudit.hooks")
    from _thread import get_ident
    return hooks is not None and get_ident() in hooks._busy


def worker(a):
    import ctypes
    import logging
    import logging.handlers
    import queue
    import signal
    import threading
    import warnings

    main_pid = os.getpid()
    started = time.monotonic()
    warnings.simplefilter("ignore", DeprecationWarning)      # 3.12+: CPython's fork warning
    warnings.simplefilter("error", UserWarning)              # a policy forkaudit must keep
    refused_error = ()
    if a.policy != "none":
        import forkaudit
        # the default watchdog: under ~2,000 forks on 2 cores a fork can wait on the GIL for
        # longer than 5 s; that is slow, not stuck, and must make no watchdog record
        forkaudit.install(policy=a.policy, json_path=a.json, scan=a.scan)
        refused_error = (forkaudit.ForkHazardError,)

    lib = ctypes.CDLL(a.clib)
    lib.stress_hammer.argtypes = [ctypes.c_int]
    lib.stress_hammer.restype = ctypes.c_ulong

    stop = threading.Event()
    plock, prlock, work_q, log_q = threading.Lock(), threading.RLock(), queue.Queue(), queue.Queue()
    logged = [0]

    class Count(logging.Handler):
        def emit(self, record):
            logged[0] += 1

    listener = logging.handlers.QueueListener(log_q, Count())
    listener.start()
    log = logging.getLogger("stress")
    log.addHandler(logging.handlers.QueueHandler(log_q))
    log.setLevel(logging.INFO)
    log.propagate = False
    loads = [collections.Counter() for _ in range(a.hammers)]

    def hammer(i):
        n = loads[i]
        while not stop.is_set():
            with plock:
                n["python_lock"] += 1
            with prlock:
                with prlock:
                    n["rlock"] += 1
            work_q.put(i)
            work_q.get(timeout=10)
            n["queue"] += 1
            log.info("hammer %d round %d", i, n["queue"])
            n["log"] += 1
            n["c_mutex"] += lib.stress_hammer(20)
            if a.pause:
                time.sleep(a.pause)     # leave the children some CPU on a small machine

    hammers = [threading.Thread(target=hammer, args=(i,), name="hammer-%d" % i, daemon=True)
               for i in range(a.hammers)]
    for t in hammers:
        t.start()

    # grandchildren: "grandchild child code" lines, one O_APPEND write each
    gfd = os.open(a.grand, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def fd_table():
        out = {}
        for name in os.listdir("/proc/self/fd"):
            try:
                out[name] = os.readlink("/proc/self/fd/" + name)
            except OSError:
                pass   # the listing's own fd, closed by now
        return out

    def fork_again_in_child():
        try:
            g = os.fork()
        except refused_error:
            os.write(gfd, b"refused %d 0\n" % os.getpid())
            return 0
        if g == 0:
            os._exit(0)
        _, status = os.waitpid(g, 0)
        os.write(gfd, b"%d %d %d\n" % (g, os.getpid(), os.waitstatus_to_exitcode(status)))
        return 0

    forks = []              # [pid, native id of the forking thread, kind, nested, exit code, grandchild?]
    refused = []            # kinds of the refused forks (list.append is atomic; `+= 1` on a
    failed = []             # Counter is not, and four threads are refused at once)

    def one_fork(kind, grand, nested=False):
        me = threading.get_native_id()
        try:
            pid = os.fork()
        except refused_error:
            refused.append(kind)
            return
        except OSError as e:
            failed.append("%s fork: %s" % (kind, e))
            return
        if pid == 0:
            code = 0
            try:
                if grand:
                    code = fork_again_in_child()
            except BaseException:   # noqa: BLE001 - any escape is a failure, said by the status
                code = 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        forks.append([pid, me, kind, nested, os.waitstatus_to_exitcode(status), bool(grand)])

    def forker(index, go):
        go.wait()
        for k in range(a.forks):
            one_fork("thread", a.grandchild_every and (k % a.grandchild_every == index % a.grandchild_every))

    signal_started = [0]

    def on_alarm(signum, frame):
        if os.getpid() != main_pid or signal_started[0] >= a.signal_forks:
            return
        signal_started[0] += 1
        if signal_started[0] >= a.signal_forks:
            signal.setitimer(signal.ITIMER_REAL, 0, 0)
        one_fork("signal", False, nested=_inside_forkaudit_hook())

    # wait until every hammer has gone round at least once: the load is on when the forks start
    deadline = time.monotonic() + 30
    while not all(n["c_mutex"] for n in loads):
        if time.monotonic() > deadline:
            sys.exit("hammers never started")
        time.sleep(0.005)
    before = dict(fds=fd_table(), threads=sorted(t.name for t in threading.enumerate()),
                  filters=[repr(f) for f in warnings.filters])

    go = threading.Event()
    forkers = [threading.Thread(target=forker, args=(i, go), name="forker-%d" % i) for i in range(a.forkers)]
    for t in forkers:
        t.start()
    forks_started = time.monotonic()
    signal.signal(signal.SIGALRM, on_alarm)
    if a.signal_forks:
        signal.setitimer(signal.ITIMER_REAL, 0.02, 0.02)
    go.set()
    deadline = time.monotonic() + a.deadline
    while any(t.is_alive() for t in forkers) or signal_started[0] < a.signal_forks:
        if time.monotonic() > deadline:
            print(json.dumps({"timed_out": True, "forks": len(forks)}), flush=True)
            os._exit(2)
        time.sleep(0.01)
    signal.setitimer(signal.ITIMER_REAL, 0, 0)
    forks_took = time.monotonic() - forks_started
    for t in forkers:
        t.join(10)
    after = dict(fds=fd_table(), threads=sorted(t.name for t in threading.enumerate() if t not in forkers),
                 filters=[repr(f) for f in warnings.filters])
    try:
        warnings.warn("still an error", UserWarning)
        user_warning_raises = False
    except UserWarning:
        user_warning_raises = True
    stop.set()
    for t in hammers:
        t.join(30)
    listener.stop()
    total = collections.Counter()
    for n in loads:
        total.update(n)
    summary = {
        "main_pid": main_pid, "main_native_id": threading.main_thread().native_id,
        "forker_native_ids": sorted(t.native_id for t in forkers),
        "forks": forks, "refused": dict(collections.Counter(refused)), "failed": failed,
        "fds_same": before["fds"] == after["fds"], "threads_same": before["threads"] == after["threads"],
        "filters_same": before["filters"] == after["filters"], "user_warning_raises": user_warning_raises,
        "before": before, "after": after,
        "loads": dict(total), "logged": logged[0], "hammers_alive": sum(t.is_alive() for t in hammers),
        "forks_took": forks_took, "took": time.monotonic() - started,
    }
    print(json.dumps(summary), flush=True)
    sys.stderr.flush()
    os._exit(0)


# ---- the driver: run a worker, then check what it did ----------------------------------------

def run_worker(policy, sizes, json_path, grand_path, clib, scan="full", timeout=600, python=sys.executable):
    """Run one worker; returns (summary or None, stdout, stderr, returncode, wall seconds)."""
    for path in (json_path, grand_path):
        if os.path.exists(path):
            os.unlink(path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORKAUDIT") or k == "FORKAUDIT_FORCE_NO_C_LEVEL"}
    cmd = [python, os.path.abspath(__file__), "--worker", "--policy", policy, "--json", json_path,
           "--grand", grand_path, "--clib", clib, "--scan", scan, "--deadline", str(max(10, timeout - 15)),
           "--forkers", str(sizes["forkers"]), "--forks", str(sizes["forks"]),
           "--signal-forks", str(sizes["signal_forks"]), "--grandchild-every", str(sizes["grandchild_every"]),
           "--hammers", str(sizes["hammers"]), "--pause", str(sizes.get("pause", 0.0))]
    t0 = time.monotonic()
    # The worker runs in a session of its own, and the whole session is killed when it ends
    # or times out: a child it left hung would hold the stdout pipe open (and wait for it
    # to close would never end), or would load the machine under whatever runs next.
    with tempfile.TemporaryFile() as err:   # under 'warn' thousands of reports: not in a pipe
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_session(proc.pid)
            proc.wait()
            proc.stdout.close()
            err.seek(0)
            said = err.read()[-4000:].decode("utf-8", "replace")
            return None, "", "timed out after %d s; its stderr ended with:\n%s" % (timeout, said), None, \
                time.monotonic() - t0
        finally:
            kill_session(proc.pid)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    wall = time.monotonic() - t0
    stdout = out.decode("utf-8", "replace")
    summary = None
    lines = stdout.strip().splitlines()
    if lines:
        try:
            summary = json.loads(lines[-1])
        except ValueError:
            pass
    return summary, stdout, stderr, proc.returncode, wall


def kill_session(sid):
    try:
        os.killpg(sid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def read_records(path):
    """(records, bad lines) of a JSON-lines report."""
    records, bad = [], []
    if not os.path.exists(path):
        return records, bad
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                bad.append(number)
    return records, bad


def read_grandchildren(path):
    """([grandchild pid, child pid, exit code], [child pids whose fork was refused])"""
    grand, refused = [], []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if parts and parts[0] == "refused":
                    refused.append(int(parts[1]))
                elif len(parts) == 3:
                    grand.append([int(p) for p in parts])
    return grand, refused


# forkaudit's fail-open lines (hooks._fail, policy.deliver, sink): a fork forkaudit did not audit
# or a record it could not write, said once per process
FAILURE_LINE = re.compile(r"^forkaudit: (.* failed \(.*|cannot append .*|.*record.* lost.*)$", re.M)


def analyse(policy, summary, records, bad_lines, grand, grand_refused, validator=None, stderr=""):
    """(figures, problems): what happened, and every check that failed (a list of strings)."""
    problems = []
    failures = collections.Counter(FAILURE_LINE.findall(stderr))
    for line, n in failures.most_common(5):
        problems.append("%d processes said: forkaudit: %s" % (n, line))
    forks = summary["forks"]
    audited = policy != "none"
    ok_codes = {0, ABORT_STATUS} if policy == "abort" else {0}
    codes = collections.Counter(f[4] for f in forks)
    gcodes = collections.Counter(g[2] for g in grand)
    for code in set(codes) - ok_codes:
        problems.append("%d children exited with status %s" % (codes[code], code))
    for code in set(gcodes) - ok_codes:
        problems.append("%d grandchildren exited with status %s" % (gcodes[code], code))
    if summary["failed"]:
        problems.append("forks failed: %s" % summary["failed"][:5])
    refused = sum(summary["refused"].values()) + len(grand_refused)
    tried = collections.Counter([g[1] for g in grand] + list(grand_refused))
    ran = {f[0] for f in forks if f[5] and f[4] == 0}
    if set(tried) != ran or any(n != 1 for n in tried.values()):
        problems.append("%d children did not fork their grandchild, %d forked one they should not have, "
                        "%d more than one" % (len(ran - set(tried)), len(set(tried) - ran),
                                              sum(1 for n in tried.values() if n > 1)))
    if refused and policy != "raise":
        problems.append("%d forks refused under policy %r" % (refused, policy))
    if bad_lines:
        problems.append("%d report lines are not JSON (first: line %d)" % (len(bad_lines), bad_lines[0]))
    invalid = 0
    if validator is not None:
        for rec in records:
            if any(True for _ in validator.iter_errors(rec)):
                invalid += 1
        if invalid:
            problems.append("%d records do not validate against the schema" % invalid)
    children = [r for r in records if r.get("side") == "child"]
    parents = [r for r in records if r.get("side") != "child"]
    if parents:
        problems.append("%d records are not a child's" % len(parents))
    by_pid = collections.defaultdict(list)
    for r in children:
        by_pid[r.get("pid")].append(r)
    if not audited and records:
        problems.append("%d records without forkaudit" % len(records))
    expected = {}
    nested_unaudited = 0
    for pid, native_id, kind, nested, code, _ in forks:
        expected[pid] = (summary["main_pid"], native_id, nested)
    for g, c, code in grand:
        expected[g] = (c, c, False)      # the child's only thread is its main thread: native id = pid
    wrong_thread = wrong_parent = missing = duplicated = 0
    kind_of = {f[0]: (f[2], f[3], f[4]) for f in forks}
    kind_of.update({g[0]: ("grandchild", False, g[2]) for g in grand})
    examples = []
    if audited:
        for pid, (parent, native_id, nested) in expected.items():
            recs = by_pid.get(pid, [])
            if len(recs) > 1:
                duplicated += 1
            if not recs:
                if nested:
                    nested_unaudited += 1
                else:
                    missing += 1
                    examples.append("no record: pid %d (%s fork, nested %s, exit status %s)" % ((pid,) + kind_of[pid]))
                continue
            rec = recs[0]
            if rec["forking_thread"]["native_id"] != native_id:
                wrong_thread += 1
                examples.append("pid %d (%s fork): forking thread %s, not %s" % (
                    pid, kind_of[pid][0], rec["forking_thread"]["native_id"], native_id))
            if rec["parent_pid"] != parent:
                wrong_parent += 1
        stray = sorted(set(by_pid) - set(expected))
        for what, n in (("children without their record", missing), ("children with several records", duplicated),
                        ("records naming another thread as the forking one", wrong_thread),
                        ("records naming another parent", wrong_parent),
                        ("records for pids nobody forked", len(stray))):
            if n:
                problems.append("%d %s" % (n, what))
        problems.extend(examples[:10])
        if stray:
            problems.append("pids nobody forked: %s" % stray[:10])
    for what in ("fds", "threads", "filters"):
        if not summary[what + "_same"]:
            problems.append("the parent's %s changed: %r -> %r" % (
                what, summary["before"][what], summary["after"][what]))
    if not summary["user_warning_raises"]:
        problems.append("the program's warnings.simplefilter('error', UserWarning) was lost")
    if summary["hammers_alive"]:
        problems.append("%d hammer threads did not stop" % summary["hammers_alive"])
    kinds = collections.Counter(f[2] for f in forks)
    hazardous = sum(1 for r in children if r.get("hazards"))
    figures = {
        "forks": len(forks), "thread_forks": kinds["thread"], "signal_forks": kinds["signal"],
        "signal_forks_nested": sum(1 for f in forks if f[3]), "nested_unaudited": nested_unaudited,
        "grandchildren": len(grand), "refused": refused, "aborted": codes[ABORT_STATUS] + gcodes[ABORT_STATUS],
        "records": len(records), "hazardous_records": hazardous, "invalid_records": invalid,
        "loads": summary["loads"], "logged": summary["logged"],
        "forks_took": summary["forks_took"],
    }
    return figures, problems


def load_validator():
    try:
        import jsonschema
    except ImportError:
        return None
    with open(SCHEMA) as f:
        return jsonschema.Draft202012Validator(json.load(f))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--policy", default="record")
    p.add_argument("--policies", default=",".join(POLICIES))
    p.add_argument("--json")
    p.add_argument("--grand")
    p.add_argument("--clib")
    p.add_argument("--scan", default="full")
    p.add_argument("--deadline", type=float, default=585)
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--pause", type=float, default=0.0, help="seconds each hammer sleeps per round (default 0)")
    p.add_argument("--keep", help="a directory: keep the report, summary and stderr of a run that failed")
    for name in FULL:
        p.add_argument("--" + name.replace("_", "-"), type=int)
    a = p.parse_args(argv)
    if a.worker:
        return worker(a)
    sizes = dict(QUICK if a.quick else FULL)
    for name in FULL:
        if getattr(a, name) is not None:
            sizes[name] = getattr(a, name)
    validator = load_validator()
    import platform
    print("forkaudit stress: Python %s, %d CPUs; per policy: %d threads x %d forks (every %dth child forks "
          "a grandchild) + %d forks from a SIGALRM handler, while %d threads hammer a Lock, an RLock, a "
          "queue.Queue, logging via QueueHandler and a C mutex; scan %s; schema check %s"
          % (platform.python_version(), os.cpu_count(), sizes["forkers"], sizes["forks"], sizes["grandchild_every"],
             sizes["signal_forks"], sizes["hammers"], a.scan, "on" if validator else "off (no jsonschema)"))
    failed = False
    totals = collections.Counter()
    with tempfile.TemporaryDirectory(prefix="forkaudit-stress-") as tmp:
        clib = a.clib or build_clib(tmp)
        for policy in a.policies.split(","):
            summary, stdout, stderr, rc, wall = run_worker(
                policy, sizes, os.path.join(tmp, policy + ".jsonl"), os.path.join(tmp, policy + ".grand"),
                clib, a.scan, a.timeout)
            if summary is None or rc != 0:
                failed = True
                print("%-7s FAILED: exit status %s, %s" % (policy, rc, (stderr or stdout)[-800:]))
                continue
            records, bad = read_records(os.path.join(tmp, policy + ".jsonl"))
            grand, grand_refused = read_grandchildren(os.path.join(tmp, policy + ".grand"))
            fig, problems = analyse(policy, summary, records, bad, grand, grand_refused, validator, stderr)
            if problems and a.keep:
                keep = os.path.join(a.keep, "stress-%s-%d" % (policy, os.getpid()))
                os.makedirs(keep, exist_ok=True)
                for name in (policy + ".jsonl", policy + ".grand"):
                    if os.path.exists(os.path.join(tmp, name)):
                        os.replace(os.path.join(tmp, name), os.path.join(keep, name))
                with open(os.path.join(keep, "summary.json"), "w") as f:
                    json.dump(summary, f)
                with open(os.path.join(keep, "stderr.txt"), "w") as f:
                    f.write(stderr)
                print("        (kept in %s)" % keep)
            failed = failed or bool(problems)
            loads = fig["loads"]
            print("%-7s %s  %5d forks (%d from threads, %d from the signal handler, %d of them inside forkaudit's "
                  "hook), %d grandchildren, %d refused, %d aborted (86); %d records (%d with hazards), "
                  "%d unaudited nested; forks took %.1f s (wall %.1f s); load: %d lock, %d rlock, %d queue, "
                  "%d log (%d delivered), %d C mutex rounds"
                  % (policy, "ok  " if not problems else "FAIL", fig["forks"], fig["thread_forks"],
                     fig["signal_forks"], fig["signal_forks_nested"], fig["grandchildren"], fig["refused"],
                     fig["aborted"], fig["records"], fig["hazardous_records"], fig["nested_unaudited"],
                     fig["forks_took"], wall, loads.get("python_lock", 0), loads.get("rlock", 0),
                     loads.get("queue", 0), loads.get("log", 0), fig["logged"], loads.get("c_mutex", 0)))
            for problem in problems:
                print("        problem: " + problem)
            if policy != "none":
                totals["forks"] += fig["forks"] + fig["grandchildren"] + fig["refused"]
                totals["records"] += fig["records"]
                totals["aborted"] += fig["aborted"]
                totals["refused"] += fig["refused"]
    print("total under forkaudit: %d forks attempted, %d records, %d refused (raise), %d aborted (abort); %s"
          % (totals["forks"], totals["records"], totals["refused"], totals["aborted"],
             "every check passed" if not failed else "SOME CHECKS FAILED"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
