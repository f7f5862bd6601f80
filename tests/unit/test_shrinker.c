/* Unit tests of the shrinkers (include/kmm/unmapped.h, "Shrinkers";
 * src/core/shrink.c, and the stages of a failing allocation in
 * src/page/buddy.c):
 *  - an allocation that would fail succeeds once shrinkers give back;
 *  - shrinkers are asked in registration order, for what is still missing,
 *    no more than their count; a count of 0 skips the shrinker;
 *    kmm_shrink(mm, 0) asks each for all it can give;
 *  - kmm_shrinker_for_each lists them, in order, with names and stats, and
 *    its function may unregister them;
 *  - unregister waits for a scan running on another thread; registering
 *    twice or without callbacks is refused; unregistering an unknown
 *    shrinker, or from a callback, aborts;
 *  - a callback whose own allocation fails does not run the shrinkers again;
 *  - KMM__NO_RECLAIM allocations never run them;
 *  - a fragmented zsmalloc pool is compacted by a failing page allocation;
 *  - in a forked child, a shrinker pinned by a parent thread can be
 *    unregistered, and shrinkers registered there run.
 *
 * A hoard is a test shrinker that holds single pages it took from the
 * memory system and frees them in scan, logging its calls. */
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
#include <sys/wait.h>
#include <unistd.h>

#include "kmm_test.h"
#include "internal.h"   /* KMM__NO_RECLAIM */
#include <kmm/unmapped.h>

#define MiB (1ull << 20)
#define MEM (16 * MiB)
#define PS  ((size_t)4096)
/* The most pages a zspage of a default pool holds: what one compaction
 * step (or the stash) may give back beyond what a scan asked for. */
#define ZSPAGE_MAX_PAGES 16

/* ---- the call log ------------------------------------------------------------- */

struct call {
    char who;       /* the hoard's tag */
    char what;      /* 'c' count, 's' scan */
    size_t nr;      /* count's answer, or scan's nr_to_scan */
};
static struct call calls[256];
static unsigned nr_calls;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

static void log_call(char who, char what, size_t nr)
{
    pthread_mutex_lock(&log_mu);
    if (nr_calls < sizeof(calls) / sizeof(calls[0]))
        calls[nr_calls++] = (struct call){ who, what, nr };
    pthread_mutex_unlock(&log_mu);
}

static void log_reset(void)
{
    nr_calls = 0;
}

/* The log as text: "Ac0 Bc3 Bs1" (who, what, nr). */
static const char *log_text(void)
{
    static char buf[4096];
    size_t len = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < nr_calls && len < sizeof(buf) - 32; i++)
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%c%c%zu", i ? " " : "", calls[i].who, calls[i].what,
                                calls[i].nr);
    return buf;
}

/* ---- hoards ------------------------------------------------------------------- */

struct hoard {
    struct kmm_shrinker s;
    struct kmm *mm;
    char tag;
    char name[16];
    pthread_mutex_t mu;
    void **pages;
    size_t n, cap;
    size_t lie;             /* count says this when the hoard is empty */
};

static size_t hoard_count(void *arg)
{
    struct hoard *h = arg;
    pthread_mutex_lock(&h->mu);
    size_t n = h->n ? h->n : h->lie;
    pthread_mutex_unlock(&h->mu);
    log_call(h->tag, 'c', n);
    return n;
}

static size_t hoard_scan(void *arg, size_t nr)
{
    struct hoard *h = arg;
    log_call(h->tag, 's', nr);
    size_t freed = 0;
    pthread_mutex_lock(&h->mu);
    while (freed < nr && h->n) {
        kmm_free_pages(h->mm, h->pages[--h->n]);
        freed++;
    }
    pthread_mutex_unlock(&h->mu);
    return freed;
}

/* A hoard tagged tag holding up to n single pages (fewer if memory runs out). */
static void hoard_init(struct hoard *h, struct kmm *mm, char tag, size_t n)
{
    memset(h, 0, sizeof(*h));
    h->mm = mm;
    h->tag = tag;
    snprintf(h->name, sizeof(h->name), "hoard %c", tag);
    pthread_mutex_init(&h->mu, NULL);
    h->cap = n ? n : 1;
    h->pages = calloc(h->cap, sizeof(*h->pages));
    assert_non_null(h->pages);
    while (h->n < n && (h->pages[h->n] = kmm_alloc_pages(mm, 0, 0)))
        h->n++;
    h->s = (struct kmm_shrinker){ .count = hoard_count, .scan = hoard_scan, .arg = h, .name = h->name };
}

static void hoard_fini(struct hoard *h)
{
    while (h->n)
        kmm_free_pages(h->mm, h->pages[--h->n]);
    free(h->pages);
    pthread_mutex_destroy(&h->mu);
}

/* ---- exhausting the memory system ---------------------------------------------- */

struct held {
    void **p;
    size_t n;
};

/* Takes single pages until the allocator says no. */
static void exhaust(struct kmm *mm, struct held *h)
{
    size_t cap = MEM / PS;
    h->p = calloc(cap, sizeof(*h->p));
    h->n = 0;
    while (h->n < cap && (h->p[h->n] = kmm_alloc_pages(mm, 0, 0)))
        h->n++;
}

static void release(struct kmm *mm, struct held *h)
{
    for (size_t i = 0; i < h->n; i++)
        kmm_free_pages(mm, h->p[i]);
    free(h->p);
}

static struct kmm *create(void)
{
    return kmm_test_create(PS, MEM);
}

/* ---- stats ------------------------------------------------------------------------- */

struct listing {
    unsigned n;
    struct kmm_shrinker_info info[8];
    char names[8][48];
};

static void list_one(void *arg, const struct kmm_shrinker_info *info)
{
    struct listing *l = arg;
    if (l->n < 8) {
        l->info[l->n] = *info;
        snprintf(l->names[l->n], sizeof(l->names[0]), "%s", info->name);
        l->info[l->n].name = l->names[l->n];
        l->n++;
    }
}

static void list(struct kmm *mm, struct listing *l)
{
    memset(l, 0, sizeof(*l));
    kmm_shrinker_for_each(mm, list_one, l);
}

/* ---- tests ---------------------------------------------------------------------------- */

/* The hoard holds nearly all memory: without it registered an allocation
 * fails; registered, a single page and a 16-page block are had, from what
 * it gives back. */
static void test_allocation_succeeds_after_shrink(void **state)
{
    (void)state;
    struct kmm *mm = create();
    struct hoard h;
    hoard_init(&h, mm, 'H', MEM / PS);
    struct held rest;
    exhaust(mm, &rest);
    assert_true(h.n > MEM / PS / 2);
    assert_null(kmm_alloc_pages(mm, 0, 0));
    size_t before = h.n;

    assert_int_equal(kmm_register_shrinker(mm, &h.s), 0);
    void *one = kmm_alloc_pages(mm, 0, 0);
    assert_non_null(one);
    assert_int_equal(h.n, before - 1);   /* asked for one page, gave one */
    void *block = kmm_alloc_pages(mm, 4, 0);
    assert_non_null(block);
    assert_true(h.n <= before - 1 - 16);
    void *exact = kmm_alloc_pages_exact(mm, 40 * PS, 0);   /* an exact run: take_run's path */
    assert_non_null(exact);
    assert_int_equal(kmm_check(mm), 0);

    kmm_unregister_shrinker(mm, &h.s);
    kmm_free_pages(mm, one);
    kmm_free_pages(mm, block);
    kmm_free_pages(mm, exact);
    release(mm, &rest);
    hoard_fini(&h);
    assert_int_equal(kmm_check(mm), 0);
    kmm_destroy(mm);
}

/* Three shrinkers, A (count 0), B (3 pages) and C (10 pages), on an
 * exhausted memory system. A failing single-page allocation asks A (count
 * only), then B for 1 page; C is not asked. kmm_shrink(mm, 5) asks B for
 * what it has left (2), then C for the 3 still missing. kmm_shrink(mm, 0)
 * asks each for everything. The listing follows, in order. */
static void test_order_amounts_and_stats(void **state)
{
    (void)state;
    struct kmm *mm = create();
    struct hoard a, b, c;
    hoard_init(&a, mm, 'A', 0);
    hoard_init(&b, mm, 'B', 3);
    hoard_init(&c, mm, 'C', 10);
    struct held rest;
    exhaust(mm, &rest);
    assert_int_equal(kmm_register_shrinker(mm, &a.s), 0);
    assert_int_equal(kmm_register_shrinker(mm, &b.s), 0);
    assert_int_equal(kmm_register_shrinker(mm, &c.s), 0);

    log_reset();
    void *p = kmm_alloc_pages(mm, 0, 0);
    assert_non_null(p);
    assert_string_equal(log_text(), "Ac0 Bc3 Bs1");

    log_reset();
    assert_int_equal(kmm_shrink(mm, 5), 5);
    assert_string_equal(log_text(), "Ac0 Bc2 Bs2 Cc10 Cs3");
    assert_int_equal(b.n, 0);
    assert_int_equal(c.n, 7);

    struct listing l;
    list(mm, &l);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.names[0], "hoard A");
    assert_string_equal(l.names[1], "hoard B");
    assert_string_equal(l.names[2], "hoard C");
    assert_int_equal(l.info[0].count, 0);
    assert_int_equal(l.info[0].scans, 0);   /* count 0: never scanned */
    assert_int_equal(l.info[1].count, 0);
    assert_int_equal(l.info[1].scans, 2);
    assert_int_equal(l.info[1].scanned, 3);
    assert_int_equal(l.info[2].count, 7);
    assert_int_equal(l.info[2].scans, 1);
    assert_int_equal(l.info[2].scanned, 3);

    /* B refilled from the 5 pages given back: everything from each */
    while (b.n < 3)
        assert_non_null(b.pages[b.n++] = kmm_alloc_pages(mm, 0, 0));
    log_reset();
    assert_int_equal(kmm_shrink(mm, 0), 10);
    assert_string_equal(log_text(), "Ac0 Bc3 Bs3 Cc7 Cs7");
    assert_int_equal(b.n + c.n, 0);
    kmm_free_pages(mm, p);

    kmm_unregister_shrinker(mm, &b.s);
    list(mm, &l);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.names[0], "hoard A");
    assert_string_equal(l.names[1], "hoard C");
    assert_int_equal(kmm_check(mm), 0);
    kmm_unregister_shrinker(mm, &a.s);
    kmm_unregister_shrinker(mm, &c.s);
    release(mm, &rest);
    hoard_fini(&a);
    hoard_fini(&b);
    hoard_fini(&c);
    kmm_destroy(mm);
}

/* A shrinker whose count lies (1, holding nothing) and whose scan
 * allocates on the exhausted memory system: the scan's allocation fails
 * without running the shrinkers again, so a failing allocation calls the
 * scan once per shrink stage (asked for what is missing, then for
 * everything), and no more. */
static struct {
    struct kmm *mm;
    unsigned counts, scans, inner_failed;
} greedy;

static size_t greedy_count(void *arg)
{
    (void)arg;
    greedy.counts++;
    return 1;
}

static size_t greedy_scan(void *arg, size_t nr)
{
    (void)arg, (void)nr;
    greedy.scans++;
    void *p = kmm_alloc_pages(greedy.mm, 0, 0);
    if (p)
        kmm_free_pages(greedy.mm, p);
    else
        greedy.inner_failed++;
    return 0;
}

static void test_no_recursion(void **state)
{
    (void)state;
    struct kmm *mm = create();
    struct held rest;
    exhaust(mm, &rest);
    greedy.mm = mm;
    struct kmm_shrinker s = { .count = greedy_count, .scan = greedy_scan, .name = "greedy" };
    assert_int_equal(kmm_register_shrinker(mm, &s), 0);
    assert_null(kmm_alloc_pages(mm, 0, 0));
    assert_int_equal(greedy.scans, 2);
    assert_int_equal(greedy.counts, 2);
    assert_int_equal(greedy.inner_failed, 2);
    assert_null(kmm_alloc_pages(mm, 5, 0));   /* take_run's path too */
    assert_int_equal(greedy.scans, 4);
    assert_int_equal(greedy.inner_failed, 4);
    kmm_unregister_shrinker(mm, &s);
    release(mm, &rest);
    assert_int_equal(kmm_check(mm), 0);
    kmm_destroy(mm);
}

/* Allocations made under a lock (KMM__NO_RECLAIM: metadata from the page
 * allocator) fail without asking the shrinkers. */
static void test_no_reclaim_skips_shrinkers(void **state)
{
    (void)state;
    struct kmm *mm = create();
    struct hoard h;
    hoard_init(&h, mm, 'H', 64);
    struct held rest;
    exhaust(mm, &rest);
    assert_int_equal(kmm_register_shrinker(mm, &h.s), 0);
    log_reset();
    assert_null(kmm_alloc_pages(mm, 0, KMM__NO_RECLAIM));
    assert_null(kmm_alloc_pages(mm, 6, KMM__NO_RECLAIM));
    assert_null(kmm_alloc_pages_exact(mm, 3 * PS, KMM__NO_RECLAIM));
    assert_int_equal(nr_calls, 0);
    assert_int_equal(h.n, 64);
    void *p = kmm_alloc_pages(mm, 0, 0);   /* without the flag, they are asked */
    assert_non_null(p);
    assert_int_equal(h.n, 63);
    kmm_free_pages(mm, p);
    kmm_unregister_shrinker(mm, &h.s);
    release(mm, &rest);
    hoard_fini(&h);
    kmm_destroy(mm);
}

/* Registering twice or without a callback is refused (EINVAL, reported);
 * a NULL name is listed as "(unnamed)". */
static void test_register_refused(void **state)
{
    (void)state;
    struct kmm *mm = create();
    struct hoard h;
    hoard_init(&h, mm, 'H', 0);
    h.s.name = NULL;
    assert_int_equal(kmm_register_shrinker(mm, &h.s), 0);
    struct kmm_test_capture cap;
    kmm_test_capture_begin(&cap);
    errno = 0;
    int twice = kmm_register_shrinker(mm, &h.s);
    int twice_errno = errno;
    struct kmm_shrinker no_scan = { .count = hoard_count, .arg = &h };
    int missing = kmm_register_shrinker(mm, &no_scan);
    int null = kmm_register_shrinker(mm, NULL);
    char *out = kmm_test_capture_end(&cap);
    assert_int_equal(twice, -KMM_EINVAL);
    assert_int_equal(twice_errno, EINVAL);
    assert_int_equal(missing, -KMM_EINVAL);
    assert_int_equal(null, -KMM_EINVAL);
    assert_non_null(strstr(out, "kmm_register_shrinker: shrinker already registered"));
    assert_non_null(strstr(out, "kmm_register_shrinker: a shrinker needs its count and scan callbacks"));
    free(out);
    struct listing l;
    list(mm, &l);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.names[0], "(unnamed)");
    assert_int_equal(kmm_check(mm), 0);
    kmm_unregister_shrinker(mm, &h.s);
    hoard_fini(&h);
    kmm_destroy(mm);
}

/* kmm_shrinker_for_each's fn runs with no shrinker pinned: it may
 * unregister the one it was given, and the walk goes on to the next. */
struct unregistering {
    struct kmm *mm;
    struct hoard *h[3];
    unsigned seen;
};

static void unregister_listed(void *arg, const struct kmm_shrinker_info *info)
{
    struct unregistering *u = arg;
    assert_true(u->seen < 3);
    assert_string_equal(info->name, u->h[u->seen]->name);
    kmm_unregister_shrinker(u->mm, &u->h[u->seen]->s);
    u->seen++;
}

static void test_for_each_may_unregister(void **state)
{
    (void)state;
    struct kmm *mm = create();
    struct hoard a, b, c;
    hoard_init(&a, mm, 'A', 1);
    hoard_init(&b, mm, 'B', 2);
    hoard_init(&c, mm, 'C', 3);
    assert_int_equal(kmm_register_shrinker(mm, &a.s), 0);
    assert_int_equal(kmm_register_shrinker(mm, &b.s), 0);
    assert_int_equal(kmm_register_shrinker(mm, &c.s), 0);
    struct unregistering u = { mm, { &a, &b, &c }, 0 };
    kmm_shrinker_for_each(mm, unregister_listed, &u);
    assert_int_equal(u.seen, 3);
    struct listing l;
    list(mm, &l);
    assert_int_equal(l.n, 0);
    assert_int_equal(kmm_shrink(mm, 0), 0);
    assert_int_equal(kmm_check(mm), 0);
    hoard_fini(&a);
    hoard_fini(&b);
    hoard_fini(&c);
    kmm_destroy(mm);
}

/* ---- deaths ---------------------------------------------------------------------- */

static void unregister_unknown(void *arg)
{
    (void)arg;
    struct kmm *mm = create();
    struct hoard h;
    hoard_init(&h, mm, 'H', 0);
    if (kmm_register_shrinker(mm, &h.s) != 0)
        exit(3);
    kmm_unregister_shrinker(mm, &h.s);
    kmm_unregister_shrinker(mm, &h.s);   /* no longer registered */
}

static struct kmm_shrinker self_unregistering;
static struct kmm *self_mm;
static size_t self_count(void *arg)
{
    (void)arg;
    return 1;
}
static size_t self_scan(void *arg, size_t nr)
{
    (void)arg, (void)nr;
    kmm_unregister_shrinker(self_mm, &self_unregistering);
    return 0;
}

static void unregister_from_callback(void *arg)
{
    (void)arg;
    self_mm = create();
    self_unregistering = (struct kmm_shrinker){ .count = self_count, .scan = self_scan, .name = "self" };
    if (kmm_register_shrinker(self_mm, &self_unregistering) != 0)
        exit(3);
    kmm_shrink(self_mm, 0);
}

static void test_unregister_misuse_aborts(void **state)
{
    (void)state;
    assert_int_equal(kmm_test_expect_abort(unregister_unknown, NULL,
                                           "kmm_unregister_shrinker: not a registered shrinker: 0x"), 0);
    assert_int_equal(kmm_test_expect_abort(unregister_from_callback, NULL,
                                           "kmm_unregister_shrinker: called from a shrinker callback"), 0);
}

/* ---- a scan that blocks until the test lets it go ------------------------------------ */

struct blocker {
    struct kmm_shrinker s;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool entered, released, finished;
};

static size_t blocker_count(void *arg)
{
    (void)arg;
    return 1;
}

static size_t blocker_scan(void *arg, size_t nr)
{
    (void)nr;
    struct blocker *b = arg;
    pthread_mutex_lock(&b->mu);
    if (b->entered) {   /* only the first scan blocks */
        pthread_mutex_unlock(&b->mu);
        return 0;
    }
    b->entered = true;
    pthread_cond_broadcast(&b->cv);
    while (!b->released)
        pthread_cond_wait(&b->cv, &b->mu);
    b->finished = true;
    pthread_mutex_unlock(&b->mu);
    return 0;
}

static void blocker_init(struct blocker *b)
{
    memset(b, 0, sizeof(*b));
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->s = (struct kmm_shrinker){ .count = blocker_count, .scan = blocker_scan, .arg = b, .name = "blocker" };
}

static void blocker_wait_entered(struct blocker *b)
{
    pthread_mutex_lock(&b->mu);
    while (!b->entered)
        pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
}

static void blocker_release(struct blocker *b)
{
    pthread_mutex_lock(&b->mu);
    b->released = true;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

struct shrink_call {
    struct kmm *mm;
    struct kmm_shrinker *s;
    struct blocker *b;
    bool finished_at_return;   /* unregister: the scan had finished when it returned */
    int done;                  /* atomic */
};

static void *run_shrink(void *arg)
{
    struct shrink_call *c = arg;
    kmm_shrink(c->mm, 0);
    return NULL;
}

static void *run_unregister(void *arg)
{
    struct shrink_call *c = arg;
    kmm_unregister_shrinker(c->mm, c->s);
    pthread_mutex_lock(&c->b->mu);
    c->finished_at_return = c->b->finished;
    pthread_mutex_unlock(&c->b->mu);
    __atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* One thread's kmm_shrink blocks in the blocker's scan; another thread's
 * unregister of the blocker does not return before the scan ends. A
 * shrinker registered after the blocker still runs meanwhile (the registry
 * lock is not held across a callback). */
static void test_unregister_waits_for_scan(void **state)
{
    (void)state;
    struct kmm *mm = create();
    struct blocker b;
    blocker_init(&b);
    struct hoard h;
    hoard_init(&h, mm, 'H', 4);
    assert_int_equal(kmm_register_shrinker(mm, &b.s), 0);
    assert_int_equal(kmm_register_shrinker(mm, &h.s), 0);
    struct shrink_call c = { .mm = mm, .s = &b.s, .b = &b };
    pthread_t shrinker, unregisterer;
    assert_int_equal(pthread_create(&shrinker, NULL, run_shrink, &c), 0);
    blocker_wait_entered(&b);
    assert_int_equal(kmm_shrink(mm, 2), 2);   /* the blocker runs here too, and gives nothing ... */
    assert_int_equal(h.n, 2);                  /* ... and the hoard, after it, gives back */
    assert_int_equal(pthread_create(&unregisterer, NULL, run_unregister, &c), 0);
    usleep(50 * 1000);   /* room to return too early: it must not */
    assert_int_equal(__atomic_load_n(&c.done, __ATOMIC_ACQUIRE), 0);
    blocker_release(&b);
    assert_int_equal(pthread_join(unregisterer, NULL), 0);
    assert_int_equal(pthread_join(shrinker, NULL), 0);
    assert_true(c.finished_at_return);
    struct listing l;
    list(mm, &l);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.names[0], "hoard H");
    kmm_unregister_shrinker(mm, &h.s);
    hoard_fini(&h);
    assert_int_equal(kmm_check(mm), 0);
    kmm_destroy(mm);
}

/* ---- zsmalloc ------------------------------------------------------------------------ */

struct find {
    const char *name;
    struct kmm_shrinker_info info;
    bool found;
};

static void find_one(void *arg, const struct kmm_shrinker_info *info)
{
    struct find *f = arg;
    if (strcmp(info->name, f->name) == 0) {
        f->info = *info;
        f->found = true;
    }
}

/* A pool fills memory, then every other object is freed: half its pages
 * could come back. The pool's shrinker says so, and single-page
 * allocations on the exhausted memory system get them, by compaction. */
static void test_zsmalloc_pool_compacted(void **state)
{
    (void)state;
    struct kmm *mm = create();
    struct kmm_zspool *pool = kmm_zs_create(mm, "frag");
    assert_non_null(pool);
    size_t cap = MEM / 1000, n = 0;
    uint64_t *hd = calloc(cap, sizeof(*hd));
    unsigned char buf[1500];
    while (n < cap) {
        size_t len = 1000 + n % 500;
        uint64_t x = kmm_zs_malloc(pool, len, 0);
        if (!x)
            break;
        memset(buf, (int)(n & 0xff), len);
        assert_int_equal(kmm_zs_write(pool, x, 0, buf, len), 0);
        hd[n++] = x;
    }
    assert_true(n > 1000 && n < cap);
    for (size_t i = 0; i < n; i += 2)
        kmm_zs_free(pool, hd[i]);
    struct kmm_zs_stats before, after;
    kmm_zs_stats(pool, &before);
    assert_int_equal(before.pages_compacted, 0);
    struct find f = { .name = "zsmalloc frag" };
    kmm_shrinker_for_each(mm, find_one, &f);
    assert_true(f.found);
    assert_true(f.info.count > before.pages_used / 3);   /* about half could come back */
    uint64_t scans_before = f.info.scans;   /* the fill's last, failing, allocation may have run it */

    struct held got;
    exhaust(mm, &got);
    kmm_zs_stats(pool, &after);
    assert_true(after.pages_compacted > before.pages_used / 3);
    assert_true(got.n >= after.pages_compacted / 2);
    f.found = false;
    kmm_shrinker_for_each(mm, find_one, &f);
    assert_true(f.found);
    assert_true(f.info.scans > scans_before);
    assert_true(f.info.scanned >= after.pages_compacted / 2);
    assert_true(f.info.count < before.pages_used / 10);   /* little left to give */
    for (size_t i = 1; i < n; i += 2) {
        size_t len = 1000 + i % 500;
        assert_int_equal(kmm_zs_read(pool, hd[i], 0, buf, len), 0);
        for (size_t j = 0; j < len; j++)
            assert_int_equal(buf[j], i & 0xff);
    }
    assert_int_equal(kmm_check(mm), 0);
    release(mm, &got);
    kmm_zs_destroy(pool);
    f.found = false;
    kmm_shrinker_for_each(mm, find_one, &f);
    assert_false(f.found);   /* unregistered with the pool */
    free(hd);
    kmm_destroy(mm);
}

/* A scan bounded by nr_to_scan: a shrink asking for 3 pages gets about 3
 * (a zspage's worth at most more), not the whole pool's spare pages. */
static void test_zsmalloc_scan_bounded(void **state)
{
    (void)state;
    struct kmm *mm = create();
    struct kmm_zspool *pool = kmm_zs_create(mm, "bounded");
    assert_non_null(pool);
    enum { N = 4000 };
    uint64_t *hd = calloc(N, sizeof(*hd));
    for (size_t i = 0; i < N; i++)
        assert_true((hd[i] = kmm_zs_malloc(pool, 700, 0)) != 0);
    for (size_t i = 0; i < N; i += 2)
        kmm_zs_free(pool, hd[i]);
    struct find f = { .name = "zsmalloc bounded" };
    kmm_shrinker_for_each(mm, find_one, &f);
    assert_true(f.info.count > 100);
    size_t got = kmm_shrink(mm, 3);
    assert_true(got >= 3);
    assert_true(got <= 3 + ZSPAGE_MAX_PAGES);
    struct kmm_zs_stats st;
    kmm_zs_stats(pool, &st);
    assert_true(st.pages_compacted <= 3 + ZSPAGE_MAX_PAGES);
    size_t all = kmm_shrink(mm, 0);
    assert_true(all + got > f.info.count / 2);
    assert_int_equal(kmm_check(mm), 0);
    for (size_t i = 1; i < N; i += 2)
        kmm_zs_free(pool, hd[i]);
    free(hd);
    kmm_zs_destroy(pool);
    kmm_destroy(mm);
}

/* ---- fork ------------------------------------------------------------------------------ */

struct fork_case {
    struct kmm *mm;
    struct blocker *b;
};

/* In the child: the blocker, pinned by a parent thread that is not here,
 * can be unregistered; a hoard registered here gives back when asked. */
static void child_shrinkers(void *arg)
{
    struct fork_case *fc = arg;
    alarm(20);   /* a pin left from the parent would make unregister wait for ever */
    kmm_unregister_shrinker(fc->mm, &fc->b->s);
    struct hoard h;
    hoard_init(&h, fc->mm, 'K', 8);
    if (h.n != 8 || kmm_register_shrinker(fc->mm, &h.s) != 0)
        _exit(3);
    size_t got = kmm_shrink(fc->mm, 5);
    kmm_unregister_shrinker(fc->mm, &h.s);
    if (got != 5 || h.n != 3 || kmm_check(fc->mm) != 0)
        _exit(4);
    hoard_fini(&h);
    fprintf(stderr, "child shrinkers ok\n");
}

static void test_fork(void **state)
{
    (void)state;
    struct kmm *mm = create();
    struct blocker b;
    blocker_init(&b);
    assert_int_equal(kmm_register_shrinker(mm, &b.s), 0);
    struct shrink_call c = { .mm = mm, .s = &b.s, .b = &b };
    pthread_t shrinker;
    assert_int_equal(pthread_create(&shrinker, NULL, run_shrink, &c), 0);
    blocker_wait_entered(&b);
    struct fork_case fc = { mm, &b };
    char out[4096];
    int status = kmm_test_run_child(child_shrinkers, &fc, out, sizeof(out));
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0 && strstr(out, "child shrinkers ok")))
        kmm_test_describe_child(status, out);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_non_null(strstr(out, "child shrinkers ok"));
    blocker_release(&b);
    assert_int_equal(pthread_join(shrinker, NULL), 0);
    kmm_unregister_shrinker(mm, &b.s);
    assert_int_equal(kmm_check(mm), 0);
    kmm_destroy(mm);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allocation_succeeds_after_shrink),
        cmocka_unit_test(test_order_amounts_and_stats),
        cmocka_unit_test(test_no_recursion),
        cmocka_unit_test(test_no_reclaim_skips_shrinkers),
        cmocka_unit_test(test_register_refused),
        cmocka_unit_test(test_for_each_may_unregister),
        cmocka_unit_test(test_unregister_misuse_aborts),
        cmocka_unit_test(test_unregister_waits_for_scan),
        cmocka_unit_test(test_zsmalloc_pool_compacted),
        cmocka_unit_test(test_zsmalloc_scan_bounded),
        cmocka_unit_test(test_fork),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
