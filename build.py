"""cffi builder for forkaudit's native shim (``forkaudit._shim``).

Used by setup.py through ``cffi_modules=["build.py:ffibuilder"]``. The C
interface is read from csrc/shim.h, so the header is the one place it is
declared. The extension uses no Python API of its own and is built against
the limited API (abi3): one wheel serves CPython 3.9 and later.

Build switches (environment variables, read when the extension is compiled):

  FORKAUDIT_WERROR=1    add -Werror (scripts/test-all.sh sets it: the shim must build
                        clean with -Wall -Wextra; not the default, so that a user's newer
                        compiler with new warnings can still install the package)
  FORKAUDIT_SANITIZE=1  an AddressSanitizer + UBSan build (scripts/sanitize.sh): load it
                        with LD_PRELOAD=$(gcc -print-file-name=libasan.so); never ship it

Note: this file shadows the PyPA ``build`` frontend under ``python -m build``
when run from the project root; use ``pip wheel .`` or ``pyproject-build``.
"""
import os
import re
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = "csrc"
SOURCES = ["atfork.c", "scan.c", "validate.c", "memory.c", "layout_check.c", "watchdog.c", "quiet.c"]


def interface(header):
    """The cdef for cffi: shim.h without comments and preprocessor lines, but with its constants."""
    with open(header) as f:
        text = f.read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    lines = []
    for line in text.splitlines():
        if line.startswith("#"):
            if re.match(r"#define FA_\w+ \d+$", line.strip()):
                lines.append(line.strip())
            continue
        lines.append(line)
    return "\n".join(lines)


def flag(name):
    return os.environ.get(name, "").strip() not in ("", "0")


COMPILE = ["-std=c99", "-O3", "-Wall", "-Wextra", "-fvisibility=hidden"]
LINK = []
if flag("FORKAUDIT_WERROR"):
    COMPILE.append("-Werror")
if flag("FORKAUDIT_SANITIZE"):
    # -O1 -g: readable reports; no recovery: any UBSan finding aborts, so a test fails
    COMPILE = [f for f in COMPILE if not f.startswith("-O")] + [
        "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
        "-fno-omit-frame-pointer"]
    LINK += ["-fsanitize=address,undefined"]

ffibuilder = FFI()
ffibuilder.cdef(interface(os.path.join(HERE, CSRC, "shim.h")))
ffibuilder.set_source(
    "forkaudit._shim",
    '#include "shim.h"',
    sources=[os.path.join(CSRC, name) for name in SOURCES],
    include_dirs=[CSRC],
    extra_compile_args=COMPILE,
    extra_link_args=LINK,
    libraries=["dl"] if sys.platform.startswith("linux") else [],
    py_limited_api=True,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
