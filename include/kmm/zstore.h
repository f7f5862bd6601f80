/* kmm/zstore.h - a compressed page store (zram-like) on a zsmalloc pool.
 *
 * Pages are stored by index (0 .. nr_pages - 1), compressed with LZ4 (the
 * default) or zstd, each as one kmm_zs object. A page filled with one
 * repeated machine word is stored as that word, with no allocation at all;
 * a page that does not compress below the huge threshold is stored whole.
 * An index never written (or discarded) reads as zeros.
 *
 * Hosted only (it links liblz4 and libzstd); the freestanding core does not
 * have it. Thread-safe: writes and reads of different indexes run in
 * parallel, each thread compressing with its own context outside every
 * lock; operations on one index are serialised by a lock bit of its entry.
 *
 * Errors return a negative KMM_E* code, report why, and change nothing.
 */
#ifndef KMM_ZSTORE_H
#define KMM_ZSTORE_H

#include <kmm/core.h>
#include <kmm/zsmalloc.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KMM_ENOSPC 28

struct kmm_zstore;

/* zram's mm_stat, field by field, then more. */
struct kmm_zstore_stats {
    uint64_t orig_data_size;   /* bytes of pages stored (same-filled ones included) */
    uint64_t compr_data_size;  /* bytes of their compressed forms (a huge page counts a page) */
    uint64_t mem_used_total;   /* bytes the pool holds: its pages and its metadata */
    uint64_t mem_limit;        /* 0 = none */
    uint64_t mem_used_max;     /* most mem_used_total so far */
    uint64_t same_pages;       /* pages stored as one repeated word */
    uint64_t pages_compacted;  /* pages freed by compaction */
    uint64_t huge_pages;       /* pages stored whole */
    /* beside zram's */
    uint64_t pages_stored;     /* indexes holding a page */
    uint64_t nr_pages;         /* indexes of the store */
    uint64_t page_size;
    uint64_t huge_threshold;   /* compressed sizes above this are stored whole */
    /* calls on an index of the store (one beyond it counts nowhere): writes
     * and reads made; writes that failed (ENOMEM, ENOSPC); of them, refused
     * by the memory limit */
    uint64_t writes, reads, write_failed, limit_refused;
    char algo[8];              /* "lz4" or "zstd" */
};

/* A store of nr_pages pages of mm's page size, compressed with algo ("lz4"
 * or "zstd"; NULL = "lz4"), on a new pool named "zstore". NULL + errno on
 * failure (EINVAL for an unknown algorithm or nr_pages 0, with a report;
 * ENOMEM). Costs 16 bytes of metadata per index, allocated at once, and a
 * codec context per thread compressing at once (LZ4: 16 KiB and a page;
 * zstd at level 3: 88 KiB at 4 KiB pages, 650 KiB at 64 KiB, and a page)
 * and, for zstd, per thread decompressing at once (94 KiB): made when
 * first needed (one of each with the store), kept until destroy, all in
 * kmm's metadata memory. */
KMM_API struct kmm_zstore *kmm_zstore_create(struct kmm *mm, const char *algo, uint64_t nr_pages);

/* Frees every stored page, the compression contexts, the pool and zs.
 * O(nr_pages). */
KMM_API void kmm_zstore_destroy(struct kmm_zstore *zs);

/* Stores one page (page_size bytes at page) at index, replacing what was
 * there. 0; -KMM_EINVAL for an index beyond the store; -KMM_ENOSPC when the
 * memory limit would be passed; -KMM_ENOMEM. On failure the index keeps its
 * old contents. Cost: one compression (LZ4: some microseconds per 4 KiB),
 * one kmm_zs_malloc and a copy. */
KMM_API int kmm_zstore_write(struct kmm_zstore *zs, uint64_t index, const void *page);

/* Fills page (page_size bytes) with the page at index: zeros if none was
 * written. 0, or -KMM_EINVAL for an index beyond the store. */
KMM_API int kmm_zstore_read(struct kmm_zstore *zs, uint64_t index, void *page);

/* Forgets the page at index (it reads as zeros again). 0, or -KMM_EINVAL. */
KMM_API int kmm_zstore_discard(struct kmm_zstore *zs, uint64_t index);

/* Refuses writes once mem_used_total would pass bytes (0 = no limit, the
 * default), as zram does: the object is allocated, and freed again with
 * -KMM_ENOSPC when the pool is then above the limit. Metadata the refused
 * write made (a chunk of the pool's handle table) stays, so mem_used_total
 * may end a few KiB above the limit; writers at once may refuse more than
 * needed. Stored pages stay even when already above. */
KMM_API void kmm_zstore_set_limit(struct kmm_zstore *zs, uint64_t bytes);

/* Pages whose compressed size is above bytes are stored whole (default:
 * 15/16 of a page, where compression saves too little to pay for
 * decompression). 0, or -KMM_EINVAL above a page. */
KMM_API int kmm_zstore_set_huge_threshold(struct kmm_zstore *zs, uint64_t bytes);

/* kmm_zs_compact of the store's pool: pages freed. */
KMM_API size_t kmm_zstore_compact(struct kmm_zstore *zs);

KMM_API void kmm_zstore_stats(struct kmm_zstore *zs, struct kmm_zstore_stats *st);

/* Verifies the store, for tests and debugging: every index's entry is
 * consistent (one kind: empty, same-filled or an object; an object's size
 * fits its kind and its object), every object's handle is live in the pool,
 * the counters (pages_stored, same_pages, huge_pages, compr_data_size) and
 * the pool's object count agree with the table; then kmm_check(mm). 0, or
 * -1 after reporting the first violation. Call it while no other thread
 * uses the store: entries are read one at a time. O(nr_pages). */
KMM_API int kmm_zstore_check(struct kmm_zstore *zs);

/* The store's pool (for its class stats). */
KMM_API struct kmm_zspool *kmm_zstore_pool(struct kmm_zstore *zs);

#ifdef __cplusplus
}
#endif
#endif
