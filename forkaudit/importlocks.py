"""Module import locks a vanished thread held at the fork.

importlib keeps one lock per module being imported (importlib._bootstrap._ModuleLock,
in _module_locks: name -> weak reference). It is a lock written in Python: its owner
(a thread ident) and count say who is importing the module; nothing resets it in the
child. A thread that was importing module M when another thread forked leaves M's lock
owned by a thread the child does not have, and M half-initialised in sys.modules: the
child's first import of M (or of anything that imports M) waits for that import to
finish, forever.

Read without running any code: the table is read with one dict call, each weak
reference is called only when it is exactly a weakref.ref, and the lock's fields come
from its instance dict.
"""
import sys
import types
import weakref

from . import safeattr

TYPE_NAME = "_frozen_importlib._ModuleLock"   # (the module importlib._bootstrap runs as)


_namespace = None   # importlib._bootstrap's namespace, once found (it lives as long as Python)


def _bootstrap():
    global _namespace
    if _namespace is not None:
        return _namespace   # (every child asks: found once, in the parent, at its first fork)
    for name in ("_frozen_importlib", "importlib._bootstrap"):
        module = dict.get(sys.modules, name)
        if safeattr.is_a(module, types.ModuleType):
            _namespace = safeattr.module_dict(module)
            return _namespace
    return None


class Held:
    """Module `name`'s import lock, owned at the fork by thread ident `owner`."""

    __slots__ = ("name", "lock", "owner", "wakeup")

    def __init__(self, name, lock, owner, wakeup):
        self.name, self.lock, self.owner, self.wakeup = name, lock, owner, wakeup


def held():
    """[Held] for every module import lock some thread owns now."""
    bootstrap = _bootstrap()
    if bootstrap is None:
        return []
    table = bootstrap.get("_module_locks")
    lock_type = bootstrap.get("_ModuleLock")
    if type(table) is not dict or not table or type(lock_type) is not type:
        return []
    out = []
    for name, ref in list(dict.items(table)):
        if type(name) is not str or type(ref) is not weakref.ref:
            continue
        lock = ref()
        if type(lock) is not lock_type:
            continue
        fields = safeattr.instance_dict(lock) or {}
        owner, count = fields.get("owner"), fields.get("count")
        # 3.9-3.11 count the owner's acquisitions in an int, 3.12+ in a list
        depth = count if type(count) is int else len(count) if type(count) is list else 0
        if type(owner) is int and depth > 0:
            out.append(Held(name, lock, owner, fields.get("wakeup")))
    return out


# id(module lock) -> its wakeup lock, for the locks the last audit reported: the primitive
# lock a thread that imports the module blocks on (the watchdog watches its futex word)
wakeups = {}


def module_frame(name, stack):
    """The innermost frame of module `name`'s own code (its file's <module> frame) on a
    stack (innermost last), or None (an extension module, or its code not running yet)."""
    module = dict.get(sys.modules, name)
    if not safeattr.is_a(module, types.ModuleType):
        return None
    filename = safeattr.module_dict(module).get("__file__")
    if type(filename) is not str:
        return None
    for f in reversed(stack or ()):
        if f.get("function") == "<module>" and f.get("file") == filename:
            return f
    return None


def path(name):
    """An expression that reaches module `name`'s import lock."""
    return "importlib._bootstrap._module_locks[%r]()" % name
