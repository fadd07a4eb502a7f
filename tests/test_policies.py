"""The policies (warn, record, abort, raise), `forkaudit report`, and the seed
example (a QueueHandler + fork-based Pool deadlock) under `forkaudit run`."""
import json
import os
import re
import sys

import pytest

from conftest import run_bounded

# a copy of ../shared/examples/pool_logging_deadlock.py (test_shipped_data.py keeps it in step)
EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "pool_logging_deadlock.py")

HOLD = '''
LOCK = threading.Lock()
def enter(held, release):
    with LOCK:
        held.set()
        release.wait(60)
busy, busy_release = hold_in_thread("busy", enter)
'''

# The parent's notice goes to a list, not to stderr: stderr then carries only the child's report.
QUIET_PARENT = '''
import logging, warnings
LOGGED = []
class Keep(logging.Handler):
    def emit(self, record):
        LOGGED.append([record.name, record.levelname, record.getMessage()])
logging.getLogger("forkaudit").addHandler(Keep())
logging.getLogger("forkaudit").propagate = False
def fork_noting_warnings(child=None):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pid, code = fork_once(child)
    return pid, code, [[w.category.__name__, issubclass(w.category, RuntimeWarning), str(w.message),
                        os.path.basename(w.filename)]
                       for w in caught if issubclass(w.category, forkaudit.ForkHazardWarning)]
'''


def forkaudit_cli():
    script = os.path.join(os.path.dirname(sys.executable), "forkaudit")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "forkaudit"]


def hazards_of(rec):
    return [((h["object"] or {}).get("path"), h["kind"], (h["owner"] or {}).get("name")) for h in rec["hazards"]]


@pytest.mark.c_level
def test_warn_reports_on_the_childs_stderr_and_warns_the_parent(fa_program):
    result = fa_program(QUIET_PARENT + '''
safe_pid, safe_code, safe_warnings = fork_noting_warnings()      # nothing held: nothing said
''' + HOLD + '''
pid, code, caught = fork_noting_warnings()
emit(safe=safe_pid, safe_warnings=safe_warnings, pid=pid, code=code, warnings=caught, logged=LOGGED,
     parent=os.getpid(), busy=busy.native_id)
''', policy="warn")
    assert result.returncode == 0, result
    facts = result.facts
    assert facts["code"] == 0
    assert facts["safe_warnings"] == []
    err = result.stderr
    # exactly one report, the hazardous child's, and nothing else on stderr
    header = ("forkaudit: fork of pid %d -> child %d: 1 lock is held by threads that do not exist in the child\n"
              % (facts["parent"], facts["pid"]))
    assert err.startswith(header), err
    assert err.count("forkaudit:") == 1, err
    lock_line = "  [1] python_lock __main__.LOCK  (_thread.lock at 0x"
    owner_line = "      owner: thread 'busy' (native id %d)\n" % facts["busy"]
    reach_line = "      reach: likely: a module global leads to it, so the child blocks when its code uses it\n"
    stack_line = "      its stack at the fork (innermost last):\n"
    enter_frame = re.search(r'        File ".*snippet\.py", line \d+, in enter\n', err)
    why_line = "      why: a _thread.lock held by thread 'busy' (native id %d) in enter() at snippet.py:" % facts["busy"]
    fork_line = "  fork called from thread 'MainThread' (native id %d):\n" % facts["parent"]
    fork_site = re.search(r'        File ".*snippet\.py", line \d+, in fork_once\n', err)
    # a raw os.fork of a lock at __main__.LOCK: the register_at_fork line with the lock's real path
    fix_line = ("  fix: reset the lock in the child (in the main module): os.register_at_fork(after_in_child="
                "lambda: globals().update(LOCK=threading.Lock())); or fork before starting the threads "
                "that take it.\n")
    for part in (lock_line, owner_line, reach_line, stack_line, why_line, fork_line, fix_line):
        assert part in err, (part, err)
    assert enter_frame and fork_site, err
    positions = [err.index(lock_line), err.index(owner_line), err.index(reach_line), err.index(stack_line), enter_frame.start(),
                 err.index(why_line), err.index(fork_line), fork_site.start(), err.index(fix_line)]
    assert positions == sorted(positions), err
    assert err.endswith(fix_line)
    # the parent: one ForkHazardWarning (a RuntimeWarning) pointing at the os.fork caller, and
    # nothing more (one parent line per hazardous fork: no second copy on the 'forkaudit' logger)
    [(category, is_runtime, message, filename)] = facts["warnings"]
    assert (category, is_runtime, filename) == ("ForkHazardWarning", True, "snippet.py")
    assert message.startswith("fork while thread 'busy' holds a _thread.lock in enter() at snippet.py:"), message
    assert message.endswith("(with LOCK); the child's forkaudit report has the details")
    assert facts["logged"] == []
    # and the JSON record, under policy 'warn'
    assert [r["pid"] for r in result.children] == [facts["safe"], facts["pid"]]
    assert result.children[1]["policy"] == "warn"
    assert hazards_of(result.children[1]) == [("__main__.LOCK", "python_lock", "busy")]


def test_fork_hazard_warning_is_a_runtime_warning():
    import forkaudit
    assert issubclass(forkaudit.ForkHazardWarning, RuntimeWarning)
    assert issubclass(forkaudit.ForkHazardError, RuntimeError)


@pytest.mark.c_level
def test_record_writes_json_only(fa_program):
    result = fa_program(QUIET_PARENT.replace('logging.getLogger("forkaudit").propagate = False', '') + '''
logging.basicConfig()                        # a 'forkaudit' logger line would reach stderr
warnings.simplefilter("ignore", DeprecationWarning)   # (3.12+: CPython's own fork warning)
''' + HOLD + '''
pid, code, caught = fork_noting_warnings()
emit(pid=pid, code=code, warnings=caught, logged=LOGGED)
''', policy="record")
    assert result.returncode == 0, result
    assert result.stderr == ""
    facts = result.facts
    assert facts["warnings"] == [] and facts["logged"] == []
    [rec] = result.children
    assert rec["pid"] == facts["pid"] and rec["policy"] == "record"
    assert hazards_of(rec) == [("__main__.LOCK", "python_lock", "busy")]


def test_abort_now_ends_a_hazardous_child_at_the_fork_with_status_86(fa_program, tmp_path):
    marker = tmp_path / "child-ran"
    result = fa_program('''
MARKER = %r
def child():
    open(MARKER, "a").write("%%d\\n" %% os.getpid())
    return 7
safe_pid, safe_code = fork_once(child)         # nothing held: the child runs its own code
''' % str(marker) + HOLD + '''
pid, code = fork_once(child)
emit(safe=safe_pid, safe_code=safe_code, pid=pid, code=code)
''', policy="abort-now")
    assert result.returncode == 0, result
    facts = result.facts
    assert facts["safe_code"] == 7
    assert facts["code"] == 86
    assert marker.read_text().split() == [str(facts["safe"])]     # the hazardous child never ran it
    assert "forkaudit: fork of pid" in result.stderr and "-> child %d:" % facts["pid"] in result.stderr
    assert "__main__.LOCK" in result.stderr
    assert result.stderr.endswith("forkaudit: policy 'abort-now': child %d exits with status 86 instead of deadlocking\n"
                                  % facts["pid"])
    assert [(r["pid"], r["policy"], len(r["hazards"])) for r in result.children] == [
        (facts["safe"], "abort-now", 0), (facts["pid"], "abort-now", 1)]


def test_raise_refuses_to_fork(fa_program, schema_validator):
    result = fa_program('''
BEFORE = []
os.register_at_fork(before=lambda: BEFORE.append(1))   # runs on any real fork
''' + HOLD + '''
try:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    emit(refused=False, pid=pid)
except forkaudit.ForkHazardError as err:
    emit(refused=True, event=err.event, text=str(err), last=forkaudit.last_event() is err.event,
         before_hooks_ran=len(BEFORE), busy=busy.native_id, parent=os.getpid())
busy_release.set()
busy.join(10)
pid, code = fork_once()                 # nothing held any more: this fork goes through
emit(later=pid, later_code=code, before_hooks_later=len(BEFORE))
''', policy="raise")
    assert result.returncode == 0, result
    facts = result.facts
    assert facts["refused"] is True
    assert facts["before_hooks_ran"] == 0          # no fork happened at all
    assert facts["last"] is True
    ev = facts["event"]
    assert not [e.message for e in schema_validator.iter_errors(ev)]
    assert (ev["side"], ev["pid"], ev["policy"]) == ("parent", facts["parent"], "raise")
    assert hazards_of(ev) == [("__main__.LOCK", "python_lock", "busy")]
    assert ev["hazards"][0]["owner"]["native_id"] == facts["busy"]
    assert "(with LOCK)" in ev["hazards"][0]["why"]
    text = facts["text"]
    assert text.startswith("forkaudit: refused to fork pid %d (policy 'raise'): 1 lock is held by other threads, "
                           "and would stay held in the child\n" % facts["parent"]), text
    assert "  [1] python_lock __main__.LOCK  (_thread.lock at 0x" in text
    assert "      owner: thread 'busy' (native id %d)\n" % facts["busy"] in text
    assert "its stack at the fork (innermost last)" in text and "  fix: " in text
    # the only record is the later, safe fork's child
    assert facts["before_hooks_later"] == 1 and facts["later_code"] == 0
    assert [(r["pid"], r["side"], r["hazards"]) for r in result.records] == [(facts["later"], "child", [])]


def test_report_command_renders_a_json_lines_file(fa_program, tmp_path):
    result = fa_program(QUIET_PARENT + HOLD + '''
first, _, _ = fork_noting_warnings()
busy_release.set(); busy.join(10)
OTHER = threading.Lock()
def enter_other(held, release):
    with OTHER:
        held.set()
        release.wait(60)
other, other_release = hold_in_thread("other", enter_other)
second, _, _ = fork_noting_warnings()
other_release.set(); other.join(10)
clean, _, _ = fork_noting_warnings()
emit(first=first, second=second, clean=clean)
''', policy="warn")
    assert result.returncode == 0, result
    facts = result.facts
    report = str(tmp_path / "report.jsonl")
    assert [r["pid"] for r in result.records] == [facts["first"], facts["second"], facts["clean"]]

    full = run_bounded(forkaudit_cli() + ["report", report], text=True, timeout=60)
    assert full.returncode == 0, full
    out = full.stdout
    assert out.endswith("3 record(s), 2 with hazards\n")
    for path, owner in (("__main__.LOCK", "busy"), ("__main__.OTHER", "other")):
        assert "python_lock %s  (_thread.lock at 0x" % path in out
        assert "owner: thread %r (native id" % owner in out
    assert out.count("its stack at the fork (innermost last):") == 2
    assert re.search(r'File ".*snippet\.py", line \d+, in enter\n', out)
    assert re.search(r'File ".*snippet\.py", line \d+, in enter_other\n', out)
    assert "-> child %d:" % facts["clean"] not in out        # no hazards: not rendered without --all

    one = run_bounded(forkaudit_cli() + ["report", report, "--pid", str(facts["second"])],
                      text=True, timeout=60)
    assert one.returncode == 0, one
    assert "-> child %d:" % facts["second"] in one.stdout and "__main__.OTHER" in one.stdout
    assert "__main__.LOCK" not in one.stdout and "-> child %d:" % facts["first"] not in one.stdout
    assert one.stdout.endswith("1 record(s), 1 with hazards\n")
    # the same text the child wrote on its stderr under 'warn'
    reports = re.split(r"(?=^forkaudit: fork of pid )", result.stderr, flags=re.M)
    [block] = [r for r in reports if r.startswith("forkaudit: fork of pid %d -> child %d:"
                                                  % (result.records[1]["parent_pid"], facts["second"]))]
    assert one.stdout == block + "1 record(s), 1 with hazards\n"

    every = run_bounded(forkaudit_cli() + ["report", report, "--all"], text=True, timeout=60)
    assert "pid %d (parent %d, warn policy): 0 hazard(s)" % (facts["clean"], result.records[2]["parent_pid"]) in every.stdout


# --- the seed example: a QueueHandler, a chatty thread and a fork-based Pool ------------------------

def test_seed_example_completes_under_abort_now():
    # Without forkaudit a round hangs (its worker forked while a logging thread held the
    # queue's mutex). Under 'abort-now' such a worker exits 86 at the fork, before it takes a
    # task, and the pool starts another: every round completes. (Under 'abort' the worker is
    # stopped only once it is stuck, inside its task: multiprocessing.Pool does not run a
    # task again whose worker died, so that round still fails, with the report.)
    proc = run_bounded(forkaudit_cli() + ["run", "--policy", "abort-now", "--",
                                          sys.executable, EXAMPLE, "6", "5"],
                       text=True, timeout=150)
    assert proc.returncode == 0, (proc.stdout, proc.stderr[-3000:])
    assert "all 6 rounds finished" in proc.stdout
    # every worker it stopped was named with the lock of this deadlock
    aborted = proc.stderr.count("exits with status 86")
    assert proc.stderr.count("logging.getLogger().handlers[0].queue.mutex") >= aborted


@pytest.mark.c_level
def test_seed_example_hung_worker_names_the_queue_mutex(tmp_path):
    report = str(tmp_path / "seed.jsonl")
    proc = run_bounded(forkaudit_cli() + ["run", "--policy", "record", "--json", report, "--",
                                          sys.executable, EXAMPLE, "20", "3"],
                       text=True, timeout=150)
    records = [json.loads(line) for line in open(report)] if os.path.exists(report) else []
    if proc.returncode == 0:
        # a run with no hung round (rare; the deadlock is a race): nothing to explain
        assert "all 20 rounds finished" in proc.stdout
        return
    assert proc.returncode == 1, (proc.stdout, proc.stderr[-3000:])
    m = re.search(r"round (\d+): the worker hung", proc.stdout)
    assert m, proc.stdout
    children = [r for r in records if r["side"] == "child"]
    assert len(children) == int(m.group(1)) + 1      # one worker per round, the hung one last
    hung = children[-1]
    [mutex] = [h for h in hung["hazards"] if (h["object"] or {}).get("path") == "logging.getLogger().handlers[0].queue.mutex"]
    assert mutex["kind"] == "python_lock"
    if mutex["owner"] is not None:   # the chatty thread or the listener's: a thread of the parent
        assert mutex["owner"]["native_id"] in [t["native_id"] for t in hung["threads"]], mutex
    assert "forkaudit:" not in proc.stderr       # policy record: JSON only


# --- policy 'warn' speaks only where the child can reach the lock (issue 9) ---------------------
# Three shapes of the same held lock, each forked under 'warn' with a child that does not touch
# it; the parent's ForkHazardWarning, the child's printed report and its JSON record are read.

WARN_SHAPES = {
    # positive controls: the lock lives in module state the child can run into
    "global-instance": '''
class Svc:
    def __init__(self):
        self.lock = threading.Lock()
    def work(self, held, release):
        with self.lock:
            held.set()
            release.wait(60)
SVC = Svc()
busy, busy_release = hold_in_thread("busy", SVC.work)
''',
    "local-kept-global": '''
KEEP = []
def enter(held, release):
    lock = threading.Lock()
    KEEP.append(lock)
    with lock:
        held.set()
        release.wait(60)
busy, busy_release = hold_in_thread("busy", enter)
''',
    # nothing in the child leads to the lock: only the vanished thread's frame held it
    "local-only": '''
def enter(held, release):
    lock = threading.Lock()
    with lock:
        held.set()
        release.wait(60)
busy, busy_release = hold_in_thread("busy", enter)
''',
    # the object re-creates its lock in an after-fork hook (opentelemetry's shape)
    "replaced-by-hook": '''
class Svc:
    def __init__(self):
        self.lock = threading.Lock()
        os.register_at_fork(after_in_child=self._reset)
    def _reset(self):
        self.lock = threading.Lock()
    def work(self, held, release):
        with self.lock:
            held.set()
            release.wait(60)
SVC = Svc()
busy, busy_release = hold_in_thread("busy", SVC.work)
''',
}


@pytest.mark.parametrize("shape", sorted(WARN_SHAPES))
def test_warn_says_nothing_of_a_lock_the_child_cannot_reach(fa_program, shape):
    result = fa_program(QUIET_PARENT + WARN_SHAPES[shape] + '''
pid, code, caught = fork_noting_warnings()
emit(pid=pid, code=code, warnings=caught)
''', policy="warn")
    assert result.returncode == 0, result
    facts = result.facts
    assert facts["code"] == 0
    [rec] = result.children
    # the record always has the lock, with the facts: a hazard, or held but unreachable
    [h] = rec["hazards"] + rec["unreachable"]
    assert h["owner"]["name"] == "busy", h
    printed = result.stderr.count("forkaudit: fork of pid")
    if shape in ("global-instance", "local-kept-global"):
        assert h["reach"] == "global" and rec["hazards"] == [h], h
        assert printed == 1, result.stderr
        # the parent proves it too: the lock was held through module state, and no after-fork
        # hook outside the standard library could reset it
        [(category, _, message, _)] = facts["warnings"]
        assert category == "ForkHazardWarning" and message.startswith("fork while thread 'busy' holds"), message
    else:
        assert h["reach"] == "unreachable" and rec["hazards"] == [], h
        assert printed == 0 and "forkaudit" not in result.stderr, result.stderr
        assert facts["warnings"] == [], facts


# The same shapes, forked through multiprocessing. Its child's audit runs from
# multiprocessing's after-fork registry, whose frame holds forkaudit's own callback: forkaudit's
# state (the snapshot that callback keeps) must not count as the child's way to the lock (it
# made a lock replaced at fork a 'local' hazard). Ground truth: the child's own acquire.
MP_CHILD_ACQUIRES = '''
import multiprocessing
def child():
    os._exit(0 if SVC.lock.acquire(timeout=2) else 3)
p = multiprocessing.get_context("fork").Process(target=child)
p.start()
p.join()
emit(code=p.exitcode, pid=p.pid)
busy_release.set()
busy.join()
'''


@pytest.mark.parametrize("shape", ["replaced-by-hook", "global-instance"])
def test_a_lock_replaced_at_fork_is_no_hazard_in_a_multiprocessing_child(fa_program, shape):
    result = fa_program(WARN_SHAPES[shape] + MP_CHILD_ACQUIRES)
    assert result.returncode == 0, result
    facts = result.facts
    [rec] = [r for r in result.children if r["pid"] == facts["pid"]]
    mine = [h for h in rec["hazards"] if (h["owner"] or {}).get("name") == "busy"]
    if shape == "replaced-by-hook":
        assert facts["code"] == 0, facts   # ground truth: the child takes the new lock
        assert mine == [], mine
    else:   # the control: the lock is not replaced, and the child cannot take it
        assert facts["code"] == 3, facts
        assert [(h["object"]["path"], h["reach"]) for h in mine] == [("__main__.SVC.lock", "global")], mine


def test_warn_report_counts_the_unreachable_locks_it_does_not_show(fa_program):
    result = fa_program(QUIET_PARENT + HOLD + WARN_SHAPES["local-only"].replace("busy", "quiet") + '''
pid, code, caught = fork_noting_warnings()
emit(pid=pid, code=code)
''', policy="warn")
    assert result.returncode == 0, result
    [rec] = result.children
    assert [h["reach"] for h in rec["hazards"]] == ["global"], rec["hazards"]
    assert [h["reach"] for h in rec["unreachable"]] == ["unreachable"], rec["unreachable"]
    err = result.stderr
    assert err.count("forkaudit: fork of pid") == 1, err
    assert "1 lock is held by threads that do not exist in the child" in err, err
    assert "[1] python_lock __main__.LOCK" in err and "[2]" not in err, err
    assert "and 1 more lock held at the fork that nothing in the child can reach" in err, err
