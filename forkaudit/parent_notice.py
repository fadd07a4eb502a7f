"""The parent's one line after a fork (policy 'warn'): only what the parent can prove.

The child's report is the verdict: it judges after every at-fork hook and after
multiprocessing's own resets, and it alone can tell a lock the child can reach from one
nothing in the child leads to (a span a vanished thread was ending, a lock a hook
replaced). The parent speaks before any of that has run, so it speaks only where the
child's verdict cannot differ: a lock another thread holds through a name that starts at
module state (a module global, a logging handler, or an attribute of one), and nothing
registered that could reset it in the child (no after-fork hook outside the standard
library; for a multiprocessing child, no after-fork entry of multiprocessing's for that
object). Everything else is left to the child's report. Cheap: a few dict scans, and only
when another thread holds a lock at the fork.
"""
import itertools
import os
import sys
import types

from . import known, locktypes, pylocks, reach, safeattr

_after_child = None   # CPython's list of after-in-child hooks (interp->after_forkers_child)
_checked = (0, False)  # (its length when judged, whether every hook in it is the stdlib's or ours)


def line(snap, multiprocessing_child):
    """'thread 'x' holds a Lock in f() at m.py:3 (with LOCK)' for the locks the parent can
    prove the child will find held and reachable, joined by '; ', or None."""
    if snap is None:
        return None
    parts = []
    state = []   # module state, read once for this fork (when a root needs it)
    for lock_id, c in snap.candidates.items():
        if not c.state.locked or pylocks.known_resetter(c.lock) is not None:
            continue
        owner, _ = pylocks.owner_of(c, snap, lock_id, set(), False)
        if owner is None or owner is snap.forking:
            continue
        held = c.held.get(owner.ident) or next(
            (h for t, h in snap.acquiring.get(lock_id, ()) if t is owner), None)  # granted at the fork
        if held is None or held.root is None or not _nothing_resets(held.root, c.lock, multiprocessing_child):
            continue
        if not _module_state_leads_to(held.root, state):
            continue
        parts.append("thread %r holds a %s%s" % (owner.name, locktypes.type_name(c.lock),
                                                pylocks.where_held(c, owner, snap, lock_id)))
    return "; ".join(parts) or None


BUDGET = 200000   # identity checks per fork at most (a few ms): past it, no proof, no line


def _module_state_leads_to(root, state):
    """The expression the lock was held through starts at module state: a module global, or
    an object that a module global, a logging handler or one of their attributes or items
    leads to (two steps at most, within BUDGET). state: [] or the module state read before."""
    scope, obj = root
    if scope == "global":
        return True
    if not state:
        state.extend(_module_state())
    firsts = state
    if any(v is obj for v in firsts):
        return True
    budget = BUDGET - len(firsts)
    for value in firsts:
        if budget <= 0:
            return False
        step = _one_step(value, budget)
        if any(v is obj for v in step):
            return True
        budget -= len(step) + 1
    return False


def _module_state():
    """Module globals (not modules, classes or functions) and every logger's handlers."""
    values = [v for module in list(sys.modules.values()) if safeattr.is_a(module, types.ModuleType)
              for v in list(safeattr.module_dict(module).values())
              if not safeattr.is_a(v, (types.ModuleType, type, types.FunctionType))]
    return values + _handlers()


def _one_step(value, at_most):
    """At most `at_most` of what value leads to in one step: items, or instance attributes.
    (One C call each: another thread changing the container cannot break it half-way.)"""
    t = type(value)
    if t is list or t is tuple:
        return value[:at_most]
    d = value if t is dict else safeattr.instance_dict(value)
    return list(itertools.islice(dict.values(d), at_most)) if d else []


def _handlers():
    """Every logging handler of every logger."""
    out = []
    for logger in reach.loggers():
        handlers = safeattr.get(logger, "handlers")
        if type(handlers) is list:
            out.extend(handlers)
    return out


def _nothing_resets(root, lock, multiprocessing_child):
    if not _only_known_hooks():
        return False
    if multiprocessing_child:
        obj = root[1]
        for entry in _multiprocessing_after_fork_objects():
            if entry is obj or entry is lock or any(
                    v is lock or v is obj for v in (safeattr.instance_dict(entry) or {}).values()):
                return False
    return True


def _only_known_hooks():
    """True when every os.register_at_fork(after_in_child=...) hook is the standard library's
    or forkaudit's (none of them resets a program's lock); False if one may, or if the
    hook list can't be found."""
    global _after_child, _checked
    if _after_child is None:
        # found once per process, the first time it is needed (a gc pass: ~40 ms for 3M
        # tracked objects); the list object stays the same for the process's life
        import gc
        from . import hooks
        lists = [r for r in gc.get_referrers(hooks._after_in_child_first) if type(r) is list]
        if len(lists) != 1:
            return False
        _after_child = lists[0]
    hooks_now = list(_after_child)
    if _checked[0] != len(hooks_now):
        _checked = (len(hooks_now), all(_known_hook(h) for h in hooks_now))
    return _checked[1]


_OURS = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _known_hook(hook):
    if type(hook) is types.MethodType:
        hook = hook.__func__
    if type(hook) is not types.FunctionType:
        return False
    filename = hook.__code__.co_filename
    return known.stdlib_file(filename) or filename.startswith(_OURS)


def _multiprocessing_after_fork_objects():
    util = sys.modules.get("multiprocessing.util")
    registry = safeattr.get(util, "_afterfork_registry") if util is not None else None
    refs = safeattr.get(registry, "data") if registry is not None else None
    if type(refs) is not dict:
        return []
    return [obj for obj in (ref() for ref in list(refs.values())) if obj is not None]
