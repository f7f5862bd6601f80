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
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kmm_test.h"

#define PS ((size_t)4096)
#define MEM (64ull << 20)

#if defined(__SANITIZE_ADDRESS__)
#define NO_ASAN __attribute__((no_sanitize_address))
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NO_ASAN __attribute__((no_sanitize_address))
#endif
#endif
#ifndef NO_ASAN
#define NO_ASAN
#define HAVE_ASAN 0
#else
#define HAVE_ASAN 1
#endif

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
static NO_ASAN void raw_write(void *p, unsigned char v)
{
    *(volatile unsigned char *)p = v;
}

static NO_ASAN unsigned char raw_read(const void *p)
{
    return *(const volatile unsigned char *)p;
}

/* ---- the parent's side ------------------------------------------------------------ */

/* Runs fn(arg) in a child with stderr captured into out. In the child a
 * fault is fatal (the default action, also under ASan, whose handler would
 * turn it into an exit) and leaves no core. Returns the wait status. */
static int run_child(void (*fn)(void *), void *arg, char *out, size_t outsz)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
        struct rlimit none = { 0, 0 };
        setrlimit(RLIMIT_CORE, &none);
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        fn(arg);
        _exit(0);
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t n;
    while (len + 1 < outsz && (n = read(fds[0], out + len, outsz - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

static void describe(int status, const char *out)
{
    if (WIFSIGNALED(status))
        fprintf(stderr, "child died of signal %d; stderr:\n%s\n", WTERMSIG(status), out);
    else
        fprintf(stderr, "child exited with %d; stderr:\n%s\n", WEXITSTATUS(status), out);
}

/* The child reaches its misuse and dies of SIGSEGV there. */
static void expect_segv(void (*fn)(void *), void *arg)
{
    char out[8192];
    int status = run_child(fn, arg, out, sizeof out);
    bool ok = WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV && strstr(out, "misuse at ");
    if (!ok)
        describe(status, out);
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
        describe(status, out);
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
    if (!HAVE_ASAN)
        skip();
    char out[16384];
    int status = run_child(child_asan_use_after_vfree, NULL, out, sizeof out);
    bool ok = !(WIFEXITED(status) && WEXITSTATUS(status) == 0) && strstr(out, "misuse at ") &&
              strstr(out, "AddressSanitizer");
    if (!ok)
        describe(status, out);
    assert_true(ok);
}

/* ---- bad kmm_vfree ------------------------------------------------------------------------ */

static void child_vfree_middle(void *arg)
{
    size_t off = (size_t)(uintptr_t)arg;
    struct kmm *mm = child_mm();
    unsigned char *p = vmalloc_or_exit(mm, 3 * PS);
    misuse_at(p + off);
    kmm_vfree(mm, p + off);
}

static void test_vfree_middle(void **state)
{
    (void)state;
    expect_abort(child_vfree_middle, (void *)(uintptr_t)PS, "kmm_vfree", "pointer into the middle of a vmalloc area");
    expect_abort(child_vfree_middle, (void *)(uintptr_t)1, "kmm_vfree", "pointer into the middle of a vmalloc area");
    expect_abort(child_vfree_middle, (void *)(uintptr_t)(3 * PS - 1), "kmm_vfree", "pointer into the middle");
}

static void child_vfree_guard(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    unsigned char *p = vmalloc_or_exit(mm, 3 * PS);
    misuse_at(p + 3 * PS);
    kmm_vfree(mm, p + 3 * PS);
}

static void test_vfree_guard(void **state)
{
    (void)state;
    expect_abort(child_vfree_guard, NULL, "kmm_vfree", "pointer into a guard page");
}

/* Twice while the first free waits for its purge. */
static void child_vfree_twice(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *keep = vmalloc_or_exit(mm, PS);
    void *p = vmalloc_or_exit(mm, 2 * PS);
    (void)keep;
    kmm_vfree(mm, p);
    misuse_at(p);
    kmm_vfree(mm, p);
}

static void test_vfree_twice(void **state)
{
    (void)state;
    expect_abort(child_vfree_twice, NULL, "kmm_vfree", "double free");
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
static void child_vfree_twice_after_purge(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *p = vmalloc_or_exit(mm, 2 * PS);
    kmm_vfree(mm, p);
    kmm_vmalloc_purge(mm);
    misuse_at(p);
    kmm_vfree(mm, p);
}

static void child_vfree_twice_strict(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm_strict();
    void *p = vmalloc_or_exit(mm, 2 * PS);
    kmm_vfree(mm, p);
    misuse_at(p);
    kmm_vfree(mm, p);
}

static void test_vfree_twice_after_unmap(void **state)
{
    (void)state;
    expect_abort(child_vfree_twice_after_purge, NULL, "kmm_vfree", "not allocated");
    expect_abort(child_vfree_twice_strict, NULL, "kmm_vfree", "not allocated");
}

static void child_vfree_vmap(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *v = vmap_or_exit(mm, 2, KMM_PROT_READ | KMM_PROT_WRITE);
    misuse_at(v);
    kmm_vfree(mm, v);
}

static void test_vfree_vmap_area(void **state)
{
    (void)state;
    expect_abort(child_vfree_vmap, NULL, "kmm_vfree", "area made by kmm_vmap");
}

/* Inside the vmalloc space, where no area ever was. */
static void child_vfree_never_allocated(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    unsigned char *p = vmalloc_or_exit(mm, PS);
    misuse_at(p + 1000 * PS);
    kmm_vfree(mm, p + 1000 * PS);
}

static void test_vfree_never_allocated(void **state)
{
    (void)state;
    expect_abort(child_vfree_never_allocated, NULL, "kmm_vfree", "not allocated");
}

/* Not in the vmalloc space at all: direct-map memory (kmm_malloc, pages),
 * the stack, another memory system's vmalloc area, and before this memory
 * system ever made its space. The reason is worded by kmm__vfree_as; what
 * must hold is that the report names kmm_vfree and the address. */
static void child_vfree_kmalloc(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    vmalloc_or_exit(mm, PS);
    void *p = kmm_malloc(mm, 64, 0);
    if (!p)
        exit(3);
    misuse_at(p);
    kmm_vfree(mm, p);
}

static void child_vfree_pages(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    vmalloc_or_exit(mm, PS);
    void *p = kmm_alloc_pages(mm, 1, 0);
    if (!p)
        exit(3);
    misuse_at(p);
    kmm_vfree(mm, p);
}

static void child_vfree_stack(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    vmalloc_or_exit(mm, PS);
    char local[64];
    misuse_at(local);
    kmm_vfree(mm, local);
}

static void child_vfree_other_mm(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm(), *other = child_mm();
    vmalloc_or_exit(mm, PS);
    void *p = vmalloc_or_exit(other, PS);
    misuse_at(p);
    kmm_vfree(mm, p);
}

static void child_vfree_before_space(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *p = kmm_malloc(mm, 64, 0);
    if (!p)
        exit(3);
    misuse_at(p);
    kmm_vfree(mm, p);
}

static void test_vfree_outside_space(void **state)
{
    (void)state;
    expect_abort(child_vfree_kmalloc, NULL, "kmm_vfree", "kmm_vfree");
    expect_abort(child_vfree_pages, NULL, "kmm_vfree", "kmm_vfree");
    expect_abort(child_vfree_stack, NULL, "kmm_vfree", "kmm_vfree");
    expect_abort(child_vfree_other_mm, NULL, "kmm_vfree", "kmm_vfree");
    expect_abort(child_vfree_before_space, NULL, "kmm_vfree", "kmm_vfree");
}

/* ---- bad kmm_vunmap ------------------------------------------------------------------------ */

static void child_vunmap_vmalloc(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *p = vmalloc_or_exit(mm, 2 * PS);
    misuse_at(p);
    kmm_vunmap(mm, p);
}

static void child_vunmap_middle(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    unsigned char *v = vmap_or_exit(mm, 3, KMM_PROT_READ);
    misuse_at(v + PS);
    kmm_vunmap(mm, v + PS);
}

static void child_vunmap_twice(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *v = vmap_or_exit(mm, 1, KMM_PROT_READ);
    kmm_vunmap(mm, v);
    misuse_at(v);
    kmm_vunmap(mm, v);
}

static void child_vunmap_direct(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    vmalloc_or_exit(mm, PS);
    void *p = kmm_malloc(mm, 64, 0);
    if (!p)
        exit(3);
    misuse_at(p);
    kmm_vunmap(mm, p);
}

static void test_vunmap_bad(void **state)
{
    (void)state;
    expect_abort(child_vunmap_vmalloc, NULL, "kmm_vunmap", "area made by kmm_vmalloc");
    expect_abort(child_vunmap_middle, NULL, "kmm_vunmap", "pointer into the middle");
    expect_abort(child_vunmap_twice, NULL, "kmm_vunmap", "not allocated");
    expect_abort(child_vunmap_direct, NULL, "kmm_vunmap", "kmm_vunmap");
}

/* ---- kmm_free, kmm_kvfree, kmm_realloc, kmm_usable_size, set_tag -------------------------- */

static void child_free_middle(void *arg)
{
    bool kv = arg != NULL;
    struct kmm *mm = child_mm();
    unsigned char *p = kv ? kmm_kvmalloc(mm, 3 * PS, 0) : vmalloc_or_exit(mm, 3 * PS);
    if (!p)
        exit(3);
    misuse_at(p + PS + 16);
    if (kv)
        kmm_kvfree(mm, p + PS + 16);
    else
        kmm_free(mm, p + PS + 16);
}

static void child_free_guard(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    unsigned char *p = vmalloc_or_exit(mm, 2 * PS);
    misuse_at(p + 2 * PS);
    kmm_free(mm, p + 2 * PS);
}

static void child_free_vmap(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *v = vmap_or_exit(mm, 1, KMM_PROT_READ | KMM_PROT_WRITE);
    misuse_at(v);
    kmm_free(mm, v);
}

static void child_free_twice(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *p = kmm_kvmalloc(mm, 5 * PS, 0);
    if (!p)
        exit(3);
    kmm_kvfree(mm, p);
    misuse_at(p);
    kmm_free(mm, p);
}

static void test_free_bad(void **state)
{
    (void)state;
    expect_abort(child_free_middle, NULL, "kmm_free", "pointer into the middle of a vmalloc area");
    expect_abort(child_free_middle, (void *)1, "kmm_free", "pointer into the middle of a vmalloc area");
    expect_abort(child_free_guard, NULL, "kmm_free", "pointer into a guard page");
    expect_abort(child_free_vmap, NULL, "kmm_free", "area made by kmm_vmap");
    expect_abort(child_free_twice, NULL, "kmm_free", "double free");
}

/* kmm_realloc of a freed area: lazily freed (waiting), and after a purge. */
static void child_realloc_freed(void *arg)
{
    bool purge = arg != NULL;
    struct kmm *mm = child_mm();
    void *p = vmalloc_or_exit(mm, 2 * PS);
    kmm_vfree(mm, p);
    if (purge)
        kmm_vmalloc_purge(mm);
    misuse_at(p);
    kmm_realloc(mm, p, 4 * PS, 0);
}

static void child_realloc_middle(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    unsigned char *p = vmalloc_or_exit(mm, 3 * PS);
    misuse_at(p + PS);
    kmm_realloc(mm, p + PS, 4 * PS, 0);
}

static void child_realloc_vmap(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *v = vmap_or_exit(mm, 1, KMM_PROT_READ | KMM_PROT_WRITE);
    misuse_at(v);
    kmm_realloc(mm, v, 4 * PS, 0);
}

static void test_realloc_bad(void **state)
{
    (void)state;
    expect_abort(child_realloc_freed, NULL, "kmm_realloc", "freed already");
    expect_abort(child_realloc_freed, (void *)1, "kmm_realloc", "not allocated");
    expect_abort(child_realloc_middle, NULL, "kmm_realloc", "pointer into the middle");
    expect_abort(child_realloc_vmap, NULL, "kmm_realloc", "area made by kmm_vmap");
}

static void child_usable_size_middle(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    unsigned char *p = vmalloc_or_exit(mm, 3 * PS);
    misuse_at(p + 2 * PS);
    (void)kmm_usable_size(mm, p + 2 * PS);
}

static void child_usable_size_freed(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *p = vmalloc_or_exit(mm, 3 * PS);
    kmm_vfree(mm, p);
    misuse_at(p);
    (void)kmm_usable_size(mm, p);
}

static void test_usable_size_bad(void **state)
{
    (void)state;
    expect_abort(child_usable_size_middle, NULL, "kmm_usable_size", "pointer into the middle");
    expect_abort(child_usable_size_freed, NULL, "kmm_usable_size", "freed already");
}

static void child_set_tag(void *arg)
{
    int which = (int)(uintptr_t)arg;
    struct kmm *mm = child_mm();
    unsigned char *p = vmalloc_or_exit(mm, 3 * PS);
    unsigned char *at = p + PS;
    if (which == 1) {
        kmm_vfree(mm, p);
        at = p;
    }
    misuse_at(at);
    kmm_vmalloc_set_tag(mm, at, "tag");
}

static void test_set_tag_bad(void **state)
{
    (void)state;
    expect_abort(child_set_tag, (void *)0, "kmm_vmalloc_set_tag", "not the start of a live vmalloc area");
    expect_abort(child_set_tag, (void *)1, "kmm_vmalloc_set_tag", "not the start of a live vmalloc area");
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
