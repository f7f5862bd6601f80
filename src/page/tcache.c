/* tcache.c - per-thread caches of small blocks (Linux's per-CPU page lists).
 *
 * Each thread keeps, per memory system, per area and per order up to
 * KMM_PCP_MAX_ORDER, a stack of free blocks. Allocation pops and free pushes
 * without a lock; an empty stack is refilled with tcache_batch() blocks under
 * the area lock, and a stack above tcache_high() gives its coldest
 * tcache_batch() blocks back. The blocks stay marked CACHED in the metadata,
 * so a double free into a cache is caught like any other.
 *
 * The stacks hold addresses in the cache's own memory (like Linux's per-CPU
 * lists, which link struct pages, not the pages): a refill of 64 pages
 * touches none of them, so a fresh memory system hands out its first page
 * without faulting in the other 63, and nothing a program writes into a page
 * it freed can steer a later allocation.
 *
 * Which cache belongs to which thread: kmm__tls holds (memory system id,
 * cache) pairs, most recently used first. A cache is registered in its
 * memory system's list; at thread exit (kmm_thread_exit) every cache of a
 * memory system still alive goes back to it. Ids are never reused, so a
 * cache of a destroyed memory system is never taken for a new one's.
 */
#include "page_internal.h"

#if KMM_THREAD_CACHE
_Thread_local struct kmm_tls_block kmm__tls_block __attribute__((tls_model("initial-exec")));
static _Thread_local bool tls_attached __attribute__((tls_model("initial-exec")));
/* kmm_thread_exit ran: the thread is exiting and gets no cache again (see
 * there). */
static _Thread_local bool tls_exited __attribute__((tls_model("initial-exec")));
#endif

/* Gives the coldest blocks of list (a, order) back to the buddy lists until
 * keep remain. Called by the owning thread. */
void kmm__tcache_flush(struct kmm *mm, struct kmm_tcache *tc, unsigned a, unsigned order, uint32_t keep)
{
    struct tcache_list *l = &tc->list[a][order];
    if (l->count <= keep)
        return;
    uint32_t give = l->count - keep;
    struct kmm_area *ar = &mm->area[a];
    kmm_lock(mm, &ar->lock);
    for (uint32_t i = 0; i < give; i++) {
        uint64_t pfn = virt_to_pfn(mm, (void *)l->slot[i]);
        if (pfn == UINT64_MAX || meta_get(mm, pfn) != meta_make(META_CACHED, order))
            kmm__fatal_page(mm, "kmm_free_pages", "per-thread cache corrupted at", (void *)l->slot[i]);
        kmm__area_free_block(mm, ar, pfn, order);
    }
    kmm_unlock(mm, &ar->lock);
    __builtin_memmove(l->slot, l->slot + give, keep * sizeof(l->slot[0]));
    store_relaxed(&l->count, keep);
    kmm__release_tick(mm);
}

size_t kmm__tcache_drain_all(struct kmm *mm, struct kmm_tcache *tc)
{
    /* objects first: slabs they empty free their pages past this cache */
    size_t blocks = kmm__mag_drain_all(mm, tc);
    for (unsigned a = 0; a < mm->nr_areas; a++) {
        for (unsigned o = 0; o <= KMM_PCP_MAX_ORDER; o++) {
            blocks += tc->list[a][o].count;
            kmm__tcache_flush(mm, tc, a, o, 0);
        }
    }
    return blocks;
}

static inline void cache_block(struct kmm *mm, struct tcache_list *l, uint32_t at, uint64_t pfn, unsigned order)
{
    meta_set(mm, pfn, meta_make(META_CACHED, order));
    l->slot[at] = (uintptr_t)pfn_to_virt(mm, pfn);
}

/* Moves tcache_batch(order) blocks of area a into the cache (fewer if the
 * area runs out). Fragments first: free blocks of the order up to below
 * TCACHE_REFILL_ORDER, while the area has any; then one block of
 * TCACHE_REFILL_ORDER split here. A whole block keeps a thread's cached
 * pages on one cache line of metadata that no other thread's share (so
 * threads do not bounce metadata lines between them), but taking one for
 * every refill split a fresh 256 KiB for each new thread while the
 * fragments that the threads before it left (pinned by a page or two still
 * in use) piled up: a server whose threads come and go (bench/suite's
 * larson) had 40 MiB free in such fragments, resident, for 5 MiB in use. */
static uint32_t refill(struct kmm *mm, struct kmm_tcache *tc, unsigned a, unsigned order)
{
    struct kmm_area *ar = &mm->area[a];
    struct tcache_list *l = &tc->list[a][order];
    uint32_t n = 0, want = tcache_batch(order), base = l->count;
    if (ar->total_pages < ((uint64_t)1 << order))
        return 0;
    kmm_lock(mm, &ar->lock);
    uint32_t fragments = ((1u << TCACHE_REFILL_ORDER) - 1) & ~((1u << order) - 1);
    for (; n < want && (ar->nonempty & fragments); n++)
        cache_block(mm, l, base + n, kmm__area_take(mm, ar, order), order);
    uint64_t pfn = n < want ? kmm__area_take(mm, ar, TCACHE_REFILL_ORDER) : UINT64_MAX;
    if (pfn != UINT64_MAX) {
        /* the whole block, beyond want if fragments came first: the list
         * holds up to tcache_high */
        for (uint64_t p = pfn + ((uint64_t)1 << TCACHE_REFILL_ORDER); p > pfn;) {   /* lowest ends on top */
            p -= (uint64_t)1 << order;
            cache_block(mm, l, base + n++, p, order);
        }
    }
    for (; n < want; n++) {
        pfn = kmm__area_take(mm, ar, order);
        if (pfn == UINT64_MAX)
            break;
        cache_block(mm, l, base + n, pfn, order);
    }
    kmm_unlock(mm, &ar->lock);
    store_relaxed(&l->count, base + n);
    kmm__release_tick(mm);
    return n;
}

struct tcache_list *kmm__tcache_refill(struct kmm *mm, struct kmm_tcache *tc, unsigned order, unsigned flags)
{
    for (const uint8_t *a = mm->area_pref[flags & KMM_AREA_MASK]; *a != NO_AREA; a++) {
        struct tcache_list *l = &tc->list[*a][order];
        if (l->count || refill(mm, tc, *a, order))
            return l;
    }
    return NULL;
}

#if KMM_THREAD_CACHE
static struct kmm_tcache *tcache_create(struct kmm *mm)
{
    if (!mm->pf->meta_alloc)
        return NULL;
    if (!tls_attached && mm->pf->thread_attach) {
        mm->pf->thread_attach();
        tls_attached = true;
    }
    kmm_lock(mm, &mm->tcache_lock);
    struct kmm_tcache *tc = mm->tcache_spare;   /* an exited thread's, empty */
    if (tc) {
        mm->tcache_spare = tc->next;
        mm->tcache_spares--;
    }
    kmm_unlock(mm, &mm->tcache_lock);
    if (!tc) {
        tc = mm->pf->meta_alloc(mm->ctx, sizeof(*tc));
        if (!tc)
            return NULL;
        for (unsigned a = 0; a < KMM_MAX_AREAS; a++)
            for (unsigned o = 0, at = 0; o <= KMM_PCP_MAX_ORDER; at += TCACHE_CAP(o), o++)
                tc->list[a][o].slot = &tc->storage[a][at];
        tc->mm = mm;
        tc->mm_id = mm->id;
    }
    tc->busy = &kmm__busy;
    kmm_lock(mm, &mm->tcache_lock);
    tc->synced = load_relaxed(&mm->cache_key);
    tc->next = mm->tcaches;
    mm->tcaches = tc;
    kmm_unlock(mm, &mm->tcache_lock);
    return tc;
}

/* Drains tc and takes it out of its memory system, if that is still alive.
 * The registry lock (a spin lock) is held only to see that mm is alive and
 * to count this thread in mm->retiring, which kmm_destroy waits to see at
 * 0: the drain takes mutexes and may release memory (fallocate), freeing
 * tc is a munmap, and other threads creating, destroying or retiring for
 * any memory system would spin on the registry lock all that while. */
static void tcache_retire(uint64_t id, struct kmm_tcache *tc)
{
    kmm__registry_lock();
    struct kmm *mm = kmm__is_live(id) ? tc->mm : NULL;   /* if not, tc went with its mm */
    if (mm)
        mm->retiring++;
    kmm__registry_unlock();
    if (!mm)
        return;
    kmm_lock(mm, &mm->tcache_lock);
    kmm__tcache_drain_all(mm, tc);
    for (struct kmm_tcache **pp = &mm->tcaches; *pp; pp = &(*pp)->next) {
        if (*pp == tc) {
            *pp = tc->next;
            break;
        }
    }
    /* kept, empty, for a new thread (its magazines' slot arrays too) */
    bool keep = mm->tcache_spares < TCACHE_SPARE;
    if (keep) {
        kmm__mag_reset_all(mm, tc);
        tc->busy = NULL;
        tc->next = mm->tcache_spare;
        mm->tcache_spare = tc;
        mm->tcache_spares++;
    }
    kmm_unlock(mm, &mm->tcache_lock);
    if (!keep) {
        kmm__mag_release_all(mm, tc);
        mm->pf->meta_free(mm->ctx, tc, sizeof(*tc));
    }
    kmm__registry_lock();
    mm->retiring--;
    kmm__registry_unlock();
}

/* The owner's half of the handshake with kmm__tcache_reclaim (internal.h):
 * empties tc and takes mm's current key, under mm->tcache_lock. Returns the
 * key, for the thread's slot; and the blocks and objects drained. */
static uint64_t tcache_sync(struct kmm *mm, struct kmm_tcache *tc, size_t *drained)
{
    kmm_lock(mm, &mm->tcache_lock);
    size_t n = kmm__tcache_drain_all(mm, tc);
    uint64_t key = load_relaxed(&mm->cache_key);   /* changes only under the lock */
    tc->synced = key;
    kmm_unlock(mm, &mm->tcache_lock);
    if (drained)
        *drained = n;
    return key;
}

struct kmm_tcache *kmm__tcache_get_slow(struct kmm *mm)
{
    unsigned i;
    for (i = 0; i < TLS_SLOTS; i++)
        if (kmm__tls[i].mm_id == mm->id)
            break;
    struct tls_slot slot;
    if (i < TLS_SLOTS) {
        slot = kmm__tls[i];
    } else {
        if (tls_exited)
            return NULL;   /* uncached: a cache made now would outlive the thread */
        slot.tc = tcache_create(mm);
        if (!slot.tc)
            return NULL;
        slot.mm_id = mm->id;
        slot.key = slot.tc->synced;
        i = TLS_SLOTS - 1;   /* evict the least recently used slot */
        if (kmm__tls[i].mm_id)
            tcache_retire(kmm__tls[i].mm_id, kmm__tls[i].tc);
    }
    for (; i > 0; i--)   /* move to the front */
        kmm__tls[i] = kmm__tls[i - 1];
    if (slot.key != load_relaxed(&mm->cache_key))   /* kmm_drain or a reclaim ran since this thread last used mm */
        slot.key = tcache_sync(mm, slot.tc, NULL);
    kmm__tls[0] = slot;
    return slot.tc;
}

void kmm_thread_exit(void)
{
    for (unsigned i = 0; i < TLS_SLOTS; i++) {
        if (kmm__tls[i].mm_id)
            tcache_retire(kmm__tls[i].mm_id, kmm__tls[i].tc);
        kmm__tls[i].mm_id = 0;
        kmm__tls[i].key = 0;
        kmm__tls[i].tc = NULL;
    }
    /* The thread goes on using kmm without caches: later destructors, and
     * the C library itself after every destructor has run (glibc frees a
     * dead thread's TLS block from the exiting thread), when a cache made
     * again would never be retired, and would keep a pointer into this
     * thread's TLS after its stack is gone (a crash at the next reclaim,
     * found by the malloc shim's thread churn test). */
    tls_exited = true;
}

size_t kmm__tcache_drain_current(struct kmm *mm)
{
    for (unsigned i = 0; i < TLS_SLOTS; i++) {
        if (kmm__tls[i].mm_id == mm->id) {
            size_t n;
            kmm__tls[i].key = tcache_sync(mm, kmm__tls[i].tc, &n);
            return n;
        }
    }
    return 0;
}

/* The reclaimer's half of the handshake: see internal.h for why a cache
 * whose owner is neither busy nor synced since the new key is not in use. */
size_t kmm__tcache_reclaim(struct kmm *mm)
{
    kmm_lock(mm, &mm->tcache_lock);
    uint64_t key = kmm__next_key();
    store_relaxed(&mm->cache_key, key);
    kmm_unlock(mm, &mm->tcache_lock);
    size_t n = kmm__tcache_drain_current(mm);   /* ours: synced to key now */
    /* without the barrier the other threads drain at their next call */
    if (!mm->pf->barrier_all || mm->pf->barrier_all(mm->ctx) != 0)
        return n;
    kmm_lock(mm, &mm->tcache_lock);
    for (struct kmm_tcache *tc = mm->tcaches; tc; tc = tc->next) {
        if (tc->synced >= key || __atomic_load_n(&tc->busy->fast, __ATOMIC_ACQUIRE) ||
            __atomic_load_n(&tc->busy->slow, __ATOMIC_ACQUIRE))
            continue;   /* drained itself since, or in a call: it drains itself at its next */
        n += kmm__tcache_drain_all(mm, tc);
    }
    kmm_unlock(mm, &mm->tcache_lock);
    return n;
}

/* Frees the block at v if it is a CACHED block of list (a, order): with
 * every list emptied, such a block is in none, so it was being moved by a
 * gone thread. Anything else (a stale slot: the block was handed out,
 * freed or merged since; a duplicate) is left alone. */
static void fork_reclaim_block(struct kmm *mm, unsigned a, unsigned order, uintptr_t v)
{
    uint64_t pfn = virt_to_pfn(mm, (void *)v);
    if (pfn == UINT64_MAX || (v & (mm->page_size - 1)) || area_of_pfn(mm, pfn) != a)
        return;
    struct kmm_area *ar = &mm->area[a];
    kmm_lock(mm, &ar->lock);
    if (meta_get(mm, pfn) == meta_make(META_CACHED, order))
        kmm__area_free_block(mm, ar, pfn, order);
    kmm_unlock(mm, &ar->lock);
}

/* A gone thread may have been cut by the fork anywhere in a lock-free path,
 * and its lists and magazines show a prefix of its stores (a store reaches
 * the child only if every earlier one did). The paths store in an order
 * that keeps every block and slot in motion findable: a pop lowers count
 * (top) before it marks the block ALLOC (the slot held), a push writes the
 * slot before it marks the block CACHED (clears held) and raises count, a
 * refill writes its slots under the lock and raises count after. So: the
 * depots first (filled under locks, so whole), then every list and magazine,
 * tolerating stale and duplicated entries, then the gone threads' slots past
 * count (top). The forking thread's cache is emptied too: a gone thread's
 * stale slot may name a block the forking thread cached since, and emptying
 * both resolves it whichever comes first. */
void kmm__tcache_fork_child(struct kmm *mm)
{
    struct kmm_tcache *mine = NULL;
    for (unsigned i = 0; i < TLS_SLOTS; i++)
        if (kmm__tls[i].mm_id == mm->id)
            mine = kmm__tls[i].tc;
    kmm__slab_drain(mm);
    for (struct kmm_tcache *tc = mm->tcaches; tc; tc = tc->next)
        kmm__mag_fork_drain(mm, tc, tc != mine);
    for (struct kmm_tcache *tc = mm->tcaches; tc; tc = tc->next) {
        for (unsigned a = 0; a < mm->nr_areas; a++) {
            for (unsigned o = 0; o <= KMM_PCP_MAX_ORDER; o++) {
                struct tcache_list *l = &tc->list[a][o];
                uint32_t count = l->count < TCACHE_CAP(o) ? l->count : TCACHE_CAP(o);
                uint32_t end = tc == mine ? count : TCACHE_CAP(o);
                for (uint32_t i = 0; i < end; i++)
                    fork_reclaim_block(mm, a, o, l->slot[i]);
                store_relaxed(&l->count, 0);
            }
        }
    }
    struct kmm_tcache **pp = &mm->tcaches;
    while (*pp) {
        struct kmm_tcache *tc = *pp;
        if (tc == mine) {
            pp = &tc->next;
            continue;
        }
        *pp = tc->next;
        kmm__mag_release_all(mm, tc);
        mm->pf->meta_free(mm->ctx, tc, sizeof(*tc));
    }
}
#else
struct kmm_tcache *kmm__tcache_get_slow(struct kmm *mm)
{
    (void)mm;
    return NULL;
}
void kmm_thread_exit(void) {}
size_t kmm__tcache_drain_current(struct kmm *mm)
{
    (void)mm;
    return 0;
}
size_t kmm__tcache_reclaim(struct kmm *mm)
{
    (void)mm;
    return 0;
}
void kmm__tcache_fork_child(struct kmm *mm)
{
    kmm__slab_drain(mm);
}
#endif

void kmm__tcache_destroy_all(struct kmm *mm)
{
    struct kmm_tcache *lists[2] = { mm->tcaches, mm->tcache_spare };
    for (unsigned l = 0; l < 2; l++) {
        for (struct kmm_tcache *tc = lists[l], *next; tc; tc = next) {
            next = tc->next;
            kmm__mag_release_all(mm, tc);
            mm->pf->meta_free(mm->ctx, tc, sizeof(*tc));
        }
    }
    mm->tcaches = NULL;
    mm->tcache_spare = NULL;
    mm->tcache_spares = 0;
}

size_t kmm__tcache_cached_pages(struct kmm *mm)
{
    size_t pages = 0;
    kmm_lock(mm, &mm->tcache_lock);
    for (struct kmm_tcache *tc = mm->tcaches; tc; tc = tc->next)
        for (unsigned a = 0; a < mm->nr_areas; a++)
            for (unsigned o = 0; o <= KMM_PCP_MAX_ORDER; o++)
                pages += (size_t)load_relaxed(&tc->list[a][o].count) << o;
    kmm_unlock(mm, &mm->tcache_lock);
    return pages;
}

/* Walks every cache (no other thread may be using mm): each block is CACHED
 * with the list's order, in the list's area; counts agree. Adds the blocks
 * to cached[a * (KMM_PCP_MAX_ORDER + 1) + o]. */
int kmm__tcache_check(struct kmm *mm, size_t *cached)
{
    int rc = 0;
    kmm_lock(mm, &mm->tcache_lock);
    for (struct kmm_tcache *tc = mm->tcaches; tc && rc == 0; tc = tc->next) {
        for (unsigned a = 0; a < mm->nr_areas && rc == 0; a++) {
            for (unsigned o = 0; o <= KMM_PCP_MAX_ORDER && rc == 0; o++) {
                struct tcache_list *l = &tc->list[a][o];
                if (l->count > tcache_high(o)) {
                    rc = kmm__check_fail(mm, "per-thread cache holds more than its capacity", UINT64_MAX);
                    break;
                }
                for (uint32_t i = 0; i < l->count; i++) {
                    uint64_t pfn = virt_to_pfn(mm, (void *)l->slot[i]);
                    if (pfn == UINT64_MAX || (l->slot[i] & (mm->page_size - 1))) {
                        rc = kmm__check_fail(mm, "per-thread cache holds an address outside memory", UINT64_MAX);
                        break;
                    }
                    if (meta_get(mm, pfn) != meta_make(META_CACHED, o) || area_of_pfn(mm, pfn) != a) {
                        rc = kmm__check_fail(mm, "block in a per-thread cache is not CACHED of the list's order and area", pfn);
                        break;
                    }
                }
                /* a block held twice is caught by check.c: the CACHED blocks
                 * of the metadata must number exactly the cached entries */
                cached[a * (KMM_PCP_MAX_ORDER + 1) + o] += l->count;
            }
        }
    }
    kmm_unlock(mm, &mm->tcache_lock);
    return rc;
}
