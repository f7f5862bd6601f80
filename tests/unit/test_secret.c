/* Secret memory (include/kmm/secret.h), both backings (memfd_secret skipped
 * with a note where the kernel has none), at 4 KiB and 16 KiB pages:
 *  - allocations of 1 byte .. a few MiB are zero, usable, page aligned;
 *  - the guard page before and after faults, and so does the direct-map
 *    alias of its frames (children: SIGSEGV);
 *  - it is locked (VmLck grows by its size) and not dumped (VmFlags "dd" and
 *    "lo" in /proc/self/smaps);
 *  - a child of fork cannot read it (SIGSEGV), finds its copy of the frames
 *    zeroed, can allocate its own, and aborts on a free of the parent's;
 *  - freed frames are zero when the cache hands them out again (read
 *    through kmm_vmap of a KMM_NOZERO kmm_unmapped_alloc);
 *  - past RLIMIT_MEMLOCK (a child lowers it): NULL, errno EAGAIN, one line
 *    naming the limit, nothing leaked;
 *  - bad arguments are refused, the table grows, stats add up;
 * with kmm_check after every step. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kmm_test.h"
#include "secret/secret_internal.h"

#define MEM (128ull << 20)
#define CHECK(mm) assert_int_equal(kmm_check(mm), 0)

static bool memfd_ok(struct kmm *mm)
{
    static bool told;
    bool ok = kmm_secret_backing_available(mm, KMM_SECRET_MEMFD);
    if (!ok && !told) {
        printf("note: memfd_secret is not available here: its cases are skipped\n");
        told = true;
    }
    return ok;
}

/* A memory system with the given backing; NULL (skip) for an unavailable memfd_secret. */
static struct kmm *make_mm(size_t ps, enum kmm_secret_backing backing)
{
    struct kmm *mm = kmm_test_create(ps, MEM);
    if (backing == KMM_SECRET_MEMFD && !memfd_ok(mm)) {
        kmm_destroy(mm);
        return NULL;
    }
    assert_int_equal(kmm_secret_set_backing(mm, backing), 0);
    assert_int_equal(kmm_secret_backing(mm), backing);
    return mm;
}

static size_t round_pages(size_t size, size_t ps) { return (size + ps - 1) / ps * ps; }

static bool all_zero(const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

/* /proc/self/status's VmLck, in bytes. */
static size_t vm_locked(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    assert_non_null(f);
    char line[256];
    size_t kb = SIZE_MAX;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmLck: %zu kB", &kb) == 1)
            break;
    fclose(f);
    assert_true(kb != SIZE_MAX);
    return kb * 1024;
}

/* The VmFlags of the /proc/self/smaps entry holding p, into flags. */
static bool vm_flags_of(const void *p, char *flags, size_t len)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    assert_non_null(f);
    char line[512];
    bool in = false, found = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
            in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
        else if (in && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(flags, len, "%.200s", line + 8);
            found = true;
            break;
        }
    }
    fclose(f);
    return found;
}

static bool has_flag(const char *flags, const char *flag)
{
    char padded[8];
    snprintf(padded, sizeof padded, " %s ", flag);
    char line[600];
    snprintf(line, sizeof line, " %s ", flags);
    for (char *c = line; *c; c++)
        if (*c == '\n')
            *c = ' ';
    return strstr(line, padded) != NULL;
}

/* ---- sizes: zero, usable, locked, not dumped, counted ---- */

static void sizes_one(struct kmm *mm, size_t ps, size_t size)
{
    struct kmm_secret_stats before, st;
    kmm_secret_stats(mm, &before);
    size_t locked = vm_locked();
    unsigned char *p = kmm_secret_alloc(mm, size);
    assert_non_null(p);
    CHECK(mm);
    assert_int_equal((uintptr_t)p % ps, 0);
    size_t bytes = round_pages(size, ps);
    assert_true(all_zero(p, bytes));
    kmm_test_fill(p, bytes, (unsigned)size);
    assert_true(kmm_test_filled(p, bytes, (unsigned)size));
    assert_int_equal(vm_locked(), locked + bytes);
    char flags[256];
    assert_true(vm_flags_of(p, flags, sizeof flags));
    if (!has_flag(flags, "dd") || !has_flag(flags, "lo"))
        fail_msg("secret mapping of %zu bytes lacks dd or lo: VmFlags:%s", size, flags);
    assert_true(vm_flags_of(p + bytes - 1, flags, sizeof flags));
    assert_true(has_flag(flags, "dd") && has_flag(flags, "lo"));
    kmm_secret_stats(mm, &st);
    assert_int_equal(st.allocations, before.allocations + 1);
    assert_int_equal(st.bytes, before.bytes + size);
    assert_int_equal(st.pages, before.pages + bytes / ps);
    assert_int_equal(st.locked_bytes, before.locked_bytes + bytes);
    assert_int_equal(st.memfd_allocations,
                     before.memfd_allocations + (kmm_secret_backing(mm) == KMM_SECRET_MEMFD));
    assert_int_equal(st.allocs, before.allocs + 1);
    if (kmm_secret_backing(mm) == KMM_SECRET_UNMAPPED) {
        struct secret_run runs[64];
        size_t n = kmm__secret_runs(mm, p, runs, 64), pages = 0;
        assert_true(n >= 1 && n <= 64);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(kmm__unmapped_size(mm, OWNER_SECRET, runs[i].phys), (size_t)1 << runs[i].order);
            /* kmm_page_kinds sees every frame out of the direct map */
            uint8_t kinds[512];
            size_t np = (size_t)1 << runs[i].order;
            assert_true(np <= sizeof kinds);
            assert_int_equal(kmm_page_kinds(mm, runs[i].phys, np, kinds), np);
            for (size_t j = 0; j < np; j++)
                assert_true(kinds[j] & KMM_PAGE_UNMAPPED_BIT);
            pages += np;
        }
        assert_int_equal(pages, bytes / ps);   /* no page wasted */
    } else {
        assert_int_equal(kmm__secret_runs(mm, p, NULL, 0), 0);
    }
    kmm_secret_free(mm, p);
    CHECK(mm);
    assert_int_equal(vm_locked(), locked);
    kmm_secret_stats(mm, &st);
    assert_int_equal(st.allocations, before.allocations);
    assert_int_equal(st.locked_bytes, before.locked_bytes);
    assert_int_equal(st.frees, before.frees + 1);
}

static void sizes(size_t ps, enum kmm_secret_backing backing)
{
    struct kmm *mm = make_mm(ps, backing);
    if (!mm)
        return;
    const size_t cases[] = { 1, 100, ps - 1, ps, ps + 1, 3 * ps, 7 * ps + 5, 64 << 10, (1 << 20) + 5, 3 << 20 };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        sizes_one(mm, ps, cases[i]);
    kmm_destroy(mm);
}

static void test_sizes_unmapped(void **state) { sizes(kmm_test_param_ps(state), KMM_SECRET_UNMAPPED); }
static void test_sizes_memfd(void **state) { sizes(kmm_test_param_ps(state), KMM_SECRET_MEMFD); }

/* ---- faults: guards, the direct-map alias ---- */

struct fault_case {
    size_t ps;
    enum kmm_secret_backing backing;
    int where;   /* -1 the guard before, 1 the guard after, 0 the direct-map alias of the first frame */
};

/* Not instrumented: the cache poisons its pages' direct-map range for ASan,
 * which would report the touch instead of letting it fault. */
KMM_TEST_NO_ASAN static void child_touch(void *arg)
{
    const struct fault_case *c = arg;
    struct kmm *mm = kmm_test_create(c->ps, MEM);
    if (kmm_secret_set_backing(mm, c->backing) != 0)
        exit(3);
    size_t size = 3 * c->ps;
    volatile unsigned char *p = kmm_secret_alloc(mm, size);
    if (!p)
        exit(3);
    p[0] = 1, p[size - 1] = 2;   /* the secret itself is fine */
    volatile unsigned char *target;
    if (c->where == 0) {
        struct secret_run run;
        if (kmm__secret_runs(mm, (const void *)p, &run, 1) < 1)
            exit(3);
        target = kmm_phys_to_virt(mm, run.phys);
    } else {
        target = c->where < 0 ? p - 1 : p + size;
    }
    fprintf(stderr, "touching\n");
    (void)*target;
    exit(4);   /* it did not fault */
}

static void faults(size_t ps, enum kmm_secret_backing backing)
{
    struct kmm *mm = make_mm(ps, backing);
    if (!mm)
        return;
    kmm_destroy(mm);
    for (int where = -1; where <= 1; where++) {
        if (where == 0 && backing == KMM_SECRET_MEMFD)
            continue;   /* no frames of kmm's */
        struct fault_case c = { ps, backing, where };
        char out[4096];
        int status = kmm_test_run_child(child_touch, &c, out, sizeof out);
        bool ok = WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV && strstr(out, "touching");
        if (!ok) {
            fprintf(stderr, "expected SIGSEGV touching %s\n",
                    where < 0 ? "the guard before" : where > 0 ? "the guard after" : "the direct-map alias");
            kmm_test_describe_child(status, out);
        }
        assert_true(ok);
    }
}

static void test_faults_unmapped(void **state) { faults(kmm_test_param_ps(state), KMM_SECRET_UNMAPPED); }
static void test_faults_memfd(void **state) { faults(kmm_test_param_ps(state), KMM_SECRET_MEMFD); }

/* ---- fork ---- */

struct fork_case {
    struct kmm *mm;
    size_t ps;
    unsigned char *p;
    size_t size;
    struct secret_run runs[8];
    size_t nr_runs;
};

static void child_read_parents(void *arg)
{
    const struct fork_case *c = arg;
    fprintf(stderr, "reading\n");
    (void)*(volatile unsigned char *)c->p;
    exit(4);
}

/* The child's copy of the frames is zero, its own secrets work, the
 * parent's are gone from its counts. */
static void child_after_fork(void *arg)
{
    const struct fork_case *c = arg;
    struct kmm *mm = c->mm;
    size_t ps = c->ps;
    /* the child's first call of the layer gives the inherited frames back
     * to the unmapped cache (kmm_vmap refuses frames secret memory holds) */
    struct kmm_secret_stats st;
    kmm_secret_stats(mm, &st);
    if (st.allocations != 0 || st.locked_bytes != 0 || kmm_check(mm) != 0) {
        fprintf(stderr, "the child still counts the parent's secrets (%zu)\n", st.allocations);
        exit(6);
    }
    for (size_t i = 0; i < c->nr_runs; i++) {
        size_t n = (size_t)1 << c->runs[i].order;
        kmm_phys_t pages[64];
        for (size_t j = 0; j < n && j < 64; j++)
            pages[j] = c->runs[i].phys + j * ps;
        unsigned char *v = kmm_vmap(mm, pages, n < 64 ? n : 64, KMM_PROT_READ);
        if (!v) {
            fprintf(stderr, "kmm_vmap of the parent's frames failed\n");
            exit(3);
        }
        if (!all_zero(v, (n < 64 ? n : 64) * ps)) {
            fprintf(stderr, "the child's copy of a secret's frames is not zero\n");
            exit(5);
        }
        kmm_vunmap(mm, v);
    }
    unsigned char *q = kmm_secret_alloc(mm, c->size);
    if (!q || !all_zero(q, c->size))
        exit(7);
    kmm_test_fill(q, c->size, 9);
    if (!kmm_test_filled(q, c->size, 9) || kmm_check(mm) != 0)
        exit(8);
    kmm_secret_free(mm, q);
    if (kmm_check(mm) != 0)
        exit(9);
    fprintf(stderr, "child ok\n");
}

static void child_free_parents(void *arg)
{
    const struct fork_case *c = arg;
    kmm_secret_free(c->mm, c->p);
}

static void forks(size_t ps, enum kmm_secret_backing backing)
{
    struct kmm *mm = make_mm(ps, backing);
    if (!mm)
        return;
    struct fork_case c = { .mm = mm, .ps = ps, .size = 5 * ps };
    c.p = kmm_secret_alloc(mm, c.size);
    assert_non_null(c.p);
    kmm_test_fill(c.p, c.size, 3);
    c.nr_runs = kmm__secret_runs(mm, c.p, c.runs, 8);
    assert_true(c.nr_runs <= 8);
    char out[4096];
    int status = kmm_test_run_child(child_read_parents, &c, out, sizeof out);
    if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV && strstr(out, "reading"))) {
        kmm_test_describe_child(status, out);
        fail_msg("a child of fork could read its parent's secret");
    }
    status = kmm_test_run_child(child_after_fork, &c, out, sizeof out);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0 && strstr(out, "child ok"))) {
        kmm_test_describe_child(status, out);
        fail_msg("the child of fork");
    }
    assert_int_equal(kmm_test_expect_abort(child_free_parents, &c,
                                           "not a live secret allocation (secrets are not inherited by a child of fork)"),
                     0);
    /* the parent's secret is untouched by all that */
    assert_true(kmm_test_filled(c.p, c.size, 3));
    CHECK(mm);
    kmm_secret_free(mm, c.p);
    CHECK(mm);
    kmm_destroy(mm);
}

static void test_fork_unmapped(void **state) { forks(kmm_test_param_ps(state), KMM_SECRET_UNMAPPED); }
static void test_fork_memfd(void **state) { forks(kmm_test_param_ps(state), KMM_SECRET_MEMFD); }

/* ---- freed frames are zero before reuse ---- */

static void test_freed_frames_zero(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = make_mm(ps, KMM_SECRET_UNMAPPED);
    unsigned char *p = kmm_secret_alloc(mm, ps);
    assert_non_null(p);
    memset(p, 0xa5, ps);
    struct secret_run run;
    assert_int_equal(kmm__secret_runs(mm, p, &run, 1), 1);
    kmm_secret_free(mm, p);
    CHECK(mm);
    /* the frame comes back from the cache among the next few order-0 pages */
    kmm_phys_t got[64];
    size_t n = 0;
    bool found = false;
    while (n < 64 && !found) {
        got[n] = kmm_unmapped_alloc(mm, 0, KMM_NOZERO);
        assert_true(got[n] != KMM_PHYS_NONE);
        found = got[n++] == run.phys;
    }
    assert_true(found);
    unsigned char *v = kmm_vmap(mm, &run.phys, 1, KMM_PROT_READ);
    assert_non_null(v);
    assert_true(all_zero(v, ps));
    kmm_vunmap(mm, v);
    for (size_t i = 0; i < n; i++)
        kmm_unmapped_free(mm, got[i]);
    CHECK(mm);
    kmm_destroy(mm);
}

/* ---- RLIMIT_MEMLOCK ---- */

struct memlock_case {
    size_t ps;
    enum kmm_secret_backing backing;
};

/* Root's CAP_IPC_LOCK lifts RLIMIT_MEMLOCK: give it up (this process only). */
static bool drop_ipc_lock(void)
{
    struct __user_cap_header_struct head = { .version = _LINUX_CAPABILITY_VERSION_3 };
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &head, data) != 0)
        return false;
    data[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
    return syscall(SYS_capset, &head, data) == 0;
}

static void child_memlock(void *arg)
{
    const struct memlock_case *c = arg;
    struct kmm *mm = kmm_test_create(c->ps, MEM);
    if (kmm_secret_set_backing(mm, c->backing) != 0)
        exit(3);
    struct kmm_page_stats ps0, ps1;
    kmm_drain(mm);
    kmm_page_stats(mm, &ps0);
    struct rlimit low = { 512 << 10, 512 << 10 };
    if (setrlimit(RLIMIT_MEMLOCK, &low) != 0 || !drop_ipc_lock())
        exit(3);
    void *live[64];
    size_t n = 0;
    errno = 0;
    while (n < 64 && (live[n] = kmm_secret_alloc(mm, 64 << 10)) != NULL)
        n++;
    int err = errno;
    struct kmm_secret_stats st;
    kmm_secret_stats(mm, &st);
    if (n == 0 || n == 64 || err != EAGAIN || st.refused_memlock != 1 || st.allocations != n) {
        fprintf(stderr, "n %zu errno %d refused %llu live %zu\n", n, err, (unsigned long long)st.refused_memlock,
                st.allocations);
        exit(5);
    }
    if (kmm_check(mm) != 0)
        exit(6);
    for (size_t i = 0; i < n; i++)
        kmm_secret_free(mm, live[i]);
    if (kmm_check(mm) != 0)
        exit(7);
    /* nothing leaked: every page free again once caches are drained */
    kmm_unmapped_shrink(mm, 0);
    kmm_drain(mm);
    kmm_page_stats(mm, &ps1);
    if (ps1.free_pages != ps0.free_pages) {
        fprintf(stderr, "free pages %zu before, %zu after\n", ps0.free_pages, ps1.free_pages);
        exit(8);
    }
    /* and room again after the frees */
    void *again = kmm_secret_alloc(mm, 64 << 10);
    if (!again)
        exit(9);
    kmm_secret_free(mm, again);
    fprintf(stderr, "child ok\n");
}

static void memlock(size_t ps, enum kmm_secret_backing backing)
{
    struct kmm *mm = make_mm(ps, backing);
    if (!mm)
        return;
    kmm_destroy(mm);
    struct memlock_case c = { ps, backing };
    char out[8192];
    int status = kmm_test_run_child(child_memlock, &c, out, sizeof out);
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 && strstr(out, "child ok") &&
              strstr(out, "kmm: kmm_secret_alloc: cannot lock 65536 bytes") &&
              strstr(out, "RLIMIT_MEMLOCK") && strstr(out, "raise RLIMIT_MEMLOCK (ulimit -l) or free secrets");
    if (!ok)
        kmm_test_describe_child(status, out);
    assert_true(ok);
    /* one line: the report is not repeated or split */
    const char *first = strstr(out, "cannot lock");
    assert_null(strstr(first + 1, "cannot lock"));
}

static void test_memlock_unmapped(void **state) { memlock(kmm_test_param_ps(state), KMM_SECRET_UNMAPPED); }
static void test_memlock_memfd(void **state) { memlock(kmm_test_param_ps(state), KMM_SECRET_MEMFD); }

/* ---- many live secrets: the table grows; frees in random order ---- */

static void test_many(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = make_mm(ps, KMM_SECRET_UNMAPPED);
    enum { N = 150 };
    unsigned char *p[N];
    uint64_t seed = kmm_test_seed("test_secret many");
    for (unsigned i = 0; i < N; i++) {
        size_t size = 1 + kmm_test_below(&seed, 2 * ps);
        p[i] = kmm_secret_alloc(mm, size);
        assert_non_null(p[i]);
        p[i][0] = (unsigned char)i, p[i][size - 1] = (unsigned char)~i;
        if (i % 16 == 0)
            CHECK(mm);
    }
    CHECK(mm);
    for (unsigned i = N; i > 1; i--) {
        unsigned j = (unsigned)kmm_test_below(&seed, i);
        unsigned char *t = p[j];
        p[j] = p[i - 1], p[i - 1] = t;
    }
    for (unsigned i = 0; i < N; i++) {
        kmm_secret_free(mm, p[i]);
        if (i % 16 == 0)
            CHECK(mm);
    }
    struct kmm_secret_stats st;
    kmm_secret_stats(mm, &st);
    assert_int_equal(st.allocations, 0);
    assert_int_equal(st.allocs, N);
    assert_int_equal(st.frees, N);
    CHECK(mm);
    kmm_destroy(mm);
}

/* ---- refusals, names, destroy with secrets live ---- */

static void test_refusals(void **state)
{
    (void)state;
    struct kmm *mm = kmm_test_create(4096, MEM);
    struct kmm_test_capture cap;
    kmm_test_capture_begin(&cap);
    errno = 0;
    void *p = kmm_secret_alloc(mm, 0);
    int err = errno;
    int rc = kmm_secret_set_backing(mm, (enum kmm_secret_backing)7);
    char *text = kmm_test_capture_end(&cap);
    assert_null(p);
    assert_int_equal(err, EINVAL);
    assert_int_equal(rc, -KMM_EINVAL);
    assert_non_null(strstr(text, "kmm_secret_alloc: size 0"));
    assert_non_null(strstr(text, "kmm_secret_set_backing: unknown backing"));
    free(text);
    errno = 0;
    assert_null(kmm_secret_alloc(mm, SIZE_MAX));
    assert_int_equal(errno, ENOMEM);
    assert_null(kmm_secret_alloc(mm, (size_t)1 << 40));
    assert_int_equal(errno, ENOMEM);
    kmm_secret_free(mm, NULL);
    assert_string_equal(kmm_secret_backing_name(KMM_SECRET_UNMAPPED), "unmapped cache");
    assert_string_equal(kmm_secret_backing_name(KMM_SECRET_MEMFD), "memfd_secret");
    assert_true(kmm_secret_backing_available(mm, KMM_SECRET_UNMAPPED));
    assert_int_equal(kmm_secret_backing(mm), KMM_SECRET_UNMAPPED);
    CHECK(mm);
    /* live secrets of both backings at kmm_destroy: unmapped and given back */
    size_t locked = vm_locked();
    assert_non_null(kmm_secret_alloc(mm, 10000));
    if (memfd_ok(mm)) {
        assert_int_equal(kmm_secret_set_backing(mm, KMM_SECRET_MEMFD), 0);
        assert_non_null(kmm_secret_alloc(mm, 10000));
    }
    CHECK(mm);
    kmm_destroy(mm);
    assert_int_equal(vm_locked(), locked);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        KMM_TEST_SMALL_PAGES(test_sizes_unmapped),
        KMM_TEST_SMALL_PAGES(test_sizes_memfd),
        KMM_TEST_SMALL_PAGES(test_faults_unmapped),
        KMM_TEST_SMALL_PAGES(test_faults_memfd),
        KMM_TEST_SMALL_PAGES(test_fork_unmapped),
        KMM_TEST_SMALL_PAGES(test_fork_memfd),
        KMM_TEST_SMALL_PAGES(test_freed_frames_zero),
        KMM_TEST_SMALL_PAGES(test_memlock_unmapped),
        KMM_TEST_SMALL_PAGES(test_memlock_memfd),
        KMM_TEST_SMALL_PAGES(test_many),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
