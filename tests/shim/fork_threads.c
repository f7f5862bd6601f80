/* fork() from several threads at once while other threads allocate and
 * free. Each forking thread owns a few buffers (small and large) with known
 * contents; its child checks them, writes over them, allocates and frees at
 * once in mixed sizes (also from a new thread), and exits; meanwhile the
 * parent writes new contents into the same buffers, and checks them after
 * the child is gone: neither side's writes reach the other. A child
 * that hangs (a lock held by a thread that does not exist in the child) is
 * killed by the alarm and fails the test. */
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "shim_prog.h"

#define FORKERS 4
#define ALLOCATORS 3
#define FORKS_EACH 8
#define OWNED 6

static volatile int stop;
/* the forkers fork at the same moment each round */
static pthread_barrier_t fork_line;

static void *allocator(void *arg)
{
    uint32_t seed = (uint32_t)(uintptr_t)arg, state = seed * 7 + 1;
    void *slots[64] = { 0 };
    size_t sizes[64] = { 0 };
    unsigned long rounds = 0;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        unsigned i = prog_rand(&state) % 64;
        if (slots[i]) {
            CHECK(prog_verify(slots[i], sizes[i], seed + i) == sizes[i], "allocator %u slot %u", seed, i);
            free(slots[i]);
        }
        sizes[i] = prog_size(&state);
        slots[i] = malloc(sizes[i]);
        CHECK(slots[i] != NULL, "malloc(%zu)", sizes[i]);
        prog_fill(slots[i], sizes[i], seed + i);
        rounds++;
    }
    for (unsigned i = 0; i < 64; i++)
        free(slots[i]);
    return (void *)rounds;
}

/* What a child does: everything through malloc, at once. 0 on success. */
static void *child_thread(void *arg)
{
    uint32_t state = (uint32_t)(uintptr_t)arg;
    for (int i = 0; i < 2000; i++) {
        size_t n = prog_size(&state);
        char *p = malloc(n);
        if (!p)
            return (void *)1;
        prog_fill(p, n, (uint32_t)i);
        if (prog_verify(p, n, (uint32_t)i) != n)
            return (void *)2;
        free(p);
    }
    return NULL;
}

static int child(void **owned, const size_t *sizes, uint32_t seed)
{
    for (int i = 0; i < OWNED; i++) {
        if (prog_verify(owned[i], sizes[i], seed + (uint32_t)i) != sizes[i])
            return 10 + i;
        prog_fill(owned[i], sizes[i], ~seed);   /* the parent must not see this */
        free(owned[i]);
    }
    /* allocate at once: small, large, realloc across the page size */
    char *keep[200];
    uint32_t state = seed | 1;
    for (int i = 0; i < 200; i++) {
        size_t n = prog_size(&state);
        keep[i] = malloc(n);
        if (!keep[i])
            return 20;
        prog_fill(keep[i], n, (uint32_t)i);
        keep[i] = realloc(keep[i], n + 5000);
        if (!keep[i] || prog_verify(keep[i], n, (uint32_t)i) != n)
            return 21;
    }
    for (int i = 0; i < 200; i++)
        free(keep[i]);
    pthread_t t;
    void *res;
    if (pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)(seed | 3)) != 0)
        return 30;
    if (pthread_join(t, &res) != 0 || res != NULL)
        return 31;
    return 0;
}

static void *forker(void *arg)
{
    uint32_t seed = (uint32_t)(uintptr_t)arg * 1000;
    for (int round = 0; round < FORKS_EACH; round++) {
        void *owned[OWNED];
        size_t sizes[OWNED] = { 24, 200, 4096, 4097, 70000, 1 << 20 };
        for (int i = 0; i < OWNED; i++) {
            owned[i] = malloc(sizes[i]);
            CHECK(owned[i] != NULL, "malloc");
            prog_fill(owned[i], sizes[i], seed + (uint32_t)i);
        }
        pthread_barrier_wait(&fork_line);
        pid_t pid = fork();
        CHECK(pid >= 0, "fork");
        if (pid == 0) {
            alarm(20);
            _exit(child(owned, sizes, seed));
        }
        /* the parent's writes must not reach the child either: it checks the
         * old contents while these land */
        for (int i = 0; i < OWNED; i++)
            prog_fill(owned[i], sizes[i], seed * 3 + (uint32_t)i);
        int status;
        CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child of forker %u round %d: status %#x (exit %d, signal %d)",
              seed / 1000, round, status, WIFEXITED(status) ? WEXITSTATUS(status) : -1,
              WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        for (int i = 0; i < OWNED; i++) {
            CHECK(prog_verify(owned[i], sizes[i], seed * 3 + (uint32_t)i) == sizes[i], "parent's buffer %d changed by its child", i);
            free(owned[i]);
        }
        seed++;
    }
    return NULL;
}

int main(void)
{
    pthread_t alloc[ALLOCATORS], forkers[FORKERS];
    pthread_barrier_init(&fork_line, NULL, FORKERS);
    for (uintptr_t i = 0; i < ALLOCATORS; i++)
        CHECK(pthread_create(&alloc[i], NULL, allocator, (void *)(i + 1)) == 0, "pthread_create");
    for (uintptr_t i = 0; i < FORKERS; i++)
        CHECK(pthread_create(&forkers[i], NULL, forker, (void *)(i + 1)) == 0, "pthread_create");
    for (int i = 0; i < FORKERS; i++)
        pthread_join(forkers[i], NULL);
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    unsigned long rounds = 0;
    for (int i = 0; i < ALLOCATORS; i++) {
        void *r;
        pthread_join(alloc[i], &r);
        rounds += (unsigned long)(uintptr_t)r;
    }
    printf("fork_threads: %d forks from %d threads, %lu allocations meanwhile: all children ok\n",
           FORKERS * FORKS_EACH, FORKERS, rounds);
    return 0;
}
