/* execmem_threads.c - threads allocate, write, call and free executable
 * memory at once (run under TSan in CI). Each thread writes x86-64
 * functions returning a value of its own (mov eax, imm; ret), in single
 * writes and batches, calls them (other architectures: reads them back),
 * frees them in random order (what is left at the end with
 * kmm_execmem_free_batch); the allocations of all threads share chunks,
 * so frees, trap fills, grows and releases race with other threads'
 * writes. Three phases: 64 live allocations per thread, then 2 and 1, with
 * now and then one above a chunk (a chunk of its own), so that chunks
 * empty and are released while other threads write and grow. At the end kmm_check passes and nothing is left.
 */
#include "kmm_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4
#define LIVE 64
#define ROUNDS (KMM_TEST_SANITIZER ? 1500 : 4000)

struct arg {
    struct kmm *mm;
    unsigned id;
    uint64_t rng;
    size_t live;          /* slots in use: few, and chunks empty and go often */
};

static void *worker(void *v)
{
    struct arg *a = v;
    void *p[LIVE] = { 0 };
    uint32_t val[LIVE];
    unsigned char code[LIVE][8];
    for (int r = 0; r < ROUNDS; r++) {
        size_t k = kmm_test_below(&a->rng, a->live);
        if (p[k]) {
            unsigned char *q = p[k];
            if (memcmp(q, code[k], 6) != 0)
                kmm_test_fail("thread %u: slot %zu lost its code", a->id, k);
#if defined(__x86_64__)
            if ((uint32_t)((int (*)(void))q)() != val[k])
                kmm_test_fail("thread %u: slot %zu returned the wrong value", a->id, k);
#endif
            kmm_execmem_free(a->mm, q);
            p[k] = NULL;
            continue;
        }
        size_t size = kmm_test_below(&a->rng, 32) == 0 ? 6 + kmm_test_below(&a->rng, a->live > 2 ? 70000 : 2500000)
                                                        : 6 + kmm_test_below(&a->rng, 300);
        p[k] = kmm_execmem_alloc(a->mm, size);
        if (!p[k])
            kmm_test_fail("thread %u: alloc of %zu failed", a->id, size);
        val[k] = a->id << 24 | (uint32_t)r;
        code[k][0] = 0xb8;
        memcpy(code[k] + 1, &val[k], 4);
        code[k][5] = 0xc3;
        if (r % 3 == 0) {
            struct kmm_execmem_piece pc = { p[k], code[k], 6 };
            if (kmm_execmem_write_batch(a->mm, &pc, 1) != 0)
                kmm_test_fail("thread %u: batch refused", a->id);
        } else if (kmm_execmem_write(a->mm, p[k], code[k], 6) != 0) {
            kmm_test_fail("thread %u: write refused", a->id);
        }
    }
    kmm_execmem_free_batch(a->mm, p, LIVE);
    return NULL;
}

int main(void)
{
    struct kmm *mm = kmm_test_create(4096, 256ull << 20);
    uint64_t seed = kmm_test_seed("execmem_threads");
    struct arg args[THREADS];
    pthread_t th[THREADS];
    for (size_t live = LIVE; live >= 1; live = live > 2 ? 2 : live - 1) {
        for (unsigned i = 0; i < THREADS; i++)
            args[i] = (struct arg){ mm, i + 1, seed + (i + 7 * live) * 0x9E3779B97F4A7C15ull, live };
        kmm_test_start_threads(th, THREADS, worker, args, sizeof args[0]);
        kmm_test_join_threads(th, THREADS);
    }
    struct kmm_execmem_stats st;
    kmm_execmem_stats(mm, &st);
    if (kmm_check(mm) != 0 || st.allocations || st.chunks || st.pages)
        kmm_test_fail("after the threads: %zu allocations, %zu chunks, %zu pages", st.allocations, st.chunks, st.pages);
    printf("execmem_threads: %d threads x %d rounds x 3 phases (64, 2, 1 live each): %llu allocs, %llu writes, "
           "%llu platform writes\n",
           THREADS, ROUNDS, (unsigned long long)st.allocs, (unsigned long long)st.writes, (unsigned long long)st.write_calls);
    kmm_destroy(mm);
    return 0;
}
