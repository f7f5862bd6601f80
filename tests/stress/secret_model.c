/* secret_model.c - secret memory against a model of the live secrets.
 *
 * A seeded random mix of kmm_secret_alloc (1 byte .. 300 KiB, mostly small;
 * the backing switched between the unmapped cache and memfd_secret where
 * it is available), kmm_secret_free of a random live one, and rewrites of
 * a live secret's bytes, at 4 KiB and 16 KiB pages. Locked memory stays
 * under 3 MiB (RLIMIT_MEMLOCK here is 8 MiB). The model holds each live
 * secret's address, size, backing and pattern key.
 * Checked, after every operation: the new secret is zero in every byte,
 * page aligned, overlaps no live secret nor its guard pages; the secret
 * freed (and a sample of the others every 64 operations) still holds its
 * pattern; kmm_secret_stats matches the model (allocations, bytes, pages,
 * locked bytes, memfd allocations, allocs, frees); kmm_check passes every
 * 16 operations and at the end. At the end everything is freed and the
 * page allocator's free pages are back.
 * KMM_SEED repeats a run; KMM_MODEL_OPS sets the operations (default 3000).
 */
#include "kmm_test.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MEM        (128ull << 20)
#define MAX_LIVE   96
#define LOCK_LIMIT (3u << 20)

static uint64_t g_seed;
static size_t g_ps;
static unsigned long g_op;

static void fail_head(FILE *f)
{
    fprintf(f, "secret_model FAILED (seed %llu, page size %zu, op %lu): ", (unsigned long long)g_seed, g_ps, g_op);
}

#define fail(...) kmm_test_fail(__VA_ARGS__)

struct secret_m {
    unsigned char *p;
    size_t size;
    uint64_t key;
    enum kmm_secret_backing backing;
};

struct model {
    struct kmm *mm;
    size_t ps;
    struct secret_m live[MAX_LIVE];
    size_t n, locked, bytes, pages, memfd;
    uint64_t allocs, frees, next_key;
    bool memfd_ok;
};

static size_t pages_of(const struct model *m, size_t size) { return (size + m->ps - 1) / m->ps; }

static void check_pattern(const struct secret_m *s)
{
    size_t at = kmm_test_span_io(s->p, s->key, 0, s->size, false);
    if (at != SIZE_MAX)
        fail("secret %p (%zu bytes, %s) lost its pattern at byte %zu", (void *)s->p, s->size,
             kmm_secret_backing_name(s->backing), at);
}

static void check_stats(struct model *m)
{
    struct kmm_secret_stats st;
    kmm_secret_stats(m->mm, &st);
    if (st.allocations != m->n || st.bytes != m->bytes || st.pages != m->pages || st.locked_bytes != m->locked ||
        st.memfd_allocations != m->memfd || st.allocs != m->allocs || st.frees != m->frees)
        fail("stats %zu allocations, %zu bytes, %zu pages, %zu locked, %zu memfd, %llu allocs, %llu frees; model "
             "%zu, %zu, %zu, %zu, %zu, %llu, %llu",
             st.allocations, st.bytes, st.pages, st.locked_bytes, st.memfd_allocations,
             (unsigned long long)st.allocs, (unsigned long long)st.frees, m->n, m->bytes, m->pages, m->locked,
             m->memfd, (unsigned long long)m->allocs, (unsigned long long)m->frees);
}

static size_t pick_size(struct model *m, uint64_t *rng)
{
    switch (kmm_test_below(rng, 8)) {
    case 0:
        return 1 + kmm_test_below(rng, 300 << 10);
    case 1:
    case 2:
        return m->ps * (1 + kmm_test_below(rng, 8));
    default:
        return 1 + kmm_test_below(rng, 2 * m->ps);
    }
}

static void do_alloc(struct model *m, uint64_t *rng)
{
    size_t size = pick_size(m, rng);
    size_t bytes = pages_of(m, size) * m->ps;
    if (m->n == MAX_LIVE || m->locked + bytes > LOCK_LIMIT)
        return;
    enum kmm_secret_backing b = KMM_SECRET_UNMAPPED;
    if (m->memfd_ok && kmm_test_below(rng, 3) == 0)
        b = KMM_SECRET_MEMFD;
    if (kmm_secret_set_backing(m->mm, b) != 0)
        fail("kmm_secret_set_backing(%s)", kmm_secret_backing_name(b));
    unsigned char *p = kmm_secret_alloc(m->mm, size);
    if (!p)
        fail("kmm_secret_alloc(%zu, %s) failed: errno %d", size, kmm_secret_backing_name(b), errno);
    if ((uintptr_t)p % m->ps)
        fail("secret %p is not page aligned", (void *)p);
    uintptr_t lo = (uintptr_t)p - m->ps, hi = (uintptr_t)p + bytes + m->ps;
    for (size_t i = 0; i < m->n; i++) {
        uintptr_t a = (uintptr_t)m->live[i].p, e = a + pages_of(m, m->live[i].size) * m->ps;
        if (a < hi && lo < e)
            fail("secret %p (+guards) overlaps the live one at %p", (void *)p, (void *)m->live[i].p);
    }
    for (size_t i = 0; i < bytes; i++)
        if (p[i])
            fail("new secret %p of %zu bytes not zero at byte %zu", (void *)p, size, i);
    struct secret_m *s = &m->live[m->n++];
    *s = (struct secret_m){ p, size, ++m->next_key, b };
    kmm_test_span_io(p, s->key, 0, size, true);
    m->locked += bytes;
    m->bytes += size;
    m->pages += bytes / m->ps;
    m->memfd += b == KMM_SECRET_MEMFD;
    m->allocs++;
}

static void do_free(struct model *m, uint64_t *rng)
{
    if (!m->n)
        return;
    size_t i = kmm_test_below(rng, m->n);
    struct secret_m s = m->live[i];
    check_pattern(&s);
    kmm_secret_free(m->mm, s.p);
    m->live[i] = m->live[--m->n];
    size_t bytes = pages_of(m, s.size) * m->ps;
    m->locked -= bytes;
    m->bytes -= s.size;
    m->pages -= bytes / m->ps;
    m->memfd -= s.backing == KMM_SECRET_MEMFD;
    m->frees++;
}

static void do_rewrite(struct model *m, uint64_t *rng)
{
    if (!m->n)
        return;
    struct secret_m *s = &m->live[kmm_test_below(rng, m->n)];
    check_pattern(s);
    s->key = ++m->next_key;
    kmm_test_span_io(s->p, s->key, 0, s->size, true);
}

static void run(size_t ps, uint64_t seed, unsigned long ops)
{
    g_ps = ps;
    struct model *m = calloc(1, sizeof *m);
    if (!m)
        fail("out of memory");
    m->ps = ps;
    m->mm = kmm_test_create(ps, MEM);
    m->memfd_ok = kmm_secret_backing_available(m->mm, KMM_SECRET_MEMFD);
    kmm_drain(m->mm);
    struct kmm_page_stats ps0, ps1;
    kmm_page_stats(m->mm, &ps0);
    uint64_t rng = seed ^ ps;
    for (g_op = 0; g_op < ops; g_op++) {
        unsigned r = (unsigned)kmm_test_below(&rng, 10);
        if (r < 5)
            do_alloc(m, &rng);
        else if (r < 9)
            do_free(m, &rng);
        else
            do_rewrite(m, &rng);
        check_stats(m);
        if (g_op % 16 == 0 && kmm_check(m->mm) != 0)
            fail("kmm_check failed");
        if (g_op % 64 == 0)
            for (size_t i = 0; i < m->n; i += 3)
                check_pattern(&m->live[i]);
    }
    if (kmm_check(m->mm) != 0)
        fail("kmm_check at the end failed");
    while (m->n)
        do_free(m, &rng);
    check_stats(m);
    kmm_unmapped_shrink(m->mm, 0);
    kmm_drain(m->mm);
    kmm_page_stats(m->mm, &ps1);
    if (ps1.free_pages != ps0.free_pages)
        fail("%zu free pages after freeing every secret, %zu before", ps1.free_pages, ps0.free_pages);
    if (kmm_check(m->mm) != 0)
        fail("kmm_check after freeing everything failed");
    printf("  page size %zu: %llu allocations (%s), %llu frees\n", ps, (unsigned long long)m->allocs,
           m->memfd_ok ? "both backings" : "memfd_secret unavailable: unmapped cache only",
           (unsigned long long)m->frees);
    kmm_destroy(m->mm);
    free(m);
}

int main(void)
{
    kmm_test_on_fail(fail_head, NULL, false);
    g_seed = kmm_test_seed("secret_model");
    const char *env = getenv("KMM_MODEL_OPS");
    unsigned long ops = env ? strtoul(env, NULL, 10) : 3000;
    run(4096, g_seed, ops);
    run(16384, g_seed, ops);
    printf("secret_model: OK\n");
    return 0;
}
