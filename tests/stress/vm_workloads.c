/* vm_workloads.c - the workloads of Linux's lib/test_vmalloc.c, written
 * here from their descriptions, run on kmm_vmalloc.
 *
 * The workloads (each counts its operations; one operation is one
 * allocation and its free unless said otherwise):
 *
 *   fixed_size_alloc        one page, again and again.
 *   full_fit_alloc          (a) areas of one page and "junk" areas of one
 *                           page allocated alternately, the junk freed and
 *                           purged: the holes are exactly one area and its
 *                           guard page; then one-page areas must land in the
 *                           holes, the lowest first (or, once a freed one is
 *                           taken back, in it). (b) alone on a memory system
 *                           whose vmalloc space is 64 MiB: areas of 63 pages
 *                           (64 with the guard) fill it exactly, each right
 *                           after the one before, then one more page fails
 *                           cleanly; a freed area's range takes an area of
 *                           the same size again but not one page more.
 *   long_busy_list_alloc    a long list of live one-page areas (1000; 250 per
 *                           thread when threaded) while
 *                           100-page and one-page areas are allocated and
 *                           freed; an operation is one such pair of pairs.
 *   random_size_alloc       1..100 pages, sometimes not a whole number of pages.
 *   fix_align_alloc         1..5 pages at 64 KiB and at 2 MiB alignment.
 *   random_size_align_alloc random size (up to 16 pages) and random
 *                           power-of-two alignment (16 bytes .. 1024 pages).
 *   align_shift_alloc       one page at alignment 2^0 .. 2^63 bytes: succeeds
 *                           while an aligned range fits in the space, then
 *                           fails cleanly (NULL and ENOMEM or EINVAL).
 *   vm_map_ram              kmm_vmap of 16 caller-given pages (a block of 8
 *                           and 8 scattered single pages, in a shuffled order),
 *                           read-write or read-only, then kmm_vunmap; the
 *                           mapping must show each page where it was asked.
 *   realloc_grow_shrink     kmm_realloc of vmalloc memory in steps up to about
 *                           40 pages and back down to one page, the contents
 *                           kept, growth sometimes with KMM_ZERO (the new
 *                           part reads as zeros), every third cycle with an
 *                           area just after it, so that growing in place is
 *                           impossible and the area must move; an operation
 *                           is one kmm_realloc.
 *
 * Run once each, single-threaded, each on a fresh memory system (so that
 * addresses can be checked exactly; 512 MiB of vmalloc space), with 4 KiB
 * and then with 64 KiB pages; then all of them at once in 4 threads on one
 * memory system (each thread runs every workload, starting at a different
 * one). Each workload writes and verifies the memory it gets (a
 * tagged word at both ends of every page, so that a page mapped twice or
 * wrongly shows up) and, single-threaded, ends with kmm_check; the threaded
 * run ends with kmm_check and every area gone after a purge.
 *
 * Time per operation (of each workload's main loop; its set-up is not
 * timed) is printed, never asserted. Environment:
 * KMM_WORKLOADS_SCALE (default 1, smaller under sanitizers) multiplies the
 * iterations; KMM_SEED repeats a run.
 *
 * bench/vmalloc includes this file with VM_WORKLOADS_NO_MAIN defined, to
 * time the same workloads (touching only the first byte of each area, as
 * lib/test_vmalloc does, instead of verifying every page).
 */
#include <kmm.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__SANITIZE_THREAD__)
#define WL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WL_TSAN 1
#endif
#endif
#ifndef WL_TSAN
#define WL_TSAN 0
#endif
#if defined(__SANITIZE_ADDRESS__)
#define WL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WL_ASAN 1
#endif
#endif
#ifndef WL_ASAN
#define WL_ASAN 0
#endif

#define WL_MAX_THREADS 8
#define WL_MAP_PAGES 16            /* pages of one vm_map_ram mapping */
#define WL_BUSY_LIST 1000          /* live areas of long_busy_list_alloc (single thread) */
#define WL_FIT_JUNK 1024           /* holes of full_fit_alloc (a) */

/* ---- what a workload gets ------------------------------------------------ */

enum wl_use {
    WL_VERIFY,   /* the test: tagged words at both ends of every page, checked */
    WL_TOUCH,    /* the benchmark: the first byte written, as lib/test_vmalloc does */
};

struct wl {
    struct kmm *mm;
    size_t ps;                 /* page size */
    uint64_t rng;
    unsigned id;               /* thread number */
    enum wl_use use;
    bool shared;               /* other threads use mm meanwhile: no exact address checks */
    double scale;              /* iterations = the table's count x scale */
    uint64_t serial;           /* for tags */
    const char *name;          /* workload running, for messages */
    double ns;                 /* time in the timed part */
    uint64_t calls;            /* platform map + unmap calls in the timed part (single thread only) */
    long extra[2];             /* workload-specific figures (realloc: in place, moved) */
};

static void wl_fail(struct wl *w, const char *file, int line, const char *what)
{
    fprintf(stderr, "vm_workloads: %s (thread %u): %s:%d: %s (errno %d)\n", w->name ? w->name : "?", w->id, file,
            line, what, errno);
    fflush(NULL);
    abort();
}
#define WL_CHECK(w, cond)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            wl_fail((w), __FILE__, __LINE__, #cond);                                               \
    } while (0)

static inline uint64_t wl_rand(struct wl *w)   /* xorshift64* */
{
    uint64_t x = w->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}
/* uniform in [lo, hi] */
static inline size_t wl_range(struct wl *w, size_t lo, size_t hi) { return lo + (size_t)(wl_rand(w) % (hi - lo + 1)); }

static double wl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static uint64_t wl_calls(struct kmm *mm)
{
    struct kmm_vmalloc_stats st;
    kmm_vmalloc_stats(mm, &st);
    return st.map_calls + st.unmap_calls;
}

/* The timed part of a workload: between wl_start and wl_stop. */
static void wl_start(struct wl *w)
{
    if (!w->shared)
        w->calls = wl_calls(w->mm);
    w->ns = wl_now();
}
static void wl_stop(struct wl *w)
{
    w->ns = wl_now() - w->ns;
    w->calls = w->shared ? 0 : wl_calls(w->mm) - w->calls;
}

static long wl_iters(const struct wl *w, long n)
{
    double v = (double)n * w->scale;
    return v < 1 ? 1 : (long)v;
}

static uint64_t wl_tag(struct wl *w) { return ((uint64_t)w->id << 48) ^ ++w->serial ^ 0x5bd1e995ull << 20; }

/* ---- the memory: tagged words ---------------------------------------------- */

static inline uint64_t wl_pattern(uint64_t tag, size_t offset)
{
    uint64_t x = (tag + offset) * 0x9E3779B97F4A7C15ull;
    return x ^ (x >> 29) ^ offset;
}

/* The words of an area of size bytes: the first and the last whole word of
 * every page, within size. Calls fn(offset) for each. */
#define WL_EACH_WORD(ps, size, offset, body)                                                       \
    for (size_t wl_pg_ = 0; wl_pg_ < (size); wl_pg_ += (ps)) {                                     \
        size_t wl_end_ = wl_pg_ + (ps) < (size) ? wl_pg_ + (ps) : (size);                          \
        if (wl_end_ - wl_pg_ < 8)                                                                  \
            continue;                                                                              \
        for (int wl_k_ = 0; wl_k_ < 2; wl_k_++) {                                                  \
            size_t offset = wl_k_ ? wl_end_ - 8 : wl_pg_;                                          \
            if (wl_k_ && offset < wl_pg_ + 8)   /* would overlap the first */                      \
                break;                                                                             \
            body;                                                                                  \
        }                                                                                          \
    }

static void wl_fill(struct wl *w, void *p, size_t size, uint64_t tag)
{
    if (w->use == WL_TOUCH) {
        *(volatile char *)p = (char)tag;
        return;
    }
    char *c = p;
    if (size < 8) {
        memset(c, (int)(tag & 0xff), size);
        return;
    }
    WL_EACH_WORD(w->ps, size, off, {
        uint64_t v = wl_pattern(tag, off);
        memcpy(c + off, &v, 8);
    });
}

/* Checks the words wl_fill(size, tag) wrote that lie wholly below limit. */
static void wl_verify_below(struct wl *w, const void *p, size_t size, uint64_t tag, size_t limit)
{
    if (w->use == WL_TOUCH)
        return;
    const char *c = p;
    if (size < 8) {
        for (size_t i = 0; i < size && i < limit; i++)
            WL_CHECK(w, (unsigned char)c[i] == (tag & 0xff));
        return;
    }
    WL_EACH_WORD(w->ps, size, off, {
        if (off + 8 <= limit) {
            uint64_t v;
            memcpy(&v, c + off, 8);
            if (v != wl_pattern(tag, off)) {
                fprintf(stderr, "vm_workloads: %s: area %p of %zu bytes: word at +%zu is %#llx, not %#llx\n",
                        w->name, p, size, off, (unsigned long long)v, (unsigned long long)wl_pattern(tag, off));
                wl_fail(w, __FILE__, __LINE__, "memory does not hold what was written");
            }
        }
    });
}
static void wl_verify(struct wl *w, const void *p, size_t size, uint64_t tag) { wl_verify_below(w, p, size, tag, size); }

/* The frame behind every page of p (vmalloc_to_phys) shows, through the
 * direct map, what was written at p. */
static void wl_verify_phys(struct wl *w, const char *p, size_t size, uint64_t tag)
{
    if (w->use == WL_TOUCH || size < 8)
        return;
    WL_EACH_WORD(w->ps, size, off, {
        kmm_phys_t ph = kmm_vmalloc_to_phys(w->mm, p + off);
        WL_CHECK(w, ph != KMM_PHYS_NONE);
        const char *d = kmm_phys_to_virt(w->mm, ph);
        WL_CHECK(w, d != NULL);
        uint64_t v;
        memcpy(&v, d, 8);
        WL_CHECK(w, v == wl_pattern(tag, off));
    });
}

static void *wl_vmalloc(struct wl *w, size_t size)
{
    void *p = kmm_vmalloc(w->mm, size, 0);
    WL_CHECK(w, p != NULL);
    WL_CHECK(w, ((uintptr_t)p & (w->ps - 1)) == 0);
    return p;
}

static void wl_end_check(struct wl *w)
{
    if (!w->shared)
        WL_CHECK(w, kmm_check(w->mm) == 0);
}

/* ---- the workloads ----------------------------------------------------------- */

static long wl_fixed_size(struct wl *w, long n)
{
    wl_start(w);
    for (long i = 0; i < n; i++) {
        uint64_t tag = wl_tag(w);
        char *p = wl_vmalloc(w, w->ps);
        wl_fill(w, p, w->ps, tag);
        wl_verify(w, p, w->ps, tag);
        if ((i & 15) == 0)
            wl_verify_phys(w, p, w->ps, tag);
        kmm_vfree(w->mm, p);
    }
    wl_stop(w);
    wl_end_check(w);
    return n;
}

static int wl_cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return (x > y) - (x < y);
}

static bool wl_in(void *const *sorted, size_t n, void *p)
{
    return bsearch(&p, sorted, n, sizeof *sorted, wl_cmp_ptr) != NULL;
}

/* (b): fill a 64 MiB vmalloc space exactly. Alone on a memory system of its own. */
static void wl_full_fit_space(struct wl *w)
{
    size_t ps = w->ps, space = (size_t)64 << 20, stride = 64, area = (stride - 1) * ps;
    size_t count = space / ps / stride;
    struct kmm_config cfg = { .page_size = ps, .mem_size = (uint64_t)256 << 20, .vmalloc_size = space };
    struct kmm *mm = kmm_create(&cfg);
    WL_CHECK(w, mm != NULL);
    struct kmm *outer = w->mm;
    w->mm = mm;
    char **a = calloc(count, sizeof *a);
    uint64_t *tags = calloc(count, sizeof *tags);
    WL_CHECK(w, a && tags);
    for (size_t i = 0; i < count; i++) {
        tags[i] = wl_tag(w);
        a[i] = wl_vmalloc(w, area);
        WL_CHECK(w, i == 0 || a[i] == a[i - 1] + stride * ps);   /* packed: only the guard page between */
        WL_CHECK(w, kmm_is_vmalloc_addr(mm, a[i] + area - 1));
        wl_fill(w, a[i], area, tags[i]);
    }
    WL_CHECK(w, !kmm_is_vmalloc_addr(mm, a[0] - 1));                 /* the first is at the space's start */
    WL_CHECK(w, !kmm_is_vmalloc_addr(mm, a[count - 1] + stride * ps)); /* the last ends at its end */
    struct kmm_vmalloc_stats st;
    kmm_vmalloc_stats(mm, &st);
    WL_CHECK(w, st.space_bytes == space && st.free_bytes == 0 && st.areas == count);
    errno = 0;
    WL_CHECK(w, kmm_vmalloc(mm, 1, 0) == NULL && errno == ENOMEM);   /* full */
    size_t mid = count / 2;
    kmm_vfree(mm, a[mid]);
    char *again = kmm_vmalloc(mm, area, 0);   /* the lazy free is purged to make room */
    WL_CHECK(w, again == a[mid]);
    wl_fill(w, again, area, tags[mid]);
    kmm_vfree(mm, again);
    kmm_vmalloc_purge(mm);
    errno = 0;
    WL_CHECK(w, kmm_vmalloc(mm, area + 1, 0) == NULL && errno == ENOMEM);   /* one page too many */
    a[mid] = kmm_vmalloc(mm, area - ps, 0);                              /* one page less fits, leaving one */
    WL_CHECK(w, a[mid] == again);
    wl_fill(w, a[mid], area - ps, tags[mid]);
    errno = 0;
    WL_CHECK(w, kmm_vmalloc(mm, 1, 0) == NULL && errno == ENOMEM);       /* a page and its guard do not */
    for (size_t i = 0; i < count; i++) {
        wl_verify(w, a[i], i == mid ? area - ps : area, tags[i]);
        kmm_vfree(mm, a[i]);
    }
    kmm_vmalloc_purge(mm);
    kmm_vmalloc_stats(mm, &st);
    WL_CHECK(w, st.areas == 0 && st.free_bytes == space && st.free_ranges == 1);
    WL_CHECK(w, kmm_check(mm) == 0);
    free(a);
    free(tags);
    kmm_destroy(mm);
    w->mm = outer;
}

static long wl_full_fit(struct wl *w, long n)
{
    size_t ps = w->ps, k = w->shared ? WL_FIT_JUNK / 4 : WL_FIT_JUNK;
    if (w->scale < 1)
        k = (size_t)((double)k * w->scale) + 16;
    char **keep = calloc(k, sizeof *keep), **junk = calloc(k, sizeof *junk);
    uint64_t *tags = calloc(k, sizeof *tags);
    WL_CHECK(w, keep && junk && tags);
    for (size_t i = 0; i < k; i++) {
        tags[i] = wl_tag(w);
        keep[i] = wl_vmalloc(w, ps);
        junk[i] = wl_vmalloc(w, ps);
        wl_fill(w, keep[i], ps, tags[i]);
        if (!w->shared) {   /* a fresh space packs them: each right after the other's guard */
            WL_CHECK(w, junk[i] == keep[i] + 2 * ps);
            WL_CHECK(w, i == 0 || keep[i] == junk[i - 1] + 2 * ps);
        }
    }
    for (size_t i = 0; i < k; i++)
        kmm_vfree(w->mm, junk[i]);
    kmm_vmalloc_purge(w->mm);   /* the holes are free now, not lazily held */
    qsort(junk, k, sizeof *junk, wl_cmp_ptr);
    char *tail = keep[k - 1] + 2 * ps;
    wl_start(w);
    for (long i = 0; i < n; i++) {
        uint64_t tag = wl_tag(w);
        char *p = wl_vmalloc(w, ps);
        if (!w->shared) {
            /* the lowest range that fits: a hole (exactly one page and its
             * guard), the first one first; past the holes, the space above */
            if (i == 0)
                WL_CHECK(w, p == junk[0]);
            else
                WL_CHECK(w, wl_in((void *const *)junk, k, p) || p >= tail);
            if ((size_t)i < k)
                WL_CHECK(w, wl_in((void *const *)junk, k, p));
        }
        wl_fill(w, p, ps, tag);
        wl_verify(w, p, ps, tag);
        kmm_vfree(w->mm, p);
    }
    wl_stop(w);
    for (size_t i = 0; i < k; i++) {
        wl_verify(w, keep[i], ps, tags[i]);
        kmm_vfree(w->mm, keep[i]);
    }
    free(keep);
    free(junk);
    free(tags);
    if (!w->shared && w->use == WL_VERIFY)
        wl_full_fit_space(w);
    wl_end_check(w);
    return n;
}

static long wl_long_busy_list(struct wl *w, long n)
{
    size_t ps = w->ps, len = w->shared ? WL_BUSY_LIST / 4 : WL_BUSY_LIST;
    if (w->scale < 1)
        len = (size_t)((double)len * w->scale) + 50;
    char **live = calloc(len, sizeof *live);
    uint64_t *tags = calloc(len, sizeof *tags);
    WL_CHECK(w, live && tags);
    for (size_t i = 0; i < len; i++) {
        tags[i] = wl_tag(w);
        live[i] = wl_vmalloc(w, ps);
        wl_fill(w, live[i], ps, tags[i]);
    }
    wl_start(w);
    for (long i = 0; i < n; i++) {
        uint64_t t1 = wl_tag(w), t2 = wl_tag(w);
        char *big = wl_vmalloc(w, 100 * ps);
        char *small = wl_vmalloc(w, ps);
        wl_fill(w, big, 100 * ps, t1);
        wl_fill(w, small, ps, t2);
        wl_verify(w, big, 100 * ps, t1);
        wl_verify(w, small, ps, t2);
        kmm_vfree(w->mm, big);
        kmm_vfree(w->mm, small);
        if (w->use == WL_VERIFY && (i & 63) == 0)   /* the busy list is untouched */
            wl_verify(w, live[(size_t)i % len], ps, tags[(size_t)i % len]);
    }
    wl_stop(w);
    if (!w->shared) {
        struct kmm_vmalloc_stats st;
        kmm_vmalloc_stats(w->mm, &st);
        WL_CHECK(w, st.areas == len);
    }
    for (size_t i = 0; i < len; i++) {
        wl_verify(w, live[i], ps, tags[i]);
        kmm_vfree(w->mm, live[i]);
    }
    free(live);
    free(tags);
    wl_end_check(w);
    return 2 * n;
}

static long wl_random_size(struct wl *w, long n)
{
    size_t ps = w->ps;
    wl_start(w);
    for (long i = 0; i < n; i++) {
        size_t size = wl_range(w, 1, 100) * ps;
        if (wl_rand(w) & 1)
            size -= wl_range(w, 0, ps - 8);   /* not a whole number of pages */
        uint64_t tag = wl_tag(w);
        char *p = wl_vmalloc(w, size);
        wl_fill(w, p, size, tag);
        wl_verify(w, p, size, tag);
        if ((i & 15) == 0)
            wl_verify_phys(w, p, size, tag);
        if (w->use == WL_VERIFY)
            WL_CHECK(w, kmm_usable_size(w->mm, p) >= size && kmm_usable_size(w->mm, p) < size + ps);
        kmm_vfree(w->mm, p);
    }
    wl_stop(w);
    wl_end_check(w);
    return n;
}

static long wl_fix_align(struct wl *w, long n)
{
    size_t ps = w->ps;
    wl_start(w);
    for (long i = 0; i < n; i++) {
        size_t align = i & 1 ? (size_t)2 << 20 : (size_t)64 << 10;
        size_t size = wl_range(w, 1, 5) * ps;
        uint64_t tag = wl_tag(w);
        char *p = kmm_vmalloc_aligned(w->mm, size, align, 0);
        WL_CHECK(w, p != NULL);
        WL_CHECK(w, ((uintptr_t)p & (align - 1)) == 0);
        wl_fill(w, p, size, tag);
        wl_verify(w, p, size, tag);
        kmm_vfree(w->mm, p);
    }
    wl_stop(w);
    wl_end_check(w);
    return n;
}

static long wl_random_size_align(struct wl *w, long n)
{
    size_t ps = w->ps;
    unsigned page_shift = (unsigned)__builtin_ctzll(ps);
    wl_start(w);
    for (long i = 0; i < n; i++) {
        size_t align = (size_t)1 << wl_range(w, 4, page_shift + 10);   /* 16 bytes .. 1024 pages */
        size_t size = wl_range(w, 8, 16 * ps);
        uint64_t tag = wl_tag(w);
        char *p = kmm_vmalloc_aligned(w->mm, size, align, 0);
        WL_CHECK(w, p != NULL);
        WL_CHECK(w, ((uintptr_t)p & ((align > ps ? align : ps) - 1)) == 0);
        wl_fill(w, p, size, tag);
        wl_verify(w, p, size, tag);
        kmm_vfree(w->mm, p);
    }
    wl_stop(w);
    wl_end_check(w);
    return n;
}

/* Is there an address a, a multiple of align, with [a, a + need) inside
 * [start, start + bytes)? (No overflow for any align up to 2^63.) */
static bool wl_aligned_fits(uintptr_t start, size_t bytes, size_t align, size_t need)
{
    uintptr_t a = (start + (align - 1)) & ~(uintptr_t)(align - 1);
    if (a < start)   /* wrapped past the top of the address space */
        return false;
    return a - start <= bytes && bytes - (a - start) >= need;
}

static long wl_align_shift(struct wl *w, long n)
{
    (void)n;
    size_t ps = w->ps;
    uintptr_t start = 0;
    size_t bytes = 0;
    if (!w->shared) {
        /* a fresh space: its first area is its start; then it is empty again */
        char *first = wl_vmalloc(w, ps);
        kmm_vfree(w->mm, first);
        kmm_vmalloc_purge(w->mm);
        struct kmm_vmalloc_stats st;
        kmm_vmalloc_stats(w->mm, &st);
        WL_CHECK(w, st.areas == 0 && st.free_ranges == 1);
        start = (uintptr_t)first;
        bytes = st.space_bytes;
    }
    long ok = 0;
    size_t largest = 0;
    wl_start(w);
    for (unsigned shift = 0; shift < 64; shift++) {
        size_t align = (size_t)1 << shift;
        errno = 0;
        char *p = kmm_vmalloc_aligned(w->mm, ps, align, 0);
        int err = errno;
        if (p) {
            WL_CHECK(w, ((uintptr_t)p & (align - 1)) == 0);
            wl_fill(w, p, ps, shift);
            wl_verify(w, p, ps, shift);
            kmm_vfree(w->mm, p);
            ok++;
            largest = align;
        } else {
            WL_CHECK(w, err == ENOMEM || err == EINVAL);
        }
        if (!w->shared) {
            /* must succeed while an aligned range fits; must fail beyond
             * the space (where it may only fit by luck, it may do either) */
            bool fits = wl_aligned_fits(start, bytes, align, 2 * ps);
            if (fits && align <= bytes && !p) {
                fprintf(stderr, "vm_workloads: align_shift: alignment 2^%u fits in the space [%#lx, +%#zx) but failed\n",
                        shift, (unsigned long)start, bytes);
                wl_fail(w, __FILE__, __LINE__, "aligned allocation that fits failed");
            }
            if (!fits && p)
                wl_fail(w, __FILE__, __LINE__, "aligned allocation succeeded where no aligned range fits");
        } else if (align <= 16 * ps) {
            WL_CHECK(w, p != NULL);
        }
    }
    wl_stop(w);
    w->extra[0] = ok;
    w->extra[1] = (long)__builtin_ctzll(largest ? largest : 1);
    wl_end_check(w);
    return 64;
}

static long wl_vm_map_ram(struct wl *w, long n)
{
    size_t ps = w->ps;
    /* a block of 8 contiguous pages (one run) and 8 single pages (every
     * other one of 16 allocated, so seldom next to each other), the singles
     * in a shuffled order: about 9 runs to map */
    enum { BLOCK = 8, SINGLES = WL_MAP_PAGES - BLOCK };
    char *block = kmm_alloc_pages(w->mm, 3, 0);
    char *single[2 * SINGLES];
    WL_CHECK(w, block != NULL);
    for (int i = 0; i < 2 * SINGLES; i++) {
        single[i] = kmm_alloc_pages(w->mm, 0, 0);
        WL_CHECK(w, single[i] != NULL);
    }
    char *page[WL_MAP_PAGES];
    for (int i = 0; i < BLOCK; i++)
        page[i] = block + (size_t)i * ps;
    for (int i = 0; i < SINGLES; i++)
        page[BLOCK + i] = single[2 * i];
    for (int i = WL_MAP_PAGES - 1; i > 0; i--) {   /* shuffle the singles among themselves, keep the block */
        if (i < BLOCK)
            break;
        int j = BLOCK + (int)wl_range(w, 0, (size_t)(i - BLOCK));
        char *t = page[i];
        page[i] = page[j];
        page[j] = t;
    }
    kmm_phys_t phys[WL_MAP_PAGES];
    for (int i = 0; i < WL_MAP_PAGES; i++) {
        phys[i] = kmm_virt_to_phys(w->mm, page[i]);
        WL_CHECK(w, phys[i] != KMM_PHYS_NONE);
    }
    uint64_t tag = wl_tag(w);
    for (int i = 0; i < WL_MAP_PAGES; i++)   /* through the direct map */
        wl_fill(w, page[i], ps, tag + (uint64_t)i);
    wl_start(w);
    for (long it = 0; it < n; it++) {
        bool ro = (it & 3) == 3;
        char *v = kmm_vmap(w->mm, phys, WL_MAP_PAGES, ro ? KMM_PROT_READ : KMM_PROT_READ | KMM_PROT_WRITE);
        WL_CHECK(w, v != NULL);
        WL_CHECK(w, ((uintptr_t)v & (ps - 1)) == 0);
        if (w->use == WL_VERIFY) {
            for (int i = 0; i < WL_MAP_PAGES; i++) {
                wl_verify(w, v + (size_t)i * ps, ps, tag + (uint64_t)i);   /* page i where it was asked */
                WL_CHECK(w, kmm_vmalloc_to_phys(w->mm, v + (size_t)i * ps + 8) == phys[i] + 8);
            }
        } else {
            WL_CHECK(w, *(volatile char *)v == *page[0]);
        }
        if (!ro) {
            /* write through the mapping, see it through the direct map */
            uint64_t next = wl_tag(w);
            for (int i = 0; i < WL_MAP_PAGES; i++)
                wl_fill(w, v + (size_t)i * ps, ps, next + (uint64_t)i);
            for (int i = 0; i < WL_MAP_PAGES; i++)
                wl_verify(w, page[i], ps, next + (uint64_t)i);
            tag = next;
        }
        kmm_vunmap(w->mm, v);
    }
    wl_stop(w);
    for (int i = 0; i < WL_MAP_PAGES; i++)
        wl_verify(w, page[i], ps, tag + (uint64_t)i);   /* the pages stay the caller's, intact */
    kmm_free_pages(w->mm, block);
    for (int i = 0; i < 2 * SINGLES; i++)
        kmm_free_pages(w->mm, single[i]);
    wl_end_check(w);
    return n;
}

static long wl_realloc(struct wl *w, long n)
{
    size_t ps = w->ps;
    long ops = 0, in_place = 0, moved = 0;
    double ns = 0;
    uint64_t calls = 0;
    for (long cycle = 0; ops < n; cycle++) {
        size_t size = wl_range(w, 1, 3) * ps - wl_range(w, 0, ps / 2);
        uint64_t tag = wl_tag(w);
        char *p = wl_vmalloc(w, size);
        wl_fill(w, p, size, tag);
        /* every third cycle an area right after it: growing must move.
         * Alone on the memory system, after a purge the space is empty:
         * p is at its start and the blocker right after p's guard page. */
        char *blocker = NULL;
        bool moved_once = false;
        if (cycle % 3 == 2) {
            wl_verify(w, p, size, tag);
            kmm_vfree(w->mm, p);
            kmm_vmalloc_purge(w->mm);
            p = wl_vmalloc(w, size);
            wl_fill(w, p, size, tag);
            blocker = wl_vmalloc(w, ps);
            if (!w->shared)
                WL_CHECK(w, blocker == p + (size + ps - 1) / ps * ps + ps);
        }
        wl_start(w);
        for (int step = 0; step < 16; step++) {
            bool grow = step < 8;
            size_t to = grow ? size + wl_range(w, 1, 5) * ps - wl_range(w, 0, ps - 1)
                             : (step == 15 ? wl_range(w, 8, ps) : size / 2 + wl_range(w, 0, size / 4));
            unsigned flags = grow && (step & 3) == 1 ? KMM_ZERO : 0;
            char *q = kmm_realloc(w->mm, p, to, flags);
            WL_CHECK(w, q != NULL);
            WL_CHECK(w, ((uintptr_t)q & (ps - 1)) == 0);
            WL_CHECK(w, kmm_is_vmalloc_addr(w->mm, q));
            if (q == p)
                in_place++;
            else
                moved++;
            if (blocker && !w->shared && !moved_once && (to + ps - 1) / ps > (size + ps - 1) / ps) {
                WL_CHECK(w, q != p);   /* more pages and no room after it: it moved */
                moved_once = true;
            }
            ops++;
            size_t kept = size < to ? size : to;
            wl_verify_below(w, q, size, tag, kept);   /* the contents are kept */
            if (w->use == WL_VERIFY) {
                if (flags & KMM_ZERO) {   /* what it grew by reads as zeros */
                    for (size_t off = size; off < to; off += 61)
                        WL_CHECK(w, q[off] == 0);
                }
                WL_CHECK(w, kmm_usable_size(w->mm, q) >= to);
            }
            p = q;
            size = to;
            tag = wl_tag(w);
            wl_fill(w, p, size, tag);
        }
        wl_stop(w);
        ns += w->ns;
        calls += w->calls;
        wl_verify(w, p, size, tag);
        kmm_free(w->mm, p);   /* kmm_free takes vmalloc memory */
        kmm_vfree(w->mm, blocker);
    }
    w->ns = ns;
    w->calls = calls;
    w->extra[0] = in_place;
    w->extra[1] = moved;
    wl_end_check(w);
    return ops;
}

/* ---- the table ----------------------------------------------------------------- */

struct workload {
    const char *name;
    long (*fn)(struct wl *w, long n);
    long n;                    /* operations at scale 1 */
    const char *op;            /* what one operation is */
};

static const struct workload workloads[] = {
    { "fixed_size_alloc", wl_fixed_size, 4000, "1-page vmalloc+vfree" },
    { "full_fit_alloc", wl_full_fit, 2048, "1-page vmalloc+vfree into holes" },
    { "long_busy_list_alloc", wl_long_busy_list, 400, "vmalloc+vfree, 100 or 1 pages" },
    { "random_size_alloc", wl_random_size, 500, "vmalloc+vfree of 1..100 pages" },
    { "fix_align_alloc", wl_fix_align, 2000, "aligned vmalloc+vfree, 1..5 pages" },
    { "random_size_align_alloc", wl_random_size_align, 2000, "aligned vmalloc+vfree" },
    { "align_shift_alloc", wl_align_shift, 64, "vmalloc_aligned 2^0..2^63 (+vfree)" },
    { "vm_map_ram", wl_vm_map_ram, 400, "kmm_vmap+kmm_vunmap of 16 pages" },
    { "realloc_grow_shrink", wl_realloc, 1600, "kmm_realloc of vmalloc memory" },
};
#define WL_COUNT ((int)(sizeof workloads / sizeof workloads[0]))

struct wl_result {
    long ops;
    double ns;                 /* in the timed parts */
    uint64_t calls;            /* map + unmap calls in them (single thread only) */
    long extra[2];
};

/* A memory system for the workloads: 1 GiB of sparse memory, page size
 * ps, a vmalloc space of space bytes (0: the default, 2 GiB). */
static struct kmm *wl_mm_create(size_t ps, uint64_t space)
{
    struct kmm_config cfg = { .page_size = ps, .mem_size = (uint64_t)1 << 30, .vmalloc_size = space };
    return kmm_create(&cfg);
}

/* Runs workload i alone on a fresh memory system, whose vmalloc space is
 * 512 MiB: small enough that the 2 MiB-aligned and the larger areas fill it
 * between purges. */
static struct wl_result wl_run_one(int i, size_t ps, enum wl_use use, double scale, uint64_t seed)
{
    struct wl w = { .ps = ps, .rng = seed ^ ((uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull), .use = use, .scale = scale,
                    .name = workloads[i].name };
    if (!w.rng)
        w.rng = 1;
    w.mm = wl_mm_create(ps, (uint64_t)512 << 20);
    WL_CHECK(&w, w.mm != NULL);
    struct wl_result r = { 0 };
    r.ops = workloads[i].fn(&w, wl_iters(&w, workloads[i].n));
    r.ns = w.ns;
    r.calls = w.calls;
    r.extra[0] = w.extra[0];
    r.extra[1] = w.extra[1];
    kmm_vmalloc_purge(w.mm);
    struct kmm_vmalloc_stats st;
    kmm_vmalloc_stats(w.mm, &st);
    WL_CHECK(&w, st.areas == 0 && st.vmap_areas == 0 && st.pages == 0 && st.lazy_areas == 0);
    WL_CHECK(&w, kmm_check(w.mm) == 0);
    kmm_destroy(w.mm);
    return r;
}

/* ---- all of them across threads at once ------------------------------------------ */

struct wl_thread {
    pthread_t th;
    struct wl w;
    pthread_barrier_t *start;
    struct wl_result r[WL_COUNT];
};

static void *wl_thread_main(void *arg)
{
    struct wl_thread *t = arg;
    pthread_barrier_wait(t->start);
    for (int k = 0; k < WL_COUNT; k++) {
        int i = (int)((t->w.id + (unsigned)k) % WL_COUNT);   /* each thread starts at another workload */
        t->w.name = workloads[i].name;
        t->w.extra[0] = t->w.extra[1] = 0;
        t->r[i].ops = workloads[i].fn(&t->w, wl_iters(&t->w, workloads[i].n));
        t->r[i].ns = t->w.ns;
        t->r[i].extra[0] = t->w.extra[0];
        t->r[i].extra[1] = t->w.extra[1];
    }
    return NULL;
}

/* Every workload in nthreads threads at once on one memory system (the
 * default vmalloc space, 2 GiB, which the threads race to create); per
 * workload, the operations and time summed over the threads; *wall_ns the
 * wall time from the start barrier to the last join. Ends with a purge,
 * every area gone and kmm_check. */
static void wl_run_threads(int nthreads, size_t ps, enum wl_use use, double scale, uint64_t seed,
                           struct wl_result r[WL_COUNT], double *wall_ns)
{
    static struct wl_thread t[WL_MAX_THREADS];
    struct kmm *mm = wl_mm_create(ps, 0);
    struct wl main_w = { .name = "all_threads", .mm = mm };
    WL_CHECK(&main_w, mm != NULL && nthreads <= WL_MAX_THREADS);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)nthreads + 1);
    for (int i = 0; i < nthreads; i++) {
        memset(&t[i], 0, sizeof t[i]);
        t[i].w = (struct wl){ .mm = mm, .ps = ps, .rng = (seed ^ ((uint64_t)(i + 17) * 0xD6E8FEB86659FD93ull)) | 1,
                              .id = (unsigned)i, .use = use, .shared = true, .scale = scale };
        t[i].start = &start;
        WL_CHECK(&main_w, pthread_create(&t[i].th, NULL, wl_thread_main, &t[i]) == 0);
    }
    pthread_barrier_wait(&start);
    double t0 = wl_now();
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i].th, NULL);
    *wall_ns = wl_now() - t0;
    pthread_barrier_destroy(&start);
    memset(r, 0, WL_COUNT * sizeof *r);
    for (int i = 0; i < nthreads; i++) {
        for (int k = 0; k < WL_COUNT; k++) {
            r[k].ops += t[i].r[k].ops;
            r[k].ns += t[i].r[k].ns;
            r[k].extra[0] += t[i].r[k].extra[0];
            if (workloads[k].fn == wl_align_shift)   /* the largest alignment: the largest of any thread */
                r[k].extra[1] = t[i].r[k].extra[1] > r[k].extra[1] ? t[i].r[k].extra[1] : r[k].extra[1];
            else
                r[k].extra[1] += t[i].r[k].extra[1];
        }
    }
    kmm_vmalloc_purge(mm);
    struct kmm_vmalloc_stats st;
    kmm_vmalloc_stats(mm, &st);
    WL_CHECK(&main_w, st.areas == 0 && st.vmap_areas == 0 && st.pages == 0 && st.lazy_areas == 0);
    WL_CHECK(&main_w, st.free_ranges == 1 && st.free_bytes == st.space_bytes);
    WL_CHECK(&main_w, kmm_check(mm) == 0);
    kmm_destroy(mm);
}

/* ---- the test ------------------------------------------------------------------------ */

#ifndef VM_WORKLOADS_NO_MAIN

static void print_row(const char *name, const struct wl_result *r, bool calls)
{
    printf("  %-24s %7ld ops %9.1f ms %9.2f us/op", name, r->ops, r->ns / 1e6, r->ops ? r->ns / 1e3 / (double)r->ops : 0);
    if (calls)
        printf("  %6.2f calls/op", r->ops ? (double)r->calls / (double)r->ops : 0);
    printf("\n");
}

static void print_extra(int i, const struct wl_result *r)
{
    if (workloads[i].fn == wl_realloc)
        printf("  %-24s %ld in place, %ld moved\n", "", r->extra[0], r->extra[1]);
    else if (workloads[i].fn == wl_align_shift)
        printf("  %-24s %ld of %ld alignments succeeded, the largest 2^%ld bytes\n", "", r->extra[0], r->ops,
               r->extra[1]);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    double scale = WL_TSAN ? 0.25 : WL_ASAN ? 0.5 : 1;
    const char *s = getenv("KMM_WORKLOADS_SCALE");
    if (s && atof(s) > 0)
        scale = atof(s);
    s = getenv("KMM_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    if (!seed)
        seed = 1;
    const size_t ps = 4096;
    int nthreads = 4;
    printf("vm_workloads: seed %llu (KMM_SEED), scale %.2f (KMM_WORKLOADS_SCALE)%s, page size %zu\n",
           (unsigned long long)seed, scale, WL_TSAN ? " [TSan]" : WL_ASAN ? " [ASan]" : "", ps);
    printf("times include writing and checking the memory and are printed, never asserted; calls = platform\n"
           "map + unmap calls (mmap) per operation\n");

    double t0 = wl_now();
    printf("single thread, each workload on a fresh memory system:\n");
    struct wl_result r[WL_COUNT];
    for (int i = 0; i < WL_COUNT; i++) {
        r[i] = wl_run_one(i, ps, WL_VERIFY, scale, seed);
        print_row(workloads[i].name, &r[i], true);
        print_extra(i, &r[i]);
    }

    /* a larger page size: the same workloads must hold (fewer iterations) */
    printf("single thread, 64 KiB pages (scale x 0.05):\n");
    for (int i = 0; i < WL_COUNT; i++) {
        struct wl_result q = wl_run_one(i, 65536, WL_VERIFY, scale * 0.05, seed + 1);
        print_row(workloads[i].name, &q, true);
    }

    double wall;
    printf("%d threads at once on one memory system, each running every workload (scale x 0.25):\n", nthreads);
    wl_run_threads(nthreads, ps, WL_VERIFY, scale * 0.25, seed, r, &wall);
    for (int i = 0; i < WL_COUNT; i++) {
        print_row(workloads[i].name, &r[i], false);
        print_extra(i, &r[i]);
    }
    printf("  (us/op: each thread's time over its operations, all threads together; wall %.1f ms)\n", wall / 1e6);
    printf("vm_workloads: ok, kmm_check clean after every workload (%.1f s)\n", (wl_now() - t0) / 1e9);
    return 0;
}

#endif /* VM_WORKLOADS_NO_MAIN */
