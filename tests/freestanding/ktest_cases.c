/* ktest_cases.c - the list of freestanding test cases, and their helpers. */
#include "ktest.h"

const struct ktest *const ktest_suites[] = {
    ktest_cases_pages, ktest_cases_malloc, ktest_cases_vm, ktest_cases_guest, NULL,
};

static inline uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

void ktest_fill(void *p, size_t len, uint64_t seed)
{
    unsigned char *b = p;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = mix(seed * 0x9e3779b97f4a7c15ull + i);
        for (size_t k = 0; k < 8 && i + k < len; k++)
            b[i + k] = (unsigned char)(v >> (8 * k));
    }
}

bool ktest_verify(const void *p, size_t len, uint64_t seed)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = mix(seed * 0x9e3779b97f4a7c15ull + i);
        for (size_t k = 0; k < 8 && i + k < len; k++)
            if (b[i + k] != (unsigned char)(v >> (8 * k)))
                return false;
    }
    return true;
}
