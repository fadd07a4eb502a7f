"""Output that is safe in a freshly forked child: raw os.write, never logging or sys.stderr.

(Their locks may be the very hazard being reported.)

The report file is opened by one function, open_report(), both by the start-up
check and by every child that appends a record: never through a symlink, never
blocking (O_NONBLOCK), and only a regular file owned by this user that group
and others cannot write. A FIFO, a directory or a device (/dev/full) swapped in
at the path later is refused before a byte is written.

A record is either whole on its own line or absent: one write(2) with O_APPEND;
a write that would pass the file size limit (RLIMIT_FSIZE) is not made, and a
short write (disk full) is blanked out in place (spaces, which JSON readers
skip), never left as half a line the next record would be glued to. When a
record is lost, one line says so, once for the whole process tree that shares
the report (a shared page remembers that it was said), not once per fork.
"""
import _signal   # (in sys.modules from the interpreter's start: an import statement in a function
#                  costs a child a few pages written)
import errno
import fcntl
import mmap
import os
import resource
import stat

from .settings import shown_path

OPEN_FLAGS = (os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
              | os.O_NONBLOCK | os.O_NOCTTY)
JSON_FLAGS = OPEN_FLAGS  # the name older code used

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"))


class ReportPathError(Exception):
    """The report file cannot be used; str() is one line saying why."""


def _kind(mode):
    for test, words in _KINDS:
        if test(mode):
            return words
    return "not a regular file"


def _refuse_stat(st, euid):
    """Why a file with this stat must not receive records, or None."""
    if not stat.S_ISREG(st.st_mode):
        return "it is %s, not a regular file" % _kind(st.st_mode)
    if st.st_uid != euid:
        return "it is owned by uid %d, not by this user (uid %d)" % (st.st_uid, euid)
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "it is writable by %s (mode %04o)" % (
            "group and others" if st.st_mode & stat.S_IWGRP and st.st_mode & stat.S_IWOTH
            else "its group" if st.st_mode & stat.S_IWGRP else "others", stat.S_IMODE(st.st_mode))
    return None


def open_report(path):
    """Open the report file for appending; returns (fd, size). Raises ReportPathError.

    Never blocks and never follows a symlink; refuses anything but a regular file owned by
    this process' effective user and not writable by group or others."""
    euid = os.geteuid()
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise ReportPathError(e.strerror or str(e)) from None
    if st is not None:  # refuse before opening: opening a device or a FIFO can have effects
        if stat.S_ISLNK(st.st_mode):
            raise ReportPathError("it is a symbolic link (never followed)")
        why = _refuse_stat(st, euid)
        if why:
            raise ReportPathError(why)
    try:
        fd = os.open(path, OPEN_FLAGS, 0o600)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ReportPathError("it is a symbolic link (never followed)") from None
        if e.errno == errno.ENXIO:
            raise ReportPathError("it is a FIFO, not a regular file") from None
        raise ReportPathError(e.strerror or str(e)) from None
    try:
        try:
            st = os.fstat(fd)  # what was opened, whatever the path named a moment ago
        except OSError as e:
            raise ReportPathError(e.strerror or str(e)) from None
        why = _refuse_stat(st, euid)
        if why:
            raise ReportPathError(why)
    except BaseException:
        _close(fd)
        raise
    return fd, st.st_size


def _close(fd):
    """os.close that never raises: None, or its error (NFS reports a failed write here)."""
    try:
        os.close(fd)
    except OSError as e:
        return e.strerror or str(e)
    return None


def check_report_path(path):
    """The start-up check: open_report() and close. Also sets up the shared 'lost' flag."""
    fd, _size = open_report(path)
    _close(fd)
    _shared_flag()


# -- "records are being lost", said once per process tree -----------------------------------

_said = False
_flag = None


def _shared_flag():
    """A page shared with every descendant forked after this call (MAP_SHARED|MAP_ANONYMOUS)."""
    global _flag
    if _flag is None:
        try:
            _flag = mmap.mmap(-1, mmap.PAGESIZE)
        except (OSError, ValueError):
            _flag = False
    return _flag


def _lost(path, why):
    """One line, the first time a record is lost in this process tree."""
    global _said
    if _said:
        return
    _said = True
    flag = _flag
    if flag:
        if flag[0]:
            return  # an earlier child (or the parent) said it
        flag[0] = 1
    say("cannot append to the report %s: %s; records are being lost" % (shown_path(path), why))


def _append_line(fd, line, size, signals_held=False):
    """Append `line` (ending in a newline, none inside) with one write: whole or absent.

    Returns None, or why the record is lost."""
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and size + len(line) > limit:
        # writing would be short (a torn record), or past the limit SIGXFSZ: do not start
        return "the file size limit (RLIMIT_FSIZE, %d bytes) is reached" % limit
    try:
        n = os.write(fd, line) if signals_held else _write_unkilled(fd, line)
    except OSError as e:
        return e.strerror or str(e)
    if n == len(line):
        return None
    # A short write: our n bytes are the n before the file offset (O_APPEND puts each write
    # at the end atomically, and the offset after it right behind its bytes). Blank them in
    # place: appends by others after ours stay whole, and the next line parses.
    try:
        end = os.lseek(fd, 0, os.SEEK_CUR)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_APPEND)
        if n > 0:
            os.pwrite(fd, b" " * n, end - n)
        blanked = "blanked out"
    except OSError as e:
        blanked = "could not be blanked out (%s)" % (e.strerror or e)
    return "a short write (%d of %d bytes; the partial record %s)" % (n, len(line), blanked)


# Signals never held back: those a fault raises (held, the kernel kills all the same)
_FAULTS = ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGSYS")


_to_hold = {}   # let_through -> the signals to hold back (made in the parent, used in children)


def signals_to_hold(let_through=()):
    """Every signal that can be blocked but those a fault raises and let_through (signal
    numbers), or None where this Python cannot tell."""
    if let_through not in _to_hold:
        try:
            keep = {getattr(_signal, name) for name in _FAULTS if hasattr(_signal, name)} | set(let_through)
            _to_hold[let_through] = frozenset(_signal.valid_signals() - keep)
        except (AttributeError, OSError, ValueError):
            _to_hold[let_through] = None
    return _to_hold[let_through]


def hold_signals(signals=None):
    """Hold back `signals` (default: signals_to_hold()); returns the mask to give
    restore_signals(), or None if it could not. A held-back signal is delivered when the mask
    is restored: a SIGTERM still ends the process, just after what it was held back for."""
    if signals is None:
        signals = signals_to_hold()
    if not signals:
        return None
    try:
        return _signal.pthread_sigmask(_signal.SIG_BLOCK, signals)
    except (AttributeError, OSError, ValueError):
        return None


def restore_signals(old):
    if old is not None:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, old)


def _write_unkilled(fd, line):
    """os.write(fd, line) with every signal that can be blocked held back until it returns.

    A write to a regular file stops between two pages when a fatal signal arrives: a child
    that a pool's terminate() sends SIGTERM to while it writes its record left the first
    page of it, and the next record, appended to that half, made one line that no reader
    can parse. Held back, the signal ends the process right after a whole record."""
    old = hold_signals()
    try:
        return os.write(fd, line)
    finally:
        restore_signals(old)


_encoder = None
_c_encode = None   # the same encoder's C part, where json has one: one C call a value
_c_markers = {}    # (its table of the containers being encoded, emptied before each use)


def json_text(value):
    """value as compact JSON, as records are written (one line, no spaces). One encoder, made
    at the first use (in the parent, at its first fork with a record to write): json.dumps
    with these options would make one per call, in Python, in every child. Where json has its
    C encoder, that is called directly (JSONEncoder.encode runs two Python functions a call,
    each a page or two copied in a child on 3.9-3.11)."""
    global _encoder, _c_encode
    if _encoder is None:
        import json  # not at start-up: only a child with a record needs it
        import json.encoder
        _encoder = json.JSONEncoder(separators=(",", ":"), default=str)
        make = getattr(json.encoder, "c_make_encoder", None)
        basestring = getattr(json.encoder, "c_encode_basestring_ascii", None)
        if make is not None and basestring is not None:
            e = _encoder
            _c_encode = make(_c_markers, e.default, basestring, e.indent, e.key_separator,
                             e.item_separator, e.sort_keys, e.skipkeys, e.allow_nan)
    if _c_encode is not None and type(value) in (dict, list):
        _c_markers.clear()
        return "".join(_c_encode(value, 0))
    return _encoder.encode(value)


def record_line(record):
    return (json_text(record) + "\n").encode()


def append_json(path, record):
    """Append one record as one JSON line (see append_line)."""
    return append_line(path, record_line(record))


def append_line(path, line, signals_held=False):
    """Append one record's line (bytes, ending in its only newline). Never raises for I/O: a
    record that cannot be written whole is absent, and one line per process tree says records
    are being lost. Returns True when the record was written. signals_held: the caller holds
    back every signal hold_signals() would (a child's audit does), so the write need not."""
    try:
        fd, size = open_report(path)
    except ReportPathError as e:
        _lost(path, str(e))
        return False
    try:
        why = _append_line(fd, line, size, signals_held)
    finally:
        closed = _close(fd)
    why = why or closed
    if why:
        _lost(path, why)
        return False
    return True


def _write_all(fd, data):
    while data:
        n = os.write(fd, data)
        data = data[n:]


def write_stderr(text):
    try:
        _write_all(2, text.encode("utf-8", "replace"))
    except OSError:
        pass


def say(message):
    """One line from forkaudit on stderr."""
    write_stderr("forkaudit: %s\n" % message)
