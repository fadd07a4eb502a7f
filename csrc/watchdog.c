/* The stuck-fork watchdog: a POSIX timer whose signal goes to the one thread watched.
 *
 * No thread is created (a watchdog thread would be one more thread at the fork, seen by
 * CPython 3.12+'s multi-threaded fork warning and by the child's scan), no allocation, no
 * lock. Two timers, created with raw system calls on first use in each process (timers are
 * not inherited by a fork child and are deleted by exec):
 *
 *   parent: one-shot, armed by forkaudit's first before-fork hook, disarmed by its first
 *           after-in-parent hook; the signal goes to the forking thread. If it fires, the fork
 *           has not returned after N seconds: the handler writes what the thread waits on.
 *   child:  periodic (every N s), armed by forkaudit's first after-in-child hook, kept only
 *           while the child has something it can block on forever (the at-fork hooks, or an
 *           inherited held lock); the signal goes to the child's thread. Two ticks in a row
 *           on the same inherited lock (or in an at-fork hook, on a lock nobody left in this
 *           child can release) is a fact, not a prediction: the handler writes the report
 *           the audit pre-rendered and, under 'abort', ends the child with status 86.
 *
 * The handler runs inside the interrupted wait: the address waited on is the futex
 * system call's first argument, read from the saved registers (a thread cannot read its
 * own /proc/self/task/TID/syscall: that shows the read). It is installed with SA_RESTART,
 * on a real-time signal whose disposition was SIG_DFL, so an untimed futex wait (a glibc
 * mutex, a sem_wait) restarts as if nothing happened; timed waits return EINTR, which glibc
 * and CPython retry. Everything here is async-signal-safe: raw system calls, static
 * buffers. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef SIGEV_THREAD_ID
#define SIGEV_THREAD_ID 4
#endif

#define WD_PARENT 0x66617031 /* sival_int of each timer: tells our expiries from a kill() */
#define WD_CHILD 0x66616331
#define WD_TEXT 65536
#define WD_MAX_LOCKS 256

/* struct sigevent as the kernel reads it (glibc's spells the thread id differently across
 * versions) */
struct wd_sigevent {
    union sigval value;
    int signo;
    int notify;
    int tid;
    int pad[11];
};

fa_wd_marks fa_wd;

static int wd_signo;                    /* 0: not set up */
static int32_t wd_pid;                  /* the process the timers below belong to */
static int wd_ptimer = -1, wd_ctimer = -1;
static int32_t wd_parent_pid;          /* child: the pid it was forked from */
static int32_t wd_ptid;                 /* the thread whose fork is watched */
static int32_t wd_seconds;              /* tenths of seconds, for the report */
static int wd_policy;                   /* FA_WD_POLICY_* */
static uint64_t wd_seen;                /* child: the address waited on at the last tick */
static int wd_seen_phase;
static int wd_done;                     /* child: already reported */
static int wd_nlocks;                   /* child: inherited held locks, from the audit */
static uint64_t wd_addr[WD_MAX_LOCKS];
static int32_t wd_off[WD_MAX_LOCKS + 1];
static char wd_text[WD_TEXT];           /* their pre-rendered report entries */
static int32_t wd_head_len;
static char wd_head[4096];              /* the child: its audit's first lines */
static char wd_out[8192];
/* CPython's C API, for the parent's Python-level report (fa_wd_set_python) */
typedef int (*ensure_fn)(void);
typedef void (*release_fn)(int);
typedef void *(*call_fn)(void *, void *);
typedef void (*decref_fn)(void *);
typedef void (*clear_fn)(void);
static struct {
    ensure_fn ensure;
    release_fn release;
    call_fn call;
    decref_fn decref;
    clear_fn clear;
    void *callable;
    void *child_callable;
} py;               /* the handler's output line(s) */
static int wd_outn;

/* ---- output without stdio ------------------------------------------------------------ */

static void out_flush(void) {
    int off = 0;
    while (off < wd_outn) {
        ssize_t n = write(2, wd_out + off, (size_t)(wd_outn - off));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (int)n;
    }
    wd_outn = 0;
}

static void out_mem(const char *s, size_t n) {
    while (n) {
        size_t room = sizeof wd_out - (size_t)wd_outn;
        size_t k = n < room ? n : room;
        memcpy(wd_out + wd_outn, s, k);
        wd_outn += (int)k;
        s += k;
        n -= k;
        if (wd_outn == (int)sizeof wd_out)
            out_flush();
    }
}

static void out_str(const char *s) {
    out_mem(s, strlen(s));
}

static void out_uint(uint64_t v) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        out_mem(&tmp[--n], 1);
}

static void out_hex(uint64_t v) {
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    out_str("0x");
    while (n)
        out_mem(&tmp[--n], 1);
}

static void out_seconds(void) {
    out_uint((uint64_t)(wd_seconds / 10));
    if (wd_seconds % 10) {
        out_str(".");
        out_uint((uint64_t)(wd_seconds % 10));
    }
    out_str(" s");
}

static void out_comm(int32_t tid) {
    char path[64] = "/proc/self/task/", name[FA_COMM_LEN];
    char *p = path + 16;
    char tmp[12];
    int n = 0, fd;
    ssize_t got;
    uint32_t v = (uint32_t)tid;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    memcpy(p, "/comm", 6);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    got = read(fd, name, sizeof name - 1);
    close(fd);
    if (got <= 0)
        return;
    if (name[got - 1] == '\n')
        got--;
    out_str(" '");
    out_mem(name, (size_t)got);
    out_str("'");
}

/* ---- what the interrupted thread waits on --------------------------------------------- */

/* The futex word of an interrupted futex(2) wait, from the saved registers; 0 if the
 * thread was not in one. A wait the kernel restarts (SA_RESTART, untimed) shows the
 * system call number and its program counter back on the syscall instruction; a timed
 * wait that returns EINTR shows -EINTR just after it (its number is gone then: the caller
 * checks the address against what it knows). */
static uint64_t futex_of(void *ctx, int *certain) {
    ucontext_t *uc = ctx;
    *certain = 0;
#if defined(__x86_64__)
    {
        greg_t *r = uc->uc_mcontext.gregs;
        unsigned char insn[2];
        if (r[REG_RAX] == SYS_futex && fa_read((uint64_t)r[REG_RIP], insn, 2) == 0 &&
            insn[0] == 0x0f && insn[1] == 0x05) {
            *certain = 1;
            return (uint64_t)r[REG_RDI];
        }
        if (r[REG_RAX] == -EINTR && fa_read((uint64_t)r[REG_RIP] - 2, insn, 2) == 0 &&
            insn[0] == 0x0f && insn[1] == 0x05)
            return (uint64_t)r[REG_RDI];
    }
#elif defined(__aarch64__)
    {
        uint32_t insn;
        uint64_t pc = uc->uc_mcontext.pc;
        if (uc->uc_mcontext.regs[8] == SYS_futex && fa_read(pc, &insn, 4) == 0 && insn == 0xd4000001u) {
            *certain = 1;
            return uc->uc_mcontext.regs[0];
        }
        if ((int64_t)uc->uc_mcontext.regs[0] == -EINTR && fa_read(pc - 4, &insn, 4) == 0 &&
            insn == 0xd4000001u && uc->uc_mcontext.regs[8] == SYS_futex)
            return 0; /* x0 holds the result now, not the address */
    }
#else
    (void)uc;
#endif
    return 0;
}

/* A glibc mutex at addr held by a thread: its owner's TID, else 0. */
static int32_t mutex_owner(uint64_t addr) {
#if FA_LAYOUT_KNOWN
    fa_mutex_layout m;
    if (fa_read(addr, &m, sizeof m) != 0)
        return 0;
    if (m.owner > 0 && fa_valid_mutex(&m, m.owner, FA_MAX_TIDS + 1))
        return m.owner;
#else
    (void)addr;
#endif
    return 0;
}

/* A glibc semaphore (what a CPython 3.9-3.13 lock waits on) at addr, taken, with waiters. */
static int taken_semaphore(uint64_t addr) {
    uint64_t data;
    int32_t private_;
    if (fa_read(addr, &data, 8) != 0 || fa_read(addr + 8, &private_, 4) != 0)
        return 0;
    return (uint32_t)data == 0 && (data >> 32) >= 1 && (private_ == 0 || private_ == 128);
}

static int vanished(int32_t tid) {
    int i;
    for (i = 0; i < fa_g.ntids; i++)
        if (fa_g.tids[i] == tid)
            return 1;
    return 0;
}

/* Is thread tid one of this process's (its /proc/self/task entry exists)? */
static int alive(int32_t tid) {
    char path[64] = "/proc/self/task/", tmp[12];
    char *p = path + 16;
    int n = 0;
    uint32_t v = (uint32_t)tid;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    *p = '\0';
    return access(path, F_OK) == 0;
}

static int count_threads(void) {
    char buf[2048];
    int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC), n = 0;
    if (fd < 0)
        return -1;
    for (;;) {
        long got = syscall(SYS_getdents64, fd, buf, sizeof buf), off = 0;
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        while (off < got) {
            unsigned short reclen;
            memcpy(&reclen, buf + off + 16, sizeof reclen);
            if (buf[off + 19] >= '0' && buf[off + 19] <= '9')
                n++;
            off += reclen;
        }
    }
    close(fd);
    return n;
}

static const char *phase_text(int phase) {
    switch (phase) {
    case FA_WD_PY_BEFORE:
        return "the Python before-fork hooks (os.register_at_fork(before=...))";
    case FA_WD_LATE_BEFORE:
        return "CPython's own fork preparation or a C library's pthread_atfork prepare handler "
               "(forkaudit's Python before-fork hook, the last one, had returned)";
    case FA_WD_PREPARE:
        return "a C library's pthread_atfork prepare handler or the fork system call "
               "(forkaudit's C prepare handler had run)";
    case FA_WD_PARENT_AFTER:
        return "the parent's after-fork handlers (the child exists)";
    case FA_WD_CHILD_HOOKS:
        return "the child's at-fork hooks (os.register_at_fork(after_in_child=...) or "
               "multiprocessing's after-fork registry), before the child's own code";
    case FA_WD_CHILD_RUN:
        return "the child's own code";
    default:
        return "an unknown place";
    }
}

/* ---- the handler ------------------------------------------------------------------------ */

static void out_wait(uint64_t addr, int certain, int32_t owner) {
    if (addr == 0) {
        out_str("not in a futex wait (it may be running, or waiting on something other than a lock)");
        return;
    }
    if (owner) {
        out_str("the glibc mutex at ");
        out_hex(addr);
        out_str(", held by thread ");
        out_uint((uint64_t)owner);
        out_comm(owner);
    } else if (taken_semaphore(addr)) {
        out_str("the semaphore at ");
        out_hex(addr);
        out_str(" (a Python threading.Lock/RLock's, or a C sem_t; taken)");
    } else {
        out_str(certain ? "the futex at " : "the futex (probably) at ");
        out_hex(addr);
    }
}

/* Call back into Python (see parent_fired for when that is safe). */
static void call_python(void *callable) {
    int state = py.ensure();
    void *r = py.call(callable, NULL);
    if (r != NULL)
        py.decref(r);
    else
        py.clear();
    py.release(state);
}

static void parent_fired(void *ctx) {
    int certain;
    uint64_t addr = futex_of(ctx, &certain);
    int32_t owner = addr ? mutex_owner(addr) : 0;
    int phase = fa_wd.phase;
    out_str("forkaudit watchdog: pid ");
    out_uint((uint64_t)getpid());
    out_str(": fork() called by thread ");
    out_uint((uint64_t)wd_ptid);
    out_comm(wd_ptid);
    out_str(" has not returned after ");
    out_seconds();
    out_str("\n  where: inside ");
    out_str(phase_text(phase));
    out_str("\n  waiting on: ");
    out_wait(addr, certain, owner);
    out_str("\n");
    if (owner == wd_ptid)
        out_str("  the forking thread holds that mutex itself: it waits on itself\n");
    out_flush();
    fa_wd.parent_addr = addr;
    fa_wd.parent_owner = owner;
    /* Python-level detail, only where running Python here is safe: a restarted (untimed)
     * wait on a taken semaphore inside the Python before-fork hooks, i.e. Lock.acquire()
     * with the GIL released, holding no CPython or libc lock (the import lock is taken
     * after the hooks). The callback takes the GIL like any C thread calling back into
     * Python, then gives it back; the wait restarts when the handler returns. */
    if (py.callable != NULL && phase == FA_WD_PY_BEFORE && certain && !owner && taken_semaphore(addr)) {
        call_python(py.callable);
    }
    fa_wd.parent_fired = 1; /* last: the report is complete */
}

static int match_lock(uint64_t addr) {
    int i;
    for (i = 0; i < wd_nlocks; i++)
        if (wd_addr[i] == addr)
            return i;
    return -1;
}

static void child_fired(void *ctx) {
    int certain, known = -1, phase = fa_wd.phase;
    uint64_t addr = futex_of(ctx, &certain);
    int32_t owner = 0;
    int stuck = 0;
    struct itimerspec off;
    if (wd_done || addr == 0) {
        wd_seen = 0;
        return;
    }
    known = match_lock(addr);
    if (known < 0)
        owner = mutex_owner(addr);
    if (known >= 0)
        stuck = 1;
    else if (owner && owner != fa_sys_gettid() && ((fa_child_armed() && vanished(owner)) || !alive(owner)))
        stuck = 1;  /* a glibc mutex of a thread that vanished at the fork (or is no thread here) */
    else if (certain && phase == FA_WD_CHILD_HOOKS && !owner && taken_semaphore(addr) && count_threads() == 1)
        stuck = 2;  /* a taken semaphore, and no other thread here to post it */
    if (!stuck) {
        wd_seen = 0;
        return;
    }
    if (wd_seen != addr || wd_seen_phase != phase) {
        wd_seen = addr;  /* first sight: a fact only if it is still so at the next tick */
        wd_seen_phase = phase;
        return;
    }
    wd_done = 1;
    memset(&off, 0, sizeof off);
    if (wd_ctimer >= 0)
        syscall(SYS_timer_settime, wd_ctimer, 0, &off, NULL);
    if (wd_policy == FA_WD_POLICY_QUIET)
        return;
    out_str("forkaudit watchdog: child ");
    out_uint((uint64_t)getpid());
    out_str(" (forked from ");
    out_uint((uint64_t)wd_parent_pid);
    out_str(") has waited at least ");
    out_seconds();
    out_str(" on a lock it inherited held\n  where: inside ");
    out_str(phase_text(phase));
    out_str("\n  waiting on: ");
    if (known >= 0) {
        out_str("the lock [");
        out_uint((uint64_t)known + 1);
        out_str("] below, at ");
        out_hex(addr);
        out_str("\n");
        out_mem(wd_head, (size_t)wd_head_len);
        out_mem(wd_text + wd_off[known], (size_t)(wd_off[known + 1] - wd_off[known]));
    } else if (stuck == 1) {
        out_str("the glibc mutex at ");
        out_hex(addr);
        out_str("\n  held by thread ");
        out_uint((uint64_t)owner);
        for (known = 0; known < fa_g.ntids; known++)
            if (fa_g.tids[known] == owner && fa_g.comm[known][0]) {
                out_str(" '");
                out_str(fa_g.comm[known]);
                out_str("'");
            }
        out_str(", which does not exist in the child\n");
    } else {
        out_wait(addr, certain, 0);
        out_str("\n  no other thread exists in this child to release it\n");
        /* the same conditions as the parent's Python-level detail (a restarted semaphore
         * wait in the at-fork hooks, and here no other thread at all) */
        if (py.child_callable != NULL) {
            out_flush();
            fa_wd.parent_addr = addr;
            call_python(py.child_callable);
        }
    }
    if (wd_policy == FA_WD_POLICY_ABORT) {
        out_str("forkaudit: policy 'abort': child ");
        out_uint((uint64_t)getpid());
        out_str(" exits with status 86: it is stuck on an inherited lock\n");
        out_flush();
        _exit(86);
    }
    out_flush();
}

static void on_signal(int sig, siginfo_t *si, void *ctx) {
    int saved = errno;
    (void)sig;
    if (si != NULL && si->si_code == SI_TIMER && (int32_t)getpid() == wd_pid) {
        if (si->si_value.sival_int == WD_PARENT && fa_wd_parent_armed())
            parent_fired(ctx);
        else if (si->si_value.sival_int == WD_CHILD)
            child_fired(ctx);
    }
    errno = saved;
}

/* ---- set-up and arming (called from Python, never from a handler) ---------------------- */

static int ours(int signo) {
    struct sigaction sa;
    if (sigaction(signo, NULL, &sa) != 0)
        return 0;
    return (sa.sa_flags & SA_SIGINFO) && sa.sa_sigaction == on_signal;
}

int fa_wd_setup(void) {
    int s;
    if (wd_signo && ours(wd_signo))
        return wd_signo;
    wd_signo = 0;
    /* from the top: programs that use real-time signals count up from SIGRTMIN */
    for (s = SIGRTMAX - 1; s >= SIGRTMIN + 2; s--) {
        struct sigaction old, sa;
        if (sigaction(s, NULL, &old) != 0)
            continue;
        if ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL)
            continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_signal;
        sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
        sigfillset(&sa.sa_mask);
        if (sigaction(s, &sa, NULL) != 0)
            continue;
        wd_signo = s;
        return s;
    }
    return -1;
}

static void owned_by_this_process(void) {
    int32_t pid = (int32_t)getpid();
    if (wd_pid != pid) { /* a child: the timers of the parent are not ours (nor inherited) */
        wd_pid = pid;
        wd_ptimer = wd_ctimer = -1;
    }
}

static int make_timer(int kind, int32_t tid) {
    struct wd_sigevent sev;
    int id = -1;
    memset(&sev, 0, sizeof sev);
    sev.value.sival_int = kind;
    sev.signo = wd_signo;
    sev.notify = SIGEV_THREAD_ID;
    sev.tid = tid;
    if (syscall(SYS_timer_create, CLOCK_MONOTONIC, &sev, &id) != 0)
        return -1;
    return id;
}

static int set_timer(int id, int32_t tenths, int periodic) {
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    its.it_value.tv_sec = tenths / 10;
    its.it_value.tv_nsec = (long)(tenths % 10) * 100000000L;
    if (periodic)
        its.it_interval = its.it_value;
    return (int)syscall(SYS_timer_settime, id, 0, &its, NULL);
}

int fa_wd_parent_armed(void) {
    return fa_wd.parent_tid != 0 && fa_wd.parent_tid == wd_ptid && wd_pid == (int32_t)getpid();
}

int fa_wd_arm_parent(int32_t tid, int32_t tenths) {
    if (tenths <= 0 || !wd_signo || !ours(wd_signo))
        return -1;
    owned_by_this_process();
    if (fa_wd.parent_tid != 0)
        return -1;  /* another thread's fork is watched (one at a time) */
    if (wd_ptimer >= 0 && wd_ptid != tid) {  /* a timer signals one thread: one per forking thread */
        syscall(SYS_timer_delete, wd_ptimer);
        wd_ptimer = -1;
    }
    if (wd_ptimer < 0)
        wd_ptimer = make_timer(WD_PARENT, tid);
    if (wd_ptimer < 0)
        return -1;
    wd_ptid = tid;
    wd_seconds = tenths;
    fa_wd.parent_fired = 0;
    fa_wd.parent_tid = tid;
    fa_wd.phase = FA_WD_PY_BEFORE;
    if (set_timer(wd_ptimer, tenths, 0) != 0) {
        fa_wd.parent_tid = 0;
        return -1;
    }
    return 0;
}

void fa_wd_disarm_parent(int32_t tid) {
    struct itimerspec off;
    if (fa_wd.parent_tid == 0 || fa_wd.parent_tid != tid)
        return;
    memset(&off, 0, sizeof off);
    if (wd_pid == (int32_t)getpid() && wd_ptimer >= 0)
        syscall(SYS_timer_settime, wd_ptimer, 0, &off, NULL);
    fa_wd.parent_tid = 0;
    fa_wd.phase = FA_WD_IDLE;
}

int fa_wd_arm_child(int32_t tenths, int policy) {
    int32_t me = fa_sys_gettid();
    if (tenths <= 0 || !wd_signo || !ours(wd_signo))
        return -1;
    owned_by_this_process();
    if (wd_ctimer < 0)
        wd_ctimer = make_timer(WD_CHILD, me);
    if (wd_ctimer < 0)
        return -1;
    wd_seconds = tenths;
    wd_policy = policy;
    wd_seen = 0;
    wd_done = 0;
    fa_wd.phase = FA_WD_CHILD_HOOKS;
    return set_timer(wd_ctimer, tenths, 1);
}

void fa_wd_disarm_child(void) {
    struct itimerspec off;
    memset(&off, 0, sizeof off);
    if (wd_pid == (int32_t)getpid() && wd_ctimer >= 0)
        syscall(SYS_timer_settime, wd_ctimer, 0, &off, NULL);
    fa_wd.phase = FA_WD_IDLE;
}

int fa_wd_child_locks(const uint64_t *addrs, const int32_t *lens, int n, const char *text,
                      const char *head, int32_t headlen) {
    int i;
    int32_t off = 0;
    wd_nlocks = 0;
    if (headlen > (int32_t)sizeof wd_head)
        headlen = (int32_t)sizeof wd_head;
    memcpy(wd_head, head, (size_t)headlen);
    wd_head_len = headlen;
    if (n > WD_MAX_LOCKS)
        n = WD_MAX_LOCKS;
    wd_off[0] = 0;
    for (i = 0; i < n; i++) {
        int32_t len = lens[i];
        if (len < 0 || off + len > WD_TEXT)
            break;
        memcpy(wd_text + off, text + off, (size_t)len);
        wd_addr[i] = addrs[i];
        off += len;
        wd_off[i + 1] = off;
    }
    wd_nlocks = i;
    return i;
}

void fa_wd_set_python(uint64_t ensure, uint64_t release, uint64_t call, uint64_t decref, uint64_t clear,
                      uint64_t callable, uint64_t child_callable) {
    py.callable = py.child_callable = NULL;
    py.ensure = (ensure_fn)(uintptr_t)ensure;
    py.release = (release_fn)(uintptr_t)release;
    py.call = (call_fn)(uintptr_t)call;
    py.decref = (decref_fn)(uintptr_t)decref;
    py.clear = (clear_fn)(uintptr_t)clear;
    py.callable = (void *)(uintptr_t)callable;
    py.child_callable = (void *)(uintptr_t)child_callable;
}

/* pthread_atfork child handler (atfork.c): nothing watched here is this process's yet */
void fa_wd_on_child(void) {
    wd_pid = (int32_t)getpid();
    wd_parent_pid = (int32_t)getppid();
    wd_ptimer = wd_ctimer = -1;
    wd_nlocks = 0;
    wd_done = 0;
    wd_seen = 0;
    fa_wd.parent_tid = 0;
    fa_wd.parent_fired = 0;
    fa_wd.phase = FA_WD_IDLE;  /* fa_wd.threads stays: the parent's thread count at this fork */
}

void fa_wd_on_prepare(void) {
    fa_wd.threads = 0;
    if (fa_wd.parent_tid != 0 && fa_wd.parent_tid == fa_sys_gettid()) {
        fa_wd.phase = FA_WD_PREPARE;
        fa_wd.threads = count_threads();
    }
}

void fa_wd_on_parent(void) {
    if (fa_wd.parent_tid != 0 && fa_wd.parent_tid == fa_sys_gettid())
        fa_wd.phase = FA_WD_PARENT_AFTER;
}
