"""Helpers shared by the benchmarks (run as scripts: this folder is on sys.path)."""
import os


def in_child(fn):
    """Run fn() in a fresh forked child and return its result (a repr-able value)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(w, repr(fn()).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = read_all(r)
    os.waitpid(pid, 0)
    return eval(data.decode())  # noqa: S307 - our own repr of numbers and strings


def read_all(fd):
    """Everything from a pipe's read end until every writer closed it; the fd is closed."""
    chunks = []
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)
