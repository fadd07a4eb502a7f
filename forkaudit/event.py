"""One ForkEvent per audited fork, in the report format (report-format.md, version 1)."""
import os
import sys
import time

from . import clocks, native, pylocks, reach
from .maps import Maps
from .threads import resolve_native_ids

FORMAT_VERSION = 1


def libc_version():
    """("glibc", "2.36"), or ("", "") where the C library does not say (as platform.libc_ver()
    answers first; the platform module itself costs 7 ms to import at the first fork)."""
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split(None, 1)
    except (AttributeError, ValueError, OSError):
        import platform
        return platform.libc_ver()
    return name, version


def platform_tag():
    libc, version = libc_version()
    tag = "%s-%s" % (sys.platform, os.uname().machine)
    if libc:
        tag += "-%s%s" % (libc, version)
    return tag


_PLATFORM = platform_tag()
_PYTHON = sys.version.split()[0]  # what platform.python_version() says (e.g. 3.12.1, 3.13.0rc1)


def now_iso(seconds=None):
    """An ISO 8601 UTC time to the microsecond (now, or `seconds` since the epoch, as
    time.time() gives). With the time module: datetime costs the flow an extension module
    and each child a few pages written."""
    if seconds is None:
        seconds = time.time()
    whole = int(seconds // 1)
    micro = int(round((seconds - whole) * 1e6))
    if micro >= 1000000:
        whole, micro = whole + 1, 0
    t = time.gmtime(whole)   # (formatted by hand: strftime reads the C library's locale data)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (t[0], t[1], t[2], t[3], t[4], t[5], micro)


def scan_report(stats):
    """The record's "scan" object: what the child-side C scan covered, and why not more.

    ran: false when the scan did not run (not_run says why: "proc_maps_unreadable" with
    errno, "no_other_threads", ...), which is not the same as a scan that found nothing.
    "reused": no other thread has run since the fork of a scan that found none of their locks
    held (csrc/quiet.c); "reused" names that scan's child and what it read, and the finding
    stands for this fork (complete).
    complete: every candidate byte was read (bytes == bytes_total); false when a budget
    ended it (cut: "time" or "bytes"). bytes_total: the candidate bytes (present, private,
    written pages) it saw, a lower bound when bytes_total_exact is false. Pages never
    written, unmodified file pages and swapped-out pages (swapped_bytes) are not candidates;
    nor are pymalloc pools of blocks too small for a mutex or a lock object (pool_bytes_skipped:
    only their headers were read, see csrc/pymalloc_layout.h).
    """
    if not stats or not stats["done"]:
        return None
    mode = {0: "off", 1: "libs", 2: "full"}[stats["mode"]]
    not_run = stats.get("not_run")
    report = {"mode": mode, "mappings": stats["mappings"], "bytes": stats["bytes"],
              "seconds": round(stats["seconds"], 6), "skipped": stats["skipped"],
              "ran": not_run is None, "not_run": not_run,
              "complete": not_run in (None, "no_other_threads", "reused") and stats.get("cut") is None,
              "cut": stats.get("cut"), "bytes_total": stats.get("bytes_total", stats["bytes"]),
              "bytes_total_exact": stats.get("total_exact", True),
              "swapped_bytes": stats.get("swapped", 0), "residency": stats.get("residency"),
              "pool_bytes_skipped": stats.get("pool_bytes", 0),
              "budget": {"ms": stats.get("budget_ms") or None,
                         "bytes": stats.get("budget_bytes") or None}}
    if not_run == "proc_maps_unreadable":
        report["errno"] = stats.get("maps_errno")
    elif not_run == "reused":
        report["reused"] = {"child_pid": stats.get("reused_pid"), "bytes": stats.get("reused_bytes"),
                            "bytes_total": stats.get("reused_bytes_total")}
    return report


def build_child(snap):
    """The child's record of the fork described by `snap` (a hooks.Snapshot)."""
    vanished = native.vanished()
    threads, owners = thread_reports(snap.others, vanished)
    hazards, reinit = [], []
    if snap.c_level:
        hazards, reinit = clocks.entries(owners, Maps.read)  # maps read only if the scan hit
    blocked_on = {tid: futex for tid, _comm, futex in vanished}  # futex 0: not asleep in futex(2)
    py_hazards, py_reinit = pylocks.audit_child(snap.pylocks, blocked_on)
    judged = reach.annotate(py_hazards + hazards, threads, exits=snap.exits)  # sorted by reach
    scan = scan_report(native.stats()) if snap.c_level else None
    return child_record(snap, os.getpid(), scan, snap.forking.as_report(), threads,
                        [h for h in judged if h.get("reach") != "unreachable"], py_reinit + reinit,
                        # held at the fork by a vanished thread, but nothing the child can run leads
                        # to it (a span that thread was ending, a lock an after-fork hook replaced)
                        [h for h in judged if h.get("reach") == "unreachable"])


def thread_reports(others, vanished):
    """(the record's "threads", {tid: (name, stack)}) of the threads that vanished at the fork:
    the Python threads as the parent saw them (named from the kernel where Python had no name),
    then those only the kernel knew (vanished: native.vanished())."""
    comms = {tid: comm for tid, comm, _futex in vanished}
    for t in resolve_native_ids(others, comms):
        t.name = t.name or comms[t.native_id] or None   # (a thread with no threading name)
    owners = {t.native_id: (t.name, t.stack) for t in others if t.native_id is not None}
    kernel = kernel_threads(vanished, owners)
    owners.update((k["native_id"], (k["name"], [])) for k in kernel)
    return [t.as_report() for t in others] + kernel, owners


def kernel_threads(vanished, python_tids):
    """The "threads" entries of the threads only the kernel knew (no Python frames): those of
    vanished (native.vanished()) whose id is not in python_tids."""
    return [{"native_id": tid, "ident": None, "name": comm or None, "daemon": None,
             "python": False, "stack": []}
            for tid, comm, _futex in vanished if tid not in python_tids]


def child_record(snap, pid, scan, forking_thread, threads, hazards, reinit, unreachable):
    """A child's record from its parts (scan: scan_report() of this fork's scan, or None)."""
    return {
        "forkaudit": FORMAT_VERSION,
        "event": "fork",
        "side": "child",
        "time": now_iso(snap.time),
        "pid": pid,
        "parent_pid": snap.parent_pid,
        "python": _PYTHON,
        "platform": _PLATFORM,
        "policy": snap.settings.policy,
        "scan": scan,
        "c_level": native.c_level(snap.settings.scan, snap.c_level),
        "forking_thread": forking_thread,
        "threads": threads,
        "hazards": hazards,
        "reinitialized": reinit,
        "unreachable": unreachable,
    }


def build_parent(snap, hazards, reinit):
    """The parent's view (policy 'raise'): Python-level locks only, before the fork."""
    return {
        "forkaudit": FORMAT_VERSION, "event": "fork", "side": "parent", "time": now_iso(snap.time),
        "pid": snap.parent_pid, "parent_pid": os.getppid(), "python": _PYTHON,
        "platform": _PLATFORM, "policy": snap.settings.policy, "scan": None,
        "c_level": native.c_level(snap.settings.scan, False),
        "forking_thread": snap.forking.as_report(),
        "threads": [t.as_report() for t in snap.others],
        "hazards": hazards, "reinitialized": reinit,
    }
