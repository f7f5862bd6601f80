/* slab_threads.c - kmm_malloc and object caches from several threads at once.
 *
 * With 2 and then 4 worker threads on one memory system, each run goes
 * through these phases:
 *
 *  A  own objects: every thread allocates and frees objects of its own -
 *     kmm_malloc of mixed sizes (slab classes and blocks of pages),
 *     kmm_calloc, kmm_realloc, kmm_malloc_aligned, and objects of caches
 *     shared by all threads (one with a constructor, one that is destroyed
 *     after this phase) - each filled with a pattern of its own, checked
 *     before it is freed; then each thread makes, uses and destroys caches
 *     of its own while the others still work;
 *  D  while the workers wait at a barrier, holding objects of the shared
 *     caches in their magazines, the main thread runs kmm_check and
 *     destroys one shared cache (its objects were freed; the workers'
 *     magazines of it must be given back), which must then be gone from
 *     kmm_slab_stats;
 *  B  producer / consumer, twice with the roles swapped: in each pair of
 *     threads one allocates (kmm_malloc and cache objects), fills and hands
 *     objects through a queue to the other, which checks and frees them:
 *     every free is a cross-thread free, and the producer's magazines run
 *     empty while the consumer's run full;
 *  C  exit with full magazines: every thread allocates and frees a few
 *     hundred objects of every kind (leaving its magazines full), hands some
 *     live objects to the main thread and exits. After joining, the shared
 *     caches must show no cached objects (the exited threads' magazines went
 *     back) before the main thread has touched them.
 *
 * Meanwhile the main thread calls kmm_slab_stats, kmm_cache_stats and, now
 * and then, kmm_drain; the figures must be sane (active and cached objects
 * within the total, derived figures consistent). At the end the main thread
 * frees what it was handed, calls kmm_drain, and kmm_check must pass, no
 * cache may have active or cached objects, and the page allocator's
 * allocated_pages must be back at its initial value.
 *
 * Must be clean under TSan (make sanitize-thread). KMM_SEED repeats the
 * threads' random choices; KMM_THREADS_OPS sets the operations per thread
 * and phase.
 */
#include "kmm_test.h"

#include <kmm.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

#define MAX_THREADS 4
#define MAX_LIVE    256            /* objects a thread holds at most in phase A */
#define QCAP        64             /* a producer/consumer queue */
#define HANDED      48             /* objects each thread hands to main at exit */
#define PS          4096u
#define NR_CACHES   3              /* shared caches: plain, with a constructor, destroyed after phase A */
#define DOOMED      2
#define CTOR_SIZE   200

enum kind { KM_MALLOC, KM_CACHE };

struct item {
    unsigned char *p;
    size_t size;                   /* bytes the pattern covers */
    uint64_t tag;                  /* thread << 48 | serial */
    uint8_t kind;
    uint8_t cache;                 /* KM_CACHE: index in shared.cache */
};

struct queue {
    pthread_mutex_t lock;
    pthread_cond_t nonempty, nonfull;
    struct item q[QCAP];
    size_t head, n;
    bool closed;
};

struct shared {
    struct kmm *mm;
    unsigned nthreads;
    unsigned long ops;
    size_t max_slab;
    struct kmm_cache *cache[NR_CACHES];
    size_t cache_size[NR_CACHES];
    struct queue queue[MAX_THREADS / 2];
    pthread_barrier_t barrier;
    atomic_uint phase_done;        /* workers done with the current phase */
    struct item handed[MAX_THREADS][HANDED];
    size_t nhanded[MAX_THREADS];
};

struct worker {
    struct shared *sh;
    unsigned id;
    uint64_t rng;
    uint64_t serial;
    struct item live[MAX_LIVE];
    size_t nlive;
    unsigned long allocs, frees, cross_frees, reallocs, large;
};

static atomic_ulong ctor_calls;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "slab_threads FAILED: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* ---- patterns -------------------------------------------------------------- */

static uint64_t word_for(uint64_t tag, size_t wi)
{
    uint64_t x = tag ^ ((uint64_t)wi << 20) ^ 0x2545f4914f6cdd1dULL;
    x ^= x >> 31;
    x *= 0x9E3779B97F4A7C15ULL;
    return x ^ (x >> 29);
}

/* Writes or checks bytes [from, to) of the pattern; returns the bad offset or SIZE_MAX. */
static size_t span_io(unsigned char *p, uint64_t tag, size_t from, size_t to, bool write)
{
    for (size_t off = from; off < to;) {
        uint64_t w = word_for(tag, off >> 3);
        size_t wo = off & 7, n = 8 - wo < to - off ? 8 - wo : to - off;
        const unsigned char *src = (const unsigned char *)&w + wo;
        if (write)
            memcpy(p + off, src, n);
        else
            for (size_t i = 0; i < n; i++)
                if (p[off + i] != src[i])
                    return off + i;
        off += n;
    }
    return SIZE_MAX;
}

/* Every byte up to 2 KiB; beyond, the first and last 64 bytes of every 4 KiB
 * (of it->size bytes); of those, only the ones below limit. */
static size_t pattern_io_upto(const struct item *it, size_t limit, bool write)
{
    size_t len = it->size, bad;
    if (len <= 2048)
        return span_io(it->p, it->tag, 0, len < limit ? len : limit, write);
    for (size_t o = 0; o < len && o < limit; o += 4096) {
        size_t e = o + 4096 < len ? o + 4096 : len;
        size_t a1 = o, e1 = o + 64 < e ? o + 64 : e, a2 = e - 64 > e1 ? e - 64 : e1, e2 = e;
        if ((bad = span_io(it->p, it->tag, a1, e1 < limit ? e1 : limit, write)) != SIZE_MAX)
            return bad;
        if (a2 < limit && (bad = span_io(it->p, it->tag, a2, e2 < limit ? e2 : limit, write)) != SIZE_MAX)
            return bad;
    }
    return SIZE_MAX;
}

static size_t pattern_io(const struct item *it, bool write)
{
    return pattern_io_upto(it, SIZE_MAX, write);
}

static void ctor_fill(void *p)
{
    unsigned char *c = p;
    for (size_t i = 0; i < CTOR_SIZE; i++)
        c[i] = (unsigned char)(((uintptr_t)p >> 4) + i * 7);
}

static void ctor(void *p)
{
    atomic_fetch_add_explicit(&ctor_calls, 1, memory_order_relaxed);
    ctor_fill(p);
}

static void check_constructed(const unsigned char *p, const char *who)
{
    for (size_t i = 0; i < CTOR_SIZE; i++)
        if (p[i] != (unsigned char)(((uintptr_t)p >> 4) + i * 7))
            die("%s: object %p of the cache with a constructor is not in its constructed state (byte %zu)", who,
                (const void *)p, i);
}

static void verify(const struct item *it, const char *who)
{
    size_t bad = pattern_io(it, false);
    if (bad != SIZE_MAX)
        die("%s: %s object %p (%zu bytes, thread %u serial %llu): byte %zu was overwritten", who,
            it->kind == KM_CACHE ? "cache" : "kmm_malloc", (void *)it->p, it->size, (unsigned)(it->tag >> 48),
            (unsigned long long)(it->tag & 0xffffffffffffULL), bad);
}

/* ---- allocation and free ------------------------------------------------------ */

static uint64_t rnd(struct worker *w, uint64_t n)
{
    return kmm_test_rand(&w->rng) % n;
}

static size_t random_size(struct worker *w)
{
    uint64_t r = rnd(w, 100);
    if (r < 30)
        return (size_t)rnd(w, 65);
    if (r < 60)
        return 65 + (size_t)rnd(w, 448);
    if (r < 95)
        return 513 + (size_t)rnd(w, w->sh->max_slab - 512);
    w->large++;
    return w->sh->max_slab + 1 + (size_t)rnd(w, 3 * PS);
}

static void check_new(struct worker *w, const struct item *it, size_t align, const char *what)
{
    if (!it->p)
        die("thread %u: %s of %zu bytes failed (errno %d) with memory to spare", w->id, what, it->size, errno);
    size_t a = it->kind == KM_CACHE ? 8 : align > KMM_MALLOC_ALIGN ? align : KMM_MALLOC_ALIGN;
    if ((uintptr_t)it->p & (a - 1))
        die("thread %u: %s returned %p, not aligned to %zu", w->id, what, (void *)it->p, a);
    if (it->kind == KM_MALLOC && kmm_usable_size(w->sh->mm, it->p) < it->size)
        die("thread %u: %s returned %p with usable size %zu < %zu", w->id, what, (void *)it->p,
            kmm_usable_size(w->sh->mm, it->p), it->size);
}

/* A new object of a random kind, filled. */
static struct item new_item(struct worker *w, bool caches_too)
{
    struct shared *sh = w->sh;
    struct item it;
    memset(&it, 0, sizeof(it));
    it.tag = ((uint64_t)w->id << 48) | ++w->serial;
    uint64_t r = rnd(w, 100);
    if (caches_too && r < 35) {
        unsigned c = (unsigned)rnd(w, NR_CACHES);
        if (!sh->cache[c])
            c = 0;
        it.kind = KM_CACHE;
        it.cache = (uint8_t)c;
        it.size = sh->cache_size[c];
        it.p = kmm_cache_alloc(sh->cache[c], 0);
        check_new(w, &it, 0, "kmm_cache_alloc");
        if (c == 1)
            check_constructed(it.p, "kmm_cache_alloc");
    } else {
        it.kind = KM_MALLOC;
        it.size = random_size(w);
        if (r < 45) {
            it.p = kmm_calloc(sh->mm, 1, it.size, 0);
            check_new(w, &it, 0, "kmm_calloc");
            for (size_t i = 0; i < it.size; i++)
                if (it.p[i])
                    die("thread %u: kmm_calloc(%zu) byte %zu is not zero", w->id, it.size, i);
        } else if (r < 55) {
            size_t align = (size_t)32 << rnd(w, 7);
            it.p = kmm_malloc_aligned(sh->mm, it.size, align, 0);
            check_new(w, &it, align, "kmm_malloc_aligned");
        } else {
            it.p = kmm_malloc(sh->mm, it.size, 0);
            check_new(w, &it, 0, "kmm_malloc");
        }
    }
    pattern_io(&it, true);
    w->allocs++;
    return it;
}

static void free_item(struct kmm *mm, struct shared *sh, struct item *it, const char *who)
{
    verify(it, who);
    if (it->kind == KM_CACHE) {
        if (it->cache == 1)
            ctor_fill(it->p);
        kmm_cache_free(sh->cache[it->cache], it->p);
    } else {
        kmm_free(mm, it->p);
    }
    it->p = NULL;
}

static void do_realloc(struct worker *w, struct item *it)
{
    size_t size = random_size(w);
    if (size == 0)
        size = 1;
    verify(it, "before kmm_realloc");
    unsigned char *p = kmm_realloc(w->sh->mm, it->p, size, 0);
    if (!p)
        die("thread %u: kmm_realloc(%zu -> %zu) failed", w->id, it->size, size);
    struct item n = *it;
    n.p = p;
    size_t bad = pattern_io_upto(&n, size, false);   /* the pattern of the old size, of the bytes kept */
    if (bad != SIZE_MAX)
        die("thread %u: kmm_realloc(%zu -> %zu bytes) to %p: kept byte %zu changed", w->id, it->size, size,
            (void *)p, bad);
    n.size = size;
    if (kmm_usable_size(w->sh->mm, p) < size)
        die("thread %u: kmm_realloc to %zu: usable size %zu", w->id, size, kmm_usable_size(w->sh->mm, p));
    n.tag = ((uint64_t)w->id << 48) | ++w->serial;
    pattern_io(&n, true);
    *it = n;
    w->reallocs++;
}

/* ---- phases -------------------------------------------------------------------- */

static void phase_own(struct worker *w)
{
    struct shared *sh = w->sh;
    for (unsigned long i = 0; i < sh->ops; i++) {
        uint64_t r = rnd(w, 100);
        if (r < 48 && w->nlive < MAX_LIVE) {
            w->live[w->nlive++] = new_item(w, true);
        } else if (r < 56 && w->nlive && w->live[0].kind == KM_MALLOC) {
            do_realloc(w, &w->live[0]);
            struct item t = w->live[0];                    /* somewhere else next time */
            size_t k = (size_t)rnd(w, w->nlive);
            w->live[0] = w->live[k];
            w->live[k] = t;
        } else if (w->nlive) {
            size_t k = (size_t)rnd(w, w->nlive);
            free_item(sh->mm, sh, &w->live[k], "own free");
            w->live[k] = w->live[--w->nlive];
            w->frees++;
        }
    }
    while (w->nlive) {
        free_item(sh->mm, sh, &w->live[--w->nlive], "own free");
        w->frees++;
    }
    /* private caches made, used and destroyed while the other threads work */
    for (unsigned round = 0; round < 24; round++) {
        char name[32];
        snprintf(name, sizeof(name), "private-%u-%u", w->id, round);
        size_t size = 8 + (size_t)rnd(w, 3000);
        struct kmm_cache *c = kmm_cache_create(sh->mm, name, size, round % 3 ? 0 : 128, NULL);
        if (!c)
            die("thread %u: kmm_cache_create(%s, %zu) failed (errno %d)", w->id, name, size, errno);
        struct item tmp[100];
        for (size_t k = 0; k < 100; k++) {
            tmp[k].p = kmm_cache_alloc(c, k % 5 ? 0 : KMM_ZERO);
            tmp[k].size = size;
            tmp[k].tag = ((uint64_t)w->id << 48) | ++w->serial;
            tmp[k].kind = KM_CACHE;
            if (!tmp[k].p || ((uintptr_t)tmp[k].p & (round % 3 ? 7 : 127)))
                die("thread %u: kmm_cache_alloc of private cache %s = %p", w->id, name, (void *)tmp[k].p);
            pattern_io(&tmp[k], true);
            w->allocs++;
        }
        struct kmm_cache_stats cs;
        kmm_cache_stats(c, &cs);
        if (cs.active_objects != 100 || cs.object_size != size)
            die("thread %u: private cache %s: %zu active objects of %zu bytes, expected 100 of %zu", w->id, name,
                cs.active_objects, cs.object_size, size);
        for (size_t k = 0; k < 100; k++) {
            verify(&tmp[k], "private cache free");
            kmm_cache_free(c, tmp[k].p);
            w->frees++;
        }
        kmm_cache_destroy(c);   /* its objects are in this thread's magazine */
    }
    /* last, objects of the doomed cache into this thread's magazine: there when main destroys the cache */
    struct item d[12];
    for (size_t k = 0; k < 12; k++) {
        d[k].p = kmm_cache_alloc(sh->cache[DOOMED], 0);
        d[k].size = sh->cache_size[DOOMED];
        d[k].tag = ((uint64_t)w->id << 48) | ++w->serial;
        d[k].kind = KM_CACHE;
        d[k].cache = DOOMED;
        if (!d[k].p)
            die("thread %u: kmm_cache_alloc of the doomed cache failed", w->id);
        pattern_io(&d[k], true);
        w->allocs++;
    }
    for (size_t k = 0; k < 12; k++) {
        free_item(sh->mm, sh, &d[k], "own free");
        w->frees++;
    }
}

static void q_push(struct queue *q, const struct item *it)
{
    pthread_mutex_lock(&q->lock);
    while (q->n == QCAP)
        pthread_cond_wait(&q->nonfull, &q->lock);
    q->q[(q->head + q->n) % QCAP] = *it;
    q->n++;
    pthread_cond_signal(&q->nonempty);
    pthread_mutex_unlock(&q->lock);
}

static void q_close(struct queue *q)
{
    pthread_mutex_lock(&q->lock);
    q->closed = true;
    pthread_cond_broadcast(&q->nonempty);
    pthread_mutex_unlock(&q->lock);
}

/* false once the queue is closed and empty */
static bool q_pop(struct queue *q, struct item *it)
{
    pthread_mutex_lock(&q->lock);
    while (q->n == 0 && !q->closed)
        pthread_cond_wait(&q->nonempty, &q->lock);
    bool got = q->n != 0;
    if (got) {
        *it = q->q[q->head];
        q->head = (q->head + 1) % QCAP;
        q->n--;
        pthread_cond_signal(&q->nonfull);
    }
    pthread_mutex_unlock(&q->lock);
    return got;
}

static void phase_pipe(struct worker *w, unsigned round)
{
    struct shared *sh = w->sh;
    struct queue *q = &sh->queue[w->id / 2];
    bool producer = (w->id % 2) == round % 2;
    if (producer) {
        for (unsigned long i = 0; i < sh->ops; i++) {
            struct item it = new_item(w, true);
            q_push(q, &it);
        }
        q_close(q);
    } else {
        struct item it;
        while (q_pop(q, &it)) {
            free_item(sh->mm, sh, &it, "consumer (cross-thread) free");
            w->frees++;
            w->cross_frees++;
        }
    }
}

/* Fill the magazines, hand some objects to main, exit. */
static void phase_exit(struct worker *w)
{
    struct shared *sh = w->sh;
    struct item tmp[192];
    for (unsigned round = 0; round < 3; round++) {
        for (size_t i = 0; i < 192; i++)
            tmp[i] = new_item(w, true);
        for (size_t i = 0; i < 192; i++) {
            free_item(sh->mm, sh, &tmp[i], "free before exit");
            w->frees++;
        }
    }
    for (size_t i = 0; i < HANDED; i++)
        sh->handed[w->id][i] = new_item(w, true);
    sh->nhanded[w->id] = HANDED;
    /* and a few more frees, so that the magazines are not empty at exit */
    for (size_t i = 0; i < 32; i++) {
        struct item it = new_item(w, true);
        free_item(sh->mm, sh, &it, "free before exit");
        w->frees++;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct shared *sh = w->sh;
    phase_own(w);
    atomic_fetch_add(&sh->phase_done, 1);
    pthread_barrier_wait(&sh->barrier);   /* main: kmm_check, destroys the doomed cache */
    pthread_barrier_wait(&sh->barrier);
    for (unsigned round = 0; round < 2; round++) {
        phase_pipe(w, round);
        atomic_fetch_add(&sh->phase_done, 1);
        pthread_barrier_wait(&sh->barrier);   /* main resets the queues */
        pthread_barrier_wait(&sh->barrier);
    }
    phase_exit(w);
    atomic_fetch_add(&sh->phase_done, 1);
    return NULL;                              /* the magazines go back at thread exit */
}

/* ---- the main thread ------------------------------------------------------------- */

struct watch {
    unsigned long stats, cache_stats, drains;
};

static void sane(const struct kmm_cache_stats *s, const char *where)
{
    if (s->active_objects > s->total_objects || s->cached_objects > s->total_objects)
        die("%s: cache \"%s\": %zu active, %zu cached of %zu objects", where, s->name, s->active_objects,
            s->cached_objects, s->total_objects);
    if (s->pages != s->slabs * s->pages_per_slab || s->total_objects != s->slabs * s->objects_per_slab ||
        s->empty_slabs > s->slabs || s->objects_per_slab == 0 ||
        s->objects_per_slab * s->slot_size > s->pages_per_slab * PS || s->slot_size < s->object_size)
        die("%s: cache \"%s\": %zu slabs (%zu empty) of %zu pages and %zu objects of %zu (slot %zu) bytes, "
            "%zu pages, %zu objects: inconsistent", where, s->name, s->slabs, s->empty_slabs, s->pages_per_slab,
            s->objects_per_slab, s->object_size, s->slot_size, s->pages, s->total_objects);
}

/* Stats and drains until the workers are done with the phase. */
static void watch(struct shared *sh, uint64_t *rng, struct watch *wt, unsigned until)
{
    static struct kmm_cache_stats st[512];
    while (atomic_load(&sh->phase_done) < until) {
        uint64_t r = kmm_test_rand(rng) % 32;
        if (r == 0) {
            kmm_drain(sh->mm);
            wt->drains++;
        } else if (r < 8) {
            size_t n = kmm_slab_stats(sh->mm, st, 512);
            for (size_t i = 0; i < n && i < 512; i++)
                sane(&st[i], "concurrent kmm_slab_stats");
            wt->stats++;
        } else if (r < 16) {
            struct kmm_cache_stats cs;
            unsigned c = (unsigned)(r % 2);        /* not the doomed one: main destroys it */
            kmm_cache_stats(sh->cache[c], &cs);
            sane(&cs, "concurrent kmm_cache_stats");
            wt->cache_stats++;
        } else {
            sched_yield();
        }
    }
}

static void check_quiet(struct shared *sh, size_t init_allocated, const char *when)
{
    static struct kmm_cache_stats st[512];
    kmm_drain(sh->mm);
    if (kmm_check(sh->mm) != 0)
        die("%u threads: kmm_check failed %s", sh->nthreads, when);
    size_t n = kmm_slab_stats(sh->mm, st, 512);
    for (size_t i = 0; i < n && i < 512; i++) {
        sane(&st[i], when);
        if (st[i].active_objects || st[i].cached_objects)
            die("%u threads, %s: cache \"%s\" has %zu active and %zu cached objects", sh->nthreads, when, st[i].name,
                st[i].active_objects, st[i].cached_objects);
    }
    struct kmm_page_stats ps;
    kmm_page_stats(sh->mm, &ps);
    if (ps.allocated_pages != init_allocated)
        die("%u threads, %s: %zu pages allocated, initially %zu", sh->nthreads, when, ps.allocated_pages,
            init_allocated);
}

static void run(unsigned nthreads, unsigned long ops, uint64_t seed)
{
    struct shared *sh = calloc(1, sizeof(*sh));
    struct worker *ws = calloc(nthreads, sizeof(*ws));
    pthread_t th[MAX_THREADS];
    if (!sh || !ws)
        die("out of memory");
    sh->mm = kmm_test_create(PS, 512ull << 20);
    sh->nthreads = nthreads;
    sh->ops = ops;
    sh->max_slab = kmm_malloc_max_slab_size(sh->mm);
    if (sh->max_slab <= 512)
        die("kmm_malloc_max_slab_size = %zu", sh->max_slab);
    struct kmm_page_stats ps;
    kmm_page_stats(sh->mm, &ps);
    size_t init_allocated = ps.allocated_pages;
    static const char *const names[NR_CACHES] = { "threads-plain", "threads-ctor", "threads-doomed" };
    static const size_t sizes[NR_CACHES] = { 72, CTOR_SIZE, 520 };
    for (unsigned c = 0; c < NR_CACHES; c++) {
        sh->cache_size[c] = sizes[c];
        sh->cache[c] = kmm_cache_create(sh->mm, names[c], sizes[c], c == 2 ? 64 : 0, c == 1 ? ctor : NULL);
        if (!sh->cache[c])
            die("kmm_cache_create(%s) failed", names[c]);
    }
    pthread_barrier_init(&sh->barrier, NULL, nthreads + 1);
    for (unsigned i = 0; i < nthreads / 2; i++) {
        pthread_mutex_init(&sh->queue[i].lock, NULL);
        pthread_cond_init(&sh->queue[i].nonempty, NULL);
        pthread_cond_init(&sh->queue[i].nonfull, NULL);
    }
    for (unsigned i = 0; i < nthreads; i++) {
        ws[i].sh = sh;
        ws[i].id = i;
        ws[i].rng = seed + 0x9E3779B97F4A7C15ULL * (i + 1);
        if (pthread_create(&th[i], NULL, worker_main, &ws[i]) != 0)
            die("pthread_create failed");
    }
    struct watch wt = { 0, 0, 0 };
    uint64_t rng = seed ^ 0x5bd1e995;

    /* A, then D: the workers wait, their magazines hold objects of every cache */
    watch(sh, &rng, &wt, nthreads);
    pthread_barrier_wait(&sh->barrier);
    if (kmm_check(sh->mm) != 0)
        die("%u threads: kmm_check failed after phase A", nthreads);
    struct kmm_cache_stats cs;
    kmm_cache_stats(sh->cache[DOOMED], &cs);
    if (cs.active_objects != 0)
        die("%u threads: after phase A the doomed cache has %zu active objects, all were freed", nthreads,
            cs.active_objects);
    size_t doomed_cached = cs.cached_objects;
    kmm_page_stats(sh->mm, &ps);
    size_t before_destroy = ps.allocated_pages;
    kmm_cache_destroy(sh->cache[DOOMED]);
    sh->cache[DOOMED] = NULL;
    kmm_page_stats(sh->mm, &ps);
    if (ps.allocated_pages + cs.pages != before_destroy)
        die("%u threads: destroying a cache of %zu pages (%zu objects in idle threads' magazines) freed %zu pages",
            nthreads, cs.pages, doomed_cached, before_destroy - ps.allocated_pages);
    {
        static struct kmm_cache_stats st[512];
        size_t n = kmm_slab_stats(sh->mm, st, 512);
        for (size_t i = 0; i < n && i < 512; i++)
            if (strcmp(st[i].name, names[DOOMED]) == 0)
                die("%u threads: the destroyed cache is still listed by kmm_slab_stats", nthreads);
    }
    if (kmm_check(sh->mm) != 0)
        die("%u threads: kmm_check failed after destroying a cache", nthreads);
    pthread_barrier_wait(&sh->barrier);

    /* B, twice */
    for (unsigned round = 0; round < 2; round++) {
        watch(sh, &rng, &wt, nthreads * (round + 2));
        pthread_barrier_wait(&sh->barrier);
        for (unsigned i = 0; i < nthreads / 2; i++) {
            if (sh->queue[i].n)
                die("%u threads: a queue kept %zu objects", nthreads, sh->queue[i].n);
            sh->queue[i].closed = false;
            sh->queue[i].head = 0;
        }
        if (kmm_check(sh->mm) != 0)
            die("%u threads: kmm_check failed after producer/consumer round %u", nthreads, round);
        pthread_barrier_wait(&sh->barrier);
    }

    /* C: the workers exit with full magazines; the stats go on while they exit */
    watch(sh, &rng, &wt, nthreads * 4);
    bool joined[MAX_THREADS] = { false };
    for (unsigned left = nthreads; left;) {
        static struct kmm_cache_stats st[512];
        size_t n = kmm_slab_stats(sh->mm, st, 512);
        for (size_t i = 0; i < n && i < 512; i++)
            sane(&st[i], "kmm_slab_stats while threads exit");
        wt.stats++;
        for (unsigned i = 0; i < nthreads; i++)
            if (!joined[i] && pthread_tryjoin_np(th[i], NULL) == 0) {
                joined[i] = true;
                left--;
            }
    }
    size_t handed_per_cache[NR_CACHES] = { 0 };
    for (unsigned i = 0; i < nthreads; i++)
        for (size_t k = 0; k < sh->nhanded[i]; k++)
            if (sh->handed[i][k].kind == KM_CACHE)
                handed_per_cache[sh->handed[i][k].cache]++;
    for (unsigned c = 0; c < NR_CACHES; c++) {
        if (!sh->cache[c])
            continue;
        kmm_cache_stats(sh->cache[c], &cs);
        if (cs.cached_objects != 0)
            die("%u threads: after the threads exited, cache \"%s\" has %zu cached objects (the exited threads' "
                "magazines were not given back)", nthreads, cs.name, cs.cached_objects);
        if (cs.active_objects != handed_per_cache[c])
            die("%u threads: after the threads exited, cache \"%s\" has %zu active objects; main holds %zu", nthreads,
                cs.name, cs.active_objects, handed_per_cache[c]);
    }
    {
        static struct kmm_cache_stats st[512];
        size_t n = kmm_slab_stats(sh->mm, st, 512);
        for (size_t i = 0; i < n && i < 512; i++)
            if (st[i].cached_objects)
                die("%u threads: after the threads exited, cache \"%s\" has %zu cached objects", nthreads,
                    st[i].name, st[i].cached_objects);
    }
    if (kmm_check(sh->mm) != 0)
        die("%u threads: kmm_check failed after the threads exited", nthreads);
    unsigned long handed = 0;
    for (unsigned i = 0; i < nthreads; i++)
        for (size_t k = 0; k < sh->nhanded[i]; k++, handed++)
            free_item(sh->mm, sh, &sh->handed[i][k], "main thread free");
    check_quiet(sh, init_allocated, "at the end");
    for (unsigned c = 0; c < NR_CACHES; c++)
        kmm_cache_destroy(sh->cache[c]);
    check_quiet(sh, init_allocated, "after the caches were destroyed");

    unsigned long allocs = 0, frees = 0, cross = 0, reallocs = 0, large = 0;
    for (unsigned i = 0; i < nthreads; i++) {
        allocs += ws[i].allocs;
        frees += ws[i].frees;
        cross += ws[i].cross_frees;
        reallocs += ws[i].reallocs;
        large += ws[i].large;
    }
    if (allocs != frees + handed)
        die("%u threads: %lu allocations, %lu frees + %lu by main", nthreads, allocs, frees, handed);
    printf("  %u threads: %lu allocations (%lu reallocs, %lu large), %lu frees (%lu cross-thread, %lu by main); "
           "meanwhile %lu kmm_slab_stats, %lu kmm_cache_stats, %lu kmm_drain; a cache with %zu objects in idle "
           "threads' magazines destroyed\n",
           nthreads, allocs, reallocs, large, frees + handed, cross, handed, wt.stats, wt.cache_stats, wt.drains,
           doomed_cached);
    fflush(stdout);
    for (unsigned i = 0; i < nthreads / 2; i++) {
        pthread_mutex_destroy(&sh->queue[i].lock);
        pthread_cond_destroy(&sh->queue[i].nonempty);
        pthread_cond_destroy(&sh->queue[i].nonfull);
    }
    pthread_barrier_destroy(&sh->barrier);
    kmm_destroy(sh->mm);
    free(ws);
    free(sh);
}

int main(void)
{
    uint64_t seed = kmm_test_seed("slab_threads");
    const char *env = getenv("KMM_THREADS_OPS");
    unsigned long ops = env ? strtoul(env, NULL, 0) : (UNDER_TSAN ? 40000 : 500000);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run(2, ops, seed);
    run(4, ops, seed ^ 0x5555);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("slab_threads: OK, %lu operations per thread and phase with 2 and 4 threads, %lu constructor calls, "
           "%.1f s\n", ops, atomic_load(&ctor_calls),
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
