/* kmm/execmem.h - executable memory for JITs, never writable and executable
 * at once.
 *
 * Where to use it: code generated at run time (a JIT's functions, BPF-like
 * programs, trampolines, stubs of a few bytes). Pieces are packed into
 * chunks of code mapped read+execute (sub-page packing: a 24-byte
 * trampoline does not take a page), so the memory held is close to the
 * code's bytes, where mmap+mprotect per piece holds a page or more each.
 *
 * Guarantees:
 *  - No address is ever writable and executable at once. Code is mapped
 *    read+execute only; kmm_execmem_write writes it through the platform's
 *    frames_write (hosted: a write to the frames' file, pwrite(2), with no
 *    writable mapping of them anywhere), never through a writable mapping
 *    of the executable address.
 *  - Chunks are 2 MiB of address space whose frames come from the unmapped
 *    cache (owned by execmem: any other free of them aborts), out of the
 *    direct map; an unmapped guard region separates chunks. All chunks lie
 *    in one region of address space of KMM_EXECMEM_REGION_BYTES, so any
 *    piece can reach any other with a 32-bit relative call or jump.
 *  - Fresh and freed space is filled with trapping instructions (int3,
 *    0xcc, on x86-64; brk #0 on arm64): a jump into a hole traps.
 *  - Instruction fetch sees what was written once kmm_execmem_write returns
 *    (x86-64 keeps instruction fetch coherent with stores, through another
 *    mapping too; code that another thread may be executing at that moment
 *    needs a serialising instruction there, as the Intel SDM's
 *    cross-modifying code protocol says. arm64 and others need the data
 *    cache cleaned and the instruction cache invalidated for the range: the
 *    platform's icache_sync hook does it, hosted with
 *    __builtin___clear_cache).
 *  - kmm_execmem_write outside one live allocation is refused and changes
 *    nothing; kmm_execmem_free of anything but the start of a live
 *    allocation aborts with the address and the reason.
 *  - Allocations are aligned to KMM_EXECMEM_ALIGN (16) bytes; the
 *    bookkeeping lives in kmm's metadata memory.
 */
#ifndef KMM_EXECMEM_H
#define KMM_EXECMEM_H

#include <kmm/core.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KMM_EXECMEM_ALIGN 16u
#define KMM_EXECMEM_CHUNK_BYTES (2ull << 20)
#define KMM_EXECMEM_REGION_BYTES (1ull << 30)

/* Returns size bytes of executable memory (read+execute, filled with
 * trapping instructions), aligned to KMM_EXECMEM_ALIGN; NULL with ENOMEM
 * when out of memory or address space, EINVAL for size 0 (reported),
 * ENOSYS without the platform's hooks. Sizes above a chunk get chunks of
 * their own. Cost: a search of the chunks' free space; a new chunk, or
 * more frames for one, adds pages from the unmapped cache, a frames_write
 * of trap fill and one vm_map call. */
KMM_API void *kmm_execmem_alloc(struct kmm *mm, size_t size);

/* Copies len bytes of code from src to dst, which must lie inside one live
 * allocation ([dst, dst + len) within it; len 0 is a no-op). 0;
 * -KMM_EINVAL (reported, nothing written) otherwise; -KMM_EIO (reported)
 * if the platform's write failed (part may be written). Cost: one frames_write call (hosted: a
 * pwrite per run of contiguous frames) and the platform's icache_sync. */
KMM_API int kmm_execmem_write(struct kmm *mm, void *dst, const void *src, size_t len);

/* One piece of a batch write. */
struct kmm_execmem_piece {
    void *dst;
    const void *src;
    size_t len;
};

/* Writes n pieces as kmm_execmem_write would, checking all of them first:
 * if any lies outside a live allocation, or two pieces overlap, nothing is
 * written and -KMM_EINVAL is returned (reported, naming the piece). Pieces
 * that are adjacent in the frames go in one platform write (hosted: one
 * pwritev per run, up to IOV_MAX pieces). -KMM_ENOMEM, nothing written,
 * without metadata memory for the sort. Cost: O(n log n) to sort, and a platform call
 * per run of adjacent pieces. */
KMM_API int kmm_execmem_write_batch(struct kmm *mm, const struct kmm_execmem_piece *pieces, size_t n);

/* Frees an allocation: its space is filled with trapping instructions and
 * can be reused at once; a chunk left empty gives its frames back to the
 * unmapped cache. NULL is a no-op; misuse aborts (see above). The caller
 * must make sure no thread still executes the code. Cost: one frames_write
 * of trap fill, bitmap updates. */
KMM_API void kmm_execmem_free(struct kmm *mm, void *p);

/* Frees n allocations (NULL entries are skipped) as kmm_execmem_free
 * would, with one platform write for all their trap fills (hosted: a
 * pwritev per run of adjacent frames: pieces freed side by side go as one
 * run). Misuse of any aborts as kmm_execmem_free does; so does a pointer
 * given twice. Cost: O(n log n) to sort, and one frames_write. */
KMM_API void kmm_execmem_free_batch(struct kmm *mm, void *const *ptrs, size_t n);

/* The usable size of a live allocation (its size rounded up to
 * KMM_EXECMEM_ALIGN); aborts on anything else. */
KMM_API size_t kmm_execmem_usable_size(struct kmm *mm, const void *p);

struct kmm_execmem_stats {
    size_t allocations;       /* live */
    size_t bytes;             /* their sizes as asked */
    size_t used_bytes;        /* their usable sizes */
    size_t chunks;            /* chunks of address space in use */
    size_t pages;             /* frames mapped for code (memory held) */
    size_t meta_bytes;        /* bookkeeping in metadata memory */
    uint64_t allocs, frees, writes, write_calls;   /* write_calls: platform writes */
};

/* Fills *st. Cost: O(1) under the layer's lock. */
KMM_API void kmm_execmem_stats(struct kmm *mm, struct kmm_execmem_stats *st);

#ifdef __cplusplus
}
#endif
#endif
