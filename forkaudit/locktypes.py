"""The Python lock types forkaudit understands, and how to read their state without blocking."""
import re
import sys
import threading

from . import cpython_layout

LOCK = type(threading.Lock()) if isinstance(threading.Lock, type) else type(threading._allocate_lock())
CRLOCK = getattr(threading, "_CRLock", None)
PYRLOCK = getattr(threading, "_PyRLock", None)
RLOCKS = tuple(t for t in (CRLOCK, PYRLOCK) if t is not None)
PRIMITIVES = (LOCK,) + RLOCKS

_RLOCK_REPR = re.compile(r"^<(locked|unlocked) .*?owner=(\d+) count=(\d+)")


def is_primitive(obj):
    return isinstance(obj, PRIMITIVES)


def type_name(lock):
    t = type(lock)
    return "%s.%s" % (t.__module__, t.__qualname__)


def kind_of(lock):
    if isinstance(lock, RLOCKS):
        return "python_rlock"
    if isinstance(lock, threading.Semaphore):
        return "semaphore"
    return "python_lock"


class State:
    """A lock's state. granted: taken, but the thread that took it had not yet returned from
    acquire() (it was waiting for the GIL), so the object itself does not show it held."""

    __slots__ = ("locked", "owner", "count", "granted")

    def __init__(self, locked, owner=None, count=0, granted=False):
        self.locked, self.owner, self.count, self.granted = locked, owner, count, granted


def _with_semaphore(lock, flagged, owner, count):
    taken = cpython_layout.taken(lock)
    if taken is None:
        return State(flagged, owner if flagged else None, count)
    return State(taken, owner if flagged else None, count, granted=taken and not flagged)


def maybe_locked(lock):
    """A cheap first look (no repr, no call into C): False only when surely free."""
    taken = cpython_layout.taken(lock) if isinstance(lock, (LOCK, CRLOCK) if CRLOCK else LOCK) else None
    if taken is not None:
        return taken
    if isinstance(lock, LOCK):
        return lock.locked()
    return True


def state(lock):
    """The lock's state now, read without acquiring it. owner is a thread ident (RLocks only)."""
    if isinstance(lock, LOCK):
        held = lock.locked()
        return _with_semaphore(lock, held, None, 1 if held else 0)
    if CRLOCK is not None and isinstance(lock, CRLOCK):
        m = _RLOCK_REPR.match(repr(lock))
        if m is None:
            return State(False)
        count = int(m.group(3))
        return _with_semaphore(lock, m.group(1) == "locked" and count > 0, int(m.group(2)) or None, count)
    if PYRLOCK is not None and isinstance(lock, PYRLOCK):
        d = lock.__dict__
        count = d.get("_count", 0)
        block = state(d["_block"]) if "_block" in d else State(count > 0)
        return State(block.locked, d.get("_owner") if count else None, count,
                     granted=block.locked and not count)
    if isinstance(lock, threading.Semaphore):
        d = lock.__dict__
        value = d.get("_value", 1)
        return State(value == 0, None, value)
    return State(False)


def underlying(obj):
    """The primitive locks an object guards with, and what wraps them: [(lock, wrapper_name)]."""
    if is_primitive(obj):
        return [(obj, None)]
    d = getattr(type(obj), "__dict__", None)
    if isinstance(obj, threading.Condition):
        lock = obj.__dict__.get("_lock")
        return [(lock, "Condition")] if is_primitive(lock) else []
    if isinstance(obj, threading.Semaphore):
        return [(obj, type(obj).__name__)]
    logging = sys.modules.get("logging")
    if logging is not None and isinstance(obj, logging.Handler):
        lock = obj.__dict__.get("lock")
        return [(lock, "handler")] if is_primitive(lock) else []
    del d
    return []
