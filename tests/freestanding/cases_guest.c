/* cases_guest.c - what only a real machine has: the firmware's memory map,
 * memory above 4 GiB, page faults caught, pages out of the direct map.
 *
 * The facts of the machine come through ktest_env (the firmware's reserved
 * ranges, the kernel image, the probes), so this file needs no platform
 * header; the cases are .guest_only because only the guest has them all. */
#include "ktest.h"

#define GIB (1ull << 30)

/* Blocks held by a case are chained through their own first page (word 1;
 * word 0 is left to the case), so that exhausting an area of any size
 * needs no array. */
static inline void **link_of(void *block)
{
    return (void **)block + 1;
}

static void free_chain(struct kmm *mm, void *chain)
{
    while (chain) {
        void *next = *link_of(chain);
        kmm_free_pages(mm, chain);
        chain = next;
    }
}

/* Every block of the areas in mask, largest first from max_order: the
 * areas are exhausted when it returns. Returns the chain; *pages counts
 * them. */
static void *take_all(struct kmm *mm, unsigned max_order, unsigned mask, size_t *pages)
{
    void *chain = NULL;
    *pages = 0;
    for (unsigned order = max_order + 1; order-- > 0;) {
        void *b;
        while ((b = kmm_alloc_pages(mm, order, mask)) != NULL) {
            *link_of(b) = chain;
            chain = b;
            *pages += (size_t)1 << order;
        }
    }
    return chain;
}

static size_t settled(struct kmm *mm, struct kmm_page_stats *st)
{
    kmm_drain(mm);
    kmm_page_stats(mm, st);
    return st->free_pages;
}

/* The end of the last memory: firmware ranges below it are inside kmm's
 * span, where reserving them must be refused as "not memory". */
static kmm_phys_t memory_end(const struct kmm_page_stats *st)
{
    kmm_phys_t end = 0;
    for (unsigned a = 0; a < st->nr_areas; a++)
        if (st->area[a].total_pages && st->area[a].end > end)
            end = st->area[a].end;
    return end;
}

/* The frames of one kind (KMM_PAGE_SECRET, KMM_PAGE_EXECMEM ...), found by
 * their metadata over all of memory: up to max of them into out. */
static size_t frames_of_kind(const struct ktest_env *env, uint8_t want, kmm_phys_t *out, size_t max)
{
    struct kmm_page_stats st;
    kmm_page_stats(env->mm, &st);
    size_t found = 0;
    for (unsigned a = 0; a < st.nr_areas; a++) {
        for (kmm_phys_t at = st.area[a].start; at < st.area[a].end;) {
            uint8_t kinds[512];
            size_t n = (size_t)((st.area[a].end - at) / env->page_size);
            n = n < sizeof kinds ? n : sizeof kinds;
            if (!n || kmm_page_kinds(env->mm, at, n, kinds) != n)
                break;
            for (size_t i = 0; i < n; i++)
                if ((kinds[i] & ~KMM_PAGE_UNMAPPED_BIT) == want) {
                    if (found < max)
                        out[found] = at + i * env->page_size;
                    found++;
                }
            at += n * env->page_size;
        }
    }
    return found;
}

/* Each of the three areas has memory and serves its own mask; there is
 * memory above 4 GiB; the areas' counts add up to the totals. */
static void guest_areas_have_memory(const struct ktest_env *env)
{
    struct kmm *mm = env->mm;
    struct kmm_page_stats st;
    settled(mm, &st);
    KT_EXPECT(st.nr_areas == env->nr_areas);
    size_t total = 0, reserved = 0, free_pages = 0, above_4g = 0;
    for (unsigned a = 0; a < st.nr_areas && a < env->nr_areas; a++) {
        const struct kmm_area_stats *ar = &st.area[a];
        uint64_t lo = a ? env->area_limits[a - 1] : 0;
        KT_EXPECT(ar->total_pages > 0);
        KT_EXPECT(ar->start >= lo && ar->end <= env->area_limits[a] && ar->start < ar->end);
        total += ar->total_pages;
        reserved += ar->reserved_pages;
        free_pages += ar->free_pages;
        if (ar->start >= 4 * GIB)
            above_4g += ar->total_pages;
        void *p = kmm_alloc_pages(mm, 0, KMM_AREA(a));
        KT_EXPECT(p != NULL);
        if (p) {
            kmm_phys_t pa = kmm_virt_to_phys(mm, p);
            KT_EXPECT(pa >= ar->start && pa < ar->end);
            kmm_free_pages(mm, p);
        }
    }
    KT_EXPECT(total == st.total_pages);
    KT_EXPECT(reserved == st.reserved_pages);
    KT_EXPECT(free_pages == st.free_pages);
    KT_EXPECT(above_4g * env->page_size >= GIB);
}

/* With the lowest area exhausted, a request that accepts the lowest two
 * areas is served from the second; one for the lowest alone fails. */
static void guest_area_fallback(const struct ktest_env *env)
{
    struct kmm *mm = env->mm;
    struct kmm_page_stats before, empty, after;
    settled(mm, &before);
    size_t taken;
    void *chain = take_all(mm, KMM_MAX_ORDER, KMM_AREA(0), &taken);
    kmm_page_stats(mm, &empty);
    KT_EXPECT(taken == before.area[0].free_pages);
    KT_EXPECT(empty.area[0].free_pages == 0);
    bool all_low = true;
    for (void *b = chain; b; b = *link_of(b))
        all_low &= kmm_virt_to_phys(mm, b) < env->area_limits[0];
    KT_EXPECT(all_low);
    KT_EXPECT(kmm_alloc_pages(mm, 0, KMM_AREA(0)) == NULL);
    void *p = kmm_alloc_pages(mm, 0, KMM_AREA(0) | KMM_AREA(1));
    void *q = kmm_alloc_pages(mm, 3, KMM_AREA(0) | KMM_AREA(1));
    KT_EXPECT(p != NULL && q != NULL);
    for (unsigned i = 0; i < 2; i++) {
        void *b = i ? q : p;
        kmm_phys_t pa = b ? kmm_virt_to_phys(mm, b) : KMM_PHYS_NONE;
        KT_EXPECT(pa >= env->area_limits[0] && pa < env->area_limits[1]);
    }
    if (p)
        kmm_free_pages(mm, p);
    if (q)
        kmm_free_pages(mm, q);
    free_chain(mm, chain);
    settled(mm, &after);
    KT_EXPECT(after.free_pages == before.free_pages);
    KT_EXPECT(__builtin_memcmp(after.nr_free, before.nr_free, sizeof after.nr_free) == 0);
}

/* Every range the firmware keeps (inside kmm's span) is not memory:
 * reserving its first or last page, or all of it, is refused. */
static void guest_firmware_ranges_refused(const struct ktest_env *env)
{
    struct kmm *mm = env->mm;
    struct kmm_page_stats st;
    settled(mm, &st);
    kmm_phys_t end = memory_end(&st), ps = env->page_size;
    unsigned tried = 0;
    for (unsigned i = 0; i < env->nr_firmware_reserved; i++) {
        const struct ktest_range *r = &env->firmware_reserved[i];
        if (r->start >= end || r->end <= r->start)
            continue;
        kmm_phys_t first = r->start & ~(ps - 1), last = ((r->end < end ? r->end : end) - 1) & ~(ps - 1);
        KT_EXPECT(kmm_reserve_pages(mm, first, 1) == -KMM_EBUSY);
        KT_EXPECT(kmm_reserve_pages(mm, last, 1) == -KMM_EBUSY);
        KT_EXPECT(kmm_reserve_pages(mm, first, (size_t)((last - first) / ps) + 1) == -KMM_EBUSY);
        tried++;
    }
    KT_EXPECT(tried > 0 || env->nr_firmware_reserved == 0);
    struct kmm_page_stats after;
    settled(mm, &after);
    KT_EXPECT(after.reserved_pages == st.reserved_pages);   /* a refusal reserves nothing */
}

/* The kernel image was reserved at boot: its pages cannot be reserved
 * again, every one of them is of kind "reserved", and the stats count
 * them. */
static void guest_kernel_image_reserved(const struct ktest_env *env)
{
    struct kmm *mm = env->mm;
    if (env->image.end <= env->image.start)
        return;
    kmm_phys_t ps = env->page_size, first = env->image.start & ~(ps - 1),
               end = (env->image.end + ps - 1) & ~(ps - 1);
    size_t pages = (size_t)((end - first) / ps);
    KT_EXPECT(kmm_reserve_pages(mm, first, 1) == -KMM_EBUSY);
    KT_EXPECT(kmm_reserve_pages(mm, end - ps, 1) == -KMM_EBUSY);
    size_t not_reserved = 0;
    for (size_t done = 0; done < pages;) {
        uint8_t kinds[256];
        size_t n = pages - done < sizeof kinds ? pages - done : sizeof kinds;
        KT_EXPECT(kmm_page_kinds(mm, first + done * ps, n, kinds) == n);
        for (size_t i = 0; i < n; i++)
            not_reserved += kinds[i] != KMM_PAGE_RESERVED;
        done += n;
    }
    KT_EXPECT(not_reserved == 0);
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    KT_EXPECT(st.reserved_pages >= pages);
}

/* What the word at physical address pa holds in the full pattern: a
 * different value at every address, so a page read back from the wrong
 * frame, or a frame aliased by another, shows. Word-sized: byte loops over
 * gigabytes are too slow under TCG. */
static inline uint64_t pattern_word(kmm_phys_t pa)
{
    return (pa * 0x9e3779b97f4a7c15ull) ^ 0x5851f42d4c957f2dull;
}

/* The pages of a block: word 0 of every page holds its physical address
 * (word 1 of the first page is the chain link); with full, every other
 * word its pattern_word. Returns the words that were not as written
 * (check) or 0 (write). */
static size_t block_words(char *b, size_t pages, size_t ps, kmm_phys_t pa, bool full, bool check)
{
    size_t bad = 0;
    for (size_t i = 0; i < pages; i++) {
        uint64_t *w = (uint64_t *)(void *)(b + i * ps);
        kmm_phys_t at = pa + i * ps;
        if (check)
            bad += w[0] != at;
        else
            w[0] = at;
        for (size_t k = 2; full && k < ps / 8; k++) {
            if (check)
                bad += w[k] != pattern_word(at + 8 * k);
            else
                w[k] = pattern_word(at + 8 * k);
        }
    }
    return bad;
}

/* The whole area above 4 GiB, taken in big blocks until nothing is left,
 * written and read back: a word per page holding its physical address,
 * and a full pattern on one block in FULL_EVERY. */
#define FULL_EVERY 32
static void guest_above_4g_written(const struct ktest_env *env)
{
    struct kmm *mm = env->mm;
    unsigned top = env->nr_areas - 1;
    struct kmm_page_stats before, empty, after;
    settled(mm, &before);
    KT_EXPECT(before.area[top].start >= 4 * GIB);
    size_t ps = env->page_size, taken;
    void *chain = take_all(mm, 10, KMM_AREA(top), &taken);
    kmm_page_stats(mm, &empty);
    KT_EXPECT(taken == before.area[top].free_pages);
    KT_EXPECT(empty.area[top].free_pages == 0);
    KT_EXPECT(kmm_alloc_pages(mm, 0, KMM_AREA(top)) == NULL);

    size_t blocks = 0, below = 0, counted = 0, bad = 0;
    for (void *b = chain; b; b = *link_of(b), blocks++) {
        kmm_phys_t pa = kmm_virt_to_phys(mm, b);
        below += pa < 4 * GIB;
        block_words(b, kmm_page_alloc_size(mm, b), ps, pa, blocks % FULL_EVERY == 0, false);
    }
    KT_EXPECT(below == 0);
    blocks = 0;
    for (void *b = chain; b; b = *link_of(b), blocks++) {
        size_t n = kmm_page_alloc_size(mm, b);
        bad += block_words(b, n, ps, kmm_virt_to_phys(mm, b), blocks % FULL_EVERY == 0, true);
        counted += n;
    }
    KT_EXPECT(counted == taken);
    KT_EXPECT(bad == 0);
    free_chain(mm, chain);
    settled(mm, &after);
    KT_EXPECT(after.area[top].free_pages == before.area[top].free_pages);
    KT_EXPECT(__builtin_memcmp(after.nr_free, before.nr_free, sizeof after.nr_free) == 0);
}

/* A page of the unmapped cache is gone from the direct map (its 2 MiB
 * refill block with it: one change of the page tables, not one per page);
 * freed and shrunk back, it is readable there again. */
static void guest_unmapped_leaves_direct_map(const struct ktest_env *env)
{
    struct kmm *mm = env->mm;
    struct kmm_page_stats before, after;
    kmm_unmapped_free(mm, kmm_unmapped_alloc(mm, 0, 0));   /* the cache's own records, made on first use */
    kmm_unmapped_shrink(mm, SIZE_MAX);
    settled(mm, &before);
    kmm_phys_t pa = kmm_unmapped_alloc(mm, 0, 0);
    KT_EXPECT(pa != KMM_PHYS_NONE);
    if (pa == KMM_PHYS_NONE)
        return;
    const char *alias = (const char *)(env->direct_map + pa);
    uint8_t kind = 0;
    KT_EXPECT(kmm_page_kinds(mm, pa, 1, &kind) == 1 && kind == (KMM_PAGE_UNMAPPED | KMM_PAGE_UNMAPPED_BIT));
    if (env->probe_read) {
        KT_EXPECT(env->probe_read(alias) == -1);
        KT_EXPECT(!env->last_fault || ktest_fault_mentions(env, "direct map"));
        const char *block = (const char *)(env->direct_map + (pa & ~(kmm_phys_t)(KMM_UNMAPPED_REFILL_BYTES - 1)));
        if (env->page_size < KMM_UNMAPPED_REFILL_BYTES) {
            KT_EXPECT(env->probe_read(block) == -1);
            KT_EXPECT(env->probe_read(block + KMM_UNMAPPED_REFILL_BYTES - 1) == -1);
        }
    }
    kmm_unmapped_free(mm, pa);
    if (env->probe_read)
        KT_EXPECT(env->probe_read(alias) == -1);   /* free in the cache: still unmapped */
    kmm_unmapped_shrink(mm, SIZE_MAX);
    struct kmm_unmapped_stats us;
    kmm_unmapped_stats(mm, &us);
    KT_EXPECT(us.pages_held == 0);
    KT_EXPECT(kmm_page_kinds(mm, pa, 1, &kind) == 1 && !(kind & KMM_PAGE_UNMAPPED_BIT));
    if (env->probe_read)
        KT_EXPECT(env->probe_read(alias) == 0);
    settled(mm, &after);
    KT_EXPECT(after.free_pages == before.free_pages);
}

/* Secret memory: zeroed, usable, fenced by guard pages, and its frames
 * are out of the direct map (an access through their alias faults). */
static void guest_secret_out_of_direct_map(const struct ktest_env *env)
{
    struct kmm *mm = env->mm;
    size_t ps = env->page_size, size = 2 * ps + 100;
    struct kmm_page_stats before, after;
    kmm_secret_free(mm, kmm_secret_alloc(mm, ps));   /* the layer's own records, made on first use */
    kmm_unmapped_shrink(mm, SIZE_MAX);
    settled(mm, &before);
    KT_EXPECT(frames_of_kind(env, KMM_PAGE_SECRET, NULL, 0) == 0);
    unsigned char *s = kmm_secret_alloc(mm, size);
    KT_EXPECT(s != NULL);
    if (!s)
        return;
    bool zero = true;
    for (size_t i = 0; i < size; i++)
        zero &= s[i] == 0;
    KT_EXPECT(zero);
    ktest_fill(s, size, 41);
    KT_EXPECT(ktest_verify(s, size, 41));
    kmm_phys_t frame[4];
    KT_EXPECT(frames_of_kind(env, KMM_PAGE_SECRET, frame, 4) == 3);
    if (env->probe_read) {
        for (unsigned i = 0; i < 3; i++) {
            KT_EXPECT(env->probe_read((const void *)(env->direct_map + frame[i])) == -1);
            KT_EXPECT(!env->last_fault || ktest_fault_mentions(env, "direct map"));
        }
        KT_EXPECT(env->probe_write(s - 1) == -1);        /* the guard page before */
        KT_EXPECT(env->probe_write(s + 3 * ps) == -1);   /* and after */
    }
    KT_EXPECT(ktest_verify(s, size, 41));
    kmm_secret_free(mm, s);
    kmm_unmapped_shrink(mm, SIZE_MAX);
    KT_EXPECT(frames_of_kind(env, KMM_PAGE_SECRET, NULL, 0) == 0);
    if (env->probe_read)
        KT_EXPECT(env->probe_read((const void *)(env->direct_map + frame[0])) == 0);
    settled(mm, &after);
    KT_EXPECT(after.free_pages == before.free_pages);
}

/* execmem on real page tables with NX: code written through
 * kmm_execmem_write runs; the address is not writable, and neither is the
 * frame's direct-map alias (no writable mapping of the code anywhere). */
static void guest_execmem_runs_code(const struct ktest_env *env)
{
    struct kmm *mm = env->mm;
    struct kmm_page_stats before, after;
    kmm_execmem_free(mm, kmm_execmem_alloc(mm, 64));   /* the layer's own records, made on first use */
    kmm_unmapped_shrink(mm, SIZE_MAX);
    settled(mm, &before);
    unsigned char *code = kmm_execmem_alloc(mm, 64);
    KT_EXPECT(code != NULL);
    if (!code)
        return;
    KT_EXPECT(code[0] == 0xcc && code[63] == 0xcc);   /* trap-filled until written */
    static const unsigned char ret42[] = { 0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3 };   /* mov $42, %eax; ret */
    KT_EXPECT(kmm_execmem_write(mm, code, ret42, sizeof ret42) == 0);
    KT_EXPECT(__builtin_memcmp(code, ret42, sizeof ret42) == 0);
    int (*fn)(void);
    __builtin_memcpy(&fn, &code, sizeof fn);
    KT_EXPECT(fn() == 42);
    if (env->probe_write) {
        KT_EXPECT(env->probe_write(code) == -1);
        KT_EXPECT(env->probe_write(code + 32) == -1);
        kmm_phys_t frame[4];
        size_t frames = frames_of_kind(env, KMM_PAGE_EXECMEM, frame, 4);
        KT_EXPECT(frames >= 1);
        for (size_t i = 0; i < frames && i < 4; i++)
            KT_EXPECT(env->probe_write((void *)(env->direct_map + frame[i])) == -1);
        KT_EXPECT(__builtin_memcmp(code, ret42, sizeof ret42) == 0 && fn() == 42);
    }
    kmm_execmem_free(mm, code);
    kmm_unmapped_shrink(mm, SIZE_MAX);
    KT_EXPECT(frames_of_kind(env, KMM_PAGE_EXECMEM, NULL, 0) == 0);
    settled(mm, &after);
    KT_EXPECT(after.free_pages == before.free_pages);
}

/* kmm's own bookkeeping lies out of reach of the memory it hands out: the
 * memory system is not in the direct map, and the direct map has no
 * entry for the frames that hold it (DESIGN.md: "Metadata out of reach"). */
static void guest_metadata_out_of_reach(const struct ktest_env *env)
{
    struct kmm *mm = env->mm;
    KT_EXPECT(env->metadata.end > env->metadata.start);
    if (env->metadata.end <= env->metadata.start || !env->probe_read)
        return;
    KT_EXPECT(kmm_virt_to_phys(mm, mm) == KMM_PHYS_NONE);
    KT_EXPECT((uintptr_t)mm - env->direct_map >= env->metadata.end);   /* not a direct-map address */
    const char *first = (const char *)(env->direct_map + (uintptr_t)env->metadata.start);
    const char *last = (const char *)(env->direct_map + (uintptr_t)env->metadata.end - 1);
    KT_EXPECT(env->probe_read(first) == -1 && ktest_fault_mentions(env, "direct map"));
    KT_EXPECT(env->probe_read(last) == -1);
    /* the pool is not memory to kmm either */
    KT_EXPECT(kmm_reserve_pages(mm, env->metadata.start, 1) != 0);   /* -EBUSY, or -EINVAL past the end */
}

/* Every secret allocation reserves address space of its own: many in turn
 * must not use up the platform's page tables or address space (a space that
 * never reused what was given back ran the guest's table pool dry after
 * some 170,000 of them). */
static void guest_secret_churn(const struct ktest_env *env)
{
    struct kmm *mm = env->mm;
    unsigned made = 0;
    for (unsigned i = 0; i < 3000; i++) {
        void *a = kmm_secret_alloc(mm, env->page_size), *b = kmm_secret_alloc(mm, env->page_size);
        made += (a != NULL) + (b != NULL);
        if (a)
            *(volatile char *)a = 1;
        kmm_secret_free(mm, a);
        kmm_secret_free(mm, b);
    }
    KT_EXPECT(made == 6000);
    kmm_unmapped_shrink(mm, SIZE_MAX);
}

const struct ktest ktest_cases_guest[] = {
    { .name = "guest_metadata_out_of_reach", .run = guest_metadata_out_of_reach, .guest_only = true },
    { .name = "guest_secret_churn", .run = guest_secret_churn, .guest_only = true },
    { .name = "guest_areas_have_memory", .run = guest_areas_have_memory, .guest_only = true },
    { .name = "guest_area_fallback", .run = guest_area_fallback, .guest_only = true },
    { .name = "guest_firmware_ranges_refused", .run = guest_firmware_ranges_refused, .guest_only = true },
    { .name = "guest_kernel_image_reserved", .run = guest_kernel_image_reserved, .guest_only = true },
    { .name = "guest_above_4g_written", .run = guest_above_4g_written, .guest_only = true },
    { .name = "guest_unmapped_leaves_direct_map", .run = guest_unmapped_leaves_direct_map, .guest_only = true,
      .needs_vm = true },
    { .name = "guest_secret_out_of_direct_map", .run = guest_secret_out_of_direct_map, .guest_only = true,
      .needs_vm = true },
    { .name = "guest_execmem_runs_code", .run = guest_execmem_runs_code, .guest_only = true, .needs_vm = true },
    { .name = NULL },
};
