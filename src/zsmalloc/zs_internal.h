/* zs_internal.h - the zsmalloc layer's internals: pools, size classes,
 * zspages, the handle table and the map slots.
 *
 * Layout of a class's zspage (k pages, objects of `size` bytes):
 *
 *   page 0           page 1           page 2
 *   [obj0][obj1][ob|j2][obj3][obj4]|[obj5]...
 *
 * Object i lies at byte i * size of the zspage's concatenated pages: it may
 * begin at the end of one page and continue at the start of the next, which
 * is the point (a class wastes only (k * page_size) % size bytes per k
 * pages). The pages are order-0 allocations owned by the pool (OWNER_ZSMALLOC),
 * listed in the zspage's descriptor; nothing about the pool lives in them.
 *
 * A zspage gets its pages as it fills: objects are first handed out in
 * order (index `fresh` on), and a page is added when the next fresh object
 * reaches into a page it does not have yet. So a class's last, partly used
 * zspage holds at most one page more than its objects need, whatever the
 * zspage length: long zspages (little waste at page ends) cost no more
 * half-empty pages than short ones. Freed objects go on the zspage's free
 * list and are reused before fresh ones.
 *
 * Everything here is metadata memory (core/meta.c): the pool, the class
 * table, the zspage descriptors, the handle table and the zspage table.
 * One lock per pool (pool->lock) guards all of it. Nothing is allocated
 * under it (pages and metadata are allocated before it is taken); pages are
 * freed under it, straight to the buddy lists (area locks come after pool
 * locks), metadata after it is dropped. kmm__pages_own, which only writes
 * the page's metadata bytes, is called under it. mm->zs_lock guards the
 * list of pools and is taken before a pool lock, never under one.
 */
#ifndef KMM_ZS_INTERNAL_H
#define KMM_ZS_INTERNAL_H

#include "internal.h"
#include <kmm/unmapped.h>
#include <kmm/zsmalloc.h>

#define ZS_DEFAULT_STEP      16
#define ZS_DEFAULT_MAX_PAGES 16
#define ZS_MIN_STEP          8
#define ZS_MAX_STEP          256
#define ZS_MAX_PAGES         64
/* Objects of a zspage are numbered in 16 bits (the handle table stores the
 * index): classes whose zspage would hold more are given fewer pages. */
#define ZS_MAX_OBJS          65535u

/* Fullness bands of a class's zspages that have room: band b holds zspages
 * with inuse * ZS_BANDS / objs == b. Allocation takes from the highest
 * non-empty band (fills the fullest zspage), compaction moves objects from
 * the lowest into the highest. Full zspages are on no list. */
#define ZS_BANDS 8
/* Pages a pool takes from the page allocator at once (fewer while it is
 * small: pages_used / 16, at least 1). */
#define ZS_PAGE_BATCH 16
#define ZS_GENERAL_SLOTS (KMM_ZS_MAP_SLOTS - KMM_ZS_MAP_NEST)

/* ---- the id table (table.c): ids -> 64-bit entries ------------------------------
 * Two levels: a directory of chunk pointers, chunks of ZS_CHUNK_ENTRIES
 * entries, all metadata memory. Free ids form a FIFO list threaded through
 * their entries (a freed id is reused as late as possible: a stale handle
 * stays detectable for as long as possible). The owner decides the entry
 * encoding; the table only keeps the free list's link in the low 32 bits
 * of a free entry and tells free from used by ZS_ENTRY_USED (bit 63). */
#define ZS_CHUNK_ENTRIES 512u
#define ZS_ENTRY_USED    (1ull << 63)
#define ZS_NO_ID         UINT32_MAX

struct zs_table {
    uint64_t **dir;          /* dir[id / ZS_CHUNK_ENTRIES][id % ZS_CHUNK_ENTRIES] */
    uint32_t dir_cap;        /* pointers dir has room for */
    uint32_t nr_chunks;
    uint32_t free_head, free_tail;   /* ZS_NO_ID when empty */
    uint32_t used;           /* ids in use */
};

static inline uint64_t *table_entry(const struct zs_table *t, uint32_t id)
{
    return &t->dir[id / ZS_CHUNK_ENTRIES][id % ZS_CHUNK_ENTRIES];
}
static inline uint32_t table_capacity(const struct zs_table *t)
{
    return t->nr_chunks * ZS_CHUNK_ENTRIES;
}
/* A free id (its entry keeps its high bits, which the caller rewrites), or
 * ZS_NO_ID when the table is full. */
KMM_HIDDEN uint32_t kmm__table_get(struct zs_table *t);
/* id back to the free list; its entry's bits 32..62 are kept (the handle
 * table's generation). */
KMM_HIDDEN void kmm__table_put(struct zs_table *t, uint32_t id);
/* Room to grow: what kmm__table_grow needs, allocated without the lock. */
struct zs_table_growth {
    uint64_t *chunk;         /* a zeroed chunk */
    uint64_t **dir;          /* a bigger directory when the old one is full, else NULL */
    uint32_t dir_cap;
};
KMM_HIDDEN bool kmm__table_growth_alloc(struct kmm *mm, const struct zs_table *t, struct zs_table_growth *g);
/* Adds g's chunk (under the lock); what is left in g (an old directory, or
 * everything when another thread grew the table first) is freed by
 * kmm__table_growth_free after the lock is dropped. */
KMM_HIDDEN void kmm__table_grow(struct zs_table *t, struct zs_table_growth *g);
KMM_HIDDEN void kmm__table_growth_free(struct kmm *mm, struct zs_table_growth *g);
KMM_HIDDEN void kmm__table_destroy(struct kmm *mm, struct zs_table *t);
KMM_HIDDEN size_t kmm__table_bytes(const struct zs_table *t);
/* Free list well formed: length, no entry twice, every free entry not USED. */
KMM_HIDDEN int kmm__table_check(struct kmm *mm, const struct zs_table *t, const char *what);

/* ---- handles ------------------------------------------------------------------
 * A handle is (tag << 48) | (generation << 32) | (id + 1): id indexes the
 * handle table, generation is the entry's, tag the pool's. 0 is never one.
 * A used entry: USED | generation << 48 | obj << 32 | zspage id.
 * A free entry: generation << 48 | next free id (the table's link). */
#define ZS_GEN_BITS   15
#define ZS_GEN_MASK   ((1u << ZS_GEN_BITS) - 1)
static inline uint64_t handle_entry(uint32_t gen, uint32_t obj, uint32_t zspage_id)
{
    return ZS_ENTRY_USED | (uint64_t)gen << 48 | (uint64_t)obj << 32 | zspage_id;
}
static inline uint32_t entry_gen(uint64_t e) { return (uint32_t)(e >> 48) & ZS_GEN_MASK; }
static inline uint32_t entry_obj(uint64_t e) { return (uint32_t)(e >> 32) & 0xffffu; }
static inline uint32_t entry_zspage(uint64_t e) { return (uint32_t)e; }

/* ---- zspages ------------------------------------------------------------------ */
/* obj[i] of a zspage: the handle id of a used object, or ZS_OBJ_FREE | the
 * next free object (ZS_OBJ_END ends the list); objects from `fresh` on were
 * never used and are on no list (their obj[] is ZS_OBJ_FRESH). */
#define ZS_OBJ_FREE  0x80000000u
#define ZS_OBJ_END   0xffffu
#define ZS_OBJ_FRESH 0xffffffffu

struct zspage {
    struct zspage *prev, *next;   /* the class's band list, when not full */
    uint32_t id;                  /* in pool->zspages */
    uint32_t class_idx;           /* 32 bits: 1 MiB pages in 8-byte steps make 131072 classes */
    uint8_t band;                 /* ZS_BANDS when full */
    uint8_t nr_pages;             /* pages held (the first nr_pages of pages[]) */
    uint32_t inuse;               /* used objects */
    uint32_t fresh;               /* objects before this were handed out at least once */
    uint32_t free_head;           /* first freed object, ZS_OBJ_END if none */
    uint32_t mapped;              /* live mappings of its objects: compaction leaves it alone */
    uint32_t *pages;              /* [class pages]: frame - mm->base_pfn of each held page (in this descriptor) */
    uint32_t obj[];               /* [class objs] */
};

struct zs_class {
    uint32_t size;                /* object bytes: the largest request it takes */
    uint32_t pages;               /* pages of a full zspage */
    uint32_t merged_into;         /* the class serving this one's sizes (itself when it serves) */
    uint32_t objs;                /* objects per full zspage */
    uint32_t desc_size;           /* bytes of a zspage descriptor */
    struct zspage *band[ZS_BANDS];   /* lists of zspages with room, by fullness */
    struct zspage *spare;         /* a descriptor made while the lock was dropped */
    size_t objects, zspages, nr_pages;
    struct { size_t objects, pages, zspages, full, mapped; } check;   /* kmm_check's sums */
};

struct zs_map_slot {
    uintptr_t thread;             /* holder (zs_thread), 0 = free */
    uint64_t handle;
    struct zspage *zspage;
    uint32_t obj;
    int mode;
    uint64_t seq;                 /* when it was taken: unmap ends a thread's latest mapping of a handle */
    bool spans;                   /* the object spans two pages: it lives in buf while mapped */
    unsigned char *buf;           /* page_size bytes: one of the pool's map pages */
};

struct kmm_zspool {
    struct kmm *mm;
    struct kmm_zspool *next;      /* mm->zspools (mm->zs_lock) */
    char name[32];
    uint16_t tag;                 /* in every handle of the pool (never 0) */
    uint32_t step;                /* class_step */
    uint32_t max_pages;
    uint32_t nr_classes;          /* entries of classes[] (merged ones included) */
    uint32_t nr_serving;          /* classes that serve (not merged) */
    struct kmm_lock lock;
    struct zs_class *classes;     /* [nr_classes]; class i serves sizes ((i)*step, (i+1)*step] */
    struct zs_table handles;
    struct zs_table zspages;      /* zspage id -> descriptor address */
    /* Pages allocated (and populated: one platform call for a batch, where
     * each page's first touch would fault) while the lock was dropped,
     * owned by the pool, waiting for a zspage; nr_stash is read without the
     * lock (kmm__zs_mem_used). */
    uint64_t stash[ZS_PAGE_BATCH];
    unsigned nr_stash;
    void *map_pages;              /* KMM_ZS_MAP_SLOTS pages: the slots' buffers */
    /* Slots [0, ZS_GENERAL_SLOTS) serve a thread's first mapping; the
     * other KMM_ZS_MAP_NEST serve the nested mappings of one thread at a
     * time, the nest owner. A thread that waits for a slot therefore holds
     * none, or waits for the nest owner, which never waits: no deadlock. */
    struct zs_map_slot slots[KMM_ZS_MAP_SLOTS];
    unsigned slots_used;
    uintptr_t nest_owner;         /* thread holding the nested slots, 0 = none */
    uint64_t map_seq;
    size_t objects, obj_bytes, pages_used, pages_max, pages_compacted, zspages_held;
    size_t meta_bytes;            /* metadata memory the pool holds, as held (class rounding included) */
    /* registered from kmm_zs_create to kmm_zs_destroy (compact.c) */
    struct kmm_shrinker shrinker;
    char shrinker_name[sizeof("zsmalloc ") + 32];   /* "zsmalloc <name>" */
};

/* Pages that bytes of a zspage's objects reach: what a zspage holding its
 * first n objects has (n * class size bytes). */
static inline uint32_t zs_pages_for(const struct kmm *mm, size_t bytes)
{
    return (uint32_t)((bytes + mm->page_size - 1) >> mm->page_shift);
}

/* Ends a mapping (under the pool lock; the caller copied back what it must). */
static inline void zs_slot_release(struct kmm_zspool *pool, struct zs_map_slot *s)
{
    s->zspage->mapped--;
    s->thread = 0;
    s->handle = 0;
    s->zspage = NULL;
    store_relaxed(&pool->slots_used, pool->slots_used - 1);
}

/* ---- pool.c -------------------------------------------------------------------- */
/* pages_used and meta_bytes change under the lock and are read without it
 * (kmm__zs_mem_used): an atomic store of the new value. */
static inline void pool_count(size_t *field, ptrdiff_t delta)
{
    store_relaxed(field, *field + (size_t)delta);
}
/* Bytes the pool holds now (its pages and metadata), without the lock: for
 * a memory limit checked at every write (zstore). */
KMM_HIDDEN size_t kmm__zs_mem_used(struct kmm_zspool *pool);
static inline struct zspage *zspage_of(const struct kmm_zspool *pool, uint32_t id)
{
    return (struct zspage *)(uintptr_t)(*table_entry(&pool->zspages, id) & ~ZS_ENTRY_USED);
}
/* The handle's entry, validated; aborts as fn with the handle and the
 * reason otherwise. Under the pool lock. */
KMM_HIDDEN uint64_t *kmm__zs_entry(struct kmm_zspool *pool, uint64_t handle, const char *fn);
/* Does handle name a live object of pool? (no abort; takes the lock) */
KMM_HIDDEN bool kmm__zs_handle_ok(struct kmm_zspool *pool, uint64_t handle);
KMM_HIDDEN KMM_NORETURN void kmm__zs_fatal(struct kmm_zspool *pool, const char *fn, const char *why, uint64_t handle);
/* Puts z in the band list its inuse says (off every list when full). */
KMM_HIDDEN void kmm__zs_rebind(struct kmm_zspool *pool, struct zs_class *cls, struct zspage *z);
/* Takes a free object of z (which has room in the pages it holds) for
 * handle id hid; returns its index. */
KMM_HIDDEN uint32_t kmm__zs_obj_take(struct kmm_zspool *pool, struct zs_class *cls, struct zspage *z, uint32_t hid);
/* Does z have a free object within the pages it holds? */
KMM_HIDDEN bool kmm__zs_has_room(const struct zs_class *cls, const struct zspage *z, size_t page_size);
/* Frees object obj of z (under the lock); returns true when z emptied and
 * was taken off the pool: the caller frees it with kmm__zs_zspage_free
 * after dropping the lock. */
KMM_HIDDEN bool kmm__zs_obj_release(struct kmm_zspool *pool, struct zs_class *cls, struct zspage *z, uint32_t obj);
/* Page frees, under the pool lock (so that no fork sees a page owned by
 * zsmalloc that no pool holds): straight to the buddy lists, never through
 * a per-thread cache, whose slow path may take mm->tcache_lock, which comes
 * before the pool locks. */
KMM_HIDDEN void kmm__zs_page_free(struct kmm_zspool *pool, uint64_t pfn, const char *fn);
KMM_HIDDEN void kmm__zs_zspage_free_pages(struct kmm_zspool *pool, struct zspage *z, const char *fn);
KMM_HIDDEN void kmm__zs_stash_free(struct kmm_zspool *pool, const char *fn);
KMM_HIDDEN uintptr_t kmm__zs_thread(void);
/* Tells ASan/Valgrind that object obj of z is off limits (poison) or usable. */
KMM_HIDDEN void kmm__zs_poison_obj(struct kmm_zspool *pool, const struct zs_class *cls, const struct zspage *z,
                                   uint32_t obj, bool poison);

/* ---- map.c ---------------------------------------------------------------------- */
/* Copies len bytes between the object at (z, obj) of cls at offset off and
 * buf (to_obj: into the object), page piece by page piece. */
KMM_HIDDEN void kmm__zs_copy(struct kmm_zspool *pool, const struct zs_class *cls, const struct zspage *z,
                             uint32_t obj, size_t off, void *buf, size_t len, bool to_obj);

/* ---- compact.c ------------------------------------------------------------------- */
/* The pool's shrinker (arg: the pool), registered by kmm_zs_create:
 * pages a compaction could give back, and a compaction that stops once
 * nr_to_scan pages came back. A failing page allocation runs it with no
 * lock held; it takes the pool lock, one zspage at a time. */
KMM_HIDDEN size_t kmm__zs_shrink_count(void *arg);
KMM_HIDDEN size_t kmm__zs_shrink_scan(void *arg, size_t nr_to_scan);

/* ---- check.c ------------------------------------------------------------------ */
KMM_HIDDEN int kmm__zs_check(struct kmm *mm);
/* fork: every pool lock (mm->zs_lock first), and the child's repair: the
 * mappings of threads that are not in the child are dropped. */
KMM_HIDDEN void kmm__zs_fork_lock(struct kmm *mm, bool lock);
KMM_HIDDEN void kmm__zs_fork_child(struct kmm *mm);
KMM_HIDDEN void kmm__zs_destroy_all(struct kmm *mm);

#endif
