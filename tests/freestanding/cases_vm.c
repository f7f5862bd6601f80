/* cases_vm.c - kmm_vmalloc, kmm_vmap and kmm_kvmalloc, freestanding: on
 * platforms with virtual memory hooks (the guest: real page tables). */
#include "ktest.h"

const struct ktest ktest_cases_vm[] = {
    { .name = NULL },
};
