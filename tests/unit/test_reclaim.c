/* Unit tests of the reclaim: memory held by threads idle in kmm (their page
 * caches and magazines) and by lazily freed vmalloc areas comes back before
 * an allocation fails, and kmm_drain takes it back too.
 *
 * Each test exhausts a 16 MiB memory system (one area) while another thread
 * that filled its caches waits on a condition variable, never calling kmm
 * again until the end. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm_test.h"
#include "internal.h"   /* mm->cache_key, for the epoch test */
#include <kmm/unmapped.h>

#define MiB (1ull << 20)
#define MEM (16 * MiB)

/* ---- a thread that fills its caches, then idles ------------------------------------ */

struct idler {
    struct kmm *mm;
    void (*fill)(struct idler *);
    void (*wake)(struct idler *);   /* its one call after it was woken, or NULL */
    void *keep;                     /* a page kept for that call */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int state;                      /* 0 filling, 1 idle, 2 woken, 3 done waking, 4 told to end */
    pthread_t t;
};

static void set_state(struct idler *id, int s)
{
    pthread_mutex_lock(&id->mu);
    id->state = s;
    pthread_cond_broadcast(&id->cv);
    pthread_mutex_unlock(&id->mu);
}

static void wait_state(struct idler *id, int s)
{
    pthread_mutex_lock(&id->mu);
    while (id->state < s)
        pthread_cond_wait(&id->cv, &id->mu);
    pthread_mutex_unlock(&id->mu);
}

static void *idler_main(void *arg)
{
    struct idler *id = arg;
    id->fill(id);
    set_state(id, 1);
    wait_state(id, 2);
    if (id->wake && id->state == 2) {
        id->wake(id);
        set_state(id, 3);
    }
    wait_state(id, 4);
    return NULL;
}

static void idler_start(struct idler *id, struct kmm *mm, void (*fill)(struct idler *), void (*wake)(struct idler *))
{
    memset(id, 0, sizeof(*id));
    id->mm = mm;
    id->fill = fill;
    id->wake = wake;
    pthread_mutex_init(&id->mu, NULL);
    pthread_cond_init(&id->cv, NULL);
    assert_int_equal(pthread_create(&id->t, NULL, idler_main, id), 0);
    wait_state(id, 1);
}

/* Lets the idler make its one call, and waits for it. */
static void idler_wake(struct idler *id)
{
    set_state(id, 2);
    wait_state(id, 3);
}

static void idler_end(struct idler *id)
{
    set_state(id, 4);
    assert_int_equal(pthread_join(id->t, NULL), 0);
    pthread_mutex_destroy(&id->mu);
    pthread_cond_destroy(&id->cv);
}

/* Fills the page cache at every cached order: as many blocks as a list
 * holds before it gives a batch back, freed. Keeps one page for wake. */
static void fill_pages(struct idler *id)
{
    for (unsigned order = 0; order <= KMM_PCP_MAX_ORDER; order++) {
        size_t n = 192 >> order;
        void **p = calloc(n, sizeof(*p));
        for (size_t i = 0; i < n; i++)
            assert_non_null(p[i] = kmm_alloc_pages(id->mm, order, 0));
        for (size_t i = 0; i < n; i++)
            kmm_free_pages(id->mm, p[i]);
        free(p);
    }
    assert_non_null(id->keep = kmm_alloc_pages(id->mm, 0, 0));
}

static void free_kept(struct idler *id)
{
    kmm_free_pages(id->mm, id->keep);
    id->keep = NULL;
}

/* Fills kmm_malloc's magazines and depots of many classes: objects freed
 * into magazines pin their slabs. */
static void fill_objects(struct idler *id)
{
    enum { N = 400 };
    void **p = calloc(N, sizeof(*p));
    for (size_t size = 16; size <= 2048; size += size < 256 ? 16 : 128) {
        for (size_t i = 0; i < N; i++)
            assert_non_null(p[i] = kmm_malloc(id->mm, size, 0));
        for (size_t i = 0; i < N; i += 2)   /* every other: slabs stay part full */
            kmm_free(id->mm, p[i]);
        for (size_t i = 1; i < N; i += 2)
            kmm_free(id->mm, p[i]);
    }
    free(p);
    fill_pages(id);
}

/* ---- exhausting the memory system ---------------------------------------------------- */

struct held {
    void **p;
    size_t n;
};

/* Allocates single pages until the allocator says no. */
static void exhaust(struct kmm *mm, struct held *h)
{
    size_t cap = MEM / 4096;
    h->p = calloc(cap, sizeof(*h->p));
    h->n = 0;
    while (h->n < cap) {
        void *p = kmm_alloc_pages(mm, 0, 0);
        if (!p)
            break;
        h->p[h->n++] = p;
    }
}

static void release(struct kmm *mm, struct held *h)
{
    for (size_t i = 0; i < h->n; i++)
        kmm_free_pages(mm, h->p[i]);
    free(h->p);
}

static struct kmm *create(struct kmm_platform *pf)
{
    struct kmm_config cfg = { .page_size = 4096, .mem_size = MEM, .platform = pf };
    struct kmm *mm = kmm_create(&cfg);
    assert_non_null(mm);
    return mm;
}

/* Exhausts mm while an idler holds its one kept page: every other page
 * must be had, none left free. */
static void assert_all_had(struct kmm *mm)
{
    struct kmm_page_stats st;
    struct held h;
    exhaust(mm, &h);
    kmm_page_stats(mm, &st);
    if (h.n + 1 != st.total_pages || st.free_pages != 0)
        fprintf(stderr, "allocated %zu of %zu pages; free %zu, cached %zu\n", h.n, (size_t)st.total_pages,
                (size_t)st.free_pages, (size_t)st.cached_pages);
    assert_int_equal(st.free_pages, 0);
    assert_int_equal(h.n + 1, st.total_pages);
    release(mm, &h);
}

/* ---- tests --------------------------------------------------------------------------- */

/* An idler fills its caches with fill and waits; every page can still be had. */
static void all_had_while_idle(void (*fill)(struct idler *))
{
    struct kmm *mm = create(NULL);
    struct idler id;
    idler_start(&id, mm, fill, NULL);
    assert_all_had(mm);
    assert_int_equal(kmm_check(mm), 0);
    idler_end(&id);
    kmm_free_pages(mm, id.keep);
    assert_int_equal(kmm_check(mm), 0);
    kmm_destroy(mm);
}

static void test_idle_page_cache(void **state)
{
    (void)state;
    all_had_while_idle(fill_pages);
}

static void test_idle_magazines(void **state)
{
    (void)state;
    all_had_while_idle(fill_objects);
}

/* kmm_drain takes an idle thread's caches back at once. */
static void test_drain_idle(void **state)
{
    (void)state;
    struct kmm *mm = create(NULL);
    struct idler id;
    idler_start(&id, mm, fill_objects, NULL);
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    assert_true(st.cached_pages >= 192);
    kmm_drain(mm);
    kmm_page_stats(mm, &st);
    assert_int_equal(st.cached_pages, 0);
    assert_int_equal(st.allocated_pages, 1);   /* the idler's kept page: no slab left */
    idler_end(&id);
    kmm_free_pages(mm, id.keep);
    assert_int_equal(kmm_check(mm), 0);
    kmm_destroy(mm);
}

/* Lazily freed vmalloc areas hold their pages until a purge: a failing page
 * allocation purges them. */
static void test_lazy_vmalloc(void **state)
{
    (void)state;
    struct kmm *mm = create(NULL);
    struct idler id;
    idler_start(&id, mm, fill_pages, NULL);
    void *v[8];
    for (int i = 0; i < 8; i++)
        assert_non_null(v[i] = kmm_vmalloc(mm, 1 * MiB, 0));
    for (int i = 0; i < 8; i++)
        kmm_vfree(mm, v[i]);
    struct kmm_vmalloc_stats vi;
    kmm_vmalloc_stats(mm, &vi);
    assert_true(vi.lazy_pages >= 2048);   /* the areas wait for a purge */

    struct held h;
    exhaust(mm, &h);
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    kmm_vmalloc_stats(mm, &vi);
    assert_int_equal(vi.lazy_pages, 0);
    assert_int_equal(st.free_pages, 0);
    /* all but the slab of the vmalloc layer's nodes */
    assert_true(h.n + 4 >= st.total_pages);
    release(mm, &h);
    idler_end(&id);
    kmm_free_pages(mm, id.keep);
    assert_int_equal(kmm_check(mm), 0);
    kmm_destroy(mm);
}

/* Without the platform's barrier_all, an idle thread's caches stay its own
 * until its next call (which drains them, the allocation having set a new
 * key), and nothing breaks. */
static void test_no_barrier_hook(void **state)
{
    (void)state;
    struct kmm_platform pf = kmm_platform_hosted;
    pf.barrier_all = NULL;
    struct kmm *mm = create(&pf);
    struct idler id;
    idler_start(&id, mm, fill_pages, free_kept);
    struct held h;
    exhaust(mm, &h);
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    assert_true(st.cached_pages >= 192);   /* the idler's */
    assert_int_equal(h.n + st.cached_pages + 1, st.total_pages);
    idler_wake(&id);   /* it frees its kept page: drains first */
    kmm_page_stats(mm, &st);
    assert_int_equal(st.cached_pages, 1);
    void *p = kmm_alloc_pages(mm, 0, 0);
    assert_non_null(p);
    kmm_free_pages(mm, p);
    release(mm, &h);
    idler_end(&id);
    assert_int_equal(kmm_check(mm), 0);
    kmm_destroy(mm);
}

/* The drain epoch must not wrap: a thread idle over exactly as many drains
 * as the epoch once had values (2^24) still drains at its next call. The
 * key is set to where 2^24 - 1 drains would have left it. Without the
 * barrier hook, so that the thread's own next call must do the drain. */
static void test_epoch_no_wrap(void **state)
{
    (void)state;
    struct kmm_platform pf = kmm_platform_hosted;
    pf.barrier_all = NULL;
    struct kmm *mm = create(&pf);
    struct idler id;
    idler_start(&id, mm, fill_pages, free_kept);
    mm->cache_key += (1u << 24) - 1;
    kmm_drain(mm);
    idler_wake(&id);   /* frees its kept page: the drain must come first */
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    assert_int_equal(st.cached_pages, 1);
    idler_end(&id);
    assert_int_equal(kmm_check(mm), 0);
    kmm_destroy(mm);
}

/* The pool's shrinker's stats, by its name. */
struct shrinker_stats {
    const char *name;
    uint64_t scans, scanned;
};

static void find_shrinker(void *arg, const struct kmm_shrinker_info *info)
{
    struct shrinker_stats *s = arg;
    if (strcmp(info->name, s->name) == 0) {
        s->scans = info->scans;
        s->scanned = info->scanned;
    }
}

/* A zsmalloc pool left sparse by frees is compacted before a page
 * allocation fails, by its shrinker (not by kmm__reclaim, which stays
 * cheap): the pages its half-empty zspages held are had, and every object
 * keeps its contents. */
static void test_zsmalloc_compacted(void **state)
{
    (void)state;
    struct kmm *mm = create(NULL);
    struct kmm_zspool *pool = kmm_zs_create(mm, "reclaim");
    assert_non_null(pool);
    size_t cap = MEM / 1000, n = 0;
    uint64_t *h = calloc(cap, sizeof(*h));
    unsigned char buf[1500];
    while (n < cap) {
        uint64_t x = kmm_zs_malloc(pool, 1000 + n % 500, 0);
        if (!x)
            break;
        memset(buf, (int)(n & 0xff), sizeof(buf));
        assert_int_equal(kmm_zs_write(pool, x, 0, buf, 1000 + n % 500), 0);
        h[n++] = x;
    }
    assert_true(n > 1000 && n < cap);   /* memory ran out */
    for (size_t i = 0; i < n; i += 2)
        kmm_zs_free(pool, h[i]);
    struct kmm_zs_stats before, after;
    kmm_zs_stats(pool, &before);
    assert_int_equal(before.pages_compacted, 0);
    kmm_drain(mm);   /* the cheap reclaim alone compacts nothing */
    kmm_zs_stats(pool, &after);
    assert_int_equal(after.pages_compacted, 0);
    struct shrinker_stats sh0 = { .name = "zsmalloc reclaim" }, sh1 = sh0;
    kmm_shrinker_for_each(mm, find_shrinker, &sh0);
    struct held got;
    exhaust(mm, &got);
    kmm_zs_stats(pool, &after);
    /* about half the pool's pages come back; without compaction, none */
    assert_true(after.pages_compacted > before.pages_used / 3);
    assert_true(got.n >= after.pages_compacted / 2);
    kmm_shrinker_for_each(mm, find_shrinker, &sh1);
    assert_true(sh1.scans > sh0.scans);
    assert_true(sh1.scanned - sh0.scanned >= after.pages_compacted);
    for (size_t i = 1; i < n; i += 2) {
        assert_int_equal(kmm_zs_read(pool, h[i], 0, buf, 1000 + i % 500), 0);
        for (size_t j = 0; j < 1000 + i % 500; j++)
            assert_int_equal(buf[j], i & 0xff);
    }
    assert_int_equal(kmm_check(mm), 0);
    release(mm, &got);
    kmm_zs_destroy(pool);
    free(h);
    kmm_destroy(mm);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_page_cache),
        cmocka_unit_test(test_idle_magazines),
        cmocka_unit_test(test_drain_idle),
        cmocka_unit_test(test_lazy_vmalloc),
        cmocka_unit_test(test_no_barrier_hook),
        cmocka_unit_test(test_epoch_no_wrap),
        cmocka_unit_test(test_zsmalloc_compacted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
