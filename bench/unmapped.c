/* bench/unmapped.c - pages out of the direct map: the program's main and
 * options, and the fragmentation section (the others: unmapped_secret.c,
 * unmapped_execmem.c). See bench/README.md.
 *
 * Fragmentation: a memory system whose page allocator has been used and
 * partly freed (SCATTER pages taken, a random half given back), then PAGES
 * single pages taken out of the direct map one by one, each after 0 .. 15
 * pages taken by someone else (held to the end), as in a running system
 * where other allocations come between: without them the page allocator
 * would hand out neighbouring pages (its per-thread cache refills with
 * 64-page blocks) and the naive way would look better than it is:
 *   naive  KMM_UNMAPPED_NOCACHE: each page from the page allocator, unmapped
 *          alone (what a kernel without the cache does);
 *   cache  kmm_unmapped_alloc: 2 MiB chunks unmapped whole, pages from them.
 * For each: the direct map's mappings afterwards (the stats, and the VMAs
 * of /proc/self/maps in the direct map's range, which must agree), the
 * pages the method holds, and the time per allocation and per free
 * (median of the repetitions, each on a fresh memory system; each
 * allocation timed alone, so ~40 ns of clock reads are in the figure).
 * Target: the cache adds at most one mapping per 2 MiB it holds.
 */
#include <kmm.h>

#include "harness.h"
#include "unmapped.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char harness_prog[] = "bench/unmapped";

#define MEM      (1ull << 30)
#define PS       4096u

/* VMAs of this process overlapping the direct map of mm's memory. */
static size_t maps_in_direct_map(struct kmm *mm)
{
    struct kmm_page_stats ps;
    kmm_page_stats(mm, &ps);
    uintptr_t lo = (uintptr_t)kmm_phys_to_virt(mm, ps.area[0].start);
    uintptr_t hi = (uintptr_t)kmm_phys_to_virt(mm, ps.area[ps.nr_areas - 1].end - ps.page_size) + ps.page_size;
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        die_errno("/proc/self/maps");
    char line[512];
    size_t n = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long s, e;
        if (sscanf(line, "%llx-%llx", &s, &e) == 2 && s < hi && e > lo)
            n++;
    }
    fclose(f);
    return n;
}

struct frag_run {
    double alloc_ns, free_ns;     /* per page */
    size_t mappings, maps_seen, pages_held, chunks, splits_before;
};

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* A fresh memory system whose first scatter pages were used and a random
 * half of them freed; returns it, the held half in *held. */
static struct kmm *scattered_mm(size_t scatter, void ***held, size_t *nheld, uint64_t seed)
{
    struct kmm_config cfg = { .page_size = PS, .mem_size = MEM };
    struct kmm *mm = kmm_create(&cfg);
    if (!mm)
        die_errno("kmm_create");
    void **pages = malloc(scatter * sizeof(*pages));
    if (!pages)
        die("out of memory");
    for (size_t i = 0; i < scatter; i++)
        if (!(pages[i] = kmm_alloc_pages(mm, 0, 0)))
            die("kmm_alloc_pages failed while scattering");
    size_t kept = 0;
    for (size_t i = 0; i < scatter; i++) {
        if (rng_next(&seed) & 1)
            kmm_free_pages(mm, pages[i]);
        else
            pages[kept++] = pages[i];
    }
    kmm_drain(mm);   /* the per-thread cache's pages back in the buddy lists */
    *held = pages;
    *nheld = kept;
    return mm;
}

static void frag_once(bool naive, size_t npages, size_t scatter, uint64_t seed, struct frag_run *out)
{
    void **held;
    size_t nheld;
    struct kmm *mm = scattered_mm(scatter, &held, &nheld, seed);
    kmm_phys_t *got = malloc(npages * sizeof(*got));
    if (!got)
        die("out of memory");
    struct kmm_unmapped_stats st;
    kmm_unmapped_stats(mm, &st);
    out->splits_before = st.direct_map_mappings;
    unsigned flags = naive ? KMM_UNMAPPED_NOCACHE : 0;
    size_t nspacers = 0, cap = npages * 8 + 64;
    void **spacers = malloc(cap * sizeof(*spacers));
    if (!spacers)
        die("out of memory");
    double spent = 0;
    for (size_t i = 0; i < npages; i++) {
        for (uint64_t k = rng_next(&seed) % 16; k > 0 && nspacers < cap; k--)
            if (!(spacers[nspacers++] = kmm_alloc_pages(mm, 0, 0)))
                die("kmm_alloc_pages failed between allocations");
        double t0 = now_ns();
        got[i] = kmm_unmapped_alloc(mm, 0, flags);
        spent += now_ns() - t0;
        if (got[i] == KMM_PHYS_NONE)
            die("kmm_unmapped_alloc failed");
    }
    kmm_unmapped_stats(mm, &st);
    out->alloc_ns = spent / (double)npages;
    out->mappings = st.direct_map_mappings;
    out->maps_seen = maps_in_direct_map(mm);
    out->pages_held = naive ? st.pages_nocache : st.pages_held;
    out->chunks = st.chunks;
    double t0 = now_ns();
    for (size_t i = 0; i < npages; i++)
        kmm_unmapped_free(mm, got[i]);
    double t1 = now_ns();
    out->free_ns = (t1 - t0) / (double)npages;
    if (kmm_check(mm) != 0)
        die("kmm_check failed");
    for (size_t i = 0; i < nheld; i++)
        kmm_free_pages(mm, held[i]);
    for (size_t i = 0; i < nspacers; i++)
        kmm_free_pages(mm, spacers[i]);
    free(spacers);
    free(held);
    free(got);
    kmm_destroy(mm);
}

void bench_unmapped_fragmentation(const struct unmapped_opts *o)
{
    size_t npages = o->quick ? 2000 : 10000;
    size_t scatter = o->quick ? 16384 : 65536;
    int reps = o->reps;
    double a[2][64], f[2][64];
    struct frag_run last[2];
    for (int r = 0; r < reps; r++) {
        for (int m = 0; m < 2; m++) {
            frag_once(m == 0, npages, scatter, 0x6b6d6d2d756e6d70ull + (uint64_t)r, &last[m]);
            a[m][r] = last[m].alloc_ns;
            f[m][r] = last[m].free_ns;
            if (last[m].mappings != last[m].maps_seen)
                fprintf(stderr, "bench/unmapped: %s: stats say %zu mappings, /proc/self/maps %zu\n",
                        m ? "cache" : "naive", last[m].mappings, last[m].maps_seen);
        }
    }
    struct fig fa[2] = { summarize(a[0], reps), summarize(a[1], reps) };
    struct fig ff[2] = { summarize(f[0], reps), summarize(f[1], reps) };
    double chunks_2m = (double)last[1].pages_held * PS / (double)KMM_UNMAPPED_REFILL_BYTES;
    double added_per_2m = chunks_2m > 0 ? (double)(last[1].mappings - last[1].splits_before) / chunks_2m : 0;
    bool target = added_per_2m <= 1.0;
    if (o->json) {
        printf("\"fragmentation\": {\"pages\": %zu, \"scattered_pages\": %zu, \"reps\": %d, ", npages, scatter, reps);
        for (int m = 0; m < 2; m++) {
            printf("\"%s\": {\"mappings\": %zu, \"maps_seen\": %zu, \"pages_held\": %zu, ", m ? "cache" : "naive",
                   last[m].mappings, last[m].maps_seen, last[m].pages_held);
            json_fig("alloc_ns", fa[m], ", ");
            json_fig("free_ns", ff[m], "");
            printf("}, ");
        }
        printf("\"cache_mappings_added_per_2mib\": %.3f, \"target_met\": %s},\n", added_per_2m, target ? "true" : "false");
        return;
    }
    printf("== fragmentation: %zu single pages out of the direct map, 0-15 other pages taken between each\n"
           "   (after %zu pages used and half freed at random)\n",
           npages, scatter);
    printf("%-8s %10s %12s %12s %14s %14s\n", "method", "mappings", "in maps", "pages held", "alloc ns/page", "free ns/page");
    for (int m = 0; m < 2; m++)
        printf("%-8s %10zu %12zu %12zu %8.0f [%.0f-%.0f] %8.0f [%.0f-%.0f]\n", m ? "cache" : "naive", last[m].mappings,
               last[m].maps_seen, last[m].pages_held, fa[m].med, fa[m].min, fa[m].max, ff[m].med, ff[m].min, ff[m].max);
    printf("cache: %zu chunks, %.2f mappings added per 2 MiB held (target <= 1): %s\n\n", last[1].chunks, added_per_2m,
           target ? "met" : "MISSED");
}

static void usage(void)
{
    fprintf(stderr, "usage: bench/unmapped [--reps N] [--json] [--quick]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    struct unmapped_opts o = { .reps = 5 };
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            o.json = true;
        else if (!strcmp(argv[i], "--quick"))
            o.quick = true;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            o.reps = (int)parse_long(argv[++i], "--reps");
        else
            usage();
    }
    if (o.quick && o.reps > 3)
        o.reps = 3;
    if (o.reps > 64)
        o.reps = 64;
    probe_system();
    if (o.json)
        printf("{");
    else
        printf("bench/unmapped: %s, %ld CPUs, load %.2f\n\n", sys.cpu, sys.nproc, sys.loadavg);
    bench_unmapped_fragmentation(&o);
    bench_unmapped_secret(&o);
    bench_unmapped_execmem(&o);
    if (o.json)
        printf("}\n");
    return 0;
}
