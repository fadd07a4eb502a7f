"""Hostile input: every environment variable and command-line option with bad values, every
kind of bad report path, resource limits at the edge.

The rule each case checks: the program's own output and exit status are exactly what they
are without forkaudit, plus at most one line from forkaudit (exactly one where a setting is
refused or records are lost). Every program runs in a subprocess with a timeout, so a hang
(a FIFO at the report path, say) fails the test instead of CI.
"""
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import sysconfig
import textwrap

import pytest

from conftest import run_bounded

TIMEOUT = 60

# A program that forks three children (each exits 7), prints, writes its own stderr line and
# exits 3: what it does must not change under forkaudit.
PROGRAM = r'''
import os, sys
for i in range(3):
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    _, status = os.waitpid(pid, 0)
    print("child", i, os.waitstatus_to_exitcode(status), flush=True)
sys.stderr.write("the program's own stderr line\n")
sys.exit(3)
'''

# Whether forkaudit was imported at all (for the values that mean off), and whether it is active.
MODULES = ('import sys; fa = sys.modules.get("forkaudit")\n'
           'print(fa is not None, fa is not None and fa.installed() is not None)\n')

HUGE = "x" * 100000


def short_id(value):
    """Test ids: a huge value is named by its size, not printed whole."""
    text = repr(value)
    return text if len(text) <= 40 else "%s...(%d chars)" % (text[:20], len(text))
NOT_UTF8 = b"r\xff\xfecord"


def clean_env(extra=None):
    env = {k: v for k, v in os.environb.items() if not k.startswith(b"FORKAUDIT")}
    for k, v in (extra or {}).items():
        env[os.fsencode(k)] = os.fsencode(v) if isinstance(v, str) else v
    return env


class Run:
    def __init__(self, proc):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr.decode("utf-8", "surrogateescape")
        lines = self.stderr.splitlines()
        self.ours = [line for line in lines if line.startswith("forkaudit")]
        self.theirs = [line for line in lines if not line.startswith("forkaudit")]

    def __repr__(self):
        return "<Run rc=%s stdout=%r stderr=%r>" % (self.returncode, self.stdout[-500:], self.stderr[-2000:])


def run(code, env=None, args=(), python=sys.executable, cwd=None, wrap=(), preexec_fn=None):
    proc = run_bounded([*wrap, python, *args, "-c", code], env=clean_env(env), cwd=cwd,
                       timeout=TIMEOUT, preexec_fn=preexec_fn)
    return Run(proc)


_baselines = {}


def baseline(code=PROGRAM, args=()):
    key = (code, tuple(args))
    if key not in _baselines:
        _baselines[key] = run(code, args=args)
    return _baselines[key]


def same_as_without(result, code=PROGRAM, lines=0, args=()):
    """The program behaved exactly as without forkaudit, and forkaudit said `lines` lines."""
    base = baseline(code, args)
    assert result.returncode == base.returncode, result
    assert result.stdout == base.stdout, result
    assert result.theirs == base.theirs, result
    assert len(result.ours) == lines, result
    for line in result.ours:
        assert len(line) < 500, "forkaudit echoed too much: %d characters" % len(line)
        assert "\\x00" not in line


def records(path):
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        return [json.loads(line) for line in f if line.strip()]


# -- positive controls --------------------------------------------------------------------

def test_control_a_good_setting_audits_every_child_silently(tmp_path):
    report = tmp_path / "r.jsonl"
    result = run(PROGRAM, {"FORKAUDIT": "record", "FORKAUDIT_JSON": str(report)})
    same_as_without(result, lines=0)
    assert len(records(report)) == 3
    assert oct(os.stat(report).st_mode & 0o777) == "0o600"


# -- FORKAUDIT_* values --------------------------------------------------------------------

@pytest.mark.parametrize("value", ["", " ", "0", "false", "FALSE", "Off", "no", " No "])
def test_off_values_are_silent_and_import_nothing(value):
    result = run(MODULES, {"FORKAUDIT": value, "FORKAUDIT_JSON": "/nonexistent/dir/r.jsonl"})
    assert result.stdout == b"False False\n" and result.ours == [] and result.returncode == 0, result


def test_control_on_value_imports_and_checks():
    result = run(MODULES, {"FORKAUDIT": "1", "FORKAUDIT_JSON": "/nonexistent/dir/r.jsonl"})
    assert result.stdout == b"True False\n" and len(result.ours) == 1, result
    assert "No such file or directory" in result.ours[0] and "running unaudited" in result.ours[0]
    result = run(MODULES, {"FORKAUDIT": "1"})
    assert result.stdout == b"True True\n" and result.ours == [], result


@pytest.mark.parametrize("var,value", [
    ("FORKAUDIT", "maybe"), ("FORKAUDIT", "yes"), ("FORKAUDIT", HUGE), ("FORKAUDIT", NOT_UTF8),
    ("FORKAUDIT", "warn\nrecord"), ("FORKAUDIT", "\x1b[31mred"),
    ("FORKAUDIT_SCAN", "most"), ("FORKAUDIT_SCAN", HUGE), ("FORKAUDIT_SCAN", b"\xff"),
    ("FORKAUDIT_SHOW_KEYS", "maybe"), ("FORKAUDIT_SHOW_KEYS", HUGE), ("FORKAUDIT_SHOW_KEYS", b"\xc3"),
    ("FORKAUDIT_JSON", "/tmp/" + HUGE), ("FORKAUDIT_JSON", "/nonexistent/" + "\n" * 3 + "r.jsonl"),
], ids=short_id)
def test_a_bad_value_is_one_short_line_and_the_program_runs_unaudited(var, value, tmp_path):
    env = {"FORKAUDIT": "record", "FORKAUDIT_JSON": str(tmp_path / "r.jsonl")}
    env[var] = value
    result = run(PROGRAM, env)
    same_as_without(result, lines=1)
    assert "running unaudited" in result.ours[0]
    assert result.ours[0].count("x") < 300
    assert records(tmp_path / "r.jsonl") == []


@pytest.mark.parametrize("env", [
    {"FORKAUDIT": " RECORD "}, {"FORKAUDIT": "record", "FORKAUDIT_SCAN": ""},
    {"FORKAUDIT": "record", "FORKAUDIT_SCAN": "OFF"}, {"FORKAUDIT": "record", "FORKAUDIT_SHOW_KEYS": ""},
    {"FORKAUDIT": "record", "FORKAUDIT_SHOW_KEYS": "Yes"},
])
def test_odd_but_good_values_work(env, tmp_path):
    report = tmp_path / "r.jsonl"
    result = run(PROGRAM, dict(env, FORKAUDIT_JSON=str(report)))
    same_as_without(result, lines=0)
    assert len(records(report)) == 3


def test_an_empty_report_path_means_no_report(tmp_path):
    result = run(PROGRAM, {"FORKAUDIT": "record", "FORKAUDIT_JSON": ""}, cwd=str(tmp_path))
    same_as_without(result, lines=0)
    assert os.listdir(tmp_path) == []


def test_a_non_utf8_report_path_is_used_as_bytes(tmp_path):
    path = os.fsencode(str(tmp_path)) + b"/r\xff.jsonl"
    result = run(PROGRAM, {"FORKAUDIT": "record", "FORKAUDIT_JSON": path})
    same_as_without(result, lines=0)
    assert len(records(path)) == 3


# -- python -E / -I and privileged exec ----------------------------------------------------

@pytest.mark.parametrize("flag", ["-E", "-I"])
def test_python_E_and_I_ignore_the_environment(flag):
    env = {"FORKAUDIT": "record", "FORKAUDIT_JSON": "/nonexistent/dir/r.jsonl"}
    result = run(MODULES, env, args=[flag])
    assert result.stdout == b"False False\n" and result.ours == [] and result.returncode == 0, result
    control = run(MODULES, env)
    assert control.stdout == b"True False\n" and len(control.ours) == 1, control


@pytest.fixture
def fake_venv(tmp_path):
    """A venv-like folder with a copy of this interpreter's binary (so it can be made set-group-ID)
    that sees the installed forkaudit (its site-packages added by a .pth)."""
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    root = tmp_path / "venv"
    (root / "bin").mkdir(parents=True)
    binary = root / "bin" / "python3"
    shutil.copy2(base, binary)
    (root / "pyvenv.cfg").write_text("home = %s\ninclude-system-site-packages = false\n" % os.path.dirname(base))
    site = root / "lib" / ("python%d.%d" % sys.version_info[:2]) / "site-packages"
    site.mkdir(parents=True)
    (site / "zz_forkaudit_tests.pth").write_text("import site; site.addsitedir(%r)\n" % sysconfig.get_paths()["purelib"])
    os.chmod(tmp_path, 0o755)
    return str(binary)


def test_a_setgid_process_ignores_the_environment(fake_venv):
    if os.geteuid() != 0:
        pytest.skip("making a set-group-ID binary of another group needs root")
    env = {"FORKAUDIT": "record", "FORKAUDIT_JSON": "/nonexistent/dir/r.jsonl"}
    control = run(MODULES, env, python=fake_venv)
    assert control.stdout == b"True False\n" and len(control.ours) == 1, control   # the copy works
    control = run(MODULES, {"FORKAUDIT": "record"}, python=fake_venv)
    assert control.stdout == b"True True\n" and control.ours == [], control
    os.chown(fake_venv, -1, 65534)
    os.chmod(fake_venv, 0o2755)
    code = "import os; assert os.getegid() != os.getgid(), 'not set-group-ID'\n" + MODULES
    result = run(code, env, python=fake_venv)
    assert result.ours == [] and result.returncode == 0, result
    assert result.stdout in (b"True False\n", b"False False\n"), result  # never activated


# -- bad report paths ------------------------------------------------------------------------

def _other_owner(path):
    if os.geteuid() != 0:
        pytest.skip("a file owned by another user needs root to create")
    path.write_text("")
    os.chown(path, 65534, 65534)
    os.chmod(path, 0o600)


BAD_PATHS = {
    "fifo": (lambda p: os.mkfifo(p), "a FIFO"),
    "directory": (lambda p: p.mkdir(), "a directory"),
    "symlink": (lambda p: os.symlink(str(p) + ".target", p) or (p.parent / (p.name + ".target")).write_text(""),
                "symbolic link"),
    "dangling symlink": (lambda p: os.symlink(str(p) + ".nowhere", p), "symbolic link"),
    "group-writable": (lambda p: p.write_text("") or os.chmod(p, 0o620), "writable by its group"),
    "other-writable": (lambda p: p.write_text("") or os.chmod(p, 0o602), "writable by others"),
    "other owner": (_other_owner, "owned by uid 65534"),
    "socket": (None, "a socket"),
    "missing directory": (lambda p: None, "No such file or directory"),
}


def _make_socket(path):
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    return s


@pytest.mark.parametrize("kind", sorted(BAD_PATHS))
def test_a_bad_report_path_is_refused_at_start_up(kind, tmp_path):
    make, words = BAD_PATHS[kind]
    path = tmp_path / ("missing" if kind == "missing directory" else "") / "r.jsonl"
    keep = _make_socket(path) if kind == "socket" else make(path)
    before = os.lstat(path) if os.path.lexists(path) else None
    result = run(PROGRAM, {"FORKAUDIT": "record", "FORKAUDIT_JSON": str(path)})
    same_as_without(result, lines=1)
    assert words in result.ours[0] and "running unaudited" in result.ours[0], result
    if before is not None:  # left as it was: not written to, not followed, not re-moded
        after = os.lstat(path)
        assert (after.st_mode, after.st_uid, after.st_size) == (before.st_mode, before.st_uid, before.st_size)
    del keep


def test_dev_full_is_refused_as_a_device():
    result = run(PROGRAM, {"FORKAUDIT": "record", "FORKAUDIT_JSON": "/dev/full"})
    same_as_without(result, lines=1)
    assert "a character device, not a regular file" in result.ours[0]


def test_a_fifo_with_a_reader_is_refused_too(tmp_path):
    path = tmp_path / "r.jsonl"
    os.mkfifo(path)
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        result = run(PROGRAM, {"FORKAUDIT": "record", "FORKAUDIT_JSON": str(path)})
        same_as_without(result, lines=1)
        assert "a FIFO" in result.ours[0]
        try:
            data = os.read(reader, 100)
        except BlockingIOError:
            data = b""
        assert data == b""  # nothing was written into it
    finally:
        os.close(reader)


def _unshare_mount():
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k none /mnt 2>/dev/null || "
                            "mount -t tmpfs -o size=64k none /tmp"], capture_output=True, timeout=TIMEOUT)
    return probe.returncode == 0


MOUNT_REASON = "mounting a tmpfs in a private mount namespace needs root and unshare(1) (CAP_SYS_ADMIN)"


def test_a_read_only_filesystem_is_one_line(tmp_path):
    if not _unshare_mount():
        pytest.skip(MOUNT_REASON)
    mnt = tmp_path / "ro"
    mnt.mkdir()
    wrap = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o ro,size=64k none "$0" && exec "$@"', str(mnt)]
    path = str(mnt / "r.jsonl")
    result = run(PROGRAM, {"FORKAUDIT": "record", "FORKAUDIT_JSON": path}, wrap=wrap)
    same_as_without(result, lines=1)
    assert "Read-only file system" in result.ours[0]
    control = run(PROGRAM, {"FORKAUDIT": "record", "FORKAUDIT_JSON": path},
                  wrap=[w.replace("ro,", "") for w in wrap])
    same_as_without(control, lines=0)


# -- the path changes after start-up: each child refuses it, one line for all ----------------

SWAP = r'''
import os, sys
path = os.environ["FORKAUDIT_JSON"]
os.unlink(path)
KIND
for i in range(3):
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    _, status = os.waitpid(pid, 0)
    print("child", i, os.waitstatus_to_exitcode(status), flush=True)
sys.exit(3)
'''

SWAPS = {
    "fifo": ("os.mkfifo(path)", "a FIFO"),
    "fifo whose reader went away": ("os.mkfifo(path); os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))", "a FIFO"),
    "directory": ("os.mkdir(path)", "a directory"),
    "symlink to /dev/full": ("os.symlink('/dev/full', path)", "symbolic link"),
    "other-writable file": ("os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)); os.chmod(path, 0o666)",
                            "writable by group and others"),
    "a regular file again": ("open(path, 'w').close(); os.chmod(path, 0o600)", None),
}


@pytest.mark.parametrize("kind", sorted(SWAPS))
def test_a_path_swapped_after_start_up_never_blocks_or_kills_a_child(kind, tmp_path):
    code, words = SWAPS[kind]
    program = SWAP.replace("KIND", code)
    path = tmp_path / "r.jsonl"
    path.write_text("")
    base = run(program, {"FORKAUDIT_JSON": str(path)})
    if os.path.isdir(path):
        os.rmdir(path)
    else:
        os.unlink(path)
    path.write_text("")
    os.chmod(path, 0o600)
    result = run(program, {"FORKAUDIT": "record", "FORKAUDIT_JSON": str(path)})
    assert (result.returncode, result.stdout, result.theirs) == (base.returncode, base.stdout, base.theirs)
    assert b"child 2 7" in result.stdout
    if words is None:  # the control
        assert result.ours == [] and len(records(path)) == 3, result
    else:
        assert len(result.ours) == 1, result   # once for all three children
        assert words in result.ours[0] and "records are being lost" in result.ours[0]


# -- resource limits -------------------------------------------------------------------------

def _good_line():
    return json.dumps({"forkaudit": 1, "note": "written by the test"}) + "\n"


def test_the_file_size_limit_leaves_whole_lines_and_one_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(_good_line())
    os.chmod(path, 0o600)
    size = os.path.getsize(path)

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 200, resource.RLIM_INFINITY))

    result = run(PROGRAM, {"FORKAUDIT": "record", "FORKAUDIT_JSON": str(path)}, preexec_fn=limit)
    same_as_without(result, lines=1)  # SIGXFSZ killed nobody; one line for the three children
    assert "RLIMIT_FSIZE" in result.ours[0] and "records are being lost" in result.ours[0]
    assert path.read_text() == _good_line()  # no half record

    def roomy():
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + (1 << 20), resource.RLIM_INFINITY))

    control = run(PROGRAM, {"FORKAUDIT": "record", "FORKAUDIT_JSON": str(path)}, preexec_fn=roomy)
    same_as_without(control, lines=0)
    assert len(records(path)) == 4


DISK_FULL = r'''
import json, os, subprocess, sys
mnt, program = sys.argv[1], sys.argv[2]
path = os.path.join(mnt, "r.jsonl")
with open(path, "w") as f:  # a whole line, then room for 300 more bytes in the file's last page
    line = json.dumps({"forkaudit": 1, "pad": "p" * (4096 - 300 - 40)})
    f.write(line + "\n")
os.chmod(path, 0o600)
size = os.path.getsize(path)
with open(os.path.join(mnt, "filler"), "wb", buffering=0) as f:  # every other page of the tmpfs
    try:
        while True:
            f.write(b"\0" * 4096)
    except OSError:
        pass
env = dict(os.environ, FORKAUDIT="record", FORKAUDIT_JSON=path)
proc = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True)
data = open(path, "rb").read()
print(json.dumps({"rc": proc.returncode, "stdout": proc.stdout.decode(), "stderr": proc.stderr.decode(),
                  "size_before": size, "data": data.decode("latin-1")}))
'''


def test_a_short_write_on_a_full_disk_is_blanked_not_torn(tmp_path):
    if not _unshare_mount():
        pytest.skip(MOUNT_REASON)
    mnt = tmp_path / "small"
    mnt.mkdir()
    script = tmp_path / "driver.py"
    script.write_text(DISK_FULL)
    proc = subprocess.run(["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size=32k none "$0" && exec "$@"',
                           str(mnt), sys.executable, str(script), str(mnt), PROGRAM],
                          env=clean_env(), capture_output=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    base = baseline()
    assert out["rc"] == base.returncode and out["stdout"].encode() == base.stdout
    ours = [line for line in out["stderr"].splitlines() if line.startswith("forkaudit")]
    assert len(ours) == 1 and "records are being lost" in ours[0], out["stderr"]
    assert "short write" in ours[0]  # the first child's write was short: 300 of its bytes landed
    data = out["data"]
    assert len(data) > out["size_before"]  # ... and they are still there, blanked
    assert data[out["size_before"]:].strip(" ") == ""
    for line in data.splitlines():
        if line.strip():
            json.loads(line)


NOFILE = r'''
import os, resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
held = []
try:
    while True:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
for i in range(3):
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    _, status = os.waitpid(pid, 0)
    print("child", i, os.waitstatus_to_exitcode(status), flush=True)
for fd in held:
    os.close(fd)
pid = os.fork()
if pid == 0:
    os._exit(7)
os.waitpid(pid, 0)
print("done", flush=True)
sys.exit(3)
'''


def test_no_file_descriptor_left_for_the_report_is_one_line(tmp_path):
    path = tmp_path / "r.jsonl"
    result = run(NOFILE, {"FORKAUDIT": "record", "FORKAUDIT_JSON": str(path)})
    same_as_without(result, NOFILE, lines=1)
    # either the record cannot be appended, or (FORKAUDIT set, nothing imported until the first
    # fork) forkaudit itself cannot be loaded: one line naming the cause either way
    assert "Too many open files" in result.ours[0], result
    assert len(records(path)) >= 1  # the fork after the fds were given back is audited


AS_LIMIT = r'''
import os, resource, sys
extra = MEGABYTES << 20
vm = [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize:")][0]
resource.setrlimit(resource.RLIMIT_AS, (vm + extra, resource.RLIM_INFINITY))
for i in range(3):
    try:
        pid = os.fork()
    except (OSError, MemoryError) as e:
        print("fork", i, "failed", type(e).__name__, flush=True)
        continue
    if pid == 0:
        os._exit(7)
    _, status = os.waitpid(pid, 0)
    print("child", i, os.waitstatus_to_exitcode(status), flush=True)
resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
pid = os.fork()
if pid == 0:
    os._exit(7)
os.waitpid(pid, 0)
print("done", flush=True)
sys.exit(3)
'''


@pytest.mark.parametrize("megabytes", [1, 4, 256])
def test_address_space_at_its_limit_is_one_line(tmp_path, megabytes):
    # RLIMIT_AS a few MB above what the program maps: forkaudit (imported at the first fork)
    # would take the program's last megabytes; it steps aside with one line, and the program
    # runs as without it (no MemoryError in its own code or its finalizers)
    path = tmp_path / "r.jsonl"
    code = AS_LIMIT.replace("MEGABYTES", str(megabytes))
    result = run(code, {"FORKAUDIT": "record", "FORKAUDIT_JSON": str(path)})
    if megabytes == 256:
        same_as_without(result, code, lines=0)     # the control: room enough, every fork audited
        assert len(records(path)) == 4, result
        return
    same_as_without(result, code, lines=1)
    assert "RLIMIT_AS" in result.ours[0] and "MB free" in result.ours[0], result
    assert len(records(path)) == 1, result    # the fork after the limit was lifted is audited


# -- the command line --------------------------------------------------------------------------

def forkaudit_cli(*args, env=None, timeout=TIMEOUT):
    proc = run_bounded([sys.executable, "-m", "forkaudit", *args], env=clean_env(env), timeout=timeout)
    return Run(proc)


@pytest.mark.parametrize("args,words", [
    (["--policy", HUGE], "policy must be one of"), (["--policy", ""], "policy must be one of"),
    (["--scan", HUGE], "scan must be one of"), (["--scan", "most"], "scan must be one of"),
    (["--json", "/tmp/" + HUGE], "cannot write the report file"), (["--json", "/dev/full"], "character device"),
    (["--policy", os.fsdecode(b"\xff\xfe")], "policy must be one of"),
    (["--json", ""], "the report path is empty"), (["--" + HUGE], "unrecognized arguments"),
], ids=short_id)
def test_run_refuses_bad_options_in_short_words(args, words):
    result = forkaudit_cli("run", *args, "--", sys.executable, "-c", "print('ran')")
    assert result.returncode == 2 and result.stdout == b"", result
    assert words in result.stderr and len(result.stderr) < 1500, result
    assert result.stderr.count("x") < 300


def test_run_control_and_show_keys(tmp_path):
    report = tmp_path / "r.jsonl"
    result = forkaudit_cli("run", "--policy", "RECORD", "--json", str(report), "--show-keys", "--",
                           sys.executable, "-c", "import os; print(os.environ['FORKAUDIT_SHOW_KEYS']);" + PROGRAM)
    assert result.returncode == 3 and result.stdout.startswith(b"1\nchild 0 7"), result
    assert len(records(report)) == 3


@pytest.mark.parametrize("args", [["/nonexistent/" + HUGE], ["--pid", "x", "r"], [os.fsdecode(b"/tmp/\xff/none")],
                                  ["--pid", "9" * 100000, "r"], ["r", "--" + HUGE], [""]], ids=short_id)
def test_report_refuses_bad_arguments_in_short_words(args):
    result = forkaudit_cli("report", *args)
    assert result.returncode == 2 and len(result.stderr) < 1500, result
    assert result.stdout == b"" and "Traceback" not in result.stderr, result


def test_a_huge_unknown_command_is_refused_in_short_words():
    result = forkaudit_cli("x" * 100000)
    assert result.returncode == 2 and len(result.stderr) < 1500, result
