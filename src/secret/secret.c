/* secret.c - secret memory: kmm_secret_alloc / kmm_secret_free, the backings
 * and the stats.
 *
 * An allocation takes, with no lock held: its record (metadata memory), a
 * reservation of its pages and two guards, then either frames from the
 * unmapped cache mapped run by run with KMM_MAP_SECRET (UNMAPPED) or one
 * memfd_secret mapping (MEMFD); then it enters the table under
 * mm->secret_lock. A failure at any step undoes the earlier ones in
 * reverse and changes nothing. A free takes the record out of the table
 * under the lock, then wipes, unmaps, unreserves and gives the frames back
 * with the lock dropped. See secret_internal.h for the layout. */
#include "secret_internal.h"

static bool vm_hooks(const struct kmm_platform *pf)
{
    return pf->vm_reserve && pf->vm_unreserve && pf->vm_map && pf->vm_unmap;
}

/* The layer's state, made on first use. NULL when metadata memory is out. */
static struct kmm_secret *secret_layer(struct kmm *mm)
{
    struct kmm_secret *s = __atomic_load_n(&mm->secret, __ATOMIC_ACQUIRE);
    if (KMM_LIKELY(s != NULL))
        return s;
    struct kmm_secret *fresh = kmm__meta_obj_alloc(mm, sizeof(*fresh));
    if (!fresh)
        return NULL;
    fresh->backing = KMM_SECRET_UNMAPPED;
    fresh->next_seq = 1;
    kmm_lock(mm, &mm->secret_lock);
    s = mm->secret;
    if (!s) {
        __atomic_store_n(&mm->secret, fresh, __ATOMIC_RELEASE);
        s = fresh;
        fresh = NULL;
    }
    kmm_unlock(mm, &mm->secret_lock);
    kmm__meta_obj_free(mm, fresh, sizeof(*fresh));
    return s;
}

/* A child of fork gives its parent's frames back at its first call here. */
static void catch_up_after_fork(struct kmm *mm, struct kmm_secret *s)
{
    if (KMM_UNLIKELY(load_relaxed(&s->inherited_count) != 0))
        kmm__secret_return_inherited(mm);
}

/* ---- runs: the binary decomposition of the page count ---- */

static size_t runs_for(const struct kmm *mm, size_t pages)
{
    unsigned top = secret_run_order_max(mm);
    return (pages >> top) + (size_t)__builtin_popcountll(pages & (((size_t)1 << top) - 1));
}
static size_t record_bytes(const struct kmm *mm, const struct secret *r)
{
    return secret_record_size(r->backing == KMM_SECRET_MEMFD ? 0 : (unsigned)runs_for(mm, r->pages));
}

/* ---- zeroing that the compiler keeps ---- */

/* The stores are dead to the compiler (the memory is unmapped next): the
 * asm, which may read all memory through p, keeps them. */
static void secret_wipe(void *p, size_t len)
{
    __builtin_memset(p, 0, len);
    __asm__ __volatile__("" : : "r"(p) : "memory");
}

/* ---- making and undoing a secret's memory (no lock held) ---- */

/* secret_map is a KMM_FAULT_DIRECT site (kmm/core.h). */
/* Unmapping must work: a mapping left behind keeps the secret readable. */
static void unmap_or_die(struct kmm *mm, void *va, size_t len, const char *fn)
{
    if (mm->pf->vm_unmap(mm->ctx, va, len) != 0)
        kmm__fatal_page(mm, fn, "the platform could not unmap secret memory at", va);
}

/* Last run first, each uncounted before it is given back (see Fork in
 * secret_internal.h). */
static void free_runs(struct kmm *mm, struct secret *r, const char *fn)
{
    while (r->nr_runs) {
        struct secret_run run = r->run[--r->nr_runs];
        __asm__ __volatile__("" : : : "memory");
        kmm__unmapped_free_as(mm, OWNER_SECRET, run.phys, !run.dirty, fn);
    }
}

/* The pending list (secret_lock taken here). */
static void pending_add(struct kmm *mm, struct kmm_secret *s, struct secret *r)
{
    kmm_lock(mm, &mm->secret_lock);
    r->prev = NULL;
    r->next = s->pending;
    if (s->pending)
        s->pending->prev = r;
    s->pending = r;
    s->pending_count++;
    kmm_unlock(mm, &mm->secret_lock);
}
static void pending_unlink(struct kmm_secret *s, struct secret *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        s->pending = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    s->pending_count--;
}
static void pending_del(struct kmm *mm, struct kmm_secret *s, struct secret *r)
{
    kmm_lock(mm, &mm->secret_lock);
    pending_unlink(s, r);
    kmm_unlock(mm, &mm->secret_lock);
}

/* Takes r's runs from the cache and maps them; on failure leaves r with
 * the runs it took and *mapped the bytes mapped from r->addr, for undo. */
static int fill_unmapped(struct kmm *mm, struct secret *r, size_t *mapped, const char *fn)
{
    unsigned top = secret_run_order_max(mm);
    size_t left = r->pages;
    while (left) {
        unsigned order = left >> top ? top : floor_log2(left);
        kmm_phys_t phys = kmm__unmapped_alloc_as(mm, OWNER_SECRET, order, KMM_AREA_ANY, fn);
        if (phys == KMM_PHYS_NONE)
            return -KMM_ENOMEM;
        r->run[r->nr_runs] = (struct secret_run){ .phys = phys, .order = order };
        __asm__ __volatile__("" : : : "memory");   /* the run before its count (see Fork) */
        r->nr_runs++;
        size_t len = mm->page_size << order;
        int rc = pf_vm_map(mm, (char *)r->addr + *mapped, phys, len, KMM_PROT_READ | KMM_PROT_WRITE | KMM_MAP_SECRET);
        if (rc)
            return rc;
        *mapped += len;
        left -= (size_t)1 << order;
    }
    return 0;
}

/* Undoes a secret whose memory is made up to mapped bytes (all of it for a
 * live one): wipe, unmap, unreserve, frames back. */
static void secret_unmake(struct kmm *mm, struct secret *r, size_t mapped, const char *fn)
{
    size_t ps = mm->page_size;
    uintptr_t addr = r->addr;
    if (mapped) {
        secret_wipe((void *)addr, mapped);
        unmap_or_die(mm, (void *)addr, mapped, fn);
    }
    store_relaxed(&r->addr, 0);   /* before the range may become someone else's (see Fork) */
    __asm__ __volatile__("" : : : "memory");
    mm->pf->vm_unreserve(mm->ctx, (void *)(addr - ps), (r->pages + 2) * ps);
    free_runs(mm, r, fn);
}

void kmm__secret_discard(struct kmm *mm, struct secret *r, const char *fn)
{
    size_t bytes = record_bytes(mm, r);
    secret_unmake(mm, r, r->pages << mm->page_shift, fn);
    kmm__meta_obj_free(mm, r, bytes);
}

void kmm__secret_return_inherited(struct kmm *mm)
{
    struct kmm_secret *s = mm->secret;
    kmm_lock(mm, &mm->secret_lock);
    struct secret *list = s->inherited;
    s->inherited = NULL;
    store_relaxed(&s->inherited_count, 0);
    kmm_unlock(mm, &mm->secret_lock);
    while (list) {
        struct secret *r = list;
        list = r->next;
        size_t bytes = record_bytes(mm, r);
        free_runs(mm, r, "kmm_secret (a fork child's return of its parent's frames)");
        kmm__meta_obj_free(mm, r, bytes);
    }
}

/* Refused for RLIMIT_MEMLOCK: one line with what a person needs to act. */
static void refuse_memlock(struct kmm *mm, struct kmm_secret *s, size_t bytes, const char *fn)
{
    kmm_lock(mm, &mm->secret_lock);
    s->refused_memlock++;
    size_t locked = s->locked_bytes;
    kmm_unlock(mm, &mm->secret_lock);
    struct kmm_msg m = { .len = 0 };
    kmm__msg_str(&m, "kmm: ");
    kmm__msg_str(&m, fn);
    kmm__msg_str(&m, ": cannot lock ");
    kmm__msg_dec(&m, bytes);
    kmm__msg_str(&m, " bytes of secret memory: RLIMIT_MEMLOCK reached (this memory system has ");
    kmm__msg_dec(&m, locked);
    kmm__msg_str(&m, " bytes locked now); raise RLIMIT_MEMLOCK (ulimit -l) or free secrets");
    kmm__report(mm, &m);
    kmm__refuse(mm, KMM_EAGAIN, fn, NULL);
}

/* Enters r into the table, growing it first if needed (the buckets are
 * allocated with the lock dropped). false when metadata memory is out. */
static bool secret_publish(struct kmm *mm, struct kmm_secret *s, struct secret *r)
{
    struct secret **spare = NULL;
    size_t spare_n = 0;
    kmm_lock(mm, &mm->secret_lock);
    for (;;) {
        size_t want = secret_table_want(s);
        if (!want)
            break;
        if (spare_n >= want) {
            spare = kmm__secret_rehash(mm, s, spare, &spare_n);   /* spare: now the old table */
            continue;
        }
        kmm_unlock(mm, &mm->secret_lock);
        kmm__meta_obj_free(mm, spare, spare_n * sizeof(*spare));
        spare_n = want;
        spare = kmm__meta_obj_alloc(mm, want * sizeof(*spare));
        if (!spare)
            return false;
        kmm_lock(mm, &mm->secret_lock);
    }
    pending_unlink(s, r);
    kmm__secret_insert(mm, s, r);
    s->allocs++;
    s->bytes += r->size;
    s->pages += r->pages;
    s->locked_bytes += r->pages << mm->page_shift;
    s->memfd_allocations += r->backing == KMM_SECRET_MEMFD;
    kmm_unlock(mm, &mm->secret_lock);
    kmm__meta_obj_free(mm, spare, spare_n * sizeof(*spare));
    return true;
}

void *kmm_secret_alloc(struct kmm *mm, size_t size)
{
    static const char fn[] = "kmm_secret_alloc";
    mm_live(mm, fn);
    if (size == 0) {
        kmm__refuse(mm, KMM_EINVAL, fn, "size 0");
        return NULL;
    }
    const struct kmm_platform *pf = mm->pf;
    if (!vm_hooks(pf)) {
        kmm__refuse(mm, KMM_ENOSYS, fn, "the platform has no virtual memory hooks (vm_reserve, vm_map...)");
        return NULL;
    }
    struct kmm_secret *s = secret_layer(mm);
    if (!s) {
        kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
        return NULL;
    }
    catch_up_after_fork(mm, s);
    unsigned backing = load_relaxed(&s->backing);
    if (backing == KMM_SECRET_UNMAPPED && !kmm__unmapped_supported(mm)) {
        kmm__refuse(mm, KMM_ENOSYS, fn, "the platform cannot take pages out of its direct map");
        return NULL;
    }
    /* more pages than memory (or an overflow): too large to serve, silently */
    size_t ps = mm->page_size;
    size_t pages = size / ps + (size % ps != 0);
    if (pages > mm->end_pfn - mm->base_pfn) {
        kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
        return NULL;
    }
    size_t nr_runs = backing == KMM_SECRET_MEMFD ? 0 : runs_for(mm, pages);
    struct secret *r = kmm__meta_obj_alloc(mm, secret_record_size((unsigned)nr_runs));
    if (!r) {
        kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
        return NULL;
    }
    r->size = size;
    r->pages = pages;
    r->backing = backing;
    pending_add(mm, s, r);
    char *base = pf->vm_reserve(mm->ctx, (pages + 2) * ps, ps);
    if (!base) {
        pending_del(mm, s, r);
        kmm__meta_obj_free(mm, r, secret_record_size((unsigned)nr_runs));
        kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
        return NULL;
    }
    void *addr = base + ps;
    store_relaxed(&r->addr, (uintptr_t)addr);
    size_t mapped = 0;
    int rc;
    if (backing == KMM_SECRET_MEMFD) {
        rc = pf_secret_map(mm, addr, pages * ps);
        if (rc == 0)
            mapped = pages * ps;   /* for the undo's wipe and unmap */
    } else {
        rc = fill_unmapped(mm, r, &mapped, fn);
    }
    if (rc == 0 && secret_publish(mm, s, r))
        return addr;   /* not r->addr: r is the table's now */
    secret_unmake(mm, r, mapped, fn);
    pending_del(mm, s, r);
    kmm__meta_obj_free(mm, r, secret_record_size((unsigned)nr_runs));
    if (rc == -KMM_EAGAIN)
        refuse_memlock(mm, s, pages * ps, fn);
    else if (rc == -KMM_ENOSYS)
        kmm__refuse(mm, KMM_ENOSYS, fn, "memfd_secret is not available (a kernel without secretmem)");
    else
        kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
    return NULL;
}

/* ---- kmm_secret_free: the record out under the lock, the rest after ---- */

/* Why p is no live secret's start, as precisely as can be told (under the
 * lock; s may be NULL). Builds "kmm: kmm_secret_free: <p>: <reason>". */
static void explain_not_live(struct kmm *mm, struct kmm_secret *s, uintptr_t p, struct kmm_msg *m)
{
    kmm__msg_str(m, "kmm: kmm_secret_free: ");
    kmm__msg_hex(m, p);
    kmm__msg_str(m, ": ");
    size_t ps = mm->page_size;
    for (struct secret *r = s ? s->oldest : NULL; r; r = r->next) {
        uintptr_t end = r->addr + r->pages * ps;
        if (p >= r->addr - ps && p < end + ps) {
            kmm__msg_str(m, p >= r->addr && p < end ? "not a live secret allocation: an interior pointer of the one at "
                                                    : "not a live secret allocation: in a guard page of the one at ");
            kmm__msg_hex(m, r->addr);
            return;
        }
    }
    for (unsigned i = 0; s && i < SECRET_GONE_RING; i++)
        if (s->gone_why[i] && s->gone_addr[i] == p) {
            kmm__msg_str(m, s->gone_why[i] == SECRET_GONE_FREED
                                ? "not a live secret allocation (freed already: a double free)"
                                : "not a live secret allocation (secrets are not inherited by a child of fork)");
            return;
        }
    uint64_t pfn = virt_to_pfn(mm, (const void *)p);
    if (pfn != UINT64_MAX) {
        kmm__msg_str(m, "not a live secret allocation: an address in kmm's direct map");
        enum kmm_owner owner = pages_owner(mm, pfn);
        if (owner != NR_OWNERS) {
            kmm__msg_str(m, " (memory of ");
            kmm__msg_str(m, kmm__owner_name(owner));
            kmm__msg_str(m, ")");
        } else {
            kmm__msg_str(m, " (kmm_malloc, page or unmapped-cache memory)");
        }
        return;
    }
    if (kmm__vm_owns(mm, (const void *)p)) {
        kmm__msg_str(m, "not a live secret allocation: a kmm_vmalloc address");
        return;
    }
    kmm__msg_str(m, s && s->forked ? "not a live secret allocation (secrets are not inherited by a child of fork; "
                                     "or never allocated, or freed already)"
                                   : "not a live secret allocation (never allocated, freed already, or another "
                                     "allocator's, such as execmem)");
}

void kmm_secret_free(struct kmm *mm, void *p)
{
    if (!p)
        return;
    mm_live(mm, "kmm_secret_free");
    struct kmm_secret *s = __atomic_load_n(&mm->secret, __ATOMIC_ACQUIRE);
    struct secret *r = NULL;
    struct kmm_msg m = { .len = 0 };
    if (s) {
        kmm_lock(mm, &mm->secret_lock);
        r = kmm__secret_find(mm, s, (uintptr_t)p);
        if (r) {
            kmm__secret_remove(mm, s, r);
            r->next = s->pending;   /* pending until undone (see Fork) */
            if (s->pending)
                s->pending->prev = r;
            s->pending = r;
            s->pending_count++;
            s->frees++;
            s->bytes -= r->size;
            s->pages -= r->pages;
            s->locked_bytes -= r->pages << mm->page_shift;
            s->memfd_allocations -= r->backing == KMM_SECRET_MEMFD;
            secret_remember_gone(s, r->addr, SECRET_GONE_FREED);
        } else {
            explain_not_live(mm, s, (uintptr_t)p, &m);
        }
        kmm_unlock(mm, &mm->secret_lock);
    } else {
        explain_not_live(mm, NULL, (uintptr_t)p, &m);
    }
    if (!r)
        kmm__fatal(mm, &m);
    size_t bytes = record_bytes(mm, r);
    secret_unmake(mm, r, r->pages << mm->page_shift, "kmm_secret_free");
    pending_del(mm, s, r);
    kmm__meta_obj_free(mm, r, bytes);
    catch_up_after_fork(mm, s);
}

/* ---- backings ---- */

const char *kmm_secret_backing_name(enum kmm_secret_backing backing)
{
    switch (backing) {
    case KMM_SECRET_UNMAPPED:
        return "unmapped cache";
    case KMM_SECRET_MEMFD:
        return "memfd_secret";
    }
    return "unknown backing";
}

/* One page of memfd_secret mapped into a reservation and undone; the answer
 * is kept once the platform gave a definite one (mapped, or ENOSYS). */
static bool memfd_available(struct kmm *mm, struct kmm_secret *s)
{
    int known = __atomic_load_n(&s->avail_memfd, __ATOMIC_RELAXED);
    if (known)
        return known == 1;
    const struct kmm_platform *pf = mm->pf;
    if (!pf->secret_map || !vm_hooks(pf)) {
        __atomic_store_n(&s->avail_memfd, 2, __ATOMIC_RELAXED);
        return false;
    }
    void *va = pf->vm_reserve(mm->ctx, mm->page_size, mm->page_size);
    if (!va)
        return false;
    int rc = pf->secret_map(mm->ctx, va, mm->page_size);
    if (rc == 0)
        unmap_or_die(mm, va, mm->page_size, "kmm_secret_backing_available");
    pf->vm_unreserve(mm->ctx, va, mm->page_size);
    if (rc == 0 || rc == -KMM_ENOSYS)
        __atomic_store_n(&s->avail_memfd, rc == 0 ? 1 : 2, __ATOMIC_RELAXED);
    return rc == 0;
}

bool kmm_secret_backing_available(struct kmm *mm, enum kmm_secret_backing backing)
{
    mm_live(mm, "kmm_secret_backing_available");
    if (!vm_hooks(mm->pf))
        return false;
    if (backing == KMM_SECRET_UNMAPPED)
        return kmm__unmapped_supported(mm);
    if (backing != KMM_SECRET_MEMFD)
        return false;
    struct kmm_secret *s = secret_layer(mm);
    return s && memfd_available(mm, s);
}

int kmm_secret_set_backing(struct kmm *mm, enum kmm_secret_backing backing)
{
    static const char fn[] = "kmm_secret_set_backing";
    mm_live(mm, fn);
    if (backing != KMM_SECRET_UNMAPPED && backing != KMM_SECRET_MEMFD) {
        kmm__refuse(mm, KMM_EINVAL, fn, "unknown backing (KMM_SECRET_UNMAPPED or KMM_SECRET_MEMFD)");
        return -KMM_EINVAL;
    }
    if (!kmm_secret_backing_available(mm, backing)) {
        kmm__refuse(mm, KMM_ENOSYS, fn,
                    backing == KMM_SECRET_MEMFD
                        ? "memfd_secret is not available here (no platform hook, or a kernel without secretmem)"
                        : "the platform cannot take pages out of its direct map or map them privately");
        return -KMM_ENOSYS;
    }
    struct kmm_secret *s = secret_layer(mm);
    if (!s) {
        kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
        return -KMM_ENOMEM;
    }
    store_relaxed(&s->backing, (unsigned)backing);
    return 0;
}

enum kmm_secret_backing kmm_secret_backing(struct kmm *mm)
{
    mm_live(mm, "kmm_secret_backing");
    struct kmm_secret *s = __atomic_load_n(&mm->secret, __ATOMIC_ACQUIRE);
    return s ? (enum kmm_secret_backing)load_relaxed(&s->backing) : KMM_SECRET_UNMAPPED;
}

void kmm_secret_stats(struct kmm *mm, struct kmm_secret_stats *st)
{
    mm_live(mm, "kmm_secret_stats");
    *st = (struct kmm_secret_stats){ 0 };
    struct kmm_secret *s = __atomic_load_n(&mm->secret, __ATOMIC_ACQUIRE);
    if (!s)
        return;
    catch_up_after_fork(mm, s);
    kmm_lock(mm, &mm->secret_lock);
    st->allocations = s->count;
    st->bytes = s->bytes;
    st->pages = s->pages;
    st->locked_bytes = s->locked_bytes;
    st->memfd_allocations = s->memfd_allocations;
    st->allocs = s->allocs;
    st->frees = s->frees;
    st->refused_memlock = s->refused_memlock;
    kmm_unlock(mm, &mm->secret_lock);
}

size_t kmm__secret_runs(struct kmm *mm, const void *p, struct secret_run *runs, size_t max)
{
    struct kmm_secret *s = __atomic_load_n(&mm->secret, __ATOMIC_ACQUIRE);
    if (!s)
        return 0;
    kmm_lock(mm, &mm->secret_lock);
    struct secret *r = kmm__secret_find(mm, s, (uintptr_t)p);
    size_t n = r ? r->nr_runs : 0;
    for (size_t i = 0; i < n && i < max; i++)
        runs[i] = r->run[i];
    kmm_unlock(mm, &mm->secret_lock);
    return n;
}
