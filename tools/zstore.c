/* zstore.c - `kmm zstore`: what zram would hold for given files or for the
 * anonymous memory of a running process, measured by storing every page
 * through kmm's compressed page store (one store per algorithm). */
#include "tool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void zstore_usage(FILE *f)
{
    fprintf(f,
            "usage: kmm zstore [--algo lz4|zstd|both] [--limit BYTES] [--page-size N] PATH...\n"
            "       kmm zstore [--algo lz4|zstd|both] [--limit BYTES] --pid PID\n"
            "\n"
            "Stores pages through kmm's zram-like compressed store and prints what zram would hold:\n"
            "mm_stat (orig_data_size compr_data_size mem_used_total mem_limit mem_used_max same_pages\n"
            "pages_compacted huge_pages), compression ratio, memory saved, density, and the time taken,\n"
            "for each algorithm.\n"
            "\n"
            "  PATH...        the pages of these files; directories are read recursively (symbolic links\n"
            "                 inside them not followed), the last page of a file is zero padded\n"
            "  --pid PID      the anonymous memory the process has in RAM: its private anonymous mappings,\n"
            "                 heap and stacks (file-backed mappings skipped), only the pages present\n"
            "                 (/proc/PID/pagemap), read through /proc/PID/mem; needs ptrace access to the\n"
            "                 process (the same user, or root)\n"
            "  --algo A       lz4, zstd, or both (the default): one store each\n"
            "  --limit BYTES  the store's memory limit (zram's mem_limit; K, M, G suffixes): writes that\n"
            "                 would pass it are refused and counted\n"
            "  --page-size N  the page size for files (default 4096); a process's pages are the host's\n");
}

static double thread_cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

struct algo_run {
    const char *algo;
    struct kmm_zstore *zs;
    double seconds;      /* in kmm_zstore_write, wall clock */
    double cpu_seconds;  /* the same on this thread's CPU clock: what a loaded machine does not inflate */
    uint64_t refused;    /* -KMM_ENOSPC: the limit */
    uint64_t failed;     /* any other error */
};

/* One column per algorithm: a label, then a cell for each. */
static void print_row(const char *label, struct algo_run *runs, unsigned nruns, const char *note,
                      void (*cell)(char *buf, size_t len, const struct kmm_zstore_stats *st, const struct algo_run *r))
{
    printf("  %-18s", label);
    for (unsigned i = 0; i < nruns; i++) {
        struct kmm_zstore_stats st;
        kmm_zstore_stats(runs[i].zs, &st);
        char buf[64];
        cell(buf, sizeof(buf), &st, &runs[i]);
        printf(" %16s", buf);
    }
    printf("%s%s\n", note[0] ? "   " : "", note);
}

static void size_cell(char *buf, size_t len, uint64_t bytes)
{
    char *text = NULL;
    size_t text_len = 0;
    FILE *f = open_memstream(&text, &text_len);
    if (!f) {
        snprintf(buf, len, "%llu", (unsigned long long)bytes);
        return;
    }
    print_size(f, bytes);
    fclose(f);
    snprintf(buf, len, "%s", text);
    free(text);
}

#define SIZE_CELL(name, field)                                                                              \
    static void name(char *buf, size_t len, const struct kmm_zstore_stats *st, const struct algo_run *r)    \
    {                                                                                                       \
        (void)r;                                                                                            \
        size_cell(buf, len, st->field);                                                                     \
    }
SIZE_CELL(cell_orig, orig_data_size)
SIZE_CELL(cell_compr, compr_data_size)
SIZE_CELL(cell_used, mem_used_total)
SIZE_CELL(cell_used_max, mem_used_max)

#define COUNT_CELL(name, expr)                                                                              \
    static void name(char *buf, size_t len, const struct kmm_zstore_stats *st, const struct algo_run *r)    \
    {                                                                                                       \
        (void)st;                                                                                           \
        (void)r;                                                                                            \
        snprintf(buf, len, "%llu", (unsigned long long)(expr));                                             \
    }
COUNT_CELL(cell_same, st->same_pages)
COUNT_CELL(cell_compacted, st->pages_compacted)
COUNT_CELL(cell_huge, st->huge_pages)
COUNT_CELL(cell_refused, r->refused)
COUNT_CELL(cell_failed, r->failed)

static void cell_limit(char *buf, size_t len, const struct kmm_zstore_stats *st, const struct algo_run *r)
{
    (void)r;
    if (st->mem_limit)
        size_cell(buf, len, st->mem_limit);
    else
        snprintf(buf, len, "none");
}

static void cell_ratio(char *buf, size_t len, const struct kmm_zstore_stats *st, const struct algo_run *r)
{
    (void)r;
    snprintf(buf, len, "%.2f", st->compr_data_size ? (double)st->orig_data_size / (double)st->compr_data_size : 0.0);
}

static void cell_saved(char *buf, size_t len, const struct kmm_zstore_stats *st, const struct algo_run *r)
{
    (void)r;
    if (st->orig_data_size >= st->mem_used_total)
        size_cell(buf, len, st->orig_data_size - st->mem_used_total);
    else
        snprintf(buf, len, "none");
}

static void cell_saved_share(char *buf, size_t len, const struct kmm_zstore_stats *st, const struct algo_run *r)
{
    (void)r;
    double saved = st->orig_data_size ? 1.0 - (double)st->mem_used_total / (double)st->orig_data_size : 0.0;
    snprintf(buf, len, "%.1f%%", 100.0 * saved);
}

static void cell_density(char *buf, size_t len, const struct kmm_zstore_stats *st, const struct algo_run *r)
{
    (void)r;
    snprintf(buf, len, "%.3f", st->mem_used_total ? (double)st->compr_data_size / (double)st->mem_used_total : 0.0);
}

static void cell_time(char *buf, size_t len, const struct kmm_zstore_stats *st, const struct algo_run *r)
{
    (void)st;
    snprintf(buf, len, "%.3f s", r->seconds);
}

static void cell_cpu(char *buf, size_t len, const struct kmm_zstore_stats *st, const struct algo_run *r)
{
    (void)st;
    snprintf(buf, len, "%.3f s", r->cpu_seconds);
}

static void cell_rate(char *buf, size_t len, const struct kmm_zstore_stats *st, const struct algo_run *r)
{
    char size[48];
    size_cell(size, sizeof(size), r->cpu_seconds > 0 ? (uint64_t)((double)st->orig_data_size / r->cpu_seconds) : 0);
    snprintf(buf, len, "%s/s", size);
}

static void print_results(struct algo_run *runs, unsigned nruns, bool limited)
{
    for (unsigned i = 0; i < nruns; i++) {
        struct kmm_zstore_stats st;
        kmm_zstore_stats(runs[i].zs, &st);
        printf("%-5s mm_stat %llu %llu %llu %llu %llu %llu %llu %llu\n", runs[i].algo,
               (unsigned long long)st.orig_data_size, (unsigned long long)st.compr_data_size,
               (unsigned long long)st.mem_used_total, (unsigned long long)st.mem_limit,
               (unsigned long long)st.mem_used_max, (unsigned long long)st.same_pages,
               (unsigned long long)st.pages_compacted, (unsigned long long)st.huge_pages);
    }
    printf("\n  %-18s", "what zram holds");
    for (unsigned i = 0; i < nruns; i++)
        printf(" %16s", runs[i].algo);
    printf("\n");
    print_row("orig_data_size", runs, nruns, "", cell_orig);
    print_row("compr_data_size", runs, nruns, "", cell_compr);
    print_row("mem_used_total", runs, nruns, "(pages and metadata of the pool)", cell_used);
    print_row("mem_limit", runs, nruns, "", cell_limit);
    print_row("mem_used_max", runs, nruns, "", cell_used_max);
    print_row("same_pages", runs, nruns, "(one repeated word: no memory at all)", cell_same);
    print_row("pages_compacted", runs, nruns, "", cell_compacted);
    print_row("huge_pages", runs, nruns, "(did not compress: stored whole)", cell_huge);
    print_row("compression ratio", runs, nruns, "(orig_data_size / compr_data_size)", cell_ratio);
    print_row("memory saved", runs, nruns, "(orig_data_size - mem_used_total)", cell_saved);
    print_row("", runs, nruns, "(of orig_data_size)", cell_saved_share);
    print_row("density", runs, nruns, "(compr_data_size / mem_used_total)", cell_density);
    print_row("time", runs, nruns, "(compressing and storing, wall clock)", cell_time);
    print_row("CPU time", runs, nruns, "(the same, this thread's CPU)", cell_cpu);
    print_row("", runs, nruns, "(of orig_data_size per CPU second)", cell_rate);
    bool refused = false, failed = false;
    for (unsigned i = 0; i < nruns; i++) {
        refused |= runs[i].refused != 0;
        failed |= runs[i].failed != 0;
    }
    if (limited || refused)
        print_row("refused (limit)", runs, nruns, "(writes that would pass mem_limit)", cell_refused);
    if (failed)
        print_row("failed", runs, nruns, "(out of memory)", cell_failed);
}

/* Stores every page of src in every run's store, timing each store's writes
 * alone (a batch at a time, so the clock is read rarely). */
static void store_pages(struct page_source *src, struct algo_run *runs, unsigned nruns, size_t page_size)
{
    enum { BATCH = 256 };
    unsigned char *buf = malloc(BATCH * page_size);
    if (!buf) {
        fprintf(stderr, "kmm zstore: out of memory\n");
        exit(1);
    }
    uint64_t index = 0;
    for (size_t n; (n = page_source_read(src, buf, BATCH)) != 0; index += n)
        for (unsigned a = 0; a < nruns; a++) {
            double t0 = now_seconds(), c0 = thread_cpu_seconds();
            for (size_t i = 0; i < n; i++) {
                int rc = kmm_zstore_write(runs[a].zs, index + i, buf + i * page_size);
                runs[a].refused += rc == -KMM_ENOSPC;
                runs[a].failed += rc != 0 && rc != -KMM_ENOSPC;
            }
            runs[a].seconds += now_seconds() - t0;
            runs[a].cpu_seconds += thread_cpu_seconds() - c0;
        }
    free(buf);
}

static void print_source(struct page_source *src, pid_t pid, char *const *paths, int npaths, size_t page_size,
                         double seconds)
{
    struct page_source_stats st;
    page_source_stats(src, &st);
    if (pid) {
        char path[64], comm[64] = "";
        snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
        FILE *f = fopen(path, "re");
        if (f) {
            if (fgets(comm, sizeof(comm), f))
                comm[strcspn(comm, "\n")] = 0;
            fclose(f);
        }
        printf("process %d (%s): %llu anonymous pages in RAM (", (int)pid, comm, (unsigned long long)st.pages_read);
        print_size(stdout, st.pages_read * page_size);
        printf(") in %llu mappings", (unsigned long long)st.mappings);
    } else {
        printf("%llu pages of %zu bytes (", (unsigned long long)st.pages_read, page_size);
        print_size(stdout, st.pages_read * page_size);
        printf(") from %llu files in ", (unsigned long long)st.files);
        for (int i = 0; i < npaths && i < 3; i++)
            printf("%s%s", i ? ", " : "", paths[i]);
        if (npaths > 3)
            printf(" and %d more", npaths - 3);
        if (st.skipped_files)
            printf(" (%llu unreadable files or directories skipped)", (unsigned long long)st.skipped_files);
    }
    if (st.vanished_pages)
        printf(", %llu more gone when read", (unsigned long long)st.vanished_pages);
    printf("; read and stored in %.2f s\n\n", seconds);
}

int cmd_zstore(int argc, char **argv)
{
    const char *algo = "both";
    uint64_t limit = 0;
    bool limited = false;
    size_t page_size = 0;
    pid_t pid = 0;
    char **paths = calloc((size_t)argc, sizeof(*paths));
    int npaths = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            zstore_usage(stdout);
            free(paths);
            return 0;
        } else if (!strcmp(argv[i], "--algo") && i + 1 < argc) {
            algo = argv[++i];
        } else if (!strcmp(argv[i], "--limit") && i + 1 < argc) {
            limit = parse_size(argv[++i]);
            limited = true;
        } else if (!strcmp(argv[i], "--page-size") && i + 1 < argc) {
            page_size = (size_t)parse_size(argv[++i]);
        } else if (!strcmp(argv[i], "--pid") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v <= 0 || v > INT32_MAX) {
                fprintf(stderr, "kmm zstore: bad pid '%s'\n", argv[i]);
                return 2;
            }
            pid = (pid_t)v;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "kmm zstore: unknown option '%s'\n", argv[i]);
            zstore_usage(stderr);
            return 2;
        } else {
            paths[npaths++] = argv[i];
        }
    }
    const char *algos[2];
    unsigned nalgos = 0;
    if (!strcmp(algo, "both") || !strcmp(algo, "lz4"))
        algos[nalgos++] = "lz4";
    if (!strcmp(algo, "both") || !strcmp(algo, "zstd"))
        algos[nalgos++] = "zstd";
    if (nalgos == 0 || (pid && npaths) || (!pid && !npaths)) {
        if (nalgos == 0)
            fprintf(stderr, "kmm zstore: unknown algorithm '%s' (lz4, zstd or both)\n", algo);
        else
            fprintf(stderr, "kmm zstore: give %s\n", pid ? "--pid or paths, not both" : "paths or --pid");
        zstore_usage(stderr);
        free(paths);
        return 2;
    }
    if (pid) {
        size_t host = (size_t)sysconf(_SC_PAGESIZE);
        if (page_size && page_size != host) {
            fprintf(stderr, "kmm zstore: a process's pages are the host's (%zu bytes): no --page-size with --pid\n",
                    host);
            free(paths);
            return 2;
        }
        page_size = host;
    }

    struct kmm_config cfg = { .page_size = page_size };
    struct kmm *mm = kmm_create(&cfg);
    if (!mm) {
        fprintf(stderr, "kmm zstore: cannot create the memory system: %s\n", strerror(errno));
        free(paths);
        return 1;
    }
    struct kmm_page_stats ps;
    kmm_page_stats(mm, &ps);
    page_size = ps.page_size;

    double t0 = now_seconds();
    char err[512];
    struct page_source *src = pid ? page_source_process(pid, page_size, err, sizeof(err))
                                  : page_source_files(paths, npaths, page_size, NULL, err, sizeof(err));
    if (!src) {
        fprintf(stderr, "kmm zstore: %s\n", err);
        kmm_destroy(mm);
        free(paths);
        return 1;
    }
    uint64_t count = page_source_count(src);
    if (count == 0) {
        printf("no pages to store (%s)\n", pid ? "the process has no anonymous memory in RAM" : "empty files only");
        page_source_close(src);
        kmm_destroy(mm);
        free(paths);
        return 0;
    }
    struct algo_run runs[2] = { { 0 } };
    for (unsigned a = 0; a < nalgos; a++) {
        runs[a].algo = algos[a];
        runs[a].zs = kmm_zstore_create(mm, algos[a], count);
        if (!runs[a].zs) {
            fprintf(stderr, "kmm zstore: cannot create a %s store of %llu pages: %s\n", algos[a],
                    (unsigned long long)count, strerror(errno));
            exit(1);
        }
        if (limited)
            kmm_zstore_set_limit(runs[a].zs, limit);
    }
    store_pages(src, runs, nalgos, page_size);
    print_source(src, pid, paths, npaths, page_size, now_seconds() - t0);
    print_results(runs, nalgos, limited);

    for (unsigned a = 0; a < nalgos; a++)
        kmm_zstore_destroy(runs[a].zs);
    page_source_close(src);
    kmm_destroy(mm);
    free(paths);
    return 0;
}
