/* shrink_threads.c - failing allocations running shrinkers while other
 * threads register, unregister and free.
 *
 * One 8 MiB memory system (4 KiB pages), and:
 *  - 2 allocators: rounds of blocks of random order 0..3 taken until the
 *    page allocator says no, each block stamped with its owner and index,
 *    then checked and freed;
 *  - 2 registrars: a hoard (a shrinker holding 1..200 single pages it took
 *    itself, freeing them in scan) on the registrar's stack, registered
 *    until an allocator has failed twice since (so that a whole failing
 *    allocation ran with it registered), or the allocators are done, then
 *    unregistered and its rest freed; now and then kmm_shrink and
 *    kmm_shrinker_for_each as well;
 *  - 1 pool cycler: a zsmalloc pool made, filled, half freed (sparse: its
 *    shrinker can compact it) and destroyed, over and over, so that pools
 *    register and unregister while failing allocations compact them.
 *
 * Checked: stamps intact at every free (no page handed out twice, no page
 * a shrinker freed still held); a hoard's pages all accounted for (taken =
 * given back in scans + freed at the end); after a hoard is unregistered
 * no callback of it runs (it lives on its registrar's stack: ASan would see
 * the use after its scope, and each callback checks the hoard is live);
 * the hoards were scanned; after the threads are joined, kmm_check passes
 * and, drained, no page is held.
 *
 * Clean under TSan (make sanitize-thread). KMM_SEED repeats the seeds (the
 * interleaving is the scheduler's); KMM_THREADS_OPS sets the allocator
 * rounds (default 1000; 150 under a sanitizer); the allocators go on until
 * the registrars made a quarter as many hoards. */
#include "kmm_test.h"

#include <kmm.h>
#include <kmm/unmapped.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MEM         (8ull << 20)
#define PS          ((size_t)4096)
#define ALLOCATORS  2
#define REGISTRARS  2
#define HOARD_MAX   200
#define HOARD_LIVE  0x686f617264ull   /* "hoard" */

static uint64_t g_seed;
static struct kmm *g_mm;
static atomic_bool g_stop;                        /* the allocators are done */
static atomic_ulong g_failures[ALLOCATORS];       /* failed allocations, per allocator */
static atomic_ulong g_scanned;                    /* pages hoards gave back in scans */
static atomic_uint g_waited;                      /* hoards registered across a whole failing allocation */
static atomic_uint g_cycles;                      /* hoards registered and unregistered */
static unsigned g_min_cycles;                     /* the allocators go on until there were this many */

static void fail_head(FILE *f)
{
    fprintf(f, "shrink_threads FAILED (seed %llu): ", (unsigned long long)g_seed);
}
#define fail(...) kmm_test_fail(__VA_ARGS__)

/* ---- hoards -------------------------------------------------------------------- */

struct hoard {
    struct kmm_shrinker s;
    uint64_t live;                   /* HOARD_LIVE while registered */
    pthread_mutex_t mu;
    void *pages[HOARD_MAX];
    size_t n, taken, given;
};

static size_t hoard_count(void *arg)
{
    struct hoard *h = arg;
    pthread_mutex_lock(&h->mu);
    if (h->live != HOARD_LIVE)
        fail("count of a hoard that is not registered");
    size_t n = h->n;
    pthread_mutex_unlock(&h->mu);
    return n;
}

static size_t hoard_scan(void *arg, size_t nr)
{
    struct hoard *h = arg;
    size_t freed = 0;
    pthread_mutex_lock(&h->mu);
    if (h->live != HOARD_LIVE)
        fail("scan of a hoard that is not registered");
    while (freed < nr && h->n) {
        kmm_free_pages(g_mm, h->pages[--h->n]);
        freed++;
    }
    h->given += freed;
    pthread_mutex_unlock(&h->mu);
    atomic_fetch_add(&g_scanned, freed);
    return freed;
}

static void count_listed(void *arg, const struct kmm_shrinker_info *info)
{
    if (!info->name)
        fail("a shrinker listed without a name");
    (*(unsigned *)arg)++;
}

struct registrar {
    unsigned idx;
    uint64_t rng;
    unsigned cycles;
};

static bool failed_twice_since(const unsigned long *since)
{
    for (unsigned i = 0; i < ALLOCATORS; i++)
        if (atomic_load(&g_failures[i]) >= since[i] + 2)
            return true;
    return false;
}

static void hoard_cycle(struct registrar *r)
{
    struct hoard h;   /* on this stack: gone once unregistered */
    memset(&h, 0, sizeof(h));
    pthread_mutex_init(&h.mu, NULL);
    h.s = (struct kmm_shrinker){ .count = hoard_count, .scan = hoard_scan, .arg = &h,
                                 .name = r->idx ? "hoard 1" : "hoard 0" };
    size_t want = 1 + (size_t)kmm_test_below(&r->rng, HOARD_MAX);
    while (h.n < want) {   /* outside the hoard's lock: this may run shrinkers */
        void *p = kmm_alloc_pages(g_mm, 0, 0);
        if (!p)
            break;
        h.pages[h.n++] = p;
    }
    h.taken = h.n;
    h.live = HOARD_LIVE;
    if (kmm_register_shrinker(g_mm, &h.s) != 0)
        fail("kmm_register_shrinker refused a new hoard");
    unsigned long since[ALLOCATORS];
    for (unsigned i = 0; i < ALLOCATORS; i++)
        since[i] = atomic_load(&g_failures[i]);
    bool had_pages = h.taken > 0;
    while (!atomic_load(&g_stop) && !failed_twice_since(since)) {
        switch (kmm_test_below(&r->rng, 8)) {
        case 0:
            kmm_shrink(g_mm, (size_t)kmm_test_below(&r->rng, 16));
            break;
        case 1: {
            unsigned listed = 0;
            kmm_shrinker_for_each(g_mm, count_listed, &listed);
            if (listed < 1)
                fail("kmm_shrinker_for_each missed a registered hoard");
            break;
        }
        default:
            sched_yield();
        }
    }
    if (had_pages && failed_twice_since(since))
        atomic_fetch_add(&g_waited, 1);
    kmm_unregister_shrinker(g_mm, &h.s);
    pthread_mutex_lock(&h.mu);
    h.live = 0;
    if (h.given + h.n != h.taken)
        fail("hoard: took %zu pages, gave %zu in scans, holds %zu", h.taken, h.given, h.n);
    while (h.n)
        kmm_free_pages(g_mm, h.pages[--h.n]);
    pthread_mutex_unlock(&h.mu);
    pthread_mutex_destroy(&h.mu);
    r->cycles++;
    atomic_fetch_add(&g_cycles, 1);
}

static void *registrar_main(void *arg)
{
    struct registrar *r = arg;
    while (!atomic_load(&g_stop))
        hoard_cycle(r);
    return NULL;
}

/* ---- allocators --------------------------------------------------------------------- */

struct allocator {
    unsigned idx;
    uint64_t rng;
    unsigned long rounds;
    size_t most;                     /* the most pages held at once */
};

static void *allocator_main(void *arg)
{
    struct allocator *a = arg;
    size_t cap = MEM / PS;
    void **p = calloc(cap, sizeof(*p));
    unsigned char *order = calloc(cap, 1);
    if (!p || !order)
        fail("calloc");
    for (unsigned long round = 0; round < a->rounds || atomic_load(&g_cycles) < g_min_cycles; round++) {
        size_t n = 0, pages = 0;
        while (n < cap) {
            unsigned o = (unsigned)kmm_test_below(&a->rng, 4);
            void *b = kmm_alloc_pages(g_mm, o, 0);
            if (!b) {
                atomic_fetch_add(&g_failures[a->idx], 1);
                break;
            }
            *(uint64_t *)b = (uint64_t)a->idx << 32 | n;
            order[n] = (unsigned char)o;
            p[n++] = b;
            pages += (size_t)1 << o;
        }
        if (pages > a->most)
            a->most = pages;
        for (size_t i = n; i-- > 0;) {
            if (*(uint64_t *)p[i] != ((uint64_t)a->idx << 32 | i))
                fail("allocator %u: block %zu (order %u) at %p overwritten", a->idx, i, order[i], p[i]);
            kmm_free_pages(g_mm, p[i]);
        }
    }
    free(p);
    free(order);
    return NULL;
}

/* ---- pools ------------------------------------------------------------------------ */

struct cycler {
    uint64_t rng;
    unsigned pools;
    size_t compacted;                /* pages the pools' shrinkers compacted */
};

static void *cycler_main(void *arg)
{
    struct cycler *c = arg;
    enum { N = 600 };
    uint64_t h[N];
    while (!atomic_load(&g_stop)) {
        struct kmm_zspool *pool = kmm_zs_create(g_mm, "cycled");
        if (!pool) {   /* memory ran out: the allocators hold it all now */
            sched_yield();
            continue;
        }
        size_t n = 0;
        while (n < N && (h[n] = kmm_zs_malloc(pool, 200 + (size_t)kmm_test_below(&c->rng, 1500), 0)))
            n++;
        for (size_t i = 0; i < n; i += 2)
            kmm_zs_free(pool, h[i]);
        for (unsigned i = 0; i < 20 && !atomic_load(&g_stop); i++)
            sched_yield();   /* sparse for a while: failing allocations may compact it */
        struct kmm_zs_stats st;
        kmm_zs_stats(pool, &st);
        c->compacted += st.pages_compacted;
        for (size_t i = 1; i < n; i += 2)
            kmm_zs_free(pool, h[i]);
        kmm_zs_destroy(pool);
        c->pools++;
    }
    return NULL;
}

int main(void)
{
    kmm_test_on_fail(fail_head, NULL, false);
    g_seed = kmm_test_seed("shrink_threads");
    const char *env = getenv("KMM_THREADS_OPS");
    unsigned long rounds = env ? strtoul(env, NULL, 0) : KMM_TEST_SANITIZER ? 150 : 1000;
    g_min_cycles = (unsigned)(rounds / 4);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    g_mm = kmm_test_create(PS, MEM);
    uint64_t s = g_seed;

    struct allocator al[ALLOCATORS];
    struct registrar rg[REGISTRARS];
    struct cycler cy = { .rng = kmm_test_rand(&s) | 1 };
    for (unsigned i = 0; i < ALLOCATORS; i++)
        al[i] = (struct allocator){ .idx = i, .rng = kmm_test_rand(&s) | 1, .rounds = rounds };
    for (unsigned i = 0; i < REGISTRARS; i++)
        rg[i] = (struct registrar){ .idx = i, .rng = kmm_test_rand(&s) | 1 };
    pthread_t ta[ALLOCATORS], tr[REGISTRARS], tc;
    kmm_test_start_threads(tr, REGISTRARS, registrar_main, rg, sizeof rg[0]);
    kmm_test_start_threads(&tc, 1, cycler_main, &cy, sizeof cy);
    kmm_test_start_threads(ta, ALLOCATORS, allocator_main, al, sizeof al[0]);
    kmm_test_join_threads(ta, ALLOCATORS);
    atomic_store(&g_stop, true);
    kmm_test_join_threads(tr, REGISTRARS);
    kmm_test_join_threads(&tc, 1);

    if (kmm_check(g_mm) != 0)
        fail("kmm_check");
    unsigned listed = 0;
    kmm_shrinker_for_each(g_mm, count_listed, &listed);
    if (listed != 0)
        fail("%u shrinkers still registered", listed);
    kmm_drain(g_mm);
    struct kmm_page_stats st;
    kmm_page_stats(g_mm, &st);
    if (st.allocated_pages != 0)
        fail("%zu pages still held after every thread freed its own", st.allocated_pages);
    unsigned long failures = 0;
    for (unsigned i = 0; i < ALLOCATORS; i++)
        failures += atomic_load(&g_failures[i]);
    if (failures < rounds * ALLOCATORS)
        fail("%lu failed allocations for %lu rounds: memory never ran out", failures, rounds * ALLOCATORS);
    if (atomic_load(&g_waited) && !atomic_load(&g_scanned))
        fail("hoards holding pages stayed registered across failing allocations, and none was scanned");
    kmm_destroy(g_mm);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("shrink_threads: OK, %lu rounds at least, %u + %u hoards, %u pools (%zu pages compacted), %lu pages given back by scans, %u hoards "
           "waited, %.1f s\n",
           rounds * ALLOCATORS, rg[0].cycles, rg[1].cycles, cy.pools, cy.compacted, (unsigned long)atomic_load(&g_scanned),
           atomic_load(&g_waited), (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
