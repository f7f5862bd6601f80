/* internal.h - what kmm's source files share and nobody else sees.
 *
 * Grouped by the file that defines it. Everything here is freestanding: no
 * libc header beyond <stddef.h> <stdint.h> <stdbool.h> <limits.h>.
 *
 * Lock order (outermost first):
 *   registry_lock (core/kmm.c)  ->  mm->slab_lock  ->  mm->tcache_lock  ->
 *   a cache's lock (one at a time)  ->  area locks, lowest area first  ->
 *   the vmalloc lock (vm->lock)
 * Only fork's prepare handler (core/kmm.c) holds every cache's lock at once,
 * in the order of the caches' list, with slab_lock held: no one else holds
 * two, so this cannot deadlock. It then takes the area locks, the vmalloc
 * lock and the metadata object classes' locks.
 * A metadata object class's lock (core/meta.c, mm->meta_obj[i].lock) is a
 * leaf: taken under any of these or none, never with another one held, and
 * nothing is taken or called under it (but fork's prepare handler, which
 * takes them all, in class order, last).
 * The vmalloc layer's vm->lock is a leaf: nothing else is taken, and no page
 * or object is allocated or freed, under it (but by fork's prepare handler).
 * The registry lock (core/kmm.c, a spin lock) is taken alone: only the
 * registry and mm->retiring under it (but fork's prepare handler, which
 * takes it first).
 * No platform call that may sleep for long (release, meta_alloc) is made
 * under a lock, except release() in the release pass, which runs under the
 * area lock by design (see buddy.c).
 *
 * The reclaim (kmm__reclaim: a failing page allocation, kmm_drain) takes
 * the vm lock (kmm_vmalloc_purge), mm->tcache_lock, mm->slab_lock, cache
 * and area locks, one section after another: it runs only where the caller
 * holds no kmm lock. The one allocation made under a lock, metadata from
 * the page allocator (kmm__meta_alloc without a meta_alloc hook, under
 * slab_lock), passes KMM__NO_RECLAIM and only drains its own cache. The
 * reclaim allocates nothing, so it never re-enters itself.
 */
#ifndef KMM_INTERNAL_H
#define KMM_INTERNAL_H

#include <kmm/core.h>
#include <kmm/page.h>
#include <kmm/platform.h>
#include <kmm/slab.h>
#include <kmm/vm.h>

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
 *  - An allocation made by a layer above (slab, kmm_malloc's large blocks,
 *    vmalloc, metadata pages, and the layers to come) starts with an OWNED
 *    head instead of ALLOC, and owner[pfn] of that head names the layer
 *    (enum kmm_owner, never OWNER_PAGES). Only that layer frees it: the
 *    free paths of the others find OWNED, or the wrong owner, and abort
 *    naming the owner. owner[] is read only at OWNED heads (what it holds
 *    elsewhere is stale and means nothing), so marking costs one store when
 *    a layer takes pages and nothing on the page allocator's fast paths:
 *    their test for ALLOC already refuses OWNED.
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
    META_OWNED      = 7,   /* first block of an allocation a layer above owns (owner[] says which) */
};
_Static_assert(KMM_MAX_ORDER <= META_ORDER_MASK, "order must fit the metadata byte");

/* Who owns a page allocation: the page allocator's caller, or a layer. */
enum kmm_owner {
    OWNER_PAGES = 0,       /* kmm_alloc_pages* for its caller: an ALLOC head */
    OWNER_SLAB,            /* a slab of a kmm_cache or of kmm_malloc's classes */
    OWNER_KMALLOC,         /* a kmm_malloc block of whole pages */
    OWNER_VMALLOC,         /* frames mapped into a kmm_vmalloc area */
    OWNER_META,            /* kmm's metadata memory, on platforms without meta_alloc */
    OWNER_LEAKED,          /* slabs of a cache destroyed with objects still allocated: kept for good */
    OWNER_ZSMALLOC,        /* the layers to come */
    OWNER_UNMAPPED,
    OWNER_SECRET,
    OWNER_EXECMEM,
    NR_OWNERS
};

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

#define KMM_MAX_CACHES 1024               /* caches with per-thread magazines, kmalloc ones included */
#define NO_MAG_ID KMM_MAX_CACHES          /* the id of caches beyond those: no magazines, always empty */
struct mag_chunk;

/* A free slot on its way through magazines and depots: its address, and
 * where its slab keeps its held byte (so that handing it out sets the byte
 * without looking the slab up). */
struct free_slot {
    uintptr_t addr;
    uint8_t *held;
};

/* A thread's magazine of one cache (slab/magazine.c): a stack of free slots
 * from slot to end, filled up to top. The head is kept inline in the
 * thread's cache, so that the fast paths find it in one line of one table,
 * with one load less than a pointer to a magazine would cost, and a
 * mixed-size workload touches two heads per line of one table instead of a
 * line per magazine all over. A pop tests top != slot, a push top != end:
 * one load and one compare each.
 *
 * Invariants (checked by kmm_check):
 *  - cache == NULL (no magazine): slot == top == end == NULL, so the
 *    allocation fast path (top != slot) and the free fast path (top != end)
 *    both fall to the slow path without a test of their own;
 *  - otherwise cache->id is the index of this head, slot <= top <= end ==
 *    slot + cache->mag_cap, mag_cap <= MAG_MAX, and slot[0..top) are
 *    distinct free slots of cache, each out of its slab, not held, with
 *    the address of its own held byte (and, with KMM_SLAB_POISON, its
 *    canary intact).
 * Written by the owner thread (top with relaxed stores), and under
 * mm->tcache_lock by kmm_cache_destroy; others read cache with acquire, then
 * slot, top and the slots relaxed. */
struct kmm_magazine {
    struct free_slot *top;                /* the next push goes here, the next pop takes top[-1] */
    struct free_slot *slot;               /* MAG_MAX slots carved from the thread's chunks */
    struct free_slot *end;                /* slot + the cache's mag_cap */
    struct kmm_cache *cache;              /* NULL when there is no magazine; published with release */
};
_Static_assert(sizeof(struct kmm_magazine) == 32, "two magazine heads per cache line");
static inline uint32_t mag_count(const struct kmm_magazine *m) { return (uint32_t)(m->top - m->slot); }
/* The head of magazine id in tc: one shift and one add (the table's offset
 * folds into the loads' displacements). */
#define tcache_mag(tc, id) \
    ((struct kmm_magazine *)(void *)((char *)(tc) + offsetof(struct kmm_tcache, mag) + (size_t)(id) * sizeof(struct kmm_magazine)))

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
    /* The key the owner last drained at (its TLS slot's key), written by
     * the owner under mm->tcache_lock: a reclaim that set a key <= synced
     * leaves the cache alone (its owner drained since, and may use it). */
    uint64_t synced;
    const struct kmm_busy *busy;          /* the owner thread's (kmm__busy, in its TLS) */
    /* one more row than areas: NO_AREA's, always empty, so that a mask
     * accepting no non-empty area falls to the slow path without a test */
    struct tcache_list list[KMM_MAX_AREAS + 1][KMM_PCP_MAX_ORDER + 1];
    uintptr_t storage[KMM_MAX_AREAS][TCACHE_SLOTS_PER_AREA];   /* the lists' slots */
    /* the slab layer's magazines, by cache id (slab/magazine.c); written by
     * the owner (published with release) and by kmm_cache_destroy under
     * mm->tcache_lock */
    struct kmm_magazine mag[KMM_MAX_CACHES + 1];   /* [NO_MAG_ID] never has one */
    struct free_slot *mag_free;           /* unused slot arrays of this thread, linked through slot[0].addr */
    struct mag_chunk *mag_chunks;         /* memory of this thread's magazines */
};
#define NO_AREA KMM_MAX_AREAS

/* kmm_malloc's slab classes stop below min(page size, this) */
#define KMALLOC_SMALL_LIMIT 65536
/* Sizes up to this have a class each 16 bytes: class (size - 1) / 16, which
 * is also the cache id of kmm_malloc's any-area caches, with no table (what
 * glibc's tcache and mimalloc's direct pages do up to 1 KiB). */
#define KMALLOC_DIRECT 1024

#define TLS_SLOTS 4
struct tls_slot {
    uint64_t key;                         /* mm->cache_key when last drained (== tc->synced): the fast path's one test */
    uint64_t mm_id;                       /* 0 = unused */
    struct kmm_tcache *tc;
};

/* ---- Small objects of metadata memory (core/meta.c) ---------------------
 *
 * Bookkeeping of variable size (vmalloc's tree nodes and run arrays; the
 * layers to come) from chunks of kmm__meta_alloc memory, never from
 * kmm_malloc: a user's overflow in the direct map cannot reach it. Classes
 * of 16, 32, 48, 64, 96 ... 768, 1024 bytes (powers of two and the 1.5x
 * between them, as Linux's kmalloc-96 and -192); a chunk is META_CHUNK
 * bytes at a META_CHUNK boundary, its header (struct meta_chunk, meta.c)
 * first, so a free finds it with a mask. Larger objects come from
 * kmm__meta_alloc directly. The caller passes the size to the free, as to
 * kmm__meta_free: objects carry no header.
 */
#define META_CHUNK 4096
#define META_OBJ_CLASSES 12
#define META_OBJ_MAX 1024
/* Empty chunks a class keeps for reuse (a chunk is a mapping: a purge of a
 * few hundred vmalloc areas must not unmap and map one per area); kmm_drain
 * gives them all back. */
#define META_KEEP_EMPTY 8
struct meta_chunk;
struct meta_class {
    struct kmm_lock lock;
    /* protected by lock: */
    struct meta_chunk *partial;           /* chunks with a free object (empty ones included) */
    struct meta_chunk *full;              /* chunks with none */
    size_t chunks;                        /* on both lists */
    size_t empty;                         /* of them, chunks with no object in use (<= META_KEEP_EMPTY) */
    size_t objects;                       /* objects in use */
};

/* ---- The memory system (core/kmm.c) -------------------------------------- */

/* The page sizes kmm_create accepts: powers of two from 4 KiB to 1 MiB. The
 * slab layer's slot arithmetic is proved for slabs of up to 8 pages of the
 * largest (see RECIP_SHIFT). */
#define KMM_MIN_PAGE_SHIFT 12
#define KMM_MAX_PAGE_SHIFT 20

struct kmm {
    /* hot fields first */
    uint64_t cache_key;                   /* this mm's drain epoch: a value of kmm__next_key, unique in the process; atomic */
    size_t kmalloc_max;                   /* largest slab size of kmm_malloc; 0 until the slab layer is up (acquire) */
    size_t kmalloc_direct;                /* KMALLOC_DIRECT once the slab layer is up (acquire), else 0 */
    uintptr_t slab_secret;                /* canaries of free slots are slab_secret ^ address (set with kmalloc_max) */
    uintptr_t span_start;                 /* direct-map address of frame base_pfn */
    uint64_t span_bytes;                  /* (end_pfn - base_pfn) pages, in bytes */
    uint64_t slab_span_bytes;             /* span_bytes once slab_map is made, 0 before (acquire): one test for both */
    kmm_meta_t *meta;                     /* meta[pfn - base_pfn]; one spare 0 byte at the end */
    uint8_t *owner;                       /* owner[pfn - base_pfn]: enum kmm_owner at OWNED heads (meta + meta_len) */
    unsigned page_shift;
    size_t page_size;
    uint64_t base_pfn, end_pfn;           /* frames covered by meta[] */
    uintptr_t direct_map;                 /* virtual address of physical 0 */
    uint64_t id;                          /* unique over the process's life, never 0 */
    /* KMM_LIVE from kmm_create until kmm_destroy, KMM_DEAD after: every
     * public slow path tests it first (mm_live). With pf, it lies in the
     * struct's first page, the one a destroyed memory system keeps (see
     * kmm_destroy). */
    uint64_t live;
    const struct kmm_platform *pf;
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

    void *ctx;
    struct kmm_memory mem;
    size_t meta_len;                      /* bytes of meta[], the spare one included; owner[] has as many */
    bool meta_carved;                     /* meta[] and this struct live in memory, not meta_alloc */

    struct kmm_lock tcache_lock;
    struct kmm_tcache *tcaches;           /* protected by tcache_lock */

    struct kmm *registry_next;            /* protected by registry_lock */
    unsigned retiring;                    /* threads retiring a cache of this mm (registry_lock): kmm_destroy waits */

    /* slab layer (slab/) */
    struct kmm_slab_root *slabs;          /* made on first use; published with release */
    struct slab_map_entry *slab_map;      /* slab_map[pfn - base_pfn]: the page's slab (see the slab layer) */
    /* KMM_SLAB_POISON: free slots carry canaries; kmalloc_max and
     * slab_span_bytes stay 0, so every call takes the slow paths, which
     * write and check them */
    bool slab_poison;
    struct kmm_lock slab_lock;            /* making the root, the list of caches, cache ids */
    /* kmm_malloc's size class of a size, by (size + 15) / 16; filled before
     * kmalloc_max is published. Here rather than behind a pointer: one
     * load less on the allocation fast path. */
    uint8_t kmalloc_class[KMALLOC_SMALL_LIMIT / 16 + 1];

    /* vmalloc layer (vm/) */
    struct kmm_vm *vm;                    /* made on first use; published with release */
    uint64_t vm_size;                     /* the configuration's vmalloc_* */
    size_t vm_max_mappings;
    unsigned vm_flags;

    /* small metadata objects (core/meta.c) */
    struct meta_class meta_obj[META_OBJ_CLASSES];
    size_t meta_large, meta_large_bytes, meta_large_held;   /* above META_OBJ_MAX; atomic */
    /* fork (core/kmm.c): the platform made the child its copy of physical
     * memory (set in the prepare handler, read in the child's) */
    bool fork_copied;

    /* fault injection (core/meta.c) */
    unsigned fault_sites;
    unsigned long fault_nth, fault_times;
    unsigned long fault_calls, fault_injected;   /* atomic */
};

/* core/kmm.c */
KMM_HIDDEN bool kmm__is_live(uint64_t id);     /* caller holds the registry lock */
/* mm->live: "kmm-live", and "kmm-dead" once destroyed. */
#define KMM_LIVE 0x6576696c2d6d6d6bull
#define KMM_DEAD 0x646165642d6d6d6bull
/* Reports a call (fn) on a destroyed memory system, or on something that is
 * not one, and aborts. */
KMM_HIDDEN KMM_NORETURN void kmm__not_live(struct kmm *mm, const char *fn);
/* The test at the entry of every public slow path: one load of a line the
 * call reads anyway. The fast paths have none: a destroyed memory system
 * misses each of them (see kmm_destroy) and lands here. */
static inline void mm_live(struct kmm *mm, const char *fn)
{
    if (KMM_UNLIKELY(mm->live != KMM_LIVE))
        kmm__not_live(mm, fn);
}
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
KMM_HIDDEN struct kmm_tcache *kmm__tcache_get_slow(struct kmm *mm);
/* The first list, in the preference order of flags, that holds a block of
 * this order, refilling empty ones from their area; NULL if all areas are out. */
KMM_HIDDEN struct tcache_list *kmm__tcache_refill(struct kmm *mm, struct kmm_tcache *tc, unsigned order, unsigned flags);
KMM_HIDDEN void kmm__tcache_flush(struct kmm *mm, struct kmm_tcache *tc, unsigned a, unsigned order, uint32_t keep);
/* Empties every magazine and list of tc (mm->tcache_lock held); returns
 * the blocks and objects it held. */
KMM_HIDDEN size_t kmm__tcache_drain_all(struct kmm *mm, struct kmm_tcache *tc);
KMM_HIDDEN void kmm__tcache_destroy_all(struct kmm *mm);
KMM_HIDDEN size_t kmm__tcache_cached_pages(struct kmm *mm);
KMM_HIDDEN int kmm__tcache_check(struct kmm *mm, size_t *cached_blocks_per_area_order);
/* Empties the calling thread's cache for mm; returns the blocks it held. */
KMM_HIDDEN size_t kmm__tcache_drain_current(struct kmm *mm);
/* In the child of a fork (one thread; locks free): gives back everything
 * every per-thread cache held, and what threads that do not exist in the
 * child were moving in or out of theirs; frees the caches of those threads. */
KMM_HIDDEN void kmm__tcache_fork_child(struct kmm *mm);
_Static_assert(TCACHE_REFILL_ORDER > KMM_PCP_MAX_ORDER, "a refill holds several blocks of every cached order");
static inline uint32_t tcache_batch(unsigned order) { return 1u << (TCACHE_REFILL_ORDER - order); }
/* Blocks a cache list holds before it gives a batch back. */
static inline uint32_t tcache_high(unsigned order) { return 3 * tcache_batch(order); }

/* ---- Taking an idle thread's caches back (page/tcache.c: kmm__tcache_reclaim)
 *
 * A cache is its owner's without a lock. A thread that no longer calls kmm
 * would keep its caches for ever, so a reclaim takes them back from outside,
 * with an asymmetric Dekker handshake (as in Linux's membarrier users, and
 * liburcu): the owner pays two plain stores per call, the reclaimer a
 * barrier in every thread (the platform's barrier_all: membarrier(2)).
 *
 * Owner, around every use of its caches:
 *     busy = 1;  compiler barrier;  load mm->cache_key;  compare with its
 *     TLS key;  on a match use the caches lock-free;  busy = 0 (release).
 * On a mismatch it drains its caches under mm->tcache_lock and takes the
 * new key there (tcache_sync), before touching them again.
 * Reclaimer:
 *     under tcache_lock: cache_key = E, a new key;  barrier_all();
 *     under tcache_lock, for each cache: skip it if synced >= E (its owner
 *     drained after the new key, under the lock) or if busy != 0 (acquire);
 *     else drain it.
 * Why a cache drained that way is not in use: barrier_all runs a full
 * barrier F in the owner thread after the store of E (a thread not
 * running passes one when it is switched in or out). A use whose busy = 1
 * precedes F in program order is seen by the load of busy after
 * barrier_all, unless it has ended (busy = 0 with release: everything it
 * did happens before the drain). A use whose busy = 1 follows F loads the
 * key after F, so sees E or a later key: not its TLS key (its synced < E),
 * so it drains under tcache_lock, which the reclaimer holds, before it
 * touches its caches; once it has, synced >= E and the reclaimer skips it.
 * What the reclaimer wrote (counts 0, magazines empty) happens before that
 * drain by the lock: an empty cache is a valid state for its owner.
 * Without the compiler barrier the owner's key load could move above its
 * busy store; the hardware reordering of the two (a store buffer) is what
 * F rules out. Uses nest (a slab's pages come from the page allocator
 * inside kmm_malloc's slow path): slow paths count in slow, the fast paths,
 * which call nothing that uses the caches, set fast; a cache is idle when
 * both are 0. Relaxed atomics throughout, for TSan: plain stores and loads
 * on the machine. */
struct kmm_busy {
    uint32_t fast;                        /* 1 inside a fast path */
    uint32_t slow;                        /* slow paths entered and not left */
};
#if KMM_THREAD_CACHE
/* kmm__tls and kmm__busy are one thread-local object: the fast paths
 * address both from one TLS offset (one instruction less per call). */
struct kmm_tls_block {
    struct tls_slot slot[TLS_SLOTS];
    struct kmm_busy busy;
};
extern _Thread_local struct kmm_tls_block kmm__tls_block KMM_HIDDEN __attribute__((tls_model("initial-exec")));
#define kmm__tls (kmm__tls_block.slot)
#define kmm__busy (kmm__tls_block.busy)
static inline void busy_fast_enter(void)
{
    store_relaxed(&kmm__busy.fast, 1);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
}
static inline void busy_fast_exit(void) { __atomic_store_n(&kmm__busy.fast, 0, __ATOMIC_RELEASE); }
static inline void busy_slow_enter(void)
{
    store_relaxed(&kmm__busy.slow, load_relaxed(&kmm__busy.slow) + 1);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
}
static inline void busy_slow_exit(void) { __atomic_store_n(&kmm__busy.slow, load_relaxed(&kmm__busy.slow) - 1, __ATOMIC_RELEASE); }
#else
static inline void busy_fast_enter(void) {}
static inline void busy_fast_exit(void) {}
static inline void busy_slow_enter(void) {}
static inline void busy_slow_exit(void) {}
#endif

/* Allocation flag of the layers above (never a caller's): fail without a
 * reclaim, for allocations made under a lock the reclaim takes. */
#define KMM__NO_RECLAIM (1u << 30)

/* Takes back the caches of the threads that are idle in kmm (all of them
 * when the platform has no barrier_all hook: the caller's only), after a
 * new key that makes every other thread drain its own at its next call;
 * returns the blocks and objects taken. No kmm lock may be held. */
KMM_HIDDEN size_t kmm__tcache_reclaim(struct kmm *mm);
/* What a failing allocation does before its one retry (Linux drains every
 * CPU's lists): kmm_vmalloc_purge, kmm__tcache_reclaim, kmm__slab_drain.
 * With KMM__NO_RECLAIM in flags, only drains the caller's cache. */
KMM_HIDDEN void kmm__reclaim(struct kmm *mm, unsigned flags);
/* A fresh cache key (never 0, never reused: 64 bits do not wrap). */
KMM_HIDDEN uint64_t kmm__next_key(void);

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

/* ---- core/meta.c: metadata memory for the layers above pages; faults ---- */
/* Zeroed memory apart from what callers get: the platform's meta_alloc, or
 * pages from the page allocator when it has none. NULL when out of memory or
 * when a KMM_FAULT_META failure is injected. */
KMM_HIDDEN void *kmm__meta_alloc(struct kmm *mm, size_t len);
KMM_HIDDEN void kmm__meta_free(struct kmm *mm, void *p, size_t len);
/* A zeroed object of size bytes of metadata memory (see struct meta_class),
 * for bookkeeping of any layer that must stay out of the direct map. NULL
 * when out of memory or when a KMM_FAULT_META failure is injected (every
 * call is a fault site). May call meta_alloc: not under a lock. */
KMM_HIDDEN void *kmm__meta_obj_alloc(struct kmm *mm, size_t size);
/* Frees an object of kmm__meta_obj_alloc, given the size it was asked with
 * (NULL is ignored); aborts on one that is not live. May give an emptied
 * chunk back to the platform (meta_free): not under a lock either. */
KMM_HIDDEN void kmm__meta_obj_free(struct kmm *mm, void *p, size_t size);
KMM_HIDDEN void kmm__meta_obj_init(struct kmm *mm);
KMM_HIDDEN void kmm__meta_obj_drain(struct kmm *mm);   /* empty chunks back to the platform */
KMM_HIDDEN void kmm__meta_obj_destroy(struct kmm *mm);   /* every chunk back; large objects are their owners' */
KMM_HIDDEN int kmm__meta_obj_check(struct kmm *mm);
/* Should this call at site fail? (KMM_FAULT_*) */
KMM_HIDDEN bool kmm__fault(struct kmm *mm, unsigned site);

/* ---- page/buddy.c, for the layers above ---------------------------------- */
/* The layer's name for messages ("the slab layer"). */
KMM_HIDDEN const char *kmm__owner_name(enum kmm_owner owner);
/* "kmm: fn: free of memory owned by <found>, not by the caller ...: addr",
 * then abort. */
KMM_HIDDEN KMM_NORETURN void kmm__owner_fatal(struct kmm *mm, const char *fn, const void *addr, enum kmm_owner found);
/* Makes the page allocation at addr, which the caller just got from
 * kmm_alloc_pages*, owner's: from now on only owner's frees take it. */
KMM_HIDDEN void kmm__pages_own(struct kmm *mm, void *addr, enum kmm_owner owner);
/* Hands owner from's page allocation at addr over to owner to. */
KMM_HIDDEN void kmm__pages_hand_over(struct kmm *mm, void *addr, enum kmm_owner from, enum kmm_owner to);
/* Frees the page allocation at addr, which owner must own (OWNER_PAGES: an
 * allocation no layer owns), reporting misuse as coming from fn; with cache
 * false the pages go straight to the buddy lists, never into a per-thread
 * cache (for frees made while a cache is being drained or retired). */
KMM_HIDDEN void kmm__free_pages_as(struct kmm *mm, enum kmm_owner owner, const char *fn, void *addr, bool cache);
/* kmm_alloc_pages_aligned, refusing as fn (kmm_malloc's large blocks). */
KMM_HIDDEN void *kmm__alloc_run(struct kmm *mm, const char *fn, uint64_t npages, size_t align, unsigned flags);
/* Keeps the first npages (>= 1, at most what it holds) of owner's page
 * allocation at addr and frees the rest. */
KMM_HIDDEN void kmm__pages_shrink(struct kmm *mm, enum kmm_owner owner, void *addr, size_t npages);
/* Pages of owner's live page allocation starting at addr (any owner's with
 * NR_OWNERS), 0 if addr is not one. */
KMM_HIDDEN size_t kmm__pages_size(struct kmm *mm, enum kmm_owner owner, const void *addr);
/* The owner of the allocation whose head is at pfn, or NR_OWNERS when pfn
 * is no allocation's head. */
static inline enum kmm_owner pages_owner(const struct kmm *mm, uint64_t pfn)
{
    kmm_meta_t m = load_relaxed(&mm->meta[pfn - mm->base_pfn]);
    if (meta_kind(m) == META_ALLOC)
        return OWNER_PAGES;
    if (meta_kind(m) == META_OWNED)
        return (enum kmm_owner)load_relaxed(&mm->owner[pfn - mm->base_pfn]);
    return NR_OWNERS;
}

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
KMM_HIDDEN void kmm__slab_drain(struct kmm *mm);   /* shrink every cache */
/* In the child of a fork: gives back the slabs and kmm_malloc blocks that
 * threads not in the child left half made or half freed. */
KMM_HIDDEN void kmm__slab_fork_child(struct kmm *mm);
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
/* In the child of a fork: empties every magazine of tc with
 * kmm__slot_fork_reclaim; gone (tc's thread does not exist in the child):
 * also the stale slots past each top, where a refill or a free cut short by
 * the fork left slots that are out of their slabs but in no magazine. */
KMM_HIDDEN void kmm__mag_fork_drain(struct kmm *mm, struct kmm_tcache *tc, bool gone);
/* Empties every magazine of tc into its cache (mm->tcache_lock held);
 * returns the objects. */
KMM_HIDDEN size_t kmm__mag_drain_all(struct kmm *mm, struct kmm_tcache *tc);
KMM_HIDDEN void kmm__mag_release_all(struct kmm *mm, struct kmm_tcache *tc);
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

/* ---- The vmalloc layer (vm/), for the layers beside it ---------------------- */
/* Is p inside mm's vmalloc space? O(1). */
KMM_HIDDEN bool kmm__vm_owns(struct kmm *mm, const void *p);
/* kmm_vfree, reporting misuse as coming from fn (kmm_free, kmm_kvfree). */
KMM_HIDDEN void kmm__vfree_as(struct kmm *mm, void *p, const char *fn);
/* Bytes usable at the live kmm_vmalloc area p (its pages); aborts (fn) otherwise. */
KMM_HIDDEN size_t kmm__vm_usable(struct kmm *mm, const void *p, const char *fn);
/* kmm_realloc of a kmm_vmalloc area: in place when the space allows. */
KMM_HIDDEN void *kmm__vrealloc(struct kmm *mm, void *p, size_t size, unsigned flags, const char *fn);
KMM_HIDDEN int kmm__vm_check(struct kmm *mm);
KMM_HIDDEN void kmm__vm_destroy(struct kmm *mm);
/* Takes or releases the vmalloc lock, for fork. */
KMM_HIDDEN void kmm__vm_fork_lock(struct kmm *mm, bool lock);
/* In the child of a fork (vm lock held or no other thread): areas other
 * threads were working on are kept for good (VM_ORPHAN); counters recounted. */
KMM_HIDDEN void kmm__vm_fork_child(struct kmm *mm);

#endif
