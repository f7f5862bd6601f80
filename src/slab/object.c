/* object.c - one object into or out of a cache: the paths every allocation
 * and free of the slab layer takes (kmm_malloc's fast paths inline the
 * common case of kmm__obj_alloc in kmalloc.c). */
#include "internal.h"

static void *finish(struct kmm_cache *c, void *p, unsigned flags)
{
    if (flags & KMM_ZERO)
        __builtin_memset(p, 0, c->slot_size);
    return p;
}

void *kmm__obj_alloc(struct kmm_cache *c, unsigned flags, const char *fn)
{
    struct kmm *mm = c->mm;
    struct kmm_tcache *tc = tcache_get(mm);
    struct kmm_magazine *m = tc ? &tc->mag[c->id] : NULL;
    if (m && !m->cache)
        m = kmm__mag_get(mm, tc, c);
    if (m) {
        if (!m->count) {
            uint32_t want = m->cap / 2;
            store_relaxed(&m->count, kmm__cache_take(c, m->slot, want ? want : 1, flags));
        }
        if (m->count)
            return finish(c, mag_pop(m, c->canary_offset, fn), flags);
    } else {
        /* no magazine (no thread cache, or no memory for one): straight from a slab */
        uintptr_t p;
        if (kmm__cache_take(c, &p, 1, flags) == 1)
            return finish(c, slot_claim(c, p, c->secret, c->canary_offset, fn), flags);
    }
    kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
    return NULL;
}

void kmm__obj_free(struct kmm_cache *c, struct kmm_slab *s, uintptr_t p, const char *fn)
{
    if (KMM_UNLIKELY(slot_started_by(s, p) == UINT64_MAX))
        kmm__slot_fatal(c, fn, "pointer into the middle of an object:", (void *)p);
    uintptr_t *canary = (uintptr_t *)(p + c->canary_offset);
    if (KMM_UNLIKELY(*canary == slot_canary(c, p)))
        kmm__check_double_free(c, s, p, fn, "double free of");
    struct kmm *mm = c->mm;
    struct kmm_tcache *tc = tcache_get(mm);
    struct kmm_magazine *m = tc ? &tc->mag[c->id] : NULL;
    if (m && !m->cache)
        m = kmm__mag_get(mm, tc, c);
    *canary = slot_canary(c, p);
    obj_poison(c, p);
    if (!m) {
        kmm__cache_put(c, &p, 1, fn);
        return;
    }
    if (m->count == m->cap) {   /* full: the older half goes back to the cache */
        uint32_t half = m->cap / 2 ? m->cap / 2 : 1;
        kmm__cache_stash(c, m->slot, half, fn);
        for (uint32_t i = half; i < m->count; i++)
            store_relaxed(&m->slot[i - half], m->slot[i]);
        store_relaxed(&m->count, m->count - half);
    }
    store_relaxed(&m->slot[m->count], p);
    store_relaxed(&m->count, m->count + 1);
}

void *kmm_cache_alloc(struct kmm_cache *c, unsigned flags)
{
    if (KMM_UNLIKELY((flags & KMM_ZERO) && c->ctor)) {
        kmm__refuse(c->mm, KMM_EINVAL, "kmm_cache_alloc", "KMM_ZERO on a cache with a constructor");
        return NULL;
    }
#if KMM_THREAD_CACHE
    struct kmm *mm = c->mm;
    if (KMM_LIKELY(!(flags & KMM_ZERO) && kmm__tls[0].key == load_relaxed(&mm->cache_key))) {
        struct kmm_magazine *m = &kmm__tls[0].tc->mag[c->id];
        if (KMM_LIKELY(m->count))
            return mag_pop(m, c->canary_offset, "kmm_cache_alloc");
    }
#endif
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
    if (!obj_free_fast(c->mm, s, (uintptr_t)p))
        kmm__obj_free(c, s, (uintptr_t)p, "kmm_cache_free");
}
