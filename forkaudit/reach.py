"""How the child can reach each held lock: the hazard's "reach", and the order of a report.

Levels, most likely to hang the child first (LEVELS):

  "logging"    the lock's path starts at a logger: the child blocks when it logs through it
  "global"     a module global's path (the program's own state, a library's module state),
               or a standard stream's buffer (the child's print())
  "c-library"  a C lock in a named library's data/bss: the child blocks when it calls
               into that library
  "c-heap"     a C lock in heap or anonymous memory (a library's object: a connection, a pool)
  null         a Python lock no path leads to from a logger or a module (a local of a
               running function, an object only a C extension holds): unknown
  "internal"   only reachable through thread or thread-pool bookkeeping (threading's
               tables, a Thread object, a thread pool's private state), a library's private
               state that only the library's own (vanished) thread was working on, or the
               internal lock of a buffered file (python_internal) no logger writes to: the
               child blocks only if it uses that object itself

Facts only (a short value per hazard); render.py says what each means. The path is
resolved in the child, after every at-fork handler, without running user code.
"""
import ast
import re
import threading
import types

from . import heldby, known, stackcode
from .maps import Maps

LEVELS = ("logging", "global", "c-library", "c-heap", None, "internal")
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
        if isinstance(module, types.ModuleType):
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


def python_reach(hazard):
    obj = hazard.get("object") or {}
    path = obj.get("path")
    if not path:
        return None
    if path.startswith("logging.getLogger("):
        return "logging"
    if path.startswith(known.INTERNAL_ROOTS):
        return "internal"
    if hazard.get("kind") == "python_internal":
        if any(path == s or path.startswith((s + ".", s + "[")) for s in known.STD_STREAMS):
            return "global"
        return "internal"
    me = threading.current_thread()
    library_owner = _library_thread(hazard.get("held_at"))
    for step, before, after in _objects(path):
        if isinstance(after, threading.Thread) and after is not me:
            return "internal"  # through a thread object (of a thread that is gone)
        if (library_owner and step.startswith("._") and not step.startswith(".__")
                and not isinstance(before, (types.ModuleType, type)) and known.library_type(before)):
            # a library object's private state, and the owner was the library's own thread
            return "internal"
    return "global"


def c_reach(hazard):
    library = hazard.get("library")
    return "c-library" if library and library.startswith("/") else "c-heap"


def classify(hazard):
    if hazard.get("kind") in C_KINDS:
        return c_reach(hazard)
    return python_reach(hazard)


def annotate(hazards, threads):
    """Give each hazard its "reach", "owner_code" (C locks: the shared objects whose code is on
    the owner's stack) and "known" (a known library's key), and sort by reach (stable)."""
    idents = {t.get("native_id"): t.get("ident") for t in threads or () if t.get("native_id")}
    maps = None
    code_of = {}
    for h in hazards:
        h["reach"] = classify(h)
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
