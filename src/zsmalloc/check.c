/* check.c - the zsmalloc layer's invariants (kmm_check), fork and the end
 * of a memory system.
 *
 * Invariants of a pool (under its lock):
 *  - classes: a class is served by itself or by a larger serving class with
 *    the same pages and objects per zspage; objs * size fits in pages pages;
 *  - the id tables are well formed (table.c); the handle table has one
 *    used entry per live object, the zspage table one per zspage;
 *  - a zspage: its id maps to it; its class serves; it holds exactly the
 *    pages its fresh objects reach (ceil(fresh * size / page_size)), each an
 *    order-0 allocation owned by zsmalloc; obj[i] for i < fresh is either a
 *    handle id whose entry points back at (zspage, i), or on the free list,
 *    which has fresh - inuse entries; obj[i] from fresh on is FRESH;
 *    0 < inuse; it is on the band list its fullness says, or on none when
 *    full;
 *  - class and pool counters are the sums over zspages; every held map slot
 *    maps a live handle, and a zspage's mapped count is the number of slots
 *    on it;
 *  - memory: the pages owned by zsmalloc in the memory system are the
 *    pools' zspage pages, spare pages and map buffers. */
#include "zs_internal.h"

static int fail(struct kmm_zspool *pool, const char *what, uint64_t v)
{
    kmm_unlock(pool->mm, &pool->lock);
    return kmm__check_fail(pool->mm, what, v);
}

static uint64_t zs_page_phys(const struct kmm *mm, uint32_t page)
{
    return (mm->base_pfn + page) << mm->page_shift;
}

static int check_zspage(struct kmm_zspool *pool, uint32_t id, const struct zspage *z)
{
    struct kmm *mm = pool->mm;
    if (z->id != id || z->class_idx >= pool->nr_classes || pool->classes[z->class_idx].merged_into != z->class_idx)
        return kmm__check_fail(mm, "zsmalloc: zspage table entry or class of a zspage", id);
    const struct zs_class *cls = &pool->classes[z->class_idx];
    if (z->fresh > cls->objs || z->inuse == 0 || z->inuse > z->fresh ||
        z->nr_pages != zs_pages_for(mm, (size_t)z->fresh * cls->size))
        return kmm__check_fail(mm, "zsmalloc: zspage counts (fresh, inuse, pages held)", id);
    for (unsigned i = 0; i < z->nr_pages; i++) {
        uint64_t pfn = mm->base_pfn + z->pages[i];
        if (pfn >= mm->end_pfn || pages_owner(mm, pfn) != OWNER_ZSMALLOC || meta_order(meta_get(mm, pfn)) != 0)
            return kmm__check_fail(mm, "zsmalloc: a zspage page is no order-0 page owned by zsmalloc", zs_page_phys(mm, z->pages[i]));
    }
    uint32_t used = 0;
    for (uint32_t i = 0; i < z->fresh; i++) {
        uint32_t v = z->obj[i];
        if (v & ZS_OBJ_FREE)
            continue;
        used++;
        if (v >= table_capacity(&pool->handles))
            return kmm__check_fail(mm, "zsmalloc: object with a handle id beyond the table", id);
        uint64_t e = *table_entry(&pool->handles, v);
        if (!(e & ZS_ENTRY_USED) || entry_zspage(e) != id || entry_obj(e) != i)
            return kmm__check_fail(mm, "zsmalloc: handle entry does not point back at its object", v);
    }
    for (uint32_t i = z->fresh; i < cls->objs; i++)
        if (z->obj[i] != ZS_OBJ_FRESH)
            return kmm__check_fail(mm, "zsmalloc: object past fresh is not fresh", id);
    if (used != z->inuse)
        return kmm__check_fail(mm, "zsmalloc: zspage inuse count", id);
    uint32_t nfree = 0;
    for (uint32_t i = z->free_head; i != ZS_OBJ_END; i = z->obj[i] & ~ZS_OBJ_FREE) {
        if (i >= z->fresh || !(z->obj[i] & ZS_OBJ_FREE) || ++nfree > z->fresh - z->inuse)
            return kmm__check_fail(mm, "zsmalloc: zspage free list", id);
    }
    if (nfree != z->fresh - z->inuse)
        return kmm__check_fail(mm, "zsmalloc: zspage free list length", id);
    uint8_t band = z->inuse == cls->objs ? ZS_BANDS : (uint8_t)((uint64_t)z->inuse * ZS_BANDS / cls->objs);
    if (z->band != band)
        return kmm__check_fail(mm, "zsmalloc: zspage in the wrong fullness band", id);
    struct zs_class *c = &pool->classes[z->class_idx];
    c->check.objects += z->inuse;
    c->check.pages += z->nr_pages;
    c->check.zspages++;
    c->check.full += z->band == ZS_BANDS;
    c->check.mapped += z->mapped;
    return 0;
}

static int check_pool(struct kmm_zspool *pool, size_t *owned_pages)
{
    struct kmm *mm = pool->mm;
    kmm_lock(mm, &pool->lock);
    for (uint32_t i = 0; i < pool->nr_classes; i++) {
        const struct zs_class *c = &pool->classes[i], *s = &pool->classes[c->merged_into];
        if (c->merged_into < i || s->merged_into != c->merged_into || s->pages != c->pages || s->objs != c->objs ||
            c->size != (i + 1) * pool->step || !c->objs || (size_t)c->objs * c->size > (size_t)c->pages * mm->page_size)
            return fail(pool, "zsmalloc: class table", i);
    }
    if (kmm__table_check(mm, &pool->handles, "zsmalloc: handle table") ||
        kmm__table_check(mm, &pool->zspages, "zsmalloc: zspage table")) {
        kmm_unlock(mm, &pool->lock);
        return -1;
    }
    if (pool->handles.used != pool->objects || pool->zspages.used != pool->zspages_held)
        return fail(pool, "zsmalloc: handle or zspage table count", pool->objects);
    /* per-class sums in the classes' check scratch: one pass over the zspages */
    for (uint32_t ci = 0; ci < pool->nr_classes; ci++)
        __builtin_memset(&pool->classes[ci].check, 0, sizeof(pool->classes[ci].check));
    for (uint32_t id = 0; id < table_capacity(&pool->zspages); id++) {
        if (!(*table_entry(&pool->zspages, id) & ZS_ENTRY_USED))
            continue;
        int rc = check_zspage(pool, id, zspage_of(pool, id));
        if (rc) {
            kmm_unlock(mm, &pool->lock);
            return rc;
        }
    }
    size_t total_pages = 0, total_objects = 0, total_bytes = 0, mapped = 0;
    for (uint32_t ci = 0; ci < pool->nr_classes; ci++) {
        struct zs_class *cls = &pool->classes[ci];
        if (cls->merged_into != ci)
            continue;
        size_t listed = 0;
        for (unsigned b = 0; b < ZS_BANDS; b++)
            for (struct zspage *z = cls->band[b]; z; z = z->next) {
                if (z->band != b || z->class_idx != ci || (z->next && z->next->prev != z) ||
                    (!z->prev && cls->band[b] != z) || ++listed > cls->zspages)
                    return fail(pool, "zsmalloc: fullness band list", ci);
            }
        if (cls->check.objects != cls->objects || cls->check.pages != cls->nr_pages ||
            cls->check.zspages != cls->zspages || listed + cls->check.full != cls->zspages)
            return fail(pool, "zsmalloc: class counters", ci);
        total_pages += cls->nr_pages;
        total_objects += cls->objects;
        total_bytes += cls->objects * cls->size;
        mapped += cls->check.mapped;
    }
    if (total_pages != pool->pages_used || total_objects != pool->objects || total_bytes != pool->obj_bytes ||
        pool->pages_used > pool->pages_max)
        return fail(pool, "zsmalloc: pool counters", total_objects);
    size_t held = 0;
    for (unsigned i = 0; i < KMM_ZS_MAP_SLOTS; i++) {
        const struct zs_map_slot *s = &pool->slots[i];
        if (!s->thread)
            continue;
        held++;
        const char *why = NULL;
        uint32_t id1 = (uint32_t)s->handle;
        if (id1 == 0 || id1 - 1 >= table_capacity(&pool->handles))
            why = "zsmalloc: map slot with a bad handle";
        else {
            uint64_t e = *table_entry(&pool->handles, id1 - 1);
            if (!(e & ZS_ENTRY_USED) || zspage_of(pool, entry_zspage(e)) != s->zspage || entry_obj(e) != s->obj)
                why = "zsmalloc: map slot does not match its handle";
        }
        if (why)
            return fail(pool, why, i);
    }
    if (held != mapped || held != pool->slots_used)
        return fail(pool, "zsmalloc: mapped counts", held);
    for (unsigned i = 0; i < pool->nr_stash; i++)
        if (pages_owner(mm, pool->stash[i]) != OWNER_ZSMALLOC || meta_order(meta_get(mm, pool->stash[i])) != 0)
            return fail(pool, "zsmalloc: a stashed page is no order-0 page owned by zsmalloc", pool->stash[i] << mm->page_shift);
    *owned_pages += pool->pages_used + pool->nr_stash + ((size_t)1 << ceil_log2(KMM_ZS_MAP_SLOTS));
    kmm_unlock(mm, &pool->lock);
    return 0;
}

int kmm__zs_check(struct kmm *mm)
{
    size_t owned = 0;
    int rc = 0;
    kmm_lock(mm, &mm->zs_lock);
    for (struct kmm_zspool *p = mm->zspools; p && !rc; p = p->next)
        rc = check_pool(p, &owned);
    kmm_unlock(mm, &mm->zs_lock);
    if (rc)
        return rc;
    /* every page zsmalloc owns belongs to a pool (pools being made or
     * destroyed meanwhile make this differ: kmm_check is for quiet moments) */
    size_t found = 0;
    for (uint64_t pfn = mm->base_pfn; pfn < mm->end_pfn;) {   /* block by block (the page check proved the heads) */
        kmm_meta_t m = meta_get(mm, pfn);
        uint64_t len = meta_kind(m) == META_TAIL ? 1 : (uint64_t)1 << meta_order(m);
        if (meta_kind(m) == META_OWNED && pages_owner(mm, pfn) == OWNER_ZSMALLOC)
            found += len;
        pfn += len;
    }
    if (found != owned)
        return kmm__check_fail(mm, "zsmalloc: pages owned by zsmalloc that no pool holds (or the reverse)", found);
    return 0;
}

void kmm__zs_fork_lock(struct kmm *mm, bool lock)
{
    if (lock) {
        mm->pf->lock(&mm->zs_lock);
        for (struct kmm_zspool *p = mm->zspools; p; p = p->next)
            mm->pf->lock(&p->lock);
    } else {
        for (struct kmm_zspool *p = mm->zspools; p; p = p->next)
            mm->pf->unlock(&p->lock);
        mm->pf->unlock(&mm->zs_lock);
    }
}

void kmm__zs_fork_child(struct kmm *mm)
{
    uintptr_t self = kmm__zs_thread();
    for (struct kmm_zspool *p = mm->zspools; p; p = p->next)
        for (unsigned i = 0; i < KMM_ZS_MAP_SLOTS; i++) {
            struct zs_map_slot *s = &p->slots[i];
            if (s->thread && s->thread != self) {
                /* its thread is not in the child: the mapping ends here */
                zs_slot_release(p, s);
            }
        }
    for (struct kmm_zspool *p = mm->zspools; p; p = p->next)
        if (p->nest_owner != self)
            p->nest_owner = 0;
}

void kmm__zs_destroy_all(struct kmm *mm)
{
    /* the pools' memory goes with the memory system's; their locks end here */
    for (struct kmm_zspool *p = mm->zspools; p; p = p->next)
        mm->pf->lock_fini(&p->lock);
    mm->zspools = NULL;
}
