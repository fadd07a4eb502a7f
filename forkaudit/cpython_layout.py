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
import sys
import threading

from . import native
from .settings import testonly_mortal

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

# _thread.RLock (rlockobject, Modules/_threadmodule.c, 3.9-3.13): after the lock pointer,
# unsigned long rlock_owner (the owner's thread ident; PyThread_ident_t on 3.13, the same
# size) and unsigned long rlock_count. The child-side scan reads them (csrc/scan.c).
RLOCK_OWNER_OFFSET = 24
RLOCK_COUNT_OFFSET = 32


def _verify_rlock():
    """Owner and count where the scan reads them, on a C RLock held twice by this thread,
    then released (both back to 0, semaphore free)."""
    import _thread

    if not verified or not isinstance(getattr(_thread, "RLock", None), type):
        return False
    try:
        lock = _thread.RLock()
        me = threading.get_ident()

        def state():
            return (_checked_sem_value(lock), _checked_u64(id(lock) + RLOCK_OWNER_OFFSET),
                    _checked_u64(id(lock) + RLOCK_COUNT_OFFSET))

        free = state()
        lock.acquire()
        lock.acquire()
        held = state()
        lock.release()
        lock.release()
        return (free, held, state()) == ((1, 0, 0), (0, me, 2), (1, 0, 0))
    except Exception:  # noqa: BLE001
        return False


def pylock_types():
    """[(type, kind)] of the lock types whose layout is verified here, for the scan."""
    import _thread

    out = []
    if verified:
        out.append((type(_thread.allocate_lock()), "lock"))
        if _verify_rlock():
            out.append((_thread.RLock, "rlock"))
        if buffered_offsets is not None:
            out.extend((t, "buffered") for t in BUFFERED_TYPES)
    return out


def register_pylock_types():
    """Make the child-side C scan find held instances of the verified lock types
    (native.set_pylock_types), and buffered IO objects whose internal lock is held where
    their layout is known. The types registered, in type_index order."""
    global registered_kinds, registered_types
    types = pylock_types()
    if buffered_offsets is not None:
        native.set_buffered_layout(*buffered_offsets)
    native.set_pylock_types([id(t) for t, _ in types], [k for _, k in types])
    registered_kinds = tuple(k for _, k in types)
    registered_types = tuple(t for t, _ in types)
    learn_pools(types)
    return [t for t, _ in types]


MAX_REFCNT = 1 << 40   # as the scan's check (csrc/scan.c): a free block's first word is a pointer


def object_at(address, t):
    """The lock object of type t at address (a held one the scan found), or None unless its
    memory still reads as one, fault-safely: a reference count, t as its type, and a taken
    semaphore. (A child's at-fork handler may have freed it since the scan.)"""
    head = native.read(address, 16)
    if not head or not verified:
        return None
    refcnt, type_word = int.from_bytes(head[:8], "little"), int.from_bytes(head[8:], "little")
    if not 0 < refcnt < MAX_REFCNT or type_word != id(t) or taken_at(address) is not True:
        return None
    # never an import here, in a child: a vanished thread may hold that module's import lock
    # (flow.prepare imports ctypes in the parent)
    ctypes = sys.modules.get("ctypes")
    if ctypes is None:
        return None
    return ctypes.cast(address, ctypes.py_object).value


# pymalloc's pool size: 16 KiB on 3.10+ (64-bit, radix tree), 4 KiB on 3.9 (csrc/pymalloc_layout.h)
POOL_SIZES = (16384, 4096)


def _instance(t, kind):
    """A fresh instance of registered lock type t, or None."""
    import _thread
    import io
    try:
        obj = (_thread.allocate_lock() if kind == "lock" else t() if kind == "rlock"
               else t(io.BytesIO()) if kind == "buffered" else None)
    except Exception:  # noqa: BLE001
        return None
    return obj if type(obj) is t else None


def learn_pools(types):
    """Tell the scan pymalloc's pool size and the registered lock types' size classes, learnt
    from a live instance of each (the pool holding it, its header checked field by field, the
    instance on a block boundary of that class): it skips the pools of blocks too small for a
    mutex that are of none of those classes. Any doubt: every pool is read."""
    native.set_pools(0, ())
    samples = [_instance(t, kind) for t, kind in types]
    if not samples or any(obj is None for obj in samples):
        return
    for size in POOL_SIZES:
        classes = set()
        for obj in samples:
            c = native.pool_class(id(obj), size)
            base = id(obj) & ~(size - 1)
            offset = id(obj) - base - native.lib.FA_POOL_HEADER_BYTES
            # the object starts a block, or a pre-header of at most 32 bytes (GC, 3.12+ managed
            # dict and weakref pointers) does
            if c < 0 or offset < 0 or offset % ((c + 1) * 16) > 32:
                break
            classes.add(c)
        else:
            native.set_pools(size, classes)
            return


registered_kinds = ()   # the kind of each registered type, in type_index order
registered_types = ()   # the registered types, in type_index order


def semaphore_address(lock):
    """Address of the lock's semaphore (its futex word), or None."""
    if not verified:
        return None
    return int(native.ffi.cast("uint64_t *", id(lock) + LOCK_POINTER_OFFSET)[0]) or None


def taken_at(address, buffered=False):
    """The same question for a lock object (buffered: a buffered IO object's internal lock)
    known only by its address (the C scan's discovery), read fault-safely: True/False, or None
    when it cannot be read."""
    if not verified or (buffered and buffered_offsets is None):
        return None
    raw = native.read(address + (buffered_offsets[0] if buffered else LOCK_POINTER_OFFSET), 8)
    pointer = int.from_bytes(raw, "little") if raw else 0
    raw = native.read(pointer, 4) if pointer else None
    return None if raw is None else int.from_bytes(raw, "little") == 0


def taken(lock):
    """True/False: is the lock's semaphore taken right now; None when it cannot be read."""
    if not verified:
        return None
    value = _sem_value(lock)
    return None if value is None else value == 0


# Buffered IO objects (io.BufferedWriter and friends) keep their own PyThread lock and the
# ident of the thread that holds it ("lock", then "owner", in the C struct). A thread
# blocked in a write to a full pipe holds it, and nobody resets it in the child: the child
# hangs on its first write to that file. The offsets are found and verified at import, on
# a probe whose raw write() runs while the buffered object holds its lock.
BUFFERED_TYPES = ()
buffered_offsets = None  # (lock pointer offset, owner offset), or None when unknown


def _find_buffered_offsets():
    import io

    found = []

    class Probe(io.RawIOBase):
        def writable(self):
            return True

        def write(self, b):
            if not found:
                found.append(_scan_for_owner(self.outer))
            return len(b)

    raw = Probe()
    buffered = io.BufferedWriter(raw, buffer_size=64)
    raw.outer = buffered
    buffered.write(b"x" * 256)
    buffered.flush()
    offsets = found[0] if found else None
    if offsets is None:
        return None
    lock_off, owner_off = offsets
    if _checked_u64(id(buffered) + owner_off) != 0:  # released: owner cleared
        return None
    pointer = _checked_u64(id(buffered) + lock_off)
    if not pointer or _checked_u32(pointer) != 1:
        return None
    return offsets


def _checked_u64(addr):
    raw = native.read(addr, 8)
    return int.from_bytes(raw, "little") if raw else None


def _checked_u32(addr):
    raw = native.read(addr, 4)
    return int.from_bytes(raw, "little") if raw else None


def _scan_for_owner(obj):
    """While obj's lock is held by this thread: the offset of the owner ident, and of the
    lock pointer just before it (its semaphore must read taken)."""
    me = threading.get_ident()
    for off in range(16, 256, 8):
        if _checked_u64(id(obj) + off) == me:
            pointer = _checked_u64(id(obj) + off - 8)
            if pointer and _checked_u32(pointer) == 0:
                return off - 8, off
    return None


if verified:
    try:
        import io as _io
        buffered_offsets = _find_buffered_offsets()
        if buffered_offsets is not None:
            BUFFERED_TYPES = (_io.BufferedWriter, _io.BufferedReader, _io.BufferedRandom)
    except Exception:  # noqa: BLE001 - no buffered-IO detection, nothing worse
        buffered_offsets = None


def buffered_owner(obj):
    """The ident of the thread holding a buffered IO object's internal lock, or None if free.

    (Direct reads: the object is alive, the offsets verified.)"""
    if buffered_offsets is None or not issubclass(type(obj), BUFFERED_TYPES):
        return None
    lock_off, owner_off = buffered_offsets
    pointer = int(native.ffi.cast("uint64_t *", id(obj) + lock_off)[0])
    if not pointer or int(native.ffi.cast("uint32_t *", pointer)[0]) != 0:
        return None
    return int(native.ffi.cast("uint64_t *", id(obj) + owner_off)[0]) or None


# ---- forkaudit's own code objects made immortal (3.12+) --------------------------------------
# Every object Python touches has its reference count written, and in a child of a fork each
# page so written is a copy (2.5 us here, and a page of the child's private memory). A clean
# fork's child runs ~30 of forkaudit's functions: their function and code objects, classes and
# module dicts are ~60 pages copied in every child, and written again in the parent at every
# fork (a fork write-protects them). CPython 3.12+ (default builds) skips the count of an
# immortal object: one whose count's low 32 bits are all ones (Py_INCREF leaves it, Py_DECREF
# never frees it). forkaudit's modules live as long as the process, so their code can be made
# immortal: only forkaudit's own objects, never the program's.

IMMORTAL_LOW = 0xFFFFFFFF


def _immortal_layout():
    """Is the refcount's low half at the object's start, and immortal when all ones? Checked
    on a throwaway object (which then stays, 16 bytes)."""
    if sys.version_info < (3, 12) or sys.byteorder != "little" or "t" in getattr(sys, "abiflags", ""):
        return False   # (older: no immortal objects; a free-threaded build: another header)
    probe = object()
    native.ffi.cast("uint32_t *", id(probe))[0] = IMMORTAL_LOW
    before = sys.getrefcount(probe)
    again = probe
    after = sys.getrefcount(probe)
    del again
    return before == after


def _own_objects(prefix, package_dir):
    """forkaudit's modules, their dicts, classes, functions and code (constants included)."""
    seen = {}
    code_type = type(_own_objects.__code__)
    function_type = type(_own_objects)

    def add(obj):
        seen.setdefault(id(obj), obj)

    def add_code(code):
        stack = [code]
        while stack:
            c = stack.pop()
            if id(c) in seen:
                continue
            add(c)
            for k in c.co_consts:
                if type(k) is code_type:
                    stack.append(k)
                elif type(k) in (tuple, frozenset):
                    add(k)

    def add_function(fn):
        if type(fn) is function_type and fn.__code__.co_filename.startswith(package_dir):
            add(fn)
            add_code(fn.__code__)

    for name, module in list(dict.items(sys.modules)):
        if not (name == prefix or name.startswith(prefix + ".")) or type(module) is not type(sys):
            continue
        add(module)
        namespace = module.__dict__
        add(namespace)
        for value in list(dict.values(namespace)):
            add_function(value)
            owner = value.__dict__.get("__module__") if type(value) is type else None
            if type(owner) is str and (owner == prefix or owner.startswith(prefix + ".")):
                add(value)
                for member in list(value.__dict__.values()):
                    add_function(member)
                    if type(member) in (staticmethod, classmethod):
                        add_function(member.__func__)
    return list(seen.values())


immortal_count = 0   # how many objects immortalize_own() last made immortal (the tests read it)


def immortalize_own(prefix, package_dir):
    """Make forkaudit's own modules and code immortal (see above); the number made so, 0
    where this Python has no immortal objects. Called in the parent, before a fork."""
    global immortal_count
    if native.ffi is None or testonly_mortal() or not _immortal_layout():
        return 0
    objects = _own_objects(prefix, package_dir)
    objects += [native.ffi, native.lib]   # the shim's own: each C call reads an attribute of lib
    for obj in objects:
        native.ffi.cast("uint32_t *", id(obj))[0] = IMMORTAL_LOW
    immortal_count = len(objects)
    return immortal_count
