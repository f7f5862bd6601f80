/* malloc.c - the C library's allocation functions on kmm_default().
 *
 * Every entry has a fast path for the common case (default options, the
 * memory system up, a size up to a page) that is one call into kmm_malloc
 * or kmm_free, and one slow path (kmm__shim_*) for the rest: start-up,
 * hardened mode, large and aligned sizes, errors.
 *
 * Start-up. The first call makes kmm_default(). Making it calls the C
 * library (pthread_atfork, pthread_key_create, ...), which may call malloc
 * again on the same thread: that call is served from the bootstrap arena
 * (bootstrap.c), not waited for. Other threads that arrive meanwhile wait
 * for the maker.
 *
 * Sizes: up to SHIM_SMALL_PAGES pages, kmm_malloc (slabs, then whole
 * pages); above, kmm_vmalloc (a guard page behind every buffer). That is
 * kmm_kvmalloc's rule with its threshold moved from one page to four
 * (docs/decisions.md says why). A small size that kmm_malloc cannot serve
 * (memory too fragmented) falls back to vmalloc, as kmm_kvmalloc does.
 */
#include "shim_internal.h"

unsigned kmm__shim_opts;
struct kmm *kmm__shim_mm;

/* kmm__shim_mm when no option changes the fast paths (not hardened), else
 * NULL: the one load the fast paths test. */
static struct kmm *fast_mm;
/* Sizes up to this go to kmm_malloc (SHIM_SMALL_PAGES pages, once up). */
size_t kmm__shim_small_max;
#define small_max kmm__shim_small_max

static int init_state;         /* 0 not started, 1 being made, 2 up */
static long init_thread;       /* the maker, while init_state is 1 */

static void explain_fault(const void *addr);
static void at_exit(void);
static int stats_fd = 2;   /* KMM_OPTIONS=stats: where the stats go at exit */

struct kmm *kmm__shim_init(void)
{
    struct kmm *mm = __atomic_load_n(&kmm__shim_mm, __ATOMIC_ACQUIRE);
    if (mm)
        return mm;
    long me = kmm__os_thread_id();
    if (__atomic_load_n(&init_thread, __ATOMIC_ACQUIRE) == me)
        return NULL;   /* a call from inside the making: the bootstrap arena serves it */
    int expected = 0;
    if (__atomic_compare_exchange_n(&init_state, &expected, 1, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&init_thread, me, __ATOMIC_RELEASE);
        unsigned opts = kmm__shim_parse_options(kmm__os_getenv("KMM_OPTIONS"));
        if (opts & KMM_SHIM_HARDENED) {
            /* large buffers unmapped at free, their addresses not reused soon */
            struct kmm_config cfg = { .vmalloc_flags = KMM_VMALLOC_STRICT | KMM_VMALLOC_SPREAD };
            if (kmm_default_set_config(&cfg) != 0)   /* the program made kmm_default() first */
                kmm__os_say("kmm: KMM_OPTIONS=hardened: kmm_default() existed already; large buffers "
                            "are not unmapped at free in this process");
        }
        mm = kmm_default();
        kmm__shim_opts = opts;
        small_max = SHIM_SMALL_PAGES * mm->page_size;
        if (opts & KMM_SHIM_HARDENED)
            kmm__hard_init(mm);
        kmm__os_fault_explainer(explain_fault);
        if (opts & KMM_SHIM_STATS) {
            stats_fd = kmm__os_keep_stderr();
            kmm__os_at_exit(at_exit);
        }
        if (opts & KMM_SHIM_VERBOSE)
            kmm__os_say((opts & KMM_SHIM_HARDENED) ? "kmm: malloc on kmm, hardened" : "kmm: malloc on kmm");
        __atomic_store_n(&fast_mm, (opts & KMM_SHIM_HARDENED) ? NULL : mm, __ATOMIC_RELEASE);
        __atomic_store_n(&kmm__shim_mm, mm, __ATOMIC_RELEASE);
        __atomic_store_n(&init_state, 2, __ATOMIC_RELEASE);
        __atomic_store_n(&init_thread, 0, __ATOMIC_RELEASE);
        return mm;
    }
    while (__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != 2)
        __builtin_ia32_pause();
    return __atomic_load_n(&kmm__shim_mm, __ATOMIC_ACQUIRE);
}

static void at_exit(void)
{
    kmm__shim_exit_stats(kmm__shim_mm, stats_fd);
}

void kmm__shim_fatal(const char *fn, const char *why, const void *addr)
{
    struct kmm *mm = kmm__shim_mm;
    struct kmm_msg m = { .len = 0 };
    kmm__msg_call(&m, fn, why, addr);
    if (mm)
        kmm__fatal(mm, &m);
    kmm__os_say(m.buf);
    __builtin_trap();
}

/* ---- the routing every entry shares ------------------------------------------- */

void *kmm__shim_alloc(struct kmm *mm, size_t size, size_t align, bool zero, const char *fn)
{
    (void)fn;
    if (kmm__shim_opts & KMM_SHIM_HARDENED)
        return kmm__hard_alloc(mm, size, align, zero, fn);
    void *p = NULL;
    if (size <= small_max && align <= small_max) {
        p = kmm__shim_small(mm, size, align);
        if (!p && kmm_vmalloc_purge(mm))
            p = kmm__shim_small(mm, size, align);
        if (p) {
            if (zero)
                __builtin_memset(p, 0, size);
            return p;
        }
    }
    if (size > SIZE_MAX - small_max - align)   /* too large to serve: ENOMEM, silent */
        return NULL;
    return kmm__shim_large(mm, size, align, zero ? KMM_ZERO : 0);
}

void *kmm__shim_small(struct kmm *mm, size_t size, size_t align)
{
    return align <= KMM_MALLOC_ALIGN ? kmm_malloc(mm, size, 0) : kmm_malloc_aligned(mm, size, align, 0);
}

void *kmm__shim_large(struct kmm *mm, size_t size, size_t align, unsigned flags)
{
    /* mapped at first touch, as malloc's mmap'd memory is: a buffer of
     * which a program touches a few pages costs those pages */
    flags |= KMM_NOPOPULATE;
    return align <= mm->page_size ? kmm_vmalloc(mm, size ? size : 1, flags)
                                  : kmm_vmalloc_aligned(mm, size ? size : 1, align, flags);
}

void kmm__shim_free(struct kmm *mm, void *p, const char *fn)
{
    (void)fn;
    if (kmm__boot_owns(p))
        return;   /* the bootstrap arena's: never reused, nothing to do */
    if (kmm__shim_opts & KMM_SHIM_HARDENED) {
        kmm__hard_free(mm, p, 0, 0, fn);
        return;
    }
    kmm_free(mm, p);
}

static inline struct kmm *mm_or_init(void)
{
    struct kmm *mm = __atomic_load_n(&kmm__shim_mm, __ATOMIC_ACQUIRE);
    return KMM_LIKELY(mm != NULL) ? mm : kmm__shim_init();
}

static void *fail(int err)
{
    kmm__os_set_errno(err);
    return NULL;
}

/* Every allocation's slow path: start-up, hardened, large, aligned. */
static __attribute__((noinline)) void *alloc_slow(size_t size, size_t align, bool zero, const char *fn)
{
    struct kmm *mm = mm_or_init();
    if (!mm) {
        void *p = kmm__boot_alloc(size, align);
        return p ? p : fail(KMM_ENOMEM);
    }
    void *p = kmm__shim_alloc(mm, size, align, zero, fn);
    return p ? p : fail(KMM_ENOMEM);
}

/* ---- the entries -------------------------------------------------------------------- */

SHIM_EXPORT void *malloc(size_t size)
{
    struct kmm *mm = __atomic_load_n(&fast_mm, __ATOMIC_ACQUIRE);
    if (KMM_LIKELY(mm != NULL && size <= small_max)) {
        void *p = kmm_malloc(mm, size, 0);
        if (KMM_LIKELY(p != NULL))
            return p;
    }
    return alloc_slow(size, 0, false, "malloc");
}

SHIM_EXPORT void free(void *p)
{
    struct kmm *mm = __atomic_load_n(&fast_mm, __ATOMIC_ACQUIRE);
    if (KMM_LIKELY(mm != NULL && !kmm__boot_owns(p))) {
        kmm_free(mm, p);
        return;
    }
    if (!p)
        return;
    mm = mm_or_init();
    if (!mm) {
        if (!kmm__boot_owns(p))
            kmm__shim_fatal("free", "pointer not from malloc (freed while the allocator starts):", p);
        return;
    }
    kmm__shim_free(mm, p, "free");
}

SHIM_EXPORT void *calloc(size_t n, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes))
        return fail(KMM_ENOMEM);
    struct kmm *mm = __atomic_load_n(&fast_mm, __ATOMIC_ACQUIRE);
    if (KMM_LIKELY(mm != NULL && bytes <= small_max)) {
        void *p = kmm_malloc(mm, bytes, 0);
        if (KMM_LIKELY(p != NULL))
            return __builtin_memset(p, 0, bytes);
    }
    /* the bootstrap arena is zero (static storage, never reused) */
    return alloc_slow(bytes, 0, true, "calloc");
}

/* realloc between the two kinds: copy into the new kind, free the old. */
static void *realloc_move(struct kmm *mm, void *p, size_t old, size_t size)
{
    void *q = kmm__shim_alloc(mm, size, 0, false, "realloc");
    if (!q)
        return fail(KMM_ENOMEM);
    __builtin_memcpy(q, p, old < size ? old : size);
    kmm_free(mm, p);
    return q;
}

SHIM_EXPORT void *realloc(void *p, size_t size)
{
    if (!p)
        return malloc(size);
    struct kmm *mm = mm_or_init();
    if (kmm__boot_owns(p)) {
        if (size == 0)
            return NULL;   /* realloc(p, 0) frees p: the arena's need nothing */
        size_t old = kmm__boot_size(p);
        void *q = malloc(size);
        if (q)
            __builtin_memcpy(q, p, old < size ? old : size);
        return q;
    }
    if (!mm)
        kmm__shim_fatal("realloc", "pointer not from malloc (resized while the allocator starts):", p);
    if (size == 0) {   /* glibc: frees and returns NULL */
        free(p);
        return NULL;
    }
    if (kmm__shim_opts & KMM_SHIM_HARDENED) {
        void *q = kmm__hard_realloc(mm, p, size, "realloc");
        return q ? q : fail(KMM_ENOMEM);
    }
    bool large = kmm_is_vmalloc_addr(mm, p);
    void *q;
    if (size > small_max) {
        /* vmalloc resizes its areas in place when it can; a buffer that
         * grows grows by a quarter at least, so that a program growing it
         * step by step maps pages once in a while, not at every page (the
         * pages past the size are not touched: no memory until used) */
        if (large) {
            size_t old = kmm__usable_size_as(mm, p, "realloc");
            size_t ahead = old + old / 4;
            bool grow = size > old && ahead > size;
            q = kmm_realloc(mm, p, grow ? ahead : size, 0);
            if (!q && grow)
                q = kmm_realloc(mm, p, size, 0);
        } else {
            q = realloc_move(mm, p, kmm__usable_size_as(mm, p, "realloc"), size);
        }
    } else {
        q = large ? realloc_move(mm, p, kmm__usable_size_as(mm, p, "realloc"), size) : kmm_realloc(mm, p, size, 0);
    }
    return q ? q : fail(KMM_ENOMEM);
}

SHIM_EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes))
        return fail(KMM_ENOMEM);
    return realloc(p, bytes);
}

static bool power_of_two(size_t x) { return x && !(x & (x - 1)); }

SHIM_EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
    if (!power_of_two(align) || align % sizeof(void *))
        return KMM_EINVAL;
    void *p = alloc_slow(size, align, false, "posix_memalign");
    if (!p)
        return KMM_ENOMEM;   /* errno is not posix_memalign's report; alloc_slow set it, as glibc does */
    *out = p;
    return 0;
}

SHIM_EXPORT void *aligned_alloc(size_t align, size_t size)
{
    if (!power_of_two(align))
        return fail(KMM_EINVAL);
    return alloc_slow(size, align, false, "aligned_alloc");
}

SHIM_EXPORT void *memalign(size_t align, size_t size)
{
    /* glibc: an alignment that is not a power of two is rounded up to one */
    if (align > ((size_t)1 << (sizeof(size_t) * 8 - 1)))
        return fail(KMM_EINVAL);
    size_t a = 1;
    while (a < align)
        a <<= 1;
    return alloc_slow(size, a, false, "memalign");
}

static size_t page_size_now(void)
{
    struct kmm *mm = mm_or_init();
    return mm ? mm->page_size : 4096;
}

SHIM_EXPORT void *valloc(size_t size)
{
    return alloc_slow(size, page_size_now(), false, "valloc");
}

SHIM_EXPORT void *pvalloc(size_t size)
{
    size_t page = page_size_now();
    if (size > SIZE_MAX - page)
        return fail(KMM_ENOMEM);
    size_t rounded = size ? (size + page - 1) & ~(page - 1) : page;
    return alloc_slow(rounded, page, false, "pvalloc");
}

SHIM_EXPORT size_t malloc_usable_size(void *p)
{
    if (!p)
        return 0;
    if (kmm__boot_owns(p))
        return kmm__boot_size(p);
    struct kmm *mm = mm_or_init();
    if (!mm)
        kmm__shim_fatal("malloc_usable_size", "pointer not from malloc:", p);
    if (kmm__shim_opts & KMM_SHIM_HARDENED)
        return kmm__hard_usable(mm, p, "malloc_usable_size");
    return kmm__usable_size_as(mm, p, "malloc_usable_size");
}

/* The sized frees: free() unless hardened mode checks the size (after the
 * shim is up: kmm__shim_opts is final once kmm__shim_mm is set). */
static void free_checked(void *p, size_t size, size_t align, const char *fn)
{
    struct kmm *mm = p && !kmm__boot_owns(p) ? mm_or_init() : NULL;
    if (!mm || !(kmm__shim_opts & KMM_SHIM_HARDENED)) {
        free(p);
        return;
    }
    kmm__hard_free(mm, p, size ? size : 1, align, fn);
}

SHIM_EXPORT void free_sized(void *p, size_t size)
{
    free_checked(p, size, 0, "free_sized");
}

SHIM_EXPORT void free_aligned_sized(void *p, size_t align, size_t size)
{
    free_checked(p, size, align, "free_aligned_sized");
}

/* glibc's malloc_trim: give back what kmm holds in caches. */
SHIM_EXPORT int malloc_trim(size_t pad)
{
    (void)pad;
    struct kmm *mm = mm_or_init();
    if (mm)
        kmm_drain(mm);
    return 1;
}

SHIM_EXPORT unsigned kmm_shim_options(void)
{
    mm_or_init();
    return kmm__shim_opts;
}

/* ---- a fault explained: which kmm memory the address is ------------------------------ */

static void explain_fault(const void *addr)
{
    struct kmm *mm = kmm__shim_mm;
    if (!mm)
        return;
    struct kmm_msg m = { .len = 0 };
    kmm__msg_str(&m, "kmm: segmentation fault at ");
    kmm__msg_hex(&m, (uint64_t)(uintptr_t)addr);
    if (kmm__hard_zero_owns(addr)) {
        kmm__msg_str(&m, ": inside a zero-size allocation (malloc(0) memory is not accessible)");
    } else if (kmm_is_vmalloc_addr(mm, addr)) {
        struct kmm_vmalloc_area_info a;
        if (!kmm_vmalloc_area_at(mm, addr, &a)) {
            kmm__msg_str(&m, ": in the large-buffer space but in no live buffer (use after free?)");
        } else {
            bool guard = (uintptr_t)addr >= a.guard;
            kmm__msg_str(&m, guard ? ": the guard page after the buffer at " : ": inside the buffer at ");
            kmm__msg_hex(&m, (uint64_t)a.start);
            kmm__msg_str(&m, " of ");
            kmm__msg_dec(&m, a.size);
            kmm__msg_str(&m, guard ? " bytes (overflow)" : " bytes");
            if (!__builtin_strcmp(a.kind, "lazy-free"))
                kmm__msg_str(&m, ", freed (use after free)");
        }
    } else {
        return;   /* not kmm's: the program's own fault, say nothing */
    }
    kmm__os_say(m.buf);
}
