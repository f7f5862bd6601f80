/* bench/corpus.h - corpora of 4 KiB pages made on the machine itself, for
 * bench/zsmalloc: the anonymous memory of processes the program starts and
 * stops (python3, GNU sort, the C compiler), and files every Debian machine
 * has (binaries, documentation, already-compressed files). Nothing is
 * downloaded. See bench/README.md, "bench/zsmalloc".
 */
#ifndef KMM_BENCH_CORPUS_H
#define KMM_BENCH_CORPUS_H

#include <stdbool.h>
#include <stddef.h>

#define CORPUS_PAGE ((size_t)4096)

struct corpus {
    const char *name;        /* "python", "sort", "cc", "bin", "doc", "gz" */
    unsigned char *pages;    /* npages * CORPUS_PAGE bytes (malloc) */
    size_t npages;
    char source[160];        /* where the pages came from, for the header */
};

/* The corpora corpus_make knows, in the order a default run makes them. */
extern const char *const corpus_names[];
extern const int corpus_count;

/* Makes the corpus called name with at most max_bytes of pages (rounded
 * down to pages) into *c. Process corpora start the program, let it build
 * its memory, stop it with SIGSTOP, copy its present anonymous pages
 * (/proc/PID/maps, pagemap, mem) and kill it: seconds to a minute. File
 * corpora read files in a fixed shuffled order (the same every run). False
 * (after a message on stderr) when name is unknown or the corpus cannot be
 * made here; the program goes on without it. verbose prints progress on
 * stderr. */
bool corpus_make(const char *name, size_t max_bytes, bool verbose, struct corpus *c);

void corpus_free(struct corpus *c);

#endif
