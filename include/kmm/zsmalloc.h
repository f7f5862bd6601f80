/* kmm/zsmalloc.h - compressed objects: handles to objects of 1 byte to a
 * page, packed into zspages of non-contiguous pages.
 *
 * Where to use it: storing many objects of odd sizes (compressed pages)
 * densely. An object may begin at the end of one page and continue at the
 * start of another, so a class of objects wastes almost nothing at the
 * page boundaries; the pages of a zspage need not be physically contiguous
 * (order-0 pages only: no fragmentation pressure). In exchange, objects are
 * reached through a handle, not a pointer: kmm_zs_map gives a pointer for
 * the time of a mapping, kmm_zs_read / kmm_zs_write copy.
 *
 * Guarantees:
 *  - A handle is a number, never an address: a stray write into the data
 *    cannot redirect one, and a free, map or copy of an unknown, stale
 *    (already freed) or foreign handle aborts with the handle and the
 *    reason. The pool's bookkeeping (handles, zspages, classes) lives in
 *    kmm's metadata memory, out of reach of a user's overflow.
 *  - The pages of a pool are owned by it: kmm_free_pages (or any other
 *    layer's free) of one aborts naming the owner.
 *  - kmm_zs_map and kmm_zs_unmap never allocate and never fail.
 *  - kmm_zs_compact moves objects between zspages; handles stay valid, and
 *    mapped objects are not moved.
 *  - Thread-safe: one lock per pool, held for bookkeeping and short copies,
 *    never around a caller's work (compressing, decompressing).
 */
#ifndef KMM_ZSMALLOC_H
#define KMM_ZSMALLOC_H

#include <kmm/core.h>

#ifdef __cplusplus
extern "C" {
#endif

struct kmm_zspool;

/* kmm_zs_map modes: what the caller does with the object while mapped. */
#define KMM_ZS_RO 1   /* reads it */
#define KMM_ZS_WO 2   /* overwrites it (a spanning object is not copied in) */
#define KMM_ZS_RW 3   /* both */

/* Objects one thread may hold mapped at once, and mappings of a pool at
 * once (threads beyond wait for one to be unmapped): KMM_ZS_MAP_SLOTS -
 * KMM_ZS_MAP_NEST threads' first mappings, and the nested ones of one
 * thread. */
#define KMM_ZS_MAP_NEST  4
#define KMM_ZS_MAP_SLOTS 16

/* Pool totals. The first four are the contract; the rest say where the
 * memory goes: the pool holds (pages_used + pages_stashed) * page size +
 * meta_bytes bytes. */
struct kmm_zs_stats {
    size_t objects;          /* live objects */
    size_t obj_bytes;        /* their bytes, by class size (usable size) */
    size_t pages_used;       /* data pages of its zspages now */
    size_t pages_stashed;    /* pages taken in a batch, waiting for zspages (at most 16; none when the pool is empty) */
    size_t pages_compacted;  /* pages freed by compaction so far */
    size_t pages_max;        /* most data pages held at once */
    size_t zspages;          /* zspages held now */
    size_t meta_bytes;       /* metadata memory: handle table, zspage descriptors, map buffers, the pool */
    size_t nr_classes;       /* size classes (after merging) */
    size_t page_size;
};

/* One size class (see kmm_zs_class_stats). */
struct kmm_zs_class_stats {
    size_t size;             /* bytes per object: the largest request it takes */
    size_t objects;          /* live objects */
    size_t zspages;          /* zspages */
    size_t pages;            /* pages those zspages hold now (a zspage gets its pages as it fills) */
    size_t pages_per_zspage; /* pages of a full zspage */
    size_t objs_per_zspage;
    size_t free_objects;     /* room in the zspages held (objects of pages not yet held included) */
};

/* How a pool lays out its classes (kmm_zs_create_config); 0 = default. */
struct kmm_zs_config {
    unsigned class_step;     /* bytes between size classes: a power of two, 8 .. 256 (default 16) */
    unsigned max_pages;      /* pages of a zspage at most: 1 .. 64 (default 16) */
};

/* A new, empty pool of mm named name (kept, up to 31 bytes). Size classes
 * are made for mm's page size. NULL + errno (ENOMEM, EINVAL) on failure.
 * Costs a few KiB of metadata and KMM_ZS_MAP_SLOTS pages for the map
 * buffers. */
KMM_API struct kmm_zspool *kmm_zs_create(struct kmm *mm, const char *name);

/* kmm_zs_create with a class layout of one's own (NULL = the default). */
KMM_API struct kmm_zspool *kmm_zs_create_config(struct kmm *mm, const char *name, const struct kmm_zs_config *cfg);

/* Frees every object and page of pool, and pool. Aborts if an object is
 * mapped. O(pages). */
KMM_API void kmm_zs_destroy(struct kmm_zspool *pool);

/* A handle to a new object of size bytes (1 .. page size), uninitialised
 * unless flags has KMM_ZERO; flags may also carry an area mask (the areas
 * a page allocated for this call comes from; the object may also land in a
 * page the pool already has). 0 + errno ENOMEM on failure (the pool
 * unchanged), EINVAL for a size of 0 or above a page, or unknown flags.
 * O(1): a lock, a free object of the fullest zspage of the class; a page
 * allocation when the class has no room. */
KMM_API uint64_t kmm_zs_malloc(struct kmm_zspool *pool, size_t size, unsigned flags);

/* Frees the object; aborts on an unknown, stale, foreign or mapped handle.
 * 0 is a no-op. O(1); frees the zspage's pages when it empties. */
KMM_API void kmm_zs_free(struct kmm_zspool *pool, uint64_t handle);

/* The bytes the object can hold (its class size: at least what was asked). */
KMM_API size_t kmm_zs_usable_size(struct kmm_zspool *pool, uint64_t handle);

/* A pointer to the object until kmm_zs_unmap, for mode (KMM_ZS_RO, _WO,
 * _RW). An object inside one page is given in place (direct map); one that
 * spans two pages is copied into one of the pool's map buffers (except in
 * KMM_ZS_WO mode) and copied back at unmap (except in KMM_ZS_RO mode):
 * a copy of at most a page, some 100 ns, where a two-page mapping would
 * cost microseconds (README "zsmalloc"). Never allocates, never fails: a
 * call waits when KMM_ZS_MAP_SLOTS mappings are held, and aborts when the
 * calling thread already holds KMM_ZS_MAP_NEST. The object is not moved by
 * compaction while mapped. Writing through a KMM_ZS_RO mapping is a bug the
 * pool may not see. As with Linux's zs_map_object (atomic context), a
 * thread holding a mapping must not wait for another thread that maps from
 * the same pool: the slots are shared, and nested mappings (a second one
 * held at once) are served to one thread at a time. A thread must unmap
 * before it exits. */
KMM_API void *kmm_zs_map(struct kmm_zspool *pool, uint64_t handle, int mode);

/* Ends the calling thread's mapping of handle; aborts if it has none. */
KMM_API void kmm_zs_unmap(struct kmm_zspool *pool, uint64_t handle);

/* Copy len bytes at offset of the object out to dst / in from src: one lock,
 * at most two copies. 0, or -KMM_EINVAL (reported, nothing copied) when
 * offset + len passes the object's usable size; aborts on a bad handle. */
KMM_API int kmm_zs_read(struct kmm_zspool *pool, uint64_t handle, size_t offset, void *dst, size_t len);
KMM_API int kmm_zs_write(struct kmm_zspool *pool, uint64_t handle, size_t offset, const void *src, size_t len);

/* Moves objects out of the sparsest zspages of each class into the fullest
 * ones, and frees the pages emptied; returns the pages freed. Mapped
 * objects stay; handles stay valid. The pool lock is dropped between
 * zspages, so other calls proceed. Also run by the pool's shrinker
 * ("zsmalloc <name>", kmm/unmapped.h) when a page allocation of mm fails,
 * then stopping once the pages needed came back. O(objects moved). */
KMM_API size_t kmm_zs_compact(struct kmm_zspool *pool);

/* Pool totals. O(1). */
KMM_API void kmm_zs_stats(struct kmm_zspool *pool, struct kmm_zs_stats *st);

/* Fills up to max entries, smallest class first; returns the number of
 * classes (ask with max 0 for the count). */
KMM_API size_t kmm_zs_class_stats(struct kmm_zspool *pool, struct kmm_zs_class_stats *out, size_t max);

/* The pool's name. */
KMM_API const char *kmm_zs_name(struct kmm_zspool *pool);

/* Calls fn for every pool of mm (for tools that print stats), with mm's
 * list of pools locked: fn may call kmm_zs_stats and the like, but must
 * not create or destroy a pool, nor allocate from mm (a failing allocation
 * runs the shrinkers, whose callbacks may). */
KMM_API void kmm_zs_for_each(struct kmm *mm, void (*fn)(struct kmm_zspool *pool, void *arg), void *arg);

#ifdef __cplusplus
}
#endif
#endif
