/* The import-time check that glibc's lock layout is the one glibc_layout.h
 * describes: a helper thread takes real locks, and the validators must accept
 * exactly those (owner = that thread) and reject them once released. */
#define _GNU_SOURCE
#include "internal.h"

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
static volatile int step; /* 1: locks held, 2: may release, 3: released */

static void pause_a_little(void) {
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
}

static void *holder(void *arg) {
    (void)arg;
    pthread_mutex_lock(&normal);
    pthread_mutex_lock(&recursive);
    pthread_mutex_lock(&recursive);
    pthread_mutex_lock(&errorcheck);
    pthread_rwlock_wrlock(&rwlock);
    holder_tid = fa_sys_gettid();
    __atomic_store_n(&step, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&step, __ATOMIC_SEQ_CST) != 2)
        pause_a_little();
    pthread_rwlock_unlock(&rwlock);
    pthread_mutex_unlock(&errorcheck);
    pthread_mutex_unlock(&recursive);
    pthread_mutex_unlock(&recursive);
    pthread_mutex_unlock(&normal);
    __atomic_store_n(&step, 3, __ATOMIC_SEQ_CST);
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
    int held, wrong, after, waited = 0;
    if (verdict >= 0)
        goto out;
    verdict = 0;
    if (strverscmp(gnu_get_libc_version(), "2.25") < 0) {
        snprintf(reason, sizeof reason, "glibc %s is older than 2.25", gnu_get_libc_version());
        goto out;
    }
    step = 0;
    if (pthread_create(&t, NULL, holder, NULL) != 0) {
        snprintf(reason, sizeof reason, "could not start the check thread");
        goto out;
    }
    while (__atomic_load_n(&step, __ATOMIC_SEQ_CST) != 1 && waited++ < 50000)
        pause_a_little();
    held = all_valid(holder_tid);
    wrong = all_valid(holder_tid + 1);
    __atomic_store_n(&step, 2, __ATOMIC_SEQ_CST);
    pthread_join(t, NULL);
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
