/* zs.c - the zsmalloc layer and the compressed page store in `kmm demo` and
 * `kmm stats`: their workload, their stats as text and JSON, the demo's
 * section. */
#include "tool.h"

#include <stdlib.h>
#include <string.h>

static uint64_t next_random(uint64_t *state)
{
    /* xorshift64*: reproducible runs, no libc state */
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 2685821657736338717ull;
}

static void fill_random(unsigned char *page, size_t page_size, uint64_t *state)
{
    for (size_t i = 0; i + 8 <= page_size; i += 8) {
        uint64_t v = next_random(state);
        memcpy(page + i, &v, 8);
    }
}

static void fill_word(unsigned char *page, size_t page_size, uint64_t word)
{
    for (size_t i = 0; i + 8 <= page_size; i += 8)
        memcpy(page + i, &word, 8);
}

/* ---- stats ------------------------------------------------------------------ */

static double pool_density(const struct kmm_zs_stats *st)
{
    double held = (double)(st->pages_used + st->pages_stashed) * (double)st->page_size + (double)st->meta_bytes;
    return held > 0 ? (double)st->obj_bytes / held : 0.0;
}

static size_t get_classes(struct kmm_zspool *pool, struct kmm_zs_class_stats **out)
{
    size_t n = kmm_zs_class_stats(pool, NULL, 0);
    *out = calloc(n ? n : 1, sizeof(**out));
    if (!*out)
        return 0;
    size_t filled = kmm_zs_class_stats(pool, *out, n);
    return filled < n ? filled : n;
}

static void print_class_header(FILE *f)
{
    fprintf(f, "  %5s %5s %8s %8s %8s %16s %15s %12s\n", "class", "size", "objects", "zspages", "pages",
            "pages_per_zspage", "objs_per_zspage", "free_objects");
}

static void print_class(FILE *f, size_t index, const struct kmm_zs_class_stats *c)
{
    fprintf(f, "  %5zu %5zu %8zu %8zu %8zu %16zu %15zu %12zu\n", index, c->size, c->objects, c->zspages, c->pages,
            c->pages_per_zspage, c->objs_per_zspage, c->free_objects);
}

static void print_pool_totals(FILE *f, struct kmm_zspool *pool)
{
    struct kmm_zs_stats st;
    kmm_zs_stats(pool, &st);
    fprintf(f, "  %zu objects (", st.objects);
    print_size(f, st.obj_bytes);
    fprintf(f, " by class size) in %zu pages (", st.pages_used);
    print_size(f, (uint64_t)st.pages_used * st.page_size);
    fprintf(f, ") of %zu zspages; most %zu pages at once, %zu freed by compaction; metadata ", st.zspages,
            st.pages_max, st.pages_compacted);
    print_size(f, st.meta_bytes);
    fprintf(f, "\n  density %.4f (object bytes / (pages + metadata)), %zu classes\n", pool_density(&st), st.nr_classes);
}

static void print_pool(struct kmm_zspool *pool, void *arg)
{
    FILE *f = arg;
    struct kmm_zs_class_stats *cs;
    size_t n = get_classes(pool, &cs);
    size_t shown = 0;
    fprintf(f, "zsmalloc pool \"%s\" (like /sys/kernel/debug/zsmalloc/<pool>/classes):\n", kmm_zs_name(pool));
    for (size_t i = 0; i < n; i++) {
        if (cs[i].objects == 0 && cs[i].zspages == 0)
            continue;
        if (shown++ == 0)
            print_class_header(f);
        print_class(f, i, &cs[i]);
    }
    if (shown < n)
        fprintf(f, "  (%zu of %zu classes empty, not shown)\n", n - shown, n);
    print_pool_totals(f, pool);
    free(cs);
}

void print_zs_stats(FILE *f, struct kmm *mm)
{
    kmm_zs_for_each(mm, print_pool, f);
}

struct json_pools {
    FILE *f;
    unsigned n;
};

static void print_pool_json(struct kmm_zspool *pool, void *arg)
{
    struct json_pools *jp = arg;
    FILE *f = jp->f;
    struct kmm_zs_stats st;
    kmm_zs_stats(pool, &st);
    fprintf(f, "%s{\"name\":\"%s\",\"objects\":%zu,\"obj_bytes\":%zu,\"pages_used\":%zu,\"pages_max\":%zu,"
               "\"pages_compacted\":%zu,\"zspages\":%zu,\"meta_bytes\":%zu,\"nr_classes\":%zu,\"page_size\":%zu,"
               "\"density\":%.6f,\"classes\":[",
            jp->n++ ? "," : "", kmm_zs_name(pool), st.objects, st.obj_bytes, st.pages_used, st.pages_max,
            st.pages_compacted, st.zspages, st.meta_bytes, st.nr_classes, st.page_size, pool_density(&st));
    struct kmm_zs_class_stats *cs;
    size_t n = get_classes(pool, &cs);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s{\"class\":%zu,\"size\":%zu,\"objects\":%zu,\"zspages\":%zu,\"pages\":%zu,"
                   "\"pages_per_zspage\":%zu,\"objs_per_zspage\":%zu,\"free_objects\":%zu}",
                i ? "," : "", i, cs[i].size, cs[i].objects, cs[i].zspages, cs[i].pages, cs[i].pages_per_zspage,
                cs[i].objs_per_zspage, cs[i].free_objects);
    free(cs);
    fprintf(f, "]}");
}

void print_zs_stats_json(FILE *f, struct kmm *mm)
{
    struct json_pools jp = { f, 0 };
    fprintf(f, "[");
    kmm_zs_for_each(mm, print_pool_json, &jp);
    fprintf(f, "]");
}

static double ratio(uint64_t num, uint64_t den)
{
    return den ? (double)num / (double)den : 0.0;
}

static void print_mm_stat(FILE *f, const struct kmm_zstore_stats *st)
{
    fprintf(f, "%llu %llu %llu %llu %llu %llu %llu %llu", (unsigned long long)st->orig_data_size,
            (unsigned long long)st->compr_data_size, (unsigned long long)st->mem_used_total,
            (unsigned long long)st->mem_limit, (unsigned long long)st->mem_used_max,
            (unsigned long long)st->same_pages, (unsigned long long)st->pages_compacted,
            (unsigned long long)st->huge_pages);
}

void print_zstore_stats(FILE *f, struct kmm_zstore *zs)
{
    struct kmm_zstore_stats st;
    kmm_zstore_stats(zs, &st);
    fprintf(f, "zstore (%s, pool \"%s\"): mm_stat ", st.algo, kmm_zs_name(kmm_zstore_pool(zs)));
    print_mm_stat(f, &st);
    fprintf(f, "\n  orig_data_size ");
    print_size(f, st.orig_data_size);
    fprintf(f, ", compr_data_size ");
    print_size(f, st.compr_data_size);
    fprintf(f, " (compression ratio %.2f), mem_used_total ", ratio(st.orig_data_size, st.compr_data_size));
    print_size(f, st.mem_used_total);
    fprintf(f, " (compr_data_size / mem_used_total %.3f)\n  mem_limit ", ratio(st.compr_data_size, st.mem_used_total));
    if (st.mem_limit)
        print_size(f, st.mem_limit);
    else
        fprintf(f, "none");
    fprintf(f, ", mem_used_max ");
    print_size(f, st.mem_used_max);
    fprintf(f, "; %llu same pages, %llu pages compacted, %llu huge pages (compressed above %llu bytes: stored whole)\n",
            (unsigned long long)st.same_pages, (unsigned long long)st.pages_compacted,
            (unsigned long long)st.huge_pages, (unsigned long long)st.huge_threshold);
    fprintf(f, "  %llu of %llu indexes hold a page of %llu bytes; %llu writes, %llu reads, %llu writes failed, "
               "%llu refused by the limit\n",
            (unsigned long long)st.pages_stored, (unsigned long long)st.nr_pages, (unsigned long long)st.page_size,
            (unsigned long long)st.writes, (unsigned long long)st.reads, (unsigned long long)st.write_failed,
            (unsigned long long)st.limit_refused);
}

void print_zstore_stats_json(FILE *f, struct kmm_zstore *zs)
{
    struct kmm_zstore_stats st;
    kmm_zstore_stats(zs, &st);
    fprintf(f, "{\"algo\":\"%s\",\"pool\":\"%s\",\"mm_stat\":[", st.algo, kmm_zs_name(kmm_zstore_pool(zs)));
    uint64_t mm_stat[] = { st.orig_data_size, st.compr_data_size, st.mem_used_total, st.mem_limit,
                           st.mem_used_max, st.same_pages, st.pages_compacted, st.huge_pages };
    for (unsigned i = 0; i < 8; i++)
        fprintf(f, "%s%llu", i ? "," : "", (unsigned long long)mm_stat[i]);
    fprintf(f, "],\"orig_data_size\":%llu,\"compr_data_size\":%llu,\"mem_used_total\":%llu,\"mem_limit\":%llu,"
               "\"mem_used_max\":%llu,\"same_pages\":%llu,\"pages_compacted\":%llu,\"huge_pages\":%llu,"
               "\"pages_stored\":%llu,\"nr_pages\":%llu,\"page_size\":%llu,\"huge_threshold\":%llu,"
               "\"writes\":%llu,\"reads\":%llu,\"write_failed\":%llu,\"limit_refused\":%llu,"
               "\"compression_ratio\":%.6f}",
            (unsigned long long)st.orig_data_size, (unsigned long long)st.compr_data_size,
            (unsigned long long)st.mem_used_total, (unsigned long long)st.mem_limit,
            (unsigned long long)st.mem_used_max, (unsigned long long)st.same_pages,
            (unsigned long long)st.pages_compacted, (unsigned long long)st.huge_pages,
            (unsigned long long)st.pages_stored, (unsigned long long)st.nr_pages, (unsigned long long)st.page_size,
            (unsigned long long)st.huge_threshold, (unsigned long long)st.writes, (unsigned long long)st.reads,
            (unsigned long long)st.write_failed, (unsigned long long)st.limit_refused,
            ratio(st.orig_data_size, st.compr_data_size));
}

/* ---- the stats workload ----------------------------------------------------- */

static size_t page_size_of(struct kmm *mm)
{
    struct kmm_page_stats ps;
    kmm_page_stats(mm, &ps);
    return ps.page_size;
}

struct zs_work run_zs_workload(struct kmm *mm)
{
    struct zs_work w = { 0 };
    double t0 = now_seconds();
    size_t ps = page_size_of(mm);
    unsigned char *bin, *share;
    size_t nbin = read_sample("/usr/bin", ps, 768, 24, &bin);
    size_t nshare = read_sample("/usr/share", ps, 256, 8, &share);
    enum { SAME = 64, RANDOM = 64 };
    uint64_t total = nbin + nshare + SAME + RANDOM;
    unsigned char *page = malloc(ps);
    w.store = page ? kmm_zstore_create(mm, "lz4", total) : NULL;
    uint64_t index = 0, seed = 0x7a73746f7265ull;
    for (size_t i = 0; w.store && i < nbin; i++)
        w.file_pages += kmm_zstore_write(w.store, index++, bin + i * ps) == 0;
    for (size_t i = 0; w.store && i < nshare; i++)
        w.file_pages += kmm_zstore_write(w.store, index++, share + i * ps) == 0;
    for (unsigned i = 0; w.store && i < SAME; i++) {
        /* zero pages, and pages of one repeated word (a memset pattern, a fill value) */
        fill_word(page, ps, i % 4 ? 0x0101010101010101ull * (i % 251) : 0);
        w.same_pages += kmm_zstore_write(w.store, index++, page) == 0;
    }
    for (unsigned i = 0; w.store && i < RANDOM; i++) {
        fill_random(page, ps, &seed);
        w.random_pages += kmm_zstore_write(w.store, index++, page) == 0;
    }
    /* a quarter forgotten (swapped-in pages, say) and the holes compacted */
    for (uint64_t i = 3; w.store && i < index; i += 4)
        w.discarded += kmm_zstore_discard(w.store, i) == 0;
    if (w.store)
        w.compacted = kmm_zstore_compact(w.store);

    /* raw objects of random sizes, every other one freed and not compacted:
     * a pool with holes, as between two compactions */
    w.objects = kmm_zs_create(mm, "objects");
    size_t cap = 3000;
    w.handles = calloc(cap, sizeof(*w.handles));
    for (size_t i = 0; w.objects && w.handles && i < cap; i++) {
        /* a few sizes, so a few classes: the holes show in free_objects */
        size_t size = ps / (2 + (size_t)(next_random(&seed) % 8)) - 8;
        uint64_t h = kmm_zs_malloc(w.objects, size, 0);
        if (!h)
            continue;
        memset(page, (int)i, size);
        kmm_zs_write(w.objects, h, 0, page, size);
        if (i % 2)
            kmm_zs_free(w.objects, h);
        else
            w.handles[w.nhandles++] = h;
    }
    free(page);
    free(bin);
    free(share);
    w.seconds = now_seconds() - t0;
    return w;
}

void release_zs_workload(struct zs_work *w)
{
    for (size_t i = 0; i < w->nhandles; i++)
        kmm_zs_free(w->objects, w->handles[i]);
    free(w->handles);
    if (w->objects)
        kmm_zs_destroy(w->objects);
    if (w->store)
        kmm_zstore_destroy(w->store);
}

/* ---- the demo --------------------------------------------------------------- */

struct sample {
    const char *dir;
    size_t max_pages, max_file_pages;
    unsigned char *pages;
    size_t n;
};

/* The classes holding the most pages, most first. */
static void print_top_classes(FILE *f, struct kmm_zspool *pool, size_t top)
{
    struct kmm_zs_class_stats *cs;
    size_t n = get_classes(pool, &cs);
    size_t *order = calloc(n ? n : 1, sizeof(*order));
    size_t used = 0;
    for (size_t i = 0; order && i < n; i++)
        if (cs[i].pages)
            order[used++] = i;
    for (size_t i = 1; i < used; i++)   /* insertion sort: a few hundred classes at most */
        for (size_t j = i; j > 0 && cs[order[j]].pages > cs[order[j - 1]].pages; j--) {
            size_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    print_class_header(f);
    for (size_t i = 0; i < used && i < top; i++)
        print_class(f, order[i], &cs[order[i]]);
    if (used > top)
        fprintf(f, "  ... and %zu more classes in use (of %zu)\n", used - top, n);
    free(order);
    free(cs);
}

static void demo_store_summary(struct kmm_zstore *zs)
{
    struct kmm_zstore_stats st;
    kmm_zstore_stats(zs, &st);
    struct kmm_zs_stats ps;
    kmm_zs_stats(kmm_zstore_pool(zs), &ps);
    printf("  mm_stat ");
    print_mm_stat(stdout, &st);
    printf("\n  %llu pages (", (unsigned long long)st.pages_stored);
    print_size(stdout, st.orig_data_size);
    printf(") held in ");
    print_size(stdout, st.mem_used_total);
    printf(": compression ratio %.2f, %llu same-filled, %llu huge; pool density %.4f (object bytes / (pages + metadata))\n",
           ratio(st.orig_data_size, st.compr_data_size), (unsigned long long)st.same_pages,
           (unsigned long long)st.huge_pages, pool_density(&ps));
    print_top_classes(stdout, kmm_zstore_pool(zs), 5);
}

void demo_zsmalloc(struct kmm *mm)
{
    size_t ps = page_size_of(mm);
    struct sample samples[] = {
        { "/usr/bin", 2048, 32, NULL, 0 },
        { "/usr/lib", 1024, 16, NULL, 0 },
        { "/usr/share/doc", 1024, 8, NULL, 0 },
    };
    enum { NSAMPLES = sizeof(samples) / sizeof(samples[0]) };
    uint64_t total = 0;
    for (unsigned s = 0; s < NSAMPLES; s++) {
        samples[s].n = read_sample(samples[s].dir, ps, samples[s].max_pages, samples[s].max_file_pages,
                                   &samples[s].pages);
        total += samples[s].n;
    }
    printf("corpus: %llu pages of real files (", (unsigned long long)total);
    for (unsigned s = 0; s < NSAMPLES; s++)
        printf("%s%zu from %s", s ? ", " : "", samples[s].n, samples[s].dir);
    printf("; a few pages of each file)\n");
    if (total == 0) {
        printf("  no files to read: nothing to store\n");
        return;
    }

    const char *algos[] = { "lz4", "zstd" };
    for (unsigned a = 0; a < 2; a++) {
        struct kmm_zstore *zs = kmm_zstore_create(mm, algos[a], total);
        if (!zs) {
            printf("\n%s: cannot create a store\n", algos[a]);
            continue;
        }
        double t0 = now_seconds();
        uint64_t index = 0;
        for (unsigned s = 0; s < NSAMPLES; s++)
            for (size_t i = 0; i < samples[s].n; i++)
                kmm_zstore_write(zs, index++, samples[s].pages + i * ps);
        double seconds = now_seconds() - t0;
        printf("\n%s: %llu pages stored in %.1f ms (", algos[a], (unsigned long long)index, seconds * 1e3);
        print_size(stdout, (uint64_t)((double)(index * ps) / (seconds > 0 ? seconds : 1e-9)));
        printf("/s)\n");
        demo_store_summary(zs);

        /* a random half swapped back in (discarded), then compaction gives
         * the holes back */
        uint64_t seed = 0x68616c66ull + a, discarded = 0;
        for (uint64_t i = 0; i < index; i++)
            if (next_random(&seed) & 1)
                discarded += kmm_zstore_discard(zs, i) == 0;
        t0 = now_seconds();
        size_t freed = kmm_zstore_compact(zs);
        seconds = now_seconds() - t0;
        printf("  after discarding a random half (%llu pages) and kmm_zstore_compact (%zu pages freed in %.2f ms):\n",
               (unsigned long long)discarded, freed, seconds * 1e3);
        demo_store_summary(zs);
        kmm_zstore_destroy(zs);
    }
    for (unsigned s = 0; s < NSAMPLES; s++)
        free(samples[s].pages);
}
