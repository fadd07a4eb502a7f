"""Every forkaudit setting, read and validated in one place.

Environment variables (read at interpreter start by the .pth hook, or by
``forkaudit run``, which sets them for the program it runs):

  FORKAUDIT            1 | warn | record | abort | abort-now | raise   (1 means warn)
                       0 | false | off | no | empty (any case): off, silently
  FORKAUDIT_JSON       path of a JSON-lines report file (appended to; a regular
                       file owned by this user and not writable by others)
  FORKAUDIT_SCAN       full | libs | off                    (default full)
  FORKAUDIT_SCAN_BUDGET_MS  wall time of the child-side C scan, ms (default 200; 0: none)
  FORKAUDIT_SCAN_BUDGET_MB  bytes it reads, MiB                    (default 2048; 0: none)
  FORKAUDIT_SCAN_EVERY_FORK 1 | true | on | yes: scan in every child, even where no other
                       thread has run since a fork whose scan found nothing of theirs held
                       (default: such a child reuses that finding, csrc/quiet.c)
  FORKAUDIT_WATCHDOG   seconds (default 5; 0: off) after which a fork that has not returned,
                       or a child blocked on a lock it inherited held, is reported (and
                       under 'abort' such a child exits with status 86)
  FORKAUDIT_SHOW_KEYS  1 | true | on | yes: show dict keys on object paths whole
                       (default: keys that are not short identifier-like strings
                       or numbers are shown by type and a short hash)

Like CPython's own PYTHON* variables, these are ignored under ``python -E`` and
``-I`` and in a process that gained privileges at exec (setuid, setgid, file
capabilities: the kernel's AT_SECURE).

A bad value is echoed shortened (at most about 60 characters).
"""
import os
import sys

from .errors import SettingsError

# abort: a child stuck on an inherited lock for FORKAUDIT_WATCHDOG seconds exits 86 (a fact);
# abort-now: a child with a predicted hazard exits 86 at the fork (the behaviour of 'abort'
# before the watchdog)
POLICIES = ("warn", "record", "abort", "abort-now", "raise")
WATCHDOG_SECONDS = 5.0
SCANS = ("full", "libs", "off")
# FORKAUDIT values that mean "off" (after strip() and lower()); forkaudit.pth repeats this list
# so that a process with forkaudit off imports nothing (a test checks the two agree).
OFF_VALUES = ("", "0", "false", "off", "no")
YES_VALUES = ("1", "true", "on", "yes")
ABORT_STATUS = 86  # exit status of a child stopped by the 'abort' policy
SHOWN_CHARS = 60   # a bad value is echoed in at most about this many characters
AT_SECURE = 23     # <elf.h>: auxv entry, non-zero when the process gained privileges at exec


class Settings:
    """The settings of one activation (immutable). A plain class, not a dataclass: this
    module is imported at interpreter start, where every import counts.

    scan_budget_ms / scan_budget_mb: the child-side C scan's budgets. 200 ms: the child of
    a process whose lock another thread held waits at most that long before its first line
    (a pause no supervisor timeout notices), and at the scan's measured speed it covers
    ~1-2 GB, all of most workers. 2 GiB: bounds the memory read whatever the CPU speed (on
    a fast idle machine the byte budget ends first, on a loaded one the time budget)."""

    __slots__ = ("policy", "json_path", "scan", "scan_budget_ms", "scan_budget_mb", "show_keys", "watchdog",
                 "scan_every_fork")

    def __init__(self, policy="warn", json_path=None, scan="full", scan_budget_ms=200, scan_budget_mb=2048,
                 show_keys=False, watchdog=WATCHDOG_SECONDS, scan_every_fork=False):
        for name, value in zip(self.__slots__, (policy, json_path, scan, scan_budget_ms, scan_budget_mb,
                                                show_keys, watchdog, scan_every_fork)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError("Settings are immutable")

    def _values(self):
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other):
        return type(other) is Settings and self._values() == other._values()

    def __hash__(self):
        return hash(self._values())

    def __repr__(self):
        return "Settings(%s)" % ", ".join("%s=%r" % (n, getattr(self, n)) for n in self.__slots__)


def shown(value, limit=SHOWN_CHARS):
    """repr(value), cut to about `limit` characters: a 100 KB bad value is not echoed whole."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return "%s... (%d characters)" % (text[:max(limit - 12, 8)], len(value))


def check_policy(value):
    if value not in POLICIES:
        raise SettingsError("policy must be one of %s, not %s" % (", ".join(POLICIES), shown(value)))
    return value


def check_scan(value):
    if value not in SCANS:
        raise SettingsError("scan must be one of %s, not %s" % (", ".join(SCANS), shown(value)))
    return value


def check_json_path(path):
    """Validate a report path now, so a bad one is one line at start-up, not a lost report.

    The file is opened exactly the way each child opens it (sink.open_report: append,
    create 0600, never through a symlink, never blocking, a regular file of this user
    that nobody else can write) and closed again. Returns the absolute path.
    """
    if path is None:
        return None
    if not path:
        raise SettingsError("the report path is empty")
    if "\0" in path:
        raise SettingsError("the report path %s contains a NUL character" % shown(path))
    from . import sink
    path = os.path.abspath(path)
    try:
        sink.check_report_path(path)
    except sink.ReportPathError as e:
        raise SettingsError("cannot write the report file %s: %s" % (shown_path(path), e)) from None
    return path


PATH_CHARS = 200  # paths are worth more characters than other values


def shown_path(path):
    """A path for a message: as it is when printable and not too long, else shortened like shown()."""
    return path if len(path) <= PATH_CHARS and path.isprintable() else shown(path, PATH_CHARS)


def parse_yes_no(value, name):
    v = value.strip().lower()
    if v in YES_VALUES:
        return True
    if v in OFF_VALUES:
        return False
    raise SettingsError("%s must be 1, true, on, yes or 0, false, off, no; got %s" % (name, shown(value)))


def parse_watchdog(value, name="FORKAUDIT_WATCHDOG"):
    """Seconds of the stuck-fork watchdog: a number up to 86400, at most one decimal place
    kept (0: off); empty: the default."""
    v = value.strip()
    if not v:
        return WATCHDOG_SECONDS
    whole, _, frac = v.partition(".")
    if not (whole.isascii() and whole.isdigit() and len(whole) <= 5 and (not frac or (frac.isascii() and frac.isdigit()
                                                                                       and len(frac) <= 3))):
        raise SettingsError("%s must be a number of seconds (0: off); got %s" % (name, shown(value)))
    seconds = float(v)
    if seconds > 86400:
        raise SettingsError("%s must be at most 86400 seconds; got %s" % (name, shown(value)))
    return seconds


def make(policy="warn", json_path=None, scan="full", show_keys=False, watchdog=WATCHDOG_SECONDS,
         scan_every_fork=False):
    return Settings(check_policy(policy), check_json_path(json_path), check_scan(scan), show_keys=bool(show_keys),
                    watchdog=parse_watchdog(str(watchdog)), scan_every_fork=bool(scan_every_fork))


def secure_execution():
    """True in a process that gained privileges at exec (the kernel's AT_SECURE): setuid or
    setgid programs, file capabilities. Like glibc's secure_getenv, it then ignores the
    environment."""
    try:
        if os.getuid() != os.geteuid() or os.getgid() != os.getegid():
            return True
    except AttributeError:  # not POSIX
        return False
    try:
        fd = os.open("/proc/self/auxv", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        data = b""
        while True:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        return False
    finally:
        os.close(fd)
    return auxv_secure(data)


def auxv_secure(data, word=8 if sys.maxsize > 2 ** 32 else 4, byteorder=sys.byteorder):
    """AT_SECURE from the bytes of /proc/self/auxv: (type, value) pairs of native words, ending
    with AT_NULL."""
    for i in range(0, len(data) - 2 * word + 1, 2 * word):
        key = int.from_bytes(data[i:i + word], byteorder)
        if key == 0:
            break
        if key == AT_SECURE:
            return int.from_bytes(data[i + word:i + 2 * word], byteorder) != 0
    return False


def environment_ignored():
    """True when this process must not take settings from its environment: python -E or -I
    (sys.flags.ignore_environment), or a privileged exec (AT_SECURE)."""
    return bool(sys.flags.ignore_environment) or secure_execution()


def from_environ(environ=None):
    """Settings from the FORKAUDIT* variables; None when forkaudit is off.

    Off: FORKAUDIT unset, empty or one of 0/false/off/no (any case), or, when reading
    the process' own environment (environ None), python -E/-I or a privileged exec."""
    if environ is None:
        if environment_ignored():
            return None
        environ = os.environ
    raw = environ.get("FORKAUDIT", "")
    value = raw.strip().lower()
    if value in OFF_VALUES:
        return None
    policy = "warn" if value == "1" else value
    if policy not in POLICIES:
        raise SettingsError("FORKAUDIT must be 1, %s (or 0, false, off, no for off); got %s"
                            % (", ".join(POLICIES), shown(raw)))
    raw_scan = environ.get("FORKAUDIT_SCAN", "")
    scan = raw_scan.strip().lower() or "full"
    if scan not in SCANS:
        raise SettingsError("FORKAUDIT_SCAN must be one of %s; got %s" % (", ".join(SCANS), shown(raw_scan)))
    show_keys = parse_yes_no(environ.get("FORKAUDIT_SHOW_KEYS", ""), "FORKAUDIT_SHOW_KEYS")
    every_fork = parse_yes_no(environ.get("FORKAUDIT_SCAN_EVERY_FORK", ""), "FORKAUDIT_SCAN_EVERY_FORK")
    json_path = environ.get("FORKAUDIT_JSON") or None
    budgets = []
    for name, default in (("FORKAUDIT_SCAN_BUDGET_MS", 200), ("FORKAUDIT_SCAN_BUDGET_MB", 2048)):
        value = environ.get(name, "").strip()
        if value and not (value.isascii() and value.isdigit() and len(value) <= 9):
            raise SettingsError("%s must be a whole number (0: no limit); got %s" % (name, shown(value)))
        budgets.append(int(value) if value else default)
    watchdog = parse_watchdog(environ.get("FORKAUDIT_WATCHDOG", ""))
    return Settings(policy, check_json_path(json_path), scan, *budgets, show_keys=show_keys, watchdog=watchdog,
                    scan_every_fork=every_fork)


# ---- test-only switches (FORKAUDIT_TESTONLY_*: for forkaudit's own tests, not for users) ----

def testonly_child():
    """(hang, full), the switches every child asks (in one function, from os.environ's own
    table with one dict call each where it has one, POSIX: os.environ.get() runs four Python
    functions, and on 3.9-3.11 each function a child runs is a page or two copied):

    FORKAUDIT_TESTONLY_AUDIT_HANG=1: the child-side audit blocks for ever (asleep on a lock)
    before it writes anything: a child hung inside its own audit, for the pytest plugin's
    watcher tests.
    FORKAUDIT_TESTONLY_FULL_AUDIT=1: every child runs the full audit, even of a fork the
    parent and the scan prove clean (cleanfork.py): for the tests that compare the two."""
    data = getattr(os.environ, "_data", None)
    if type(data) is dict and os.name == "posix":
        return (data.get(b"FORKAUDIT_TESTONLY_AUDIT_HANG") == b"1",
                data.get(b"FORKAUDIT_TESTONLY_FULL_AUDIT") == b"1")
    return (os.environ.get("FORKAUDIT_TESTONLY_AUDIT_HANG") == "1",
            os.environ.get("FORKAUDIT_TESTONLY_FULL_AUDIT") == "1")


def testonly_mortal():
    """FORKAUDIT_TESTONLY_MORTAL=1: forkaudit's own code is not made immortal (cpython_layout.
    immortalize_own), for the tests that compare the pages a child writes with and without."""
    return os.environ.get("FORKAUDIT_TESTONLY_MORTAL") == "1"
