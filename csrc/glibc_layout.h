/* glibc's private lock layouts, in one place.
 *
 * forkaudit reads pthread_mutex_t / pthread_rwlock_t as raw memory, so it
 * depends on glibc's layout of them. These are the x86_64 layouts of glibc
 * 2.25 and later (the rwlock was rewritten in 2.25). They are checked twice:
 * at build time against the system headers (static asserts below) and at
 * import time against the running libc (fa_layout_check() locks real locks in
 * a thread and validates what it reads). Anywhere else (musl, macOS, another
 * architecture, or built with -DFA_NO_LAYOUT to test that path) FA_LAYOUT_KNOWN
 * is 0 and C-level detection is off.
 */
#ifndef FORKAUDIT_GLIBC_LAYOUT_H
#define FORKAUDIT_GLIBC_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#if defined(__linux__) && defined(__GLIBC__) && defined(__x86_64__) && !defined(FA_NO_LAYOUT)
#define FA_LAYOUT_KNOWN 1
#else
#define FA_LAYOUT_KNOWN 0
#endif

/* struct __pthread_mutex_s (sysdeps/x86/nptl/bits/struct_mutex.h) */
typedef struct {
    int32_t lock;      /* 0 free, 1 locked, 2 locked with waiters; robust/PI: owner TID | flags */
    uint32_t count;    /* recursion depth (recursive), 1 for robust/PI */
    int32_t owner;     /* TID of the owner */
    uint32_t nusers;   /* threads holding it, condvar waiters included */
    int32_t kind;      /* type | flags (robust, PI, PP, pshared, elision) */
    int16_t spins;     /* adaptive mutexes only */
    int16_t elision;   /* lock elision only */
    uint64_t prev;     /* robust list links; zero for non-robust mutexes */
    uint64_t next;
} fa_mutex_layout;

/* struct __pthread_rwlock_arch_t (sysdeps/x86/nptl/bits/struct_rwlock.h) */
typedef struct {
    uint32_t readers;        /* WRPHASE 1 | WRLOCKED 2 | RWAITING 4 | readers << 3 */
    uint32_t writers;        /* waiting writers | WRHANDOVER (1 << 31) */
    uint32_t wrphase_futex;  /* 1 in write phase | 2 futex used */
    uint32_t writers_futex;  /* 1 write-locked | 2 futex used */
    uint32_t pad3;
    uint32_t pad4;
    int32_t cur_writer;      /* TID of the writer */
    int32_t shared;          /* 0 private, 1 process-shared */
    int8_t rwelision;
    uint8_t pad1[7];
    uint64_t pad2;
    uint32_t flags;          /* PREFER_READER 0, PREFER_WRITER 1, PREFER_WRITER_NONRECURSIVE 2 */
    uint32_t tail_pad;
} fa_rwlock_layout;

#define FA_MUTEX_SIZE 40
#define FA_RWLOCK_SIZE 56
#define FA_MUTEX_OWNER_OFFSET 8
#define FA_RWLOCK_WRITER_OFFSET 24

/* mutex kind bits (nptl/pthreadP.h) */
#define FA_MUTEX_TYPE_MASK 3         /* TIMED 0, RECURSIVE 1, ERRORCHECK 2, ADAPTIVE 3 */
#define FA_MUTEX_ROBUST 16
#define FA_MUTEX_PRIO_INHERIT 32
#define FA_MUTEX_PRIO_PROTECT 64
#define FA_MUTEX_PSHARED 128
#define FA_MUTEX_ELISION 256
#define FA_MUTEX_NO_ELISION 512
#define FA_MUTEX_PRIO_CEILING_MASK 0xfff80000u
#define FA_MUTEX_KNOWN_BITS (FA_MUTEX_TYPE_MASK | FA_MUTEX_ROBUST | FA_MUTEX_PRIO_INHERIT | \
                             FA_MUTEX_PRIO_PROTECT | FA_MUTEX_PSHARED | FA_MUTEX_ELISION | \
                             FA_MUTEX_NO_ELISION)
#define FA_FUTEX_WAITERS 0x80000000u
#define FA_FUTEX_OWNER_DIED 0x40000000u
#define FA_FUTEX_TID_MASK 0x3fffffffu

/* rwlock bits (nptl/pthread_rwlock_common.c) */
#define FA_RWLOCK_WRPHASE 1u
#define FA_RWLOCK_WRLOCKED 2u
#define FA_RWLOCK_READER_SHIFT 3
#define FA_RWLOCK_WRHANDOVER 0x80000000u

#if FA_LAYOUT_KNOWN
#include <pthread.h>
_Static_assert(sizeof(pthread_mutex_t) == FA_MUTEX_SIZE, "pthread_mutex_t size");
_Static_assert(sizeof(fa_mutex_layout) == FA_MUTEX_SIZE, "fa_mutex_layout size");
_Static_assert(offsetof(pthread_mutex_t, __data.__owner) == offsetof(fa_mutex_layout, owner), "mutex owner");
_Static_assert(offsetof(pthread_mutex_t, __data.__kind) == offsetof(fa_mutex_layout, kind), "mutex kind");
_Static_assert(offsetof(pthread_mutex_t, __data.__list) == offsetof(fa_mutex_layout, prev), "mutex list");
_Static_assert(sizeof(pthread_rwlock_t) == FA_RWLOCK_SIZE, "pthread_rwlock_t size");
_Static_assert(sizeof(fa_rwlock_layout) == FA_RWLOCK_SIZE, "fa_rwlock_layout size");
_Static_assert(offsetof(pthread_rwlock_t, __data.__cur_writer) == offsetof(fa_rwlock_layout, cur_writer), "rwlock writer");
_Static_assert(offsetof(pthread_rwlock_t, __data.__flags) == offsetof(fa_rwlock_layout, flags), "rwlock flags");
_Static_assert(offsetof(fa_mutex_layout, owner) == FA_MUTEX_OWNER_OFFSET, "owner offset");
_Static_assert(offsetof(fa_rwlock_layout, cur_writer) == FA_RWLOCK_WRITER_OFFSET, "writer offset");
#endif

#endif
