/* slab_model.c - kmm_malloc and object caches against a reference model.
 *
 * Long seeded sequences of random operations - kmm_malloc, kmm_calloc,
 * kmm_realloc, kmm_malloc_aligned, kmm_free, kmm_cache_create / alloc / free /
 * destroy (with and without constructors, alignments, area masks) and
 * kmm_drain - on a memory system of 4, 16, 64 KiB and 1 MiB pages, mirrored in a
 * model that records every live object: its address, the size asked, the
 * usable size, the alignment asked, and an id from which a fill pattern unique
 * to the object is derived. Every result is checked against the model:
 *
 *  - an object is aligned as promised (KMM_MALLOC_ALIGN, the alignment asked,
 *    a cache's alignment), its usable size is at least the size asked, it is
 *    physically contiguous in the direct map, and it overlaps no other live
 *    object (a sorted array of the live ranges is checked on every insertion);
 *    sizes above the largest size class take exactly the pages they need;
 *  - KMM_ZERO / kmm_calloc memory reads as zero; a realloc with KMM_ZERO
 *    zeroes what lies past the old usable size;
 *  - every object is filled with its pattern (wholly up to 4 KiB, sampled
 *    beyond) and verified before it is freed and across kmm_realloc (the
 *    first min(old, new) bytes), so overlap or corruption shows; an object
 *    of a cache with a constructor comes out in its constructed state and is
 *    given back in it;
 *  - kmm_realloc stays in place when the new size fits the object's size
 *    class and is more than half of it, or fits a block of pages and is
 *    above the largest class; a block of pages that shrinks in place keeps
 *    only the pages it needs; a failed kmm_realloc leaves the object intact;
 *  - a failed allocation has errno ENOMEM and is plausible: no accepted area
 *    has a free block of the order the request needs (memory fragments under
 *    random sizes and lifetimes; such failures are counted);
 *  - bad arguments give NULL with EINVAL (alignments, cache sizes, KMM_ZERO
 *    with a constructor), overflowing sizes NULL with ENOMEM or EINVAL;
 *  - kmm_cache_stats and kmm_slab_stats agree with the model: active_objects
 *    of each cache (summed over the kmalloc caches of one size class) is the
 *    model's live count, total >= active + cached, the derived figures
 *    (pages, total, waste) follow from the others, kmalloc classes waste at
 *    most 16 bytes per object (above 1 KiB; up to it, where every multiple
 *    of 16 is a class, 1/16 of a slab), ordering as documented, no cached objects
 *    right after kmm_drain, destroyed caches are gone;
 *  - kmm_check passes every ~1000 operations; at the end everything is freed,
 *    the caches destroyed, kmm_drain called, and the page allocator's
 *    allocated_pages is back at its initial value.
 *
 * KMM_SEED repeats a run; KMM_MODEL_OPS sets the total number of operations
 * (default 450000, spread over the configurations).
 */
#include "kmm_test.h"

#include <kmm.h>

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CACHES  8              /* user caches alive at once */
#define MAX_STATS   512            /* entries read from kmm_slab_stats */
#define MAX_LIVE    6000           /* objects alive at once at most */
#define FULL_LIMIT  4096           /* objects up to this size carry the pattern in every byte */
#define CHUNK       4096           /* beyond it: the first and last EDGE bytes of every CHUNK */
#define EDGE        64
#define STATS_EVERY 250
#define CHECK_EVERY 1000

enum okind { K_SLAB, K_PAGES, K_CACHE };
static const char *const kind_name[] = { "slab object", "block of pages", "cache object" };

struct obj {
    unsigned char *p;
    size_t size;                   /* asked */
    size_t usable;                 /* kmm_usable_size, or the cache's object size */
    size_t align;                  /* asked (0: none) */
    uint32_t id;                   /* the pattern's seed */
    uint8_t kind;                  /* enum okind */
    int8_t cache;                  /* K_CACHE: index in model.caches */
    unsigned flags;                /* area mask asked */
};

struct range {
    uintptr_t lo, hi;
    uint32_t id;
};

struct mcache {
    struct kmm_cache *c;           /* NULL: slot free */
    char name[96];                 /* as given (may be longer than the 31 kept) */
    size_t size, align;
    int ctor;                      /* index in ctors[], or -1 */
    unsigned mask;                 /* the area mask every allocation uses */
    size_t live;
    unsigned long serial;          /* creation order */
};

struct config {
    const char *name;
    size_t page_size;
    uint64_t mem_size;
    unsigned share;                /* of the total operations, in percent */
    unsigned slab_flags;           /* KMM_SLAB_POISON: canaries, slow paths only */
};

struct model {
    const struct config *cfg;
    struct kmm *mm;
    size_t ps, max_slab;
    uint64_t rng;
    unsigned long op;
    struct obj *live;
    size_t nlive;
    struct range *sorted;          /* the live objects' ranges, by address */
    size_t nsorted;
    struct mcache caches[MAX_CACHES];
    unsigned long cache_serial;
    uint32_t next_id;
    size_t live_bytes, target_bytes;
    size_t area0_bytes;            /* held by objects that accept area 0 only (16 MiB) */
    bool drained;                  /* nothing put into a magazine since the last kmm_drain */
    size_t init_allocated;
    /* what was exercised */
    unsigned long n_malloc, n_calloc, n_aligned, n_realloc, n_realloc_inplace, n_free, n_cache_alloc,
        n_cache_create, n_cache_destroy, n_drain, n_stats, n_large, n_zero_checks, n_fragmented;
    size_t max_live_bytes, max_nlive;
};

static uint64_t g_seed;
static struct model *g_model;     /* the model being run, for fail() */

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
    struct model *m = g_model;
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "slab_model FAILED [%s, seed %llu, op %lu]: ", m ? m->cfg->name : "-",
            (unsigned long long)g_seed, m ? m->op : 0ul);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static uint64_t rnd(struct model *m, uint64_t n)
{
    return n ? kmm_test_rand(&m->rng) % n : 0;
}

static size_t round_up(size_t v, size_t a)
{
    return (v + a - 1) / a * a;
}

/* ---- patterns ---------------------------------------------------------------
 * Byte off of object id is kmm_test_pat(id, off) (tests/support): a prefix
 * of an object carries the same bytes whatever its length. */

static uint64_t pat_word(uint32_t id, size_t wi) { return kmm_test_pat_word(id, wi); }


/* The pattern of an object whose pattern was written over its first `written`
 * bytes, restricted to its first `len` bytes (len <= written): every byte up
 * to FULL_LIMIT; beyond, the first and last EDGE bytes of every CHUNK and the
 * last EDGE bytes of the written length. */
static size_t pattern_io(unsigned char *p, uint32_t id, size_t written, size_t len, bool write)
{
    if (written <= FULL_LIMIT)
        return kmm_test_span_io(p, id, 0, len, write);
    size_t bad;
    for (size_t o = 0; o < len; o += CHUNK) {
        size_t e1 = o + EDGE < len ? o + EDGE : len;
        if ((bad = kmm_test_span_io(p, id, o, e1, write)) != SIZE_MAX)
            return bad;
        size_t ce = o + CHUNK < len ? o + CHUNK : len;
        size_t s2 = o + CHUNK - EDGE;
        if (s2 < ce && (bad = kmm_test_span_io(p, id, s2 > e1 ? s2 : e1, ce, write)) != SIZE_MAX)
            return bad;
    }
    size_t t = written - EDGE;
    if (t < len && (bad = kmm_test_span_io(p, id, t, len, write)) != SIZE_MAX)
        return bad;
    return SIZE_MAX;
}

/* Are bytes [from, to) zero? Every byte up to 64 KiB, sampled beyond. */
static size_t zero_check(const unsigned char *p, size_t from, size_t to)
{
    if (to - from <= 65536) {
        for (size_t i = from; i < to; i++)
            if (p[i])
                return i;
        return SIZE_MAX;
    }
    for (size_t o = from; o < to; o += CHUNK) {
        size_t e = o + CHUNK < to ? o + CHUNK : to;
        for (size_t i = o; i < e && i < o + EDGE; i++)
            if (p[i])
                return i;
        for (size_t i = e > o + EDGE ? e - EDGE : o; i < e; i++)
            if (p[i])
                return i;
    }
    return SIZE_MAX;
}

/* ---- constructors ---------------------------------------------------------- */

static const size_t ctor_size[] = { 8, 24, 200, 1000, 5000, 32760 };   /* 32760 + the canary: 8 pages of 4 KiB */
#define NR_CTORS (sizeof(ctor_size) / sizeof(ctor_size[0]))
static unsigned long ctor_calls[NR_CTORS];

static unsigned char ctor_byte(const void *p, size_t i)
{
    uintptr_t a = (uintptr_t)p;
    return (unsigned char)((a >> 3) * 0x9d + (a >> 11) + i * 13 + 0x5a);
}

static void ctor_fill(void *p, size_t n)
{
    unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        c[i] = ctor_byte(p, i);
}

static size_t ctor_verify(const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != ctor_byte(p, i))
            return i;
    return SIZE_MAX;
}

static void ctor0(void *p) { ctor_calls[0]++; ctor_fill(p, ctor_size[0]); }
static void ctor1(void *p) { ctor_calls[1]++; ctor_fill(p, ctor_size[1]); }
static void ctor2(void *p) { ctor_calls[2]++; ctor_fill(p, ctor_size[2]); }
static void ctor3(void *p) { ctor_calls[3]++; ctor_fill(p, ctor_size[3]); }
static void ctor4(void *p) { ctor_calls[4]++; ctor_fill(p, ctor_size[4]); }
static void ctor5(void *p) { ctor_calls[5]++; ctor_fill(p, ctor_size[5]); }
static void (*const ctors[NR_CTORS])(void *) = { ctor0, ctor1, ctor2, ctor3, ctor4, ctor5 };

/* ---- the sorted ranges --------------------------------------------------------- */

static size_t lower_bound(const struct model *m, uintptr_t lo)
{
    size_t a = 0, b = m->nsorted;
    while (a < b) {
        size_t mid = a + (b - a) / 2;
        if (m->sorted[mid].lo < lo)
            a = mid + 1;
        else
            b = mid;
    }
    return a;
}

static void sorted_insert(struct model *m, const struct obj *o, const char *what)
{
    uintptr_t lo = (uintptr_t)o->p, hi = lo + o->usable;
    size_t i = lower_bound(m, lo);
    if (i < m->nsorted && m->sorted[i].lo < hi)
        fail("%s returned %p (+%zu usable) overlapping live object %u at %p (+%zu)", what, (void *)o->p, o->usable,
             m->sorted[i].id, (void *)m->sorted[i].lo, (size_t)(m->sorted[i].hi - m->sorted[i].lo));
    if (i > 0 && m->sorted[i - 1].hi > lo)
        fail("%s returned %p (+%zu usable) overlapping live object %u at %p (+%zu)", what, (void *)o->p, o->usable,
             m->sorted[i - 1].id, (void *)m->sorted[i - 1].lo, (size_t)(m->sorted[i - 1].hi - m->sorted[i - 1].lo));
    memmove(&m->sorted[i + 1], &m->sorted[i], (m->nsorted - i) * sizeof(m->sorted[0]));
    m->sorted[i].lo = lo;
    m->sorted[i].hi = hi;
    m->sorted[i].id = o->id;
    m->nsorted++;
}

static void sorted_remove(struct model *m, const struct obj *o)
{
    size_t i = lower_bound(m, (uintptr_t)o->p);
    if (i >= m->nsorted || m->sorted[i].lo != (uintptr_t)o->p || m->sorted[i].id != o->id)
        fail("model: object %u at %p is not in the sorted ranges", o->id, (void *)o->p);
    memmove(&m->sorted[i], &m->sorted[i + 1], (m->nsorted - i - 1) * sizeof(m->sorted[0]));
    m->nsorted--;
}

/* ---- checks of one object ---------------------------------------------------- */

static unsigned area_of_phys(kmm_phys_t phys)
{
    static const uint64_t limits[] = KMM_DEFAULT_AREA_LIMITS;
    for (unsigned a = 0; a < KMM_DEFAULT_NR_AREAS; a++)
        if (phys < limits[a])
            return a;
    return KMM_DEFAULT_NR_AREAS;
}

static void verify_obj(struct model *m, const struct obj *o, size_t len, const char *when)
{
    (void)m;
    size_t bad = pattern_io(o->p, o->id, o->usable, len, false);
    if (bad != SIZE_MAX)
        fail("%s: %s %u at %p (size %zu, usable %zu): byte %zu is 0x%02x, expected 0x%02x (overlap or corruption)",
             when, kind_name[o->kind], o->id, (void *)o->p, o->size, o->usable, bad, o->p[bad],
             (unsigned)(unsigned char)(pat_word(o->id, bad >> 3) >> 8 * (bad & 7)));
}

/* Checks a new object (o->p, size, align, kind, flags filled in), records it
 * and writes its pattern; zero_from: bytes from there up to size must be 0. */
static void adopt(struct model *m, struct obj *o, size_t zero_from, const char *what)
{
    uintptr_t a = (uintptr_t)o->p;
    size_t min_align = o->kind == K_CACHE ? 8 : KMM_MALLOC_ALIGN;
    if (o->align > min_align)
        min_align = o->align;
    if (a & (min_align - 1))
        fail("%s returned %p, not aligned to %zu", what, (void *)o->p, min_align);
    if (o->kind != K_CACHE) {
        o->usable = kmm_usable_size(m->mm, o->p);
        if (o->usable < o->size || o->usable == 0)
            fail("%s returned %p with usable size %zu, less than %zu", what, (void *)o->p, o->usable, o->size);
    }
    kmm_phys_t ph = kmm_virt_to_phys(m->mm, o->p);
    kmm_phys_t ph_end = kmm_virt_to_phys(m->mm, o->p + o->usable - 1);
    if (ph == KMM_PHYS_NONE || ph_end != ph + o->usable - 1)
        fail("%s returned %p (+%zu): not physically contiguous in the direct map (phys 0x%llx .. 0x%llx)", what,
             (void *)o->p, o->usable, (unsigned long long)ph, (unsigned long long)ph_end);
    if (o->kind == K_PAGES) {
        m->n_large++;
        if (a & (m->ps - 1))
            fail("%s returned %p for a block of pages, not page aligned", what, (void *)o->p);
        size_t pages = kmm_page_alloc_size(m->mm, o->p);
        if (pages * m->ps != o->usable)
            fail("%s returned %p: usable size %zu, but it starts a page allocation of %zu pages", what, (void *)o->p,
                 o->usable, pages);
        if (o->usable != round_up(o->size ? o->size : 1, m->ps))
            fail("%s of %zu bytes took %zu bytes of pages, not just the pages it needs", what, o->size, o->usable);
    } else if (o->kind == K_SLAB) {
        if (o->usable > m->max_slab)
            fail("%s returned %p with usable size %zu, above the largest size class %zu", what, (void *)o->p,
                 o->usable, m->max_slab);
    }
    if (o->flags & KMM_AREA_MASK && o->kind != K_SLAB) {
        unsigned ar = area_of_phys(ph);
        if (!(o->flags & KMM_AREA(ar)) || area_of_phys(ph_end) != ar)
            fail("%s (area mask 0x%x) returned phys 0x%llx .. 0x%llx, outside the areas asked", what,
                 o->flags & KMM_AREA_MASK, (unsigned long long)ph, (unsigned long long)ph_end);
    }
    if (zero_from < o->size) {
        m->n_zero_checks++;
        size_t bad = zero_check(o->p, zero_from, o->size);
        if (bad != SIZE_MAX)
            fail("%s returned %p (size %zu): byte %zu is 0x%02x, not zeroed", what, (void *)o->p, o->size, bad,
                 o->p[bad]);
    }
    sorted_insert(m, o, what);
    pattern_io(o->p, o->id, o->usable, o->usable, true);
    m->live_bytes += o->usable;
    if (o->flags == KMM_AREA(0))
        m->area0_bytes += o->usable;
    if (m->live_bytes > m->max_live_bytes)
        m->max_live_bytes = m->live_bytes;
}

static void push_live(struct model *m, const struct obj *o)
{
    m->live[m->nlive++] = *o;
    if (m->nlive > m->max_nlive)
        m->max_nlive = m->nlive;
    if (o->kind == K_CACHE)
        m->caches[o->cache].live++;
}

/* ---- stats --------------------------------------------------------------------- */

static bool is_kmalloc(const struct kmm_cache_stats *s)
{
    return strncmp(s->name, "kmalloc", 7) == 0;
}

static bool is_pow2(size_t v)
{
    return v && !(v & (v - 1));
}

static void check_entry(struct model *m, const struct kmm_cache_stats *s, const char *where)
{
    if (s->active_objects + s->cached_objects > s->total_objects)
        fail("%s: cache \"%s\": active %zu + cached %zu > total %zu", where, s->name, s->active_objects,
             s->cached_objects, s->total_objects);
    if (s->pages_per_slab != 1 && s->pages_per_slab != 2 && s->pages_per_slab != 4 && s->pages_per_slab != 8)
        fail("%s: cache \"%s\": %zu pages per slab", where, s->name, s->pages_per_slab);
    if (s->objects_per_slab == 0 || s->slot_size < s->object_size ||
        s->objects_per_slab * s->slot_size > s->pages_per_slab * m->ps)
        fail("%s: cache \"%s\": %zu objects of %zu bytes (slot %zu) per slab of %zu pages", where, s->name,
             s->objects_per_slab, s->object_size, s->slot_size, s->pages_per_slab);
    /* a slab made when its preferred order was not free has fewer pages
     * (at least one) and fewer objects (at least one); with no such slab the
     * totals are exact */
    bool all_preferred = s->pages == s->slabs * s->pages_per_slab;
    if (s->pages < s->slabs || s->pages > s->slabs * s->pages_per_slab || s->total_objects < s->slabs ||
        s->total_objects > s->slabs * s->objects_per_slab ||
        (all_preferred && s->total_objects != s->slabs * s->objects_per_slab) || s->empty_slabs > s->slabs)
        fail("%s: cache \"%s\": %zu slabs (%zu empty), %zu pages, %zu objects in all: inconsistent", where, s->name,
             s->slabs, s->empty_slabs, s->pages, s->total_objects);
    if (s->waste_bytes != s->pages * m->ps - s->active_objects * s->object_size)
        fail("%s: cache \"%s\": waste_bytes %zu, expected %zu * %zu - %zu * %zu", where, s->name, s->waste_bytes,
             s->pages, m->ps, s->active_objects, s->object_size);
    if (!is_pow2(s->align) || s->align < 8 || (s->slot_size % s->align) != 0)
        fail("%s: cache \"%s\": align %zu, slot size %zu", where, s->name, s->align, s->slot_size);
    if (s->empty_slabs * s->objects_per_slab + s->active_objects + s->cached_objects > s->total_objects)
        fail("%s: cache \"%s\": %zu empty slabs of %zu objects, %zu active, %zu cached, %zu in all", where, s->name,
             s->empty_slabs, s->objects_per_slab, s->active_objects, s->cached_objects, s->total_objects);
    if (m->drained && s->cached_objects != 0)
        fail("%s: cache \"%s\": %zu cached objects right after kmm_drain", where, s->name, s->cached_objects);
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

static void check_stats(struct model *m)
{
    static struct kmm_cache_stats st[MAX_STATS];
    static size_t class_of_live[MAX_LIVE];
    m->n_stats++;
    size_t n = kmm_slab_stats(m->mm, st, MAX_STATS);
    if (n > MAX_STATS)
        fail("kmm_slab_stats: %zu caches (test reads %d)", n, MAX_STATS);
    if (kmm_slab_stats(m->mm, NULL, 0) != n)
        fail("kmm_slab_stats(NULL, 0) does not count the same caches");
    static struct kmm_cache_stats part[MAX_STATS];
    memset(part, 0, (n / 2 + 1) * sizeof(part[0]));
    if (kmm_slab_stats(m->mm, part, n / 2) != n)
        fail("kmm_slab_stats with room for %zu of %zu caches does not count them all", n / 2, n);
    for (size_t j = 0; j < n / 2; j++)
        if (strcmp(part[j].name, st[j].name) != 0 || part[j].active_objects != st[j].active_objects)
            fail("kmm_slab_stats with room for %zu: entry %zu is \"%s\", in full \"%s\"", n / 2, j, part[j].name,
                 st[j].name);
    if (n / 2 < MAX_STATS && part[n / 2].name[0] != 0)
        fail("kmm_slab_stats with room for %zu entries wrote beyond them", n / 2);

    /* the model's slab objects by size class, sorted */
    size_t nk = 0, user_live = 0;
    for (size_t i = 0; i < m->nlive; i++) {
        if (m->live[i].kind == K_SLAB)
            class_of_live[nk++] = m->live[i].usable;
        else if (m->live[i].kind == K_CACHE)
            user_live++;
    }
    qsort(class_of_live, nk, sizeof(class_of_live[0]), cmp_size);

    /* the kmalloc caches first, by size (a class may have one cache per area mask: summed) */
    size_t i = 0, prev_size = 0, nclasses = 0;
    static size_t cls_size[MAX_STATS], cls_active[MAX_STATS];
    for (; i < n && is_kmalloc(&st[i]); i++) {
        size_t sz = st[i].object_size;
        if (sz < prev_size)
            fail("kmm_slab_stats: kmalloc caches not by size (\"%s\" of %zu bytes after %zu)", st[i].name, sz,
                 prev_size);
        prev_size = sz;
        check_entry(m, &st[i], "kmm_slab_stats");
        if (st[i].slabs == 0 && st[i].active_objects == 0 && st[i].cached_objects == 0)
            fail("kmm_slab_stats lists \"%s\", which has no slab and no object", st[i].name);
        size_t slab_bytes = st[i].pages_per_slab * m->ps;
        size_t waste = slab_bytes - st[i].objects_per_slab * st[i].slot_size;
        if (sz <= 1024 ? waste * 16 > slab_bytes : waste > 16 * st[i].objects_per_slab)
            fail("kmalloc class \"%s\" (%zu bytes, slot %zu) wastes %zu bytes of its %zu-page slab of %zu objects",
                 st[i].name, sz, st[i].slot_size, waste, st[i].pages_per_slab, st[i].objects_per_slab);
        if (sz > m->max_slab)
            fail("kmalloc class \"%s\" of %zu bytes is above kmm_malloc_max_slab_size %zu", st[i].name, sz,
                 m->max_slab);
        if (nclasses && cls_size[nclasses - 1] == sz) {
            cls_active[nclasses - 1] += st[i].active_objects;
        } else {
            cls_size[nclasses] = sz;
            cls_active[nclasses++] = st[i].active_objects;
        }
    }
    for (size_t c = 0, k = 0; c < nclasses || k < nk;) {
        size_t sz = c < nclasses ? cls_size[c] : SIZE_MAX;
        size_t model = 0;
        if (k < nk && class_of_live[k] < sz)
            fail("the model holds a slab object of usable size %zu; kmm_slab_stats lists no kmalloc cache of that "
                 "size", class_of_live[k]);
        while (k < nk && class_of_live[k] == sz)
            k++, model++;
        if (cls_active[c] != model)
            fail("kmm_slab_stats: kmalloc caches of %zu bytes have %zu active objects; the model holds %zu", sz,
                 cls_active[c], model);
        c++;
    }

    /* then the caches made by kmm_cache_create, in creation order */
    unsigned long last_serial = 0;
    size_t listed_live = 0;
    bool listed[MAX_CACHES] = { false };
    for (; i < n; i++) {
        if (is_kmalloc(&st[i]))
            fail("kmm_slab_stats: kmalloc cache \"%s\" after the other caches", st[i].name);
        check_entry(m, &st[i], "kmm_slab_stats");
        if (st[i].slabs == 0 && st[i].active_objects == 0 && st[i].cached_objects == 0)
            fail("kmm_slab_stats lists \"%s\", which has no slab and no object", st[i].name);
        int c = -1;
        for (int j = 0; j < MAX_CACHES; j++)
            if (m->caches[j].c && strncmp(m->caches[j].name, st[i].name, 31) == 0 && strlen(st[i].name) <= 31)
                c = j;
        if (c < 0)
            fail("kmm_slab_stats lists \"%s\", which the model does not know (destroyed?)", st[i].name);
        if (listed[c])
            fail("kmm_slab_stats lists \"%s\" twice", st[i].name);
        listed[c] = true;
        struct mcache *mc = &m->caches[c];
        if (mc->serial < last_serial)
            fail("kmm_slab_stats: caches not in creation order (\"%s\")", st[i].name);
        last_serial = mc->serial;
        if (st[i].active_objects != mc->live)
            fail("kmm_slab_stats: cache \"%s\" has %zu active objects; the model holds %zu", st[i].name,
                 st[i].active_objects, mc->live);
        listed_live += mc->live;
    }
    if (listed_live != user_live)
        fail("kmm_slab_stats: a cache with %zu live objects is not listed", user_live - listed_live);

    /* each cache by itself */
    for (int j = 0; j < MAX_CACHES; j++) {
        struct mcache *mc = &m->caches[j];
        if (!mc->c)
            continue;
        struct kmm_cache_stats cs;
        memset(&cs, 0xa5, sizeof(cs));
        kmm_cache_stats(mc->c, &cs);
        check_entry(m, &cs, "kmm_cache_stats");
        if (strnlen(cs.name, sizeof(cs.name)) >= sizeof(cs.name) || strncmp(cs.name, mc->name, 31) != 0 ||
            (strlen(mc->name) <= 31 && strcmp(cs.name, mc->name) != 0))
            fail("kmm_cache_stats: name \"%.32s\", created as \"%s\"", cs.name, mc->name);
        size_t want_align = mc->align > 8 ? mc->align : 8;
        if (cs.object_size != mc->size || cs.align < want_align)
            fail("kmm_cache_stats \"%s\": object_size %zu align %zu, created with %zu, %zu", cs.name, cs.object_size,
                 cs.align, mc->size, mc->align);
        if (cs.active_objects != mc->live)
            fail("kmm_cache_stats \"%s\": %zu active objects, the model holds %zu", cs.name, cs.active_objects,
                 mc->live);
        if (!listed[j] && (cs.slabs || cs.active_objects))
            fail("cache \"%s\" has %zu slabs, %zu active objects but kmm_slab_stats does not list it", cs.name,
                 cs.slabs, cs.active_objects);
    }
}

static void run_check(struct model *m)
{
    if (kmm_check(m->mm) != 0)
        fail("kmm_check failed");
}

/* ---- operations ------------------------------------------------------------ */

/* An allocation failed (errno still its). Random sizes and lifetimes
 * fragment memory: a failure is fine (and counted) with errno ENOMEM when no
 * accepted area has a free block of the order the request needs - for pages
 * of size bytes aligned to align, that of the block they are cut from; for a
 * slab object, that of the largest slab (8 pages). The page allocator drains
 * the calling thread's cache before it fails, so its free lists tell. */
static void alloc_failed(struct model *m, const char *what, size_t size, size_t align, unsigned flags)
{
    int err = errno;
    struct kmm_page_stats st;
    kmm_page_stats(m->mm, &st);
    unsigned acc = flags & KMM_AREA_MASK ? flags & KMM_AREA_MASK : KMM_AREA_MASK;
    size_t pages = size > m->max_slab || align >= m->ps ? round_up(size ? size : 1, m->ps) / m->ps : 8;
    if (align > m->ps && pages < align / m->ps)
        pages = align / m->ps;
    unsigned need = 0;
    while (((size_t)1 << need) < pages)
        need++;
    bool fits = false;
    for (unsigned a = 0; a < st.nr_areas; a++)
        for (unsigned o = need; o <= KMM_MAX_ORDER && (acc & KMM_AREA(a)); o++)
            fits |= st.nr_free[a][o] != 0;
    if (!fits && err == ENOMEM) {
        m->n_fragmented++;
        return;
    }
    char areas[256];
    size_t len = 0;
    for (unsigned a = 0; a < st.nr_areas && len < sizeof(areas) - 64; a++) {
        int top = -1;
        for (int o = 0; o <= KMM_MAX_ORDER; o++)
            if (st.nr_free[a][o])
                top = o;
        len += (size_t)snprintf(areas + len, sizeof(areas) - len, " area %u: %zu of %zu pages free, largest order %d;",
                                a, st.area[a].free_pages, st.area[a].total_pages, top);
    }
    fail("%s failed (errno %d) though memory is left: the model holds %zu objects, %zu KiB (%zu KiB in area 0 only);%s",
         what, err, m->nlive, m->live_bytes >> 10, m->area0_bytes >> 10, areas);
}

static unsigned random_mask(struct model *m)
{
    static const unsigned masks[] = { 0, 0, 0, 0, 0, 0, KMM_AREA(1), KMM_AREAS_BELOW(1), KMM_AREA_ANY, KMM_AREA(0) };
    unsigned mask = masks[rnd(m, sizeof(masks) / sizeof(masks[0]))];
    return mask == KMM_AREA(0) && m->area0_bytes > (4u << 20) ? 0 : mask;   /* area 0 has 16 MiB */
}

static size_t random_size(struct model *m)
{
    uint64_t r = rnd(m, 1000);
    if (r < 15)
        return 0;
    if (r < 400)
        return 1 + (size_t)rnd(m, 256);
    if (r < 600)
        return 257 + (size_t)rnd(m, 1792);
    if (r < 750)
        return 1 + (size_t)rnd(m, m->max_slab);
    if (r < 880) {                                         /* near a power of two, or the largest class */
        size_t b = r < 860 ? (size_t)1 << rnd(m, 20) : m->max_slab;
        return b + (size_t)rnd(m, 3) - 1;
    }
    if (r < 985)
        return m->max_slab + 1 + (size_t)rnd(m, 4 * m->ps);
    return m->max_slab + 1 + (size_t)rnd(m, 24 * m->ps);
}

/* What kind of kmm_malloc memory p is. A block of pages has at least a page
 * usable and a size class at most kmm_malloc_max_slab_size: when that is below
 * the page size (checked at the start) the usable size tells them apart. */
static enum okind kind_of(struct model *m, const void *p)
{
    return kmm_usable_size(m->mm, p) > m->max_slab ? K_PAGES : K_SLAB;
}

static void new_obj(struct model *m, struct obj *o, void *p, size_t size, size_t align, unsigned flags)
{
    memset(o, 0, sizeof(*o));
    o->p = p;
    o->size = size;
    o->align = align;
    o->flags = flags & KMM_AREA_MASK;
    o->id = ++m->next_id;
    o->cache = -1;
    o->kind = (uint8_t)kind_of(m, p);
    m->drained = false;
}

static void op_malloc(struct model *m)
{
    size_t size = random_size(m);
    unsigned flags = random_mask(m) | (rnd(m, 5) == 0 ? KMM_ZERO : 0);
    errno = 0;
    void *p = kmm_malloc(m->mm, size, flags);
    char what[80];
    snprintf(what, sizeof(what), "kmm_malloc(%zu, 0x%x)", size, flags);
    if (!p) {
        alloc_failed(m, what, size, 0, flags);
        return;
    }
    struct obj o;
    new_obj(m, &o, p, size, 0, flags);
    adopt(m, &o, flags & KMM_ZERO ? 0 : SIZE_MAX, what);
    push_live(m, &o);
    m->n_malloc++;
}

static void op_calloc(struct model *m)
{
    size_t size = random_size(m), n = 1;
    if (size >= 4 && rnd(m, 2)) {
        n = 1 + (size_t)rnd(m, 16);
        size /= n;
    }
    unsigned flags = random_mask(m);
    /* dirty memory first, so that zeroing is seen to happen */
    if (rnd(m, 2)) {
        void *d = kmm_malloc(m->mm, n * size, flags);
        if (d) {
            memset(d, 0xe7, kmm_usable_size(m->mm, d));
            kmm_free(m->mm, d);
        }
    }
    errno = 0;
    void *p = kmm_calloc(m->mm, n, size, flags);
    char what[80];
    snprintf(what, sizeof(what), "kmm_calloc(%zu, %zu, 0x%x)", n, size, flags);
    if (!p) {
        alloc_failed(m, what, n * size, 0, flags);
        return;
    }
    struct obj o;
    new_obj(m, &o, p, n * size, 0, flags);
    adopt(m, &o, 0, what);
    push_live(m, &o);
    m->n_calloc++;
}

static void op_aligned(struct model *m)
{
    size_t align = (size_t)1 << rnd(m, 64 - (unsigned)__builtin_clzll((unsigned long long)m->ps) + 2);  /* up to 4 pages */
    size_t size = rnd(m, 4) == 0 ? align + (size_t)rnd(m, 64) - 32 : random_size(m);
    if (size > (size_t)1 << 40)
        size = 1;
    unsigned flags = random_mask(m) | (rnd(m, 6) == 0 ? KMM_ZERO : 0);
    errno = 0;
    void *p = kmm_malloc_aligned(m->mm, size, align, flags);
    char what[96];
    snprintf(what, sizeof(what), "kmm_malloc_aligned(%zu, %zu, 0x%x)", size, align, flags);
    if (!p) {
        alloc_failed(m, what, size, align, flags);
        return;
    }
    struct obj o;
    new_obj(m, &o, p, size, align, flags);
    adopt(m, &o, flags & KMM_ZERO ? 0 : SIZE_MAX, what);
    push_live(m, &o);
    m->n_aligned++;
}

static void remove_index(struct model *m, size_t idx)
{
    struct obj *o = &m->live[idx];
    sorted_remove(m, o);
    m->live_bytes -= o->usable;
    if (o->flags == KMM_AREA(0))
        m->area0_bytes -= o->usable;
    if (o->kind == K_CACHE)
        m->caches[o->cache].live--;
    *o = m->live[--m->nlive];
}

static void free_index(struct model *m, size_t idx)
{
    struct obj o = m->live[idx];
    verify_obj(m, &o, o.usable, "before the free");
    if (o.kind == K_CACHE) {
        struct mcache *mc = &m->caches[o.cache];
        if (mc->ctor >= 0)
            ctor_fill(o.p, mc->size);       /* back in its constructed state */
        kmm_cache_free(mc->c, o.p);
    } else {
        size_t u = kmm_usable_size(m->mm, o.p);
        if (u != o.usable)
            fail("kmm_usable_size(%p) = %zu before the free, was %zu", (void *)o.p, u, o.usable);
        if (rnd(m, 16) == 0) {
            if (kmm_realloc(m->mm, o.p, 0, 0) != NULL)
                fail("kmm_realloc(%p, 0) did not return NULL", (void *)o.p);
        } else {
            kmm_free(m->mm, o.p);
        }
    }
    remove_index(m, idx);
    m->drained = false;
    m->n_free++;
}

static void op_free(struct model *m)
{
    if (m->nlive)
        free_index(m, (size_t)rnd(m, m->nlive));
}

/* A live kmm_malloc object, or SIZE_MAX. */
static size_t pick_malloced(struct model *m)
{
    for (int tries = 0; tries < 8 && m->nlive; tries++) {
        size_t i = (size_t)rnd(m, m->nlive);
        if (m->live[i].kind != K_CACHE)
            return i;
    }
    return SIZE_MAX;
}

static void op_realloc(struct model *m)
{
    size_t idx = pick_malloced(m);
    unsigned flags = random_mask(m) | (rnd(m, 4) == 0 ? KMM_ZERO : 0);
    char what[120];
    if (idx == SIZE_MAX) {                     /* NULL: kmm_malloc */
        size_t size = random_size(m);
        void *p = kmm_realloc(m->mm, NULL, size ? size : 1, flags);
        snprintf(what, sizeof(what), "kmm_realloc(NULL, %zu, 0x%x)", size ? size : 1, flags);
        if (!p) {
            alloc_failed(m, what, size ? size : 1, 0, flags);
            return;
        }
        struct obj o;
        new_obj(m, &o, p, size ? size : 1, 0, flags);
        adopt(m, &o, flags & KMM_ZERO ? 0 : SIZE_MAX, what);
        push_live(m, &o);
        m->n_realloc++;
        return;
    }
    struct obj old = m->live[idx];
    size_t size;
    uint64_t r = rnd(m, 100);
    if (r < 25) {                              /* within what it has: in place */
        size = old.size + (size_t)rnd(m, old.usable - old.size + 1);
    } else if (r < 50) {                       /* near its size */
        size_t lo = old.size / 4 * 3;
        size = lo + (size_t)rnd(m, old.size / 2 + 2);
    } else if (r < 53) {                       /* far too large: fails, p intact */
        size = rnd(m, 2) ? SIZE_MAX - (size_t)rnd(m, 100000) : SIZE_MAX / 2;
    } else {
        size = random_size(m);
    }
    if (size == 0)
        size = 1;                              /* size 0 frees: done by free_index */
    snprintf(what, sizeof(what), "kmm_realloc(%p [%s %u: size %zu, usable %zu], %zu, 0x%x)", (void *)old.p,
             kind_name[old.kind], old.id, old.size, old.usable, size, flags);
    verify_obj(m, &old, old.usable, what);
    errno = 0;
    unsigned char *p = kmm_realloc(m->mm, old.p, size, flags);
    int err = errno;
    m->n_realloc++;
    m->drained = false;
    if (!p) {
        if (size < ((size_t)1 << 40))
            alloc_failed(m, what, size, 0, flags);
        else if (err != ENOMEM && err != EINVAL)
            fail("%s failed with errno %d", what, err);
        verify_obj(m, &old, old.usable, "after a failed kmm_realloc");
        if (kmm_usable_size(m->mm, old.p) != old.usable)
            fail("after a failed %s the usable size is %zu", what, kmm_usable_size(m->mm, old.p));
        return;
    }
    if (size >= ((size_t)1 << 40))
        fail("%s succeeded", what);
    size_t keep = old.size < size ? old.size : size;
    struct obj o = old;
    o.p = p;
    o.size = size;
    /* the pattern of what was kept: checked before the model moves */
    size_t bad = pattern_io(p, old.id, old.usable, keep, false);
    if (bad != SIZE_MAX)
        fail("%s -> %p: byte %zu of the %zu kept is 0x%02x, not what was there", what, (void *)p, bad, keep, p[bad]);
    if (p == old.p) {
        m->n_realloc_inplace++;
    } else {
        /* in place when the new size fits the class and is not much smaller, or fits the pages */
        if (size <= old.usable && (old.kind == K_PAGES ? size > m->max_slab : size > old.usable / 2))
            fail("%s moved to %p though the new size fits what the object had", what, (void *)p);
        o.kind = (uint8_t)kind_of(m, p);
        o.align = 0;
    }
    /* take the old object out of the model (its bytes were checked) */
    sorted_remove(m, &old);
    m->live_bytes -= old.usable;
    if (old.flags == KMM_AREA(0))
        m->area0_bytes -= old.usable;
    m->live[idx] = m->live[--m->nlive];
    if (p == old.p && old.kind == K_PAGES && size < old.usable) {
        size_t pages = kmm_page_alloc_size(m->mm, p);
        if (pages * m->ps != round_up(size, m->ps))
            fail("%s shrank in place but holds %zu pages, not the %zu it needs", what, pages,
                 round_up(size, m->ps) / m->ps);
    }
    o.flags = p == old.p ? old.flags : flags & KMM_AREA_MASK;
    size_t zero_from = SIZE_MAX;
    if (flags & KMM_ZERO)
        zero_from = old.usable;
    /* adopt() checks usable/alignment/contiguity/overlap and writes the
     * pattern over the whole new usable size (same id: the kept bytes stay) */
    adopt(m, &o, zero_from, what);
    push_live(m, &o);
}

/* ---- caches ------------------------------------------------------------------- */

static void op_cache_create(struct model *m)
{
    int slot = -1;
    for (int j = 0; j < MAX_CACHES; j++)
        if (!m->caches[j].c)
            slot = j;
    if (slot < 0)
        return;
    struct mcache *mc = &m->caches[slot];
    memset(mc, 0, sizeof(*mc));
    mc->ctor = -1;
    uint64_t r = rnd(m, 100);
    if (r < 20) {
        mc->ctor = (int)rnd(m, NR_CTORS);
        mc->size = ctor_size[mc->ctor];
    } else if (r < 60) {
        mc->size = 1 + (size_t)rnd(m, 256);
    } else if (r < 85) {
        mc->size = 1 + (size_t)rnd(m, m->ps);
    } else if (r < 95) {
        mc->size = 1 + (size_t)rnd(m, 8 * m->ps);
    } else {
        mc->size = (size_t)(1 + rnd(m, 8)) * m->ps - (size_t)rnd(m, 2);
    }
    r = rnd(m, 100);
    mc->align = r < 50 ? 0 : r < 95 ? (size_t)8 << rnd(m, 6) : (size_t)1 << rnd(m, 1 + (unsigned)__builtin_ctzll(m->ps));
    mc->mask = rnd(m, 5) == 0 ? random_mask(m) : 0;
    mc->serial = ++m->cache_serial;
    if (rnd(m, 8) == 0)
        snprintf(mc->name, sizeof(mc->name), "m%lu-a-name-longer-than-thirty-one-characters", mc->serial);
    else
        snprintf(mc->name, sizeof(mc->name), "model-%lu", mc->serial);
    errno = 0;
    mc->c = kmm_cache_create(m->mm, mc->name, mc->size, mc->align, mc->ctor >= 0 ? ctors[mc->ctor] : NULL);
    if (!mc->c)
        fail("kmm_cache_create(\"%s\", %zu, %zu, ctor %d) failed (errno %d)", mc->name, mc->size, mc->align, mc->ctor,
             errno);
    m->n_cache_create++;
    struct kmm_cache_stats cs;
    kmm_cache_stats(mc->c, &cs);
    check_entry(m, &cs, "kmm_cache_stats of a new cache");
    if (cs.active_objects || cs.slabs || cs.cached_objects)
        fail("new cache \"%s\": %zu active, %zu slabs, %zu cached", mc->name, cs.active_objects, cs.slabs,
             cs.cached_objects);
}

static void op_cache_alloc(struct model *m)
{
    int c = (int)rnd(m, MAX_CACHES);
    struct mcache *mc = &m->caches[c];
    if (!mc->c) {
        op_cache_create(m);
        return;
    }
    unsigned flags = mc->mask;
    if (mc->ctor < 0 && rnd(m, 6) == 0)
        flags |= KMM_ZERO;
    errno = 0;
    unsigned char *p = kmm_cache_alloc(mc->c, flags);
    char what[192];
    snprintf(what, sizeof(what), "kmm_cache_alloc(\"%s\" [%zu bytes], 0x%x)", mc->name, mc->size, flags);
    if (!p) {
        struct kmm_cache_stats cs;                 /* it needed a slab of the cache's order */
        int err = errno;
        kmm_cache_stats(mc->c, &cs);
        errno = err;
        alloc_failed(m, what, cs.pages_per_slab * m->ps, 0, flags);
        return;
    }
    struct obj o;
    memset(&o, 0, sizeof(o));
    o.p = p;
    o.size = o.usable = mc->size;
    o.align = mc->align;
    o.id = ++m->next_id;
    o.kind = K_CACHE;
    o.cache = (int8_t)c;
    o.flags = mc->mask;
    m->drained = false;
    if (mc->ctor >= 0) {
        size_t bad = ctor_verify(p, mc->size);
        if (bad != SIZE_MAX)
            fail("%s returned %p not in its constructed state: byte %zu is 0x%02x, expected 0x%02x", what, (void *)p,
                 bad, p[bad], ctor_byte(p, bad));
    }
    adopt(m, &o, flags & KMM_ZERO ? 0 : SIZE_MAX, what);
    push_live(m, &o);
    m->n_cache_alloc++;
}

static void op_cache_destroy(struct model *m)
{
    int c = (int)rnd(m, MAX_CACHES);
    struct mcache *mc = &m->caches[c];
    if (!mc->c)
        return;
    for (size_t i = m->nlive; i-- > 0;)
        if (m->live[i].kind == K_CACHE && m->live[i].cache == c)
            free_index(m, i);
    if (mc->live)
        fail("model: cache %d still has %zu objects", c, mc->live);
    if (rnd(m, 2))
        kmm_drain(m->mm);                    /* else the magazine of this thread goes back with the cache */
    kmm_cache_destroy(mc->c);
    mc->c = NULL;
    m->n_cache_destroy++;
}

static void op_drain(struct model *m)
{
    kmm_drain(m->mm);
    m->drained = true;
    m->n_drain++;
    check_stats(m);
}

/* ---- bad arguments and corner cases ---------------------------------------- */

static void corner_cases(struct model *m)
{
    struct kmm *mm = m->mm;
    void *p;
    m->drained = false;
    errno = 0;
    if ((p = kmm_malloc_aligned(mm, 10, 24, 0)) != NULL || errno != EINVAL)
        fail("kmm_malloc_aligned(10, 24) = %p, errno %d (expected NULL, EINVAL)", p, errno);
    errno = 0;
    if ((p = kmm_malloc_aligned(mm, 100, 3 * m->ps, 0)) != NULL || errno != EINVAL)
        fail("kmm_malloc_aligned(100, 3 pages) = %p, errno %d (expected NULL, EINVAL)", p, errno);
    errno = 0;
    if ((p = kmm_calloc(mm, SIZE_MAX / 2, 3, 0)) != NULL || errno != ENOMEM)
        fail("kmm_calloc(SIZE_MAX / 2, 3) = %p, errno %d (expected NULL, ENOMEM)", p, errno);
    errno = 0;
    if ((p = kmm_calloc(mm, (size_t)1 << (sizeof(size_t) * 4), (size_t)1 << (sizeof(size_t) * 4), 0)) != NULL ||
        errno != ENOMEM)
        fail("kmm_calloc(2^32, 2^32) = %p, errno %d (expected NULL, ENOMEM)", p, errno);
    static const size_t huge[] = { SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 4096, SIZE_MAX / 2 + 1, (size_t)1 << 50 };
    for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
        errno = 0;
        if ((p = kmm_malloc(mm, huge[i], 0)) != NULL || (errno != ENOMEM && errno != EINVAL))
            fail("kmm_malloc(%zu) = %p, errno %d", huge[i], p, errno);
        errno = 0;
        if ((p = kmm_malloc_aligned(mm, huge[i], 4 * m->ps, 0)) != NULL || (errno != ENOMEM && errno != EINVAL))
            fail("kmm_malloc_aligned(%zu, 4 pages) = %p, errno %d", huge[i], p, errno);
        errno = 0;
        if ((p = kmm_malloc_aligned(mm, huge[i], 64, 0)) != NULL || (errno != ENOMEM && errno != EINVAL))
            fail("kmm_malloc_aligned(%zu, 64) = %p, errno %d", huge[i], p, errno);
    }
    /* size 0 is 1; kmm_calloc of 0 elements too */
    unsigned char *z = kmm_malloc(mm, 0, 0);
    if (!z || kmm_usable_size(mm, z) < 1 || ((uintptr_t)z & (KMM_MALLOC_ALIGN - 1)))
        fail("kmm_malloc(0) = %p", (void *)z);
    z[0] = 1;
    unsigned char *z2 = kmm_calloc(mm, 0, 100, 0);
    if (!z2 || kmm_usable_size(mm, z2) < 1 || z2[0] != 0)
        fail("kmm_calloc(0, 100) = %p", (void *)z2);
    kmm_free(mm, z2);
    /* small alignments mean KMM_MALLOC_ALIGN */
    for (size_t a = 1; a <= KMM_MALLOC_ALIGN; a *= 2) {
        p = kmm_malloc_aligned(mm, 3, a, 0);
        if (!p || ((uintptr_t)p & (KMM_MALLOC_ALIGN - 1)))
            fail("kmm_malloc_aligned(3, %zu) = %p", a, p);
        kmm_free(mm, p);
    }
    /* realloc to an impossible size leaves the object */
    memset(z, 0x3c, kmm_usable_size(mm, z));
    errno = 0;
    if ((p = kmm_realloc(mm, z, SIZE_MAX, 0)) != NULL || (errno != ENOMEM && errno != EINVAL))
        fail("kmm_realloc(p, SIZE_MAX) = %p, errno %d", p, errno);
    if (z[0] != 0x3c)
        fail("a failed kmm_realloc changed the object");
    kmm_free(mm, z);
    kmm_free(mm, NULL);
    kmm_cache_destroy(NULL);
    kmm_free(mm, kmm_realloc(mm, NULL, 0, 0));   /* NULL or an object of 1 byte: either is fine */

    /* caches: bad arguments give NULL, EINVAL (and a report on stderr) */
    static const struct { size_t size, align; } bad[] = { { 0, 0 }, { 16, 3 }, { 16, 24 }, { 16, 0 } };
    fprintf(stderr, "slab_model: reports of bad kmm_cache_create arguments expected below\n");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t size = bad[i].size, align = bad[i].align;
        if (i == 3)
            size = 8 * m->ps + 1;
        errno = 0;
        struct kmm_cache *c = kmm_cache_create(mm, "bad", size, align, NULL);
        if (c || errno != EINVAL)
            fail("kmm_cache_create(size %zu, align %zu) = %p, errno %d (expected NULL, EINVAL)", size, align,
                 (void *)c, errno);
    }
    errno = 0;
    struct kmm_cache *c = kmm_cache_create(mm, "bad-align", 16, 2 * m->ps, NULL);
    if (c || errno != EINVAL)
        fail("kmm_cache_create(align 2 pages) = %p, errno %d (expected NULL, EINVAL)", (void *)c, errno);
    /* the largest cache object, and alignment to a page */
    c = kmm_cache_create(mm, "corner-8-pages", 8 * m->ps, m->ps, NULL);
    if (!c)
        fail("kmm_cache_create(8 pages, page aligned) failed (errno %d)", errno);
    p = kmm_cache_alloc(c, KMM_ZERO);
    if (!p || ((uintptr_t)p & (m->ps - 1)))
        fail("kmm_cache_alloc of an 8-page object = %p", p);
    if (zero_check(p, 0, 8 * m->ps) != SIZE_MAX)
        fail("KMM_ZERO 8-page cache object not zeroed");
    memset(p, 0x11, 8 * m->ps);
    kmm_cache_free(c, p);
    kmm_cache_free(c, NULL);
    kmm_cache_destroy(c);
    /* with a constructor the canary has a word after the object: the slot must still fit in 8 pages */
    errno = 0;
    c = kmm_cache_create(mm, "bad-ctor-8-pages", 8 * m->ps, 0, ctors[0]);
    if (c || errno != EINVAL)
        fail("kmm_cache_create(8 pages, with a constructor) = %p, errno %d (expected NULL, EINVAL: the slot does not "
             "fit in 8 pages)", (void *)c, errno);
    c = kmm_cache_create(mm, "corner-ctor-8-pages", 8 * m->ps - 8, 0, ctors[0]);
    if (!c)
        fail("kmm_cache_create(8 pages - 8, with a constructor) failed (errno %d)", errno);
    p = kmm_cache_alloc(c, 0);
    struct kmm_cache_stats cs;
    kmm_cache_stats(c, &cs);
    check_entry(m, &cs, "kmm_cache_stats of a cache of 8 pages - 8 with a constructor");
    if (!p || cs.pages_per_slab != 8 || cs.objects_per_slab != 1)
        fail("cache of 8 pages - 8 with a constructor: object %p, %zu objects per slab of %zu pages", p,
             cs.objects_per_slab, cs.pages_per_slab);
    kmm_cache_free(c, p);
    kmm_cache_destroy(c);
    /* a constructor forbids KMM_ZERO */
    c = kmm_cache_create(mm, "corner-ctor", ctor_size[1], 0, ctors[1]);
    if (!c)
        fail("kmm_cache_create with a constructor failed (errno %d)", errno);
    errno = 0;
    if ((p = kmm_cache_alloc(c, KMM_ZERO)) != NULL || errno != EINVAL)
        fail("kmm_cache_alloc(KMM_ZERO) of a cache with a constructor = %p, errno %d (expected NULL, EINVAL)", p,
             errno);
    p = kmm_cache_alloc(c, 0);
    if (!p || ctor_verify(p, ctor_size[1]) != SIZE_MAX)
        fail("object of a cache with a constructor is not constructed");
    kmm_cache_free(c, p);
    kmm_cache_destroy(c);
    fprintf(stderr, "slab_model: end of expected reports\n");
    kmm_drain(mm);
}

/* ---- one configuration --------------------------------------------------------- */

static void run_config(const struct config *cfg, unsigned long nops, uint64_t seed)
{
    struct model *m = calloc(1, sizeof(*m));
    if (!m)
        fail("out of memory");
    g_model = m;
    m->cfg = cfg;
    m->rng = seed;
    struct kmm_config kc = { .page_size = cfg->page_size, .mem_size = cfg->mem_size, .slab_flags = cfg->slab_flags };
    m->mm = kmm_create(&kc);
    if (!m->mm) {
        perror("kmm_create");
        abort();
    }
    m->ps = cfg->page_size;
    m->live = calloc(MAX_LIVE, sizeof(*m->live));
    m->sorted = calloc(MAX_LIVE, sizeof(*m->sorted));
    if (!m->live || !m->sorted)
        fail("out of memory");
    struct kmm_page_stats ps0, pst;
    kmm_page_stats(m->mm, &ps0);
    m->init_allocated = ps0.allocated_pages;
    m->max_slab = kmm_malloc_max_slab_size(m->mm);
    if (m->max_slab < 256 || m->max_slab >= m->ps)
        fail("kmm_malloc_max_slab_size = %zu with pages of %zu bytes (the test tells slab objects from pages by "
             "their usable size)", m->max_slab, m->ps);
    m->drained = true;
    m->target_bytes = 8u << 20;
    check_stats(m);
    corner_cases(m);
    m->drained = true;
    check_stats(m);

    for (m->op = 1; m->op <= nops; m->op++) {
        if (m->op % 4000 == 0)
            m->target_bytes = ((size_t)1 << 20) + (size_t)rnd(m, 40u << 20);   /* live bytes aimed at */
        unsigned p_free = m->live_bytes > m->target_bytes ? 62 : 35;
        if (m->nlive >= MAX_LIVE - 2)
            p_free = 100;
        uint64_t r = rnd(m, 100);
        if (r < p_free) {
            op_free(m);
        } else {
            r = rnd(m, 1000);
            if (r < 330)
                op_malloc(m);
            else if (r < 400)
                op_calloc(m);
            else if (r < 500)
                op_aligned(m);
            else if (r < 680)
                op_realloc(m);
            else if (r < 981)
                op_cache_alloc(m);
            else if (r < 991)
                op_cache_create(m);
            else if (r < 997)
                op_cache_destroy(m);
            else
                op_drain(m);
        }
        if (m->op % STATS_EVERY == 0)
            check_stats(m);
        if (m->op % CHECK_EVERY == 0)
            run_check(m);
    }

    /* everything back */
    check_stats(m);
    while (m->nlive)
        free_index(m, m->nlive - 1);
    for (int j = 0; j < MAX_CACHES; j++)
        if (m->caches[j].c) {
            kmm_cache_destroy(m->caches[j].c);
            m->caches[j].c = NULL;
        }
    kmm_drain(m->mm);
    m->drained = true;
    run_check(m);
    check_stats(m);
    static struct kmm_cache_stats st[MAX_STATS];
    size_t n = kmm_slab_stats(m->mm, st, MAX_STATS);
    for (size_t i = 0; i < n && i < MAX_STATS; i++)
        if (st[i].active_objects || st[i].cached_objects)
            fail("at the end cache \"%s\" has %zu active and %zu cached objects", st[i].name, st[i].active_objects,
                 st[i].cached_objects);
    kmm_page_stats(m->mm, &pst);
    if (pst.allocated_pages != m->init_allocated)
        fail("at the end, everything freed and drained, %zu pages are allocated; initially %zu (%zu caches listed, "
             "%zu slabs in them)", pst.allocated_pages, m->init_allocated, n,
             n ? st[0].slabs : (size_t)0);
    kmm_destroy(m->mm);
    printf("  %-24s %7lu ops: %lu malloc, %lu calloc, %lu aligned, %lu realloc (%lu in place), %lu cache allocs, "
           "%lu frees, %lu blocks of pages, %lu failures for fragmentation; caches %lu made / %lu destroyed; %lu drains, %lu stats checks; "
           "at most %zu objects, %zu KiB live\n",
           cfg->name, nops, m->n_malloc, m->n_calloc, m->n_aligned, m->n_realloc, m->n_realloc_inplace,
           m->n_cache_alloc, m->n_free, m->n_large, m->n_fragmented, m->n_cache_create, m->n_cache_destroy, m->n_drain, m->n_stats,
           m->max_nlive, m->max_live_bytes >> 10);
    fflush(stdout);
    free(m->live);
    free(m->sorted);
    free(m);
    g_model = NULL;
}

int main(void)
{
    static const struct config configs[] = {
        { "4 KiB pages, 256 MiB", 4096, 256ull << 20, 39, 0 },
        { "4 KiB pages, 256 MiB, KMM_SLAB_POISON", 4096, 256ull << 20, 14, KMM_SLAB_POISON },
        { "16 KiB pages, 256 MiB", 16384, 256ull << 20, 22, 0 },
        { "64 KiB pages, 512 MiB", 65536, 512ull << 20, 18, 0 },
        /* the largest page size kmm_create accepts: caches' slabs of up to 8
         * MiB; few operations, each touching megabytes of fresh memory */
        { "1 MiB pages, 2 GiB", 1 << 20, 2048ull << 20, 5, 0 },
        { "1 MiB pages, 2 GiB, KMM_SLAB_POISON", 1 << 20, 2048ull << 20, 2, KMM_SLAB_POISON },
    };
    g_seed = kmm_test_seed("slab_model");
    const char *env = getenv("KMM_MODEL_OPS");
    unsigned long total = env ? strtoul(env, NULL, 0) : 450000;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t s = g_seed;
    for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++)
        run_config(&configs[i], total * configs[i].share / 100, kmm_test_rand(&s));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    unsigned long ctors_run = 0;
    for (size_t i = 0; i < NR_CTORS; i++)
        ctors_run += ctor_calls[i];
    printf("slab_model: OK, %lu operations in %zu configurations, %lu constructor calls, %.1f s\n", total,
           sizeof(configs) / sizeof(configs[0]), ctors_run,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
