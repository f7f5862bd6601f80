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
#include "internal.h"

struct mag_chunk {
    struct mag_chunk *next;
    size_t len;
};

#define MAG_BYTES (MAG_MAX * sizeof(uintptr_t))
#define MAG_CHUNK_BYTES 16384

struct kmm_magazine *kmm__mag_get(struct kmm *mm, struct kmm_tcache *tc, struct kmm_cache *c)
{
    if (c->id == NO_MAG_ID)
        return NULL;
    uintptr_t *slots = tc->mag_free;
    if (!slots) {
        struct mag_chunk *ch = kmm__meta_alloc(mm, MAG_CHUNK_BYTES);
        if (!ch)
            return NULL;
        ch->len = MAG_CHUNK_BYTES;
        ch->next = tc->mag_chunks;
        tc->mag_chunks = ch;
        for (size_t off = 64; off + MAG_BYTES <= MAG_CHUNK_BYTES; off += MAG_BYTES) {
            uintptr_t *fresh = (uintptr_t *)(void *)((char *)ch + off);
            fresh[0] = (uintptr_t)slots;
            slots = fresh;
        }
    }
    tc->mag_free = (uintptr_t *)slots[0];
    struct kmm_magazine *m = &tc->mag[c->id];
    store_relaxed(&m->count, 0);
    store_relaxed(&m->slot, slots);
    store_relaxed(&m->secret, c->secret);
    store_relaxed(&m->cap, c->mag_cap);
    __atomic_store_n(&m->cache, c, __ATOMIC_RELEASE);
    return m;
}

void kmm__mag_overwritten(struct kmm_magazine *m, uintptr_t p, const char *fn)
{
    kmm__slot_fatal(m->cache, fn, "free object overwritten (write after free?) at", (void *)p);
}

void kmm__mag_drain_all(struct kmm *mm, struct kmm_tcache *tc)
{
    kmm_lock(mm, &mm->tcache_lock);
    for (unsigned id = 0; id < KMM_MAX_CACHES; id++) {
        struct kmm_magazine *m = &tc->mag[id];
        if (m->count) {
            kmm__cache_put(m->cache, m->slot, m->count, "kmm_free");
            store_relaxed(&m->count, 0);
        }
    }
    kmm_unlock(mm, &mm->tcache_lock);
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

bool kmm__mag_holds(struct kmm *mm, struct kmm_cache *c, uintptr_t p)
{
    bool found = false;
    kmm_lock(mm, &mm->tcache_lock);
    for (struct kmm_tcache *tc = c->id == NO_MAG_ID ? NULL : mm->tcaches; tc && !found; tc = tc->next) {
        struct kmm_magazine *m = &tc->mag[c->id];
        if (__atomic_load_n(&m->cache, __ATOMIC_ACQUIRE) != c)
            continue;
        uint32_t n = load_relaxed(&m->count);
        uintptr_t *slot = load_relaxed(&m->slot);
        for (uint32_t i = 0; i < n && !found; i++)
            found = load_relaxed(&slot[i]) == p;
    }
    kmm_unlock(mm, &mm->tcache_lock);
    return found;
}

size_t kmm__mag_count(struct kmm *mm, struct kmm_cache *c)
{
    size_t n = 0;
    kmm_lock(mm, &mm->tcache_lock);
    for (struct kmm_tcache *tc = c->id == NO_MAG_ID ? NULL : mm->tcaches; tc; tc = tc->next) {
        struct kmm_magazine *m = &tc->mag[c->id];
        if (__atomic_load_n(&m->cache, __ATOMIC_ACQUIRE) == c)
            n += load_relaxed(&m->count);
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
        kmm__cache_put(c, m->slot, m->count, "kmm_cache_free");
        store_relaxed(&m->cap, 0);
        store_relaxed(&m->count, 0);
        __atomic_store_n(&m->cache, NULL, __ATOMIC_RELEASE);
    }
    kmm_unlock(mm, &mm->tcache_lock);
}

/* Each magazine head of tc: empty with no cache, or of the cache it is
 * filed under, with that cache's capacity and secret, holding distinct
 * slots, each the start of a slot that is out of its slab and still
 * carries its canary. */
int kmm__mag_check(struct kmm *mm, struct kmm_tcache *tc)
{
    for (unsigned id = 0; id <= KMM_MAX_CACHES; id++) {
        struct kmm_magazine *m = &tc->mag[id];
        struct kmm_cache *c = m->cache;
        if (!c) {
            if (m->count || m->cap)
                return kmm__check_fail(mm, "magazine head without a cache has a count or a capacity", UINT64_MAX);
            continue;
        }
        if (c->id != id || m->cap != c->mag_cap || m->count > m->cap || m->cap > MAG_MAX || !m->slot ||
            m->secret != c->secret)
            return kmm__check_fail(mm, "magazine filed under the wrong cache, over or off its capacity, or with another secret", UINT64_MAX);
        for (uint32_t i = 0; i < m->count; i++) {
            uintptr_t p = m->slot[i];
            uint64_t pfn = virt_to_pfn(mm, (void *)p);
            struct kmm_slab *s = pfn == UINT64_MAX ? NULL : mm->slab_map[pfn - mm->base_pfn];
            if (!s || s == LARGE_BLOCK || s->cache != c)
                return kmm__check_fail(mm, "magazine holds an address outside its cache's slabs", pfn);
            uint64_t idx = slot_started_by(s, p);
            if (idx == UINT64_MAX || !((s->out[idx / 64] >> (idx % 64)) & 1))
                return kmm__check_fail(mm, "magazine holds a slot that is not out of its slab", pfn);
            if (*(uintptr_t *)(p + c->canary_offset) != slot_canary(c, p))
                return kmm__check_fail(mm, "free object in a magazine was overwritten (write after free?)", pfn);
            for (uint32_t j = 0; j < i; j++)
                if (m->slot[j] == p)
                    return kmm__check_fail(mm, "magazine holds one slot twice", pfn);
        }
    }
    return 0;
}
