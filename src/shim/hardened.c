/* hardened.c - KMM_OPTIONS=hardened: catch what the default mode cannot.
 *
 * The default mode already aborts, with the address, on every free of
 * something malloc did not give or gave back already, and a guard page
 * sits behind every large buffer. This mode adds, at the cost of touching
 * every object at allocation and free (bench/suite reports the cost):
 *
 *  - A canary behind every small object. An object of n bytes is a
 *    kmm_malloc slot of at least n + 8: the slot's last 8 bytes hold
 *    secret ^ address (first byte zero, so a string that fills the usable
 *    size still ends), and malloc_usable_size stops before them. free
 *    checks it: an overflow of even one byte past the usable size is
 *    reported ("canary overwritten").
 *  - Freed small objects are zeroed and held in a quarantine before kmm
 *    gets them back: a read after free sees zeros, a second free of an
 *    object in the quarantine is reported, and an object leaving it is
 *    checked to be still zero, so a write after free is reported with the
 *    object and the offset. Objects are handed out zeroed.
 *  - Large buffers (kmm_vmalloc) are unmapped at free (KMM_VMALLOC_STRICT)
 *    and new ones placed after the last (KMM_VMALLOC_SPREAD), so a stale
 *    pointer faults instead of reaching a newer buffer; they are zero when
 *    handed out (KMM_ZERO).
 *  - malloc(0) returns a unique address in a region that is never
 *    accessible (the zero region): any read or write faults.
 *  - free_sized, free_aligned_sized and C++'s sized deletes check the size
 *    against the object's class.
 *
 * The quarantine is SHARDS rings, each a lock and the objects in the order
 * they were freed, a thread always using the same ring, so its oldest free
 * is the next to leave. Whether an object is in it is not looked up in the
 * rings: its slab's held byte says so (kmm__malloc_quarantine: 2 instead
 * of 1), so a second free, a realloc or a malloc_usable_size of it from
 * any thread is reported by kmm's own checks, with no lock taken. Only
 * slab objects (up to the largest class, 3632 bytes at 4 KiB pages, with
 * the canary) go through it; kmm_malloc's whole-page objects (up to
 * SHIM_SMALL_PAGES) are zeroed and freed at once, and vmalloc areas above
 * are unmapped at once. The rings and
 * the zero region's bitmap are in kmm's metadata memory (the platform's
 * meta_alloc), out of reach of an overflow of a user's buffer. Locks: a
 * ring's lock is taken alone and nothing is called under it; an object
 * leaving is checked and freed after it is dropped. fork holds every ring
 * lock (prepare) so that the child finds the rings whole.
 */
#include "shim_internal.h"

#define CANARY_BYTES 8

#define SHARDS 16
#define RING 256                        /* objects per ring */
#define RING_BYTES (512 * 1024)         /* bytes per ring: the quarantine holds at most 8 MiB */

/* Objects in the order they were freed. A thread always puts its frees in
 * the same ring (its own unless there are more threads than rings), so its
 * oldest free is the next to leave whatever sizes it frees. (Rings chosen
 * by address left objects in a ring that no longer received frees: a
 * thread reusing the same few objects recycled them through one ring.) */
struct ring {
    struct kmm_lock lock;
    /* protected by lock: */
    void *obj[RING];                    /* oldest at head */
    size_t bytes_of[RING];
    unsigned head, count;
    size_t bytes;
};

/* The zero region: 1 GiB of addresses that are never accessible, handed out
 * 16 bytes at a time, never twice. */
#define ZERO_BYTES ((size_t)1 << 30)
#define ZERO_STEP 16
#define ZERO_SLOTS (ZERO_BYTES / ZERO_STEP)

struct hard {
    struct kmm *mm;
    uint64_t secret;
    struct ring ring[SHARDS];
    unsigned next_ring;                 /* round robin over the threads (atomic) */
    size_t small_max;                   /* the largest slab class: objects with a canary up to it */
    uintptr_t zero_base;                /* 0 if it could not be reserved */
    size_t zero_next;                   /* slots handed out (atomic) */
    uint64_t *zero_live;                /* one bit per slot (atomic) */
};

static struct hard *hard;

/* ---- canaries ------------------------------------------------------------------- */

static inline uint64_t canary_at(uintptr_t where)
{
    uint64_t c = hard->secret ^ (where * 0x9e3779b97f4a7c15ull);
    return c & ~(uint64_t)0xff;   /* the first byte (little-endian) zero: strings end */
}

static inline void canary_write(void *p, size_t slot)
{
    uintptr_t where = (uintptr_t)p + slot - CANARY_BYTES;
    uint64_t c = canary_at(where);
    __builtin_memcpy((void *)where, &c, sizeof(c));
}

static inline bool canary_ok(const void *p, size_t slot)
{
    uintptr_t where = (uintptr_t)p + slot - CANARY_BYTES;
    uint64_t c;
    __builtin_memcpy(&c, (const void *)where, sizeof(c));
    return c == canary_at(where);
}

/* ---- the quarantine -------------------------------------------------------------- */

/* The first nonzero byte of [p, p + len), or len. */
static size_t first_nonzero(const void *p, size_t len)
{
    const unsigned char *b = p;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        __builtin_memcpy(&w, b + i, 8);
        if (w)
            break;
    }
    for (; i < len; i++)
        if (b[i])
            return i;
    return len;
}

/* An object leaves the quarantine: still zero, or someone wrote to it
 * after it was freed. */
static void release(struct kmm *mm, void *p, size_t slot)
{
    size_t at = first_nonzero(p, slot);
    if (KMM_UNLIKELY(at < slot)) {
        struct kmm_msg m = { .len = 0 };
        kmm__msg_str(&m, "kmm: free: write after free detected: the object at ");
        kmm__msg_hex(&m, (uint64_t)(uintptr_t)p);
        kmm__msg_str(&m, " (");
        kmm__msg_dec(&m, slot - CANARY_BYTES);
        kmm__msg_str(&m, " bytes) was written at offset ");
        kmm__msg_dec(&m, at);
        kmm__msg_str(&m, " while in the quarantine");
        kmm__fatal(mm, &m);
    }
    if (!kmm__malloc_quarantine(mm, p, false))
        kmm__shim_fatal("free", "quarantined object no longer marked so (metadata corrupted?):", p);
    kmm_free(mm, p);
}

static _Thread_local unsigned my_ring __attribute__((tls_model("initial-exec")));   /* 1 + index; 0 none yet */

/* Puts a zeroed object of slot bytes into the quarantine: marked so in its
 * slab (a free, realloc or malloc_usable_size of it from any thread then
 * reports it as freed), then at the tail of the thread's ring; the oldest
 * that no longer fit leave it, checked and freed with no lock held. */
static void quarantine(struct kmm *mm, void *p, size_t slot, const char *fn)
{
    if (KMM_UNLIKELY(!kmm__malloc_quarantine(mm, p, true)))
        kmm__shim_fatal(fn, "double free (freed by two threads at once):", p);
    if (KMM_UNLIKELY(!my_ring))
        my_ring = 1 + __atomic_fetch_add(&hard->next_ring, 1, __ATOMIC_RELAXED) % SHARDS;
    struct ring *r = &hard->ring[my_ring - 1];
    void *out[4];
    size_t out_bytes[4];
    unsigned nout = 0;
    kmm_lock(mm, &r->lock);
    while (nout < 4 && r->count && (r->count == RING || r->bytes + slot > RING_BYTES)) {
        out[nout] = r->obj[r->head];
        out_bytes[nout++] = r->bytes_of[r->head];
        r->bytes -= r->bytes_of[r->head];
        r->head = (r->head + 1) % RING;
        r->count--;
    }
    unsigned tail = (r->head + r->count) % RING;
    r->obj[tail] = p;
    r->bytes_of[tail] = slot;
    r->count++;
    r->bytes += slot;
    kmm_unlock(mm, &r->lock);
    for (unsigned i = 0; i < nout; i++)
        release(mm, out[i], out_bytes[i]);
}

static void fork_prepare(void)
{
    for (unsigned i = 0; i < SHARDS; i++)
        kmm_lock(hard->mm, &hard->ring[i].lock);
}

static void fork_after(void)
{
    for (unsigned i = SHARDS; i-- > 0;)
        kmm_unlock(hard->mm, &hard->ring[i].lock);
}

/* ---- the zero region ------------------------------------------------------------- */

bool kmm__hard_zero_owns(const void *p)
{
    return hard && hard->zero_base && (uintptr_t)p - hard->zero_base < ZERO_BYTES;
}

static void *zero_alloc(void)
{
    if (!hard->zero_base)
        return NULL;
    size_t i = __atomic_fetch_add(&hard->zero_next, 1, __ATOMIC_RELAXED);
    if (i >= ZERO_SLOTS)
        return NULL;   /* 64 M zero-size allocations made: an ordinary object serves */
    __atomic_fetch_or(&hard->zero_live[i / 64], (uint64_t)1 << (i % 64), __ATOMIC_RELAXED);
    return (void *)(hard->zero_base + i * ZERO_STEP);
}

static void zero_free(const void *p, const char *fn)
{
    size_t off = (uintptr_t)p - hard->zero_base;
    size_t i = off / ZERO_STEP;
    if (off % ZERO_STEP)
        kmm__shim_fatal(fn, "pointer into the middle of a zero-size allocation:", p);
    uint64_t bit = (uint64_t)1 << (i % 64);
    uint64_t was = __atomic_fetch_and(&hard->zero_live[i / 64], ~bit, __ATOMIC_RELAXED);
    if (!(was & bit))
        kmm__shim_fatal(fn, i < __atomic_load_n(&hard->zero_next, __ATOMIC_RELAXED)
                                ? "double free of a zero-size allocation:"
                                : "pointer never from malloc (in the zero-size region):",
                        p);
}

static bool zero_live(const void *p)
{
    size_t off = (uintptr_t)p - hard->zero_base;
    size_t i = off / ZERO_STEP;
    return off % ZERO_STEP == 0 && (__atomic_load_n(&hard->zero_live[i / 64], __ATOMIC_RELAXED) >> (i % 64)) & 1;
}

/* ---- the entries' hardened paths ---------------------------------------------------- */

void kmm__hard_init(struct kmm *mm)
{
    struct hard *h = mm->pf->meta_alloc(mm->ctx, sizeof(*h));
    if (!h)
        kmm__shim_fatal("malloc", "hardened mode: no memory for the quarantine; bytes:", (void *)sizeof(*h));
    h->mm = mm;
    h->secret = kmm__os_random64() | 1;
    for (unsigned i = 0; i < SHARDS; i++)
        mm->pf->lock_init(&h->ring[i].lock);
    h->small_max = kmm_malloc_max_slab_size(mm);
    void *zero = kmm__os_reserve_none(ZERO_BYTES);
    h->zero_live = zero ? mm->pf->meta_alloc(mm->ctx, ZERO_SLOTS / 8) : NULL;
    h->zero_base = h->zero_live ? (uintptr_t)zero : 0;
    hard = h;
    kmm__os_atfork(fork_prepare, fork_after, fork_after);
}

/* Small: a slab object (its held byte carries the quarantine's mark);
 * anything larger is a vmalloc area, unmapped at free. */
/* Small: kmm_malloc's, with a canary (a slab object, or whole pages up to
 * SHIM_SMALL_PAGES); larger ones are vmalloc areas, unmapped at free. */
static inline bool is_small(struct kmm *mm, size_t size, size_t align)
{
    if (size > kmm__shim_small_max - CANARY_BYTES)
        return false;
    size_t class = kmm_malloc_good_size(mm, size + CANARY_BYTES, align);
    return class && class <= kmm__shim_small_max;
}

void *kmm__hard_alloc(struct kmm *mm, size_t size, size_t align, bool zero, const char *fn)
{
    (void)fn;
    (void)zero;   /* everything is handed out zeroed */
    if (size == 0 && align <= KMM_MALLOC_ALIGN) {
        void *z = zero_alloc();
        if (z)
            return z;
    }
    if (is_small(mm, size, align)) {
        void *p = kmm__shim_small(mm, size + CANARY_BYTES, align);
        if (p) {
            size_t slot = kmm__usable_size_as(mm, p, fn);
            __builtin_memset(p, 0, slot - CANARY_BYTES);
            canary_write(p, slot);
            return p;
        }
    }
    if (size > SIZE_MAX - mm->page_size - align)
        return NULL;
    return kmm__shim_large(mm, size, align, KMM_ZERO);
}

/* The slot size of live small object p, its canary checked; 0 for a large
 * buffer. Reports and aborts on anything else. */
static size_t checked_slot(struct kmm *mm, const void *p, const char *fn)
{
    if (kmm_is_vmalloc_addr(mm, p))
        return 0;
    size_t slot = kmm__usable_size_as(mm, p, fn);   /* aborts on a freed, interior or foreign pointer */
    if (KMM_UNLIKELY(!canary_ok(p, slot))) {
        struct kmm_msg m = { .len = 0 };
        kmm__msg_str(&m, "kmm: ");
        kmm__msg_str(&m, fn);
        kmm__msg_str(&m, ": canary overwritten (a write past the end) of the object at ");
        kmm__msg_hex(&m, (uint64_t)(uintptr_t)p);
        kmm__msg_str(&m, " (");
        kmm__msg_dec(&m, slot - CANARY_BYTES);
        kmm__msg_str(&m, " usable bytes)");
        kmm__fatal(mm, &m);
    }
    return slot;
}

void kmm__hard_free(struct kmm *mm, void *p, size_t size, size_t align, const char *fn)
{
    if (!p)
        return;
    if (kmm__hard_zero_owns(p)) {
        if (size > 1)   /* free_sized(p, n) of a malloc(0): 0 (or 1, new's) */
            kmm__shim_fatal(fn, "sized free with a size other than the object's (0) at", p);
        zero_free(p, fn);
        return;
    }
    size_t slot = checked_slot(mm, p, fn);
    if (size) {
        /* the size told must be one that gives this object: a small one's
         * class, or a large one's pages */
        size_t have = slot ? slot : kmm__usable_size_as(mm, p, fn);
        bool same = slot ? size <= slot - CANARY_BYTES && kmm_malloc_good_size(mm, size + CANARY_BYTES, align) == slot
                         : size <= have && size > have - mm->page_size;
        if (!same)
            kmm__shim_fatal(fn, "sized free with a size that does not match the object's, at", p);
    }
    if (!slot) {
        kmm_free(mm, p);   /* unmapped at once (strict) */
        return;
    }
    __builtin_memset(p, 0, slot);
    if (slot <= hard->small_max)
        quarantine(mm, p, slot, fn);
    else
        kmm_free(mm, p);   /* whole pages: no held byte to mark; kmm's page metadata catches a second free */
}

size_t kmm__hard_usable(struct kmm *mm, const void *p, const char *fn)
{
    if (kmm__hard_zero_owns(p)) {
        if (!zero_live(p))
            kmm__shim_fatal(fn, "pointer to a freed or never allocated zero-size object:", p);
        return 0;
    }
    size_t slot = checked_slot(mm, p, fn);
    return slot ? slot - CANARY_BYTES : kmm__usable_size_as(mm, p, fn);
}

/* In place when the object stays what it is: a small one whose slot still
 * holds the size and its canary (more than half of it used, or a smaller
 * class would do), a large one resized by vmalloc (in place when the
 * address space after it is free, which SPREAD makes the common case; its
 * tail unmapped at once when it shrinks; new bytes zeroed). Otherwise a
 * new object, the contents copied, the old one freed as free() does. */
void *kmm__hard_realloc(struct kmm *mm, void *p, size_t size, const char *fn)
{
    size_t old = kmm__hard_usable(mm, p, fn);   /* checks p first */
    if (!kmm__hard_zero_owns(p)) {
        bool large = kmm_is_vmalloc_addr(mm, p);
        if (!large && size <= old && size + CANARY_BYTES > (old + CANARY_BYTES) / 2)
            return p;
        if (large && !is_small(mm, size, 0))
            return kmm_realloc(mm, p, size, KMM_ZERO);
    }
    void *q = kmm__hard_alloc(mm, size, 0, false, fn);
    if (!q)
        return NULL;
    __builtin_memcpy(q, p, old < size ? old : size);
    kmm__hard_free(mm, p, 0, 0, fn);
    return q;
}
