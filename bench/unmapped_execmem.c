/* unmapped_execmem.c - the execmem section of bench/unmapped: 10,000 pieces
 * of 64..512 bytes of code (random sizes, fixed seed), each allocated,
 * written and freed at the end, four ways:
 *  - kmm single: kmm_execmem_alloc + kmm_execmem_write per piece,
 *    kmm_execmem_free per piece;
 *  - kmm batch: kmm_execmem_alloc per piece, one kmm_execmem_write_batch,
 *    one kmm_execmem_free_batch; each piece's code as is (its last
 *    granule's padding is not written, so pieces are not adjacent: the
 *    hosted platform makes a pwritev per piece);
 *  - kmm batch, padded: the same with each piece padded with int3 to its
 *    usable size (what JITs do to align functions): adjacent pieces, one
 *    pwritev per 64 of them;
 *  - peer: mmap(RW) + memcpy + mprotect(RX) per piece, munmap at free.
 * One memory system per kmm variant, warmed up by an untimed round (a JIT
 * is a long-lived process). Time per piece (alloc + write + free; median
 * of reps), the peer/kmm
 * ratio, and memory held per byte of code: peer pages mapped, kmm's
 * execmem pages, and every page the unmapped cache holds (kmm_unmapped_
 * stats' cached minus released, all orders: execmem's pages included, and
 * the free rest of its 2 MiB blocks), measured with all pieces live.
 */
#include "harness.h"
#include "unmapped.h"

#include <kmm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PIECES 10000

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct run {
    double ns_per_piece, held_per_byte, cache_per_byte;
};

static void run_kmm(struct kmm *mm, size_t n, const size_t *sizes, const unsigned char *code, int batch, struct run *r)
{
    static void *p[PIECES];
    static struct kmm_execmem_piece pc[PIECES];
    size_t bytes = 0;
    double t0 = now();
    for (size_t i = 0; i < n; i++) {
        p[i] = kmm_execmem_alloc(mm, sizes[i]);
        bytes += sizes[i];
        if (batch)
            pc[i] = (struct kmm_execmem_piece){ p[i], code, batch == 2 ? (sizes[i] + 15) & ~(size_t)15 : sizes[i] };
        else
            kmm_execmem_write(mm, p[i], code, sizes[i]);
    }
    if (batch)
        kmm_execmem_write_batch(mm, pc, n);
    double t1 = now();
    struct kmm_execmem_stats st;
    kmm_execmem_stats(mm, &st);
    struct kmm_unmapped_stats us;
    kmm_unmapped_stats(mm, &us);
    size_t cache_pages = 0;
    for (unsigned o = 0; o <= KMM_MAX_ORDER; o++)
        cache_pages += (us.cached[o] - us.released[o]) << o;
    double t2 = now();
    if (batch)
        kmm_execmem_free_batch(mm, p, n);
    else
        for (size_t i = 0; i < n; i++)
            kmm_execmem_free(mm, p[i]);
    double t3 = now();
    r->ns_per_piece = ((t1 - t0) + (t3 - t2)) * 1e9 / (double)n;
    r->held_per_byte = (double)st.pages * 4096.0 / (double)bytes;
    r->cache_per_byte = (double)cache_pages * 4096.0 / (double)bytes;
}

static void run_peer(size_t n, const size_t *sizes, const unsigned char *code, struct run *r)
{
    static void *p[PIECES];
    size_t ps = (size_t)sysconf(_SC_PAGESIZE), bytes = 0, pages = 0;
    double t0 = now();
    for (size_t i = 0; i < n; i++) {
        size_t len = (sizes[i] + ps - 1) & ~(ps - 1);
        p[i] = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        memcpy(p[i], code, sizes[i]);
        mprotect(p[i], len, PROT_READ | PROT_EXEC);
        bytes += sizes[i], pages += len / ps;
    }
    for (size_t i = 0; i < n; i++)
        munmap(p[i], (sizes[i] + ps - 1) & ~(ps - 1));
    double t2 = now();
    r->ns_per_piece = (t2 - t0) * 1e9 / (double)n;
    r->held_per_byte = (double)pages * (double)ps / (double)bytes;
    r->cache_per_byte = 0;
}

void bench_unmapped_execmem(const struct unmapped_opts *o)
{
    size_t n = o->quick ? 1000 : PIECES;
    static size_t sizes[PIECES];
    static unsigned char code[512];
    uint64_t rng = 0x5eed;
    for (size_t i = 0; i < n; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        sizes[i] = 64 + rng % 449;
    }
    memset(code, 0xc3, sizeof code);
    int reps = o->reps > 0 ? o->reps : 1;
    if (reps > 64)
        reps = 64;
    double t[4][64];
    struct run last[4];
    /* one memory system per variant, as a JIT process has, warmed up by
     * one untimed round (its metadata and the unmapped cache's blocks
     * touched already); the peer gets its warm-up round too */
    struct kmm *mm[3];
    for (int v = 0; v < 3; v++) {
        mm[v] = kmm_create(&(struct kmm_config){ .page_size = 4096, .mem_size = 1ull << 30 });
        run_kmm(mm[v], n, sizes, code, v, &last[v]);
    }
    run_peer(n, sizes, code, &last[3]);
    for (int k = 0; k < reps; k++) {
        for (int v = 0; v < 3; v++) {
            run_kmm(mm[v], n, sizes, code, v, &last[v]);
            t[v][k] = last[v].ns_per_piece;
        }
        run_peer(n, sizes, code, &last[3]);
        t[3][k] = last[3].ns_per_piece;
    }
    for (int v = 0; v < 3; v++)
        kmm_destroy(mm[v]);
    double med[4];
    for (int v = 0; v < 4; v++) {
        qsort(t[v], (size_t)reps, sizeof(double), cmp_double);
        med[v] = t[v][reps / 2];
    }
    if (o->json) {
        printf("\"execmem\": {\"pieces\": %zu, \"kmm_single_ns\": %.1f, \"kmm_batch_ns\": %.1f, "
               "\"kmm_batch_padded_ns\": %.1f, \"peer_ns\": %.1f, \"ratio_single\": %.2f, \"ratio_batch\": %.2f, "
               "\"ratio_batch_padded\": %.2f, \"kmm_held_per_byte\": %.3f, \"kmm_cache_per_byte\": %.3f, "
               "\"peer_held_per_byte\": %.3f}",
               n, med[0], med[1], med[2], med[3], med[3] / med[0], med[3] / med[1], med[3] / med[2],
               last[0].held_per_byte, last[0].cache_per_byte, last[3].held_per_byte);
        return;
    }
    static const char *const names[4] = { "kmm single write + free", "kmm batch write + free", "kmm batch, padded to 16",
                                          "mmap+mprotect per piece" };
    printf("execmem: %zu pieces of 64..512 bytes (alloc + write + free per piece; median of %d)\n", n, reps);
    printf("  %-26s %10s %9s %10s %16s\n", "", "ns/piece", "peer/kmm", "held/byte", "cache held/byte");
    for (int v = 0; v < 4; v++)
        printf("  %-26s %10.1f %9.2f %10.3f %16.3f\n", names[v], med[v], med[3] / med[v], last[v].held_per_byte,
               last[v].cache_per_byte);
}
