/* check.c - kmm_check for the page allocator: every invariant written next
 * to the metadata byte and the free lists (internal.h), verified from
 * scratch. Costs O(pages) metadata reads; other threads must be quiet. */
#include "page_internal.h"

/* Are the 2^order - 1 bytes after the head all zero? Word at a time. */
static bool tail_is_clear(const struct kmm *mm, uint64_t head, unsigned order)
{
    const kmm_meta_t *p = &mm->meta[head - mm->base_pfn + 1];
    size_t n = ((size_t)1 << order) - 1;
    while (n && ((uintptr_t)p & (sizeof(uint64_t) - 1))) {
        if (load_relaxed(p))
            return false;
        p++, n--;
    }
    for (; n >= sizeof(uint64_t); n -= sizeof(uint64_t), p += sizeof(uint64_t))
        if (load_relaxed((const uint64_t *)(const void *)p))
            return false;
    for (; n; p++, n--)
        if (load_relaxed(p))
            return false;
    return true;
}

static bool in_memory(const struct kmm *mm, uint64_t pfn, uint64_t end)
{
    for (unsigned r = 0; r < mm->mem.nr_ranges; r++)
        if (pfn >= (mm->mem.ranges[r].start >> mm->page_shift) && end <= (mm->mem.ranges[r].end >> mm->page_shift))
            return true;
    return false;
}

static int check_area(struct kmm *mm, unsigned a, const size_t *cached)
{
    struct kmm_area *ar = &mm->area[a];
    size_t nr_free[KMM_MAX_ORDER + 1] = { 0 }, nr_cached[KMM_PCP_MAX_ORDER + 1] = { 0 };
    size_t free_pages = 0, reserved = 0, present = 0;
    enum meta_kind prev = META_TAIL;
    unsigned prev_order = 0;

    for (uint64_t pfn = ar->start_pfn; pfn < ar->end_pfn;) {
        kmm_meta_t m = meta_get(mm, pfn);
        unsigned o = meta_order(m);
        enum meta_kind k = meta_kind(m);
        uint64_t end = pfn + ((uint64_t)1 << o);
        if (m == 0)
            return kmm__check_fail(mm, "expected a block head, found the inside of a block", pfn);
        if (pfn & (((uint64_t)1 << o) - 1))
            return kmm__check_fail(mm, "block not naturally aligned to its order", pfn);
        if (end > ar->end_pfn)
            return kmm__check_fail(mm, "block crosses the end of its area", pfn);
        if (!tail_is_clear(mm, pfn, o))
            return kmm__check_fail(mm, "a page inside a block has a non-zero metadata byte", pfn);
        if (k != META_ABSENT && !in_memory(mm, pfn, end))
            return kmm__check_fail(mm, "block outside the memory ranges is not ABSENT", pfn);
        if (k == META_ALLOC_CONT && ((prev != META_ALLOC && prev != META_OWNED && prev != META_ALLOC_CONT) ||
                                     o >= prev_order))
            return kmm__check_fail(mm, "ALLOC_CONT block does not follow a larger block of its allocation", pfn);
        if (meta_is_free(m)) {
            uint64_t buddy = pfn ^ ((uint64_t)1 << o);
            if (o < KMM_MAX_ORDER && buddy >= ar->start_pfn && buddy + ((uint64_t)1 << o) <= ar->end_pfn &&
                meta_is_free(meta_get(mm, buddy)) && meta_order(meta_get(mm, buddy)) == o)
                return kmm__check_fail(mm, "two free buddies were not merged", pfn);
            nr_free[o]++;
            free_pages += (size_t)1 << o;
        }
        if (k == META_CACHED) {
            if (o > KMM_PCP_MAX_ORDER)
                return kmm__check_fail(mm, "CACHED block above KMM_PCP_MAX_ORDER", pfn);
            nr_cached[o]++;
        }
        if (k == META_OWNED && (pages_owner(mm, pfn) == OWNER_PAGES || pages_owner(mm, pfn) >= NR_OWNERS))
            return kmm__check_fail(mm, "OWNED allocation names no layer as its owner", pfn);
        if (k == META_RESERVED)
            reserved += (size_t)1 << o;
        if (k != META_ABSENT)
            present += (size_t)1 << o;
        prev = k;
        prev_order = o;
        pfn = end;
    }
    if (present != ar->total_pages)
        return kmm__check_fail(mm, "area's page count differs from its blocks", UINT64_MAX);
    if (free_pages != ar->free_pages || reserved != ar->reserved_pages)
        return kmm__check_fail(mm, "area's free or reserved page counter differs from the metadata", UINT64_MAX);
    for (unsigned o = 0; o <= KMM_PCP_MAX_ORDER; o++)
        if (nr_cached[o] != cached[a * (KMM_PCP_MAX_ORDER + 1) + o])
            return kmm__check_fail(mm, "CACHED blocks in the metadata differ from the per-thread caches", UINT64_MAX);

    for (unsigned o = 0; o <= KMM_MAX_ORDER; o++) {
        struct free_node *head = &ar->free[o];
        size_t n = 0;
        for (struct free_node *p = head->next; p != head; p = p->next) {
            uint64_t pfn = virt_to_pfn(mm, p);
            if (pfn == UINT64_MAX || pfn < ar->start_pfn || pfn >= ar->end_pfn || ++n > nr_free[o])
                return kmm__check_fail(mm, "free list leaves its area or loops", UINT64_MAX);
            kmm_meta_t m = meta_get(mm, pfn);
            if (!meta_is_free(m) || meta_order(m) != o)
                return kmm__check_fail(mm, "block on a free list is not free of the list's order", pfn);
            if (p->next->prev != p || p->prev->next != p)
                return kmm__check_fail(mm, "free list links are not symmetric", pfn);
        }
        if (n != nr_free[o] || n != ar->nr_free[o])
            return kmm__check_fail(mm, "free list length differs from the free blocks of its order", UINT64_MAX);
        if (!!(ar->nonempty & (1u << o)) != (n != 0))
            return kmm__check_fail(mm, "non-empty order bitmap is wrong", UINT64_MAX);
    }
    return 0;
}

int kmm__page_check(struct kmm *mm)
{
    size_t cached[KMM_MAX_AREAS * (KMM_PCP_MAX_ORDER + 1)] = { 0 };
    int rc = kmm__tcache_check(mm, cached);
    for (unsigned a = 0; a < mm->nr_areas && rc == 0; a++) {
        kmm_lock(mm, &mm->area[a].lock);
        rc = check_area(mm, a, cached);
        kmm_unlock(mm, &mm->area[a].lock);
    }
    return rc;
}
