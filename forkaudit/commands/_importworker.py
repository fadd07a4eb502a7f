"""The audit interpreter of `forkaudit imports` (run by commands/imports.py, never imported elsewhere).

commands/imports.py starts a fresh interpreter with BOOT: it wraps
threading.Thread.start and os.register_at_fork *before* anything else is
imported (this process exists only for the audit, so wrapping them is fine),
then calls main() here. main() installs forkaudit (policy 'record'), imports
the modules one at a time and, after each, writes one JSON line (the import
record, see imports.py) to the result file: threads started, threads Python
never saw, at-fork hooks registered, and the trial forks with the child's own
forkaudit record.
"""
import importlib
import json
import os
import signal
import sys
import threading
import time
import warnings

# Run by commands/imports.py as `python -c BOOT CONFIG`. Only os, sys and threading are
# imported before the wrappers are in place.
BOOT = r'''
import os, sys, threading
_state = {"phase": "(start-up)", "threads": [], "hooks": [], "wrapped_at_fork": False}

def _qualname(fn):
    if fn is None:
        return None
    mod = getattr(fn, "__module__", None)
    if mod is None and getattr(fn, "__self__", None) is not None:
        mod = getattr(type(fn.__self__), "__module__", None)
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return "%s.%s" % (mod, name) if mod else name

def _stack(f):
    out = []
    while f is not None:
        out.append({"file": f.f_code.co_filename, "line": f.f_lineno, "function": f.f_code.co_name})
        f = f.f_back
    out.reverse()
    return out

_real_start = threading.Thread.start

def _start(self, *args, **kwargs):
    target = getattr(self, "_target", None)
    if target is None and type(self).run is not threading.Thread.run:
        target = type(self).run
    info = {"name": self.name, "daemon": self.daemon, "target": _qualname(target),
            "stack": _stack(sys._getframe(1)), "phase": _state["phase"]}
    _real_start(self, *args, **kwargs)
    info["thread"] = self
    info["native_id"] = getattr(self, "native_id", None)
    _state["threads"].append(info)

threading.Thread.start = _start

if hasattr(os, "register_at_fork"):
    _real_register = os.register_at_fork

    def register_at_fork(**kwargs):
        _real_register(**kwargs)
        caller = sys._getframe(1)
        if caller.f_code.co_name == "_register_at_fork" and caller.f_code.co_filename.endswith("hooks.py"):
            caller = caller.f_back  # forkaudit's own wrapper (installed after this one) passed it on
        _state["hooks"].append({"phase": _state["phase"], "stack": _stack(caller),
                                **{k: _qualname(v) for k, v in kwargs.items()}})

    os.register_at_fork = register_at_fork
    _state["wrapped_at_fork"] = True

from forkaudit.commands import _importworker
_importworker.main(_state, sys.argv[1])
'''

SYSTEM_LIBS = ("libc.so", "libc-", "ld-linux", "ld-musl", "libpthread", "libdl.so", "librt.so")
STACK_BYTES = 256 * 1024


def tasks():
    try:
        return {int(t) for t in os.listdir("/proc/self/task")}
    except OSError:
        return set()


def comm(tid):
    try:
        with open("/proc/self/task/%d/comm" % tid) as f:
            return f.read().strip() or None
    except OSError:
        return None


def native_place(tid, maps):
    """Where a thread Python never saw runs: the innermost return address on its stack that
    lies in a library other than libc/ld.so (its start routine or what it called), and the
    library of its current instruction. Needs the thread asleep in a system call."""
    from .. import native
    out = {"library": None, "function": None, "pc_library": None, "how": None}
    fields = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # a running thread has no readable stack: catch it in a system call
        try:
            with open("/proc/self/task/%d/syscall" % tid) as f:
                fields = f.read().split()
        except OSError:
            return out
        if len(fields) >= 3:
            break
        time.sleep(0.002)
    if len(fields) < 3 or fields[0] == "running":
        out["how"] = "running (no stack to read)"
        return out
    sp, pc = int(fields[-2], 16), int(fields[-1], 16)
    m = maps.find(pc)
    out["pc_library"] = m.path if m is not None and m.path else None
    stack = maps.find(sp)
    if stack is None or native.lib is None:
        return out
    size = min(stack.end - sp, STACK_BYTES)
    raw = native.read(sp, size) if size > 0 else None
    if not raw:
        return out
    for i in range(0, len(raw) - 7, 8):
        value = int.from_bytes(raw[i:i + 8], "little")
        m = maps.find(value)
        if m is None or "x" not in m.perms or not m.path.startswith("/"):
            continue
        if os.path.basename(m.path).startswith(SYSTEM_LIBS) or m.path == os.path.realpath(sys.executable):
            continue
        out["library"] = m.path
        try:
            from ..symbols import locate
            out["function"] = locate(value, maps)[1]
        except Exception:  # noqa: BLE001 - the name is a bonus
            pass
        out["how"] = "return address on its stack"
        return out
    out["how"] = "no library's code on its stack"
    return out


def child_records(path):
    out = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict) and rec.get("side") == "child":
                    out[rec.get("pid")] = rec
    except OSError:
        pass
    return out


def trial_fork(report, timeout):
    """Fork; the child leaves at once (forkaudit has audited it by then). The parent waits
    at most `timeout` seconds, then kills it and calls it hung."""
    start = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CPython's own "multi-threaded fork" warning
        pid = os.fork()
    if pid == 0:
        os._exit(0)
    status, hung = None, False
    deadline = start + timeout
    while True:
        done, raw = os.waitpid(pid, os.WNOHANG)
        if done:
            status = raw
            break
        if time.monotonic() >= deadline:
            hung = True
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            break
        time.sleep(0.002)
    seconds = time.monotonic() - start
    trial = {"pid": pid, "seconds": round(seconds, 4), "came_back": not hung,
             "exit_code": None if hung else os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode")
             else (os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status))}
    trial["record"] = child_records(report).get(pid)
    return trial


def main(state, config):
    cfg = json.loads(config)
    out = open(cfg["out"], "a", encoding="utf-8")
    try:
        import forkaudit
        from ..maps import Maps
        report = cfg["report"]
        forkaudit.install(policy="record", json_path=report, scan=cfg.get("scan", "full"))
    except Exception as e:  # noqa: BLE001
        out.write(json.dumps({"fatal": "forkaudit cannot start: %s: %s" % (type(e).__name__, e)}) + "\n")
        out.close()
        return
    preloaded = set(sys.modules)
    startup_hooks = list(state["hooks"])
    owner_phase = {}  # native id -> module whose import started it
    for info in state["threads"]:
        if info.get("native_id"):
            owner_phase[info["native_id"]] = info["phase"]
    for name in cfg["modules"]:
        state["phase"] = name
        first_thread, first_hook = len(state["threads"]), len(state["hooks"])
        before = tasks()
        already = name in sys.modules
        t0 = time.perf_counter()
        error = None
        try:
            importlib.import_module(name)
        except BaseException as e:  # noqa: BLE001 - SystemExit and KeyboardInterrupt of an import too
            error = "%s: %s" % (type(e).__name__, e)
        seconds = time.perf_counter() - t0
        rec = {"forkaudit_imports": 1, "module": name, "python": sys.version.split()[0],
               "pid": os.getpid(), "import_seconds": round(seconds, 6), "already_imported": already,
               "error": error}
        if error is not None:
            out.write(json.dumps(rec, default=str) + "\n")
            out.flush()
            continue
        started = []
        for info in state["threads"][first_thread:]:
            t = info["thread"]
            stack = info["stack"]
            if info.get("native_id"):
                owner_phase[info["native_id"]] = name
            started.append({"name": t.name, "target": info["target"], "daemon": info["daemon"],
                            "native_id": info.get("native_id"), "alive": t.is_alive(),
                            "started_at": stack[-1] if stack else None, "stack": stack})
        python_tids = {getattr(t, "native_id", None) for t in threading.enumerate()}
        maps = Maps.read()
        unseen = []
        for tid in sorted(tasks() - before - python_tids):
            owner_phase[tid] = name
            entry = {"native_id": tid, "name": comm(tid)}
            entry.update(native_place(tid, maps))
            unseen.append(entry)
        hooks = []
        for h in state["hooks"][first_hook:]:
            if h["stack"] and h["stack"][-1]["file"].startswith(os.path.dirname(os.path.dirname(__file__))):
                continue  # forkaudit's own hooks
            hooks.append({"before": h.get("before"), "after_in_parent": h.get("after_in_parent"),
                          "after_in_child": h.get("after_in_child"),
                          "registered_at": h["stack"][-1] if h["stack"] else None})
        rec.update({"threads": started, "native_threads": unseen, "at_fork_hooks": hooks,
                    "at_fork_hooks_listed": bool(state["wrapped_at_fork"]) and not already})
        trials = []
        for i in range(max(1, cfg.get("repeat", 1))):
            if i:
                time.sleep(cfg.get("interval", 0.005))  # spread the samples, not a synchronisation
            trials.append(trial_fork(report, cfg.get("timeout", 10.0)))
        for trial in trials:
            recd = trial["record"] or {}
            trial["earlier_owners"] = sorted({
                (h.get("owner") or {}).get("native_id") for h in recd.get("hazards", [])
                if owner_phase.get((h.get("owner") or {}).get("native_id")) not in (None, name)})
            trial["owner_modules"] = {str(tid): owner_phase[tid] for tid in
                                      {(h.get("owner") or {}).get("native_id") for h in recd.get("hazards", [])}
                                      if tid in owner_phase}
        rec["trials"] = trials
        rec["preloaded_by_startup"] = already and name in preloaded
        rec["startup_hooks"] = len(startup_hooks)
        out.write(json.dumps(rec, default=str) + "\n")
        out.flush()
    out.close()
