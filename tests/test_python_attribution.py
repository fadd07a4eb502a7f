"""Python-level locks: discovery, owner attribution, names and classification."""
import pytest

from forkcase import IN_WRITE, snippet


@pytest.fixture
def audit(run_python, schema_validator):
    """Run a forking body; return the single child record (validated against the schema)."""
    def run(body, **kw):
        result = run_python(snippet(body, **kw))
        assert result.returncode == 0, result
        assert len(result.children) == 1, result
        rec = result.children[0]
        errors = list(schema_validator.iter_errors(rec))
        assert not errors, errors
        return rec
    return run


def summary(entries):
    return sorted(((e["object"] or {}).get("path"), e["kind"], (e["owner"] or {}).get("name")) for e in entries)


def test_module_lock_in_a_with_block(audit):
    rec = audit('''
        LOCK = threading.Lock()
        def enter(held, release):
            with LOCK:
                held.set(); release.wait(30)
        hold("holder", enter); fork_once()
    ''')
    assert summary(rec["hazards"]) == [("__main__.LOCK", "python_lock", "holder")]
    h = rec["hazards"][0]
    assert "with LOCK" in h["why"] and "does not exist in the child" in h["why"]
    assert h["held_at"][-1]["function"] == "wait"          # innermost last
    assert any(f["function"] == "enter" for f in h["held_at"])
    assert h["address"].startswith("0x")


def test_explicit_acquire_without_release(audit):
    rec = audit('''
        LOCK = threading.Lock()
        def enter(held, release):
            LOCK.acquire()
            held.set(); release.wait(30)
            LOCK.release()
        hold("acquirer", enter); fork_once()
    ''')
    assert summary(rec["hazards"]) == [("__main__.LOCK", "python_lock", "acquirer")]
    assert "LOCK.acquire()" in rec["hazards"][0]["why"]


def test_acquired_and_released_before_the_fork(audit):
    rec = audit('''
        LOCK = threading.Lock()
        def enter(held, release):
            LOCK.acquire(); LOCK.release()
            held.set(); release.wait(30)
        hold("done", enter); fork_once()
    ''')
    assert rec["hazards"] == []


@pytest.mark.parametrize("factory,kind", [("threading.RLock()", "python_rlock"),
                                          ("threading._PyRLock()", "python_rlock")])
def test_rlock_taken_twice_names_its_owner(audit, factory, kind):
    rec = audit('''
        RL = %s
        def enter(held, release):
            with RL:
                with RL:
                    held.set(); release.wait(30)
        hold("rlock-owner", enter); fork_once()
    ''' % factory)
    assert summary(rec["hazards"]) == [("__main__.RL", kind, "rlock-owner")]
    assert "acquired 2 times" in rec["hazards"][0]["why"]


def test_condition_lock_held_in_with_body(audit):
    rec = audit('''
        COND = threading.Condition(threading.Lock())
        def enter(held, release):
            with COND:
                held.set(); release.wait(30)
        hold("cond-holder", enter); fork_once()
    ''')
    assert summary(rec["hazards"]) == [("__main__.COND._lock", "python_lock", "cond-holder")]


def test_semaphore_with_no_slot_left(audit):
    rec = audit('''
        SEM = threading.BoundedSemaphore(1)
        def enter(held, release):
            with SEM:
                held.set(); release.wait(30)
        hold("sem-holder", enter); fork_once()
    ''')
    assert [(h["kind"], h["object"]["path"], h["owner"]["name"]) for h in rec["hazards"]] == [
        ("semaphore", "__main__.SEM", "sem-holder")]


def test_semaphore_used_as_a_signal_is_not_a_hazard(audit):
    rec = audit('''
        READY = threading.Semaphore(0)          # released by a producer, not held by anyone
        t = threading.Thread(target=READY.acquire, name="consumer", daemon=True); t.start()
        time.sleep(0.2); fork_once()
    ''')
    assert rec["hazards"] == []


def test_queue_mutex_held_inside_put(audit):
    rec = audit('''
        import queue
        class Slow(queue.Queue):
            def _put(self, item):
                GATE.set(); STOP.wait(30); super()._put(item)
        GATE, STOP = threading.Event(), threading.Event()
        Q = Slow()
        def enter(held, release):
            held.set(); Q.put(1)
        hold("putter", enter); GATE.wait(10); fork_once(); STOP.set()
    ''')
    assert summary(rec["hazards"]) == [("__main__.Q.mutex", "python_lock", "putter")]
    assert "with self.not_full" in rec["hazards"][0]["why"]


def test_queue_handler_mutex_and_handler_lock_reset_by_logging(audit):
    rec = audit('''
        import logging, logging.handlers, queue
        GATE, STOP = threading.Event(), threading.Event()
        class Slow(queue.Queue):
            def _put(self, item):
                GATE.set(); STOP.wait(30); super()._put(item)
        def setup():  # the queue is reachable only through the logger
            logging.getLogger("app").addHandler(logging.handlers.QueueHandler(Slow()))
        setup()
        t = threading.Thread(target=logging.getLogger("app").error, args=("x",), name="log-writer", daemon=True)
        t.start(); GATE.wait(10); time.sleep(0.05); fork_once(); STOP.set()
    ''')
    assert summary(rec["hazards"]) == [
        ("logging.getLogger('app').handlers[0].queue.mutex", "python_lock", "log-writer")]
    reinit = [(e["object"]["path"], e["kind"], e["owner"]["name"], e["by"]) for e in rec["reinitialized"]]
    assert ("logging.getLogger('app').handlers[0].lock", "python_rlock", "log-writer", "logging") in reinit


def test_handler_lock_is_reinitialized_by_logging_not_a_hazard(audit):
    rec = audit('''
        import io, logging
        def setup():
            handler = logging.StreamHandler(io.StringIO())
            logging.getLogger("svc").addHandler(handler)
            return handler
        H = setup()
        def enter(held, release):
            with H.lock:
                held.set(); release.wait(30)
        _, release = hold("handler-holder", enter); fork_once()
        release.set()   # logging's exit handler flushes H under H.lock: let it go
    ''')
    assert rec["hazards"] == []
    [entry] = rec["reinitialized"]
    assert (entry["kind"], entry["owner"]["name"], entry["by"]) == ("python_rlock", "handler-holder", "logging")
    assert entry["object"]["path"] in ("__main__.H.lock", "logging.getLogger('svc').handlers[0].lock")
    assert "reset it in the child" in entry["why"]


@pytest.mark.parametrize("waiter", [
    "COND = threading.Condition()\ndef w():\n    with COND:\n        COND.wait(30)",
    "EV = threading.Event()\ndef w():\n    EV.wait(30)",
    "import queue\nQ = queue.Queue()\ndef w():\n    Q.get(timeout=30)",
    "def w():\n    time.sleep(3)",
    "T0 = threading.Thread(target=time.sleep, args=(3,))\nT0.start()\ndef w():\n    T0.join()",
    "import concurrent.futures\nPOOL = concurrent.futures.ThreadPoolExecutor(2)\nlist(POOL.map(abs, range(4)))\ndef w():\n    time.sleep(3)",
])
def test_waiting_threads_hold_nothing(audit, waiter):
    rec = audit(waiter + '''
t = threading.Thread(target=w, name="waiter", daemon=True); t.start(); time.sleep(0.3)
fork_once()
''')
    assert rec["hazards"] == [], rec["hazards"]
    assert "waiter" in [t["name"] for t in rec["threads"]]


def test_thread_blocked_waiting_for_the_forkers_lock_holds_nothing(audit):
    rec = audit('''
        LOCK = threading.Lock()
        with LOCK:
            t = threading.Thread(target=lambda: LOCK.acquire(timeout=5), name="blocked", daemon=True)
            t.start(); time.sleep(0.3)
            fork_once()
    ''')
    assert rec["hazards"] == []


def test_forking_threads_own_locks_are_not_hazards(audit):
    rec = audit('''
        L, R = threading.Lock(), threading.RLock()
        other = threading.Thread(target=time.sleep, args=(3,), name="bystander", daemon=True); other.start()
        with L, R:
            fork_once()
    ''')
    assert rec["hazards"] == []


def test_names_through_attributes_dicts_lists_and_modules(audit, tmp_path):
    (tmp_path / "helpermod.py").write_text("import threading\nX = threading.Lock()\n")
    rec = audit('''
        sys.path.insert(0, os.getcwd())
        import helpermod
        class Service:
            def __init__(self):
                self.io_lock = threading.Lock()
        REG = {"db": [None, Service()]}
        def enter(held, release):
            with REG["db"][1].io_lock, helpermod.X:
                held.set(); release.wait(30)
        hold("namer", enter); fork_once()
    ''')
    assert summary(rec["hazards"]) == [("__main__.REG['db'][1].io_lock", "python_lock", "namer"),
                                       ("helpermod.X", "python_lock", "namer")]


def test_owner_unknown_is_said_not_guessed(audit):
    rec = audit('''
        LOCK = threading.Lock()
        def grab():
            LOCK.acquire()
        def enter(held, release):
            grab()                      # taken in a function that returned: no frame shows it
            held.set(); release.wait(30)
        hold("sneaky", enter); fork_once()
    ''')
    assert len(rec["hazards"]) == 1
    h = rec["hazards"][0]
    assert h["owner"] is None and h["object"]["path"] == "__main__.LOCK"
    assert "owner unknown" in h["why"]


@pytest.mark.c_level
def test_buffered_file_lock_held_by_a_blocked_writer(audit):
    rec = audit('''
        r, w = os.pipe()
        OUT = open(w, "wb", buffering=8192)
        IDLE = open(os.devnull, "wb")
        def enter(held, release):
            held.set()
            OUT.write(b"x" * (1 << 20)); OUT.flush()   # blocks: nobody reads the pipe
        hold("pipe-writer", enter); time.sleep(0.2); fork_once()
    ''')
    assert [(h["kind"], h["object"]["type"], h["object"]["path"], h["owner"]["name"]) for h in rec["hazards"]] == [
        ("python_internal", "_io.BufferedWriter", "__main__.OUT", "pipe-writer")]
    assert "blocks forever" in rec["hazards"][0]["why"]


@pytest.mark.c_level
def test_stdout_held_by_a_thread_writing_to_a_full_pipe(run_python, schema_validator):
    import subprocess
    import sys
    code = snippet('''
        def enter(held, release):
            held.set()
            sys.stdout.write("y" * (1 << 20)); sys.stdout.flush()   # the parent never reads
        hold("printer", enter); time.sleep(0.3); fork_once()
        os._exit(0)
    ''')
    import os
    import tempfile
    d = tempfile.mkdtemp()
    report = os.path.join(d, "r.jsonl")
    script = os.path.join(d, "s.py")
    with open(script, "w") as f:
        f.write(code)
    env = dict(os.environ, FORKAUDIT_TEST_REPORT=report)
    env.pop("PYTHONUNBUFFERED", None)  # a buffered stdout: a BufferedWriter with its lock
    proc = subprocess.Popen([sys.executable, script], stdout=subprocess.PIPE, env=env)
    try:
        proc.wait(60)
    finally:
        proc.kill()
        proc.stdout.close()
    import json
    [rec] = [json.loads(line) for line in open(report)]
    assert not list(schema_validator.iter_errors(rec))
    assert [(h["kind"], h["object"]["path"], h["owner"]["name"]) for h in rec["hazards"]] == [
        ("python_internal", "sys.stdout.buffer", "printer")]


@pytest.mark.c_level
def test_kernel_view_tells_a_sleeping_waiter_from_a_holder(audit):
    rec = audit('''
        LOCK = threading.Lock()
        def grab():
            LOCK.acquire()
        def owner(held, release):
            grab()                      # held, but no frame shows it
            held.set(); release.wait(30)
        def waiter(held, release):
            held.set()
            with LOCK:                  # asleep in futex(2) on LOCK's semaphore
                pass
        hold("sneaky", owner); hold("blocked", waiter); time.sleep(0.2); fork_once()
    ''')
    [h] = rec["hazards"]
    assert h["owner"] is None and "owner unknown" in h["why"]
    assert "thread 'blocked' was in waiter()" in h["why"] and "asleep waiting for it" in h["why"]


# A thread that moves while the snapshot reads source files (which releases the GIL): each
# module's first read lets "mover" go on into the next module's function, holding that
# module's lock. The snapshot must look again until no file was read, so that the stack it
# records and the locks it finds held are those at the fork (both in c.f3), not a stack
# from one moment (b.f2) and a lock from the next.
MOVER_MODULES = {
    "fa_mover_a": "import threading\nLOCK = threading.Lock()\ngo = threading.Event()\n"
                  "def f1(arrived):\n    with LOCK:\n        arrived.set()\n        go.wait(30)\n",
    "fa_mover_b": "import threading\nLOCK = threading.Lock()\ngo = threading.Event()\n"
                  "def f2(arrived):\n    with LOCK:\n        arrived.set()\n        go.wait(30)\n",
    "fa_mover_c": "import threading\nLOCK = threading.Lock()\ngo = threading.Event()\n"
                  "def f3(arrived):\n    with LOCK:\n        arrived.set()\n        go.wait(30)\n",
}


def test_a_thread_that_moves_while_sources_are_read_is_seen_where_it_was_at_the_fork(audit, tmp_path):
    for name, text in MOVER_MODULES.items():
        (tmp_path / (name + ".py")).write_text(text)
    rec = audit('''
        import linecache
        sys.path.insert(0, os.path.dirname(REPORT))
        import fa_mover_a, fa_mover_b, fa_mover_c
        arrived = [threading.Event() for _ in range(3)]
        def mover():
            fa_mover_a.f1(arrived[0])
            fa_mover_b.f2(arrived[1])
            fa_mover_c.f3(arrived[2])
        threading.Thread(target=mover, name="mover", daemon=True).start()
        arrived[0].wait(10)
        real = linecache.updatecache
        def reading(filename, *args):
            # the first read of a's (then b's) source: let the mover go on into the next module
            for module, step in ((fa_mover_a, 1), (fa_mover_b, 2)):
                if filename == module.__file__ and not module.go.is_set():
                    module.go.set()
                    arrived[step].wait(10)
            return real(filename, *args)
        linecache.updatecache = reading
        fork_once()
        fa_mover_c.go.set()
    ''')
    [mover] = [t for t in rec["threads"] if t["name"] == "mover"]
    own = [f["function"] for f in mover["stack"] if not f["file"].endswith("threading.py")]
    assert own[-1] == "f3", mover["stack"]     # (inside it, Event.wait's frames)
    [h] = [h for h in rec["hazards"] if (h["owner"] or {}).get("name") == "mover"]
    assert h["object"]["path"] == "fa_mover_c.LOCK", h
    assert any(f["function"] == "f3" for f in h["held_at"]), h["held_at"]


# A thread blocked writing a big record to a full pipe holds its stream's buffer lock (a
# python_internal hazard). When that stream is a logging handler's, logging.shutdown(), which
# Python runs at a normal exit, flushes it: the child hangs at sys.exit() although it never
# logs (reach "exit", proven by the child hanging). The control writes the same pipe through a
# plain file object no handler owns: reach "internal".
BLOCKED_WRITER = IN_WRITE + r'''
import fcntl, logging
pipe_r, pipe_w = os.pipe()
size = fcntl.fcntl(pipe_w, 1032)                     # F_GETPIPE_SZ
if THROUGH_HANDLER:
    handler = logging.StreamHandler(os.fdopen(pipe_w, "w", buffering=1 << 16))
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "x" * (size + (1 << 17)), None, None)
    write = lambda: handler.handle(record)
else:
    plain = os.fdopen(pipe_w, "wb", buffering=1 << 16)
    write = lambda: plain.write(b"x" * (size + (1 << 17)))
writer = threading.Thread(target=write, name="writer", daemon=True)
writer.start()
wait_in_write(writer)
def fork_exiting_normally():
    pid = os.fork()
    if pid == 0:
        sys.exit(0)                                   # a normal exit: atexit runs logging.shutdown()
    return pid

def fork_ending_with_os_exit():
    pid = os.fork()
    if pid == 0:
        os._exit(0)                                   # no atexit handler runs
    return pid

pid = fork_exiting_normally() if EXITS else fork_ending_with_os_exit()
print("child", wait_or_kill(pid, 5))
sys.stdout.flush()
os._exit(0)                                           # (this process's own exit would hang the same way)
'''


@pytest.mark.c_level
@pytest.mark.parametrize("through_handler, exits", [(True, True), (True, False), (False, False)],
                         ids=["handler-stream-exit", "control-handler-stream-os._exit", "control-plain-file"])
def test_a_logging_handlers_stream_held_at_the_fork_blocks_the_childs_exit(run_python, through_handler, exits):
    result = run_python(snippet("THROUGH_HANDLER, EXITS = %r, %r\n" % (through_handler, exits) + BLOCKED_WRITER),
                        timeout=120)
    assert result.returncode == 0, result
    [rec] = result.children
    [h] = [h for h in rec["hazards"] if (h["owner"] or {}).get("name") == "writer"]
    assert h["kind"] == "python_internal", h
    if exits:
        assert "child hung" in result.stdout, result.stdout          # the ground truth: it hangs at exit
        assert h["reach"] == "exit", h
        from forkaudit import render
        assert "logging.shutdown()" in render.text(rec), render.text(rec)
    else:
        # a plain file nothing flushes at exit; or a child the code that forked it ends with
        # os._exit() (as multiprocessing's and billiard's launchers do): it exits, unblocked
        assert "child 0" in result.stdout, result.stdout
        assert h["reach"] == "internal", h
