/* A call on a memory system after kmm_destroy must be reported ("kmm:
 * <function>: memory system 0x... was destroyed") and abort, never run on
 * freed memory. Each call runs in a child process that first used every
 * layer, so that this thread's caches and keys still name the memory
 * system: its fast paths must miss and land on the report. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "kmm_test.h"

#define PS 4096
#define MEM (64ull << 20)

struct dead {
    struct kmm *mm;
    void *obj, *big, *page, *page3, *vm;   /* allocated before the destroy, never freed */
};

/* A memory system used by every layer (the fast paths warm: a magazine
 * and a page cache with room and with blocks), then destroyed. */
static struct dead make_dead(void)
{
    struct dead d = { .mm = kmm_test_create(PS, MEM) };
    for (int i = 0; i < 4; i++) {
        kmm_free(d.mm, kmm_malloc(d.mm, 64, 0));
        kmm_free_pages(d.mm, kmm_alloc_pages(d.mm, 0, 0));
    }
    d.obj = kmm_malloc(d.mm, 64, 0);
    d.big = kmm_malloc(d.mm, 5 * PS, 0);
    d.page = kmm_alloc_pages(d.mm, 0, 0);
    d.page3 = kmm_alloc_pages(d.mm, 3, 0);
    d.vm = kmm_vmalloc(d.mm, 2 * PS, 0);
    if (!d.obj || !d.big || !d.page || !d.page3 || !d.vm)
        exit(3);   /* a set-up failure is an exit, not the abort the parent waits for */
    kmm_destroy(d.mm);
    return d;
}

static void malloc_after(void *arg) { (void)arg; struct dead d = make_dead(); kmm_malloc(d.mm, 64, 0); }
static void malloc_large_after(void *arg) { (void)arg; struct dead d = make_dead(); kmm_malloc(d.mm, 64 * PS, 0); }
static void calloc_after(void *arg) { (void)arg; struct dead d = make_dead(); kmm_calloc(d.mm, 4, 16, 0); }
static void realloc_after(void *arg) { (void)arg; struct dead d = make_dead(); kmm_realloc(d.mm, d.obj, 200, 0); }
static void free_after(void *arg) { (void)arg; struct dead d = make_dead(); kmm_free(d.mm, d.obj); }
static void free_big_after(void *arg) { (void)arg; struct dead d = make_dead(); kmm_free(d.mm, d.big); }
static void usable_size_after(void *arg) { (void)arg; struct dead d = make_dead(); kmm_usable_size(d.mm, d.obj); }
static void alloc_pages_after(void *arg) { (void)arg; struct dead d = make_dead(); kmm_alloc_pages(d.mm, 0, 0); }
static void alloc_pages_exact_after(void *arg) { (void)arg; struct dead d = make_dead(); kmm_alloc_pages_exact(d.mm, 5 * PS, 0); }
static void free_pages_after(void *arg) { (void)arg; struct dead d = make_dead(); kmm_free_pages(d.mm, d.page); }
static void free_pages3_after(void *arg) { (void)arg; struct dead d = make_dead(); kmm_free_pages(d.mm, d.page3); }
static void vmalloc_after(void *arg) { (void)arg; struct dead d = make_dead(); kmm_vmalloc(d.mm, PS, 0); }
static void vfree_after(void *arg) { (void)arg; struct dead d = make_dead(); kmm_vfree(d.mm, d.vm); }
static void free_vm_after(void *arg) { (void)arg; struct dead d = make_dead(); kmm_free(d.mm, d.vm); }
static void kvmalloc_after(void *arg) { (void)arg; struct dead d = make_dead(); kmm_kvmalloc(d.mm, 100, 0); }
static void check_after(void *arg) { (void)arg; struct dead d = make_dead(); kmm_check(d.mm); }
static void drain_after(void *arg) { (void)arg; struct dead d = make_dead(); kmm_drain(d.mm); }
static void destroy_twice(void *arg) { (void)arg; struct dead d = make_dead(); kmm_destroy(d.mm); }
static void cache_create_after(void *arg) { (void)arg; struct dead d = make_dead(); kmm_cache_create(d.mm, "late", 32, 0, NULL); }
static void reserve_after(void *arg) { (void)arg; struct dead d = make_dead(); kmm_reserve_pages(d.mm, 8ull << 20, 1); }
static void page_stats_after(void *arg)
{
    (void)arg;
    struct dead d = make_dead();
    struct kmm_page_stats st;
    kmm_page_stats(d.mm, &st);
}

static void meta_stats_after(void *arg)
{
    (void)arg;
    struct dead d = make_dead();
    struct kmm_meta_stats st;
    kmm_meta_stats(d.mm, &st);   /* an outside review found it read unmapped memory */
}

/* Another memory system made (and used) since does not take the dead
 * one's place: the stale pointer is still recognised. */
static void malloc_after_another_made(void *arg)
{
    (void)arg;
    struct dead d = make_dead();
    struct kmm *other = kmm_test_create(PS, MEM);
    if (other == d.mm)
        exit(4);
    kmm_free(other, kmm_malloc(other, 64, 0));
    kmm_malloc(d.mm, 64, 0);
}

/* The same from a thread that used the memory system but did not destroy
 * it: its key and caches name it too. */
static void *use_then_wait(void *arg)
{
    struct kmm *mm = arg;
    kmm_free(mm, kmm_malloc(mm, 64, 0));
    kmm_free_pages(mm, kmm_alloc_pages(mm, 0, 0));
    return NULL;
}
static void malloc_after_other_thread_used(void *arg)
{
    (void)arg;
    struct kmm *mm = kmm_test_create(PS, MEM);
    kmm_free(mm, kmm_malloc(mm, 64, 0));
    pthread_t th;
    kmm_test_start_threads(&th, 1, use_then_wait, mm, 0);
    kmm_test_join_threads(&th, 1);
    kmm_destroy(mm);
    kmm_malloc(mm, 64, 0);
}

struct abuse {
    void (*fn)(void *arg);
    const char *call;   /* "kmm: <call>: memory system 0x" */
};

static void expect_abort(void **state)
{
    const struct abuse *a = *state;
    char needle[128];
    snprintf(needle, sizeof needle, "kmm: %s: memory system 0x", a->call);
    assert_int_equal(kmm_test_expect_abort(a->fn, NULL, needle), 0);
    assert_int_equal(kmm_test_expect_abort(a->fn, NULL, " was destroyed"), 0);
}

#define ABUSE(fn, call) \
    { #fn, expect_abort, NULL, NULL, &(struct abuse){ fn, call } }

/* Many memory systems made and destroyed: the tombstones stay bounded, and
 * every new one works. */
static void test_many_destroyed(void **state)
{
    (void)state;
    for (int i = 0; i < 300; i++) {
        struct kmm *mm = kmm_test_create(PS, 16ull << 20);
        void *p = kmm_malloc(mm, 100, 0);
        assert_non_null(p);
        kmm_free(mm, p);
        assert_int_equal(kmm_check(mm), 0);
        kmm_destroy(mm);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        ABUSE(malloc_after, "kmm_malloc"),
        ABUSE(malloc_large_after, "kmm_malloc"),
        ABUSE(calloc_after, "kmm_calloc"),
        ABUSE(realloc_after, "kmm_realloc"),
        ABUSE(free_after, "kmm_free"),
        ABUSE(free_big_after, "kmm_free"),
        ABUSE(usable_size_after, "kmm_usable_size"),
        ABUSE(alloc_pages_after, "kmm_alloc_pages"),
        ABUSE(alloc_pages_exact_after, "kmm_alloc_pages_exact"),
        ABUSE(free_pages_after, "kmm_free_pages"),
        ABUSE(free_pages3_after, "kmm_free_pages"),
        ABUSE(vmalloc_after, "kmm_vmalloc"),
        ABUSE(vfree_after, "kmm_vfree"),
        ABUSE(free_vm_after, "kmm_free"),
        ABUSE(kvmalloc_after, "kmm_kvmalloc"),
        ABUSE(check_after, "kmm_check"),
        ABUSE(drain_after, "kmm_drain"),
        ABUSE(destroy_twice, "kmm_destroy"),
        ABUSE(cache_create_after, "kmm_cache_create"),
        ABUSE(reserve_after, "kmm_reserve_pages"),
        ABUSE(page_stats_after, "kmm_page_stats"),
        ABUSE(meta_stats_after, "kmm_meta_stats"),
        ABUSE(malloc_after_another_made, "kmm_malloc"),
        ABUSE(malloc_after_other_thread_used, "kmm_malloc"),
        cmocka_unit_test(test_many_destroyed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
