/* kmm/stats.h - every layer's stats as text or JSON (hosted only).
 *
 * What `kmm stats` prints, for any memory system: the page allocator's
 * areas and free blocks per order (/proc/buddyinfo), kmm_malloc's caches
 * (/proc/slabinfo), vmalloc (/proc/vmallocinfo's totals), metadata, and the
 * layers above when they are in use. The malloc shim prints it at exit with
 * KMM_OPTIONS=stats.
 */
#ifndef KMM_STATS_H
#define KMM_STATS_H

#include <kmm/core.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KMM_STATS_JSON 1u   /* one JSON object instead of text */

/* Writes mm's stats to the file descriptor fd. Allocates nothing (safe at
 * exit and in the malloc shim); takes each layer's lock in turn, as the
 * stats calls do. Returns 0, or -errno of a failed write. */
KMM_API int kmm_stats_print(struct kmm *mm, int fd, unsigned flags);

#ifdef __cplusplus
}
#endif
#endif
