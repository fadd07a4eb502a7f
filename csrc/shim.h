/* The interface of forkaudit's native shim: what build.py hands to cffi.
 * Everything here is plain C: no Python API, so the same code serves every
 * CPython and the limited API (abi3). */
#ifndef FORKAUDIT_SHIM_H
#define FORKAUDIT_SHIM_H

#include <stddef.h>
#include <stdint.h>

#define FA_KIND_MUTEX 1
#define FA_KIND_RWLOCK 2

#define FA_SCAN_OFF 0
#define FA_SCAN_LIBS 1
#define FA_SCAN_FULL 2

#define FA_MAX_TIDS 4096
#define FA_MAX_HITS 512
#define FA_COMM_LEN 16
#define FA_MAX_REJECT 8
#define FA_MAX_PYTYPES 6
#define FA_MAX_PYLOCKS 1024

/* what a registered Python lock type is (fa_set_pylock_types) */
#define FA_PYLOCK_LOCK 1
#define FA_PYLOCK_RLOCK 2
#define FA_PYLOCK_BUFFERED 3 /* _io.BufferedWriter/Reader/Random: their internal lock (fa_set_buffered_layout) */

/* how the scan told written pages from the rest (fa_scan_stats.residency) */
#define FA_RES_NONE 0
#define FA_RES_PAGEMAP_SCAN 1
#define FA_RES_PAGEMAP 2
#define FA_RES_MINCORE 3

/* why a scan stopped early (fa_scan_stats.cut) */
#define FA_CUT_NONE 0
#define FA_CUT_TIME 1
#define FA_CUT_BYTES 2

/* why a scan did not run (fa_scan_stats.not_run) */
#define FA_RAN 0
#define FA_NOT_RUN_OFF 1
#define FA_NOT_RUN_NO_THREADS 2
#define FA_NOT_RUN_LAYOUT 3
#define FA_NOT_RUN_MAPS 4
#define FA_NOT_RUN_REUSED 5 /* no other thread ran since a clean scan's fork: its finding stands (quiet.c) */

typedef struct {
    uint64_t addr;     /* address of the lock */
    int32_t kind;      /* FA_KIND_* */
    int32_t owner;     /* TID of the vanished owner */
    int32_t type;      /* mutex: the kind word; rwlock: the flags word */
    int32_t word;      /* mutex: lock word; rwlock: readers word */
    uint32_t count;    /* mutex: recursion count */
    uint32_t nusers;   /* mutex: users */
} fa_hit;

typedef struct {
    int32_t mode;
    int32_t mappings;   /* mappings scanned */
    int32_t skipped;    /* mappings or pages skipped after a fault */
    int32_t hits;       /* hits recorded */
    int32_t overflow;   /* hits not recorded (FA_MAX_HITS reached) */
    int32_t done;       /* 1 once a scan ran */
    uint64_t bytes;     /* bytes read */
    double seconds;
    int32_t not_run;    /* FA_RAN, or why the scan did not run (FA_NOT_RUN_*) */
    int32_t maps_errno; /* FA_NOT_RUN_MAPS: errno of opening /proc/self/maps */
    int32_t cut;        /* FA_CUT_*: the budget that ended the scan early */
    int32_t residency;  /* FA_RES_*: how pages never written were skipped */
    uint64_t bytes_total; /* candidate bytes (present, private, written) seen, read or not */
    int32_t total_exact;  /* 1: bytes_total covers every mapping; 0: a lower bound */
    int32_t pad;
    uint64_t swapped;     /* bytes of swapped-out pages, not read */
    uint64_t budget_ms;   /* the budgets this scan ran under (0: none) */
    uint64_t budget_bytes;
    int32_t pytypes;         /* Python lock types the scan looked for (0: no discovery) */
    int32_t pylocks;         /* held Python lock objects recorded */
    int32_t pylock_overflow; /* held ones not recorded (FA_MAX_PYLOCKS reached) */
    int32_t pylock_faults;   /* candidates whose read faulted (not lock objects) */
    uint64_t pylocks_free;   /* valid lock objects seen free (not recorded) */
    uint64_t pool_bytes;     /* pymalloc pools of blocks too small for a lock: headers read, not
                                their blocks (fa_set_pools); not in bytes or bytes_total */
    int32_t reused_pid;      /* FA_NOT_RUN_REUSED: the child whose scan is reused */
    int32_t pad2;
    uint64_t reused_bytes;   /* ... and what that scan read, of how many candidate bytes */
    uint64_t reused_bytes_total;
} fa_scan_stats;

/* A CPython lock object found held by the scan (see fa_set_pylock_types). */
typedef struct {
    uint64_t addr;     /* the object (its id()) */
    uint64_t owner;    /* RLock: rlock_owner, the owner's thread ident (0: taken, not yet owned); lock: 0;
                          buffered IO object: its owner ident (0: taken, not yet set) */
    uint64_t count;    /* RLock: rlock_count; lock: 0 */
    int32_t type;      /* index of its type in the registered types */
    uint32_t sem;      /* the value of its semaphore: 0, taken */
} fa_pylock;

/* 1 when glibc's lock layout matches what the scan expects; else 0 and a reason in msg. */
int fa_layout_check(char *msg, size_t msglen);
/* Test-only (set before fa_layout_check): the check's thread starts this many ms late, and
 * the check waits this long for it (default 5000). */
extern int fa_test_layout_delay_ms;
extern int fa_test_layout_wait_ms;
/* Register the pthread_atfork handlers (once; later calls do nothing). 0 on success. */
int fa_register(void);
/* Arming a fork. Each thread that forks through forkaudit's before-fork hook arms its own
 * slot (several threads may be between their hook and their fork at once: the GIL changes
 * hands inside the hooks): the Python side writes mode and probes, then the slot's tid last,
 * through pointers taken once (plain memory stores: cffi releases the GIL around calls and on
 * every lib.<global> access, and the hook must not let other threads run between its snapshot
 * and the fork). prepare arms the fork of the thread whose tid is in a slot; glibc runs
 * prepare .. parent/child handlers under its own atfork lock, so fa_g serves one fork at a time.
 * The probes: threads whose futex to read at the fork (/proc/self/task/TID/syscall): reading
 * it can make the kernel wait for a thread that is going to sleep, so only the threads the
 * Python snapshot found at a lock's acquisition point are probed. */
#define FA_MAX_PROBE 64
#define FA_MAX_ARMED 32
typedef struct {
    volatile int32_t tid;      /* the forking thread's kernel id; 0: a free slot */
    int32_t mode;              /* FA_SCAN_* */
    int32_t reuse;             /* 1: the parent's part of a clean fork's proof holds: the child may
                                  reuse a clean scan (fa_quiet_propose), and this fork may take the
                                  readings of one */
    int32_t nprobe;
    int32_t probe[FA_MAX_PROBE];
} fa_arm_slot;
extern fa_arm_slot fa_arm[FA_MAX_ARMED];
/* 1 in a child whose fork prepare armed (until the next fork), else 0. */
int fa_child_armed(void);
/* A clean scan reused (csrc/quiet.c). In a child whose fork proved clean, after its scan:
 * offer this fork's readings of the other threads' scheduler counters to the parent as the
 * baseline later forks compare with. 1 if offered. */
int fa_quiet_propose(void);
/* Whether a thread's CPU time advances in small steps here (measured by the Python side, once):
 * without it no clean scan is reused. */
void fa_set_quiet_clock(int fine);
/* Test-only: how many times this process read its threads' counters for a baseline. */
extern int fa_test_quiet_readings;
/* Type objects whose instances can mimic a held mutex (see scan.c); set once at install. */
void fa_set_reject(const uint64_t *reject, int nreject);
/* The CPython lock types whose held instances the child-side scan also records, in the same
 * pass (set once at install; n <= FA_MAX_PYTYPES, 0 turns it off): types[i] is id() of the
 * type, kinds[i] FA_PYLOCK_LOCK (_thread.lock) or FA_PYLOCK_RLOCK (_thread.RLock). The
 * layout (CPython 3.9-3.13: the PyThread lock, a glibc sem_t *, at object+16; an RLock's
 * owner ident at +24, its count at +32) is verified on the Python side before registering
 * (forkaudit/cpython_layout.py). An object is recorded when its ob_type word is one of the
 * types, its refcount is in (0, 2^40), and its semaphore reads as a valid sem_t taken. */
void fa_set_pylock_types(const uint64_t *types, const int32_t *kinds, int n);
/* Where a buffered IO object keeps its PyThread lock (a glibc sem_t *) and the ident of the
 * thread holding it (CPython's "lock" and "owner" fields, found and verified at import by
 * forkaudit/cpython_layout.py): byte offsets from the object, 8-aligned, < 512. Types of kind
 * FA_PYLOCK_BUFFERED are recorded held (owner: that ident, count 0) only once this is set. */
void fa_set_buffered_layout(int lock_offset, int owner_offset);
/* The pymalloc pools the scan need not read (csrc/pymalloc_layout.h): pool_size, the pool size
 * of this CPython (0: read every pool), and wanted, one bit per size class whose pools are read
 * (those of the registered lock types, learnt from live instances by cpython_layout.py). */
#define FA_POOL_HEADER_BYTES 48
void fa_set_pools(uint64_t pool_size, uint32_t wanted);
/* The size class in a copy of a pool's header (FA_POOL_HEADER bytes) of a pool at base, or -1. */
int fa_pool_header_class(const unsigned char *header, uint64_t base, uint64_t pool_size);
/* The held Python lock objects of the last scan (the count, even when max is smaller). */
int fa_pylocks(fa_pylock *out, int max);
/* In the child: the threads recorded at the fork (vanished ones) and the forking thread. */
int fa_vanished(int32_t *tids, int max);
int32_t fa_forking_tid(void);
int32_t fa_parent_pid(void);
/* The futex word each vanished thread was blocked on at the fork (0 if none), in the
 * order of fa_vanished(): a thread blocked on a lock's futex waits for it, so it does
 * not hold it. */
int fa_vanished_futex(uint64_t *out, int max);
/* The kernel name of vanished thread i (as read in the parent), NUL-terminated. */
int fa_vanished_comm(int i, char *out, size_t outlen);
/* The hits of the last child-side scan, and its statistics. */
int fa_hits(fa_hit *out, int max);
void fa_stats(fa_scan_stats *out);
/* The child-side scan's budgets, for every later fork: milliseconds of wall time and bytes
 * read (0: no limit). Set at install. */
void fa_set_budget(uint64_t ms, uint64_t bytes);
/* Test-only: 1 makes the scan fail to open /proc/self/maps (it opens a path that does not
 * exist), to check that such a record says the scan did not run. */
extern int fa_test_break_maps;
/* Test-only: a FA_RES_* residency source to fall back to even where a better one works. */
extern int fa_test_residency;
/* Test-only: 1 makes the scan use its portable prefilter even where AVX2 is available. */
extern int fa_test_portable;
/* Test-only: 1 makes the scan's second pass read /proc/self/maps again, as it does when the
 * first pass met more mappings than it can note for it. */
extern int fa_test_reread_maps;
/* Run a scan now in this process for the given owner TIDs (tests and benchmarks; call it
 * only in a single-threaded process, such as a forked child). No budget applies. */
int fa_scan_now(int mode, const int32_t *tids, int ntids, int nthreads);
/* The same walk over the same mappings with memchr for an absent byte: the physical limit. */
double fa_memchr_pass(int mode, uint64_t *bytes);
/* Re-read a hit: 1 if it is still held by tid, 0 if not, -1 if unreadable. */
int fa_still_held(uint64_t addr, int kind, int32_t tid);
/* Copy n bytes at addr without ever faulting (process_vm_readv on ourselves). */
int fa_read(uint64_t addr, void *out, size_t n);
/* dladdr, flattened: 1 if the address is in a loaded object. */
int fa_dladdr(uint64_t addr, char *fname, size_t fnlen, char *sname, size_t snlen,
              uint64_t *fbase, uint64_t *saddr);
/* The stuck-fork watchdog (watchdog.c). Where the watched thread is (phase), written by the
 * Python hooks through a pointer taken once (plain memory stores) and by the C at-fork
 * handlers; and what the parent watchdog saw when it fired. */
#define FA_WD_IDLE 0
#define FA_WD_PY_BEFORE 1
#define FA_WD_LATE_BEFORE 2
#define FA_WD_PREPARE 3
#define FA_WD_PARENT_AFTER 4
#define FA_WD_CHILD_HOOKS 5
#define FA_WD_CHILD_RUN 6
#define FA_WD_POLICY_QUIET 0
#define FA_WD_POLICY_WARN 1
#define FA_WD_POLICY_ABORT 2
typedef struct {
    volatile int32_t phase;        /* FA_WD_* */
    volatile int32_t parent_tid;   /* the thread whose fork the parent timer watches, or 0 */
    volatile int32_t parent_fired; /* 1 once the parent watchdog reported */
    volatile int32_t parent_owner; /* then: the TID owning the glibc mutex waited on, or 0 */
    volatile uint64_t parent_addr; /* then: the futex word waited on, or 0 */
    volatile int32_t threads;      /* threads of the process at the last watched fork (C prepare) */
    volatile int32_t watch_reports; /* children the parent-side watch reported (stuck before or in
                                       their at-fork hooks) */
    volatile int32_t watch_aborts;  /* of those, stopped under 'abort' */
    volatile int32_t parent_seen;   /* untimed waits of watched forks seen once and not there a
                                       period later (not reported: a lock held for an instant) */
    volatile int32_t parent_pending; /* 1 while such a first sight awaits its second look */
} fa_wd_marks;
extern fa_wd_marks fa_wd;
/* Take a real-time signal whose disposition is SIG_DFL (from SIGRTMAX-1 down) for the
 * watchdog's handler; the same one again once taken. The signal number, or -1. */
int fa_wd_setup(void);
/* Parent: watch the fork thread `tid` is starting, for tenths/10 seconds (one-shot). 0 if armed. */
int fa_wd_arm_parent(int32_t tid, int32_t tenths);
int fa_wd_parent_armed(void);
void fa_wd_disarm_parent(int32_t tid);
/* Parent: forkaudit's last Python before-fork hook has run in thread tid's fork. */
void fa_wd_late_before(int32_t tid);
/* Child: check every tenths/10 seconds whether this thread waits on an inherited lock. */
int fa_wd_arm_child(int32_t tenths, int policy);
void fa_wd_disarm_child(void);
/* Child, after the audit: the inherited held locks' futex addresses and their pre-rendered
 * report entries (text: the entries one after another, lens[i] bytes each), and the lines
 * that head them. The number kept. */
int fa_wd_child_locks(const uint64_t *addrs, const int32_t *lens, int n, const char *text,
                      const char *head, int32_t headlen);
/* CPython's PyGILState_Ensure, PyGILState_Release, PyObject_CallObject, Py_DecRef, PyErr_Clear
 * and two callables (all as addresses): the parent handler, and the child handler for a
 * child stuck in its at-fork hooks, call them where that is safe. */
void fa_wd_set_python(uint64_t ensure, uint64_t release, uint64_t call, uint64_t decref, uint64_t clear,
                      uint64_t callable, uint64_t child_callable);
/* Parent-side watch of each watched fork's child until it is through its at-fork handlers
 * (C pthread_atfork child handlers, CPython's after-fork code, the Python after-in-child
 * hooks): a page shared with the children and a process-directed timer, both this process's;
 * set up (again after a fork) from Python. 0 when ready. */
#define FA_WD_STAGE_C 1        /* forkaudit's own C child handler has run */
#define FA_WD_STAGE_PY 2       /* forkaudit's first Python after-in-child hook has run */
#define FA_WD_STAGE_DONE 3     /* the at-fork hooks are done (forkaudit's tail hook) */
#define FA_WD_STAGE_REPORTED 4 /* the child's own watchdog reported it */
int fa_wd_watch_setup(int32_t tenths, int policy);
/* Child: how far it got (FA_WD_STAGE_*), written into its parent's page. */
void fa_wd_child_stage(int stage);
/* The JSON-lines report file the handlers append a watchdog record to ("" or NULL: none). */
void fa_wd_set_json(const char *path);
/* The running thread's kernel id. */
int32_t fa_gettid(void);

#endif
