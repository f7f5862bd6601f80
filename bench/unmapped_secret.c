/* bench/unmapped_secret.c - the section "secret" of bench/unmapped:
 * kmm_secret_alloc + kmm_secret_free, on both backings, against what a
 * libsodium user gets (sodium_malloc's guarded allocation, done by hand):
 *   mmap(size + 2 guard pages, PROT_NONE), mprotect(middle, RW), mlock,
 *   madvise(MADV_DONTDUMP); at free memset + munlock + munmap.
 * Sizes 1 page, 4 pages and 64 KiB (4 KiB pages). Figures:
 *  1. time per alloc+free pair (the first byte of every page written, as a
 *     user of the secret would), a batch of pairs per repetition, the median
 *     of the repetitions; the ratio kmm/hand taken within each repetition;
 *  2. with 32 secrets live: locked memory (VmLck) per secret, mappings
 *     (/proc/self/maps lines) per secret, and kmm's metadata per secret.
 * Locked memory stays under 3 MiB (RLIMIT_MEMLOCK is 8 MiB by default).
 * kmm's pair costs: a reservation, one vm_map per run of frames (mmap
 * MAP_POPULATE, mlock, two madvise), a wipe, a vm_unmap and an unreserve,
 * and the unmapped cache's allocation and free; memfd_secret adds a
 * memfd_secret + ftruncate + close per allocation.
 */
#include "harness.h"
#include "unmapped.h"

#include <kmm.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define HOST_PAGE ((size_t)4096)
#define LIVE      32

/* ---- the hand-made guarded allocation (sodium_malloc's recipe) ---- */

static void *hand_alloc(size_t size)
{
    size_t len = (size + HOST_PAGE - 1) / HOST_PAGE * HOST_PAGE;
    char *base = mmap(NULL, len + 2 * HOST_PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    char *p = base + HOST_PAGE;
    if (mprotect(p, len, PROT_READ | PROT_WRITE) != 0 || mlock(p, len) != 0 || madvise(p, len, MADV_DONTDUMP) != 0) {
        munmap(base, len + 2 * HOST_PAGE);
        return NULL;
    }
    return p;
}

static void hand_free(void *p, size_t size)
{
    size_t len = (size + HOST_PAGE - 1) / HOST_PAGE * HOST_PAGE;
    memset(p, 0, len);
    __asm__ __volatile__("" : : "r"(p) : "memory");
    munlock(p, len);
    munmap((char *)p - HOST_PAGE, len + 2 * HOST_PAGE);
}

/* ---- the sides ---- */

enum side { KMM_UNMAPPED, KMM_MEMFD, HAND, NR_SIDES };
static const char *const side_name[NR_SIDES] = { "kmm (unmapped cache)", "kmm (memfd_secret)", "by hand (sodium)" };
static const char *const side_key[NR_SIDES] = { "kmm_unmapped", "kmm_memfd", "hand" };

static struct kmm *g_mm;

static void *side_alloc(enum side s, size_t size)
{
    if (s == HAND)
        return hand_alloc(size);
    return kmm_secret_alloc(g_mm, size);
}

static void side_free(enum side s, void *p, size_t size)
{
    if (s == HAND)
        hand_free(p, size);
    else
        kmm_secret_free(g_mm, p);
}

static void side_select(enum side s)
{
    if (s != HAND && kmm_secret_set_backing(g_mm, s == KMM_MEMFD ? KMM_SECRET_MEMFD : KMM_SECRET_UNMAPPED) != 0)
        die("kmm_secret_set_backing failed");
}

static void touch(void *p, size_t size)
{
    for (size_t off = 0; off < size; off += HOST_PAGE)
        ((volatile char *)p)[off] = 1;
}

/* ns per alloc+free pair over a batch */
static double pairs_ns(enum side s, size_t size, int batch)
{
    side_select(s);
    double t0 = now_ns();
    for (int i = 0; i < batch; i++) {
        void *p = side_alloc(s, size);
        if (!p)
            die_errno(s == HAND ? "the hand-made guarded allocation failed" : "kmm_secret_alloc failed");
        touch(p, size);
        side_free(s, p, size);
    }
    return (now_ns() - t0) / batch;
}

static size_t vm_locked(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmLck: %zu kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb * 1024;
}

static size_t map_count(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    size_t n = 0;
    int c;
    while (f && (c = fgetc(f)) != EOF)
        n += c == '\n';
    if (f)
        fclose(f);
    return n;
}

struct live_cost {
    double locked, mappings, meta;   /* per secret */
};

static struct live_cost live_cost(enum side s, size_t size)
{
    side_select(s);
    void *p[LIVE];
    struct kmm_meta_stats m0, m1;
    kmm_meta_stats(g_mm, &m0);
    size_t l0 = vm_locked(), v0 = map_count();
    for (int i = 0; i < LIVE; i++)
        if (!(p[i] = side_alloc(s, size)))
            die_errno("an allocation for the live-memory figure failed");
    size_t l1 = vm_locked(), v1 = map_count();
    kmm_meta_stats(g_mm, &m1);
    for (int i = 0; i < LIVE; i++)
        side_free(s, p[i], size);
    double meta = (double)((m1.object_bytes + m1.large_held_bytes) - (m0.object_bytes + m0.large_held_bytes));
    return (struct live_cost){ (double)(l1 - l0) / LIVE, (double)(v1 - v0) / LIVE, s == HAND ? 0 : meta / LIVE };
}

void bench_unmapped_secret(const struct unmapped_opts *o)
{
    struct kmm_config cfg = { .page_size = HOST_PAGE, .mem_size = 256ull << 20 };
    g_mm = kmm_create(&cfg);
    if (!g_mm)
        die_errno("kmm_create failed");
    bool memfd = kmm_secret_backing_available(g_mm, KMM_SECRET_MEMFD);
    int reps = o->reps > 0 ? o->reps : 1;
    int batch = o->quick ? 50 : 400;
    static const size_t sizes[] = { HOST_PAGE, 4 * HOST_PAGE, 64 << 10 };
    enum { NS = sizeof sizes / sizeof sizes[0] };
    struct fig t[NS][NR_SIDES], ratio[NS][NR_SIDES];
    struct live_cost cost[NS][NR_SIDES];
    for (size_t z = 0; z < NS; z++) {
        double v[NR_SIDES][64], r[NR_SIDES][64];
        for (int s = 0; s < NR_SIDES; s++)   /* warm: the cache's first block, the page tables */
            if (s != KMM_MEMFD || memfd)
                pairs_ns(s, sizes[z], batch / 10 + 1);
        for (int k = 0; k < reps && k < 64; k++) {
            for (int s = 0; s < NR_SIDES; s++)
                v[s][k] = s == KMM_MEMFD && !memfd ? 0 : pairs_ns(s, sizes[z], batch);
            for (int s = 0; s < NR_SIDES; s++)
                r[s][k] = v[s][k] / v[HAND][k];
        }
        for (int s = 0; s < NR_SIDES; s++) {
            t[z][s] = summarize(v[s], reps < 64 ? reps : 64);
            ratio[z][s] = summarize(r[s], reps < 64 ? reps : 64);
            cost[z][s] = s == KMM_MEMFD && !memfd ? (struct live_cost){ 0 } : live_cost(s, sizes[z]);
        }
    }
    if (kmm_check(g_mm) != 0)
        die("kmm_check failed after the secret section");
    if (o->json) {
        printf("\"secret\": {\"memfd_secret\": %s, \"sizes\": [", memfd ? "true" : "false");
        for (size_t z = 0; z < NS; z++) {
            printf("{\"bytes\": %zu", sizes[z]);
            for (int s = 0; s < NR_SIDES; s++) {
                if (s == KMM_MEMFD && !memfd)
                    continue;
                printf(", \"%s\": {", side_key[s]);
                json_fig("pair_ns", t[z][s], ", ");
                json_fig("ratio_to_hand", ratio[z][s], ", ");
                printf("\"locked_bytes_per_secret\": %.0f, \"mappings_per_secret\": %.2f, "
                       "\"metadata_bytes_per_secret\": %.0f}",
                       cost[z][s].locked, cost[z][s].mappings, cost[z][s].meta);
            }
            printf("}%s", z + 1 < NS ? ", " : "");
        }
        printf("]},\n");
    } else {
        printf("== secret memory: alloc + free pairs, the first byte of each page written (%d reps x %d pairs, "
               "medians)\n", reps, batch);
        printf("%-10s %-22s %12s %10s %14s %12s %12s\n", "size", "side", "ns/pair", "x hand", "locked/secret",
               "maps/secret", "meta/secret");
        for (size_t z = 0; z < NS; z++)
            for (int s = 0; s < NR_SIDES; s++) {
                if (s == KMM_MEMFD && !memfd) {
                    printf("%-10zu %-22s %12s\n", sizes[z], side_name[s], "(memfd_secret unavailable)");
                    continue;
                }
                printf("%-10zu %-22s %12.0f %9.2fx %14.0f %12.2f %12.0f\n", sizes[z], side_name[s], t[z][s].med,
                       ratio[z][s].med, cost[z][s].locked, cost[z][s].mappings, cost[z][s].meta);
            }
    }
    kmm_destroy(g_mm);
}
