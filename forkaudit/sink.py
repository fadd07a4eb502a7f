"""Output that is safe in a freshly forked child: raw os.write, never logging or sys.stderr.

(Their locks may be the very hazard being reported.)
"""
import json
import os

JSON_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


def _write_all(fd, data):
    while data:
        n = os.write(fd, data)
        data = data[n:]


def append_json(path, record):
    """Append one record as one JSON line, with a single write() (O_APPEND: many children may share the file)."""
    line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
    fd = os.open(path, JSON_FLAGS, 0o600)
    try:
        _write_all(fd, line)
    finally:
        os.close(fd)


def write_stderr(text):
    try:
        _write_all(2, text.encode("utf-8", "replace"))
    except OSError:
        pass


def say(message):
    """One line from forkaudit on stderr."""
    write_stderr("forkaudit: %s\n" % message)
