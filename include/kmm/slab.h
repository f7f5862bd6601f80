/* kmm/slab.h - small objects: kmm_malloc and caches of fixed-size objects.
 *
 * kmm_malloc memory is physically contiguous at every size (Xen's xmalloc,
 * Linux's kmalloc): sizes up to the largest size class come from slabs,
 * larger sizes from kmm_alloc_pages_exact (the unused tail given back, so
 * 20 KiB holds 5 pages of 4 KiB, not 8).
 *
 * A slab is one buddy block of 1, 2, 4 or 8 pages, taken from the page
 * allocator when a cache needs one and given back when it empties (a few
 * empty slabs are kept per cache, so a cache that breathes does not churn the
 * page allocator). Every size class above 1 KiB is sized to fill its slab,
 * so such a slab wastes at most 16 bytes per object; up to 1 KiB there is a
 * class every 16 bytes, and a slab wastes at most 1/16 of itself.
 *
 * Ownership is kept apart from the objects: a per-page map names the slab a
 * page belongs to, and each slab has a bitmap of the objects it has handed
 * out and a byte per object saying whether a caller holds it. There is no
 * header in front of an object, so no buffer overflow can change what
 * kmm_free believes, and a free reads no byte of the object. A free is
 * checked against that metadata: a pointer kmm never gave out, one into the
 * middle of an object, or a double free is reported with the address and
 * the reason, and the process aborts.
 *
 * Each thread keeps, per cache, a magazine of free objects (a stack of up
 * to 64 KiB of them, Bonwick's magazines): kmm_malloc and kmm_free touch no
 * lock and no shared cache line unless the magazine is empty or full, and
 * then move half a magazine at once under the cache's lock. A free from
 * another thread than the allocating one costs the same as a local one.
 *
 * With KMM_SLAB_POISON (config.slab_flags, kmm/core.h) a free object holds
 * a canary (a secret mixed with its address) in its second word (the first
 * in 8-byte objects; after the object when the cache has a constructor),
 * and an allocation finding it overwritten reports a write after free;
 * every call then takes the slow path.
 *
 * All functions are thread-safe, and none costs more than O(objects in one
 * magazine) except kmm_cache_destroy, kmm_check and the stats.
 */
#ifndef KMM_SLAB_H
#define KMM_SLAB_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

struct kmm_cache;

/* Minimum alignment of kmm_malloc memory of 16 bytes or more (alignof(max_align_t));
 * smaller sizes are aligned to 16 too. */
#define KMM_MALLOC_ALIGN 16

/* Allocates size bytes (size 0 is taken as 1), physically contiguous,
 * aligned to KMM_MALLOC_ALIGN; up to the largest size class from a slab,
 * above it page aligned from kmm_alloc_pages_exact. flags: an area mask
 * (KMM_AREA*) and KMM_ZERO. Returns NULL with errno ENOMEM, printing
 * nothing, when memory is out or the size is too large to ever be served
 * (above the largest block, SIZE_MAX), as POSIX malloc; EINVAL, with one
 * line naming kmm_malloc, for any other flag. The kmm_malloc family
 * (kmm_calloc, kmm_realloc, kmm_malloc_aligned) follows the same rule.
 * Cost: lock-free from the thread's magazine; otherwise one cache lock per
 * half magazine; above the largest class, kmm_alloc_pages_exact. */
KMM_API void *kmm_malloc(struct kmm *mm, size_t size, unsigned flags);

/* kmm_malloc of n * size bytes, zeroed. An n * size that overflows gives
 * NULL (errno ENOMEM, silent, as glibc's calloc), never a short block. */
KMM_API void *kmm_calloc(struct kmm *mm, size_t n, size_t size, unsigned flags);

/* Resizes p (NULL: kmm_malloc). In place when the new size fits the object's
 * size class and is more than half of it; a block of pages shrinking to a
 * size above the largest class stays in place and gives its tail pages back
 * (to a class size, it moves into a slab). Otherwise allocates, copies
 * min(old, new) bytes and frees p. Size 0 frees p and returns NULL. On
 * failure returns NULL (errors as kmm_malloc) and leaves p intact. KMM_ZERO zeroes the bytes past
 * the old usable size. Takes memory from kmm_malloc* / kmm_calloc /
 * kmm_realloc and, with the virtual-memory layer, from kmm_vmalloc* /
 * kmm_kvmalloc: a kmm_vmalloc area stays one (not physically contiguous,
 * whatever the new size), resized in place when the address space after it
 * allows (tail pages unmapped and freed, or pages mapped after the last),
 * else moved to a new area (page aligned; an alignment asked of
 * kmm_vmalloc_aligned is not kept). Anything else (a kmm_cache object, a
 * kmm_vmap area, the middle of an object, freed memory) is reported and
 * aborts. */
KMM_API void *kmm_realloc(struct kmm *mm, void *p, size_t size, unsigned flags);

/* kmm_malloc with the address a multiple of align (a power of two; smaller
 * than KMM_MALLOC_ALIGN means KMM_MALLOC_ALIGN). Up to the page size, from
 * the smallest size class whose objects are all aligned so (every power of
 * two is a class), so nothing is wasted beyond that class's rounding; above
 * the page size, from kmm_alloc_pages_aligned, which gives the unused parts
 * of the aligned block back. align not a power of two (0 included): NULL,
 * errno EINVAL, one line; a size or alignment too large to serve: ENOMEM,
 * silent. */
KMM_API void *kmm_malloc_aligned(struct kmm *mm, size_t size, size_t align, unsigned flags);

/* Frees memory from kmm_malloc*, kmm_calloc, kmm_realloc (and, with the
 * virtual-memory layer, kmm_vmalloc / kmm_kvmalloc). NULL is a no-op.
 * Anything else, a pointer into the middle of an object, or a second free is
 * reported and aborts. Cost: lock-free into the thread's magazine. */
KMM_API void kmm_free(struct kmm *mm, void *p);

/* The bytes usable at p (at least what was asked): the size class, or the
 * pages held. p must be live kmm_malloc memory (else reported and aborts). */
KMM_API size_t kmm_usable_size(struct kmm *mm, const void *p);

/* The usable size kmm_malloc(size) (align 0) or kmm_malloc_aligned(size,
 * align) would give: a size class, or whole pages above the classes
 * (jemalloc's nallocx). 0 for a size too large or an alignment not a power
 * of two. O(classes) at worst; no allocation, no lock. */
KMM_API size_t kmm_malloc_good_size(struct kmm *mm, size_t size, size_t align);

/* ---- caches of fixed-size objects (Linux's kmem_cache) -------------------- */

/* Creates a cache of objects of size bytes, aligned to align (0 or a power
 * of two up to the page size; objects are aligned to at least 8 bytes). An
 * object's slot (the size, plus the canary's word when there is a
 * constructor, rounded up to the alignment) must fit in 8 pages. ctor, if
 * given, runs once on each object when its slab is created; objects are
 * expected back in their constructed state (the canary then sits after the
 * object, not in it). name is copied (at most 31
 * characters are kept) and shows in the stats. Returns NULL on bad arguments
 * (EINVAL, reported) or when memory is out (ENOMEM).
 * Cost: one metadata allocation; no slab is made until the first object. */
KMM_API struct kmm_cache *kmm_cache_create(struct kmm *mm, const char *name, size_t size, size_t align,
                                           void (*ctor)(void *));

/* An object of the cache, or NULL when memory is out (errno ENOMEM).
 * flags: an area mask for the slab pages, KMM_ZERO (refused, EINVAL, for a
 * cache with a constructor: zeroing would undo it); any other flag is
 * refused (EINVAL, one line). Objects of a cache come
 * from slabs of any area its allocations asked for: a cache used with an
 * area mask should always be used with that mask.
 * Cost: lock-free from the thread's magazine. */
KMM_API void *kmm_cache_alloc(struct kmm_cache *c, unsigned flags);

/* Returns an object to its cache. NULL is a no-op; an object of another
 * cache, a pointer into an object, or a double free is reported and aborts. */
KMM_API void kmm_cache_free(struct kmm_cache *c, void *p);

/* Destroys a cache. No thread may use it meanwhile. Objects still allocated
 * are reported (count and cache name) and their slabs are kept, never
 * reused, so a stale pointer cannot corrupt other memory; everything else
 * goes back to the page allocator. NULL is a no-op. Cost: O(slabs + threads). */
KMM_API void kmm_cache_destroy(struct kmm_cache *c);

/* ---- stats, like /proc/slabinfo ------------------------------------------ */

struct kmm_cache_stats {
    char name[32];
    size_t object_size;     /* bytes asked for at creation (kmalloc-N: the class size) */
    size_t slot_size;       /* bytes each object takes in its slab (canary included) */
    size_t align;
    size_t objects_per_slab;
    size_t pages_per_slab;
    size_t active_objects;  /* held by callers */
    size_t cached_objects;  /* free, in per-thread magazines */
    size_t depot_objects;   /* free, in the cache's depot: given back by full magazines, for the next refill */
    size_t total_objects;   /* in all slabs: active + cached + free in slabs (a fallback slab of a smaller order holds fewer) */
    size_t slabs;           /* slabs held, empty ones included */
    size_t empty_slabs;     /* slabs with no object out, kept for reuse */
    size_t pages;           /* pages of all slabs: slabs * pages_per_slab, less where a slab fell back to a smaller order */
    size_t waste_bytes;     /* pages * page_size - active_objects * object_size */
};

/* Stats of one cache. Other threads may be allocating meanwhile: the figures
 * are each read once, not one snapshot. Cost: O(threads). */
KMM_API void kmm_cache_stats(struct kmm_cache *c, struct kmm_cache_stats *st);

/* Stats of every cache of mm with at least one slab or one object (the
 * kmalloc-N caches first, by size, "any area" first at each size; then the
 * kmm_cache_create caches in creation order); fills at most max entries and
 * returns how many there are in all. Cost: O(caches x threads). */
KMM_API size_t kmm_slab_stats(struct kmm *mm, struct kmm_cache_stats *st, size_t max);

/* The largest size kmm_malloc serves from a slab for this memory system
 * (it depends on the page size); larger sizes are whole pages. */
KMM_API size_t kmm_malloc_max_slab_size(struct kmm *mm);

#ifdef __cplusplus
}
#endif
#endif
