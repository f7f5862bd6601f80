/* figures_directmap.c - the direct map under 10,000 unmapped single pages
 * (the seed's __GFP_UNMAPPED figure, on the guest's real page tables).
 *
 * Taking one page out of a 2 MiB entry of the direct map splits the entry
 * into a table of 512 4 KiB entries (set_memory_np); nothing ever merges
 * them back, in Linux or in paging.c. Three ways are counted:
 *  - the cache: kmm_unmapped_alloc takes whole 2 MiB blocks out at once and
 *    hands out pages from them, so no entry is split;
 *  - naive, pages as a fresh page allocator gives them: kmm_alloc_pages of
 *    order 0, each made not-present alone (set_direct_map_invalid_noflush).
 *    They are mostly contiguous, so few entries split;
 *  - naive, pages spread as a long-running kernel's free pages are: every
 *    free page is taken (reserved) first, then single pages at a stride in
 *    256 2 MiB blocks spread over memory are made free again, and the same
 *    10,000 allocations land a few per block.
 * The naive ways run last: their splits stay in the machine's page tables.
 * 256 blocks, not every block of memory: the first touch of a 2 MiB block
 * of guest memory costs milliseconds of host time (QEMU backs it then),
 * and the free lists write into every block that holds a free page. */
#include "figures.h"

#define NPAGES 10000
#define PAGE 4096ull
#define BLOCK_PAGES 512u           /* pages in a 2 MiB block */
#define MAX_BLOCKS 8192u           /* 2 MiB blocks blocks_touched tells apart: 16 GiB */

static kmm_phys_t pages[NPAGES];
static uint64_t seen[MAX_BLOCKS / 64];   /* 2 MiB blocks the pages lie in */

struct counts {
    struct guest_direct_counts dm;
    size_t kmm_mappings;
};

static void count(struct kmm *mm, struct counts *c)
{
    guest_direct_counts(&c->dm);
    struct kmm_unmapped_stats st;
    kmm_unmapped_stats(mm, &st);
    c->kmm_mappings = st.direct_map_mappings;
}

static unsigned blocks_touched(void)
{
    __builtin_memset(seen, 0, sizeof seen);
    unsigned n = 0;
    for (unsigned i = 0; i < NPAGES; i++) {
        uint64_t b = pages[i] >> 21;
        if (b < MAX_BLOCKS && !(seen[b / 64] & (1ull << (b % 64))))
            seen[b / 64] |= 1ull << (b % 64), n++;
    }
    return n;
}

static void row(const char *step, const struct counts *c, uint64_t cycles, uint64_t n)
{
    guest_printf("  %-44s %8lu %6lu %7lu %6zu", step, (unsigned long)c->dm.pages_4k, (unsigned long)c->dm.pages_2m,
                 (unsigned long)c->dm.tables_4k, c->kmm_mappings);
    if (n)
        guest_printf(" %9lu\n", (unsigned long)(cycles / n));
    else
        guest_printf(" %9s\n", "");
}

/* Allocates, writes and frees the pages the next NPAGES order-0
 * allocations will take: QEMU backs guest memory on its first touch (some
 * milliseconds per 2 MiB under TCG here), a host cost, not the guest's. */
static void prefault(struct kmm *mm)
{
    for (unsigned i = 0; i < NPAGES; i++) {
        unsigned char *p = kmm_alloc_pages(mm, 0, 0);
        if (!p)
            guest_panic("figures: kmm_alloc_pages(order 0) failed at page %u", i);
        *(volatile unsigned char *)p = 0;
        pages[i] = kmm_virt_to_phys(mm, p);
    }
    for (unsigned i = NPAGES; i-- > 0;)
        kmm_free_pages(mm, kmm_phys_to_virt(mm, pages[i]));
}

/* ---- naive: one page at a time out of the direct map ---------------------------------------- */

static uint64_t naive_unmap(struct kmm *mm)
{
    uint64_t t0 = guest_rdtsc();
    for (unsigned i = 0; i < NPAGES; i++) {
        void *p = kmm_alloc_pages(mm, 0, 0);
        if (!p)
            guest_panic("figures: kmm_alloc_pages(order 0) failed at page %u", i);
        pages[i] = kmm_virt_to_phys(mm, p);
        int rc = guest_direct_set_present(pages[i], PAGE, false);
        if (rc != 0)
            guest_panic("figures: guest_direct_set_present failed (%d): out of page tables?", rc);
    }
    return guest_rdtsc() - t0;
}

static uint64_t naive_give_back(struct kmm *mm)
{
    uint64_t t0 = guest_rdtsc();
    for (unsigned i = 0; i < NPAGES; i++) {
        guest_direct_set_present(pages[i], PAGE, true);
        kmm_free_pages(mm, kmm_phys_to_virt(mm, pages[i]));
    }
    uint64_t t = guest_rdtsc() - t0;
    kmm_drain(mm);
    return t;
}

/* ---- the spread layout ------------------------------------------------------------------------ */

/* Every free page is reserved, then single pages at a stride through
 * SPREAD_BLOCKS 2 MiB blocks spread over all of memory are given back: the
 * page allocator then holds nothing else, as a long-running kernel's holds
 * scattered pages. Reservations write into no page, where taking memory
 * with allocations would split free blocks and write the free-list links
 * of their halves into every 2 MiB of it. */
#define SPREAD_BLOCKS 256u
#define PER_BLOCK ((NPAGES + SPREAD_BLOCKS - 1) / SPREAD_BLOCKS + 1)   /* one more: a page may be busy */
#define MAX_HELD 4096u

struct held { kmm_phys_t pa; size_t n; };
static struct held held[MAX_HELD];
static unsigned nr_held;
static kmm_phys_t spread[SPREAD_BLOCKS * PER_BLOCK];
static unsigned nr_spread;

/* Reserves what is free in [pa, pa + n pages), halving around busy pages. */
static void reserve_free(struct kmm *mm, kmm_phys_t pa, size_t n)
{
    if (nr_held == MAX_HELD)
        return;   /* seen in the free pages printed: the layout is then not pure */
    if (kmm_reserve_pages(mm, pa, n) == 0) {
        held[nr_held++] = (struct held){ pa, n };
        return;
    }
    if (n == 1)
        return;
    reserve_free(mm, pa, n / 2);
    reserve_free(mm, pa + n / 2 * PAGE, n - n / 2);
}

static bool is_held(kmm_phys_t pa)
{
    for (unsigned i = 0; i < nr_held; i++)
        if (pa >= held[i].pa && pa < held[i].pa + held[i].n * PAGE)
            return true;
    return false;
}

/* The 2 MiB blocks wholly inside usable memory: the i-th of them, or the
 * count (i = UINT64_MAX). */
static uint64_t usable_block(uint64_t i)
{
    uint64_t seen_blocks = 0;
    for (unsigned r = 0; r < guest_machine.nr_e820; r++) {
        const struct guest_e820 *e = &guest_machine.e820[r];
        if (e->type != 1)
            continue;
        uint64_t first = (e->start + (2 << 20) - 1) >> 21, last = e->end >> 21;
        if (last <= first)
            continue;
        if (i != UINT64_MAX && i < seen_blocks + (last - first))
            return (first + (i - seen_blocks)) << 21;
        seen_blocks += last - first;
    }
    return seen_blocks;
}

static void spread_layout(struct kmm *mm)
{
    kmm_drain(mm);
    nr_held = nr_spread = 0;
    for (unsigned r = 0; r < guest_machine.nr_e820; r++) {
        const struct guest_e820 *e = &guest_machine.e820[r];
        uint64_t start = (e->start + PAGE - 1) & ~(PAGE - 1), end = e->end & ~(PAGE - 1);
        if (e->type == 1 && end > start)
            reserve_free(mm, start, (end - start) / PAGE);
    }
    uint64_t total = usable_block(UINT64_MAX);
    for (unsigned b = 0; b < SPREAD_BLOCKS; b++) {
        kmm_phys_t base = usable_block(b * total / SPREAD_BLOCKS);
        for (unsigned j = 0; j < PER_BLOCK; j++) {
            kmm_phys_t pa = base + (uint64_t)j * BLOCK_PAGES / PER_BLOCK * PAGE;
            if (is_held(pa)) {
                kmm_unreserve_pages(mm, pa, 1);
                spread[nr_spread++] = pa;
            }
        }
    }
}

static void spread_undo(struct kmm *mm)
{
    kmm_drain(mm);
    for (unsigned i = 0; i < nr_spread; i++)
        if (kmm_reserve_pages(mm, spread[i], 1) != 0)
            guest_panic("figures: a spread page is not free at the end");
    for (unsigned i = 0; i < nr_held; i++)
        kmm_unreserve_pages(mm, held[i].pa, held[i].n);
    kmm_drain(mm);
}

/* ---- the block -------------------------------------------------------------------------------- */

void fig_directmap(struct kmm *mm, const char *accel)
{
    struct counts c;
    uint64_t t, pair_cache = 0, pair_naive, pair_spread;   /* cycles: unmap + give back, all pages */
    guest_printf("\nfigures [%s]: the direct map under %u unmapped single pages: present 4 KiB and 2 MiB entries,"
                 " 4 KiB page tables (split 2 MiB), kmm_unmapped_stats().direct_map_mappings, cycles per page\n",
                 accel, NPAGES);
    guest_printf("  %-44s %8s %6s %7s %6s %9s\n", "step", "4K", "2M", "tables", "kmm", "cycles/pg");
    count(mm, &c);
    row("start", &c, 0, 0);

    /* (b) through the cache; a first round unmeasured, so that the host's
     * first touch of the memory is not counted (prefault, above) */
    for (int round = 0; round < 2; round++) {
        uint64_t ta = guest_rdtsc();
        for (unsigned i = 0; i < NPAGES; i++)
            if ((pages[i] = kmm_unmapped_alloc(mm, 0, 0)) == KMM_PHYS_NONE)
                guest_panic("figures: kmm_unmapped_alloc failed at page %u", i);
        uint64_t tb = guest_rdtsc();
        if (round) {
            unsigned touched = blocks_touched();
            count(mm, &c);
            row("cache: kmm_unmapped_alloc(order 0) x 10000", &c, tb - ta, NPAGES);
            struct kmm_unmapped_stats st;
            kmm_unmapped_stats(mm, &st);
            guest_printf("    (pages in %u 2 MiB blocks; the cache holds %zu chunks, %zu pages, %zu of them in the"
                         " block beside; %zu direct_unmap calls so far)\n",
                         touched, st.chunks, st.pages_held, st.pages_beside, st.unmap_calls);
        }
        for (unsigned i = 0; i < NPAGES; i++)
            kmm_unmapped_free(mm, pages[i]);
        uint64_t tc = guest_rdtsc();
        if (round) {
            count(mm, &c);
            row("cache: kmm_unmapped_free x 10000", &c, tc - tb, NPAGES);
        }
        size_t back = kmm_unmapped_shrink(mm, 0);
        uint64_t td = guest_rdtsc();
        if (round) {
            count(mm, &c);
            row("cache: kmm_unmapped_shrink(all)", &c, td - tc, NPAGES);
            pair_cache = td - ta;
            struct kmm_unmapped_stats st;
            kmm_unmapped_stats(mm, &st);
            guest_printf("    (%zu pages given back, %zu held now, %zu direct_restore calls so far)\n", back,
                         st.pages_held, st.restore_calls);
        }
    }

    /* what of the cache's cost is zeroing (through the scratch window) */
    uint64_t ta = guest_rdtsc();
    for (unsigned i = 0; i < NPAGES; i++)
        if ((pages[i] = kmm_unmapped_alloc(mm, 0, KMM_NOZERO)) == KMM_PHYS_NONE)
            guest_panic("figures: kmm_unmapped_alloc failed at page %u", i);
    t = guest_rdtsc() - ta;
    count(mm, &c);
    row("cache: the same with KMM_NOZERO", &c, t, NPAGES);
    for (unsigned i = 0; i < NPAGES; i++)
        kmm_unmapped_free(mm, pages[i]);
    kmm_unmapped_shrink(mm, 0);
    uint64_t pair_nozero = guest_rdtsc() - ta;

    /* (a) naive, as the allocator gives the pages */
    prefault(mm);
    t = naive_unmap(mm);
    unsigned touched = blocks_touched();
    count(mm, &c);
    row("naive, as allocated: alloc + set not-present", &c, t, NPAGES);
    pair_naive = t;
    guest_printf("    (pages in %u 2 MiB blocks: mostly contiguous)\n", touched);
    t = naive_give_back(mm);
    count(mm, &c);
    row("naive, as allocated: set present + free", &c, t, NPAGES);
    pair_naive += t;

    /* (a) naive, spread */
    spread_layout(mm);
    struct kmm_page_stats pst;
    kmm_page_stats(mm, &pst);
    size_t free_before = pst.free_pages;
    t = naive_unmap(mm);
    touched = blocks_touched();
    count(mm, &c);
    row("naive, spread: alloc + set not-present", &c, t, NPAGES);
    pair_spread = t;
    guest_printf("    (pages in %u 2 MiB blocks: every free page reserved, then %u pages at a stride of %u KiB"
                 " given back in each of %u blocks spread over memory: %zu pages were free)\n",
                 touched, PER_BLOCK, BLOCK_PAGES / PER_BLOCK * 4, SPREAD_BLOCKS, free_before);
    t = naive_give_back(mm);
    count(mm, &c);
    row("naive, spread: set present + free", &c, t, NPAGES);
    pair_spread += t;
    spread_undo(mm);
    guest_printf("  cycles per unmapped page, taken and given back: cache %lu (%lu with KMM_NOZERO), naive as"
                 " allocated %lu, naive spread %lu\n",
                 (unsigned long)(pair_cache / NPAGES), (unsigned long)(pair_nozero / NPAGES),
                 (unsigned long)(pair_naive / NPAGES),
                 (unsigned long)(pair_spread / NPAGES));
    guest_printf("  the naive splits stay (nothing merges 4 KiB entries back); the cache's 2 MiB entries came back"
                 " whole. kmm: kmm's own count, which sees what kmm unmapped, not the naive calls that bypass it\n");
}
