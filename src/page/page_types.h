/* page/page_types.h - the page layer's types that struct kmm and struct
 * kmm_tcache embed (src/internal.h includes it): the metadata byte, the
 * owner of a page allocation, areas and their free lists, per-thread page
 * lists. Types and constants only; the page layer's functions are in
 * page/page_internal.h, its interface for the layers above in internal.h.
 * Freestanding. */
#ifndef KMM_PAGE_TYPES_H
#define KMM_PAGE_TYPES_H

#include <kmm/page.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- The metadata byte -------------------------------------------------
 *
 *   7   5 4     0
 *  +-----+-------+
 *  | kind| order |      one byte per page, meta[pfn - base_pfn]
 *  +-----+-------+
 *
 * Invariants (checked by kmm_check):
 *  - Memory is tiled by blocks. A block of order o starts at a page whose
 *    frame number is a multiple of 2^o; its first byte is its head (kind != 0)
 *    and the other 2^o - 1 bytes are 0 (META_TAIL). So split and merge write
 *    one or two bytes, never 2^o of them, and an address inside a block is
 *    recognised at once.
 *  - Blocks never cross an area boundary.
 *  - A FREE head is on its area's free list of its order, and
 *    its buddy is not a free block of the same order (it would have merged).
 *  - An allocation is an ALLOC block followed by zero or more ALLOC_CONT
 *    blocks of strictly decreasing order (exact and aligned sizes: 5 pages
 *    are an order-2 ALLOC and an order-0 ALLOC_CONT).
 *  - A CACHED block is in exactly one per-thread cache, of its area and order.
 *  - An allocation made by a layer above (slab, kmm_malloc's large blocks,
 *    vmalloc, metadata pages, and the layers to come) starts with an OWNED
 *    head instead of ALLOC, and owner[pfn] of that head names the layer
 *    (enum kmm_owner, never OWNER_PAGES). Only that layer frees it: the
 *    free paths of the others find OWNED, or the wrong owner, and abort
 *    naming the owner. owner[] is read only at OWNED heads (what it holds
 *    elsewhere is stale and means nothing), so marking costs one store when
 *    a layer takes pages and nothing on the page allocator's fast paths:
 *    their test for ALLOC already refuses OWNED.
 */
typedef uint8_t kmm_meta_t;

#define META_ORDER_MASK 0x1fu
#define META_KIND_SHIFT 5
enum meta_kind {
    META_TAIL       = 0,   /* inside a block (the whole byte is 0) */
    META_FREE       = 1,   /* free block, on its area's free list */
    META_ALLOC      = 2,   /* first block of an allocation */
    META_ALLOC_CONT = 3,   /* further block of the allocation just before it */
    META_CACHED     = 4,   /* free block held in a per-thread cache */
    META_RESERVED   = 5,   /* kmm_reserve_pages */
    META_ABSENT     = 6,   /* no memory here (hole between ranges, kmm's own metadata) */
    META_OWNED      = 7,   /* first block of an allocation a layer above owns (owner[] says which) */
};
_Static_assert(KMM_MAX_ORDER <= META_ORDER_MASK, "order must fit the metadata byte");

/* Who owns a page allocation: the page allocator's caller, or a layer. */
enum kmm_owner {
    OWNER_PAGES = 0,       /* kmm_alloc_pages* for its caller: an ALLOC head */
    OWNER_SLAB,            /* a slab of a kmm_cache or of kmm_malloc's classes */
    OWNER_KMALLOC,         /* a kmm_malloc block of whole pages */
    OWNER_VMALLOC,         /* frames mapped into a kmm_vmalloc area */
    OWNER_META,            /* kmm's metadata memory, on platforms without meta_alloc */
    OWNER_LEAKED,          /* slabs of a cache destroyed with objects still allocated: kept for good */
    OWNER_ZSMALLOC,        /* the layers to come */
    OWNER_UNMAPPED,
    OWNER_SECRET,
    OWNER_EXECMEM,
    NR_OWNERS
};

static inline kmm_meta_t meta_make(enum meta_kind kind, unsigned order)
{
    return (kmm_meta_t)((unsigned)kind << META_KIND_SHIFT | order);
}
static inline enum meta_kind meta_kind(kmm_meta_t m) { return (enum meta_kind)(m >> META_KIND_SHIFT); }
static inline unsigned meta_order(kmm_meta_t m) { return m & META_ORDER_MASK; }
static inline bool meta_is_free(kmm_meta_t m)
{
    return meta_kind(m) == META_FREE;
}

/* ---- Areas and free lists ----------------------------------------------- */

/* A free list links the head pages of free blocks (the node lives in the
 * free page itself, as in Linux and kvm-unit-tests). Freed blocks go to the
 * front, so allocations reuse the memory most likely to be resident. */
struct free_node {
    struct free_node *next, *prev;
};

struct kmm_area {
    struct kmm_lock lock;
    uint64_t start_pfn, end_pfn;          /* the area's frames, clipped to memory */
    size_t total_pages;                   /* present pages (not ABSENT) */
    /* protected by lock: */
    size_t free_pages;                    /* pages in the free lists */
    size_t reserved_pages;
    size_t freed_since_release;           /* pages freed into the lists since the last release pass */
    uint64_t last_release_ms;             /* platform clock_ms at the last release pass */
    bool release_deferred;                /* a pass is due but waits for the decay interval */
    bool release_more;                    /* a pass stopped at its step's bound: the next call goes on at once */
    uint64_t release_cursor;              /* chunk where that pass goes on */
    bool release_aging;                   /* that pass kept chunks for one more interval */
    uint32_t nonempty;                    /* bit o set iff free[o] is not empty */
    size_t nr_free[KMM_MAX_ORDER + 1];
    struct free_node free[KMM_MAX_ORDER + 1];   /* list heads (sentinels) */
};

/* A refill brings one block of this order's worth: 64 pages, whose 64
 * metadata bytes are one cache line. */
#define TCACHE_REFILL_ORDER 6

/* A stack of cached blocks of one area and order, by direct-map address.
 * The addresses live here, not in the blocks: filling a cache touches no
 * page, popping reads no cold line, and a stray write into a freed page
 * cannot redirect the cache. */
struct tcache_list {
    uint32_t count;                       /* blocks; written by the owner only, read relaxed by stats */
    uintptr_t *slot;                      /* slot[0] is the coldest, slot[count - 1] the next to go */
};

/* Blocks a list of this order holds at most (see tcache_high). */
#define TCACHE_CAP(order) (3u * (1u << (TCACHE_REFILL_ORDER - (order))) + 1)
#define TCACHE_SLOTS_PER_AREA (TCACHE_CAP(0) + TCACHE_CAP(1) + TCACHE_CAP(2) + TCACHE_CAP(3))
_Static_assert(KMM_PCP_MAX_ORDER == 3, "TCACHE_SLOTS_PER_AREA sums orders 0..3");

#define NO_AREA KMM_MAX_AREAS

#endif
