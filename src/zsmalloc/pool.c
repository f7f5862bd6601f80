/* pool.c - zsmalloc pools: the class table, handles, allocation and free.
 *
 * Allocation under the pool lock is a handful of list operations. What it
 * may need from below (a page, a zspage descriptor, a chunk of either id
 * table) is allocated with the lock dropped and installed at the next try,
 * so the lock is a leaf and a failure changes nothing. */
#include "zs_internal.h"

uintptr_t kmm__zs_thread(void)
{
#if KMM_THREAD_CACHE
    return (uintptr_t)&kmm__tls_block;
#else
    return 1;   /* no TLS: every caller is one thread (docs/decisions.md) */
#endif
}

/* ---- the class table ------------------------------------------------------------- */

/* A descriptor: struct zspage, obj[objs], then pages[pages]. */
static size_t zs_desc_pages_offset(uint32_t objs)
{
    return sizeof(struct zspage) + (size_t)objs * sizeof(uint32_t);
}
static uint32_t zs_desc_size(uint32_t objs, uint32_t pages)
{
    return (uint32_t)(zs_desc_pages_offset(objs) + (size_t)pages * sizeof(uint32_t));
}

/* What a zspage of `pages` pages holding `objs` objects of `size` costs per
 * stored byte: its pages, its descriptor as held, and a handle entry per
 * object. Lower is better; compared by cross-multiplication. */
struct zs_layout {
    uint32_t pages, objs;
    uint64_t cost, stored;
};

static bool layout_better(const struct zs_layout *a, const struct zs_layout *b)
{
    /* a.cost / a.stored < b.cost / b.stored */
    return (unsigned __int128)a->cost * b->stored < (unsigned __int128)b->cost * a->stored;
}

static struct zs_layout layout_of(const struct kmm *mm, uint32_t size, uint32_t objs)
{
    uint32_t used_pages = zs_pages_for(mm, (size_t)objs * size);
    struct zs_layout l = { .pages = used_pages, .objs = objs };
    l.cost = (uint64_t)used_pages * mm->page_size + kmm__meta_obj_held(mm, zs_desc_size(objs, used_pages)) +
             (uint64_t)objs * sizeof(uint64_t);
    l.stored = (uint64_t)objs * size;
    return l;
}

/* Each class takes the zspage length (1 .. max_pages) whose pages and
 * metadata cost least per byte stored; a descriptor that would pass the
 * metadata allocator's largest small object may trade a few objects for
 * fitting in it. Then classes that end up with the same pages and objects
 * per zspage as the class above them are served by it (they would use the
 * same memory per object anyway). */
static void zs_build_classes(struct kmm_zspool *pool)
{
    struct kmm *mm = pool->mm;
    uint32_t P = (uint32_t)mm->page_size;
    uint32_t small_objs_max = (uint32_t)((META_OBJ_MAX - sizeof(struct zspage) - 8) / sizeof(uint32_t));
    for (uint32_t i = 0; i < pool->nr_classes; i++) {
        struct zs_class *c = &pool->classes[i];
        c->size = (i + 1) * pool->step;
        struct zs_layout best = { 0 };
        for (uint32_t k = 1; k <= pool->max_pages; k++) {
            uint64_t fit = (uint64_t)k * P / c->size;
            if (fit == 0)
                continue;
            uint32_t cand[2] = { (uint32_t)(fit < ZS_MAX_OBJS ? fit : ZS_MAX_OBJS), 0 };
            uint32_t pages_small = 0;
            if (cand[0] > small_objs_max) {
                cand[1] = small_objs_max;
                pages_small = 1;
            }
            for (unsigned j = 0; j <= pages_small; j++) {
                struct zs_layout l = layout_of(mm, c->size, cand[j]);
                if (!best.objs || layout_better(&l, &best))
                    best = l;
            }
        }
        c->pages = best.pages;
        c->objs = best.objs;
        c->desc_size = zs_desc_size(c->objs, c->pages);
    }
    uint32_t serving = pool->nr_classes - 1;
    pool->nr_serving = 1;
    pool->classes[serving].merged_into = serving;
    for (uint32_t i = pool->nr_classes - 1; i-- > 0;) {
        struct zs_class *c = &pool->classes[i], *up = &pool->classes[serving];
        if (c->pages == up->pages && c->objs == up->objs) {
            c->merged_into = serving;
        } else {
            c->merged_into = i;
            serving = i;
            pool->nr_serving++;
        }
    }
}

static inline struct zs_class *class_of_size(struct kmm_zspool *pool, size_t size)
{
    struct zs_class *c = &pool->classes[(size - 1) / pool->step];
    return &pool->classes[c->merged_into];
}

/* ---- messages --------------------------------------------------------------------- */

void kmm__zs_fatal(struct kmm_zspool *pool, const char *fn, const char *why, uint64_t handle)
{
    struct kmm_msg m = { .len = 0 };
    kmm__msg_str(&m, "kmm: ");
    kmm__msg_str(&m, fn);
    kmm__msg_str(&m, ": ");
    kmm__msg_str(&m, why);
    kmm__msg_str(&m, ": handle ");
    kmm__msg_hex(&m, handle);
    kmm__msg_str(&m, " (pool ");
    kmm__msg_str(&m, pool->name);
    kmm__msg_str(&m, ")");
    kmm__fatal(pool->mm, &m);
}

static const char *handle_problem(struct kmm_zspool *pool, uint64_t handle)
{
    if ((uint16_t)(handle >> 48) != pool->tag || (handle >> 47 & 1))
        return "not a handle of this pool";
    uint32_t id1 = (uint32_t)handle;
    if (id1 == 0 || id1 - 1 >= table_capacity(&pool->handles))
        return "unknown handle (never handed out by this pool)";
    uint64_t e = *table_entry(&pool->handles, id1 - 1);
    uint32_t gen = (uint32_t)(handle >> 32) & ZS_GEN_MASK;
    if (!(e & ZS_ENTRY_USED))
        return entry_gen(e) == ((gen + 1) & ZS_GEN_MASK) ? "stale handle (already freed)"
                                                          : "stale handle (freed, never reused since)";
    if (entry_gen(e) != gen)
        return "stale handle (freed, and its slot since reused)";
    return NULL;
}

uint64_t *kmm__zs_entry(struct kmm_zspool *pool, uint64_t handle, const char *fn)
{
    const char *why = handle_problem(pool, handle);
    if (KMM_UNLIKELY(why))
        kmm__zs_fatal(pool, fn, why, handle);
    return table_entry(&pool->handles, (uint32_t)handle - 1);
}

bool kmm__zs_handle_ok(struct kmm_zspool *pool, uint64_t handle)
{
    kmm_lock(pool->mm, &pool->lock);
    bool ok = handle_problem(pool, handle) == NULL;
    kmm_unlock(pool->mm, &pool->lock);
    return ok;
}

/* ---- zspages ---------------------------------------------------------------------- */

static inline size_t obj_end(const struct zs_class *cls, uint32_t obj)
{
    return (size_t)(obj + 1) * cls->size;
}

bool kmm__zs_has_room(const struct zs_class *cls, const struct zspage *z, size_t page_size)
{
    if (z->free_head != ZS_OBJ_END)
        return true;
    return z->fresh < cls->objs && obj_end(cls, z->fresh) <= z->nr_pages * page_size;
}

void kmm__zs_rebind(struct kmm_zspool *pool, struct zs_class *cls, struct zspage *z)
{
    (void)pool;
    uint8_t band = z->inuse == cls->objs ? ZS_BANDS : (uint8_t)((uint64_t)z->inuse * ZS_BANDS / cls->objs);
    if (band == z->band)
        return;
    if (z->band < ZS_BANDS) {
        if (z->prev)
            z->prev->next = z->next;
        else
            cls->band[z->band] = z->next;
        if (z->next)
            z->next->prev = z->prev;
    }
    z->band = band;
    z->prev = z->next = NULL;
    if (band < ZS_BANDS) {
        z->next = cls->band[band];
        if (z->next)
            z->next->prev = z;
        cls->band[band] = z;
    }
}

void kmm__zs_poison_obj(struct kmm_zspool *pool, const struct zs_class *cls, const struct zspage *z, uint32_t obj, bool poison)
{
#if KMM_ASAN || KMM_VALGRIND
    struct kmm *mm = pool->mm;
    size_t off = (size_t)obj * cls->size, left = cls->size;
    while (left) {
        size_t in = off & (mm->page_size - 1), n = mm->page_size - in;
        if (n > left)
            n = left;
        char *p = (char *)pfn_to_virt(mm, mm->base_pfn + z->pages[off >> mm->page_shift]) + in;
        if (poison)
            mem_poison(p, n);
        else
            mem_unpoison(p, n);
        off += n;
        left -= n;
    }
#else
    (void)pool, (void)cls, (void)z, (void)obj, (void)poison;
#endif
}

uint32_t kmm__zs_obj_take(struct kmm_zspool *pool, struct zs_class *cls, struct zspage *z, uint32_t hid)
{
    uint32_t obj = z->free_head;
    if (obj != ZS_OBJ_END)
        z->free_head = z->obj[obj] & ~ZS_OBJ_FREE;
    else
        obj = z->fresh++;
    z->obj[obj] = hid;
    z->inuse++;
    cls->objects++;
    pool->objects++;
    pool->obj_bytes += cls->size;
    kmm__zs_poison_obj(pool, cls, z, obj, false);
    kmm__zs_rebind(pool, cls, z);
    return obj;
}

bool kmm__zs_obj_release(struct kmm_zspool *pool, struct zs_class *cls, struct zspage *z, uint32_t obj)
{
    kmm__zs_poison_obj(pool, cls, z, obj, true);
    z->obj[obj] = ZS_OBJ_FREE | z->free_head;
    z->free_head = obj;
    z->inuse--;
    cls->objects--;
    pool->objects--;
    pool->obj_bytes -= cls->size;
    if (z->inuse) {
        kmm__zs_rebind(pool, cls, z);
        return false;
    }
    /* empty: off the lists and the zspage table; pages go after the lock */
    z->inuse = cls->objs;   /* full: rebind takes it off its band */
    kmm__zs_rebind(pool, cls, z);
    z->inuse = 0;
    kmm__table_put(&pool->zspages, z->id);
    cls->zspages--;
    cls->nr_pages -= z->nr_pages;
    pool_count(&pool->pages_used, -(ptrdiff_t)z->nr_pages);
    pool->zspages_held--;
    pool_count(&pool->meta_bytes, -(ptrdiff_t)kmm__meta_obj_held(pool->mm, cls->desc_size));
    return true;
}

void kmm__zs_page_free(struct kmm_zspool *pool, uint64_t pfn, const char *fn)
{
    struct kmm *mm = pool->mm;
    void *p = pfn_to_virt(mm, pfn);
    mem_unpoison(p, mm->page_size);
    kmm__free_pages_as(mm, OWNER_ZSMALLOC, fn, p, false);
}

void kmm__zs_zspage_free_pages(struct kmm_zspool *pool, struct zspage *z, const char *fn)
{
    for (unsigned i = 0; i < z->nr_pages; i++)
        kmm__zs_page_free(pool, pool->mm->base_pfn + z->pages[i], fn);
    z->nr_pages = 0;
}

void kmm__zs_stash_free(struct kmm_zspool *pool, const char *fn)
{
    for (unsigned i = 0; i < pool->nr_stash; i++)
        kmm__zs_page_free(pool, pool->stash[i], fn);
    store_relaxed(&pool->nr_stash, 0);
}

/* Gives z the pool's spare page (under the lock). */
static void zspage_add_page(struct kmm_zspool *pool, struct zs_class *cls, struct zspage *z)
{
    struct kmm *mm = pool->mm;
    uint64_t pfn = pool->stash[pool->nr_stash - 1];
    store_relaxed(&pool->nr_stash, pool->nr_stash - 1);
    z->pages[z->nr_pages++] = (uint32_t)(pfn - mm->base_pfn);
    mem_poison(pfn_to_virt(mm, pfn), mm->page_size);
    cls->nr_pages++;
    pool_count(&pool->pages_used, 1);
    if (pool->pages_used > pool->pages_max)
        pool->pages_max = pool->pages_used;
}

/* ---- create, destroy -------------------------------------------------------------- */

static void pool_free_memory(struct kmm_zspool *pool)
{
    struct kmm *mm = pool->mm;
    if (pool->map_pages)
        kmm__free_pages_as(mm, OWNER_ZSMALLOC, "kmm_zs_destroy", pool->map_pages, true);
    if (pool->classes)
        kmm__meta_obj_free(mm, pool->classes, pool->nr_classes * sizeof(struct zs_class));
    mm->pf->lock_fini(&pool->lock);
    kmm__meta_obj_free(mm, pool, sizeof(*pool));
}

struct kmm_zspool *kmm_zs_create_config(struct kmm *mm, const char *name, const struct kmm_zs_config *cfg)
{
    mm_live(mm, "kmm_zs_create");
    unsigned step = cfg && cfg->class_step ? cfg->class_step : ZS_DEFAULT_STEP;
    unsigned max_pages = cfg && cfg->max_pages ? cfg->max_pages : ZS_DEFAULT_MAX_PAGES;
    if (step < ZS_MIN_STEP || step > ZS_MAX_STEP || (step & (step - 1)) || step > mm->page_size) {
        kmm__refuse(mm, KMM_EINVAL, "kmm_zs_create", "class_step must be a power of two from 8 to 256");
        return NULL;
    }
    if (max_pages > ZS_MAX_PAGES) {
        kmm__refuse(mm, KMM_EINVAL, "kmm_zs_create", "max_pages must be 1 to 64");
        return NULL;
    }
    struct kmm_zspool *pool = kmm__meta_obj_alloc(mm, sizeof(*pool));
    if (!pool) {
        kmm__refuse(mm, KMM_ENOMEM, "kmm_zs_create", NULL);
        return NULL;
    }
    pool->mm = mm;
    mm->pf->lock_init(&pool->lock);
    for (unsigned i = 0; name && name[i] && i < sizeof(pool->name) - 1; i++)
        pool->name[i] = name[i];
    pool->step = step;
    pool->max_pages = max_pages;
    pool->nr_classes = (uint32_t)(mm->page_size / step);
    pool->handles.free_head = pool->handles.free_tail = ZS_NO_ID;
    pool->zspages.free_head = pool->zspages.free_tail = ZS_NO_ID;
    /* a mix of the process-wide key and the pool's address (splitmix64's
     * finaliser), so pools made at any distance apart collide only by
     * chance: a foreign handle is caught but with probability 2^-16 */
    uint64_t key = kmm__next_key() ^ (uint64_t)(uintptr_t)pool;
    key = (key ^ (key >> 30)) * 0xbf58476d1ce4e5b9ull;
    key = (key ^ (key >> 27)) * 0x94d049bb133111ebull;
    key ^= key >> 31;
    pool->tag = (uint16_t)(key >> 48) ? (uint16_t)(key >> 48) : 1;
    pool->classes = kmm__meta_obj_alloc(mm, pool->nr_classes * sizeof(struct zs_class));
    unsigned map_order = ceil_log2(KMM_ZS_MAP_SLOTS);
    if (pool->classes && !kmm__fault(mm, KMM_FAULT_PAGES))
        pool->map_pages = kmm_alloc_pages(mm, map_order, 0);
    if (!pool->classes || !pool->map_pages) {
        pool_free_memory(pool);
        kmm__refuse(mm, KMM_ENOMEM, "kmm_zs_create", NULL);
        return NULL;
    }
    kmm__pages_own(mm, pool->map_pages, OWNER_ZSMALLOC);
    for (unsigned i = 0; i < KMM_ZS_MAP_SLOTS; i++)
        pool->slots[i].buf = (unsigned char *)pool->map_pages + i * mm->page_size;
    zs_build_classes(pool);
    pool->meta_bytes = kmm__meta_obj_held(mm, sizeof(*pool)) +
                       kmm__meta_obj_held(mm, pool->nr_classes * sizeof(struct zs_class)) +
                       ((size_t)1 << map_order) * mm->page_size;
    /* compaction is what the pool can give back under memory pressure */
    size_t at = 0;
    for (const char *c = "zsmalloc "; *c; c++)
        pool->shrinker_name[at++] = *c;
    for (const char *c = pool->name; *c; c++)
        pool->shrinker_name[at++] = *c;
    pool->shrinker = (struct kmm_shrinker){ .count = kmm__zs_shrink_count, .scan = kmm__zs_shrink_scan,
                                            .arg = pool, .name = pool->shrinker_name };
    if (kmm_register_shrinker(mm, &pool->shrinker) != 0) {
        pool_free_memory(pool);
        kmm__refuse(mm, KMM_ENOMEM, "kmm_zs_create", NULL);
        return NULL;
    }
    kmm_lock(mm, &mm->zs_lock);
    pool->next = mm->zspools;
    mm->zspools = pool;
    kmm_unlock(mm, &mm->zs_lock);
    return pool;
}

struct kmm_zspool *kmm_zs_create(struct kmm *mm, const char *name)
{
    return kmm_zs_create_config(mm, name, NULL);
}

void kmm_zs_destroy(struct kmm_zspool *pool)
{
    if (!pool)
        return;
    struct kmm *mm = pool->mm;
    mm_live(mm, "kmm_zs_destroy");
    kmm_unregister_shrinker(mm, &pool->shrinker);   /* waits for a compaction it runs on another thread */
    kmm_lock(mm, &mm->zs_lock);
    struct kmm_zspool **pp = &mm->zspools;
    while (*pp && *pp != pool)
        pp = &(*pp)->next;
    if (*pp)
        *pp = pool->next;
    kmm_unlock(mm, &mm->zs_lock);
    for (unsigned i = 0; i < KMM_ZS_MAP_SLOTS; i++)
        if (pool->slots[i].thread)
            kmm__zs_fatal(pool, "kmm_zs_destroy", "destroying a pool with a mapped object", pool->slots[i].handle);
    /* no other thread may use the pool now: no lock needed */
    for (uint32_t id = 0; id < table_capacity(&pool->zspages); id++) {
        uint64_t e = *table_entry(&pool->zspages, id);
        if (e & ZS_ENTRY_USED) {
            struct zspage *z = zspage_of(pool, id);
            kmm__zs_zspage_free_pages(pool, z, "kmm_zs_destroy");
            kmm__meta_obj_free(mm, z, pool->classes[z->class_idx].desc_size);
        }
    }
    for (uint32_t i = 0; i < pool->nr_classes; i++)
        if (pool->classes[i].spare)
            kmm__meta_obj_free(mm, pool->classes[i].spare, pool->classes[i].desc_size);
    kmm__zs_stash_free(pool, "kmm_zs_destroy");
    kmm__table_destroy(mm, &pool->handles);
    kmm__table_destroy(mm, &pool->zspages);
    pool_free_memory(pool);
}

/* ---- malloc, free ----------------------------------------------------------------- */

enum { NEED_HANDLE = 1, NEED_ZSPAGE_ID = 2, NEED_DESC = 4, NEED_PAGE = 8 };

/* What an allocation gathered with the lock dropped. */
struct zs_supplies {
    struct zs_table_growth handles, zspages;
    struct zspage *desc;
    void *pages[ZS_PAGE_BATCH];
    unsigned nr_pages;
};

static void supplies_install(struct kmm_zspool *pool, struct zs_class *cls, struct zs_supplies *s)
{
    struct kmm *mm = pool->mm;
    if (s->handles.chunk) {
        size_t before = kmm__table_bytes(&pool->handles);
        kmm__table_grow(&pool->handles, &s->handles);
        pool_count(&pool->meta_bytes, (ptrdiff_t)(kmm__table_bytes(&pool->handles) - before));
    }
    if (s->zspages.chunk) {
        size_t before = kmm__table_bytes(&pool->zspages);
        kmm__table_grow(&pool->zspages, &s->zspages);
        pool_count(&pool->meta_bytes, (ptrdiff_t)(kmm__table_bytes(&pool->zspages) - before));
    }
    if (s->desc && !cls->spare) {
        cls->spare = s->desc;
        s->desc = NULL;
        pool_count(&pool->meta_bytes, (ptrdiff_t)kmm__meta_obj_held(mm, cls->desc_size));
    }
    while (s->nr_pages && pool->nr_stash < ZS_PAGE_BATCH) {
        void *p = s->pages[--s->nr_pages];
        kmm__pages_own(mm, p, OWNER_ZSMALLOC);
        pool->stash[pool->nr_stash] = virt_to_pfn(mm, p);
        store_relaxed(&pool->nr_stash, pool->nr_stash + 1);
    }
}

static void supplies_free(struct kmm_zspool *pool, struct zs_class *cls, struct zs_supplies *s)
{
    struct kmm *mm = pool->mm;
    kmm__table_growth_free(mm, &s->handles);
    kmm__table_growth_free(mm, &s->zspages);
    if (s->desc)
        kmm__meta_obj_free(mm, s->desc, cls->desc_size);
    while (s->nr_pages)
        kmm_free_pages(mm, s->pages[--s->nr_pages]);
    s->desc = NULL;
}

/* One populate call per run of adjacent pages (the page allocator hands
 * out neighbours, in either order). */
static void populate_batch(struct kmm *mm, void *const *pages, unsigned n)
{
    if (!mm->pf->populate)
        return;
    uintptr_t lo = (uintptr_t)pages[0], hi = lo + mm->page_size;
    for (unsigned i = 1; i <= n; i++) {
        uintptr_t p = i < n ? (uintptr_t)pages[i] : 0;
        if (p && p == hi) {
            hi += mm->page_size;
        } else if (p && p + mm->page_size == lo) {
            lo = p;
        } else {
            mm->pf->populate(mm->ctx, kmm_virt_to_phys(mm, (void *)lo), hi - lo);
            lo = p;
            hi = p + mm->page_size;
        }
    }
}

static bool supplies_get(struct kmm_zspool *pool, struct zs_class *cls, unsigned need, unsigned flags, struct zs_supplies *s)
{
    struct kmm *mm = pool->mm;
    if ((need & NEED_HANDLE) && !kmm__table_growth_alloc(mm, &pool->handles, &s->handles))
        return false;
    if ((need & NEED_ZSPAGE_ID) && !kmm__table_growth_alloc(mm, &pool->zspages, &s->zspages))
        return false;
    if ((need & NEED_DESC) && !(s->desc = kmm__meta_obj_alloc(mm, cls->desc_size)))
        return false;
    if (need & NEED_PAGE) {
        size_t batch = load_relaxed(&pool->pages_used) / 16;
        batch = batch < 1 ? 1 : batch > ZS_PAGE_BATCH ? ZS_PAGE_BATCH : batch;
        while (s->nr_pages < batch) {
            void *p = kmm__fault(mm, KMM_FAULT_PAGES) ? NULL : kmm_alloc_pages(mm, 0, flags & KMM_AREA_MASK);
            if (!p)
                break;
            s->pages[s->nr_pages++] = p;
        }
        if (!s->nr_pages)
            return false;
        populate_batch(mm, s->pages, s->nr_pages);
    }
    return true;
}

/* Under the lock: the object, or what is missing for it. */
static unsigned try_alloc(struct kmm_zspool *pool, struct zs_class *cls, uint64_t *handle)
{
    struct kmm *mm = pool->mm;
    unsigned need = 0;
    if (pool->handles.free_head == ZS_NO_ID)
        need |= NEED_HANDLE;
    struct zspage *z = NULL;
    for (unsigned b = ZS_BANDS; b-- > 0 && !z;)
        z = cls->band[b];
    if (z) {
        if (!kmm__zs_has_room(cls, z, mm->page_size) && !pool->nr_stash)
            need |= NEED_PAGE;
    } else {
        if (pool->zspages.free_head == ZS_NO_ID)
            need |= NEED_ZSPAGE_ID;
        if (!cls->spare)
            need |= NEED_DESC;
        if (!pool->nr_stash)
            need |= NEED_PAGE;
    }
    if (need)
        return need;
    if (!z) {
        z = cls->spare;
        cls->spare = NULL;
        __builtin_memset(z, 0, cls->desc_size);
        z->pages = (uint32_t *)((char *)z + zs_desc_pages_offset(cls->objs));
        z->id = kmm__table_get(&pool->zspages);
        *table_entry(&pool->zspages, z->id) = ZS_ENTRY_USED | (uint64_t)(uintptr_t)z;
        z->class_idx = (uint32_t)(cls - pool->classes);
        z->band = ZS_BANDS;
        z->free_head = ZS_OBJ_END;
        for (uint32_t i = 0; i < cls->objs; i++)
            z->obj[i] = ZS_OBJ_FRESH;
        cls->zspages++;
        pool->zspages_held++;
        zspage_add_page(pool, cls, z);
    } else if (!kmm__zs_has_room(cls, z, mm->page_size)) {
        zspage_add_page(pool, cls, z);
    }
    uint32_t hid = kmm__table_get(&pool->handles);
    uint32_t obj = kmm__zs_obj_take(pool, cls, z, hid);
    uint64_t *e = table_entry(&pool->handles, hid);
    uint32_t gen = entry_gen(*e);
    *e = handle_entry(gen, obj, z->id);
    *handle = (uint64_t)pool->tag << 48 | (uint64_t)gen << 32 | (hid + 1);
    return 0;
}

uint64_t kmm_zs_malloc(struct kmm_zspool *pool, size_t size, unsigned flags)
{
    struct kmm *mm = pool->mm;
    mm_live(mm, "kmm_zs_malloc");
    if (!flags_ok(mm, flags, 0, "kmm_zs_malloc"))
        return 0;
    if (size == 0 || size > mm->page_size) {
        kmm__refuse(mm, KMM_EINVAL, "kmm_zs_malloc", "size must be 1 byte to a page");
        return 0;
    }
    struct zs_class *cls = class_of_size(pool, size);
    struct zs_supplies s = { .desc = NULL, .nr_pages = 0 };
    uint64_t handle = 0;
    for (;;) {
        kmm_lock(mm, &pool->lock);
        supplies_install(pool, cls, &s);
        unsigned need = try_alloc(pool, cls, &handle);
        uint32_t obj = 0;
        struct zspage *z = NULL;
        if (!need && (flags & KMM_ZERO)) {
            uint64_t e = *table_entry(&pool->handles, (uint32_t)handle - 1);
            z = zspage_of(pool, entry_zspage(e));
            obj = entry_obj(e);
            kmm__zs_copy(pool, cls, z, obj, 0, NULL, cls->size, true);
        }
        kmm_unlock(mm, &pool->lock);
        supplies_free(pool, cls, &s);
        if (!need)
            return handle;
        if (!supplies_get(pool, cls, need, flags, &s)) {
            supplies_free(pool, cls, &s);
            kmm__refuse(mm, KMM_ENOMEM, "kmm_zs_malloc", NULL);
            return 0;
        }
    }
}

/* The object just freed was z's last handed out (on top of its free list):
 * it becomes fresh again, and the page only it reached goes back. So a
 * write that is refused after its allocation, or an object freed right
 * after it was made, leaves the pool as it was. */
static void zspage_ungrow(struct kmm_zspool *pool, struct zs_class *cls, struct zspage *z, uint32_t obj)
{
    struct kmm *mm = pool->mm;
    if (obj != z->fresh - 1 || z->free_head != obj)
        return;
    z->free_head = z->obj[obj] & ~ZS_OBJ_FREE;
    z->obj[obj] = ZS_OBJ_FRESH;
    z->fresh--;
    unsigned keep = zs_pages_for(mm, (size_t)z->fresh * cls->size);
    if (z->nr_pages <= keep)
        return;
    z->nr_pages--;
    cls->nr_pages--;
    pool_count(&pool->pages_used, -1);
    kmm__zs_page_free(pool, mm->base_pfn + z->pages[z->nr_pages], "kmm_zs_free");
}

/* Does the calling thread, or anyone, hold handle mapped? */
static bool handle_mapped(const struct kmm_zspool *pool, uint64_t handle)
{
    for (unsigned i = 0; i < KMM_ZS_MAP_SLOTS; i++)
        if (pool->slots[i].thread && pool->slots[i].handle == handle)
            return true;
    return false;
}

void kmm_zs_free(struct kmm_zspool *pool, uint64_t handle)
{
    if (!handle)
        return;
    struct kmm *mm = pool->mm;
    mm_live(mm, "kmm_zs_free");
    kmm_lock(mm, &pool->lock);
    uint64_t *e = kmm__zs_entry(pool, handle, "kmm_zs_free");
    struct zspage *z = zspage_of(pool, entry_zspage(*e));
    uint32_t obj = entry_obj(*e);
    if (KMM_UNLIKELY(z->mapped && handle_mapped(pool, handle)))
        kmm__zs_fatal(pool, "kmm_zs_free", "free of a mapped object (kmm_zs_unmap it first)", handle);
    struct zs_class *cls = &pool->classes[z->class_idx];
    uint32_t hid = (uint32_t)handle - 1;
    *e = (uint64_t)((entry_gen(*e) + 1) & ZS_GEN_MASK) << 48;   /* stale from now on */
    kmm__table_put(&pool->handles, hid);
    bool emptied = kmm__zs_obj_release(pool, cls, z, obj);
    /* pages go back under the lock (a fork in between would leave the
     * child pages owned by zsmalloc that no pool holds); the descriptor
     * after it (metadata frees may call the platform) */
    if (emptied)
        kmm__zs_zspage_free_pages(pool, z, "kmm_zs_free");
    else
        zspage_ungrow(pool, cls, z, obj);
    if (!pool->zspages_held)
        kmm__zs_stash_free(pool, "kmm_zs_free");   /* a pool with no object holds no page */
    kmm_unlock(mm, &pool->lock);
    if (emptied)
        kmm__meta_obj_free(mm, z, cls->desc_size);
}

size_t kmm_zs_usable_size(struct kmm_zspool *pool, uint64_t handle)
{
    struct kmm *mm = pool->mm;
    mm_live(mm, "kmm_zs_usable_size");
    kmm_lock(mm, &pool->lock);
    uint64_t *e = kmm__zs_entry(pool, handle, "kmm_zs_usable_size");
    size_t size = pool->classes[zspage_of(pool, entry_zspage(*e))->class_idx].size;
    kmm_unlock(mm, &pool->lock);
    return size;
}

size_t kmm__zs_mem_used(struct kmm_zspool *pool)
{
    size_t pages = load_relaxed(&pool->pages_used) + load_relaxed(&pool->nr_stash);
    return pages * pool->mm->page_size + load_relaxed(&pool->meta_bytes);
}

const char *kmm_zs_name(struct kmm_zspool *pool)
{
    return pool->name;
}

/* ---- stats ------------------------------------------------------------------------ */

void kmm_zs_stats(struct kmm_zspool *pool, struct kmm_zs_stats *st)
{
    struct kmm *mm = pool->mm;
    mm_live(mm, "kmm_zs_stats");
    __builtin_memset(st, 0, sizeof(*st));
    kmm_lock(mm, &pool->lock);
    st->objects = pool->objects;
    st->obj_bytes = pool->obj_bytes;
    st->pages_used = pool->pages_used;
    st->pages_stashed = pool->nr_stash;
    st->pages_compacted = pool->pages_compacted;
    st->pages_max = pool->pages_max > st->pages_used ? pool->pages_max : st->pages_used;
    st->zspages = pool->zspages_held;
    st->meta_bytes = pool->meta_bytes;
    st->nr_classes = pool->nr_serving;
    st->page_size = mm->page_size;
    kmm_unlock(mm, &pool->lock);
}

size_t kmm_zs_class_stats(struct kmm_zspool *pool, struct kmm_zs_class_stats *out, size_t max)
{
    struct kmm *mm = pool->mm;
    mm_live(mm, "kmm_zs_class_stats");
    size_t n = 0;
    kmm_lock(mm, &pool->lock);
    for (uint32_t i = 0; i < pool->nr_classes; i++) {
        struct zs_class *c = &pool->classes[i];
        if (c->merged_into != i)
            continue;
        if (n < max) {
            struct kmm_zs_class_stats *o = &out[n];
            o->size = c->size;
            o->objects = c->objects;
            o->zspages = c->zspages;
            o->pages = c->nr_pages;
            o->pages_per_zspage = c->pages;
            o->objs_per_zspage = c->objs;
            o->free_objects = c->zspages * c->objs - c->objects;
        }
        n++;
    }
    kmm_unlock(mm, &pool->lock);
    return n;
}

void kmm_zs_for_each(struct kmm *mm, void (*fn)(struct kmm_zspool *pool, void *arg), void *arg)
{
    mm_live(mm, "kmm_zs_for_each");
    kmm_lock(mm, &mm->zs_lock);
    for (struct kmm_zspool *p = mm->zspools; p; p = p->next)
        fn(p, arg);
    kmm_unlock(mm, &mm->zs_lock);
}
