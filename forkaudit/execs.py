"""Which callers of fork exec right after it.

Such a fork needs no snapshot, no audit and no record: no Python code runs in its child
but the at-fork hooks and a preexec_fn, and then the exec replaces the inherited locks.
The before-fork hook asks here first, before it loads anything, so a process whose forks
all exec (subprocess, multiprocessing's spawn and forkserver helpers) never loads the
flow. This module imports nothing.
"""

# Python frames that call fork only to exec right after: (file name ending, function name).
# ptyprocess (pexpect's spawn) and the standard library's pty.spawn fork through pty.fork,
# then run only setup calls (window size, closing fds, a preexec_fn) before the exec.
EXEC_CALLERS = (("subprocess.py", "_execute_child"), ("multiprocessing/util.py", "spawnv_passfds"),
                ("ptyprocess/ptyprocess.py", "spawn"), ("pty.py", "spawn"))
# Frames that fork on behalf of their caller, which tells what the child does next: the fork
# pty.fork makes execs when pty.fork's own caller is one of the above (and not otherwise: a
# program's pty.fork() child may run any Python).
PASS_THROUGH = (("pty.py", "fork"),)


def _is(code, where):
    return code.co_name == where[1] and code.co_filename.replace("\\", "/").endswith(where[0])


# What each code object that called fork is: id -> (code, "exec" | "pass" | None); kept, so
# that its id stays its own (a few entries: the places a program forks from)
_kinds = {}


def _kind(code):
    known = _kinds.get(id(code))
    if known is not None and known[0] is code:
        return known[1]
    kind = ("exec" if any(_is(code, where) for where in EXEC_CALLERS) else
            "pass" if any(_is(code, where) for where in PASS_THROUGH) else None)
    if len(_kinds) >= 256:
        _kinds.clear()
    _kinds[id(code)] = (code, kind)
    return kind


def execs_next(caller):
    """Is `caller` (the Python frame that called fork) one that execs right after?"""
    for _ in range(len(PASS_THROUGH) + 1):
        if caller is None:
            return False
        kind = _kind(caller.f_code)
        if kind == "exec":
            return True
        if kind != "pass":
            return False
        caller = caller.f_back
    return False
