"""Policies (warn, record, abort, raise) and the shapes forks come in."""
import json
import os
import subprocess
import sys

import pytest

from forkcase import snippet

HOLD_LOCK = '''
LOCK = threading.Lock()
def enter(held, release):
    with LOCK:
        held.set(); release.wait(30)
hold("busy", enter)
'''


def test_warn_writes_the_report_on_the_childs_stderr_and_warns_the_parent(run_python):
    result = run_python(snippet(HOLD_LOCK + '''
import warnings, logging
logging.basicConfig()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    fork_once()
print("WARNINGS", [w.category.__name__ for w in caught if w.category is not DeprecationWarning])
print("IS_RUNTIME", issubclass(forkaudit.ForkHazardWarning, RuntimeWarning))
''', policy="warn"))
    assert result.returncode == 0, result
    err = result.stderr
    assert "1 lock is held by threads that do not exist in the child" in err
    assert "__main__.LOCK" in err and "owner: thread 'busy'" in err
    assert "its stack at the fork (innermost last)" in err
    assert "fork called from thread 'MainThread'" in err
    assert "fix: reset the lock in the child (in the main module): os.register_at_fork(after_in_child=" in err
    # order: hazard, then fork site, then fix
    assert err.index("[1] python_lock") < err.index("fork called from") < err.index("fix:")
    assert "WARNINGS ['ForkHazardWarning']" in result.stdout
    assert "IS_RUNTIME True" in result.stdout
    # one parent line per hazardous fork: the warning (logging.captureWarnings routes it to
    # logging for programs that want it there), not a second copy on the 'forkaudit' logger
    assert "WARNING:forkaudit:" not in err


@pytest.mark.c_level
def test_record_writes_json_only(run_python):
    result = run_python(snippet(HOLD_LOCK + "fork_once()\n", policy="record"))
    assert result.returncode == 0
    # nothing from forkaudit (CPython 3.12+ may print its own fork DeprecationWarning)
    assert "forkaudit" not in result.stderr and "held by threads" not in result.stderr
    assert len(result.children) == 1 and result.children[0]["hazards"]


def test_abort_now_ends_a_hazardous_child_with_status_86(run_python):
    result = run_python(snippet('''
status = fork_once()
print("CLEAN", os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8)
''' + HOLD_LOCK + '''
status = fork_once()
print("HAZARD", os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8)
''', policy="abort-now"))
    assert result.returncode == 0, result
    assert "CLEAN 0" in result.stdout
    assert "HAZARD 86" in result.stdout
    assert "exits with status 86 instead of deadlocking" in result.stderr


def test_raise_refuses_to_fork(run_python):
    result = run_python(snippet(HOLD_LOCK + '''
children = []
try:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    children.append(pid)
except forkaudit.ForkHazardError as err:
    ev = err.event
    print("REFUSED", ev["side"], ev["hazards"][0]["object"]["path"], ev["hazards"][0]["owner"]["name"])
    print("TEXT", "refused to fork" in str(err), "__main__.LOCK" in str(err))
    print("LAST", forkaudit.last_event() is ev)
print("CHILDREN", len(children))
''', policy="raise"))
    assert result.returncode == 0, result
    assert "REFUSED parent __main__.LOCK busy" in result.stdout
    assert "TEXT True True" in result.stdout
    assert "LAST True" in result.stdout
    assert "CHILDREN 0" in result.stdout
    assert result.children == []


def test_raise_lets_a_safe_fork_through(run_python):
    result = run_python(snippet("fork_once()\nprint('FORKED')\n", policy="raise"))
    assert result.returncode == 0, result
    assert "FORKED" in result.stdout and len(result.children) == 1


def test_fork_from_a_worker_thread_while_main_holds_a_lock(run_python):
    result = run_python(snippet('''
LOCK = threading.Lock()
with LOCK:
    t = threading.Thread(target=fork_once, name="forker"); t.start(); t.join()
'''))
    assert result.returncode == 0, result
    [rec] = result.children
    assert rec["forking_thread"]["name"] == "forker"
    assert [(h["object"]["path"], h["owner"]["name"]) for h in rec["hazards"]] == [("__main__.LOCK", "MainThread")]


@pytest.mark.parametrize("pool", ["multiprocessing", "futures"])
def test_process_pools_with_fork_give_one_record_per_worker(run_python, pool):
    body = HOLD_LOCK + '''
import multiprocessing, concurrent.futures
ctx = multiprocessing.get_context("fork")
def work(x):
    return x * 2
if POOL == "multiprocessing":
    p = ctx.Pool(2)
    assert p.map(work, range(6)) == [0, 2, 4, 6, 8, 10]
    p.close(); p.join()   # close + join: every worker runs to its end (terminate() could kill one early)
else:
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        assert list(ex.map(work, range(6))) == [0, 2, 4, 6, 8, 10]
print("DONE")
'''
    result = run_python(snippet("POOL = %r\n" % pool + body))
    assert result.returncode == 0, result
    assert len(result.children) >= 2, result
    for rec in result.children:
        assert [(h["object"]["path"], h["owner"]["name"]) for h in rec["hazards"]] == [("__main__.LOCK", "busy")]


def test_a_child_that_forks_again(run_python):
    result = run_python(snippet(HOLD_LOCK + '''
pid = os.fork()
if pid == 0:
    fork_once()          # the grandchild inherits LOCK still held by 'busy', gone in both
    os._exit(0)
os.waitpid(pid, 0)
'''))
    assert result.returncode == 0, result
    children = {r["pid"]: r for r in result.children}
    assert len(children) == 2
    [child] = [r for r in children.values() if r["parent_pid"] not in children]
    [grandchild] = [r for r in children.values() if r["parent_pid"] == child["pid"]]
    assert [(h["object"]["path"], h["owner"]["name"]) for h in child["hazards"]] == [("__main__.LOCK", "busy")]
    assert grandchild["threads"] == []   # the child was single-threaded
    assert [(h["object"]["path"], h["owner"]["name"]) for h in grandchild["hazards"]] == [("__main__.LOCK", "busy")]
    assert "since an earlier fork" in grandchild["hazards"][0]["why"]


def test_plain_subprocess_is_not_audited(run_python):
    result = run_python(snippet(HOLD_LOCK + '''
import subprocess
subprocess.run([sys.executable, "-c", "pass"], check=True)
subprocess.run(["true"], check=True)
print("RAN")
'''))
    assert result.returncode == 0, result
    assert "RAN" in result.stdout
    assert result.records == []


def test_install_is_idempotent_and_uninstall_stops(run_python):
    result = run_python(snippet('''
forkaudit.install(policy="record", json_path=REPORT)       # a second time: same hooks
t = threading.Thread(target=time.sleep, args=(2,), daemon=True); t.start()
fork_once()
forkaudit.uninstall()
fork_once()
print("INSTALLED", forkaudit.installed())
'''))
    assert result.returncode == 0, result
    assert len(result.records) == 1
    assert "INSTALLED None" in result.stdout


def test_second_install_changes_the_settings(run_python, tmp_path):
    other = tmp_path / "other.jsonl"
    result = run_python(snippet('''
forkaudit.install(policy="record", json_path=%r, scan="off")
fork_once()
''' % str(other)))
    assert result.returncode == 0, result
    assert result.records == []
    recs = [json.loads(line) for line in other.read_text().splitlines()]
    assert len(recs) == 1 and recs[0]["scan"] is None


def test_last_event_in_the_child(run_python):
    result = run_python(snippet(HOLD_LOCK + '''
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    ev = forkaudit.last_event()
    os.write(w, ("%s %d" % (ev["side"], len(ev["hazards"]))).encode())
    os._exit(0)
os.waitpid(pid, 0)
print("LAST", os.read(r, 100).decode())
'''))
    assert "LAST child 1" in result.stdout, result


def test_warning_made_an_error_never_loses_the_child(run_python):
    # the child exists once fork() returned: raising from os.fork in the parent would lose its
    # pid, so a ForkHazardWarning the program made an error is said in one line instead
    result = run_python(snippet(HOLD_LOCK + '''
import warnings
warnings.simplefilter("error", forkaudit.ForkHazardWarning)
try:
    status = fork_once()
    print("RETURNED", status == 0)
except forkaudit.ForkHazardWarning as w:
    print("RAISED")
''', policy="warn"))
    assert "RETURNED True" in result.stdout, result
    ours = [l for l in result.stderr.splitlines() if l.startswith("forkaudit: ForkHazardWarning")]
    assert len(ours) == 1 and "thread 'busy' holds" in ours[0], result.stderr
    assert "failed" not in result.stderr


@pytest.mark.c_level
def test_internal_errors_fail_open(run_python):
    result = run_python(snippet(HOLD_LOCK + '''
from forkaudit import pylocks
def broken(*a, **k):
    raise ValueError("boom")
pylocks.audit = broken
pylocks.audit_parent = broken
forkaudit.install(policy="raise", json_path=REPORT)
fork_once()
forkaudit.install(policy="record", json_path=REPORT)
fork_once()
print("STILL RUNNING")
'''))
    assert result.returncode == 0, result
    assert "STILL RUNNING" in result.stdout
    lines = [l for l in result.stderr.splitlines() if l.startswith("forkaudit:")]
    assert len(lines) == 1 and "failed (ValueError: boom)" in lines[0], result.stderr
