/* cases_guest.c - what only a real machine has: the firmware's memory map,
 * memory above 4 GiB, page faults caught, pages out of the direct map. */
#include "ktest.h"

const struct ktest ktest_cases_guest[] = {
    { .name = NULL },
};
