"""Issue 7, defect 5: forkaudit runs no user code in the fork hooks or in the child's audit.

Each program keeps, as module globals, objects whose every user hook (__getattribute__,
a __class__ property, __getattr__, properties, __eq__/__hash__, __repr__, a metaclass'
__getattribute__/__instancecheck__) takes a lock that another thread holds at the fork and
records that it ran. A forkaudit that touched any of them would hang the child (and the
marker would say so); the positive control shows the same hook really hangs when run.
"""
import pytest

from forkcase import snippet

HOSTILE = r'''
import threading
TRAP = threading.Lock()
RAN = []

def trap(what):
    RAN.append(what)
    TRAP.acquire()          # held by 'holder' at the fork: running this in the child hangs
    TRAP.release()

class Meta(type):
    def __getattribute__(cls, name):
        if not name.startswith("__"):
            trap("meta.__getattribute__")
        return type.__getattribute__(cls, name)
    def __instancecheck__(cls, obj):
        trap("meta.__instancecheck__")
        return False

class Hostile(metaclass=Meta):
    def __getattribute__(self, name):
        trap("__getattribute__ " + name)
        return object.__getattribute__(self, name)
    def __getattr__(self, name):
        trap("__getattr__ " + name)
        raise AttributeError(name)
    @property
    def __class__(self):
        trap("__class__")
        return Hostile
    @property
    def lock(self):
        trap("property lock")
        return threading.Lock()
    def __eq__(self, other):
        trap("__eq__")
        return False
    def __hash__(self):
        trap("__hash__")
        return 1
    def __repr__(self):
        trap("__repr__")
        return "Hostile()"

class Key(str):
    def __hash__(self):
        trap("key __hash__")
        return str.__hash__(self)

class HostileThread(threading.Thread):
    @property
    def name(self):
        trap("Thread.name")
        return "x"
    @name.setter
    def name(self, value):
        pass

HOSTILE_OBJ = Hostile()
HOSTILE_LIST = [Hostile(), {Key("k"): Hostile()}]
HOSTILE_DICT = {"a": Hostile(), 3: [Hostile()]}
LOCK = threading.Lock()

def enter(held, release):
    with LOCK:              # a real hazard, so the child's audit names locks (the walk runs)
        with TRAP:
            held.set(); release.wait(30)

ready, done = threading.Event(), threading.Event()
parked = HostileThread(target=lambda: (ready.set(), done.wait(30)), daemon=True)
parked.start(); ready.wait(10)
holder, release = hold("holder", enter)
RAN.clear()
'''


@pytest.mark.parametrize("policy", ["record", "warn"])
def test_hostile_objects_run_no_code_in_the_hooks_or_the_child(run_python, policy):
    result = run_python(snippet(HOSTILE + r'''
import json
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(w, json.dumps(RAN).encode()); os._exit(0)
os.close(w)
child_ran = json.loads(os.read(r, 65536).decode() or "null")
_, status = os.waitpid(pid, 0)
print("PARENT_RAN", json.dumps(RAN))
print("CHILD_RAN", json.dumps(child_ran))
print("STATUS", status)
release.set(); done.set()
sys.stdout.flush(); os._exit(0)
''', policy=policy), timeout=60)
    assert result.returncode == 0, result
    assert "PARENT_RAN []" in result.stdout, result.stdout
    assert "CHILD_RAN []" in result.stdout, result.stdout
    assert "STATUS 0" in result.stdout
    [rec] = result.children
    assert [(h["object"] or {}).get("path") for h in rec["hazards"]] == ["__main__.LOCK", "__main__.TRAP"] or \
        {(h["object"] or {}).get("path") for h in rec["hazards"]} == {"__main__.LOCK", "__main__.TRAP"}, rec


def test_positive_control_the_traps_do_hang_a_child_that_runs_them(run_python):
    # the same objects, touched the ordinary way in the child: the child hangs (killed by alarm)
    result = run_python(snippet(HOSTILE + r'''
pid = os.fork()
if pid == 0:
    import signal
    signal.alarm(2)
    isinstance(HOSTILE_OBJ, int)     # asks __class__: runs trap(), which blocks on TRAP
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("SIGNALLED", os.WIFSIGNALED(status))
release.set(); done.set()
sys.stdout.flush(); os._exit(0)
''', policy="record"), timeout=60)
    assert "SIGNALLED True" in result.stdout, result
