/* zstore_threads.c - the compressed page store used by two threads at once,
 * for LZ4 and then zstd.
 *
 * Each worker runs a seeded random mix of writes, reads and discards:
 *  - on indexes of its own, against a model of what each holds (checked
 *    byte for byte on every read): different indexes in parallel;
 *  - on indexes both use at once, with self-describing pages: a page's
 *    first word names its kind and key, the rest follows from them, so a
 *    read must give a whole page some writer wrote (or zeros), never a mix
 *    of two (the per-index lock); same-filled pages are checked as one
 *    repeated word.
 * Pages are text (compressible), same-filled, random (stored whole) and
 * zeros. Meanwhile the main thread reads the stats and compacts the pool.
 * After the join: kmm_zstore_check, every own index read against the model,
 * the stats against the model's count; destroy; kmm_check.
 *
 * Clean under TSan (make sanitize-thread). KMM_SEED repeats the seeds (the
 * interleaving is the scheduler's); KMM_THREADS_OPS sets the operations per
 * thread (default 20000; 3000 under a sanitizer).
 */
#include "kmm_test.h"

#include <kmm.h>
#include <kmm/zstore.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PS       4096u
#define NTHREADS 2
#define OWN      64               /* indexes of each thread */
#define SHARED   16               /* indexes both threads use */
#define NR_PAGES (NTHREADS * OWN + SHARED)

enum kind { K_ZERO, K_TEXT, K_SAME, K_RANDOM, NKINDS };

/* A page named by key (kind in its low bits; key >> 2 != 0): its first word
 * is key, the rest is made from it. K_SAME pages are the word key repeated;
 * K_ZERO pages are zeros whatever the key. */
static void make_page(unsigned char *p, uint64_t key)
{
    enum kind kind = (enum kind)(key & 3);
    uint64_t rng = kmm_test_mix64(key) | 1;
    static const char *const words[] = { "store ", "page ", "zram ", "kmm ", "index ", "compressed ", "\n" };
    switch (kind) {
    case K_ZERO:
        memset(p, 0, PS);
        return;
    case K_TEXT:
        for (size_t i = 0; i < PS;) {
            const char *w = words[kmm_test_below(&rng, 7)];
            for (; *w && i < PS; w++)
                p[i++] = (unsigned char)*w;
        }
        break;
    case K_SAME:
        break;
    case K_RANDOM:
        for (size_t i = 0; i < PS; i += 8) {
            uint64_t w = kmm_test_rand(&rng);
            memcpy(p + i, &w, 8);
        }
        break;
    default:
        abort();
    }
    if (kind == K_SAME)
        for (size_t i = 0; i < PS; i += 8)
            memcpy(p + i, &key, 8);
    else
        memcpy(p, &key, 8);
}

static bool all_zero(const unsigned char *p)
{
    for (size_t i = 0; i < PS; i++)
        if (p[i])
            return false;
    return true;
}

struct worker {
    struct kmm_zstore *zs;
    unsigned id;
    uint64_t seed;
    unsigned long ops;
    uint64_t model[OWN];          /* key of each own index; 0 = reads as zeros */
    atomic_uint *finished;
};

static void check_own(struct worker *w, unsigned slot, const unsigned char *got, unsigned char *want)
{
    uint64_t key = w->model[slot];
    if (key)
        make_page(want, key);
    else
        memset(want, 0, PS);
    if (memcmp(got, want, PS) != 0) {
        size_t i = 0;
        while (got[i] == want[i])
            i++;
        kmm_test_fail("thread %u: own index %u (key %#llx): byte %zu is %#x, expected %#x", w->id, slot,
                      (unsigned long long)key, i, got[i], want[i]);
    }
}

/* A page read from a shared index: zeros, or the whole page of its key. */
static void check_shared(struct worker *w, uint64_t index, const unsigned char *got, unsigned char *want)
{
    if (all_zero(got))
        return;
    uint64_t key;
    memcpy(&key, got, 8);
    if ((key & 3) == K_ZERO || (key >> 2) == 0)
        kmm_test_fail("thread %u: shared index %llu: first word %#llx names no page", w->id,
                      (unsigned long long)index, (unsigned long long)key);
    make_page(want, key);
    if (memcmp(got, want, PS) != 0) {
        size_t i = 0;
        while (got[i] == want[i])
            i++;
        kmm_test_fail("thread %u: shared index %llu: a torn page (key %#llx): byte %zu is %#x, expected %#x",
                      w->id, (unsigned long long)index, (unsigned long long)key, i, got[i], want[i]);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    unsigned char *page = malloc(PS), *back = malloc(PS), *want = malloc(PS);
    if (!page || !back || !want)
        kmm_test_fail("malloc");
    uint64_t rng = w->seed, serial = 0;
    for (unsigned long op = 0; op < w->ops; op++) {
        bool shared = kmm_test_below(&rng, 3) == 0;
        unsigned slot = (unsigned)kmm_test_below(&rng, shared ? SHARED : OWN);
        uint64_t index = shared ? NTHREADS * OWN + slot : (uint64_t)w->id * OWN + slot;
        unsigned what = (unsigned)kmm_test_below(&rng, 10);
        if (what < 5) {
            /* a key unique to this thread and write: (serial, thread, kind) */
            uint64_t key = (++serial << 8 | (uint64_t)w->id << 2 | kmm_test_below(&rng, NKINDS)) ;
            make_page(page, key);
            int rc = kmm_zstore_write(w->zs, index, page);
            if (rc != 0)
                kmm_test_fail("thread %u: write of index %llu: %d", w->id, (unsigned long long)index, rc);
            if (!shared)
                w->model[slot] = (key & 3) == K_ZERO ? 0 : key;
        } else if (what < 9) {
            memset(back, 0x5a, PS);
            if (kmm_zstore_read(w->zs, index, back) != 0)
                kmm_test_fail("thread %u: read of index %llu failed", w->id, (unsigned long long)index);
            if (shared)
                check_shared(w, index, back, want);
            else
                check_own(w, slot, back, want);
        } else {
            if (kmm_zstore_discard(w->zs, index) != 0)
                kmm_test_fail("thread %u: discard of index %llu failed", w->id, (unsigned long long)index);
            if (!shared)
                w->model[slot] = 0;
        }
    }
    free(page);
    free(back);
    free(want);
    atomic_fetch_add(w->finished, 1);
    return NULL;
}

static void run(const char *algo, uint64_t seed, unsigned long ops)
{
    struct kmm *mm = kmm_test_create(PS, (uint64_t)128 << 20);
    struct kmm_zstore *zs = kmm_zstore_create(mm, algo, NR_PAGES);
    if (!zs)
        kmm_test_fail("kmm_zstore_create(%s) failed", algo);
    atomic_uint finished = 0;
    struct worker w[NTHREADS];
    memset(w, 0, sizeof(w));
    for (unsigned i = 0; i < NTHREADS; i++)
        w[i] = (struct worker){ .zs = zs, .id = i, .seed = kmm_test_mix64(seed + i) | 1, .ops = ops, .finished = &finished };
    pthread_t th[NTHREADS];
    kmm_test_start_threads(th, NTHREADS, worker_main, w, sizeof(w[0]));
    /* the main thread: stats and compaction while the workers run */
    for (unsigned i = 0; atomic_load(&finished) < NTHREADS; i++) {
        struct kmm_zstore_stats st;
        kmm_zstore_stats(zs, &st);
        if (st.pages_stored > NR_PAGES || st.same_pages > st.pages_stored || st.huge_pages > st.pages_stored)
            kmm_test_fail("%s: stats out of range while running: stored %llu same %llu huge %llu", algo,
                          (unsigned long long)st.pages_stored, (unsigned long long)st.same_pages,
                          (unsigned long long)st.huge_pages);
        if (i % 8 == 0)
            kmm_zstore_compact(zs);
        nanosleep(&(struct timespec){ .tv_nsec = 200000 }, NULL);
    }
    kmm_test_join_threads(th, NTHREADS);

    if (kmm_zstore_check(zs) != 0)
        kmm_test_fail("%s: kmm_zstore_check failed after the threads", algo);
    unsigned char *back = malloc(PS), *want = malloc(PS);
    if (!back || !want)
        kmm_test_fail("malloc");
    uint64_t own_stored = 0;
    for (unsigned t = 0; t < NTHREADS; t++) {
        for (unsigned s = 0; s < OWN; s++) {
            if (kmm_zstore_read(zs, (uint64_t)t * OWN + s, back) != 0)
                kmm_test_fail("%s: final read failed", algo);
            check_own(&w[t], s, back, want);
            own_stored += w[t].model[s] != 0;
        }
    }
    /* zero pages are stored too (as same-filled): count the shared ones and
     * own ones holding a written zero page only as "at least" */
    struct kmm_zstore_stats st;
    kmm_zstore_stats(zs, &st);
    if (st.pages_stored < own_stored || st.pages_stored > NR_PAGES)
        kmm_test_fail("%s: pages_stored %llu, the model holds %llu own pages", algo,
                      (unsigned long long)st.pages_stored, (unsigned long long)own_stored);
    if (st.write_failed != 0)
        kmm_test_fail("%s: %llu writes failed", algo, (unsigned long long)st.write_failed);
    printf("%s: %llu writes, %llu reads; %llu pages stored (%llu same, %llu huge), %llu bytes compressed, "
           "%llu compacted\n",
           algo, (unsigned long long)st.writes, (unsigned long long)st.reads, (unsigned long long)st.pages_stored,
           (unsigned long long)st.same_pages, (unsigned long long)st.huge_pages,
           (unsigned long long)st.compr_data_size, (unsigned long long)st.pages_compacted);
    for (uint64_t i = 0; i < NR_PAGES; i++)
        kmm_zstore_discard(zs, i);
    kmm_zstore_stats(zs, &st);
    if (st.pages_stored != 0 || st.compr_data_size != 0)
        kmm_test_fail("%s: after discarding everything: %llu pages, %llu bytes", algo,
                      (unsigned long long)st.pages_stored, (unsigned long long)st.compr_data_size);
    if (kmm_zstore_check(zs) != 0)
        kmm_test_fail("%s: kmm_zstore_check failed after the discards", algo);
    kmm_zstore_destroy(zs);
    if (kmm_check(mm) != 0)
        kmm_test_fail("%s: kmm_check failed", algo);
    kmm_destroy(mm);
    free(back);
    free(want);
}

int main(void)
{
    uint64_t seed = kmm_test_seed("zstore_threads");
    unsigned long ops = KMM_TEST_SANITIZER ? 3000 : 20000;
    const char *env = getenv("KMM_THREADS_OPS");
    if (env)
        ops = strtoul(env, NULL, 10);
    run("lz4", seed, ops);
    run("zstd", seed, ops);
    printf("zstore_threads: ok\n");
    return 0;
}
