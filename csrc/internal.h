/* State and helpers shared by the shim's C files (not part of the cffi interface). */
#ifndef FORKAUDIT_INTERNAL_H
#define FORKAUDIT_INTERNAL_H

#include "shim.h"
#include "glibc_layout.h"

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
    fa_scan_stats stats;
    char io[65536];                     /* /proc reads */
    unsigned char vec[65536];           /* mincore residency, one byte a page */
};

extern struct fa_state fa_g;

int fa_valid_mutex(const fa_mutex_layout *m, int32_t tid, uint32_t maxusers);
int fa_valid_rwlock(const fa_rwlock_layout *r, int32_t tid, uint32_t maxthreads);
void fa_scan_run(int mode);
int32_t fa_sys_gettid(void);
/* Parse lowercase hex digits at *s, advancing *s (no stdio in the fork path). */
uint64_t fa_parse_hex(const char **s);

#endif
