/* stats.c - kmm_page_stats: counters, like /proc/buddyinfo. */
#include "page_internal.h"

void kmm_page_stats(struct kmm *mm, struct kmm_page_stats *st)
{
    mm_live(mm, "kmm_page_stats");
    __builtin_memset(st, 0, sizeof(*st));
    st->page_size = mm->page_size;
    st->nr_areas = mm->nr_areas;
    for (unsigned a = 0; a < mm->nr_areas; a++) {
        struct kmm_area *ar = &mm->area[a];
        struct kmm_area_stats *as = &st->area[a];
        kmm_lock(mm, &ar->lock);
        as->start = ar->start_pfn << mm->page_shift;
        as->end = ar->end_pfn << mm->page_shift;
        as->total_pages = ar->total_pages;
        as->free_pages = ar->free_pages;
        as->reserved_pages = ar->reserved_pages;
        for (unsigned o = 0; o <= KMM_MAX_ORDER; o++)
            st->nr_free[a][o] = ar->nr_free[o];
        kmm_unlock(mm, &ar->lock);
        st->total_pages += as->total_pages;
        st->free_pages += as->free_pages;
        st->reserved_pages += as->reserved_pages;
    }
    /* Areas and caches are read one after the other while other threads move
     * pages between them, so a page may be counted twice: clamp, so the
     * totals stay consistent (free + reserved + allocated == total). */
    st->cached_pages = kmm__tcache_cached_pages(mm);
    st->free_pages += st->cached_pages;
    if (st->free_pages + st->reserved_pages > st->total_pages)
        st->free_pages = st->total_pages - st->reserved_pages;
    st->allocated_pages = st->total_pages - st->free_pages - st->reserved_pages;
    st->resident_pages = mm->pf->resident ? (size_t)((mm->pf->resident(mm->ctx) + mm->page_size - 1) >> mm->page_shift)
                                         : st->total_pages;
}
