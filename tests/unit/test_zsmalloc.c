/* Unit tests of zsmalloc (include/kmm/zsmalloc.h) through the public API:
 * handles to objects of 1 byte to a page, packed into zspages.
 *
 * The core is the class walk (test_every_class_*): for every size class of
 * a pool - the default layout and a few kmm_zs_config layouts (class_step 8,
 * 16, 64; max_pages 1, 4, 16, 64), at page sizes of 4, 16 and 64 KiB - it
 * allocates objects of the class's size and of the smallest size the class
 * takes, enough to fill two zspages and start a third (one and a second
 * under a sanitizer), so objects sit in
 * every slot of a zspage and, where the class size does not divide the page,
 * many span two pages. Each object is written through kmm_zs_write and read
 * back through kmm_zs_read and a KMM_ZS_RO mapping byte for byte; then
 * overwritten through a KMM_ZS_WO mapping (which does not copy a spanning
 * object in: the new bytes must be visible after the unmap) and read back
 * both ways; then changed in place through a KMM_ZS_RW mapping; then a
 * window crossing the middle of the object written and read at an offset.
 * The class and pool stats must agree with what was done, and kmm_check
 * pass after each phase; when the class is freed its pages go back.
 *
 * The other tests: sizes 1 and the page size work, 0 and page size + 1 are
 * refused (handle 0, errno EINVAL); KMM_ZERO; usable sizes; the class
 * table's shape; config validation; compaction after freeing a random half
 * (pages freed, every remaining object intact, a mapped object left where it
 * is); the page allocator's reclaim compacting a pool when memory runs
 * out; kmm_zs_for_each; kmm_zs_destroy with live objects gives every page
 * back; a nest of KMM_ZS_MAP_NEST mappings in one thread; an area mask;
 * fork() while another thread works on the pool.
 *
 * Misuse (bad handles, unmaps, frees of pool pages) is tested in
 * test_zsmalloc_abuse.c. Every test ends with kmm_check(mm) == 0.
 * An argument runs only the tests whose names match it (cmocka's pattern). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kmm_test.h"

#define GiB ((uint64_t)1 << 30)

/* ---- helpers ------------------------------------------------------------------ */

static struct kmm *create_mm(size_t ps)
{
    return kmm_test_create(ps, 1 * GiB);   /* sparse: costs what is touched */
}

static void finish(struct kmm *mm)
{
    assert_int_equal(kmm_check(mm), 0);
    kmm_destroy(mm);
}

static struct kmm_zs_stats pool_stats(struct kmm_zspool *pool)
{
    struct kmm_zs_stats st;
    memset(&st, 0xa5, sizeof st);   /* a field left unfilled shows */
    kmm_zs_stats(pool, &st);
    return st;
}

static size_t free_pages(struct kmm *mm)
{
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    return st.free_pages;
}

/* The pool's classes, smallest first (free with free()). */
static struct kmm_zs_class_stats *classes_of(struct kmm_zspool *pool, size_t *n)
{
    *n = kmm_zs_class_stats(pool, NULL, 0);
    assert_true(*n > 0);
    struct kmm_zs_class_stats *cl = calloc(*n, sizeof *cl);
    assert_non_null(cl);
    assert_int_equal(kmm_zs_class_stats(pool, cl, *n), *n);
    return cl;
}

static struct kmm_zs_class_stats class_at(struct kmm_zspool *pool, size_t idx)
{
    size_t n;
    struct kmm_zs_class_stats *cl = classes_of(pool, &n);
    assert_true(idx < n);
    struct kmm_zs_class_stats c = cl[idx];
    free(cl);
    return c;
}

/* The index of the class that takes size bytes: the first at least as large. */
static size_t class_index_for(const struct kmm_zs_class_stats *cl, size_t n, size_t size)
{
    for (size_t i = 0; i < n; i++)
        if (cl[i].size >= size)
            return i;
    fail_msg("no class takes %zu bytes", size);
    return 0;
}

/* Writes pattern key over [from, to) of buf / checks it there. The checks
 * call cmocka only on a mismatch: an assertion per byte would be slow. */
static void pat_write(unsigned char *buf, uint64_t key, size_t from, size_t to)
{
    kmm_test_span_io(buf, key, from, to, true);
}

static void pat_check(const unsigned char *buf, uint64_t key, size_t from, size_t to, const char *what, uint64_t h)
{
    size_t bad = kmm_test_span_io((unsigned char *)buf, key, from, to, false);
    if (bad != SIZE_MAX)
        fail_msg("%s: handle %#llx: byte %zu of [%zu, %zu) is %#x, expected %#x", what, (unsigned long long)h, bad,
                 from, to, buf[bad], kmm_test_pat(key, bad));
}

/* Object h holds pattern key in [0, size): read through kmm_zs_read and
 * through a KMM_ZS_RO mapping. scratch holds a page. */
static void check_object(struct kmm_zspool *pool, uint64_t h, uint64_t key, size_t size, unsigned char *scratch)
{
    memset(scratch, 0, size);
    assert_int_equal(kmm_zs_read(pool, h, 0, scratch, size), 0);
    pat_check(scratch, key, 0, size, "kmm_zs_read", h);
    const unsigned char *p = kmm_zs_map(pool, h, KMM_ZS_RO);
    assert_non_null(p);
    pat_check(p, key, 0, size, "kmm_zs_map(RO)", h);
    kmm_zs_unmap(pool, h);
}

static void write_object(struct kmm_zspool *pool, uint64_t h, uint64_t key, size_t size, unsigned char *scratch)
{
    pat_write(scratch, key, 0, size);
    assert_int_equal(kmm_zs_write(pool, h, 0, scratch, size), 0);
}

/* Writes every byte through a KMM_ZS_WO mapping (whose buffer may hold
 * anything before: a spanning object is not copied in). */
static void write_object_wo(struct kmm_zspool *pool, uint64_t h, uint64_t key, size_t size)
{
    unsigned char *p = kmm_zs_map(pool, h, KMM_ZS_WO);
    assert_non_null(p);
    pat_write(p, key, 0, size);
    kmm_zs_unmap(pool, h);
}

/* Sums over the classes; checks each class's own numbers hang together. */
struct class_sums {
    size_t objects, obj_bytes, pages, zspages;
};

static struct class_sums class_sums(struct kmm_zspool *pool)
{
    size_t n;
    struct kmm_zs_class_stats *cl = classes_of(pool, &n);
    struct class_sums s = { 0, 0, 0, 0 };
    for (size_t i = 0; i < n; i++) {
        const struct kmm_zs_class_stats *c = &cl[i];
        assert_true(c->pages <= c->zspages * c->pages_per_zspage);
        assert_true(c->pages >= c->zspages);   /* a zspage holds at least the page of its first object */
        assert_int_equal(c->objects + c->free_objects, c->zspages * c->objs_per_zspage);
        s.objects += c->objects;
        s.obj_bytes += c->objects * c->size;
        s.pages += c->pages;
        s.zspages += c->zspages;
    }
    free(cl);
    return s;
}

/* The pool totals agree with the classes' and with what the test holds. */
static void check_totals(struct kmm_zspool *pool, size_t objects, size_t obj_bytes)
{
    struct kmm_zs_stats st = pool_stats(pool);
    struct class_sums s = class_sums(pool);
    assert_int_equal(st.objects, objects);
    assert_int_equal(st.obj_bytes, obj_bytes);
    assert_int_equal(s.objects, objects);
    assert_int_equal(s.obj_bytes, obj_bytes);
    assert_int_equal(st.pages_used, s.pages);
    assert_int_equal(st.zspages, s.zspages);
    assert_true(st.pages_max >= st.pages_used);
    assert_int_equal(st.nr_classes, kmm_zs_class_stats(pool, NULL, 0));
}

/* ---- the class walk ------------------------------------------------------------ */

struct layout {
    const char *name;
    bool has_cfg;
    struct kmm_zs_config cfg;
};

static const struct layout layouts[] = {
    { "default", false, { 0, 0 } },
    { "step8_pages4", true, { 8, 4 } },
    { "step16_pages1", true, { 16, 1 } },
    { "step64_pages16", true, { 64, 16 } },
    { "step64_pages64", true, { 64, 64 } },
    { "step16_pages64", true, { 16, 64 } },
    { "step8_pages16", true, { 8, 16 } },
};
#define NR_LAYOUTS (sizeof layouts / sizeof layouts[0])

static struct kmm_zspool *create_pool(struct kmm *mm, const struct layout *l)
{
    struct kmm_zspool *pool = l->has_cfg ? kmm_zs_create_config(mm, l->name, &l->cfg) : kmm_zs_create(mm, l->name);
    assert_non_null(pool);
    assert_string_equal(kmm_zs_name(pool), l->name);
    return pool;
}

/* Spanning objects of a zspage of ppz pages of ps bytes cut into objects of size. */
static size_t spanning_slots(size_t size, size_t opz, size_t ps)
{
    size_t n = 0;
    for (size_t k = 0; k < opz; k++)
        if ((k * size) / ps != (k * size + size - 1) / ps)
            n++;
    return n;
}

/* The pattern name of object i of class ci in round r. */
static uint64_t key_of(size_t ci, size_t i, unsigned r)
{
    return ((uint64_t)r << 48) ^ ((uint64_t)ci << 24) ^ i ^ 0x5a5a000000000000ull;
}

/* Zspages a class walk fills before it begins one more: two; one under a
 * sanitizer, where the byte-by-byte checks of the 64 KiB walks would take
 * minutes (every slot of a zspage is still reached). */
static const size_t full_zspages = KMM_TEST_SANITIZER ? 1 : 2;

/* Walks every class of a pool of layout l at page size ps (see the file comment). */
static void walk_classes(size_t ps, const struct layout *l)
{
    struct kmm *mm = create_mm(ps);
    size_t free0 = free_pages(mm);
    struct kmm_zspool *pool = create_pool(mm, l);
    size_t nclasses;
    struct kmm_zs_class_stats *cl = classes_of(pool, &nclasses);
    unsigned step = l->has_cfg && l->cfg.class_step ? l->cfg.class_step : 16;
    unsigned max_pages = l->has_cfg && l->cfg.max_pages ? l->cfg.max_pages : 16;
    assert_int_equal(cl[nclasses - 1].size, ps);
    unsigned char *scratch = malloc(ps);
    assert_non_null(scratch);
    size_t total_spanning = 0;

    for (size_t ci = 0; ci < nclasses; ci++) {
        const struct kmm_zs_class_stats c = cl[ci];
        size_t lo = ci ? cl[ci - 1].size + 1 : 1;   /* the smallest request this class takes */
        assert_true(c.pages_per_zspage >= 1 && c.pages_per_zspage <= max_pages);
        assert_true(c.objs_per_zspage >= 1);
        assert_true(c.objs_per_zspage * c.size <= c.pages_per_zspage * ps);
        assert_true(c.size % step == 0 || c.size == ps);
        assert_int_equal(c.objects, 0);
        assert_int_equal(c.zspages, 0);
        total_spanning += c.size < ps ? spanning_slots(c.size, c.objs_per_zspage, ps) : 0;

        size_t n = full_zspages * c.objs_per_zspage + 1;   /* zspages full and one begun */
        uint64_t *h = calloc(n, sizeof *h);
        size_t *size = calloc(n, sizeof *size);
        assert_non_null(h);
        assert_non_null(size);
        for (size_t i = 0; i < n; i++) {
            /* the class's size, its smallest, and a few bytes below its size */
            size[i] = i % 3 == 0 ? c.size : i % 3 == 1 ? lo : c.size - (i / 3) % (c.size - lo + 1);
            h[i] = kmm_zs_malloc(pool, size[i], 0);
            if (!h[i])
                fail_msg("%s, %zu KiB pages: kmm_zs_malloc(%zu) of class %zu (size %zu) failed", l->name, ps >> 10,
                         size[i], ci, c.size);
            assert_int_equal(kmm_zs_usable_size(pool, h[i]), c.size);
            for (size_t j = 0; j < i && j < 4; j++)
                assert_true(h[j] != h[i]);
            write_object(pool, h[i], key_of(ci, i, 0), size[i], scratch);
        }
        struct kmm_zs_class_stats now = class_at(pool, ci);
        assert_int_equal(now.objects, n);
        assert_int_equal(now.zspages, full_zspages + 1);   /* the fullest zspage is filled first */
        assert_int_equal(now.free_objects, c.objs_per_zspage - 1);
        assert_true(now.pages >= full_zspages * c.pages_per_zspage + 1);
        check_totals(pool, n, n * c.size);
        assert_int_equal(kmm_check(mm), 0);

        for (size_t i = 0; i < n; i++)
            check_object(pool, h[i], key_of(ci, i, 0), size[i], scratch);

        /* every byte again through a write-only mapping */
        for (size_t i = 0; i < n; i++)
            write_object_wo(pool, h[i], key_of(ci, i, 1), size[i]);
        for (size_t i = 0; i < n; i++)
            check_object(pool, h[i], key_of(ci, i, 1), size[i], scratch);
        assert_int_equal(kmm_check(mm), 0);

        /* in place through a read-write mapping: every other word changed */
        for (size_t i = 0; i < n; i++) {
            unsigned char *p = kmm_zs_map(pool, h[i], KMM_ZS_RW);
            assert_non_null(p);
            pat_check(p, key_of(ci, i, 1), 0, size[i], "kmm_zs_map(RW)", h[i]);
            for (size_t b = 0; b < size[i]; b += 16)
                p[b] = (unsigned char)~p[b];
            kmm_zs_unmap(pool, h[i]);
        }
        for (size_t i = 0; i < n; i++) {
            pat_write(scratch, key_of(ci, i, 1), 0, size[i]);
            for (size_t b = 0; b < size[i]; b += 16)
                scratch[b] = (unsigned char)~scratch[b];
            unsigned char *p = kmm_zs_map(pool, h[i], KMM_ZS_RO);
            if (memcmp(p, scratch, size[i]) != 0)
                fail_msg("RW mapping of %#llx did not keep its change", (unsigned long long)h[i]);
            kmm_zs_unmap(pool, h[i]);
        }

        /* a window at an offset: the middle third of the usable size */
        for (size_t i = 0; i < n; i++) {
            size_t from = c.size / 3, len = c.size - 2 * from;
            pat_write(scratch, key_of(ci, i, 2), 0, len);
            assert_int_equal(kmm_zs_write(pool, h[i], from, scratch, len), 0);
            memset(scratch, 0, len);
            assert_int_equal(kmm_zs_read(pool, h[i], from, scratch, len), 0);
            pat_check(scratch, key_of(ci, i, 2), 0, len, "kmm_zs_read at an offset", h[i]);
            if (from >= 1) {   /* the byte before the window is untouched */
                unsigned char before;
                assert_int_equal(kmm_zs_read(pool, h[i], from - 1, &before, 1), 0);
                unsigned char want = kmm_test_pat(key_of(ci, i, 1), from - 1);
                if ((from - 1) % 16 == 0)
                    want = (unsigned char)~want;
                if (from - 1 < size[i])
                    assert_int_equal(before, want);
            }
        }
        assert_int_equal(kmm_check(mm), 0);

        for (size_t i = 0; i < n; i++)
            kmm_zs_free(pool, h[i]);
        now = class_at(pool, ci);
        assert_int_equal(now.objects, 0);
        assert_int_equal(now.zspages, 0);
        assert_int_equal(now.pages, 0);
        check_totals(pool, 0, 0);
        free(h);
        free(size);
    }
    struct kmm_zs_stats st = pool_stats(pool);
    assert_int_equal(st.pages_used, 0);
    assert_int_equal(st.zspages, 0);
    assert_true(st.pages_max > 0);
    assert_int_equal(st.page_size, ps);
    if (max_pages > 1)
        assert_true(total_spanning > 0);   /* the walk did reach objects across pages */
    assert_int_equal(kmm_check(mm), 0);
    kmm_zs_destroy(pool);
    kmm_drain(mm);
    assert_int_equal(free_pages(mm), free0);
    free(scratch);
    free(cl);
    finish(mm);
}

/* One walk: a layout at a page size (a test entry's state). */
struct walk {
    size_t ps;
    const struct layout *layout;
};

/* Under a sanitizer the walks of 64 KiB pages with zspages of 16 pages
 * (hundreds of MiB checked byte by byte, many times over) are skipped:
 * they take minutes there, and the same code runs in the 4 and 16 KiB
 * walks; the plain build runs them all. */
static void test_every_class(void **state)
{
    const struct walk *w = *state;
    if (KMM_TEST_SANITIZER && w->ps > 16384 && (!w->layout->has_cfg || w->layout->cfg.max_pages > 1))
        skip();
    walk_classes(w->ps, w->layout);
}

/* ---- sizes, flags, the class table ----------------------------------------------------- */

/* 1 byte and a whole page are objects; 0, a page and a byte, and unknown
 * flags are refused (handle 0, errno EINVAL) and change nothing. */
static void test_size_limits(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    struct kmm_zspool *pool = kmm_zs_create(mm, "limits");
    assert_non_null(pool);
    unsigned char *scratch = malloc(ps);
    assert_non_null(scratch);

    uint64_t one = kmm_zs_malloc(pool, 1, 0);
    assert_true(one != 0);
    assert_true(kmm_zs_usable_size(pool, one) >= 1);
    write_object(pool, one, 1, 1, scratch);
    uint64_t page = kmm_zs_malloc(pool, ps, 0);
    assert_true(page != 0);
    assert_int_equal(kmm_zs_usable_size(pool, page), ps);
    write_object(pool, page, 2, ps, scratch);
    write_object_wo(pool, page, 3, ps);
    check_object(pool, one, 1, 1, scratch);
    check_object(pool, page, 3, ps, scratch);
    struct kmm_zs_stats before = pool_stats(pool);

    const size_t bad_sizes[] = { 0, ps + 1, 2 * ps, SIZE_MAX };
    for (size_t i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++) {
        errno = 0;
        assert_int_equal(kmm_zs_malloc(pool, bad_sizes[i], 0), 0);
        assert_int_equal(errno, EINVAL);
    }
    errno = 0;
    assert_int_equal(kmm_zs_malloc(pool, 64, 1u << 20), 0);   /* no such flag */
    assert_int_equal(errno, EINVAL);
    struct kmm_zs_stats after = pool_stats(pool);
    assert_int_equal(after.objects, before.objects);
    assert_int_equal(after.pages_used, before.pages_used);
    check_totals(pool, 2, kmm_zs_usable_size(pool, one) + ps);

    kmm_zs_free(pool, one);
    kmm_zs_free(pool, page);
    kmm_zs_free(pool, 0);   /* a no-op */
    check_totals(pool, 0, 0);
    assert_int_equal(pool_stats(pool).pages_used, 0);
    kmm_zs_destroy(pool);
    free(scratch);
    finish(mm);
}

/* KMM_ZERO objects read as zeros, also where dirty objects were just freed
 * (so the memory is reused, not fresh), in every class. */
static void test_zero(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    struct kmm_zspool *pool = kmm_zs_create(mm, "zero");
    assert_non_null(pool);
    size_t nclasses;
    struct kmm_zs_class_stats *cl = classes_of(pool, &nclasses);
    unsigned char *scratch = malloc(ps);
    assert_non_null(scratch);
    for (size_t ci = 0; ci < nclasses; ci += 1 + nclasses / 64) {
        size_t n = cl[ci].objs_per_zspage + 1;
        uint64_t *h = calloc(n, sizeof *h);
        assert_non_null(h);
        uint64_t keep = kmm_zs_malloc(pool, cl[ci].size, 0);   /* keeps the zspage: its slots are reused */
        assert_true(keep != 0);
        for (size_t i = 0; i < n; i++) {
            h[i] = kmm_zs_malloc(pool, cl[ci].size, 0);
            assert_true(h[i] != 0);
            memset(scratch, 0xff, cl[ci].size);
            assert_int_equal(kmm_zs_write(pool, h[i], 0, scratch, cl[ci].size), 0);
        }
        for (size_t i = 0; i < n; i++)
            kmm_zs_free(pool, h[i]);
        for (size_t i = 0; i < n; i++) {
            h[i] = kmm_zs_malloc(pool, cl[ci].size - i % 3 * (cl[ci].size > 3), KMM_ZERO);
            assert_true(h[i] != 0);
            memset(scratch, 0x55, ps);
            assert_int_equal(kmm_zs_read(pool, h[i], 0, scratch, cl[ci].size), 0);
            for (size_t b = 0; b < cl[ci].size; b++)
                if (scratch[b])
                    fail_msg("KMM_ZERO object %#llx of class %zu: byte %zu is %#x", (unsigned long long)h[i],
                             cl[ci].size, b, scratch[b]);
            const unsigned char *p = kmm_zs_map(pool, h[i], KMM_ZS_RO);
            for (size_t b = 0; b < cl[ci].size; b++)
                assert_int_equal(p[b], 0);
            kmm_zs_unmap(pool, h[i]);
        }
        for (size_t i = 0; i < n; i++)
            kmm_zs_free(pool, h[i]);
        kmm_zs_free(pool, keep);
        free(h);
    }
    check_totals(pool, 0, 0);
    kmm_zs_destroy(pool);
    free(cl);
    free(scratch);
    finish(mm);
}

/* kmm_zs_usable_size of a request is the size of the first class that
 * takes it, for every request size (every 7th at 64 KiB pages). */
static void test_usable_size(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    struct kmm_zspool *pool = kmm_zs_create(mm, "usable");
    assert_non_null(pool);
    size_t nclasses;
    struct kmm_zs_class_stats *cl = classes_of(pool, &nclasses);
    size_t stride = ps > 16384 ? 7 : 1;
    for (size_t size = 1; size <= ps; size += size + stride > ps && size != ps ? ps - size : stride) {
        uint64_t h = kmm_zs_malloc(pool, size, 0);
        assert_true(h != 0);
        size_t usable = kmm_zs_usable_size(pool, h);
        assert_true(usable >= size);
        assert_int_equal(usable, cl[class_index_for(cl, nclasses, size)].size);
        kmm_zs_free(pool, h);
    }
    check_totals(pool, 0, 0);
    kmm_zs_destroy(pool);
    free(cl);
    finish(mm);
}

/* The class table of every layout: sizes ascending, multiples of the step,
 * the last a page; zspages within max_pages; no two neighbours with the
 * same zspage shape (they would have been merged); an object of one page
 * shares with nothing. */
static void test_class_table(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    for (size_t li = 0; li < NR_LAYOUTS; li++) {
        const struct layout *l = &layouts[li];
        struct kmm_zspool *pool = create_pool(mm, l);
        unsigned step = l->has_cfg && l->cfg.class_step ? l->cfg.class_step : 16;
        unsigned max_pages = l->has_cfg && l->cfg.max_pages ? l->cfg.max_pages : 16;
        size_t n;
        struct kmm_zs_class_stats *cl = classes_of(pool, &n);
        assert_true(n <= ps / step);
        assert_int_equal(pool_stats(pool).nr_classes, n);
        for (size_t i = 0; i < n; i++) {
            assert_true(cl[i].size >= 1 && cl[i].size <= ps);
            assert_true(cl[i].size % step == 0);
            if (i)
                assert_true(cl[i].size > cl[i - 1].size);
            if (i && cl[i].pages_per_zspage == cl[i - 1].pages_per_zspage)
                assert_true(cl[i].objs_per_zspage != cl[i - 1].objs_per_zspage);
            assert_true(cl[i].pages_per_zspage >= 1 && cl[i].pages_per_zspage <= max_pages);
            assert_true(cl[i].objs_per_zspage >= 1);
            assert_true(cl[i].objs_per_zspage * cl[i].size <= cl[i].pages_per_zspage * ps);
            assert_int_equal(cl[i].objects + cl[i].zspages + cl[i].pages + cl[i].free_objects, 0);
        }
        assert_int_equal(cl[n - 1].size, ps);
        assert_int_equal(cl[n - 1].objs_per_zspage, cl[n - 1].pages_per_zspage);
        /* asking for fewer entries fills that many and still counts all */
        struct kmm_zs_class_stats two[3];
        memset(two, 0x77, sizeof two);
        assert_int_equal(kmm_zs_class_stats(pool, two, 2), n);
        assert_int_equal(two[0].size, cl[0].size);
        assert_int_equal(two[2].size, (size_t)0x7777777777777777ull);   /* not written past max */
        free(cl);
        kmm_zs_destroy(pool);
    }
    finish(mm);
}

/* kmm_zs_create_config refuses layouts outside the documented ranges
 * (NULL, errno EINVAL) and takes the ends of them; names are kept up to 31
 * bytes. */
static void test_config_and_name(void **state)
{
    (void)state;
    struct kmm *mm = create_mm(4096);
    const struct kmm_zs_config bad[] = { { 4, 0 }, { 12, 0 }, { 512, 0 }, { 24, 4 }, { 0, 65 }, { 16, 1000 } };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        struct kmm_zspool *pool = kmm_zs_create_config(mm, "bad", &bad[i]);
        if (pool)
            fail_msg("config {%u, %u} accepted", bad[i].class_step, bad[i].max_pages);
        assert_int_equal(errno, EINVAL);
    }
    const struct kmm_zs_config good[] = { { 0, 0 }, { 8, 1 }, { 256, 64 }, { 256, 1 }, { 8, 64 } };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        struct kmm_zspool *pool = kmm_zs_create_config(mm, "good", &good[i]);
        if (!pool)
            fail_msg("config {%u, %u} refused", good[i].class_step, good[i].max_pages);
        uint64_t h = kmm_zs_malloc(pool, 100, 0);
        assert_true(h != 0);
        kmm_zs_free(pool, h);
        kmm_zs_destroy(pool);
    }
    struct kmm_zspool *dflt = kmm_zs_create_config(mm, "dflt", NULL);
    struct kmm_zspool *plain = kmm_zs_create(mm, "plain");
    assert_non_null(dflt);
    assert_non_null(plain);
    assert_int_equal(kmm_zs_class_stats(dflt, NULL, 0), kmm_zs_class_stats(plain, NULL, 0));
    kmm_zs_destroy(dflt);
    kmm_zs_destroy(plain);

    const char *longname = "a-name-of-forty-bytes-is-cut-to-31-bytes";
    struct kmm_zspool *pool = kmm_zs_create(mm, longname);
    assert_non_null(pool);
    assert_int_equal(strlen(kmm_zs_name(pool)), 31);
    assert_memory_equal(kmm_zs_name(pool), longname, 31);
    kmm_zs_destroy(pool);
    finish(mm);
}

/* A new pool holds nothing but its metadata. */
static void test_stats_empty(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    struct kmm_zspool *pool = kmm_zs_create(mm, "empty");
    assert_non_null(pool);
    struct kmm_zs_stats st = pool_stats(pool);
    assert_int_equal(st.objects, 0);
    assert_int_equal(st.obj_bytes, 0);
    assert_int_equal(st.pages_used, 0);
    assert_int_equal(st.pages_compacted, 0);
    assert_int_equal(st.pages_max, 0);
    assert_int_equal(st.zspages, 0);
    assert_true(st.meta_bytes > 0);
    assert_int_equal(st.page_size, ps);
    assert_int_equal(st.nr_classes, kmm_zs_class_stats(pool, NULL, 0));
    assert_int_equal(kmm_zs_compact(pool), 0);
    kmm_zs_destroy(pool);
    finish(mm);
}

/* ---- mapping ------------------------------------------------------------------------------- */

/* One thread holds KMM_ZS_MAP_NEST mappings at once, spanning and not, in
 * every mode, and ends them in any order. */
static void test_map_nest(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    struct kmm_zspool *pool = kmm_zs_create(mm, "nest");
    assert_non_null(pool);
    unsigned char *scratch = malloc(ps);
    assert_non_null(scratch);
    /* a size that does not divide the page: consecutive objects span */
    size_t size = ps / 3 + 40;
    uint64_t h[2 * KMM_ZS_MAP_NEST];
    for (unsigned i = 0; i < 2 * KMM_ZS_MAP_NEST; i++) {
        h[i] = kmm_zs_malloc(pool, size, 0);
        assert_true(h[i] != 0);
        write_object(pool, h[i], 100 + i, size, scratch);
    }
    for (unsigned round = 0; round < 2; round++) {
        unsigned char *p[KMM_ZS_MAP_NEST];
        uint64_t *mh = h + round * KMM_ZS_MAP_NEST;
        for (unsigned i = 0; i < KMM_ZS_MAP_NEST; i++) {
            int mode = i % 3 == 0 ? KMM_ZS_RO : i % 3 == 1 ? KMM_ZS_RW : KMM_ZS_WO;
            p[i] = kmm_zs_map(pool, mh[i], mode);
            assert_non_null(p[i]);
            for (unsigned j = 0; j < i; j++)
                assert_true(p[j] + size <= p[i] || p[i] + size <= p[j]);   /* no two share bytes */
            if (mode == KMM_ZS_WO)
                pat_write(p[i], 200 + round * KMM_ZS_MAP_NEST + i, 0, size);
            else
                pat_check(p[i], 100 + round * KMM_ZS_MAP_NEST + i, 0, size, "nested map", mh[i]);
        }
        /* all still hold their bytes while the others are mapped */
        for (unsigned i = 0; i < KMM_ZS_MAP_NEST; i++)
            if (i % 3 != 2)
                pat_check(p[i], 100 + round * KMM_ZS_MAP_NEST + i, 0, size, "nested map, later", mh[i]);
        for (unsigned k = 0; k < KMM_ZS_MAP_NEST; k++) {   /* middle first, then the ends */
            unsigned i = (k + KMM_ZS_MAP_NEST / 2) % KMM_ZS_MAP_NEST;
            kmm_zs_unmap(pool, mh[i]);
        }
        for (unsigned i = 0; i < KMM_ZS_MAP_NEST; i++)
            check_object(pool, mh[i], (i % 3 == 2 ? 200 : 100) + round * KMM_ZS_MAP_NEST + i, size, scratch);
    }
    assert_int_equal(kmm_check(mm), 0);
    for (unsigned i = 0; i < 2 * KMM_ZS_MAP_NEST; i++)
        kmm_zs_free(pool, h[i]);
    kmm_zs_destroy(pool);
    free(scratch);
    finish(mm);
}

/* An area mask in the flags puts the object's page in that area: a small
 * object never spans, so its mapping is the page itself (direct map). */
static void test_area_mask(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    struct kmm_zspool *pool = kmm_zs_create(mm, "areas");
    assert_non_null(pool);
    const unsigned masks[] = { KMM_AREA_LOWEST, KMM_AREA_LOW, KMM_AREA_NORMAL };
    const uint64_t lo[] = { 0, 16ull << 20, 4ull << 30 }, hi[] = { 16ull << 20, 4ull << 30, UINT64_MAX };
    for (unsigned a = 0; a < 3; a++) {
        if (lo[a] >= 1 * GiB)
            continue;   /* this memory system ends at 1 GiB: no NORMAL area */
        uint64_t h = kmm_zs_malloc(pool, 64, masks[a]);
        assert_true(h != 0);
        void *p = kmm_zs_map(pool, h, KMM_ZS_RO);
        kmm_phys_t phys = kmm_virt_to_phys(mm, p);
        kmm_zs_unmap(pool, h);
        assert_true(phys != KMM_PHYS_NONE);
        assert_true(phys >= lo[a] && phys < hi[a]);
        kmm_zs_free(pool, h);
    }
    kmm_zs_destroy(pool);
    finish(mm);
}

/* ---- compaction ------------------------------------------------------------------------------ */

/* Object sizes like those of compressed pages: most between a quarter and
 * three quarters of a page, some tiny, some incompressible (a page). */
static size_t compressed_size(uint64_t *rng, size_t ps)
{
    uint64_t r = kmm_test_below(rng, 100);
    if (r < 10)
        return 1 + kmm_test_below(rng, 64);
    if (r < 90)
        return ps / 4 + kmm_test_below(rng, ps / 2);
    if (r < 95)
        return ps - kmm_test_below(rng, ps / 8);
    return ps;
}

/* Freeing a random half and compacting frees pages; every remaining object
 * keeps its bytes and its handle, a mapped one too (its mapping stays
 * valid); the stats count what was freed. */
static void test_compact_half(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    size_t free0 = free_pages(mm);
    struct kmm_zspool *pool = kmm_zs_create(mm, "compact");
    assert_non_null(pool);
    uint64_t rng = 0x2545f4914f6cdd1dull ^ ps;
    enum { N = 3000 };
    uint64_t *h = calloc(N, sizeof *h);
    size_t *size = calloc(N, sizeof *size);
    unsigned char *scratch = malloc(ps);
    assert_non_null(h);
    assert_non_null(size);
    assert_non_null(scratch);
    size_t obj_bytes = 0, live = N;
    for (size_t i = 0; i < N; i++) {
        size[i] = compressed_size(&rng, ps);
        h[i] = kmm_zs_malloc(pool, size[i], 0);
        assert_true(h[i] != 0);
        write_object(pool, h[i], 7000 + i, size[i], scratch);
        obj_bytes += kmm_zs_usable_size(pool, h[i]);
    }
    check_totals(pool, N, obj_bytes);
    for (size_t i = 0; i < N; i++) {
        if (kmm_test_below(&rng, 2)) {
            obj_bytes -= kmm_zs_usable_size(pool, h[i]);
            kmm_zs_free(pool, h[i]);
            h[i] = 0;
            live--;
        }
    }
    check_totals(pool, live, obj_bytes);
    size_t held = 0;
    while (!h[held])
        held++;
    const unsigned char *mapped = kmm_zs_map(pool, h[held], KMM_ZS_RO);
    struct kmm_zs_stats before = pool_stats(pool);
    size_t freed = kmm_zs_compact(pool);
    struct kmm_zs_stats after = pool_stats(pool);
    assert_true(freed > 0);
    assert_int_equal(after.pages_used, before.pages_used - freed);
    assert_int_equal(after.pages_compacted, before.pages_compacted + freed);
    assert_true(after.zspages <= before.zspages);
    check_totals(pool, live, obj_bytes);
    pat_check(mapped, 7000 + held, 0, size[held], "mapped across kmm_zs_compact", h[held]);
    kmm_zs_unmap(pool, h[held]);
    assert_int_equal(kmm_check(mm), 0);
    for (size_t i = 0; i < N; i++)
        if (h[i])
            check_object(pool, h[i], 7000 + i, size[i], scratch);

    /* what is left is dense: no class has a whole zspage of room beyond
     * its one partly filled zspage (and the one the mapped object kept) */
    size_t n;
    struct kmm_zs_class_stats *cl = classes_of(pool, &n);
    size_t held_class = class_index_for(cl, n, size[held]);
    for (size_t i = 0; i < n; i++)
        if (cl[i].free_objects >= 2 * cl[i].objs_per_zspage + (i == held_class ? cl[i].objs_per_zspage : 0))
            fail_msg("after kmm_zs_compact class %zu has %zu free slots in %zu zspages of %zu", cl[i].size,
                     cl[i].free_objects, cl[i].zspages, cl[i].objs_per_zspage);
    free(cl);

    /* still a working pool: the freed room is used again */
    for (size_t i = 0; i < N; i++) {
        if (h[i])
            continue;
        h[i] = kmm_zs_malloc(pool, size[i], 0);
        assert_true(h[i] != 0);
        write_object(pool, h[i], 9000 + i, size[i], scratch);
    }
    for (size_t i = 0; i < N; i++) {
        kmm_zs_free(pool, h[i]);
    }
    check_totals(pool, 0, 0);
    assert_int_equal(pool_stats(pool).pages_used, 0);
    kmm_zs_destroy(pool);
    kmm_drain(mm);
    assert_int_equal(free_pages(mm), free0);
    free(h);
    free(size);
    free(scratch);
    finish(mm);
}

/* When an allocation of mm finds no free page, the page allocator's
 * reclaim compacts the pools: a pool that holds nearly all of a small
 * memory system in zspages a quarter full gives pages back to a
 * kmm_alloc_pages that would otherwise fail, and its objects keep their
 * bytes. */
static void test_reclaim_compacts(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = kmm_test_create(ps, 2048 * ps);
    struct kmm_zspool *pool = kmm_zs_create(mm, "reclaimed");
    assert_non_null(pool);
    size_t size = ps / 4, cap = 2048 * 4, n = 0;
    uint64_t *h = calloc(cap, sizeof *h);
    unsigned char *scratch = malloc(ps);
    assert_non_null(h);
    assert_non_null(scratch);
    /* fill memory (the last calls fail: ENOMEM, memory is full) */
    struct kmm_test_capture cap_err;
    kmm_test_capture_begin(&cap_err);
    while (n < cap && (h[n] = kmm_zs_malloc(pool, size, 0)) != 0)
        n++;
    free(kmm_test_capture_end(&cap_err));
    assert_true(n > cap / 2);
    /* objects of one zspage are consecutive (the fullest zspage is filled
     * first): keeping every fourth leaves every zspage a quarter full */
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (i % 4) {
            kmm_zs_free(pool, h[i]);
            h[i] = 0;
        } else {
            write_object(pool, h[i], 500 + i, size, scratch);
            kept++;
        }
    }
    struct kmm_zs_stats before = pool_stats(pool);
    assert_true(before.pages_used > kept * size / ps + 8);   /* sparse: compaction has pages to give */
    size_t want = before.pages_used / 2;
    void **pages = calloc(want, sizeof *pages);
    assert_non_null(pages);
    size_t got = 0;
    while (got < want && (pages[got] = kmm_alloc_pages(mm, 0, 0)) != NULL)
        got++;
    struct kmm_zs_stats after = pool_stats(pool);
    if (got < want)
        fail_msg("kmm_alloc_pages got %zu of %zu pages; the pool still holds %zu pages for %zu objects of %zu bytes "
                 "(%zu compacted)", got, want, after.pages_used, kept, size, after.pages_compacted);
    assert_true(after.pages_compacted > before.pages_compacted);
    assert_true(after.pages_used < before.pages_used);
    assert_int_equal(kmm_check(mm), 0);
    for (size_t i = 0; i < n; i++)
        if (h[i])
            check_object(pool, h[i], 500 + i, size, scratch);
    for (size_t i = 0; i < got; i++)
        kmm_free_pages(mm, pages[i]);
    for (size_t i = 0; i < n; i++)
        kmm_zs_free(pool, h[i]);
    check_totals(pool, 0, 0);
    kmm_zs_destroy(pool);
    free(pages);
    free(h);
    free(scratch);
    finish(mm);
}

/* ---- fork ------------------------------------------------------------------------------------ */

struct churn {
    struct kmm_zspool *pool;
    atomic_bool stop;
};

/* Keeps the pool's lock busy: mallocs, maps, frees and compactions. */
static void *churn_main(void *arg)
{
    struct churn *c = arg;
    uint64_t h[32] = { 0 };
    for (unsigned i = 0; !atomic_load(&c->stop); i++) {
        unsigned k = i % 32;
        if (h[k])
            kmm_zs_free(c->pool, h[k]);
        h[k] = kmm_zs_malloc(c->pool, 200 + (i * 37) % 3000, 0);
        if (h[k]) {
            unsigned char *p = kmm_zs_map(c->pool, h[k], KMM_ZS_WO);
            p[0] = (unsigned char)i;
            kmm_zs_unmap(c->pool, h[k]);
        }
        if (i % 64 == 0)
            kmm_zs_compact(c->pool);
    }
    for (unsigned k = 0; k < 32; k++)
        kmm_zs_free(c->pool, h[k]);
    return NULL;
}

/* After fork() the child has its own copy of the pool (docs/decisions.md,
 * "fork"), also when another thread of the parent was inside a kmm_zs call
 * at the moment of the fork: the child reads the parent's objects, writes
 * them (the parent does not see it), allocates, compacts and passes
 * kmm_check. A child reports through its exit status: 0, or the number of
 * the check that failed. */
static void test_fork(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm_config cfg = { .page_size = ps, .mem_size = 256ull << 20 };
    struct kmm *mm = kmm_create(&cfg);
    assert_non_null(mm);
    struct kmm_zspool *pool = kmm_zs_create(mm, "forked");
    assert_non_null(pool);
    unsigned char *scratch = malloc(ps);
    assert_non_null(scratch);
    enum { N = 200 };
    uint64_t h[N];
    size_t size[N];
    for (size_t i = 0; i < N; i++) {
        size[i] = 1 + (i * 997) % ps;
        h[i] = kmm_zs_malloc(pool, size[i], 0);
        assert_true(h[i] != 0);
        write_object(pool, h[i], 300 + i, size[i], scratch);
    }
    struct churn c = { .pool = pool };
    atomic_init(&c.stop, false);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, churn_main, &c), 0);
    unsigned failed_fork = ~0u;
    int status = 0;
    for (unsigned f = 0; f < 12; f++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
            failed_fork = f;
            status = 0x7f00;   /* "exited with 127" */
            break;
        }
        if (pid == 0) {
            int code = 0;
            for (size_t i = 0; i < N && !code; i++) {
                if (kmm_zs_read(pool, h[i], 0, scratch, size[i]) != 0 ||
                    kmm_test_span_io(scratch, 300 + i, 0, size[i], false) != SIZE_MAX)
                    code = 1;
                kmm_test_span_io(scratch, 900 + i, 0, size[i], true);
                if (kmm_zs_write(pool, h[i], 0, scratch, size[i]) != 0)
                    code = 2;
            }
            uint64_t mine[64];
            for (size_t i = 0; i < 64 && !code; i++)
                if (!(mine[i] = kmm_zs_malloc(pool, 100 + 50 * i, KMM_ZERO)))
                    code = 3;
            for (size_t i = 0; i < N && !code; i += 2)
                kmm_zs_free(pool, h[i]);
            kmm_zs_compact(pool);
            for (size_t i = 1; i < N && !code; i += 2) {
                const unsigned char *p = kmm_zs_map(pool, h[i], KMM_ZS_RO);
                if (kmm_test_span_io((unsigned char *)p, 900 + i, 0, size[i], false) != SIZE_MAX)
                    code = 4;
                kmm_zs_unmap(pool, h[i]);
            }
            if (!code && kmm_check(mm) != 0)
                code = 5;
            _exit(code);
        }
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            failed_fork = f;
            break;
        }
    }
    /* the thread stops before any assertion: a failure leaves this frame */
    atomic_store(&c.stop, true);
    pthread_join(th, NULL);
    if (failed_fork != ~0u)
        fail_msg("fork %u: the child %s %d", failed_fork, WIFEXITED(status) ? "failed check" : "died of signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    for (size_t i = 0; i < N; i++)   /* the children's writes stayed theirs */
        check_object(pool, h[i], 300 + i, size[i], scratch);
    for (size_t i = 0; i < N; i++)
        kmm_zs_free(pool, h[i]);
    check_totals(pool, 0, 0);
    kmm_zs_destroy(pool);
    free(scratch);
    finish(mm);
}

/* ---- pools of a memory system ---------------------------------------------------------------- */

struct seen {
    struct kmm_zspool *pools[8];
    unsigned count[8];
    unsigned others;
};

static void count_pool(struct kmm_zspool *pool, void *arg)
{
    struct seen *s = arg;
    for (unsigned i = 0; i < 8; i++) {
        if (s->pools[i] == pool) {
            s->count[i]++;
            return;
        }
    }
    s->others++;
}

/* kmm_zs_for_each calls fn once for every live pool of mm and for no other. */
static void test_for_each(void **state)
{
    (void)state;
    struct kmm *mm = create_mm(4096), *other = create_mm(4096);
    struct seen s;
    memset(&s, 0, sizeof s);
    kmm_zs_for_each(mm, count_pool, &s);
    assert_int_equal(s.others, 0);
    struct kmm_zspool *elsewhere = kmm_zs_create(other, "elsewhere");
    assert_non_null(elsewhere);
    for (unsigned i = 0; i < 5; i++) {
        char name[16];
        snprintf(name, sizeof name, "pool%u", i);
        s.pools[i] = kmm_zs_create(mm, name);
        assert_non_null(s.pools[i]);
    }
    kmm_zs_for_each(mm, count_pool, &s);
    for (unsigned i = 0; i < 5; i++)
        assert_int_equal(s.count[i], 1);
    assert_int_equal(s.others, 0);
    kmm_zs_destroy(s.pools[2]);
    memset(s.count, 0, sizeof s.count);
    kmm_zs_for_each(mm, count_pool, &s);
    for (unsigned i = 0; i < 5; i++)
        assert_int_equal(s.count[i], i == 2 ? 0u : 1u);
    assert_int_equal(s.others, 0);
    for (unsigned i = 0; i < 5; i++)
        if (i != 2)
            kmm_zs_destroy(s.pools[i]);
    kmm_zs_destroy(elsewhere);
    finish(other);
    finish(mm);
}

/* kmm_zs_destroy with live objects in every class gives back every page
 * and every byte of metadata the pool took. */
static void test_destroy_with_live_objects(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = create_mm(ps);
    kmm_drain(mm);
    size_t free0 = free_pages(mm);
    struct kmm_meta_stats meta0;
    kmm_meta_stats(mm, &meta0);
    struct kmm_zspool *pool = kmm_zs_create(mm, "doomed");
    assert_non_null(pool);
    size_t n;
    struct kmm_zs_class_stats *cl = classes_of(pool, &n);
    size_t objects = 0;
    for (size_t ci = 0; ci < n; ci++)
        for (size_t i = 0; i < 3; i++, objects++)
            assert_true(kmm_zs_malloc(pool, cl[ci].size, 0) != 0);
    free(cl);
    assert_int_equal(pool_stats(pool).objects, objects);
    assert_true(free_pages(mm) < free0);
    uint64_t mapped_then_unmapped = kmm_zs_malloc(pool, ps / 2 + 1, 0);
    kmm_zs_map(pool, mapped_then_unmapped, KMM_ZS_RW);
    kmm_zs_unmap(pool, mapped_then_unmapped);
    kmm_zs_destroy(pool);
    kmm_drain(mm);
    assert_int_equal(free_pages(mm), free0);
    struct kmm_meta_stats meta1;
    kmm_meta_stats(mm, &meta1);
    assert_int_equal(meta1.objects, meta0.objects);
    assert_int_equal(meta1.large_objects, meta0.large_objects);
    struct seen s;
    memset(&s, 0, sizeof s);
    kmm_zs_for_each(mm, count_pool, &s);
    assert_int_equal(s.others, 0);
    finish(mm);
}

/* ---- the tests ------------------------------------------------------------------ */

/* Every layout at 4 KiB; at the larger pages, where a class walk writes
 * hundreds of MiB, the default and the extremes of step and zspage length. */
static const struct walk walks[] = {
    { 4096, &layouts[0] }, { 4096, &layouts[1] }, { 4096, &layouts[2] }, { 4096, &layouts[3] },
    { 4096, &layouts[4] }, { 4096, &layouts[5] }, { 4096, &layouts[6] },
    { 16384, &layouts[0] }, { 16384, &layouts[4] },
    { 65536, &layouts[0] },
};
#define WALK_ENTRY(i, name) { "test_every_class_" name, test_every_class, NULL, NULL, (void *)&walks[i] }

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        WALK_ENTRY(0, "default_4k"),
        WALK_ENTRY(1, "step8_pages4_4k"),
        WALK_ENTRY(2, "step16_pages1_4k"),
        WALK_ENTRY(3, "step64_pages16_4k"),
        WALK_ENTRY(4, "step64_pages64_4k"),
        WALK_ENTRY(5, "step16_pages64_4k"),
        WALK_ENTRY(6, "step8_pages16_4k"),
        WALK_ENTRY(7, "default_16k"),
        WALK_ENTRY(8, "step64_pages64_16k"),
        WALK_ENTRY(9, "default_64k"),
        KMM_TEST_PER_PAGE_SIZE(test_size_limits),
        KMM_TEST_PER_PAGE_SIZE(test_zero),
        KMM_TEST_PER_PAGE_SIZE(test_usable_size),
        KMM_TEST_PER_PAGE_SIZE(test_class_table),
        { "test_config_and_name", test_config_and_name, NULL, NULL, NULL },
        KMM_TEST_PER_PAGE_SIZE(test_stats_empty),
        KMM_TEST_PER_PAGE_SIZE(test_map_nest),
        KMM_TEST_PER_PAGE_SIZE(test_area_mask),
        KMM_TEST_PER_PAGE_SIZE(test_compact_half),
        KMM_TEST_SMALL_PAGES(test_reclaim_compacts),
        KMM_TEST_SMALL_PAGES(test_fork),
        { "test_for_each", test_for_each, NULL, NULL, NULL },
        KMM_TEST_PER_PAGE_SIZE(test_destroy_with_live_objects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
