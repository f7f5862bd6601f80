/* Misuse of the page allocator must be caught, reported with the address
 * and the reason, and abort: never silent corruption (DESIGN.md section 3).
 * Each misuse runs in a child process (kmm_test_expect_abort). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>

#include "kmm_test.h"

#define PS 4096
#define MEM (64ull << 20)

static struct kmm *child_mm(void)
{
    return kmm_test_create(PS, MEM);
}

static void *alloc_or_exit(struct kmm *mm, unsigned order)
{
    void *p = kmm_alloc_pages(mm, order, 0);
    if (!p)
        exit(3);   /* a set-up failure is an exit, not the abort the parent waits for */
    return p;
}

/* ---- the misuses, each in its own child ------------------------------------- */

static void double_free_order0(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *p = alloc_or_exit(mm, 0);
    kmm_free_pages(mm, p);
    kmm_free_pages(mm, p);
}

static void double_free_order3(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *p = alloc_or_exit(mm, 3);
    kmm_free_pages(mm, p);
    kmm_free_pages(mm, p);
}

/* Above the per-thread cache orders: the first free goes straight to the lists. */
static void double_free_order6(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *p = alloc_or_exit(mm, 6);
    void *keep = alloc_or_exit(mm, 6);   /* so the freed block has a held neighbour */
    (void)keep;
    kmm_free_pages(mm, p);
    kmm_free_pages(mm, p);
}

/* The first free went from the cache into the lists before the second. */
static void double_free_after_drain(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *p = alloc_or_exit(mm, 0);
    void *keep = alloc_or_exit(mm, 0);
    (void)keep;
    kmm_free_pages(mm, p);
    kmm_drain(mm);
    kmm_free_pages(mm, p);
}

/* Nothing held nearby: the freed page has merged into a large free block,
 * yet the second free is still a double free, not some other complaint. */
static void double_free_after_merge(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *p = alloc_or_exit(mm, 0);
    kmm_free_pages(mm, p);
    kmm_drain(mm);
    kmm_free_pages(mm, p);
}

static void double_free_exact(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *p = kmm_alloc_pages_exact(mm, 20 * 1024, 0);
    if (!p)
        exit(3);
    kmm_free_pages(mm, p);
    kmm_free_pages(mm, p);
}

static void double_free_aligned(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *p = kmm_alloc_pages_aligned(mm, 3, 1u << 20, 0);
    if (!p)
        exit(3);
    kmm_free_pages(mm, p);
    kmm_free_pages(mm, p);
}

static void free_interior_page(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    char *p = alloc_or_exit(mm, 2);
    kmm_free_pages(mm, p + PS);
}

static void free_last_page_of_exact(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    char *p = kmm_alloc_pages_exact(mm, 5 * PS, 0);
    if (!p)
        exit(3);
    kmm_free_pages(mm, p + 4 * PS);
}

static void free_unaligned_inside(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    char *p = alloc_or_exit(mm, 2);
    kmm_free_pages(mm, p + 100);
}

static void free_unaligned_first_page(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    char *p = alloc_or_exit(mm, 0);
    kmm_free_pages(mm, p + 8);
}

static void free_reserved(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    kmm_phys_t phys = 8ull << 20;
    if (kmm_reserve_pages(mm, phys, 4) != 0)
        exit(3);
    kmm_free_pages(mm, kmm_phys_to_virt(mm, phys));
}

static void free_reserved_single(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    kmm_phys_t phys = 3 * PS;
    if (kmm_reserve_pages(mm, phys, 1) != 0)
        exit(3);
    kmm_free_pages(mm, kmm_phys_to_virt(mm, phys));
}

static void free_stack(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    int local = 0;
    kmm_free_pages(mm, &local);
}

static void free_malloced(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *p = malloc(64);
    kmm_free_pages(mm, p);
}

static void free_past_end(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    uintptr_t base = (uintptr_t)kmm_phys_to_virt(mm, 0);
    kmm_free_pages(mm, (void *)(base + MEM));
}

/* A page of another memory system is outside this one. */
static void free_other_mm(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm(), *other = child_mm();
    void *p = alloc_or_exit(other, 0);
    kmm_free_pages(mm, p);
}

static void unreserve_free(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    kmm_unreserve_pages(mm, 8ull << 20, 1);
}

static void unreserve_allocated(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *p = alloc_or_exit(mm, 0);
    kmm_unreserve_pages(mm, kmm_virt_to_phys(mm, p), 1);
}

/* Only the tail of the range is not reserved. */
static void unreserve_beyond_reservation(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    kmm_phys_t phys = 8ull << 20;
    if (kmm_reserve_pages(mm, phys, 4) != 0)
        exit(3);
    kmm_unreserve_pages(mm, phys, 5);
}

static void unreserve_twice(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    kmm_phys_t phys = 8ull << 20;
    if (kmm_reserve_pages(mm, phys, 4) != 0)
        exit(3);
    kmm_unreserve_pages(mm, phys, 4);
    kmm_unreserve_pages(mm, phys, 4);
}

/* kmm_unreserve_pages returns nothing, so it cannot refuse a range that
 * could never have been reserved: that aborts too. */
static void unreserve_misaligned(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    kmm_phys_t phys = 8ull << 20;
    if (kmm_reserve_pages(mm, phys, 4) != 0)
        exit(3);
    kmm_unreserve_pages(mm, phys + 100, 1);
}

static void unreserve_outside_memory(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    kmm_unreserve_pages(mm, MEM, 1);
}

/* ---- the tests ------------------------------------------------------------------ */

struct abuse {
    void (*fn)(void *arg);
    const char *why;
};

/* The reason, and an address: the message must say where, in hex. */
static void expect_abort(void **state)
{
    const struct abuse *a = *state;
    assert_int_equal(kmm_test_expect_abort(a->fn, NULL, a->why), 0);
    assert_int_equal(kmm_test_expect_abort(a->fn, NULL, "0x"), 0);
}

#define ABUSE(fn, why) \
    { #fn, expect_abort, NULL, NULL, &(struct abuse){ fn, why } }

/* An argument runs only the tests whose names match it (cmocka's pattern). */
int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        ABUSE(double_free_order0, "double free"),
        ABUSE(double_free_order3, "double free"),
        ABUSE(double_free_order6, "double free"),
        ABUSE(double_free_after_drain, "double free"),
        ABUSE(double_free_after_merge, "double free"),
        ABUSE(double_free_exact, "double free"),
        ABUSE(double_free_aligned, "double free"),
        ABUSE(free_interior_page, "not the start of a page allocation"),
        ABUSE(free_last_page_of_exact, "not the start of a page allocation"),
        ABUSE(free_unaligned_inside, "not the start of a page allocation"),
        ABUSE(free_unaligned_first_page, "not the start of a page allocation"),
        ABUSE(free_reserved, "reserved"),
        ABUSE(free_reserved_single, "reserved"),
        ABUSE(free_stack, "outside memory"),
        ABUSE(free_malloced, "outside memory"),
        ABUSE(free_past_end, "outside memory"),
        ABUSE(free_other_mm, "outside memory"),
        ABUSE(unreserve_free, "not reserved"),
        ABUSE(unreserve_allocated, "not reserved"),
        ABUSE(unreserve_beyond_reservation, "not reserved"),
        ABUSE(unreserve_twice, "not reserved"),
        ABUSE(unreserve_misaligned, "kmm_unreserve_pages: range misaligned or outside memory"),
        ABUSE(unreserve_outside_memory, "kmm_unreserve_pages: range misaligned or outside memory"),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
