/* bench/zsmalloc.c - kmm_zs (compressed objects) and kmm_zstore (a
 * zram-like page store) on corpora of real pages made on the machine itself
 * (bench/corpus.c), side by side with what else could hold the same objects.
 * See bench/README.md, "bench/zsmalloc".
 *
 * Every corpus page is compressed with LZ4 (LZ4_compress_default) and with
 * zstd (level 3); pages filled with one repeated word are dropped and
 * counted (zram stores them with no allocation), and an object above 15/16
 * of a page is stored whole, as a page-sized object, in every store (as zram
 * does). Then:
 *   1. density = sum of object sizes / bytes held, for a kmm_zs pool
 *      (pages + metadata), a zbud-like pool (Linux's zbud layout, at most
 *      two objects per page) and kmm_malloc of each object;
 *   2. the same after freeing a random half of the objects (fixed seed) and
 *      kmm_zs_compact, with the compaction's time per page freed;
 *   3. with --sweep, the density of every class layout of a sweep of
 *      kmm_zs_config (class step x pages per zspage);
 *   4. kmm_zs_map + kmm_zs_unmap and kmm_zs_read of objects inside one page
 *      and of objects spanning two, beside a 4 KiB memcpy;
 *   5. kmm_zstore_write / _read throughput of the corpus pages against LZ4
 *      alone, on one thread and on two.
 * Densities are exact counts (one run); timings are the median of --reps.
 */
#include "corpus.h"
#include "harness.h"

#include <kmm/core.h>
#include <kmm/page.h>
#include <kmm/slab.h>
#include <kmm/zsmalloc.h>
#include <kmm/zstore.h>

#include <lz4.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

const char harness_prog[] = "bench/zsmalloc";

#define PAGE          CORPUS_PAGE
#define HUGE_SIZE     (PAGE * 15 / 16)   /* objects above this are stored whole, as zram does */
#define ZSTD_LEVEL    3
#define FREE_SEED     0x7a736d616c6c6f63ull   /* "zsmalloc": the half freed is the same every run */
#define NR_ALGOS      2
#define MAX_REPS      64

static struct {
    bool json, sweep, verbose, quick;
    int reps;
    size_t max_bytes;
    bool want[16];           /* corpora asked for (indexes of corpus_names); none = all */
    bool any_wanted;
} opt = {
    .reps = 5,
    .max_bytes = (size_t)128 << 20,
};

static const char *const algo_names[NR_ALGOS] = { "lz4", "zstd" };

/* ---- compressed objects ------------------------------------------------------------ */

/* One corpus compressed by one algorithm: the objects every store is fed. */
struct objs {
    unsigned char *data;     /* objects back to back */
    size_t *off;
    uint32_t *len;           /* compressed size, or PAGE for a huge object */
    size_t n;
    size_t same;             /* pages dropped: one repeated word (no object) */
    size_t huge;             /* objects stored whole */
    size_t bytes;            /* sum of len */
};

/* zram's page_same_filled: every machine word of the page equal. */
static bool same_filled(const unsigned char *page)
{
    const uint64_t *w = (const uint64_t *)page;
    for (size_t i = 1; i < PAGE / 8; i++)
        if (w[i] != w[0])
            return false;
    return true;
}

static void compress_corpus(const struct corpus *c, int algo, struct objs *o)
{
    memset(o, 0, sizeof *o);
    o->data = malloc(c->npages * PAGE);
    o->off = malloc(c->npages * sizeof *o->off);
    o->len = malloc(c->npages * sizeof *o->len);
    if (!o->data || !o->off || !o->len)
        die("out of memory for compressed objects");
    ZSTD_CCtx *cctx = algo == 1 ? ZSTD_createCCtx() : NULL;
    static unsigned char dst[2 * PAGE];
    size_t at = 0;
    for (size_t i = 0; i < c->npages; i++) {
        const unsigned char *page = c->pages + i * PAGE;
        if (same_filled(page)) {
            o->same++;
            continue;
        }
        size_t clen;
        if (algo == 0) {
            int r = LZ4_compress_default((const char *)page, (char *)dst, (int)PAGE, (int)sizeof dst);
            if (r <= 0)
                die("LZ4_compress_default failed");
            clen = (size_t)r;
        } else {
            clen = ZSTD_compressCCtx(cctx, dst, sizeof dst, page, PAGE, ZSTD_LEVEL);
            if (ZSTD_isError(clen))
                die("ZSTD_compressCCtx failed");
        }
        const unsigned char *src = dst;
        if (clen > HUGE_SIZE) {
            clen = PAGE;
            src = page;
            o->huge++;
        }
        memcpy(o->data + at, src, clen);
        o->off[o->n] = at;
        o->len[o->n] = (uint32_t)clen;
        o->n++;
        at += clen;
        o->bytes += clen;
    }
    ZSTD_freeCCtx(cctx);
}

static void objs_free(struct objs *o)
{
    free(o->data);
    free(o->off);
    free(o->len);
    memset(o, 0, sizeof *o);
}

/* The objects freed in section 2: the first half of a permutation drawn with
 * a fixed seed. */
static size_t *half_order(size_t n)
{
    size_t *p = malloc((n ? n : 1) * sizeof *p);
    if (!p)
        die("out of memory");
    for (size_t i = 0; i < n; i++)
        p[i] = i;
    uint64_t x = FREE_SEED;
    for (size_t i = n; i > 1; i--) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        size_t j = (size_t)((x * 0x2545F4914F6CDD1Dull) % i);
        size_t t = p[i - 1];
        p[i - 1] = p[j];
        p[j] = t;
    }
    return p;
}

/* A fresh memory system for one store: the defaults (hosted, 4 KiB pages,
 * three areas) but 4 x the corpus size, at least 1 GiB, rather than 64 GiB,
 * because kmm_check after each run reads metadata of every page. */
static struct kmm *new_mm(void)
{
    uint64_t size = (uint64_t)opt.max_bytes * 4;
    if (size < ((uint64_t)1 << 30))
        size = (uint64_t)1 << 30;
    struct kmm_config cfg = { .mem_size = size };
    struct kmm *mm = kmm_create(&cfg);
    if (!mm)
        die_errno("kmm_create");
    return mm;
}

/* ---- store 1: kmm_zs --------------------------------------------------------------- */

struct zs_result {
    double density;          /* after the fill */
    size_t pages, meta;
    size_t usable;           /* the objects' bytes by class size (kmm_zs_stats obj_bytes) */
    double density_freed;    /* a random half freed, before compaction */
    double density_compacted;
    size_t pages_freed;      /* by kmm_zs_compact */
    double compact_ns;
    bool check_ok;
};

static double zs_held(struct kmm_zspool *pool, size_t *pages, size_t *meta, size_t *usable)
{
    struct kmm_zs_stats st;
    kmm_zs_stats(pool, &st);
    if (usable)
        *usable = st.obj_bytes;
    if (pages)
        *pages = st.pages_used + st.pages_stashed;
    if (meta)
        *meta = st.meta_bytes;
    return (double)(st.pages_used + st.pages_stashed) * (double)st.page_size + (double)st.meta_bytes;
}

/* Fills a fresh pool of cfg (NULL = default) with every object of o, then
 * (when half) frees half of them and compacts. */
static struct zs_result zs_run(const struct objs *o, const struct kmm_zs_config *cfg, const size_t *half)
{
    struct zs_result r = { 0 };
    struct kmm *mm = new_mm();
    struct kmm_zspool *pool = kmm_zs_create_config(mm, "bench", cfg);
    if (!pool)
        die_errno("kmm_zs_create_config");
    uint64_t *h = malloc((o->n ? o->n : 1) * sizeof *h);
    if (!h)
        die("out of memory");
    for (size_t i = 0; i < o->n; i++) {
        h[i] = kmm_zs_malloc(pool, o->len[i], 0);
        if (!h[i])
            die_errno("kmm_zs_malloc");
        if (kmm_zs_write(pool, h[i], 0, o->data + o->off[i], o->len[i]) != 0)
            die("kmm_zs_write failed");
    }
    r.density = (double)o->bytes / zs_held(pool, &r.pages, &r.meta, &r.usable);
    if (half) {
        size_t left = o->bytes;
        for (size_t k = 0; k < o->n / 2; k++) {
            kmm_zs_free(pool, h[half[k]]);
            left -= o->len[half[k]];
            h[half[k]] = 0;
        }
        r.density_freed = (double)left / zs_held(pool, NULL, NULL, NULL);
        double t0 = now_ns();
        r.pages_freed = kmm_zs_compact(pool);
        r.compact_ns = now_ns() - t0;
        r.density_compacted = (double)left / zs_held(pool, NULL, NULL, NULL);
        /* the objects left must be intact after the moves */
        static unsigned char buf[PAGE];
        for (size_t i = 0; i < o->n; i++) {
            if (!h[i])
                continue;
            if (kmm_zs_read(pool, h[i], 0, buf, o->len[i]) != 0 || memcmp(buf, o->data + o->off[i], o->len[i]))
                die("an object's contents changed across kmm_zs_compact");
        }
    }
    r.check_ok = kmm_check(mm) == 0;
    kmm_zs_destroy(pool);
    kmm_destroy(mm);
    free(h);
    return r;
}

/* ---- store 3: a zbud-like pool --------------------------------------------------------
 * Linux's mm/zbud.c layout, simulated (only the accounting, no data is
 * copied): a page holds at most two objects, the first packed from the
 * page's start after a one-chunk header, the last from its end; sizes are
 * rounded up to 64-byte chunks; a page with one free side sits on the
 * unbuddied list of its free chunks, and an allocation takes the first page
 * of the first list with enough free chunks (first fit by free space), or a
 * new page. Huge objects take a page of their own. Bytes held: pages x page
 * size (the header is inside the page). */

#define ZB_CHUNK   64
#define ZB_NCHUNKS ((int)(PAGE / ZB_CHUNK) - 1)   /* 63: the first chunk is the header */

struct zbud {
    struct zb_page { uint8_t first, last; int prev, next, list; } *pg;
    int *free_pages;          /* a stack of page slots to reuse */
    size_t nfree, npg, cap;
    int head[ZB_NCHUNKS + 1]; /* unbuddied lists by free chunks; -1 = empty */
    size_t pages, huge_pages;
};

static void zb_unlink(struct zbud *z, int p)
{
    struct zb_page *g = &z->pg[p];
    if (g->list < 0)
        return;
    if (g->prev >= 0)
        z->pg[g->prev].next = g->next;
    else
        z->head[g->list] = g->next;
    if (g->next >= 0)
        z->pg[g->next].prev = g->prev;
    g->list = -1;
}

/* Onto the head of the unbuddied list of its free chunks, as list_add does,
 * if one side is free. */
static void zb_relist(struct zbud *z, int p)
{
    struct zb_page *g = &z->pg[p];
    if (g->first && g->last)
        return;
    int f = ZB_NCHUNKS - g->first - g->last;
    g->list = f;
    g->prev = -1;
    g->next = z->head[f];
    if (g->next >= 0)
        z->pg[g->next].prev = p;
    z->head[f] = p;
}

/* A handle: page << 1 | side, or -1 for a huge object (a page of its own). */
static long zb_alloc(struct zbud *z, size_t size)
{
    if (size > HUGE_SIZE) {
        z->huge_pages++;
        return -1;
    }
    int chunks = (int)((size + ZB_CHUNK - 1) / ZB_CHUNK);
    int p = -1;
    for (int f = chunks; f <= ZB_NCHUNKS && p < 0; f++)
        if (z->head[f] >= 0)
            p = z->head[f];
    if (p >= 0) {
        zb_unlink(z, p);
    } else {
        if (z->nfree) {
            p = z->free_pages[--z->nfree];
        } else {
            if (z->npg == z->cap) {
                z->cap = z->cap ? z->cap * 2 : 4096;
                z->pg = realloc(z->pg, z->cap * sizeof *z->pg);
                z->free_pages = realloc(z->free_pages, z->cap * sizeof *z->free_pages);
                if (!z->pg || !z->free_pages)
                    die("out of memory");
            }
            p = (int)z->npg++;
        }
        z->pg[p] = (struct zb_page){ 0, 0, -1, -1, -1 };
        z->pages++;
    }
    int side = z->pg[p].first == 0 ? 0 : 1;
    if (side == 0)
        z->pg[p].first = (uint8_t)chunks;
    else
        z->pg[p].last = (uint8_t)chunks;
    zb_relist(z, p);
    return (long)p << 1 | side;
}

static void zb_free(struct zbud *z, long handle)
{
    if (handle < 0) {
        z->huge_pages--;
        return;
    }
    int p = (int)(handle >> 1);
    zb_unlink(z, p);
    if (handle & 1)
        z->pg[p].last = 0;
    else
        z->pg[p].first = 0;
    if (!z->pg[p].first && !z->pg[p].last) {
        z->free_pages[z->nfree++] = p;
        z->pages--;
    } else {
        zb_relist(z, p);
    }
}

struct base_result {
    double density, density_freed;   /* after the fill; after freeing half (kmm_malloc: and kmm_drain) */
    size_t pages;                    /* pages held after the fill */
};

static struct base_result zbud_run(const struct objs *o, const size_t *half)
{
    struct zbud z = { 0 };
    for (int f = 0; f <= ZB_NCHUNKS; f++)
        z.head[f] = -1;
    long *h = malloc((o->n ? o->n : 1) * sizeof *h);
    if (!h)
        die("out of memory");
    for (size_t i = 0; i < o->n; i++)
        h[i] = zb_alloc(&z, o->len[i]);
    struct base_result r = { 0 };
    r.pages = z.pages + z.huge_pages;
    r.density = (double)o->bytes / ((double)r.pages * PAGE);
    size_t left = o->bytes;
    for (size_t k = 0; k < o->n / 2; k++) {
        zb_free(&z, h[half[k]]);
        left -= o->len[half[k]];
    }
    r.density_freed = (double)left / ((double)(z.pages + z.huge_pages) * PAGE);
    free(h);
    free(z.pg);
    free(z.free_pages);
    return r;
}

/* ---- store 4: kmm_malloc of each object --------------------------------------------- */

/* Bytes kmm_malloc's layers hold: pages taken from the page allocator (per-
 * thread page caches count as free) and the held bytes of kmm's metadata
 * objects. Slab descriptors and magazines are not in either count. */
static double malloc_held(struct kmm *mm)
{
    struct kmm_page_stats ps;
    struct kmm_meta_stats ms;
    kmm_page_stats(mm, &ps);
    kmm_meta_stats(mm, &ms);
    return (double)ps.allocated_pages * (double)ps.page_size + (double)ms.held_bytes;
}

static struct base_result malloc_run(const struct objs *o, const size_t *half)
{
    struct kmm *mm = new_mm();
    double before = malloc_held(mm);
    void **p = malloc((o->n ? o->n : 1) * sizeof *p);
    if (!p)
        die("out of memory");
    for (size_t i = 0; i < o->n; i++) {
        p[i] = kmm_malloc(mm, o->len[i], 0);
        if (!p[i])
            die_errno("kmm_malloc");
        memcpy(p[i], o->data + o->off[i], o->len[i]);
    }
    struct base_result r = { 0 };
    double held = malloc_held(mm) - before;
    r.pages = (size_t)(held / PAGE);
    r.density = (double)o->bytes / held;
    size_t left = o->bytes;
    for (size_t k = 0; k < o->n / 2; k++) {
        kmm_free(mm, p[half[k]]);
        left -= o->len[half[k]];
    }
    kmm_drain(mm);
    r.density_freed = (double)left / (malloc_held(mm) - before);
    for (size_t k = o->n / 2; k < o->n; k++)
        kmm_free(mm, p[half[k]]);
    kmm_destroy(mm);
    free(p);
    return r;
}

/* ---- sections 1-3: density ------------------------------------------------------------ */

#define SWEEP_STEPS 3
#define SWEEP_PAGES 4
static const unsigned sweep_step[SWEEP_STEPS] = { 8, 16, 32 };
static const unsigned sweep_pages[SWEEP_PAGES] = { 4, 8, 16, 32 };

struct corpus_result {
    struct corpus c;
    bool made;
    struct {
        size_t objects, same, huge, bytes;
        struct zs_result zs;                 /* default config; rep 0's densities */
        struct fig compact_ms, compact_us_per_page;
        struct base_result zbud, kmalloc;
        struct zs_result sweep[SWEEP_STEPS][SWEEP_PAGES];
    } a[NR_ALGOS];
    /* section 5 (LZ4) */
    struct fig w1, r1, w2, r2;               /* store MB/s: write / read, 1 and 2 threads */
    struct fig lw1, lr1, lw2, lr2;           /* LZ4 alone */
    struct fig w_ratio, r_ratio;             /* store / LZ4 alone, one thread */
    struct fig w2_ratio, r2_ratio;           /* the same on two threads */
    struct fig rw1, rw2, rw_ratio, rw2_ratio;/* store rewrite (every index written again): MB/s, / LZ4 alone */
    struct fig w_scale, r_scale;             /* store: 2 threads / 1 */
    struct fig lw_scale, lr_scale;           /* LZ4 alone: 2 threads / 1 */
    struct kmm_zstore_stats zst;             /* the store after the one-thread write of the last rep */
};

static bool all_checks_ok = true;

static void measure_density(struct corpus_result *cr)
{
    for (int a = 0; a < NR_ALGOS; a++) {
        struct objs o;
        compress_corpus(&cr->c, a, &o);
        cr->a[a].objects = o.n;
        cr->a[a].same = o.same;
        cr->a[a].huge = o.huge;
        cr->a[a].bytes = o.bytes;
        size_t *half = half_order(o.n);
        double ms[MAX_REPS], us[MAX_REPS];
        for (int rep = 0; rep < opt.reps; rep++) {
            struct zs_result z = zs_run(&o, NULL, half);
            if (rep == 0)
                cr->a[a].zs = z;
            all_checks_ok &= z.check_ok;
            ms[rep] = z.compact_ns / 1e6;
            us[rep] = z.pages_freed ? z.compact_ns / 1e3 / (double)z.pages_freed : 0;
        }
        cr->a[a].compact_ms = summarize(ms, opt.reps);
        cr->a[a].compact_us_per_page = summarize(us, opt.reps);
        cr->a[a].zbud = zbud_run(&o, half);
        cr->a[a].kmalloc = malloc_run(&o, half);
        if (opt.sweep) {
            for (int s = 0; s < SWEEP_STEPS; s++)
                for (int p = 0; p < SWEEP_PAGES; p++) {
                    struct kmm_zs_config cfg = { .class_step = sweep_step[s], .max_pages = sweep_pages[p] };
                    cr->a[a].sweep[s][p] = zs_run(&o, &cfg, half);
                    all_checks_ok &= cr->a[a].sweep[s][p].check_ok;
                }
        }
        free(half);
        objs_free(&o);
    }
}

/* ---- section 4: map latency ------------------------------------------------------------ */

#define LAT_SIZES 3
static const size_t lat_size[LAT_SIZES] = { 700, 1500, 3000 };
#define LAT_OBJECTS 8192
#define LAT_PICK    2048   /* objects of each kind timed */

struct lat_result {
    size_t size, class_size, objs_per_zspage, pages_per_zspage, inside, spanning;
    struct fig map_in, map_span, read_in, read_span;   /* ns per operation */
    bool layout_ok;          /* in-page neighbours were mapped class_size apart */
};
static struct lat_result lat[LAT_SIZES];
static struct fig memcpy_ns;
static volatile uintptr_t sink;

static double time_map(struct kmm_zspool *pool, const uint64_t *h, size_t n, size_t len)
{
    long passes = 1;
    for (;;) {
        double t0 = now_ns();
        uintptr_t acc = 0;
        for (long p = 0; p < passes; p++)
            for (size_t i = 0; i < n; i++) {
                const unsigned char *q = kmm_zs_map(pool, h[i], KMM_ZS_RO);
                acc += q[0] + q[len - 1];
                kmm_zs_unmap(pool, h[i]);
            }
        double t = now_ns() - t0;
        sink = acc;
        if (t > 20e6 || passes > (1L << 20))
            return t / (double)(passes * (long)n);
        passes *= 2;
    }
}

static double time_read(struct kmm_zspool *pool, const uint64_t *h, size_t n, size_t len)
{
    static unsigned char buf[PAGE];
    long passes = 1;
    for (;;) {
        double t0 = now_ns();
        for (long p = 0; p < passes; p++)
            for (size_t i = 0; i < n; i++) {
                kmm_zs_read(pool, h[i], 0, buf, len);
                __asm__ volatile("" : : "r"(buf) : "memory");
            }
        double t = now_ns() - t0;
        sink = buf[0];
        if (t > 20e6 || passes > (1L << 20))
            return t / (double)(passes * (long)n);
        passes *= 2;
    }
}

static void measure_latency(void)
{
    for (int s = 0; s < LAT_SIZES; s++) {
        struct lat_result *L = &lat[s];
        struct kmm *mm = new_mm();
        struct kmm_zspool *pool = kmm_zs_create(mm, "bench-latency");
        if (!pool)
            die_errno("kmm_zs_create");
        static uint64_t h[LAT_OBJECTS], in[LAT_PICK], span[LAT_PICK];
        for (size_t i = 0; i < LAT_OBJECTS; i++) {
            h[i] = kmm_zs_malloc(pool, lat_size[s], 0);
            if (!h[i])
                die_errno("kmm_zs_malloc");
            static unsigned char fill[PAGE];
            memset(fill, (int)i, sizeof fill);
            kmm_zs_write(pool, h[i], 0, fill, lat_size[s]);
        }
        L->size = lat_size[s];
        L->class_size = kmm_zs_usable_size(pool, h[0]);
        size_t ncls = kmm_zs_class_stats(pool, NULL, 0);
        struct kmm_zs_class_stats *cs = calloc(ncls, sizeof *cs);
        kmm_zs_class_stats(pool, cs, ncls);
        for (size_t k = 0; k < ncls; k++)
            if (cs[k].size == L->class_size) {
                L->objs_per_zspage = cs[k].objs_per_zspage;
                L->pages_per_zspage = cs[k].pages_per_zspage;
            }
        free(cs);
        if (!L->objs_per_zspage)
            die("no class of the latency objects' size in kmm_zs_class_stats");
        /* object i of a zspage starts at i * class_size in it, in a fresh
         * pool filled in order */
        size_t nin = 0, nspan = 0, good = 0, pairs = 0;
        for (size_t i = 0; i < LAT_OBJECTS; i++) {
            size_t start = (i % L->objs_per_zspage) * L->class_size;
            bool spans = start / PAGE != (start + L->class_size - 1) / PAGE;
            if (spans && nspan < LAT_PICK)
                span[nspan++] = h[i];
            if (!spans && nin < LAT_PICK)
                in[nin++] = h[i];
            /* check the layout: two in-page neighbours of one page lie class_size apart */
            size_t next = start + L->class_size;
            if (!spans && (i + 1) % L->objs_per_zspage && i + 1 < LAT_OBJECTS && next / PAGE == start / PAGE &&
                (next + L->class_size - 1) / PAGE == start / PAGE) {
                unsigned char *p = kmm_zs_map(pool, h[i], KMM_ZS_RO);
                unsigned char *q = kmm_zs_map(pool, h[i + 1], KMM_ZS_RO);
                good += (size_t)(q - p) == L->class_size;
                pairs++;
                kmm_zs_unmap(pool, h[i + 1]);
                kmm_zs_unmap(pool, h[i]);
            }
        }
        L->inside = nin;
        L->spanning = nspan;
        L->layout_ok = good == pairs;   /* no pairs (objects above half a page): nothing to check */
        double mi[MAX_REPS], ms[MAX_REPS], ri[MAX_REPS], rs[MAX_REPS];
        for (int rep = 0; rep < opt.reps; rep++) {
            mi[rep] = nin ? time_map(pool, in, nin, L->size) : 0;
            ms[rep] = nspan ? time_map(pool, span, nspan, L->size) : 0;
            ri[rep] = nin ? time_read(pool, in, nin, L->size) : 0;
            rs[rep] = nspan ? time_read(pool, span, nspan, L->size) : 0;
        }
        L->map_in = summarize(mi, opt.reps);
        L->map_span = summarize(ms, opt.reps);
        L->read_in = summarize(ri, opt.reps);
        L->read_span = summarize(rs, opt.reps);
        all_checks_ok &= kmm_check(mm) == 0;
        kmm_zs_destroy(pool);
        kmm_destroy(mm);
    }
    static unsigned char a[PAGE], b[PAGE];
    double v[MAX_REPS];
    for (int rep = 0; rep < opt.reps; rep++) {
        long n = 100000;
        double t0 = now_ns();
        for (long i = 0; i < n; i++) {
            memcpy(a, b, PAGE);
            __asm__ volatile("" : : "r"(a), "r"(b) : "memory");
        }
        v[rep] = (now_ns() - t0) / (double)n;
    }
    memcpy_ns = summarize(v, opt.reps);
}

/* ---- section 5: throughput ------------------------------------------------------------- */

struct tp_job {
    const struct corpus *c;
    struct kmm_zstore *zs;            /* NULL: LZ4 alone */
    size_t from, to;                  /* page indexes */
    unsigned char *lz_out;            /* LZ4 alone: a slot of LZ4_compressBound(PAGE) per page */
    int *lz_len;
    bool read;
    pthread_barrier_t *bar;
    double t0, t1;
};

static int lz_bound(void) { return LZ4_compressBound((int)PAGE); }

static void *tp_thread(void *arg)
{
    struct tp_job *j = arg;
    static _Thread_local unsigned char page[PAGE];
    if (j->bar)
        pthread_barrier_wait(j->bar);
    j->t0 = now_ns();
    for (size_t i = j->from; i < j->to; i++) {
        const unsigned char *src = j->c->pages + i * PAGE;
        if (j->zs) {
            int rc = j->read ? kmm_zstore_read(j->zs, i, page) : kmm_zstore_write(j->zs, i, src);
            if (rc != 0)
                die(j->read ? "kmm_zstore_read failed" : "kmm_zstore_write failed");
        } else if (!j->read) {
            char *out = (char *)j->lz_out + i * (size_t)lz_bound();
            j->lz_len[i] = LZ4_compress_default((const char *)src, out, (int)PAGE, lz_bound());
            if (j->lz_len[i] <= 0)
                die("LZ4_compress_default failed");
        } else {
            const char *in = (const char *)j->lz_out + i * (size_t)lz_bound();
            if (LZ4_decompress_safe(in, (char *)page, j->lz_len[i], (int)PAGE) != (int)PAGE)
                die("LZ4_decompress_safe failed");
        }
    }
    j->t1 = now_ns();
    return NULL;
}

/* MB/s of original data for one pass over the corpus on nthreads (1 or 2),
 * each thread its own half of the indexes. */
static double tp_pass(const struct corpus *c, struct kmm_zstore *zs, unsigned char *lz_out, int *lz_len, bool read,
                      int nthreads)
{
    struct tp_job j[2];
    pthread_barrier_t bar;
    pthread_t t[2];
    size_t mid = nthreads == 2 ? c->npages / 2 : c->npages;
    for (int k = 0; k < nthreads; k++)
        j[k] = (struct tp_job){ c, zs, k ? mid : 0, k ? c->npages : mid, lz_out, lz_len, read,
                                nthreads == 2 ? &bar : NULL, 0, 0 };
    if (nthreads == 1) {
        tp_thread(&j[0]);
        return (double)(c->npages * PAGE) / ((j[0].t1 - j[0].t0) / 1e3);
    }
    pthread_barrier_init(&bar, NULL, 2);
    for (int k = 0; k < 2; k++)
        if (pthread_create(&t[k], NULL, tp_thread, &j[k]) != 0)
            die("pthread_create failed");
    for (int k = 0; k < 2; k++)
        pthread_join(t[k], NULL);
    pthread_barrier_destroy(&bar);
    double t0 = j[0].t0 < j[1].t0 ? j[0].t0 : j[1].t0, t1 = j[0].t1 > j[1].t1 ? j[0].t1 : j[1].t1;
    return (double)(c->npages * PAGE) / ((t1 - t0) / 1e3);
}

static void measure_throughput(struct corpus_result *cr)
{
    const struct corpus *c = &cr->c;
    unsigned char *lz_out = malloc(c->npages * (size_t)lz_bound());
    int *lz_len = malloc(c->npages * sizeof *lz_len);
    if (!lz_out || !lz_len)
        die("out of memory");
    /* One memory system for every pass, its memory touched by an untimed
     * store first: the first write to a page of a fresh memory system is a
     * page fault of the memfd (and, on a VM that virtualises page tables in
     * software, an exit to the hypervisor), tens of microseconds here, which
     * would be timed instead of the store (bench/README.md). */
    struct kmm *mm = new_mm();
    struct kmm_zstore *warm = kmm_zstore_create(mm, "lz4", c->npages);
    if (!warm)
        die_errno("kmm_zstore_create");
    tp_pass(c, warm, NULL, NULL, false, 1);
    kmm_zstore_destroy(warm);
    tp_pass(c, NULL, lz_out, lz_len, false, 1);   /* LZ4 alone's output buffer touched too */
    double v[20][MAX_REPS];
    for (int rep = 0; rep < opt.reps; rep++) {
        for (int nt = 1; nt <= 2; nt++) {
            struct kmm_zstore *zs = kmm_zstore_create(mm, "lz4", c->npages);
            if (!zs)
                die_errno("kmm_zstore_create");
            double w = tp_pass(c, zs, NULL, NULL, false, nt);
            if (nt == 1)
                kmm_zstore_stats(zs, &cr->zst);
            double rw = tp_pass(c, zs, NULL, NULL, false, nt);
            double r = tp_pass(c, zs, NULL, NULL, true, nt);
            kmm_zstore_destroy(zs);
            v[16 + (nt - 1)][rep] = rw;
            double lw = tp_pass(c, NULL, lz_out, lz_len, false, nt);
            double lr = tp_pass(c, NULL, lz_out, lz_len, true, nt);
            int b = (nt - 1) * 4;
            v[b][rep] = w;
            v[b + 1][rep] = r;
            v[b + 2][rep] = lw;
            v[b + 3][rep] = lr;
        }
        v[8][rep] = v[0][rep] / v[2][rep];
        v[9][rep] = v[1][rep] / v[3][rep];
        v[10][rep] = v[4][rep] / v[0][rep];
        v[11][rep] = v[5][rep] / v[1][rep];
        v[12][rep] = v[6][rep] / v[2][rep];
        v[13][rep] = v[7][rep] / v[3][rep];
        v[14][rep] = v[4][rep] / v[6][rep];
        v[15][rep] = v[5][rep] / v[7][rep];
        v[18][rep] = v[16][rep] / v[2][rep];
        v[19][rep] = v[17][rep] / v[6][rep];
    }
    all_checks_ok &= kmm_check(mm) == 0;
    kmm_destroy(mm);
    struct fig *out[20] = { &cr->w1, &cr->r1, &cr->lw1, &cr->lr1, &cr->w2, &cr->r2, &cr->lw2, &cr->lr2,
                            &cr->w_ratio, &cr->r_ratio, &cr->w_scale, &cr->r_scale, &cr->lw_scale, &cr->lr_scale,
                            &cr->w2_ratio, &cr->r2_ratio, &cr->rw1, &cr->rw2, &cr->rw_ratio, &cr->rw2_ratio };
    for (int k = 0; k < 20; k++)
        *out[k] = summarize(v[k], opt.reps);
    free(lz_out);
    free(lz_len);
}

/* ---- output ------------------------------------------------------------------------------ */

static const char *met(bool ok) { return ok ? "met" : "NOT met"; }

static void print_header(void)
{
    printf("kmm zsmalloc benchmark (bench/zsmalloc)%s\n", opt.quick ? " -- QUICK smoke run, figures are rough" : "");
    printf("machine : %ld CPUs online (nproc %ld), %s, %s, load average %.2f at start\n", sys.nproc,
           sys.nproc_affinity, sys.cpu, sys.kernel, sys.loadavg);
    printf("note    : a shared, noisy machine; densities are exact counts of one run, timings the median of\n"
           "          %d repetitions [min..max]; nothing is pinned\n", opt.reps);
#ifndef __OPTIMIZE__
    printf("WARNING : this benchmark was built without optimisation; use -DCMAKE_BUILD_TYPE=Release\n");
#endif
    printf("objects : every 4 KiB page compressed by LZ4 (LZ4_compress_default) and zstd (level %d); pages\n"
           "          filled with one repeated word dropped (zram stores them without allocation); an object\n"
           "          above %zu bytes (15/16 page) stored whole as a %zu-byte object in every store\n",
           ZSTD_LEVEL, HUGE_SIZE, PAGE);
}

static void print_corpora(struct corpus_result *cr, int n)
{
    printf("\ncorpora  (max %zu MiB each)\n", opt.max_bytes >> 20);
    printf("   %-7s %8s %8s  %-9s %9s %7s %9s %7s  %s\n", "corpus", "pages", "same", "", "objects", "huge",
           "MiB", "ratio", "source");
    for (int i = 0; i < n; i++) {
        if (!cr[i].made)
            continue;
        for (int a = 0; a < NR_ALGOS; a++) {
            double orig = (double)cr[i].a[a].objects * PAGE;
            printf("   %-7s %8zu %8zu  %-9s %9zu %7zu %9.1f %7.2f  %s\n", a ? "" : cr[i].c.name,
                   a ? 0 : cr[i].c.npages, a ? 0 : cr[i].a[a].same, algo_names[a], cr[i].a[a].objects,
                   cr[i].a[a].huge, (double)cr[i].a[a].bytes / (1 << 20),
                   cr[i].a[a].bytes ? orig / (double)cr[i].a[a].bytes : 0, a ? "" : cr[i].c.source);
        }
    }
    printf("   (same: same-filled pages, no object; huge: objects stored whole; MiB: sum of object sizes;\n"
           "    ratio: the objects' pages over their bytes, same-filled pages left out)\n");
}

static void print_density(struct corpus_result *cr, int n)
{
    printf("\n1. density = sum of object sizes / bytes held   (target: kmm_zs 0.98 or better on every corpus;\n"
           "   Linux zsmalloc 0.959-0.972 on such corpora)\n");
    printf("   %-7s %-5s %9s %9s %10s %8s %10s %9s %9s   %8s %8s %6s\n", "corpus", "algo", "kmm_zs", "pages",
           "meta KiB", "zbud", "kmm_malloc", "zs/zbud", "zs/malloc", "classes", "packing", "meta");
    double worst = 2;
    for (int i = 0; i < n; i++) {
        if (!cr[i].made)
            continue;
        for (int a = 0; a < NR_ALGOS; a++) {
            const __typeof__(cr[i].a[a]) *x = &cr[i].a[a];
            double data = (double)x->zs.pages * PAGE;
            printf("   %-7s %-5s %9.4f %9zu %10.1f %8.4f %10.4f %8.2fx %8.2fx   %8.4f %8.4f %5.2f%%\n",
                   a ? "" : cr[i].c.name, algo_names[a], x->zs.density, x->zs.pages, (double)x->zs.meta / 1024,
                   x->zbud.density, x->kmalloc.density, x->zs.density / x->zbud.density,
                   x->zs.density / x->kmalloc.density, (double)x->bytes / (double)x->zs.usable,
                   (double)x->zs.usable / data, 100.0 * (double)x->zs.meta / (data + (double)x->zs.meta));
            if (x->zs.density < worst)
                worst = x->zs.density;
        }
    }
    printf("   (kmm_zs: default kmm_zs_create, held = (pages_used + pages_stashed) x page size + meta_bytes; zbud: Linux's zbud\n"
           "    layout simulated, held = pages x page size; kmm_malloc: a fresh memory system, held = pages\n"
           "    allocated + metadata held bytes, deltas. kmm_zs's density = classes x packing x (1 - meta):\n"
           "    classes = object sizes / their class sizes (rounding up to a class), packing = class sizes /\n"
           "    data pages' bytes, meta = meta_bytes' share of the bytes held)\n");
    printf("   target: kmm_zs density >= 0.98 on every corpus and algorithm: %s (lowest %.4f)\n", met(worst >= 0.98),
           worst);
}

static void print_compaction(struct corpus_result *cr, int n)
{
    printf("\n2. after freeing a random half of the objects (fixed seed), then kmm_zs_compact\n"
           "   (target: kmm_zs 0.95 or better; Linux 0.935-0.960)\n");
    printf("   %-7s %-5s %10s %10s %8s %9s %-16s %10s %-16s %8s %10s\n", "corpus", "algo", "zs freed", "compacted",
           "pages", "ms", "[min..max]", "us/page", "[min..max]", "zbud", "kmm_malloc");
    double worst = 2;
    for (int i = 0; i < n; i++) {
        if (!cr[i].made)
            continue;
        for (int a = 0; a < NR_ALGOS; a++) {
            const __typeof__(cr[i].a[a]) *x = &cr[i].a[a];
            char r1[40], r2[40];
            snprintf(r1, sizeof r1, "[%.2f..%.2f]", x->compact_ms.min, x->compact_ms.max);
            snprintf(r2, sizeof r2, "[%.2f..%.2f]", x->compact_us_per_page.min, x->compact_us_per_page.max);
            printf("   %-7s %-5s %10.4f %10.4f %8zu %9.2f %-16s %10.3f %-16s %8.4f %10.4f\n", a ? "" : cr[i].c.name,
                   algo_names[a], x->zs.density_freed, x->zs.density_compacted, x->zs.pages_freed,
                   x->compact_ms.med, r1, x->compact_us_per_page.med, r2, x->zbud.density_freed,
                   x->kmalloc.density_freed);
            if (x->zs.density_compacted < worst)
                worst = x->zs.density_compacted;
        }
    }
    printf("   (zs freed: density after the frees, before compaction; pages: freed by kmm_zs_compact;\n"
           "    ms, us/page: its time, and per page freed; zbud: after the frees (it cannot compact);\n"
           "    kmm_malloc: after the frees and kmm_drain)\n");
    printf("   target: kmm_zs density after compaction >= 0.95 everywhere: %s (lowest %.4f)\n", met(worst >= 0.95),
           worst);
}

static void print_sweep(struct corpus_result *cr, int n)
{
    printf("\n3. kmm_zs_config sweep: density after the fill / after freeing half and compacting\n");
    printf("   %-12s", "step,pages");
    for (int i = 0; i < n; i++)
        if (cr[i].made)
            for (int a = 0; a < NR_ALGOS; a++) {
                char h[24];
                snprintf(h, sizeof h, "%s/%s", cr[i].c.name, algo_names[a]);
                printf(" %13s", h);
            }
    printf(" %13s %9s\n", "lowest", "meta KiB");
    for (int s = 0; s < SWEEP_STEPS; s++)
        for (int p = 0; p < SWEEP_PAGES; p++) {
            char h[24];
            snprintf(h, sizeof h, "%u,%u", sweep_step[s], sweep_pages[p]);
            printf("   %-12s", h);
            double lo = 2, lo2 = 2, meta = 0;
            int k = 0;
            for (int i = 0; i < n; i++)
                if (cr[i].made)
                    for (int a = 0; a < NR_ALGOS; a++) {
                        const struct zs_result *z = &cr[i].a[a].sweep[s][p];
                        printf("  %.4f/%.4f", z->density, z->density_compacted);
                        lo = z->density < lo ? z->density : lo;
                        lo2 = z->density_compacted < lo2 ? z->density_compacted : lo2;
                        meta += (double)z->meta;
                        k++;
                    }
            printf("  %.4f/%.4f %9.1f\n", lo, lo2, k ? meta / k / 1024 : 0);
        }
    printf("   (step: class_step bytes; pages: max_pages per zspage; meta KiB: mean over the columns)\n");
}

static void print_latency(void)
{
    printf("\n4. kmm_zs_map(KMM_ZS_RO) + kmm_zs_unmap, and kmm_zs_read of the whole object, ns per call\n"
           "   (a fresh default pool of %d objects of one size; objects inside one page and spanning two)\n",
           LAT_OBJECTS);
    printf("   %6s %6s %9s  %10s %10s %10s %10s %9s\n", "size", "class", "zspage", "map inside", "map span",
           "read inside", "read span", "span/in");
    for (int s = 0; s < LAT_SIZES; s++) {
        const struct lat_result *L = &lat[s];
        char z[24];
        snprintf(z, sizeof z, "%zup/%zuo", L->pages_per_zspage, L->objs_per_zspage);
        printf("   %6zu %6zu %9s  %10.1f %10.1f %11.1f %10.1f %8.2fx%s\n", L->size, L->class_size, z, L->map_in.med,
               L->map_span.med, L->read_in.med, L->read_span.med,
               L->map_in.med > 0 ? L->map_span.med / L->map_in.med : 0,
               L->layout_ok ? "" : "  (layout not as assumed: in-page neighbours not class_size apart)");
    }
    printf("   reference: memcpy of 4 KiB %.1f ns [%.1f..%.1f]\n", memcpy_ns.med, memcpy_ns.min, memcpy_ns.max);
    printf("   (zspage: pages/objects of a zspage of the class; span/in: map span over map inside)\n");
}

static void print_throughput(struct corpus_result *cr, int n)
{
    printf("\n5. kmm_zstore (lz4) write / read of every corpus page against LZ4 alone on the same pages, MB/s of\n"
           "   original data (target: store write >= 90%% of LZ4 alone on one thread)\n");
    printf("   %-7s %-7s %9s %9s %9s %9s %9s %8s %8s %8s\n", "corpus", "threads", "store wr", "rewrite",
           "LZ4 comp", "store rd", "LZ4 dec", "wr/LZ4", "rewr/LZ4", "rd/LZ4");
    double worst = 10, worst_rw = 10;
    for (int i = 0; i < n; i++) {
        if (!cr[i].made)
            continue;
        printf("   %-7s %-7s %9.0f %9.0f %9.0f %9.0f %9.0f %7.1f%% %7.1f%% %7.1f%%\n", cr[i].c.name, "1", cr[i].w1.med,
               cr[i].rw1.med, cr[i].lw1.med, cr[i].r1.med, cr[i].lr1.med, cr[i].w_ratio.med * 100,
               cr[i].rw_ratio.med * 100, cr[i].r_ratio.med * 100);
        printf("   %-7s %-7s %9.0f %9.0f %9.0f %9.0f %9.0f %7.1f%% %7.1f%% %7.1f%%\n", "", "2", cr[i].w2.med,
               cr[i].rw2.med, cr[i].lw2.med, cr[i].r2.med, cr[i].lr2.med, cr[i].w2_ratio.med * 100,
               cr[i].rw2_ratio.med * 100, cr[i].r2_ratio.med * 100);
        printf("   %-7s %-7s %8.2fx %9s %8.2fx %8.2fx %8.2fx\n", "", "2/1", cr[i].w_scale.med, "",
               cr[i].lw_scale.med, cr[i].r_scale.med, cr[i].lr_scale.med);
        if (cr[i].w_ratio.med < worst)
            worst = cr[i].w_ratio.med;
        if (cr[i].rw_ratio.med < worst_rw)
            worst_rw = cr[i].rw_ratio.med;
    }
    printf("   (store wr: every page written into an empty store; rewrite: every index written again (a new\n"
           "    object, the old one freed); ratios per repetition, then the median; 2/1: two threads' MB/s over\n"
           "    one thread's; LZ4 alone compresses every page, same-filled ones included, which the store skips)\n");
    printf("   target: store write >= 90%% of LZ4 alone on one thread, every corpus: %s (lowest %.1f%%;\n"
           "   rewrite: lowest %.1f%%)\n", met(worst >= 0.9), worst * 100, worst_rw * 100);
    printf("   store after one write of each corpus (kmm_zstore_stats):\n");
    printf("   %-7s %12s %12s %12s %8s %8s %9s\n", "corpus", "orig_data", "compr_data", "mem_used", "same",
           "huge", "density");
    for (int i = 0; i < n; i++)
        if (cr[i].made) {
            const struct kmm_zstore_stats *z = &cr[i].zst;
            printf("   %-7s %12llu %12llu %12llu %8llu %8llu %9.4f\n", cr[i].c.name,
                   (unsigned long long)z->orig_data_size, (unsigned long long)z->compr_data_size,
                   (unsigned long long)z->mem_used_total, (unsigned long long)z->same_pages,
                   (unsigned long long)z->huge_pages,
                   z->mem_used_total ? (double)z->compr_data_size / (double)z->mem_used_total : 0);
        }
}

static void json_out(struct corpus_result *cr, int n)
{
    printf("{\n  \"bench\": \"zsmalloc\",\n  \"reps\": %d,\n  \"max_bytes\": %zu,\n", opt.reps, opt.max_bytes);
    printf("  \"machine\": {\"nproc\": %ld, \"cpu\": \"%s\", \"kernel\": \"%s\", \"loadavg\": %.2f},\n", sys.nproc,
           sys.cpu, sys.kernel, sys.loadavg);
    printf("  \"corpora\": {\n");
    bool first = true;
    for (int i = 0; i < n; i++) {
        if (!cr[i].made)
            continue;
        printf("%s    \"%s\": {\"pages\": %zu, ", first ? "" : ",\n", cr[i].c.name, cr[i].c.npages);
        first = false;
        for (int a = 0; a < NR_ALGOS; a++) {
            const __typeof__(cr[i].a[a]) *x = &cr[i].a[a];
            printf("\"%s\": {\"objects\": %zu, \"same_filled\": %zu, \"huge\": %zu, \"bytes\": %zu, "
                   "\"zs_density\": %.5f, \"zs_pages\": %zu, \"zs_meta_bytes\": %zu, \"zbud_density\": %.5f, "
                   "\"kmm_malloc_density\": %.5f, \"zs_density_freed\": %.5f, \"zs_density_compacted\": %.5f, "
                   "\"zs_pages_compacted\": %zu, \"zbud_density_freed\": %.5f, \"kmm_malloc_density_freed\": %.5f, ",
                   algo_names[a], x->objects, x->same, x->huge, x->bytes, x->zs.density, x->zs.pages, x->zs.meta,
                   x->zbud.density, x->kmalloc.density, x->zs.density_freed, x->zs.density_compacted,
                   x->zs.pages_freed, x->zbud.density_freed, x->kmalloc.density_freed);
            json_fig("compact_ms", x->compact_ms, ", ");
            json_fig("compact_us_per_page", x->compact_us_per_page, "");
            if (opt.sweep) {
                printf(", \"sweep\": [");
                for (int s = 0; s < SWEEP_STEPS; s++)
                    for (int p = 0; p < SWEEP_PAGES; p++)
                        printf("%s{\"class_step\": %u, \"max_pages\": %u, \"density\": %.5f, "
                               "\"density_compacted\": %.5f}",
                               s + p ? ", " : "", sweep_step[s], sweep_pages[p], x->sweep[s][p].density,
                               x->sweep[s][p].density_compacted);
                printf("]");
            }
            printf("}, ");
        }
        printf("\"throughput_mb_s\": {");
        json_fig("store_write_1t", cr[i].w1, ", ");
        json_fig("lz4_compress_1t", cr[i].lw1, ", ");
        json_fig("store_read_1t", cr[i].r1, ", ");
        json_fig("lz4_decompress_1t", cr[i].lr1, ", ");
        json_fig("store_write_2t", cr[i].w2, ", ");
        json_fig("lz4_compress_2t", cr[i].lw2, ", ");
        json_fig("store_read_2t", cr[i].r2, ", ");
        json_fig("lz4_decompress_2t", cr[i].lr2, ", ");
        json_fig("write_over_lz4_1t", cr[i].w_ratio, ", ");
        json_fig("read_over_lz4_1t", cr[i].r_ratio, ", ");
        json_fig("store_rewrite_1t", cr[i].rw1, ", ");
        json_fig("store_rewrite_2t", cr[i].rw2, ", ");
        json_fig("rewrite_over_lz4_1t", cr[i].rw_ratio, "");
        printf("}}");
    }
    printf("\n  },\n  \"latency_ns\": {\n");
    for (int s = 0; s < LAT_SIZES; s++) {
        printf("    \"%zu\": {\"class_size\": %zu, ", lat[s].size, lat[s].class_size);
        json_fig("map_inside", lat[s].map_in, ", ");
        json_fig("map_spanning", lat[s].map_span, ", ");
        json_fig("read_inside", lat[s].read_in, ", ");
        json_fig("read_spanning", lat[s].read_span, "},\n");
    }
    printf("    ");
    json_fig("memcpy_4k", memcpy_ns, "\n  },\n");
    printf("  \"kmm_check\": \"%s\",\n", all_checks_ok ? "ok" : "FAILED");
    printf("  \"noise\": {\"wall_s\": %.2f, \"other_processes_cpus\": %.3f, \"steal_pct\": %.2f}\n}\n", noise.wall_s,
           noise.others_cpus, noise.steal_pct);
}

/* ---- main ------------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: zsmalloc [--json] [--quick] [--sweep] [--reps N] [--max-mb N] [--corpus NAME]... [--verbose]\n"
            "  --json          JSON instead of the tables\n"
            "  --quick         a smoke run: 3 repetitions, corpora of 16 MiB (rough figures)\n"
            "  --sweep         also the density of a sweep of kmm_zs_config (class step 8/16/32 x\n"
            "                  pages per zspage 4/8/16/32)\n"
            "  --reps N        repetitions of every timing (default 5; the median is reported)\n"
            "  --max-mb N      pages per corpus at most, in MiB (default 128)\n"
            "  --corpus NAME   only this corpus (repeatable): python sort cc bin doc gz\n"
            "  --verbose       progress on stderr\n");
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) {
            opt.json = true;
        } else if (!strcmp(a, "--quick")) {
            opt.quick = true;
            opt.reps = 3;
            opt.max_bytes = (size_t)16 << 20;
        } else if (!strcmp(a, "--sweep")) {
            opt.sweep = true;
        } else if (!strcmp(a, "--verbose")) {
            opt.verbose = true;
        } else if (!strcmp(a, "--reps") && i + 1 < argc) {
            opt.reps = (int)parse_long(argv[++i], "--reps");
        } else if (!strcmp(a, "--max-mb") && i + 1 < argc) {
            opt.max_bytes = (size_t)parse_long(argv[++i], "--max-mb") << 20;
        } else if (!strcmp(a, "--corpus") && i + 1 < argc) {
            const char *name = argv[++i];
            int k = 0;
            while (k < corpus_count && strcmp(corpus_names[k], name))
                k++;
            if (k == corpus_count) {
                fprintf(stderr, "bench/zsmalloc: unknown corpus %s\n", name);
                usage(stderr);
                return 2;
            }
            opt.want[k] = opt.any_wanted = true;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (opt.reps > MAX_REPS)
        opt.reps = MAX_REPS;

    probe_system();
    struct cpu_snap snap0 = cpu_snap(true);
    static struct corpus_result cr[16];
    int n = corpus_count;
    for (int i = 0; i < n; i++) {
        if (opt.any_wanted && !opt.want[i])
            continue;
        cr[i].made = corpus_make(corpus_names[i], opt.max_bytes, opt.verbose, &cr[i].c);
        if (!cr[i].made)
            continue;
        if (opt.verbose)
            fprintf(stderr, "bench/zsmalloc: %s: density...\n", corpus_names[i]);
        measure_density(&cr[i]);
        if (opt.verbose)
            fprintf(stderr, "bench/zsmalloc: %s: throughput...\n", corpus_names[i]);
        measure_throughput(&cr[i]);
    }
    if (opt.verbose)
        fprintf(stderr, "bench/zsmalloc: map latency...\n");
    measure_latency();
    noise_measure(snap0, cpu_snap(true));

    if (opt.json) {
        json_out(cr, n);
    } else {
        print_header();
        print_corpora(cr, n);
        print_density(cr, n);
        print_compaction(cr, n);
        if (opt.sweep)
            print_sweep(cr, n);
        print_latency();
        print_throughput(cr, n);
        printf("\nkmm_check of every memory system after its use: %s\n", all_checks_ok ? "ok" : "FAILED");
        printf("noise: during the %.1f s run other processes kept %.2f CPUs busy on average and the\n"
               "       hypervisor stole %.1f%% of the CPU time (both should be near 0 for clean figures)\n",
               noise.wall_s, noise.others_cpus, noise.steal_pct);
    }
    for (int i = 0; i < n; i++)
        corpus_free(&cr[i].c);
    return all_checks_ok ? 0 : 1;
}
