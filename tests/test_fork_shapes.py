"""The shapes forks come in: from a non-main thread, multiprocessing and
concurrent.futures process pools, a child that forks again, and subprocess
(fork + exec, never audited)."""
import sys

import pytest

HOLD = '''
LOCK = threading.Lock()
def enter(held, release):
    with LOCK:
        held.set()
        release.wait(60)
busy, _ = hold_in_thread("busy", enter)
'''


def hazards_of(rec):
    return [((h["object"] or {}).get("path"), h["kind"], (h["owner"] or {}).get("name")) for h in rec["hazards"]]


def test_fork_from_a_worker_thread_while_the_main_thread_holds_a_lock(fa_program):
    result = fa_program('''
LOCK = threading.Lock()
DONE = threading.Event()
out = {}
def child():
    return 1 if LOCK.acquire(timeout=0.2) else 0      # held by MainThread, gone in the child
def forker():
    wait_parked(threading.main_thread(), DONE._cond)  # main: inside `with LOCK:`, in DONE.wait
    out["pid"], out["code"] = fork_once(child)
    out["forker"] = threading.get_native_id()
    DONE.set()
t = threading.Thread(target=forker, name="forker")
with LOCK:
    t.start()
    DONE.wait(30)
t.join()
emit(main=threading.main_thread().native_id, **out)
''')
    assert result.returncode == 0, result
    facts = result.facts
    assert facts["code"] == 0, facts
    [rec] = result.children
    assert rec["pid"] == facts["pid"]
    assert rec["forking_thread"]["name"] == "forker"
    assert rec["forking_thread"]["native_id"] == facts["forker"]
    assert [(t["name"], t["native_id"]) for t in rec["threads"]] == [("MainThread", facts["main"])]
    assert hazards_of(rec) == [("__main__.LOCK", "python_lock", "MainThread")]
    [h] = rec["hazards"]
    assert h["owner"] == {"native_id": facts["main"], "name": "MainThread"}
    assert "thread 'MainThread'" in h["why"] and "in <module>() at snippet.py:" in h["why"]
    assert "(with LOCK)" in h["why"]
    assert [f["function"] for f in h["held_at"]][-3:] == ["<module>", "wait", "wait"]


POOLS = {
    "multiprocessing.Pool": '''
pool = ctx.Pool(2)
pids = [p.pid for p in pool._pool]
assert pool.map(work, range(6)) == [0, 2, 4, 6, 8, 10]
pool.close()
pool.join()          # close + join: every worker runs to its normal end
''',
    "ProcessPoolExecutor": '''
import concurrent.futures
with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
    assert list(ex.map(work, range(6))) == [0, 2, 4, 6, 8, 10]
    pids = list(ex._processes)
''',
}


@pytest.mark.parametrize("pool", sorted(POOLS))
def test_process_pool_with_fork_gives_one_record_per_worker(fa_program, pool):
    result = fa_program(HOLD + '''
import multiprocessing
ctx = multiprocessing.get_context("fork")
def work(x):
    return x * 2
''' + POOLS[pool] + '''
emit(pids=sorted(pids), parent=os.getpid(), busy=busy.native_id)
''')
    assert result.returncode == 0, result
    facts = result.facts
    assert len(facts["pids"]) == 2
    assert sorted(r["pid"] for r in result.children) == facts["pids"], result.records
    for rec in result.children:
        assert rec["parent_pid"] == facts["parent"]
        assert hazards_of(rec) == [("__main__.LOCK", "python_lock", "busy")], rec["hazards"]
        assert rec["hazards"][0]["owner"]["native_id"] == facts["busy"]
        assert "busy" in [t["name"] for t in rec["threads"]]


GRANDCHILD = '''
def grandchild():
    return GRANDCHILD_CHECK()
def child():
    pid, code = fork_once(grandchild)
    emit(child=os.getpid(), grandchild=pid, grandchild_code=code)
    return 0
pid, code = fork_once(child)
emit(first=pid, first_code=code, parent=os.getpid())
'''


def records_by_generation(result):
    facts = result.facts
    assert facts["first_code"] == 0 and facts["grandchild_code"] == 0, facts
    assert facts["child"] == facts["first"]
    by_pid = {r["pid"]: r for r in result.children}
    assert sorted(by_pid) == sorted([facts["first"], facts["grandchild"]]), result.records
    return by_pid[facts["first"]], by_pid[facts["grandchild"]], facts


def test_a_child_that_forks_again_single_threaded(fa_program):
    # The parent has a thread (parked, holding nothing); the child has only the forking thread.
    result = fa_program('''
EV = threading.Event()
idle = threading.Thread(target=EV.wait, args=(60,), name="idle", daemon=True)
idle.start()
wait_parked(idle, EV._cond)
GRANDCHILD_CHECK = lambda: 0
''' + GRANDCHILD)
    assert result.returncode == 0, result
    child, grandchild, facts = records_by_generation(result)
    assert child["parent_pid"] == facts["parent"]
    assert [t["name"] for t in child["threads"]] == ["idle"]
    assert child["hazards"] == []
    assert grandchild["parent_pid"] == facts["first"]
    assert grandchild["threads"] == []
    assert grandchild["hazards"] == [] and grandchild["reinitialized"] == []
    assert grandchild["forking_thread"]["native_id"] == facts["first"]


def test_a_child_that_forks_again_passes_on_the_held_lock(fa_program):
    # The child is single-threaded, so its fork has no threads; but LOCK is still held by
    # 'busy' (gone since the first fork): the grandchild deadlocks on it all the same.
    result = fa_program(HOLD + '''
GRANDCHILD_CHECK = lambda: 1 if LOCK.acquire(timeout=0.2) else 0
''' + GRANDCHILD + '''
emit(busy=busy.native_id)
''')
    assert result.returncode == 0, result
    child, grandchild, facts = records_by_generation(result)
    assert hazards_of(child) == [("__main__.LOCK", "python_lock", "busy")]
    assert grandchild["parent_pid"] == facts["first"]
    assert grandchild["threads"] == []
    assert hazards_of(grandchild) == [("__main__.LOCK", "python_lock", "busy")]
    [h] = grandchild["hazards"]
    assert h["owner"] == {"native_id": facts["busy"], "name": "busy"}
    assert "since an earlier fork" in h["why"] and "process %d" % facts["parent"] in h["why"]


def test_plain_subprocess_is_not_audited(fa_program):
    result = fa_program(HOLD + '''
import subprocess
subprocess.run([sys.executable, "-c", "pass"], check=True)
subprocess.run(["true"], check=True)
emit(ran=True)
pid, code = fork_once()          # a real fork of the same process is audited
emit(pid=pid)
''')
    assert result.returncode == 0, result
    assert result.facts["ran"] is True
    assert [r["pid"] for r in result.records] == [result.facts["pid"]]
    assert hazards_of(result.records[0]) == [("__main__.LOCK", "python_lock", "busy")]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="CPython warns about forking a threaded process from 3.12")
def test_cpythons_own_fork_warning_still_points_at_the_caller(fa_program):
    program = '''
import warnings
EV = threading.Event()
t = threading.Thread(target=EV.wait, args=(60,), name="idle", daemon=True); t.start()
wait_parked(t, EV._cond)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    fork_once()
emit(where=[os.path.basename(w.filename) for w in caught if w.category is DeprecationWarning])
fork_once()                       # under the default filters
'''
    plain = fa_program(program, install=False)
    assert plain.facts["where"] == ["snippet.py"]                   # CPython's own behaviour
    assert "is multi-threaded, use of fork() may lead to deadlocks" in plain.stderr
    audited = fa_program(program)
    assert audited.returncode == 0 and len(audited.children) == 2, audited
    assert audited.facts["where"] == ["snippet.py"]
    assert "is multi-threaded, use of fork() may lead to deadlocks" in audited.stderr
