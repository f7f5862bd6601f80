/* kmm - the command-line tool: a tour of every layer, and stats.
 *
 *   kmm demo                  run a mixed workload through every layer, print each layer's stats
 *   kmm stats [--json] [options]
 *                             run the workload on a configured memory system and print its stats
 *   options: --page-size N  --mem-size N[K|M|G]  --areas L1,L2,...  (upper limits, bytes with K/M/G)
 */
#include <kmm.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *area_name(unsigned nr_areas, unsigned a, bool default_areas)
{
    static const char *names[] = { "LOWEST", "LOW", "NORMAL" };
    return default_areas && nr_areas == 3 ? names[a] : "";
}

static void print_size(FILE *f, uint64_t bytes)
{
    const char *unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    unsigned u = 0;
    double v = (double)bytes;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    fprintf(f, v == (double)(uint64_t)v ? "%.0f %s" : "%.1f %s", v, unit[u]);
}

/* ---- the workload ---------------------------------------------------------- */

struct workload {
    unsigned allocs, frees, exact, aligned, reserved, failed;
    double seconds;
};

struct thread_work {
    struct kmm *mm;
    unsigned seed;
    unsigned ops;
    unsigned allocs, frees;
};

/* Random orders 0..3 from a thread's cache, half of them freed again. */
static void *thread_churn(void *arg)
{
    struct thread_work *w = arg;
    void *live[256] = { 0 };
    for (unsigned i = 0; i < w->ops; i++) {
        unsigned slot = (unsigned)rand_r(&w->seed) % 256;
        if (live[slot]) {
            kmm_free_pages(w->mm, live[slot]);
            live[slot] = NULL;
            w->frees++;
        } else {
            live[slot] = kmm_alloc_pages(w->mm, (unsigned)rand_r(&w->seed) % 4, 0);
            w->allocs += live[slot] != NULL;
        }
    }
    for (unsigned i = 0; i < 256; i++) {
        w->frees += live[i] != NULL;
        kmm_free_pages(w->mm, live[i]);
    }
    return NULL;
}

/* Leaves a realistic picture behind: live blocks of many orders in every
 * area, exact and aligned allocations, a reservation, and free memory broken
 * into blocks of every order. Returns what it did. */
static struct workload run_workload(struct kmm *mm, void ***keep, size_t *nkeep)
{
    struct workload w = { 0 };
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t cap = 8192, n = 0;
    void **live = calloc(cap, sizeof(*live));
    unsigned seed = 42;
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);

    /* a reservation in the lowest area, like a firmware table */
    if (st.area[0].total_pages > 64 && kmm_reserve_pages(mm, st.area[0].start + 16 * st.page_size, 7) == 0)
        w.reserved = 7;

    for (unsigned i = 0; i < 6000; i++) {
        unsigned order = (unsigned)rand_r(&seed) % 11;
        /* mostly any area; some callers need low memory, a few the lowest (small blocks) */
        unsigned r = (unsigned)rand_r(&seed) % 8;
        unsigned flags = r == 0 ? KMM_AREAS_BELOW(1) : 0;
        if (r == 1) {
            flags = KMM_AREA_LOWEST;
            order %= 3;
        }
        void *p = kmm_alloc_pages(mm, order, flags);
        if (!p) {
            w.failed++;
            continue;
        }
        w.allocs++;
        memset(p, 0x5a, st.page_size);   /* touch the first page */
        if (n < cap)
            live[n++] = p;
        if (rand_r(&seed) % 2 && n) {   /* free a random live block */
            size_t victim = (size_t)rand_r(&seed) % n;
            kmm_free_pages(mm, live[victim]);
            live[victim] = live[--n];
            w.frees++;
        }
    }
    for (unsigned i = 0; i < 64 && n < cap; i++) {
        void *p = kmm_alloc_pages_exact(mm, (size_t)(1 + (unsigned)rand_r(&seed) % 40) * st.page_size, 0);
        if (p) {
            live[n++] = p;
            w.exact++;
        }
        p = kmm_alloc_pages_aligned(mm, 1 + (unsigned)rand_r(&seed) % 3, (size_t)1 << (20 + i % 3), 0);
        if (p && n < cap) {
            live[n++] = p;
            w.aligned++;
        }
    }
    pthread_t t[2];
    struct thread_work tw[2] = { { mm, 1, 200000, 0, 0 }, { mm, 2, 200000, 0, 0 } };
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, thread_churn, &tw[i]);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        w.allocs += tw[i].allocs;
        w.frees += tw[i].frees;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    w.seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    *keep = live;
    *nkeep = n;
    return w;
}

static void release_workload(struct kmm *mm, void **live, size_t n, unsigned reserved)
{
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    for (size_t i = 0; i < n; i++)
        kmm_free_pages(mm, live[i]);
    if (reserved)
        kmm_unreserve_pages(mm, st.area[0].start + 16 * st.page_size, reserved);
    free(live);
}

/* ---- printing -------------------------------------------------------------- */

static unsigned top_order(const struct kmm_page_stats *st)
{
    unsigned top = 10;
    for (unsigned a = 0; a < st->nr_areas; a++)
        for (unsigned o = 0; o <= KMM_MAX_ORDER; o++)
            if (st->nr_free[a][o] && o > top)
                top = o;
    return top;
}

static void print_page_stats(FILE *f, const struct kmm_page_stats *st, bool default_areas)
{
    fprintf(f, "Page allocator: page size %zu, %zu pages (", st->page_size, st->total_pages);
    print_size(f, (uint64_t)st->total_pages * st->page_size);
    fprintf(f, ")\n  allocated %zu, free %zu (of which %zu in per-thread caches), reserved %zu\n",
            st->allocated_pages, st->free_pages, st->cached_pages, st->reserved_pages);
    fprintf(f, "  resident %zu pages (", st->resident_pages);
    print_size(f, (uint64_t)st->resident_pages * st->page_size);
    fprintf(f, ")\n");
    unsigned top = top_order(st);
    fprintf(f, "  free blocks per order (like /proc/buddyinfo):\n  %-22s", "area");
    for (unsigned o = 0; o <= top; o++)
        fprintf(f, " %5u", o);
    fprintf(f, "\n");
    for (unsigned a = 0; a < st->nr_areas; a++) {
        char label[64];
        snprintf(label, sizeof(label), "%u %s", a, area_name(st->nr_areas, a, default_areas));
        fprintf(f, "  %-22s", label);
        for (unsigned o = 0; o <= top; o++)
            fprintf(f, " %5zu", st->nr_free[a][o]);
        fprintf(f, "\n");
    }
    fprintf(f, "  areas:\n");
    for (unsigned a = 0; a < st->nr_areas; a++) {
        const struct kmm_area_stats *as = &st->area[a];
        fprintf(f, "    %u [%#llx, %#llx) ", a, (unsigned long long)as->start, (unsigned long long)as->end);
        print_size(f, as->end - as->start);
        fprintf(f, ": %zu pages, %zu free, %zu reserved\n", as->total_pages, as->free_pages, as->reserved_pages);
    }
}

static void print_page_stats_json(FILE *f, const struct kmm_page_stats *st)
{
    fprintf(f, "{\"page_size\":%zu,\"total_pages\":%zu,\"free_pages\":%zu,\"cached_pages\":%zu,"
               "\"allocated_pages\":%zu,\"reserved_pages\":%zu,\"resident_pages\":%zu,"
               "\"areas\":[",
            st->page_size, st->total_pages, st->free_pages, st->cached_pages, st->allocated_pages,
            st->reserved_pages, st->resident_pages);
    for (unsigned a = 0; a < st->nr_areas; a++) {
        const struct kmm_area_stats *as = &st->area[a];
        fprintf(f, "%s{\"start\":%llu,\"end\":%llu,\"total_pages\":%zu,\"free_pages\":%zu,\"reserved_pages\":%zu,\"nr_free\":[",
                a ? "," : "", (unsigned long long)as->start, (unsigned long long)as->end, as->total_pages,
                as->free_pages, as->reserved_pages);
        for (unsigned o = 0; o <= KMM_MAX_ORDER; o++)
            fprintf(f, "%s%zu", o ? "," : "", st->nr_free[a][o]);
        fprintf(f, "]}");
    }
    fprintf(f, "]}");
}

/* ---- commands -------------------------------------------------------------- */

static uint64_t parse_size(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    switch (*end) {
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': v <<= 20; end++; break;
    case 'g': case 'G': v <<= 30; end++; break;
    case 't': case 'T': v <<= 40; end++; break;
    default: break;
    }
    if (errno || *end) {
        fprintf(stderr, "kmm: bad size '%s'\n", s);
        exit(2);
    }
    return v;
}

struct options {
    struct kmm_config cfg;
    uint64_t limits[KMM_MAX_AREAS];
    bool json;
};

static void parse_options(int argc, char **argv, struct options *o)
{
    memset(o, 0, sizeof(*o));
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            o->json = true;
        } else if (!strcmp(argv[i], "--page-size") && i + 1 < argc) {
            o->cfg.page_size = (size_t)parse_size(argv[++i]);
        } else if (!strcmp(argv[i], "--mem-size") && i + 1 < argc) {
            o->cfg.mem_size = parse_size(argv[++i]);
        } else if (!strcmp(argv[i], "--areas") && i + 1 < argc) {
            char *list = argv[++i], *save = NULL;
            for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                if (o->cfg.nr_areas == KMM_MAX_AREAS) {
                    fprintf(stderr, "kmm: at most %d areas\n", KMM_MAX_AREAS);
                    exit(2);
                }
                o->limits[o->cfg.nr_areas++] = parse_size(tok);
            }
            o->cfg.area_limits = o->limits;
        } else {
            fprintf(stderr, "kmm: unknown option '%s'\n", argv[i]);
            exit(2);
        }
    }
}

static struct kmm *create_or_die(const struct kmm_config *cfg)
{
    struct kmm *mm = kmm_create(cfg);
    if (!mm) {
        fprintf(stderr, "kmm: cannot create the memory system: %s\n", strerror(errno));
        exit(1);
    }
    return mm;
}

static int cmd_demo(int argc, char **argv)
{
    struct options o;
    parse_options(argc, argv, &o);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct kmm *mm = create_or_die(&o.cfg);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    printf("kmm demo: a memory system of ");
    print_size(stdout, (uint64_t)st.total_pages * st.page_size);
    printf(" (sparse memfd: costs nothing until touched), created in %.2f ms, %zu pages resident\n\n",
           (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-6, st.resident_pages);

    printf("== 1. Page allocator (buddy orders over areas, one metadata byte per page)\n");
    void **live;
    size_t n;
    struct workload w = run_workload(mm, &live, &n);
    printf("workload: %u allocations, %u frees (orders 0..10 over every area, two threads churning orders 0..3),\n"
           "          %u exact sizes (tail given back), %u aligned to 1-4 MiB (nothing wasted), %u pages reserved,\n"
           "          %u refused because the accepted areas were full; %.1f ms\n\n",
           w.allocs, w.frees, w.exact, w.aligned, w.reserved, w.failed, w.seconds * 1e3);
    kmm_page_stats(mm, &st);
    print_page_stats(stdout, &st, o.cfg.area_limits == NULL);

    void *p = kmm_alloc_pages_exact(mm, 20 << 10, 0);
    printf("\n  kmm_alloc_pages_exact(20 KiB) holds %zu pages of %zu bytes (a power-of-two block would hold %u)\n",
           kmm_page_alloc_size(mm, p), st.page_size, 1u << (unsigned)(64 - __builtin_clzll(((20u << 10) - 1) / st.page_size)));
    kmm_free_pages(mm, p);

    release_workload(mm, live, n, w.reserved);
    kmm_drain(mm);
    kmm_page_stats(mm, &st);
    printf("\nafter freeing everything and kmm_drain: %zu of %zu pages free, %zu resident (",
           st.free_pages, st.total_pages, st.resident_pages);
    print_size(stdout, (uint64_t)st.resident_pages * st.page_size);
    printf(")\n");

    printf("\n== Layers not built yet: small objects (kmm_malloc), vmalloc, zsmalloc, unmapped cache\n");
    int rc = kmm_check(mm);
    printf("\nkmm_check: %s\n", rc == 0 ? "all invariants hold" : "VIOLATION (see above)");
    kmm_destroy(mm);
    return rc == 0 ? 0 : 1;
}

static int cmd_stats(int argc, char **argv)
{
    struct options o;
    parse_options(argc, argv, &o);
    struct kmm *mm = create_or_die(&o.cfg);
    void **live;
    size_t n;
    struct workload w = run_workload(mm, &live, &n);
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    int rc = kmm_check(mm);
    if (o.json) {
        printf("{\"workload\":{\"allocs\":%u,\"frees\":%u,\"exact\":%u,\"aligned\":%u,\"reserved\":%u,\"failed\":%u},"
               "\"pages\":",
               w.allocs, w.frees, w.exact, w.aligned, w.reserved, w.failed);
        print_page_stats_json(stdout, &st);
        printf(",\"check\":%s}\n", rc == 0 ? "true" : "false");
    } else {
        printf("after the workload (%u allocations, %u frees, %u live blocks):\n", w.allocs, w.frees, (unsigned)n);
        print_page_stats(stdout, &st, o.cfg.area_limits == NULL);
        printf("kmm_check: %s\n", rc == 0 ? "all invariants hold" : "VIOLATION");
    }
    release_workload(mm, live, n, w.reserved);
    kmm_destroy(mm);
    return rc == 0 ? 0 : 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: kmm demo [options]\n"
               "       kmm stats [--json] [options]\n"
               "options: --page-size N  --mem-size N[K|M|G|T]  --areas LIMIT1,LIMIT2,...\n");
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "demo"))
        return cmd_demo(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "stats"))
        return cmd_stats(argc, argv);
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
