/* free.c - kmm_execmem_free and kmm_execmem_free_batch: the space is
 * marked dead under the lock, trap-filled outside it (one platform write
 * for a whole batch), then free again; a free that empties its chunk skips
 * the fill (the chunk is unmapped instead). kmm_execmem_usable_size. */
#include "execmem_internal.h"

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

/* The live allocation starting at p: its chunk and granules [*g, *end),
 * with execmem_lock held on return; anything else is reported as fn's
 * misuse and aborts. */
static struct exec_chunk *live_head_lock(struct kmm *mm, const char *fn, const void *p, struct kmm_execmem **xp,
                                         size_t *g, size_t *end)
{
    mm_live(mm, fn);
    struct kmm_execmem *x = __atomic_load_n(&mm->execmem, __ATOMIC_ACQUIRE);
    if (!x)
        kmm__fatal_page(mm, fn, "not executable memory (none was ever allocated):", p);
    const char *why;
    kmm_lock(mm, &mm->execmem_lock);
    struct exec_chunk *c = kmm__exec_live_head(x, (uintptr_t)p, g, end, &why);
    if (!c) {
        kmm_unlock(mm, &mm->execmem_lock);
        kmm__fatal_page(mm, fn, why, p);
    }
    *xp = x;
    return c;
}

void kmm_execmem_free(struct kmm *mm, void *p)
{
    static const char fn[] = "kmm_execmem_free";
    if (!p)
        return;
    struct kmm_execmem *x;
    size_t g, end;
    struct exec_chunk *c = live_head_lock(mm, fn, p, &x, &g, &end);
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

static bool free_before(const void *ctx, const void *a, const void *b)
{
    (void)ctx;
    return ((const struct batch_free *)a)->va < ((const struct batch_free *)b)->va;
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
    struct kmm_frame_write *w = NULL;
    if (bound <= SIZE_MAX / sizeof(*w))
        w = kmm__exec_scratch_get(mm, bound * sizeof(*w), &held);
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
        kmm__fatal_page(mm, fn, "no pointers (NULL):", NULL);
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
    /* freed in address order (as a JIT dropping a batch of its code often does): no sorting */
    kmm__exec_sort(f, m, sizeof(*f), free_before, NULL);
    kmm_lock(mm, &mm->execmem_lock);
    size_t first = 0;
    for (size_t k = 0; k < m; k++) {
        const char *why;
        size_t g, end;
        f[k].c = kmm__exec_live_head(x, f[k].va, &g, &end, &why);
        if (!f[k].c) {
            kmm_unlock(mm, &mm->execmem_lock);
            kmm__fatal_page(mm, fn, why, (void *)f[k].va);
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
    struct kmm_execmem *x;
    size_t g, end;
    live_head_lock(mm, fn, p, &x, &g, &end);
    kmm_unlock(mm, &mm->execmem_lock);
    return (end - g) << EXEC_GRANULE_SHIFT;
}
