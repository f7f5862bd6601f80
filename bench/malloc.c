/* bench/malloc.c - kmm_malloc side by side with the general-purpose
 * allocators a user would pick instead: glibc, jemalloc, mimalloc and
 * tcmalloc. See bench/README.md.
 *
 * Three measurements, each figure the median of several repetitions, every
 * ratio taken within one repetition:
 *   1. one thread: alloc+free pairs of 16, 64, 256, 1024 bytes and of mixed
 *      sizes 16..1024, and a random-lifetime workload (100 000 live objects,
 *      each step frees a random one and allocates a new one);
 *   2. two threads, every free a cross-thread free: a producer allocates and
 *      passes the pointers through a ring buffer in batches to a consumer
 *      that frees them;
 *   3. memory efficiency: 64 MiB of live requested bytes of random sizes
 *      1..4096, aged by random replacement; kmm's pages held and every
 *      allocator's resident-memory growth, each in a fresh process.
 *
 * glibc is the process allocator. jemalloc, mimalloc and tcmalloc all export
 * malloc/free, so linking any of them would replace glibc for the whole
 * process: each is loaded with dlopen(RTLD_LOCAL) and called through dlsym,
 * and the program checks at run time that every column's functions are that
 * allocator's (and prints what it found). Debian's jemalloc uses
 * initial-exec TLS, which a dlopen'ed library only gets from glibc's static
 * TLS surplus: the program re-executes itself once with a larger surplus
 * (GLIBC_TUNABLES=glibc.rtld.optional_static_tls) when the first dlopen fails
 * for that reason.
 */
#include <kmm.h>

#include "harness.h"

#include <dlfcn.h>
#include <errno.h>
#include <gnu/libc-version.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <linux/futex.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() __asm__ __volatile__("" ::: "memory")
#endif

#ifndef KMM_BENCH_MIMALLOC_PATH
#define KMM_BENCH_MIMALLOC_PATH "libmimalloc.so.2"
#endif
#ifndef KMM_BENCH_JEMALLOC_PATH
#define KMM_BENCH_JEMALLOC_PATH "libjemalloc.so.2"
#endif
#ifndef KMM_BENCH_TCMALLOC_PATH
#define KMM_BENCH_TCMALLOC_PATH "libtcmalloc_minimal.so.4"
#endif

const char harness_prog[] = "bench/malloc";

#define NOINLINE __attribute__((noinline))
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Static TLS surplus asked of glibc when re-executing for jemalloc (its TLS
 * block is about 2.6 KiB; glibc's default surplus for dlopen is 512 bytes). */
#define TLS_TUNABLE "glibc.rtld.optional_static_tls=16384"
#define REEXEC_ENV  "KMM_BENCH_MALLOC_REEXEC"

/* ---- options -------------------------------------------------------------- */

static struct {
    bool json, quick;
    int reps;
    double target_ns;         /* wall time of one repetition of a pair column */
    long steps;               /* steps per repetition of the random-lifetime test */
    long xt_objects;          /* objects per run of the cross-thread test */
    long eff_live_mib;        /* live requested bytes of the efficiency test */
    int eff_age;              /* replacement steps, in multiples of the live objects */
    uint64_t seed;
} opt = {
    .reps = 9,
    .target_ns = 50e6,
    .steps = 1000000,
    .xt_objects = 2000000,
    .eff_live_mib = 64,
    .eff_age = 4,
    .seed = 0x6b6d6d2d6d616c6cull,   /* "kmm-mall" */
};

#define MIX_N        4096      /* precomputed mixed sizes (a power of two) */
#define MIX_MIN      16
#define MIX_MAX      1024
#define LIFE_LIVE    100000    /* live objects of the random-lifetime test */
#define XT_BATCH     64        /* pointers per ring slot */
#define XT_SLOTS     32        /* ring slots: at most 2048 objects in flight */
#define EFF_MAX_SIZE 4096
#define EFF_CAP      (1u << 20) /* live-object capacity of the efficiency child */

/* ---- time, statistics, randomness ------------------------------------------ */

static inline uint64_t rnd(uint64_t *s)      /* xorshift64* */
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t seed_init(uint64_t s)
{
    return s ? s : 0x9e3779b97f4a7c15ull;    /* xorshift must not start at 0 */
}

/* ---- the allocators ----------------------------------------------------------- */

enum alloc_id { A_KMM, A_GLIBC, A_JE, A_MI, A_TC, NR_ALLOC };
static const char *const alloc_key[NR_ALLOC] = { "kmm", "glibc", "jemalloc", "mimalloc", "tcmalloc" };

typedef void *(*malloc_fn)(size_t);
typedef void (*free_fn)(void *);

static struct kmm *g_mm;             /* kmm_create(NULL): 64 GiB, hosted */
static size_t g_page = 4096;
static malloc_fn p_je_malloc, p_mi_malloc, p_tc_malloc;
static free_fn p_je_free, p_mi_free, p_tc_free;
static int (*p_je_mallctl)(const char *, void *, size_t *, void *, size_t);
static int (*p_mi_version)(void);
static bool (*p_mi_is_in_heap_region)(const void *);
static const char *(*p_tc_version)(int *, int *, const char **);
static int (*p_tc_ownership)(const void *);   /* MallocExtension_GetOwnership: 1 owned, 2 not owned */

/* Every pointer goes here, so nothing is optimised away. Per thread, so the
 * threads of test 2 do not share its cache line. */
static _Thread_local volatile uintptr_t sink;

/* What each column is and how it was checked. */
static struct {
    char lib[NR_ALLOC][256];       /* the file the column's malloc comes from */
    char version[NR_ALLOC][64];
    char check[NR_ALLOC][200];     /* what was verified, for the header */
    bool ok[NR_ALLOC];             /* every check passed */
    bool reexec;                   /* re-executed with a larger static TLS surplus */
} allocs;

/* The ring of test 2: one producer, one consumer. A side that finds the ring
 * full (empty) spins a little, then sleeps on a futex until the other side
 * moves: on a machine whose second CPU is taken by another process, the two
 * threads then take turns instead of burning their time slices spinning. */
struct ring {
    _Alignas(64) atomic_uint head;      /* batches produced */
    atomic_uint head_waiter;            /* the consumer sleeps on head */
    _Alignas(64) atomic_uint tail;      /* batches consumed */
    atomic_uint tail_waiter;            /* the producer sleeps on tail */
    _Alignas(64) void *slot[XT_SLOTS][XT_BATCH];
};

#define XT_SPINS 2000

static void futex_wait(atomic_uint *w, unsigned val)
{
    syscall(SYS_futex, (unsigned *)w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(atomic_uint *w)
{
    syscall(SYS_futex, (unsigned *)w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Waits until *w != val (spinning, then sleeping). */
static NOINLINE void ring_wait(atomic_uint *w, atomic_uint *waiter, unsigned val)
{
    for (int i = 0; i < XT_SPINS; i++) {
        if (atomic_load_explicit(w, memory_order_acquire) != val)
            return;
        CPU_RELAX();
    }
    for (;;) {
        atomic_store(waiter, 1);                     /* seq_cst: pairs with ring_publish */
        if (atomic_load(w) != val)
            break;
        futex_wait(w, val);
    }
    atomic_store_explicit(waiter, 0, memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
}

static inline void ring_publish(atomic_uint *w, atomic_uint *waiter, unsigned val)
{
    atomic_store(w, val);                            /* seq_cst: pairs with ring_wait */
    if (UNLIKELY(atomic_load(waiter)))
        futex_wake(w);
}

/* ---- the loops, one set per allocator ------------------------------------------- *
 * Each allocator gets its own copy of every loop, with direct calls (kmm,
 * glibc) or calls through a function pointer held in a local (the dlopen'ed
 * ones: what a PLT call costs too), so that every column pays the same loop
 * overhead and nothing else. A failed allocation stops the program. */

#define DEFINE_LOOPS(tag, DECL, ALLOC, FREE)                                                  \
    /* n alloc+free pairs of sizes[i & mask], first byte written */                           \
    static NOINLINE void tag##_pairs(long n, const uint16_t *sizes, unsigned mask)            \
    {                                                                                         \
        DECL;                                                                                 \
        for (long i = 0; i < n; i++) {                                                        \
            void *p = ALLOC(sizes[(unsigned long)i & mask]);                                  \
            if (UNLIKELY(p == NULL))                                                          \
                die(#tag ": allocation failed");                                              \
            *(volatile char *)p = (char)i;                                                    \
            sink = (uintptr_t)p;                                                              \
            FREE(p);                                                                          \
        }                                                                                     \
    }                                                                                         \
    /* n objects of sizes[i] into live[i], first byte written */                              \
    static NOINLINE void tag##_fill(void **live, const uint16_t *sizes, long n)               \
    {                                                                                         \
        DECL;                                                                                 \
        for (long i = 0; i < n; i++) {                                                        \
            void *p = ALLOC(sizes[i]);                                                        \
            if (UNLIKELY(p == NULL))                                                          \
                die(#tag ": allocation failed");                                              \
            *(volatile char *)p = (char)i;                                                    \
            live[i] = p;                                                                      \
        }                                                                                     \
    }                                                                                         \
    static NOINLINE void tag##_empty(void **live, long n)                                     \
    {                                                                                         \
        DECL;                                                                                 \
        for (long i = 0; i < n; i++)                                                          \
            FREE(live[i]);                                                                    \
    }                                                                                         \
    /* each step: free live[idx], allocate a new object there (step = idx << 10 | size - 16) */ \
    static NOINLINE void tag##_steps(void **live, const uint32_t *steps, long n)              \
    {                                                                                         \
        DECL;                                                                                 \
        for (long i = 0; i < n; i++) {                                                        \
            uint32_t s = steps[i];                                                            \
            void **slot = &live[s >> 10];                                                     \
            FREE(*slot);                                                                      \
            void *p = ALLOC((s & 1023u) + MIX_MIN);                                           \
            if (UNLIKELY(p == NULL))                                                          \
                die(#tag ": allocation failed");                                              \
            *(volatile char *)p = (char)i;                                                    \
            *slot = p;                                                                        \
        }                                                                                     \
    }                                                                                         \
    /* producer of test 2: batches of XT_BATCH objects into the ring */                       \
    static NOINLINE void tag##_produce(struct ring *r, long batches, const uint16_t *sizes)   \
    {                                                                                         \
        DECL;                                                                                 \
        unsigned long k = 0;                                                                  \
        for (long b = 0; b < batches; b++) {                                                  \
            unsigned t_;                                                                      \
            while ((unsigned)b - (t_ = atomic_load_explicit(&r->tail, memory_order_acquire)) >= XT_SLOTS) \
                ring_wait(&r->tail, &r->tail_waiter, t_);                                     \
            void **s = r->slot[(size_t)b % XT_SLOTS];                                         \
            for (int i = 0; i < XT_BATCH; i++) {                                              \
                void *p = ALLOC(sizes[k++ & (MIX_N - 1)]);                                    \
                if (UNLIKELY(p == NULL))                                                      \
                    die(#tag ": allocation failed");                                          \
                *(volatile char *)p = (char)i;                                                \
                s[i] = p;                                                                     \
            }                                                                                 \
            ring_publish(&r->head, &r->head_waiter, (unsigned)b + 1);                          \
        }                                                                                     \
    }                                                                                         \
    /* consumer of test 2: reads the first byte of each object and frees it */                \
    static NOINLINE void tag##_consume(struct ring *r, long batches)                          \
    {                                                                                         \
        DECL;                                                                                 \
        uintptr_t acc = 0;                                                                    \
        for (long b = 0; b < batches; b++) {                                                  \
            if (atomic_load_explicit(&r->head, memory_order_acquire) == (unsigned)b)           \
                ring_wait(&r->head, &r->head_waiter, (unsigned)b);                            \
            void **s = r->slot[(size_t)b % XT_SLOTS];                                         \
            for (int i = 0; i < XT_BATCH; i++) {                                              \
                acc += (uintptr_t) * (volatile char *)s[i];                                   \
                FREE(s[i]);                                                                   \
            }                                                                                 \
            ring_publish(&r->tail, &r->tail_waiter, (unsigned)b + 1);                          \
        }                                                                                     \
        sink = acc;                                                                           \
    }

#define KMM_DECL     struct kmm *mm_ = g_mm
#define KMM_ALLOC(s) kmm_malloc(mm_, (s), 0)
#define KMM_FREE(p)  kmm_free(mm_, (p))
#define GLIBC_DECL   (void)0
#define GLIBC_ALLOC(s) malloc(s)
#define GLIBC_FREE(p)  free(p)
#define PTR_ALLOC(s) a_(s)
#define PTR_FREE(p)  f_(p)
#define JE_DECL      malloc_fn a_ = p_je_malloc; free_fn f_ = p_je_free; (void)a_; (void)f_
#define MI_DECL      malloc_fn a_ = p_mi_malloc; free_fn f_ = p_mi_free; (void)a_; (void)f_
#define TC_DECL      malloc_fn a_ = p_tc_malloc; free_fn f_ = p_tc_free; (void)a_; (void)f_

/* bench_kmm_pairs is also the function to give callgrind's --toggle-collect. */
DEFINE_LOOPS(bench_kmm, KMM_DECL, KMM_ALLOC, KMM_FREE)
DEFINE_LOOPS(bench_glibc, GLIBC_DECL, GLIBC_ALLOC, GLIBC_FREE)
DEFINE_LOOPS(bench_je, JE_DECL, PTR_ALLOC, PTR_FREE)
DEFINE_LOOPS(bench_mi, MI_DECL, PTR_ALLOC, PTR_FREE)
DEFINE_LOOPS(bench_tc, TC_DECL, PTR_ALLOC, PTR_FREE)

static const struct loops {
    void (*pairs)(long, const uint16_t *, unsigned);
    void (*fill)(void **, const uint16_t *, long);
    void (*empty)(void **, long);
    void (*steps)(void **, const uint32_t *, long);
    void (*produce)(struct ring *, long, const uint16_t *);
    void (*consume)(struct ring *, long);
} loops[NR_ALLOC] = {
#define LOOPS(tag) { tag##_pairs, tag##_fill, tag##_empty, tag##_steps, tag##_produce, tag##_consume }
    [A_KMM] = LOOPS(bench_kmm),
    [A_GLIBC] = LOOPS(bench_glibc),
    [A_JE] = LOOPS(bench_je),
    [A_MI] = LOOPS(bench_mi),
    [A_TC] = LOOPS(bench_tc),
#undef LOOPS
};

/* Plain calls, for the checks and the efficiency child (speed does not matter there). */
static void *any_malloc(enum alloc_id a, size_t n)
{
    switch (a) {
    case A_KMM: return kmm_malloc(g_mm, n, 0);
    case A_GLIBC: return malloc(n);
    case A_JE: return p_je_malloc(n);
    case A_MI: return p_mi_malloc(n);
    case A_TC: return p_tc_malloc(n);
    default: return NULL;
    }
}

static void any_free(enum alloc_id a, void *p)
{
    switch (a) {
    case A_KMM: kmm_free(g_mm, p); break;
    case A_GLIBC: free(p); break;
    case A_JE: p_je_free(p); break;
    case A_MI: p_mi_free(p); break;
    case A_TC: p_tc_free(p); break;
    default: break;
    }
}

/* ---- loading and checking the allocators -------------------------------------- */

static void *sym(void *h, const char *name, const char *lib)
{
    void *s = dlsym(h, name);
    if (!s) {
        fprintf(stderr, "bench/malloc: %s has no %s\n", lib, name);
        exit(1);
    }
    return s;
}

/* Opens a peer locally. Debian's jemalloc needs static TLS that a dlopen'ed
 * library only gets from glibc's surplus: when that is what failed, the
 * program runs itself again with a larger surplus (once). */
static void *open_local(const char *path, const char *fallback, const char *pkg, char **argv)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h && fallback)
        h = dlopen(fallback, RTLD_NOW | RTLD_LOCAL);
    if (h)
        return h;
    const char *err = dlerror();
    if (argv && err && strstr(err, "static TLS") && !getenv(REEXEC_ENV)) {
        const char *old = getenv("GLIBC_TUNABLES");
        char buf[1024];
        if (old && *old)
            snprintf(buf, sizeof buf, "%s:%s", old, TLS_TUNABLE);
        else
            snprintf(buf, sizeof buf, "%s", TLS_TUNABLE);
        setenv("GLIBC_TUNABLES", buf, 1);
        setenv(REEXEC_ENV, "1", 1);
        fflush(NULL);
        execv("/proc/self/exe", argv);
        die_errno("re-executing with a larger static TLS surplus");
    }
    fprintf(stderr, "bench/malloc: cannot load %s: %s\ninstall it with: sudo apt-get install %s\n", path,
            err ? err : "?", pkg);
    exit(1);
}

static void load_jemalloc(char **argv)
{
    void *h = open_local(KMM_BENCH_JEMALLOC_PATH, "libjemalloc.so.2", "libjemalloc-dev", argv);
    *(void **)&p_je_malloc = sym(h, "malloc", "jemalloc");
    *(void **)&p_je_free = sym(h, "free", "jemalloc");
    *(void **)&p_je_mallctl = sym(h, "mallctl", "jemalloc");
}

static void load_mimalloc(void)
{
    void *h = open_local(KMM_BENCH_MIMALLOC_PATH, "libmimalloc.so.2", "libmimalloc-dev", NULL);
    *(void **)&p_mi_malloc = sym(h, "mi_malloc", "mimalloc");
    *(void **)&p_mi_free = sym(h, "mi_free", "mimalloc");
    *(void **)&p_mi_version = sym(h, "mi_version", "mimalloc");
    *(void **)&p_mi_is_in_heap_region = sym(h, "mi_is_in_heap_region", "mimalloc");
}

static void load_tcmalloc(void)
{
    void *h = open_local(KMM_BENCH_TCMALLOC_PATH, "libtcmalloc_minimal.so.4", "libgoogle-perftools-dev", NULL);
    *(void **)&p_tc_malloc = sym(h, "tc_malloc", "tcmalloc");
    *(void **)&p_tc_free = sym(h, "tc_free", "tcmalloc");
    *(void **)&p_tc_version = sym(h, "tc_version", "tcmalloc");
    *(void **)&p_tc_ownership = sym(h, "MallocExtension_GetOwnership", "tcmalloc");
}

/* Which library each column's malloc comes from, and a check that only that
 * allocator passes: its own introspection recognises a block it returned. */
static void verify_allocators(void)
{
    void *glibc_malloc = dlsym(RTLD_DEFAULT, "malloc");
    char buf[256];

    lib_of((void *)kmm_malloc, allocs.lib[A_KMM], sizeof allocs.lib[A_KMM]);
    snprintf(allocs.version[A_KMM], sizeof allocs.version[A_KMM], "this tree");
    void *p = kmm_malloc(g_mm, 64, 0);
    bool in_mm = p && kmm_virt_to_phys(g_mm, p) != KMM_PHYS_NONE;
    allocs.ok[A_KMM] = in_mm;
    snprintf(allocs.check[A_KMM], sizeof allocs.check[A_KMM], "kmm_malloc's block is in the memory system's direct map: %s",
             in_mm ? "yes" : "NO");
    kmm_free(g_mm, p);

    lib_of(glibc_malloc, allocs.lib[A_GLIBC], sizeof allocs.lib[A_GLIBC]);
    snprintf(allocs.version[A_GLIBC], sizeof allocs.version[A_GLIBC], "%s", gnu_get_libc_version());
    bool is_libc = strstr(allocs.lib[A_GLIBC], "libc.so") != NULL;

    /* jemalloc: its malloc is not the process's; mallctl exists, names its
     * version and counts the bytes this thread allocated with it. */
    lib_of((void *)p_je_malloc, allocs.lib[A_JE], sizeof allocs.lib[A_JE]);
    const char *jv = "?";
    size_t len = sizeof jv;
    if (p_je_mallctl("version", (void *)&jv, &len, NULL, 0) != 0)
        jv = "?";
    snprintf(allocs.version[A_JE], sizeof allocs.version[A_JE], "%.40s", jv);
    uint64_t a0 = 0, a1 = 0;
    len = sizeof a0;
    int e0 = p_je_mallctl("thread.allocated", &a0, &len, NULL, 0);
    p = p_je_malloc(1000);
    len = sizeof a1;
    int e1 = p_je_mallctl("thread.allocated", &a1, &len, NULL, 0);
    p_je_free(p);
    bool je_counts = e0 == 0 && e1 == 0 && a1 >= a0 + 1000;
    allocs.ok[A_JE] = (void *)p_je_malloc != glibc_malloc && je_counts;
    snprintf(allocs.check[A_JE], sizeof allocs.check[A_JE],
             "malloc differs from the process's: %s; mallctl(\"thread.allocated\") counts its blocks: %s",
             (void *)p_je_malloc != glibc_malloc ? "yes" : "NO", je_counts ? "yes" : "NO");

    /* mimalloc: mi_is_in_heap_region recognises its block and not glibc's. */
    lib_of((void *)p_mi_malloc, allocs.lib[A_MI], sizeof allocs.lib[A_MI]);
    int mv = p_mi_version();
    snprintf(allocs.version[A_MI], sizeof allocs.version[A_MI], "%d.%d.%d", mv / 100, mv / 10 % 10, mv % 10);
    p = p_mi_malloc(64);
    void *g = malloc(64);
    bool mi_own = p_mi_is_in_heap_region(p) && !p_mi_is_in_heap_region(g);
    p_mi_free(p);
    allocs.ok[A_MI] = (void *)p_mi_malloc != glibc_malloc && mi_own;
    snprintf(allocs.check[A_MI], sizeof allocs.check[A_MI],
             "mi_malloc differs from the process's malloc: %s; mi_is_in_heap_region: its block yes, glibc's no: %s",
             (void *)p_mi_malloc != glibc_malloc ? "yes" : "NO", mi_own ? "yes" : "NO");

    /* tcmalloc: MallocExtension_GetOwnership says owned (1) for its block and
     * not owned (2) for glibc's. */
    lib_of((void *)p_tc_malloc, allocs.lib[A_TC], sizeof allocs.lib[A_TC]);
    int ma = 0, mi = 0;
    const char *patch = "";
    const char *tv = p_tc_version(&ma, &mi, &patch);
    snprintf(allocs.version[A_TC], sizeof allocs.version[A_TC], "%d.%d%s (%.30s)", ma, mi, patch ? patch : "",
             tv ? tv : "?");
    p = p_tc_malloc(64);
    bool tc_own = p_tc_ownership(p) == 1 && p_tc_ownership(g) == 2;
    p_tc_free(p);
    allocs.ok[A_TC] = (void *)p_tc_malloc != glibc_malloc && tc_own;
    snprintf(allocs.check[A_TC], sizeof allocs.check[A_TC],
             "tc_malloc differs from the process's malloc: %s; GetOwnership: its block owned, glibc's not: %s",
             (void *)p_tc_malloc != glibc_malloc ? "yes" : "NO", tc_own ? "yes" : "NO");

    /* glibc: the process's malloc comes from libc.so and is none of the peers'. */
    bool distinct = glibc_malloc != (void *)p_je_malloc && glibc_malloc != (void *)p_mi_malloc &&
                    glibc_malloc != (void *)p_tc_malloc;
    allocs.ok[A_GLIBC] = is_libc && distinct && p_tc_ownership(g) == 2 && !p_mi_is_in_heap_region(g);
    snprintf(allocs.check[A_GLIBC], sizeof allocs.check[A_GLIBC],
             "the process's malloc is libc's: %s; none of the peers claims its block: %s", is_libc ? "yes" : "NO",
             allocs.ok[A_GLIBC] ? "yes" : "NO");
    free(g);

    for (int a = 0; a < NR_ALLOC; a++) {
        if (!allocs.ok[a]) {
            snprintf(buf, sizeof buf, "the %s column is not %s (%s)", alloc_key[a], alloc_key[a], allocs.check[a]);
            fprintf(stderr, "bench/malloc: WARNING: %s\n", buf);
        }
    }
}

/* ---- test 1: one thread ---------------------------------------------------------- */

enum work { W_16, W_64, W_256, W_1024, W_MIXED, NR_PAIR_WORK, W_LIFE = NR_PAIR_WORK, W_XT, NR_WORK };
static const char *const work_key[NR_WORK] = { "pairs_16", "pairs_64", "pairs_256", "pairs_1024", "pairs_mixed",
                                               "random_lifetime", "cross_thread" };
static const char *const work_label[NR_WORK] = {
    "pairs 16 B", "pairs 64 B", "pairs 256 B", "pairs 1024 B", "pairs mixed 16..1024", "random lifetime, 100k live",
    "2 threads, cross-thread free",
};

static uint16_t fixed_size[NR_PAIR_WORK] = { 16, 64, 256, 1024, 0 };
static uint16_t mix_sizes[MIX_N];

struct speed {
    struct fig v[NR_ALLOC];        /* ns per pair / step / object */
    struct fig ratio[NR_ALLOC];    /* peer time over kmm time, per repetition */
    long n[NR_ALLOC];              /* operations per repetition */
};

/* The background: objects every allocator holds live during test 1, as any
 * program's heap does. Without them a pair loop runs on an empty heap, where
 * every free empties a page and sends some allocators down paths a real
 * program rarely takes (mimalloc retires the page: 11 ns a pair instead of
 * 3.5 here); and a heap filled without holes can leave a size class with
 * only full pages (mimalloc then moves a page out of and back into its full
 * queue at every pair). So: BG_N objects of random sizes 16..1024 and of
 * each fixed size are allocated, and every second one is freed again. */
#define BG_RANDOM 4096
#define BG_FIXED  32
#define BG_N      (BG_RANDOM + BG_FIXED * 4)
static void *background[NR_ALLOC][BG_N];

static void background_fill(void)
{
    static uint16_t sizes[BG_N];
    static void *holes[BG_N / 2];
    uint64_t s = seed_init(opt.seed ^ 0x6267u);
    for (int i = 0; i < BG_RANDOM; i++)
        sizes[i] = (uint16_t)(MIX_MIN + rnd(&s) % (MIX_MAX - MIX_MIN + 1));
    for (int i = 0; i < BG_FIXED * 4; i++)
        sizes[BG_RANDOM + i] = fixed_size[i % 4];
    for (int a = 0; a < NR_ALLOC; a++) {
        loops[a].fill(background[a], sizes, BG_N);
        for (int i = 0; i < BG_N / 2; i++) {           /* live: the even ones, packed at the front */
            holes[i] = background[a][2 * i + 1];
            background[a][i] = background[a][2 * i];
        }
        loops[a].empty(holes, BG_N / 2);
    }
}

static void background_empty(void)
{
    for (int a = 0; a < NR_ALLOC; a++)
        loops[a].empty(background[a], BG_N / 2);
}

static void run_pairs(enum alloc_id a, enum work w, long n)
{
    if (w == W_MIXED)
        loops[a].pairs(n, mix_sizes, MIX_N - 1);
    else
        loops[a].pairs(n, &fixed_size[w], 0);
}

/* How many pairs make one repetition last about target_ns: doubles a trial
 * count until it takes 2 ms (1 ms quick). Also warms the column up. */
static long calibrate_pairs(enum alloc_id a, enum work w)
{
    double floor_ns = opt.quick ? 1e6 : 2e6;
    long k = 64;
    run_pairs(a, w, 4096);
    for (;;) {
        double t0 = now_ns();
        run_pairs(a, w, k);
        double dt = now_ns() - t0;
        if (dt >= floor_ns || k >= (1l << 30)) {
            t0 = now_ns();                        /* once more: a hiccup must not shrink n */
            run_pairs(a, w, k);
            double dt2 = now_ns() - t0;
            if (dt2 < dt)
                dt = dt2;
            double n = opt.target_ns * (double)k / (dt > 1 ? dt : 1);
            return n < 1000 ? 1000 : n > 1e9 ? 1000000000l : (long)n;
        }
        k *= 2;
    }
}

/* Every workload and every allocator is timed once per repetition, one after
 * the other, so that a slow spell of the (shared) machine hits them alike;
 * each column is warmed up just before it is timed. */
static void measure_pairs(struct speed r[NR_PAIR_WORK])
{
    static double v[NR_PAIR_WORK][NR_ALLOC][64], ratio[NR_PAIR_WORK][NR_ALLOC][64];
    for (int w = 0; w < NR_PAIR_WORK; w++)
        for (int a = 0; a < NR_ALLOC; a++)
            r[w].n[a] = calibrate_pairs((enum alloc_id)a, (enum work)w);
    for (int i = 0; i < opt.reps; i++) {
        for (int w = 0; w < NR_PAIR_WORK; w++) {
            for (int a = 0; a < NR_ALLOC; a++) {
                long n = r[w].n[a];
                run_pairs((enum alloc_id)a, (enum work)w, n / 10 + 1);   /* warm up */
                double t0 = now_ns();
                run_pairs((enum alloc_id)a, (enum work)w, n);
                v[w][a][i] = (now_ns() - t0) / (double)n;
            }
            for (int a = 0; a < NR_ALLOC; a++)
                ratio[w][a][i] = v[w][a][i] / v[w][A_KMM][i];
        }
    }
    for (int w = 0; w < NR_PAIR_WORK; w++)
        for (int a = 0; a < NR_ALLOC; a++) {
            r[w].v[a] = summarize(v[w][a], opt.reps);
            r[w].ratio[a] = summarize(ratio[w][a], opt.reps);
        }
}

/* Random lifetime: LIFE_LIVE objects of sizes 16..1024 live; each step frees
 * a random one and allocates one of a random size in its place. The steps
 * (index and size packed in 32 bits) are drawn once, so every allocator
 * runs the very same sequence; each repetition fills the live set (untimed),
 * runs the steps (timed) and frees everything (untimed). */
static void measure_lifetime(struct speed *r)
{
    static double v[NR_ALLOC][64], ratio[NR_ALLOC][64];
    long n = opt.steps;
    uint32_t *steps = malloc((size_t)n * sizeof *steps);
    uint16_t *init = malloc(LIFE_LIVE * sizeof *init);
    void **live = malloc(LIFE_LIVE * sizeof *live);
    if (!steps || !init || !live)
        die("out of memory for the random-lifetime test");
    uint64_t s = seed_init(opt.seed ^ 0x6c696665u);
    for (long i = 0; i < LIFE_LIVE; i++)
        init[i] = (uint16_t)(MIX_MIN + rnd(&s) % (MIX_MAX - MIX_MIN + 1));
    for (long i = 0; i < n; i++) {
        uint64_t x = rnd(&s);
        uint32_t idx = (uint32_t)((x >> 32) % LIFE_LIVE);
        uint32_t sz = (uint32_t)((x & 0xffffffffu) % (MIX_MAX - MIX_MIN + 1));
        steps[i] = idx << 10 | sz;
    }
    memset(live, 0, LIFE_LIVE * sizeof *live);
    for (int a = 0; a < NR_ALLOC; a++) {                 /* warm up */
        loops[a].fill(live, init, LIFE_LIVE);
        loops[a].steps(live, steps, n / 10 + 1);
        loops[a].empty(live, LIFE_LIVE);
        r->n[a] = n;
    }
    for (int i = 0; i < opt.reps; i++) {
        for (int a = 0; a < NR_ALLOC; a++) {
            loops[a].fill(live, init, LIFE_LIVE);
            double t0 = now_ns();
            loops[a].steps(live, steps, n);
            v[a][i] = (now_ns() - t0) / (double)n;
            loops[a].empty(live, LIFE_LIVE);
        }
        for (int a = 0; a < NR_ALLOC; a++)
            ratio[a][i] = v[a][i] / v[A_KMM][i];
    }
    for (int a = 0; a < NR_ALLOC; a++) {
        r->v[a] = summarize(v[a], opt.reps);
        r->ratio[a] = summarize(ratio[a], opt.reps);
    }
    free(steps);
    free(init);
    free(live);
}

/* ---- test 2: two threads, cross-thread frees -------------------------------------- */

struct xt_arg {
    enum alloc_id a;
    bool producer;
    struct ring *r;
    long batches;
    pthread_barrier_t *bar;
    double t0, t1;
};

static void *xt_worker(void *arg)
{
    struct xt_arg *x = arg;
    /* warm up: this thread's caches of the allocator, with local pairs */
    loops[x->a].pairs(4096, mix_sizes, MIX_N - 1);
    pthread_barrier_wait(x->bar);
    x->t0 = now_ns();
    if (x->producer)
        loops[x->a].produce(x->r, x->batches, mix_sizes);
    else
        loops[x->a].consume(x->r, x->batches);
    x->t1 = now_ns();
    return NULL;
}

/* Objects per second through the ring, fresh threads every run. */
static double xt_run(enum alloc_id a, long batches)
{
    static struct ring ring;
    atomic_store(&ring.head, 0);
    atomic_store(&ring.tail, 0);
    atomic_store(&ring.head_waiter, 0);
    atomic_store(&ring.tail_waiter, 0);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    pthread_t th[2];
    struct xt_arg x[2];
    for (int i = 0; i < 2; i++) {
        x[i] = (struct xt_arg){ .a = a, .producer = i == 0, .r = &ring, .batches = batches, .bar = &bar };
        if (pthread_create(&th[i], NULL, xt_worker, &x[i]))
            die("pthread_create failed");
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&bar);
    double start = x[0].t0 < x[1].t0 ? x[0].t0 : x[1].t0;
    double end = x[0].t1 > x[1].t1 ? x[0].t1 : x[1].t1;
    return (double)batches * XT_BATCH / (end - start) * 1e9;
}

struct xt_result {
    struct speed s;               /* ns per object (wall), ratio peer/kmm */
    struct fig mops[NR_ALLOC];    /* million objects per second */
};

static void measure_xt(struct xt_result *r)
{
    static double v[NR_ALLOC][64], ratio[NR_ALLOC][64], mops[NR_ALLOC][64];
    long batches = opt.xt_objects / XT_BATCH;
    if (batches < 4 * XT_SLOTS)
        batches = 4 * XT_SLOTS;
    for (int a = 0; a < NR_ALLOC; a++) {
        xt_run((enum alloc_id)a, batches / 10 + XT_SLOTS);   /* warm up */
        r->s.n[a] = batches * XT_BATCH;
    }
    for (int i = 0; i < opt.reps; i++) {
        for (int a = 0; a < NR_ALLOC; a++) {
            double ops = xt_run((enum alloc_id)a, batches);
            mops[a][i] = ops / 1e6;
            v[a][i] = 1e9 / ops;
        }
        for (int a = 0; a < NR_ALLOC; a++)
            ratio[a][i] = v[a][i] / v[A_KMM][i];
    }
    for (int a = 0; a < NR_ALLOC; a++) {
        r->s.v[a] = summarize(v[a], opt.reps);
        r->s.ratio[a] = summarize(ratio[a], opt.reps);
        r->mops[a] = summarize(mops[a], opt.reps);
    }
}

/* ---- test 3: memory efficiency, each allocator in a fresh process ------------------ */

static long statm_resident(void)
{
    long size = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &size, &res) != 2)
        die("cannot read /proc/self/statm");
    fclose(f);
    return res;
}

/* What one child reports. */
struct eff_child {
    double requested;          /* live requested bytes at the end */
    double objects;
    double rss_growth;         /* bytes */
    double held, held_drained; /* kmm: bytes of pages held by the workload, before/after kmm_drain */
    double base_pages;         /* kmm: allocated pages before the workload */
    int check;                 /* kmm: kmm_check at the end */
};

/* The child: loads only its allocator, runs the workload, prints one line.
 * Objects of random sizes 1..4096, each written in full (so that every page
 * the allocator hands out is really resident, as for a program that uses its
 * memory), until live requested bytes reach the target; then `age` times the
 * live count of steps, each freeing a random live object and allocating until
 * the target is reached again. */
static int efficiency_child(const char *name, uint64_t seed, long live_mib, int age, char **argv)
{
    int a = -1;
    for (int i = 0; i < NR_ALLOC; i++)
        if (!strcmp(name, alloc_key[i]))
            a = i;
    switch (a) {
    case A_KMM:
        if (!(g_mm = kmm_create(NULL)))
            die_errno("kmm_create(NULL)");
        break;
    case A_GLIBC: break;
    case A_JE: load_jemalloc(argv); break;
    case A_MI: load_mimalloc(); break;
    case A_TC: load_tcmalloc(); break;
    default: die("--efficiency-child: unknown allocator");
    }
    enum alloc_id id = (enum alloc_id)a;
    /* Bookkeeping outside any allocator, resident before the baseline. */
    void **live = mmap(NULL, EFF_CAP * sizeof *live, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint16_t *size = mmap(NULL, EFF_CAP * sizeof *size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (live == MAP_FAILED || size == MAP_FAILED)
        die_errno("mmap");
    memset(live, 0, EFF_CAP * sizeof *live);
    memset(size, 0, EFF_CAP * sizeof *size);
    void *w = any_malloc(id, 1);               /* the allocator's own start-up, before the baseline */
    any_free(id, w);

    struct kmm_page_stats st;
    size_t base = 0;
    if (id == A_KMM) {
        kmm_page_stats(g_mm, &st);
        base = st.allocated_pages;
        g_page = st.page_size;
    }
    long rss0 = statm_resident();

    uint64_t s = seed_init(seed);
    size_t target = (size_t)live_mib << 20, total = 0, n = 0;
#define EFF_ALLOC_ONE()                                                          \
    do {                                                                         \
        if (n >= EFF_CAP)                                                        \
            die("efficiency test: too many live objects");                      \
        size_t sz_ = 1 + (size_t)(rnd(&s) % EFF_MAX_SIZE);                       \
        void *p_ = any_malloc(id, sz_);                                          \
        if (!p_)                                                                 \
            die("efficiency test: allocation failed");                          \
        memset(p_, 0xa5, sz_);                                                   \
        live[n] = p_;                                                            \
        size[n++] = (uint16_t)(sz_ - 1);                                         \
        total += sz_;                                                            \
    } while (0)
    while (total < target)
        EFF_ALLOC_ONE();
    size_t steps = (size_t)age * n;
    for (size_t i = 0; i < steps; i++) {
        size_t j = (size_t)(rnd(&s) % n);
        any_free(id, live[j]);
        total -= (size_t)size[j] + 1;
        live[j] = live[--n];
        size[j] = size[n];
        while (total < target)
            EFF_ALLOC_ONE();
    }
#undef EFF_ALLOC_ONE
    long rss1 = statm_resident();
    double held = 0, held_drained = 0;
    int check = 0;
    if (id == A_KMM) {
        kmm_page_stats(g_mm, &st);
        held = (double)(st.allocated_pages - base) * (double)g_page;
        kmm_drain(g_mm);
        kmm_page_stats(g_mm, &st);
        held_drained = (double)(st.allocated_pages - base) * (double)g_page;
        check = kmm_check(g_mm);
    }
    double sys_page = (double)sysconf(_SC_PAGESIZE);
    printf("eff requested=%zu objects=%zu rss_growth=%.0f held=%.0f held_drained=%.0f base_pages=%zu check=%d\n",
           total, n, (double)(rss1 - rss0) * sys_page, held, held_drained, base, check);
    fflush(stdout);
    return check == 0 ? 0 : 1;
}

/* Runs the child for allocator a in a fresh process (fork, then exec of this
 * program: nothing of the parent's heaps is inherited) and reads its line. */
static struct eff_child run_child(enum alloc_id a, uint64_t seed)
{
    int fd[2];
    if (pipe(fd))
        die_errno("pipe");
    char seed_s[32], mib_s[32], age_s[32];
    snprintf(seed_s, sizeof seed_s, "%" PRIu64, seed);
    snprintf(mib_s, sizeof mib_s, "%ld", opt.eff_live_mib);
    snprintf(age_s, sizeof age_s, "%d", opt.eff_age);
    char *args[] = { (char *)"malloc", (char *)"--efficiency-child", (char *)alloc_key[a], seed_s, mib_s, age_s, NULL };
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die_errno("fork");
    if (pid == 0) {
        close(fd[0]);
        if (dup2(fd[1], 1) < 0)
            _exit(127);
        execv("/proc/self/exe", args);
        _exit(127);
    }
    close(fd[1]);
    char line[512] = "";
    FILE *f = fdopen(fd[0], "r");
    if (!f || !fgets(line, sizeof line, f))
        line[0] = 0;
    if (f)
        fclose(f);
    int status = 0;
    waitpid(pid, &status, 0);
    struct eff_child c;
    memset(&c, 0, sizeof c);
    if (sscanf(line, "eff requested=%lf objects=%lf rss_growth=%lf held=%lf held_drained=%lf base_pages=%lf check=%d",
               &c.requested, &c.objects, &c.rss_growth, &c.held, &c.held_drained, &c.base_pages, &c.check) != 7) {
        fprintf(stderr, "bench/malloc: the efficiency child for %s failed (status %d)\n", alloc_key[a], status);
        exit(1);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        c.check = -1;
    return c;
}

struct eff_result {
    struct fig rss_ratio[NR_ALLOC];      /* requested / RSS growth */
    struct fig rss_mib[NR_ALLOC];        /* RSS growth, MiB */
    struct fig requested_mib, objects;
    struct fig held_ratio, drained_ratio; /* kmm: requested / pages held, before / after kmm_drain */
    struct fig held_mib, drained_mib;
    double base_pages;
    int check;                           /* kmm_check in every kmm child */
};

static void measure_efficiency(struct eff_result *r)
{
    static double rr[NR_ALLOC][64], rm[NR_ALLOC][64], req[64], obj[64], hr[64], dr[64], hm[64], dm[64];
    r->check = 0;
    for (int i = 0; i < opt.reps; i++) {
        uint64_t seed = opt.seed + 0x1000u * (uint64_t)(i + 1);   /* a different heap each repetition */
        for (int a = 0; a < NR_ALLOC; a++) {
            struct eff_child c = run_child((enum alloc_id)a, seed);
            rr[a][i] = c.rss_growth > 0 ? c.requested / c.rss_growth : 0;
            rm[a][i] = c.rss_growth / 1048576.0;
            if (a == A_KMM) {
                req[i] = c.requested / 1048576.0;
                obj[i] = c.objects;
                hr[i] = c.held > 0 ? c.requested / c.held : 0;
                dr[i] = c.held_drained > 0 ? c.requested / c.held_drained : 0;
                hm[i] = c.held / 1048576.0;
                dm[i] = c.held_drained / 1048576.0;
                r->base_pages = c.base_pages;
                if (c.check)
                    r->check = -1;
            }
        }
    }
    for (int a = 0; a < NR_ALLOC; a++) {
        r->rss_ratio[a] = summarize(rr[a], opt.reps);
        r->rss_mib[a] = summarize(rm[a], opt.reps);
    }
    r->requested_mib = summarize(req, opt.reps);
    r->objects = summarize(obj, opt.reps);
    r->held_ratio = summarize(hr, opt.reps);
    r->drained_ratio = summarize(dr, opt.reps);
    r->held_mib = summarize(hm, opt.reps);
    r->drained_mib = summarize(dm, opt.reps);
}

/* ---- output ----------------------------------------------------------------------- */

static const char *met(bool ok) { return ok ? "met" : "NOT met"; }

/* "12.3 [11.9..13.0]" in a field of width w */
static void print_fig(struct fig f, int prec, int w)
{
    char b[64];
    snprintf(b, sizeof b, "%.*f [%.*f..%.*f]", prec, f.med, prec, f.min, prec, f.max);
    printf(" %-*s", w, b);
}

/* Targets: kmm ahead of glibc and jemalloc (their time over kmm's above 1)
 * and within 1.25x of mimalloc (mimalloc's time over kmm's at least 0.8), in
 * every speed workload; efficiency at least 0.85. */
struct targets {
    bool ahead_glibc, ahead_je, near_mi, eff;
};

static struct targets compute_targets(const struct speed *sp[NR_WORK], const struct eff_result *e)
{
    struct targets t = { true, true, true, e->held_ratio.med >= 0.85 };
    for (int w = 0; w < NR_WORK; w++) {
        if (sp[w]->ratio[A_GLIBC].med <= 1)
            t.ahead_glibc = false;
        if (sp[w]->ratio[A_JE].med <= 1)
            t.ahead_je = false;
        if (sp[w]->ratio[A_MI].med < 0.8)
            t.near_mi = false;
    }
    return t;
}

static void print_targets(const struct speed *sp[NR_WORK], const struct eff_result *e, struct targets t)
{
    printf("\ntargets (each speed target in every workload of tests 1 and 2; medians of the per-repetition ratios)\n");
    const struct {
        const char *label;
        enum alloc_id a;
        double bound;
        bool ok;
    } rows[] = {
        { "ahead of glibc    (glibc time / kmm time > 1)    ", A_GLIBC, 1.0, t.ahead_glibc },
        { "ahead of jemalloc (jemalloc time / kmm time > 1) ", A_JE, 1.0, t.ahead_je },
        { "within 1.25x of mimalloc (mimalloc / kmm >= 0.8) ", A_MI, 0.8, t.near_mi },
    };
    for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
        printf("   %s %s", rows[k].label, met(rows[k].ok));
        if (!rows[k].ok) {
            printf(" -- missed in:");
            for (int w = 0; w < NR_WORK; w++) {
                double q = sp[w]->ratio[rows[k].a].med;
                bool ok = rows[k].a == A_MI ? q >= rows[k].bound : q > rows[k].bound;
                if (!ok)
                    printf(" %s (%.2f)", work_key[w], q);
            }
        }
        printf("\n");
    }
    printf("   efficiency >= 0.85 (requested / pages held, no drain)  %s (%.3f; after kmm_drain %.3f)\n", met(t.eff),
           e->held_ratio.med, e->drained_ratio.med);
}

static void print_header(void)
{
    printf("kmm_malloc benchmark (bench/malloc)%s\n", opt.quick ? " -- QUICK smoke run, figures are rough" : "");
    printf("machine : %ld CPUs online (nproc %ld), %s, %s, load average %.2f at start\n", sys.nproc,
           sys.nproc_affinity, sys.cpu, sys.kernel, sys.loadavg);
    printf("note    : a shared, noisy machine (other jobs run on it); every figure is the median of\n"
           "          %d repetitions, [min..max] beside it; nothing is pinned\n", opt.reps);
#ifndef __OPTIMIZE__
    printf("WARNING : this benchmark was built without optimisation; use -DCMAKE_BUILD_TYPE=Release\n");
#endif
    printf("columns : kmm      = kmm_malloc(mm, n, 0)/kmm_free on kmm_create(NULL) (hosted, 64 GiB memfd,\n"
           "                     %zu-byte pages), statically linked; max slab size %zu\n", g_page,
           kmm_malloc_max_slab_size(g_mm));
    for (int a = A_GLIBC; a < NR_ALLOC; a++) {
        static const char *const fn[NR_ALLOC] = { "", "malloc/free", "malloc/free", "mi_malloc/mi_free",
                                                  "tc_malloc/tc_free" };
        printf("          %-8s = %s of %s %s from %s%s\n", alloc_key[a], fn[a], alloc_key[a], allocs.version[a],
               allocs.lib[a], a == A_GLIBC ? " (the process allocator)" : ", dlopen(RTLD_LOCAL)");
    }
    printf("checked : ");
    for (int a = 0; a < NR_ALLOC; a++)
        printf("%s%-8s %s: %s\n", a ? "          " : "", alloc_key[a], allocs.ok[a] ? "ok" : "** FAILED **",
               allocs.check[a]);
    if (allocs.reexec)
        printf("          (jemalloc's initial-exec TLS needs glibc's static TLS surplus: the program re-ran itself\n"
               "          with GLIBC_TUNABLES=%s)\n", TLS_TUNABLE);
}

static void print_speed_table(const struct speed *sp[], int from, int to, const char *unit)
{
    printf("   %-29s", unit);
    for (int a = 0; a < NR_ALLOC; a++)
        printf(" %-21s", alloc_key[a]);
    printf("\n");
    for (int w = from; w < to; w++) {
        printf("   %-29s", work_label[w]);
        for (int a = 0; a < NR_ALLOC; a++)
            print_fig(sp[w]->v[a], 1, 21);
        printf("\n");
    }
    printf("   %-29s", "peer time / kmm time");
    for (int a = A_GLIBC; a < NR_ALLOC; a++)
        printf(" %-21s", alloc_key[a]);
    printf("\n");
    for (int w = from; w < to; w++) {
        printf("   %-29s", work_label[w]);
        for (int a = A_GLIBC; a < NR_ALLOC; a++)
            print_fig(sp[w]->ratio[a], 2, 21);
        printf("\n");
    }
}

static void print_json(const struct speed *sp[NR_WORK], const struct xt_result *xt, const struct eff_result *e,
                       struct targets t, int check, double xt_others)
{
    printf("{\n  \"bench\": \"malloc\",\n  \"quick\": %s,\n  \"reps\": %d,\n", opt.quick ? "true" : "false", opt.reps);
#ifdef __OPTIMIZE__
    printf("  \"optimized\": true,\n");
#else
    printf("  \"optimized\": false,\n");
#endif
    printf("  \"machine\": {\"nproc\": %ld, \"nproc_affinity\": %ld, \"cpu\": \"%s\", \"kernel\": \"%s\", "
           "\"loadavg\": %.2f, \"note\": \"shared, noisy machine; medians of reps; nothing pinned\"},\n",
           sys.nproc, sys.nproc_affinity, sys.cpu, sys.kernel, sys.loadavg);
    printf("  \"allocators\": {");
    for (int a = 0; a < NR_ALLOC; a++)
        printf("\"%s\": {\"library\": \"%s\", \"version\": \"%s\", \"verified\": %s}%s", alloc_key[a], allocs.lib[a],
               allocs.version[a], allocs.ok[a] ? "true" : "false", a + 1 < NR_ALLOC ? ", " : "");
    printf(", \"static_tls_reexec\": %s, \"kmm_max_slab_size\": %zu},\n", allocs.reexec ? "true" : "false",
           kmm_malloc_max_slab_size(g_mm));
    printf("  \"speed\": {\n");
    for (int w = 0; w < NR_WORK; w++) {
        printf("    \"%s\": {\"unit\": \"%s\", ", work_key[w],
               w < W_LIFE ? "ns_per_pair" : w == W_LIFE ? "ns_per_step" : "ns_per_object");
        for (int a = 0; a < NR_ALLOC; a++)
            json_fig(alloc_key[a], sp[w]->v[a], ", ");
        if (w == W_XT)
            for (int a = 0; a < NR_ALLOC; a++) {
                char key[48];
                snprintf(key, sizeof key, "%s_mobjects_per_s", alloc_key[a]);
                json_fig(key, xt->mops[a], ", ");
            }
        printf("\"ops_per_rep\": {");
        for (int a = 0; a < NR_ALLOC; a++)
            printf("\"%s\": %ld%s", alloc_key[a], sp[w]->n[a], a + 1 < NR_ALLOC ? ", " : "}, ");
        printf("\"time_over_kmm\": {");
        for (int a = A_GLIBC; a < NR_ALLOC; a++)
            json_fig(alloc_key[a], sp[w]->ratio[a], a + 1 < NR_ALLOC ? ", " : "}}");
        printf("%s\n", w + 1 < NR_WORK ? "," : "");
    }
    printf("  },\n  \"efficiency\": {\"live_mib\": %ld, \"sizes\": \"1..4096\", \"age_steps_per_object\": %d, ",
           opt.eff_live_mib, opt.eff_age);
    json_fig("requested_mib", e->requested_mib, ", ");
    json_fig("objects", e->objects, ", ");
    json_fig("kmm_requested_over_held", e->held_ratio, ", ");
    json_fig("kmm_requested_over_held_after_drain", e->drained_ratio, ", ");
    json_fig("kmm_held_mib", e->held_mib, ", ");
    json_fig("kmm_held_after_drain_mib", e->drained_mib, ", ");
    printf("\"requested_over_rss_growth\": {");
    for (int a = 0; a < NR_ALLOC; a++)
        json_fig(alloc_key[a], e->rss_ratio[a], a + 1 < NR_ALLOC ? ", " : "}, ");
    printf("\"rss_growth_mib\": {");
    for (int a = 0; a < NR_ALLOC; a++)
        json_fig(alloc_key[a], e->rss_mib[a], a + 1 < NR_ALLOC ? ", " : "}, ");
    printf("\"kmm_check\": \"%s\"},\n", e->check == 0 ? "ok" : "FAILED");
    printf("  \"targets\": {\"ahead_of_glibc\": %s, \"ahead_of_jemalloc\": %s, \"within_1_25x_of_mimalloc\": %s, "
           "\"efficiency_0_85\": %s},\n", t.ahead_glibc ? "true" : "false", t.ahead_je ? "true" : "false",
           t.near_mi ? "true" : "false", t.eff ? "true" : "false");
    printf("  \"cross_thread_other_processes_cpus\": %.3f,\n", xt_others);
    printf("  \"kmm_check\": \"%s\",\n", check == 0 ? "ok" : "FAILED");
    printf("  \"noise\": {\"wall_s\": %.2f, \"other_processes_cpus\": %.3f, \"steal_pct\": %.2f}\n}\n", noise.wall_s,
           noise.others_cpus, noise.steal_pct);
}

/* ---- main ------------------------------------------------------------------------- */

static void print_one_thread(const struct speed *sp[])
{
    printf("\n1. one thread: alloc+free pairs (the first byte of each object written), ns per pair;\n"
           "   mixed = a precomputed sequence of %d sizes uniform in %d..%d. Random lifetime: %d live objects\n"
           "   of sizes %d..%d; each step frees a random one and allocates a new one in its place (first byte\n"
           "   written), ns per step; %ld steps per repetition, the same sequence for every allocator.\n"
           "   Every allocator holds %d other objects live meanwhile (sizes 16..1024; every second object of a\n"
           "   fill freed, so no size class has only full pages), as a program's heap does\n",
           MIX_N, MIX_MIN, MIX_MAX, LIFE_LIVE, MIX_MIN, MIX_MAX, opt.steps, BG_N / 2);
    print_speed_table(sp, 0, W_XT, "ns per pair / step");
    printf("   (\"peer time / kmm time\": per repetition, then the median; above 1 = kmm is faster)\n");
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: malloc [--json] [--quick] [--one-thread] [--reps N] [--steps N] [--xt-objects N] [--seed N]\n"
            "              [--hot-loop N]\n"
            "  --json          JSON instead of the table\n"
            "  --quick         a fast smoke run (3 repetitions, short runs, 16 MiB efficiency test): rough figures\n"
            "  --one-thread    only test 1 (one thread: pairs and random lifetime), its table, and exit\n"
            "  --reps N        repetitions per figure (default 9; the median is reported)\n"
            "  --steps N       steps per repetition of the random-lifetime test (default 1000000)\n"
            "  --xt-objects N  objects per run of the cross-thread test (default 2000000)\n"
            "  --seed N        seed of the size sequences and of the random tests\n"
            "  --hot-loop N    only run N kmm_malloc(64)/kmm_free pairs (for valgrind --tool=callgrind\n"
            "                  --toggle-collect=bench_kmm_pairs) and exit\n"
            "  --hot-mixed     with --hot-loop: pairs of the mixed sizes 16..1024 instead of 64 bytes\n"
            "  --hot-lifetime  with --hot-loop: N steps of the random-lifetime test instead (toggle\n"
            "                  bench_kmm_steps)\n");
}

int main(int argc, char **argv)
{
    /* The efficiency child: malloc --efficiency-child NAME SEED LIVE_MIB AGE */
    if (argc == 6 && !strcmp(argv[1], "--efficiency-child"))
        return efficiency_child(argv[2], strtoull(argv[3], NULL, 0), atol(argv[4]), atoi(argv[5]), argv);

    bool reps_given = false, steps_given = false, xt_given = false, one_thread = false;
    long hot_loop = 0;
    bool hot_mixed = false, hot_lifetime = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (!strcmp(a, "--json")) {
            opt.json = true;
        } else if (!strcmp(a, "--quick")) {
            opt.quick = true;
        } else if (!strcmp(a, "--one-thread")) {
            one_thread = true;
        } else if (!strcmp(a, "--reps") && has_val) {
            opt.reps = (int)parse_long(argv[++i], "--reps");
            reps_given = true;
        } else if (!strcmp(a, "--steps") && has_val) {
            opt.steps = parse_long(argv[++i], "--steps");
            steps_given = true;
        } else if (!strcmp(a, "--xt-objects") && has_val) {
            opt.xt_objects = parse_long(argv[++i], "--xt-objects");
            xt_given = true;
        } else if (!strcmp(a, "--seed") && has_val) {
            opt.seed = (uint64_t)parse_long(argv[++i], "--seed");
        } else if (!strcmp(a, "--hot-loop") && has_val) {
            hot_loop = parse_long(argv[++i], "--hot-loop");
        } else if (!strcmp(a, "--hot-mixed")) {
            hot_mixed = true;
        } else if (!strcmp(a, "--hot-lifetime")) {
            hot_lifetime = true;
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
        if (!steps_given)
            opt.steps = 100000;
        if (!xt_given)
            opt.xt_objects = 200000;
        opt.target_ns = 5e6;
        opt.eff_live_mib = 16;
        opt.eff_age = 2;
    }
    if (opt.reps > 64)
        opt.reps = 64;
    if (opt.steps < 100)
        opt.steps = 100;

    /* jemalloc first: it is the one that may need the program re-executed. */
    allocs.reexec = getenv(REEXEC_ENV) != NULL;
    if (!hot_loop) {
        load_jemalloc(argv);
        load_mimalloc();
        load_tcmalloc();
    }

    g_mm = kmm_create(NULL);
    if (!g_mm && hot_loop) {
        /* Valgrind cannot map 64 GiB; the instructions of a pair do not depend on the size. */
        struct kmm_config small = { .mem_size = 4ull << 30 };
        g_mm = kmm_create(&small);
    }
    if (!g_mm)
        die_errno("kmm_create(NULL)");
    struct kmm_page_stats st;
    kmm_page_stats(g_mm, &st);
    g_page = st.page_size ? st.page_size : 4096;

    if (hot_loop && hot_lifetime) {
        /* the random-lifetime steps of test 1, kmm only (valgrind
         * --tool=cachegrind --cache-sim=yes shows where its misses are) */
        uint64_t r = seed_init(opt.seed ^ 0x6c696665u);
        uint16_t *init = malloc(LIFE_LIVE * sizeof *init);
        uint32_t *steps = malloc((size_t)hot_loop * sizeof *steps);
        void **live = calloc(LIFE_LIVE, sizeof *live);
        if (!init || !steps || !live)
            die("out of memory for --hot-lifetime");
        for (long i = 0; i < LIFE_LIVE; i++)
            init[i] = (uint16_t)(MIX_MIN + rnd(&r) % (MIX_MAX - MIX_MIN + 1));
        for (long i = 0; i < hot_loop; i++) {
            uint64_t x = rnd(&r);
            steps[i] = (uint32_t)((x >> 32) % LIFE_LIVE) << 10 | (uint32_t)((x & 0xffffffffu) % (MIX_MAX - MIX_MIN + 1));
        }
        bench_kmm_fill(live, init, LIFE_LIVE);
        bench_kmm_steps(live, steps, hot_loop);
        bench_kmm_empty(live, LIFE_LIVE);
        kmm_destroy(g_mm);
        return 0;
    }
    if (hot_loop) {
        const uint16_t *sizes = &fixed_size[W_64];
        unsigned mask = 0;
        if (hot_mixed) {
            uint64_t r = seed_init(opt.seed);
            for (int i = 0; i < MIX_N; i++)
                mix_sizes[i] = (uint16_t)(MIX_MIN + rnd(&r) % (MIX_MAX - MIX_MIN + 1));
            sizes = mix_sizes;
            mask = MIX_N - 1;
        }
        bench_kmm_pairs(MIX_N, sizes, mask);     /* warm the magazines */
        bench_kmm_pairs(hot_loop, sizes, mask);
        kmm_destroy(g_mm);
        return 0;
    }

    verify_allocators();
    probe_system();
    uint64_t s = seed_init(opt.seed);
    for (int i = 0; i < MIX_N; i++)
        mix_sizes[i] = (uint16_t)(MIX_MIN + rnd(&s) % (MIX_MAX - MIX_MIN + 1));
    struct cpu_snap snap0 = cpu_snap(true);

    /* 1. one thread. */
    static struct speed pairs[NR_PAIR_WORK], life;
    background_fill();
    measure_pairs(pairs);
    measure_lifetime(&life);
    background_empty();
    if (one_thread) {
        const struct speed *sp[NR_WORK] = { 0 };
        for (int w = 0; w < NR_PAIR_WORK; w++)
            sp[w] = &pairs[w];
        sp[W_LIFE] = &life;
        print_header();
        print_one_thread(sp);
        kmm_destroy(g_mm);
        return 0;
    }

    /* 2. two threads, cross-thread frees. */
    static struct xt_result xt;
    struct cpu_snap xt0 = cpu_snap(true);
    measure_xt(&xt);
    noise_measure(xt0, cpu_snap(true));
    double xt_others = noise.others_cpus;

    int check = kmm_check(g_mm);

    /* 3. memory efficiency, in fresh processes. */
    static struct eff_result eff;
    measure_efficiency(&eff);
    noise_measure(snap0, cpu_snap(true));

    const struct speed *sp[NR_WORK];
    for (int w = 0; w < NR_PAIR_WORK; w++)
        sp[w] = &pairs[w];
    sp[W_LIFE] = &life;
    sp[W_XT] = &xt.s;
    struct targets t = compute_targets(sp, &eff);
    int rc = check == 0 && eff.check == 0 ? 0 : 1;

    if (opt.json) {
        print_json(sp, &xt, &eff, t, check, xt_others);
        kmm_destroy(g_mm);
        return rc;
    }

    print_header();

    print_one_thread(sp);

    printf("\n2. two threads, cross-thread frees: a producer allocates (sizes of the mixed sequence, first byte\n"
           "   written) and passes the pointers in batches of %d through a ring of %d slots; a consumer reads\n"
           "   each object's first byte and frees it. %ld objects per run, fresh threads every run\n",
           XT_BATCH, XT_SLOTS, xt.s.n[A_KMM]);
    printf("   %-29s", "million objects / s");
    for (int a = 0; a < NR_ALLOC; a++)
        printf(" %-21s", alloc_key[a]);
    printf("\n   %-29s", "throughput");
    for (int a = 0; a < NR_ALLOC; a++)
        print_fig(xt.mops[a], 2, 21);
    printf("\n");
    print_speed_table(sp, W_XT, NR_WORK, "ns per object (wall)");
    printf("   during test 2 other processes kept %.2f CPUs busy on average\n", xt_others);
    if (xt_others > 0.3)
        printf("   CAUTION: so the two threads did not have two CPUs all the time: test 2 understates every\n"
               "   allocator, and its ratios mix in how each one copes with taking turns on one CPU\n");

    printf("\n3. memory efficiency: objects of random sizes 1..%d, each written in full, until %ld MiB are\n"
           "   requested; then %d x the live count of steps freeing a random object and allocating until\n"
           "   %ld MiB are live again. Each allocator runs in a fresh process (fork + exec of this program),\n"
           "   so no other allocator's memory is in its RSS; a different seed each repetition\n",
           EFF_MAX_SIZE, opt.eff_live_mib, opt.eff_age, opt.eff_live_mib);
    printf("   live objects %.0f, requested %.1f MiB\n", eff.objects.med, eff.requested_mib.med);
    printf("   kmm pages held (kmm_page_stats allocated_pages x page size, minus the %.0f pages held before):\n",
           eff.base_pages);
    printf("     as the workload left it (no drain)  %8.1f MiB   requested/held %.3f [%.3f..%.3f]\n",
           eff.held_mib.med, eff.held_ratio.med, eff.held_ratio.min, eff.held_ratio.max);
    printf("     after kmm_drain                     %8.1f MiB   requested/held %.3f [%.3f..%.3f]\n",
           eff.drained_mib.med, eff.drained_ratio.med, eff.drained_ratio.min, eff.drained_ratio.max);
    printf("   resident memory growth (/proc/self/statm, before any drain), requested / growth:\n");
    for (int a = 0; a < NR_ALLOC; a++)
        printf("     %-8s %8.1f MiB   requested/RSS growth %.3f [%.3f..%.3f]\n", alloc_key[a], eff.rss_mib[a].med,
               eff.rss_ratio[a].med, eff.rss_ratio[a].min, eff.rss_ratio[a].max);
    printf("   (kmm's RSS counts the memfd pages its direct map touched, kmm metadata included)\n");
    printf("   kmm_check: after tests 1-2 %s; in every efficiency child %s\n", check == 0 ? "ok" : "FAILED",
           eff.check == 0 ? "ok" : "FAILED");

    print_targets(sp, &eff, t);

    printf("\nnoise: during the %.1f s run other processes kept %.2f CPUs busy on average and the\n"
           "       hypervisor stole %.1f%% of the CPU time (both should be near 0 for clean figures)\n",
           noise.wall_s, noise.others_cpus, noise.steal_pct);

    kmm_destroy(g_mm);
    return rc;   /* figures are never a failure; a broken heap is */
}
