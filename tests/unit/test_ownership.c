/* One owner per block: every page allocation belongs to the layer that made
 * it (the page allocator's caller, a slab, a kmm_malloc block of pages, a
 * vmalloc area's frames), and a free through any other layer's entry point
 * aborts naming the owner. kmm_check verifies the slab map against the
 * page metadata, so a mark that outlives its block is caught.
 *
 * Each misuse runs in a child (kmm_test_expect_abort). A child exits with
 * 3 when a set-up step failed, 5 when the misuse went through unnoticed.
 * On 56bd589 the page-layer frees of layer memory went through (exit 5),
 * and kmm_free / kmm_usable_size accepted cache objects and page
 * allocations left with a stale kmm_malloc mark. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "slab/slab_internal.h"   /* white-box: the slab map, for kmm_check's own test */
#include "kmm_test.h"

#define PS 4096
#define MEM (64ull << 20)

static struct kmm *child_mm(void)
{
    struct kmm_config cfg = { .page_size = PS, .mem_size = MEM };
    struct kmm *mm = kmm_create(&cfg);
    if (!mm)
        exit(3);
    return mm;
}

static void *or_exit(void *p)
{
    if (!p)
        exit(3);
    return p;
}

/* The first page of the slab holding p (white-box: its descriptor). */
static void *slab_first_page(struct kmm *mm, void *p)
{
    struct kmm_slab *s = slab_of(mm, p);
    if (!s || s == LARGE_BLOCK)
        exit(3);
    return (void *)s->base;
}

/* ---- the page allocator's free of layer memory ---------------------------------- */

static void free_pages_of_kmalloc_block(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *p = or_exit(kmm_malloc(mm, 8192, 0));   /* the reviewer's case */
    kmm_free_pages(mm, p);
    exit(5);
}

static void free_pages_of_slab(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    kmm_free_pages(mm, slab_first_page(mm, or_exit(kmm_malloc(mm, 2048, 0))));
    exit(5);
}

static void free_pages_of_cache_slab(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    struct kmm_cache *c = or_exit(kmm_cache_create(mm, "owned", 4096, 0, NULL));
    kmm_free_pages(mm, slab_first_page(mm, or_exit(kmm_cache_alloc(c, 0))));
    exit(5);
}

static void free_pages_of_vmalloc_frame(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *v = or_exit(kmm_vmalloc(mm, 3 * PS, 0));
    kmm_free_pages(mm, kmm_phys_to_virt(mm, kmm_vmalloc_to_phys(mm, v)));
    exit(5);
}

static void free_pages_of_leaked_slab(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    struct kmm_cache *c = or_exit(kmm_cache_create(mm, "leaky", 4096, 0, NULL));
    void *p = or_exit(kmm_cache_alloc(c, 0));
    void *first = slab_first_page(mm, p);
    kmm_cache_destroy(c);   /* reports the live object, keeps its slab */
    kmm_free_pages(mm, first);
    exit(5);
}

/* ---- kmm_malloc's entry points on other layers' memory ----------------------------- */

static void kmm_free_of_page_allocation(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *warm = or_exit(kmm_malloc(mm, 8192, 0));   /* the slab map exists */
    (void)warm;
    kmm_free(mm, or_exit(kmm_alloc_pages(mm, 1, 0)));
    exit(5);
}

static void usable_size_of_page_allocation(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *warm = or_exit(kmm_malloc(mm, 8192, 0));
    (void)warm;
    (void)kmm_usable_size(mm, or_exit(kmm_alloc_pages(mm, 0, 0)));
    exit(5);
}

static void kmm_free_of_cache_object(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    struct kmm_cache *c = or_exit(kmm_cache_create(mm, "not-kmalloc", 64, 0, NULL));
    void *p = or_exit(kmm_cache_alloc(c, 0));
    kmm_free(mm, p);   /* the fast path must not take it either */
    exit(5);
}

static void usable_size_of_cache_object(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    struct kmm_cache *c = or_exit(kmm_cache_create(mm, "not-kmalloc", 64, 0, NULL));
    (void)kmm_usable_size(mm, or_exit(kmm_cache_alloc(c, 0)));
    exit(5);
}

static void realloc_of_cache_object(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    struct kmm_cache *c = or_exit(kmm_cache_create(mm, "not-kmalloc", 64, 0, NULL));
    (void)kmm_realloc(mm, or_exit(kmm_cache_alloc(c, 0)), 200, 0);
    exit(5);
}

static void kmm_free_of_vmalloc_frame(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *v = or_exit(kmm_vmalloc(mm, 2 * PS, 0));
    kmm_free(mm, kmm_phys_to_virt(mm, kmm_vmalloc_to_phys(mm, v)));
    exit(5);
}

/* The reviewer's sequence, step by step: the first step now aborts; had it
 * not, kmm_free of the reused page must not have taken it. */
static void kmalloc_block_reused_by_pages(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *p = or_exit(kmm_malloc(mm, 8192, 0));
    kmm_free_pages(mm, p);
    void *q = kmm_alloc_pages(mm, 1, 0);
    kmm_free(mm, q);
    exit(5);
}

static void expect_abort(void **state)
{
    const struct { void (*fn)(void *); const char *why; } *a = *state;
    assert_int_equal(kmm_test_expect_abort(a->fn, NULL, a->why), 0);
    assert_int_equal(kmm_test_expect_abort(a->fn, NULL, "0x"), 0);
}

#define ABUSE(fn, why) \
    { #fn, expect_abort, NULL, NULL, &(struct { void (*f)(void *); const char *w; }){ fn, why } }

/* ---- kmm_check: the slab map against the page metadata ------------------------------- */

static struct slab_map_entry *entry_of(struct kmm *mm, const void *p)
{
    return &mm->slab_map[virt_to_index(mm, p)];
}

static void check_fails_quietly(struct kmm *mm, const char *what)
{
    struct kmm_test_capture cap;
    kmm_test_capture_begin(&cap);
    int rc = kmm_check(mm);
    char *out = kmm_test_capture_end(&cap);
    if (rc != -1 || !strstr(out, what))
        fprintf(stderr, "kmm_check returned %d, said: %s (wanted \"%s\")\n", rc, out, what);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(out, what));
    free(out);
}

/* A LARGE_BLOCK mark left on a page allocation (what a kmm_free_pages of a
 * kmm_malloc block used to leave behind) is found. */
static void test_check_stale_large_mark(void **state)
{
    (void)state;
    struct kmm *mm = kmm_test_create(PS, MEM);
    void *big = kmm_malloc(mm, 3 * PS, 0);
    void *pages = kmm_alloc_pages(mm, 1, 0);
    assert_non_null(big);
    assert_non_null(pages);
    assert_int_equal(kmm_check(mm), 0);
    struct slab_map_entry *e = entry_of(mm, pages);
    e->slab = LARGE_BLOCK;
    check_fails_quietly(mm, "LARGE_BLOCK mark on a page that starts no kmm_malloc block");
    e->slab = NULL;
    /* and a kmm_malloc block that lost its mark */
    entry_of(mm, big)->slab = NULL;
    check_fails_quietly(mm, "not marked LARGE_BLOCK");
    entry_of(mm, big)->slab = LARGE_BLOCK;
    assert_int_equal(kmm_check(mm), 0);
    kmm_free(mm, big);
    kmm_free_pages(mm, pages);
    assert_int_equal(kmm_check(mm), 0);
    kmm_destroy(mm);
}

/* A slab page whose entry was cleared, and a page no slab holds that names
 * one, are found. */
static void test_check_slab_entries(void **state)
{
    (void)state;
    struct kmm *mm = kmm_test_create(PS, MEM);
    void *obj = kmm_malloc(mm, 100, 0);
    void *pages = kmm_alloc_pages(mm, 0, 0);
    assert_non_null(obj);
    assert_non_null(pages);
    struct slab_map_entry saved = *entry_of(mm, obj);
    entry_of(mm, obj)->slab = NULL;
    check_fails_quietly(mm, "slab map does not name the slab");
    *entry_of(mm, obj) = saved;
    entry_of(mm, pages)->slab = saved.slab;
    check_fails_quietly(mm, "slab map names a slab for a page no slab holds");
    entry_of(mm, pages)->slab = NULL;
    assert_int_equal(kmm_check(mm), 0);
    kmm_free(mm, obj);
    kmm_free_pages(mm, pages);
    kmm_destroy(mm);
}

/* Ownership changes nothing for well-behaved users: every layer's memory
 * goes back through its own free, and the page metadata shows no owner
 * left behind. */
static void test_owners_round_trip(void **state)
{
    (void)state;
    struct kmm *mm = kmm_test_create(PS, MEM);
    struct kmm_page_stats st;
    kmm_vfree(mm, kmm_vmalloc(mm, PS, 0));   /* the vmalloc layer's own bookkeeping, made once */
    kmm_drain(mm);
    kmm_page_stats(mm, &st);
    size_t baseline = st.allocated_pages;
    struct kmm_cache *c = kmm_cache_create(mm, "round-trip", 200, 0, NULL);
    assert_non_null(c);
    void *small = kmm_malloc(mm, 100, 0), *big = kmm_malloc(mm, 5 * PS + 1, 0);
    void *obj = kmm_cache_alloc(c, 0), *v = kmm_vmalloc(mm, 7 * PS, 0);
    void *pages = kmm_alloc_pages_exact(mm, 5 * PS, 0);
    assert_true(small && big && obj && v && pages);
    assert_int_equal(kmm_usable_size(mm, big), 6 * PS);
    assert_int_equal(kmm_page_alloc_size(mm, big), 6);   /* kmm_malloc's, and still 6 pages */
    assert_int_equal(kmm_page_alloc_size(mm, pages), 5);
    big = kmm_realloc(mm, big, 2 * PS, 0);   /* shrinks in place: kmm_malloc's pages still */
    assert_non_null(big);
    assert_int_equal(kmm_usable_size(mm, big), 2 * PS);
    assert_int_equal(kmm_check(mm), 0);
    kmm_free(mm, small);
    kmm_free(mm, big);
    kmm_cache_free(c, obj);
    kmm_vfree(mm, v);
    kmm_free_pages(mm, pages);
    kmm_cache_destroy(c);
    kmm_drain(mm);
    assert_int_equal(kmm_check(mm), 0);
    kmm_page_stats(mm, &st);
    assert_int_equal(st.allocated_pages, baseline);
    kmm_destroy(mm);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        ABUSE(free_pages_of_kmalloc_block, "owned by kmm_malloc"),
        ABUSE(free_pages_of_slab, "owned by the slab layer"),
        ABUSE(free_pages_of_cache_slab, "owned by the slab layer"),
        ABUSE(free_pages_of_vmalloc_frame, "owned by kmm_vmalloc"),
        ABUSE(free_pages_of_leaked_slab, "owned by a destroyed kmm_cache"),
        ABUSE(kmm_free_of_page_allocation, "owned by the page allocator's caller"),
        ABUSE(usable_size_of_page_allocation, "owned by the page allocator's caller"),
        ABUSE(kmm_free_of_cache_object, "kmm_cache_create cache, not from kmm_malloc"),
        ABUSE(usable_size_of_cache_object, "kmm_cache_create cache, not from kmm_malloc"),
        ABUSE(realloc_of_cache_object, "kmm_cache_create cache, not from kmm_malloc"),
        ABUSE(kmm_free_of_vmalloc_frame, "owned by kmm_vmalloc"),
        ABUSE(kmalloc_block_reused_by_pages, "kmm_free_pages: free of memory owned by kmm_malloc"),
        cmocka_unit_test(test_check_stale_large_mark),
        cmocka_unit_test(test_check_slab_entries),
        cmocka_unit_test(test_owners_round_trip),
    };
    return cmocka_run_group_tests_name("ownership", tests, NULL, NULL);
}
