"""install()/uninstall() and the fork flow.

capture (parent, before-fork hook, GIL held) -> fork (C prepare records the
other threads; C child handler scans memory) -> detect, attribute and name
(child, after every at-fork handler) -> report (policy).

The child's audit runs from a thin wrapper around os.fork, so that it comes
after every os.register_at_fork(after_in_child=...) hook, whoever registered
it and whenever (logging resets its handler locks in one). Forks that bypass
the wrapper are audited from forkaudit's own after-in-child hook.
"""
import functools
import os
import sys
import threading
import warnings

from . import event as event_mod
from . import heldby, locktypes, naming, native, policy, pylocks, render, sink, threads
from .errors import ForkHazardError, ForkHazardWarning
from .settings import make

INT_TYPES = (id(int), id(bool))  # objects whose fields can mimic a held mutex (see csrc/validate.c)


class Snapshot:
    """What the parent knew at the fork; read by the child."""

    __slots__ = ("settings", "forking", "others", "pylocks", "time", "parent_pid", "c_level")


_settings = None       # the active Settings, None when not installed
_registered = False    # os.register_at_fork is forever: register once, check _settings
_real_fork = None
_snapshot = None
_deferred = set()      # idents of threads forking through the wrapper (it audits the child)
_parent_snapshot = None  # the parent's copy of the last snapshot, for its own notice
_last_event = None
_complained = False


def _fail(what, exc):
    """Fail open: say it once, in one line, and let the program go on."""
    global _complained
    if not _complained:
        _complained = True
        sink.say("%s failed (%s: %s); this fork is not audited" % (what, type(exc).__name__, exc))


def take_snapshot(settings):
    forking, others = threads.capture()
    if heldby.prefetch([forking] + others):
        # source files were read (the GIL was released): the other threads may have moved
        forking, others = threads.capture()
        heldby.prefetch([forking] + others)
    snap = Snapshot()
    snap.settings = settings
    snap.forking, snap.others = forking, others
    snap.pylocks = pylocks.capture(forking, others)
    for t in [forking] + others:
        t.frames = None  # frames of vanished threads must not be touched in the child
    snap.time = event_mod.now_iso()
    snap.parent_pid = os.getpid()
    snap.c_level = native.available and settings.scan != "off"
    return snap


def _before():
    global _snapshot
    settings = _settings
    _snapshot = None
    if settings is None:
        return
    try:
        _snapshot = take_snapshot(settings)
        native.arm(settings.scan if _snapshot.c_level else "off", pylocks.threads_to_probe(_snapshot.pylocks))
    except Exception as e:  # noqa: BLE001 - a hook must never break fork
        _snapshot = None
        native.disarm()
        _fail("the before-fork snapshot", e)


def _after_in_parent():
    global _snapshot, _parent_snapshot
    _parent_snapshot, _snapshot = _snapshot, None
    native.disarm()


def _after_in_child():
    if threading.get_ident() in _deferred:
        return  # the os.fork wrapper audits once every other after-fork hook has run
    audit_child()


def audit_child():
    global _snapshot, _last_event
    snap, _snapshot = _snapshot, None
    _deferred.clear()
    if snap is None:
        return
    try:
        ev = event_mod.build_child(snap)
    except Exception as e:  # noqa: BLE001
        _fail("the child-side audit", e)
        return
    _last_event = ev
    try:
        policy.deliver(ev, snap.settings)  # under 'abort' this ends a hazardous child
    except Exception as e:  # noqa: BLE001
        _fail("reporting", e)


def refuse_if_hazardous(settings):
    """Policy 'raise': look in the parent, before forking, and refuse to fork into a deadlock."""
    global _last_event
    try:
        snap = take_snapshot(settings)
        hazards, reinit = pylocks.audit_parent(snap.pylocks)
    except Exception as e:  # noqa: BLE001 - an internal error never stops a fork
        _fail("the parent-side check", e)
        return
    if hazards:
        ev = event_mod.build_parent(snap, hazards, reinit)
        _last_event = ev
        raise ForkHazardError(render.text(ev), ev)


def _fork():
    settings = _settings
    if settings is None:
        return _real_fork()
    if settings.policy == "raise":
        refuse_if_hazardous(settings)
    me = threading.get_ident()
    _deferred.add(me)
    try:
        # CPython (3.12+) warns about forking a threaded process with stacklevel 1: the frame
        # calling os.fork, which is now this wrapper. Catch what the fork warns and re-issue
        # it at the caller, so the user's filters see it where they would without forkaudit.
        # (The GIL is held through the fork: no other thread's warning lands in this window.)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pid = _real_fork()
    finally:
        _deferred.discard(me)
    for w in caught:
        # stacklevel: _fork <- the os.fork wrapper <- its caller
        warnings.warn(w.message, w.category, stacklevel=3)
    if pid == 0:
        audit_child()
    else:
        notify_parent(pid, settings)
    return pid


def notify_parent(pid, settings):
    """In the parent, after the fork: a ForkHazardWarning, and a line on the 'forkaudit'
    logger, when the stacks showed other threads holding Python locks (policy 'warn')."""
    global _parent_snapshot
    snap, _parent_snapshot = _parent_snapshot, None
    if snap is None or settings.policy != "warn":
        return
    try:
        notice = pylocks.parent_notice(snap.pylocks)
        if notice is None:
            return
        message = "fork of child %d while %s; the child's forkaudit report has the details" % (pid, notice)
        logger = _safe_logger()
        if logger is not None:
            logger.warning(message)
        # stacklevel: notify_parent <- _fork <- the os.fork wrapper <- its caller
        warnings.warn(ForkHazardWarning(message), stacklevel=4)
    except ForkHazardWarning:
        raise  # warnings made errors (-W error): raised from os.fork, like CPython's own fork warning
    except Exception as e:  # noqa: BLE001
        _fail("the parent-side notice", e)


def _safe_logger():
    """The 'forkaudit' logger, if logging through it cannot block right now.

    Logging takes logging's module lock, each handler's lock and, for a QueueHandler,
    its queue's mutex: if another thread holds any of them (the very hazard, often),
    the parent would wait on it. Then only the warning is given."""
    logging = sys.modules.get("logging")
    if logging is None:
        return None
    logger = logging.getLogger("forkaudit")
    locks = [getattr(logging, "_lock", None)]
    current = logger
    while current is not None:
        for handler in current.handlers:
            locks.append(getattr(handler, "lock", None))
            q = getattr(handler, "queue", None)
            locks.append(getattr(q, "mutex", None))
        current = current.parent if current.propagate else None
    for lock in locks:
        if lock is not None and locktypes.is_primitive(lock) and locktypes.state(lock).locked:
            return None
    return logger


def _patch_fork():
    global _real_fork
    if getattr(os.fork, "__forkaudit_wrapper__", False):
        return
    real = os.fork

    @functools.wraps(real)
    def fork():
        return _fork()

    fork.__forkaudit_wrapper__ = True
    _real_fork = real
    os.fork = fork


def _unpatch_fork():
    if getattr(os.fork, "__forkaudit_wrapper__", False) and _real_fork is not None:
        os.fork = _real_fork


def activate(settings):
    """Start auditing forks with these Settings (idempotent: a second call only updates them)."""
    global _settings, _registered
    if not hasattr(os, "register_at_fork"):
        raise RuntimeError("this platform has no os.register_at_fork")
    if not _registered:
        os.register_at_fork(before=_before, after_in_parent=_after_in_parent,
                            after_in_child=_after_in_child)
        _registered = True
    if native.lib is not None:
        native.register()
        native.set_reject(INT_TYPES)
        native.set_budget(settings.scan_budget_ms, settings.scan_budget_mb)
    if not native.available and settings.scan != "off" and not _told_no_c_level:
        _tell_no_c_level()
    _patch_fork()
    naming.SHOW_KEYS = settings.show_keys
    _settings = settings
    return settings


_told_no_c_level = False


def _tell_no_c_level():
    global _told_no_c_level
    _told_no_c_level = True
    sink.say("C-level lock detection is off (%s); Python-level locks are still audited" % native.reason)


def install(policy="warn", json_path=None, scan="full", show_keys=False):
    """Audit every fork of this process from now on. Calling it again changes the settings."""
    return activate(make(policy, json_path, scan, show_keys))


def uninstall():
    """Stop auditing (the at-fork hooks stay registered but do nothing)."""
    global _settings
    _settings = None
    _unpatch_fork()


def installed():
    return _settings


def last_event():
    """The last report this process made (a child's record, or the parent's under 'raise')."""
    return _last_event


