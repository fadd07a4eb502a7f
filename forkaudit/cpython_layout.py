"""CPython's lock objects, read as memory: the one place forkaudit depends on their layout.

On CPython 3.9-3.13 (default builds), `_thread.lock` and `_thread.RLock` keep
a pointer to their PyThread lock (a glibc sem_t) right after the object
header; the semaphore's value is 1 when free, 0 when taken. forkaudit needs
it because the objects' own view lags: acquire() takes the semaphore with
the GIL released, and sets the object's `locked` flag (or an RLock's
owner/count) only once it has the GIL back. A thread caught in between at
the fork leaves the lock taken while lock.locked() says False — the classic
way the seed deadlock happens.

The layout is verified at import on real locks; where it does not match,
`verified` is False and callers fall back to the objects' own view.
"""
import struct
import threading

from . import native

LOCK_POINTER_OFFSET = 16  # after PyObject_HEAD (ob_refcnt, ob_type)


def _u64(addr):
    data = native.read(addr, 8)
    return None if data is None else struct.unpack("<Q", data)[0]


def _sem_value(obj):
    pointer = _u64(id(obj) + LOCK_POINTER_OFFSET)
    if not pointer:
        return None
    data = native.read(pointer, 4)
    return None if data is None else struct.unpack("<I", data)[0]


def _verify():
    if native.lib is None or not native.available:
        return False
    try:
        for make in (threading.Lock, getattr(threading, "_CRLock", None)):
            if make is None:
                continue
            lock = make()
            free = _sem_value(lock)
            lock.acquire()
            taken = _sem_value(lock)
            lock.release()
            if (free, taken, _sem_value(lock)) != (1, 0, 1):
                return False
        return True
    except Exception:  # noqa: BLE001
        return False


verified = _verify()


def taken(lock):
    """True/False: is the lock's semaphore taken right now; None when it cannot be read."""
    if not verified:
        return None
    value = _sem_value(lock)
    return None if value is None else value == 0
