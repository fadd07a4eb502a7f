"""The stuck-fork watchdog: the Python side of csrc/watchdog.c.

A fork whose os.fork() has not returned after N seconds (FORKAUDIT_WATCHDOG, default 5;
0: off), and a child blocked for N seconds on a lock it inherited held (or inside an at-fork
hook, on a lock nobody left in the child can release), are reported by a C signal handler
that runs inside the stuck wait. The timer is a POSIX timer aimed at the watched thread:
no thread is created (CPython 3.12+ counts threads for its fork warning, and the child's
scan would see one more), nothing is left armed when nothing is in flight.

  parent: armed by forkaudit's *first* before-fork hook (hooks.py keeps one registered
          last, so it runs before every other Python before-fork hook), phase marks set by
          forkaudit's last before-fork hook and by the C prepare/parent handlers; disarmed by
          the first after-in-parent hook. When it fires in a Python lock wait inside the
          Python before-fork hooks (the GIL is free there, the thread holds no CPython or
          libc lock), the handler also calls back into Python (parent_stuck below) for the
          lock's name, its holder and the holder's current stack.
  child:  armed by forkaudit's first after-in-child hook (the at-fork hooks, multiprocessing's
          after-fork registry); after the audit, kept (with the audit's hazards pre-rendered
          into static memory) only while there is an inherited held lock the child can block
          on, else disarmed. Under 'abort' a child stuck on one exits with status 86.

Timers are not inherited by a fork child and are deleted by exec; a process forked again
starts with nothing armed (csrc/watchdog.c's pthread_atfork child part).
"""
import os
import threading
import sys

from . import native

PHASES = {}     # FA_WD_* constants by name, filled at setup
_marks = None   # pointer to fa_wd: phase stores are plain memory writes (the GIL stays held)
_signo = 0
_python_set = False
_fork_caller = None   # the frame that called os.fork, while a watched fork is in flight
_queued_callers = {}  # native id -> (ident, that frame), for forks of other threads queued meanwhile


def signals():
    """The signal numbers the watchdog's timers use ((): none set up)."""
    return (_signo,) if _signo > 0 else ()


def available():
    return native.lib is not None and sys.platform.startswith("linux") and _signo > 0


def prepare(settings):
    """What any watched fork needs: the native shim's fork handlers (they mark the fork's
    phases and watch its child from the parent) and the watchdog's signal."""
    native.register()
    return setup(settings)


def setup(settings):
    """Take the watchdog's signal (once) and register the Python callback. False if off."""
    global _marks, _signo
    if native.lib is None or not settings.watchdog or not sys.platform.startswith("linux"):
        return False
    lib = native.lib
    if _marks is None:
        _marks = native.ffi.addressof(lib, "fa_wd")
        for name in ("IDLE", "PY_BEFORE", "LATE_BEFORE", "PREPARE", "PARENT_AFTER", "CHILD_HOOKS", "CHILD_RUN"):
            PHASES[name] = getattr(lib, "FA_WD_" + name)
    _signo = lib.fa_wd_setup()
    if _signo > 0:
        _set_python()
        path = settings.json_path
        lib.fa_wd_set_json(os.fsencode(path) if path else native.ffi.NULL)
    return _signo > 0


# The parent's arming and disarming go through ctypes prototypes that keep the GIL (cffi lets it
# go around every call): a before-fork hook that let other threads run would change what the
# fork sees (a thread granted a lock in the kernel could finish with it first).
_arm_parent = _disarm_parent = _watch_setup = _late_before = None


def _gil_keeping(name, restype, *argtypes):
    import ctypes
    address = int(native.ffi.cast("uintptr_t", native.ffi.addressof(native.lib, name)))
    return ctypes.PYFUNCTYPE(restype, *argtypes)(address)


def _set_python():
    """Hand the C handler what it needs to call parent_stuck: CPython's C API entry points."""
    global _python_set, _callback, _child_callback
    if _python_set:
        return
    try:
        import ctypes
        api = ctypes.pythonapi
        addr = [ctypes.cast(getattr(api, name), ctypes.c_void_p).value or 0
                for name in ("PyGILState_Ensure", "PyGILState_Release", "PyObject_CallObject",
                             "Py_DecRef", "PyErr_Clear")]
    except Exception:  # noqa: BLE001 - no Python-level detail, the C report stays
        return
    if 0 in addr:
        return
    _callback, _child_callback = parent_stuck, child_stuck  # kept: the C side holds their addresses
    native.lib.fa_wd_set_python(*addr, id(_callback), id(_child_callback))
    _python_set = True


def tenths(settings):
    return max(1, int(round(float(settings.watchdog) * 10)))


def _policy(settings):
    lib = native.lib
    if settings.policy in ("abort", "abort-now"):
        return lib.FA_WD_POLICY_ABORT
    if settings.policy == "record":
        return lib.FA_WD_POLICY_QUIET
    return lib.FA_WD_POLICY_WARN


# ---- parent ------------------------------------------------------------------------------

def arm_parent(settings, tid, caller):
    """First before-fork hook: watch this thread's fork."""
    global _fork_caller
    if not available() or not settings.watchdog:
        return False
    global _arm_parent, _disarm_parent, _watch_setup, _late_before
    if _arm_parent is None:
        import ctypes
        _arm_parent = _gil_keeping("fa_wd_arm_parent", ctypes.c_int, ctypes.c_int32, ctypes.c_int32)
        _disarm_parent = _gil_keeping("fa_wd_disarm_parent", None, ctypes.c_int32)
        _watch_setup = _gil_keeping("fa_wd_watch_setup", ctypes.c_int, ctypes.c_int32, ctypes.c_int)
        _late_before = _gil_keeping("fa_wd_late_before", None, ctypes.c_int32)
    # the child of this fork is watched from here until it is through its at-fork handlers
    # (a page shared with it and a timer of this process's, made once per process)
    _watch_setup(tenths(settings), _policy(settings))
    armed = _arm_parent(tid, tenths(settings))
    if armed == 1:   # another thread's fork is watched: this one is queued, watched in turn
        _queued_callers[tid] = (threading.get_ident(), caller)
        return True
    if armed != 0:
        return False
    _fork_caller = caller
    return True


def late_before(tid):
    """forkaudit's own (last) before-fork hook has run in thread tid's fork."""
    if _late_before is not None and tid:
        _late_before(tid)


def disarm_parent(tid):
    """Thread tid's fork has returned (the parent's first after-in-parent hook)."""
    global _fork_caller
    _queued_callers.pop(tid, None)
    if _marks is None or not tid or _disarm_parent is None:
        return
    was_watched = _marks.parent_tid == tid
    # a queued fork of another thread may be watched from now on. (A cffi call, which lets other
    # threads run: after the fork that is harmless, and it writes fewer of the pages the child
    # shares than a ctypes call does, each a page copied.)
    native.lib.fa_wd_disarm_parent(tid)
    if was_watched:
        entry = _queued_callers.pop(int(_marks.parent_tid), None) if _marks.parent_tid else None
        _fork_caller = entry[1] if entry is not None else None


# ---- child -------------------------------------------------------------------------------

def child_stage(stage):
    """Tell the parent's watch how far this child got (STAGE_PY: forkaudit's first Python
    after-in-child hook; STAGE_DONE: its tail hook, after every other)."""
    if native.lib is not None:
        native.lib.fa_wd_child_stage(stage)


STAGE_PY, STAGE_DONE = 2, 3

def arm_child(settings, watch=True):
    """First after-in-child hook: watch the child's at-fork hooks (_fork_caller, from the
    parent's head hook, stays until the audit: it tells which frame is a hook's). watch
    False: only forget the other threads' queued frames (a child that execs next)."""
    global _fork_caller
    me = threading.get_ident()   # (a thread's ident is the same in the child; its native id is not)
    for ident, frame in list(_queued_callers.values()):
        if ident == me:
            _fork_caller = frame   # this fork was queued in the parent: its caller, not the watched one's
    _queued_callers.clear()   # the other threads' frames: threads that do not exist here
    if not watch or not available() or not settings.watchdog:
        return False
    return native.lib.fa_wd_arm_child(tenths(settings), _policy(settings)) == 0


def disarm_child():
    if _marks is not None and _marks.phase in (PHASES["CHILD_HOOKS"], PHASES["CHILD_RUN"]):
        native.lib.fa_wd_disarm_child()


def futex_words(h):
    """The futex words a thread blocks on when it takes this hazard's lock, or []."""
    from . import cpython_layout, importlocks, locktypes
    try:
        addr = int(h.get("address") or "0", 16)
    except ValueError:
        return []
    if not addr:
        return []
    kind = h.get("kind")
    if kind == "pthread_mutex":
        return [addr]
    if kind == "pthread_rwlock":
        return [addr, addr + 8, addr + 12]  # readers, wrphase futex, writers futex
    if kind in ("python_lock", "python_rlock") and cpython_layout.verified:
        sem = native.read(addr + cpython_layout.LOCK_POINTER_OFFSET, 8)
        return [int.from_bytes(sem, "little")] if sem and any(sem) else []
    if kind == "python_internal" and (h.get("object") or {}).get("type") == importlocks.TYPE_NAME:
        # an import of the module sleeps on the module lock's wakeup lock
        wakeup = importlocks.wakeups.get(addr)
        sem = cpython_layout.semaphore_address(wakeup) if type(wakeup) is locktypes.LOCK else None
        return [sem] if sem else []
    if kind == "python_internal" and cpython_layout.buffered_offsets is not None:
        sem = native.read(addr + cpython_layout.buffered_offsets[0], 8)
        return [int.from_bytes(sem, "little")] if sem and any(sem) else []
    return []


def child_audited(event, settings):
    """After the child's audit: keep watching while it has an inherited held lock to block on
    (its report entries pre-rendered for the handler), else stop. True while watching."""
    global _fork_caller
    _fork_caller = None
    if _marks is None or _marks.phase != PHASES["CHILD_HOOKS"]:
        return False
    addrs, texts = [], []
    # the unreachable ones too: should the child block on one after all, that is certain
    for i, h in enumerate(list(event.get("hazards", [])) + list(event.get("unreachable") or []), 1):
        from . import render   # (here: a clean child does not run an import's Python)
        entry = "\n".join(render.hazard_lines(i, h)) + "\n"
        for word in futex_words(h):
            addrs.append(word)
            texts.append(entry.encode("utf-8", "replace"))
    # C locks the scan did not cover (off, unavailable, cut by a budget): the handler still
    # knows a glibc mutex whose owner is no thread of this child, when the child waits on one
    scan = event.get("scan") or {}
    unchecked = (bool(event.get("threads")) or _marks.threads > 1) and (event.get("c_level") != "checked" or not scan.get("complete", True))
    if not addrs and not unchecked:
        disarm_child()
        return False
    from . import render
    ffi = native.ffi
    head = render.watchdog_head(event).encode("utf-8", "replace")
    native.lib.fa_wd_child_locks(ffi.new("uint64_t[]", addrs or [0]), ffi.new("int32_t[]", [len(t) for t in texts] or [0]),
                                 len(addrs), ffi.new("char[]", b"".join(texts) or b"\0"), head, len(head))
    _marks.phase = PHASES["CHILD_RUN"]
    return True


# ---- the parent's Python-level report -----------------------------------------------------

def child_stuck():
    """Called by the C handler of a child stuck in its at-fork hooks on a taken semaphore with
    no other thread left (GIL taken for this call only): the lock's name, the vanished
    thread that held it at the fork (from the parent's snapshot) and the hook."""
    import gc
    was = gc.isenabled()
    gc.disable()
    try:
        os.write(2, _child_text().encode("utf-8", "replace"))
    except BaseException:  # noqa: BLE001
        pass
    finally:
        if was:
            gc.enable()


def _child_text():
    from . import cpython_layout, hooks, render, threads
    addr = int(_marks.parent_addr)
    snaps = [s for stack in hooks._pending.values() for s in stack]
    lock, owners = None, []
    for snap in snaps:
        for c in getattr(snap.pylocks, "candidates", {}).values():
            if cpython_layout.semaphore_address(c.lock) == addr:
                lock, owners = c.lock, [t for t in c.owners if t is not snap.forking]
                if c.state.owner is not None:
                    owners = [t for t in snap.others if t.ident == c.state.owner] or owners
    hook = None
    frame = sys._getframe(1)
    while frame is not None:
        if _fork_caller is not None and frame.f_back is _fork_caller:
            hook = threads.frame_record(frame)
        frame = frame.f_back
    facts = {"lock": None if lock is None else {"type": type(lock).__name__, "address": "0x%x" % id(lock),
                                                  "path": _path_of(lock)},
             "futex": "0x%x" % addr,
             "holders": [{"name": t.name, "native_id": t.native_id, "stack": t.stack} for t in owners],
             "hook": hook}
    return render.watchdog_child_hook(facts)


def parent_stuck():
    """Called by the C handler, in the forking thread stuck in a Python lock wait inside the
    before-fork hooks (GIL taken for this call only). Names the lock, its holder and where the
    wait is; writes with os.write. Never raises."""
    import gc
    was = gc.isenabled()
    gc.disable()  # no finalizer of anyone's runs here
    try:
        os.write(2, _parent_text().encode("utf-8", "replace"))
    except BaseException:  # noqa: BLE001 - inside a signal handler: never let anything out
        pass
    finally:
        if was:
            gc.enable()


def _parent_text():
    captured = []   # every ThreadInfo taken: their frames are dropped at the end (threads.capture
    try:            # keeps a parked thread's ThreadInfo for the next fork)
        return _parent_text_of(captured)
    finally:
        for t in captured:
            t.frames = None


def _parent_text_of(captured):
    from . import cpython_layout, heldby, pylocks, render, threads
    addr = int(_marks.parent_addr)
    forking, others = threads.capture()
    captured.extend([forking] + others)
    if heldby.prefetch([forking] + others):  # source files read (the GIL was let go): look again
        forking, others = threads.capture()
        captured.extend([forking] + others)
        heldby.prefetch([forking] + others)
    snap = pylocks.capture(forking, others)
    lock, holders = None, []
    for c in snap.candidates.values():
        if cpython_layout.semaphore_address(c.lock) == addr:
            lock, holders = c.lock, [t for t in c.owners if t is not forking]
            if c.state.owner is not None:
                holders = [t for t in [forking] + others if t.ident == c.state.owner] or holders
            break
    if lock is None:
        for takers in snap.acquiring.values():
            for t, h in takers:
                if cpython_layout.semaphore_address(h.lock) == addr:
                    lock = h.lock
    hook = None
    caller = _fork_caller
    stack = forking.frames or []
    for i, frame in enumerate(stack):
        if frame.f_back is caller and caller is not None:
            hook = threads.frame_record(frame)
            break
    facts = {"lock": None if lock is None else {"type": type(lock).__name__, "address": "0x%x" % id(lock),
                                                  "path": _path_of(lock)},
             "futex": "0x%x" % addr,
             "holders": [{"name": t.name, "native_id": t.native_id, "stack": t.stack} for t in holders],
             "hook": hook, "forking": {"name": forking.name, "native_id": forking.native_id,
                                       "stack": forking.stack}}
    return render.watchdog_parent(facts)


def _path_of(lock):
    try:
        from . import naming
        return naming.walk().paths.get(id(lock))
    except Exception:  # noqa: BLE001
        return None
