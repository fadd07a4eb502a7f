"""Every forkaudit setting, read and validated in one place.

Environment variables (read at interpreter start by the .pth hook, or by
``forkaudit run``, which sets them for the program it runs):

  FORKAUDIT       1 | warn | record | abort | raise   (1 means warn)
  FORKAUDIT_JSON  path of a JSON-lines report file (appended to)
  FORKAUDIT_SCAN  full | libs | off                    (default full)
  FORKAUDIT_SCAN_BUDGET_MS  wall time of the child-side C scan, ms (default 200; 0: none)
  FORKAUDIT_SCAN_BUDGET_MB  bytes it reads, MiB                    (default 2048; 0: none)
"""
import os
from dataclasses import dataclass
from typing import Optional

from .errors import SettingsError

POLICIES = ("warn", "record", "abort", "raise")
SCANS = ("full", "libs", "off")
ABORT_STATUS = 86  # exit status of a child stopped by the 'abort' policy


@dataclass(frozen=True)
class Settings:
    policy: str = "warn"
    json_path: Optional[str] = None
    scan: str = "full"
    # The child-side C scan's budgets. 200 ms: the child of a process whose lock another
    # thread held waits at most that long before its first line (a pause no supervisor
    # timeout notices), and at the scan's measured speed it covers ~1-2 GB, all of most
    # workers. 2 GiB: bounds the memory read whatever the CPU speed (on a fast idle
    # machine the byte budget ends first, on a loaded one the time budget).
    scan_budget_ms: int = 200
    scan_budget_mb: int = 2048


def check_policy(value):
    if value not in POLICIES:
        raise SettingsError("policy must be one of %s, not %r" % (", ".join(POLICIES), value))
    return value


def check_scan(value):
    if value not in SCANS:
        raise SettingsError("scan must be one of %s, not %r" % (", ".join(SCANS), value))
    return value


def check_json_path(path):
    """Validate a report path now, so a bad one is one line at start-up, not a lost report.

    The file is opened the way the child will open it (append, create 0600,
    never through a symlink) and closed again. Returns the absolute path.
    """
    if path is None:
        return None
    if not path:
        raise SettingsError("the report path is empty")
    path = os.path.abspath(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise SettingsError("cannot write the report file %s: %s" % (path, e.strerror or e)) from None
    os.close(fd)
    return path


def make(policy="warn", json_path=None, scan="full"):
    return Settings(check_policy(policy), check_json_path(json_path), check_scan(scan))


def from_environ(environ=None):
    """Settings from FORKAUDIT, FORKAUDIT_JSON, FORKAUDIT_SCAN; None when FORKAUDIT is unset or empty."""
    env = os.environ if environ is None else environ
    raw = env.get("FORKAUDIT", "").strip()
    if not raw:
        return None
    policy = "warn" if raw == "1" else raw.lower()
    if policy not in POLICIES:
        raise SettingsError("FORKAUDIT must be 1, %s; got %r" % (", ".join(POLICIES), raw))
    scan = env.get("FORKAUDIT_SCAN", "full").strip().lower() or "full"
    if scan not in SCANS:
        raise SettingsError("FORKAUDIT_SCAN must be one of %s; got %r" % (", ".join(SCANS), scan))
    json_path = env.get("FORKAUDIT_JSON") or None
    budgets = []
    for name, default in (("FORKAUDIT_SCAN_BUDGET_MS", 200), ("FORKAUDIT_SCAN_BUDGET_MB", 2048)):
        value = env.get(name, "").strip()
        if value and not (value.isascii() and value.isdigit() and len(value) <= 9):
            raise SettingsError("%s must be a whole number (0: no limit); got %r" % (name, value[:40]))
        budgets.append(int(value) if value else default)
    return Settings(policy, check_json_path(json_path), scan, *budgets)
