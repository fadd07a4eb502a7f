/* The child-side scan: walk the readable, writable, private mappings of this
 * process and record every glibc mutex / write-held rwlock whose owner is a
 * thread that vanished at the fork.
 *
 * Runs in the forked child (single-threaded, memory an exact copy of the
 * parent's): no allocation, no locks, no stdio. /proc/self/maps is parsed by
 * hand from a static buffer, and a fault on any read (a file mapping past its
 * end, say) skips that page instead of killing the process (SIGSEGV/SIGBUS
 * handlers + siglongjmp).
 *
 * What is read: only pages the process wrote. /proc/self/pagemap (the
 * PAGEMAP_SCAN ioctl where the kernel has it, Linux 6.7+, else 8-byte entries
 * read in batches) tells present pages from the rest: pages never touched,
 * unmodified pages of private file mappings (still the file's page cache,
 * bit 61 / PAGE_IS_FILE) and the shared zero page are not read, so a never
 * written file mapping is not paged in and a sparse reservation costs its
 * page tables, not its size. Swapped-out pages are not read either (reading
 * them would swap them in, unbounded I/O in a child that only wants to run):
 * they are counted in stats.swapped. Without pagemap, mincore (resident in
 * memory or page cache) is the fallback.
 *
 * Order: the writable data of loaded objects (ELF PT_LOAD segments with PF_W,
 * located from the program headers in memory) first, then in full mode the
 * rest, so a budget that ends the scan early has covered the most likely
 * places of a C library's lock. --scan libs is that first part only.
 *
 * Budgets (fa_set_budget): wall time, checked every CHUNK bytes read and every
 * residency batch, and bytes read. When one ends, reading stops; the scan goes
 * on counting candidate bytes (stats.bytes_total) for at most one more time
 * budget, so the record can say how much was covered. */
#define _GNU_SOURCE
#include "internal.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define BLOCK_WORDS 16u /* 64 bytes: one vectorisable prefilter step */
#define CHUNK (64u * PAGE) /* bytes read between two clock checks */
/* How far ahead of the block being tested the prefilters prefetch: the hardware prefetcher
 * stops at each 4 KB page boundary, and a fresh child's pages are cold. (A hint: a prefetch
 * past the end of the mapping never faults.) */
#ifndef PREFETCH_AHEAD
#define PREFETCH_AHEAD 2048
#endif

/* PAGEMAP_SCAN (linux/fs.h of Linux 6.7+), for older headers */
#ifndef PAGEMAP_SCAN
struct pm_scan_arg {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
    uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#endif

#define PM_PRESENT (1ull << 63)
#define PM_SWAPPED (1ull << 62)
#define PM_FILE (1ull << 61)

int fa_test_break_maps;
int fa_test_residency;
int fa_test_portable;
int fa_test_reread_maps;

typedef struct {
    uintptr_t start, end;
    char perms[4];
    uint64_t offset;
    const char *path; /* NUL-terminated within fa_g.io, or "" */
} mapping;

typedef void (*run_fn)(uintptr_t from, uintptr_t to, const mapping *m, void *arg);

/* One walk over the maps: what to call on the pages read, and the budget state. */
struct walk {
    run_fn fn;
    void *arg;
    int budgeted;
    int stopped;            /* a budget ended: count candidate bytes, read nothing more */
    int gave_up;            /* the counting ran out of time too */
    double deadline;        /* reading stops here (budgeted) */
    double hard_deadline;   /* counting stops here (budgeted) */
    int pm_fd;              /* /proc/self/pagemap, or -1 */
    int residency;          /* FA_RES_* */
    uintptr_t obj_lo, obj_hi; /* writable data of the loaded object being passed */
    uintptr_t skip_from, skip_to; /* the pymalloc pool being skipped */
};

/* Both guards are set without saving the signal mask (sigsetjmp(..., 0): saving it is a
 * system call, and a scan sets the outer guard once a run, hundreds of times a fork): the
 * fault handler is installed with SA_NODEFER and an empty sa_mask (guard_on), so taking a
 * fault changes no mask, and there is nothing to restore when it jumps back. */
static sigjmp_buf fault_jump;
static volatile sig_atomic_t guarding;
static volatile uintptr_t fault_addr;
/* The inner guard of one Python lock candidate's reads (pointers followed out of the run
 * being read): a fault there drops that candidate, not a page of the run. */
static sigjmp_buf probe_jump;
static volatile sig_atomic_t probing;

static void on_fault(int sig, siginfo_t *info, void *ctx) {
    (void)sig;
    (void)ctx;
    if (probing) {
        probing = 0;
        siglongjmp(probe_jump, 1);
    }
    if (guarding) {
        fault_addr = (uintptr_t)info->si_addr;
        siglongjmp(fault_jump, 1);
    }
    _exit(70); /* not ours: nothing sane is left to do */
}

double fa_now(void) {
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

FA_NO_SANITIZE static int rejected(uintptr_t lock, uintptr_t map_start) {
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

/* A candidate lock may straddle the end of the run being read (the run is a piece of the
 * mapping): it is read all the same, under the fault guard. */
FA_NO_SANITIZE static void check_candidate(uintptr_t p, int32_t tid, const mapping *m) {
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

/* CPython lock objects (fa_set_pylock_types). On 3.9-3.13 both _thread.lock and
 * _thread.RLock are { ob_refcnt, ob_type, PyThread_type_lock (a glibc sem_t *) ... }, an
 * RLock then { unsigned long rlock_owner, unsigned long rlock_count }. */
#define PY_TYPE_OFFSET 8
#define PY_LOCK_OFFSET 16
#define PY_RLOCK_OWNER_OFFSET 24
#define PY_RLOCK_COUNT_OFFSET 32
#define PY_LOCK_SIZE 24  /* the part of a lock object read */
#define PY_RLOCK_SIZE 40
#define PY_MAX_REFCNT (1ull << 40)
/* glibc's struct new_sem (64-bit atomics): data = value | nwaiters << 32, then private */
#define SEM_PRIVATE_SHARED 128 /* FUTEX_PRIVATE_FLAG: a process-shared semaphore */

struct pyread {
    uint64_t owner, count;
    uint32_t sem;
};

/* Read and validate one candidate: 1 a lock object, 0 not. Runs under the probe guard.
 * kind: FA_PYLOCK_*; a buffered IO object's lock and owner are at fa_g.buf_*_off. */
FA_NO_SANITIZE __attribute__((noinline)) static int read_pylock(uintptr_t obj, int kind, struct pyread *r) {
    uintptr_t lock_off = kind == FA_PYLOCK_BUFFERED ? (uintptr_t)fa_g.buf_lock_off : PY_LOCK_OFFSET;
    uint64_t refcnt = *(const volatile uint64_t *)obj;
    uint64_t sem = *(const volatile uint64_t *)(obj + lock_off), data;
    uint32_t priv, value, nwaiters;
    if (refcnt == 0 || refcnt >= PY_MAX_REFCNT || sem == 0 || (sem & 7) != 0)
        return 0;
    data = *(const volatile uint64_t *)(uintptr_t)sem;
    priv = *(const volatile uint32_t *)(uintptr_t)(sem + 8);
    value = (uint32_t)data;
    nwaiters = (uint32_t)(data >> 32);
    /* waiters are threads of the process at the fork */
    if (value > 1 || nwaiters > (uint32_t)fa_g.ntids + 1 || (priv != 0 && priv != SEM_PRIVATE_SHARED))
        return 0;
    r->sem = value;
    r->owner = r->count = 0;
    if (kind == FA_PYLOCK_RLOCK) {
        r->owner = *(const volatile uint64_t *)(obj + PY_RLOCK_OWNER_OFFSET);
        r->count = *(const volatile uint64_t *)(obj + PY_RLOCK_COUNT_OFFSET);
        /* the GIL is held around every change of owner and count: both set or both clear;
         * free, both clear. Taken with neither set: acquired, waiting for the GIL. */
        if ((r->owner == 0) != (r->count == 0) || (value == 1 && r->owner != 0) || r->count >= (1ull << 32))
            return 0;
    } else if (kind == FA_PYLOCK_BUFFERED) {
        /* set right after the lock is taken, cleared before it is released */
        r->owner = *(const volatile uint64_t *)(obj + (uintptr_t)fa_g.buf_owner_off);
        if (value == 1 && r->owner != 0)
            return 0;
    }
    return 1;
}

static int guarded_read_pylock(uintptr_t obj, int kind, struct pyread *r) {
    if (sigsetjmp(probe_jump, 0) != 0) {
        fa_g.stats.pylock_faults++;
        return 0;
    }
    probing = 1;
    if (!read_pylock(obj, kind, r)) {
        probing = 0;
        return 0;
    }
    probing = 0;
    return 1;
}

/* p: the address of a word equal to registered type t, 8-aligned, inside mapping m. */
static void check_pylock(uintptr_t p, int t, const mapping *m) {
    uintptr_t obj = p - PY_TYPE_OFFSET, state = (uintptr_t)&fa_g, size;
    int kind = fa_g.pykinds[t];
    struct pyread r;
    fa_pylock *h;
    if (kind == FA_PYLOCK_BUFFERED) {
        if (fa_g.buf_lock_off <= 0 || fa_g.buf_owner_off <= 0)
            return; /* layout unknown */
        size = (uintptr_t)(fa_g.buf_lock_off > fa_g.buf_owner_off ? fa_g.buf_lock_off : fa_g.buf_owner_off) + 8;
    } else
        size = kind == FA_PYLOCK_RLOCK ? PY_RLOCK_SIZE : PY_LOCK_SIZE;
    if (p < m->start + PY_TYPE_OFFSET || obj + size > m->end)
        return;
    if (p >= state && p < state + sizeof fa_g)
        return; /* our own copy of the types */
    if (!guarded_read_pylock(obj, kind, &r))
        return;
    if (r.sem != 0) {
        fa_g.stats.pylocks_free++;
        return;
    }
    if (fa_g.stats.pylocks >= FA_MAX_PYLOCKS) {
        fa_g.stats.pylock_overflow++;
        return;
    }
    h = &fa_g.pylocks[fa_g.stats.pylocks++];
    h->addr = obj;
    h->owner = r.owner;
    h->count = r.count;
    h->type = t;
    h->sem = r.sem;
}

void fa_set_pylock_types(const uint64_t *types, const int32_t *kinds, int n) {
    int i;
    if (n > FA_MAX_PYTYPES)
        n = FA_MAX_PYTYPES;
    if (n < 0)
        n = 0;
    fa_g.npytypes = 0;
    for (i = 0; i < n; i++) {
        fa_g.pytypes[i] = types[i];
        fa_g.pykinds[i] = kinds[i];
    }
    for (; i < FA_MAX_PYTYPES; i++) { /* the prefilter tests every slot: repeat the first */
        fa_g.pytypes[i] = n ? types[0] : 0;
        fa_g.pykinds[i] = n ? kinds[0] : 0;
    }
    fa_g.npytypes = n;
}

void fa_set_buffered_layout(int lock_offset, int owner_offset) {
    int ok = lock_offset > PY_TYPE_OFFSET && owner_offset > PY_TYPE_OFFSET && lock_offset < 512 &&
             owner_offset < 512 && lock_offset % 8 == 0 && owner_offset % 8 == 0 && lock_offset != owner_offset;
    fa_g.buf_lock_off = ok ? lock_offset : 0;
    fa_g.buf_owner_off = ok ? owner_offset : 0;
}

int fa_pylocks(fa_pylock *out, int max) {
    int n = fa_g.stats.pylocks < max ? fa_g.stats.pylocks : max;
    if (out != NULL && n > 0)
        memcpy(out, fa_g.pylocks, (size_t)n * sizeof *out);
    return fa_g.stats.pylocks;
}

/* What one pass looks for: owner TIDs in [lo, lo + span], and npy Python lock types. The
 * prefilter tests types by equality of their low halves, except that with trange the types
 * from index 2 on (the buffered IO types: one module's, a few KB apart) are tested as one
 * range of low halves [tlo, tlo + tspan]; exact() compares every type whole. */
struct range {
    uint32_t lo, span;
    int npy, trange;
    uint32_t tlo, tspan;
    uint64_t types[FA_MAX_PYTYPES];
};

/* The exact look at the 8-aligned words of a block that passed the prefilter. */
FA_NO_SANITIZE static void exact(const uint32_t *w, size_t count, const mapping *m, const struct range *r) {
    size_t j;
    int t;
    for (j = 0; j < count; j += 2) {
        uint32_t v = w[j];
        if (v - r->lo <= r->span && vanished((int32_t)v))
            check_candidate((uintptr_t)&w[j], (int32_t)v, m);
        if (r->npy) {
            uint64_t q = (uint64_t)v | (uint64_t)w[j + 1] << 32;
            for (t = 0; t < r->npy; t++)
                if (q == r->types[t]) {
                    check_pylock((uintptr_t)&w[j], t, m);
                    break;
                }
        }
    }
}

/* The portable hot loop: a branch-free test over 64-byte blocks, then an exact look at the
 * rare blocks that pass. NPY (a constant where it is inlined: 0, 2, 4 or 6) Python lock types
 * are tested besides the TID range, and with TR the range of the buffered IO types. */
#if defined(__GNUC__)
/* GCC/Clang generic vectors: SSE2 on any x86_64, NEON on aarch64. x - lo <= span per lane;
 * a type is tested on its low half only (64-bit lane compares need SSE4.1), exact()
 * compares the whole word. Only the 8-aligned words (lanes 0 and 2) count: the odd ones
 * are the high halves of pointers (0x55xx, 0x7fxx), values a TID can take. */
typedef uint32_t fa_v4u __attribute__((vector_size(16)));
/* the same, read from scanned memory: any alias, 8-aligned (a run starts on a page) */
typedef uint32_t fa_v4u_in __attribute__((vector_size(16), aligned(8), may_alias));

FA_NO_SANITIZE static inline __attribute__((always_inline)) size_t
prefilter_portable_n(const uint32_t *w, size_t n, const mapping *m, const struct range *r, int NPY, int TR) {
    const fa_v4u vlo = {r->lo, r->lo, r->lo, r->lo}, vspan = {r->span, r->span, r->span, r->span};
    const fa_v4u vtlo = {r->tlo, r->tlo, r->tlo, r->tlo}, vtspan = {r->tspan, r->tspan, r->tspan, r->tspan};
    const uint32_t a = (uint32_t)r->types[0], b = (uint32_t)r->types[1];
    const uint32_t c = (uint32_t)r->types[2], d = (uint32_t)r->types[3];
    const uint32_t e = (uint32_t)r->types[4], f = (uint32_t)r->types[5];
    const fa_v4u t0 = {a, a, a, a}, t1 = {b, b, b, b}, t2 = {c, c, c, c}, t3 = {d, d, d, d};
    const fa_v4u t4 = {e, e, e, e}, t5 = {f, f, f, f};
    const fa_v4u even = {~0u, 0, ~0u, 0};
    size_t i;
    unsigned k;
    for (i = 0; i + BLOCK_WORDS <= n; i += BLOCK_WORDS) {
        fa_v4u acc = {0, 0, 0, 0};
        __builtin_prefetch((const char *)(w + i) + PREFETCH_AHEAD);
        for (k = 0; k < BLOCK_WORDS; k += 4) {
            const fa_v4u x = *(const fa_v4u_in *)(w + i + k);
            acc |= (fa_v4u)(x - vlo <= vspan);
            if (NPY >= 2)
                acc |= (fa_v4u)(x == t0) | (fa_v4u)(x == t1);
            if (NPY >= 4)
                acc |= (fa_v4u)(x == t2) | (fa_v4u)(x == t3);
            if (NPY >= 6)
                acc |= (fa_v4u)(x == t4) | (fa_v4u)(x == t5);
            if (TR)
                acc |= (fa_v4u)(x - vtlo <= vtspan);
        }
        acc &= even;
        if (acc[0] | acc[2])
            exact(w + i, BLOCK_WORDS, m, r);
    }
    return i;
}
#else
static size_t prefilter_portable_n(const uint32_t *w, size_t n, const mapping *m, const struct range *r,
                                   int NPY, int TR) {
    const uint32_t lo = r->lo, span = r->span;
    uint32_t tlo[FA_MAX_PYTYPES];
    size_t i, j;
    int t;
    for (t = 0; t < FA_MAX_PYTYPES; t++)
        tlo[t] = (uint32_t)r->types[t];
    for (i = 0; i + BLOCK_WORDS <= n; i += BLOCK_WORDS) {
        unsigned any = 0;
        for (j = 0; j < BLOCK_WORDS; j += 2) {
            any |= (unsigned)(w[i + j] - lo <= span);
            for (t = 0; t < NPY; t++)
                any |= (unsigned)(w[i + j] == tlo[t]);
            if (TR)
                any |= (unsigned)(w[i + j] - r->tlo <= r->tspan);
        }
        if (any)
            exact(w + i, BLOCK_WORDS, m, r);
    }
    return i;
}
#endif

FA_NO_SANITIZE static size_t prefilter_portable(const uint32_t *w, size_t n, const mapping *m,
                                                const struct range *r) {
    if (r->npy == 0)
        return prefilter_portable_n(w, n, m, r, 0, 0);
    if (r->trange)
        return prefilter_portable_n(w, n, m, r, 2, 1);
    if (r->npy <= 2)
        return prefilter_portable_n(w, n, m, r, 2, 0);
    if (r->npy <= 4)
        return prefilter_portable_n(w, n, m, r, 4, 0);
    return prefilter_portable_n(w, n, m, r, 6, 0);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define AVX2_WORDS 64u /* 256 bytes per test */

/* The same test with AVX2, 256 bytes per branch: x - lo <= span (unsigned) is
 * min(x - lo, span) == x - lo; a type is a 64-bit equality. Chosen at run time
 * (__builtin_cpu_supports). */
FA_NO_SANITIZE static inline __attribute__((always_inline, target("avx2"))) size_t
prefilter_avx2_n(const uint32_t *w, size_t n, const mapping *m, const struct range *r, int NPY, int TR) {
    const __m256i vlo = _mm256_set1_epi32((int)r->lo), vspan = _mm256_set1_epi32((int)r->span);
    const __m256i vtlo = _mm256_set1_epi32((int)r->tlo), vtspan = _mm256_set1_epi32((int)r->tspan);
    const __m256i t0 = _mm256_set1_epi64x((long long)r->types[0]), t1 = _mm256_set1_epi64x((long long)r->types[1]);
    const __m256i t2 = _mm256_set1_epi64x((long long)r->types[2]), t3 = _mm256_set1_epi64x((long long)r->types[3]);
    const __m256i t4 = _mm256_set1_epi64x((long long)r->types[4]), t5 = _mm256_set1_epi64x((long long)r->types[5]);
    /* lanes 0, 2, 4, 6: the 8-aligned words, the only ones exact() looks at (a 64-bit
     * equality sets both halves) */
    const __m256i even = _mm256_set_epi32(0, -1, 0, -1, 0, -1, 0, -1);
    size_t i;
    for (i = 0; i + AVX2_WORDS <= n; i += AVX2_WORDS) {
        __m256i acc = _mm256_setzero_si256();
        unsigned k;
        _mm_prefetch((const char *)(w + i) + PREFETCH_AHEAD, _MM_HINT_T0);
        for (k = 0; k < AVX2_WORDS; k += 8) {
            __m256i x = _mm256_loadu_si256((const __m256i *)(w + i + k));
            __m256i d = _mm256_sub_epi32(x, vlo);
            acc = _mm256_or_si256(acc, _mm256_cmpeq_epi32(_mm256_min_epu32(d, vspan), d));
            if (NPY >= 2)
                acc = _mm256_or_si256(acc, _mm256_or_si256(_mm256_cmpeq_epi64(x, t0), _mm256_cmpeq_epi64(x, t1)));
            if (NPY >= 4)
                acc = _mm256_or_si256(acc, _mm256_or_si256(_mm256_cmpeq_epi64(x, t2), _mm256_cmpeq_epi64(x, t3)));
            if (NPY >= 6)
                acc = _mm256_or_si256(acc, _mm256_or_si256(_mm256_cmpeq_epi64(x, t4), _mm256_cmpeq_epi64(x, t5)));
            if (TR) {
                __m256i e = _mm256_sub_epi32(x, vtlo);
                acc = _mm256_or_si256(acc, _mm256_cmpeq_epi32(_mm256_min_epu32(e, vtspan), e));
            }
        }
        if (!_mm256_testz_si256(acc, even))
            exact(w + i, AVX2_WORDS, m, r);
    }
    return i;
}

FA_NO_SANITIZE __attribute__((target("avx2"))) static size_t prefilter_avx2(const uint32_t *w, size_t n,
                                                                            const mapping *m,
                                                                            const struct range *r) {
    if (r->npy == 0)
        return prefilter_avx2_n(w, n, m, r, 0, 0);
    if (r->trange)
        return prefilter_avx2_n(w, n, m, r, 2, 1);
    if (r->npy <= 2)
        return prefilter_avx2_n(w, n, m, r, 2, 0);
    if (r->npy <= 4)
        return prefilter_avx2_n(w, n, m, r, 4, 0);
    return prefilter_avx2_n(w, n, m, r, 6, 0);
}

static int have_avx2(void) {
    static int known = -1;
    if (known < 0)
        known = __builtin_cpu_supports("avx2") ? 1 : 0;
    return known;
}
#endif

FA_NO_SANITIZE static void scan_run(uintptr_t from, uintptr_t to, const mapping *m, const struct range *r) {
    const uint32_t *w = (const uint32_t *)from;
    size_t n = (to - from) / 4, done;
#if defined(__x86_64__) && defined(__GNUC__)
    if (have_avx2() && !fa_test_portable)
        done = prefilter_avx2(w, n, m, r);
    else
#endif
        done = prefilter_portable(w, n, m, r);
    if (done < n)
        exact(w + done, (n - done) & ~(size_t)1, m, r);
}

/* Run fn over [first, stop) under the fault guard; a fault skips the faulting page. */
static void guarded_run(const mapping *m, uintptr_t first, uintptr_t stop, run_fn fn, void *arg) {
    volatile uintptr_t from = first;
    while (from < stop) {
        if (sigsetjmp(fault_jump, 0) == 0) {
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

/* pymalloc pools (csrc/pymalloc_layout.h) live in anonymous mappings only. */
static int pool_mapping(const mapping *m) {
    return fa_g.pool_size != 0 && m->path[0] == '\0';
}

/* Is p the start of a pool that can hold no lock: blocks too small for a glibc mutex (a
 * C library's PyMem_Malloc'd struct shares the pools with Python objects), of a size class
 * no registered Python lock type has? Its header is read under the probe guard. */
FA_NO_SANITIZE static int skippable_pool(uintptr_t p) {
    int c;
    if (sigsetjmp(probe_jump, 0) != 0)
        return 0;
    probing = 1;
    c = fa_pool_class_of((const fa_pool_header *)p, p, fa_g.pool_size);
    probing = 0;
    return c >= 0 && ((uint64_t)(c + 1) << FA_POOL_ALIGN_SHIFT) < FA_MUTEX_SIZE && !(fa_g.pool_wanted & (1ull << c));
}

static void pool_skipped(uintptr_t n) {
    fa_g.stats.pool_bytes += n;
    fa_g.stats.bytes_total -= n;
}

/* Read [from, stop) of mapping m, but of each pool that can hold no lock object only its
 * header: the rest of such a pool is skipped, in this run and the next ones. */
static void read_run(struct walk *w, const mapping *m, uintptr_t from, uintptr_t stop) {
    uintptr_t size = (uintptr_t)fa_g.pool_size, p, seg;
    if (!pool_mapping(m)) {
        guarded_run(m, from, stop, w->fn, w->arg);
        return;
    }
    if (from >= w->skip_from && from < w->skip_to) { /* the rest of a pool skipped before */
        seg = w->skip_to < stop ? w->skip_to : stop;
        pool_skipped(seg - from);
        from = seg;
    }
    seg = from;
    for (p = (from + size - 1) & ~(size - 1); p >= from && p + FA_POOL_HEADER <= stop; p += size) {
        if (p + size > m->end || !skippable_pool(p))
            continue;
        if (p > seg)
            guarded_run(m, seg, p, w->fn, w->arg);
        w->skip_from = p;
        w->skip_to = p + size;
        seg = p + size < stop ? p + size : stop;
        pool_skipped(seg - p);
    }
    if (seg < stop)
        guarded_run(m, seg, stop, w->fn, w->arg);
}

/* Is it time to stop reading (or, once stopped, counting)? Called every CHUNK bytes and
 * every residency batch: a vDSO clock read, some 20 ns, per 256 KB. */
static int out_of_time(struct walk *w) {
    if (!w->budgeted)
        return 0;
    if (!w->stopped) {
        if (fa_g.budget_ms && fa_now() >= w->deadline) {
            w->stopped = 1;
            fa_g.stats.cut = FA_CUT_TIME;
        }
    } else if (!w->gave_up && fa_g.budget_ms && fa_now() >= w->hard_deadline) {
        w->gave_up = 1;
    }
    return w->gave_up;
}

/* A run of written pages [from, to): counted, and read while the budgets last. */
static void candidate(struct walk *w, const mapping *m, uintptr_t from, uintptr_t to) {
    fa_g.stats.bytes_total += to - from;
    while (from < to && !w->stopped) {
        uintptr_t stop = to - from > CHUNK ? from + CHUNK : to;
        if (w->budgeted && fa_g.budget_bytes) {
            uint64_t left = fa_g.stats.bytes >= fa_g.budget_bytes ? 0 : fa_g.budget_bytes - fa_g.stats.bytes;
            if (left == 0) {
                w->stopped = 1;
                fa_g.stats.cut = FA_CUT_BYTES;
                break;
            }
            if (stop - from > left)
                stop = from + (uintptr_t)left;
        }
        read_run(w, m, from, stop);
        from = stop;
        if (out_of_time(w))
            return;
    }
}

/* PAGEMAP_SCAN: the kernel hands back ranges of pages by category, skipping empty page
 * tables whole. 1 if it worked, 0 if this kernel lacks it (then the caller falls back). */
static int pieces_pagemap_scan(struct walk *w, const mapping *m, uintptr_t a, uintptr_t b) {
    while (a < b) {
        struct pm_scan_arg arg;
        long n, i;
        memset(&arg, 0, sizeof arg);
        arg.size = sizeof arg;
        arg.start = a;
        arg.end = b;
        arg.vec = (uint64_t)(uintptr_t)fa_g.res.regions;
        arg.vec_len = sizeof fa_g.res.regions / sizeof fa_g.res.regions[0];
        arg.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
        arg.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_FILE | PAGE_IS_PFNZERO;
        n = ioctl(w->pm_fd, PAGEMAP_SCAN, &arg);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return 0;
        }
        for (i = 0; i < n; i++) {
            uint64_t cat = fa_g.res.regions[i].categories;
            uintptr_t s = (uintptr_t)fa_g.res.regions[i].start, e = (uintptr_t)fa_g.res.regions[i].end;
            if (cat & PAGE_IS_SWAPPED)
                fa_g.stats.swapped += e - s;
            else if ((cat & PAGE_IS_PRESENT) && !(cat & (PAGE_IS_FILE | PAGE_IS_PFNZERO)))
                candidate(w, m, s, e);
            if (w->gave_up)
                return 1;
        }
        if (arg.walk_end <= a || arg.walk_end > b)
            return 1; /* no progress: should not happen; never loop */
        a = (uintptr_t)arg.walk_end;
        if (out_of_time(w))
            return 1;
    }
    return 1;
}

/* /proc/self/pagemap, one 8-byte entry a page, a batch at a time. 0 if unreadable. */
static int pieces_pagemap(struct walk *w, const mapping *m, uintptr_t a, uintptr_t b) {
    const size_t most = sizeof fa_g.res.pm / sizeof fa_g.res.pm[0];
    while (a < b) {
        size_t pages = (b - a) / PAGE, k = 0, have;
        ssize_t got;
        if (pages > most)
            pages = most;
        got = pread(w->pm_fd, fa_g.res.pm, pages * 8, (off_t)((a / PAGE) * 8));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 8)
            return 0;
        have = (size_t)got / 8;
        while (k < have) {
            size_t first;
            while (k < have && !((fa_g.res.pm[k] & PM_PRESENT) && !(fa_g.res.pm[k] & PM_FILE))) {
                if (fa_g.res.pm[k] & PM_SWAPPED)
                    fa_g.stats.swapped += PAGE;
                k++;
            }
            first = k;
            while (k < have && (fa_g.res.pm[k] & PM_PRESENT) && !(fa_g.res.pm[k] & PM_FILE))
                k++;
            if (k > first)
                candidate(w, m, a + first * PAGE, a + k * PAGE);
            if (w->gave_up)
                return 1;
        }
        a += have * PAGE;
        if (out_of_time(w))
            return 1;
    }
    return 1;
}

/* mincore: resident in memory (or in the page cache, for a file mapping). */
static void pieces_mincore(struct walk *w, const mapping *m, uintptr_t a, uintptr_t b) {
    while (a < b) {
        size_t pages = (b - a) / PAGE, k = 0;
        if (pages > sizeof fa_g.res.vec)
            pages = sizeof fa_g.res.vec;
        if (mincore((void *)a, pages * PAGE, fa_g.res.vec) != 0) {
            fa_g.stats.skipped++;
            return;
        }
        while (k < pages) {
            size_t first;
            while (k < pages && !(fa_g.res.vec[k] & 1))
                k++;
            first = k;
            while (k < pages && (fa_g.res.vec[k] & 1))
                k++;
            if (k > first)
                candidate(w, m, a + first * PAGE, a + k * PAGE);
            if (w->gave_up)
                return;
        }
        a += pages * PAGE;
        if (out_of_time(w))
            return;
    }
}

/* The written pages of [a, b), a piece of mapping m. */
static void walk_piece(struct walk *w, const mapping *m, uintptr_t a, uintptr_t b) {
    if (a >= b || w->gave_up)
        return;
    if (w->residency == FA_RES_PAGEMAP_SCAN && pieces_pagemap_scan(w, m, a, b))
        return;
    if (w->residency == FA_RES_PAGEMAP_SCAN)
        w->residency = FA_RES_PAGEMAP; /* the kernel lacks the ioctl: entries, then */
    if (w->residency == FA_RES_PAGEMAP && pieces_pagemap(w, m, a, b))
        return;
    w->residency = FA_RES_MINCORE;
    pieces_mincore(w, m, a, b);
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

uint64_t fa_parse_dec(const char **s) {
    uint64_t v = 0;
    while (**s == ' ')
        (*s)++;
    while (**s >= '0' && **s <= '9')
        v = v * 10 + (uint64_t)(*(*s)++ - '0');
    return v;
}

ssize_t fa_read_file(const char *path, char *buf, size_t size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t got, total = 0;
    if (fd < 0)
        return -1;
    while ((size_t)total < size - 1) {
        got = read(fd, buf + total, size - 1 - (size_t)total);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        total += got;
    }
    close(fd);
    buf[total] = '\0';
    return total;
}

const char *fa_stat_state(const char *stat) {
    const char *s, *close_paren = NULL;
    for (s = stat; *s; s++)
        if (*s == ')')
            close_paren = s;
    if (close_paren == NULL || close_paren[1] != ' ')
        return NULL;
    return close_paren + 2;
}

char *fa_put_dec(char *p, uint64_t v) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static int starts(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Parse one line of /proc/self/maps (NUL-terminated, no newline). */
static int parse_line(char *line, mapping *m) {
    const char *s = line;
    int field, i;
    m->start = (uintptr_t)fa_parse_hex(&s);
    if (*s++ != '-') return 0;
    m->end = (uintptr_t)fa_parse_hex(&s);
    if (*s++ != ' ') return 0;
    for (i = 0; i < 4; i++)
        if (s[i] == '\0') return 0;
    memcpy(m->perms, s, 4);
    s += 4;
    while (*s == ' ') s++;
    m->offset = fa_parse_hex(&s);
    for (field = 0; field < 2; field++) { /* device, inode */
        while (*s == ' ') s++;
        while (*s && *s != ' ') s++;
    }
    while (*s == ' ') s++;
    m->path = s;
    return m->end > m->start;
}

/* The first mapping of a file (offset 0) may be a loaded ELF object: from its program
 * headers (in memory, within that first mapping), the span of its writable PT_LOAD
 * segments, .data and .bss, at this load address. */
FA_NO_SANITIZE static void note_object(struct walk *w, const mapping *m) {
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)m->start;
    const Elf64_Phdr *ph;
    uintptr_t bias = 0, lo = UINTPTR_MAX, hi = 0;
    int i, first = 1;
    w->obj_lo = w->obj_hi = 0;
    /* a loaded object's first mapping is never writable; a data file mapped read-write at
     * offset 0 is not looked at (its first page may never have been read) */
    if (m->perms[0] != 'r' || m->perms[1] == 'w' || m->end - m->start < sizeof *eh)
        return;
    if (sigsetjmp(fault_jump, 0) != 0) {
        guarding = 0;
        fa_g.stats.skipped++;
        w->obj_lo = w->obj_hi = 0;
        return;
    }
    guarding = 1;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phoff > m->end - m->start ||
        (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > m->end - m->start - eh->e_phoff) {
        guarding = 0;
        return;
    }
    ph = (const Elf64_Phdr *)(m->start + eh->e_phoff);
    for (i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type != PT_LOAD)
            continue;
        if (first) { /* the first PT_LOAD is the one mapped at offset 0 */
            bias = m->start - (uintptr_t)(ph[i].p_vaddr & ~(uint64_t)(PAGE - 1));
            first = 0;
        }
        if (ph[i].p_flags & PF_W) {
            uintptr_t s = bias + (uintptr_t)ph[i].p_vaddr, e = s + (uintptr_t)ph[i].p_memsz;
            s &= ~(uintptr_t)(PAGE - 1);
            e = (e + PAGE - 1) & ~(uintptr_t)(PAGE - 1);
            if (s < lo) lo = s;
            if (e > hi) hi = e;
        }
    }
    guarding = 0;
    if (hi > lo) {
        w->obj_lo = lo;
        w->obj_hi = hi;
    }
}

static int private_rw(const mapping *m) {
    if (m->perms[0] != 'r' || m->perms[1] != 'w' || m->perms[3] != 'p')
        return 0; /* shared mappings hold process-shared locks: not a vanished-thread hazard */
    if (starts(m->path, "[vvar") || starts(m->path, "[vsyscall]") || starts(m->path, "[vdso]") ||
        starts(m->path, "[uprobes]") || starts(m->path, "/dev/"))
        return 0;
    return 1;
}

/* What pass 0 leaves to pass 1 (full mode) is noted in fa_g.later as pass 0 reads the maps,
 * so that pass 1 need not read and parse them again (the child is single-threaded: they are
 * the same). More than FA_LATER_MAX such mappings: pass 1 reads the maps again. */
static int nlater;
static int later_lost;

static void walk_rest(struct walk *w, const mapping *m, uintptr_t lo, uintptr_t hi) {
    fa_g.stats.mappings++;
    if (hi > lo) {
        walk_piece(w, m, m->start, lo);
        walk_piece(w, m, hi, m->end);
    } else {
        walk_piece(w, m, m->start, m->end);
    }
}

/* One pass over /proc/self/maps. Pass 0: the writable data of loaded objects (noting the
 * rest for pass 1). Pass 1: every other private writable page (full mode). 0, or the errno
 * of opening the maps. */
static int walk_maps(struct walk *w, int pass) {
    int fd;
    size_t have = 0;
    fd = open(fa_test_break_maps ? "/proc/self/maps-forkaudit-test-broken" : "/proc/self/maps",
              O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno ? errno : ENOENT;
    w->obj_lo = w->obj_hi = 0;
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
            if (parse_line(line, &m) && !w->gave_up) {
                uintptr_t lo, hi;
                if (m.offset == 0 && m.path[0] == '/')
                    note_object(w, &m);
                lo = m.start > w->obj_lo ? m.start : w->obj_lo;
                hi = m.end < w->obj_hi ? m.end : w->obj_hi;
                if (hi < lo)
                    hi = lo;
                if (private_rw(&m)) {
                    if (pass == 0 && !later_lost && (lo > m.start || hi < m.end)) {
                        if (nlater < FA_LATER_MAX) {
                            struct fa_later *l = &fa_g.later[nlater++];
                            l->start = m.start;
                            l->end = m.end;
                            l->lo = lo;
                            l->hi = hi;
                            l->anonymous = m.path[0] == '\0';
                        } else {
                            later_lost = 1;
                        }
                    }
                    if (pass == 0 && hi > lo) {
                        fa_g.stats.mappings++;
                        walk_piece(w, &m, lo, hi);
                    } else if (pass == 1 && (lo > m.start || hi < m.end)) {
                        walk_rest(w, &m, lo, hi);
                    }
                }
            }
            line = nl + 1;
        }
        have -= (size_t)(line - fa_g.io);
        memmove(fa_g.io, line, have);
        if (have == sizeof fa_g.io - 1)
            have = 0; /* a line longer than the buffer: drop it */
    }
    close(fd);
    return 0;
}

/* Pass 1 from what pass 0 noted. A mapping here has no path but whether it had one (all
 * that the reads look at: pymalloc pools are in anonymous mappings only). */
static void walk_later(struct walk *w) {
    int i;
    for (i = 0; i < nlater && !w->gave_up; i++) {
        mapping m;
        m.start = fa_g.later[i].start;
        m.end = fa_g.later[i].end;
        memcpy(m.perms, "rw-p", 4);
        m.offset = 0;
        m.path = fa_g.later[i].anonymous ? "" : "(file)";
        walk_rest(w, &m, fa_g.later[i].lo, fa_g.later[i].hi);
    }
}

/* Both passes (one in libs mode), with the residency source opened once. */
static void walk_all(int mode, run_fn fn, void *arg, int budgeted) {
    struct walk w;
    int err;
    double t0 = fa_now();
    memset(&w, 0, sizeof w);
    w.fn = fn;
    w.arg = arg;
    w.budgeted = budgeted && (fa_g.budget_ms || fa_g.budget_bytes);
    w.deadline = t0 + (double)fa_g.budget_ms * 1e-3;
    w.hard_deadline = t0 + 2.0 * (double)fa_g.budget_ms * 1e-3;
    w.pm_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    w.residency = w.pm_fd >= 0 ? FA_RES_PAGEMAP_SCAN : FA_RES_MINCORE;
    if (fa_test_residency > w.residency)
        w.residency = fa_test_residency; /* a fallback, forced (tests) */
    if (budgeted) {
        fa_g.stats.budget_ms = fa_g.budget_ms;
        fa_g.stats.budget_bytes = fa_g.budget_bytes;
    }
    nlater = 0;
    later_lost = fa_test_reread_maps;
    err = walk_maps(&w, 0);
    if (err == 0 && mode == FA_SCAN_FULL && later_lost)
        err = walk_maps(&w, 1);
    else if (err == 0 && mode == FA_SCAN_FULL)
        walk_later(&w);
    if (w.pm_fd >= 0)
        close(w.pm_fd);
    if (err) {
        fa_g.stats.not_run = FA_NOT_RUN_MAPS;
        fa_g.stats.maps_errno = err;
        return;
    }
    fa_g.stats.residency = w.residency;
    fa_g.stats.total_exact = !w.gave_up;
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

FA_NO_SANITIZE static void scan_fn(uintptr_t from, uintptr_t to, const mapping *m, void *arg) {
    scan_run(from, to, m, (const struct range *)arg);
}

void fa_set_pools(uint64_t pool_size, uint32_t wanted) {
    fa_g.pool_size = (pool_size & (pool_size - 1)) == 0 ? pool_size : 0;
    fa_g.pool_wanted = wanted;
}

int fa_pool_header_class(const unsigned char *header, uint64_t base, uint64_t pool_size) {
    fa_pool_header h;
    memcpy(&h, header, sizeof h);
    return fa_pool_class_of(&h, base, pool_size);
}

void fa_set_budget(uint64_t ms, uint64_t bytes) {
    fa_g.budget_ms = ms;
    fa_g.budget_bytes = bytes;
}

/* With more than two types, where every type from index 2 on is a buffered IO type, none
 * before is, and they share their high halves within 64 KB: test those as one range. */
static void type_range(struct range *r) {
    uint64_t lo = 0, hi = 0;
    int t;
    r->trange = 0;
    r->tlo = r->tspan = 0;
    if (r->npy <= 2)
        return;
    for (t = 0; t < r->npy; t++) {
        int buffered = fa_g.pykinds[t] == FA_PYLOCK_BUFFERED;
        if (buffered != (t >= 2))
            return;
        if (t >= 2) {
            lo = t == 2 || r->types[t] < lo ? r->types[t] : lo;
            hi = t == 2 || r->types[t] > hi ? r->types[t] : hi;
        }
    }
    if (hi - lo >= 65536 || (lo >> 32) != (hi >> 32))
        return;
    r->trange = 1;
    r->tlo = (uint32_t)lo;
    r->tspan = (uint32_t)(hi - lo);
}

static void scan(int mode, int budgeted) {
    struct range r;
#if defined(__x86_64__) && defined(__GNUC__)
    (void)have_avx2();
#endif
    double t0 = fa_now();
    memset(&fa_g.stats, 0, sizeof fa_g.stats);
    fa_g.stats.mode = mode;
    if (mode == FA_SCAN_OFF)
        fa_g.stats.not_run = FA_NOT_RUN_OFF;
    else if (!FA_LAYOUT_KNOWN)
        fa_g.stats.not_run = FA_NOT_RUN_LAYOUT;
    else if (fa_g.ntids <= 0)
        fa_g.stats.not_run = FA_NOT_RUN_NO_THREADS;
    else {
        int t;
        r.lo = (uint32_t)fa_g.tids[0];
        r.span = (uint32_t)fa_g.tids[fa_g.ntids - 1] - r.lo;
        r.npy = fa_g.npytypes;
        for (t = 0; t < FA_MAX_PYTYPES; t++)
            r.types[t] = fa_g.pytypes[t];
        type_range(&r);
        fa_g.stats.pytypes = r.npy;
        guard_on();
        walk_all(mode, scan_fn, &r, budgeted);
        guard_off();
    }
    fa_g.stats.seconds = fa_now() - t0;
    fa_g.stats.done = 1;
}

void fa_scan_run(int mode) {
    scan(mode, 1);
}

struct memchr_arg { unsigned long found; };

FA_NO_SANITIZE static void memchr_fn(uintptr_t from, uintptr_t to, const mapping *m, void *arg) {
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
    double t0 = fa_now(), t;
    memset(&fa_g.stats, 0, sizeof fa_g.stats);
    guard_on();
    walk_all(mode, memchr_fn, &a, 0);
    guard_off();
    t = fa_now() - t0;
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
    scan(mode, 0);
    return fa_g.stats.hits;
}
