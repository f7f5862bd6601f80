/* secret_fault.c - injected failures under secret memory.
 *
 * kmm_fault_inject(mm, KMM_FAULT_PAGES | META | MAP | DIRECT, k, times): the
 * k-th page allocation, metadata allocation, vm_map or direct-map /
 * memfd_secret call fails - only that one (times 1), or every one from the
 * k-th on (times 0). k runs over 1, 2, ... 24, then grows by a quarter, until
 * a run injects nothing. Each run: a fresh memory system (4 KiB pages, odd
 * k; 16 KiB, even k), a few secrets made before injection, then a fixed
 * script under it: kmm_secret_alloc of 1 byte .. 600 KiB (several runs of
 * the unmapped cache each), on the UNMAPPED backing and, where available,
 * on memfd_secret; 24 small secrets (the record table grows); frees of
 * every third one.
 * Checked:
 *  - every kmm_secret_alloc gives zeroed, working memory, or NULL with
 *    errno ENOMEM and only when a failure was injected during that call;
 *    then the stats are as before, kmm_check passes, every live secret
 *    still holds its pattern, and the same call succeeds at once (times 1)
 *    or once injection is off (times 0);
 *  - kmm_secret_free never fails under injection;
 *  - at the end, injection off: patterns hold; after freeing everything
 *    the page allocator's free pages (after kmm_unmapped_shrink and
 *    kmm_drain) and kmm's metadata objects are what they were after a
 *    first secret made the layer's state and the cache's; VmLck is back; kmm_check passes. For k up to 8 a
 *    failure was really injected.
 */
#include "kmm_test.h"
#include "secret/secret_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MEM   (64ull << 20)
#define MAX_S 128
#define SITES (KMM_FAULT_PAGES | KMM_FAULT_META | KMM_FAULT_MAP | KMM_FAULT_DIRECT)

static unsigned long g_k;
static const char *g_mode = "";
static const char *g_what = "";

static void fail_head(FILE *f) { fprintf(f, "secret_fault FAILED (%s, k = %lu, %s): ", g_mode, g_k, g_what); }

#define fail(...) kmm_test_fail(__VA_ARGS__)

struct live {
    unsigned char *p;
    size_t size;
    uint64_t key;
};

struct run {
    struct kmm *mm;
    size_t ps;
    unsigned long times, injected;
    struct live s[MAX_S];
    size_t n;
    uint64_t next_key;
    bool memfd;
};

static void check_one(const struct live *l)
{
    size_t at = kmm_test_span_io(l->p, l->key, 0, l->size, false);
    if (at != SIZE_MAX)
        fail("secret %p of %zu bytes lost its pattern at byte %zu", (void *)l->p, l->size, at);
}

static void check_all(struct run *r)
{
    for (size_t i = 0; i < r->n; i++)
        check_one(&r->s[i]);
}

static void keep(struct run *r, unsigned char *p, size_t size)
{
    for (size_t i = 0; i < size; i++)
        if (p[i])
            fail("a new secret of %zu bytes is not zero at byte %zu", size, i);
    struct live *l = &r->s[r->n++];
    *l = (struct live){ p, size, ++r->next_key };
    kmm_test_span_io(p, l->key, 0, size, true);
}

static void try_alloc(struct run *r, size_t size)
{
    if (r->n == MAX_S)
        return;
    g_what = "kmm_secret_alloc";
    struct kmm_secret_stats before, after;
    kmm_secret_stats(r->mm, &before);
    unsigned long inj = kmm_fault_injected(r->mm);
    errno = 0;
    unsigned char *p = kmm_secret_alloc(r->mm, size);
    if (p) {
        keep(r, p, size);
        return;
    }
    if (errno != ENOMEM)
        fail("kmm_secret_alloc(%zu) returned NULL with errno %d, not ENOMEM", size, errno);
    if (kmm_fault_injected(r->mm) == inj)
        fail("kmm_secret_alloc(%zu) returned NULL with no failure injected during it", size);
    kmm_secret_stats(r->mm, &after);
    if (after.allocations != before.allocations || after.bytes != before.bytes ||
        after.locked_bytes != before.locked_bytes || after.allocs != before.allocs)
        fail("a failed kmm_secret_alloc(%zu) changed the stats", size);
    g_what = "kmm_check after a failed kmm_secret_alloc";
    if (kmm_check(r->mm) != 0)
        fail("kmm_check failed");
    check_all(r);
    if (!r->times) {
        r->injected += kmm_fault_injected(r->mm);
        kmm_fault_inject(r->mm, 0, 0, 0);
    }
    g_what = "kmm_secret_alloc after a failure";
    p = kmm_secret_alloc(r->mm, size);
    if (!p)
        fail("kmm_secret_alloc(%zu) after an injected failure failed too (errno %d)", size, errno);
    keep(r, p, size);
    if (!r->times)
        kmm_fault_inject(r->mm, SITES, 1, 0);
}

static void free_every_third(struct run *r)
{
    g_what = "kmm_secret_free under injection";
    size_t kept = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (i % 3 == 1) {
            check_one(&r->s[i]);
            kmm_secret_free(r->mm, r->s[i].p);
        } else {
            r->s[kept++] = r->s[i];
        }
    }
    r->n = kept;
}

static size_t vm_locked(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmLck: %zu kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb * 1024;
}

static void script(struct run *r, enum kmm_secret_backing backing)
{
    if (kmm_secret_set_backing(r->mm, backing) != 0)
        fail("kmm_secret_set_backing(%s)", kmm_secret_backing_name(backing));
    static const size_t sizes[] = { 1, 4096, 5000, 3 * 16384 + 1, 100000, 600 << 10, 17 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        try_alloc(r, sizes[i]);
}

static void run_one(unsigned long k, unsigned long times, unsigned long *injected)
{
    g_k = k;
    g_what = "set-up";
    struct run *r = calloc(1, sizeof *r);
    if (!r)
        fail("out of memory");
    r->times = times;
    r->ps = k & 1 ? 4096 : 16384;
    r->mm = kmm_test_create(r->ps, MEM);
    r->memfd = kmm_secret_backing_available(r->mm, KMM_SECRET_MEMFD);
    /* the layer's state and table, and the unmapped cache's, made for good */
    kmm_secret_free(r->mm, kmm_secret_alloc(r->mm, 1));
    kmm_unmapped_shrink(r->mm, 0);
    kmm_drain(r->mm);
    struct kmm_page_stats ps0, ps1;
    struct kmm_meta_stats meta0, meta1;
    size_t locked0 = vm_locked();
    kmm_page_stats(r->mm, &ps0);
    kmm_meta_stats(r->mm, &meta0);
    for (int i = 0; i < 3; i++)
        try_alloc(r, 1000 + 9000 * (size_t)i);

    kmm_fault_inject(r->mm, SITES, k, times);
    script(r, KMM_SECRET_UNMAPPED);
    if (r->memfd)
        script(r, KMM_SECRET_MEMFD);
    kmm_secret_set_backing(r->mm, KMM_SECRET_UNMAPPED);
    for (unsigned i = 0; i < 24; i++)
        try_alloc(r, 1 + i * 97);
    free_every_third(r);
    try_alloc(r, 3 * r->ps);
    *injected = r->injected + kmm_fault_injected(r->mm);
    kmm_fault_inject(r->mm, 0, 0, 0);

    g_what = "the end";
    if (kmm_check(r->mm) != 0)
        fail("kmm_check failed");
    check_all(r);
    struct kmm_secret_stats st;
    kmm_secret_stats(r->mm, &st);
    if (st.allocations != r->n)
        fail("%zu live secrets counted, the script holds %zu", st.allocations, r->n);
    for (size_t i = 0; i < r->n; i++)
        kmm_secret_free(r->mm, r->s[i].p);
    kmm_unmapped_shrink(r->mm, 0);
    kmm_drain(r->mm);
    kmm_page_stats(r->mm, &ps1);
    kmm_meta_stats(r->mm, &meta1);
    if (ps1.free_pages != ps0.free_pages)
        fail("%zu free pages after freeing every secret, %zu before", ps1.free_pages, ps0.free_pages);
    if (meta1.large_objects != meta0.large_objects || meta1.objects != meta0.objects)
        fail("metadata objects %zu + %zu large after freeing every secret, %zu + %zu before", meta1.objects,
             meta1.large_objects, meta0.objects, meta0.large_objects);
    if (vm_locked() != locked0)
        fail("VmLck %zu after freeing every secret, %zu before", vm_locked(), locked0);
    if (kmm_check(r->mm) != 0)
        fail("kmm_check at the end failed");
    kmm_destroy(r->mm);
    free(r);
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
            k = k < 24 ? k + 1 : k + k / 4;
        }
        printf("  %s: k = 1 .. %lu\n", g_mode, last);
        if (!times)
            break;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("secret_fault: OK, %lu runs, %.1f s\n", runs,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
