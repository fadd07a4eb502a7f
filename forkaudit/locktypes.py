"""The Python lock types forkaudit understands, and how to read their state without blocking."""
import re
import sys
import threading

from . import cpython_layout, safeattr
from .safeattr import is_a

LOCK = type(threading.Lock()) if isinstance(threading.Lock, type) else type(threading._allocate_lock())
CRLOCK = getattr(threading, "_CRLock", None)
PYRLOCK = getattr(threading, "_PyRLock", None)
RLOCKS = tuple(t for t in (CRLOCK, PYRLOCK) if t is not None)
PRIMITIVES = (LOCK,) + RLOCKS

_RLOCK_REPR = re.compile(r"^<(locked|unlocked) .*?owner=(\d+) count=(\d+)")


def is_primitive(obj):
    return is_a(obj, PRIMITIVES)


def type_name(lock):
    return safeattr.type_name(type(lock))


def kind_of(lock):
    if is_a(lock, RLOCKS):
        return "python_rlock"
    if is_a(lock, threading.Semaphore):
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
    taken = cpython_layout.taken(lock) if is_a(lock, (LOCK, CRLOCK) if CRLOCK else LOCK) else None
    if taken is not None:
        return taken
    if is_a(lock, LOCK):
        return LOCK.locked(lock)
    return True


def state(lock):
    """The lock's state now, read without acquiring it. owner is a thread ident (RLocks only)."""
    if is_a(lock, LOCK):
        held = LOCK.locked(lock)
        return _with_semaphore(lock, held, None, 1 if held else 0)
    if CRLOCK is not None and is_a(lock, CRLOCK):
        m = _RLOCK_REPR.match(CRLOCK.__repr__(lock))  # the C repr, never a subclass's
        if m is None:
            return State(False)
        count = int(m.group(3))
        return _with_semaphore(lock, m.group(1) == "locked" and count > 0, int(m.group(2)) or None, count)
    if PYRLOCK is not None and is_a(lock, PYRLOCK):
        d = safeattr.instance_dict(lock) or {}
        count = d.get("_count", 0)
        block = state(d["_block"]) if "_block" in d else State(count > 0)
        return State(block.locked, d.get("_owner") if count else None, count,
                     granted=block.locked and not count)
    if is_a(lock, threading.Semaphore):
        d = safeattr.instance_dict(lock) or {}
        value = d.get("_value", 1)
        return State(value == 0, None, value)
    return State(False)


def underlying(obj):
    """The primitive locks an object guards with, and what wraps them: [(lock, wrapper_name)]."""
    if is_primitive(obj):
        return [(obj, None)]
    if is_a(obj, threading.Condition):
        lock = safeattr.get(obj, "_lock")
        return [(lock, "Condition")] if is_primitive(lock) else []
    if is_a(obj, threading.Semaphore):
        return [(obj, type(obj).__name__)]
    logging = sys.modules.get("logging")
    if logging is not None and is_a(obj, logging.Handler):
        lock = safeattr.get(obj, "lock")
        return [(lock, "handler")] if is_primitive(lock) else []
    return []
