/* um_threads.c - the unmapped cache under threads: THREADS threads
 * allocate (orders 0..4, some KMM_UNMAPPED_NOCACHE, some KMM_NOZERO) and
 * free at random, two of them shrink now and then, another reads the
 * stats; every eighth block gets its owner's pattern in its first page
 * (through kmm_vmap) and must still hold it at its free, so two threads
 * never hold the same page. Runs under TSan in CI. At the end: kmm_check
 * passes, and after freeing all and a full shrink the cache holds nothing
 * and the direct map is one mapping again.
 *
 *   test_unmapped_threads [OPS per thread]   ($KMM_SEED repeats the seeds)
 */
#include "kmm_test.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define THREADS 3
#define HELD 48
#define PS 4096u

static struct kmm *mm;
static unsigned long ops;
static uint64_t seed;

struct blk {
    kmm_phys_t phys;
    uint64_t key;   /* 0: no pattern */
};

static void pattern(kmm_phys_t phys, uint64_t key, bool write)
{
    unsigned char *p = kmm_vmap(mm, &phys, 1, KMM_PROT_READ | KMM_PROT_WRITE);
    if (!p)
        kmm_test_fail("kmm_vmap failed");
    size_t bad = kmm_test_span_io(p, key, 0, PS, write);
    if (!write && bad != SIZE_MAX)
        kmm_test_fail("page 0x%llx lost its holder's pattern at byte %zu (another thread wrote it?)",
                      (unsigned long long)phys, bad);
    kmm_vunmap(mm, p);
}

static void *worker(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    uint64_t rng = seed * 31 + id + 1;
    struct blk held[HELD];
    size_t n = 0;
    for (unsigned long i = 0; i < ops; i++) {
        uint64_t r = kmm_test_below(&rng, 100);
        if (r < 50 && n < HELD) {
            unsigned flags = (kmm_test_below(&rng, 12) == 0 ? KMM_UNMAPPED_NOCACHE : 0) |
                             (kmm_test_below(&rng, 3) == 0 ? KMM_NOZERO : 0);
            kmm_phys_t p = kmm_unmapped_alloc(mm, (unsigned)kmm_test_below(&rng, 5), flags);
            if (p == KMM_PHYS_NONE)
                kmm_test_fail("thread %u: allocation failed", id);
            uint64_t key = kmm_test_below(&rng, 8) == 0 ? kmm_test_rand(&rng) | 1 : 0;
            if (key)
                pattern(p, key, true);
            held[n++] = (struct blk){ p, key };
        } else if (r < 96 && n) {
            size_t k = (size_t)kmm_test_below(&rng, n);
            if (held[k].key)
                pattern(held[k].phys, held[k].key, false);
            kmm_unmapped_free(mm, held[k].phys);
            held[k] = held[--n];
        } else if (id != 1) {
            /* shrinks on two threads at once: pieces of one chunk carved
             * out of its allocation concurrently */
            kmm_unmapped_shrink(mm, kmm_test_below(&rng, 2) ? 0 : 64);
        } else {
            struct kmm_unmapped_stats st;
            kmm_unmapped_stats(mm, &st);
            if (st.pages_free > st.pages_held)
                kmm_test_fail("stats: %zu free of %zu held", st.pages_free, st.pages_held);
        }
    }
    while (n) {
        n--;
        if (held[n].key)
            pattern(held[n].phys, held[n].key, false);
        kmm_unmapped_free(mm, held[n].phys);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    ops = argc > 1 ? strtoul(argv[1], NULL, 0) : (KMM_TEST_SANITIZER ? 3000 : 20000);
    seed = kmm_test_seed("um_threads");
    mm = kmm_test_create(PS, 1ull << 30);
    pthread_t t[THREADS];
    for (unsigned i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i) != 0)
            kmm_test_fail("pthread_create failed");
    for (unsigned i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    if (kmm_check(mm) != 0)
        kmm_test_fail("kmm_check failed after the threads");
    kmm_unmapped_shrink(mm, 0);
    struct kmm_unmapped_stats st;
    kmm_unmapped_stats(mm, &st);
    if (st.pages_held || st.chunks || st.pages_nocache || st.direct_map_mappings != 1)
        kmm_test_fail("after freeing all and shrinking: held %zu, chunks %zu, nocache %zu, mappings %zu", st.pages_held,
                      st.chunks, st.pages_nocache, st.direct_map_mappings);
    if (kmm_check(mm) != 0)
        kmm_test_fail("kmm_check failed at the end");
    kmm_destroy(mm);
    printf("um_threads: %d threads x %lu operations: ok\n", THREADS, ops);
    return 0;
}
