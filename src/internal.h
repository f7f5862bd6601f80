/* internal.h - what every layer of kmm shares and nobody else sees: struct
 * kmm, the per-thread cache that every layer's fast path uses, locks,
 * reporting, the metadata-memory interface, and each layer's interface for
 * the layers above or beside it (the page allocator's owned allocations,
 * vmalloc's frees through kmm_free).
 *
 * Each layer's own internals live in its folder, so that a reader of one
 * layer opens one folder: page/page_internal.h (the buddy allocator of an
 * area, the per-thread page caches' slow paths, reservations, the checker),
 * slab/slab_internal.h (slabs, descriptors, the slab map, caches, depots,
 * magazines, kmm_malloc's classes), vm/vm_internal.h (the area tree). The
 * types that struct kmm and struct kmm_tcache embed are in
 * page/page_types.h (the metadata byte, owners, areas, free lists,
 * per-thread page lists) and slab/slab_types.h (free slots, magazine
 * heads), included here. core/kmm.c, which creates, checks, drains, forks
 * and destroys a memory system, includes every layer's header.
 *
 * Grouped by the file that defines it. Everything here is freestanding: no
 * libc header beyond <stddef.h> <stdint.h> <stdbool.h> <limits.h>.
 *
 * Lock order (outermost first):
 *   registry_lock (core/kmm.c)  ->  mm->slab_lock  ->  mm->tcache_lock  ->
 *   a cache's lock (one at a time)  ->  mm->zs_lock  ->  a zsmalloc pool's
 *   lock  ->  area locks, lowest area first  ->  the vmalloc lock (vm->lock)
 * A zsmalloc pool frees pages under its lock (its compaction too, run by
 * its shrinker), straight to the buddy lists (area locks), never through a
 * per-thread cache (zs_internal.h).
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
 * The locks of the layers that take pages out of the direct map
 * (mm->unmapped_lock, mm->secret_lock, mm->execmem_lock) and the shrinker
 * registry's (mm->shrink_lock) are taken with no other kmm lock held, and
 * nothing is taken, allocated, freed or asked of the platform under them
 * (but metadata objects, whose class locks are leaves): those layers
 * allocate and call the platform outside their locks and install the
 * result under them, as zsmalloc's supplies do. Shrinker callbacks run
 * with no kmm lock held. Fork's prepare handler takes these four first.
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
 * reclaim allocates nothing, so it never re-enters itself. After it, a
 * failing allocation runs the shrinkers (kmm__shrink), whose callbacks may
 * allocate and take any lock: same rule, no kmm lock held by the caller
 * (KMM__NO_RECLAIM allocations never run them); an allocation failing in
 * a callback does not run them again.
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
#include "page/page_types.h"
#include "slab/slab_types.h"

/* ---- Per-thread caches (page/tcache.c, slab/magazine.c) ----------------- */

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
/* The head of magazine id in tc: one shift and one add (the table's offset
 * folds into the loads' displacements). */
#define tcache_mag(tc, id) \
    ((struct kmm_magazine *)(void *)((char *)(tc) + offsetof(struct kmm_tcache, mag) + (size_t)(id) * sizeof(struct kmm_magazine)))

#define TCACHE_SPARE 64
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
    size_t release_step;                  /* pages one step of a pass gives back at most (under the area lock) */
    bool release_due;                     /* an area's release pass waits for the decay (relaxed): kmm__release_tick */
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
    /* Caches of exited threads, empty, kept for the next new threads (a
     * cache and its magazines are a few mappings: making and unmapping
     * them per thread cost a TLB shootdown each); at most TCACHE_SPARE.
     * Protected by tcache_lock. */
    struct kmm_tcache *tcache_spare;
    unsigned tcache_spares;

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

    /* zsmalloc layer (zsmalloc/): the pools, newest first (zs_lock) */
    struct kmm_zspool *zspools;
    struct kmm_lock zs_lock;

    /* pages out of the direct map: each layer's state, made on first use
     * under its lock and published with release; the locks are leaves
     * (see the lock order above) */
    struct kmm_unmapped *unmapped;        /* unmapped/ */
    struct kmm_lock unmapped_lock;
    struct kmm_secret *secret;            /* secret/ */
    struct kmm_lock secret_lock;
    struct kmm_execmem *execmem;          /* execmem/ */
    struct kmm_lock execmem_lock;
    /* shrinkers (core/shrink.c): registered ones, in order (shrink_lock) */
    struct shrink_entry *shrinkers;
    struct kmm_lock shrink_lock;
    uint64_t shrink_seq;                  /* the last entry's registration number (shrink_lock) */
    /* KMM_THREAD_CACHE=0 (one CPU, or calls serialised by the caller): the
     * shrinker whose callback runs now, NULL outside one (a thread-local
     * when threaded) */
    const struct shrink_entry *shrink_running;

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
/* Writes "kmm: <fn>: <why> <addr>": how every misuse report begins. */
KMM_HIDDEN void kmm__msg_call(struct kmm_msg *m, const char *fn, const char *why, const void *addr);
/* "kmm: <fn>: <why> <addr> (phys <phys>)" then abort. */
KMM_HIDDEN KMM_NORETURN void kmm__fatal_page(struct kmm *mm, const char *fn, const char *why, const void *addr);
/* A refused call: tells the platform (errno) and, for bad arguments, reports why. */
KMM_HIDDEN void kmm__refuse(struct kmm *mm, int err, const char *fn, const char *why);
/* kmm_usable_size, reporting misuse as fn (the malloc shim's entries). */
/* Runs the release passes that waited for the decay interval, if it has
 * passed (page/buddy.c). Called, with no lock held, from the slow paths
 * that run however a program allocates (magazine refills and flushes, the
 * per-thread page caches'), so that memory is given back also by a program
 * whose allocations never reach the buddy lists. One relaxed load when
 * nothing waits. */
KMM_HIDDEN void kmm__release_tick(struct kmm *mm);
KMM_HIDDEN size_t kmm__usable_size_as(struct kmm *mm, const void *p, const char *fn);
/* The malloc shim's quarantine (hardened mode): marks live kmm_malloc slab
 * object p quarantined (its held byte 1 -> 2: every free, realloc and
 * usable-size call then reports it as freed, and kmm_check accepts it) or
 * back to held (2 -> 1), atomically. False if p was not in the state
 * expected (a second free racing the first) or is not a slab object. */
KMM_HIDDEN bool kmm__malloc_quarantine(struct kmm *mm, const void *p, bool enter);
/* kmm_check's verdict on one broken invariant: reports it, returns -1. */
KMM_HIDDEN int kmm__check_fail(struct kmm *mm, const char *what, uint64_t pfn);

/* ---- Small helpers -------------------------------------------------------- */

static inline void kmm_lock(struct kmm *mm, struct kmm_lock *l) { mm->pf->lock(l); }
static inline void kmm_unlock(struct kmm *mm, struct kmm_lock *l) { mm->pf->unlock(l); }

static inline kmm_meta_t meta_get(const struct kmm *mm, uint64_t pfn)
{
    return load_relaxed(&mm->meta[pfn - mm->base_pfn]);
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
/* In a spin-wait loop: tells the CPU (and a sibling hyperthread) so. */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
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

/* len bytes at p become inaccessible / accessible (undefined) to ASan and
 * Valgrind. */
static inline void mem_poison(void *p, size_t len)
{
    (void)p, (void)len;
#if KMM_ASAN
    __asan_poison_memory_region(p, len);
#endif
#if KMM_VALGRIND
    VALGRIND_MAKE_MEM_NOACCESS(p, len);
#endif
}
static inline void mem_unpoison(void *p, size_t len)
{
    (void)p, (void)len;
#if KMM_ASAN
    __asan_unpoison_memory_region(p, len);
#endif
#if KMM_VALGRIND
    VALGRIND_MAKE_MEM_UNDEFINED(p, len);
#endif
}
static inline void pages_unpoison(const struct kmm *mm, void *p, uint64_t npages)
{
    mem_unpoison(p, (size_t)(npages << mm->page_shift));
}
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

/* The flags an allocating call takes: an area mask and KMM_ZERO, plus
 * internal ones the caller names (KMM__NO_RECLAIM for the page calls).
 * Anything else is refused as fn with EINVAL (README "Errors"). */
static inline bool flags_ok(struct kmm *mm, unsigned flags, unsigned internal, const char *fn)
{
    if (KMM_LIKELY(!(flags & ~(KMM_AREA_MASK | KMM_ZERO | internal))))
        return true;
    kmm__refuse(mm, KMM_EINVAL, fn,
                internal & KMM_NOZERO ? "unknown flags (an area mask, KMM_ZERO, KMM_NOZERO and KMM_UNMAPPED_NOCACHE are allowed)"
                                      : "unknown flags (an area mask and KMM_ZERO are allowed)");
    return false;
}

/* Takes back the caches of the threads that are idle in kmm (all of them
 * when the platform has no barrier_all hook: the caller's only), after a
 * new key that makes every other thread drain its own at its next call;
 * returns the blocks and objects taken. No kmm lock may be held. */
KMM_HIDDEN size_t kmm__tcache_reclaim(struct kmm *mm);
/* What a failing allocation does first, before a retry (Linux drains every
 * CPU's lists): kmm_vmalloc_purge, kmm__tcache_reclaim, kmm__slab_drain;
 * and again after the shrinkers gave pages back (they may be in those
 * caches). With KMM__NO_RECLAIM in flags, only drains the caller's cache. */
KMM_HIDDEN void kmm__reclaim(struct kmm *mm, unsigned flags);
/* A fresh cache key (never 0, never reused: 64 bits do not wrap). */
KMM_HIDDEN uint64_t kmm__next_key(void);

/* The calling thread's cache for mm, made or synced (page/tcache.c). */
KMM_HIDDEN struct kmm_tcache *kmm__tcache_get_slow(struct kmm *mm);
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
/* The bytes an object of size bytes takes (its class, or whole chunks or
 * pages above META_OBJ_MAX): what a layer counts as its metadata. */
KMM_HIDDEN size_t kmm__meta_obj_held(const struct kmm *mm, size_t size);
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
/* Makes the buddy block of 2^order pages at addr one OWNED allocation of
 * owner's: the one-block OWNED allocation of owner's holding it is split
 * along the buddy path (each half an allocation of owner's), or, when the
 * block holds several such allocations, they are joined (the unmapped
 * cache gives back a free block of a chunk it keeps, or a whole chunk it
 * gave blocks of before). Aborts when addr is not in such allocations.
 * O(KMM_MAX_ORDER) under the area lock (joining: O(allocations joined)). */
KMM_HIDDEN void kmm__pages_carve(struct kmm *mm, enum kmm_owner owner, void *addr, unsigned order);
/* Frees the page allocation at addr, which owner must own (OWNER_PAGES: an
 * allocation no layer owns), reporting misuse as coming from fn; with cache
 * false the pages go straight to the buddy lists, never into a per-thread
 * cache (for frees made while a cache is being drained or retired). */
KMM_HIDDEN void kmm__free_pages_as(struct kmm *mm, enum kmm_owner owner, const char *fn, void *addr, bool cache);
/* The block [pfn, pfn + 2^order) (pfn a multiple of 2^order) as a page
 * allocation, if all of it is free in the buddy lists of one area that
 * flags' area mask accepts; NULL otherwise (pages cached by a thread count
 * as taken). For a layer that wants its next block beside its last (the
 * unmapped cache: adjacent chunks leave one hole in the direct map). One
 * area lock, O(KMM_MAX_ORDER). */
KMM_HIDDEN void *kmm__alloc_pages_at(struct kmm *mm, uint64_t pfn, unsigned order, unsigned flags);
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

/* ---- The slab layer (slab/magazine.c, slab/slab.c), for the per-thread
 * cache (page/tcache.c), which holds the magazines and drains them ----- */
/* In the child of a fork: empties every magazine of tc with
 * kmm__slot_fork_reclaim; gone (tc's thread does not exist in the child):
 * also the stale slots past each top, where a refill or a free cut short by
 * the fork left slots that are out of their slabs but in no magazine. */
KMM_HIDDEN void kmm__mag_fork_drain(struct kmm *mm, struct kmm_tcache *tc, bool gone);
/* Empties every magazine of tc into its cache (mm->tcache_lock held);
 * returns the objects. */
KMM_HIDDEN size_t kmm__mag_drain_all(struct kmm *mm, struct kmm_tcache *tc);
/* Frees tc's magazine memory (its thread is gone or retiring). */
KMM_HIDDEN void kmm__mag_release_all(struct kmm *mm, struct kmm_tcache *tc);
/* Puts the slot arrays of tc's (drained) magazines back on its free list and
 * detaches every magazine: tc is kept for another thread. */
KMM_HIDDEN void kmm__mag_reset_all(struct kmm *mm, struct kmm_tcache *tc);
KMM_HIDDEN void kmm__slab_drain(struct kmm *mm);   /* shrink every cache: depots and empty slabs back */

/* ---- Pages out of the direct map (unmapped/, secret/, execmem/) and the
 * shrinkers (core/shrink.c) ------------------------------------------------ */
struct kmm_unmapped;
struct kmm_secret;
struct kmm_execmem;
struct shrink_entry;

/* The platform calls of these layers, each a KMM_FAULT_DIRECT fault site
 * (vm_map calls are KMM_FAULT_MAP's). Callers check the hooks exist
 * (kmm__unmapped_supported). */
static inline int pf_direct_unmap(struct kmm *mm, kmm_phys_t addr, uint64_t len)
{
    return kmm__fault(mm, KMM_FAULT_DIRECT) ? -KMM_ENOMEM : mm->pf->direct_unmap(mm->ctx, addr, len);
}
static inline int pf_direct_restore(struct kmm *mm, kmm_phys_t addr, uint64_t len)
{
    return kmm__fault(mm, KMM_FAULT_DIRECT) ? -KMM_ENOMEM : mm->pf->direct_restore(mm->ctx, addr, len);
}
static inline int pf_frames_zero(struct kmm *mm, kmm_phys_t addr, uint64_t len)
{
    return kmm__fault(mm, KMM_FAULT_DIRECT) ? -KMM_ENOMEM : mm->pf->frames_zero(mm->ctx, addr, len);
}
static inline int pf_frames_write(struct kmm *mm, const struct kmm_frame_write *w, size_t n)
{
    return kmm__fault(mm, KMM_FAULT_DIRECT) ? -KMM_EIO : mm->pf->frames_write(mm->ctx, w, n);
}
static inline int pf_secret_map(struct kmm *mm, void *va, size_t len)
{
    return kmm__fault(mm, KMM_FAULT_DIRECT) ? -KMM_ENOMEM : mm->pf->secret_map(mm->ctx, va, len);
}
static inline int pf_vm_map(struct kmm *mm, void *va, kmm_phys_t phys, size_t len, unsigned prot)
{
    return kmm__fault(mm, KMM_FAULT_MAP) ? -KMM_ENOMEM : mm->pf->vm_map(mm->ctx, va, phys, len, prot);
}

/* Does the platform have what the unmapped cache needs (direct_unmap,
 * direct_restore, frames_zero, frames_write)? */
static inline bool kmm__unmapped_supported(const struct kmm *mm)
{
    const struct kmm_platform *pf = mm->pf;
    return pf->direct_unmap && pf->direct_restore && pf->frames_zero && pf->frames_write;
}

/* unmapped/: kmm_unmapped_alloc for a layer: the allocation is owner's
 * (OWNER_UNMAPPED for kmm_unmapped_alloc's callers, OWNER_SECRET,
 * OWNER_EXECMEM), and only kmm__unmapped_free_as with the same owner takes
 * it back; fn names the public call in messages. No kmm lock may be held
 * (it may allocate pages, and so reclaim). */
KMM_HIDDEN kmm_phys_t kmm__unmapped_alloc_as(struct kmm *mm, enum kmm_owner owner, unsigned order, unsigned flags,
                                             const char *fn);
/* Frees owner's allocation at addr (any other address, or another owner's,
 * aborts naming fn). zeroed: the caller left the frames zero (the cache
 * need not zero them before it hands them out again). */
KMM_HIDDEN void kmm__unmapped_free_as(struct kmm *mm, enum kmm_owner owner, kmm_phys_t addr, bool zeroed,
                                      const char *fn);
/* Pages of owner's live allocation at addr, 0 if it is not one. */
KMM_HIDDEN size_t kmm__unmapped_size(struct kmm *mm, enum kmm_owner owner, kmm_phys_t addr);
/* kinds[] (kmm_page_kinds) of the n pages from pfn, all inside one chunk
 * of the cache (an OWNED block of OWNER_UNMAPPED): free, or whose. */
KMM_HIDDEN void kmm__unmapped_page_kinds(struct kmm *mm, uint64_t pfn, size_t n, uint8_t *kinds);
KMM_HIDDEN int kmm__unmapped_check(struct kmm *mm);
KMM_HIDDEN void kmm__unmapped_destroy(struct kmm *mm);
/* fork: lock (prepare) / unlock (parent, child); in the child, before
 * anything else runs: what the child must redo (nothing is lost: the
 * cache's chunks stay unmapped in the child's copy). */
KMM_HIDDEN void kmm__unmapped_fork_lock(struct kmm *mm, bool lock);
KMM_HIDDEN void kmm__unmapped_fork_child(struct kmm *mm);

/* secret/ and execmem/: the same lifecycle. In the child of a fork, secret
 * memory drops every allocation (none is inherited: their mappings are not
 * in the child) and zeroes their frames in the child's copy. */
KMM_HIDDEN int kmm__secret_check(struct kmm *mm);
KMM_HIDDEN void kmm__secret_destroy(struct kmm *mm);
KMM_HIDDEN void kmm__secret_fork_lock(struct kmm *mm, bool lock);
KMM_HIDDEN void kmm__secret_fork_child(struct kmm *mm);
KMM_HIDDEN int kmm__execmem_check(struct kmm *mm);
KMM_HIDDEN void kmm__execmem_destroy(struct kmm *mm);
KMM_HIDDEN void kmm__execmem_fork_lock(struct kmm *mm, bool lock);
KMM_HIDDEN void kmm__execmem_fork_child(struct kmm *mm);

/* core/shrink.c: asks the registered shrinkers for nr_pages pages in all
 * (0: all they can give), as a failing allocation does after kmm__reclaim;
 * returns the pages they gave back. No kmm lock may be held. A call made
 * from inside a shrinker callback (the callback's own allocation failing)
 * returns 0 at once. */
KMM_HIDDEN size_t kmm__shrink(struct kmm *mm, size_t nr_pages);
KMM_HIDDEN int kmm__shrink_check(struct kmm *mm);
KMM_HIDDEN void kmm__shrink_fork_lock(struct kmm *mm, bool lock);
/* In the child: the pins of threads that are not there are dropped. */
KMM_HIDDEN void kmm__shrink_fork_child(struct kmm *mm);
/* Frees the registry, calling no callback (kmm_destroy, before the layers). */
KMM_HIDDEN void kmm__shrink_destroy(struct kmm *mm);

/* ---- The vmalloc layer (vm/), for the layers beside it ---------------------- */
/* Is p inside mm's vmalloc space? O(1). */
KMM_HIDDEN bool kmm__vm_owns(struct kmm *mm, const void *p);
/* kmm_vfree, reporting misuse as coming from fn (kmm_free, kmm_kvfree). */
KMM_HIDDEN void kmm__vfree_as(struct kmm *mm, void *p, const char *fn);
/* Bytes usable at the live kmm_vmalloc area p (its pages); aborts (fn) otherwise. */
KMM_HIDDEN size_t kmm__vm_usable(struct kmm *mm, const void *p, const char *fn);
/* kmm_realloc of a kmm_vmalloc area: in place when the space allows. */
KMM_HIDDEN void *kmm__vrealloc(struct kmm *mm, void *p, size_t size, unsigned flags, const char *fn);

#endif
