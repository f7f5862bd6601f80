/* execmem_internal.h - executable memory for JITs (kmm/execmem.h), inside.
 *
 * Glossary:
 *  - region: KMM_EXECMEM_REGION_BYTES of address space reserved on first
 *    use, 2 MiB aligned, cut into 2 MiB slots. Every chunk lies in it, so
 *    rel32 reaches from any piece to any other.
 *  - chunk: a run of slots (one for packed code, several for one large
 *    allocation) followed by one guard slot that is never mapped. Slot 0 is
 *    never used either, so every chunk has a guard slot on both sides: code
 *    that runs off its chunk's end, or a rel32 miscomputed by less than
 *    2 MiB, faults instead of running a neighbour's code. A guard costs
 *    address space only (the region holds 255 single-slot chunks, 510 MiB
 *    of code).
 *  - step: the unit in which a chunk's frames grow, max(64 KiB, page size):
 *    one allocation of the unmapped cache, trap-filled, then mapped
 *    read+execute at the chunk's next step. A chunk's mapped steps are a
 *    prefix of it; memory held follows the code (10,000 pieces of 64..512
 *    bytes hold 1.0x their bytes, not 2 MiB per chunk).
 *  - granule: KMM_EXECMEM_ALIGN (16) bytes, the sub-page allocator's unit.
 *
 * A packed chunk's bookkeeping, in metadata memory, one bit per granule:
 *  - used: the granule belongs to a live or dying allocation;
 *  - head: an allocation starts there (head implies used);
 *  - dying: at a head, the allocation is being freed (its trap fill runs
 *    outside the lock; the range is neither allocatable nor writable, and a
 *    second free of it aborts);
 *  - tail[]: a nibble per granule, at heads: usable - asked bytes (0..15),
 *    for the stats' bytes as asked.
 * An allocation's extent: from its head to the next head or the first
 * granule not used, whichever comes first.
 *
 * Locking: mm->execmem_lock (a leaf, internal.h) protects everything in
 * struct kmm_execmem and its chunks but the step frames' contents. Frames
 * come from the unmapped cache, are trap-filled and mapped outside the
 * lock, by one grower per chunk (chunk->growing), and installed under it.
 * Writes and free's trap fills translate under the lock and write outside
 * it; chunk->writers counts the writes in flight, and a chunk is released
 * (unmapped, frames back) only when it holds no allocation and no writer:
 * by the free that emptied it, or by the last writer to leave.
 */
#ifndef KMM_EXECMEM_INTERNAL_H
#define KMM_EXECMEM_INTERNAL_H

#include "internal.h"
#include <kmm/execmem.h>

#define EXEC_SLOT_SHIFT 21                                   /* 2 MiB slots */
#define EXEC_SLOT_BYTES ((size_t)1 << EXEC_SLOT_SHIFT)
#define EXEC_NR_SLOTS ((size_t)(KMM_EXECMEM_REGION_BYTES >> EXEC_SLOT_SHIFT))
#define EXEC_GRANULE_SHIFT 4
#define EXEC_CHUNK_GRANULES ((size_t)(KMM_EXECMEM_CHUNK_BYTES >> EXEC_GRANULE_SHIFT))
#define EXEC_WORD_BITS 64
#define EXEC_CHUNK_WORDS (EXEC_CHUNK_GRANULES / EXEC_WORD_BITS)
#define EXEC_STEP_MIN ((size_t)64 << 10)
#define EXEC_CLASSES 18                                      /* log2 of free granules: 0 .. 17 */
#define EXEC_TRAP_BYTES ((size_t)64 << 10)                   /* the trap buffer: source of every fill */
#define EXEC_PIECES 64                                       /* frame pieces per platform call on the stack */

_Static_assert(KMM_EXECMEM_CHUNK_BYTES == EXEC_SLOT_BYTES, "a packed chunk is one slot");
_Static_assert((1u << EXEC_GRANULE_SHIFT) == KMM_EXECMEM_ALIGN, "a granule is the alignment");
_Static_assert(EXEC_CHUNK_GRANULES == (size_t)1 << (EXEC_CLASSES - 1), "classes cover a chunk's granules");

struct exec_chunk {
    uintptr_t base;                /* its first slot's address */
    size_t nslots;                 /* slots it spans (the guard after them not counted) */
    size_t nsteps;                 /* steps it can hold */
    size_t mapped_steps;           /* steps mapped (a prefix); set under the lock after the map */
    bool single;                   /* one large allocation (no bitmaps) */
    bool growing;                  /* a thread maps more steps outside the lock */
    bool released;                 /* out of use, being unmapped: its slots stay taken until then */
    unsigned writers;              /* writes and fills in flight outside the lock */
    /* packed chunks */
    size_t used_granules;          /* used bits set (live and dying) */
    size_t heads;                  /* allocations, live and dying */
    size_t dying;                  /* of them, dead: being freed, or quarantined */
    size_t quarantined;            /* of the dying, those whose trap fill failed: kept dead until the chunk goes */
    size_t hint;                   /* next-fit: where the last allocation ended */
    unsigned cls;                  /* the class list it is on, EXEC_CLASSES when on none */
    struct exec_chunk *prev, *next;   /* in its class list */
    /* single chunks */
    size_t size;                   /* the allocation's size as asked; 0 once freed */
    uint64_t *used, *head, *dead;  /* packed: EXEC_CHUNK_WORDS each */
    uint8_t *tail;                 /* packed: EXEC_CHUNK_GRANULES / 2 */
    size_t meta_size;              /* bytes asked of kmm__meta_obj_alloc for this record */
    kmm_phys_t step[];             /* nsteps: each mapped step's frames */
};

struct kmm_execmem {
    uintptr_t region;              /* the reservation's base */
    size_t step_bytes;
    unsigned step_order;           /* of the unmapped cache's allocations */
    struct exec_chunk *slot[EXEC_NR_SLOTS];   /* the chunk holding each slot; NULL: free or guard */
    struct exec_chunk *cls[EXEC_CLASSES];     /* packed chunks by log2 of their free granules */
    struct exec_chunk *current;    /* the packed chunk last allocated from */
    const uint8_t *trap;           /* EXEC_TRAP_BYTES of the trap pattern (metadata memory) */
    struct exec_chunk *spare;      /* a packed chunk's record kept for the next chunk (bitmaps clear) */
    void *scratch;                 /* a batch's arrays, kept for the next batch (its pages are touched already) */
    size_t scratch_bytes;
    /* stats */
    size_t allocations, bytes, used_bytes, chunks, pages, meta_bytes;
    uint64_t allocs, frees, writes, write_calls;   /* write_calls: atomic (counted outside the lock) */
};

/* ---- space.c: the bitmaps ---- */
KMM_HIDDEN bool kmm__exec_bit(const uint64_t *map, size_t i);
KMM_HIDDEN void kmm__exec_set(uint64_t *map, size_t from, size_t to);
KMM_HIDDEN void kmm__exec_clear(uint64_t *map, size_t from, size_t to);
/* First index in [from, to) whose bit is set (one true) or clear, else to. */
KMM_HIDDEN size_t kmm__exec_next(const uint64_t *map, size_t from, size_t to, bool one);
/* Last index below i (i <= chunk granules) whose bit is set, or SIZE_MAX. */
KMM_HIDDEN size_t kmm__exec_prev_one(const uint64_t *map, size_t i);
KMM_HIDDEN size_t kmm__exec_count(const uint64_t *map, size_t from, size_t to);
/* First run of n clear bits in [from, to), its start, or SIZE_MAX. */
KMM_HIDDEN size_t kmm__exec_find_run(const uint64_t *map, size_t from, size_t to, size_t n);
/* The end (exclusive granule) of the allocation whose head is at g. */
KMM_HIDDEN size_t kmm__exec_extent_end(const struct exec_chunk *c, size_t g);
KMM_HIDDEN unsigned kmm__exec_tail_get(const struct exec_chunk *c, size_t g);
KMM_HIDDEN void kmm__exec_tail_set(struct exec_chunk *c, size_t g, unsigned v);
/* Where in a packed chunk's mapped part n granules fit (next-fit), or SIZE_MAX. */
KMM_HIDDEN size_t kmm__exec_search(const struct exec_chunk *c, size_t mapped_granules, size_t n);
/* Class-list membership by free granules (lock held). */
KMM_HIDDEN void kmm__exec_class_update(struct kmm_execmem *x, struct exec_chunk *c);
KMM_HIDDEN void kmm__exec_class_remove(struct kmm_execmem *x, struct exec_chunk *c);
KMM_HIDDEN unsigned kmm__exec_class_of(size_t free_granules);

/* ---- write.c: frames and platform writes ---- */
/* The frames' pieces of [va, va + len) in chunk c (mapped), appended at
 * w[*nw] (room for cap); false if they do not fit. */
KMM_HIDDEN bool kmm__exec_translate(const struct kmm_execmem *x, const struct exec_chunk *c, uintptr_t va,
                                    size_t len, struct kmm_frame_write *w, size_t *nw, size_t cap);
/* Fills [va, va + len) of c with the trap pattern (lock not held; c kept by
 * the caller: a writer counted, or growing). 0 or a negative KMM_E*. */
KMM_HIDDEN int kmm__exec_fill(struct kmm *mm, const struct exec_chunk *c, uintptr_t va, size_t len);
/* Metadata memory of at least bytes for a batch call's arrays (lock not
 * held): the kept one when big enough; *held says its size, to give back
 * with kmm__exec_scratch_put. NULL when out of memory. */
KMM_HIDDEN void *kmm__exec_scratch_get(struct kmm *mm, size_t bytes, size_t *held);
KMM_HIDDEN void kmm__exec_scratch_put(struct kmm *mm, void *p, size_t held);
#define EXEC_SCRATCH_KEEP ((size_t)1 << 20)   /* larger arrays are not kept */
/* A batch copies runs of small pieces adjacent in the frames into a buffer
 * this large and writes each run as one piece: the platform's cost per
 * piece (hosted: ~100 ns per iovec in the kernel) is more than a copy of a
 * few hundred bytes. */
#define EXEC_STAGE_BYTES ((size_t)64 << 10)
/* pf_frames_write, counted in write_calls. */
KMM_HIDDEN int kmm__exec_frames_write(struct kmm *mm, const struct kmm_frame_write *w, size_t n);

/* ---- region.c: chunks ---- */
static inline size_t exec_step_pages(const struct kmm *mm, const struct kmm_execmem *x)
{
    return x->step_bytes >> mm->page_shift;
}
static inline size_t exec_mapped_granules(const struct kmm_execmem *x, const struct exec_chunk *c)
{
    return c->mapped_steps * x->step_bytes >> EXEC_GRANULE_SHIFT;
}
/* A chunk's record (not in the region yet): packed, with its bitmaps (the
 * spare when there is one), or for one allocation of size bytes. */
KMM_HIDDEN struct exec_chunk *kmm__exec_chunk_new(struct kmm *mm, struct kmm_execmem *x, size_t size, bool single);
/* Places c in a free run of slots with a guard slot on each side; false
 * when the region is full. Lock held. */
KMM_HIDDEN bool kmm__exec_slots_take(struct kmm_execmem *x, struct exec_chunk *c);
KMM_HIDDEN void kmm__exec_slots_drop(struct kmm_execmem *x, struct exec_chunk *c);
/* Maps steps [from, to) of c, which the caller keeps (growing, or not yet
 * in the lists): frames from the unmapped cache, trap-filled, mapped
 * read+execute. Lock not held. 0, or -KMM_ENOMEM with nothing changed. */
KMM_HIDDEN int kmm__exec_steps_grow(struct kmm *mm, struct kmm_execmem *x, struct exec_chunk *c, size_t from,
                                    size_t to);
/* No allocation but quarantined ones, no writer, no grower. */
KMM_HIDDEN bool kmm__exec_releasable(const struct exec_chunk *c);
/* Out of the lists and the stats, c->released (lock held). */
KMM_HIDDEN void kmm__exec_chunk_detach(struct kmm *mm, struct kmm_execmem *x, struct exec_chunk *c);
/* Unmaps a detached c, frames back, slots free, record freed or kept as
 * the spare (keep). Lock not held. */
KMM_HIDDEN void kmm__exec_chunk_free(struct kmm *mm, struct kmm_execmem *x, struct exec_chunk *c, bool keep);
/* After a writer left or an allocation went: releases c if it is
 * releasable. Called with the lock held; returns with it dropped. */
KMM_HIDDEN void kmm__exec_put_unlock(struct kmm *mm, struct exec_chunk *c);
/* The chunk in use holding va, or NULL. Lock held. */
KMM_HIDDEN struct exec_chunk *kmm__exec_chunk_of(struct kmm_execmem *x, uintptr_t va);
/* The live allocation starting at va: its chunk, and its granules [*g,
 * *end); NULL with the reason (for a fatal report). Lock held. */
KMM_HIDDEN struct exec_chunk *kmm__exec_live_head(struct kmm_execmem *x, uintptr_t va, size_t *g, size_t *end,
                                                  const char **why);
/* [va, va + len) inside one live allocation? Its chunk, or NULL with *why. Lock held. */
/* Sorts n elements of size bytes at base so that none is before(ctx, ., .)
 * the one ahead of it: a heap sort (O(n log n), no recursion, no libc),
 * O(n) when they are in order already. */
KMM_HIDDEN void kmm__exec_sort(void *base, size_t n, size_t size,
                               bool (*before)(const void *ctx, const void *a, const void *b), const void *ctx);
KMM_HIDDEN struct exec_chunk *kmm__exec_validate(struct kmm_execmem *x, uintptr_t va, size_t len, const char **why);
/* The next chunk in use at or after slot *s (its first slot), or NULL; *s moves past it. */
KMM_HIDDEN struct exec_chunk *kmm__exec_next_chunk(struct kmm_execmem *x, size_t *s);

#endif
