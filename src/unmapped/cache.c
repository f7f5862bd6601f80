/* cache.c - PLACEHOLDER (issue 15 in progress): the naive way, every
 * allocation taken from the page allocator and unmapped alone, so that the
 * layers above can be built and tested while the cache is written. */
#include "internal.h"
#include <kmm/unmapped.h>

kmm_phys_t kmm__unmapped_alloc_as(struct kmm *mm, enum kmm_owner owner, unsigned order, unsigned flags,
                                  const char *fn)
{
    (void)owner;
    mm_live(mm, fn);
    if (!kmm__unmapped_supported(mm)) {
        kmm__refuse(mm, KMM_ENOSYS, fn, "the platform cannot take pages out of its direct map");
        return KMM_PHYS_NONE;
    }
    if (!flags_ok(mm, flags, KMM_NOZERO | KMM_UNMAPPED_NOCACHE, fn))
        return KMM_PHYS_NONE;
    if (kmm__fault(mm, KMM_FAULT_PAGES))
        return KMM_PHYS_NONE;
    void *p = kmm_alloc_pages(mm, order, flags & KMM_AREA_MASK);
    if (!p)
        return KMM_PHYS_NONE;
    kmm__pages_own(mm, p, OWNER_UNMAPPED);
    kmm_phys_t phys = kmm_virt_to_phys(mm, p);
    uint64_t len = (uint64_t)mm->page_size << order;
    if (pf_direct_unmap(mm, phys, len) != 0 ||
        (!(flags & KMM_NOZERO) && pf_frames_zero(mm, phys, len) != 0)) {
        pf_direct_restore(mm, phys, len);
        kmm__free_pages_as(mm, OWNER_UNMAPPED, fn, p, true);
        return KMM_PHYS_NONE;
    }
    return phys;
}

void kmm__unmapped_free_as(struct kmm *mm, enum kmm_owner owner, kmm_phys_t addr, bool zeroed, const char *fn)
{
    (void)owner, (void)zeroed;
    void *p = kmm_phys_to_virt(mm, addr);
    size_t pages = kmm__pages_size(mm, OWNER_UNMAPPED, p);
    if (!pages)
        kmm__fatal_page(mm, fn, "not an allocation of the unmapped cache:", p);
    pf_direct_restore(mm, addr, (uint64_t)pages << mm->page_shift);
    kmm__free_pages_as(mm, OWNER_UNMAPPED, fn, p, true);
}

size_t kmm__unmapped_size(struct kmm *mm, enum kmm_owner owner, kmm_phys_t addr)
{
    (void)owner;
    return kmm__pages_size(mm, OWNER_UNMAPPED, kmm_phys_to_virt(mm, addr));
}

void kmm__unmapped_page_kinds(struct kmm *mm, uint64_t pfn, size_t n, uint8_t *kinds)
{
    (void)mm, (void)pfn;
    for (size_t i = 0; i < n; i++)
        kinds[i] = KMM_PAGE_UNMAPPED | KMM_PAGE_UNMAPPED_BIT;
}

int kmm__unmapped_check(struct kmm *mm) { (void)mm; return 0; }
void kmm__unmapped_destroy(struct kmm *mm) { (void)mm; }
void kmm__unmapped_fork_lock(struct kmm *mm, bool lock) { (void)mm, (void)lock; }
void kmm__unmapped_fork_child(struct kmm *mm) { (void)mm; }

kmm_phys_t kmm_unmapped_alloc(struct kmm *mm, unsigned order, unsigned flags)
{
    return kmm__unmapped_alloc_as(mm, OWNER_UNMAPPED, order, flags, "kmm_unmapped_alloc");
}

void kmm_unmapped_free(struct kmm *mm, kmm_phys_t addr)
{
    kmm__unmapped_free_as(mm, OWNER_UNMAPPED, addr, false, "kmm_unmapped_free");
}

size_t kmm_unmapped_shrink(struct kmm *mm, size_t nr_pages) { (void)mm, (void)nr_pages; return 0; }

void kmm_unmapped_stats(struct kmm *mm, struct kmm_unmapped_stats *st)
{
    (void)mm;
    *st = (struct kmm_unmapped_stats){ .direct_map_mappings = 1 };
}
