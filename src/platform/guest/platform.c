/* platform.c - struct kmm_platform for the guest kernel.
 *
 * Physical memory: the usable (type 1) ranges of the firmware's e820 map,
 * as the multiboot loader passes it, less the metadata pool (machine.c). The kernel image and the boot
 * structures are in those ranges; guest_reserve_boot_memory takes them out
 * with kmm_reserve_pages, the way a kernel reserves what it was loaded into.
 * Direct map, vmalloc space, and pages out of the direct map: paging.c.
 * Locks: spinlocks (one CPU today; they are real so that the code is right
 * the day a second CPU runs). */
#include "guest.h"

int guest_errno;

/* ---- the platform hooks ---------------------------------------------------------- */
static int guest_open(const struct kmm_platform *pf, const struct kmm_config *cfg, struct kmm_memory *mem,
                      void **ctx)
{
    (void)pf;
    uint64_t ps = cfg->page_size ? cfg->page_size : 4096;
    struct guest_e820 r[GUEST_MAX_E820];
    unsigned n = guest_memory_ranges(r, GUEST_MAX_E820, ps);
    *mem = (struct kmm_memory){ .direct_map = (uintptr_t)GUEST_DIRECT_MAP };
    /* more ranges than kmm takes: the largest ones, in address order */
    while (n > KMM_MAX_RANGES) {
        unsigned smallest = 0;
        for (unsigned i = 1; i < n; i++)
            if (r[i].end - r[i].start < r[smallest].end - r[smallest].start)
                smallest = i;
        guest_printf("kmm guest: more than %u usable ranges; [%lx, %lx) left out\n", KMM_MAX_RANGES,
                     (unsigned long)r[smallest].start, (unsigned long)r[smallest].end);
        for (unsigned i = smallest; i + 1 < n; i++)
            r[i] = r[i + 1];
        n--;
    }
    for (unsigned i = 0; i < n; i++)
        mem->ranges[mem->nr_ranges++] = (struct kmm_range){ r[i].start, r[i].end };
    *ctx = &guest_machine;
    return mem->nr_ranges ? 0 : -KMM_ENOMEM;
}

static void guest_close(void *ctx) { (void)ctx; }

/* A test-and-set lock; pause while it is held. guest_locks_held counts the
 * locks this (only) CPU holds: at 0, a fault did not come from inside a
 * critical section of kmm, and the fault handler may call kmm to explain it. */
unsigned guest_locks_held;

static void spin_init(struct kmm_lock *l) { __atomic_store_n((int *)l->opaque, 0, __ATOMIC_RELAXED); }
static void spin_lock(struct kmm_lock *l)
{
    int *word = (int *)l->opaque;
    /* One CPU and no interrupts: a held lock is held by this very code path,
     * and spinning would never end. Say so instead. (With more CPUs this
     * becomes a plain spin: while (exchange) pause.) */
    if (__atomic_exchange_n(word, 1, __ATOMIC_ACQUIRE))
        guest_panic("spinlock %p taken again by the CPU that holds it (a deadlock)", (void *)l);
    guest_locks_held++;
}
static void spin_unlock(struct kmm_lock *l)
{
    guest_locks_held--;
    __atomic_store_n((int *)l->opaque, 0, __ATOMIC_RELEASE);
}

static void guest_report(void *ctx, const char *line)
{
    (void)ctx;
    guest_printf("kmm: %s\n", line);
}

static void guest_error(int err) { guest_errno = err; }

static void guest_fatal(void *ctx, const char *msg)
{
    (void)ctx;
    guest_panic("%s", msg);
}

static int guest_barrier_all(void *ctx)
{
    (void)ctx;   /* one CPU */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    return 0;
}

/* ---- address space ------------------------------------------------------------
 * A region handed out in page-aligned ranges: first fit among ranges given
 * back (sorted, merged where they touch), else from the never-used top.
 * Reusing freed ranges keeps the page tables under them in use: the tables
 * are never freed, so a space that only grew would run the pool dry (a
 * secret or execmem reservation per allocation). */
#define VA_FREE_SLOTS 256

struct va_space {
    uint64_t start, end, top;        /* [start, top) handed out at some time; [top, end) never */
    unsigned nr_free;
    struct guest_e820 free[VA_FREE_SLOTS];   /* type unused */
    uint64_t dropped_bytes;          /* given back when free[] was full: lost, counted */
    struct kmm_lock lock;
};

static struct va_space vmalloc_space = { .start = GUEST_VMALLOC_START, .end = GUEST_VMALLOC_END,
                                         .top = GUEST_VMALLOC_START };
static struct va_space meta_space = { .start = GUEST_META_START, .end = GUEST_META_END, .top = GUEST_META_START };

static uint64_t va_take(struct va_space *s, uint64_t len, uint64_t align)
{
    if (!len || (len & 4095) || (align & (align - 1)) || align > (1ull << 40))
        return 0;
    if (align < 4096)
        align = 4096;
    uint64_t at = 0;
    spin_lock(&s->lock);
    for (unsigned i = 0; i < s->nr_free && !at; i++) {
        struct guest_e820 *f = &s->free[i];
        uint64_t a = (f->start + align - 1) & ~(align - 1);
        if (a < f->start || a + len < a || a + len > f->end)
            continue;
        if (a > f->start && a + len < f->end) {   /* a hole on both sides: needs one more slot */
            if (s->nr_free == VA_FREE_SLOTS)
                continue;
            for (unsigned j = s->nr_free++; j > i + 1; j--)
                s->free[j] = s->free[j - 1];
            s->free[i + 1] = (struct guest_e820){ a + len, f->end, 0 };
            f->end = a;
        } else if (a > f->start) {
            f->end = a;
        } else if (a + len < f->end) {
            f->start = a + len;
        } else {
            for (unsigned j = i; j + 1 < s->nr_free; j++)
                s->free[j] = s->free[j + 1];
            s->nr_free--;
        }
        at = a;
    }
    if (!at) {
        uint64_t a = (s->top + align - 1) & ~(align - 1);
        if (a >= s->top && a + len > a && a + len <= s->end) {
            if (a > s->top && s->nr_free < VA_FREE_SLOTS)
                s->free[s->nr_free++] = (struct guest_e820){ s->top, a, 0 };   /* the alignment gap */
            else if (a > s->top)
                s->dropped_bytes += a - s->top;
            s->top = a + len;
            at = a;
        }
    }
    spin_unlock(&s->lock);
    return at;
}

static void va_give(struct va_space *s, uint64_t at, uint64_t len)
{
    spin_lock(&s->lock);
    if (at + len == s->top) {   /* the last range handed out: back to the never-used part */
        s->top = at;
        goto fold_top;
    }
    unsigned i = 0;
    while (i < s->nr_free && s->free[i].start < at)
        i++;
    bool joins_prev = i > 0 && s->free[i - 1].end == at, joins_next = i < s->nr_free && s->free[i].start == at + len;
    if (joins_prev && joins_next) {
        s->free[i - 1].end = s->free[i].end;
        for (unsigned j = i; j + 1 < s->nr_free; j++)
            s->free[j] = s->free[j + 1];
        s->nr_free--;
    } else if (joins_prev) {
        s->free[i - 1].end = at + len;
    } else if (joins_next) {
        s->free[i].start = at;
    } else if (s->nr_free < VA_FREE_SLOTS) {
        for (unsigned j = s->nr_free++; j > i; j--)
            s->free[j] = s->free[j - 1];
        s->free[i] = (struct guest_e820){ at, at + len, 0 };
    } else {
        s->dropped_bytes += len;
    }
fold_top:   /* a free range that reaches the top goes back to the never-used part */
    if (s->nr_free && s->free[s->nr_free - 1].end == s->top) {
        s->top = s->free[s->nr_free - 1].start;
        s->nr_free--;
    }
    spin_unlock(&s->lock);
}

static void *guest_vm_reserve(void *ctx, size_t len, size_t align)
{
    (void)ctx;
    return (void *)(uintptr_t)va_take(&vmalloc_space, (len + 4095) & ~(uint64_t)4095, align);
}

static int guest_vm_unmap(void *ctx, void *va, size_t len)
{
    (void)ctx;
    return guest_unmap((uint64_t)(uintptr_t)va, len);
}

static void guest_vm_unreserve(void *ctx, void *va, size_t len)
{
    guest_vm_unmap(ctx, va, len);
    va_give(&vmalloc_space, (uint64_t)(uintptr_t)va, (len + 4095) & ~(uint64_t)4095);
}

/* ---- kmm's metadata --------------------------------------------------------------
 * Frames from the metadata pool (a bitmap, first fit from a hint), mapped
 * at addresses of the metadata space with an unmapped guard page after
 * each piece: out of the direct map, so no overflow of memory kmm hands out
 * reaches them, and one piece's overflow faults instead of reaching the
 * next. meta_alloc is rare (kmm_create, then 4 KiB chunks as layers grow). */
static uint64_t meta_frame_used[GUEST_META_POOL_MAX_FRAMES / 64];
static uint64_t meta_frame_hint, meta_frames_in_use;

static uint64_t meta_frame_take(void)
{
    uint64_t frames = (guest_machine.meta_pool_end - guest_machine.meta_pool_start) >> 12;
    if (frames > GUEST_META_POOL_MAX_FRAMES)
        frames = GUEST_META_POOL_MAX_FRAMES;
    for (uint64_t k = 0; k < frames; k++) {
        uint64_t i = (meta_frame_hint + k) % frames;
        if (!(meta_frame_used[i / 64] & (1ull << (i % 64)))) {
            meta_frame_used[i / 64] |= 1ull << (i % 64);
            meta_frame_hint = i + 1;
            meta_frames_in_use++;
            return guest_machine.meta_pool_start + (i << 12);
        }
    }
    return UINT64_MAX;
}

static void meta_frame_give(uint64_t pa)
{
    uint64_t i = (pa - guest_machine.meta_pool_start) >> 12;
    if (pa < guest_machine.meta_pool_start || pa >= guest_machine.meta_pool_end ||
        !(meta_frame_used[i / 64] & (1ull << (i % 64))))
        guest_panic("meta_free: frame %p is no metadata frame in use", (void *)(uintptr_t)pa);
    meta_frame_used[i / 64] &= ~(1ull << (i % 64));
    meta_frames_in_use--;
}

static struct kmm_lock meta_lock;

/* Unmaps [va, va + mapped) and gives its frames back. */
static void meta_unmap(uint64_t va, uint64_t mapped)
{
    for (uint64_t off = 0; off < mapped; off += 4096)
        meta_frame_give(guest_translate(va + off));
    guest_unmap(va, mapped);
}

static void *guest_meta_alloc(void *ctx, size_t len)
{
    (void)ctx;
    uint64_t bytes = (len + 4095) & ~(uint64_t)4095;
    uint64_t va = va_take(&meta_space, bytes + 4096, 4096);   /* + the guard page */
    if (!va)
        return NULL;
    spin_lock(&meta_lock);
    uint64_t off = 0;
    for (; off < bytes; off += 4096) {
        uint64_t pa = meta_frame_take();
        if (pa == UINT64_MAX)
            break;
        if (guest_map(va + off, pa, 4096, KMM_PROT_READ | KMM_PROT_WRITE) != 0) {
            meta_frame_give(pa);
            break;
        }
    }
    if (off < bytes) {   /* out of frames or page tables: nothing kept */
        meta_unmap(va, off);
        spin_unlock(&meta_lock);
        va_give(&meta_space, va, bytes + 4096);
        return NULL;
    }
    spin_unlock(&meta_lock);
    __builtin_memset((void *)(uintptr_t)va, 0, bytes);
    return (void *)(uintptr_t)va;
}

static void guest_meta_free(void *ctx, void *p, size_t len)
{
    (void)ctx;
    uint64_t va = (uint64_t)(uintptr_t)p, bytes = (len + 4095) & ~(uint64_t)4095;
    spin_lock(&meta_lock);
    meta_unmap(va, bytes);
    spin_unlock(&meta_lock);
    va_give(&meta_space, va, bytes + 4096);
}

void guest_platform_stats(struct guest_platform_stats *st)
{
    st->meta_pool_bytes = guest_machine.meta_pool_end - guest_machine.meta_pool_start;
    st->meta_bytes_in_use = meta_frames_in_use << 12;
    st->vmalloc_free_ranges = vmalloc_space.nr_free;
    st->vmalloc_dropped_bytes = vmalloc_space.dropped_bytes;
}

/* KMM_MAP_SECRET needs nothing more here: no swap, no core dump, no fork.
 * KMM_MAP_NOPOPULATE neither: entries are written now either way. */
static int guest_vm_map(void *ctx, void *va, kmm_phys_t phys, size_t len, unsigned prot)
{
    (void)ctx;
    return guest_map((uint64_t)(uintptr_t)va, phys, len, prot & (KMM_PROT_READ | KMM_PROT_WRITE | KMM_PROT_EXEC));
}

static int guest_direct_unmap(void *ctx, kmm_phys_t addr, uint64_t len)
{
    (void)ctx;
    return guest_direct_set_present(addr, len, false);
}

static int guest_direct_restore(void *ctx, kmm_phys_t addr, uint64_t len)
{
    (void)ctx;
    return guest_direct_set_present(addr, len, true);
}

/* Frames outside the direct map are reached through a scratch window of
 * the kernel's own, mapped writable (never executable) for the copy and
 * unmapped at once: the way Linux's text_poke writes code. Nothing else can
 * reach the window, and no executable mapping is ever writable. */
static struct kmm_lock scratch_lock;

static int through_scratch(kmm_phys_t pa, uint64_t len, const unsigned char *src)
{
    while (len) {
        uint64_t off = pa & 4095, n = len < GUEST_SCRATCH_BYTES - off ? len : GUEST_SCRATCH_BYTES - off;
        uint64_t span = (off + n + 4095) & ~4095ull;
        if (guest_map(GUEST_SCRATCH_VA, pa - off, span, KMM_PROT_READ | KMM_PROT_WRITE) != 0)
            return -KMM_ENOMEM;
        void *dst = (void *)(uintptr_t)(GUEST_SCRATCH_VA + off);
        if (src)
            __builtin_memcpy(dst, src, n), src += n;
        else
            __builtin_memset(dst, 0, n);
        guest_unmap(GUEST_SCRATCH_VA, span);
        pa += n, len -= n;
    }
    return 0;
}

static int guest_frames_zero(void *ctx, kmm_phys_t addr, uint64_t len)
{
    (void)ctx;
    spin_lock(&scratch_lock);
    int rc = through_scratch(addr, len, NULL);
    spin_unlock(&scratch_lock);
    return rc;
}

static int guest_frames_write(void *ctx, const struct kmm_frame_write *pieces, size_t n)
{
    (void)ctx;
    int rc = 0;
    spin_lock(&scratch_lock);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = through_scratch(pieces[i].phys, pieces[i].len, pieces[i].src);
    spin_unlock(&scratch_lock);
    return rc;
}

const struct kmm_platform kmm_platform_guest = {
    .name = "guest",
    .open = guest_open,
    .close = guest_close,
    .lock_init = spin_init,
    .lock_fini = spin_init,
    .lock = spin_lock,
    .unlock = spin_unlock,
    .report = guest_report,
    .error = guest_error,
    .fatal = guest_fatal,
    .meta_alloc = guest_meta_alloc,
    .meta_free = guest_meta_free,
    .barrier_all = guest_barrier_all,
    .vm_reserve = guest_vm_reserve,
    .vm_unreserve = guest_vm_unreserve,
    .vm_map = guest_vm_map,
    .vm_unmap = guest_vm_unmap,
    .direct_unmap = guest_direct_unmap,
    .direct_restore = guest_direct_restore,
    .frames_zero = guest_frames_zero,
    .frames_write = guest_frames_write,
};

/* Reserves [start, end) in mm where it lies in kmm's memory. */
static int reserve_in_memory(struct kmm *mm, uint64_t ps, uint64_t start, uint64_t end)
{
    struct guest_e820 r[GUEST_MAX_E820];
    unsigned n = guest_memory_ranges(r, GUEST_MAX_E820, ps);
    for (unsigned i = 0; i < n; i++) {
        uint64_t lo = r[i].start > start ? r[i].start : start, hi = r[i].end < end ? r[i].end : end;
        if (hi <= lo)
            continue;
        int rc = kmm_reserve_pages(mm, lo, (size_t)((hi - lo) / ps));
        if (rc != 0)
            return rc;
    }
    return 0;
}

int guest_reserve_boot_memory(struct kmm *mm)
{
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    uint64_t ps = st.page_size;
    /* the pieces rounded out to whole pages, sorted, and merged where they
     * touch: two pieces in one page must not reserve it twice */
    struct guest_e820 piece[1 + sizeof guest_machine.boot_pieces / sizeof guest_machine.boot_pieces[0]];
    unsigned n = 0;
    piece[n++] = (struct guest_e820){ guest_machine.image_start, guest_machine.image_end, 2 };
    for (unsigned i = 0; i < guest_machine.nr_boot_pieces; i++)
        piece[n++] = guest_machine.boot_pieces[i];
    for (unsigned i = 0; i < n; i++) {
        piece[i].start &= ~(ps - 1);
        piece[i].end = (piece[i].end + ps - 1) & ~(ps - 1);
        for (unsigned j = i; j > 0 && piece[j].start < piece[j - 1].start; j--) {
            struct guest_e820 t = piece[j];
            piece[j] = piece[j - 1];
            piece[j - 1] = t;
        }
    }
    for (unsigned i = 0; i < n;) {
        uint64_t start = piece[i].start, end = piece[i].end;
        for (i++; i < n && piece[i].start <= end; i++)
            end = piece[i].end > end ? piece[i].end : end;
        int rc = reserve_in_memory(mm, ps, start, end);
        if (rc != 0)
            return rc;
    }
    return 0;
}
