/* kinds.c - PLACEHOLDER (issue 15 in progress): kmm_page_kinds. */
#include "internal.h"

const char *kmm_page_kind_name(enum kmm_page_kind kind) { (void)kind; return "?"; }
size_t kmm_page_kinds(struct kmm *mm, kmm_phys_t start, size_t npages, uint8_t *kinds)
{
    (void)mm, (void)start, (void)kinds;
    return npages;
}
