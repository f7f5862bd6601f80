/* vm_model.c - kmm_vmalloc, kmm_vmap and kmm_kvmalloc against a reference model.
 *
 * Long seeded sequences of random operations - kmm_vmalloc,
 * kmm_vmalloc_aligned (power-of-two alignments up to 4 MiB), kmm_kvmalloc
 * (both sides of the one-page rule), kmm_vfree / kmm_free / kmm_kvfree /
 * kmm_realloc(p, 0), kmm_realloc growing and shrinking vmalloc memory,
 * kmm_vmap of caller pages (read-write and read-only, in any order,
 * sometimes one page twice) and kmm_vunmap, kmm_vmalloc_to_phys spot checks,
 * kmm_vmalloc_set_tag, kmm_vmalloc_purge and kmm_drain, and the holding and
 * releasing of single pages that fragments physical memory - mirrored in a
 * model that records every live area: address, size asked, pages, kind,
 * alignment, area mask, tag and the id its fill pattern derives from. Five
 * configurations, each on a fresh memory system: lazy and strict
 * (KMM_VMALLOC_STRICT) with 256 MiB of memory and 1 GiB of space; lazy and
 * strict with a 64 MiB space and a limit of 500 / 400 mappings; lazy with
 * 16 KiB pages. Each has two short pressure phases (at 30% and 70% of its
 * operations) that allocate 1..16 MiB areas until memory, space or mappings
 * run out. Checked against the model:
 *
 *  - a new area is page aligned (aligned as asked), lies in the vmalloc space
 *    (kmm_is_vmalloc_addr), has kmm_usable_size pages * page size, and
 *    neither it nor its guard page overlaps another live area or its guard
 *    page (a sorted array of the live ranges, guard included); kmm_kvmalloc
 *    up to a page gives physically contiguous kmm_malloc memory outside the
 *    space, or - only when no area asked has a free block of 8 pages, which
 *    a slab may need - a one-page vmalloc area;
 *  - every area carries its pattern (every byte up to 8 KiB; beyond, the
 *    first and last 64 bytes and a word in the middle of every page, so
 *    every page, i.e. every frame mapped, is covered), verified before it is
 *    freed and across kmm_realloc (the first min(old, new) bytes); KMM_ZERO
 *    memory and the part a KMM_ZERO realloc adds read as zero (lazily freed
 *    areas taken back included);
 *  - a kmm_vmap area shows the caller's pages in the order given, and writes
 *    through a read-write one reach the pages (seen in the direct map);
 *  - kmm_vmalloc_to_phys: the offset in the page is kept, the frame is the
 *    one behind the address (a byte written through the direct map is read
 *    back through the vmalloc address), a vmap page is the caller's page,
 *    the guard page, a freed area and addresses of no live area give
 *    KMM_PHYS_NONE, an area asked for in area 0 has only frames below
 *    16 MiB, and the physically contiguous runs found page by page are
 *    kmm_vmalloc_info's;
 *  - kmm_realloc shrinks in place, grows in place only when the range after
 *    the area is free, and (strict mode) does grow in place when it is; a
 *    failed kmm_realloc leaves the area as it was;
 *  - a NULL has errno ENOMEM, leaves the stats and every area intact, and
 *    is plausible: the mapping limit refused it (refused_mappings went up),
 *    or no range of the space that is free or lazily freed (lazy addresses
 *    count as free, vm.h) holds the area, its guard page and a run array,
 *    or the areas asked have fewer pages free or held by lazily freed areas
 *    than needed. Failures are counted per cause;
 *  - kmm_vmalloc_stats agrees with the model: areas, pages, vmap_areas,
 *    vmap_pages, plus the layer's own run-array areas (vmalloc'd when memory
 *    is fragmented) that kmm_vmalloc_info lists; in strict mode nothing is
 *    ever lazy; kmm_vmalloc_purge returns the lazy pages and leaves no lazy
 *    area, nor does kmm_drain; kmm_vmalloc_info lists exactly the model's
 *    live areas (start, end including the guard, size, pages, kind, tag),
 *    lazily freed and internal ones that overlap none of them, the listed
 *    ranges and the free bytes add up to the space, and the mappings are one
 *    per run plus one per area plus one;
 *  - kmm_check passes every 500 operations, after the first failures and
 *    at the end; at the end everything is freed, kmm_vmalloc_purge and
 *    kmm_drain called, the stats show no area, page or lazy area and one
 *    free range, and the page allocator's free pages are back at the value
 *    they had after the vmalloc space was first used.
 *
 * Bad arguments (size 0, an alignment that is not a power of two, unknown
 * flags, sizes past the space, kmm_vmap of no pages, of a bad protection, of
 * a misaligned or foreign frame) give NULL with EINVAL or ENOMEM.
 *
 * KMM_SEED repeats a run; KMM_MODEL_OPS sets the total number of operations
 * (default 8000, 4000 under a sanitizer, spread over the configurations);
 * KMM_MODEL_EVERY_OP checks the stats after every operation (to find the
 * first one that goes wrong).
 */
#include "kmm_test.h"

#include <kmm.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LIVE    3000           /* areas alive at once at most */
#define MAX_HELD    6000           /* caller pages held at once at most */
#define MAX_VMAP    64             /* pages of one kmm_vmap */
#define FULL_LIMIT  8192           /* areas up to this size carry the pattern in every byte */
#define EDGE        64
#define STATS_EVERY 100
#define INFO_EVERY  500
#define CHECK_EVERY 500
#define SLACK_PAGES 64             /* pages the layer's own metadata may need beside an area's */

enum akind { A_VMALLOC, A_VMAP, A_KVMALLOC, A_KVSMALL };
static const char *const kind_name[] = { "kmm_vmalloc area", "kmm_vmap area", "kmm_kvmalloc area (vmalloc)",
                                         "kmm_kvmalloc object (kmm_malloc)" };

struct area {
    unsigned char *p;
    size_t size;                   /* asked (vmap: pages * page size) */
    size_t pages;                  /* mapped (kvsmall: 0) */
    size_t align;                  /* asked */
    uint32_t id;                   /* the pattern's seed */
    uint8_t kind;                  /* enum akind */
    uint8_t prot;                  /* vmap */
    unsigned flags;                /* area mask asked */
    const char *tag;               /* set by kmm_vmalloc_set_tag, else NULL */
    uint32_t *held;                /* vmap: the held pages mapped, in order */
};

struct range {
    uintptr_t lo, hi;              /* the area and its guard page */
    uint32_t id;
};

struct held {
    unsigned char *v;              /* direct-map address; NULL: slot free */
    kmm_phys_t phys;
    uint32_t id;                   /* its pattern */
    uint32_t maps;                 /* kmm_vmap areas that map it */
};

struct config {
    const char *name;
    size_t page_size;
    uint64_t mem_size;
    uint64_t vmalloc_size;         /* 0: the default */
    size_t max_mappings;           /* 0: the default */
    unsigned vm_flags;
    unsigned share;                /* of the total operations, in percent */
};

struct model {
    const struct config *cfg;
    struct kmm *mm;
    bool strict;
    size_t ps;
    unsigned shift;
    uint64_t rng;
    unsigned long op;
    uintptr_t space_lo, space_hi;
    struct area *live;
    size_t nlive;
    struct range *sorted;
    size_t nsorted;
    struct held *held;
    size_t held_slots, nheld;
    uint32_t next_id;
    size_t vm_areas, vm_pages, vmap_areas, vmap_pages;
    size_t live_bytes, target_bytes;
    bool pressure;                 /* this phase aims past memory or space */
    unsigned long phase_end;
    size_t base_free;
    unsigned long failures_checked;
    /* what was exercised */
    unsigned long n_vmalloc, n_aligned, n_kv_small, n_kv_large, n_kv_fallback, n_free, n_realloc, n_realloc_inplace,
        n_realloc_moved, n_vmap, n_vunmap, n_phys, n_purge, n_drain, n_hold, n_release, n_tag, n_runs_checked;
    unsigned long n_phases;
    unsigned long f_kv_frag;
    unsigned long f_space, f_pages, f_mappings, f_realloc;
    size_t max_live_bytes, max_nlive, max_runs, max_held, max_internal;
    uint64_t pages_allocated;
    uint64_t runs_sum, runs_areas;
};

static uint64_t g_seed;
static struct model *g_model;
static bool g_every_op;          /* $KMM_MODEL_EVERY_OP: the stats checked after every operation */
static char g_last[256];        /* the last allocating call and its result, for failure reports */

/* What a failure report (kmm_test_fail) starts with, and ends with. */
static void fail_head(FILE *f)
{
    struct model *m = g_model;
    fprintf(f, "vm_model FAILED [%s, seed %llu, op %lu]: ", m ? m->cfg->name : "-", (unsigned long long)g_seed,
            m ? m->op : 0ul);
}

static void fail_tail(FILE *f)
{
    if (g_last[0])
        fprintf(f, "vm_model: the last allocating call was %s\n", g_last);
}

#define fail(...) kmm_test_fail(__VA_ARGS__)

static uint64_t rnd(struct model *m, uint64_t n)
{
    return kmm_test_below(&m->rng, n);
}

static size_t pages_of(const struct model *m, size_t size)
{
    return (size + m->ps - 1) >> m->shift;
}

/* ---- patterns -----------------------------------------------------------------
 * Byte off of pattern id is kmm_test_pat(id, off) (tests/support): a prefix
 * carries the same bytes whatever the length written. */

static uint64_t pat_word(uint32_t id, size_t wi) { return kmm_test_pat_word(id, wi); }

static unsigned char pat_byte(uint32_t id, size_t off)
{
    return (unsigned char)(pat_word(id, off >> 3) >> 8 * (off & 7));
}


/* The pattern of `written` bytes at p, restricted to the first len bytes:
 * every byte up to FULL_LIMIT; beyond, in every page the first and last EDGE
 * bytes and the word in its middle, and the last EDGE bytes written. */
static size_t pattern_io(size_t ps, unsigned char *p, uint32_t id, size_t written, size_t len, bool write)
{
    if (written <= FULL_LIMIT)
        return kmm_test_span_io(p, id, 0, len, write);
    size_t bad;
    for (size_t o = 0; o < len; o += ps) {
        size_t pe = o + ps < len ? o + ps : len;
        size_t e1 = o + EDGE < pe ? o + EDGE : pe;
        if ((bad = kmm_test_span_io(p, id, o, e1, write)) != SIZE_MAX)
            return bad;
        size_t mid = o + ps / 2;
        if (mid >= e1 && mid + 8 <= pe && (bad = kmm_test_span_io(p, id, mid, mid + 8, write)) != SIZE_MAX)
            return bad;
        size_t s2 = o + ps - EDGE;
        if (s2 < pe && (bad = kmm_test_span_io(p, id, s2 > e1 ? s2 : e1, pe, write)) != SIZE_MAX)
            return bad;
    }
    size_t t = written - EDGE;
    if (t < len && (bad = kmm_test_span_io(p, id, t, len, write)) != SIZE_MAX)
        return bad;
    return SIZE_MAX;
}

/* A caller page's pattern: its first and last EDGE bytes and the word in its middle. */
static size_t page_io(size_t ps, unsigned char *p, uint32_t id, bool write)
{
    size_t bad;
    if ((bad = kmm_test_span_io(p, id, 0, EDGE, write)) != SIZE_MAX || (bad = kmm_test_span_io(p, id, ps / 2, ps / 2 + 8, write)) != SIZE_MAX)
        return bad;
    return kmm_test_span_io(p, id, ps - EDGE, ps, write);
}

/* Are bytes [from, to) zero? Every byte up to 64 KiB; beyond, the first and
 * last EDGE bytes of every page. */
static size_t zero_check(size_t ps, const unsigned char *p, size_t from, size_t to)
{
    if (to - from <= 65536) {
        for (size_t i = from; i < to; i++)
            if (p[i])
                return i;
        return SIZE_MAX;
    }
    for (size_t o = from; o < to;) {
        size_t pe = (o / ps + 1) * ps;
        if (pe > to)
            pe = to;
        for (size_t i = o; i < pe && i < o + EDGE; i++)
            if (p[i])
                return i;
        for (size_t i = pe - o > EDGE ? pe - EDGE : o; i < pe; i++)
            if (p[i])
                return i;
        o = pe;
    }
    return SIZE_MAX;
}

/* ---- the sorted ranges (areas of the vmalloc space, guard page included) ------- */

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

static uintptr_t range_hi(const struct model *m, const struct area *a)
{
    return (uintptr_t)a->p + ((a->pages + 1) << m->shift);
}

static void sorted_insert(struct model *m, const struct area *a, const char *what)
{
    uintptr_t lo = (uintptr_t)a->p, hi = range_hi(m, a);
    size_t i = lower_bound(m, lo);
    if (i < m->nsorted && m->sorted[i].lo < hi)
        fail("%s returned %p (%zu pages + guard) overlapping live area %u at %#lx..%#lx (guard included)", what,
             (void *)a->p, a->pages, m->sorted[i].id, (unsigned long)m->sorted[i].lo, (unsigned long)m->sorted[i].hi);
    if (i > 0 && m->sorted[i - 1].hi > lo)
        fail("%s returned %p (%zu pages + guard) overlapping live area %u at %#lx..%#lx (guard included)", what,
             (void *)a->p, a->pages, m->sorted[i - 1].id, (unsigned long)m->sorted[i - 1].lo,
             (unsigned long)m->sorted[i - 1].hi);
    if (lo < m->space_lo || hi > m->space_hi)
        fail("%s returned %p (%zu pages + guard): outside the vmalloc space %#lx..%#lx", what, (void *)a->p, a->pages,
             (unsigned long)m->space_lo, (unsigned long)m->space_hi);
    memmove(&m->sorted[i + 1], &m->sorted[i], (m->nsorted - i) * sizeof(m->sorted[0]));
    m->sorted[i] = (struct range){ lo, hi, a->id };
    m->nsorted++;
}

static void sorted_remove(struct model *m, const struct area *a)
{
    size_t i = lower_bound(m, (uintptr_t)a->p);
    if (i >= m->nsorted || m->sorted[i].lo != (uintptr_t)a->p || m->sorted[i].id != a->id)
        fail("model: area %u at %p is not in the sorted ranges", a->id, (void *)a->p);
    memmove(&m->sorted[i], &m->sorted[i + 1], (m->nsorted - i - 1) * sizeof(m->sorted[0]));
    m->nsorted--;
}

/* Index of the range holding address x, or SIZE_MAX. */
static size_t range_at(const struct model *m, uintptr_t x)
{
    size_t i = lower_bound(m, x + 1);
    if (i > 0 && m->sorted[i - 1].hi > x)
        return i - 1;
    return SIZE_MAX;
}

/* Would `pages` pages (guard included) fit at a multiple of align bytes in
 * a range no live area of the model takes? */
static bool model_fits(const struct model *m, size_t pages, size_t align)
{
    if (align < m->ps)
        align = m->ps;
    uintptr_t len = (uintptr_t)pages << m->shift;
    uintptr_t from = m->space_lo;
    for (size_t i = 0; i <= m->nsorted; i++) {
        uintptr_t to = i < m->nsorted ? m->sorted[i].lo : m->space_hi;
        uintptr_t a = (from + align - 1) & ~(uintptr_t)(align - 1);
        if (a >= from && a <= to && to - a >= len)
            return true;
        if (i < m->nsorted)
            from = m->sorted[i].hi;
    }
    return false;
}

/* Free pages (below SLACK_PAGES more than pages_needed?) in the areas the flags accept. */
static size_t free_pages_for(struct model *m, unsigned flags)
{
    struct kmm_page_stats st;
    kmm_page_stats(m->mm, &st);
    unsigned acc = flags & KMM_AREA_MASK ? flags & KMM_AREA_MASK : KMM_AREA_MASK;
    size_t n = st.cached_pages;
    for (unsigned a = 0; a < st.nr_areas; a++)
        if (acc & KMM_AREA(a))
            n += st.area[a].free_pages;
    return n;
}

/* The largest order with a free block in the buddy lists of any area, or -1. */
static int largest_free_order(struct model *m)
{
    struct kmm_page_stats st;
    kmm_page_stats(m->mm, &st);
    int best = -1;
    for (unsigned a = 0; a < st.nr_areas; a++)
        for (int o = KMM_MAX_ORDER; o > best; o--)
            if (st.nr_free[a][o]) {
                best = o;
                break;
            }
    return best;
}

/* Has an area the flags accept a free block of at least this order? */
static bool has_free_block(struct model *m, unsigned flags, unsigned order)
{
    struct kmm_page_stats st;
    kmm_page_stats(m->mm, &st);
    unsigned acc = flags & KMM_AREA_MASK ? flags & KMM_AREA_MASK : KMM_AREA_MASK;
    for (unsigned a = 0; a < st.nr_areas; a++)
        for (unsigned o = order; o <= KMM_MAX_ORDER && (acc & KMM_AREA(a)); o++)
            if (st.nr_free[a][o])
                return true;
    return false;
}

/* ---- the model's bookkeeping ----------------------------------------------------- */

static bool in_space(const struct area *a)
{
    return a->kind != A_KVSMALL;
}

static void account(struct model *m, const struct area *a, int sign)
{
    size_t d = (size_t)(sign < 0 ? -1 : 1);
    switch (a->kind) {
    case A_VMALLOC:
    case A_KVMALLOC:
        m->vm_areas += d;
        m->vm_pages += d * a->pages;
        break;
    case A_VMAP:
        m->vmap_areas += d;
        m->vmap_pages += d * a->pages;
        break;
    default:
        break;
    }
    m->live_bytes += d * (a->kind == A_KVSMALL ? a->size : a->pages << m->shift);
}

static void push_live(struct model *m, const struct area *a, const char *what)
{
    if (m->nlive >= MAX_LIVE)
        fail("model: too many live areas");
    if (in_space(a))
        sorted_insert(m, a, what);
    m->live[m->nlive++] = *a;
    account(m, a, 1);
    if (m->live_bytes > m->max_live_bytes)
        m->max_live_bytes = m->live_bytes;
    if (m->nlive > m->max_nlive)
        m->max_nlive = m->nlive;
}

/* Takes live[i] out of the model (the caller frees it). */
static struct area pop_live(struct model *m, size_t i)
{
    struct area a = m->live[i];
    if (in_space(&a))
        sorted_remove(m, &a);
    account(m, &a, -1);
    m->live[i] = m->live[--m->nlive];
    return a;
}

/* ---- checks of one area ------------------------------------------------------------------- */

static void verify_area(struct model *m, const struct area *a, size_t len, const char *when)
{
    if (a->kind == A_VMAP) {
        for (size_t i = 0; i < a->pages; i++) {
            const struct held *h = &m->held[a->held[i]];
            size_t bad = page_io(m->ps, a->p + (i << m->shift), h->id, false);
            if (bad != SIZE_MAX)
                fail("%s: kmm_vmap area %u at %p, page %zu (caller page phys %#llx, id %u): byte %zu is 0x%02x, "
                     "expected 0x%02x (the page is not the caller's, or was overwritten)",
                     when, a->id, (void *)a->p, i, (unsigned long long)h->phys, h->id, bad,
                     a->p[(i << m->shift) + bad], pat_byte(h->id, bad));
        }
        return;
    }
    size_t bad = pattern_io(m->ps, a->p, a->id, a->size, len, false);
    if (bad != SIZE_MAX) {
        kmm_phys_t ph = a->kind == A_KVSMALL ? kmm_virt_to_phys(m->mm, a->p + bad)
                                               : kmm_vmalloc_to_phys(m->mm, a->p + bad);
        fail("%s: %s %u at %p (size %zu, %zu pages): byte %zu (phys %#llx) is 0x%02x, expected 0x%02x (overlap or "
             "corruption)", when, kind_name[a->kind], a->id, (void *)a->p, a->size, a->pages, bad,
             (unsigned long long)ph, a->p[bad], pat_byte(a->id, bad));
    }
}

static void write_area(struct model *m, const struct area *a)
{
    pattern_io(m->ps, a->p, a->id, a->size, a->size, true);
}

/* The held page's pattern, written through the direct map. */
static void held_write(struct model *m, struct held *h)
{
    h->id = ++m->next_id;
    page_io(m->ps, h->v, h->id, true);
}

static void held_verify(struct model *m, const struct held *h, const char *when)
{
    size_t bad = page_io(m->ps, h->v, h->id, false);
    if (bad != SIZE_MAX)
        fail("%s: held page phys %#llx (id %u): byte %zu is 0x%02x, expected 0x%02x", when,
             (unsigned long long)h->phys, h->id, bad, h->v[bad], pat_byte(h->id, bad));
}

/* Checks a new area (p, size, pages, align, kind, flags filled in), records
 * it and writes its pattern; zero_from: bytes from there up to size must be 0. */
static void adopt(struct model *m, struct area *a, size_t zero_from, const char *what)
{
    uintptr_t x = (uintptr_t)a->p;
    a->id = ++m->next_id;
    if (a->kind == A_KVSMALL) {
        if (kmm_is_vmalloc_addr(m->mm, a->p))
            fail("%s (up to a page) returned %p, in the vmalloc space: expected kmm_malloc memory", what,
                 (void *)a->p);
        if (x & (KMM_MALLOC_ALIGN - 1))
            fail("%s returned %p, not aligned to %d", what, (void *)a->p, KMM_MALLOC_ALIGN);
        size_t usable = kmm_usable_size(m->mm, a->p);
        if (usable < a->size)
            fail("%s returned %p with usable size %zu < %zu", what, (void *)a->p, usable, a->size);
        kmm_phys_t ph = kmm_virt_to_phys(m->mm, a->p), pe = kmm_virt_to_phys(m->mm, a->p + a->size - 1);
        if (ph == KMM_PHYS_NONE || pe != ph + a->size - 1)
            fail("%s returned %p: not physically contiguous (phys %#llx .. %#llx)", what, (void *)a->p,
                 (unsigned long long)ph, (unsigned long long)pe);
    } else {
        size_t align = a->align > m->ps ? a->align : m->ps;
        if (x & (align - 1))
            fail("%s returned %p, not aligned to %zu", what, (void *)a->p, align);
        if (!kmm_is_vmalloc_addr(m->mm, a->p) || !kmm_is_vmalloc_addr(m->mm, a->p + (a->pages << m->shift) - 1))
            fail("%s returned %p (%zu pages): kmm_is_vmalloc_addr says it is not in the vmalloc space", what,
                 (void *)a->p, a->pages);
        if (a->kind != A_VMAP) {
            size_t usable = kmm_usable_size(m->mm, a->p);
            if (usable != a->pages << m->shift)
                fail("%s returned %p: kmm_usable_size %zu, expected %zu pages", what, (void *)a->p, usable, a->pages);
        }
        kmm_phys_t ph = kmm_vmalloc_to_phys(m->mm, a->p);
        kmm_phys_t pl = kmm_vmalloc_to_phys(m->mm, a->p + (a->pages << m->shift) - 1);
        kmm_phys_t pg = kmm_vmalloc_to_phys(m->mm, a->p + (a->pages << m->shift));
        if (ph == KMM_PHYS_NONE || pl == KMM_PHYS_NONE || (pl & (m->ps - 1)) != m->ps - 1)
            fail("%s returned %p (%zu pages): kmm_vmalloc_to_phys of its first / last byte = %#llx / %#llx", what,
                 (void *)a->p, a->pages, (unsigned long long)ph, (unsigned long long)pl);
        if (pg != KMM_PHYS_NONE)
            fail("%s returned %p (%zu pages): its guard page has phys %#llx", what, (void *)a->p, a->pages,
                 (unsigned long long)pg);
        if ((a->flags & KMM_AREA_MASK) == KMM_AREA_LOWEST)
            for (size_t i = 0; i < a->pages; i++) {
                kmm_phys_t pp = kmm_vmalloc_to_phys(m->mm, a->p + (i << m->shift));
                if (pp >= (16ull << 20))
                    fail("%s (area 0 only) returned %p: page %zu has phys %#llx, above 16 MiB", what, (void *)a->p,
                         i, (unsigned long long)pp);
            }
    }
    if (zero_from < a->size) {
        size_t bad = zero_check(m->ps, a->p, zero_from, a->size);
        if (bad != SIZE_MAX)
            fail("%s returned %p: byte %zu is 0x%02x, not zeroed", what, (void *)a->p, bad, a->p[bad]);
    }
    push_live(m, a, what);
    m->pages_allocated += a->pages;
    if (a->kind != A_VMAP)
        write_area(m, a);
}

static void free_area(struct model *m, size_t i, const char *why)
{
    struct area a = pop_live(m, i);
    verify_area(m, &a, a.size, why);
    m->n_free++;
    if (a.kind == A_VMAP) {
        for (size_t k = 0; k < a.pages; k++)
            m->held[a.held[k]].maps--;
        kmm_vunmap(m->mm, a.p);
        m->n_vunmap++;
        /* the caller's pages are untouched (the vmap area never owned them) */
        for (size_t k = 0; k < a.pages; k += 7)
            held_verify(m, &m->held[a.held[k]], "after kmm_vunmap");
        free(a.held);
        return;
    }
    if (a.kind == A_KVSMALL) {
        if (rnd(m, 2))
            kmm_kvfree(m->mm, a.p);
        else
            kmm_free(m->mm, a.p);
        return;
    }
    switch (rnd(m, a.kind == A_KVMALLOC ? 3 : 4)) {
    case 0:
        kmm_free(m->mm, a.p);
        break;
    case 1:
        kmm_kvfree(m->mm, a.p);
        break;
    case 2:
        if (kmm_realloc(m->mm, a.p, 0, 0) != NULL)
            fail("kmm_realloc(vmalloc area %p, 0) did not return NULL", (void *)a.p);
        break;
    default:
        kmm_vfree(m->mm, a.p);
        break;
    }
    /* freed (lazily or not): no longer behind any physical address, unless reused at once (it cannot be) */
    if (kmm_vmalloc_to_phys(m->mm, a.p) != KMM_PHYS_NONE)
        fail("kmm_vmalloc_to_phys(%p) of a freed area = %#llx, expected KMM_PHYS_NONE", (void *)a.p,
             (unsigned long long)kmm_vmalloc_to_phys(m->mm, a.p));
}

/* ---- stats ------------------------------------------------------------------------------------ */

/* The stats against the model; internal areas (the layer's own vmalloc
 * memory, e.g. run arrays) as kmm_vmalloc_info listed them just before. */
static void check_counts(struct model *m, const struct kmm_vmalloc_stats *st, size_t int_areas, size_t int_pages,
                         const char *when)
{
    if (st->areas != m->vm_areas + int_areas || st->pages != m->vm_pages + int_pages ||
        st->vmap_areas != m->vmap_areas || st->vmap_pages != m->vmap_pages)
        fail("%s: kmm_vmalloc_stats: %zu areas of %zu pages, %zu vmap areas of %zu pages; the model has %zu of %zu "
             "(+ %zu internal areas of %zu pages listed by kmm_vmalloc_info), %zu of %zu", when, st->areas, st->pages,
             st->vmap_areas, st->vmap_pages, m->vm_areas, m->vm_pages, int_areas, int_pages, m->vmap_areas,
             m->vmap_pages);
    if (m->strict && (st->lazy_areas || st->lazy_pages))
        fail("%s: strict mode, yet %zu lazy areas of %zu pages", when, st->lazy_areas, st->lazy_pages);
    if (st->space_bytes != m->space_hi - m->space_lo || st->free_bytes > st->space_bytes ||
        st->largest_free_bytes > st->free_bytes || (st->free_bytes && !st->free_ranges) ||
        st->free_ranges * m->ps > st->free_bytes)
        fail("%s: kmm_vmalloc_stats: space %zu, free %zu in %zu ranges, largest %zu: inconsistent", when,
             st->space_bytes, st->free_bytes, st->free_ranges, st->largest_free_bytes);
    if (st->mappings > st->max_mappings)
        fail("%s: %zu mappings, over the limit of %zu", when, st->mappings, st->max_mappings);
}

struct info_collect {
    struct kmm_vmalloc_area_info *e;
    size_t n, cap;
    bool overflow;
};

static void info_cb(void *arg, const struct kmm_vmalloc_area_info *a)
{
    struct info_collect *c = arg;
    if (c->n == c->cap) {
        c->overflow = true;
        return;
    }
    c->e[c->n++] = *a;
}

#define INFO_CAP (MAX_LIVE * 3 + 64)
static struct kmm_vmalloc_area_info *g_info;
static size_t g_ninfo;

/* g_info: every area kmm_vmalloc_info lists, in address order. */
static void collect_info(struct model *m, const char *when)
{
    struct info_collect c = { g_info, 0, INFO_CAP, false };
    kmm_vmalloc_info(m->mm, info_cb, &c);
    if (c.overflow)
        fail("%s: kmm_vmalloc_info lists more than %zu areas; the model has %zu", when, c.cap, m->nsorted);
    g_ninfo = c.n;
}

static const char *const model_tags[] = { "model-tag-a", "model-tag-b", "a-longer-tag-for-the-vmallocinfo-listing" };

/* Is this listed area the layer's own (made by none of the model's calls)? */
static bool is_internal(const struct kmm_vmalloc_area_info *e)
{
    static const char *const public_fn[] = { "kmm_vmalloc", "kmm_vmalloc_aligned", "kmm_kvmalloc", "kmm_vmap",
                                             "kmm_realloc", "kmm_kvfree", "kmm_free" };
    if (strcmp(e->kind, "vmalloc") != 0)
        return false;
    for (size_t i = 0; i < sizeof(public_fn) / sizeof(public_fn[0]); i++)
        if (strcmp(e->tag, public_fn[i]) == 0)
            return false;
    for (size_t i = 0; i < sizeof(model_tags) / sizeof(model_tags[0]); i++)
        if (strcmp(e->tag, model_tags[i]) == 0)
            return false;
    return true;
}

/* kmm_vmalloc_info lists exactly the model's live areas, the lazy ones the
 * stats count and internal areas (run arrays), and the stats agree with it
 * and the model; with full set, the details of every area are compared. */
static void check_listing(struct model *m, bool full, const char *when)
{
    struct kmm_vmalloc_stats st;
    collect_info(m, when);
    kmm_vmalloc_stats(m->mm, &st);
    size_t lazy = 0, lazy_pages = 0, mappings = 1, used = 0, int_areas = 0, int_pages = 0, live = 0;
    for (size_t i = 0; i < g_ninfo; i++) {
        const struct kmm_vmalloc_area_info *e = &g_info[i];
        if (!e->kind || !e->tag || !e->tag[0])
            fail("%s: kmm_vmalloc_info: area at %#lx without a kind or a tag", when, (unsigned long)e->start);
        if (i && e->start < g_info[i - 1].end)
            fail("%s: kmm_vmalloc_info: %#lx..%#lx overlaps %#lx..%#lx before it", when, (unsigned long)e->start,
                 (unsigned long)e->end, (unsigned long)g_info[i - 1].start, (unsigned long)g_info[i - 1].end);
        if (e->start < m->space_lo || e->end > m->space_hi || e->end - e->start != (e->pages + 1) * m->ps)
            fail("%s: kmm_vmalloc_info: %#lx..%#lx with %zu pages: not its pages and a guard page in the space", when,
                 (unsigned long)e->start, (unsigned long)e->end, e->pages);
        if (e->runs < 1 || e->runs > e->pages)
            fail("%s: kmm_vmalloc_info: area at %#lx: %zu runs for %zu pages", when, (unsigned long)e->start,
                 e->runs, e->pages);
        mappings += e->runs + 1;
        used += e->end - e->start;
        size_t ri = range_at(m, e->start);
        bool model_area = ri != SIZE_MAX && m->sorted[ri].lo == e->start;
        if (!model_area && (ri != SIZE_MAX || range_at(m, e->end - 1) != SIZE_MAX))
            fail("%s: kmm_vmalloc_info lists a %s area (\"%s\") %#lx..%#lx overlapping a live area of the model",
                 when, e->kind, e->tag, (unsigned long)e->start, (unsigned long)e->end);
        if (strcmp(e->kind, "lazy-free") == 0) {
            if (m->strict)
                fail("%s: strict mode, yet kmm_vmalloc_info lists a lazily freed area at %#lx", when,
                     (unsigned long)e->start);
            if (model_area)
                fail("%s: kmm_vmalloc_info lists the model's live area at %#lx as lazily freed", when,
                     (unsigned long)e->start);
            lazy++;
            lazy_pages += e->pages;
            continue;
        }
        if (!model_area) {
            if (!is_internal(e))
                fail("%s: kmm_vmalloc_info lists a %s area \"%s\" at %#lx (%zu pages) the model does not have", when,
                     e->kind, e->tag, (unsigned long)e->start, e->pages);
            int_areas++;
            int_pages += e->pages;
            continue;
        }
        live++;
        if (m->sorted[ri].hi != e->end)
            fail("%s: kmm_vmalloc_info lists %#lx..%#lx; the model's area there ends (guard page included) at %#lx",
                 when, (unsigned long)e->start, (unsigned long)e->end, (unsigned long)m->sorted[ri].hi);
        if (!full)
            continue;
        const struct area *a = NULL;
        for (size_t j = 0; j < m->nlive && !a; j++)     /* by id: the sorted range names it */
            if (m->live[j].id == m->sorted[ri].id && in_space(&m->live[j]))
                a = &m->live[j];
        if (!a)
            fail("model: area %u is not live", m->sorted[ri].id);
        const char *kind = a->kind == A_VMAP ? (a->prot & KMM_PROT_WRITE ? "vmap" : "vmap-ro") : "vmalloc";
        if (e->pages != a->pages || e->size != a->size || strcmp(e->kind, kind) != 0)
            fail("%s: kmm_vmalloc_info lists %s %#lx..%#lx, %zu bytes, %zu pages; the model has %s at %p, %zu bytes, "
                 "%zu pages", when, e->kind, (unsigned long)e->start, (unsigned long)e->end, e->size, e->pages, kind,
                 (void *)a->p, a->size, a->pages);
        if (a->tag && strcmp(a->tag, e->tag) != 0)
            fail("%s: area at %p tagged \"%s\", kmm_vmalloc_info says \"%s\"", when, (void *)a->p, a->tag, e->tag);
        if (e->runs > m->max_runs)
            m->max_runs = e->runs;
        if (a->kind != A_VMAP) {
            m->runs_sum += e->runs;
            m->runs_areas++;
        }
    }
    if (live != m->nsorted)
        fail("%s: kmm_vmalloc_info lists %zu of the model's %zu live areas", when, live, m->nsorted);
    if (int_areas > 2 * m->vm_areas + 4)
        fail("%s: %zu internal areas for %zu vmalloc areas", when, int_areas, m->vm_areas);
    if (int_areas > m->max_internal)
        m->max_internal = int_areas;
    check_counts(m, &st, int_areas, int_pages, when);
    if (lazy != st.lazy_areas || lazy_pages != st.lazy_pages)
        fail("%s: kmm_vmalloc_info lists %zu lazy areas of %zu pages; the stats say %zu of %zu", when, lazy,
             lazy_pages, st.lazy_areas, st.lazy_pages);
    if (mappings != st.mappings)
        fail("%s: the areas listed hold %zu runs + areas + 1 mappings; the stats say %zu", when, mappings,
             st.mappings);
    if (used + st.free_bytes != st.space_bytes)
        fail("%s: %zu bytes of areas listed + %zu free != the space's %zu bytes", when, used, st.free_bytes,
             st.space_bytes);
}

static void check_stats(struct model *m, const char *when)
{
    check_listing(m, false, when);
}

static void check_info(struct model *m, const char *when)
{
    check_listing(m, true, when);
}

/* Would `pages` pages (guard included) fit at a multiple of align bytes in a
 * range where kmm_vmalloc_info lists no live area (the model's or internal)? */
static bool listing_fits(struct model *m, size_t pages, size_t align)
{
    collect_info(m, "listing_fits");
    if (align < m->ps)
        align = m->ps;
    uintptr_t len = (uintptr_t)pages << m->shift, from = m->space_lo;
    for (size_t i = 0; i <= g_ninfo; i++) {
        if (i < g_ninfo && strcmp(g_info[i].kind, "lazy-free") == 0)
            continue;                     /* lazily freed addresses count as free */
        uintptr_t to = i < g_ninfo ? g_info[i].start : m->space_hi;
        uintptr_t a = (from + align - 1) & ~(uintptr_t)(align - 1);
        if (a >= from && a <= to && to - a >= len)
            return true;
        if (i < g_ninfo)
            from = g_info[i].end;
    }
    return false;
}

/* Pages where kmm_vmalloc_info lists nothing, from address end on. */
static size_t listing_room_after(struct model *m, uintptr_t end)
{
    collect_info(m, "listing_room_after");
    for (size_t i = 0; i < g_ninfo; i++)
        if (g_info[i].start >= end)
            return (g_info[i].start - end) >> m->shift;
    return (m->space_hi - end) >> m->shift;
}

static void run_check(struct model *m, const char *when)
{
    if (kmm_check(m->mm) != 0)
        fail("kmm_check failed %s", when);
}

/* ---- a NULL ------------------------------------------------------------------------------------- */

/* An allocation of `pages` pages (guard not included) at align returned
 * NULL: errno ENOMEM, nothing changed, and a cause the test can see: the
 * mapping limit refused it, or no range of the space that is free or lazily
 * freed holds the area, its guard page and a run array (the layer may need
 * one, vmalloc'd when memory is fragmented), or the areas asked have too few
 * pages free or held by lazily freed areas (both count as free: vm.h). */
static void alloc_failed(struct model *m, const char *what, size_t pages, size_t align, unsigned flags,
                         const struct kmm_vmalloc_stats *before, int err)
{
    if (err != ENOMEM)
        fail("%s returned NULL with errno %d, expected ENOMEM", what, err);
    check_stats(m, "after a NULL");
    struct kmm_vmalloc_stats st;
    kmm_vmalloc_stats(m->mm, &st);
    size_t run_array = (4 * pages * 16 + m->ps - 1) / m->ps + 2;
    if (st.refused_mappings > before->refused_mappings) {
        m->f_mappings++;
    } else if (!model_fits(m, pages + 1, align) || !listing_fits(m, pages + 1 + run_array, align)) {
        m->f_space++;
    } else if (m->f_pages++ < 24 || m->f_pages % 8 == 0) {   /* kmm_page_stats is slow on fragmented memory */
        size_t avail = free_pages_for(m, flags);
        if (avail + st.lazy_pages >= pages + run_array + SLACK_PAGES)
            fail("%s returned NULL, though the space has room, %zu pages are free in the areas asked (0x%x; the "
                 "largest free block is of order %d), %zu more held by lazily freed areas, and no mapping was "
                 "refused", what, avail, flags & KMM_AREA_MASK, largest_free_order(m), st.lazy_pages);
    }
    if (m->failures_checked < 40 || m->failures_checked % 16 == 0)
        run_check(m, "after a NULL");
    m->failures_checked++;
}

/* ---- operations ----------------------------------------------------------------------------------- */

/* Sizes: mostly up to 64 pages; in a pressure phase mostly 1 .. 16 MiB, so
 * that memory (or the space) runs out within a few dozen allocations. */
static size_t random_size(struct model *m)
{
    uint64_t r = rnd(m, 1000);
    size_t ps = m->ps;
    if (m->pressure && r < 700)
        return ((size_t)1 << 20) + (size_t)rnd(m, 15u << 20);
    if (r < 330)
        return 1 + (size_t)rnd(m, ps);
    if (r < 630)
        return 1 + (size_t)rnd(m, 8 * ps);
    if (r < 880)
        return 1 + (size_t)rnd(m, 64 * ps);
    if (r < 995)
        return 1 + (size_t)rnd(m, 256 * ps);
    if (r < 999)
        return 1 + (size_t)rnd(m, (size_t)16 << 20);     /* up to 16 MiB */
    return (size_t)(48 + rnd(m, 48)) << 20;             /* 48 .. 96 MiB */
}

static unsigned random_flags(struct model *m, size_t *size)
{
    unsigned flags = 0;
    uint64_t r = rnd(m, 100);
    if (r < 4) {
        flags |= KMM_AREA_LOWEST;
        if (*size > 16 * m->ps)
            *size = 1 + (size_t)rnd(m, 16 * m->ps);
    } else if (r < 8) {
        flags |= KMM_AREA_ANY;
    }
    if (rnd(m, 8) == 0)
        flags |= KMM_ZERO;
    return flags;
}

static void op_vmalloc(struct model *m, int which)
{
    struct area a;
    memset(&a, 0, sizeof(a));
    a.size = random_size(m);
    unsigned flags = random_flags(m, &a.size);
    a.flags = flags & KMM_AREA_MASK;
    char what[128];
    struct kmm_vmalloc_stats before;
    kmm_vmalloc_stats(m->mm, &before);
    errno = 0;
    if (which == 1) {
        unsigned r = (unsigned)rnd(m, 23);                 /* 1 byte .. 4 MiB */
        a.align = (size_t)1 << r;
        a.kind = A_VMALLOC;
        a.p = kmm_vmalloc_aligned(m->mm, a.size, a.align, flags);
        snprintf(what, sizeof(what), "kmm_vmalloc_aligned(%zu, %zu, 0x%x)", a.size, a.align, flags);
    } else if (which == 2) {
        if (rnd(m, 2))
            a.size = 1 + (size_t)rnd(m, 3 * m->ps);         /* around the rule */
        a.kind = a.size <= m->ps ? A_KVSMALL : A_KVMALLOC;
        a.p = kmm_kvmalloc(m->mm, a.size, flags);
        snprintf(what, sizeof(what), "kmm_kvmalloc(%zu, 0x%x)", a.size, flags);
    } else {
        a.kind = A_VMALLOC;
        a.p = kmm_vmalloc(m->mm, a.size, flags);
        snprintf(what, sizeof(what), "kmm_vmalloc(%zu, 0x%x)", a.size, flags);
    }
    int err = errno;
    snprintf(g_last, sizeof g_last, "op %lu %s = %p errno %d", m->op, what, (void *)a.p, err);
    a.pages = a.kind == A_KVSMALL ? 0 : pages_of(m, a.size);
    if (!a.p) {
        if (a.kind == A_KVSMALL) {
            /* neither kmm_malloc (a slab of up to 8 contiguous pages) nor a one-page vmalloc area */
            if (err != ENOMEM || has_free_block(m, flags, 3))
                fail("%s returned NULL (errno %d), though the areas asked have free blocks of 8 pages", what, err);
            m->f_kv_frag++;
            return;
        }
        alloc_failed(m, what, a.pages, a.align, flags, &before, err);
        return;
    }
    if (m->nlive >= MAX_LIVE - 1) {     /* the model is full: give it back */
        if (a.kind == A_KVSMALL)
            kmm_free(m->mm, a.p);
        else
            kmm_vfree(m->mm, a.p);
        return;
    }
    if (a.kind == A_KVSMALL && kmm_is_vmalloc_addr(m->mm, a.p)) {
        /* up to a page: a one-page vmalloc area when kmm_malloc fails (its slabs may need 8 contiguous pages) */
        if (has_free_block(m, flags, 3))
            fail("%s returned vmalloc memory %p, though the areas asked have free blocks of 8 pages", what,
                 (void *)a.p);
        a.kind = A_KVMALLOC;
        a.pages = 1;
        m->n_kv_fallback++;
    }
    adopt(m, &a, flags & KMM_ZERO ? 0 : SIZE_MAX, what);
    if (which == 1)
        m->n_aligned++;
    else if (which == 2 && a.kind == A_KVSMALL)
        m->n_kv_small++;
    else if (which == 2)
        m->n_kv_large++;
    else
        m->n_vmalloc++;
}

/* A random live area of the vmalloc space owning its pages, or SIZE_MAX. */
static size_t pick_vmalloc(struct model *m)
{
    for (int t = 0; t < 8 && m->nlive; t++) {
        size_t i = (size_t)rnd(m, m->nlive);
        if (m->live[i].kind == A_VMALLOC || m->live[i].kind == A_KVMALLOC)
            return i;
    }
    return SIZE_MAX;
}

static void op_realloc(struct model *m)
{
    size_t i = pick_vmalloc(m);
    if (i == SIZE_MAX)
        return;
    struct area a = m->live[i];
    size_t size;
    uint64_t r = rnd(m, 10);
    if (r < 4)
        size = 1 + (size_t)rnd(m, a.size);                                 /* shrink */
    else if (r < 8)
        size = a.size + 1 + (size_t)rnd(m, a.size < 64 * m->ps ? 8 * m->ps : a.size / 2);   /* grow */
    else
        size = random_size(m);
    unsigned flags = rnd(m, 4) == 0 ? KMM_ZERO : 0;
    size_t want = pages_of(m, size);
    /* is the range after the area (guard included) free by the model? */
    uintptr_t end = range_hi(m, &a), room_to = m->space_hi;
    size_t ri = lower_bound(m, end);
    if (ri < m->nsorted)
        room_to = m->sorted[ri].lo;
    bool room = want <= a.pages || ((room_to - end) >> m->shift) >= want - a.pages;
    char what[160];
    snprintf(what, sizeof(what), "kmm_realloc(%s %p [%zu bytes, %zu pages], %zu, 0x%x)", kind_name[a.kind],
             (void *)a.p, a.size, a.pages, size, flags);
    verify_area(m, &a, a.size, "before kmm_realloc");
    struct kmm_vmalloc_stats before;
    kmm_vmalloc_stats(m->mm, &before);
    errno = 0;
    unsigned char *p = kmm_realloc(m->mm, a.p, size, flags);
    int err = errno;
    snprintf(g_last, sizeof g_last, "op %lu %s = %p errno %d", m->op, what, (void *)p, err);
    m->n_realloc++;
    if (!p) {
        m->f_realloc++;
        alloc_failed(m, what, want, 0, 0, &before, err);
        verify_area(m, &a, a.size, "after a failed kmm_realloc");
        if (kmm_usable_size(m->mm, a.p) != a.pages << m->shift)
            fail("%s failed and changed the usable size to %zu", what, kmm_usable_size(m->mm, a.p));
        return;
    }
    if (p == a.p) {
        m->n_realloc_inplace++;
        if (!room)
            fail("%s grew in place to %zu pages, though live area %u begins %zu pages after its guard page", what,
                 want, m->sorted[ri].id, (size_t)((room_to - end) >> m->shift));
    } else {
        m->n_realloc_moved++;
        size_t avail = want <= a.pages || (m->strict && room) ? free_pages_for(m, 0) : 0;
        if (want <= a.pages && avail > SLACK_PAGES)
            fail("%s moved the area to %p to shrink it (%zu free pages)", what, (void *)p, avail);
        if (m->strict && room && avail > SLACK_PAGES) {   /* the pages freed made up for the pages taken */
            struct kmm_vmalloc_stats st;
            kmm_vmalloc_stats(m->mm, &st);
            /* the old range is free now: was the range after it free too (no internal area there either)? */
            size_t after = listing_room_after(m, end);
            if (st.refused_mappings == before.refused_mappings && after >= want - a.pages &&
                (after > (room_to - end) >> m->shift || after == (room_to - end) >> m->shift))
                fail("%s moved the area to %p, though (strict mode) the %zu pages after its guard page are free",
                     what, (void *)p, after);
        }
    }
    struct area n = pop_live(m, i);
    size_t keep = a.size < size ? a.size : size;
    size_t bad = pattern_io(m->ps, p, a.id, a.size, keep, false);
    if (bad != SIZE_MAX)
        fail("%s = %p: byte %zu of the kept %zu is 0x%02x, expected 0x%02x", what, (void *)p, bad, keep, p[bad],
             pat_byte(a.id, bad));
    n.p = p;
    n.size = size;
    n.pages = want;
    n.flags = flags & KMM_AREA_MASK;   /* the pages added come from the areas the realloc accepts */
    if (p != a.p) {
        n.align = 0;
        n.tag = NULL;
    }
    adopt(m, &n, flags & KMM_ZERO ? a.size : SIZE_MAX, what);
}

static void op_free(struct model *m)
{
    if (!m->nlive)
        return;
    free_area(m, (size_t)rnd(m, m->nlive), "before the free");
}

/* ---- caller pages -------------------------------------------------------------------------------------- */

static size_t held_slot(struct model *m)
{
    for (int t = 0; t < 4 && m->held_slots; t++) {
        size_t s = (size_t)rnd(m, m->held_slots);
        if (!m->held[s].v)
            return s;
    }
    if (m->held_slots < MAX_HELD)
        return m->held_slots++;
    for (size_t s = 0; s < m->held_slots; s++)
        if (!m->held[s].v)
            return s;
    return SIZE_MAX;
}

/* Takes 2n single pages and gives every other one back: n held, n holes. */
static void op_hold(struct model *m)
{
    size_t n = rnd(m, 6) ? 16 + (size_t)rnd(m, 1024) : (MAX_HELD - m->nheld) / 2;   /* sometimes a lot */
    if (m->nheld + n > MAX_HELD || n == 0)
        return;
    void **tmp = malloc(2 * n * sizeof(*tmp));
    if (!tmp)
        fail("out of memory");
    size_t got = 0;
    for (; got < 2 * n; got++)
        if (!(tmp[got] = kmm_alloc_pages(m->mm, 0, 0)))
            break;
    for (size_t k = 0; k < got; k++) {
        if (k % 2 == 0) {
            kmm_free_pages(m->mm, tmp[k]);
            continue;
        }
        size_t s = held_slot(m);
        if (s == SIZE_MAX) {
            kmm_free_pages(m->mm, tmp[k]);
            continue;
        }
        struct held *h = &m->held[s];
        h->v = tmp[k];
        h->phys = kmm_virt_to_phys(m->mm, tmp[k]);
        h->maps = 0;
        held_write(m, h);
        m->nheld++;
    }
    free(tmp);
    if (m->nheld > m->max_held)
        m->max_held = m->nheld;
    m->n_hold++;
}

static void op_release(struct model *m)
{
    size_t n = 16 + (size_t)rnd(m, 2048);
    for (size_t k = 0; k < n && m->nheld; k++) {
        size_t s = (size_t)rnd(m, m->held_slots);
        struct held *h = &m->held[s];
        if (!h->v || h->maps)
            continue;
        held_verify(m, h, "before kmm_free_pages of a held page");
        kmm_free_pages(m->mm, h->v);
        h->v = NULL;
        m->nheld--;
    }
    m->n_release++;
}

static void op_vmap(struct model *m)
{
    if (m->nheld < 4) {
        op_hold(m);
        return;
    }
    size_t n = 1 + (size_t)rnd(m, MAX_VMAP);
    if (n > m->nheld)
        n = m->nheld;
    uint32_t *hp = malloc(n * sizeof(*hp));
    kmm_phys_t *phys = malloc(n * sizeof(*phys));
    if (!hp || !phys)
        fail("out of memory");
    bool run = rnd(m, 4) == 0;     /* consecutive slots: often physically close */
    size_t s = (size_t)rnd(m, m->held_slots);
    for (size_t k = 0; k < n; k++) {
        if (!run)
            s = (size_t)rnd(m, m->held_slots);
        while (!m->held[s].v)
            s = (s + 1) % m->held_slots;
        hp[k] = (uint32_t)s;
        phys[k] = m->held[s].phys;
        s = (s + 1) % m->held_slots;
    }
    if (n > 1 && rnd(m, 8) == 0) {     /* one page twice */
        size_t k = 1 + (size_t)rnd(m, n - 1);
        hp[k] = hp[0];
        phys[k] = phys[0];
    }
    unsigned prot = rnd(m, 4) == 0 ? KMM_PROT_READ : KMM_PROT_READ | KMM_PROT_WRITE;
    char what[96];
    snprintf(what, sizeof(what), "kmm_vmap(%zu pages, prot %u)", n, prot);
    struct kmm_vmalloc_stats before;
    kmm_vmalloc_stats(m->mm, &before);
    errno = 0;
    unsigned char *p = kmm_vmap(m->mm, phys, n, prot);
    int err = errno;
    snprintf(g_last, sizeof g_last, "op %lu %s = %p errno %d", m->op, what, (void *)p, err);
    free(phys);
    if (!p) {
        free(hp);
        alloc_failed(m, what, n, 0, 0, &before, err);
        return;
    }
    if (m->nlive >= MAX_LIVE - 1) {
        kmm_vunmap(m->mm, p);
        free(hp);
        return;
    }
    struct area a;
    memset(&a, 0, sizeof(a));
    a.p = p;
    a.size = n << m->shift;
    a.pages = n;
    a.kind = A_VMAP;
    a.prot = (uint8_t)prot;
    a.held = hp;
    for (size_t k = 0; k < n; k++) {
        m->held[hp[k]].maps++;
        kmm_phys_t got = kmm_vmalloc_to_phys(m->mm, p + (k << m->shift) + (k * 8 % m->ps));
        if (got != m->held[hp[k]].phys + (k * 8 % m->ps))
            fail("%s = %p: kmm_vmalloc_to_phys of page %zu = %#llx, expected the caller's %#llx", what, (void *)p, k,
                 (unsigned long long)got, (unsigned long long)m->held[hp[k]].phys);
    }
    adopt(m, &a, SIZE_MAX, what);
    verify_area(m, &a, a.size, "a new kmm_vmap area");
    /* write through it; the direct map sees it */
    if (prot & KMM_PROT_WRITE) {
        size_t k = (size_t)rnd(m, n);
        struct held *h = &m->held[hp[k]];
        h->id = ++m->next_id;
        page_io(m->ps, p + (k << m->shift), h->id, true);
        held_verify(m, h, "a held page written through a kmm_vmap area");
    }
    m->n_vmap++;
}

/* ---- lookups --------------------------------------------------------------------------------------------- */

static void op_phys(struct model *m)
{
    m->n_phys++;
    if (m->nsorted && rnd(m, 4)) {
        size_t i = (size_t)rnd(m, m->nlive);
        const struct area *a = &m->live[i];
        if (!in_space(a))
            return;
        for (int t = 0; t < 6; t++) {
            size_t off = (size_t)rnd(m, a->pages << m->shift);
            unsigned char *x = a->p + off;
            kmm_phys_t ph = kmm_vmalloc_to_phys(m->mm, x);
            if (ph == KMM_PHYS_NONE || (ph & (m->ps - 1)) != (off & (m->ps - 1)))
                fail("kmm_vmalloc_to_phys(%p, byte %zu of %s %u at %p) = %#llx", (void *)x, off, kind_name[a->kind],
                     a->id, (void *)a->p, (unsigned long long)ph);
            if (a->kind == A_VMAP) {
                kmm_phys_t want = m->held[a->held[off >> m->shift]].phys + (off & (m->ps - 1));
                if (ph != want)
                    fail("kmm_vmalloc_to_phys(%p) = %#llx; the caller mapped %#llx there", (void *)x,
                         (unsigned long long)ph, (unsigned long long)want);
                continue;
            }
            /* the frame is the one behind the address: a byte written through the direct map shows */
            unsigned char *d = kmm_phys_to_virt(m->mm, ph);
            if (!d)
                fail("kmm_vmalloc_to_phys(%p) = %#llx, outside memory", (void *)x, (unsigned long long)ph);
            unsigned char old = *x;
            if (*d != old)
                fail("kmm_vmalloc_to_phys(%p) = %#llx: the direct map holds 0x%02x there, the area 0x%02x", (void *)x,
                     (unsigned long long)ph, *d, old);
            *d = (unsigned char)(old ^ 0xa5);
            if (*x != (unsigned char)(old ^ 0xa5))
                fail("kmm_vmalloc_to_phys(%p) = %#llx: a byte written at its direct-map address does not show", (void *)x,
                     (unsigned long long)ph);
            *d = old;
        }
        uintptr_t guard = (uintptr_t)a->p + (a->pages << m->shift);
        if (kmm_vmalloc_to_phys(m->mm, (void *)(guard + (size_t)rnd(m, m->ps))) != KMM_PHYS_NONE)
            fail("kmm_vmalloc_to_phys of the guard page of %s %u at %p is not KMM_PHYS_NONE", kind_name[a->kind],
                 a->id, (void *)a->p);
        return;
    }
    /* an address no live area holds */
    uintptr_t x = m->space_lo + ((uintptr_t)rnd(m, (m->space_hi - m->space_lo) >> m->shift) << m->shift);
    if (rnd(m, 2) && m->nsorted)
        x = m->sorted[rnd(m, m->nsorted)].hi + (uintptr_t)rnd(m, 4 * m->ps);   /* just past an area */
    if (x < m->space_hi && range_at(m, x) == SIZE_MAX) {
        kmm_phys_t ph = kmm_vmalloc_to_phys(m->mm, (void *)x);
        bool internal = false;   /* the layer's own areas (run arrays) are live too */
        if (ph != KMM_PHYS_NONE) {
            collect_info(m, "op_phys");
            for (size_t i = 0; i < g_ninfo; i++)
                if (x >= g_info[i].start && x < g_info[i].start + (g_info[i].pages << m->shift) &&
                    is_internal(&g_info[i]))
                    internal = true;
        }
        if (ph != KMM_PHYS_NONE && !internal)
            fail("kmm_vmalloc_to_phys(%#lx), an address of no live area, = %#llx", (unsigned long)x,
                 (unsigned long long)ph);
    }
    if (kmm_vmalloc_to_phys(m->mm, (void *)(m->space_hi + m->ps)) != KMM_PHYS_NONE ||
        kmm_vmalloc_to_phys(m->mm, (void *)(m->space_lo - 1)) != KMM_PHYS_NONE)
        fail("kmm_vmalloc_to_phys of an address outside the vmalloc space is not KMM_PHYS_NONE");
}

struct find_one {
    uintptr_t start;
    size_t runs;
    bool found;
};

static void find_cb(void *arg, const struct kmm_vmalloc_area_info *a)
{
    struct find_one *f = arg;
    if (a->start == f->start && strcmp(a->kind, "lazy-free") != 0) {
        f->runs = a->runs;
        f->found = true;
    }
}

/* The physically contiguous runs, found page by page, are the area's runs. */
static void op_runs(struct model *m)
{
    size_t i = pick_vmalloc(m);
    if (i == SIZE_MAX || m->live[i].pages > 2048)
        return;
    const struct area *a = &m->live[i];
    size_t runs = 0;
    kmm_phys_t prev = KMM_PHYS_NONE;
    for (size_t k = 0; k < a->pages; k++) {
        kmm_phys_t ph = kmm_vmalloc_to_phys(m->mm, a->p + (k << m->shift));
        if (ph == KMM_PHYS_NONE)
            fail("kmm_vmalloc_to_phys of page %zu of %s %u at %p = KMM_PHYS_NONE", k, kind_name[a->kind], a->id,
                 (void *)a->p);
        if (prev == KMM_PHYS_NONE || ph != prev + m->ps)
            runs++;
        prev = ph;
    }
    struct find_one f = { (uintptr_t)a->p, 0, false };
    kmm_vmalloc_info(m->mm, find_cb, &f);
    if (!f.found)
        fail("kmm_vmalloc_info does not list %s %u at %p", kind_name[a->kind], a->id, (void *)a->p);
    if (f.runs != runs)
        fail("%s %u at %p (%zu pages): %zu physically contiguous runs page by page, kmm_vmalloc_info says %zu",
             kind_name[a->kind], a->id, (void *)a->p, a->pages, runs, f.runs);
    m->n_runs_checked++;
}

static void op_tag(struct model *m)
{
    if (!m->nlive)
        return;
    size_t i = (size_t)rnd(m, m->nlive);
    if (!in_space(&m->live[i]))
        return;
    const char *t = model_tags[rnd(m, 3)];
    kmm_vmalloc_set_tag(m->mm, m->live[i].p, t);
    m->live[i].tag = t;
    m->n_tag++;
}

static void op_purge(struct model *m)
{
    struct kmm_vmalloc_stats st;
    kmm_vmalloc_stats(m->mm, &st);
    size_t got = kmm_vmalloc_purge(m->mm);
    if (got != st.lazy_pages)
        fail("kmm_vmalloc_purge returned %zu; %zu pages were lazily freed", got, st.lazy_pages);
    kmm_vmalloc_stats(m->mm, &st);
    if (st.lazy_areas || st.lazy_pages)
        fail("after kmm_vmalloc_purge, %zu lazy areas of %zu pages", st.lazy_areas, st.lazy_pages);
    check_stats(m, "after kmm_vmalloc_purge");
    m->n_purge++;
}

static void op_drain(struct model *m)
{
    kmm_drain(m->mm);
    struct kmm_vmalloc_stats st;
    kmm_vmalloc_stats(m->mm, &st);
    if (st.lazy_areas || st.lazy_pages)
        fail("after kmm_drain, %zu lazy areas of %zu pages", st.lazy_areas, st.lazy_pages);
    check_stats(m, "after kmm_drain");
    m->n_drain++;
}

/* ---- bad arguments ---------------------------------------------------------------------------------------- */

static void corner_cases(struct model *m)
{
    struct kmm *mm = m->mm;
    void *p;
    fprintf(stderr, "vm_model: reports of bad arguments expected below\n");
    struct {
        size_t size, align;
        unsigned flags;
        int err;
    } bad[] = {
        { 0, 0, 0, EINVAL },
        { 100, 3 * m->ps, 0, EINVAL },
        { 100, 24, 0, EINVAL },
        { 100, 0, 1u << 20, EINVAL },
        { SIZE_MAX, 0, 0, ENOMEM },
        { SIZE_MAX - m->ps + 2, 0, 0, ENOMEM },
        { (size_t)(m->space_hi - m->space_lo), 0, 0, ENOMEM },
        { (size_t)(m->space_hi - m->space_lo) + 1, 0, 0, ENOMEM },
        { m->ps, (size_t)(m->space_hi - m->space_lo) * 2, 0, ENOMEM },
        { m->ps, (size_t)1 << (sizeof(size_t) * 8 - 1), 0, ENOMEM },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        errno = 0;
        p = bad[i].align ? kmm_vmalloc_aligned(mm, bad[i].size, bad[i].align, bad[i].flags)
                         : kmm_vmalloc(mm, bad[i].size, bad[i].flags);
        if (p || errno != bad[i].err)
            fail("kmm_vmalloc%s(%zu, %zu, 0x%x) = %p, errno %d (expected NULL, %d)", bad[i].align ? "_aligned" : "",
                 bad[i].size, bad[i].align, bad[i].flags, p, errno, bad[i].err);
    }
    errno = 0;
    if ((p = kmm_kvmalloc(mm, SIZE_MAX, 0)) != NULL || (errno != ENOMEM && errno != EINVAL))
        fail("kmm_kvmalloc(SIZE_MAX) = %p, errno %d", p, errno);
    /* kmm_vmap: no pages, bad protections, frames not of this memory or misaligned */
    void *page = kmm_alloc_pages(mm, 0, 0);
    if (!page)
        fail("kmm_alloc_pages failed");
    kmm_phys_t ok = kmm_virt_to_phys(mm, page);
    kmm_phys_t frames[3] = { ok, ok + 1, ok };
    struct kmm_page_stats ps;
    kmm_page_stats(mm, &ps);
    kmm_phys_t beyond[1] = { (kmm_phys_t)ps.total_pages << m->shift << 1 };
    struct {
        const kmm_phys_t *pages;
        size_t n;
        unsigned prot;
    } vb[] = {
        { frames, 0, KMM_PROT_READ },
        { NULL, 1, KMM_PROT_READ },
        { frames, 1, 0 },
        { frames, 1, KMM_PROT_WRITE },
        { frames, 1, 8 | KMM_PROT_READ },
        { frames, 2, KMM_PROT_READ },
        { beyond, 1, KMM_PROT_READ },
    };
    for (size_t i = 0; i < sizeof(vb) / sizeof(vb[0]); i++) {
        errno = 0;
        if ((p = kmm_vmap(mm, vb[i].pages, vb[i].n, vb[i].prot)) != NULL || errno != EINVAL)
            fail("kmm_vmap case %zu (%zu pages, prot %u) = %p, errno %d (expected NULL, EINVAL)", i, vb[i].n,
                 vb[i].prot, p, errno);
    }
    fprintf(stderr, "vm_model: end of expected reports\n");
    /* a page mapped twice in one area; read-only */
    unsigned char *v = kmm_vmap(mm, (kmm_phys_t[]){ ok, ok }, 2, KMM_PROT_READ);
    if (!v)
        fail("kmm_vmap of one page twice failed (errno %d)", errno);
    memset(page, 0x5c, m->ps);
    if (v[0] != 0x5c || v[m->ps + 17] != 0x5c)
        fail("kmm_vmap of one page twice does not show it");
    kmm_vunmap(mm, v);
    kmm_free_pages(mm, page);
    kmm_vfree(mm, NULL);
    kmm_vunmap(mm, NULL);
    kmm_kvfree(mm, NULL);
    /* small alignments mean a page */
    for (size_t a = 1; a <= m->ps; a *= 4) {
        p = kmm_vmalloc_aligned(mm, 10, a, 0);
        if (!p || ((uintptr_t)p & (m->ps - 1)))
            fail("kmm_vmalloc_aligned(10, %zu) = %p", a, p);
        kmm_vfree(mm, p);
    }
    /* the kvmalloc rule's edge */
    p = kmm_kvmalloc(mm, m->ps, 0);
    if (!p || kmm_is_vmalloc_addr(mm, p))
        fail("kmm_kvmalloc(one page) = %p: expected kmm_malloc memory", p);
    kmm_kvfree(mm, p);
    p = kmm_kvmalloc(mm, m->ps + 1, 0);
    if (!p || !kmm_is_vmalloc_addr(mm, p) || kmm_usable_size(mm, p) != 2 * m->ps)
        fail("kmm_kvmalloc(one page + 1) = %p: expected a vmalloc area of 2 pages", p);
    kmm_kvfree(mm, p);
    if (kmm_is_vmalloc_addr(mm, (void *)(m->space_lo - 1)) || kmm_is_vmalloc_addr(mm, (void *)m->space_hi) ||
        !kmm_is_vmalloc_addr(mm, (void *)(m->space_hi - 1)))
        fail("kmm_is_vmalloc_addr is wrong at the edges of the space %#lx..%#lx", (unsigned long)m->space_lo,
             (unsigned long)m->space_hi);
    kmm_drain(mm);
    run_check(m, "after the corner cases");
}

/* ---- one configuration ---------------------------------------------------------------------------------------- */

static void run_config(const struct config *cfg, unsigned long nops, uint64_t seed)
{
    struct model *m = calloc(1, sizeof(*m));
    if (!m)
        fail("out of memory");
    g_model = m;
    m->cfg = cfg;
    m->rng = seed;
    m->ps = cfg->page_size;
    m->shift = (unsigned)__builtin_ctzll(cfg->page_size);
    m->strict = cfg->vm_flags & KMM_VMALLOC_STRICT;
    struct kmm_config kc = { .page_size = cfg->page_size, .mem_size = cfg->mem_size,
                             .vmalloc_size = cfg->vmalloc_size, .vmalloc_max_mappings = cfg->max_mappings,
                             .vmalloc_flags = cfg->vm_flags };
    m->mm = kmm_create(&kc);
    if (!m->mm)
        fail("kmm_create failed (errno %d)", errno);
    m->live = calloc(MAX_LIVE, sizeof(*m->live));
    m->sorted = calloc(MAX_LIVE, sizeof(*m->sorted));
    m->held = calloc(MAX_HELD, sizeof(*m->held));
    if (!m->live || !m->sorted || !m->held)
        fail("out of memory");

    /* the first area of a fresh memory system starts the space */
    struct kmm_vmalloc_stats st;
    kmm_vmalloc_stats(m->mm, &st);
    if (st.space_bytes || st.areas)
        fail("kmm_vmalloc_stats before the first use: space %zu, %zu areas", st.space_bytes, st.areas);
    void *first = kmm_vmalloc(m->mm, 1, 0);
    if (!first)
        fail("the first kmm_vmalloc failed (errno %d)", errno);
    kmm_vmalloc_stats(m->mm, &st);
    m->space_lo = (uintptr_t)first;
    m->space_hi = m->space_lo + st.space_bytes;
    uint64_t want_space = cfg->vmalloc_size ? cfg->vmalloc_size
                                            : (2 * cfg->mem_size > (1ull << 30) ? 2 * cfg->mem_size : 1ull << 30);
    if (st.space_bytes != want_space || kmm_is_vmalloc_addr(m->mm, (void *)(m->space_lo - 1)))
        fail("the vmalloc space: %zu bytes, first area at %p (in it: %d); expected %llu bytes starting there",
             st.space_bytes, first, kmm_is_vmalloc_addr(m->mm, (void *)(m->space_lo - 1)),
             (unsigned long long)want_space);
    if (cfg->max_mappings && st.max_mappings != cfg->max_mappings)
        fail("max_mappings %zu, configured %zu", st.max_mappings, cfg->max_mappings);
    kmm_vfree(m->mm, first);
    kmm_drain(m->mm);
    struct kmm_page_stats pst;
    kmm_page_stats(m->mm, &pst);
    m->base_free = pst.free_pages;
    corner_cases(m);
    m->target_bytes = 16u << 20;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);

    for (m->op = 1; m->op <= nops; m->op++) {
        if (m->op >= m->phase_end || m->op == nops * 3 / 10 || m->op == nops * 7 / 10) {
            /* a new phase: the live bytes aimed at; at 30% and 70%, more than memory or space */
            uint64_t r = rnd(m, 100);
            m->pressure = m->op == nops * 3 / 10 || m->op == nops * 7 / 10;
            m->target_bytes = m->pressure ? (size_t)768 << 20
                              : r < 55 ? ((size_t)2 << 20) + (size_t)rnd(m, 22u << 20) : (size_t)rnd(m, 128u << 20);
            m->phase_end = m->op + (m->pressure ? 50 + rnd(m, 50) : 200 + rnd(m, 600));
            m->n_phases += m->pressure;
        }
        unsigned p_free = m->pressure ? 8 : m->live_bytes > m->target_bytes ? 60 : 28;
        if (m->nlive >= MAX_LIVE - 2)
            p_free = 100;
        uint64_t r = rnd(m, 100);
        if (r < p_free) {
            op_free(m);
        } else if (m->pressure && r < 85) {
            op_vmalloc(m, (int)rnd(m, 3));
        } else {
            r = rnd(m, 1000);
            if (r < 300)
                op_vmalloc(m, 0);
            else if (r < 420)
                op_vmalloc(m, 1);
            else if (r < 560)
                op_vmalloc(m, 2);
            else if (r < 740)
                op_realloc(m);
            else if (r < 830)
                op_vmap(m);
            else if (r < 900)
                op_phys(m);
            else if (r < 920)
                op_runs(m);
            else if (r < 935)
                op_tag(m);
            else if (r < 955)
                op_hold(m);
            else if (r < 975)
                op_release(m);
            else if (r < 992)
                op_purge(m);
            else
                op_drain(m);
        }
        if (m->op % STATS_EVERY == 0 || g_every_op)
            check_stats(m, "every few operations");
        if (m->op % INFO_EVERY == 0)
            check_info(m, "every few hundred operations");
        if (m->op % CHECK_EVERY == 0)
            run_check(m, "every few hundred operations");
    }

    /* everything back */
    check_info(m, "at the end");
    run_check(m, "at the end, before the frees");
    while (m->nlive)
        free_area(m, m->nlive - 1, "at the end");
    for (size_t s = 0; s < m->held_slots; s++)
        if (m->held[s].v) {
            held_verify(m, &m->held[s], "at the end");
            kmm_free_pages(m->mm, m->held[s].v);
            m->held[s].v = NULL;
        }
    kmm_vmalloc_purge(m->mm);
    kmm_drain(m->mm);
    run_check(m, "at the end, everything freed");
    check_info(m, "at the end, everything freed");
    kmm_vmalloc_stats(m->mm, &st);
    if (st.areas || st.pages || st.vmap_areas || st.vmap_pages || st.lazy_areas || st.lazy_pages ||
        st.mappings != 1 || st.free_ranges != 1 || st.free_bytes != st.space_bytes ||
        st.largest_free_bytes != st.space_bytes)
        fail("at the end, everything freed: %zu areas (%zu pages), %zu vmap areas (%zu pages), %zu lazy (%zu "
             "pages), %zu mappings, %zu free ranges, %zu of %zu bytes free",
             st.areas, st.pages, st.vmap_areas, st.vmap_pages, st.lazy_areas, st.lazy_pages, st.mappings,
             st.free_ranges, st.free_bytes, st.space_bytes);
    kmm_page_stats(m->mm, &pst);
    if (pst.free_pages != m->base_free) {
        static struct kmm_cache_stats cst[256];
        size_t nc = kmm_slab_stats(m->mm, cst, 256);
        for (size_t c = 0; c < nc && c < 256; c++)
            fprintf(stderr, "  cache %s: %zu active, %zu cached, %zu slabs (%zu empty) of %zu pages\n", cst[c].name,
                    cst[c].active_objects, cst[c].cached_objects, cst[c].slabs, cst[c].empty_slabs,
                    cst[c].pages_per_slab);
        fail("at the end, everything freed, purged and drained, %zu pages are free; %zu were after the first use",
             pst.free_pages, m->base_free);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("  %-38s %5lu ops, %.1f s, %llu pages mapped: %lu vmalloc, %lu aligned, %lu kvmalloc (%lu kmm_malloc, %lu "
           "vmalloc for want of contiguous pages), %lu realloc (%lu in place, %lu moved), %lu vmap, %lu frees, %lu "
           "phys checks, %lu runs checks, %lu tags, %lu purges, %lu drains, %lu holds / %lu releases of pages (at most "
           "%zu held), %lu pressure phases; NULLs: %lu for space, %lu for pages, %lu for mappings (%lu of them "
           "realloc), %lu kvmalloc; at most %zu areas, %zu MiB, %zu internal areas; runs per area %.2f on average, at "
           "most %zu; %llu map / %llu unmap calls, %llu purges, %llu lazy areas reused\n",
           cfg->name, nops, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
           (unsigned long long)m->pages_allocated, m->n_vmalloc, m->n_aligned, m->n_kv_small + m->n_kv_large,
           m->n_kv_small, m->n_kv_fallback, m->n_realloc, m->n_realloc_inplace, m->n_realloc_moved, m->n_vmap,
           m->n_free, m->n_phys, m->n_runs_checked, m->n_tag, m->n_purge, m->n_drain, m->n_hold, m->n_release,
           m->max_held, m->n_phases, m->f_space, m->f_pages, m->f_mappings, m->f_realloc, m->f_kv_frag, m->max_nlive,
           m->max_live_bytes >> 20, m->max_internal,
           m->runs_areas ? (double)m->runs_sum / (double)m->runs_areas : 0.0, m->max_runs,
           (unsigned long long)st.map_calls, (unsigned long long)st.unmap_calls, (unsigned long long)st.purges,
           (unsigned long long)st.reused);
    fflush(stdout);
    kmm_destroy(m->mm);
    free(m->live);
    free(m->sorted);
    free(m->held);
    free(m);
    g_model = NULL;
}

int main(void)
{
    kmm_test_on_fail(fail_head, fail_tail, false);
    static const struct config configs[] = {
        { "lazy, 256 MiB, 1 GiB of space", 4096, 256ull << 20, 0, 0, 0, 30 },
        { "strict, 256 MiB, 1 GiB of space", 4096, 256ull << 20, 0, 0, KMM_VMALLOC_STRICT, 25 },
        { "lazy, 64 MiB of space, 500 mappings", 4096, 256ull << 20, 64ull << 20, 500, 0, 20 },
        { "strict, 64 MiB of space, 400 mappings", 4096, 256ull << 20, 64ull << 20, 400, KMM_VMALLOC_STRICT, 15 },
        { "lazy, 16 KiB pages, 128 MiB", 16384, 128ull << 20, 0, 0, 0, 10 },
    };
    g_seed = kmm_test_seed("vm_model");
    g_every_op = getenv("KMM_MODEL_EVERY_OP") != NULL;
    const char *env = getenv("KMM_MODEL_OPS");
    unsigned long total = env ? strtoul(env, NULL, 0) : KMM_TEST_SANITIZER ? 4000 : 8000;
    g_info = calloc(INFO_CAP, sizeof(*g_info));
    if (!g_info)
        fail("out of memory");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t s = g_seed;
    for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++)
        run_config(&configs[i], total * configs[i].share / 100, kmm_test_rand(&s));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    free(g_info);
    printf("vm_model: OK, %lu operations in %zu configurations, %.1f s\n", total,
           sizeof(configs) / sizeof(configs[0]),
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
