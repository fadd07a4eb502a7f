"""Where a Python lock lives: the shortest path a user could type to reach it.

A bounded breadth-first walk from the loggers (``logging.getLogger()``,
``logging.getLogger('app')``) and from every module's globals
(``__main__.REGISTRY_LOCK``, ``myapp.db.SERVICES['db'][1].io_lock``), through
instance and class dicts, slots, dicts, lists, tuples and deques. It runs no
user code: attributes are read from dicts and slot descriptors only; weak
references, functions and frames are not followed. Nor is forkaudit's own state
met on the way (its callbacks in another library's registry, the snapshot they
keep): it leads to every held lock, but nothing the program runs goes through it.

The same walk reports every lock it meets (for locks no thread's stack
accounted for), and the Condition waiter locks it sees (never hazards).
"""
import collections
import sys
import threading
import types

from . import cpython_layout, safeattr
from .safeattr import is_a
from .locktypes import PRIMITIVES
from .threads import PACKAGE_DIR

MAX_NODES = 60000
WALKS = 0  # walks made in this process (tests: a clean fork's child walks nothing)
MAX_DEPTH = 7
MAX_ITEMS = 2000
GETSET = types.GetSetDescriptorType
MEMBER = types.MemberDescriptorType

_LEAVES = (str, bytes, bytearray, int, float, complex, bool, type(None),
           types.BuiltinFunctionType, types.MethodType, types.ModuleType, types.CodeType,
           types.FrameType, types.GeneratorType, types.CoroutineType, property, staticmethod,
           classmethod, memoryview, range, slice, type(Ellipsis), type(NotImplemented),
           types.BuiltinMethodType, types.WrapperDescriptorType, types.MethodWrapperType,
           types.MethodDescriptorType, types.ClassMethodDescriptorType, GETSET, MEMBER)
_SKIP_MODULES = ("forkaudit",)
_layout = {}  # type -> (dict descriptor or None, [(slot name, descriptor)])
_TYPE_DICT = type.__dict__["__dict__"]  # a class's own namespace, without its metaclass' hooks


def _type_layout(t):
    if t not in _layout:
        dict_desc, slots = None, []
        owner = _TYPE_DICT.__get__(t).get("__module__")
        if type(owner) is str and (owner in _SKIP_MODULES or owner.startswith(tuple(m + "." for m in _SKIP_MODULES))):
            _layout[t] = (None, [])   # forkaudit's own objects: nothing of theirs is followed
            return _layout[t]
        mro = safeattr.mro(t)
        for klass in mro:
            entry = _TYPE_DICT.__get__(klass).get("__dict__")
            if entry is not None:
                dict_desc = entry if type(entry) is GETSET else None
                break
        seen_names = set()
        for klass in mro:
            # member descriptors: __slots__ of Python classes, and the object fields that C
            # types expose (TextIOWrapper.buffer, ...); reading them runs no user code
            for name, desc in list(_TYPE_DICT.__get__(klass).items()):
                if type(desc) is MEMBER and isinstance(name, str) and not name.startswith("__") \
                        and name not in seen_names:
                    seen_names.add(name)
                    slots.append((name, desc))
        _layout[t] = (dict_desc, slots)
    return _layout[t]


# Dict keys on a path (privacy): short identifier-like strings, ints, bools and None are shown;
# any other key (a URL with a password, a token, a file path) is shown by type and a short hash,
# [<str #1a2b3c>], unless the user asked for keys whole (FORKAUDIT_SHOW_KEYS=1, run --show-keys).
# Exact type checks only: the walk runs in the child and must never call a key's own methods.
SHOW_KEYS = False
KEY_CHARS = 32
_KEY_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_KEY_REST = _KEY_FIRST | frozenset("0123456789.-")
_TYPE_NAME = type.__dict__["__name__"]  # a type's own name, without its metaclass' hooks
try:  # the interpreter's own SHA-256 (HACL*): no OpenSSL, whose locks may be held in the child
    from _sha2 import sha256 as _sha256
except ImportError:
    try:
        from _sha256 import sha256 as _sha256
    except ImportError:  # pragma: no cover - a build without them
        from hashlib import sha256 as _sha256


def _digest(data):
    return _sha256(data).hexdigest()[:6]


def _identifier_like(key):
    return 0 < len(key) <= KEY_CHARS and key[0] in _KEY_FIRST and all(c in _KEY_REST for c in key)


def key_text(key, show=None):
    """The step of a path through a dict key: ['db'], [3], [None], or [<str #1a2b3c>]."""
    show = SHOW_KEYS if show is None else show
    t = type(key)
    if t is str:
        if show or _identifier_like(key):
            return "[%r]" % (key,)
        return "[<str #%s>]" % _digest(key.encode("utf-8", "surrogatepass"))
    if t is bool or key is None:
        return "[%r]" % (key,)
    if t is int:
        if -10 ** 18 < key < 10 ** 18:
            return "[%d]" % key
        data = key.to_bytes((key.bit_length() + 8) // 8, "little", signed=True)
        return "[<int #%s>]" % _digest(data)
    if t is float or t is bytes:
        if show:
            return "[%r]" % (key,)
        return "[<%s #%s>]" % (t.__name__, _digest(repr(key).encode()))
    return "[<%s>]" % _TYPE_NAME.__get__(t)


def _children(obj):
    """(step text, child) pairs of an object, without running user code.

    Containers are read through their base type's methods, so a subclass that overrides
    items() or __iter__ is never called; attributes come from instance dicts and slots."""
    if is_a(obj, types.ModuleType):
        for name, value in list(dict.items(safeattr.module_dict(obj)))[:MAX_ITEMS * 4]:
            if type(name) is str and not name.startswith("__") and not is_a(value, types.ModuleType):
                yield "." + name, value
        return
    if is_a(obj, types.FunctionType):
        if obj.__code__.co_filename.startswith(PACKAGE_DIR):
            return   # forkaudit's own (a callback it registered): its cells hold its snapshot
        # closure cells and defaults: state a function keeps (functools-style factories)
        for i, cell in enumerate(obj.__closure__ or ()):
            try:
                yield ".__closure__[%d].cell_contents" % i, cell.cell_contents
            except ValueError:  # an empty cell
                continue
        for i, value in enumerate(obj.__defaults__ or ()):
            yield ".__defaults__[%d]" % i, value
        return
    if is_a(obj, type):
        for name, value in list(_TYPE_DICT.__get__(obj).items())[:MAX_ITEMS]:
            if type(name) is str and not name.startswith("__"):
                yield "." + name, value
        return
    if is_a(obj, dict):
        for key, value in list(dict.items(obj))[:MAX_ITEMS]:
            step = key_text(key)
            if step is not None:
                yield step, value
        return
    for base in (list, tuple, collections.deque):
        if is_a(obj, base):
            for i, value in enumerate(list(base.__iter__(obj))[:MAX_ITEMS]):
                yield "[%d]" % i, value
            return
    t = type(obj)
    dict_desc, slots = _type_layout(t)
    if dict_desc is not None:
        try:
            d = dict_desc.__get__(obj, t)
        except Exception:  # noqa: BLE001
            d = None
        if is_a(d, dict):
            for name, value in list(dict.items(d))[:MAX_ITEMS]:
                if type(name) is str:
                    yield "." + name, value
    for name, desc in slots:
        try:
            yield "." + name, desc.__get__(obj, t)
        except AttributeError:
            continue


def roots():
    """(path, object) pairs to start from: loggers first, then modules (__main__ first)."""
    logging = sys.modules.get("logging")
    if logging is not None:
        yield "logging.getLogger()", logging.root
        manager = safeattr.get(logging.Logger, "manager")
        for name, logger in list(dict.items(safeattr.get(manager, "loggerDict", None) or {})):
            if is_a(logger, logging.Logger):
                yield "logging.getLogger(%r)" % name, logger
    yield from module_roots()


def module_roots():
    """(name, module) of the loaded modules, __main__ first, then the shallowest names (the
    shortest paths), forkaudit's own left out."""
    modules = list(sys.modules.items())
    modules.sort(key=lambda item: (item[0] != "__main__", item[0].count("."), item[0]))
    for name, module in modules:
        if is_a(module, types.ModuleType) and not name.startswith(_SKIP_MODULES):
            yield name, module


class Walk:
    """Result of one walk: paths of locks, their containers, and waiter locks seen."""

    def __init__(self):
        self.paths = {}       # id(lock) -> path
        self.locks = {}       # id(lock) -> lock
        self.parents = {}     # id(lock) -> the object holding it
        self.private = set()  # ids of Condition waiter locks
        self.internal = {}    # id -> (object, path): CPython objects with a lock inside (buffered IO)
        self.visited = 0
        self.complete = True


def walk(extra_roots=(), max_nodes=MAX_NODES):
    """Breadth-first from the roots (and extra (path, object) roots), within max_nodes objects."""
    global WALKS
    WALKS += 1
    result = Walk()
    seen = set()
    queue = collections.deque()
    for path, obj in list(roots()) + list(extra_roots):
        if id(obj) not in seen:
            seen.add(id(obj))
            queue.append((path, obj, 0, None))
    condition, semaphore = threading.Condition, threading.Semaphore
    while queue:
        path, obj, depth, parent = queue.popleft()
        if is_a(obj, PRIMITIVES):
            if id(obj) not in result.paths:
                result.paths[id(obj)] = path
                result.locks[id(obj)] = obj
                result.parents[id(obj)] = parent
            continue
        if is_a(obj, semaphore):
            # named, but not a discovery candidate: a Semaphore at 0 is often just a signal
            result.paths.setdefault(id(obj), path)
            result.parents.setdefault(id(obj), parent)
            continue
        if is_a(obj, cpython_layout.BUFFERED_TYPES) and id(obj) not in result.internal:
            result.internal[id(obj)] = (obj, path)
        result.visited += 1
        if result.visited > max_nodes:
            result.complete = False
            break
        if depth >= MAX_DEPTH:
            continue
        if is_a(obj, condition):
            result.private.update(map(id, tuple(safeattr.get(obj, "_waiters", ()))))  # one C copy
        try:
            children = list(_children(obj))
        except Exception:  # noqa: BLE001 - an odd object: leave it
            continue
        for step, child in children:
            if is_a(child, _LEAVES) or id(child) in seen:
                continue
            seen.add(id(child))
            queue.append((path + step, child, depth + 1, obj))
    return result


def describe_container(lock, parent, path):
    """A few words on what holds the lock: a logging handler, a queue, a Condition."""
    logging = sys.modules.get("logging")
    if logging is not None and is_a(parent, logging.Handler):
        return describe_handler(parent, path)
    queue_mod = sys.modules.get("queue")
    if queue_mod is not None and is_a(parent, queue_mod.Queue):
        return "the mutex of a %s" % safeattr.type_name(type(parent))
    if is_a(parent, threading.Condition):
        return "the lock of a Condition"
    return None


def describe_handler(handler, path):
    words = ["the lock of %s" % safeattr.type_name(type(handler))]
    d = safeattr.instance_dict(handler) or {}
    if type(d.get("baseFilename")) is str and d.get("baseFilename"):
        words.append("writing to %s" % d["baseFilename"])
    elif d.get("stream") is not None:
        name = safeattr.file_name(d["stream"])
        words.append("writing to %s" % (name if name is not None else _TYPE_NAME.__get__(type(d["stream"]))))
    elif d.get("queue") is not None:
        words.append("feeding a %s" % safeattr.type_name(type(d["queue"])))
    if path and path.startswith("logging.getLogger("):
        logger = path.split(")", 1)[0] + ")"
        words.append("on %s" % ("the root logger" if logger == "logging.getLogger()" else logger))
    return " ".join(words)
