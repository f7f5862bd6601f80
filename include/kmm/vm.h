/* kmm/vm.h - virtual memory: kmm_vmalloc, kmm_vmap and kmm_kvmalloc.
 *
 * kmm_vmalloc memory is virtually contiguous but physically not (Linux's and
 * Xen's vmalloc): its pages come from the page allocator in the largest
 * blocks that are free (one block when memory is not fragmented, single
 * pages when it is) and are mapped one after the other into an address range
 * set aside once for the purpose, the vmalloc space. Every area is followed
 * by an unmapped guard page, so running off its end faults at once instead
 * of corrupting the next area.
 *
 * The vmalloc space is reserved when it is first used (config.vmalloc_size
 * bytes; by default twice the physical memory, at least 1 GiB). Its free and
 * used ranges tile it and are kept in one balanced tree by address,
 * augmented with the largest free range below each node, so that finding the
 * lowest free range that fits a size and an alignment, freeing an area and
 * merging it with its free neighbours, and finding the area an address lies
 * in all cost O(log areas) whatever the mix of sizes.
 *
 * Mapping and unmapping are the platform's hooks (hosted: mmap of the memfd
 * that is physical memory, one call per physically contiguous run; unmapping
 * puts the range back to the inaccessible reservation). They are the cost of
 * this layer, so:
 *  - frees are lazy by default: a freed area stays mapped to its pages, which
 *    stay out of the page allocator. An allocation of the same number of
 *    pages takes the most recently freed such area back as it is: no page
 *    allocation and no platform call. Once the freed areas pass three
 *    quarters of a purge batch, one of at least three quarters of a freed
 *    area's pages does too (its tail unmapped and freed, the guard page
 *    moved up: one platform call); before that it maps a new area, so that
 *    the freed one stays whole for its own size.
 *    The others wait until KMM_VMALLOC_LAZY_PAGES pages of freed areas have
 *    gathered; then one purge unmaps them all, adjacent areas in one call,
 *    and only then gives their pages and addresses back. A freed page
 *    therefore never reaches the page allocator (and another owner) while a
 *    stale pointer can still reach it. The window: a stale pointer into a
 *    freed area reads and writes its old pages instead of faulting, until
 *    the next purge or until the area is handed out again (then it reaches
 *    the new owner's data, as a stale pointer into any allocator's memory
 *    does). ASan and Valgrind builds report such accesses at once. Config
 *    flag KMM_VMALLOC_STRICT closes the window: every free unmaps before it
 *    returns (one more call per free) and nothing is reused mapped.
 *  - the number of mappings a process may hold is limited (Linux's
 *    vm.max_map_count, 65530 by default). Each area costs one mapping per
 *    physically contiguous run, plus one (the reservation split around it:
 *    a one-page area is two); kmm counts them and keeps vmalloc below
 *    config.vmalloc_max_mappings. By default that is seven eighths of the
 *    mappings the process may still make when the vmalloc space is created
 *    (hosted: vm.max_map_count less the lines of /proc/self/maps then):
 *    the program keeps what it holds plus an eighth of the rest (about
 *    8000 on Linux's default 65530), and vmalloc gets some 57000, enough
 *    for 28000 live one-page areas. Each memory system takes its budget
 *    when its space is made: several that use vmalloc heavily in one
 *    process should set config.vmalloc_max_mappings. An allocation that
 *    would pass it purges lazily freed areas and, if that is not enough,
 *    returns NULL with errno ENOMEM and a report saying so; it never
 *    crashes.
 *
 * kmm_kvmalloc picks: kmm_malloc up to a page (if that fails, a purge of
 * lazily freed areas and kmm_malloc again, then vmalloc), kmm_vmalloc
 * above. Below a
 * page, vmalloc would spend a whole page, a guard page and a mapping call on
 * a few bytes, while a slab object costs nothing of the kind; above a page,
 * physically contiguous memory is what fragmentation makes scarce and what
 * most callers do not need, and vmalloc adds the guard page. kmm_free and
 * kmm_realloc accept memory from kmm_malloc, kmm_vmalloc and kmm_kvmalloc
 * alike.
 *
 * Errors: a free of an address that does not start a live kmm_vmalloc area
 * (the middle of one, a guard page, a freed area, twice), kmm_vfree of a
 * kmm_vmap area or kmm_vunmap of a kmm_vmalloc one is reported with the
 * address and the reason, and the process aborts.
 *
 * All functions are thread-safe. One lock guards the tree; it is never held
 * across a page allocation or a platform call.
 */
#ifndef KMM_VM_H
#define KMM_VM_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Pages of lazily freed areas gathered before a purge, by default. */
#define KMM_VMALLOC_LAZY_PAGES 8192

/* Allocates size bytes rounded up to whole pages, page aligned, virtually
 * contiguous, followed by a guard page. flags: an area mask for the pages
 * (KMM_AREA*; 0 = any) and KMM_ZERO. Returns NULL (errno ENOMEM) when pages,
 * address space or mappings run out (after purging lazily freed areas, whose
 * pages and addresses count as free) or the size is larger than the vmalloc
 * space, printing nothing except when a configured limit refused (the
 * mapping limit, or a platform without virtual-memory hooks: one line
 * saying which); or (EINVAL, one line) for size 0 or other flags. Flags:
 * an area mask, KMM_ZERO, and KMM_NOPOPULATE: the pages are mapped at
 * first touch, as mmap's are, instead of before this returns (a kernel's
 * vmalloc populates; the malloc shim's large buffers do not, so that a
 * buffer of which a program touches two pages costs two pages). With
 * KMM_ZERO, runs of 64 KiB and more are zeroed by dropping their frames
 * (the platform's frames_zero) rather than by writing them; kmm_realloc
 * keeps the flag for the area.
 * Cost: O(log areas) under the vmalloc lock; page allocations of the largest
 * free blocks (one when memory is not fragmented); one platform map call per
 * physically contiguous run. Free with kmm_vfree or kmm_free. */
KMM_API void *kmm_vmalloc(struct kmm *mm, size_t size, unsigned flags);

/* kmm_vmalloc whose address is a multiple of align (a power of two; below a
 * page means a page). EINVAL (reported) for an align that is not a power of
 * two; ENOMEM (silent) for one larger than the vmalloc space. The pages need no alignment: only the address space is aligned. */
KMM_API void *kmm_vmalloc_aligned(struct kmm *mm, size_t size, size_t align, unsigned flags);

/* Frees a kmm_vmalloc area by its start address. NULL is a no-op. Lazy
 * unless KMM_VMALLOC_STRICT (see above). Anything but the start of a live
 * kmm_vmalloc area is reported and aborts. Cost: O(log areas); every
 * KMM_VMALLOC_LAZY_PAGES pages, a purge (unmap calls for the batch, page
 * frees, O(batch log batch)). */
KMM_API void kmm_vfree(struct kmm *mm, void *addr);

/* Maps npages caller-given pages (physical addresses of page-aligned frames
 * of mm's memory, in the order given) at a new virtually contiguous address,
 * followed by a guard page. prot: KMM_PROT_READ, optionally | KMM_PROT_WRITE.
 * The pages stay the caller's: kmm_vunmap unmaps without freeing them.
 * Returns NULL (errno EINVAL, reported, for a page outside memory or not
 * aligned, a frame of secret memory or execmem (mapped nowhere else, by
 * their contract), npages 0 or a bad prot; ENOMEM as kmm_vmalloc). Cost: as
 * kmm_vmalloc without the page allocations. */
KMM_API void *kmm_vmap(struct kmm *mm, const kmm_phys_t *pages, size_t npages, unsigned prot);

/* Unmaps a kmm_vmap area at once (never lazily: the caller may free the
 * pages as soon as it returns). NULL is a no-op; anything but the start of a
 * live kmm_vmap area is reported and aborts. Cost: one unmap call. */
KMM_API void kmm_vunmap(struct kmm *mm, void *addr);

/* Physical address behind any byte of a live kmm_vmalloc or kmm_vmap area,
 * or KMM_PHYS_NONE (guard page, free range, outside the vmalloc space).
 * Cost: O(log areas + log runs) under the vmalloc lock. */
KMM_API kmm_phys_t kmm_vmalloc_to_phys(struct kmm *mm, const void *addr);

/* Is addr inside mm's vmalloc space? O(1), no lock: for callers that must
 * tell vmalloc memory from direct-map memory (Linux's is_vmalloc_addr). */
KMM_API bool kmm_is_vmalloc_addr(struct kmm *mm, const void *addr);

/* kmm_malloc for sizes up to a page, kmm_vmalloc above (see above for
 * why). Up to a page, when kmm_malloc fails (its slabs may need a few
 * contiguous pages, which fragmented memory may not have) a one-page
 * kmm_vmalloc area serves instead, as Linux's kvmalloc falls back. flags as
 * for either; any other flag is refused (EINVAL, one line naming
 * kmm_kvmalloc). Free with kmm_kvfree or kmm_free. */
KMM_API void *kmm_kvmalloc(struct kmm *mm, size_t size, unsigned flags);

/* Frees memory from kmm_kvmalloc, kmm_malloc or kmm_vmalloc (kmm_free). */
KMM_API void kmm_kvfree(struct kmm *mm, void *addr);

/* Unmaps every lazily freed area now and gives its pages and addresses back.
 * Returns the pages given back. kmm_drain calls it. Cost: one unmap call per
 * run of adjacent freed areas, plus the page frees. */
KMM_API size_t kmm_vmalloc_purge(struct kmm *mm);

/* Names the live area at addr in kmm_vmalloc_info (tag must outlive the
 * area: a string literal). Anything but the start of a live area aborts. */
KMM_API void kmm_vmalloc_set_tag(struct kmm *mm, void *addr, const char *tag);

struct kmm_vmalloc_stats {
    size_t space_bytes;            /* size of the vmalloc space (0 until first used) */
    size_t free_bytes;             /* of it, in free ranges */
    size_t largest_free_bytes;     /* the largest free range */
    size_t free_ranges;
    size_t areas;                  /* live kmm_vmalloc areas */
    size_t vmap_areas;             /* live kmm_vmap areas */
    size_t pages;                  /* pages backing live kmm_vmalloc areas */
    size_t vmap_pages;             /* caller pages mapped by live kmm_vmap areas */
    size_t lazy_areas, lazy_pages; /* freed, waiting for the next purge (pages still held) */
    size_t mappings;               /* mappings held now (runs + one per area, + one for the reservation), as counted against the limit */
    size_t max_mappings;           /* the limit */
    uint64_t map_calls, unmap_calls;   /* platform calls since creation */
    uint64_t allocs, frees, purges, refused_mappings;
    uint64_t reused;               /* allocations that took a lazily freed area back, mapped */
};

/* Fills *st: counters, O(1) under the vmalloc lock. */
KMM_API void kmm_vmalloc_stats(struct kmm *mm, struct kmm_vmalloc_stats *st);

/* One area of the vmalloc space, as /proc/vmallocinfo shows it. */
struct kmm_vmalloc_area_info {
    uintptr_t start, end;          /* [start, end): the area and its guard page */
    uintptr_t guard;               /* [guard, end): not mapped, the guard page */
    size_t size;                   /* bytes asked for */
    size_t pages, runs;            /* pages mapped; physically contiguous runs (one mapping each) */
    const char *kind;              /* "vmalloc", "vmap", "vmap-ro", "lazy-free" */
    const char *tag;               /* kmm_vmalloc_set_tag's, else the function that made it */
    const void *caller;            /* return address of the call that made it */
};

/* Calls fn for every area in address order, under the vmalloc lock (fn must
 * not call into mm). Cost: O(areas). */
KMM_API void kmm_vmalloc_info(struct kmm *mm, void (*fn)(void *arg, const struct kmm_vmalloc_area_info *a),
                              void *arg);

/* The area addr lies in (its pages or its guard page), as kmm_vmalloc_info
 * would report it: true and *out filled, or false when addr is in no area.
 * For fault handlers that explain an address. Takes the vmalloc lock: not
 * from inside kmm's critical sections. Cost: O(log areas). */
KMM_API bool kmm_vmalloc_area_at(struct kmm *mm, const void *addr, struct kmm_vmalloc_area_info *out);

#ifdef __cplusplus
}
#endif
#endif
