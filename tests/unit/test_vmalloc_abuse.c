/* Misuse of the virtual-memory layer (include/kmm/vm.h) must be caught:
 *  - running off an area, writing to a read-only kmm_vmap area, or using an
 *    area after it was unmapped faults (SIGSEGV) at the access;
 *  - a free of anything but the start of a live area of the right kind is
 *    reported with the function, the reason and the address, and aborts.
 * Each misuse runs in a child process: the faults through expect_segv
 * (below), the aborts through kmm_test_expect_abort and, to check that the
 * report names the address, once more through expect_report.
 *
 * A child prints "misuse at <address>" just before the misuse, so the parent
 * knows the set-up went through and which address the report must name. A
 * child exits with 3 when a set-up allocation failed: that is a test
 * failure, not the death the parent waits for.
 *
 * The reasons matched are stable parts of the messages of area_claim and
 * kmm__vfree_as in src/vm/vmalloc.c. */
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
#include <unistd.h>

#include "kmm_test.h"

#define PS ((size_t)4096)
#define MEM (64ull << 20)

/* ---- children's helpers ------------------------------------------------------- */

static struct kmm *child_mm(void)
{
    return kmm_test_create(PS, MEM);
}

static struct kmm *child_mm_strict(void)
{
    struct kmm_config cfg = { .page_size = PS, .mem_size = MEM, .vmalloc_flags = KMM_VMALLOC_STRICT };
    struct kmm *mm = kmm_create(&cfg);
    if (!mm)
        exit(3);
    return mm;
}

static void *vmalloc_or_exit(struct kmm *mm, size_t size)
{
    void *p = kmm_vmalloc(mm, size, 0);
    if (!p)
        exit(3);
    return p;
}

static void *vmap_or_exit(struct kmm *mm, size_t npages, unsigned prot)
{
    kmm_phys_t phys[8];
    if (npages > 8)
        exit(3);
    for (size_t i = 0; i < npages; i++) {
        void *pg = kmm_alloc_pages(mm, 0, KMM_ZERO);
        if (!pg)
            exit(3);
        phys[i] = kmm_virt_to_phys(mm, pg);
    }
    void *v = kmm_vmap(mm, phys, npages, prot);
    if (!v)
        exit(3);
    return v;
}

/* Says which address the misuse that follows is about. */
static void misuse_at(const void *p)
{
    fprintf(stderr, "misuse at %p\n", p);
    fflush(stderr);
}

/* Accesses the sanitizer does not see, so that the access itself reaches
 * the MMU: under ASan a freed area is poisoned, and an instrumented access
 * would be ASan's report instead of the fault being tested. */
static KMM_TEST_NO_ASAN void raw_write(void *p, unsigned char v)
{
    *(volatile unsigned char *)p = v;
}

static KMM_TEST_NO_ASAN unsigned char raw_read(const void *p)
{
    return *(const volatile unsigned char *)p;
}

/* ---- the parent's side ------------------------------------------------------------ */

/* Runs fn(arg) in a child with stderr captured into out (kmm_test_run_child). */
static int run_child(void (*fn)(void *), void *arg, char *out, size_t outsz)
{
    int status = kmm_test_run_child(fn, arg, out, outsz);
    assert_true(status != -1);
    return status;
}

/* The child reaches its misuse and dies of SIGSEGV there. */
static void expect_segv(void (*fn)(void *), void *arg)
{
    char out[8192];
    int status = run_child(fn, arg, out, sizeof out);
    bool ok = WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV && strstr(out, "misuse at ");
    if (!ok)
        kmm_test_describe_child(status, out);
    assert_true(ok);
}

/* The child aborts with a report "kmm: <who>: ...<why>... <address>" where
 * the address is the one it said its misuse was about. */
static void expect_report(void (*fn)(void *), void *arg, const char *who, const char *why)
{
    char out[8192];
    int status = run_child(fn, arg, out, sizeof out);
    bool ok = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
    const char *at = strstr(out, "misuse at ");
    char addr[64] = "";
    if (at)
        sscanf(at, "misuse at %63s", addr);
    char head[128];
    snprintf(head, sizeof head, "kmm: %s: ", who);
    const char *line = strstr(out, head);
    const char *eol = line ? strchr(line, '\n') : NULL;
    size_t line_len = line ? (eol ? (size_t)(eol - line) : strlen(line)) : 0;
    char report[1024] = "";
    if (line)
        snprintf(report, sizeof report, "%.*s", (int)(line_len < sizeof report ? line_len : sizeof report - 1), line);
    ok = ok && addr[0] && report[0] && strstr(report, why) && strstr(report, addr);
    if (!ok) {
        fprintf(stderr, "expected \"%s...%s...%s\"\n", head, why, addr[0] ? addr : "(no address said)");
        kmm_test_describe_child(status, out);
    }
    assert_true(ok);
}

/* Both checks for one misuse: the shared helper (abort + reason), and ours
 * (function and address in the same report line). */
static void expect_abort(void (*fn)(void *), void *arg, const char *who, const char *why)
{
    assert_int_equal(kmm_test_expect_abort(fn, arg, why), 0);
    expect_report(fn, arg, who, why);
}

/* ---- faults ----------------------------------------------------------------------------- */

/* The whole area is writable; one byte past its end is the guard page. */
static void child_write_past_end(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    unsigned char *p = vmalloc_or_exit(mm, 3 * PS);
    raw_write(p, 1);
    raw_write(p + 3 * PS - 1, 1);
    misuse_at(p + 3 * PS);
    raw_write(p + 3 * PS, 1);
}

static void test_write_past_end_faults(void **state)
{
    (void)state;
    expect_segv(child_write_past_end, NULL);
}

/* Another live area right after: the guard between them still faults. */
static void child_write_past_end_into_neighbour(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    unsigned char *p = vmalloc_or_exit(mm, 10);   /* one page: the slack up to its end is the caller's */
    unsigned char *next = vmalloc_or_exit(mm, PS);
    if (next != p + 2 * PS)
        exit(3);
    raw_write(p + PS - 1, 1);
    raw_write(next, 1);
    misuse_at(p + PS);
    raw_write(p + PS, 1);
}

static void test_write_past_end_before_neighbour_faults(void **state)
{
    (void)state;
    expect_segv(child_write_past_end_into_neighbour, NULL);
}

/* A large area, so its pages are mapped in large runs: the guard is there too. */
static void child_write_past_end_large(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    size_t size = 4u << 20;
    unsigned char *p = vmalloc_or_exit(mm, size);
    raw_write(p + size - 1, 1);
    misuse_at(p + size);
    raw_write(p + size, 1);
}

static void test_write_past_end_large_faults(void **state)
{
    (void)state;
    expect_segv(child_write_past_end_large, NULL);
}

static void child_write_vmap_ro(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    unsigned char *v = vmap_or_exit(mm, 2, KMM_PROT_READ);
    if (raw_read(v + PS + 5) != 0)   /* readable: the pages were zeroed */
        exit(3);
    misuse_at(v + PS + 5);
    raw_write(v + PS + 5, 1);
}

static void test_write_vmap_ro_faults(void **state)
{
    (void)state;
    expect_segv(child_write_vmap_ro, NULL);
}

/* Strict mode: a freed area is unmapped by the time kmm_vfree returns. */
static void child_use_after_vfree_strict(void *arg)
{
    bool read = arg != NULL;
    struct kmm *mm = child_mm_strict();
    unsigned char *p = vmalloc_or_exit(mm, 2 * PS);
    raw_write(p + PS, 1);
    kmm_vfree(mm, p);
    misuse_at(p + PS);
    if (read)
        (void)raw_read(p + PS);
    else
        raw_write(p + PS, 1);
}

static void test_use_after_vfree_strict_faults(void **state)
{
    (void)state;
    expect_segv(child_use_after_vfree_strict, NULL);            /* write */
    expect_segv(child_use_after_vfree_strict, (void *)1);       /* read */
}

/* Lazy mode: once purged, a freed area faults too (the window ends). */
static void child_use_after_purge(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    unsigned char *p = vmalloc_or_exit(mm, 2 * PS);
    raw_write(p, 1);
    kmm_vfree(mm, p);
    kmm_vmalloc_purge(mm);
    misuse_at(p);
    raw_write(p, 1);
}

static void test_use_after_purge_faults(void **state)
{
    (void)state;
    expect_segv(child_use_after_purge, NULL);
}

/* kmm_vunmap is immediate: the address faults right after it. */
static void child_use_after_vunmap(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    unsigned char *v = vmap_or_exit(mm, 1, KMM_PROT_READ | KMM_PROT_WRITE);
    raw_write(v, 1);
    kmm_vunmap(mm, v);
    misuse_at(v);
    (void)raw_read(v);
}

static void test_use_after_vunmap_faults(void **state)
{
    (void)state;
    expect_segv(child_use_after_vunmap, NULL);
}

/* ASan builds: an ordinary (instrumented) access to a lazily freed area,
 * which is still mapped, is reported by ASan at once (DESIGN: ASan knows
 * the allocators). Without ASan the access would go unnoticed until the
 * purge (the documented window), so the test is skipped. */
static void child_asan_use_after_vfree(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    volatile unsigned char *p = vmalloc_or_exit(mm, 2 * PS);
    p[PS + 3] = 1;
    kmm_vfree(mm, (void *)p);
    misuse_at((const void *)(p + PS + 3));
    p[PS + 3] = 2;
}

static void test_asan_reports_use_after_vfree(void **state)
{
    (void)state;
    if (!KMM_TEST_ASAN)
        skip();
    char out[16384];
    int status = run_child(child_asan_use_after_vfree, NULL, out, sizeof out);
    bool ok = !(WIFEXITED(status) && WEXITSTATUS(status) == 0) && strstr(out, "misuse at ") &&
              strstr(out, "AddressSanitizer");
    if (!ok)
        kmm_test_describe_child(status, out);
    assert_true(ok);
}

/* ---- bad frees, reallocs, lookups: one misuse each, from a table ------------------------ */

/* What a misuse is done to. */
enum obj {
    O_VMALLOC,   /* a kmm_vmalloc area of `pages` pages */
    O_KVMALLOC,  /* a kmm_kvmalloc area of `pages` pages */
    O_VMAP_RO,   /* a kmm_vmap area of `pages` zeroed pages, read-only */
    O_VMAP_RW,   /* the same, writable */
    O_KMALLOC,   /* 64 bytes of kmm_malloc */
    O_PAGES,     /* an order-1 block of pages */
    O_STACK,     /* a local variable */
    O_OTHER_MM,  /* a one-page vmalloc area of another memory system */
};

/* The misusing call. */
enum op { OP_VFREE, OP_VUNMAP, OP_FREE, OP_KVFREE, OP_REALLOC, OP_USABLE_SIZE, OP_SET_TAG };

struct misuse {
    const char *who, *why;      /* the report: "kmm: <who>: ...<why>... <address>" */
    enum op op;
    enum obj obj;
    size_t pages;
    size_t off;                 /* the misuse is at the object + off */
    bool strict;                /* a memory system in strict mode */
    bool space_first;           /* a one-page vmalloc area made first */
    bool freed;                 /* the object freed first (by its own kind of free) */
    bool purged;                /* ... and purged */
};

static void child_misuse(void *arg)
{
    const struct misuse *c = arg;
    struct kmm *mm = c->strict ? child_mm_strict() : child_mm();
    if (c->space_first)
        vmalloc_or_exit(mm, PS);
    char local[64];
    unsigned char *p = NULL;
    switch (c->obj) {
    case O_VMALLOC:
        p = vmalloc_or_exit(mm, c->pages * PS);
        break;
    case O_KVMALLOC:
        p = kmm_kvmalloc(mm, c->pages * PS, 0);
        break;
    case O_VMAP_RO:
    case O_VMAP_RW:
        p = vmap_or_exit(mm, c->pages, KMM_PROT_READ | (c->obj == O_VMAP_RW ? KMM_PROT_WRITE : 0));
        break;
    case O_KMALLOC:
        p = kmm_malloc(mm, 64, 0);
        break;
    case O_PAGES:
        p = kmm_alloc_pages(mm, 1, 0);
        break;
    case O_STACK:
        p = (unsigned char *)local;
        break;
    case O_OTHER_MM:
        p = vmalloc_or_exit(child_mm(), PS);
        break;
    }
    if (!p)
        exit(3);
    if (c->freed) {
        if (c->obj == O_VMAP_RO || c->obj == O_VMAP_RW)
            kmm_vunmap(mm, p);
        else if (c->obj == O_KVMALLOC)
            kmm_kvfree(mm, p);
        else
            kmm_vfree(mm, p);
    }
    if (c->purged)
        kmm_vmalloc_purge(mm);
    unsigned char *at = p + c->off;
    misuse_at(at);
    switch (c->op) {
    case OP_VFREE:
        kmm_vfree(mm, at);
        break;
    case OP_VUNMAP:
        kmm_vunmap(mm, at);
        break;
    case OP_FREE:
        kmm_free(mm, at);
        break;
    case OP_KVFREE:
        kmm_kvfree(mm, at);
        break;
    case OP_REALLOC:
        kmm_realloc(mm, at, 4 * PS, 0);
        break;
    case OP_USABLE_SIZE:
        (void)kmm_usable_size(mm, at);
        break;
    case OP_SET_TAG:
        kmm_vmalloc_set_tag(mm, at, "tag");
        break;
    }
}

/* The fields of a misuse every case sets; the flags follow, by name. */
#define MISUSE(who_, why_, op_, obj_, pages_, off_) \
    .who = (who_), .why = (why_), .op = (op_), .obj = (obj_), .pages = (pages_), .off = (off_)

/* Each misuse of the table aborts with its report. */
static void expect_misuses(const struct misuse *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        expect_abort(child_misuse, (void *)&cases[i], cases[i].who, cases[i].why);
}

#define EXPECT_MISUSES(...)                                                  \
    do {                                                                     \
        static const struct misuse cases_[] = { __VA_ARGS__ };               \
        expect_misuses(cases_, sizeof cases_ / sizeof cases_[0]);            \
    } while (0)

static void test_vfree_middle(void **state)
{
    (void)state;
    EXPECT_MISUSES(
        { MISUSE("kmm_vfree", "pointer into the middle of a vmalloc area", OP_VFREE, O_VMALLOC, 3, PS) },
        { MISUSE("kmm_vfree", "pointer into the middle of a vmalloc area", OP_VFREE, O_VMALLOC, 3, 1) },
        { MISUSE("kmm_vfree", "pointer into the middle", OP_VFREE, O_VMALLOC, 3, 3 * PS - 1) });
}

static void test_vfree_guard(void **state)
{
    (void)state;
    EXPECT_MISUSES(
        { MISUSE("kmm_vfree", "pointer into a guard page", OP_VFREE, O_VMALLOC, 3, 3 * PS) });
}

/* Twice while the first free waits for its purge. */
static void test_vfree_twice(void **state)
{
    (void)state;
    EXPECT_MISUSES(
        { MISUSE("kmm_vfree", "double free", OP_VFREE, O_VMALLOC, 2, 0), .space_first = true, .freed = true });
}

/* Twice with other frees (of the same size and others) in between. */
static void child_vfree_twice_buried(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *p = vmalloc_or_exit(mm, 2 * PS);
    void *others[8];
    for (int i = 0; i < 8; i++)
        others[i] = vmalloc_or_exit(mm, (size_t)(i % 3 + 1) * PS);
    kmm_vfree(mm, p);
    for (int i = 0; i < 8; i++)
        kmm_vfree(mm, others[i]);
    misuse_at(p);
    kmm_vfree(mm, p);
}

static void test_vfree_twice_buried(void **state)
{
    (void)state;
    expect_abort(child_vfree_twice_buried, NULL, "kmm_vfree", "double free");
}

/* Twice after a purge, or in strict mode: the area is gone, its range free. */
static void test_vfree_twice_after_unmap(void **state)
{
    (void)state;
    EXPECT_MISUSES(
        { MISUSE("kmm_vfree", "not allocated", OP_VFREE, O_VMALLOC, 2, 0), .freed = true, .purged = true },
        { MISUSE("kmm_vfree", "not allocated", OP_VFREE, O_VMALLOC, 2, 0), .strict = true, .freed = true });
}

static void test_vfree_vmap_area(void **state)
{
    (void)state;
    EXPECT_MISUSES(
        { MISUSE("kmm_vfree", "area made by kmm_vmap", OP_VFREE, O_VMAP_RW, 2, 0) });
}

/* Inside the vmalloc space, where no area ever was. */
static void test_vfree_never_allocated(void **state)
{
    (void)state;
    EXPECT_MISUSES(
        { MISUSE("kmm_vfree", "not allocated", OP_VFREE, O_VMALLOC, 1, 1000 * PS) });
}

/* Not in the vmalloc space at all: direct-map memory (kmm_malloc, pages),
 * the stack, another memory system's vmalloc area, and before this memory
 * system ever made its space. The reason is worded by kmm__vfree_as; what
 * must hold is that the report names kmm_vfree and the address. */
static void test_vfree_outside_space(void **state)
{
    (void)state;
    EXPECT_MISUSES(
        { MISUSE("kmm_vfree", "kmm_vfree", OP_VFREE, O_KMALLOC, 0, 0), .space_first = true },
        { MISUSE("kmm_vfree", "kmm_vfree", OP_VFREE, O_PAGES, 0, 0), .space_first = true },
        { MISUSE("kmm_vfree", "kmm_vfree", OP_VFREE, O_STACK, 0, 0), .space_first = true },
        { MISUSE("kmm_vfree", "kmm_vfree", OP_VFREE, O_OTHER_MM, 0, 0), .space_first = true },
        { MISUSE("kmm_vfree", "kmm_vfree", OP_VFREE, O_KMALLOC, 0, 0) });
}

/* ---- bad kmm_vunmap ------------------------------------------------------------------------ */

static void test_vunmap_bad(void **state)
{
    (void)state;
    EXPECT_MISUSES(
        { MISUSE("kmm_vunmap", "area made by kmm_vmalloc", OP_VUNMAP, O_VMALLOC, 2, 0) },
        { MISUSE("kmm_vunmap", "pointer into the middle", OP_VUNMAP, O_VMAP_RO, 3, PS) },
        { MISUSE("kmm_vunmap", "not allocated", OP_VUNMAP, O_VMAP_RO, 1, 0), .freed = true },
        { MISUSE("kmm_vunmap", "kmm_vunmap", OP_VUNMAP, O_KMALLOC, 0, 0), .space_first = true });
}

/* ---- kmm_free, kmm_kvfree, kmm_realloc, kmm_usable_size, set_tag -------------------------- */

static void test_free_bad(void **state)
{
    (void)state;
    EXPECT_MISUSES(
        { MISUSE("kmm_free", "pointer into the middle of a vmalloc area", OP_FREE, O_VMALLOC, 3, PS + 16) },
        { MISUSE("kmm_free", "pointer into the middle of a vmalloc area", OP_KVFREE, O_KVMALLOC, 3, PS + 16) },
        { MISUSE("kmm_free", "pointer into a guard page", OP_FREE, O_VMALLOC, 2, 2 * PS) },
        { MISUSE("kmm_free", "area made by kmm_vmap", OP_FREE, O_VMAP_RW, 1, 0) },
        { MISUSE("kmm_free", "double free", OP_FREE, O_KVMALLOC, 5, 0), .freed = true });
}

/* kmm_realloc of a freed area: lazily freed (waiting), and after a purge. */
static void test_realloc_bad(void **state)
{
    (void)state;
    EXPECT_MISUSES(
        { MISUSE("kmm_realloc", "freed already", OP_REALLOC, O_VMALLOC, 2, 0), .freed = true },
        { MISUSE("kmm_realloc", "not allocated", OP_REALLOC, O_VMALLOC, 2, 0), .freed = true, .purged = true },
        { MISUSE("kmm_realloc", "pointer into the middle", OP_REALLOC, O_VMALLOC, 3, PS) },
        { MISUSE("kmm_realloc", "area made by kmm_vmap", OP_REALLOC, O_VMAP_RW, 1, 0) });
}

static void test_usable_size_bad(void **state)
{
    (void)state;
    EXPECT_MISUSES(
        { MISUSE("kmm_usable_size", "pointer into the middle", OP_USABLE_SIZE, O_VMALLOC, 3, 2 * PS) },
        { MISUSE("kmm_usable_size", "freed already", OP_USABLE_SIZE, O_VMALLOC, 3, 0), .freed = true });
}

static void test_set_tag_bad(void **state)
{
    (void)state;
    EXPECT_MISUSES(
        { MISUSE("kmm_vmalloc_set_tag", "not the start of a live vmalloc area", OP_SET_TAG, O_VMALLOC, 3, PS) },
        { MISUSE("kmm_vmalloc_set_tag", "not the start of a live vmalloc area", OP_SET_TAG, O_VMALLOC, 3, 0),
          .freed = true });
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_past_end_faults),
        cmocka_unit_test(test_write_past_end_before_neighbour_faults),
        cmocka_unit_test(test_write_past_end_large_faults),
        cmocka_unit_test(test_write_vmap_ro_faults),
        cmocka_unit_test(test_use_after_vfree_strict_faults),
        cmocka_unit_test(test_use_after_purge_faults),
        cmocka_unit_test(test_use_after_vunmap_faults),
        cmocka_unit_test(test_asan_reports_use_after_vfree),
        cmocka_unit_test(test_vfree_middle),
        cmocka_unit_test(test_vfree_guard),
        cmocka_unit_test(test_vfree_twice),
        cmocka_unit_test(test_vfree_twice_buried),
        cmocka_unit_test(test_vfree_twice_after_unmap),
        cmocka_unit_test(test_vfree_vmap_area),
        cmocka_unit_test(test_vfree_never_allocated),
        cmocka_unit_test(test_vfree_outside_space),
        cmocka_unit_test(test_vunmap_bad),
        cmocka_unit_test(test_free_bad),
        cmocka_unit_test(test_realloc_bad),
        cmocka_unit_test(test_usable_size_bad),
        cmocka_unit_test(test_set_tag_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
