/* The child-side scan: walk the readable, writable, private mappings of this
 * process and record every glibc mutex / write-held rwlock whose owner is a
 * thread that vanished at the fork.
 *
 * Runs in the forked child (single-threaded, memory an exact copy of the
 * parent's): no allocation, no locks, no stdio. /proc/self/maps is parsed by
 * hand from a static buffer; non-resident pages are skipped (mincore), and a
 * fault on any read (a file mapping past its end, say) skips that page
 * instead of killing the process (SIGSEGV/SIGBUS handlers + siglongjmp). */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define BLOCK_WORDS 16u /* 64 bytes: one vectorisable prefilter step */

typedef struct {
    uintptr_t start, end;
    char perms[4];
    const char *path; /* NUL-terminated within fa_g.io, or "" */
} mapping;

static sigjmp_buf fault_jump;
static volatile sig_atomic_t guarding;
static volatile uintptr_t fault_addr;

static void on_fault(int sig, siginfo_t *info, void *ctx) {
    (void)sig;
    (void)ctx;
    if (guarding) {
        fault_addr = (uintptr_t)info->si_addr;
        siglongjmp(fault_jump, 1);
    }
    _exit(70); /* not ours: nothing sane is left to do */
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int vanished(int32_t tid) {
    int lo = 0, hi = fa_g.ntids - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (fa_g.tids[mid] == tid)
            return 1;
        if (fa_g.tids[mid] < tid)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return 0;
}

static int rejected(uintptr_t lock, uintptr_t map_start) {
    uintptr_t state = (uintptr_t)&fa_g;
    int i;
    if (lock + FA_RWLOCK_SIZE > state && lock < state + sizeof fa_g)
        return 1; /* our own bookkeeping holds TIDs */
    if (lock >= map_start + 8) {
        uint64_t before = *(const uint64_t *)(lock - 8);
        for (i = 0; i < fa_g.nreject; i++)
            if (before == fa_g.reject[i])
                return 1; /* sits inside an object of a rejected type (a Python int) */
    }
    return 0;
}

static void record(uintptr_t addr, int kind, int32_t owner, int32_t type, int32_t word,
                   uint32_t count, uint32_t nusers) {
    fa_hit *h;
    int i;
    for (i = 0; i < fa_g.stats.hits; i++)
        if (fa_g.hits[i].addr == addr)
            return;
    if (fa_g.stats.hits >= FA_MAX_HITS) {
        fa_g.stats.overflow++;
        return;
    }
    h = &fa_g.hits[fa_g.stats.hits++];
    h->addr = addr;
    h->kind = kind;
    h->owner = owner;
    h->type = type;
    h->word = word;
    h->count = count;
    h->nusers = nusers;
}

static void check_candidate(uintptr_t p, int32_t tid, const mapping *m) {
    uint32_t maxthreads = (uint32_t)fa_g.ntids + 1;
    uintptr_t mu = p - FA_MUTEX_OWNER_OFFSET, rw = p - FA_RWLOCK_WRITER_OFFSET;
    if (mu >= m->start && mu + FA_MUTEX_SIZE <= m->end && (mu & 7) == 0) {
        const fa_mutex_layout *x = (const fa_mutex_layout *)mu;
        if (fa_valid_mutex(x, tid, maxthreads) && !rejected(mu, m->start))
            record(mu, FA_KIND_MUTEX, tid, x->kind, x->lock, x->count, x->nusers);
    }
    if (rw >= m->start && rw + FA_RWLOCK_SIZE <= m->end && (rw & 7) == 0) {
        const fa_rwlock_layout *y = (const fa_rwlock_layout *)rw;
        if (fa_valid_rwlock(y, tid, maxthreads) && !rejected(rw, m->start))
            record(rw, FA_KIND_RWLOCK, tid, (int32_t)y->flags, (int32_t)y->readers, 0, 0);
    }
}

/* The exact look at the 8-aligned words of a block that passed the prefilter. */
static void exact(const uint32_t *w, size_t count, const mapping *m, uint32_t lo, uint32_t span) {
    size_t j;
    for (j = 0; j < count; j += 2) {
        uint32_t v = w[j];
        if (v - lo <= span && vanished((int32_t)v))
            check_candidate((uintptr_t)&w[j], (int32_t)v, m);
    }
}

/* The portable hot loop: a branch-free range test over 64-byte blocks (gcc
 * vectorises it), then an exact look at the rare blocks that pass. */
static size_t prefilter_portable(const uint32_t *w, size_t n, const mapping *m, uint32_t lo, uint32_t span) {
    size_t i, j;
    for (i = 0; i + BLOCK_WORDS <= n; i += BLOCK_WORDS) {
        unsigned any = 0;
        /* only the 8-aligned words can be an owner field (exact() looks at no other); the
         * odd ones are the high halves of pointers (0x55xx, 0x7fxx), values a TID can take */
        for (j = 0; j < BLOCK_WORDS; j += 2)
            any |= (unsigned)(w[i + j] - lo <= span);
        if (any)
            exact(w + i, BLOCK_WORDS, m, lo, span);
    }
    return i;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define AVX2_WORDS 64u /* 256 bytes per test */

/* The same test with AVX2, 256 bytes per branch: x - lo <= span (unsigned) is
 * min(x - lo, span) == x - lo. Chosen at run time (__builtin_cpu_supports). */
__attribute__((target("avx2"))) static size_t prefilter_avx2(const uint32_t *w, size_t n, const mapping *m,
                                                             uint32_t lo, uint32_t span) {
    const __m256i vlo = _mm256_set1_epi32((int)lo), vspan = _mm256_set1_epi32((int)span);
    /* lanes 0, 2, 4, 6: the 8-aligned words, the only ones exact() looks at */
    const __m256i even = _mm256_set_epi32(0, -1, 0, -1, 0, -1, 0, -1);
    size_t i;
    for (i = 0; i + AVX2_WORDS <= n; i += AVX2_WORDS) {
        __m256i acc = _mm256_setzero_si256();
        unsigned k;
        for (k = 0; k < AVX2_WORDS; k += 8) {
            __m256i d = _mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(w + i + k)), vlo);
            acc = _mm256_or_si256(acc, _mm256_cmpeq_epi32(_mm256_min_epu32(d, vspan), d));
        }
        if (!_mm256_testz_si256(acc, even))
            exact(w + i, AVX2_WORDS, m, lo, span);
    }
    return i;
}

static int have_avx2(void) {
    static int known = -1;
    if (known < 0)
        known = __builtin_cpu_supports("avx2") ? 1 : 0;
    return known;
}
#endif

static void scan_run(uintptr_t from, uintptr_t to, const mapping *m, uint32_t lo, uint32_t span) {
    const uint32_t *w = (const uint32_t *)from;
    size_t n = (to - from) / 4, done;
#if defined(__x86_64__) && defined(__GNUC__)
    if (have_avx2())
        done = prefilter_avx2(w, n, m, lo, span);
    else
#endif
        done = prefilter_portable(w, n, m, lo, span);
    if (done < n)
        exact(w + done, (n - done) & ~(size_t)1, m, lo, span);
}

typedef void (*run_fn)(uintptr_t from, uintptr_t to, const mapping *m, void *arg);

/* Run fn over [first, stop) under the fault guard; a fault skips the faulting page. */
static void guarded_run(const mapping *m, uintptr_t first, uintptr_t stop, run_fn fn, void *arg) {
    volatile uintptr_t from = first;
    while (from < stop) {
        if (sigsetjmp(fault_jump, 1) == 0) {
            guarding = 1;
            fn(from, stop, m, arg);
            guarding = 0;
            fa_g.stats.bytes += stop - from;
            from = stop;
        } else {
            uintptr_t page = fault_addr & ~(uintptr_t)(PAGE - 1);
            guarding = 0;
            fa_g.stats.skipped++;
            from = (page >= from && page < stop) ? page + PAGE : from + PAGE;
        }
    }
}

/* Walk the resident pages of one mapping, in runs of consecutive resident pages. */
static void walk_mapping(const mapping *m, run_fn fn, void *arg) {
    uintptr_t base = m->start;
    while (base < m->end) {
        size_t pages = (m->end - base) / PAGE, k = 0;
        if (pages > sizeof fa_g.vec)
            pages = sizeof fa_g.vec;
        if (mincore((void *)base, pages * PAGE, fa_g.vec) != 0) {
            fa_g.stats.skipped++;
            return;
        }
        while (k < pages) {
            size_t first;
            while (k < pages && !(fa_g.vec[k] & 1))
                k++;
            first = k;
            while (k < pages && (fa_g.vec[k] & 1))
                k++;
            if (k > first)
                guarded_run(m, base + first * PAGE, base + k * PAGE, fn, arg);
        }
        base += pages * PAGE;
    }
}

uint64_t fa_parse_hex(const char **s) {
    uint64_t v = 0;
    for (;;) {
        char c = **s;
        if (c >= '0' && c <= '9') v = v * 16 + (uint64_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v = v * 16 + (uint64_t)(c - 'a' + 10);
        else break;
        (*s)++;
    }
    return v;
}

static int starts(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Parse one line of /proc/self/maps (NUL-terminated, no newline). */
static int parse_line(char *line, mapping *m) {
    const char *s = line;
    int field;
    m->start = (uintptr_t)fa_parse_hex(&s);
    if (*s++ != '-') return 0;
    m->end = (uintptr_t)fa_parse_hex(&s);
    if (*s++ != ' ') return 0;
    memcpy(m->perms, s, 4);
    s += 4;
    for (field = 0; field < 3; field++) { /* offset, device, inode */
        while (*s == ' ') s++;
        while (*s && *s != ' ') s++;
    }
    while (*s == ' ') s++;
    m->path = s;
    return 1;
}

static int wanted(const mapping *m, int mode, const mapping *prev, int prev_file) {
    if (m->perms[0] != 'r' || m->perms[1] != 'w' || m->perms[3] != 'p')
        return 0; /* shared mappings hold process-shared locks: not a vanished-thread hazard */
    if (starts(m->path, "[vvar") || starts(m->path, "[vsyscall]") || starts(m->path, "[vdso]") ||
        starts(m->path, "[uprobes]") || starts(m->path, "/dev/"))
        return 0;
    if (mode == FA_SCAN_FULL)
        return 1;
    /* libs: a file's writable data, and the anonymous .bss right behind it */
    if (m->path[0] == '/')
        return 1;
    return m->path[0] == '\0' && prev_file && prev->end == m->start;
}

/* Call fn over every wanted mapping. */
static void walk_maps(int mode, run_fn fn, void *arg) {
    mapping prev = {0, 0, {0}, ""};
    int prev_file = 0, fd;
    size_t have = 0;
    fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fa_g.stats.skipped++;
        return;
    }
    for (;;) {
        ssize_t got = read(fd, fa_g.io + have, sizeof fa_g.io - 1 - have);
        char *line, *nl;
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        have += (size_t)got;
        fa_g.io[have] = '\0';
        line = fa_g.io;
        while ((nl = memchr(line, '\n', have - (size_t)(line - fa_g.io))) != NULL) {
            mapping m;
            *nl = '\0';
            if (parse_line(line, &m)) {
                if (wanted(&m, mode, &prev, prev_file)) {
                    fa_g.stats.mappings++;
                    walk_mapping(&m, fn, arg);
                }
                prev_file = m.path[0] == '/';
                prev.start = m.start;
                prev.end = m.end;
            }
            line = nl + 1;
        }
        have -= (size_t)(line - fa_g.io);
        memmove(fa_g.io, line, have);
        if (have == sizeof fa_g.io - 1)
            have = 0; /* a line longer than the buffer: drop it */
    }
    close(fd);
}

static struct sigaction old_segv, old_bus;

static void guard_on(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, &old_segv);
    sigaction(SIGBUS, &sa, &old_bus);
}

static void guard_off(void) {
    sigaction(SIGSEGV, &old_segv, NULL);
    sigaction(SIGBUS, &old_bus, NULL);
}

struct range { uint32_t lo, span; };

static void scan_fn(uintptr_t from, uintptr_t to, const mapping *m, void *arg) {
    const struct range *r = arg;
    scan_run(from, to, m, r->lo, r->span);
}

void fa_scan_run(int mode) {
    struct range r;
#if defined(__x86_64__) && defined(__GNUC__)
    (void)have_avx2();
#endif
    double t0 = now();
    memset(&fa_g.stats, 0, sizeof fa_g.stats);
    fa_g.stats.mode = mode;
    if (mode != FA_SCAN_OFF && fa_g.ntids > 0 && FA_LAYOUT_KNOWN) {
        r.lo = (uint32_t)fa_g.tids[0];
        r.span = (uint32_t)fa_g.tids[fa_g.ntids - 1] - r.lo;
        guard_on();
        walk_maps(mode, scan_fn, &r);
        guard_off();
    }
    fa_g.stats.seconds = now() - t0;
    fa_g.stats.done = 1;
}

struct memchr_arg { unsigned long found; };

static void memchr_fn(uintptr_t from, uintptr_t to, const mapping *m, void *arg) {
    struct memchr_arg *a = arg;
    const char *p = (const char *)from, *end = (const char *)to;
    (void)m;
    while ((p = memchr(p, 0xa7, (size_t)(end - p))) != NULL) {
        a->found++;
        p++;
    }
}

double fa_memchr_pass(int mode, uint64_t *bytes) {
    struct memchr_arg a = {0};
    double t0 = now(), t;
    memset(&fa_g.stats, 0, sizeof fa_g.stats);
    guard_on();
    walk_maps(mode, memchr_fn, &a);
    guard_off();
    t = now() - t0;
    if (bytes)
        *bytes = fa_g.stats.bytes;
    return t;
}

static int cmp_tid(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int fa_scan_now(int mode, const int32_t *tids, int ntids, int nthreads) {
    int i;
    (void)nthreads;
    if (ntids > FA_MAX_TIDS)
        ntids = FA_MAX_TIDS;
    for (i = 0; i < ntids; i++)
        fa_g.tids[i] = tids[i];
    fa_g.ntids = ntids;
    qsort(fa_g.tids, (size_t)ntids, sizeof fa_g.tids[0], cmp_tid);
    fa_scan_run(mode);
    return fa_g.stats.hits;
}
