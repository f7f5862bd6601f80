/* secret_threads.c - secret memory used by several threads at once.
 *
 * 4 worker threads share one memory system (4 KiB pages, then 16 KiB) and
 * each runs a seeded random mix on secrets of its own: kmm_secret_alloc of
 * 1 byte .. 64 KiB (zero checked, a pattern written), kmm_secret_free of a
 * random one (pattern checked first), rewrites; each holds at most 8
 * (locked memory stays under 2.5 MiB). Half the workers use the unmapped
 * cache, half memfd_secret where it is available, switching the
 * memory system's backing before each allocation (a race the contract
 * allows: the allocation gets one of the two, the test records which from
 * the stats delta of nobody - it only checks the memory). Meanwhile a
 * checker thread calls secret memory's own check (kmm__secret_check: it
 * asks the cache about the records' frames a batch at a time with the lock
 * dropped; kmm_check as a whole wants the other layers quiet),
 * kmm_secret_stats (sane: allocations <=
 * 32, locked <= the budget) and, once per page size, forks: the child
 * allocates, checks and frees a secret of its own, runs kmm_check and
 * exits 0 - with the workers of the parent inside kmm at the fork.
 * After the join: every secret still holds its pattern, kmm_check passes,
 * stats count what the workers hold; all freed, the stats are zero.
 * Clean under TSan (make sanitize-thread). KMM_SEED repeats the seeds;
 * KMM_THREADS_OPS sets operations per worker (default 1500; 400 under a
 * sanitizer).
 */
#include "kmm_test.h"
#include "secret/secret_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MEM      (256ull << 20)
#define WORKERS  4
#define PER      8
#define MAX_SIZE (64u << 10)

static uint64_t g_seed;
static size_t g_ps;

static void fail_head(FILE *f) { fprintf(f, "secret_threads FAILED (seed %llu, page size %zu): ", (unsigned long long)g_seed, g_ps); }

#define fail(...) kmm_test_fail(__VA_ARGS__)

struct held {
    unsigned char *p;
    size_t size;
    uint64_t key;
};

struct worker {
    struct kmm *mm;
    unsigned id;
    unsigned long ops;
    bool memfd;
    struct held h[PER];
    size_t n;
    uint64_t next_key;
};

static int g_stop;

static void check_held(const struct held *h)
{
    size_t at = kmm_test_span_io(h->p, h->key, 0, h->size, false);
    if (at != SIZE_MAX)
        fail("secret %p of %zu bytes lost its pattern at byte %zu", (void *)h->p, h->size, at);
}

static void *work(void *arg)
{
    struct worker *w = arg;
    uint64_t rng = g_seed * 31 + w->id + g_ps;
    for (unsigned long op = 0; op < w->ops; op++) {
        unsigned r = (unsigned)kmm_test_below(&rng, 10);
        if (r < 5 && w->n < PER) {
            size_t size = 1 + kmm_test_below(&rng, kmm_test_below(&rng, 4) ? 2 * g_ps : MAX_SIZE);
            kmm_secret_set_backing(w->mm, w->memfd ? KMM_SECRET_MEMFD : KMM_SECRET_UNMAPPED);
            unsigned char *p = kmm_secret_alloc(w->mm, size);
            if (!p)
                fail("worker %u: kmm_secret_alloc(%zu) failed, errno %d", w->id, size, errno);
            for (size_t i = 0; i < size; i++)
                if (p[i])
                    fail("worker %u: new secret not zero at byte %zu", w->id, i);
            struct held *h = &w->h[w->n++];
            *h = (struct held){ p, size, ((uint64_t)w->id << 40) + ++w->next_key };
            kmm_test_span_io(p, h->key, 0, size, true);
        } else if (r < 9 && w->n) {
            size_t i = kmm_test_below(&rng, w->n);
            check_held(&w->h[i]);
            kmm_secret_free(w->mm, w->h[i].p);
            w->h[i] = w->h[--w->n];
        } else if (w->n) {
            struct held *h = &w->h[kmm_test_below(&rng, w->n)];
            check_held(h);
            h->key = ((uint64_t)w->id << 40) + ++w->next_key;
            kmm_test_span_io(h->p, h->key, 0, h->size, true);
        }
    }
    return NULL;
}

static void child_after_fork(struct kmm *mm)
{
    unsigned char *p = kmm_secret_alloc(mm, 3 * g_ps);
    if (!p)
        _exit(2);
    for (size_t i = 0; i < 3 * g_ps; i++)
        if (p[i])
            _exit(3);
    memset(p, 0x5a, 3 * g_ps);
    kmm_secret_free(mm, p);
    _exit(kmm_check(mm) == 0 ? 0 : 4);
}

static void *checker(void *arg)
{
    struct kmm *mm = arg;
    bool forked = false;
    unsigned long rounds = 0;
    while (!__atomic_load_n(&g_stop, __ATOMIC_ACQUIRE)) {
        /* secret memory's own check: kmm_check as a whole wants the other
         * layers quiet (the per-thread page caches change under it) */
        if (kmm__secret_check(mm) != 0)
            fail("kmm__secret_check failed while the workers ran");
        struct kmm_secret_stats st;
        kmm_secret_stats(mm, &st);
        if (st.allocations > WORKERS * PER || st.locked_bytes > (size_t)WORKERS * PER * (MAX_SIZE + g_ps))
            fail("stats while running: %zu allocations, %zu bytes locked", st.allocations, st.locked_bytes);
        if (!forked && ++rounds == 3) {
            forked = true;
            pid_t pid = fork();
            if (pid < 0)
                fail("fork failed");
            if (pid == 0)
                child_after_fork(mm);
            int status = 0;
            waitpid(pid, &status, 0);
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fail("the child of a fork made among working threads failed (status 0x%x)", status);
        }
        usleep(2000);   /* leave the cores to the workers */
    }
    return NULL;
}

static void run(size_t ps, unsigned long ops)
{
    g_ps = ps;
    struct kmm *mm = kmm_test_create(ps, MEM);
    bool memfd = kmm_secret_backing_available(mm, KMM_SECRET_MEMFD);
    static struct worker w[WORKERS];
    for (unsigned i = 0; i < WORKERS; i++)
        w[i] = (struct worker){ .mm = mm, .id = i, .ops = ops, .memfd = memfd && (i & 1) };
    __atomic_store_n(&g_stop, 0, __ATOMIC_RELEASE);
    pthread_t th[WORKERS], chk;
    if (pthread_create(&chk, NULL, checker, mm) != 0)
        fail("pthread_create failed");
    kmm_test_start_threads(th, WORKERS, work, w, sizeof w[0]);
    kmm_test_join_threads(th, WORKERS);
    __atomic_store_n(&g_stop, 1, __ATOMIC_RELEASE);
    pthread_join(chk, NULL);
    if (kmm_check(mm) != 0)
        fail("kmm_check after the join failed");
    size_t held = 0;
    for (unsigned i = 0; i < WORKERS; i++)
        for (size_t j = 0; j < w[i].n; j++, held++)
            check_held(&w[i].h[j]);
    struct kmm_secret_stats st;
    kmm_secret_stats(mm, &st);
    if (st.allocations != held)
        fail("%zu live secrets counted, the workers hold %zu", st.allocations, held);
    for (unsigned i = 0; i < WORKERS; i++)
        for (size_t j = 0; j < w[i].n; j++)
            kmm_secret_free(mm, w[i].h[j].p);
    kmm_secret_stats(mm, &st);
    if (st.allocations || st.bytes || st.locked_bytes || st.allocs != st.frees)
        fail("after freeing everything: %zu allocations, %zu bytes, %zu locked", st.allocations, st.bytes,
             st.locked_bytes);
    if (kmm_check(mm) != 0)
        fail("kmm_check at the end failed");
    printf("  page size %zu: %llu allocations by %d threads (%s)\n", ps, (unsigned long long)st.allocs, WORKERS,
           memfd ? "both backings" : "unmapped cache only");
    kmm_destroy(mm);
}

int main(void)
{
    kmm_test_on_fail(fail_head, NULL, false);
    g_seed = kmm_test_seed("secret_threads");
    const char *env = getenv("KMM_THREADS_OPS");
    unsigned long ops = env ? strtoul(env, NULL, 10) : KMM_TEST_SANITIZER ? 400 : 1500;
    run(4096, ops);
    run(16384, ops);
    printf("secret_threads: OK\n");
    return 0;
}
