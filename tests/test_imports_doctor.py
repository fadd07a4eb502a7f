"""forkaudit imports (the import-time audit) and forkaudit doctor, run as commands."""
import json
import os
import re
import sys
import textwrap

from conftest import run_bounded

TIMEOUT = 120

HOLDER = '''
import threading
LOCK = threading.Lock()
_ready = threading.Event()

def hold():
    with LOCK:
        _ready.set()
        threading.Event().wait()

worker = threading.Thread(target=hold, name="holder", daemon=True)
worker.start()
_ready.wait(10)
'''

IDLE = '''
import threading
_stop = threading.Event()
idler = threading.Thread(target=_stop.wait, name="idler", daemon=True)
idler.start()
'''

C_THREAD = r'''
#define _GNU_SOURCE
#include <pthread.h>
#include <unistd.h>
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t c = PTHREAD_COND_INITIALIZER;
static int ready;
static void *worker(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "cworker-fa");
    pthread_mutex_lock(&m); ready = 1; pthread_cond_signal(&c); pthread_mutex_unlock(&m);
    for (;;) pause();
    return 0;
}
int start_worker(void) {
    pthread_t t;
    if (pthread_create(&t, 0, worker, 0)) return -1;
    pthread_mutex_lock(&m); while (!ready) pthread_cond_wait(&c, &m); pthread_mutex_unlock(&m);
    return 0;
}
'''


def forkaudit(args, cwd, env=None):
    full = {k: v for k, v in os.environ.items() if not k.startswith("FORKAUDIT")}
    full.update(env or {})
    return run_bounded([sys.executable, "-m", "forkaudit", *args], cwd=str(cwd), env=full,
                       text=True, timeout=TIMEOUT)


def write(tmp_path, name, code):
    (tmp_path / (name + ".py")).write_text(textwrap.dedent(code))


def blocks(stdout):
    """One block per module: blocks start at a line without indentation."""
    return re.split(r"\n\n(?=\S)", stdout.strip())


def records(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_thread_holding_a_lock_at_import_is_unsafe(tmp_path, schema_validator):
    write(tmp_path, "holdmod", HOLDER)
    write(tmp_path, "plainmod", "import threading\nLOCK = threading.Lock()\n")  # positive control
    out = tmp_path / "imports.jsonl"
    r = forkaudit(["imports", "plainmod", "holdmod", "--json", str(out)], tmp_path)
    assert r.returncode == 1, r
    found = blocks(r.stdout)
    assert found[0].startswith("plainmod: clean"), r.stdout
    holder = next(b for b in found if b.startswith("holdmod:"))
    assert holder.splitlines()[0].startswith("holdmod: fork-unsafe"), holder
    assert "'holder' target holdmod.hold" in holder
    assert "started at %s:12" % (tmp_path / "holdmod.py") in holder, holder
    assert "python_lock holdmod.LOCK" in holder and "owner: thread 'holder'" in holder
    recs = {r["module"]: r for r in records(out)}
    assert recs["plainmod"]["verdict"] == "clean" and recs["holdmod"]["verdict"] == "unsafe"
    child = recs["holdmod"]["trials"][0]["record"]
    assert not schema_validator.is_valid(dict(child, forkaudit="x"))  # the validator can fail
    assert schema_validator.is_valid(child), list(schema_validator.iter_errors(child))
    assert [h["object"]["path"] for h in child["hazards"]] == ["holdmod.LOCK"]
    assert recs["holdmod"]["threads"][0]["started_at"]["line"] == 12


def test_idle_thread_is_risky_and_strict_exits_3(tmp_path):
    write(tmp_path, "idlemod", IDLE)
    r = forkaudit(["imports", "idlemod"], tmp_path)
    assert r.returncode == 0, r
    assert r.stdout.startswith("idlemod: fork-risky"), r.stdout
    assert "'idler'" in r.stdout and "warning: fork-risky" in r.stderr
    r = forkaudit(["imports", "--strict", "idlemod"], tmp_path)
    assert r.returncode == 3, r


def test_json_and_decimal_are_clean(tmp_path):
    r = forkaudit(["imports", "--repeat", "2", "json", "decimal"], tmp_path)
    assert r.returncode == 0, r
    heads = [b.splitlines()[0] for b in blocks(r.stdout)]
    assert heads == ["json: clean", "decimal: clean"], r.stdout
    assert r.stderr == ""
    assert "trial fork 2/2: child" in r.stdout


def test_import_error_is_exit_2_with_one_line(tmp_path):
    write(tmp_path, "badmod", "raise ValueError('boom at import')\n")
    r = forkaudit(["imports", "badmod"], tmp_path)
    assert r.returncode == 2, r
    assert r.stderr.splitlines() == ["forkaudit imports: cannot import badmod: ValueError: boom at import"], r
    r = forkaudit(["imports", "json"], tmp_path)  # positive control
    assert r.returncode == 0, r


def test_c_started_thread_is_named_by_kernel_name(tmp_path, build_c):
    lib = build_c("cthread", C_THREAD)
    write(tmp_path, "cmod", "import ctypes\nlib = ctypes.CDLL(%r)\nassert lib.start_worker() == 0\n" % lib)
    out = tmp_path / "imports.jsonl"
    r = forkaudit(["imports", "--json", str(out), "cmod"], tmp_path)
    assert r.returncode == 0, r
    assert r.stdout.startswith("cmod: fork-risky"), r.stdout
    assert "'cworker-fa' (kernel name)" in r.stdout and "runs code of %s" % lib in r.stdout, r.stdout
    (rec,) = records(out)
    (t,) = rec["native_threads"]
    assert (t["name"], t["library"]) == ("cworker-fa", lib)
    assert rec["threads"] == []


def test_at_fork_hooks_are_listed(tmp_path):
    write(tmp_path, "hookmod", '''
        import os
        def reset():
            pass
        os.register_at_fork(after_in_child=reset)
    ''')
    r = forkaudit(["imports", "hookmod", "json"], tmp_path)
    assert r.returncode == 0, r
    assert "after_in_child=hookmod.reset  at %s:5" % (tmp_path / "hookmod.py") in r.stdout, r.stdout
    json_block = blocks(r.stdout)[1]
    assert "at-fork hooks: not observed" in json_block  # json was imported by forkaudit itself


def test_hanging_trial_child_is_killed_and_unsafe(tmp_path):
    write(tmp_path, "hangmod", '''
        import os, threading
        LOCK = threading.Lock()
        LOCK.acquire()  # the main thread holds it: not a vanished thread's lock
        def child():
            with LOCK:  # the child waits for itself forever
                pass
        os.register_at_fork(after_in_child=child)
    ''')
    r = forkaudit(["imports", "--timeout", "1", "hangmod"], tmp_path)
    assert r.returncode == 1, r
    assert r.stdout.startswith("hangmod: fork-unsafe (1 of 1 trial children did not come back)"), r.stdout
    assert "killed, hung" in r.stdout


def test_usage_errors(tmp_path):
    r = forkaudit(["imports"], tmp_path)
    assert r.returncode == 2
    r = forkaudit(["imports", "--repeat", "0", "json"], tmp_path)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1


def test_doctor(tmp_path):
    r = forkaudit(["doctor"], tmp_path)
    assert r.returncode == 0, r
    rows = {line.split("  ")[0]: line for line in r.stdout.splitlines()}
    assert "ok" in rows["platform"] and "glibc" in rows["platform"]
    assert rows["C-level scan"].split()[2] == "ok", r.stdout
    assert ".pth activation" in rows and "preload library" in rows
    # this machine's kernel keeps the counters a reused scan relies on (csrc/quiet.c)
    assert rows["reused clean scans"].split()[3] == "ok", r.stdout
    assert "FORKAUDIT_JSON is not set" in r.stdout
    r = forkaudit(["doctor"], tmp_path, env={"FORKAUDIT_JSON": str(tmp_path / "nodir" / "x.jsonl")})
    assert "cannot write the report file" in r.stdout, r.stdout
    r = forkaudit(["doctor"], tmp_path, env={"FORKAUDIT_JSON": str(tmp_path / "x.jsonl")})
    assert "is writable" in r.stdout
