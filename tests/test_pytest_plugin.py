"""The pytest plugin, run through pytester in a subprocess (so the installed entry point is used)."""
import os
import sys

import pytest

pytest_plugins = ["pytester"]

TIMEOUT = 120

# A test module: one test forks while a thread holds a lock (hazardous), one forks cleanly.
FORKS = '''
import os, threading
import pytest

LOCK = threading.Lock()

def fork_and_wait():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

{marker}
def test_hazardous_fork():
    ready, release = threading.Event(), threading.Event()
    def hold():
        with LOCK:
            ready.set()
            release.wait()
    t = threading.Thread(target=hold, name="lock-holder")
    t.start()
    assert ready.wait(10)
    try:
        assert fork_and_wait() == 0
    finally:
        release.set()
        t.join()

def test_clean_fork():
    assert fork_and_wait() == 0
'''


@pytest.fixture
def run(pytester):
    def go(*args):
        env_saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("FORKAUDIT")}
        try:
            return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=TIMEOUT)
        finally:
            os.environ.update(env_saved)
    return go


def test_importing_the_plugin_installs_nothing(run_python):
    r = run_python('''
        import os, sys
        import forkaudit.pytest_plugin
        assert "forkaudit.hooks" not in sys.modules, sorted(m for m in sys.modules if "forkaudit" in m)
        assert getattr(os.register_at_fork, "__forkaudit_wrapper__", False) is False
        import forkaudit
        forkaudit.install(policy="record")   # positive control: this one does install the hooks
        assert getattr(os.register_at_fork, "__forkaudit_wrapper__", False) is True
        assert forkaudit.installed() is not None
        print("ok")
    ''')
    assert r.returncode == 0 and r.stdout.strip() == "ok", r


def test_one_hazardous_one_clean(pytester, run):
    pytester.makepyfile(test_forks=FORKS.format(marker=""))
    result = run("--forkaudit")
    result.assert_outcomes(failed=1, passed=1)
    out = result.stdout.str()
    assert "FAILED test_forks.py::test_hazardous_fork" in out
    assert "owner: thread 'lock-holder'" in out and "python_lock test_forks.LOCK" in out, out
    assert "forkaudit: 1 hazardous fork in 1 test; 2 forks audited" in out
    # without the option: the plugin is inert, both pass
    result = run()
    result.assert_outcomes(passed=2)
    assert "forkaudit:" not in result.stdout.str()


def test_ini_warn_policy_and_ignore(pytester, run):
    pytester.makepyfile(test_forks=FORKS.format(marker=""))
    pytester.makeini("[pytest]\nforkaudit = true\nforkaudit_policy = warn\n")
    result = run()
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert "forkaudit: hazardous fork in test_forks.py::test_hazardous_fork" in out
    assert "forkaudit: 1 hazardous fork in 1 test; 2 forks audited" in out
    pytester.makeini("[pytest]\nforkaudit = true\nforkaudit_ignore =\n    test_forks.LO*\n")
    result = run()
    result.assert_outcomes(passed=2)
    assert "forkaudit: 0 hazardous forks in 0 tests; 2 forks audited" in result.stdout.str()


def test_marker_opts_out(pytester, run):
    pytester.makepyfile(test_forks=FORKS.format(marker="@pytest.mark.forkaudit(enabled=False)"))
    result = run("--forkaudit")
    result.assert_outcomes(passed=2)
    assert "forkaudit: 0 hazardous forks in 0 tests; 2 forks audited" in result.stdout.str()
    pytester.makepyfile(test_forks=FORKS.format(marker="")
                        + "\npytestmark = pytest.mark.forkaudit(enabled=False)\n")
    run("--forkaudit").assert_outcomes(passed=2)


def test_hung_child_does_not_hang_the_run(pytester, run):
    pytester.makepyfile(test_hang='''
        import os, threading

        LOCK = threading.Lock()

        def test_child_hangs_on_inherited_lock():
            ready, release = threading.Event(), threading.Event()
            def hold():
                with LOCK:
                    ready.set()
                    release.wait()
            t = threading.Thread(target=hold, name="lock-holder", daemon=True)
            t.start()
            assert ready.wait(10)
            pid = os.fork()
            if pid == 0:
                with LOCK:          # held by a thread that does not exist here: hangs
                    os._exit(0)
            release.set()
            t.join()
            os.waitpid(pid, 0)      # returns only once the plugin's watcher kills the child

        def test_after():
            pass
    ''')
    pytester.makeini("[pytest]\nforkaudit_child_timeout = 1\n")
    result = run("--forkaudit")
    result.assert_outcomes(failed=1, passed=1)
    out = result.stdout.str()
    assert "hung (" in out and "was killed by forkaudit (SIGKILL)" in out, out
    assert "1 hung child killed" in out


def test_multiprocessing_and_process_pool(pytester, run):
    pytester.makepyfile(test_mp='''
        import multiprocessing, concurrent.futures, os

        def square(x):
            return x * x

        def test_pool():
            pool = multiprocessing.get_context("fork").Pool(2)
            assert pool.map(square, range(4)) == [0, 1, 4, 9]
            pool.terminate()  # workers may die before their audit ends: no wait for their records
            pool.join()

        def test_pool_closed():
            pool = multiprocessing.get_context("fork").Pool(2)
            assert pool.map(square, range(4)) == [0, 1, 4, 9]
            pool.close()
            pool.join()

        def test_executor():
            ctx = multiprocessing.get_context("fork")
            with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
                assert list(ex.map(square, range(4))) == [0, 1, 4, 9]
    ''')
    pytester.makeini("[pytest]\nforkaudit_child_timeout = 60\n")
    result = run("--forkaudit", "-W", "ignore::DeprecationWarning")
    result.assert_outcomes(passed=3)
    out = result.stdout.str()
    audited = int(out.split("forks audited")[0].rsplit(";", 1)[1])
    assert audited >= 3, out  # test_pool_closed's 2 workers, the executor's first one
    assert "0 hazardous forks" in out
    assert result.duration < 45, out  # the plugin's wait (timeout 60 s) ended when the children died


def test_xdist(pytester, run):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_forks=FORKS.format(marker=""))
    result = run("-p", "xdist", "-n", "2", "--forkaudit")
    result.assert_outcomes(failed=1, passed=1)
    out = result.stdout.str()
    assert "owner: thread 'lock-holder'" in out, out
    assert "forkaudit: 1 hazardous fork in 1 test; 2 forks audited" in out


# A child that hangs inside forkaudit's own audit, before it writes its record (the test-only
# switch makes the audit block on a lock), and, as the control, a child that has written its
# record and then sleeps past the timeout (it is not hung: it is let be).
HANG_IN_AUDIT = '''
import os, signal, time

def fork_child(hang_in_audit):
    r, w = os.pipe()
    if hang_in_audit:
        os.environ["FORKAUDIT_TESTONLY_AUDIT_HANG"] = "1"
    try:
        pid = os.fork()
    finally:
        os.environ.pop("FORKAUDIT_TESTONLY_AUDIT_HANG", None)
    if pid == 0:
        os.close(w)
        os.read(r, 1)       # the control: asleep (with its record written) until the parent says
        os._exit(0)
    os.close(r)
    return pid, w

def test_child_hangs_in_its_audit():
    pid, w = fork_child(True)
    status = os.waitpid(pid, 0)[1]   # returns only once the plugin's watcher kills the child
    os.close(w)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL

def test_recorded_child_asleep_past_the_timeout_is_let_be():
    pid, w = fork_child(False)
    time.sleep(3)                    # past forkaudit_child_timeout (1 s): a duration, not a sync
    os.write(w, b"x")
    os.close(w)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
'''


def test_child_hung_in_its_own_audit_is_killed(pytester, run):
    pytester.makepyfile(test_hang_audit=HANG_IN_AUDIT)
    pytester.makeini("[pytest]\nforkaudit_child_timeout = 1\n")
    result = run("--forkaudit")
    result.assert_outcomes(failed=1, passed=1)
    out = result.stdout.str()
    assert "FAILED test_hang_audit.py::test_child_hangs_in_its_audit" in out, out
    assert "hung before it wrote its audit record (asleep, using no CPU" in out, out
    assert "was killed by forkaudit (SIGKILL)" in out
    assert "forkaudit: 0 hazardous forks in 0 tests; 1 fork audited; 1 hung child killed" in out, out


def test_no_fork_loads_no_flow(pytester, run):
    """With --forkaudit, a session that never forks never imports the flow or the native shim;
    the first fork does (and is audited)."""
    pytester.makepyfile(test_lazy='''
        import os, sys
        import forkaudit

        HEAVY = ("forkaudit.flow", "forkaudit.native", "forkaudit._shim")

        def test_no_fork():
            assert forkaudit.installed() is not None and forkaudit.installed().policy == "record"
            assert [m for m in HEAVY if m in sys.modules] == []

        def test_then_a_fork():
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
            assert [m for m in HEAVY if m in sys.modules] == list(HEAVY)
    ''')
    result = run("--forkaudit")
    result.assert_outcomes(passed=2)
    assert "forkaudit: 0 hazardous forks in 0 tests; 1 fork audited" in result.stdout.str()


# a lock only the holding thread's own frame leads to: the child cannot reach it
UNREACHABLE = FORKS.replace("    def hold():\n        with LOCK:", "    def hold():\n        mine = threading.Lock()\n        with mine:")


def test_a_lock_the_child_cannot_reach_fails_no_test(pytester, run):
    pytester.makepyfile(test_forks=UNREACHABLE.format(marker=""))
    result = run("--forkaudit")
    result.assert_outcomes(passed=2)
    assert "owner: thread 'lock-holder'" not in result.stdout.str()
    # positive control, in the same run shape: the module global fails its test (FORKS)
    pytester.makepyfile(test_forks=FORKS.format(marker=""))
    run("--forkaudit").assert_outcomes(failed=1, passed=1)
