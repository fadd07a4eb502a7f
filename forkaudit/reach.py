"""How the child can reach each held lock: the hazard's "reach", and the order of a report.

Levels, most likely to hang the child first (LEVELS):

  "logging"    the lock's path starts at a logger: the child blocks when it logs through it
  "global"     a module global's path (the program's own state, a library's module state),
               or a standard stream's buffer (the child's print())
  "import"     a module's import lock (importlocks): the child blocks when it imports that
               module, or anything that imports it
  "exit"       the internal lock of a logging handler's stream (python_internal), of a
               handler no logger leads to: logging.shutdown(), which Python runs at a normal
               exit, flushes every handler, so the child blocks when it exits that way (not
               when the code that forked it ends it with os._exit(), as multiprocessing's and
               billiard's launchers do: theirs stay "internal")
  "c-library"  a C lock in a named library's data/bss: the child blocks when it calls
               into that library
  "c-heap"     a C lock in heap or anonymous memory (a library's object: a connection, a pool)
  "local"      no module global leads to it, but a local variable of the code the child
               runs (the forking thread's frames, alive in the child) does
  null         not classified (a record of another kind of lock)
  "internal"   only reachable through thread or thread-pool bookkeeping (threading's
               tables, a Thread object, a thread pool's private state), a library's private
               state that only the library's own (vanished) thread was working on, or the
               internal lock of a buffered file (python_internal) no logger writes to: the
               child blocks only if it uses that object itself
  "unreachable" nothing the child can run leads to it: no logger, no module global (within
               the walk's bounds), no local of the child's frames; only the vanished thread's
               own frames held it (a span, a request object of that thread)

A lock that a logger leads to is "logging" even when its shortest path starts at a module.

Facts only (a short value per hazard); render.py says what each means. The path is
resolved in the child, after every at-fork handler, without running user code.
"""
import ast
import collections
import re
import sys
import threading
import types
import weakref

from . import heldby, importlocks, known, naming, safeattr, stackcode
from .maps import Maps

LEVELS = ("logging", "global", "import", "exit", "local", "c-library", "c-heap", None, "internal",
          "unreachable")
MAX_NODES = 20000
MAX_DEPTH = 6
C_KINDS = ("pthread_mutex", "pthread_rwlock", "semaphore")
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[([^\]]*)\]")
_MISSING = heldby._MISSING


def _root(path):
    """(module object, rest of the path) for the longest module-name prefix, or (None, path)."""
    import sys
    head = re.match(r"[A-Za-z_][A-Za-z0-9_.]*", path)
    if head is None:
        return None, path
    names = head.group(0).split(".")
    for n in range(len(names), 0, -1):
        name = ".".join(names[:n])
        module = sys.modules.get(name)
        if safeattr.is_a(module, types.ModuleType):
            return module, path[len(name):]
    return None, path


def _key(text):
    if text.startswith("<"):
        return _MISSING  # a hashed key: not resolvable
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return _MISSING


def _objects(path):
    """[(step, object before the step, object after)] along a path; stops where it cannot go."""
    obj, rest = _root(path)
    out = []
    if obj is None:
        return out
    pos = 0
    while pos < len(rest):
        m = _STEP.match(rest, pos)
        if m is None:
            break
        pos = m.end()
        if m.group(1) is not None:
            nxt = heldby._attr(obj, m.group(1))
            step = "." + m.group(1)
        else:
            key = _key(m.group(2))
            nxt = _MISSING
            if key is not _MISSING:
                try:
                    if type(obj) is dict:
                        nxt = dict.get(obj, key, _MISSING)
                    elif type(obj) in (list, tuple) and type(key) is int:
                        nxt = obj[key]
                except (TypeError, IndexError):
                    nxt = _MISSING
            step = "[" + m.group(2) + "]"
        out.append((step, obj, nxt))
        if nxt is _MISSING:
            break
        obj = nxt
    return out


def _library_thread(stack):
    """The owner ran only library code (the standard library's or an installed package's)."""
    return bool(stack) and all(known.library_file(f.get("file")) for f in stack)


def _ids_from(roots):
    """ids of the objects a bounded breadth-first walk from `roots` meets (naming's steps:
    no user code runs)."""
    seen = set()
    queue = collections.deque((obj, 0) for obj in roots)
    visited = 0
    while queue and visited < MAX_NODES:
        obj, depth = queue.popleft()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        visited += 1
        if depth >= MAX_DEPTH or safeattr.is_a(obj, naming.PRIMITIVES):
            continue
        try:
            children = list(naming._children(obj))
        except Exception:  # noqa: BLE001 - an odd object: leave it
            continue
        for _step, child in children:
            if not safeattr.is_a(child, naming._LEAVES) and id(child) not in seen:
                queue.append((child, depth + 1))
    return seen


def loggers():
    """The root logger and every Logger of logging's manager (read without running code)."""
    logging = sys.modules.get("logging")
    if logging is None:
        return []
    out = [logging.root]
    manager = safeattr.get(logging.Logger, "manager")
    loggers = safeattr.get(manager, "loggerDict", {}) if manager is not None else {}
    if type(loggers) is dict:
        out.extend(lg for lg in list(dict.values(loggers)) if safeattr.is_a(lg, logging.Logger))
    return out


def handler_streams():
    """The streams (and their buffers) of every logging handler logging.shutdown() flushes at
    exit: logging._handlerList's, read without running code (each entry is called only when it
    is exactly a weakref.ref)."""
    logging = sys.modules.get("logging")
    if not safeattr.is_a(logging, types.ModuleType):
        return []
    handlers = safeattr.module_dict(logging).get("_handlerList")
    out = []
    for ref in list(handlers) if type(handlers) is list else ():
        handler = ref() if type(ref) is weakref.ref else None
        stream = safeattr.get(handler, "stream") if handler is not None else None
        while stream is not None and len(out) < 1000:
            out.append(stream)
            inner = safeattr.get(stream, "buffer")
            stream = inner if inner is not stream else None
    return out


def _own_frames_locals():
    """The local variables of the child's own frames (the forking thread's, alive in the
    child), forkaudit's own frames left out."""
    out = []
    frame = sys._getframe(1)
    while frame is not None:
        if not frame.f_globals.get("__name__", "").startswith("forkaudit"):
            try:
                out.extend(v for v in dict(frame.f_locals).values() if not safeattr.is_a(v, naming._LEAVES))
            except Exception:  # noqa: BLE001
                pass
        frame = frame.f_back
    return out


class _Reachable:
    """What the child's loggers and own frames lead to (computed once, when needed)."""

    def __init__(self, exits=False):
        self._logging = self._local = None
        self._exits = exits    # the child ends through Python's exit (atexit handlers run)
        self._at_exit = None

    def at_exit(self):
        """ids of the handler streams logging.shutdown() flushes at the child's exit."""
        if self._at_exit is None:
            self._at_exit = {id(s) for s in handler_streams()} if self._exits else set()
        return self._at_exit

    def logging(self):
        if self._logging is None:
            self._logging = _ids_from(loggers())
        return self._logging

    def local(self):
        if self._local is None:
            self._local = _ids_from(_own_frames_locals())
        return self._local


def _address(hazard):
    try:
        return int(hazard.get("address") or "", 16)
    except ValueError:
        return None


def python_reach(hazard, reachable=None):
    reachable = reachable or _Reachable()
    obj = hazard.get("object") or {}
    path = obj.get("path")
    address = _address(hazard)
    if path and path.startswith("logging.getLogger("):
        return "logging"
    if address is not None and address in reachable.logging():
        return "logging"  # a logger leads to it, though a module's path to it is shorter
    if not path:
        if address is not None and address in reachable.local():
            return "local"
        return "unreachable"
    if path.startswith(known.INTERNAL_ROOTS):
        return "internal"
    if hazard.get("kind") == "python_internal":
        if obj.get("type") == importlocks.TYPE_NAME:
            return "import"
        if any(path == s or path.startswith((s + ".", s + "[")) for s in known.STD_STREAMS):
            return "global"
        if address is not None and address in reachable.at_exit():
            return "exit"
        return "internal"
    me = dict.get(threading._active, threading.get_ident())
    library_owner = _library_thread(hazard.get("held_at"))
    for step, before, after in _objects(path):
        if safeattr.is_a(after, threading.Thread) and after is not me:
            return "internal"  # through a thread object (of a thread that is gone)
        if (library_owner and step.startswith("._") and not step.startswith(".__")
                and not safeattr.is_a(before, (types.ModuleType, type)) and known.library_type(before)):
            # a library object's private state, and the owner was the library's own thread
            return "internal"
    return "global"


def c_reach(hazard):
    library = hazard.get("library")
    return "c-library" if library and library.startswith("/") else "c-heap"


def classify(hazard, reachable=None):
    if hazard.get("kind") in C_KINDS:
        return c_reach(hazard)
    return python_reach(hazard, reachable)


def annotate(hazards, threads, exits=False):
    """Give each hazard its "reach", "owner_code" (C locks: the shared objects whose code is on
    the owner's stack) and "known" (a known library's key), and sort by reach (stable).

    exits: the child ends through Python's exit, which runs atexit handlers (a fork of the
    program's own; a multiprocessing child ends with os._exit)."""
    idents = {t.get("native_id"): t.get("ident") for t in threads or () if t.get("native_id")}
    maps = None
    code_of = {}
    reachable = _Reachable(exits)
    for h in hazards:
        h["reach"] = classify(h, reachable)
        h["owner_code"] = None
        if h.get("kind") in C_KINDS:
            tid = (h.get("owner") or {}).get("native_id")
            ident = idents.get(tid)
            if ident:
                if ident not in code_of:
                    maps = maps or Maps.read()
                    try:
                        code_of[ident] = stackcode.libraries(ident, maps)
                    except Exception:  # noqa: BLE001 - a fact we could not read, never an error
                        code_of[ident] = None
                h["owner_code"] = code_of[ident]
        h["known"] = known.recognise(h)
    hazards.sort(key=lambda h: LEVELS.index(h.get("reach")))
    return hazards
