/* figures.c - figures measured inside the guest (placeholder, filled in next). */
#include "guest.h"

void guest_figures(struct kmm *mm, const char *accel);

void guest_figures(struct kmm *mm, const char *accel)
{
    (void)mm;
    guest_printf("figures (accelerator %s): none yet\n", accel);
}
