"""install()/uninstall() and the at-fork plumbing: when each step of the flow runs.

    before-fork hook (parent) -> fork -> tail after-in-child hook (child) -> flow.audit_child
                                      -> after-in-parent hook (parent)    -> flow.notify_parent

This module is what the .pth start-up imports, so it imports nothing heavy: the
flow (snapshot, audit, report, the native shim) is imported at the first fork that
does not exec. A fork that execs right after (execs.py: subprocess, multiprocessing's
spawn and forkserver helpers) is not snapshotted, armed, audited or reported; it loads
only the watchdog (with the native shim's fork handlers), which watches it until the
exec, so a process whose forks all exec never loads the flow.

Every kind of fork that runs Python's at-fork hooks is audited the same way
(os.fork, posix.fork, os.forkpty, _posixsubprocess with preexec_fn): there is no
os.fork wrapper (except under policy 'raise', which must refuse the fork before
it happens), so the warnings machinery and CPython's own fork warning are left
exactly as they are.

The child's audit must come after every os.register_at_fork(after_in_child=...)
hook, whoever registered it and whenever (logging resets its handler locks in
one, opentelemetry rebuilds its span processor's lock in another). after-in-child
hooks run in registration order, so forkaudit keeps a *tail* hook registered last:
os.register_at_fork is wrapped to notice a registration made after the tail, and
the next before-fork hook registers a new tail (the old ones do nothing). That
is one registration per registration the program makes, never one per fork.

The stuck-fork watchdog (watchdog.py) is armed by a *head* before-fork hook, kept
registered last (the wrapper registers a new head right after each before hook it sees
registered), so that it runs first of all before-fork hooks (they run in reverse order of
registration): a hook of another library that blocks is watched.

The collector: every hook holds the cyclic garbage collector off from its first line to its
last (gc.disable, then gc.enable if it was on). forkaudit allocates in its hooks, and a
collection its allocations set off would run the program's finalizers (__del__, weakref
callbacks, gc.callbacks) inside the hook: user code in the middle of a snapshot or of a
child's audit. Held off, that collection comes at the program's next allocation instead.

Concurrency: several threads can be between their before-fork hook and their
fork at once (the GIL changes hands inside the hooks), and a signal handler can
fork inside any of them: each thread keeps a stack of its own pending forks.
"""
import gc
import os
import sys
from _thread import get_ident, get_native_id

_settings = None      # the active Settings, None when not installed
_registered = False   # os.register_at_fork is forever: register once, check _settings
_flow = None          # forkaudit.flow, imported at the first audited fork
_pending = {}         # ident -> [Snapshot]: forks of that thread between before-hook and after-hook
_busy = set()         # idents of threads inside forkaudit's before-fork hook
_tail = 0             # generation of the tail after-in-child hook that audits
_tail_stale = True    # a hook was registered after the tail (or there is no tail yet)
_head = 0            # generation of the head before-fork hook that arms the watchdog
_wd = None            # forkaudit.watchdog, imported at the first watched fork (and with the flow)
_execs_next = None    # forkaudit.execs.execs_next, imported at the first fork
_real_register = None
_real_fork = None
_complained = False
# Every lock this process inherited held from a fork is known (pylocks keeps them): true in an
# interpreter activated at its start (a fresh process inherits none), false in a child until
# its own audit is done. A fork with no other thread then has nothing to explain.
_lineage_known = False


def _fail(what, exc):
    """Fail open: say it once, in one line, and let the program go on."""
    global _complained
    if not _complained:
        _complained = True
        try:
            os.write(2, ("forkaudit: %s failed (%s: %s); this fork is not audited\n"
                         % (what, type(exc).__name__, exc)).encode("utf-8", "replace"))
        except OSError:
            pass


# What loading the flow and the shim, and auditing, need under an address-space limit (about
# 6 MB measured; the rest is the program's own slack, which forkaudit must not eat)
ROOM_NEEDED = 32 << 20


def _address_space_room():
    """Bytes left under RLIMIT_AS (soft), or None where there is no limit (or it can't be read)."""
    try:
        with open("/proc/self/limits", "rb") as f:
            limits = f.read()
        soft = None
        for line in limits.splitlines():
            if line.startswith(b"Max address space"):
                field = line[len(b"Max address space"):].split()[0]
                soft = None if field == b"unlimited" else int(field)
        if soft is None:
            return None
        with open("/proc/self/status", "rb") as f:
            for line in f.read().splitlines():
                if line.startswith(b"VmSize:"):
                    return soft - int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _check_room():
    room = _address_space_room()
    if room is not None and room < ROOM_NEEDED:
        # loading would take the program's last megabytes (a MemoryError later in its own
        # code, or in a finalizer): step aside; a later fork tries again
        raise MemoryError("the address-space limit (RLIMIT_AS) leaves %d MB free; forkaudit needs %d MB"
                          % (max(room, 0) >> 20, ROOM_NEEDED >> 20))


def _load_watch(room_checked=False):
    """What a fork that execs needs: the watchdog and the native shim's fork handlers (and
    the table of exec callers, so that install() leaves the first fork no file to read)."""
    global _wd
    if _wd is None:
        if not room_checked:
            _check_room()
        from . import watchdog
        watchdog.prepare(_settings)
        _execs(None)
        _wd = watchdog
    return _wd


def _load_flow():
    global _flow
    if _flow is None:
        _check_room()
        _load_watch(room_checked=True)
        from . import flow
        flow.prepare(_settings)
        _flow = flow
    return _flow


class _ExecFork:
    """The pending record of a fork that execs right after: nothing snapshotted or armed."""

    __slots__ = ("tid",)
    execs = True
    pylocks = None

    def __init__(self, tid):
        self.tid = tid


def _execs(caller):
    """Does the fork `caller` made exec right after? (Importing the table reads a file, which
    lets other threads run: install() and the watchdog's first arming do it before a fork.)"""
    global _execs_next
    if _execs_next is None:
        from .execs import execs_next
        _execs_next = execs_next
    return _execs_next(caller)


# ---- at-fork hooks -------------------------------------------------------------------------

def _before():
    settings = _settings
    if settings is None:
        return
    me = get_ident()
    if me in _busy:
        return  # a signal handler forked inside this very hook: that fork is not audited
    paused = gc.isenabled()  # (see "The collector" above)
    gc.disable()
    _busy.add(me)
    try:
        caller = sys._getframe(1)   # the frame that called fork (the at-fork runner is C)
        if _execs(caller):
            _pending.setdefault(me, []).append(_ExecFork(get_native_id()))
            return
        flow = _load_flow()
        if _tail_stale:
            _register_tail()
        snap = flow.before_fork(settings, get_native_id(), caller)
        _pending.setdefault(me, []).append(snap)
    except Exception as e:  # noqa: BLE001 - a hook must never break fork
        _fail("the before-fork snapshot", e)
    finally:
        _busy.discard(me)
        if _wd is not None:
            _wd.late_before(get_native_id())  # watchdog: the Python before-fork hooks are done
        if paused:
            gc.enable()   # last: an allocation after it may collect, in this hook


def _pop_pending():
    me = get_ident()
    stack = _pending.get(me)
    if not stack:
        return None
    snap = stack.pop()
    if not stack:
        del _pending[me]
    return snap


def _after_in_parent():
    paused = gc.isenabled()  # (see "The collector" above)
    gc.disable()
    me = get_ident()
    nested = me in _busy
    _busy.add(me)   # a signal handler forking in here gets an unaudited fork, never a recursion
    try:
        if nested:
            return  # the end of such an unaudited fork: the pending snapshot is the outer fork's
        if _wd is not None:
            try:
                _wd.disarm_parent(get_native_id())  # watchdog: the fork returned
            except Exception as e:  # noqa: BLE001
                _fail("the watchdog", e)
        snap = _pop_pending()
        if snap is None or snap.execs:
            return
        try:
            _flow.after_fork_parent(snap)
        except Exception as e:  # noqa: BLE001
            _fail("the parent-side notice", e)
    finally:
        if not nested:
            _busy.discard(me)
        if paused:
            gc.enable()


def _after_in_child_first():
    """The first after-in-child hook: only forget what belonged to threads that are gone."""
    global _lineage_known
    paused = gc.isenabled()  # (see "The collector" above)
    gc.disable()
    try:
        _lineage_known = False   # until this child's audit says what it inherited
        me = get_ident()
        for ident in [i for i in _pending if i != me]:
            del _pending[ident]
        _busy.clear()
        if _wd is None:
            return
        try:
            _wd.child_stage(_wd.STAGE_PY)  # the parent's watch: this child reached Python
        except Exception as e:  # noqa: BLE001
            _fail("the watchdog", e)
        pending = _pending.get(me)
        if _settings is not None:
            try:
                # watchdog: the child's at-fork hooks run from here. A child that execs next (its
                # hooks watched from the parent all the same) only forgets the parent's frames.
                _wd.arm_child(_settings, watch=not (pending and pending[-1].execs))
            except Exception as e:  # noqa: BLE001
                _fail("the watchdog", e)
    finally:
        if paused:
            gc.enable()


def _make_tail(generation):
    def forkaudit_audit_child():
        if generation != _tail:
            return  # a newer tail runs later
        paused = gc.isenabled()  # (see "The collector" above)
        gc.disable()
        snap = _pop_pending()
        _pending.clear()
        me = get_ident()
        _busy.add(me)   # a signal handler forking in the audit gets an unaudited fork
        try:
            if snap is None:
                return
            if snap.execs:
                if _wd is not None:
                    _wd.disarm_child()   # watchdog: an exec follows
                return
            try:
                _flow.after_fork_child(snap)   # under 'abort' this may end the child
            except Exception as e:  # noqa: BLE001
                _fail("the child-side audit", e)
        finally:
            _busy.discard(me)
            if _wd is not None:
                try:
                    _wd.child_stage(_wd.STAGE_DONE)  # the parent's watch: the at-fork hooks are done
                except Exception as e:  # noqa: BLE001
                    _fail("the watchdog", e)
            if paused:
                gc.enable()
    return forkaudit_audit_child


def _register_tail():
    global _tail, _tail_stale
    _tail += 1
    _tail_stale = False
    _real_register(after_in_child=_make_tail(_tail))


def _make_head(generation):
    def forkaudit_watch_fork():
        settings = _settings
        if generation != _head or settings is None or not settings.watchdog:
            return  # a newer head runs earlier
        if get_ident() in _busy:
            return  # a signal handler forked inside one of forkaudit's stages: not watched
        paused = gc.isenabled()  # (see "The collector" above)
        gc.disable()
        try:
            _load_watch()
            _wd.arm_parent(settings, get_native_id(), sys._getframe(1))
        except Exception as e:  # noqa: BLE001 - out of memory or fds, say: fail open
            _fail("loading forkaudit" if _wd is None else "the watchdog", e)
        finally:
            if paused:
                gc.enable()
    return forkaudit_watch_fork


def _register_head():
    global _head
    _head += 1
    _real_register(before=_make_head(_head))


def _register_at_fork(**hooks):
    """os.register_at_fork, noting that a hook now runs after forkaudit's tail (or, for a
    before hook, before forkaudit's head)."""
    global _tail_stale
    result = _real_register(**hooks)
    if hooks.get("after_in_child") is not None:
        _tail_stale = True
    if hooks.get("before") is not None and _settings is not None:
        _register_head()  # now: the very next fork must be watched from its first hook
    return result


_register_at_fork.__forkaudit_wrapper__ = True


# ---- policy 'raise': refusing a fork needs a wrapper around os.fork --------------------------

def _fork():
    settings = _settings
    me = get_ident()
    if settings is not None and settings.policy == "raise" and me not in _busy:
        # (a signal handler that forks inside this check gets a fork without one: no recursion)
        _busy.add(me)
        paused = gc.isenabled()  # (see "The collector" above)
        gc.disable()
        try:
            flow = _load_flow()
            flow.refuse_if_hazardous(settings)   # raises ForkHazardError
        except ImportError as e:
            _fail("loading forkaudit", e)
        finally:
            if paused:
                gc.enable()
            _busy.discard(me)
    return _real_fork()


def _wrap_fork(on):
    global _real_fork
    wrapped = getattr(os.fork, "__forkaudit_wrapper__", False)
    if on and not wrapped:
        real = os.fork

        def fork():
            return _fork()

        fork.__name__, fork.__qualname__, fork.__doc__ = real.__name__, real.__qualname__, real.__doc__
        fork.__forkaudit_wrapper__ = True
        _real_fork = real
        os.fork = fork
    elif not on and wrapped and _real_fork is not None:
        os.fork = _real_fork


# ---- activation ----------------------------------------------------------------------------

def activate(settings, fresh=False):
    """Start auditing forks with these Settings (idempotent: a second call only updates them).

    fresh: called at interpreter start (the .pth), so this process inherited no lock held."""
    global _settings, _registered, _real_register, _lineage_known
    if not hasattr(os, "register_at_fork"):
        raise RuntimeError("this platform has no os.register_at_fork")
    _settings = settings
    if not _registered:
        _lineage_known = bool(fresh)
        _real_register = os.register_at_fork
        _real_register(before=_before, after_in_parent=_after_in_parent, after_in_child=_after_in_child_first)
        _register_tail()
        _register_head()
        os.register_at_fork = _register_at_fork
        _registered = True
    if _flow is not None:
        _flow.prepare(settings)
    elif _wd is not None:
        _wd.prepare(settings)
    _wrap_fork(settings.policy == "raise")
    return settings


def install(policy="warn", json_path=None, scan="full", show_keys=False, watchdog=None, scan_every_fork=False):
    """Audit every fork of this process from now on. Calling it again changes the settings.

    watchdog: seconds after which a stuck fork or child is reported (None: 5; 0: off).
    scan_every_fork: no child reuses an earlier clean scan (csrc/quiet.c)."""
    from .settings import WATCHDOG_SECONDS, make
    settings = activate(make(policy, json_path, scan, show_keys,
                             WATCHDOG_SECONDS if watchdog is None else watchdog, scan_every_fork))
    _load_flow()  # an explicit install() pays its imports now, not at the first fork
    return settings


def uninstall():
    """Stop auditing (the at-fork hooks stay registered but do nothing)."""
    global _settings
    _settings = None
    _wrap_fork(False)


def installed():
    return _settings


def last_event():
    """The last report this process made (a child's record, or the parent's under 'raise')."""
    return _flow.last_event() if _flow is not None else None

