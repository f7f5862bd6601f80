/* The shim's code under ThreadSanitizer, with threads: built only in the
 * TSan build, from the shim's own sources renamed by tsan_rename.h (TSan
 * keeps the process's malloc; this test calls the shim's as kmm_tsan_*) and
 * kmm's objects, all instrumented. What it runs:
 *   - the start-up race: 8 threads make their first call at once (one makes
 *     kmm_default(), the others wait for it: init_state, kmm__shim_mm);
 *   - every entry from 8 threads (malloc, calloc, realloc across the page
 *     size, reallocarray, posix_memalign, aligned_alloc, memalign, valloc,
 *     pvalloc, malloc_usable_size, free_sized, free_aligned_sized, and the
 *     C++ operators by their mangled names), with content checks;
 *   - blocks freed by another thread than the one that allocated them
 *     (handed over through atomic slots), small and large;
 *   - malloc_trim from one thread while the others allocate (kmm_drain:
 *     the reclaim handshake with the other threads' caches);
 *   - fork from a thread while the others allocate; the child allocates.
 * TSan fails the test (exit 66) on any data race it sees in any of that.
 * Run once with default options and once with KMM_OPTIONS=hardened. */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <kmm/shim.h>

#include "shim_prog.h"

/* The operators, by their renamed mangled names (new.c). */
void *_Znwm(size_t n);
void *_Znam(size_t n);
void *_ZnwmRKSt9nothrow_t(size_t n, const void *t);
void *_ZnwmSt11align_val_t(size_t n, size_t a);
void _ZdlPv(void *p);
void _ZdaPv(void *p);
void _ZdlPvm(void *p, size_t n);
void _ZdlPvSt11align_val_t(void *p, size_t a);
void _ZdlPvmSt11align_val_t(void *p, size_t n, size_t a);

#define THREADS 8
#define ROUNDS 3000
#define SLOTS 256

struct handed {
    void *p;
    size_t n;
    uint32_t seed;
};

/* Blocks in flight between threads: a thread swaps its block into a random
 * slot and frees whatever it took out (made by some other thread). */
static struct handed *slots[SLOTS];
static pthread_barrier_t start_line;
static int trim_done, forks_done;

static void give_and_take(struct handed *mine, uint32_t *state)
{
    struct handed *theirs = __atomic_exchange_n(&slots[prog_rand(state) % SLOTS], mine, __ATOMIC_ACQ_REL);
    if (!theirs)
        return;
    CHECK(prog_verify(theirs->p, theirs->n, theirs->seed) == theirs->n, "a block handed over changed");
    free(theirs->p);
    free(theirs);
}

/* One round: an entry chosen at random, its result checked. */
static void one_round(uint32_t *state, uint32_t seed)
{
    size_t n = prog_size(state);
    void *p = NULL;
    size_t align = 0;
    switch (prog_rand(state) % 12) {
    case 0: p = malloc(n); break;
    case 1:
        p = calloc(1, n);
        CHECK(p != NULL, "calloc");
        for (size_t i = 0; i < n; i++)
            CHECK(((unsigned char *)p)[i] == 0, "calloc not zero");
        break;
    case 2: {
        p = malloc(100);
        CHECK(p != NULL, "malloc");
        prog_fill(p, 100, seed);
        p = realloc(p, n);   /* often across the page size */
        CHECK(p != NULL && prog_verify(p, n < 100 ? n : 100, seed) == (n < 100 ? n : 100), "realloc kept");
        break;
    }
    case 3: p = reallocarray(NULL, n, 1); break;
    case 4:
        align = (size_t)8 << prog_rand(state) % 16;
        CHECK(posix_memalign(&p, align, n) == 0, "posix_memalign");
        break;
    case 5:
        align = (size_t)1 << prog_rand(state) % 14;
        p = aligned_alloc(align, n);
        break;
    case 6:
        align = 48;   /* rounded up to 64 */
        p = memalign(align, n);
        align = 64;
        break;
    case 7: p = prog_rand(state) % 2 ? valloc(n) : pvalloc(n); align = 4096; break;
    case 8: {
        void *q = _Znwm(n);
        prog_fill(q, n, seed);
        CHECK(prog_verify(q, n, seed) == n, "new");
        if (prog_rand(state) % 2)
            _ZdlPvm(q, n);
        else
            _ZdlPv(q);
        void *a = _ZnwmSt11align_val_t(n, 256);
        CHECK(((uintptr_t)a & 255) == 0, "aligned new");
        if (prog_rand(state) % 2)
            _ZdlPvmSt11align_val_t(a, n, 256);
        else
            _ZdlPvSt11align_val_t(a, 256);
        void *arr = _Znam(n + 1);
        _ZdaPv(arr);
        void *nt = _ZnwmRKSt9nothrow_t(n, NULL);
        CHECK(nt != NULL, "nothrow new");
        _ZdlPv(nt);
        return;
    }
    case 9: {
        p = malloc(n);
        CHECK(p != NULL && malloc_usable_size(p) >= n, "malloc_usable_size");
        free_sized(p, n);
        return;
    }
    case 10: {
        p = aligned_alloc(128, n);
        CHECK(p != NULL && ((uintptr_t)p & 127) == 0, "aligned_alloc");
        free_aligned_sized(p, 128, n);
        return;
    }
    default: p = malloc(n); break;
    }
    CHECK(p != NULL, "allocation of %zu bytes", n);
    CHECK(align == 0 || (uintptr_t)p % align == 0, "%p not %zu-aligned", p, align);
    prog_fill(p, n, seed);
    struct handed *h = malloc(sizeof(*h));
    CHECK(h != NULL, "malloc");
    *h = (struct handed){ .p = p, .n = n, .seed = seed };
    give_and_take(h, state);
}

static void *worker(void *arg)
{
    uint32_t id = (uint32_t)(uintptr_t)arg, state = id * 2654435761u | 1;
    pthread_barrier_wait(&start_line);
    void *first = malloc(24);   /* all at once: the shim starts under this race */
    CHECK(first != NULL, "first malloc");
    for (uint32_t r = 0; r < ROUNDS; r++) {
        one_round(&state, id * ROUNDS + r);
        if (id == 0 && r == ROUNDS / 3) {
            malloc_trim(0);
            __atomic_store_n(&trim_done, 1, __ATOMIC_RELEASE);
        }
        if (id == 1 && r == ROUNDS / 2) {
            pid_t pid = fork();
            CHECK(pid >= 0, "fork");
            if (pid == 0) {
                uint32_t s = 77;
                for (int i = 0; i < 200; i++) {
                    size_t n = prog_size(&s);
                    void *p = malloc(n);
                    if (!p)
                        _exit(2);
                    prog_fill(p, n, 5);
                    if (prog_verify(p, n, 5) != n)
                        _exit(3);
                    free(p);
                }
                _exit(0);
            }
            int status;
            CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child: status %#x", status);
            __atomic_store_n(&forks_done, 1, __ATOMIC_RELEASE);
        }
    }
    free(first);
    return NULL;
}

int main(void)
{
    pthread_t t[THREADS];
    pthread_barrier_init(&start_line, NULL, THREADS);
    for (uintptr_t i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)i) == 0, "pthread_create");
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < SLOTS; i++) {
        if (slots[i]) {
            CHECK(prog_verify(slots[i]->p, slots[i]->n, slots[i]->seed) == slots[i]->n, "a block left in a slot");
            free(slots[i]->p);
            free(slots[i]);
        }
    }
    CHECK(__atomic_load_n(&trim_done, __ATOMIC_ACQUIRE) && __atomic_load_n(&forks_done, __ATOMIC_ACQUIRE), "phases");
    errno = 0;
    CHECK(malloc(SIZE_MAX / 2) == NULL && errno == ENOMEM, "ENOMEM");
    printf("test_shim_tsan: %d threads x %d rounds through the shim's entries (options %#x), a trim and a fork among them\n",
           THREADS, ROUNDS, kmm_shim_options());
    return 0;
}
