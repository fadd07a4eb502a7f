"""C-level locks: each glibc mutex kind and the rwlock, held by a thread at the fork.

A tiny C library is compiled per session; a snippet loads it with ctypes, lets
named Python threads take its locks (they block inside the library), forks,
and the child's JSON record must name each lock, its owner and its symbol.
"""
import os
import sys

import pytest

# C-level lock detection is what this module tests (skips with the platform reason elsewhere)
pytestmark = pytest.mark.c_level

LIB = r"""
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

pthread_mutex_t tl_normal = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t tl_recursive = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
pthread_mutex_t tl_errorcheck = PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP;
pthread_mutex_t tl_adaptive = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP;
pthread_mutex_t tl_robust;
pthread_mutex_t tl_pi;
pthread_rwlock_t tl_rwlock = PTHREAD_RWLOCK_INITIALIZER;
static pthread_mutex_t tl_hidden = PTHREAD_MUTEX_INITIALIZER;   /* not exported: .symtab only */
pthread_mutex_t tl_released = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t tl_cond_mutex = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t tl_cond = PTHREAD_COND_INITIALIZER;
pthread_mutex_t *tl_heap;

__attribute__((constructor)) static void init(void) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&tl_robust, &a);
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
    pthread_mutex_init(&tl_pi, &a);
    tl_heap = malloc(sizeof *tl_heap);
    pthread_mutex_init(tl_heap, NULL);
}

static void park(int ready, int release) {
    char c = 'x';
    (void)!write(ready, &c, 1);
    (void)!read(release, &c, 1);
}

#define HOLDER(name, lock_expr, unlock_expr) \
    int name(int ready, int release) { lock_expr; park(ready, release); unlock_expr; return 0; }

HOLDER(hold_normal, pthread_mutex_lock(&tl_normal), pthread_mutex_unlock(&tl_normal))
HOLDER(hold_recursive, (pthread_mutex_lock(&tl_recursive), pthread_mutex_lock(&tl_recursive)),
       (pthread_mutex_unlock(&tl_recursive), pthread_mutex_unlock(&tl_recursive)))
HOLDER(hold_errorcheck, pthread_mutex_lock(&tl_errorcheck), pthread_mutex_unlock(&tl_errorcheck))
HOLDER(hold_adaptive, pthread_mutex_lock(&tl_adaptive), pthread_mutex_unlock(&tl_adaptive))
HOLDER(hold_robust, pthread_mutex_lock(&tl_robust), pthread_mutex_unlock(&tl_robust))
HOLDER(hold_pi, pthread_mutex_lock(&tl_pi), pthread_mutex_unlock(&tl_pi))
HOLDER(hold_write, pthread_rwlock_wrlock(&tl_rwlock), pthread_rwlock_unlock(&tl_rwlock))
HOLDER(hold_read, pthread_rwlock_rdlock(&tl_rwlock), pthread_rwlock_unlock(&tl_rwlock))
HOLDER(hold_hidden, pthread_mutex_lock(&tl_hidden), pthread_mutex_unlock(&tl_hidden))
HOLDER(hold_heap, pthread_mutex_lock(tl_heap), pthread_mutex_unlock(tl_heap))
HOLDER(take_and_release, (pthread_mutex_lock(&tl_released), pthread_mutex_unlock(&tl_released)), (void)0)

/* quiet: waits on a condition variable, which releases the mutex */
int wait_on_cond(int ready, int release) {
    char c = 'x';
    (void)release;
    pthread_mutex_lock(&tl_cond_mutex);
    (void)!write(ready, &c, 1);
    pthread_cond_wait(&tl_cond, &tl_cond_mutex);
    pthread_mutex_unlock(&tl_cond_mutex);
    return 0;
}

/* returns once wait_on_cond's thread is inside pthread_cond_wait: it holds the mutex until
 * then (its ready byte is written before the wait), and the wait releases it */
int cond_mutex_free(void) {
    pthread_mutex_lock(&tl_cond_mutex);
    return pthread_mutex_unlock(&tl_cond_mutex);
}

int lock_here(void) { return pthread_mutex_lock(&tl_normal); }
int unlock_here(void) { return pthread_mutex_unlock(&tl_normal); }

/* a thread Python never sees: created in C, named through pthread_setname_np */
static int c_ready[2], c_release[2];
static void *c_thread(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "c-only-thread");
    pthread_mutex_lock(&tl_normal);
    park(c_ready[1], c_release[0]);
    pthread_mutex_unlock(&tl_normal);
    return NULL;
}
int start_c_thread(void) {
    pthread_t t;
    char c;
    if (pipe(c_ready) || pipe(c_release)) return -1;
    pthread_create(&t, NULL, c_thread, NULL);
    return read(c_ready[0], &c, 1) == 1 ? 0 : -1;
}
"""

SNIPPET = r"""
import ctypes, os, sys, threading
import forkaudit

lib = ctypes.CDLL(sys.argv[1])
scan = sys.argv[2]
holders = sys.argv[3].split(",") if sys.argv[3] else []
forkaudit.install(policy="record", json_path=os.environ["FORKAUDIT_TEST_REPORT"], scan=scan)
releases = []
for spec in holders:
    func, name = spec.split(":")
    ready_r, ready_w = os.pipe()
    release_r, release_w = os.pipe()
    t = threading.Thread(target=getattr(lib, func), args=(ready_w, release_r), name=name, daemon=True)
    t.start()
    assert os.read(ready_r, 1)
    if func == "wait_on_cond":
        assert lib.cond_mutex_free() == 0   # (its ready byte comes before its wait)
    releases.append(release_w)
extra = sys.argv[4] if len(sys.argv) > 4 else ""
if extra == "c-thread":
    assert lib.start_c_thread() == 0
if extra == "forker-holds":
    lib.lock_here()
if extra == "raw-thread":   # a thread with no threading.Thread: no native id known to Python
    import _thread
    raw_ready_r, raw_ready_w = os.pipe()
    raw_release_r, raw_release_w = os.pipe()
    def raw_holder():
        lib.hold_normal(raw_ready_w, raw_release_r)
    _thread.start_new_thread(raw_holder, ())
    assert os.read(raw_ready_r, 1)
pid = os.fork()
if pid == 0:
    os._exit(0)
_, status = os.waitpid(pid, 0)
if extra == "forker-holds":
    lib.unlock_here()
print("child status", status)
"""


@pytest.fixture(scope="module")
def testlib(build_c):
    return build_c("forkaudit_testlocks", LIB)


@pytest.fixture
def fork_with(run_python, testlib):
    def run(holders, scan="full", extra=""):
        spec = ",".join("%s:%s" % pair for pair in holders)
        result = run_python(SNIPPET, args=(testlib, scan, spec, extra))
        assert result.returncode == 0, result
        assert len(result.children) == 1, result
        return result.children[0]
    return run


def by_owner(record, name):
    return [h for h in record["hazards"] if (h.get("owner") or {}).get("name") == name]


@pytest.mark.parametrize("func,symbol,kind", [
    ("hold_normal", "tl_normal", "normal mutex"),
    ("hold_recursive", "tl_recursive", "recursive mutex (locked 2 times)"),
    ("hold_errorcheck", "tl_errorcheck", "error-checking mutex"),
    ("hold_adaptive", "tl_adaptive", "adaptive mutex"),
    ("hold_robust", "tl_robust", "normal robust mutex"),
    ("hold_pi", "tl_pi", "normal priority-inheritance mutex"),
])
def test_each_mutex_kind_is_found_and_named(fork_with, testlib, func, symbol, kind):
    rec = fork_with([(func, "holder-" + func)])
    hazards = by_owner(rec, "holder-" + func)
    assert len(hazards) == 1, rec["hazards"]
    h = hazards[0]
    assert h["kind"] == "pthread_mutex"
    assert h["symbol"] == symbol
    assert os.path.realpath(h["library"]) == os.path.realpath(testlib)
    assert h["why"].startswith(kind), h["why"]
    assert "does not exist in the child" in h["why"]
    assert h["owner"]["native_id"] in [t["native_id"] for t in rec["threads"]]
    assert len(rec["hazards"]) == 1, rec["hazards"]


def test_write_held_rwlock(fork_with):
    rec = fork_with([("hold_write", "writer")])
    assert [(h["kind"], h["symbol"], h["owner"]["name"]) for h in rec["hazards"]] == [
        ("pthread_rwlock", "tl_rwlock", "writer")]


def test_read_held_rwlock_is_not_reported_in_process(fork_with):
    # glibc keeps no reader identity: in-process mode cannot name the owner, so it says nothing
    rec = fork_with([("hold_read", "reader")])
    assert rec["hazards"] == []


def test_static_mutex_is_named_from_the_symbol_table(fork_with):
    rec = fork_with([("hold_hidden", "hidden")])
    assert [(h["symbol"], h["owner"]["name"]) for h in rec["hazards"]] == [("tl_hidden", "hidden")]


def test_heap_mutex(fork_with):
    rec = fork_with([("hold_heap", "heap-holder")])
    assert len(rec["hazards"]) == 1
    h = rec["hazards"][0]
    assert h["owner"]["name"] == "heap-holder"
    assert h["library"] in ("[heap]", "[anon]")
    assert h["symbol"] is None


def test_several_owners_at_once(fork_with):
    rec = fork_with([("hold_normal", "a"), ("hold_errorcheck", "b"), ("hold_write", "c")])
    got = sorted((h["owner"]["name"], h["symbol"]) for h in rec["hazards"])
    assert got == [("a", "tl_normal"), ("b", "tl_errorcheck"), ("c", "tl_rwlock")]


def test_lock_released_before_the_fork_is_not_reported(fork_with):
    rec = fork_with([("take_and_release", "done-already")])
    assert rec["hazards"] == []


def test_thread_waiting_on_a_condvar_holds_nothing(fork_with):
    rec = fork_with([("wait_on_cond", "cond-waiter")])
    assert rec["hazards"] == []
    assert "cond-waiter" in [t["name"] for t in rec["threads"]]


def test_forking_thread_own_mutex_is_not_reported(fork_with):
    rec = fork_with([], extra="forker-holds")
    assert rec["hazards"] == []


def test_thread_python_never_saw_is_named_from_proc(fork_with):
    rec = fork_with([], extra="c-thread")
    assert [(h["owner"]["name"], h["symbol"]) for h in rec["hazards"]] == [("c-only-thread", "tl_normal")]
    c_threads = [t for t in rec["threads"] if t["name"] == "c-only-thread"]
    assert len(c_threads) == 1 and c_threads[0]["python"] is False and c_threads[0]["ident"] is None
    assert rec["hazards"][0]["held_at"] == []


def test_thread_started_without_threading_is_one_thread_with_its_stack(fork_with):
    """A thread started by _thread.start_new_thread (or a C library's thread running Python)
    has a Python stack but no threading.Thread, so no native id in Python: the child learns it
    from glibc's struct pthread, and the thread is listed once, its lock's owner with it (before:
    twice, a Python thread with no id and a nameless native one, the owner without its stack).
    The control: a threading.Thread holding another mutex, known by its id all along."""
    rec = fork_with([("hold_errorcheck", "named")], extra="raw-thread")
    [raw] = [t for t in rec["threads"] if any(f["function"] == "raw_holder" for f in t["stack"])]
    assert raw["python"] is True and raw["native_id"] is not None, rec["threads"]
    assert [t["native_id"] for t in rec["threads"]].count(raw["native_id"]) == 1, rec["threads"]
    [h] = [h for h in rec["hazards"] if h["symbol"] == "tl_normal"]
    assert h["owner"]["native_id"] == raw["native_id"], h
    [named] = by_owner(rec, "named")
    assert named["symbol"] == "tl_errorcheck", named


def test_scan_off_reports_no_c_lock_but_still_records(fork_with):
    rec = fork_with([("hold_normal", "holder")], scan="off")
    assert rec["hazards"] == []
    assert rec["scan"] is None
    assert "holder" in [t["name"] for t in rec["threads"]]


def test_scan_libs_finds_library_data_but_not_heap(fork_with):
    rec = fork_with([("hold_normal", "static-holder"), ("hold_heap", "heap-holder")], scan="libs")
    assert [h["owner"]["name"] for h in rec["hazards"]] == ["static-holder"]
    assert rec["scan"]["mode"] == "libs"


def test_scan_statistics_are_recorded(fork_with):
    rec = fork_with([("hold_normal", "holder")])
    scan = rec["scan"]
    assert scan["mode"] == "full"
    assert scan["mappings"] > 0 and scan["bytes"] > 0 and scan["seconds"] >= 0


def test_layout_check_passes_on_this_glibc():
    import forkaudit.native as native
    assert native.available, native.reason
    assert "verified" in native.reason
