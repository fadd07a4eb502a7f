"""The native shim, loaded once, with its import-time layout check.

C-level detection needs glibc on x86_64 with the lock layout of
csrc/glibc_layout.h. Where the shim cannot load or the layout does not
match, ``available`` is False, ``reason`` says why in one line, and the rest
of forkaudit (Python-level locks) keeps working.

FORKAUDIT_FORCE_NO_C_LEVEL=1 (read once, at import) is a test and diagnostic
switch: it makes C-level detection unavailable as on a platform whose lock
layout is not verified (musl, another architecture), so that path can be
tested on any machine. The shim still loads (thread ids are still recorded).
"""
import os
import sys

SCAN_MODES = {"off": 0, "libs": 1, "full": 2}
KIND_MUTEX = 1
KIND_RWLOCK = 2

ffi = lib = None
available = False
reason = ""

try:
    from ._shim import ffi, lib  # noqa: F811
except ImportError as e:  # no compiled shim for this platform
    reason = "the native shim is not available (%s)" % e
else:
    # test-only switches (FORKAUDIT_TESTONLY_*), read here because the check runs at import:
    # the layout check's thread starts late / the check waits less for it
    if os.environ.get("FORKAUDIT_TESTONLY_LAYOUT_DELAY_MS", "").isdigit():
        lib.fa_test_layout_delay_ms = int(os.environ["FORKAUDIT_TESTONLY_LAYOUT_DELAY_MS"])
    if os.environ.get("FORKAUDIT_TESTONLY_LAYOUT_WAIT_MS", "").isdigit():
        lib.fa_test_layout_wait_ms = int(os.environ["FORKAUDIT_TESTONLY_LAYOUT_WAIT_MS"])
    # test-only: the child-side scan fails to open /proc/self/maps, as where /proc is missing
    if os.environ.get("FORKAUDIT_TESTONLY_BREAK_MAPS") == "1":
        lib.fa_test_break_maps = 1
    # test-only: use a fallback way of skipping pages never written ("pagemap" or "mincore")
    _forced = os.environ.get("FORKAUDIT_TESTONLY_RESIDENCY")
    if _forced in ("pagemap", "mincore"):
        lib.fa_test_residency = 2 if _forced == "pagemap" else 3
    # test-only: the scan's portable prefilter even where AVX2 is available
    if os.environ.get("FORKAUDIT_TESTONLY_PORTABLE_SCAN") == "1":
        lib.fa_test_portable = 1
    # test-only: the scan's second pass reads /proc/self/maps again instead of using what the
    # first pass noted (as with more mappings than it notes)
    if os.environ.get("FORKAUDIT_TESTONLY_REREAD_MAPS") == "1":
        lib.fa_test_reread_maps = 1
    _msg = ffi.new("char[200]")
    available = bool(lib.fa_layout_check(_msg, 200))
    reason = ffi.string(_msg).decode(errors="replace")

if not sys.platform.startswith("linux"):
    available = False
    reason = "C-level lock detection needs Linux (this is %s)" % sys.platform

FORCE_NO_C_LEVEL = "FORCE_NO_C_LEVEL"
if os.environ.get("FORKAUDIT_" + FORCE_NO_C_LEVEL, "") not in ("", "0"):
    available = False
    reason = "forced off by FORKAUDIT_%s (test/diagnostic switch)" % FORCE_NO_C_LEVEL


def c_level(scan, checked):
    """The record's `c_level`: whether the C-level scan ran for this fork, and if not, why.

    scan: the scan setting; checked: the child ran the scan."""
    if scan == "off":
        return "off: scan disabled"
    if not available:
        return "unavailable: " + reason
    if checked:
        return "checked"
    return "unavailable: before the fork (C-level locks are found in the child)"


def register():
    """Register the pthread_atfork handlers (idempotent). False if it could not."""
    return lib is not None and lib.fa_register() == 0


def set_reject(reject):
    """Addresses of type objects whose instances can mimic a held mutex (a Python int)."""
    if lib is not None:
        ids = ffi.new("uint64_t[]", list(reject)[:8] or [0])
        lib.fa_set_reject(ids, min(len(reject), 8))


PYLOCK_KINDS = {"lock": 1, "rlock": 2, "buffered": 3}


def set_pylock_types(ids, kinds=None):
    """The CPython lock types whose held instances the child-side scan also finds, in the
    same pass as C-level locks (set once; [] turns it off): ids are id() of the types, at most
    6; kinds "lock" (_thread.lock), "rlock" (_thread.RLock) or "buffered" (a buffered IO type:
    its internal lock, at set_buffered_layout's offsets) for each, by default "rlock" for
    id(_thread.RLock) and "lock" for any other. The index of a type in ids is the type_index
    of held_python_locks(). Call cpython_layout.register_pylock_types() instead: it registers
    only the types whose layout it verified. The number registered."""
    if lib is None:
        return 0
    import _thread
    ids = [int(i) for i in ids][:lib.FA_MAX_PYTYPES]
    if kinds is None:
        kinds = ["rlock" if i == id(_thread.RLock) else "lock" for i in ids]
    arr = ffi.new("uint64_t[]", ids or [0])
    kind_arr = ffi.new("int32_t[]", [PYLOCK_KINDS[k] for k in kinds[:len(ids)]] or [0])
    lib.fa_set_pylock_types(arr, kind_arr, len(ids))
    return len(ids)


def set_buffered_layout(lock_offset, owner_offset):
    """Where a buffered IO object's lock pointer and owner ident are (cpython_layout finds
    and verifies them): the scan then records held instances of "buffered" types."""
    if lib is not None:
        lib.fa_set_buffered_layout(int(lock_offset), int(owner_offset))


def held_python_locks():
    """The CPython lock objects the last child-side scan found held (their semaphore taken):
    [(address, type_index, owner_ident, count)]. address is the object's id(); type_index its
    type's index in set_pylock_types(); for an RLock owner_ident/count are its rlock_owner and
    rlock_count (0, 0: taken by a thread not yet back from acquire()), for a lock 0, 0, for a
    buffered IO object the ident of the thread holding its internal lock (0: not yet set), 0. Every
    held one, whoever holds it (the forking thread's own too)."""
    if lib is None:
        return []
    n = lib.fa_pylocks(ffi.NULL, 0)
    if n <= 0:
        return []
    buf = ffi.new("fa_pylock[]", n)
    n = min(lib.fa_pylocks(buf, n), n)
    return [(int(h.addr), int(h.type), int(h.owner), int(h.count)) for h in (buf[i] for i in range(n))]


def python_discovery(s=None):
    """What the last child-side scan found of Python locks, and whether it saw everything
    (s: its stats(), if the caller has them).

    ran: the scan ran with lock types registered. complete: it read every candidate byte of
    every private writable mapping (scan full, no budget cut) and recorded every held lock it
    met (no overflow); only then is a lock absent from held known not to be held. held: as
    held_python_locks(). free_seen: lock objects it validated and found free (a count).
    overflow: held ones not recorded. types: how many types it looked for."""
    if s is None:
        s = stats()
    if s is None or not s["done"]:
        return {"ran": False, "complete": False, "held": [], "free_seen": 0, "overflow": 0, "types": 0}
    if s["not_run"] == "reused":
        # no other thread ran since a fork whose complete scan found none of theirs held (quiet.c):
        # what is held now is the forking thread's own
        return {"ran": True, "complete": True, "held": [], "free_seen": 0, "overflow": 0, "types": 0,
                "reused": True}
    ran = s["not_run"] is None and s["pytypes"] > 0
    return {"ran": ran,
            "complete": ran and s["mode"] == SCAN_MODES["full"] and s["cut"] is None
            and s["pylock_overflow"] == 0,
            "held": held_python_locks() if ran else [],
            "free_seen": s["pylocks_free"], "overflow": s["pylock_overflow"], "types": s["pytypes"]}


def set_pools(pool_size, wanted_classes):
    """pymalloc's pool size (0: the child-side scan reads every pool) and the size classes of the
    registered lock types: of the other pools, those whose blocks are too small for a mutex are
    skipped after their header (csrc/pymalloc_layout.h)."""
    if lib is not None:
        mask = 0
        for c in wanted_classes:
            mask |= 1 << c
        lib.fa_set_pools(int(pool_size), mask)


def pool_class(address, pool_size):
    """The size class of the pymalloc pool of pool_size bytes holding address, read fault-safely
    (its header checked field by field), or -1 when no such pool holds it."""
    if lib is None:
        return -1
    base = address & ~(pool_size - 1)
    header = read(base, lib.FA_POOL_HEADER_BYTES)
    if not header:
        return -1
    return int(lib.fa_pool_header_class(header, base, pool_size))


def set_budget(ms, mb):
    """The child-side scan's budgets for every later fork: wall milliseconds, MiB read (0: none)."""
    if lib is not None:
        lib.fa_set_budget(max(0, int(ms)), max(0, int(mb)) * 1024 * 1024)


# Pointers to the shim's arming slots, taken once. cffi releases the GIL to look up a global
# variable's address on each `lib.name` access; writes through these pointers are plain memory
# stores, so the before-fork hook never lets another thread run.
if lib is not None:
    _slots = [ffi.addressof(lib.fa_arm, i) for i in range(lib.FA_MAX_ARMED)]
    MAX_PROBE = lib.FA_MAX_PROBE


def arm(tid, scan, probe=()):
    """Arm the fork the thread `tid` (its kernel id) is about to make, through memory stores
    only (no C call: the GIL stays held). Its slot, or False when every slot is taken (not
    audited).

    probe: native ids of threads whose futex to read at the fork (see fa_arm_slot in shim.h)."""
    if lib is None or not tid:
        return False
    free = None
    for slot in _slots:
        if slot.tid == tid:
            free = slot
            break
        if free is None and slot.tid == 0:
            free = slot
    if free is None:
        return False
    free.tid = 0
    probe = [t for t in probe if t][:MAX_PROBE]
    for i, t in enumerate(probe):
        free.probe[i] = t
    free.nprobe = len(probe)
    free.mode = SCAN_MODES[scan] if available else 0
    free.reuse = 0
    free.tid = tid
    return free


def allow_reuse(slot):
    """The parent's part of a clean fork's proof holds for the fork armed in `slot` (arm()'s):
    its child may reuse a clean scan when no other thread ran since (csrc/quiet.c), and the
    fork may take the readings of a new one. A memory store, as arm()."""
    slot.reuse = 1


def set_quiet_clock(fine):
    """Tell the shim whether a thread's CPU time advances in small steps here (threads.
    clock_steps_fine): without it, no clean scan is reused."""
    if lib is not None:
        lib.fa_set_quiet_clock(1 if fine else 0)


def quiet_propose():
    """In a child whose fork is proven clean: offer the parent this fork's readings of the other
    threads as the baseline of later forks (when the parent took them). True if offered."""
    return lib is not None and bool(lib.fa_quiet_propose())


def disarm(tid, slot):
    """Free the slot arm() returned for thread `tid`'s fork (None: nothing was armed)."""
    if slot is not None and slot.tid == tid:
        slot.tid = 0


def child_armed():
    """In a child: did the C prepare handler arm this fork (so the scan ran)?"""
    return lib is not None and bool(lib.fa_child_armed())


def vanished():
    """[(tid, comm, futex)] of the threads recorded at the fork, other than the forking one.

    futex: the futex word the thread was blocked on (0 if none)."""
    if lib is None:
        return []
    n = lib.fa_vanished(ffi.NULL, 0)
    buf = ffi.new("int32_t[]", max(n, 1))
    lib.fa_vanished(buf, n)
    futex = ffi.new("uint64_t[]", max(n, 1))
    lib.fa_vanished_futex(futex, n)
    out = []
    name = ffi.new("char[16]")
    for i in range(n):
        lib.fa_vanished_comm(i, name, 16)
        out.append((int(buf[i]), ffi.string(name).decode(errors="replace"), int(futex[i])))
    return out


def warm_up():
    """In the parent, once: what every child calls first is made here, so that children
    inherit it made. cffi builds a C function's wrapper and parses a C type at its first use
    in a process; in a child that is work and pages written on every fork. (The values read
    here are the last fork's, or zeroes: nothing is done with them.)"""
    if lib is None:
        return
    stats()
    vanished()
    hits()
    held_python_locks()
    child_armed()
    quiet_propose()   # (in the parent: nothing to offer)
    ffi.new("fa_hit[]", 1)
    ffi.new("fa_pylock[]", 1)


def forking_tid():
    return int(lib.fa_forking_tid()) if lib is not None else None


def parent_pid():
    return int(lib.fa_parent_pid()) if lib is not None else None


def hits():
    """The locks found by the last child-side scan: list of dicts."""
    if lib is None:
        return []
    n = lib.fa_hits(ffi.NULL, 0)
    buf = ffi.new("fa_hit[]", max(n, 1))
    n = min(lib.fa_hits(buf, n), n)
    return [{"addr": int(h.addr), "kind": int(h.kind), "owner": int(h.owner), "type": int(h.type),
             "word": int(h.word), "count": int(h.count), "nusers": int(h.nusers)}
            for h in (buf[i] for i in range(n))]


NOT_RUN = {0: None, 1: "off", 2: "no_other_threads", 3: "layout_unknown", 4: "proc_maps_unreadable",
           5: "reused"}
RESIDENCY = {0: None, 1: "pagemap_scan", 2: "pagemap", 3: "mincore"}
CUT = {0: None, 1: "time", 2: "bytes"}


def stats():
    """The last scan's statistics (see fa_scan_stats in csrc/shim.h)."""
    if lib is None:
        return None
    s = ffi.new("fa_scan_stats *")
    lib.fa_stats(s)
    return {"mode": int(s.mode), "mappings": int(s.mappings), "skipped": int(s.skipped),
            "hits": int(s.hits), "overflow": int(s.overflow), "done": bool(s.done),
            "bytes": int(s.bytes), "seconds": float(s.seconds),
            "not_run": NOT_RUN.get(int(s.not_run), "unknown"), "maps_errno": int(s.maps_errno),
            "cut": CUT.get(int(s.cut)), "residency": RESIDENCY.get(int(s.residency)),
            "bytes_total": int(s.bytes_total), "total_exact": bool(s.total_exact),
            "swapped": int(s.swapped), "budget_ms": int(s.budget_ms),
            "budget_bytes": int(s.budget_bytes), "pytypes": int(s.pytypes),
            "pylocks": int(s.pylocks), "pylock_overflow": int(s.pylock_overflow),
            "pylock_faults": int(s.pylock_faults), "pylocks_free": int(s.pylocks_free),
            "pool_bytes": int(s.pool_bytes), "reused_pid": int(s.reused_pid),
            "reused_bytes": int(s.reused_bytes), "reused_bytes_total": int(s.reused_bytes_total)}


def still_held(addr, kind, tid):
    return int(lib.fa_still_held(addr, kind, tid))


def read(addr, size):
    """size bytes at addr, or None if unreadable; never faults."""
    buf = ffi.new("char[]", size)
    if lib.fa_read(addr, buf, size) != 0:
        return None
    return bytes(ffi.buffer(buf, size))


def peek_i32(addr):
    """The int32 at addr, read directly (no C call, so the GIL stays held): only for memory
    known to be live and mapped."""
    return int(ffi.cast("int32_t *", addr)[0])


def dladdr(addr):
    """(file, symbol, file_base, symbol_address) for addr, or None."""
    if lib is None:
        return None
    fname, sname = ffi.new("char[4096]"), ffi.new("char[1024]")
    fbase, saddr = ffi.new("uint64_t *"), ffi.new("uint64_t *")
    if not lib.fa_dladdr(addr, fname, 4096, sname, 1024, fbase, saddr):
        return None
    return (ffi.string(fname).decode(errors="replace") or None,
            ffi.string(sname).decode(errors="replace") or None, int(fbase[0]), int(saddr[0]))


def gettid():
    return int(lib.fa_gettid()) if lib is not None else None


def scan_now(scan, tids):
    """Scan this process now for locks owned by tids (call in a single-threaded child; no budget)."""
    arr = ffi.new("int32_t[]", list(tids) or [0])
    lib.fa_scan_now(SCAN_MODES[scan], arr, len(tids), len(tids) + 1)
    return hits(), stats()


def memchr_pass(scan):
    """(seconds, bytes) of memchr over the same mappings the scan reads."""
    nbytes = ffi.new("uint64_t *")
    t = lib.fa_memchr_pass(SCAN_MODES[scan], nbytes)
    return float(t), int(nbytes[0])
