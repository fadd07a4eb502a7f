"""One ForkEvent per audited fork, in the report format (report-format.md, version 1)."""
import datetime
import os
import platform
import sys

from . import clocks, native, pylocks
from .maps import Maps

FORMAT_VERSION = 1


def platform_tag():
    libc, version = platform.libc_ver()
    tag = "%s-%s" % (sys.platform, platform.machine())
    if libc:
        tag += "-%s%s" % (libc, version)
    return tag


_PLATFORM = platform_tag()


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def scan_report(stats):
    if not stats or not stats["done"]:
        return None
    mode = {0: "off", 1: "libs", 2: "full"}[stats["mode"]]
    return {"mode": mode, "mappings": stats["mappings"], "bytes": stats["bytes"],
            "seconds": round(stats["seconds"], 6), "skipped": stats["skipped"]}


def build_child(snap):
    """The child's record of the fork described by `snap` (a hooks.Snapshot)."""
    others = snap.others
    threads = [t.as_report() for t in others]
    owners = {t.native_id: (t.name, t.stack) for t in others if t.native_id is not None}
    vanished = native.vanished()
    for tid, comm, _futex in vanished:
        if tid not in owners:
            owners[tid] = (comm or None, [])
            threads.append({"native_id": tid, "ident": None, "name": comm or None, "daemon": None,
                            "python": False, "stack": []})
    hazards, reinit = [], []
    if snap.c_level:
        hazards, reinit = clocks.entries(owners, Maps.read())
    blocked_on = {tid: futex for tid, _comm, futex in vanished}  # futex 0: not asleep in futex(2)
    py_hazards, py_reinit = pylocks.audit_child(snap.pylocks, blocked_on)
    return {
        "forkaudit": FORMAT_VERSION,
        "event": "fork",
        "side": "child",
        "time": snap.time,
        "pid": os.getpid(),
        "parent_pid": snap.parent_pid,
        "python": platform.python_version(),
        "platform": _PLATFORM,
        "policy": snap.settings.policy,
        "scan": scan_report(native.stats()) if snap.c_level else None,
        "c_level": native.c_level(snap.settings.scan, snap.c_level),
        "forking_thread": snap.forking.as_report(),
        "threads": threads,
        "hazards": py_hazards + hazards,
        "reinitialized": py_reinit + reinit,
    }


def build_parent(snap, hazards, reinit):
    """The parent's view (policy 'raise'): Python-level locks only, before the fork."""
    return {
        "forkaudit": FORMAT_VERSION, "event": "fork", "side": "parent", "time": snap.time,
        "pid": snap.parent_pid, "parent_pid": os.getppid(), "python": platform.python_version(),
        "platform": _PLATFORM, "policy": snap.settings.policy, "scan": None,
        "c_level": native.c_level(snap.settings.scan, False),
        "forking_thread": snap.forking.as_report(),
        "threads": [t.as_report() for t in snap.others],
        "hazards": hazards, "reinitialized": reinit,
    }
