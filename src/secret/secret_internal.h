/* secret_internal.h - secret memory's internals: the records of live
 * secrets and the table that finds them by address.
 *
 * A secret of n pages, UNMAPPED backing:
 *
 *   reservation (vm_reserve, n + 2 pages, PROT_NONE)
 *   [guard][ run 0: 2^a pages ][ run 1: 2^b pages ] ... [guard]
 *          ^ addr (what kmm_secret_alloc returns)
 *
 * Each run is one allocation of the unmapped cache (OWNER_SECRET), mapped
 * with one vm_map call (read+write, KMM_MAP_SECRET: locked, not dumped, not
 * inherited). The runs are the binary decomposition of n, largest first,
 * each at most SECRET_RUN_BYTES: no page is wasted (a size rounded up to a
 * power of two would waste up to half, and locked memory is scarce), at
 * the price of one cache allocation and one mapping call per set bit. The
 * MEMFD backing has the same reservation and guards and no runs: the
 * middle is one memfd_secret mapping (pf->secret_map).
 *
 * Glossary: a frame is physical memory (kmm_phys_t); its direct-map
 * address is where kmm's direct map would show it (not here: the cache
 * took it out); addr is the secret's private address, its only mapping.
 *
 * Everything here is metadata memory (core/meta.c): the layer's state, the
 * table's buckets, the records. mm->secret_lock guards all of it and is a
 * leaf: records, buckets, frames, reservations and mappings are made and
 * undone with it dropped; a record enters the table, or leaves it, in one
 * step under it. So a secret being freed is out of the table before its
 * pages are wiped: a second free of it, even a concurrent one, finds
 * nothing and aborts.
 *
 * Fork. A record being made or undone (outside the lock) is on the pending
 * list, so that the child of a fork made meanwhile by another thread finds
 * its frames and its reservation. What such a record shows the child is
 * kept safe by the order of the stores: addr is set after the reservation
 * is made and cleared before it is given back, nr_runs counts a run after
 * it is taken and before it is given back. The child may so miss a
 * reservation or a run the thread had just taken (a leak in the child), but
 * never gives back twice, nor unmaps what is no longer the record's.
 */
#ifndef KMM_SECRET_INTERNAL_H
#define KMM_SECRET_INTERNAL_H

#include "internal.h"
#include <kmm/secret.h>
#include <kmm/unmapped.h>

/* The largest run: the unmapped cache's refill block (it serves any order
 * up to it from its chunks; larger orders would bypass it). */
#define SECRET_RUN_BYTES KMM_UNMAPPED_REFILL_BYTES
/* Addresses of the last frees and fork drops, for the message of a free
 * that finds no live secret ("freed already" rather than "never"). */
#define SECRET_GONE_RING 16

struct secret_run {
    kmm_phys_t phys;
    unsigned order;
    bool dirty;                           /* not known zero (a fork child could not zero it): the cache zeroes it */
};

/* A live secret. Invariants (kmm__secret_check): addr page aligned, in the
 * bucket of its address; pages == size rounded up to pages; UNMAPPED: the
 * runs' pages add up to pages, each run a live OWNER_SECRET allocation of
 * the cache of its order; MEMFD: no runs. */
struct secret {
    uintptr_t addr;                       /* start of the pages (the reservation + one page) */
    size_t size;                          /* as asked */
    size_t pages;
    uint64_t seq;                         /* allocation number: a record's identity across unlocks */
    struct secret *hash_next;             /* the bucket's chain */
    struct secret *prev, *next;           /* in the live list (oldest first, seq ascending) or the pending list */
    unsigned backing;                     /* enum kmm_secret_backing */
    unsigned nr_runs;
    struct secret_run run[];
};

/* What kmm_secret_free remembers of an address that is no longer live. */
enum secret_gone {
    SECRET_GONE_FREED = 1,
    SECRET_GONE_FORK,                     /* the parent's, dropped in this child of fork */
};

/* The layer (mm->secret), made on first use, published with release.
 * Fields are protected by mm->secret_lock, but those marked atomic. */
struct kmm_secret {
    struct secret **bucket;               /* nbuckets chains, by secret_hash */
    size_t nbuckets;                      /* a power of two; grown to keep count <= nbuckets */
    size_t count;                         /* live records */
    struct secret *oldest, *newest;       /* the list of every live record */
    uint64_t next_seq;
    unsigned backing;                     /* of later allocations; atomic, not under the lock */
    /* kmm_secret_backing_available's probe of memfd_secret: 0 not yet, 1
     * available, 2 not (atomic; a race probes twice, harmlessly) */
    int avail_memfd;                      /* atomic */
    /* stats (struct kmm_secret_stats) */
    size_t bytes, pages, locked_bytes, memfd_allocations;
    uint64_t allocs, frees, refused_memlock;
    /* A child of fork: the parent's records, out of the table, their pages
     * zeroed and their reservations gone; their frames go back to the cache
     * at the child's next call of this layer (the fork handler frees
     * nothing: see kmm__secret_fork_child). Linked through next. */
    struct secret *inherited;
    size_t inherited_count;               /* atomic: read without the lock at each entry */
    /* records being made or undone with the lock dropped (see Fork above) */
    struct secret *pending;
    size_t pending_count;
    bool forked;                          /* this is a child that dropped its parent's secrets */
    uintptr_t gone_addr[SECRET_GONE_RING];
    uint8_t gone_why[SECRET_GONE_RING];   /* enum secret_gone; 0 = empty */
    unsigned gone_next;
};

/* The largest run's order at this page size. */
static inline unsigned secret_run_order_max(const struct kmm *mm)
{
    uint64_t pages = SECRET_RUN_BYTES >> mm->page_shift;
    unsigned order = pages ? floor_log2(pages) : 0;
    return order < KMM_MAX_ORDER ? order : KMM_MAX_ORDER;
}

/* ---- table.c: the records by address (secret_lock held) ---- */
static inline size_t secret_record_size(unsigned nr_runs)
{
    return sizeof(struct secret) + (size_t)nr_runs * sizeof(struct secret_run);
}
/* The live record whose addr is exactly addr, or NULL. O(1) expected. */
KMM_HIDDEN struct secret *kmm__secret_find(const struct kmm *mm, struct kmm_secret *s, uintptr_t addr);
/* Adds r (its addr not live); the table must have room (secret_table_room). */
KMM_HIDDEN void kmm__secret_insert(const struct kmm *mm, struct kmm_secret *s, struct secret *r);
/* Takes r out of the table and the list. */
KMM_HIDDEN void kmm__secret_remove(const struct kmm *mm, struct kmm_secret *s, struct secret *r);
/* Buckets the table needs to take one more record: 0 when it has room, else
 * the size of the next table, to be allocated without the lock. */
static inline size_t secret_table_want(const struct kmm_secret *s)
{
    return s->count + 1 > s->nbuckets ? (s->nbuckets ? 2 * s->nbuckets : 16) : 0;
}
/* Moves the records into buckets (n of them, zeroed) if that is larger than
 * the current table; returns the table left over (the old one, or buckets
 * if unused) for the caller to free after the lock, and its size in *n. */
KMM_HIDDEN struct secret **kmm__secret_rehash(const struct kmm *mm, struct kmm_secret *s, struct secret **buckets,
                                             size_t *n);
KMM_HIDDEN int kmm__secret_table_check(const struct kmm *mm, struct kmm_secret *s);

/* ---- secret.c, for lifecycle.c (check, fork, destroy) ---- */
/* Wipes, unmaps and unreserves r's pages and guards, gives its frames to
 * the cache and frees the record (r is out of the table). No lock held. */
KMM_HIDDEN void kmm__secret_discard(struct kmm *mm, struct secret *r, const char *fn);
/* Gives the frames of the records a fork child dropped back to the cache and
 * frees the records. No lock held. */
KMM_HIDDEN void kmm__secret_return_inherited(struct kmm *mm);
/* Remembers why addr stopped being live, for kmm_secret_free's message. */
static inline void secret_remember_gone(struct kmm_secret *s, uintptr_t addr, enum secret_gone why)
{
    s->gone_addr[s->gone_next] = addr;
    s->gone_why[s->gone_next] = (uint8_t)why;
    s->gone_next = (s->gone_next + 1) % SECRET_GONE_RING;
}

/* For tests (tests/unit/test_secret.c): the runs of the live secret at p,
 * up to max of them copied into runs; returns how many it has (0 when p is
 * no live secret). */
KMM_HIDDEN size_t kmm__secret_runs(struct kmm *mm, const void *p, struct secret_run *runs, size_t max);

#endif
