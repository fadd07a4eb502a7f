"""Precision in a large, busy, real process: no false C-level hazard.

TIDs are common integers, and on Python 3.9-3.11 a small int holding a thread
id has the shape of a held mutex (ob_size 1 where __lock is, the digit where
__owner is). A process full of such ints, with 8 threads and ~300 MB of
objects and the usual C extensions loaded, must fork without one false report.
"""
import pytest

from forkcase import snippet

# C-level lock detection is what this module tests (skips with the platform reason elsewhere)
pytestmark = pytest.mark.c_level

BIG = '''
from forkaudit import native
native.set_budget(60000, 0)   # read all of it (the default 200 ms budget may end first, under ASan say)
import sqlite3, ssl, asyncio, decimal, multiprocessing, json, logging, concurrent.futures, random
stop = threading.Event()
ids = []
def idle():
    ids.append(threading.get_native_id()); stop.wait()
def busy():
    ids.append(threading.get_native_id()); x = 0
    while not stop.is_set():
        x = (x + 1) % 1000
threads = [threading.Thread(target=idle if i % 2 else busy, name="t%d" % i, daemon=True) for i in range(8)]
for t in threads:
    t.start()
while len(ids) < 8:
    time.sleep(0.01)
tid_ints = [[tid + 0 for tid in ids] * 500 for _ in range(400)]          # ints equal to live TIDs
tid_dicts = [{i: tid for i, tid in enumerate(ids)} for _ in range(20000)]
blobs = [bytearray(random.getrandbits(8) for _ in range(64)) * 16384 for _ in range(256)]   # 256 MB
floats = [random.random() for _ in range(1000000)]
con = sqlite3.connect(":memory:"); con.execute("create table t(x)"); con.executemany("insert into t values (?)", [(i,) for i in ids])
ctx = ssl.create_default_context()
for _ in range(4):
    fork_once()
stop.set()
'''


def test_no_false_hazard_in_a_big_threaded_process(run_python):
    result = run_python(snippet(BIG), timeout=180)
    assert result.returncode == 0, result
    assert len(result.children) == 4
    for rec in result.children:
        assert rec["hazards"] == [], rec["hazards"]
        assert len(rec["threads"]) >= 8
        assert rec["scan"]["bytes"] > 250 * 1024 * 1024, rec["scan"]
