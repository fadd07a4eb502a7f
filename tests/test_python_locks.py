"""Python-level locks held by a thread other than the forking one: which are found,
who is named as their owner, what path names them, and which are left alone.

Every program forks once from its main thread after the threads involved have
signalled (Events) and parked; most children also check the ground truth (is the
lock really stuck, or really free, in the child) and exit 0 when it holds.
"""
import pytest

STUCK_CHILD = '''
def child():
    """Exit 0 if every lock ground() calls stuck is stuck, and every one it calls free can be taken.

    (ground is a function so that the locks are not reachable from a module global: that would
    give them a shorter path than the one under test.)"""
    stuck, free = ground()
    for lock in stuck:
        if lock.acquire(timeout=0.2):
            return 1
    for lock in free:
        if not lock.acquire(timeout=1):
            return 2
        lock.release()
    return 0
'''


def one_record(fa_program, body, **kw):
    """Run `body` (which forks once); return (the child's record, the program's facts)."""
    result = fa_program(body, **kw)
    assert result.returncode == 0, result
    assert len(result.children) == 1, result
    rec = result.children[0]
    facts = result.facts
    if "pid" in facts:
        assert rec["pid"] == facts["pid"], (rec["pid"], facts)
    if "code" in facts:
        assert facts["code"] == 0, "the child's ground-truth check failed: %s" % facts
    return rec, facts


def summary(entries):
    return sorted(((e["object"] or {}).get("path"), e["kind"], (e["owner"] or {}).get("name"))
                  for e in entries)


def frames_of(stack):
    return [f["function"] for f in stack]


# --- discovery: each lock type, held by another thread -------------------------------------------

def test_lock_held_in_a_with_block(fa_program):
    rec, facts = one_record(fa_program, STUCK_CHILD + '''
LOCK = threading.Lock()
def enter(held, release):
    with LOCK:
        held.set()
        release.wait(30)
t, _ = hold_in_thread("holder", enter)
def ground():
    return [LOCK], []
pid, code = fork_once(child)
emit(pid=pid, code=code, native_id=t.native_id, parent=os.getpid())
''')
    assert summary(rec["hazards"]) == [("__main__.LOCK", "python_lock", "holder")]
    assert rec["reinitialized"] == []
    [h] = rec["hazards"]
    assert h["owner"] == {"native_id": facts["native_id"], "name": "holder"}
    assert h["object"]["type"] == "_thread.lock"
    assert h["by"] is None
    assert h["why"].startswith("a _thread.lock held by thread 'holder' (native id %d) in enter() at snippet.py:"
                               % facts["native_id"]), h["why"]
    assert "(with LOCK)" in h["why"] and h["why"].endswith("which does not exist in the child")
    # the owner's stack, innermost last: enter() parked in Event.wait
    names = frames_of(h["held_at"])
    assert names[-3:] == ["enter", "wait", "wait"], names
    enter = h["held_at"][-3]
    assert enter["file"].endswith("snippet.py")
    assert rec["parent_pid"] == facts["parent"]
    assert [(t["name"], t["native_id"]) for t in rec["threads"]] == [("holder", facts["native_id"])]
    assert rec["forking_thread"]["name"] == "MainThread"


def test_lock_taken_with_explicit_acquire_and_not_yet_released(fa_program):
    rec, _ = one_record(fa_program, STUCK_CHILD + '''
LOCK = threading.Lock()
def enter(held, release):
    LOCK.acquire()
    held.set()
    release.wait(30)
    LOCK.release()
hold_in_thread("acquirer", enter)
def ground():
    return [LOCK], []
pid, code = fork_once(child)
emit(pid=pid, code=code)
''')
    assert summary(rec["hazards"]) == [("__main__.LOCK", "python_lock", "acquirer")]
    assert "in enter() at snippet.py:" in rec["hazards"][0]["why"]
    assert "(after LOCK.acquire())" in rec["hazards"][0]["why"]


def test_lock_acquired_and_released_before_the_fork_is_not_reported(fa_program):
    # The same thread holds CONTROL at the fork: the audit did look at this thread.
    rec, _ = one_record(fa_program, STUCK_CHILD + '''
LOCK = threading.Lock()
CONTROL = threading.Lock()
def enter(held, release):
    LOCK.acquire()
    LOCK.release()
    with CONTROL:
        held.set()
        release.wait(30)
hold_in_thread("done-with-it", enter)
def ground():
    return [CONTROL], [LOCK]
pid, code = fork_once(child)
emit(pid=pid, code=code)
''')
    assert summary(rec["hazards"]) == [("__main__.CONTROL", "python_lock", "done-with-it")]


@pytest.mark.parametrize("factory,type_name", [
    ("threading.RLock()", "_thread.RLock"),      # the C implementation
    ("threading._PyRLock()", "threading._RLock"),  # the pure-Python one
])
def test_rlock_taken_twice(fa_program, factory, type_name):
    rec, facts = one_record(fa_program, STUCK_CHILD + '''
RL = %s
def enter(held, release):
    with RL:
        with RL:
            held.set()
            release.wait(30)
t, _ = hold_in_thread("rlock-owner", enter)
def ground():
    return [], []
def child():
    # another thread's RLock: acquire() must time out in the child
    return 1 if RL.acquire(timeout=0.2) else 0
pid, code = fork_once(child)
emit(pid=pid, code=code, native_id=t.native_id, type=type(RL).__module__ + "." + type(RL).__qualname__)
''' % factory)
    assert facts["type"] == type_name
    assert summary(rec["hazards"]) == [("__main__.RL", "python_rlock", "rlock-owner")]
    [h] = rec["hazards"]
    assert h["object"]["type"] == type_name
    assert h["owner"]["native_id"] == facts["native_id"]
    assert "(acquired 2 times)" in h["why"] and "thread 'rlock-owner'" in h["why"]
    assert "(with RL)" in h["why"]


@pytest.mark.parametrize("cond_factory,kind", [
    ("threading.Condition()", "python_rlock"),                  # default: an RLock inside
    ("threading.Condition(threading.Lock())", "python_lock"),
])
def test_condition_held_in_its_with_body_is_a_hazard_on_its_lock(fa_program, cond_factory, kind):
    rec, _ = one_record(fa_program, STUCK_CHILD + '''
COND = %s
def enter(held, release):
    with COND:
        held.set()
        release.wait(30)
hold_in_thread("cond-holder", enter)
def ground():
    return [COND._lock], []
pid, code = fork_once(child)
emit(pid=pid, code=code)
''' % cond_factory)
    assert summary(rec["hazards"]) == [("__main__.COND._lock", kind, "cond-holder")]
    assert rec["hazards"][0]["why"].startswith("the lock of a Condition held by thread 'cond-holder'")
    assert "(with COND)" in rec["hazards"][0]["why"]


SEMAPHORE_BODY = STUCK_CHILD + '''
SEM = threading.%s(%d)
def enter(held, release):
    with SEM:
        held.set()
        release.wait(30)
hold_in_thread("sem-holder", enter)
def child():
    got = SEM.acquire(timeout=0.2)
    return 0 if got == EXPECT_FREE else 1
EXPECT_FREE = %r
pid, code = fork_once(child)
emit(pid=pid, code=code)
'''


@pytest.mark.parametrize("factory", ["Semaphore", "BoundedSemaphore"])
def test_semaphore_at_zero_held_in_with_block(fa_program, factory):
    rec, _ = one_record(fa_program, SEMAPHORE_BODY % (factory, 1, False))
    assert [(h["kind"], h["owner"]["name"], h["object"]["type"]) for h in rec["hazards"]] == [
        ("semaphore", "sem-holder", "threading." + factory)]
    why = rec["hazards"][0]["why"]
    assert why.startswith("a threading.%s held by thread 'sem-holder'" % factory), why
    assert "(with SEM)" in why


def test_semaphore_hazard_is_named_by_its_path(fa_program):
    rec, _ = one_record(fa_program, SEMAPHORE_BODY % ("BoundedSemaphore", 1, False))
    assert [h["object"]["path"] for h in rec["hazards"]] == ["__main__.SEM"]


def test_semaphore_with_a_slot_left_is_not_a_hazard(fa_program):
    rec, _ = one_record(fa_program, SEMAPHORE_BODY % ("Semaphore", 2, True))
    assert rec["hazards"] == [] and rec["reinitialized"] == []
    assert [t["name"] for t in rec["threads"]] == ["sem-holder"]


def test_queue_mutex_held_inside_put(fa_program):
    rec, _ = one_record(fa_program, STUCK_CHILD + '''
import queue
ENTERED, PROCEED = threading.Event(), threading.Event()
class SlowQueue(queue.Queue):
    def _put(self, item):          # runs inside Queue.put, under `with self.not_full:`
        ENTERED.set()
        PROCEED.wait(30)
        super()._put(item)
Q = SlowQueue()
t = threading.Thread(target=Q.put, args=("item",), name="putter", daemon=True)
t.start()
ENTERED.wait(10)
wait_parked(t, PROCEED._cond)
def ground():
    return [Q.mutex], []
pid, code = fork_once(child)
emit(pid=pid, code=code)
''')
    assert summary(rec["hazards"]) == [("__main__.Q.mutex", "python_lock", "putter")]
    [h] = rec["hazards"]
    assert h["why"].startswith("the mutex of a __main__.SlowQueue held by thread 'putter'"), h["why"]
    assert "in put() at queue.py:" in h["why"] and "(with self.not_full)" in h["why"]
    assert frames_of(h["held_at"])[-4:] == ["put", "_put", "wait", "wait"]


# --- locks the standard library resets in the child: reinitialized, not hazards -------------------

@pytest.mark.parametrize("how", ["with handler.lock:", "handler.acquire()"])
def test_logging_handler_lock_is_reinitialized_by_logging(fa_program, how):
    rec, facts = one_record(fa_program, STUCK_CHILD + '''
import io, logging
def setup():                      # the handler is reachable only through its logger
    logging.getLogger("app").addHandler(logging.StreamHandler(io.StringIO()))
setup()
def enter(held, release):
    handler = logging.getLogger("app").handlers[0]
    %s
        held.set()
        release.wait(30)
t, _ = hold_in_thread("handler-holder", enter)
def ground():
    return [], [logging.getLogger("app").handlers[0].lock]
pid, code = fork_once(child)
emit(pid=pid, code=code, native_id=t.native_id)
''' % (how if how.endswith(":") else "if True:\n        " + how))
    assert rec["hazards"] == []
    assert summary(rec["reinitialized"]) == [
        ("logging.getLogger('app').handlers[0].lock", "python_rlock", "handler-holder")]
    [r] = rec["reinitialized"]
    assert r["by"] == "logging"
    assert r["owner"]["native_id"] == facts["native_id"]
    assert r["why"].startswith("the lock of logging.StreamHandler writing to StringIO on logging.getLogger('app') "
                               "was held by thread 'handler-holder'"), r["why"]
    assert r["why"].endswith("at the fork; logging's at-fork handler reset it in the child")


@pytest.mark.parametrize("how", ["with_block", "helper"])
def test_logging_module_lock_released_into_loggings_fork_hook_is_not_reported(fa_program, how):
    # logging's before-fork hook takes logging._lock, so os.fork() waits for its holder. The
    # holder lets go only once the main thread waits there, after forkaudit's own before-fork
    # hook (registered later, so it runs first) has seen the lock held.
    # how: inside `with logging._lock:`, or taken in a helper that returned (no frame shows
    # it: found as a lock logging resets, its owner read off the RLock).
    rec, facts = one_record(fa_program, STUCK_CHILD + '''
import logging
forkaudit.install(policy="record", json_path=REPORT)
main_ident = threading.main_thread().ident
def in_logging_fork_hook():
    f, _ = innermost(main_ident)
    return f is not None and f.f_code.co_filename == logging.__file__
ready = threading.Event()
def with_block():
    with logging._lock:
        ready.set()
        wait_for(in_logging_fork_hook, "the fork to wait in logging's hook", timeout=20)
def grab():
    logging._lock.acquire()
def helper():
    grab()
    ready.set()
    wait_for(in_logging_fork_hook, "the fork to wait in logging's hook", timeout=20)
    logging._lock.release()
t = threading.Thread(target=%s, name="logging-locker", daemon=True)
t.start()
ready.wait(10)
wait_at(t, "wait_for", "time.sleep(")
def ground():
    return [], [logging._lock]
pid, code = fork_once(child)
emit(pid=pid, code=code, native_id=t.native_id)
''' % how, install=False)
    # logging-locker let go before the fork (logging's own hook then took the lock in the
    # forking thread): at the fork the lock was the child's own, so it is not reported at all
    assert rec["hazards"] == []
    assert [e for e in rec["reinitialized"] if e["object"]["path"] == "logging._lock"] == []


# --- precision: threads that wait hold nothing ----------------------------------------------------

# Each program also has thread 'control' holding CONTROL, so an audit that saw nothing fails.
CONTROL = '''
CONTROL = threading.Lock()
def _control(held, release):
    with CONTROL:
        held.set()
        release.wait(60)
hold_in_thread("control", _control)
'''

WAITERS = {
    "condition_wait": '''
COND = threading.Condition()
def w():
    with COND:
        COND.wait(60)
t = threading.Thread(target=w, name="waiter", daemon=True); t.start()
wait_parked(t, COND)
''',
    "event_wait": '''
EV = threading.Event()
t = threading.Thread(target=EV.wait, args=(60,), name="waiter", daemon=True); t.start()
wait_parked(t, EV._cond)
''',
    "queue_get": '''
import queue
Q = queue.Queue()
t = threading.Thread(target=Q.get, kwargs={"timeout": 60}, name="waiter", daemon=True); t.start()
wait_parked(t, Q.not_empty)
''',
    "time_sleep": '''
def w():
    time.sleep(60)
t = threading.Thread(target=w, name="waiter", daemon=True); t.start()
wait_at(t, "w", "time.sleep(")
''',
    "thread_join": '''
EV = threading.Event()
T0 = threading.Thread(target=EV.wait, args=(60,), name="joined", daemon=True); T0.start()
wait_parked(T0, EV._cond)
t = threading.Thread(target=T0.join, name="waiter", daemon=True); t.start()
# 3.9-3.12: in _wait_for_tstate_lock, taking T0's _tstate_lock; 3.13: in join, on T0's handle
wait_for(lambda: innermost(t.ident)[0] is not None
         and innermost(t.ident)[0].f_code.co_name in ("_wait_for_tstate_lock", "join")
         and ("acquire(" in innermost(t.ident)[1] or "_handle.join(" in innermost(t.ident)[1]), "join")
''',
    "idle_thread_pool": '''
import concurrent.futures
POOL = concurrent.futures.ThreadPoolExecutor(3, thread_name_prefix="pool")
assert list(POOL.map(abs, range(-20, 20))) == [abs(i) for i in range(-20, 20)]
for t in list(POOL._threads):
    wait_at(t, "_worker", "work_queue.get(block=True)")
''',
}


@pytest.mark.parametrize("waiter", sorted(WAITERS))
def test_waiting_threads_hold_nothing(fa_program, waiter):
    rec, _ = one_record(fa_program, CONTROL + WAITERS[waiter] + '''
pid, code = fork_once()
emit(pid=pid, code=code)
''')
    assert summary(rec["hazards"]) == [("__main__.CONTROL", "python_lock", "control")], rec["hazards"]
    # (concurrent.futures' own before-fork hook holds its _global_shutdown_lock: never reported)
    assert [e for e in rec["reinitialized"] if e["object"]["path"] != "concurrent.futures.thread._global_shutdown_lock"] == []
    names = [t["name"] for t in rec["threads"]]
    if waiter == "idle_thread_pool":
        assert sum(n.startswith("pool_") for n in names) == 3, names
    else:
        assert "waiter" in names, names


def test_lock_taken_by_another_modules_before_fork_hook_is_not_reported(fa_program, tmp_path):
    report = str(tmp_path / "activated.jsonl")
    result = fa_program('''
import concurrent.futures.thread      # registers its at-fork hooks after forkaudit's (.pth) ones
EV = threading.Event()
t = threading.Thread(target=EV.wait, args=(60,), name="idle", daemon=True); t.start()
wait_parked(t, EV._cond)
pid, code = fork_once()
emit(pid=pid, code=code)
''', install=False, env={"FORKAUDIT": "record", "FORKAUDIT_JSON": report})
    assert result.returncode == 0, result
    import json
    with open(report) as f:
        [rec] = [json.loads(line) for line in f]
    assert rec["pid"] == result.facts["pid"]
    assert rec["hazards"] == []
    assert rec["reinitialized"] == [], rec["reinitialized"]


ASLEEP_ON_A_LOCK = '''
def asleep_in_futex(t):
    """The kernel shows the thread asleep in futex(2) (x86_64: syscall 202)."""
    try:
        with open("/proc/self/task/%d/syscall" % t.native_id) as f:
            return f.read().split()[0] == "202"
    except OSError:
        time.sleep(0.2)
        return True
'''


@pytest.mark.parametrize("factory", ["threading.Lock()", "threading.RLock()"])
def test_thread_waiting_for_a_lock_the_forking_thread_holds_is_no_owner(fa_program, factory):
    rec, _ = one_record(fa_program, ASLEEP_ON_A_LOCK + CONTROL + '''
LOCK = %s
def blocked():
    with LOCK:
        pass
def child():
    # the child is the forking thread: it owns LOCK and may let it go
    LOCK.release()
    return 0 if LOCK.acquire(timeout=1) else 1
with LOCK:
    t = threading.Thread(target=blocked, name="blocked", daemon=True); t.start()
    wait_at(t, "blocked", "with LOCK:")
    wait_for(lambda: asleep_in_futex(t), "the thread to sleep on LOCK")
    pid, code = fork_once(child)
emit(pid=pid, code=code)
''' % factory)
    assert summary(rec["hazards"]) == [("__main__.CONTROL", "python_lock", "control")], rec["hazards"]


def test_thread_waiting_for_a_lock_another_thread_holds_is_not_its_owner(fa_program):
    rec, facts = one_record(fa_program, ASLEEP_ON_A_LOCK + STUCK_CHILD + '''
LOCK = threading.Lock()
def enter(held, release):
    with LOCK:
        held.set()
        release.wait(30)
holder, _ = hold_in_thread("holder", enter)
def blocked():
    with LOCK:
        pass
t = threading.Thread(target=blocked, name="blocked", daemon=True); t.start()
wait_at(t, "blocked", "with LOCK:")
wait_for(lambda: asleep_in_futex(t), "the thread to sleep on LOCK")
def ground():
    return [LOCK], []
pid, code = fork_once(child)
emit(pid=pid, code=code, holder=holder.native_id)
''')
    assert summary(rec["hazards"]) == [("__main__.LOCK", "python_lock", "holder")]
    assert rec["hazards"][0]["owner"]["native_id"] == facts["holder"]
    assert sorted(t["name"] for t in rec["threads"]) == ["blocked", "holder"]


@pytest.mark.c_level
def test_lock_granted_to_a_waiter_just_before_the_fork_is_the_waiters(fa_program):
    # The seed deadlock's mechanism: the forking thread lets go of LOCK while 'waiter' sleeps on
    # it; the kernel hands the lock to 'waiter', whose acquire() cannot return before it gets
    # the GIL back (a long switch interval keeps it with the forking thread). LOCK.locked()
    # still says False at the fork; in the child LOCK is taken for good.
    rec, facts = one_record(fa_program, ASLEEP_ON_A_LOCK + STUCK_CHILD + '''
from forkaudit import cpython_layout
LOCK = threading.Lock()
def waiter():
    with LOCK:
        pass
def ground():
    return [LOCK], []
sys.setswitchinterval(5.0)
LOCK.acquire()
t = threading.Thread(target=waiter, name="waiter", daemon=True); t.start()
wait_at(t, "waiter", "with LOCK:")
wait_for(lambda: asleep_in_futex(t), "the thread to sleep on LOCK")
LOCK.release()
# until the waiter's own sem_wait has taken LOCK's semaphore (right after release() it can still
# be 1: the waiter not yet scheduled). A spin, the GIL kept: a sleep here would let the waiter
# take the GIL, run its `with LOCK: pass` and release LOCK before the fork
deadline = time.monotonic() + 5
while cpython_layout.taken(LOCK) is not True:
    if time.monotonic() > deadline:
        sys.exit("the kernel never handed LOCK to the waiter")
pid, code = fork_once(child)
emit(pid=pid, code=code, native_id=t.native_id)
''')
    assert summary(rec["hazards"]) == [("__main__.LOCK", "python_lock", "waiter")]
    [h] = rec["hazards"]
    assert h["owner"]["native_id"] == facts["native_id"]
    assert "in waiter() at snippet.py:" in h["why"] and "(at LOCK)" in h["why"], h["why"]
    assert "granted at the fork" in h["why"]


def test_forking_threads_own_locks_are_not_hazards(fa_program):
    rec, _ = one_record(fa_program, CONTROL + '''
L, R = threading.Lock(), threading.RLock()
def child():
    L.release(); R.release(); R.release()      # the child's own: it may let them go
    return 0 if L.acquire(timeout=1) and R.acquire(timeout=1) else 1
with L:
    with R:
        with R:
            pid, code = fork_once(child)
emit(pid=pid, code=code)
''')
    assert summary(rec["hazards"]) == [("__main__.CONTROL", "python_lock", "control")], rec["hazards"]
    assert rec["reinitialized"] == []


# --- names: the shortest path a user could type ---------------------------------------------------

NAMED = STUCK_CHILD + '''
%s
def enter(held, release):
    with %s:
        held.set()
        release.wait(30)
hold_in_thread("namer", enter)
def ground():
    return [%s], []
pid, code = fork_once(child)
emit(pid=pid, code=code)
'''


@pytest.mark.parametrize("setup,expr,path", [
    ("LOCK = threading.Lock()", "LOCK", "__main__.LOCK"),
    ("class Obj:\n    def __init__(self):\n        self._lock = threading.Lock()\nOBJ = Obj()",
     "OBJ._lock", "__main__.OBJ._lock"),
    ("class Svc:\n    def __init__(self):\n        self.lock = threading.Lock()\nREG = {'db': [None, Svc()], 'x': []}",
     "REG['db'][1].lock", "__main__.REG['db'][1].lock"),
    ("import helpermod", "helpermod.X", "helpermod.X"),
], ids=["module-global", "attribute", "dict-then-list", "helper-module"])
def test_lock_paths(fa_program, tmp_path, setup, expr, path):
    (tmp_path / "helpermod.py").write_text("import threading\nX = threading.Lock()\n")
    rec, _ = one_record(fa_program, NAMED % (setup, expr, expr))
    assert summary(rec["hazards"]) == [(path, "python_lock", "namer")]


def test_lock_held_by_a_method_through_self_is_named_from_the_module(fa_program):
    rec, _ = one_record(fa_program, STUCK_CHILD + '''
class Cache:
    def __init__(self):
        self._lock = threading.Lock()
    def fill(self, held, release):
        with self._lock:
            held.set()
            release.wait(30)
CACHE = Cache()
hold_in_thread("cache-filler", CACHE.fill)
def ground():
    return [CACHE._lock], []
pid, code = fork_once(child)
emit(pid=pid, code=code)
''')
    assert summary(rec["hazards"]) == [("__main__.CACHE._lock", "python_lock", "cache-filler")]
    assert "(with self._lock)" in rec["hazards"][0]["why"]


@pytest.mark.parametrize("logger,prefix", [
    ("", "logging.getLogger()"),
    ("'app'", "logging.getLogger('app')"),
])
def test_queue_handler_mutex_is_named_from_its_logger(fa_program, logger, prefix):
    rec, facts = one_record(fa_program, STUCK_CHILD + '''
import logging, logging.handlers, queue
ENTERED, PROCEED = threading.Event(), threading.Event()
class SlowQueue(queue.Queue):
    def _put(self, item):
        ENTERED.set()
        PROCEED.wait(30)
        super()._put(item)
def setup():                      # the queue is reachable only through the handler
    logging.getLogger(%s).addHandler(logging.handlers.QueueHandler(SlowQueue()))
setup()
t = threading.Thread(target=logging.getLogger(%s).error, args=("hello",), name="log-writer", daemon=True)
t.start()
ENTERED.wait(10)
wait_parked(t, PROCEED._cond)
def ground():
    handler = logging.getLogger(%s).handlers[0]
    return [handler.queue.mutex], [handler.lock]
pid, code = fork_once(child)
emit(pid=pid, code=code, native_id=t.native_id)
''' % (logger, logger, logger))
    assert summary(rec["hazards"]) == [(prefix + ".handlers[0].queue.mutex", "python_lock", "log-writer")]
    [h] = rec["hazards"]
    assert h["owner"]["native_id"] == facts["native_id"]
    assert h["why"].startswith("the mutex of a __main__.SlowQueue held by thread 'log-writer'"), h["why"]
    # the handler's own lock is held too (Handler.handle), but logging resets it
    assert [(e["object"]["path"], e["kind"], e["owner"]["name"], e["by"]) for e in rec["reinitialized"]] == [
        (prefix + ".handlers[0].lock", "python_rlock", "log-writer", "logging")]


# --- owner unknown --------------------------------------------------------------------------------

@pytest.mark.c_level
@pytest.mark.parametrize("held", [1, 3, 0], ids=["held", "three-held", "control-free"])
def test_lock_held_deep_in_a_large_container_is_found(fa_program, held):
    # The walk takes the first 2000 items of a container: a lock among a million entries is
    # beyond it. The scan finds it held; the audit reads it back and names it through the dict
    # that is a module global (one pass over the modules for all such locks). Control: the
    # same locks left free are no hazard.
    rec, _ = one_record(fa_program, STUCK_CHILD + '''
HELD = %d
REGISTRY = {"item%%d" %% i: i for i in range(1000000)}
NAMES = ["zz-lock-%%d" %% i for i in range(3)]
for name in NAMES:
    REGISTRY[name] = threading.Lock()
def grab():
    for name in NAMES[:HELD]:
        REGISTRY[name].acquire()     # returns with them held: no frame shows them any more
def enter(held, release):
    grab()
    held.set()
    release.wait(30)
hold_in_thread("sneaky", enter)
def ground():
    locks = [REGISTRY[name] for name in NAMES]
    return locks[:HELD], locks[HELD:]
pid, code = fork_once(child)
emit(pid=pid, code=code)
''' % held, timeout=120)
    expected = [("__main__.REGISTRY['zz-lock-%d']" % i, "python_lock", None) for i in range(held)]
    assert summary(rec["hazards"]) == expected, rec["hazards"]
    assert all(h["reach"] == "global" for h in rec["hazards"]), rec["hazards"]


def test_lock_taken_in_a_function_that_returned_has_owner_unknown(fa_program):
    # 'done' took LOCK and released it earlier in its function: that must not make it the owner
    rec, _ = one_record(fa_program, STUCK_CHILD + '''
LOCK = threading.Lock()
def grab():
    LOCK.acquire()          # returns with LOCK held: no frame shows it any more
def enter(held, release):
    grab()
    held.set()
    release.wait(30)
def done(held, release):
    LOCK.acquire()
    LOCK.release()
    held.set()
    release.wait(30)
hold_in_thread("done", done)
hold_in_thread("sneaky", enter)
def ground():
    return [LOCK], []
pid, code = fork_once(child)
emit(pid=pid, code=code)
''')
    assert summary(rec["hazards"]) == [("__main__.LOCK", "python_lock", None)]
    [h] = rec["hazards"]
    assert h["owner"] is None and h["held_at"] is None
    assert "owner unknown" in h["why"] and "no thread's stack shows who holds it" in h["why"]
    assert "sneaky" not in h["why"] and "'done'" not in h["why"]      # not guessed
    assert h["why"].endswith("it stays locked in the child")
