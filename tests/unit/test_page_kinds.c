/* Unit tests of kmm_page_kinds (include/kmm/page.h): what each page is.
 *
 * Every layer allocates and the kind of its pages is checked at the pages
 * it got: a page allocation (an exact size: an ALLOC head and ALLOC_CONT
 * blocks), a slab (kmm_malloc of 64 bytes), a kmm_malloc block of whole
 * pages, a vmalloc area's frames, zspages and the pool's map buffers
 * (counted over all of memory against the pool's stats), a reservation, a page freed into the thread's
 * cache, a slab leaked by a cache destroyed with objects live, pages out of
 * the direct map (kmm_unmapped_alloc: the UNMAPPED bit), and free memory.
 * On the static platform with two ranges, the hole between them and the
 * metadata carved from the top are ABSENT and kmm's metadata pages from the
 * page allocator are META. A range that starts inside a block (inside the
 * head block of an exact allocation, inside its ALLOC_CONT block, inside a
 * free block) gets the same kinds as the whole; outside memory is ABSENT; a
 * misaligned start is refused with EINVAL. Read while another thread
 * allocates and frees, every byte is a kind and a kept allocation keeps its.
 * Every test ends with kmm_check(mm) == 0. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kmm_test.h"

#define MiB ((uint64_t)1 << 20)
#define GiB ((uint64_t)1 << 30)

/* The kind of the page at phys. */
static uint8_t kind_at(struct kmm *mm, kmm_phys_t phys)
{
    uint8_t k = 0xff;
    assert_int_equal(kmm_page_kinds(mm, phys, 1, &k), 1);
    return k;
}

/* Pages of each kind over all of memory (the UNMAPPED bit counted apart). */
struct census {
    size_t kind[KMM_PAGE_NR_KINDS];
    size_t unmapped_bit;
};

static void take_census(struct kmm *mm, struct census *c)
{
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    kmm_phys_t end = st.area[st.nr_areas - 1].end;
    size_t n = (size_t)(end / st.page_size);
    uint8_t *k = malloc(n);
    assert_non_null(k);
    assert_int_equal(kmm_page_kinds(mm, 0, n, k), n);
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < n; i++) {
        assert_true((k[i] & ~KMM_PAGE_UNMAPPED_BIT) < KMM_PAGE_NR_KINDS);
        c->kind[k[i] & ~KMM_PAGE_UNMAPPED_BIT]++;
        c->unmapped_bit += !!(k[i] & KMM_PAGE_UNMAPPED_BIT);
    }
    free(k);
}

static void finish(struct kmm *mm)
{
    assert_int_equal(kmm_check(mm), 0);
    kmm_destroy(mm);
}

/* ---- tests --------------------------------------------------------------------- */

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(kmm_page_kind_name(KMM_PAGE_FREE), "free");
    assert_string_equal(kmm_page_kind_name(KMM_PAGE_SLAB), "slab");
    assert_string_equal(kmm_page_kind_name(KMM_PAGE_UNMAPPED_FREE), "unmapped-free");
    assert_string_equal(kmm_page_kind_name(KMM_PAGE_UNMAPPED | KMM_PAGE_UNMAPPED_BIT), "unmapped");
    assert_string_equal(kmm_page_kind_name(KMM_PAGE_NR_KINDS), "?");
    for (unsigned k = 0; k < KMM_PAGE_NR_KINDS; k++) {
        const char *name = kmm_page_kind_name((enum kmm_page_kind)k);
        assert_true(strcmp(name, "?") != 0);
        for (unsigned j = 0; j < k; j++)
            assert_true(strcmp(name, kmm_page_kind_name((enum kmm_page_kind)j)) != 0);
    }
}

/* A fresh memory system is free but for what no one may take. */
static void test_fresh_memory_is_free(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = kmm_test_create(ps, 64 * MiB);
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    struct census c;
    take_census(mm, &c);
    assert_int_equal(c.kind[KMM_PAGE_FREE] + c.kind[KMM_PAGE_CACHED], st.free_pages);
    assert_int_equal(c.kind[KMM_PAGE_FREE] + c.kind[KMM_PAGE_CACHED] + c.kind[KMM_PAGE_ABSENT], 64 * MiB / ps);
    assert_int_equal(c.unmapped_bit, 0);
    finish(mm);
}

/* Each layer's pages show its kind; pages around them stay what they were. */
static void test_each_layer(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = kmm_test_create(ps, 1 * GiB);

    /* 5 pages: an order-2 ALLOC and an order-0 ALLOC_CONT; the 3 pages after
     * them went back free */
    unsigned char *exact = kmm_alloc_pages_exact(mm, 5 * ps, 0);
    assert_non_null(exact);
    kmm_phys_t ephys = kmm_virt_to_phys(mm, exact);
    uint8_t k[8];
    assert_int_equal(kmm_page_kinds(mm, ephys, 8, k), 8);
    for (unsigned i = 0; i < 5; i++)
        assert_int_equal(k[i], KMM_PAGE_ALLOC);
    for (unsigned i = 5; i < 8; i++)
        assert_true(k[i] == KMM_PAGE_FREE || k[i] == KMM_PAGE_CACHED);

    void *order3 = kmm_alloc_pages(mm, 3, 0);
    assert_non_null(order3);
    assert_int_equal(kind_at(mm, kmm_virt_to_phys(mm, order3) + 7 * ps), KMM_PAGE_ALLOC);

    void *small = kmm_malloc(mm, 64, 0);
    assert_non_null(small);
    assert_int_equal(kind_at(mm, kmm_virt_to_phys(mm, small) & ~(kmm_phys_t)(ps - 1)), KMM_PAGE_SLAB);

    size_t large_size = kmm_malloc_max_slab_size(mm) + 3 * ps;
    unsigned char *large = kmm_malloc(mm, large_size, 0);
    assert_non_null(large);
    kmm_phys_t lphys = kmm_virt_to_phys(mm, large);
    for (size_t off = 0; off < large_size; off += ps)
        assert_int_equal(kind_at(mm, lphys + off), KMM_PAGE_KMALLOC);

    unsigned char *v = kmm_vmalloc(mm, 6 * ps, 0);
    assert_non_null(v);
    for (unsigned i = 0; i < 6; i++)
        assert_int_equal(kind_at(mm, kmm_vmalloc_to_phys(mm, v + i * ps)), KMM_PAGE_VMALLOC);

    struct kmm_zspool *pool = kmm_zs_create(mm, "kinds");
    assert_non_null(pool);
    uint64_t handles[64];
    for (unsigned i = 0; i < 64; i++) {
        handles[i] = kmm_zs_malloc(pool, 100 + i * 37, 0);
        assert_true(handles[i] != 0);
    }
    struct kmm_zs_stats zst;
    kmm_zs_stats(pool, &zst);

    /* a reservation: a free page-aligned range found among the kinds */
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    kmm_phys_t rphys = st.area[0].start + 32 * ps;
    assert_int_equal(kmm_reserve_pages(mm, rphys, 3), 0);
    assert_int_equal(kmm_page_kinds(mm, rphys - ps, 5, k), 5);
    assert_true(k[0] != KMM_PAGE_RESERVED);
    assert_int_equal(k[1], KMM_PAGE_RESERVED);
    assert_int_equal(k[3], KMM_PAGE_RESERVED);
    assert_true(k[4] != KMM_PAGE_RESERVED);

    /* an order-0 page freed by this thread stays in its cache */
    void *cached = kmm_alloc_pages(mm, 0, 0);
    assert_non_null(cached);
    kmm_phys_t cphys = kmm_virt_to_phys(mm, cached);
    kmm_free_pages(mm, cached);
    assert_int_equal(kind_at(mm, cphys), KMM_PAGE_CACHED);

    /* a cache destroyed with an object live keeps that slab for good */
    struct kmm_cache *cache = kmm_cache_create(mm, "kinds-leak", 512, 0, NULL);
    assert_non_null(cache);
    void *leak = kmm_cache_alloc(cache, 0);
    assert_non_null(leak);
    kmm_phys_t leak_phys = kmm_virt_to_phys(mm, leak) & ~(kmm_phys_t)(ps - 1);
    kmm_cache_destroy(cache);
    assert_int_equal(kind_at(mm, leak_phys), KMM_PAGE_LEAKED);

    /* pages out of the direct map carry the bit, whatever the cache holds around them */
    kmm_phys_t u = kmm_unmapped_alloc(mm, 0, 0);
    assert_true(u != KMM_PHYS_NONE);
    assert_int_equal(kind_at(mm, u), KMM_PAGE_UNMAPPED | KMM_PAGE_UNMAPPED_BIT);
    kmm_phys_t un = kmm_unmapped_alloc(mm, 1, KMM_UNMAPPED_NOCACHE);
    assert_true(un != KMM_PHYS_NONE);
    assert_int_equal(kind_at(mm, un + ps), KMM_PAGE_UNMAPPED | KMM_PAGE_UNMAPPED_BIT);

    struct census c;
    take_census(mm, &c);
    assert_true(c.kind[KMM_PAGE_ZSMALLOC] >= zst.pages_used);
    /* and the pool's map buffers (a block of KMM_ZS_MAP_SLOTS pages, rounded up) */
    assert_true(c.kind[KMM_PAGE_ZSMALLOC] <= zst.pages_used + zst.pages_stashed + 2 * KMM_ZS_MAP_SLOTS);
    assert_true(zst.pages_used > 0);
    assert_int_equal(c.kind[KMM_PAGE_RESERVED], 3);
    assert_true(c.kind[KMM_PAGE_ALLOC] >= 5 + 8);
    assert_true(c.kind[KMM_PAGE_VMALLOC] >= 6);
    assert_true(c.unmapped_bit >= 3);
    /* what the page allocator counts as free is what the kinds say is free
     * (this thread alone allocates: nothing moves between the two reads) */
    kmm_page_stats(mm, &st);
    assert_int_equal(c.kind[KMM_PAGE_FREE] + c.kind[KMM_PAGE_CACHED], st.free_pages);

    kmm_unmapped_free(mm, un);
    kmm_unmapped_free(mm, u);
    kmm_unreserve_pages(mm, rphys, 3);
    for (unsigned i = 0; i < 64; i++)
        kmm_zs_free(pool, handles[i]);
    kmm_zs_destroy(pool);
    kmm_vfree(mm, v);
    kmm_free(mm, large);
    kmm_free(mm, small);
    kmm_free_pages(mm, order3);
    kmm_free_pages(mm, exact);
    finish(mm);
}

/* A range starting inside a block gets what the whole range gives there. */
static void test_start_inside_blocks(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = kmm_test_create(ps, 256 * MiB);
    /* 13 pages: order-3 ALLOC, order-2 ALLOC_CONT, order-0 ALLOC_CONT */
    void *exact = kmm_alloc_pages_exact(mm, 13 * ps, 0);
    assert_non_null(exact);
    void *vm = kmm_vmalloc(mm, 2 * ps, 0);   /* frames owned by vmalloc: an OWNED head */
    assert_non_null(vm);
    void *big = kmm_malloc(mm, kmm_malloc_max_slab_size(mm) + 9 * ps, 0);
    assert_non_null(big);

    kmm_phys_t bases[] = { kmm_virt_to_phys(mm, exact), kmm_virt_to_phys(mm, big) };
    for (unsigned b = 0; b < 2; b++) {
        kmm_phys_t base = bases[b];
        enum { SPAN = 48 };
        uint8_t whole[SPAN], part[SPAN];
        assert_int_equal(kmm_page_kinds(mm, base, SPAN, whole), SPAN);
        for (unsigned from = 1; from < SPAN; from++) {
            memset(part, 0xee, sizeof(part));
            assert_int_equal(kmm_page_kinds(mm, base + from * ps, SPAN - from, part), SPAN - from);
            assert_memory_equal(part, whole + from, SPAN - from);
        }
        if (b == 0) {
            for (unsigned i = 0; i < 13; i++)
                assert_int_equal(whole[i], KMM_PAGE_ALLOC);
        } else {
            assert_int_equal(whole[0], KMM_PAGE_KMALLOC);
            assert_int_equal(whole[8], KMM_PAGE_KMALLOC);
        }
    }
    kmm_free(mm, big);
    kmm_vfree(mm, vm);
    kmm_free_pages(mm, exact);
    finish(mm);
}

/* Pages past the end of memory are ABSENT; a misaligned start is refused. */
static void test_outside_and_misaligned(void **state)
{
    (void)state;
    struct kmm *mm = kmm_test_create(4096, 64 * MiB);
    uint8_t k[4] = { 0xee, 0xee, 0xee, 0xee };
    assert_int_equal(kmm_page_kinds(mm, 64 * MiB - 2 * 4096, 4, k), 4);
    assert_int_equal(k[0], KMM_PAGE_FREE);
    assert_int_equal(k[2], KMM_PAGE_ABSENT);
    assert_int_equal(k[3], KMM_PAGE_ABSENT);
    assert_int_equal(kmm_page_kinds(mm, 1ull << 50, 2, k), 2);
    assert_int_equal(k[0], KMM_PAGE_ABSENT);
    assert_int_equal(kmm_page_kinds(mm, 0, 0, k), 0);

    memset(k, 0xee, sizeof(k));
    errno = 0;
    assert_int_equal(kmm_page_kinds(mm, 4096 + 8, 2, k), 0);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(k[0], 0xee);
    finish(mm);
}

/* The static platform with two ranges: the hole between them and the
 * metadata carved from the top are ABSENT; metadata pages that kmm takes
 * from the page allocator (no meta_alloc hook) are META. */
static void test_static_two_ranges(void **state)
{
    (void)state;
    const size_t len = 16 * MiB;
    unsigned char *buf = aligned_alloc(len, len);
    assert_non_null(buf);
    struct kmm_memory mem = {
        .direct_map = (uintptr_t)buf,
        .nr_ranges = 2,
        .ranges = { { 0, 4 * MiB }, { 8 * MiB, 16 * MiB } },
    };
    struct kmm_platform pf;
    kmm_platform_static(&pf, &mem, NULL, NULL);
    struct kmm_config cfg = { .page_size = 4096, .platform = &pf };
    struct kmm *mm = kmm_create(&cfg);
    assert_non_null(mm);

    /* zsmalloc keeps its bookkeeping in metadata memory: here, pages */
    struct kmm_zspool *pool = kmm_zs_create(mm, "static");
    assert_non_null(pool);
    uint64_t h = kmm_zs_malloc(pool, 200, 0);
    assert_true(h != 0);

    enum { N = 16 * MiB / 4096 };
    static uint8_t k[N];
    assert_int_equal(kmm_page_kinds(mm, 0, N, k), N);
    for (size_t i = 4 * MiB / 4096; i < 8 * MiB / 4096; i++)
        assert_int_equal(k[i], KMM_PAGE_ABSENT);
    assert_true(k[0] != KMM_PAGE_ABSENT);
    assert_int_equal(k[N - 1], KMM_PAGE_ABSENT);   /* meta[] carved from the top */
    size_t count[KMM_PAGE_NR_KINDS] = { 0 };
    for (size_t i = 0; i < N; i++)
        count[k[i]]++;
    assert_true(count[KMM_PAGE_META] > 0);
    assert_true(count[KMM_PAGE_ZSMALLOC] > 0);
    assert_int_equal(count[KMM_PAGE_ABSENT] > 4 * MiB / 4096, true);
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    assert_int_equal(count[KMM_PAGE_FREE] + count[KMM_PAGE_CACHED], st.free_pages);
    assert_int_equal(N - count[KMM_PAGE_ABSENT], st.total_pages);

    /* no direct_unmap hook here: nothing can be taken out of the direct map */
    assert_true(kmm_unmapped_alloc(mm, 0, 0) == KMM_PHYS_NONE);

    kmm_zs_free(pool, h);
    kmm_zs_destroy(pool);
    finish(mm);
    free(buf);
}

/* Read while another thread allocates and frees: every byte is a kind,
 * and an allocation that does not change keeps its kind throughout. */
struct churner {
    struct kmm *mm;
    atomic_bool stop;
    atomic_ulong rounds;
};

static void *churn(void *arg)
{
    struct churner *c = arg;
    void *live[64] = { 0 };
    uint64_t rng = 12345;
    while (!atomic_load(&c->stop)) {
        unsigned slot = (unsigned)kmm_test_below(&rng, 64);
        if (live[slot]) {
            kmm_free_pages(c->mm, live[slot]);
            live[slot] = NULL;
        } else {
            live[slot] = kmm_alloc_pages(c->mm, (unsigned)kmm_test_below(&rng, 6), 0);
        }
        atomic_fetch_add(&c->rounds, 1);
    }
    for (unsigned i = 0; i < 64; i++)
        kmm_free_pages(c->mm, live[i]);
    kmm_thread_exit();
    return NULL;
}

static void test_concurrent_snapshot(void **state)
{
    (void)state;
    const size_t ps = 4096, n = 64 * MiB / 4096;
    struct kmm *mm = kmm_test_create(ps, 64 * MiB);
    void *kept = kmm_alloc_pages(mm, 4, 0);
    assert_non_null(kept);
    uint64_t kept_pfn = kmm_virt_to_phys(mm, kept) / ps;
    uint8_t *k = malloc(n);
    assert_non_null(k);
    struct churner c = { .mm = mm };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, churn, &c), 0);
    while (atomic_load(&c.rounds) == 0)   /* on a busy machine the churner may start late */
        sched_yield();
    for (unsigned pass = 0; pass < (KMM_TEST_SANITIZER ? 20 : 200); pass++) {
        assert_int_equal(kmm_page_kinds(mm, 0, n, k), n);
        for (size_t i = 0; i < n; i++)
            assert_true(k[i] < KMM_PAGE_NR_KINDS);
        for (unsigned i = 0; i < 16; i++)
            assert_int_equal(k[kept_pfn + i], KMM_PAGE_ALLOC);
    }
    atomic_store(&c.stop, true);
    pthread_join(t, NULL);
    free(k);
    kmm_free_pages(mm, kept);
    finish(mm);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        KMM_TEST_PER_PAGE_SIZE(test_fresh_memory_is_free),
        KMM_TEST_PER_PAGE_SIZE(test_each_layer),
        KMM_TEST_PER_PAGE_SIZE(test_start_inside_blocks),
        cmocka_unit_test(test_outside_and_misaligned),
        cmocka_unit_test(test_static_two_ranges),
        cmocka_unit_test(test_concurrent_snapshot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
