"""The pytest plugin's child watcher: a separate process (never a thread in the test process).

    python -I -S _childwatch.py REPORT KILLS TIMEOUT PARENT_PID CHILDREN

Follows two files of the session:
* REPORT, the audit records. A child whose record has hazards and that is still
  alive TIMEOUT seconds after the record appeared, asleep and using no CPU (and,
  where /proc lets us read it, asleep in futex(2)), is taken as hung on an
  inherited lock.
* CHILDREN, the notes the test process writes from its after-in-parent hook:
  one line {"pid", "start", "time"} per child it forked (start: the child's
  start time in clock ticks, /proc/PID/stat field 22, so that a reused pid is
  never taken for it). A noted child that has written no record TIMEOUT seconds
  after its note, is still alive, has not exec'd (its command line is still the
  test process') and is asleep using no CPU is taken as hung inside its own
  audit (its record is written first thing after the fork).
A hung child's line {"pid", "time", "after", "reason", "record", "fork_time"} is
appended to KILLS *before* it is killed with SIGKILL (so a test that waits for
the child finds the line once the child is gone); if it turns out to be gone
already, {"pid", "cancel": true} follows. The watcher leaves when the test
process is gone.

The test process imports Tail and proc_state from here (this file needs only
the standard library: the watcher runs under -I -S).
"""
import json
import os
import signal
import sys
import time

POLL = 0.1
FUTEX = {"x86_64": "202", "aarch64": "98"}.get(os.uname().machine)


class Tail:
    """New complete JSON-object lines of a file, read with raw os calls (offset kept)."""

    def __init__(self, path):
        self.path, self.offset, self.partial = path, 0, b""

    def read(self):
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return []
        try:
            os.lseek(fd, self.offset, 0)
            while True:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                self.offset += len(chunk)
                self.partial += chunk
        finally:
            os.close(fd)
        *lines, self.partial = self.partial.split(b"\n")
        out = []
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out


def stat_fields(pid):
    """The fields of /proc/PID/stat after the command name (state first), or None if gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(")") + 2:].split()


def proc_state(pid, start=None):
    """(state letter, cpu ticks) of a live process, or None if gone, a zombie, or (with
    start) not the process that started at that time."""
    fields = stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X") or (start is not None and fields[19] != str(start)):
        return None
    return fields[0], int(fields[11]) + int(fields[12])


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return None


def in_futex(pid):
    """True/False when /proc/PID/syscall is readable, None when it is not (ptrace rules)."""
    try:
        with open("/proc/%d/syscall" % pid) as f:
            return f.read().split()[0] == FUTEX
    except (OSError, IndexError):
        return None


def append(path, obj):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(obj) + "\n").encode())
    finally:
        os.close(fd)


def kill(kills, pid, note):
    """Say it, then do it (a reader that sees the child gone sees the line); False if gone."""
    append(kills, dict(note, pid=pid, time=time.time()))
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        append(kills, {"pid": pid, "cancel": True})
        return False
    return True


def main(report, kills, timeout, parent, children):
    records, notes = Tail(report), Tail(children)
    parent_cmdline = cmdline(parent)
    hazardous = {}   # pid -> (record first seen, last cpu)
    unrecorded = {}  # pid -> (note first seen, start, fork time, last cpu): noted, no record yet
    recorded = set()  # pids of children whose record was seen
    while os.getppid() == parent:
        now = time.monotonic()
        for rec in records.read():
            pid = rec.get("pid")
            if rec.get("side") != "child" or not isinstance(pid, int):
                continue
            recorded.add(pid)
            unrecorded.pop(pid, None)
            if rec.get("hazards"):
                hazardous[pid] = (now, None)
        for note in notes.read():
            pid = note.get("pid")
            if isinstance(pid, int) and pid not in recorded:
                unrecorded[pid] = (now, note.get("start"), note.get("time"), None)
        for pid, (seen, last_cpu) in list(hazardous.items()):
            st = proc_state(pid)
            if st is None:
                del hazardous[pid]
                continue
            state, cpu = st
            hazardous[pid] = (seen, cpu)
            if now - seen < timeout or state not in ("S", "D") or cpu != last_cpu:
                continue
            futex = in_futex(pid)
            if futex is False:
                continue
            del hazardous[pid]
            kill(kills, pid, {"after": round(now - seen, 3), "record": True,
                              "reason": "asleep in futex(2)" if futex else "asleep, using no CPU"})
        for pid, (seen, start, fork_time, last_cpu) in list(unrecorded.items()):
            st = proc_state(pid, start)
            if st is None or cmdline(pid) != parent_cmdline:
                del unrecorded[pid]  # gone, or exec'd (no record to wait for: not a copy of the test process)
                continue
            state, cpu = st
            unrecorded[pid] = (seen, start, fork_time, cpu)
            if now - seen < timeout or state not in ("S", "D") or cpu != last_cpu:
                continue
            del unrecorded[pid]
            kill(kills, pid, {"after": round(now - seen, 3), "record": False, "fork_time": fork_time,
                              "reason": "asleep, using no CPU, no record written"})
        time.sleep(POLL)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
