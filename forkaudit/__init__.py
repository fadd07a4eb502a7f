"""forkaudit: explains fork-after-threads deadlocks.

    import forkaudit
    forkaudit.install(policy="warn", json_path=None, scan="full")

At every fork, forkaudit names the locks the child inherits held by threads
that do not exist in it: which lock, which thread held it, what that thread
was doing, and where the lock lives.
"""
from .errors import ForkHazardError, ForkHazardWarning, SettingsError
from .hooks import install, installed, last_event, uninstall

__version__ = "0.1.0"
__all__ = ["install", "uninstall", "installed", "last_event", "ForkHazardWarning", "ForkHazardError",
           "SettingsError", "__version__"]
