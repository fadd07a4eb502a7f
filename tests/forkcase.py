"""Building blocks for snippets that fork once with forkaudit installed.

Not a test module: conftest-style helpers shared by the tests, imported by
path-less name because pytest puts this folder on sys.path (rootdir-relative).
"""
import textwrap

PRELUDE = r'''
import os, sys, threading, time
import forkaudit

REPORT = os.environ["FORKAUDIT_TEST_REPORT"]


def hold(name, enter, daemon=True):
    """Run enter(held, release) in thread `name`; return once it signalled `held`."""
    held, release = threading.Event(), threading.Event()
    t = threading.Thread(target=enter, args=(held, release), name=name, daemon=daemon)
    t.start()
    if not held.wait(10):
        sys.exit("thread %s never got ready" % name)
    time.sleep(0.05)
    return t, release


def fork_once():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return status


def wait_or_kill(pid, seconds, before_kill=None):
    """The child's exit code, or "hung" once it is still there after `seconds` (then
    before_kill(pid) runs, if given, and the child is killed and reaped)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    if before_kill is not None:
        before_kill(pid)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung"
'''


# Program text (after `import os, threading`): wait_in_write(thread) returns once the kernel
# shows `thread` asleep in write(2), which is how a writer blocked on a full pipe is known to
# hold its buffered file's lock (deterministic: no sleep stands for "it got there").
IN_WRITE = r'''
def wait_in_write(thread, seconds=10):
    import time
    number = {"x86_64": "1", "aarch64": "64"}[os.uname().machine]
    deadline = time.monotonic() + seconds
    while True:
        try:
            with open("/proc/self/task/%d/syscall" % thread.native_id) as f:
                if f.read().split()[0] == number:
                    return
        except (OSError, IndexError, TypeError):   # (TypeError: no native id yet)
            pass
        if time.monotonic() > deadline:
            raise SystemExit("thread %s never blocked in write(2)" % thread.name)
        threading.Event().wait(0.001)
'''


# Program text (after `import json, os`): fork_and_tell(tell) forks; the child sends back
# tell()'s value, as JSON through a pipe, and exits at once; the parent returns that value
# once the child is reaped.
FORK_AND_TELL = r'''
def fork_and_tell(tell):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(w, json.dumps(tell()).encode())
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    while True:
        chunk = os.read(r, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks))
'''


def snippet(body, policy="record", scan="full"):
    """A program: the prelude, forkaudit.install(...), then `body` (which forks)."""
    return "%s\nforkaudit.install(policy=%r, json_path=REPORT, scan=%r)\n%s\n" % (
        PRELUDE, policy, scan, textwrap.dedent(body))
