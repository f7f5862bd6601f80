/* page_threads.c - the page allocator under several threads.
 *
 * Two, then four threads allocate and free blocks of orders 0..3 (the orders
 * served by the per-thread caches) with random area masks. A share of the
 * blocks is handed to another thread through a mutex-protected queue and
 * freed there, so pages move between the caches of different threads. Every
 * block carries a pattern naming its owner and serial in the first and last
 * word of each page (and a full first cache line), checked before it is passed
 * on or freed: two threads given the same page, or the allocator writing into
 * a live block, shows up as a mismatch (and under TSan as a race).
 *
 * Meanwhile the main thread calls kmm_drain and kmm_page_stats and reserves
 * random ranges, writes a pattern into them and checks it before it gives
 * them back: a reserved page handed to a worker shows.
 *
 * Half way, all threads stop at a barrier; the main thread runs kmm_check and
 * compares kmm_page_stats with the pages the threads hold. At the end the
 * threads exit (their caches return to the memory system at thread exit), the
 * main thread frees what is left in the queues, calls kmm_drain, and the free
 * block counts must equal the initial ones exactly.
 *
 * KMM_SEED repeats a run's random choices (not its interleaving);
 * KMM_THREADS_OPS sets the operations per thread.
 */
#include "kmm_test.h"

#include <kmm.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_THREADS 4
#define MAX_LIVE    128            /* blocks a thread holds at most */
#define MAX_QUEUED  256            /* blocks waiting in a thread's inbox at most */
#define PAGE_SIZE_T 4096

struct block {
    void *p;
    unsigned order;
    uint64_t tag;                  /* thread << 48 | serial */
};

struct inbox {
    pthread_mutex_t lock;
    struct block *q;
    size_t n, cap;
};

struct shared {
    struct kmm *mm;
    unsigned nthreads;
    unsigned long ops;
    pthread_barrier_t barrier;
    struct inbox inbox[MAX_THREADS];
    atomic_size_t held_pages[MAX_THREADS];   /* pages in each thread's live array */
    atomic_uint halfway, done;               /* workers that reached the middle, the end */
};

struct disturb_stats {
    unsigned long drains, stats, resv_ok, resv_busy;
};

struct worker {
    struct shared *sh;
    unsigned id;
    uint64_t rng;
    struct block live[MAX_LIVE];
    size_t nlive;
    uint64_t serial;
    unsigned long allocs, frees, sent, received, alloc_failures;
};

/* What a failure report (kmm_test_fail) starts with. */
static void die_head(FILE *f)
{
    fputs("page_threads FAILED: ", f);
}

#define die(...) kmm_test_fail(__VA_ARGS__)

static uint64_t word_for(uint64_t tag, uint64_t page, unsigned w)
{
    uint64_t x = tag ^ (page << 8) ^ w;
    x ^= x >> 31;
    x *= 0x9E3779B97F4A7C15ULL;
    return x ^ (x >> 29);
}

static void fill(const struct block *b)
{
    size_t pages = (size_t)1 << b->order;
    for (size_t i = 0; i < pages; i++) {
        uint64_t *pg = (uint64_t *)(void *)((char *)b->p + i * PAGE_SIZE_T);
        for (unsigned w = 0; w < 8; w++)
            pg[w] = word_for(b->tag, i, w);
        pg[PAGE_SIZE_T / 8 - 1] = word_for(b->tag, i, 8);
    }
}

static void verify(const struct block *b, const char *when)
{
    size_t pages = (size_t)1 << b->order;
    for (size_t i = 0; i < pages; i++) {
        const uint64_t *pg = (const uint64_t *)(const void *)((const char *)b->p + i * PAGE_SIZE_T);
        for (unsigned w = 0; w <= 8; w++) {
            uint64_t got = w < 8 ? pg[w] : pg[PAGE_SIZE_T / 8 - 1];
            if (got != word_for(b->tag, i, w))
                die("%s: block %p (order %u, thread %u serial %llu): page %zu word %u is 0x%llx, expected 0x%llx",
                    when, b->p, b->order, (unsigned)(b->tag >> 48), (unsigned long long)(b->tag & 0xffffffffffffULL),
                    i, w, (unsigned long long)got, (unsigned long long)word_for(b->tag, i, w));
        }
    }
}

static void free_block(struct kmm *mm, const struct block *b, const char *who)
{
    verify(b, who);
    size_t sz = kmm_page_alloc_size(mm, b->p);
    if (sz != ((size_t)1 << b->order))
        die("%s: kmm_page_alloc_size(%p) = %zu, expected %zu", who, b->p, sz, (size_t)1 << b->order);
    kmm_free_pages(mm, b->p);
}

static unsigned random_flags(uint64_t *rng)
{
    static const unsigned masks[] = { 0, 0, KMM_AREA(0), KMM_AREA(1), KMM_AREAS_BELOW(1), KMM_AREA(2) };
    uint64_t r = kmm_test_rand(rng);
    return masks[r % (sizeof(masks) / sizeof(masks[0]))] | ((r >> 16) % 8 == 0 ? KMM_ZERO : 0);
}

static bool send_block(struct worker *w, unsigned to, const struct block *b)
{
    struct inbox *in = &w->sh->inbox[to];
    pthread_mutex_lock(&in->lock);
    if (in->n >= MAX_QUEUED) {
        pthread_mutex_unlock(&in->lock);
        return false;
    }
    if (in->n == in->cap) {
        in->cap = in->cap ? 2 * in->cap : 64;
        in->q = realloc(in->q, in->cap * sizeof(*in->q));
        if (!in->q)
            die("out of memory");
    }
    in->q[in->n++] = *b;
    pthread_mutex_unlock(&in->lock);
    w->sent++;
    return true;
}

/* Takes up to max blocks from the thread's inbox. */
static size_t receive(struct worker *w, struct block *out, size_t max)
{
    struct inbox *in = &w->sh->inbox[w->id];
    size_t n = 0;
    pthread_mutex_lock(&in->lock);
    while (n < max && in->n)
        out[n++] = in->q[--in->n];
    pthread_mutex_unlock(&in->lock);
    return n;
}

static void phase(struct worker *w, unsigned long ops)
{
    struct shared *sh = w->sh;
    struct block got[16];
    for (unsigned long i = 0; i < ops; i++) {
        uint64_t r = kmm_test_rand(&w->rng) % 100;
        if (r < 45 && w->nlive < MAX_LIVE) {
            struct block b;
            unsigned flags = random_flags(&w->rng);
            b.order = (unsigned)(kmm_test_rand(&w->rng) % (KMM_PCP_MAX_ORDER + 1));
            b.p = kmm_alloc_pages(sh->mm, b.order, flags);
            if (!b.p) {
                w->alloc_failures++;
                die("thread %u: kmm_alloc_pages(order %u, flags 0x%x) failed", w->id, b.order, flags);
            }
            if (((uintptr_t)kmm_virt_to_phys(sh->mm, b.p)) & (((uintptr_t)PAGE_SIZE_T << b.order) - 1))
                die("thread %u: order %u block %p is not naturally aligned", w->id, b.order, b.p);
            if (flags & KMM_ZERO) {
                const unsigned char *c = b.p;
                for (size_t k = 0; k < ((size_t)PAGE_SIZE_T << b.order); k++)
                    if (c[k])
                        die("thread %u: KMM_ZERO block %p has byte %zu = 0x%02x", w->id, b.p, k, c[k]);
            }
            b.tag = ((uint64_t)w->id << 48) | ++w->serial;
            fill(&b);
            w->live[w->nlive++] = b;
            atomic_fetch_add_explicit(&sh->held_pages[w->id], (size_t)1 << b.order, memory_order_relaxed);
            w->allocs++;
        } else if (r < 75 && w->nlive) {
            size_t k = (size_t)(kmm_test_rand(&w->rng) % w->nlive);
            struct block b = w->live[k];
            w->live[k] = w->live[--w->nlive];
            atomic_fetch_sub_explicit(&sh->held_pages[w->id], (size_t)1 << b.order, memory_order_relaxed);
            unsigned to = sh->nthreads > 1 ?
                (unsigned)(w->id + 1 + kmm_test_rand(&w->rng) % (sh->nthreads - 1)) % sh->nthreads : w->id;
            if (to != w->id && kmm_test_rand(&w->rng) % 3 == 0 && (verify(&b, "before sending"), send_block(w, to, &b))) {
                /* handed over */
            } else {
                free_block(sh->mm, &b, "own free");
                w->frees++;
            }
        } else {
            size_t n = receive(w, got, sizeof(got) / sizeof(got[0]));
            for (size_t k = 0; k < n; k++) {
                w->received++;
                if (k % 4 == 0 && w->nlive < MAX_LIVE) {   /* keep some: freed later, as one's own */
                    verify(&got[k], "received");
                    w->live[w->nlive++] = got[k];
                    atomic_fetch_add_explicit(&sh->held_pages[w->id], (size_t)1 << got[k].order,
                                              memory_order_relaxed);
                } else {
                    free_block(sh->mm, &got[k], "cross-thread free");
                    w->frees++;
                }
            }
        }
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    phase(w, w->sh->ops / 2);
    atomic_fetch_add(&w->sh->halfway, 1);
    pthread_barrier_wait(&w->sh->barrier);   /* the main thread checks */
    pthread_barrier_wait(&w->sh->barrier);
    phase(w, w->sh->ops - w->sh->ops / 2);
    /* free some of what is held, keep the rest in the caches at exit */
    while (w->nlive) {
        struct block b = w->live[--w->nlive];
        atomic_fetch_sub_explicit(&w->sh->held_pages[w->id], (size_t)1 << b.order, memory_order_relaxed);
        free_block(w->sh->mm, &b, "final free");
        w->frees++;
    }
    atomic_fetch_add(&w->sh->done, 1);
    return NULL;
}

/* While the workers run: kmm_drain, kmm_page_stats, and reservations of
 * random ranges, which are filled with a pattern and checked before they are
 * given back (a reserved page handed to a worker would clobber it or be
 * clobbered). Until *until reaches the number of workers. */
static void disturb(struct shared *sh, atomic_uint *until, uint64_t *rng, struct disturb_stats *ds)
{
    const uint64_t npages = (160ull << 20) / PAGE_SIZE_T;
    while (atomic_load(until) < sh->nthreads) {
        uint64_t r = kmm_test_rand(rng) % 16;
        if (r == 0) {
            kmm_drain(sh->mm);
            ds->drains++;
        } else if (r == 1) {
            struct kmm_page_stats st;
            kmm_page_stats(sh->mm, &st);
            if (st.free_pages > st.total_pages || st.cached_pages > st.free_pages ||
                st.free_pages + st.reserved_pages + st.allocated_pages != st.total_pages)
                die("concurrent stats: total %zu free %zu cached %zu reserved %zu allocated %zu", st.total_pages,
                    st.free_pages, st.cached_pages, st.reserved_pages, st.allocated_pages);
            ds->stats++;
        } else {
            uint64_t n = 1 + kmm_test_rand(rng) % 64;
            uint64_t pfn = kmm_test_rand(rng) % (npages - n);
            int rc = kmm_reserve_pages(sh->mm, pfn * PAGE_SIZE_T, (size_t)n);
            if (rc == -KMM_EBUSY) {
                ds->resv_busy++;
                continue;
            }
            if (rc != 0)
                die("concurrent kmm_reserve_pages(pfn %llu, %llu) = %d", (unsigned long long)pfn,
                    (unsigned long long)n, rc);
            ds->resv_ok++;
            struct block b = { kmm_phys_to_virt(sh->mm, pfn * PAGE_SIZE_T), 0, 0xfeedULL << 48 | pfn };
            for (uint64_t i = 0; i < n; i++, b.p = (char *)b.p + PAGE_SIZE_T)
                fill(&b);
            for (unsigned spin = 0; spin < 50; spin++)
                sched_yield();
            b.p = kmm_phys_to_virt(sh->mm, pfn * PAGE_SIZE_T);
            for (uint64_t i = 0; i < n; i++, b.p = (char *)b.p + PAGE_SIZE_T)
                verify(&b, "reserved range");
            kmm_unreserve_pages(sh->mm, pfn * PAGE_SIZE_T, (size_t)n);
        }
    }
}

static void run(unsigned nthreads, unsigned long ops, uint64_t seed)
{
    /* every area has room for all the threads can hold (128 blocks of up to 8 pages each, full caches, full
     * queues), so an allocation never fails */
    static const uint64_t limits[] = { 48ull << 20, 96ull << 20, UINT64_MAX };
    struct kmm_config cfg = { .page_size = PAGE_SIZE_T, .mem_size = 160ull << 20, .area_limits = limits, .nr_areas = 3 };
    struct shared *sh = calloc(1, sizeof(*sh));
    struct worker *ws = calloc(nthreads, sizeof(*ws));
    pthread_t th[MAX_THREADS];
    if (!sh || !ws)
        die("out of memory");
    sh->mm = kmm_create(&cfg);
    if (!sh->mm)
        die("kmm_create failed");
    sh->nthreads = nthreads;
    sh->ops = ops;
    pthread_barrier_init(&sh->barrier, NULL, nthreads + 1);
    for (unsigned i = 0; i < nthreads; i++)
        pthread_mutex_init(&sh->inbox[i].lock, NULL);

    struct kmm_page_stats st0, st;
    kmm_page_stats(sh->mm, &st0);

    for (unsigned i = 0; i < nthreads; i++) {
        ws[i].sh = sh;
        ws[i].id = i;
        ws[i].rng = seed + 0x1000193ULL * (i + 1);
    }
    kmm_test_start_threads(th, nthreads, worker_main, ws, sizeof *ws);

    struct disturb_stats ds = { 0, 0, 0, 0 };
    uint64_t rng = seed ^ 0xabcdef;
    disturb(sh, &sh->halfway, &rng, &ds);

    /* half way: everybody quiet; the memory system must be consistent */
    pthread_barrier_wait(&sh->barrier);
    if (kmm_check(sh->mm) != 0)
        die("%u threads: kmm_check failed half way", nthreads);
    kmm_page_stats(sh->mm, &st);
    size_t held = 0;
    for (unsigned i = 0; i < nthreads; i++) {
        held += atomic_load(&sh->held_pages[i]);
        pthread_mutex_lock(&sh->inbox[i].lock);
        for (size_t k = 0; k < sh->inbox[i].n; k++)
            held += (size_t)1 << sh->inbox[i].q[k].order;
        pthread_mutex_unlock(&sh->inbox[i].lock);
    }
    if (st.total_pages - st.free_pages - st.reserved_pages != held || st.allocated_pages != held)
        die("%u threads: half way the threads hold %zu pages but stats say total %zu - free %zu (%zu cached) "
            "- reserved %zu, allocated %zu", nthreads, held, st.total_pages, st.free_pages, st.cached_pages,
            st.reserved_pages, st.allocated_pages);
    pthread_barrier_wait(&sh->barrier);

    disturb(sh, &sh->done, &rng, &ds);
    kmm_test_join_threads(th, nthreads);

    /* blocks still in the queues: freed by the main thread */
    size_t leftover = 0;
    for (unsigned i = 0; i < nthreads; i++) {
        for (size_t k = 0; k < sh->inbox[i].n; k++, leftover++)
            free_block(sh->mm, &sh->inbox[i].q[k], "main thread free");
        free(sh->inbox[i].q);
        pthread_mutex_destroy(&sh->inbox[i].lock);
    }
    kmm_drain(sh->mm);
    if (kmm_check(sh->mm) != 0)
        die("%u threads: kmm_check failed at the end", nthreads);
    kmm_page_stats(sh->mm, &st);
    if (st.free_pages != st.total_pages || st.cached_pages != 0)
        die("%u threads: at the end %zu of %zu pages free, %zu cached (exited threads' caches not returned?)",
            nthreads, st.free_pages, st.total_pages, st.cached_pages);
    for (unsigned a = 0; a < st.nr_areas; a++)
        for (unsigned o = 0; o <= KMM_MAX_ORDER; o++)
            if (st.nr_free[a][o] != st0.nr_free[a][o])
                die("%u threads: at the end area %u has %zu free blocks of order %u, initially %zu", nthreads, a,
                    st.nr_free[a][o], o, st0.nr_free[a][o]);
    unsigned long allocs = 0, frees = 0, sent = 0, received = 0;
    for (unsigned i = 0; i < nthreads; i++) {
        allocs += ws[i].allocs;
        frees += ws[i].frees;
        sent += ws[i].sent;
        received += ws[i].received;
    }
    if (allocs != frees + leftover)
        die("%u threads: %lu allocations, %lu frees + %zu left in queues", nthreads, allocs, frees, leftover);
    printf("  %u threads: %lu allocations, %lu frees (%lu passed to another thread, %lu received, %zu freed by main); "
           "meanwhile %lu kmm_drain, %lu kmm_page_stats, %lu reservations (%lu busy)\n",
           nthreads, allocs, frees + leftover, sent, received, leftover, ds.drains, ds.stats, ds.resv_ok, ds.resv_busy);
    pthread_barrier_destroy(&sh->barrier);
    kmm_destroy(sh->mm);
    free(ws);
    free(sh);
}

int main(void)
{
    kmm_test_on_fail(die_head, NULL, false);
    uint64_t seed = kmm_test_seed("page_threads");
    const char *env = getenv("KMM_THREADS_OPS");
    unsigned long ops = env ? strtoul(env, NULL, 0) : (KMM_TEST_TSAN ? 40000 : 600000);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run(2, ops, seed);
    run(4, ops, seed ^ 0x5555);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("page_threads: OK, %lu operations per thread with 2 and 4 threads, %.1f s\n", ops,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
