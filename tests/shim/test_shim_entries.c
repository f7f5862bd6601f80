/* Unit tests of every C entry of libkmm-malloc, linked directly with it (the
 * program's malloc is the shim's): what each returns, alignment, zeroing,
 * content kept across realloc (also between the small and the large kind at
 * the page size), errno as POSIX says (ENOMEM on failure, EINVAL where the
 * function reports it that way, never cleared, untouched by free), and
 * glibc's choices where POSIX leaves one (include/kmm/shim.h). Misuse is
 * tests/misuse's business. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kmm/shim.h>

#define MiB ((size_t)1 << 20)

/* Sizes the compiler cannot see (it would warn, or fold the call). */
static volatile size_t size_max = SIZE_MAX;
static size_t page;

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
/* a realloc that fails leaves the block valid: that is what is checked */
#pragma GCC diagnostic ignored "-Wuse-after-free"
#endif

static int setup(void **state)
{
    (void)state;
    page = (size_t)sysconf(_SC_PAGESIZE);
    return 0;
}

static unsigned char pattern(size_t i, unsigned seed) { return (unsigned char)(i * 131 + seed * 7 + (i >> 8)); }

static void fill(void *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        ((unsigned char *)p)[i] = pattern(i, seed);
}

static void assert_filled(const void *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (((const unsigned char *)p)[i] != pattern(i, seed))
            fail_msg("byte %zu of %zu changed", i, n);
}

static void assert_zero(const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (((const unsigned char *)p)[i])
            fail_msg("byte %zu of %zu not zero", i, n);
}

/* The sizes every test walks: all small ones near the object classes, both
 * sides of the page size and its multiples, a few large ones. */
static size_t sizes[200];
static size_t nsizes;

static void make_sizes(void)
{
    nsizes = 0;
    for (size_t s = 0; s <= 64; s++)
        sizes[nsizes++] = s;
    size_t marks[] = { 96, 128, 192, 256, 512, 1024, 2048, page - 1, page, page + 1, 2 * page - 1,
                       2 * page, 2 * page + 1, 65536, 65537, MiB, 3 * MiB + 5 };
    for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
        sizes[nsizes++] = marks[i];
}

static void test_malloc_sizes(void **state)
{
    (void)state;
    make_sizes();
    void *p[200];
    for (size_t i = 0; i < nsizes; i++) {
        p[i] = malloc(sizes[i]);
        assert_non_null(p[i]);
        assert_int_equal((uintptr_t)p[i] % (sizes[i] >= 16 ? 16 : 8), 0);   /* max_align_t for what fits it */
        fill(p[i], sizes[i], (unsigned)i);
    }
    for (size_t i = 0; i < nsizes; i++) {
        assert_filled(p[i], sizes[i], (unsigned)i);
        free(p[i]);
    }
    free(NULL);
}

static void test_malloc_zero_unique(void **state)
{
    (void)state;
    void *a = malloc(0), *b = malloc(0);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    free(a);
    free(b);
}

static void test_calloc_zeroes_reused_memory(void **state)
{
    (void)state;
    size_t n[] = { 1, 24, 100, 1000, page - 8, page, page + 1, 5 * page, 100000, 3 * MiB };
    for (size_t i = 0; i < sizeof(n) / sizeof(n[0]); i++) {
        for (int round = 0; round < 8; round++) {
            unsigned char *dirty = malloc(n[i]);
            assert_non_null(dirty);
            memset(dirty, 0xa5, n[i]);
            free(dirty);
            unsigned char *z = calloc(1, n[i]);
            assert_non_null(z);
            assert_zero(z, n[i]);
            free(z);
        }
        unsigned char *z = calloc(n[i], 3);
        assert_non_null(z);
        assert_zero(z, n[i] * 3);
        free(z);
    }
    void *zero = calloc(0, 0);
    assert_non_null(zero);
    free(zero);
}

static void test_calloc_overflow(void **state)
{
    (void)state;
    errno = 0;
    assert_null(calloc(size_max / 2 + 1, 2));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(calloc(2, size_max / 2 + 1));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(calloc(size_max >> 31, size_max >> 33));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(calloc(1, size_max));   /* no overflow, just too large */
    assert_int_equal(errno, ENOMEM);
}

/* realloc through a chain of sizes that crosses the page size both ways:
 * each step keeps min(old, new) bytes. */
static void test_realloc_across_page(void **state)
{
    (void)state;
    size_t chain[] = { 1, 100, page - 1, page, page + 1, 3 * page, 100000, page + 1, page, page - 1,
                       10, 2 * MiB, 16, 5 * page, 5 * page + 1, 5 * page - 1, 2 };
    size_t had = 0;
    unsigned char *p = NULL;
    for (size_t i = 0; i < sizeof(chain) / sizeof(chain[0]); i++) {
        unsigned char *q = realloc(p, chain[i]);
        assert_non_null(q);
        size_t kept = had < chain[i] ? had : chain[i];
        assert_filled(q, kept, 9);
        fill(q, chain[i], 9);
        p = q;
        had = chain[i];
        assert_true(malloc_usable_size(p) >= had);
    }
    free(p);
}

static void test_realloc_null_and_zero(void **state)
{
    (void)state;
    unsigned char *p = realloc(NULL, 300);   /* malloc(300) */
    assert_non_null(p);
    fill(p, 300, 1);
    assert_filled(p, 300, 1);
    assert_null(realloc(p, 0));   /* glibc: frees and returns NULL */
    void *big = realloc(NULL, 3 * page);
    assert_non_null(big);
    assert_null(realloc(big, 0));
    void *none = realloc(NULL, 0);   /* malloc(0) */
    assert_non_null(none);
    free(none);
}

static void test_realloc_failure_keeps_block(void **state)
{
    (void)state;
    size_t n[] = { 50, page + 1 };
    for (int i = 0; i < 2; i++) {
        unsigned char *p = malloc(n[i]);
        assert_non_null(p);
        fill(p, n[i], 4);
        errno = 0;
        assert_null(realloc(p, size_max - 10));
        assert_int_equal(errno, ENOMEM);
        assert_filled(p, n[i], 4);
        free(p);
    }
}

static void test_reallocarray(void **state)
{
    (void)state;
    int *a = reallocarray(NULL, 10, sizeof(int));
    assert_non_null(a);
    for (int i = 0; i < 10; i++)
        a[i] = i * i;
    a = reallocarray(a, 5000, sizeof(int));   /* across the page size */
    assert_non_null(a);
    for (int i = 0; i < 10; i++)
        assert_int_equal(a[i], i * i);
    errno = 0;
    assert_null(reallocarray(a, size_max / 2, 4));
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(a[9], 81);   /* still a's */
    free(a);
}

static void test_posix_memalign_einval(void **state)
{
    (void)state;
    size_t bad[] = { 0, 1, 2, 4, 3, 24, 48, 4097, size_max };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        void *out = (void *)&bad;
        errno = 1234;
        assert_int_equal(posix_memalign(&out, bad[i], 100), EINVAL);
        assert_ptr_equal(out, (void *)&bad);   /* untouched */
        assert_int_equal(errno, 1234);        /* the error is returned, not stored */
    }
}

static void test_posix_memalign_alignments(void **state)
{
    (void)state;
    size_t n[] = { 0, 1, 100, page, 5000, 3 * MiB };
    for (size_t align = sizeof(void *); align <= 2 * MiB; align *= 2) {
        for (size_t i = 0; i < sizeof(n) / sizeof(n[0]); i++) {
            void *p = NULL;
            assert_int_equal(posix_memalign(&p, align, n[i]), 0);
            assert_non_null(p);
            if ((uintptr_t)p % align)
                fail_msg("posix_memalign(%zu, %zu) gave %p", align, n[i], p);
            assert_true(malloc_usable_size(p) >= n[i]);
            fill(p, n[i], 2);
            assert_filled(p, n[i], 2);
            free(p);
        }
    }
    void *p = (void *)&n;
    assert_int_equal(posix_memalign(&p, 64, size_max - 100), ENOMEM);
    assert_ptr_equal(p, (void *)&n);
}

static void test_aligned_alloc(void **state)
{
    (void)state;
    for (size_t align = 1; align <= 2 * MiB; align *= 2) {
        size_t n[] = { 1, align, 3 * align + 1 };   /* C17: the size need not be a multiple */
        for (int i = 0; i < 3; i++) {
            void *p = aligned_alloc(align, n[i]);
            assert_non_null(p);
            assert_int_equal((uintptr_t)p % align, 0);
            memset(p, 0x11, n[i]);
            free_aligned_sized(p, align, n[i]);
        }
    }
    errno = 0;
    assert_null(aligned_alloc(3, 100));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(aligned_alloc(24, 100));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(aligned_alloc(64, size_max - 64));
    assert_int_equal(errno, ENOMEM);
}

static void test_memalign_rounds_up(void **state)
{
    (void)state;
    struct {
        size_t asked, got;
    } cases[] = { { 1, 1 }, { 3, 4 }, { 48, 64 }, { 100, 128 }, { 3000, 4096 }, { 5000, 8192 }, { 1 << 20, 1 << 20 } };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (int round = 0; round < 16; round++) {   /* a single lucky address proves little */
            void *p = memalign(cases[i].asked, 200);
            assert_non_null(p);
            if ((uintptr_t)p % cases[i].got)
                fail_msg("memalign(%zu) gave %p, not %zu-aligned", cases[i].asked, p, cases[i].got);
            free(p);
        }
    }
    errno = 0;
    assert_null(memalign(size_max / 2 + 2, 16));   /* nothing to round up to */
    assert_int_equal(errno, EINVAL);
}

static void test_valloc_pvalloc(void **state)
{
    (void)state;
    size_t n[] = { 0, 1, page - 1, page, page + 1, 10 * page + 3 };
    for (size_t i = 0; i < sizeof(n) / sizeof(n[0]); i++) {
        void *v = valloc(n[i]);
        assert_non_null(v);
        assert_int_equal((uintptr_t)v % page, 0);
        assert_true(malloc_usable_size(v) >= n[i]);
        free(v);
        void *pv = pvalloc(n[i]);
        assert_non_null(pv);
        assert_int_equal((uintptr_t)pv % page, 0);
        size_t rounded = n[i] ? (n[i] + page - 1) / page * page : page;   /* pvalloc(0): a page */
        assert_true(malloc_usable_size(pv) >= rounded);
        memset(pv, 0x22, rounded);   /* the whole rounded size is the caller's */
        free(pv);
    }
    errno = 0;
    assert_null(pvalloc(size_max - 1));
    assert_int_equal(errno, ENOMEM);
}

static void test_usable_size(void **state)
{
    (void)state;
    make_sizes();
    assert_int_equal(malloc_usable_size(NULL), 0);
    for (size_t i = 0; i < nsizes; i++) {
        unsigned char *p = malloc(sizes[i]);
        assert_non_null(p);
        size_t usable = malloc_usable_size(p);
        if (usable < sizes[i])
            fail_msg("malloc_usable_size %zu < %zu asked", usable, sizes[i]);
        if (usable > sizes[i] + sizes[i] / 2 + page)
            fail_msg("malloc_usable_size %zu for %zu asked: a class that wasteful is a bug", usable, sizes[i]);
        memset(p, 0x33, usable);   /* every usable byte is the caller's */
        free(p);
    }
}

static void test_free_sized(void **state)
{
    (void)state;
    make_sizes();
    for (size_t i = 0; i < nsizes; i++) {
        void *p = malloc(sizes[i]);
        assert_non_null(p);
        free_sized(p, sizes[i]);
        p = calloc(sizes[i], 1);
        assert_non_null(p);
        free_sized(p, sizes[i]);
    }
    free_sized(NULL, 0);
    free_aligned_sized(NULL, 64, 0);
    void *p = aligned_alloc(4096, 10000);
    assert_non_null(p);
    free_aligned_sized(p, 4096, 10000);
}

/* POSIX: no function sets errno to 0; free() does not change errno. */
static void test_errno_untouched_by_success(void **state)
{
    (void)state;
    make_sizes();
    for (size_t i = 0; i < nsizes; i++) {
        errno = 4321;
        void *p = malloc(sizes[i]);
        void *q = calloc(1, sizes[i]);
        p = realloc(p, sizes[i] * 2 + 1);
        assert_non_null(p);
        assert_non_null(q);
        free(p);
        free(q);
        assert_int_equal(errno, 4321);
    }
}

static void test_malloc_trim(void **state)
{
    (void)state;
    void *p[1000];
    for (int i = 0; i < 1000; i++)
        p[i] = malloc((size_t)(i % 50) * 40 + (i % 10 == 0 ? 3 * page : 0));
    for (int i = 0; i < 1000; i += 2)
        free(p[i]);
    malloc_trim(0);
    for (int i = 1; i < 1000; i += 2) {
        memset(p[i], 0x44, (size_t)(i % 50) * 40);
        free(p[i]);
    }
    void *after = malloc(100);
    assert_non_null(after);
    free(after);
}

static void test_no_options_by_default(void **state)
{
    (void)state;
    /* ctest runs this with KMM_OPTIONS empty */
    assert_int_equal(kmm_shim_options(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malloc_sizes),
        cmocka_unit_test(test_malloc_zero_unique),
        cmocka_unit_test(test_calloc_zeroes_reused_memory),
        cmocka_unit_test(test_calloc_overflow),
        cmocka_unit_test(test_realloc_across_page),
        cmocka_unit_test(test_realloc_null_and_zero),
        cmocka_unit_test(test_realloc_failure_keeps_block),
        cmocka_unit_test(test_reallocarray),
        cmocka_unit_test(test_posix_memalign_einval),
        cmocka_unit_test(test_posix_memalign_alignments),
        cmocka_unit_test(test_aligned_alloc),
        cmocka_unit_test(test_memalign_rounds_up),
        cmocka_unit_test(test_valloc_pvalloc),
        cmocka_unit_test(test_usable_size),
        cmocka_unit_test(test_free_sized),
        cmocka_unit_test(test_errno_untouched_by_success),
        cmocka_unit_test(test_malloc_trim),
        cmocka_unit_test(test_no_options_by_default),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
