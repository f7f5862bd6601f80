/* compact.c - moving objects out of sparse zspages into full ones.
 *
 * Per class: the source is the sparsest zspage nobody has mapped, the
 * destination the fullest other zspage with room in the pages it holds;
 * objects move one by one (the handle's entry follows, its generation
 * kept) until the source empties, and its pages are freed, or the
 * destination fills. An object only ever moves to a zspage at least as full
 * as its own, so the sum of squared fullness grows at every move and the
 * loop ends. The pool lock is dropped after each source, so allocations,
 * frees and maps go on meanwhile; a mapped zspage is never a source. */
#include "zs_internal.h"

/* Copies the object from (sz, sobj) to (dz, dobj), piece by page piece. */
static void zs_move_bytes(struct kmm_zspool *pool, const struct zs_class *cls, const struct zspage *sz, uint32_t sobj,
                          const struct zspage *dz, uint32_t dobj)
{
    struct kmm *mm = pool->mm;
    size_t P = mm->page_size, spos = (size_t)sobj * cls->size, dpos = (size_t)dobj * cls->size, left = cls->size;
    while (left) {
        size_t sin = spos & (P - 1), din = dpos & (P - 1);
        size_t n = P - sin < P - din ? P - sin : P - din;
        if (n > left)
            n = left;
        const char *s = (const char *)pfn_to_virt(mm, mm->base_pfn + sz->pages[spos >> mm->page_shift]) + sin;
        char *d = (char *)pfn_to_virt(mm, mm->base_pfn + dz->pages[dpos >> mm->page_shift]) + din;
        __builtin_memcpy(d, s, n);
        spos += n;
        dpos += n;
        left -= n;
    }
}

static struct zspage *pick_source(struct zs_class *cls)
{
    for (unsigned b = 0; b < ZS_BANDS; b++)
        for (struct zspage *z = cls->band[b]; z; z = z->next)
            if (!z->mapped)
                return z;
    return NULL;
}

static struct zspage *pick_destination(struct kmm_zspool *pool, struct zs_class *cls, const struct zspage *src)
{
    for (unsigned b = ZS_BANDS; b-- > src->band;)
        for (struct zspage *z = cls->band[b]; z; z = z->next)
            if (z != src && z->inuse >= src->inuse && kmm__zs_has_room(cls, z, pool->mm->page_size))
                return z;
    return NULL;
}

/* One source's worth of moves (under the lock). Returns the source when it
 * emptied (to be freed), sets *moved. */
static struct zspage *compact_step(struct kmm_zspool *pool, struct zs_class *cls, size_t *moved)
{
    *moved = 0;
    /* a zspage can be emptied only if the others have room for its objects */
    if (cls->zspages * (size_t)cls->objs - cls->objects < cls->objs)
        return NULL;
    struct zspage *src = pick_source(cls);
    if (!src)
        return NULL;
    for (uint32_t obj = 0; obj < src->fresh; obj++) {
        uint32_t hid = src->obj[obj];
        if (hid & ZS_OBJ_FREE)
            continue;
        struct zspage *dst = pick_destination(pool, cls, src);
        if (!dst)
            break;
        uint32_t dobj = kmm__zs_obj_take(pool, cls, dst, hid);
        zs_move_bytes(pool, cls, src, obj, dst, dobj);
        uint64_t *e = table_entry(&pool->handles, hid);
        *e = handle_entry(entry_gen(*e), dobj, dst->id);
        (*moved)++;
        if (kmm__zs_obj_release(pool, cls, src, obj)) {
            pool->pages_compacted += src->nr_pages;
            return src;
        }
    }
    return NULL;
}

/* Packs z's objects into its first inuse slots (the highest used object
 * into the lowest hole) and gives back the pages past them: its objects
 * become the next fresh ones again. This is what compaction leaves the
 * zspages it could not empty, so a class ends with less than a page of
 * holes instead of up to a zspage of them. Returns the pages freed. */
static unsigned zspage_trim(struct kmm_zspool *pool, struct zs_class *cls, struct zspage *z)
{
    struct kmm *mm = pool->mm;
    if (z->mapped || z->fresh == z->inuse)
        return 0;
    uint32_t hi = z->fresh;
    for (uint32_t lo = 0; lo < z->inuse; lo++) {
        if (!(z->obj[lo] & ZS_OBJ_FREE))
            continue;
        do
            hi--;
        while (z->obj[hi] & ZS_OBJ_FREE);
        uint32_t hid = z->obj[hi];
        z->obj[lo] = hid;   /* before the copy: the poisoning helpers go by position, not by list */
        kmm__zs_poison_obj(pool, cls, z, lo, false);
        zs_move_bytes(pool, cls, z, hi, z, lo);
        kmm__zs_poison_obj(pool, cls, z, hi, true);
        z->obj[hi] = ZS_OBJ_FREE;
        uint64_t *e = table_entry(&pool->handles, hid);
        *e = handle_entry(entry_gen(*e), lo, z->id);
    }
    for (uint32_t i = z->inuse; i < z->fresh; i++)
        z->obj[i] = ZS_OBJ_FRESH;
    z->fresh = z->inuse;
    z->free_head = ZS_OBJ_END;
    unsigned keep = zs_pages_for(mm, (size_t)z->fresh * cls->size), n = 0;
    for (; z->nr_pages > keep; n++)
        kmm__zs_page_free(pool, mm->base_pfn + z->pages[--z->nr_pages], "kmm_zs_compact");
    cls->nr_pages -= n;
    pool_count(&pool->pages_used, -(ptrdiff_t)n);
    pool->pages_compacted += n;
    return n;
}

/* zspage_trim on every zspage of cls with holes, one per lock hold, until
 * budget pages were freed. */
static size_t trim_class(struct kmm_zspool *pool, struct zs_class *cls, size_t budget)
{
    struct kmm *mm = pool->mm;
    size_t freed = 0;
    for (unsigned b = 0; b < ZS_BANDS && freed < budget; b++) {
        for (unsigned skip = 0; freed < budget; skip++) {
            kmm_lock(mm, &pool->lock);
            struct zspage *z = cls->band[b];
            for (unsigned i = 0; z && i < skip; i++)
                z = z->next;
            unsigned n = z ? zspage_trim(pool, cls, z) : 0;
            kmm_unlock(mm, &pool->lock);
            if (!z)
                break;
            freed += n;
        }
    }
    return freed;
}

/* Compacts class after class until budget pages were freed (SIZE_MAX: the
 * whole pool); returns the pages freed, which may pass budget by a zspage. */
static size_t compact_pool(struct kmm_zspool *pool, size_t budget)
{
    struct kmm *mm = pool->mm;
    size_t freed = 0;
    for (uint32_t i = 0; i < pool->nr_classes && freed < budget; i++) {
        struct zs_class *cls = &pool->classes[i];
        if (cls->merged_into != i)
            continue;
        while (freed < budget) {
            size_t moved;
            kmm_lock(mm, &pool->lock);
            struct zspage *emptied = compact_step(pool, cls, &moved);
            size_t pages = emptied ? emptied->nr_pages : 0;
            if (emptied)
                kmm__zs_zspage_free_pages(pool, emptied, "kmm_zs_compact");
            kmm_unlock(mm, &pool->lock);
            if (emptied) {
                kmm__meta_obj_free(mm, emptied, cls->desc_size);
                freed += pages;
            } else if (!moved) {
                break;
            }
        }
        if (freed < budget)
            freed += trim_class(pool, cls, budget - freed);
    }
    return freed;
}

/* The pages stashed for zspages to come; returns how many. */
static size_t stash_release(struct kmm_zspool *pool, const char *fn)
{
    kmm_lock(pool->mm, &pool->lock);
    size_t n = pool->nr_stash;
    kmm__zs_stash_free(pool, fn);
    kmm_unlock(pool->mm, &pool->lock);
    return n;
}

size_t kmm_zs_compact(struct kmm_zspool *pool)
{
    mm_live(pool->mm, "kmm_zs_compact");
    size_t freed = compact_pool(pool, SIZE_MAX);
    stash_release(pool, "kmm_zs_compact");   /* not counted: those pages held no objects */
    return freed;
}

/* ---- the pool's shrinker ---------------------------------------------------------
 * count: what a full compaction could give back, from the classes' sums:
 * the pages each class holds beyond what its objects fill, and the stash.
 * An estimate: an object never moves into a mapped zspage or a sparser one,
 * so compaction may fall short of it; and the objects' bytes round up to
 * pages per class, not per zspage, so it may also do a little better.
 * scan: the stash first (no copying), then compaction class by class,
 * stopping once nr_to_scan pages came back. */
size_t kmm__zs_shrink_count(void *arg)
{
    struct kmm_zspool *pool = arg;
    struct kmm *mm = pool->mm;
    kmm_lock(mm, &pool->lock);
    size_t spare = pool->nr_stash;
    for (uint32_t i = 0; i < pool->nr_classes; i++) {
        const struct zs_class *cls = &pool->classes[i];
        size_t need = zs_pages_for(mm, cls->objects * cls->size);
        if (cls->merged_into == i && cls->nr_pages > need)
            spare += cls->nr_pages - need;
    }
    kmm_unlock(mm, &pool->lock);
    return spare;
}

size_t kmm__zs_shrink_scan(void *arg, size_t nr_to_scan)
{
    struct kmm_zspool *pool = arg;
    size_t freed = stash_release(pool, "kmm_zs_compact");
    if (freed < nr_to_scan)
        freed += compact_pool(pool, nr_to_scan - freed);
    return freed;
}
