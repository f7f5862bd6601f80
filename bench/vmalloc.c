/* bench/vmalloc.c - kmm_vmalloc side by side with what a user does by hand:
 * an anonymous mmap with a PROT_NONE guard page, then munmap. See
 * bench/README.md.
 *
 * Four measurements, each figure the median of several repetitions, the
 * ratios taken within each repetition:
 *   1. kmm_vmalloc(64 KiB) + kmm_vfree, hot (one allocation freed at once),
 *      and in batches of 512 (allocated, then all freed): time per pair and
 *      platform calls per pair, against mmap(68 KiB) + mprotect(guard,
 *      PROT_NONE) + munmap (three calls); lazy (default) and strict mode;
 *   2. the same on a memory system whose free memory is all single pages;
 *   3. the workloads of Linux's lib/test_vmalloc.c (tests/stress/
 *      vm_workloads.c, included below), one thread, then all in 4 threads;
 * and the machine's cost of a system call and of a page fault, which the
 * figures of 1 and 2 are made of.
 *
 * Every kmm and peer allocation writes one byte in every page (the hot pair
 * also once with the first byte only): kmm_vmalloc hands out memory that is
 * backed and mapped, as the kernel's vmalloc does, while mmap hands out
 * address space whose pages are allocated, zeroed and mapped at first touch;
 * a caller of a 64 KiB buffer uses it, and only then do both sides have done
 * the same work.
 */
#define VM_WORKLOADS_NO_MAIN
#include "../tests/stress/vm_workloads.c"

#include "harness.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

const char harness_prog[] = "bench/vmalloc";

#define NOINLINE __attribute__((noinline))

#define AREA     ((size_t)64 << 10)     /* the allocation of tests 1 and 2 */
#define GUARD    ((size_t)4096)         /* the peer's guard page (the host page) */
#define PAGE     ((size_t)4096)         /* kmm's page size in tests 1 and 2 (the default) */
#define BATCH    ((int)(KMM_VMALLOC_LAZY_PAGES / (AREA / PAGE)))   /* 512: one lazy batch of 64 KiB areas */
#define FRAG_MEM ((uint64_t)256 << 20)  /* the fragmented memory system */
#define MT_THREADS 4

static struct {
    bool json, quick;
    int reps;
    double target_ns;        /* wall time of one column in one repetition */
    double wl_scale;         /* iterations of the workloads (x the test's counts) */
} opt = {
    .reps = 9,
    .target_ns = 50e6,
    .wl_scale = 1,
};

static struct kmm *g_mm;       /* kmm_create(NULL) defaults: 64 GiB, lazy frees */
static struct kmm *g_strict;   /* the same with KMM_VMALLOC_STRICT */
static struct kmm *g_frag;     /* 256 MiB, free memory all single pages */
static void **g_frag_held;     /* the pages that keep it fragmented */
static size_t g_frag_nheld, g_frag_free_pages;
static double g_frag_runs;     /* physically contiguous runs per 64 KiB area there */
static volatile uintptr_t sink;
static void *g_batch[BATCH];

/* ---- the columns ------------------------------------------------------------ */

static inline void touch(char *p, bool every_page)
{
    if (every_page) {
        for (size_t o = 0; o < AREA; o += PAGE)
            ((volatile char *)p)[o] = (char)o;
    } else {
        *(volatile char *)p = 1;
    }
    sink = (uintptr_t)p;
}

static inline char *peer_alloc(void)
{
    char *p = mmap(NULL, AREA + GUARD, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        die_errno("peer: mmap");
    if (mprotect(p + AREA, GUARD, PROT_NONE) != 0)
        die_errno("peer: mprotect");
    return p;
}
static inline void peer_free(char *p)
{
    if (munmap(p, AREA + GUARD) != 0)
        die_errno("peer: munmap");
}

static inline char *bench_vm_alloc(struct kmm *mm, unsigned flags)
{
    char *p = kmm_vmalloc(mm, AREA, flags);
    if (__builtin_expect(p == NULL, 0))
        die("kmm_vmalloc(64 KiB) failed");
    return p;
}

/* n hot pairs: allocate, write, free. */
#define HOT_LOOP(name, MM, FLAGS, EVERY)                                                           \
    static NOINLINE void name(long n)                                                              \
    {                                                                                              \
        for (long i = 0; i < n; i++) {                                                             \
            char *p = bench_vm_alloc(MM, FLAGS);                                                        \
            touch(p, EVERY);                                                                       \
            kmm_vfree(MM, p);                                                                      \
        }                                                                                          \
    }
HOT_LOOP(hot_kmm, g_mm, 0, true)
HOT_LOOP(hot_kmm_zero, g_mm, KMM_ZERO, true)
HOT_LOOP(hot_strict, g_strict, 0, true)
HOT_LOOP(hot1_kmm, g_mm, 0, false)
HOT_LOOP(frag_hot, g_frag, 0, true)

static NOINLINE void hot_peer(long n)
{
    for (long i = 0; i < n; i++) {
        char *p = peer_alloc();
        touch(p, true);
        peer_free(p);
    }
}
static NOINLINE void hot1_peer(long n)
{
    for (long i = 0; i < n; i++) {
        char *p = peer_alloc();
        touch(p, false);
        peer_free(p);
    }
}

/* n batches: BATCH allocations, each written, then all freed. For kmm the
 * frees of one batch are one lazy batch (KMM_VMALLOC_LAZY_PAGES pages), so
 * they purge themselves; kmm_vmalloc_purge() after them makes sure that
 * nothing is left to take back mapped: every allocation maps. */
static void batch_kmm_on(struct kmm *mm, long n)
{
    for (long b = 0; b < n; b++) {
        for (int i = 0; i < BATCH; i++) {
            g_batch[i] = bench_vm_alloc(mm, 0);
            touch(g_batch[i], true);
        }
        for (int i = 0; i < BATCH; i++)
            kmm_vfree(mm, g_batch[i]);
        kmm_vmalloc_purge(mm);
    }
}
static NOINLINE void batch_kmm(long n) { batch_kmm_on(g_mm, n); }
static NOINLINE void batch_strict(long n) { batch_kmm_on(g_strict, n); }
static NOINLINE void frag_batch(long n) { batch_kmm_on(g_frag, n); }
static NOINLINE void batch_peer(long n)
{
    for (long b = 0; b < n; b++) {
        for (int i = 0; i < BATCH; i++) {
            g_batch[i] = peer_alloc();
            touch(g_batch[i], true);
        }
        for (int i = 0; i < BATCH; i++)
            peer_free(g_batch[i]);
    }
}

enum col { H_KMM, H_ZERO, H_STRICT, H_PEER, H1_KMM, H1_PEER, B_KMM, B_STRICT, B_PEER, F_HOT, F_BATCH, NR_COLS };

static const struct column {
    const char *key;           /* JSON, --loop */
    const char *label;         /* table */
    void (*fn)(long n);
    struct kmm **mm;           /* whose calls to count; NULL = the peer (3 per pair) */
    int pairs;                 /* pairs per unit of fn */
    enum col peer;             /* the peer row its ratio is taken against (itself for a peer) */
} columns[NR_COLS] = {
    [H_KMM]    = { "hot_kmm", "kmm_vmalloc/kmm_vfree", hot_kmm, &g_mm, 1, H_PEER },
    [H_ZERO]   = { "hot_kmm_zero", "kmm_vmalloc(KMM_ZERO)/kmm_vfree", hot_kmm_zero, &g_mm, 1, H_PEER },
    [H_STRICT] = { "hot_kmm_strict", "kmm strict (KMM_VMALLOC_STRICT)", hot_strict, &g_strict, 1, H_PEER },
    [H_PEER]   = { "hot_peer", "mmap+mprotect+munmap", hot_peer, NULL, 1, H_PEER },
    [H1_KMM]   = { "hot_first_byte_kmm", "kmm_vmalloc/kmm_vfree", hot1_kmm, &g_mm, 1, H1_PEER },
    [H1_PEER]  = { "hot_first_byte_peer", "mmap+mprotect+munmap", hot1_peer, NULL, 1, H1_PEER },
    [B_KMM]    = { "batch_kmm", "kmm_vmalloc/kmm_vfree (+purge)", batch_kmm, &g_mm, BATCH, B_PEER },
    [B_STRICT] = { "batch_kmm_strict", "kmm strict (KMM_VMALLOC_STRICT)", batch_strict, &g_strict, BATCH, B_PEER },
    [B_PEER]   = { "batch_peer", "mmap+mprotect+munmap", batch_peer, NULL, BATCH, B_PEER },
    [F_HOT]    = { "fragmented_hot_kmm", "hot pair, kmm", frag_hot, &g_frag, 1, H_PEER },
    [F_BATCH]  = { "fragmented_batch_kmm", "batches of 512, kmm (+purge)", frag_batch, &g_frag, BATCH, B_PEER },
};

struct col_result {
    struct fig ns;             /* per pair */
    struct fig calls;          /* platform map + unmap calls per pair */
    struct fig ratio;          /* the peer row's ns over this row's, per repetition */
    long n;                    /* units of fn per repetition */
};

static uint64_t vm_calls(struct kmm *mm)
{
    struct kmm_vmalloc_stats st;
    kmm_vmalloc_stats(mm, &st);
    return st.map_calls + st.unmap_calls;
}

/* Units of fn that make one repetition last about target_ns (at least
 * min); doubles a trial count until it takes 2 ms (1 ms quick). Hot pairs
 * are warmed up first (the first call may create the vmalloc space); a
 * batch is its own warm-up. */
static long calibrate_count(void (*fn)(long), double target_ns, long min)
{
    double floor_ns = opt.quick ? 1e6 : 2e6;
    if (min > 1)
        fn(min);
    for (long k = 1;; k *= 2) {
        double t0 = now_ns();
        fn(k);
        double dt = now_ns() - t0;
        if (dt >= floor_ns || k >= (1l << 24)) {
            double n = target_ns * (double)k / (dt > 1 ? dt : 1);
            return n < (double)min ? min : n > 1e8 ? 100000000l : (long)n;
        }
    }
}

static void measure_cols(struct col_result r[NR_COLS])
{
    static double v[NR_COLS][64], calls[NR_COLS][64], ratio[NR_COLS][64];
    for (int c = 0; c < NR_COLS; c++)
        r[c].n = calibrate_count(columns[c].fn, opt.target_ns,
                                 columns[c].pairs > 1 ? 1 : opt.quick ? 16 : 64);   /* slow pairs: not too few */
    for (int i = 0; i < opt.reps; i++) {
        for (int c = 0; c < NR_COLS; c++) {
            const struct column *col = &columns[c];
            if (col->pairs == 1)
                col->fn(r[c].n / 10 + 1);   /* warm up (a batch is its own warm-up) */
            else if (col->mm)
                kmm_vmalloc_purge(*col->mm);   /* no area the hot rows freed is left to take back */
            uint64_t c0 = col->mm ? vm_calls(*col->mm) : 0;
            double t0 = now_ns();
            col->fn(r[c].n);
            double t1 = now_ns();
            double pairs = (double)r[c].n * col->pairs;
            v[c][i] = (t1 - t0) / pairs;
            calls[c][i] = col->mm ? (double)(vm_calls(*col->mm) - c0) / pairs : 3;
        }
        for (int c = 0; c < NR_COLS; c++)
            ratio[c][i] = v[columns[c].peer][i] / v[c][i];
    }
    for (int c = 0; c < NR_COLS; c++) {
        r[c].ns = summarize(v[c], opt.reps);
        r[c].calls = summarize(calls[c], opt.reps);
        r[c].ratio = summarize(ratio[c], opt.reps);
    }
}

/* ---- the fragmented memory system ---------------------------------------------- */

static void vm_runs_of(void *arg, const struct kmm_vmalloc_area_info *a)
{
    size_t *acc = arg;
    if (!strcmp(a->kind, "vmalloc")) {
        acc[0]++;
        acc[1] += a->runs;
    }
}

/* Every page allocated at order 0, then every other one freed: no two free
 * pages are buddies, so the free memory is all order 0 and stays so (a
 * freed page cannot merge while its buddy is held). The vmalloc space and
 * its metadata caches are made first. */
static void make_fragmented(void)
{
    struct kmm_config cfg = { .mem_size = FRAG_MEM };
    g_frag = kmm_create(&cfg);
    if (!g_frag)
        die_errno("kmm_create(256 MiB)");
    void *w = kmm_vmalloc(g_frag, AREA, 0);
    if (!w)
        die("fragmented: first kmm_vmalloc failed");
    kmm_vfree(g_frag, w);
    kmm_vmalloc_purge(g_frag);
    size_t cap = (size_t)(FRAG_MEM / PAGE), n = 0;
    void **all = malloc(cap * sizeof *all);
    if (!all)
        die("out of memory");
    for (void *p; n < cap && (p = kmm_alloc_pages(g_frag, 0, 0)) != NULL;)
        all[n++] = p;
    g_frag_held = malloc((n / 2 + 1) * sizeof *g_frag_held);
    if (!g_frag_held)
        die("out of memory");
    /* by address, so that "every other" means every other frame */
    qsort(all, n, sizeof *all, wl_cmp_ptr);
    for (size_t i = 0; i < n; i++) {
        if (i & 1)
            g_frag_held[g_frag_nheld++] = all[i];
        else
            kmm_free_pages(g_frag, all[i]);
    }
    free(all);
    kmm_drain(g_frag);   /* the thread's page cache back to the buddy lists */
    struct kmm_page_stats st;
    kmm_page_stats(g_frag, &st);
    g_frag_free_pages = st.free_pages;
    for (unsigned a = 0; a < KMM_MAX_AREAS; a++)
        for (unsigned o = 1; o <= KMM_MAX_ORDER; o++)
            if (st.nr_free[a][o])
                die("fragmented: a free block above order 0 is left");
    if (st.free_pages < 4 * (size_t)BATCH * (AREA / PAGE))
        die("fragmented: too little free memory for the batches");
    /* how many runs a 64 KiB area gets there */
    for (int i = 0; i < 64; i++)
        g_batch[i] = bench_vm_alloc(g_frag, 0);
    size_t acc[2] = { 0, 0 };
    kmm_vmalloc_info(g_frag, vm_runs_of, acc);
    g_frag_runs = acc[0] ? (double)acc[1] / (double)acc[0] : 0;
    for (int i = 0; i < 64; i++)
        kmm_vfree(g_frag, g_batch[i]);
    kmm_vmalloc_purge(g_frag);
}

/* ---- the machine's costs ---------------------------------------------------------- */

static struct fig m_syscall_ns, m_fault_ns, m_populated_ns;

static void measure_machine(void)
{
    enum { R = 5, CALLS = 20000, PAGES = 64 };
    double sc[R], pf[R], pop[R];
    /* a file of resident pages, as kmm's memfd is */
    int fd = memfd_create("bench-vmalloc", 0);
    if (fd < 0 || ftruncate(fd, PAGES * PAGE) != 0)
        die_errno("memfd");
    char *file = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (file == MAP_FAILED)
        die_errno("mmap memfd");
    memset(file, 1, PAGES * PAGE);
    for (int r = 0; r < R; r++) {
        double t0 = now_ns();
        for (int i = 0; i < CALLS; i++)
            syscall(SYS_getppid);
        sc[r] = (now_ns() - t0) / CALLS;
        /* an anonymous page fault: first write (allocation, zeroing, mapping),
         * the mmap and munmap around it subtracted */
        t0 = now_ns();
        char *p = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            die_errno("mmap");
        munmap(p, PAGES * PAGE);
        double empty = now_ns() - t0;
        t0 = now_ns();
        p = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            die_errno("mmap");
        for (size_t o = 0; o < PAGES * PAGE; o += PAGE)
            p[o] = 1;
        munmap(p, PAGES * PAGE);
        pf[r] = (now_ns() - t0 - empty) / PAGES;
        /* the first write to a page already mapped and populated (a second
         * MAP_POPULATE mapping of resident file pages, as kmm_vmalloc makes):
         * a TLB miss on bare metal; an exit to the hypervisor where page
         * tables are virtualised in software */
        p = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
        if (p == MAP_FAILED)
            die_errno("mmap memfd");
        t0 = now_ns();
        for (size_t o = 0; o < PAGES * PAGE; o += PAGE)
            ((volatile char *)p)[o] = 2;
        pop[r] = (now_ns() - t0) / PAGES;
        munmap(p, PAGES * PAGE);
    }
    munmap(file, PAGES * PAGE);
    close(fd);
    m_syscall_ns = summarize(sc, R);
    m_fault_ns = summarize(pf, R);
    m_populated_ns = summarize(pop, R);
}

/* ---- test 3: the test_vmalloc workloads ------------------------------------------------ */

struct wl_fig {
    struct fig us;             /* per operation */
    struct fig calls;          /* map + unmap calls per operation (one thread only) */
};
static struct wl_fig wl_one[WL_COUNT], wl_mt[WL_COUNT];
static struct fig wl_mt_wall_us;   /* wall time of the threaded run over all its operations */
static long wl_one_ops[WL_COUNT], wl_mt_ops[WL_COUNT];
static const uint64_t wl_seed = 0x766d616c6c6f63ull;   /* "vmalloc": the same runs every time */

static void measure_workloads(void)
{
    static double us1[WL_COUNT][64], calls1[WL_COUNT][64], usm[WL_COUNT][64], wall[64];
    for (int rep = 0; rep < opt.reps; rep++) {
        for (int i = 0; i < WL_COUNT; i++) {
            struct wl_result r = wl_run_one(i, PAGE, WL_TOUCH, opt.wl_scale, wl_seed);
            us1[i][rep] = r.ns / 1e3 / (double)r.ops;
            calls1[i][rep] = (double)r.calls / (double)r.ops;
            wl_one_ops[i] = r.ops;
        }
        struct wl_result r[WL_COUNT];
        double wall_ns;
        wl_run_threads(MT_THREADS, PAGE, WL_TOUCH, opt.wl_scale * 0.25, wl_seed, r, &wall_ns);
        long all = 0;
        for (int i = 0; i < WL_COUNT; i++) {
            usm[i][rep] = r[i].ns / 1e3 / (double)r[i].ops;
            wl_mt_ops[i] = r[i].ops;
            all += r[i].ops;
        }
        wall[rep] = wall_ns / 1e3 / (double)all;
    }
    for (int i = 0; i < WL_COUNT; i++) {
        wl_one[i].us = summarize(us1[i], opt.reps);
        wl_one[i].calls = summarize(calls1[i], opt.reps);
        wl_mt[i].us = summarize(usm[i], opt.reps);
    }
    wl_mt_wall_us = summarize(wall, opt.reps);
}

/* ---- output ----------------------------------------------------------------------------- */

static const char *met(bool ok) { return ok ? "met" : "NOT met"; }

static void print_col(const struct col_result *r, int c, const char *label)
{
    char range[40];
    snprintf(range, sizeof range, "[%.2f..%.2f]", r[c].ns.min / 1e3, r[c].ns.max / 1e3);
    printf("   %-36s %9.2f %-18s %7.3f", label, r[c].ns.med / 1e3, range, r[c].calls.med);
    if ((int)columns[c].peer != c)
        printf("  %7.2fx [%.2f..%.2f]", r[c].ratio.med, r[c].ratio.min, r[c].ratio.max);
    printf("\n");
}

static void print_table(const struct col_result *r, int check)
{
    printf("kmm vmalloc benchmark (bench/vmalloc)%s\n", opt.quick ? " -- QUICK smoke run, figures are rough" : "");
    printf("machine : %ld CPUs online (nproc %ld), %s, %s, load average %.2f at start\n", sys.nproc,
           sys.nproc_affinity, sys.cpu, sys.kernel, sys.loadavg);
    printf("          a system call (getppid) %.0f ns; a first write to a page: anonymous (page fault)\n"
           "          %.0f ns, mapped and populated already (MAP_POPULATE) %.0f ns\n",
           m_syscall_ns.med, m_fault_ns.med, m_populated_ns.med);
    printf("note    : a shared, noisy machine (other jobs run on it); every figure is the median of\n"
           "          %d repetitions, [min..max] beside it; nothing is pinned\n", opt.reps);
#ifndef __OPTIMIZE__
    printf("WARNING : this benchmark was built without optimisation; use -DCMAKE_BUILD_TYPE=Release\n");
#endif
    printf("columns : kmm  = kmm_vmalloc(mm, 64 KiB, 0)/kmm_vfree on kmm_create(NULL) (hosted, 64 GiB memfd,\n"
           "                 4 KiB pages, lazy frees); strict = the same with vmalloc_flags KMM_VMALLOC_STRICT\n"
           "          peer = mmap(68 KiB, anonymous) + mprotect(last 4 KiB, PROT_NONE) / munmap: 3 calls\n"
           "          every allocation gets one byte written in each of its 16 pages unless said otherwise\n");

    printf("\n1. 64 KiB allocation + free, one thread  %10s %-18s %7s  %s\n", "us/pair", "[min..max]", "calls",
           "peer/kmm [min..max]");
    printf("   hot: each allocation freed at once\n");
    print_col(r, H_KMM, columns[H_KMM].label);
    print_col(r, H_ZERO, columns[H_ZERO].label);
    print_col(r, H_STRICT, columns[H_STRICT].label);
    print_col(r, H_PEER, columns[H_PEER].label);
    printf("   hot, only the first byte written\n");
    print_col(r, H1_KMM, columns[H1_KMM].label);
    print_col(r, H1_PEER, columns[H1_PEER].label);
    printf("   batches: %d allocations (one lazy batch, 32 MiB), then all freed\n", BATCH);
    print_col(r, B_KMM, columns[B_KMM].label);
    print_col(r, B_STRICT, columns[B_STRICT].label);
    print_col(r, B_PEER, columns[B_PEER].label);
    printf("   (calls: platform map + unmap calls per pair, from kmm_vmalloc_stats; the peer's are its 3;\n"
           "    peer/kmm: the peer row's time over this row's in the same repetition, median; above 1 = kmm faster)\n");
    printf("   target: hot pair 1.5x faster than the peer or better: %s (%.2fx); batches: about one call\n"
           "   per allocation: %.3f calls/pair, %.2fx the peer's speed\n",
           met(r[H_KMM].ratio.med >= 1.5), r[H_KMM].ratio.med, r[B_KMM].calls.med, r[B_KMM].ratio.med);
    printf("   lazy against strict frees (strict time / lazy time): hot %.2fx, batches %.2fx\n",
           r[H_STRICT].ns.med / r[H_KMM].ns.med, r[B_STRICT].ns.med / r[B_KMM].ns.med);

    printf("\n2. physical memory fragmented to single pages: a %llu MiB memory system, every page allocated\n"
           "   at order 0 and every other one freed (%zu free pages, none above order 0); %.1f runs\n"
           "   (mappings) per 64 KiB area\n", (unsigned long long)(FRAG_MEM >> 20), g_frag_free_pages, g_frag_runs);
    print_col(r, F_HOT, columns[F_HOT].label);
    print_col(r, F_BATCH, columns[F_BATCH].label);
    printf("   (peer/kmm against the unfragmented peer rows of 1: the peer does not depend on kmm's memory)\n");
    printf("   fragmented over unfragmented (time): hot %.2fx, batches %.2fx\n", r[F_HOT].ns.med / r[H_KMM].ns.med,
           r[F_BATCH].ns.med / r[B_KMM].ns.med);

    printf("\n3. the lib/test_vmalloc workloads (tests/stress/vm_workloads.c), first byte of each area\n"
           "   written; each single-thread run on a fresh memory system (1 GiB, 4 KiB pages)\n");
    printf("   %-26s %8s %9s %-18s %7s   %d threads at once: %9s %s\n", "", "ops", "us/op", "[min..max]", "calls",
           MT_THREADS, "us/op", "[min..max]");
    for (int i = 0; i < WL_COUNT; i++) {
        char r1[40], r2[40];
        snprintf(r1, sizeof r1, "[%.2f..%.2f]", wl_one[i].us.min, wl_one[i].us.max);
        snprintf(r2, sizeof r2, "[%.2f..%.2f]", wl_mt[i].us.min, wl_mt[i].us.max);
        printf("   %-26s %8ld %9.2f %-18s %7.3f   %6ld ops %14.2f %s\n", workloads[i].name, wl_one_ops[i],
               wl_one[i].us.med, r1, wl_one[i].calls.med, wl_mt_ops[i], wl_mt[i].us.med, r2);
    }
    printf("   (one operation: see bench/README.md; threads: each thread's time over its operations; the\n"
           "    threaded run's wall time over all its operations: %.2f us [%.2f..%.2f])\n", wl_mt_wall_us.med,
           wl_mt_wall_us.min, wl_mt_wall_us.max);

    printf("\nkmm_check of the three memory systems after the run: %s\n", check == 0 ? "ok" : "FAILED");
    printf("noise: during the %.1f s run other processes kept %.2f CPUs busy on average and the\n"
           "       hypervisor stole %.1f%% of the CPU time (both should be near 0 for clean figures)\n",
           noise.wall_s, noise.others_cpus, noise.steal_pct);
}

static void json_col(const struct col_result *r, int c, bool last)
{
    printf("    \"%s\": {\"pairs_per_rep\": %ld, ", columns[c].key, r[c].n * columns[c].pairs);
    json_fig("ns_per_pair", r[c].ns, ", ");
    json_fig("calls_per_pair", r[c].calls, (int)columns[c].peer != c ? ", " : "}");
    if ((int)columns[c].peer != c) {
        char key[64];
        snprintf(key, sizeof key, "%s_over_this", columns[columns[c].peer].key);
        json_fig(key, r[c].ratio, "}");
    }
    printf("%s\n", last ? "" : ",");
}

static void print_json(const struct col_result *r, int check)
{
    printf("{\n  \"bench\": \"vmalloc\",\n  \"quick\": %s,\n  \"reps\": %d,\n", opt.quick ? "true" : "false", opt.reps);
#ifdef __OPTIMIZE__
    printf("  \"optimized\": true,\n");
#else
    printf("  \"optimized\": false,\n");
#endif
    printf("  \"machine\": {\"nproc\": %ld, \"nproc_affinity\": %ld, \"cpu\": \"%s\", \"kernel\": \"%s\", "
           "\"loadavg\": %.2f, ", sys.nproc, sys.nproc_affinity, sys.cpu, sys.kernel, sys.loadavg);
    json_fig("syscall_ns", m_syscall_ns, ", ");
    json_fig("page_fault_ns", m_fault_ns, ", ");
    json_fig("populated_first_write_ns", m_populated_ns, ", ");
    printf("\"note\": \"shared, noisy machine; medians of reps; nothing pinned\"},\n");
    printf("  \"setup\": {\"area_bytes\": %zu, \"batch\": %d, \"touch\": \"one byte per page unless first_byte\", "
           "\"peer\": \"mmap(68 KiB)+mprotect(4 KiB guard, PROT_NONE)/munmap\", "
           "\"kmm\": \"kmm_create(NULL), 64 GiB, 4 KiB pages\"},\n", AREA, BATCH);
    printf("  \"pairs\": {\n");
    for (int c = 0; c < F_HOT; c++)
        json_col(r, c, c + 1 == F_HOT);
    printf("  },\n  \"targets\": {\"hot_1_5x\": %s},\n", r[H_KMM].ratio.med >= 1.5 ? "true" : "false");
    printf("  \"fragmented\": {\"mem_size\": %llu, \"free_pages\": %zu, \"runs_per_area\": %.2f,\n",
           (unsigned long long)FRAG_MEM, g_frag_free_pages, g_frag_runs);
    json_col(r, F_HOT, false);
    json_col(r, F_BATCH, true);
    printf("  },\n  \"workloads\": {\"threads\": %d, ", MT_THREADS);
    json_fig("threaded_wall_us_per_op", wl_mt_wall_us, ",\n");
    for (int i = 0; i < WL_COUNT; i++) {
        printf("    \"%s\": {\"ops\": %ld, ", workloads[i].name, wl_one_ops[i]);
        json_fig("us_per_op", wl_one[i].us, ", ");
        json_fig("calls_per_op", wl_one[i].calls, ", ");
        printf("\"threaded_ops\": %ld, ", wl_mt_ops[i]);
        json_fig("threaded_us_per_op", wl_mt[i].us, "}");
        printf("%s\n", i + 1 < WL_COUNT ? "," : "");
    }
    printf("  },\n  \"kmm_check\": %s,\n", check == 0 ? "\"ok\"" : "\"FAILED\"");
    printf("  \"noise\": {\"wall_s\": %.2f, \"other_processes_cpus\": %.3f, \"steal_pct\": %.2f}\n}\n", noise.wall_s,
           noise.others_cpus, noise.steal_pct);
}

/* ---- main ------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vmalloc [--json] [--quick] [--reps N] [--loop COLUMN N]\n"
            "  --json           JSON instead of the table\n"
            "  --quick          a fast smoke run (3 repetitions, short runs): rough figures\n"
            "  --reps N         repetitions per figure (default 9; the median is reported)\n"
            "  --loop COLUMN N  only run N units of one column and print its call counts, for\n"
            "                   strace -c -f or perf; COLUMN is one of:\n"
            "                  ");
    for (int c = 0; c < NR_COLS; c++)
        fprintf(f, " %s", columns[c].key);
    fprintf(f, "\n                   (a unit is one pair, or one batch of %d pairs for batch_*)\n", BATCH);
}

/* The memory systems: all of them, or (--loop) only the one a column uses. */
static void create_mms(struct kmm **only)
{
    if (!only || only == &g_mm) {
        g_mm = kmm_create(NULL);
        if (!g_mm)
            die_errno("kmm_create(NULL)");
    }
    if (!only || only == &g_strict) {
        struct kmm_config strict = { .vmalloc_flags = KMM_VMALLOC_STRICT };
        g_strict = kmm_create(&strict);
        if (!g_strict)
            die_errno("kmm_create(strict)");
    }
    if (!only || only == &g_frag)
        make_fragmented();
}

/* kmm_check of each memory system after a purge (and, for the fragmented
 * one, after giving back the pages that fragment it). */
static int check_mms(void)
{
    int rc = 0;
    struct kmm *all[3] = { g_mm, g_strict, g_frag };
    for (int i = 0; i < 3; i++) {
        if (!all[i])
            continue;
        kmm_vmalloc_purge(all[i]);
        if (kmm_check(all[i]) != 0)
            rc = -1;
    }
    if (g_frag) {
        for (size_t i = 0; i < g_frag_nheld; i++)
            kmm_free_pages(g_frag, g_frag_held[i]);
        g_frag_nheld = 0;
        if (kmm_check(g_frag) != 0)
            rc = -1;
    }
    return rc;
}

static void destroy_mms(void)
{
    kmm_destroy(g_frag);
    kmm_destroy(g_strict);
    kmm_destroy(g_mm);
    g_frag = g_strict = g_mm = NULL;
}

static int run_loop(const char *key, long n)
{
    for (int c = 0; c < NR_COLS; c++) {
        if (strcmp(columns[c].key, key))
            continue;
        const struct column *col = &columns[c];
        create_mms(col->mm ? col->mm : &g_mm);
        uint64_t c0 = col->mm ? vm_calls(*col->mm) : 0;
        col->fn(n);
        long pairs = n * col->pairs;
        if (col->mm) {
            uint64_t calls = vm_calls(*col->mm) - c0;
            fprintf(stderr, "bench/vmalloc: %s: %ld pairs, %llu platform map+unmap calls (%.3f per pair)\n", key,
                    pairs, (unsigned long long)calls, pairs ? (double)calls / (double)pairs : 0);
        } else {
            fprintf(stderr, "bench/vmalloc: %s: %ld pairs, 3 calls each (mmap, mprotect, munmap)\n", key, pairs);
        }
        int rc = check_mms();
        destroy_mms();
        return rc == 0 ? 0 : 1;
    }
    usage(stderr);
    return 2;
}

int main(int argc, char **argv)
{
    bool reps_given = false;
    const char *loop = NULL;
    long loop_n = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) {
            opt.json = true;
        } else if (!strcmp(a, "--quick")) {
            opt.quick = true;
        } else if (!strcmp(a, "--reps") && i + 1 < argc) {
            opt.reps = (int)parse_long(argv[++i], "--reps");
            reps_given = true;
        } else if (!strcmp(a, "--loop") && i + 2 < argc) {
            loop = argv[++i];
            loop_n = strcmp(argv[i + 1], "0") ? parse_long(argv[i + 1], "--loop count") : 0;
            i++;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (loop)
        return run_loop(loop, loop_n);
    if (opt.quick) {
        if (!reps_given)
            opt.reps = 3;
        opt.target_ns = 5e6;
        opt.wl_scale = 0.25;
    }
    if (opt.reps > 64)
        opt.reps = 64;

    probe_system();
    struct cpu_snap snap0 = cpu_snap(false);
    measure_machine();
    create_mms(NULL);

    static struct col_result r[NR_COLS];
    measure_cols(r);
    measure_workloads();
    int check = check_mms();
    noise_measure(snap0, cpu_snap(false));

    if (opt.json)
        print_json(r, check);
    else
        print_table(r, check);
    destroy_mms();
    return check == 0 ? 0 : 1;   /* figures are never a failure; a broken memory system is */
}
