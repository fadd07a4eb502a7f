/* A clean scan reused: a fork whose other threads have not run since the fork of a scan
 * that found nothing needs no scan of its own (issue 8: a clean fork's child costs what a
 * bare fork does, whatever the heap size).
 *
 * Why that holds. A glibc mutex or rwlock is held by thread T only once T itself took it:
 * glibc writes the owner's TID from the owner, and where the kernel hands a futex to a
 * waiter (a PI mutex's unlock, a requeue to a PI futex, CPython 3.13's PyMutex handed to a
 * waiter that waited long) it wakes that waiter, which is then runnable. A Python lock
 * found held at a fork, not the forking thread's, was likewise taken by a thread that ran.
 * So when a fork's scan (full, complete, within its budgets) found no lock of another
 * thread held, and none of those threads has run since, nor is one woken and waiting to
 * run, the memory of a later fork holds no lock of theirs either: whatever changed was
 * changed by the forking thread, whose locks are the child's own. Only a fork from the
 * same thread, with no thread the baseline did not see, qualifies.
 *
 * How "has not run" is told, from the kernel's per-thread scheduler counters (each a
 * /proc/PID/task/TID/schedstat: ns of CPU time, and how many times the thread was put on a
 * CPU; Linux with CONFIG_SCHED_INFO), for each other thread:
 *   reading (parent, C prepare handler, only when no baseline applies): the counters, then
 *     the thread's CPU clock (clock_gettime, which includes a running slice). Equal CPU
 *     time in both means the thread was off CPU throughout; else no baseline is tried.
 *     (Where CPU time advances in ticks, not ns, a short run may not show: no reuse there,
 *     fa_set_quiet_clock.)
 *   baseline: that fork's child proves its fork clean (forkaudit/cleanfork.py) and
 *     proposes the readings, through a page shared with the parent; the parent adopts the
 *     newest at its next fork.
 *   reuse (parent prepare): the baseline is this process's, the forking thread is its
 *     forking thread, every other thread is in it, and each one's CPU clock still equals its
 *     baseline time: the child may reuse it.
 *   check (child, before any scan): for each other thread, /proc/PPID/task/TID/stat first
 *     (its state: asleep, S), then its counters, both equal to the baseline's. A thread put
 *     on a CPU after the reading counted one more time on a CPU; one still running at the
 *     reading was refused there; one woken before the fork and not yet run is runnable at
 *     the stat read, or ran before the counters were read. (Only S: a thread stopped by a
 *     debugger, t, or in an uninterruptible wait, D, stays so when a lock is handed to it.)
 *     Any difference: the scan runs, and the baseline is marked stale for the parent.
 * The child's part is reads of /proc into a static buffer: no allocation, no lock. */
#define _GNU_SOURCE
#include "internal.h"

#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The page a parent shares with its children: their proposals, and stale marks. */
struct fa_quiet_page {
    int32_t owner;           /* the process that mapped it */
    uint32_t seq;            /* odd while a child writes the proposal (atomic) */
    uint64_t stale;          /* a baseline's generation a child found a thread had run since (atomic) */
    struct fa_quiet_base proposal;
};

static struct fa_quiet_page *page;   /* this process's page (the parent's, in a child) */

int fa_test_quiet_readings; /* test-only: how many readings (parent) this process took */

/* The thread's CPU time, ns, running slice included (a thread of this process). */
static int cpu_time(int32_t tid, uint64_t *ns) {
    struct timespec ts;
    /* the kernel's MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED) */
    clockid_t id = (clockid_t)((~(uint32_t)tid) << 3 | 6u);
    if (syscall(SYS_clock_gettime, id, &ts) != 0)
        return -1;
    *ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    return 0;
}

/* Whether CPU time advances in small steps here (the kernel's scheduler clock in ns, not in
 * ticks): the readings rely on any run of a thread showing in its CPU time. Measured once by the
 * Python side (threads.clock_steps_fine, which the parent's snapshot relies on too); a child
 * inherits it. Until it is set, nothing is reused. */
static int clock_fine;

void fa_set_quiet_clock(int fine) {
    clock_fine = fine != 0;
}

/* "/proc/<pid>/task/<tid>/<leaf>" read into fa_g.io (NUL-terminated): 0, or -1 if it could
 * not be read or is empty. */
static int read_task_file(int32_t pid, int32_t tid, const char *leaf) {
    char path[96], *p = path;
    memcpy(p, "/proc/", 6);
    p = fa_put_dec(p + 6, (uint64_t)(uint32_t)pid);
    memcpy(p, "/task/", 6);
    p = fa_put_dec(p + 6, (uint64_t)(uint32_t)tid);
    *p++ = '/';
    memcpy(p, leaf, strlen(leaf) + 1);
    return fa_read_file(path, fa_g.io, 1024) > 0 ? 0 : -1;
}

/* The thread's schedstat: CPU time (ns) and times put on a CPU. */
static int counters(int32_t pid, int32_t tid, uint64_t *runtime, uint64_t *arrivals) {
    const char *s = fa_g.io;
    if (read_task_file(pid, tid, "schedstat") < 0)
        return -1;
    *runtime = fa_parse_dec(&s);
    (void)fa_parse_dec(&s); /* time spent waiting to run */
    *arrivals = fa_parse_dec(&s);
    return 0;
}

/* The thread's state letter from its stat, or 0. */
static char state(int32_t pid, int32_t tid) {
    const char *s;
    if (read_task_file(pid, tid, "stat") < 0)
        return 0;
    s = fa_stat_state(fa_g.io);
    return s != NULL ? s[0] : 0;
}

static const struct fa_quiet_thread *entry_of(const struct fa_quiet_base *b, int32_t tid) {
    int lo = 0, hi = b->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (b->t[mid].tid == tid)
            return &b->t[mid];
        if (b->t[mid].tid < tid)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

/* This process's page, mapped at its first reading (a child maps its own at its first fork:
 * the page it inherited is its parent's). 0 when there is one. */
static int page_ready(int32_t me) {
    void *p;
    if (page != NULL && page->owner == me)
        return 0;
    p = mmap(NULL, sizeof *page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    page = p;
    page->owner = me;
    return 0;
}

/* The parent: the newest proposal of a child of this process, and a child's stale mark. */
static void adopt(int32_t me) {
    uint32_t s1 = __atomic_load_n(&page->seq, __ATOMIC_ACQUIRE);
    if (!(s1 & 1u) && page->proposal.gen > fa_g.quiet_adopted && page->proposal.pid == me) {
        memcpy(&fa_g.quiet_base, &page->proposal, sizeof fa_g.quiet_base);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&page->seq, __ATOMIC_RELAXED) != s1)
            fa_g.quiet_base.gen = 0; /* torn by a child writing a newer one: the next fork adopts it */
        else
            fa_g.quiet_adopted = fa_g.quiet_base.gen;
    }
    if (fa_g.quiet_base.gen != 0 && __atomic_load_n(&page->stale, __ATOMIC_ACQUIRE) == fa_g.quiet_base.gen)
        fa_g.quiet_base.gen = 0;
}

/* Does the adopted baseline cover this fork, each other thread's CPU time unchanged? */
static int base_applies(void) {
    const struct fa_quiet_base *b = &fa_g.quiet_base;
    int i;
    if (b->gen == 0 || b->pid != fa_g.parent_pid || b->forking != fa_g.forking_tid || b->mode != fa_g.mode)
        return 0;
    for (i = 0; i < fa_g.ntids; i++) {
        const struct fa_quiet_thread *e = entry_of(b, fa_g.tids[i]);
        uint64_t ns;
        if (e == NULL || cpu_time(fa_g.tids[i], &ns) != 0 || ns != e->runtime)
            return 0;
    }
    return 1;
}

/* Each other thread's counters, each taken while it was off CPU, into quiet_try. */
static void take_readings(void) {
    struct fa_quiet_base *b = &fa_g.quiet_try;
    int i;
    fa_test_quiet_readings++;
    for (i = 0; i < fa_g.ntids; i++) {
        struct fa_quiet_thread *e = &b->t[i];
        uint64_t ns;
        e->tid = fa_g.tids[i];
        if (counters(fa_g.parent_pid, e->tid, &e->runtime, &e->arrivals) != 0 || e->arrivals == 0 ||
            cpu_time(e->tid, &ns) != 0 || ns != e->runtime)
            return; /* no counters here, or the thread is on a CPU: no baseline from this fork */
    }
    b->n = fa_g.ntids;
    b->pid = fa_g.parent_pid;
    b->forking = fa_g.forking_tid;
    b->mode = fa_g.mode;
    b->gen = ++fa_g.quiet_gen;
}

void fa_quiet_prepare(int allowed) {
    fa_g.quiet_reuse = 0;
    fa_g.quiet_try.gen = 0;
    if (!allowed || fa_g.mode != FA_SCAN_FULL || fa_g.ntids <= 0 || fa_g.ntids > FA_QUIET_MAX ||
        !clock_fine || page_ready(fa_g.parent_pid) != 0)
        return;
    adopt(fa_g.parent_pid);
    if (base_applies())
        fa_g.quiet_reuse = 1;
    else
        take_readings();
}

int fa_quiet_child(void) {
    const struct fa_quiet_base *b = &fa_g.quiet_base;
    double t0;
    int i;
    if (!fa_g.quiet_reuse)
        return 0;
    t0 = fa_now();
    if (getppid() != fa_g.parent_pid)
        goto stale;
    for (i = 0; i < fa_g.ntids; i++) {
        const struct fa_quiet_thread *e = entry_of(b, fa_g.tids[i]);
        uint64_t runtime, arrivals;
        char st;
        if (e == NULL)
            goto stale;
        st = state(fa_g.parent_pid, e->tid); /* first: see the child's part above */
        if (st != 'S')
            goto stale;
        if (counters(fa_g.parent_pid, e->tid, &runtime, &arrivals) != 0 || runtime != e->runtime ||
            arrivals != e->arrivals)
            goto stale;
    }
    memset(&fa_g.stats, 0, sizeof fa_g.stats);
    fa_g.stats.mode = fa_g.mode;
    fa_g.stats.not_run = FA_NOT_RUN_REUSED;
    fa_g.stats.reused_pid = b->scan_pid;
    fa_g.stats.reused_bytes = b->bytes;
    fa_g.stats.reused_bytes_total = b->bytes_total;
    fa_g.stats.seconds = fa_now() - t0;
    fa_g.stats.done = 1;
    return 1;
stale:
    if (page != NULL && page->owner == fa_g.parent_pid)
        __atomic_store_n(&page->stale, b->gen, __ATOMIC_RELEASE);
    return 0;
}

int fa_quiet_propose(void) {
    const fa_scan_stats *s = &fa_g.stats;
    struct fa_quiet_base *b = &fa_g.quiet_try;
    uint32_t seq;
    if (b->gen == 0 || page == NULL || page->owner != fa_g.parent_pid || !s->done || s->not_run != FA_RAN ||
        s->mode != b->mode || s->cut != FA_CUT_NONE || s->hits != 0 || s->overflow != 0 ||
        s->pylock_overflow != 0)
        return 0;
    seq = __atomic_load_n(&page->seq, __ATOMIC_RELAXED);
    if ((seq & 1u) || !__atomic_compare_exchange_n(&page->seq, &seq, seq + 1u, 0, __ATOMIC_ACQUIRE,
                                                   __ATOMIC_RELAXED))
        return 0; /* another child is writing one */
    if (page->proposal.gen < b->gen) {
        b->scan_pid = (int32_t)getpid();
        b->bytes = s->bytes;
        b->bytes_total = s->bytes_total;
        memcpy(&page->proposal, b, offsetof(struct fa_quiet_base, t) + (size_t)b->n * sizeof b->t[0]);
    }
    __atomic_store_n(&page->seq, seq + 2u, __ATOMIC_RELEASE);
    b->gen = 0;
    return 1;
}
