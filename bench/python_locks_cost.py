"""What forkaudit's Python-level lock work costs on a big heap.

    python bench/python_locks_cost.py [--objects 1000000] [--locks 100000] [--rounds 15]

Builds a heap of about --objects Python objects among which --locks locks
(Lock and RLock, in instance attributes, dicts, lists and module globals), and
4 threads, one of them holding a lock. Prints, against a bare fork measured in
the same run (ratios; this asserts nothing about time):

  capture   the parent-side snapshot (threads, stacks, held locks), timed directly
  fork      os.fork() seen from the parent, bare vs audited (scan off: Python-level only)
  audit     the child-side audit (the walk that names locks and finds unattributed
            ones), timed in forked children, with the walk's size and whether it
            finished within its budget
"""
import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

import forkaudit
from benchutil import in_child
from forkaudit import flow, naming, pylocks, settings


class Account:
    def __init__(self, i):
        self.id = i
        self.balance = i * 3
        self.lock = threading.Lock() if i % 2 else threading.RLock()
        self.tags = ["a", "b"]


def build(objects, locks):
    accounts = [Account(i) for i in range(locks // 2)]                       # locks in attributes
    registry = {"acct-%d" % i: [threading.Lock(), i] for i in range(locks // 4)}   # in dicts/lists
    module = sys.modules[__name__]
    for i in range(locks - len(accounts) - len(registry)):
        setattr(module, "LOCK_%d" % i, threading.Lock())                     # module globals
    filler = [{"k": i, "v": (i, str(i))} for i in range(max(0, (objects - 4 * locks) // 4))]
    return accounts, registry, filler


def fork_ms():
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    t1 = time.perf_counter()
    os.waitpid(pid, 0)
    return (t1 - t0) * 1e3


HEAP = None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=1000000)
    ap.add_argument("--locks", type=int, default=100000)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    global HEAP
    HEAP = heap = build(args.objects, args.locks)   # a module global: the walk names from here
    import gc
    print("python %s: %d GC-tracked objects, %d locks built" % (sys.version.split()[0], len(gc.get_objects()), args.locks))
    hot = heap[0][1].lock
    stop = threading.Event()

    def holder():
        with hot:
            stop.wait()

    threads = [threading.Thread(target=holder if i == 0 else stop.wait, daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.2)

    cfg = settings.make("record", os.path.join(tempfile.mkdtemp(), "b.jsonl"), "off")
    captures = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        flow.take_snapshot(cfg)
        captures.append((time.perf_counter() - t0) * 1e3)

    bare, audited = [], []
    for _ in range(args.rounds):
        forkaudit.uninstall()
        bare.append(fork_ms())
        forkaudit.install(policy="record", json_path=cfg.json_path, scan="off")
        audited.append(fork_ms())
    forkaudit.uninstall()

    snap = flow.take_snapshot(cfg)

    def child_audit():
        t0 = time.perf_counter()
        walk = naming.walk()
        t1 = time.perf_counter()
        hazards, _ = pylocks.audit_child(snap.pylocks, {})
        t2 = time.perf_counter()
        return ((t1 - t0) * 1e3, (t2 - t1) * 1e3, walk.visited, walk.complete, len(walk.locks),
                [h["object"]["path"] for h in hazards])

    walks = [in_child(child_audit) for _ in range(5)]
    b = statistics.median(bare)
    print("capture (parent, before fork): median %.2f ms" % statistics.median(captures))
    print("fork seen by the parent: bare %.2f ms, audited %.2f ms (%.2fx)"
          % (b, statistics.median(audited), statistics.median(audited) / b))
    walk_ms = statistics.median(w[0] for w in walks)
    audit_ms = statistics.median(w[1] for w in walks)
    _, _, visited, complete, nlocks, paths = walks[0]
    print("child audit: walk %.1f ms (%d objects visited, %d locks seen, %s), full audit %.1f ms (%.1fx a bare fork)"
          % (walk_ms, visited, nlocks, "complete" if complete else "stopped at its budget of %d" % naming.MAX_NODES,
             audit_ms, audit_ms / b))
    print("hazard found:", paths)
    stop.set()


if __name__ == "__main__":
    main()
