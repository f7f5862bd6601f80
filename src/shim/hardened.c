/* hardened.c - KMM_OPTIONS=hardened. (Being written: for now the default
 * paths.) */
#include "shim_internal.h"

void kmm__hard_init(struct kmm *mm) { (void)mm; }
void *kmm__hard_alloc(struct kmm *mm, size_t size, size_t align, bool zero, const char *fn)
{
    (void)fn;
    if (size <= mm->page_size && align <= mm->page_size) {
        void *p = align <= 16 ? kmm_malloc(mm, size, zero ? KMM_ZERO : 0) : kmm_malloc_aligned(mm, size, align, zero ? KMM_ZERO : 0);
        if (p)
            return p;
    }
    return align <= mm->page_size ? kmm_vmalloc(mm, size ? size : 1, KMM_ZERO) : kmm_vmalloc_aligned(mm, size ? size : 1, align, KMM_ZERO);
}
void kmm__hard_free(struct kmm *mm, void *p, size_t size, size_t align, const char *fn)
{
    (void)size; (void)align; (void)fn;
    kmm_free(mm, p);
}
size_t kmm__hard_usable(struct kmm *mm, const void *p, const char *fn) { (void)fn; return kmm_usable_size(mm, p); }
void *kmm__hard_realloc(struct kmm *mm, void *p, size_t size, const char *fn) { (void)fn; return kmm_realloc(mm, p, size, 0); }
bool kmm__hard_zero_owns(const void *p) { (void)p; return false; }
