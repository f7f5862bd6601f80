/* bench/suite/workloads.c - the synthetic workloads of the benchmark suite.
 *
 *     suite-workloads NAME        run one workload, exit 0 when it checked out
 *     suite-workloads NAME --quick   an eighth of the work (suite --check)
 *     suite-workloads --list      the names, one a line, with what each models
 *
 * Each workload is written here after one of the classic allocator benchmarks
 * (see bench/suite/README.md). The program links nothing but libc and
 * pthreads: the allocator under test is whichever malloc the process gets,
 * glibc's or one given by LD_PRELOAD. The runner (suite.c) times the whole
 * process and reads its peak RSS, so nothing is timed in here.
 *
 * Every workload writes the memory it gets and checks it before freeing
 * (a stamp of size and slot in each object), so an allocator that hands the
 * same memory out twice, or loses a realloc's content, fails the run rather
 * than speeding it up. Sizes and counts are fixed (seeded random generators),
 * so every allocator does the same work; they are chosen so that each
 * workload runs 0.3-2 s under glibc on a small 2-CPU machine.
 *
 * Built with -fno-builtin-malloc and friends: the compiler may otherwise
 * remove a malloc/free pair whose memory it can see is unused.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Two threads where a workload is threaded: the suite's machine has 2 CPUs. */
#define THREADS 2

/* Divides every workload's outer loop count: 8 with --quick, for a check
 * that everything runs (sizes and the patterns stay those of the full run). */
static int work_divisor = 1;

static _Noreturn void fail(const char *workload, const char *what)
{
    fprintf(stderr, "suite-workloads: %s: %s\n", workload, what);
    exit(1);
}

static void *must_malloc(const char *workload, size_t size)
{
    void *p = malloc(size);
    if (!p)
        fail(workload, "malloc returned NULL");
    return p;
}

static void start_threads(const char *workload, pthread_t *threads, int n, void *(*fn)(void *),
                          void *args, size_t arg_size)
{
    for (int i = 0; i < n; i++)
        if (pthread_create(&threads[i], NULL, fn, (char *)args + (size_t)i * arg_size))
            fail(workload, "pthread_create failed");
}

static void join_threads(pthread_t *threads, int n)
{
    for (int i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
}

/* ---- randomness: splitmix64, one state per thread ----------------------------- */

static uint64_t rnd_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi]. */
static size_t rnd_range(uint64_t *state, size_t lo, size_t hi)
{
    return lo + (size_t)(rnd_next(state) % (hi - lo + 1));
}

/* Uniform in [0, 1). */
static double rnd_unit(uint64_t *state)
{
    return (double)(rnd_next(state) >> 11) * 0x1.0p-53;
}

/* ---- the stamp: the first 16 bytes of every object say what it should be ---- */

/* Objects of more than 16 bytes carry their size and a tag (slot, thread) in
 * their first two words and the tag's complement in their last byte; smaller
 * ones carry the tag's low byte in every byte. stamp_check fails the workload
 * if any of it changed between stamp and free. */
static void stamp(void *p, size_t size, uint64_t tag)
{
    unsigned char *b = p;
    if (size > 16) {
        uint64_t words[2] = {size, tag};
        memcpy(b, words, sizeof words);
        b[size - 1] = (unsigned char)~tag;
    } else {
        memset(b, (int)(tag & 0xff), size);
    }
}

static void stamp_check(const char *workload, const void *p, size_t size, uint64_t tag)
{
    const unsigned char *b = p;
    if (size > 16) {
        uint64_t words[2];
        memcpy(words, b, sizeof words);
        if (words[0] != size || words[1] != tag || b[size - 1] != (unsigned char)~tag)
            fail(workload, "an object's content changed while it was live");
    } else {
        for (size_t i = 0; i < size; i++)
            if (b[i] != (unsigned char)(tag & 0xff))
                fail(workload, "an object's content changed while it was live");
    }
}

/* ---- larson: a server whose threads come and go ---------------------------------
 *
 * After Larson and Krishnan's benchmark: each worker owns an array of slots,
 * replaces a random slot's object (free, then malloc of 16..1000 bytes) many
 * times, then exits; a new thread takes over the same array, so the first
 * frees of every generation are of objects a thread now gone allocated. */

#define LARSON_SLOTS 1000
#define LARSON_GENERATIONS 500
#define LARSON_OPS_PER_GENERATION 12000

struct larson_slot {
    void *p;
    size_t size;
};

struct larson_chain {
    struct larson_slot slots[LARSON_SLOTS];
    uint64_t rng;
    unsigned id;
};

static void *larson_generation(void *arg)
{
    struct larson_chain *chain = arg;
    for (int op = 0; op < LARSON_OPS_PER_GENERATION; op++) {
        struct larson_slot *s = &chain->slots[rnd_next(&chain->rng) % LARSON_SLOTS];
        uint64_t tag = (uint64_t)(s - chain->slots) << 8 | chain->id;
        stamp_check("larson", s->p, s->size, tag);
        free(s->p);
        s->size = rnd_range(&chain->rng, 16, 1000);
        s->p = must_malloc("larson", s->size);
        stamp(s->p, s->size, tag);
    }
    return NULL;
}

static void larson(void)
{
    struct larson_chain *chains = must_malloc("larson", THREADS * sizeof *chains);
    for (unsigned t = 0; t < THREADS; t++) {
        chains[t].rng = 0x1a250 + t;
        chains[t].id = t;
        for (size_t i = 0; i < LARSON_SLOTS; i++) {
            struct larson_slot *s = &chains[t].slots[i];
            s->size = rnd_range(&chains[t].rng, 16, 1000);
            s->p = must_malloc("larson", s->size);
            stamp(s->p, s->size, (uint64_t)i << 8 | t);
        }
    }
    for (int g = 0; g < LARSON_GENERATIONS / work_divisor; g++) {
        pthread_t threads[THREADS];
        start_threads("larson", threads, THREADS, larson_generation, chains, sizeof *chains);
        join_threads(threads, THREADS);
    }
    for (unsigned t = 0; t < THREADS; t++)
        for (size_t i = 0; i < LARSON_SLOTS; i++) {
            stamp_check("larson", chains[t].slots[i].p, chains[t].slots[i].size, (uint64_t)i << 8 | t);
            free(chains[t].slots[i].p);
        }
    free(chains);
}

/* ---- cache-scratch and cache-thrash: false sharing ------------------------------
 *
 * After Hoard's benchmarks. Each thread allocates a small object, writes it
 * byte by byte many times and frees it, over and over. An allocator that
 * gives the two threads objects on one cache line makes every write bounce
 * the line between the CPUs. cache-thrash: each thread allocates its own
 * (active false sharing, from the allocator's layout alone). cache-scratch:
 * the main thread first allocates one object per thread and each thread
 * frees that one first (passive false sharing: an allocator that reuses a
 * freed object in the freeing thread gives it a line the other thread's
 * object shares). */

#define CACHE_OBJECT_SIZE 8
#define CACHE_ITERATIONS 20000
#define CACHE_REPETITIONS 10000

struct cache_worker {
    void *handed;            /* cache-scratch: the object to free first */
    unsigned long checksum;
};

static void *cache_worker_run(void *arg)
{
    struct cache_worker *w = arg;
    free(w->handed);
    for (int i = 0; i < CACHE_ITERATIONS / work_divisor; i++) {
        volatile unsigned char *obj = must_malloc("cache", CACHE_OBJECT_SIZE);
        for (int r = 0; r < CACHE_REPETITIONS; r++)
            for (int b = 0; b < CACHE_OBJECT_SIZE; b++)
                obj[b] = (unsigned char)(obj[b] + 1);
        w->checksum += obj[CACHE_OBJECT_SIZE - 1];
        free((void *)obj);
    }
    return NULL;
}

static void cache_run(const char *workload, int hand_objects)
{
    struct cache_worker workers[THREADS] = {{0}};
    if (hand_objects)
        for (int t = 0; t < THREADS; t++)
            workers[t].handed = must_malloc(workload, CACHE_OBJECT_SIZE);
    pthread_t threads[THREADS];
    start_threads(workload, threads, THREADS, cache_worker_run, workers, sizeof workers[0]);
    join_threads(threads, THREADS);
    /* Fresh memory is not zeroed by malloc, so the checksum is not known in
     * advance; printed so that the loop's result is used. */
    printf("%s: checksum %lu\n", workload, workers[0].checksum + workers[1].checksum);
}

static void cache_scratch(void) { cache_run("cache-scratch", 1); }
static void cache_thrash(void) { cache_run("cache-thrash", 0); }

/* ---- xmalloc-test: producer/consumer frees across threads ---------------------
 *
 * After Lever and Boreham's xmalloc-test: every object is freed by a thread
 * other than the one that allocated it. Each of the two threads allocates a
 * batch of objects (16..512 bytes), hands it to the other thread through a
 * small bounded queue, and frees the batches it receives. */

#define XMALLOC_BATCH 256
#define XMALLOC_BATCHES 12000
#define XMALLOC_QUEUE 8

struct xmalloc_batch {
    void *objects[XMALLOC_BATCH];
    size_t sizes[XMALLOC_BATCH];
};

struct xmalloc_queue {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    struct xmalloc_batch *items[XMALLOC_QUEUE];
    int head, count;
};

struct xmalloc_worker {
    struct xmalloc_queue *inbox, *outbox;
    uint64_t rng;
    unsigned id;
};

static void xmalloc_put(struct xmalloc_queue *q, struct xmalloc_batch *b)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == XMALLOC_QUEUE)
        pthread_cond_wait(&q->changed, &q->lock);
    q->items[(q->head + q->count++) % XMALLOC_QUEUE] = b;
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->lock);
}

static struct xmalloc_batch *xmalloc_take(struct xmalloc_queue *q)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == 0)
        pthread_cond_wait(&q->changed, &q->lock);
    struct xmalloc_batch *b = q->items[q->head];
    q->head = (q->head + 1) % XMALLOC_QUEUE;
    q->count--;
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->lock);
    return b;
}

static void *xmalloc_worker_run(void *arg)
{
    struct xmalloc_worker *w = arg;
    unsigned peer = w->id ^ 1;
    for (int n = 0; n < XMALLOC_BATCHES / work_divisor; n++) {
        struct xmalloc_batch *b = must_malloc("xmalloc-test", sizeof *b);
        for (int i = 0; i < XMALLOC_BATCH; i++) {
            b->sizes[i] = rnd_range(&w->rng, 16, 512);
            b->objects[i] = must_malloc("xmalloc-test", b->sizes[i]);
            stamp(b->objects[i], b->sizes[i], (uint64_t)i << 8 | w->id);
        }
        xmalloc_put(w->outbox, b);
        struct xmalloc_batch *in = xmalloc_take(w->inbox);
        for (int i = 0; i < XMALLOC_BATCH; i++) {
            stamp_check("xmalloc-test", in->objects[i], in->sizes[i], (uint64_t)i << 8 | peer);
            free(in->objects[i]);
        }
        free(in);
    }
    return NULL;
}

static void xmalloc_test(void)
{
    static struct xmalloc_queue queues[THREADS];
    struct xmalloc_worker workers[THREADS];
    for (unsigned t = 0; t < THREADS; t++) {
        pthread_mutex_init(&queues[t].lock, NULL);
        pthread_cond_init(&queues[t].changed, NULL);
    }
    for (unsigned t = 0; t < THREADS; t++)
        workers[t] = (struct xmalloc_worker){
            .inbox = &queues[t], .outbox = &queues[t ^ 1], .rng = 0x3a110c + t, .id = t};
    pthread_t threads[THREADS];
    start_threads("xmalloc-test", threads, THREADS, xmalloc_worker_run, workers, sizeof workers[0]);
    join_threads(threads, THREADS);
}

/* ---- mstress: random sizes and lifetimes, objects moving between threads ------
 *
 * After mimalloc's stress test (mimalloc-bench's mstress): in rounds, each
 * thread allocates objects whose sizes are mostly small (8..1024 bytes) and
 * now and then large (up to 256 KiB), frees a random part of them at once,
 * keeps some for a number of rounds, and swaps objects with a shared transfer
 * array, so that many are freed by the other thread, some rounds later. */

#define MSTRESS_ROUNDS 60
#define MSTRESS_PER_ROUND 40000
#define MSTRESS_TRANSFER 1000
#define MSTRESS_KEEP 4096

struct mstress_object {
    void *p;
    size_t size;
    uint64_t tag;
};

static _Atomic(struct mstress_object *) mstress_transfer[MSTRESS_TRANSFER];

static struct mstress_object *mstress_new(uint64_t *rng, uint64_t tag)
{
    struct mstress_object *o = must_malloc("mstress", sizeof *o);
    uint64_t pick = rnd_next(rng) % 1000;
    if (pick < 5)
        o->size = rnd_range(rng, 16 * 1024, 256 * 1024);
    else if (pick < 100)
        o->size = rnd_range(rng, 1024, 8 * 1024);
    else
        o->size = rnd_range(rng, 8, 1024);
    o->p = must_malloc("mstress", o->size);
    o->tag = tag;
    stamp(o->p, o->size, tag);
    return o;
}

static void mstress_free(struct mstress_object *o)
{
    if (!o)
        return;
    stamp_check("mstress", o->p, o->size, o->tag);
    free(o->p);
    free(o);
}

static void *mstress_worker(void *arg)
{
    uint64_t rng = 0x357e55 + (uintptr_t)arg;
    struct mstress_object **kept = must_malloc("mstress", MSTRESS_KEEP * sizeof *kept);
    memset(kept, 0, MSTRESS_KEEP * sizeof *kept);
    struct mstress_object **round = must_malloc("mstress", MSTRESS_PER_ROUND * sizeof *round);
    uint64_t tag = (uint64_t)(uintptr_t)arg << 40;
    for (int r = 0; r < MSTRESS_ROUNDS / work_divisor; r++) {
        for (int i = 0; i < MSTRESS_PER_ROUND; i++) {
            round[i] = mstress_new(&rng, tag++);
            uint64_t fate = rnd_next(&rng) % 100;
            if (fate < 50) {
                mstress_free(round[i]);          /* short-lived: freed at once */
                round[i] = NULL;
            } else if (fate < 55) {
                size_t k = rnd_next(&rng) % MSTRESS_KEEP;   /* long-lived */
                mstress_free(kept[k]);
                kept[k] = round[i];
                round[i] = NULL;
            } else if (fate < 60) {
                size_t k = rnd_next(&rng) % MSTRESS_TRANSFER;   /* to another thread */
                mstress_free(atomic_exchange(&mstress_transfer[k], round[i]));
                round[i] = NULL;
            }
        }
        /* The rest lives to the end of the round, freed in random order. */
        for (int i = MSTRESS_PER_ROUND - 1; i > 0; i--) {
            size_t j = rnd_next(&rng) % (size_t)(i + 1);
            struct mstress_object *tmp = round[i];
            round[i] = round[j];
            round[j] = tmp;
        }
        for (int i = 0; i < MSTRESS_PER_ROUND; i++)
            mstress_free(round[i]);
    }
    for (int k = 0; k < MSTRESS_KEEP; k++)
        mstress_free(kept[k]);
    free(kept);
    free(round);
    return NULL;
}

static void mstress(void)
{
    pthread_t threads[THREADS];
    for (uintptr_t t = 0; t < THREADS; t++)
        if (pthread_create(&threads[t], NULL, mstress_worker, (void *)t))
            fail("mstress", "pthread_create failed");
    join_threads(threads, THREADS);
    for (int k = 0; k < MSTRESS_TRANSFER; k++)
        mstress_free(atomic_exchange(&mstress_transfer[k], NULL));
}

/* ---- glibc-thread: glibc's bench-malloc-thread ----------------------------------
 *
 * Each thread keeps a working set of 1024 slots and replaces a random slot's
 * object again and again with one of a random size between 4 and 32768 bytes,
 * small sizes far more likely (density 1/size^2, as glibc's benchmark draws
 * them). Everything stays in its thread. */

#define GLIBC_SLOTS 1024
#define GLIBC_ITERATIONS 16000000
#define GLIBC_MIN_SIZE 4.0
#define GLIBC_MAX_SIZE 32768.0

static void *glibc_thread_worker(void *arg)
{
    uint64_t rng = 0x61bc + (uintptr_t)arg;
    void *slots[GLIBC_SLOTS] = {0};
    size_t sizes[GLIBC_SLOTS] = {0};
    for (long i = 0; i < GLIBC_ITERATIONS / work_divisor; i++) {
        size_t k = rnd_next(&rng) % GLIBC_SLOTS;
        if (slots[k])
            stamp_check("glibc-thread", slots[k], sizes[k], k);
        free(slots[k]);
        double u = rnd_unit(&rng);
        sizes[k] = (size_t)(1.0 / (1.0 / GLIBC_MIN_SIZE - u * (1.0 / GLIBC_MIN_SIZE - 1.0 / GLIBC_MAX_SIZE)));
        slots[k] = must_malloc("glibc-thread", sizes[k]);
        stamp(slots[k], sizes[k], k);
    }
    for (size_t k = 0; k < GLIBC_SLOTS; k++)
        free(slots[k]);
    return NULL;
}

static void glibc_thread(void)
{
    pthread_t threads[THREADS];
    for (uintptr_t t = 0; t < THREADS; t++)
        if (pthread_create(&threads[t], NULL, glibc_thread_worker, (void *)t))
            fail("glibc-thread", "pthread_create failed");
    join_threads(threads, THREADS);
}

/* ---- realloc-growth: buffers grown a little at a time ---------------------------
 *
 * What string builders and naive vectors do: each thread grows 64 buffers
 * together, each by 1..64 bytes per realloc, to random final lengths up to
 * 64 KiB; one buffer in 16 grows by doubling up to 4 MiB instead. Every byte
 * appended is written, and the whole content is checked before the free. */

#define REALLOC_BUFFERS 64
#define REALLOC_ROUNDS 20

static unsigned char realloc_byte(size_t buffer, size_t offset)
{
    return (unsigned char)(buffer * 31 + offset * 7 + (offset >> 8));
}

static void *realloc_worker(void *arg)
{
    uint64_t rng = 0x4ea110c + (uintptr_t)arg;
    for (int r = 0; r < (REALLOC_ROUNDS + work_divisor - 1) / work_divisor; r++) {
        unsigned char *buf[REALLOC_BUFFERS] = {0};
        size_t len[REALLOC_BUFFERS] = {0}, target[REALLOC_BUFFERS];
        int doubling[REALLOC_BUFFERS];
        for (size_t b = 0; b < REALLOC_BUFFERS; b++) {
            doubling[b] = rnd_next(&rng) % 16 == 0;
            target[b] = doubling[b] ? rnd_range(&rng, 1 << 20, 4 << 20) : rnd_range(&rng, 1024, 64 * 1024);
        }
        for (int growing = REALLOC_BUFFERS; growing > 0;) {
            growing = 0;
            for (size_t b = 0; b < REALLOC_BUFFERS; b++) {
                if (len[b] >= target[b])
                    continue;
                growing++;
                size_t add = doubling[b] ? (len[b] ? len[b] : 64) : rnd_range(&rng, 1, 64);
                if (len[b] + add > target[b])
                    add = target[b] - len[b];
                unsigned char *p = realloc(buf[b], len[b] + add);
                if (!p)
                    fail("realloc-growth", "realloc returned NULL");
                buf[b] = p;
                for (size_t i = len[b]; i < len[b] + add; i++)
                    p[i] = realloc_byte(b, i);
                len[b] += add;
            }
        }
        for (size_t b = 0; b < REALLOC_BUFFERS; b++) {
            for (size_t i = 0; i < len[b]; i += 61)
                if (buf[b][i] != realloc_byte(b, i))
                    fail("realloc-growth", "realloc lost a buffer's content");
            free(buf[b]);
        }
    }
    return NULL;
}

static void realloc_growth(void)
{
    pthread_t threads[THREADS];
    for (uintptr_t t = 0; t < THREADS; t++)
        if (pthread_create(&threads[t], NULL, realloc_worker, (void *)t))
            fail("realloc-growth", "pthread_create failed");
    join_threads(threads, THREADS);
}

/* ---- malloc-large: big buffers, mostly short-lived ------------------------------
 *
 * Each thread allocates buffers of 4 KiB..4 MiB (sizes log-uniform, so as
 * many of 4-8 KiB as of 2-4 MiB), writes one byte in every page, and frees
 * three of four at once; the fourth replaces one of 8 longer-lived buffers.
 * Here an allocator that maps and unmaps every large buffer pays a system
 * call and a page fault per page each time; one that keeps freed memory
 * reuses it, at a cost in RSS. */

#define LARGE_ITERATIONS 5000
#define LARGE_KEEP 8
#define LARGE_MIN_LOG2 12
#define LARGE_MAX_LOG2 22

static void large_touch(unsigned char *p, size_t size, unsigned char value)
{
    for (size_t i = 0; i < size; i += 4096)
        p[i] = value;
    p[size - 1] = value;
}

static void large_check(const unsigned char *p, size_t size, unsigned char value)
{
    for (size_t i = 0; i < size; i += 4096)
        if (p[i] != value)
            fail("malloc-large", "a buffer's content changed while it was live");
    if (p[size - 1] != value)
        fail("malloc-large", "a buffer's content changed while it was live");
}

static void *large_worker(void *arg)
{
    uint64_t rng = 0x1a43e + (uintptr_t)arg;
    unsigned char *kept[LARGE_KEEP] = {0};
    size_t kept_size[LARGE_KEEP] = {0};
    unsigned char kept_value[LARGE_KEEP] = {0};
    for (int i = 0; i < LARGE_ITERATIONS / work_divisor; i++) {
        double log2_size = LARGE_MIN_LOG2 + rnd_unit(&rng) * (LARGE_MAX_LOG2 - LARGE_MIN_LOG2);
        size_t size = (size_t)__builtin_exp2(log2_size);
        unsigned char value = (unsigned char)(i | 1);
        unsigned char *p = must_malloc("malloc-large", size);
        large_touch(p, size, value);
        if (rnd_next(&rng) % 4) {
            large_check(p, size, value);
            free(p);
            continue;
        }
        size_t k = rnd_next(&rng) % LARGE_KEEP;
        if (kept[k])
            large_check(kept[k], kept_size[k], kept_value[k]);
        free(kept[k]);
        kept[k] = p;
        kept_size[k] = size;
        kept_value[k] = value;
    }
    for (size_t k = 0; k < LARGE_KEEP; k++)
        free(kept[k]);
    return NULL;
}

static void malloc_large(void)
{
    pthread_t threads[THREADS];
    for (uintptr_t t = 0; t < THREADS; t++)
        if (pthread_create(&threads[t], NULL, large_worker, (void *)t))
            fail("malloc-large", "pthread_create failed");
    join_threads(threads, THREADS);
}

/* ---- the table ------------------------------------------------------------------ */

static const struct workload {
    const char *name;
    void (*run)(void);
    const char *models;
} workloads[] = {
    {"larson", larson, "server threads that come and go, freeing what a previous thread allocated"},
    {"cache-scratch", cache_scratch, "passive false sharing: objects freed by another thread reused"},
    {"cache-thrash", cache_thrash, "active false sharing: small objects of two threads on one line"},
    {"xmalloc-test", xmalloc_test, "producer/consumer: every object freed by the other thread"},
    {"mstress", mstress, "random sizes and lifetimes, objects moving between threads"},
    {"glibc-thread", glibc_thread, "glibc's bench-malloc-thread: thread-local random replacement"},
    {"realloc-growth", realloc_growth, "buffers grown by small reallocs, some doubled to 4 MiB"},
    {"malloc-large", malloc_large, "4 KiB..4 MiB buffers, mostly short-lived, every page written"},
};

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < sizeof workloads / sizeof workloads[0]; i++)
            printf("%-15s %s\n", workloads[i].name, workloads[i].models);
        return 0;
    }
    if (argc == 3 && strcmp(argv[2], "--quick") == 0)
        work_divisor = 8;
    else if (argc != 2)
        argc = 0;
    if (argc)
        for (size_t i = 0; i < sizeof workloads / sizeof workloads[0]; i++)
            if (strcmp(argv[1], workloads[i].name) == 0) {
                workloads[i].run();
                return 0;
            }
    fprintf(stderr, "usage: suite-workloads NAME [--quick] | --list\n");
    return 2;
}
