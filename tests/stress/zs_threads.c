/* zs_threads.c - one zsmalloc pool used by several threads while another compacts it.
 *
 * 2 and then 4 worker threads share a pool (4 KiB pages, the default layout;
 * then 16 KiB pages with 4-page zspages) and each runs a seeded random mix of
 * operations on objects of its own: kmm_zs_malloc of sizes like compressed
 * pages (KMM_ZERO sometimes), kmm_zs_write and kmm_zs_read of random ranges,
 * kmm_zs_map in each mode (RO: checked; WO: overwritten whole; RW: checked
 * and a range changed in place), up to three objects mapped at once,
 * kmm_zs_free, and now and then freeing half of its objects and then
 * allocating nothing for 300 operations, so that zspages go sparse and stay
 * so long enough for the compactor. Most sizes fall in a few classes, so
 * that a class holds several zspages. Meanwhile a compactor thread calls kmm_zs_compact in a
 * loop (and reads kmm_zs_stats and kmm_zs_class_stats), so objects move
 * under the workers between their calls; the pool's pages are also what
 * the workers' maps point into.
 *
 * Checked:
 *  - each worker keeps its objects' contents in a plain copy: every read,
 *    every RO / RW mapping, and the whole object before every free show
 *    those bytes, KMM_ZERO objects read as zeros; no call fails (1 GiB of
 *    memory: nothing runs out); a new handle is not one of the thread's
 *    live ones;
 *  - the stats read while the threads work are sane (pages_used <=
 *    pages_max, objects <= the objects the workers may hold);
 *  - after the threads are joined: kmm_check passes, every object reads
 *    back whole, kmm_zs_stats counts the objects the workers hold; once all
 *    are freed no page is left, and kmm_zs_destroy gives every page back;
 *    the compactor did free pages.
 *
 * Then 5 threads each want KMM_ZS_MAP_NEST mappings at once, more than
 * the pool's KMM_ZS_MAP_SLOTS, and nested mappings are served to one
 * thread at a time: the maps that wait get their slot, and the objects
 * keep their bytes.
 *
 * Clean under TSan (make sanitize-thread). KMM_SEED repeats the seeds (the
 * interleaving is the scheduler's); KMM_THREADS_OPS sets the operations per
 * worker (default 20000; 4000 under a sanitizer).
 */
#include "kmm_test.h"

#include <kmm.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_WORKERS 4
#define MAX_OWN     400

static uint64_t g_seed;
static const char *g_phase = "";

static void fail_head(FILE *f)
{
    fprintf(f, "zs_threads FAILED (seed %llu, %s): ", (unsigned long long)g_seed, g_phase);
}

#define fail(...) kmm_test_fail(__VA_ARGS__)

struct obj {
    uint64_t h;
    size_t usable, known;
    unsigned char *bytes;
};

struct shared {
    struct kmm *mm;
    struct kmm_zspool *pool;
    size_t ps;
    atomic_uint running;         /* workers not yet done */
    atomic_size_t compacted;     /* pages the compactor freed */
    atomic_ulong compactions;
    unsigned nworkers;
};

struct worker {
    struct shared *s;
    unsigned id;
    uint64_t rng;
    unsigned long ops;
    unsigned long quiet;         /* operations left with no kmm_zs_malloc: the compactor's turn */
    struct obj own[MAX_OWN];
    size_t n;
    unsigned char *scratch;
};

static void compare(const struct worker *w, const struct obj *o, const unsigned char *got, size_t from, size_t to,
                    const char *how)
{
    if (memcmp(got, o->bytes + from, to - from) == 0)
        return;
    for (size_t i = from; i < to; i++)
        if (got[i - from] != o->bytes[i])
            fail("worker %u: %s of handle %#llx (usable %zu): byte %zu is %#x, expected %#x", w->id, how,
                 (unsigned long long)o->h, o->usable, i, got[i - from], o->bytes[i]);
}

static void verify_whole(struct worker *w, const struct obj *o, const char *how)
{
    if (kmm_zs_read(w->s->pool, o->h, 0, w->scratch, o->known) != 0)
        fail("worker %u: kmm_zs_read failed", w->id);
    compare(w, o, w->scratch, 0, o->known, how);
}

/* Sizes like compressed pages, drawn from a handful of classes so that
 * each class holds several zspages (what compaction works on), plus some
 * tiny and some of any size. */
static size_t random_size(struct worker *w)
{
    size_t ps = w->s->ps;
    uint64_t r = kmm_test_below(&w->rng, 100);
    if (r < 10)
        return 1 + kmm_test_below(&w->rng, 64);
    if (r < 85)
        return ps / 4 + ps / 16 * kmm_test_below(&w->rng, 8) + kmm_test_below(&w->rng, 16);
    if (r < 97)
        return 1 + kmm_test_below(&w->rng, ps);
    return ps;
}

static void random_bytes(struct worker *w, unsigned char *dst, size_t len)
{
    kmm_test_span_io(dst, kmm_test_rand(&w->rng), 0, len, true);
}

static void do_malloc(struct worker *w)
{
    if (w->n == MAX_OWN)
        return;
    size_t size = random_size(w);
    bool zero = kmm_test_below(&w->rng, 8) == 0;
    uint64_t h = kmm_zs_malloc(w->s->pool, size, zero ? KMM_ZERO : 0);
    if (!h)
        fail("worker %u: kmm_zs_malloc(%zu) failed (errno %d)", w->id, size, errno);
    for (size_t i = 0; i < w->n; i++)
        if (w->own[i].h == h)
            fail("worker %u: kmm_zs_malloc gave live handle %#llx", w->id, (unsigned long long)h);
    struct obj *o = &w->own[w->n++];
    o->h = h;
    o->usable = kmm_zs_usable_size(w->s->pool, h);
    if (o->usable < size)
        fail("worker %u: usable size %zu < %zu", w->id, o->usable, size);
    o->bytes = malloc(o->usable);
    if (!o->bytes)
        fail("out of memory");
    if (zero) {
        memset(o->bytes, 0, o->usable);
        o->known = o->usable;
        verify_whole(w, o, "a KMM_ZERO object");
        return;
    }
    random_bytes(w, o->bytes, size);
    o->known = size;
    if (kmm_test_below(&w->rng, 2)) {
        if (kmm_zs_write(w->s->pool, h, 0, o->bytes, size) != 0)
            fail("worker %u: kmm_zs_write failed", w->id);
    } else {
        unsigned char *p = kmm_zs_map(w->s->pool, h, KMM_ZS_WO);
        memcpy(p, o->bytes, size);
        kmm_zs_unmap(w->s->pool, h);
    }
}

static void drop(struct worker *w, size_t i)
{
    verify_whole(w, &w->own[i], "before kmm_zs_free");
    kmm_zs_free(w->s->pool, w->own[i].h);
    free(w->own[i].bytes);
    w->own[i] = w->own[--w->n];
}

static void do_write(struct worker *w, struct obj *o)
{
    size_t off = kmm_test_below(&w->rng, o->known + 1);
    if (off == o->usable)
        off--;
    size_t len = 1 + kmm_test_below(&w->rng, o->usable - off);
    random_bytes(w, w->scratch, len);
    if (kmm_zs_write(w->s->pool, o->h, off, w->scratch, len) != 0)
        fail("worker %u: kmm_zs_write failed", w->id);
    memcpy(o->bytes + off, w->scratch, len);
    if (off + len > o->known)
        o->known = off + len;
}

static void do_read(struct worker *w, struct obj *o)
{
    if (!o->known)
        return;
    size_t off = kmm_test_below(&w->rng, o->known);
    size_t len = 1 + kmm_test_below(&w->rng, o->known - off);
    if (kmm_zs_read(w->s->pool, o->h, off, w->scratch, len) != 0)
        fail("worker %u: kmm_zs_read failed", w->id);
    compare(w, o, w->scratch, off, off + len, "kmm_zs_read");
}

static void do_maps(struct worker *w)
{
    size_t want = 1 + kmm_test_below(&w->rng, 3), idx[3], got = 0;
    for (size_t k = 0; k < want && w->n; k++) {
        size_t i = kmm_test_below(&w->rng, w->n);
        bool dup = false;
        for (size_t j = 0; j < got; j++)
            dup |= idx[j] == i;
        if (dup)
            continue;
        struct obj *o = &w->own[i];
        uint64_t r = kmm_test_below(&w->rng, 3);
        int mode = r == 0 ? KMM_ZS_RO : r == 1 ? KMM_ZS_WO : KMM_ZS_RW;
        unsigned char *p = kmm_zs_map(w->s->pool, o->h, mode);
        if (mode != KMM_ZS_WO)
            compare(w, o, p, 0, o->known, mode == KMM_ZS_RO ? "kmm_zs_map(RO)" : "kmm_zs_map(RW)");
        if (mode == KMM_ZS_WO) {
            random_bytes(w, o->bytes, o->usable);
            memcpy(p, o->bytes, o->usable);
            o->known = o->usable;
        } else if (mode == KMM_ZS_RW) {
            size_t off = kmm_test_below(&w->rng, o->known + 1);
            if (off == o->usable)
                off--;
            size_t len = 1 + kmm_test_below(&w->rng, o->usable - off);
            random_bytes(w, o->bytes + off, len);
            memcpy(p + off, o->bytes + off, len);
            if (off + len > o->known)
                o->known = off + len;
        }
        idx[got++] = i;
    }
    while (got)   /* not in the order mapped */
        kmm_zs_unmap(w->s->pool, w->own[idx[--got]].h);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    w->scratch = malloc(w->s->ps);
    if (!w->scratch)
        fail("out of memory");
    for (unsigned long op = 0; op < w->ops; op++) {
        uint64_t r = kmm_test_below(&w->rng, 1000);
        struct obj *o = w->n ? &w->own[kmm_test_below(&w->rng, w->n)] : NULL;
        if (w->quiet)
            w->quiet--;
        if (r < 300 || !o) {
            if (!w->quiet || !o)
                do_malloc(w);
        } else if (r < 400) {
            drop(w, (size_t)(o - w->own));
        } else if (r < 560) {
            do_write(w, o);
        } else if (r < 720) {
            do_read(w, o);
        } else if (r < 999 || kmm_test_below(&w->rng, 2)) {
            do_maps(w);
        } else {
            /* half: sparse zspages, left for the compactor for a while */
            for (size_t i = w->n; i-- > 0;)
                if (kmm_test_below(&w->rng, 2))
                    drop(w, i);
            w->quiet = 300;
        }
    }
    atomic_fetch_sub(&w->s->running, 1);
    return NULL;
}

static void *compactor_main(void *arg)
{
    struct shared *s = arg;
    size_t ncl = kmm_zs_class_stats(s->pool, NULL, 0);
    struct kmm_zs_class_stats *cl = calloc(ncl, sizeof *cl);
    if (!cl)
        fail("out of memory");
    while (atomic_load(&s->running)) {
        atomic_fetch_add(&s->compacted, kmm_zs_compact(s->pool));
        atomic_fetch_add(&s->compactions, 1);
        struct kmm_zs_stats st;
        kmm_zs_stats(s->pool, &st);
        if (st.pages_used > st.pages_max || st.objects > (size_t)s->nworkers * MAX_OWN)
            fail("stats while working: %zu pages used, %zu most, %zu objects", st.pages_used, st.pages_max, st.objects);
        kmm_zs_class_stats(s->pool, cl, ncl);
        for (size_t i = 0; i < ncl; i++)
            if (cl[i].pages > cl[i].zspages * cl[i].pages_per_zspage)
                fail("class %zu: %zu pages in %zu zspages of %zu", cl[i].size, cl[i].pages, cl[i].zspages,
                     cl[i].pages_per_zspage);
    }
    free(cl);
    return NULL;
}

static void run(unsigned nworkers, size_t ps, const struct kmm_zs_config *cfg, unsigned long ops, uint64_t seed)
{
    static char phase[96];
    snprintf(phase, sizeof phase, "%u workers, %zu KiB pages%s", nworkers, ps >> 10, cfg ? ", 4-page zspages" : "");
    g_phase = phase;
    struct shared s = { .ps = ps, .nworkers = nworkers };
    s.mm = kmm_test_create(ps, 1ull << 30);
    kmm_drain(s.mm);
    struct kmm_page_stats ps0, ps1;
    kmm_page_stats(s.mm, &ps0);
    s.pool = kmm_zs_create_config(s.mm, "threads", cfg);
    if (!s.pool)
        fail("kmm_zs_create failed");
    atomic_init(&s.running, nworkers);
    struct worker *w = calloc(nworkers, sizeof *w);
    if (!w)
        fail("out of memory");
    for (unsigned i = 0; i < nworkers; i++) {
        w[i].s = &s;
        w[i].id = i;
        w[i].rng = kmm_test_mix64(seed + i) | 1;
        w[i].ops = ops;
    }
    pthread_t th[MAX_WORKERS], compactor;
    if (pthread_create(&compactor, NULL, compactor_main, &s) != 0)
        fail("pthread_create failed");
    kmm_test_start_threads(th, nworkers, worker_main, w, sizeof *w);
    kmm_test_join_threads(th, nworkers);
    pthread_join(compactor, NULL);

    if (kmm_check(s.mm) != 0)
        fail("kmm_check after the threads");
    size_t held = 0;
    for (unsigned i = 0; i < nworkers; i++) {
        held += w[i].n;
        for (size_t j = 0; j < w[i].n; j++)
            verify_whole(&w[i], &w[i].own[j], "after the threads");
    }
    struct kmm_zs_stats st;
    kmm_zs_stats(s.pool, &st);
    if (st.objects != held)
        fail("the pool counts %zu objects, the workers hold %zu", st.objects, held);
    size_t freed_at_end = kmm_zs_compact(s.pool);
    for (unsigned i = 0; i < nworkers; i++) {
        while (w[i].n)
            drop(&w[i], w[i].n - 1);
        free(w[i].scratch);
    }
    kmm_zs_stats(s.pool, &st);
    if (st.objects || st.pages_used || st.zspages)
        fail("empty pool: %zu objects, %zu pages, %zu zspages", st.objects, st.pages_used, st.zspages);
    if (kmm_check(s.mm) != 0)
        fail("kmm_check after freeing everything");
    printf("  %-40s %lu ops each, %lu compactions freed %zu pages (%zu more at the end), at most %zu pages\n", phase,
           ops, atomic_load(&s.compactions), atomic_load(&s.compacted), freed_at_end, st.pages_max);
    if (atomic_load(&s.compacted) + freed_at_end == 0)
        fail("compaction never freed a page");
    kmm_zs_destroy(s.pool);
    kmm_drain(s.mm);
    kmm_page_stats(s.mm, &ps1);
    if (ps1.free_pages != ps0.free_pages)
        fail("%zu free pages after kmm_zs_destroy, %zu before", ps1.free_pages, ps0.free_pages);
    kmm_destroy(s.mm);
    free(w);
}

/* ---- the map slots under pressure -------------------------------------------------- */

/* 5 threads each want KMM_ZS_MAP_NEST mappings at once, 20 in all, more
 * than the pool's KMM_ZS_MAP_SLOTS; and the pool serves nested mappings to
 * one thread at a time (kmm/zsmalloc.h), so most nested kmm_zs_map calls
 * wait. None waits for good: a thread holding mappings waits for nothing
 * but the pool, as the header requires, and every object keeps its bytes. */
#define SLOT_THREADS 5

struct slot_worker {
    struct kmm_zspool *pool;
    unsigned id;
    unsigned long rounds;
    uint64_t h[KMM_ZS_MAP_NEST];
    size_t size[KMM_ZS_MAP_NEST];
};

static void *slot_worker_main(void *arg)
{
    struct slot_worker *w = arg;
    for (unsigned long r = 0; r < w->rounds; r++) {
        unsigned char *p[KMM_ZS_MAP_NEST];
        for (unsigned i = 0; i < KMM_ZS_MAP_NEST; i++) {
            p[i] = kmm_zs_map(w->pool, w->h[i], i & 1 ? KMM_ZS_RW : KMM_ZS_RO);
            uint64_t key = (uint64_t)w->id << 32 | i;
            size_t bad = kmm_test_span_io(p[i], key, 0, w->size[i], false);
            if (bad != SIZE_MAX)
                fail("slot worker %u: object %u: byte %zu changed", w->id, i, bad);
        }
        for (unsigned i = KMM_ZS_MAP_NEST; i-- > 0;)
            kmm_zs_unmap(w->pool, w->h[i]);
    }
    return NULL;
}

static void run_slot_pressure(unsigned long rounds)
{
    g_phase = "map slots under pressure";
    struct kmm *mm = kmm_test_create(4096, 1ull << 30);
    struct kmm_zspool *pool = kmm_zs_create(mm, "slots");
    if (!pool)
        fail("kmm_zs_create failed");
    struct slot_worker w[SLOT_THREADS];
    unsigned char buf[4096];
    for (unsigned t = 0; t < SLOT_THREADS; t++) {
        w[t] = (struct slot_worker){ .pool = pool, .id = t, .rounds = rounds };
        for (unsigned i = 0; i < KMM_ZS_MAP_NEST; i++) {
            w[t].size[i] = 1500 + 700 * i;   /* most span two pages */
            w[t].h[i] = kmm_zs_malloc(pool, w[t].size[i], 0);
            if (!w[t].h[i])
                fail("kmm_zs_malloc failed");
            kmm_test_span_io(buf, (uint64_t)t << 32 | i, 0, w[t].size[i], true);
            if (kmm_zs_write(pool, w[t].h[i], 0, buf, w[t].size[i]) != 0)
                fail("kmm_zs_write failed");
        }
    }
    pthread_t th[SLOT_THREADS];
    kmm_test_start_threads(th, SLOT_THREADS, slot_worker_main, w, sizeof w[0]);
    kmm_test_join_threads(th, SLOT_THREADS);
    if (kmm_check(mm) != 0)
        fail("kmm_check after the slot workers");
    kmm_zs_destroy(pool);
    kmm_destroy(mm);
    printf("  %-40s %u threads x %lu rounds of %u nested maps\n", g_phase, SLOT_THREADS, rounds, KMM_ZS_MAP_NEST);
}

int main(void)
{
    kmm_test_on_fail(fail_head, NULL, false);
    g_seed = kmm_test_seed("zs_threads");
    const char *env = getenv("KMM_THREADS_OPS");
    unsigned long ops = env ? strtoul(env, NULL, 0) : KMM_TEST_SANITIZER ? 4000 : 20000;
    static const struct kmm_zs_config four_pages = { 16, 4 };
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t s = g_seed;
    run(2, 4096, NULL, ops, kmm_test_rand(&s));
    run(4, 4096, NULL, ops, kmm_test_rand(&s));
    run(3, 16384, &four_pages, ops / 2, kmm_test_rand(&s));
    run_slot_pressure(ops / 4);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("zs_threads: OK, %.1f s\n", (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
