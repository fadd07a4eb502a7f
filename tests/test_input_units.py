"""Units behind the hostile-input suite: settings, the report opener and appender, dict keys on
object paths (privacy), and the `forkaudit report` reader."""
import errno
import hashlib
import json
import os
import sys
import sysconfig

import pytest

from conftest import run_bounded

from forkaudit import naming, settings, sink
from forkaudit.commands import report as report_cmd
from forkaudit.errors import SettingsError

# -- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "  ", "0", "false", "FALSE", "off", "Off", "no", "NO", " no "])
def test_off_values(value):
    assert settings.from_environ({"FORKAUDIT": value, "FORKAUDIT_SCAN": "bad", "FORKAUDIT_JSON": "/no/where"}) is None


def test_on_values_control():
    s = settings.from_environ({"FORKAUDIT": "1"})
    assert (s.policy, s.json_path, s.scan, s.show_keys) == ("warn", None, "full", False)
    s = settings.from_environ({"FORKAUDIT": "Record", "FORKAUDIT_SHOW_KEYS": "on"})
    assert (s.policy, s.show_keys) == ("record", True)


def test_the_pth_line_knows_the_same_off_values():
    pth = os.path.join(sysconfig.get_paths()["purelib"], "forkaudit.pth")
    with open(pth) as f:
        text = f.read()
    assert text.count("\n") == 1 and text.startswith("import ")
    for value in settings.OFF_VALUES:
        assert '"%s"' % value in text
    assert "ignore_environment" in text


@pytest.mark.parametrize("environ", [
    {"FORKAUDIT": "x" * 100000}, {"FORKAUDIT": "1", "FORKAUDIT_SCAN": "y" * 100000},
    {"FORKAUDIT": "1", "FORKAUDIT_SHOW_KEYS": "z" * 100000}, {"FORKAUDIT": "1", "FORKAUDIT_JSON": "/" + "p" * 100000},
])
def test_a_huge_bad_value_is_not_echoed_whole(environ):
    with pytest.raises(SettingsError) as info:
        settings.from_environ(environ)
    assert len(str(info.value)) < 400 and "\n" not in str(info.value)
    assert "100000" in str(info.value) or "100001" in str(info.value) or "too long" in str(info.value)


def test_secure_execution_is_false_here_and_read_from_auxv():
    assert os.getuid() == os.geteuid() and os.getgid() == os.getegid()
    assert settings.secure_execution() is False
    with open("/proc/self/auxv", "rb") as f:
        assert len(f.read()) > 0  # so secure_execution did read something to decide


def test_auxv_secure_reads_the_at_secure_entry():
    def auxv(*pairs):
        return b"".join(k.to_bytes(8, sys.byteorder) + v.to_bytes(8, sys.byteorder) for k, v in pairs)
    assert settings.auxv_secure(auxv((6, 4096), (23, 1), (0, 0)), word=8) is True
    assert settings.auxv_secure(auxv((6, 4096), (23, 0), (0, 0)), word=8) is False
    assert settings.auxv_secure(auxv((6, 4096), (0, 0), (23, 1)), word=8) is False  # after AT_NULL
    assert settings.auxv_secure(b"\x17\x00", word=8) is False  # truncated


def test_environment_ignored_follows_sys_flags():
    code = "from forkaudit import settings; print(settings.environment_ignored())"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORKAUDIT")}
    plain = run_bounded([sys.executable, "-c", code], text=True, env=env, timeout=60)
    isolated = run_bounded([sys.executable, "-E", "-c", code], text=True, env=env, timeout=60)
    assert (plain.stdout, isolated.stdout) == ("False\n", "True\n")


# -- the report opener and appender ----------------------------------------------------------

def test_open_report_control_creates_a_private_file(tmp_path):
    path = str(tmp_path / "r.jsonl")
    fd, size = sink.open_report(path)
    os.close(fd)
    assert size == 0 and oct(os.stat(path).st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("mode,words", [(0o620, "its group"), (0o602, "others"), (0o666, "group and others")])
def test_open_report_refuses_files_others_can_write(tmp_path, mode, words):
    path = tmp_path / "r.jsonl"
    path.write_text("")
    os.chmod(path, mode)
    with pytest.raises(sink.ReportPathError) as info:
        sink.open_report(str(path))
    assert ("writable by %s" % words) in str(info.value)


def test_append_json_writes_one_whole_line(tmp_path):
    path = str(tmp_path / "r.jsonl")
    assert sink.append_json(path, {"forkaudit": 1, "text": "a\nb"})
    assert sink.append_json(path, {"forkaudit": 1, "n": 2})
    with open(path) as f:
        assert [json.loads(line) for line in f] == [{"forkaudit": 1, "text": "a\nb"}, {"forkaudit": 1, "n": 2}]


class ShortWrite:
    """os.write that writes only `n` bytes of the next call, then lets another writer append."""

    def __init__(self, n, other=None):
        self.n, self.other, self.real = n, other, os.write

    def __call__(self, fd, data):
        done = self.real(fd, data[:self.n])
        if self.other is not None:
            with open(self.other[0], "ab") as f:
                f.write(self.other[1])
        return done


@pytest.mark.parametrize("concurrent", [False, True])
def test_a_short_write_is_blanked_in_place(tmp_path, monkeypatch, concurrent):
    path = str(tmp_path / "r.jsonl")
    first = sink.record_line({"forkaudit": 1, "n": 1})
    with open(path, "wb") as f:
        f.write(first)
    os.chmod(path, 0o600)
    other = b'{"forkaudit":1,"n":"other"}\n'
    monkeypatch.setattr(os, "write", ShortWrite(10, (path, other) if concurrent else None))
    fd, size = sink.open_report(path)
    try:
        why = sink._append_line(fd, sink.record_line({"forkaudit": 1, "n": 2}), size)
    finally:
        os.close(fd)
    monkeypatch.undo()
    assert "short write (10 of" in why and "blanked out" in why
    with open(path, "rb") as f:
        data = f.read()
    assert data == first + b" " * 10 + (other if concurrent else b"")
    assert [json.loads(line) for line in data.splitlines() if line.strip()] == \
        [{"forkaudit": 1, "n": 1}] + ([{"forkaudit": 1, "n": "other"}] if concurrent else [])


def test_write_errors_lose_the_record_with_one_line(tmp_path, monkeypatch, capfd):
    path = str(tmp_path / "r.jsonl")

    real = os.write

    def enospc(fd, data):
        if fd == 2:
            return real(fd, data)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(sink, "_said", False)
    monkeypatch.setattr(sink, "_flag", None)
    monkeypatch.setattr(os, "write", enospc)
    assert sink.append_json(path, {"forkaudit": 1}) is False
    assert sink.append_json(path, {"forkaudit": 1}) is False
    monkeypatch.undo()
    err = capfd.readouterr().err
    assert err.count("forkaudit:") == 1 and "No space left on device; records are being lost" in err
    assert os.path.getsize(path) == 0


def test_python_ignores_sigxfsz():
    import signal
    assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN


# -- dict keys on object paths (privacy) -------------------------------------------------------

def short_hash(data):
    return hashlib.sha256(data).hexdigest()[:6]


@pytest.mark.parametrize("key,text", [
    ("db", "['db']"), ("app.cache-2", "['app.cache-2']"), ("_x", "['_x']"), ("a" * 32, "['%s']" % ("a" * 32)),
    (3, "[3]"), (-7, "[-7]"), (True, "[True]"), (None, "[None]"),
])
def test_short_identifier_like_keys_and_numbers_are_shown(key, text):
    assert naming.key_text(key, show=False) == text


@pytest.mark.parametrize("key", ["postgres://admin:S3cr3t@db/prod", "a" * 33, "", "1abc", "has space", "é", "\udcff"])
def test_other_string_keys_are_a_type_and_a_short_hash(key):
    text = naming.key_text(key, show=False)
    assert text == "[<str #%s>]" % short_hash(key.encode("utf-8", "surrogatepass"))
    assert naming.key_text(key, show=True) == "[%r]" % (key,)


def test_different_secret_keys_differ_and_the_same_key_is_stable():
    a = naming.key_text("postgres://admin:S3cr3t@db/prod", show=False)
    b = naming.key_text("postgres://admin:S3cr3u@db/prod", show=False)
    assert a != b and a == naming.key_text("postgres://admin:S3cr3t@db/prod", show=False)


def test_other_key_types_are_named_without_running_their_code():
    ran = []

    class Evil(str):
        def __repr__(self):
            ran.append("repr")
            return "evil"

        def __hash__(self):
            return 1

        def encode(self, *a):
            ran.append("encode")
            return b""

    class Meta(type):
        def __getattribute__(cls, name):
            ran.append(name)
            return type.__getattribute__(cls, name)

    class Key(metaclass=Meta):
        pass

    evil, key = Evil("db"), Key()
    del ran[:]
    assert naming.key_text(evil, show=True) == "[<Evil>]"
    assert naming.key_text(key, show=True) == "[<Key>]"
    assert naming.key_text((1, "x"), show=False) == "[<tuple>]"
    assert naming.key_text(10 ** 30, show=False).startswith("[<int #")
    assert naming.key_text(1.5, show=False).startswith("[<float #")
    assert naming.key_text(b"token", show=False).startswith("[<bytes #")
    assert naming.key_text(b"token", show=True) == "[b'token']"
    assert ran == []


SECRET = "postgres://admin:S3cr3t@db/prod"
POOL_PROGRAM = '''
class Conn:
    def __init__(self):
        self.lock = threading.Lock()
URL = %r  # from the program's configuration, say
POOL = {URL: Conn()}
def enter(held, release):
    with POOL[URL].lock:
        held.set(); release.wait(30)
thread, release = hold_in_thread("user", enter)
fork_once()
''' % SECRET


@pytest.mark.parametrize("show", [False, True])
def test_a_secret_key_stays_out_of_the_report_unless_asked(fa_program, tmp_path, show):
    setup = "forkaudit.install(policy='warn', json_path=REPORT, show_keys=%r)\n" % show
    result = fa_program(setup + POOL_PROGRAM, install=False)
    [rec] = result.children
    [h] = rec["hazards"]
    if show:
        assert h["object"]["path"] == "__main__.POOL[%r].lock" % SECRET
    else:
        assert h["object"]["path"] == "__main__.POOL[<str #%s>].lock" % short_hash(SECRET.encode())
        with open(tmp_path / "report.jsonl") as f:
            assert "S3cr3t" not in f.read()
        assert "S3cr3t" not in result.stderr and "S3cr3t" not in result.stdout


# -- the report reader -----------------------------------------------------------------------

GOOD = {"forkaudit": 1, "event": "fork", "side": "child", "pid": 11, "parent_pid": 10, "policy": "record",
        "forking_thread": {"name": "MainThread", "native_id": 10, "stack": [
            {"file": "m.py", "line": 3, "function": "<module>"}]},
        "threads": [], "reinitialized": [],
        "hazards": [{"kind": "python_lock", "object": {"type": "_thread.lock", "path": "__main__.L"},
                     "owner": {"name": "t", "native_id": 12}, "address": "0x10", "library": None,
                     "symbol": None, "held_at": [{"file": "m.py", "line": 5, "function": "f"}], "why": "held"}]}


def bad(**changes):
    rec = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        if value is KeyError:
            del rec[key]
        else:
            rec[key] = value
    return json.dumps(rec).encode()


BAD_LINES = [
    (bad(hazards="x"), '"hazards" is a string, not an array'),
    (bad(hazards=[1]), "hazards[0] is an integer, not an object"),
    (bad(hazards=KeyError), 'the "hazards" key is missing'),
    (bad(pid="12"), '"pid" is a string'),
    (bad(pid=True), '"pid" is a boolean'),
    (bad(forking_thread="t"), '"forking_thread" is a string'),
    (bad(forkaudit=2), "format version 2 is not supported"),
    (bad(hazards=[dict(GOOD["hazards"][0], object={"type": 5})]), "hazards[0].object.type is an integer"),
    (bad(reinitialized=[dict(GOOD["hazards"][0], held_at=[{"line": "3"}])]), "reinitialized[0].held_at[0].line"),
    (b'{"hello": 1}', 'no "forkaudit" key'),
    (b"[1, 2]", "an array, not a forkaudit record"),
    (b"not json at all", "not JSON"),
    (b'{"forkaudit": 1, "pid": 3, "hazards": [], "th\xffreads": []}', "not UTF-8 (byte"),
    (b"[" * 100000, "not JSON"),
]


def run_report(path, *args):
    proc = run_bounded([sys.executable, "-m", "forkaudit", "report", str(path), *args], timeout=120)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def test_report_names_each_bad_line_and_goes_on(tmp_path):
    path = tmp_path / "r.jsonl"
    lines = [json.dumps(GOOD).encode()]
    for line, _why in BAD_LINES:
        lines += [line, b"", b"   "]
    lines.append(json.dumps(GOOD).encode())
    path.write_bytes(b"\n".join(lines) + b"\n")
    rc, out, err = run_report(path)
    assert rc == 1, err
    assert out.count("1 lock is held") == 2 and out.endswith("2 record(s), 2 with hazards, %d bad line(s)\n"
                                                                % len(BAD_LINES))
    said = err.splitlines()
    assert len(said) == len(BAD_LINES), err
    for i, ((_line, why), message) in enumerate(zip(BAD_LINES, said)):
        assert ("line %d:" % (2 + 3 * i)) in message and why in message, (why, message)
        assert len(message) < 500


def test_report_control_all_good_is_status_0(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n" + json.dumps(dict(GOOD, hazards=[], pid=12)) + "\n")
    rc, out, err = run_report(path, "--all")
    assert (rc, err) == (0, "")
    assert out.endswith("2 record(s), 1 with hazards\n") and "pid 12 (parent 10" in out


def test_report_skips_an_over_long_line_without_holding_it(tmp_path, monkeypatch):
    monkeypatch.setattr(report_cmd, "MAX_LINE", 1000)
    path = tmp_path / "r.jsonl"
    path.write_bytes(json.dumps(GOOD).encode()[:500] + b"x" * 5000 + b"\n" + json.dumps(GOOD).encode() + b"\n")
    errors = []

    class Err:
        write = errors.append
    reader = report_cmd.Reader(str(path), err=Err())
    got = list(reader.records())
    assert [n for n, _rec in got] == [2] and reader.bad == 1
    assert "line 1: longer than 1000 bytes" in errors[0]


def test_report_streams_a_large_file_in_little_memory(tmp_path):
    """60 MB of records: the reader keeps one line at a time (the old one kept them all)."""
    path = tmp_path / "big.jsonl"
    rec = dict(GOOD, hazards=[], threads=[{"name": "t%d" % i, "native_id": i, "stack": [
        {"file": "/some/where/module_%d.py" % j, "line": j, "function": "f%d" % j} for j in range(8)]}
        for i in range(8)])
    line = (json.dumps(rec) + "\n").encode()
    with open(path, "wb") as f:
        for _ in range((60 << 20) // len(line)):
            f.write(line)
    # VmHWM: the peak of this process' own memory since its exec (ru_maxrss would also count
    # the pytest process it was forked from)
    code = ("import sys\nfrom forkaudit.cli import main\nrc = main(['report', %r])\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
            "print('MAXRSS', hwm.split()[1])\nsys.exit(rc)\n" % str(path))
    proc = run_bounded([sys.executable, "-c", code], text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    maxrss_kb = int(proc.stdout.split("MAXRSS ")[1])
    assert maxrss_kb < 80 * 1024, "the report command used %d MB for a 60 MB file" % (maxrss_kb // 1024)
    assert "0 with hazards" in proc.stdout


@pytest.mark.parametrize("failing", ["close", "fstat"])
def test_close_or_fstat_errors_lose_the_record_never_raise(tmp_path, monkeypatch, capfd, failing):
    """append_json never raises for I/O (policy.deliver relies on it): an error from close(2)
    (NFS reports a failed write there) or fstat(2) loses the record with one line."""
    path = str(tmp_path / "r.jsonl")
    assert sink.append_json(path, {"forkaudit": 1, "n": 1})   # control: both work
    real, failed = getattr(os, failing), []

    def eio(fd):  # the first call only (the report's fd): pytest's own capture uses both too
        result = real(fd)
        if failed:
            return result
        failed.append(fd)
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    monkeypatch.setattr(sink, "_said", False)
    monkeypatch.setattr(sink, "_flag", None)
    monkeypatch.setattr(os, failing, eio)
    try:
        assert sink.append_json(path, {"forkaudit": 1, "n": 2}) is False
    finally:
        monkeypatch.undo()
    err = capfd.readouterr().err
    assert err.count("forkaudit:") == 1 and "Input/output error; records are being lost" in err, err
