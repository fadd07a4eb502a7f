"""forkaudit doctor

What works on this machine, as a short table: platform and libc, the C-level
scan and its glibc layout check, whether a clean scan can be reused, the .pth activation in this environment, the
Python version and its lock layout check, the preload library, and the report
path when FORKAUDIT_JSON is set. Exit status 1 when the core cannot work here.
"""
import os
import platform
import site
import sys
import sysconfig


def add_parser(sub):
    p = sub.add_parser("doctor", help="what works on this machine", description=__doc__.split("\n\n")[1])
    p.set_defaults(func=main)
    return p


def site_dirs():
    dirs = []
    for d in [sysconfig.get_paths().get("purelib"), sysconfig.get_paths().get("platlib")]:
        if d and d not in dirs:
            dirs.append(d)
    try:
        for d in site.getsitepackages() + [site.getusersitepackages()]:
            if d not in dirs:
                dirs.append(d)
    except AttributeError:  # virtualenv's old site.py
        pass
    return dirs


def checks():
    """[(what, ok: True/False/None for 'not applicable', detail, core)]; core rows decide the exit status."""
    rows = []
    libc, version = platform.libc_ver()
    linux = sys.platform.startswith("linux")
    rows.append(("platform", linux, "%s %s, %s" % (sys.platform, platform.machine(),
                                                  "%s %s" % (libc, version) if libc else "libc unknown"), True))
    py_ok = sys.version_info[:2] >= (3, 9) and hasattr(os, "register_at_fork")
    rows.append(("python", py_ok, "%s %s" % (platform.python_implementation(), platform.python_version()), True))
    try:
        from .. import native
        rows.append(("C-level scan", bool(native.available), native.reason or "glibc layout verified", False))
    except Exception as e:  # noqa: BLE001
        rows.append(("C-level scan", False, "cannot load the native shim (%s)" % e, False))
    try:
        from .. import cpython_layout
        rows.append(("Python lock layout", bool(cpython_layout.verified),
                     "verified on real locks" if cpython_layout.verified else
                     "not verified: lock state read through the objects' own view", False))
    except Exception as e:  # noqa: BLE001
        rows.append(("Python lock layout", False, "cannot check (%s)" % e, False))
    try:
        from .. import threads
        ok, why = threads.scheduler_counters()
        rows.append(("reused clean scans", ok,
                     "a fork whose other threads have not run since a clean scan reuses it (%s)" % why if ok else
                     "%s: every child scans (the results are the same, the cost is the scan's)" % why, False))
    except Exception as e:  # noqa: BLE001
        rows.append(("reused clean scans", False, "cannot check (%s)" % e, False))
    found = [d for d in site_dirs() if os.path.isfile(os.path.join(d, "forkaudit.pth"))]
    rows.append((".pth activation", bool(found),
                 "forkaudit.pth in %s" % found[0] if found else
                 "forkaudit.pth not in this environment's site-packages: FORKAUDIT=... and `forkaudit run` "
                 "will not activate it in new interpreters", False))
    rows.append(("preload library", None, "not built (preload mode does not exist yet)", False))
    path = os.environ.get("FORKAUDIT_JSON")
    if path:
        from ..errors import SettingsError
        from ..settings import check_json_path
        try:
            rows.append(("report path", True, "%s is writable" % check_json_path(path), False))
        except SettingsError as e:
            rows.append(("report path", False, str(e), False))
    else:
        rows.append(("report path", None, "FORKAUDIT_JSON is not set", False))
    return rows


def main(args=None):
    rows = checks()
    width = max(len(r[0]) for r in rows)
    mark = {True: "ok", False: "NO", None: "-"}
    for what, ok, detail, _core in rows:
        print("%-*s  %-2s  %s" % (width, what, mark[ok], detail))
    broken = [what for what, ok, _d, core in rows if core and not ok]
    if broken:
        print("forkaudit cannot work here (%s)" % ", ".join(broken))
        return 1
    return 0
