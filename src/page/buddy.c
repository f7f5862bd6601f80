/* buddy.c - the buddy allocator: free lists per area and order, split and
 * merge, and the page allocation API built on them.
 *
 * Split (kmm__area_take, order 3 block asked, order 5 found):
 *
 *   [               order 5                ]
 *   [     order 4      ][ order 4 -> free  ]
 *   [ o3 ][ o3 -> free ]
 *   ^ returned
 *
 * Merge (kmm__area_free_block): while the buddy (pfn ^ 2^order) is a free block
 * of the same order in the same area, unlink it and take the pair as one
 * block of order + 1. Each step writes two metadata bytes.
 *
 * Releasing memory: physical memory is divided into chunks of
 * 2^release_order pages (64 KiB). A free marks its chunks in the release
 * map; once an area has freed release_budget pages (16 MiB) since its last
 * pass, and, with the platform's clock, KMM_RELEASE_DECAY_MS passed since
 * it (else the pass is due, release_deferred, and the area's next
 * allocation or free looks again), the pass gives back to the platform
 * (hole punch when hosted) every chunk that lay wholly inside a free block
 * at this pass and the one before, with no free into it between (so memory
 * freed and soon reused stays). So
 * resident memory follows live memory at chunk granularity, with one system
 * call per run of released chunks rather than one per free. kmm_drain runs
 * the pass at once. The pass runs under the area lock: the blocks must not be
 * handed out while their frames are being dropped. The head page of a free
 * block is never released: it holds the list links.
 */
#include "page_internal.h"

static inline struct free_node *node_of(struct kmm *mm, uint64_t pfn)
{
    return (struct free_node *)pfn_to_virt(mm, pfn);
}

static inline uint64_t pfn_of_node(struct kmm *mm, const struct free_node *n)
{
    return (uint64_t)((uintptr_t)n - mm->direct_map) >> mm->page_shift;
}

void kmm__area_init(struct kmm *mm, unsigned a)
{
    struct kmm_area *ar = &mm->area[a];
    mm->pf->lock_init(&ar->lock);
    for (unsigned o = 0; o <= KMM_MAX_ORDER; o++) {
        ar->free[o].next = ar->free[o].prev = &ar->free[o];
        ar->nr_free[o] = 0;
    }
    ar->nonempty = 0;
    ar->free_pages = ar->reserved_pages = ar->freed_since_release = 0;
}

/* Marks the chunks of [pfn, pfn + 2^order) in the release map: pages there
 * were written (by their user, or by the allocator's links). */
static void mark_freed(struct kmm *mm, uint64_t pfn, unsigned order)
{
    uint64_t first = (pfn >> mm->release_order) - mm->release_chunk0;
    uint64_t last = ((pfn + ((uint64_t)1 << order) - 1) >> mm->release_order) - mm->release_chunk0;
    for (uint64_t c = first; c <= last;) {
        uint64_t bits = ~(uint64_t)0 << (c & 63);
        if (last - (c & ~(uint64_t)63) < 63)
            bits &= ~(uint64_t)0 >> (63 - (last & 63));
        if ((load_relaxed(&mm->release_map[c >> 6]) & bits) != bits)
            __atomic_fetch_or(&mm->release_map[c >> 6], bits, __ATOMIC_RELAXED);
        c = (c | 63) + 1;
    }
}

void kmm__area_push_free(struct kmm *mm, struct kmm_area *ar, uint64_t pfn, unsigned order)
{
    struct free_node *n = node_of(mm, pfn), *head = &ar->free[order];
    meta_set(mm, pfn, meta_make(META_FREE, order));
    link_unpoison(n);
    if (mm->release_map)   /* the links below make the head page resident */
        mark_freed(mm, pfn, 0);
    n->next = head->next;
    n->prev = head;
    n->prev->next = n;
    n->next->prev = n;
    ar->nr_free[order]++;
    ar->free_pages += (size_t)1 << order;
    ar->nonempty |= 1u << order;
}

void kmm__area_unlink_free(struct kmm *mm, struct kmm_area *ar, uint64_t pfn, unsigned order)
{
    struct free_node *n = node_of(mm, pfn);
    if (KMM_UNLIKELY(n->next->prev != n || n->prev->next != n))
        kmm__fatal_page(mm, "free list", "corrupted links (write after free?) at", n);
    n->prev->next = n->next;
    n->next->prev = n->prev;
    ar->nr_free[order]--;
    ar->free_pages -= (size_t)1 << order;
    if (ar->free[order].next == &ar->free[order])
        ar->nonempty &= ~(1u << order);
}

uint64_t kmm__area_take(struct kmm *mm, struct kmm_area *ar, unsigned order)
{
    uint32_t avail = ar->nonempty & ~((1u << order) - 1);
    if (!avail)
        return UINT64_MAX;
    unsigned o = (unsigned)__builtin_ctz(avail);
    uint64_t pfn = pfn_of_node(mm, ar->free[o].next);
    kmm_meta_t m = meta_get(mm, pfn);
    if (KMM_UNLIKELY(!meta_is_free(m) || meta_order(m) != o))
        kmm__fatal_page(mm, "free list", "block on a free list is not free (metadata corrupted) at", pfn_to_virt(mm, pfn));
    kmm__area_unlink_free(mm, ar, pfn, o);
    while (o > order) {
        o--;
        kmm__area_push_free(mm, ar, pfn + ((uint64_t)1 << o), o);
    }
    return pfn;
}

void kmm__area_free_block(struct kmm *mm, struct kmm_area *ar, uint64_t pfn, unsigned order)
{
    if (mm->release_map) {
        mark_freed(mm, pfn, order);
        ar->freed_since_release += (size_t)1 << order;
    }
    while (order < KMM_MAX_ORDER) {
        uint64_t buddy = pfn ^ ((uint64_t)1 << order);
        if (buddy < ar->start_pfn || buddy + ((uint64_t)1 << order) > ar->end_pfn)
            break;
        kmm_meta_t m = meta_get(mm, buddy);
        if (!meta_is_free(m) || meta_order(m) != order)
            break;
        kmm__area_unlink_free(mm, ar, buddy, order);
        uint64_t upper = buddy > pfn ? buddy : pfn;
        meta_set(mm, upper, 0);
        if (mm->release_map)   /* its head page, kept for the links, may go now */
            mark_freed(mm, upper, 0);
        pfn &= ~((uint64_t)1 << order);
        order++;
    }
    kmm__area_push_free(mm, ar, pfn, order);
    if (ar->freed_since_release > mm->release_budget || ar->release_deferred)
        kmm__area_release(mm, ar, false);
}

/* Is chunk c wholly inside a free block of area ar? Returns the first page
 * that may be released (the block's head page keeps its links), or
 * UINT64_MAX. */
static uint64_t chunk_releasable(struct kmm *mm, struct kmm_area *ar, uint64_t c)
{
    uint64_t start = (c + mm->release_chunk0) << mm->release_order, end = start + ((uint64_t)1 << mm->release_order);
    if (start < ar->start_pfn || end > ar->end_pfn)
        return UINT64_MAX;
    uint64_t head = kmm__block_head(mm, ar, start);
    if (head == UINT64_MAX)
        return UINT64_MAX;
    kmm_meta_t m = meta_get(mm, head);
    if (!meta_is_free(m) || head + ((uint64_t)1 << meta_order(m)) < end)
        return UINT64_MAX;
    return head == start ? start + 1 : start;
}

static inline bool test_and_clear(uint64_t *map, uint64_t c)
{
    uint64_t bit = (uint64_t)1 << (c & 63);
    if (!(load_relaxed(&map[c >> 6]) & bit))
        return false;
    __atomic_fetch_and(&map[c >> 6], ~bit, __ATOMIC_RELAXED);
    return true;
}

/* A pass is due for ar but waits for the decay interval: the next page
 * allocation or free of the area, or a kmm__release_tick, looks again. */
static void release_defer(struct kmm *mm, struct kmm_area *ar)
{
    store_relaxed(&ar->release_deferred, true);
    store_relaxed(&mm->release_due, true);
}

void kmm__area_release(struct kmm *mm, struct kmm_area *ar, bool force)
{
    if (!mm->release_map || ar->end_pfn == ar->start_pfn ||
        (!force && ar->freed_since_release <= mm->release_budget && !ar->release_deferred))
        return;
    if (!force && !ar->release_more && mm->pf->clock_ms) {
        /* at most one pass per decay interval: a chunk is released after
         * it stayed free (and unwritten) from one pass to the next */
        uint64_t now = mm->pf->clock_ms(mm->ctx);
        if (now - ar->last_release_ms < KMM_RELEASE_DECAY_MS) {
            /* due: the next page allocation or free of the area looks at
             * the clock again (one vDSO read each, until the pass runs) */
            release_defer(mm, ar);
            return;
        }
        ar->last_release_ms = now;
    }
    store_relaxed(&ar->release_deferred, false);
    uint64_t first = (ar->start_pfn >> mm->release_order) - mm->release_chunk0;
    uint64_t last = ((ar->end_pfn - 1) >> mm->release_order) - mm->release_chunk0;
    if (force || !ar->release_more) {   /* a new pass */
        ar->freed_since_release = 0;
        ar->release_cursor = first;
        ar->release_aging = false;
    }
    ar->release_more = false;
    /* one step: at most release_step pages given back (unless forced), so
     * that the call, under the area lock, stays short; the next call of the
     * area goes on from the cursor without waiting for the interval */
    uint64_t budget = force ? UINT64_MAX : mm->release_step, released = 0;
    uint64_t run_start = 0, run_end = 0;   /* pages to release in one call */
    uint64_t c0 = ar->release_cursor;
    for (uint64_t w = c0 >> 6; w <= last >> 6; w++) {
        uint64_t bits = load_relaxed(&mm->release_map[w]) | load_relaxed(&mm->aged_map[w]);
        if (w == c0 >> 6)
            bits &= ~(uint64_t)0 << (c0 & 63);
        for (; bits; bits &= bits - 1) {
            uint64_t c = (w << 6) + (uint64_t)__builtin_ctzll(bits);
            if (c < first || c > last)
                continue;
            if (released >= budget) {   /* the step is done: the rest at the next call */
                ar->release_cursor = c;
                ar->release_more = true;
                goto out;
            }
            bool written = test_and_clear(mm->release_map, c);
            bool aged = test_and_clear(mm->aged_map, c);
            uint64_t from = chunk_releasable(mm, ar, c);
            if (!force && (written || !aged)) {
                __atomic_fetch_or(&mm->aged_map[w], (uint64_t)1 << (c & 63), __ATOMIC_RELAXED);
                ar->release_aging = true;
                continue;   /* freed recently: give it one more interval */
            }
            if (from == UINT64_MAX)
                continue;   /* partly in use: the free that completes it marks it again */
            uint64_t to = (c + mm->release_chunk0 + 1) << mm->release_order;
            if (from != run_end) {
                if (run_end > run_start)
                    mm->pf->release(mm->ctx, run_start << mm->page_shift, (run_end - run_start) << mm->page_shift);
                run_start = from;
            }
            run_end = to;
            released += to - from;
        }
    }
out:
    if (run_end > run_start)
        mm->pf->release(mm->ctx, run_start << mm->page_shift, (run_end - run_start) << mm->page_shift);
    if (ar->release_more || (ar->release_aging && mm->pf->clock_ms)) {
        /* the pass goes on at the next call; or, once it is over, the next
         * pass, one interval on, releases what stays free then, even if the
         * program frees nothing more meanwhile */
        release_defer(mm, ar);
    }
}

void kmm__release_tick(struct kmm *mm)
{
    if (KMM_LIKELY(!load_relaxed(&mm->release_due)))
        return;
    store_relaxed(&mm->release_due, false);   /* a pass deferred again sets it again */
    for (unsigned a = 0; a < mm->nr_areas; a++) {
        struct kmm_area *ar = &mm->area[a];
        if (!load_relaxed(&ar->release_deferred))
            continue;
        kmm_lock(mm, &ar->lock);
        kmm__area_release(mm, ar, false);
        kmm_unlock(mm, &ar->lock);
    }
}

/* ---- allocation --------------------------------------------------------- */

static void zero_pages(struct kmm *mm, void *p, uint64_t npages)
{
    __builtin_memset(p, 0, (size_t)(npages << mm->page_shift));
}

/* Pops a block from a per-thread cache list, checking that it is what the
 * cache says it is; marks it allocated. */
static inline void *tcache_pop(struct kmm *mm, struct tcache_list *l, unsigned order)
{
    uintptr_t v = l->slot[l->count - 1];
    uint64_t idx = virt_to_index(mm, (void *)v);
    if (KMM_UNLIKELY(idx >= mm->end_pfn - mm->base_pfn || mm->meta[idx] != meta_make(META_CACHED, order)))
        kmm__fatal_page(mm, "kmm_alloc_pages", "per-thread cache corrupted at", (void *)v);
    store_relaxed(&l->count, l->count - 1);
    store_relaxed(&mm->meta[idx], meta_make(META_ALLOC, order));
    pages_unpoison(mm, (void *)v, (uint64_t)1 << order);
    return (void *)v;
}

static uint64_t take_run_or_drain(struct kmm *mm, unsigned order, uint64_t npages, unsigned flags);

/* What a failing allocation of npages tries before it fails, one stage at
 * a time, retrying after each that may have given pages back:
 *   0  kmm__reclaim: what kmm holds itself (lazily freed vmalloc areas,
 *      per-thread caches, empty slabs); cheap, and nobody loses anything;
 *   1  the shrinkers, asked for npages (kmm__shrink: in registration
 *      order, each for what is still missing);
 *   2  the shrinkers, asked for everything they hold: what stage 1 gave
 *      back may have been too scattered to merge into the block wanted,
 *      in an area the flags do not accept, or taken by another thread.
 * What a shrinker frees may land in this thread's caches, in magazines or
 * in lazily freed areas: stages 1 and 2 end with kmm__reclaim too.
 * KMM__NO_RECLAIM allocations (made under a lock) stop after stage 0, which
 * then only drains their own cache. Returns whether a retry is worth it. */
#define RECLAIM_STAGES 3
static bool reclaim_stage(struct kmm *mm, unsigned stage, uint64_t npages, unsigned flags)
{
    if (stage > 0) {
        if (flags & KMM__NO_RECLAIM)
            return false;
        if (!kmm__shrink(mm, stage == 1 ? (size_t)npages : 0))
            return false;
    }
    kmm__reclaim(mm, flags);
    return true;
}

static __attribute__((noinline)) void *alloc_pages_slow(struct kmm *mm, unsigned order, unsigned flags)
{
    void *p = NULL;
    mm_live(mm, "kmm_alloc_pages");
    if (order > KMM_MAX_ORDER) {
        kmm__refuse(mm, KMM_EINVAL, "kmm_alloc_pages", "order above KMM_MAX_ORDER");
        return NULL;
    }
    if (!flags_ok(mm, flags, KMM__NO_RECLAIM, "kmm_alloc_pages"))
        return NULL;
    busy_slow_enter();
    struct kmm_tcache *tc = order <= KMM_PCP_MAX_ORDER ? tcache_get(mm) : NULL;
    if (tc) {
        struct tcache_list *l = &tc->list[mm->area_pref[flags & KMM_AREA_MASK][0]][order];
        if (!l->count)
            l = kmm__tcache_refill(mm, tc, order, flags);
        /* blocks of other orders, other threads' caches, what shrinkers
         * give back, may merge into one */
        for (unsigned stage = 0; !l && stage < RECLAIM_STAGES; stage++) {
            if (!reclaim_stage(mm, stage, (uint64_t)1 << order, flags))
                continue;
            /* a shrinker's kmm calls may have moved this thread's slots */
            tc = tcache_get(mm);
            if (!tc)
                break;
            l = kmm__tcache_refill(mm, tc, order, flags);
        }
        if (l)
            p = tcache_pop(mm, l, order);
    } else {
        uint64_t pfn = take_run_or_drain(mm, order, (uint64_t)1 << order, flags);
        if (pfn != UINT64_MAX) {
            p = pfn_to_virt(mm, pfn);
            pages_unpoison(mm, p, (uint64_t)1 << order);
        }
    }
    busy_slow_exit();
    if (!p) {
        kmm__refuse(mm, KMM_ENOMEM, "kmm_alloc_pages", NULL);
        return NULL;
    }
    if (flags & KMM_ZERO)
        zero_pages(mm, p, (uint64_t)1 << order);
    return p;
}

void *kmm_alloc_pages(struct kmm *mm, unsigned order, unsigned flags)
{
#if KMM_THREAD_CACHE
    /* the fast path: a small block of the preferred area from this thread's
     * cache (flags an area mask alone: zeroing and unknown flags go slow) */
    busy_fast_enter();
    if (KMM_LIKELY(order <= KMM_PCP_MAX_ORDER && !(flags & ~KMM_AREA_MASK) &&
                   kmm__tls[0].key == load_relaxed(&mm->cache_key))) {
        struct tcache_list *l = &kmm__tls[0].tc->list[mm->area_pref[flags & KMM_AREA_MASK][0]][order];
        if (KMM_LIKELY(l->count)) {
            void *p = tcache_pop(mm, l, order);
            busy_fast_exit();
            return p;
        }
    }
    busy_fast_exit();
#endif
    return alloc_pages_slow(mm, order, flags);
}

/* Keeps the first npages of the free-list-detached block [pfn, pfn + 2^order)
 * as one allocation (blocks of decreasing order: ALLOC then ALLOC_CONT) and
 * frees the rest. Area lock held. */
static void trim_block(struct kmm *mm, struct kmm_area *ar, uint64_t pfn, unsigned order, uint64_t npages,
                       enum meta_kind kind)
{
    uint64_t p = pfn, end = pfn + ((uint64_t)1 << order), left = npages;
    while (left) {
        unsigned o = floor_log2(left);
        meta_set(mm, p, meta_make(kind, o));
        kind = META_ALLOC_CONT;
        p += (uint64_t)1 << o;
        left -= (uint64_t)1 << o;
    }
    while (p < end) {   /* the tail, as the largest aligned blocks that fit */
        unsigned o = (unsigned)__builtin_ctzll(p);
        while (p + ((uint64_t)1 << o) > end)
            o--;
        kmm__area_free_block(mm, ar, p, o);
        p += (uint64_t)1 << o;
    }
}

/* Takes a block of 2^order pages from the first accepted area that has one
 * and keeps its first npages as one allocation. */
static uint64_t take_run(struct kmm *mm, unsigned order, uint64_t npages, unsigned flags)
{
    for (const uint8_t *a = mm->area_pref[flags & KMM_AREA_MASK]; *a != NO_AREA; a++) {
        struct kmm_area *ar = &mm->area[*a];
        if (ar->total_pages < ((uint64_t)1 << order))
            continue;
        kmm_lock(mm, &ar->lock);
        uint64_t pfn = kmm__area_take(mm, ar, order);
        if (pfn != UINT64_MAX)
            trim_block(mm, ar, pfn, order, npages, META_ALLOC);
        if (ar->release_deferred)   /* a program that allocates without freeing pages releases too */
            kmm__area_release(mm, ar, false);
        kmm_unlock(mm, &ar->lock);
        if (pfn != UINT64_MAX)
            return pfn;
    }
    return UINT64_MAX;
}

/* take_run, and if it fails, once more after each reclaim stage that gave
 * something back: what caches and lazy vmalloc areas hold, then what the
 * shrinkers give back, may merge into what is needed (Linux drains every
 * CPU's lists, then shrinks, before it fails an allocation). */
static uint64_t take_run_or_drain(struct kmm *mm, unsigned order, uint64_t npages, unsigned flags)
{
    uint64_t pfn = take_run(mm, order, npages, flags);
    for (unsigned stage = 0; pfn == UINT64_MAX && stage < RECLAIM_STAGES; stage++)
        if (reclaim_stage(mm, stage, npages, flags))
            pfn = take_run(mm, order, npages, flags);
    return pfn;
}

void *kmm__alloc_run(struct kmm *mm, const char *fn, uint64_t npages, size_t align, unsigned flags)
{
    if (npages == 0) {
        kmm__refuse(mm, KMM_EINVAL, fn, "size of 0 pages");
        return NULL;
    }
    if (align & (align - 1)) {
        kmm__refuse(mm, KMM_EINVAL, fn, "alignment is not a power of two");
        return NULL;
    }
    if (!flags_ok(mm, flags, KMM__NO_RECLAIM, fn))
        return NULL;
    /* valid but larger than any block: out of memory, silently (malloc's rule) */
    unsigned align_order = align > mm->page_size ? floor_log2(align) - mm->page_shift : 0;
    if (npages > ((uint64_t)1 << KMM_MAX_ORDER) || align_order > KMM_MAX_ORDER) {
        kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
        return NULL;
    }
    unsigned order = ceil_log2(npages);
    if (order < align_order)
        order = align_order;
    if (npages == ((uint64_t)1 << order) && order <= KMM_PCP_MAX_ORDER)
        return kmm_alloc_pages(mm, order, flags);   /* a whole small block: the cached path */
    uint64_t pfn = take_run_or_drain(mm, order, npages, flags);
    if (pfn == UINT64_MAX) {
        kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
        return NULL;
    }
    void *p = pfn_to_virt(mm, pfn);
    pages_unpoison(mm, p, npages);
    if (flags & KMM_ZERO)
        zero_pages(mm, p, npages);
    return p;
}

void *kmm_alloc_pages_aligned(struct kmm *mm, size_t npages, size_t align, unsigned flags)
{
    mm_live(mm, "kmm_alloc_pages_aligned");
    return kmm__alloc_run(mm, "kmm_alloc_pages_aligned", npages, align, flags);
}

void *kmm_alloc_pages_exact(struct kmm *mm, size_t size, unsigned flags)
{
    mm_live(mm, "kmm_alloc_pages_exact");
    /* rounding up would wrap: more than any block anyway */
    uint64_t npages = size > SIZE_MAX - mm->page_size ? UINT64_MAX : (size + mm->page_size - 1) >> mm->page_shift;
    return kmm__alloc_run(mm, "kmm_alloc_pages_exact", npages, 0, flags);
}

/* ---- free --------------------------------------------------------------- */

static const char *const owner_names[NR_OWNERS] = {
    [OWNER_PAGES] = "the page allocator's caller (kmm_alloc_pages*)",
    [OWNER_SLAB] = "the slab layer (a slab of kmm_malloc or a kmm_cache)",
    [OWNER_KMALLOC] = "kmm_malloc (a block of whole pages)",
    [OWNER_VMALLOC] = "kmm_vmalloc (frames of a vmalloc area)",
    [OWNER_META] = "kmm's metadata",
    [OWNER_LEAKED] = "a destroyed kmm_cache (a slab it left with live objects, kept for good)",
    [OWNER_ZSMALLOC] = "zsmalloc",
    [OWNER_UNMAPPED] = "the unmapped cache",
    [OWNER_SECRET] = "secret memory",
    [OWNER_EXECMEM] = "executable memory",
};

const char *kmm__owner_name(enum kmm_owner owner)
{
    return (unsigned)owner < NR_OWNERS ? owner_names[owner] : "an unknown owner (metadata corrupted)";
}

void kmm__owner_fatal(struct kmm *mm, const char *fn, const void *addr, enum kmm_owner found)
{
    struct kmm_msg m = { .len = 0 };
    kmm__msg_str(&m, fn);
    kmm__msg_str(&m, ": free of memory owned by ");
    kmm__msg_str(&m, kmm__owner_name(found));
    kmm__msg_str(&m, ", not by the caller (only its owner frees it): ");
    kmm__msg_hex(&m, (uintptr_t)addr);
    kmm__fatal(mm, &m);
}

/* Checks that addr starts a live allocation that owner owns; returns its
 * frame and head. The one place that tells a bad free from a good one. */
static uint64_t check_free(struct kmm *mm, enum kmm_owner owner, const char *fn, const void *addr, kmm_meta_t *head)
{
    uint64_t pfn = virt_to_pfn(mm, addr);
    if (pfn == UINT64_MAX && kmm__vm_owns(mm, addr))   /* the likeliest wrong layer: name it */
        kmm__fatal_page(mm, fn, "address in the vmalloc space (kmm_vmalloc or kmm_vmap memory: "
                                "kmm_vfree or kmm_vunmap frees it)", addr);
    if (pfn == UINT64_MAX)
        kmm__fatal_page(mm, fn, "address outside memory", addr);
    if (((uintptr_t)addr - mm->direct_map) & (mm->page_size - 1))
        kmm__fatal_page(mm, fn, "not the start of a page allocation", addr);
    kmm_meta_t m = meta_get(mm, pfn);
    switch (meta_kind(m)) {
    case META_ALLOC:
    case META_OWNED: {
        enum kmm_owner found = pages_owner(mm, pfn);
        if (KMM_UNLIKELY(found != owner))
            kmm__owner_fatal(mm, fn, addr, found);
        *head = m;
        return pfn;
    }
    case META_FREE:
    case META_CACHED:
        kmm__fatal_page(mm, fn, "double free of", addr);
    case META_RESERVED:
        kmm__fatal_page(mm, fn, "free of a reserved page", addr);
    case META_ABSENT:
        kmm__fatal_page(mm, fn, "address outside memory", addr);
    case META_TAIL: {
        /* inside another layer's block: name the layer */
        uint64_t h = kmm__block_head(mm, &mm->area[area_of_pfn(mm, pfn)], pfn);
        if (h != UINT64_MAX && meta_kind(meta_get(mm, h)) == META_OWNED && pages_owner(mm, h) != owner)
            kmm__owner_fatal(mm, fn, addr, pages_owner(mm, h));
        kmm__fatal_page(mm, fn, "not the start of a page allocation", addr);
    }
    case META_ALLOC_CONT:
    default:
        kmm__fatal_page(mm, fn, "not the start of a page allocation", addr);
    }
}

void kmm__pages_own(struct kmm *mm, void *addr, enum kmm_owner owner)
{
    uint64_t idx = virt_to_index(mm, addr);
    kmm_meta_t m = load_relaxed(&mm->meta[idx]);
    if (KMM_UNLIKELY(meta_kind(m) != META_ALLOC || owner == OWNER_PAGES))
        kmm__fatal_page(mm, kmm__owner_name(owner), "taking pages that are no fresh page allocation:", addr);
    /* owner[] first: whoever sees the OWNED head reads the right owner */
    store_relaxed(&mm->owner[idx], (uint8_t)owner);
    store_relaxed(&mm->meta[idx], meta_make(META_OWNED, meta_order(m)));
}

void kmm__pages_hand_over(struct kmm *mm, void *addr, enum kmm_owner from, enum kmm_owner to)
{
    uint64_t pfn = virt_to_pfn(mm, addr);
    enum kmm_owner found = pfn == UINT64_MAX ? NR_OWNERS : pages_owner(mm, pfn);
    if (KMM_UNLIKELY(found != from || to == OWNER_PAGES || from == OWNER_PAGES))
        kmm__owner_fatal(mm, kmm__owner_name(to), addr, found);
    store_relaxed(&mm->owner[pfn - mm->base_pfn], (uint8_t)to);
}

/* Is the block after [pfn, pfn + 2^order) part of the same allocation?
 * (meta[] has a spare 0 byte after the last page, so no bounds test.) */
static inline bool continues(struct kmm *mm, uint64_t pfn, unsigned order)
{
    return meta_kind(meta_get(mm, pfn + ((uint64_t)1 << order))) == META_ALLOC_CONT;
}

void kmm__pages_carve(struct kmm *mm, enum kmm_owner owner, void *addr, unsigned order)
{
    uint64_t pfn = virt_to_pfn(mm, addr);
    if (KMM_UNLIKELY(pfn == UINT64_MAX || (pfn & (((uint64_t)1 << order) - 1))))
        kmm__fatal_page(mm, kmm__owner_name(owner), "carving a misaligned block out of an allocation:", addr);
    /* under the area lock from the search on: two carves of one
     * allocation (shrinks on two threads) split the same heads */
    struct kmm_area *ar = &mm->area[area_of_pfn(mm, pfn)];
    kmm_lock(mm, &ar->lock);
    /* the OWNED block holding pfn: the first head at or above order whose
     * block reaches pfn */
    uint64_t head = UINT64_MAX;
    unsigned big = order;
    for (unsigned k = 0; k <= KMM_MAX_ORDER; k++) {
        uint64_t h = pfn & ~(((uint64_t)1 << k) - 1);
        if (h < mm->base_pfn)
            break;
        kmm_meta_t m = meta_get(mm, h);
        if (meta_kind(m) == META_TAIL)
            continue;
        big = meta_order(m);
        if (meta_kind(m) == META_OWNED && pfn < h + ((uint64_t)1 << big) && pages_owner(mm, h) == owner &&
            !continues(mm, h, big))
            head = h;
        break;
    }
    uint64_t size = (uint64_t)1 << order;
    if (head != UINT64_MAX && big < order) {
        /* joining: every head inside the block must be owner's, alone */
        for (uint64_t p = pfn; p < pfn + size; p += (uint64_t)1 << meta_order(meta_get(mm, p))) {
            kmm_meta_t m = meta_get(mm, p);
            if (meta_kind(m) != META_OWNED || pages_owner(mm, p) != owner || continues(mm, p, meta_order(m)))
                head = UINT64_MAX;
            if (head == UINT64_MAX)
                break;
        }
    }
    if (KMM_UNLIKELY(head == UINT64_MAX)) {
        kmm_unlock(mm, &ar->lock);
        kmm__fatal_page(mm, kmm__owner_name(owner), "carving a block out of no allocation of its own:", addr);
    }
    if (big < order) {
        for (uint64_t p = pfn + ((uint64_t)1 << big); p < pfn + size;) {
            uint64_t next = p + ((uint64_t)1 << meta_order(meta_get(mm, p)));
            meta_set(mm, p, 0);
            p = next;
        }
        meta_set(mm, pfn, meta_make(META_OWNED, order));
    }
    while (big > order) {
        big--;
        uint64_t half = (uint64_t)1 << big;
        uint64_t other = (pfn & half) ? head : head + half;
        if (pfn & half)
            head += half;
        store_relaxed(&mm->owner[other - mm->base_pfn], (uint8_t)owner);
        meta_set(mm, other, meta_make(META_OWNED, big));
        store_relaxed(&mm->owner[head - mm->base_pfn], (uint8_t)owner);
        meta_set(mm, head, meta_make(META_OWNED, big));
    }
    kmm_unlock(mm, &ar->lock);
}

/* Pushes a small allocated block into the cache list of its area and order. */
static inline void tcache_push(struct kmm *mm, struct kmm_tcache *tc, uint64_t pfn, unsigned order)
{
    unsigned a = area_of_pfn(mm, pfn);
    struct tcache_list *l = &tc->list[a][order];
    uintptr_t v = (uintptr_t)pfn_to_virt(mm, pfn);
    /* the slot before the metadata byte: a fork that cuts this short
     * leaves a CACHED block findable past count (kmm__tcache_fork_child) */
    l->slot[l->count] = v;
    meta_set(mm, pfn, meta_make(META_CACHED, order));
    pages_poison(mm, (void *)v, (uint64_t)1 << order);
    store_relaxed(&l->count, l->count + 1);
    if (KMM_UNLIKELY(l->count > tcache_high(order)))
        kmm__tcache_flush(mm, tc, a, order, tcache_high(order) - tcache_batch(order));
}

void kmm__free_pages_as(struct kmm *mm, enum kmm_owner owner, const char *fn, void *addr, bool cache)
{
    mm_live(mm, fn);
    if (!addr)
        return;
    kmm_meta_t m;
    uint64_t pfn = check_free(mm, owner, fn, addr, &m);
    unsigned order = meta_order(m);
    if (cache && order <= KMM_PCP_MAX_ORDER && !continues(mm, pfn, order)) {
        busy_slow_enter();
        struct kmm_tcache *tc = tcache_get(mm);
        if (tc)
            tcache_push(mm, tc, pfn, order);
        busy_slow_exit();
        if (tc)
            return;
    }
    struct kmm_area *ar = &mm->area[area_of_pfn(mm, pfn)];
    kmm_lock(mm, &ar->lock);
    /* re-read under the lock: a racing free of the same block must see it free */
    if (meta_get(mm, pfn) != m) {
        kmm_unlock(mm, &ar->lock);
        kmm__fatal_page(mm, fn, "double free of", addr);
    }
    for (;;) {
        bool more = continues(mm, pfn, order);
        uint64_t next = pfn + ((uint64_t)1 << order);
        pages_poison(mm, pfn_to_virt(mm, pfn), (uint64_t)1 << order);
        kmm__area_free_block(mm, ar, pfn, order);
        if (!more)
            break;
        pfn = next;
        order = meta_order(meta_get(mm, pfn));
    }
    kmm_unlock(mm, &ar->lock);
}

void kmm_free_pages(struct kmm *mm, void *addr)
{
#if KMM_THREAD_CACHE
    /* the fast path: a page-aligned address in memory whose head byte says
     * "allocated, order <= KMM_PCP_MAX_ORDER, alone", into this thread's cache */
    uint64_t off = (uint64_t)((uintptr_t)addr - mm->span_start);
    if (KMM_LIKELY(off < mm->span_bytes && !(off & (mm->page_size - 1)))) {
        uint64_t idx = off >> mm->page_shift;
        unsigned order = (unsigned)load_relaxed(&mm->meta[idx]) - meta_make(META_ALLOC, 0);
        busy_fast_enter();
        if (KMM_LIKELY(order <= KMM_PCP_MAX_ORDER &&
                       meta_kind(load_relaxed(&mm->meta[idx + ((uint64_t)1 << order)])) != META_ALLOC_CONT &&
                       kmm__tls[0].key == load_relaxed(&mm->cache_key))) {
            tcache_push(mm, kmm__tls[0].tc, mm->base_pfn + idx, order);
            busy_fast_exit();
            return;
        }
        busy_fast_exit();
    }
#endif
    kmm__free_pages_as(mm, OWNER_PAGES, "kmm_free_pages", addr, true);
}

void kmm__pages_shrink(struct kmm *mm, enum kmm_owner owner, void *addr, size_t npages)
{
    kmm_meta_t m;
    uint64_t pfn = check_free(mm, owner, "kmm_realloc", addr, &m);
    struct kmm_area *ar = &mm->area[area_of_pfn(mm, pfn)];
    uint64_t before = 0;   /* pages of the allocation before the block at pfn */
    enum meta_kind kind = meta_kind(m);
    kmm_lock(mm, &ar->lock);
    for (;;) {
        unsigned order = meta_order(meta_get(mm, pfn));
        bool more = continues(mm, pfn, order);
        uint64_t size = (uint64_t)1 << order;
        if (before + size > npages) {
            pages_poison(mm, pfn_to_virt(mm, pfn + (npages > before ? npages - before : 0)),
                         before + size - (npages > before ? npages : before));
            if (npages > before)
                trim_block(mm, ar, pfn, order, npages - before, kind);
            else
                kmm__area_free_block(mm, ar, pfn, order);
        }
        if (!more)
            break;
        before += size;
        pfn += size;
        kind = META_ALLOC_CONT;
    }
    kmm_unlock(mm, &ar->lock);
}

size_t kmm__pages_size(struct kmm *mm, enum kmm_owner owner, const void *addr)
{
    uint64_t pfn = virt_to_pfn(mm, addr);
    if (pfn == UINT64_MAX || (((uintptr_t)addr - mm->direct_map) & (mm->page_size - 1)))
        return 0;
    enum kmm_owner found = pages_owner(mm, pfn);
    if (found == NR_OWNERS || (owner != NR_OWNERS && found != owner))
        return 0;
    size_t pages = 0;
    for (kmm_meta_t m = meta_get(mm, pfn);; m = meta_get(mm, pfn)) {
        unsigned order = meta_order(m);
        pages += (size_t)1 << order;
        if (!continues(mm, pfn, order))
            return pages;
        pfn += (uint64_t)1 << order;
    }
}

size_t kmm_page_alloc_size(struct kmm *mm, const void *addr)
{
    return kmm__pages_size(mm, NR_OWNERS, addr);
}

kmm_phys_t kmm_virt_to_phys(struct kmm *mm, const void *addr)
{
    if (virt_to_pfn(mm, addr) == UINT64_MAX)
        return KMM_PHYS_NONE;
    return (kmm_phys_t)((uintptr_t)addr - mm->direct_map);
}

void *kmm_phys_to_virt(struct kmm *mm, kmm_phys_t addr)
{
    uint64_t pfn = addr >> mm->page_shift;
    if (addr == KMM_PHYS_NONE || pfn < mm->base_pfn || pfn >= mm->end_pfn)
        return NULL;
    return (void *)(mm->direct_map + (uintptr_t)addr);
}
