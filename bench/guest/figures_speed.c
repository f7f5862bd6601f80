/* figures_speed.c - cycles per allocation and free, inside the guest.
 *
 * Pairs of allocation and free, in loops: the pairs a kernel makes most
 * (order-0 pages, small objects) stay in per-CPU caches and never reach a
 * lock or a page table. vmalloc is shown three ways, because which one a
 * caller pays depends on what was freed before: a freed area of the same
 * size is taken back still mapped (kmm's lazy free), a fresh area costs page
 * allocations and page-table writes (no TLB flush: x86 caches no entry that
 * was not present), and the purge of freed areas costs the unmap and its
 * flush. */
#include "figures.h"

#define PAIRS_SMALL 10000   /* per repetition; all of this block takes well under a second of TCG */
#define PAIRS_VMALLOC 2000
#define FRESH_AREAS 32      /* areas allocated, then freed and purged, per repetition */

struct speed {
    struct kmm *mm;
    size_t size;
    void *areas[FRESH_AREAS];
    unsigned rep;
    uint64_t map_cycles[FIG_REPS], unmap_cycles[FIG_REPS];   /* fresh vmalloc: the two halves, per repetition */
    uint64_t flushes_vfree;                                  /* TLB flushes (invlpg or full) in kmm_vfree */
};

static void loop_pages(void *arg, unsigned n)
{
    struct speed *s = arg;
    for (unsigned i = 0; i < n; i++) {
        void *p = kmm_alloc_pages(s->mm, 0, 0);
        if (!p)
            guest_panic("figures: kmm_alloc_pages(order 0) failed");
        kmm_free_pages(s->mm, p);
    }
}

static void loop_malloc(void *arg, unsigned n)
{
    struct speed *s = arg;
    for (unsigned i = 0; i < n; i++) {
        void *p = kmm_malloc(s->mm, s->size, 0);
        if (!p)
            guest_panic("figures: kmm_malloc(%zu) failed", s->size);
        kmm_free(s->mm, p);
    }
}

static void loop_vmalloc(void *arg, unsigned n)
{
    struct speed *s = arg;
    for (unsigned i = 0; i < n; i++) {
        void *p = kmm_vmalloc(s->mm, s->size, 0);
        if (!p)
            guest_panic("figures: kmm_vmalloc(%zu) failed", s->size);
        kmm_vfree(s->mm, p);
    }
}

/* n is FRESH_AREAS: the areas are all live at once, so none can reuse
 * another's mapping; the purge then unmaps them (adjacent areas in one call). */
static void loop_vmalloc_fresh(void *arg, unsigned n)
{
    struct speed *s = arg;
    uint64_t t0 = guest_rdtsc();
    for (unsigned i = 0; i < n; i++)
        if (!(s->areas[i] = kmm_vmalloc(s->mm, s->size, 0)))
            guest_panic("figures: kmm_vmalloc(%zu) failed", s->size);
    uint64_t t1 = guest_rdtsc();
    struct guest_paging_stats p0, p1;
    guest_paging_stats(&p0);
    for (unsigned i = 0; i < n; i++)
        kmm_vfree(s->mm, s->areas[i]);
    guest_paging_stats(&p1);
    kmm_vmalloc_purge(s->mm);
    s->map_cycles[s->rep] = t1 - t0;
    s->unmap_cycles[s->rep++] = guest_rdtsc() - t1;
    s->flushes_vfree += p1.invlpg - p0.invlpg + p1.full_flushes - p0.full_flushes;
}

static void row(const char *what, unsigned ops, uint64_t cycles)
{
    guest_printf("  %-48s %7u %10lu\n", what, ops, (unsigned long)cycles);
}

void fig_speed(struct kmm *mm, const char *accel)
{
    struct speed s = { .mm = mm };
    guest_printf("\nfigures [%s]: rdtsc cycles per allocation+free pair, median of %u repetitions%s\n", accel,
                 FIG_REPS, fig_is_tcg(accel)
                               ? " (TCG: emulated time, compare within this run)" : "");
    guest_printf("  %-48s %7s %10s\n", "operation", "ops/rep", "cycles/op");
    row("kmm_alloc_pages(order 0) + kmm_free_pages", PAIRS_SMALL, fig_median_per_op(loop_pages, &s, PAIRS_SMALL));
    static const size_t sizes[] = { 16, 64, 1024 };
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char what[64];
        s.size = sizes[i];
        guest_snprintf(what, sizeof what, "kmm_malloc(%zu) + kmm_free", sizes[i]);
        row(what, PAIRS_SMALL, fig_median_per_op(loop_malloc, &s, PAIRS_SMALL));
    }

    s.size = 64 << 10;
    struct guest_paging_stats p0, p1;
    guest_paging_stats(&p0);
    uint64_t reused = fig_median_per_op(loop_vmalloc, &s, PAIRS_VMALLOC);
    guest_paging_stats(&p1);
    row("kmm_vmalloc(64 KiB) + kmm_vfree, area reused", PAIRS_VMALLOC, reused);
    guest_printf("    (%lu invlpg, %lu full flushes in %u pairs: the freed area is taken back mapped)\n",
                 (unsigned long)(p1.invlpg - p0.invlpg), (unsigned long)(p1.full_flushes - p0.full_flushes),
                 FIG_REPS * PAIRS_VMALLOC);
    kmm_vmalloc_purge(mm);

    guest_paging_stats(&p0);
    for (unsigned r = 0; r < FIG_REPS; r++)
        loop_vmalloc_fresh(&s, FRESH_AREAS);
    guest_paging_stats(&p1);
    row("kmm_vmalloc(64 KiB), fresh: 16 pages + 16 PTEs", FRESH_AREAS, fig_median(s.map_cycles, FIG_REPS) / FRESH_AREAS);
    row("kmm_vfree(64 KiB) + its share of the purge", FRESH_AREAS, fig_median(s.unmap_cycles, FIG_REPS) / FRESH_AREAS);
    guest_printf("    (%lu invlpg, %lu full flushes for %u areas, %lu of them in kmm_vfree: a freed area stays mapped"
                 " until %u pages of them gather or kmm_vmalloc_purge, which unmaps adjacent areas in one call)\n",
                 (unsigned long)(p1.invlpg - p0.invlpg), (unsigned long)(p1.full_flushes - p0.full_flushes),
                 FIG_REPS * FRESH_AREAS, (unsigned long)s.flushes_vfree, KMM_VMALLOC_LAZY_PAGES);
    kmm_drain(mm);
}
