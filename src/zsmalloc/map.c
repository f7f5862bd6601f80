/* map.c - reaching objects: mappings and copies.
 *
 * An object inside one page is mapped in place (its direct-map address).
 * One that spans two pages is copied into a map slot's buffer and back:
 * a copy of at most a page costs some 100 ns here, where mapping the two
 * frames side by side (Linux's per-CPU vm area, or vmap) costs a platform
 * call of microseconds and can fail (README "zsmalloc", docs/decisions.md).
 * The pool's KMM_ZS_MAP_SLOTS slots and their buffers are made with the
 * pool, so a mapping never allocates and never fails; it waits only while
 * every slot is held. A slot also pins the object: compaction does not move
 * objects of a zspage with mappings (zspage->mapped). */
#include "zs_internal.h"

void kmm__zs_copy(struct kmm_zspool *pool, const struct zs_class *cls, const struct zspage *z,
                  uint32_t obj, size_t off, void *buf, size_t len, bool to_obj)
{
    struct kmm *mm = pool->mm;
    size_t pos = (size_t)obj * cls->size + off;
    unsigned char *b = buf;
    while (len) {
        size_t in = pos & (mm->page_size - 1), n = mm->page_size - in;
        if (n > len)
            n = len;
        unsigned char *p = (unsigned char *)pfn_to_virt(mm, mm->base_pfn + z->pages[pos >> mm->page_shift]) + in;
        if (!to_obj)
            __builtin_memcpy(b, p, n);
        else if (b)
            __builtin_memcpy(p, b, n);
        else
            __builtin_memset(p, 0, n);
        if (b)
            b += n;
        pos += n;
        len -= n;
    }
}

static inline bool obj_spans(const struct kmm *mm, const struct zs_class *cls, uint32_t obj)
{
    size_t in = ((size_t)obj * cls->size) & (mm->page_size - 1);
    return in + cls->size > mm->page_size;
}

void *kmm_zs_map(struct kmm_zspool *pool, uint64_t handle, int mode)
{
    struct kmm *mm = pool->mm;
    mm_live(mm, "kmm_zs_map");
    if (KMM_UNLIKELY(mode < KMM_ZS_RO || mode > KMM_ZS_RW))
        kmm__zs_fatal(pool, "kmm_zs_map", "mode is not KMM_ZS_RO, KMM_ZS_WO or KMM_ZS_RW", handle);
    uintptr_t self = kmm__zs_thread();
    for (;;) {
        kmm_lock(mm, &pool->lock);
        uint64_t e = *kmm__zs_entry(pool, handle, "kmm_zs_map");
        unsigned mine = 0;
        for (unsigned i = 0; i < KMM_ZS_MAP_SLOTS; i++)
            mine += pool->slots[i].thread == self;
        if (KMM_UNLIKELY(mine >= KMM_ZS_MAP_NEST))
            kmm__zs_fatal(pool, "kmm_zs_map", "the calling thread already holds KMM_ZS_MAP_NEST objects mapped", handle);
        /* a first mapping takes a general slot; a nested one the nest
         * owner's slots, once this thread owns them */
        unsigned slot = KMM_ZS_MAP_SLOTS, from = 0, to = ZS_GENERAL_SLOTS;
        if (mine) {
            if (!pool->nest_owner)
                pool->nest_owner = self;
            from = ZS_GENERAL_SLOTS;
            to = pool->nest_owner == self ? KMM_ZS_MAP_SLOTS : from;
        }
        for (unsigned i = from; i < to && slot == KMM_ZS_MAP_SLOTS; i++)
            if (!pool->slots[i].thread)
                slot = i;
        if (slot == KMM_ZS_MAP_SLOTS) {
            /* general slots all held, or another thread owns the nest: they
             * unmap soon (the nest owner never waits, so the nest is freed) */
            kmm_unlock(mm, &pool->lock);
            for (unsigned spin = 0; spin < 64; spin++)
                cpu_relax();
            continue;
        }
        struct zspage *z = zspage_of(pool, entry_zspage(e));
        struct zs_class *cls = &pool->classes[z->class_idx];
        uint32_t obj = entry_obj(e);
        struct zs_map_slot *s = &pool->slots[slot];
        s->thread = self;
        s->handle = handle;
        s->zspage = z;
        s->obj = obj;
        s->mode = mode;
        s->seq = ++pool->map_seq;
        s->spans = obj_spans(mm, cls, obj);
        z->mapped++;
        store_relaxed(&pool->slots_used, pool->slots_used + 1);
        void *p;
        if (!s->spans) {
            size_t pos = (size_t)obj * cls->size;
            p = (char *)pfn_to_virt(mm, mm->base_pfn + z->pages[pos >> mm->page_shift]) + (pos & (mm->page_size - 1));
        } else {
            p = s->buf;
            if (mode & KMM_ZS_RO)
                kmm__zs_copy(pool, cls, z, obj, 0, p, cls->size, false);
        }
        kmm_unlock(mm, &pool->lock);
        return p;
    }
}

void kmm_zs_unmap(struct kmm_zspool *pool, uint64_t handle)
{
    struct kmm *mm = pool->mm;
    mm_live(mm, "kmm_zs_unmap");
    uintptr_t self = kmm__zs_thread();
    kmm_lock(mm, &pool->lock);
    struct zs_map_slot *s = NULL;
    bool nested = false;
    for (unsigned i = 0; i < KMM_ZS_MAP_SLOTS; i++) {
        struct zs_map_slot *t = &pool->slots[i];
        if (t->thread == self && t->handle == handle && (!s || t->seq > s->seq))
            s = t;   /* the latest of nested maps of one handle */
    }
    if (KMM_UNLIKELY(!s)) {
        /* tell a bad handle from a good one this thread did not map */
        kmm__zs_entry(pool, handle, "kmm_zs_unmap");
        kmm__zs_fatal(pool, "kmm_zs_unmap", "the calling thread has not mapped this object", handle);
    }
    struct zspage *z = s->zspage;
    if (s->spans && (s->mode & KMM_ZS_WO))
        kmm__zs_copy(pool, &pool->classes[z->class_idx], z, s->obj, 0, s->buf, pool->classes[z->class_idx].size, true);
    zs_slot_release(pool, s);
    for (unsigned i = ZS_GENERAL_SLOTS; i < KMM_ZS_MAP_SLOTS; i++)
        nested |= pool->slots[i].thread == self;
    if (pool->nest_owner == self && !nested)
        pool->nest_owner = 0;
    kmm_unlock(mm, &pool->lock);
}

static int zs_copy_call(struct kmm_zspool *pool, uint64_t handle, size_t offset, void *buf, size_t len,
                        bool to_obj, const char *fn)
{
    struct kmm *mm = pool->mm;
    mm_live(mm, fn);
    kmm_lock(mm, &pool->lock);
    uint64_t e = *kmm__zs_entry(pool, handle, fn);
    struct zspage *z = zspage_of(pool, entry_zspage(e));
    struct zs_class *cls = &pool->classes[z->class_idx];
    if (KMM_UNLIKELY(offset > cls->size || len > cls->size - offset)) {
        kmm_unlock(mm, &pool->lock);
        kmm__refuse(mm, KMM_EINVAL, fn, "offset + length pass the object's usable size");
        return -KMM_EINVAL;
    }
    kmm__zs_copy(pool, cls, z, entry_obj(e), offset, buf, len, to_obj);
    kmm_unlock(mm, &pool->lock);
    return 0;
}

int kmm_zs_read(struct kmm_zspool *pool, uint64_t handle, size_t offset, void *dst, size_t len)
{
    if (KMM_UNLIKELY(!dst && len)) {
        kmm__refuse(pool->mm, KMM_EINVAL, "kmm_zs_read", "no destination");
        return -KMM_EINVAL;
    }
    return zs_copy_call(pool, handle, offset, dst, len, false, "kmm_zs_read");
}

int kmm_zs_write(struct kmm_zspool *pool, uint64_t handle, size_t offset, const void *src, size_t len)
{
    if (KMM_UNLIKELY(!src && len)) {
        kmm__refuse(pool->mm, KMM_EINVAL, "kmm_zs_write", "no source");
        return -KMM_EINVAL;
    }
    return zs_copy_call(pool, handle, offset, (void *)(uintptr_t)src, len, true, "kmm_zs_write");
}
