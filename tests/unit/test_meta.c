/* Unit tests of the metadata object allocator (core/meta.c): the small
 * objects of kmm's own bookkeeping (vmalloc's nodes and run arrays, and the
 * layers to come), kept in metadata memory, out of the direct map.
 *
 * White-box: it calls kmm__meta_obj_alloc / kmm__meta_obj_free from
 * src/internal.h. Classes, zeroing, reuse, large sizes, the accounting of
 * kmm_meta_stats, empty chunks going back, fault injection, kmm_check on a
 * broken chunk header, misuse aborts (in child processes), and many threads
 * (run under TSan by make sanitize-thread). Every test ends with kmm_check. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kmm_test.h"

#define MiB ((size_t)1 << 20)

static const size_t class_sizes[META_OBJ_CLASSES] = { 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024 };

static size_t class_size_of(size_t size)
{
    for (size_t c = 0; c < META_OBJ_CLASSES; c++)
        if (size <= class_sizes[c])
            return class_sizes[c];
    return 0;
}

static struct kmm_meta_stats mstats(struct kmm *mm)
{
    struct kmm_meta_stats st;
    kmm_meta_stats(mm, &st);
    return st;
}

static bool all_zero(const void *p, size_t len)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < len; i++)
        if (b[i])
            return false;
    return true;
}

static void finish(struct kmm *mm)
{
    assert_int_equal(kmm_check(mm), 0);
    kmm_destroy(mm);
}

/* Every size up to past the largest class: zeroed, 16-byte aligned, out of
 * the direct map, no two overlapping; counted by class size; all back. */
static void test_classes(void **state)
{
    (void)state;
    struct kmm *mm = kmm_test_create(4096, 64 * MiB);
    enum { N = 1100 };
    void **p = calloc(N + 1, sizeof(*p));
    assert_non_null(p);
    size_t bytes = 0, large = 0, large_bytes = 0;
    for (size_t size = 1; size <= N; size++) {
        p[size] = kmm__meta_obj_alloc(mm, size);
        assert_non_null(p[size]);
        assert_int_equal((uintptr_t)p[size] & 15, 0);
        assert_true(all_zero(p[size], size));
        assert_true(kmm_virt_to_phys(mm, p[size]) == KMM_PHYS_NONE);
        kmm_test_fill(p[size], size, (unsigned)size);
        if (size <= META_OBJ_MAX) {
            bytes += class_size_of(size);
        } else {
            large++;
            large_bytes += size;
        }
    }
    struct kmm_meta_stats st = mstats(mm);
    assert_int_equal(st.objects, META_OBJ_MAX);
    assert_int_equal(st.object_bytes, bytes);
    assert_int_equal(st.held_bytes, st.chunks * META_CHUNK);
    assert_true(st.held_bytes >= st.object_bytes);
    assert_int_equal(st.large_objects, large);
    assert_int_equal(st.large_bytes, large_bytes);
    assert_int_equal(kmm_check(mm), 0);
    for (size_t size = 1; size <= N; size++) {
        assert_true(kmm_test_filled(p[size], size, (unsigned)size));
        kmm__meta_obj_free(mm, p[size], size);
    }
    st = mstats(mm);
    assert_int_equal(st.objects, 0);
    assert_int_equal(st.object_bytes, 0);
    assert_true(st.chunks <= META_OBJ_CLASSES * META_KEEP_EMPTY);   /* empty ones kept */
    assert_int_equal(kmm_check(mm), 0);
    kmm_drain(mm);
    st = mstats(mm);
    assert_int_equal(st.chunks, 0);
    assert_int_equal(st.held_bytes, 0);
    assert_int_equal(st.large_objects, 0);
    assert_int_equal(st.large_bytes, 0);
    assert_int_equal(st.large_held_bytes, 0);
    free(p);
    finish(mm);
}

/* A freed object is the next one of its class, whatever size in the class
 * asks; it comes back zeroed. */
static void test_reuse(void **state)
{
    (void)state;
    struct kmm *mm = kmm_test_create(4096, 64 * MiB);
    for (size_t c = 0; c < META_OBJ_CLASSES; c++) {
        size_t size = class_sizes[c];
        void *keep = kmm__meta_obj_alloc(mm, size);
        void *a = kmm__meta_obj_alloc(mm, size);
        assert_non_null(keep);
        assert_non_null(a);
        memset(a, 0xa5, size);
        kmm__meta_obj_free(mm, a, size);
        size_t other = c ? class_sizes[c - 1] + 1 : 1;
        void *b = kmm__meta_obj_alloc(mm, other);
        assert_ptr_equal(a, b);
        assert_true(all_zero(b, other));
        kmm__meta_obj_free(mm, b, other);
        kmm__meta_obj_free(mm, keep, size);
    }
    finish(mm);
}

/* Above the largest class: whole pages of metadata memory, counted apart. */
static void test_large(void **state)
{
    (void)state;
    struct kmm *mm = kmm_test_create(4096, 64 * MiB);
    const size_t sizes[] = { META_OBJ_MAX + 1, 4096, 10000, MiB + 3 };
    void *p[4];
    size_t bytes = 0, held = 0;
    for (size_t i = 0; i < 4; i++) {
        p[i] = kmm__meta_obj_alloc(mm, sizes[i]);
        assert_non_null(p[i]);
        assert_int_equal((uintptr_t)p[i] & 4095, 0);
        assert_true(kmm_virt_to_phys(mm, p[i]) == KMM_PHYS_NONE);
        assert_true(all_zero(p[i], sizes[i]));
        kmm_test_fill(p[i], sizes[i], (unsigned)i);
        bytes += sizes[i];
        held += (sizes[i] + 4095) & ~(size_t)4095;
    }
    struct kmm_meta_stats st = mstats(mm);
    assert_int_equal(st.large_objects, 4);
    assert_int_equal(st.large_bytes, bytes);
    assert_int_equal(st.large_held_bytes, held);
    assert_int_equal(st.objects, 0);
    for (size_t i = 0; i < 4; i++) {
        assert_true(kmm_test_filled(p[i], sizes[i], (unsigned)i));
        kmm__meta_obj_free(mm, p[i], sizes[i]);
    }
    st = mstats(mm);
    assert_int_equal(st.large_objects + st.large_bytes + st.large_held_bytes, 0);
    finish(mm);
}

/* Chunks are made as a class grows and given back as it empties, but for
 * META_KEEP_EMPTY of them, which kmm_drain gives back. */
static void test_chunks_come_and_go(void **state)
{
    (void)state;
    struct kmm *mm = kmm_test_create(4096, 64 * MiB);
    enum { N = 5000 };
    void **p = calloc(N, sizeof(*p));
    assert_non_null(p);
    for (size_t i = 0; i < N; i++) {
        p[i] = kmm__meta_obj_alloc(mm, 64);
        assert_non_null(p[i]);
    }
    struct kmm_meta_stats st = mstats(mm);
    size_t per_chunk = (META_CHUNK - 64) / 64;
    assert_int_equal(st.chunks, (N + per_chunk - 1) / per_chunk);
    assert_int_equal(kmm_check(mm), 0);
    /* every other one: no chunk empties */
    for (size_t i = 0; i < N; i += 2)
        kmm__meta_obj_free(mm, p[i], 64);
    assert_int_equal(mstats(mm).chunks, st.chunks);
    assert_int_equal(mstats(mm).objects, N / 2);
    assert_int_equal(kmm_check(mm), 0);
    for (size_t i = 1; i < N; i += 2)
        kmm__meta_obj_free(mm, p[i], 64);
    st = mstats(mm);
    assert_int_equal(st.chunks, META_KEEP_EMPTY);
    assert_int_equal(st.held_bytes, META_KEEP_EMPTY * META_CHUNK);
    assert_int_equal(st.objects, 0);
    assert_int_equal(kmm_check(mm), 0);
    /* the kept ones serve the next allocations: no new chunk */
    for (size_t i = 0; i < META_KEEP_EMPTY * per_chunk; i++) {
        p[i] = kmm__meta_obj_alloc(mm, 64);
        assert_non_null(p[i]);
    }
    assert_int_equal(mstats(mm).chunks, META_KEEP_EMPTY);
    for (size_t i = 0; i < META_KEEP_EMPTY * per_chunk; i++)
        kmm__meta_obj_free(mm, p[i], 64);
    kmm_drain(mm);
    assert_int_equal(mstats(mm).chunks, 0);
    free(p);
    finish(mm);
}

/* Every call is a KMM_FAULT_META site, small or large, with or without a
 * chunk to make: a failure returns NULL and changes nothing. */
static void test_fault_injection(void **state)
{
    (void)state;
    struct kmm *mm = kmm_test_create(4096, 64 * MiB);
    void *warm = kmm__meta_obj_alloc(mm, 100);   /* its chunk exists: the next call needs none */
    assert_non_null(warm);
    const size_t sizes[] = { 100, 16, 5000 };
    for (size_t i = 0; i < 3; i++) {
        struct kmm_meta_stats before = mstats(mm);
        kmm_fault_inject(mm, KMM_FAULT_META, 1, 1);
        assert_null(kmm__meta_obj_alloc(mm, sizes[i]));
        assert_int_equal(kmm_fault_injected(mm), 1);
        struct kmm_meta_stats after = mstats(mm);
        assert_memory_equal(&before, &after, sizeof(before));
        void *p = kmm__meta_obj_alloc(mm, sizes[i]);   /* the next call succeeds */
        assert_non_null(p);
        kmm__meta_obj_free(mm, p, sizes[i]);
        kmm_fault_inject(mm, 0, 0, 0);
    }
    kmm__meta_obj_free(mm, warm, 100);
    finish(mm);
}

/* kmm_check reads every chunk header: a count that disagrees with the
 * bitmap is reported (struct meta_chunk: inuse at byte 24). */
static void test_check_sees_broken_header(void **state)
{
    (void)state;
    struct kmm *mm = kmm_test_create(4096, 64 * MiB);
    void *p = kmm__meta_obj_alloc(mm, 200);
    assert_non_null(p);
    uint32_t *inuse = (uint32_t *)(((uintptr_t)p & ~(uintptr_t)(META_CHUNK - 1)) + 24);
    assert_int_equal(*inuse, 1);
    *inuse = 2;
    assert_int_equal(kmm_check(mm), -1);
    *inuse = 1;
    assert_int_equal(kmm_check(mm), 0);
    kmm__meta_obj_free(mm, p, 200);
    finish(mm);
}

/* ---- misuse aborts, naming the address ---------------------------------------------- */

static void double_free(void *arg)
{
    (void)arg;
    struct kmm *mm = kmm_test_create(4096, 64 * MiB);
    void *p = kmm__meta_obj_alloc(mm, 40);
    kmm__meta_obj_free(mm, p, 40);
    kmm__meta_obj_free(mm, p, 40);
}

static void wrong_size(void *arg)
{
    (void)arg;
    struct kmm *mm = kmm_test_create(4096, 64 * MiB);
    void *p = kmm__meta_obj_alloc(mm, 40);
    kmm__meta_obj_free(mm, p, 100);
}

static void interior_pointer(void *arg)
{
    (void)arg;
    struct kmm *mm = kmm_test_create(4096, 64 * MiB);
    char *p = kmm__meta_obj_alloc(mm, 64);
    kmm__meta_obj_free(mm, p + 16, 64);
}

static void test_misuse_aborts(void **state)
{
    (void)state;
    assert_int_equal(kmm_test_expect_abort(double_free, NULL, "double free of a metadata object: 0x"), 0);
    assert_int_equal(kmm_test_expect_abort(wrong_size, NULL, "not a metadata object of this size: 0x"), 0);
    assert_int_equal(kmm_test_expect_abort(interior_pointer, NULL, "not the start of a metadata object: 0x"), 0);
}

/* ---- threads ---------------------------------------------------------------------- */

enum { THREADS = 4, SLOTS = 64 };

struct worker {
    struct kmm *mm;
    unsigned id;
    uint64_t seed;
    unsigned long ops;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    void *p[SLOTS] = { 0 };
    size_t len[SLOTS] = { 0 };
    uint64_t r = w->seed;
    for (unsigned long op = 0; op < w->ops; op++) {
        size_t i = kmm_test_below(&r, SLOTS);
        unsigned tag = w->id << 16 | (unsigned)i;
        if (p[i]) {
            if (!kmm_test_filled(p[i], len[i], tag))
                kmm_test_fail("thread %u: metadata object %p of %zu bytes overwritten", w->id, p[i], len[i]);
            kmm__meta_obj_free(w->mm, p[i], len[i]);
            p[i] = NULL;
        } else {
            /* mostly small classes, now and then a large one */
            len[i] = kmm_test_below(&r, 8) ? 1 + kmm_test_below(&r, META_OBJ_MAX) : META_OBJ_MAX + 1 + kmm_test_below(&r, 9000);
            p[i] = kmm__meta_obj_alloc(w->mm, len[i]);
            if (!p[i] || !all_zero(p[i], len[i]))
                kmm_test_fail("thread %u: no zeroed object of %zu bytes", w->id, len[i]);
            kmm_test_fill(p[i], len[i], tag);
        }
    }
    for (size_t i = 0; i < SLOTS; i++)
        if (p[i])
            kmm__meta_obj_free(w->mm, p[i], len[i]);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct kmm *mm = kmm_test_create(4096, 64 * MiB);
    uint64_t seed = kmm_test_seed("test_meta threads");
    pthread_t t[THREADS];
    struct worker w[THREADS];
    for (unsigned i = 0; i < THREADS; i++) {
        w[i] = (struct worker){ .mm = mm, .id = i, .seed = seed + i * 0x9e3779b97f4a7c15ull + 1,
                                .ops = KMM_TEST_SANITIZER ? 20000 : 200000 };
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (unsigned i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    struct kmm_meta_stats st = mstats(mm);
    assert_int_equal(st.objects, 0);
    assert_int_equal(st.large_objects, 0);
    assert_true(st.chunks <= META_OBJ_CLASSES * META_KEEP_EMPTY);
    finish(mm);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classes),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_large),
        cmocka_unit_test(test_chunks_come_and_go),
        cmocka_unit_test(test_fault_injection),
        cmocka_unit_test(test_check_sees_broken_header),
        cmocka_unit_test(test_misuse_aborts),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
