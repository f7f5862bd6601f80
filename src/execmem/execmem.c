/* execmem.c - executable memory for JITs (kmm/execmem.h): the layer's
 * state, allocation, stats, check, destroy and fork. The region and its
 * chunks are region.c's, the bitmaps space.c's, frees free.c's, writes and
 * trap fill write.c's; the layout and the locking rules are in
 * execmem_internal.h. */
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
    size_t mg = exec_mapped_granules(x, c);
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
    struct exec_chunk *c = kmm__exec_chunk_new(mm, x, size, true);
    if (!c) {
        kmm__refuse(mm, KMM_ENOMEM, "kmm_execmem_alloc", NULL);
        return NULL;
    }
    kmm_lock(mm, &mm->execmem_lock);
    bool placed = kmm__exec_slots_take(x, c);
    if (placed) {
        c->growing = true;
        x->chunks++;
        x->meta_bytes += kmm__meta_obj_held(mm, c->meta_size);
    }
    kmm_unlock(mm, &mm->execmem_lock);
    int rc = placed ? kmm__exec_steps_grow(mm, x, c, 0, c->nsteps) : -KMM_ENOMEM;
    kmm_lock(mm, &mm->execmem_lock);
    if (rc) {
        if (placed) {
            kmm__exec_chunk_detach(mm, x, c);   /* nothing mapped: its slots can go at once */
            kmm__exec_slots_drop(x, c);
        }
        kmm_unlock(mm, &mm->execmem_lock);
        kmm__meta_obj_free(mm, c, c->meta_size);
        kmm__refuse(mm, KMM_ENOMEM, "kmm_execmem_alloc", NULL);
        return NULL;
    }
    c->growing = false;
    c->mapped_steps = c->nsteps;
    x->pages += c->nsteps * exec_step_pages(mm, x);
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
            size_t tail = kmm__exec_prev_one(grow->used, exec_mapped_granules(x, grow));
            tail = tail == SIZE_MAX ? 0 : tail + 1;
            from = grow->mapped_steps;
            to = (((tail + n) << EXEC_GRANULE_SHIFT) + x->step_bytes - 1) / x->step_bytes;
            grow->growing = true;
            kmm_unlock(mm, &mm->execmem_lock);
        } else {
            kmm_unlock(mm, &mm->execmem_lock);
            grow = kmm__exec_chunk_new(mm, x, 0, false);
            if (!grow)
                break;
            kmm_lock(mm, &mm->execmem_lock);
            if (!kmm__exec_slots_take(x, grow)) {
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
        int rc = kmm__exec_steps_grow(mm, x, grow, from, to);
        kmm_lock(mm, &mm->execmem_lock);
        grow->growing = false;
        if (rc) {
            kmm__exec_put_unlock(mm, grow);
            break;
        }
        grow->mapped_steps = to;
        x->pages += (to - from) * exec_step_pages(mm, x);
        kmm__exec_class_update(x, grow);
        x->current = grow;
        size_t mg = exec_mapped_granules(x, grow);
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
    size_t mg = exec_mapped_granules(x, c);
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
    size_t cap = x->pages / exec_step_pages(mm, x) + 64;   /* what is mapped now, and room for grows meanwhile */
    kmm_unlock(mm, &mm->execmem_lock);
    kmm_phys_t *frames = kmm__meta_obj_alloc(mm, cap * sizeof(kmm_phys_t));
    size_t nframes = 0, chunks = 0, pages = 0, allocs = 0, bytes = 0, used_bytes = 0, meta = 0;
    const char *why = NULL;
    uintptr_t where = x->region;
    kmm_lock(mm, &mm->execmem_lock);
    size_t s = 0;
    for (struct exec_chunk *c; !why && (c = kmm__exec_next_chunk(x, &s)) != NULL;) {
        size_t first = s - c->nslots;
        where = c->base;
        chunks++;
        pages += c->mapped_steps * exec_step_pages(mm, x);
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
    size_t step_pg = exec_step_pages(mm, x);
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
    for (struct exec_chunk *c; (c = kmm__exec_next_chunk(x, &s)) != NULL;) {
        kmm__exec_chunk_free(mm, x, c, false);
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
            kmm__exec_slots_drop(x, c);
            kmm_unlock(mm, &mm->execmem_lock);   /* the child has one thread: nothing changes meanwhile */
            kmm__meta_obj_free(mm, c, c->meta_size);
            kmm_lock(mm, &mm->execmem_lock);
            continue;
        }
        c->writers = 0;
        c->growing = false;
        c->quarantined = c->dying;
        if (kmm__exec_releasable(c)) {
            kmm__exec_put_unlock(mm, c);
            kmm_lock(mm, &mm->execmem_lock);
        }
    }
    kmm_unlock(mm, &mm->execmem_lock);
}
