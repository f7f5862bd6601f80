/* kmm/core.h - one memory system: creation, configuration, flags, checks.
 *
 * A `struct kmm` owns a range of physical memory (frames), the direct map that
 * makes it addressable, and every allocator built on it. Every kmm call takes
 * the memory system it works on; kmm_default() gives a process-wide one.
 *
 * Glossary (the terms are easy to confuse):
 *   page      - page_size bytes of memory, the unit of the page allocator.
 *   frame     - the physical page behind a page; its address is a kmm_phys_t.
 *   block     - 2^order contiguous pages, naturally aligned (a buddy block).
 *   physical address  - offset into the memory system's physical memory.
 *   direct-map address - the one virtual address at which every frame is
 *               always mapped: direct_map + physical address.
 *
 * This header uses only <stddef.h>, <stdint.h> and <stdbool.h>, so that
 * freestanding code can include it.
 */
#ifndef KMM_CORE_H
#define KMM_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define KMM_API __attribute__((visibility("default")))
#else
#define KMM_API
#endif

typedef uint64_t kmm_phys_t;             /* physical address */
#define KMM_PHYS_NONE ((kmm_phys_t)-1)   /* "no physical address": failure */

#define KMM_MAX_AREAS 6                  /* memory areas a memory system can have */
#define KMM_MAX_ORDER 20                 /* largest buddy block: 2^20 pages (4 GiB of 4 KiB pages) */

/* Error numbers: the values Linux gives them, so `-KMM_EBUSY == -EBUSY` there. */
#define KMM_ENOMEM 12
#define KMM_EBUSY  16
#define KMM_EINVAL 22
#define KMM_EIO    5
#define KMM_EAGAIN 11    /* secret memory: locking it would pass RLIMIT_MEMLOCK */
#define KMM_ENOSYS 38    /* the platform cannot do it (no direct-map hooks) */

struct kmm;
struct kmm_platform;

struct kmm_config {
    size_t   page_size;                  /* 0 = 4096; a power of two from 4 KiB to 1 MiB, at least the host page size when hosted */
    uint64_t mem_size;                   /* bytes of physical memory; 0 = default (64 GiB hosted: sparse, costs nothing until touched) */
    const uint64_t *area_limits;         /* ascending upper bounds (exclusive, page aligned) of areas; NULL = default */
    unsigned nr_areas;                   /* entries in area_limits, at most KMM_MAX_AREAS */
    const struct kmm_platform *platform; /* NULL = hosted Linux (memfd + mmap) */
    /* virtual memory (kmm/vm.h); 0 = the default for each */
    uint64_t vmalloc_size;               /* bytes of address space for vmalloc; default 2 x memory, at least 1 GiB */
    size_t   vmalloc_max_mappings;       /* mappings vmalloc may hold; default 7/8 of what the process may still make (kmm/vm.h) */
    unsigned vmalloc_flags;              /* KMM_VMALLOC_STRICT, KMM_VMALLOC_SPREAD */
    /* small objects (kmm/slab.h) */
    unsigned slab_flags;                 /* KMM_SLAB_POISON */
};

/* vmalloc_flags: unmap every freed vmalloc area before kmm_vfree returns,
 * instead of in batches (see kmm/vm.h). */
#define KMM_VMALLOC_STRICT 1u
/* vmalloc_flags: place each new area at the lowest fit at or after the end
 * of the last one placed (next fit), wrapping at the end of the space,
 * instead of at the lowest fit: the address of a freed area is not reused
 * until the space has been gone round (2 x memory), so with STRICT a stale
 * pointer into a freed buffer faults instead of reaching the next one
 * (the malloc shim's hardened mode). Costs one more tree descent when the
 * rest of the space is full. */
#define KMM_VMALLOC_SPREAD 2u

/* slab_flags: catch writes after free (Linux's slub_debug=P, in part).
 * Every free slot then carries a canary word (secret ^ address) that each
 * allocation checks and kmm_check verifies, so a write into freed memory is
 * reported ("free object overwritten (write after free?)") when the slot is
 * next handed out. It costs the fast paths: every kmm_malloc, kmm_free and
 * cache call takes the slow path, and each touches the object's line on
 * free. Without it (the default), a double free, a free of the middle of
 * an object or of memory kmm never handed out is still caught at once:
 * those checks use the slabs' metadata, not the objects. */
#define KMM_SLAB_POISON 1u

/* Default areas (area_limits == NULL): like Linux's DMA, DMA32 and NORMAL zones. */
#define KMM_DEFAULT_AREA_LIMITS { 16ull << 20, 4ull << 30, UINT64_MAX }
#define KMM_DEFAULT_NR_AREAS 3

/* Allocation flags: an area mask (bits 0-5) and modifiers.
 * An allocation names the areas it accepts. Among them it prefers the highest
 * and falls back to the next lower accepted area when one cannot satisfy it,
 * keeping the scarce low areas for the callers that need them (Linux's zone
 * fallback). No area bit at all means any area. */
#define KMM_AREA(n)       (1u << (n))
#define KMM_AREA_MASK     0x3fu
#define KMM_AREAS_BELOW(n) ((1u << ((n) + 1)) - 1)   /* areas 0..n */
#define KMM_AREA_LOWEST   KMM_AREA(0)   /* default areas: below 16 MiB */
#define KMM_AREA_LOW      KMM_AREA(1)   /* default areas: 16 MiB .. 4 GiB (use KMM_AREAS_BELOW(1) for "below 4 GiB") */
#define KMM_AREA_NORMAL   KMM_AREA(2)   /* default areas: the rest */
#define KMM_AREA_ANY      KMM_AREA_MASK
#define KMM_ZERO          (1u << 8)     /* zero the memory */
#define KMM_NOZERO        (1u << 9)     /* unmapped cache: skip the zeroing it otherwise does */
#define KMM_NOPOPULATE    (1u << 10)    /* vmalloc family: pages mapped at first touch (see kmm/vm.h) */

/* Page protections of a mapping (kmm_vmap, the platform's vm_map). */
#define KMM_PROT_READ  1u
#define KMM_PROT_WRITE 2u
#define KMM_PROT_EXEC  4u   /* the platform's vm_map only (execmem); never with KMM_PROT_WRITE, and kmm_vmap refuses it */

/* Creates a memory system. cfg may be NULL (all defaults).
 * Returns NULL on failure with errno set (hosted) to EINVAL for a bad
 * configuration or ENOMEM when the platform cannot provide the memory;
 * nothing is printed (there is no memory system to report through yet).
 *
 * Errors of every call (README "Errors"): out of memory, and a size too
 * large to ever be served, give NULL with errno ENOMEM and print nothing
 * (as malloc); a bad argument (order, alignment not a power of two, zero
 * pages, unknown flags) gives NULL with EINVAL and one line naming the
 * function called; a refused call changes nothing. Misuse (a bad free,
 * a call on a destroyed memory system) is reported and aborts.
 * Costs: the platform's set-up (hosted: memfd_create, ftruncate, two mmaps)
 * plus O(number of areas x KMM_MAX_ORDER); metadata is one byte per page,
 * left untouched (and so not resident) until used. */
KMM_API struct kmm *kmm_create(const struct kmm_config *cfg);

/* Destroys a memory system and everything allocated from it; pointers into it
 * become invalid. No other thread may be using it. NULL is a no-op.
 * A later call on mm (this one included) is reported ("kmm: <call>:
 * memory system 0x... was destroyed") and aborts: mm is left a tombstone
 * that every fast path misses. Hosted, the tombstone is one page, and the
 * last 64 are kept; on the static platform it stays in the caller's memory
 * until reused; on other platforms with meta_alloc it is freed at once and
 * a stale call is not recognised. Cache handles (kmm_cache_create) die with
 * their memory system: their memory is freed, and a kmm_cache_* call on
 * one afterwards is undefined (it is not recognised). */
KMM_API void kmm_destroy(struct kmm *mm);

/* The process-wide memory system, created with the defaults on first use
 * (thread-safe). Aborts with a message if it cannot be created. */
KMM_API struct kmm *kmm_default(void);

/* Sets the configuration kmm_default() will create its memory system with
 * (copied; area_limits must stay valid, platform must be NULL). 0, or
 * -KMM_EBUSY if the default memory system exists (or is being made)
 * already, -KMM_EINVAL for a configuration kmm_create would refuse. The
 * malloc shim uses it before its first allocation. */
KMM_API int kmm_default_set_config(const struct kmm_config *cfg);

/* Full invariant check of every layer: 0 if all hold, else -1 after reporting
 * the first violation (address and invariant) through the platform's report
 * hook (stderr when hosted). Costs O(pages) reads of metadata; takes every
 * lock of mm in turn. Other threads must not use mm meanwhile. */
KMM_API int kmm_check(struct kmm *mm);

/* Gives back every page and object held in per-thread caches to the layer
 * below, purges lazily freed vmalloc areas, and gives empty slabs and the
 * release pass's free chunks back. The calling thread's caches are emptied
 * before it returns; so are those of every thread idle in kmm at that
 * moment when the platform has barrier_all (hosted: membarrier(2)); a
 * thread inside a kmm call then (or every other thread, without the hook)
 * empties its own at its next call into mm, and at thread exit. A failing
 * allocation does the same before it fails. Cost: one membarrier system
 * call, O(threads + caches) under mm's locks, and the frees it causes. */
KMM_API void kmm_drain(struct kmm *mm);

/* The small objects of kmm's own bookkeeping (vmalloc's tree nodes and run
 * arrays, ...), kept in metadata memory apart from the direct map: chunks of
 * 4 KiB cut into classes of 16 .. 1024 bytes; larger ones are mapped whole.
 * Slab descriptors, magazines and the page metadata are not counted here. */
struct kmm_meta_stats {
    size_t objects;           /* small objects in use */
    size_t object_bytes;      /* their bytes, by class size */
    size_t chunks;            /* chunks held (a few empty ones per class until kmm_drain) */
    size_t held_bytes;        /* chunks * 4 KiB */
    size_t large_objects;     /* objects above 1 KiB */
    size_t large_bytes;       /* their bytes as asked */
    size_t large_held_bytes;  /* and as held (whole pages) */
};

/* Fills *st. Takes each class's lock briefly: O(classes). */
KMM_API void kmm_meta_stats(struct kmm *mm, struct kmm_meta_stats *st);

/* ---- Fault injection, for tests (Linux's fail_page_alloc and fail-nth) ----
 * Makes calls at the chosen sites fail: counting from this call, the nth
 * call at any of the sites fails, and so do the times - 1 calls after it
 * (times 0 = every call from the nth on). nth 0 turns injection off.
 * The sites are the page and metadata allocations the layers above the page
 * allocator make (slabs, large kmm_malloc, caches, magazines, vmalloc) and the
 * mapping calls of vmalloc, so every such
 * layer can be driven through each of its failure paths. The page allocator's
 * own calls are tested through the platform hooks instead. Costs nothing
 * while off beyond one test per allocation of a slab or of metadata. */
#define KMM_FAULT_PAGES 1u   /* pages taken from the page allocator by the layers above it */
#define KMM_FAULT_META  2u   /* metadata those layers allocate (slab descriptors, magazines, vmalloc areas) */
#define KMM_FAULT_MAP   4u   /* the platform's vm_map calls (vmalloc, vmap, secret memory, execmem) */
#define KMM_FAULT_DIRECT 8u  /* the platform's direct_unmap, direct_restore, frames_zero, frames_write and secret_map calls */
KMM_API void kmm_fault_inject(struct kmm *mm, unsigned sites, unsigned long nth, unsigned long times);
/* How many failures were injected since kmm_fault_inject was last called. */
KMM_API unsigned long kmm_fault_injected(struct kmm *mm);

/* Platforms call this when a thread that used kmm exits (the hosted platform
 * does it from a pthread key destructor): the thread's caches of every live
 * memory system go back to it. */
KMM_API void kmm_thread_exit(void);

#ifdef __cplusplus
}
#endif
#endif
