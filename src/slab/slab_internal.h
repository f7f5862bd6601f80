/* slab/slab_internal.h - the slab layer's own: slabs and their
 * descriptors, the slab map, caches, depots and magazines, kmm_malloc's
 * classes (src/slab/ only, and the core that creates, checks, drains and
 * forks a memory system). */
#ifndef KMM_SLAB_INTERNAL_H
#define KMM_SLAB_INTERNAL_H

#include "internal.h"

/* ---- The slab layer (slab/) ------------------------------------------------
 *
 * A slab is one buddy block of 2^s->order pages holding s->objects slots of
 * slot_size bytes from its start. Its descriptor lives apart from it. The
 * order is the cache's slab_order, or its min_order when no block of
 * slab_order could be had (memory fragmented: SLUB's fallback to min order),
 * so one cache may hold slabs of two orders and two object counts.
 *
 * Invariants (checked by kmm_check):
 *  - slab_map[p] == s for every page p of a live slab s; LARGE_BLOCK for the
 *    first page of a kmm_malloc block of whole pages (an ALLOC head); NULL
 *    for every other page. A slab's pages are one ALLOC block of s->order.
 *  - s->order is c->slab_order or c->min_order, s->objects is
 *    (page_size << s->order) / slot_size, and the other copied fields equal
 *    the cache's.
 *  - Bit i of s->out is set iff slot i is out of the slab: held by a caller
 *    or in some thread's magazine or the depot; bits from s->objects to
 *    c->words * 64 are set for good; s->inuse is the number of slots out.
 *  - s->held[i] is 1 iff a caller holds slot i (so bit i is set), else 0.
 *    The free fast path tests it instead of reading the object: a free of a
 *    slot not held is a double free (or of memory never handed out), and
 *    the byte sits in dense metadata that stays in cache while a big heap's
 *    objects do not (the random-lifetime benchmark: 51 -> 3x ns per step).
 *  - s is on exactly one list of its cache: empty (inuse 0), full (inuse ==
 *    s->objects) or partial (otherwise); the lists' counts, objects_out,
 *    total_slots and total_pages agree with the slabs on them.
 *  - With KMM_SLAB_POISON, every slot not held by a caller holds the canary
 *    slab_secret ^ address at canary_offset (8, or 0 in 8-byte slots, or
 *    after the object when the cache has a constructor): the free ones in
 *    the slab and those in magazines and the depot.
 *  - A magazine holds distinct slots of its cache, each with its bit set.
 *  - So does a cache's depot, at most depot_cap(c) of them.
 */
struct kmm_slab {
    /* what a free needs (kmm_free reads base, recip and mag_offset from the
     * slab map's copies; kmm_cache_free and the slow paths from here), in
     * the cache line it shares with the held bytes of slots 0..31 (see
     * slab_held) */
    uintptr_t base;                       /* direct-map address of slot 0 */
    uint64_t recip;                       /* slot index = (offset * recip) >> RECIP_SHIFT, exact */
    uint32_t canary_offset;
    uint32_t mag_offset;                  /* of the cache's magazine head in a struct kmm_tcache */
    uint32_t objects;
    /* the rest is for the slow paths, under the cache's lock */
    struct kmm_cache *cache;
    struct kmm_slab *next, *prev;         /* in one list of the cache */
    uint32_t order;                       /* pages: 2^order (slab_order, or min_order as a fallback) */
    uint32_t inuse;                       /* slots out */
    uint32_t scan;                        /* first word of out[] that may have a clear bit */
    uint64_t out[];                       /* bit i: slot i is out (c->words words) */
};
_Static_assert(offsetof(struct kmm_slab, cache) <= 32, "a free's fields are within the first 32 bytes of a descriptor");
/* The held bytes of a slab lie just below its descriptor, slot i's at
 * s - 1 - i, and descriptors start half-way into a cache line: so a free
 * of one of the first 32 slots (every slot of a slab of 32 objects or
 * fewer: every class from 128 bytes up on 4 KiB pages) reads one line of
 * metadata besides the slab map, not two; in a big heap that line is the
 * free's one cache miss of metadata. Byte i: 1 while a caller holds slot
 * i; written by the threads that hand the slot out and free it (relaxed: a
 * pointer passes between threads only with the program's own
 * synchronization). One byte more than slots, always 0: the free fast path
 * may index it with the "slot" started by the end of the last one. */
static inline uint8_t *slab_held(struct kmm_slab *s, uint64_t idx) { return (uint8_t *)s - 1 - idx; }
/* Bytes of held bytes (and padding) below a descriptor of a cache with this
 * many slots per slab: at least objects + 1, and a multiple of 64 plus 32. */
static inline size_t held_bytes(uint32_t objects) { return (((size_t)objects + 1 + 32 + 63) & ~(size_t)63) - 32; }

struct slab_list {
    struct kmm_slab *head;
    size_t count;
};

/* The slab map: one entry per page, the page's slab and the fields of it
 * a free needs before its held byte (base, recip, magazine offset), so that
 * a free gets them all with one cache line and computes the held byte's
 * address and its magazine head without waiting for the descriptor
 * (random lifetime: a second array for the offsets cost every free a second
 * miss; mixed sizes: base and recip from the descriptor put one more load on
 * the free's chain, 6.2-6.3 -> 5.7-5.9 ns per pair with them here). The
 * copies are set before slab names a slab and cleared after it stops naming
 * one: a free never finds a slab with fields not its own; without a slab
 * (NULL or LARGE_BLOCK) they are 0. */
struct slab_map_entry {
    struct kmm_slab *slab;                /* the slab, LARGE_BLOCK, or NULL */
    uintptr_t base;                       /* slab->base */
    uint64_t recip;                       /* slab->recip */
    uint64_t mag_offset;                  /* slab->mag_offset */
};

/* A pool of descriptors of one size (each cache has its own). Invariant
 * (kmm_check): every descriptor cut from a cache's chunks is a slab's or
 * on its free list, and only the newest chunk has an uncut rest (desc_left
 * bytes at desc_next): a chunk is installed only when the one before it
 * cannot give a descriptor. */
struct desc_chunk {
    struct desc_chunk *next;
    size_t len;
};

#define MAG_MAX 128                       /* slots of a magazine */
#define DEPOT_MAX (2 * MAG_MAX)           /* slots of a cache's depot */

struct kmm_cache {
    /* read on every allocation and free: */
    size_t slot_size;
    size_t canary_offset;                 /* where the canary of a free slot is (see kmm__cache_init) */
    uint64_t recip;                       /* slot index = (offset * recip) >> RECIP_SHIFT */
    uint32_t objects;                     /* slots per slab of slab_order */
    uint32_t mag_cap;                     /* magazine capacity for this cache */
    uint32_t id;                          /* index in each thread's mag[] */
    unsigned page_flags;                  /* area mask the slabs were asked with */
    void (*ctor)(void *);
    struct kmm *mm;

    struct kmm_lock lock;
    /* protected by lock: */
    struct slab_list partial, full, empty;
    struct slab_list making;              /* slabs new_slab is making: owned pages, not yet on a list */
    size_t objects_out;                   /* sum of inuse over the slabs */
    size_t total_slots, total_pages;      /* sums of objects and of 2^order over the slabs */
    /* The depot (Bonwick's): free slots that threads' full magazines gave
     * back, handed to the next magazine that runs empty, whichever thread's,
     * without touching a slab. Slots here are out of their slabs, like
     * those in magazines. At most depot_cap(c); kmm__cache_shrink (so
     * kmm_drain and kmm_cache_destroy) empties it. */
    uint32_t depot_count;
    struct free_slot depot[DEPOT_MAX];
    size_t max_empty;                     /* empty slabs kept before they go back */
    struct desc_chunk *desc_chunks;
    void *desc_free;                      /* free descriptors, linked through their first word */
    size_t desc_size, desc_left;
    char *desc_next;                      /* the unused rest of the newest chunk */

    /* set at creation: */
    size_t object_size, align;
    unsigned slab_order;                  /* preferred order of a slab */
    unsigned min_order;                   /* the smallest order holding one slot: the fallback */
    uint32_t words;                       /* of out[], for slab_order's objects */
    bool kmalloc;                         /* a kmm_malloc size class: never destroyed */
    char name[32];
    struct kmm_cache *next;               /* in the root's list, protected by mm->slab_lock */
};
/* Slot arithmetic: see slot_product. A slab is at most 8 pages (8 << 20
 * bytes at the largest page size), so offsets in a slab and slot sizes are
 * below 2^SLAB_OFFSET_BITS. */
#define SLAB_OFFSET_BITS (KMM_MAX_PAGE_SHIFT + 3)
#define RECIP_SHIFT (2 * SLAB_OFFSET_BITS + 1)
/* The most slots a slab may have (kmm__cache_init refuses more): the
 * product below must not overflow 64 bits. 8-byte slots in a page of the
 * largest size are exactly that many. */
#define SLAB_MAX_OBJECTS ((uint64_t)1 << (64 - RECIP_SHIFT))

/* Where a chunk of c's descriptors starts them (see desc_chunk_new). */
static inline size_t desc_colour(const struct kmm_cache *c) { return 64 + (c->id % 32) * 64; }

/* Two magazines' worth: a producer thread's refill finds what a consumer
 * thread's last two overflows gave back. */
static inline uint32_t depot_cap(const struct kmm_cache *c) { return 2 * c->mag_cap; }
_Static_assert(DEPOT_MAX >= 2 * MAG_MAX, "a depot holds two full magazines");

/* The slot of slab s that p lies in (p inside the slab). */
/* One multiply gives both the slot and whether p starts it. Let B =
 * SLAB_OFFSET_BITS, S = RECIP_SHIFT = 2B + 1, d the slot size, recip =
 * floor(2^S / d) + 1 = (2^S + e) / d with 0 < e <= d, and off = p - base
 * = q * d + r (0 <= r < d). Then off * recip = q * 2^S + L with
 * L = q * e + r * recip. For every slab kmm makes: off < 2^B and d <= 2^B
 * (a slab is at most 8 pages of at most 2^KMM_MAX_PAGE_SHIFT bytes), and
 * q < 2^(64 - S) (kmm__cache_init: at most SLAB_MAX_OBJECTS slots, and a
 * p past the last slot has q == objects only when the slab's tail is not
 * a whole slot, so q + 1 <= ceil(slab bytes / d) <= SLAB_MAX_OBJECTS).
 *  - r == 0: L = q * e <= q * d <= off < 2^B.
 *  - r >= 1: L >= recip > 2^S / d >= 2^(S - B) = 2^(B + 1) >= 2^B.
 *  - L < 2^S: L <= q * e + (d - 1) * recip = 2^S + (q + 1) * e - recip,
 *    and (q + 1) * e <= off + d < 2^(B + 1) < recip.
 *  - no overflow: q * 2^S + L < (q + 1) * 2^S <= 2^64.
 * Hence: slot = product >> S, and p starts it iff bits B..S-1 of the
 * product are 0. Every constant is fixed, so the free fast path is one
 * multiply, one shift and one test whatever the page size. */
_Static_assert(RECIP_SHIFT >= 2 * SLAB_OFFSET_BITS + 1 && RECIP_SHIFT < 64,
               "r >= 1 sets a bit from SLAB_OFFSET_BITS up");
_Static_assert(((uint64_t)8 << KMM_MAX_PAGE_SHIFT) <= ((uint64_t)1 << SLAB_OFFSET_BITS),
               "a slab of 8 largest pages fits the offset bits");
_Static_assert(((uint64_t)1 << KMM_MAX_PAGE_SHIFT) / 8 <= SLAB_MAX_OBJECTS,
               "8-byte slots in a largest page fit the product");
#define SLOT_START_BITS ((((uint64_t)1 << RECIP_SHIFT) - 1) & ~(((uint64_t)1 << SLAB_OFFSET_BITS) - 1))
static inline uint64_t slot_product(const struct kmm_slab *s, uintptr_t p) { return (p - s->base) * s->recip; }
static inline uint64_t slot_of(const struct kmm_slab *s, uintptr_t p) { return slot_product(s, p) >> RECIP_SHIFT; }
/* The slot that p starts, or UINT64_MAX when p is not the start of a slot. */
static inline uint64_t slot_started_by(const struct kmm_slab *s, uintptr_t p)
{
    uint64_t t = slot_product(s, p), idx = t >> RECIP_SHIFT;
    return !(t & SLOT_START_BITS) && idx < s->objects ? idx : UINT64_MAX;
}
/* The list slab s belongs on, by its slots out. */
static inline struct slab_list *slab_list_of(struct kmm_cache *c, const struct kmm_slab *s)
{
    return s->inuse == 0 ? &c->empty : s->inuse == s->objects ? &c->full : &c->partial;
}

/* Size classes and kmm_malloc's caches, made on first use of the layer. */
#define KMM_MAX_CLASSES 192
struct kmm_slab_root {
    size_t max_small;                     /* largest size served from a slab */
    unsigned nr_classes;
    size_t class_size[KMM_MAX_CLASSES];
    unsigned class_order[KMM_MAX_CLASSES];
    /* kmm_malloc caches by area mask (index 0: any area), each an array of
     * nr_classes caches made on first use of that mask; [0] is made at once */
    struct kmm_cache *kmalloc[KMM_AREA_MASK + 1];
    struct kmm_cache *caches;             /* every cache, newest first (mm->slab_lock) */
    uint64_t used_ids[KMM_MAX_CACHES / 64];   /* mm->slab_lock */
};

/* slab/slab.c */
KMM_HIDDEN struct kmm_slab_root *kmm__slab_root_slow(struct kmm *mm);
static inline struct kmm_slab_root *slab_root(struct kmm *mm)
{
    struct kmm_slab_root *r = __atomic_load_n(&mm->slabs, __ATOMIC_ACQUIRE);
    return KMM_LIKELY(r != NULL) ? r : kmm__slab_root_slow(mm);
}
/* Fills the fields of c for objects of size and align (canary, slots, slab
 * order, recip); 0, or -KMM_EINVAL if they cannot be served. */
KMM_HIDDEN int kmm__cache_init(struct kmm *mm, struct kmm_cache *c, const char *name, size_t size, size_t align,
                               void (*ctor)(void *), unsigned page_flags, unsigned slab_order);
KMM_HIDDEN void kmm__cache_fini(struct kmm_cache *c);
/* Gives c an id (NO_MAG_ID when all are taken) and appends it to the list
 * of caches (mm->slab_lock held). */
KMM_HIDDEN void kmm__cache_register(struct kmm_slab_root *r, struct kmm_cache *c);
/* Moves up to n slots out of c's slabs (making a slab when needed) into
 * dst[]; returns how many. */
KMM_HIDDEN uint32_t kmm__cache_take(struct kmm_cache *c, struct free_slot *dst, uint32_t n, unsigned flags);
/* Gives n free slots (the older half of a full magazine) back to c: into
 * its depot while it has room, the rest into their slabs (kmm__cache_put). */
KMM_HIDDEN void kmm__cache_stash(struct kmm_cache *c, const struct free_slot *src, uint32_t n, const char *fn);
/* Puts n slots back into their slabs; checks each is out (else a double free
 * from fn). Empty slabs beyond max_empty go back to the page allocator. */
KMM_HIDDEN void kmm__cache_put(struct kmm_cache *c, const struct free_slot *src, uint32_t n, const char *fn);
/* Empties c's depot into the slabs, then gives every empty slab of c back
 * to the page allocator. */
KMM_HIDDEN void kmm__cache_shrink(struct kmm_cache *c);
/* Points the slab map of the 2^order pages at base to s (or NULL). */
KMM_HIDDEN void kmm__slab_map_set(struct kmm *mm, uintptr_t base, unsigned order, struct kmm_slab *s);
/* The magazine offset a slab's map entries carry: its own for kmm_malloc's
 * classes; for a kmm_cache_create cache, that of NO_MAG_ID's head, which
 * never has a magazine (top == end == NULL), so kmm_free's fast path never
 * takes such an object and its slow path reports the misuse (kmm_cache_free
 * reads the slab's own mag_offset). */
static inline uint64_t slab_map_mag_offset(const struct kmm_slab *s)
{
    return s->cache->kmalloc ? s->mag_offset
                             : offsetof(struct kmm_tcache, mag) + (uint64_t)NO_MAG_ID * sizeof(struct kmm_magazine);
}
/* Bytes of the slab map. */
static inline size_t kmm__slab_map_bytes(const struct kmm *mm)
{
    return (size_t)(mm->end_pfn - mm->base_pfn) * sizeof(struct slab_map_entry);
}
/* Reports misuse of slot p of c ("kmm: fn: why p (cache ...)") and aborts. */
KMM_HIDDEN KMM_NORETURN void kmm__slot_fatal(struct kmm_cache *c, const char *fn, const char *why, const void *p);
/* A free slot of c in a magazine or depot: the start of a slot of c's
 * slabs, out of its slab, not held, f.held its held byte, and with
 * KMM_SLAB_POISON its canary intact; 0, or kmm__check_fail's -1. */
KMM_HIDDEN int kmm__free_slot_check(struct kmm_cache *c, struct free_slot f);
KMM_HIDDEN int kmm__slab_check(struct kmm *mm);
KMM_HIDDEN void kmm__slab_destroy_all(struct kmm *mm);
/* In the child of a fork: gives back the slabs and kmm_malloc blocks that
 * threads not in the child left half made or half freed. */
KMM_HIDDEN void kmm__slab_fork_child(struct kmm *mm);
/* In the child of a fork, after the magazines and depots were emptied:
 * slots out of their slabs that no caller holds go back. */
KMM_HIDDEN void kmm__slab_fork_sweep(struct kmm *mm);
/* Takes (lock) or releases every cache's lock, for fork (mm->slab_lock held). */
KMM_HIDDEN void kmm__slab_fork_locks(struct kmm *mm, bool lock);
/* In the child of a fork: if p is a slot of c out of its slab and not held
 * (after every magazine and depot was emptied, one a thread that is gone was
 * moving), puts it back, canary rewritten; true if it did. Anything else
 * (a stale or torn entry) is left alone. */
KMM_HIDDEN bool kmm__slot_fork_reclaim(struct kmm_cache *c, uintptr_t p);

/* slab/magazine.c */
/* Gives tc a magazine of c (a slot array for its head); the head, or NULL
 * when c has no id or no memory for one. */
KMM_HIDDEN struct kmm_magazine *kmm__mag_get(struct kmm *mm, struct kmm_tcache *tc, struct kmm_cache *c);
/* Objects of c in magazines, all threads (takes mm->tcache_lock). */
KMM_HIDDEN size_t kmm__mag_count(struct kmm *mm, struct kmm_cache *c);
/* Empties and detaches c's magazine from every thread (kmm_cache_destroy). */
KMM_HIDDEN void kmm__mag_detach(struct kmm *mm, struct kmm_cache *c);
KMM_HIDDEN int kmm__mag_check(struct kmm *mm, struct kmm_tcache *tc);

static inline uintptr_t slot_canary(const struct kmm_cache *c, uintptr_t p) { return c->mm->slab_secret ^ p; }

/* Objects are poisoned for ASan and Valgrind while free, but for the canary
 * (KMM_SLAB_POISON). */
static inline void obj_poison(const struct kmm_cache *c, uintptr_t p)
{
    (void)c, (void)p;
#if KMM_ASAN || KMM_VALGRIND
    uintptr_t after = p + c->canary_offset + (c->mm->slab_poison ? 8 : 0), end = p + c->slot_size;
#if KMM_ASAN
    __asan_poison_memory_region((void *)p, c->canary_offset);
    __asan_poison_memory_region((void *)after, end - after);
#endif
#if KMM_VALGRIND
    VALGRIND_MAKE_MEM_NOACCESS((void *)p, c->canary_offset);
    VALGRIND_MAKE_MEM_NOACCESS((void *)after, end - after);
#endif
#endif
}
static inline void obj_unpoison(const struct kmm_cache *c, uintptr_t p)
{
    (void)c, (void)p;
#if KMM_ASAN
    __asan_unpoison_memory_region((void *)p, c->slot_size);
#endif
#if KMM_VALGRIND
    VALGRIND_MAKE_MEM_UNDEFINED((void *)p, c->slot_size);
#endif
}

/* slab/object.c: one object in or out of a cache */
/* Hands out free slot f of cache c: with KMM_SLAB_POISON checks and clears
 * its canary; marks it held. */
static inline void *slot_claim(struct kmm_cache *c, struct free_slot f, const char *fn)
{
    uintptr_t *canary = (uintptr_t *)(f.addr + c->canary_offset);
    if (c->mm->slab_poison && KMM_UNLIKELY(*canary != slot_canary(c, f.addr)))
        kmm__slot_fatal(c, fn, "free object overwritten (write after free?) at", (void *)f.addr);
    obj_unpoison(c, f.addr);
    if (c->mm->slab_poison)
        *canary = 0;
    store_relaxed(f.held, 1);
    return (void *)f.addr;
}
/* Takes the newest slot of a non-empty magazine. */
static inline struct free_slot mag_take(struct kmm_magazine *m)
{
    struct free_slot *top = m->top - 1;
    store_relaxed(&m->top, top);
    return *top;
}
/* The allocation fast path (no KMM_SLAB_POISON): the newest slot of a
 * non-empty magazine, marked held. Reads no byte of the object. */
static inline void *mag_pop(struct kmm_magazine *m)
{
    struct free_slot f = mag_take(m);
    obj_unpoison(m->cache, f.addr);
    store_relaxed(f.held, 1);
    return (void *)f.addr;
}
/* An object of c (the magazine, else the slabs), zeroed if flags say so;
 * NULL with errno ENOMEM. */
KMM_HIDDEN void *kmm__obj_alloc(struct kmm_cache *c, unsigned flags, const char *fn);
/* Frees p, an address inside slab s of cache c: checks it starts a slot and
 * is not free already. */
KMM_HIDDEN void kmm__obj_free(struct kmm_cache *c, struct kmm_slab *s, uintptr_t p, const char *fn);
/* The common free (no KMM_SLAB_POISON): p starts a slot a caller holds, and
 * the thread's magazine for c has room. Touches no byte of the object (in
 * a big heap it is cold; its held byte in the descriptor is not).
 * Returns false for kmm__obj_free to do the rest (and all the reporting).
 * p past the last slot computes index objects, whose held byte is 0;
 * LARGE_BLOCK has recip 0, so every p "starts" its slot 0, whose held byte
 * (padding before it) is 0. */
static inline bool obj_free_fast(struct kmm *mm, struct kmm_slab *s, uintptr_t base, uint64_t recip,
                                 uint64_t mag_offset, uintptr_t p)
{
#if KMM_THREAD_CACHE
    uint64_t t = (p - base) * recip;   /* slot_product, from the slab map's copies */
    uint8_t *held = slab_held(s, t >> RECIP_SHIFT);
    busy_fast_enter();
    if (KMM_LIKELY(!(t & SLOT_START_BITS) && load_relaxed(held) == 1 &&
                   kmm__tls[0].key == load_relaxed(&mm->cache_key))) {
        struct kmm_magazine *m = (struct kmm_magazine *)(void *)((char *)kmm__tls[0].tc + mag_offset);
        struct free_slot *top = m->top;
        if (KMM_LIKELY(top != m->end)) {
            /* the slot first, then the held byte: a fork that cuts this
             * short leaves the slot findable past top (kmm__mag_fork_drain) */
            store_relaxed(&top->addr, p);
            store_relaxed(&top->held, held);
            store_relaxed(held, 0);
            obj_poison(s->cache, p);
            store_relaxed(&m->top, top + 1);
            busy_fast_exit();
            return true;
        }
    }
    busy_fast_exit();
#else
    (void)mm, (void)s, (void)base, (void)recip, (void)mag_offset, (void)p;
#endif
    return false;
}
/* What the slab map holds for the first page of a kmm_malloc block of whole
 * pages (its other pages hold NULL): kmm_free frees only such blocks, not
 * any page allocation. */
struct large_block_sentinel {
    uint8_t held[32];                     /* "slot 0" is never held: the free fast path reads held[31] */
    struct kmm_slab slab;                 /* all zero */
};
extern struct large_block_sentinel kmm__large_block KMM_HIDDEN;
#define LARGE_BLOCK (&kmm__large_block.slab)
/* The slab holding the direct-map address p, LARGE_BLOCK, or NULL. */
static inline struct kmm_slab *slab_of(struct kmm *mm, const void *p)
{
    struct slab_map_entry *map = load_relaxed(&mm->slab_map);
    uint64_t off = (uint64_t)((uintptr_t)p - mm->span_start);
    return map && off < mm->span_bytes ? load_relaxed(&map[off >> mm->page_shift].slab) : NULL;
}

#endif
