/* slab/slab_types.h - the slab layer's types that struct kmm_tcache embeds
 * (src/internal.h includes it): a free slot and a magazine head, and the
 * constants the fast paths and struct kmm need. Types and constants only;
 * the slab layer's structures and functions are in slab/slab_internal.h.
 * Freestanding. */
#ifndef KMM_SLAB_TYPES_H
#define KMM_SLAB_TYPES_H

#include <stddef.h>
#include <stdint.h>

/* ---- Magazines: per-thread stacks of free slots (slab/magazine.c) ------ */

#define KMM_MAX_CACHES 1024               /* caches with per-thread magazines, kmalloc ones included */
#define NO_MAG_ID KMM_MAX_CACHES          /* the id of caches beyond those: no magazines, always empty */
struct mag_chunk;

/* A free slot on its way through magazines and depots: its address, and
 * where its slab keeps its held byte (so that handing it out sets the byte
 * without looking the slab up). */
struct free_slot {
    uintptr_t addr;
    uint8_t *held;
};

/* A thread's magazine of one cache (slab/magazine.c): a stack of free slots
 * from slot to end, filled up to top. The head is kept inline in the
 * thread's cache, so that the fast paths find it in one line of one table,
 * with one load less than a pointer to a magazine would cost, and a
 * mixed-size workload touches two heads per line of one table instead of a
 * line per magazine all over. A pop tests top != slot, a push top != end:
 * one load and one compare each.
 *
 * Invariants (checked by kmm_check):
 *  - cache == NULL (no magazine): slot == top == end == NULL, so the
 *    allocation fast path (top != slot) and the free fast path (top != end)
 *    both fall to the slow path without a test of their own;
 *  - otherwise cache->id is the index of this head, slot <= top <= end ==
 *    slot + cache->mag_cap, mag_cap <= MAG_MAX, and slot[0..top) are
 *    distinct free slots of cache, each out of its slab, not held, with
 *    the address of its own held byte (and, with KMM_SLAB_POISON, its
 *    canary intact).
 * Written by the owner thread (top with relaxed stores), and under
 * mm->tcache_lock by kmm_cache_destroy; others read cache with acquire, then
 * slot, top and the slots relaxed. */
struct kmm_magazine {
    struct free_slot *top;                /* the next push goes here, the next pop takes top[-1] */
    struct free_slot *slot;               /* MAG_MAX slots carved from the thread's chunks */
    struct free_slot *end;                /* slot + the cache's mag_cap */
    struct kmm_cache *cache;              /* NULL when there is no magazine; published with release */
};
_Static_assert(sizeof(struct kmm_magazine) == 32, "two magazine heads per cache line");
static inline uint32_t mag_count(const struct kmm_magazine *m) { return (uint32_t)(m->top - m->slot); }

/* kmm_malloc's slab classes stop below min(page size, this) */
#define KMALLOC_SMALL_LIMIT 65536
/* Sizes up to this have a class each 16 bytes: class (size - 1) / 16, which
 * is also the cache id of kmm_malloc's any-area caches, with no table (what
 * glibc's tcache and mimalloc's direct pages do up to 1 KiB). */
#define KMALLOC_DIRECT 1024

#endif
