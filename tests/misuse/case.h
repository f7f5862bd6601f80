/* case.h - what every misuse program shares.
 *
 * Each program in cases/ commits one allocator misuse (or checks one
 * promise) and is run in a child by misuse_run under some malloc. Before the
 * bad call it names the pointer it is about to misuse on stderr, so that the
 * runner can check that an allocator's message names the same address; the
 * runner ignores this line when it looks for the allocator's own message.
 *
 * Exit statuses: 0 the program ran to its end (the misuse went unnoticed, or
 * the promise held); CASE_BROKEN a promise did not hold (memory not zero, an
 * overflow not refused); CASE_UNSUPPORTED the allocator lacks the function
 * the case is about (free_sized under glibc 2.36).
 */
#ifndef MISUSE_CASE_H
#define MISUSE_CASE_H

#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#define CASE_BROKEN 1
#define CASE_SETUP_FAILED 2
#define CASE_UNSUPPORTED 3

/* A size served by every allocator's small-object path, and one above every
 * allocator's page-sized path (kmm: above a page, so with a guard page). */
#define SMALL_SIZE 16
#define LARGE_SIZE (256 * 1024)

static inline void announce_misuse(const void *p)
{
    fprintf(stderr, "misuse at %p\n", p);
}

static inline void *checked_malloc(size_t size)
{
    void *p = malloc(size);
    if (!p) {
        fprintf(stderr, "malloc(%zu) failed\n", size);
        exit(CASE_SETUP_FAILED);
    }
    return p;
}

/* C23's sized frees, looked up at run time: glibc 2.36 has neither, and the
 * programs must start under every allocator. */
typedef void free_sized_fn(void *p, size_t size);
typedef void free_aligned_sized_fn(void *p, size_t align, size_t size);

static inline void *require_symbol(const char *name)
{
    void *f = dlsym(RTLD_DEFAULT, name);
    if (!f) {
        fprintf(stderr, "%s: not provided by this allocator\n", name);
        exit(CASE_UNSUPPORTED);
    }
    return f;
}

#endif
