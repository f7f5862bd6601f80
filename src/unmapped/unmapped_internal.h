/* unmapped/unmapped_internal.h - the unmapped cache's own (src/unmapped/):
 * chunks, their buddy state, the cache.
 *
 * Glossary: a CHUNK is a block the cache took from the page allocator and
 * unmapped in one platform call (2 MiB when it could); a BLOCK is a buddy
 * block inside a chunk (2^order pages, naturally aligned), free or handed
 * out. A chunk is one OWNED allocation of OWNER_UNMAPPED in the page
 * allocator until the shrinker gives back one of its free blocks: then the
 * page layer carves that block out (kmm__pages_carve) and the chunk's pages
 * are a tiling of OWNED allocations of OWNER_UNMAPPED plus the RELEASED
 * blocks, which are the page allocator's again.
 *
 * The pages are not mapped: no link or record may live in them. Every
 * record is in metadata memory (kmm__meta_obj_alloc).
 *
 * Locking: mm->unmapped_lock (a leaf, internal.h) protects the cache and
 * every chunk record, but the dirty bits, which the holder of a block
 * reads and clears outside the lock (atomically: a word is shared with
 * neighbouring blocks). Page allocations, metadata allocations and
 * platform calls happen outside the lock: the locked part decides, the
 * unlocked part acts, and installs or undoes under the lock again.
 *
 * Invariants (kmm__unmapped_check):
 *  - A chunk's state[] tiles its 2^order pages with blocks: a head byte
 *    (kind, order) at each block's first page, 0 at the others; blocks are
 *    buddy-aligned. Kinds: FREE (in the cache, free), one of the three
 *    owners (handed out), RELEASED (given back to the page allocator).
 *  - free_bits[o] has a bit set exactly at the FREE heads of order o;
 *    nfree[o] counts them; no FREE block has a FREE buddy of its order
 *    (it would have merged); free_pages and held are the sums.
 *  - A chunk is on list[o] iff nfree[o] > 0.
 *  - sorted[] holds every chunk, by base address; chunks are disjoint but
 *    for nesting: a chunk may lie inside a RELEASED block of an older one
 *    (the page allocator handed the block out again), never elsewhere in
 *    it. nocache chunks are one block, handed out, and never on a list.
 *  - In the page allocator, the non-RELEASED pages of a chunk are tiled by
 *    OWNED allocations of OWNER_UNMAPPED, each inside a buddy block of the
 *    chunk that contains no RELEASED page.
 *  - The counters (pages_free, pages_held, by owner) are the sums over
 *    chunks.
 */
#ifndef KMM_UNMAPPED_INTERNAL_H
#define KMM_UNMAPPED_INTERNAL_H

#include "internal.h"
#include <kmm/unmapped.h>

/* state[] bytes: kind << 5 | order at block heads, 0 inside blocks. */
#define UM_ORDER_MASK 0x1fu
#define UM_KIND_SHIFT 5
enum um_kind {
    UM_TAIL = 0,          /* inside a block */
    UM_FREE = 1,          /* free block in the cache */
    UM_USED = 2,          /* handed out to kmm_unmapped_alloc's caller */
    UM_SECRET = 3,        /* to secret memory */
    UM_EXECMEM = 4,       /* to execmem */
    UM_RELEASED = 5,      /* given back to the page allocator */
};
_Static_assert(KMM_MAX_ORDER <= UM_ORDER_MASK, "an order must fit a state byte");

static inline uint8_t um_state(enum um_kind kind, unsigned order) { return (uint8_t)(kind << UM_KIND_SHIFT | order); }
static inline enum um_kind um_kind_of(uint8_t s) { return (enum um_kind)(s >> UM_KIND_SHIFT); }
static inline unsigned um_order_of(uint8_t s) { return s & UM_ORDER_MASK; }

/* An owner's kind in state[], and back; -1 / NR_OWNERS for the others. */
static inline int um_kind_of_owner(enum kmm_owner owner)
{
    return owner == OWNER_UNMAPPED ? UM_USED : owner == OWNER_SECRET ? UM_SECRET : owner == OWNER_EXECMEM ? UM_EXECMEM : -1;
}
static inline enum kmm_owner um_owner_of_kind(enum um_kind k)
{
    return k == UM_USED ? OWNER_UNMAPPED : k == UM_SECRET ? OWNER_SECRET : k == UM_EXECMEM ? OWNER_EXECMEM : NR_OWNERS;
}

struct um_chunk {
    uint64_t base_pfn;
    unsigned order;                       /* 2^order pages */
    bool nocache;                         /* KMM_UNMAPPED_NOCACHE: one allocation, given back on its free */
    bool carved;                          /* a block was carved out once: the page allocator may see several allocations */
    size_t bytes;                         /* of this record, for kmm__meta_obj_free */
    /* protected by mm->unmapped_lock: */
    size_t held;                          /* pages not RELEASED */
    size_t free_pages;                    /* pages in FREE blocks */
    size_t transit;                       /* pages of RELEASED blocks a shrink is still giving back (still held) */
    size_t nfree[KMM_MAX_ORDER + 1];      /* FREE blocks per order */
    struct um_chunk *next[KMM_MAX_ORDER + 1], *prev[KMM_MAX_ORDER + 1];   /* on list[o] iff nfree[o] */
    uint64_t *free_bits;                  /* per order o <= order: 2^(order - o) bits (um_bits_at) */
    uint64_t *dirty;                      /* 1 bit per page: written since last zero (atomic words) */
    uint8_t *state;                       /* 1 byte per page (see enum um_kind) */
};

struct kmm_unmapped {
    struct kmm_shrinker shrinker;         /* "unmapped cache", registered when the cache is made */
    struct kmm *mm;
    bool shrinker_claimed;                /* registered, or being registered (atomic) */
    unsigned refill_order;                /* log2(KMM_UNMAPPED_REFILL_BYTES / page size), at least 0 */
    /* protected by mm->unmapped_lock: */
    struct um_chunk *list[KMM_MAX_ORDER + 1];   /* chunks with a FREE block of order o; whole chunks last */
    struct um_chunk **sorted;             /* every chunk, by address */
    size_t nr_chunks, cap_chunks;
    uint64_t max_chunk_pages;             /* the largest chunk's pages so far (bounds the search back) */
    size_t refills_in_flight;             /* refills (and blocks held beside, taken or given back) that may hold pages in no record */
    size_t slots_reserved;                /* of sorted[], for chunks being installed or put back */
    /* The block beside the last refill of refill_order (just after it, or
     * else just before), taken from the page allocator at once and held
     * still mapped, or NULL: the next refill takes it, so chunks lie side
     * by side and their holes in the direct map merge into one, however
     * the page allocator's other users split the free blocks around them
     * meanwhile. An OWNED block of OWNER_UNMAPPED in no chunk; the shrinker
     * gives it back first (no remapping needed). */
    void *beside;
    unsigned beside_order;
    /* pages_held and pages_free: of the cache's chunks (not nocache ones);
     * pages_by_kind: handed out, by kind (UM_USED .. UM_EXECMEM) */
    size_t pages_held, pages_free, pages_by_kind[UM_EXECMEM + 1], pages_nocache;
    size_t cached[KMM_MAX_ORDER + 1], released[KMM_MAX_ORDER + 1];
    /* counted outside the lock (atomic): */
    size_t unmap_calls, restore_calls, pages_zeroed, shrinks;
};

/* chunk.c: records, their buddy state, the sorted array (lock held unless said). */
KMM_HIDDEN size_t um_chunk_bytes(unsigned order);
/* A fresh record (no lock): every page one FREE block, all dirty; or,
 * nocache, one block handed out as kind. NULL when metadata runs out. */
KMM_HIDDEN struct um_chunk *um_chunk_new(struct kmm *mm, uint64_t base_pfn, unsigned order, bool nocache,
                                         enum um_kind kind);
KMM_HIDDEN void um_chunk_free(struct kmm *mm, struct um_chunk *c);   /* no lock */
KMM_HIDDEN uint64_t *um_bits_at(const struct um_chunk *c, unsigned o);
KMM_HIDDEN bool um_bit(const uint64_t *bits, size_t i);
/* Takes a free block of order o (the chunk has one of order >= o) for
 * kind; returns its first page's offset in the chunk. */
KMM_HIDDEN size_t um_block_take(struct kmm_unmapped *u, struct um_chunk *c, unsigned o, enum um_kind kind);
/* Puts the block at off of order o (handed out, or RELEASED in transit)
 * back as FREE, merging with its buddies. */
KMM_HIDDEN void um_block_put(struct kmm_unmapped *u, struct um_chunk *c, size_t off, unsigned o);
/* Takes the FREE block at off out of the free state: it becomes kind (a
 * shrink's RELEASED; a failed restore puts it back with um_block_put). */
KMM_HIDDEN void um_block_unfree(struct kmm_unmapped *u, struct um_chunk *c, size_t off, unsigned o, enum um_kind kind);
/* The innermost chunk holding pfn, or NULL (see chunk.c). O(log chunks)
 * without nesting. */
KMM_HIDDEN struct um_chunk *um_chunk_find(struct kmm_unmapped *u, uint64_t pfn);
/* The state byte of the block holding page off of c; its head's offset
 * in *head (when not NULL). O(order). */
KMM_HIDDEN uint8_t um_block_at(const struct um_chunk *c, size_t off, size_t *head);
/* Inserts c in sorted[] (room for it: cap_chunks > nr_chunks) and on its lists. */
KMM_HIDDEN void um_chunk_insert(struct kmm_unmapped *u, struct um_chunk *c);
/* Removes c from sorted[] and from its lists. */
KMM_HIDDEN void um_chunk_remove(struct kmm_unmapped *u, struct um_chunk *c);
/* The direct map's mappings now (see kmm_unmapped_stats). O(chunks), plus
 * the heads of chunks with RELEASED blocks. */
KMM_HIDDEN size_t um_direct_map_mappings(struct kmm *mm, struct kmm_unmapped *u);
/* Marks pages [off, off + n) of c dirty / clean (atomic). */
KMM_HIDDEN void um_dirty_set(struct um_chunk *c, size_t off, size_t n, bool dirty);

static inline uint64_t um_chunk_pages(const struct um_chunk *c) { return (uint64_t)1 << c->order; }
static inline kmm_phys_t um_phys(const struct kmm *mm, uint64_t pfn) { return (kmm_phys_t)pfn << mm->page_shift; }

#endif
