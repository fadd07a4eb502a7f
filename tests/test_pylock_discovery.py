"""The child-side C scan finds held CPython lock objects, read-only (issue 8: discovery
without a Python object walk).

A `_thread.lock` or `_thread.RLock` is found when its ob_type word is a registered type
(cpython_layout.register_pylock_types) and its semaphore is taken, whoever holds it and
however it was taken: a lock acquired with .acquire() in a function that has returned (no
stack accounts for it) is found; an RLock held twice comes with its owner ident and count 2;
the forking thread's own held lock is found too (telling owners apart is the caller's job).
Free locks beside them are not found (negative controls), nor are 100k free locks, 1M ints,
or words that only look like a lock object's header (a fault on their pointer is survived).

Each case runs in its own interpreter, forks once, and scans in the child (native.scan_now,
or the real at-fork scan with forkaudit installed); the child prints one line of facts.
Both prefilters run: AVX2 (where the CPU has it) and the portable one.
"""
import json
import sys

import pytest

from forkcase import IN_WRITE

pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the C scan is Linux only"),
              pytest.mark.c_level]

# A thread takes `taken` in grab(), which returns, and `rl` twice, then blocks in os.read
# (no Python lock involved, so the set of held locks is exactly known); the main thread
# holds `mine`; `free` and `free_rl` stay free. Then the main thread forks.
PRELUDE = r'''
import json, os, sys, threading, _thread, warnings
warnings.simplefilter("ignore", DeprecationWarning)   # fork() with threads: that is the point
from forkaudit import native, cpython_layout

TYPES = cpython_layout.register_pylock_types()
ready_r, ready_w = os.pipe()
park_r, park_w = os.pipe()
taken, free, mine = threading.Lock(), threading.Lock(), threading.Lock()
rl, free_rl = threading.RLock(), threading.RLock()
info = {}


def grab():
    taken.acquire()          # held after this frame has returned


def holder():
    grab()
    rl.acquire()
    rl.acquire()
    info.update(ident=threading.get_ident(), tid=threading.get_native_id())
    os.write(ready_w, b"x")
    os.read(park_r, 1)


holder_thread = threading.Thread(target=holder, name="holder", daemon=True)
holder_thread.start()
os.read(ready_r, 1)
mine.acquire()


def names():
    out = {id(taken): "taken", id(free): "free", id(mine): "mine", id(rl): "rl", id(free_rl): "free_rl"}
    main_tstate = getattr(threading.main_thread(), "_tstate_lock", None)   # 3.9-3.12: held for life
    if main_tstate is not None:
        out[id(main_tstate)] = "main_tstate"
    return out


def report(extra=None):
    d = native.python_discovery()
    named = names()
    facts = {"types": [t.__name__ for t in TYPES], "ident": info["ident"],
             "held": [[named.get(a, hex(a)), ti, o, c] for a, ti, o, c in d["held"]],
             "ran": d["ran"], "complete": d["complete"], "free_seen": d["free_seen"],
             "overflow": d["overflow"], "stats": native.stats()}
    facts.update(extra or {})
    print("@@" + json.dumps(facts), flush=True)


def fork_and(child):
    pid = os.fork()
    if pid == 0:
        try:
            child()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
'''

def facts(result):
    lines = [line[2:] for line in result.stdout.splitlines() if line.startswith("@@")]
    assert len(lines) == 1, result
    return json.loads(lines[0])


def held_names(f):
    return sorted(name for name, _, _, _ in f["held"] if name != "main_tstate")


def env_for(prefilter):
    return {"FORKAUDIT_TESTONLY_PORTABLE_SCAN": "1"} if prefilter == "portable" else {}


@pytest.mark.parametrize("prefilter", ["avx2", "portable"])
def test_held_locks_found_free_ones_not(run_python, prefilter):
    r = run_python(PRELUDE + r'''
def child():
    native.scan_now("full", [info["tid"]])
    report()
fork_and(child)
''', env=env_for(prefilter), timeout=60)
    f = facts(r)
    assert f["types"] == ["lock", "RLock", "BufferedWriter", "BufferedReader", "BufferedRandom"]
    assert f["ran"] and f["complete"]
    held = {name: (ti, owner, count) for name, ti, owner, count in f["held"]}
    # positives: a lock taken in a returned frame, an RLock held twice, the forker's own lock
    assert held["taken"] == (0, 0, 0)
    assert held["rl"] == (1, f["ident"], 2)
    assert held["mine"] == (0, 0, 0)
    # negatives beside them, and nothing else (every other entry would be a false hit)
    assert held_names(f) == ["mine", "rl", "taken"], f["held"]
    assert f["free_seen"] >= 2          # free and free_rl were seen, valid, and not recorded
    assert f["stats"]["pylock_faults"] == 0


@pytest.mark.parametrize("prefilter", ["avx2", "portable"])
def test_no_false_hits_among_many_free_locks_and_ints(run_python, prefilter):
    r = run_python(PRELUDE + r'''
free_locks = [threading.Lock() for _ in range(100000)]
free_rlocks = [threading.RLock() for _ in range(10000)]
ints = list(range(10 ** 6))
def child():
    native.scan_now("full", [info["tid"]])
    report({"ints": len(ints)})
fork_and(child)
''', env=env_for(prefilter), timeout=120)
    f = facts(r)
    assert f["ran"] and f["complete"]
    assert held_names(f) == ["mine", "rl", "taken"], f["held"][:20]
    assert f["free_seen"] >= 110000      # each free lock was looked at, validated, left out
    assert f["overflow"] == 0


def test_lookalike_words_are_rejected_and_a_bad_pointer_survived(run_python):
    """Words equal to a lock type's address in plain data: behind a refcount out of range,
    a null or unaligned or unmapped lock pointer, a semaphore whose value or private field
    is not a semaphore's: none is recorded, and the faults on unmapped pointers are survived
    (counted), with the real held locks still found."""
    r = run_python(PRELUDE + r'''
import ctypes, mmap, struct
LOCK = id(TYPES[0])
fake_sem = ctypes.create_string_buffer(struct.pack("<QII", 0, 7, 0))     # value 0, private 7
waiters_sem = ctypes.create_string_buffer(struct.pack("<QII", 500 << 32, 0, 0))  # 500 waiters
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
hole_addr = libc.mmap(None, 4096, 0, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)   # PROT_NONE
assert hole_addr not in (None, ctypes.c_void_p(-1).value)
words = []
for i in range(2000):
    words += [1 << 50, LOCK, ctypes.addressof(fake_sem)]     # refcount out of range
    words += [1, LOCK, 0]                                    # null lock pointer
    words += [1, LOCK, ctypes.addressof(fake_sem) + 4]       # unaligned
    words += [1, LOCK, ctypes.addressof(fake_sem)]           # private field not a futex flag
    words += [1, LOCK, ctypes.addressof(waiters_sem)]        # more waiters than threads
    words += [1, LOCK, hole_addr + 8 * (i % 512)]            # PROT_NONE: faults
data = (ctypes.c_uint64 * len(words))(*words)
def child():
    native.scan_now("full", [info["tid"]])
    report()
fork_and(child)
''', timeout=60)
    f = facts(r)
    assert f["ran"] and f["complete"]
    assert held_names(f) == ["mine", "rl", "taken"], f["held"][:20]
    assert f["stats"]["pylock_faults"] >= 2000


def test_real_fork_with_forkaudit_installed(run_python, tmp_path):
    """The at-fork scan (not scan_now) does the discovery: it runs in the child before
    CPython's own after-fork code, so the holder thread's lifetime lock (3.9-3.12) is
    there too, beside the locks of the other cases."""
    r = run_python(PRELUDE + r'''
import forkaudit
forkaudit.install(policy="record", scan="full", json_path=os.environ["FORKAUDIT_TEST_REPORT"])
holder_tstate = getattr(holder_thread, "_tstate_lock", None)
tstate_id = id(holder_tstate) if holder_tstate is not None else None
def child():
    report({"armed": native.child_armed(), "tstate_found": tstate_id is None or
            any(a == tstate_id for a, _, _, _ in native.held_python_locks())})
fork_and(child)
''', timeout=60)
    f = facts(r)
    assert f["armed"]
    assert f["ran"] and f["complete"]
    held = {name: (ti, owner, count) for name, ti, owner, count in f["held"]}
    assert held["taken"] == (0, 0, 0) and held["mine"] == (0, 0, 0)
    assert held["rl"] == (1, f["ident"], 2)
    assert "free" not in held and "free_rl" not in held
    assert f["tstate_found"]


def test_overflow_and_partial_scans_say_incomplete(run_python):
    """More held locks than the static array holds: counted, and complete is false; a libs
    scan (loaded objects' data only, not the heap) is never complete for Python locks;
    with no type registered, nothing is looked for (ran false), beside a full scan that
    finds the lock."""
    r = run_python(PRELUDE + r'''
many = [threading.Lock() for _ in range(native.lib.FA_MAX_PYLOCKS + 100)]
for lock in many:
    lock.acquire()
def child():
    out = {}
    native.scan_now("full", [info["tid"]])
    d = native.python_discovery()
    out["full"] = [d["ran"], d["complete"], len(d["held"]), d["overflow"]]
    for lock in many:
        lock.release()
    native.scan_now("full", [info["tid"]])
    d = native.python_discovery()
    out["after_release"] = [d["ran"], d["complete"], len(d["held"]), d["overflow"]]
    native.scan_now("libs", [info["tid"]])
    d = native.python_discovery()
    out["libs"] = [d["ran"], d["complete"]]
    native.set_pylock_types([])
    native.scan_now("full", [info["tid"]])
    d = native.python_discovery()
    out["none"] = [d["ran"], d["complete"], len(d["held"])]
    report(out)
fork_and(child)
''', timeout=60)
    f = facts(r)
    cap = 1024
    assert f["full"][:3] == [True, False, cap] and f["full"][3] >= 100
    assert f["after_release"][:2] == [True, True] and f["after_release"][3] == 0
    assert 3 <= f["after_release"][2] < 10
    assert f["libs"] == [True, False]
    assert f["none"] == [False, False, 0]


@pytest.mark.parametrize("order", ["range", "equality"])
@pytest.mark.parametrize("prefilter", ["avx2", "portable"])
def test_buffered_file_locks_held_by_a_blocked_writer_are_found(run_python, prefilter, order):
    """A thread blocked writing to a full pipe through a BufferedWriter holds that object's
    internal lock: found, with the writer's ident; a BufferedWriter on another pipe that
    nobody is writing (a negative control beside it) is not. The prefilter tests the buffered
    types as one range of addresses after the lock types ("range", as registered), or each by
    equality when they come first ("equality")."""
    reorder = ("TYPES = TYPES[2:] + TYPES[:2]\n"
               "native.set_pylock_types([id(t) for t in TYPES], ['buffered'] * 3 + ['lock', 'rlock'])\n"
               if order == "equality" else "")
    r = run_python(PRELUDE + reorder + IN_WRITE + r'''
import fcntl
full_r, full_w = os.pipe()
spare_r, spare_w = os.pipe()
blocked = os.fdopen(full_w, "wb", buffering=1 << 16)
spare = os.fdopen(spare_w, "wb", buffering=1 << 16)
spare.write(b"y" * 10)          # buffered, not flushed: its lock is free
size = fcntl.fcntl(full_w, 1032)   # F_GETPIPE_SZ
writer_info = {}
def writer():
    writer_info["ident"] = threading.get_ident()
    blocked.write(b"x" * (size + (1 << 17)))   # more than the pipe holds: blocks in write()
writer_thread = threading.Thread(target=writer, name="writer", daemon=True)
writer_thread.start()
wait_in_write(writer_thread)   # the kernel says so: asleep inside write(2)
def names():
    return {id(blocked): "blocked", id(spare): "spare", id(taken): "taken", id(mine): "mine", id(rl): "rl"}
def child():
    native.scan_now("full", [info["tid"], writer_thread.native_id])
    d = native.python_discovery()
    named = names()
    print("@@" + json.dumps({"held": [[named.get(a, hex(a)), TYPES[ti].__name__, o] for a, ti, o, c in d["held"]],
                             "complete": d["complete"], "writer": writer_info["ident"]}), flush=True)
fork_and(child)
''', env=env_for(prefilter), timeout=60)
    f = facts(r)
    assert f["complete"]
    held = {name: (type_name, owner) for name, type_name, owner in f["held"] if not name.startswith("0x")}
    assert held.get("blocked") == ("BufferedWriter", f["writer"]), f["held"]
    assert "spare" not in held, f["held"]
    assert {"taken", "mine", "rl"} <= set(held), f["held"]   # the locks beside it still found
