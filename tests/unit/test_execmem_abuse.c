/* Misuse of executable memory (include/kmm/execmem.h) must abort with the
 * function, the reason and the address:
 *  - kmm_execmem_free twice, of an interior address, of an address of the
 *    region never allocated, of a kmm_malloc pointer, of a secret pointer;
 *    kmm_execmem_free_batch with a pointer twice or an interior one;
 *  - kmm_execmem_usable_size of a freed allocation;
 *  - an execmem frame freed through kmm_unmapped_free (the unmapped cache
 *    names execmem as the owner) or kmm_free_pages (the page allocator
 *    names the unmapped cache).
 * Each runs in a child process (kmm_test_expect_abort); a child whose
 * set-up failed exits with 3.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

#include "execmem/execmem_internal.h"   /* white-box: a chunk's frames, for the cross-layer frees */
#include "kmm_test.h"

#define PS  ((size_t)4096)
#define MEM (64ull << 20)

static void *exec_or_exit(struct kmm *mm, size_t size)
{
    void *p = kmm_execmem_alloc(mm, size);
    if (!p)
        exit(3);
    return p;
}

static void free_twice(void *arg)
{
    (void)arg;
    struct kmm *mm = kmm_test_create(PS, MEM);
    void *keep = exec_or_exit(mm, 64);   /* keeps the chunk */
    void *p = exec_or_exit(mm, 64);
    kmm_execmem_free(mm, p);
    kmm_execmem_free(mm, p);
    (void)keep;
}

static void free_interior(void *arg)
{
    (void)arg;
    struct kmm *mm = kmm_test_create(PS, MEM);
    char *p = exec_or_exit(mm, 64);
    kmm_execmem_free(mm, p + 16);
}

static void free_unaligned(void *arg)
{
    (void)arg;
    struct kmm *mm = kmm_test_create(PS, MEM);
    char *p = exec_or_exit(mm, 64);
    kmm_execmem_free(mm, p + 3);
}

static void free_never(void *arg)
{
    (void)arg;
    struct kmm *mm = kmm_test_create(PS, MEM);
    char *p = exec_or_exit(mm, 64);
    kmm_execmem_free(mm, p + 4096);   /* in the chunk, past every allocation */
}

static void free_no_chunk(void *arg)
{
    (void)arg;
    struct kmm *mm = kmm_test_create(PS, MEM);
    char *p = exec_or_exit(mm, 64);
    kmm_execmem_free(mm, p + (8u << 20));   /* in the region, no chunk there */
}

static void free_large_interior(void *arg)
{
    (void)arg;
    struct kmm *mm = kmm_test_create(PS, MEM);
    char *p = exec_or_exit(mm, 3u << 20);
    kmm_execmem_free(mm, p + 4096);
}

static void free_malloc(void *arg)
{
    (void)arg;
    struct kmm *mm = kmm_test_create(PS, MEM);
    exec_or_exit(mm, 64);
    void *p = kmm_malloc(mm, 64, 0);
    if (!p)
        exit(3);
    kmm_execmem_free(mm, p);
}

static void free_malloc_first(void *arg)
{
    (void)arg;
    struct kmm *mm = kmm_test_create(PS, MEM);
    void *p = kmm_malloc(mm, 64, 0);
    if (!p)
        exit(3);
    kmm_execmem_free(mm, p);   /* before any execmem allocation */
}

static void free_secret(void *arg)
{
    (void)arg;
    struct kmm *mm = kmm_test_create(PS, MEM);
    exec_or_exit(mm, 64);
    void *p = kmm_secret_alloc(mm, 64);
    if (!p)
        exit(3);
    kmm_execmem_free(mm, p);
}

static void batch_twice(void *arg)
{
    (void)arg;
    struct kmm *mm = kmm_test_create(PS, MEM);
    void *p = exec_or_exit(mm, 64);
    void *q = exec_or_exit(mm, 64);
    void *v[3] = { q, p, q };
    kmm_execmem_free_batch(mm, v, 3);
}

static void batch_interior(void *arg)
{
    (void)arg;
    struct kmm *mm = kmm_test_create(PS, MEM);
    char *p = exec_or_exit(mm, 64);
    void *v[2] = { p, p + 32 };
    kmm_execmem_free_batch(mm, v, 2);
}

static void usable_freed(void *arg)
{
    (void)arg;
    struct kmm *mm = kmm_test_create(PS, MEM);
    exec_or_exit(mm, 64);
    void *p = exec_or_exit(mm, 64);
    kmm_execmem_free(mm, p);
    kmm_execmem_usable_size(mm, p);
}

static kmm_phys_t frame_of(struct kmm *mm, void *p)
{
    struct kmm_execmem *x = mm->execmem;
    struct exec_chunk *c = x->slot[((uintptr_t)p - x->region) >> EXEC_SLOT_SHIFT];
    return c->step[0];
}

static void unmapped_free_frame(void *arg)
{
    (void)arg;
    struct kmm *mm = kmm_test_create(PS, MEM);
    kmm_unmapped_free(mm, frame_of(mm, exec_or_exit(mm, 64)));
}

static void free_pages_frame(void *arg)
{
    (void)arg;
    struct kmm *mm = kmm_test_create(PS, MEM);
    kmm_free_pages(mm, kmm_phys_to_virt(mm, frame_of(mm, exec_or_exit(mm, 64))));
}

#define EXPECT(fn, needle) assert_int_equal(kmm_test_expect_abort(fn, NULL, needle), 0)

static void test_free_misuse(void **state)
{
    (void)state;
    EXPECT(free_twice, "kmm_execmem_free: not allocated (never, or freed already: double free?)");
    EXPECT(free_interior, "kmm_execmem_free: not the start of an allocation (inside one)");
    EXPECT(free_unaligned, "kmm_execmem_free: not the start of an allocation (inside one)");
    EXPECT(free_never, "kmm_execmem_free: not allocated");
    EXPECT(free_no_chunk, "kmm_execmem_free: never allocated (no chunk there)");
    EXPECT(free_large_interior, "kmm_execmem_free: not the start of an allocation");
    EXPECT(batch_twice, "kmm_execmem_free_batch: freed already (double free");
    EXPECT(batch_interior, "kmm_execmem_free_batch: not the start of an allocation (inside one)");
    EXPECT(usable_freed, "kmm_execmem_usable_size: not allocated");
}

static void test_wrong_kind(void **state)
{
    (void)state;
    EXPECT(free_malloc, "kmm_execmem_free: not executable memory (outside the execmem region)");
    EXPECT(free_malloc_first, "kmm_execmem_free: not executable memory (none was ever allocated)");
    struct kmm *mm = kmm_test_create(PS, MEM);
    void *s = kmm_secret_alloc(mm, 64);
    if (s) {
        kmm_secret_free(mm, s);
        EXPECT(free_secret, "kmm_execmem_free: not executable memory (outside the execmem region)");
    } else {
        fprintf(stderr, "test_wrong_kind: kmm_secret_alloc unavailable here: the secret pointer case is skipped\n");
    }
    kmm_destroy(mm);
}

static void test_frames_elsewhere(void **state)
{
    (void)state;
    EXPECT(unmapped_free_frame, "kmm_unmapped_free: free of memory owned by executable memory");
    EXPECT(free_pages_frame, "unmapped cache");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_free_misuse),
        cmocka_unit_test(test_wrong_kind),
        cmocka_unit_test(test_frames_elsewhere),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
