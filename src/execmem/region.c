/* region.c - the region and its chunks: slots with guards, frames grown
 * in steps from the unmapped cache (trap-filled, then mapped read+execute),
 * a chunk's release, and the lookups by address (which chunk, which live
 * allocation) that free, write and usable_size share. */
#include "execmem_internal.h"

/* A chunk's record (not yet in the region): packed with its bitmaps, or
 * for one allocation of size bytes. */
struct exec_chunk *kmm__exec_chunk_new(struct kmm *mm, struct kmm_execmem *x, size_t size, bool single)
{
    size_t nslots = single ? (size + EXEC_SLOT_BYTES - 1) >> EXEC_SLOT_SHIFT : 1;
    size_t nsteps = single ? (size + x->step_bytes - 1) / x->step_bytes : EXEC_SLOT_BYTES / x->step_bytes;
    size_t head = sizeof(struct exec_chunk) + nsteps * sizeof(kmm_phys_t);
    head = (head + 7) & ~(size_t)7;
    size_t maps = single ? 0 : 3 * EXEC_CHUNK_WORDS * sizeof(uint64_t) + EXEC_CHUNK_GRANULES / 2;
    if (!single) {
        kmm_lock(mm, &mm->execmem_lock);
        struct exec_chunk *spare = x->spare;
        x->spare = NULL;
        if (spare)
            x->meta_bytes -= kmm__meta_obj_held(mm, spare->meta_size);
        kmm_unlock(mm, &mm->execmem_lock);
        if (spare)
            return spare;
    }
    struct exec_chunk *c = kmm__meta_obj_alloc(mm, head + maps);
    if (!c)
        return NULL;
    c->meta_size = head + maps;
    c->nslots = nslots;
    c->nsteps = nsteps;
    c->single = single;
    c->cls = EXEC_CLASSES;
    if (!single) {
        c->used = (uint64_t *)(void *)((char *)c + head);
        c->head = c->used + EXEC_CHUNK_WORDS;
        c->dead = c->head + EXEC_CHUNK_WORDS;
        c->tail = (uint8_t *)(c->dead + EXEC_CHUNK_WORDS);
    }
    return c;
}

/* Places c in a free run of slots with a guard slot on both sides (slot 0
 * and the last slot are never a chunk's). Lock held; false when the region
 * is full. */
bool kmm__exec_slots_take(struct kmm_execmem *x, struct exec_chunk *c)
{
    size_t run = 0;
    for (size_t s = 0; s < EXEC_NR_SLOTS; s++) {
        run = x->slot[s] ? 0 : run + 1;
        if (run == c->nslots + 2) {   /* guard, the chunk, guard */
            size_t first = s - c->nslots;
            for (size_t i = 0; i < c->nslots; i++)
                x->slot[first + i] = c;
            c->base = x->region + (first << EXEC_SLOT_SHIFT);
            return true;
        }
    }
    return false;
}

void kmm__exec_slots_drop(struct kmm_execmem *x, struct exec_chunk *c)
{
    size_t first = (c->base - x->region) >> EXEC_SLOT_SHIFT;
    for (size_t i = 0; i < c->nslots; i++)
        x->slot[first + i] = NULL;
}

/* Gives back steps [from, to) of c: unmapped, frames to the unmapped cache.
 * A range that cannot be unmapped keeps its frames (reported): frames still
 * mapped executable must not be handed to anyone else. */
static void steps_release(struct kmm *mm, struct kmm_execmem *x, struct exec_chunk *c, size_t from, size_t to)
{
    if (from >= to)
        return;
    if (mm->pf->vm_unmap(mm->ctx, (void *)(c->base + from * x->step_bytes), (to - from) * x->step_bytes) != 0) {
        struct kmm_msg m = { .len = 0 };
        kmm__msg_str(&m, "kmm: execmem: vm_unmap failed; keeping the frames of ");
        kmm__msg_hex(&m, c->base + from * x->step_bytes);
        kmm__report(mm, &m);
        return;
    }
    for (size_t i = from; i < to; i++)
        kmm__unmapped_free_as(mm, OWNER_EXECMEM, c->step[i], false, "kmm_execmem_free");
}

/* Maps steps [from, to) of c (c->growing, or not yet in the region's
 * lists): frames from the unmapped cache, trap-filled, then mapped
 * read+execute. Lock not held. 0, or -KMM_ENOMEM with nothing changed. */
int kmm__exec_steps_grow(struct kmm *mm, struct kmm_execmem *x, struct exec_chunk *c, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) {
        kmm_phys_t phys = kmm__unmapped_alloc_as(mm, OWNER_EXECMEM, x->step_order, KMM_NOZERO, "kmm_execmem_alloc");
        bool ok = phys != KMM_PHYS_NONE;
        if (ok) {
            c->step[i] = phys;
            ok = kmm__exec_fill(mm, c, c->base + i * x->step_bytes, x->step_bytes) == 0 &&
                 pf_vm_map(mm, (void *)(c->base + i * x->step_bytes), phys, x->step_bytes,
                           KMM_PROT_READ | KMM_PROT_EXEC) == 0;
            if (!ok)
                kmm__unmapped_free_as(mm, OWNER_EXECMEM, phys, false, "kmm_execmem_alloc");
        }
        if (!ok) {
            steps_release(mm, x, c, from, i);
            return -KMM_ENOMEM;
        }
    }
    return 0;
}

bool kmm__exec_releasable(const struct exec_chunk *c)
{
    return c->heads == c->quarantined && !c->writers && !c->growing;
}

/* Takes c out of the lists and the stats (lock held). Its slots stay
 * taken (c->released: no lookup finds it) until chunk_free has unmapped
 * it: a new chunk placed there meanwhile would have its fresh mappings
 * undone by that unmap. */
void kmm__exec_chunk_detach(struct kmm *mm, struct kmm_execmem *x, struct exec_chunk *c)
{
    c->released = true;
    kmm__exec_class_remove(x, c);
    if (x->current == c)
        x->current = NULL;
    x->chunks--;
    x->pages -= c->mapped_steps * exec_step_pages(mm, x);
    x->meta_bytes -= kmm__meta_obj_held(mm, c->meta_size);
}

/* Unmaps c and gives its frames back. A packed chunk's record, its
 * bitmaps all clear (no quarantined range), is kept as the spare when
 * there is none (keep): the next chunk reuses it, pages already touched,
 * instead of faulting fresh metadata in (a JIT's chunks come and go). */
void kmm__exec_chunk_free(struct kmm *mm, struct kmm_execmem *x, struct exec_chunk *c, bool keep)
{
    steps_release(mm, x, c, 0, c->mapped_steps);
    kmm_lock(mm, &mm->execmem_lock);
    kmm__exec_slots_drop(x, c);
    kmm_unlock(mm, &mm->execmem_lock);
    if (keep && !c->single && !c->used_granules) {
        size_t meta_size = c->meta_size;
        uint64_t *used = c->used, *head = c->head, *dead = c->dead;
        uint8_t *tail = c->tail;
        kmm_lock(mm, &mm->execmem_lock);
        if (!x->spare) {
            *c = (struct exec_chunk){ .nslots = 1, .nsteps = EXEC_SLOT_BYTES / x->step_bytes, .cls = EXEC_CLASSES,
                                      .used = used, .head = head, .dead = dead, .tail = tail, .meta_size = meta_size };
            x->spare = c;
            x->meta_bytes += kmm__meta_obj_held(mm, meta_size);
            c = NULL;
        }
        kmm_unlock(mm, &mm->execmem_lock);
        if (!c)
            return;
    }
    kmm__meta_obj_free(mm, c, c->meta_size);
}

void kmm__exec_put_unlock(struct kmm *mm, struct exec_chunk *c)
{
    struct kmm_execmem *x = mm->execmem;
    if (!kmm__exec_releasable(c)) {
        kmm_unlock(mm, &mm->execmem_lock);
        return;
    }
    kmm__exec_chunk_detach(mm, x, c);
    kmm_unlock(mm, &mm->execmem_lock);
    kmm__exec_chunk_free(mm, x, c, true);
}

struct exec_chunk *kmm__exec_chunk_of(struct kmm_execmem *x, uintptr_t va)
{
    if (va < x->region || va - x->region >= KMM_EXECMEM_REGION_BYTES)
        return NULL;
    struct exec_chunk *c = x->slot[(va - x->region) >> EXEC_SLOT_SHIFT];
    return c && !c->released ? c : NULL;
}

/* The live allocation starting at va: its chunk, and for a packed chunk
 * its granules [*g, *end); NULL with the reason. Lock held. */
struct exec_chunk *kmm__exec_live_head(struct kmm_execmem *x, uintptr_t va, size_t *g, size_t *end, const char **why)
{
    struct exec_chunk *c = kmm__exec_chunk_of(x, va);
    if (!c) {
        *why = va - x->region < KMM_EXECMEM_REGION_BYTES ? "never allocated (no chunk there):"
                                                          : "not executable memory (outside the execmem region):";
        return NULL;
    }
    size_t off = (size_t)(va - c->base);
    if (c->single) {
        *why = off ? "not the start of an allocation (inside one):"
                   : !c->heads ? "not allocated (never, or freed already: double free?):" : NULL;
        *g = 0, *end = (c->size + KMM_EXECMEM_ALIGN - 1) >> EXEC_GRANULE_SHIFT;
        return *why ? NULL : c;
    }
    *g = off >> EXEC_GRANULE_SHIFT;
    if (*g >= exec_mapped_granules(x, c) || !kmm__exec_bit(c->used, *g))
        *why = "not allocated (never, or freed already: double free?):";
    else if (off & (KMM_EXECMEM_ALIGN - 1) || !kmm__exec_bit(c->head, *g))
        *why = "not the start of an allocation (inside one):";
    else if (kmm__exec_bit(c->dead, *g))
        *why = "freed already (double free; the first free is still filling it):";
    else
        *why = NULL;
    if (*why)
        return NULL;
    *end = kmm__exec_extent_end(c, *g);
    return c;
}

struct exec_chunk *kmm__exec_validate(struct kmm_execmem *x, uintptr_t va, size_t len, const char **why)
{
    struct exec_chunk *c = kmm__exec_chunk_of(x, va);
    *why = "not inside a live allocation";
    if (!c || va + len > c->base + c->mapped_steps * x->step_bytes)
        return NULL;
    size_t off = (size_t)(va - c->base);
    if (c->single) {
        size_t usable = (c->size + KMM_EXECMEM_ALIGN - 1) & ~(size_t)(KMM_EXECMEM_ALIGN - 1);
        if (!c->heads || off + len > usable) {
            *why = c->heads ? "past the end of its allocation" : "not inside a live allocation";
            return NULL;
        }
        return c;
    }
    size_t g = off >> EXEC_GRANULE_SHIFT;
    if (!kmm__exec_bit(c->used, g))
        return NULL;
    size_t h = kmm__exec_prev_one(c->head, g + 1);
    if (h == SIZE_MAX || kmm__exec_bit(c->dead, h))
        return NULL;
    if (off + len > kmm__exec_extent_end(c, h) << EXEC_GRANULE_SHIFT) {
        *why = "past the end of its allocation";
        return NULL;
    }
    return c;
}

/* The next chunk at or after slot *s (its first slot), or NULL. */
struct exec_chunk *kmm__exec_next_chunk(struct kmm_execmem *x, size_t *s)
{
    for (; *s < EXEC_NR_SLOTS; (*s)++) {
        struct exec_chunk *c = x->slot[*s];
        if (c && (*s == 0 || x->slot[*s - 1] != c)) {
            *s += c->nslots;
            if (c->released)   /* being unmapped by the thread that released it */
                continue;
            return c;
        }
    }
    return NULL;
}
