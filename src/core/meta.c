/* meta.c - memory for the upper layers' own metadata, and fault injection.
 *
 * Slab descriptors, magazines and kmm_malloc's size-class tables are kept
 * apart from the memory callers get, so that no buffer overflow reaches them:
 * from the platform's meta_alloc when it has one (hosted: anonymous mmap),
 * else from the page allocator (freestanding: there is nowhere else). */
#include "internal.h"

bool kmm__fault(struct kmm *mm, unsigned site)
{
    if (KMM_LIKELY(!(load_relaxed(&mm->fault_sites) & site)))
        return false;
    unsigned long n = add_relaxed(&mm->fault_calls, 1) + 1;
    unsigned long nth = load_relaxed(&mm->fault_nth), times = load_relaxed(&mm->fault_times);
    if (n < nth || (times && n >= nth + times))
        return false;
    add_relaxed(&mm->fault_injected, 1);
    return true;
}

void kmm_fault_inject(struct kmm *mm, unsigned sites, unsigned long nth, unsigned long times)
{
    store_relaxed(&mm->fault_sites, 0);
    store_relaxed(&mm->fault_calls, 0);
    store_relaxed(&mm->fault_injected, 0);
    store_relaxed(&mm->fault_nth, nth);
    store_relaxed(&mm->fault_times, times);
    if (nth)
        store_relaxed(&mm->fault_sites, sites & (KMM_FAULT_PAGES | KMM_FAULT_META | KMM_FAULT_MAP));
}

unsigned long kmm_fault_injected(struct kmm *mm)
{
    return load_relaxed(&mm->fault_injected);
}

void *kmm__meta_alloc(struct kmm *mm, size_t len)
{
    if (kmm__fault(mm, KMM_FAULT_META))
        return NULL;
    if (mm->pf->meta_alloc)
        return mm->pf->meta_alloc(mm->ctx, len);
    return kmm_alloc_pages_exact(mm, len, KMM_ZERO | KMM__NO_RECLAIM);   /* maybe under slab_lock */
}

void kmm__meta_free(struct kmm *mm, void *p, size_t len)
{
    if (!p)
        return;
    if (mm->pf->meta_alloc)
        mm->pf->meta_free(mm->ctx, p, len);
    else
        kmm_free_pages(mm, p);
}
