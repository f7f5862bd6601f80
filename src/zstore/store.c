/* store.c - the compressed page store (kmm/zstore.h): pages by index on a
 * zsmalloc pool, as Linux's zram stores a block device's pages.
 *
 * The table: one 16-byte entry per index, in kmm's metadata memory.
 *   word   the object's handle, or the repeated word of a same-filled page
 *   flags  ZE_LOCK | kind (ZE_SAME, ZE_OBJ, ZE_OBJ | ZE_HUGE) | size
 * An entry with no kind bit is empty (word 0, size 0): the index reads as
 * zeros. size is the object's length (the compressed stream, or a page for
 * a huge one); 0 for a same-filled page.
 *
 * Locking (outermost first):
 *   an entry's lock bit  ->  the pool's lock (inside kmm_zs_*)
 *   ctx_lock: a leaf, held only to push or pop a codec context
 * The lock bit is a spin lock taken with a CAS (bit_spin_lock in zram): it
 * guards word and the flags' other bits, and is held only for a swap, or
 * for a read's copy or decompression out of the object (which must stay
 * alive meanwhile). A write compresses and allocates before taking it and
 * frees the old object after dropping it; nothing allocates under it, and
 * no other entry's bit is taken while it is held.
 *
 * Codec contexts: a stack of free ones per direction under ctx_lock. A
 * thread pops one, or makes one when the stack is empty (so there are as
 * many as threads ever compressed at once), works with it under no lock and
 * pushes it back. One of each is made with the store, so a read never fails
 * for want of one: when none is free and no new one can be made, it waits
 * for one to come back.
 *
 * Counters are relaxed atomics. pages_stored, same_pages, huge_pages and
 * compr_data_size change under the entry's lock with the entry, so they
 * agree with the table whenever no call is running (kmm_zstore_check).
 */
#include "zsmalloc/zs_internal.h"   /* kmm__zs_handle_ok, for the checker */
#include "zstore/zstore_internal.h"

#include <kmm/zstore.h>

#include <sched.h>
#include <string.h>

#define ZE_LOCK  (1ull << 63)
#define ZE_SAME  (1ull << 62)   /* word is the page's repeated word */
#define ZE_OBJ   (1ull << 61)   /* word is a handle */
#define ZE_HUGE  (1ull << 60)   /* with ZE_OBJ: the page stored whole */
#define ZE_SIZE  0xffffffffull
#define ZE_KNOWN (ZE_LOCK | ZE_SAME | ZE_OBJ | ZE_HUGE | ZE_SIZE)

struct zentry {
    uint64_t word;                /* protected by the lock bit of flags */
    uint64_t flags;               /* atomic */
};
_Static_assert(sizeof(struct zentry) == 16, "16 bytes of metadata per index");

struct kmm_zstore {
    struct kmm *mm;
    struct kmm_zspool *pool;
    struct zentry *table;
    uint64_t nr_pages;
    size_t table_bytes;
    size_t page_size;
    enum zcodec_algo algo;
    uint64_t mem_limit;           /* atomic; 0 = none */
    uint64_t huge_threshold;      /* atomic */

    struct kmm_lock ctx_lock;
    struct zcodec_ctx *free_cctx; /* protected by ctx_lock */
    struct zcodec_ctx *free_dctx; /* protected by ctx_lock; none for LZ4 */
    size_t nr_cctx, nr_dctx;      /* contexts made (free or in use); protected by ctx_lock */

    /* atomic counters (see the top of the file) */
    uint64_t pages_stored, same_pages, huge_pages, compr_data_size, mem_used_max;
    uint64_t writes, reads, write_failed, limit_refused;
};

/* ---- entries -------------------------------------------------------------- */

/* Takes e's lock bit; returns the flags (without it). The holder works for
 * a swap or one page's decompression: spin a while, then yield the CPU to
 * it (a preempted holder would otherwise be waited for a whole slice). */
static uint64_t entry_lock(struct zentry *e)
{
    uint64_t f = load_relaxed(&e->flags);
    for (unsigned spins = 0;; spins++) {
        if (!(f & ZE_LOCK)) {
            if (__atomic_compare_exchange_n(&e->flags, &f, f | ZE_LOCK, true, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
                return f;
            continue;
        }
        if (spins < 128)
            cpu_relax();
        else
            sched_yield();
        f = load_relaxed(&e->flags);
    }
}

static inline void entry_unlock(struct zentry *e, uint64_t flags)
{
    __atomic_store_n(&e->flags, flags & ~ZE_LOCK, __ATOMIC_RELEASE);
}

/* The counters of what an entry of flags holds, added (sign 1) or taken
 * away (sign -1); under the entry's lock. */
static void entry_count(struct kmm_zstore *zs, uint64_t flags, int sign)
{
    if (!(flags & (ZE_SAME | ZE_OBJ)))
        return;
    uint64_t one = sign > 0 ? 1 : (uint64_t)-1;
    add_relaxed(&zs->pages_stored, one);
    if (flags & ZE_SAME)
        add_relaxed(&zs->same_pages, one);
    if (flags & ZE_HUGE)
        add_relaxed(&zs->huge_pages, one);
    add_relaxed(&zs->compr_data_size, one * (flags & ZE_SIZE));
}

/* ---- pages ---------------------------------------------------------------- */

/* Is the page one word repeated? (*word: that word.) Word-wise; the page
 * may be unaligned. */
static bool page_same_filled(const void *page, size_t page_size, uint64_t *word)
{
    const unsigned char *p = page;
    uint64_t first, w;
    memcpy(&first, p, sizeof(first));
    for (size_t i = sizeof(first); i < page_size; i += sizeof(w)) {
        memcpy(&w, p + i, sizeof(w));
        if (w != first)
            return false;
    }
    *word = first;
    return true;
}

static void page_fill(void *page, size_t page_size, uint64_t word)
{
    unsigned char *p = page;
    for (size_t i = 0; i < page_size; i += sizeof(word))
        memcpy(p + i, &word, sizeof(word));
}

/* ---- codec contexts --------------------------------------------------------- */

/* A free context of the stack at *head, or a new one; NULL when none is
 * free and none can be made. */
static struct zcodec_ctx *ctx_get(struct kmm_zstore *zs, struct zcodec_ctx **head, size_t *made, bool decompress)
{
    struct kmm *mm = zs->mm;
    kmm_lock(mm, &zs->ctx_lock);
    struct zcodec_ctx *ctx = *head;
    if (ctx)
        *head = ctx->next;
    kmm_unlock(mm, &zs->ctx_lock);
    if (ctx)
        return ctx;
    ctx = kmm__zcodec_new(mm, zs->algo, zs->page_size, decompress);
    if (ctx) {
        kmm_lock(mm, &zs->ctx_lock);
        (*made)++;
        kmm_unlock(mm, &zs->ctx_lock);
    }
    return ctx;
}

static void ctx_put(struct kmm_zstore *zs, struct zcodec_ctx **head, struct zcodec_ctx *ctx)
{
    kmm_lock(zs->mm, &zs->ctx_lock);
    ctx->next = *head;
    *head = ctx;
    kmm_unlock(zs->mm, &zs->ctx_lock);
}

/* A decompression context, waiting for one to come back if none is free
 * and none can be made (there is always one: the store's first). */
static struct zcodec_ctx *dctx_get(struct kmm_zstore *zs)
{
    for (;;) {
        struct zcodec_ctx *ctx = ctx_get(zs, &zs->free_dctx, &zs->nr_dctx, true);
        if (ctx)
            return ctx;
        sched_yield();
    }
}

static void ctx_free_all(struct kmm_zstore *zs, struct zcodec_ctx *ctx)
{
    while (ctx) {
        struct zcodec_ctx *next = ctx->next;
        kmm__zcodec_free(zs->mm, ctx);
        ctx = next;
    }
}

/* ---- the store -------------------------------------------------------------- */

static void track_mem_used_max(struct kmm_zstore *zs)
{
    uint64_t used = kmm__zs_mem_used(zs->pool);
    uint64_t max = load_relaxed(&zs->mem_used_max);
    while (used > max &&
           !__atomic_compare_exchange_n(&zs->mem_used_max, &max, used, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

static bool index_ok(struct kmm_zstore *zs, uint64_t index, const char *fn)
{
    if (KMM_LIKELY(index < zs->nr_pages))
        return true;
    kmm__refuse(zs->mm, KMM_EINVAL, fn, "index beyond the store");
    return false;
}

struct kmm_zstore *kmm_zstore_create(struct kmm *mm, const char *algo, uint64_t nr_pages)
{
    static const char fn[] = "kmm_zstore_create";
    mm_live(mm, fn);
    enum zcodec_algo a = kmm__zcodec_parse(algo);
    if (a == ZCODEC_NONE) {
        kmm__refuse(mm, KMM_EINVAL, fn, "unknown algorithm (\"lz4\" or \"zstd\")");
        return NULL;
    }
    if (nr_pages == 0) {
        kmm__refuse(mm, KMM_EINVAL, fn, "a store of 0 pages");
        return NULL;
    }
    size_t table_bytes;
    if (nr_pages > SIZE_MAX || __builtin_mul_overflow((size_t)nr_pages, sizeof(struct zentry), &table_bytes)) {
        kmm__refuse(mm, KMM_ENOMEM, fn, "nr_pages: a table larger than the address space");
        return NULL;
    }
    struct kmm_zstore *zs = kmm__meta_alloc(mm, sizeof(*zs));
    if (!zs)
        goto nomem;
    zs->mm = mm;
    zs->algo = a;
    zs->nr_pages = nr_pages;
    zs->page_size = mm->page_size;
    zs->huge_threshold = mm->page_size / 16 * 15;
    zs->table_bytes = table_bytes;
    zs->table = kmm__meta_alloc(mm, table_bytes);
    if (!zs->table)
        goto nomem;
    zs->pool = kmm_zs_create(mm, "zstore");
    if (!zs->pool)
        goto nomem;
    zs->free_cctx = kmm__zcodec_new(mm, a, zs->page_size, false);
    if (!zs->free_cctx)
        goto nomem;
    zs->nr_cctx = 1;
    if (kmm__zcodec_needs_dctx(a)) {
        zs->free_dctx = kmm__zcodec_new(mm, a, zs->page_size, true);
        if (!zs->free_dctx)
            goto nomem;
        zs->nr_dctx = 1;
    }
    mm->pf->lock_init(&zs->ctx_lock);
    return zs;
nomem:
    if (zs) {
        ctx_free_all(zs, zs->free_cctx);
        ctx_free_all(zs, zs->free_dctx);
        if (zs->pool)
            kmm_zs_destroy(zs->pool);
        kmm__meta_free(mm, zs->table, table_bytes);
        kmm__meta_free(mm, zs, sizeof(*zs));
    }
    kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
    return NULL;
}

void kmm_zstore_destroy(struct kmm_zstore *zs)
{
    if (!zs)
        return;
    struct kmm *mm = zs->mm;
    mm_live(mm, "kmm_zstore_destroy");
    /* object by object rather than by kmm_zs_destroy alone: a handle the
     * table got wrong aborts here, not later */
    for (uint64_t i = 0; i < zs->nr_pages; i++)
        if (zs->table[i].flags & ZE_OBJ)
            kmm_zs_free(zs->pool, zs->table[i].word);
    kmm_zs_destroy(zs->pool);
    ctx_free_all(zs, zs->free_cctx);
    ctx_free_all(zs, zs->free_dctx);
    mm->pf->lock_fini(&zs->ctx_lock);
    kmm__meta_free(mm, zs->table, zs->table_bytes);
    kmm__meta_free(mm, zs, sizeof(*zs));
}

/* A failed write: counted, errno set, err returned. */
static int write_fail(struct kmm_zstore *zs, int err)
{
    add_relaxed(&zs->write_failed, 1);
    if (err == KMM_ENOSPC)
        add_relaxed(&zs->limit_refused, 1);
    kmm__refuse(zs->mm, err, "kmm_zstore_write", NULL);
    return -err;
}

int kmm_zstore_write(struct kmm_zstore *zs, uint64_t index, const void *page)
{
    struct kmm *mm = zs->mm;
    mm_live(mm, "kmm_zstore_write");
    if (!index_ok(zs, index, "kmm_zstore_write"))
        return -KMM_EINVAL;
    add_relaxed(&zs->writes, 1);

    uint64_t word, flags;
    uint64_t handle = 0;
    if (page_same_filled(page, zs->page_size, &word)) {
        flags = ZE_SAME;
    } else {
        struct zcodec_ctx *ctx = ctx_get(zs, &zs->free_cctx, &zs->nr_cctx, false);
        if (!ctx)
            return write_fail(zs, KMM_ENOMEM);
        size_t len = kmm__zcodec_compress(mm, zs->algo, ctx, page, zs->page_size);
        const void *src = ctx->out;
        flags = ZE_OBJ;
        if (len > load_relaxed(&zs->huge_threshold)) {
            src = page;
            len = zs->page_size;
            flags |= ZE_HUGE;
        }
        flags |= len;
        /* as zram: allocate, then refuse if the pool has passed the limit
         * (writers at once may each see the others' objects, so they may
         * refuse more than needed, never pass it by more than their own) */
        uint64_t limit = load_relaxed(&zs->mem_limit);
        handle = kmm_zs_malloc(zs->pool, len, 0);
        if (handle && limit && kmm__zs_mem_used(zs->pool) > limit) {
            kmm_zs_free(zs->pool, handle);
            ctx_put(zs, &zs->free_cctx, ctx);
            return write_fail(zs, KMM_ENOSPC);
        }
        if (handle)
            kmm_zs_write(zs->pool, handle, 0, src, len);   /* within the object: cannot fail */
        ctx_put(zs, &zs->free_cctx, ctx);
        if (!handle)
            return write_fail(zs, KMM_ENOMEM);
        word = handle;
    }

    struct zentry *e = &zs->table[index];
    uint64_t old = entry_lock(e);
    uint64_t old_word = e->word;
    e->word = word;
    entry_count(zs, old, -1);
    entry_count(zs, flags, 1);
    entry_unlock(e, flags);
    if (old & ZE_OBJ)
        kmm_zs_free(zs->pool, old_word);
    if (handle)
        track_mem_used_max(zs);
    return 0;
}

static KMM_NORETURN void read_corrupt(struct kmm_zstore *zs, uint64_t index, uint64_t handle, const char *why)
{
    struct kmm_msg m = { .len = 0 };
    kmm__msg_str(&m, "kmm: kmm_zstore_read: index ");
    kmm__msg_dec(&m, index);
    kmm__msg_str(&m, " (handle ");
    kmm__msg_hex(&m, handle);
    kmm__msg_str(&m, ") is corrupt: ");
    kmm__msg_str(&m, why);
    kmm__fatal(zs->mm, &m);
}

int kmm_zstore_read(struct kmm_zstore *zs, uint64_t index, void *page)
{
    mm_live(zs->mm, "kmm_zstore_read");
    if (!index_ok(zs, index, "kmm_zstore_read"))
        return -KMM_EINVAL;
    add_relaxed(&zs->reads, 1);
    struct zentry *e = &zs->table[index];
    const size_t ps = zs->page_size;
    struct zcodec_ctx *dctx = NULL;
    for (;;) {
        uint64_t f = entry_lock(e);
        uint64_t w = e->word;
        bool compressed = (f & (ZE_OBJ | ZE_HUGE)) == ZE_OBJ;
        if (compressed && !dctx && kmm__zcodec_needs_dctx(zs->algo)) {
            /* a context is not taken under the lock bit (it may wait):
             * take one and look again */
            entry_unlock(e, f);
            dctx = dctx_get(zs);
            continue;
        }
        if (f & ZE_SAME) {
            page_fill(page, ps, w);
        } else if (!(f & ZE_OBJ)) {
            memset(page, 0, ps);
        } else if (f & ZE_HUGE) {
            kmm_zs_read(zs->pool, w, 0, page, ps);
        } else {
            const char *why = "decompressed length is not a page";
            const void *src = kmm_zs_map(zs->pool, w, KMM_ZS_RO);
            size_t n = kmm__zcodec_decompress(zs->algo, dctx, src, f & ZE_SIZE, page, ps, &why);
            kmm_zs_unmap(zs->pool, w);
            if (n != ps)
                read_corrupt(zs, index, w, why);
        }
        entry_unlock(e, f);
        break;
    }
    if (dctx)
        ctx_put(zs, &zs->free_dctx, dctx);
    return 0;
}

int kmm_zstore_discard(struct kmm_zstore *zs, uint64_t index)
{
    mm_live(zs->mm, "kmm_zstore_discard");
    if (!index_ok(zs, index, "kmm_zstore_discard"))
        return -KMM_EINVAL;
    struct zentry *e = &zs->table[index];
    uint64_t old = entry_lock(e);
    uint64_t old_word = e->word;
    e->word = 0;
    entry_count(zs, old, -1);
    entry_unlock(e, 0);
    if (old & ZE_OBJ)
        kmm_zs_free(zs->pool, old_word);
    return 0;
}

void kmm_zstore_set_limit(struct kmm_zstore *zs, uint64_t bytes)
{
    mm_live(zs->mm, "kmm_zstore_set_limit");
    store_relaxed(&zs->mem_limit, bytes);
}

int kmm_zstore_set_huge_threshold(struct kmm_zstore *zs, uint64_t bytes)
{
    mm_live(zs->mm, "kmm_zstore_set_huge_threshold");
    if (bytes > zs->page_size) {
        kmm__refuse(zs->mm, KMM_EINVAL, "kmm_zstore_set_huge_threshold", "a threshold above the page size");
        return -KMM_EINVAL;
    }
    store_relaxed(&zs->huge_threshold, bytes);
    return 0;
}

size_t kmm_zstore_compact(struct kmm_zstore *zs)
{
    mm_live(zs->mm, "kmm_zstore_compact");
    return kmm_zs_compact(zs->pool);
}

void kmm_zstore_stats(struct kmm_zstore *zs, struct kmm_zstore_stats *st)
{
    mm_live(zs->mm, "kmm_zstore_stats");
    struct kmm_zs_stats ps;
    kmm_zs_stats(zs->pool, &ps);
    memset(st, 0, sizeof(*st));
    uint64_t stored = load_relaxed(&zs->pages_stored);
    st->orig_data_size = stored * zs->page_size;
    st->compr_data_size = load_relaxed(&zs->compr_data_size);
    st->mem_used_total = kmm__zs_mem_used(zs->pool);
    st->mem_limit = load_relaxed(&zs->mem_limit);
    st->mem_used_max = load_relaxed(&zs->mem_used_max);
    if (st->mem_used_max < st->mem_used_total)   /* the pool grew by a write not yet tracked */
        st->mem_used_max = st->mem_used_total;
    st->same_pages = load_relaxed(&zs->same_pages);
    st->pages_compacted = ps.pages_compacted;
    st->huge_pages = load_relaxed(&zs->huge_pages);
    st->pages_stored = stored;
    st->nr_pages = zs->nr_pages;
    st->page_size = zs->page_size;
    st->huge_threshold = load_relaxed(&zs->huge_threshold);
    st->writes = load_relaxed(&zs->writes);
    st->reads = load_relaxed(&zs->reads);
    st->write_failed = load_relaxed(&zs->write_failed);
    st->limit_refused = load_relaxed(&zs->limit_refused);
    memcpy(st->algo, kmm__zcodec_name(zs->algo), strlen(kmm__zcodec_name(zs->algo)) + 1);
}

struct kmm_zspool *kmm_zstore_pool(struct kmm_zstore *zs)
{
    mm_live(zs->mm, "kmm_zstore_pool");
    return zs->pool;
}

/* ---- the checker -------------------------------------------------------------- */

static int entry_fail(struct kmm_zstore *zs, uint64_t index, const char *what)
{
    struct kmm_msg m = { .len = 0 };
    kmm__msg_str(&m, "zstore: index ");
    kmm__msg_dec(&m, index);
    kmm__msg_str(&m, ": ");
    kmm__msg_str(&m, what);
    return kmm__check_fail(zs->mm, m.buf, UINT64_MAX);
}

static int counter_fail(struct kmm_zstore *zs, const char *name, uint64_t counted, uint64_t found)
{
    struct kmm_msg m = { .len = 0 };
    kmm__msg_str(&m, "zstore: ");
    kmm__msg_str(&m, name);
    kmm__msg_str(&m, " is ");
    kmm__msg_dec(&m, counted);
    kmm__msg_str(&m, ", the table holds ");
    kmm__msg_dec(&m, found);
    return kmm__check_fail(zs->mm, m.buf, UINT64_MAX);
}

/* What is wrong with an entry of flags f and word w, or NULL. */
static const char *entry_problem(struct kmm_zstore *zs, uint64_t f, uint64_t w)
{
    uint64_t size = f & ZE_SIZE;
    if (f & ~ZE_KNOWN)
        return "unknown flag bits";
    if (f & ZE_SAME)
        return f & (ZE_OBJ | ZE_HUGE) ? "same-filled and an object at once"
               : size                 ? "same-filled with a size"
                                      : NULL;
    if (!(f & ZE_OBJ))
        return f & ZE_HUGE ? "huge but no object" : size || w ? "empty with a size or a word" : NULL;
    if (size == 0 || size > zs->page_size)
        return "object size 0 or above a page";
    if ((f & ZE_HUGE) && size != zs->page_size)
        return "huge object smaller than a page";
    if (!kmm__zs_handle_ok(zs->pool, w))
        return "handle not live in the pool";
    if (kmm_zs_usable_size(zs->pool, w) < size)
        return "object smaller than its size";
    return NULL;
}

int kmm_zstore_check(struct kmm_zstore *zs)
{
    struct kmm *mm = zs->mm;
    mm_live(mm, "kmm_zstore_check");
    uint64_t stored = 0, same = 0, huge = 0, objects = 0, compr = 0;
    for (uint64_t i = 0; i < zs->nr_pages; i++) {
        struct zentry *e = &zs->table[i];
        uint64_t f = entry_lock(e);
        uint64_t w = e->word;
        const char *problem = entry_problem(zs, f, w);
        entry_unlock(e, f);
        if (problem)
            return entry_fail(zs, i, problem);
        stored += (f & (ZE_SAME | ZE_OBJ)) != 0;
        same += (f & ZE_SAME) != 0;
        huge += (f & ZE_HUGE) != 0;
        objects += (f & ZE_OBJ) != 0;
        compr += f & ZE_SIZE;
    }
    if (load_relaxed(&zs->pages_stored) != stored)
        return counter_fail(zs, "pages_stored", load_relaxed(&zs->pages_stored), stored);
    if (load_relaxed(&zs->same_pages) != same)
        return counter_fail(zs, "same_pages", load_relaxed(&zs->same_pages), same);
    if (load_relaxed(&zs->huge_pages) != huge)
        return counter_fail(zs, "huge_pages", load_relaxed(&zs->huge_pages), huge);
    if (load_relaxed(&zs->compr_data_size) != compr)
        return counter_fail(zs, "compr_data_size", load_relaxed(&zs->compr_data_size), compr);
    struct kmm_zs_stats ps;
    kmm_zs_stats(zs->pool, &ps);
    if (ps.objects != objects)
        return counter_fail(zs, "the pool's object count", ps.objects, objects);

    size_t free_cctx = 0, free_dctx = 0, made_cctx, made_dctx;
    kmm_lock(mm, &zs->ctx_lock);
    for (struct zcodec_ctx *c = zs->free_cctx; c && free_cctx <= zs->nr_cctx; c = c->next)
        free_cctx++;
    for (struct zcodec_ctx *c = zs->free_dctx; c && free_dctx <= zs->nr_dctx; c = c->next)
        free_dctx++;
    made_cctx = zs->nr_cctx;
    made_dctx = zs->nr_dctx;
    kmm_unlock(mm, &zs->ctx_lock);
    if (free_cctx != made_cctx || free_dctx != made_dctx)
        return kmm__check_fail(mm, "zstore: codec contexts made and free ones differ (one lost, or one in use)",
                               UINT64_MAX);
    return kmm_check(mm);
}
