/* Helpers for the programs the shim's tests run (tests/shim/): each program
 * checks what it computed and exits 1 with a line on stderr at the first
 * wrong value. They use only libc, so that they run on any malloc (the
 * tests run them under LD_PRELOAD=libkmm-malloc.so; they pass on glibc too). */
#ifndef KMM_SHIM_PROG_H
#define KMM_SHIM_PROG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define CHECK(cond, ...)                                                         \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                        \
            fputc('\n', stderr);                                                 \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

/* The byte at offset i of a buffer filled for seed: differs between seeds
 * and along the buffer, so a swapped or shifted buffer is caught. */
static inline unsigned char prog_byte(size_t i, uint32_t seed)
{
    uint32_t x = (uint32_t)i * 2654435761u ^ seed * 2246822519u;
    return (unsigned char)(x ^ x >> 13 ^ x >> 24);
}

static inline void prog_fill(void *p, size_t len, uint32_t seed)
{
    unsigned char *b = p;
    for (size_t i = 0; i < len; i++)
        b[i] = prog_byte(i, seed);
}

/* Offset of the first wrong byte, or len if all are right. */
static inline size_t prog_verify(const void *p, size_t len, uint32_t seed)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < len; i++)
        if (b[i] != prog_byte(i, seed))
            return i;
    return len;
}

/* A small deterministic generator (xorshift32), one per thread. */
static inline uint32_t prog_rand(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

/* Mixed sizes as programs ask: mostly small, some of a few pages, a few
 * large. */
static inline size_t prog_size(uint32_t *state)
{
    uint32_t r = prog_rand(state);
    switch (r % 16) {
    case 0: return 4096 + r % 60000;        /* a few pages */
    case 1: return (r >> 8) % 2 ? 4096 : 4097;   /* either side of a page */
    default: return 1 + (r >> 4) % 1024;   /* small */
    }
}

/* Resident set size in bytes, from /proc/self/statm. */
static inline size_t prog_rss(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

#endif
