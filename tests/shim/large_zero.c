/* Very large and zero-size requests, as programs make them.
 * Zero: malloc(0), calloc(0, n), calloc(n, 0), aligned_alloc(a, 0) give
 * distinct pointers that free() takes; realloc(NULL, 0) likewise.
 * Too large: SIZE_MAX, PTRDIFF_MAX + 1, sizes just below SIZE_MAX, and
 * products that overflow fail with NULL and ENOMEM and leave the memory
 * system working; realloc to such a size fails and leaves the old block
 * intact. Large but real: 1 GiB (its first and last page written), a
 * buffer grown by realloc from 1 byte to 256 MiB with its content checked
 * at each step, and 2 MiB-aligned buffers. */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <string.h>

#include "shim_prog.h"

#define MiB ((size_t)1 << 20)

/* The compiler sees through constant sizes: it warns that they are too
 * large, and would be free to assume the calls fail. Through a volatile,
 * they are what a program computes at run time. */
static volatile size_t size_max = SIZE_MAX;
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
/* a realloc that fails leaves the block valid: that is what is checked */
#pragma GCC diagnostic ignored "-Wuse-after-free"
#endif

static void expect_enomem(void *p, const char *what)
{
    CHECK(p == NULL, "%s: got %p, want NULL", what, p);
    CHECK(errno == ENOMEM, "%s: errno %d, want ENOMEM", what, errno);
    errno = 0;
}

int main(void)
{
    /* zero */
    void *zeros[64];
    for (int i = 0; i < 64; i++) {
        switch (i % 5) {
        case 0: zeros[i] = malloc(0); break;
        case 1: zeros[i] = calloc(0, 16); break;
        case 2: zeros[i] = calloc(16, 0); break;
        case 3: zeros[i] = aligned_alloc(64, 0); break;
        default: zeros[i] = realloc(NULL, 0); break;
        }
        CHECK(zeros[i] != NULL, "zero-size request %d gave NULL", i);
        for (int j = 0; j < i; j++)
            CHECK(zeros[j] != zeros[i], "zero-size requests %d and %d gave the same pointer", j, i);
    }
    CHECK((uintptr_t)zeros[3] % 64 == 0, "aligned_alloc(64, 0) not aligned");
    for (int i = 0; i < 64; i++)
        free(zeros[i]);

    /* too large */
    errno = 0;
    expect_enomem(malloc(size_max), "malloc(size_max)");
    expect_enomem(malloc(size_max - 4096), "malloc(size_max - 4096)");
    expect_enomem(malloc(size_max / 2 + 1), "malloc(PTRDIFF_MAX + 1)");
    expect_enomem(malloc((size_t)1 << 46), "malloc(64 TiB)");
    expect_enomem(calloc(size_max / 2, 3), "calloc overflowing");
    expect_enomem(calloc(size_max >> 32, (size_max >> 32) + 2), "calloc(2^32 - 1, 2^32 + 1)");
    expect_enomem(aligned_alloc(4096, size_max - 100), "aligned_alloc(4096, size_max - 100)");
    expect_enomem(memalign(1 << 21, size_max / 2), "memalign(2 MiB, size_max / 2)");
    void *out = (void *)1;
    CHECK(posix_memalign(&out, 64, size_max - 10) == ENOMEM && out == (void *)1, "posix_memalign huge");
    expect_enomem(valloc(size_max - 1), "valloc huge");
    expect_enomem(pvalloc(size_max - 1), "pvalloc huge");
    char *keep = malloc(100);
    CHECK(keep != NULL, "malloc(100) after failures");
    prog_fill(keep, 100, 7);
    expect_enomem(realloc(keep, size_max - 1), "realloc to SIZE_MAX - 1");
    expect_enomem(reallocarray(keep, size_max / 4, 8), "reallocarray overflowing");
    CHECK(prog_verify(keep, 100, 7) == 100, "a failed realloc changed the block");
    free(keep);

    /* large and real */
    size_t gib = 1024 * MiB;
    char *big = malloc(gib);
    CHECK(big != NULL, "malloc(1 GiB)");
    memset(big, 1, 4096);
    memset(big + gib - 4096, 2, 4096);
    CHECK(big[0] == 1 && big[gib - 1] == 2, "1 GiB ends");
    free(big);
    char *zbig = calloc(gib / 8, 8);
    CHECK(zbig != NULL && zbig[0] == 0 && zbig[gib / 2] == 0 && zbig[gib - 1] == 0, "calloc(1 GiB) zero");
    free(zbig);

    char *grow = NULL;
    size_t had = 0;
    for (size_t n = 1; n <= 64 * MiB; n *= 2) {
        grow = realloc(grow, n);
        CHECK(grow != NULL, "realloc to %zu", n);
        CHECK(had == 0 || prog_verify(grow, had, 3) == had, "realloc to %zu lost data", n);
        prog_fill(grow, n, 3);
        had = n;
    }
    for (size_t n = had / 2; n >= 1; n /= 4) {
        grow = realloc(grow, n);
        CHECK(grow != NULL && prog_verify(grow, n, 3) == n, "shrinking realloc to %zu", n);
    }
    free(grow);

    for (int i = 0; i < 4; i++) {
        void *a = NULL;
        CHECK(posix_memalign(&a, 2 * MiB, 3 * MiB + (size_t)i) == 0, "posix_memalign(2 MiB)");
        CHECK((uintptr_t)a % (2 * MiB) == 0, "not 2 MiB aligned: %p", a);
        memset(a, 0x5a, 3 * MiB + (size_t)i);
        CHECK(malloc_usable_size(a) >= 3 * MiB + (size_t)i, "usable size");
        free(a);
    }
    puts("large_zero: zero-size, too-large and very large requests as expected");
    return 0;
}
