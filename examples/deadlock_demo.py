"""forkaudit's demo: the QueueHandler + fork-based Pool deadlock, made deterministic.

A program logs through a QueueHandler into a queue.Queue drained by a
QueueListener thread. Thread 'log-writer' is inside Queue.put, holding the
queue's mutex, when a fork-based multiprocessing.Pool starts its worker (here
the put stalls for two seconds, standing in for a thread that is merely
preempted at the wrong moment). The worker inherits the mutex held, by a
thread that does not exist in it, and hangs on its first log call.

    python examples/deadlock_demo.py                          # the worker hangs
    forkaudit run -- python examples/deadlock_demo.py         # ... and forkaudit says why
    forkaudit run --policy abort -- python examples/deadlock_demo.py
                                  # hazardous workers exit with status 86; the pool replaces them

The demo never hangs itself: it gives the worker a few seconds, then stops the pool.
"""
import logging
import logging.handlers
import multiprocessing
import os
import queue
import sys
import threading
import time


class StallingQueue(queue.Queue):
    """A queue whose first put stalls while holding the mutex, like a preempted thread."""

    stall = 2.0

    def _put(self, item):
        if self.stall:
            stall, self.stall = self.stall, 0
            time.sleep(stall)
        super()._put(item)


def work(n):
    logging.getLogger("demo.worker").warning("worker %d says hello", os.getpid())
    return n * n


def main():
    log_queue = StallingQueue()
    listener = logging.handlers.QueueListener(log_queue, logging.StreamHandler(sys.stdout))
    listener.start()
    logging.getLogger().addHandler(logging.handlers.QueueHandler(log_queue))

    writer = threading.Thread(target=logging.warning, args=("the parent is logging",), name="log-writer")
    writer.start()
    time.sleep(0.2)  # log-writer is now inside Queue.put, holding log_queue.mutex

    pool = multiprocessing.get_context("fork").Pool(1)
    try:
        result = pool.apply_async(work, (7,)).get(timeout=6)
        print("the worker finished: %d" % result, flush=True)
    except multiprocessing.TimeoutError:
        print("the worker hung: it inherited a lock held by a thread that does not exist in it",
              flush=True)
        pool.terminate()
    else:
        pool.close()
    pool.join()
    writer.join()
    listener.stop()


if __name__ == "__main__":
    main()
