/* execmem.c - executable memory for JITs (kmm/execmem.h): the region and
 * its chunks, allocation and free, stats, check, destroy and fork. The
 * bitmaps are space.c's, writes and trap fill write.c's; the layout and the
 * locking rules are in execmem_internal.h. */
#include "execmem_internal.h"

/* ---- the trap pattern ---- */

/* x86-64: int3 (0xcc); arm64: brk #0 (0xd4200000, little endian). Other
 * architectures: zeros, which are no trap everywhere (a port adds its own
 * trapping instruction here). */
static void trap_pattern(uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
#if defined(__x86_64__) || defined(__i386__)
        p[i] = 0xcc;
#elif defined(__aarch64__)
        static const uint8_t brk0[4] = { 0x00, 0x00, 0x20, 0xd4 };
        p[i] = brk0[i % 4];
#else
        p[i] = 0;
#endif
    }
}

/* ---- the layer's state, made on first use ---- */

static struct kmm_execmem *get_state(struct kmm *mm, const char *fn)
{
    struct kmm_execmem *x = __atomic_load_n(&mm->execmem, __ATOMIC_ACQUIRE);
    if (KMM_LIKELY(x))
        return x;
    const struct kmm_platform *pf = mm->pf;
    if (!kmm__unmapped_supported(mm) || !pf->vm_reserve || !pf->vm_map || !pf->vm_unmap) {
        kmm__refuse(mm, KMM_ENOSYS, fn, "the platform cannot map frames executable out of its direct map");
        return NULL;
    }
    x = kmm__meta_obj_alloc(mm, sizeof(*x));
    uint8_t *trap = kmm__meta_obj_alloc(mm, EXEC_TRAP_BYTES);
    void *region = x && trap ? pf->vm_reserve(mm->ctx, KMM_EXECMEM_REGION_BYTES, EXEC_SLOT_BYTES) : NULL;
    if (!region) {
        kmm__meta_obj_free(mm, trap, EXEC_TRAP_BYTES);
        kmm__meta_obj_free(mm, x, sizeof(*x));
        kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
        return NULL;
    }
    trap_pattern(trap, EXEC_TRAP_BYTES);
    x->trap = trap;
    x->region = (uintptr_t)region;
    x->step_bytes = mm->page_size > EXEC_STEP_MIN ? mm->page_size : EXEC_STEP_MIN;
    x->step_order = (unsigned)__builtin_ctzll(x->step_bytes >> mm->page_shift);
    x->meta_bytes = kmm__meta_obj_held(mm, sizeof(*x)) + kmm__meta_obj_held(mm, EXEC_TRAP_BYTES);
    kmm_lock(mm, &mm->execmem_lock);
    struct kmm_execmem *won = mm->execmem;
    if (!won)
        __atomic_store_n(&mm->execmem, x, __ATOMIC_RELEASE);
    kmm_unlock(mm, &mm->execmem_lock);
    if (won) {   /* another thread made it first */
        pf->vm_unreserve(mm->ctx, region, KMM_EXECMEM_REGION_BYTES);
        kmm__meta_obj_free(mm, trap, EXEC_TRAP_BYTES);
        kmm__meta_obj_free(mm, x, sizeof(*x));
        return won;
    }
    return x;
}

/* ---- chunks ---- */

static size_t step_pages(const struct kmm *mm, const struct kmm_execmem *x)
{
    return x->step_bytes >> mm->page_shift;
}

static size_t mapped_granules(const struct kmm_execmem *x, const struct exec_chunk *c)
{
    return c->mapped_steps * x->step_bytes >> EXEC_GRANULE_SHIFT;
}

/* A chunk's record (not yet in the region): packed with its bitmaps, or
 * for one allocation of size bytes. */
static struct exec_chunk *chunk_new(struct kmm *mm, struct kmm_execmem *x, size_t size, bool single)
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
static bool slots_take(struct kmm_execmem *x, struct exec_chunk *c)
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

static void slots_drop(struct kmm_execmem *x, struct exec_chunk *c)
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
static int steps_grow(struct kmm *mm, struct kmm_execmem *x, struct exec_chunk *c, size_t from, size_t to)
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

static bool releasable(const struct exec_chunk *c)
{
    return c->heads == c->quarantined && !c->writers && !c->growing;
}

/* Takes c out of the lists and the stats (lock held). Its slots stay
 * taken (c->released: no lookup finds it) until chunk_free has unmapped
 * it: a new chunk placed there meanwhile would have its fresh mappings
 * undone by that unmap. */
static void chunk_detach(struct kmm *mm, struct kmm_execmem *x, struct exec_chunk *c)
{
    c->released = true;
    kmm__exec_class_remove(x, c);
    if (x->current == c)
        x->current = NULL;
    x->chunks--;
    x->pages -= c->mapped_steps * step_pages(mm, x);
    x->meta_bytes -= kmm__meta_obj_held(mm, c->meta_size);
}

/* Unmaps c and gives its frames back. A packed chunk's record, its
 * bitmaps all clear (no quarantined range), is kept as the spare when
 * there is none (keep): the next chunk reuses it, pages already touched,
 * instead of faulting fresh metadata in (a JIT's chunks come and go). */
static void chunk_free(struct kmm *mm, struct kmm_execmem *x, struct exec_chunk *c, bool keep)
{
    steps_release(mm, x, c, 0, c->mapped_steps);
    kmm_lock(mm, &mm->execmem_lock);
    slots_drop(x, c);
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
    if (!releasable(c)) {
        kmm_unlock(mm, &mm->execmem_lock);
        return;
    }
    chunk_detach(mm, x, c);
    kmm_unlock(mm, &mm->execmem_lock);
    chunk_free(mm, x, c, true);
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
static struct exec_chunk *live_head(struct kmm_execmem *x, uintptr_t va, size_t *g, size_t *end, const char **why)
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
    if (*g >= mapped_granules(x, c) || !kmm__exec_bit(c->used, *g))
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

/* ---- allocation ---- */

/* Carves granules [at, at + n) of c for size bytes (lock held). */
static void *carve(struct kmm_execmem *x, struct exec_chunk *c, size_t at, size_t n, size_t size)
{
    kmm__exec_set(c->used, at, at + n);
    kmm__exec_set(c->head, at, at + 1);
    kmm__exec_tail_set(c, at, (unsigned)((n << EXEC_GRANULE_SHIFT) - size));
    c->used_granules += n;
    c->heads++;
    c->hint = at + n;
    kmm__exec_class_update(x, c);
    x->current = c;
    x->allocations++;
    x->bytes += size;
    x->used_bytes += n << EXEC_GRANULE_SHIFT;
    x->allocs++;
    return (void *)(c->base + (at << EXEC_GRANULE_SHIFT));
}

/* Can c take n granules? In its mapped part: returns true with *at; at
 * its tail after a grow: notes it in *grow (the first such chunk), or in
 * *busy when a grower is at work on it. Lock held. */
static bool try_chunk(const struct kmm_execmem *x, struct exec_chunk *c, size_t n, size_t *at,
                      struct exec_chunk **grow, bool *busy)
{
    if (EXEC_CHUNK_GRANULES - c->used_granules < n)
        return false;
    size_t mg = mapped_granules(x, c);
    *at = kmm__exec_search(c, mg, n);
    if (*at != SIZE_MAX)
        return true;
    size_t tail = kmm__exec_prev_one(c->used, mg);
    tail = tail == SIZE_MAX ? 0 : tail + 1;
    if (tail + n <= EXEC_CHUNK_GRANULES && !*grow) {
        if (c->growing)
            *busy = true;
        else
            *grow = c;
    }
    return false;
}

/* Where n granules go: the current chunk first (where the last allocation
 * went: consecutive pieces of a JIT end up adjacent), then the class lists
 * from log2(n) up; NULL when no mapped part has room. Lock held. */
static struct exec_chunk *find_room(struct kmm_execmem *x, size_t n, size_t *at, struct exec_chunk **grow,
                                    bool *busy)
{
    *grow = NULL, *busy = false;
    struct exec_chunk *cur = x->current;
    if (cur && try_chunk(x, cur, n, at, grow, busy))
        return cur;
    for (unsigned cls = kmm__exec_class_of(n); cls < EXEC_CLASSES; cls++)
        for (struct exec_chunk *c = x->cls[cls]; c; c = c->next)
            if (c != cur && try_chunk(x, c, n, at, grow, busy))
                return c;
    return NULL;
}

static void *alloc_single(struct kmm *mm, struct kmm_execmem *x, size_t size)
{
    struct exec_chunk *c = chunk_new(mm, x, size, true);
    if (!c) {
        kmm__refuse(mm, KMM_ENOMEM, "kmm_execmem_alloc", NULL);
        return NULL;
    }
    kmm_lock(mm, &mm->execmem_lock);
    bool placed = slots_take(x, c);
    if (placed) {
        c->growing = true;
        x->chunks++;
        x->meta_bytes += kmm__meta_obj_held(mm, c->meta_size);
    }
    kmm_unlock(mm, &mm->execmem_lock);
    int rc = placed ? steps_grow(mm, x, c, 0, c->nsteps) : -KMM_ENOMEM;
    kmm_lock(mm, &mm->execmem_lock);
    if (rc) {
        if (placed) {
            chunk_detach(mm, x, c);   /* nothing mapped: its slots can go at once */
            slots_drop(x, c);
        }
        kmm_unlock(mm, &mm->execmem_lock);
        kmm__meta_obj_free(mm, c, c->meta_size);
        kmm__refuse(mm, KMM_ENOMEM, "kmm_execmem_alloc", NULL);
        return NULL;
    }
    c->growing = false;
    c->mapped_steps = c->nsteps;
    x->pages += c->nsteps * step_pages(mm, x);
    c->heads = 1;
    c->size = size;
    x->allocations++;
    x->bytes += size;
    x->used_bytes += (size + KMM_EXECMEM_ALIGN - 1) & ~(size_t)(KMM_EXECMEM_ALIGN - 1);
    x->allocs++;
    kmm_unlock(mm, &mm->execmem_lock);
    return (void *)c->base;
}

void *kmm_execmem_alloc(struct kmm *mm, size_t size)
{
    static const char fn[] = "kmm_execmem_alloc";
    mm_live(mm, fn);
    if (!size) {
        kmm__refuse(mm, KMM_EINVAL, fn, "size 0");
        return NULL;
    }
    if (size > KMM_EXECMEM_REGION_BYTES) {
        kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
        return NULL;
    }
    struct kmm_execmem *x = get_state(mm, fn);
    if (!x)
        return NULL;
    if (size > KMM_EXECMEM_CHUNK_BYTES)
        return alloc_single(mm, x, size);
    size_t n = (size + KMM_EXECMEM_ALIGN - 1) >> EXEC_GRANULE_SHIFT;
    for (;;) {
        size_t at;
        struct exec_chunk *grow;
        bool busy;
        kmm_lock(mm, &mm->execmem_lock);
        struct exec_chunk *c = find_room(x, n, &at, &grow, &busy);
        if (c) {
            void *p = carve(x, c, at, n, size);
            kmm_unlock(mm, &mm->execmem_lock);
            return p;
        }
        if (!grow && busy) {
            /* another thread is mapping frames where this fits: wait for it
             * rather than take a chunk of its own */
            kmm_unlock(mm, &mm->execmem_lock);
            for (int i = 0; i < 256; i++)
                cpu_relax();
            continue;
        }
        size_t from = 0, to;
        if (grow) {
            size_t tail = kmm__exec_prev_one(grow->used, mapped_granules(x, grow));
            tail = tail == SIZE_MAX ? 0 : tail + 1;
            from = grow->mapped_steps;
            to = (((tail + n) << EXEC_GRANULE_SHIFT) + x->step_bytes - 1) / x->step_bytes;
            grow->growing = true;
            kmm_unlock(mm, &mm->execmem_lock);
        } else {
            kmm_unlock(mm, &mm->execmem_lock);
            grow = chunk_new(mm, x, 0, false);
            if (!grow)
                break;
            kmm_lock(mm, &mm->execmem_lock);
            if (!slots_take(x, grow)) {
                kmm_unlock(mm, &mm->execmem_lock);
                kmm__meta_obj_free(mm, grow, grow->meta_size);
                break;
            }
            grow->growing = true;
            x->chunks++;
            x->meta_bytes += kmm__meta_obj_held(mm, grow->meta_size);
            kmm_unlock(mm, &mm->execmem_lock);
            to = ((n << EXEC_GRANULE_SHIFT) + x->step_bytes - 1) / x->step_bytes;
        }
        int rc = steps_grow(mm, x, grow, from, to);
        kmm_lock(mm, &mm->execmem_lock);
        grow->growing = false;
        if (rc) {
            kmm__exec_put_unlock(mm, grow);
            break;
        }
        grow->mapped_steps = to;
        x->pages += (to - from) * step_pages(mm, x);
        kmm__exec_class_update(x, grow);
        x->current = grow;
        size_t mg = mapped_granules(x, grow);
        at = kmm__exec_search(grow, mg, n);
        if (at != SIZE_MAX) {
            void *p = carve(x, grow, at, n, size);
            kmm_unlock(mm, &mm->execmem_lock);
            return p;
        }
        kmm__exec_put_unlock(mm, grow);   /* taken meanwhile: look again */
    }
    kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
    return NULL;
}

/* ---- free ---- */

KMM_NORETURN static void misuse(struct kmm *mm, const char *fn, const char *why, const void *p)
{
    kmm__fatal_page(mm, fn, why, p);
}

/* The first half of a free (lock held): out of the stats; a packed
 * allocation is marked dead (neither allocatable nor writable, and a
 * second free of it aborts) until its trap fill is done. */
static void free_begin(struct kmm_execmem *x, struct exec_chunk *c, size_t g, size_t end)
{
    size_t n = end - g;
    x->allocations--;
    x->frees++;
    x->used_bytes -= n << EXEC_GRANULE_SHIFT;
    if (c->single) {
        x->bytes -= c->size;
        c->heads = 0;
        return;
    }
    x->bytes -= (n << EXEC_GRANULE_SHIFT) - kmm__exec_tail_get(c, g);
    kmm__exec_set(c->dead, g, g + 1);
    c->dying++;
}

/* The second half (lock held): the space is free again, or, when its
 * trap fill failed, quarantined: the old code must not become reachable
 * free space, so the range stays dead until its chunk goes. */
static void free_finish(struct kmm *mm, struct kmm_execmem *x, struct exec_chunk *c, size_t g, size_t end, bool failed)
{
    if (c->single)
        return;
    if (failed) {
        c->quarantined++;
        struct kmm_msg m = { .len = 0 };
        kmm__msg_str(&m, "kmm: kmm_execmem_free: trap fill failed; quarantined ");
        kmm__msg_hex(&m, c->base + (g << EXEC_GRANULE_SHIFT));
        kmm__report(mm, &m);
        return;
    }
    kmm__exec_clear(c->used, g, end);
    kmm__exec_clear(c->head, g, g + 1);
    kmm__exec_clear(c->dead, g, g + 1);
    kmm__exec_tail_set(c, g, 0);
    c->used_granules -= end - g;
    c->heads--;
    c->dying--;
    if (c->hint > g)
        c->hint = g;
    kmm__exec_class_update(x, c);
}

/* Will c be released once its ours dead ranges (in flight in this call)
 * are cleared, so that they need no fill? Only if nothing else lives or
 * runs there: then it is unmapped before anyone can allocate there. */
static bool frees_empty(const struct exec_chunk *c, size_t ours)
{
    return !c->single && c->heads == c->quarantined + ours && c->writers == 1 && !c->growing;
}

void kmm_execmem_free(struct kmm *mm, void *p)
{
    static const char fn[] = "kmm_execmem_free";
    if (!p)
        return;
    mm_live(mm, fn);
    struct kmm_execmem *x = __atomic_load_n(&mm->execmem, __ATOMIC_ACQUIRE);
    if (!x)
        misuse(mm, fn, "not executable memory (none was ever allocated):", p);
    size_t g, end;
    const char *why;
    kmm_lock(mm, &mm->execmem_lock);
    struct exec_chunk *c = live_head(x, (uintptr_t)p, &g, &end, &why);
    if (!c) {
        kmm_unlock(mm, &mm->execmem_lock);
        misuse(mm, fn, why, p);
    }
    free_begin(x, c, g, end);
    if (c->single) {
        kmm__exec_put_unlock(mm, c);   /* unmapped and back to the cache: nothing to fill */
        return;
    }
    c->writers++;
    /* the space is trap-filled before it can be reused, unless this free
     * empties the chunk (checked again once the lock is back) */
    bool failed = false;
    if (!frees_empty(c, 1)) {
        kmm_unlock(mm, &mm->execmem_lock);
        failed = kmm__exec_fill(mm, c, (uintptr_t)p, (end - g) << EXEC_GRANULE_SHIFT) != 0;
        kmm_lock(mm, &mm->execmem_lock);
    }
    c->writers--;
    free_finish(mm, x, c, g, end, failed);
    kmm__exec_put_unlock(mm, c);
}

/* One allocation of a kmm_execmem_free_batch. The fields ours, skip and
 * todo are set at the first range of each chunk's run of ranges (the
 * ranges are sorted by address, so a chunk's are consecutive). */
struct batch_free {
    uintptr_t va;
    struct exec_chunk *c;
    uint32_t g, end;      /* granules (a packed chunk has 2^17) */
    uint32_t ours;        /* the batch's ranges in the chunk; 0 but at a run's first */
    bool skip;            /* the batch's frees empty the chunk: no fill */
    bool todo;            /* to fill in the pass under way */
    bool failed;          /* the range's fill failed */
};

static void sort_frees(struct batch_free *f, size_t n)
{
    size_t sorted = 1;
    while (sorted < n && f[sorted - 1].va <= f[sorted].va)
        sorted++;
    if (sorted >= n)
        return;   /* freed in address order, as a JIT dropping a batch of its code often does */
    for (size_t end = n, start = n / 2;;) {
        if (start > 0) {
            start--;
        } else {
            if (end <= 1)
                return;
            end--;
            struct batch_free t = f[0];
            f[0] = f[end];
            f[end] = t;
        }
        for (size_t root = start; 2 * root + 1 < end;) {
            size_t child = 2 * root + 1;
            if (child + 1 < end && f[child].va < f[child + 1].va)
                child++;
            if (f[root].va >= f[child].va)
                break;
            struct batch_free t = f[root];
            f[root] = f[child];
            f[child] = t;
            root = child;
        }
    }
}

/* Trap-fills the ranges of the chunks marked todo: one platform write for
 * all of them when the pieces' array can be had (hosted: a pwritev per run
 * of adjacent frames, so adjacent freed pieces go as one), else a write
 * per range. Lock not held; the chunks are kept by the batch's writer
 * counts. */
static void fill_batch(struct kmm *mm, struct batch_free *f, size_t n)
{
    struct kmm_execmem *x = mm->execmem;
    size_t bound = 0;
    bool todo = false;
    for (size_t k = 0; k < n; k++) {
        todo = f[k].ours ? f[k].todo : todo;
        if (todo && !f[k].c->single)
            bound += ((f[k].end - f[k].g) << EXEC_GRANULE_SHIFT) / EXEC_TRAP_BYTES + 2;
    }
    if (!bound)
        return;
    size_t held;
    struct kmm_frame_write *w = bound <= SIZE_MAX / sizeof(*w) ? kmm__exec_scratch_get(mm, bound * sizeof(*w), &held) : NULL;
    size_t nw = 0;
    for (size_t k = 0; k < n; k++) {
        struct exec_chunk *c = f[k].c;
        todo = f[k].ours ? f[k].todo : todo;
        if (!todo || c->single)
            continue;
        uintptr_t va = f[k].va, end = c->base + (f[k].end << EXEC_GRANULE_SHIFT);
        if (!w) {
            f[k].failed = kmm__exec_fill(mm, c, va, (size_t)(end - va)) != 0;
            continue;
        }
        while (va < end) {
            size_t take = end - va < EXEC_TRAP_BYTES ? (size_t)(end - va) : EXEC_TRAP_BYTES;
            size_t to_step = x->step_bytes - ((size_t)(va - c->base) & (x->step_bytes - 1));
            take = take < to_step ? take : to_step;
            w[nw].src = x->trap;
            kmm__exec_translate(x, c, va, take, w, &nw, bound);
            va += take;
        }
    }
    if (!w)
        return;
    bool failed = kmm__exec_frames_write(mm, w, nw) != 0;
    for (size_t k = 0; k < n; k++) {
        todo = f[k].ours ? f[k].todo : todo;
        if (todo && !f[k].c->single)
            f[k].failed = failed;
    }
    kmm__exec_scratch_put(mm, w, held);
}

void kmm_execmem_free_batch(struct kmm *mm, void *const *ptrs, size_t n)
{
    static const char fn[] = "kmm_execmem_free_batch";
    mm_live(mm, fn);
    if (!n)
        return;
    if (!ptrs)
        misuse(mm, fn, "no pointers (NULL):", NULL);
    struct kmm_execmem *x = __atomic_load_n(&mm->execmem, __ATOMIC_ACQUIRE);
    size_t m = 0, bytes;
    for (size_t i = 0; i < n; i++)
        m += ptrs[i] != NULL;
    if (!m)
        return;
    struct batch_free *f = NULL;
    size_t held;
    if (!x || __builtin_mul_overflow(m, sizeof(*f), &bytes) || !(f = kmm__exec_scratch_get(mm, bytes, &held))) {
        for (size_t i = 0; i < n; i++)   /* no memory for the sort: one by one */
            kmm_execmem_free(mm, ptrs[i]);
        return;
    }
    m = 0;
    for (size_t i = 0; i < n; i++)
        if (ptrs[i])
            f[m++] = (struct batch_free){ .va = (uintptr_t)ptrs[i] };
    sort_frees(f, m);
    kmm_lock(mm, &mm->execmem_lock);
    size_t first = 0;
    for (size_t k = 0; k < m; k++) {
        const char *why;
        size_t g, end;
        f[k].c = live_head(x, f[k].va, &g, &end, &why);
        if (!f[k].c) {
            kmm_unlock(mm, &mm->execmem_lock);
            misuse(mm, fn, why, (void *)f[k].va);
        }
        f[k].g = (uint32_t)g, f[k].end = (uint32_t)end;   /* a single chunk's: 0 and its granules, below 2^26 */
        free_begin(x, f[k].c, f[k].g, f[k].end);
        if (!k || f[k].c != f[first].c) {
            first = k;
            f[k].c->writers++;
        }
        f[first].ours++;
    }
    for (size_t k = 0; k < m; k++)
        if (f[k].ours) {
            f[k].skip = frees_empty(f[k].c, f[k].ours);
            f[k].todo = !f[k].skip;
        }
    kmm_unlock(mm, &mm->execmem_lock);
    fill_batch(mm, f, m);
    kmm_lock(mm, &mm->execmem_lock);
    /* a chunk thought emptied that took an allocation meanwhile: filled
     * after all, before its ranges become free space */
    bool refill = false;
    for (size_t k = 0; k < m; k++)
        if (f[k].ours) {
            f[k].todo = f[k].skip && !frees_empty(f[k].c, f[k].ours);
            refill |= f[k].todo;
        }
    if (refill) {
        kmm_unlock(mm, &mm->execmem_lock);
        fill_batch(mm, f, m);
        kmm_lock(mm, &mm->execmem_lock);
    }
    for (size_t k = 0; k < m; k++)
        free_finish(mm, x, f[k].c, f[k].g, f[k].end, f[k].failed);
    for (size_t k = 0; k < m; k++) {
        if (!f[k].ours)
            continue;
        f[k].c->writers--;
        kmm__exec_put_unlock(mm, f[k].c);
        kmm_lock(mm, &mm->execmem_lock);
    }
    kmm_unlock(mm, &mm->execmem_lock);
    kmm__exec_scratch_put(mm, f, held);
}

size_t kmm_execmem_usable_size(struct kmm *mm, const void *p)
{
    static const char fn[] = "kmm_execmem_usable_size";
    mm_live(mm, fn);
    struct kmm_execmem *x = __atomic_load_n(&mm->execmem, __ATOMIC_ACQUIRE);
    if (!x)
        misuse(mm, fn, "not executable memory (none was ever allocated):", p);
    size_t g, end;
    const char *why;
    kmm_lock(mm, &mm->execmem_lock);
    struct exec_chunk *c = live_head(x, (uintptr_t)p, &g, &end, &why);
    kmm_unlock(mm, &mm->execmem_lock);
    if (!c)
        misuse(mm, fn, why, p);
    return (end - g) << EXEC_GRANULE_SHIFT;
}

void kmm_execmem_stats(struct kmm *mm, struct kmm_execmem_stats *st)
{
    mm_live(mm, "kmm_execmem_stats");
    *st = (struct kmm_execmem_stats){ 0 };
    struct kmm_execmem *x = __atomic_load_n(&mm->execmem, __ATOMIC_ACQUIRE);
    if (!x)
        return;
    kmm_lock(mm, &mm->execmem_lock);
    *st = (struct kmm_execmem_stats){
        .allocations = x->allocations, .bytes = x->bytes, .used_bytes = x->used_bytes, .chunks = x->chunks,
        .pages = x->pages, .meta_bytes = x->meta_bytes, .allocs = x->allocs, .frees = x->frees,
        .writes = x->writes, .write_calls = load_relaxed(&x->write_calls),
    };
    kmm_unlock(mm, &mm->execmem_lock);
}

/* ---- check ---- */

/* The next chunk at or after slot *s (its first slot), or NULL. */
static struct exec_chunk *next_chunk(struct kmm_execmem *x, size_t *s)
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

static int check_fail(struct kmm *mm, const char *what, uintptr_t where)
{
    struct kmm_msg m = { .len = 0 };
    kmm__msg_str(&m, "kmm_check: execmem: ");
    kmm__msg_str(&m, what);
    kmm__msg_str(&m, " at ");
    kmm__msg_hex(&m, where);
    kmm__report(mm, &m);
    return -1;
}

/* One packed chunk's bitmaps against its counts; adds its live
 * allocations to the totals. */
static const char *check_packed(const struct kmm_execmem *x, const struct exec_chunk *c, size_t *allocs,
                                size_t *bytes, size_t *used_bytes)
{
    size_t mg = mapped_granules(x, c);
    if (kmm__exec_count(c->used, 0, EXEC_CHUNK_GRANULES) != c->used_granules)
        return "used granules differ from the used bitmap";
    if (kmm__exec_count(c->used, mg, EXEC_CHUNK_GRANULES))
        return "used granules beyond the mapped steps";
    if (kmm__exec_count(c->head, 0, EXEC_CHUNK_GRANULES) != c->heads)
        return "allocations differ from the head bitmap";
    if (kmm__exec_count(c->dead, 0, EXEC_CHUNK_GRANULES) != c->dying || c->quarantined > c->dying)
        return "dying allocations differ from the dead bitmap";
    for (size_t w = 0; w < EXEC_CHUNK_WORDS; w++)
        if ((c->head[w] & ~c->used[w]) || (c->dead[w] & ~c->head[w]))
            return "a head not used, or a dead granule not a head";
    if (c->used_granules && !kmm__exec_bit(c->head, kmm__exec_next(c->used, 0, EXEC_CHUNK_GRANULES, true)))
        return "used granules before the first head";
    if (c->cls != kmm__exec_class_of(EXEC_CHUNK_GRANULES - c->used_granules))
        return "on the wrong class list";
    for (size_t g = kmm__exec_next(c->head, 0, mg, true); g < mg; g = kmm__exec_next(c->head, g + 1, mg, true)) {
        size_t end = kmm__exec_extent_end(c, g);
        if (kmm__exec_bit(c->dead, g))
            continue;
        (*allocs)++;
        *used_bytes += (end - g) << EXEC_GRANULE_SHIFT;
        *bytes += ((end - g) << EXEC_GRANULE_SHIFT) - kmm__exec_tail_get(c, g);
    }
    return NULL;
}

int kmm__execmem_check(struct kmm *mm)
{
    struct kmm_execmem *x = __atomic_load_n(&mm->execmem, __ATOMIC_ACQUIRE);
    if (!x)
        return 0;
    /* the frames are checked against the unmapped cache after the lock is
     * dropped (its lock is never taken under this one): copied here */
    kmm_lock(mm, &mm->execmem_lock);
    size_t cap = x->pages / step_pages(mm, x) + 64;   /* what is mapped now, and room for grows meanwhile */
    kmm_unlock(mm, &mm->execmem_lock);
    kmm_phys_t *frames = kmm__meta_obj_alloc(mm, cap * sizeof(kmm_phys_t));
    size_t nframes = 0, chunks = 0, pages = 0, allocs = 0, bytes = 0, used_bytes = 0, meta = 0;
    const char *why = NULL;
    uintptr_t where = x->region;
    kmm_lock(mm, &mm->execmem_lock);
    size_t s = 0;
    for (struct exec_chunk *c; !why && (c = next_chunk(x, &s)) != NULL;) {
        size_t first = s - c->nslots;
        where = c->base;
        chunks++;
        pages += c->mapped_steps * step_pages(mm, x);
        meta += kmm__meta_obj_held(mm, c->meta_size);
        if (c->base != x->region + (first << EXEC_SLOT_SHIFT))
            why = "a chunk's base is not its slot's";
        else if (first == 0 || x->slot[first - 1] || first + c->nslots >= EXEC_NR_SLOTS || x->slot[first + c->nslots])
            why = "a chunk without a guard slot on each side";
        else if (c->mapped_steps > c->nsteps || c->nsteps * x->step_bytes > c->nslots * EXEC_SLOT_BYTES)
            why = "more steps mapped than the chunk holds";
        else if (c->single && (c->heads > 1 || !c->heads != !c->size || (!c->growing && c->mapped_steps != c->nsteps)))
            why = "a large allocation's chunk is inconsistent";
        else if (c->single && c->heads) {
            allocs++;
            bytes += c->size;
            used_bytes += (c->size + KMM_EXECMEM_ALIGN - 1) & ~(size_t)(KMM_EXECMEM_ALIGN - 1);
        } else if (!c->single) {
            why = check_packed(x, c, &allocs, &bytes, &used_bytes);
        }
        for (size_t i = 0; frames && i < c->mapped_steps && nframes < cap; i++)
            frames[nframes++] = c->step[i];
    }
    if (!why) {
        where = x->region;
        if (chunks != x->chunks || pages != x->pages)
            why = "the chunk or page count differs from the chunks'";
        else if (allocs != x->allocations || bytes != x->bytes || used_bytes != x->used_bytes)
            why = "the allocation counts differ from the bitmaps'";
        else if (meta + kmm__meta_obj_held(mm, sizeof(*x)) + kmm__meta_obj_held(mm, EXEC_TRAP_BYTES) +
                     (x->scratch ? kmm__meta_obj_held(mm, x->scratch_bytes) : 0) +
                     (x->spare ? kmm__meta_obj_held(mm, x->spare->meta_size) : 0) != x->meta_bytes)
            why = "meta_bytes differs from the chunks' records";
        else if (x->spare && (kmm__exec_count(x->spare->used, 0, EXEC_CHUNK_GRANULES) ||
                              kmm__exec_count(x->spare->head, 0, EXEC_CHUNK_GRANULES) ||
                              kmm__exec_count(x->spare->dead, 0, EXEC_CHUNK_GRANULES)))
            why = "the spare chunk record's bitmaps are not clear";
        else if (x->current && x->slot[(x->current->base - x->region) >> EXEC_SLOT_SHIFT] != x->current)
            why = "the current chunk is not in the region";
    }
    size_t step_pg = step_pages(mm, x);
    kmm_unlock(mm, &mm->execmem_lock);
    for (size_t i = 0; !why && frames && i < nframes; i++)
        if (kmm__unmapped_size(mm, OWNER_EXECMEM, frames[i]) != step_pg) {
            why = "a mapped step's frames are not a live execmem allocation of the unmapped cache";
            where = (uintptr_t)frames[i];
        }
    kmm__meta_obj_free(mm, frames, cap * sizeof(kmm_phys_t));
    return why ? check_fail(mm, why, where) : 0;
}

/* ---- destroy and fork ---- */

void kmm__execmem_destroy(struct kmm *mm)
{
    struct kmm_execmem *x = mm->execmem;
    if (!x)
        return;
    size_t s = 0;
    for (struct exec_chunk *c; (c = next_chunk(x, &s)) != NULL;) {
        chunk_free(mm, x, c, false);
    }
    mm->pf->vm_unreserve(mm->ctx, (void *)x->region, KMM_EXECMEM_REGION_BYTES);
    kmm__meta_obj_free(mm, x->scratch, x->scratch_bytes);
    if (x->spare)
        kmm__meta_obj_free(mm, x->spare, x->spare->meta_size);
    kmm__meta_obj_free(mm, (void *)x->trap, EXEC_TRAP_BYTES);
    mm->execmem = NULL;
    kmm__meta_obj_free(mm, x, sizeof(*x));
}

void kmm__execmem_fork_lock(struct kmm *mm, bool lock)
{
    (lock ? mm->pf->lock : mm->pf->unlock)(&mm->execmem_lock);
}

/* The child has only the forking thread. The others may have been outside
 * the lock: writing (their writer counts are void), filling a freed range
 * (dead: quarantined, as a failed fill is; its space is lost until the
 * chunk empties) or growing a chunk (the frames of the step being mapped
 * are lost to the child: taken from the unmapped cache, recorded nowhere; a
 * chunk still being made is dropped) or releasing a chunk (its record goes;
 * its frames not given back yet are lost). The code already installed stays
 * mapped in the child (the platform remaps it from its copy). */
void kmm__execmem_fork_child(struct kmm *mm)
{
    struct kmm_execmem *x = mm->execmem;
    if (!x)
        return;
    kmm_lock(mm, &mm->execmem_lock);
    x->current = NULL;
    for (size_t s = 0; s < EXEC_NR_SLOTS; s++) {
        struct exec_chunk *c = x->slot[s];
        if (!c || (s && x->slot[s - 1] == c))
            continue;
        if (c->released) {
            /* its releaser is gone: which of its frames went back is not
             * known, so none is given back (lost to the child) */
            slots_drop(x, c);
            kmm_unlock(mm, &mm->execmem_lock);   /* the child has one thread: nothing changes meanwhile */
            kmm__meta_obj_free(mm, c, c->meta_size);
            kmm_lock(mm, &mm->execmem_lock);
            continue;
        }
        c->writers = 0;
        c->growing = false;
        c->quarantined = c->dying;
        if (releasable(c)) {
            kmm__exec_put_unlock(mm, c);
            kmm_lock(mm, &mm->execmem_lock);
        }
    }
    kmm_unlock(mm, &mm->execmem_lock);
}
