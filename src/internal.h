/* internal.h - what kmm's source files share and nobody else sees.
 *
 * Grouped by the file that defines it. Everything here is freestanding: no
 * libc header beyond <stddef.h> <stdint.h> <stdbool.h> <limits.h>.
 *
 * Lock order (outermost first):
 *   registry_lock (core/kmm.c)  ->  mm->tcache_lock  ->  area locks, lowest area first
 * No platform call that may sleep for long (release, meta_alloc) is made
 * under a lock, except release() in the release pass, which runs under the
 * area lock by design (see buddy.c).
 */
#ifndef KMM_INTERNAL_H
#define KMM_INTERNAL_H

#include <kmm/core.h>
#include <kmm/page.h>
#include <kmm/platform.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KMM_HIDDEN      __attribute__((visibility("hidden")))
#define KMM_LIKELY(x)   __builtin_expect(!!(x), 1)
#define KMM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define KMM_NORETURN    __attribute__((noreturn))

#ifndef KMM_THREAD_CACHE
#define KMM_THREAD_CACHE 0
#endif

/* Relaxed atomics: for values read without the lock that protects their
 * writers (metadata bytes, cache counts, counters). */
#define load_relaxed(p)     __atomic_load_n((p), __ATOMIC_RELAXED)
#define store_relaxed(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define add_relaxed(p, v)   __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)

/* ---- The metadata byte -------------------------------------------------
 *
 *   7   5 4     0
 *  +-----+-------+
 *  | kind| order |      one byte per page, meta[pfn - base_pfn]
 *  +-----+-------+
 *
 * Invariants (checked by kmm_check):
 *  - Memory is tiled by blocks. A block of order o starts at a page whose
 *    frame number is a multiple of 2^o; its first byte is its head (kind != 0)
 *    and the other 2^o - 1 bytes are 0 (META_TAIL). So split and merge write
 *    one or two bytes, never 2^o of them, and an address inside a block is
 *    recognised at once.
 *  - Blocks never cross an area boundary.
 *  - A FREE head is on its area's free list of its order, and
 *    its buddy is not a free block of the same order (it would have merged).
 *  - An allocation is an ALLOC block followed by zero or more ALLOC_CONT
 *    blocks of strictly decreasing order (exact and aligned sizes: 5 pages
 *    are an order-2 ALLOC and an order-0 ALLOC_CONT).
 *  - A CACHED block is in exactly one per-thread cache, of its area and order.
 */
typedef uint8_t kmm_meta_t;

#define META_ORDER_MASK 0x1fu
#define META_KIND_SHIFT 5
enum meta_kind {
    META_TAIL       = 0,   /* inside a block (the whole byte is 0) */
    META_FREE       = 1,   /* free block, on its area's free list */
    META_ALLOC      = 2,   /* first block of an allocation */
    META_ALLOC_CONT = 3,   /* further block of the allocation just before it */
    META_CACHED     = 4,   /* free block held in a per-thread cache */
    META_RESERVED   = 5,   /* kmm_reserve_pages */
    META_ABSENT     = 6,   /* no memory here (hole between ranges, kmm's own metadata) */
};
_Static_assert(KMM_MAX_ORDER <= META_ORDER_MASK, "order must fit the metadata byte");

static inline kmm_meta_t meta_make(enum meta_kind kind, unsigned order)
{
    return (kmm_meta_t)((unsigned)kind << META_KIND_SHIFT | order);
}
static inline enum meta_kind meta_kind(kmm_meta_t m) { return (enum meta_kind)(m >> META_KIND_SHIFT); }
static inline unsigned meta_order(kmm_meta_t m) { return m & META_ORDER_MASK; }
static inline bool meta_is_free(kmm_meta_t m)
{
    return meta_kind(m) == META_FREE;
}

/* ---- Areas and free lists ----------------------------------------------- */

/* A free list links the head pages of free blocks (the node lives in the
 * free page itself, as in Linux and kvm-unit-tests). Freed blocks go to the
 * front, so allocations reuse the memory most likely to be resident. */
struct free_node {
    struct free_node *next, *prev;
};

struct kmm_area {
    struct kmm_lock lock;
    uint64_t start_pfn, end_pfn;          /* the area's frames, clipped to memory */
    size_t total_pages;                   /* present pages (not ABSENT) */
    /* protected by lock: */
    size_t free_pages;                    /* pages in the free lists */
    size_t reserved_pages;
    size_t freed_since_release;           /* pages freed into the lists since the last release pass */
    uint32_t nonempty;                    /* bit o set iff free[o] is not empty */
    size_t nr_free[KMM_MAX_ORDER + 1];
    struct free_node free[KMM_MAX_ORDER + 1];   /* list heads (sentinels) */
};

/* ---- Per-thread caches (page/tcache.c) ---------------------------------- */

/* A refill brings one block of this order's worth: 64 pages, whose 64
 * metadata bytes are one cache line. */
#define TCACHE_REFILL_ORDER 6

/* A stack of cached blocks of one area and order, by direct-map address.
 * The addresses live here, not in the blocks: filling a cache touches no
 * page, popping reads no cold line, and a stray write into a freed page
 * cannot redirect the cache. */
struct tcache_list {
    uint32_t count;                       /* blocks; written by the owner only, read relaxed by stats */
    uintptr_t *slot;                      /* slot[0] is the coldest, slot[count - 1] the next to go */
};

/* Blocks a list of this order holds at most (see tcache_high). */
#define TCACHE_CAP(order) (3u * (1u << (TCACHE_REFILL_ORDER - (order))) + 1)
#define TCACHE_SLOTS_PER_AREA (TCACHE_CAP(0) + TCACHE_CAP(1) + TCACHE_CAP(2) + TCACHE_CAP(3))
_Static_assert(KMM_PCP_MAX_ORDER == 3, "TCACHE_SLOTS_PER_AREA sums orders 0..3");

/* One thread's cache of small blocks for one memory system. Owned lock-free
 * by its thread; others only read counts. */
struct kmm_tcache {
    struct kmm *mm;
    uint64_t mm_id;
    struct kmm_tcache *next;              /* in mm->tcaches, protected by mm->tcache_lock */
    /* one more row than areas: NO_AREA's, always empty, so that a mask
     * accepting no non-empty area falls to the slow path without a test */
    struct tcache_list list[KMM_MAX_AREAS + 1][KMM_PCP_MAX_ORDER + 1];
    uintptr_t storage[KMM_MAX_AREAS][TCACHE_SLOTS_PER_AREA];   /* the lists' slots */
};
#define NO_AREA KMM_MAX_AREAS

#define TLS_SLOTS 4
struct tls_slot {
    uint64_t key;                         /* mm->cache_key when last drained: the fast path's one test */
    uint64_t mm_id;                       /* 0 = unused */
    struct kmm_tcache *tc;
};

/* ---- The memory system (core/kmm.c) -------------------------------------- */

struct kmm {
    /* hot fields first */
    uint64_t cache_key;                   /* id << KEY_EPOCH_BITS | drain epoch; atomic */
    uintptr_t span_start;                 /* direct-map address of frame base_pfn */
    uint64_t span_bytes;                  /* (end_pfn - base_pfn) pages, in bytes */
    kmm_meta_t *meta;                     /* meta[pfn - base_pfn]; one spare 0 byte at the end */
    unsigned page_shift;
    size_t page_size;
    uint64_t base_pfn, end_pfn;           /* frames covered by meta[] */
    uintptr_t direct_map;                 /* virtual address of physical 0 */
    uint64_t id;                          /* unique over the process's life, never 0 */
    unsigned nr_areas;
    unsigned release_order;               /* free blocks this large are released */
    size_t release_budget;                /* pages an area may free between release passes */
    /* Release maps: one bit per chunk of 2^release_order pages (aligned).
     * release_map: pages in the chunk were written since the last pass (a
     * free, or list links). aged_map: the chunk was wholly free at the last
     * pass. A pass gives back a chunk wholly free at two passes in a row with
     * no write between (a second chance for memory about to be reused).
     * Words are shared by neighbouring areas: bits change with atomic or/and. */
    uint64_t *release_map;                /* NULL without a platform release hook */
    uint64_t *aged_map;                   /* release_map + release_map_words */
    uint64_t release_chunk0;              /* chunk number of bit 0 */
    size_t release_map_words;             /* words of each map */
    /* for each area mask: the accepted non-empty areas, most preferred first, ended by NO_AREA */
    uint8_t area_pref[KMM_AREA_MASK + 1][KMM_MAX_AREAS + 1];
    struct kmm_area area[KMM_MAX_AREAS];

    const struct kmm_platform *pf;
    void *ctx;
    struct kmm_memory mem;
    size_t meta_len;                      /* bytes of meta[], the spare one included */
    bool meta_carved;                     /* meta[] and this struct live in memory, not meta_alloc */

    struct kmm_lock tcache_lock;
    struct kmm_tcache *tcaches;           /* protected by tcache_lock */

    struct kmm *registry_next;            /* protected by registry_lock */
};

/* core/kmm.c */
KMM_HIDDEN bool kmm__is_live(uint64_t id);     /* caller holds the registry lock */
KMM_HIDDEN void kmm__registry_lock(void);
KMM_HIDDEN void kmm__registry_unlock(void);

/* core/report.c: messages built without libc (no snprintf in freestanding code). */
struct kmm_msg {
    char buf[320];
    size_t len;
};
KMM_HIDDEN void kmm__msg_str(struct kmm_msg *m, const char *s);
KMM_HIDDEN void kmm__msg_hex(struct kmm_msg *m, uint64_t v);
KMM_HIDDEN void kmm__msg_dec(struct kmm_msg *m, uint64_t v);
KMM_HIDDEN void kmm__report(struct kmm *mm, struct kmm_msg *m);
KMM_HIDDEN KMM_NORETURN void kmm__fatal(struct kmm *mm, struct kmm_msg *m);
/* "kmm: <fn>: <why> <addr> (phys <phys>)" then abort. */
KMM_HIDDEN KMM_NORETURN void kmm__fatal_page(struct kmm *mm, const char *fn, const char *why, const void *addr);
/* A refused call: tells the platform (errno) and, for bad arguments, reports why. */
KMM_HIDDEN void kmm__refuse(struct kmm *mm, int err, const char *fn, const char *why);
/* kmm_check's verdict on one broken invariant: reports it, returns -1. */
KMM_HIDDEN int kmm__check_fail(struct kmm *mm, const char *what, uint64_t pfn);

/* ---- Small helpers -------------------------------------------------------- */

static inline void kmm_lock(struct kmm *mm, struct kmm_lock *l) { mm->pf->lock(l); }
static inline void kmm_unlock(struct kmm *mm, struct kmm_lock *l) { mm->pf->unlock(l); }

static inline kmm_meta_t meta_get(const struct kmm *mm, uint64_t pfn)
{
    return load_relaxed(&mm->meta[pfn - mm->base_pfn]);
}
static inline void meta_set(struct kmm *mm, uint64_t pfn, kmm_meta_t m)
{
    store_relaxed(&mm->meta[pfn - mm->base_pfn], m);
}
static inline void *pfn_to_virt(const struct kmm *mm, uint64_t pfn)
{
    return (void *)(mm->direct_map + (uintptr_t)(pfn << mm->page_shift));
}
/* Frame number of a direct-map address, or UINT64_MAX outside the span. */
static inline uint64_t virt_to_pfn(const struct kmm *mm, const void *addr)
{
    uint64_t off = (uint64_t)((uintptr_t)addr - mm->span_start);
    return off < mm->span_bytes ? mm->base_pfn + (off >> mm->page_shift) : UINT64_MAX;
}
/* Searched from the top: the highest area usually holds most memory. */
static inline unsigned area_of_pfn(const struct kmm *mm, uint64_t pfn)
{
    unsigned a = mm->nr_areas - 1;
    while (a > 0 && pfn < mm->area[a].start_pfn)
        a--;
    return a;
}
static inline unsigned floor_log2(uint64_t v) { return 63u - (unsigned)__builtin_clzll(v); }
static inline unsigned ceil_log2(uint64_t v) { return v <= 1 ? 0 : floor_log2(v - 1) + 1; }

/* ---- Telling ASan and Valgrind which pages are live ------------------------
 * Freed pages become inaccessible to them, but for the first 16 bytes of
 * each block, where the allocator keeps its links (and checks them itself),
 * so a use after free in kmm memory is reported as in libc memory. Compiled
 * in under -fsanitize=address, and with -DKMM_VALGRIND=1 (CMake option
 * KMM_VALGRIND) for Valgrind's client requests; nothing otherwise. */
#if defined(__SANITIZE_ADDRESS__)
#define KMM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KMM_ASAN 1
#endif
#endif
#ifndef KMM_ASAN
#define KMM_ASAN 0
#endif
#ifndef KMM_VALGRIND
#define KMM_VALGRIND 0
#endif
#if KMM_ASAN
void __asan_poison_memory_region(void const volatile *addr, size_t size);
void __asan_unpoison_memory_region(void const volatile *addr, size_t size);
#endif
#if KMM_VALGRIND
#include <valgrind/memcheck.h>
#endif
#define KMM_LINK_BYTES 16

static inline void pages_poison(const struct kmm *mm, void *p, uint64_t npages)
{
    size_t len = (size_t)(npages << mm->page_shift) - KMM_LINK_BYTES;
    (void)len, (void)p;
#if KMM_ASAN
    __asan_poison_memory_region((char *)p + KMM_LINK_BYTES, len);
#endif
#if KMM_VALGRIND
    VALGRIND_MAKE_MEM_NOACCESS((char *)p + KMM_LINK_BYTES, len);
#endif
}

/* A block head inside a larger freed block gets its link words back. */
static inline void link_unpoison(void *p)
{
    (void)p;
#if KMM_ASAN
    __asan_unpoison_memory_region(p, KMM_LINK_BYTES);
#endif
#if KMM_VALGRIND
    VALGRIND_MAKE_MEM_UNDEFINED(p, KMM_LINK_BYTES);
#endif
}

static inline void pages_unpoison(const struct kmm *mm, void *p, uint64_t npages)
{
    size_t len = (size_t)(npages << mm->page_shift);
    (void)len, (void)p;
#if KMM_ASAN
    __asan_unpoison_memory_region(p, len);
#endif
#if KMM_VALGRIND
    VALGRIND_MAKE_MEM_UNDEFINED(p, len);
#endif
}

/* ---- page/buddy.c: the buddy allocator of one area (area lock held) ------- */
KMM_HIDDEN void kmm__area_init(struct kmm *mm, unsigned a);
/* Adds the free block to the front of its list. */
KMM_HIDDEN void kmm__area_push_free(struct kmm *mm, struct kmm_area *ar, uint64_t pfn, unsigned order);
/* Takes a free block of exactly this order, splitting a larger one; UINT64_MAX if none.
 * The head byte is left for the caller to set. */
KMM_HIDDEN uint64_t kmm__area_take(struct kmm *mm, struct kmm_area *ar, unsigned order);
/* Frees a block (its head byte may hold anything), merging with free buddies. */
KMM_HIDDEN void kmm__area_free_block(struct kmm *mm, struct kmm_area *ar, uint64_t pfn, unsigned order);
/* Removes a free block from its list. */
KMM_HIDDEN void kmm__area_unlink_free(struct kmm *mm, struct kmm_area *ar, uint64_t pfn, unsigned order);
/* Gives wholly free chunks marked in the release map back to the platform:
 * now if force, else only once release_budget pages were freed since the last pass. */
KMM_HIDDEN void kmm__area_release(struct kmm *mm, struct kmm_area *ar, bool force);

/* ---- page/tcache.c ---------------------------------------------------------- */
#if KMM_THREAD_CACHE
extern _Thread_local struct tls_slot kmm__tls[TLS_SLOTS] KMM_HIDDEN __attribute__((tls_model("initial-exec")));
#endif
KMM_HIDDEN struct kmm_tcache *kmm__tcache_get_slow(struct kmm *mm);
/* The first list, in the preference order of flags, that holds a block of
 * this order, refilling empty ones from their area; NULL if all areas are out. */
KMM_HIDDEN struct tcache_list *kmm__tcache_refill(struct kmm *mm, struct kmm_tcache *tc, unsigned order, unsigned flags);
KMM_HIDDEN void kmm__tcache_flush(struct kmm *mm, struct kmm_tcache *tc, unsigned a, unsigned order, uint32_t keep);
/* Empties every list of tc; returns the blocks it held. */
KMM_HIDDEN size_t kmm__tcache_drain_all(struct kmm *mm, struct kmm_tcache *tc);
KMM_HIDDEN void kmm__tcache_destroy_all(struct kmm *mm);
KMM_HIDDEN size_t kmm__tcache_cached_pages(struct kmm *mm);
KMM_HIDDEN int kmm__tcache_check(struct kmm *mm, size_t *cached_blocks_per_area_order);
/* Empties the calling thread's cache for mm; returns the blocks it held. */
KMM_HIDDEN size_t kmm__tcache_drain_current(struct kmm *mm);
_Static_assert(TCACHE_REFILL_ORDER > KMM_PCP_MAX_ORDER, "a refill holds several blocks of every cached order");
static inline uint32_t tcache_batch(unsigned order) { return 1u << (TCACHE_REFILL_ORDER - order); }
/* Blocks a cache list holds before it gives a batch back. */
static inline uint32_t tcache_high(unsigned order) { return 3 * tcache_batch(order); }

#define KEY_EPOCH_BITS 24
#define KEY_EPOCH_MASK ((1u << KEY_EPOCH_BITS) - 1)

/* The calling thread's cache for mm, or NULL when it has none (no TLS, or
 * the platform could not give memory for one). One comparison when the
 * thread last used mm and no kmm_drain happened since. */
static inline struct kmm_tcache *tcache_get(struct kmm *mm)
{
#if KMM_THREAD_CACHE
    if (KMM_LIKELY(kmm__tls[0].key == load_relaxed(&mm->cache_key)))
        return kmm__tls[0].tc;
    return kmm__tcache_get_slow(mm);
#else
    (void)mm;
    return NULL;
#endif
}

/* Index of a direct-map address in meta[], or >= span when outside. */
static inline uint64_t virt_to_index(const struct kmm *mm, const void *addr)
{
    return (uint64_t)((uintptr_t)addr - mm->span_start) >> mm->page_shift;
}

/* ---- page/reserve.c ---------------------------------------------------------- */
/* Head frame of the block containing pfn (within its area); UINT64_MAX if the metadata is broken. */
KMM_HIDDEN uint64_t kmm__block_head(struct kmm *mm, const struct kmm_area *ar, uint64_t pfn);

/* ---- page/check.c, page/stats.c ------------------------------------------------ */
KMM_HIDDEN int kmm__page_check(struct kmm *mm);

#endif
