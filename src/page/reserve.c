/* reserve.c - reserving arbitrary page ranges, and giving them back.
 *
 * A range rarely matches buddy blocks, so each free block it touches is cut
 * along the range's edges:
 *
 *   free block    [                order 3                ]
 *   range                  [=====================)
 *   after         [ o1 free][o1 RES ][  o2 RESERVED  ]      (o3 split twice)
 *
 * carve() halves a block until every piece lies wholly inside or wholly
 * outside the range: O(KMM_MAX_ORDER) pieces per block, and a range touches
 * O(KMM_MAX_ORDER) blocks per largest block it spans. Unreserving cuts
 * reserved blocks the same way and frees the inside pieces.
 */
#include "page_internal.h"

uint64_t kmm__block_head(struct kmm *mm, const struct kmm_area *ar, uint64_t pfn)
{
    for (unsigned o = 0; o <= KMM_MAX_ORDER; o++) {
        uint64_t head = pfn & ~(((uint64_t)1 << o) - 1);
        if (head < ar->start_pfn)
            break;
        kmm_meta_t m = meta_get(mm, head);
        if (m != 0)
            return head + ((uint64_t)1 << meta_order(m)) > pfn ? head : UINT64_MAX;
    }
    return UINT64_MAX;
}

typedef void (*piece_fn)(struct kmm *mm, struct kmm_area *ar, uint64_t pfn, unsigned order);

static void carve(struct kmm *mm, struct kmm_area *ar, uint64_t pfn, unsigned order,
                  uint64_t start, uint64_t end, piece_fn inside, piece_fn outside)
{
    uint64_t block_end = pfn + ((uint64_t)1 << order);
    if (pfn >= start && block_end <= end) {
        inside(mm, ar, pfn, order);
    } else if (block_end <= start || pfn >= end) {
        outside(mm, ar, pfn, order);
    } else {
        order--;
        carve(mm, ar, pfn, order, start, end, inside, outside);
        carve(mm, ar, pfn + ((uint64_t)1 << order), order, start, end, inside, outside);
    }
}

static void mark_reserved(struct kmm *mm, struct kmm_area *ar, uint64_t pfn, unsigned order)
{
    meta_set(mm, pfn, meta_make(META_RESERVED, order));
    ar->reserved_pages += (size_t)1 << order;
    pages_unpoison(mm, pfn_to_virt(mm, pfn), (uint64_t)1 << order);   /* the reserver may use them */
}

static void free_piece(struct kmm *mm, struct kmm_area *ar, uint64_t pfn, unsigned order)
{
    ar->reserved_pages -= (size_t)1 << order;
    pages_poison(mm, pfn_to_virt(mm, pfn), (uint64_t)1 << order);
    kmm__area_free_block(mm, ar, pfn, order);
}

static void keep_reserved(struct kmm *mm, struct kmm_area *ar, uint64_t pfn, unsigned order)
{
    (void)ar;
    meta_set(mm, pfn, meta_make(META_RESERVED, order));
}

/* Validates a range request; returns false (and the first/last+1 frame) if bad. */
static bool range_ok(struct kmm *mm, kmm_phys_t addr, size_t npages, uint64_t *start, uint64_t *end)
{
    if (npages == 0 || (addr & (mm->page_size - 1)))
        return false;
    *start = addr >> mm->page_shift;
    if (*start < mm->base_pfn || *start >= mm->end_pfn || npages > mm->end_pfn - *start)
        return false;
    *end = *start + npages;
    return true;
}

static void lock_areas(struct kmm *mm, uint64_t start, uint64_t end)
{
    for (unsigned a = area_of_pfn(mm, start); a <= area_of_pfn(mm, end - 1); a++)
        kmm_lock(mm, &mm->area[a].lock);
}

static void unlock_areas(struct kmm *mm, uint64_t start, uint64_t end)
{
    for (unsigned a = area_of_pfn(mm, start); a <= area_of_pfn(mm, end - 1); a++)
        kmm_unlock(mm, &mm->area[a].lock);
}

/* Calls visit on every block that intersects [start, end), in order; stops
 * and returns false when visit does. Blocks may change under visit: the walk
 * resumes at the end of the block it was given. */
typedef bool (*block_fn)(struct kmm *mm, struct kmm_area *ar, uint64_t head, kmm_meta_t m,
                         uint64_t start, uint64_t end);

static bool for_each_block(struct kmm *mm, uint64_t start, uint64_t end, block_fn visit)
{
    for (uint64_t p = start; p < end;) {
        struct kmm_area *ar = &mm->area[area_of_pfn(mm, p)];
        uint64_t head = kmm__block_head(mm, ar, p);
        if (head == UINT64_MAX)
            kmm__fatal_page(mm, "kmm_reserve_pages", "page metadata corrupted at", pfn_to_virt(mm, p));
        kmm_meta_t m = meta_get(mm, head);
        uint64_t next = head + ((uint64_t)1 << meta_order(m));
        if (!visit(mm, ar, head, m, start, end))
            return false;
        p = next;
    }
    return true;
}

static bool is_free(struct kmm *mm, struct kmm_area *ar, uint64_t head, kmm_meta_t m, uint64_t s, uint64_t e)
{
    (void)mm, (void)ar, (void)head, (void)s, (void)e;
    return meta_is_free(m);
}

static bool reserve_block(struct kmm *mm, struct kmm_area *ar, uint64_t head, kmm_meta_t m, uint64_t s, uint64_t e)
{
    kmm__area_unlink_free(mm, ar, head, meta_order(m));
    carve(mm, ar, head, meta_order(m), s, e, mark_reserved, kmm__area_push_free);
    return true;
}

int kmm_reserve_pages(struct kmm *mm, kmm_phys_t addr, size_t npages)
{
    mm_live(mm, "kmm_reserve_pages");
    uint64_t start, end;
    if (!range_ok(mm, addr, npages, &start, &end))
        return -KMM_EINVAL;
    kmm__tcache_drain_current(mm);   /* our own cached pages count as free */
    lock_areas(mm, start, end);
    bool all_free = for_each_block(mm, start, end, is_free);
    if (all_free)
        for_each_block(mm, start, end, reserve_block);
    unlock_areas(mm, start, end);
    return all_free ? 0 : -KMM_EBUSY;
}

static bool is_reserved(struct kmm *mm, struct kmm_area *ar, uint64_t head, kmm_meta_t m, uint64_t s, uint64_t e)
{
    (void)ar, (void)e;
    if (meta_kind(m) != META_RESERVED) {
        uint64_t pfn = head > s ? head : s;
        unlock_areas(mm, s, e);
        kmm__fatal_page(mm, "kmm_unreserve_pages", "page not reserved:", pfn_to_virt(mm, pfn));
    }
    return true;
}

static bool unreserve_block(struct kmm *mm, struct kmm_area *ar, uint64_t head, kmm_meta_t m, uint64_t s, uint64_t e)
{
    carve(mm, ar, head, meta_order(m), s, e, free_piece, keep_reserved);
    return true;
}

void kmm_unreserve_pages(struct kmm *mm, kmm_phys_t addr, size_t npages)
{
    uint64_t start, end;
    mm_live(mm, "kmm_unreserve_pages");
    /* it returns nothing, so it cannot refuse: a range that was never
     * reserved is misuse, like a page in it that is not reserved */
    if (!range_ok(mm, addr, npages, &start, &end)) {
        struct kmm_msg m = { .len = 0 };
        kmm__msg_str(&m, "kmm: kmm_unreserve_pages: range misaligned or outside memory: phys ");
        kmm__msg_hex(&m, addr);
        kmm__msg_str(&m, ", ");
        kmm__msg_dec(&m, npages);
        kmm__msg_str(&m, " pages");
        kmm__fatal(mm, &m);
    }
    lock_areas(mm, start, end);
    for_each_block(mm, start, end, is_reserved);
    for_each_block(mm, start, end, unreserve_block);
    unlock_areas(mm, start, end);
}

/* ---- taking one given block (kmm__alloc_pages_at) --------------------------- */

static void mark_taken(struct kmm *mm, struct kmm_area *ar, uint64_t pfn, unsigned order)
{
    (void)ar;
    meta_set(mm, pfn, meta_make(META_ALLOC, order));
    pages_unpoison(mm, pfn_to_virt(mm, pfn), (uint64_t)1 << order);
}

void *kmm__alloc_pages_at(struct kmm *mm, uint64_t pfn, unsigned order, unsigned flags)
{
    uint64_t n = (uint64_t)1 << order;
    if (order > KMM_MAX_ORDER || (pfn & (n - 1)) || pfn < mm->base_pfn || pfn >= mm->end_pfn ||
        n > mm->end_pfn - pfn)
        return NULL;
    unsigned a = area_of_pfn(mm, pfn);
    if (area_of_pfn(mm, pfn + n - 1) != a)
        return NULL;
    bool accepted = false;
    for (const uint8_t *p = mm->area_pref[flags & KMM_AREA_MASK]; *p != NO_AREA; p++)
        accepted |= *p == a;
    if (!accepted)
        return NULL;
    struct kmm_area *ar = &mm->area[a];
    void *got = NULL;
    kmm_lock(mm, &ar->lock);
    uint64_t head = kmm__block_head(mm, ar, pfn);
    kmm_meta_t m = head == UINT64_MAX ? 0 : meta_get(mm, head);
    if (head != UINT64_MAX && meta_is_free(m) && meta_order(m) >= order) {
        kmm__area_unlink_free(mm, ar, head, meta_order(m));
        carve(mm, ar, head, meta_order(m), pfn, pfn + n, mark_taken, kmm__area_push_free);
        got = pfn_to_virt(mm, pfn);
    }
    kmm_unlock(mm, &ar->lock);
    return got;
}
