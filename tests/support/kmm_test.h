/* Helpers shared by kmm's tests. */
#ifndef KMM_TEST_H
#define KMM_TEST_H

#include <kmm.h>
#include <stddef.h>
#include <stdint.h>

/* Runs fn(arg) in a child process and checks that it aborts (SIGABRT) and
 * that what it wrote to stderr contains needle. Returns 0 if so; otherwise
 * prints what happened instead and returns -1. */
int kmm_test_expect_abort(void (*fn)(void *arg), void *arg, const char *needle);

/* A hosted memory system with the given page size and memory (0 = default)
 * and the default areas; aborts the test program if it cannot be made. */
struct kmm *kmm_test_create(size_t page_size, uint64_t mem_size);

/* Resident set size of this process in bytes (from /proc/self/statm). */
size_t kmm_test_rss(void);

/* A seed for randomized tests: $KMM_SEED if set, else the time; printed. */
uint64_t kmm_test_seed(const char *test_name);

/* xorshift64* */
static inline uint64_t kmm_test_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

#endif
