/* Unit tests of the unmapped cache (include/kmm/unmapped.h) through the
 * public API:
 *  - a page it hands out is out of the direct map: a child reading it
 *    through kmm_phys_to_virt dies of SIGSEGV;
 *  - pages come back zeroed (seen through kmm_vmap) unless KMM_NOZERO,
 *    where the pattern of the last holder survives;
 *  - every order from 0 to the refill order + 1 works, naturally aligned;
 *  - the first allocation takes one 2 MiB block in one direct_unmap, and
 *    the stats table (free / cached / released per order) says so;
 *  - without a 2 MiB block free (a fragmented small memory system) the
 *    refill takes the largest block there is;
 *  - a shrink gives back wholly free chunks first, after which the page
 *    allocator can allocate them again; then free blocks of used chunks;
 *  - the direct map's mapping count matches /proc/self/maps at each step,
 *    and KMM_UNMAPPED_NOCACHE adds two mappings per scattered allocation;
 *  - 4, 16 and 64 KiB pages; ENOSYS on the static platform.
 * Misuse is tested in test_unmapped_abuse.c. Every test ends with
 * kmm_check(mm) == 0. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kmm_test.h"

#define MiB ((uint64_t)1 << 20)
#define GiB ((uint64_t)1 << 30)

static unsigned refill_order(size_t ps)
{
    unsigned o = 0;
    while (((size_t)ps << (o + 1)) <= KMM_UNMAPPED_REFILL_BYTES)
        o++;
    return o;
}

static void finish(struct kmm *mm)
{
    assert_int_equal(kmm_check(mm), 0);
    kmm_destroy(mm);
}


static void stats_of(struct kmm *mm, struct kmm_unmapped_stats *st)
{
    kmm_unmapped_stats(mm, st);
}

static void expect_maps_match(struct kmm *mm)
{
    struct kmm_unmapped_stats st;
    stats_of(mm, &st);
    size_t seen = kmm_test_direct_map_vmas(mm);
    if (seen != st.direct_map_mappings)
        fprintf(stderr, "direct map: stats say %zu mappings, /proc/self/maps %zu\n", st.direct_map_mappings, seen);
    assert_int_equal(seen, st.direct_map_mappings);
}

/* Maps npages from phys, read+write. */
static unsigned char *map_pages(struct kmm *mm, kmm_phys_t phys, size_t npages, size_t ps)
{
    kmm_phys_t *pages = malloc(npages * sizeof(*pages));
    assert_non_null(pages);
    for (size_t i = 0; i < npages; i++)
        pages[i] = phys + i * ps;
    unsigned char *p = kmm_vmap(mm, pages, npages, KMM_PROT_READ | KMM_PROT_WRITE);
    free(pages);
    assert_non_null(p);
    return p;
}

static bool all_zero(const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

/* ---- the direct-map alias faults ---------------------------------------------- */

struct alias {
    volatile unsigned char *p;
};

static KMM_TEST_NO_ASAN void read_alias(void *arg)
{
    struct alias *a = arg;
    fprintf(stderr, "read %d\n", a->p[0]);   /* must not get here */
}

static void test_alias_faults(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = kmm_test_create(ps, 1 * GiB);
    kmm_phys_t phys = kmm_unmapped_alloc(mm, 0, 0);
    assert_true(phys != KMM_PHYS_NONE);
    struct alias a = { kmm_phys_to_virt(mm, phys) };
    assert_non_null(a.p);
    char out[1024];
    int status = kmm_test_run_child(read_alias, &a, out, sizeof out);
    if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV))
        kmm_test_describe_child(status, out);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
    /* once given back, the same page is reachable again */
    kmm_unmapped_free(mm, phys);
    assert_true(kmm_unmapped_shrink(mm, 0) > 0);
    status = kmm_test_run_child(read_alias, &a, out, sizeof out);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    finish(mm);
}

/* ---- zeroing -------------------------------------------------------------------- */

static void test_zeroed_unless_nozero(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = kmm_test_create(ps, 1 * GiB);
    const unsigned order = 2;
    size_t len = ps << order;
    kmm_phys_t phys = kmm_unmapped_alloc(mm, order, 0);
    assert_true(phys != KMM_PHYS_NONE);
    assert_int_equal(phys % len, 0);
    unsigned char *p = map_pages(mm, phys, 1u << order, ps);
    assert_true(all_zero(p, len));
    kmm_test_fill(p, len, 7);
    kmm_vunmap(mm, p);
    kmm_unmapped_free(mm, phys);

    struct kmm_unmapped_stats before, after;
    stats_of(mm, &before);
    kmm_phys_t again = kmm_unmapped_alloc(mm, order, 0);
    assert_true(again == phys);   /* the lowest free block: the one just freed */
    stats_of(mm, &after);
    assert_int_equal(after.pages_zeroed - before.pages_zeroed, 1u << order);
    p = map_pages(mm, again, 1u << order, ps);
    assert_true(all_zero(p, len));
    kmm_test_fill(p, len, 9);
    kmm_vunmap(mm, p);
    kmm_unmapped_free(mm, again);

    stats_of(mm, &before);
    kmm_phys_t kept = kmm_unmapped_alloc(mm, order, KMM_NOZERO);
    assert_true(kept == phys);
    stats_of(mm, &after);
    assert_int_equal(after.pages_zeroed, before.pages_zeroed);
    p = map_pages(mm, kept, 1u << order, ps);
    assert_true(kmm_test_filled(p, len, 9));
    kmm_vunmap(mm, p);
    kmm_unmapped_free(mm, kept);
    assert_int_equal(kmm_check(mm), 0);
    finish(mm);
}

/* ---- every order ------------------------------------------------------------------ */

static void test_every_order(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = kmm_test_create(ps, 1 * GiB);
    unsigned top = refill_order(ps) + 1;
    kmm_phys_t got[KMM_MAX_ORDER + 2];
    for (unsigned o = 0; o <= top; o++) {
        got[o] = kmm_unmapped_alloc(mm, o, o & 1 ? KMM_NOZERO : 0);
        assert_true(got[o] != KMM_PHYS_NONE);
        assert_int_equal(got[o] % ((uint64_t)ps << o), 0);
        assert_int_equal(kmm_check(mm), 0);
    }
    /* one page of each allocation: readable through a mapping, zero when asked */
    for (unsigned o = 0; o <= top; o += 2) {
        unsigned char *p = map_pages(mm, got[o] + (((uint64_t)ps << o) - ps), 1, ps);
        assert_true(all_zero(p, ps));
        kmm_vunmap(mm, p);
    }
    struct kmm_unmapped_stats st;
    stats_of(mm, &st);
    size_t used = 0;
    for (unsigned o = 0; o <= top; o++)
        used += (size_t)1 << o;
    assert_int_equal(st.pages_used, used);
    assert_true(st.cached[top] >= 1);   /* the order above the refill: a chunk of its own */
    for (unsigned o = 0; o <= top; o++)
        kmm_unmapped_free(mm, got[o]);
    stats_of(mm, &st);
    assert_int_equal(st.pages_used, 0);
    assert_int_equal(st.pages_free, st.pages_held);
    expect_maps_match(mm);
    /* the chunks, and the block held beside the last refill */
    assert_int_equal(kmm_unmapped_shrink(mm, 0), st.pages_held + st.pages_beside);
    stats_of(mm, &st);
    assert_int_equal(st.pages_held, 0);
    assert_int_equal(st.chunks, 0);
    assert_int_equal(st.direct_map_mappings, 1);
    expect_maps_match(mm);
    finish(mm);
}

/* ---- the first refill, in the stats table ------------------------------------------- */

static void test_refill_stats(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = kmm_test_create(ps, 1 * GiB);
    unsigned ro = refill_order(ps);
    struct kmm_unmapped_stats st;
    stats_of(mm, &st);
    assert_int_equal(st.chunks, 0);
    assert_int_equal(st.direct_map_mappings, 1);
    kmm_phys_t phys = kmm_unmapped_alloc(mm, 0, 0);
    assert_true(phys != KMM_PHYS_NONE);
    stats_of(mm, &st);
    assert_int_equal(st.chunks, 1);
    assert_int_equal(st.unmap_calls, 1);
    assert_int_equal(st.cached[ro], 1);
    assert_int_equal(st.pages_held, (size_t)1 << ro);
    assert_int_equal(st.pages_used, 1);
    assert_int_equal(st.pages_free, ((size_t)1 << ro) - 1);
    /* the split left one free block of each order below the chunk's */
    for (unsigned o = 0; o <= KMM_MAX_ORDER; o++)
        assert_int_equal(st.free[o], o < ro ? 1 : 0);
    /* one 2 MiB hole in the direct map: inside the range, two more mappings */
    assert_true(st.direct_map_mappings == 2 || st.direct_map_mappings == 3);
    expect_maps_match(mm);
    /* the rest of the chunk is served without another refill */
    kmm_phys_t more[8];
    for (int i = 0; i < 8; i++) {
        more[i] = kmm_unmapped_alloc(mm, 0, 0);
        assert_true(more[i] != KMM_PHYS_NONE);
        assert_int_equal(more[i] / ((uint64_t)ps << ro), phys / ((uint64_t)ps << ro));   /* same chunk */
    }
    stats_of(mm, &st);
    assert_int_equal(st.unmap_calls, 1);
    for (int i = 0; i < 8; i++)
        kmm_unmapped_free(mm, more[i]);
    kmm_unmapped_free(mm, phys);
    stats_of(mm, &st);
    assert_int_equal(st.free[ro], 1);   /* merged back whole */
    assert_int_equal(st.pages_beside, (size_t)1 << ro);   /* the next refill's block, still mapped */
    assert_int_equal(kmm_unmapped_shrink(mm, 0), (size_t)2 << ro);
    stats_of(mm, &st);
    assert_int_equal(st.released[ro], 1);
    assert_int_equal(st.restore_calls, 1);
    finish(mm);
}

/* ---- fallback when no 2 MiB block is free ------------------------------------------- */

static void test_fallback_fragmented(void **state)
{
    (void)state;
    const size_t ps = 4096;
    struct kmm *mm = kmm_test_create(ps, 16 * MiB);
    /* every page taken, then every other group of 8 given back: the largest
     * free block is order 3 */
    size_t cap = (16 * MiB) / ps, n = 0;
    void **pages = malloc(cap * sizeof(*pages));
    assert_non_null(pages);
    while (n < cap && (pages[n] = kmm_alloc_pages(mm, 0, 0)) != NULL)
        n++;
    assert_true(n > 1000);
    for (size_t i = 0; i < n; i++) {
        if ((kmm_virt_to_phys(mm, pages[i]) / ps) % 16 < 8) {
            kmm_free_pages(mm, pages[i]);
            pages[i] = NULL;
        }
    }
    kmm_drain(mm);
    kmm_phys_t phys = kmm_unmapped_alloc(mm, 0, 0);
    assert_true(phys != KMM_PHYS_NONE);
    struct kmm_unmapped_stats st;
    stats_of(mm, &st);
    assert_int_equal(st.chunks, 1);
    assert_int_equal(st.cached[3], 1);
    assert_int_equal(st.cached[refill_order(ps)], 0);
    assert_int_equal(st.pages_held, 8);
    expect_maps_match(mm);
    /* an order the fragments cannot hold fails cleanly; on its way the
     * failing refill ran the shrinkers, the cache's own among them, which
     * may have given back the chunk's free pieces (nothing else to merge) */
    assert_true(kmm_unmapped_alloc(mm, 5, 0) == KMM_PHYS_NONE);
    assert_int_equal(kmm_check(mm), 0);
    stats_of(mm, &st);
    size_t left = st.pages_free;
    assert_true(left <= 7);
    kmm_unmapped_free(mm, phys);
    assert_int_equal(kmm_unmapped_shrink(mm, 0), left + 1);
    stats_of(mm, &st);
    assert_int_equal(st.pages_held, 0);
    for (size_t i = 0; i < n; i++)
        if (pages[i])
            kmm_free_pages(mm, pages[i]);
    free(pages);
    finish(mm);
}

/* ---- shrink: whole chunks first, then pieces ------------------------------------------ */

static void test_shrink_order(void **state)
{
    (void)state;
    const size_t ps = 4096;
    unsigned ro = refill_order(ps);
    size_t chunk = (size_t)1 << ro;
    struct kmm *mm = kmm_test_create(ps, 32 * MiB);
    /* two chunks: A fully used but one page, B with one page used */
    size_t n = chunk + 1;
    kmm_phys_t *got = malloc(n * sizeof(*got));
    assert_non_null(got);
    for (size_t i = 0; i < n; i++) {
        got[i] = kmm_unmapped_alloc(mm, 0, KMM_NOZERO);
        assert_true(got[i] != KMM_PHYS_NONE);
    }
    struct kmm_unmapped_stats st;
    stats_of(mm, &st);
    assert_int_equal(st.chunks, 2);
    /* B (the chunk of the last page) becomes wholly free; A keeps all but its first page */
    kmm_unmapped_free(mm, got[n - 1]);
    kmm_unmapped_free(mm, got[0]);
    expect_maps_match(mm);
    stats_of(mm, &st);
    size_t mappings_before = st.direct_map_mappings;
    struct kmm_page_stats pst0, pst1;
    kmm_drain(mm);
    kmm_page_stats(mm, &pst0);
    /* asked for one chunk's worth beyond the block held beside: that block
     * and the whole free chunk, not A's free page */
    size_t beside = st.pages_beside;
    assert_int_equal(beside, chunk);
    assert_int_equal(kmm_unmapped_shrink(mm, chunk + beside), chunk + beside);
    kmm_drain(mm);
    kmm_page_stats(mm, &pst1);
    assert_int_equal(pst1.free_pages, pst0.free_pages + chunk + beside);
    stats_of(mm, &st);
    assert_int_equal(st.released[ro], 1);
    assert_int_equal(st.chunks, 1);
    assert_int_equal(st.pages_free, 1);
    assert_true(st.direct_map_mappings <= mappings_before);
    expect_maps_match(mm);
    /* and the page allocator has it: a 2 MiB block again */
    void *again = kmm_alloc_pages(mm, ro, 0);
    assert_non_null(again);
    kmm_free_pages(mm, again);
    /* now pieces: A's free page, given back alone, splits the direct map */
    assert_int_equal(kmm_unmapped_shrink(mm, 0), 1);
    stats_of(mm, &st);
    assert_int_equal(st.released[0], 1);
    assert_int_equal(st.pages_held, chunk - 1);
    expect_maps_match(mm);
    assert_int_equal(kmm_check(mm), 0);
    /* free a run of A: merged blocks go back as blocks, and once all of A
     * is free the remaining pieces go back and the chunk is gone */
    for (size_t i = 1; i < n - 1; i++)
        kmm_unmapped_free(mm, got[i]);
    assert_int_equal(kmm_check(mm), 0);
    assert_int_equal(kmm_unmapped_shrink(mm, 0), chunk - 1);
    stats_of(mm, &st);
    assert_int_equal(st.chunks, 0);
    assert_int_equal(st.pages_held, 0);
    assert_int_equal(st.direct_map_mappings, 1);
    expect_maps_match(mm);
    /* every page back */
    struct kmm_page_stats pst;
    kmm_drain(mm);
    kmm_page_stats(mm, &pst);
    assert_int_equal(pst.allocated_pages, 0);
    free(got);
    finish(mm);
}

/* ---- the shrinker: a page allocation that would fail succeeds ------------------------------ */

/* All of memory taken into the cache, then freed there: the page allocator
 * has nothing, and only the cache's shrinker can give it a 2 MiB block. */
static void test_shrinker_gives_back(void **state)
{
    (void)state;
    const size_t ps = 4096;
    unsigned ro = refill_order(ps);
    struct kmm *mm = kmm_test_create(ps, 16 * MiB);
    size_t cap = (16 * MiB) >> (12 + ro), n = 0;
    kmm_phys_t *got = malloc((cap + 1) * sizeof(*got));
    assert_non_null(got);
    while (n <= cap && (got[n] = kmm_unmapped_alloc(mm, ro, KMM_NOZERO)) != KMM_PHYS_NONE)
        n++;
    assert_true(n >= cap - 2);
    for (size_t i = 0; i < n; i++)
        kmm_unmapped_free(mm, got[i]);
    struct kmm_unmapped_stats st;
    stats_of(mm, &st);
    size_t held = st.pages_held, released = st.released[ro];
    assert_true(held >= (n << ro));
    void *p = kmm_alloc_pages(mm, ro, 0);
    assert_non_null(p);
    stats_of(mm, &st);
    assert_true(st.released[ro] > released);
    assert_true(st.pages_held < held);
    expect_maps_match(mm);
    memset(p, 0x5a, ps << ro);   /* mapped again in the direct map */
    assert_int_equal(kmm_check(mm), 0);
    kmm_free_pages(mm, p);
    free(got);
    finish(mm);
}

/* ---- a chunk given back in pieces, then reused ------------------------------------------- */

static void test_pieces_then_whole(void **state)
{
    (void)state;
    const size_t ps = 4096;
    unsigned ro = refill_order(ps);
    struct kmm *mm = kmm_test_create(ps, 1 * GiB);
    kmm_phys_t a = kmm_unmapped_alloc(mm, 0, 0);
    kmm_phys_t b = kmm_unmapped_alloc(mm, 3, 0);
    assert_true(a != KMM_PHYS_NONE && b != KMM_PHYS_NONE);
    /* the free blocks of the chunk of orders 4..8 only */
    size_t want = (((size_t)1 << ro) - 16);
    assert_int_equal(kmm_unmapped_shrink(mm, want), want);
    expect_maps_match(mm);
    assert_int_equal(kmm_check(mm), 0);
    /* the rest: the free pages 1..7 and the freed blocks join back as blocks */
    kmm_unmapped_free(mm, b);
    kmm_unmapped_free(mm, a);
    assert_int_equal(kmm_check(mm), 0);
    struct kmm_unmapped_stats st;
    stats_of(mm, &st);
    assert_int_equal(st.pages_held, 16);
    assert_int_equal(st.free[4], 1);
    /* an allocation reuses the pieces before taking a new chunk */
    kmm_phys_t c = kmm_unmapped_alloc(mm, 4, 0);
    assert_true(c != KMM_PHYS_NONE);
    stats_of(mm, &st);
    assert_int_equal(st.unmap_calls, 1);
    kmm_unmapped_free(mm, c);
    stats_of(mm, &st);
    assert_int_equal(kmm_unmapped_shrink(mm, 0), 16 + st.pages_beside);
    stats_of(mm, &st);
    assert_int_equal(st.chunks, 0);
    expect_maps_match(mm);
    finish(mm);
}

/* ---- the naive way ---------------------------------------------------------------------- */

static int cmp_phys(const void *a, const void *b)
{
    kmm_phys_t x = *(const kmm_phys_t *)a, y = *(const kmm_phys_t *)b;
    return x < y ? -1 : x > y;
}

static void test_nocache_splits(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = kmm_test_create(ps, 1 * GiB);
    enum { N = 8 };
    kmm_phys_t got[N], sorted[N];
    void *spacer[N];
    for (int i = 0; i < N; i++) {
        got[i] = kmm_unmapped_alloc(mm, 0, KMM_UNMAPPED_NOCACHE);
        assert_true(got[i] != KMM_PHYS_NONE);
        spacer[i] = kmm_alloc_pages(mm, 0, 0);   /* keeps the next one apart, most likely */
        assert_non_null(spacer[i]);
    }
    memcpy(sorted, got, sizeof got);
    qsort(sorted, N, sizeof sorted[0], cmp_phys);
    size_t runs = 1;
    for (int i = 1; i < N; i++)
        runs += sorted[i] != sorted[i - 1] + ps;
    struct kmm_unmapped_stats st;
    stats_of(mm, &st);
    assert_int_equal(st.pages_nocache, N);
    assert_int_equal(st.unmap_calls, N);
    assert_int_equal(st.chunks, 0);
    assert_true(runs >= 2);
    /* each run strictly inside the range: two more mappings */
    assert_int_equal(st.direct_map_mappings, 1 + 2 * runs);
    expect_maps_match(mm);
    assert_int_equal(kmm_check(mm), 0);
    /* the same count of pages through the cache: one hole */
    kmm_phys_t cached[N];
    for (int i = 0; i < N; i++)
        cached[i] = kmm_unmapped_alloc(mm, 0, 0);
    stats_of(mm, &st);
    assert_int_equal(st.direct_map_mappings, 1 + 2 * runs + 2);
    expect_maps_match(mm);
    for (int i = 0; i < N; i++) {
        kmm_unmapped_free(mm, got[i]);
        kmm_unmapped_free(mm, cached[i]);
        kmm_free_pages(mm, spacer[i]);
    }
    stats_of(mm, &st);
    assert_int_equal(st.pages_nocache, 0);
    assert_int_equal(st.restore_calls, N);
    assert_int_equal(st.direct_map_mappings, 3);
    expect_maps_match(mm);
    finish(mm);
}

/* ---- flags, an area mask ------------------------------------------------------------------ */

static void test_flags_and_areas(void **state)
{
    (void)state;
    struct kmm *mm = kmm_test_create(4096, 1 * GiB);
    errno = 0;
    assert_true(kmm_unmapped_alloc(mm, 0, 1u << 20) == KMM_PHYS_NONE);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_true(kmm_unmapped_alloc(mm, KMM_MAX_ORDER + 1, 0) == KMM_PHYS_NONE);
    assert_int_equal(errno, EINVAL);
    /* a block in the lowest area, then one anywhere: the cache serves the
     * second from the first chunk when its area is accepted */
    kmm_phys_t low = kmm_unmapped_alloc(mm, 0, KMM_AREA_LOWEST);
    assert_true(low != KMM_PHYS_NONE);
    assert_true(low < 16 * MiB);
    kmm_phys_t any = kmm_unmapped_alloc(mm, 0, 0);
    assert_true(any != KMM_PHYS_NONE);
    kmm_unmapped_free(mm, low);
    kmm_unmapped_free(mm, any);
    assert_int_equal(kmm_check(mm), 0);
    finish(mm);
}

/* ---- fork: the child inherits the cache ---------------------------------------------------- */

static void fork_child_uses_cache(void *arg)
{
    struct kmm *mm = arg;
    kmm_phys_t p = kmm_unmapped_alloc(mm, 1, 0);
    if (p == KMM_PHYS_NONE || kmm_check(mm) != 0)
        exit(2);
    kmm_unmapped_free(mm, p);
    if (kmm_unmapped_shrink(mm, 0) == 0 || kmm_check(mm) != 0)
        exit(3);
    exit(0);
}

static void test_fork_inherits(void **state)
{
    (void)state;
    struct kmm *mm = kmm_test_create(4096, 1 * GiB);
    kmm_phys_t held = kmm_unmapped_alloc(mm, 0, 0);
    assert_true(held != KMM_PHYS_NONE);
    char out[1024];
    int status = kmm_test_run_child(fork_child_uses_cache, mm, out, sizeof out);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        kmm_test_describe_child(status, out);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    kmm_unmapped_free(mm, held);
    finish(mm);
}

/* ---- the static platform has no direct-map hooks ---------------------------------------------- */

static _Alignas(1 << 22) unsigned char static_memory[8u << 20];

static void static_fatal(void *ctx, const char *msg)
{
    (void)ctx;
    fprintf(stderr, "fatal: %s\n", msg);
    abort();
}

static void test_static_enosys(void **state)
{
    (void)state;
    uintptr_t base = (uintptr_t)static_memory;
    struct kmm_memory mem = { .direct_map = 0, .nr_ranges = 1, .ranges = { { base, base + sizeof static_memory } } };
    struct kmm_platform pf;
    kmm_platform_static(&pf, &mem, static_fatal, NULL);
    struct kmm_config cfg = { .page_size = 4096, .platform = &pf };
    struct kmm *mm = kmm_create(&cfg);
    assert_non_null(mm);
    assert_true(kmm_unmapped_alloc(mm, 0, 0) == KMM_PHYS_NONE);
    assert_int_equal(kmm_unmapped_shrink(mm, 0), 0);
    struct kmm_unmapped_stats st;
    kmm_unmapped_stats(mm, &st);
    assert_int_equal(st.pages_held, 0);
    assert_int_equal(st.direct_map_mappings, 1);
    finish(mm);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        KMM_TEST_PER_PAGE_SIZE(test_alias_faults),
        KMM_TEST_PER_PAGE_SIZE(test_zeroed_unless_nozero),
        KMM_TEST_PER_PAGE_SIZE(test_every_order),
        KMM_TEST_PER_PAGE_SIZE(test_refill_stats),
        cmocka_unit_test(test_fallback_fragmented),
        cmocka_unit_test(test_shrink_order),
        cmocka_unit_test(test_shrinker_gives_back),
        cmocka_unit_test(test_pieces_then_whole),
        KMM_TEST_PER_PAGE_SIZE(test_nocache_splits),
        cmocka_unit_test(test_flags_and_areas),
        cmocka_unit_test(test_fork_inherits),
        cmocka_unit_test(test_static_enosys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
