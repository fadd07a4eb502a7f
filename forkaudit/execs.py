"""Which callers of fork exec right after it.

Such a fork needs no snapshot, no audit and no record: no Python code runs in its child
but the at-fork hooks and a preexec_fn, and then the exec replaces the inherited locks.
The before-fork hook asks here first, before it loads anything, so a process whose forks
all exec (subprocess, multiprocessing's spawn and forkserver helpers) never loads the
flow. This module imports nothing.
"""

# Python frames that call fork only to exec right after: (file name ending, function name).
EXEC_CALLERS = (("subprocess.py", "_execute_child"), ("multiprocessing/util.py", "spawnv_passfds"))


def execs_next(caller):
    """Is `caller` (the Python frame that called fork) one that execs right after?"""
    if caller is None:
        return False
    code = caller.f_code
    name = code.co_name
    for where in EXEC_CALLERS:
        if name == where[1] and code.co_filename.replace("\\", "/").endswith(where[0]):
            return True
    return False
