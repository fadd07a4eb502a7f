/* State and helpers shared by the shim's C files (not part of the cffi interface). */
#ifndef FORKAUDIT_INTERNAL_H
#define FORKAUDIT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shim.h"

/* The scan reads whole mappings, sanitizer redzones and shadow memory included, through
 * casts: the functions that touch scanned memory are exempt from ASan/UBSan checks. */
#if defined(__has_attribute)
#if __has_attribute(no_sanitize)
#define FA_NO_SANITIZE __attribute__((no_sanitize("address", "undefined")))
#endif
#endif
#ifndef FA_NO_SANITIZE
#define FA_NO_SANITIZE
#endif

#include "glibc_layout.h"
#include "pymalloc_layout.h"

#define FA_LATER_MAX 4096

/* A private writable mapping the scan's first pass noted for its second (scan.c) */
struct fa_later {
    uintptr_t start, end, lo, hi; /* the mapping, and the part the first pass read (hi <= lo: none) */
    int anonymous;
};

/* A clean scan's baseline (quiet.c): each other thread's scheduler counters at a fork. */
#define FA_QUIET_MAX 256
struct fa_quiet_thread {
    int32_t tid;
    int32_t pad;
    uint64_t runtime;  /* ns on a CPU */
    uint64_t arrivals; /* times put on a CPU */
};
struct fa_quiet_base {
    uint64_t gen;      /* 0: none */
    int32_t pid;       /* the process whose threads these are */
    int32_t forking;   /* its thread that forked */
    int32_t mode;      /* FA_SCAN_* of the scan */
    int32_t n;
    int32_t scan_pid;  /* the child whose scan found nothing */
    int32_t pad;
    uint64_t bytes, bytes_total; /* what that scan read */
    struct fa_quiet_thread t[FA_QUIET_MAX]; /* sorted by tid */
};

/* Everything the fork path writes lives in this one static struct: no
 * allocation on that path, and the scan can skip our own memory. */
struct fa_state {
    int mode;                           /* the mode of the fork under way */
    int32_t forking_tid;
    int32_t parent_pid;
    int ntids;
    int32_t tids[FA_MAX_TIDS];          /* the other threads at the fork, sorted */
    char comm[FA_MAX_TIDS][FA_COMM_LEN];
    uint64_t futex[FA_MAX_TIDS];        /* futex word each thread was blocked on, or 0 */
    int nreject;
    uint64_t reject[FA_MAX_REJECT];
    fa_hit hits[FA_MAX_HITS];
    int npytypes;
    uint64_t pytypes[FA_MAX_PYTYPES];   /* Python lock types (ob_type values) */
    int32_t pykinds[FA_MAX_PYTYPES];    /* FA_PYLOCK_* of each */
    int32_t buf_lock_off, buf_owner_off; /* a buffered IO object's lock and owner fields (0: unknown) */
    fa_pylock pylocks[FA_MAX_PYLOCKS];
    fa_scan_stats stats;
    uint64_t budget_ms, budget_bytes;   /* the child-side scan's budgets (0: none) */
    uint64_t pool_size;                 /* pymalloc's pool size (0: skip no pool) */
    uint64_t pool_wanted;               /* size classes whose pools are read (a bit each; 64 bits
                                           wide: io below must stay 8-aligned for dirents) */
    char io[65536];                     /* /proc reads */
    union {                             /* page residency, one batch at a time */
        unsigned char vec[65536];       /* mincore: one byte a page */
        uint64_t pm[8192];              /* /proc/self/pagemap: one entry a page */
        struct { uint64_t start, end, categories; } regions[2730]; /* PAGEMAP_SCAN */
    } res;
    struct fa_later later[FA_LATER_MAX]; /* touched only as far as filled: a page a 100 mappings */
    int quiet_reuse;                    /* this fork's child may reuse quiet_base (quiet.c) */
    uint64_t quiet_gen;                 /* the last baseline generation this process issued */
    uint64_t quiet_adopted;             /* the newest proposal adopted */
    struct fa_quiet_base quiet_base;    /* the adopted baseline (parent's; a child's copy) */
    struct fa_quiet_base quiet_try;     /* this fork's readings, a baseline if its child proves clean */
};

extern struct fa_state fa_g;
/* getdents(2) fills io with 8-aligned struct linux_dirent64 records */
_Static_assert(offsetof(struct fa_state, io) % 8 == 0, "fa_state.io is 8-aligned");


int fa_valid_mutex(const fa_mutex_layout *m, int32_t tid, uint32_t maxusers);
int fa_valid_rwlock(const fa_rwlock_layout *r, int32_t tid, uint32_t maxthreads);
void fa_scan_run(int mode);
/* quiet.c: the C prepare handler's part (allowed: the fork's slot allows reuse), and the
 * child's (1: the baseline holds, stats say so, no scan is needed). */
void fa_quiet_prepare(int allowed);
int fa_quiet_child(void);
int32_t fa_sys_gettid(void);
/* watchdog.c's parts of the pthread_atfork handlers */
void fa_wd_on_prepare(void);
void fa_wd_on_parent(void);
void fa_wd_on_child(void);
/* Parse lowercase hex digits at *s, advancing *s (no stdio in the fork path). */
uint64_t fa_parse_hex(const char **s);
/* Parse decimal digits at *s, after any spaces, advancing *s. */
uint64_t fa_parse_dec(const char **s);
/* Read a file (a /proc one) into buf, NUL-terminated, at most size - 1 bytes: its length, or -1
 * if it cannot be opened (no allocation, async-signal-safe). */
ssize_t fa_read_file(const char *path, char *buf, size_t size);
/* In the text of a /proc/PID/stat ("PID (comm) S ..."; comm may hold ')'): where the state
 * letter is, or NULL. */
const char *fa_stat_state(const char *stat);
/* CLOCK_MONOTONIC in seconds. */
double fa_now(void);
/* Write v in decimal at p (no terminator); returns the end (async-signal-safe, no stdio). */
char *fa_put_dec(char *p, uint64_t v);

#endif
