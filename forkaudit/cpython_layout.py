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
import threading

from . import native

LOCK_POINTER_OFFSET = 16  # after PyObject_HEAD (ob_refcnt, ob_type)


def _sem_value(obj):
    """Read the semaphore of a live lock object.

    A plain memory read through cffi (no C call): the before-fork hook must not release
    the GIL, and cffi releases it around every call. The object is alive (the caller holds
    it), so its semaphore is valid memory."""
    pointer = native.ffi.cast("uint64_t *", id(obj) + LOCK_POINTER_OFFSET)[0]
    if not pointer:
        return None
    return int(native.ffi.cast("uint32_t *", pointer)[0])


def _checked_sem_value(obj):
    """The same read, fault-safe (process_vm_readv): used to verify the layout first."""
    raw = native.read(id(obj) + LOCK_POINTER_OFFSET, 8)
    pointer = int.from_bytes(raw, "little") if raw else 0
    raw = native.read(pointer, 4) if pointer else None
    return int.from_bytes(raw, "little") if raw else None


def _verify():
    if native.lib is None or not native.available:
        return False
    try:
        for make in (threading.Lock, getattr(threading, "_CRLock", None)):
            if make is None:
                continue
            lock = make()
            free = _checked_sem_value(lock)
            lock.acquire()
            taken = _checked_sem_value(lock)
            lock.release()
            if (free, taken, _checked_sem_value(lock)) != (1, 0, 1):
                return False
            if (_sem_value(lock), _checked_sem_value(lock)) != (1, 1):
                return False
        return True
    except Exception:  # noqa: BLE001
        return False


verified = _verify()


def semaphore_address(lock):
    """Address of the lock's semaphore (its futex word), or None."""
    if not verified:
        return None
    return int(native.ffi.cast("uint64_t *", id(lock) + LOCK_POINTER_OFFSET)[0]) or None


def taken(lock):
    """True/False: is the lock's semaphore taken right now; None when it cannot be read."""
    if not verified:
        return None
    value = _sem_value(lock)
    return None if value is None else value == 0
