/* Misuse of the small-object layer (include/kmm/slab.h) must be caught,
 * reported with the address and the reason, and abort: never silent
 * corruption. Each misuse runs in a child process (kmm_test_expect_abort).
 *
 * A child exits with a code instead of returning when something went wrong
 * before the misuse, so the parent's report tells the cases apart:
 *   3  a set-up allocation failed
 *   4  the allocator handed a corrupted object out again without noticing
 *   5  the misuse was not detected within the attempts made */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kmm_test.h"

#define PS 4096
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
#include <sanitizer/common_interface_defs.h>
#endif

/* The second pass of main runs every test again with KMM_SLAB_POISON: the
 * misuse the metadata catches is caught the same with canaries. */
static bool poison_pass;

static struct kmm *child_mm_with(unsigned slab_flags)
{
    struct kmm_config cfg = { .page_size = PS, .mem_size = MEM, .slab_flags = slab_flags };
    struct kmm *mm = kmm_create(&cfg);
    if (!mm)
        exit(3);
    return mm;
}

static struct kmm *child_mm(void)
{
    return child_mm_with(poison_pass ? KMM_SLAB_POISON : 0);
}

/* Writes after free are seen only with canaries. */
static struct kmm *child_mm_poison(void)
{
    return child_mm_with(KMM_SLAB_POISON);
}

static void *malloc_or_exit(struct kmm *mm, size_t size)
{
    void *p = kmm_malloc(mm, size, 0);
    if (!p)
        exit(3);   /* a set-up failure is an exit, not the abort the parent waits for */
    return p;
}

static struct kmm_cache *cache_or_exit(struct kmm *mm, const char *name, size_t size)
{
    struct kmm_cache *c = kmm_cache_create(mm, name, size, 0, NULL);
    if (!c)
        exit(3);
    return c;
}

static void *cache_alloc_or_exit(struct kmm_cache *c)
{
    void *p = kmm_cache_alloc(c, 0);
    if (!p)
        exit(3);
    return p;
}

/* A stray write the sanitizer does not see: memory corrupted by code kmm
 * cannot instrument (a device, an uninstrumented library). Under ASan, a
 * plain store into a freed object would be ASan's report, not kmm's. */
static NO_ASAN void stray_write(void *p, size_t len)
{
    volatile unsigned char *c = p;
    for (size_t i = 0; i < len; i++)
        c[i] = 0x41;
}

/* ---- double frees ----------------------------------------------------------- */

static void double_free_small(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *p = malloc_or_exit(mm, 64);
    kmm_free(mm, p);
    kmm_free(mm, p);
}

static void double_free_16(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *keep = malloc_or_exit(mm, 16);
    void *p = malloc_or_exit(mm, 16);
    (void)keep;
    kmm_free(mm, p);
    kmm_free(mm, p);
}

/* The first free's object went from the magazine back into its slab (the
 * slab stays, a neighbour is held) before the second free. */
static void double_free_small_after_drain(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *keep = malloc_or_exit(mm, 64);
    void *p = malloc_or_exit(mm, 64);
    (void)keep;
    kmm_free(mm, p);
    kmm_drain(mm);
    kmm_free(mm, p);
}

/* Objects freed after p push it down the magazine: the second free must not
 * rely on p being the last object freed. */
static void double_free_small_buried(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *p = malloc_or_exit(mm, 64);
    void *others[8];
    for (int i = 0; i < 8; i++)
        others[i] = malloc_or_exit(mm, 64);
    kmm_free(mm, p);
    for (int i = 0; i < 8; i++)
        kmm_free(mm, others[i]);
    kmm_free(mm, p);
}

/* Enough frees after p that the magazine overflows to the cache between the
 * two frees of p. */
static void double_free_small_after_flush(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    enum { N = 2000 };
    void **others = malloc(N * sizeof(*others));
    if (!others)
        exit(3);
    void *keep = malloc_or_exit(mm, 64);
    void *p = malloc_or_exit(mm, 64);
    (void)keep;
    for (int i = 0; i < N; i++)
        others[i] = malloc_or_exit(mm, 64);
    kmm_free(mm, p);
    for (int i = 0; i < N; i++)
        kmm_free(mm, others[i]);
    kmm_free(mm, p);
}

/* Above the largest size class: page-backed. */
static void double_free_large(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *keep = malloc_or_exit(mm, kmm_malloc_max_slab_size(mm) + 1);
    void *p = malloc_or_exit(mm, kmm_malloc_max_slab_size(mm) + 1);
    (void)keep;
    kmm_free(mm, p);
    kmm_free(mm, p);
}

static void double_free_large_20k(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *p = malloc_or_exit(mm, 20 * 1024);
    kmm_free(mm, p);
    kmm_drain(mm);
    kmm_free(mm, p);
}

static void double_free_cache(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    struct kmm_cache *c = cache_or_exit(mm, "abuse", 48);
    void *keep = cache_alloc_or_exit(c);
    void *p = cache_alloc_or_exit(c);
    (void)keep;
    kmm_cache_free(c, p);
    kmm_cache_free(c, p);
}

/* The magazine overflows after the first free and its older half, p
 * among it, goes to the cache's depot: the second free must find p there. */
static void double_free_cache_in_depot(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    struct kmm_cache *c = cache_or_exit(mm, "abuse", 64);
    enum { N = 300 };   /* more than a magazine (128 slots of 64 bytes) */
    void *others[N];
    void *p = cache_alloc_or_exit(c);
    for (int i = 0; i < N; i++)
        others[i] = cache_alloc_or_exit(c);
    kmm_cache_free(c, p);
    for (int i = 0; i < N; i++)
        kmm_cache_free(c, others[i]);
    struct kmm_cache_stats st;
    kmm_cache_stats(c, &st);
    if (st.depot_objects == 0)
        exit(4);   /* the set-up did not reach the depot: not the case this test is about */
    kmm_cache_free(c, p);
}

static void double_free_cache_after_drain(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    struct kmm_cache *c = cache_or_exit(mm, "abuse", 48);
    void *keep = cache_alloc_or_exit(c);
    void *p = cache_alloc_or_exit(c);
    (void)keep;
    kmm_cache_free(c, p);
    kmm_drain(mm);
    kmm_cache_free(c, p);
}

static int ctor_calls;
static void ctor_fill(void *obj)
{
    memset(obj, 0x5a, 40);
    ctor_calls++;
}

/* With a constructor the canary sits after the object, and the object
 * comes back in its constructed state: still a double free. */
static void double_free_ctor_cache(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    struct kmm_cache *c = kmm_cache_create(mm, "abuse-ctor", 40, 0, ctor_fill);
    if (!c)
        exit(3);
    void *keep = cache_alloc_or_exit(c);
    void *p = cache_alloc_or_exit(c);
    (void)keep;
    kmm_cache_free(c, p);
    kmm_cache_free(c, p);
}

struct thread_arg {
    struct kmm *mm;
    void *p;
    sem_t freed, hold;
};

static void *free_and_exit(void *v)
{
    struct thread_arg *t = v;
    kmm_free(t->mm, t->p);
    return NULL;
}

/* The first free happened in another thread, which has exited since (its
 * magazines went back to the cache). */
static void double_free_other_thread_exited(void *arg)
{
    (void)arg;
    struct thread_arg t = { .mm = child_mm() };
    void *keep = malloc_or_exit(t.mm, 64);
    (void)keep;
    t.p = malloc_or_exit(t.mm, 64);
    pthread_t th;
    if (pthread_create(&th, NULL, free_and_exit, &t) != 0)
        exit(3);
    pthread_join(th, NULL);
    kmm_free(t.mm, t.p);
}

static void *free_and_hold(void *v)
{
    struct thread_arg *t = v;
    kmm_free(t->mm, t->p);
    sem_post(&t->freed);
    while (sem_wait(&t->hold) != 0)   /* never posted: the process ends first */
        ;
    return NULL;
}

/* The first free happened in another thread that is still alive: the object
 * sits in that thread's magazine when the second free comes. */
static void double_free_other_thread_live(void *arg)
{
    (void)arg;
    struct thread_arg t = { .mm = child_mm() };
    if (sem_init(&t.freed, 0, 0) != 0 || sem_init(&t.hold, 0, 0) != 0)
        exit(3);
    void *keep = malloc_or_exit(t.mm, 64);
    (void)keep;
    t.p = malloc_or_exit(t.mm, 64);
    pthread_t th;
    if (pthread_create(&th, NULL, free_and_hold, &t) != 0)
        exit(3);
    while (sem_wait(&t.freed) != 0)
        ;
    kmm_free(t.mm, t.p);
}

/* The second free is the other thread's. */
static void double_free_second_in_other_thread(void *arg)
{
    (void)arg;
    struct thread_arg t = { .mm = child_mm() };
    void *keep = malloc_or_exit(t.mm, 64);
    (void)keep;
    t.p = malloc_or_exit(t.mm, 64);
    kmm_free(t.mm, t.p);
    pthread_t th;
    if (pthread_create(&th, NULL, free_and_exit, &t) != 0)
        exit(3);
    pthread_join(th, NULL);
}

/* ---- pointers into objects ----------------------------------------------------- */

static void free_middle_64(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    char *p = malloc_or_exit(mm, 64);
    kmm_free(mm, p + 16);
}

static void free_middle_16(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    char *p = malloc_or_exit(mm, 16);
    kmm_free(mm, p + 8);
}

/* Into the second object of a slab: one byte before it is the middle of the
 * first object; one byte after its start is its middle. */
static void free_middle_last_byte(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    char *p = malloc_or_exit(mm, 64);
    kmm_free(mm, p + kmm_usable_size(mm, p) - 1);
}

static void cache_free_middle(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    struct kmm_cache *c = cache_or_exit(mm, "abuse", 48);
    char *p = cache_alloc_or_exit(c);
    kmm_cache_free(c, p + 8);
}

/* Past 1 MiB into a slab of 1 MiB pages (its 8th object of 400000 bytes):
 * the slot test holds at every offset of the largest slabs. */
static void cache_free_middle_large_pages(void *arg)
{
    (void)arg;
    struct kmm_config cfg = { .page_size = 1 << 20, .mem_size = 64 << 20,
                              .slab_flags = poison_pass ? KMM_SLAB_POISON : 0 };
    struct kmm *mm = kmm_create(&cfg);
    if (!mm)
        exit(3);
    struct kmm_cache *c = cache_or_exit(mm, "abuse-1m", 400000);
    char *p = NULL;
    for (int i = 0; i < 8; i++)
        p = cache_alloc_or_exit(c);
    kmm_cache_free(c, p);   /* a start: fine */
    p = cache_alloc_or_exit(c);
    kmm_cache_free(c, p + 8);
}

/* Inside a page-backed kmm_malloc: the reason is not promised, only the
 * report with the address. */
static void free_inside_large(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    char *p = malloc_or_exit(mm, 3 * PS + kmm_malloc_max_slab_size(mm));
    kmm_free(mm, p + PS);
}

/* ---- pointers kmm never gave out ------------------------------------------------- */

static void free_stack(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    long local[4] = { 0 };
    kmm_free(mm, local);
}

static void free_libc_malloc(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *p = malloc(64);
    if (!p)
        exit(3);
    kmm_free(mm, p);
}

static void free_other_mm(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm(), *other = child_mm();
    void *p = malloc_or_exit(other, 64);
    kmm_free(mm, p);
}

/* A block of the page allocator is kmm memory, but not kmm_malloc memory:
 * "anything else ... is reported and aborts". */
static void free_page_block(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *p = kmm_alloc_pages(mm, 0, 0);
    if (!p)
        exit(3);
    kmm_free(mm, p);
}

/* A stale pointer into a destroyed cache: the slab of the live objects is
 * kept, so freeing one must be reported, never give the slab's pages back.
 * The object at the start of its slab is page aligned, the case that looks
 * like a page-backed kmm_malloc block. */
static void free_after_destroy_slab_start(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    struct kmm_cache *c = cache_or_exit(mm, "abuse-leak", 64);
    void *start = NULL;
    for (int i = 0; i < 1000 && !start; i++) {
        void *p = cache_alloc_or_exit(c);
        if ((uintptr_t)p % PS == 0)
            start = p;
    }
    if (!start)
        exit(3);
    kmm_cache_destroy(c);
    kmm_free(mm, start);
}

static void free_after_destroy_inside(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    struct kmm_cache *c = cache_or_exit(mm, "abuse-leak", 64);
    void *p = NULL;
    for (int i = 0; i < 1000 && !p; i++) {
        void *q = cache_alloc_or_exit(c);
        if ((uintptr_t)q % PS != 0)
            p = q;
    }
    if (!p)
        exit(3);
    kmm_cache_destroy(c);
    kmm_free(mm, p);
}

/* A double free whose first free emptied the slab, which went back to the
 * page allocator: only "reported and aborts" can be asked for, the slab
 * being gone. */
static void double_free_slab_gone(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *p = malloc_or_exit(mm, 64);
    kmm_free(mm, p);
    kmm_drain(mm);
    kmm_free(mm, p);
}

/* kmm_realloc takes kmm_malloc memory only. */
static void realloc_cache_object(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    struct kmm_cache *c = cache_or_exit(mm, "abuse", 48);
    void *p = cache_alloc_or_exit(c);
    (void)kmm_realloc(mm, p, 100, 0);
}

static void realloc_freed(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *keep = malloc_or_exit(mm, 64);
    (void)keep;
    void *p = malloc_or_exit(mm, 64);
    kmm_free(mm, p);
    (void)kmm_realloc(mm, p, 100, 0);
}

static void realloc_middle(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    char *p = malloc_or_exit(mm, 64);
    (void)kmm_realloc(mm, p + 16, 100, 0);
}

/* The program wrote over the freed object (canary included) and then freed
 * it again: the double free is still seen at the second free, since the
 * check reads the slot's held byte in the slab's metadata, not the object. */
static void double_free_after_write_after_free(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *keep = malloc_or_exit(mm, 64);
    (void)keep;
    void *p = malloc_or_exit(mm, 64);
    kmm_free(mm, p);
    stray_write(p, 16);
    kmm_free(mm, p);
}

/* The same for a cache object that went back into its slab in between
 * (a neighbour keeps the slab). */
static void double_free_after_write_after_free_cache(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    struct kmm_cache *c = cache_or_exit(mm, "abuse", 48);
    void *keep = cache_alloc_or_exit(c);
    (void)keep;
    void *p = cache_alloc_or_exit(c);
    kmm_cache_free(c, p);
    kmm_drain(mm);
    stray_write(p, 16);
    kmm_cache_free(c, p);
}

/* ---- write after free ---------------------------------------------------------- */

/* The next kmm_malloc of the size in the same thread takes the object back
 * from the thread's magazine (last in, first out) and finds the canary gone.
 * A loop, in case the magazine is not strictly LIFO. */
static void write_after_free(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm_poison();
    void *keep = malloc_or_exit(mm, 64);
    (void)keep;
    void *p = malloc_or_exit(mm, 64);
    kmm_free(mm, p);
    stray_write(p, 16);   /* the first two words: the canary is in one of them */
    for (int i = 0; i < 10000; i++)
        if (malloc_or_exit(mm, 64) == p)
            exit(4);
    exit(5);
}

/* The same, the object having gone back into its slab first. */
static void write_after_free_in_slab(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm_poison();
    void *keep = malloc_or_exit(mm, 64);
    (void)keep;
    void *p = malloc_or_exit(mm, 64);
    kmm_free(mm, p);
    kmm_drain(mm);
    stray_write(p, 16);   /* the first two words: the canary is in one of them */
    for (int i = 0; i < 10000; i++)
        if (malloc_or_exit(mm, 64) == p)
            exit(4);
    exit(5);
}

static void write_after_free_cache(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm_poison();
    struct kmm_cache *c = cache_or_exit(mm, "abuse", 48);
    void *keep = cache_alloc_or_exit(c);
    (void)keep;
    void *p = cache_alloc_or_exit(c);
    kmm_cache_free(c, p);
    stray_write(p, 16);   /* the first two words: the canary is in one of them */
    for (int i = 0; i < 10000; i++)
        if (cache_alloc_or_exit(c) == p)
            exit(4);
    exit(5);
}

/* ---- objects of another cache ---------------------------------------------------- */

static void cache_free_wrong_cache(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    struct kmm_cache *c1 = cache_or_exit(mm, "abuse-one", 48);
    struct kmm_cache *c2 = cache_or_exit(mm, "abuse-two", 200);
    void *p = cache_alloc_or_exit(c1);
    kmm_cache_free(c2, p);
}

/* A kmm_malloc object is an object of a kmalloc cache, not of c. */
static void cache_free_kmalloc_object(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    struct kmm_cache *c = cache_or_exit(mm, "abuse", 48);
    void *p = malloc_or_exit(mm, 300);
    kmm_cache_free(c, p);
}

/* ---- kmm_usable_size of memory not live ------------------------------------------ */

static void usable_size_freed(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *keep = malloc_or_exit(mm, 64);
    (void)keep;
    void *p = malloc_or_exit(mm, 64);
    kmm_free(mm, p);
    kmm_drain(mm);
    (void)kmm_usable_size(mm, p);
}

static void usable_size_freed_in_magazine(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *keep = malloc_or_exit(mm, 64);
    (void)keep;
    void *p = malloc_or_exit(mm, 64);
    kmm_free(mm, p);
    (void)kmm_usable_size(mm, p);
}

static void usable_size_freed_large(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    void *p = malloc_or_exit(mm, 20 * 1024);
    kmm_free(mm, p);
    (void)kmm_usable_size(mm, p);
}

static void usable_size_stack(void *arg)
{
    (void)arg;
    struct kmm *mm = child_mm();
    long local[4] = { 0 };
    (void)kmm_usable_size(mm, local);
}

struct abuse {
    void (*fn)(void *arg);
    const char *why;
};

/* ---- ASan knows the allocator ------------------------------------------------------
 * A use after free of kmm memory is reported by ASan as in libc memory
 * (DESIGN.md section 4). ASan exits rather than aborts: its death callback
 * turns the exit into the abort the parent waits for. Skipped without ASan. */

#if HAVE_ASAN
static void die_by_abort(void)
{
    abort();
}
#endif

static NO_ASAN void asan_die_by_abort(void)
{
#if HAVE_ASAN
    __sanitizer_set_death_callback(die_by_abort);
#endif
}

static unsigned char read_byte(const void *p, size_t off)
{
    return ((const volatile unsigned char *)p)[off];
}

static void asan_read_freed_small(void *arg)
{
    (void)arg;
    asan_die_by_abort();
    struct kmm *mm = child_mm();
    void *keep = malloc_or_exit(mm, 64);
    (void)keep;
    unsigned char *p = malloc_or_exit(mm, 64);
    kmm_free(mm, p);
    exit(read_byte(p, 32) == 0x55 ? 5 : 6);   /* ASan stops the read */
}

static void asan_read_freed_cache(void *arg)
{
    (void)arg;
    asan_die_by_abort();
    struct kmm *mm = child_mm();
    struct kmm_cache *c = kmm_cache_create(mm, "abuse-ctor", 40, 0, ctor_fill);
    if (!c)
        exit(3);
    void *keep = cache_alloc_or_exit(c);
    (void)keep;
    unsigned char *p = cache_alloc_or_exit(c);
    kmm_cache_free(c, p);
    exit(read_byte(p, 20) == 0x55 ? 5 : 6);
}

static void asan_read_freed_large(void *arg)
{
    (void)arg;
    asan_die_by_abort();
    struct kmm *mm = child_mm();
    void *keep = malloc_or_exit(mm, 20 * 1024);
    (void)keep;
    unsigned char *p = malloc_or_exit(mm, 20 * 1024);
    kmm_free(mm, p);
    exit(read_byte(p, 8192) == 0x55 ? 5 : 6);
}

static void asan_expect(void **state)
{
    if (!HAVE_ASAN)
        skip();
    const struct abuse *a = *state;
    assert_int_equal(kmm_test_expect_abort(a->fn, NULL, a->why), 0);
}

#define ASAN_ABUSE(fn, why) \
    { #fn, asan_expect, NULL, NULL, &(struct abuse){ fn, why } }

/* ---- the tests ------------------------------------------------------------------ */

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
        ABUSE(double_free_small, "double free"),
        ABUSE(double_free_16, "double free"),
        ABUSE(double_free_small_after_drain, "double free"),
        ABUSE(double_free_small_buried, "double free"),
        ABUSE(double_free_small_after_flush, "double free"),
        ABUSE(double_free_large, "double free"),
        ABUSE(double_free_large_20k, "double free"),
        ABUSE(double_free_cache, "double free"),
        ABUSE(double_free_cache_in_depot, "double free"),
        ABUSE(double_free_cache_after_drain, "double free"),
        ABUSE(double_free_ctor_cache, "double free"),
        ABUSE(double_free_other_thread_exited, "double free"),
        ABUSE(double_free_other_thread_live, "double free"),
        ABUSE(double_free_second_in_other_thread, "double free"),
        ABUSE(double_free_after_write_after_free, "double free"),
        ABUSE(double_free_after_write_after_free_cache, "double free"),
        ABUSE(free_middle_64, "middle of an object"),
        ABUSE(free_middle_16, "middle of an object"),
        ABUSE(free_middle_last_byte, "middle of an object"),
        ABUSE(cache_free_middle, "middle of an object"),
        ABUSE(cache_free_middle_large_pages, "middle of an object"),
        ABUSE(free_inside_large, "kmm_free"),
        ABUSE(free_stack, "not from kmm"),
        ABUSE(free_libc_malloc, "not from kmm"),
        ABUSE(free_other_mm, "not from kmm"),
        ABUSE(free_page_block, "kmm_free"),
        ABUSE(free_after_destroy_slab_start, "kmm_free"),
        ABUSE(free_after_destroy_inside, "kmm_free"),
        ABUSE(double_free_slab_gone, "kmm_free"),
        ABUSE(realloc_cache_object, "kmm_realloc"),
        ABUSE(realloc_freed, "kmm_realloc"),
        ABUSE(realloc_middle, "middle of an object"),
        ABUSE(write_after_free, "write after free"),
        ABUSE(write_after_free_in_slab, "write after free"),
        ABUSE(write_after_free_cache, "write after free"),
        ABUSE(cache_free_wrong_cache, "another cache"),
        ABUSE(cache_free_kmalloc_object, "another cache"),
        ABUSE(usable_size_freed, "kmm_usable_size"),
        ABUSE(usable_size_freed_in_magazine, "kmm_usable_size"),
        ABUSE(usable_size_freed_large, "kmm_usable_size"),
        ABUSE(usable_size_stack, "kmm_usable_size"),
        ASAN_ABUSE(asan_read_freed_small, "AddressSanitizer"),
        ASAN_ABUSE(asan_read_freed_cache, "AddressSanitizer"),
        ASAN_ABUSE(asan_read_freed_large, "AddressSanitizer"),
    };
    int failed = cmocka_run_group_tests_name("slab abuse", tests, NULL, NULL);
    poison_pass = true;
    return failed + cmocka_run_group_tests_name("slab abuse, KMM_SLAB_POISON", tests, NULL, NULL);
}
