"""Module import locks: a thread importing a module when another thread forks.

importlib's per-module lock (_ModuleLock) is a lock written in Python, owned by the
importing thread until the import ends; nothing resets it in the child, where the
module stays half-initialised and the first import of it waits forever. Each program
writes its module `slowmod.py` beside itself; the module's code signals and parks, so
the importing thread is inside the import at the fork. The child checks the ground truth:
an import of slowmod, which must block (or must not).
"""
PROGRAM = r'''
import builtins
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "slowmod.py"), "w") as f:
    f.write("import builtins\nbuiltins.SLOWMOD_HELD.set()\nbuiltins.SLOWMOD_RELEASE.wait(30)\nVALUE = 42\n")

def importer(held, release):
    builtins.SLOWMOD_HELD, builtins.SLOWMOD_RELEASE = held, release
    import slowmod   # noqa: F401

class Blocked(Exception):
    pass

def on_alarm(signum, frame):
    raise Blocked()

def import_blocks():
    """The child's ground truth: does an import of slowmod in its main thread block (0.5 s)?
    (Not in a new thread: glibc gives that thread the vanished one's stack, so the same
    ident, and importlib takes it for the owner coming back.)"""
    import signal
    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        __import__("slowmod")
        return False
    except Blocked:
        return True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)

def child():
    return 0 if import_blocks() == EXPECT_BLOCKED else 1
'''


def run(fa_program, body, policy="record", env=None):
    result = fa_program(PROGRAM + body, policy=policy, env=env)
    assert result.returncode == 0, result
    return result


def import_hazards(rec):
    return [h for h in rec["hazards"] if h["object"] and h["object"]["type"] == "_frozen_importlib._ModuleLock"]


def test_a_module_another_thread_is_importing_is_a_hazard(fa_program):
    result = run(fa_program, '''
EXPECT_BLOCKED = True
t, release = hold_in_thread("importer", importer)
pid, code = fork_once(child)
release.set()
t.join(10)
emit(pid=pid, code=code, native_id=t.native_id)
''')
    facts = result.facts
    assert facts["code"] == 0, "the child's import of slowmod did not block: %s" % facts
    [rec] = result.children
    [h] = import_hazards(rec)
    assert h["kind"] == "python_internal" and h["reach"] == "import"
    assert h["object"]["path"] == "importlib._bootstrap._module_locks['slowmod']()"
    assert h["owner"] == {"native_id": facts["native_id"], "name": "importer"}
    assert [f["function"] for f in h["held_at"]][-3:] == ["<module>", "wait", "wait"]
    assert h["held_at"][-3]["file"].endswith("slowmod.py")
    assert "module 'slowmod'" in h["why"] and "importing it at the fork (at slowmod.py:3)" in h["why"]
    from forkaudit import render
    text = render.text(rec)
    assert "fix: import slowmod before the fork" in text


def test_an_import_that_finished_before_the_fork_is_not(fa_program):
    # control for the test above: the same module, imported and done before the fork
    result = run(fa_program, '''
EXPECT_BLOCKED = False
t, release = hold_in_thread("importer", importer)
release.set()
t.join(10)
pid, code = fork_once(child)
emit(pid=pid, code=code, alive=t.is_alive())
''')
    facts = result.facts
    assert facts == {"pid": facts["pid"], "code": 0, "alive": False}, facts
    [rec] = result.children
    assert import_hazards(rec) == [] and rec["hazards"] == []


def test_the_forking_threads_own_import_is_not(fa_program):
    # a fork made by the module's own code, in the thread importing it: the child is that
    # thread, and its import goes on there (control: the fork's child imports it again)
    result = run(fa_program, '''
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "forkmod.py"), "w") as f:
    f.write("import os\\nimport __main__\\nPID, CODE = __main__.fork_once(__main__.child_import)\\n")

def child_import():
    import forkmod   # re-entrant in the importing thread: returns the half-done module
    return 0 if hasattr(forkmod, "os") else 1

stop = threading.Event()
idle = threading.Thread(target=stop.wait, name="idle", daemon=True)
idle.start()
wait_parked(idle)
import forkmod
emit(pid=forkmod.PID, code=forkmod.CODE)
''')
    facts = result.facts
    assert facts["code"] == 0, facts
    [rec] = result.children
    assert import_hazards(rec) == [] and rec["hazards"] == [], rec["hazards"]


def test_raise_refuses_a_fork_while_another_thread_imports(fa_program):
    result = run(fa_program, '''
EXPECT_BLOCKED = True
t, release = hold_in_thread("importer", importer)
try:
    os.fork()
    emit(refused=False)
except forkaudit.ForkHazardError as e:
    emit(refused=True, paths=[h["object"]["path"] for h in e.event["hazards"]])
release.set()
t.join(10)
# control: once the import is done the same fork goes through
pid, code = fork_once()
emit(later=code)
''', policy="raise")
    facts = result.facts
    assert facts["refused"] is True and facts["paths"] == ["importlib._bootstrap._module_locks['slowmod']()"], facts
    assert facts["later"] == 0


def test_the_watchdog_stops_a_child_stuck_importing_under_abort(fa_program):
    result = fa_program("forkaudit.install(policy='abort', json_path=REPORT, watchdog=1)\n" + PROGRAM + '''
t, release = hold_in_thread("importer", importer)
pid = os.fork()
if pid == 0:
    import slowmod   # blocks: the watchdog ends this child with 86
    os._exit(0)
code = wait_child(pid, timeout=40)
release.set()
t.join(10)
emit(pid=pid, code=code)
''', install=False)
    assert result.returncode == 0, result
    assert result.facts["code"] == 86, result
    actions = [r["action"] for r in result.records if r["event"] == "watchdog" and r["pid"] == result.facts["pid"]]
    assert actions == ["aborted"], result.records
    assert "the import lock of module 'slowmod'" in result.stderr


def test_a_package_importing_its_submodule_names_each_module_where_it_was(fa_program):
    result = run(fa_program, '''
EXPECT_BLOCKED = True
here = os.path.dirname(os.path.abspath(__file__))
os.makedirs(os.path.join(here, "slowpkg"), exist_ok=True)
with open(os.path.join(here, "slowpkg", "__init__.py"), "w") as f:
    f.write("X = 1\\nfrom . import inner\\n")
with open(os.path.join(here, "slowpkg", "inner.py"), "w") as f:
    f.write("import slowmod\\n")

def pkg_importer(held, release):
    builtins.SLOWMOD_HELD, builtins.SLOWMOD_RELEASE = held, release
    import slowpkg   # noqa: F401

t, release = hold_in_thread("importer", pkg_importer)
pid, code = fork_once(child)
release.set()
t.join(10)
emit(pid=pid, code=code)
''')
    assert result.facts["code"] == 0, result.facts
    [rec] = result.children
    found = {h["object"]["path"]: h["why"] for h in import_hazards(rec)}
    assert sorted(found) == ["importlib._bootstrap._module_locks['%s']()" % m
                             for m in ("slowmod", "slowpkg", "slowpkg.inner")], found
    assert "(at slowpkg/__init__.py:2)" in found["importlib._bootstrap._module_locks['slowpkg']()"]
    assert "(at inner.py:1)" in found["importlib._bootstrap._module_locks['slowpkg.inner']()"]
    assert "(at slowmod.py:3)" in found["importlib._bootstrap._module_locks['slowmod']()"]
    from forkaudit import render
    [fix] = [line for line in render.advice(rec) if line.startswith("fix: import ")]
    # the package's import covers its submodule: slowpkg.inner is not named
    assert fix.startswith(("fix: import slowpkg, slowmod before the fork",
                           "fix: import slowmod, slowpkg before the fork")), fix
