"""A clean fork's short way through the child's audit (issue 8, goal 1: cleanfork.py).

A fork where no other thread holds a lock is proven clean from the parent's snapshot and
the child's C scan, and its record is written from text the parent rendered, without the
full audit reading the snapshot in the child. What must hold:

- the short way's record is the full audit's record, key for key, for every shape of a
  clean fork (idle Python threads, a thread only the kernel knows, no other thread, the
  forking thread holding a lock of its own), and last_event() in the child is that record;
- it is taken for those forks (counted: cleanfork.PROVEN), and never where something is
  held: a Python lock or a glibc mutex held by another thread goes the full way and is
  reported (the controls).

Each program forks twice the same way, once with FORKAUDIT_TESTONLY_FULL_AUDIT set in the
child's environment (the full audit, whatever the proof says), so the two records differ
only in what two forks of one process differ in.
"""
import json
import sys

import pytest

from forkcase import FORK_AND_TELL

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forkaudit audits forks on Linux")

PROGRAM = FORK_AND_TELL + r'''
import ctypes, json, os, sys, threading
SHAPE = sys.argv[1]
stop = threading.Event()
ready = []
LOCK = threading.Lock()
libc = ctypes.CDLL(None, use_errno=True)
mutex = ctypes.create_string_buffer(64)          # zeroes: PTHREAD_MUTEX_INITIALIZER

def idle():
    ready.append(1)
    stop.wait()

def py_holder():
    with LOCK:
        ready.append(1)
        stop.wait()

def c_holder():
    libc.pthread_mutex_lock(mutex)
    ready.append(1)
    stop.wait()
    libc.pthread_mutex_unlock(mutex)

expected = 0
if SHAPE != "alone":
    for i in range(2):
        threading.Thread(target=idle, name="idle-%d" % i, daemon=True).start()
    expected = 2
if SHAPE == "kernel-thread":                     # a thread with no Python in it: pause() forever
    tid = ctypes.c_ulong()
    start = ctypes.cast(libc.pause, ctypes.c_void_p)
    assert libc.pthread_create(ctypes.byref(tid), None, start, None) == 0
    while len(os.listdir("/proc/self/task")) < 4:
        threading.Event().wait(0.001)
if SHAPE == "held-python":
    threading.Thread(target=py_holder, name="py-holder", daemon=True).start()
    expected += 1
if SHAPE == "held-c":
    threading.Thread(target=c_holder, name="c-holder", daemon=True).start()
    expected += 1
while len(ready) < expected:
    threading.Event().wait(0.001)

def proven_and_record():
    import forkaudit, forkaudit.cleanfork
    return [forkaudit.cleanfork.PROVEN, forkaudit.last_event()]

for full in (False, False, True):                # a warm-up (it loads the flow), then the two
    if full:
        os.environ["FORKAUDIT_TESTONLY_FULL_AUDIT"] = "1"
    if SHAPE == "own-lock":
        with LOCK:                               # the forking thread's own: the child's
            told = fork_and_tell(proven_and_record)
    else:
        told = fork_and_tell(proven_and_record)
    print("told", json.dumps(told))
stop.set()
'''

# what two forks of one process made the same way may differ in
VARYING = ("time", "pid")
VARYING_SCAN = ("seconds", "bytes", "bytes_total", "pool_bytes_skipped", "mappings", "skipped")


def comparable(record):
    out = {k: v for k, v in record.items() if k not in VARYING}
    if out.get("scan"):
        out["scan"] = {k: v for k, v in out["scan"].items() if k not in VARYING_SCAN}
    return out


def run_shape(run_python, tmp_path, shape):
    result = run_python(PROGRAM, env={"FORKAUDIT": "record", "FORKAUDIT_JSON": str(tmp_path / "report.jsonl")},
                        args=(shape,), timeout=120)
    assert result.returncode == 0, result
    told = [json.loads(line[len("told "):]) for line in result.stdout.splitlines() if line.startswith("told ")]
    assert len(told) == 3 and len(result.children) == 3, result
    return told, result.children


@pytest.mark.parametrize("shape", ["idle-threads", "kernel-thread", "alone", "own-lock"])
def test_a_clean_fork_takes_the_short_way_and_writes_the_full_audits_record(run_python, tmp_path, shape):
    told, records = run_shape(run_python, tmp_path, shape)
    (short_proven, short_event), (full_proven, full_event) = told[1], told[2]
    assert (short_proven, full_proven) == (1, 0), told
    short, full = records[1], records[2]
    assert short["hazards"] == [] and short["reinitialized"] == [] and short["unreachable"] == [], short
    assert list(short) == list(full), (list(short), list(full))     # the same keys, in the same order
    assert comparable(short) == comparable(full), (short, full)
    assert short_event == short and full_event == full              # last_event() is the record
    if shape == "kernel-thread":
        assert [t for t in short["threads"] if not t["python"]], short["threads"]
    if shape == "alone":
        assert short["threads"] == [] and short["scan"]["not_run"] == "no_other_threads", short


@pytest.mark.c_level
@pytest.mark.parametrize("shape", ["held-python", "held-c"])
def test_control_a_fork_with_a_lock_held_goes_the_full_way(run_python, tmp_path, shape):
    told, records = run_shape(run_python, tmp_path, shape)
    assert [t[0] for t in told] == [0, 0, 0], told
    owners = {(h.get("owner") or {}).get("name") for h in records[1]["hazards"]}
    assert ("py-holder" if shape == "held-python" else "c-holder") in owners, records[1]["hazards"]
    assert comparable(records[1])["hazards"] == comparable(records[2])["hazards"]
