"""A clean fork's short way through the child's audit (issue 8: a clean fork costs the child
about what a bare fork does, and copies few of the pages it shares with the parent).

Most forks are clean: no other thread holds a lock. The full audit proves that and writes
a record with no hazard; on the way it reads the parent's snapshot object by object in the
child, and every object read there has its reference count written, so its page is copied.
The proof needs none of that. Its parts are those the full audit asks, each where it is
known best:

  parent: no other thread's frames hold a lock (pylocks.stacks_hold_locks, from the
          snapshot's stacks, which the full audit reads too), and Python knows every
          thread's native id (the child would otherwise name it from the kernel's list);
  child:  the C scan found no glibc lock of a vanished thread (no hit), its discovery found
          no Python lock object held now that is not the forking thread's own or private
          (pylocks.discovery_finds_locks), and no other thread was importing a module at
          the fork (pylocks.imports_by_others: the table as the child inherited it). Where
          no other thread has run since a fork so proven, from the same thread, the scan
          does not run and its finding stands (csrc/quiet.c: such a fork offers the parent
          its readings of the threads, and a later child compares them with the kernel's).

Where all hold, the full audit would find nothing and walk nothing: its record is
built here from the same parts (event.child_record). When a record is to be written, the
parent renders it as JSON text before the fork, all but the child's pid, its scan, the
threads only the kernel knew and the time, which the child puts in: the child writes its
record from a few allocations of its own. (The parent keeps its last renderings: forks
made from the same place while the other threads stay parked render the same text.) Any
doubt, and any error, leaves the fork to the full audit (flow.audit_child).
"""
import os

from . import event as event_mod
from . import native, pylocks, sink

# What only the child knows, as placeholders in the record the parent renders: strings no
# record holds (a NUL never comes from the parts a clean record is made of)
_PID = "\0forkaudit:pid\0"
_TIME = "\0forkaudit:time\0"
_SCAN = "\0forkaudit:scan\0"
_KERNEL = "\0forkaudit:kernel-threads\0"
_AS_JSON = {}   # each placeholder as the rendered text has it: made in the parent, read in a child

# The parent's renderings, by what they are made of: forks from the same place, with the
# other threads parked where they were, render the same text (bounded: a few kept)
_rendered = {}
_RENDERED_MAX = 8


# How many of this process's audits took the short way (its own, as a child: 0 or 1; the
# tests read it, as naming.WALKS counts the walks)
PROVEN = 0


class Proof:
    """The parent's part of the proof of a clean fork, and its rendering of the record."""

    __slots__ = ("exempt", "template", "python_tids", "c_level")

    def __init__(self, exempt, template, python_tids, c_level):
        self.exempt = exempt      # ids of held lock objects that are no hazard (pylocks.exempt_ids)
        self.template = template  # the record as JSON text but for the child's parts, or None
        self.python_tids = python_tids  # native ids of the other threads Python knew
        self.c_level = c_level    # the record's "c_level" (native.c_level)


def parent_proof(snap):
    """In the parent (before-fork step): a Proof if the parent's part holds, else None."""
    if not snap.c_level:
        return None   # no C scan in the child: nothing to prove a clean fork with
    locks = snap.pylocks
    if pylocks.stacks_hold_locks(locks):
        return None
    if any(t.native_id is None for t in snap.others):
        return None
    template = _template(snap) if snap.settings.json_path else None
    return Proof(pylocks.exempt_ids(locks), template, {t.native_id for t in snap.others},
                 native.c_level(snap.settings.scan, snap.c_level))


def _thread_key(t):
    key = t.key
    if key is None:   # (a thread that has not run since the last fork keeps its ThreadInfo)
        key = t.key = (t.native_id, t.ident, t.name, t.daemon,
                       tuple((f["file"], f["line"], f["function"]) for f in t.stack))
    return key


def _template(snap):
    """The record as JSON text but for the child's parts and the time (placeholders)."""
    key = (snap.parent_pid, snap.settings.policy, snap.settings.scan, snap.c_level,
           _thread_key(snap.forking), tuple(_thread_key(t) for t in snap.others))
    text = _rendered.get(key)
    if text is None:
        record = event_mod.child_record(snap, _PID, _SCAN, snap.forking.as_report(),
                                        [t.as_report() for t in snap.others] + [_KERNEL], [], [], [])
        record["time"] = _TIME
        text = sink.json_text(record)
        if not _AS_JSON:
            _AS_JSON.update((p, sink.json_text(p)) for p in (_PID, _TIME, _SCAN, _KERNEL))
        if len(_rendered) >= _RENDERED_MAX:
            _rendered.clear()
        _rendered[key] = text
    return text


def child_audit(snap):
    """In the child, after every at-fork handler: (record maker, JSON line or None, summary) of a
    fork proven clean, or None. The record maker builds the record (a dict) when asked for;
    the summary has the record's verdict (what the watchdog reads), not its threads."""
    global PROVEN
    proof = snap.clean
    if proof is None:
        return None
    stats = native.stats()
    if stats is None or stats["hits"] or stats["overflow"]:
        return None
    reused = stats["not_run"] == "reused"   # (its discovery found nothing, by the reuse's proof)
    if not reused and pylocks.discovery_finds_locks(snap.pylocks, proof.exempt, stats):
        return None
    if pylocks.imports_by_others(snap.pylocks):
        return None
    vanished = native.vanished()
    kernel_only = []
    for tid, _comm, _futex in vanished:   # (a loop: most forks have no thread only the kernel knew)
        if tid not in proof.python_tids:
            kernel_only = event_mod.kernel_threads(vanished, proof.python_tids)
            break
    pylocks.clean_child()
    PROVEN += 1
    if not reused:
        native.quiet_propose()   # this fork's scan, a baseline for the parent's next forks (csrc/quiet.c)
    pid = os.getpid()
    scan = event_mod.scan_report(stats)
    summary = {"hazards": [], "unreachable": [], "scan": scan,
               "threads": snap.others + kernel_only,   # (read for whether there were any)
               "c_level": proof.c_level}
    line = None
    if proof.template is not None:
        kernel = ",".join([sink.json_text(t) for t in kernel_only]) if kernel_only else ""
        placeholder = _AS_JSON[_KERNEL]
        text = proof.template.replace(_AS_JSON[_PID], str(pid), 1)
        # (the time is digits, '-', ':', 'T', '.' and 'Z': JSON's quotes are all it needs)
        text = text.replace(_AS_JSON[_TIME], '"%s"' % event_mod.now_iso(snap.time), 1)
        text = text.replace(_AS_JSON[_SCAN], sink.json_text(scan), 1)
        if kernel:
            text = text.replace(placeholder, kernel, 1)
        elif "," + placeholder in text:
            text = text.replace("," + placeholder, "", 1)
        else:
            text = text.replace(placeholder, "", 1)
        line = (text + "\n").encode()

    def record():
        return event_mod.child_record(snap, pid, scan, snap.forking.as_report(),
                                      [t.as_report() for t in snap.others] + kernel_only, [], [], [])
    return record, line, summary
