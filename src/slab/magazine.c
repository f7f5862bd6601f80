/* magazine.c - per-thread magazines of free objects (Bonwick's magazines).
 *
 * A thread's cache (struct kmm_tcache, page/tcache.c) holds, per slab cache
 * it has used, a magazine: an array of up to mag_cap free slots, whose head
 * (count, capacity, array, secret) sits in a table inline in the thread's
 * cache, indexed by cache id. Allocation
 * pops, free pushes, without a lock; an empty magazine takes half a
 * magazine from the cache (its depot first, then the slabs), a full one
 * gives its older half back (to the depot while it has room), each under
 * the cache's lock once. Objects freed by another thread than the one that
 * allocated them simply go into the freeing thread's magazine.
 *
 * Slot arrays are carved from chunks of metadata memory owned by the
 * thread's cache and freed with it. An array kmm_cache_destroy takes away is
 * not reused (its owner may be running): its memory waits for the thread's
 * exit.
 *
 * Other threads read a magazine's count and slots (stats, double-free
 * checks) with relaxed loads under mm->tcache_lock; the owner writes them
 * with relaxed stores, so the figures they see are each some recent value.
 */
#include "slab_internal.h"

struct mag_chunk {
    struct mag_chunk *next;
    size_t len;
};

#define MAG_BYTES (MAG_MAX * sizeof(struct free_slot))
/* Slot arrays are carved this far apart, not a divisor of 4 KiB: the tops
 * of many magazines sit at the same index (a refill fills to half), and at
 * a 2 KiB stride every other cache's top line fell in one L1 set
 * (callgrind --cache-sim, mixed-size pairs: 0.2 read misses per
 * kmm_malloc, none with this stride; no change in time measurable on this
 * machine). */
#define MAG_STRIDE (MAG_BYTES + 144)
#define MAG_CHUNK_BYTES 16384

struct kmm_magazine *kmm__mag_get(struct kmm *mm, struct kmm_tcache *tc, struct kmm_cache *c)
{
    if (c->id == NO_MAG_ID)
        return NULL;
    struct free_slot *slots = tc->mag_free;
    if (!slots) {
        struct mag_chunk *ch = kmm__meta_alloc(mm, MAG_CHUNK_BYTES);
        if (!ch)
            return NULL;
        ch->len = MAG_CHUNK_BYTES;
        ch->next = tc->mag_chunks;
        tc->mag_chunks = ch;
        for (size_t off = 64; off + MAG_BYTES <= MAG_CHUNK_BYTES; off += MAG_STRIDE) {
            struct free_slot *fresh = (struct free_slot *)(void *)((char *)ch + off);
            fresh[0].addr = (uintptr_t)slots;
            slots = fresh;
        }
    }
    tc->mag_free = (struct free_slot *)slots[0].addr;
    struct kmm_magazine *m = &tc->mag[c->id];
    store_relaxed(&m->slot, slots);
    store_relaxed(&m->top, slots);
    store_relaxed(&m->end, slots + c->mag_cap);
    __atomic_store_n(&m->cache, c, __ATOMIC_RELEASE);
    return m;
}

size_t kmm__mag_drain_all(struct kmm *mm, struct kmm_tcache *tc)
{
    (void)mm;
    size_t n = 0;
    for (unsigned id = 0; id < KMM_MAX_CACHES; id++) {
        struct kmm_magazine *m = &tc->mag[id];
        if (m->top != m->slot) {
            n += mag_count(m);
            kmm__cache_put(m->cache, m->slot, mag_count(m), "kmm_free");
            store_relaxed(&m->top, m->slot);
        }
    }
    return n;
}

/* A magazine's slots past top are stale (slots handed out since) or were
 * being moved when the fork cut a gone thread short: a refill from the
 * depot or slabs writes slots there under the cache's lock and moves top
 * after it; a free writes its slot there before it clears the held byte
 * and moves top; a pop moves top before it sets the held byte. Each is a
 * slot out of its slab, not held and in no magazine: reclaimed. Stale ones
 * are not out, held, or of a slab of another cache by now, and are left. */
void kmm__mag_fork_drain(struct kmm *mm, struct kmm_tcache *tc, bool gone)
{
    (void)mm;
    for (unsigned id = 0; id < KMM_MAX_CACHES; id++) {
        struct kmm_magazine *m = &tc->mag[id];
        struct kmm_cache *c = m->cache;
        if (!c || !m->slot || m->top < m->slot || m->top > m->end || m->end != m->slot + c->mag_cap)
            continue;
        struct free_slot *end = gone ? m->end : m->top;
        for (struct free_slot *f = m->slot; f < end; f++)
            kmm__slot_fork_reclaim(c, f->addr);
        store_relaxed(&m->top, m->slot);
    }
}

void kmm__mag_reset_all(struct kmm *mm, struct kmm_tcache *tc)
{
    (void)mm;
    for (unsigned id = 0; id < KMM_MAX_CACHES; id++) {
        struct kmm_magazine *m = &tc->mag[id];
        if (!m->slot)
            continue;
        /* empty (drained): its slot array back on the thread's free list */
        m->slot[0].addr = (uintptr_t)tc->mag_free;
        tc->mag_free = m->slot;
        store_relaxed(&m->slot, NULL);
        store_relaxed(&m->top, NULL);
        store_relaxed(&m->end, NULL);
        __atomic_store_n(&m->cache, NULL, __ATOMIC_RELEASE);
    }
}

/* Frees the memory of tc's slot arrays; tc is freed next. */
void kmm__mag_release_all(struct kmm *mm, struct kmm_tcache *tc)
{
    for (struct mag_chunk *ch = tc->mag_chunks, *next; ch; ch = next) {
        next = ch->next;
        kmm__meta_free(mm, ch, ch->len);
    }
    tc->mag_chunks = NULL;
    tc->mag_free = NULL;
}

size_t kmm__mag_count(struct kmm *mm, struct kmm_cache *c)
{
    size_t n = 0;
    kmm_lock(mm, &mm->tcache_lock);
    for (struct kmm_tcache *tc = c->id == NO_MAG_ID ? NULL : mm->tcaches; tc; tc = tc->next) {
        struct kmm_magazine *m = &tc->mag[c->id];
        if (__atomic_load_n(&m->cache, __ATOMIC_ACQUIRE) == c)
            n += (size_t)(load_relaxed(&m->top) - load_relaxed(&m->slot));
    }
    kmm_unlock(mm, &mm->tcache_lock);
    return n;
}

/* The slot array of a detached magazine is not reused (its owner may be
 * running): it waits in its chunk for the thread's exit. */
void kmm__mag_detach(struct kmm *mm, struct kmm_cache *c)
{
    kmm_lock(mm, &mm->tcache_lock);
    for (struct kmm_tcache *tc = c->id == NO_MAG_ID ? NULL : mm->tcaches; tc; tc = tc->next) {
        struct kmm_magazine *m = &tc->mag[c->id];
        if (m->cache != c)
            continue;
        kmm__cache_put(c, m->slot, mag_count(m), "kmm_cache_free");
        store_relaxed(&m->slot, NULL);
        store_relaxed(&m->top, NULL);
        store_relaxed(&m->end, NULL);
        __atomic_store_n(&m->cache, NULL, __ATOMIC_RELEASE);
    }
    kmm_unlock(mm, &mm->tcache_lock);
}

/* Each magazine head of tc: empty with no cache, or of the cache it is
 * filed under, with that cache's capacity and secret, holding distinct
 * slots, each the start of a slot that is out of its slab, not held, with
 * the address of its held byte, and still carrying its canary. */
int kmm__mag_check(struct kmm *mm, struct kmm_tcache *tc)
{
    for (unsigned id = 0; id <= KMM_MAX_CACHES; id++) {
        struct kmm_magazine *m = &tc->mag[id];
        struct kmm_cache *c = m->cache;
        if (!c) {
            if (m->slot || m->top || m->end)
                return kmm__check_fail(mm, "magazine head without a cache has slots", UINT64_MAX);
            continue;
        }
        if (c->id != id || !m->slot || m->end != m->slot + c->mag_cap || c->mag_cap > MAG_MAX || m->top < m->slot ||
            m->top > m->end)
            return kmm__check_fail(mm, "magazine filed under the wrong cache, or over or off its capacity", UINT64_MAX);
        for (uint32_t i = 0; i < mag_count(m); i++) {
            int rc = kmm__free_slot_check(c, m->slot[i]);
            if (rc)
                return rc;
            for (uint32_t j = 0; j < i; j++)
                if (m->slot[j].addr == m->slot[i].addr)
                    return kmm__check_fail(mm, "magazine holds one slot twice", virt_to_pfn(mm, (void *)m->slot[i].addr));
        }
    }
    return 0;
}
