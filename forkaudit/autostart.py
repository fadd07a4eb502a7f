"""Activation at interpreter start, imported by forkaudit.pth when FORKAUDIT is set.

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
        activate(settings)
    except Exception as e:  # noqa: BLE001 - never stop the program from starting
        os.write(2, ("forkaudit: %s; running unaudited\n" % e).encode(errors="replace"))


start()
