/* figures.h - what the guest's figures share (bench/guest).
 *
 * Every figure is rdtsc cycles measured inside the guest. Under TCG the TSC
 * is the host's clock read through an emulated CPU: the numbers rank the
 * operations of one run against each other, and say nothing about a real
 * machine. Each block names the accelerator for that reason. */
#ifndef KMM_GUEST_FIGURES_H
#define KMM_GUEST_FIGURES_H

#include "guest.h"

#define FIG_REPS 5   /* repetitions of each loop; the median is printed */

/* One repetition: n operations of some kind. */
typedef void (*fig_loop_fn)(void *arg, unsigned n);

/* Runs fn(arg, n) FIG_REPS times; the median cycles of one repetition,
 * divided by n (per operation). */
uint64_t fig_median_per_op(fig_loop_fn fn, void *arg, unsigned n);
uint64_t fig_median(uint64_t *v, unsigned n);   /* sorts v */
/* Is the accelerator TCG (the figures are then emulated time)? */
bool fig_is_tcg(const char *accel);

/* The three blocks (figures_speed.c, figures_tlb.c, figures_directmap.c). */
void fig_speed(struct kmm *mm, const char *accel);
void fig_tlb(struct kmm *mm, const char *accel);
void fig_directmap(struct kmm *mm, const char *accel);

#endif
