"""The report contract (report-format.md), the JSON file's guarantees, activation
through the environment and the .pth hook, and the command line."""
import json
import os
import stat
import subprocess
import sys
import venv

import pytest

from conftest import run_bounded

from forkcase import PRELUDE, snippet

HOLD_BOTH = '''
import ctypes, ctypes.util
LOCK = threading.Lock()
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
MUTEX = ctypes.create_string_buffer(64)
def enter(held, release):
    with LOCK:
        libc.pthread_mutex_lock(MUTEX)
        held.set(); release.wait(30)
        libc.pthread_mutex_unlock(MUTEX)
hold("both", enter)
quiet = threading.Thread(target=time.sleep, args=(2,), name="quiet", daemon=True); quiet.start()
'''


@pytest.mark.c_level
def test_records_follow_the_report_format(run_python, schema_validator):
    result = run_python(snippet(HOLD_BOTH + "fork_once()\nfork_once()\nprint('PID', os.getpid())\n"))
    assert result.returncode == 0, result
    parent = int(result.stdout.split("PID ")[1])
    assert len(result.children) == 2
    for rec in result.children:
        assert not list(schema_validator.iter_errors(rec))
        assert rec["forkaudit"] == 1 and rec["event"] == "fork" and rec["side"] == "child"
        assert rec["parent_pid"] == parent and rec["pid"] != parent
        assert rec["policy"] == "record"
        assert rec["python"] == "%d.%d.%d" % sys.version_info[:3]
        assert rec["platform"].startswith("linux-")
        assert rec["time"].endswith("Z")
        assert rec["forking_thread"]["name"] == "MainThread"
        names = [t["name"] for t in rec["threads"]]
        assert "MainThread" not in names and {"both", "quiet"} <= set(names)
        stack = rec["forking_thread"]["stack"]
        assert stack[0]["function"] == "<module>" and stack[-1]["function"] == "fork_once"  # outermost first
        kinds = sorted(h["kind"] for h in rec["hazards"])
        assert kinds == ["pthread_mutex", "python_lock"]
        for h in rec["hazards"]:
            assert h["owner"]["name"] == "both"
            assert h["address"].startswith("0x") and int(h["address"], 16) > 0


def test_json_file_is_private_appended_whole_and_never_followed(run_python, tmp_path):
    report = tmp_path / "r.jsonl"
    result = run_python(PRELUDE + '''
forkaudit.install(policy="record", json_path=%r)
for _ in range(6):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
pids = [os.wait() for _ in range(6)]
''' % str(report))
    assert result.returncode == 0, result
    assert stat.S_IMODE(os.stat(report).st_mode) == 0o600
    lines = report.read_text().splitlines()
    assert len(lines) == 6 and all(json.loads(line)["side"] == "child" for line in lines)

    target = tmp_path / "target"
    target.write_text("")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    result = run_python(PRELUDE + '''
try:
    forkaudit.install(policy="record", json_path=%r)
except forkaudit.SettingsError as e:
    print("REFUSED", e)
fork_once()
print("STILL RUNNING")
''' % str(link))
    assert "REFUSED" in result.stdout and "STILL RUNNING" in result.stdout
    assert target.read_text() == ""


@pytest.mark.parametrize("env,needle", [
    ({"FORKAUDIT": "bogus"}, "FORKAUDIT must be"),
    ({"FORKAUDIT": "1", "FORKAUDIT_SCAN": "sideways"}, "FORKAUDIT_SCAN must be"),
    ({"FORKAUDIT": "1", "FORKAUDIT_JSON": "/nonexistent-dir/x.jsonl"}, "cannot write the report file"),
])
def test_bad_settings_give_one_line_and_the_program_runs(run_python, env, needle):
    result = run_python("import os\npid = os.fork()\nif pid == 0:\n    os._exit(0)\nos.wait()\nprint('RAN')\n",
                        env=env)
    assert result.returncode == 0 and "RAN" in result.stdout
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("forkaudit: ") and needle in lines[0] and "unaudited" in lines[0]


@pytest.mark.c_level
def test_pth_activation_in_the_installed_environment(run_python, tmp_path):
    report = tmp_path / "env.jsonl"
    result = run_python(HOLD_BOTH.join([PRELUDE.replace("import forkaudit", ""), "fork_once()\n"]),
                        env={"FORKAUDIT": "record", "FORKAUDIT_JSON": str(report)})
    assert result.returncode == 0, result
    recs = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(recs) == 1 and len(recs[0]["hazards"]) == 2


def test_pth_activation_in_a_fresh_venv(tmp_path):
    wheel = os.environ.get("FORKAUDIT_WHEEL")
    if not wheel:
        pytest.skip("FORKAUDIT_WHEEL not set (scripts/test-all.sh sets it)")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = str(env_dir / "bin" / "python")
    subprocess.run([py, "-m", "pip", "install", "-q", wheel], check=True, timeout=300)
    report = tmp_path / "fresh.jsonl"
    code = ("import os, threading, time\n"
            "t = threading.Thread(target=time.sleep, args=(2,), daemon=True); t.start()\n"
            "pid = os.fork()\nif pid == 0:\n    os._exit(0)\nos.wait()\n")
    env = dict(os.environ, FORKAUDIT="record", FORKAUDIT_JSON=str(report))
    subprocess.run([py, "-c", code], check=True, timeout=60, env=env, cwd=str(tmp_path))
    assert len(report.read_text().splitlines()) == 1
    # without FORKAUDIT the .pth does nothing: no forkaudit import at all
    out = subprocess.run([py, "-c", "import sys; print('forkaudit' in sys.modules)"], capture_output=True,
                         text=True, timeout=60, env={k: v for k, v in env.items() if not k.startswith("FORKAUDIT")})
    assert out.stdout.strip() == "False"


def cli(*args, **kw):
    return run_bounded([sys.executable, "-m", "forkaudit", *args], text=True, timeout=120, **kw)


def test_run_passes_the_exit_status_through(tmp_path):
    assert cli("run", "--", sys.executable, "-c", "import sys; sys.exit(3)").returncode == 3
    assert cli("run", "--policy", "record", "--json", str(tmp_path / "r.jsonl"), "--",
               sys.executable, "-c", "pass").returncode == 0
    assert cli("run", "--", "/nonexistent/program").returncode == 127
    assert cli("run").returncode == 2
    console = os.path.join(os.path.dirname(sys.executable), "forkaudit")
    assert subprocess.run([console, "run", "--", sys.executable, "-c", "raise SystemExit(5)"],
                          timeout=120).returncode == 5


@pytest.mark.c_level
def test_run_audits_the_program_and_report_renders_it(tmp_path):
    report = tmp_path / "run.jsonl"
    program = tmp_path / "prog.py"
    program.write_text(PRELUDE.replace("import forkaudit", "") + HOLD_BOTH + "fork_once()\nfork_once()\n")
    env = dict(os.environ, FORKAUDIT_TEST_REPORT=str(tmp_path / "unused"))
    result = cli("run", "--policy", "record", "--json", str(report), "--", sys.executable, str(program), env=env)
    assert result.returncode == 0, result.stderr
    recs = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(recs) == 2
    text = cli("report", str(report)).stdout
    assert text.count("2 locks are held by threads that do not exist in the child") == 2
    assert "__main__.LOCK" in text and "owner: thread 'both'" in text
    assert text.strip().endswith("2 record(s), 2 with hazards")
    one = cli("report", str(report), "--pid", str(recs[0]["pid"])).stdout
    assert one.count("locks are held") == 1 and ("child %d" % recs[0]["pid"]) in one
    assert cli("report", str(tmp_path / "missing.jsonl")).returncode == 2
