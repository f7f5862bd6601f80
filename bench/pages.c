/* bench/pages.c - the page allocator side by side with what a user would
 * pick instead (mmap, glibc, mimalloc). See bench/README.md.
 *
 * Five measurements, each figure the median of several repetitions:
 *   1. order-0 alloc+free pairs, hot, one thread, against mmap/munmap,
 *      glibc posix_memalign/free and mimalloc mi_malloc_aligned/mi_free;
 *   2. random orders 0..10 with random frees: per-operation latency, mean,
 *      p50, p99 and max, against mimalloc and glibc on the same operations,
 *      and kmm's first tenth of the run against the last;
 *   3. two threads against one on the same memory system;
 *   4. kmm_create + kmm_destroy of a 64 GiB memory system: time and RSS;
 *   5. resident memory over time: 1 GiB written and freed, RSS while the
 *      program goes on, then after a drain, for kmm and the two peers.
 *
 * mimalloc is loaded with dlopen(RTLD_LOCAL), never linked: Debian's
 * libmimalloc.so exports malloc/free/posix_memalign and would otherwise
 * replace glibc as the process allocator, so that the "glibc" column would
 * measure mimalloc. The program checks at run time which library each
 * column's functions come from and prints it.
 */
#include <kmm.h>

#include "harness.h"

#include <dlfcn.h>
#include <errno.h>
#include <gnu/libc-version.h>
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define HAVE_TSC 1
#else
#define HAVE_TSC 0
#endif

#ifndef KMM_BENCH_MIMALLOC_PATH
#define KMM_BENCH_MIMALLOC_PATH "libmimalloc.so.2"
#endif

const char harness_prog[] = "bench/pages";

#define NOINLINE __attribute__((noinline))
#define BARRIER() __asm__ __volatile__("" ::: "memory")

/* ---- options -------------------------------------------------------------- */

static struct {
    bool json, quick;
    int reps;
    double target_ns;        /* wall time of one repetition of a batch measurement */
    double mt_target_ns;     /* wall time of one single-thread run in test 3 */
    long rand_ops;           /* operations per repetition of test 2 */
    long hot_loop;           /* --hot-loop N: only N kmm pairs, for callgrind */
    uint64_t seed;
} opt = {
    .reps = 9,
    .target_ns = 50e6,
    .mt_target_ns = 100e6,
    .rand_ops = 1000000,
    .seed = 0x6b6d6d2d70616765ull,   /* "kmm-page" */
};

#define RAND_MAX_ORDER 10
#define RAND_LIVE_MAX  4096
#define MT_BATCH       64

/* ---- time ------------------------------------------------------------------ */

/* Per-operation timestamps: the TSC (constant rate on any CPU of the last
 * decade; lfence keeps the operation between the two reads), calibrated
 * against CLOCK_MONOTONIC. Elsewhere CLOCK_MONOTONIC itself. */
static inline uint64_t ticks(void)
{
#if HAVE_TSC
    _mm_lfence();
    uint64_t t = __rdtsc();
    _mm_lfence();
    return t;
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
#endif
}

static double ns_per_tick = 1.0;
static double tick_overhead;          /* ticks of a back-to-back pair of reads */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static void calibrate_timer(void)
{
#if HAVE_TSC
    double span = opt.quick ? 20e6 : 100e6;
    double t0 = now_ns();
    uint64_t c0 = ticks();
    double t1;
    while ((t1 = now_ns()) - t0 < span)
        ;
    uint64_t c1 = ticks();
    if (c1 <= c0)
        die("the time stamp counter does not advance");
    ns_per_tick = (t1 - t0) / (double)(c1 - c0);
#endif
    /* Timer overhead: the median of many back-to-back pairs of reads. */
    enum { N = 4001 };
    static double d[N];
    for (int i = 0; i < N; i++) {
        uint64_t a = ticks();
        uint64_t b = ticks();
        d[i] = (double)(b - a);
    }
    qsort(d, N, sizeof *d, cmp_double);
    tick_overhead = d[N / 2];
}

/* ---- the columns of test 1 ------------------------------------------------- */

static struct kmm *g_mm;              /* kmm_create(NULL): 64 GiB, hosted */
static size_t g_page = 4096;
/* Every pointer goes here, so nothing is optimised away. Per thread: a shared
 * sink would bounce its cache line between the threads of test 3. */
static _Thread_local volatile uintptr_t sink;

typedef void *(*mi_malloc_aligned_fn)(size_t size, size_t alignment);
typedef void (*mi_free_fn)(void *p);
typedef int (*mi_version_fn)(void);
static mi_malloc_aligned_fn p_mi_malloc_aligned;
static mi_free_fn p_mi_free;
static void (*p_mi_collect)(bool force);

/* One function per column and touch mode, each a plain loop of direct calls,
 * so that every column pays the same loop overhead and nothing else. A failed
 * allocation stops the program: a benchmark must not measure NULLs. */
#define PAIR_LOOP(name, TYPE_ALLOC, FREE, TOUCH)                               \
    static NOINLINE void name(long n)                                          \
    {                                                                          \
        for (long i = 0; i < n; i++) {                                         \
            void *p;                                                           \
            TYPE_ALLOC;                                                        \
            if (__builtin_expect(p == NULL, 0))                                \
                die(#name ": allocation failed");                              \
            if (TOUCH)                                                         \
                *(volatile char *)p = (char)i;                                 \
            sink = (uintptr_t)p;                                               \
            FREE;                                                              \
        }                                                                      \
    }

#define KMM_ALLOC   p = kmm_alloc_pages(g_mm, 0, 0)
#define KMM_FREE    kmm_free_pages(g_mm, p)
#define GLIBC_ALLOC if (posix_memalign(&p, g_page, g_page)) p = NULL
#define GLIBC_FREE  free(p)
#define MI_ALLOC    p = p_mi_malloc_aligned(g_page, g_page)
#define MI_FREE     p_mi_free(p)
#define MMAP_ALLOC                                                             \
    p = mmap(NULL, g_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); \
    if (p == MAP_FAILED) p = NULL
#define MMAP_FREE   munmap(p, g_page)

/* bench_kmm_pairs is also the function to give callgrind's --toggle-collect. */
PAIR_LOOP(bench_kmm_pairs, KMM_ALLOC, KMM_FREE, 0)
PAIR_LOOP(bench_kmm_pairs_touch, KMM_ALLOC, KMM_FREE, 1)
PAIR_LOOP(bench_mmap_pairs, MMAP_ALLOC, MMAP_FREE, 0)
PAIR_LOOP(bench_mmap_pairs_touch, MMAP_ALLOC, MMAP_FREE, 1)
PAIR_LOOP(bench_glibc_pairs, GLIBC_ALLOC, GLIBC_FREE, 0)
PAIR_LOOP(bench_glibc_pairs_touch, GLIBC_ALLOC, GLIBC_FREE, 1)
PAIR_LOOP(bench_mi_pairs, MI_ALLOC, MI_FREE, 0)
PAIR_LOOP(bench_mi_pairs_touch, MI_ALLOC, MI_FREE, 1)

enum col { C_KMM, C_KMM_T, C_MMAP, C_MMAP_T, C_GLIBC, C_GLIBC_T, C_MI, C_MI_T, NR_COLS };

static const struct column {
    const char *key;          /* JSON */
    const char *label;        /* table */
    void (*fn)(long n);
    enum col base;            /* the kmm row a ratio is taken against */
} columns[NR_COLS] = {
    [C_KMM]     = { "kmm",            "kmm      alloc_pages/free_pages",      bench_kmm_pairs,         C_KMM },
    [C_KMM_T]   = { "kmm_touch",      "kmm      + write 1 byte",              bench_kmm_pairs_touch,   C_KMM_T },
    [C_MMAP]    = { "mmap",           "mmap     mmap/munmap 1 page",          bench_mmap_pairs,        C_KMM },
    [C_MMAP_T]  = { "mmap_touch",     "mmap     + write 1 byte (fault)",      bench_mmap_pairs_touch,  C_KMM_T },
    [C_GLIBC]   = { "glibc",          "glibc    posix_memalign/free",         bench_glibc_pairs,       C_KMM },
    [C_GLIBC_T] = { "glibc_touch",    "glibc    + write 1 byte",              bench_glibc_pairs_touch, C_KMM_T },
    [C_MI]      = { "mimalloc",       "mimalloc mi_malloc_aligned/mi_free",   bench_mi_pairs,          C_KMM },
    [C_MI_T]    = { "mimalloc_touch", "mimalloc + write 1 byte",              bench_mi_pairs_touch,    C_KMM_T },
};

struct hot_result {
    struct fig ns;            /* per pair */
    struct fig ratio;         /* ns / ns of the base kmm row, taken per repetition */
    long n;                   /* pairs per repetition */
};

/* How many calls of fn make one repetition last about target_ns: doubles a
 * trial count until it takes 2 ms (1 ms quick). Also warms fn up. */
static long calibrate_count(void (*fn)(long), double target_ns)
{
    double floor_ns = opt.quick ? 1e6 : 2e6;
    long k = 64;
    fn(1024);                                         /* first-use costs (caches, faults) */
    for (;;) {
        double t0 = now_ns();
        fn(k);
        double dt = now_ns() - t0;
        if (dt >= floor_ns || k >= (1l << 30)) {
            t0 = now_ns();                            /* once more: a hiccup must not shrink n */
            fn(k);
            double dt2 = now_ns() - t0;
            if (dt2 < dt)
                dt = dt2;
            double n = target_ns * (double)k / (dt > 1 ? dt : 1);
            return n < 1000 ? 1000 : n > 1e9 ? 1000000000l : (long)n;
        }
        k *= 2;
    }
}

/* Every column is timed once per repetition, the columns one after the
 * other, so that a slow spell of the (shared) machine hits all of them
 * alike; each is warmed up just before it is timed. The ratio against kmm
 * is taken within each repetition, then its median. */
static void measure_hot(struct hot_result r[NR_COLS])
{
    double v[NR_COLS][64], ratio[NR_COLS][64];
    for (int c = 0; c < NR_COLS; c++)
        r[c].n = calibrate_count(columns[c].fn, opt.target_ns);
    for (int i = 0; i < opt.reps; i++) {
        for (int c = 0; c < NR_COLS; c++) {
            columns[c].fn(r[c].n / 10 + 1);           /* warm up */
            double t0 = now_ns();
            columns[c].fn(r[c].n);
            double t1 = now_ns();
            v[c][i] = (t1 - t0) / (double)r[c].n;
        }
        for (int c = 0; c < NR_COLS; c++)
            ratio[c][i] = v[c][i] / v[columns[c].base][i];
    }
    for (int c = 0; c < NR_COLS; c++) {
        r[c].ns = summarize(v[c], opt.reps);
        r[c].ratio = summarize(ratio[c], opt.reps);
    }
}

/* ---- test 2: random orders, random frees ------------------------------------ */

static inline uint64_t rnd(uint64_t *s)      /* xorshift64* */
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Test 2 reports, for each of these sets of operations, these statistics. */
enum rrow { ROW_ALL, ROW_ALLOC, ROW_FREE, ROW_FIRST, ROW_LAST, NR_RROWS };
enum rcol { RC_MEAN, RC_P50, RC_P99, RC_MAX, NR_RCOLS };
static const char *const rrow_key[NR_RROWS] = { "all", "alloc", "free", "first_tenth", "last_tenth" };
static const char *const rrow_label[NR_RROWS] = {
    "all operations", "allocations", "frees", "first tenth of the run", "last tenth of the run",
};
static const char *const rcol_key[NR_RCOLS] = { "mean_ns", "p50_ns", "p99_ns", "max_ns" };
#define RSTAT(row, col) ((row) * NR_RCOLS + (col))
#define R_LIVE_MEAN (NR_RROWS * NR_RCOLS)
#define NR_RSTATS (R_LIVE_MEAN + 1)

/* The allocators of test 2: kmm_alloc_pages(order), and the peers asked for
 * the same 2^order pages aligned to a page. */
enum ralloc { RA_KMM, RA_MI, RA_GLIBC, NR_RALLOC };
static const char *const ralloc_key[NR_RALLOC] = { "kmm", "mimalloc", "glibc" };
static const char *const ralloc_label[NR_RALLOC] = {
    "kmm      kmm_alloc_pages", "mimalloc mi_malloc_aligned", "glibc    posix_memalign",
};

struct rand_result {
    struct fig s[NR_RSTATS];
    struct fig peer[NR_RALLOC][NR_RCOLS];   /* all operations, each allocator; [RA_KMM] = s[ROW_ALL] */
    struct fig wall[NR_RALLOC];              /* ns per operation over the whole loop, first-byte writes included */
    struct fig aging;          /* last tenth mean / first tenth mean */
    struct fig order_alloc[RAND_MAX_ORDER + 1], order_free[RAND_MAX_ORDER + 1];   /* mean ns by order */
    long ops;
    int check;                 /* kmm_check after the last repetition */
};

static uint32_t *lat;          /* latency of each operation, ticks minus the timer overhead */
static uint8_t *lat_kind;      /* 0 = alloc, 1 = free */
static uint32_t *scratch;

static double ticks_to_ns(double t) { return t * ns_per_tick; }

/* Mean, p50, p99 and maximum (ns) of lat[from, to), only the operations of
 * kind (0 alloc, 1 free) or all of them when kind < 0, into out[RC_*]. */
static void lat_stats(long from, long to, int kind, double out[NR_RCOLS])
{
    long m = 0;
    double sum = 0;
    for (long i = from; i < to; i++) {
        if (kind >= 0 && lat_kind[i] != kind)
            continue;
        scratch[m++] = lat[i];
        sum += lat[i];
    }
    if (m == 0) {
        for (int c = 0; c < NR_RCOLS; c++)
            out[c] = 0;
        return;
    }
    qsort(scratch, (size_t)m, sizeof *scratch, cmp_u32);
    long i99 = (m * 99 + 99) / 100 - 1;             /* ceil(0.99 m) - 1 */
    out[RC_MEAN] = ticks_to_ns(sum / (double)m);
    out[RC_P50] = ticks_to_ns(scratch[m / 2]);
    out[RC_P99] = ticks_to_ns(scratch[i99 < 0 ? 0 : i99]);
    out[RC_MAX] = ticks_to_ns(scratch[m - 1]);
}

static inline void *ralloc(enum ralloc a, unsigned order)
{
    size_t len = g_page << order;
    void *p = NULL;
    switch (a) {
    case RA_KMM:
        return kmm_alloc_pages(g_mm, order, 0);
    case RA_MI:
        return p_mi_malloc_aligned(len, g_page);
    default:
        return posix_memalign(&p, g_page, len) ? NULL : p;
    }
}

static inline void rfree(enum ralloc a, void *p)
{
    switch (a) {
    case RA_KMM:
        kmm_free_pages(g_mm, p);
        break;
    case RA_MI:
        p_mi_free(p);
        break;
    default:
        free(p);
    }
}

/* One repetition of test 2 on allocator a; *wall_ns gets the ns per
 * operation of the whole loop (timer reads and first-byte writes in). */
static void rand_rep(enum ralloc a, uint64_t *seed, long ops, double out[NR_RSTATS],
                     double oalloc[RAND_MAX_ORDER + 1], double ofree[RAND_MAX_ORDER + 1], double *wall_ns)
{
    static void *live[RAND_LIVE_MAX];
    static unsigned char live_order[RAND_LIVE_MAX];
    long nlive = 0;
    double live_sum = 0;
    double osum[2][RAND_MAX_ORDER + 1] = { { 0 } };
    long ocnt[2][RAND_MAX_ORDER + 1] = { { 0 } };

    /* Untimed: start from a heap holding half the live-set bound. */
    while (nlive < RAND_LIVE_MAX / 2) {
        unsigned order = (unsigned)(rnd(seed) % (RAND_MAX_ORDER + 1));
        void *p = ralloc(a, order);
        if (!p)
            die("random test: allocation failed while filling");
        *(volatile char *)p = 1;
        live_order[nlive] = (unsigned char)order;
        live[nlive++] = p;
    }

    uint64_t ovh = (uint64_t)tick_overhead;
    double w0 = now_ns();
    for (long i = 0; i < ops; i++) {
        uint64_t r = rnd(seed);
        uint64_t t0, t1;
        unsigned order;
        if (nlive == RAND_LIVE_MAX || (nlive > 0 && (r & 1))) {
            long j = (long)((r >> 1) % (uint64_t)nlive);
            void *p = live[j];
            order = live_order[j];
            live[j] = live[--nlive];
            live_order[j] = live_order[nlive];
            t0 = ticks();
            rfree(a, p);
            t1 = ticks();
            lat_kind[i] = 1;
        } else {
            order = (unsigned)((r >> 1) % (RAND_MAX_ORDER + 1));
            t0 = ticks();
            void *p = ralloc(a, order);
            t1 = ticks();
            if (!p)
                die("random test: allocation failed");
            *(volatile char *)p = 1;          /* use it, as a caller would (untimed) */
            live_order[nlive] = (unsigned char)order;
            live[nlive++] = p;
            lat_kind[i] = 0;
        }
        uint64_t d = t1 - t0;
        d = d > ovh ? d - ovh : 0;
        lat[i] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
        osum[lat_kind[i]][order] += (double)lat[i];
        ocnt[lat_kind[i]][order]++;
        live_sum += (double)nlive;
    }
    *wall_ns = (now_ns() - w0) / (double)ops;
    while (nlive > 0)
        rfree(a, live[--nlive]);

    long tenth = ops / 10;
    lat_stats(0, ops, -1, &out[RSTAT(ROW_ALL, 0)]);
    lat_stats(0, ops, 0, &out[RSTAT(ROW_ALLOC, 0)]);
    lat_stats(0, ops, 1, &out[RSTAT(ROW_FREE, 0)]);
    lat_stats(0, tenth, -1, &out[RSTAT(ROW_FIRST, 0)]);
    lat_stats(ops - tenth, ops, -1, &out[RSTAT(ROW_LAST, 0)]);
    out[R_LIVE_MEAN] = live_sum / (double)ops;
    for (int o = 0; o <= RAND_MAX_ORDER; o++) {
        oalloc[o] = ocnt[0][o] ? ticks_to_ns(osum[0][o] / (double)ocnt[0][o]) : 0;
        ofree[o] = ocnt[1][o] ? ticks_to_ns(osum[1][o] / (double)ocnt[1][o]) : 0;
    }
}

static struct rand_result measure_random(void)
{
    struct rand_result r;
    long ops = opt.rand_ops;
    r.ops = ops;
    lat = malloc((size_t)ops * sizeof *lat);
    lat_kind = malloc((size_t)ops);
    scratch = malloc((size_t)ops * sizeof *scratch);
    if (!lat || !lat_kind || !scratch)
        die("out of memory for latency samples");
    memset(lat, 0, (size_t)ops * sizeof *lat);   /* fault them in before timing */
    memset(lat_kind, 0, (size_t)ops);
    memset(scratch, 0, (size_t)ops * sizeof *scratch);

    /* Each repetition runs kmm, then the peers, on the same operations
     * (the same seed), so that a slow spell of the machine hits all alike. */
    uint64_t seed = opt.seed;
    double v[NR_RSTATS][64], aging[64], out[NR_RSTATS], wall1;
    double pv[NR_RALLOC][NR_RCOLS][64], wall[NR_RALLOC][64];
    double oa[RAND_MAX_ORDER + 1][64], of[RAND_MAX_ORDER + 1][64], oa1[RAND_MAX_ORDER + 1], of1[RAND_MAX_ORDER + 1];
    for (int a = 0; a < NR_RALLOC; a++) {   /* warm up */
        uint64_t s0 = seed;
        rand_rep((enum ralloc)a, &s0, ops / 10 + 10, out, oa1, of1, &wall1);
    }
    for (int i = 0; i < opt.reps; i++) {
        uint64_t rep_seed = seed;
        for (int a = NR_RALLOC - 1; a >= 0; a--) {   /* kmm last: its statistics stay in out */
            seed = rep_seed;
            rand_rep((enum ralloc)a, &seed, ops, out, oa1, of1, &wall1);
            wall[a][i] = wall1;
            for (int c = 0; c < NR_RCOLS; c++)
                pv[a][c][i] = out[RSTAT(ROW_ALL, c)];
        }
        for (int o = 0; o <= RAND_MAX_ORDER; o++) {
            oa[o][i] = oa1[o];
            of[o][i] = of1[o];
        }
        for (int k = 0; k < NR_RSTATS; k++)
            v[k][i] = out[k];
        double first = out[RSTAT(ROW_FIRST, RC_MEAN)], last = out[RSTAT(ROW_LAST, RC_MEAN)];
        aging[i] = first > 0 ? last / first : 0;
    }
    for (int k = 0; k < NR_RSTATS; k++)
        r.s[k] = summarize(v[k], opt.reps);
    for (int a = 0; a < NR_RALLOC; a++) {
        for (int c = 0; c < NR_RCOLS; c++)
            r.peer[a][c] = summarize(pv[a][c], opt.reps);
        r.wall[a] = summarize(wall[a], opt.reps);
    }
    r.aging = summarize(aging, opt.reps);
    for (int o = 0; o <= RAND_MAX_ORDER; o++) {
        r.order_alloc[o] = summarize(oa[o], opt.reps);
        r.order_free[o] = summarize(of[o], opt.reps);
    }
    r.check = kmm_check(g_mm);
    free(lat);
    free(lat_kind);
    free(scratch);
    return r;
}

/* ---- test 3: two threads against one ---------------------------------------- */

enum mt_alloc { MT_KMM, MT_KMM_OWN_MM, MT_MI };

/* The loops of test 3 take the memory system as an argument, so that the
 * control with one memory system per thread runs the very same code. */
static NOINLINE void mt_pairs(struct kmm *mm, enum mt_alloc a, bool batch, long n)
{
    if (!batch) {
        for (long i = 0; i < n; i++) {
            void *p = a == MT_MI ? p_mi_malloc_aligned(g_page, g_page) : kmm_alloc_pages(mm, 0, 0);
            if (__builtin_expect(p == NULL, 0))
                die("thread test: allocation failed");
            sink = (uintptr_t)p;
            if (a == MT_MI)
                p_mi_free(p);
            else
                kmm_free_pages(mm, p);
        }
        return;
    }
    void *b[MT_BATCH];
    for (long r = 0; r < n / MT_BATCH; r++) {
        for (int i = 0; i < MT_BATCH; i++) {
            b[i] = a == MT_MI ? p_mi_malloc_aligned(g_page, g_page) : kmm_alloc_pages(mm, 0, 0);
            if (__builtin_expect(b[i] == NULL, 0))
                die("thread test: allocation failed");
        }
        sink = (uintptr_t)b[MT_BATCH - 1];
        BARRIER();
        for (int i = 0; i < MT_BATCH; i++) {
            if (a == MT_MI)
                p_mi_free(b[i]);
            else
                kmm_free_pages(mm, b[i]);
        }
    }
}

struct mt_arg {
    struct kmm *mm;
    enum mt_alloc a;
    bool batch;
    long n;
    pthread_barrier_t *bar;
    double t0, t1;
};

static void *mt_worker(void *arg)
{
    struct mt_arg *m = arg;
    mt_pairs(m->mm, m->a, m->batch, m->n / 10 + MT_BATCH);   /* warm up: make and fill this thread's cache */
    pthread_barrier_wait(m->bar);
    m->t0 = now_ns();
    mt_pairs(m->mm, m->a, m->batch, m->n);
    m->t1 = now_ns();
    return NULL;
}

/* Pairs per second of nthreads threads each doing n pairs at once. Every
 * run uses fresh threads, the single-thread run too, so both start alike. */
static double mt_run(struct kmm *own[2], enum mt_alloc a, bool batch, int nthreads, long n)
{
    pthread_t th[2];
    struct mt_arg m[2];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)nthreads);
    for (int i = 0; i < nthreads; i++) {
        m[i] = (struct mt_arg){ .mm = a == MT_KMM_OWN_MM ? own[i] : g_mm, .a = a, .batch = batch,
                                .n = n, .bar = &bar };
        if (pthread_create(&th[i], NULL, mt_worker, &m[i]))
            die("pthread_create failed");
    }
    double start = 1e300, end = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        if (m[i].t0 < start)
            start = m[i].t0;
        if (m[i].t1 > end)
            end = m[i].t1;
    }
    pthread_barrier_destroy(&bar);
    long pairs = batch ? n / MT_BATCH * MT_BATCH : n;
    return (double)nthreads * (double)pairs / (end - start) * 1e9;
}

/* The rows of test 3. The own-mm rows are the same loops with one memory
 * system per thread; mimalloc's rows show what the machine gives. */
enum { MT_PAIRS, MT_BATCH_ROW, MT_OWN_PAIRS, MT_OWN_BATCH, MT_MI_PAIRS, MT_MI_BATCH, NR_MT };
static const struct mt_row {
    const char *key, *label;
    enum mt_alloc a;
    bool batch;
} mt_rows[NR_MT] = {
    [MT_PAIRS]     = { "kmm_pairs", "kmm      order-0 pairs", MT_KMM, false },
    [MT_BATCH_ROW] = { "kmm_batch64", "kmm      batches of 64 pages", MT_KMM, true },
    [MT_OWN_PAIRS] = { "kmm_own_mm_pairs", "kmm      pairs, own mm (control)", MT_KMM_OWN_MM, false },
    [MT_OWN_BATCH] = { "kmm_own_mm_batch64", "kmm      batches, own mm (control)", MT_KMM_OWN_MM, true },
    [MT_MI_PAIRS]  = { "mimalloc_pairs", "mimalloc page pairs (control)", MT_MI, false },
    [MT_MI_BATCH]  = { "mimalloc_batch64", "mimalloc batches of 64 (control)", MT_MI, true },
};

struct mt_result {
    struct fig one, two, ratio;   /* Mpairs/s, Mpairs/s, two/one */
    long n;                       /* pairs per thread per run */
};

struct mt_results {
    struct mt_result row[NR_MT];
    /* kmm's ratio on one shared memory system over its ratio with one per
     * thread, per repetition: 1.0 = sharing costs nothing */
    struct fig sharing_pairs, sharing_batch;
};

static enum mt_alloc mt_cal_a;
static bool mt_cal_batch;
static void mt_cal(long n) { mt_pairs(g_mm, mt_cal_a, mt_cal_batch, n); }

/* Every repetition runs every row (one thread, then two), the rows one
 * after the other, so that a slow spell of the machine hits them alike. */
static void measure_mt(struct mt_results *res)
{
    double one[NR_MT][64], two[NR_MT][64], ratio[NR_MT][64], sp[64], sb[64];
    struct kmm *own[2];
    for (int i = 0; i < 2; i++)
        if (!(own[i] = kmm_create(NULL)))
            die_errno("kmm_create(NULL) for the thread control");
    for (int k = 0; k < NR_MT; k++) {
        mt_cal_a = mt_rows[k].a == MT_MI ? MT_MI : MT_KMM;
        mt_cal_batch = mt_rows[k].batch;
        long n = calibrate_count(mt_cal, opt.mt_target_ns);
        res->row[k].n = mt_rows[k].batch && n < MT_BATCH * 16 ? MT_BATCH * 16 : n;
    }
    for (int i = 0; i < opt.reps; i++) {
        for (int k = 0; k < NR_MT; k++) {
            one[k][i] = mt_run(own, mt_rows[k].a, mt_rows[k].batch, 1, res->row[k].n) / 1e6;
            two[k][i] = mt_run(own, mt_rows[k].a, mt_rows[k].batch, 2, res->row[k].n) / 1e6;
            ratio[k][i] = two[k][i] / one[k][i];
        }
        sp[i] = ratio[MT_PAIRS][i] / ratio[MT_OWN_PAIRS][i];
        sb[i] = ratio[MT_BATCH_ROW][i] / ratio[MT_OWN_BATCH][i];
    }
    for (int k = 0; k < NR_MT; k++) {
        res->row[k].one = summarize(one[k], opt.reps);
        res->row[k].two = summarize(two[k], opt.reps);
        res->row[k].ratio = summarize(ratio[k], opt.reps);
    }
    res->sharing_pairs = summarize(sp, opt.reps);
    res->sharing_batch = summarize(sb, opt.reps);
    kmm_destroy(own[0]);
    kmm_destroy(own[1]);
}

/* ---- test 4: creating a 64 GiB memory system -------------------------------- */

struct statm {
    long size, resident;       /* pages */
};

static struct statm read_statm(void)
{
    struct statm s = { 0, 0 };
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &s.size, &s.resident) != 2)
        die("cannot read /proc/self/statm");
    fclose(f);
    return s;
}

enum cstat { K_CREATE_MS, K_FIRST_US, K_DESTROY_MS, K_RSS_CREATE_KIB, K_RSS_FIRST_KIB,
             K_RSS_DESTROY_KIB, K_VSZ_GIB, K_CREATE_FAULTS, K_FIRST_FAULTS, NR_CSTATS };
static const char *const cstat_key[NR_CSTATS] = {
    "create_ms", "first_alloc_us", "destroy_ms", "rss_after_create_kib",
    "rss_after_first_alloc_kib", "rss_after_destroy_kib", "vsz_after_create_gib",
    "create_page_faults", "first_alloc_page_faults",
};

static long minor_faults(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_minflt : 0;
}

struct create_result {
    struct fig s[NR_CSTATS];
    uint64_t mem_size;
};

static struct create_result measure_create(void)
{
    struct create_result r;
    double v[NR_CSTATS][64];
    double sys_page = (double)sysconf(_SC_PAGESIZE);
    struct kmm_config cfg = { .mem_size = 64ull << 30 };
    r.mem_size = cfg.mem_size;

    for (int i = -1; i < opt.reps; i++) {             /* i == -1: warm up */
        struct statm s0 = read_statm();
        long f0 = minor_faults();
        double t0 = now_ns();
        struct kmm *mm = kmm_create(&cfg);
        double t1 = now_ns();
        long f1 = minor_faults();
        if (!mm)
            die_errno("kmm_create(64 GiB)");
        struct statm s1 = read_statm();
        long f2 = minor_faults();
        double t2 = now_ns();
        void *p = kmm_alloc_pages(mm, 0, 0);
        if (!p)
            die("first allocation from a new memory system failed");
        *(volatile char *)p = 1;
        kmm_free_pages(mm, p);
        double t3 = now_ns();
        long f3 = minor_faults();
        struct statm s2 = read_statm();
        double t4 = now_ns();
        kmm_destroy(mm);
        double t5 = now_ns();
        struct statm s3 = read_statm();
        if (i < 0)
            continue;
        v[K_CREATE_MS][i] = (t1 - t0) / 1e6;
        v[K_FIRST_US][i] = (t3 - t2) / 1e3;
        v[K_DESTROY_MS][i] = (t5 - t4) / 1e6;
        v[K_RSS_CREATE_KIB][i] = (double)(s1.resident - s0.resident) * sys_page / 1024;
        v[K_RSS_FIRST_KIB][i] = (double)(s2.resident - s0.resident) * sys_page / 1024;
        v[K_RSS_DESTROY_KIB][i] = (double)(s3.resident - s0.resident) * sys_page / 1024;
        v[K_VSZ_GIB][i] = (double)(s1.size - s0.size) * sys_page / (double)(1ull << 30);
        v[K_CREATE_FAULTS][i] = (double)(f1 - f0);
        v[K_FIRST_FAULTS][i] = (double)(f3 - f2);
    }
    for (int k = 0; k < NR_CSTATS; k++)
        r.s[k] = summarize(v[k], opt.reps);
    return r;
}

/* ---- test 5: resident memory over time ----------------------------------------
 *
 * 1 GiB allocated as 256 blocks of 4 MiB, every page written, then freed;
 * resident memory (growth over the start of this test, MiB) sampled while
 * the program goes on calling the allocator (an alloc+free of 64 KiB every
 * millisecond, past kmm's per-thread caches), then after each allocator's
 * "drain" (kmm_drain, mi_collect(true), malloc_trim(0)). */

#define RSS_BLOCKS 256
#define RSS_ORDER  10
static const int rss_at_ms[] = { 0, 50, 100, 200, 300, 500, 1000 };
#define NR_RSS_AT ((int)(sizeof rss_at_ms / sizeof rss_at_ms[0]))

struct rss_result {
    double live_mib, freed_mib[NR_RSS_AT], drained_mib;
};

static double rss_mib(void)
{
    return (double)read_statm().resident * (double)sysconf(_SC_PAGESIZE) / (1 << 20);
}

static struct rss_result measure_rss(enum ralloc a)
{
    struct rss_result r;
    static void *blk[RSS_BLOCKS];
    double rss0 = rss_mib();
    for (int i = 0; i < RSS_BLOCKS; i++) {
        blk[i] = ralloc(a, RSS_ORDER);
        if (!blk[i])
            die("resident memory test: allocation failed");
        for (size_t off = 0; off < (g_page << RSS_ORDER); off += g_page)
            ((volatile char *)blk[i])[off] = 1;
    }
    r.live_mib = rss_mib() - rss0;
    for (int i = 0; i < RSS_BLOCKS; i++)
        rfree(a, blk[i]);
    double t0 = now_ns();
    for (int k = 0; k < NR_RSS_AT; k++) {
        while ((now_ns() - t0) / 1e6 < rss_at_ms[k]) {
            struct timespec ts = { 0, 1000000 };
            nanosleep(&ts, NULL);
            void *p = ralloc(a, 4);
            if (!p)
                die("resident memory test: allocation failed");
            rfree(a, p);
        }
        r.freed_mib[k] = rss_mib() - rss0;
    }
    if (a == RA_KMM)
        kmm_drain(g_mm);
    else if (a == RA_MI && p_mi_collect)
        p_mi_collect(true);
    else if (a == RA_GLIBC)
        malloc_trim(0);
    r.drained_mib = rss_mib() - rss0;
    return r;
}

/* ---- the machine and the libraries ------------------------------------------ */

/* The machine is in sys (harness.h); these are the libraries of the columns. */
static struct {
    char glibc_lib[256], mi_lib[256];
    int mi_version;
    bool glibc_is_libc;        /* posix_memalign resolves into libc.so */
    bool mi_override_active;   /* mimalloc's malloc is the process's malloc */
} libs;

static void probe_libraries(void)
{
    /* mimalloc: loaded locally, so its malloc/free/posix_memalign exports do
     * not interpose on the process's. */
    void *h = dlopen(KMM_BENCH_MIMALLOC_PATH, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        h = dlopen("libmimalloc.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "bench/pages: cannot load mimalloc (%s): %s\n"
                "install it with: sudo apt-get install libmimalloc-dev\n",
                KMM_BENCH_MIMALLOC_PATH, dlerror());
        exit(1);
    }
    *(void **)&p_mi_malloc_aligned = dlsym(h, "mi_malloc_aligned");
    *(void **)&p_mi_free = dlsym(h, "mi_free");
    *(void **)&p_mi_collect = dlsym(h, "mi_collect");
    mi_version_fn mi_version;
    *(void **)&mi_version = dlsym(h, "mi_version");
    if (!p_mi_malloc_aligned || !p_mi_free)
        die("mimalloc has no mi_malloc_aligned/mi_free");
    libs.mi_version = mi_version ? mi_version() : 0;
    lib_of((void *)p_mi_malloc_aligned, libs.mi_lib, sizeof libs.mi_lib);

    /* Which library the process's posix_memalign (the "glibc" column) and
     * malloc really come from. */
    void *pm = dlsym(RTLD_DEFAULT, "posix_memalign");
    lib_of(pm, libs.glibc_lib, sizeof libs.glibc_lib);
    libs.glibc_is_libc = strstr(libs.glibc_lib, "libc.so") != NULL;
    void *mi_malloc_export = dlsym(h, "malloc");
    libs.mi_override_active = mi_malloc_export && mi_malloc_export == dlsym(RTLD_DEFAULT, "malloc");
    if (!libs.glibc_is_libc || libs.mi_override_active)
        fprintf(stderr, "bench/pages: WARNING: the process allocator is not glibc's "
                "(posix_memalign from %s); the \"glibc\" column does not measure glibc\n",
                libs.glibc_lib);
}

/* ---- output ----------------------------------------------------------------- */

static const char *met(bool ok) { return ok ? "met" : "NOT met"; }

static void print_header_table(void)
{
    printf("kmm page allocator benchmark (bench/pages)%s\n", opt.quick ? " -- QUICK smoke run, figures are rough" : "");
    printf("machine : %ld CPUs online (nproc %ld), %s, %s, load average %.2f at start\n",
           sys.nproc, sys.nproc_affinity, sys.cpu, sys.kernel, sys.loadavg);
    printf("note    : a shared, noisy machine (other jobs run on it); every figure is the median of\n"
           "          %d repetitions, [min..max] beside it; nothing is pinned\n", opt.reps);
#ifndef __OPTIMIZE__
    printf("WARNING : this benchmark was built without optimisation; use -DCMAKE_BUILD_TYPE=Release\n");
#endif
    printf("columns : kmm      = kmm_alloc_pages(mm, 0, 0)/kmm_free_pages on kmm_create(NULL)\n"
           "                     (hosted, 64 GiB memfd, %zu-byte pages), statically linked\n", g_page);
    printf("          mmap     = mmap/munmap of one anonymous %zu-byte page (the kernel)\n", g_page);
    printf("          glibc    = posix_memalign(%zu, %zu)/free of glibc %s from %s%s\n", g_page, g_page,
           gnu_get_libc_version(), libs.glibc_lib,
           libs.glibc_is_libc && !libs.mi_override_active ? " (the process allocator)" : "  ** NOT glibc **");
    printf("          mimalloc = mi_malloc_aligned(%zu, %zu)/mi_free of mimalloc %d.%d.%d from %s,\n"
           "                     dlopen(RTLD_LOCAL): its malloc override is %s\n", g_page, g_page,
           libs.mi_version / 100, libs.mi_version / 10 % 10, libs.mi_version % 10, libs.mi_lib,
           libs.mi_override_active ? "ACTIVE" : "not active");
    printf("timer   : batches with CLOCK_MONOTONIC; single operations with %s, %.3f ns/tick,\n"
           "          read-pair overhead %.1f ns subtracted\n",
           HAVE_TSC ? "lfence;rdtsc calibrated against CLOCK_MONOTONIC" : "CLOCK_MONOTONIC",
           ns_per_tick, ticks_to_ns(tick_overhead));
}

static void print_json_header(void)
{
    printf("{\n  \"bench\": \"pages\",\n  \"quick\": %s,\n  \"reps\": %d,\n", opt.quick ? "true" : "false", opt.reps);
#ifdef __OPTIMIZE__
    printf("  \"optimized\": true,\n");
#else
    printf("  \"optimized\": false,\n");
#endif
    printf("  \"machine\": {\"nproc\": %ld, \"nproc_affinity\": %ld, \"cpu\": \"%s\", \"kernel\": \"%s\", "
           "\"loadavg\": %.2f, \"note\": \"shared, noisy machine; medians of reps; nothing pinned\"},\n",
           sys.nproc, sys.nproc_affinity, sys.cpu, sys.kernel, sys.loadavg);
    printf("  \"allocators\": {\"kmm\": \"kmm_alloc_pages/kmm_free_pages, kmm_create(NULL), page %zu\", "
           "\"mmap\": \"mmap/munmap anonymous page\", "
           "\"glibc\": {\"functions\": \"posix_memalign/free\", \"version\": \"%s\", \"library\": \"%s\", \"is_glibc\": %s}, "
           "\"mimalloc\": {\"functions\": \"mi_malloc_aligned/mi_free\", \"version\": %d, \"library\": \"%s\", "
           "\"loaded\": \"dlopen RTLD_LOCAL\", \"override_active\": %s}},\n",
           g_page, gnu_get_libc_version(), libs.glibc_lib,
           libs.glibc_is_libc && !libs.mi_override_active ? "true" : "false",
           libs.mi_version, libs.mi_lib, libs.mi_override_active ? "true" : "false");
    printf("  \"timer\": {\"per_op\": \"%s\", \"ns_per_tick\": %.5f, \"overhead_ns\": %.2f},\n",
           HAVE_TSC ? "rdtsc" : "clock_gettime", ns_per_tick, ticks_to_ns(tick_overhead));
}

/* ---- main ------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: pages [--json] [--quick] [--reps N] [--ops N] [--seed N] [--hot-loop N]\n"
            "  --json        JSON instead of the table\n"
            "  --quick       a fast smoke run (3 repetitions, short runs): rough figures\n"
            "  --reps N      repetitions per figure (default 9; the median is reported)\n"
            "  --ops N       operations per repetition of the random test (default 1000000)\n"
            "  --seed N      seed of the random test\n"
            "  --hot-loop N  only run N hot order-0 kmm pairs (for valgrind --tool=callgrind\n"
            "                --toggle-collect=bench_kmm_pairs) and exit\n");
}

int main(int argc, char **argv)
{
    bool reps_given = false, ops_given = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (!strcmp(a, "--json")) {
            opt.json = true;
        } else if (!strcmp(a, "--quick")) {
            opt.quick = true;
        } else if (!strcmp(a, "--reps") && has_val) {
            opt.reps = (int)parse_long(argv[++i], "--reps");
            reps_given = true;
        } else if (!strcmp(a, "--ops") && has_val) {
            opt.rand_ops = parse_long(argv[++i], "--ops");
            ops_given = true;
        } else if (!strcmp(a, "--seed") && has_val) {
            opt.seed = (uint64_t)parse_long(argv[++i], "--seed");
        } else if (!strcmp(a, "--hot-loop") && has_val) {
            opt.hot_loop = parse_long(argv[++i], "--hot-loop");
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (opt.quick) {
        if (!reps_given)
            opt.reps = 3;
        if (!ops_given)
            opt.rand_ops = 100000;
        opt.target_ns = 5e6;
        opt.mt_target_ns = 10e6;
    }
    if (opt.reps > 64)
        opt.reps = 64;
    if (opt.rand_ops < 100)
        opt.rand_ops = 100;

    g_mm = kmm_create(NULL);
    if (!g_mm && opt.hot_loop) {
        /* Valgrind cannot map 64 GiB. The instructions of a pair do not
         * depend on the size as long as the three default areas exist, as
         * they do from 4 GiB up. */
        fprintf(stderr, "bench/pages: kmm_create(NULL) failed (%s)\n", strerror(errno));
        for (unsigned gib = 8; !g_mm && gib >= 1; gib /= 2) {
            struct kmm_config small = { .mem_size = (uint64_t)gib << 30 };
            g_mm = kmm_create(&small);
            if (g_mm)
                fprintf(stderr, "bench/pages: --hot-loop uses a %u GiB memory system\n", gib);
        }
    }
    if (!g_mm)
        die_errno("kmm_create(NULL)");
    struct kmm_page_stats st;
    kmm_page_stats(g_mm, &st);
    g_page = st.page_size ? st.page_size : 4096;

    if (opt.hot_loop) {
        bench_kmm_pairs(1000);                        /* warm the thread cache */
        bench_kmm_pairs(opt.hot_loop);
        kmm_destroy(g_mm);
        return 0;
    }

    probe_system();
    probe_libraries();
    struct cpu_snap snap0 = cpu_snap(false);
    calibrate_timer();

    /* 1. order-0 pairs, hot, one thread. */
    struct hot_result hot[NR_COLS];
    measure_hot(hot);

    /* 2. random orders, random frees. */
    struct rand_result rr = measure_random();

    /* 3. two threads against one. */
    static struct mt_results mtr;
    measure_mt(&mtr);
    const struct mt_result *mt = mtr.row;

    /* 4. creating a 64 GiB memory system. */
    struct create_result cr = measure_create();

    /* 5. resident memory over time. */
    struct rss_result rss[NR_RALLOC];
    for (int a = 0; a < NR_RALLOC; a++)
        rss[a] = measure_rss((enum ralloc)a);
    noise_measure(snap0, cpu_snap(false));

    double kmm_ns = hot[C_KMM].ns.med;
    /* mimalloc's thread-local pages scale on any free pair of CPUs; well
     * below 2 means the second CPU was busy for part of the run. */
    bool control_scaled = mt[MT_MI_PAIRS].ratio.med >= 1.75 && mt[MT_MI_BATCH].ratio.med >= 1.75;
    bool ahead = true;
    for (int c = C_MMAP; c < NR_COLS; c++)
        if (hot[c].ratio.med <= 1)
            ahead = false;

    if (opt.json) {
        print_json_header();
        printf("  \"hot_order0\": {\n");
        for (int c = 0; c < NR_COLS; c++) {
            printf("    \"%s\": {", columns[c].key);
            json_fig("ns_per_pair", hot[c].ns, ", ");
            printf("\"pairs_per_rep\": %ld, ", hot[c].n);
            char key[48];
            snprintf(key, sizeof key, "ratio_vs_%s", columns[columns[c].base].key);
            json_fig(key, hot[c].ratio, "}");
            printf("%s\n", c + 1 < NR_COLS ? "," : "");
        }
        printf("  },\n  \"hot_order0_targets\": {\"kmm_under_20ns\": %s, \"kmm_ahead_of_all\": %s},\n",
               kmm_ns < 20 ? "true" : "false", ahead ? "true" : "false");
        printf("  \"random_orders\": {\"ops_per_rep\": %ld, \"max_order\": %d, \"live_max\": %d, "
               "\"live_start\": %d, \"seed\": %llu, ", rr.ops, RAND_MAX_ORDER, RAND_LIVE_MAX,
               RAND_LIVE_MAX / 2, (unsigned long long)opt.seed);
        for (int row = 0; row < NR_RROWS; row++) {
            for (int col = 0; col < NR_RCOLS; col++) {
                char key[48];
                snprintf(key, sizeof key, "%s_%s", rrow_key[row], rcol_key[col]);
                json_fig(key, rr.s[RSTAT(row, col)], ", ");
            }
        }
        json_fig("mean_live_blocks", rr.s[R_LIVE_MEAN], ", ");
        json_fig("last_over_first_mean", rr.aging, ", ");
        for (int k = 0; k < 2; k++) {
            printf("\"%s_mean_ns_by_order\": [", k ? "free" : "alloc");
            for (int o = 0; o <= RAND_MAX_ORDER; o++)
                printf("%.4g%s", (k ? rr.order_free : rr.order_alloc)[o].med, o < RAND_MAX_ORDER ? ", " : "], ");
        }
        printf("\"allocators\": {");
        for (int a = 0; a < NR_RALLOC; a++) {
            printf("\"%s\": {", ralloc_key[a]);
            for (int c = 0; c < NR_RCOLS; c++)
                json_fig(rcol_key[c], rr.peer[a][c], ", ");
            json_fig("loop_ns_per_op", rr.wall[a], a + 1 < NR_RALLOC ? "}, " : "}}, ");
        }
        printf("\"kmm_check\": %s},\n", rr.check == 0 ? "\"ok\"" : "\"FAILED\"");
        printf("  \"threads\": {\"nproc\": %ld, \"control_scaled\": %s, ", sys.nproc,
               control_scaled ? "true" : "false");
        for (int i = 0; i < NR_MT; i++) {
            printf("\"%s\": {\"pairs_per_thread\": %ld, ", mt_rows[i].key, mt[i].n);
            json_fig("one_thread_mpairs_per_s", mt[i].one, ", ");
            json_fig("two_threads_mpairs_per_s", mt[i].two, ", ");
            json_fig("ratio", mt[i].ratio, "}");
            printf(", ");
        }
        json_fig("shared_over_own_mm_pairs", mtr.sharing_pairs, ", ");
        json_fig("shared_over_own_mm_batch64", mtr.sharing_batch, "},\n");
        printf("  \"noise\": {\"wall_s\": %.2f, \"other_processes_cpus\": %.3f, \"steal_pct\": %.2f},\n",
               noise.wall_s, noise.others_cpus, noise.steal_pct);
        printf("  \"create_64gib\": {\"mem_size\": %llu, ", (unsigned long long)cr.mem_size);
        for (int k = 0; k < NR_CSTATS; k++)
            json_fig(cstat_key[k], cr.s[k], ", ");
        printf("\"under_100ms\": %s},\n", cr.s[K_CREATE_MS].med < 100 ? "true" : "false");
        printf("  \"rss_1gib_mib\": {\"at_ms\": [");
        for (int k = 0; k < NR_RSS_AT; k++)
            printf("%d%s", rss_at_ms[k], k + 1 < NR_RSS_AT ? ", " : "], ");
        for (int a = 0; a < NR_RALLOC; a++) {
            printf("\"%s\": {\"live\": %.1f, \"freed\": [", ralloc_key[a], rss[a].live_mib);
            for (int k = 0; k < NR_RSS_AT; k++)
                printf("%.1f%s", rss[a].freed_mib[k], k + 1 < NR_RSS_AT ? ", " : "], ");
            printf("\"drained\": %.1f}%s", rss[a].drained_mib, a + 1 < NR_RALLOC ? ", " : "}\n}\n");
        }
        kmm_destroy(g_mm);
        return rr.check == 0 ? 0 : 1;
    }

    print_header_table();

    printf("\n%-46s %7s  %-20s %10s  %s\n", "1. order-0 alloc+free pair, hot, one thread", "ns/pair",
           "[min..max]", "pairs/rep", "vs kmm [min..max]");
    for (int c = 0; c < NR_COLS; c++) {
        char range[48];
        snprintf(range, sizeof range, "[%.1f..%.1f]", hot[c].ns.min, hot[c].ns.max);
        printf("   %-40s %10.1f  %-20s %10ld", columns[c].label, hot[c].ns.med, range, hot[c].n);
        if (c >= C_MMAP)
            printf("  %7.2fx [%.2f..%.2f]", hot[c].ratio.med, hot[c].ratio.min, hot[c].ratio.max);
        printf("\n");
    }
    printf("   (\"vs kmm\": this row's time over kmm's in the same repetition, median over the\n"
           "    repetitions; rows with a touch against kmm with a touch; above 1 = kmm is faster)\n");
    printf("   target: kmm pair under 20 ns: %s (%.1f ns); ahead of mmap, glibc and mimalloc: %s\n",
           met(kmm_ns < 20), kmm_ns, met(ahead));

    printf("\n2. random orders 0..%d, random frees: %ld ops/rep, live set <= %d blocks (starts at %d),\n"
           "   free with probability 1/2 (always when full); every block's first byte written (untimed)\n",
           RAND_MAX_ORDER, rr.ops, RAND_LIVE_MAX, RAND_LIVE_MAX / 2);
    printf("   %-24s %10s %10s %10s %10s\n", "", "mean ns", "p50 ns", "p99 ns", "max ns");
    for (int row = 0; row < NR_RROWS; row++)
        printf("   %-24s %10.1f %10.1f %10.1f %10.1f\n", rrow_label[row], rr.s[RSTAT(row, RC_MEAN)].med,
               rr.s[RSTAT(row, RC_P50)].med, rr.s[RSTAT(row, RC_P99)].med, rr.s[RSTAT(row, RC_MAX)].med);
    printf("   the same operations on each allocator, all operations, ns (p99 over kmm's: above 1 = kmm's tail is shorter):\n");
    printf("   %-28s %8s %8s %8s %10s %9s %12s\n", "", "mean", "p50", "p99", "max", "p99/kmm", "loop ns/op");
    for (int a = 0; a < NR_RALLOC; a++)
        printf("   %-28s %8.1f %8.1f %8.1f %10.1f %8.2fx %12.1f\n", ralloc_label[a], rr.peer[a][RC_MEAN].med,
               rr.peer[a][RC_P50].med, rr.peer[a][RC_P99].med, rr.peer[a][RC_MAX].med,
               rr.peer[a][RC_P99].med / rr.peer[RA_KMM][RC_P99].med, rr.wall[a].med);
    printf("   (loop ns/op: the whole loop over the operations, first-byte writes and timer reads included:\n"
           "    page faults an allocator leaves to the caller's first write count there)\n");
    printf("   target: kmm p99 at or below mimalloc's: %s (%.1f vs %.1f ns); kmm mean under 100 ns: %s (%.1f ns)\n",
           met(rr.peer[RA_KMM][RC_P99].med <= rr.peer[RA_MI][RC_P99].med), rr.peer[RA_KMM][RC_P99].med,
           rr.peer[RA_MI][RC_P99].med, met(rr.peer[RA_KMM][RC_MEAN].med < 100), rr.peer[RA_KMM][RC_MEAN].med);
    printf("   spread over the repetitions: mean [%.1f..%.1f] ns, p99 [%.1f..%.1f] ns\n",
           rr.s[RSTAT(ROW_ALL, RC_MEAN)].min, rr.s[RSTAT(ROW_ALL, RC_MEAN)].max,
           rr.s[RSTAT(ROW_ALL, RC_P99)].min, rr.s[RSTAT(ROW_ALL, RC_P99)].max);
    printf("   ageing: last tenth mean / first tenth mean = %.2f [%.2f..%.2f] (above 1 = slower as the heap ages)\n",
           rr.aging.med, rr.aging.min, rr.aging.max);
    printf("   mean ns by order       ");
    for (int o = 0; o <= RAND_MAX_ORDER; o++)
        printf("%6d", o);
    printf("\n   allocations            ");
    for (int o = 0; o <= RAND_MAX_ORDER; o++)
        printf("%6.0f", rr.order_alloc[o].med);
    printf("\n   frees                  ");
    for (int o = 0; o <= RAND_MAX_ORDER; o++)
        printf("%6.0f", rr.order_free[o].med);
    printf("\n   mean live blocks %.0f; kmm_check after the run: %s\n", rr.s[R_LIVE_MEAN].med,
           rr.check == 0 ? "ok" : "FAILED");

    printf("\n3. two threads against one on the same memory system (order 0, no touch), on the heap\n"
           "   aged by test 2; %ld CPUs online\n"
           "   Mp/s = million alloc+free pairs per second, all threads together\n", sys.nproc);
    printf("   %-36s %14s %14s %7s  %s\n", "", "1 thread", "2 threads", "2T/1T", "[min..max]");
    for (int i = 0; i < NR_MT; i++)
        printf("   %-36s %9.1f Mp/s %9.1f Mp/s %7.2f  [%.2f..%.2f]\n", mt_rows[i].label, mt[i].one.med,
               mt[i].two.med, mt[i].ratio.med, mt[i].ratio.min, mt[i].ratio.max);
    printf("   sharing one memory system, against one per thread (ratio over ratio, per repetition;\n"
           "   1.00 = sharing costs nothing): pairs %.2f [%.2f..%.2f], batches %.2f [%.2f..%.2f]\n",
           mtr.sharing_pairs.med, mtr.sharing_pairs.min, mtr.sharing_pairs.max,
           mtr.sharing_batch.med, mtr.sharing_batch.min, mtr.sharing_batch.max);
    printf("   target: kmm ratio 1.8 or better: pairs %s (%.2f), batches %s (%.2f)\n",
           met(mt[MT_PAIRS].ratio.med >= 1.8), mt[MT_PAIRS].ratio.med,
           met(mt[MT_BATCH_ROW].ratio.med >= 1.8), mt[MT_BATCH_ROW].ratio.med);
    if (!control_scaled)
        printf("   CAUTION: the mimalloc controls scaled only %.2f and %.2f (below 1.75): the machine did not give\n"
               "   two full CPUs during this run, so the ratios above understate what kmm would do on\n"
               "   two free cores; the sharing line above is the fairer figure\n",
               mt[MT_MI_PAIRS].ratio.med, mt[MT_MI_BATCH].ratio.med);

    printf("\n4. kmm_create of a %llu GiB memory system, then kmm_destroy\n",
           (unsigned long long)(cr.mem_size >> 30));
    printf("   kmm_create                        %9.3f ms   [%.3f..%.3f]   %.0f page faults\n",
           cr.s[K_CREATE_MS].med, cr.s[K_CREATE_MS].min, cr.s[K_CREATE_MS].max, cr.s[K_CREATE_FAULTS].med);
    printf("   first order-0 alloc+touch+free    %9.1f us   [%.1f..%.1f]   %.0f page faults\n",
           cr.s[K_FIRST_US].med, cr.s[K_FIRST_US].min, cr.s[K_FIRST_US].max, cr.s[K_FIRST_FAULTS].med);
    printf("   kmm_destroy                       %9.3f ms   [%.3f..%.3f]\n", cr.s[K_DESTROY_MS].med,
           cr.s[K_DESTROY_MS].min, cr.s[K_DESTROY_MS].max);
    printf("   RSS increase after create         %9.0f KiB\n", cr.s[K_RSS_CREATE_KIB].med);
    printf("   RSS increase after first alloc    %9.0f KiB\n", cr.s[K_RSS_FIRST_KIB].med);
    printf("   RSS left after destroy            %9.0f KiB\n", cr.s[K_RSS_DESTROY_KIB].med);
    printf("   virtual size increase             %9.2f GiB\n", cr.s[K_VSZ_GIB].med);
    printf("   target: create under 100 ms: %s\n", met(cr.s[K_CREATE_MS].med < 100));

    printf("\n5. resident memory: 1 GiB in %d blocks of %zu KiB, every page written, then freed; the\n"
           "   program goes on (a 64 KiB alloc+free every ms); growth of RSS over the start, MiB\n",
           RSS_BLOCKS, (g_page << RSS_ORDER) >> 10);
    printf("   %-28s %6s", "", "live");
    for (int k = 0; k < NR_RSS_AT; k++)
        printf(" %5dms", rss_at_ms[k]);
    printf(" %8s\n", "drained");
    for (int a = 0; a < NR_RALLOC; a++) {
        printf("   %-28s %6.0f", ralloc_label[a], rss[a].live_mib);
        for (int k = 0; k < NR_RSS_AT; k++)
            printf(" %7.0f", rss[a].freed_mib[k]);
        printf(" %8.0f\n", rss[a].drained_mib);
    }
    printf("   (ms after the last free; drained = kmm_drain, mi_collect(true), malloc_trim(0))\n");

    printf("\nnoise: during the %.1f s run other processes kept %.2f CPUs busy on average and the\n"
           "       hypervisor stole %.1f%% of the CPU time (both should be near 0 for clean figures)\n",
           noise.wall_s, noise.others_cpus, noise.steal_pct);

    kmm_destroy(g_mm);
    return rr.check == 0 ? 0 : 1;   /* figures are never a failure; a broken heap is */
}
