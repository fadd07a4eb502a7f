"""Cost of the pytest plugin and of `forkaudit imports`, as ratios measured in one run.

    python bench/plugin_cost.py [--tests 1000] [--rounds 5] [--modules json logging concurrent.futures sqlite3]

1. A generated suite of --tests trivial tests that never fork (half plain functions, half
   using a fixture, a tenth parametrized), run with `python -m pytest -q` without and with
   `--forkaudit`, round robin (order alternating), --rounds times each: median wall time
   of each and their ratio (target at most 1.05x). Both runs load the plugin (it is
   installed); the first leaves it inert. With --instructions, each is also run once under
   valgrind's callgrind: the instructions executed (user space), a figure the load of a
   shared machine does not move (each run then takes a minute or two).
2. `forkaudit imports MODULES` against `python -c "import MODULES"` (a bare interpreter
   importing the same modules), --rounds times each: median wall time and the difference.
Needs pytest and an installed forkaudit; run it from outside the source tree.
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

SUITE_HEAD = '''
import pytest

@pytest.fixture
def value():
    return 41
'''


def write_suite(folder, n):
    files, per_file = [], 100
    for f in range(0, n, per_file):
        body = [SUITE_HEAD]
        for i in range(f, min(n, f + per_file)):
            if i % 10 == 9:
                body.append("@pytest.mark.parametrize('x', [%d])\ndef test_p%d(x):\n    assert x == %d\n" % (i, i, i))
            elif i % 2:
                body.append("def test_f%d(value):\n    assert value + 1 == 42\n" % i)
            else:
                body.append("def test_t%d():\n    assert sum(range(10)) == 45\n" % i)
        path = os.path.join(folder, "test_gen_%04d.py" % f)
        with open(path, "w") as fh:
            fh.write("\n".join(body))
        files.append(path)
    with open(os.path.join(folder, "pytest.ini"), "w") as fh:
        fh.write("[pytest]\n")
    return files


def cpu_of_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd, cwd, env, cpu=None):
    """Wall time of cmd; its CPU time (and its children's) is appended to `cpu`."""
    c0, t0 = cpu_of_children(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if cpu is not None:
        cpu.append(cpu_of_children() - c0)
    if proc.returncode != 0:
        sys.exit("failed (%d): %s\n%s%s" % (proc.returncode, " ".join(cmd), proc.stdout[-2000:], proc.stderr[-2000:]))
    return seconds, proc.stdout


def instructions(cmd, cwd, env):
    """Instructions the command executes in user space, counted by valgrind's callgrind."""
    proc = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd], cwd=cwd,
                          env=env, capture_output=True, text=True)
    for line in proc.stderr.splitlines():
        if "Collected :" in line:
            return int(line.split(":")[-1])
    sys.exit("valgrind gave no count (%d): %s" % (proc.returncode, proc.stderr[-2000:]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tests", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--instructions", action="store_true",
                    help="also count instructions under valgrind (callgrind), once each")
    ap.add_argument("--modules", nargs="+", default=["json", "logging", "concurrent.futures", "sqlite3"])
    args = ap.parse_args()
    # PYTHONDONTWRITEBYTECODE would make pytest re-compile (assertion-rewrite) the plugin's
    # package on every run, which a normal environment does once: the warm-up run caches it
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORKAUDIT") and k != "PYTHONDONTWRITEBYTECODE"}
    py = sys.executable
    print("Python %s, %d tests, %d rounds" % (sys.version.split()[0], args.tests, args.rounds))

    with tempfile.TemporaryDirectory(prefix="fa-bench-suite-") as folder:
        write_suite(folder, args.tests)
        base = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        runs = {"without": [], "with --forkaudit": []}
        cpu = {"without": [], "with --forkaudit": []}
        summary = ""
        timed(base, folder, env)  # warm the file cache and the .pyc files
        timed(base + ["--forkaudit"], folder, env)
        for r in range(args.rounds):
            order = ["without", "with --forkaudit"]
            if r % 2:
                order.reverse()
            for name in order:
                seconds, out = timed(base + (["--forkaudit"] if name != "without" else []), folder, env, cpu[name])
                runs[name].append(seconds)
                if name != "without":
                    summary = [line for line in out.splitlines() if line.startswith("forkaudit:")][0]
        a, b = statistics.median(runs["without"]), statistics.median(runs["with --forkaudit"])
        print("\n1. pytest plugin on a %d-test suite that does not fork (median of %d runs, wall time of the"
              " whole pytest process)" % (args.tests, args.rounds))
        print("   without --forkaudit   %7.3f s   (runs: %s)" % (a, ", ".join("%.3f" % s for s in runs["without"])))
        print("   with    --forkaudit   %7.3f s   (runs: %s)" % (b, ", ".join("%.3f" % s for s in runs["with --forkaudit"])))
        print("   wall ratio %.3fx  (target at most 1.05x: %s)" % (b / a, "PASS" if b / a <= 1.05 else "MISS"))
        ca, cb = statistics.median(cpu["without"]), statistics.median(cpu["with --forkaudit"])
        print("   CPU time (user+sys of pytest and its children, median): without %.3f s, with %.3f s: "
              "ratio %.3fx  (%s)" % (ca, cb, cb / ca, "PASS" if cb / ca <= 1.05 else "MISS"))
        print("   (on a loaded machine wall and CPU time move by more than the difference: --instructions"
              " counts what the load does not move; what --forkaudit adds: its"
              " light at-fork hooks and a per-session report file, once, and one stat per call and"
              " teardown phase; the flow, the native shim and the watcher process wait for a fork)")
        print("   its summary line: %s" % summary)
        if args.instructions:
            ia, ib = instructions(base, folder, env), instructions(base + ["--forkaudit"], folder, env)
            print("   instructions (valgrind callgrind, user space, one run each): without %d M, with %d M:"
                  " ratio %.3fx  (%s)" % (ia // 10 ** 6, ib // 10 ** 6, ib / ia, "PASS" if ib / ia <= 1.05 else "MISS"))

    mods = args.modules
    bare_cmd = [py, "-c", "import " + ", ".join(mods)]
    audit_cmd = [py, "-m", "forkaudit", "imports", *mods]
    times = {"bare": [], "audit": []}
    with tempfile.TemporaryDirectory() as cwd:
        timed(audit_cmd, cwd, env)
        for r in range(args.rounds):
            for name in (["bare", "audit"] if r % 2 == 0 else ["audit", "bare"]):
                times[name].append(timed(bare_cmd if name == "bare" else audit_cmd, cwd, env)[0])
    a, b = statistics.median(times["bare"]), statistics.median(times["audit"])
    print("\n2. forkaudit imports %s (median of %d runs)" % (" ".join(mods), args.rounds))
    print("   python -c 'import %s'   %7.3f s" % (", ".join(mods), a))
    print("   forkaudit imports ...          %7.3f s   (+%.3f s: the CLI, the audit interpreter, forkaudit's "
          "start-up, %d trial forks)" % (b, b - a, len(mods)))


if __name__ == "__main__":
    main()
