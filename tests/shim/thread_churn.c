/* Threads that come and go by the thousand: 3000 short-lived threads, 16 at
 * a time, joinable and detached, each allocating in mixed sizes, freeing
 * half itself and handing the rest to the main thread, which checks and
 * frees them (a free of memory whose thread has exited). Each thread's
 * per-thread caches must be given back when it exits: the RSS after the
 * churn is printed and must stay within 64 MiB of the RSS after the first
 * wave (a cache leaked per thread would show as ~3000 times its size). */
#include <pthread.h>
#include <malloc.h>
#include <semaphore.h>

#include "shim_prog.h"

#define THREADS 3000
#define WAVE 16
#define PER_THREAD 64

struct handoff {
    void *p[PER_THREAD / 2];
    size_t n[PER_THREAD / 2];
    uint32_t seed;
};

static sem_t detached_done;

static void *work(void *arg)
{
    struct handoff *h = arg;
    uint32_t state = h->seed | 1;
    void *mine[PER_THREAD / 2];
    size_t mine_n[PER_THREAD / 2];
    for (int i = 0; i < PER_THREAD; i++) {
        size_t n = prog_size(&state);
        void *p = malloc(n);
        CHECK(p != NULL, "malloc(%zu)", n);
        prog_fill(p, n, h->seed + (uint32_t)i);
        if (i % 2) {
            h->p[i / 2] = p;
            h->n[i / 2] = n;
        } else {
            mine[i / 2] = p;
            mine_n[i / 2] = n;
        }
    }
    for (int i = 0; i < PER_THREAD / 2; i++) {
        CHECK(prog_verify(mine[i], mine_n[i], h->seed + (uint32_t)(2 * i)) == mine_n[i], "own data");
        free(mine[i]);
    }
    return NULL;
}

static void *work_detached(void *arg)
{
    work(arg);
    struct handoff *h = arg;
    for (int i = 0; i < PER_THREAD / 2; i++)
        free(h->p[i]);   /* its own, not handed over */
    free(h);
    sem_post(&detached_done);
    return NULL;
}

static void check_and_free(struct handoff *h)
{
    for (int i = 0; i < PER_THREAD / 2; i++) {
        CHECK(prog_verify(h->p[i], h->n[i], h->seed + (uint32_t)(2 * i + 1)) == h->n[i],
              "data handed over by thread %u", h->seed);
        free(h->p[i]);
    }
}

int main(void)
{
    sem_init(&detached_done, 0, 0);
    size_t rss_first = 0, rss_half = 0;
    unsigned detached = 0;
    for (int base = 0; base < THREADS; base += WAVE) {
        pthread_t t[WAVE];
        struct handoff h[WAVE];
        for (int i = 0; i < WAVE; i++) {
            h[i].seed = (uint32_t)(base + i) * 97;
            CHECK(pthread_create(&t[i], NULL, work, &h[i]) == 0, "pthread_create");
        }
        /* a detached one per wave: it exits while the wave is joined */
        struct handoff *d = malloc(sizeof(*d));
        CHECK(d != NULL, "malloc");
        d->seed = (uint32_t)base * 97 + 13;
        pthread_t dt;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        CHECK(pthread_create(&dt, &attr, work_detached, d) == 0, "pthread_create detached");
        pthread_attr_destroy(&attr);
        detached++;
        for (int i = 0; i < WAVE; i++) {
            pthread_join(t[i], NULL);
            check_and_free(&h[i]);
        }
        if (base == 0)
            rss_first = prog_rss();
        if (base == THREADS / 2 / WAVE * WAVE)
            rss_half = prog_rss();
    }
    for (unsigned i = 0; i < detached; i++)
        sem_wait(&detached_done);
    size_t rss_end = prog_rss();
    malloc_trim(0);
    size_t rss_trimmed = prog_rss();
    printf("thread_churn: %d joined + %u detached threads; RSS after the first wave %zu KiB, half-way %zu KiB, "
           "at the end %zu KiB, after malloc_trim %zu KiB\n",
           THREADS, detached, rss_first >> 10, rss_half >> 10, rss_end >> 10, rss_trimmed >> 10);
    /* what exited threads held must not pile up: the second half of the
     * churn adds little, and a trim gives back what the first half kept */
    CHECK(rss_end < rss_half + (32u << 20), "RSS grew by %zu KiB over the second half", (rss_end - rss_half) >> 10);
    CHECK(rss_trimmed < rss_first + (32u << 20), "after malloc_trim RSS is %zu KiB above the first wave's",
          (rss_trimmed - rss_first) >> 10);
    return 0;
}
