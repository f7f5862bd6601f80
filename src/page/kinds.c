/* kinds.c - kmm_page_kinds: what each page is, read from the metadata bytes
 * (one per page) and, at the heads of OWNED allocations, owner[].
 *
 * A block's kind is its head's, for all its pages; an ALLOC_CONT block
 * takes the kind of the allocation it continues (the ALLOC or OWNED head
 * before it). Pages of the unmapped cache's chunks are asked of the cache,
 * which alone knows which are free and whose the others are.
 *
 * A range may start inside a block. Its head is found as reservations find
 * it (kmm__block_head: the page aligned down to each order, smallest first;
 * blocks are naturally aligned and their other bytes are 0, so the first
 * non-zero byte is the head of the block holding the page; blocks never
 * cross an area's bounds, so neither does the probe). The block before a
 * block is the one holding the page before it, so an ALLOC_CONT is
 * followed back to its allocation's head in at most KMM_MAX_ORDER steps
 * (orders strictly decrease along an allocation). The rest is one step per
 * block: O(npages) in all.
 *
 * No area lock is taken (the metadata is read with relaxed loads), so a
 * block being split or merged meanwhile may show its old or its new state,
 * and a page whose head cannot be found at that moment (a merge between the
 * write of one head and the clearing of the other) is shown free, since only
 * free blocks merge. */
#include "page_internal.h"

static const char *const kind_names[KMM_PAGE_NR_KINDS] = {
    [KMM_PAGE_ABSENT] = "absent",
    [KMM_PAGE_FREE] = "free",
    [KMM_PAGE_CACHED] = "cached",
    [KMM_PAGE_RESERVED] = "reserved",
    [KMM_PAGE_ALLOC] = "pages",
    [KMM_PAGE_SLAB] = "slab",
    [KMM_PAGE_KMALLOC] = "kmalloc",
    [KMM_PAGE_VMALLOC] = "vmalloc",
    [KMM_PAGE_META] = "meta",
    [KMM_PAGE_LEAKED] = "leaked",
    [KMM_PAGE_ZSMALLOC] = "zsmalloc",
    [KMM_PAGE_UNMAPPED_FREE] = "unmapped-free",
    [KMM_PAGE_UNMAPPED] = "unmapped",
    [KMM_PAGE_SECRET] = "secret",
    [KMM_PAGE_EXECMEM] = "execmem",
};

const char *kmm_page_kind_name(enum kmm_page_kind kind)
{
    unsigned k = (unsigned)kind & ~KMM_PAGE_UNMAPPED_BIT;
    return k < KMM_PAGE_NR_KINDS ? kind_names[k] : "?";
}

/* The kind of every page of an allocation owned by owner (OWNER_UNMAPPED's
 * are the cache's to tell, page by page). */
static const uint8_t owner_kinds[NR_OWNERS] = {
    [OWNER_PAGES] = KMM_PAGE_ALLOC,
    [OWNER_SLAB] = KMM_PAGE_SLAB,
    [OWNER_KMALLOC] = KMM_PAGE_KMALLOC,
    [OWNER_VMALLOC] = KMM_PAGE_VMALLOC,
    [OWNER_META] = KMM_PAGE_META,
    [OWNER_LEAKED] = KMM_PAGE_LEAKED,
    [OWNER_ZSMALLOC] = KMM_PAGE_ZSMALLOC,
    [OWNER_UNMAPPED] = KMM_PAGE_UNMAPPED | KMM_PAGE_UNMAPPED_BIT,
    [OWNER_SECRET] = KMM_PAGE_SECRET | KMM_PAGE_UNMAPPED_BIT,
    [OWNER_EXECMEM] = KMM_PAGE_EXECMEM | KMM_PAGE_UNMAPPED_BIT,
};

/* The owner of the allocation an ALLOC_CONT block at head continues, or
 * NR_OWNERS when the chain does not lead to one (changed meanwhile). */
static enum kmm_owner cont_owner(struct kmm *mm, const struct kmm_area *ar, uint64_t head)
{
    for (unsigned steps = 0; steps <= KMM_MAX_ORDER && head > ar->start_pfn; steps++) {
        head = kmm__block_head(mm, ar, head - 1);
        if (head == UINT64_MAX)
            break;
        enum meta_kind k = meta_kind(meta_get(mm, head));
        if (k == META_ALLOC || k == META_OWNED)
            return pages_owner(mm, head);
        if (k != META_ALLOC_CONT)
            break;
    }
    return NR_OWNERS;
}

static uint8_t meta_page_kind(enum meta_kind k)
{
    switch (k) {
    case META_FREE: return KMM_PAGE_FREE;
    case META_CACHED: return KMM_PAGE_CACHED;
    case META_RESERVED: return KMM_PAGE_RESERVED;
    case META_ABSENT: return KMM_PAGE_ABSENT;
    default: return KMM_PAGE_FREE;   /* a tail where a head was: a merge in progress */
    }
}

size_t kmm_page_kinds(struct kmm *mm, kmm_phys_t start, size_t npages, uint8_t *kinds)
{
    mm_live(mm, "kmm_page_kinds");
    if (start & (mm->page_size - 1)) {
        kmm__refuse(mm, KMM_EINVAL, "kmm_page_kinds", "start is not page aligned");
        return 0;
    }
    uint64_t first = start >> mm->page_shift;
    size_t i = 0;
    while (i < npages && first + i < mm->base_pfn)
        kinds[i++] = KMM_PAGE_ABSENT;

    /* The allocation the walk is in (NR_OWNERS between allocations), so an
     * ALLOC_CONT block knows whose it is without looking back. */
    enum kmm_owner alloc = NR_OWNERS;
    bool looked_back = false;
    while (i < npages && first + i < mm->end_pfn) {
        uint64_t pfn = first + i;
        const struct kmm_area *ar = &mm->area[area_of_pfn(mm, pfn)];
        if (pfn < ar->start_pfn || pfn >= ar->end_pfn) {   /* in no area: not memory */
            kinds[i++] = KMM_PAGE_ABSENT;
            alloc = NR_OWNERS;
            continue;
        }
        uint64_t head = kmm__block_head(mm, ar, pfn);
        if (head == UINT64_MAX) {
            kinds[i++] = KMM_PAGE_FREE;
            alloc = NR_OWNERS;
            continue;
        }
        kmm_meta_t m = meta_get(mm, head);
        enum meta_kind k = meta_kind(m);
        uint64_t end = head + ((uint64_t)1 << meta_order(m));
        size_t n = (size_t)(end - pfn) < npages - i ? (size_t)(end - pfn) : npages - i;

        if (k == META_ALLOC || k == META_OWNED)
            alloc = pages_owner(mm, head);
        else if (k == META_ALLOC_CONT && !looked_back && alloc == NR_OWNERS)
            alloc = cont_owner(mm, ar, head);   /* the range starts inside an allocation */
        else if (k != META_ALLOC_CONT)
            alloc = NR_OWNERS;
        looked_back = true;

        if ((k == META_ALLOC || k == META_OWNED || k == META_ALLOC_CONT) && alloc < NR_OWNERS) {
            if (alloc == OWNER_UNMAPPED)
                kmm__unmapped_page_kinds(mm, pfn, n, kinds + i);
            else
                __builtin_memset(kinds + i, owner_kinds[alloc], n);
        } else {
            __builtin_memset(kinds + i, meta_page_kind(k), n);
        }
        i += n;
    }
    while (i < npages)
        kinds[i++] = KMM_PAGE_ABSENT;
    return npages;
}
