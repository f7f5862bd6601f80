/* cases_malloc.c - kmm_malloc and caches, freestanding: sizes and areas,
 * physical contiguity, usable sizes, and memory that comes back. */
#include "ktest.h"

/* Objects of a few classes, some from the lowest area; two rounds of the
 * same work must not hold more pages than one (with no meta_alloc hook and
 * no thread caches, the metadata also comes from the page allocator). */
static void malloc_rounds(const struct ktest_env *env)
{
    struct kmm *mm = env->mm;
    size_t rounds_pages[2] = { 0, 0 };
    for (unsigned round = 0; round < 2; round++) {
        void *obj[200];
        static const size_t sizes[] = { 24, 100, 200, 1000, 2000 };   /* few classes: 64 KiB pages are few */
        for (unsigned i = 0; i < 200; i++) {
            size_t size = sizes[i % 5];
            obj[i] = kmm_malloc(mm, size, i % 3 ? 0 : KMM_AREA(0));
            KT_EXPECT(obj[i] != NULL);
            if (!obj[i])
                continue;
            KT_EXPECT(kmm_usable_size(mm, obj[i]) >= size);
            KT_EXPECT(i % 3 || kmm_virt_to_phys(mm, obj[i]) < env->area_limits[0]);
            ktest_fill(obj[i], size, i);
        }
        for (unsigned i = 0; i < 200; i++)
            KT_EXPECT(!obj[i] || ktest_verify(obj[i], sizes[i % 5], i));
        void *big = kmm_malloc(mm, 3 * env->page_size + 1, 0);
        KT_EXPECT(big != NULL && kmm_usable_size(mm, big) == 4 * env->page_size);
        /* physically contiguous at every size */
        KT_EXPECT(big && kmm_virt_to_phys(mm, (char *)big + 3 * env->page_size) ==
                             kmm_virt_to_phys(mm, big) + 3 * env->page_size);
        KT_EXPECT(kmm_check(mm) == 0);
        for (unsigned i = 0; i < 200; i++)
            kmm_free(mm, obj[i]);
        kmm_free(mm, big);
        kmm_drain(mm);
        KT_EXPECT(kmm_check(mm) == 0);
        struct kmm_page_stats st;
        kmm_page_stats(mm, &st);
        rounds_pages[round] = st.allocated_pages;
    }
    KT_EXPECT(rounds_pages[1] == rounds_pages[0]);
}

/* calloc zeroes, realloc keeps the contents, aligned allocations align. */
static void malloc_calloc_realloc_aligned(const struct ktest_env *env)
{
    struct kmm *mm = env->mm;
    unsigned char *z = kmm_calloc(mm, 100, 7, 0);
    KT_EXPECT(z != NULL);
    bool zero = z != NULL;
    for (unsigned i = 0; z && i < 700; i++)
        zero &= z[i] == 0;
    KT_EXPECT(zero);
    ktest_fill(z, 700, 5);
    unsigned char *r = kmm_realloc(mm, z, 3 * env->page_size, 0);
    KT_EXPECT(r != NULL && ktest_verify(r, 700, 5));
    kmm_free(mm, r ? r : z);
    void *a = kmm_malloc_aligned(mm, 100, 4096, 0);
    KT_EXPECT(a != NULL && ((uintptr_t)a & 4095) == 0);
    kmm_free(mm, a);
    KT_EXPECT(kmm_calloc(mm, SIZE_MAX / 2, 3, 0) == NULL);   /* size overflow: refused */
}

/* A cache with a constructor: objects of its size, constructed. */
static unsigned ctor_calls;
static void ctor(void *p)
{
    ctor_calls++;
    __builtin_memset(p, 0x5c, 48);
}

static void malloc_cache(const struct ktest_env *env)
{
    struct kmm_cache *c = kmm_cache_create(env->mm, "ktest-48", 48, 16, ctor);
    KT_EXPECT(c != NULL);
    if (!c)
        return;
    void *obj[64];
    for (unsigned i = 0; i < 64; i++) {
        obj[i] = kmm_cache_alloc(c, 0);
        KT_EXPECT(obj[i] != NULL && ((uintptr_t)obj[i] & 15) == 0);
        KT_EXPECT(obj[i] && ((unsigned char *)obj[i])[47] == 0x5c);
    }
    KT_EXPECT(ctor_calls >= 64);
    for (unsigned i = 0; i < 64; i++)
        kmm_cache_free(c, obj[i]);
    kmm_cache_destroy(c);
}

const struct ktest ktest_cases_malloc[] = {
    { .name = "malloc_rounds", .run = malloc_rounds },
    { .name = "malloc_calloc_realloc_aligned", .run = malloc_calloc_realloc_aligned },
    { .name = "malloc_cache", .run = malloc_cache },
    { .name = NULL },
};
