"""forkaudit: explains fork-after-threads deadlocks.

    import forkaudit
    forkaudit.install(policy="warn", json_path=None, scan="full")

At every fork, forkaudit names the locks the child inherits held by threads
that do not exist in it: which lock, which thread held it, what that thread
was doing, and where the lock lives.
"""
from .errors import ForkHazardError, ForkHazardWarning, SettingsError

_FROM_HOOKS = ("install", "installed", "last_event", "uninstall")


def __getattr__(name):
    """install() and friends load the fork machinery (the native shim) on first use, so that
    importing forkaudit.pytest_plugin (a pytest11 entry point, loaded by every pytest run in
    this environment) costs nothing until --forkaudit asks for it."""
    if name in _FROM_HOOKS:
        from . import hooks
        return getattr(hooks, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))

__version__ = "0.1.0"
__all__ = ["install", "uninstall", "installed", "last_event", "ForkHazardWarning", "ForkHazardError",
           "SettingsError", "__version__"]
