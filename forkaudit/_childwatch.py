"""The pytest plugin's child watcher: a separate process (never a thread in the test process).

    python -m forkaudit._childwatch REPORT KILLS TIMEOUT PARENT_PID

Follows the session's report file. A child whose record has hazards and that is
still alive TIMEOUT seconds after the record appeared, asleep and using no CPU
(and, where /proc lets us read it, asleep in futex(2)), is taken as hung on an
inherited lock: it is killed with SIGKILL and a line {"pid", "time", "reason"}
is appended to KILLS. The watcher leaves when the test process is gone.
"""
import json
import os
import signal
import sys
import time

POLL = 0.1
FUTEX = {"x86_64": "202", "aarch64": "98"}.get(os.uname().machine)


def proc_state(pid):
    """(state letter, cpu ticks) of a live process, or None if gone or a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[0], int(fields[11]) + int(fields[12])


def in_futex(pid):
    """True/False when /proc/PID/syscall is readable, None when it is not (ptrace rules)."""
    try:
        with open("/proc/%d/syscall" % pid) as f:
            return f.read().split()[0] == FUTEX
    except (OSError, IndexError):
        return None


def main(report, kills, timeout, parent):
    offset, partial = 0, b""
    pending = {}  # pid -> (first seen, last cpu)
    while os.getppid() == parent:
        try:
            fd = os.open(report, os.O_RDONLY)
            try:
                os.lseek(fd, offset, 0)
                while True:
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        break
                    offset += len(chunk)
                    partial += chunk
            finally:
                os.close(fd)
        except OSError:
            pass
        *lines, partial = partial.split(b"\n")
        now = time.monotonic()
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("side") == "child" and rec.get("hazards") \
                    and isinstance(rec.get("pid"), int):
                pending[rec["pid"]] = (now, None)
        for pid, (seen, last_cpu) in list(pending.items()):
            st = proc_state(pid)
            if st is None:
                del pending[pid]
                continue
            state, cpu = st
            pending[pid] = (seen, cpu)
            if now - seen < timeout or state not in ("S", "D") or cpu != last_cpu:
                continue
            futex = in_futex(pid)
            if futex is False:
                continue
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                del pending[pid]
                continue
            del pending[pid]
            line = json.dumps({"pid": pid, "time": time.time(), "after": round(now - seen, 3),
                               "reason": "asleep in futex(2)" if futex else "asleep, using no CPU"})
            fd = os.open(kills, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        time.sleep(POLL)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
