/* check.c - the unmapped cache's invariants (kmm_check; listed in
 * unmapped_internal.h), its pages for `kmm map`, fork and the end of a
 * memory system. */
#include "unmapped_internal.h"

static int fail(struct kmm *mm, const char *what, uint64_t v)
{
    kmm_unlock(mm, &mm->unmapped_lock);
    return kmm__check_fail(mm, what, v);
}

/* The page allocator's head of the allocation holding pfn must be an
 * OWNED one of the unmapped cache's, reaching pfn. */
static bool page_owned(const struct kmm *mm, uint64_t pfn)
{
    for (unsigned k = 0; k <= KMM_MAX_ORDER; k++) {
        uint64_t h = pfn & ~(((uint64_t)1 << k) - 1);
        if (h < mm->base_pfn)
            return false;
        kmm_meta_t m = meta_get(mm, h);
        if (meta_kind(m) == META_TAIL)
            continue;
        return meta_kind(m) == META_OWNED && pages_owner(mm, h) == OWNER_UNMAPPED &&
               pfn < h + ((uint64_t)1 << meta_order(m));
    }
    return false;
}

struct sums {
    size_t held, free, by_kind[UM_EXECMEM + 1], nocache, transit, owned;
};

static int check_chunk(struct kmm *mm, const struct um_chunk *c, struct sums *sum)
{
    uint64_t pages = um_chunk_pages(c);
    uint64_t pfn0 = c->base_pfn;
    if (c->order > KMM_MAX_ORDER || (c->base_pfn & (pages - 1)) || c->base_pfn < mm->base_pfn ||
        c->base_pfn + pages > mm->end_pfn)
        return fail(mm, "unmapped: chunk misaligned or outside memory", pfn0);
    if (!c->carved && !c->transit && c->held == pages &&
        (meta_get(mm, c->base_pfn) != meta_make(META_OWNED, c->order) ||
         pages_owner(mm, c->base_pfn) != OWNER_UNMAPPED))
        return fail(mm, "unmapped: a chunk is no OWNED block of the unmapped cache of its order", pfn0);
    size_t nfree[KMM_MAX_ORDER + 1] = { 0 }, free_pages = 0, released = 0, blocks = 0;
    for (uint64_t off = 0; off < pages;) {
        uint8_t s = c->state[off];
        unsigned o = um_order_of(s);
        enum um_kind k = um_kind_of(s);
        uint64_t len = (uint64_t)1 << o;
        if (k == UM_TAIL || k > UM_RELEASED || o > c->order || (off & (len - 1)))
            return fail(mm, "unmapped: chunk state is no tiling of buddy blocks", pfn0 + off);
        for (uint64_t j = 1; j < len; j++)
            if (c->state[off + j])
                return fail(mm, "unmapped: a head inside a block", pfn0 + off + j);
        blocks++;
        if (k == UM_FREE) {
            if (!um_bit(um_bits_at(c, o), off >> o))
                return fail(mm, "unmapped: free block not in its order's bitmap", pfn0 + off);
            if (o < c->order && c->state[off ^ len] == um_state(UM_FREE, o))
                return fail(mm, "unmapped: free block whose buddy is free (not merged)", pfn0 + off);
            nfree[o]++;
            free_pages += len;
        } else if (k == UM_RELEASED) {
            released += len;
        } else {
            sum->by_kind[k] += c->nocache ? 0 : len;
        }
        if (k != UM_RELEASED && !page_owned(mm, c->base_pfn + off))
            return fail(mm, "unmapped: cache pages the page allocator does not say are the cache's",
                        pfn0 + off);
        off += len;
    }
    for (unsigned o = 0; o <= c->order; o++) {
        size_t bits = 0;
        const uint64_t *w = um_bits_at(c, o);
        for (size_t i = 0; i < ((((size_t)1 << (c->order - o)) + 63) / 64); i++)
            bits += (size_t)__builtin_popcountll(w[i]);
        if (bits != nfree[o] || c->nfree[o] != nfree[o])
            return fail(mm, "unmapped: free block counts or bitmap of an order", pfn0);
    }
    for (unsigned o = c->order + 1; o <= KMM_MAX_ORDER; o++)
        if (c->nfree[o])
            return fail(mm, "unmapped: free blocks above the chunk's order", pfn0);
    if (free_pages != c->free_pages || c->transit > released || c->held != pages - (released - c->transit))
        return fail(mm, "unmapped: chunk page counts (free, held, in transit)", pfn0);
    if (c->nocache && (blocks != 1 || free_pages || released))
        return fail(mm, "unmapped: a nocache chunk is not one block handed out", pfn0);
    if (c->nocache) {
        sum->nocache += pages;
    } else {
        sum->held += c->held;
        sum->free += free_pages;
    }
    sum->transit += c->transit;
    sum->owned += c->held;
    return 0;
}

int kmm__unmapped_check(struct kmm *mm)
{
    struct kmm_unmapped *u = __atomic_load_n(&mm->unmapped, __ATOMIC_ACQUIRE);
    if (!u)
        return 0;
    struct sums sum = { .held = 0 };
    kmm_lock(mm, &mm->unmapped_lock);
    if (u->nr_chunks + u->slots_reserved > u->cap_chunks)
        return fail(mm, "unmapped: more chunks and reserved slots than the array holds", UINT64_MAX);
    for (size_t i = 0; i < u->nr_chunks; i++) {
        const struct um_chunk *c = u->sorted[i];
        if (i && u->sorted[i - 1]->base_pfn > c->base_pfn)
            return fail(mm, "unmapped: chunks not sorted by address", c->base_pfn);
        /* an older chunk reaching over this one must hold it in RELEASED blocks */
        for (size_t j = i; j-- > 0 && u->sorted[j]->base_pfn + u->max_chunk_pages > c->base_pfn;) {
            const struct um_chunk *o = u->sorted[j];
            if (o->base_pfn + um_chunk_pages(o) <= c->base_pfn)
                continue;
            /* the page allocator may have merged several RELEASED blocks for it */
            uint64_t end = c->base_pfn + um_chunk_pages(c) - o->base_pfn;
            if (end > um_chunk_pages(o))
                return fail(mm, "unmapped: a chunk reaches over the end of an older one", c->base_pfn);
            size_t off;
            um_block_at(o, (size_t)(c->base_pfn - o->base_pfn), &off);
            for (; off < end; off += (size_t)1 << um_order_of(o->state[off]))
                if (um_kind_of(o->state[off]) != UM_RELEASED)
                    return fail(mm, "unmapped: chunks overlap outside blocks given back", c->base_pfn);
        }
        int rc = check_chunk(mm, c, &sum);
        if (rc)
            return rc;
    }
    /* list[o] holds exactly the chunks with a free block of order o */
    for (unsigned o = 0; o <= KMM_MAX_ORDER; o++) {
        size_t on_list = 0, with = 0;
        for (const struct um_chunk *c = u->list[o]; c; c = c->next[o], on_list++)
            if (!c->nfree[o] || (c->next[o] && c->next[o]->prev[o] != c) || on_list > u->nr_chunks)
                return fail(mm, "unmapped: a chunk on the list of an order it has no free block of", c->base_pfn);
        for (size_t i = 0; i < u->nr_chunks; i++)
            with += u->sorted[i]->nfree[o] != 0;
        if (on_list != with || (u->list[o] && u->list[o]->prev[o]))
            return fail(mm, "unmapped: per-order list misses a chunk with a free block of the order", UINT64_MAX);
    }
    if (sum.held != u->pages_held || sum.free != u->pages_free || sum.nocache != u->pages_nocache)
        return fail(mm, "unmapped: cache page counts (held, free, nocache)", UINT64_MAX);
    for (unsigned k = UM_USED; k <= UM_EXECMEM; k++)
        if (sum.by_kind[k] != u->pages_by_kind[k])
            return fail(mm, "unmapped: pages handed out, by owner", UINT64_MAX);
    bool quiet = !u->refills_in_flight && !sum.transit;
    kmm_unlock(mm, &mm->unmapped_lock);
    if (!quiet)
        return 0;   /* pages between the page allocator and a chunk: kmm_check is for quiet moments */
    size_t found = 0;
    for (uint64_t pfn = mm->base_pfn; pfn < mm->end_pfn;) {   /* block by block (the page check proved the heads) */
        kmm_meta_t m = meta_get(mm, pfn);
        uint64_t len = meta_kind(m) == META_TAIL ? 1 : (uint64_t)1 << meta_order(m);
        if (meta_kind(m) == META_OWNED && pages_owner(mm, pfn) == OWNER_UNMAPPED)
            found += len;
        pfn += len;
    }
    if (u->beside)
        found -= (size_t)1 << u->beside_order;   /* mapped, in no chunk, by design */
    if (found != sum.owned)
        return kmm__check_fail(mm, "unmapped: pages the unmapped cache owns in the page allocator but holds in no chunk",
                               UINT64_MAX);
    return 0;
}

void kmm__unmapped_page_kinds(struct kmm *mm, uint64_t pfn, size_t n, uint8_t *kinds)
{
    static const uint8_t of_kind[] = {
        [UM_TAIL] = KMM_PAGE_UNMAPPED_FREE,  [UM_FREE] = KMM_PAGE_UNMAPPED_FREE, [UM_USED] = KMM_PAGE_UNMAPPED,
        [UM_SECRET] = KMM_PAGE_SECRET,       [UM_EXECMEM] = KMM_PAGE_EXECMEM,    [UM_RELEASED] = KMM_PAGE_UNMAPPED_FREE,
    };
    struct kmm_unmapped *u = __atomic_load_n(&mm->unmapped, __ATOMIC_ACQUIRE);
    if (u)
        kmm_lock(mm, &mm->unmapped_lock);
    const struct um_chunk *c = u ? um_chunk_find(u, pfn) : NULL;
    uint64_t beside = u && u->beside ? virt_to_pfn(mm, u->beside) : UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        if (beside != UINT64_MAX && pfn + i - beside < ((uint64_t)1 << u->beside_order)) {
            kinds[i] = KMM_PAGE_UNMAPPED_FREE;   /* held beside the last refill: still mapped */
            continue;
        }
        /* a refill not installed yet: free pages of the cache */
        uint8_t kind = KMM_PAGE_UNMAPPED_FREE;
        if (c && pfn + i - c->base_pfn < um_chunk_pages(c)) {
            enum um_kind k = um_kind_of(um_block_at(c, (size_t)(pfn + i - c->base_pfn), NULL));
            kind = of_kind[k <= UM_RELEASED ? k : UM_TAIL];
        }
        kinds[i] = (uint8_t)(kind | KMM_PAGE_UNMAPPED_BIT);
    }
    if (u)
        kmm_unlock(mm, &mm->unmapped_lock);
}

/* The records only: the chunks' pages go with the memory system. */
void kmm__unmapped_destroy(struct kmm *mm)
{
    struct kmm_unmapped *u = mm->unmapped;
    if (!u)
        return;
    for (size_t i = 0; i < u->nr_chunks; i++)
        um_chunk_free(mm, u->sorted[i]);
    if (u->sorted)
        kmm__meta_obj_free(mm, u->sorted, u->cap_chunks * sizeof(*u->sorted));
    mm->unmapped = NULL;
    kmm__meta_obj_free(mm, u, sizeof(*u));
}

void kmm__unmapped_fork_lock(struct kmm *mm, bool lock)
{
    if (lock)
        kmm_lock(mm, &mm->unmapped_lock);
    else
        kmm_unlock(mm, &mm->unmapped_lock);
}

/* Every record is in private metadata and every change to one is made
 * under the lock the fork held: the child's copy is whole. What a thread
 * of the parent had outside the lock is lost in the child, as elsewhere in
 * kmm: a refill's pages (owned, maybe unmapped, in no chunk: counted in
 * refills_in_flight for good, so kmm_check skips its memory count), a
 * shrink's block in transit (RELEASED, maybe restored: neither handed out
 * nor given back), a block being zeroed. The chunks stay unmapped in the
 * child (hosted: its direct map is remapped with the same protections). */
void kmm__unmapped_fork_child(struct kmm *mm) { (void)mm; }
