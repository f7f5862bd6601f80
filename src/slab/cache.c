/* cache.c - caches of fixed-size objects: creation, destruction, stats, check.
 *
 * Every cache of a memory system (kmm_malloc's size classes included) is on
 * the root's list, in creation order, and has an id: its index in each
 * thread's table of magazines. Ids of destroyed caches are reused; by then
 * no thread has a magazine under that id (kmm__mag_detach).
 */
#include "slab_internal.h"

void kmm__cache_register(struct kmm_slab_root *r, struct kmm_cache *c)
{
    c->id = NO_MAG_ID;   /* past the first KMM_MAX_CACHES caches alive, no magazines */
    for (uint32_t w = 0; w < KMM_MAX_CACHES / 64; w++) {
        if (~r->used_ids[w]) {
            unsigned b = (unsigned)__builtin_ctzll(~r->used_ids[w]);
            r->used_ids[w] |= (uint64_t)1 << b;
            c->id = w * 64 + b;
            break;
        }
    }
    struct kmm_cache **pp = &r->caches;
    while (*pp)
        pp = &(*pp)->next;
    c->next = NULL;
    *pp = c;
}

struct kmm_cache *kmm_cache_create(struct kmm *mm, const char *name, size_t size, size_t align,
                                   void (*ctor)(void *))
{
    mm_live(mm, "kmm_cache_create");
    struct kmm_slab_root *r = slab_root(mm);
    if (!r) {
        kmm__refuse(mm, KMM_ENOMEM, "kmm_cache_create", NULL);
        return NULL;
    }
    struct kmm_cache *c = kmm__meta_alloc(mm, sizeof(*c));
    if (!c) {
        kmm__refuse(mm, KMM_ENOMEM, "kmm_cache_create", NULL);
        return NULL;
    }
    if (kmm__cache_init(mm, c, name, size, align, ctor, 0, UINT32_MAX)) {
        kmm__meta_free(mm, c, sizeof(*c));
        kmm__refuse(mm, KMM_EINVAL, "kmm_cache_create",
                    "size 0, a slot (with the canary) above 8 pages, or an alignment not a power of two up to a page");
        return NULL;
    }
    kmm_lock(mm, &mm->slab_lock);
    kmm__cache_register(r, c);
    kmm_unlock(mm, &mm->slab_lock);
    return c;
}

void kmm_cache_destroy(struct kmm_cache *c)
{
    if (!c)
        return;
    struct kmm *mm = c->mm;
    if (c->kmalloc)
        kmm__fatal_page(mm, "kmm_cache_destroy", "a kmm_malloc cache cannot be destroyed:", c);
    kmm__mag_detach(mm, c);
    kmm__cache_shrink(c);

    kmm_lock(mm, &c->lock);
    size_t live = c->objects_out, slabs = c->partial.count + c->full.count;
    kmm_unlock(mm, &c->lock);
    if (live) {
        /* The slabs with live objects stay allocated and leave the slab map,
         * so a stale pointer can neither reach a reused page nor the gone
         * cache: kmm_free of one is reported as not from kmm_malloc. */
        struct kmm_msg m = { .len = 0 };
        kmm__msg_str(&m, "kmm: kmm_cache_destroy: cache ");
        kmm__msg_str(&m, c->name);
        kmm__msg_str(&m, " still has ");
        kmm__msg_dec(&m, live);
        kmm__msg_str(&m, " objects allocated; their ");
        kmm__msg_dec(&m, slabs);
        kmm__msg_str(&m, " slabs are kept (leaked), never reused");
        kmm__report(mm, &m);
        /* under the lock: a fork sees both steps or neither */
        struct slab_list *lists[2] = { &c->partial, &c->full };
        kmm_lock(mm, &c->lock);
        for (unsigned l = 0; l < 2; l++)
            for (struct kmm_slab *s = lists[l]->head; s; s = s->next) {
                kmm__pages_hand_over(mm, (void *)s->base, OWNER_SLAB, OWNER_LEAKED);
                kmm__slab_map_set(mm, s->base, s->order, NULL);
                pages_unpoison(mm, (void *)s->base, (uint64_t)1 << s->order);
            }
        kmm_unlock(mm, &c->lock);
    }
    struct kmm_slab_root *r = mm->slabs;
    kmm_lock(mm, &mm->slab_lock);
    for (struct kmm_cache **pp = &r->caches; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    if (c->id != NO_MAG_ID)
        r->used_ids[c->id / 64] &= ~((uint64_t)1 << (c->id % 64));
    kmm_unlock(mm, &mm->slab_lock);
    kmm__cache_fini(c);
    kmm__meta_free(mm, c, sizeof(*c));
}

/* ---- stats ------------------------------------------------------------------------ */

void kmm_cache_stats(struct kmm_cache *c, struct kmm_cache_stats *st)
{
    struct kmm *mm = c->mm;
    __builtin_memset(st, 0, sizeof(*st));
    __builtin_memcpy(st->name, c->name, sizeof(st->name));
    st->object_size = c->object_size;
    st->slot_size = c->slot_size;
    st->align = c->align;
    st->objects_per_slab = c->objects;
    st->pages_per_slab = (size_t)1 << c->slab_order;
    /* busy: a reclaim on another thread (a failing allocation, kmm_drain)
     * leaves this thread's magazines alone meanwhile, so the objects its
     * own magazines hold cannot go back to the slabs between the two reads
     * (a thread's private cache then reads exact) */
    busy_slow_enter();
    size_t cached = kmm__mag_count(mm, c);
    kmm_lock(mm, &c->lock);
    size_t out = c->objects_out, parked = c->depot_count;
    st->slabs = c->partial.count + c->full.count + c->empty.count;
    st->empty_slabs = c->empty.count;
    st->total_objects = c->total_slots;
    st->pages = c->total_pages;
    kmm_unlock(mm, &c->lock);
    busy_slow_exit();
    /* magazines and slabs are read one after the other while objects move */
    st->depot_objects = parked;
    st->cached_objects = cached < out - parked ? cached : out - parked;
    st->active_objects = out - parked - st->cached_objects;
    size_t held = st->pages << mm->page_shift, used = st->active_objects * c->object_size;
    st->waste_bytes = held > used ? held - used : 0;
}

/* Adds c to the listing if it holds a slab or an object. */
static void list_cache(struct kmm_cache *c, struct kmm_cache_stats *st, size_t max, size_t *n)
{
    struct kmm_cache_stats one;
    kmm_cache_stats(c, &one);
    if (one.slabs == 0 && one.active_objects == 0 && one.cached_objects == 0 && one.depot_objects == 0)
        return;
    if (*n < max)
        st[*n] = one;
    (*n)++;
}

size_t kmm_slab_stats(struct kmm *mm, struct kmm_cache_stats *st, size_t max)
{
    mm_live(mm, "kmm_slab_stats");
    struct kmm_slab_root *r = slab_root(mm);
    if (!r)
        return 0;
    size_t n = 0;
    kmm_lock(mm, &mm->slab_lock);
    /* kmm_malloc's caches by size (any area first at each size), then the others */
    for (unsigned cls = 0; cls < r->nr_classes; cls++)
        for (unsigned mask = 0; mask <= KMM_AREA_MASK; mask++)
            if (r->kmalloc[mask])
                list_cache(&r->kmalloc[mask][cls], st, max, &n);
    for (struct kmm_cache *c = r->caches; c; c = c->next)
        if (!c->kmalloc)
            list_cache(c, st, max, &n);
    kmm_unlock(mm, &mm->slab_lock);
    return n;
}

/* ---- drain, destroy ------------------------------------------------------------------ */

void kmm__slab_drain(struct kmm *mm)
{
    struct kmm_slab_root *r = __atomic_load_n(&mm->slabs, __ATOMIC_ACQUIRE);
    if (!r)
        return;
    kmm_lock(mm, &mm->slab_lock);
    for (struct kmm_cache *c = r->caches; c; c = c->next)
        kmm__cache_shrink(c);
    kmm_unlock(mm, &mm->slab_lock);
}

void kmm__slab_fork_locks(struct kmm *mm, bool lock)
{
    struct kmm_slab_root *r = __atomic_load_n(&mm->slabs, __ATOMIC_ACQUIRE);
    for (struct kmm_cache *c = r ? r->caches : NULL; c; c = c->next) {
        if (lock)
            kmm_lock(mm, &c->lock);
        else
            kmm_unlock(mm, &c->lock);
    }
}

/* Frees the layer's own memory; the pages go with the memory system. */
void kmm__slab_destroy_all(struct kmm *mm)
{
    struct kmm_slab_root *r = mm->slabs;
    if (r) {
        for (struct kmm_cache *c = r->caches, *next; c; c = next) {
            next = c->next;
            kmm__cache_fini(c);
            if (!c->kmalloc)
                kmm__meta_free(mm, c, sizeof(*c));
        }
        for (unsigned mask = 0; mask <= KMM_AREA_MASK; mask++)
            kmm__meta_free(mm, r->kmalloc[mask], r->nr_classes * sizeof(struct kmm_cache));
        kmm__meta_free(mm, r, sizeof(*r));
    }
    kmm__meta_free(mm, mm->slab_map, kmm__slab_map_bytes(mm));
    mm->slabs = NULL;
    mm->slab_map = NULL;
    mm->slab_span_bytes = 0;
}

/* ---- check ------------------------------------------------------------------------------ */


/* Adds to *parked the slots of s that are out but not held (so in some
 * magazine or the depot). */
static int check_slab(struct kmm *mm, struct kmm_cache *c, struct kmm_slab *s, const struct slab_list *l, size_t *parked)
{
    uint64_t pfn = virt_to_pfn(mm, (void *)s->base);
    if (s->cache != c || pfn == UINT64_MAX)
        return kmm__check_fail(mm, "slab descriptor names another cache or lies outside memory", pfn);
    if ((s->order != c->slab_order && s->order != c->min_order) ||
        s->objects != (mm->page_size << s->order) / c->slot_size ||
        s->canary_offset != c->canary_offset || s->recip != c->recip ||
        s->mag_offset != offsetof(struct kmm_tcache, mag) + c->id * sizeof(struct kmm_magazine))
        return kmm__check_fail(mm, "slab descriptor's order, object count or copied cache fields are wrong", pfn);
    if (meta_get(mm, pfn) != meta_make(META_OWNED, s->order) || pages_owner(mm, pfn) != OWNER_SLAB ||
        meta_kind(meta_get(mm, pfn + ((uint64_t)1 << s->order))) == META_ALLOC_CONT)
        return kmm__check_fail(mm, "slab pages are not one block of the slab's order owned by the slab layer", pfn);
    for (uint64_t i = 0; i < ((uint64_t)1 << s->order); i++) {
        const struct slab_map_entry *e = &mm->slab_map[pfn - mm->base_pfn + i];
        if (e->slab != s || e->base != s->base || e->recip != s->recip || e->mag_offset != slab_map_mag_offset(s))
            return kmm__check_fail(mm, "slab map does not name the slab, or its fields, for one of its pages", pfn + i);
    }
    uint32_t out = 0;
    for (uint32_t w = 0; w < c->words; w++)
        out += (uint32_t)__builtin_popcountll(s->out[w]);
    for (uint32_t i = s->objects; i < c->words * 64; i++)
        if (!((s->out[i / 64] >> (i % 64)) & 1))
            return kmm__check_fail(mm, "slab's bitmap has a clear bit past its last slot", pfn);
    out -= c->words * 64 - s->objects;   /* the bits past the last slot */
    if (out != s->inuse || slab_list_of(c, s) != l)
        return kmm__check_fail(mm, "slab's in-use count differs from its bitmap or its list", pfn);
    for (uint32_t w = 0; w < s->scan && w < c->words; w++)
        if (~s->out[w])
            return kmm__check_fail(mm, "slab's search hint skips a free slot", pfn);
    for (uint32_t i = 0; i < c->objects; i++) {
        uintptr_t p = s->base + i * c->slot_size;
        bool out_bit = (s->out[i / 64] >> (i % 64)) & 1;
        uint8_t held = load_relaxed(slab_held(s, i));
        /* 2: held, in the malloc shim's quarantine (kmm__malloc_quarantine) */
        if (held > 2 || (held == 2 && !c->kmalloc) || (held && (i >= s->objects || !out_bit)) ||
            load_relaxed(slab_held(s, c->objects)))
            return kmm__check_fail(mm, "slab's held byte is set for a slot that is not out of it", pfn);
        *parked += i < s->objects && out_bit && !held;
        if (mm->slab_poison && i < s->objects && !out_bit && *(uintptr_t *)(p + c->canary_offset) != slot_canary(c, p))
            return kmm__check_fail(mm, "free object in a slab was overwritten (write after free?)", virt_to_pfn(mm, (void *)p));
    }
    return 0;
}

int kmm__free_slot_check(struct kmm_cache *c, struct free_slot f)
{
    struct kmm *mm = c->mm;
    uint64_t pfn = virt_to_pfn(mm, (void *)f.addr);
    struct kmm_slab *s = pfn == UINT64_MAX ? NULL : mm->slab_map[pfn - mm->base_pfn].slab;
    if (!s || s == LARGE_BLOCK || s->cache != c)
        return kmm__check_fail(mm, "a magazine or depot holds an address outside its cache's slabs", pfn);
    uint64_t idx = slot_started_by(s, f.addr);
    if (idx == UINT64_MAX || !((s->out[idx / 64] >> (idx % 64)) & 1))
        return kmm__check_fail(mm, "a magazine or depot holds a slot that is not out of its slab", pfn);
    if (f.held != slab_held(s, idx) || load_relaxed(f.held) != 0)
        return kmm__check_fail(mm, "a magazine or depot holds a slot marked held, or the wrong held byte", pfn);
    if (mm->slab_poison && *(uintptr_t *)(f.addr + c->canary_offset) != slot_canary(c, f.addr))
        return kmm__check_fail(mm, "free object in a magazine or depot was overwritten (write after free?)", pfn);
    return 0;
}

/* The depot: distinct free slots of c (kmm__free_slot_check). */
static int check_depot(struct kmm *mm, struct kmm_cache *c)
{
    if (c->depot_count > depot_cap(c))
        return kmm__check_fail(mm, "cache's depot holds more than its capacity", UINT64_MAX);
    for (uint32_t i = 0; i < c->depot_count; i++) {
        int rc = kmm__free_slot_check(c, c->depot[i]);
        if (rc)
            return rc;
        for (uint32_t j = 0; j < i; j++)
            if (c->depot[j].addr == c->depot[i].addr)
                return kmm__check_fail(mm, "cache's depot holds one slot twice", virt_to_pfn(mm, (void *)c->depot[i].addr));
    }
    return 0;
}

/* The descriptors of c's chunks are its slabs' (slabs of them) and the
 * free ones; nothing else but the newest chunk's uncut rest. */
static int check_descriptors(struct kmm *mm, struct kmm_cache *c, size_t slabs)
{
    size_t cut = 0, nfree = 0;
    for (struct desc_chunk *ch = c->desc_chunks; ch; ch = ch->next)
        cut += (ch->len - desc_colour(c)) / c->desc_size;
    if (c->desc_left % c->desc_size != (c->desc_chunks ? (c->desc_chunks->len - desc_colour(c)) % c->desc_size : 0) ||
        c->desc_left / c->desc_size > cut)
        return kmm__check_fail(mm, "cache's uncut descriptors are not the rest of its newest chunk", UINT64_MAX);
    cut -= c->desc_left / c->desc_size;
    for (void *d = c->desc_free; d; d = *(void **)d)
        if (++nfree > cut)
            break;
    if (cut != slabs + nfree)
        return kmm__check_fail(mm, "cache's descriptor chunks hold descriptors neither a slab's nor free "
                               "(a chunk's rest dropped?)", UINT64_MAX);
    return 0;
}

/* in_mags: c's slots in magazines (counted before c->lock was taken). */
static int check_cache(struct kmm *mm, struct kmm_cache *c, size_t in_mags)
{
    const struct slab_list *lists[3] = { &c->partial, &c->full, &c->empty };
    size_t out = 0, slots = 0, pages = 0, parked = 0;
    for (unsigned l = 0; l < 3; l++) {
        size_t n = 0;
        for (struct kmm_slab *s = lists[l]->head; s; s = s->next) {
            if (++n > lists[l]->count || (s->next && s->next->prev != s))
                return kmm__check_fail(mm, "slab list loops, is longer than its count or is not doubly linked", UINT64_MAX);
            int rc = check_slab(mm, c, s, lists[l], &parked);
            if (rc)
                return rc;
            out += s->inuse;
            slots += s->objects;
            pages += (size_t)1 << s->order;
        }
        if (n != lists[l]->count)
            return kmm__check_fail(mm, "slab list is shorter than its count", UINT64_MAX);
    }
    if (out != c->objects_out)
        return kmm__check_fail(mm, "cache's objects-out counter differs from its slabs", UINT64_MAX);
    if (slots != c->total_slots || pages != c->total_pages)
        return kmm__check_fail(mm, "cache's slot or page total differs from its slabs", UINT64_MAX);
    if (parked != c->depot_count + in_mags)
        return kmm__check_fail(mm, "cache has slots out of their slabs that no caller, magazine or depot holds (lost)", UINT64_MAX);
    if (c->making.count)
        return kmm__check_fail(mm, "a slab of the cache is being made (kmm_check wants the other threads quiet)", UINT64_MAX);
    int rc = check_descriptors(mm, c, c->partial.count + c->full.count + c->empty.count);
    return rc ? rc : check_depot(mm, c);
}

static bool map_entry_empty(const struct slab_map_entry *e)
{
    return !e->slab && !e->base && !e->recip && !e->mag_offset;
}

/* The slab map against the page metadata, block by block (the page check
 * has verified that the heads tile memory): an OWNED block of the slab
 * layer maps each page to a slab starting at the block; the head of an
 * OWNED block of kmm_malloc maps to LARGE_BLOCK, the rest of that
 * allocation to nothing; every other page maps to nothing. The pages of
 * OWNED slab blocks add up to the caches' slab pages (slab_pages), so no
 * block is the slab layer's without being some cache's slab. */
static int check_slab_map(struct kmm *mm, size_t slab_pages)
{
    const struct slab_map_entry *map = mm->slab_map;
    size_t seen = 0;
    for (uint64_t pfn = mm->base_pfn; pfn < mm->end_pfn;) {
        kmm_meta_t m = meta_get(mm, pfn);
        uint64_t n = (uint64_t)1 << meta_order(m);
        if (m == 0 || pfn + n > mm->end_pfn)
            return kmm__check_fail(mm, "slab map check: the page metadata does not tile memory", pfn);
        enum meta_kind k = meta_kind(m);
        enum kmm_owner owner = k == META_OWNED ? pages_owner(mm, pfn) : NR_OWNERS;
        if (!map) {
            if (owner == OWNER_SLAB || owner == OWNER_KMALLOC)
                return kmm__check_fail(mm, "pages owned by the slab layer or kmm_malloc, but no slab map", pfn);
            pfn += n;
            continue;
        }
        for (uint64_t i = 0; i < n; i++) {
            const struct slab_map_entry *e = &map[pfn - mm->base_pfn + i];
            if (owner == OWNER_SLAB) {
                if (!e->slab || e->slab == LARGE_BLOCK || e->slab->base != (uintptr_t)pfn_to_virt(mm, pfn) ||
                    e->slab->order != meta_order(m))
                    return kmm__check_fail(mm, "a page of a slab block does not map to the slab made of that block",
                                           pfn + i);
            } else if (owner == OWNER_KMALLOC && i == 0) {
                if (e->slab != LARGE_BLOCK || e->base || e->recip || e->mag_offset)
                    return kmm__check_fail(mm, "the head of a kmm_malloc block of pages is not marked LARGE_BLOCK", pfn);
            } else if (!map_entry_empty(e)) {
                return kmm__check_fail(mm, e->slab == LARGE_BLOCK ? "LARGE_BLOCK mark on a page that starts no kmm_malloc block"
                                                                 : "slab map names a slab for a page no slab holds",
                                       pfn + i);
            }
        }
        if (owner == OWNER_SLAB) {
            if (meta_kind(meta_get(mm, pfn + n)) == META_ALLOC_CONT)
                return kmm__check_fail(mm, "a slab block continues into another block", pfn);
            seen += (size_t)n;
        }
        pfn += n;
    }
    if (seen != slab_pages)
        return kmm__check_fail(mm, "pages owned by the slab layer differ from the pages of the caches' slabs", UINT64_MAX);
    return 0;
}

int kmm__slab_check(struct kmm *mm)
{
    struct kmm_slab_root *r = __atomic_load_n(&mm->slabs, __ATOMIC_ACQUIRE);
    if (!r)
        return check_slab_map(mm, 0);
    int rc = 0;
    kmm_lock(mm, &mm->slab_lock);
    /* the allocation fast path takes a class for a cache id, and below
     * KMALLOC_DIRECT (size - 1) / 16 for a class */
    for (unsigned cls = 0; cls < r->nr_classes && rc == 0; cls++) {
        size_t size = r->class_size[cls];
        if (r->kmalloc[0][cls].id != cls || r->kmalloc[0][cls].slot_size != size ||
            mm->kmalloc_class[(size + 15) >> 4] != cls || (cls && mm->kmalloc_class[(r->class_size[cls - 1] + 16) >> 4] != cls) ||
            (size <= KMALLOC_DIRECT && size != 16 * (cls + 1)))
            rc = kmm__check_fail(mm, "kmm_malloc's classes, their table or their caches' ids disagree", UINT64_MAX);
    }
    size_t slab_pages = 0;
    for (struct kmm_cache *c = r->caches; c && rc == 0; c = c->next) {
        if (c->id != NO_MAG_ID && !(r->used_ids[c->id / 64] >> (c->id % 64) & 1))
            rc = kmm__check_fail(mm, "a cache's id is not marked used", UINT64_MAX);
        size_t in_mags = kmm__mag_count(mm, c);   /* takes tcache_lock, which comes before c->lock */
        kmm_lock(mm, &c->lock);
        if (rc == 0)
            rc = check_cache(mm, c, in_mags);
        slab_pages += c->total_pages;
        kmm_unlock(mm, &c->lock);
    }
    if (rc == 0)
        rc = check_slab_map(mm, slab_pages);
    kmm_lock(mm, &mm->tcache_lock);
    for (struct kmm_tcache *tc = mm->tcaches; tc && rc == 0; tc = tc->next)
        rc = kmm__mag_check(mm, tc);
    kmm_unlock(mm, &mm->tcache_lock);
    kmm_unlock(mm, &mm->slab_lock);
    return rc;
}
