/* meta.c - memory for the upper layers' own metadata, and fault injection.
 *
 * Slab descriptors, magazines, kmm_malloc's size-class tables, vmalloc's
 * nodes and run arrays are kept apart from the memory callers get, so that
 * no buffer overflow reaches them: from the platform's meta_alloc when it
 * has one (hosted: anonymous mmap, private on fork), else from the page
 * allocator (freestanding: there is nowhere else). Small objects of it come
 * from the classes of kmm__meta_obj_alloc. */
#include "internal.h"

bool kmm__fault(struct kmm *mm, unsigned site)
{
    if (KMM_LIKELY(!(load_relaxed(&mm->fault_sites) & site)))
        return false;
    unsigned long n = add_relaxed(&mm->fault_calls, 1) + 1;
    unsigned long nth = load_relaxed(&mm->fault_nth), times = load_relaxed(&mm->fault_times);
    if (n < nth || (times && n >= nth + times))
        return false;
    add_relaxed(&mm->fault_injected, 1);
    return true;
}

void kmm_fault_inject(struct kmm *mm, unsigned sites, unsigned long nth, unsigned long times)
{
    mm_live(mm, "kmm_fault_inject");
    store_relaxed(&mm->fault_sites, 0);
    store_relaxed(&mm->fault_calls, 0);
    store_relaxed(&mm->fault_injected, 0);
    store_relaxed(&mm->fault_nth, nth);
    store_relaxed(&mm->fault_times, times);
    if (nth)
        store_relaxed(&mm->fault_sites, sites & (KMM_FAULT_PAGES | KMM_FAULT_META | KMM_FAULT_MAP));
}

unsigned long kmm_fault_injected(struct kmm *mm)
{
    mm_live(mm, "kmm_fault_injected");
    return load_relaxed(&mm->fault_injected);
}

/* kmm__meta_alloc without its fault site (the object allocator has its own). */
static void *meta_alloc_raw(struct kmm *mm, size_t len)
{
    if (mm->pf->meta_alloc)
        return mm->pf->meta_alloc(mm->ctx, len);
    void *p = kmm_alloc_pages_exact(mm, len, KMM_ZERO | KMM__NO_RECLAIM);   /* maybe under slab_lock */
    if (p)
        kmm__pages_own(mm, p, OWNER_META);
    return p;
}

void *kmm__meta_alloc(struct kmm *mm, size_t len)
{
    if (kmm__fault(mm, KMM_FAULT_META))
        return NULL;
    return meta_alloc_raw(mm, len);
}

void kmm__meta_free(struct kmm *mm, void *p, size_t len)
{
    if (!p)
        return;
    if (mm->pf->meta_alloc)
        mm->pf->meta_free(mm->ctx, p, len);
    else
        kmm__free_pages_as(mm, OWNER_META, "kmm (metadata)", p, true);
}

/* ---- small objects -------------------------------------------------------------
 *
 * A chunk of class c is META_CHUNK bytes at a META_CHUNK boundary: this
 * header, then objects of meta_class_size[c] bytes from META_HDR on.
 * Invariants (checked by kmm__meta_obj_check, under the class's lock):
 *  - bit i of used[] is set iff object i is in use; bits from objects to
 *    255 are set for good; inuse is the number of bits below objects set;
 *  - a chunk is on its class's full list iff inuse == objects, else on its
 *    partial list; the lists are doubly linked, prev of the head NULL;
 *  - the class's chunks, empty and objects count what the lists hold, and
 *    empty <= META_KEEP_EMPTY (a free that empties one more gives it back).
 * The free state is a bitmap in the header, not links in the objects: a
 * stray write into a free object (by the layer that owns its neighbour)
 * changes no list, a double free is seen at once, and kmm_check reads
 * headers only. */
struct meta_chunk {
    struct meta_chunk *next, *prev;       /* in its class's partial or full list */
    uint32_t cls;                         /* index in mm->meta_obj */
    uint32_t objects;                     /* objects the chunk holds */
    uint32_t inuse;                       /* of them, in use */
    uint32_t magic;                       /* META_MAGIC ^ cls: a free of a foreign pointer is seen */
    uint64_t used[4];                     /* bit i: object i in use */
};
#define META_HDR 64
#define META_MAGIC 0x6d657461u            /* "meta" */
_Static_assert(sizeof(struct meta_chunk) <= META_HDR, "the header fits before the first object");
_Static_assert((META_CHUNK - META_HDR) / 16 <= 256, "used[] has a bit per object of the smallest class");

static const uint16_t meta_class_size[META_OBJ_CLASSES] = { 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024 };
_Static_assert(META_OBJ_MAX == 1024, "the last class is META_OBJ_MAX");

/* The smallest class holding size (1 <= size <= META_OBJ_MAX): sizes in
 * (2^b, 2^(b+1)] have the classes 3 * 2^(b-1) and 2^(b+1). */
static unsigned meta_class_of(size_t size)
{
    if (size <= 32)
        return size <= 16 ? 0 : 1;
    unsigned b = floor_log2(size - 1);
    return 2 * (b - 5) + 2 + (size > ((size_t)3 << (b - 1)));
}

static void chunk_push(struct meta_chunk **list, struct meta_chunk *ch)
{
    ch->prev = NULL;
    ch->next = *list;
    if (*list)
        (*list)->prev = ch;
    *list = ch;
}

static void chunk_unlink(struct meta_chunk **list, struct meta_chunk *ch)
{
    if (ch->prev)
        ch->prev->next = ch->next;
    else
        *list = ch->next;
    if (ch->next)
        ch->next->prev = ch->prev;
    ch->next = ch->prev = NULL;
}

/* A chunk back to the platform (no lock held). */
static void chunk_release(struct kmm *mm, struct meta_chunk *ch)
{
    mem_unpoison(ch, META_CHUNK);
    kmm__meta_free(mm, ch, META_CHUNK);
}

/* A new empty chunk of class c, outside any list; NULL when out of memory. */
static struct meta_chunk *chunk_new(struct kmm *mm, unsigned c)
{
    struct meta_chunk *ch = meta_alloc_raw(mm, META_CHUNK);
    if (!ch)
        return NULL;
    if ((uintptr_t)ch & (META_CHUNK - 1))
        kmm__fatal_page(mm, "kmm__meta_obj_alloc", "metadata memory not aligned to 4 KiB (platform meta_alloc):", ch);
    uint32_t objects = (META_CHUNK - META_HDR) / meta_class_size[c];
    __builtin_memset(ch, 0, META_HDR);
    ch->cls = c;
    ch->objects = objects;
    ch->magic = META_MAGIC ^ c;
    for (uint32_t i = objects; i < 256; i++)
        ch->used[i / 64] |= (uint64_t)1 << (i % 64);
    mem_poison((char *)ch + META_HDR, META_CHUNK - META_HDR);
    return ch;
}

static void *large_alloc(struct kmm *mm, size_t size)
{
    void *p = meta_alloc_raw(mm, size);
    if (p) {
        size_t unit = mm->pf->meta_alloc ? META_CHUNK : mm->page_size;
        add_relaxed(&mm->meta_large, 1);
        add_relaxed(&mm->meta_large_bytes, size);
        add_relaxed(&mm->meta_large_held, (size + unit - 1) & ~(unit - 1));
    }
    return p;
}

size_t kmm__meta_obj_held(const struct kmm *mm, size_t size)
{
    if (size > META_OBJ_MAX) {
        size_t unit = mm->pf->meta_alloc ? META_CHUNK : mm->page_size;
        return (size + unit - 1) & ~(unit - 1);
    }
    return meta_class_size[meta_class_of(size ? size : 1)];
}

void *kmm__meta_obj_alloc(struct kmm *mm, size_t size)
{
    if (kmm__fault(mm, KMM_FAULT_META))
        return NULL;
    if (size > META_OBJ_MAX)
        return large_alloc(mm, size);
    unsigned c = meta_class_of(size ? size : 1);
    struct meta_class *mc = &mm->meta_obj[c];
    struct meta_chunk *fresh = NULL;
    for (;;) {
        kmm_lock(mm, &mc->lock);
        struct meta_chunk *ch = mc->partial;
        if (!ch && fresh) {
            chunk_push(&mc->partial, fresh);
            mc->chunks++;
            mc->empty++;
            ch = fresh;
            fresh = NULL;
        }
        if (ch) {
            unsigned w = 0;
            while (!~ch->used[w])   /* a partial chunk has a clear bit below objects */
                w++;
            unsigned i = w * 64 + (unsigned)__builtin_ctzll(~ch->used[w]);
            ch->used[w] |= (uint64_t)1 << (i % 64);
            if (ch->inuse++ == 0)
                mc->empty--;
            mc->objects++;
            if (ch->inuse == ch->objects) {
                chunk_unlink(&mc->partial, ch);
                chunk_push(&mc->full, ch);
            }
            kmm_unlock(mm, &mc->lock);
            if (fresh)   /* another thread made room meanwhile */
                chunk_release(mm, fresh);
            void *p = (char *)ch + META_HDR + (size_t)i * meta_class_size[c];
            mem_unpoison(p, meta_class_size[c]);
            __builtin_memset(p, 0, size);
            return p;
        }
        kmm_unlock(mm, &mc->lock);
        fresh = chunk_new(mm, c);   /* meta_alloc outside the lock */
        if (!fresh)
            return NULL;
    }
}

void kmm__meta_obj_free(struct kmm *mm, void *p, size_t size)
{
    if (!p)
        return;
    if (size > META_OBJ_MAX) {
        size_t unit = mm->pf->meta_alloc ? META_CHUNK : mm->page_size;
        add_relaxed(&mm->meta_large, (size_t)-1);
        add_relaxed(&mm->meta_large_bytes, -size);
        add_relaxed(&mm->meta_large_held, -((size + unit - 1) & ~(unit - 1)));
        kmm__meta_free(mm, p, size);
        return;
    }
    unsigned c = meta_class_of(size ? size : 1);
    struct meta_class *mc = &mm->meta_obj[c];
    struct meta_chunk *ch = (struct meta_chunk *)((uintptr_t)p & ~(uintptr_t)(META_CHUNK - 1));
    uintptr_t off = (uintptr_t)p - (uintptr_t)ch - META_HDR;
    size_t csize = meta_class_size[c];
    kmm_lock(mm, &mc->lock);
    uint64_t i = off / csize;
    const char *why = NULL;
    if (ch->magic != (META_MAGIC ^ c) || ch->cls != c)
        why = "not a metadata object of this size:";
    else if ((uintptr_t)p < (uintptr_t)ch + META_HDR || off % csize || i >= ch->objects)
        why = "not the start of a metadata object:";
    else if (!(ch->used[i / 64] & ((uint64_t)1 << (i % 64))))
        why = "double free of a metadata object:";
    if (why) {
        kmm_unlock(mm, &mc->lock);
        kmm__fatal_page(mm, "kmm__meta_obj_free", why, p);
    }
    mem_poison(p, csize);   /* before the object can be handed out again */
    if (ch->inuse == ch->objects) {
        chunk_unlink(&mc->full, ch);
        chunk_push(&mc->partial, ch);
    }
    ch->used[i / 64] &= ~((uint64_t)1 << (i % 64));
    mc->objects--;
    struct meta_chunk *give = NULL;
    if (--ch->inuse == 0) {
        /* a few empty chunks stay for the next allocations; one more goes */
        if (mc->empty >= META_KEEP_EMPTY) {
            chunk_unlink(&mc->partial, ch);
            mc->chunks--;
            give = ch;
        } else {
            mc->empty++;
        }
    }
    kmm_unlock(mm, &mc->lock);
    if (give)
        chunk_release(mm, give);
}

void kmm__meta_obj_init(struct kmm *mm)
{
    for (unsigned c = 0; c < META_OBJ_CLASSES; c++)
        mm->pf->lock_init(&mm->meta_obj[c].lock);
}

void kmm__meta_obj_drain(struct kmm *mm)
{
    for (unsigned c = 0; c < META_OBJ_CLASSES; c++) {
        struct meta_class *mc = &mm->meta_obj[c];
        struct meta_chunk *give = NULL;
        kmm_lock(mm, &mc->lock);
        for (struct meta_chunk *ch = mc->partial, *next; ch && mc->empty; ch = next) {
            next = ch->next;
            if (ch->inuse == 0) {
                chunk_unlink(&mc->partial, ch);
                ch->next = give;
                give = ch;
                mc->chunks--;
                mc->empty--;
            }
        }
        kmm_unlock(mm, &mc->lock);
        while (give) {
            struct meta_chunk *next = give->next;
            chunk_release(mm, give);
            give = next;
        }
    }
}

void kmm__meta_obj_destroy(struct kmm *mm)
{
    for (unsigned c = 0; c < META_OBJ_CLASSES; c++) {
        struct meta_class *mc = &mm->meta_obj[c];
        struct meta_chunk *lists[2] = { mc->partial, mc->full };
        for (int l = 0; l < 2; l++) {
            for (struct meta_chunk *ch = lists[l], *next; ch; ch = next) {
                next = ch->next;
                chunk_release(mm, ch);
            }
        }
        mc->partial = mc->full = NULL;
        mc->chunks = mc->empty = mc->objects = 0;
        mm->pf->lock_fini(&mc->lock);
    }
}

/* One list of class c: its chunks' headers (see struct meta_chunk). */
static const char *check_list(struct meta_chunk *head, unsigned c, bool full, size_t limit, size_t *chunks,
                              size_t *empty, size_t *objects)
{
    struct meta_chunk *prev = NULL;
    for (struct meta_chunk *ch = head; ch; prev = ch, ch = ch->next) {
        if (++*chunks > limit)
            return "metadata objects: a chunk list is longer than its count (a cycle?)";
        if ((uintptr_t)ch & (META_CHUNK - 1) || ch->magic != (META_MAGIC ^ c) || ch->cls != c)
            return "metadata objects: a chunk on the list of another class, or its header overwritten";
        if (ch->prev != prev)
            return "metadata objects: a chunk list's back links are broken";
        if (ch->objects != (META_CHUNK - META_HDR) / meta_class_size[c])
            return "metadata objects: a chunk's object count is not its class's";
        uint32_t set = 0;
        for (unsigned w = 0; w < 4; w++)
            set += (uint32_t)__builtin_popcountll(ch->used[w]);
        for (uint32_t i = ch->objects; i < 256; i++)
            if (!(ch->used[i / 64] & ((uint64_t)1 << (i % 64))))
                return "metadata objects: a chunk's bitmap marks an object past its end free";
        if (set - (256 - ch->objects) != ch->inuse)
            return "metadata objects: a chunk's count in use does not match its bitmap";
        if (full != (ch->inuse == ch->objects))
            return "metadata objects: a chunk is on the wrong list (full or partial)";
        *empty += ch->inuse == 0;
        *objects += ch->inuse;
    }
    return NULL;
}

int kmm__meta_obj_check(struct kmm *mm)
{
    for (unsigned c = 0; c < META_OBJ_CLASSES; c++) {
        struct meta_class *mc = &mm->meta_obj[c];
        size_t chunks = 0, empty = 0, objects = 0;
        kmm_lock(mm, &mc->lock);
        const char *why = check_list(mc->partial, c, false, mc->chunks, &chunks, &empty, &objects);
        if (!why)
            why = check_list(mc->full, c, true, mc->chunks, &chunks, &empty, &objects);
        if (!why && (chunks != mc->chunks || empty != mc->empty || objects != mc->objects))
            why = "metadata objects: a class's counts do not match its chunks";
        if (!why && empty > META_KEEP_EMPTY)
            why = "metadata objects: a class keeps more empty chunks than META_KEEP_EMPTY";
        kmm_unlock(mm, &mc->lock);
        if (why)
            return kmm__check_fail(mm, why, UINT64_MAX);
    }
    return 0;
}

void kmm_meta_stats(struct kmm *mm, struct kmm_meta_stats *st)
{
    mm_live(mm, "kmm_meta_stats");
    __builtin_memset(st, 0, sizeof(*st));
    for (unsigned c = 0; c < META_OBJ_CLASSES; c++) {
        struct meta_class *mc = &mm->meta_obj[c];
        kmm_lock(mm, &mc->lock);
        st->objects += mc->objects;
        st->object_bytes += mc->objects * meta_class_size[c];
        st->chunks += mc->chunks;
        kmm_unlock(mm, &mc->lock);
    }
    st->held_bytes = st->chunks * META_CHUNK;
    st->large_objects = load_relaxed(&mm->meta_large);
    st->large_bytes = load_relaxed(&mm->meta_large_bytes);
    st->large_held_bytes = load_relaxed(&mm->meta_large_held);
}
