/* slab_fault.c - injected failures of the slab layer's page and metadata allocations.
 *
 * kmm_fault_inject(mm, KMM_FAULT_PAGES | KMM_FAULT_META, k, times) makes the
 * k-th allocation of a slab, of a large kmm_malloc block or of metadata (the
 * slab layer's root and size-class caches, cache descriptors, slab
 * descriptors, magazines) fail - only that one (times 1), or every one from
 * the k-th on (times 0). For k = 1, 2, ... until a run injects nothing, in both
 * modes, a fresh memory system runs a fixed workload: caches created (one with
 * a constructor), kmm_malloc of many sizes (small classes, the largest class,
 * blocks of pages), kmm_calloc, kmm_malloc_aligned (within and beyond a page),
 * a chain of kmm_realloc growing and shrinking one object, cache objects,
 * hundreds of small objects (many slabs), kmm_drain and kmm_check in the
 * middle, and a second thread that allocates (its magazines are made - or
 * fail to be - on its first use of each cache), frees some, hands the rest to
 * the main thread and exits. Throughout:
 *
 *  - every call either succeeds or returns NULL with errno ENOMEM, and a NULL
 *    only when a failure was injected during that very call (64 MiB of
 *    memory: nothing else may fail); a failed kmm_realloc leaves the object
 *    as it was;
 *  - when only the k-th call fails, doing the same call again succeeds;
 *  - successful objects are filled with a pattern and checked before they
 *    are freed; KMM_ZERO memory and constructed objects are checked;
 *  - kmm_check passes in the middle and at the end; after everything is
 *    freed, the caches destroyed, injection turned off and kmm_drain, the
 *    page allocator's allocated_pages is back at its initial value and no
 *    cache has an active object; the layer still works.
 *
 * Then 36 concurrent runs: three new threads allocate and free at once while
 * failures are injected (counted over all threads, so which call fails varies):
 * every NULL must carry ENOMEM, and the accounting must hold at the end.
 */
#include "kmm_test.h"

#include <kmm.h>

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PS        4096u
#define MAX_OBJS  1024
#define NCACHES   3
#define CTOR_SIZE 300

struct obj {
    unsigned char *p;
    size_t size;
    uint64_t tag;
    int cache;                     /* -1: kmm_malloc memory */
};

struct run {
    struct kmm *mm;
    bool times1;                   /* only the k-th call fails */
    struct kmm_cache *cache[NCACHES];
    struct obj objs[MAX_OBJS];
    size_t n;
    uint64_t tag;
    unsigned long calls, nulls, retried;
};

static unsigned long run_k;
static const char *run_mode;
static size_t max_slab;            /* kmm_malloc_max_slab_size for 4 KiB pages */
static unsigned long total_nulls, total_retried, total_calls;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "slab_fault FAILED (%s, k = %lu): ", run_mode, run_k);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* ---- patterns ------------------------------------------------------------------- */

static unsigned char pat(uint64_t tag, size_t i)
{
    uint64_t x = (tag << 24) ^ (i >> 3) ^ 0x9E3779B97F4A7C15ULL;
    x *= 0xbf58476d1ce4e5b9ULL;
    return (unsigned char)(x >> (56 - 8 * (i & 7)));
}

/* Every byte up to 8 KiB, beyond that the first and last 256 bytes of every 4 KiB. */
static bool sampled(size_t size, size_t i)
{
    return size <= 8192 || (i & (PS - 1)) < 256 || (i & (PS - 1)) >= PS - 256 || i + 256 >= size;
}

static void fill(const struct obj *o)
{
    for (size_t i = 0; i < o->size; i++)
        if (sampled(o->size, i))
            o->p[i] = pat(o->tag, i);
}

/* Checks the first len bytes of o's pattern. */
static void verify_upto(const struct obj *o, size_t len, const char *when)
{
    for (size_t i = 0; i < len && i < o->size; i++)
        if (sampled(o->size, i) && o->p[i] != pat(o->tag, i))
            die("%s: object %p (%zu bytes, %s): byte %zu is 0x%02x, expected 0x%02x", when, (void *)o->p, o->size,
                o->cache < 0 ? "kmm_malloc" : "cache object", i, o->p[i], pat(o->tag, i));
}

static void ctor(void *p)
{
    memset(p, 0xc7, CTOR_SIZE);
}

static void check_zero(const unsigned char *p, size_t len, const char *what)
{
    for (size_t i = 0; i < len; i++)
        if (p[i])
            die("%s: KMM_ZERO memory %p byte %zu is 0x%02x", what, (const void *)p, i, p[i]);
}

/* ---- one call, checked ------------------------------------------------------------- */

enum op { OP_MALLOC, OP_CALLOC, OP_ALIGNED, OP_CACHE };

struct call {
    enum op op;
    size_t size, n, align;
    unsigned flags;
    int cache;
};

static void *do_call(struct run *r, const struct call *c)
{
    switch (c->op) {
    case OP_MALLOC:
        return kmm_malloc(r->mm, c->size, c->flags);
    case OP_CALLOC:
        return kmm_calloc(r->mm, c->n, c->size, c->flags);
    case OP_ALIGNED:
        return kmm_malloc_aligned(r->mm, c->size, c->align, c->flags);
    case OP_CACHE:
    default:
        return kmm_cache_alloc(r->cache[c->cache], c->flags);
    }
}

static void describe(const struct call *c, char *buf, size_t len)
{
    static const char *const names[] = { "kmm_malloc", "kmm_calloc", "kmm_malloc_aligned", "kmm_cache_alloc" };
    snprintf(buf, len, "%s(size %zu, n %zu, align %zu, flags 0x%x, cache %d)", names[c->op], c->size, c->n, c->align,
             c->flags, c->cache);
}

/* Was a NULL result clean (errno ENOMEM, a failure injected during the call)? */
static void check_null(struct run *r, unsigned long injected_before, int err, const char *what)
{
    r->nulls++;
    if (kmm_fault_injected(r->mm) == injected_before)
        die("%s returned NULL (errno %d) without an injected failure", what, err);
    if (err != ENOMEM)
        die("%s returned NULL with errno %d, expected ENOMEM", what, err);
}

/* Makes the call; NULL results are checked (and, with one failure only,
 * retried: the retry must succeed). A success is recorded and filled. */
static void *call(struct run *r, const struct call *c)
{
    char what[160];
    unsigned long before = kmm_fault_injected(r->mm);
    errno = 0;
    unsigned char *p = do_call(r, c);
    r->calls++;
    if (!p) {
        describe(c, what, sizeof(what));
        check_null(r, before, errno, what);
        if (!r->times1)
            return NULL;
        r->retried++;
        errno = 0;
        p = do_call(r, c);
        if (!p)
            die("%s failed again (errno %d) after its one injected failure", what, errno);
    }
    describe(c, what, sizeof(what));
    size_t size = c->op == OP_CACHE ? (c->cache == 1 ? CTOR_SIZE : c->size) : c->op == OP_CALLOC ? c->n * c->size
                                                                                           : c->size;
    size_t align = c->op == OP_ALIGNED && c->align > KMM_MALLOC_ALIGN ? c->align : c->op == OP_CACHE ? 8 : KMM_MALLOC_ALIGN;
    if ((uintptr_t)p & (align - 1))
        die("%s returned %p, misaligned", what, (void *)p);
    if (c->op != OP_CACHE && kmm_usable_size(r->mm, p) < size)
        die("%s returned %p with usable size %zu", what, (void *)p, kmm_usable_size(r->mm, p));
    if ((c->flags & KMM_ZERO) || c->op == OP_CALLOC)
        check_zero(p, size, what);
    if (c->op == OP_CACHE && c->cache == 1)
        for (size_t i = 0; i < CTOR_SIZE; i++)
            if (p[i] != 0xc7)
                die("%s: object %p is not in its constructed state", what, (void *)p);
    if (r->n == MAX_OBJS)
        die("test: too many objects");
    struct obj *o = &r->objs[r->n++];
    o->p = p;
    o->size = size;
    o->tag = ++r->tag;
    o->cache = c->op == OP_CACHE ? c->cache : -1;
    fill(o);
    return p;
}

static struct kmm_cache *conc_caches[2];
static struct kmm *conc_mm;

/* Frees o: into r's memory system and caches, or (r NULL) the concurrent run's. */
static void free_obj(struct run *r, struct obj *o)
{
    verify_upto(o, o->size, "before the free");
    if (o->cache >= 0) {
        if (o->cache == 1)
            memset(o->p, 0xc7, CTOR_SIZE);     /* back in its constructed state */
        kmm_cache_free(r ? r->cache[o->cache] : conc_caches[o->cache], o->p);
    } else {
        kmm_free(r ? r->mm : conc_mm, o->p);
    }
    o->p = NULL;
}

/* ---- the helper thread -------------------------------------------------------------- */

struct helper {
    struct run *r;
    struct obj out[64];
    size_t nout;
    unsigned long nulls, retried;
};

static void *helper_main(void *arg)
{
    struct helper *h = arg;
    struct run *r = h->r;
    static const size_t sizes[] = { 24, 200, 1500, 3000, 9000 };
    struct obj tmp[40];
    size_t ntmp = 0;
    for (unsigned i = 0; i < 40; i++) {
        unsigned long before = kmm_fault_injected(r->mm);
        unsigned char *p;
        size_t size;
        int cache = -1;
        errno = 0;
        if (i % 4 == 3 && r->cache[i % NCACHES]) {
            cache = (int)(i % NCACHES);
            size = cache == 1 ? CTOR_SIZE : cache == 0 ? 40 : 5000;
            p = kmm_cache_alloc(r->cache[cache], 0);
        } else {
            size = sizes[i % 5];
            p = kmm_malloc(r->mm, size, 0);
        }
        if (!p) {
            /* checked like call(): an injected failure during this call, ENOMEM */
            int err = errno;
            h->nulls++;
            if (kmm_fault_injected(r->mm) == before)
                die("helper thread: allocation of %zu bytes returned NULL (errno %d) without an injected failure",
                    size, err);
            if (err != ENOMEM)
                die("helper thread: allocation returned NULL with errno %d, expected ENOMEM", err);
            continue;
        }
        struct obj o = { p, size, 0x7000 + i, cache };
        if (cache == 1)
            for (size_t b = 0; b < CTOR_SIZE; b++)
                if (p[b] != 0xc7)
                    die("helper thread: object of the cache with a constructor is not constructed");
        fill(&o);
        tmp[ntmp++] = o;
    }
    /* half freed here, half handed to the main thread (cross-thread frees) */
    for (size_t i = 0; i < ntmp; i++) {
        if (i % 2)
            h->out[h->nout++] = tmp[i];
        else
            free_obj(r, &tmp[i]);
    }
    return NULL;   /* its magazines go back at thread exit */
}

/* ---- the workload -------------------------------------------------------------------- */

static void workload(struct run *r)
{
    struct kmm *mm = r->mm;
    /* caches */
    static const size_t csize[NCACHES] = { 40, CTOR_SIZE, 5000 };
    static const size_t calign[NCACHES] = { 0, 0, 64 };
    for (int c = 0; c < NCACHES; c++) {
        unsigned long before = kmm_fault_injected(mm);
        errno = 0;
        r->cache[c] = kmm_cache_create(mm, c == 0 ? "fault-40" : c == 1 ? "fault-ctor" : "fault-5000", csize[c],
                                       calign[c], c == 1 ? ctor : NULL);
        r->calls++;
        if (!r->cache[c]) {
            check_null(r, before, errno, "kmm_cache_create");
            if (r->times1) {
                r->retried++;
                r->cache[c] = kmm_cache_create(mm, "fault-retry", csize[c], calign[c], c == 1 ? ctor : NULL);
                if (!r->cache[c])
                    die("kmm_cache_create failed again after its one injected failure");
            }
        }
    }

    /* kmm_malloc of many sizes, with and without flags */
    const size_t sizes[] = { 0, 1, 8, 16, 17, 100, 500, 1000, 2000, max_slab - 1, max_slab, max_slab + 1,
                             3 * PS, 5 * PS + 7, 20000, 100000 };
    static const unsigned flags[] = { 0, KMM_ZERO, KMM_AREA(1), KMM_AREAS_BELOW(1) | KMM_ZERO };
    for (unsigned round = 0; round < 2; round++)
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            struct call c = { OP_MALLOC, sizes[i], 0, 0, flags[(i + round) % 4], 0 };
            call(r, &c);
        }
    for (size_t i = 0; i < 6; i++) {
        struct call c = { OP_CALLOC, 10 + 700 * i, 1 + i, 0, 0, 0 };
        call(r, &c);
    }
    static const size_t al[][2] = { { 100, 64 }, { 3000, 1024 }, { 100, 2 * PS }, { 5 * PS, 4 * PS }, { 10, 4096 },
                                    { 0, 256 }, { 1000, 32 } };
    for (size_t i = 0; i < sizeof(al) / sizeof(al[0]); i++) {
        struct call c = { OP_ALIGNED, al[i][0], 0, al[i][1], i % 2 ? KMM_ZERO : 0, 0 };
        call(r, &c);
    }

    /* one object grown and shrunk by kmm_realloc */
    struct call c0 = { OP_MALLOC, 10, 0, 0, 0, 0 };
    if (call(r, &c0)) {
        struct obj *o = &r->objs[r->n - 1];
        static const size_t steps[] = { 100, 1000, 3000, 10000, 50000, 20000, 500, 30, 7000 };
        for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
            char what[64];
            snprintf(what, sizeof(what), "kmm_realloc(%zu -> %zu bytes)", o->size, steps[s]);
            unsigned zf = s % 3 == 0 ? KMM_ZERO : 0;
            size_t old_usable = kmm_usable_size(mm, o->p);
            unsigned long before = kmm_fault_injected(mm);
            errno = 0;
            unsigned char *p = kmm_realloc(mm, o->p, steps[s], zf);
            r->calls++;
            if (!p) {
                check_null(r, before, errno, what);
                verify_upto(o, o->size, "after a failed kmm_realloc");
                if (kmm_usable_size(mm, o->p) != old_usable)
                    die("%s failed and changed the usable size", what);
                if (!r->times1)
                    continue;
                r->retried++;
                p = kmm_realloc(mm, o->p, steps[s], zf);
                if (!p)
                    die("%s failed again after its one injected failure", what);
            }
            struct obj n = *o;
            n.p = p;
            verify_upto(&n, steps[s] < o->size ? steps[s] : o->size, what);
            if (zf && steps[s] > old_usable)
                check_zero(p + old_usable, steps[s] - old_usable, what);
            n.size = steps[s];
            n.tag = ++r->tag;
            fill(&n);
            *o = n;
        }
    }

    /* cache objects, and many small objects: many slabs */
    for (unsigned i = 0; i < 60; i++) {
        int cc = (int)(i % NCACHES);
        if (!r->cache[cc])
            continue;
        struct call c = { OP_CACHE, csize[cc], 0, 0, cc != 1 && i % 7 == 0 ? KMM_ZERO : 0, cc };
        call(r, &c);
    }
    for (unsigned i = 0; i < 200; i++) {
        struct call c = { OP_MALLOC, 32 + (i % 5) * 200, 0, 0, 0, 0 };
        call(r, &c);
    }
    kmm_drain(mm);
    if (kmm_check(mm) != 0)
        die("kmm_check failed in the middle");

    /* a second thread */
    struct helper h;
    memset(&h, 0, sizeof(h));
    h.r = r;
    pthread_t t;
    if (pthread_create(&t, NULL, helper_main, &h) != 0)
        die("pthread_create failed");
    pthread_join(t, NULL);
    r->nulls += h.nulls;
    for (size_t i = 0; i < h.nout; i++)
        free_obj(r, &h.out[i]);

    /* free in two passes (every other one first: partial slabs) */
    for (size_t i = 0; i < r->n; i += 2)
        free_obj(r, &r->objs[i]);
    if (kmm_check(mm) != 0)
        die("kmm_check failed after freeing half");
    for (size_t i = 1; i < r->n; i += 2)
        free_obj(r, &r->objs[i]);
    for (int c = 0; c < NCACHES; c++)
        kmm_cache_destroy(r->cache[c]);
}

/* ---- concurrent runs -------------------------------------------------------------------
 * Three threads (each new, so each makes its magazines under injection) run a
 * mixed workload at once while failures are injected - the k-th call, k and
 * the two after it, or every call from the k-th on - counted over all threads,
 * so which call fails varies from run to run. Every NULL must carry ENOMEM and
 * some failure must have been injected by then; whatever succeeded is checked
 * and freed; at the end the usual accounting must hold. */

#define CONC_THREADS 3
#define CONC_OBJS    300

struct conc {
    struct kmm *mm;
    struct kmm_cache *cache[2];
    unsigned id;
    unsigned long nulls;
};

static void *conc_main(void *arg)
{
    struct conc *cc = arg;
    struct kmm *mm = cc->mm;
    struct obj objs[CONC_OBJS];
    size_t n = 0;
    uint64_t rng = 0x9E3779B97F4A7C15ULL * (cc->id + 1) + run_k;
    for (unsigned i = 0; i < 3 * CONC_OBJS; i++) {
        uint64_t r = kmm_test_rand(&rng);
        if (n == CONC_OBJS || (n && r % 3 == 0)) {
            size_t k = (size_t)(r >> 8) % n;
            free_obj(NULL, &objs[k]);             /* cache objects name their cache through free_obj's run */
            objs[k] = objs[--n];
            continue;
        }
        struct obj o = { NULL, 0, ((uint64_t)cc->id << 40) | i, -1 };
        errno = 0;
        switch ((r >> 16) % 6) {
        case 0:
            o.size = 8 + (size_t)((r >> 24) % 3 * PS);
            o.p = kmm_malloc(mm, o.size, 0);
            break;
        case 1:
            o.size = 1 + (size_t)((r >> 24) % 500);
            o.p = kmm_malloc(mm, o.size, (r >> 40) % 4 == 0 ? KMM_AREA(1) : 0);
            break;
        case 2:
            o.size = 1 + (size_t)((r >> 24) % 3000);
            o.p = kmm_calloc(mm, 1, o.size, 0);
            break;
        case 3:
            o.size = 1 + (size_t)((r >> 24) % 5000);
            o.p = kmm_malloc_aligned(mm, o.size, (size_t)64 << ((r >> 40) % 8), 0);
            break;
        default:
            o.cache = (int)((r >> 24) % 2);
            o.size = o.cache ? CTOR_SIZE : 40;
            o.p = kmm_cache_alloc(cc->cache[o.cache], 0);
            break;
        }
        if (!o.p) {
            int err = errno;
            cc->nulls++;
            if (err != ENOMEM)
                die("concurrent thread %u: allocation returned NULL with errno %d, expected ENOMEM", cc->id, err);
            if (kmm_fault_injected(mm) == 0)
                die("concurrent thread %u: allocation returned NULL before any failure was injected", cc->id);
            continue;
        }
        if (o.cache == 1)
            for (size_t b = 0; b < CTOR_SIZE; b++)
                if (o.p[b] != 0xc7)
                    die("concurrent thread %u: object of the cache with a constructor is not constructed", cc->id);
        fill(&o);
        objs[n++] = o;
    }
    while (n)
        free_obj(NULL, &objs[--n]);
    return NULL;
}

static unsigned long concurrent_runs(void)
{
    static const unsigned long ks[] = { 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233 };
    unsigned long nulls = 0;
    for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++) {
        for (unsigned mode = 0; mode < 3; mode++) {
            run_k = ks[i];
            run_mode = mode == 0 ? "concurrent, the k-th call fails" : mode == 1 ? "concurrent, calls k .. k + 2 fail"
                                                                               : "concurrent, every call from k on fails";
            struct kmm *mm = kmm_test_create(PS, 64ull << 20);
            conc_mm = mm;
            struct kmm_page_stats st0, st;
            kmm_page_stats(mm, &st0);
            conc_caches[0] = kmm_cache_create(mm, "conc-40", 40, 0, NULL);
            conc_caches[1] = kmm_cache_create(mm, "conc-ctor", CTOR_SIZE, 0, ctor);
            if (!conc_caches[0] || !conc_caches[1])
                die("kmm_cache_create failed without injection");
            kmm_fault_inject(mm, KMM_FAULT_PAGES | KMM_FAULT_META, ks[i], mode == 0 ? 1 : mode == 1 ? 3 : 0);
            struct conc cc[CONC_THREADS];
            pthread_t t[CONC_THREADS];
            for (unsigned k = 0; k < CONC_THREADS; k++) {
                cc[k].mm = mm;
                cc[k].cache[0] = conc_caches[0];
                cc[k].cache[1] = conc_caches[1];
                cc[k].id = k;
                cc[k].nulls = 0;
                if (pthread_create(&t[k], NULL, conc_main, &cc[k]) != 0)
                    die("pthread_create failed");
            }
            for (unsigned k = 0; k < CONC_THREADS; k++) {
                pthread_join(t[k], NULL);
                nulls += cc[k].nulls;
            }
            kmm_fault_inject(mm, 0, 0, 0);
            kmm_cache_destroy(conc_caches[0]);
            kmm_cache_destroy(conc_caches[1]);
            kmm_drain(mm);
            if (kmm_check(mm) != 0)
                die("kmm_check failed after a concurrent run");
            kmm_page_stats(mm, &st);
            if (st.allocated_pages != st0.allocated_pages)
                die("after a concurrent run %zu pages are allocated, initially %zu", st.allocated_pages,
                    st0.allocated_pages);
            kmm_destroy(mm);
        }
    }
    return nulls;
}

/* One run; returns whether a failure was injected. */
static bool one_run(unsigned long k, bool times1)
{
    struct run *r = calloc(1, sizeof(*r));
    if (!r)
        die("out of memory");
    run_k = k;
    r->times1 = times1;
    r->mm = kmm_test_create(PS, 64ull << 20);
    struct kmm_page_stats st0, st;
    kmm_page_stats(r->mm, &st0);
    kmm_fault_inject(r->mm, KMM_FAULT_PAGES | KMM_FAULT_META, k, times1 ? 1 : 0);
    workload(r);
    unsigned long injected = kmm_fault_injected(r->mm);
    kmm_fault_inject(r->mm, 0, 0, 0);
    if (kmm_fault_injected(r->mm) != 0)
        die("kmm_fault_injected is not 0 after kmm_fault_inject(0)");
    if (r->nulls > injected)
        die("%lu calls returned NULL but only %lu failures were injected", r->nulls, injected);
    kmm_drain(r->mm);
    if (kmm_check(r->mm) != 0)
        die("kmm_check failed at the end");
    struct kmm_cache_stats cs[256];
    size_t n = kmm_slab_stats(r->mm, cs, 256);
    for (size_t i = 0; i < n && i < 256; i++)
        if (cs[i].active_objects || cs[i].cached_objects)
            die("at the end cache \"%s\" has %zu active and %zu cached objects", cs[i].name, cs[i].active_objects,
                cs[i].cached_objects);
    kmm_page_stats(r->mm, &st);
    if (st.allocated_pages != st0.allocated_pages)
        die("at the end %zu pages are allocated, initially %zu (%lu failures injected)", st.allocated_pages,
            st0.allocated_pages, injected);
    /* the layer still works */
    void *p = kmm_malloc(r->mm, 100, 0), *q = kmm_malloc(r->mm, 3 * PS, 0);
    struct kmm_cache *c = kmm_cache_create(r->mm, "after", 64, 0, NULL);
    void *o = c ? kmm_cache_alloc(c, 0) : NULL;
    if (!p || !q || !c || !o)
        die("after the run (injection off) allocations fail: %p %p %p %p", p, q, (void *)c, o);
    kmm_free(r->mm, p);
    kmm_free(r->mm, q);
    kmm_cache_free(c, o);
    kmm_cache_destroy(c);
    if (kmm_check(r->mm) != 0)
        die("kmm_check failed after the final allocations");
    total_nulls += r->nulls;
    total_retried += r->retried;
    total_calls += r->calls;
    kmm_destroy(r->mm);
    free(r);
    return injected != 0;
}

int main(void)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct kmm *probe = kmm_test_create(PS, 64ull << 20);
    max_slab = kmm_malloc_max_slab_size(probe);
    kmm_destroy(probe);
    if (max_slab < 1024)
        die("kmm_malloc_max_slab_size = %zu", max_slab);
    unsigned long total_k = 0, last_k[2];
    for (int mode = 0; mode < 2; mode++) {
        run_mode = mode ? "every call from the k-th on fails" : "only the k-th call fails";
        unsigned long k = 1;
        while (one_run(k, mode == 0)) {
            k++;
            if (k > 20000)
                die("no end to the slab layer's page and metadata allocations");
        }
        last_k[mode] = k - 1;
        total_k += k - 1;
    }
    unsigned long conc_nulls = concurrent_runs();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("slab_fault: OK, %lu values of k (%lu with one failure, %lu with every call failing from k on), %lu calls "
           "checked, %lu returned NULL cleanly, %lu retried; 36 concurrent runs of %d threads, %lu NULLs; %.1f s\n",
           total_k, last_k[0], last_k[1], total_calls, total_nulls, total_retried, CONC_THREADS, conc_nulls,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
