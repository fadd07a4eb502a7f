"""The work of one audited fork, step by step (hooks.py decides when each step runs).

  before_fork (parent, GIL held): snapshot of the threads and the Python locks
      their frames hold; arm the C prepare handler for this thread's fork
  after_fork_parent: free the arming slot; under 'warn', one warning line
  after_fork_child (after every at-fork handler, and for a multiprocessing child
      after multiprocessing's own after-fork registry): detect, attribute, name,
      report (policy)

A fork about to exec (execs.py: subprocess, multiprocessing's spawn/forkserver
helpers) never comes here: hooks.py gives it no snapshot, arms nothing and reports
nothing, and loads this module only at the first fork that does not exec.
"""
import _thread
import os
import sys
import time
import warnings

from . import event as event_mod
from . import cleanfork, cpython_layout, heldby, hooks, importlocks, naming, native, parent_notice, policy, pylocks, render, sink, threads
from . import watchdog
from .errors import ForkHazardError, ForkHazardWarning
from .settings import testonly_child

INT_TYPES = (id(int), id(bool))  # objects whose fields can mimic a held mutex (see csrc/validate.c)

MP_LAUNCH = ("multiprocessing/popen_fork.py", "_launch")

_last_event = None
_told_no_c_level = False


class Snapshot:
    """What the parent knew at the fork; read by the child."""

    __slots__ = ("settings", "tid", "execs", "mp", "exits", "forking", "others", "pylocks", "time",
                 "parent_pid", "c_level", "clean", "slot")


def prepare(settings):
    """Set the native shim up for these settings (called at the first fork and on re-install)."""
    if native.lib is not None:
        native.register()
        native.set_reject(INT_TYPES)
        native.set_budget(settings.scan_budget_ms, settings.scan_budget_mb)
        cpython_layout.register_pylock_types()  # the scan's read-only discovery of held Python locks
        threads.learn_tid_offset()  # ids of threads with no threading.Thread
        native.warm_up()  # the C calls every child makes, made once here
        import ctypes  # noqa: F401 - a child reads back a held lock found beyond the walk with it
        #                (cpython_layout.object_at): imported here, never in a child
    naming.SHOW_KEYS = settings.show_keys
    threads.cpu_clock_fine = threads.clock_steps_fine()  # parked threads' snapshots taken again,
    native.set_quiet_clock(threads.cpu_clock_fine)       # and clean scans reused (csrc/quiet.c)
    importlocks.held()   # (finds importlib's table once, here: every child reads it)
    if settings.json_path:
        sink.json_text(None)  # the encoder each child writes its record with: made once, here (3 ms a child)
    watchdog.setup(settings)  # watchdog: take its signal (once)
    global _hold
    _hold = sink.signals_to_hold(watchdog.signals())  # the set each child's audit holds back, made once
    # last, with every module the forks use loaded: their code is no longer written at each
    # fork, in the parent or in a child (3.12+)
    try:
        cpython_layout.immortalize_own(__package__, threads.PACKAGE_DIR)
    except Exception:  # noqa: BLE001 - a cost saving only: without it, the same audits
        pass
    global _told_no_c_level
    if not native.available and settings.scan != "off" and not _told_no_c_level and settings.policy != "record":
        _told_no_c_level = True
        sink.say("C-level lock detection is off (%s); Python-level locks are still audited" % native.reason)


PREFETCH_ROUNDS = 4
_hold = None   # the signals a child's audit holds back (prepare: made once, in the parent)


def take_snapshot(settings):
    forking, others = threads.capture()
    for _ in range(PREFETCH_ROUNDS):
        if not heldby.prefetch([forking] + others):
            break
        # source files were read (the GIL was released): the other threads may have moved,
        # into code whose source is not read yet, so look again until nothing was read
        forking, others = threads.capture()
    snap = Snapshot()
    snap.settings = settings
    snap.execs = False   # (a fork that execs gets hooks._ExecFork instead)
    snap.exits = True    # the child ends through Python's exit (before_fork looks at the caller)
    snap.mp = any(_calls_record(f, MP_LAUNCH) for f in forking.stack)
    snap.forking, snap.others = forking, others
    # from the last capture on, no file is read (a source still not read after the rounds
    # above is not read now): reading one releases the GIL, and the stacks and the locks their
    # frames hold would be from two moments. (The interpreter's own switch, every
    # sys.getswitchinterval(), can still hand the GIL to a busy thread for a moment.)
    heldby.cached_only = True
    try:
        snap.pylocks = pylocks.capture(forking, others)
    finally:
        heldby.cached_only = False
    snap.pylocks.lineage_known = hooks._lineage_known
    for t in [forking] + others:
        t.frames = None  # frames of vanished threads must not be touched in the child
    snap.time = time.time()  # (formatted when a record is made: the parent's fork stays cheap)
    snap.parent_pid = os.getpid()
    snap.c_level = native.available and settings.scan != "off"
    snap.clean = None
    snap.slot = None    # the native arming slot of this fork (before_fork)
    return snap


def _ends_with_os_exit(caller):
    """Does the code that called fork end its child with os._exit() (multiprocessing's and
    billiard's launchers, the usual `if pid == 0: ...; os._exit(0)`)? Then the child runs no
    atexit handler: logging.shutdown() does not flush the handlers it inherited."""
    return caller is not None and "_exit" in caller.f_code.co_names


def _calls_record(frame, where):
    return frame["function"] == where[1] and (frame["file"] or "").replace("\\", "/").endswith(where[0])


def before_fork(settings, tid, caller=None):
    """The parent's before-fork step for thread `tid` (kernel id): a Snapshot.

    caller: the frame that called fork, if known."""
    snap = take_snapshot(settings)
    snap.tid = tid
    snap.exits = not snap.mp and not _ends_with_os_exit(caller)
    snap.slot = native.arm(tid, settings.scan, pylocks.threads_to_probe(snap.pylocks)) if snap.c_level else None
    if not snap.slot:
        snap.c_level, snap.slot = False, None  # every arming slot is taken (that many concurrent forks)
    try:
        snap.clean = cleanfork.parent_proof(snap)   # the parent's part of a clean fork's proof
    except Exception:  # noqa: BLE001 - then the child's full audit decides, and says what fails
        snap.clean = None
    if snap.clean is not None and not settings.scan_every_fork:
        native.allow_reuse(snap.slot)   # the child may reuse a clean scan (csrc/quiet.c)
    return snap


def after_fork_parent(snap):
    native.disarm(snap.tid, snap.slot)
    if snap.settings.policy != "warn":
        return
    notice = parent_notice.line(snap.pylocks, snap.mp)
    if notice is None:
        return
    message = "fork while %s; the child's forkaudit report has the details" % notice
    try:
        # stacklevel: after_fork_parent <- hooks._after_in_parent <- (C) <- the caller of fork
        warnings.warn(ForkHazardWarning(message), stacklevel=3)
    except Warning:
        # the program made it an error; but the child exists: os.fork must still return its pid
        # (an exception here would lose it), so the error is said in one line instead
        sink.say("ForkHazardWarning (an error under this program's filters): " + message)


def after_fork_child(snap):
    native.disarm(snap.tid, snap.slot)
    if snap.mp and _after_multiprocessing_resets(snap):
        return
    audit_child(snap)


class _Token:
    """A weak-referenceable key for multiprocessing.util.register_after_fork."""


_MP_TOKEN = _Token()


def _after_multiprocessing_resets(snap):
    """A multiprocessing child resets its own state (queue locks, ...) in Process._bootstrap,
    after the at-fork hooks: register the audit last in that registry. False if impossible."""
    util = sys.modules.get("multiprocessing.util")
    register = getattr(util, "register_after_fork", None)
    if register is None:
        return False
    register(_MP_TOKEN, lambda _token: audit_child(snap))
    return True


def audit_child(snap):
    hang, full = testonly_child()
    if hang:
        _hang()
    # once begun, the audit ends with its record: a signal that would end the child (a pool's
    # terminate() sends SIGTERM to workers just forked) is held back until then, and ends it
    # right after. The watchdog's signal goes through: it reports an audit stuck on a lock.
    held = sink.hold_signals(_hold)
    try:
        _audit_child(snap, held is not None, full)
    finally:
        sink.restore_signals(held)


def _audit_child(snap, signals_held=False, full=False):
    global _last_event
    if not full and _clean_child(snap, signals_held):
        return
    try:
        ev = event_mod.build_child(snap)
    except Exception as e:  # noqa: BLE001
        _fail_once("the child-side audit", e)
        return
    # what this child inherited held is now in pylocks' record (when its audit saw everything)
    hooks._lineage_known = pylocks.audit_saw_all
    _last_event = ev
    watched = False
    try:
        watched = watchdog.child_audited(ev, snap.settings)  # watchdog: watch what was found
    except Exception as e:  # noqa: BLE001
        _fail_once("the watchdog", e)
    try:
        policy.deliver(ev, snap.settings, watched)  # under 'abort-now' this ends a hazardous child
    except Exception as e:  # noqa: BLE001
        _fail_once("reporting", e)


def _clean_child(snap, signals_held=False):
    """A fork proven clean (cleanfork): its record, and True; else False (the full audit).
    signals_held: audit_child holds the signals back (the watchdog's too, once it stopped)."""
    global _last_event
    try:
        clean = cleanfork.child_audit(snap)
    except Exception:  # noqa: BLE001 - the full audit decides, and says what fails there
        clean = None
    if clean is None:
        return False
    record, line, summary = clean
    hooks._lineage_known = pylocks.audit_saw_all
    _last_event = record   # built when asked for (last_event)
    try:
        watchdog.child_audited(summary, snap.settings)  # watchdog: nothing to watch, it stops
    except Exception as e:  # noqa: BLE001
        _fail_once("the watchdog", e)
    if line is not None:
        sink.append_line(snap.settings.json_path, line, signals_held=signals_held)  # never raises for I/O
    return True


def _hang():
    lock = _thread.allocate_lock()
    lock.acquire()
    lock.acquire()  # never returns: this process has no other thread to release it


def _fail_once(what, exc):
    hooks._fail(what, exc)


def refuse_if_hazardous(settings):
    """Policy 'raise': look in the parent, before forking, and refuse to fork into a deadlock."""
    global _last_event
    try:
        snap = take_snapshot(settings)
        hazards, reinit = pylocks.audit_parent(snap.pylocks)
    except Exception as e:  # noqa: BLE001 - an internal error never stops a fork
        _fail_once("the parent-side check", e)
        return
    if hazards:
        ev = event_mod.build_parent(snap, hazards, reinit)
        _last_event = ev
        raise ForkHazardError(render.text(ev), ev)


def last_event():
    global _last_event
    if callable(_last_event):
        _last_event = _last_event()
    return _last_event

