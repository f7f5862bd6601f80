/* kmm.c - creating and destroying a memory system; the registry of live ones.
 *
 * The registry (a list under a spin lock) exists for the per-thread caches:
 * a thread that exits, or evicts a cache, must know whether the memory
 * system behind it is still alive before touching it. Ids are never reused.
 *
 * A destroyed memory system leaves a tombstone where its struct was, so that
 * a call through a stale pointer is reported instead of running on freed
 * memory (see kmm_destroy).
 */
#include "internal.h"
#include "page/page_internal.h"
#include "slab/slab_internal.h"
#include "vm/vm_internal.h"
#include "zsmalloc/zs_internal.h"

static bool registry_spin;
static struct kmm *registry;
static uint64_t next_id = 1;
/* The last cache key handed out. One counter for every memory system: a
 * key names one memory system at one epoch, so a thread's slot of another
 * memory system never matches, and 64 bits never wrap (an epoch of a few
 * bits beside the id did: a thread idle for exactly 2^24 drains missed one). */
static uint64_t last_key;

uint64_t kmm__next_key(void)
{
    return __atomic_add_fetch(&last_key, 1, __ATOMIC_RELAXED);
}

/* The newest destroyed memory systems of the hosted platform, kept as
 * tombstones of one page (registry lock). The oldest is unmapped when a
 * new one comes: the cost is bounded (64 pages of address space and
 * memory, 64 mappings), and a stale pointer is recognised for the next 63
 * destructions. */
#define TOMBSTONES 64
static struct kmm *tombstones[TOMBSTONES];
static unsigned tombstone_next;
_Static_assert(offsetof(struct kmm, pf) + sizeof(void *) <= 4096,
               "what a tombstone is read for lies in the first page of struct kmm");

/* kmm_default's memory system and its state: 0 none, 1 being created, 2 ready. */
static struct kmm *default_mm;
static int default_state;
static struct kmm_config default_cfg;   /* kmm_default_set_config's, while default_state is 0 */
static bool default_cfg_set;

void kmm__registry_lock(void)
{
    while (__atomic_test_and_set(&registry_spin, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(&registry_spin, __ATOMIC_RELAXED))
            ;
}

void kmm__registry_unlock(void)
{
    __atomic_clear(&registry_spin, __ATOMIC_RELEASE);
}

bool kmm__is_live(uint64_t id)
{
    for (struct kmm *mm = registry; mm; mm = mm->registry_next)
        if (mm->id == id)
            return true;
    return false;
}

static bool config_ok(const struct kmm_config *cfg, size_t page_size, const uint64_t *limits, unsigned nr)
{
    if (page_size < ((size_t)1 << KMM_MIN_PAGE_SHIFT) || page_size > ((size_t)1 << KMM_MAX_PAGE_SHIFT) ||
        (page_size & (page_size - 1)))
        return false;
    if (nr == 0 || nr > KMM_MAX_AREAS)
        return false;
    for (unsigned i = 0; i < nr; i++) {
        if (limits[i] != UINT64_MAX && (limits[i] & (page_size - 1)))
            return false;
        if (i > 0 && limits[i] <= limits[i - 1])
            return false;
    }
    return cfg == NULL || ((cfg->mem_size & (page_size - 1)) == 0 && (cfg->slab_flags & ~KMM_SLAB_POISON) == 0 &&
                           (cfg->vmalloc_flags & ~(KMM_VMALLOC_STRICT | KMM_VMALLOC_SPREAD)) == 0);
}

static bool memory_ok(const struct kmm_memory *mem, size_t page_size)
{
    if (mem->nr_ranges == 0 || mem->nr_ranges > KMM_MAX_RANGES)
        return false;
    for (unsigned r = 0; r < mem->nr_ranges; r++) {
        const struct kmm_range *rg = &mem->ranges[r];
        if (rg->start >= rg->end || ((rg->start | rg->end) & (page_size - 1)))
            return false;
        if (r > 0 && rg->start < mem->ranges[r - 1].end)
            return false;
    }
    return true;
}

/* Joins ranges that touch, so a block may straddle where one range ended
 * and the next began: creation then builds the largest blocks there are. */
static void join_touching_ranges(struct kmm_memory *mem)
{
    unsigned n = 1;
    for (unsigned r = 1; r < mem->nr_ranges; r++) {
        if (mem->ranges[r].start == mem->ranges[n - 1].end)
            mem->ranges[n - 1].end = mem->ranges[r].end;
        else
            mem->ranges[n++] = mem->ranges[r];
    }
    mem->nr_ranges = n;
}

/* With an identity map, physical page 0 would be handed out as NULL, which
 * reads as failure: it stops being memory. Returns false if nothing is left. */
static bool skip_null_page(struct kmm_memory *mem, size_t page_size)
{
    if (mem->direct_map + (uintptr_t)mem->ranges[0].start != 0)
        return true;
    mem->ranges[0].start += page_size;
    if (mem->ranges[0].start < mem->ranges[0].end)
        return true;
    for (unsigned r = 1; r < mem->nr_ranges; r++)
        mem->ranges[r - 1] = mem->ranges[r];
    return --mem->nr_ranges > 0;
}

/* Marks [start, end) (frames, inside area a) as free blocks or ABSENT blocks,
 * the largest aligned blocks that fit. */
static void add_blocks(struct kmm *mm, unsigned a, uint64_t start, uint64_t end, bool present)
{
    struct kmm_area *ar = &mm->area[a];
    for (uint64_t p = start; p < end;) {
        unsigned o = p ? (unsigned)__builtin_ctzll(p) : KMM_MAX_ORDER;
        if (o > KMM_MAX_ORDER)
            o = KMM_MAX_ORDER;
        while (p + ((uint64_t)1 << o) > end)
            o--;
        if (present) {
            kmm__area_push_free(mm, ar, p, o);
            ar->total_pages += (size_t)1 << o;
        } else {
            meta_set(mm, p, meta_make(META_ABSENT, o));
        }
        p += (uint64_t)1 << o;
    }
}

/* Tiles area a with blocks: free where memory is, ABSENT elsewhere. */
static void fill_area(struct kmm *mm, unsigned a)
{
    struct kmm_area *ar = &mm->area[a];
    uint64_t p = ar->start_pfn;
    for (unsigned r = 0; r < mm->mem.nr_ranges && p < ar->end_pfn; r++) {
        uint64_t rs = mm->mem.ranges[r].start >> mm->page_shift, re = mm->mem.ranges[r].end >> mm->page_shift;
        if (re <= p)
            continue;
        if (rs > ar->end_pfn)
            rs = ar->end_pfn;
        if (re > ar->end_pfn)
            re = ar->end_pfn;
        if (rs > p)
            add_blocks(mm, a, p, rs, false);
        if (re > rs && re > p)
            add_blocks(mm, a, rs > p ? rs : p, re, true);
        p = re > p ? re : p;
    }
    if (p < ar->end_pfn)
        add_blocks(mm, a, p, ar->end_pfn, false);
}

static void build_preferences(struct kmm *mm)
{
    for (unsigned mask = 0; mask <= KMM_AREA_MASK; mask++) {
        unsigned accepted = mask ? mask : KMM_AREA_MASK, n = 0;
        for (int a = (int)mm->nr_areas - 1; a >= 0; a--)
            if ((accepted & (1u << a)) && mm->area[a].total_pages)
                mm->area_pref[mask][n++] = (uint8_t)a;
        for (; n <= KMM_MAX_AREAS; n++)
            mm->area_pref[mask][n] = NO_AREA;
    }
}

/* Takes the metadata (and struct kmm) from the top of the largest range,
 * which stops being memory. Returns the virtual address, or NULL. */
static void *carve_metadata(struct kmm_memory *mem, size_t len, size_t page_size)
{
    unsigned best = 0;
    for (unsigned r = 1; r < mem->nr_ranges; r++)
        if (mem->ranges[r].end - mem->ranges[r].start > mem->ranges[best].end - mem->ranges[best].start)
            best = r;
    struct kmm_range *rg = &mem->ranges[best];
    uint64_t bytes = (len + page_size - 1) & ~(uint64_t)(page_size - 1);
    if (rg->end - rg->start <= bytes)
        return NULL;
    rg->end -= bytes;
    return (void *)(mem->direct_map + (uintptr_t)rg->end);
}

/* Frees what meta_alloc gave (nothing when the metadata was carved); the
 * struct itself unless keep_struct. */
static void destroy_metadata(struct kmm *mm, bool keep_struct)
{
    const struct kmm_platform *pf = mm->pf;
    if (mm->meta_carved)
        return;
    if (mm->release_map)
        pf->meta_free(mm->ctx, mm->release_map, 2 * mm->release_map_words * sizeof(uint64_t));
    pf->meta_free(mm->ctx, mm->meta, 2 * mm->meta_len);
    if (!keep_struct)
        pf->meta_free(mm->ctx, mm, sizeof(*mm));
}

/* ---- fork ------------------------------------------------------------------
 *
 * The direct map is a shared mapping of the platform's memory while the
 * metadata is private: after a plain fork both processes would hand out the
 * same frames and rewrite each other's free lists. So around every fork the
 * prepare handler takes the registry lock and every lock of every live
 * memory system, in the lock order, and has the platform copy physical
 * memory (fork_prepare): the copy and the metadata the child inherits then
 * describe the same moment, as far as anything under a lock goes. The child
 * puts the copy under its mappings (fork_child), releases the locks and
 * gives back what per-thread caches held: those of threads that do not exist
 * in the child may have been cut anywhere in a lock-free path. The parent
 * drops the copy (fork_parent) and releases the locks. See docs/decisions.md,
 * "fork".
 */

static void fork_locks(struct kmm *mm, bool lock)
{
    void (*op)(struct kmm_lock *) = lock ? mm->pf->lock : mm->pf->unlock;
    if (lock) {
        /* leaves taken with no other lock held (internal.h): first */
        kmm__shrink_fork_lock(mm, true);
        kmm__secret_fork_lock(mm, true);
        kmm__execmem_fork_lock(mm, true);
        kmm__unmapped_fork_lock(mm, true);
        op(&mm->slab_lock);
        op(&mm->tcache_lock);
        kmm__slab_fork_locks(mm, true);
        kmm__zs_fork_lock(mm, true);   /* before the areas: a pool frees pages under its lock */
        for (unsigned a = 0; a < mm->nr_areas; a++)
            op(&mm->area[a].lock);
        kmm__vm_fork_lock(mm, true);
        for (unsigned i = 0; i < META_OBJ_CLASSES; i++)
            op(&mm->meta_obj[i].lock);
    } else {
        for (unsigned i = META_OBJ_CLASSES; i-- > 0;)
            op(&mm->meta_obj[i].lock);
        kmm__vm_fork_lock(mm, false);
        for (unsigned a = mm->nr_areas; a-- > 0;)
            op(&mm->area[a].lock);
        kmm__zs_fork_lock(mm, false);
        kmm__slab_fork_locks(mm, false);
        op(&mm->tcache_lock);
        op(&mm->slab_lock);
        kmm__unmapped_fork_lock(mm, false);
        kmm__execmem_fork_lock(mm, false);
        kmm__secret_fork_lock(mm, false);
        kmm__shrink_fork_lock(mm, false);
    }
}

static void fork_prepare(void)
{
    kmm__registry_lock();
    for (struct kmm *mm = registry; mm; mm = mm->registry_next) {
        fork_locks(mm, true);
        mm->fork_copied = mm->pf->fork_prepare && mm->pf->fork_prepare(mm->ctx) == 0;
    }
}

static void fork_parent(void)
{
    for (struct kmm *mm = registry; mm; mm = mm->registry_next) {
        if (mm->pf->fork_parent)
            mm->pf->fork_parent(mm->ctx);
        fork_locks(mm, false);
    }
    kmm__registry_unlock();
}

static void fork_child(void)
{
    for (struct kmm *mm = registry; mm; mm = mm->registry_next) {
        if (mm->pf->fork_child)
            mm->pf->fork_child(mm->ctx);
        fork_locks(mm, false);
        mm->retiring = 0;   /* the threads that were retiring caches are not in the child */
        if (mm->fork_copied) {
            kmm__vm_fork_child(mm);
            kmm__zs_fork_child(mm);
            kmm__unmapped_fork_child(mm);
            kmm__secret_fork_child(mm);
            kmm__execmem_fork_child(mm);
            kmm__shrink_fork_child(mm);
            kmm__slab_fork_child(mm);
            kmm__tcache_fork_child(mm);
            kmm__slab_fork_sweep(mm);
        } else if (mm->pf->fork_prepare) {
            struct kmm_msg m = { .len = 0 };
            kmm__msg_str(&m, "kmm: fork: physical memory could not be copied for the child; memory system ");
            kmm__msg_dec(&m, mm->id);
            kmm__msg_str(&m, " is not usable in the child");
            kmm__report(mm, &m);
        }
    }
    /* kmm_default being made by a thread that is not in the child: start over */
    if (__atomic_load_n(&default_state, __ATOMIC_RELAXED) == 1)
        __atomic_store_n(&default_state, 0, __ATOMIC_RELAXED);
    kmm__registry_unlock();
}

/* The handlers are registered once per process, with the first platform
 * that can (they serve the memory systems of every platform). */
static void fork_register(const struct kmm_platform *pf)
{
    static int registered;   /* 0 no, 1 being registered, 2 yes */
    int expected = 0;
    if (!pf->atfork || !__atomic_compare_exchange_n(&registered, &expected, 1, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return;
    __atomic_store_n(&registered, pf->atfork(fork_prepare, fork_parent, fork_child) == 0 ? 2 : 0, __ATOMIC_RELEASE);
}

#if KMM_HOSTED
#define DEFAULT_PLATFORM (&kmm_platform_hosted)
#else
#define DEFAULT_PLATFORM NULL
#endif

struct kmm *kmm_create(const struct kmm_config *cfg)
{
    static const uint64_t default_limits[] = KMM_DEFAULT_AREA_LIMITS;
    const struct kmm_platform *pf = cfg && cfg->platform ? cfg->platform : DEFAULT_PLATFORM;
    size_t page_size = cfg && cfg->page_size ? cfg->page_size : 4096;
    const uint64_t *limits = cfg && cfg->area_limits ? cfg->area_limits : default_limits;
    unsigned nr_areas = cfg && cfg->area_limits ? cfg->nr_areas : KMM_DEFAULT_NR_AREAS;

    if (!pf)
        return NULL;
    if (!config_ok(cfg, page_size, limits, nr_areas)) {
        if (pf->error)
            pf->error(KMM_EINVAL);
        return NULL;
    }
    struct kmm_config full = { .page_size = page_size, .mem_size = cfg ? cfg->mem_size : 0,
                               .area_limits = limits, .nr_areas = nr_areas, .platform = pf };
    struct kmm_memory mem;
    __builtin_memset(&mem, 0, sizeof(mem));
    void *ctx = NULL;
    int err = pf->open(pf, &full, &mem, &ctx);
    if (err) {
        if (pf->error)
            pf->error(-err);
        return NULL;
    }
    if (!memory_ok(&mem, page_size)) {
        pf->close(ctx);
        if (pf->error)
            pf->error(KMM_EINVAL);
        return NULL;
    }
    join_touching_ranges(&mem);
    if (!skip_null_page(&mem, page_size)) {
        pf->close(ctx);
        if (pf->error)
            pf->error(KMM_ENOMEM);
        return NULL;
    }
    unsigned shift = floor_log2(page_size);
    uint64_t base_pfn = mem.ranges[0].start >> shift, end_pfn = mem.ranges[mem.nr_ranges - 1].end >> shift;
    size_t meta_len = (size_t)(end_pfn - base_pfn) + 1;   /* + a 0 byte after the last page */
    struct kmm *mm;
    kmm_meta_t *meta;
    bool carved = pf->meta_alloc == NULL;
    if (carved) {
        /* zeroed by hand: caller-given memory holds anything */
        void *p = carve_metadata(&mem, sizeof(*mm) + 2 * meta_len, page_size);
        if (!p) {
            pf->close(ctx);
            if (pf->error)
                pf->error(KMM_ENOMEM);
            return NULL;
        }
        __builtin_memset(p, 0, sizeof(*mm) + 2 * meta_len);
        mm = p;
        meta = (kmm_meta_t *)(mm + 1);
    } else {
        mm = pf->meta_alloc(ctx, sizeof(*mm));
        meta = mm ? pf->meta_alloc(ctx, 2 * meta_len) : NULL;   /* meta[], then owner[] */
        if (!meta) {
            if (mm)
                pf->meta_free(ctx, mm, sizeof(*mm));
            pf->close(ctx);
            if (pf->error)
                pf->error(KMM_ENOMEM);
            return NULL;
        }
    }

    mm->pf = pf;
    mm->ctx = ctx;
    mm->mem = mem;
    mm->page_size = page_size;
    mm->page_shift = shift;
    mm->direct_map = mem.direct_map;
    mm->base_pfn = base_pfn;
    mm->end_pfn = end_pfn;
    mm->span_start = mem.direct_map + (uintptr_t)(base_pfn << shift);
    mm->span_bytes = (end_pfn - base_pfn) << shift;
    mm->meta = meta;
    mm->owner = meta + meta_len;
    mm->meta_len = meta_len;
    mm->meta_carved = carved;
    mm->nr_areas = nr_areas;
    if (cfg) {
        mm->vm_size = cfg->vmalloc_size;
        mm->vm_max_mappings = cfg->vmalloc_max_mappings;
        mm->vm_flags = cfg->vmalloc_flags;
        mm->slab_poison = (cfg->slab_flags & KMM_SLAB_POISON) != 0;
    }
    /* memory is released in chunks of 64 KiB (docs/decisions.md, "Releasing
     * memory"), once 16 MiB were freed since the last pass */
    mm->release_order = shift >= 16 ? 0 : 16 - shift;
    mm->release_budget = ((size_t)16 << 20) >> shift;
    mm->release_step = ((size_t)KMM_RELEASE_STEP_KIB << 10) >> shift;
    if (pf->release && !carved) {   /* the release map needs meta_alloc memory */
        mm->release_chunk0 = base_pfn >> mm->release_order;
        uint64_t chunks = ((end_pfn - 1) >> mm->release_order) - mm->release_chunk0 + 1;
        mm->release_map_words = (size_t)((chunks + 63) / 64);
        mm->release_map = pf->meta_alloc(ctx, 2 * mm->release_map_words * sizeof(uint64_t));
        mm->aged_map = mm->release_map ? mm->release_map + mm->release_map_words : NULL;
        if (!mm->release_map) {
            destroy_metadata(mm, false);
            pf->close(ctx);
            if (pf->error)
                pf->error(KMM_ENOMEM);
            return NULL;
        }
    }
    pf->lock_init(&mm->tcache_lock);
    pf->lock_init(&mm->slab_lock);
    pf->lock_init(&mm->zs_lock);
    pf->lock_init(&mm->unmapped_lock);
    pf->lock_init(&mm->secret_lock);
    pf->lock_init(&mm->execmem_lock);
    pf->lock_init(&mm->shrink_lock);
    kmm__meta_obj_init(mm);

    uint64_t lo = base_pfn;
    for (unsigned a = 0; a < nr_areas; a++) {
        uint64_t hi = (a == nr_areas - 1 || limits[a] == UINT64_MAX) ? end_pfn : limits[a] >> shift;
        if (hi > end_pfn)
            hi = end_pfn;
        if (hi < lo)
            hi = lo;
        kmm__area_init(mm, a);
        mm->area[a].start_pfn = lo;
        mm->area[a].end_pfn = hi;
        fill_area(mm, a);
        lo = hi;
    }
    build_preferences(mm);
    fork_register(pf);

    mm->live = KMM_LIVE;
    kmm__registry_lock();
    mm->id = next_id++;
    mm->cache_key = kmm__next_key();
    mm->registry_next = registry;
    registry = mm;
    kmm__registry_unlock();
    return mm;
}

/* Turns mm into a tombstone: every fast path misses (no thread's key is
 * UINT64_MAX: kmm__next_key counts up from 1 and never gets there; the
 * spans are empty; the slab limits 0),
 * every slow path finds live == KMM_DEAD and reports, and the O(1) lookups
 * find no memory. All these fields lie in the struct's first page. */
static void bury(struct kmm *mm)
{
    store_relaxed(&mm->cache_key, UINT64_MAX);
    store_relaxed(&mm->kmalloc_max, 0);
    store_relaxed(&mm->kmalloc_direct, 0);
    store_relaxed(&mm->slab_span_bytes, 0);
    mm->span_bytes = 0;
    mm->end_pfn = mm->base_pfn;
    __atomic_store_n(&mm->live, KMM_DEAD, __ATOMIC_RELEASE);
}

/* Keeps the first page of a destroyed struct as a tombstone, the rest
 * unmapped; returns the tombstone it displaces (to be unmapped), or NULL.
 * Hosted platform only: its meta_free is munmap, which takes any
 * page-aligned part of a mapping and needs no context (ctx is closed by
 * then); other platforms' meta_free promises neither. */
static struct kmm *entomb(struct kmm *mm)
{
    if (sizeof(*mm) > mm->page_size)
        mm->pf->meta_free(NULL, (char *)mm + mm->page_size, sizeof(*mm) - mm->page_size);
    kmm__registry_lock();
    struct kmm *old = tombstones[tombstone_next];
    tombstones[tombstone_next] = mm;
    tombstone_next = (tombstone_next + 1) % TOMBSTONES;
    kmm__registry_unlock();
    return old;
}

void kmm_destroy(struct kmm *mm)
{
    if (!mm)
        return;
    mm_live(mm, "kmm_destroy");
    kmm__registry_lock();
    for (struct kmm **pp = &registry; *pp; pp = &(*pp)->registry_next) {
        if (*pp == mm) {
            *pp = mm->registry_next;
            break;
        }
    }
    kmm__registry_unlock();
    /* threads that found mm alive before are still retiring their caches */
    for (;;) {
        kmm__registry_lock();
        unsigned retiring = mm->retiring;
        kmm__registry_unlock();
        if (!retiring)
            break;
    }

    const struct kmm_platform *pf = mm->pf;
    void *ctx = mm->ctx;
    kmm__shrink_destroy(mm);
    kmm__execmem_destroy(mm);   /* frees into the unmapped cache, and unmaps */
    kmm__secret_destroy(mm);
    kmm__unmapped_destroy(mm);
    kmm__zs_destroy_all(mm);
    kmm__vm_destroy(mm);
    kmm__tcache_destroy_all(mm);
    kmm__slab_destroy_all(mm);
    kmm__meta_obj_destroy(mm);
    for (unsigned a = 0; a < mm->nr_areas; a++)
        pf->lock_fini(&mm->area[a].lock);
    pf->lock_fini(&mm->tcache_lock);
    pf->lock_fini(&mm->slab_lock);
    pf->lock_fini(&mm->zs_lock);
    pf->lock_fini(&mm->unmapped_lock);
    pf->lock_fini(&mm->secret_lock);
    pf->lock_fini(&mm->execmem_lock);
    pf->lock_fini(&mm->shrink_lock);
    bury(mm);
    /* A carved struct stays a tombstone in the caller's memory until the
     * caller reuses it; a hosted one is kept (its first page) among the last
     * TOMBSTONES; on other platforms it is freed at once. */
#if KMM_HOSTED
    bool keep = pf == &kmm_platform_hosted && !mm->meta_carved;
#else
    bool keep = false;
#endif
    destroy_metadata(mm, keep);
    struct kmm *old = keep ? entomb(mm) : NULL;
    if (old)
        pf->meta_free(NULL, old, sizeof(*old) < old->page_size ? sizeof(*old) : old->page_size);
    pf->close(ctx);
}

struct kmm *kmm_default(void)
{
    struct kmm *mm = __atomic_load_n(&default_mm, __ATOMIC_ACQUIRE);
    if (KMM_LIKELY(mm != NULL))
        return mm;
    for (;;) {
        int state = 0;
        if (__atomic_compare_exchange_n(&default_state, &state, 1, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            mm = kmm_create(default_cfg_set ? &default_cfg : NULL);
            if (!mm) {
#if KMM_HOSTED
                kmm_platform_hosted.fatal(NULL, "kmm: kmm_default: cannot create the default memory system");
#endif
                __builtin_trap();
            }
            __atomic_store_n(&default_mm, mm, __ATOMIC_RELEASE);
            __atomic_store_n(&default_state, 2, __ATOMIC_RELEASE);
            return mm;
        }
        if (state == 2)
            return __atomic_load_n(&default_mm, __ATOMIC_ACQUIRE);
        /* 1: another thread makes it, or kmm_default_set_config writes the
         * configuration (then it goes back to 0 and this thread may make it) */
        while (__atomic_load_n(&default_state, __ATOMIC_ACQUIRE) == 1)
            ;
    }
}

int kmm_default_set_config(const struct kmm_config *cfg)
{
    if (cfg->platform || cfg->nr_areas > KMM_MAX_AREAS || (cfg->vmalloc_flags & ~(KMM_VMALLOC_STRICT | KMM_VMALLOC_SPREAD)))
        return -KMM_EINVAL;
    /* state 1 while the configuration is written: kmm_default waits for 2 */
    int expected = 0;
    if (!__atomic_compare_exchange_n(&default_state, &expected, 1, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return -KMM_EBUSY;
    default_cfg = *cfg;
    default_cfg_set = true;
    __atomic_store_n(&default_state, 0, __ATOMIC_RELEASE);
    return 0;
}

int kmm_check(struct kmm *mm)
{
    mm_live(mm, "kmm_check");
    int rc = kmm__meta_obj_check(mm);   /* first: the layers' checks read these objects */
    /* pages before slabs: the slab map check walks the heads the page check verified */
    if (!rc)
        rc = kmm__page_check(mm);
    if (!rc)
        rc = kmm__slab_check(mm);
    if (!rc)
        rc = kmm__vm_check(mm);
    if (!rc)
        rc = kmm__zs_check(mm);
    if (!rc)
        rc = kmm__unmapped_check(mm);
    if (!rc)
        rc = kmm__secret_check(mm);
    if (!rc)
        rc = kmm__execmem_check(mm);
    return rc ? rc : kmm__shrink_check(mm);
}

void kmm__reclaim(struct kmm *mm, unsigned flags)
{
    if (flags & KMM__NO_RECLAIM) {
        kmm__tcache_drain_current(mm);
        return;
    }
    /* lazily freed vmalloc areas first: their pages and nodes go through
     * this thread's caches, drained next */
    kmm_vmalloc_purge(mm);
    kmm__tcache_reclaim(mm);
    kmm__slab_drain(mm);   /* depots, and the empty slabs the magazines left */
}

void kmm_drain(struct kmm *mm)
{
    mm_live(mm, "kmm_drain");
    /* a new key: every thread's next call misses its fast path and drains;
     * the caches of threads idle in kmm are taken back now */
    kmm__reclaim(mm, 0);
    kmm__meta_obj_drain(mm);
    for (unsigned a = 0; a < mm->nr_areas; a++) {
        kmm_lock(mm, &mm->area[a].lock);
        kmm__area_release(mm, &mm->area[a], true);
        kmm_unlock(mm, &mm->area[a].lock);
    }
}
