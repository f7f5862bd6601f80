/* page_fault.c - fault injection into the platform under the page allocator.
 *
 * A platform copied from kmm_platform_hosted has its hooks open, meta_alloc
 * and release wrapped: they count their calls and fail the k-th one (open
 * returns -KMM_ENOMEM, meta_alloc NULL, release -KMM_ENOMEM). close and
 * meta_free are wrapped too, to count what is still open or allocated.
 *
 * For k = 1, 2, ... until a run sees no injected failure, in two modes (only
 * the k-th call fails; every call from the k-th on fails):
 *   kmm_create either fails cleanly (NULL, errno ENOMEM, nothing left open or
 *   allocated) or succeeds, and then a workload runs - blocks of several
 *   orders, exact and aligned sizes, KMM_ZERO after large frees and kmm_drain
 *   (which releases, so a failed release must not leave data behind),
 *   reservations, a second thread whose cache is made and retired at its exit,
 *   and frees. With 64 MiB of memory nothing may fail: a platform failure
 *   under the page allocator is only ever harmless. kmm_check must pass,
 *   everything freed must give the initial free blocks back, and after
 *   kmm_destroy nothing may be left open or allocated.
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

#define PS 4096u

static atomic_ulong calls;            /* calls of the failing hooks in this run */
static unsigned long fail_at;         /* 0: never */
static bool fail_from;                /* every call from fail_at on, not just that one */
static atomic_ulong injected;
static atomic_ulong injected_open, injected_meta, injected_release;
static atomic_long opens;             /* open minus close */
static atomic_llong meta_bytes;       /* meta_alloc minus meta_free */
static unsigned long run_k;
static const char *run_mode;

/* What a failure report (kmm_test_fail) starts with. */
static void die_head(FILE *f)
{
    fprintf(f, "page_fault FAILED (%s, k = %lu): ", run_mode, run_k);
}

#define die(...) kmm_test_fail(__VA_ARGS__)

static bool inject(atomic_ulong *which)
{
    unsigned long n = atomic_fetch_add(&calls, 1) + 1;
    if (fail_at && (fail_from ? n >= fail_at : n == fail_at)) {
        atomic_fetch_add(&injected, 1);
        atomic_fetch_add(which, 1);
        return true;
    }
    return false;
}

static int w_open(const struct kmm_platform *pf, const struct kmm_config *cfg, struct kmm_memory *mem, void **ctx)
{
    if (inject(&injected_open))
        return -KMM_ENOMEM;
    int rc = kmm_platform_hosted.open(pf, cfg, mem, ctx);
    if (rc == 0)
        atomic_fetch_add(&opens, 1);
    return rc;
}

static void w_close(void *ctx)
{
    atomic_fetch_sub(&opens, 1);
    kmm_platform_hosted.close(ctx);
}

static void *w_meta_alloc(void *ctx, size_t len)
{
    if (inject(&injected_meta))
        return NULL;
    void *p = kmm_platform_hosted.meta_alloc(ctx, len);
    if (p)
        atomic_fetch_add(&meta_bytes, (long long)len);
    return p;
}

static void w_meta_free(void *ctx, void *p, size_t len)
{
    atomic_fetch_sub(&meta_bytes, (long long)len);
    kmm_platform_hosted.meta_free(ctx, p, len);
}

static int w_release(void *ctx, kmm_phys_t addr, uint64_t len)
{
    if (inject(&injected_release))
        return -KMM_ENOMEM;
    return kmm_platform_hosted.release(ctx, addr, len);
}

static struct kmm_platform wrapped;

/* ---- the workload ---------------------------------------------------------- */

struct blk {
    void *p;
    size_t pages;
    uint64_t tag;
};

static void fill(const struct blk *b)
{
    for (size_t i = 0; i < b->pages; i++) {
        uint64_t *w = (uint64_t *)(void *)((char *)b->p + i * PS);
        w[0] = b->tag + i;
        w[PS / 8 - 1] = ~(b->tag + i);
    }
}

static void verify(const struct blk *b)
{
    for (size_t i = 0; i < b->pages; i++) {
        const uint64_t *w = (const uint64_t *)(const void *)((const char *)b->p + i * PS);
        if (w[0] != b->tag + i || w[PS / 8 - 1] != ~(b->tag + i))
            die("block %p (%zu pages): page %zu lost its pattern", b->p, b->pages, i);
    }
}

static void expect_zero(const void *p, size_t len, const char *what)
{
    static const unsigned char zeros[PS];
    const unsigned char *c = p;
    for (size_t off = 0; off < len; off += PS) {
        if (memcmp(c + off, zeros, PS) == 0)
            continue;
        for (size_t i = off; i < off + PS; i++)
            if (c[i])
                die("%s: KMM_ZERO memory %p has byte %zu = 0x%02x", what, p, i, c[i]);
    }
}

static struct blk take(struct kmm *mm, void *p, size_t pages, uint64_t tag, const char *what)
{
    if (!p)
        die("%s failed with 64 MiB of memory (errno %d)", what, errno);
    struct blk b = { p, pages, tag };
    if (kmm_page_alloc_size(mm, p) != pages)
        die("%s: kmm_page_alloc_size = %zu, expected %zu", what, kmm_page_alloc_size(mm, p), pages);
    fill(&b);
    return b;
}

static void give(struct kmm *mm, struct blk *b)
{
    verify(b);
    kmm_free_pages(mm, b->p);
    b->p = NULL;
}

struct helper {
    struct kmm *mm;
    struct blk out[40];
};

static void *helper_main(void *arg)
{
    struct helper *h = arg;
    struct blk tmp[64];
    for (unsigned round = 0; round < 4; round++) {
        for (unsigned i = 0; i < 64; i++)
            tmp[i] = take(h->mm, kmm_alloc_pages(h->mm, i % 4, 0), (size_t)1 << (i % 4), 0x1000 * round + i,
                          "helper kmm_alloc_pages");
        for (unsigned i = 0; i < 64; i++)
            give(h->mm, &tmp[i]);
    }
    /* handed to the main thread, which frees them: cross-thread frees */
    for (unsigned i = 0; i < 40; i++)
        h->out[i] = take(h->mm, kmm_alloc_pages(h->mm, i % 3, 0), (size_t)1 << (i % 3), 0x9000 + i,
                         "helper kmm_alloc_pages");
    return NULL;   /* its cache goes back at thread exit */
}

static void workload(struct kmm *mm)
{
    struct kmm_page_stats st0, st;
    kmm_page_stats(mm, &st0);
    struct blk b[32];
    unsigned n = 0;
    static const unsigned orders[] = { 0, 1, 2, 3, 4, 5, 9, 10 };
    for (unsigned i = 0; i < 8; i++)
        b[n++] = take(mm, kmm_alloc_pages(mm, orders[i], i & 1 ? KMM_AREA(2) : 0), (size_t)1 << orders[i], 100 + i,
                      "kmm_alloc_pages");
    b[n++] = take(mm, kmm_alloc_pages_exact(mm, 5 * PS, 0), 5, 200, "kmm_alloc_pages_exact(5 pages)");
    b[n++] = take(mm, kmm_alloc_pages_exact(mm, 20 * 1024 + 1, KMM_AREA(0)), 6, 201, "kmm_alloc_pages_exact(20 KiB + 1)");
    b[n++] = take(mm, kmm_alloc_pages_aligned(mm, 3, 64 * 1024, 0), 3, 202, "kmm_alloc_pages_aligned(3, 64 KiB)");
    b[n++] = take(mm, kmm_alloc_pages_aligned(mm, 1, 2u << 20, KMM_AREA(1)), 1, 203, "kmm_alloc_pages_aligned(1, 2 MiB)");
    b[n++] = take(mm, kmm_alloc_pages_aligned(mm, 700, 0, 0), 700, 204, "kmm_alloc_pages_aligned(700)");

    /* large blocks dirtied, freed and released (release may fail), then asked for zeroed */
    for (unsigned round = 0; round < 2; round++) {
        struct blk big[4];
        for (unsigned i = 0; i < 4; i++) {
            big[i] = take(mm, kmm_alloc_pages(mm, 9 + i % 2, 0), (size_t)1 << (9 + i % 2), 300 + i, "large block");
            memset(big[i].p, 0xa5, big[i].pages * PS);
            fill(&big[i]);
        }
        for (unsigned i = 0; i < 4; i++)
            give(mm, &big[i]);
        kmm_drain(mm);
        for (unsigned i = 0; i < 4; i++) {
            void *p = kmm_alloc_pages(mm, 9 + i % 2, KMM_ZERO);
            if (!p)
                die("KMM_ZERO large block failed");
            expect_zero(p, ((size_t)1 << (9 + i % 2)) * PS, "after release");
            kmm_free_pages(mm, p);
        }
        void *p = kmm_alloc_pages_exact(mm, 600 * PS, KMM_ZERO);
        if (!p)
            die("KMM_ZERO exact allocation failed");
        expect_zero(p, 600 * PS, "exact after release");
        kmm_free_pages(mm, p);
    }

    /* reservations: a range just freed is free; again it is busy; over a live block it is busy */
    void *r = kmm_alloc_pages(mm, 8, 0);
    if (!r)
        die("order 8 failed");
    kmm_phys_t rp = kmm_virt_to_phys(mm, r);
    kmm_free_pages(mm, r);
    int rc = kmm_reserve_pages(mm, rp + 3 * PS, 200);
    if (rc != 0)
        die("kmm_reserve_pages of a free range = %d", rc);
    if ((rc = kmm_reserve_pages(mm, rp + 100 * PS, 10)) != -KMM_EBUSY)
        die("kmm_reserve_pages of a reserved range = %d", rc);
    if ((rc = kmm_reserve_pages(mm, kmm_virt_to_phys(mm, b[3].p), 1)) != -KMM_EBUSY)
        die("kmm_reserve_pages of an allocated page = %d", rc);
    if ((rc = kmm_reserve_pages(mm, rp + 1, 1)) != -KMM_EINVAL)
        die("kmm_reserve_pages misaligned = %d", rc);
    kmm_unreserve_pages(mm, rp + 50 * PS, 100);
    kmm_unreserve_pages(mm, rp + 3 * PS, 47);
    kmm_unreserve_pages(mm, rp + 150 * PS, 53);

    /* a second thread: its cache is made (meta_alloc) and retired at its exit */
    struct helper h;
    memset(&h, 0, sizeof(h));
    h.mm = mm;
    pthread_t t;
    if (pthread_create(&t, NULL, helper_main, &h) != 0)
        die("pthread_create");
    pthread_join(t, NULL);
    for (unsigned i = 0; i < 40; i++)
        give(mm, &h.out[i]);

    /* small blocks through the calling thread's cache */
    struct blk small[100];
    for (unsigned i = 0; i < 100; i++)
        small[i] = take(mm, kmm_alloc_pages(mm, i % 4, i % 5 == 0 ? KMM_ZERO : 0), (size_t)1 << (i % 4), 500 + i,
                        "small kmm_alloc_pages");
    for (unsigned i = 0; i < 100; i += 2)
        give(mm, &small[i]);
    if (kmm_check(mm) != 0)
        die("kmm_check failed in the middle");
    for (unsigned i = 1; i < 100; i += 2)
        give(mm, &small[i]);
    for (unsigned i = 0; i < n; i++)
        give(mm, &b[i]);

    kmm_drain(mm);
    if (kmm_check(mm) != 0)
        die("kmm_check failed at the end");
    kmm_page_stats(mm, &st);
    if (st.free_pages != st.total_pages || st.reserved_pages || st.cached_pages)
        die("at the end %zu of %zu pages free, %zu reserved, %zu cached", st.free_pages, st.total_pages,
            st.reserved_pages, st.cached_pages);
    for (unsigned a = 0; a < st.nr_areas; a++)
        for (unsigned o = 0; o <= KMM_MAX_ORDER; o++)
            if (st.nr_free[a][o] != st0.nr_free[a][o])
                die("at the end area %u has %zu free blocks of order %u, initially %zu", a, st.nr_free[a][o], o,
                    st0.nr_free[a][o]);
}

/* One run with the k-th call failing; returns whether a failure was injected. */
static bool one_run(unsigned long k, bool from, unsigned long *created)
{
    static const uint64_t limits[] = { 16ull << 20, 32ull << 20, UINT64_MAX };
    struct kmm_config cfg = { .page_size = PS, .mem_size = 64ull << 20, .area_limits = limits, .nr_areas = 3,
                              .platform = &wrapped };
    run_k = k;
    fail_at = k;
    fail_from = from;
    atomic_store(&calls, 0);
    atomic_store(&injected, 0);
    errno = 0;
    struct kmm *mm = kmm_create(&cfg);
    if (!mm) {
        if (!atomic_load(&injected))
            die("kmm_create failed without an injected failure (errno %d)", errno);
        if (errno != ENOMEM)
            die("kmm_create failed with errno %d, expected ENOMEM", errno);
        if (atomic_load(&opens) != 0 || atomic_load(&meta_bytes) != 0)
            die("failed kmm_create left %ld platform(s) open and %lld bytes of metadata", atomic_load(&opens),
                atomic_load(&meta_bytes));
    } else {
        ++*created;
        workload(mm);
        kmm_destroy(mm);
        if (atomic_load(&opens) != 0 || atomic_load(&meta_bytes) != 0)
            die("kmm_destroy left %ld platform(s) open and %lld bytes of metadata", atomic_load(&opens),
                atomic_load(&meta_bytes));
    }
    fail_at = 0;
    return atomic_load(&injected) != 0;
}

int main(void)
{
    kmm_test_on_fail(die_head, NULL, false);
    wrapped = kmm_platform_hosted;
    wrapped.name = "hosted-fault-injection";
    wrapped.open = w_open;
    wrapped.close = w_close;
    wrapped.meta_alloc = w_meta_alloc;
    wrapped.meta_free = w_meta_free;
    wrapped.release = w_release;

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned long total_k = 0, created = 0;
    unsigned long max_calls[2];
    for (int mode = 0; mode < 2; mode++) {
        run_mode = mode ? "every call from the k-th on fails" : "the k-th call fails";
        unsigned long k = 1;
        while (one_run(k, mode == 1, &created)) {
            k++;
            if (k > 100000)
                die("no end to the calls of the platform hooks");
        }
        max_calls[mode] = atomic_load(&calls);
        total_k += k - 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("page_fault: OK, %lu values of k exercised (%lu and %lu hook calls in a full run), %lu memory systems "
           "created; injected %lu open, %lu meta_alloc, %lu release failures; %.1f s\n",
           total_k, max_calls[0], max_calls[1], created, atomic_load(&injected_open), atomic_load(&injected_meta),
           atomic_load(&injected_release),
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
