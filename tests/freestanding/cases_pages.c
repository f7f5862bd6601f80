/* cases_pages.c - the page allocator, freestanding: orders, areas, exact and
 * aligned sizes, reservations, zeroing; everything freed coalesces back. */
#include "ktest.h"

static bool in_area(const struct ktest_env *env, const void *p, unsigned area)
{
    kmm_phys_t pa = kmm_virt_to_phys(env->mm, p);
    uint64_t lo = area ? env->area_limits[area - 1] : 0;
    return pa >= lo && pa < env->area_limits[area];
}

/* Blocks of each order, naturally aligned, written, freed: the free lists
 * come back exactly as they were. */
static void pages_orders(const struct ktest_env *env)
{
    struct kmm *mm = env->mm;
    struct kmm_page_stats before, after;
    kmm_page_stats(mm, &before);
    void *blocks[16];
    unsigned n = 0;
    for (unsigned order = 0; order < 6 && (env->page_size << order) <= (1u << 20); order++) {
        void *p = kmm_alloc_pages(mm, order, 0);
        KT_EXPECT(p != NULL);
        if (!p)
            continue;
        kmm_phys_t pa = kmm_virt_to_phys(mm, p);
        KT_EXPECT((uintptr_t)p == env->direct_map + pa);
        KT_EXPECT(kmm_phys_to_virt(mm, pa) == p);
        KT_EXPECT((pa & ((env->page_size << order) - 1)) == 0);
        ktest_fill(p, env->page_size << order, order);
        blocks[n++] = p;
    }
    for (unsigned i = 0; i < n; i++)
        KT_EXPECT(ktest_verify(blocks[i], env->page_size << i, i));
    KT_EXPECT(kmm_check(mm) == 0);
    for (unsigned i = n; i-- > 0;)
        kmm_free_pages(mm, blocks[i]);
    kmm_drain(mm);
    kmm_page_stats(mm, &after);
    KT_EXPECT(__builtin_memcmp(before.nr_free, after.nr_free, sizeof before.nr_free) == 0);
    KT_EXPECT(after.free_pages == before.free_pages);
}

/* Exact sizes and large alignment without power-of-two waste; KMM_ZERO. */
static void pages_exact_aligned(const struct ktest_env *env)
{
    struct kmm *mm = env->mm;
    struct kmm_page_stats before, during;
    kmm_page_stats(mm, &before);
    void *exact = kmm_alloc_pages_exact(mm, 5 * env->page_size, KMM_ZERO);
    KT_EXPECT(exact != NULL && kmm_page_alloc_size(mm, exact) == 5);
    bool zero = exact != NULL;
    for (size_t i = 0; exact && i < 5 * env->page_size; i++)
        zero &= ((const unsigned char *)exact)[i] == 0;
    KT_EXPECT(zero);
    void *aligned = kmm_alloc_pages_aligned(mm, 1, 1u << 20, 0);
    KT_EXPECT(aligned != NULL && (kmm_virt_to_phys(mm, aligned) & ((1u << 20) - 1)) == 0);
    kmm_page_stats(mm, &during);
    /* one page for the aligned block, five for the exact one: nothing more held */
    KT_EXPECT(before.free_pages - during.free_pages == 6);
    kmm_free_pages(mm, exact);
    kmm_free_pages(mm, aligned);
    kmm_drain(mm);
    kmm_page_stats(mm, &during);
    KT_EXPECT(during.free_pages == before.free_pages);
}

/* Each area serves its own mask; a mask of several areas falls back from
 * one to the next; the default takes the highest first. */
static void pages_areas(const struct ktest_env *env)
{
    struct kmm *mm = env->mm;
    for (unsigned a = 0; a < env->nr_areas; a++) {
        void *p = kmm_alloc_pages(mm, 0, KMM_AREA(a));
        KT_EXPECT(p != NULL && in_area(env, p, a));
        if (p)
            kmm_free_pages(mm, p);
    }
    void *any = kmm_alloc_pages(mm, 0, 0);
    KT_EXPECT(any != NULL && in_area(env, any, env->nr_areas - 1));
    if (any)
        kmm_free_pages(mm, any);
}

/* A hole between ranges is not memory: reserving it is refused. Reserving
 * free pages takes them out until unreserved; reserving them twice fails. */
static void pages_reserve(const struct ktest_env *env)
{
    struct kmm *mm = env->mm;
    if (env->hole_end > env->hole_start)
        KT_EXPECT(kmm_reserve_pages(mm, env->hole_start, 1) == -KMM_EBUSY);
    KT_EXPECT(kmm_reserve_pages(mm, 1, 1) == -KMM_EINVAL);   /* not page aligned */
    void *p = kmm_alloc_pages(mm, 2, 0);
    KT_EXPECT(p != NULL);
    if (!p)
        return;
    kmm_phys_t pa = kmm_virt_to_phys(mm, p);
    kmm_free_pages(mm, p);
    kmm_drain(mm);
    KT_EXPECT(kmm_reserve_pages(mm, pa + env->page_size, 2) == 0);
    KT_EXPECT(kmm_reserve_pages(mm, pa + env->page_size, 1) == -KMM_EBUSY);
    KT_EXPECT(kmm_check(mm) == 0);
    kmm_unreserve_pages(mm, pa + env->page_size, 2);
}

const struct ktest ktest_cases_pages[] = {
    { .name = "pages_orders", .run = pages_orders },
    { .name = "pages_exact_aligned", .run = pages_exact_aligned },
    { .name = "pages_areas", .run = pages_areas },
    { .name = "pages_reserve", .run = pages_reserve },
    { .name = NULL },
};
