/* lifecycle.c - secret memory's checker, fork handlers and destruction. */
#include "secret_internal.h"

/* ---- kmm__secret_check ---- */

/* Records and counters, under the lock. */
static int check_records(struct kmm *mm, struct kmm_secret *s)
{
    int rc = kmm__secret_table_check(mm, s);
    if (rc)
        return rc;
    size_t ps = mm->page_size, bytes = 0, pages = 0, memfd = 0;
    unsigned top_order = secret_run_order_max(mm);
    for (struct secret *r = s->oldest; r; r = r->next) {
        if (r->addr & (ps - 1) || !r->addr)
            return kmm__check_fail(mm, "secret: a record's address is not page aligned", UINT64_MAX);
        if (r->size == 0 || r->pages != r->size / ps + (r->size % ps != 0))
            return kmm__check_fail(mm, "secret: a record's pages are not its size rounded up", UINT64_MAX);
        if (r->backing == KMM_SECRET_MEMFD) {
            if (r->nr_runs)
                return kmm__check_fail(mm, "secret: a memfd_secret record with frames", UINT64_MAX);
            memfd++;
        } else if (r->backing == KMM_SECRET_UNMAPPED) {
            size_t sum = 0;
            for (unsigned i = 0; i < r->nr_runs; i++) {
                if (r->run[i].order > top_order || r->run[i].dirty)
                    return kmm__check_fail(mm, "secret: a run larger than the cache's block, or marked not zero",
                                           r->run[i].phys >> mm->page_shift);
                sum += (size_t)1 << r->run[i].order;
            }
            if (sum != r->pages)
                return kmm__check_fail(mm, "secret: a record's runs do not add up to its pages", UINT64_MAX);
        } else {
            return kmm__check_fail(mm, "secret: a record with an unknown backing", UINT64_MAX);
        }
        bytes += r->size;
        pages += r->pages;
    }
    if (bytes != s->bytes || pages != s->pages || s->locked_bytes != pages * ps || memfd != s->memfd_allocations)
        return kmm__check_fail(mm, "secret: stats (bytes, pages, locked bytes, memfd allocations) differ from the records",
                               UINT64_MAX);
    if (!s->forked && s->allocs - s->frees != s->count)
        return kmm__check_fail(mm, "secret: live records are not allocations minus frees", UINT64_MAX);
    size_t inherited = 0;
    for (struct secret *r = s->inherited; r && inherited <= s->inherited_count; r = r->next)
        inherited++;
    if (inherited != s->inherited_count)
        return kmm__check_fail(mm, "secret: the count of records inherited by a fork child", UINT64_MAX);
    size_t pending = 0;
    for (struct secret *r = s->pending; r && pending <= s->pending_count; r = r->next) {
        if ((r->prev ? r->prev->next : s->pending) != r)
            return kmm__check_fail(mm, "secret: the pending list is broken", UINT64_MAX);
        pending++;
    }
    if (pending != s->pending_count)
        return kmm__check_fail(mm, "secret: the count of pending records", UINT64_MAX);
    unsigned backing = load_relaxed(&s->backing);
    if (backing != KMM_SECRET_UNMAPPED && backing != KMM_SECRET_MEMFD)
        return kmm__check_fail(mm, "secret: an unknown backing chosen", UINT64_MAX);
    return 0;
}

/* Each run is a live OWNER_SECRET allocation of the cache of its order.
 * The cache's lock may not be taken under secret_lock (internal.h), so the
 * runs are copied a batch at a time and asked about with the lock dropped;
 * a run that looks wrong counts only if its record (by address and
 * allocation number) is still live after. */
#define CHECK_BATCH 32
struct run_ref {
    uint64_t seq;
    uintptr_t addr;
    kmm_phys_t phys;
    unsigned order;
};

static bool still_live(struct kmm *mm, struct kmm_secret *s, const struct run_ref *ref)
{
    kmm_lock(mm, &mm->secret_lock);
    struct secret *r = kmm__secret_find(mm, s, ref->addr);
    bool live = r && r->seq == ref->seq;
    kmm_unlock(mm, &mm->secret_lock);
    return live;
}

static int check_frames(struct kmm *mm, struct kmm_secret *s)
{
    uint64_t next_seq = 0;   /* resume at run next_run of record next_seq, then newer records */
    unsigned next_run = 0;
    for (;;) {
        struct run_ref batch[CHECK_BATCH];
        size_t n = 0;
        kmm_lock(mm, &mm->secret_lock);
        for (struct secret *r = s->oldest; r && n < CHECK_BATCH; r = r->next) {
            if (r->seq < next_seq)
                continue;
            unsigned i = r->seq == next_seq ? next_run : 0;
            for (; i < r->nr_runs && n < CHECK_BATCH; i++)
                batch[n++] = (struct run_ref){ r->seq, r->addr, r->run[i].phys, r->run[i].order };
            next_seq = r->seq;
            next_run = i;
            if (i == r->nr_runs) {
                next_seq = r->seq + 1;
                next_run = 0;
            }
        }
        kmm_unlock(mm, &mm->secret_lock);
        for (size_t i = 0; i < n; i++) {
            size_t got = kmm__unmapped_size(mm, OWNER_SECRET, batch[i].phys);
            if (got != (size_t)1 << batch[i].order && still_live(mm, s, &batch[i]))
                return kmm__check_fail(mm, "secret: a run is no live allocation of the unmapped cache owned by "
                                           "secret memory, of its order",
                                       batch[i].phys >> mm->page_shift);
        }
        if (n < CHECK_BATCH)
            return 0;
    }
}

int kmm__secret_check(struct kmm *mm)
{
    struct kmm_secret *s = __atomic_load_n(&mm->secret, __ATOMIC_ACQUIRE);
    if (!s)
        return 0;
    kmm_lock(mm, &mm->secret_lock);
    int rc = check_records(mm, s);
    kmm_unlock(mm, &mm->secret_lock);
    return rc ? rc : check_frames(mm, s);
}

/* ---- fork ---- */

void kmm__secret_fork_lock(struct kmm *mm, bool lock)
{
    if (lock)
        kmm_lock(mm, &mm->secret_lock);
    else
        kmm_unlock(mm, &mm->secret_lock);
}

/* Zeroes the child's copy of r's frames and gives back r's reservation,
 * as far as r shows them (see Fork in secret_internal.h). */
static void drop_in_child(struct kmm *mm, struct kmm_secret *s, struct secret *r)
{
    const struct kmm_platform *pf = mm->pf;
    size_t ps = mm->page_size;
    for (unsigned i = 0; i < r->nr_runs; i++)
        if (pf->frames_zero(mm->ctx, r->run[i].phys, (uint64_t)ps << r->run[i].order) != 0)
            r->run[i].dirty = true;
    if (r->addr) {
        pf->vm_unreserve(mm->ctx, (void *)(r->addr - ps), (r->pages + 2) * ps);
        secret_remember_gone(s, r->addr, SECRET_GONE_FORK);
        r->addr = 0;
    }
}

/* In the child, first thing (only this thread exists; the locks are free):
 * the secrets' mappings are not here (KMM_MAP_SECRET), the copy of their
 * frames is. It is zeroed (a hole punched when hosted: no page touched),
 * the inherited reservations are given back, and the records - live ones
 * and those another thread of the parent was making or undoing - go to the
 * inherited list. Only platform calls, no allocation and no free: the
 * frames go back to the cache at the child's next call of this layer
 * (kmm__secret_return_inherited), since a free to the cache may take the
 * page allocator's per-thread paths before kmm__tcache_fork_child has run.
 * A frame the platform could not zero is marked dirty: the cache zeroes it
 * before it hands it out. These platform calls are not fault sites: an
 * injected failure here would only be a leak in the child. */
void kmm__secret_fork_child(struct kmm *mm)
{
    struct kmm_secret *s = mm->secret;
    if (!s)
        return;
    size_t dropped = 0;
    struct secret *r, *next;
    for (r = s->oldest; r; r = next) {
        next = r->next;
        drop_in_child(mm, s, r);
        r->next = s->inherited;
        s->inherited = r;
        dropped++;
    }
    for (r = s->pending; r; r = next) {
        next = r->next;
        drop_in_child(mm, s, r);
        r->next = s->inherited;
        s->inherited = r;
        dropped++;
    }
    if (!dropped)
        return;
    store_relaxed(&s->inherited_count, s->inherited_count + dropped);
    for (size_t b = 0; b < s->nbuckets; b++)
        s->bucket[b] = NULL;
    s->oldest = s->newest = s->pending = NULL;
    s->count = s->pending_count = 0;
    s->bytes = s->pages = s->locked_bytes = s->memfd_allocations = 0;
    s->forked = true;
}

/* ---- kmm_destroy ---- */

void kmm__secret_destroy(struct kmm *mm)
{
    struct kmm_secret *s = mm->secret;
    if (!s)
        return;
    kmm__secret_return_inherited(mm);
    while (s->oldest) {
        struct secret *r = s->oldest;
        kmm__secret_remove(mm, s, r);
        kmm__secret_discard(mm, r, "kmm_destroy");
    }
    kmm__meta_obj_free(mm, s->bucket, s->nbuckets * sizeof(*s->bucket));
    mm->secret = NULL;
    kmm__meta_obj_free(mm, s, sizeof(*s));
}
