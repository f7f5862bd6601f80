/* um_model - the unmapped cache against a model: seeded random
 * allocations (orders 0..10, KMM_NOZERO, KMM_UNMAPPED_NOCACHE), frees and
 * shrinks, with the model a list of live ranges. Each allocation must be
 * naturally aligned, overlap no live one, read as zeros unless NOZERO
 * (through kmm_vmap: its direct-map alias faults), and keep the pattern
 * written into it until its free. The stats must agree with the model and
 * kmm_check pass, and the direct map's mapping count match
 * /proc/self/maps, every CHECK_EVERY steps; at the end every page is back in
 * the page allocator and the direct map is one mapping again.
 *
 *   test_unmapped_model [STEPS]     ($KMM_SEED repeats a run)
 */
#include "kmm_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_EVERY 64
#define MAX_LIVE 256

struct live {
    kmm_phys_t phys;
    unsigned order;
    bool nocache;
    uint64_t key;
};

static struct live live[MAX_LIVE];
static size_t nr_live;
static uint64_t seed, step;
static size_t page_size;

static void head(FILE *f)
{
    fprintf(f, "um_model: seed %llu, page size %zu, step %llu: ", (unsigned long long)seed, page_size,
            (unsigned long long)step);
}

/* Writes the pattern into the first and last page of a block, checks it,
 * or (expect_zero) checks they are zero. */
static void pages_io(struct kmm *mm, const struct live *l, bool write, bool expect_zero)
{
    size_t n = (size_t)1 << l->order;
    kmm_phys_t pages[2] = { l->phys, l->phys + (n - 1) * page_size };
    for (int i = 0; i < (n > 1 ? 2 : 1); i++) {
        unsigned char *p = kmm_vmap(mm, &pages[i], 1, KMM_PROT_READ | KMM_PROT_WRITE);
        if (!p)
            kmm_test_fail("kmm_vmap of a page of the cache failed");
        if (expect_zero) {
            for (size_t j = 0; j < page_size; j++)
                if (p[j])
                    kmm_test_fail("allocation of order %u at 0x%llx not zero at byte %zu of page %d", l->order,
                                  (unsigned long long)l->phys, j, i);
        }
        size_t bad = expect_zero ? SIZE_MAX : kmm_test_span_io(p, l->key + (uint64_t)i, 0, page_size, write);
        if (!write && bad != SIZE_MAX)
            kmm_test_fail("allocation of order %u at 0x%llx lost its pattern at byte %zu of page %d", l->order,
                          (unsigned long long)l->phys, bad, i);
        kmm_vunmap(mm, p);
    }
}


static void check_stats(struct kmm *mm)
{
    struct kmm_unmapped_stats st;
    kmm_unmapped_stats(mm, &st);
    size_t used = 0, nocache = 0;
    for (size_t i = 0; i < nr_live; i++)
        *(live[i].nocache ? &nocache : &used) += (size_t)1 << live[i].order;
    if (st.pages_used != used || st.pages_nocache != nocache || st.pages_held != st.pages_free + used)
        kmm_test_fail("stats: used %zu (model %zu), nocache %zu (model %zu), held %zu, free %zu", st.pages_used, used,
                      st.pages_nocache, nocache, st.pages_held, st.pages_free);
    size_t seen = kmm_test_direct_map_vmas(mm);
    if (seen != st.direct_map_mappings)
        kmm_test_fail("direct map: stats say %zu mappings, /proc/self/maps %zu", st.direct_map_mappings, seen);
    if (kmm_check(mm) != 0)
        kmm_test_fail("kmm_check failed");
}

static void run(size_t ps, unsigned long steps)
{
    page_size = ps;
    struct kmm *mm = kmm_test_create(ps, 256ull << 20);
    uint64_t rng = seed ^ ps;
    nr_live = 0;
    for (step = 0; step < steps; step++) {
        uint64_t r = kmm_test_below(&rng, 100);
        if (r < 50 && nr_live < MAX_LIVE) {
            unsigned order = kmm_test_below(&rng, 8) ? (unsigned)kmm_test_below(&rng, 4) : (unsigned)kmm_test_below(&rng, 11);
            unsigned flags = (kmm_test_below(&rng, 4) == 0 ? KMM_NOZERO : 0) |
                             (kmm_test_below(&rng, 10) == 0 ? KMM_UNMAPPED_NOCACHE : 0);
            kmm_phys_t p = kmm_unmapped_alloc(mm, order, flags);
            if (p == KMM_PHYS_NONE)
                continue;   /* memory may run out for large orders */
            uint64_t len = (uint64_t)ps << order;
            if (p % len)
                kmm_test_fail("allocation of order %u at 0x%llx not aligned", order, (unsigned long long)p);
            for (size_t i = 0; i < nr_live; i++) {
                uint64_t l = (uint64_t)ps << live[i].order;
                if (p < live[i].phys + l && live[i].phys < p + len)
                    kmm_test_fail("allocation 0x%llx order %u overlaps live 0x%llx order %u", (unsigned long long)p,
                                  order, (unsigned long long)live[i].phys, live[i].order);
            }
            struct live *l = &live[nr_live++];
            *l = (struct live){ p, order, (flags & KMM_UNMAPPED_NOCACHE) != 0, kmm_test_rand(&rng) };
            if (!(flags & KMM_NOZERO))
                pages_io(mm, l, false, true);
            pages_io(mm, l, true, false);
        } else if (r < 92 && nr_live) {
            size_t i = (size_t)kmm_test_below(&rng, nr_live);
            pages_io(mm, &live[i], false, false);
            kmm_unmapped_free(mm, live[i].phys);
            live[i] = live[--nr_live];
        } else {
            size_t nr = kmm_test_below(&rng, 3) ? (size_t)kmm_test_below(&rng, 600) : 0;
            struct kmm_unmapped_stats a, b;
            kmm_unmapped_stats(mm, &a);
            size_t given = kmm_unmapped_shrink(mm, nr);
            kmm_unmapped_stats(mm, &b);
            /* the free pages of its chunks, and the block held beside the last refill */
            if ((nr && given > nr) || a.pages_free - b.pages_free + a.pages_beside - b.pages_beside != given ||
                (!nr && (b.pages_free || b.pages_beside)))
                kmm_test_fail("shrink of %zu gave %zu; free pages %zu -> %zu", nr, given, a.pages_free, b.pages_free);
        }
        if (step % CHECK_EVERY == 0)
            check_stats(mm);
    }
    check_stats(mm);
    while (nr_live) {
        pages_io(mm, &live[nr_live - 1], false, false);
        kmm_unmapped_free(mm, live[--nr_live].phys);
    }
    kmm_unmapped_shrink(mm, 0);
    struct kmm_unmapped_stats st;
    kmm_unmapped_stats(mm, &st);
    if (st.pages_held || st.chunks || st.pages_nocache || st.direct_map_mappings != 1)
        kmm_test_fail("after freeing all and shrinking: held %zu, chunks %zu, nocache %zu, mappings %zu", st.pages_held,
                      st.chunks, st.pages_nocache, st.direct_map_mappings);
    kmm_drain(mm);
    struct kmm_page_stats pst;
    kmm_page_stats(mm, &pst);
    if (pst.allocated_pages)
        kmm_test_fail("%zu pages still allocated in the page allocator", pst.allocated_pages);
    if (kmm_check(mm) != 0)
        kmm_test_fail("kmm_check failed at the end");
    kmm_destroy(mm);
}

int main(int argc, char **argv)
{
    unsigned long steps = argc > 1 ? strtoul(argv[1], NULL, 0) : 3000;
    seed = kmm_test_seed("um_model");
    kmm_test_on_fail(head, NULL, false);
    run(4096, steps);
    run(16384, steps / 2);
    printf("um_model: %lu steps at 4 KiB pages, %lu at 16 KiB: ok\n", steps, steps / 2);
    return 0;
}
