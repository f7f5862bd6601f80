/* kmm/unmapped.h - pages unmapped from the direct map, and shrinkers.
 *
 * The problem (Linux's unmapped_alloc series): taking single pages out of
 * the direct map, to hide secrets or to change their permissions for code,
 * splits its large mappings; scattered over memory, the splits add up and
 * slow everything that uses the direct map. The unmapped cache takes whole
 * 2 MiB blocks out of the direct map at once, in one platform call, and
 * serves pages from them with a buddy allocator of its own; under memory
 * pressure it maps free blocks back and returns them to the page allocator,
 * whole 2 MiB blocks first.
 *
 * Guarantees:
 *  - A page kmm_unmapped_alloc returns is not reachable through the direct
 *    map: an access through kmm_phys_to_virt() of it faults. Map it where
 *    you need it (kmm_vmap), or hand it to a device or a guest.
 *  - Its contents are zero unless the caller passes KMM_NOZERO.
 *  - The cache's pages are owned by it: kmm_free_pages (or any other layer's
 *    free) of one aborts naming the unmapped cache; a kmm_unmapped_free of
 *    an address the cache never handed out, of the middle of an allocation,
 *    twice, or of pages that secret memory or execmem took from the cache,
 *    aborts with the address and the reason.
 *  - The bookkeeping (the cache's buddy state, per-chunk records) lives in
 *    kmm's metadata memory and is part of the freestanding core; what
 *    removes and restores direct-map ranges is the platform's (hosted: the
 *    memfd range is remapped PROT_NONE in the direct map and mapped back).
 *  - Thread-safe: one lock for the cache, never held across a platform
 *    call or a page allocation.
 *
 * Platforms without the direct_unmap hook (the static platform) cannot
 * take pages out of their direct map: every call here refuses (ENOSYS).
 */
#ifndef KMM_UNMAPPED_H
#define KMM_UNMAPPED_H

#include <kmm/core.h>

#ifdef __cplusplus
extern "C" {
#endif

/* kmm_unmapped_alloc flag: bypass the cache. The pages come straight from
 * the page allocator and are unmapped alone, as a kernel without the cache
 * does it (set_direct_map_invalid per allocation); kmm_unmapped_free maps
 * them back and frees them at once. For comparison (bench/unmapped, the
 * demo's pictures): it splits the direct map once per allocation. */
#define KMM_UNMAPPED_NOCACHE (1u << 10)

/* The block the cache refills with when it can: 2 MiB (Linux's PMD_SIZE),
 * or one page when pages are larger. */
#define KMM_UNMAPPED_REFILL_BYTES (2ull << 20)

/* Returns the physical address of 2^order contiguous pages, naturally
 * aligned, not mapped in the direct map, zeroed unless KMM_NOZERO. flags: an
 * area mask (as kmm_alloc_pages: the areas the cache may take pages from,
 * and the areas the returned pages lie in), KMM_NOZERO,
 * KMM_UNMAPPED_NOCACHE. When the cache has no free block that large it
 * takes a KMM_UNMAPPED_REFILL_BYTES block (or, for a larger order, one of
 * that order; failing both, the largest order the page allocator has, down
 * to order) from the page allocator, unmaps it in one platform call and
 * adds it; it then holds the block beside that one, still mapped, for its
 * next refill, so that chunks lie side by side and their holes in the
 * direct map merge (the shrinker gives that block back first).
 * KMM_PHYS_NONE when out of memory (ENOMEM, silent), for order >
 * KMM_MAX_ORDER or unknown flags (EINVAL, reported), or without the
 * platform's direct_unmap (ENOSYS, reported). Cost: O(KMM_MAX_ORDER) under
 * the cache lock when it has a block; a refill adds a page allocation and
 * one direct_unmap call; zeroing costs the platform's frames_zero (hosted:
 * one fallocate hole punch per run of pages written since they were last
 * zero). */
KMM_API kmm_phys_t kmm_unmapped_alloc(struct kmm *mm, unsigned order, unsigned flags);

/* Frees an allocation of kmm_unmapped_alloc by its address alone (the cache
 * knows its order). The pages stay unmapped, in the cache, until a shrink
 * gives their block back. Misuse aborts (see above). Cost: O(KMM_MAX_ORDER
 * + log chunks) under the cache lock. */
KMM_API void kmm_unmapped_free(struct kmm *mm, kmm_phys_t addr);

/* Gives back up to nr_pages free pages of the cache to the page allocator
 * (nr_pages 0: all of them), mapping them back into the direct map first:
 * wholly free refill blocks first (they restore a whole 2 MiB mapping),
 * then the largest free blocks. Returns the pages given back. Cost: one
 * direct_restore call and one page free per block. */
KMM_API size_t kmm_unmapped_shrink(struct kmm *mm, size_t nr_pages);

/* The seed's table (Order / Free / Cached / Released), and where the
 * cache's memory is. free[o]: free blocks of order o in the cache now;
 * cached[o]: blocks of order o taken into the cache so far; released[o]:
 * blocks of order o given back so far. direct_map_mappings: how many
 * mappings the direct map is made of now (each memory range is one until
 * pages are taken out of it; every maximal run of unmapped pages inside a
 * range adds up to two). */
struct kmm_unmapped_stats {
    size_t free[KMM_MAX_ORDER + 1], cached[KMM_MAX_ORDER + 1], released[KMM_MAX_ORDER + 1];
    size_t direct_map_mappings;
    /* beside the contract: */
    size_t pages_held;        /* pages the cache holds, free or handed out (its chunks) */
    size_t pages_free;        /* of those, free */
    size_t pages_used;        /* handed out: to callers of kmm_unmapped_alloc ... */
    size_t pages_secret;      /* ... to secret memory ... */
    size_t pages_execmem;     /* ... and to execmem */
    size_t pages_nocache;     /* KMM_UNMAPPED_NOCACHE allocations live */
    size_t chunks;            /* blocks taken from the page allocator and held */
    size_t pages_beside;      /* the block beside the last refill, held still mapped for the next one */
    size_t unmap_calls;       /* direct_unmap calls so far */
    size_t restore_calls;     /* direct_restore calls so far */
    size_t pages_zeroed;      /* pages zeroed before they were handed out again */
    size_t shrinks;           /* shrinker scans and kmm_unmapped_shrink calls */
};

/* Fills *st. Takes the cache lock: O(chunks). */
KMM_API void kmm_unmapped_stats(struct kmm *mm, struct kmm_unmapped_stats *st);

/* ---- Shrinkers --------------------------------------------------------------
 *
 * A layer (or a user) that holds memory it could give back registers a
 * shrinker. When the page allocator cannot satisfy an allocation, it first
 * takes back what kmm itself holds (per-thread caches, lazily freed vmalloc
 * areas, empty slabs), retries, then asks the shrinkers, in the order they
 * were registered, to give back pages, retries again, and only then fails.
 * The unmapped cache and every zsmalloc pool (compaction) are shrinkers.
 *
 * A callback runs on whatever thread's allocation is failing, with no kmm
 * lock held, possibly on several threads at once. It may free memory of
 * any layer (that is its job) and may allocate (an allocation that fails
 * inside a callback does not run the shrinkers again). It must not wait
 * for another thread that may itself be allocating from this memory
 * system (that thread may be the one running the callback), and must not
 * unregister any shrinker, of any memory system, nor destroy a zsmalloc pool
 * or store (they unregister theirs): that aborts, since two callbacks
 * unregistering each other's shrinkers would wait for each other. count says how many pages scan could give back now
 * (an estimate; 0 skips the shrinker); scan gives back up to nr_to_scan
 * pages and returns how many it gave back.
 */
struct kmm_shrinker {
    size_t (*count)(void *arg);                    /* pages it could give back */
    size_t (*scan)(void *arg, size_t nr_to_scan);  /* give back up to nr_to_scan pages; returns how many */
    void *arg;
    const char *name;                              /* for kmm stats; may be NULL */
};

/* Registers s (by address: s must stay valid and unchanged until it is
 * unregistered). 0; -KMM_EINVAL (reported) for a NULL callback or s already
 * registered; -KMM_ENOMEM when its record cannot be allocated. Cost: a
 * metadata object and O(shrinkers) under the registry lock. */
KMM_API int kmm_register_shrinker(struct kmm *mm, const struct kmm_shrinker *s);

/* Unregisters s; when it returns, no callback of s runs or will run (it
 * waits for the ones running on other threads). Unregistering a shrinker
 * that is not registered is reported and aborts, and so is a call from
 * inside any shrinker callback (see above). Cost: O(shrinkers), plus the
 * wait. */
KMM_API void kmm_unregister_shrinker(struct kmm *mm, const struct kmm_shrinker *s);

/* Runs every shrinker as a failing allocation would, asking for nr_pages
 * in all (0: everything each can give back). Returns the pages given back.
 * For tests, and for callers that know memory is about to be short. */
KMM_API size_t kmm_shrink(struct kmm *mm, size_t nr_pages);

/* One registered shrinker, for stats. */
struct kmm_shrinker_info {
    const char *name;         /* "unmapped cache", "zsmalloc <pool>", or the caller's */
    size_t count;             /* what count() says now */
    uint64_t scans, scanned;  /* scan calls and pages they gave back so far */
};

/* Calls fn for each registered shrinker, in order. count() is called
 * outside every lock. Cost: O(shrinkers) plus the count callbacks. */
KMM_API void kmm_shrinker_for_each(struct kmm *mm, void (*fn)(void *arg, const struct kmm_shrinker_info *info),
                                   void *arg);

#ifdef __cplusplus
}
#endif
#endif
