/* page_model.c - the page allocator against a reference model.
 *
 * Long seeded sequences of random operations (kmm_alloc_pages of orders
 * 0..10 with random area masks, kmm_alloc_pages_aligned, kmm_alloc_pages_exact,
 * frees, reservations, and unreservations of any range of reserved pages - part
 * of one reservation or pieces of adjacent ones) on a small memory system,
 * mirrored in a model that records the owner of every page: free, an
 * allocation's id, or reserved. Every result is checked against the model:
 *
 *  - an allocation lies in memory, in one accepted area, aligned as promised,
 *    overlaps nothing live, and kmm_page_alloc_size reports its page count;
 *    KMM_ZERO memory reads as zero;
 *  - every allocation is filled (sampled pages) with a pattern derived from
 *    its id and verified before it is freed: overlap or corruption shows;
 *  - a failed allocation is plausible: no accepted area has a free, naturally
 *    aligned run of the block size the request needs (the allocator never
 *    fails while a fitting block exists);
 *  - while the calling thread's cache is known to be empty, an allocation
 *    comes from the highest accepted area that can satisfy it;
 *  - kmm_reserve_pages returns what the model predicts (0, -KMM_EBUSY,
 *    -KMM_EINVAL); the page counters of kmm_page_stats match the model;
 *  - kmm_check passes every ~1000 operations, and after freeing everything
 *    and kmm_drain the free block counts equal the initial ones exactly.
 *
 * KMM_SEED repeats a run; KMM_MODEL_OPS sets the total number of operations
 * (default 200000, spread over the configurations).
 */
#include "kmm_test.h"

#include <kmm.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define OWNER_FREE     0u
#define OWNER_RESERVED UINT32_MAX
#define MAX_TOUCH      32          /* pages of an allocation that carry the pattern */
#define MAX_TEST_ORDER 10

struct alloc {
    uint64_t pfn, npages;
    uint32_t id;
};

struct config {
    const char *name;
    size_t page_size;
    uint64_t mem_size;
    const uint64_t *limits;
    unsigned nr_areas;
    unsigned share;                /* of the total operations, in percent */
};

struct model {
    const struct config *cfg;
    struct kmm *mm;
    size_t ps;
    unsigned shift;
    uint64_t npages;
    unsigned nr_areas;
    unsigned present_mask;         /* areas with pages */
    uint64_t astart[KMM_MAX_AREAS], aend[KMM_MAX_AREAS];
    uint32_t *owner;
    struct alloc *live;
    size_t nlive, caplive;
    uint64_t free_pages, resv_pages;
    uint32_t next_id;
    uint64_t rng;
    unsigned long op;
    bool cache_clean;              /* the calling thread's caches are known to be empty */
    double target_fill;
    size_t init_nr_free[KMM_MAX_AREAS][KMM_MAX_ORDER + 1];
    /* what was exercised */
    unsigned long n_alloc, n_alloc_fail, n_free, n_resv_ok, n_resv_busy, n_resv_inval, n_unresv,
        n_pref_checks, n_drain;
};

static uint64_t g_seed;

static struct model *g_model;   /* the model running, for failure reports */

/* What a failure report (kmm_test_fail) starts with. */
static void fail_head(FILE *f)
{
    struct model *m = g_model;
    fprintf(f, "page_model FAILED [%s, seed %llu, op %lu]: ", m ? m->cfg->name : "-", (unsigned long long)g_seed,
            m ? m->op : 0ul);
}

#define fail(m, ...) (g_model = (m), kmm_test_fail(__VA_ARGS__))

static uint64_t rnd(struct model *m, uint64_t n)
{
    return kmm_test_below(&m->rng, n);
}

static uint64_t pattern(uint32_t id, uint64_t page, unsigned word)
{
    return kmm_test_mix64(((uint64_t)id << 32) ^ (page << 2) ^ word) | 1;   /* never zero */
}

static unsigned ceil_log2_u64(uint64_t v)
{
    unsigned o = 0;
    while (((uint64_t)1 << o) < v)
        o++;
    return o;
}

static unsigned area_of(const struct model *m, uint64_t pfn)
{
    for (unsigned a = 0; a < m->nr_areas; a++)
        if (pfn >= m->astart[a] && pfn < m->aend[a])
            return a;
    return KMM_MAX_AREAS;
}

static unsigned accepted_areas(const struct model *m, unsigned flags)
{
    unsigned mask = flags & KMM_AREA_MASK;
    if (!mask)
        mask = KMM_AREA_MASK;
    return mask & m->present_mask;
}

/* Is there a free (in the model), naturally aligned run of 2^order pages in area a? */
static bool fit_exists(const struct model *m, unsigned a, unsigned order)
{
    uint64_t size = (uint64_t)1 << order;
    uint64_t p = (m->astart[a] + size - 1) & ~(size - 1);
    for (; p + size <= m->aend[a]; p += size) {
        uint64_t i = 0;
        while (i < size && m->owner[p + i] == OWNER_FREE)
            i++;
        if (i == size)
            return true;
    }
    return false;
}

/* ---- pattern ---------------------------------------------------------- */

static unsigned touched_count(uint64_t npages)
{
    return npages < MAX_TOUCH ? (unsigned)npages : MAX_TOUCH;
}

static uint64_t touched_page(uint64_t npages, unsigned j)
{
    if (npages <= MAX_TOUCH)
        return j;
    return (uint64_t)j * (npages - 1) / (MAX_TOUCH - 1);
}

static uint64_t *word_at(const struct model *m, uint64_t pfn, unsigned w)
{
    char *page = kmm_phys_to_virt(m->mm, pfn << m->shift);
    size_t off = w == 0 ? 0 : w == 1 ? m->ps / 2 : m->ps - sizeof(uint64_t);
    return (uint64_t *)(void *)(page + off);
}

static void write_pattern(struct model *m, const struct alloc *al)
{
    for (unsigned j = 0; j < touched_count(al->npages); j++) {
        uint64_t i = touched_page(al->npages, j);
        for (unsigned w = 0; w < 3; w++)
            *word_at(m, al->pfn + i, w) = pattern(al->id, i, w);
    }
}

static void verify_pattern(struct model *m, const struct alloc *al)
{
    for (unsigned j = 0; j < touched_count(al->npages); j++) {
        uint64_t i = touched_page(al->npages, j);
        for (unsigned w = 0; w < 3; w++) {
            uint64_t got = *word_at(m, al->pfn + i, w);
            if (got != pattern(al->id, i, w))
                fail(m, "allocation %u (phys 0x%llx, %llu pages): page %llu word %u holds 0x%llx, wrote 0x%llx "
                     "(overlap or corruption)", al->id, (unsigned long long)(al->pfn << m->shift),
                     (unsigned long long)al->npages, (unsigned long long)i, w, (unsigned long long)got,
                     (unsigned long long)pattern(al->id, i, w));
        }
    }
}

static void verify_zero(struct model *m, const struct alloc *al)
{
    if (al->npages <= 4) {
        const unsigned char *p = kmm_phys_to_virt(m->mm, al->pfn << m->shift);
        for (size_t i = 0; i < (size_t)al->npages << m->shift; i++)
            if (p[i])
                fail(m, "KMM_ZERO allocation at phys 0x%llx: byte %zu is 0x%02x",
                     (unsigned long long)(al->pfn << m->shift), i, p[i]);
        return;
    }
    for (unsigned j = 0; j < touched_count(al->npages); j++) {
        uint64_t i = touched_page(al->npages, j);
        for (unsigned w = 0; w < 3; w++)
            if (*word_at(m, al->pfn + i, w))
                fail(m, "KMM_ZERO allocation at phys 0x%llx: page %llu word %u is not zero",
                     (unsigned long long)(al->pfn << m->shift), (unsigned long long)i, w);
    }
}

/* ---- checks against the library's own view ---------------------------- */

static void check_stats(struct model *m)
{
    struct kmm_page_stats st;
    kmm_page_stats(m->mm, &st);
    if (st.page_size != m->ps || st.total_pages != m->npages)
        fail(m, "stats: page_size %zu total_pages %zu, expected %zu and %llu", st.page_size, st.total_pages, m->ps,
             (unsigned long long)m->npages);
    if (st.free_pages != m->free_pages || st.reserved_pages != m->resv_pages)
        fail(m, "stats: free_pages %zu reserved_pages %zu, model says %llu and %llu", st.free_pages,
             st.reserved_pages, (unsigned long long)m->free_pages, (unsigned long long)m->resv_pages);
    if (st.cached_pages > st.free_pages)
        fail(m, "stats: cached_pages %zu > free_pages %zu", st.cached_pages, st.free_pages);
    if (m->cache_clean && st.cached_pages != 0)
        fail(m, "stats: %zu cached pages right after kmm_drain / kmm_reserve_pages and only large operations",
             st.cached_pages);
    for (unsigned a = 0; a < m->nr_areas; a++) {
        uint64_t resv = 0;
        for (uint64_t p = m->astart[a]; p < m->aend[a]; p++)
            resv += m->owner[p] == OWNER_RESERVED;
        if (st.area[a].total_pages != m->aend[a] - m->astart[a] || st.area[a].reserved_pages != resv)
            fail(m, "stats: area %u has %zu pages, %zu reserved; model says %llu, %llu", a, st.area[a].total_pages,
                 st.area[a].reserved_pages, (unsigned long long)(m->aend[a] - m->astart[a]),
                 (unsigned long long)resv);
    }
}

static void run_check(struct model *m)
{
    if (kmm_check(m->mm) != 0)
        fail(m, "kmm_check failed");
}

/* ---- operations ----------------------------------------------------------- */

enum kind { K_ORDER, K_ALIGNED, K_EXACT };

struct req {
    enum kind kind;
    unsigned order;                /* K_ORDER */
    uint64_t npages;               /* K_ALIGNED */
    size_t align;                  /* K_ALIGNED */
    size_t size;                   /* K_EXACT */
    unsigned flags;
};

static void *do_req(struct model *m, const struct req *rq)
{
    switch (rq->kind) {
    case K_ORDER:
        return kmm_alloc_pages(m->mm, rq->order, rq->flags);
    case K_ALIGNED:
        return kmm_alloc_pages_aligned(m->mm, rq->npages, rq->align, rq->flags);
    case K_EXACT:
    default:
        return kmm_alloc_pages_exact(m->mm, rq->size, rq->flags);
    }
}

static unsigned random_mask(struct model *m)
{
    uint64_t r = rnd(m, 100);
    if (r < 30)
        return 0;
    if (r < 92) {
        unsigned mask = 0;
        while (!mask)
            mask = (unsigned)rnd(m, 1u << m->nr_areas);
        return mask;
    }
    return (unsigned)rnd(m, KMM_AREA_MASK + 1);   /* may name areas that do not exist */
}

static void note_small_op(struct model *m, uint64_t npages)
{
    if (npages <= ((uint64_t)1 << KMM_PCP_MAX_ORDER))
        m->cache_clean = false;
}

/* Checks the result of an allocation that needed a free block of 2^order
 * pages (the one it splits) and kept npages of it. */
static void check_alloc(struct model *m, const struct req *rq, void *p, uint64_t npages, unsigned order,
                        uint64_t align_pages, bool was_clean, const char *what)
{
    unsigned flags = rq->flags;
    unsigned acc = accepted_areas(m, flags);
    m->n_alloc++;
    if (!p) {
        m->n_alloc_fail++;
        for (unsigned a = 0; a < m->nr_areas; a++) {
            if ((acc & (1u << a)) && fit_exists(m, a, order)) {
                /* diagnosis: was the block in the calling thread's cache? */
                struct kmm_page_stats st;
                kmm_page_stats(m->mm, &st);
                kmm_drain(m->mm);
                void *again = do_req(m, rq);
                fail(m, "%s failed (flags 0x%x) but area %u has a free aligned block of order %u "
                     "(%zu pages in per-thread caches; after kmm_drain the same call %s)",
                     what, flags, a, order, st.cached_pages, again ? "succeeds" : "fails too");
            }
        }
        return;
    }
    kmm_phys_t phys = kmm_virt_to_phys(m->mm, p);
    if (phys == KMM_PHYS_NONE || kmm_phys_to_virt(m->mm, phys) != p)
        fail(m, "%s returned %p, not a direct-map address (phys 0x%llx)", what, p, (unsigned long long)phys);
    if (phys & (m->ps - 1))
        fail(m, "%s returned phys 0x%llx, not page aligned", what, (unsigned long long)phys);
    uint64_t pfn = phys >> m->shift;
    if (pfn + npages > m->npages || pfn + npages < pfn)
        fail(m, "%s returned phys 0x%llx + %llu pages, beyond memory", what, (unsigned long long)phys,
             (unsigned long long)npages);
    if (pfn & (align_pages - 1))
        fail(m, "%s returned phys 0x%llx, not aligned to %llu pages", what, (unsigned long long)phys,
             (unsigned long long)align_pages);
    unsigned a = area_of(m, pfn);
    if (a >= m->nr_areas || !(acc & (1u << a)))
        fail(m, "%s (flags 0x%x) returned phys 0x%llx in area %u, not accepted", what, flags,
             (unsigned long long)phys, a);
    if (area_of(m, pfn + npages - 1) != a)
        fail(m, "%s returned phys 0x%llx + %llu pages, crossing an area boundary", what, (unsigned long long)phys,
             (unsigned long long)npages);
    for (uint64_t i = 0; i < npages; i++) {
        uint32_t o = m->owner[pfn + i];
        if (o != OWNER_FREE)
            fail(m, "%s returned phys 0x%llx + %llu pages; page %llu is %s %u", what, (unsigned long long)phys,
                 (unsigned long long)npages, (unsigned long long)i,
                 o == OWNER_RESERVED ? "reserved" : "held by allocation", o == OWNER_RESERVED ? 0 : o);
    }
    if (was_clean) {
        m->n_pref_checks++;
        for (unsigned b = a + 1; b < m->nr_areas; b++)
            if ((acc & (1u << b)) && fit_exists(m, b, order))
                fail(m, "%s (flags 0x%x) took area %u though the preferred area %u has a free block of order %u",
                     what, flags, a, b, order);
    }
    size_t sz = kmm_page_alloc_size(m->mm, p);
    if (sz != npages)
        fail(m, "kmm_page_alloc_size after %s = %zu, expected %llu", what, sz, (unsigned long long)npages);

    if (m->nlive == m->caplive) {
        m->caplive = m->caplive ? 2 * m->caplive : 256;
        m->live = realloc(m->live, m->caplive * sizeof(*m->live));
        if (!m->live)
            fail(m, "out of memory");
    }
    struct alloc *al = &m->live[m->nlive++];
    al->pfn = pfn;
    al->npages = npages;
    al->id = ++m->next_id;
    for (uint64_t i = 0; i < npages; i++)
        m->owner[pfn + i] = al->id;
    m->free_pages -= npages;
    if (flags & KMM_ZERO)
        verify_zero(m, al);
    write_pattern(m, al);
}

static unsigned random_order(struct model *m)
{
    uint64_t r = rnd(m, 100);
    if (r < 60)
        return (unsigned)rnd(m, KMM_PCP_MAX_ORDER + 1);
    if (r < 90)
        return (unsigned)(4 + rnd(m, 4));
    return (unsigned)(8 + rnd(m, MAX_TEST_ORDER - 7));
}

static uint64_t random_npages(struct model *m)
{
    uint64_t r = rnd(m, 100);
    if (r < 50)
        return 1 + rnd(m, 16);
    if (r < 90)
        return 1 + rnd(m, 200);
    return 1 + rnd(m, 1500);
}

static void op_alloc_order(struct model *m)
{
    struct req rq = { .kind = K_ORDER, .order = random_order(m) };
    rq.flags = random_mask(m) | (rnd(m, 4) == 0 ? KMM_ZERO : 0);
    bool clean = m->cache_clean;
    void *p = do_req(m, &rq);
    note_small_op(m, (uint64_t)1 << rq.order);
    char what[64];
    snprintf(what, sizeof(what), "kmm_alloc_pages(order %u)", rq.order);
    check_alloc(m, &rq, p, (uint64_t)1 << rq.order, rq.order, (uint64_t)1 << rq.order, clean, what);
}

static void op_alloc_aligned(struct model *m)
{
    struct req rq = { .kind = K_ALIGNED, .npages = random_npages(m) };
    if (rnd(m, 10) == 0)
        rq.align = (size_t)rnd(m, m->ps);              /* below a page: means a page (0 is fine too) */
    else
        rq.align = m->ps << rnd(m, 10);
    if (rq.align & (rq.align - 1))
        rq.align = 0;
    rq.flags = random_mask(m) | (rnd(m, 4) == 0 ? KMM_ZERO : 0);
    uint64_t align_pages = rq.align > m->ps ? rq.align >> m->shift : 1;
    unsigned order = ceil_log2_u64(rq.npages);
    if (((uint64_t)1 << order) < align_pages)
        order = ceil_log2_u64(align_pages);
    bool clean = m->cache_clean;
    void *p = do_req(m, &rq);
    note_small_op(m, rq.npages);
    char what[96];
    snprintf(what, sizeof(what), "kmm_alloc_pages_aligned(%llu pages, align %zu)", (unsigned long long)rq.npages,
             rq.align);
    check_alloc(m, &rq, p, rq.npages, order, align_pages, clean, what);
}

static void op_alloc_exact(struct model *m)
{
    uint64_t npages = random_npages(m);
    struct req rq = { .kind = K_EXACT, .size = (size_t)npages << m->shift };
    if (rnd(m, 2))
        rq.size -= (size_t)rnd(m, m->ps);             /* a partial last page */
    rq.flags = random_mask(m) | (rnd(m, 4) == 0 ? KMM_ZERO : 0);
    bool clean = m->cache_clean;
    void *p = do_req(m, &rq);
    note_small_op(m, npages);
    char what[96];
    snprintf(what, sizeof(what), "kmm_alloc_pages_exact(%zu bytes)", rq.size);
    check_alloc(m, &rq, p, npages, ceil_log2_u64(npages), 1, clean, what);
}

static void free_index(struct model *m, size_t idx)
{
    struct alloc al = m->live[idx];
    void *p = kmm_phys_to_virt(m->mm, al.pfn << m->shift);
    verify_pattern(m, &al);
    size_t sz = kmm_page_alloc_size(m->mm, p);
    if (sz != al.npages)
        fail(m, "kmm_page_alloc_size(phys 0x%llx) = %zu before free, expected %llu",
             (unsigned long long)(al.pfn << m->shift), sz, (unsigned long long)al.npages);
    if (al.npages > 1 && kmm_page_alloc_size(m->mm, (char *)p + m->ps) != 0)
        fail(m, "kmm_page_alloc_size of the second page of an allocation is not 0");
    kmm_free_pages(m->mm, p);
    note_small_op(m, al.npages);
    for (uint64_t i = 0; i < al.npages; i++)
        m->owner[al.pfn + i] = OWNER_FREE;
    m->free_pages += al.npages;
    m->live[idx] = m->live[--m->nlive];
    m->n_free++;
    if (rnd(m, 8) == 0 && kmm_page_alloc_size(m->mm, p) != 0)
        fail(m, "kmm_page_alloc_size of a freed allocation is not 0");
}

static void op_free(struct model *m)
{
    if (m->nlive)
        free_index(m, (size_t)rnd(m, m->nlive));
}

static void op_reserve(struct model *m)
{
    uint64_t pfn, n;
    uint64_t r = rnd(m, 100);
    if (r < 40 && m->nlive) {          /* near a live allocation: often busy */
        const struct alloc *al = &m->live[rnd(m, m->nlive)];
        pfn = al->pfn + al->npages - rnd(m, 4);
        if (pfn >= m->npages)
            pfn = m->npages - 1;
    } else {
        pfn = rnd(m, m->npages);
    }
    r = rnd(m, 100);
    n = r < 70 ? 1 + rnd(m, 16) : r < 95 ? 1 + rnd(m, 256) : 1 + rnd(m, 2048);
    kmm_phys_t phys = pfn << m->shift;
    int expect;
    r = rnd(m, 100);
    if (r < 3) {
        phys += 1 + rnd(m, m->ps - 1);  /* misaligned */
        expect = -KMM_EINVAL;
    } else if (r < 6) {
        n = m->npages - pfn + 1 + rnd(m, 8);   /* runs past the end of memory */
        expect = -KMM_EINVAL;
    } else if (r < 7) {
        phys = (m->npages + rnd(m, 100)) << m->shift;   /* beyond memory */
        expect = -KMM_EINVAL;
    } else {
        if (pfn + n > m->npages)
            n = m->npages - pfn;
        expect = 0;
        for (uint64_t i = 0; i < n; i++)
            if (m->owner[pfn + i] != OWNER_FREE) {
                expect = -KMM_EBUSY;
                break;
            }
    }
    int rc = kmm_reserve_pages(m->mm, phys, (size_t)n);
    if (rc != expect)
        fail(m, "kmm_reserve_pages(phys 0x%llx, %llu pages) = %d, expected %d", (unsigned long long)phys,
             (unsigned long long)n, rc, expect);
    if (rc == 0) {
        for (uint64_t i = 0; i < n; i++)
            m->owner[pfn + i] = OWNER_RESERVED;
        m->free_pages -= n;
        m->resv_pages += n;
        m->n_resv_ok++;
        m->cache_clean = true;          /* it drained the calling thread's caches */
    } else if (rc == -KMM_EBUSY) {
        m->n_resv_busy++;
        m->cache_clean = true;
    } else {
        m->n_resv_inval++;
    }
}

/* Unreserves [pfn, pfn + len): every page reserved, by one reservation or several. */
static void unreserve_range(struct model *m, uint64_t pfn, uint64_t len)
{
    kmm_unreserve_pages(m->mm, pfn << m->shift, (size_t)len);
    for (uint64_t i = 0; i < len; i++)
        m->owner[pfn + i] = OWNER_FREE;
    m->free_pages += len;
    m->resv_pages -= len;
    m->n_unresv++;
}

/* A random part of the run of reserved pages around a random reserved page:
 * part of one reservation, or pieces of several adjacent ones (perhaps in
 * different areas). */
static void op_unreserve(struct model *m)
{
    if (!m->resv_pages)
        return;
    uint64_t k = rnd(m, m->resv_pages), p = 0;
    for (;; p++)
        if (m->owner[p] == OWNER_RESERVED && k-- == 0)
            break;
    uint64_t lo = p, hi = p + 1;
    while (lo > 0 && m->owner[lo - 1] == OWNER_RESERVED)
        lo--;
    while (hi < m->npages && m->owner[hi] == OWNER_RESERVED)
        hi++;
    uint64_t start = rnd(m, 3) == 0 ? lo : lo + rnd(m, p - lo + 1);
    uint64_t end = rnd(m, 3) == 0 ? hi : p + 1 + rnd(m, hi - p);
    unreserve_range(m, start, end - start);
}

static void op_drain(struct model *m)
{
    kmm_drain(m->mm);
    m->cache_clean = true;
    m->n_drain++;
}

/* Arguments the allocator must refuse (once per configuration: they report). */
static void bad_arguments(struct model *m)
{
    errno = 0;
    if (kmm_alloc_pages(m->mm, KMM_MAX_ORDER + 1, 0) != NULL || errno != EINVAL)
        fail(m, "kmm_alloc_pages(KMM_MAX_ORDER + 1) was not refused with EINVAL");
    errno = 0;
    if (kmm_alloc_pages_aligned(m->mm, 1, 3 * m->ps, 0) != NULL || errno != EINVAL)
        fail(m, "kmm_alloc_pages_aligned with a non power of two alignment was not refused with EINVAL");
    errno = 0;
    if (kmm_alloc_pages_aligned(m->mm, 0, 0, 0) != NULL || errno != EINVAL)
        fail(m, "kmm_alloc_pages_aligned(0 pages) was not refused with EINVAL");
    if (kmm_alloc_pages_exact(m->mm, SIZE_MAX, 0) != NULL)
        fail(m, "kmm_alloc_pages_exact(SIZE_MAX) did not fail");
    if (kmm_alloc_pages_exact(m->mm, 0, 0) != NULL)
        fail(m, "kmm_alloc_pages_exact(0) did not fail");
    int rc = kmm_reserve_pages(m->mm, 0, 0);
    if (rc != 0 && rc != -KMM_EINVAL)
        fail(m, "kmm_reserve_pages(0 pages) = %d", rc);
    if (kmm_reserve_pages(m->mm, m->ps, SIZE_MAX) != -KMM_EINVAL)
        fail(m, "kmm_reserve_pages(SIZE_MAX pages) was not -KMM_EINVAL");
    if (kmm_reserve_pages(m->mm, UINT64_MAX & ~(uint64_t)(m->ps - 1), 1) != -KMM_EINVAL)
        fail(m, "kmm_reserve_pages far beyond memory was not -KMM_EINVAL");
    if (kmm_page_alloc_size(m->mm, (void *)&rc) != 0)
        fail(m, "kmm_page_alloc_size of a stack address is not 0");
    if (kmm_virt_to_phys(m->mm, (void *)&rc) != KMM_PHYS_NONE)
        fail(m, "kmm_virt_to_phys of a stack address is not KMM_PHYS_NONE");
    if (kmm_phys_to_virt(m->mm, (kmm_phys_t)m->npages << m->shift) != NULL)
        fail(m, "kmm_phys_to_virt of the end of memory is not NULL");
    if (kmm_phys_to_virt(m->mm, KMM_PHYS_NONE) != NULL)
        fail(m, "kmm_phys_to_virt(KMM_PHYS_NONE) is not NULL");
    /* an area mask naming only areas that have no memory */
    unsigned none = KMM_AREA_MASK & ~m->present_mask;
    if (none && kmm_alloc_pages(m->mm, 0, none) != NULL)
        fail(m, "kmm_alloc_pages with areas 0x%x, which have no memory, succeeded", none);
}

/* ---- one configuration --------------------------------------------------- */

static void run_config(const struct config *cfg, unsigned long nops, uint64_t seed)
{
    struct model mod;
    struct model *m = &mod;
    memset(m, 0, sizeof(*m));
    m->cfg = cfg;
    m->rng = seed ? seed : 1;
    struct kmm_config kc = { .page_size = cfg->page_size, .mem_size = cfg->mem_size, .area_limits = cfg->limits,
                             .nr_areas = cfg->nr_areas };
    m->mm = kmm_create(&kc);
    if (!m->mm)
        fail(m, "kmm_create: %s", strerror(errno));
    m->ps = cfg->page_size;
    m->shift = ceil_log2_u64(m->ps);
    m->npages = cfg->mem_size >> m->shift;
    m->nr_areas = cfg->nr_areas;
    uint64_t lo = 0;
    for (unsigned a = 0; a < m->nr_areas; a++) {
        uint64_t hi = (a == m->nr_areas - 1 || cfg->limits[a] == UINT64_MAX) ? m->npages : cfg->limits[a] >> m->shift;
        if (hi > m->npages)
            hi = m->npages;
        if (hi < lo)
            hi = lo;
        m->astart[a] = lo;
        m->aend[a] = hi;
        if (hi > lo)
            m->present_mask |= 1u << a;
        lo = hi;
    }
    m->owner = calloc((size_t)m->npages, sizeof(*m->owner));
    if (!m->owner)
        fail(m, "out of memory");
    m->free_pages = m->npages;
    m->cache_clean = true;
    m->target_fill = 0.5;

    struct kmm_page_stats st;
    kmm_page_stats(m->mm, &st);
    memcpy(m->init_nr_free, st.nr_free, sizeof(m->init_nr_free));
    if (st.nr_areas != m->nr_areas)
        fail(m, "stats: nr_areas %u, expected %u", st.nr_areas, m->nr_areas);
    for (unsigned a = 0; a < m->nr_areas; a++) {
        size_t pages = 0;
        for (unsigned o = 0; o <= KMM_MAX_ORDER; o++)
            pages += st.nr_free[a][o] << o;
        if (pages != m->aend[a] - m->astart[a])
            fail(m, "initially area %u has %zu pages in its free lists, expected %llu", a, pages,
                 (unsigned long long)(m->aend[a] - m->astart[a]));
        if (m->aend[a] > m->astart[a] &&
            (st.area[a].start != m->astart[a] << m->shift || st.area[a].end != m->aend[a] << m->shift))
            fail(m, "stats: area %u is [0x%llx, 0x%llx), expected [0x%llx, 0x%llx)", a,
                 (unsigned long long)st.area[a].start, (unsigned long long)st.area[a].end,
                 (unsigned long long)(m->astart[a] << m->shift), (unsigned long long)(m->aend[a] << m->shift));
    }
    check_stats(m);
    bad_arguments(m);
    check_stats(m);

    bool last_failed = false;
    for (m->op = 1; m->op <= nops; m->op++) {
        if (m->op % 5000 == 0)
            m->target_fill = 0.2 + 0.8 * (double)rnd(m, 1000) / 1000.0;
        double fill = 1.0 - (double)m->free_pages / (double)m->npages;
        unsigned p_free = fill > m->target_fill ? 65 : 25;
        if (last_failed)
            p_free += 25;
        uint64_t r = rnd(m, 100);
        unsigned long before = m->n_alloc_fail;
        if (r < p_free) {
            op_free(m);
        } else {
            r = rnd(m, 100);
            if (r < 55)
                op_alloc_order(m);
            else if (r < 70)
                op_alloc_aligned(m);
            else if (r < 85)
                op_alloc_exact(m);
            else if (r < 93)
                op_reserve(m);
            else if (r < 98)
                op_unreserve(m);
            else
                op_drain(m);
        }
        last_failed = m->n_alloc_fail != before;
        /* kmm_page_stats costs a system call per extent of the hosted arena: not every op */
        if (m->op % 500 == 0)
            check_stats(m);
        if (m->op % 1000 == 0)
            run_check(m);
    }

    /* give everything back: nr_free must be the initial state exactly */
    while (m->nlive)
        free_index(m, m->nlive - 1);
    for (uint64_t p = 0; p < m->npages;) {   /* every maximal run of reserved pages at once */
        uint64_t q = p;
        while (q < m->npages && m->owner[q] == OWNER_RESERVED)
            q++;
        if (q > p)
            unreserve_range(m, p, q - p);
        p = q + 1;
    }
    kmm_drain(m->mm);
    m->cache_clean = true;
    run_check(m);
    check_stats(m);
    kmm_page_stats(m->mm, &st);
    if (st.free_pages != st.total_pages || st.reserved_pages || st.cached_pages)
        fail(m, "at the end: free %zu of %zu pages, %zu reserved, %zu cached", st.free_pages, st.total_pages,
             st.reserved_pages, st.cached_pages);
    for (unsigned a = 0; a < m->nr_areas; a++)
        for (unsigned o = 0; o <= KMM_MAX_ORDER; o++)
            if (st.nr_free[a][o] != m->init_nr_free[a][o])
                fail(m, "at the end: area %u has %zu free blocks of order %u, initially %zu", a, st.nr_free[a][o], o,
                     m->init_nr_free[a][o]);
    kmm_destroy(m->mm);
    printf("  %-34s %7lu ops: %lu allocs (%lu failed, checked), %lu frees, reserve %lu ok / %lu busy / %lu inval, "
           "%lu unreserves, %lu drains, %lu preference checks\n",
           cfg->name, nops, m->n_alloc, m->n_alloc_fail, m->n_free, m->n_resv_ok, m->n_resv_busy, m->n_resv_inval,
           m->n_unresv, m->n_drain, m->n_pref_checks);
    free(m->owner);
    free(m->live);
}

int main(void)
{
    static const uint64_t limits3[] = { 16ull << 20, 32ull << 20, UINT64_MAX };
    /* odd sizes: area boundaries not aligned to large blocks, and area 3 beyond memory (empty) */
    static const uint64_t limits_odd[] = { (3ull << 20) + (20 << 10), (17ull << 20) - (8 << 10), 128ull << 20,
                                           UINT64_MAX };
    /* the last limit below the end of memory: what lies above belongs to the last area */
    static const uint64_t limits2[] = { 8ull << 20, 24ull << 20 };
    static const struct config configs[] = {
        { "4 KiB pages, 64 MiB, 3 areas", 4096, 64ull << 20, limits3, 3, 40 },
        { "16 KiB pages, 64 MiB, 3 areas", 16384, 64ull << 20, limits3, 3, 20 },
        { "64 KiB pages, 64 MiB, 3 areas", 65536, 64ull << 20, limits3, 3, 10 },
        { "4 KiB pages, 40 MiB+52 KiB, odd areas", 4096, (40ull << 20) + (52 << 10), limits_odd, 4, 15 },
        { "4 KiB pages, 32 MiB, 2 areas", 4096, 32ull << 20, limits2, 2, 15 },
    };
    kmm_test_on_fail(fail_head, NULL, false);
    g_seed = kmm_test_seed("page_model");
    const char *env = getenv("KMM_MODEL_OPS");
    unsigned long total = env ? strtoul(env, NULL, 0) : 200000;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t s = g_seed;
    for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++)
        run_config(&configs[i], total * configs[i].share / 100, kmm_test_rand(&s));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("page_model: OK, %lu operations in %zu configurations, %.1f s\n", total,
           sizeof(configs) / sizeof(configs[0]), (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
