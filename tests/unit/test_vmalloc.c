/* Unit tests of the virtual-memory layer (include/kmm/vm.h): kmm_vmalloc,
 * kmm_vmalloc_aligned, kmm_vmap/kmm_vunmap, kmm_vmalloc_to_phys,
 * kmm_kvmalloc/kmm_kvfree, kmm_free/kmm_realloc/kmm_usable_size of vmalloc
 * memory, lazy and strict freeing, the mapping limit, the stats and the
 * vmallocinfo listing, through the public API only.
 *
 * Every test ends with kmm_check(mm) == 0. Most run at page sizes of 4 KiB,
 * 16 KiB and 64 KiB (the test name says which). Memory systems are sparse
 * (pages cost nothing until touched), so 1 GiB of "physical memory" is cheap.
 *
 * Misuse (bad frees, faults past the end) is tested in test_vmalloc_abuse.c,
 * where each case runs in a child process. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kmm_test.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

#define MAX_INFO 1024

/* ---- helpers ------------------------------------------------------------------ */

/* Sparse; default areas: [0,16M) [16M,1G). The default vmalloc space would
 * be 2 GiB; most tests ask for 128 MiB (config.vmalloc_size), which is all
 * they need and keeps kmm_destroy cheap under ASan, where it unpoisons the
 * whole space. The tests of the default space use create_mm_default. */
static struct kmm *create_mm_default(size_t ps)
{
    return kmm_test_create(ps, 1 * GiB);
}

static struct kmm *create_mm(size_t ps)
{
    struct kmm_config cfg = { .page_size = ps, .mem_size = 1 * GiB, .vmalloc_size = 128 * MiB };
    struct kmm *mm = kmm_create(&cfg);
    assert_non_null(mm);
    return mm;
}

static struct kmm *create_cfg(size_t ps, uint64_t mem, uint64_t vmalloc_size, size_t max_mappings, unsigned vflags)
{
    struct kmm_config cfg = {
        .page_size = ps,
        .mem_size = mem,
        .vmalloc_size = vmalloc_size,
        .vmalloc_max_mappings = max_mappings,
        .vmalloc_flags = vflags,
    };
    struct kmm *mm = kmm_create(&cfg);
    assert_non_null(mm);
    return mm;
}

static void finish(struct kmm *mm)
{
    assert_int_equal(kmm_check(mm), 0);
    kmm_destroy(mm);
}

static struct kmm_vmalloc_stats vstats(struct kmm *mm)
{
    struct kmm_vmalloc_stats st;
    kmm_vmalloc_stats(mm, &st);
    return st;
}

static size_t free_pages(struct kmm *mm)
{
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    return st.free_pages;
}

static size_t round_up(size_t v, size_t to)
{
    return (v + to - 1) / to * to;
}

static size_t pages_of(size_t size, size_t ps)
{
    return round_up(size, ps) / ps;
}

/* (cmocka is called only on a mismatch: an assertion per byte would make
 * the MiB-sized checks slow) */
static void assert_pattern(const void *p, size_t len, unsigned seed)
{
    assert_true(kmm_test_filled(p, len, seed));
}

static void assert_bytes(const void *p, size_t len, unsigned char value)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < len; i++) {
        if (c[i] != value) {
            fprintf(stderr, "%p + %zu: %#x, expected %#x\n", p, i, c[i], value);
            assert_int_equal(c[i], value);
        }
    }
}

/* Every page of [p, p + len) has a frame, and that frame, read through the
 * direct map, holds what was written through p (and the other way round). */
static void assert_backed_by_frames(struct kmm *mm, void *p, size_t len, size_t ps)
{
    unsigned char *c = p;
    for (size_t off = 0; off < len; off += ps) {
        kmm_phys_t phys = kmm_vmalloc_to_phys(mm, c + off);
        assert_true(phys != KMM_PHYS_NONE);
        assert_int_equal(phys % ps, 0);
        unsigned char *direct = kmm_phys_to_virt(mm, phys);
        assert_non_null(direct);
        /* an offset inside the page maps to the same offset in the frame */
        size_t in = (off / ps * 37 + 11) % ps;
        assert_true(kmm_vmalloc_to_phys(mm, c + off + in) == phys + in);
        unsigned char saved = c[off + in];
        c[off + in] = (unsigned char)(saved + 1);
        assert_int_equal(direct[in], (unsigned char)(saved + 1));
        direct[in] = (unsigned char)(saved + 2);
        assert_int_equal(c[off + in], (unsigned char)(saved + 2));
        c[off + in] = saved;   /* the caller's contents are left as they were */
    }
}

struct info_list {
    size_t n;
    struct kmm_vmalloc_area_info a[MAX_INFO];
};

static void info_collect(void *arg, const struct kmm_vmalloc_area_info *a)
{
    struct info_list *l = arg;
    if (l->n < MAX_INFO)
        l->a[l->n] = *a;
    l->n++;
}

/* The vmallocinfo listing now; the caller frees it. */
static struct info_list *info_get(struct kmm *mm)
{
    struct info_list *l = calloc(1, sizeof(*l));
    assert_non_null(l);
    kmm_vmalloc_info(mm, info_collect, l);
    assert_true(l->n <= MAX_INFO);
    return l;
}

/* The listing's entry for the area starting at p (must exist). */
static struct kmm_vmalloc_area_info info_of(struct kmm *mm, const void *p)
{
    struct info_list *l = info_get(mm);
    struct kmm_vmalloc_area_info found = { 0 };
    bool seen = false;
    for (size_t i = 0; i < l->n; i++) {
        if (l->a[i].start == (uintptr_t)p) {
            assert_false(seen);
            found = l->a[i];
            seen = true;
        }
    }
    free(l);
    if (!seen)
        fprintf(stderr, "no vmallocinfo entry for %p\n", p);
    assert_true(seen);
    return found;
}

static bool info_has(struct kmm *mm, const void *p)
{
    struct info_list *l = info_get(mm);
    bool seen = false;
    for (size_t i = 0; i < l->n; i++)
        seen |= l->a[i].start == (uintptr_t)p;
    free(l);
    return seen;
}

/* ---- sizes, alignment, zeroing ------------------------------------------------------ */

/* Any size: page aligned, in the vmalloc space, writable over the whole
 * rounded size, followed by an unmapped guard page; areas never overlap. */
static void test_vmalloc_sizes(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    const size_t sizes[] = { 1, 2, ps - 1, ps, ps + 1, 3 * ps + 17, 64 * KiB, 100000, 4 * MiB + 123 };
    enum { N = sizeof(sizes) / sizeof(sizes[0]) };
    void *p[N];
    size_t total_pages = 0;
    for (size_t i = 0; i < N; i++) {
        p[i] = kmm_vmalloc(mm, sizes[i], 0);
        assert_non_null(p[i]);
        size_t rounded = round_up(sizes[i], ps);
        assert_int_equal((uintptr_t)p[i] % ps, 0);
        assert_true(kmm_is_vmalloc_addr(mm, p[i]));
        assert_true(kmm_is_vmalloc_addr(mm, (char *)p[i] + rounded - 1));
        assert_int_equal(kmm_usable_size(mm, p[i]), rounded);
        kmm_test_fill(p[i], rounded, (unsigned)i);
        assert_true(kmm_vmalloc_to_phys(mm, (char *)p[i] + rounded - 1) != KMM_PHYS_NONE);
        assert_true(kmm_vmalloc_to_phys(mm, (char *)p[i] + rounded) == KMM_PHYS_NONE);   /* guard */
        struct kmm_vmalloc_area_info a = info_of(mm, p[i]);
        assert_int_equal(a.size, sizes[i]);
        assert_int_equal(a.pages, rounded / ps);
        assert_int_equal(a.end, a.start + rounded + ps);
        assert_string_equal(a.kind, "vmalloc");
        total_pages += rounded / ps;
    }
    /* every area still holds its own pattern: nothing overlapped */
    for (size_t i = 0; i < N; i++)
        assert_pattern(p[i], round_up(sizes[i], ps), (unsigned)i);
    struct kmm_vmalloc_stats st = vstats(mm);
    assert_int_equal(st.areas, N);
    assert_int_equal(st.pages, total_pages);
    assert_int_equal(st.allocs, N);
    assert_int_equal(kmm_check(mm), 0);
    for (size_t i = 0; i < N; i++)
        kmm_vfree(mm, p[i]);
    kmm_vmalloc_purge(mm);
    st = vstats(mm);
    assert_int_equal(st.areas, 0);
    assert_int_equal(st.pages, 0);
    assert_int_equal(st.frees, N);
    finish(mm);
}

/* KMM_ZERO: zeros from fresh memory, and zeros again when the new area
 * takes back a lazily freed area of the same size that was dirtied. */
static void test_vmalloc_zero(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    const size_t sizes[] = { 1, 3 * ps, 64 * KiB + 5, 1 * MiB };
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        size_t size = sizes[s], rounded = round_up(size, ps);
        unsigned char *p = kmm_vmalloc(mm, size, KMM_ZERO);
        assert_non_null(p);
        assert_bytes(p, rounded, 0);
        memset(p, 0xa5, rounded);
        kmm_vfree(mm, p);   /* lazy: still mapped, still dirty */
        unsigned char *q = kmm_vmalloc(mm, size, KMM_ZERO);
        assert_non_null(q);
        assert_bytes(q, rounded, 0);
        memset(q, 0x5a, rounded);
        kmm_vfree(mm, q);
    }
    finish(mm);
}

/* KMM_ZERO from frames an earlier area dirtied and gave back (purged). The
 * first area takes most of a small memory, so the second must reuse many of
 * its frames: the test cannot pass by drawing only fresh frames. */
static void test_vmalloc_zero_reused_frames(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    size_t mem = 16 * MiB, nframes = mem / ps;
    struct kmm *mm = create_cfg(ps, mem, 128 * MiB, 0, 0);
    kmm_vfree(mm, kmm_vmalloc(mm, ps, 0));   /* the space and its node cache exist */
    kmm_vmalloc_purge(mm);
    kmm_drain(mm);
    size_t fp = free_pages(mm);
    size_t n = fp - fp / 8;   /* room left for the slab pages the layer needs */
    unsigned char *p = kmm_vmalloc(mm, n * ps, 0);
    assert_non_null(p);
    memset(p, 0xa5, n * ps);
    unsigned char *dirty = calloc(nframes, 1);
    assert_non_null(dirty);
    for (size_t i = 0; i < n; i++) {
        kmm_phys_t phys = kmm_vmalloc_to_phys(mm, p + i * ps);
        assert_true(phys / ps < nframes);
        dirty[phys / ps] = 1;
    }
    kmm_vfree(mm, p);
    assert_int_equal(kmm_vmalloc_purge(mm), n);

    unsigned char *q = kmm_vmalloc(mm, n * ps, KMM_ZERO);
    assert_non_null(q);
    size_t reused = 0;
    for (size_t i = 0; i < n; i++)
        reused += dirty[kmm_vmalloc_to_phys(mm, q + i * ps) / ps];
    assert_true(reused >= n - fp / 8);   /* by counting: at most fp - n frames were not dirtied */
    assert_bytes(q, n * ps, 0);
    kmm_vfree(mm, q);
    free(dirty);
    finish(mm);
}

static void test_vmalloc_aligned(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm_default(ps);
    /* something first, so that the aligned areas cannot all sit at the
     * (well aligned) start of the space by luck */
    void *first = kmm_vmalloc(mm, ps, 0);
    assert_non_null(first);
    assert_int_equal(vstats(mm).space_bytes, 2 * GiB);   /* default: 2 x memory */
    const size_t aligns[] = { 64 * KiB, 2 * MiB };
    const size_t sizes[] = { 1, 3 * ps + 1, 64 * KiB };
    void *p[6];
    size_t k = 0;
    for (size_t a = 0; a < 2; a++) {
        for (size_t s = 0; s < 3; s++, k++) {
            p[k] = kmm_vmalloc_aligned(mm, sizes[s], aligns[a], 0);
            assert_non_null(p[k]);
            assert_int_equal((uintptr_t)p[k] % aligns[a], 0);
            size_t rounded = round_up(sizes[s], ps);
            kmm_test_fill(p[k], rounded, (unsigned)k);
            assert_true(kmm_vmalloc_to_phys(mm, (char *)p[k] + rounded) == KMM_PHYS_NONE);
            assert_int_equal(kmm_usable_size(mm, p[k]), rounded);
        }
    }
    for (size_t i = 0; i < k; i++)
        assert_pattern(p[i], round_up(sizes[i % 3], ps), (unsigned)i);

    /* 1 GiB: the 2 GiB space holds one such address past its start (taken),
     * so one at a time, each freed and purged before the next */
    for (size_t s = 0; s < 3; s++) {
        void *g = kmm_vmalloc_aligned(mm, sizes[s], 1 * GiB, 0);
        assert_non_null(g);
        assert_int_equal((uintptr_t)g % GiB, 0);
        size_t rounded = round_up(sizes[s], ps);
        kmm_test_fill(g, rounded, 40);
        assert_pattern(g, rounded, 40);
        assert_true(kmm_vmalloc_to_phys(mm, (char *)g + rounded) == KMM_PHYS_NONE);
        kmm_vfree(mm, g);
        kmm_vmalloc_purge(mm);
    }

    /* below a page means a page */
    const size_t small[] = { 0, 1, 2, 16, 512, ps / 2 };
    for (size_t i = 0; i < sizeof(small) / sizeof(small[0]); i++) {
        void *q = kmm_vmalloc_aligned(mm, 100, small[i], 0);
        assert_non_null(q);
        assert_int_equal((uintptr_t)q % ps, 0);
        memset(q, 1, ps);
        kmm_vfree(mm, q);
    }

    /* not a power of two: refused */
    struct kmm_vmalloc_stats before = vstats(mm);
    const size_t bad[] = { 3, 3 * ps, 12345, 96 * KiB, GiB + ps };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        errno = 0;
        assert_null(kmm_vmalloc_aligned(mm, ps, bad[i], 0));
        assert_int_equal(errno, EINVAL);
    }
    /* an alignment larger than the space cannot be met */
    errno = 0;
    assert_null(kmm_vmalloc_aligned(mm, ps, (size_t)1 << 40, 0));
    assert_int_equal(errno, ENOMEM);
    struct kmm_vmalloc_stats after = vstats(mm);
    assert_int_equal(after.areas, before.areas);
    assert_int_equal(after.allocs, before.allocs);

    for (size_t i = 0; i < k; i++)
        kmm_vfree(mm, p[i]);
    kmm_vfree(mm, first);
    finish(mm);
}

/* ---- kmm_vmalloc_to_phys -------------------------------------------------------------- */

/* Every page's frame is what the direct map sees, at every offset, and the
 * frames of one area are distinct. */
static void test_vmalloc_to_phys(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    size_t n = 37;
    unsigned char *p = kmm_vmalloc(mm, n * ps - 5, 0);
    assert_non_null(p);
    assert_backed_by_frames(mm, p, n * ps, ps);
    kmm_phys_t *phys = calloc(n, sizeof(*phys));
    assert_non_null(phys);
    for (size_t i = 0; i < n; i++) {
        phys[i] = kmm_vmalloc_to_phys(mm, p + i * ps);
        for (size_t j = 0; j < i; j++)
            assert_true(phys[j] != phys[i]);
    }
    /* the whole area, written through vmalloc, reads back through the frames */
    kmm_test_fill(p, n * ps, 9);
    for (size_t i = 0; i < n; i++) {
        const unsigned char *direct = kmm_phys_to_virt(mm, phys[i]);
        for (size_t b = 0; b < ps; b += 97)
            assert_int_equal(direct[b], kmm_test_fill_byte(i * ps + b, 9));
    }
    free(phys);
    kmm_vfree(mm, p);
    finish(mm);
}

/* Addresses that are not in a live area have no frame. */
static void test_vmalloc_to_phys_none(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    int local = 0;
    void *direct = kmm_malloc(mm, 100, 0);
    assert_non_null(direct);
    /* before the space exists */
    assert_true(kmm_vmalloc_to_phys(mm, &local) == KMM_PHYS_NONE);
    assert_true(kmm_vmalloc_to_phys(mm, direct) == KMM_PHYS_NONE);
    assert_true(kmm_vmalloc_to_phys(mm, NULL) == KMM_PHYS_NONE);

    unsigned char *p = kmm_vmalloc(mm, 4 * ps, 0);
    assert_non_null(p);
    assert_true(kmm_vmalloc_to_phys(mm, &local) == KMM_PHYS_NONE);
    assert_true(kmm_vmalloc_to_phys(mm, direct) == KMM_PHYS_NONE);
    assert_true(kmm_vmalloc_to_phys(mm, NULL) == KMM_PHYS_NONE);
    assert_true(kmm_vmalloc_to_phys(mm, p + 4 * ps) == KMM_PHYS_NONE);            /* guard */
    assert_true(kmm_vmalloc_to_phys(mm, p + 5 * ps - 1) == KMM_PHYS_NONE);        /* guard's last byte */
    assert_true(kmm_vmalloc_to_phys(mm, p + 1000 * ps) == KMM_PHYS_NONE);         /* a free range */
    kmm_vfree(mm, p);
    assert_true(kmm_vmalloc_to_phys(mm, p) == KMM_PHYS_NONE);                     /* freed, not yet purged */
    kmm_vmalloc_purge(mm);
    assert_true(kmm_vmalloc_to_phys(mm, p) == KMM_PHYS_NONE);
    kmm_free(mm, direct);
    finish(mm);
}

static void test_is_vmalloc_addr(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_cfg(ps, 64 * MiB, 0, 0, 0);
    int local = 0;
    void *direct = kmm_malloc(mm, 100, 0);
    assert_non_null(direct);
    assert_false(kmm_is_vmalloc_addr(mm, direct));   /* no space yet */
    assert_false(kmm_is_vmalloc_addr(mm, &local));
    char *p = kmm_vmalloc(mm, 10 * ps, 0);
    assert_non_null(p);
    assert_true(kmm_is_vmalloc_addr(mm, p));
    assert_true(kmm_is_vmalloc_addr(mm, p + 10 * ps - 1));
    assert_true(kmm_is_vmalloc_addr(mm, p + 10 * ps));   /* the guard is in the space too */
    assert_false(kmm_is_vmalloc_addr(mm, direct));
    assert_false(kmm_is_vmalloc_addr(mm, &local));
    assert_false(kmm_is_vmalloc_addr(mm, NULL));
    struct kmm_vmalloc_stats st = vstats(mm);
    assert_int_equal(st.space_bytes, 1 * GiB);   /* default: 2 x memory (64 MiB), at least 1 GiB */
    kmm_vfree(mm, p);
    kmm_free(mm, direct);
    finish(mm);
}

/* ---- runs: physically contiguous pages, one map call ------------------------------------ */

/* Memory not fragmented: each area is one physically contiguous run mapped
 * by exactly one call, and counts one run plus one against the limit. */
static void test_unfragmented_one_run(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    const size_t sizes[] = { 64 * KiB, 3 * ps, 2 * MiB, 64 * KiB + 1 };
    void *p[4];
    for (size_t i = 0; i < 4; i++) {
        struct kmm_vmalloc_stats before = vstats(mm);
        p[i] = kmm_vmalloc(mm, sizes[i], 0);
        assert_non_null(p[i]);
        struct kmm_vmalloc_stats after = vstats(mm);
        assert_int_equal(after.map_calls - before.map_calls, 1);
        if (i > 0)   /* the first one also made the space (its reservation counts one) */
            assert_int_equal(after.mappings - before.mappings, 2);
        struct kmm_vmalloc_area_info a = info_of(mm, p[i]);
        assert_int_equal(a.runs, 1);
        size_t n = pages_of(sizes[i], ps);
        kmm_phys_t base = kmm_vmalloc_to_phys(mm, p[i]);
        for (size_t k = 0; k < n; k++)
            assert_true(kmm_vmalloc_to_phys(mm, (char *)p[i] + k * ps) == base + k * ps);
        kmm_test_fill(p[i], n * ps, (unsigned)i);
    }
    for (size_t i = 0; i < 4; i++) {
        assert_pattern(p[i], pages_of(sizes[i], ps) * ps, (unsigned)i);
        kmm_vfree(mm, p[i]);
    }
    finish(mm);
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

/* Physical memory fragmented to single free pages (every other page held):
 * a 64 KiB area still works, made of one run per page, one map call each. */
static void test_fragmented_one_run_per_page(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_cfg(ps, 64 * MiB, 128 * MiB, 0, 0);
    /* make the space and its node cache first, before memory is scarce */
    kmm_vfree(mm, kmm_vmalloc(mm, ps, 0));
    kmm_vmalloc_purge(mm);
    kmm_drain(mm);

    size_t max = 64 * MiB / ps, n = 0;
    void **pg = calloc(max, sizeof(*pg));
    assert_non_null(pg);
    while (n < max && (pg[n] = kmm_alloc_pages(mm, 0, 0)) != NULL)
        n++;
    assert_true(n > max / 2);
    /* free every other page in physical order: no two free pages touch */
    qsort(pg, n, sizeof(*pg), cmp_ptr);
    size_t freed = 0;
    for (size_t i = 1; i < n; i += 2, freed++) {
        kmm_free_pages(mm, pg[i]);
        pg[i] = NULL;
    }
    kmm_drain(mm);
    assert_true(free_pages(mm) >= freed);

    size_t want = 64 * KiB / ps;
    struct kmm_vmalloc_stats before = vstats(mm);
    unsigned char *p = kmm_vmalloc(mm, 64 * KiB, 0);
    assert_non_null(p);
    struct kmm_vmalloc_stats after = vstats(mm);
    struct kmm_vmalloc_area_info a = info_of(mm, p);
    assert_int_equal(a.pages, want);
    assert_int_equal(a.runs, want);
    assert_int_equal(after.map_calls - before.map_calls, want);
    assert_int_equal(after.mappings - before.mappings, want + 1);
    for (size_t k = 1; k < want; k++)
        assert_true(kmm_vmalloc_to_phys(mm, p + k * ps) != kmm_vmalloc_to_phys(mm, p + (k - 1) * ps) + ps);
    assert_backed_by_frames(mm, p, want * ps, ps);
    kmm_test_fill(p, want * ps, 3);
    assert_pattern(p, want * ps, 3);
    assert_int_equal(kmm_check(mm), 0);

    /* and a realloc growth there, page by page too */
    unsigned char *q = kmm_realloc(mm, p, 2 * want * ps, 0);
    assert_non_null(q);
    assert_pattern(q, want * ps, 3);
    memset(q + want * ps, 7, want * ps);
    assert_int_equal(kmm_check(mm), 0);
    kmm_vfree(mm, q);
    kmm_vmalloc_purge(mm);

    /* kmm_kvmalloc up to a page still works here: kmm_malloc's slabs may
     * need contiguous pages there are none of, and then a one-page vmalloc
     * area serves instead */
    const size_t kv[] = { 100, 1000, 2000, 3000, ps - 1, ps };
    void *kvp[6];
    for (size_t i = 0; i < 6; i++) {
        kvp[i] = kmm_kvmalloc(mm, kv[i], KMM_ZERO);
        if (!kvp[i])
            fprintf(stderr, "kmm_kvmalloc(%zu) failed in fragmented memory\n", kv[i]);
        assert_non_null(kvp[i]);
        assert_bytes(kvp[i], kv[i], 0);
        memset(kvp[i], 0x3c, kv[i]);
    }
    for (size_t i = 0; i < 6; i++)
        kmm_free(mm, kvp[i]);
    kmm_vmalloc_purge(mm);
    assert_int_equal(kmm_check(mm), 0);
    for (size_t i = 0; i < n; i += 2)
        kmm_free_pages(mm, pg[i]);
    free(pg);
    finish(mm);
}

/* ---- kmm_vmap ---------------------------------------------------------------------------- */

/* Caller pages, read-write: mapped in the order given, contents visible both
 * ways, frames as given; kmm_vunmap leaves them allocated and the caller's. */
static void test_vmap_rw(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    enum { N = 6 };
    unsigned char *direct[N];
    kmm_phys_t phys[N];
    for (int i = 0; i < N; i++) {
        direct[i] = kmm_alloc_pages(mm, 0, 0);
        assert_non_null(direct[i]);
        kmm_test_fill(direct[i], ps, (unsigned)i + 20);
    }
    /* given in reverse allocation order, to see the order is the caller's */
    for (int i = 0; i < N; i++)
        phys[i] = kmm_virt_to_phys(mm, direct[N - 1 - i]);
    unsigned char *v = kmm_vmap(mm, phys, N, KMM_PROT_READ | KMM_PROT_WRITE);
    assert_non_null(v);
    assert_int_equal((uintptr_t)v % ps, 0);
    assert_true(kmm_is_vmalloc_addr(mm, v));
    for (int i = 0; i < N; i++) {
        assert_true(kmm_vmalloc_to_phys(mm, v + (size_t)i * ps) == phys[i]);
        assert_true(kmm_vmalloc_to_phys(mm, v + (size_t)i * ps + 123) == phys[i] + 123);
        assert_pattern(v + (size_t)i * ps, ps, (unsigned)(N - 1 - i) + 20);
    }
    assert_true(kmm_vmalloc_to_phys(mm, v + N * ps) == KMM_PHYS_NONE);   /* guard */
    /* writes through the vmap are the caller's pages */
    for (int i = 0; i < N; i++)
        memset(v + (size_t)i * ps, 0x30 + i, ps);
    for (int i = 0; i < N; i++)
        assert_bytes(direct[N - 1 - i], ps, (unsigned char)(0x30 + i));

    struct kmm_vmalloc_stats st = vstats(mm);
    assert_int_equal(st.vmap_areas, 1);
    assert_int_equal(st.vmap_pages, N);
    assert_int_equal(st.areas, 0);
    struct kmm_vmalloc_area_info a = info_of(mm, v);
    assert_string_equal(a.kind, "vmap");
    assert_int_equal(a.pages, N);
    assert_int_equal(a.end, a.start + (N + 1) * ps);
    assert_int_equal(kmm_check(mm), 0);

    size_t fp = free_pages(mm);
    uint64_t unmaps = st.unmap_calls;
    kmm_vunmap(mm, v);
    st = vstats(mm);
    assert_int_equal(st.vmap_areas, 0);
    assert_int_equal(st.vmap_pages, 0);
    assert_int_equal(st.lazy_areas, 0);                 /* never lazy */
    assert_int_equal(st.unmap_calls - unmaps, 1);
    assert_true(kmm_vmalloc_to_phys(mm, v) == KMM_PHYS_NONE);
    assert_false(info_has(mm, v));
    assert_int_equal(free_pages(mm), fp);               /* no page went back */
    assert_int_equal(kmm_check(mm), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(kmm_page_alloc_size(mm, direct[i]), 1);
        assert_bytes(direct[i], ps, (unsigned char)(0x30 + (N - 1 - i)));
        kmm_free_pages(mm, direct[i]);
    }
    finish(mm);
}

static void test_vmap_ro(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    unsigned char *block = kmm_alloc_pages(mm, 2, 0);   /* 4 contiguous pages */
    assert_non_null(block);
    kmm_test_fill(block, 4 * ps, 5);
    kmm_phys_t base = kmm_virt_to_phys(mm, block);
    kmm_phys_t phys[4] = { base, base + ps, base + 2 * ps, base + 3 * ps };
    struct kmm_vmalloc_stats before = vstats(mm);
    const unsigned char *v = kmm_vmap(mm, phys, 4, KMM_PROT_READ);
    assert_non_null(v);
    struct kmm_vmalloc_stats after = vstats(mm);
    /* contiguous frames: one run, one map call (the first vmap also made the space) */
    assert_int_equal(after.map_calls - before.map_calls, 1);
    struct kmm_vmalloc_area_info a = info_of(mm, v);
    assert_string_equal(a.kind, "vmap-ro");
    assert_int_equal(a.runs, 1);
    assert_int_equal(a.pages, 4);
    assert_pattern(v, 4 * ps, 5);
    /* the caller's writes through the direct map show through */
    block[ps + 7] = 0xee;
    assert_int_equal(v[ps + 7], 0xee);
    for (int i = 0; i < 4; i++)
        assert_true(kmm_vmalloc_to_phys(mm, v + (size_t)i * ps) == phys[i]);
    assert_int_equal(kmm_check(mm), 0);
    kmm_vunmap(mm, (void *)v);
    assert_int_equal(kmm_page_alloc_size(mm, block), 4);
    kmm_free_pages(mm, block);
    finish(mm);
}

/* One frame mapped twice in one kmm_vmap, and one frame in two vmaps: the
 * aliases see the same bytes. */
static void test_vmap_aliases(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    unsigned char *page = kmm_alloc_pages(mm, 0, KMM_ZERO);
    assert_non_null(page);
    kmm_phys_t phys = kmm_virt_to_phys(mm, page);
    kmm_phys_t twice[2] = { phys, phys };
    unsigned char *v = kmm_vmap(mm, twice, 2, KMM_PROT_READ | KMM_PROT_WRITE);
    unsigned char *w = kmm_vmap(mm, &phys, 1, KMM_PROT_READ | KMM_PROT_WRITE);
    assert_non_null(v);
    assert_non_null(w);
    v[10] = 42;
    assert_int_equal(v[ps + 10], 42);
    assert_int_equal(w[10], 42);
    assert_int_equal(page[10], 42);
    assert_int_equal(kmm_check(mm), 0);
    kmm_vunmap(mm, v);
    kmm_vunmap(mm, w);
    kmm_free_pages(mm, page);
    finish(mm);
}

/* A vmap of frames that are not contiguous: one run each, all mapped in
 * the order given, counted one mapping each plus one. */
static void test_vmap_many_runs(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    enum { N = 40 };
    unsigned char *block = kmm_alloc_pages(mm, 7, 0);   /* 128 pages */
    assert_non_null(block);
    kmm_phys_t base = kmm_virt_to_phys(mm, block), phys[N];
    for (size_t i = 0; i < N; i++)
        phys[i] = base + (kmm_phys_t)((i * 3) % 128) * ps;   /* never adjacent in order */
    for (size_t i = 0; i < N; i++)
        memset(block + (phys[i] - base), (int)i + 1, ps);
    struct kmm_vmalloc_stats before = vstats(mm);
    unsigned char *v = kmm_vmap(mm, phys, N, KMM_PROT_READ | KMM_PROT_WRITE);
    assert_non_null(v);
    struct kmm_vmalloc_stats after = vstats(mm);
    struct kmm_vmalloc_area_info a = info_of(mm, v);
    assert_int_equal(a.runs, N);
    assert_int_equal(a.pages, N);
    assert_int_equal(after.map_calls - before.map_calls, N);
    for (size_t i = 0; i < N; i++) {
        assert_true(kmm_vmalloc_to_phys(mm, v + i * ps + 5) == phys[i] + 5);
        assert_bytes(v + i * ps, ps, (unsigned char)(i + 1));
    }
    assert_int_equal(kmm_check(mm), 0);
    kmm_vunmap(mm, v);
    kmm_free_pages(mm, block);
    finish(mm);
}

/* Bad arguments: NULL with EINVAL, reported, nothing changed. */
static void test_vmap_bad_args(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    void *page = kmm_alloc_pages(mm, 0, 0);
    assert_non_null(page);
    kmm_phys_t good = kmm_virt_to_phys(mm, page);
    kmm_phys_t unaligned = good + 8;
    kmm_phys_t outside[2] = { good, 1 * GiB };   /* the first byte past memory */
    kmm_phys_t none = KMM_PHYS_NONE;
    struct {
        const kmm_phys_t *pages;
        size_t n;
        unsigned prot;
    } bad[] = {
        { &good, 0, KMM_PROT_READ },
        { NULL, 1, KMM_PROT_READ },
        { &unaligned, 1, KMM_PROT_READ | KMM_PROT_WRITE },
        { outside, 2, KMM_PROT_READ },
        { &none, 1, KMM_PROT_READ },
        { &good, 1, 0 },
        { &good, 1, KMM_PROT_WRITE },
        { &good, 1, KMM_PROT_READ | 8 },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct kmm_test_capture cap;
        kmm_test_capture_begin(&cap);
        errno = 0;
        void *v = kmm_vmap(mm, bad[i].pages, bad[i].n, bad[i].prot);
        int err = errno;
        char *out = kmm_test_capture_end(&cap);
        if (v || err != EINVAL)
            fprintf(stderr, "case %zu: %p, errno %d\n", i, v, err);
        assert_null(v);
        assert_int_equal(err, EINVAL);
        assert_non_null(strstr(out, "kmm_vmap"));   /* reported */
        free(out);
    }
    struct kmm_vmalloc_stats st = vstats(mm);
    assert_int_equal(st.vmap_areas, 0);
    assert_int_equal(st.map_calls, 0);
    assert_int_equal(kmm_page_alloc_size(mm, page), 1);
    kmm_free_pages(mm, page);
    finish(mm);
}

/* ---- kmm_kvmalloc and the frees that take every kind --------------------------------------- */

static void test_kvmalloc_picks(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    const size_t small[] = { 1, 16, 100, ps / 2, ps - 1, ps };
    const size_t large[] = { ps + 1, 2 * ps, 64 * KiB + 3, 1 * MiB };
    for (size_t i = 0; i < sizeof(small) / sizeof(small[0]); i++) {
        unsigned char *p = kmm_kvmalloc(mm, small[i], KMM_ZERO);
        assert_non_null(p);
        assert_true(kmm_virt_to_phys(mm, p) != KMM_PHYS_NONE);   /* direct map: kmm_malloc */
        assert_false(kmm_is_vmalloc_addr(mm, p));
        assert_bytes(p, small[i], 0);
        memset(p, 0x11, small[i]);
        if (i & 1)
            kmm_kvfree(mm, p);
        else
            kmm_free(mm, p);
    }
    for (size_t i = 0; i < sizeof(large) / sizeof(large[0]); i++) {
        unsigned char *p = kmm_kvmalloc(mm, large[i], KMM_ZERO);
        assert_non_null(p);
        assert_true(kmm_is_vmalloc_addr(mm, p));
        assert_true(kmm_virt_to_phys(mm, p) == KMM_PHYS_NONE);
        assert_true(kmm_vmalloc_to_phys(mm, p) != KMM_PHYS_NONE);
        assert_int_equal(kmm_usable_size(mm, p), round_up(large[i], ps));
        assert_bytes(p, large[i], 0);
        memset(p, 0x22, round_up(large[i], ps));
        struct kmm_vmalloc_area_info a = info_of(mm, p);
        assert_string_equal(a.kind, "vmalloc");
        assert_int_equal(a.size, large[i]);
        if (i & 1)
            kmm_kvfree(mm, p);
        else
            kmm_free(mm, p);
    }
    kmm_vmalloc_purge(mm);
    struct kmm_vmalloc_stats st = vstats(mm);
    assert_int_equal(st.areas, 0);
    assert_int_equal(st.frees, sizeof(large) / sizeof(large[0]));
    finish(mm);
}

/* kmm_free and kmm_kvfree take kmm_malloc, kmm_vmalloc and kmm_kvmalloc
 * memory alike; NULL is a no-op for every free. */
static void test_frees_take_every_kind(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    void (*frees[2])(struct kmm *, void *) = { kmm_free, kmm_kvfree };
    for (int f = 0; f < 2; f++) {
        void *m = kmm_malloc(mm, 200, 0);
        void *big = kmm_malloc(mm, 3 * ps, 0);
        void *v = kmm_vmalloc(mm, 200, 0);
        void *kvs = kmm_kvmalloc(mm, 200, 0);
        void *kvl = kmm_kvmalloc(mm, 3 * ps, 0);
        void *va = kmm_vmalloc_aligned(mm, ps, 64 * KiB, 0);
        void *all[] = { m, big, v, kvs, kvl, va };
        for (size_t i = 0; i < 6; i++) {
            assert_non_null(all[i]);
            memset(all[i], 1, 200);
        }
        for (size_t i = 0; i < 6; i++)
            frees[f](mm, all[i]);
        kmm_vmalloc_purge(mm);
        struct kmm_vmalloc_stats st = vstats(mm);
        assert_int_equal(st.areas, 0);
        assert_int_equal(st.pages, 0);
        assert_int_equal(kmm_check(mm), 0);
    }
    kmm_free(mm, NULL);
    kmm_kvfree(mm, NULL);
    kmm_vfree(mm, NULL);
    kmm_vunmap(mm, NULL);
    finish(mm);
}

static void test_usable_size(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    const size_t sizes[] = { 1, ps, ps + 1, 5 * ps - 1, 1 * MiB + 1 };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        void *p = kmm_vmalloc(mm, sizes[i], 0);
        assert_non_null(p);
        size_t usable = kmm_usable_size(mm, p);
        assert_int_equal(usable, round_up(sizes[i], ps));
        memset(p, 0x5a, usable);   /* all of it is the caller's */
        kmm_vfree(mm, p);
    }
    finish(mm);
}

/* ---- kmm_realloc of vmalloc memory ------------------------------------------------------- */

/* The range after the area is free: the area grows where it is. */
static void test_realloc_grow_in_place(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    size_t size = 3 * ps + 10;
    unsigned char *p = kmm_vmalloc(mm, size, 0);
    assert_non_null(p);
    kmm_test_fill(p, size, 1);

    /* within the same pages: same address, nothing mapped */
    struct kmm_vmalloc_stats before = vstats(mm);
    assert_ptr_equal(kmm_realloc(mm, p, 4 * ps, 0), p);
    assert_int_equal(vstats(mm).map_calls, before.map_calls);
    assert_int_equal(info_of(mm, p).size, 4 * ps);

    unsigned char *q = kmm_realloc(mm, p, 10 * ps, 0);
    assert_ptr_equal(q, p);
    assert_pattern(q, size, 1);
    memset(q + size, 0x77, 10 * ps - size);            /* the new part is writable */
    assert_backed_by_frames(mm, q, 10 * ps, ps);
    assert_true(kmm_vmalloc_to_phys(mm, q + 10 * ps) == KMM_PHYS_NONE);   /* the guard moved */
    assert_int_equal(kmm_usable_size(mm, q), 10 * ps);
    struct kmm_vmalloc_stats st = vstats(mm);
    assert_int_equal(st.areas, 1);
    assert_int_equal(st.pages, 10);
    struct kmm_vmalloc_area_info a = info_of(mm, q);
    assert_int_equal(a.pages, 10);
    assert_int_equal(a.size, 10 * ps);
    assert_int_equal(a.end, a.start + 11 * ps);
    assert_int_equal(kmm_check(mm), 0);

    /* a big growth */
    q = kmm_realloc(mm, q, 4 * MiB, 0);
    assert_ptr_equal(q, p);
    assert_pattern(q, size, 1);
    assert_bytes(q + size, 10 * ps - size, 0x77);
    memset(q + 10 * ps, 0x78, 4 * MiB - 10 * ps);
    assert_int_equal(vstats(mm).pages, 4 * MiB / ps);
    kmm_free(mm, q);
    finish(mm);
}

/* Shrinking keeps the address: the tail is unmapped (no frame), its pages
 * leave the area's count, and the space it held can be grown into again. */
static void test_realloc_shrink_in_place(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    unsigned char *p = kmm_vmalloc(mm, 20 * ps, 0);
    assert_non_null(p);
    kmm_test_fill(p, 20 * ps, 2);
    /* another area after it: the shrink must not depend on free space after */
    void *after = kmm_vmalloc(mm, ps, 0);
    assert_non_null(after);
    assert_ptr_equal(after, p + 21 * ps);
    memset(after, 0x99, ps);

    size_t size = 5 * ps - 3;
    unsigned char *q = kmm_realloc(mm, p, size, 0);
    assert_ptr_equal(q, p);
    assert_pattern(q, size, 2);
    struct kmm_vmalloc_stats st = vstats(mm);
    assert_int_equal(st.pages, 5 + 1);
    assert_int_equal(kmm_usable_size(mm, q), 5 * ps);
    for (size_t k = 5; k < 21; k++)
        assert_true(kmm_vmalloc_to_phys(mm, q + k * ps) == KMM_PHYS_NONE);
    struct kmm_vmalloc_area_info a = info_of(mm, q);
    assert_int_equal(a.pages, 5);
    assert_int_equal(a.size, size);
    assert_int_equal(a.end, a.start + 6 * ps);
    assert_int_equal(kmm_check(mm), 0);

    /* the freed tail is free address space: growing back stays in place */
    q = kmm_realloc(mm, q, 15 * ps, 0);
    assert_ptr_equal(q, p);
    assert_pattern(q, size, 2);
    memset(q + size, 0x44, 15 * ps - size);
    assert_int_equal(vstats(mm).pages, 15 + 1);
    assert_bytes(after, ps, 0x99);
    assert_int_equal(kmm_check(mm), 0);

    /* down to one byte: still vmalloc memory, one page */
    q = kmm_realloc(mm, q, 1, 0);
    assert_ptr_equal(q, p);
    assert_int_equal(q[0], kmm_test_fill_byte(0, 2));
    assert_int_equal(kmm_usable_size(mm, q), ps);
    kmm_vfree(mm, q);
    kmm_vfree(mm, after);
    finish(mm);
}

/* Another area right after it: growth moves and copies, the old area is
 * freed, the neighbour is untouched. */
static void test_realloc_moves_when_blocked(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    size_t size = 2 * ps - 1;
    unsigned char *p = kmm_vmalloc(mm, size, 0);
    unsigned char *b = kmm_vmalloc(mm, ps, 0);
    assert_non_null(p);
    assert_non_null(b);
    assert_ptr_equal(b, p + 3 * ps);   /* right after p's guard page */
    kmm_test_fill(p, size, 4);
    memset(b, 0xbb, ps);
    unsigned char *q = kmm_realloc(mm, p, 6 * ps, 0);
    assert_non_null(q);
    assert_true(q != p);
    assert_pattern(q, size, 4);
    memset(q + size, 0x12, 6 * ps - size);
    assert_bytes(b, ps, 0xbb);
    assert_true(kmm_vmalloc_to_phys(mm, p) == KMM_PHYS_NONE);   /* the old area is gone */
    struct kmm_vmalloc_stats st = vstats(mm);
    assert_int_equal(st.areas, 2);
    assert_int_equal(st.pages, 6 + 1);
    assert_int_equal(info_of(mm, q).size, 6 * ps);
    assert_int_equal(kmm_check(mm), 0);
    kmm_vfree(mm, q);
    kmm_vfree(mm, b);
    finish(mm);
}

/* The free range after the area is exactly what growth needs: it grows in
 * place up to the next area (whose guard-less start now follows its guard);
 * one page more and it has to move. */
static void test_realloc_grow_exact_fit(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    unsigned char *a = kmm_vmalloc(mm, 2 * ps, 0);
    void *gap = kmm_vmalloc(mm, 3 * ps, 0);
    unsigned char *b = kmm_vmalloc(mm, ps, 0);
    assert_non_null(a);
    assert_non_null(gap);
    assert_non_null(b);
    assert_ptr_equal(b, a + 7 * ps);   /* a, guard, gap (3), guard, b */
    kmm_vfree(mm, gap);
    kmm_vmalloc_purge(mm);             /* a's guard is followed by 4 free pages */
    kmm_test_fill(a, 2 * ps, 8);
    memset(b, 0xb0, ps);

    unsigned char *q = kmm_realloc(mm, a, 6 * ps, 0);
    assert_ptr_equal(q, a);
    assert_pattern(q, 2 * ps, 8);
    memset(q + 2 * ps, 0x61, 4 * ps);
    assert_true(kmm_vmalloc_to_phys(mm, q + 6 * ps) == KMM_PHYS_NONE);   /* guard, right before b */
    struct kmm_vmalloc_area_info i = info_of(mm, q);
    assert_int_equal(i.end, (uintptr_t)b);
    assert_int_equal(kmm_check(mm), 0);

    q = kmm_realloc(mm, q, 7 * ps, 0);
    assert_non_null(q);
    assert_true(q != a);
    assert_pattern(q, 2 * ps, 8);
    assert_bytes(q + 2 * ps, 4 * ps, 0x61);
    assert_bytes(b, ps, 0xb0);
    assert_int_equal(kmm_check(mm), 0);
    kmm_vfree(mm, q);
    kmm_vfree(mm, b);
    finish(mm);
}

/* KMM_ZERO on growth zeroes every byte past the old size, in place and
 * moved, even where the old pages held garbage past the old size. */
static void test_realloc_zero_growth(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    /* dirty frames in the allocator, so new pages are not zero by chance */
    unsigned char *d = kmm_vmalloc(mm, 16 * ps, 0);
    assert_non_null(d);
    memset(d, 0xee, 16 * ps);
    kmm_vfree(mm, d);
    kmm_vmalloc_purge(mm);

    size_t size = ps + 100;
    unsigned char *p = kmm_vmalloc(mm, size, 0);
    assert_non_null(p);
    memset(p, 0xcc, 2 * ps);   /* past size too: the slack of the last page */
    unsigned char *q = kmm_realloc(mm, p, 5 * ps, KMM_ZERO);
    assert_ptr_equal(q, p);
    assert_bytes(q, size, 0xcc);
    assert_bytes(q + size, 5 * ps - size, 0);
    kmm_vfree(mm, q);

    /* within the same page (no new page): the bytes past the old size too */
    p = kmm_vmalloc(mm, 100, 0);
    assert_non_null(p);
    memset(p, 0xcb, ps);
    q = kmm_realloc(mm, p, ps - 1, KMM_ZERO);
    assert_ptr_equal(q, p);
    assert_bytes(q, 100, 0xcb);
    assert_bytes(q + 100, ps - 1 - 100, 0);
    /* shrunk, then grown again: zero from the smaller size on */
    memset(q, 0xca, ps);
    assert_ptr_equal(kmm_realloc(mm, q, 50, 0), q);
    assert_ptr_equal(kmm_realloc(mm, q, ps, KMM_ZERO), q);
    assert_bytes(q, 50, 0xca);
    assert_bytes(q + 50, ps - 50, 0);
    kmm_vfree(mm, q);
    kmm_vmalloc_purge(mm);   /* no lazy area to be taken back below: b must follow p */

    /* moved: a neighbour blocks growth */
    p = kmm_vmalloc(mm, size, 0);
    unsigned char *b = kmm_vmalloc(mm, ps, 0);
    assert_non_null(p);
    assert_non_null(b);
    assert_ptr_equal(b, p + 3 * ps);
    memset(p, 0xcd, 2 * ps);
    q = kmm_realloc(mm, p, 7 * ps + 1, KMM_ZERO);
    assert_non_null(q);
    assert_true(q != p);
    assert_bytes(q, size, 0xcd);
    assert_bytes(q + size, 7 * ps + 1 - size, 0);
    kmm_vfree(mm, q);
    kmm_vfree(mm, b);
    finish(mm);
}

/* realloc to 0 frees; a failed growth (mapping calls fail) returns NULL and
 * leaves the area as it was. */
static void test_realloc_zero_size_and_failure(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    void *p = kmm_vmalloc(mm, 3 * ps, 0);
    assert_non_null(p);
    assert_null(kmm_realloc(mm, p, 0, 0));
    struct kmm_vmalloc_stats st = vstats(mm);
    assert_int_equal(st.areas, 0);
    assert_int_equal(st.frees, 1);

    unsigned char *q = kmm_vmalloc(mm, 3 * ps, 0);
    assert_non_null(q);
    kmm_test_fill(q, 3 * ps, 6);
    kmm_phys_t phys0 = kmm_vmalloc_to_phys(mm, q);
    kmm_fault_inject(mm, KMM_FAULT_MAP, 1, 0);   /* every mapping call fails */
    errno = 0;
    assert_null(kmm_realloc(mm, q, 40 * ps, 0));
    assert_int_equal(errno, ENOMEM);
    kmm_fault_inject(mm, 0, 0, 0);
    assert_true(kmm_vmalloc_to_phys(mm, q) == phys0);
    assert_pattern(q, 3 * ps, 6);
    assert_int_equal(kmm_usable_size(mm, q), 3 * ps);
    assert_true(kmm_vmalloc_to_phys(mm, q + 3 * ps) == KMM_PHYS_NONE);
    st = vstats(mm);
    assert_int_equal(st.areas, 1);
    assert_int_equal(st.pages, 3);
    assert_int_equal(kmm_check(mm), 0);
    /* one mapping call fails: the growth in place fails, the move works */
    kmm_fault_inject(mm, KMM_FAULT_MAP, 1, 1);
    unsigned char *r = kmm_realloc(mm, q, 40 * ps, 0);
    kmm_fault_inject(mm, 0, 0, 0);
    if (r) {
        assert_pattern(r, 3 * ps, 6);
        memset(r + 3 * ps, 1, 37 * ps);
        q = r;
    } else {
        assert_pattern(q, 3 * ps, 6);
    }
    assert_int_equal(kmm_check(mm), 0);
    /* and it still grows afterwards */
    q = kmm_realloc(mm, q, 40 * ps, 0);
    assert_non_null(q);
    assert_pattern(q, 3 * ps, 6);
    kmm_vfree(mm, q);
    finish(mm);
}

/* ---- accounting ------------------------------------------------------------------------ */

/* The same mix of calls twice: after the second round (everything freed,
 * purged and drained) exactly as many pages are free as after the first.
 * Growth, shrinking (which cuts a page allocation), moves, vmaps, kvmalloc,
 * failures: none of them may leak a page. */
static void vm_round(struct kmm *mm, size_t ps)
{
    unsigned char *a = kmm_vmalloc(mm, 20 * ps, KMM_ZERO);
    unsigned char *b = kmm_vmalloc(mm, 3 * ps, 0);
    assert_non_null(a);
    assert_non_null(b);
    a = kmm_realloc(mm, a, 7 * ps + 1, 0);          /* shrink: cuts the 20-page allocation */
    assert_non_null(a);
    b = kmm_realloc(mm, b, 9 * ps, KMM_ZERO);        /* grow in place */
    assert_non_null(b);
    a = kmm_realloc(mm, a, 30 * ps, 0);              /* blocked by b: moves */
    assert_non_null(a);
    void *k = kmm_kvmalloc(mm, 5 * ps, 0), *s = kmm_kvmalloc(mm, 100, 0);
    assert_non_null(k);
    assert_non_null(s);
    void *pages = kmm_alloc_pages(mm, 2, 0);
    assert_non_null(pages);
    kmm_phys_t phys[3] = { kmm_virt_to_phys(mm, pages), kmm_virt_to_phys(mm, pages) + 2 * ps,
                           kmm_virt_to_phys(mm, pages) + ps };
    void *v = kmm_vmap(mm, phys, 3, KMM_PROT_READ | KMM_PROT_WRITE);
    assert_non_null(v);
    kmm_fault_inject(mm, KMM_FAULT_MAP, 1, 0);
    assert_null(kmm_vmalloc(mm, 64 * KiB, 0));
    assert_null(kmm_realloc(mm, b, 200 * ps, 0));
    kmm_fault_inject(mm, 0, 0, 0);
    kmm_vunmap(mm, v);
    kmm_free_pages(mm, pages);
    kmm_kvfree(mm, k);
    kmm_kvfree(mm, s);
    kmm_vfree(mm, a);
    kmm_free(mm, b);
    kmm_vmalloc_purge(mm);
    kmm_drain(mm);
}

static void test_no_page_leak(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    vm_round(mm, ps);
    size_t fp = free_pages(mm);
    struct kmm_vmalloc_stats st0 = vstats(mm);
    vm_round(mm, ps);
    assert_int_equal(free_pages(mm), fp);
    struct kmm_vmalloc_stats st = vstats(mm);
    assert_int_equal(st.areas, 0);
    assert_int_equal(st.pages, 0);
    assert_int_equal(st.vmap_areas, 0);
    assert_int_equal(st.mappings, st0.mappings);
    assert_int_equal(st.free_ranges, 1);
    assert_int_equal(st.free_bytes, st.space_bytes);
    finish(mm);
}

/* ---- lazy and strict freeing -------------------------------------------------------------- */

/* A free is lazy: the area stays mapped to its pages, which stay out of the
 * page allocator, until a purge gives them back. */
static void test_lazy_free_and_purge(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    size_t n = 16;
    void *p = kmm_vmalloc(mm, n * ps, 0);
    assert_non_null(p);
    memset(p, 1, n * ps);
    size_t fp = free_pages(mm);
    struct kmm_vmalloc_stats before = vstats(mm);
    kmm_vfree(mm, p);
    struct kmm_vmalloc_stats st = vstats(mm);
    assert_int_equal(st.lazy_areas, 1);
    assert_int_equal(st.lazy_pages, n);
    assert_int_equal(st.areas, 0);
    assert_int_equal(st.pages, 0);
    assert_int_equal(st.unmap_calls, before.unmap_calls);
    assert_int_equal(st.mappings, before.mappings);          /* still mapped */
    assert_int_equal(free_pages(mm), fp);                    /* pages not back yet */
    assert_true(kmm_vmalloc_to_phys(mm, p) == KMM_PHYS_NONE);
    struct kmm_vmalloc_area_info a = info_of(mm, p);
    assert_string_equal(a.kind, "lazy-free");
    assert_int_equal(a.pages, n);
    assert_int_equal(kmm_check(mm), 0);

    assert_int_equal(kmm_vmalloc_purge(mm), n);
    st = vstats(mm);
    assert_int_equal(st.lazy_areas, 0);
    assert_int_equal(st.lazy_pages, 0);
    assert_int_equal(st.purges, before.purges + 1);
    assert_int_equal(st.unmap_calls, before.unmap_calls + 1);
    assert_int_equal(st.mappings, before.mappings - 2);
    assert_true(free_pages(mm) >= fp + n);
    assert_false(info_has(mm, p));
    /* a second purge has nothing to do */
    assert_int_equal(kmm_vmalloc_purge(mm), 0);
    assert_int_equal(vstats(mm).purges, before.purges + 1);
    finish(mm);
}

/* While an area waits for its purge, its frames stay out of the page
 * allocator: even with every other page of memory taken, none of them is
 * handed out (a stale pointer still reaches them). After the purge they are. */
static void test_lazy_frames_stay_out(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    size_t mem = 32 * MiB, nframes = mem / ps;
    struct kmm *mm = create_cfg(ps, mem, 128 * MiB, 0, 0);
    kmm_vfree(mm, kmm_vmalloc(mm, ps, 0));
    kmm_vmalloc_purge(mm);
    kmm_drain(mm);
    size_t fp = free_pages(mm);
    size_t n = fp / 2;
    unsigned char *p = kmm_vmalloc(mm, n * ps, 0);
    assert_non_null(p);
    unsigned char *held = calloc(nframes, 1);
    assert_non_null(held);
    for (size_t i = 0; i < n; i++)
        held[kmm_vmalloc_to_phys(mm, p + i * ps) / ps] = 1;
    kmm_vfree(mm, p);
    assert_int_equal(vstats(mm).lazy_pages, n);

    void **pg = calloc(nframes + 1, sizeof(*pg));
    assert_non_null(pg);
    size_t got = 0;
    while (got <= nframes && (pg[got] = kmm_alloc_pages(mm, 0, 0)) != NULL) {
        kmm_phys_t phys = kmm_virt_to_phys(mm, pg[got]);
        if (held[phys / ps]) {
            /* allowed only if something purged the area first (a failing
             * allocation does, before it fails) */
            assert_int_equal(vstats(mm).lazy_areas, 0);
        }
        got++;
    }
    assert_true(got <= nframes);   /* memory ran out */
    if (vstats(mm).lazy_areas) {
        assert_true(got <= fp - n);
        /* the purge gives them back: now they can be had */
        assert_int_equal(kmm_vmalloc_purge(mm), n);
        void *more = kmm_alloc_pages(mm, 0, 0);
        assert_non_null(more);
        kmm_free_pages(mm, more);
    }
    for (size_t i = 0; i < got; i++)
        kmm_free_pages(mm, pg[i]);
    free(pg);
    free(held);
    finish(mm);
}

/* Pages of lazily freed areas count as free for kmm_vmalloc: an allocation
 * that needs them purges instead of failing. */
static void test_lazy_pages_count_as_free(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_cfg(ps, 32 * MiB, 128 * MiB, 0, 0);
    kmm_vfree(mm, kmm_vmalloc(mm, ps, 0));
    kmm_vmalloc_purge(mm);
    kmm_drain(mm);
    size_t fp = free_pages(mm), n = fp * 3 / 4;
    void *a = kmm_vmalloc(mm, n * ps, 0);
    assert_non_null(a);
    kmm_vfree(mm, a);
    assert_int_equal(vstats(mm).lazy_pages, n);
    void *b = kmm_vmalloc(mm, (n + 1) * ps, 0);   /* another size: cannot take a back */
    if (!b)
        fprintf(stderr, "kmm_vmalloc(%zu pages) failed with %zu lazy pages and %zu free\n", n + 1, n, free_pages(mm));
    assert_non_null(b);
    assert_int_equal(vstats(mm).lazy_pages, 0);
    memset(b, 1, (n + 1) * ps);
    kmm_vfree(mm, b);
    finish(mm);
}

/* An allocation may take a lazily freed area back as it is (still mapped):
 * it must still keep every promise of the call that asked: KMM_ZERO, the
 * alignment, the area mask, the size and tag in the listing. */
static void test_reuse_after_free_keeps_promises(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    for (int round = 0; round < 3; round++) {
        /* a one-page area at an address that is not 64 KiB aligned */
        void *pad = kmm_vmalloc(mm, ps, 0);
        unsigned char *p = kmm_vmalloc(mm, 4 * ps, KMM_AREA_LOWEST);
        assert_non_null(pad);
        assert_non_null(p);
        memset(p, 0xa7, 4 * ps);
        kmm_vmalloc_set_tag(mm, p, "old-owner");
        kmm_vfree(mm, p);

        unsigned char *q;
        if (round == 0) {
            q = kmm_vmalloc(mm, 4 * ps, KMM_AREA_LOWEST | KMM_ZERO);
            assert_non_null(q);
            assert_bytes(q, 4 * ps, 0);
        } else if (round == 1) {
            q = kmm_vmalloc_aligned(mm, 4 * ps, 2 * MiB, KMM_AREA_LOWEST);
            assert_non_null(q);
            assert_int_equal((uintptr_t)q % (2 * MiB), 0);
        } else {
            q = kmm_vmalloc(mm, 4 * ps, KMM_AREA_LOW);
            assert_non_null(q);
            for (size_t k = 0; k < 4; k++)
                assert_true(kmm_vmalloc_to_phys(mm, q + k * ps) >= 16 * MiB);
        }
        memset(q, 0x11, 4 * ps);
        struct kmm_vmalloc_area_info a = info_of(mm, q);
        assert_string_equal(a.kind, "vmalloc");
        assert_int_equal(a.size, 4 * ps);
        assert_int_equal(a.pages, 4);
        assert_string_equal(a.tag, round == 1 ? "kmm_vmalloc_aligned" : "kmm_vmalloc");
        assert_int_equal(kmm_usable_size(mm, q), 4 * ps);
        assert_int_equal(kmm_check(mm), 0);
        kmm_vfree(mm, q);
        kmm_vfree(mm, pad);
        kmm_vmalloc_purge(mm);
    }
    struct kmm_vmalloc_stats st = vstats(mm);
    assert_int_equal(st.areas, 0);
    assert_int_equal(st.allocs, st.frees);
    finish(mm);
}

/* An allocation of the same number of pages as a lazily freed area (up to
 * 64 pages) takes the most recently freed one back as it is: same address,
 * no page allocation, no platform call; counted in stats.reused. */
static void test_reuse_lazy_area(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    void *a = kmm_vmalloc(mm, 4 * ps, 0), *b = kmm_vmalloc(mm, 4 * ps - 100, 0);
    void *other = kmm_vmalloc(mm, 2 * ps, 0);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(other);
    kmm_vfree(mm, a);
    kmm_vfree(mm, b);
    kmm_vfree(mm, other);
    kmm_drain(mm);   /* (purges too: start again with fresh lazy areas) */
    a = kmm_vmalloc(mm, 4 * ps, 0);
    b = kmm_vmalloc(mm, 4 * ps, 0);
    assert_non_null(a);
    assert_non_null(b);
    kmm_vfree(mm, a);
    kmm_vfree(mm, b);
    size_t fp = free_pages(mm);
    struct kmm_vmalloc_stats before = vstats(mm);
    void *c = kmm_vmalloc(mm, 3 * ps + 1, 0);   /* 4 pages too */
    struct kmm_vmalloc_stats st = vstats(mm);
    assert_ptr_equal(c, b);                      /* the most recently freed */
    assert_int_equal(st.reused, before.reused + 1);
    assert_int_equal(st.map_calls, before.map_calls);
    assert_int_equal(st.lazy_areas, before.lazy_areas - 1);
    assert_int_equal(st.lazy_pages, before.lazy_pages - 4);
    assert_int_equal(st.areas, before.areas + 1);
    assert_int_equal(st.pages, before.pages + 4);
    assert_int_equal(free_pages(mm), fp);
    assert_int_equal(info_of(mm, c).size, 3 * ps + 1);
    assert_string_equal(info_of(mm, c).kind, "vmalloc");
    assert_backed_by_frames(mm, c, 4 * ps, ps);
    memset(c, 1, 4 * ps);
    assert_int_equal(kmm_check(mm), 0);
    /* another size: not reused */
    void *d = kmm_vmalloc(mm, 5 * ps, 0);
    assert_non_null(d);
    assert_int_equal(vstats(mm).reused, before.reused + 1);
    kmm_vfree(mm, c);
    kmm_vfree(mm, d);
    finish(mm);
}

struct area_end {
    uintptr_t addr, end;
    size_t pages;
};

static void find_end(void *arg, const struct kmm_vmalloc_area_info *a)
{
    struct area_end *e = arg;
    if (a->start == e->addr) {
        e->end = a->end;
        e->pages = a->pages;
    }
}

/* Any size is taken back, small or large (64 and 65 pages at 4 KiB: the
 * lists of exact sizes end at 64). A larger lazy area serves a request of
 * at least three quarters of it, its tail cut so that the guard page
 * follows the pages asked for, once the lazy areas near a purge (past
 * three quarters of KMM_VMALLOC_LAZY_PAGES: a lazy area of 6100 pages is
 * freed beside it); before that the request gets a new area and the larger
 * area stays for its own size. A smaller request gets a new area. */
static void test_reuse_size_limit(void **state)
{
    (void)state;
    size_t ps = 4096;
    struct kmm *mm = create_mm(ps);
    for (size_t n = 64; n <= 65; n++) {
        void *p = kmm_vmalloc(mm, n * ps, 0);
        assert_non_null(p);
        kmm_vfree(mm, p);
        uint64_t reused = vstats(mm).reused;
        void *q = kmm_vmalloc(mm, n * ps, 0);
        assert_non_null(q);
        assert_int_equal(vstats(mm).reused, reused + 1);
        kmm_vfree(mm, q);
        kmm_vmalloc_purge(mm);
    }
    for (size_t want = 80; want >= 70; want -= 10) {
        /* no cut while the lazy areas are few */
        void *p = kmm_vmalloc(mm, 100 * ps, 0);
        assert_non_null(p);
        kmm_vfree(mm, p);
        uint64_t reused = vstats(mm).reused;
        void *q = kmm_vmalloc(mm, want * ps, 0);
        assert_non_null(q);
        assert_int_equal(vstats(mm).reused, reused);
        assert_int_equal(vstats(mm).lazy_pages, 100);
        kmm_vfree(mm, q);
        kmm_vmalloc_purge(mm);
        /* near a purge: cut */
        void *filler = kmm_vmalloc(mm, 6100 * ps, 0);
        p = kmm_vmalloc(mm, 100 * ps, 0);
        assert_true(filler && p);
        kmm_vfree(mm, filler);
        kmm_vfree(mm, p);
        assert_int_equal(vstats(mm).lazy_pages, 6200);
        reused = vstats(mm).reused;
        q = kmm_vmalloc(mm, want * ps, 0);
        assert_non_null(q);
        assert_int_equal(vstats(mm).reused, reused + (want == 80));
        struct area_end e = { .addr = (uintptr_t)q };
        kmm_vmalloc_info(mm, find_end, &e);
        assert_int_equal(e.pages, want);
        assert_int_equal(e.end, (uintptr_t)q + (want + 1) * ps);   /* its guard page right after */
        assert_int_equal(kmm_usable_size(mm, q), want * ps);
        assert_int_equal(kmm_check(mm), 0);
        kmm_vfree(mm, q);
        kmm_vmalloc_purge(mm);
    }
    finish(mm);
}

/* Strict mode reuses nothing mapped. */
/* KMM_VMALLOC_SPREAD: a freed area's addresses are not taken by the next
 * areas (next fit); once the space is gone round, the lowest fit serves
 * again, so a full space still works. */
static void test_spread_no_address_reuse(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    uint64_t space = 64 * MiB;
    struct kmm *mm = create_cfg(ps, 1 * GiB, space, 0, KMM_VMALLOC_STRICT | KMM_VMALLOC_SPREAD);
    size_t area = 4 * ps + ps;   /* pages and guard */
    size_t fit = (size_t)(space / area);
    void *first = kmm_vmalloc(mm, 4 * ps, 0);
    assert_non_null(first);
    kmm_vfree(mm, first);
    uintptr_t last = (uintptr_t)first;
    for (size_t i = 1; i < fit / 2; i++) {
        void *p = kmm_vmalloc(mm, 4 * ps, 0);
        assert_non_null(p);
        assert_true((uintptr_t)p > last);   /* never an address freed before */
        last = (uintptr_t)p;
        memset(p, 1, 4 * ps);
        kmm_vfree(mm, p);
    }
    /* hold half the space, then go round: allocations still succeed */
    void **held = malloc(fit * sizeof(void *));
    size_t n = 0;
    while (n < fit && (held[n] = kmm_vmalloc(mm, 4 * ps, 0)) != NULL)
        n++;
    assert_true(n >= fit - 2);
    assert_int_equal(kmm_check(mm), 0);
    for (size_t i = 0; i < n; i += 2)
        kmm_vfree(mm, held[i]);
    for (size_t i = 0; i < n; i += 2) {
        held[i] = kmm_vmalloc(mm, 4 * ps, 0);
        assert_non_null(held[i]);
    }
    for (size_t i = 0; i < n; i++)
        kmm_vfree(mm, held[i]);
    free(held);
    finish(mm);
}

/* KMM_NOPOPULATE: the area is usable all the same (pages fault in at first
 * touch), and KMM_ZERO with it gives zeros also where the frames were
 * written before (large runs are zeroed by dropping their frames). */
static void test_nopopulate(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    size_t big = 2 * MiB > 32 * ps ? 2 * MiB : 32 * ps;
    for (int round = 0; round < 3; round++) {
        char *p = kmm_vmalloc(mm, big, KMM_NOPOPULATE);
        assert_non_null(p);
        memset(p, 0xa5, big);
        kmm_vfree(mm, p);
        kmm_vmalloc_purge(mm);   /* the frames go back, written */
        char *z = kmm_vmalloc(mm, big, KMM_ZERO | KMM_NOPOPULATE);
        assert_non_null(z);
        assert_bytes(z, big, 0);
        char *small = kmm_vmalloc(mm, 3 * ps, KMM_ZERO | KMM_NOPOPULATE);   /* below the drop size: written */
        assert_non_null(small);
        assert_bytes(small, 3 * ps, 0);
        assert_int_equal(kmm_check(mm), 0);
        kmm_vfree(mm, z);
        kmm_vfree(mm, small);
    }
    /* kmm_realloc keeps the way it is mapped */
    char *r = kmm_vmalloc(mm, 4 * ps, KMM_NOPOPULATE);
    assert_non_null(r);
    memset(r, 7, 4 * ps);
    r = kmm_realloc(mm, r, 64 * ps, 0);
    assert_non_null(r);
    assert_bytes(r, 4 * ps, 7);
    kmm_vfree(mm, r);
    finish(mm);
}

static void test_strict_no_reuse(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_cfg(ps, 1 * GiB, 128 * MiB, 0, KMM_VMALLOC_STRICT);
    for (int i = 0; i < 10; i++) {
        void *p = kmm_vmalloc(mm, 4 * ps, KMM_ZERO);
        assert_non_null(p);
        assert_bytes(p, 4 * ps, 0);
        memset(p, 0xff, 4 * ps);
        kmm_vfree(mm, p);
    }
    struct kmm_vmalloc_stats st = vstats(mm);
    assert_int_equal(st.reused, 0);
    assert_int_equal(st.map_calls, 10);
    assert_int_equal(st.unmap_calls, 10);
    finish(mm);
}

/* An area that grew by kmm_realloc (with no area mask) holds pages from any
 * area; freed, it must not be handed to a request for area 0 only unless
 * all its pages are there. */
static void test_reuse_after_realloc_keeps_area_mask(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    unsigned char *a = kmm_vmalloc(mm, ps, KMM_AREA_LOWEST);
    assert_non_null(a);
    unsigned char *b = kmm_realloc(mm, a, 3 * ps, 0);
    assert_non_null(b);
    kmm_vfree(mm, b);
    unsigned char *c = kmm_vmalloc(mm, 3 * ps, KMM_AREA_LOWEST);
    assert_non_null(c);
    for (size_t k = 0; k < 3; k++) {
        kmm_phys_t phys = kmm_vmalloc_to_phys(mm, c + k * ps);
        if (phys >= 16 * MiB)
            fprintf(stderr, "page %zu of a KMM_AREA_LOWEST area at phys %#llx\n", k, (unsigned long long)phys);
        assert_true(phys < 16 * MiB);
    }
    kmm_vfree(mm, c);
    finish(mm);
}

/* KMM_VMALLOC_LAZY_PAGES pages of lazily freed areas start a purge by
 * themselves. 4 KiB pages only: it maps 32 MiB. */
static void test_lazy_purge_threshold(void **state)
{
    (void)state;
    size_t ps = 4096;
    struct kmm *mm = create_mm(ps);
    size_t per = 64, n = KMM_VMALLOC_LAZY_PAGES / per;
    void **p = calloc(n, sizeof(*p));
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) {
        p[i] = kmm_vmalloc(mm, per * ps, 0);
        assert_non_null(p[i]);
    }
    for (size_t i = 0; i + 1 < n; i++)
        kmm_vfree(mm, p[i]);
    struct kmm_vmalloc_stats st = vstats(mm);
    assert_int_equal(st.lazy_pages, (n - 1) * per);
    assert_int_equal(st.purges, 0);
    kmm_vfree(mm, p[n - 1]);   /* reaches the threshold */
    st = vstats(mm);
    assert_int_equal(st.lazy_pages, 0);
    assert_int_equal(st.lazy_areas, 0);
    assert_int_equal(st.purges, 1);
    assert_int_equal(st.areas, 0);
    free(p);
    finish(mm);
}

/* KMM_VMALLOC_STRICT: every free unmaps before it returns, and the pages go
 * back at once. */
static void test_strict_mode(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_cfg(ps, 1 * GiB, 128 * MiB, 0, KMM_VMALLOC_STRICT);
    enum { N = 5 };
    void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = kmm_vmalloc(mm, (size_t)(i + 1) * 4 * ps, 0);
        assert_non_null(p[i]);
        memset(p[i], i, (size_t)(i + 1) * 4 * ps);
    }
    for (int i = 0; i < N; i++) {
        struct kmm_vmalloc_stats before = vstats(mm);
        size_t fp = free_pages(mm);
        if (i & 1)
            kmm_free(mm, p[i]);
        else
            kmm_vfree(mm, p[i]);
        struct kmm_vmalloc_stats st = vstats(mm);
        assert_int_equal(st.lazy_areas, 0);
        assert_int_equal(st.lazy_pages, 0);
        assert_int_equal(st.unmap_calls, before.unmap_calls + 1);
        assert_int_equal(st.areas, before.areas - 1);
        assert_true(free_pages(mm) >= fp + (size_t)(i + 1) * 4);
        assert_true(kmm_vmalloc_to_phys(mm, p[i]) == KMM_PHYS_NONE);
        assert_false(info_has(mm, p[i]));
    }
    assert_int_equal(kmm_vmalloc_purge(mm), 0);
    assert_int_equal(vstats(mm).purges, 0);
    /* a moving realloc frees the old area strictly too */
    unsigned char *a = kmm_vmalloc(mm, ps, 0), *b = kmm_vmalloc(mm, ps, 0);
    assert_non_null(a);
    assert_non_null(b);
    uint64_t unmaps = vstats(mm).unmap_calls;
    unsigned char *c = kmm_realloc(mm, a, 4 * ps, 0);
    assert_non_null(c);
    assert_true(c != a);
    assert_int_equal(vstats(mm).lazy_areas, 0);
    assert_int_equal(vstats(mm).unmap_calls, unmaps + 1);
    kmm_vfree(mm, b);
    kmm_vfree(mm, c);
    finish(mm);
}

/* One purge unmaps a run of adjacent freed areas (guards included) in one
 * call, whatever order they were freed in. */
static void test_purge_batches_adjacent(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    enum { N = 100 };
    void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = kmm_vmalloc(mm, 64 * KiB, 0);
        assert_non_null(p[i]);
    }
    /* they tile one range: each starts where the one before (and its guard) ends */
    struct info_list *l = info_get(mm);
    assert_int_equal(l->n, N);
    for (size_t i = 1; i < l->n; i++)
        assert_int_equal(l->a[i].start, l->a[i - 1].end);
    free(l);

    /* all of them, odd ones first then even ones backwards */
    for (int i = 1; i < N; i += 2)
        kmm_vfree(mm, p[i]);
    for (int i = N - 2; i >= 0; i -= 2)
        kmm_vfree(mm, p[i]);
    struct kmm_vmalloc_stats before = vstats(mm);
    assert_int_equal(before.lazy_areas, N);
    size_t per = pages_of(64 * KiB, ps);
    assert_int_equal(kmm_vmalloc_purge(mm), N * per);
    struct kmm_vmalloc_stats st = vstats(mm);
    assert_int_equal(st.unmap_calls - before.unmap_calls, 1);
    assert_int_equal(st.free_ranges, 1);   /* everything merged back */
    assert_int_equal(st.free_bytes, st.space_bytes);
    assert_int_equal(kmm_check(mm), 0);

    /* two separate runs (areas 40..49 stay): two calls */
    for (int i = 0; i < N; i++) {
        p[i] = kmm_vmalloc(mm, 64 * KiB, 0);
        assert_non_null(p[i]);
    }
    for (int i = 0; i < N; i++)
        if (i < 40 || i >= 50)
            kmm_vfree(mm, p[i]);
    before = vstats(mm);
    assert_int_equal(kmm_vmalloc_purge(mm), (N - 10) * per);
    assert_int_equal(vstats(mm).unmap_calls - before.unmap_calls, 2);
    for (int i = 40; i < 50; i++)
        kmm_vfree(mm, p[i]);
    finish(mm);
}

/* kmm_drain purges too. */
static void test_drain_purges(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    void *p = kmm_vmalloc(mm, 8 * ps, 0);
    assert_non_null(p);
    kmm_vfree(mm, p);
    assert_int_equal(vstats(mm).lazy_areas, 1);
    kmm_drain(mm);
    struct kmm_vmalloc_stats st = vstats(mm);
    assert_int_equal(st.lazy_areas, 0);
    assert_int_equal(st.lazy_pages, 0);
    assert_int_equal(st.purges, 1);
    finish(mm);
}

/* ---- limits ------------------------------------------------------------------------------ */

/* A small vmalloc_max_mappings: allocations past it are refused (NULL,
 * ENOMEM, reported, counted), nothing is held by the refused call, and
 * freeing makes room again (the lazily freed area is purged for it). */
static void test_mapping_limit(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    size_t limit = 20;
    struct kmm *mm = create_cfg(ps, 1 * GiB, 128 * MiB, limit, 0);
    void *p[64];
    size_t n = 0;
    p[n] = kmm_vmalloc(mm, ps, 0);   /* one page: one run, whatever the memory */
    assert_non_null(p[n++]);
    struct kmm_vmalloc_stats st = vstats(mm);
    assert_int_equal(st.max_mappings, limit);
    size_t m1 = st.mappings;
    /* each area costs one mapping per run plus one: 2 here */
    size_t expect = 1 + (limit - m1) / 2;
    void *q;
    while (n < 64 && (q = kmm_vmalloc(mm, ps, 0)) != NULL) {
        p[n++] = q;
        assert_true(vstats(mm).mappings <= limit);
    }
    assert_int_equal(n, expect);
    size_t fp = free_pages(mm);
    struct kmm_test_capture cap;
    kmm_test_capture_begin(&cap);
    errno = 0;
    q = kmm_vmalloc(mm, ps, 0);
    int err = errno;
    char *out = kmm_test_capture_end(&cap);
    assert_null(q);
    assert_int_equal(err, ENOMEM);
    assert_non_null(strstr(out, "mappings"));   /* the report says why */
    free(out);
    st = vstats(mm);
    assert_true(st.refused_mappings > 0);
    assert_int_equal(st.areas, n);
    assert_true(st.mappings <= limit);
    assert_int_equal(free_pages(mm), fp);   /* the refused call's pages went back */
    /* kmm_vmap is under the same limit */
    void *page = kmm_alloc_pages(mm, 0, 0);
    assert_non_null(page);
    kmm_phys_t phys = kmm_virt_to_phys(mm, page);
    errno = 0;
    assert_null(kmm_vmap(mm, &phys, 1, KMM_PROT_READ));
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(kmm_check(mm), 0);

    /* a lazy free makes room: the next allocation of the same size may take
     * the freed area back as it is, or purge for room; either way it works */
    kmm_vfree(mm, p[0]);
    p[0] = kmm_vmalloc(mm, ps, 0);
    assert_non_null(p[0]);
    memset(p[0], 1, ps);
    assert_true(vstats(mm).mappings <= limit);
    /* another size cannot reuse it: the allocation purges to make room */
    kmm_vfree(mm, p[2]);
    uint64_t purges = vstats(mm).purges;
    p[2] = kmm_vmalloc(mm, 2 * ps, 0);
    assert_non_null(p[2]);
    memset(p[2], 2, 2 * ps);
    st = vstats(mm);
    assert_true(st.purges > purges);
    assert_int_equal(st.lazy_areas, 0);
    assert_true(st.mappings <= limit);
    assert_int_equal(kmm_check(mm), 0);
    kmm_vfree(mm, p[1]);
    kmm_vmalloc_purge(mm);
    void *v = kmm_vmap(mm, &phys, 1, KMM_PROT_READ);
    assert_non_null(v);
    kmm_vunmap(mm, v);
    kmm_free_pages(mm, page);
    for (size_t i = 0; i < n; i++)
        if (i != 1)
            kmm_vfree(mm, p[i]);
    finish(mm);
}

/* vm.max_map_count, or 0 when /proc cannot tell. */
static size_t max_map_count(void)
{
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    unsigned long v = 0;
    if (f) {
        if (fscanf(f, "%lu", &v) != 1)
            v = 0;
        fclose(f);
    }
    return v;
}

/* The default mapping budget (issue 18): on Linux's default
 * vm.max_map_count (65530) it holds 25000 live one-page areas (50001
 * mappings: lib/test_vmalloc's pcpu-like case) and lib/test_vmalloc's
 * full_fit (16384 live one-page areas, 8192 of them junk freed to leave
 * holes, then churn in the holes), with kmm_create(NULL)'s settings; it
 * is below what the process may still make, leaving the program a margin. */
static void test_default_mapping_budget(void **state)
{
    (void)state;
    size_t limit = max_map_count();
    if (limit < 65530)
        skip();
    struct kmm *mm = kmm_create(NULL);
    assert_non_null(mm);
    size_t ps = 4096;   /* kmm_create(NULL)'s page size */
    enum { LIVE = 25000, FIT = 8192 };
    char **p = calloc(LIVE, sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < LIVE; i++) {
        p[i] = kmm_vmalloc(mm, ps, 0);
        assert_non_null(p[i]);
        p[i][0] = (char)i;
    }
    struct kmm_vmalloc_stats st = vstats(mm);
    assert_int_equal(st.areas, LIVE);
    assert_true(st.mappings >= 2 * LIVE);
    assert_true(st.max_mappings < limit);          /* the program keeps a margin */
    assert_true(st.max_mappings >= limit / 2 + limit / 4);
    for (size_t i = 0; i < LIVE; i++) {
        assert_int_equal(p[i][0], (char)i);
        kmm_vfree(mm, p[i]);
    }
    kmm_vmalloc_purge(mm);
    assert_int_equal(kmm_check(mm), 0);

    /* full_fit: keep and junk alternate, the junk goes, the holes churn */
    char **keep = p, **junk = p + FIT;
    for (size_t i = 0; i < FIT; i++) {
        keep[i] = kmm_vmalloc(mm, ps, 0);
        junk[i] = kmm_vmalloc(mm, ps, 0);
        assert_true(keep[i] && junk[i]);
        keep[i][0] = 1;
        junk[i][0] = 2;
    }
    assert_int_equal(vstats(mm).areas, 2 * FIT);
    for (size_t i = 0; i < FIT; i++)
        kmm_vfree(mm, junk[i]);
    kmm_vmalloc_purge(mm);
    for (size_t i = 0; i < 2 * FIT; i++) {
        char *t = kmm_vmalloc(mm, ps, 0);
        assert_non_null(t);
        t[0] = 3;
        kmm_vfree(mm, t);
    }
    for (size_t i = 0; i < FIT; i++) {
        assert_int_equal(keep[i][0], 1);
        kmm_vfree(mm, keep[i]);
    }
    free(p);
    finish(mm);
}

/* A 1 MiB vmalloc space: it fills with first-fit packing, then allocations
 * fail cleanly, and a free makes room again. */
static void test_space_exhaustion(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_cfg(ps, 1 * GiB, 1 * MiB, 0, 0);
    size_t per = pages_of(64 * KiB, ps) + 1;   /* with its guard page */
    void *p[64];
    size_t n = 0;
    void *q;
    while (n < 64 && (q = kmm_vmalloc(mm, 64 * KiB, 0)) != NULL)
        p[n++] = q;
    struct kmm_vmalloc_stats st = vstats(mm);
    assert_int_equal(st.space_bytes, 1 * MiB);
    assert_int_equal(n, 1 * MiB / (per * ps));
    errno = 0;
    assert_null(kmm_vmalloc(mm, 64 * KiB, 0));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(kmm_vmalloc(mm, 2 * MiB, 0));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(kmm_vmalloc_aligned(mm, ps, 2 * MiB, 0));
    assert_int_equal(errno, ENOMEM);
    if (st.largest_free_bytes < 2 * ps) {   /* not even one page and a guard */
        void *page = kmm_alloc_pages(mm, 0, 0);
        kmm_phys_t phys = kmm_virt_to_phys(mm, page);
        errno = 0;
        assert_null(kmm_vmap(mm, &phys, 1, KMM_PROT_READ));
        assert_int_equal(errno, ENOMEM);
        kmm_free_pages(mm, page);
    }
    assert_int_equal(vstats(mm).areas, n);
    assert_int_equal(kmm_check(mm), 0);
    /* a free (lazy) makes room: the allocation purges for it */
    kmm_vfree(mm, p[n / 2]);
    p[n / 2] = kmm_vmalloc(mm, 64 * KiB, 0);
    assert_non_null(p[n / 2]);
    memset(p[n / 2], 3, 64 * KiB);
    assert_int_equal(kmm_check(mm), 0);
    for (size_t i = 0; i < n; i++)
        kmm_vfree(mm, p[i]);
    kmm_vmalloc_purge(mm);
    st = vstats(mm);
    assert_int_equal(st.free_bytes, 1 * MiB);
    assert_int_equal(st.free_ranges, 1);
    finish(mm);
}

/* Size 0 is refused with EINVAL; sizes beyond any space with ENOMEM. */
static void test_bad_sizes(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    errno = 0;
    assert_null(kmm_vmalloc(mm, 0, 0));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(kmm_vmalloc_aligned(mm, 0, 64 * KiB, 0));
    assert_int_equal(errno, EINVAL);
    const size_t huge[] = { SIZE_MAX, SIZE_MAX - ps + 2, SIZE_MAX / 2 + 1, (size_t)1 << 50 };
    for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
        errno = 0;
        assert_null(kmm_vmalloc(mm, huge[i], 0));
        assert_int_equal(errno, ENOMEM);
        errno = 0;
        assert_null(kmm_kvmalloc(mm, huge[i], 0));
        assert_int_equal(errno, ENOMEM);
    }
    struct kmm_vmalloc_stats st = vstats(mm);
    assert_int_equal(st.areas, 0);
    assert_int_equal(st.map_calls, 0);
    /* the refused calls left the space usable */
    void *p = kmm_vmalloc(mm, ps, 0);
    assert_non_null(p);
    kmm_vfree(mm, p);
    finish(mm);
}

/* Mapping calls fail (fault injection): NULL with ENOMEM, and nothing is
 * held afterwards: no area, no page, no mapping counted. */
static void test_map_failure_leaves_nothing(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    kmm_vfree(mm, kmm_vmalloc(mm, ps, 0));   /* the space and its node cache exist */
    kmm_vmalloc_purge(mm);
    kmm_drain(mm);
    size_t fp = free_pages(mm);
    struct kmm_vmalloc_stats before = vstats(mm);
    kmm_fault_inject(mm, KMM_FAULT_MAP, 1, 1);
    errno = 0;
    assert_null(kmm_vmalloc(mm, 64 * KiB, 0));
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(kmm_fault_injected(mm), 1);
    kmm_fault_inject(mm, 0, 0, 0);
    struct kmm_vmalloc_stats st = vstats(mm);
    assert_int_equal(st.areas, 0);
    assert_int_equal(st.pages, 0);
    assert_int_equal(st.mappings, before.mappings);
    assert_int_equal(st.free_bytes, before.free_bytes);
    kmm_drain(mm);
    assert_int_equal(free_pages(mm), fp);
    assert_int_equal(kmm_check(mm), 0);

    void *page = kmm_alloc_pages(mm, 0, 0);
    assert_non_null(page);
    kmm_phys_t phys = kmm_virt_to_phys(mm, page);
    kmm_fault_inject(mm, KMM_FAULT_MAP, 1, 1);
    errno = 0;
    assert_null(kmm_vmap(mm, &phys, 1, KMM_PROT_READ | KMM_PROT_WRITE));
    assert_int_equal(errno, ENOMEM);
    kmm_fault_inject(mm, 0, 0, 0);
    assert_int_equal(vstats(mm).vmap_areas, 0);
    assert_int_equal(kmm_page_alloc_size(mm, page), 1);
    assert_int_equal(kmm_check(mm), 0);

    /* the area's own bookkeeping failing: the same */
    kmm_fault_inject(mm, KMM_FAULT_META, 1, 0);
    errno = 0;
    assert_null(kmm_vmalloc(mm, 8 * ps, 0));
    assert_int_equal(errno, ENOMEM);
    kmm_fault_inject(mm, 0, 0, 0);
    assert_int_equal(vstats(mm).areas, 0);
    assert_int_equal(kmm_check(mm), 0);

    /* page allocations failing: the same */
    kmm_fault_inject(mm, KMM_FAULT_PAGES, 1, 0);
    errno = 0;
    assert_null(kmm_vmalloc(mm, 8 * ps, 0));
    assert_int_equal(errno, ENOMEM);
    kmm_fault_inject(mm, 0, 0, 0);
    assert_int_equal(vstats(mm).areas, 0);
    assert_int_equal(kmm_check(mm), 0);
    /* and then it all works */
    void *p = kmm_vmalloc(mm, 64 * KiB, 0);
    assert_non_null(p);
    memset(p, 1, 64 * KiB);
    kmm_vfree(mm, p);
    kmm_free_pages(mm, page);
    finish(mm);
}

/* The area mask in flags chooses where the pages come from. */
static void test_area_mask(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    unsigned char *low = kmm_vmalloc(mm, 40 * ps, KMM_AREA_LOWEST);
    unsigned char *mid = kmm_vmalloc(mm, 40 * ps, KMM_AREA_LOW);
    assert_non_null(low);
    assert_non_null(mid);
    for (size_t k = 0; k < 40; k++) {
        kmm_phys_t a = kmm_vmalloc_to_phys(mm, low + k * ps), b = kmm_vmalloc_to_phys(mm, mid + k * ps);
        assert_true(a < 16 * MiB);
        assert_true(b >= 16 * MiB && b < 1 * GiB);
    }
    kmm_vfree(mm, low);
    kmm_vfree(mm, mid);
    finish(mm);
}

/* ---- tags, info, stats ------------------------------------------------------------------- */

static void test_info_listing(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    void *a = kmm_vmalloc(mm, 3 * ps + 1, 0);
    void *b = kmm_vmalloc(mm, 100, 0);
    void *c = kmm_kvmalloc(mm, 2 * ps, 0);
    void *pages = kmm_alloc_pages(mm, 1, 0);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_non_null(pages);
    kmm_phys_t phys[2] = { kmm_virt_to_phys(mm, pages), kmm_virt_to_phys(mm, pages) + ps };
    void *rw = kmm_vmap(mm, phys, 2, KMM_PROT_READ | KMM_PROT_WRITE);
    void *ro = kmm_vmap(mm, phys, 1, KMM_PROT_READ);
    void *gone = kmm_vmalloc(mm, 5 * ps, 0);
    assert_non_null(rw);
    assert_non_null(ro);
    assert_non_null(gone);
    kmm_vfree(mm, gone);
    kmm_vmalloc_set_tag(mm, a, "my-table");
    kmm_vmalloc_set_tag(mm, rw, "my-window");

    struct info_list *l = info_get(mm);
    assert_int_equal(l->n, 6);
    size_t vmalloc_pages = 0, nv = 0, nm = 0;
    for (size_t i = 0; i < l->n; i++) {
        const struct kmm_vmalloc_area_info *e = &l->a[i];
        if (i > 0)
            assert_true(e->start >= l->a[i - 1].end);   /* address order, no overlap */
        assert_int_equal(e->start % ps, 0);
        assert_int_equal(e->end, e->start + e->pages * ps + ps);
        assert_true(e->runs >= 1 && e->runs <= e->pages);
        assert_non_null(e->kind);
        assert_non_null(e->tag);
        assert_non_null(e->caller);
        void *s = (void *)e->start;
        if (s == a) {
            assert_string_equal(e->kind, "vmalloc");
            assert_string_equal(e->tag, "my-table");
            assert_int_equal(e->size, 3 * ps + 1);
            assert_int_equal(e->pages, 4);
        } else if (s == b) {
            assert_string_equal(e->kind, "vmalloc");
            assert_string_equal(e->tag, "kmm_vmalloc");   /* the function that made it */
            assert_int_equal(e->size, 100);
            assert_int_equal(e->pages, 1);
        } else if (s == c) {
            assert_string_equal(e->kind, "vmalloc");
            assert_string_equal(e->tag, "kmm_kvmalloc");
            assert_int_equal(e->pages, 2);
        } else if (s == rw) {
            assert_string_equal(e->kind, "vmap");
            assert_string_equal(e->tag, "my-window");
            assert_int_equal(e->pages, 2);
            assert_int_equal(e->runs, 1);
        } else if (s == ro) {
            assert_string_equal(e->kind, "vmap-ro");
            assert_string_equal(e->tag, "kmm_vmap");
            assert_int_equal(e->pages, 1);
        } else if (s == gone) {
            assert_string_equal(e->kind, "lazy-free");
            assert_int_equal(e->pages, 5);
        } else {
            fail_msg("unexpected area at %#" PRIxPTR, e->start);
        }
        if (!strcmp(e->kind, "vmalloc")) {
            vmalloc_pages += e->pages;
            nv++;
        } else if (!strncmp(e->kind, "vmap", 4)) {
            nm++;
        }
    }
    free(l);
    struct kmm_vmalloc_stats st = vstats(mm);
    assert_int_equal(st.areas, nv);
    assert_int_equal(st.pages, vmalloc_pages);
    assert_int_equal(st.vmap_areas, nm);
    assert_int_equal(st.vmap_pages, 3);
    assert_int_equal(st.lazy_areas, 1);
    assert_true(st.free_bytes <= st.space_bytes);
    assert_true(st.largest_free_bytes <= st.free_bytes);
    assert_int_equal(kmm_check(mm), 0);

    /* a tag can be changed, and a new area at a reused address does not inherit it */
    kmm_vmalloc_set_tag(mm, a, "renamed");
    assert_string_equal(info_of(mm, a).tag, "renamed");
    kmm_vfree(mm, a);
    kmm_vmalloc_purge(mm);
    void *a2 = kmm_vmalloc(mm, 3 * ps + 1, 0);
    assert_ptr_equal(a2, a);
    assert_string_equal(info_of(mm, a2).tag, "kmm_vmalloc");
    kmm_vfree(mm, a2);
    kmm_vfree(mm, b);
    kmm_kvfree(mm, c);
    kmm_vunmap(mm, rw);
    kmm_vunmap(mm, ro);
    kmm_free_pages(mm, pages);
    finish(mm);
}

/* Before the first vmalloc call: no space, zero stats, an empty listing. */
static void test_stats_before_use(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    struct kmm_vmalloc_stats st = vstats(mm);
    assert_int_equal(st.space_bytes, 0);
    assert_int_equal(st.areas, 0);
    assert_int_equal(st.map_calls, 0);
    struct info_list *l = info_get(mm);
    assert_int_equal(l->n, 0);
    free(l);
    assert_int_equal(kmm_vmalloc_purge(mm), 0);
    finish(mm);
}

/* Many areas of mixed sizes, freed in a scrambled order: afterwards the
 * space is one free range again (frees merge with their neighbours). */
static void test_mixed_sizes_merge_back(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    enum { N = 300 };
    void *p[N];
    size_t sz[N];
    uint64_t rng = 0x9e3779b97f4a7c15ull;   /* fixed: the test is deterministic */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) {
            sz[i] = 1 + kmm_test_rand(&rng) % (i % 10 == 0 ? 160 * KiB : 12 * KiB);
            p[i] = kmm_vmalloc(mm, sz[i], 0);
            assert_non_null(p[i]);
            memset(p[i], i & 0xff, sz[i]);
        }
        for (int i = 0; i < N; i++)
            assert_bytes(p[i], sz[i], (unsigned char)(i & 0xff));
        for (int i = N - 1; i > 0; i--) {   /* shuffle */
            int j = (int)(kmm_test_rand(&rng) % (uint64_t)(i + 1));
            void *t = p[i];
            p[i] = p[j];
            p[j] = t;
        }
        for (int i = 0; i < N; i++) {
            kmm_vfree(mm, p[i]);
            if (i % 97 == 0)
                kmm_vmalloc_purge(mm);
        }
        kmm_vmalloc_purge(mm);
        struct kmm_vmalloc_stats st = vstats(mm);
        assert_int_equal(st.free_ranges, 1);
        assert_int_equal(st.free_bytes, st.space_bytes);
        assert_int_equal(st.largest_free_bytes, st.space_bytes);
        assert_true(st.mappings <= 1);   /* no area; the reservation itself may count one */
        assert_int_equal(kmm_check(mm), 0);
    }
    finish(mm);
}

/* ---- destroy ----------------------------------------------------------------------------- */

static size_t count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    size_t n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* Does any mapping of this process overlap [start, end)? */
static bool mapped_in(uintptr_t start, uintptr_t end)
{
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char line[512];
    bool hit = false;
    while (fgets(line, sizeof line, f)) {
        uintptr_t lo, hi;
        if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &lo, &hi) == 2 && lo < end && hi > start)
            hit = true;
    }
    fclose(f);
    return hit;
}

/* kmm_destroy with live vmalloc, vmap and lazily freed areas: no crash, the
 * whole space is unmapped, no file descriptor stays open. */
static void test_destroy_with_live_areas(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    size_t fds = count_fds();
    for (int round = 0; round < 2; round++) {
        struct kmm *mm = round == 0 ? create_mm_default(ps) : create_mm(ps);
        void *a = kmm_vmalloc(mm, 64 * KiB, 0);
        void *b = kmm_vmalloc(mm, 3 * MiB, KMM_ZERO);
        void *c = kmm_vmalloc(mm, ps, 0);
        void *pg = kmm_alloc_pages(mm, 0, 0);
        assert_non_null(a);
        assert_non_null(b);
        assert_non_null(c);
        assert_non_null(pg);
        kmm_phys_t phys = kmm_virt_to_phys(mm, pg);
        void *v = kmm_vmap(mm, &phys, 1, KMM_PROT_READ | KMM_PROT_WRITE);
        assert_non_null(v);
        memset(a, 1, 64 * KiB);
        memset(b, 2, 3 * MiB);
        kmm_vfree(mm, c);   /* lazy */
        struct kmm_vmalloc_stats st = vstats(mm);
        struct info_list *l = info_get(mm);
        uintptr_t start = l->a[0].start, end = start + st.space_bytes;
        free(l);
        assert_true(mapped_in(start, end));
        assert_int_equal(kmm_check(mm), 0);
        kmm_destroy(mm);
        assert_false(mapped_in(start, end));
        assert_int_equal(count_fds(), fds);
    }
}

/* ---- bookkeeping out of reach of user overflows ------------------------------------ */

#if KMM_TEST_ASAN
void *__asan_region_is_poisoned(void *beg, size_t size);
#endif

/* Writes the 16-byte record rec over the whole page holding p, but for
 * what ASan says is free (a free slot: ASan would report the write, and it
 * holds nothing of kmm's). */
static void smash_page(void *p, size_t ps, const uint64_t rec[2])
{
    uint64_t *w = (uint64_t *)((uintptr_t)p & ~(uintptr_t)(ps - 1));
    for (size_t i = 0; i < ps / 8; i += 2) {
#if KMM_TEST_ASAN
        if (__asan_region_is_poisoned(&w[i], 16))
            continue;
#endif
        w[i] = rec[0];
        w[i + 1] = rec[1];
    }
}

/* Issue 13, finding 5: a user's kmm_malloc(128) overflowing into its
 * neighbour could rewrite a vmalloc area's run array (then kmm_malloc
 * memory: cap 8 runs is 128 bytes, cap 32 is 512), and the purge freed
 * whatever live block the forged physical address named. Areas of 6 and 20
 * runs on memory fragmented to single pages; then the user takes many
 * kmm_malloc objects of those classes and writes, over every slab page
 * they lie in, runs that name a page the user still holds. The vfrees and
 * the purge must free the areas' own pages only: every held page stays
 * allocated and kmm_check passes. */
static void test_user_overflow_cannot_reach_runs(void **state)
{
    (void)state;
    size_t ps = 4 * KiB;
    struct kmm *mm = create_cfg(ps, 64 * MiB, 128 * MiB, 0, 0);
    kmm_vfree(mm, kmm_vmalloc(mm, ps, 0));
    kmm_vmalloc_purge(mm);
    kmm_drain(mm);

    size_t max = 64 * MiB / ps, n = 0;
    void **pg = calloc(max, sizeof(*pg));
    assert_non_null(pg);
    while (n < max && (pg[n] = kmm_alloc_pages(mm, 0, 0)) != NULL)
        n++;
    qsort(pg, n, sizeof(*pg), cmp_ptr);
    for (size_t i = 1; i < n; i += 2) {
        kmm_free_pages(mm, pg[i]);
        pg[i] = NULL;
    }
    kmm_drain(mm);

    enum { AREAS = 96 };
    void *area[AREAS];
    for (size_t i = 0; i < AREAS; i++) {
        size_t pages = i % 2 ? 20 : 6;   /* run arrays of 32 and 8 runs */
        area[i] = kmm_vmalloc(mm, pages * ps, 0);
        assert_non_null(area[i]);
        assert_int_equal(info_of(mm, area[i]).runs, pages);
        kmm_test_fill(area[i], pages * ps, (unsigned)i);
    }

    /* the victim: a page the user holds; a forged run {victim, first 0} */
    void *victim = pg[n / 2 & ~(size_t)1];
    assert_non_null(victim);
    const uint64_t rec[2] = { kmm_virt_to_phys(mm, victim), 0 };
    enum { OBJS = 2048 };
    const size_t sizes[] = { 128, 512 };
    void *obj[2][OBJS];
    for (size_t k = 0; k < 2; k++) {
        for (size_t i = 0; i < OBJS; i++) {
            obj[k][i] = kmm_malloc(mm, sizes[k], 0);
            assert_non_null(obj[k][i]);
        }
        for (size_t i = 0; i < OBJS; i++)
            smash_page(obj[k][i], ps, rec);
    }

    for (size_t i = 0; i < AREAS; i++) {
        size_t pages = i % 2 ? 20 : 6;
        assert_pattern(area[i], pages * ps, (unsigned)i);
        kmm_vfree(mm, area[i]);
    }
    kmm_vmalloc_purge(mm);
    for (size_t i = 0; i < n; i += 2)
        assert_int_equal(kmm_page_alloc_size(mm, pg[i]), 1);
    assert_int_equal(kmm_check(mm), 0);

    for (size_t k = 0; k < 2; k++)
        for (size_t i = 0; i < OBJS; i++)
            kmm_free(mm, obj[k][i]);
    for (size_t i = 0; i < n; i += 2)
        kmm_free_pages(mm, pg[i]);
    free(pg);
    struct kmm_vmalloc_stats st = vstats(mm);
    assert_int_equal(st.areas, 0);
    assert_int_equal(st.lazy_areas, 0);
    finish(mm);
}

/* ---- the tests ------------------------------------------------------------------ */

/* An argument runs only the tests whose names match it (cmocka's pattern). */
int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        KMM_TEST_PER_PAGE_SIZE(test_vmalloc_sizes),
        KMM_TEST_PER_PAGE_SIZE(test_vmalloc_zero),
        KMM_TEST_PER_PAGE_SIZE(test_vmalloc_zero_reused_frames),
        KMM_TEST_PER_PAGE_SIZE(test_vmalloc_aligned),
        KMM_TEST_PER_PAGE_SIZE(test_vmalloc_to_phys),
        KMM_TEST_PER_PAGE_SIZE(test_vmalloc_to_phys_none),
        KMM_TEST_PER_PAGE_SIZE(test_is_vmalloc_addr),
        KMM_TEST_PER_PAGE_SIZE(test_unfragmented_one_run),
        KMM_TEST_SMALL_PAGES(test_fragmented_one_run_per_page),
        KMM_TEST_PER_PAGE_SIZE(test_vmap_rw),
        KMM_TEST_PER_PAGE_SIZE(test_vmap_ro),
        KMM_TEST_PER_PAGE_SIZE(test_vmap_aliases),
        KMM_TEST_PER_PAGE_SIZE(test_vmap_many_runs),
        KMM_TEST_PER_PAGE_SIZE(test_vmap_bad_args),
        KMM_TEST_PER_PAGE_SIZE(test_kvmalloc_picks),
        KMM_TEST_PER_PAGE_SIZE(test_frees_take_every_kind),
        KMM_TEST_PER_PAGE_SIZE(test_usable_size),
        KMM_TEST_PER_PAGE_SIZE(test_realloc_grow_in_place),
        KMM_TEST_PER_PAGE_SIZE(test_realloc_shrink_in_place),
        KMM_TEST_PER_PAGE_SIZE(test_realloc_moves_when_blocked),
        KMM_TEST_PER_PAGE_SIZE(test_realloc_grow_exact_fit),
        KMM_TEST_PER_PAGE_SIZE(test_realloc_zero_growth),
        KMM_TEST_PER_PAGE_SIZE(test_realloc_zero_size_and_failure),
        KMM_TEST_PER_PAGE_SIZE(test_no_page_leak),
        KMM_TEST_PER_PAGE_SIZE(test_lazy_free_and_purge),
        KMM_TEST_PER_PAGE_SIZE(test_lazy_frames_stay_out),
        KMM_TEST_PER_PAGE_SIZE(test_lazy_pages_count_as_free),
        KMM_TEST_PER_PAGE_SIZE(test_reuse_after_free_keeps_promises),
        KMM_TEST_PER_PAGE_SIZE(test_reuse_lazy_area),
        { "test_reuse_size_limit_4k", test_reuse_size_limit, NULL, NULL, &kmm_test_page_sizes[0] },
        KMM_TEST_PER_PAGE_SIZE(test_strict_no_reuse),
        KMM_TEST_PER_PAGE_SIZE(test_spread_no_address_reuse),
        KMM_TEST_PER_PAGE_SIZE(test_nopopulate),
        KMM_TEST_PER_PAGE_SIZE(test_reuse_after_realloc_keeps_area_mask),
        { "test_lazy_purge_threshold_4k", test_lazy_purge_threshold, NULL, NULL, &kmm_test_page_sizes[0] },
        KMM_TEST_PER_PAGE_SIZE(test_strict_mode),
        KMM_TEST_PER_PAGE_SIZE(test_purge_batches_adjacent),
        KMM_TEST_PER_PAGE_SIZE(test_drain_purges),
        KMM_TEST_PER_PAGE_SIZE(test_mapping_limit),
        { "test_default_mapping_budget", test_default_mapping_budget, NULL, NULL, NULL },
        KMM_TEST_PER_PAGE_SIZE(test_space_exhaustion),
        KMM_TEST_PER_PAGE_SIZE(test_bad_sizes),
        KMM_TEST_PER_PAGE_SIZE(test_map_failure_leaves_nothing),
        KMM_TEST_PER_PAGE_SIZE(test_area_mask),
        KMM_TEST_PER_PAGE_SIZE(test_info_listing),
        KMM_TEST_PER_PAGE_SIZE(test_stats_before_use),
        KMM_TEST_PER_PAGE_SIZE(test_mixed_sizes_merge_back),
        KMM_TEST_PER_PAGE_SIZE(test_destroy_with_live_areas),
        { "test_user_overflow_cannot_reach_runs_4k", test_user_overflow_cannot_reach_runs, NULL, NULL, NULL },
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
