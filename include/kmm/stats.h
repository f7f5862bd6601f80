/* kmm/stats.h - every layer's stats as text or JSON (hosted only).
 *
 * What `kmm stats` prints, for any memory system: the page allocator's
 * totals, free blocks per order (/proc/buddyinfo) and areas; kmm_malloc's
 * caches (/proc/slabinfo); vmalloc's areas (/proc/vmallocinfo) and totals;
 * kmm's metadata; the shrinkers; and the layers above when they are in use:
 * the unmapped cache's table (Linux's unmapped_alloc debugfs file), secret
 * memory, execmem. zsmalloc pools and zstores are printed by their owners
 * (they need a pool's or a store's handle). The malloc shim prints the same
 * at exit with KMM_OPTIONS=stats.
 */
#ifndef KMM_STATS_H
#define KMM_STATS_H

#include <kmm/core.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KMM_STATS_JSON         1u          /* one JSON object, a member per layer, instead of text */
#define KMM_STATS_JSON_MEMBERS (1u << 1)   /* with KMM_STATS_JSON: the members alone, no braces nor newline,
                                              to go inside the caller's own object after one of its members */

/* The layers to print; none named: every layer in use (see kmm_stats_print).
 * JSON member names in brackets. */
#define KMM_STATS_PAGES     (1u << 4)   /* page allocator, buddyinfo, areas ["pages"] */
#define KMM_STATS_SLAB      (1u << 5)   /* slabinfo: every cache with a slab or an object ["slab"] */
#define KMM_STATS_VMALLOC   (1u << 6)   /* vmallocinfo (text: the first 14 areas) and totals ["vmalloc"] */
#define KMM_STATS_META      (1u << 7)   /* kmm's own bookkeeping ["meta"] */
#define KMM_STATS_UNMAPPED  (1u << 8)   /* the unmapped cache's table ["unmapped"] */
#define KMM_STATS_SHRINKERS (1u << 9)   /* registered shrinkers, in the order they are asked ["shrinkers"] */
#define KMM_STATS_SECRET    (1u << 10)  /* secret memory ["secret"] */
#define KMM_STATS_EXECMEM   (1u << 11)  /* execmem ["execmem"] */

/* Writes mm's stats to the file descriptor fd, the layers named in flags in
 * the order above. With no layer named: pages, slab, vmalloc, meta and
 * shrinkers always, the unmapped cache, secret memory and execmem if mm has
 * used them.
 *
 * Allocates nothing and opens no stdio stream (safe at exit and inside the
 * malloc shim): it formats with snprintf into about 4 KiB of stack and
 * writes with write(2); the slab listing takes 35 KiB more of stack (at most
 * 256 caches listed). Takes each layer's lock in turn, as that layer's stats
 * call does, never two at once, and writes with no lock held. Cost: the
 * stats calls (O(areas x orders + caches x threads + vmalloc areas)), one
 * write per 4 KiB, and with many vmalloc areas a pass over them per 4 KiB of
 * listing. Caller-given names and tags are escaped in JSON.
 *
 * Returns 0, or -errno of the first failed write (nothing more is written
 * after it). */
KMM_API int kmm_stats_print(struct kmm *mm, int fd, unsigned flags);

#ifdef __cplusplus
}
#endif
#endif
