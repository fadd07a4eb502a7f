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
    uint64_t bytes;     /* resident bytes read */
    double seconds;
} fa_scan_stats;

/* 1 when glibc's lock layout matches what the scan expects; else 0 and a reason in msg. */
int fa_layout_check(char *msg, size_t msglen);
/* Register the pthread_atfork handlers (once; later calls do nothing). 0 on success. */
int fa_register(void);
/* Arming the next fork. These are plain variables, set from Python without a call:
 * cffi releases the GIL around calls, and the before-fork hook must not let other
 * threads run between its snapshot and the fork. fa_arm_mode is FA_SCAN_*; fa_armed = 1
 * makes prepare record the other threads and the child scan. */
extern int fa_arm_mode;
extern volatile int fa_armed;
/* The threads whose futex to read at the fork (/proc/self/task/TID/syscall): reading it
 * can make the kernel wait for a thread that is going to sleep, so only the threads the
 * Python snapshot found at a lock's acquisition point are probed. Plain variables too. */
#define FA_MAX_PROBE 64
extern int32_t fa_probe[FA_MAX_PROBE];
extern int fa_nprobe;
/* Type objects whose instances can mimic a held mutex (see scan.c); set once at install. */
void fa_set_reject(const uint64_t *reject, int nreject);
void fa_disarm(void);
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
/* Run a scan now in this process for the given owner TIDs (tests and benchmarks; call it
 * only in a single-threaded process, such as a forked child). */
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
/* The running thread's kernel id. */
int32_t fa_gettid(void);

#endif
