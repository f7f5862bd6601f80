/* Misuse of zsmalloc (include/kmm/zsmalloc.h) must be caught:
 *  - a free, map, copy or unmap with a handle the pool did not hand out, or
 *    handed out and took back (stale, double free - also after its slot
 *    was reused), or handed out from another pool, is reported with the
 *    function, the reason and the handle, and aborts;
 *  - so are a free of a mapped object, an unmap of an object the thread has
 *    not mapped, more than KMM_ZS_MAP_NEST mappings held by one thread, and
 *    kmm_zs_destroy of a pool with an object mapped;
 *  - a page of a pool freed through another layer (kmm_free_pages,
 *    kmm_free) aborts naming zsmalloc as its owner, and the page's address;
 *  - kmm_zs_read / kmm_zs_write past the object's usable size return
 *    -KMM_EINVAL, report, and copy nothing (not a death: tested in the
 *    parent, stderr captured);
 *  - handle 0 is a no-op for kmm_zs_free.
 *
 * Each death runs in a child process twice: through kmm_test_expect_abort
 * (the reason in the output) and through expect_report (the function, the
 * reason and the handle or address in the same report line). A child says
 * "misuse of <value>" - the handle in hex, or the page's address - just
 * before its misuse, so the parent knows the set-up went through and what
 * the report must name; a child whose set-up failed exits with 3.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kmm_test.h"

#define PS  ((size_t)4096)
#define MEM (64ull << 20)

/* ---- children's helpers ------------------------------------------------------- */

static struct kmm *child_mm(void)
{
    return kmm_test_create(PS, MEM);
}

static struct kmm_zspool *pool_or_exit(struct kmm *mm, const char *name)
{
    struct kmm_zspool *pool = kmm_zs_create(mm, name);
    if (!pool)
        exit(3);
    return pool;
}

static uint64_t malloc_or_exit(struct kmm_zspool *pool, size_t size)
{
    uint64_t h = kmm_zs_malloc(pool, size, 0);
    if (!h)
        exit(3);
    return h;
}

/* Says which handle the misuse that follows is about. */
static void misuse_of_handle(uint64_t h)
{
    fprintf(stderr, "misuse of 0x%llx\n", (unsigned long long)h);
    fflush(stderr);
}

static void misuse_of_address(const void *p)
{
    fprintf(stderr, "misuse of %p\n", p);
    fflush(stderr);
}

/* ---- the parent's side ------------------------------------------------------------ */

/* The child aborts with a report "kmm: <who>: ...<why>...<value>..." on one
 * line, the value the one the child said its misuse was about. */
static void expect_report(void (*fn)(void *), void *arg, const char *who, const char *why)
{
    char out[8192];
    int status = kmm_test_run_child(fn, arg, out, sizeof out);
    assert_true(status != -1);
    bool ok = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
    const char *at = strstr(out, "misuse of ");
    char value[64] = "";
    if (at)
        sscanf(at, "misuse of %63s", value);
    /* zsmalloc's reports start "kmm: <who>: ", the page allocator's
     * ownership reports "<who>: " at the start of a line */
    char head[128], bare[128];
    snprintf(head, sizeof head, "kmm: %s: ", who);
    snprintf(bare, sizeof bare, "\n%s: ", who);
    const char *line = strstr(out, head);
    if (!line && (line = strstr(out, bare)) != NULL)
        line++;
    char report[1024] = "";
    if (line) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        snprintf(report, sizeof report, "%.*s", (int)(len < sizeof report ? len : sizeof report - 1), line);
    }
    ok = ok && value[0] && report[0] && strstr(report, why) && strstr(report, value);
    if (!ok) {
        fprintf(stderr, "expected \"%s...%s...%s\"\n", head, why, value[0] ? value : "(the child said nothing)");
        kmm_test_describe_child(status, out);
    }
    assert_true(ok);
}

static void expect_abort(void (*fn)(void *), void *arg, const char *who, const char *why)
{
    assert_int_equal(kmm_test_expect_abort(fn, arg, why), 0);
    expect_report(fn, arg, who, why);
}

/* ---- bad handles: one misuse each, from a table ------------------------------------------ */

/* Which handle the misuse is made with. */
enum bad {
    B_FREED,          /* an object freed */
    B_FREED_REUSED,   /* an object freed, and another allocated in its place since */
    B_MADE_UP,        /* a live handle with its bits changed */
    B_WILD,           /* a number the pool never handed out */
    B_OTHER_POOL,     /* a live handle of another pool of the same memory system */
    B_OTHER_MM,       /* a live handle of a pool of another memory system */
};

/* The misusing call. */
enum op { OP_FREE, OP_MAP, OP_UNMAP, OP_READ, OP_WRITE, OP_USABLE };

struct misuse {
    const char *who, *why;
    enum op op;
    enum bad bad;
};

static void child_bad_handle(void *arg)
{
    const struct misuse *c = arg;
    struct kmm *mm = child_mm();
    struct kmm_zspool *pool = pool_or_exit(mm, "victim");
    uint64_t keep[8];
    for (unsigned i = 0; i < 8; i++)
        keep[i] = malloc_or_exit(pool, 100 + 300 * i);   /* handles around the one misused */
    uint64_t h = 0;
    switch (c->bad) {
    case B_FREED:
        h = malloc_or_exit(pool, 200);
        kmm_zs_free(pool, h);
        break;
    case B_FREED_REUSED:
        h = malloc_or_exit(pool, 200);
        kmm_zs_free(pool, h);
        (void)malloc_or_exit(pool, 200);
        break;
    case B_MADE_UP:
        h = keep[3] ^ 0x5a5a0000ull;
        break;
    case B_WILD:
        h = 0x0123456789abcdefull;
        break;
    case B_OTHER_POOL:
        h = malloc_or_exit(pool_or_exit(mm, "other"), 200);
        break;
    case B_OTHER_MM:
        h = malloc_or_exit(pool_or_exit(child_mm(), "other-mm"), 200);
        for (unsigned i = 0; i < 8; i++)   /* not one of this pool's too, by chance */
            if (keep[i] == h)
                exit(3);
        break;
    }
    char buf[16] = { 0 };
    misuse_of_handle(h);
    switch (c->op) {
    case OP_FREE:
        kmm_zs_free(pool, h);
        break;
    case OP_MAP:
        (void)kmm_zs_map(pool, h, KMM_ZS_RW);
        break;
    case OP_UNMAP:
        kmm_zs_unmap(pool, h);
        break;
    case OP_READ:
        (void)kmm_zs_read(pool, h, 0, buf, sizeof buf);
        break;
    case OP_WRITE:
        (void)kmm_zs_write(pool, h, 0, buf, sizeof buf);
        break;
    case OP_USABLE:
        (void)kmm_zs_usable_size(pool, h);
        break;
    }
}

/* The reasons matched: stable parts of the reports (handle_problem in
 * src/zsmalloc/pool.c). A handle carries its pool's tag, so a handle of
 * another pool, or a number no pool made, is "not a handle of this pool";
 * an id beyond the pool's table is unknown; a freed one stale (whether its
 * slot was reused since or not). */
#define WHY_STALE   "stale handle"
#define WHY_UNKNOWN "unknown handle"
#define WHY_FOREIGN "not a handle of this pool"

static const struct misuse bad_handles[] = {
    { "kmm_zs_free", WHY_STALE, OP_FREE, B_FREED },   /* a double free */
    { "kmm_zs_free", WHY_STALE, OP_FREE, B_FREED_REUSED },
    { "kmm_zs_free", WHY_UNKNOWN, OP_FREE, B_MADE_UP },
    { "kmm_zs_free", WHY_FOREIGN, OP_FREE, B_WILD },
    { "kmm_zs_free", WHY_FOREIGN, OP_FREE, B_OTHER_POOL },
    { "kmm_zs_free", WHY_FOREIGN, OP_FREE, B_OTHER_MM },
    { "kmm_zs_map", WHY_STALE, OP_MAP, B_FREED },
    { "kmm_zs_map", WHY_STALE, OP_MAP, B_FREED_REUSED },
    { "kmm_zs_map", WHY_FOREIGN, OP_MAP, B_WILD },
    { "kmm_zs_map", WHY_FOREIGN, OP_MAP, B_OTHER_POOL },
    { "kmm_zs_unmap", WHY_STALE, OP_UNMAP, B_FREED },
    { "kmm_zs_unmap", WHY_UNKNOWN, OP_UNMAP, B_MADE_UP },
    { "kmm_zs_read", WHY_STALE, OP_READ, B_FREED },
    { "kmm_zs_read", WHY_FOREIGN, OP_READ, B_WILD },
    { "kmm_zs_read", WHY_FOREIGN, OP_READ, B_OTHER_MM },
    { "kmm_zs_write", WHY_STALE, OP_WRITE, B_FREED_REUSED },
    { "kmm_zs_write", WHY_UNKNOWN, OP_WRITE, B_MADE_UP },
    { "kmm_zs_write", WHY_FOREIGN, OP_WRITE, B_OTHER_POOL },
    { "kmm_zs_usable_size", WHY_STALE, OP_USABLE, B_FREED },
    { "kmm_zs_usable_size", WHY_FOREIGN, OP_USABLE, B_WILD },
};

static void test_bad_handles(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_handles / sizeof bad_handles[0]; i++) {
        fprintf(stderr, "case %zu: %s with a bad handle (%d)\n", i, bad_handles[i].who, (int)bad_handles[i].bad);
        expect_abort(child_bad_handle, (void *)&bad_handles[i], bad_handles[i].who, bad_handles[i].why);
    }
}

/* ---- mappings ------------------------------------------------------------------------------ */

/* An object never mapped, and one mapped and unmapped already. */
static void child_unmap_unmapped(void *arg)
{
    bool was_mapped = arg != NULL;
    struct kmm *mm = child_mm();
    struct kmm_zspool *pool = pool_or_exit(mm, "unmap");
    uint64_t h = malloc_or_exit(pool, 3000);
    if (was_mapped) {
        kmm_zs_map(pool, h, KMM_ZS_RO);
        kmm_zs_unmap(pool, h);
    }
    misuse_of_handle(h);
    kmm_zs_unmap(pool, h);
}

static void test_unmap_unmapped(void **state)
{
    (void)state;
    expect_abort(child_unmap_unmapped, NULL, "kmm_zs_unmap", "has not mapped this object");
    expect_abort(child_unmap_unmapped, (void *)1, "kmm_zs_unmap", "has not mapped this object");
}

/* Another thread holds the mapping: the caller has none to end. */
struct other_thread {
    struct kmm_zspool *pool;
    uint64_t h;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool mapped;
};

static void *map_and_hold(void *arg)
{
    struct other_thread *o = arg;
    kmm_zs_map(o->pool, o->h, KMM_ZS_RO);
    pthread_mutex_lock(&o->lock);
    o->mapped = true;
    pthread_cond_signal(&o->cond);
    pthread_mutex_unlock(&o->lock);
    for (;;)
        pause();
    return NULL;
}

static void child_unmap_other_threads(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    static struct other_thread o = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
    o.pool = pool_or_exit(mm, "other-thread");
    o.h = malloc_or_exit(o.pool, 3000);
    pthread_t th;
    if (pthread_create(&th, NULL, map_and_hold, &o) != 0)
        exit(3);
    pthread_mutex_lock(&o.lock);
    while (!o.mapped)
        pthread_cond_wait(&o.cond, &o.lock);
    pthread_mutex_unlock(&o.lock);
    misuse_of_handle(o.h);
    kmm_zs_unmap(o.pool, o.h);
}

static void test_unmap_of_other_threads_mapping(void **state)
{
    (void)state;
    expect_abort(child_unmap_other_threads, NULL, "kmm_zs_unmap", "has not mapped this object");
}

/* A free of a mapped object: inside a page, or spanning two. */
static void child_free_mapped(void *arg)
{
    size_t size = (size_t)(uintptr_t)arg;
    struct kmm *mm = child_mm();
    struct kmm_zspool *pool = pool_or_exit(mm, "free-mapped");
    uint64_t h = 0;
    for (unsigned i = 0; i < 3; i++)   /* the third of 3000 bytes spans pages 1 and 2 */
        h = malloc_or_exit(pool, size);
    kmm_zs_map(pool, h, KMM_ZS_WO);
    misuse_of_handle(h);
    kmm_zs_free(pool, h);
}

static void test_free_mapped(void **state)
{
    (void)state;
    expect_abort(child_free_mapped, (void *)(uintptr_t)64, "kmm_zs_free", "free of a mapped object");
    expect_abort(child_free_mapped, (void *)(uintptr_t)3000, "kmm_zs_free", "free of a mapped object");
}

/* The (KMM_ZS_MAP_NEST + 1)th mapping one thread holds. */
static void child_map_too_deep(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    struct kmm_zspool *pool = pool_or_exit(mm, "deep");
    uint64_t h[KMM_ZS_MAP_NEST + 1];
    for (unsigned i = 0; i <= KMM_ZS_MAP_NEST; i++)
        h[i] = malloc_or_exit(pool, 1000);
    for (unsigned i = 0; i < KMM_ZS_MAP_NEST; i++)
        kmm_zs_map(pool, h[i], i & 1 ? KMM_ZS_RO : KMM_ZS_RW);
    misuse_of_handle(h[KMM_ZS_MAP_NEST]);
    kmm_zs_map(pool, h[KMM_ZS_MAP_NEST], KMM_ZS_RO);
}

static void test_map_nesting_too_deep(void **state)
{
    (void)state;
    expect_abort(child_map_too_deep, NULL, "kmm_zs_map", "already holds KMM_ZS_MAP_NEST");
}

/* kmm_zs_destroy while an object is mapped: the report names the handle
 * that is mapped. */
static void child_destroy_mapped(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    struct kmm_zspool *pool = pool_or_exit(mm, "destroy-mapped");
    uint64_t h = malloc_or_exit(pool, 2000);
    kmm_zs_map(pool, h, KMM_ZS_RO);
    misuse_of_handle(h);
    kmm_zs_destroy(pool);
}

static void test_destroy_mapped(void **state)
{
    (void)state;
    expect_abort(child_destroy_mapped, NULL, "kmm_zs_destroy", "with a mapped object");
}

/* ---- the pool's pages, freed by another layer -------------------------------------------- */

/* A page of the pool: an object inside a page is mapped in place, in the
 * direct map, so its pointer rounded down to the page is a pool page. */
static void *pool_page(struct kmm *mm, struct kmm_zspool *pool, unsigned nth)
{
    uint64_t h = 0;
    for (unsigned i = 0; i <= nth; i++)
        h = malloc_or_exit(pool, 64);   /* 64 divides the page: never spans */
    void *p = kmm_zs_map(pool, h, KMM_ZS_RO);
    kmm_zs_unmap(pool, h);
    if (kmm_virt_to_phys(mm, p) == KMM_PHYS_NONE)
        exit(3);
    return (void *)((uintptr_t)p & ~(uintptr_t)(PS - 1));
}

static void child_free_pages_of_pool(void *arg)
{
    bool via_kmm_free = arg != NULL;
    struct kmm *mm = child_mm();
    struct kmm_zspool *pool = pool_or_exit(mm, "pages");
    void *page = pool_page(mm, pool, 100);   /* the second page of the zspage */
    misuse_of_address(page);
    if (via_kmm_free)
        kmm_free(mm, page);
    else
        kmm_free_pages(mm, page);
}

static void test_free_pages_of_pool(void **state)
{
    (void)state;
    expect_abort(child_free_pages_of_pool, NULL, "kmm_free_pages", "owned by zsmalloc");
    expect_abort(child_free_pages_of_pool, (void *)1, "kmm_free", "owned by zsmalloc");
}

/* ---- not deaths ------------------------------------------------------------------------------ */

/* Copies past the usable size are refused, reported, and copy nothing. */
static void test_copy_out_of_bounds(void **state)
{
    (void)state;
    struct kmm *mm = child_mm();
    struct kmm_zspool *pool = kmm_zs_create(mm, "bounds");
    assert_non_null(pool);
    const size_t sizes[] = { 1, 100, 3000, PS };
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        uint64_t h = kmm_zs_malloc(pool, sizes[s], 0);
        assert_true(h != 0);
        size_t usable = kmm_zs_usable_size(pool, h);
        unsigned char *orig = malloc(usable), *buf = malloc(usable + 16);
        assert_non_null(orig);
        assert_non_null(buf);
        kmm_test_fill(orig, usable, (unsigned)s + 1);
        assert_int_equal(kmm_zs_write(pool, h, 0, orig, usable), 0);
        const struct {
            size_t off, len;
        } bad[] = {
            { 0, usable + 1 }, { usable, 1 }, { usable - 1, 2 }, { 1, usable }, { usable + 100, 0 },
            { SIZE_MAX, 2 }, { 2, SIZE_MAX - 1 }, { SIZE_MAX / 2, SIZE_MAX / 2 + 3 },
        };
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
            struct kmm_test_capture cap;
            memset(buf, 0xee, usable + 16);
            kmm_test_capture_begin(&cap);
            int rr = kmm_zs_read(pool, h, bad[b].off, buf, bad[b].len);
            int rw = kmm_zs_write(pool, h, bad[b].off, buf, bad[b].len);
            char *said = kmm_test_capture_end(&cap);
            if (rr != -KMM_EINVAL || rw != -KMM_EINVAL)
                fail_msg("size %zu (usable %zu), offset %zu, len %zu: read %d, write %d, not -KMM_EINVAL", sizes[s],
                         usable, bad[b].off, bad[b].len, rr, rw);
            if (!strstr(said, "kmm_zs_read") || !strstr(said, "kmm_zs_write"))
                fail_msg("out-of-bounds copies not reported: \"%s\"", said);
            free(said);
            for (size_t i = 0; i < usable + 16; i++)
                assert_int_equal(buf[i], 0xee);   /* nothing read */
        }
        memset(buf, 0, usable);
        assert_int_equal(kmm_zs_read(pool, h, 0, buf, usable), 0);
        assert_memory_equal(buf, orig, usable);   /* nothing written */
        /* the ends themselves are in bounds */
        assert_int_equal(kmm_zs_read(pool, h, usable - 1, buf, 1), 0);
        assert_int_equal(buf[0], orig[usable - 1]);
        assert_int_equal(kmm_zs_write(pool, h, usable, buf, 0), 0);
        kmm_zs_free(pool, h);
        free(orig);
        free(buf);
    }
    kmm_zs_free(pool, 0);   /* a no-op */
    struct kmm_zs_stats st;
    kmm_zs_stats(pool, &st);
    assert_int_equal(st.objects, 0);
    assert_int_equal(kmm_check(mm), 0);
    kmm_zs_destroy(pool);
    assert_int_equal(kmm_check(mm), 0);
    kmm_destroy(mm);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_handles),
        cmocka_unit_test(test_unmap_unmapped),
        cmocka_unit_test(test_unmap_of_other_threads_mapping),
        cmocka_unit_test(test_free_mapped),
        cmocka_unit_test(test_map_nesting_too_deep),
        cmocka_unit_test(test_destroy_mapped),
        cmocka_unit_test(test_free_pages_of_pool),
        cmocka_unit_test(test_copy_out_of_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
