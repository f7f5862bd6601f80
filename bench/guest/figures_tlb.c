/* figures_tlb.c - TLB invalidation: one invlpg per page against a full flush.
 *
 * paging.c flushes a range with invlpg per page up to guest_flush_ceiling
 * pages and reloads CR3 above it (Linux: tlb_single_page_flush_ceiling).
 * The full flush is cheap to issue; its cost comes after, when every
 * translation in use must be walked again. So each measured operation is:
 * map a window with 4 KiB entries and touch its pages (they are then in
 * the TLB), unmap it (the flush), then touch a working set of 256 other
 * 4 KiB-mapped pages, as the code that runs next would. The window is
 * reserved from the vmalloc space directly (the platform's vm_reserve) so
 * that no lazy free or purge of kmm's decides when the flush happens. */
#include "figures.h"

#define WINDOW_BYTES (4ull << 20)
#define WORKING_SET 256       /* pages touched after each flush */
#define TLB_OPS 20            /* per repetition */

struct tlb {
    uint64_t window, frames;                 /* the window's VA; the physical pages mapped there */
    const volatile unsigned char *ws;        /* the working set (a kmm_vmalloc area: 4 KiB entries) */
    uint64_t len;
    uint64_t unmap, after;                   /* the last batch, per operation */
};

static unsigned touch(const volatile unsigned char *p, uint64_t pages)
{
    unsigned sum = 0;
    for (uint64_t i = 0; i < pages; i++)
        sum += p[i * 4096];
    return sum;
}

/* n operations; flush false: the same, but the working set is touched
 * before the window is unmapped (by invlpg), for what it costs warm. */
static void loop_flush(struct tlb *t, unsigned n, bool flush)
{
    uint64_t unmap = 0, after = 0;
    for (unsigned i = 0; i < n; i++) {
        if (guest_map(t->window, t->frames, t->len, KMM_PROT_READ | KMM_PROT_WRITE) != 0)
            guest_panic("figures: guest_map of the TLB window failed");
        touch((const volatile unsigned char *)(uintptr_t)t->window, t->len / 4096);
        uint64_t t0 = guest_rdtsc();
        if (flush)
            guest_unmap(t->window, t->len);
        uint64_t t1 = guest_rdtsc();
        touch(t->ws, WORKING_SET);
        uint64_t t2 = guest_rdtsc();
        if (!flush)
            guest_unmap(t->window, t->len);
        unmap += t1 - t0, after += t2 - t1;
    }
    t->unmap = unmap / n;
    t->after = after / n;
}

/* The medians of one size: unmap and working set after it with invlpg
 * (mode 0) and with a full flush (1); the working set with no flush (2).
 * The modes take turns, batch by batch, so that whatever state one leaves
 * the TLB in weighs on all alike. */
static void measure(struct tlb *t, uint64_t med[3][2])
{
    static const unsigned ceilings[3] = { ~0u, 0, ~0u };
    uint64_t v[3][2][FIG_REPS];
    for (unsigned r = 0; r < FIG_REPS; r++)
        for (unsigned m = 0; m < 3; m++) {
            guest_flush_ceiling = ceilings[m];
            loop_flush(t, TLB_OPS, m < 2);
            v[m][0][r] = t->unmap;
            v[m][1][r] = t->after;
        }
    for (unsigned m = 0; m < 3; m++)
        for (unsigned k = 0; k < 2; k++)
            med[m][k] = fig_median(v[m][k], FIG_REPS);
}

void fig_tlb(struct kmm *mm, const char *accel)
{
    static const uint64_t sizes[] = { 4 << 10, 64 << 10, 256 << 10, 1 << 20, 2 << 20 };
    enum { NSIZES = sizeof sizes / sizeof sizes[0] };
    struct tlb t = { 0 };
    void *ws = kmm_vmalloc(mm, WORKING_SET * 4096, 0);
    void *frames = kmm_alloc_pages(mm, 9, 0);
    void *ctx = &guest_machine;
    void *window = kmm_platform_guest.vm_reserve(ctx, WINDOW_BYTES, 2 << 20);
    if (!ws || !frames || !window)
        guest_panic("figures: no memory for the TLB figures");
    t.ws = ws;
    t.frames = kmm_virt_to_phys(mm, frames);
    t.window = (uint64_t)(uintptr_t)window;
    unsigned saved = guest_flush_ceiling;

    guest_printf("\nfigures [%s]: TLB invalidation, cycles per unmap of a 4 KiB-mapped range and per touch of %u other"
                 " pages after it; median of %u x %u\n",
                 accel, WORKING_SET, FIG_REPS, TLB_OPS);
    guest_printf("  %8s %5s | %-24s | %-24s | %-8s | %s\n", "", "", "       invlpg per page", "   full flush (CR3)",
                 "no flush", "cheaper");
    guest_printf("  %8s %5s | %7s %7s %8s | %7s %7s %8s | %8s |\n", "size", "pages", "unmap", "touch", "total", "unmap",
                 "touch", "total", "touch");
    /* the crossover: the last size invlpg wins before the first one the full flush wins */
    unsigned last_invlpg = 0, first_full = 0;
    bool alternate = false;
    for (unsigned i = 0; i < NSIZES; i++) {
        t.len = sizes[i];
        uint64_t med[3][2];
        measure(&t, med);
        uint64_t iu = med[0][0], ia = med[0][1], fu = med[1][0], fa = med[1][1];
        unsigned pages = (unsigned)(sizes[i] / 4096);
        bool invlpg_wins = iu + ia <= fu + fa;
        if (invlpg_wins && !first_full)
            last_invlpg = pages;
        else if (!invlpg_wins && !first_full)
            first_full = pages;
        else if (invlpg_wins)
            alternate = true;
        char size[16];
        if (sizes[i] >= (1 << 20))
            guest_snprintf(size, sizeof size, "%lu MiB", (unsigned long)(sizes[i] >> 20));
        else
            guest_snprintf(size, sizeof size, "%lu KiB", (unsigned long)(sizes[i] >> 10));
        guest_printf("  %8s %5u | %7lu %7lu %8lu | %7lu %7lu %8lu | %8lu | %s\n", size, pages, (unsigned long)iu,
                     (unsigned long)ia, (unsigned long)(iu + ia), (unsigned long)fu, (unsigned long)fa,
                     (unsigned long)(fu + fa), (unsigned long)med[2][1], invlpg_wins ? "invlpg" : "full flush");
    }
    guest_flush_ceiling = saved;
    if (!first_full)
        guest_printf("  the data suggest a ceiling of at least %u pages (invlpg wins at every size)", last_invlpg);
    else if (!last_invlpg)
        guest_printf("  the data suggest a ceiling of 0 (the full flush wins from 1 page)");
    else
        guest_printf("  the data suggest a ceiling between %u and %u pages", last_invlpg, first_full - 1);
    guest_printf("%s; guest_flush_ceiling restored to %u\n",
                 alternate ? " (then invlpg wins again at a larger size: noise)" : "", saved);
    if (fig_is_tcg(accel))
        guest_printf("  (TCG: the TLB here is QEMU's software TLB, direct-mapped and resized only when flushed"
                     " whole, so a full flush can cost a resize of its arrays: the crossover is the emulator's,"
                     " not a CPU's)\n");

    kmm_platform_guest.vm_unreserve(ctx, window, WINDOW_BYTES);
    kmm_free_pages(mm, frames);
    kmm_vfree(mm, ws);
    kmm_drain(mm);
}
