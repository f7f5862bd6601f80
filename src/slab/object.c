/* object.c - one object into or out of a cache: the paths every allocation
 * and free of the slab layer takes (kmm_malloc's fast paths inline the
 * common case of kmm__obj_alloc in kmalloc.c). */
#include "slab_internal.h"

static void *finish(struct kmm_cache *c, void *p, unsigned flags)
{
    if (flags & KMM_ZERO)
        __builtin_memset(p, 0, c->slot_size);
    return p;
}

void *kmm__obj_alloc(struct kmm_cache *c, unsigned flags, const char *fn)
{
    struct kmm *mm = c->mm;
    void *p = NULL;
    busy_slow_enter();
    struct kmm_tcache *tc = tcache_get(mm);
    struct kmm_magazine *m = tc ? &tc->mag[c->id] : NULL;
    if (m && !m->cache)
        m = kmm__mag_get(mm, tc, c);
    if (m) {
        if (m->top == m->slot) {
            uint32_t want = c->mag_cap / 2;
            store_relaxed(&m->top, m->slot + kmm__cache_take(c, m->slot, want ? want : 1, flags));
        }
        if (m->top != m->slot)
            p = slot_claim(c, mag_take(m), fn);
    } else {
        /* no magazine (no thread cache, or no memory for one): straight from a slab */
        struct free_slot f;
        if (kmm__cache_take(c, &f, 1, flags) == 1)
            p = slot_claim(c, f, fn);
    }
    busy_slow_exit();
    if (p)
        return finish(c, p, flags);
    kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
    return NULL;
}

void kmm__obj_free(struct kmm_cache *c, struct kmm_slab *s, uintptr_t p, const char *fn)
{
    uint64_t idx = slot_started_by(s, p);
    if (KMM_UNLIKELY(idx == UINT64_MAX))
        kmm__slot_fatal(c, fn, "pointer into the middle of an object:", (void *)p);
    struct free_slot f = { p, slab_held(s, idx) };
    if (KMM_UNLIKELY(load_relaxed(f.held) != 1))
        kmm__slot_fatal(c, fn, "double free of", (void *)p);   /* in a slab, a magazine or the depot */
    struct kmm *mm = c->mm;
    busy_slow_enter();
    struct kmm_tcache *tc = tcache_get(mm);
    struct kmm_magazine *m = tc ? &tc->mag[c->id] : NULL;
    if (m && !m->cache)
        m = kmm__mag_get(mm, tc, c);
    if (!m) {
        busy_slow_exit();
        store_relaxed(f.held, 0);
        if (mm->slab_poison)
            *(uintptr_t *)(p + c->canary_offset) = slot_canary(c, p);
        obj_poison(c, p);
        kmm__cache_put(c, &f, 1, fn);
        return;
    }
    if (m->top == m->end) {   /* full: the older half goes back to the cache */
        uint32_t half = c->mag_cap / 2 ? c->mag_cap / 2 : 1, count = mag_count(m);
        kmm__cache_stash(c, m->slot, half, fn);
        for (uint32_t i = half; i < count; i++) {
            store_relaxed(&m->slot[i - half].addr, m->slot[i].addr);
            store_relaxed(&m->slot[i - half].held, m->slot[i].held);
        }
        store_relaxed(&m->top, m->top - half);
    }
    /* the slot before the held byte, as in obj_free_fast (for fork) */
    store_relaxed(&m->top->addr, f.addr);
    store_relaxed(&m->top->held, f.held);
    store_relaxed(f.held, 0);
    if (mm->slab_poison)
        *(uintptr_t *)(p + c->canary_offset) = slot_canary(c, p);
    obj_poison(c, p);
    store_relaxed(&m->top, m->top + 1);
    busy_slow_exit();
}

void *kmm_cache_alloc(struct kmm_cache *c, unsigned flags)
{
#if KMM_THREAD_CACHE
    struct kmm *mm = c->mm;
    /* kmalloc_max is 0 with KMM_SLAB_POISON: no fast path; nor for flags
     * beyond an area mask (zeroing, or refused below) */
    busy_fast_enter();
    if (KMM_LIKELY(!(flags & ~KMM_AREA_MASK) && load_relaxed(&mm->kmalloc_max) &&
                   kmm__tls[0].key == load_relaxed(&mm->cache_key))) {
        struct kmm_magazine *m = tcache_mag(kmm__tls[0].tc, c->id);
        if (KMM_LIKELY(m->top != m->slot)) {
            void *p = mag_pop(m);
            busy_fast_exit();
            return p;
        }
    }
    busy_fast_exit();
#endif
    if (!flags_ok(c->mm, flags, 0, "kmm_cache_alloc"))
        return NULL;
    if (KMM_UNLIKELY((flags & KMM_ZERO) && c->ctor)) {
        kmm__refuse(c->mm, KMM_EINVAL, "kmm_cache_alloc", "KMM_ZERO on a cache with a constructor");
        return NULL;
    }
    return kmm__obj_alloc(c, flags, "kmm_cache_alloc");
}

void kmm_cache_free(struct kmm_cache *c, void *p)
{
    if (!p)
        return;
    struct kmm_slab *s = slab_of(c->mm, p);
    if (!s || s == LARGE_BLOCK)
        kmm__fatal_page(c->mm, "kmm_cache_free", "pointer not from kmm (no slab there):", p);
    if (s->cache != c)
        kmm__slot_fatal(c, "kmm_cache_free", "object of another cache:", p);
    /* slab_span_bytes is 0 with KMM_SLAB_POISON: no fast path */
    if (!load_relaxed(&c->mm->slab_span_bytes) || !obj_free_fast(c->mm, s, s->base, s->recip, s->mag_offset, (uintptr_t)p))
        kmm__obj_free(c, s, (uintptr_t)p, "kmm_cache_free");
}
