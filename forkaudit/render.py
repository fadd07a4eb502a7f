"""The human report: what a kernel lockdep splat or a JVM deadlock report would say.

Most important first: each held lock and where it lives, its owner and the
owner's stack (innermost last), then where the fork was called from, then
what was reset harmlessly, then the fix lines chosen for the case (a known library's remedy, where
the fork came from, the lock's real path).
"""

import re

from . import known

WIDTH = 78


def _frames(stack, indent="        ", limit=12):
    lines = []
    shown = stack[-limit:] if stack else []
    if stack and len(stack) > limit:
        lines.append("%s... %d outer frames not shown" % (indent, len(stack) - limit))
    for f in shown:
        where = f.get("file") or "?"
        line = f.get("line")
        lines.append('%sFile "%s"%s, in %s' % (indent, where, ", line %d" % line if line else "",
                                               f.get("function") or "?"))
    return lines


def where_text(h):
    obj = h.get("object") or {}
    parts = []
    if obj.get("path"):
        parts.append(obj["path"])
    if h.get("symbol"):
        parts.append(h["symbol"])
    place = []
    if obj.get("type"):
        place.append(obj["type"])
    if h.get("address"):
        place.append("at " + h["address"])
    if h.get("library") and not obj.get("path"):
        place.append("in " + h["library"])
    entry = known.LIBRARIES.get(h.get("known") or "")
    head = " ".join(parts) or ("(a lock of %s)" % entry["name"] if entry else "(unnamed lock)")
    return "%s  (%s)" % (head, " ".join(place)) if place else head


def owner_text(h):
    o = h.get("owner") or {}
    if not o or (o.get("name") is None and o.get("native_id") is None):
        return "owner unknown"
    return "thread %r (native id %s)" % (o.get("name"), o.get("native_id"))


REACH_TEXT = {
    "logging": "likely: its path starts at a logger, so the child blocks when it logs there",
    "global": "likely: a module global leads to it, so the child blocks when its code uses it",
    "import": ("likely if the child imports that module, or anything that imports it: the import waits "
               "for the vanished thread's import to finish"),
    "c-library": "likely if the child calls into %s (the lock lives in that library's data)",
    "c-heap": ("possible: a C library's object in %s memory; the child blocks when it calls into "
               "the library that locked it"),
    "exit": ("likely when the child exits normally (returning or sys.exit): logging.shutdown() "
             "flushes every logging handler's stream then, this one's too (a child that ends with "
             "os._exit() does not)"),
    "local": ("likely: a local variable of the code the child runs (the forking thread's frames) leads "
              "to it"),
    "unreachable": ("unreachable: nothing the child can run leads to it (no logger, module global or "
                    "local of its own frames); only the vanished thread's own frames held it"),
    "internal": ("unlikely: only thread or thread-pool internals, a vanished thread's objects or a "
                 "file's internal buffer lead to it; the child blocks only if it uses that object itself"),
}
NO_REACH = "unknown: not classified"


def reach_text(h):
    if "reach" not in h:
        return None  # a record written before reach existed
    reach = h.get("reach")
    if reach is None:
        return NO_REACH
    text = REACH_TEXT.get(reach, reach)
    if reach == "c-library":
        return text % ((h.get("library") or "?").rsplit("/", 1)[-1])
    if reach == "internal" and h.get("kind") == "python_internal":
        return ("unlikely: the internal lock of a file object that no logger writes to; the child "
                "blocks only if it writes to that file itself")
    if reach == "c-heap":
        return text % ("heap" if h.get("library") == "[heap]" else "anonymous (a malloc arena's or mmap's)")
    return text


def known_text(h):
    """What the owner's native stack and forkaudit's table of known libraries say."""
    key = h.get("known")
    entry = known.LIBRARIES.get(key) if key else None
    lines = []
    code = [p.rsplit("/", 1)[-1] for p in h.get("owner_code") or ()]
    if code:
        lines.append("code on its owner's stack (innermost first): %s" % ", ".join(code[:6]))
    if entry is not None:
        lines.append("recognised: %s" % entry["name"])
    return lines


_CONSTRUCTORS = {"_thread.lock": "threading.Lock()", "_thread.RLock": "threading.RLock()",
                 "threading.Condition": "threading.Condition()", "threading.Semaphore": "threading.Semaphore()"}


def reset_expr(h):
    """An expression that re-creates this Python lock at its real path (for an after-fork
    hook), or None (no path, a hashed key, or not a plain lock)."""
    obj = h.get("object") or {}
    path, kind = obj.get("path"), h.get("kind")
    if not path or kind not in ("python_lock", "python_rlock") or "[<" in path:
        return None
    make = _CONSTRUCTORS.get(obj.get("type"), "threading.RLock()" if kind == "python_rlock" else "threading.Lock()")
    head = path[len("__main__."):] if path.startswith("__main__.") else path
    if path.endswith(".mutex") and path.count(".") >= 2:
        # a queue.Queue's mutex: its Conditions share it, so re-initialise the whole queue
        q = head[:-len(".mutex")]
        return "%s.__init__(%s.maxsize)" % (q, q)
    if path.startswith("__main__.") and "." not in head and "[" not in head:
        return "globals().update(%s=%s)" % (head, make)  # in the main module
    if head.endswith("]"):
        parent, _, key = head[:-1].rpartition("[")
        return "%s.__setitem__(%s, %s)" % (parent, key, make)
    parent, _, attr = head.rpartition(".")
    if not parent:
        return None
    return "setattr(%s, %r, %s)" % (parent, attr, make)


def reset_line(h):
    expr = reset_expr(h)
    if expr is None:
        return None
    return "os.register_at_fork(after_in_child=lambda: %s)" % expr


def _in_main(h):
    return " (in the main module)" if ((h.get("object") or {}).get("path") or "").startswith("__main__.") else ""


START_METHOD = {
    "multiprocessing": ("create the worker processes with the 'spawn' or 'forkserver' start method "
                        "(multiprocessing.get_context('forkserver'))"),
    "concurrent.futures": ("give the pool a 'spawn' or 'forkserver' context: ProcessPoolExecutor("
                           "mp_context=multiprocessing.get_context('forkserver'))"),
}


_IMPORT_PATH = re.compile(r"^importlib\._bootstrap\._module_locks\[['\"](.+)['\"]\]\(\)$")


def advice(event):
    """The fix lines for this case: a known library's own remedy, then by where the fork came
    from (gunicorn's arbiter, multiprocessing, concurrent.futures, a raw os.fork)."""
    hazards = event.get("hazards", [])
    origin = known.fork_origin((event.get("forking_thread") or {}).get("stack"))
    lines = []
    for key in known.ORDER:
        if any(h.get("known") == key for h in hazards):
            entry = known.LIBRARIES[key]
            lines.append("fix (%s): %s." % (entry["name"], entry["remedy"]))
    modules = [m.group(1) for m in (_IMPORT_PATH.match((h.get("object") or {}).get("path") or "")
                                    for h in hazards if h.get("reach") == "import") if m]
    # a package's import covers its submodules': name the outermost of each chain
    modules = [m for m in dict.fromkeys(modules)
               if not any(m.startswith(other + ".") for other in modules)]
    if modules:
        lines.append("fix: import %s before the fork (in the main thread, before starting the threads that "
                     "import it or before forking): an import in another thread at the fork leaves it "
                     "half-done in the child." % ", ".join(modules))
        hazards = [h for h in hazards if h.get("reach") != "import"]
        if not hazards:
            return lines
    likely = [h for h in hazards if h.get("reach") in ("logging", "global", "local", None)] or hazards
    first = next((h for h in likely if reset_expr(h)), None)
    reset = reset_line(first) if first else None
    kinds = {h.get("kind") for h in hazards}
    if origin == "gunicorn":
        lines.append("fix: the fork came from gunicorn's arbiter: re-create the lock in a post_fork(server, worker) "
                     "server hook (gunicorn.conf.py)%s, or load the application in each worker "
                     "(no --preload) so that no thread runs in the arbiter." % (
                         ": def post_fork(server, worker): " + reset_expr(first) if first else ""))
    elif origin in START_METHOD:
        lines.append("fix: %s%s." % (START_METHOD[origin], ", or reset the lock in the child%s: %s" % (
            _in_main(first), reset) if reset else ""))
    elif reset:
        lines.append("fix: reset the lock in the child%s: %s; or fork before starting the threads that take it."
                     % (_in_main(first), reset))
    elif not lines:
        # a raw os.fork (the start-method advice is for multiprocessing's and the pools' forks)
        if kinds & {"pthread_mutex", "pthread_rwlock", "semaphore"}:
            lines.append("fix: fork before starting the threads that call into this library, or exec a new "
                         "program in the child (subprocess, os.posix_spawn) instead of running this code after the fork.")
        elif kinds == {"python_internal"}:
            lines.append("fix: flush and stop the thread that writes that file before forking, and let the child "
                         "open its own file%s." % (
                             "; or end the child with os._exit() once its work is done, so that logging does "
                             "not flush the inherited handler at exit" if any(h.get("reach") == "exit" for h in hazards)
                             else ""))
        else:
            lines.append("fix: re-create the lock in the child with os.register_at_fork(after_in_child=...) where "
                         "the program keeps it, or fork before starting the threads that take it.")
    return lines


def c_level_text(event):
    """One line when C-level locks were not checked (the record's c_level), else None."""
    c_level = event.get("c_level")
    if not c_level or c_level == "checked":
        return None
    state, _, why = c_level.partition(": ")
    if state == "off":
        why = "the C-level scan is off (--scan off or FORKAUDIT_SCAN=off)"
    return "  C-level locks (pthread mutexes, rwlocks) were not checked: %s; Python-level locks were." % (why or c_level)


def hazard_lines(i, h):
    """The lines of hazard [i] of a report (also pre-rendered for the watchdog, watchdog.py)."""
    lines = ["  [%d] %s %s" % (i, h.get("kind"), where_text(h)),
             "      owner: %s" % owner_text(h)]
    reach = reach_text(h)
    if reach:
        lines.append("      reach: %s" % reach)
    lines.extend("      " + line for line in known_text(h))
    if h.get("held_at"):
        lines.append("      its stack at the fork (innermost last):")
        lines.extend(_frames(h["held_at"]))
    lines.append("      why: %s" % h.get("why"))
    return lines


def text(event, unreachable_in_full=False):
    """The human report: the hazards, then one line counting the locks held at the fork that
    nothing in the child can reach (unreachable_in_full: each of them, as `forkaudit report`
    shows them)."""
    hazards = event.get("hazards", [])
    unreachable = event.get("unreachable")
    unreachable = list(unreachable) if type(unreachable) is list else []
    # records written before "unreachable" existed listed them among the hazards
    unreachable = unreachable + [h for h in hazards if h.get("reach") == "unreachable"]
    hazards = [h for h in hazards if h.get("reach") != "unreachable"]
    event = dict(event, hazards=hazards)
    hidden = 0 if unreachable_in_full else len(unreachable)
    reinit = event.get("reinitialized", [])
    lines = []
    n = len(hazards)
    count = "no lock is" if n == 0 else "1 lock is" if n == 1 else "%d locks are" % n
    if event.get("side") == "parent":
        lines.append("forkaudit: refused to fork pid %s (policy 'raise'): %s held by other threads, "
                     "and would stay held in the child" % (event.get("pid"), count))
    else:
        lines.append("forkaudit: fork of pid %s -> child %s: %s held by threads that do not exist in the child"
                     % (event.get("parent_pid"), event.get("pid"), count))
    c_level = c_level_text(event)
    if c_level:
        lines.append(c_level)
    for i, h in enumerate(hazards, 1):
        lines.append("")
        lines.extend(hazard_lines(i, h))
    if hidden:
        lines.append("")
        lines.append("  and %s that nothing in the child can reach (only the vanished threads' own frames led "
                     "to %s): not a hazard; the JSON record lists %s under \"unreachable\"" % (
                         "1 more lock held at the fork" if hidden == 1 else "%d more locks held at the fork" % hidden,
                         "it" if hidden == 1 else "them", "it" if hidden == 1 else "them"))
    ft = event.get("forking_thread") or {}
    lines.append("")
    lines.append("  fork called from thread %r (native id %s):" % (ft.get("name"), ft.get("native_id")))
    lines.extend(_frames(ft.get("stack") or []))
    if unreachable_in_full and unreachable:
        lines.append("")
        lines.append("  held at the fork, but nothing in the child can reach it (not a hazard):")
        for h in unreachable:
            lines.append("      %s %s, %s" % (h.get("kind"), where_text(h), owner_text(h)))
    if reinit:
        lines.append("")
        lines.append("  reset in the child by an at-fork handler (not a hazard):")
        for h in reinit:
            lines.append("      %s %s, %s, reset by %s" % (h.get("kind"), where_text(h), owner_text(h),
                                                            h.get("by") or "an unknown handler"))
    if hazards:
        lines.append("")
        lines.extend("  " + line for line in advice(event))
    return "\n".join(lines) + "\n"


def summary(event):
    """One line for a record."""
    return "pid %s (parent %s, %s policy): %d hazard(s), %d reinitialized, %d unreachable, %d other thread(s)" % (
        event.get("pid"), event.get("parent_pid"), event.get("policy"), len(event.get("hazards", [])),
        len(event.get("reinitialized", [])), len(event.get("unreachable") or []), len(event.get("threads", [])))


# ---- the stuck-fork watchdog (watchdog.py, csrc/watchdog.c) -------------------------------

def watchdog_head(event):
    """What the child watchdog writes above the lock it found the child stuck on (the rest
    of its lines are written by the C handler, in the child, with no Python)."""
    ft = event.get("forking_thread") or {}
    lines = ["  the audit at the fork (forked from thread %r, native id %s, of pid %s) found:"
             % (ft.get("name"), ft.get("native_id"), event.get("parent_pid"))]
    return "\n".join(lines) + "\n"


def watchdog_parent(facts):
    """The parent watchdog's Python-level lines: the lock, its holder now, where the wait is."""
    lines = []
    lock = facts.get("lock")
    if lock is not None:
        lines.append("  the lock: %s  (%s at %s, semaphore %s)" % (
            lock.get("path") or "(unnamed lock)", lock.get("type"), lock.get("address"), facts.get("futex")))
    else:
        lines.append("  the lock: not a Python lock forkaudit can see (semaphore %s)" % facts.get("futex"))
    holders = facts.get("holders") or []
    if not holders:
        lines.append("  held by: no thread's stack shows who holds it")
    for t in holders:
        lines.append("  held by: thread %r (native id %s), alive; its stack now (innermost last):"
                     % (t.get("name"), t.get("native_id")))
        lines.extend(_frames(t.get("stack") or []))
    hook = facts.get("hook")
    if hook is not None:
        lines.append('  the wait is in the before-fork hook %s() (File "%s", line %s), registered with '
                     "os.register_at_fork(before=...)" % (hook.get("function"), hook.get("file"), hook.get("line")))
    ft = facts.get("forking") or {}
    lines.append("  the forking thread %r (native id %s), innermost last:" % (ft.get("name"), ft.get("native_id")))
    lines.extend(_frames(ft.get("stack") or []))
    return "\n".join(lines) + "\n"


def watchdog_child_hook(facts):
    """The child watchdog's Python-level lines for a child stuck in an at-fork hook."""
    lines = []
    lock = facts.get("lock")
    if lock is not None:
        lines.append("  the lock: %s  (%s at %s)" % (lock.get("path") or "(unnamed lock)", lock.get("type"),
                                                     lock.get("address")))
    for t in facts.get("holders") or []:
        lines.append("  held at the fork by thread %r (native id %s), which does not exist in the child; "
                     "its stack at the fork (innermost last):" % (t.get("name"), t.get("native_id")))
        lines.extend(_frames(t.get("stack") or []))
    hook = facts.get("hook")
    if hook is not None:
        lines.append('  the wait is in the after-fork hook %s() (File "%s", line %s), registered with '
                     "os.register_at_fork(after_in_child=...)" % (hook.get("function"), hook.get("file"),
                                                                  hook.get("line")))
    return "\n".join(lines) + "\n" if lines else ""
