/* kmm/secret.h - secret memory: pages no one else can reach.
 *
 * Where to use it: keys, passwords, session secrets: a few pages that must
 * not leak through the direct map, a core dump, swap or a child process
 * (Linux's memfd_secret; libsodium's sodium_malloc done by an allocator
 * that owns the frames).
 *
 * Guarantees of a kmm_secret_alloc allocation:
 *  - Mapped at one private address only, read+write, with an inaccessible
 *    guard page before and after it: an overflow or underflow faults.
 *  - Its frames are not in kmm's direct map: they come from the unmapped
 *    cache (kmm/unmapped.h), owned by secret memory (any other free of them
 *    aborts). With the memfd_secret backing (below) they are not in the
 *    kernel's own direct map either.
 *  - Locked in memory (never swapped), left out of core dumps, not inherited
 *    by a child of fork (the child has no mapping there, and its copy of
 *    the frames is zeroed before it runs).
 *  - Zero when allocated; zeroed on free, before the frames are reused.
 *  - kmm_secret_free of anything but the start of a live secret allocation
 *    (twice, an execmem pointer, a kmm_malloc pointer) aborts with the
 *    address and the reason.
 *  - The bookkeeping lives in kmm's metadata memory.
 *
 * Locked memory counts against RLIMIT_MEMLOCK (8 MiB by default): an
 * allocation past it fails with errno EAGAIN and one line that says so and
 * how to raise it.
 */
#ifndef KMM_SECRET_H
#define KMM_SECRET_H

#include <kmm/core.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Backings of secret memory. */
enum kmm_secret_backing {
    /* Frames of kmm's memory from the unmapped cache, mapped at a private
     * address. Works on every platform with direct_unmap and vm hooks; the
     * frames are out of kmm's direct map (the kernel's own still maps them
     * when hosted). The default. */
    KMM_SECRET_UNMAPPED = 0,
    /* Hosted Linux 5.14+ (secretmem enabled): each allocation is a fresh
     * memfd_secret(2) mapping, whose pages the kernel removes from its own
     * direct map. Not in kmm's memory (no unmapped cache pages, no fork
     * copy at all). */
    KMM_SECRET_MEMFD = 1,
};

/* Returns size bytes (rounded up to pages) of secret memory, zeroed, page
 * aligned; NULL with errno ENOMEM when out of memory, EAGAIN when locking
 * it would pass RLIMIT_MEMLOCK (one line reported), EINVAL for size 0
 * (reported), ENOSYS when the platform cannot unmap pages or map them
 * privately. Cost: a reservation, one mapping call, a lock (mlock) and two
 * advice calls when hosted; pages from the unmapped cache (see there). */
KMM_API void *kmm_secret_alloc(struct kmm *mm, size_t size);

/* Zeroes and frees a secret allocation; NULL is a no-op. Misuse aborts (see
 * above). Cost: the zeroing, one unmap call, the frees to the cache. */
KMM_API void kmm_secret_free(struct kmm *mm, void *p);

/* Chooses the backing of later allocations (live ones keep theirs).
 * 0; -KMM_ENOSYS (reported) when the platform or kernel does not offer it. */
KMM_API int kmm_secret_set_backing(struct kmm *mm, enum kmm_secret_backing backing);

/* The backing later allocations get, and its name ("unmapped cache",
 * "memfd_secret"). */
KMM_API enum kmm_secret_backing kmm_secret_backing(struct kmm *mm);
KMM_API const char *kmm_secret_backing_name(enum kmm_secret_backing backing);

/* Can this process use backing (a probe: hosted, memfd_secret is tried
 * once)? */
KMM_API bool kmm_secret_backing_available(struct kmm *mm, enum kmm_secret_backing backing);

struct kmm_secret_stats {
    size_t allocations;       /* live */
    size_t bytes;             /* their sizes as asked */
    size_t pages;             /* their pages (guards not counted) */
    size_t locked_bytes;      /* memory locked for them now */
    size_t memfd_allocations; /* of the live ones, backed by memfd_secret */
    uint64_t allocs, frees, refused_memlock;
};

/* Fills *st. Cost: O(1) under the layer's lock. */
KMM_API void kmm_secret_stats(struct kmm *mm, struct kmm_secret_stats *st);

#ifdef __cplusplus
}
#endif
#endif
