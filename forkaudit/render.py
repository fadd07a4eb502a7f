"""The human report: what a kernel lockdep splat or a JVM deadlock report would say.

Most important first: each held lock and where it lives, its owner and the
owner's stack (innermost last), then where the fork was called from, then
what was reset harmlessly, then one line of advice.
"""

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
    head = " ".join(parts) or "(unnamed lock)"
    return "%s  (%s)" % (head, " ".join(place)) if place else head


def owner_text(h):
    o = h.get("owner") or {}
    if not o or (o.get("name") is None and o.get("native_id") is None):
        return "owner unknown"
    return "thread %r (native id %s)" % (o.get("name"), o.get("native_id"))


def advice(event):
    kinds = {h.get("kind") for h in event.get("hazards", [])}
    if kinds & {"pthread_mutex", "pthread_rwlock", "semaphore"}:
        return ("fix: create worker processes with the 'spawn' or 'forkserver' start method "
                "(multiprocessing.get_context('forkserver')), or fork before starting threads "
                "that call into this library.")
    return ("fix: create worker processes with the 'spawn' or 'forkserver' start method "
            "(multiprocessing.get_context('forkserver')), or reset the lock in the child with "
            "os.register_at_fork(after_in_child=...).")


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
    if h.get("held_at"):
        lines.append("      its stack at the fork (innermost last):")
        lines.extend(_frames(h["held_at"]))
    lines.append("      why: %s" % h.get("why"))
    return lines


def text(event):
    hazards = event.get("hazards", [])
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
    ft = event.get("forking_thread") or {}
    lines.append("")
    lines.append("  fork called from thread %r (native id %s):" % (ft.get("name"), ft.get("native_id")))
    lines.extend(_frames(ft.get("stack") or []))
    if reinit:
        lines.append("")
        lines.append("  reset in the child by an at-fork handler (not a hazard):")
        for h in reinit:
            lines.append("      %s %s, %s, reset by %s" % (h.get("kind"), where_text(h), owner_text(h),
                                                            h.get("by") or "an unknown handler"))
    if hazards:
        lines.append("")
        lines.append("  " + advice(event))
    return "\n".join(lines) + "\n"


def summary(event):
    """One line for a record."""
    return "pid %s (parent %s, %s policy): %d hazard(s), %d reinitialized, %d other thread(s)" % (
        event.get("pid"), event.get("parent_pid"), event.get("policy"), len(event.get("hazards", [])),
        len(event.get("reinitialized", [])), len(event.get("threads", [])))


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
