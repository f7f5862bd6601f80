/* Unit tests of the page allocator (include/kmm/page.h), through the public API.
 *
 * Memory systems are hosted (memfd-backed), so large sizes cost nothing until
 * touched; tests that need exhaustion use small custom areas instead of
 * filling gigabytes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kmm_test.h"

#define KiB (1ull << 10)
#define MiB (1ull << 20)
#define GiB (1ull << 30)

/* Areas small enough to exhaust in a test: [0,1M) [1M,2M) [2M,4M). */
static const uint64_t small_limits[3] = { 1 * MiB, 2 * MiB, UINT64_MAX };
#define SMALL_MEM (4 * MiB)

static struct kmm *create_small(size_t page_size)
{
    struct kmm_config cfg = {
        .page_size = page_size,
        .mem_size = SMALL_MEM,
        .area_limits = small_limits,
        .nr_areas = 3,
    };
    struct kmm *mm = kmm_create(&cfg);
    assert_non_null(mm);
    return mm;
}

static unsigned small_area_of(kmm_phys_t phys)
{
    return phys < 1 * MiB ? 0 : phys < 2 * MiB ? 1 : 2;
}

/* Enough pages for the randomized tests at any page size, still sparse. */
static struct kmm *create_param(size_t ps)
{
    return kmm_test_create(ps, 16384ull * ps);
}

static void finish(struct kmm *mm)
{
    assert_int_equal(kmm_check(mm), 0);
    kmm_destroy(mm);
}

static void stats_drained(struct kmm *mm, struct kmm_page_stats *st)
{
    kmm_drain(mm);
    kmm_page_stats(mm, st);
}

static kmm_phys_t phys_of(struct kmm *mm, const void *p)
{
    kmm_phys_t phys = kmm_virt_to_phys(mm, p);
    assert_true(phys != KMM_PHYS_NONE);
    return phys;
}

/* Every page must be back where it started: the buddy lists block for block
 * (so all splits were undone by merges), nothing cached, nothing held. */
static void assert_back_to(struct kmm *mm, const struct kmm_page_stats *init)
{
    struct kmm_page_stats st;
    stats_drained(mm, &st);
    int diff = 0;
    for (unsigned a = 0; a < KMM_MAX_AREAS; a++)
        for (unsigned o = 0; o <= KMM_MAX_ORDER; o++)
            if (st.nr_free[a][o] != init->nr_free[a][o]) {
                fprintf(stderr, "nr_free[%u][%u]: %zu, initially %zu\n", a, o, st.nr_free[a][o],
                        init->nr_free[a][o]);
                diff = 1;
            }
    assert_int_equal(diff, 0);
    assert_int_equal(st.cached_pages, 0);
    assert_int_equal(st.reserved_pages, init->reserved_pages);
    assert_int_equal(st.free_pages, init->free_pages);
    assert_int_equal(st.free_pages, st.total_pages - st.reserved_pages);
    assert_int_equal(st.allocated_pages, 0);
    assert_int_equal(kmm_check(mm), 0);
}

static int is_zero(const void *p, size_t len)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < len; i++)
        if (c[i])
            return 0;
    return 1;
}

struct blk {
    void *p;
    kmm_phys_t phys;
    size_t npages;
};

static int cmp_blk(const void *a, const void *b)
{
    kmm_phys_t x = ((const struct blk *)a)->phys, y = ((const struct blk *)b)->phys;
    return x < y ? -1 : x > y;
}

static void assert_disjoint(struct blk *b, size_t n, size_t ps)
{
    qsort(b, n, sizeof(*b), cmp_blk);
    for (size_t i = 0; i + 1 < n; i++)
        assert_true(b[i].phys + b[i].npages * ps <= b[i + 1].phys);
}

static void shuffle_blks(struct blk *b, size_t n, uint64_t *rng)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(kmm_test_rand(rng) % i);
        struct blk t = b[i - 1];
        b[i - 1] = b[j];
        b[j] = t;
    }
}

/* Stamps at both ends of a block catch two live blocks sharing memory. */
static void stamp(const struct blk *b, size_t ps)
{
    uint64_t v = b->phys ^ 0x6b6d6d5f70616765ull;
    memcpy(b->p, &v, sizeof(v));
    memcpy((char *)b->p + b->npages * ps - sizeof(v), &v, sizeof(v));
}

static void check_stamp(const struct blk *b, size_t ps)
{
    uint64_t v = b->phys ^ 0x6b6d6d5f70616765ull, x, y;
    memcpy(&x, b->p, sizeof(x));
    memcpy(&y, (char *)b->p + b->npages * ps - sizeof(y), sizeof(y));
    assert_true(x == v && y == v);
}

/* ---- creation and configuration ------------------------------------------ */

static void test_create_default(void **state)
{
    (void)state;
    struct kmm *mm = kmm_create(NULL);
    assert_non_null(mm);
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    assert_int_equal(st.page_size, 4096);
    assert_int_equal(st.total_pages, (64 * GiB) / 4096);
    assert_int_equal(st.free_pages, st.total_pages - st.reserved_pages);
    assert_int_equal(st.allocated_pages, 0);
    assert_int_equal(st.nr_areas, 3);
    assert_int_equal(st.area[0].start, 0);
    assert_int_equal(st.area[0].end, 16 * MiB);
    assert_int_equal(st.area[1].start, 16 * MiB);
    assert_int_equal(st.area[1].end, 4 * GiB);
    assert_int_equal(st.area[2].start, 4 * GiB);
    assert_int_equal(st.area[2].end, 64 * GiB);
    assert_int_equal(st.area[0].total_pages + st.area[1].total_pages + st.area[2].total_pages,
                     st.total_pages);

    /* The largest block fits in 64 GiB and costs nothing while untouched. */
    void *p = kmm_alloc_pages(mm, KMM_MAX_ORDER, 0);
    assert_non_null(p);
    kmm_phys_t phys = phys_of(mm, p);
    assert_int_equal(phys % (4096ull << KMM_MAX_ORDER), 0);
    assert_true(phys >= 4 * GiB);
    assert_int_equal(kmm_page_alloc_size(mm, p), (size_t)1 << KMM_MAX_ORDER);
    kmm_free_pages(mm, p);
    finish(mm);
}

static void test_default_areas(void **state)
{
    (void)state;
    struct kmm *mm = kmm_test_create(4096, 8 * GiB);
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    assert_int_equal(st.nr_areas, 3);
    assert_int_equal(st.area[2].start, 4 * GiB);
    assert_int_equal(st.area[2].end, 8 * GiB);

    struct {
        unsigned flags;
        kmm_phys_t lo, hi;
    } cases[] = {
        { KMM_AREA_LOWEST, 0, 16 * MiB },
        { KMM_AREA_LOW, 16 * MiB, 4 * GiB },
        { KMM_AREA_NORMAL, 4 * GiB, 8 * GiB },
        { 0, 4 * GiB, 8 * GiB },                    /* no area bits: any, highest preferred */
        { KMM_AREA_ANY, 4 * GiB, 8 * GiB },
        { KMM_AREAS_BELOW(1), 16 * MiB, 4 * GiB },
        { KMM_AREA(0) | KMM_AREA(2), 4 * GiB, 8 * GiB },
        { KMM_AREA_LOWEST | KMM_ZERO, 0, 16 * MiB },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (unsigned order = 0; order <= 5; order += 5) {
            void *p = kmm_alloc_pages(mm, order, cases[i].flags);
            assert_non_null(p);
            kmm_phys_t phys = phys_of(mm, p);
            if (phys < cases[i].lo || phys >= cases[i].hi)
                fprintf(stderr, "flags %#x order %u: phys %#llx\n", cases[i].flags, order,
                        (unsigned long long)phys);
            assert_true(phys >= cases[i].lo && phys < cases[i].hi);
            kmm_free_pages(mm, p);
        }
    }
    finish(mm);
}

static void test_empty_area_fails(void **state)
{
    (void)state;
    /* 8 MiB of memory: the default areas above 16 MiB are empty. */
    struct kmm *mm = kmm_test_create(4096, 8 * MiB);
    struct kmm_page_stats init;
    kmm_page_stats(mm, &init);

    errno = 0;
    assert_null(kmm_alloc_pages(mm, 0, KMM_AREA_NORMAL));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(kmm_alloc_pages(mm, 0, KMM_AREA_LOW));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(kmm_alloc_pages_exact(mm, 5 * 4096, KMM_AREA_LOW | KMM_AREA_NORMAL));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(kmm_alloc_pages_aligned(mm, 1, 64 * KiB, KMM_AREA_NORMAL));
    assert_int_equal(errno, ENOMEM);

    void *p = kmm_alloc_pages(mm, 0, KMM_AREA_NORMAL | KMM_AREA_LOWEST);
    assert_non_null(p);
    assert_true(phys_of(mm, p) < 8 * MiB);
    kmm_free_pages(mm, p);
    assert_back_to(mm, &init);
    finish(mm);
}

static void test_bad_configs(void **state)
{
    (void)state;
    static const uint64_t descending[3] = { 2 * MiB, 1 * MiB, UINT64_MAX };
    static const uint64_t max_in_middle[3] = { 1 * MiB, UINT64_MAX, 2 * MiB };
    static const uint64_t unaligned[3] = { 1 * MiB + 100, 2 * MiB, UINT64_MAX };
    static const uint64_t unaligned_16k[3] = { 1 * MiB + 4096, 2 * MiB, UINT64_MAX };
    static const uint64_t seven[7] = { 1 * MiB, 2 * MiB, 3 * MiB, 4 * MiB, 5 * MiB, 6 * MiB, UINT64_MAX };
    struct kmm_config bad[] = {
        { .mem_size = SMALL_MEM, .area_limits = descending, .nr_areas = 3 },
        { .mem_size = SMALL_MEM, .area_limits = max_in_middle, .nr_areas = 3 },
        { .mem_size = SMALL_MEM, .area_limits = unaligned, .nr_areas = 3 },
        { .page_size = 16 * KiB, .mem_size = SMALL_MEM, .area_limits = unaligned_16k, .nr_areas = 3 },
        { .mem_size = 8 * MiB, .area_limits = seven, .nr_areas = 7 },
        { .page_size = 3000, .mem_size = SMALL_MEM },
        { .page_size = 12 * KiB, .mem_size = SMALL_MEM },
        { .page_size = 2048, .mem_size = SMALL_MEM },
        { .page_size = 1024, .mem_size = SMALL_MEM },
        { .mem_size = SMALL_MEM, .slab_flags = KMM_SLAB_POISON << 1 },   /* an unknown slab flag */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        errno = 0;
        struct kmm *mm = kmm_create(&bad[i]);
        if (mm)
            fprintf(stderr, "bad config %zu accepted\n", i);
        assert_null(mm);
        assert_int_equal(errno, EINVAL);
    }

    /* Six areas is the maximum and must be accepted. */
    struct kmm_config six = { .mem_size = 8 * MiB, .area_limits = seven + 1, .nr_areas = 6 };
    struct kmm *mm = kmm_create(&six);
    assert_non_null(mm);
    finish(mm);
}

/* ---- areas: preference, fallback, exhaustion ------------------------------- */

static void test_small_area_layout(void **state)
{
    (void)state;
    struct kmm *mm = create_small(4096);
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    assert_int_equal(st.nr_areas, 3);
    assert_int_equal(st.total_pages, SMALL_MEM / 4096);
    kmm_phys_t starts[3] = { 0, 1 * MiB, 2 * MiB }, ends[3] = { 1 * MiB, 2 * MiB, 4 * MiB };
    for (unsigned a = 0; a < 3; a++) {
        assert_int_equal(st.area[a].start, starts[a]);
        assert_int_equal(st.area[a].end, ends[a]);
        assert_int_equal(st.area[a].total_pages, (ends[a] - starts[a]) / 4096);
        assert_int_equal(st.area[a].free_pages, st.area[a].total_pages);
    }
    finish(mm);

    /* Memory above the last limit belongs to the last area. */
    static const uint64_t two[2] = { 1 * MiB, 2 * MiB };
    struct kmm_config cfg = { .mem_size = SMALL_MEM, .area_limits = two, .nr_areas = 2 };
    mm = kmm_create(&cfg);
    assert_non_null(mm);
    kmm_page_stats(mm, &st);
    assert_int_equal(st.nr_areas, 2);
    assert_int_equal(st.total_pages, SMALL_MEM / 4096);
    assert_int_equal(st.area[1].start, 1 * MiB);
    assert_int_equal(st.area[1].end, 4 * MiB);
    assert_int_equal(st.area[1].total_pages, 3 * MiB / 4096);
    void *p = kmm_alloc_pages(mm, 9, KMM_AREA(1));
    assert_non_null(p);
    assert_int_equal(phys_of(mm, p), 2 * MiB);
    kmm_free_pages(mm, p);
    finish(mm);
}

static void test_area_fallback_order0(void **state)
{
    (void)state;
    struct kmm *mm = create_small(4096);
    struct kmm_page_stats init;
    kmm_page_stats(mm, &init);
    size_t avail[3];
    for (unsigned a = 0; a < 3; a++)
        avail[a] = init.area[a].total_pages - init.area[a].reserved_pages;

    /* With no area bits, area 2 is used up before area 1, area 1 before area 0. */
    size_t total = init.total_pages;
    struct blk *b = calloc(total, sizeof(*b));
    assert_non_null(b);
    size_t n = 0, count[3] = { 0, 0, 0 };
    unsigned last_area = 2;
    void *p;
    errno = 0;
    while ((p = kmm_alloc_pages(mm, 0, 0)) != NULL) {
        assert_true(n < total);
        b[n] = (struct blk){ p, phys_of(mm, p), 1 };
        unsigned a = small_area_of(b[n].phys);
        assert_true(a <= last_area);                 /* never climbs back up */
        if (a < last_area)
            assert_int_equal(count[last_area], avail[last_area]);   /* moved on only when full */
        last_area = a;
        count[a]++;
        n++;
    }
    assert_int_equal(errno, ENOMEM);
    for (unsigned a = 0; a < 3; a++)
        assert_int_equal(count[a], avail[a]);
    assert_disjoint(b, n, 4096);

    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    assert_int_equal(st.free_pages, 0);
    assert_int_equal(st.allocated_pages, n);
    for (size_t i = 0; i < n; i++)
        kmm_free_pages(mm, b[i].p);
    assert_back_to(mm, &init);
    free(b);
    finish(mm);
}

static void test_area_mask_skips(void **state)
{
    (void)state;
    struct kmm *mm = create_small(4096);
    struct kmm_page_stats init;
    kmm_page_stats(mm, &init);
    void **held = calloc(init.total_pages, sizeof(*held));
    assert_non_null(held);
    size_t n = 0;
    void *p;

    while ((p = kmm_alloc_pages(mm, 0, KMM_AREA(2))) != NULL) {
        assert_int_equal(small_area_of(phys_of(mm, p)), 2);
        held[n++] = p;
    }
    assert_int_equal(n, init.area[2].total_pages - init.area[2].reserved_pages);

    /* Area 2 full: a mask of {0, 2} falls to area 0, skipping area 1. */
    p = kmm_alloc_pages(mm, 0, KMM_AREA(0) | KMM_AREA(2));
    assert_non_null(p);
    assert_int_equal(small_area_of(phys_of(mm, p)), 0);
    held[n++] = p;
    p = kmm_alloc_pages(mm, 3, KMM_AREA(0) | KMM_AREA(2));
    assert_non_null(p);
    assert_int_equal(small_area_of(phys_of(mm, p)), 0);
    held[n++] = p;
    p = kmm_alloc_pages(mm, 0, KMM_AREA(1));
    assert_non_null(p);
    assert_int_equal(small_area_of(phys_of(mm, p)), 1);
    held[n++] = p;
    errno = 0;
    assert_null(kmm_alloc_pages(mm, 0, KMM_AREA(2)));
    assert_int_equal(errno, ENOMEM);

    /* Exhaust area 0 too: a mask of {0} fails although area 1 has room. */
    while ((p = kmm_alloc_pages(mm, 0, KMM_AREA(0))) != NULL) {
        assert_int_equal(small_area_of(phys_of(mm, p)), 0);
        held[n++] = p;
    }
    errno = 0;
    assert_null(kmm_alloc_pages(mm, 0, KMM_AREA(0) | KMM_AREA(2)));
    assert_int_equal(errno, ENOMEM);
    p = kmm_alloc_pages(mm, 0, 0);
    assert_non_null(p);
    assert_int_equal(small_area_of(phys_of(mm, p)), 1);
    held[n++] = p;

    for (size_t i = 0; i < n; i++)
        kmm_free_pages(mm, held[i]);
    assert_back_to(mm, &init);
    free(held);
    finish(mm);
}

static void test_area_fallback_by_order(void **state)
{
    (void)state;
    struct kmm *mm = create_small(4096);
    struct kmm_page_stats init;
    kmm_page_stats(mm, &init);

    /* Area 2 holds exactly one order-9 block; areas 0 and 1 none at all. */
    void *big = kmm_alloc_pages(mm, 9, 0);
    assert_non_null(big);
    assert_int_equal(phys_of(mm, big), 2 * MiB);
    errno = 0;
    assert_null(kmm_alloc_pages(mm, 9, 0));
    assert_int_equal(errno, ENOMEM);

    /* Area 2 has no free page left: order 8 comes from area 1, then area 0. */
    void *a1 = kmm_alloc_pages(mm, 8, 0);
    assert_non_null(a1);
    assert_int_equal(phys_of(mm, a1), 1 * MiB);
    void *a0 = kmm_alloc_pages(mm, 8, 0);
    assert_non_null(a0);
    assert_int_equal(phys_of(mm, a0), 0);
    errno = 0;
    assert_null(kmm_alloc_pages(mm, 0, 0));
    assert_int_equal(errno, ENOMEM);
    kmm_free_pages(mm, a0);
    kmm_free_pages(mm, a1);
    kmm_free_pages(mm, big);
    assert_back_to(mm, &init);

    /* A preferred area with free pages but no block large enough falls back
     * too: one page in area 2 leaves one order-8 block there, not two. */
    void *small = kmm_alloc_pages(mm, 0, KMM_AREA(2));
    assert_non_null(small);
    void *b2 = kmm_alloc_pages(mm, 8, 0);
    assert_non_null(b2);
    assert_int_equal(small_area_of(phys_of(mm, b2)), 2);
    void *b1 = kmm_alloc_pages(mm, 8, 0);
    assert_non_null(b1);
    assert_int_equal(phys_of(mm, b1), 1 * MiB);
    errno = 0;
    assert_null(kmm_alloc_pages(mm, 9, 0));
    assert_int_equal(errno, ENOMEM);
    kmm_free_pages(mm, b1);
    kmm_free_pages(mm, b2);
    kmm_free_pages(mm, small);
    assert_back_to(mm, &init);
    finish(mm);
}

/* ---- kmm_alloc_pages --------------------------------------------------------- */

static void test_alloc_aligned_writable(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_param(ps);
    struct kmm_page_stats init;
    kmm_page_stats(mm, &init);
    assert_int_equal(init.page_size, ps);

    for (unsigned order = 0; order <= 10; order++) {
        void *p = kmm_alloc_pages(mm, order, 0);
        assert_non_null(p);
        kmm_phys_t phys = phys_of(mm, p);
        assert_int_equal(phys % ((uint64_t)ps << order), 0);
        assert_int_equal(kmm_page_alloc_size(mm, p), (size_t)1 << order);
        size_t npages = (size_t)1 << order;
        for (size_t i = 0; i < npages; i++)
            memset((char *)p + i * ps, (int)(order + 1), i == 0 || i == npages - 1 ? ps : 64);
        assert_int_equal(*((unsigned char *)p + npages * ps - 1), order + 1);
        kmm_free_pages(mm, p);
    }
    assert_back_to(mm, &init);
    finish(mm);
}


static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;
    return x < y ? -1 : x > y;
}

/* Allocates everything in blocks of `order` and dirties it, sorted by address. */
static size_t fill_dirty(struct kmm *mm, unsigned order, size_t ps, void **held, size_t max)
{
    size_t n = 0;
    void *p;
    while (n < max && (p = kmm_alloc_pages(mm, order, 0)) != NULL) {
        memset(p, 0xa5, ps << order);
        held[n++] = p;
    }
    qsort(held, n, sizeof(*held), cmp_ptr);
    return n;
}

/* Frees every other block: held[2k] and held[2k+1] are buddies when the
 * blocks tile memory, so the freed ones cannot merge, stay small and keep
 * their dirt (large merged blocks may be given back to the OS and read as
 * zeros anyway, which would make KMM_ZERO look right for free). */
static void free_every_other(struct kmm *mm, void **held, size_t n)
{
    for (size_t i = 0; i < n; i += 2) {
        kmm_free_pages(mm, held[i]);
        held[i] = NULL;
    }
}

static void free_all(struct kmm *mm, void **held, size_t n)
{
    for (size_t i = 0; i < n; i++)
        kmm_free_pages(mm, held[i]);   /* NULL entries: a no-op, by contract */
}

static void test_zero(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = kmm_test_create(ps, 4 * MiB);
    struct kmm_page_stats init;
    kmm_page_stats(mm, &init);
    size_t max = init.total_pages;
    void **held = calloc(max, sizeof(*held)), **again = calloc(max, sizeof(*again));
    assert_non_null(held);
    assert_non_null(again);
    void *p;

    /* Order 0 straight from the per-thread cache, then from the buddy lists. */
    for (int drain = 0; drain < 2; drain++) {
        size_t n = fill_dirty(mm, 0, ps, held, max);
        assert_int_equal(n, init.total_pages - init.reserved_pages);
        free_every_other(mm, held, n);
        if (drain)
            kmm_drain(mm);
        size_t m = 0;
        while ((p = kmm_alloc_pages(mm, 0, KMM_ZERO)) != NULL) {
            assert_true(m < max);
            assert_true(is_zero(p, ps));
            again[m++] = p;
        }
        assert_int_equal(m, (n + 1) / 2);
        free_all(mm, held, n);
        free_all(mm, again, m);
        assert_back_to(mm, &init);
    }

    /* Order 2 (cached per thread) and order 4 (never cached). */
    for (unsigned order = 2; order <= 4; order += 2) {
        size_t n = fill_dirty(mm, order, ps, held, max);
        free_every_other(mm, held, n);
        size_t m = 0;
        while ((p = kmm_alloc_pages(mm, order, KMM_ZERO)) != NULL) {
            assert_true(is_zero(p, ps << order));
            again[m++] = p;
        }
        assert_int_equal(m, (n + 1) / 2);
        free_all(mm, held, n);
        free_all(mm, again, m);
        assert_back_to(mm, &init);
    }

    /* Exact and aligned sizes: 3 pages out of each freed order-2 block, then
     * the single pages left over. */
    size_t n = fill_dirty(mm, 2, ps, held, max);
    free_every_other(mm, held, n);
    kmm_drain(mm);   /* zeroing is tested here; see test_alloc_uses_own_cache for the cache */
    size_t m = 0;
    while ((p = kmm_alloc_pages_exact(mm, 3 * ps, KMM_ZERO)) != NULL) {
        assert_true(is_zero(p, 3 * ps));
        again[m++] = p;
    }
    assert_int_equal(m, (n + 1) / 2);
    while ((p = kmm_alloc_pages_aligned(mm, 1, ps, KMM_ZERO)) != NULL) {
        assert_true(m < max);
        assert_true(is_zero(p, ps));
        again[m++] = p;
    }
    assert_int_equal(m, 2 * ((n + 1) / 2));
    free_all(mm, held, n);
    free_all(mm, again, m);
    assert_back_to(mm, &init);

    free(held);
    free(again);
    finish(mm);
}

/* Pages in the calling thread's cache are free (they count in free_pages),
 * so an allocation that only they can satisfy must get them back rather
 * than fail: Linux drains its per-CPU lists before giving up. */
static void test_alloc_uses_own_cache(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = kmm_test_create(ps, 4 * MiB);
    struct kmm_page_stats init, st;
    kmm_page_stats(mm, &init);
    size_t max = init.total_pages;
    unsigned top = 0;
    while (((size_t)2 << top) <= max)
        top++;
    void **held = calloc(max, sizeof(*held));
    assert_non_null(held);
    void *p;

    /* All memory freed as small (cached) blocks; then one block of all of it. */
    size_t n = 0;
    while ((p = kmm_alloc_pages(mm, 2, 0)) != NULL)
        held[n++] = p;
    free_all(mm, held, n);
    kmm_page_stats(mm, &st);
    assert_int_equal(st.free_pages, st.total_pages - st.reserved_pages);
    p = kmm_alloc_pages(mm, top, 0);
    assert_non_null(p);
    kmm_free_pages(mm, p);
    assert_back_to(mm, &init);

    /* Exact sizes out of cached order-2 blocks whose buddies are held. */
    n = 0;
    while ((p = kmm_alloc_pages(mm, 2, 0)) != NULL)
        held[n++] = p;
    qsort(held, n, sizeof(*held), cmp_ptr);
    free_every_other(mm, held, n);
    size_t m = 0;
    void **again = calloc(max, sizeof(*again));
    assert_non_null(again);
    while ((p = kmm_alloc_pages_exact(mm, 3 * ps, 0)) != NULL)
        again[m++] = p;
    assert_int_equal(m, (n + 1) / 2);
    free_all(mm, held, n);
    free_all(mm, again, m);
    assert_back_to(mm, &init);
    free(held);
    free(again);
    finish(mm);
}

/* Every page the caller gets is page aligned in its virtual address too
 * (the rubric's "page aligned" column), whatever the page size: a 64 KiB
 * page must not straddle two 64 KiB-aligned virtual ranges. */
static void test_virt_page_aligned(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_param(ps);
    void *p[3] = {
        kmm_alloc_pages(mm, 0, 0),
        kmm_alloc_pages_exact(mm, 20 * KiB, 0),
        kmm_alloc_pages_aligned(mm, 3, 0, 0),
    };
    for (size_t i = 0; i < 3; i++) {
        assert_non_null(p[i]);
        if ((uintptr_t)p[i] % ps != 0)
            fprintf(stderr, "page size %zu: virtual %p, physical %#llx\n", ps, p[i],
                    (unsigned long long)phys_of(mm, p[i]));
        assert_int_equal((uintptr_t)p[i] % ps, 0);
    }
    for (size_t i = 0; i < 3; i++)
        kmm_free_pages(mm, p[i]);
    finish(mm);
}

/* The direct map keeps physical alignment in virtual addresses, as the
 * kernel's does (PAGE_OFFSET is aligned far beyond any block): callers of
 * __get_free_pages rely on a 2^order block being naturally aligned in the
 * pointer they get, and an aligned allocation is "aligned as asked". */
static void test_virt_natural_alignment(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_param(ps);
    for (unsigned order = 0; order <= 8; order++) {
        void *p = kmm_alloc_pages(mm, order, 0);
        assert_non_null(p);
        uint64_t align = (uint64_t)ps << order;
        if ((uintptr_t)p % align != 0)
            fprintf(stderr, "page size %zu order %u: virtual %p, physical %#llx\n", ps, order, p,
                    (unsigned long long)phys_of(mm, p));
        assert_int_equal((uintptr_t)p % align, 0);
        kmm_free_pages(mm, p);
    }
    void *p = kmm_alloc_pages_aligned(mm, 1, 1 * MiB, 0);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % (1 * MiB), 0);
    kmm_free_pages(mm, p);
    finish(mm);
}

/* ---- splitting and coalescing ------------------------------------------------ */

#define MAX_LIVE 256

static void test_split_coalesce(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_param(ps);
    struct kmm_page_stats init, st;
    kmm_page_stats(mm, &init);
    assert_int_equal(init.total_pages, 16384);
    assert_int_equal(init.free_pages, init.total_pages - init.reserved_pages);
    assert_int_equal(init.cached_pages, 0);

    uint64_t rng = kmm_test_seed(__func__);
    struct blk live[MAX_LIVE];
    size_t n = 0, held_pages = 0;
    for (int i = 0; i < 4000; i++) {
        if (n < MAX_LIVE && (n == 0 || kmm_test_rand(&rng) % 3 != 0)) {
            unsigned order = (unsigned)(kmm_test_rand(&rng) % 8);
            errno = 0;
            void *p = kmm_alloc_pages(mm, order, 0);
            if (!p) {
                assert_int_equal(errno, ENOMEM);   /* possible at the peak; never corrupting */
                continue;
            }
            struct blk b = { p, phys_of(mm, p), (size_t)1 << order };
            assert_int_equal(b.phys % (ps << order), 0);
            assert_int_equal(kmm_page_alloc_size(mm, p), b.npages);
            stamp(&b, ps);
            live[n++] = b;
            held_pages += b.npages;
        } else {
            size_t k = (size_t)(kmm_test_rand(&rng) % n);
            check_stamp(&live[k], ps);
            kmm_free_pages(mm, live[k].p);
            held_pages -= live[k].npages;
            live[k] = live[--n];
        }
        if (i % 500 == 0) {
            kmm_page_stats(mm, &st);
            assert_int_equal(st.allocated_pages, held_pages);
            assert_int_equal(st.free_pages, st.total_pages - st.reserved_pages - held_pages);
        }
    }
    assert_int_equal(kmm_check(mm), 0);
    for (size_t i = 0; i < n; i++)
        check_stamp(&live[i], ps);
    assert_disjoint(live, n, ps);

    shuffle_blks(live, n, &rng);
    for (size_t i = 0; i < n; i++)
        kmm_free_pages(mm, live[i].p);
    assert_back_to(mm, &init);
    finish(mm);
}

/* ---- kmm_alloc_pages_aligned --------------------------------------------------- */

static void test_aligned(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_param(ps);
    struct kmm_page_stats init, st;
    kmm_page_stats(mm, &init);

    struct {
        size_t npages, align, expect_align;
    } cases[] = {
        { 1, 1 * MiB, 1 * MiB },
        { 3, 1 * MiB, 1 * MiB },
        { 5, 0, ps },           /* below the page size means the page size */
        { 1, 1, ps },
        { 2, 2048, ps },
        { 7, 4 * ps, 4 * ps },
        { 1, 16 * MiB, 16 * MiB },
        { 33, 2 * ps, 2 * ps },
    };
    void *held[sizeof(cases) / sizeof(cases[0])];
    size_t taken = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        stats_drained(mm, &st);
        size_t before = st.free_pages;
        void *p = kmm_alloc_pages_aligned(mm, cases[i].npages, cases[i].align, 0);
        assert_non_null(p);
        assert_int_equal(phys_of(mm, p) % cases[i].expect_align, 0);
        assert_int_equal(kmm_page_alloc_size(mm, p), cases[i].npages);
        memset(p, 0x11, cases[i].npages * ps);
        /* No waste: whatever block was split, only npages stay taken. */
        stats_drained(mm, &st);
        assert_int_equal(before - st.free_pages, cases[i].npages);
        taken += cases[i].npages;
        assert_int_equal(st.allocated_pages, taken);
        held[i] = p;
    }
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        kmm_free_pages(mm, held[i]);
    assert_back_to(mm, &init);

    struct {
        size_t npages, align;
    } bad[] = { { 1, 3 * ps }, { 1, 1 * MiB + ps }, { 4, 3 }, { 0, ps }, { 0, 0 }, { 0, 1 * MiB } };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        errno = 0;
        assert_null(kmm_alloc_pages_aligned(mm, bad[i].npages, bad[i].align, 0));
        assert_int_equal(errno, EINVAL);
    }
    assert_back_to(mm, &init);

    uint64_t rng = kmm_test_seed(__func__);
    struct blk b[100];
    for (size_t i = 0; i < 100; i++) {
        size_t npages = 1 + (size_t)(kmm_test_rand(&rng) % 20);
        size_t align = ps << (kmm_test_rand(&rng) % 8);
        void *p = kmm_alloc_pages_aligned(mm, npages, align, 0);
        assert_non_null(p);
        b[i] = (struct blk){ p, phys_of(mm, p), npages };
        assert_int_equal(b[i].phys % align, 0);
        assert_int_equal(kmm_page_alloc_size(mm, p), npages);
        stamp(&b[i], ps);
    }
    for (size_t i = 0; i < 100; i++)
        check_stamp(&b[i], ps);
    assert_disjoint(b, 100, ps);
    shuffle_blks(b, 100, &rng);
    for (size_t i = 0; i < 100; i++)
        kmm_free_pages(mm, b[i].p);
    assert_back_to(mm, &init);
    finish(mm);
}

/* ---- kmm_alloc_pages_exact ------------------------------------------------------ */

static void test_exact(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_param(ps);
    struct kmm_page_stats init, st;
    kmm_page_stats(mm, &init);

    struct {
        size_t size, pages;
    } cases[] = {
        { 20 * KiB, (20 * KiB + ps - 1) / ps },   /* 5, 2, 1 pages of 4, 16, 64 KiB */
        { ps + 1, 2 },
        { 1, 1 },
        { 3 * ps, 3 },
        { 7 * ps - 1, 7 },
        { 100 * ps + 5, 101 },
    };
    if (ps == 4096)
        assert_int_equal(cases[0].pages, 5);
    void *held[sizeof(cases) / sizeof(cases[0])];
    size_t taken = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        stats_drained(mm, &st);
        size_t before = st.free_pages;
        void *p = kmm_alloc_pages_exact(mm, cases[i].size, 0);
        assert_non_null(p);
        assert_int_equal(phys_of(mm, p) % ps, 0);
        assert_int_equal(kmm_page_alloc_size(mm, p), cases[i].pages);
        if (cases[i].pages > 1)
            assert_int_equal(kmm_page_alloc_size(mm, (char *)p + ps), 0);
        memset(p, 0x22, cases[i].pages * ps);
        stats_drained(mm, &st);
        assert_int_equal(before - st.free_pages, cases[i].pages);
        taken += cases[i].pages;
        assert_int_equal(st.allocated_pages, taken);
        held[i] = p;
    }
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        kmm_free_pages(mm, held[i]);
    assert_back_to(mm, &init);

    errno = 0;
    assert_null(kmm_alloc_pages_exact(mm, 0, 0));
    assert_int_equal(errno, EINVAL);

    uint64_t rng = kmm_test_seed(__func__);
    struct blk b[200];
    for (size_t i = 0; i < 200; i++) {
        size_t size = 1 + (size_t)(kmm_test_rand(&rng) % (40 * ps));
        void *p = kmm_alloc_pages_exact(mm, size, 0);
        assert_non_null(p);
        b[i] = (struct blk){ p, phys_of(mm, p), (size + ps - 1) / ps };
        assert_int_equal(kmm_page_alloc_size(mm, p), b[i].npages);
        stamp(&b[i], ps);
    }
    for (size_t i = 0; i < 200; i++)
        check_stamp(&b[i], ps);
    assert_disjoint(b, 200, ps);
    shuffle_blks(b, 200, &rng);
    for (size_t i = 0; i < 200; i++)
        kmm_free_pages(mm, b[i].p);
    assert_back_to(mm, &init);
    finish(mm);
}

/* ---- kmm_free_pages and kmm_page_alloc_size --------------------------------------- */

static void test_free_by_address(void **state)
{
    (void)state;
    struct kmm *mm = kmm_test_create(4096, 64 * MiB);
    struct kmm_page_stats init, st, st2;
    kmm_page_stats(mm, &init);

    kmm_free_pages(mm, NULL);
    kmm_page_stats(mm, &st);
    assert_memory_equal(st.nr_free, init.nr_free, sizeof(st.nr_free));
    assert_int_equal(st.free_pages, init.free_pages);

    void *pages = kmm_alloc_pages(mm, 3, 0);
    void *big = kmm_alloc_pages(mm, 6, 0);
    void *aligned = kmm_alloc_pages_aligned(mm, 3, 64 * KiB, 0);
    void *exact = kmm_alloc_pages_exact(mm, 10000, 0);
    assert_non_null(pages);
    assert_non_null(big);
    assert_non_null(aligned);
    assert_non_null(exact);
    struct {
        void *p;
        size_t n;
    } all[] = { { pages, 8 }, { big, 64 }, { aligned, 3 }, { exact, 3 } };
    for (size_t i = 0; i < 4; i++) {
        char *p = all[i].p;
        assert_int_equal(kmm_page_alloc_size(mm, p), all[i].n);
        assert_int_equal(kmm_page_alloc_size(mm, p + 1), 0);
        assert_int_equal(kmm_page_alloc_size(mm, p + 4096), 0);
        assert_int_equal(kmm_page_alloc_size(mm, p + (all[i].n - 1) * 4096), 0);
        assert_int_equal(kmm_page_alloc_size(mm, p + all[i].n * 4096 - 1), 0);
    }
    int local = 0;
    assert_int_equal(kmm_page_alloc_size(mm, &local), 0);
    assert_int_equal(kmm_page_alloc_size(mm, NULL), 0);

    /* NULL changes nothing, with allocations live as well. */
    stats_drained(mm, &st);
    kmm_free_pages(mm, NULL);
    stats_drained(mm, &st2);
    assert_memory_equal(st.nr_free, st2.nr_free, sizeof(st.nr_free));
    assert_int_equal(st.free_pages, st2.free_pages);
    assert_int_equal(st.allocated_pages, 8 + 64 + 3 + 3);

    for (size_t i = 0; i < 4; i++) {
        kmm_free_pages(mm, all[i].p);
        assert_int_equal(kmm_page_alloc_size(mm, all[i].p), 0);
    }
    assert_back_to(mm, &init);
    finish(mm);
}

/* ---- reservations ---------------------------------------------------------------- */

static void test_reserve_basic(void **state)
{
    (void)state;
    const size_t ps = 4096;
    struct kmm *mm = create_small(ps);
    struct kmm_page_stats init, st;
    kmm_page_stats(mm, &init);
    assert_int_equal(init.reserved_pages, 0);

    const kmm_phys_t rs = 2 * MiB + 64 * KiB;
    const size_t rn = 16;
    assert_int_equal(kmm_reserve_pages(mm, rs, rn), 0);
    kmm_page_stats(mm, &st);
    assert_int_equal(st.reserved_pages, rn);
    assert_int_equal(st.area[2].reserved_pages, rn);
    assert_int_equal(st.free_pages, st.total_pages - rn);
    assert_int_equal(st.allocated_pages, 0);
    assert_int_equal(kmm_page_alloc_size(mm, kmm_phys_to_virt(mm, rs)), 0);
    assert_int_equal(kmm_check(mm), 0);

    /* Allocate all of area 2, in small and larger pieces: nothing reserved comes back. */
    size_t area_pages = st.area[2].total_pages;
    struct blk *b = calloc(area_pages, sizeof(*b));
    assert_non_null(b);
    size_t n = 0, got = 0;
    void *p;
    for (unsigned order = 4; order != (unsigned)-1; order--) {
        while ((p = kmm_alloc_pages(mm, order, KMM_AREA(2))) != NULL) {
            b[n] = (struct blk){ p, phys_of(mm, p), (size_t)1 << order };
            assert_true(b[n].phys + b[n].npages * ps <= rs || b[n].phys >= rs + rn * ps);
            assert_int_equal(small_area_of(b[n].phys), 2);
            got += b[n].npages;
            n++;
        }
    }
    assert_int_equal(got, area_pages - rn);
    assert_disjoint(b, n, ps);
    for (size_t i = 0; i < n; i++)
        kmm_free_pages(mm, b[i].p);
    free(b);

    kmm_unreserve_pages(mm, rs, rn);
    kmm_page_stats(mm, &st);
    assert_int_equal(st.reserved_pages, 0);
    assert_int_equal(st.area[2].reserved_pages, 0);
    assert_back_to(mm, &init);
    finish(mm);
}

static void assert_unchanged(struct kmm *mm, const struct kmm_page_stats *before)
{
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    assert_memory_equal(st.nr_free, before->nr_free, sizeof(st.nr_free));
    assert_int_equal(st.free_pages, before->free_pages);
    assert_int_equal(st.reserved_pages, before->reserved_pages);
    assert_int_equal(st.allocated_pages, before->allocated_pages);
}

static void test_reserve_busy_and_invalid(void **state)
{
    (void)state;
    const size_t ps = 4096;
    struct kmm *mm = create_small(ps);
    struct kmm_page_stats init, before;
    kmm_page_stats(mm, &init);

    void *p = kmm_alloc_pages(mm, 0, KMM_AREA(2));
    assert_non_null(p);
    kmm_phys_t q = phys_of(mm, p);
    assert_int_equal(kmm_reserve_pages(mm, 3 * MiB, 8), 0);

    /* Measured drained: kmm_reserve_pages drains the caller's cache itself. */
    stats_drained(mm, &before);
    assert_int_equal(kmm_reserve_pages(mm, q, 1), -KMM_EBUSY);
    assert_unchanged(mm, &before);
    /* 32 pages holding q, kept inside area 2 and inside memory. */
    kmm_phys_t around = q >= 2 * MiB + 8 * ps ? q - 8 * ps : 2 * MiB;
    if (around > SMALL_MEM - 32 * ps)
        around = SMALL_MEM - 32 * ps;
    assert_int_equal(kmm_reserve_pages(mm, around, 32), -KMM_EBUSY);
    assert_unchanged(mm, &before);
    /* Overlapping an existing reservation is busy as well. */
    assert_int_equal(kmm_reserve_pages(mm, 3 * MiB - 4 * ps, 8), -KMM_EBUSY);
    assert_unchanged(mm, &before);
    assert_int_equal(kmm_reserve_pages(mm, 3 * MiB + 7 * ps, 1), -KMM_EBUSY);
    assert_unchanged(mm, &before);

    kmm_phys_t bad_addr[] = { 2 * MiB + 1, 2 * MiB + ps / 2, SMALL_MEM, SMALL_MEM - ps, 64 * GiB, KMM_PHYS_NONE & ~(kmm_phys_t)(ps - 1) };
    size_t bad_n[] = { 1, 1, 1, 2, 1, 1 };
    for (size_t i = 0; i < sizeof(bad_addr) / sizeof(bad_addr[0]); i++) {
        assert_int_equal(kmm_reserve_pages(mm, bad_addr[i], bad_n[i]), -KMM_EINVAL);
        assert_unchanged(mm, &before);
    }
    /* A count whose byte length wraps around is out of range, not a tiny range. */
    assert_int_equal(kmm_reserve_pages(mm, 2 * MiB, SIZE_MAX), -KMM_EINVAL);
    assert_int_equal(kmm_reserve_pages(mm, 2 * MiB, (SIZE_MAX / ps) + 2), -KMM_EINVAL);
    assert_unchanged(mm, &before);
    assert_int_equal(kmm_check(mm), 0);

    /* Once the page is freed, the same reservation succeeds. */
    kmm_free_pages(mm, p);
    assert_int_equal(kmm_reserve_pages(mm, q, 1), 0);
    kmm_unreserve_pages(mm, q, 1);
    kmm_unreserve_pages(mm, 3 * MiB, 8);
    assert_back_to(mm, &init);
    finish(mm);
}

/* A page freed into the caller's own cache is free: reserving it drains the
 * cache rather than calling it busy. */
static void test_reserve_cached_page(void **state)
{
    (void)state;
    const size_t ps = 4096;
    struct kmm *mm = create_small(ps);
    struct kmm_page_stats init, st;
    kmm_page_stats(mm, &init);

    void *p = kmm_alloc_pages(mm, 0, 0);
    assert_non_null(p);
    kmm_phys_t q = phys_of(mm, p);
    kmm_free_pages(mm, p);
    assert_int_equal(kmm_page_alloc_size(mm, p), 0);
    assert_int_equal(kmm_reserve_pages(mm, q, 1), 0);
    kmm_page_stats(mm, &st);
    assert_int_equal(st.reserved_pages, 1);
    assert_int_equal(st.free_pages, st.total_pages - 1);
    assert_int_equal(kmm_check(mm), 0);

    /* The reserved page never comes back, even from the cache it was in. */
    void *again[64];
    for (size_t i = 0; i < 64; i++) {
        again[i] = kmm_alloc_pages(mm, 0, 0);
        assert_non_null(again[i]);
        assert_true(phys_of(mm, again[i]) != q);
    }
    for (size_t i = 0; i < 64; i++)
        kmm_free_pages(mm, again[i]);
    kmm_unreserve_pages(mm, q, 1);
    assert_back_to(mm, &init);
    finish(mm);
}

static void test_reserve_partial_unreserve(void **state)
{
    (void)state;
    const size_t ps = 4096;
    struct kmm *mm = create_small(ps);
    struct kmm_page_stats init, st;
    kmm_page_stats(mm, &init);

    const kmm_phys_t rs = 1 * MiB;
    assert_int_equal(kmm_reserve_pages(mm, rs, 64), 0);
    kmm_unreserve_pages(mm, rs + 16 * ps, 8);
    kmm_page_stats(mm, &st);
    assert_int_equal(st.reserved_pages, 56);
    assert_int_equal(st.area[1].reserved_pages, 56);
    assert_int_equal(kmm_check(mm), 0);

    /* The 8 given back are allocatable again; the other 56 are not. */
    size_t area_pages = st.area[1].total_pages, n = 0, in_hole = 0;
    void **held = calloc(area_pages, sizeof(*held));
    assert_non_null(held);
    void *p;
    while ((p = kmm_alloc_pages(mm, 0, KMM_AREA(1))) != NULL) {
        kmm_phys_t phys = phys_of(mm, p);
        assert_int_equal(small_area_of(phys), 1);
        if (phys >= rs && phys < rs + 64 * ps) {
            assert_true(phys >= rs + 16 * ps && phys < rs + 24 * ps);
            in_hole++;
        }
        held[n++] = p;
    }
    assert_int_equal(n, area_pages - 56);
    assert_int_equal(in_hole, 8);
    free_all(mm, held, n);
    free(held);

    kmm_unreserve_pages(mm, rs, 16);
    kmm_unreserve_pages(mm, rs + 24 * ps, 1);
    kmm_unreserve_pages(mm, rs + 25 * ps, 39);
    kmm_page_stats(mm, &st);
    assert_int_equal(st.reserved_pages, 0);
    assert_back_to(mm, &init);
    finish(mm);
}

static void test_reserve_whole_area_and_across(void **state)
{
    (void)state;
    const size_t ps = 4096;
    struct kmm *mm = create_small(ps);
    struct kmm_page_stats init, st;
    kmm_page_stats(mm, &init);

    /* A fully reserved preferred area is skipped like a full one. */
    assert_int_equal(kmm_reserve_pages(mm, 2 * MiB, 512), 0);
    errno = 0;
    assert_null(kmm_alloc_pages(mm, 0, KMM_AREA(2)));
    assert_int_equal(errno, ENOMEM);
    void *p = kmm_alloc_pages(mm, 0, 0);
    assert_non_null(p);
    assert_int_equal(small_area_of(phys_of(mm, p)), 1);
    kmm_free_pages(mm, p);
    kmm_unreserve_pages(mm, 2 * MiB, 512);
    assert_back_to(mm, &init);

    /* A range across an area boundary is counted in both areas. */
    assert_int_equal(kmm_reserve_pages(mm, 1 * MiB - 8 * ps, 16), 0);
    kmm_page_stats(mm, &st);
    assert_int_equal(st.reserved_pages, 16);
    assert_int_equal(st.area[0].reserved_pages, 8);
    assert_int_equal(st.area[1].reserved_pages, 8);
    assert_int_equal(kmm_check(mm), 0);
    kmm_unreserve_pages(mm, 1 * MiB - 8 * ps, 16);
    assert_back_to(mm, &init);

    /* All of memory at once. */
    assert_int_equal(kmm_reserve_pages(mm, 0, SMALL_MEM / ps), 0);
    kmm_page_stats(mm, &st);
    assert_int_equal(st.reserved_pages, st.total_pages);
    assert_int_equal(st.free_pages, 0);
    errno = 0;
    assert_null(kmm_alloc_pages(mm, 0, 0));
    assert_int_equal(errno, ENOMEM);
    kmm_unreserve_pages(mm, 0, SMALL_MEM / ps);
    assert_back_to(mm, &init);
    finish(mm);
}

/* ---- bad input --------------------------------------------------------------------- */

static void test_bad_order(void **state)
{
    (void)state;
    struct kmm *mm = kmm_test_create(4096, 64 * MiB);
    struct kmm_page_stats init;
    kmm_page_stats(mm, &init);
    unsigned orders[] = { KMM_MAX_ORDER + 1, KMM_MAX_ORDER + 12, 64, UINT32_MAX };
    for (size_t i = 0; i < sizeof(orders) / sizeof(orders[0]); i++) {
        errno = 0;
        assert_null(kmm_alloc_pages(mm, orders[i], 0));
        assert_int_equal(errno, EINVAL);
    }
    /* A valid order that does not fit is ENOMEM, not EINVAL. */
    errno = 0;
    assert_null(kmm_alloc_pages(mm, KMM_MAX_ORDER, 0));
    assert_int_equal(errno, ENOMEM);
    assert_back_to(mm, &init);
    finish(mm);
}

/* ---- direct map -------------------------------------------------------------------- */

static void test_virt_phys(void **state)
{
    (void)state;
    const uint64_t mem = 64 * MiB;
    struct kmm *mm = kmm_test_create(4096, mem);
    void *p = kmm_alloc_pages(mm, 2, 0);
    assert_non_null(p);
    kmm_phys_t phys = phys_of(mm, p);
    assert_true(phys < mem);
    assert_ptr_equal(kmm_phys_to_virt(mm, phys), p);
    assert_int_equal(kmm_virt_to_phys(mm, (char *)p + 123), phys + 123);
    assert_ptr_equal(kmm_phys_to_virt(mm, phys + 4096 + 5), (char *)p + 4096 + 5);

    char *base = kmm_phys_to_virt(mm, 0);
    assert_non_null(base);
    assert_int_equal(kmm_virt_to_phys(mm, base), 0);
    char *last = kmm_phys_to_virt(mm, mem - 1);
    assert_non_null(last);
    assert_int_equal((uintptr_t)last - (uintptr_t)base, mem - 1);
    assert_int_equal(kmm_virt_to_phys(mm, last), mem - 1);

    assert_null(kmm_phys_to_virt(mm, mem));
    assert_null(kmm_phys_to_virt(mm, mem + 4096));
    assert_null(kmm_phys_to_virt(mm, KMM_PHYS_NONE));
    int local = 0;
    void *heap = malloc(64);
    assert_non_null(heap);
    assert_true(kmm_virt_to_phys(mm, &local) == KMM_PHYS_NONE);
    assert_true(kmm_virt_to_phys(mm, heap) == KMM_PHYS_NONE);
    assert_true(kmm_virt_to_phys(mm, NULL) == KMM_PHYS_NONE);
    assert_true(kmm_virt_to_phys(mm, (void *)((uintptr_t)base + mem)) == KMM_PHYS_NONE);
    assert_true(kmm_virt_to_phys(mm, (void *)((uintptr_t)base - 1)) == KMM_PHYS_NONE);
    free(heap);

    /* Two memory systems have separate direct maps. */
    struct kmm *other = kmm_test_create(4096, mem);
    assert_true(kmm_virt_to_phys(other, p) == KMM_PHYS_NONE);
    kmm_destroy(other);

    kmm_free_pages(mm, p);
    finish(mm);
}

/* ---- resident memory follows live memory -------------------------------------------- */

static void touch(void *p, size_t len)
{
    for (size_t off = 0; off < len; off += 4096)
        ((volatile char *)p)[off] = 1;
}

/* ASan keeps a shadow byte per 8 bytes of the memory kmm poisons on free,
 * and that shadow is resident too: allow for it, not for kmm's own pages. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_SLACK(touched) (64 * MiB + (touched) / 8)
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RSS_SLACK(touched) (64 * MiB + (touched) / 8)
#endif
#endif
/* TSan keeps shadow cells for memory the program touched, about as much
 * again as the memory itself. */
#if defined(__SANITIZE_THREAD__) && !defined(RSS_SLACK)
#define RSS_SLACK(touched) (64 * MiB + (touched) * 2)
#endif
#ifndef RSS_SLACK
#define RSS_SLACK(touched) (64 * MiB)
#endif

/* 1 GiB in NBIG order-10 blocks (4 KiB pages), every page written; the
 * process's RSS after it, checked to have grown by the GiB. */
enum { NBIG = 256 };
static size_t take_gib_written(struct kmm *mm, void **big, size_t rss0)
{
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    for (size_t i = 0; i < NBIG; i++) {
        big[i] = kmm_alloc_pages(mm, 10, 0);
        assert_non_null(big[i]);
        touch(big[i], st.page_size << 10);
    }
    size_t rss1 = kmm_test_rss();
    assert_true(rss1 >= rss0 + 1 * GiB);
    return rss1;
}

static void test_rss(void **state)
{
    (void)state;
    struct kmm *mm = kmm_create(NULL);
    assert_non_null(mm);
    struct kmm_page_stats init, st;
    kmm_page_stats(mm, &init);
    const size_t ps = init.page_size;
    size_t rss0 = kmm_test_rss();

    static void *big[NBIG];
    size_t rss1 = take_gib_written(mm, big, rss0);
    kmm_page_stats(mm, &st);
    assert_true(st.resident_pages * ps >= 1 * GiB);
    for (size_t i = 0; i < NBIG; i++)
        kmm_free_pages(mm, big[i]);
    kmm_drain(mm);
    size_t rss2 = kmm_test_rss();
    if (rss2 > rss0 + RSS_SLACK(1 * GiB))
        fprintf(stderr, "rss: %zu MiB at start, %zu allocated, %zu freed\n", rss0 >> 20, rss1 >> 20, rss2 >> 20);
    assert_true(rss2 <= rss0 + RSS_SLACK(1 * GiB));
    kmm_page_stats(mm, &st);
    assert_true(st.resident_pages * ps <= 64 * MiB);

    /* Single pages go through the per-thread caches; after a drain the
     * merged blocks must be given back as well. */
    const size_t nsmall = (256 * MiB) / ps;
    void **small = malloc(nsmall * sizeof(*small));
    assert_non_null(small);
    for (size_t i = 0; i < nsmall; i++) {
        small[i] = kmm_alloc_pages(mm, 0, 0);
        assert_non_null(small[i]);
        touch(small[i], ps);
    }
    rss1 = kmm_test_rss();
    assert_true(rss1 >= rss0 + 256 * MiB);
    for (size_t i = 0; i < nsmall; i++)
        kmm_free_pages(mm, small[i]);
    kmm_drain(mm);
    rss2 = kmm_test_rss();
    if (rss2 > rss0 + RSS_SLACK(1 * GiB + 256 * MiB))
        fprintf(stderr, "rss (pages): %zu MiB at start, %zu allocated, %zu freed\n", rss0 >> 20, rss1 >> 20, rss2 >> 20);
    assert_true(rss2 <= rss0 + RSS_SLACK(1 * GiB + 256 * MiB));
    kmm_page_stats(mm, &st);
    assert_true(st.resident_pages * ps <= 64 * MiB);
    free(small);
    assert_back_to(mm, &init);
    finish(mm);
}

/* Without kmm_drain: 1 GiB allocated, written and freed comes back by the
 * decay alone, while the program goes on using the allocator (a block of
 * 16 pages, past the per-thread caches, every millisecond). A bound on
 * resident memory after waiting out the decay and the release steps
 * (generous: 5 s where about 0.3 s is expected), not a speed test. */
static void test_rss_decay(void **state)
{
    (void)state;
    struct kmm *mm = kmm_create(NULL);
    assert_non_null(mm);
    struct kmm_page_stats init, st;
    kmm_page_stats(mm, &init);
    const size_t ps = init.page_size;
    size_t rss0 = kmm_test_rss();

    static void *big[NBIG];
    size_t rss1 = take_gib_written(mm, big, rss0);
    for (size_t i = 0; i < NBIG; i++)
        kmm_free_pages(mm, big[i]);
    /* until kmm's own count of resident memory (the memfd's backed bytes)
     * is back, and the process's RSS with it; under TSan the RSS slack is
     * larger than what was freed, so kmm's count is what the loop waits on */
    size_t rss2 = rss1;
    unsigned ms = 0;
    kmm_page_stats(mm, &st);
    for (; ms < 5000 && (st.resident_pages * ps > 64 * MiB || rss2 > rss0 + RSS_SLACK(1 * GiB)); ms++) {
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
        void *p = kmm_alloc_pages(mm, 4, 0);
        assert_non_null(p);
        kmm_free_pages(mm, p);
        if (ms % 10 == 9) {
            rss2 = kmm_test_rss();
            kmm_page_stats(mm, &st);
        }
    }
    if (rss2 > rss0 + RSS_SLACK(1 * GiB))
        fprintf(stderr, "rss (decay): %zu MiB at start, %zu allocated, %zu after %u ms (kmm: %zu MiB resident)\n",
                rss0 >> 20, rss1 >> 20, rss2 >> 20, ms, (st.resident_pages * ps) >> 20);
    assert_true(rss2 <= rss0 + RSS_SLACK(1 * GiB));
    kmm_page_stats(mm, &st);
    assert_true(st.resident_pages * ps <= 64 * MiB);
    assert_back_to(mm, &init);
    finish(mm);
}

/* ---- per-thread caches ----------------------------------------------------------------- */

static void test_drain(void **state)
{
    (void)state;
    struct kmm *mm = kmm_test_create(4096, 64 * MiB);
    struct kmm_page_stats init, st;
    kmm_page_stats(mm, &init);
    assert_int_equal(init.cached_pages, 0);

    void *p[64];
    for (unsigned order = 0; order <= KMM_PCP_MAX_ORDER; order++) {
        for (size_t i = 0; i < 64; i++) {
            p[i] = kmm_alloc_pages(mm, order, 0);
            assert_non_null(p[i]);
        }
        for (size_t i = 0; i < 64; i++)
            kmm_free_pages(mm, p[i]);
        kmm_page_stats(mm, &st);
        /* Cached pages are free (no caller holds them), just not in the lists. */
        assert_true(st.cached_pages <= st.free_pages);
        assert_int_equal(st.free_pages, st.total_pages - st.reserved_pages);
        assert_int_equal(st.allocated_pages, 0);
        kmm_drain(mm);
        kmm_page_stats(mm, &st);
        assert_int_equal(st.cached_pages, 0);
        assert_memory_equal(st.nr_free, init.nr_free, sizeof(st.nr_free));
        assert_int_equal(kmm_check(mm), 0);
    }
    /* Draining an empty cache, twice, is harmless. */
    kmm_drain(mm);
    kmm_drain(mm);
    assert_back_to(mm, &init);
    finish(mm);
}

/* A thread that uses kmm after its caches were retired (a destructor that
 * runs after kmm's, or a caller of kmm_thread_exit that goes on) gets new
 * caches, and those are retired when it exits too. */
static pthread_key_t late_key;

static void late_destructor(void *arg)
{
    struct kmm *mm = arg;
    void *p = kmm_alloc_pages(mm, 0, 0);
    if (p)
        kmm_free_pages(mm, p);
}

static void *late_user(void *arg)
{
    struct kmm *mm = arg;
    void *p = kmm_alloc_pages(mm, 1, 0);
    assert_non_null(p);
    kmm_free_pages(mm, p);
    kmm_thread_exit();   /* caches back, and the thread goes on */
    p = kmm_alloc_pages(mm, 0, 0);
    assert_non_null(p);
    kmm_free_pages(mm, p);
    pthread_setspecific(late_key, mm);   /* its destructor runs after kmm's */
    return NULL;
}

static void test_thread_exit_then_use(void **state)
{
    (void)state;
    struct kmm *mm = kmm_test_create(4096, 64 * MiB);
    struct kmm_page_stats st;
    kmm_free_pages(mm, kmm_alloc_pages(mm, 0, 0));   /* kmm's exit key exists first */
    kmm_drain(mm);
    assert_int_equal(pthread_key_create(&late_key, late_destructor), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, late_user, mm), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    kmm_page_stats(mm, &st);
    assert_int_equal(st.cached_pages, 0);
    assert_int_equal(st.allocated_pages, 0);
    pthread_key_delete(late_key);
    finish(mm);
}

/* Ranges that touch are one: a block may straddle where one ended and the
 * next began. */
static void test_touching_ranges(void **state)
{
    (void)state;
    const size_t len = 8 * MiB;
    unsigned char *buf = aligned_alloc(len, len);
    assert_non_null(buf);
    struct kmm_memory mem = {
        .direct_map = (uintptr_t)buf,
        .nr_ranges = 3,
        .ranges = { { 0, 2 * MiB }, { 2 * MiB, 4 * MiB }, { 4 * MiB, 8 * MiB } },
    };
    struct kmm_platform pf;
    kmm_platform_static(&pf, &mem, NULL, NULL);
    struct kmm_config cfg = { .page_size = 4096, .platform = &pf };
    struct kmm *mm = kmm_create(&cfg);
    assert_non_null(mm);
    /* Metadata comes off the top, so [0, 4M) is the largest block left. */
    void *p = kmm_alloc_pages(mm, 10, 0);
    assert_non_null(p);
    assert_ptr_equal(p, buf);
    kmm_free_pages(mm, p);
    finish(mm);
    free(buf);
}

/* ---- main ------------------------------------------------------------------------------ */

/* An argument runs only the tests whose names match it (cmocka's pattern). */
int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_default),
        cmocka_unit_test(test_default_areas),
        cmocka_unit_test(test_empty_area_fails),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_small_area_layout),
        cmocka_unit_test(test_area_fallback_order0),
        cmocka_unit_test(test_area_mask_skips),
        cmocka_unit_test(test_area_fallback_by_order),
        KMM_TEST_PER_PAGE_SIZE(test_alloc_aligned_writable),
        KMM_TEST_PER_PAGE_SIZE(test_zero),
        KMM_TEST_PER_PAGE_SIZE(test_alloc_uses_own_cache),
        KMM_TEST_PER_PAGE_SIZE(test_virt_page_aligned),
        KMM_TEST_PER_PAGE_SIZE(test_virt_natural_alignment),
        KMM_TEST_PER_PAGE_SIZE(test_split_coalesce),
        KMM_TEST_PER_PAGE_SIZE(test_aligned),
        KMM_TEST_PER_PAGE_SIZE(test_exact),
        cmocka_unit_test(test_free_by_address),
        cmocka_unit_test(test_reserve_basic),
        cmocka_unit_test(test_reserve_busy_and_invalid),
        cmocka_unit_test(test_reserve_cached_page),
        cmocka_unit_test(test_reserve_partial_unreserve),
        cmocka_unit_test(test_reserve_whole_area_and_across),
        cmocka_unit_test(test_bad_order),
        cmocka_unit_test(test_virt_phys),
        cmocka_unit_test(test_drain),
        cmocka_unit_test(test_thread_exit_then_use),
        cmocka_unit_test(test_touching_ranges),
        cmocka_unit_test(test_rss),
        cmocka_unit_test(test_rss_decay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
