/* kmm/platform.h - what kmm needs from its host, as one table of hooks.
 *
 * The allocators never call the OS: they call these hooks. Two platforms come
 * with kmm:
 *  - kmm_platform_hosted: Linux user space. Physical memory is a memfd
 *    (physical address = file offset), the direct map one shared mapping of
 *    it; free blocks are hole-punched so resident memory follows live memory.
 *    vmalloc maps parts of the same file a second time, into a PROT_NONE
 *    reservation.
 *  - kmm_platform_static(): freestanding. The caller hands over ranges of
 *    memory that are identity mapped (virtual == physical), and locks do
 *    nothing; it has no virtual memory hooks (kmm_vmalloc refuses) (one CPU,
 *    or the caller serialises). A hypervisor, kernel or test framework fills
 *    in its own hooks instead where it has better ones: src/platform/guest
 *    is a complete example, an x86-64 kernel's platform over the firmware's
 *    memory map and real page tables (README, "Running kmm in your own
 *    kernel").
 *
 * Every hook receives ctx, the value open() stored. Optional hooks may be
 * NULL. Hooks that can fail return 0 or a negative KMM_E* number.
 */
#ifndef KMM_PLATFORM_H
#define KMM_PLATFORM_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KMM_MAX_RANGES 16

struct kmm_range {
    kmm_phys_t start, end;          /* [start, end), page aligned */
};

/* What open() reports: the physical memory and where it is mapped. */
struct kmm_memory {
    uintptr_t direct_map;           /* virtual address of physical address 0 */
    unsigned nr_ranges;             /* ranges of memory, ascending and disjoint */
    struct kmm_range ranges[KMM_MAX_RANGES];
};

/* Storage for one lock of the platform's kind (a pthread mutex when hosted). */
struct kmm_lock {
    _Alignas(16) unsigned char opaque[64];
};

/* One piece of a frames_write: len bytes from src to physical address phys. */
struct kmm_frame_write {
    kmm_phys_t phys;
    const void *src;
    size_t len;
};

struct kmm_platform {
    const char *name;
    void *arg;                      /* the platform's own, for open() */

    /* Provides the physical memory: cfg->mem_size bytes (hosted) or whatever
     * arg describes. Fills *mem, stores the context for the other hooks. */
    int  (*open)(const struct kmm_platform *pf, const struct kmm_config *cfg,
                 struct kmm_memory *mem, void **ctx);
    void (*close)(void *ctx);

    /* Zeroed, page-aligned memory for kmm's own metadata, outside physical
     * memory. Optional: without it the metadata is carved from the top of
     * the largest range and marked as not memory. */
    void *(*meta_alloc)(void *ctx, size_t len);
    void  (*meta_free)(void *ctx, void *p, size_t len);

    /* Optional: the frames [addr, addr+len) are free; their contents may be
     * discarded and read back as zeros. Failure is harmless. */
    int (*release)(void *ctx, kmm_phys_t addr, uint64_t len);
    /* Optional: bytes of physical memory backed by real memory now. */
    uint64_t (*resident)(void *ctx);

    void (*lock_init)(struct kmm_lock *l);
    void (*lock_fini)(struct kmm_lock *l);
    void (*lock)(struct kmm_lock *l);
    void (*unlock)(struct kmm_lock *l);

    /* A line of diagnostics (no newline in line). Optional. */
    void (*report)(void *ctx, const char *line);
    /* A refused call: err is a KMM_E* number (hosted: sets errno). Optional. */
    void (*error)(int err);
    /* Reports msg and stops the program; must not return. ctx is NULL for
     * a call on a destroyed memory system (its context is closed). */
    void (*fatal)(void *ctx, const char *msg);
    /* Virtual memory for kmm_vmalloc and kmm_vmap; optional as a set (without
     * them those calls refuse with ENOMEM). vm_reserve sets aside len bytes
     * of address space, aligned to align, that nothing else will use and
     * that faults when touched; vm_unreserve gives it back. vm_map maps the
     * frames [phys, phys + len) at va, inside a reservation, with prot
     * (KMM_PROT_READ, | KMM_PROT_WRITE), replacing what was there; vm_unmap
     * makes [va, va + len) fault again, still reserved (and undoes what
     * KMM_MAP_SECRET did). prot may add KMM_PROT_EXEC (never with
     * KMM_PROT_WRITE) and KMM_MAP_SECRET (below). vm_map_limit: how
     * many more mappings the process may make now (hosted: vm.max_map_count
     * less the mappings it holds), 0 for no limit; optional. */
    void *(*vm_reserve)(void *ctx, size_t len, size_t align);
    void  (*vm_unreserve)(void *ctx, void *va, size_t len);
    int   (*vm_map)(void *ctx, void *va, kmm_phys_t phys, size_t len, unsigned prot);
    int   (*vm_unmap)(void *ctx, void *va, size_t len);
    size_t (*vm_map_limit)(void *ctx);

    /* Optional: arrange for kmm_thread_exit() to run when this thread exits.
     * Called once per thread before its first per-thread cache is made. */
    void (*thread_attach)(void);

    /* Optional: make every thread of the process execute a full memory
     * barrier before this returns (hosted: membarrier(2), private
     * expedited); 0 on success, nonzero when it cannot. With it, a failing
     * allocation and kmm_drain take back the per-thread caches of threads
     * idle in kmm (which read a flag in each such thread's TLS: a thread
     * must retire its caches before it exits, through thread_attach or
     * kmm_thread_exit); without it, or when it fails, those caches come
     * back only when their threads next call kmm. One thread, or callers
     * that serialise every call: a compiler barrier is enough. */
    int (*barrier_all)(void *ctx);
    /* fork() (optional; see docs/decisions.md, "fork"). atfork registers
     * three handlers to run around every fork of the process (hosted:
     * pthread_atfork); kmm calls it once, at the first kmm_create whose
     * platform has it. Without it a memory system must not be used by both
     * sides of a fork. Around a fork kmm holds every lock of every memory
     * system and calls, per memory system:
     *  - fork_prepare(ctx): make a private copy of the physical memory as it
     *    is now, for the child (hosted: a new memfd holding the resident
     *    extents). Nonzero if it could not: the parent is unharmed, and the
     *    child's fork_child is called with the copy missing.
     *  - fork_parent(ctx): the fork happened (or failed); drop the copy.
     *  - fork_child(ctx): in the child, before any other kmm call: put the
     *    copy in place of the shared memory, under every mapping of it (the
     *    direct map and each vm_map alias) at the same addresses. Without a
     *    copy it must make the memory inaccessible to the child rather than
     *    shared with the parent. Must not allocate (the child of a threaded
     *    parent may only call async-signal-safe functions). */
    int  (*atfork)(void (*prepare)(void), void (*parent)(void), void (*child)(void));
    int  (*fork_prepare)(void *ctx);
    void (*fork_parent)(void *ctx);
    void (*fork_child)(void *ctx);

    /* Optional: back the frames [addr, addr+len) with memory and map them in
     * the direct map now, in one call, where the first touch of each page
     * would take a fault (hosted: a fault costs tens of microseconds on a
     * virtual machine, a populate of 64 KiB a few per page). A hint:
     * failure is harmless. Layers that fill many fresh pages at once
     * (zsmalloc) call it for their batches. */
    int (*populate)(void *ctx, kmm_phys_t addr, uint64_t len);

    /* ---- Pages out of the direct map (kmm/unmapped.h, secret.h, execmem.h).
     * Optional as a set: without direct_unmap, kmm_unmapped_alloc, secret
     * memory and execmem refuse (ENOSYS). Failures return a negative KMM_E*
     * and change nothing. */
    /* Removes the frames [addr, addr + len) from the direct map in one
     * operation: an access through it faults afterwards (hosted: the range
     * of the direct map is made PROT_NONE). A fork child keeps it removed. */
    int (*direct_unmap)(void *ctx, kmm_phys_t addr, uint64_t len);
    /* Maps them back, read+write, as they were. */
    int (*direct_restore)(void *ctx, kmm_phys_t addr, uint64_t len);
    /* Makes frames that are not in the direct map read as zeros (hosted: a
     * hole punched in the memfd, which also frees their memory). */
    int (*frames_zero)(void *ctx, kmm_phys_t addr, uint64_t len);
    /* Copies n pieces of bytes into frames, whether mapped anywhere or not,
     * without making any mapping of them writable (hosted: pwrite(2) to the
     * memfd, one pwritev per run of pieces adjacent in the file). */
    int (*frames_write)(void *ctx, const struct kmm_frame_write *pieces, size_t n);
    /* Optional: after code was written to frames mapped executable at va:
     * make instruction fetch at [va, va + len) see it (hosted:
     * __builtin___clear_cache; nothing on x86-64). */
    void (*icache_sync)(void *ctx, void *va, size_t len);
    /* Optional: maps len bytes of fresh, zeroed memory that no direct map
     * holds (hosted: memfd_secret(2)) at va, inside a reservation, as
     * KMM_MAP_SECRET says. -KMM_ENOSYS when the kernel has none. */
    int (*secret_map)(void *ctx, void *va, size_t len);

    /* Optional: a monotonic clock, in milliseconds. With it the page
     * allocator gives memory back to the OS only after it stayed free for
     * KMM_RELEASE_DECAY_MS (a program that frees and allocates again soon
     * keeps its pages resident, as jemalloc's and mimalloc's decay do);
     * without it, after every release budget of frees (16 MiB). */
    uint64_t (*clock_ms)(void *ctx);
};

/* The release decay (clock_ms above). */
#define KMM_RELEASE_DECAY_MS 100
/* A release pass gives back at most this much per step under the area lock
 * (hosted: about 0.3 ms of fallocate); a pass with more to give goes on at
 * the area's next allocation or free, without waiting for the interval. */
#define KMM_RELEASE_STEP_KIB 4096

/* vm_map flag beside the KMM_PROT_* bits: a secret mapping. Locked in
 * memory (never swapped), left out of core dumps, not inherited by a child
 * of fork (hosted: mlock, MADV_DONTDUMP, MADV_DONTFORK). -KMM_EAGAIN when
 * locking it would pass the process's locked-memory limit. */
#define KMM_MAP_SECRET 0x100u
/* vm_map flag: the page tables may be filled at first touch instead of
 * now (hosted: no MAP_POPULATE). The frames are the caller's either way. */
#define KMM_MAP_NOPOPULATE 0x200u

/* The hosted Linux platform (not in freestanding builds). */
KMM_API extern const struct kmm_platform kmm_platform_hosted;

/* Fills *pf with the freestanding platform over the memory mem describes:
 * its ranges, mapped at mem->direct_map (0 for identity mapping). mem must
 * outlive every memory system made with pf. Locks do nothing; fatal errors
 * go to fatal (or __builtin_trap() when NULL), reports to report (or
 * nowhere); the metadata is carved from the top of the largest range. */
KMM_API void kmm_platform_static(struct kmm_platform *pf, const struct kmm_memory *mem,
                                 void (*fatal)(void *ctx, const char *msg),
                                 void (*report)(void *ctx, const char *line));

#ifdef __cplusplus
}
#endif
#endif
