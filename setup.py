"""setuptools glue: the cffi extension, and the .pth file that activates
forkaudit at interpreter start when FORKAUDIT is set."""
import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "forkaudit.pth"


class build_py_with_pth(build_py):
    """Put forkaudit.pth at the top of the build, so it lands in site-packages."""

    def run(self):
        super().run()
        self.copy_file(PTH, os.path.join(self.build_lib, PTH), preserve_mode=0)


setup(
    cffi_modules=["build.py:ffibuilder"],
    cmdclass={"build_py": build_py_with_pth},
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
