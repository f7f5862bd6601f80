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

/* ---- test 3's peer: the same workloads by hand ------------------------------------------ */

/* What a program does without vmalloc: an anonymous mmap per area with a
 * PROT_NONE guard page after it (mprotect), munmap to free; an alignment
 * above a page maps size + align more and unmaps the excess on both sides;
 * kmm_vmap's peer maps caller pages of a memfd at a new address (a PROT_NONE
 * reservation, one MAP_FIXED mmap of the file per run of adjacent pages);
 * kmm_realloc's peer is mremap (MREMAP_MAYMOVE) with the guard page moved.
 * Each workload runs the same sizes (the same random numbers, from the same
 * seed, drawn in the same order), touches the same bytes (the first byte of
 * each area, as WL_TOUCH does) and counts its operations the same way as its
 * kmm run in vm_workloads.c; only the timed loop is timed. */

static size_t pg_round(size_t size) { return (size + PAGE - 1) & ~(PAGE - 1); }

/* An area of size bytes at a multiple of align (a power of two), its guard
 * page after it; NULL when the address space has no such range. */
static char *peer_map(size_t size, size_t align)
{
    size_t len = pg_round(size);
    if (align <= PAGE) {
        char *p = mmap(NULL, len + GUARD, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return NULL;
        if (mprotect(p + len, GUARD, PROT_NONE) != 0)
            die_errno("peer: mprotect");
        return p;
    }
    size_t total;
    if (__builtin_add_overflow(len + GUARD, align, &total))
        return NULL;
    char *p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    char *a = (char *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
    if (a > p)
        munmap(p, (size_t)(a - p));
    if (a + len + GUARD < p + total)
        munmap(a + len + GUARD, (size_t)(p + total - (a + len + GUARD)));
    if (mprotect(a + len, GUARD, PROT_NONE) != 0)
        die_errno("peer: mprotect");
    return a;
}
static void peer_unmap(char *p, size_t size)
{
    if (munmap(p, pg_round(size) + GUARD) != 0)
        die_errno("peer: munmap");
}
static char *peer_area(struct wl *w, size_t size, size_t align)
{
    char *p = peer_map(size, align);
    WL_CHECK(w, p != NULL);
    *(volatile char *)p = 1;
    return p;
}

static long peer_fixed_size(struct wl *w, long n)
{
    w->ns = wl_now();
    for (long i = 0; i < n; i++)
        peer_unmap(peer_area(w, PAGE, 0), PAGE);
    w->ns = wl_now() - w->ns;
    return n;
}

static long peer_full_fit(struct wl *w, long n)
{
    size_t k = WL_FIT_JUNK;
    if (w->scale < 1)
        k = (size_t)((double)k * w->scale) + 16;
    char **keep = calloc(k, sizeof *keep), **junk = calloc(k, sizeof *junk);
    WL_CHECK(w, keep && junk);
    for (size_t i = 0; i < k; i++) {
        keep[i] = peer_area(w, PAGE, 0);
        junk[i] = peer_area(w, PAGE, 0);
    }
    for (size_t i = 0; i < k; i++)
        peer_unmap(junk[i], PAGE);
    w->ns = wl_now();
    for (long i = 0; i < n; i++)
        peer_unmap(peer_area(w, PAGE, 0), PAGE);
    w->ns = wl_now() - w->ns;
    for (size_t i = 0; i < k; i++)
        peer_unmap(keep[i], PAGE);
    free(keep);
    free(junk);
    return n;
}

static long peer_long_busy_list(struct wl *w, long n)
{
    size_t len = WL_BUSY_LIST;
    if (w->scale < 1)
        len = (size_t)((double)len * w->scale) + 50;
    char **live = calloc(len, sizeof *live);
    WL_CHECK(w, live != NULL);
    for (size_t i = 0; i < len; i++)
        live[i] = peer_area(w, PAGE, 0);
    w->ns = wl_now();
    for (long i = 0; i < n; i++) {
        char *big = peer_area(w, 100 * PAGE, 0);
        char *small = peer_area(w, PAGE, 0);
        peer_unmap(big, 100 * PAGE);
        peer_unmap(small, PAGE);
    }
    w->ns = wl_now() - w->ns;
    for (size_t i = 0; i < len; i++)
        peer_unmap(live[i], PAGE);
    free(live);
    return 2 * n;
}

static long peer_random_size(struct wl *w, long n)
{
    size_t ps = PAGE;
    w->ns = wl_now();
    for (long i = 0; i < n; i++) {
        size_t size = wl_range(w, 1, 100) * ps;
        if (wl_rand(w) & 1)
            size -= wl_range(w, 0, ps - 8);
        peer_unmap(peer_area(w, size, 0), size);
    }
    w->ns = wl_now() - w->ns;
    return n;
}

static long peer_fix_align(struct wl *w, long n)
{
    size_t ps = PAGE;
    w->ns = wl_now();
    for (long i = 0; i < n; i++) {
        size_t align = i & 1 ? (size_t)2 << 20 : (size_t)64 << 10;
        size_t size = wl_range(w, 1, 5) * ps;
        peer_unmap(peer_area(w, size, align), size);
    }
    w->ns = wl_now() - w->ns;
    return n;
}

static long peer_random_size_align(struct wl *w, long n)
{
    size_t ps = PAGE;
    unsigned page_shift = (unsigned)__builtin_ctzll(ps);
    w->ns = wl_now();
    for (long i = 0; i < n; i++) {
        size_t align = (size_t)1 << wl_range(w, 4, page_shift + 10);
        size_t size = wl_range(w, 8, 16 * ps);
        peer_unmap(peer_area(w, size, align), size);
    }
    w->ns = wl_now() - w->ns;
    return n;
}

static long peer_align_shift(struct wl *w, long n)
{
    (void)n;
    w->ns = wl_now();
    for (unsigned shift = 0; shift < 64; shift++) {
        char *p = peer_map(PAGE, (size_t)1 << shift);
        if (p) {
            *(volatile char *)p = (char)shift;
            peer_unmap(p, PAGE);
        }
    }
    w->ns = wl_now() - w->ns;
    return 64;
}

/* kmm_vmap's peer: the 16 pages are pages of a memfd (a block of 8 and 8
 * single pages, every other one of 16, the singles shuffled as the kmm run
 * shuffles them), mapped by run into a PROT_NONE reservation of 17 pages. */
static long peer_vm_map_ram(struct wl *w, long n)
{
    size_t ps = PAGE;
    enum { BLOCK = 8, SINGLES = WL_MAP_PAGES - BLOCK };
    int fd = memfd_create("bench-vmap-peer", 0);
    if (fd < 0 || ftruncate(fd, (off_t)((BLOCK + 2 * SINGLES) * ps)) != 0)
        die_errno("peer: memfd");
    off_t page[WL_MAP_PAGES];
    for (int i = 0; i < BLOCK; i++)
        page[i] = (off_t)(i * ps);
    for (int i = 0; i < SINGLES; i++)
        page[BLOCK + i] = (off_t)((BLOCK + 2 * i) * ps);
    for (int i = WL_MAP_PAGES - 1; i > 0; i--) {
        if (i < BLOCK)
            break;
        int j = BLOCK + (int)wl_range(w, 0, (size_t)(i - BLOCK));
        off_t t = page[i];
        page[i] = page[j];
        page[j] = t;
    }
    char *direct = mmap(NULL, (BLOCK + 2 * SINGLES) * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (direct == MAP_FAILED)
        die_errno("peer: mmap memfd");
    memset(direct, 7, (BLOCK + 2 * SINGLES) * ps);
    w->ns = wl_now();
    for (long it = 0; it < n; it++) {
        bool ro = (it & 3) == 3;
        int prot = ro ? PROT_READ : PROT_READ | PROT_WRITE;
        char *v = mmap(NULL, (WL_MAP_PAGES + 1) * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (v == MAP_FAILED)
            die_errno("peer: reserve");
        for (int i = 0; i < WL_MAP_PAGES;) {
            int j = i + 1;
            while (j < WL_MAP_PAGES && page[j] == page[j - 1] + (off_t)ps)
                j++;
            if (mmap(v + (size_t)i * ps, (size_t)(j - i) * ps, prot, MAP_SHARED | MAP_FIXED, fd, page[i]) == MAP_FAILED)
                die_errno("peer: mmap run");
            i = j;
        }
        WL_CHECK(w, *(volatile char *)v == direct[page[0]]);
        if (!ro)
            for (int i = 0; i < WL_MAP_PAGES; i++)
                *(volatile char *)(v + (size_t)i * ps) = (char)it;
        if (munmap(v, (WL_MAP_PAGES + 1) * ps) != 0)
            die_errno("peer: munmap");
    }
    w->ns = wl_now() - w->ns;
    munmap(direct, (BLOCK + 2 * SINGLES) * ps);
    close(fd);
    return n;
}

/* kmm_realloc's peer: the guard page unmapped, the area mremapped (in place
 * when the range after it is free, else moved), a guard page made again. */
static char *peer_remap(char *p, size_t old, size_t to)
{
    size_t ol = pg_round(old), nl = pg_round(to);
    if (ol == nl)
        return p;
    if (munmap(p + ol, GUARD) != 0)
        die_errno("peer: munmap guard");
    char *q = mremap(p, ol, nl + GUARD, MREMAP_MAYMOVE);
    if (q == MAP_FAILED)
        die_errno("peer: mremap");
    if (mprotect(q + nl, GUARD, PROT_NONE) != 0)
        die_errno("peer: mprotect");
    return q;
}

static long peer_realloc(struct wl *w, long n)
{
    size_t ps = PAGE;
    long ops = 0;
    double ns = 0;
    for (long cycle = 0; ops < n; cycle++) {
        size_t size = wl_range(w, 1, 3) * ps - wl_range(w, 0, ps / 2);
        char *p = peer_area(w, size, 0);
        char *blocker = NULL;
        if (cycle % 3 == 2) {
            peer_unmap(p, size);
            p = peer_area(w, size, 0);
            /* right after p's guard page, as kmm's run places it: growing must move */
            blocker = mmap(p + pg_round(size) + GUARD, ps + GUARD, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
            if (blocker == MAP_FAILED)
                blocker = peer_area(w, ps, 0);
            else if (mprotect(blocker + ps, GUARD, PROT_NONE) != 0)
                die_errno("peer: mprotect");
        }
        double t0 = wl_now();
        for (int step = 0; step < 16; step++) {
            bool grow = step < 8;
            size_t to = grow ? size + wl_range(w, 1, 5) * ps - wl_range(w, 0, ps - 1)
                             : (step == 15 ? wl_range(w, 8, ps) : size / 2 + wl_range(w, 0, size / 4));
            bool zero = grow && (step & 3) == 1;
            char *q = peer_remap(p, size, to);
            if (zero && to > size) {   /* the old last page's tail; new pages are zero */
                size_t end = pg_round(size) < to ? pg_round(size) : to;
                memset(q + size, 0, end - size);
            }
            ops++;
            p = q;
            size = to;
            *(volatile char *)p = (char)step;
        }
        ns += wl_now() - t0;
        peer_unmap(p, size);
        if (blocker)
            peer_unmap(blocker, ps);
    }
    w->ns = ns;
    return ops;
}

/* The peer of each workload, in the order of the table. */
static long (*const peer_fns[])(struct wl *, long) = {
    peer_fixed_size, peer_full_fit,          peer_long_busy_list, peer_random_size, peer_fix_align,
    peer_random_size_align, peer_align_shift, peer_vm_map_ram,    peer_realloc,
};
_Static_assert(sizeof peer_fns / sizeof peer_fns[0] == WL_COUNT, "a peer for every workload");

/* Workload i's peer, with the random numbers of wl_run_one(i, ..., seed). */
static struct wl_result peer_run_one(int i, double scale, uint64_t seed)
{
    struct wl w = { .ps = PAGE, .rng = seed ^ ((uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull), .use = WL_TOUCH,
                    .scale = scale, .name = workloads[i].name };
    if (!w.rng)
        w.rng = 1;
    struct wl_result r = { 0 };
    r.ops = peer_fns[i](&w, wl_iters(&w, workloads[i].n));
    r.ns = w.ns;
    return r;
}

/* ---- test 3: the test_vmalloc workloads ------------------------------------------------ */

struct wl_fig {
    struct fig us;             /* per operation */
    struct fig calls;          /* map + unmap calls per operation (one thread only) */
    struct fig peer_us;        /* the hand-made peer, per operation (one thread only) */
    struct fig ratio;          /* peer time over kmm time, per repetition (one thread only) */
};
static struct wl_fig wl_one[WL_COUNT], wl_mt[WL_COUNT];
static struct fig wl_mt_wall_us;   /* wall time of the threaded run over all its operations */
static long wl_one_ops[WL_COUNT], wl_mt_ops[WL_COUNT];
static const uint64_t wl_seed = 0x766d616c6c6f63ull;   /* "vmalloc": the same runs every time */

static void measure_workloads(void)
{
    static double us1[WL_COUNT][64], calls1[WL_COUNT][64], usm[WL_COUNT][64], wall[64];
    static double peer1[WL_COUNT][64], ratio1[WL_COUNT][64];
    for (int rep = 0; rep < opt.reps; rep++) {
        for (int i = 0; i < WL_COUNT; i++) {
            /* kmm and its peer back to back, in alternating order */
            struct wl_result r, q;
            if (rep & 1) {
                q = peer_run_one(i, opt.wl_scale, wl_seed);
                r = wl_run_one(i, PAGE, WL_TOUCH, opt.wl_scale, wl_seed);
            } else {
                r = wl_run_one(i, PAGE, WL_TOUCH, opt.wl_scale, wl_seed);
                q = peer_run_one(i, opt.wl_scale, wl_seed);
            }
            if (q.ops != r.ops) {
                char why[160];
                snprintf(why, sizeof why, "workload %s: %ld operations by kmm, %ld by the peer", workloads[i].name,
                         r.ops, q.ops);
                die(why);
            }
            us1[i][rep] = r.ns / 1e3 / (double)r.ops;
            calls1[i][rep] = (double)r.calls / (double)r.ops;
            peer1[i][rep] = q.ns / 1e3 / (double)q.ops;
            ratio1[i][rep] = peer1[i][rep] / us1[i][rep];
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
        wl_one[i].peer_us = summarize(peer1[i], opt.reps);
        wl_one[i].ratio = summarize(ratio1[i], opt.reps);
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
           "   written; each single-thread run on a fresh memory system (1 GiB, 4 KiB pages), then its\n"
           "   hand-made peer (mmap + PROT_NONE guard + munmap per area; see bench/README.md) right after\n"
           "   or before it (alternating), the same sizes from the same random numbers\n");
    printf("   %-24s %6s %8s %-16s %6s %8s %-16s %s\n", "", "ops", "kmm us", "[min..max]", "calls", "peer us",
           "[min..max]", "peer/kmm [min..max]");
    bool all_met = true;
    for (int i = 0; i < WL_COUNT; i++) {
        char r1[40], r2[40];
        snprintf(r1, sizeof r1, "[%.2f..%.2f]", wl_one[i].us.min, wl_one[i].us.max);
        snprintf(r2, sizeof r2, "[%.2f..%.2f]", wl_one[i].peer_us.min, wl_one[i].peer_us.max);
        printf("   %-24s %6ld %8.2f %-16s %6.3f %8.2f %-16s %6.2fx [%.2f..%.2f]\n", workloads[i].name, wl_one_ops[i],
               wl_one[i].us.med, r1, wl_one[i].calls.med, wl_one[i].peer_us.med, r2, wl_one[i].ratio.med,
               wl_one[i].ratio.min, wl_one[i].ratio.max);
        all_met &= wl_one[i].ratio.med >= 1;
    }
    printf("   (us: per operation; peer/kmm: the peer's time over kmm's in the same repetition, median;\n"
           "    above 1 = kmm faster)\n"
           "   target: every workload at least as fast as the peer: %s\n", met(all_met));
    printf("   %d threads at once on one memory system (kmm only):\n", MT_THREADS);
    for (int i = 0; i < WL_COUNT; i++) {
        char r2[40];
        snprintf(r2, sizeof r2, "[%.2f..%.2f]", wl_mt[i].us.min, wl_mt[i].us.max);
        printf("   %-24s %6ld ops %8.2f us/op %s\n", workloads[i].name, wl_mt_ops[i], wl_mt[i].us.med, r2);
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
        json_fig("peer_us_per_op", wl_one[i].peer_us, ", ");
        json_fig("peer_over_kmm", wl_one[i].ratio, ", ");
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
