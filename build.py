"""cffi builder for forkaudit's native shim (``forkaudit._shim``).

Used by setup.py through ``cffi_modules=["build.py:ffibuilder"]``. The C
interface is read from csrc/shim.h, so the header is the one place it is
declared. The extension uses no Python API of its own and is built against
the limited API (abi3): one wheel serves CPython 3.9 and later.

Note: this file shadows the PyPA ``build`` frontend under ``python -m build``
when run from the project root; use ``pip wheel .`` or ``pyproject-build``.
"""
import os
import re
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = "csrc"
SOURCES = ["atfork.c", "scan.c", "validate.c", "memory.c", "layout_check.c"]


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
    return "\n".join(lines).replace("volatile ", "")


ffibuilder = FFI()
ffibuilder.cdef(interface(os.path.join(HERE, CSRC, "shim.h")))
ffibuilder.set_source(
    "forkaudit._shim",
    '#include "shim.h"',
    sources=[os.path.join(CSRC, name) for name in SOURCES],
    include_dirs=[CSRC],
    extra_compile_args=["-std=c99", "-O3", "-Wall", "-Wextra", "-fvisibility=hidden"],
    libraries=["dl"] if sys.platform.startswith("linux") else [],
    py_limited_api=True,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
