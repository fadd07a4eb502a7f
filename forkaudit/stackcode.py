"""Which shared objects' code a vanished thread was running: read off its stack memory.

A thread's stack is copied into the child with the rest of the memory, although the
thread is gone. glibc places a thread's descriptor (its pthread_t, which is Python's
threading ident) at the top of the thread's stack mapping, and the stack grows down
from just below it. Reading down from there, every word that points into an executable
mapping of a file is a return address (or a code pointer) of that file: the libraries
the thread was running when it was frozen, innermost (lowest address) first.

Words below the thread's stack pointer at the fork (which is not known here) may be
left over from earlier, deeper calls; the report says "code of X on its stack", not
"X locked it". Reading stops at the first untouched (all-zero) page or after MAX_BYTES.
"""
import array
import bisect

from . import native

PAGE = 4096
MAX_BYTES = 512 * 1024
MAX_MAPPING = 64 * 1024 * 1024  # larger anonymous mappings are not a thread stack
SKIP = ("libc.so", "libc-", "ld-linux", "libpthread", "python3", "libpython", "_shim.", "_cffi_backend")


def _exec_ranges(maps):
    return [(m.start, m.end, m.path) for m in maps.mappings
            if "x" in m.perms and m.path.startswith("/")]


def libraries(ident, maps):
    """File paths of the shared objects whose code appears on the stack of the thread whose
    pthread_t is `ident`, innermost first; None when its stack cannot be read."""
    if native.lib is None or not ident:
        return None
    m = maps.find(ident)
    if m is None or m.path not in ("", "[anon]") or m.end - m.start > MAX_MAPPING or "rw" not in m.perms:
        return None
    ranges = _exec_ranges(maps)
    if not ranges:
        return None
    lo_all, hi_all = min(r[0] for r in ranges), max(r[1] for r in ranges)
    starts = [r[0] for r in ranges]
    found = {}  # path -> lowest address it was seen at
    top = ident & ~(PAGE - 1)
    addr, read = top, 0
    while addr >= m.start and read < MAX_BYTES:
        data = native.read(addr, PAGE)
        if data is None or not data.strip(b"\0"):
            break
        words = array.array("Q", data)
        for i, w in enumerate(words):
            if lo_all <= w < hi_all:
                j = bisect.bisect_right(starts, w) - 1
                if j >= 0 and w < ranges[j][1]:
                    found[ranges[j][2]] = addr + 8 * i
        addr -= PAGE
        read += PAGE
    ordered = sorted(found, key=found.get)
    return [p for p in ordered if not p.rsplit("/", 1)[-1].startswith(SKIP)]
