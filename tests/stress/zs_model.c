/* zs_model.c - zsmalloc against a reference model.
 *
 * Long seeded sequences of random operations on one pool - kmm_zs_malloc of
 * sizes distributed like compressed pages (1 .. page size: tiny, mostly a
 * quarter to three quarters of a page, nearly incompressible, a whole page,
 * and exact class sizes), sometimes with KMM_ZERO; kmm_zs_free;
 * kmm_zs_write and kmm_zs_read of random ranges; kmm_zs_map in each mode
 * (KMM_ZS_RO: every known byte checked; KMM_ZS_WO: the object overwritten;
 * KMM_ZS_RW: checked, then a range changed in place), also several objects
 * mapped at once (up to KMM_ZS_MAP_NEST) and unmapped in random order;
 * kmm_zs_compact; frees of a random half of the objects (so compaction has
 * work) - mirrored in a model that keeps every live object's contents in a
 * plain malloc'd copy. Checked:
 *  - a new handle is non-zero and not live already, its usable size is at
 *    least the size asked and is the size of its class (the first class
 *    from kmm_zs_class_stats at least as large); KMM_ZERO objects read as
 *    zeros; a refused call (size 0, above a page) gives 0 with EINVAL;
 *  - every read and every RO / RW mapping shows the model's bytes; after
 *    every kmm_zs_compact every live object is read back whole, byte for
 *    byte, and the pool's page count fell by what it returned;
 *  - every 250 operations: kmm_check(mm) == 0, and kmm_zs_stats (objects,
 *    obj_bytes) and the sum of kmm_zs_class_stats agree with the model;
 *  - at the end, everything freed: no object, page or zspage is left, and
 *    kmm_zs_destroy gives back every page the pool took.
 * Configurations: pages of 4, 16 and 64 KiB, the default layout and
 * kmm_zs_config ones, and one where all but 300 pages are held back, so
 * allocations run out (a 0 then carries ENOMEM and leaves the pool and every
 * object intact).
 *
 *   test_zsmalloc_model [SEED]   (or KMM_SEED=...; KMM_MODEL_OPS = total
 *                                 operations, default 300000, 60000 under a
 *                                 sanitizer). A failure prints the seed, the
 *                                 configuration and the operation number.
 */
#include "kmm_test.h"

#include <kmm.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LIVE    3000u
#define CHECK_EVERY 250u

struct config {
    const char *name;
    size_t ps;
    uint64_t mem;
    bool has_cfg;
    struct kmm_zs_config cfg;
    size_t free_pages;           /* pages left to the pool (the rest held back); 0 = all */
    unsigned share;              /* percent of the operations */
};

struct obj {
    uint64_t h;
    size_t size, usable;
    size_t known;                /* bytes [0, known) hold what the model says */
    unsigned char *bytes;        /* usable bytes */
};

static uint64_t g_seed;
static const struct config *g_cfg;
static unsigned long g_op;
static const char *g_what = "";

static void fail_head(FILE *f)
{
    fprintf(f, "zs_model FAILED (seed %llu, %s, op %lu, %s): ", (unsigned long long)g_seed, g_cfg ? g_cfg->name : "-",
            g_op, g_what);
}

static void fail_tail(FILE *f)
{
    fprintf(f, "repeat with: KMM_SEED=%llu test_zsmalloc_model\n", (unsigned long long)g_seed);
}

#define fail(...) kmm_test_fail(__VA_ARGS__)

struct model {
    struct kmm *mm;
    struct kmm_zspool *pool;
    size_t ps;
    struct kmm_zs_class_stats *cl;
    size_t ncl;
    struct obj live[MAX_LIVE];
    size_t nlive;
    unsigned char *scratch;      /* a page */
    uint64_t rng;
    bool scarce;                 /* memory held back so that allocations run out */
    void **held;                 /* the pages held back */
    size_t nheld;
    unsigned long enomem, compactions, pages_compacted, maps;
};

static size_t class_size_for(const struct model *m, size_t size)
{
    for (size_t i = 0; i < m->ncl; i++)
        if (m->cl[i].size >= size)
            return m->cl[i].size;
    fail("no class takes %zu bytes", size);
}

static unsigned char rand_byte(struct model *m)
{
    return (unsigned char)kmm_test_rand(&m->rng);
}

/* Random bytes into dst (a fresh pattern for every write). */
static void random_fill(struct model *m, unsigned char *dst, size_t len)
{
    uint64_t key = kmm_test_rand(&m->rng);
    kmm_test_span_io(dst, key, 0, len, true);
}

static void compare(const struct obj *o, const unsigned char *got, size_t from, size_t to, const char *how)
{
    if (memcmp(got, o->bytes + from, to - from) == 0)
        return;
    for (size_t i = from; i < to; i++)
        if (got[i - from] != o->bytes[i])
            fail("%s of handle %#llx (size %zu, usable %zu): byte %zu is %#x, the model says %#x", how,
                 (unsigned long long)o->h, o->size, o->usable, i, got[i - from], o->bytes[i]);
}

/* The object read back whole through kmm_zs_read. */
static void verify_whole(struct model *m, const struct obj *o, const char *when)
{
    if (kmm_zs_read(m->pool, o->h, 0, m->scratch, o->known) != 0)
        fail("%s: kmm_zs_read of handle %#llx failed", when, (unsigned long long)o->h);
    compare(o, m->scratch, 0, o->known, when);
}

static void verify_all(struct model *m, const char *when)
{
    for (size_t i = 0; i < m->nlive; i++)
        verify_whole(m, &m->live[i], when);
}

static void check_stats(struct model *m)
{
    struct kmm_zs_stats st;
    kmm_zs_stats(m->pool, &st);
    size_t bytes = 0;
    for (size_t i = 0; i < m->nlive; i++)
        bytes += m->live[i].usable;
    if (st.objects != m->nlive || st.obj_bytes != bytes)
        fail("kmm_zs_stats: %zu objects of %zu bytes, the model has %zu of %zu", st.objects, st.obj_bytes, m->nlive,
             bytes);
    size_t n = kmm_zs_class_stats(m->pool, m->cl, m->ncl);
    if (n != m->ncl)
        fail("the number of classes changed: %zu, was %zu", n, m->ncl);
    size_t objects = 0, pages = 0, zspages = 0;
    for (size_t i = 0; i < n; i++) {
        objects += m->cl[i].objects;
        pages += m->cl[i].pages;
        zspages += m->cl[i].zspages;
    }
    if (objects != st.objects || pages != st.pages_used || zspages != st.zspages)
        fail("classes sum to %zu objects, %zu pages, %zu zspages; the pool says %zu, %zu, %zu", objects, pages, zspages,
             st.objects, st.pages_used, st.zspages);
}

static void full_check(struct model *m, const char *when)
{
    g_what = when;
    if (kmm_check(m->mm) != 0)
        fail("kmm_check failed");
    check_stats(m);
}

/* ---- sizes -------------------------------------------------------------------------- */

static size_t random_size(struct model *m)
{
    size_t ps = m->ps;
    uint64_t r = kmm_test_below(&m->rng, 100);
    if (r < 10)
        return 1 + kmm_test_below(&m->rng, 64);
    if (r < 65)
        return ps / 4 + kmm_test_below(&m->rng, ps / 2);
    if (r < 77)
        return 1 + kmm_test_below(&m->rng, ps);
    if (r < 87)
        return ps - kmm_test_below(&m->rng, ps / 8);
    if (r < 92)
        return ps;
    /* a class's own size, or one byte above the previous class */
    size_t ci = kmm_test_below(&m->rng, m->ncl);
    return r & 1 || ci == 0 ? m->cl[ci].size : m->cl[ci - 1].size + 1;
}

/* ---- operations ---------------------------------------------------------------------- */

static void op_malloc(struct model *m)
{
    if (m->nlive == MAX_LIVE)
        return;
    g_what = "kmm_zs_malloc";
    size_t size = random_size(m);
    bool zero = kmm_test_below(&m->rng, 8) == 0;
    struct kmm_zs_stats before;
    kmm_zs_stats(m->pool, &before);
    errno = 0;
    uint64_t h = kmm_zs_malloc(m->pool, size, zero ? KMM_ZERO : 0);
    if (!h) {
        if (errno != ENOMEM || !m->scarce)
            fail("kmm_zs_malloc(%zu) failed, errno %d", size, errno);
        struct kmm_zs_stats after;
        kmm_zs_stats(m->pool, &after);
        if (after.objects != before.objects || after.obj_bytes != before.obj_bytes)
            fail("a failed kmm_zs_malloc changed the objects");
        m->enomem++;
        return;
    }
    for (size_t i = 0; i < m->nlive; i++)
        if (m->live[i].h == h)
            fail("kmm_zs_malloc(%zu) gave handle %#llx, which is live", size, (unsigned long long)h);
    struct obj *o = &m->live[m->nlive++];
    o->h = h;
    o->size = size;
    o->usable = kmm_zs_usable_size(m->pool, h);
    if (o->usable != class_size_for(m, size))
        fail("kmm_zs_usable_size of a %zu-byte object is %zu, its class's size %zu", size, o->usable,
             class_size_for(m, size));
    o->bytes = malloc(o->usable);
    if (!o->bytes)
        fail("out of memory");
    if (zero) {
        memset(o->bytes, 0, o->usable);
        o->known = o->usable;
        g_what = "KMM_ZERO";
        verify_whole(m, o, "a KMM_ZERO object");
        return;
    }
    /* fill what was asked: through a copy or a write-only mapping */
    random_fill(m, o->bytes, size);
    o->known = size;
    if (kmm_test_below(&m->rng, 2)) {
        if (kmm_zs_write(m->pool, h, 0, o->bytes, size) != 0)
            fail("kmm_zs_write of a new object failed");
    } else {
        unsigned char *p = kmm_zs_map(m->pool, h, KMM_ZS_WO);
        memcpy(p, o->bytes, size);
        kmm_zs_unmap(m->pool, h);
    }
}

static void drop(struct model *m, size_t i)
{
    free(m->live[i].bytes);
    m->live[i] = m->live[--m->nlive];
}

static void op_free(struct model *m)
{
    if (!m->nlive)
        return;
    size_t i = kmm_test_below(&m->rng, m->nlive);
    g_what = "kmm_zs_free";
    if (kmm_test_below(&m->rng, 4) == 0)
        verify_whole(m, &m->live[i], "before kmm_zs_free");
    kmm_zs_free(m->pool, m->live[i].h);
    drop(m, i);
}

/* A random range [off, off + len) of o with off <= known (the model's bytes
 * stay a prefix). */
static void random_range(struct model *m, const struct obj *o, size_t *off, size_t *len)
{
    *off = kmm_test_below(&m->rng, o->known + 1);
    if (*off == o->usable)
        *off = o->usable - 1;
    *len = 1 + kmm_test_below(&m->rng, o->usable - *off);
}

static void op_write(struct model *m)
{
    if (!m->nlive)
        return;
    struct obj *o = &m->live[kmm_test_below(&m->rng, m->nlive)];
    g_what = "kmm_zs_write";
    size_t off, len;
    random_range(m, o, &off, &len);
    random_fill(m, m->scratch, len);
    if (kmm_zs_write(m->pool, o->h, off, m->scratch, len) != 0)
        fail("kmm_zs_write(%#llx, %zu, %zu) of a %zu-byte object failed", (unsigned long long)o->h, off, len, o->usable);
    memcpy(o->bytes + off, m->scratch, len);
    if (off + len > o->known)
        o->known = off + len;
}

static void op_read(struct model *m)
{
    if (!m->nlive)
        return;
    struct obj *o = &m->live[kmm_test_below(&m->rng, m->nlive)];
    g_what = "kmm_zs_read";
    if (!o->known)
        return;
    size_t off = kmm_test_below(&m->rng, o->known);
    size_t len = 1 + kmm_test_below(&m->rng, o->known - off);
    if (kmm_zs_read(m->pool, o->h, off, m->scratch, len) != 0)
        fail("kmm_zs_read(%#llx, %zu, %zu) failed", (unsigned long long)o->h, off, len);
    compare(o, m->scratch, off, off + len, "kmm_zs_read");
}

/* What a mapping does in its mode; the caller maps and unmaps. */
static void use_mapping(struct model *m, struct obj *o, unsigned char *p, int mode)
{
    if (mode != KMM_ZS_WO)
        compare(o, p, 0, o->known, mode == KMM_ZS_RO ? "kmm_zs_map(RO)" : "kmm_zs_map(RW)");
    if (mode == KMM_ZS_WO) {
        /* every byte: a spanning object's buffer is not copied in */
        random_fill(m, o->bytes, o->usable);
        memcpy(p, o->bytes, o->usable);
        o->known = o->usable;
    } else if (mode == KMM_ZS_RW) {
        size_t off, len;
        random_range(m, o, &off, &len);
        for (size_t i = off; i < off + len; i++)
            o->bytes[i] = p[i] = rand_byte(m);
        if (off + len > o->known)
            o->known = off + len;
    }
}

static int random_mode(struct model *m)
{
    static const int modes[3] = { KMM_ZS_RO, KMM_ZS_WO, KMM_ZS_RW };
    return modes[kmm_test_below(&m->rng, 3)];
}

static void op_map(struct model *m)
{
    if (!m->nlive)
        return;
    /* one object, or several at once, unmapped in random order */
    size_t n = kmm_test_below(&m->rng, 3) ? 1 : 2 + kmm_test_below(&m->rng, KMM_ZS_MAP_NEST - 1);
    size_t idx[KMM_ZS_MAP_NEST];
    unsigned char *p[KMM_ZS_MAP_NEST];
    size_t got = 0;
    g_what = "kmm_zs_map";
    for (size_t k = 0; k < n && got < m->nlive; k++) {
        size_t i = kmm_test_below(&m->rng, m->nlive);
        bool dup = false;
        for (size_t j = 0; j < got; j++)
            dup |= idx[j] == i;
        if (dup)
            continue;
        idx[got] = i;
        int mode = random_mode(m);
        p[got] = kmm_zs_map(m->pool, m->live[i].h, mode);
        if (!p[got])
            fail("kmm_zs_map returned NULL");
        use_mapping(m, &m->live[i], p[got], mode);
        got++;
        m->maps++;
    }
    while (got) {
        size_t k = kmm_test_below(&m->rng, got);
        kmm_zs_unmap(m->pool, m->live[idx[k]].h);
        idx[k] = idx[got - 1];
        p[k] = p[got - 1];
        got--;
    }
}

static void op_compact(struct model *m)
{
    g_what = "kmm_zs_compact";
    struct kmm_zs_stats before, after;
    kmm_zs_stats(m->pool, &before);
    size_t freed = kmm_zs_compact(m->pool);
    kmm_zs_stats(m->pool, &after);
    if (after.pages_used != before.pages_used - freed || after.pages_compacted != before.pages_compacted + freed)
        fail("kmm_zs_compact freed %zu pages; pages_used %zu -> %zu, pages_compacted %zu -> %zu", freed,
             before.pages_used, after.pages_used, before.pages_compacted, after.pages_compacted);
    m->compactions++;
    m->pages_compacted += freed;
    verify_all(m, "after kmm_zs_compact");
}

static void op_free_half(struct model *m)
{
    g_what = "freeing half";
    for (size_t i = 0; i < m->nlive;) {
        if (kmm_test_below(&m->rng, 2)) {
            kmm_zs_free(m->pool, m->live[i].h);
            drop(m, i);
        } else {
            i++;
        }
    }
}

static void op_bad_size(struct model *m)
{
    g_what = "refused sizes";
    size_t size = kmm_test_below(&m->rng, 2) ? 0 : m->ps + 1 + kmm_test_below(&m->rng, m->ps);
    struct kmm_test_capture cap;   /* the refusal's one-line report */
    kmm_test_capture_begin(&cap);
    errno = 0;
    uint64_t h = kmm_zs_malloc(m->pool, size, 0);
    int err = errno;
    char *said = kmm_test_capture_end(&cap);
    if (h != 0 || err != EINVAL)
        fail("kmm_zs_malloc(%zu) not refused with EINVAL (errno %d)", size, err);
    if (!strstr(said, "kmm_zs_malloc"))
        fail("kmm_zs_malloc(%zu) refused without a report naming it: \"%s\"", size, said);
    free(said);
}

/* ---- a configuration ------------------------------------------------------------------ */

static void run_config(const struct config *c, unsigned long ops, uint64_t seed)
{
    g_cfg = c;
    struct model *m = calloc(1, sizeof *m);
    if (!m)
        fail("out of memory");
    m->rng = seed | 1;
    m->ps = c->ps;
    m->mm = kmm_test_create(c->ps, c->mem);
    kmm_drain(m->mm);
    struct kmm_page_stats ps0, ps1;
    kmm_page_stats(m->mm, &ps0);
    if (c->free_pages) {
        /* the pool gets only c->free_pages pages: its objects (a few MiB) fill them */
        m->scarce = true;
        m->held = calloc(ps0.free_pages, sizeof *m->held);
        if (!m->held)
            fail("out of memory");
        while (ps0.free_pages - m->nheld > c->free_pages && (m->held[m->nheld] = kmm_alloc_pages(m->mm, 0, 0)))
            m->nheld++;
    }
    m->pool = c->has_cfg ? kmm_zs_create_config(m->mm, "model", &c->cfg) : kmm_zs_create(m->mm, "model");
    if (!m->pool)
        fail("kmm_zs_create failed");
    m->ncl = kmm_zs_class_stats(m->pool, NULL, 0);
    m->cl = calloc(m->ncl, sizeof *m->cl);
    m->scratch = malloc(c->ps);
    if (!m->cl || !m->scratch)
        fail("out of memory");
    kmm_zs_class_stats(m->pool, m->cl, m->ncl);

    for (g_op = 0; g_op < ops; g_op++) {
        uint64_t r = kmm_test_below(&m->rng, 1000);
        /* mallocs outrun frees: the pool grows to about a thousand
         * objects, and a rare free of half of them leaves sparse zspages */
        if (r < 400)
            op_malloc(m);
        else if (r < 550)
            op_free(m);
        else if (r < 680)
            op_write(m);
        else if (r < 810)
            op_read(m);
        else if (r < 985)
            op_map(m);
        else if (r < 995)
            op_compact(m);
        else if (r < 996)
            op_free_half(m);
        else
            op_bad_size(m);
        if (g_op % CHECK_EVERY == CHECK_EVERY - 1)
            full_check(m, "periodic check");
    }
    full_check(m, "the end");
    op_free_half(m);
    op_compact(m);
    full_check(m, "after the last compaction");
    g_what = "freeing everything";
    while (m->nlive) {
        verify_whole(m, &m->live[m->nlive - 1], "before the last frees");
        kmm_zs_free(m->pool, m->live[m->nlive - 1].h);
        drop(m, m->nlive - 1);
    }
    struct kmm_zs_stats st;
    kmm_zs_stats(m->pool, &st);
    if (st.objects || st.obj_bytes || st.pages_used || st.zspages)
        fail("empty pool holds %zu objects, %zu bytes, %zu pages, %zu zspages", st.objects, st.obj_bytes,
             st.pages_used, st.zspages);
    full_check(m, "empty");
    printf("  %-34s %7lu ops, %5zu classes, %4lu compactions freed %6lu pages, %lu ENOMEM, at most %zu pages\n",
           c->name, ops, m->ncl, m->compactions, m->pages_compacted, m->enomem, st.pages_max);
    kmm_zs_destroy(m->pool);
    for (size_t i = 0; i < m->nheld; i++)
        kmm_free_pages(m->mm, m->held[i]);
    free(m->held);
    kmm_drain(m->mm);
    kmm_page_stats(m->mm, &ps1);
    if (ps1.free_pages != ps0.free_pages)
        fail("kmm_zs_destroy: %zu free pages, %zu before the pool", ps1.free_pages, ps0.free_pages);
    if (kmm_check(m->mm) != 0)
        fail("kmm_check after kmm_zs_destroy");
    kmm_destroy(m->mm);
    free(m->cl);
    free(m->scratch);
    free(m);
    g_cfg = NULL;
}

int main(int argc, char **argv)
{
    kmm_test_on_fail(fail_head, fail_tail, false);
    static const struct config configs[] = {
        { "4 KiB pages, default", 4096, 1ull << 30, false, { 0, 0 }, 0, 30 },
        { "4 KiB pages, step 8, 4 pages", 4096, 1ull << 30, true, { 8, 4 }, 0, 10 },
        { "4 KiB pages, step 64, 64 pages", 4096, 1ull << 30, true, { 64, 64 }, 0, 10 },
        { "4 KiB pages, 1 page zspages", 4096, 1ull << 30, true, { 16, 1 }, 0, 10 },
        { "16 KiB pages, default", 16384, 1ull << 30, false, { 0, 0 }, 0, 15 },
        { "64 KiB pages, step 64, 16 pages", 65536, 1ull << 30, true, { 64, 16 }, 0, 10 },
        { "4 KiB pages, 300 pages (runs out)", 4096, 64ull << 20, false, { 0, 0 }, 300, 15 },
    };
    if (argc > 1)
        setenv("KMM_SEED", argv[1], 1);
    g_seed = kmm_test_seed("zs_model");
    const char *env = getenv("KMM_MODEL_OPS");
    unsigned long total = env ? strtoul(env, NULL, 0) : KMM_TEST_SANITIZER ? 60000 : 300000;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t s = g_seed;
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++)
        run_config(&configs[i], total * configs[i].share / 100, kmm_test_rand(&s));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("zs_model: OK, %lu operations in %zu configurations, %.1f s\n", total, sizeof configs / sizeof configs[0],
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
