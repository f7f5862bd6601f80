/* figures.c - the figures the guest prints after its tests (issue 17):
 * allocation costs, TLB invalidation by invlpg against a full flush, and
 * the direct map's fragmentation under unmapped pages, on real page tables.
 *
 * guest_figures gets a fresh memory system over all of the machine's memory
 * and leaves it as it found it. The direct-map block runs last: the splits
 * it makes in the machine's page tables are permanent (as in Linux). */
#include "figures.h"

void guest_figures(struct kmm *mm, const char *accel);

uint64_t fig_median(uint64_t *v, unsigned n)
{
    for (unsigned i = 1; i < n; i++)
        for (unsigned j = i; j > 0 && v[j] < v[j - 1]; j--) {
            uint64_t t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return v[n / 2];
}

bool fig_is_tcg(const char *accel)
{
    return accel[0] == 't' && accel[1] == 'c' && accel[2] == 'g' && !accel[3];
}

uint64_t fig_median_per_op(fig_loop_fn fn, void *arg, unsigned n)
{
    uint64_t t[FIG_REPS];
    for (unsigned r = 0; r < FIG_REPS; r++) {
        uint64_t t0 = guest_rdtsc();
        fn(arg, n);
        t[r] = guest_rdtsc() - t0;
    }
    return fig_median(t, FIG_REPS) / n;
}

void guest_figures(struct kmm *mm, const char *accel)
{
    static void (*const blocks[])(struct kmm *, const char *) = { fig_speed, fig_tlb, fig_directmap };
    uint64_t t0 = guest_rdtsc(), took[3];
    for (unsigned i = 0; i < 3; i++) {
        uint64_t t = guest_rdtsc();
        blocks[i](mm, accel);
        took[i] = (guest_rdtsc() - t) / 1000000;
    }
    guest_printf("figures: %lu Mcycles in all (%lu, %lu, %lu)\n", (unsigned long)((guest_rdtsc() - t0) / 1000000),
                 (unsigned long)took[0], (unsigned long)took[1], (unsigned long)took[2]);
}
