/* print.c - kmm_stats_print: every layer's stats as text or JSON.
 * (First version: the page allocator's totals; the full `kmm stats` moves
 * here from tools/kmm.c.) */
#include <stdio.h>

#include <kmm.h>

int kmm_stats_print(struct kmm *mm, int fd, unsigned flags)
{
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    int rc = (flags & KMM_STATS_JSON)
                 ? dprintf(fd, "{\"total_pages\": %zu, \"free_pages\": %zu, \"resident_pages\": %zu}\n", st.total_pages,
                           st.free_pages, st.resident_pages)
                 : dprintf(fd, "pages: total %zu free %zu resident %zu\n", st.total_pages, st.free_pages,
                           st.resident_pages);
    return rc < 0 ? -1 : 0;
}
