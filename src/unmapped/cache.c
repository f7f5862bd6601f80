/* cache.c - the unmapped cache: allocation, refill, free, shrink.
 *
 * Every operation is a locked decision and an unlocked action: under
 * mm->unmapped_lock a block is taken from or put back into a chunk's buddy
 * state (chunk.c); page allocations, metadata allocations and the
 * platform's direct_unmap / direct_restore / frames_zero run with no lock
 * held, and their result is installed (or undone) under the lock again.
 *
 *   alloc:  lock, take a block of a chunk on list[>= order], unlock,
 *           zero its dirty runs (frames_zero);
 *           none: refill (a 2 MiB block from the page allocator, one
 *           direct_unmap), install it, retry.
 *   free:   lock, find the chunk (binary search), check the head, mark the
 *           pages dirty, merge with buddies, unlock.
 *   shrink: wholly free chunks first (one direct_restore and one page free
 *           each), then the largest free blocks of partly used chunks: the
 *           block leaves the chunk (RELEASED) under the lock, the page layer
 *           carves it into an allocation of its own, and it is restored and
 *           freed outside; a failed restore puts it back.
 *
 * A refill or a shrink in flight holds a slot of sorted[] (slots_reserved),
 * so that installing or putting back never needs memory.
 */
#include "unmapped_internal.h"

/* ---- the cache itself ---- */

static size_t shrinker_count(void *arg)
{
    struct kmm_unmapped *u = arg;
    size_t beside = __atomic_load_n(&u->beside, __ATOMIC_RELAXED) ? (size_t)1 << u->refill_order : 0;
    return load_relaxed(&u->pages_free) + beside;
}

static size_t um_shrink(struct kmm *mm, struct kmm_unmapped *u, size_t nr_pages);

static size_t shrinker_scan(void *arg, size_t nr_to_scan)
{
    struct kmm_unmapped *u = arg;
    /* whole chunks rather than pieces of them, even when asked for less:
     * a piece splits the direct map, and a failing allocation may need a
     * large block */
    size_t chunk = (size_t)1 << u->refill_order;
    return um_shrink(u->mm, u, nr_to_scan > chunk ? nr_to_scan : chunk);
}

/* Registers the cache's shrinker once (retried by later refills when the
 * registry had no memory for it). No lock held. */
static void shrinker_register(struct kmm *mm, struct kmm_unmapped *u)
{
    if (__atomic_exchange_n(&u->shrinker_claimed, true, __ATOMIC_ACQ_REL))
        return;
    if (kmm_register_shrinker(mm, &u->shrinker) != 0)
        __atomic_store_n(&u->shrinker_claimed, false, __ATOMIC_RELEASE);
}

/* The cache, made on first use; NULL when metadata runs out. */
static struct kmm_unmapped *cache_get(struct kmm *mm)
{
    struct kmm_unmapped *u = __atomic_load_n(&mm->unmapped, __ATOMIC_ACQUIRE);
    if (KMM_LIKELY(u != NULL))
        return u;
    u = kmm__meta_obj_alloc(mm, sizeof(*u));
    if (!u)
        return NULL;
    u->mm = mm;
    u->refill_order = mm->page_size >= KMM_UNMAPPED_REFILL_BYTES
                          ? 0
                          : floor_log2(KMM_UNMAPPED_REFILL_BYTES >> mm->page_shift);
    if (u->refill_order > KMM_MAX_ORDER)
        u->refill_order = KMM_MAX_ORDER;
    u->shrinker = (struct kmm_shrinker){ .count = shrinker_count, .scan = shrinker_scan, .arg = u,
                                         .name = "unmapped cache" };
    kmm_lock(mm, &mm->unmapped_lock);
    struct kmm_unmapped *other = mm->unmapped;
    if (!other)
        __atomic_store_n(&mm->unmapped, u, __ATOMIC_RELEASE);
    kmm_unlock(mm, &mm->unmapped_lock);
    if (other) {
        kmm__meta_obj_free(mm, u, sizeof(*u));
        return other;
    }
    shrinker_register(mm, u);
    return u;
}

/* Reserves a slot of sorted[] for a chunk about to be installed (lock held
 * on entry and exit; dropped to grow the array). false when out of memory. */
static bool slot_reserve(struct kmm *mm, struct kmm_unmapped *u)
{
    while (u->nr_chunks + u->slots_reserved >= u->cap_chunks) {
        size_t cap = u->cap_chunks ? 2 * u->cap_chunks : 16;
        kmm_unlock(mm, &mm->unmapped_lock);
        struct um_chunk **grown = kmm__meta_obj_alloc(mm, cap * sizeof(*grown));
        kmm_lock(mm, &mm->unmapped_lock);
        if (!grown)
            return false;
        struct um_chunk **old = NULL;
        size_t old_cap = u->cap_chunks;
        if (u->cap_chunks < cap) {
            for (size_t i = 0; i < u->nr_chunks; i++)
                grown[i] = u->sorted[i];
            old = u->sorted;
            u->sorted = grown;
            u->cap_chunks = cap;
        } else {
            old = grown;   /* another thread grew it meanwhile */
            old_cap = cap;
        }
        kmm_unlock(mm, &mm->unmapped_lock);
        kmm__meta_obj_free(mm, old, old_cap * sizeof(*old));
        kmm_lock(mm, &mm->unmapped_lock);
    }
    u->slots_reserved++;
    return true;
}

/* Does the chunk lie in an area the mask accepts? */
static bool chunk_accepted(const struct kmm *mm, const struct um_chunk *c, unsigned areas)
{
    return (areas >> area_of_pfn(mm, c->base_pfn)) & 1;
}

static unsigned accepted_areas(const struct kmm *mm, unsigned flags)
{
    unsigned areas = 0;
    for (const uint8_t *a = mm->area_pref[flags & KMM_AREA_MASK]; *a != NO_AREA; a++)
        areas |= 1u << *a;
    return areas;
}

/* A chunk with a free block of order >= o in an accepted area (lock held).
 * The smallest order first: a wholly free chunk is broken only when no
 * smaller block is free anywhere, so that whole chunks stay whole for the
 * shrinker. O(KMM_MAX_ORDER) when every area is accepted. */
static struct um_chunk *chunk_with_block(struct kmm *mm, struct kmm_unmapped *u, unsigned o, unsigned areas,
                                         bool all_areas)
{
    for (unsigned k = o; k <= KMM_MAX_ORDER; k++)
        for (struct um_chunk *c = u->list[k]; c; c = c->next[k])
            if (all_areas || chunk_accepted(mm, c, areas))
                return c;
    return NULL;
}

static void refill_done(struct kmm *mm, struct kmm_unmapped *u, bool slot)
{
    kmm_lock(mm, &mm->unmapped_lock);
    u->refills_in_flight--;
    if (slot)
        u->slots_reserved--;
    kmm_unlock(mm, &mm->unmapped_lock);
}

static void beside_put_back(struct kmm *mm, struct kmm_unmapped *u, void *q);

static bool area_accepted(const struct kmm *mm, uint64_t pfn, unsigned areas)
{
    unsigned a = area_of_pfn(mm, pfn);
    for (const uint8_t *p = mm->area_pref[areas & KMM_AREA_MASK]; *p != NO_AREA; p++)
        if (*p == a)
            return true;
    return false;
}

/* Holds the block just after the run of adjacent chunks that the refill at
 * pfn joined (else the one just before the run) if it is wholly free now,
 * for the next refill (see struct kmm_unmapped). O(run x log chunks), once
 * per refill. */
static void beside_take(struct kmm *mm, struct kmm_unmapped *u, uint64_t pfn, unsigned areas)
{
    if (__atomic_load_n(&u->beside, __ATOMIC_RELAXED))
        return;
    uint64_t n = (uint64_t)1 << u->refill_order, start = pfn, end = pfn;
    kmm_lock(mm, &mm->unmapped_lock);
    u->refills_in_flight++;   /* the block is ours before it is recorded (beside_put_back) */
    for (const struct um_chunk *c; (c = um_chunk_find(u, end)) != NULL && c->base_pfn == end;)
        end += um_chunk_pages(c);
    for (const struct um_chunk *c; start > mm->base_pfn && (c = um_chunk_find(u, start - 1)) != NULL &&
                                   c->base_pfn + um_chunk_pages(c) == start;)
        start = c->base_pfn;
    kmm_unlock(mm, &mm->unmapped_lock);
    void *q = kmm__alloc_pages_at(mm, end, u->refill_order, areas);
    if (!q && start - mm->base_pfn >= n)
        q = kmm__alloc_pages_at(mm, start - n, u->refill_order, areas);
    if (q)
        kmm__pages_own(mm, q, OWNER_UNMAPPED);
    kmm_lock(mm, &mm->unmapped_lock);
    u->refills_in_flight--;
    bool kept = q && !u->beside;
    if (kept) {
        __atomic_store_n(&u->beside, q, __ATOMIC_RELAXED);
        u->beside_order = u->refill_order;
    }
    kmm_unlock(mm, &mm->unmapped_lock);
    if (q && !kept)   /* another thread's refill holds one already */
        kmm__free_pages_as(mm, OWNER_UNMAPPED, "kmm_unmapped_alloc", q, true);
}

/* Makes q (the block held beside, taken by a refill that then failed)
 * the block held beside again, or frees it when another thread's refill
 * holds one already. The refill is still in flight. */
static void beside_put_back(struct kmm *mm, struct kmm_unmapped *u, void *q)
{
    kmm_lock(mm, &mm->unmapped_lock);
    bool kept = !u->beside;
    if (kept) {
        __atomic_store_n(&u->beside, q, __ATOMIC_RELAXED);
        u->beside_order = u->refill_order;
    }
    kmm_unlock(mm, &mm->unmapped_lock);
    if (!kept)
        kmm__free_pages_as(mm, OWNER_UNMAPPED, "kmm_unmapped_alloc", q, true);
}

/* Takes a block of at least 2^order pages from the page allocator for the
 * cache (or, nocache, exactly 2^order pages for one allocation of kind),
 * unmaps it in one call and installs its record. Returns the chunk, or
 * NULL (out of memory, or a platform failure: nothing held then). */
static struct um_chunk *refill(struct kmm *mm, struct kmm_unmapped *u, unsigned order, unsigned flags, bool nocache,
                               enum um_kind kind)
{
    kmm_lock(mm, &mm->unmapped_lock);
    u->refills_in_flight++;   /* kmm_check: pages of ours in no chunk yet */
    bool slot = slot_reserve(mm, u);
    unsigned areas = flags & KMM_AREA_MASK;
    unsigned want = nocache || order > u->refill_order ? order : u->refill_order;
    void *p = NULL;
    if (!nocache && want == u->refill_order && u->beside && area_accepted(mm, virt_to_pfn(mm, u->beside), areas)) {
        p = u->beside;
        __atomic_store_n(&u->beside, NULL, __ATOMIC_RELAXED);
    }
    kmm_unlock(mm, &mm->unmapped_lock);
    if (!slot || (!p && kmm__fault(mm, KMM_FAULT_PAGES))) {
        if (p)
            beside_put_back(mm, u, p);
        refill_done(mm, u, slot);
        return NULL;
    }
    /* the block held beside the last refill (already ours); else one
     * allocation that may reclaim; the smaller fallbacks only look */
    bool reserved = p != NULL;
    if (!p)
        p = kmm_alloc_pages(mm, want, areas);
    unsigned got = want;
    while (!p && got > order) {
        got--;
        p = kmm_alloc_pages(mm, got, areas | (got > order ? KMM__NO_RECLAIM : 0));
    }
    if (!p) {
        refill_done(mm, u, slot);
        return NULL;
    }
    if (!reserved)
        kmm__pages_own(mm, p, OWNER_UNMAPPED);
    uint64_t pfn = virt_to_pfn(mm, p);
    uint64_t len = (uint64_t)mm->page_size << got;
    struct um_chunk *c = um_chunk_new(mm, pfn, got, nocache, kind);
    int rc = c ? pf_direct_unmap(mm, um_phys(mm, pfn), len) : -KMM_ENOMEM;
    if (rc != 0) {
        if (c)
            um_chunk_free(mm, c);
        kmm__free_pages_as(mm, OWNER_UNMAPPED, "kmm_unmapped_alloc", p, true);
        refill_done(mm, u, slot);
        return NULL;
    }
    add_relaxed(&u->unmap_calls, 1);
    mem_poison(p, (size_t)len);
    kmm_lock(mm, &mm->unmapped_lock);
    um_chunk_insert(u, c);
    u->refills_in_flight--;
    u->slots_reserved--;
    kmm_unlock(mm, &mm->unmapped_lock);
    if (!__atomic_load_n(&u->shrinker_claimed, __ATOMIC_ACQUIRE))
        shrinker_register(mm, u);
    if (!nocache && got == u->refill_order)
        beside_take(mm, u, pfn, areas);
    return c;
}

/* Zeroes the dirty runs of the block (which the caller holds: no one else
 * changes its bits); 0, or the platform's error. */
static int zero_block(struct kmm *mm, struct kmm_unmapped *u, struct um_chunk *c, size_t off, unsigned order)
{
    size_t end = off + ((size_t)1 << order);
    for (size_t i = off; i < end;) {
        uint64_t w = __atomic_load_n(&c->dirty[i / 64], __ATOMIC_RELAXED) >> (i % 64);
        if (!w) {
            i = (i / 64 + 1) * 64;
            continue;
        }
        i += (size_t)__builtin_ctzll(w);
        if (i >= end)
            break;
        size_t j = i;
        while (j < end && (__atomic_load_n(&c->dirty[j / 64], __ATOMIC_RELAXED) >> (j % 64) & 1))
            j++;
        if (pf_frames_zero(mm, um_phys(mm, c->base_pfn + i), (uint64_t)(j - i) << mm->page_shift) != 0)
            return -1;
        um_dirty_set(c, i, j - i, false);
        add_relaxed(&u->pages_zeroed, j - i);
        i = j;
    }
    return 0;
}

kmm_phys_t kmm__unmapped_alloc_as(struct kmm *mm, enum kmm_owner owner, unsigned order, unsigned flags,
                                  const char *fn)
{
    mm_live(mm, fn);
    if (!kmm__unmapped_supported(mm)) {
        kmm__refuse(mm, KMM_ENOSYS, fn, "the platform cannot take pages out of its direct map");
        return KMM_PHYS_NONE;
    }
    if (!flags_ok(mm, flags, KMM_NOZERO | KMM_UNMAPPED_NOCACHE, fn))
        return KMM_PHYS_NONE;
    if (order > KMM_MAX_ORDER) {
        kmm__refuse(mm, KMM_EINVAL, fn, "order above KMM_MAX_ORDER");
        return KMM_PHYS_NONE;
    }
    int kind = um_kind_of_owner(owner);
    if (KMM_UNLIKELY(kind < 0))
        kmm__fatal_page(mm, fn, "allocation for a layer that is not the unmapped cache's user:", NULL);
    struct kmm_unmapped *u = cache_get(mm);
    if (!u) {
        kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
        return KMM_PHYS_NONE;
    }
    bool zero = !(flags & KMM_NOZERO) || (flags & KMM_ZERO);
    struct um_chunk *c;
    size_t off;
    if (flags & KMM_UNMAPPED_NOCACHE) {
        c = refill(mm, u, order, flags, true, (enum um_kind)kind);
        if (!c) {
            kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
            return KMM_PHYS_NONE;
        }
        off = 0;
    } else {
        unsigned areas = accepted_areas(mm, flags);
        bool all_areas = areas == accepted_areas(mm, KMM_AREA_ANY);
        for (;;) {
            kmm_lock(mm, &mm->unmapped_lock);
            c = chunk_with_block(mm, u, order, areas, all_areas);
            if (c) {
                off = um_block_take(u, c, order, (enum um_kind)kind);
                kmm_unlock(mm, &mm->unmapped_lock);
                break;
            }
            kmm_unlock(mm, &mm->unmapped_lock);
            if (!refill(mm, u, order, flags, false, UM_FREE)) {
                kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
                return KMM_PHYS_NONE;
            }
        }
    }
    if (zero && zero_block(mm, u, c, off, order) != 0) {
        kmm__unmapped_free_as(mm, owner, um_phys(mm, c->base_pfn + off), false, fn);
        kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
        return KMM_PHYS_NONE;
    }
    return um_phys(mm, c->base_pfn + off);
}

/* ---- free ---- */

static KMM_NORETURN void bad_free(struct kmm *mm, const char *fn, kmm_phys_t addr, const char *why)
{
    struct kmm_msg m = { .len = 0 };
    kmm__msg_str(&m, "kmm: ");
    kmm__msg_str(&m, fn);
    kmm__msg_str(&m, ": ");
    kmm__msg_str(&m, why);
    kmm__msg_str(&m, ": phys ");
    kmm__msg_hex(&m, addr);
    kmm__fatal(mm, &m);
}

/* addr is in no chunk (or in a block given back): name the page
 * allocation's owner when it is someone's. */
static KMM_NORETURN void not_ours(struct kmm *mm, const char *fn, kmm_phys_t addr)
{
    void *p = kmm_phys_to_virt(mm, addr);
    if (p && !(addr & (mm->page_size - 1))) {
        enum kmm_owner found = pages_owner(mm, addr >> mm->page_shift);
        if (found != NR_OWNERS && found != OWNER_UNMAPPED)
            kmm__owner_fatal(mm, fn, p, found);
    }
    bad_free(mm, fn, addr, "not an allocation of the unmapped cache");
}

/* Called with the lock held; returns unlocked when it aborts. The block of
 * c at off is no head of a live allocation of kind: why. */
static KMM_NORETURN void bad_head(struct kmm *mm, const char *fn, kmm_phys_t addr, const struct um_chunk *c,
                                  size_t off, int kind)
{
    size_t head;
    uint8_t s = um_block_at(c, off, &head);
    kmm_unlock(mm, &mm->unmapped_lock);
    enum um_kind found = um_kind_of(s);
    if (found == UM_RELEASED)
        not_ours(mm, fn, addr);
    if (found == UM_FREE)
        bad_free(mm, fn, addr, "already free (double free?)");
    if (head != off) {
        struct kmm_msg m = { .len = 0 };
        kmm__msg_str(&m, "kmm: ");
        kmm__msg_str(&m, fn);
        kmm__msg_str(&m, ": not the start of an allocation: phys ");
        kmm__msg_hex(&m, addr);
        kmm__msg_str(&m, " is inside an allocation of order ");
        kmm__msg_dec(&m, um_order_of(s));
        kmm__msg_str(&m, " at phys ");
        kmm__msg_hex(&m, um_phys(mm, c->base_pfn + head));
        kmm__fatal(mm, &m);
    }
    (void)kind;
    kmm__owner_fatal(mm, fn, kmm_phys_to_virt(mm, addr), um_owner_of_kind(found));
}

/* A nocache chunk's pages go straight back: restored, freed, the record
 * dropped. If the restore fails they cannot go to the page allocator (it
 * writes into free pages): the chunk joins the cache instead. */
static void nocache_free(struct kmm *mm, struct kmm_unmapped *u, struct um_chunk *c)
{
    uint64_t len = um_chunk_pages(c) << mm->page_shift;
    void *p = pfn_to_virt(mm, c->base_pfn);
    if (pf_direct_restore(mm, um_phys(mm, c->base_pfn), len) == 0) {
        add_relaxed(&u->restore_calls, 1);
        mem_unpoison(p, (size_t)len);
        kmm__free_pages_as(mm, OWNER_UNMAPPED, "kmm_unmapped_free", p, true);
        um_chunk_free(mm, c);
        kmm_lock(mm, &mm->unmapped_lock);
        u->slots_reserved--;
        kmm_unlock(mm, &mm->unmapped_lock);
        return;
    }
    kmm_lock(mm, &mm->unmapped_lock);
    u->slots_reserved--;
    c->nocache = false;
    c->state[0] = um_state(UM_FREE, c->order);
    c->nfree[c->order] = 1;
    c->free_pages = um_chunk_pages(c);
    um_bits_at(c, c->order)[0] = 1;
    um_dirty_set(c, 0, (size_t)um_chunk_pages(c), true);
    um_chunk_insert(u, c);
    kmm_unlock(mm, &mm->unmapped_lock);
}

void kmm__unmapped_free_as(struct kmm *mm, enum kmm_owner owner, kmm_phys_t addr, bool zeroed, const char *fn)
{
    mm_live(mm, fn);
    struct kmm_unmapped *u = __atomic_load_n(&mm->unmapped, __ATOMIC_ACQUIRE);
    int kind = um_kind_of_owner(owner);
    if (!u || kind < 0 || addr == KMM_PHYS_NONE || (addr & (mm->page_size - 1)))
        not_ours(mm, fn, addr);
    uint64_t pfn = addr >> mm->page_shift;
    kmm_lock(mm, &mm->unmapped_lock);
    struct um_chunk *c = um_chunk_find(u, pfn);
    if (!c) {
        kmm_unlock(mm, &mm->unmapped_lock);
        not_ours(mm, fn, addr);
    }
    size_t off = (size_t)(pfn - c->base_pfn);
    uint8_t s = c->state[off];
    if (um_kind_of(s) != (enum um_kind)kind)
        bad_head(mm, fn, addr, c, off, kind);
    unsigned order = um_order_of(s);
    if (c->nocache) {
        um_chunk_remove(u, c);
        u->slots_reserved++;   /* for the put back, should the restore fail */
        kmm_unlock(mm, &mm->unmapped_lock);
        nocache_free(mm, u, c);
        return;
    }
    /* before the put: whoever takes the block next reads its bits */
    um_dirty_set(c, off, (size_t)1 << order, !zeroed);
    um_block_put(u, c, off, order);
    kmm_unlock(mm, &mm->unmapped_lock);
}

size_t kmm__unmapped_size(struct kmm *mm, enum kmm_owner owner, kmm_phys_t addr)
{
    struct kmm_unmapped *u = __atomic_load_n(&mm->unmapped, __ATOMIC_ACQUIRE);
    int kind = um_kind_of_owner(owner);
    if (!u || kind < 0 || addr == KMM_PHYS_NONE || (addr & (mm->page_size - 1)))
        return 0;
    size_t pages = 0;
    kmm_lock(mm, &mm->unmapped_lock);
    struct um_chunk *c = um_chunk_find(u, addr >> mm->page_shift);
    if (c) {
        uint8_t s = c->state[(addr >> mm->page_shift) - c->base_pfn];
        if (um_kind_of(s) == (enum um_kind)kind)
            pages = (size_t)1 << um_order_of(s);
    }
    kmm_unlock(mm, &mm->unmapped_lock);
    return pages;
}

/* ---- shrink ---- */

/* A wholly free chunk of at most max pages, taken out of the cache (lock
 * held), or NULL. */
static struct um_chunk *whole_chunk_take(struct kmm_unmapped *u, size_t max)
{
    for (unsigned o = KMM_MAX_ORDER + 1; o-- > 0;) {
        if (((uint64_t)1 << o) > max)
            continue;
        for (struct um_chunk *c = u->list[o]; c; c = c->next[o]) {
            if (c->order == o && c->held == um_chunk_pages(c) && !c->transit) {
                um_chunk_remove(u, c);
                u->slots_reserved++;   /* for the put back, should the restore fail */
                return c;
            }
        }
    }
    return NULL;
}

/* The largest free block of at most max pages, marked RELEASED (in
 * transit), or NULL (lock held). */
static struct um_chunk *block_take_for_release(struct kmm_unmapped *u, size_t max, size_t *off, unsigned *order)
{
    for (unsigned o = KMM_MAX_ORDER + 1; o-- > 0;) {
        if (((uint64_t)1 << o) > max || !u->list[o])
            continue;
        struct um_chunk *c = u->list[o];
        const uint64_t *bits = um_bits_at(c, o);
        size_t w = 0;
        while (!bits[w])
            w++;
        *off = (w * 64 + (size_t)__builtin_ctzll(bits[w])) << o;
        *order = o;
        um_block_unfree(u, c, *off, o, UM_RELEASED);
        c->transit += (size_t)1 << o;
        c->carved = true;
        return c;
    }
    return NULL;
}

static size_t um_shrink(struct kmm *mm, struct kmm_unmapped *u, size_t nr_pages)
{
    add_relaxed(&u->shrinks, 1);
    size_t given = 0, max = nr_pages ? nr_pages : SIZE_MAX;
    /* the block held beside the last refill: mapped, so given back as it is */
    kmm_lock(mm, &mm->unmapped_lock);
    void *q = u->beside;
    size_t qpages = q ? (size_t)1 << u->beside_order : 0;
    if (q && qpages <= max) {
        __atomic_store_n(&u->beside, NULL, __ATOMIC_RELAXED);
        u->refills_in_flight++;   /* ours, in no record, until it is freed */
    } else {
        q = NULL;
    }
    kmm_unlock(mm, &mm->unmapped_lock);
    if (q) {
        kmm__free_pages_as(mm, OWNER_UNMAPPED, "kmm_unmapped_shrink", q, false);
        given += qpages;
        kmm_lock(mm, &mm->unmapped_lock);
        u->refills_in_flight--;
        kmm_unlock(mm, &mm->unmapped_lock);
    }
    /* whole chunks: one restore, one free, the whole 2 MiB mapping back */
    for (;;) {
        kmm_lock(mm, &mm->unmapped_lock);
        struct um_chunk *c = whole_chunk_take(u, max - given);
        kmm_unlock(mm, &mm->unmapped_lock);
        if (!c)
            break;
        void *p = pfn_to_virt(mm, c->base_pfn);
        uint64_t len = um_chunk_pages(c) << mm->page_shift;
        if (c->carved)   /* blocks of it were given back once: one allocation again */
            kmm__pages_carve(mm, OWNER_UNMAPPED, p, c->order);
        bool restored = pf_direct_restore(mm, um_phys(mm, c->base_pfn), len) == 0;
        if (restored) {
            add_relaxed(&u->restore_calls, 1);
            mem_unpoison(p, (size_t)len);
            kmm__free_pages_as(mm, OWNER_UNMAPPED, "kmm_unmapped_shrink", p, true);
            given += (size_t)um_chunk_pages(c);
        }
        kmm_lock(mm, &mm->unmapped_lock);
        u->slots_reserved--;
        if (restored)
            u->released[c->order]++;
        else
            um_chunk_insert(u, c), u->cached[c->order]--;   /* back as it was: not a new chunk */
        kmm_unlock(mm, &mm->unmapped_lock);
        if (!restored)
            return given;
        um_chunk_free(mm, c);
    }
    /* then the largest free blocks of chunks in use: each splits the
     * direct map around it, as Linux's shrinker does */
    while (given < max) {
        size_t off;
        unsigned order;
        kmm_lock(mm, &mm->unmapped_lock);
        struct um_chunk *c = block_take_for_release(u, max - given, &off, &order);
        kmm_unlock(mm, &mm->unmapped_lock);
        if (!c)
            break;
        uint64_t pfn = c->base_pfn + off, pages = (uint64_t)1 << order;
        void *p = pfn_to_virt(mm, pfn);
        kmm__pages_carve(mm, OWNER_UNMAPPED, p, order);
        bool restored = pf_direct_restore(mm, um_phys(mm, pfn), pages << mm->page_shift) == 0;
        if (restored) {
            add_relaxed(&u->restore_calls, 1);
            mem_unpoison(p, (size_t)(pages << mm->page_shift));
            kmm__free_pages_as(mm, OWNER_UNMAPPED, "kmm_unmapped_shrink", p, true);
            given += (size_t)pages;
        }
        bool empty = false;
        kmm_lock(mm, &mm->unmapped_lock);
        c->transit -= (size_t)pages;
        if (restored) {
            c->held -= (size_t)pages;
            u->pages_held -= (size_t)pages;
            u->released[order]++;
            empty = c->held == 0;
            if (empty)
                um_chunk_remove(u, c);
        } else {
            um_dirty_set(c, off, (size_t)pages, true);
            um_block_put(u, c, off, order);
        }
        kmm_unlock(mm, &mm->unmapped_lock);
        if (empty)
            um_chunk_free(mm, c);
        if (!restored)
            break;
    }
    return given;
}

/* ---- the public calls ---- */

kmm_phys_t kmm_unmapped_alloc(struct kmm *mm, unsigned order, unsigned flags)
{
    return kmm__unmapped_alloc_as(mm, OWNER_UNMAPPED, order, flags, "kmm_unmapped_alloc");
}

void kmm_unmapped_free(struct kmm *mm, kmm_phys_t addr)
{
    kmm__unmapped_free_as(mm, OWNER_UNMAPPED, addr, false, "kmm_unmapped_free");
}

size_t kmm_unmapped_shrink(struct kmm *mm, size_t nr_pages)
{
    mm_live(mm, "kmm_unmapped_shrink");
    struct kmm_unmapped *u = __atomic_load_n(&mm->unmapped, __ATOMIC_ACQUIRE);
    return u ? um_shrink(mm, u, nr_pages) : 0;
}

void kmm_unmapped_stats(struct kmm *mm, struct kmm_unmapped_stats *st)
{
    mm_live(mm, "kmm_unmapped_stats");
    *st = (struct kmm_unmapped_stats){ .direct_map_mappings = mm->mem.nr_ranges };
    struct kmm_unmapped *u = __atomic_load_n(&mm->unmapped, __ATOMIC_ACQUIRE);
    if (!u)
        return;
    kmm_lock(mm, &mm->unmapped_lock);
    for (size_t i = 0; i < u->nr_chunks; i++) {
        const struct um_chunk *c = u->sorted[i];
        for (unsigned o = 0; o <= c->order; o++)
            st->free[o] += c->nfree[o];
        st->chunks += !c->nocache;
    }
    for (unsigned o = 0; o <= KMM_MAX_ORDER; o++) {
        st->cached[o] = u->cached[o];
        st->released[o] = u->released[o];
    }
    st->direct_map_mappings = um_direct_map_mappings(mm, u);
    st->pages_held = u->pages_held;
    st->pages_free = u->pages_free;
    st->pages_used = u->pages_by_kind[UM_USED];
    st->pages_secret = u->pages_by_kind[UM_SECRET];
    st->pages_execmem = u->pages_by_kind[UM_EXECMEM];
    st->pages_nocache = u->pages_nocache;
    st->pages_beside = u->beside ? (size_t)1 << u->beside_order : 0;
    kmm_unlock(mm, &mm->unmapped_lock);
    st->unmap_calls = load_relaxed(&u->unmap_calls);
    st->restore_calls = load_relaxed(&u->restore_calls);
    st->pages_zeroed = load_relaxed(&u->pages_zeroed);
    st->shrinks = load_relaxed(&u->shrinks);
}
