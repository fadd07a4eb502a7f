"""Shared helpers for forkaudit's tests.

Tests run against the *installed* package (there is no tests/__init__.py and
the tests never put the source tree on sys.path). Anything that forks runs in
a subprocess with a timeout, so a bug fails a test instead of hanging CI.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "shared"))
SCHEMA = os.path.join(SHARED, "report.schema.json")
TIMEOUT = 60


class Result:
    def __init__(self, proc, records):
        self.proc = proc
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.records = records

    @property
    def children(self):
        return [r for r in self.records if r.get("side") == "child"]

    def __repr__(self):
        return "<Result rc=%s records=%d stderr=%r>" % (self.returncode, len(self.records), self.stderr[-2000:])


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture
def run_python(tmp_path):
    """Run a Python snippet in a fresh interpreter; returns a Result with its JSON records.

    The snippet gets `REPORT` (a JSON-lines path) in its globals' environment as
    FORKAUDIT_TEST_REPORT; pass env={"FORKAUDIT": ...} to activate through the .pth.
    """
    def run(code, env=None, timeout=TIMEOUT, args=(), python=sys.executable):
        report = str(tmp_path / "report.jsonl")
        script = tmp_path / "snippet.py"
        script.write_text(textwrap.dedent(code))
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("FORKAUDIT")}
        full_env["FORKAUDIT_TEST_REPORT"] = report
        full_env.update(env or {})
        proc = subprocess.run([python, str(script), *args], env=full_env, cwd=str(tmp_path),
                              capture_output=True, text=True, timeout=timeout)
        return Result(proc, read_jsonl(report))
    return run


@pytest.fixture(scope="session")
def cc():
    compiler = os.environ.get("CC", "cc")
    if shutil.which(compiler) is None:
        pytest.skip("no C compiler")
    return compiler


@pytest.fixture(scope="session")
def build_c(tmp_path_factory, cc):
    """Compile C source into a shared library (or executable); returns its path."""
    out = tmp_path_factory.mktemp("native")

    def build(name, source, shared=True, flags=()):
        src = out / (name + ".c")
        src.write_text(textwrap.dedent(source))
        target = out / (("lib%s.so" % name) if shared else name)
        cmd = [cc, "-O1", "-g", "-Wall", "-o", str(target), str(src), "-lpthread", *flags]
        if shared:
            cmd[1:1] = ["-shared", "-fPIC"]
        subprocess.run(cmd, check=True, capture_output=True)
        return str(target)
    return build


@pytest.fixture(scope="session")
def schema_validator():
    jsonschema = pytest.importorskip("jsonschema")
    if not os.path.exists(SCHEMA):
        pytest.skip("the report schema is not beside the repo (%s)" % SCHEMA)
    with open(SCHEMA) as f:
        return jsonschema.Draft202012Validator(json.load(f))
