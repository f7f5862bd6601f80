/* Misuse of the unmapped cache (include/kmm/unmapped.h) must abort with a
 * report that names the call, the reason and the address:
 *  - kmm_unmapped_free twice ("already free (double free?)"), of the middle
 *    of an allocation ("inside an allocation of order N at X"), of an
 *    address the cache never handed out, inside a chunk or outside every
 *    one ("not an allocation of the unmapped cache"), of a page-allocator
 *    page (names its owner);
 *  - kmm_free_pages of a page of the cache (a chunk's head or a page
 *    inside it) names the unmapped cache.
 * Each runs in a child (kmm_test_expect_abort); a child says "misuse of
 * 0x<phys>" (or the direct-map address) before the misuse, and the report
 * line must hold it; a child whose set-up failed exits with 3. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "kmm_test.h"

#define PS ((size_t)4096)

static struct kmm *child_mm(void) { return kmm_test_create(PS, 64ull << 20); }

static kmm_phys_t alloc_or_exit(struct kmm *mm, unsigned order)
{
    kmm_phys_t p = kmm_unmapped_alloc(mm, order, 0);
    if (p == KMM_PHYS_NONE)
        exit(3);
    return p;
}

static void misuse_of(unsigned long long v)
{
    fprintf(stderr, "misuse of 0x%llx\n", v);
    fflush(stderr);
}

/* The child aborts (SIGABRT) with a line holding why and the value it said. */
static void expect_report(void (*fn)(void *), const char *why)
{
    assert_int_equal(kmm_test_expect_abort(fn, NULL, why), 0);
    char out[8192];
    int status = kmm_test_run_child(fn, NULL, out, sizeof out);
    const char *at = strstr(out, "misuse of ");
    char value[64] = "";
    if (at)
        sscanf(at, "misuse of %63s", value);
    const char *line = strstr(out, why);
    bool ok = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT && value[0] && line;
    if (ok) {
        while (line > out && line[-1] != '\n')
            line--;
        const char *eol = strchr(line, '\n');
        char report[1024];
        snprintf(report, sizeof report, "%.*s", (int)(eol ? eol - line : (long)strlen(line)), line);
        ok = strstr(report, value) != NULL;
    }
    if (!ok) {
        fprintf(stderr, "expected a report \"...%s...%s...\"\n", why, value);
        kmm_test_describe_child(status, out);
    }
    assert_true(ok);
}

static void double_free(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    kmm_phys_t p = alloc_or_exit(mm, 0);
    alloc_or_exit(mm, 0);   /* keeps the freed page from merging away */
    kmm_unmapped_free(mm, p);
    misuse_of(p);
    kmm_unmapped_free(mm, p);
}

static void double_free_merged(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    kmm_phys_t p = alloc_or_exit(mm, 2);
    kmm_unmapped_free(mm, p);   /* merges back into the whole chunk: p is inside a free block now */
    misuse_of(p + PS);
    kmm_unmapped_free(mm, p + PS);
}

static void interior_free(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    kmm_phys_t p = alloc_or_exit(mm, 3);
    misuse_of(p + 5 * PS);
    kmm_unmapped_free(mm, p + 5 * PS);
}

static void never_allocated_outside(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    kmm_phys_t p = alloc_or_exit(mm, 0);
    kmm_phys_t far = p ^ (8ull << 20);   /* another 2 MiB block, no chunk's */
    misuse_of(far);
    kmm_unmapped_free(mm, far);
}

static void never_allocated_no_cache(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    misuse_of(0x200000);
    kmm_unmapped_free(mm, 0x200000);
}

static void misaligned(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    kmm_phys_t p = alloc_or_exit(mm, 0);
    misuse_of(p + 8);
    kmm_unmapped_free(mm, p + 8);
}

static void free_pages_of_cache_page(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    kmm_phys_t p = alloc_or_exit(mm, 0);   /* the first page of a fresh chunk: the chunk's head */
    void *v = kmm_phys_to_virt(mm, p);
    fprintf(stderr, "misuse of %p\n", v);
    fflush(stderr);
    kmm_free_pages(mm, v);
}

static void free_pages_inside_cache_chunk(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    alloc_or_exit(mm, 0);
    kmm_phys_t p = alloc_or_exit(mm, 0);   /* the second page: inside the chunk, not its head */
    void *v = kmm_phys_to_virt(mm, p);
    fprintf(stderr, "misuse of %p\n", v);
    fflush(stderr);
    kmm_free_pages(mm, v);
}

static void unmapped_free_of_page_allocation(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    alloc_or_exit(mm, 0);
    void *v = kmm_alloc_pages(mm, 0, 0);
    if (!v)
        exit(3);
    fprintf(stderr, "misuse of %p\n", v);
    fflush(stderr);
    kmm_unmapped_free(mm, kmm_virt_to_phys(mm, v));
}

static void unmapped_free_of_vmalloc_frame(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *area = kmm_vmalloc(mm, PS, 0);
    if (!area)
        exit(3);
    kmm_phys_t p = kmm_vmalloc_to_phys(mm, area);
    fprintf(stderr, "misuse of %p\n", kmm_phys_to_virt(mm, p));
    fflush(stderr);
    kmm_unmapped_free(mm, p);
}

static void test_double_free(void **s) { (void)s; expect_report(double_free, "already free (double free?)"); }
static void test_double_free_merged(void **s) { (void)s; expect_report(double_free_merged, "already free (double free?)"); }
static void test_interior_free(void **s) { (void)s; expect_report(interior_free, "inside an allocation of order 3 at"); }
static void test_never_allocated(void **s)
{
    (void)s;
    expect_report(never_allocated_outside, "not an allocation of the unmapped cache");
    expect_report(never_allocated_no_cache, "not an allocation of the unmapped cache");
    expect_report(misaligned, "not an allocation of the unmapped cache");
}
static void test_free_pages_names_cache(void **s)
{
    (void)s;
    expect_report(free_pages_of_cache_page, "owned by the unmapped cache");
    expect_report(free_pages_inside_cache_chunk, "owned by the unmapped cache");
}
static void test_unmapped_free_names_owner(void **s)
{
    (void)s;
    expect_report(unmapped_free_of_page_allocation, "owned by the page allocator's caller");
    expect_report(unmapped_free_of_vmalloc_frame, "owned by kmm_vmalloc");
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_double_free),
        cmocka_unit_test(test_double_free_merged),
        cmocka_unit_test(test_interior_free),
        cmocka_unit_test(test_never_allocated),
        cmocka_unit_test(test_free_pages_names_cache),
        cmocka_unit_test(test_unmapped_free_names_owner),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
