/* The import-time check that glibc's lock layout is the one glibc_layout.h
 * describes: a helper thread takes real locks, and the validators must accept
 * exactly those (owner = that thread) and reject them once released. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#if FA_LAYOUT_KNOWN
#include <gnu/libc-version.h>

static pthread_mutex_t normal = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t recursive = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static pthread_mutex_t errorcheck = PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP;
static pthread_rwlock_t rwlock = PTHREAD_RWLOCK_INITIALIZER;
static volatile int32_t holder_tid;

/* The handshake with the helper thread: a mutex and a CLOCK_MONOTONIC condvar of our own
 * (not the locks under test), every wait bounded. If the thread starts late or stalls,
 * the check gives up (fails open: C-level detection off, with the reason) and marks the
 * round abandoned, so a late thread returns without taking anything, and nobody waits
 * for it again. */
static pthread_mutex_t sig_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sig_cond;
static int step;      /* 1: locks held, 2: may release, 3: released */
static int abandoned; /* the caller stopped waiting */

#define START_WAIT_MS 5000 /* for the thread to start and take the locks */
int fa_test_layout_delay_ms;            /* test-only: the thread starts this late */
int fa_test_layout_wait_ms = START_WAIT_MS;
#define HOLD_WAIT_MS 5000  /* for the caller to look (the thread's own bound) */
#define END_WAIT_MS 5000   /* for the thread to release them */

static void deadline_in(struct timespec *ts, long ms) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Wait (sig_mutex held) until step >= want; 0 on time, -1 after ms. */
static int wait_step(int want, long ms) {
    struct timespec until;
    deadline_in(&until, ms);
    while (step < want && !abandoned) {
        int rc = pthread_cond_timedwait(&sig_cond, &sig_mutex, &until);
        if (rc == ETIMEDOUT)
            return step >= want ? 0 : -1;
        if (rc != 0 && rc != EINTR)
            return -1;
    }
    return step >= want ? 0 : -1;
}

static void set_step(int value) {
    pthread_mutex_lock(&sig_mutex);
    step = value;
    pthread_cond_broadcast(&sig_cond);
    pthread_mutex_unlock(&sig_mutex);
}

static void *holder(void *arg) {
    int late;
    (void)arg;
    if (fa_test_layout_delay_ms > 0) {
        struct timespec ts = {fa_test_layout_delay_ms / 1000, (fa_test_layout_delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&sig_mutex);
    late = abandoned;
    pthread_mutex_unlock(&sig_mutex);
    if (late)
        return NULL;
    pthread_mutex_lock(&normal);
    pthread_mutex_lock(&recursive);
    pthread_mutex_lock(&recursive);
    pthread_mutex_lock(&errorcheck);
    pthread_rwlock_wrlock(&rwlock);
    holder_tid = fa_sys_gettid();
    pthread_mutex_lock(&sig_mutex);
    step = 1;
    pthread_cond_broadcast(&sig_cond);
    (void)wait_step(2, HOLD_WAIT_MS); /* abandoned or timed out: release all the same */
    pthread_mutex_unlock(&sig_mutex);
    pthread_rwlock_unlock(&rwlock);
    pthread_mutex_unlock(&errorcheck);
    pthread_mutex_unlock(&recursive);
    pthread_mutex_unlock(&recursive);
    pthread_mutex_unlock(&normal);
    set_step(3);
    return NULL;
}

static int all_valid(int32_t tid) {
    return fa_valid_mutex((const fa_mutex_layout *)&normal, tid, 2) +
           fa_valid_mutex((const fa_mutex_layout *)&recursive, tid, 2) +
           fa_valid_mutex((const fa_mutex_layout *)&errorcheck, tid, 2) +
           fa_valid_rwlock((const fa_rwlock_layout *)&rwlock, tid, 2);
}

int fa_layout_check(char *msg, size_t msglen) {
    static int verdict = -1;
    static char reason[200];
    pthread_t t;
    pthread_condattr_t attr;
    int held, wrong, after, late;
    if (verdict >= 0)
        goto out;
    verdict = 0;
    if (strverscmp(gnu_get_libc_version(), "2.25") < 0) {
        snprintf(reason, sizeof reason, "glibc %s is older than 2.25", gnu_get_libc_version());
        goto out;
    }
    step = 0;
    abandoned = 0;
    if (pthread_condattr_init(&attr) != 0 || pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&sig_cond, &attr) != 0) {
        snprintf(reason, sizeof reason, "could not set up the layout check");
        goto out;
    }
    pthread_condattr_destroy(&attr);
    if (pthread_create(&t, NULL, holder, NULL) != 0) {
        snprintf(reason, sizeof reason, "could not start the layout check thread");
        goto out;
    }
    pthread_mutex_lock(&sig_mutex);
    late = wait_step(1, fa_test_layout_wait_ms > 0 ? fa_test_layout_wait_ms : START_WAIT_MS);
    if (late) {
        abandoned = 1;
        pthread_cond_broadcast(&sig_cond);
        pthread_mutex_unlock(&sig_mutex);
        pthread_detach(t);
        snprintf(reason, sizeof reason, "the layout check thread did not take its locks within %d ms",
                 fa_test_layout_wait_ms > 0 ? fa_test_layout_wait_ms : START_WAIT_MS);
        goto out;
    }
    pthread_mutex_unlock(&sig_mutex);
    held = all_valid(holder_tid);
    wrong = all_valid(holder_tid + 1);
    pthread_mutex_lock(&sig_mutex);
    step = 2;
    pthread_cond_broadcast(&sig_cond);
    late = wait_step(3, END_WAIT_MS);
    if (late)
        abandoned = 1;
    pthread_mutex_unlock(&sig_mutex);
    if (late) {
        pthread_detach(t);
        snprintf(reason, sizeof reason, "the layout check thread did not release its locks within %d ms",
                 END_WAIT_MS);
        goto out;
    }
    pthread_join(t, NULL); /* it has released everything and is returning */
    after = all_valid(holder_tid);
    if (held == 4 && wrong == 0 && after == 0) {
        verdict = 1;
        snprintf(reason, sizeof reason, "glibc %s lock layout verified", gnu_get_libc_version());
    } else {
        snprintf(reason, sizeof reason,
                 "glibc %s lock layout differs from forkaudit's (held %d/4, foreign %d, released %d)",
                 gnu_get_libc_version(), held, wrong, after);
    }
out:
    if (msg && msglen) {
        strncpy(msg, reason, msglen - 1);
        msg[msglen - 1] = '\0';
    }
    return verdict;
}
#else
/* Built where glibc_layout.h describes no layout: say which case in the reason, which
 * forkaudit puts in every record (c_level "unavailable: <reason>"). */
#if defined(__linux__) && defined(__GLIBC__)
#include <gnu/libc-version.h>
#endif

#if defined(__aarch64__)
#define FA_ARCH "aarch64"
#elif defined(__i386__)
#define FA_ARCH "i686"
#elif defined(__arm__)
#define FA_ARCH "arm"
#elif defined(__powerpc64__)
#define FA_ARCH "ppc64"
#elif defined(__s390x__)
#define FA_ARCH "s390x"
#elif defined(__riscv)
#define FA_ARCH "riscv"
#elif defined(__x86_64__)
#define FA_ARCH "x86_64"
#else
#define FA_ARCH "this architecture"
#endif

int fa_test_layout_delay_ms;
int fa_test_layout_wait_ms;
int fa_layout_check(char *msg, size_t msglen) {
    if (msg && msglen) {
#if defined(__linux__) && defined(__GLIBC__)
        snprintf(msg, msglen, "glibc %s lock layout not verified on %s (C-level detection is built for x86_64)",
                 gnu_get_libc_version(), FA_ARCH);
#elif defined(__linux__) && !defined(__BIONIC__)
        /* no glibc on Linux: musl (it defines no macro of its own to test) */
        snprintf(msg, msglen, "musl libc (C-level detection reads glibc's lock layout)");
#else
        snprintf(msg, msglen, "C-level lock detection needs Linux with glibc on x86_64");
#endif
    }
    return 0;
}
#endif
