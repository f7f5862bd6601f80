/* vm_threads.c - the vmalloc layer used by several threads at once.
 *
 * 2 and then 4 worker threads share one memory system (in lazy mode, then
 * in strict mode) and each runs a seeded random mix of operations on areas
 * of its own: kmm_vmalloc (KMM_ZERO sometimes), kmm_vmalloc_aligned,
 * kmm_kvmalloc on both sides of the one-page rule, kmm_realloc growing and
 * shrinking them, kmm_vmap of pages the thread took from the page allocator
 * (read-write and read-only) and kmm_vunmap, frees by kmm_vfree, kmm_free,
 * kmm_kvfree, kmm_realloc(p, 0), kmm_vmalloc_to_phys spot checks, and now
 * and then kmm_vmalloc_purge. Areas are also handed to the next thread
 * through a mutex-protected queue, and that thread frees them (cross-thread
 * frees, and a lazily freed area taken back by another thread's
 * allocation). Meanwhile the main thread reads kmm_vmalloc_stats and
 * kmm_vmalloc_info, calls kmm_vmalloc_purge and kmm_drain and asks
 * kmm_is_vmalloc_addr.
 *
 * Checked:
 *  - every area carries a pattern of its thread and serial number (every
 *    byte up to 8 KiB, beyond the first and last 64 bytes of every page),
 *    verified before every free - by whichever thread frees it - and across
 *    kmm_realloc (the bytes kept); KMM_ZERO memory reads as zero; a new
 *    area is page aligned, aligned as asked, in the vmalloc space, and its
 *    guard page is not mapped: areas handed out at once to different
 *    threads never share an address or a page;
 *  - a vmap area shows its thread's pages in the order given, and
 *    kmm_vmalloc_to_phys of a byte of an area is the frame behind it: the
 *    byte read through the direct map is the byte of the area;
 *  - no call returns NULL (512 MiB of memory, 1 GiB of space: nothing can
 *    run out);
 *  - the stats read while the threads work are sane (free <= space, the
 *    largest free range <= free, mappings <= the limit, areas <= pages,
 *    strict mode never lazy), and kmm_vmalloc_info lists areas in address
 *    order without overlap;
 *  - after the threads are joined: kmm_check passes; once everything is
 *    freed, kmm_vmalloc_purge and kmm_drain: no area, page, vmap or lazy
 *    area is left, one free range, and the page allocator's free pages are
 *    back at their value before the threads started.
 *
 * Clean under TSan (make sanitize-thread). KMM_SEED repeats the seeds (the
 * interleaving is the scheduler's); KMM_THREADS_OPS sets the operations per
 * thread (default 4000; 1500 under TSan or ASan).
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

#define PS          4096u
#define MAX_THREADS 4
#define MAX_OWN     48               /* areas a thread holds at once */
#define NHELD       32               /* a thread's pages for kmm_vmap */
#define QCAP        64

enum kind { K_VMALLOC, K_KVSMALL, K_VMAP };

struct item {
    unsigned char *p;
    size_t size;                     /* asked (vmap: pages * PS) */
    size_t pages;                    /* mapped; 0 for kmm_malloc memory */
    uint64_t tag;                    /* thread << 48 | serial */
    enum kind kind;
    uint8_t held[16];                /* vmap: the thread's pages, in order */
};

struct queue {
    pthread_mutex_t lock;
    struct item q[QCAP];
    size_t head, n;
};

struct shared;

struct worker {
    struct shared *sh;
    unsigned id;
    uint64_t rng;
    struct item own[MAX_OWN];
    size_t nown;
    unsigned char *held[NHELD];
    uint64_t serial;
    unsigned long allocs, frees, cross_frees, handed, reallocs, vmaps, phys_checks, purges, kv_small;
};

struct shared {
    struct kmm *mm;
    unsigned nthreads;
    bool strict;
    unsigned long ops;
    struct queue queue[MAX_THREADS]; /* queue[i]: areas for thread i to free */
    pthread_barrier_t barrier;
    atomic_uint done;                /* workers past their operations */
    uintptr_t space_lo, space_hi;
};

static const char *run_name;

/* What a failure report (kmm_test_fail) starts with. */
static void die_head(FILE *f)
{
    fprintf(f, "vm_threads FAILED (%s): ", run_name);
}

#define die(...) kmm_test_fail(__VA_ARGS__)

static uint64_t rnd(struct worker *w, uint64_t n)
{
    return kmm_test_below(&w->rng, n);
}

/* ---- patterns ------------------------------------------------------------------------- */

/* The bytes that carry the pattern of an area: every byte up to 8 KiB;
 * beyond, the first and last 64 bytes of every page and the last 64 bytes. */
static const struct kmm_test_sampling sampled = { PS, 8192, 64 };

static size_t next_sampled(size_t size, size_t i)
{
    return kmm_test_next_sampled(size, i, sampled.ps, sampled.full, sampled.edge);
}

static void fill(unsigned char *p, uint64_t tag, size_t size)
{
    kmm_test_fill_sampled(p, tag, size, &sampled);
}

static void verify(const unsigned char *p, uint64_t tag, size_t size, size_t len, const char *when)
{
    size_t i = kmm_test_find_unlike(p, tag, size, len, &sampled);
    if (i != SIZE_MAX)
        die("%s: area %p (%zu bytes, thread %u serial %llu): byte %zu is 0x%02x, expected 0x%02x", when,
            (const void *)p, size, (unsigned)(tag >> 48), (unsigned long long)(tag & 0xffffffffffffULL), i, p[i],
            kmm_test_pat(tag, i));
}

static uint64_t held_tag(unsigned thread, size_t i)
{
    return ((uint64_t)(thread + 100) << 48) | i;
}

/* ---- one thread's operations ------------------------------------------------------------- */

static void check_new(struct worker *w, const struct item *it, size_t align, const char *what)
{
    struct kmm *mm = w->sh->mm;
    if (it->kind == K_KVSMALL) {
        if ((uintptr_t)it->p & 15)
            die("%s returned %p, misaligned", what, (void *)it->p);
        return;
    }
    if (align < PS)
        align = PS;
    uintptr_t a = (uintptr_t)it->p;
    if ((a & (align - 1)) || a < w->sh->space_lo || a + (it->pages + 1) * PS > w->sh->space_hi ||
        !kmm_is_vmalloc_addr(mm, it->p))
        die("%s returned %p (%zu pages): misaligned (%zu) or outside the vmalloc space", what, (void *)it->p,
            it->pages, align);
    if (kmm_vmalloc_to_phys(mm, it->p + it->pages * PS) != KMM_PHYS_NONE)
        die("%s returned %p (%zu pages): its guard page is mapped", what, (void *)it->p, it->pages);
}

static void own_push(struct worker *w, const struct item *it)
{
    if (w->nown == MAX_OWN)
        die("test: too many areas");
    w->own[w->nown++] = *it;
}

static void do_alloc(struct worker *w)
{
    struct kmm *mm = w->sh->mm;
    struct item it;
    memset(&it, 0, sizeof(it));
    uint64_t r = rnd(w, 100);
    size_t size = r < 40 ? 1 + rnd(w, 2 * PS) : r < 85 ? 1 + rnd(w, 32 * PS) : r < 98 ? 1 + rnd(w, 128 * PS)
                                                                               : 1 + rnd(w, 512 * PS);
    unsigned flags = rnd(w, 6) == 0 ? KMM_ZERO : 0;
    size_t align = 0;
    const char *what;
    unsigned op = (unsigned)rnd(w, 10);
    errno = 0;
    if (op < 6) {
        what = "kmm_vmalloc";
        it.p = kmm_vmalloc(mm, size, flags);
    } else if (op < 8) {
        what = "kmm_vmalloc_aligned";
        align = (size_t)1 << (10 + rnd(w, 12));           /* 1 KiB .. 2 MiB */
        it.p = kmm_vmalloc_aligned(mm, size, align, flags);
    } else {
        what = "kmm_kvmalloc";
        if (rnd(w, 2))
            size = 1 + rnd(w, 2 * PS);
        it.p = kmm_kvmalloc(mm, size, flags);
    }
    if (!it.p)
        die("thread %u: %s(%zu, 0x%x) returned NULL (errno %d)", w->id, what, size, flags, errno);
    it.size = size;
    it.kind = kmm_is_vmalloc_addr(mm, it.p) ? K_VMALLOC : K_KVSMALL;
    if (it.kind == K_KVSMALL && (op < 8 || size > PS))
        die("thread %u: %s(%zu) returned %p, outside the vmalloc space", w->id, what, size, (void *)it.p);
    it.pages = it.kind == K_KVSMALL ? 0 : (size + PS - 1) / PS;
    w->kv_small += it.kind == K_KVSMALL;
    check_new(w, &it, align, what);
    size_t nz = flags & KMM_ZERO ? kmm_test_find_nonzero(it.p, 0, size, &sampled) : SIZE_MAX;
    if (nz != SIZE_MAX)
        die("thread %u: %s(%zu, KMM_ZERO) = %p: byte %zu is 0x%02x", w->id, what, size, (void *)it.p, nz, it.p[nz]);
    it.tag = ((uint64_t)w->id << 48) | ++w->serial;
    fill(it.p, it.tag, size);
    own_push(w, &it);
    w->allocs++;
}

static void do_vmap(struct worker *w)
{
    struct kmm *mm = w->sh->mm;
    struct item it;
    memset(&it, 0, sizeof(it));
    size_t n = 1 + rnd(w, 16);
    kmm_phys_t phys[16];
    for (size_t i = 0; i < n; i++) {
        it.held[i] = (uint8_t)rnd(w, NHELD);
        phys[i] = kmm_virt_to_phys(mm, w->held[it.held[i]]);
    }
    unsigned prot = rnd(w, 3) ? KMM_PROT_READ | KMM_PROT_WRITE : KMM_PROT_READ;
    it.p = kmm_vmap(mm, phys, n, prot);
    if (!it.p)
        die("thread %u: kmm_vmap(%zu pages) returned NULL (errno %d)", w->id, n, errno);
    it.size = n * PS;
    it.pages = n;
    it.kind = K_VMAP;
    check_new(w, &it, 0, "kmm_vmap");
    for (size_t i = 0; i < n; i++) {
        verify(it.p + i * PS, held_tag(w->id, it.held[i]), PS, PS, "a new kmm_vmap area");
        if (kmm_vmalloc_to_phys(mm, it.p + i * PS + 100) != phys[i] + 100)
            die("thread %u: kmm_vmap area %p: page %zu is not the caller's", w->id, (void *)it.p, i);
    }
    if (prot & KMM_PROT_WRITE) {             /* a write through the vmap area reaches the page... */
        size_t i = rnd(w, n);
        uint64_t other = held_tag(w->id, it.held[i]) ^ 0x5a5a5a5aULL;
        fill(it.p + i * PS, other, PS);
        verify(w->held[it.held[i]], other, PS, PS, "a page written through a kmm_vmap area, in the direct map");
        fill(it.p + i * PS, held_tag(w->id, it.held[i]), PS);   /* ...and its own pattern goes back */
    }
    own_push(w, &it);
    w->vmaps++;
}

/* Frees it in one of the ways the contract allows (any thread may). */
static void free_item(struct kmm *mm, struct worker *w, struct item *it, const char *when)
{
    if (it->kind == K_VMAP) {
        for (size_t i = 0; i < it->pages; i++)
            verify(it->p + i * PS, held_tag(w->id, it->held[i]), PS, PS, when);
        kmm_vunmap(mm, it->p);
        return;
    }
    verify(it->p, it->tag, it->size, it->size, when);
    switch (it->kind == K_KVSMALL ? 1 : rnd(w, 4)) {
    case 0:
        kmm_vfree(mm, it->p);
        break;
    case 1:
        kmm_kvfree(mm, it->p);
        break;
    case 2:
        if (kmm_realloc(mm, it->p, 0, 0) != NULL)
            die("kmm_realloc(p, 0) did not return NULL");
        break;
    default:
        kmm_free(mm, it->p);
        break;
    }
}

static void do_free(struct worker *w)
{
    if (!w->nown)
        return;
    size_t i = rnd(w, w->nown);
    struct item it = w->own[i];
    w->own[i] = w->own[--w->nown];
    free_item(w->sh->mm, w, &it, "own free");
    w->frees++;
}

static void do_realloc(struct worker *w)
{
    if (!w->nown)
        return;
    size_t i = rnd(w, w->nown);
    struct item *it = &w->own[i];
    if (it->kind != K_VMALLOC)
        return;
    size_t size = rnd(w, 2) ? 1 + rnd(w, it->size) : it->size + 1 + rnd(w, 16 * PS);
    unsigned flags = rnd(w, 4) == 0 ? KMM_ZERO : 0;
    verify(it->p, it->tag, it->size, it->size, "before kmm_realloc");
    unsigned char *p = kmm_realloc(w->sh->mm, it->p, size, flags);
    if (!p)
        die("thread %u: kmm_realloc(%zu -> %zu) returned NULL (errno %d)", w->id, it->size, size, errno);
    size_t keep = it->size < size ? it->size : size;
    verify(p, it->tag, it->size, keep, "after kmm_realloc");
    if ((flags & KMM_ZERO) && size > it->size)
        for (size_t b = it->size; b < size; b = b + 1 < it->size + 8192 ? b + 1 : next_sampled(size, b + 1))
            if (p[b])
                die("thread %u: kmm_realloc(%zu -> %zu, KMM_ZERO): byte %zu is 0x%02x", w->id, it->size, size, b,
                    p[b]);
    struct item n = *it;
    n.p = p;
    n.size = size;
    n.pages = (size + PS - 1) / PS;
    if (p != it->p)
        check_new(w, &n, 0, "kmm_realloc");
    n.tag = ((uint64_t)w->id << 48) | ++w->serial;
    fill(p, n.tag, size);
    *it = n;
    w->reallocs++;
}

/* The frame behind a byte of an own area is the one kmm_vmalloc_to_phys names. */
static void do_phys(struct worker *w)
{
    if (!w->nown)
        return;
    struct item *it = &w->own[rnd(w, w->nown)];
    if (it->kind == K_KVSMALL)
        return;
    struct kmm *mm = w->sh->mm;
    for (int t = 0; t < 4; t++) {
        size_t off = rnd(w, it->pages * PS);
        kmm_phys_t ph = kmm_vmalloc_to_phys(mm, it->p + off);
        const unsigned char *d = ph == KMM_PHYS_NONE ? NULL : kmm_phys_to_virt(mm, ph);
        if (!d || (ph & (PS - 1)) != (off & (PS - 1)) || *d != it->p[off])
            die("thread %u: kmm_vmalloc_to_phys(%p + %zu) = %#llx: not the frame behind it", w->id, (void *)it->p,
                off, (unsigned long long)ph);
        if (it->kind == K_VMAP && ph != kmm_virt_to_phys(mm, w->held[it->held[off / PS]]) + (off & (PS - 1)))
            die("thread %u: kmm_vmalloc_to_phys of a vmap area is not the caller's page", w->id);
    }
    w->phys_checks++;
}

/* Hands an area to the next thread; false if its queue is full. */
static bool hand_over(struct worker *w)
{
    if (!w->nown)
        return true;
    size_t i = rnd(w, w->nown);
    if (w->own[i].kind == K_VMAP)             /* its pages are this thread's: it unmaps it */
        return true;
    struct queue *q = &w->sh->queue[(w->id + 1) % w->sh->nthreads];
    pthread_mutex_lock(&q->lock);
    bool ok = q->n < QCAP;
    if (ok) {
        q->q[(q->head + q->n) % QCAP] = w->own[i];
        q->n++;
    }
    pthread_mutex_unlock(&q->lock);
    if (ok) {
        w->own[i] = w->own[--w->nown];
        w->handed++;
    }
    return ok;
}

/* Frees what other threads handed to this one. */
static void take_in(struct worker *w)
{
    struct queue *q = &w->sh->queue[w->id];
    struct item got[QCAP];
    size_t n = 0;
    pthread_mutex_lock(&q->lock);
    while (q->n) {
        got[n++] = q->q[q->head];
        q->head = (q->head + 1) % QCAP;
        q->n--;
    }
    pthread_mutex_unlock(&q->lock);
    for (size_t i = 0; i < n; i++) {
        free_item(w->sh->mm, w, &got[i], "cross-thread free");
        w->cross_frees++;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct kmm *mm = w->sh->mm;
    for (size_t i = 0; i < NHELD; i++) {
        w->held[i] = kmm_alloc_pages(mm, 0, 0);
        if (!w->held[i])
            die("thread %u: kmm_alloc_pages failed", w->id);
        fill(w->held[i], held_tag(w->id, i), PS);
    }
    for (unsigned long op = 0; op < w->sh->ops; op++) {
        if (op % 8 == 0)
            take_in(w);
        unsigned r = (unsigned)rnd(w, 1000);
        bool full = w->nown >= MAX_OWN - 1;
        if (full || r < 300)
            do_free(w);
        else if (r < 620)
            do_alloc(w);
        else if (r < 740)
            do_realloc(w);
        else if (r < 820)
            do_vmap(w);
        else if (r < 900)
            do_phys(w);
        else if (r < 995)
            hand_over(w);
        else {
            kmm_vmalloc_purge(mm);
            w->purges++;
        }
    }
    /* everything still held goes, and what others handed over (no more comes after the barrier) */
    while (w->nown)
        do_free(w);
    atomic_fetch_add(&w->sh->done, 1);
    pthread_barrier_wait(&w->sh->barrier);
    take_in(w);
    for (size_t i = 0; i < NHELD; i++) {
        verify(w->held[i], held_tag(w->id, i), PS, PS, "a thread's page at the end");
        kmm_free_pages(mm, w->held[i]);
    }
    return NULL;
}

/* ---- the main thread ----------------------------------------------------------------------- */

struct walk {
    uintptr_t last_end;
    size_t n;
    bool bad;
};

static void walk_cb(void *arg, const struct kmm_vmalloc_area_info *a)
{
    struct walk *w = arg;                    /* must not call into mm */
    if (a->start < w->last_end || a->end <= a->start || a->end - a->start != (a->pages + 1) * PS || !a->kind)
        w->bad = true;
    w->last_end = a->end;
    w->n++;
}

static void watch(struct shared *sh, uint64_t *rng, unsigned long *stats, unsigned long *walks,
                  unsigned long *purges)
{
    while (atomic_load(&sh->done) < sh->nthreads) {
        uint64_t r = kmm_test_rand(rng) % 64;
        if (r < 20) {
            struct kmm_vmalloc_stats st;
            kmm_vmalloc_stats(sh->mm, &st);
            if (st.free_bytes > st.space_bytes || st.largest_free_bytes > st.free_bytes ||
                st.mappings > st.max_mappings || st.areas > st.pages || st.vmap_areas > st.vmap_pages ||
                (sh->strict && st.lazy_areas))
                die("concurrent kmm_vmalloc_stats: space %zu, free %zu (largest %zu), %zu areas of %zu pages, %zu "
                    "vmap areas of %zu pages, %zu lazy, %zu of %zu mappings", st.space_bytes, st.free_bytes,
                    st.largest_free_bytes, st.areas, st.pages, st.vmap_areas, st.vmap_pages, st.lazy_areas,
                    st.mappings, st.max_mappings);
            (*stats)++;
        } else if (r < 24) {
            struct walk w = { 0, 0, false };
            kmm_vmalloc_info(sh->mm, walk_cb, &w);
            if (w.bad)
                die("concurrent kmm_vmalloc_info: areas out of order, overlapping or malformed");
            (*walks)++;
        } else if (r < 26) {
            kmm_vmalloc_purge(sh->mm);
            (*purges)++;
        } else if (r == 26) {
            kmm_drain(sh->mm);
        } else if (r < 30) {
            uintptr_t x = sh->space_lo + (kmm_test_rand(rng) % (sh->space_hi - sh->space_lo));
            if (!kmm_is_vmalloc_addr(sh->mm, (void *)x) || kmm_is_vmalloc_addr(sh->mm, (void *)sh->space_hi))
                die("kmm_is_vmalloc_addr is wrong");
        } else {
            struct timespec ts = { 0, 200000 };
            nanosleep(&ts, NULL);
        }
    }
}

static void run(unsigned nthreads, bool strict, unsigned long ops, uint64_t seed)
{
    char name[64];
    snprintf(name, sizeof(name), "%u threads, %s", nthreads, strict ? "strict" : "lazy");
    run_name = name;
    struct shared *sh = calloc(1, sizeof(*sh));
    struct worker *ws = calloc(nthreads, sizeof(*ws));
    if (!sh || !ws)
        die("out of memory");
    struct kmm_config cfg = { .page_size = PS, .mem_size = 512ull << 20,
                              .vmalloc_flags = strict ? KMM_VMALLOC_STRICT : 0 };
    sh->mm = kmm_create(&cfg);
    if (!sh->mm)
        die("kmm_create failed");
    sh->nthreads = nthreads;
    sh->strict = strict;
    sh->ops = ops;
    /* the space exists before the threads start; its first area is at its start */
    void *first = kmm_vmalloc(sh->mm, PS, 0);
    struct kmm_vmalloc_stats st;
    kmm_vmalloc_stats(sh->mm, &st);
    sh->space_lo = (uintptr_t)first;
    sh->space_hi = sh->space_lo + st.space_bytes;
    kmm_vfree(sh->mm, first);
    kmm_vmalloc_purge(sh->mm);
    kmm_drain(sh->mm);
    struct kmm_page_stats ps;
    kmm_page_stats(sh->mm, &ps);
    size_t base_free = ps.free_pages;

    pthread_barrier_init(&sh->barrier, NULL, nthreads);
    for (unsigned i = 0; i < nthreads; i++)
        pthread_mutex_init(&sh->queue[i].lock, NULL);
    pthread_t th[MAX_THREADS];
    for (unsigned i = 0; i < nthreads; i++) {
        ws[i].sh = sh;
        ws[i].id = i;
        ws[i].rng = seed + 0x9E3779B97F4A7C15ULL * (i + 1);
    }
    kmm_test_start_threads(th, nthreads, worker_main, ws, sizeof *ws);
    uint64_t rng = seed ^ 0x5bd1e995;
    unsigned long stats = 0, walks = 0, purges = 0;
    watch(sh, &rng, &stats, &walks, &purges);
    kmm_test_join_threads(th, nthreads);

    if (kmm_check(sh->mm) != 0)
        die("kmm_check failed after the threads were joined");
    for (unsigned i = 0; i < nthreads; i++)
        if (sh->queue[i].n)
            die("queue %u kept %zu areas", i, sh->queue[i].n);
    kmm_vmalloc_purge(sh->mm);
    kmm_drain(sh->mm);
    if (kmm_check(sh->mm) != 0)
        die("kmm_check failed at the end");
    kmm_vmalloc_stats(sh->mm, &st);
    if (st.areas || st.pages || st.vmap_areas || st.vmap_pages || st.lazy_areas || st.lazy_pages ||
        st.mappings != 1 || st.free_ranges != 1 || st.free_bytes != st.space_bytes)
        die("at the end: %zu areas (%zu pages), %zu vmap areas (%zu pages), %zu lazy (%zu pages), %zu mappings, %zu "
            "free ranges, %zu of %zu bytes free", st.areas, st.pages, st.vmap_areas, st.vmap_pages, st.lazy_areas,
            st.lazy_pages, st.mappings, st.free_ranges, st.free_bytes, st.space_bytes);
    kmm_page_stats(sh->mm, &ps);
    if (ps.free_pages != base_free)
        die("at the end, everything freed, purged and drained: %zu pages free, %zu before the threads",
            ps.free_pages, base_free);

    unsigned long allocs = 0, frees = 0, cross = 0, handed = 0, reallocs = 0, vmaps = 0, phys = 0, wpurges = 0,
                  kv = 0;
    for (unsigned i = 0; i < nthreads; i++) {
        allocs += ws[i].allocs;
        frees += ws[i].frees;
        cross += ws[i].cross_frees;
        handed += ws[i].handed;
        reallocs += ws[i].reallocs;
        vmaps += ws[i].vmaps;
        phys += ws[i].phys_checks;
        wpurges += ws[i].purges;
        kv += ws[i].kv_small;
    }
    if (allocs + vmaps != frees + cross || handed != cross)
        die("%lu allocations and %lu vmaps, %lu own and %lu cross-thread frees, %lu handed over", allocs, vmaps,
            frees, cross, handed);
    printf("  %-18s %lu allocations (%lu kmm_malloc), %lu vmaps, %lu reallocs, %lu frees (%lu cross-thread), %lu phys "
           "checks, %lu purges by workers; main: %lu stats, %lu info walks, %lu purges; %llu map / %llu unmap calls, "
           "%llu lazy areas reused\n",
           name, allocs, kv, vmaps, reallocs, frees + cross, cross, phys, wpurges, stats, walks, purges,
           (unsigned long long)st.map_calls, (unsigned long long)st.unmap_calls, (unsigned long long)st.reused);
    fflush(stdout);
    for (unsigned i = 0; i < nthreads; i++)
        pthread_mutex_destroy(&sh->queue[i].lock);
    pthread_barrier_destroy(&sh->barrier);
    kmm_destroy(sh->mm);
    free(ws);
    free(sh);
}

int main(void)
{
    kmm_test_on_fail(die_head, NULL, true);
    uint64_t seed = kmm_test_seed("vm_threads");
    const char *env = getenv("KMM_THREADS_OPS");
    unsigned long ops = env ? strtoul(env, NULL, 0) : (KMM_TEST_SANITIZER ? 1500 : 4000);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run(2, false, ops, seed);
    run(4, false, ops, seed ^ 0x1111);
    run(2, true, ops, seed ^ 0x2222);
    run(4, true, ops, seed ^ 0x3333);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("vm_threads: OK, %lu operations per thread, 2 and 4 threads, lazy and strict, %.1f s\n", ops,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
