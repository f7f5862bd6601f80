/* tool.h - what the files of the kmm tool share.
 *
 *   kmm.c        main, options, `kmm demo`, `kmm stats` and `kmm map` for the page, slab and vmalloc layers
 *                (every layer's stats but zsmalloc's are the library's: kmm_stats_print)
 *   corpus.c     page sources: the pages of files, the anonymous resident pages of a process
 *   zs.c         the zsmalloc layer and the compressed page store in `kmm demo` and `kmm stats`
 *   zstore.c     `kmm zstore`: what zram would hold for given files or a running process
 *   map.c        the picture of physical memory (`kmm map`, the demo's section 5): SVG
 *   unmapped.c   pages out of the direct map (unmapped cache, secret memory, execmem)
 *                in `kmm demo` and `kmm stats`
 *   shim_demo.c  real programs on libkmm-malloc in `kmm demo`
 */
#ifndef KMM_TOOL_H
#define KMM_TOOL_H

#include <kmm.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* "12.3 MiB": bytes in the largest unit that keeps the number at least 1. */
void print_size(FILE *f, uint64_t bytes);

/* kmm_stats_print of these layers (KMM_STATS_*) to stdout, after what
 * stdout holds; a failed write is reported on stderr. */
void print_kmm_stats(struct kmm *mm, unsigned flags);

/* Seconds on the monotonic clock (for durations). */
double now_seconds(void);

/* A byte count with an optional K, M, G or T suffix; exits with status 2
 * and a message on anything else. */
uint64_t parse_size(const char *s);

/* ---- page sources (corpus.c) -------------------------------------------------
 *
 * A page source counts its pages when opened, then hands them out in order,
 * a batch at a time, never more than it counted: a store sized by
 * page_source_count holds every page read. Pages that vanish between the
 * count and the read (a file truncated, a process unmapping memory) are
 * simply not read, and counted in page_source_stats. */

struct page_source;

/* How much of a tree of files to take (0 = no bound). */
struct files_bound {
    uint64_t max_pages;        /* pages in all */
    uint64_t max_file_pages;   /* pages of one file: a sample of many files rather than all of a few */
};

/* The pages of the regular files at paths (directories walked recursively,
 * symbolic links inside them not followed), page_size bytes each, the last
 * page of a file zero padded. A path that does not exist or cannot be read
 * is an error: NULL, with the reason written to err. Unreadable files
 * inside a directory are skipped and counted. */
struct page_source *page_source_files(char *const *paths, int npaths, size_t page_size,
                                      const struct files_bound *bound, char *err, size_t errlen);

/* The anonymous resident pages of process pid: its private anonymous
 * mappings, heap and stacks (file-backed mappings, [vvar], [vdso] and
 * [vsyscall] skipped), only the pages present in RAM (the present bit of
 * /proc/PID/pagemap, which needs no privilege), read through /proc/PID/mem.
 * page_size must be the host's. NULL with the reason in err when there is
 * no such process or kmm may not read its memory (it needs ptrace access:
 * the same user, or root). */
struct page_source *page_source_process(pid_t pid, size_t page_size, char *err, size_t errlen);

/* Pages the source holds (counted when it was opened). */
uint64_t page_source_count(const struct page_source *src);

/* Fills buf with up to max pages; returns how many, 0 at the end. */
size_t page_source_read(struct page_source *src, void *buf, size_t max);

struct page_source_stats {
    uint64_t files;            /* regular files taken (files sources) */
    uint64_t skipped_files;    /* unreadable files skipped */
    uint64_t mappings;         /* mappings taken (process sources) */
    uint64_t vanished_pages;   /* counted but gone when read */
    uint64_t pages_read;
};
void page_source_stats(const struct page_source *src, struct page_source_stats *st);

void page_source_close(struct page_source *src);

/* Reads a sample of a tree: at most max_pages pages of page_size bytes from
 * dir, at most max_file_pages of each file, into *pages (malloc'd); returns
 * the pages read (0 if dir is missing or empty). For the demo and stats
 * workloads. */
size_t read_sample(const char *dir, size_t page_size, size_t max_pages, size_t max_file_pages, unsigned char **pages);

/* ---- zsmalloc and the compressed page store in demo and stats (zs.c) ----------- */

/* A zstore holding real pages (files, same-filled pages, random pages), a
 * quarter discarded and compacted, and a pool of raw objects of random
 * sizes with every other one freed: for `kmm stats`. */
struct zs_work {
    struct kmm_zstore *store;
    struct kmm_zspool *objects;
    uint64_t *handles;
    size_t nhandles;
    uint64_t file_pages, same_pages, random_pages, discarded;
    size_t compacted;
    double seconds;
};
struct zs_work run_zs_workload(struct kmm *mm);
void release_zs_workload(struct zs_work *w);

/* Every pool of mm: the non-empty classes (like Linux's
 * /sys/kernel/debug/zsmalloc/<pool>/classes), then the pool's totals. */
void print_zs_stats(FILE *f, struct kmm *mm);
void print_zs_stats_json(FILE *f, struct kmm *mm);

/* A store's mm_stat (zram's order) and the rest of its stats. */
void print_zstore_stats(FILE *f, struct kmm_zstore *zs);
void print_zstore_stats_json(FILE *f, struct kmm_zstore *zs);

/* The demo's section for this layer: real pages stored with LZ4 and zstd,
 * half discarded, compacted. */
void demo_zsmalloc(struct kmm *mm);

/* ---- the picture of physical memory (map.c) ----------------------------------- */

/* A memory system drawn as one panel; the counts are filled by map_write_svg. */
struct map_panel {
    struct kmm *mm;
    const char *label;
    size_t pages;                         /* pages of memory drawn (not ABSENT) */
    size_t count[KMM_PAGE_NR_KINDS];      /* pages of each kind in the picture */
    size_t splits;                        /* split points: a page in the direct map beside one out of it */
    size_t mappings_seen;                 /* the direct map's mappings those make: ranges + splits */
    size_t mappings;                      /* kmm_unmapped_stats' direct_map_mappings */
};

/* The scale of a picture. */
struct map_geometry {
    size_t page_size, pages_per_cell, rows;
    uint64_t row_bytes;
};

/* Writes the physical memory of n memory systems (one page size) to path
 * as SVG, panels side by side at one scale, with a legend; fills each
 * panel's counts and *geo (if not NULL). 0, or -1 with errno set. Reads
 * kmm_page_kinds of all memory: O(pages); the file is O(runs of a kind). */
int map_write_svg(const char *path, const char *title, struct map_panel *panels, unsigned n, struct map_geometry *geo);

/* ---- pages out of the direct map in demo, stats and map (unmapped.c) ------------ */

#define UNMAPPED_WORK_PAGES 24
#define UNMAPPED_WORK_CODE 8

/* A few unmapped allocations of orders 0..2 (every third freed) and one
 * KMM_UNMAPPED_NOCACHE page, a secret, execmem pieces (every fourth freed);
 * refused counts the calls that were refused (ENOSYS on a platform without
 * the hooks, layers not built, RLIMIT_MEMLOCK). */
struct unmapped_work {
    struct kmm *mm;
    kmm_phys_t pages[UNMAPPED_WORK_PAGES + 1];
    size_t npages;
    void *secret;
    void *code[UNMAPPED_WORK_CODE];
    size_t ncode;
    unsigned refused;
};
struct unmapped_work run_unmapped_workload(struct kmm *mm);
void release_unmapped_workload(struct unmapped_work *w);

/* The demo's section 5 on two memory systems of its own with this page size
 * (0: default); the picture goes to out_dir (NULL: the current directory).
 * 0, or 1 if kmm_check failed on one of them. */
int demo_unmapped(size_t page_size, const char *out_dir);

/* ---- kmm zstore (zstore.c) ---------------------------------------------------- */

int cmd_zstore(int argc, char **argv);

/* ---- the malloc shim (shim_demo.c) ---------------------------------------- */

/* The demo's section 6: a shell pipeline and a double free on libkmm-malloc. */
void demo_shim(const char *self);
/* `kmm double-free`: frees a pointer twice (what section 6 runs on the shim). */
int cmd_double_free(void);

#endif
