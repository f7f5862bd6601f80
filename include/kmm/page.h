/* kmm/page.h - the page allocator: buddy orders over memory areas.
 *
 * Memory is divided into at most KMM_MAX_AREAS areas by ascending physical
 * limits. Each area keeps free blocks of 2^order pages on one list per order.
 * An allocation takes the smallest free block that fits from the most
 * preferred accepted area and splits it; a free merges the block with its
 * buddy as long as the buddy is free too, so memory freed in any order becomes
 * large blocks again.
 *
 * One metadata byte per page, kept apart from the pages, records whether the
 * page starts a block (and its order and state) or lies inside one. It is the
 * whole record: there is no header in front of an allocation, and frees find
 * the size from it. Every free is checked against it; a double free, a free of
 * an address that does not start an allocation, or of a reserved page, is
 * reported with the address and the reason, and the process aborts.
 *
 * Orders 0..KMM_PCP_MAX_ORDER are served from per-thread caches filled and
 * emptied in batches, so the common allocation and free take no lock.
 *
 * All functions are thread-safe. Costs are O(KMM_MAX_ORDER) for a block, plus
 * O(log pages) blocks for exact and aligned sizes and reservations: nothing is
 * O(pages in memory) except kmm_check.
 */
#ifndef KMM_PAGE_H
#define KMM_PAGE_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KMM_PCP_MAX_ORDER 3   /* orders cached per thread (Linux's PAGE_ALLOC_COSTLY_ORDER) */

/* Allocates 2^order pages, physically contiguous and naturally aligned
 * (the physical address is a multiple of 2^order pages).
 * Returns the direct-map address, or NULL when no accepted area has such a
 * block (errno ENOMEM, silent), or for order > KMM_MAX_ORDER or flags other
 * than an area mask and KMM_ZERO (errno EINVAL, one line reported).
 * Cost: lock-free from the thread cache for order <= KMM_PCP_MAX_ORDER when it
 * holds a block; else one area lock and O(KMM_MAX_ORDER) splits.
 * KMM_ZERO zeroes the pages. Free with kmm_free_pages(). */
KMM_API void *kmm_alloc_pages(struct kmm *mm, unsigned order, unsigned flags);

/* Allocates npages pages (any count >= 1) whose physical address is a
 * multiple of align bytes (a power of two; values below the page size mean
 * the page size). The block taken to satisfy the alignment is split and every
 * page beyond the npages kept goes back to the free lists at once: a small
 * allocation with a large alignment wastes nothing.
 * Returns NULL with errno EINVAL (one line reported) for align not a
 * power of two, npages 0 or unknown flags; ENOMEM (silent) when no block
 * fits, which includes npages or align beyond the largest block (2^
 * KMM_MAX_ORDER pages): valid, but too large to serve. Cost: one area lock,
 * O(KMM_MAX_ORDER) blocks split or freed. Free with kmm_free_pages(). */
KMM_API void *kmm_alloc_pages_aligned(struct kmm *mm, size_t npages, size_t align, unsigned flags);

/* Allocates size bytes rounded up to whole pages, physically contiguous and
 * page aligned, with the unused tail of the power-of-two block given back
 * (Xen's xmalloc_whole_pages: 20 KiB takes 5 pages of 4 KiB, not 8).
 * Same results and costs as kmm_alloc_pages_aligned(mm, pages, 0, flags):
 * size 0 is EINVAL; a size whose rounding overflows (SIZE_MAX) is ENOMEM. */
KMM_API void *kmm_alloc_pages_exact(struct kmm *mm, size_t size, unsigned flags);

/* Frees any allocation made by the kmm_alloc_pages* calls, by its address
 * alone: the size comes from the page metadata. NULL is a no-op. An address
 * that is not the start of a live page allocation (outside memory, inside a
 * block, already free, reserved), or that starts pages a layer above owns
 * (a slab, a kmm_malloc block, a vmalloc area's frames: only that layer
 * frees them), is reported with the owner and aborts.
 * Cost: lock-free into the thread cache for small orders; else one area lock
 * and O(KMM_MAX_ORDER) merges per block of the allocation. */
KMM_API void kmm_free_pages(struct kmm *mm, void *addr);

/* Number of pages in the live page allocation starting at addr, or 0 if
 * addr does not start one. Whichever layer owns it: a kmm_malloc block of
 * whole pages or a slab counts too, though kmm_free_pages frees only the
 * allocations no layer owns (those of the kmm_alloc_pages* calls). */
KMM_API size_t kmm_page_alloc_size(struct kmm *mm, const void *addr);

/* Reserves the npages pages at physical address addr (page aligned) so that
 * no allocation returns them, if every one of them is free now.
 * Returns 0, -KMM_EBUSY if any page is allocated, reserved or not memory
 * (nothing changed), -KMM_EINVAL for a misaligned or out-of-range request
 * or npages 0; it sets no errno and prints nothing.
 * Drains the calling thread's cache first; pages in other threads' caches
 * count as busy. Cost: the area locks, O(KMM_MAX_ORDER) per block touched. */
KMM_API int kmm_reserve_pages(struct kmm *mm, kmm_phys_t addr, size_t npages);

/* Gives back pages reserved by kmm_reserve_pages (the whole range or any
 * part of it). A page in the range that is not reserved, or a range that
 * is misaligned or outside memory (it returns nothing, so it cannot
 * refuse), is reported and aborts. */
KMM_API void kmm_unreserve_pages(struct kmm *mm, kmm_phys_t addr, size_t npages);

/* Physical address of a direct-map address, or KMM_PHYS_NONE if addr is not
 * in mm's direct map. O(1). */
KMM_API kmm_phys_t kmm_virt_to_phys(struct kmm *mm, const void *addr);

/* Direct-map address of a physical address, or NULL if it is not in mm's
 * memory. O(1). */
KMM_API void *kmm_phys_to_virt(struct kmm *mm, kmm_phys_t addr);

struct kmm_area_stats {
    kmm_phys_t start, end;        /* physical range of the area's memory */
    size_t total_pages;           /* pages of memory in the area */
    size_t free_pages;            /* in the buddy free lists */
    size_t reserved_pages;        /* by kmm_reserve_pages */
};

struct kmm_page_stats {
    size_t page_size, total_pages, reserved_pages, resident_pages;
    size_t free_pages;            /* pages no caller holds: buddy free lists plus per-thread caches */
    size_t nr_free[KMM_MAX_AREAS][KMM_MAX_ORDER + 1]; /* free blocks per area per order in the buddy lists */
    /* beside the contract: */
    size_t cached_pages;          /* of free_pages, those in per-thread caches */
    size_t allocated_pages;       /* held by callers: total - free - reserved */
    unsigned nr_areas;
    struct kmm_area_stats area[KMM_MAX_AREAS];
};

/* Fills *st. resident_pages comes from the platform (hosted: the memfd's
 * allocated extents, counted with SEEK_DATA/SEEK_HOLE: two system calls per
 * extent, so a fragmented memory system costs hundreds); the rest from
 * counters. Takes each area lock briefly: O(areas x orders + threads). */
KMM_API void kmm_page_stats(struct kmm *mm, struct kmm_page_stats *st);

/* ---- What each page is, for pictures (`kmm map`) ---------------------------- */

/* kmm_page_kinds: one byte per page, a kind below; KMM_PAGE_UNMAPPED_BIT is
 * added when the page is not in the direct map. */
enum kmm_page_kind {
    KMM_PAGE_ABSENT = 0,      /* no memory (a hole between ranges, kmm's own metadata) */
    KMM_PAGE_FREE,            /* in the buddy free lists */
    KMM_PAGE_CACHED,          /* free, in a per-thread cache */
    KMM_PAGE_RESERVED,        /* kmm_reserve_pages */
    KMM_PAGE_ALLOC,           /* kmm_alloc_pages* for a caller */
    KMM_PAGE_SLAB,            /* slabs (kmm_malloc's small sizes, kmm_cache) */
    KMM_PAGE_KMALLOC,         /* kmm_malloc blocks of whole pages */
    KMM_PAGE_VMALLOC,         /* frames of kmm_vmalloc areas */
    KMM_PAGE_META,            /* kmm's metadata (platforms without meta_alloc) */
    KMM_PAGE_LEAKED,          /* slabs of a cache destroyed with objects live */
    KMM_PAGE_ZSMALLOC,        /* zspages */
    KMM_PAGE_UNMAPPED_FREE,   /* the unmapped cache: free */
    KMM_PAGE_UNMAPPED,        /* the unmapped cache: handed out by kmm_unmapped_alloc */
    KMM_PAGE_SECRET,          /* the unmapped cache: secret memory's */
    KMM_PAGE_EXECMEM,         /* the unmapped cache: execmem's */
    KMM_PAGE_NR_KINDS
};
#define KMM_PAGE_UNMAPPED_BIT 0x80u

/* Short names of the kinds ("free", "slab", "unmapped-free" ...). */
KMM_API const char *kmm_page_kind_name(enum kmm_page_kind kind);

/* Fills kinds[i] for the npages pages from physical address start (page
 * aligned; pages outside memory are KMM_PAGE_ABSENT). Returns npages, or 0
 * (EINVAL, reported) for a misaligned start. A snapshot taken without
 * stopping other threads: a page changing meanwhile may show either state.
 * Cost: O(npages), reads of metadata; the unmapped cache's lock per chunk. */
KMM_API size_t kmm_page_kinds(struct kmm *mm, kmm_phys_t start, size_t npages, uint8_t *kinds);

#ifdef __cplusplus
}
#endif
#endif
