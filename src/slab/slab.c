/* slab.c - slabs of one cache: made, emptied, handed out and given back.
 *
 * A cache's slabs are on three lists by how many slots are out of them:
 * partial, full and empty. Slots are taken from partial slabs first (LIFO),
 * then from empty ones, then from a new slab, so memory concentrates in few
 * slabs and the rest can empty and go back to the page allocator. A cache
 * keeps max_empty empty slabs for reuse; kmm_drain gives them back too.
 *
 * All of it runs under the cache's lock, in batches of half a magazine: the
 * per-object work outside the lock is in magazine.c and the callers'
 * fast paths (kmalloc.c, cache.c).
 */
#include "slab_internal.h"

static inline size_t round_up(size_t v, size_t align) { return (v + align - 1) & ~(align - 1); }

/* ---- lists ---------------------------------------------------------------- */

static void list_add(struct slab_list *l, struct kmm_slab *s)
{
    s->prev = NULL;
    s->next = l->head;
    if (l->head)
        l->head->prev = s;
    l->head = s;
    l->count++;
}

static void list_del(struct slab_list *l, struct kmm_slab *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        l->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    l->count--;
}

/* ---- the cache's fields ---------------------------------------------------- */

int kmm__cache_init(struct kmm *mm, struct kmm_cache *c, const char *name, size_t size, size_t align,
                    void (*ctor)(void *), unsigned page_flags, unsigned slab_order)
{
    size_t ps = mm->page_size;
    if (size == 0 || (align & (align - 1)) || align > ps || size > (ps << 3))
        return -KMM_EINVAL;
    if (align < 8)
        align = 8;
    /* The canary is the second word of a free slot (the first when a slot has
     * only one): a caller's last store before a free is usually to the
     * start of the object, and an 8-byte load overlapping a smaller pending
     * store stalls. With a constructor it has a word of its own after the
     * object, so the constructed state survives. */
    size_t canary_offset = ctor ? round_up(size, 8) : 0;
    size_t slot = round_up(ctor ? canary_offset + 8 : (size < 8 ? 8 : size), align);
    if (!ctor && slot >= 16)
        canary_offset = 8;
    if (slot > (ps << 3))
        return -KMM_EINVAL;   /* a slab is at most 8 pages */
    c->mm = mm;
    c->object_size = size;
    c->align = align;
    c->ctor = ctor;
    c->page_flags = page_flags;
    c->canary_offset = canary_offset;
    c->slot_size = slot;
    if (slab_order == UINT32_MAX) {   /* the smallest slab of 8 slots, or of one when a slot needs 8 pages */
        slab_order = 0;
        while (slab_order < 3 && ((ps << slab_order) / c->slot_size) < 8)
            slab_order++;
        while ((ps << slab_order) < c->slot_size)
            slab_order++;   /* at most 3: slot <= 8 pages */
    }
    /* what the slot arithmetic's proof assumes (see slot_product): never
     * false for the slabs kmm chooses at the page sizes kmm_create takes */
    size_t slab_bytes = ps << slab_order;
    if (slab_order > 3 || slab_bytes > ((size_t)1 << SLAB_OFFSET_BITS) || (slab_bytes - 1) / slot >= SLAB_MAX_OBJECTS)
        return -KMM_EINVAL;
    c->slab_order = slab_order;
    /* the fallback when memory is too fragmented for slab_order: the
     * smallest block that holds one slot (a page for every slot that fits) */
    c->min_order = 0;
    while ((ps << c->min_order) < c->slot_size)
        c->min_order++;
    if (c->min_order > slab_order)
        c->min_order = slab_order;
    c->objects = (uint32_t)((ps << slab_order) / c->slot_size);
    c->words = (c->objects + 63) / 64;
    c->recip = ((uint64_t)1 << RECIP_SHIFT) / c->slot_size + 1;
    c->desc_size = round_up(held_bytes(c->objects) + sizeof(struct kmm_slab) + c->words * sizeof(uint64_t), 64);
    /* 64 KiB of objects, 16 to 128 of them: against 32 KiB (8 to 64),
     * random lifetime went from 0.86 to 1.1 of jemalloc's speed, memory
     * efficiency from 0.905 to 0.899 */
    c->mag_cap = (uint32_t)(65536 / c->slot_size);
    if (c->mag_cap < 16)
        c->mag_cap = 16;
    if (c->mag_cap > MAG_MAX)
        c->mag_cap = MAG_MAX;
    c->max_empty = slab_order >= 2 ? 1 : 2;
    size_t n = 0;
    for (; name && name[n] && n < sizeof(c->name) - 1; n++)
        c->name[n] = name[n];
    c->name[n] = 0;
    mm->pf->lock_init(&c->lock);
    return 0;
}

void kmm__cache_fini(struct kmm_cache *c)
{
    struct kmm *mm = c->mm;
    for (struct desc_chunk *ch = c->desc_chunks, *next; ch; ch = next) {
        next = ch->next;
        kmm__meta_free(mm, ch, ch->len);
    }
    c->desc_chunks = NULL;
    mm->pf->lock_fini(&c->lock);
}

/* ---- descriptors (cache lock held) -----------------------------------------
 * A descriptor is a block of desc_size bytes (whole cache lines): the held
 * bytes (held_bytes(objects)), then the struct kmm_slab, then out[]. */

static struct kmm_slab *desc_alloc(struct kmm_cache *c)
{
    void *d = c->desc_free;
    if (d) {
        c->desc_free = *(void **)d;
    } else if (c->desc_left >= c->desc_size) {
        d = c->desc_next;
        c->desc_next += c->desc_size;
        c->desc_left -= c->desc_size;
    } else {
        return NULL;
    }
    __builtin_memset(d, 0, c->desc_size);
    return (struct kmm_slab *)(void *)((char *)d + held_bytes(c->objects));
}

static void desc_free(struct kmm_cache *c, struct kmm_slab *s)
{
    void *d = (char *)s - held_bytes(c->objects);
    *(void **)d = c->desc_free;
    c->desc_free = d;
}

/* A new chunk of descriptors, not yet the cache's; called without the lock
 * (meta_alloc may be a system call). Descriptors are whole cache lines, and
 * each cache's chunks start them at a colour of their own (a line per cache
 * id, over two KiB): chunks are page aligned, and the first descriptors of
 * every cache on one line offset would all compete for one set of the L1
 * cache in a mixed-size workload (Bonwick's slab colouring, for metadata). */
static struct desc_chunk *desc_chunk_new(struct kmm_cache *c)
{
    size_t len = round_up(desc_colour(c) + 16 * c->desc_size, 4096);
    struct desc_chunk *ch = kmm__meta_alloc(c->mm, len);
    if (ch)
        ch->len = len;
    return ch;
}

/* Makes ch the chunk descriptors are cut from (cache lock held). Only when
 * desc_alloc failed: the rest of the previous chunk is less than one
 * descriptor, so nothing usable is dropped. */
static void desc_chunk_install(struct kmm_cache *c, struct desc_chunk *ch)
{
    size_t colour = desc_colour(c);
    ch->next = c->desc_chunks;
    c->desc_chunks = ch;
    c->desc_next = (char *)ch + colour;
    c->desc_left = ch->len - colour;
}

/* A descriptor for a new slab; NULL when no metadata memory is left. Called
 * without the lock. The lock is dropped to grow the pool, so other threads
 * may empty a chunk this thread made, or grow the pool themselves,
 * meanwhile: a chunk is installed only under the lock and only when
 * desc_alloc still fails there, and one not needed after all goes back. */
static struct kmm_slab *desc_get_locked(struct kmm_cache *c)
{
    struct kmm *mm = c->mm;
    struct desc_chunk *spare = NULL;
    struct kmm_slab *s;
    bool failed = false;
    kmm_lock(mm, &c->lock);
    while ((s = desc_alloc(c)) == NULL && !failed) {
        if (spare) {
            desc_chunk_install(c, spare);   /* desc_alloc cannot fail on it: 16 descriptors */
            spare = NULL;
            continue;
        }
        kmm_unlock(mm, &c->lock);
        spare = desc_chunk_new(c);
        failed = spare == NULL;   /* one more look: another thread may have grown the pool */
        kmm_lock(mm, &c->lock);
    }
    if (spare) {   /* not needed after all: freed outside the lock */
        kmm_unlock(mm, &c->lock);
        kmm__meta_free(mm, spare, spare->len);
        kmm_lock(mm, &c->lock);
    }
    return s;
}

/* ---- making and freeing slabs ----------------------------------------------- */

void kmm__slab_map_set(struct kmm *mm, uintptr_t base, unsigned order, struct kmm_slab *s)
{
    uint64_t idx = virt_to_index(mm, (void *)base), n = (uint64_t)1 << order;
    /* the copied fields first when a slab comes, last when it goes: a
     * page's map entry never names a slab with fields not its own */
    for (uint64_t i = 0; s && i < n; i++) {
        struct slab_map_entry *e = &mm->slab_map[idx + i];
        store_relaxed(&e->base, s->base);
        store_relaxed(&e->recip, s->recip);
        __atomic_store_n(&e->mag_offset, slab_map_mag_offset(s), __ATOMIC_RELEASE);
    }
    for (uint64_t i = 0; i < n; i++)
        __atomic_store_n(&mm->slab_map[idx + i].slab, s, __ATOMIC_RELEASE);
    for (uint64_t i = 0; !s && i < n; i++) {
        struct slab_map_entry *e = &mm->slab_map[idx + i];
        store_relaxed(&e->base, 0);
        store_relaxed(&e->recip, 0);
        store_relaxed(&e->mag_offset, 0);
    }
}

/* A new slab, every slot free (constructed, canary written, poisoned), on
 * the cache's making list (the caller moves it to a list of slabs under the
 * lock). Called without the lock. Of slab_order when such a block can be
 * had, else of min_order (SLUB's fallback): on memory fragmented to single
 * pages, a cache of objects below a page still gets slabs while a free page
 * is left. */
static struct kmm_slab *new_slab(struct kmm_cache *c, unsigned flags)
{
    struct kmm *mm = c->mm;
    if (kmm__fault(mm, KMM_FAULT_PAGES))
        return NULL;
    unsigned areas = c->page_flags ? c->page_flags : flags & KMM_AREA_MASK;
    unsigned order = c->slab_order;
    void *pages = kmm_alloc_pages(mm, order, areas);
    if (!pages && c->min_order < order) {
        order = c->min_order;
        pages = kmm_alloc_pages(mm, order, areas);
    }
    if (!pages)
        return NULL;
    struct kmm_slab *s = desc_get_locked(c);
    if (!s) {
        kmm_unlock(mm, &c->lock);
        kmm__free_pages_as(mm, OWNER_PAGES, "kmm_malloc", pages, false);
        return NULL;
    }
    /* owned, and on the making list, in one step under the lock: from here
     * on a fork's child finds the slab whichever step a thread it leaves
     * behind was at (before, the pages are a plain allocation the gone
     * thread held: the child leaks them, as it does all a gone thread held) */
    kmm__pages_own(mm, pages, OWNER_SLAB);
    s->cache = c;
    s->base = (uintptr_t)pages;
    s->order = order;
    list_add(&c->making, s);
    kmm_unlock(mm, &c->lock);
    s->recip = c->recip;
    s->objects = (uint32_t)((mm->page_size << order) / c->slot_size);
    s->canary_offset = (uint32_t)c->canary_offset;
    s->mag_offset = (uint32_t)(offsetof(struct kmm_tcache, mag) + c->id * sizeof(struct kmm_magazine));
    /* bits past the last slot are out for good, so searches need no bound */
    for (uint32_t w = s->objects / 64; w < c->words; w++)
        s->out[w] = w * 64 >= s->objects ? ~(uint64_t)0 : ~(uint64_t)0 << (s->objects % 64);
    for (uint32_t i = 0; i < s->objects; i++) {
        uintptr_t p = s->base + i * c->slot_size;
        if (c->ctor)
            c->ctor((void *)p);
        if (mm->slab_poison)
            *(uintptr_t *)(p + c->canary_offset) = slot_canary(c, p);
        obj_poison(c, p);
    }
    kmm__slab_map_set(mm, s->base, order, s);
    return s;
}

/* In the child of a fork: the slabs that threads not in the child were
 * making are given back (their objects were never handed out), as the
 * kmm_malloc blocks of pages they were taking or giving back. */
void kmm__slab_fork_child(struct kmm *mm)
{
    struct kmm_slab_root *r = __atomic_load_n(&mm->slabs, __ATOMIC_ACQUIRE);
    if (!r)
        return;
    for (struct kmm_cache *c = r->caches; c; c = c->next) {
        while (c->making.head) {
            struct kmm_slab *s = c->making.head;
            list_del(&c->making, s);
            kmm__slab_map_set(mm, s->base, s->order, NULL);
            kmm__free_pages_as(mm, OWNER_SLAB, "fork", (void *)s->base, false);
            desc_free(c, s);
        }
    }
    /* a kmm_malloc block of pages is owned, then marked; unmarked, then
     * freed: one owned without its mark was in motion. A slab block whose
     * pages map to no slab (the making list is empty now) was being given
     * back: retire_slab forgets the slab under the cache's lock, the pages
     * go after it. */
    for (uint64_t pfn = mm->base_pfn; pfn < mm->end_pfn;) {
        kmm_meta_t m = meta_get(mm, pfn);
        uint64_t n = (uint64_t)1 << meta_order(m);
        if (meta_kind(m) == META_OWNED) {
            enum kmm_owner owner = pages_owner(mm, pfn);
            struct kmm_slab *s = mm->slab_map[pfn - mm->base_pfn].slab;
            if ((owner == OWNER_KMALLOC && s != LARGE_BLOCK) || (owner == OWNER_SLAB && !s))
                kmm__free_pages_as(mm, owner, "fork", pfn_to_virt(mm, pfn), false);
        }
        pfn += m ? n : 1;
    }
}

/* In the child of a fork, once every magazine and depot is empty: a slot
 * out of its slab must be held by a caller. One that is not was between a
 * gone thread's hands and the cache's lock (a cache without magazines
 * takes and puts slots one at a time, outside the magazines): back into
 * its slab. */
void kmm__slab_fork_sweep(struct kmm *mm)
{
    struct kmm_slab_root *r = __atomic_load_n(&mm->slabs, __ATOMIC_ACQUIRE);
    if (!r)
        return;
    for (struct kmm_cache *c = r->caches; c; c = c->next) {
        struct slab_list *lists[2] = { &c->partial, &c->full };
        for (unsigned l = 0; l < 2; l++) {
            struct kmm_slab *s = lists[l]->head;
            while (s) {
                struct kmm_slab *next = s->next;   /* kmm__cache_put may move s */
                for (uint32_t i = 0; i < s->objects; i++) {
                    if (!((s->out[i / 64] >> (i % 64)) & 1) || load_relaxed(slab_held(s, i)))
                        continue;
                    uintptr_t p = s->base + (uintptr_t)i * c->slot_size;
                    struct free_slot f = { p, slab_held(s, i) };
                    if (mm->slab_poison)
                        *(uintptr_t *)(p + c->canary_offset) = slot_canary(c, p);
                    obj_poison(c, p);
                    kmm__cache_put(c, &f, 1, "fork");
                }
                s = next;
            }
        }
    }
}

/* ---- taking slots out ----------------------------------------------------------- */

static uint32_t take_from(struct kmm_cache *c, struct kmm_slab *s, struct free_slot *dst, uint32_t want)
{
    uint32_t got = 0;
    for (uint32_t w = s->scan; w < c->words && got < want; w++) {
        uint64_t avail = ~s->out[w];
        while (avail && got < want) {
            unsigned b = (unsigned)__builtin_ctzll(avail);
            avail &= avail - 1;
            s->out[w] |= (uint64_t)1 << b;
            size_t idx = (size_t)w * 64 + b;
            store_relaxed(&dst[got].addr, s->base + idx * c->slot_size);
            store_relaxed(&dst[got].held, slab_held(s, idx));
            got++;
        }
        if (avail == 0)
            s->scan = w + 1;
    }
    s->inuse += got;
    return got;
}

uint32_t kmm__cache_take(struct kmm_cache *c, struct free_slot *dst, uint32_t n, unsigned flags)
{
    struct kmm *mm = c->mm;
    kmm__release_tick(mm);
    kmm_lock(mm, &c->lock);
    /* the depot first: slots freed lately (likely still in some cache), and
     * taking them touches no slab descriptor, which the thread that freed
     * them would otherwise pull back and forth with this one */
    uint32_t got = n < c->depot_count ? n : c->depot_count;
    c->depot_count -= got;
    for (uint32_t i = 0; i < got; i++) {
        store_relaxed(&dst[i].addr, c->depot[c->depot_count + i].addr);
        store_relaxed(&dst[i].held, c->depot[c->depot_count + i].held);
    }
    while (got < n) {
        struct kmm_slab *s = c->partial.head ? c->partial.head : c->empty.head;
        if (!s) {
            kmm_unlock(mm, &c->lock);
            s = new_slab(c, flags);
            kmm_lock(mm, &c->lock);
            if (!s)
                break;
            list_del(&c->making, s);
            list_add(&c->empty, s);
            c->total_slots += s->objects;
            c->total_pages += (size_t)1 << s->order;
            continue;
        }
        struct slab_list *from = slab_list_of(c, s);
        uint32_t k = take_from(c, s, dst + got, n - got);
        got += k;
        c->objects_out += k;
        struct slab_list *to = slab_list_of(c, s);
        if (to != from) {
            list_del(from, s);
            list_add(to, s);
        }
    }
    kmm_unlock(mm, &c->lock);
    return got;
}

/* ---- putting slots back --------------------------------------------------------- */

/* Unlinks an empty slab and forgets its pages (cache lock held); the caller
 * frees them once the lock is dropped. */
static uintptr_t retire_slab(struct kmm_cache *c, struct kmm_slab *s)
{
    uintptr_t base = s->base;
    list_del(&c->empty, s);
    c->total_slots -= s->objects;
    c->total_pages -= (size_t)1 << s->order;
    kmm__slab_map_set(c->mm, base, s->order, NULL);
    desc_free(c, s);
    return base;
}

static void free_slab_pages(struct kmm_cache *c, const uintptr_t *bases, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        kmm__free_pages_as(c->mm, OWNER_SLAB, "kmm_free", (void *)bases[i], false);
}

void kmm__cache_put(struct kmm_cache *c, const struct free_slot *src, uint32_t n, const char *fn)
{
    struct kmm *mm = c->mm;
    kmm__release_tick(mm);
    uintptr_t freed[MAG_MAX];
    while (n) {
        uint32_t batch = n < MAG_MAX ? n : MAG_MAX, nfreed = 0;
        kmm_lock(mm, &c->lock);
        for (uint32_t i = 0; i < batch; i++) {
            uintptr_t p = src[i].addr;
            struct kmm_slab *s = load_relaxed(&mm->slab_map[virt_to_index(mm, (void *)p)].slab);
            uint64_t idx = slot_of(s, p);
            uint64_t bit = (uint64_t)1 << (idx % 64);
            if (!(s->out[idx / 64] & bit)) {
                kmm_unlock(mm, &c->lock);
                kmm__slot_fatal(c, fn, "double free of", (void *)p);
            }
            struct slab_list *from = slab_list_of(c, s);
            s->out[idx / 64] &= ~bit;
            if (idx / 64 < s->scan)
                s->scan = (uint32_t)(idx / 64);
            s->inuse--;
            c->objects_out--;
            /* relink only when the slab changes list (full -> partial,
             * partial -> empty): most slots go back to a partial slab */
            struct slab_list *to = slab_list_of(c, s);
            if (to != from) {
                list_del(from, s);
                list_add(to, s);
            }
            /* a fallback slab goes back as soon as it empties, so that the
             * cache returns to its preferred order when memory allows */
            if (s->inuse == 0 && (c->empty.count > c->max_empty || s->order != c->slab_order))
                freed[nfreed++] = retire_slab(c, s);
        }
        kmm_unlock(mm, &c->lock);
        free_slab_pages(c, freed, nfreed);
        src += batch;
        n -= batch;
    }
}

bool kmm__slot_fork_reclaim(struct kmm_cache *c, uintptr_t p)
{
    struct kmm *mm = c->mm;
    struct kmm_slab *s = slab_of(mm, (void *)p);
    if (!s || s == LARGE_BLOCK || s->cache != c)
        return false;
    uint64_t idx = slot_started_by(s, p);
    if (idx == UINT64_MAX || !(s->out[idx / 64] & ((uint64_t)1 << (idx % 64))) || load_relaxed(slab_held(s, idx)))
        return false;
    /* a slot a gone thread freed after the platform copied memory has its
     * canary in the parent's memory only */
    if (mm->slab_poison)
        *(uintptr_t *)(p + c->canary_offset) = slot_canary(c, p);
    obj_poison(c, p);
    struct free_slot f = { p, slab_held(s, idx) };
    kmm__cache_put(c, &f, 1, "fork");
    return true;
}

void kmm__cache_stash(struct kmm_cache *c, const struct free_slot *src, uint32_t n, const char *fn)
{
    kmm_lock(c->mm, &c->lock);
    uint32_t room = depot_cap(c) - c->depot_count, k = n < room ? n : room;
    for (uint32_t i = 0; i < k; i++)
        c->depot[c->depot_count + i] = src[i];
    c->depot_count += k;
    kmm_unlock(c->mm, &c->lock);
    if (k < n)
        kmm__cache_put(c, src + k, n - k, fn);
}

void kmm__cache_shrink(struct kmm_cache *c)
{
    struct free_slot parked[DEPOT_MAX];
    kmm_lock(c->mm, &c->lock);
    uint32_t nparked = c->depot_count;
    __builtin_memcpy(parked, c->depot, nparked * sizeof(parked[0]));
    c->depot_count = 0;
    kmm_unlock(c->mm, &c->lock);
    kmm__cache_put(c, parked, nparked, "kmm_free");

    uintptr_t freed[MAG_MAX];
    for (;;) {
        uint32_t n = 0;
        kmm_lock(c->mm, &c->lock);
        while (c->empty.head && n < MAG_MAX)
            freed[n++] = retire_slab(c, c->empty.head);
        kmm_unlock(c->mm, &c->lock);
        if (n == 0)
            return;
        free_slab_pages(c, freed, n);
    }
}

/* ---- misuse ----------------------------------------------------------------------- */

void kmm__slot_fatal(struct kmm_cache *c, const char *fn, const char *why, const void *p)
{
    struct kmm_msg m = { .len = 0 };
    kmm__msg_call(&m, fn, why, p);
    kmm__msg_str(&m, " (cache ");
    kmm__msg_str(&m, c->name);
    kmm__msg_str(&m, ", object size ");
    kmm__msg_dec(&m, c->object_size);
    kmm__msg_str(&m, ")");
    kmm__fatal(c->mm, &m);
}
