"""Reading Python objects without running their code.

Inside the fork hooks and the child's audit, forkaudit must never run user code:
a user method that takes a lock held at the fork would hang the child inside
forkaudit, where without forkaudit it runs fine. The everyday ways of looking
at an object run code: isinstance() asks obj.__class__ when the real type does
not match (a __getattribute__ or a __class__ property runs), getattr() runs
properties and __getattr__, obj.__dict__ and type(obj).__mro__ go through
__getattribute__ (the object's, or a metaclass's).

Every read here goes through C slots and descriptors of the builtin `type` and
`object`, and only returns values found in dicts, slots or C member fields.
"""
import types

MISSING = object()
GETSET = types.GetSetDescriptorType
MEMBER = types.MemberDescriptorType
_TYPE_DICT = type.__dict__["__dict__"]   # a class's own namespace, without its metaclass' hooks
_TYPE_MRO = type.__dict__["__mro__"]
_MODULE_DICT = types.ModuleType.__dict__["__dict__"]


def is_a(obj, cls):
    """isinstance(obj, cls) judged on obj's real type only (cls: forkaudit's own classes or
    a tuple of them, whose metaclass is `type`): issubclass() of two types walks tp_mro in C."""
    return issubclass(type(obj), cls)


def mro(t):
    return _TYPE_MRO.__get__(t)


def class_dict(klass):
    return _TYPE_DICT.__get__(klass)


def module_dict(module):
    return _MODULE_DICT.__get__(module)


_DESCRIPTORS = {}   # id(type) -> (type, its instances' __dict__ getter or None)


def _dict_descriptor(t):
    """The getter of t's instances' __dict__, or None. Remembered per type (held here, so its
    id stays its own): the fork hooks ask it for the same few types every fork. A class's
    '__dict__' entry cannot be assigned; only assigning __bases__ could change the answer, and
    a stale getter then fails on the object and reads as None (instance_dict catches it)."""
    known = _DESCRIPTORS.get(id(t))
    if known is not None and known[0] is t:
        return known[1]
    found = None
    for klass in mro(t):
        entry = class_dict(klass).get("__dict__")
        if entry is not None:
            found = entry if type(entry) is GETSET else None
            break
    if len(_DESCRIPTORS) >= 4096:
        _DESCRIPTORS.clear()
    _DESCRIPTORS[id(t)] = (t, found)
    return found


def instance_dict(obj):
    """The object's own __dict__ (a real dict), or None; modules' namespaces too."""
    if is_a(obj, types.ModuleType):
        return module_dict(obj)
    entry = _dict_descriptor(type(obj))
    if entry is None:
        return None
    try:
        d = entry.__get__(obj, type(obj))
    except Exception:  # noqa: BLE001 - a C getter refusing is no reason to fail
        return None
    return d if type(d) is dict else None


def attr(obj, name):
    """obj.name without running user code: instance dict (or module namespace), slots and C
    member fields, plain class attributes; MISSING where only running code (a property,
    __getattr__) could tell."""
    if is_a(obj, type):  # a class: its own namespaces, along its own MRO
        for klass in mro(obj):
            entry = class_dict(klass).get(name, MISSING)
            if entry is not MISSING:
                return MISSING if _has(type(entry), "__get__") else entry
        return MISSING
    d = instance_dict(obj)
    if d is not None and name in d:
        return d[name]
    for klass in mro(type(obj)):
        entry = class_dict(klass).get(name, MISSING)
        if entry is MISSING:
            continue
        if type(entry) is MEMBER:
            try:
                return entry.__get__(obj, type(obj))
            except AttributeError:
                return MISSING
        if _has(type(entry), "__get__"):
            return MISSING  # a property or method: evaluating it could run code
        return entry
    return MISSING


def _has(t, name):
    return any(name in class_dict(klass) for klass in mro(t))


def get(obj, name, default=None):
    value = attr(obj, name)
    return default if value is MISSING else value


_QUALNAME = type.__dict__["__qualname__"]


_MODULE = type.__dict__["__module__"]


def type_name(t):
    """'module.QualName' of a type, through `type`'s own getters (no metaclass hook runs):
    a class's __module__ entry, or for a static C type the prefix of its tp_name."""
    try:
        module = _MODULE.__get__(t)
    except AttributeError:
        module = None
    return "%s.%s" % (module if type(module) is str else "?", _QUALNAME.__get__(t))


def file_name(stream):
    """The name of the file behind a stream (TextIOWrapper -> buffer -> raw -> name), read
    through C member fields and instance dicts only; None when it is not that plain."""
    for step in ("buffer", "raw"):
        inner = attr(stream, step)
        if inner is not MISSING and inner is not None:
            stream = inner
    name = attr(stream, "name")
    return name if type(name) in (str, int) else None
