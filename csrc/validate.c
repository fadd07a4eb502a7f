/* Strict recognition of a held glibc lock in raw memory.
 *
 * TIDs are common integers, so a word equal to a vanished thread's TID means
 * little by itself: every field of the candidate must hold a value that
 * glibc itself could have written for a lock held by that thread. A Python
 * int on 3.9-3.11 (ob_size 1 where __lock is, a digit where __owner is) is
 * the classic impostor; the zeroed list links, the user count and the kind
 * word reject it, and scan.c also rejects candidates preceded by an int's
 * type pointer. */
#define _GNU_SOURCE
#include "internal.h"

#if FA_LAYOUT_KNOWN
static int user_pointer(uint64_t p) {
    return p != 0 && (p & 7) == 0 && p < (1ull << 47);
}

FA_NO_SANITIZE int fa_valid_mutex(const fa_mutex_layout *m, int32_t tid, uint32_t maxusers) {
    uint32_t kind = (uint32_t)m->kind;
    uint32_t type = kind & FA_MUTEX_TYPE_MASK;
    int robust = (kind & FA_MUTEX_ROBUST) != 0;
    int pi = (kind & FA_MUTEX_PRIO_INHERIT) != 0;
    int pp = (kind & FA_MUTEX_PRIO_PROTECT) != 0;
    uint32_t word = (uint32_t)m->lock;

    if (tid <= 0 || m->owner != tid)
        return 0;
    if (kind & ~(FA_MUTEX_KNOWN_BITS | (pp ? FA_MUTEX_PRIO_CEILING_MASK : 0u)))
        return 0;
    if (pi && pp)
        return 0;
    if (m->nusers < 1 || m->nusers > maxusers)
        return 0;
    if (type == 3 ? m->spins < 0 : m->spins != 0)
        return 0;
    if ((kind & FA_MUTEX_ELISION) ? m->elision < 0 : m->elision != 0)
        return 0;
    if (robust || pi) {
        /* the lock word carries the owner's TID plus futex flag bits */
        if ((word & FA_FUTEX_TID_MASK) != (uint32_t)tid)
            return 0;
        if (type == 1 ? m->count < 1 : m->count != 1)
            return 0;
    } else if (pp) {
        if ((word & 0x7ffffu) != 1 && (word & 0x7ffffu) != 2)
            return 0;
        if (type == 1 ? m->count < 1 : m->count > 1)
            return 0;
    } else {
        if (word != 1 && word != 2)
            return 0;
        if (type == 1 ? m->count < 1 : m->count != 0)
            return 0;
    }
    if (robust) {
        if (!user_pointer(m->prev) || !user_pointer(m->next))
            return 0;
    } else if (m->prev != 0 || m->next != 0) {
        return 0;
    }
    return 1;
}

FA_NO_SANITIZE int fa_valid_rwlock(const fa_rwlock_layout *r, int32_t tid, uint32_t maxthreads) {
    const uint32_t held = FA_RWLOCK_WRPHASE | FA_RWLOCK_WRLOCKED;
    int i;

    if (tid <= 0 || r->cur_writer != tid)
        return 0;
    if ((r->readers & held) != held || (r->readers >> FA_RWLOCK_READER_SHIFT) > maxthreads)
        return 0;
    if ((r->writers_futex & 1u) != 1u || r->writers_futex > 3u)
        return 0;
    if ((r->wrphase_futex & 1u) != 1u || r->wrphase_futex > 3u)
        return 0;
    if ((r->writers & ~FA_RWLOCK_WRHANDOVER) > maxthreads)
        return 0;
    if (r->pad3 != 0 || r->pad4 != 0 || r->rwelision != 0 || r->pad2 != 0)
        return 0;
    for (i = 0; i < 7; i++)
        if (r->pad1[i] != 0)
            return 0;
    if (r->shared != 0 && r->shared != 1)
        return 0;
    if (r->flags > 2u)
        return 0;
    return 1;
}
#else
FA_NO_SANITIZE int fa_valid_mutex(const fa_mutex_layout *m, int32_t tid, uint32_t maxusers) {
    (void)m; (void)tid; (void)maxusers;
    return 0;
}

FA_NO_SANITIZE int fa_valid_rwlock(const fa_rwlock_layout *r, int32_t tid, uint32_t maxthreads) {
    (void)r; (void)tid; (void)maxthreads;
    return 0;
}
#endif
