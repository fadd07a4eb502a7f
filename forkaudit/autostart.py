"""Activation at interpreter start, imported by forkaudit.pth when FORKAUDIT is set and not off.

forkaudit.pth runs in every Python process of the environment, so it stays one
cheap line: it imports this module only when FORKAUDIT has a value other than
the off values (settings.OFF_VALUES) and python was not started with -E or -I.
Everything else (privileged exec, bad values) is decided here, by settings.

A bad setting, or an unsupported platform, gives one line on stderr and the
program runs unaudited.
"""
import os


def start():
    try:
        from .settings import from_environ
        settings = from_environ()
        if settings is None:
            return
        from .hooks import activate
        activate(settings, fresh=True)   # at interpreter start: nothing inherited from a fork
    except Exception as e:  # noqa: BLE001 - never stop the program from starting
        message = " ".join(str(e).split()) or type(e).__name__
        if len(message) > 300:  # settings shorten what they echo; anything else is cut here
            message = message[:300] + "..."
        try:
            os.write(2, ("forkaudit: %s; running unaudited\n" % message).encode("utf-8", "replace"))
        except OSError:  # no stderr: nowhere to say it
            pass


start()
