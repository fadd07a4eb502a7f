"""Shared helpers for forkaudit's tests.

Tests run against the *installed* package (there is no tests/__init__.py and
the tests never put the source tree on sys.path). Anything that forks runs in
a subprocess with a timeout, so a bug fails a test instead of hanging CI.
"""
import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "shared"))
# The tests carry their own copy of the report schema (test_shipped_data.py keeps it in step
# with ../shared/report.schema.json when that is there).
SCHEMA = os.path.join(HERE, "data", "report.schema.json")
TIMEOUT = 60

# C-level detection (csrc/glibc_layout.h) is built for Linux, glibc, x86_64. Elsewhere
# (musl, aarch64, ...) and when forced off, tests marked `c_level` skip, with the reason;
# on Linux/glibc/x86_64 they run, and fail if the shim reports the layout unavailable.
FORCE_NO_C_LEVEL = "FORKAUDIT_FORCE_NO_C_LEVEL"


def no_c_level_reason():
    if os.environ.get(FORCE_NO_C_LEVEL, "") not in ("", "0"):
        return "C-level detection forced off (%s)" % FORCE_NO_C_LEVEL
    libc = platform.libc_ver()[0] or "no glibc"
    if not sys.platform.startswith("linux") or libc != "glibc" or platform.machine() != "x86_64":
        return "platform: C-level lock detection is built for Linux/glibc/x86_64, not %s/%s/%s" % (
            sys.platform, libc, platform.machine())
    return None


def pytest_configure(config):
    config.addinivalue_line("markers", "stress: thousands of forks under load (scripts/test-all.sh runs them on the newest Python only; `-m stress` picks them)")
    config.addinivalue_line("markers", "c_level: needs the shim's verified lock layouts (C-level locks, and the lock states read through them): Linux, glibc, x86_64")


def pytest_runtest_setup(item):
    if item.get_closest_marker("c_level") is not None:
        why = no_c_level_reason()
        if why:
            pytest.skip(why)


class Result:
    def __init__(self, proc, records):
        self.proc = proc
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.records = records

    @property
    def children(self):
        """The children's fork records (not the watchdog's records, "event": "watchdog")."""
        return [r for r in self.records if r.get("side") == "child" and r.get("event") == "fork"]

    def __repr__(self):
        return "<Result rc=%s records=%d stderr=%r>" % (self.returncode, len(self.records), self.stderr[-2000:])


def run_bounded(cmd, timeout=TIMEOUT, **kw):
    """subprocess.run(cmd, capture_output=True, **kw), with a timeout that always ends.

    The program runs in a session of its own. On timeout the whole session is killed (its
    forked children too: a hung child would otherwise keep the pipes open, and the
    timeout's own wait for end of output would hang the test run), and the test fails
    with what the program printed. Once the program has finished, whatever it left behind
    in its session (an orphaned hung child) is killed too, so it cannot load the machine
    under later tests."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True, **kw)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_session(proc.pid)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # a process outside the session holds the pipes
            proc.kill()
            out, err = b"", b"(output not read: the pipes stayed open)"
        pytest.fail("%s did not finish in %s s\n--- stdout:\n%s\n--- stderr:\n%s"
                    % (cmd, timeout, _tail(out), _tail(err)), pytrace=False)
    finally:
        kill_session(proc.pid)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def kill_session(sid):
    try:
        os.killpg(sid, 9)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(data, n=4000):
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    return (data or "")[-n:]


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture
def run_python(tmp_path):
    """Run a Python snippet in a fresh interpreter; returns a Result with its JSON records.

    The snippet gets `REPORT` (a JSON-lines path) in its globals' environment as
    FORKAUDIT_TEST_REPORT; pass env={"FORKAUDIT": ...} to activate through the .pth.
    """
    def run(code, env=None, timeout=TIMEOUT, args=(), python=sys.executable):
        report = str(tmp_path / "report.jsonl")
        script = tmp_path / "snippet.py"
        script.write_text(textwrap.dedent(code))
        full_env = {k: v for k, v in os.environ.items()
                    if not k.startswith("FORKAUDIT") or k == FORCE_NO_C_LEVEL}
        full_env["FORKAUDIT_TEST_REPORT"] = report
        full_env.update(env or {})
        proc = run_bounded([python, str(script), *args], env=full_env, cwd=str(tmp_path),
                           text=True, timeout=timeout)
        return Result(proc, read_jsonl(report))
    return run


@pytest.fixture(scope="session")
def cc():
    compiler = os.environ.get("CC", "cc")
    if shutil.which(compiler) is None:
        pytest.skip("no C compiler")
    return compiler


@pytest.fixture(scope="session")
def build_c(tmp_path_factory, cc):
    """Compile C source into a shared library (or executable); returns its path."""
    out = tmp_path_factory.mktemp("native")

    def build(name, source, shared=True, flags=()):
        src = out / (name + ".c")
        src.write_text(textwrap.dedent(source))
        target = out / (("lib%s.so" % name) if shared else name)
        cmd = [cc, "-O1", "-g", "-Wall", "-o", str(target), str(src), "-lpthread", *flags]
        if shared:
            cmd[1:1] = ["-shared", "-fPIC"]
        subprocess.run(cmd, check=True, capture_output=True)
        return str(target)
    return build


@pytest.fixture(scope="session")
def schema_validator():
    import jsonschema  # a test requirement ([project.optional-dependencies] test)
    with open(SCHEMA) as f:
        return jsonschema.Draft202012Validator(json.load(f))


# --- helpers for test_python_locks.py, test_fork_shapes.py and test_policies.py ---------------

# The start of every program `fa_program` runs. Threads signal with Events, and the program
# waits until each of them is parked (asleep in Condition.wait, its own locks given back)
# before it forks, so the state at the fork is known exactly, not by a sleep.
FA_PRELUDE = r'''
import inspect, json, linecache, os, sys, threading, time
import forkaudit

REPORT = os.environ["FORKAUDIT_TEST_REPORT"]
_WAIT = threading.Condition.wait
_src, _first = inspect.getsourcelines(_WAIT)
_RELEASED_AT = _first + next(i for i, l in enumerate(_src) if "_release_save()" in l)
del _src, _first


def emit(**facts):
    """One line of facts for the test (the test reads lines starting with '@@'), written
    whole with one write(2) (a line under PIPE_BUF is atomic on the pipe), so a child's line
    and its parent's never run together when both processes emit at once."""
    sys.stdout.flush()
    data = ("@@" + json.dumps(facts) + "\n").encode()
    while data:
        data = data[os.write(1, data):]


def wait_for(pred, what, timeout=10):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            sys.exit("timed out waiting for " + what)
        time.sleep(0.002)


def innermost(ident):
    f = sys._current_frames().get(ident)
    if f is None:
        return None, ""
    return f, linecache.getline(f.f_code.co_filename, f.f_lineno)


def parked(ident, cond=None):
    """Thread `ident` sleeps in Condition.wait (Event.wait, Queue.get, ...), its lock released."""
    f, line = innermost(ident)
    return (f is not None and f.f_code is _WAIT.__code__ and f.f_lineno > _RELEASED_AT
            and "waiter.acquire(" in line and (cond is None or f.f_locals.get("self") is cond))


def wait_parked(thread, cond=None):
    wait_for(lambda: parked(thread.ident, cond), "thread %r to park" % thread.name)


def wait_at(thread, function, text):
    """Until the thread's innermost Python frame is `function`, on a line containing `text`."""
    def there():
        f, line = innermost(thread.ident)
        return f is not None and f.f_code.co_name == function and text in line
    wait_for(there, "thread %r to reach %s (%s)" % (thread.name, function, text))


def hold_in_thread(name, enter, daemon=True):
    """Run enter(held, release) in thread `name`; return (thread, release) once it has
    signalled `held` and is parked (in release.wait(), typically)."""
    held, release = threading.Event(), threading.Event()
    t = threading.Thread(target=enter, args=(held, release), name=name, daemon=daemon)
    t.start()
    if not held.wait(10):
        sys.exit("thread %s never got ready" % name)
    wait_parked(t)
    return t, release


def exit_code(status):
    return os.waitstatus_to_exitcode(status)


def wait_child(pid, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return exit_code(status)
        time.sleep(0.005)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    sys.exit("child %d did not exit within %d s" % (pid, timeout))


def fork_once(child=None):
    """Fork; the child runs child() (if given) and leaves with os._exit. Returns
    (child pid, its exit code)."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            if child is not None:
                code = child() or 0
        except BaseException:
            code = 3
        finally:
            os._exit(code)
    return pid, wait_child(pid)
'''


class FAResult(Result):
    @property
    def facts(self):
        """The '@@' lines the program printed with emit(), merged into one dict."""
        out = {}
        for line in self.stdout.splitlines():
            if line.startswith("@@"):
                out.update(json.loads(line[2:]))
        return out


@pytest.fixture
def fa_program(run_python, schema_validator):
    """Run FA_PRELUDE, forkaudit.install(policy, json_path=REPORT, scan), then `body`.

    Every JSON record written must validate against the report schema. With
    install=False the body activates forkaudit itself (or not at all); with finish=False
    the program ends normally (exit handlers run) instead of with os._exit(0)."""
    def run(body, policy="record", scan="full", install=True, env=None, timeout=TIMEOUT, finish=True):
        setup = ("forkaudit.install(policy=%r, json_path=REPORT, scan=%r)\n" % (policy, scan)
                 if install else "")
        # finish: leave with os._exit(0) once the body is done, so that no exit handler
        # (logging.shutdown, thread joins) waits for a lock a parked thread still holds
        end = "\nsys.stdout.flush(); sys.stderr.flush(); os._exit(0)\n" if finish else ""
        plain = run_python(FA_PRELUDE + setup + textwrap.dedent(body) + end, env=env, timeout=timeout)
        result = FAResult(plain.proc, plain.records)
        for rec in result.records:
            errors = [e.message for e in schema_validator.iter_errors(rec)]
            assert not errors, (errors, rec)
        return result
    return run
