/* test_zstore.c - the compressed page store's contract (kmm/zstore.h), for
 * LZ4 and zstd at 4 and 16 KiB pages (64 KiB for the round trip):
 *  - every kind of page comes back byte for byte: compressible text,
 *    same-filled with several words, zeros, incompressible random, and a
 *    page that compresses to just under the huge threshold; each is stored
 *    as its kind (same_pages, huge_pages, compr_data_size say so);
 *  - an index never written, or discarded, reads as zeros; overwrites of
 *    every kind by every kind free what they replace;
 *  - the huge threshold is exact: a page whose compressed size is C is
 *    stored compressed at threshold C and whole at C - 1;
 *  - the memory limit refuses a write that would pass it (ENOSPC), the
 *    index keeping its page; same-filled pages need no memory and pass;
 *  - bad arguments (unknown algorithm, 0 pages, an index beyond the store,
 *    a threshold above a page) return errors with a report and change
 *    nothing;
 *  - the stats are exact after a known sequence;
 *  - fault injection at every metadata and page allocation of a create and
 *    of a write: each failure is ENOMEM and leaves the store as it was;
 *  - a compressed stream overwritten in the pool's memory aborts the read
 *    with the index and the reason.
 * kmm_zstore_check (which ends with kmm_check) runs after each step.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <kmm.h>
#include <kmm/zstore.h>

#include "kmm_test.h"

#define MEM_SIZE ((uint64_t)64 << 20)

struct param {
    const char *algo;
    size_t page_size;
};
static struct param params[] = {
    { "lz4", 4096 }, { "zstd", 4096 }, { "lz4", 16384 }, { "zstd", 16384 }, { "lz4", 65536 }, { "zstd", 65536 },
};
#define PER_ALGO_SMALL(fn)                                       \
    { #fn "_lz4_4k", fn, NULL, NULL, &params[0] },               \
    { #fn "_zstd_4k", fn, NULL, NULL, &params[1] },              \
    { #fn "_lz4_16k", fn, NULL, NULL, &params[2] },              \
    { #fn "_zstd_16k", fn, NULL, NULL, &params[3] }
#define PER_ALGO(fn)                                             \
    PER_ALGO_SMALL(fn),                                          \
    { #fn "_lz4_64k", fn, NULL, NULL, &params[4] },              \
    { #fn "_zstd_64k", fn, NULL, NULL, &params[5] }

static const struct param *param_of(void **state) { return *state; }

/* ---- pages ------------------------------------------------------------------ */

enum kind { K_TEXT, K_SAME, K_ZERO, K_RANDOM, K_NEAR };

static const char *const vocabulary[] = {
    "the ", "page ", "allocator ", "of ", "kmm ", "compresses ", "memory ", "and ",
    "zram ", "stores ", "it ", "by ", "index ", "with ", "LZ4 ", "zstd ", "\n",
};

/* A page of kind from seed: text of words (compresses 2-4x), one repeated
 * word (never the same one for two seeds), zeros, random bytes, or random
 * bytes over 7/8 of it and zeros beyond (compresses to just under the
 * default threshold of 15/16). */
static void make_page(unsigned char *p, size_t ps, enum kind kind, uint64_t seed)
{
    uint64_t rng = kmm_test_mix64(seed) | 1;
    switch (kind) {
    case K_TEXT:
        for (size_t i = 0; i < ps;) {
            const char *w = vocabulary[kmm_test_below(&rng, sizeof(vocabulary) / sizeof(vocabulary[0]))];
            for (; *w && i < ps; w++)
                p[i++] = (unsigned char)*w;
        }
        break;
    case K_SAME: {
        uint64_t w = kmm_test_mix64(seed + 1);
        for (size_t i = 0; i < ps; i += 8)
            memcpy(p + i, &w, 8);
        break;
    }
    case K_ZERO:
        memset(p, 0, ps);
        break;
    case K_RANDOM:
    case K_NEAR:
        for (size_t i = 0; i < ps; i += 8) {
            uint64_t w = kmm_test_rand(&rng);
            memcpy(p + i, &w, 8);
        }
        if (kind == K_NEAR)
            memset(p + ps / 8 * 7, 0, ps / 8);
        break;
    }
}

static void assert_page_eq(const unsigned char *got, const unsigned char *want, size_t ps)
{
    for (size_t i = 0; i < ps; i++) {
        if (got[i] != want[i]) {
            fprintf(stderr, "byte %zu of the page: %#x, expected %#x\n", i, got[i], want[i]);
            fail();
        }
    }
}

static void assert_zero_page(const unsigned char *got, size_t ps)
{
    for (size_t i = 0; i < ps; i++) {
        if (got[i]) {
            fprintf(stderr, "byte %zu of the page: %#x, expected 0\n", i, got[i]);
            fail();
        }
    }
}

/* ---- fixtures ------------------------------------------------------------------ */

struct fixture {
    struct kmm *mm;
    struct kmm_zstore *zs;
    size_t ps;
    unsigned char *page, *back;
};

static void setup(struct fixture *f, const struct param *pr, uint64_t nr_pages)
{
    f->ps = pr->page_size;
    f->mm = kmm_test_create(pr->page_size, MEM_SIZE);
    f->zs = kmm_zstore_create(f->mm, pr->algo, nr_pages);
    assert_non_null(f->zs);
    f->page = malloc(f->ps);
    f->back = malloc(f->ps);
    assert_non_null(f->page);
    assert_non_null(f->back);
}

static void teardown(struct fixture *f)
{
    assert_int_equal(kmm_zstore_check(f->zs), 0);
    kmm_zstore_destroy(f->zs);
    assert_int_equal(kmm_check(f->mm), 0);
    kmm_destroy(f->mm);
    free(f->page);
    free(f->back);
}

static struct kmm_zstore_stats stats_of(struct kmm_zstore *zs)
{
    struct kmm_zstore_stats st;
    kmm_zstore_stats(zs, &st);
    return st;
}

static size_t pool_objects(struct kmm_zstore *zs)
{
    struct kmm_zs_stats st;
    kmm_zs_stats(kmm_zstore_pool(zs), &st);
    return st.objects;
}

/* Writes the page of kind and seed at index and reads it back. */
static void write_check(struct fixture *f, uint64_t index, enum kind kind, uint64_t seed)
{
    make_page(f->page, f->ps, kind, seed);
    assert_int_equal(kmm_zstore_write(f->zs, index, f->page), 0);
    memset(f->back, 0xa5, f->ps);
    assert_int_equal(kmm_zstore_read(f->zs, index, f->back), 0);
    assert_page_eq(f->back, f->page, f->ps);
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_round_trip(void **state)
{
    const struct param *pr = param_of(state);
    struct fixture f;
    setup(&f, pr, 64);
    struct kmm_zstore_stats st = stats_of(f.zs);
    assert_string_equal(st.algo, pr->algo);
    assert_int_equal(st.huge_threshold, f.ps / 16 * 15);

    /* kinds one by one: what each is stored as */
    write_check(&f, 0, K_TEXT, 1);
    st = stats_of(f.zs);
    assert_true(st.compr_data_size > 0 && st.compr_data_size < f.ps / 2);
    assert_int_equal(st.same_pages + st.huge_pages, 0);
    uint64_t text_size = st.compr_data_size;

    write_check(&f, 1, K_ZERO, 0);
    write_check(&f, 2, K_SAME, 2);
    write_check(&f, 3, K_SAME, 3);
    memset(f.page, 0xff, f.ps);   /* all ones: a word of its own */
    assert_int_equal(kmm_zstore_write(f.zs, 4, f.page), 0);
    assert_int_equal(kmm_zstore_read(f.zs, 4, f.back), 0);
    assert_page_eq(f.back, f.page, f.ps);
    st = stats_of(f.zs);
    assert_int_equal(st.same_pages, 4);
    assert_int_equal(st.compr_data_size, text_size);   /* no allocation for them */
    assert_int_equal(pool_objects(f.zs), 1);

    write_check(&f, 5, K_RANDOM, 5);
    st = stats_of(f.zs);
    assert_int_equal(st.huge_pages, 1);
    assert_int_equal(st.compr_data_size, text_size + f.ps);

    write_check(&f, 6, K_NEAR, 6);
    st = stats_of(f.zs);
    assert_int_equal(st.huge_pages, 1);   /* just under the threshold: compressed */
    uint64_t near_size = st.compr_data_size - text_size - f.ps;
    assert_true(near_size > f.ps / 8 * 7 && near_size <= st.huge_threshold);
    assert_int_equal(kmm_zstore_check(f.zs), 0);

    /* many of each, read back in another order after all are written */
    enum kind kinds[] = { K_TEXT, K_SAME, K_ZERO, K_RANDOM, K_NEAR };
    for (uint64_t i = 8; i < 64; i++) {
        make_page(f.page, f.ps, kinds[i % 5], i * 7919);
        assert_int_equal(kmm_zstore_write(f.zs, i, f.page), 0);
    }
    assert_int_equal(kmm_zstore_check(f.zs), 0);
    for (uint64_t i = 63; i >= 8; i--) {
        make_page(f.page, f.ps, kinds[i % 5], i * 7919);
        assert_int_equal(kmm_zstore_read(f.zs, i, f.back), 0);
        assert_page_eq(f.back, f.page, f.ps);
    }
    /* an unaligned source and destination */
    make_page(f.page, f.ps, K_TEXT, 99);
    unsigned char *odd = malloc(f.ps + 1);
    assert_non_null(odd);
    memcpy(odd + 1, f.page, f.ps);
    assert_int_equal(kmm_zstore_write(f.zs, 7, odd + 1), 0);
    memset(odd, 0, f.ps + 1);
    assert_int_equal(kmm_zstore_read(f.zs, 7, odd + 1), 0);
    assert_page_eq(odd + 1, f.page, f.ps);
    free(odd);
    teardown(&f);
}

static void test_unwritten_and_discarded(void **state)
{
    struct fixture f;
    setup(&f, param_of(state), 16);
    for (uint64_t i = 0; i < 16; i++) {
        memset(f.back, 0x5a, f.ps);
        assert_int_equal(kmm_zstore_read(f.zs, i, f.back), 0);
        assert_zero_page(f.back, f.ps);
    }
    enum kind kinds[] = { K_TEXT, K_SAME, K_RANDOM, K_NEAR };
    for (uint64_t i = 0; i < 4; i++)
        write_check(&f, i, kinds[i], i);
    assert_int_equal(pool_objects(f.zs), 3);
    for (uint64_t i = 0; i < 4; i++) {
        assert_int_equal(kmm_zstore_discard(f.zs, i), 0);
        memset(f.back, 0x5a, f.ps);
        assert_int_equal(kmm_zstore_read(f.zs, i, f.back), 0);
        assert_zero_page(f.back, f.ps);
        assert_int_equal(kmm_zstore_check(f.zs), 0);
    }
    assert_int_equal(kmm_zstore_discard(f.zs, 9), 0);   /* never written: nothing to do */
    struct kmm_zstore_stats st = stats_of(f.zs);
    assert_int_equal(st.pages_stored, 0);
    assert_int_equal(st.orig_data_size, 0);
    assert_int_equal(st.compr_data_size, 0);
    assert_int_equal(st.same_pages + st.huge_pages, 0);
    assert_int_equal(pool_objects(f.zs), 0);
    teardown(&f);
}

static void test_overwrite(void **state)
{
    struct fixture f;
    setup(&f, param_of(state), 4);
    /* every kind over every kind, the index's pool object replaced or freed */
    enum kind kinds[] = { K_TEXT, K_SAME, K_ZERO, K_RANDOM, K_NEAR };
    uint64_t seed = 100;
    for (unsigned a = 0; a < 5; a++) {
        for (unsigned b = 0; b < 5; b++) {
            write_check(&f, 2, kinds[a], seed++);
            write_check(&f, 2, kinds[b], seed++);
            bool object = kinds[b] != K_SAME && kinds[b] != K_ZERO;
            assert_int_equal(pool_objects(f.zs), object);
            struct kmm_zstore_stats st = stats_of(f.zs);
            assert_int_equal(st.pages_stored, 1);
            assert_int_equal(st.same_pages, !object);
            assert_int_equal(st.huge_pages, kinds[b] == K_RANDOM);
            assert_int_equal(kmm_zstore_check(f.zs), 0);
        }
    }
    teardown(&f);
}

/* Exact boundary: compressed size C is stored compressed at threshold C
 * and whole at C - 1; 0 stores every page whole; above a page is refused. */
static void test_huge_threshold(void **state)
{
    struct fixture f;
    setup(&f, param_of(state), 4);
    write_check(&f, 0, K_NEAR, 1);
    uint64_t c = stats_of(f.zs).compr_data_size;
    assert_true(c < f.ps);

    assert_int_equal(kmm_zstore_set_huge_threshold(f.zs, c), 0);
    write_check(&f, 1, K_NEAR, 1);
    struct kmm_zstore_stats st = stats_of(f.zs);
    assert_int_equal(st.huge_pages, 0);
    assert_int_equal(st.compr_data_size, 2 * c);
    assert_int_equal(st.huge_threshold, c);

    assert_int_equal(kmm_zstore_set_huge_threshold(f.zs, c - 1), 0);
    write_check(&f, 2, K_NEAR, 1);
    st = stats_of(f.zs);
    assert_int_equal(st.huge_pages, 1);
    assert_int_equal(st.compr_data_size, 2 * c + f.ps);

    assert_int_equal(kmm_zstore_set_huge_threshold(f.zs, 0), 0);
    write_check(&f, 3, K_TEXT, 3);
    assert_int_equal(stats_of(f.zs).huge_pages, 2);
    write_check(&f, 3, K_SAME, 3);   /* same-filled pages stay words */
    assert_int_equal(stats_of(f.zs).huge_pages, 1);

    struct kmm_test_capture cap;
    kmm_test_capture_begin(&cap);
    int rc = kmm_zstore_set_huge_threshold(f.zs, f.ps + 1);
    char *out = kmm_test_capture_end(&cap);
    assert_int_equal(rc, -KMM_EINVAL);
    assert_non_null(strstr(out, "kmm_zstore_set_huge_threshold"));
    free(out);
    assert_int_equal(stats_of(f.zs).huge_threshold, 0);
    assert_int_equal(kmm_zstore_set_huge_threshold(f.zs, f.ps), 0);   /* a page: allowed */
    teardown(&f);
}

static void test_limit(void **state)
{
    struct fixture f;
    setup(&f, param_of(state), 8);
    write_check(&f, 0, K_TEXT, 1);
    struct kmm_zstore_stats before = stats_of(f.zs);
    assert_true(before.mem_used_total > 0);

    /* room for nothing more: a random page (a whole page) is refused */
    kmm_zstore_set_limit(f.zs, before.mem_used_total);
    assert_int_equal(stats_of(f.zs).mem_limit, before.mem_used_total);
    make_page(f.page, f.ps, K_RANDOM, 2);
    errno = 0;
    assert_int_equal(kmm_zstore_write(f.zs, 0, f.page), -KMM_ENOSPC);
    assert_int_equal(errno, ENOSPC);
    assert_int_equal(kmm_zstore_write(f.zs, 1, f.page), -KMM_ENOSPC);
    make_page(f.page, f.ps, K_TEXT, 1);
    assert_int_equal(kmm_zstore_read(f.zs, 0, f.back), 0);   /* the old page stays */
    assert_page_eq(f.back, f.page, f.ps);
    assert_int_equal(kmm_zstore_read(f.zs, 1, f.back), 0);
    assert_zero_page(f.back, f.ps);
    struct kmm_zstore_stats st = stats_of(f.zs);
    assert_int_equal(st.limit_refused, 2);
    assert_int_equal(st.write_failed, 2);
    assert_int_equal(st.writes, before.writes + 2);
    assert_int_equal(st.pages_stored, 1);
    assert_int_equal(st.compr_data_size, before.compr_data_size);
    assert_int_equal(st.mem_used_total, before.mem_used_total);
    assert_int_equal(kmm_zstore_check(f.zs), 0);

    /* same-filled pages take no memory: stored past the limit */
    write_check(&f, 0, K_SAME, 3);
    write_check(&f, 1, K_ZERO, 0);
    st = stats_of(f.zs);
    assert_int_equal(st.limit_refused, 2);
    assert_int_equal(st.same_pages, 2);

    /* a limit far below what is held: stored pages stay, readable */
    kmm_zstore_set_limit(f.zs, 1);
    make_page(f.page, f.ps, K_SAME, 3);
    assert_int_equal(kmm_zstore_read(f.zs, 0, f.back), 0);
    assert_page_eq(f.back, f.page, f.ps);

    /* no limit: the refused page goes in */
    kmm_zstore_set_limit(f.zs, 0);
    write_check(&f, 0, K_RANDOM, 2);
    assert_int_equal(stats_of(f.zs).huge_pages, 1);
    teardown(&f);
}

static void test_bad_arguments(void **state)
{
    const struct param *pr = param_of(state);
    struct kmm *mm = kmm_test_create(pr->page_size, MEM_SIZE);
    struct kmm_test_capture cap;

    kmm_test_capture_begin(&cap);
    errno = 0;
    struct kmm_zstore *bad = kmm_zstore_create(mm, "gzip", 16);
    int err = errno;
    char *out = kmm_test_capture_end(&cap);
    assert_null(bad);
    assert_int_equal(err, EINVAL);
    assert_non_null(strstr(out, "kmm_zstore_create: unknown algorithm"));
    free(out);

    kmm_test_capture_begin(&cap);
    errno = 0;
    bad = kmm_zstore_create(mm, pr->algo, 0);
    err = errno;
    out = kmm_test_capture_end(&cap);
    assert_null(bad);
    assert_int_equal(err, EINVAL);
    assert_non_null(strstr(out, "kmm_zstore_create"));
    free(out);
    assert_int_equal(kmm_check(mm), 0);

    struct kmm_zstore *zs = kmm_zstore_create(mm, pr->algo, 8);
    assert_non_null(zs);
    unsigned char *page = malloc(pr->page_size), *back = malloc(pr->page_size);
    assert_non_null(page);
    assert_non_null(back);
    make_page(page, pr->page_size, K_TEXT, 1);
    assert_int_equal(kmm_zstore_write(zs, 7, page), 0);
    struct kmm_zstore_stats before = stats_of(zs);

    uint64_t beyond[] = { 8, 9, UINT64_MAX };
    for (unsigned i = 0; i < 3; i++) {
        kmm_test_capture_begin(&cap);
        errno = 0;
        assert_int_equal(kmm_zstore_write(zs, beyond[i], page), -KMM_EINVAL);
        assert_int_equal(errno, EINVAL);
        assert_int_equal(kmm_zstore_read(zs, beyond[i], back), -KMM_EINVAL);
        assert_int_equal(kmm_zstore_discard(zs, beyond[i]), -KMM_EINVAL);
        out = kmm_test_capture_end(&cap);
        assert_non_null(strstr(out, "kmm_zstore_write: index beyond the store"));
        assert_non_null(strstr(out, "kmm_zstore_read: index beyond the store"));
        assert_non_null(strstr(out, "kmm_zstore_discard: index beyond the store"));
        free(out);
    }
    struct kmm_zstore_stats after = stats_of(zs);
    assert_memory_equal(&before, &after, sizeof(before));
    assert_int_equal(kmm_zstore_read(zs, 7, back), 0);
    assert_page_eq(back, page, pr->page_size);
    assert_int_equal(kmm_zstore_check(zs), 0);
    kmm_zstore_destroy(zs);
    assert_int_equal(kmm_check(mm), 0);
    kmm_destroy(mm);
    free(page);
    free(back);
}

/* Every field after: text at 0, zeros at 1, a same page at 2, random at 3,
 * text over the zeros at 1, a discard of 0, reads of 0..3, a refused write. */
static void test_stats_exact(void **state)
{
    const struct param *pr = param_of(state);
    struct fixture f;
    setup(&f, pr, 10);
    struct kmm_zstore_stats st = stats_of(f.zs);
    assert_int_equal(st.orig_data_size, 0);
    assert_int_equal(st.compr_data_size, 0);
    assert_int_equal(st.mem_limit, 0);
    assert_int_equal(st.pages_stored, 0);
    assert_int_equal(st.nr_pages, 10);
    assert_int_equal(st.page_size, f.ps);
    assert_int_equal(st.writes + st.reads + st.write_failed + st.limit_refused, 0);

    write_check(&f, 0, K_TEXT, 1);
    uint64_t text0 = stats_of(f.zs).compr_data_size;
    write_check(&f, 1, K_ZERO, 0);
    write_check(&f, 2, K_SAME, 2);
    write_check(&f, 3, K_RANDOM, 3);
    write_check(&f, 1, K_TEXT, 4);
    uint64_t text1 = stats_of(f.zs).compr_data_size - text0 - f.ps;
    assert_int_equal(kmm_zstore_discard(f.zs, 0), 0);
    for (uint64_t i = 0; i < 4; i++)
        assert_int_equal(kmm_zstore_read(f.zs, i, f.back), 0);
    st = stats_of(f.zs);
    uint64_t used = st.mem_used_total;
    kmm_zstore_set_limit(f.zs, used);
    make_page(f.page, f.ps, K_RANDOM, 5);
    assert_int_equal(kmm_zstore_write(f.zs, 9, f.page), -KMM_ENOSPC);

    st = stats_of(f.zs);
    struct kmm_zs_stats ps;
    kmm_zs_stats(kmm_zstore_pool(f.zs), &ps);
    assert_int_equal(st.pages_stored, 3);
    assert_int_equal(st.orig_data_size, 3 * f.ps);
    assert_int_equal(st.compr_data_size, text1 + f.ps);
    assert_int_equal(st.mem_used_total, (uint64_t)ps.pages_used * f.ps + ps.meta_bytes);
    assert_int_equal(st.mem_used_total, used);
    assert_int_equal(st.mem_limit, used);
    assert_true(st.mem_used_max >= st.mem_used_total);
    assert_int_equal(st.same_pages, 1);
    assert_int_equal(st.pages_compacted, ps.pages_compacted);
    assert_int_equal(st.huge_pages, 1);
    assert_int_equal(st.nr_pages, 10);
    assert_int_equal(st.page_size, f.ps);
    assert_int_equal(st.huge_threshold, f.ps / 16 * 15);
    assert_int_equal(st.writes, 6);
    assert_int_equal(st.reads, 5 + 4);   /* write_check reads each back */
    assert_int_equal(st.write_failed, 1);
    assert_int_equal(st.limit_refused, 1);
    assert_string_equal(st.algo, pr->algo);
    assert_int_equal(ps.objects, 2);

    /* mem_used_max keeps the peak after the pool shrinks */
    kmm_zstore_set_limit(f.zs, 0);
    for (uint64_t i = 0; i < 10; i++)
        write_check(&f, i, K_RANDOM, 10 + i);
    uint64_t peak = stats_of(f.zs).mem_used_total;
    for (uint64_t i = 0; i < 10; i++)
        assert_int_equal(kmm_zstore_discard(f.zs, i), 0);
    kmm_zstore_compact(f.zs);
    st = stats_of(f.zs);
    assert_true(st.mem_used_total < peak);
    assert_true(st.mem_used_max >= peak);
    assert_int_equal(st.pages_stored, 0);
    teardown(&f);
}

/* Compaction through the store keeps every page. */
static void test_compact(void **state)
{
    struct fixture f;
    setup(&f, param_of(state), 256);
    for (uint64_t i = 0; i < 256; i++) {
        make_page(f.page, f.ps, i % 3 ? K_TEXT : K_NEAR, i);
        assert_int_equal(kmm_zstore_write(f.zs, i, f.page), 0);
    }
    for (uint64_t i = 0; i < 256; i += 2)
        assert_int_equal(kmm_zstore_discard(f.zs, i), 0);
    size_t freed = kmm_zstore_compact(f.zs);
    struct kmm_zstore_stats st = stats_of(f.zs);
    assert_int_equal(st.pages_compacted, freed);
    for (uint64_t i = 1; i < 256; i += 2) {
        make_page(f.page, f.ps, i % 3 ? K_TEXT : K_NEAR, i);
        assert_int_equal(kmm_zstore_read(f.zs, i, f.back), 0);
        assert_page_eq(f.back, f.page, f.ps);
    }
    teardown(&f);
}

/* kmm_zstore_create under a failure at its nth allocation, n = 1, 2, ...
 * until one succeeds with nothing injected: each failure is NULL + ENOMEM,
 * and leaves the memory system checked and its free pages as they were. */
static void test_fault_create(void **state)
{
    const struct param *pr = param_of(state);
    struct kmm *mm = kmm_test_create(pr->page_size, MEM_SIZE);
    struct kmm_page_stats base;
    kmm_drain(mm);
    kmm_page_stats(mm, &base);
    for (unsigned long n = 1;; n++) {
        assert_true(n < 1000);
        kmm_fault_inject(mm, KMM_FAULT_PAGES | KMM_FAULT_META, n, 1);
        errno = 0;
        struct kmm_zstore *zs = kmm_zstore_create(mm, pr->algo, 1024);
        int err = errno;
        unsigned long injected = kmm_fault_injected(mm);
        kmm_fault_inject(mm, 0, 0, 0);
        if (!zs) {
            assert_true(injected > 0);
            assert_int_equal(err, ENOMEM);
            assert_int_equal(kmm_check(mm), 0);
            struct kmm_page_stats now;
            kmm_drain(mm);
            kmm_page_stats(mm, &now);
            assert_int_equal(now.free_pages, base.free_pages);
            continue;
        }
        assert_int_equal(kmm_zstore_check(zs), 0);
        kmm_zstore_destroy(zs);
        if (!injected)
            break;
    }
    assert_int_equal(kmm_check(mm), 0);
    kmm_destroy(mm);
}

/* A write under a failure at its nth allocation, on a fresh store holding
 * one page at the index (so the write would replace it): each failure is
 * -KMM_ENOMEM, the old page stays, the store checks out; until a write
 * succeeds with nothing injected. For a compressed and a huge page. */
static void test_fault_write(void **state)
{
    const struct param *pr = param_of(state);
    struct fixture f;
    setup(&f, pr, 4);
    kmm_zstore_destroy(f.zs);
    enum kind kinds[] = { K_TEXT, K_RANDOM };
    unsigned long failures = 0;
    for (unsigned k = 0; k < 2; k++) {
        for (unsigned long n = 1;; n++) {
            assert_true(n < 1000);
            f.zs = kmm_zstore_create(f.mm, pr->algo, 4);
            assert_non_null(f.zs);
            write_check(&f, 1, K_TEXT, 1000);
            make_page(f.page, f.ps, kinds[k], n);
            kmm_fault_inject(f.mm, KMM_FAULT_PAGES | KMM_FAULT_META, n, 1);
            int rc = kmm_zstore_write(f.zs, 1, f.page);
            unsigned long injected = kmm_fault_injected(f.mm);
            kmm_fault_inject(f.mm, 0, 0, 0);
            assert_int_equal(kmm_zstore_check(f.zs), 0);
            struct kmm_zstore_stats st = stats_of(f.zs);
            if (rc != 0) {
                assert_int_equal(rc, -KMM_ENOMEM);
                assert_true(injected > 0);
                failures++;
                assert_int_equal(st.write_failed, 1);
                make_page(f.page, f.ps, K_TEXT, 1000);
            }
            assert_int_equal(st.pages_stored, 1);
            assert_int_equal(kmm_zstore_read(f.zs, 1, f.back), 0);
            assert_page_eq(f.back, f.page, f.ps);
            assert_int_equal(pool_objects(f.zs), 1);
            kmm_zstore_destroy(f.zs);
            assert_int_equal(kmm_check(f.mm), 0);
            if (rc == 0 && !injected)
                break;
        }
    }
    assert_true(failures > 0);
    f.zs = kmm_zstore_create(f.mm, pr->algo, 4);
    assert_non_null(f.zs);
    teardown(&f);
}

/* ---- corruption ----------------------------------------------------------------- */

struct corrupt_arg {
    const char *algo;
};

/* The first occurrence of needle (n bytes) in the memory system's physical
 * memory, through the direct map; NULL if none. Reads free pages, which
 * ASan builds poison. */
static KMM_TEST_NO_ASAN unsigned char *find_in_memory(struct kmm *mm, const void *needle, size_t n)
{
    struct kmm_page_stats ps;
    kmm_page_stats(mm, &ps);
    for (size_t pfn = 0; pfn < ps.total_pages; pfn++) {
        unsigned char *p = kmm_phys_to_virt(mm, (kmm_phys_t)pfn * ps.page_size);
        if (!p)
            continue;
        for (size_t i = 0; i + n <= ps.page_size; i++) {
            size_t j = 0;
            while (j < n && p[i + j] == ((const unsigned char *)needle)[j])
                j++;
            if (j == n)
                return p + i;
        }
    }
    return NULL;
}

/* A compressed page whose stream was overwritten in the pool's memory: its
 * read aborts naming the index. The stream is found by its first bytes: LZ4
 * begins with the page's first literals (after a token and its length
 * bytes), zstd with its frame's magic number. */
static void corrupt_then_read(void *arg)
{
    const struct corrupt_arg *a = arg;
    struct kmm *mm = kmm_test_create(4096, (uint64_t)8 << 20);
    struct kmm_zstore *zs = kmm_zstore_create(mm, a->algo, 8);
    unsigned char page[4096];
    make_page(page, sizeof(page), K_TEXT, 77);
    if (!zs || kmm_zstore_write(zs, 3, page) != 0)
        _exit(3);
    static const unsigned char zstd_magic[4] = { 0x28, 0xb5, 0x2f, 0xfd };
    bool lz4 = !strcmp(a->algo, "lz4");
    unsigned char *at = lz4 ? find_in_memory(mm, page, 12) : find_in_memory(mm, zstd_magic, 4);
    if (!at)
        _exit(4);
    if (lz4)
        memset(at - 2, 0xff, 64);   /* the token and length bytes: literals far beyond the stream */
    else
        memset(at + 4, 0xff, 16);   /* the frame header */
    kmm_zstore_read(zs, 3, page);
}

static void test_corrupt_read_aborts(void **state)
{
    struct corrupt_arg a = { param_of(state)->algo };
    assert_int_equal(kmm_test_expect_abort(corrupt_then_read, &a, "kmm_zstore_read: index 3"), 0);
}

/* An argument runs only the tests whose names match it (cmocka's pattern). */
int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        PER_ALGO(test_round_trip),
        PER_ALGO_SMALL(test_unwritten_and_discarded),
        PER_ALGO_SMALL(test_overwrite),
        PER_ALGO_SMALL(test_huge_threshold),
        PER_ALGO_SMALL(test_limit),
        PER_ALGO_SMALL(test_bad_arguments),
        PER_ALGO_SMALL(test_stats_exact),
        PER_ALGO_SMALL(test_compact),
        PER_ALGO_SMALL(test_fault_create),
        PER_ALGO_SMALL(test_fault_write),
        { "test_corrupt_read_aborts_lz4", test_corrupt_read_aborts, NULL, NULL, &params[0] },
        { "test_corrupt_read_aborts_zstd", test_corrupt_read_aborts, NULL, NULL, &params[1] },
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
