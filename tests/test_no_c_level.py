"""Where C-level detection cannot run (musl, an unverified glibc layout, another
architecture, or the scan switched off), the Python-level audit still works, and the
record (`c_level`) and the human report say what was not checked and why.

FORKAUDIT_FORCE_NO_C_LEVEL=1 (read by forkaudit.native at import) forces that path here."""
import pytest

from forkcase import snippet

# a thread holds a Python lock and a C mutex (from ctypes) across the fork
HOLD_BOTH = '''
import ctypes, ctypes.util
LOCK = threading.Lock()
libc = ctypes.CDLL(None)  # the process: libc's symbols on glibc and musl alike
MUTEX = ctypes.create_string_buffer(64)
def enter(held, release):
    with LOCK:
        libc.pthread_mutex_lock(MUTEX)
        held.set(); release.wait(30)
        libc.pthread_mutex_unlock(MUTEX)
hold("both", enter)
fork_once()
'''

NOT_CHECKED = "C-level locks (pthread mutexes, rwlocks) were not checked: "


def run(run_python, schema_validator, env=None, scan="full"):
    result = run_python(snippet(HOLD_BOTH, policy="warn", scan=scan), env=env)
    assert result.returncode == 0, result
    [child] = result.children
    assert not [e.message for e in schema_validator.iter_errors(child)]
    return child, result.stderr


def test_forced_off_still_reports_python_locks_and_says_c_level_was_not_checked(run_python, schema_validator):
    child, stderr = run(run_python, schema_validator, env={"FORKAUDIT_FORCE_NO_C_LEVEL": "1"})
    assert child["c_level"].startswith("unavailable: forced off by FORKAUDIT_FORCE_NO_C_LEVEL"), child["c_level"]
    assert child["scan"] is None
    # the Python-level hazard is still found and attributed; the C mutex is not looked for
    assert [(h["kind"], h["owner"]["name"]) for h in child["hazards"]] == [("python_lock", "both")]
    assert ("forkaudit: C-level lock detection is off (forced off by FORKAUDIT_FORCE_NO_C_LEVEL"
            in stderr), stderr
    report = stderr[stderr.index("forkaudit: fork of pid"):]
    lines = report.splitlines()
    assert lines[1] == "  " + NOT_CHECKED + "forced off by FORKAUDIT_FORCE_NO_C_LEVEL (test/diagnostic switch); Python-level locks were.", report
    assert "[1] python_lock" in report and "pthread_mutex" not in report


def test_scan_off_says_so(run_python, schema_validator):
    child, stderr = run(run_python, schema_validator, scan="off")
    assert child["c_level"] == "off: scan disabled"
    assert [h["kind"] for h in child["hazards"]] == ["python_lock"]
    assert NOT_CHECKED + "the C-level scan is off (--scan off or FORKAUDIT_SCAN=off)" in stderr, stderr


@pytest.mark.c_level
def test_c_level_checked_without_the_switch(run_python, schema_validator):
    # positive control: the same program, nothing forced, finds both locks and says nothing
    child, stderr = run(run_python, schema_validator)
    assert child["c_level"] == "checked"
    assert sorted(h["kind"] for h in child["hazards"]) == ["pthread_mutex", "python_lock"]
    assert child["scan"]["mode"] == "full"
    assert NOT_CHECKED not in stderr and "C-level lock detection is off" not in stderr


@pytest.mark.c_level
def test_the_parent_record_of_raise_says_c_level_is_not_known_before_the_fork(run_python, schema_validator):
    result = run_python(snippet(HOLD_BOTH.replace("fork_once()\n", '''
try:
    os.fork()
except forkaudit.ForkHazardError as e:
    import json
    print("EVENT", json.dumps(e.event))
'''), policy="raise"))
    assert result.returncode == 0, result
    import json
    event = json.loads(result.stdout.split("EVENT ", 1)[1])
    assert not [e.message for e in schema_validator.iter_errors(event)]
    assert event["side"] == "parent" and [h["kind"] for h in event["hazards"]] == ["python_lock"]
    assert event["c_level"] == "unavailable: before the fork (C-level locks are found in the child)"


def test_render_line_only_when_not_checked():
    from forkaudit import render
    base = {"side": "child", "pid": 2, "parent_pid": 1, "hazards": [], "reinitialized": [],
            "forking_thread": {"name": "MainThread", "native_id": 1, "stack": []}}
    assert NOT_CHECKED not in render.text(dict(base, c_level="checked"))
    assert NOT_CHECKED not in render.text(base)  # records written before c_level existed
    text = render.text(dict(base, c_level="unavailable: musl libc"))
    assert text.splitlines()[1] == "  " + NOT_CHECKED + "musl libc; Python-level locks were."
