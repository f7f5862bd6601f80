/* kmalloc.c - kmm_malloc and friends: size classes over caches, whole pages above.
 *
 * Size classes: 16 to 1024 bytes in steps of 16 (KMALLOC_DIRECT: the class
 * of a size is (size - 1) / 16, no table), then sixteen per doubling (steps
 * of 6.25%), each stretched to the largest multiple of 16 that keeps the
 * same number of objects in its slab (Bonwick's trick: the bytes a slab
 * would waste at its end go to its objects instead), up to below the page
 * size. A slab is the smallest block of 1, 2, 4 or 8 pages holding 16
 * objects (fewer slabs, so fewer descriptors for a big heap's frees to miss
 * on: random lifetime 0.80 -> 0.86 of jemalloc's speed), larger while its
 * tail would waste more than 1/16 of it. Sizes above the largest class are
 * whole pages from kmm_alloc_pages_exact, so every kmm_malloc block is
 * physically contiguous.
 *
 * kmm_malloc's caches for "any area" are ids 0..nr_classes-1, so the fast
 * path finds a thread's magazine from the size with arithmetic (or one
 * table lookup above KMALLOC_DIRECT). Allocations with an area mask use
 * caches of their own per mask, made on first use.
 */
#include "slab_internal.h"

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* The classes for this page size; returns how many. */
static unsigned make_classes(size_t ps, size_t *size, unsigned *order)
{
    size_t limit = ps < KMALLOC_SMALL_LIMIT ? ps : KMALLOC_SMALL_LIMIT;
    unsigned n = 0;
    for (size_t g = 16; g < limit;) {
        unsigned o = 0;
        while (o < 3 && (ps << o) / g < 16)
            o++;
        /* a class of its own up to KMALLOC_DIRECT cannot be stretched to
         * fill its slab: a larger slab then keeps the tail below 1/16 of
         * it (SLUB's fraction; at most 5.4%, 912 bytes in 16 KiB) */
        while (g <= KMALLOC_DIRECT && o < 3 && ((ps << o) % g) * 16 > (ps << o))
            o++;
        size_t per_slab = (ps << o) / g;
        /* up to KMALLOC_DIRECT every multiple of 16 is a class of its own,
         * so that the fast path's class is (size - 1) / 16 */
        size_t stretched = g <= KMALLOC_DIRECT ? g : ((ps << o) / per_slab) & ~(size_t)15;
        if (stretched >= limit)
            break;
        if (n == 0 || stretched > size[n - 1]) {
            size[n] = stretched;
            order[n] = o;
            n++;
        }
        g += g < KMALLOC_DIRECT ? 16 : (size_t)1 << (floor_log2(g) - 4);
    }
    return n;
}


/* kmm_malloc's caches for one area mask (slab_lock held). */
static struct kmm_cache *make_kmalloc_caches(struct kmm *mm, struct kmm_slab_root *r, unsigned mask)
{
    struct kmm_cache *cs = kmm__meta_alloc(mm, r->nr_classes * sizeof(*cs));
    if (!cs)
        return NULL;
    for (unsigned i = 0; i < r->nr_classes; i++) {
        char name[32] = "kmalloc-", *q = name + 8;
        char digits[24];
        int nd = 0;
        for (size_t v = r->class_size[i]; v; v /= 10)
            digits[nd++] = (char)('0' + v % 10);
        while (nd)
            *q++ = digits[--nd];
        if (mask) {
            const char *suffix = "-areas-0x";
            while (*suffix)
                *q++ = *suffix++;
            *q++ = "0123456789abcdef"[(mask >> 4) & 15];
            *q++ = "0123456789abcdef"[mask & 15];
        }
        *q = 0;
        struct kmm_cache *c = &cs[i];
        kmm__cache_init(mm, c, name, r->class_size[i], 16, NULL, mask, r->class_order[i]);
        c->kmalloc = true;
        kmm__cache_register(r, c);
    }
    return cs;
}

struct kmm_slab_root *kmm__slab_root_slow(struct kmm *mm)
{
    size_t sizes[KMM_MAX_CLASSES];
    unsigned orders[KMM_MAX_CLASSES];
    unsigned n = make_classes(mm->page_size, sizes, orders);
    size_t table = sizes[n - 1] / 16 + 1;
    size_t map_len = kmm__slab_map_bytes(mm);

    kmm_lock(mm, &mm->slab_lock);
    struct kmm_slab_root *r = mm->slabs;
    if (r) {
        kmm_unlock(mm, &mm->slab_lock);
        return r;
    }
    struct slab_map_entry *map = mm->slab_map ? mm->slab_map : kmm__meta_alloc(mm, map_len);
    if (map) {
        __atomic_store_n(&mm->slab_map, map, __ATOMIC_RELEASE);
        if (!mm->slab_poison)   /* the free fast path writes no canary */
            __atomic_store_n(&mm->slab_span_bytes, mm->span_bytes, __ATOMIC_RELEASE);
    }
    r = map ? kmm__meta_alloc(mm, sizeof(*r)) : NULL;
    if (r) {
        r->nr_classes = n;
        r->max_small = sizes[n - 1];
        for (unsigned i = 0; i < n; i++) {
            r->class_size[i] = sizes[i];
            r->class_order[i] = orders[i];
        }
        for (size_t t = 0, cls = 0; t < table; t++) {
            while (sizes[cls] < t * 16)
                cls++;
            mm->kmalloc_class[t] = (uint8_t)cls;
        }
        /* one secret for every cache's canaries: the address of a static,
         * of the root and the memory system's id, mixed (ASLR's entropy) */
        static unsigned long counter;
        mm->slab_secret = (uintptr_t)mix64(mm->id ^ ((uint64_t)(uintptr_t)r << 16) ^ (uint64_t)(uintptr_t)&counter ^
                                           add_relaxed(&counter, 1) * 0x9e3779b97f4a7c15ULL);
        r->kmalloc[0] = make_kmalloc_caches(mm, r, 0);
        if (r->kmalloc[0]) {
            __atomic_store_n(&mm->slabs, r, __ATOMIC_RELEASE);
            if (!mm->slab_poison) {   /* the allocation fast path checks no canary */
                __atomic_store_n(&mm->kmalloc_max, r->max_small, __ATOMIC_RELEASE);
                __atomic_store_n(&mm->kmalloc_direct, KMALLOC_DIRECT, __ATOMIC_RELEASE);
            }
        } else {
            kmm__meta_free(mm, r, sizeof(*r));
            r = NULL;
        }
    }
    kmm_unlock(mm, &mm->slab_lock);
    return r;
}

/* The caches of kmm_malloc for the areas in flags; NULL if they cannot be made. */
static struct kmm_cache *kmalloc_caches(struct kmm *mm, struct kmm_slab_root *r, unsigned flags)
{
    /* areas the memory system lacks change nothing: one set of caches per
     * set of existing areas, "all of them" being the default set */
    unsigned all = (1u << mm->nr_areas) - 1, mask = flags & all;
    if (mask == 0 && (flags & KMM_AREA_MASK))
        return NULL;   /* names only areas that do not exist: nothing can serve it */
    if (mask == all)
        mask = 0;
    struct kmm_cache *cs = __atomic_load_n(&r->kmalloc[mask], __ATOMIC_ACQUIRE);
    if (KMM_LIKELY(cs != NULL))
        return cs;
    kmm_lock(mm, &mm->slab_lock);
    cs = r->kmalloc[mask];
    if (!cs) {
        cs = make_kmalloc_caches(mm, r, mask);
        if (cs)
            __atomic_store_n(&r->kmalloc[mask], cs, __ATOMIC_RELEASE);
    }
    kmm_unlock(mm, &mm->slab_lock);
    return cs;
}

size_t kmm_malloc_max_slab_size(struct kmm *mm)
{
    mm_live(mm, "kmm_malloc_max_slab_size");
    struct kmm_slab_root *r = slab_root(mm);
    return r ? r->max_small : 0;
}

/* All zero: recip 0, so the free fast path takes every address for its
 * slot 0, which is never held, and needs no test of its own (obj_free_fast). */
struct large_block_sentinel kmm__large_block;

static inline struct kmm_slab **map_entry(struct kmm *mm, const void *p)
{
    return &mm->slab_map[virt_to_index(mm, p)].slab;
}

/* Whole pages for sizes above the classes (or aligned beyond a page),
 * marked in the slab map as kmm_malloc's. */
static void *large_alloc(struct kmm *mm, size_t size, size_t align, unsigned flags, const char *fn)
{
    if (kmm__fault(mm, KMM_FAULT_PAGES)) {
        kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
        return NULL;
    }
    /* size <= SIZE_MAX - max(page size, align): the callers made sure */
    void *p = kmm__alloc_run(mm, fn, (size + mm->page_size - 1) >> mm->page_shift,
                             align <= mm->page_size ? 0 : align, flags);
    if (p) {
        kmm__pages_own(mm, p, OWNER_KMALLOC);
        store_relaxed(map_entry(mm, p), LARGE_BLOCK);
    }
    kmm__release_tick(mm);
    return p;
}

/* The slab map says LARGE_BLOCK at p; the page metadata must agree (the
 * owner check in kmm__free_pages_as) before the mark goes. */
static void large_free(struct kmm *mm, void *p, const char *fn)
{
    enum kmm_owner owner = pages_owner(mm, virt_to_pfn(mm, p));
    if (KMM_UNLIKELY(owner != OWNER_KMALLOC)) {
        if (owner != NR_OWNERS)
            kmm__owner_fatal(mm, fn, p, owner);
        kmm__fatal_page(mm, fn, "double free (or a stale kmm_malloc mark) of", p);
    }
    store_relaxed(map_entry(mm, p), NULL);
    kmm__free_pages_as(mm, OWNER_KMALLOC, fn, p, true);
    kmm__release_tick(mm);
}

/* kmm_free and its kin take only kmm_malloc's classes. */
static void check_kmalloc_slab(struct kmm_slab *s, const char *fn, const void *p)
{
    if (KMM_UNLIKELY(!s->cache->kmalloc))
        kmm__slot_fatal(s->cache, fn, "object of a kmm_cache_create cache, not from kmm_malloc (use kmm_cache_free):",
                        p);
}

static __attribute__((noinline)) void *malloc_slow(struct kmm *mm, size_t size, unsigned flags, const char *fn)
{
    mm_live(mm, fn);
    if (!flags_ok(mm, flags, 0, fn))
        return NULL;
    struct kmm_slab_root *r = slab_root(mm);
    if (!r) {
        kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
        return NULL;
    }
    if (size > r->max_small) {
        if (size > SIZE_MAX - mm->page_size) {   /* too large to serve: malloc's ENOMEM, silent */
            kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
            return NULL;
        }
        return large_alloc(mm, size, 0, flags, fn);
    }
    struct kmm_cache *cs = kmalloc_caches(mm, r, flags);
    if (!cs) {
        kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
        return NULL;
    }
    return kmm__obj_alloc(&cs[mm->kmalloc_class[(size + 15) >> 4]], flags, fn);
}

void *kmm_malloc(struct kmm *mm, size_t size, unsigned flags)
{
#if KMM_THREAD_CACHE
    /* the fast path: any area, no zeroing, a magazine of the size's class
     * with an object in it; the class by arithmetic up to KMALLOC_DIRECT,
     * by the table above (kmalloc_direct and kmalloc_max are 0 until the
     * slab layer is up, and with KMM_SLAB_POISON) */
    busy_fast_enter();
    if (KMM_LIKELY(flags == 0 && kmm__tls[0].key == load_relaxed(&mm->cache_key))) {
        size_t id;
        if (KMM_LIKELY(size - 1 < __atomic_load_n(&mm->kmalloc_direct, __ATOMIC_ACQUIRE)))
            id = (size - 1) >> 4;
        else if (size <= __atomic_load_n(&mm->kmalloc_max, __ATOMIC_ACQUIRE))
            id = mm->kmalloc_class[(size + 15) >> 4];
        else
            goto slow;
        struct kmm_magazine *m = tcache_mag(kmm__tls[0].tc, id);
        if (KMM_LIKELY(m->top != m->slot)) {
            void *p = mag_pop(m);
            busy_fast_exit();
            return p;
        }
    }
slow:
    busy_fast_exit();
#endif
    return malloc_slow(mm, size, flags, "kmm_malloc");
}

void *kmm_calloc(struct kmm *mm, size_t n, size_t size, unsigned flags)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes)) {   /* glibc's calloc: ENOMEM, silent */
        mm_live(mm, "kmm_calloc");
        kmm__refuse(mm, KMM_ENOMEM, "kmm_calloc", NULL);
        return NULL;
    }
    return malloc_slow(mm, bytes, flags | KMM_ZERO, "kmm_calloc");
}

/* The smallest class that holds size at a multiple of align (a power of
 * two; 0 for any): slabs start on a page, so every object of a class whose
 * size is a multiple of align is aligned, and powers of two are classes.
 * nr_classes when none does (whole pages serve). */
static unsigned aligned_class(struct kmm *mm, const struct kmm_slab_root *r, size_t size, size_t align)
{
    if (size > r->max_small || align >= mm->page_size)
        return r->nr_classes;
    unsigned cls = mm->kmalloc_class[(size + 15) >> 4];
    while (cls < r->nr_classes && align && r->class_size[cls] % align)
        cls++;
    return cls;
}

void *kmm_malloc_aligned(struct kmm *mm, size_t size, size_t align, unsigned flags)
{
    mm_live(mm, "kmm_malloc_aligned");
    if (align == 0 || (align & (align - 1))) {
        kmm__refuse(mm, KMM_EINVAL, "kmm_malloc_aligned", "alignment not a power of two");
        return NULL;
    }
    if (align <= KMM_MALLOC_ALIGN)
        return malloc_slow(mm, size, flags, "kmm_malloc_aligned");
    if (!flags_ok(mm, flags, 0, "kmm_malloc_aligned"))
        return NULL;
    struct kmm_slab_root *r = slab_root(mm);
    if (!r) {
        kmm__refuse(mm, KMM_ENOMEM, "kmm_malloc_aligned", NULL);
        return NULL;
    }
    if (size > SIZE_MAX - align || size > SIZE_MAX - mm->page_size) {   /* too large to serve: silent */
        kmm__refuse(mm, KMM_ENOMEM, "kmm_malloc_aligned", NULL);
        return NULL;
    }
    unsigned cls = aligned_class(mm, r, size, align);
    if (cls < r->nr_classes) {
        struct kmm_cache *cs = kmalloc_caches(mm, r, flags);
        if (!cs) {
            kmm__refuse(mm, KMM_ENOMEM, "kmm_malloc_aligned", NULL);
            return NULL;
        }
        return kmm__obj_alloc(&cs[cls], flags, "kmm_malloc_aligned");
    }
    return large_alloc(mm, size ? size : 1, align, flags, "kmm_malloc_aligned");
}

size_t kmm_malloc_good_size(struct kmm *mm, size_t size, size_t align)
{
    mm_live(mm, "kmm_malloc_good_size");
    struct kmm_slab_root *r = slab_root(mm);
    if (!r || (align & (align - 1)) || size > SIZE_MAX - mm->page_size - align)
        return 0;
    if (align <= KMM_MALLOC_ALIGN)
        align = 0;
    unsigned cls = aligned_class(mm, r, size, align);   /* what kmm_malloc / kmm_malloc_aligned take */
    if (cls < r->nr_classes)
        return r->class_size[cls];
    size_t pages = ((size ? size : 1) + mm->page_size - 1) >> mm->page_shift;
    return pages << mm->page_shift;
}

/* ---- free, size, realloc ---------------------------------------------------------- */

static KMM_NORETURN void not_from_kmm(struct kmm *mm, const char *fn, const void *p)
{
    kmm__fatal_page(mm, fn, "pointer not from kmm (not in this memory system):", p);
}

/* kmm_free of what the fast path did not look at: NULL, vmalloc memory,
 * any slab object with KMM_SLAB_POISON (or before the slab map exists), a
 * block of whole pages, or misuse. Out of line, so that the fast path calls
 * nothing and needs no stack frame. */
static __attribute__((noinline)) void free_not_slab(struct kmm *mm, void *p)
{
    mm_live(mm, "kmm_free");
    uint64_t off = (uint64_t)((uintptr_t)p - mm->span_start);
    if (off >= mm->span_bytes) {
        if (p && kmm__vm_owns(mm, p))
            kmm__vfree_as(mm, p, "kmm_free");
        else if (p)
            not_from_kmm(mm, "kmm_free", p);
        return;
    }
    struct kmm_slab *s = slab_of(mm, p);
    if (s == LARGE_BLOCK && !(off & (mm->page_size - 1))) {
        large_free(mm, p, "kmm_free");
        return;
    }
    if (s && s != LARGE_BLOCK) {   /* KMM_SLAB_POISON: every slab free comes here */
        check_kmalloc_slab(s, "kmm_free", p);
        kmm__obj_free(s->cache, s, (uintptr_t)p, "kmm_free");
        return;
    }
    if (off & (mm->page_size - 1))
        kmm__fatal_page(mm, "kmm_free", "pointer into the middle of an object, or not from kmm_malloc:", p);
    enum kmm_owner owner = pages_owner(mm, mm->base_pfn + (off >> mm->page_shift));
    if (owner != NR_OWNERS)   /* a live allocation the slab map does not call kmm_malloc's */
        kmm__owner_fatal(mm, "kmm_free", p, owner);
    kmm__fatal_page(mm, "kmm_free", "double free (or a pointer never from kmm_malloc) of", p);
}

/* kmm_free of what the fast path did not take: a slab object (magazine
 * full, no thread cache, or misuse) or a block of whole pages. */
static __attribute__((noinline)) void free_slow(struct kmm *mm, struct kmm_slab *s, void *p)
{
    if (s == LARGE_BLOCK) {
        free_not_slab(mm, p);
    } else {
        check_kmalloc_slab(s, "kmm_free", p);
        kmm__obj_free(s->cache, s, (uintptr_t)p, "kmm_free");
    }
}

void kmm_free(struct kmm *mm, void *p)
{
    uint64_t off = (uint64_t)((uintptr_t)p - mm->span_start);
    if (KMM_LIKELY(off < __atomic_load_n(&mm->slab_span_bytes, __ATOMIC_ACQUIRE))) {
        uint64_t page = off >> mm->page_shift;
        struct slab_map_entry *e = &mm->slab_map[page];
        struct kmm_slab *s = load_relaxed(&e->slab);
        if (KMM_LIKELY(s != NULL)) {
            if (!obj_free_fast(mm, s, load_relaxed(&e->base), load_relaxed(&e->recip), load_relaxed(&e->mag_offset),
                               (uintptr_t)p))
                free_slow(mm, s, p);
            return;
        }
    }
    free_not_slab(mm, p);
}

/* Bytes usable at live kmm_malloc memory p; aborts (fn) on anything else. */
static size_t usable(struct kmm *mm, const void *p, struct kmm_slab **slab, const char *fn)
{
    mm_live(mm, fn);
    uint64_t off = (uint64_t)((uintptr_t)p - mm->span_start);
    if (off >= mm->span_bytes) {
        *slab = NULL;
        if (kmm__vm_owns(mm, p))
            return kmm__vm_usable(mm, p, fn);
        not_from_kmm(mm, fn, p);
    }
    struct kmm_slab *s = slab_of(mm, p);
    *slab = s == LARGE_BLOCK ? NULL : s;
    if (s && s != LARGE_BLOCK) {
        struct kmm_cache *c = s->cache;
        check_kmalloc_slab(s, fn, p);
        uint64_t idx = slot_started_by(s, (uintptr_t)p);
        if (idx == UINT64_MAX)
            kmm__slot_fatal(c, fn, "pointer into the middle of an object:", p);
        if (load_relaxed(slab_held(s, idx)) != 1)
            kmm__slot_fatal(c, fn, "pointer to a free object (use after free, or double free) at", p);
        return c->slot_size;
    }
    size_t pages = s == LARGE_BLOCK && !(off & (mm->page_size - 1)) ? kmm__pages_size(mm, OWNER_KMALLOC, p) : 0;
    if (!pages) {
        enum kmm_owner owner = !(off & (mm->page_size - 1)) ? pages_owner(mm, virt_to_pfn(mm, p)) : NR_OWNERS;
        if (owner != NR_OWNERS)
            kmm__owner_fatal(mm, fn, p, owner);
        kmm__fatal_page(mm, fn, "not allocated (no live kmm_malloc memory here):", p);
    }
    return pages << mm->page_shift;
}

size_t kmm_usable_size(struct kmm *mm, const void *p)
{
    struct kmm_slab *s;
    return usable(mm, p, &s, "kmm_usable_size");
}

bool kmm__malloc_quarantine(struct kmm *mm, const void *p, bool enter)
{
    struct kmm_slab *s = slab_of(mm, p);
    if (!s || s == LARGE_BLOCK || !s->cache->kmalloc)
        return false;
    uint64_t idx = slot_started_by(s, (uintptr_t)p);
    if (idx == UINT64_MAX)
        return false;
    uint8_t expected = enter ? 1 : 2;
    return __atomic_compare_exchange_n(slab_held(s, idx), &expected, enter ? 2 : 1, false, __ATOMIC_RELAXED,
                                       __ATOMIC_RELAXED);
}

size_t kmm__usable_size_as(struct kmm *mm, const void *p, const char *fn)
{
    struct kmm_slab *s;
    return usable(mm, p, &s, fn);
}

void *kmm_realloc(struct kmm *mm, void *p, size_t size, unsigned flags)
{
    mm_live(mm, "kmm_realloc");
    if (!flags_ok(mm, flags, 0, "kmm_realloc"))
        return NULL;
    if (!p)
        return malloc_slow(mm, size, flags, "kmm_realloc");
    if (size == 0) {
        kmm_free(mm, p);
        return NULL;
    }
    if (kmm__vm_owns(mm, p))
        return kmm__vrealloc(mm, p, size, flags, "kmm_realloc");
    struct kmm_slab *s;
    size_t old = usable(mm, p, &s, "kmm_realloc");
    if (size <= old) {
        /* stays if the smaller size would not save at least half the class */
        if (s && size > old / 2)
            return p;
        if (!s) {
            struct kmm_slab_root *r = slab_root(mm);
            size_t keep = (size + mm->page_size - 1) >> mm->page_shift;
            if (!r || size > r->max_small) {
                if (keep < (old >> mm->page_shift))
                    kmm__pages_shrink(mm, OWNER_KMALLOC, p, keep);
                return p;
            }
        }
    }
    void *q = malloc_slow(mm, size, flags & ~KMM_ZERO, "kmm_realloc");
    if (!q)
        return NULL;
    __builtin_memcpy(q, p, size < old ? size : old);
    if ((flags & KMM_ZERO) && size > old)
        __builtin_memset((char *)q + old, 0, size - old);
    kmm_free(mm, p);
    return q;
}
