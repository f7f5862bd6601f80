/* zs_fault.c - injected failures of zsmalloc's page and metadata allocations.
 *
 * kmm_fault_inject(mm, KMM_FAULT_PAGES | KMM_FAULT_META, k, times) makes the
 * k-th page or metadata allocation of the layers above the page allocator
 * fail - only that one (times 1), or every one from the k-th on (times 0).
 * For both modes, k runs over 1, 2, ... 48 and then grows by a quarter each
 * step until a run injects nothing (every allocation of the script was
 * passed). Each run is a fresh memory system (4 KiB pages, 64 MiB) with a
 * pool of the default layout (odd k) or of 4-page zspages with 8-byte steps
 * (even k) that already holds objects of every class (each with its own
 * pattern), and runs a fixed script under injection:
 *   kmm_zs_malloc of 1 .. page size bytes, KMM_ZERO sometimes, in several
 *   passes over the classes, and 1500 small objects (the handle table
 *   grows); writes through kmm_zs_write and KMM_ZS_WO mappings; frees of
 *   every third object; kmm_zs_compact.
 * Checked:
 *  - every kmm_zs_malloc gives a working object or 0 with errno ENOMEM;
 *    a 0 comes only when a failure was injected during that very call;
 *    after it the pool is intact: its objects and obj_bytes as before,
 *    kmm_check passes, every object held reads back its pattern, and the
 *    next kmm_zs_malloc of that size succeeds (with times 1 at once; with
 *    times 0 once injection is off);
 *  - kmm_zs_map / kmm_zs_unmap / kmm_zs_read / kmm_zs_write / kmm_zs_compact
 *    never fail under injection (they never allocate);
 *  - at the end, injection off: every object reads back its pattern, and
 *    after freeing everything and kmm_zs_destroy the page allocator's free
 *    pages and kmm's metadata objects are back at their values before the
 *    pool; kmm_check passes. For k up to 8 a failure was really injected.
 * Then kmm_zs_create (and kmm_zs_create_config) under injection, k = 1, 2,
 * ... until nothing is injected: NULL with ENOMEM and nothing taken, or a
 * pool that works.
 */
#include "kmm_test.h"

#include <kmm.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PS      4096u
#define MEM     (64ull << 20)
#define MAX_OBJ 6000u

static unsigned long g_k;
static const char *g_mode = "";
static const char *g_what = "";

static void fail_head(FILE *f)
{
    fprintf(f, "zs_fault FAILED (%s, k = %lu, %s): ", g_mode, g_k, g_what);
}

#define fail(...) kmm_test_fail(__VA_ARGS__)

struct obj {
    uint64_t h;
    size_t size;
    uint64_t key;
    bool zero;
};

struct run {
    struct kmm *mm;
    struct kmm_zspool *pool;
    unsigned long k, times;
    struct obj objs[MAX_OBJ];
    size_t n;
    uint64_t next_key;
    unsigned char scratch[PS];
    unsigned long nulls, calls;
    unsigned long injected;      /* failures injected before injection was last re-armed */
};

static void check_obj(struct run *r, const struct obj *o)
{
    if (kmm_zs_read(r->pool, o->h, 0, r->scratch, o->size) != 0)
        fail("kmm_zs_read of %#llx failed", (unsigned long long)o->h);
    for (size_t i = 0; i < o->size; i++) {
        unsigned char want = o->zero ? 0 : kmm_test_pat(o->key, i);
        if (r->scratch[i] != want)
            fail("handle %#llx (%zu bytes): byte %zu is %#x, expected %#x", (unsigned long long)o->h, o->size, i,
                 r->scratch[i], want);
    }
}

static void check_all(struct run *r)
{
    for (size_t i = 0; i < r->n; i++)
        check_obj(r, &r->objs[i]);
}

static size_t obj_bytes(struct run *r)
{
    size_t b = 0;
    for (size_t i = 0; i < r->n; i++)
        b += kmm_zs_usable_size(r->pool, r->objs[i].h);
    return b;
}

/* Fills a new object: half through kmm_zs_write, half through a KMM_ZS_WO mapping. */
static void fill(struct run *r, struct obj *o)
{
    if (o->zero)
        return;
    o->key = ++r->next_key;
    if (o->key & 1) {
        kmm_test_span_io(r->scratch, o->key, 0, o->size, true);
        if (kmm_zs_write(r->pool, o->h, 0, r->scratch, o->size) != 0)
            fail("kmm_zs_write failed under injection");
    } else {
        unsigned char *p = kmm_zs_map(r->pool, o->h, KMM_ZS_WO);
        kmm_test_span_io(p, o->key, 0, o->size, true);
        kmm_zs_unmap(r->pool, o->h);
    }
}

/* One kmm_zs_malloc under injection, checked as the file comment says. */
static void try_malloc(struct run *r, size_t size, bool zero)
{
    if (r->n == MAX_OBJ)
        return;
    g_what = "kmm_zs_malloc";
    struct kmm_zs_stats before, after;
    kmm_zs_stats(r->pool, &before);
    unsigned long inj = kmm_fault_injected(r->mm);
    errno = 0;
    r->calls++;
    uint64_t h = kmm_zs_malloc(r->pool, size, zero ? KMM_ZERO : 0);
    if (h) {
        struct obj *o = &r->objs[r->n++];
        *o = (struct obj){ .h = h, .size = size, .zero = zero };
        if (kmm_zs_usable_size(r->pool, h) < size)
            fail("usable size %zu of a %zu-byte object", kmm_zs_usable_size(r->pool, h), size);
        if (zero)
            check_obj(r, o);
        fill(r, o);
        return;
    }
    r->nulls++;
    if (errno != ENOMEM)
        fail("kmm_zs_malloc(%zu) returned 0 with errno %d, not ENOMEM", size, errno);
    if (kmm_fault_injected(r->mm) == inj)
        fail("kmm_zs_malloc(%zu) returned 0 with no failure injected during it", size);
    kmm_zs_stats(r->pool, &after);
    if (after.objects != before.objects || after.obj_bytes != before.obj_bytes)
        fail("a failed kmm_zs_malloc(%zu) changed the pool: %zu objects of %zu bytes, before %zu of %zu", size,
             after.objects, after.obj_bytes, before.objects, before.obj_bytes);
    if (after.pages_used > before.pages_used)
        fail("a failed kmm_zs_malloc(%zu) kept pages: %zu, before %zu", size, after.pages_used, before.pages_used);
    g_what = "kmm_check after a failed kmm_zs_malloc";
    if (kmm_check(r->mm) != 0)
        fail("kmm_check failed");
    if (r->calls % 16 == 1 || r->nulls < 4)   /* every object is O(pool): not after every failure */
        check_all(r);
    /* usable: the same call again succeeds (with times 0, once injection is off) */
    if (!r->times) {
        r->injected += kmm_fault_injected(r->mm);
        kmm_fault_inject(r->mm, 0, 0, 0);
    }
    g_what = "kmm_zs_malloc after a failure";
    uint64_t again = kmm_zs_malloc(r->pool, size, zero ? KMM_ZERO : 0);
    if (!again)
        fail("kmm_zs_malloc(%zu) after an injected failure failed too (errno %d)", size, errno);
    struct obj *o = &r->objs[r->n++];
    *o = (struct obj){ .h = again, .size = size, .zero = zero };
    if (zero)
        check_obj(r, o);
    fill(r, o);
    if (!r->times)
        kmm_fault_inject(r->mm, KMM_FAULT_PAGES | KMM_FAULT_META, 1, 0);   /* every call fails from here on */
}

static void free_every_third(struct run *r)
{
    g_what = "kmm_zs_free";
    size_t kept = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (i % 3 == 1) {
            check_obj(r, &r->objs[i]);
            kmm_zs_free(r->pool, r->objs[i].h);
        } else {
            r->objs[kept++] = r->objs[i];
        }
    }
    r->n = kept;
}

static void run_one(unsigned long k, unsigned long times, unsigned long *injected)
{
    g_k = k;
    g_what = "set-up";
    struct run *r = calloc(1, sizeof *r);
    if (!r)
        fail("out of memory");
    r->k = k;
    r->times = times;
    r->mm = kmm_test_create(PS, MEM);
    kmm_drain(r->mm);
    struct kmm_page_stats ps0, ps1;
    struct kmm_meta_stats meta0, meta1;
    kmm_page_stats(r->mm, &ps0);
    kmm_meta_stats(r->mm, &meta0);
    static const struct kmm_zs_config small_zspages = { 8, 4 };
    r->pool = k & 1 ? kmm_zs_create(r->mm, "fault") : kmm_zs_create_config(r->mm, "fault", &small_zspages);
    if (!r->pool)
        fail("kmm_zs_create failed");
    size_t ncl = kmm_zs_class_stats(r->pool, NULL, 0);
    struct kmm_zs_class_stats *cl = calloc(ncl, sizeof *cl);
    if (!cl)
        fail("out of memory");
    kmm_zs_class_stats(r->pool, cl, ncl);
    for (size_t ci = 0; ci < ncl; ci++)   /* every class holds an object already */
        try_malloc(r, cl[ci].size, false);
    r->calls = r->nulls = 0;

    kmm_fault_inject(r->mm, KMM_FAULT_PAGES | KMM_FAULT_META, k, times);
    for (unsigned pass = 0; pass < 3; pass++)
        for (size_t ci = pass; ci < ncl; ci += 2)
            try_malloc(r, ci ? cl[ci - 1].size + 1 + pass * (cl[ci].size - cl[ci - 1].size - 1) / 2 : 1, ci % 5 == 0);
    for (unsigned i = 0; i < 1500; i++)
        try_malloc(r, 8 + i % 200, false);
    free_every_third(r);
    g_what = "kmm_zs_compact under injection";
    kmm_zs_compact(r->pool);
    for (size_t s = 1; s <= PS; s += 97)
        try_malloc(r, s, s % 3 == 0);
    try_malloc(r, PS, false);
    *injected = r->injected + kmm_fault_injected(r->mm);
    kmm_fault_inject(r->mm, 0, 0, 0);

    g_what = "the end";
    if (kmm_check(r->mm) != 0)
        fail("kmm_check failed");
    check_all(r);
    struct kmm_zs_stats st;
    kmm_zs_stats(r->pool, &st);
    if (st.objects != r->n || st.obj_bytes != obj_bytes(r))
        fail("the pool has %zu objects of %zu bytes; the script holds %zu of %zu", st.objects, st.obj_bytes, r->n,
             obj_bytes(r));
    for (size_t i = 0; i < r->n; i++)
        kmm_zs_free(r->pool, r->objs[i].h);
    kmm_zs_stats(r->pool, &st);
    if (st.objects || st.pages_used || st.zspages)
        fail("empty pool: %zu objects, %zu pages, %zu zspages", st.objects, st.pages_used, st.zspages);
    kmm_zs_destroy(r->pool);
    kmm_drain(r->mm);
    kmm_page_stats(r->mm, &ps1);
    kmm_meta_stats(r->mm, &meta1);
    if (ps1.free_pages != ps0.free_pages)
        fail("%zu free pages after kmm_zs_destroy, %zu before the pool", ps1.free_pages, ps0.free_pages);
    if (meta1.objects != meta0.objects || meta1.large_objects != meta0.large_objects)
        fail("metadata objects %zu + %zu large after kmm_zs_destroy, %zu + %zu before", meta1.objects,
             meta1.large_objects, meta0.objects, meta0.large_objects);
    if (kmm_check(r->mm) != 0)
        fail("kmm_check after kmm_zs_destroy failed");
    kmm_destroy(r->mm);
    free(cl);
    free(r);
}

/* kmm_zs_create under injection: NULL + ENOMEM with nothing taken, or a working pool. */
static void run_create(void)
{
    g_mode = "kmm_zs_create";
    unsigned long fails = 0;
    for (unsigned long k = 1;; k++) {
        g_k = k;
        g_what = "kmm_zs_create";
        struct kmm *mm = kmm_test_create(PS, MEM);
        kmm_drain(mm);
        struct kmm_page_stats ps0, ps1;
        struct kmm_meta_stats meta0, meta1;
        kmm_page_stats(mm, &ps0);
        kmm_meta_stats(mm, &meta0);
        static const struct kmm_zs_config cfg = { 64, 64 };
        kmm_fault_inject(mm, KMM_FAULT_PAGES | KMM_FAULT_META, k, 1);
        errno = 0;
        struct kmm_zspool *pool = k & 1 ? kmm_zs_create(mm, "created") : kmm_zs_create_config(mm, "created", &cfg);
        unsigned long injected = kmm_fault_injected(mm);
        kmm_fault_inject(mm, 0, 0, 0);
        if (!pool) {
            fails++;
            if (errno != ENOMEM)
                fail("kmm_zs_create returned NULL with errno %d", errno);
            if (!injected)
                fail("kmm_zs_create returned NULL with no failure injected");
        } else {
            uint64_t h = kmm_zs_malloc(pool, 1000, KMM_ZERO);
            unsigned char b[1000];
            if (!h || kmm_zs_read(pool, h, 0, b, sizeof b) != 0 || b[0] || b[999])
                fail("a pool made under injection does not work");
            kmm_zs_free(pool, h);
            kmm_zs_destroy(pool);
        }
        kmm_drain(mm);
        kmm_page_stats(mm, &ps1);
        kmm_meta_stats(mm, &meta1);
        if (ps1.free_pages != ps0.free_pages || meta1.objects != meta0.objects ||
            meta1.large_objects != meta0.large_objects)
            fail("kmm_zs_create (%s) left pages or metadata behind: %zu free pages (before %zu), %zu + %zu meta objects "
                 "(before %zu + %zu)",
                 pool ? "destroyed" : "failed", ps1.free_pages, ps0.free_pages, meta1.objects, meta1.large_objects,
                 meta0.objects, meta0.large_objects);
        if (kmm_check(mm) != 0)
            fail("kmm_check failed");
        kmm_destroy(mm);
        if (!injected)
            break;
    }
    if (!fails)
        fail("kmm_zs_create never failed: it takes no page or metadata allocation under injection?");
    printf("  kmm_zs_create: %lu of its allocations failed in turn, each cleanly\n", fails);
}

int main(void)
{
    kmm_test_on_fail(fail_head, NULL, false);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned long runs = 0;
    for (unsigned long times = 1;; times = 0) {
        g_mode = times ? "one failure (times 1)" : "every call from the k-th (times 0)";
        unsigned long k = 1, last = 0;
        for (;;) {
            unsigned long injected;
            run_one(k, times, &injected);
            runs++;
            if (k <= 8 && !injected)
                fail("nothing was injected");
            if (!injected) {
                last = k;
                break;
            }
            k = k < 48 ? k + 1 : k + k / 4;
        }
        printf("  %s: k = 1 .. %lu\n", g_mode, last);
        if (!times)
            break;
    }
    run_create();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("zs_fault: OK, %lu runs, %.1f s\n", runs,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
