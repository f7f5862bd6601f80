/* cases_vm.c - kmm_vmalloc, kmm_vmap and kmm_kvmalloc, freestanding: on
 * platforms with virtual memory hooks (the guest: real page tables).
 *
 * Nothing here knows the platform: faults are looked for only through
 * env->probe_read/probe_write, when the platform offers them. */
#include "ktest.h"

static inline uint64_t *word_at(void *base, size_t offset)
{
    return (uint64_t *)(void *)((char *)base + offset);
}

/* Frees lazily freed areas and per-thread caches, then reads the stats:
 * the baseline a case compares against when it ends. The vmalloc layer's
 * own structures are made on its first use, from the page allocator on
 * platforms without meta_alloc: one area made and freed first keeps them
 * out of the count. */
static size_t settled_free_pages(struct kmm *mm)
{
    kmm_vfree(mm, kmm_vmalloc(mm, 1, 0));
    struct kmm_page_stats st;
    kmm_drain(mm);
    kmm_page_stats(mm, &st);
    return st.free_pages;
}

/* One area of size bytes, through its vmalloc address and through the
 * direct-map alias of every page. Each page gets its own contents first
 * (a pattern of its own in areas up to 1 MiB, a tag word in larger ones),
 * then each page's alias must show them: so no two pages share a frame.
 * A write through the alias is then seen through the area. */
static void vmalloc_one_size(const struct ktest_env *env, size_t size, uint64_t seed)
{
    struct kmm *mm = env->mm;
    size_t ps = env->page_size, pages = (size + ps - 1) / ps;
    char *p = kmm_vmalloc(mm, size, 0);
    KT_EXPECT(p != NULL);
    if (!p)
        return;
    KT_EXPECT(((uintptr_t)p & (ps - 1)) == 0);
    KT_EXPECT(kmm_is_vmalloc_addr(mm, p));
    bool patterned = size <= (1u << 20);
    for (size_t i = 0; i < pages; i++) {
        size_t len = size - i * ps < ps ? size - i * ps : ps;
        if (patterned)
            ktest_fill(p + i * ps, len, seed << 32 | i);
        else
            *word_at(p, i * ps) = seed << 32 | i;
    }
    size_t bad_phys = 0, bad_alias = 0, bad_back = 0;
    for (size_t i = 0; i < pages; i++) {
        char *v = p + i * ps;
        size_t len = size - i * ps < ps ? size - i * ps : ps;
        kmm_phys_t pa = kmm_vmalloc_to_phys(mm, v);
        char *alias = pa == KMM_PHYS_NONE ? NULL : kmm_phys_to_virt(mm, pa);
        if (!alias || kmm_virt_to_phys(mm, alias) != pa || kmm_vmalloc_to_phys(mm, v + len - 1) != pa + len - 1) {
            bad_phys++;
            continue;
        }
        if (patterned ? !ktest_verify(alias, len, seed << 32 | i) : *word_at(alias, 0) != (seed << 32 | i))
            bad_alias++;
        *word_at(alias, 8) = ~pa;
        if (*word_at(v, 8) != ~pa)
            bad_back++;
    }
    KT_EXPECT(bad_phys == 0);
    KT_EXPECT(bad_alias == 0);
    KT_EXPECT(bad_back == 0);
    KT_EXPECT(kmm_vmalloc_to_phys(mm, p + pages * ps) == KMM_PHYS_NONE);   /* the guard page */
    kmm_vfree(mm, p);
}

/* vmalloc of several sizes: one page, five, 1 MiB, 64 MiB. */
static void vmalloc_sizes_direct_alias(const struct ktest_env *env)
{
    size_t free_before = settled_free_pages(env->mm);
    const size_t sizes[] = { env->page_size, 5 * env->page_size, 1u << 20, 64u << 20 };
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        vmalloc_one_size(env, sizes[i], i + 1);
    KT_EXPECT(settled_free_pages(env->mm) == free_before);
}

/* Running off the end of an area hits its guard page: the platform's fault
 * handler catches it and says so, and the area is unharmed. */
static void vmalloc_guard_page_faults(const struct ktest_env *env)
{
    struct kmm *mm = env->mm;
    size_t ps = env->page_size, size = 3 * ps;
    char *p = kmm_vmalloc(mm, size, 0);
    KT_EXPECT(p != NULL);
    if (!p)
        return;
    ktest_fill(p, size, 77);
    KT_EXPECT(kmm_vmalloc_to_phys(mm, p + size) == KMM_PHYS_NONE);
    if (env->probe_write) {
        KT_EXPECT(env->probe_write(p + size - 1) == 0);   /* the last byte: inside, no fault */
        KT_EXPECT(env->probe_write(p + size) == -1);      /* one past it */
        KT_EXPECT(!env->last_fault || ktest_fault_mentions(env, "guard page"));
        KT_EXPECT(env->probe_read(p + size + ps - 1) == -1);   /* the guard is a whole page */
        KT_EXPECT(!env->last_fault || ktest_fault_mentions(env, "guard page"));
        KT_EXPECT(env->probe_read(p) == 0);
    }
    /* all but the byte the inside probe wrote */
    KT_EXPECT(ktest_verify(p, size - 1, 77));
    ktest_fill(p, size, 79);
    KT_EXPECT(ktest_verify(p, size, 79));
    kmm_vfree(mm, p);
}

/* kmm_vmap of the caller's pages in the order given (not the physical one);
 * writes through either address are seen through the other; kmm_vunmap
 * unmaps at once and leaves the pages to their owner. A read-only vmap
 * refuses writes. */
static void vmap_scrambled_pages(const struct ktest_env *env)
{
    struct kmm *mm = env->mm;
    size_t ps = env->page_size, free_before = settled_free_pages(mm);
    enum { N = 8 };
    static const unsigned order[N] = { 5, 2, 7, 0, 3, 6, 1, 4 };
    char *page[N];
    kmm_phys_t phys[N];
    unsigned got = 0;
    for (; got < N; got++) {
        page[got] = kmm_alloc_pages(mm, 0, 0);
        KT_EXPECT(page[got] != NULL);
        if (!page[got])
            break;
        phys[got] = kmm_virt_to_phys(mm, page[got]);
        ktest_fill(page[got], ps, 100 + got);
    }
    if (got == N) {
        kmm_phys_t scrambled[N];
        for (unsigned i = 0; i < N; i++)
            scrambled[i] = phys[order[i]];
        char *v = kmm_vmap(mm, scrambled, N, KMM_PROT_READ | KMM_PROT_WRITE);
        KT_EXPECT(v != NULL);
        if (v) {
            bool seen = true, mapped = true;
            for (unsigned i = 0; i < N; i++) {
                seen &= ktest_verify(v + i * ps, ps, 100 + order[i]);
                mapped &= kmm_vmalloc_to_phys(mm, v + i * ps + 40) == scrambled[i] + 40;
                ktest_fill(v + i * ps, ps, 200 + i);
            }
            KT_EXPECT(seen);
            KT_EXPECT(mapped);
            bool back = true;
            for (unsigned i = 0; i < N; i++)
                back &= ktest_verify(page[order[i]], ps, 200 + i);
            KT_EXPECT(back);
            if (env->probe_write) {
                KT_EXPECT(env->probe_write(v + N * ps) == -1);
                KT_EXPECT(!env->last_fault || ktest_fault_mentions(env, "guard page"));
            }
            kmm_vunmap(mm, v);
            KT_EXPECT(kmm_vmalloc_to_phys(mm, v) == KMM_PHYS_NONE);
            if (env->probe_read)
                KT_EXPECT(env->probe_read(v) == -1);   /* vunmap is never lazy */
            bool kept = true;
            for (unsigned i = 0; i < N; i++)
                kept &= ktest_verify(page[order[i]], ps, 200 + i);
            KT_EXPECT(kept);
        }

        char *ro = kmm_vmap(mm, phys, 2, KMM_PROT_READ);
        KT_EXPECT(ro != NULL);
        if (ro) {
            KT_EXPECT(ktest_verify(ro, ps, 200 + 3) && ktest_verify(ro + ps, ps, 200 + 6));
            if (env->probe_write) {
                KT_EXPECT(env->probe_read(ro + 5) == 0);
                KT_EXPECT(env->probe_write(ro + 5) == -1);
                KT_EXPECT(env->probe_write(ro + ps + 5) == -1);
                KT_EXPECT(ktest_verify(page[0], ps, 200 + 3));   /* the refused write changed nothing */
            }
            kmm_vunmap(mm, ro);
        }
    }
    while (got-- > 0)
        kmm_free_pages(mm, page[got]);
    KT_EXPECT(settled_free_pages(mm) == free_before);
}

/* kmm_kvmalloc: kmm_malloc (direct map, physically contiguous) up to a
 * page, a vmalloc area above. */
static void kvmalloc_small_large(const struct ktest_env *env)
{
    struct kmm *mm = env->mm;
    size_t ps = env->page_size;
    char *small = kmm_kvmalloc(mm, 100, 0);
    char *large = kmm_kvmalloc(mm, 3 * ps + 100, 0);
    KT_EXPECT(small != NULL && large != NULL);
    if (small) {
        KT_EXPECT(!kmm_is_vmalloc_addr(mm, small));
        KT_EXPECT(kmm_virt_to_phys(mm, small) != KMM_PHYS_NONE);
        ktest_fill(small, 100, 11);
    }
    if (large) {
        KT_EXPECT(kmm_is_vmalloc_addr(mm, large));
        KT_EXPECT(kmm_vmalloc_to_phys(mm, large + 3 * ps + 99) != KMM_PHYS_NONE);
        KT_EXPECT(kmm_vmalloc_to_phys(mm, large + 4 * ps) == KMM_PHYS_NONE);
        ktest_fill(large, 3 * ps + 100, 12);
    }
    KT_EXPECT(!small || ktest_verify(small, 100, 11));
    KT_EXPECT(!large || ktest_verify(large, 3 * ps + 100, 12));
    kmm_kvfree(mm, small);
    kmm_kvfree(mm, large);
}

/* kmm_vmalloc_aligned at 2 MiB: the address is aligned (the frames need
 * not be), and the area is whole. */
static void vmalloc_aligned_2mib(const struct ktest_env *env)
{
    struct kmm *mm = env->mm;
    const size_t align = 2u << 20;
    char *filler = kmm_vmalloc(mm, env->page_size, 0);   /* so that the next free address is not aligned by chance */
    char *p = kmm_vmalloc_aligned(mm, 3u << 20, align, 0);
    char *q = kmm_vmalloc_aligned(mm, env->page_size, align, 0);
    KT_EXPECT(filler != NULL && p != NULL && q != NULL);
    KT_EXPECT(((uintptr_t)p & (align - 1)) == 0);
    KT_EXPECT(((uintptr_t)q & (align - 1)) == 0);
    if (p) {
        ktest_fill(p, 3u << 20, 21);
        KT_EXPECT(ktest_verify(p, 3u << 20, 21));
        KT_EXPECT(kmm_vmalloc_to_phys(mm, p + (3u << 20) - 1) != KMM_PHYS_NONE);
    }
    if (q) {
        ktest_fill(q, env->page_size, 22);
        KT_EXPECT(ktest_verify(q, env->page_size, 22));
    }
    kmm_vfree(mm, q);
    kmm_vfree(mm, p);
    kmm_vfree(mm, filler);
}

/* A freed area stays mapped to its pages until a purge (the documented
 * window of lazy freeing); after kmm_vmalloc_purge its address is no
 * area's and faults, and its pages are back in the page allocator. */
static void vfree_purge_unmaps(const struct ktest_env *env)
{
    struct kmm *mm = env->mm;
    size_t ps = env->page_size, free_before = settled_free_pages(mm);
    struct kmm_vmalloc_stats before, freed, after;
    kmm_vmalloc_stats(mm, &before);
    char *p = kmm_vmalloc(mm, 4 * ps, 0);
    KT_EXPECT(p != NULL);
    if (!p)
        return;
    ktest_fill(p, 4 * ps, 31);
    kmm_vfree(mm, p);
    kmm_vmalloc_stats(mm, &freed);
    bool lazy = freed.lazy_areas > before.lazy_areas;
    KT_EXPECT(freed.areas == before.areas);
    if (lazy) {
        KT_EXPECT(freed.lazy_pages == before.lazy_pages + 4);
        if (env->probe_read)
            KT_EXPECT(env->probe_read(p + 3 * ps) == 0);
    }
    size_t purged = kmm_vmalloc_purge(mm);
    KT_EXPECT(purged >= (lazy ? 4u : 0u));
    kmm_vmalloc_stats(mm, &after);
    KT_EXPECT(after.lazy_areas == 0 && after.lazy_pages == 0);
    KT_EXPECT(after.purges >= before.purges + (lazy ? 1 : 0));
    KT_EXPECT(kmm_vmalloc_to_phys(mm, p) == KMM_PHYS_NONE);
    if (env->probe_read) {
        KT_EXPECT(env->probe_read(p) == -1);
        KT_EXPECT(env->probe_read(p + 3 * ps) == -1);
    }
    KT_EXPECT(settled_free_pages(mm) == free_before);
}

/* Thousands of live areas, each its own, freed in an interleaved order:
 * once purged, the space is one piece again as before, and every counter
 * is back where it started. */
static void vmalloc_many_areas_stats(const struct ktest_env *env)
{
    struct kmm *mm = env->mm;
    enum { N = 2000 };
    size_t free_before = settled_free_pages(mm);
    struct kmm_vmalloc_stats before, during, after;
    kmm_vmalloc_stats(mm, &before);
    uint64_t **area = kmm_malloc(mm, N * sizeof *area, 0);
    KT_EXPECT(area != NULL);
    if (!area)
        return;
    unsigned got = 0;
    for (; got < N; got++) {
        area[got] = kmm_vmalloc(mm, env->page_size, 0);
        if (!area[got])
            break;
        area[got][0] = got;
        area[got][env->page_size / 8 - 1] = ~(uint64_t)got;
    }
    KT_EXPECT(got == N);
    kmm_vmalloc_stats(mm, &during);
    KT_EXPECT(during.areas == before.areas + got);
    KT_EXPECT(during.pages == before.pages + got);
    KT_EXPECT(during.free_bytes + got * 2 * env->page_size <= before.free_bytes);   /* a page and a guard each */
    unsigned bad = 0;
    for (unsigned i = 0; i < got; i++)
        bad += area[i][0] != i || area[i][env->page_size / 8 - 1] != ~(uint64_t)i;
    KT_EXPECT(bad == 0);
    for (unsigned parity = 0; parity < 2; parity++)
        for (unsigned i = parity; i < got; i += 2)
            kmm_vfree(mm, area[i]);
    kmm_free(mm, area);
    kmm_vmalloc_purge(mm);
    kmm_vmalloc_stats(mm, &after);
    KT_EXPECT(after.areas == before.areas && after.pages == before.pages);
    KT_EXPECT(after.vmap_areas == before.vmap_areas && after.vmap_pages == before.vmap_pages);
    KT_EXPECT(after.lazy_areas == 0 && after.lazy_pages == 0);
    KT_EXPECT(after.free_bytes == before.free_bytes);
    KT_EXPECT(after.free_ranges == before.free_ranges);
    KT_EXPECT(after.largest_free_bytes == before.largest_free_bytes);
    KT_EXPECT(after.mappings == before.mappings);
    KT_EXPECT(after.frees == before.frees + got);
    KT_EXPECT(settled_free_pages(mm) == free_before);
}

const struct ktest ktest_cases_vm[] = {
    { .name = "vmalloc_sizes_direct_alias", .run = vmalloc_sizes_direct_alias, .needs_vm = true },
    { .name = "vmalloc_guard_page_faults", .run = vmalloc_guard_page_faults, .needs_vm = true },
    { .name = "vmap_scrambled_pages", .run = vmap_scrambled_pages, .needs_vm = true },
    { .name = "kvmalloc_small_large", .run = kvmalloc_small_large, .needs_vm = true },
    { .name = "vmalloc_aligned_2mib", .run = vmalloc_aligned_2mib, .needs_vm = true },
    { .name = "vfree_purge_unmaps", .run = vfree_purge_unmaps, .needs_vm = true },
    { .name = "vmalloc_many_areas_stats", .run = vmalloc_many_areas_stats, .needs_vm = true },
    { .name = NULL },
};
