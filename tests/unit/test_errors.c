/* The error rule (README "Errors"), entry point by entry point: for each way
 * a call can be refused, what it returns, the errno it leaves, what it
 * writes to stderr (nothing, or exactly one line naming the function the
 * caller called and why), and that nothing else changed: kmm_check passes,
 * the pages held are as many as before and the memory held keeps its bytes.
 *
 * In short: a size too large to be served, a calloc whose n * size
 * overflows, no memory: ENOMEM and silent (POSIX malloc and glibc); an
 * argument outside what the header allows (order, alignment not a power of
 * two, zero pages, unknown flags, bad prot or pages): EINVAL and one line;
 * a function returning a negative error number sets no errno and is silent. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kmm_test.h"

#define PS 4096
#define MiB (1ull << 20)
#define GiB (1ull << 30)
#define MEM (256 * MiB)
#define UNKNOWN_FLAG (1u << 12)
#define ERRNO_UNTOUCHED 4242   /* errno before each call: what "sets no errno" leaves */

struct env {
    struct kmm *mm;
    struct kmm_cache *plain, *with_ctor;
    void *small, *large, *pages, *vm;   /* held across the table: must keep their bytes */
};

static void ctor(void *p) { memset(p, 0x5a, 64); }

/* ---- the calls, each refused ------------------------------------------------------- */

#define CALL(name, expr) \
    static intptr_t name(struct env *e) { (void)e; return (intptr_t)(expr); }

static struct kmm *create_with(struct kmm_config cfg) { return kmm_create(&cfg); }
static const uint64_t seven_limits[7] = { 1 * MiB, 2 * MiB, 3 * MiB, 4 * MiB, 5 * MiB, 6 * MiB, UINT64_MAX };

CALL(create_page_size_3000, create_with((struct kmm_config){ .page_size = 3000 }))
CALL(create_page_size_2m, create_with((struct kmm_config){ .page_size = 2 * MiB }))
CALL(create_mem_unaligned, create_with((struct kmm_config){ .mem_size = 64 * MiB + 100 }))
CALL(create_seven_areas, create_with((struct kmm_config){ .area_limits = seven_limits, .nr_areas = 7 }))
CALL(create_slab_flags, create_with((struct kmm_config){ .slab_flags = 0x80 }))

CALL(pages_order_above_max, kmm_alloc_pages(e->mm, KMM_MAX_ORDER + 1, 0))
CALL(pages_unknown_flag, kmm_alloc_pages(e->mm, 0, UNKNOWN_FLAG))
CALL(pages_order_max_no_memory, kmm_alloc_pages(e->mm, KMM_MAX_ORDER, 0))
CALL(pages_absent_area, kmm_alloc_pages(e->mm, 0, KMM_AREA(5)))
CALL(aligned_zero_pages, kmm_alloc_pages_aligned(e->mm, 0, 0, 0))
CALL(aligned_align_3_pages, kmm_alloc_pages_aligned(e->mm, 1, 3 * PS, 0))
CALL(aligned_unknown_flag, kmm_alloc_pages_aligned(e->mm, 1, 0, UNKNOWN_FLAG))
CALL(aligned_above_largest_block, kmm_alloc_pages_aligned(e->mm, ((size_t)1 << KMM_MAX_ORDER) + 1, 0, 0))
CALL(aligned_npages_size_max, kmm_alloc_pages_aligned(e->mm, SIZE_MAX, 0, 0))
CALL(aligned_align_above_largest_block, kmm_alloc_pages_aligned(e->mm, 1, (size_t)PS << (KMM_MAX_ORDER + 1), 0))
CALL(aligned_no_memory, kmm_alloc_pages_aligned(e->mm, 3 * MEM / PS, 0, 0))
CALL(exact_zero, kmm_alloc_pages_exact(e->mm, 0, 0))
CALL(exact_unknown_flag, kmm_alloc_pages_exact(e->mm, PS, UNKNOWN_FLAG))
CALL(exact_size_max, kmm_alloc_pages_exact(e->mm, SIZE_MAX, 0))
CALL(exact_5g, kmm_alloc_pages_exact(e->mm, 5 * GiB, 0))
CALL(exact_no_memory, kmm_alloc_pages_exact(e->mm, 2 * MEM, 0))
CALL(reserve_misaligned, kmm_reserve_pages(e->mm, 8 * MiB + 100, 1))
CALL(reserve_zero_pages, kmm_reserve_pages(e->mm, 8 * MiB, 0))
CALL(reserve_outside, kmm_reserve_pages(e->mm, MEM, 1))
CALL(reserve_busy, kmm_reserve_pages(e->mm, kmm_virt_to_phys(e->mm, e->pages), 1))

CALL(malloc_size_max, kmm_malloc(e->mm, SIZE_MAX, 0))
CALL(malloc_size_max_less_page, kmm_malloc(e->mm, SIZE_MAX - PS, 0))
CALL(malloc_5g, kmm_malloc(e->mm, 5 * GiB, 0))
CALL(malloc_no_memory, kmm_malloc(e->mm, 2 * MEM, 0))
CALL(malloc_unknown_flag, kmm_malloc(e->mm, 64, UNKNOWN_FLAG))
CALL(malloc_absent_area, kmm_malloc(e->mm, 64, KMM_AREA(5)))
CALL(calloc_overflow, kmm_calloc(e->mm, SIZE_MAX / 2, 3, 0))
CALL(calloc_overflow_2, kmm_calloc(e->mm, (size_t)1 << 40, (size_t)1 << 40, 0))
CALL(calloc_8g, kmm_calloc(e->mm, (size_t)1 << 20, (size_t)1 << 13, 0))
CALL(calloc_unknown_flag, kmm_calloc(e->mm, 2, 32, UNKNOWN_FLAG))
CALL(realloc_size_max, kmm_realloc(e->mm, e->small, SIZE_MAX, 0))
CALL(realloc_large_size_max, kmm_realloc(e->mm, e->large, SIZE_MAX, 0))
CALL(realloc_5g, kmm_realloc(e->mm, e->small, 5 * GiB, 0))
CALL(realloc_null_size_max, kmm_realloc(e->mm, NULL, SIZE_MAX, 0))
CALL(realloc_vm_size_max, kmm_realloc(e->mm, e->vm, SIZE_MAX, 0))
CALL(realloc_unknown_flag, kmm_realloc(e->mm, e->small, 32, UNKNOWN_FLAG))
CALL(aligned_malloc_align_0, kmm_malloc_aligned(e->mm, 64, 0, 0))
CALL(aligned_malloc_align_48, kmm_malloc_aligned(e->mm, 64, 48, 0))
CALL(aligned_malloc_unknown_flag, kmm_malloc_aligned(e->mm, 64, 64, UNKNOWN_FLAG))
CALL(aligned_malloc_size_max, kmm_malloc_aligned(e->mm, SIZE_MAX, 64, 0))
CALL(aligned_malloc_size_max_page_align, kmm_malloc_aligned(e->mm, SIZE_MAX, 4 * PS, 0))
CALL(aligned_malloc_huge_align, kmm_malloc_aligned(e->mm, 16, (size_t)1 << 40, 0))
CALL(aligned_malloc_5g, kmm_malloc_aligned(e->mm, 5 * GiB, 64, 0))
CALL(cache_create_size_0, kmm_cache_create(e->mm, "zero", 0, 0, NULL))
CALL(cache_create_align_3, kmm_cache_create(e->mm, "align3", 64, 3, NULL))
CALL(cache_create_9_pages, kmm_cache_create(e->mm, "huge", 9 * PS, 0, NULL))
CALL(cache_alloc_unknown_flag, kmm_cache_alloc(e->plain, UNKNOWN_FLAG))
CALL(cache_alloc_zero_ctor, kmm_cache_alloc(e->with_ctor, KMM_ZERO))

CALL(vmalloc_size_0, kmm_vmalloc(e->mm, 0, 0))
CALL(vmalloc_unknown_flag, kmm_vmalloc(e->mm, PS, UNKNOWN_FLAG))
CALL(vmalloc_size_max, kmm_vmalloc(e->mm, SIZE_MAX, 0))
CALL(vmalloc_1t, kmm_vmalloc(e->mm, (size_t)1 << 40, 0))
CALL(vmalloc_aligned_align_3_pages, kmm_vmalloc_aligned(e->mm, PS, 3 * PS, 0))
CALL(vmalloc_aligned_huge_align, kmm_vmalloc_aligned(e->mm, PS, (size_t)1 << 50, 0))
CALL(vmap_no_pages, kmm_vmap(e->mm, NULL, 1, KMM_PROT_READ))
static const kmm_phys_t one_page[1] = { 8 * MiB };
static const kmm_phys_t outside_page[1] = { MEM };
static const kmm_phys_t misaligned_page[1] = { 8 * MiB + 8 };
CALL(vmap_zero_pages, kmm_vmap(e->mm, one_page, 0, KMM_PROT_READ))
CALL(vmap_prot_0, kmm_vmap(e->mm, one_page, 1, 0))
CALL(vmap_prot_exec, kmm_vmap(e->mm, one_page, 1, KMM_PROT_READ | 4))
CALL(vmap_page_outside, kmm_vmap(e->mm, outside_page, 1, KMM_PROT_READ))
CALL(vmap_page_misaligned, kmm_vmap(e->mm, misaligned_page, 1, KMM_PROT_READ))
CALL(kvmalloc_unknown_flag, kmm_kvmalloc(e->mm, 100, UNKNOWN_FLAG))
CALL(kvmalloc_unknown_flag_large, kmm_kvmalloc(e->mm, 4 * PS, UNKNOWN_FLAG))
CALL(kvmalloc_size_max, kmm_kvmalloc(e->mm, SIZE_MAX, 0))
CALL(kvmalloc_1t, kmm_kvmalloc(e->mm, (size_t)1 << 40, 0))

/* ---- the table ------------------------------------------------------------------------ */

struct row {
    const char *name;
    intptr_t (*call)(struct env *e);
    intptr_t want;      /* the result: NULL, or a negative error number */
    int err;            /* errno after it; 0: left as it was */
    const char *line;   /* NULL: nothing on stderr; else the one line's beginning */
};

#define SILENT_NOMEM(fn) { #fn, fn, 0, ENOMEM, NULL }
#define ARG(fn, line) { #fn, fn, 0, EINVAL, line }

static const struct row rows[] = {
    /* kmm_create: no memory system to report through yet, so errno alone */
    { "create_page_size_3000", create_page_size_3000, 0, EINVAL, NULL },
    { "create_page_size_2m", create_page_size_2m, 0, EINVAL, NULL },
    { "create_mem_unaligned", create_mem_unaligned, 0, EINVAL, NULL },
    { "create_seven_areas", create_seven_areas, 0, EINVAL, NULL },
    { "create_slab_flags", create_slab_flags, 0, EINVAL, NULL },

    ARG(pages_order_above_max, "kmm: kmm_alloc_pages: order above KMM_MAX_ORDER"),
    ARG(pages_unknown_flag, "kmm: kmm_alloc_pages: unknown flags"),
    SILENT_NOMEM(pages_order_max_no_memory),
    SILENT_NOMEM(pages_absent_area),
    ARG(aligned_zero_pages, "kmm: kmm_alloc_pages_aligned: size of 0 pages"),
    ARG(aligned_align_3_pages, "kmm: kmm_alloc_pages_aligned: alignment is not a power of two"),
    ARG(aligned_unknown_flag, "kmm: kmm_alloc_pages_aligned: unknown flags"),
    SILENT_NOMEM(aligned_above_largest_block),
    SILENT_NOMEM(aligned_npages_size_max),
    SILENT_NOMEM(aligned_align_above_largest_block),
    SILENT_NOMEM(aligned_no_memory),
    ARG(exact_zero, "kmm: kmm_alloc_pages_exact: size of 0 pages"),
    ARG(exact_unknown_flag, "kmm: kmm_alloc_pages_exact: unknown flags"),
    SILENT_NOMEM(exact_size_max),
    SILENT_NOMEM(exact_5g),
    SILENT_NOMEM(exact_no_memory),
    /* a returned error number: no errno, no line */
    { "reserve_misaligned", reserve_misaligned, -KMM_EINVAL, 0, NULL },
    { "reserve_zero_pages", reserve_zero_pages, -KMM_EINVAL, 0, NULL },
    { "reserve_outside", reserve_outside, -KMM_EINVAL, 0, NULL },
    { "reserve_busy", reserve_busy, -KMM_EBUSY, 0, NULL },

    SILENT_NOMEM(malloc_size_max),
    SILENT_NOMEM(malloc_size_max_less_page),
    SILENT_NOMEM(malloc_5g),
    SILENT_NOMEM(malloc_no_memory),
    ARG(malloc_unknown_flag, "kmm: kmm_malloc: unknown flags"),
    SILENT_NOMEM(malloc_absent_area),
    SILENT_NOMEM(calloc_overflow),
    SILENT_NOMEM(calloc_overflow_2),
    SILENT_NOMEM(calloc_8g),
    ARG(calloc_unknown_flag, "kmm: kmm_calloc: unknown flags"),
    SILENT_NOMEM(realloc_size_max),
    SILENT_NOMEM(realloc_large_size_max),
    SILENT_NOMEM(realloc_5g),
    SILENT_NOMEM(realloc_null_size_max),
    SILENT_NOMEM(realloc_vm_size_max),
    ARG(realloc_unknown_flag, "kmm: kmm_realloc: unknown flags"),
    ARG(aligned_malloc_align_0, "kmm: kmm_malloc_aligned: alignment not a power of two"),
    ARG(aligned_malloc_align_48, "kmm: kmm_malloc_aligned: alignment not a power of two"),
    ARG(aligned_malloc_unknown_flag, "kmm: kmm_malloc_aligned: unknown flags"),
    SILENT_NOMEM(aligned_malloc_size_max),
    SILENT_NOMEM(aligned_malloc_size_max_page_align),
    SILENT_NOMEM(aligned_malloc_huge_align),
    SILENT_NOMEM(aligned_malloc_5g),
    ARG(cache_create_size_0, "kmm: kmm_cache_create: "),
    ARG(cache_create_align_3, "kmm: kmm_cache_create: "),
    ARG(cache_create_9_pages, "kmm: kmm_cache_create: "),
    ARG(cache_alloc_unknown_flag, "kmm: kmm_cache_alloc: unknown flags"),
    ARG(cache_alloc_zero_ctor, "kmm: kmm_cache_alloc: KMM_ZERO on a cache with a constructor"),

    ARG(vmalloc_size_0, "kmm: kmm_vmalloc: size 0"),
    ARG(vmalloc_unknown_flag, "kmm: kmm_vmalloc: unknown flags"),
    SILENT_NOMEM(vmalloc_size_max),
    SILENT_NOMEM(vmalloc_1t),
    ARG(vmalloc_aligned_align_3_pages, "kmm: kmm_vmalloc_aligned: alignment not a power of two"),
    SILENT_NOMEM(vmalloc_aligned_huge_align),
    ARG(vmap_no_pages, "kmm: kmm_vmap: no pages"),
    ARG(vmap_zero_pages, "kmm: kmm_vmap: no pages"),
    ARG(vmap_prot_0, "kmm: kmm_vmap: prot must be"),
    ARG(vmap_prot_exec, "kmm: kmm_vmap: prot must be"),
    ARG(vmap_page_outside, "kmm: kmm_vmap: a page is not a page-aligned frame"),
    ARG(vmap_page_misaligned, "kmm: kmm_vmap: a page is not a page-aligned frame"),
    ARG(kvmalloc_unknown_flag, "kmm: kmm_kvmalloc: unknown flags"),
    ARG(kvmalloc_unknown_flag_large, "kmm: kmm_kvmalloc: unknown flags"),
    SILENT_NOMEM(kvmalloc_size_max),
    SILENT_NOMEM(kvmalloc_1t),
};

static size_t lines_in(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Runs one row; returns 0, or -1 after saying what went wrong. */
static int run_row(struct env *e, const struct row *r)
{
    struct kmm_page_stats before, after;
    /* an allocation that fails takes back first what caches hold (empty
     * slabs, magazines, lazy vmalloc areas): start with nothing held there,
     * so that "intact" compares what callers hold */
    kmm_drain(e->mm);
    kmm_page_stats(e->mm, &before);
    struct kmm_test_capture cap;
    kmm_test_capture_begin(&cap);
    errno = ERRNO_UNTOUCHED;
    intptr_t got = r->call(e);
    int err = errno;
    char *out = kmm_test_capture_end(&cap);
    int bad = 0;
    if (got != r->want) {
        fprintf(stderr, "%s: returned %#lx, expected %#lx\n", r->name, (long)got, (long)r->want);
        bad = -1;
    }
    int want_err = r->err ? r->err : ERRNO_UNTOUCHED;
    if (err != want_err) {
        fprintf(stderr, "%s: errno %d (%s), expected %d\n", r->name, err, strerror(err), want_err);
        bad = -1;
    }
    if (r->line ? lines_in(out) != 1 || strncmp(out, r->line, strlen(r->line)) != 0 : out[0] != '\0') {
        fprintf(stderr, "%s: stderr \"%s\", expected %s%s%s\n", r->name, out, r->line ? "one line beginning \"" : "nothing",
                r->line ? r->line : "", r->line ? "\"" : "");
        bad = -1;
    }
    free(out);
    if (got > 0 && got != r->want)
        return bad;   /* it succeeded: nothing more to compare */
    kmm_page_stats(e->mm, &after);
    if (after.allocated_pages != before.allocated_pages || after.reserved_pages != before.reserved_pages) {
        fprintf(stderr, "%s: pages held %zu -> %zu, reserved %zu -> %zu\n", r->name, before.allocated_pages,
                after.allocated_pages, before.reserved_pages, after.reserved_pages);
        bad = -1;
    }
    if (kmm_check(e->mm) != 0) {
        fprintf(stderr, "%s: kmm_check fails after it\n", r->name);
        bad = -1;
    }
    if (!kmm_test_filled(e->small, 100, 1) || !kmm_test_filled(e->large, 5 * PS, 2) ||
        !kmm_test_filled(e->pages, PS, 3) || !kmm_test_filled(e->vm, 3 * PS, 4)) {
        fprintf(stderr, "%s: memory held changed\n", r->name);
        bad = -1;
    }
    return bad;
}

static void test_error_table(void **state)
{
    (void)state;
    struct env e = { .mm = kmm_test_create(PS, MEM) };
    /* every layer up and used once, so a refused call makes nothing */
    e.small = kmm_malloc(e.mm, 100, 0);
    e.large = kmm_malloc(e.mm, 5 * PS, 0);
    e.pages = kmm_alloc_pages(e.mm, 0, 0);
    e.vm = kmm_vmalloc(e.mm, 3 * PS, 0);
    e.plain = kmm_cache_create(e.mm, "plain", 64, 0, NULL);
    e.with_ctor = kmm_cache_create(e.mm, "with-ctor", 64, 0, ctor);
    assert_non_null(e.small);
    assert_non_null(e.large);
    assert_non_null(e.pages);
    assert_non_null(e.vm);
    assert_non_null(e.plain);
    assert_non_null(e.with_ctor);
    void *o1 = kmm_cache_alloc(e.plain, 0), *o2 = kmm_cache_alloc(e.with_ctor, 0);
    assert_non_null(o1);
    assert_non_null(o2);
    kmm_test_fill(e.small, 100, 1);
    kmm_test_fill(e.large, 5 * PS, 2);
    kmm_test_fill(e.pages, PS, 3);
    kmm_test_fill(e.vm, 3 * PS, 4);

    int failures = 0;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        failures += run_row(&e, &rows[i]) != 0;
    if (failures)
        fprintf(stderr, "%d of %zu rows broke the rule\n", failures, sizeof(rows) / sizeof(rows[0]));
    assert_int_equal(failures, 0);

    kmm_cache_free(e.plain, o1);
    kmm_cache_free(e.with_ctor, o2);
    kmm_cache_destroy(e.plain);
    kmm_cache_destroy(e.with_ctor);
    kmm_free(e.mm, e.small);
    kmm_free(e.mm, e.large);
    kmm_free_pages(e.mm, e.pages);
    kmm_vfree(e.mm, e.vm);
    assert_int_equal(kmm_check(e.mm), 0);
    kmm_destroy(e.mm);
}

/* A configured limit refuses with ENOMEM and one line (the program cannot
 * see the limit from its call): vmalloc's mapping limit. */
static void test_error_mapping_limit_says_so(void **state)
{
    (void)state;
    struct kmm_config cfg = { .page_size = PS, .mem_size = MEM, .vmalloc_max_mappings = 3 };
    struct kmm *mm = kmm_create(&cfg);
    assert_non_null(mm);
    void *a = kmm_vmalloc(mm, PS, 0);   /* the reservation's mapping, and two for the area */
    assert_non_null(a);
    struct kmm_test_capture cap;
    kmm_test_capture_begin(&cap);
    errno = ERRNO_UNTOUCHED;
    void *b = kmm_vmalloc(mm, PS, 0);
    int err = errno;
    char *out = kmm_test_capture_end(&cap);
    assert_null(b);
    assert_int_equal(err, ENOMEM);
    assert_int_equal(lines_in(out), 1);
    assert_non_null(strstr(out, "kmm: kmm_vmalloc: refused:"));
    free(out);
    assert_int_equal(kmm_check(mm), 0);
    kmm_vfree(mm, a);
    kmm_destroy(mm);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_table),
        cmocka_unit_test(test_error_mapping_limit_says_so),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
