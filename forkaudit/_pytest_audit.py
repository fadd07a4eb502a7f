"""The active part of the pytest plugin (see pytest_plugin.py); imported only when enabled."""
import datetime
import fnmatch
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from _thread import get_native_id

import pytest

from . import hooks, settings
from ._childwatch import Tail, cmdline, proc_state, stat_fields

POLL = 0.01
KILL_GRACE = 1.0  # seconds past forkaudit_child_timeout the plugin waits for the watcher's kill


def summary_line(hazardous, tests, audited, killed=0, late=0):
    line = "forkaudit: %d hazardous fork%s in %d test%s; %d fork%s audited" % (
        hazardous, "" if hazardous == 1 else "s", tests, "" if tests == 1 else "s",
        audited, "" if audited == 1 else "s")
    if killed:
        line += "; %d hung child%s killed" % (killed, "" if killed == 1 else "ren")
    if late:
        line += "; %d hazardous record%s arrived after its test ended" % (late, "" if late == 1 else "s")
    return line


def record_time(rec):
    try:
        return datetime.datetime.strptime(rec["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


def _new_style_wrappers():
    """pluggy >= 1.1 runs wrapper=True hooks (cheaper per call than hookwrapper=True ones)."""
    try:
        pytest.hookimpl(wrapper=True)
    except TypeError:
        return False
    return True


_NEW_STYLE_WRAPPERS = _new_style_wrappers()


class Audit:
    def __init__(self, config, policy):
        self.config = config
        self.policy = policy
        self.ignore = [p for p in config.getini("forkaudit_ignore") if p.strip()]
        try:
            self.timeout = float(config.getini("forkaudit_child_timeout"))
        except ValueError:
            raise pytest.UsageError("forkaudit_child_timeout must be a number of seconds") from None
        self.dir = tempfile.mkdtemp(prefix="forkaudit-pytest-")
        self.report = os.path.join(self.dir, "forks.jsonl")
        self.kills_path = os.path.join(self.dir, "killed.jsonl")
        self.children_path = os.path.join(self.dir, "children.jsonl")  # notes for the watcher
        self.records = Tail(self.report)
        self.kills = Tail(self.kills_path)
        self.pending = []        # child records not yet attributed
        self.windows = []        # (start, stop, nodeid, phase) of every phase run so far
        self.fork_times = []     # when this process forked (after_in_parent)
        self.audited = 0
        self.seen_pids = set()
        self.watched = set()     # pids of hazardous children that may still be killed
        self.unrecorded = {}     # pid -> fork time: children of this process without a record yet
        self.listed = {}         # native thread id -> its children at its last fork
        self.window_start = 0.0
        self.hazardous = 0       # hazardous forks that counted against a test
        self.tests = set()       # nodeids with a hazardous fork
        self.killed = []
        self.late = 0
        self.warn = []           # (nodeid, text) under policy warn
        self.me = os.getpid()
        self.active = True
        self.previous = hooks.installed()
        self.saved_env = {k: os.environ.get(k) for k in ("FORKAUDIT", "FORKAUDIT_JSON")}
        self.watcher = None      # started at the first sign of a fork (see _start_watcher)
        # only the light at-fork hooks (the .pth activation's path): the flow (snapshot, audit,
        # the native shim) is imported at the session's first fork, so a suite that never
        # forks never loads it (forkaudit.install() would load it now)
        hooks.activate(settings.make("record", self.report, watchdog=settings.WATCHDOG_SECONDS))
        os.environ["FORKAUDIT"] = "record"
        os.environ["FORKAUDIT_JSON"] = self.report
        os.register_at_fork(after_in_parent=self._forked)  # forever: it checks self.active

    def _forked(self):
        if self.active and os.getpid() == self.me:
            now = time.time()
            self.fork_times.append(now)
            try:
                self._note_children(now)
            except (OSError, ValueError, IndexError):
                pass  # no /proc children list here: only children with a record are watched
            if self.watcher is None:
                self._start_watcher()

    def _note_children(self, now):
        """Note the child this thread has just forked (the children of the forking thread that
        were not there at its last fork), with its start time, for the watcher: a child that
        hangs before it writes its record (inside its own audit) is known only from here."""
        tid = get_native_id()
        with open("/proc/self/task/%d/children" % tid) as f:
            listed = set(int(p) for p in f.read().split())
        new = listed - self.listed.get(tid, set()) - {self.watcher}
        self.listed[tid] = listed
        started = {}
        for pid in new:
            fields = stat_fields(pid)
            if fields is not None and fields[0] not in ("Z", "X"):
                started[pid] = int(fields[19])
        # the newest only: an older new one was made without this hook (C code, posix_spawn)
        newest = max(started.values(), default=None)
        lines = []
        for pid, start in started.items():
            if start == newest:
                self.unrecorded[pid] = now
                lines.append(json.dumps({"pid": pid, "start": start, "time": now}))
        if lines:
            fd = os.open(self.children_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, ("\n".join(lines) + "\n").encode())
            finally:
                os.close(fd)

    def _start_watcher(self):
        """The hung-child watcher: a process, started when this session first forks (from the
        plugin's own after-in-parent hook) or its report file first grows (a process a test
        started forked), so a suite that never forks does not pay for it. posix_spawn runs no
        Python at-fork hook; -I -S: it needs only the standard library."""
        try:
            clean_env = {k: v for k, v in os.environ.items() if not k.startswith("FORKAUDIT")}
            watcher = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_childwatch.py")
            self.watcher = os.posix_spawn(
                sys.executable, [sys.executable, "-I", "-S", watcher, self.report, self.kills_path,
                                 repr(self.timeout), str(self.me), self.children_path], clean_env)
        except OSError as e:
            self.watcher = 0
            sys.stderr.write("forkaudit: cannot start the hung-child watcher (%s)\n" % e)

    # --- reading and attributing records ---------------------------------------------------
    def _collect(self):
        for rec in self.records.read():
            if rec.get("side") == "child" and rec.get("forkaudit") == 1:
                self.audited += 1
                self.pending.append(rec)
                self.seen_pids.add(rec.get("pid"))
                if rec.get("parent_pid") == self.me:
                    self.unrecorded.pop(rec.get("pid"), None)
                if rec.get("hazards"):
                    self.watched.add(rec.get("pid"))  # the watcher may kill it: read its kill notes

    def _take(self, start, stop):
        """Records of forks made in [start, stop] (and leave the others pending)."""
        mine, rest = [], []
        for rec in self.pending:
            t = record_time(rec)
            (mine if t is not None and start <= t <= stop else rest).append(rec)
        self.pending = rest
        return mine

    def _children_without_record(self):
        """Live (not zombie) forked children of this process (same command line) that have
        not written a record yet, or None when /proc does not list children."""
        pids = set()
        try:
            for tid in os.listdir("/proc/self/task"):
                with open("/proc/self/task/%s/children" % tid) as f:
                    pids.update(int(p) for p in f.read().split())
        except (OSError, ValueError):
            return None
        me = cmdline(self.me)
        # not exec'd (subprocess: not a forked copy of this process), alive and not a zombie
        return [pid for pid in pids - self.seen_pids - {self.watcher}
                if cmdline(pid) == me and proc_state(pid) is not None]

    def _wait_for_children(self, start, stop):
        """Until every fork this process made in the window has its child's record, the
        children without one have died (killed before their audit finished, or by the
        watcher), or timeout (plus the time the watcher needs to kill a child hung
        before it wrote its record)."""
        expected = sum(1 for t in self.fork_times if start <= t <= stop + 0.001)
        self.fork_times = [t for t in self.fork_times if t > stop + 0.001]
        self._collect()
        if not expected:
            return
        deadline = time.monotonic() + self.timeout + KILL_GRACE
        while True:
            found = sum(1 for r in self.pending if r.get("parent_pid") == self.me
                        and (record_time(r) or 0) >= start - 0.001)
            if found >= expected or time.monotonic() >= deadline:
                return
            if self._children_without_record() == []:
                return
            time.sleep(POLL)
            self._collect()

    def _read_kills(self):
        """The watcher's new kill lines, without those it took back (the child was gone)."""
        kills = self.kills.read()
        cancelled = {k.get("pid") for k in kills if k.get("cancel")}
        return [k for k in kills if not k.get("cancel") and k.get("pid") not in cancelled]

    def _ignored(self, h):
        """Not counted against a test: nothing in the child can reach it (records written
        before "unreachable" was their own list), or --forkaudit-ignore."""
        if h.get("reach") == "unreachable":
            return True
        if not self.ignore:
            return False
        obj = h.get("object") or {}
        owner = h.get("owner") or {}
        names = [obj.get("path"), h.get("symbol"), h.get("library"), owner.get("name")]
        return any(n and fnmatch.fnmatchcase(n, p) for n in names for p in self.ignore)

    def _late(self):
        """At the end: pending records whose fork happened during a test's phase came too late
        to fail that test; they are counted in the summary."""
        for rec in self.pending:
            t = record_time(rec)
            if t is not None and any(s <= t <= e for s, e in self.windows) \
                    and any(not self._ignored(h) for h in rec.get("hazards", [])):
                self.late += 1
        self.pending = []

    # --- hooks ------------------------------------------------------------------------------
    if _NEW_STYLE_WRAPPERS:
        @pytest.hookimpl(wrapper=True)
        def pytest_runtest_makereport(self, item, call):
            report = yield
            if call.when == "setup" and report.outcome == "passed":
                self.window_start = call.start  # checked with the call
            else:
                self._phase_ended(item, call, report)
            return report
    else:  # pluggy < 1.1
        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_makereport(self, item, call):
            outcome = yield
            report = outcome.get_result()
            if call.when == "setup" and report.outcome == "passed":
                self.window_start = call.start
            else:
                self._phase_ended(item, call, report)

    def _phase_ended(self, item, call, report):
        """After the report of a call or teardown phase (or of a setup that did not pass).
        The fast path (no fork in this process since the last check, no hazardous child
        watched, the report file has not grown: a suite that never forks) is one stat."""
        if call.when == "setup":
            self.window_start = call.start  # it failed: checked now and with the teardown
        start, stop = self.window_start, call.stop
        self.window_start = stop
        self.windows.append((start, stop))
        if not (self.fork_times or self.watched):
            try:
                if os.stat(self.report).st_size == self.records.offset:
                    return
            except OSError:
                return
        if self.watcher is None:
            self._start_watcher()
        self._wait_for_children(start, stop)
        records = self._take(start, stop)
        noted = {pid for pid, t in self.unrecorded.items() if t <= stop + 0.001}  # no record yet
        for pid in noted:
            del self.unrecorded[pid]
        kills = self._read_kills() if self.watched or noted else []
        for k in kills:
            self.watched.discard(k.get("pid"))
        marker = item.get_closest_marker("forkaudit")
        enabled = marker is None or marker.kwargs.get("enabled", marker.args[0] if marker.args else True)
        hazardous = []
        for rec in records:
            hz = [h for h in rec.get("hazards", []) if not self._ignored(h)]
            if hz:
                hazardous.append(dict(rec, hazards=hz))
        pids = {r.get("pid") for r in records}
        mine = [k for k in kills if k.get("pid") in pids and k.get("record") is not False]
        lost = [k for k in kills if k.get("pid") in noted and k.get("record") is False]
        self.killed.extend(kills)
        self._forget_dead()
        if not (hazardous or lost) or not enabled:
            return
        if hazardous:
            self.hazardous += len(hazardous)
            self.tests.add(item.nodeid)
        text = self._text(hazardous, mine, lost, call.when)
        if self.policy == "warn":
            self.warn.append((item.nodeid, text))
        elif report.passed:
            report.outcome = "failed"
            report.longrepr = text
        else:
            report.sections.append(("forkaudit", text))

    def _forget_dead(self):
        self.watched = {pid for pid in self.watched if proc_state(pid) is not None}

    def _text(self, hazardous, kills, lost, when):
        from . import render
        parts = []
        if hazardous:
            parts.append("forkaudit: %d hazardous fork%s during this test's %s" % (
                len(hazardous), "" if len(hazardous) == 1 else "s", when))
        for k in lost:
            parts.append("forkaudit: child %s, forked during this test's %s, hung before it wrote its audit "
                         "record (%s, %.1f s after the fork) and was killed by forkaudit (SIGKILL)"
                         % (k["pid"], when, k.get("reason"), k.get("after") or 0))
        for k in kills:
            parts.append("child %s hung (%s %.1f s after its record) and was killed by forkaudit (SIGKILL)"
                         % (k["pid"], k.get("reason"), k.get("after") or 0))
        for rec in hazardous:
            parts.append(render.text(rec).rstrip("\n"))
        return "\n\n".join(parts) + "\n"

    def pytest_sessionfinish(self, session):
        self._collect()
        if self.watcher:
            self.killed.extend(self._read_kills())  # kills that came after their test was reported
        self._late()
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput["forkaudit"] = {"hazardous": self.hazardous, "tests": sorted(self.tests),
                                         "audited": self.audited, "killed": len(self.killed),
                                         "late": self.late, "warn": self.warn}

    def pytest_terminal_summary(self, terminalreporter):
        for nodeid, text in self.warn:
            terminalreporter.write_sep("-", "forkaudit: hazardous fork in %s" % nodeid)
            terminalreporter.write(text)
        terminalreporter.write_line(summary_line(self.hazardous, len(self.tests), self.audited,
                                                 len(self.killed), self.late))

    def pytest_unconfigure(self, config):
        self.active = False
        for k, v in self.saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if self.previous is not None:
            hooks.activate(self.previous)   # the settings as they were (all of them)
        else:
            hooks.uninstall()
        if self.watcher:
            try:
                os.kill(self.watcher, signal.SIGKILL)
                os.waitpid(self.watcher, 0)
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
