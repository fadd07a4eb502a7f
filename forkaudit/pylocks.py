"""Python-level locks held at the fork: captured in the parent, judged in the child.

Parent (before-fork hook, GIL held, every other thread frozen): read each
thread's frames for the locks it holds (heldby), note the Condition waiter
locks and per-thread bookkeeping locks that are never hazards, and record
each candidate's state at the fork.

Child (after every at-fork handler): walk from loggers and modules to name
each lock and to find locked locks no stack accounted for (RLocks name their
owner; plain Locks then have "owner unknown"); a lock still locked in the
child and held by a thread that does not exist there is a hazard; one that an
at-fork handler reset is `reinitialized`.
"""
import os
import sys
import threading

from . import cpython_layout, heldby, importlocks, locktypes, naming, native, safeattr, threads


class Candidate:
    __slots__ = ("lock", "owners", "held", "state")

    def __init__(self, lock, state):
        self.lock = lock
        self.owners = []   # ThreadInfo of threads whose frames hold it
        self.held = {}     # native_id/ident -> heldby.Held (how that thread holds it)
        self.state = state  # locktypes.State at the fork


class Snapshot:
    __slots__ = ("candidates", "acquiring", "private", "forking", "by_ident", "lineage_known")

    def __init__(self, forking, others):
        self.candidates = {}
        self.acquiring = {}  # id(lock) -> [(ThreadInfo, Held)] at the point of acquiring it
        self.private = []   # objects: locks that are never hazards (refs keep their ids valid)
        self.forking = forking
        self.by_ident = {t.ident: t for t in [forking] + others if t.ident is not None}
        self.lineage_known = False  # the parent knew every lock it inherited held (hooks.py)


def capture(forking, others):
    """The parent's view of Python locks at the fork (call with the GIL held, frames live)."""
    snap = Snapshot(forking, others)
    for _thread, fields in threads.last_table.values():
        tstate = fields.get("_tstate_lock")  # 3.9-3.12: reset by threading after fork
        if tstate is not None:
            snap.private.append(tstate)
    # Locks the stdlib's own before-fork hooks take in the forking thread: whatever forkaudit's
    # hook saw (it may run before or after theirs), at the fork they are the child's own.
    snap.private.extend(filter(locktypes.is_primitive, taken_by_before_fork_hooks()))
    for lock in filter(locktypes.is_primitive, resettable_locks()):
        # reset in the child before forkaudit looks: their state at the fork is only seen here
        state = locktypes.state(lock)
        if state.locked and id(lock) not in snap.candidates:
            snap.candidates[id(lock)] = Candidate(lock, state)
    for info in [forking] + others:
        analysis = info.analysis
        if analysis is None:
            if not info.frames:
                continue
            analysis = heldby.analyse(info.frames)
            if not analysis[0] and not analysis[1]:
                # kept for the next fork if this thread does not run till then: it refers to
                # nothing of the program's but Condition waiter locks (a thread that holds or
                # takes a lock is read again at each fork, and nothing it holds is kept between)
                info.analysis = analysis
        held, acquiring, private = analysis
        snap.private.extend(private)
        for h in acquiring:
            snap.acquiring.setdefault(id(h.lock), []).append((info, h))
        for h in held:
            c = snap.candidates.get(id(h.lock))
            if c is None:
                c = snap.candidates[id(h.lock)] = Candidate(h.lock, locktypes.state(h.lock))
            if info not in c.owners:
                c.owners.append(info)
                c.held[info.ident] = h
    return snap


def threads_to_probe(snap):
    """Native ids of the threads at some lock's acquisition point: the kernel's view of
    what they sleep on tells waiters from the thread granted the lock."""
    return sorted({t.native_id for takers in snap.acquiring.values() for t, _ in takers
                   if t.native_id is not None and t is not snap.forking})


def taken_by_before_fork_hooks():
    """Locks that a standard-library os.register_at_fork(before=...) hook acquires."""
    logging = sys.modules.get("logging")
    if logging is not None:
        yield getattr(logging, "_lock", None)            # logging._acquireLock / _prepareFork
    futures_thread = sys.modules.get("concurrent.futures.thread")
    if futures_thread is not None:
        yield getattr(futures_thread, "_global_shutdown_lock", None)


def resettable_locks():
    """The locks the standard library resets in every child (see known_resetter)."""
    logging = sys.modules.get("logging")
    if logging is not None:
        yield getattr(logging, "_lock", None)
        for handler in list(getattr(logging, "_at_fork_reinit_lock_weakset", ())):
            yield safeattr.get(handler, "lock")
    for name in ("_active_limbo_lock", "_shutdown_locks_lock"):
        yield getattr(threading, name, None)
    futures_thread = sys.modules.get("concurrent.futures.thread")
    if futures_thread is not None:
        yield getattr(futures_thread, "_global_shutdown_lock", None)


def known_resetter(lock):
    """Who resets this lock in every child, by knowledge of the standard library."""
    logging = sys.modules.get("logging")
    if logging is not None:
        if lock is getattr(logging, "_lock", None):
            return "logging"
        for handler in list(getattr(logging, "_at_fork_reinit_lock_weakset", ())):
            if safeattr.get(handler, "lock") is lock:
                return "logging"
    for name in ("_active_limbo_lock", "_shutdown_locks_lock"):
        if lock is getattr(threading, name, None):
            return "threading"
    futures_thread = sys.modules.get("concurrent.futures.thread")
    if futures_thread is not None and lock is getattr(futures_thread, "_global_shutdown_lock", None):
        return "concurrent.futures"
    return None


def _waiting(snap, lock, blocked_on):
    """Threads that were asleep on this lock's semaphore at the fork: waiting, not holding."""
    sem = cpython_layout.semaphore_address(lock)
    if sem is None or not blocked_on:
        return set()
    return {t for t in snap.by_ident.values() if t.native_id is not None and blocked_on.get(t.native_id) == sem}


def owner_of(c, snap, lock_id, waiting, kernel_view):
    """(ThreadInfo or None, known) — RLocks record their owner; plain locks go by the stacks.

    A lock granted at the fork to a thread still inside acquire() belongs to the one thread
    at the point of acquiring it that was not asleep on the lock itself."""
    if c.state.owner is not None:
        return snap.by_ident.get(c.state.owner), True
    if c.state.granted:
        takers = {t for t, _ in snap.acquiring.get(lock_id, ())} - waiting
        if len(takers) == 1:
            return takers.pop(), True
        return None, False
    if snap.forking in c.owners:
        return snap.forking, True
    owners = [t for t in c.owners if t not in waiting]
    if owners:
        return owners[0], True
    if kernel_view:
        # Someone holds it and no stack shows who; the kernel says which threads sleep on it.
        # The one other thread at its acquisition point is the one that got it (it was
        # returning from acquire() when the fork came).
        takers = {t for t, _ in snap.acquiring.get(lock_id, ())} - waiting - {snap.forking}
        if len(takers) == 1:
            return takers.pop(), True
    return None, False


def _site(thread, h):
    """'in put() at queue.py:133 (with self.not_full)' for where a thread holds or takes a lock."""
    if h is None or not thread.stack or h.frame_index >= len(thread.stack):
        return ""
    f = thread.stack[h.frame_index]
    construct = {"with": "with %s", "exiting": "leaving with %s", "acquire": "after %s.acquire()",
                 "acquiring": "at %s"}[h.how] % h.text
    return " in %s() at %s:%s (%s)" % (f["function"], f["file"].rsplit("/", 1)[-1], f["line"], construct)


def where_held(c, owner, snap, lock_id):
    if owner is None:
        return ""
    if owner.ident in c.held:
        return _site(owner, c.held[owner.ident])
    sites = [h for t, h in snap.acquiring.get(lock_id, ()) if t is owner]
    if sites:
        why = ("its acquire() had not returned yet" if c.state.granted else
               "the only thread at its acquisition point not asleep waiting for it")
        return "%s (granted at the fork: %s)" % (_site(owner, sites[0]), why)
    return ""


def _takers(snap, lock_id, waiting):
    """'; thread 'x' was at the point of acquiring it in ...' for an owner-unknown lock."""
    takers = [(t, h) for t, h in snap.acquiring.get(lock_id, ()) if t is not snap.forking]
    if not takers:
        return ""
    return "; at the fork, %s" % ", ".join(
        "thread %r was%s, %s" % (t.name, _site(t, h), "asleep waiting for it" if t in waiting
                                 else "waiting for it or just granted it") for t, h in takers)


def _entry(c, owner, path, container, snap, lock_id):
    lock = c.lock
    kind = locktypes.kind_of(lock)
    who = "thread %r (native id %s)" % (owner.name, owner.native_id) if owner is not None else None
    what = container or ("a %s" % locktypes.type_name(lock))
    count = " (acquired %d times)" % c.state.count if kind == "python_rlock" and c.state.count > 1 else ""
    return {
        "kind": kind,
        "owner": {"native_id": owner.native_id, "name": owner.name} if owner is not None else None,
        "object": {"type": locktypes.type_name(lock), "path": path},
        "address": "0x%x" % id(lock),
        "library": None,
        "symbol": None,
        "held_at": list(owner.stack) if owner is not None else None,
        "by": None,
        "why": "",
        "_who": who, "_what": what + count, "_where": where_held(c, owner, snap, lock_id), "_id": lock_id,
    }


# Locks this process inherited held from an earlier fork: id -> (owner name, native id, pid).
# A process forked from a child inherits them too, still held by the same vanished thread.
_inherited = {}
# The last child-side audit saw every Python lock held at its fork (a proof that none was,
# or a walk that was not cut short): then _inherited is the whole list.
audit_saw_all = False


def _inherited_owner(lock_id):
    return _inherited.get(lock_id)


def audit(snap, in_child=True, blocked_on=None, remember=False):
    """(hazards, reinitialized) report entries for the Python locks of a fork.

    blocked_on: {native_id: futex word} of the threads asleep in futex(2) at the fork."""
    global audit_saw_all
    if remember:
        audit_saw_all = False
    if snap is None:
        return [], []
    imports = _import_hazards(snap)   # (no walk: importlib's table names them)
    if in_child and not _worth_a_walk(snap):
        if remember:
            audit_saw_all = True
        # a clean fork, but for modules another thread was importing: nothing else held to
        # explain, and no page written to find that out
        return _finish(imports, remember), []
    walked = naming.walk()
    private = {id(o) for o in snap.private} | walked.private | _started_here(in_child)
    candidates = dict(snap.candidates)
    for lock_id, lock in walked.locks.items():
        if lock_id in candidates or lock_id in private or not locktypes.maybe_locked(lock):
            continue
        state = locktypes.state(lock)
        if state.locked:
            candidates[lock_id] = Candidate(lock, state)
    if in_child:
        for lock_id, (lock, path, parent) in _found_beyond_the_walk(snap, candidates, private, walked).items():
            candidates[lock_id] = Candidate(lock, locktypes.state(lock))
            walked.paths[lock_id], walked.parents[lock_id] = path, parent
    hazards, reinit = [], []
    for lock_id, c in candidates.items():
        if lock_id in private or not c.state.locked:
            continue
        waiting = _waiting(snap, c.lock, blocked_on)
        kernel_view = bool(blocked_on) and cpython_layout.semaphore_address(c.lock) is not None
        owner, known = owner_of(c, snap, lock_id, waiting, kernel_view)
        if owner is snap.forking and owner is not None:
            continue  # the child is that thread: it owns the lock
        if not known and c.state.owner is not None:
            continue  # an RLock owned by a thread we do not know (a C thread's? leave it)
        path = walked.paths.get(lock_id)
        container = naming.describe_container(c.lock, walked.parents.get(lock_id), path)
        e = _entry(c, owner, path, container, snap, lock_id)
        still = locktypes.state(c.lock).locked if in_child else True
        by = known_resetter(c.lock)
        earlier = _inherited_owner(lock_id) if owner is None else None
        if still and by is None:
            if earlier is not None:
                name, native_id, pid = earlier
                e["owner"] = {"native_id": native_id, "name": name}
                e["why"] = ("%s held since an earlier fork by thread %r (native id %s) of process %s, "
                            "which exists neither here nor in the child" % (e["_what"], name, native_id, pid))
            elif owner is None:
                e["why"] = ("%s is locked and no thread's stack shows who holds it (owner unknown)%s; "
                            "it stays locked in the child" % (e["_what"], _takers(snap, lock_id, waiting)))
            else:
                e["why"] = "%s held by %s%s, which does not exist in the child" % (
                    e["_what"], e["_who"], e["_where"])
            hazards.append(e)
        else:
            e["by"] = by
            e["why"] = "%s was held by %s%s at the fork; %s reset it in the child" % (
                e["_what"], e["_who"] or "an unknown thread", e["_where"],
                "%s's at-fork handler" % by if by else "an at-fork handler")
            reinit.append(e)
    hazards.extend(_internal_hazards(walked, snap))
    hazards.extend(imports)
    if remember:
        audit_saw_all = walked.complete
    return _finish(hazards, remember), _strip(reinit)


def _found_beyond_the_walk(snap, candidates, private, walked):
    """{id: (lock, path, parent)} of the lock objects the C scan found held that the walk, within
    its budgets, did not reach (one among a million entries of a dict, say) and that
    no stack accounts for: each read back from its address once its memory still checks out
    as a held lock object of its type. Only those that are a module's global, or held in a
    dict, list or tuple that is one, are kept, with that path: a lock no such path
    leads to (a vanished thread's own state lock, say) stays the walk's business, as before.
    Buffered files' locks are left to the walk."""
    discovery = native.python_discovery()
    if not discovery["ran"]:
        return {}
    kinds = cpython_layout.registered_kinds
    types = cpython_layout.registered_types
    locks = {}
    for address, type_index, owner, _count in discovery["held"]:
        if address in candidates or address in private or address in walked.locks:
            continue
        if type_index >= len(kinds) or kinds[type_index] == "buffered":
            continue
        if owner and owner == snap.forking.ident:
            continue
        lock = cpython_layout.object_at(address, types[type_index])
        if lock is not None and locktypes.state(lock).locked:
            locks[address] = lock
    if not locks:
        return {}
    paths = _paths_through_globals(locks)
    # nothing names a way to the others from a module: the walk's verdict stands for them
    return {address: (locks[address],) + paths[address] for address in locks if address in paths}


def _paths_through_globals(locks):
    """{id: (path, container)} for the locks ({id: lock}) that are a module global, or an entry
    of a dict, list or tuple that is one (the first path found, modules in the walk's order:
    naming.module_roots). One pass over the modules whatever the number of locks. Identity only: no key or item is compared,
    hashed or called. (Not gc.get_referrers: a dict of atomic values is not tracked by the
    collector, and on 3.9-3.11 neither is a lock, so such a dict holding one is invisible.)"""
    found = {}

    def wanted(obj):
        return id(obj) in locks and locks[id(obj)] is obj and id(obj) not in found

    for name, module in naming.module_roots():
        for key, value in list(dict.items(safeattr.module_dict(module))):
            if type(key) is not str:
                continue
            if wanted(value):
                found[id(value)] = ("%s.%s" % (name, key), module)
            elif type(value) is dict:
                for k, v in dict.items(value):
                    if wanted(v):
                        found[id(v)] = ("%s.%s%s" % (name, key, naming.key_text(k)), value)
            elif type(value) in (list, tuple):
                for i, v in enumerate(value):
                    if wanted(v):
                        found[id(v)] = ("%s.%s[%d]" % (name, key, i), value)
            if len(found) == len(locks):
                return found
    return found


def _finish(hazards, remember):
    """The hazards without their private keys; with `remember` (the child's audit), each one
    with an owner is kept in _inherited: this process holds those locks for good, and a fork
    it makes later names who held them."""
    if remember:
        for e in hazards:
            if e["owner"] is not None and e["_id"] not in _inherited:
                _inherited[e["_id"]] = (e["owner"]["name"], e["owner"]["native_id"], os.getppid())
    return _strip(hazards)


def _strip(entries):
    """The report entries without the private keys the audit built them with."""
    for e in entries:
        for key in ("_who", "_what", "_where", "_id"):
            e.pop(key, None)
    return entries


def _started_here(in_child):
    """ids of the _tstate_locks of threads running in the child: each is held by its own live
    thread, never a hazard. threading's after-fork hook leaves in its table only this thread,
    whose lock it re-takes (under gevent's monkey-patching, as a new lock object), and threads
    an after-fork hook started (opentelemetry's BatchSpanProcessor restarting its worker)."""
    if not in_child:
        return set()
    locks = [safeattr.get(t, "_tstate_lock") for t in list(dict.values(threading._active))]
    return {id(lock) for lock in locks if lock is not None}


# Where a thread parked waiting (Event/Condition/Queue waits, selectors, sockets, pools) has
# its innermost Python frame.
PARKING_FILES = ("/threading.py", "/queue.py", "/selectors.py", "/socket.py", "/socketserver.py",
                 "/multiprocessing/connection.py", "/multiprocessing/queues.py", "/multiprocessing/pool.py",
                 "/concurrent/futures/thread.py", "/concurrent/futures/process.py", "/asyncio/base_events.py",
                 "/logging/handlers.py")


def _worth_a_walk(snap):
    """Does the child need the walk (which finds held locks no stack accounts for, and names
    locks), or is this fork clean? Clean needs proof: the C scan's read-only discovery of held
    Python lock objects ran over all memory and found none, besides those the forking thread
    holds itself and those an at-fork handler has released since, and no thread's stack held
    one at the fork. Without that proof (no discovery, a budget cut it short) the walk runs."""
    return stacks_hold_locks(snap) or discovery_finds_locks(snap, exempt_ids(snap))


def stacks_hold_locks(snap):
    """The half of _worth_a_walk the parent can answer, from the threads' frames at the fork:
    does another thread's stack hold a lock, or (where the scan cannot discover buffered files'
    internal locks) is another thread somewhere other than a standard library wait?"""
    private = {id(o) for o in snap.private}
    for lock_id, c in snap.candidates.items():
        if c.state.locked and lock_id not in private and c.owners != [snap.forking]:
            return True
    kinds = cpython_layout.registered_kinds
    if "buffered" not in kinds:
        for t in snap.by_ident.values():
            if t is snap.forking:
                continue
            # a thread inside a C call of its own code (a write to a buffered file, say) may
            # hold a buffered file's internal lock, which the scan does not discover here: only
            # threads parked in the standard library's waits are known to hold none
            if t.stack and not t.stack[-1]["file"].replace("\\", "/").endswith(PARKING_FILES):
                return True
    return False


def exempt_ids(snap):
    """ids of the lock objects a held one found by the discovery may be without a walk: the
    private ones, and those the forking thread's frames hold (the child's own)."""
    own = {id(h.lock) for c in snap.candidates.values() for h in c.held.values()
           if snap.forking in c.owners}
    return own | {id(o) for o in snap.private}


def discovery_finds_locks(snap, exempt, stats=None):
    """The child's half of _worth_a_walk: unless no thread but the forking one existed, did the
    C scan's discovery miss anything (it did not run, or not over everything), or find a lock
    object held now that is not exempt (exempt_ids) nor the forking thread's? (A held buffered
    file, the standard streams' included, is in the discovery: its types are registered whenever
    their layout is known, which is also the only case where forkaudit can tell a held one.)
    stats: native.stats() of this fork's scan, if the caller has them."""
    if _alone_at_the_fork(snap):
        return False
    kinds = cpython_layout.registered_kinds
    discovery = native.python_discovery(stats)
    if not discovery or not discovery.get("ran") or not discovery.get("complete"):
        return True
    for address, type_index, owner, _count in discovery["held"]:
        if address in exempt or (owner and owner == snap.forking.ident):
            continue
        buffered = type_index < len(kinds) and kinds[type_index] == "buffered"
        if cpython_layout.taken_at(address, buffered) is not False:
            return True   # still held now, after every at-fork handler (or unreadable: look)
    return False


def _alone_at_the_fork(snap):
    """No thread but the forking one existed at the fork (Python's view and the kernel's, which
    counts C threads: the C prepare handler listed /proc/self/task for this armed fork), and the
    parent knew every lock it had itself inherited held (none): nothing held in the child can
    belong to a thread missing from it. (The scan does not run on such a fork, so its proof is
    not there to ask.)"""
    if not snap.lineage_known or _inherited:
        return False
    if any(t is not snap.forking for t in snap.by_ident.values()):
        return False
    return native.child_armed() and native.vanished() == []


def _owner_by_ident(ident, lock_id, snap):
    """(ThreadInfo or None, the record's "owner", words naming it) for a lock whose owner is
    known by its thread ident: a thread at the fork, or one of an earlier fork's."""
    owner = snap.by_ident.get(ident)
    if owner is not None:
        return owner, {"native_id": owner.native_id, "name": owner.name}, \
            "thread %r (native id %s)" % (owner.name, owner.native_id)
    earlier = _inherited_owner(lock_id)
    if earlier is not None:
        return None, {"native_id": earlier[1], "name": earlier[0]}, \
            "thread %r (native id %s) of process %s, since an earlier fork" % earlier
    return None, None, "thread ident %d" % ident


def _internal_hazards(walked, snap):
    """Buffered IO objects whose internal lock a vanished thread holds (python_internal).

    Nothing resets these in the child: its first write to that file hangs."""
    out = []
    for obj_id, (obj, path) in walked.internal.items():
        ident = cpython_layout.buffered_owner(obj)
        if ident is None or ident == snap.forking.ident:
            continue
        owner, owner_record, who = _owner_by_ident(ident, obj_id, snap)
        kind = safeattr.type_name(type(obj))
        name = safeattr.file_name(obj)
        target = " on %s" % (name if type(name) is str else "fd %s" % name) if name is not None else ""
        where = ""
        if owner is not None and owner.stack:
            f = owner.stack[-1]
            where = " (in %s() at %s:%s)" % (f["function"], f["file"].rsplit("/", 1)[-1], f["line"])
        out.append({
            "kind": "python_internal",
            "owner": owner_record,
            "object": {"type": kind, "path": path},
            "address": "0x%x" % obj_id,
            "library": None,
            "symbol": None,
            "held_at": list(owner.stack) if owner else None,
            "by": None,
            "why": "the internal lock of a %s%s is held by %s%s, which does not exist in the child; "
                   "the child's first use of this file blocks forever" % (kind, target, who, where),
            "_id": obj_id,
        })
    return out


def imports_by_others(snap):
    """Is a thread other than the forking one importing a module (holding its import lock)?
    (A loop, not any() over a generator: every child asks, and on 3.9-3.11 each function it
    runs is a page or two copied.)"""
    for held in importlocks.held():
        if held.owner != snap.forking.ident:
            return True
    return False


def clean_child():
    """The child's audit found nothing held (cleanfork): what audit(remember=True) keeps of
    such a fork. It inherited no lock held, and knows it."""
    global audit_saw_all
    importlocks.wakeups.clear()
    audit_saw_all = True


def _import_hazards(snap):
    """Modules another thread was importing at the fork (importlocks): the child's first
    import of each blocks on that thread's module lock."""
    out = []
    importlocks.wakeups.clear()
    for held in importlocks.held():
        if held.owner == snap.forking.ident:
            continue  # the child is that thread: its import goes on in the child
        owner, owner_record, who = _owner_by_ident(held.owner, id(held.lock), snap)
        where = ""
        f = importlocks.module_frame(held.name, owner.stack) if owner is not None else None
        if f is not None:   # where the module's own code had got to
            where = " (at %s:%s)" % (_short_file(f["file"]), f["line"])
        importlocks.wakeups[id(held.lock)] = held.wakeup
        out.append({
            "kind": "python_internal",
            "owner": owner_record,
            "object": {"type": importlocks.TYPE_NAME, "path": importlocks.path(held.name)},
            "address": "0x%x" % id(held.lock),
            "library": None,
            "symbol": None,
            "held_at": list(owner.stack) if owner else None,
            "by": None,
            "why": ("the import lock of module %r is held by %s, which was importing it at the fork%s "
                    "and does not exist in the child; the module stays half-initialised there, and the "
                    "child's first import of it blocks forever" % (held.name, who, where)),
            "_id": id(held.lock),
        })
    return out


def _short_file(path):
    """'slowmod.py', or 'numpy/__init__.py' for a package's own file."""
    parts = path.replace("\\", "/").rsplit("/", 2)
    return "/".join(parts[-2:]) if parts[-1] == "__init__.py" and len(parts) > 1 else parts[-1]


def audit_child(snap, blocked_on=None):
    hazards, reinit = audit(snap, in_child=True, blocked_on=blocked_on, remember=True)
    return hazards, reinit


def audit_parent(snap):
    """Policy 'raise': what the parent can see before forking."""
    return audit(snap, in_child=False)
