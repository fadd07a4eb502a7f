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
#define WD_WATCH 0x66617731 /* the parent's watch of its children's at-fork handlers */
#define WD_ABORT 0x66616131 /* (queued by a parent) stop: status 86 */
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
static int32_t wd_ptenths;              /* the parent timer's period, tenths of seconds */
static int wd_policy;                   /* FA_WD_POLICY_* */
static uint64_t wd_pseen;               /* parent: an untimed wait seen once, to confirm (0: none;
                                           fa_wd.parent_pending says the same to Python) */
static int wd_pseen_phase;
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
/* the parent-side watch of children (below) */
static int32_t wd_watch_tenths;
static int wd_watch_policy;
static void watch_prepare(int32_t me);
static void watch_parent(void);
static void watch_child(void);
static void watch_fired(void);
static void out_lock(void);
static void out_unlock(void);
static void js_head(const char *kind, int32_t pid, int32_t parent_pid, int policy, int tenths);
static void js_str(const char *s);
static void js_uint(uint64_t v);
static void js_wait(uint64_t addr, int32_t owner, int owner_here, int semaphore, int64_t nr);
static void js_flush(void);
static struct wd_slot *wd_mark_slot;
static int32_t wd_mark_gen;
static int32_t wd_slots_pid;

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
    out_mem(tmp, (size_t)(fa_put_dec(tmp, v) - tmp));
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

/* the record's "where" */
static const char *phase_key(int phase) {
    switch (phase) {
    case FA_WD_PY_BEFORE:
        return "python-before-hooks";
    case FA_WD_LATE_BEFORE:
        return "fork-preparation";
    case FA_WD_PREPARE:
        return "c-prepare-or-fork";
    case FA_WD_PARENT_AFTER:
        return "parent-after-fork";
    case FA_WD_CHILD_HOOKS:
        return "python-hooks";
    case FA_WD_CHILD_RUN:
        return "child-code";
    default:
        return "unknown";
    }
}

static int wd_policy_parent(void) {
    return wd_watch_policy;
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

static int set_timer(int id, int32_t tenths, int periodic);

/* The parent's first sight of an untimed wait, to be confirmed at a second look. */
static void first_sight(uint64_t addr, int phase) {
    wd_pseen = addr;
    wd_pseen_phase = phase;
    fa_wd.parent_pending = 1;
}

/* The wait seen at the first look is over (the fork moved on, or returned): it was not
 * stuck, and is counted as such. Nothing to do when there was none. */
static void sight_over(void) {
    if (wd_pseen)
        fa_wd.parent_seen++;
    wd_pseen = 0;
    fa_wd.parent_pending = 0;
}

static void parent_fired(void *ctx) {
    int certain;
    uint64_t addr = futex_of(ctx, &certain);
    int32_t owner;
    int phase = fa_wd.phase;
    if (wd_pseen && (wd_pseen != addr || wd_pseen_phase != phase || !certain))
        sight_over();
    if (addr == 0 || !certain) {
        /* not waiting on a lock: running (a slow hook, a signal handler forking and waiting
         * inside this fork's hooks), in another system call, or in a timed futex wait (the
         * kernel ends those with EINTR: not `certain`). CPython waits for the GIL in timed
         * waits of the switch interval, so a fork that waits for a busy GIL looks like this;
         * a lock's blocking acquire (sem_wait, pthread_mutex_lock) is untimed. Slow is not
         * stuck: look again one period later, and say nothing unless it is then in an
         * untimed wait. */
        wd_seconds += wd_ptenths;
        set_timer(wd_ptimer, wd_ptenths, 0);
        return;
    }
    if (!wd_pseen) {
        /* First sight of this untimed wait: a fact only if it still holds one whole period
         * later. Under heavy load a lock another thread holds for an instant (one of CPython's
         * own, taken around the fork) can be caught at the tick, and a starved holder can keep
         * it for over a second (a CI stress run on two overloaded cores: a second look 1 s
         * later still saw it); a stuck fork is still there. (The report keeps the time of
         * first sight: stuck since then.) */
        first_sight(addr, phase);
        set_timer(wd_ptimer, wd_ptenths, 0);
        return;
    }
    wd_pseen = 0;               /* confirmed: reported now, not counted as over */
    fa_wd.parent_pending = 0;
    owner = mutex_owner(addr);  /* an untimed wait from here on: `certain` holds */
    out_lock();
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
    out_wait(addr, 1, owner);
    out_str("\n");
    if (owner == wd_ptid)
        out_str("  the forking thread holds that mutex itself: it waits on itself\n");
    out_flush();
    js_head("fork", (int32_t)getpid(), (int32_t)getppid(), wd_policy_parent(), wd_seconds);
    js_str(",\"side\":\"parent\",\"where\":\"");
    js_str(phase_key(phase));
    js_str("\",\"forking_tid\":");
    js_uint((uint64_t)wd_ptid);
    js_wait(addr, owner, owner != 0, !owner && taken_semaphore(addr), SYS_futex);
    js_str(",\"action\":\"reported\"}");
    js_flush();
    out_unlock();
    fa_wd.parent_addr = addr;
    fa_wd.parent_owner = owner;
    /* Python-level detail, only where running Python here is safe: this restarted (untimed)
     * wait on a taken semaphore inside the Python before-fork hooks, i.e. Lock.acquire()
     * with the GIL released, holding no CPython or libc lock (the import lock is taken
     * after the hooks). The callback takes the GIL like any C thread calling back into
     * Python, then gives it back; the wait restarts when the handler returns. */
    if (py.callable != NULL && phase == FA_WD_PY_BEFORE && !owner && taken_semaphore(addr)) {
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
    fa_wd_child_stage(FA_WD_STAGE_REPORTED);  /* the parent's watch leaves it to this report */
    out_lock();
    js_head("child-lock", (int32_t)getpid(), wd_parent_pid, wd_policy, wd_seconds);
    js_str(",\"side\":\"child\",\"where\":\"");
    js_str(phase_key(phase));
    js_str("\"");
    if (known >= 0) {
        js_str(",\"hazard\":");
        js_uint((uint64_t)known);
    }
    js_wait(addr, owner, 0, stuck == 2, SYS_futex);
    js_str(",\"action\":\"");
    js_str(wd_policy == FA_WD_POLICY_ABORT ? "aborted" : "reported");
    js_str("\"}");
    js_flush();
    if (wd_policy == FA_WD_POLICY_QUIET) {
        out_unlock();
        return;
    }
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
            out_unlock();
            fa_wd.parent_addr = addr;
            call_python(py.child_callable);
            out_lock();
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
    out_unlock();
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
    if (si != NULL && si->si_code == SI_TIMER && si->si_value.sival_int == WD_WATCH &&
        (int32_t)getpid() == wd_slots_pid)
        watch_fired();
    /* the parent's watch found this child stuck in its at-fork handlers, under 'abort' (it
     * wrote the report): a queued signal from the parent itself, with forkaudit's value */
    if (si != NULL && si->si_code == SI_QUEUE && si->si_value.sival_int == WD_ABORT && si->si_pid == getppid())
        _exit(86);
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

/* Forks of other threads started while one is watched (the timer signals one thread): queued,
 * and watched in turn when the watched one returns, for what is left of their N seconds.
 * Every change to this state is made with the GIL held (the Python hooks, and the C at-fork
 * handlers inside os.fork), so forks of several threads never change it at once. */
#define WD_QUEUE 16
static struct {
    int32_t tid, phase;
    int64_t start_ns;
} wd_q[WD_QUEUE];
static int wd_nq;

static int64_t mono_ns(void);

static int queued(int32_t tid) {
    int i;
    for (i = 0; i < wd_nq; i++)
        if (wd_q[i].tid == tid)
            return i;
    return -1;
}

/* Watch thread tid's fork: the timer fires after `first` tenths of a second, when the fork
 * will have been under way for `total` (the report's figure); then every period (parent_fired). */
static int watch_thread(int32_t tid, int32_t tenths, int32_t first, int32_t total, int32_t phase) {
    if (wd_ptimer >= 0 && wd_ptid != tid) {  /* a timer signals one thread: one per forking thread */
        syscall(SYS_timer_delete, wd_ptimer);
        wd_ptimer = -1;
    }
    if (wd_ptimer < 0)
        wd_ptimer = make_timer(WD_PARENT, tid);
    if (wd_ptimer < 0)
        return -1;
    wd_ptid = tid;
    wd_ptenths = tenths;
    wd_seconds = total;
    sight_over();
    fa_wd.parent_fired = 0;
    fa_wd.parent_tid = tid;
    fa_wd.phase = phase;
    if (set_timer(wd_ptimer, first, 0) != 0) {
        fa_wd.parent_tid = 0;
        return -1;
    }
    return 0;
}

int fa_wd_arm_parent(int32_t tid, int32_t tenths) {
    if (tenths <= 0 || !wd_signo || !ours(wd_signo))
        return -1;
    owned_by_this_process();
    if (fa_wd.parent_tid != 0) {
        if (fa_wd.parent_tid == tid && wd_pid == (int32_t)getpid() && wd_ptimer >= 0) {
            /* a fork nested in the watched one (a signal handler forking inside its hooks):
             * the thread is moving, not stuck; the watch starts over */
            wd_seconds = wd_ptenths;
            sight_over();
            set_timer(wd_ptimer, wd_ptenths, 0);
            return -1;
        }
        if (fa_wd.parent_tid == tid || wd_nq >= WD_QUEUE || queued(tid) >= 0)
            return -1;
        wd_q[wd_nq].tid = tid;
        wd_q[wd_nq].phase = FA_WD_PY_BEFORE;
        wd_q[wd_nq].start_ns = mono_ns();
        wd_nq++;
        return 1;  /* queued: watched once the watched fork returns */
    }
    return watch_thread(tid, tenths, tenths, tenths, FA_WD_PY_BEFORE);
}

void fa_wd_disarm_parent(int32_t tid) {
    struct itimerspec off;
    int i = queued(tid);
    if (i >= 0) {  /* a queued fork returned before its turn */
        for (; i + 1 < wd_nq; i++)
            wd_q[i] = wd_q[i + 1];
        wd_nq--;
        return;
    }
    if (fa_wd.parent_tid == 0 || fa_wd.parent_tid != tid)
        return;
    memset(&off, 0, sizeof off);
    if (wd_pid == (int32_t)getpid() && wd_ptimer >= 0)
        syscall(SYS_timer_settime, wd_ptimer, 0, &off, NULL);
    sight_over();                /* the fork returned */
    fa_wd.parent_tid = 0;
    fa_wd.phase = FA_WD_IDLE;
    while (wd_nq > 0 && wd_pid == (int32_t)getpid()) {  /* the oldest queued fork's turn */
        int32_t next = wd_q[0].tid, phase = wd_q[0].phase;
        int64_t waited = (mono_ns() - wd_q[0].start_ns) / 100000000;
        int32_t left = waited < wd_ptenths ? wd_ptenths - (int32_t)waited : 1;
        for (i = 0; i + 1 < wd_nq; i++)
            wd_q[i] = wd_q[i + 1];
        wd_nq--;
        if (watch_thread(next, wd_ptenths, left, (int32_t)(waited < wd_ptenths ? wd_ptenths : waited + 1), phase) == 0)
            break;
    }
}

/* A phase of thread tid's fork (the watched one's, or a queued one's) */
static void set_phase(int32_t tid, int32_t phase, int32_t only_from) {
    int i;
    if (fa_wd.parent_tid != 0 && fa_wd.parent_tid == tid) {
        if (only_from < 0 || fa_wd.phase == only_from)
            fa_wd.phase = phase;
    } else if ((i = queued(tid)) >= 0 && (only_from < 0 || wd_q[i].phase == only_from)) {
        wd_q[i].phase = phase;
    }
}

void fa_wd_late_before(int32_t tid) {
    set_phase(tid, FA_WD_LATE_BEFORE, FA_WD_PY_BEFORE);
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
    watch_child();
    wd_pid = (int32_t)getpid();
    wd_parent_pid = (int32_t)getppid();
    wd_ptimer = wd_ctimer = -1;
    wd_nlocks = 0;
    wd_done = 0;
    wd_seen = 0;
    wd_pseen = 0;
    fa_wd.parent_tid = 0;
    fa_wd.parent_fired = 0;
    fa_wd.parent_pending = 0;
    wd_nq = 0;  /* the queued forks were other threads' */
    fa_wd.phase = FA_WD_IDLE;  /* fa_wd.threads stays: the parent's thread count at this fork */
}

void fa_wd_on_prepare(void) {
    int32_t me = fa_sys_gettid();
    fa_wd.threads = 0;
    set_phase(me, FA_WD_PREPARE, -1);
    if ((fa_wd.parent_tid != 0 && fa_wd.parent_tid == me) || queued(me) >= 0) {
        fa_wd.threads = count_threads();
        watch_prepare(me);  /* glibc runs one fork's handlers at a time: one current slot */
    }
}

void fa_wd_on_parent(void) {
    watch_parent();
    set_phase(fa_sys_gettid(), FA_WD_PARENT_AFTER, -1);
}

/* ---- the child watch, from the parent ----------------------------------------------------
 *
 * A child can hang before its first Python after-fork hook ever runs (a C library's
 * pthread_atfork child handler waiting on a mutex another thread held at the fork, CPython's
 * own after-fork code) or inside an after-in-child hook on something that is no lock of the
 * fork's (grpc's fork support waiting for its own threads): the child's own timer is armed
 * by a Python hook, and judges only inherited locks. So the parent watches too. Its C
 * prepare handler claims a slot in a page shared with the child (MAP_SHARED, mapped by this
 * process); the child writes in that slot how far it got (forkaudit's C child handler,
 * its first Python hook, its tail hook); the parent's C parent handler learns the child's
 * pid (/proc/self/task/TID/children) and arms a one-shot, process-directed timer for the
 * earliest deadline. Every N s the handler looks at each child not yet through its at-fork
 * hooks, from outside: /proc/CHILD/stat, /proc/CHILD/syscall (the futex waited on),
 * /proc/CHILD/mem (a glibc mutex's owner, the stack's return addresses, symbolised against
 * this process's maps: the child's are this process's at the fork). A child not through its
 * C handlers after N s is reported; a child in its Python hooks after 3N s in the same wait
 * twice in a row (its own watchdog had two ticks to say more, and says when it did). Under
 * 'abort', a child in the same futex or poll-family wait (waits_for_event) at two looks in a
 * row, after its report, is asked to exit with status
 * 86 (a queued signal from its parent that the inherited handler obeys) or, where it blocks
 * the signal, killed. Nothing here runs in a child that is not stuck, and no thread is made. */

#include <sys/mman.h>
#include <sys/stat.h>

#define WD_SLOTS 256
#define WD_FRAMES 10

enum { SLOT_FREE, SLOT_FORKING, SLOT_WATCHED, SLOT_CHECKING };

struct wd_slot {
    int32_t state;         /* SLOT_*: the parent's */
    int32_t gen;           /* which fork the slot is for */
    volatile int32_t mark; /* the child's: gen << 4 | FA_WD_STAGE_* */
    int32_t pid, tid, looks, reported, tenths, policy;
    int64_t forked_ns;
    int64_t last_nr;
    uint64_t last_arg;
};

static struct wd_slot *wd_slots;   /* this process's page (wd_slots_pid), or an inherited one */
static int wd_wtimer = -1;
static int32_t wd_gen;
static int wd_cur = -1;            /* the slot of the fork under way (prepare .. parent/child) */
static int32_t wd_cur_last;        /* the forking thread's newest child before it */
static int32_t wd_watch_busy, wd_out_busy;
static char wd_json_path[4096];
static char wd_io[65536];          /* the handler's /proc reads */
static char wd_stack[32768];

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void out_lock(void) {
    int32_t zero = 0;
    while (!__atomic_compare_exchange_n(&wd_out_busy, &zero, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
        zero = 0;
        syscall(SYS_sched_yield);
    }
}

static void out_unlock(void) {
    __atomic_store_n(&wd_out_busy, 0, __ATOMIC_RELEASE);
}

/* "/proc/PID/what" */
static void proc_path(char *out, int32_t pid, const char *what) {
    char *p = out;
    memcpy(p, "/proc/", 6);
    p = fa_put_dec(p + 6, (uint64_t)pid);
    *p++ = '/';
    memcpy(p, what, strlen(what) + 1);
}

/* The newest child of thread tid (the last in /proc/self/task/TID/children), or 0. */
static int32_t newest_child(int32_t tid) {
    static char buf[16384];
    char path[64] = "/proc/self/task/", *p = fa_put_dec(path + 16, (uint64_t)tid);
    const char *s;
    int32_t last = 0;
    memcpy(p, "/children", 10);
    if (fa_read_file(path, buf, sizeof buf) < 0)
        return 0;
    for (s = buf; *s;) {
        if (*s >= '0' && *s <= '9')
            last = (int32_t)fa_parse_dec(&s);
        else
            s++;
    }
    return last;
}

static int slot_done(const struct wd_slot *s) {
    int32_t m = __atomic_load_n(&s->mark, __ATOMIC_ACQUIRE);
    return (m >> 4) == s->gen && (m & 15) >= FA_WD_STAGE_DONE;
}

/* The earliest look due among the children not yet through their at-fork handlers (0: none).
 * A child already through them frees its slot here: a burst of forks leaves one timer for its
 * newest children, and none once every child is through (no signal for a program not stuck). */
static int64_t next_due(void) {
    int64_t next = 0;
    int i;
    for (i = 0; i < WD_SLOTS; i++) {
        struct wd_slot *s = &wd_slots[i];
        int32_t want = SLOT_WATCHED;
        int64_t due;
        if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != SLOT_WATCHED)
            continue;
        if (slot_done(s)) {
            __atomic_compare_exchange_n(&s->state, &want, SLOT_FREE, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
            continue;
        }
        due = s->forked_ns + (int64_t)(s->looks + 1) * s->tenths * 100000000;
        if (next == 0 || due < next)
            next = due;
    }
    return next;
}

static void schedule(void) {
    struct itimerspec its;
    int64_t next;
    if (wd_slots == NULL || wd_wtimer < 0 || wd_slots_pid != (int32_t)getpid())
        return;
    memset(&its, 0, sizeof its);
    next = next_due();
    if (next == 0) {
        syscall(SYS_timer_settime, wd_wtimer, 0, &its, NULL);  /* nothing to watch: disarm */
        /* a fork in another thread may have set its slot WATCHED meanwhile: look once more */
        next = next_due();
        if (next == 0)
            return;
    }
    its.it_value.tv_sec = next / 1000000000;
    its.it_value.tv_nsec = next % 1000000000;
    syscall(SYS_timer_settime, wd_wtimer, 1 /* TIMER_ABSTIME */, &its, NULL);
}

/* C prepare handler, forking thread of a watched fork */
static void watch_prepare(int32_t me) {
    int i;
    wd_cur = -1;
    if (wd_slots == NULL || wd_wtimer < 0 || wd_slots_pid != (int32_t)getpid() || wd_watch_tenths <= 0)
        return;
    for (i = 0; i < 2 * WD_SLOTS; i++) {
        struct wd_slot *s = &wd_slots[i % WD_SLOTS];
        int32_t want = i < WD_SLOTS ? SLOT_FREE : SLOT_WATCHED;
        if (want == SLOT_WATCHED && !slot_done(s))
            continue;  /* second round: a slot whose child is through its hooks is free again */
        if (__atomic_compare_exchange_n(&s->state, &want, SLOT_FORKING, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            wd_gen = (wd_gen + 1) & 0x7ffffff;
            s->gen = wd_gen ? wd_gen : (wd_gen = 1);
            __atomic_store_n(&s->mark, 0, __ATOMIC_RELEASE);
            s->pid = 0;
            s->tid = me;
            s->looks = s->reported = 0;
            s->tenths = wd_watch_tenths;
            s->policy = wd_watch_policy;
            s->last_nr = -2;
            s->last_arg = 0;
            wd_cur = i % WD_SLOTS;
            wd_cur_last = newest_child(me);
            return;
        }
    }
}

static void watch_parent(void) {
    struct wd_slot *s;
    int32_t pid;
    if (wd_cur < 0 || wd_slots == NULL)
        return;
    s = &wd_slots[wd_cur];
    wd_cur = -1;
    pid = newest_child(s->tid);
    if (pid <= 0 || pid == wd_cur_last) {  /* the fork failed */
        __atomic_store_n(&s->state, SLOT_FREE, __ATOMIC_RELEASE);
        return;
    }
    s->pid = pid;
    s->forked_ns = mono_ns();
    __atomic_store_n(&s->state, SLOT_WATCHED, __ATOMIC_RELEASE);
    schedule();
}

static void watch_child(void) {
    wd_mark_slot = NULL;
    if (wd_cur >= 0 && wd_slots != NULL) {
        wd_mark_slot = &wd_slots[wd_cur];
        wd_mark_gen = wd_mark_slot->gen;
        __atomic_store_n(&wd_mark_slot->mark, wd_mark_gen << 4 | FA_WD_STAGE_C, __ATOMIC_RELEASE);
    }
    wd_cur = -1;
    wd_wtimer = -1;  /* timers are not inherited; the page is the parent's, not this process's */
}

void fa_wd_child_stage(int stage) {
    struct wd_slot *s = wd_mark_slot;
    int32_t m;
    if (s == NULL || wd_pid != (int32_t)getpid())
        return;
    m = __atomic_load_n(&s->mark, __ATOMIC_ACQUIRE);
    if ((m >> 4) == wd_mark_gen && (m & 15) < stage)
        __atomic_store_n(&s->mark, wd_mark_gen << 4 | stage, __ATOMIC_RELEASE);
    if (stage >= FA_WD_STAGE_DONE)
        wd_mark_slot = NULL;  /* its forks are watched from its own page */
}

int fa_wd_watch_setup(int32_t tenths, int policy) {
    struct wd_sigevent sev;
    int id = -1;
    void *page;
    if (tenths <= 0 || !wd_signo || !ours(wd_signo))
        return -1;
    wd_watch_tenths = tenths;
    wd_watch_policy = policy;
    if (wd_slots != NULL && wd_slots_pid == (int32_t)getpid() && wd_wtimer >= 0)
        return 0;
    page = mmap(NULL, sizeof(struct wd_slot) * WD_SLOTS, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED)
        return -1;
    memset(&sev, 0, sizeof sev);
    sev.value.sival_int = WD_WATCH;
    sev.signo = wd_signo;
    sev.notify = SIGEV_SIGNAL;  /* process-directed: whichever thread does not block it */
    if (syscall(SYS_timer_create, CLOCK_MONOTONIC, &sev, &id) != 0) {
        munmap(page, sizeof(struct wd_slot) * WD_SLOTS);
        return -1;
    }
    /* (an inherited page stays mapped: this process's own slot in it may still be written) */
    wd_slots = page;
    wd_slots_pid = (int32_t)getpid();
    wd_wtimer = id;
    return 0;
}

void fa_wd_set_json(const char *path) {
    size_t n = path == NULL ? 0 : strlen(path);
    if (n >= sizeof wd_json_path)
        n = 0;
    memcpy(wd_json_path, path == NULL ? "" : path, n);
    wd_json_path[n] = '\0';
}

/* ---- looking at a child from outside ---- */

struct wd_look {
    char state;            /* /proc/PID/stat's */
    int32_t ppid;
    int64_t nr;            /* system call (-1: blocked outside one, -2: running / unknown) */
    uint64_t arg0, sp, pc;
    int32_t owner;         /* a glibc mutex's owner at arg0, or 0 */
    int semaphore;         /* a taken semaphore at arg0 */
    int owner_here;        /* the owner is a thread of the child */
    int blocked_sig;       /* the child blocks the watchdog's signal */
    int threads;
    int nframes;
    uint64_t frames[WD_FRAMES];
};

static int look_stat(int32_t pid, struct wd_look *lk) {
    char path[64];
    const char *s;
    int field;
    proc_path(path, pid, "stat");
    if (fa_read_file(path, wd_io, sizeof wd_io) <= 0)
        return -1;
    s = fa_stat_state(wd_io);
    if (s == NULL)
        return -1;
    lk->state = s[0];
    s += 2;  /* field 4: ppid */
    lk->ppid = (int32_t)fa_parse_dec(&s);
    for (field = 5; field < 20 && *s; field++) {  /* field 20: num_threads */
        while (*s == ' ')
            s++;
        while (*s && *s != ' ')
            s++;
    }
    while (*s == ' ')
        s++;
    lk->threads = (int)fa_parse_dec(&s);
    return 0;
}

static uint64_t hex_word(const char **s) {
    while (**s == ' ')
        (*s)++;
    if ((*s)[0] == '0' && (*s)[1] == 'x')
        *s += 2;
    return fa_parse_hex(s);
}

static void look_syscall(int32_t pid, struct wd_look *lk) {
    char path[64];
    const char *s = wd_io;
    int i;
    lk->nr = -2;
    proc_path(path, pid, "syscall");
    if (fa_read_file(path, wd_io, sizeof wd_io) <= 0)
        return;
    if (*s == '-') {
        s += 2;
        lk->nr = -1;
        lk->sp = hex_word(&s);
        lk->pc = hex_word(&s);
        return;
    }
    if (*s < '0' || *s > '9')
        return;  /* "running" */
    lk->nr = (int64_t)fa_parse_dec(&s);
    lk->arg0 = hex_word(&s);
    for (i = 1; i < 6; i++)
        (void)hex_word(&s);
    lk->sp = hex_word(&s);
    lk->pc = hex_word(&s);
}

static int blocks_signal(int32_t pid, int signo) {
    char path[64];
    const char *s;
    uint64_t mask;
    proc_path(path, pid, "status");
    if (fa_read_file(path, wd_io, sizeof wd_io) <= 0)
        return 0;
    for (s = wd_io; *s; s++)
        if (s[0] == '\n' && memcmp(s + 1, "SigBlk:", 7) == 0) {
            s += 8;
            while (*s == '\t' || *s == ' ')
                s++;
            mask = fa_parse_hex(&s);
            return (int)((mask >> (signo - 1)) & 1);
        }
    return 0;
}

static ssize_t child_mem(int fd, uint64_t addr, void *out, size_t n) {
    if (fd < 0)
        return -1;
    return (ssize_t)syscall(SYS_pread64, fd, out, n, (long)addr);
}

/* Does the instruction before `ret` look like a call (x86-64 encodings)? */
static int after_call(uint64_t ret) {
#if defined(__x86_64__)
    unsigned char b[8];
    if (fa_read(ret - 8, b, 8) != 0)
        return 0;
    /* b[8 - k] is the byte at ret - k */
    if (b[3] == 0xe8)
        return 1;                                              /* call rel32 */
    if (b[6] == 0xff && ((b[7] & 0xf8) == 0xd0 || ((b[7] & 0xf8) == 0x10 && b[7] != 0x14 && b[7] != 0x15)))
        return 1;                                              /* call *reg, call *(reg) */
    if (b[5] == 0xff && ((b[6] & 0xf8) == 0x50 || b[6] == 0x14))
        return 1;                                              /* call *d8(reg), *(sib) */
    if (b[5] >= 0x40 && b[5] <= 0x4f && b[6] == 0xff && (b[7] & 0xf8) == 0xd0)
        return 1;                                              /* REX call *reg */
    if (b[2] == 0xff && (b[3] == 0x15 || (b[3] & 0xf8) == 0x90))
        return 1;                                              /* call *rip+d32, *d32(reg) */
    if (b[1] == 0xff && b[2] == 0x94)
        return 1;                                              /* call *d32(sib) */
    return 0;
#else
    (void)ret;
    return 0;
#endif
}

/* ---- this process's maps, for naming code addresses ---- */

#define WD_MAPS 1024
static struct {
    uint64_t start, end, offset, base;
    int exec;
    char path[192];
} wd_maps[WD_MAPS];
static int wd_nmaps;

static void load_maps(void) {
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    char line[512];
    int len = 0;
    uint64_t base = 0;
    char basepath[192] = "";
    wd_nmaps = 0;
    if (fd < 0)
        return;
    for (;;) {
        ssize_t got = read(fd, wd_io, sizeof wd_io);
        ssize_t i;
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        for (i = 0; i < got; i++) {
            if (wd_io[i] != '\n') {
                if (len < (int)sizeof line - 1)
                    line[len++] = wd_io[i];
                continue;
            }
            line[len] = '\0';
            len = 0;
            {
                const char *s = line, *path;
                uint64_t start = fa_parse_hex(&s), end, offset;
                char perms[5];
                if (*s++ != '-')
                    continue;
                end = fa_parse_hex(&s);
                if (*s++ != ' ')
                    continue;
                memcpy(perms, s, 4);
                perms[4] = '\0';
                s += 5;
                offset = fa_parse_hex(&s);
                path = strchr(s, '/');
                if (path == NULL)
                    continue;
                if (offset == 0) {
                    base = start;
                    strncpy(basepath, path, sizeof basepath - 1);
                    basepath[sizeof basepath - 1] = '\0';
                }
                if (perms[2] != 'x' || wd_nmaps >= WD_MAPS)
                    continue;
                wd_maps[wd_nmaps].start = start;
                wd_maps[wd_nmaps].end = end;
                wd_maps[wd_nmaps].offset = offset;
                wd_maps[wd_nmaps].exec = 1;
                strncpy(wd_maps[wd_nmaps].path, path, sizeof wd_maps[0].path - 1);
                wd_maps[wd_nmaps].path[sizeof wd_maps[0].path - 1] = '\0';
                wd_maps[wd_nmaps].base = strcmp(basepath, wd_maps[wd_nmaps].path) == 0 ? base : start - offset;
                wd_nmaps++;
            }
        }
    }
    close(fd);
}

static int map_of(uint64_t addr) {
    int i;
    for (i = 0; i < wd_nmaps; i++)
        if (addr >= wd_maps[i].start && addr < wd_maps[i].end)
            return i;
    return -1;
}

/* The exported (dynamic) function symbol containing addr in the object loaded at base, read
 * from memory: its name into out, and the offset from its start; -1 if none. */
static int64_t dyn_symbol(uint64_t base, uint64_t addr, char *out, size_t outlen) {
#if defined(__x86_64__) || defined(__aarch64__)
    unsigned char eh[64];
    uint64_t phoff, symtab = 0, strtab = 0, dyn = 0, bias = base, i, nsym;
    uint16_t phnum, phentsize;
    struct { uint32_t name; unsigned char info, other; uint16_t shndx; uint64_t value, size; } sym[64];
    int64_t best = -1;
    uint32_t best_name = 0;
    if (fa_read(base, eh, sizeof eh) != 0 || memcmp(eh, "\177ELF", 4) != 0 || eh[4] != 2)
        return -1;
    memcpy(&phoff, eh + 32, 8);
    memcpy(&phentsize, eh + 54, 2);
    memcpy(&phnum, eh + 56, 2);
    for (i = 0; i < phnum && i < 64; i++) {
        uint32_t type;
        uint64_t vaddr, off;
        if (fa_read(base + phoff + i * phentsize, &type, 4) != 0 ||
            fa_read(base + phoff + i * phentsize + 8, &off, 8) != 0 ||
            fa_read(base + phoff + i * phentsize + 16, &vaddr, 8) != 0)
            return -1;
        if (type == 1 && off == 0)
            bias = base - vaddr;  /* PT_LOAD at file offset 0 */
        if (type == 2)
            dyn = vaddr;           /* PT_DYNAMIC */
    }
    if (dyn == 0)
        return -1;
    for (i = 0; i < 512; i++) {
        int64_t d[2];
        if (fa_read(bias + dyn + i * 16, d, 16) != 0 || d[0] == 0)
            break;
        if (d[0] == 6)
            symtab = (uint64_t)d[1];
        if (d[0] == 5)
            strtab = (uint64_t)d[1];
    }
    if (symtab == 0 || strtab == 0)
        return -1;
    if (symtab < bias)
        symtab += bias;  /* ld.so relocates these in place on most systems, not everywhere */
    if (strtab < bias)
        strtab += bias;
    if (strtab <= symtab)
        return -1;
    nsym = (strtab - symtab) / 24;  /* .dynsym is followed by .dynstr */
    if (nsym > 200000)
        nsym = 200000;
    for (i = 0; i < nsym; i += 64) {
        uint64_t k, n = nsym - i < 64 ? nsym - i : 64;
        if (fa_read(symtab + i * 24, sym, n * 24) != 0)
            break;
        for (k = 0; k < n; k++) {
            uint64_t v = sym[k].value + bias;
            if ((sym[k].info & 15) == 2 && sym[k].shndx != 0 && addr >= v && addr < v + (sym[k].size ? sym[k].size : 1)) {
                best = (int64_t)(addr - v);
                best_name = sym[k].name;
            }
        }
    }
    if (best < 0 || fa_read(strtab + best_name, out, outlen - 1) != 0)
        return -1;
    out[outlen - 1] = '\0';
    return best;
#else
    (void)base; (void)addr; (void)out; (void)outlen;
    return -1;
#endif
}

static const char *base_name(const char *path) {
    const char *b = strrchr(path, '/');
    return b ? b + 1 : path;
}

static int is_libc(const char *path) {
    const char *b = base_name(path);
    return strncmp(b, "libc.so", 7) == 0 || strncmp(b, "libc-", 5) == 0 || strncmp(b, "libpthread", 10) == 0 ||
           strncmp(b, "ld-linux", 8) == 0;
}

/* CPython itself (its shared library or a static python executable) */
static int is_python(const char *path) {
    const char *b = base_name(path);
    return strncmp(b, "libpython", 9) == 0 || strncmp(b, "python", 6) == 0;
}

static void look_frames(int32_t pid, struct wd_look *lk) {
    char path[64];
    int fd, i;
    ssize_t got;
    lk->nframes = 0;
    if (lk->pc)
        lk->frames[lk->nframes++] = lk->pc;
    if (!lk->sp)
        return;
    proc_path(path, pid, "mem");
    fd = open(path, O_RDONLY | O_CLOEXEC);
    got = child_mem(fd, lk->sp, wd_stack, sizeof wd_stack);
    if (got <= 0) {  /* the stack's end is nearer than our buffer */
        got = child_mem(fd, lk->sp, wd_stack, 4096 - (lk->sp & 4095));
    }
    for (i = 0; got > 0 && i + 8 <= got && lk->nframes < WD_FRAMES; i += 8) {
        uint64_t w;
        memcpy(&w, wd_stack + i, 8);
        if (map_of(w) >= 0 && after_call(w) && w != lk->frames[lk->nframes - 1])
            lk->frames[lk->nframes++] = w;
    }
    if (fd >= 0)
        close(fd);
}

static void look_lock(int32_t pid, struct wd_look *lk) {
    char path[64];
    int fd;
    lk->owner = 0;
    lk->semaphore = 0;
    if (lk->nr != SYS_futex || lk->arg0 == 0)
        return;
    proc_path(path, pid, "mem");
    fd = open(path, O_RDONLY | O_CLOEXEC);
#if FA_LAYOUT_KNOWN
    {
        fa_mutex_layout m;
        if (child_mem(fd, lk->arg0, &m, sizeof m) == (ssize_t)sizeof m && m.owner > 0 &&
            fa_valid_mutex(&m, m.owner, FA_MAX_TIDS + 1))
            lk->owner = m.owner;
    }
#endif
    if (!lk->owner) {
        unsigned char b[12];
        uint64_t data;
        int32_t private_;
        if (child_mem(fd, lk->arg0, b, 12) == 12) {
            memcpy(&data, b, 8);
            memcpy(&private_, b + 8, 4);
            lk->semaphore = (uint32_t)data == 0 && (data >> 32) >= 1 && (private_ == 0 || private_ == 128);
        }
    }
    if (fd >= 0)
        close(fd);
    if (lk->owner) {
        char tpath[80];
        char *p;
        proc_path(tpath, pid, "task/");
        p = tpath + strlen(tpath);
        p = fa_put_dec(p, (uint64_t)lk->owner);
        *p = '\0';
        lk->owner_here = access(tpath, F_OK) == 0;
    }
}

/* ---- the report ---- */

static char wd_json[16384];
static int wd_jsonn;

static void js_mem(const char *s, size_t n) {
    if (wd_jsonn + (int)n < (int)sizeof wd_json) {
        memcpy(wd_json + wd_jsonn, s, n);
        wd_jsonn += (int)n;
    }
}

static void js_str(const char *s) {
    js_mem(s, strlen(s));
}

static void js_uint(uint64_t v) {
    char tmp[24];
    js_mem(tmp, (size_t)(fa_put_dec(tmp, v) - tmp));
}

static void js_hex(uint64_t v) {
    char tmp[24];
    int n = 0;
    js_str("\"0x");
    do {
        tmp[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    while (n)
        js_mem(&tmp[--n], 1);
    js_str("\"");
}

static void js_quoted(const char *s) {
    js_str("\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            js_mem("\\", 1);
            js_mem(s, 1);
        } else if (c < 0x20 || c >= 0x7f) {
            char esc[7] = "\\u00";
            esc[4] = "0123456789abcdef"[c >> 4];
            esc[5] = "0123456789abcdef"[c & 15];
            js_mem(esc, 6);  /* bytes above 0x7f as code points: valid JSON, paths stay readable */
        } else {
            js_mem(s, 1);
        }
    }
    js_str("\"");
}

/* "YYYY-MM-DDTHH:MM:SS.ffffffZ" like the fork records (civil date from days, no libc) */
static void js_time(void) {
    struct timespec ts;
    int64_t days, secs, z, era, doe, yoe, y, doy, mp, d, m;
    char buf[40], *p = buf;
    clock_gettime(CLOCK_REALTIME, &ts);
    days = ts.tv_sec / 86400;
    secs = ts.tv_sec % 86400;
    z = days + 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    {
        int64_t parts[6] = {y, m, d, secs / 3600, secs / 60 % 60, secs % 60};
        const char seps[6] = {'-', '-', 'T', ':', ':', '.'};
        int k;
        for (k = 0; k < 6; k++) {
            int width = k == 0 ? 4 : 2, w;
            char tmp[8];
            for (w = width - 1; w >= 0; w--) {
                tmp[w] = (char)('0' + parts[k] % 10);
                parts[k] /= 10;
            }
            memcpy(p, tmp, (size_t)width);
            p += width;
            *p++ = seps[k];
        }
        {
            long us = ts.tv_nsec / 1000;
            int w;
            for (w = 5; w >= 0; w--) {
                p[w] = (char)('0' + us % 10);
                us /= 10;
            }
            p += 6;
        }
        *p++ = 'Z';
        *p = '\0';
    }
    js_quoted(buf);
}

static const char *policy_name(int policy) {
    return policy == FA_WD_POLICY_ABORT ? "abort" : policy == FA_WD_POLICY_QUIET ? "record" : "warn";
}

/* Append wd_json (one line) to the report file: one write, O_APPEND, never through a
 * symlink, never blocking, only a regular file of this user not writable by others (the
 * checks of forkaudit/sink.py's open_report). */
static void js_flush(void) {
    struct stat st;
    int fd;
    if (!wd_json_path[0] || wd_jsonn <= 0 || wd_jsonn >= (int)sizeof wd_json - 1) {
        wd_jsonn = 0;
        return;
    }
    wd_json[wd_jsonn++] = '\n';
    fd = open(wd_json_path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0600);
    if (fd >= 0) {
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() && !(st.st_mode & (S_IWGRP | S_IWOTH)))
            (void)write(fd, wd_json, (size_t)wd_jsonn);
        close(fd);
    }
    wd_jsonn = 0;
}

/* The common head of every watchdog record */
static void js_head(const char *kind, int32_t pid, int32_t parent_pid, int policy, int tenths) {
    wd_jsonn = 0;
    js_str("{\"forkaudit\":1,\"event\":\"watchdog\",\"kind\":\"");
    js_str(kind);
    js_str("\",\"time\":");
    js_time();
    js_str(",\"pid\":");
    js_uint((uint64_t)pid);
    js_str(",\"parent_pid\":");
    js_uint((uint64_t)parent_pid);
    js_str(",\"policy\":\"");
    js_str(policy_name(policy));
    js_str("\",\"after_seconds\":");
    js_uint((uint64_t)tenths / 10);
    if (tenths % 10) {
        js_str(".");
        js_uint((uint64_t)tenths % 10);
    }
}

static void js_wait(uint64_t addr, int32_t owner, int owner_here, int semaphore, int64_t nr) {
    js_str(",\"waiting_on\":");
    if (addr == 0 && nr != SYS_futex) {
        js_str("null");
        return;
    }
    js_str("{\"futex\":");
    js_hex(addr);
    js_str(",\"kind\":\"");
    js_str(owner ? "glibc_mutex" : semaphore ? "semaphore" : "futex");
    js_str("\",\"owner_tid\":");
    if (owner)
        js_uint((uint64_t)owner);
    else
        js_str("null");
    js_str(",\"owner_alive\":");
    js_str(owner ? (owner_here ? "true" : "false") : "null");
    js_str("}");
}

static void report_frames(const struct wd_look *lk, int *lib_out) {
    int i, lib = -1;
    char name[128];
    for (i = 0; i < lk->nframes; i++) {
        int k = map_of(lk->frames[i]);
        if (k >= 0 && lib < 0 && !is_libc(wd_maps[k].path) && !is_python(wd_maps[k].path))
            lib = k;
    }
    *lib_out = lib;
    if (lib >= 0) {
        out_str("  in: ");
        out_str(base_name(wd_maps[lib].path));
        out_str(" (");
        out_str(wd_maps[lib].path);
        out_str("), the first code on its stack outside libc and CPython\n");
    } else if (lk->nframes > 1) {
        out_str("  in: CPython and libc only (a Python-level wait: the child's Python stack is not readable "
                "from outside)\n");
    }
    if (lk->nframes)
        out_str("  its stack (innermost first; return addresses found on it, named in this process's maps):\n");
    for (i = 0; i < lk->nframes; i++) {
        int k = map_of(lk->frames[i]);
        int64_t off;
        out_str("        ");
        out_hex(lk->frames[i]);
        if (k < 0) {
            out_str(" (not in this process's code)\n");
            continue;
        }
        out_str(" ");
        out_str(base_name(wd_maps[k].path));
        off = dyn_symbol(wd_maps[k].base, lk->frames[i] - (i > 0), name, sizeof name);
        if (off >= 0) {
            out_str(" ");
            out_str(name);
            out_str("+");
            out_hex((uint64_t)off + (i > 0));
        } else {
            out_str("+");
            out_hex(lk->frames[i] - wd_maps[k].base);
        }
        out_str("\n");
    }
}

static void js_frames(const struct wd_look *lk, int lib) {
    int i;
    char name[128];
    js_str(",\"library\":");
    if (lib >= 0)
        js_quoted(wd_maps[lib].path);
    else
        js_str("null");
    js_str(",\"stack\":[");
    for (i = 0; i < lk->nframes; i++) {
        int k = map_of(lk->frames[i]);
        int64_t off = -1;
        if (i)
            js_str(",");
        js_str("{\"address\":");
        js_hex(lk->frames[i]);
        js_str(",\"object\":");
        if (k >= 0)
            js_quoted(wd_maps[k].path);
        else
            js_str("null");
        js_str(",\"symbol\":");
        if (k >= 0)
            off = dyn_symbol(wd_maps[k].base, lk->frames[i] - (i > 0), name, sizeof name);
        if (off >= 0)
            js_quoted(name);
        else
            js_str("null");
        js_str("}");
    }
    js_str("]");
}

static void watch_report(struct wd_slot *s, int stage, const struct wd_look *lk, int seconds_tenths) {
    int lib;
    int32_t me = (int32_t)getpid();
    if (s->policy != FA_WD_POLICY_QUIET) {
        out_str("forkaudit watchdog: child ");
        out_uint((uint64_t)s->pid);
        out_str(" (forked from ");
        out_uint((uint64_t)me);
        out_str(" by thread ");
        out_uint((uint64_t)s->tid);
        out_str(") has not finished its at-fork handlers after ");
        wd_seconds = seconds_tenths;
        out_seconds();
        out_str("\n  where: ");
        if (stage < FA_WD_STAGE_PY) {
            out_str("before its Python after-fork hooks: in a C library's pthread_atfork child handler or "
                    "CPython's own after-fork code (");
            out_str(stage == FA_WD_STAGE_C ? "forkaudit's own C child handler had run: a handler registered after it"
                                           : "forkaudit's own C child handler had not run: glibc's fork or a handler "
                                             "registered before it");
            out_str(")\n");
        } else {
            out_str("inside the child's Python at-fork hooks (os.register_at_fork(after_in_child=...)), "
                    "on nothing the child's own watchdog could tie to a lock inherited held\n");
        }
        out_str("  waiting on: ");
        if (lk->nr == SYS_futex) {
            if (lk->owner) {
                out_str("the glibc mutex at ");
                out_hex(lk->arg0);
                out_str(", held by thread ");
                out_uint((uint64_t)lk->owner);
                out_comm(lk->owner);  /* this process's thread, if it still is one */
                out_str(lk->owner_here ? ", a thread of the child" : ", which does not exist in the child");
            } else if (lk->semaphore) {
                out_str("the semaphore at ");
                out_hex(lk->arg0);
                out_str(" (a Python threading.Lock/RLock's, or a C sem_t; taken)");
            } else {
                out_str("the futex at ");
                out_hex(lk->arg0);
            }
        } else if (lk->nr >= 0) {
            out_str("system call ");
            out_uint((uint64_t)lk->nr);
            out_str(" (not a futex wait)");
        } else if (lk->nr == -1) {
            out_str("nothing (blocked outside a system call)");
        } else {
            out_str("nothing (it is running)");
        }
        out_str("; ");
        out_uint((uint64_t)lk->threads);
        out_str(lk->threads == 1 ? " thread in the child\n" : " threads in the child\n");
    }
    if (s->policy != FA_WD_POLICY_QUIET)
        report_frames(lk, &lib);
    else {
        int i;
        lib = -1;
        for (i = 0; i < lk->nframes && lib < 0; i++) {
            int k = map_of(lk->frames[i]);
            if (k >= 0 && !is_libc(wd_maps[k].path) && !is_python(wd_maps[k].path))
                lib = k;
        }
    }
    out_flush();
    js_head("child-hooks", s->pid, me, s->policy, seconds_tenths);
    js_str(",\"side\":\"child\",\"where\":\"");
    js_str(stage < FA_WD_STAGE_PY ? "before-python-hooks" : "python-hooks");
    js_str("\",\"c_handler_ran\":");
    js_str(stage >= FA_WD_STAGE_C ? "true" : "false");
    js_str(",\"forking_tid\":");
    js_uint((uint64_t)s->tid);
    js_wait(lk->nr == SYS_futex ? lk->arg0 : 0, lk->owner, lk->owner_here, lk->semaphore, lk->nr);
    js_str(",\"syscall\":");
    if (lk->nr >= 0)
        js_uint((uint64_t)lk->nr);
    else
        js_str("null");
    js_str(",\"threads\":");
    js_uint((uint64_t)lk->threads);
    js_frames(lk, lib);
    js_str(",\"action\":\"reported\"}");
    js_flush();
}

static void watch_abort(struct wd_slot *s, const struct wd_look *lk) {
    siginfo_t si;
    int killed = 0;
    if (lk->blocked_sig) {
        killed = kill(s->pid, SIGKILL) == 0;
    } else {
        memset(&si, 0, sizeof si);
        si.si_signo = wd_signo;
        si.si_code = SI_QUEUE;
        si.si_pid = getpid();
        si.si_uid = getuid();
        si.si_value.sival_int = WD_ABORT;
        if (syscall(SYS_rt_tgsigqueueinfo, s->pid, s->pid, wd_signo, &si) != 0)
            killed = kill(s->pid, SIGKILL) == 0;
    }
    out_str("forkaudit: policy 'abort': child ");
    out_uint((uint64_t)s->pid);
    out_str(killed ? " is killed (SIGKILL: it blocks the watchdog's signal): it is stuck in its at-fork handlers\n"
                   : " exits with status 86: it is stuck in its at-fork handlers\n");
    out_flush();
    js_head("child-hooks", s->pid, (int32_t)getpid(), s->policy, s->tenths);
    js_str(",\"side\":\"child\",\"action\":\"");
    js_str(killed ? "killed" : "aborted");
    js_str("\"}");
    js_flush();
    fa_wd.watch_aborts++;
}

/* A system call that sleeps until an event another thread or process makes: a futex, or the
 * poll family (grpc's after-fork hook waits in epoll_wait for threads of its own). Not a
 * sleep (a deliberate delay) and not a read (which may wait for the parent's own data). */
static int waits_for_event(int64_t nr) {
    switch (nr) {
    case SYS_futex:
#ifdef SYS_epoll_wait
    case SYS_epoll_wait:
#endif
#ifdef SYS_epoll_pwait
    case SYS_epoll_pwait:
#endif
#ifdef SYS_epoll_pwait2
    case SYS_epoll_pwait2:
#endif
#ifdef SYS_poll
    case SYS_poll:
#endif
#ifdef SYS_ppoll
    case SYS_ppoll:
#endif
#ifdef SYS_select
    case SYS_select:
#endif
#ifdef SYS_pselect6
    case SYS_pselect6:
#endif
        return 1;
    default:
        return 0;
    }
}

static void watch_look(struct wd_slot *s) {
    struct wd_look lk;
    int32_t m = __atomic_load_n(&s->mark, __ATOMIC_ACQUIRE);
    int stage = (m >> 4) == s->gen ? (m & 15) : 0;
    int same, event_wait;
    memset(&lk, 0, sizeof lk);
    if (stage >= FA_WD_STAGE_DONE)
        return;
    if (look_stat(s->pid, &lk) != 0 || lk.ppid != (int32_t)getpid() || lk.state == 'Z' || lk.state == 'X') {
        __atomic_store_n(&s->state, SLOT_FREE, __ATOMIC_RELEASE);  /* gone: nothing to watch */
        return;
    }
    look_syscall(s->pid, &lk);
    s->looks++;
    same = s->looks > 1 && lk.nr == s->last_nr && lk.arg0 == s->last_arg && lk.nr >= 0;
    s->last_nr = lk.nr;
    s->last_arg = lk.arg0;
    event_wait = waits_for_event(lk.nr) && lk.state != 'R';
    /* reported only when seen in the same wait at two looks in a row (a child that is running,
     * slow in a C handler that works or on a loaded machine, is not stuck): before its Python
     * hooks from the second look, inside them from the third (its own watchdog had two ticks) */
    if (!s->reported && same && s->looks >= (stage < FA_WD_STAGE_PY ? 2 : 3)) {
        look_lock(s->pid, &lk);
        load_maps();
        look_frames(s->pid, &lk);
        s->reported = 1;
        watch_report(s, stage, &lk, s->tenths * s->looks);
        fa_wd.watch_reports++;
    }
    if (s->reported == 1 && s->policy == FA_WD_POLICY_ABORT && same && event_wait) {
        s->reported = 2;
        lk.blocked_sig = blocks_signal(s->pid, wd_signo);
        watch_abort(s, &lk);
    }
}

static void watch_fired(void) {
    int32_t zero = 0;
    int64_t now;
    int i;
    if (wd_slots == NULL || wd_slots_pid != (int32_t)getpid())
        return;
    if (!__atomic_compare_exchange_n(&wd_watch_busy, &zero, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
        return;
    now = mono_ns();
    for (i = 0; i < WD_SLOTS; i++) {
        struct wd_slot *s = &wd_slots[i];
        int32_t want = SLOT_WATCHED;
        if (!__atomic_compare_exchange_n(&s->state, &want, SLOT_CHECKING, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            continue;
        if (slot_done(s)) {
            __atomic_store_n(&s->state, SLOT_FREE, __ATOMIC_RELEASE);
            continue;
        }
        if (now >= s->forked_ns + (int64_t)(s->looks + 1) * s->tenths * 100000000) {
            out_lock();
            watch_look(s);
            out_unlock();
        }
        want = SLOT_CHECKING;
        __atomic_compare_exchange_n(&s->state, &want, SLOT_WATCHED, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&wd_watch_busy, 0, __ATOMIC_RELEASE);
    schedule();
}
