/* pthread_atfork handlers: what the shim does around each armed fork.
 *
 * prepare (parent, just before the fork system call): record the TID and
 *   kernel name of every other thread, from /proc/self/task.
 * child (in the child, after glibc reset its own locks): scan memory for
 *   locks those threads held (scan.c), into static storage; unless none of
 *   them has run since a scan that found nothing (quiet.c).
 * parent: nothing (the Python side frees the slot).
 *
 * A fork is armed only by forkaudit's Python before-fork hook, so a fork made
 * by C code and followed by exec (plain subprocess) costs nothing and reports
 * nothing. */
#define _GNU_SOURCE
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct fa_state fa_g;
fa_arm_slot fa_arm[FA_MAX_ARMED];
static const fa_arm_slot *armed;   /* the slot of the fork under way (prepare .. parent/child) */
static int child_armed;
static int registered;

int32_t fa_sys_gettid(void) {
    return (int32_t)syscall(SYS_gettid);
}

int32_t fa_gettid(void) {
    return fa_sys_gettid();
}

static int cmp_tid(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void read_comm(int32_t tid, char *out) {
    char path[64], *p = path;
    ssize_t got;
    memcpy(p, "/proc/self/task/", 16);
    p = fa_put_dec(p + 16, (uint64_t)(uint32_t)tid);
    memcpy(p, "/comm", 6);
    got = fa_read_file(path, out, FA_COMM_LEN);
    if (got <= 0)
        out[0] = '\0';
    else if (out[got - 1] == '\n')
        out[got - 1] = '\0';
}

static uint64_t hex_field(const char **s) {
    while (**s == ' ')
        (*s)++;
    if ((*s)[0] == '0' && (*s)[1] == 'x')
        *s += 2;
    return fa_parse_hex(s);
}

/* The futex word a thread is blocked on: /proc/self/task/TID/syscall reads
 * "202 0xUADDR ..." while the thread sleeps in futex(2). */
static uint64_t read_futex(int32_t tid) {
    char path[64], buf[128], *p = path;
    const char *s = buf;
    memcpy(p, "/proc/self/task/", 16);
    p = fa_put_dec(p + 16, (uint64_t)(uint32_t)tid);
    memcpy(p, "/syscall", 9);
    if (fa_read_file(path, buf, sizeof buf) <= 0 || *s < '0' || *s > '9' || fa_parse_dec(&s) != SYS_futex)
        return 0;
    return hex_field(&s);
}

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static void record_threads(void) {
    int fd, i;
    fa_g.ntids = 0;
    fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    for (;;) {
        long got = syscall(SYS_getdents64, fd, fa_g.io, sizeof fa_g.io);
        long off = 0;
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        while (off < got) {
            struct linux_dirent64 *d = (struct linux_dirent64 *)(fa_g.io + off);
            const char *s = d->d_name;
            int32_t tid;
            off += d->d_reclen;
            if (*s < '0' || *s > '9')
                continue;
            tid = (int32_t)fa_parse_dec(&s);
            if (tid != fa_g.forking_tid && fa_g.ntids < FA_MAX_TIDS)
                fa_g.tids[fa_g.ntids++] = tid;
        }
    }
    close(fd);
    qsort(fa_g.tids, (size_t)fa_g.ntids, sizeof fa_g.tids[0], cmp_tid);
    for (i = 0; i < fa_g.ntids; i++) {
        int k, probe = 0;
        read_comm(fa_g.tids[i], fa_g.comm[i]);
        for (k = 0; k < armed->nprobe && k < FA_MAX_PROBE; k++)
            probe |= armed->probe[k] == fa_g.tids[i];
        fa_g.futex[i] = probe ? read_futex(fa_g.tids[i]) : 0;
    }
}

static const fa_arm_slot *slot_of(int32_t tid) {
    int i;
    for (i = 0; i < FA_MAX_ARMED; i++)
        if (fa_arm[i].tid == tid)
            return &fa_arm[i];
    return NULL;
}

static void on_prepare(void) {
    int32_t me = fa_sys_gettid();
    fa_wd_on_prepare();
    armed = slot_of(me);
    if (armed == NULL)
        return;
    fa_g.mode = armed->mode;
    fa_g.forking_tid = me;
    fa_g.parent_pid = (int32_t)getpid();
    memset(&fa_g.stats, 0, sizeof fa_g.stats);
    record_threads();
    fa_quiet_prepare(armed->reuse);
}

static void on_parent(void) {
    fa_wd_on_parent();
    armed = NULL; /* the slot itself is the Python side's: its after-in-parent hook frees it */
}

static void on_child(void) {
    int i;
    fa_wd_on_child();
    child_armed = armed != NULL;
    armed = NULL;
    /* the other threads' slots belong to threads that do not exist here */
    for (i = 0; i < FA_MAX_ARMED; i++)
        if (fa_arm[i].tid != fa_g.forking_tid)
            fa_arm[i].tid = 0;
    if (child_armed && !fa_quiet_child())
        fa_scan_run(fa_g.mode);
}

int fa_child_armed(void) {
    return child_armed;
}

int fa_register(void) {
    if (registered)
        return 0;
    if (pthread_atfork(on_prepare, on_parent, on_child) != 0)
        return -1;
    registered = 1;
    return 0;
}

void fa_set_reject(const uint64_t *reject, int nreject) {
    int i;
    if (nreject > FA_MAX_REJECT)
        nreject = FA_MAX_REJECT;
    for (i = 0; i < nreject; i++)
        fa_g.reject[i] = reject[i];
    fa_g.nreject = nreject;
}

int fa_vanished(int32_t *tids, int max) {
    int i, n = fa_g.ntids < max ? fa_g.ntids : max;
    for (i = 0; i < n; i++)
        tids[i] = fa_g.tids[i];
    return fa_g.ntids;
}

int fa_vanished_futex(uint64_t *out, int max) {
    int i, n = fa_g.ntids < max ? fa_g.ntids : max;
    for (i = 0; i < n; i++)
        out[i] = fa_g.futex[i];
    return fa_g.ntids;
}

int32_t fa_forking_tid(void) {
    return fa_g.forking_tid;
}

int32_t fa_parent_pid(void) {
    return fa_g.parent_pid;
}

int fa_vanished_comm(int i, char *out, size_t outlen) {
    if (i < 0 || i >= fa_g.ntids || outlen == 0)
        return -1;
    strncpy(out, fa_g.comm[i], outlen - 1);
    out[outlen - 1] = '\0';
    return 0;
}

int fa_hits(fa_hit *out, int max) {
    int n = fa_g.stats.hits < max ? fa_g.stats.hits : max;
    if (out != NULL && n > 0) /* fa_hits(NULL, 0) asks for the count: memcpy(NULL, ...) is UB */
        memcpy(out, fa_g.hits, (size_t)n * sizeof *out);
    return fa_g.stats.hits;
}

void fa_stats(fa_scan_stats *out) {
    *out = fa_g.stats;
}
