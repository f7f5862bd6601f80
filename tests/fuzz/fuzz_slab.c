/* fuzz_slab.c - libFuzzer target for the slab layer (kmm_malloc and caches).
 *
 * The input bytes are decoded into operations of the slab layer on one small
 * memory system (4 MiB of 4 KiB pages in three areas of 1, 1 and 2 MiB),
 * created on the first call: kmm_malloc, kmm_calloc, kmm_realloc,
 * kmm_malloc_aligned with area masks and KMM_ZERO, kmm_free, caches created
 * (with constructors, alignments, odd sizes up to 8 pages), allocated from,
 * freed to and destroyed, kmm_drain, kmm_check, the stats, and armed fault
 * injection. Every result is checked against a model of the live objects, as
 * in tests/stress/slab_model.c: alignment, usable size, no overlap with any
 * live object (a sorted array of ranges), the object's pattern intact until
 * it is freed and across kmm_realloc, KMM_ZERO memory zeroed, constructed
 * objects constructed, stats that agree with the model's counts. A NULL
 * result must carry errno ENOMEM (EINVAL for a bad alignment, KMM_ZERO on a
 * cache with a constructor) and be plausible: a failure was injected during
 * the call, or no accepted area has a free block of the order it needs. A
 * mismatch prints what went wrong and aborts.
 *
 * At the end of every input everything is freed, the caches destroyed,
 * injection turned off and kmm_drain called: kmm_check must pass, no cache may
 * have objects, and no page may be allocated, so every input starts from the
 * same state (but for the kmm_malloc caches made by earlier inputs).
 *
 * Decoding: one byte chooses the operation (its value mod 16), the bytes
 * after it its arguments (missing bytes read as 0):
 *   0,1  kmm_malloc          size (1 + 2 bytes), flags
 *   2    kmm_calloc          n, size (1 + 2 bytes), flags
 *   3    kmm_realloc         which (2 bytes), size (1 + 2 bytes), flags
 *   4    kmm_malloc_aligned  alignment, size (1 + 2 bytes), flags
 *   5-7  kmm_free            which (2 bytes)
 *   8    kmm_cache_create    kind, size (2 bytes), alignment
 *   9,10 kmm_cache_alloc     which cache, flags
 *   11   kmm_cache_destroy   which cache
 *   12   kmm_drain / kmm_check / stats   selector
 *   13   kmm_fault_inject    sites, nth, times
 *   14   kmm_realloc(p, 0) / kmm_usable_size   which (2 bytes)
 *   15   free several        count
 * size: the first byte picks a range (mod 16: 0-4 tiny, 5-9 up to 1 KiB,
 * 10-13 up to the largest class, 14 around it, 15 blocks of pages up to 96
 * KiB, or 512 KiB with bit 7 set), the two after it the size in it. flags byte: when bits 4-5 are set, bits 0-2 an area mask
 * (bit 6 set: bits 0-5 as is, naming areas that do not exist); KMM_ZERO when
 * bits 7 and 3 are set.
 *
 * Built with -fsanitize=fuzzer when KMM_FUZZ=ON, and with replay_main.c as an
 * ordinary program (test_slab_fuzz_replay).
 */
#include <kmm.h>

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PS         4096u
#define NPAGES     1024u           /* 4 MiB */
#define NR_AREAS   3u
#define MAX_LIVE   256u
#define MAX_CACHES 4
#define MAX_STATS  4096
#define FULL_LIMIT 2048u           /* objects up to this size carry the pattern in every byte */

struct obj {
    unsigned char *p;
    size_t size, usable;           /* usable: kmm_usable_size, or the cache's object size */
    uint32_t id;
    int cache;                     /* -1: kmm_malloc memory */
    unsigned areas;                /* the area mask it was allocated with */
};

struct range {
    uintptr_t lo, hi;
};

struct fcache {
    struct kmm_cache *c;
    size_t size, align;
    int ctor;                      /* -1 or index in ctors[] */
    size_t live;
    char name[24];
};

static const uint64_t limits[NR_AREAS] = { 1ull << 20, 2ull << 20, UINT64_MAX };

static struct kmm *mm;
static size_t init_allocated, max_slab;
static struct obj live[MAX_LIVE];
static unsigned nlive;
static struct range sorted[MAX_LIVE];
static unsigned nsorted;
static struct fcache caches[MAX_CACHES];
static uint32_t next_id;
static unsigned long op_no;
static bool fault_armed;

static void bug(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void bug(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "fuzz_slab: op %lu: ", op_no);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

struct reader {
    const uint8_t *d;
    size_t n, i;
};

static unsigned get8(struct reader *r)
{
    return r->i < r->n ? r->d[r->i++] : 0;
}

static unsigned get16(struct reader *r)
{
    unsigned v = get8(r);
    return v | get8(r) << 8;
}

/* ---- patterns and constructors ---------------------------------------------------- */

static unsigned char pat(uint32_t id, size_t i)
{
    uint64_t x = ((uint64_t)id << 32) ^ (i >> 3);
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    return (unsigned char)(x >> (8 * (i & 7)));
}

/* Which bytes of an object of `written` bytes carry its pattern: all up to
 * FULL_LIMIT; beyond, the first 32 bytes of every fourth page-sized chunk
 * (few pages touched: every input's kmm_drain gives memory back to the OS,
 * and touching it again costs a page fault) and the last 32 bytes. A prefix
 * of an object keeps the pattern of its bytes. */
static bool carries(size_t written, size_t i)
{
    return written <= FULL_LIMIT || ((i & (4 * PS - 1)) < 32) || i + 32 >= written;
}

/* The next byte at or after i that carries the pattern (skips the gaps). */
static size_t next_carrier(size_t written, size_t i)
{
    if (!carries(written, i)) {
        size_t next = (i & ~(size_t)(4 * PS - 1)) + 4 * PS;
        i = next < written - 32 ? next : written - 32;
    }
    return i;
}

static void write_pattern(const struct obj *o)
{
    for (size_t i = 0; i < o->usable; i = next_carrier(o->usable, i + 1))
        o->p[i] = pat(o->id, i);
}

/* Checks the first len bytes of the pattern written over `written` bytes at p. */
static void verify_pattern(const unsigned char *p, uint32_t id, size_t written, size_t len, const char *when)
{
    for (size_t i = 0; i < len; i = next_carrier(written, i + 1))
        if (p[i] != pat(id, i))
            bug("%s: object %u at %p: byte %zu is 0x%02x, expected 0x%02x (overlap or corruption)", when, id,
                (const void *)p, i, p[i], pat(id, i));
}

static const size_t ctor_size[] = { 16, 200, 3000 };
#define NR_CTORS 3
static unsigned char ctor_byte(const void *p, size_t i)
{
    return (unsigned char)(((uintptr_t)p >> 3) + i * 29 + 0x3c);
}
static void ctor_fill(void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ((unsigned char *)p)[i] = ctor_byte(p, i);
}
static void ctor0(void *p) { ctor_fill(p, ctor_size[0]); }
static void ctor1(void *p) { ctor_fill(p, ctor_size[1]); }
static void ctor2(void *p) { ctor_fill(p, ctor_size[2]); }
static void (*const ctors[NR_CTORS])(void *) = { ctor0, ctor1, ctor2 };

/* ---- the model ------------------------------------------------------------------------- */

static unsigned lower_bound(uintptr_t lo)
{
    unsigned a = 0, b = nsorted;
    while (a < b) {
        unsigned m = a + (b - a) / 2;
        if (sorted[m].lo < lo)
            a = m + 1;
        else
            b = m;
    }
    return a;
}

static void range_add(const struct obj *o)
{
    uintptr_t lo = (uintptr_t)o->p, hi = lo + o->usable;
    unsigned i = lower_bound(lo);
    if ((i < nsorted && sorted[i].lo < hi) || (i > 0 && sorted[i - 1].hi > lo))
        bug("new object %p (+%zu) overlaps a live object", (void *)o->p, o->usable);
    memmove(&sorted[i + 1], &sorted[i], (nsorted - i) * sizeof(sorted[0]));
    sorted[i].lo = lo;
    sorted[i].hi = hi;
    nsorted++;
}

static void range_del(const struct obj *o)
{
    unsigned i = lower_bound((uintptr_t)o->p);
    if (i >= nsorted || sorted[i].lo != (uintptr_t)o->p)
        bug("model: object at %p not in the ranges", (void *)o->p);
    memmove(&sorted[i], &sorted[i + 1], (nsorted - i - 1) * sizeof(sorted[0]));
    nsorted--;
}

static unsigned area_of(kmm_phys_t ph)
{
    for (unsigned a = 0; a < NR_AREAS; a++)
        if (ph < limits[a])
            return a;
    return NR_AREAS;
}

/* A NULL result: errno ENOMEM, and a failure injected during the call or no
 * accepted area with a free block of the order needed (for pages of size
 * bytes aligned so; for a slab object, the largest slab: 8 pages). */
static void check_failure(int err, unsigned long injected_before, size_t size, size_t align, unsigned flags,
                          const char *what)
{
    if (err != ENOMEM)
        bug("%s returned NULL with errno %d, expected ENOMEM", what, err);
    if (fault_armed && kmm_fault_injected(mm) != injected_before)
        return;
    unsigned acc = flags & KMM_AREA_MASK ? flags & KMM_AREA_MASK : KMM_AREA_MASK;
    size_t pages = size > max_slab || align >= PS ? (size + PS - 1) / PS : 8;
    if (pages == 0)
        pages = 1;
    if (align > PS && pages < align / PS)
        pages = align / PS;
    unsigned need = 0;
    while (((size_t)1 << need) < pages)
        need++;
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    for (unsigned a = 0; a < NR_AREAS; a++)
        for (unsigned o = need; o <= KMM_MAX_ORDER && (acc & KMM_AREA(a)); o++)
            if (st.nr_free[a][o])
                bug("%s failed (no failure injected) though area %u has a free block of order %u (needs %u)", what,
                    a, o, need);
}

/* Checks a new object and records it (or frees it at once when the model is full). */
static void adopt(unsigned char *p, size_t size, size_t align, int cache, unsigned flags, size_t zero_from,
                  const char *what)
{
    struct obj o = { p, size, 0, ++next_id, cache, flags & KMM_AREA_MASK };
    size_t a = cache >= 0 ? (align > 8 ? align : 8) : (align > KMM_MALLOC_ALIGN ? align : KMM_MALLOC_ALIGN);
    if ((uintptr_t)p & (a - 1))
        bug("%s returned %p, not aligned to %zu", what, (void *)p, a);
    o.usable = cache >= 0 ? caches[cache].size : kmm_usable_size(mm, p);
    if (o.usable < size || o.usable == 0)
        bug("%s returned %p with usable size %zu < %zu", what, (void *)p, o.usable, size);
    kmm_phys_t ph = kmm_virt_to_phys(mm, p), pe = kmm_virt_to_phys(mm, p + o.usable - 1);
    if (ph == KMM_PHYS_NONE || pe != ph + o.usable - 1)
        bug("%s returned %p (+%zu): not contiguous in the direct map", what, (void *)p, o.usable);
    if (cache < 0 && o.usable > max_slab) {               /* a block of pages */
        if (((uintptr_t)p & (PS - 1)) || kmm_page_alloc_size(mm, p) * PS != o.usable ||
            o.usable != ((size ? size : 1) + PS - 1) / PS * PS)
            bug("%s returned %p: %zu usable bytes, %zu pages, for %zu bytes", what, (void *)p, o.usable,
                kmm_page_alloc_size(mm, p), size);
        unsigned acc = flags & KMM_AREA_MASK;
        if (acc && (!(acc & KMM_AREA(area_of(ph))) || area_of(pe) != area_of(ph)))
            bug("%s (areas 0x%x) returned phys 0x%llx, outside them", what, acc, (unsigned long long)ph);
    }
    for (size_t i = zero_from; i < size; i = i + 1 < 2 * PS || (i & 63) != 63 ? i + 1 : i + 1 + 4 * PS - 64)
        if (p[i])                                        /* beyond 8 KiB: 64 bytes of every fourth page */
            bug("%s returned %p: byte %zu is 0x%02x, not zeroed", what, (void *)p, i, p[i]);
    if (cache >= 0 && caches[cache].ctor >= 0)
        for (size_t i = 0; i < caches[cache].size; i++)
            if (p[i] != ctor_byte(p, i))
                bug("%s returned %p not in its constructed state (byte %zu)", what, (void *)p, i);
    if (nlive == MAX_LIVE) {
        if (cache >= 0)
            kmm_cache_free(caches[cache].c, p);
        else
            kmm_free(mm, p);
        return;
    }
    range_add(&o);
    write_pattern(&o);
    live[nlive++] = o;
    if (cache >= 0)
        caches[cache].live++;
}

static void free_index(unsigned idx, bool via_realloc)
{
    struct obj o = live[idx];
    verify_pattern(o.p, o.id, o.usable, o.usable, "before the free");
    if (o.cache >= 0) {
        struct fcache *fc = &caches[o.cache];
        if (fc->ctor >= 0)
            ctor_fill(o.p, fc->size);
        kmm_cache_free(fc->c, o.p);
        fc->live--;
    } else {
        if (kmm_usable_size(mm, o.p) != o.usable)
            bug("kmm_usable_size(%p) = %zu before the free, was %zu", (void *)o.p, kmm_usable_size(mm, o.p), o.usable);
        if (via_realloc) {
            if (kmm_realloc(mm, o.p, 0, 0) != NULL)
                bug("kmm_realloc(p, 0) did not return NULL");
        } else {
            kmm_free(mm, o.p);
        }
    }
    range_del(&o);
    live[idx] = live[--nlive];
}

/* ---- decoding --------------------------------------------------------------------------- */

static size_t decode_size(struct reader *r)
{
    unsigned sel = get8(r), v = get16(r);
    unsigned s = sel % 16;
    if (s < 5)
        return v % 129;                            /* tiny, 0 included */
    if (s < 10)
        return v % 1025;
    if (s < 14)
        return v % (max_slab + 1);
    if (s == 14)
        return max_slab - 2 + v % 5;               /* around the largest class */
    return max_slab + 1 + (sel & 0x80 ? (size_t)v * 8 : v % (24 * PS));   /* pages: up to 96 KiB, or 512 */
}

static unsigned decode_flags(unsigned b)
{
    /* an area mask one time in four: each mask has kmm_malloc caches of its own, and their slabs cost memory */
    unsigned mask = (b & 0x30) != 0x30 ? 0 : b & 0x40 ? b & KMM_AREA_MASK : b & 7u;
    return mask | ((b & 0x88) == 0x88 ? KMM_ZERO : 0);   /* one time in four: zeroing touches every page */
}

/* ---- operations -------------------------------------------------------------------------- */

static void op_malloc(struct reader *r, unsigned kind)
{
    size_t n = 1, size;
    size_t align = 0;
    unsigned a = kind == 2 ? get8(r) : 0;
    if (kind == 1)
        n = get8(r) % 8;
    size = decode_size(r);
    if (kind == 1 && n > 1)
        size /= n;
    unsigned flags = decode_flags(get8(r));
    char what[96];
    unsigned long before = kmm_fault_injected(mm);
    unsigned char *p;
    errno = 0;
    if (kind == 0) {
        p = kmm_malloc(mm, size, flags);
        snprintf(what, sizeof(what), "kmm_malloc(%zu, 0x%x)", size, flags);
    } else if (kind == 1) {
        p = kmm_calloc(mm, n, size, flags);
        snprintf(what, sizeof(what), "kmm_calloc(%zu, %zu, 0x%x)", n, size, flags);
        size *= n;
    } else {
        align = (size_t)1 << (a % 18);                 /* up to 32 pages */
        if (a & 0x80)
            align = a & 0x40 ? 0 : align * 3;          /* not a power of two */
        p = kmm_malloc_aligned(mm, size, align, flags);
        snprintf(what, sizeof(what), "kmm_malloc_aligned(%zu, %zu, 0x%x)", size, align, flags);
        if (!align || (align & (align - 1))) {
            if (p || errno != EINVAL)
                bug("%s = %p, errno %d: expected NULL, EINVAL", what, (void *)p, errno);
            return;
        }
    }
    if (!p) {
        check_failure(errno, before, size, align, flags, what);
        return;
    }
    adopt(p, size, align, -1, flags, (flags & KMM_ZERO) || kind == 1 ? 0 : SIZE_MAX, what);
}

static void op_realloc(struct reader *r)
{
    unsigned which = get16(r);
    size_t size = decode_size(r);
    unsigned flags = decode_flags(get8(r));
    if (size == 0)
        size = 1;
    unsigned idx = MAX_LIVE;
    for (unsigned t = 0; t < 4 && nlive; t++, which += 7)
        if (live[which % nlive].cache < 0) {
            idx = which % nlive;
            break;
        }
    char what[96];
    unsigned long before = kmm_fault_injected(mm);
    if (idx == MAX_LIVE) {
        errno = 0;
        unsigned char *p = kmm_realloc(mm, NULL, size, flags);
        snprintf(what, sizeof(what), "kmm_realloc(NULL, %zu, 0x%x)", size, flags);
        if (!p)
            check_failure(errno, before, size, 0, flags, what);
        else
            adopt(p, size, 0, -1, flags, flags & KMM_ZERO ? 0 : SIZE_MAX, what);
        return;
    }
    struct obj old = live[idx];
    snprintf(what, sizeof(what), "kmm_realloc(%p [%zu/%zu], %zu, 0x%x)", (void *)old.p, old.size, old.usable, size,
             flags);
    verify_pattern(old.p, old.id, old.usable, old.usable, what);
    errno = 0;
    unsigned char *p = kmm_realloc(mm, old.p, size, flags);
    if (!p) {
        check_failure(errno, before, size, 0, flags, what);
        verify_pattern(old.p, old.id, old.usable, old.usable, "after a failed kmm_realloc");
        if (kmm_usable_size(mm, old.p) != old.usable)
            bug("%s failed and changed the usable size", what);
        return;
    }
    size_t keep = old.size < size ? old.size : size;
    verify_pattern(p, old.id, old.usable, keep, what);
    range_del(&old);
    live[idx] = live[--nlive];
    /* a new model object of the same id: the kept bytes keep their pattern */
    size_t zero_from = flags & KMM_ZERO ? old.usable : SIZE_MAX;
    uint32_t saved = next_id;
    next_id = old.id - 1;
    /* in place, it stays in the areas it was in */
    adopt(p, size, 0, -1, p == old.p ? (flags & ~KMM_AREA_MASK) | old.areas : flags, zero_from, what);
    next_id = saved;
}

static void op_cache_create(struct reader *r)
{
    unsigned kind = get8(r), sv = get16(r), a = get8(r);
    int slot = -1;
    for (int i = 0; i < MAX_CACHES; i++)
        if (!caches[i].c)
            slot = i;
    if (slot < 0)
        return;
    struct fcache *fc = &caches[slot];
    memset(fc, 0, sizeof(*fc));
    fc->ctor = -1;
    if (kind % 4 == 0) {
        fc->ctor = (int)((kind >> 2) % NR_CTORS);
        fc->size = ctor_size[fc->ctor];
    } else if (kind % 4 == 1) {
        fc->size = 1 + sv % 512;
    } else {
        fc->size = 1 + sv % (8 * PS);
    }
    fc->align = a & 0x80 ? 0 : (size_t)1 << (a % 13);     /* up to a page */
    snprintf(fc->name, sizeof(fc->name), "fuzz-%d", slot);
    unsigned long before = kmm_fault_injected(mm);
    errno = 0;
    fc->c = kmm_cache_create(mm, fc->name, fc->size, fc->align, fc->ctor >= 0 ? ctors[fc->ctor] : NULL);
    if (!fc->c) {
        if (errno != ENOMEM || !fault_armed || kmm_fault_injected(mm) == before)
            bug("kmm_cache_create(%zu, %zu) failed, errno %d", fc->size, fc->align, errno);
        return;
    }
    struct kmm_cache_stats cs;
    kmm_cache_stats(fc->c, &cs);
    if (cs.object_size != fc->size || cs.align < (fc->align > 8 ? fc->align : 8) || cs.active_objects ||
        (cs.pages_per_slab != 1 && cs.pages_per_slab != 2 && cs.pages_per_slab != 4 && cs.pages_per_slab != 8))
        bug("new cache of %zu bytes aligned %zu: stats say %zu bytes, align %zu, %zu active, %zu pages per slab",
            fc->size, fc->align, cs.object_size, cs.align, cs.active_objects, cs.pages_per_slab);
}

static void op_cache_alloc(struct reader *r)
{
    unsigned w = get8(r), f = get8(r);
    struct fcache *fc = &caches[w % MAX_CACHES];
    if (!fc->c)
        return;
    unsigned flags = f & 0x80 ? KMM_ZERO : 0;
    char what[96];
    snprintf(what, sizeof(what), "kmm_cache_alloc(%s [%zu bytes, ctor %d], 0x%x)", fc->name, fc->size, fc->ctor,
             flags);
    unsigned long before = kmm_fault_injected(mm);
    errno = 0;
    unsigned char *p = kmm_cache_alloc(fc->c, flags);
    if ((flags & KMM_ZERO) && fc->ctor >= 0) {
        if (p || errno != EINVAL)
            bug("%s = %p, errno %d: expected NULL, EINVAL", what, (void *)p, errno);
        return;
    }
    if (!p) {
        check_failure(errno, before, 8 * PS, 0, 0, what);   /* a slab of up to 8 pages */
        return;
    }
    adopt(p, fc->size, fc->align, (int)(w % MAX_CACHES), 0, flags & KMM_ZERO ? 0 : SIZE_MAX, what);
}

static void destroy_cache(int c)
{
    for (unsigned i = nlive; i-- > 0;)
        if (live[i].cache == c)
            free_index(i, false);
    kmm_cache_destroy(caches[c].c);
    caches[c].c = NULL;
}

static void check_stats(void)
{
    static struct kmm_cache_stats st[MAX_STATS];
    size_t n = kmm_slab_stats(mm, st, MAX_STATS);
    if (n > MAX_STATS)
        bug("kmm_slab_stats: %zu caches", n);
    size_t kmalloc_active = 0, model_kmalloc = 0;
    for (unsigned i = 0; i < nlive; i++)
        model_kmalloc += live[i].cache < 0 && live[i].usable <= max_slab;
    for (size_t i = 0; i < n; i++) {
        const struct kmm_cache_stats *s = &st[i];
        if (s->active_objects + s->cached_objects > s->total_objects || s->pages != s->slabs * s->pages_per_slab ||
            s->total_objects != s->slabs * s->objects_per_slab || s->empty_slabs > s->slabs ||
            s->waste_bytes != s->pages * PS - s->active_objects * s->object_size)
            bug("stats of \"%s\" inconsistent: %zu active %zu cached %zu total, %zu slabs (%zu empty), %zu pages",
                s->name, s->active_objects, s->cached_objects, s->total_objects, s->slabs, s->empty_slabs, s->pages);
        if (strncmp(s->name, "kmalloc", 7) == 0) {
            kmalloc_active += s->active_objects;
            continue;
        }
        int c = -1;
        for (int j = 0; j < MAX_CACHES; j++)
            if (caches[j].c && strcmp(caches[j].name, s->name) == 0)
                c = j;
        if (c < 0)
            bug("kmm_slab_stats lists \"%s\", not a live cache", s->name);
        if (s->active_objects != caches[c].live)
            bug("cache \"%s\": %zu active objects, the model holds %zu", s->name, s->active_objects, caches[c].live);
    }
    if (kmalloc_active != model_kmalloc)
        bug("kmm_malloc caches have %zu active objects; the model holds %zu", kmalloc_active, model_kmalloc);
    for (int j = 0; j < MAX_CACHES; j++) {
        if (!caches[j].c)
            continue;
        struct kmm_cache_stats cs;
        kmm_cache_stats(caches[j].c, &cs);
        if (cs.active_objects != caches[j].live)
            bug("kmm_cache_stats \"%s\": %zu active, the model holds %zu", cs.name, cs.active_objects, caches[j].live);
    }
}

static void setup(void)
{
    struct kmm_config cfg = { .page_size = PS, .mem_size = (uint64_t)NPAGES * PS, .area_limits = limits,
                              .nr_areas = NR_AREAS };
    mm = kmm_create(&cfg);
    if (!mm)
        bug("kmm_create failed");
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    init_allocated = st.allocated_pages;
    max_slab = kmm_malloc_max_slab_size(mm);
    if (max_slab < 64 || max_slab >= PS)
        bug("kmm_malloc_max_slab_size = %zu", max_slab);
}

static void finish(void)
{
    if (fault_armed) {
        kmm_fault_inject(mm, 0, 0, 0);
        fault_armed = false;
    }
    check_stats();
    while (nlive)
        free_index(nlive - 1, false);
    for (int c = 0; c < MAX_CACHES; c++)
        if (caches[c].c)
            destroy_cache(c);
    kmm_drain(mm);
    if (kmm_check(mm) != 0)
        bug("kmm_check failed at the end of the input");
    check_stats();
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    if (st.allocated_pages != init_allocated)
        bug("at the end, everything freed and drained, %zu pages are allocated (initially %zu)", st.allocated_pages,
            init_allocated);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!mm)
        setup();
    struct reader r = { data, size, 0 };
    op_no = 0;
    while (r.i < r.n) {
        op_no++;
        unsigned op = get8(&r) % 16;
        switch (op) {
        case 0:
        case 1:
            op_malloc(&r, 0);
            break;
        case 2:
            op_malloc(&r, 1);
            break;
        case 3:
            op_realloc(&r);
            break;
        case 4:
            op_malloc(&r, 2);
            break;
        case 5:
        case 6:
        case 7: {
            unsigned w = get16(&r);
            if (nlive)
                free_index(w % nlive, false);
            break;
        }
        case 8:
            op_cache_create(&r);
            break;
        case 9:
        case 10:
            op_cache_alloc(&r);
            break;
        case 11: {
            unsigned w = get8(&r) % MAX_CACHES;
            if (caches[w].c)
                destroy_cache((int)w);
            break;
        }
        case 12: {
            unsigned sel = get8(&r) % 3;
            if (sel == 0)
                kmm_drain(mm);
            else if (sel == 1 && kmm_check(mm) != 0)
                bug("kmm_check failed");
            else if (sel == 2)
                check_stats();
            break;
        }
        case 13: {
            unsigned sites = 1 + get8(&r) % 3, nth = get8(&r), times = get8(&r) % 4;
            if (nth % 4 == 0) {
                kmm_fault_inject(mm, 0, 0, 0);
                fault_armed = false;
            } else {
                kmm_fault_inject(mm, sites, 1 + nth % 24, times);
                fault_armed = true;
            }
            break;
        }
        case 14: {
            unsigned w = get16(&r);
            if (!nlive)
                break;
            struct obj *o = &live[w % nlive];
            if (o->cache < 0 && (w & 0x8000))
                free_index(w % nlive, true);
            else if (o->cache < 0 && kmm_usable_size(mm, o->p) != o->usable)
                bug("kmm_usable_size(%p) = %zu, was %zu", (void *)o->p, kmm_usable_size(mm, o->p), o->usable);
            break;
        }
        default: {
            unsigned cnt = get8(&r) % 32;
            while (cnt-- && nlive)
                free_index(nlive - 1, false);
            break;
        }
        }
    }
    finish();
    return 0;
}
