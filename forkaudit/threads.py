"""The parent-side snapshot of threads, taken in the before-fork hook.

The forking thread holds the GIL there, so every other Python thread is
frozen where it stands: its stack is what it was doing at the fork. Only
plain data (and references to lock objects) is kept: frame objects of
threads that vanish must not be touched in the child.
"""
import _thread
import os
import sys
import threading
import time

from . import native, safeattr

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
MAX_FRAMES = 64


def frame_record(frame):
    code = frame.f_code
    return {"file": code.co_filename, "line": frame.f_lineno, "function": code.co_name}


def stack_of(frame, skip_own=False):
    """Frames outermost first. skip_own drops forkaudit's own innermost frames."""
    frames = []
    while frame is not None and len(frames) < MAX_FRAMES:
        frames.append(frame)
        frame = frame.f_back
    if skip_own:
        while frames and frames[0].f_code.co_filename.startswith(PACKAGE_DIR):
            frames.pop(0)
    frames.reverse()
    return frames


class ThreadInfo:
    __slots__ = ("ident", "native_id", "name", "daemon", "frames", "stack", "pthread_tid", "analysis", "key")

    def __init__(self, ident, native_id, name, daemon, frames, pthread_tid=None):
        self.ident, self.native_id, self.name, self.daemon = ident, native_id, name, daemon
        # for a thread Python knows no native id of: the one glibc keeps for it (see pthread_tid)
        self.pthread_tid = pthread_tid
        self.frames = frames  # live frame objects: parent side only, dropped before the fork
        self.stack = [frame_record(f) for f in frames]
        self.analysis = None  # heldby.analyse(frames), once made (pylocks.capture)
        self.key = None       # what a clean record shows of it, once made (cleanfork._thread_key)

    def with_fields(self, name, daemon):
        """The same thread, stack and analysis, under a new name or daemon flag."""
        info = object.__new__(ThreadInfo)
        for slot in ThreadInfo.__slots__:
            object.__setattr__(info, slot, getattr(self, slot))
        info.name, info.daemon, info.key = name, daemon, None
        return info

    def as_report(self, python=True):
        return {"native_id": self.native_id, "ident": self.ident, "name": self.name,
                "daemon": self.daemon, "python": python, "stack": self.stack}


def python_threads():
    """{ident: Thread} without taking threading's locks (never block in a fork hook)."""
    return {ident: t for ident, (t, _fields) in _thread_table().items()}


def _thread_table():
    """{ident: (Thread, its instance dict or {})}, as python_threads()."""
    known = {}
    for table in ("_active", "_limbo"):
        for key, t in list(dict.items(safeattr.get(threading, table, None) or {})):
            fields = safeattr.instance_dict(t) or {}
            ident = fields.get("_ident") or (key if table == "_active" else None)
            if ident is not None:
                known[ident] = (t, fields)
    return known


def _field(thread, name):
    """A Thread's own field (_ident, _native_id, _name, _daemonic), from its instance dict:
    the public properties could be overridden by a subclass, and that is user code."""
    d = safeattr.instance_dict(thread)
    return d.get(name) if d is not None else None


def capture():
    """(forking ThreadInfo, [other ThreadInfo]) for the current moment."""
    frames = sys._current_frames()
    me = _own_ident(frames)
    try:
        return _capture(me, frames)
    finally:
        # frames[me] is this very frame: kept in one of its own locals it would make a
        # reference cycle, and every other thread's frames (and everything their locals
        # hold, such as a multiprocessing feeder's memoryview of a BytesIO) would end up in
        # the garbage collector's hands instead of being freed when their function returns.
        # CPython 3.12.1 crashes collecting such a memoryview (gh-111049): break it now.
        frames.clear()
        del frames


def _own_ident(frames):
    """This thread's ident as the interpreter knows it: the key of its caller's very frame.
    (gevent's monkey-patching makes threading.get_ident() a greenlet's id, which no thread
    state has.) A helper, so that no frame of capture() holds capture()'s own frame."""
    here = sys._getframe(1)
    for ident, frame in dict.items(frames):
        if frame is here:
            return ident
    return threading.get_ident()


# The other threads of the last capture, by ident: (native_id, CPU time in ns, name, daemon,
# ThreadInfo). A thread whose CPU time has not moved since has not run: its stack, and what its
# frames hold (ThreadInfo.analysis), are what they were, and its ThreadInfo is taken again
# instead of reading its frames (most forks' other threads are parked). Only a thread whose frames
# held and took no lock (pylocks.capture keeps only such an analysis: one that refers to nothing
# of the program's but Condition waiter locks), and only where the kernel's thread CPU clock
# counts in small steps (cpu_clock_fine, set at the first fork's setup).
_unmoved = {}
cpu_clock_fine = False


def clock_steps_fine():
    """Does a thread's CPU time advance in small steps here (the kernel's scheduler clock in ns,
    not in ticks)? Only then does any run of a thread show in it. This thread's own CPU clock,
    read until it changes."""
    start = time.thread_time_ns()
    for _ in range(100000):
        now = time.thread_time_ns()
        if now != start:
            return 0 < now - start < 100000
    return False


def scheduler_counters():
    """(True, words) where the kernel keeps what a reused scan relies on (csrc/quiet.c): each
    thread's scheduler counters in /proc/self/task/TID/schedstat, counting the times it was put
    on a CPU, and CPU time in small steps; else (False, why)."""
    try:
        with open("/proc/self/task/%d/schedstat" % _thread.get_native_id()) as f:
            fields = f.read().split()
    except OSError as e:
        return False, "no scheduler counters (/proc/self/task/TID/schedstat: %s)" % (e.strerror or e)
    if len(fields) < 3 or not fields[2].isdigit() or int(fields[2]) == 0:
        return False, "the scheduler counters do not count a thread's runs (schedstat %r)" % " ".join(fields)
    if not clock_steps_fine():
        return False, "a thread's CPU time advances in ticks here, not in small steps"
    return True, "schedstat counters and a fine CPU clock"


def cpu_ns(native_id):
    """The CPU time (ns) of thread native_id of this process: its kernel CPU clock, read with
    clock_gettime, which keeps the GIL (MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)). None when
    it cannot be read."""
    try:
        return time.clock_gettime_ns(~native_id << 3 | 6)
    except (OSError, OverflowError, ValueError):
        return None


# The threading tables' threads as the last capture read them, {ident: (Thread, instance
# dict)}: pylocks.capture, in the same snapshot, reads their state locks from it.
last_table = {}


def _capture(me, frames):
    global _unmoved, last_table
    known = last_table = _thread_table()
    my_native_id = _thread.get_native_id()
    forking, others = None, []
    unmoved = {}
    for ident in set(frames) | set(known):
        t, fields = known.get(ident, (None, {}))
        native_id = fields.get("_native_id")
        if ident == me:
            native_id = my_native_id
        elif ident not in frames and native_id == my_native_id:
            # a "thread" that runs on the forking thread itself: a greenlet that gevent's
            # monkey-patching registered in threading's tables. It is not gone in the child
            # (the child has every greenlet), so it holds nothing a vanished thread could.
            continue
        name = fields.get("_name")
        if type(name) is not str:
            name = None
        daemon = fields.get("_daemonic")
        native_id = native_id if type(native_id) is int else None
        if ident != me and native_id is not None and ident in frames and cpu_clock_fine:
            seen = (native_id, cpu_ns(native_id), name, daemon)
            last = _unmoved.get(ident)
            if seen[1] is not None and last is not None and last[:2] == seen[:2] and last[4].analysis is not None:
                info = last[4]   # it has not run since the last capture, and held nothing
                if last[2:4] != seen[2:]:   # (another thread renamed it, say)
                    info = info.with_fields(name, daemon if type(daemon) is bool else None)
            else:
                info = ThreadInfo(ident, native_id, name, daemon if type(daemon) is bool else None,
                                  stack_of(frames.get(ident)))
            if seen[1] is not None:
                unmoved[ident] = seen + (info,)
            others.append(info)
            continue
        stack = stack_of(frames.get(ident), skip_own=ident == me)
        info = ThreadInfo(ident, native_id,
                          name or ("MainThread" if ident == me and t is None else name),
                          daemon if type(daemon) is bool else None, stack,
                          pthread_tid(ident) if native_id is None and ident in frames else None)
        if ident == me:
            forking = info
        else:
            others.append(info)
    _unmoved = unmoved
    others.sort(key=lambda i: (i.native_id is None, i.native_id or 0))
    return forking, others


# ---- a native id for a thread that runs Python without a threading.Thread ------------------------
# Threads started by _thread.start_new_thread, or by a C library and running Python, have a
# thread state (and so a stack) but no threading.Thread, so Python knows no native id for them.
# Their ident is glibc's pthread_t, the address of the thread's struct pthread, which keeps the
# kernel's id of the thread in its `tid` field (at 0x2d0 on x86_64 glibc 2.36). The field is
# read in the parent at the fork: in the child, glibc has already zeroed it (the stack is marked
# free for reuse). The child takes the value only if it is one of the vanished threads' ids.

PTHREAD_BYTES = 2048   # how far into struct pthread to look for `tid`
_tid_offset = None     # its offset, learnt by learn_tid_offset(); None: unknown


def learn_tid_offset():
    """Find struct pthread's `tid` in this thread's own struct (once, outside any fork:
    native.read is a fault-safe C call, which lets other threads run), checked on every
    thread whose id Python knows."""
    global _tid_offset
    read = native.read
    if _tid_offset is not None:
        return _tid_offset
    frames = sys._current_frames()
    try:
        me = _own_ident(frames)
        others = [(ident, _field(t, "_native_id")) for ident, t in python_threads().items()
                  if ident in frames and ident != me]
    finally:
        frames.clear()
    raw = read(me, PTHREAD_BYTES) if type(me) is int and me > 0 else None
    own = _thread.get_native_id().to_bytes(4, "little", signed=True)
    for offset in range(0, len(raw or b""), 4):
        if raw[offset:offset + 4] == own and all(
                read(ident + offset, 4) == tid.to_bytes(4, "little", signed=True)
                for ident, tid in others if type(tid) is int and type(ident) is int and ident > 0):
            _tid_offset = offset
            break
    return _tid_offset


def pthread_tid(ident):
    """The kernel id glibc keeps for the live thread `ident`, or None. (Only threads with a
    current frame are asked: they are inside Python, so their struct pthread is live.)"""
    if _tid_offset is None or type(ident) is not int or ident <= 0:
        return None
    tid = native.peek_i32(ident + _tid_offset)   # (a plain read: the GIL stays held)
    return tid if tid > 0 else None


def resolve_native_ids(others, vanished_tids):
    """In the child: give each thread Python knew no native id of the one glibc kept for it,
    where that is one of the vanished threads' ids (the C handler's list). Returns them."""
    left = set(vanished_tids) - {t.native_id for t in others}
    found = []
    for t in others:
        if t.native_id is None and t.pthread_tid in left:
            left.discard(t.pthread_tid)
            t.native_id = t.pthread_tid
            found.append(t)
    return found
