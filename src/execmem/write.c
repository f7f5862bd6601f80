/* write.c - writing code and trap fill into frames mapped read+execute:
 * through the platform's frames_write (hosted: pwritev to the memfd),
 * never through a writable mapping. Each write is validated under the lock
 * against one live allocation, counts itself a writer of its chunk (which
 * keeps the chunk's frames from going back to the unmapped cache), and
 * writes with the lock dropped: a chunk's mapped steps never change while
 * it lives, so the translation needs no lock either. */
#include "execmem_internal.h"

int kmm__exec_frames_write(struct kmm *mm, const struct kmm_frame_write *w, size_t n)
{
    if (!n)
        return 0;
    add_relaxed(&mm->execmem->write_calls, 1);
    return pf_frames_write(mm, w, n);
}

void *kmm__exec_scratch_get(struct kmm *mm, size_t bytes, size_t *held)
{
    struct kmm_execmem *x = mm->execmem;
    void *p = NULL;
    kmm_lock(mm, &mm->execmem_lock);
    if (x->scratch && x->scratch_bytes >= bytes) {
        p = x->scratch, *held = x->scratch_bytes;
        x->scratch = NULL;
        x->meta_bytes -= kmm__meta_obj_held(mm, *held);
    }
    kmm_unlock(mm, &mm->execmem_lock);
    if (p)
        return p;
    /* a power of two from 4 KiB: batches of similar sizes reuse it */
    size_t size = 4096;
    while (size < bytes && size <= SIZE_MAX / 2)
        size *= 2;
    *held = size >= bytes ? size : bytes;
    return kmm__meta_obj_alloc(mm, *held);
}

void kmm__exec_scratch_put(struct kmm *mm, void *p, size_t held)
{
    struct kmm_execmem *x = mm->execmem;
    void *drop = p;
    size_t drop_bytes = held;
    if (held <= EXEC_SCRATCH_KEEP) {
        kmm_lock(mm, &mm->execmem_lock);
        if (!x->scratch || x->scratch_bytes < held) {
            drop = x->scratch, drop_bytes = x->scratch_bytes;
            x->meta_bytes -= drop ? kmm__meta_obj_held(mm, drop_bytes) : 0;
            x->scratch = p, x->scratch_bytes = held;
            x->meta_bytes += kmm__meta_obj_held(mm, held);
        }
        kmm_unlock(mm, &mm->execmem_lock);
    }
    kmm__meta_obj_free(mm, drop, drop_bytes);
}

bool kmm__exec_translate(const struct kmm_execmem *x, const struct exec_chunk *c, uintptr_t va, size_t len,
                         struct kmm_frame_write *w, size_t *nw, size_t cap)
{
    size_t off = (size_t)(va - c->base);
    const unsigned char *src = (const unsigned char *)w[*nw].src;
    while (len) {
        size_t in = off & (x->step_bytes - 1);
        size_t take = x->step_bytes - in < len ? x->step_bytes - in : len;
        if (*nw >= cap)
            return false;
        w[*nw] = (struct kmm_frame_write){ .phys = c->step[off / x->step_bytes] + in, .src = src, .len = take };
        (*nw)++;
        src += take, off += take, len -= take;
    }
    return true;
}

int kmm__exec_fill(struct kmm *mm, const struct exec_chunk *c, uintptr_t va, size_t len)
{
    struct kmm_execmem *x = mm->execmem;
    struct kmm_frame_write w[EXEC_PIECES];
    size_t nw = 0;
    while (len) {
        size_t take = len < EXEC_TRAP_BYTES ? len : EXEC_TRAP_BYTES;
        /* a piece of the trap buffer never crosses a step: both are powers
         * of two and va advances in whole pieces from a 16-byte boundary */
        size_t to_step = x->step_bytes - ((size_t)(va - c->base) & (x->step_bytes - 1));
        if (take > to_step)
            take = to_step;
        if (nw == EXEC_PIECES) {
            int rc = kmm__exec_frames_write(mm, w, nw);
            if (rc)
                return rc;
            nw = 0;
        }
        w[nw].src = x->trap;
        kmm__exec_translate(x, c, va, take, w, &nw, EXEC_PIECES);
        va += take, len -= take;
    }
    return kmm__exec_frames_write(mm, w, nw);
}

static void report_write(struct kmm *mm, const char *fn, const char *why, uintptr_t va, size_t len,
                         size_t piece, bool batch)
{
    struct kmm_msg m = { .len = 0 };
    kmm__msg_str(&m, "kmm: ");
    kmm__msg_str(&m, fn);
    kmm__msg_str(&m, ": ");
    if (batch) {
        kmm__msg_str(&m, "piece ");
        kmm__msg_dec(&m, piece);
        kmm__msg_str(&m, ": ");
    }
    kmm__msg_str(&m, why);
    kmm__msg_str(&m, ": [");
    kmm__msg_hex(&m, va);
    kmm__msg_str(&m, ", +");
    kmm__msg_dec(&m, len);
    kmm__msg_str(&m, "); nothing written");
    kmm__report(mm, &m);
    if (mm->pf->error)
        mm->pf->error(KMM_EINVAL);
}

static void report_io(struct kmm *mm, const char *fn, int rc)
{
    struct kmm_msg m = { .len = 0 };
    kmm__msg_str(&m, "kmm: ");
    kmm__msg_str(&m, fn);
    kmm__msg_str(&m, ": the platform's frames_write failed (error ");
    kmm__msg_dec(&m, (uint64_t)-rc);
    kmm__msg_str(&m, "); part of the code may be written");
    kmm__report(mm, &m);
    if (mm->pf->error)
        mm->pf->error(KMM_EIO);
}

/* Translates and writes [va, va + len) from src, EXEC_PIECES frame pieces
 * per platform call (one call up to EXEC_PIECES steps). */
static int write_range(struct kmm *mm, const struct exec_chunk *c, uintptr_t va, const void *src, size_t len)
{
    struct kmm_execmem *x = mm->execmem;
    struct kmm_frame_write w[EXEC_PIECES];
    const unsigned char *s = src;
    while (len) {
        size_t room = (size_t)EXEC_PIECES * x->step_bytes - ((size_t)(va - c->base) & (x->step_bytes - 1));
        size_t take = len < room ? len : room;
        size_t nw = 0;
        w[0].src = s;
        kmm__exec_translate(x, c, va, take, w, &nw, EXEC_PIECES);
        int rc = kmm__exec_frames_write(mm, w, nw);
        if (rc)
            return rc;
        va += take, s += take, len -= take;
    }
    return 0;
}

int kmm_execmem_write(struct kmm *mm, void *dst, const void *src, size_t len)
{
    static const char fn[] = "kmm_execmem_write";
    mm_live(mm, fn);
    struct kmm_execmem *x = __atomic_load_n(&mm->execmem, __ATOMIC_ACQUIRE);
    uintptr_t va = (uintptr_t)dst;
    if (!len)
        return 0;
    const char *why = "not inside a live allocation (no executable memory allocated)";
    struct exec_chunk *c = NULL;
    if (x && src && va + len > va) {
        kmm_lock(mm, &mm->execmem_lock);
        c = kmm__exec_validate(x, va, len, &why);
        if (c)
            c->writers++;
        kmm_unlock(mm, &mm->execmem_lock);
    } else if (x) {
        why = src ? "the range wraps around the address space" : "no source (NULL)";
    }
    if (!c) {
        report_write(mm, fn, why, va, len, 0, false);
        return -KMM_EINVAL;
    }
    int rc = write_range(mm, c, va, src, len);
    if (!rc && mm->pf->icache_sync)
        mm->pf->icache_sync(mm->ctx, dst, len);
    kmm_lock(mm, &mm->execmem_lock);
    x->writes++;
    c->writers--;
    kmm__exec_put_unlock(mm, c);
    if (rc) {
        report_io(mm, fn, rc);
        return -KMM_EIO;
    }
    return 0;
}

/* ---- batches ---- */

static bool piece_before(const struct kmm_execmem_piece *p, size_t a, size_t b)
{
    uintptr_t da = (uintptr_t)p[a].dst, db = (uintptr_t)p[b].dst;
    return da < db || (da == db && a < b);   /* equal destinations: the caller's order */
}

static bool index_before(const void *pieces, const void *a, const void *b)
{
    return piece_before(pieces, *(const size_t *)a, *(const size_t *)b);
}

/* Writes the frame pieces w[0..nw) (ascending): each run of two or more
 * adjacent in the frames, up to EXEC_STAGE_BYTES, is copied into stage and
 * written as one piece; the others as they are, together. */
static int write_staged(struct kmm *mm, const struct kmm_frame_write *w, size_t nw, unsigned char *stage)
{
    size_t lone = 0;   /* w[lone..i): pieces not staged, not written yet */
    for (size_t i = 0; i < nw;) {
        size_t j = i + 1, bytes = w[i].len;
        while (j < nw && w[j].phys == w[j - 1].phys + w[j - 1].len && bytes + w[j].len <= EXEC_STAGE_BYTES)
            bytes += w[j++].len;
        if (j - i < 2) {
            i = j;
            continue;
        }
        int rc = kmm__exec_frames_write(mm, w + lone, i - lone);
        if (rc)
            return rc;
        for (size_t k = i, at = 0; k < j; at += w[k].len, k++)
            __builtin_memcpy(stage + at, w[k].src, w[k].len);
        struct kmm_frame_write run = { .phys = w[i].phys, .src = stage, .len = bytes };
        if ((rc = kmm__exec_frames_write(mm, &run, 1)) != 0)
            return rc;
        i = lone = j;
    }
    return kmm__exec_frames_write(mm, w + lone, nw - lone);
}

int kmm_execmem_write_batch(struct kmm *mm, const struct kmm_execmem_piece *pieces, size_t n)
{
    static const char fn[] = "kmm_execmem_write_batch";
    mm_live(mm, fn);
    if (!n)
        return 0;
    struct kmm_execmem *x = __atomic_load_n(&mm->execmem, __ATOMIC_ACQUIRE);
    if (!x || !pieces) {
        const char *why = pieces ? "not inside a live allocation (no executable memory allocated)" : "no pieces (NULL)";
        report_write(mm, fn, why, pieces ? (uintptr_t)pieces[0].dst : 0, pieces ? pieces[0].len : 0, 0, true);
        return -KMM_EINVAL;
    }
    /* the frame pieces: one per step a piece touches */
    size_t nframes = 0;
    for (size_t i = 0; i < n; i++) {
        uintptr_t va = (uintptr_t)pieces[i].dst;
        size_t len = pieces[i].len;
        if (len && (!pieces[i].src || va + len <= va)) {
            report_write(mm, fn, pieces[i].src ? "the range wraps around the address space" : "no source (NULL)", va,
                         len, i, true);
            return -KMM_EINVAL;
        }
        /* chunks and steps are aligned to the step: its boundaries crossed */
        size_t steps = len ? (size_t)((va + len - 1) / x->step_bytes - va / x->step_bytes) + 1 : 0;
        if (__builtin_add_overflow(nframes, steps, &nframes)) {
            report_write(mm, fn, "too large", va, len, i, true);
            return -KMM_EINVAL;
        }
    }
    /* and the stage last */
    size_t bytes;
    if (__builtin_mul_overflow(n, sizeof(size_t) + sizeof(struct exec_chunk *), &bytes) ||
        __builtin_mul_overflow(nframes, sizeof(struct kmm_frame_write), &nframes) ||
        __builtin_add_overflow(bytes, nframes, &bytes) || __builtin_add_overflow(bytes, EXEC_STAGE_BYTES, &bytes)) {
        kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
        return -KMM_ENOMEM;
    }
    size_t held;
    char *scratch = kmm__exec_scratch_get(mm, bytes, &held);
    if (!scratch) {
        kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
        return -KMM_ENOMEM;
    }
    struct kmm_frame_write *w = (struct kmm_frame_write *)(void *)scratch;
    size_t cap = nframes / sizeof(struct kmm_frame_write);
    struct exec_chunk **chunk = (struct exec_chunk **)(void *)(scratch + nframes);
    size_t *idx = (size_t *)(void *)(chunk + n);
    unsigned char *stage = (unsigned char *)(void *)(idx + n);
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    kmm__exec_sort(idx, n, sizeof(*idx), index_before, pieces);

    /* validate every piece before anything is written; a run of pieces in
     * one chunk counts as one writer of it (kept at its first piece) */
    kmm_lock(mm, &mm->execmem_lock);
    struct exec_chunk *last = NULL;
    uintptr_t prev_end = 0;
    for (size_t k = 0; k < n; k++) {
        const struct kmm_execmem_piece *p = &pieces[idx[k]];
        chunk[k] = NULL;
        if (!p->len)
            continue;
        const char *why = "overlaps another piece";
        struct exec_chunk *c = (uintptr_t)p->dst >= prev_end
                                   ? kmm__exec_validate(x, (uintptr_t)p->dst, p->len, &why)
                                   : NULL;
        prev_end = (uintptr_t)p->dst + p->len;
        if (!c) {
            for (size_t j = 0; j < k; j++)
                if (chunk[j])
                    chunk[j]->writers--;
            kmm_unlock(mm, &mm->execmem_lock);
            report_write(mm, fn, why, (uintptr_t)p->dst, p->len, idx[k], true);
            kmm__exec_scratch_put(mm, scratch, held);
            return -KMM_EINVAL;
        }
        if (c != last) {
            c->writers++;
            chunk[k] = c;
            last = c;
        }
    }
    kmm_unlock(mm, &mm->execmem_lock);

    size_t nw = 0;
    const struct exec_chunk *c = NULL;
    for (size_t k = 0; k < n; k++) {
        const struct kmm_execmem_piece *p = &pieces[idx[k]];
        c = chunk[k] ? chunk[k] : c;
        if (!p->len)
            continue;
        w[nw].src = p->src;
        kmm__exec_translate(x, c, (uintptr_t)p->dst, p->len, w, &nw, cap);
    }
    int rc = write_staged(mm, w, nw, stage);
    if (!rc && mm->pf->icache_sync) {
        /* one sync per run of pieces adjacent in the address space */
        for (size_t k = 0; k < n;) {
            uintptr_t start = (uintptr_t)pieces[idx[k]].dst, end = start + pieces[idx[k]].len;
            for (k++; k < n && (uintptr_t)pieces[idx[k]].dst <= end; k++) {
                uintptr_t e = (uintptr_t)pieces[idx[k]].dst + pieces[idx[k]].len;
                end = e > end ? e : end;
            }
            if (end > start)
                mm->pf->icache_sync(mm->ctx, (void *)start, (size_t)(end - start));
        }
    }
    kmm_lock(mm, &mm->execmem_lock);
    x->writes += n;
    for (size_t k = 0; k < n; k++) {
        if (!chunk[k])
            continue;
        chunk[k]->writers--;
        kmm__exec_put_unlock(mm, chunk[k]);
        kmm_lock(mm, &mm->execmem_lock);
    }
    kmm_unlock(mm, &mm->execmem_lock);
    kmm__exec_scratch_put(mm, scratch, held);
    if (rc) {
        report_io(mm, fn, rc);
        return -KMM_EIO;
    }
    return 0;
}
