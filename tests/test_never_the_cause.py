"""forkaudit is never the reason a program crashes, hangs, changes behaviour or loses a record
(issue 7, defects 1, 2, 3, 6 and 7).

Each test runs a real program in a fresh interpreter (a subprocess with a timeout), activated
as a production user would (FORKAUDIT=... in the environment, through the installed .pth) or
with forkaudit.install(). A crash is judged by the exit status, as greenlet's crash tests do;
each test compares with the same program run without forkaudit, or keeps a positive control
beside the negative check.
"""
import collections
import json
import os
import re
import sys

import pytest

NO_FORKAUDIT = {}


def child_records(records):
    return [r for r in records if r.get("side") == "child"]


# --- defect 1: the 3.12 segfault (GC run from a fork hook while a queue feeder is mid-way) ---------

QUEUE_TRAFFIC = r'''
import multiprocessing, os, queue, sys, threading
MODE = sys.argv[1]
q = multiprocessing.Queue()

def putter():
    i = 0
    while True:
        q.put(b"x" * 100 + str(i).encode())
        i += 1

def getter():
    while True:
        try:
            q.get(timeout=0.1)
        except queue.Empty:
            pass

for target in (putter, getter):
    threading.Thread(target=target, name=target.__name__, daemon=True).start()
ctx = multiprocessing.get_context("fork")

def work():
    os._exit(0)

for i in range(20):
    if MODE == "fork":
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
    else:
        p = ctx.Process(target=work)
        p.start()
        p.join(30)
        code = p.exitcode
    if code != 0:
        print("fork %d: child exit status %s" % (i, code), flush=True)
        os._exit(1)
print("20 forks done", flush=True)
# os._exit: no exit handler waits for the queue's feeder thread
os._exit(0)
'''


@pytest.mark.parametrize("mode", ["fork", "process"])
def test_forking_beside_a_busy_multiprocessing_queue_does_not_crash(run_python, tmp_path, mode):
    # The crash (exit 139, children -11) reproduced on 3.12.1 only; the program runs everywhere.
    quiet = {"PYTHONWARNINGS": "ignore::DeprecationWarning"}
    plain = run_python(QUEUE_TRAFFIC, env=quiet, args=(mode,))
    assert (plain.returncode, plain.stdout) == (0, "20 forks done\n"), plain
    report = tmp_path / "report.jsonl"
    for attempt in range(2):
        if report.exists():
            report.unlink()
        result = run_python(QUEUE_TRAFFIC, args=(mode,), env=dict(
            quiet, FORKAUDIT="1", FORKAUDIT_SCAN="off", FORKAUDIT_JSON=str(report)))
        assert result.returncode == 0, (attempt, result)
        assert result.stdout == "20 forks done\n", (attempt, result)
        # forkaudit was at work: every child (os.fork or multiprocessing.Process) has its record
        assert len(child_records(result.records)) == 20, (attempt, result)


# The root cause: the snapshot kept sys._current_frames() (which holds the snapshot's own frame)
# in a local of that frame, a reference cycle; every other thread's frames went into the garbage
# collector's hands with it, and with them whatever their locals held (the feeder's memoryview of
# a BytesIO, which CPython 3.12.1's collector crashes on: gh-111049). A program's objects must be
# freed when their function returns, as without forkaudit, never left to the collector.

FREED_ON_RETURN = r"""
import gc, json, os, sys, threading, weakref
gc.disable()                        # only reference counting frees anything in this program
MODE = sys.argv[1]
lock = threading.Lock()
inside, release = threading.Event(), threading.Event()
refs = []

class Payload:
    pass

def work():
    payload = Payload()             # a local only this frame holds
    refs.append(weakref.ref(payload))
    with lock:                      # a held lock: the snapshot reads this frame
        inside.set()
        release.wait()

def keep_frames_in_a_cycle():       # the control: what the snapshot used to do
    frames = sys._current_frames()  # holds this very frame: a cycle through its locals
    return len(frames)

t = threading.Thread(target=work, name="worker")
t.start()
inside.wait()
if MODE == "control":
    keep_frames_in_a_cycle()
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
release.set()
t.join()
freed = refs[0]() is None           # work() has returned: its Payload is gone
gc.set_debug(gc.DEBUG_SAVEALL)
gc.collect()
frames = sorted(o.f_code.co_name for o in gc.garbage if type(o).__name__ == "frame")
print(json.dumps({"freed": freed, "frames_in_garbage": frames}))
"""


@pytest.mark.parametrize("mode", ["plain", "control"])
def test_a_threads_locals_are_freed_when_its_function_returns(run_python, tmp_path, mode):
    audited = {"FORKAUDIT": "record", "FORKAUDIT_SCAN": "off", "FORKAUDIT_JSON": str(tmp_path / "report.jsonl")}
    for env in (NO_FORKAUDIT, audited):
        result = run_python(FREED_ON_RETURN, env=env, args=(mode,))
        assert result.returncode == 0, result
        out = json.loads(result.stdout)
        if env is NO_FORKAUDIT:
            assert result.records == []
        else:
            assert len(child_records(result.records)) == 1, result   # forkaudit was at work
        if mode == "plain":
            assert out == {"freed": True, "frames_in_garbage": []}, (env, out)
        else:
            # positive control: a frame kept in a cycle does keep the worker's locals alive
            assert out["freed"] is False and "work" in out["frames_in_garbage"], (env, out)


# A collection set off by forkaudit's own allocations in a hook would run the program's
# finalizers inside that hook: user code in the middle of a snapshot or a child's audit. Every
# hook holds the collector off, first line to last. (A collection that something else set off
# before the hook, and that CPython 3.12+ runs at the hook's entry, is not forkaudit's doing:
# the hook's first line is allowed.)

FINALIZERS_AT_FORK = r"""
import gc, json, os, sys, threading
stop = threading.Event()
threading.Thread(target=stop.wait, daemon=True).start()   # a threaded fork: forkaudit audits
counts = {"ran": 0, "inside": []}

class Cycle:
    def __init__(self):
        self.me = self                 # only the collector frees it
    def __del__(self):
        counts["ran"] += 1
        f = sys._getframe(1)
        while f is not None:
            code = f.f_code
            if "/forkaudit/" in code.co_filename.replace("\\", "/") and f.f_lineno != code.co_firstlineno:
                counts["inside"].append("%s:%d" % (code.co_name, f.f_lineno))
            f = f.f_back

gc.set_threshold(1, 1, 1)              # collect at (nearly) every allocation of a tracked object
for i in range(30):
    for _ in range(40):
        Cycle()
    r, w = os.pipe()
    seen = len(counts["inside"])
    pid = os.fork()
    if pid == 0:
        os.write(w, json.dumps(counts["inside"][seen:]).encode())   # the child's own
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        counts["inside"] += json.loads(f.read())
    os.waitpid(pid, 0)
stop.set()
print(json.dumps(counts))
"""


def test_no_finalizer_runs_inside_a_fork_hook(run_python, tmp_path):
    quiet = {"PYTHONWARNINGS": "ignore::DeprecationWarning"}
    report = tmp_path / "report.jsonl"
    for env in (NO_FORKAUDIT, {"FORKAUDIT": "record", "FORKAUDIT_JSON": str(report)}):
        result = run_python(FINALIZERS_AT_FORK, env=dict(quiet, **env))
        assert result.returncode == 0, result
        counts = json.loads(result.stdout)
        # positive control: the collector did run finalizers all along, with or without forkaudit
        assert counts["ran"] >= 30 * 40 // 2, counts
        assert counts["inside"] == [], counts
    assert len(child_records(result.records)) == 30, result   # forkaudit was at work


# A fatal signal that arrives while a child writes its record (a pool's terminate() sends
# SIGTERM to workers still in their audit) stops a write to a regular file between two pages:
# half a record, and the next record appended to it, made one line no reader could parse.
# The child below gets SIGTERM from itself half-way through writing its record: held back,
# the signal ends it right after the whole record.

# A program with an idle thread (so that the scan runs) and a fork whose child exits at once,
# returning the signal that ended the child (0: none)
TERMINATED_PRELUDE = r"""
import json, os, signal, sys, threading
stop = threading.Event()
threading.Thread(target=stop.wait, daemon=True).start()

def fork():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status)
"""

TERMINATED_MID_RECORD = TERMINATED_PRELUDE + r"""
real_write = os.write

def write_in_two_halves(fd, data):
    if not (isinstance(data, bytes) and data.startswith(b'{"forkaudit"') and os.environ.get("TEAR") == "1"):
        return real_write(fd, data)
    half = len(data) // 2
    n = real_write(fd, data[:half])
    os.kill(os.getpid(), signal.SIGTERM)   # the default action: the process ends
    return n + real_write(fd, data[half:])

os.write = write_in_two_halves
statuses = []
for tear in ("1", "0"):                    # the second child is not killed: its record follows
    os.environ["TEAR"] = tear
    statuses.append(fork())
os.environ["TEAR"] = "0"
print(json.dumps({"killed": statuses}))
"""


def run_terminated(run_python, tmp_path, program):
    """(result, report path) of program, audited under record."""
    report = tmp_path / "report.jsonl"
    result = run_python(program, env={"PYTHONWARNINGS": "ignore::DeprecationWarning", "FORKAUDIT": "record",
                                      "FORKAUDIT_JSON": str(report)})
    assert result.returncode == 0, result
    return result, report


def test_a_child_terminated_while_writing_its_record_leaves_it_whole(run_python, tmp_path):
    result, report = run_terminated(run_python, tmp_path, TERMINATED_MID_RECORD)
    # the first child did die of its SIGTERM (after its write); the second exited normally
    assert json.loads(result.stdout) == {"killed": [15, 0]}, result
    # every line parses (run_python reads them all), and both children's records are whole
    assert len(child_records(result.records)) == 2, result
    assert report.read_text().count("\n") == 2


# The same signal a little earlier: as the child's audit begins (a pool's terminate() right
# after it forked its workers). Once begun, the audit ends with its record; the signal, held
# back until then, still ends the child. The SIGTERM comes from the child itself, from the
# first thing both ways through the audit ask (the scan's figures).
TERMINATED_IN_AUDIT = TERMINATED_PRELUDE + r"""
fork()                                     # loads forkaudit's flow
import forkaudit.native
real_stats = forkaudit.native.stats

def stats_then_sigterm():
    if os.environ.get("KILL") == "1":
        os.kill(os.getpid(), signal.SIGTERM)   # the default action: the process ends
    return real_stats()

forkaudit.native.stats = stats_then_sigterm
statuses = []
for kill in ("1", "0"):
    os.environ["KILL"] = kill
    statuses.append(fork())
print(json.dumps({"killed": statuses}))
"""


def test_a_child_terminated_as_its_audit_begins_still_writes_its_record(run_python, tmp_path):
    result, _report = run_terminated(run_python, tmp_path, TERMINATED_IN_AUDIT)
    # the first measured child did die of its SIGTERM (after its record); the second exited
    assert json.loads(result.stdout)["killed"] == [15, 0], result
    assert len(child_records(result.records)) == 3, result    # the warm-up's, and both of theirs


# --- defect 2: the warnings machinery is left exactly as the program set it ---------------------

WARNING_POLICY = r'''
import json, os, sys, threading, warnings
warnings.simplefilter("ignore", DeprecationWarning)   # 3.12+: CPython's own fork warning
warnings.simplefilter("error", UserWarning)
before = [repr(f) for f in warnings.filters]
start = threading.Barrier(8)
pids = []

def forker():
    start.wait()
    for _ in range(25):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        pids.append(pid)
        os.waitpid(pid, 0)

threads = [threading.Thread(target=forker) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join(60)
after = [repr(f) for f in warnings.filters]
try:
    warnings.warn("still an error", UserWarning)
    raised = False
except UserWarning:
    raised = True
print(json.dumps({"same": after == before, "first": after[0],
                  "raised": raised, "forks": len(pids)}), flush=True)
os._exit(0)
'''


@pytest.mark.parametrize("env", [NO_FORKAUDIT, {"FORKAUDIT": "record"}], ids=["without", "record"])
def test_concurrent_forks_leave_the_warning_filters_alone(run_python, tmp_path, env):
    import json
    report = {"FORKAUDIT_JSON": str(tmp_path / "report.jsonl")} if env else {}
    result = run_python(WARNING_POLICY, env={**env, **report})
    assert result.returncode == 0, result
    facts = json.loads(result.stdout)
    assert facts["forks"] == 200
    assert facts["first"].startswith("('error', None, <class 'UserWarning'>"), facts
    assert facts == {"same": True, "first": facts["first"], "raised": True,
                     "forks": 200}, facts
    if env:
        assert len(child_records(result.records)) == 200   # forkaudit did audit the forks


def test_the_warning_check_sees_a_changed_filter(run_python):
    # positive control: the same program, where something does change the filters, is caught
    import json
    result = run_python(WARNING_POLICY.replace("pids.append(pid)",
                                               "pids.append(pid); warnings.simplefilter('always')"))
    assert result.returncode == 0, result
    facts = json.loads(result.stdout)
    assert (facts["same"], facts["raised"]) == (False, False), facts


CPYTHON_FORK_WARNING = r'''
import os, threading
stop = threading.Event()
threading.Thread(target=stop.wait, name="idle", daemon=True).start()
for _ in range(20):
    pid = os.fork()          # the one place CPython's DeprecationWarning points at
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
stop.set()
os._exit(0)
'''


@pytest.mark.skipif(sys.version_info < (3, 12), reason="CPython warns about fork() with threads since 3.12")
def test_cpythons_fork_warning_is_shown_as_often_as_without_forkaudit(run_python, tmp_path):
    def warnings_of(result):
        assert result.returncode == 0, result
        return re.findall(r"^(.*):(\d+): DeprecationWarning: This process \(pid=\d+\) is multi-threaded, "
                          r"use of fork\(\) may lead to deadlocks in the child\.$", result.stderr, re.M)
    plain = warnings_of(run_python(CPYTHON_FORK_WARNING))
    audited = run_python(CPYTHON_FORK_WARNING, env={"FORKAUDIT": "record", "FORKAUDIT_JSON": str(tmp_path / "report.jsonl")})
    shown = warnings_of(audited)
    line = 1 + next(i for i, l in enumerate(CPYTHON_FORK_WARNING.splitlines()) if "os.fork()" in l)
    assert len(plain) == 1, plain
    assert shown == plain, (shown, plain)
    assert shown[0][0].endswith("snippet.py") and int(shown[0][1]) == line, shown
    assert len(child_records(audited.records)) == 20   # and forkaudit did audit the 20 forks


# --- defect 3: one record per child, each with its own fork's snapshot --------------------------

def test_200_forks_from_8_threads_at_once_give_one_own_record_each(fa_program):
    result = fa_program(r'''
import logging, warnings
# a program that logs: logging's own at-fork hooks (registered at its import, before forkaudit's)
# run Python code between forkaudit's before-fork hook and the fork, where the GIL can change hands
forkaudit.install(policy="record", json_path=REPORT)
warnings.simplefilter("ignore", DeprecationWarning)
start = threading.Barrier(8)
forked = []          # (child pid, native id of the thread that forked it)

def forker():
    me = threading.get_native_id()
    start.wait()
    mine = []
    for _ in range(25):          # fork, fork, fork...: the children are reaped at the end
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        mine.append(pid)
        forked.append((pid, me))
    for pid in mine:
        _, status = os.waitpid(pid, 0)
        if exit_code(status) != 0:
            forked.append((pid, "exit %s" % exit_code(status)))

threads = [threading.Thread(target=forker, name="forker-%d" % i) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join(60)
emit(forked=forked, forkers=sorted(t.native_id for t in threads))
''', install=False, timeout=120)
    assert result.returncode == 0, result
    facts = result.facts
    forked = dict(facts["forked"])
    assert len(facts["forked"]) == len(forked) == 200, facts["forked"]
    assert set(forked.values()) == set(facts["forkers"])
    children = result.children
    per_pid = collections.Counter(r["pid"] for r in children)
    assert [p for p, n in per_pid.items() if n != 1] == [], "children with more than one record"
    assert sorted(per_pid) == sorted(forked), "missing records: %s" % sorted(set(forked) - set(per_pid))
    wrong = [(r["pid"], r["forking_thread"]["native_id"], forked[r["pid"]]) for r in children
             if r["forking_thread"]["native_id"] != forked[r["pid"]]]
    assert wrong == [], "records naming another thread as the forking one: %d" % len(wrong)
    names = {r["forking_thread"]["name"] for r in children}
    assert names == {"forker-%d" % i for i in range(8)}, names


# --- defect 6: abort (abort-now: the fork-time verdict, the strictest) judges after every at-fork hook; a child about to exec is never aborted ------

RESET_PROGRAM = r'''
import posix, pty, warnings
warnings.simplefilter("ignore", DeprecationWarning)
assert forkaudit.installed() is not None and forkaudit.installed().policy == "abort-now"
LOCK = threading.Lock()

def enter(held, release):
    with LOCK:
        held.set()
        release.wait(60)

busy, busy_release = hold_in_thread("busy", enter)
if RESET:
    # registered after forkaudit is active, as the README advises: the child resets the lock
    os.register_at_fork(after_in_child=LOCK._at_fork_reinit)

def child_code():
    # the child's own work: take the lock (free again after the reset) and exit 7
    if not LOCK.acquire(timeout=5):
        return 9
    return 7

def by_fork(fork):
    pid = fork()
    if pid == 0:
        os._exit(child_code())
    return pid, wait_child(pid)

def by_forkpty():
    pid, fd = os.forkpty()
    if pid == 0:
        os._exit(child_code())
    out = b""
    while True:                     # drain the terminal (the child's report goes there)
        try:
            chunk = os.read(fd, 65536)
        except OSError:             # EIO: the child closed its side
            break
        if not chunk:
            break
        out += chunk
    os.close(fd)
    return pid, wait_child(pid)

pid, code = {"os.fork": lambda: by_fork(os.fork), "posix.fork": lambda: by_fork(posix.fork),
             "os.forkpty": by_forkpty}[KIND]()
emit(pid=pid, code=code)
'''


@pytest.mark.parametrize("kind", ["os.fork", "posix.fork", "os.forkpty"])
@pytest.mark.parametrize("reset", [True, False], ids=["reset-by-program", "control-no-reset"])
def test_abort_spares_a_child_whose_lock_the_program_resets(fa_program, tmp_path, kind, reset):
    result = fa_program("RESET, KIND = %r, %r\n" % (reset, kind) + RESET_PROGRAM, install=False,
                        env={"FORKAUDIT": "abort-now", "FORKAUDIT_JSON": str(tmp_path / "report.jsonl")})
    assert result.returncode == 0, result
    facts = result.facts
    [rec] = child_records(result.records)
    assert rec["pid"] == facts["pid"]
    if reset:
        assert facts["code"] == 7, result          # the child ran its own code and exit status
        assert rec["hazards"] == []
        assert [e["object"]["path"] for e in rec["reinitialized"]] == ["__main__.LOCK"]
    else:
        assert facts["code"] == 86, result         # positive control: a real hazard is aborted
        assert [h["object"]["path"] for h in rec["hazards"]] == ["__main__.LOCK"]


def test_abort_never_kills_a_subprocess_child_about_to_exec(fa_program, tmp_path):
    result = fa_program(r'''
import subprocess, warnings
warnings.simplefilter("ignore", DeprecationWarning)
assert forkaudit.installed() is not None and forkaudit.installed().policy == "abort-now"
LOCK = threading.Lock()

def enter(held, release):
    with LOCK:
        held.set()
        release.wait(60)

busy, busy_release = hold_in_thread("busy", enter)
def preexec():
    os.umask(0o022)

done = subprocess.run(["echo", "x"], preexec_fn=preexec, capture_output=True, timeout=30)
emit(returncode=done.returncode, stdout=done.stdout.decode(), stderr=done.stderr.decode())
# positive control, same process, same held lock: a plain fork is judged and aborted
pid, code = fork_once()
emit(pid=pid, code=code)
''', install=False, env={"FORKAUDIT": "abort-now", "FORKAUDIT_JSON": str(tmp_path / "report.jsonl")})
    records = result.records
    assert result.returncode == 0, result
    facts = result.facts
    assert (facts["returncode"], facts["stdout"]) == (0, "x\n"), facts
    assert facts["code"] == 86, result
    # one record: the control's child; none for the subprocess's fork
    assert [(r["pid"], r["side"]) for r in records] == [(facts["pid"], "child")], records


# --- defect 7: signal handlers that fork ---------------------------------------------------------

SIGNAL_FORKS = r'''
import signal, warnings
warnings.simplefilter("ignore", DeprecationWarning)
N = 100
forked, codes = [], []

depth = [0]

def on_alarm(signum, frame):
    # a handler can run inside another one's fork (in an at-fork hook) and fork again there;
    # deeper than that, a machine too slow for the timer's period would only nest handlers
    # as it would without forkaudit (README, Limits): such a tick is let go
    if len(forked) >= N or depth[0] >= 3:
        return
    depth[0] += 1
    try:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        forked.append(pid)
        _, status = os.waitpid(pid, 0)
        codes.append(exit_code(status))
    finally:
        depth[0] -= 1
    if len(forked) >= N:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)

# a few threads, so that each snapshot has something to look at
stop = threading.Event()
for i in range(3):
    threading.Thread(target=stop.wait, name="idle-%d" % i, daemon=True).start()
signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.02, 0.02)
deadline = time.monotonic() + 50
while len(forked) < N:
    if time.monotonic() > deadline:
        emit(timed_out=True, forked=len(forked))
        sys.stdout.flush(); os._exit(2)
    time.sleep(0.01)
signal.setitimer(signal.ITIMER_REAL, 0, 0)
emit(forked=forked, codes=codes)
'''


@pytest.mark.parametrize("install", [False, True], ids=["without", "record"])
def test_forks_from_a_signal_handler_finish(fa_program, install):
    result = fa_program(SIGNAL_FORKS, install=install, policy="record", timeout=90)
    assert result.returncode == 0, result
    assert result.stderr == ""        # no RecursionError, no internal error swallowed and said
    facts = result.facts
    forked = facts["forked"]
    # forks nested in a handler that ran inside another fork's hooks can add a few more
    assert len(forked) == len(set(forked)) >= 100
    assert facts["codes"] == [0] * len(forked)
    children = result.children
    if not install:
        assert children == []
        return
    # a fork made by a handler that ran inside forkaudit's own hook is not audited: not one
    # record per fork, but never more, never a record for a pid that was not forked here
    per_pid = collections.Counter(r["pid"] for r in children)
    assert 1 <= len(children) <= len(forked), len(children)
    assert max(per_pid.values()) == 1
    assert set(per_pid) <= set(forked)
    assert all(r["forking_thread"]["name"] == "MainThread" for r in children)


# A handler that forks while forkaudit's own code runs: the signal is raised, through a profile
# hook, at the entry of each of forkaudit's stages (the parent's check under 'raise', the
# snapshot, the parent-side notice, the child's audit), so the handler runs inside that stage on
# every run, not when a timer happens to land there. Such a fork is not audited (no snapshot, no
# record, no watch), never a recursion, and the fork around it is audited as usual.
SIGNAL_IN_STAGES = r"""
import signal, warnings
warnings.simplefilter("ignore", DeprecationWarning)
STAGES = {"refuse_if_hazardous", "before_fork", "after_fork_parent", "after_fork_child"}
raised = set()

def stage_on_stack():
    f = sys._getframe(1)
    while f is not None:
        if f.f_code.co_name in STAGES and f.f_globals.get("__name__", "").startswith("forkaudit"):
            return f.f_code.co_name
        f = f.f_back
    return None

def on_usr1(signum, frame):
    stage = stage_on_stack()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    emit(**{"in_" + str(stage): {"pid": pid, "code": exit_code(os.waitpid(pid, 0)[1]), "by": os.getpid()}})

def profile(frame, event, arg):
    name = frame.f_code.co_name
    if (event == "call" and name in STAGES and (os.getpid(), name) not in raised
            and frame.f_globals.get("__name__", "").startswith("forkaudit")):
        raised.add((os.getpid(), name))
        signal.raise_signal(signal.SIGUSR1)   # the handler runs here, inside that stage

stop = threading.Event()
for i in range(3):
    threading.Thread(target=stop.wait, name="idle-%d" % i, daemon=True).start()
signal.signal(signal.SIGUSR1, on_usr1)
sys.setprofile(profile)
outer = os.fork()
if outer == 0:
    os._exit(0)
sys.setprofile(None)
emit(outer={"pid": outer, "code": exit_code(os.waitpid(outer, 0)[1]), "by": os.getpid()})
from forkaudit import watchdog
# every fork has returned: no watch may be left armed (it would report a fork stuck)
emit(watched_tid=int(watchdog._marks.parent_tid) if watchdog._marks is not None else 0)
"""


@pytest.mark.parametrize("policy", ["record", "raise"])
def test_a_handler_forking_inside_each_stage_gets_an_unaudited_fork(fa_program, policy):
    result = fa_program(SIGNAL_IN_STAGES, policy=policy, timeout=60)
    assert result.returncode == 0, result
    assert result.stderr == "", result.stderr[-3000:]   # no RecursionError, no internal error said
    facts = result.facts
    stages = ["before_fork", "after_fork_parent", "after_fork_child"]
    if policy == "raise":
        stages.append("refuse_if_hazardous")
    # the handler ran inside each stage (the control: the profile hook reached every stage), and
    # each of its forks finished; the one in the child's audit was made by the outer child
    assert sorted(k for k in facts if k.startswith("in_")) == sorted("in_" + s for s in stages), facts
    outer = facts["outer"]
    assert outer["code"] == 0 and facts["watched_tid"] == 0, facts
    for stage in stages:
        fact = facts["in_" + stage]
        assert fact["code"] == 0, facts
        assert fact["by"] == (outer["pid"] if stage == "after_fork_child" else outer["by"]), facts
    # one record: the outer fork's child; none for the handlers' forks
    assert [r["pid"] for r in result.children] == [outer["pid"]], result.records
    assert [r for r in result.records if r["event"] != "fork"] == [], result.records