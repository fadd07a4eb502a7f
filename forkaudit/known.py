"""Knowledge of the standard library's and known libraries' locks, in one table.

Everything forkaudit knows about a particular library by name lives here: how to
recognise it (shared objects whose code appears on a lock owner's stack, Python
packages on the owner's Python stack, the start of a lock's path, a thread name),
what it is called, the library's own remedy for forking, and which parts of the
standard library are thread and thread-pool internals. render.py turns these facts
into sentences; reach.py uses the internals; a record carries only the key ("known").
"""
import os
import sys
import types

# key -> what a user needs: the library's name, and its own remedy (a fix line).
LIBRARIES = {
    "sqlite": {
        "name": "SQLite (sqlite3)",
        "code": ("libsqlite3", "_sqlite3"),
        "python": ("/sqlite3/",),
        "remedy": ("open SQLite connections in the child (never use or inherit a connection across "
                   "fork: SQLite's own rule, https://www.sqlite.org/howtocorrupt.html#fork), and fork "
                   "only when no other thread is inside a query, or use the 'spawn'/'forkserver' "
                   "start method"),
    },
    "openblas": {
        "name": "OpenBLAS (numpy/scipy's BLAS thread pool)",
        "code": ("libopenblas", "libscipy_openblas", "openblas"),
        "python": (),
        "remedy": ("set OPENBLAS_NUM_THREADS=1 in the environment before the program starts, or "
                   "wrap the forking code in threadpoolctl.threadpool_limits(1) so that no BLAS "
                   "thread is busy at the fork"),
    },
    "libgomp": {
        "name": "GNU OpenMP (libgomp's thread pool)",
        "code": ("libgomp",),
        "python": (),
        "remedy": ("libgomp's thread pool does not survive fork: set OMP_NUM_THREADS=1 before the "
                   "program starts, or use the 'spawn'/'forkserver' start method"),
    },
    "grpc": {
        "name": "gRPC (grpcio)",
        "code": ("cygrpc", "libgrpc"),
        "python": ("/grpc/", "/grpc_"),
        "remedy": ("create gRPC channels and servers only after the fork, or set "
                   "GRPC_ENABLE_FORK_SUPPORT=1 (with GRPC_POLL_STRATEGY=poll) before grpc is imported "
                   "so that grpc's own fork handlers run"),
    },
    "glibc-nss": {
        "name": "glibc's name service (getaddrinfo, getpwnam: NSS)",
        "code": ("libnss_", "libresolv"),
        "python": (),
        "remedy": ("resolve names before starting threads or after the fork in the child, or use "
                   "the 'spawn'/'forkserver' start method"),
    },
}
ORDER = ("sqlite", "openblas", "libgomp", "grpc", "glibc-nss")

# Where the fork came from, by a frame of the forking thread: (file ending, function) -> origin.
FORK_ORIGINS = (
    ("gunicorn/arbiter.py", "spawn_worker", "gunicorn"),
    ("concurrent/futures/process.py", "_spawn_process", "concurrent.futures"),
    ("multiprocessing/popen_fork.py", "_launch", "multiprocessing"),
)

# Module globals of the standard library that are thread and thread-pool bookkeeping: a lock
# reached only through them is used by the threads they list, not by the program's own code.
INTERNAL_ROOTS = (
    "threading._active[", "threading._limbo[", "threading._dangling", "threading._shutdown_locks",
    "threading._main_thread", "concurrent.futures.thread._threads_queues",
    "concurrent.futures.process._threads_wakeups",
)

# Standard streams: a buffered file reached here is written by the child's print().
STD_STREAMS = ("sys.stdout", "sys.stderr", "sys.__stdout__", "sys.__stderr__", "sys.stdin", "sys.__stdin__")


def _base(path):
    return path.rsplit("/", 1)[-1]


def by_code(libraries):
    """The known library whose shared objects are among `libraries` (file names), or None."""
    bases = [_base(p) for p in libraries or ()]
    for key in ORDER:
        marks = LIBRARIES[key]["code"]
        if any(b.startswith(m) or ("/" + m) in p for b, p in zip(bases, libraries) for m in marks):
            return key
    return None


def by_frames(stack):
    """The known library one of whose Python files is on a stack (innermost first), or None."""
    for frame in reversed(stack or ()):
        name = (frame.get("file") or "").replace("\\", "/")
        for key in ORDER:
            if any(m in name for m in LIBRARIES[key]["python"]):
                return key
    return None


def recognise(hazard):
    """The key of a known library behind a hazard: from the code on its owner's stack, the
    library file the lock lives in, then the owner's Python stack."""
    code = list(hazard.get("owner_code") or ())
    if hazard.get("library") and hazard["library"].startswith("/"):
        code.append(hazard["library"])
    return by_code(code) or by_frames(hazard.get("held_at"))


def fork_origin(stack):
    """'gunicorn', 'concurrent.futures', 'multiprocessing' or 'os.fork': who called fork."""
    frames = [((f.get("file") or "").replace("\\", "/"), f.get("function")) for f in stack or ()]
    for ending, function, origin in FORK_ORIGINS:  # the outermost caller's kind first
        if any(name.endswith(ending) and fn == function for name, fn in frames):
            return origin
    return "os.fork"


_LIB_DIRS = None


def library_file(filename):
    """True for a file of the standard library or of an installed package (not the program's)."""
    global _LIB_DIRS
    if _LIB_DIRS is None:
        stdlib = os.path.dirname(os.__file__)
        _LIB_DIRS = (stdlib + os.sep, os.path.realpath(stdlib) + os.sep)
    name = filename or ""
    if "/site-packages/" in name or "/dist-packages/" in name:
        return True
    return name.startswith(_LIB_DIRS) or name.startswith("<frozen ")


def stdlib_file(filename):
    """True for a file of the standard library itself (not of an installed package)."""
    name = filename or ""
    return library_file(name) and "/site-packages/" not in name and "/dist-packages/" not in name


def library_type(obj):
    """True when obj's class is defined in the standard library or an installed package."""
    from . import safeattr
    name = safeattr.class_dict(type(obj)).get("__module__")  # no metaclass hooks
    module = sys.modules.get(name) if type(name) is str else None
    if module is None or not safeattr.is_a(module, types.ModuleType):
        return False
    filename = safeattr.module_dict(module).get("__file__")
    if filename is None:
        return True  # a built-in module (_thread, _io, ...)
    return type(filename) is str and library_file(filename)
