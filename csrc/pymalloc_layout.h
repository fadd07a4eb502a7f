/* CPython's small-object allocator (pymalloc), as the scan reads it: the one place the shim
 * depends on its layout.
 *
 * CPython 3.9-3.13 (default builds, 64-bit) carve small objects (up to 512 bytes) out of
 * pools: POOL_SIZE-aligned blocks (4 KiB on 3.9, 16 KiB on 3.10+) inside anonymous arenas,
 * each pool holding blocks of one size class ((szidx + 1) * 16 bytes) after a 48-byte header
 * (Objects/obmalloc.c, Include/internal/pycore_obmalloc.h):
 *
 *   struct pool_header {
 *       union { block *_padding; uint count; } ref;   count: blocks in use
 *       block *freeblock;                              a free block of the pool, or NULL
 *       struct pool_header *nextpool, *prevpool;
 *       uint arenaindex, szidx, nextoffset, maxnextoffset;
 *   };
 *
 * Pools hold Python objects and C data alike (PyMem_Malloc: a C extension's struct, a ctypes
 * buffer on 3.9-3.11), so a pool can hold a glibc mutex whenever its blocks are big enough. A
 * pool whose blocks are smaller than a mutex (16 and 32 bytes: ints, floats, the commonest
 * objects of a big heap) and than every registered Python lock type holds no lock: the scan
 * reads its header, not its blocks (nor the stale bytes past them). The Python side learns
 * POOL_SIZE and the lock types' size classes from live instances (cpython_layout.py) and the
 * scan checks each header with fa_pool_class_of; where learning fails, no pool is skipped. */
#ifndef FORKAUDIT_PYMALLOC_LAYOUT_H
#define FORKAUDIT_PYMALLOC_LAYOUT_H

#include <stdint.h>

#include "shim.h"

#define FA_POOL_HEADER ((uint64_t)FA_POOL_HEADER_BYTES) /* POOL_OVERHEAD: the header, rounded up to 16 */
#define FA_POOL_CLASSES 32u    /* NB_SMALL_SIZE_CLASSES: 512 / 16 */
#define FA_POOL_ALIGN_SHIFT 4u /* ALIGNMENT_SHIFT: classes 16 bytes apart */

typedef struct {
    uint32_t count;
    uint32_t count_high; /* the rest of the union's pointer */
    uint64_t freeblock;
    uint64_t nextpool, prevpool;
    uint32_t arenaindex, szidx, nextoffset, maxnextoffset;
} fa_pool_header;

_Static_assert(sizeof(fa_pool_header) == FA_POOL_HEADER_BYTES, "pymalloc's pool header is 48 bytes");

/* The size class of the pool whose header h (a copy, or the memory itself) sits at address
 * base, a pool of pool_size bytes; -1 unless every field is one pymalloc writes. (Read from
 * scanned memory: exempt from the sanitizers, as the scan is; FA_NO_SANITIZE, internal.h.) */
FA_NO_SANITIZE static inline int fa_pool_class_of(const fa_pool_header *h, uint64_t base, uint64_t pool_size) {
    uint64_t size, capacity;
    if (h->szidx >= FA_POOL_CLASSES || pool_size < 4096 || (base & (pool_size - 1)) != 0)
        return -1;
    size = (uint64_t)(h->szidx + 1) << FA_POOL_ALIGN_SHIFT;
    capacity = (pool_size - FA_POOL_HEADER) / size;
    if (h->maxnextoffset != pool_size - size || h->count > capacity || h->arenaindex >= (1u << 24))
        return -1;
    if (h->nextoffset < FA_POOL_HEADER || h->nextoffset > h->maxnextoffset + size ||
        (h->nextoffset - FA_POOL_HEADER) % size != 0)
        return -1;
    if (h->freeblock != 0 && (h->freeblock < base + FA_POOL_HEADER || h->freeblock >= base + pool_size))
        return -1;
    if ((h->nextpool & 7) != 0 || (h->prevpool & 7) != 0)
        return -1;
    return (int)h->szidx;
}

#endif
