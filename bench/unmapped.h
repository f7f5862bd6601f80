/* bench/unmapped.h - the sections of bench/unmapped (see bench/README.md):
 * unmapped.c runs them in order and owns main and the options; each other
 * file is one section, comparing a layer with what a user would do by hand.
 * Each prints its human-readable table to stdout, or with json its part of
 * one JSON object ("name": {...}, with the trailing comma when more
 * follow). */
#ifndef KMM_BENCH_UNMAPPED_H
#define KMM_BENCH_UNMAPPED_H

#include <stdbool.h>

struct unmapped_opts {
    int reps;          /* repetitions; figures are medians */
    bool json;
    bool quick;        /* smaller counts (make test smoke run) */
};

/* unmapped.c: the direct map's fragmentation, the naive way and the cache's. */
void bench_unmapped_fragmentation(const struct unmapped_opts *o);
/* unmapped_secret.c: kmm_secret_alloc against guarded, locked allocations by hand (libsodium-style). */
void bench_unmapped_secret(const struct unmapped_opts *o);
/* unmapped_execmem.c: kmm_execmem_* against mmap + mprotect per piece of code. */
void bench_unmapped_execmem(const struct unmapped_opts *o);

#endif
