/* um_fault.c - injected failures under the unmapped cache: its page
 * allocations (KMM_FAULT_PAGES), its metadata (KMM_FAULT_META: chunk
 * records, the sorted array) and the platform's direct_unmap,
 * direct_restore and frames_zero (KMM_FAULT_DIRECT).
 *
 * kmm_fault_inject(mm, sites, k, times) fails the k-th call at those sites
 * (times 1) or every one from the k-th on (times 0). For both modes k runs
 * over 1 .. 40, then grows by a quarter until a run injects nothing. Each
 * run is a fresh memory system (4 KiB pages, 256 MiB) running a fixed
 * script under injection: allocations of orders 0 .. 10 (some
 * KMM_UNMAPPED_NOCACHE, some KMM_NOZERO), frees of every third, partial
 * and full shrinks. Checked:
 *  - an allocation gives an aligned block overlapping no live one, or
 *    KMM_PHYS_NONE with errno ENOMEM, and then only when a failure was
 *    injected during that call; kmm_check passes after every failure;
 *  - a shrink that meets a failing restore gives back less, never frees
 *    what it could not map back (kmm_check passes);
 *  - at the end, injection off: after freeing everything and a full
 *    shrink the cache holds nothing, the direct map is one mapping again
 *    and the page allocator has every page back. */
#include "kmm_test.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#define PS  4096u
#define MEM (256ull << 20)
#define SITES (KMM_FAULT_PAGES | KMM_FAULT_META | KMM_FAULT_DIRECT)
#define MAX_LIVE 512

static unsigned long g_k, g_times;
static int g_step;

static void fail_head(FILE *f)
{
    fprintf(f, "um_fault FAILED (k = %lu, times %lu, step %d): ", g_k, g_times, g_step);
}

struct blk {
    kmm_phys_t phys;
    unsigned order;
};

static struct blk live[MAX_LIVE];
static size_t nr_live;

static void check(struct kmm *mm)
{
    if (kmm_check(mm) != 0)
        kmm_test_fail("kmm_check failed");
}

static void alloc_one(struct kmm *mm, unsigned order, unsigned flags)
{
    unsigned long before = kmm_fault_injected(mm);
    errno = 0;
    kmm_phys_t p = kmm_unmapped_alloc(mm, order, flags);
    if (p == KMM_PHYS_NONE) {
        if (errno != ENOMEM)
            kmm_test_fail("order %u failed with errno %d, not ENOMEM", order, errno);
        if (kmm_fault_injected(mm) == before)
            kmm_test_fail("order %u failed with no failure injected", order);
        check(mm);
        return;
    }
    uint64_t len = (uint64_t)PS << order;
    if (p % len)
        kmm_test_fail("order %u at 0x%llx misaligned", order, (unsigned long long)p);
    for (size_t i = 0; i < nr_live; i++) {
        uint64_t l = (uint64_t)PS << live[i].order;
        if (p < live[i].phys + l && live[i].phys < p + len)
            kmm_test_fail("0x%llx overlaps live 0x%llx", (unsigned long long)p, (unsigned long long)live[i].phys);
    }
    if (nr_live < MAX_LIVE)
        live[nr_live++] = (struct blk){ p, order };
    else
        kmm_unmapped_free(mm, p);
}

/* Returns how many failures were injected. */
static unsigned long run(unsigned long k, unsigned long times)
{
    g_k = k, g_times = times;
    struct kmm *mm = kmm_test_create(PS, MEM);
    struct kmm_page_stats before;
    kmm_page_stats(mm, &before);
    nr_live = 0;
    static const unsigned orders[] = { 0, 1, 0, 3, 0, 9, 2, 0, 10, 0, 4, 1, 0, 5, 0, 2 };
    kmm_fault_inject(mm, SITES, k, times);
    for (g_step = 0; g_step < 240; g_step++) {
        unsigned order = orders[g_step % 16];
        unsigned flags = (g_step % 7 == 3 ? KMM_UNMAPPED_NOCACHE : 0) | (g_step % 5 == 1 ? KMM_NOZERO : 0);
        alloc_one(mm, order, flags);
        if (g_step % 3 == 2 && nr_live) {
            size_t i = (size_t)(g_step * 7) % nr_live;
            kmm_unmapped_free(mm, live[i].phys);
            live[i] = live[--nr_live];
        }
        if (g_step % 40 == 39) {
            kmm_unmapped_shrink(mm, g_step % 80 == 79 ? 0 : 100);
            check(mm);
        }
    }
    unsigned long injected = kmm_fault_injected(mm);
    kmm_fault_inject(mm, 0, 0, 0);
    check(mm);
    while (nr_live)
        kmm_unmapped_free(mm, live[--nr_live].phys);
    kmm_unmapped_shrink(mm, 0);
    struct kmm_unmapped_stats st;
    kmm_unmapped_stats(mm, &st);
    if (st.pages_held || st.chunks || st.pages_nocache || st.direct_map_mappings != 1)
        kmm_test_fail("after freeing all and shrinking: held %zu, chunks %zu, nocache %zu, mappings %zu", st.pages_held,
                      st.chunks, st.pages_nocache, st.direct_map_mappings);
    kmm_drain(mm);
    struct kmm_page_stats after;
    kmm_page_stats(mm, &after);
    if (after.free_pages != before.free_pages)
        kmm_test_fail("page allocator: %zu free pages before, %zu after", before.free_pages, after.free_pages);
    check(mm);
    kmm_destroy(mm);
    return injected;
}

int main(void)
{
    kmm_test_on_fail(fail_head, NULL, false);
    unsigned long runs = 0, total = 0;
    for (unsigned long times = 1; times != ~0ul; times = times ? 0 : ~0ul) {
        for (unsigned long k = 1;; k = k < 40 ? k + 1 : k + k / 4) {
            unsigned long injected = run(k, times);
            runs++;
            total += injected;
            if (k <= 8 && !injected)
                kmm_test_fail("nothing injected at k = %lu", k);
            if (!injected)
                break;
        }
    }
    printf("um_fault: %lu runs, %lu failures injected: ok\n", runs, total);
    return 0;
}
