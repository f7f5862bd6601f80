/* page/page_internal.h - the page layer's own: the buddy allocator of one
 * area, the per-thread page caches' slow paths, reservations and the
 * checker (src/page/ only, and the core that creates, checks and drains a
 * memory system). What the layers above may use of pages is in
 * src/internal.h ("the page allocator, for the layers above"). */
#ifndef KMM_PAGE_INTERNAL_H
#define KMM_PAGE_INTERNAL_H

#include "internal.h"

static inline void meta_set(struct kmm *mm, uint64_t pfn, kmm_meta_t m)
{
    store_relaxed(&mm->meta[pfn - mm->base_pfn], m);
}

static inline void pages_poison(const struct kmm *mm, void *p, uint64_t npages)
{
    mem_poison((char *)p + KMM_LINK_BYTES, (size_t)(npages << mm->page_shift) - KMM_LINK_BYTES);
}

/* A block head inside a larger freed block gets its link words back. */
static inline void link_unpoison(void *p)
{
    (void)p;
#if KMM_ASAN
    __asan_unpoison_memory_region(p, KMM_LINK_BYTES);
#endif
#if KMM_VALGRIND
    VALGRIND_MAKE_MEM_UNDEFINED(p, KMM_LINK_BYTES);
#endif
}

/* ---- page/buddy.c: the buddy allocator of one area (area lock held) ------- */
KMM_HIDDEN void kmm__area_init(struct kmm *mm, unsigned a);
/* Adds the free block to the front of its list. */
KMM_HIDDEN void kmm__area_push_free(struct kmm *mm, struct kmm_area *ar, uint64_t pfn, unsigned order);
/* Takes a free block of exactly this order, splitting a larger one; UINT64_MAX if none.
 * The head byte is left for the caller to set. */
KMM_HIDDEN uint64_t kmm__area_take(struct kmm *mm, struct kmm_area *ar, unsigned order);
/* Frees a block (its head byte may hold anything), merging with free buddies. */
KMM_HIDDEN void kmm__area_free_block(struct kmm *mm, struct kmm_area *ar, uint64_t pfn, unsigned order);
/* Removes a free block from its list. */
KMM_HIDDEN void kmm__area_unlink_free(struct kmm *mm, struct kmm_area *ar, uint64_t pfn, unsigned order);
/* Gives wholly free chunks marked in the release map back to the platform:
 * now if force, else only once release_budget pages were freed since the last pass. */
KMM_HIDDEN void kmm__area_release(struct kmm *mm, struct kmm_area *ar, bool force);

/* ---- page/tcache.c ---------------------------------------------------------- */
/* The first list, in the preference order of flags, that holds a block of
 * this order, refilling empty ones from their area; NULL if all areas are out. */
KMM_HIDDEN struct tcache_list *kmm__tcache_refill(struct kmm *mm, struct kmm_tcache *tc, unsigned order, unsigned flags);
KMM_HIDDEN void kmm__tcache_flush(struct kmm *mm, struct kmm_tcache *tc, unsigned a, unsigned order, uint32_t keep);
/* Empties every magazine and list of tc (mm->tcache_lock held); returns
 * the blocks and objects it held. */
KMM_HIDDEN size_t kmm__tcache_drain_all(struct kmm *mm, struct kmm_tcache *tc);
KMM_HIDDEN void kmm__tcache_destroy_all(struct kmm *mm);
KMM_HIDDEN size_t kmm__tcache_cached_pages(struct kmm *mm);
KMM_HIDDEN int kmm__tcache_check(struct kmm *mm, size_t *cached_blocks_per_area_order);
/* Empties the calling thread's cache for mm; returns the blocks it held. */
KMM_HIDDEN size_t kmm__tcache_drain_current(struct kmm *mm);
/* In the child of a fork (one thread; locks free): gives back everything
 * every per-thread cache held, and what threads that do not exist in the
 * child were moving in or out of theirs; frees the caches of those threads. */
KMM_HIDDEN void kmm__tcache_fork_child(struct kmm *mm);
_Static_assert(TCACHE_REFILL_ORDER > KMM_PCP_MAX_ORDER, "a refill holds several blocks of every cached order");
static inline uint32_t tcache_batch(unsigned order) { return 1u << (TCACHE_REFILL_ORDER - order); }
/* Blocks a cache list holds before it gives a batch back. */
static inline uint32_t tcache_high(unsigned order) { return 3 * tcache_batch(order); }


/* ---- page/reserve.c ---------------------------------------------------------- */
/* Head frame of the block containing pfn (within its area); UINT64_MAX if the metadata is broken. */
KMM_HIDDEN uint64_t kmm__block_head(struct kmm *mm, const struct kmm_area *ar, uint64_t pfn);

/* ---- page/check.c, page/stats.c ------------------------------------------------ */
KMM_HIDDEN int kmm__page_check(struct kmm *mm);

#endif
