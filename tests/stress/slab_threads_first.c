/* slab_threads_first.c - many threads making the first slabs of one cache at once.
 *
 * A cache starts with no slab and no descriptor. Each round, the main
 * thread makes fresh caches; NTHREADS threads wait at a barrier, then all
 * allocate from the same cache at once, so every one of them makes slabs
 * while the others do: the cache's pool of descriptors is empty, threads
 * grow it (a chunk allocated without the lock, installed under it) and take
 * descriptors from chunks other threads just installed. The caches:
 *  - slots of 8 pages, one per slab: each magazine refill makes 8 slabs in
 *    a row, each dropping and retaking the cache's lock around the pages
 *    and the descriptor, so descriptors go fast (a chunk holds 16);
 *  - 8-byte slots: descriptors of 512 held bytes and bits (large, so each
 *    is zeroed longer under the lock);
 *  - one with a constructor (slabs take longer to fill, outside the lock).
 * The platform yields the CPU after unlocks (see yielding_unlock). Every
 * object gets a pattern of its own, checked before it is freed (two
 * slabs with one descriptor, or one slot handed out twice, would show);
 * kmm_check runs after every round with the objects held (it also checks
 * that every descriptor cut from a cache's chunks is a slab's or free, so
 * a chunk's rest dropped by a concurrent growth shows), and again once
 * they are freed and the caches destroyed; at the end every page is back.
 *
 * On 56bd589 new_slab used the descriptor it took after growing the pool
 * without checking it: when other threads had emptied the new chunk in
 * between (or another thread's growth had replaced it), it wrote through a
 * NULL descriptor.
 *
 * KMM_SEED repeats the threads' choices; KMM_FIRST_ROUNDS sets the rounds.
 */
#include "kmm_test.h"

#include <kmm.h>

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NTHREADS 16
#define NCACHES  3
#define PS       4096u

struct round {
    struct kmm *mm;
    struct kmm_cache *caches[NCACHES];
    size_t sizes[NCACHES];
    unsigned per_thread[NCACHES];   /* objects each thread allocates */
    pthread_barrier_t start, allocated, checked;
    unsigned rounds;
};

struct worker {
    struct round *r;
    unsigned id;
    uint64_t rng;
};

/* The hosted platform, but a thread gives up the CPU after every unlock
 * and after allocating metadata: the windows between dropping a lock and
 * retaking it, which 16 threads on a few cores seldom hit, open wide
 * (another thread runs there most of the time). On 56bd589, with a yield
 * after every other unlock instead: 7 runs of 10 crashed at 30 rounds;
 * after every unlock: 10 of 10 at 30 rounds, 2 of 10 at 5. */
static struct kmm_platform yielding;

static void yielding_unlock(struct kmm_lock *l)
{
    kmm_platform_hosted.unlock(l);
    sched_yield();
}

static void *yielding_meta_alloc(void *ctx, size_t len)
{
    void *p = kmm_platform_hosted.meta_alloc(ctx, len);
    sched_yield();
    return p;
}

static void ctor(void *p)
{
    memset(p, 0x5a, 64);
}

static uint64_t tag_of(unsigned round, unsigned thread, unsigned cache, unsigned i)
{
    return (uint64_t)round << 40 | (uint64_t)thread << 32 | (uint64_t)cache << 24 | i;
}

/* The first and last words of an object, and every 4 KiB between, carry
 * its tag. */
static void stamp_word(uint64_t *p, size_t w, uint64_t tag, bool write, const char *who)
{
    uint64_t v = kmm_test_mix64(tag ^ w);
    if (write)
        p[w] = v;
    else if (p[w] != v)
        kmm_test_fail("%s: object %p (tag %#llx) word %zu overwritten: %#llx", who, (void *)p,
                      (unsigned long long)tag, w, (unsigned long long)p[w]);
}

static void stamp(uint64_t *p, size_t size, uint64_t tag, bool write, const char *who)
{
    size_t words = size / 8;
    for (size_t w = 0; w < words; w += 512)
        stamp_word(p, w, tag, write, who);
    stamp_word(p, words - 1, tag, write, who);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct round *r = w->r;
    enum { MAX_OBJS = 64 };
    void *objs[NCACHES][MAX_OBJS];
    for (unsigned round = 0; round < r->rounds; round++) {
        pthread_barrier_wait(&r->start);
        /* all threads at once, and each through the caches in its own order */
        unsigned first = (unsigned)kmm_test_below(&w->rng, NCACHES);
        for (unsigned k = 0; k < NCACHES; k++) {
            unsigned ci = (first + k) % NCACHES;
            for (unsigned i = 0; i < r->per_thread[ci]; i++) {
                void *p = kmm_cache_alloc(r->caches[ci], 0);
                if (!p)
                    kmm_test_fail("round %u thread %u: kmm_cache_alloc(%s) failed", round, w->id,
                                  ci == 0 ? "8 pages" : ci == 1 ? "8 bytes" : "ctor");
                if (ci == 2 && ((unsigned char *)p)[63] != 0x5a)
                    kmm_test_fail("round %u thread %u: object %p not constructed", round, w->id, p);
                stamp(p, r->sizes[ci], tag_of(round, w->id, ci, i), true, "stamp");
                objs[ci][i] = p;
            }
        }
        pthread_barrier_wait(&r->allocated);
        pthread_barrier_wait(&r->checked);   /* main ran kmm_check */
        for (unsigned ci = 0; ci < NCACHES; ci++)
            for (unsigned i = 0; i < r->per_thread[ci]; i++) {
                stamp(objs[ci][i], r->sizes[ci], tag_of(round, w->id, ci, i), false, "free");
                if (ci == 2)
                    memset(objs[ci][i], 0x5a, 64);   /* given back constructed */
                kmm_cache_free(r->caches[ci], objs[ci][i]);
            }
        kmm_drain(r->mm);   /* this thread's magazines back, so the caches can go */
        pthread_barrier_wait(&r->allocated);
    }
    return NULL;
}

int main(void)
{
    uint64_t seed = kmm_test_seed("slab_threads_first");
    const char *env = getenv("KMM_FIRST_ROUNDS");
    struct round r = { .rounds = env ? (unsigned)strtoul(env, NULL, 0) : KMM_TEST_TSAN ? 20 : 60 };
    yielding = kmm_platform_hosted;
    yielding.unlock = yielding_unlock;
    yielding.meta_alloc = yielding_meta_alloc;
    struct kmm_config cfg = { .page_size = PS, .mem_size = 512ull << 20, .platform = &yielding };
    r.mm = kmm_create(&cfg);
    if (!r.mm)
        kmm_test_fail("kmm_create failed");
    struct kmm_page_stats st0, st;
    kmm_page_stats(r.mm, &st0);
    r.sizes[0] = 8 * PS;
    r.per_thread[0] = 24;   /* 3 refills of 8 slabs each */
    r.sizes[1] = 8;
    r.per_thread[1] = 64;
    r.sizes[2] = 1000;
    r.per_thread[2] = 40;
    pthread_barrier_init(&r.start, NULL, NTHREADS + 1);
    pthread_barrier_init(&r.allocated, NULL, NTHREADS + 1);
    pthread_barrier_init(&r.checked, NULL, NTHREADS + 1);
    pthread_t th[NTHREADS];
    struct worker w[NTHREADS];
    for (unsigned i = 0; i < NTHREADS; i++)
        w[i] = (struct worker){ .r = &r, .id = i, .rng = kmm_test_mix64(seed + i) | 1 };
    kmm_test_start_threads(th, NTHREADS, worker_main, w, sizeof(w[0]));
    unsigned long slabs = 0;
    for (unsigned round = 0; round < r.rounds; round++) {
        r.caches[0] = kmm_cache_create(r.mm, "first-8-pages", r.sizes[0], 0, NULL);
        r.caches[1] = kmm_cache_create(r.mm, "first-8-bytes", r.sizes[1], 0, NULL);
        r.caches[2] = kmm_cache_create(r.mm, "first-ctor", r.sizes[2], 0, ctor);
        for (unsigned ci = 0; ci < NCACHES; ci++)
            if (!r.caches[ci])
                kmm_test_fail("round %u: kmm_cache_create failed", round);
        pthread_barrier_wait(&r.start);
        pthread_barrier_wait(&r.allocated);
        if (kmm_check(r.mm) != 0)
            kmm_test_fail("round %u: kmm_check failed with the objects held", round);
        for (unsigned ci = 0; ci < NCACHES; ci++) {
            struct kmm_cache_stats cs;
            kmm_cache_stats(r.caches[ci], &cs);
            if (cs.active_objects + cs.cached_objects + cs.depot_objects < (size_t)NTHREADS * r.per_thread[ci])
                kmm_test_fail("round %u: cache %s counts %zu objects out, %u held", round, cs.name,
                              cs.active_objects + cs.cached_objects + cs.depot_objects,
                              NTHREADS * r.per_thread[ci]);
            slabs += cs.slabs;
        }
        pthread_barrier_wait(&r.checked);
        pthread_barrier_wait(&r.allocated);   /* freed and drained */
        for (unsigned ci = 0; ci < NCACHES; ci++)
            kmm_cache_destroy(r.caches[ci]);
        if (kmm_check(r.mm) != 0)
            kmm_test_fail("round %u: kmm_check failed after the caches went", round);
    }
    kmm_test_join_threads(th, NTHREADS);
    kmm_drain(r.mm);
    kmm_page_stats(r.mm, &st);
    if (st.allocated_pages != st0.allocated_pages)
        kmm_test_fail("at the end %zu pages are allocated, initially %zu", st.allocated_pages, st0.allocated_pages);
    if (kmm_check(r.mm) != 0)
        kmm_test_fail("kmm_check failed at the end");
    kmm_destroy(r.mm);
    printf("slab_threads_first: OK, %u rounds of %u threads, %lu slabs made\n", r.rounds, NTHREADS, slabs);
    return 0;
}
