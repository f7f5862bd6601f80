/* Executable memory for JITs (include/kmm/execmem.h):
 *  - x86-64 machine code written with kmm_execmem_write runs and returns
 *    what it should (mov eax, imm; lea eax, [rdi+rsi]; a loop summing
 *    1..n), also 1000 functions from one kmm_execmem_write_batch; other
 *    architectures skip the calls, saying so; kmm_execmem_free_batch frees
 *    500 of them with one platform write;
 *  - fresh and freed space reads as the trap pattern through the r-x
 *    mapping; writes outside one live allocation (before, after, spanning
 *    two, into freed space) and batches with one bad piece return
 *    -KMM_EINVAL and change nothing;
 *  - W^X: no mapping of the process is ever both writable and executable
 *    during a randomized run (/proc/self/maps after every step);
 *  - a fork child calls the parent's code and allocates its own;
 *  - sizes 1 byte .. 3 MiB, all within one region; sizes the region cannot
 *    place refused with ENOMEM; memory held per byte of code under 1.25 for
 *    10,000 pieces of 64..512 bytes; kmm_check after each step; 4 and
 *    16 KiB pages (and 64 KiB for the JIT, the sizes and the packing).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kmm_test.h"

#define MEM (256ull << 20)

#if defined(__x86_64__)
#define TRAP_BYTE 0xcc
#define HAVE_X86 1
#else
#define HAVE_X86 0
#endif

static bool all_trap(const unsigned char *p, size_t len)
{
#if defined(__x86_64__) || defined(__i386__)
    for (size_t i = 0; i < len; i++)
        if (p[i] != 0xcc) {
            fprintf(stderr, "byte %zu at %p is %#x, not the trap 0xcc\n", i, (void *)(p + i), p[i]);
            return false;
        }
#else
    (void)p, (void)len;
#endif
    return true;
}

/* mov eax, imm32; ret */
static size_t code_const(unsigned char *b, uint32_t v)
{
    b[0] = 0xb8;
    memcpy(b + 1, &v, 4);
    b[5] = 0xc3;
    return 6;
}
/* lea eax, [rdi + rsi]; ret */
static size_t code_add(unsigned char *b)
{
    static const unsigned char c[] = { 0x8d, 0x04, 0x37, 0xc3 };
    memcpy(b, c, sizeof c);
    return sizeof c;
}
/* xor eax, eax; test edi, edi; jz done; loop: add eax, edi; dec edi; jnz loop; done: ret */
static size_t code_sum(unsigned char *b)
{
    static const unsigned char c[] = { 0x31, 0xc0, 0x85, 0xff, 0x74, 0x06, 0x01, 0xf8, 0xff, 0xcf, 0x75, 0xfa, 0xc3 };
    memcpy(b, c, sizeof c);
    return sizeof c;
}

typedef int (*fn0)(void);
typedef int (*fn2)(int, int);
typedef int (*fn1)(int);

static void check_ok(struct kmm *mm)
{
    assert_int_equal(kmm_check(mm), 0);
}

static void test_jit(void **state)
{
    struct kmm *mm = kmm_test_create(kmm_test_param_ps(state), MEM);
    unsigned char buf[64];
    void *f_const = kmm_execmem_alloc(mm, 6), *f_add = kmm_execmem_alloc(mm, 4), *f_sum = kmm_execmem_alloc(mm, 13);
    assert_non_null(f_const);
    assert_non_null(f_add);
    assert_non_null(f_sum);
    assert_true(((uintptr_t)f_const | (uintptr_t)f_add | (uintptr_t)f_sum) % KMM_EXECMEM_ALIGN == 0);
    assert_true(all_trap(f_const, 16));   /* fresh space traps */
    assert_int_equal(kmm_execmem_usable_size(mm, f_sum), 16);
    assert_int_equal(kmm_execmem_write(mm, f_const, buf, code_const(buf, 4242)), 0);
    assert_int_equal(kmm_execmem_write(mm, f_add, buf, code_add(buf)), 0);
    assert_int_equal(kmm_execmem_write(mm, f_sum, buf, code_sum(buf)), 0);
    assert_memory_equal(f_sum, buf, 13);
    check_ok(mm);
    if (HAVE_X86) {
        assert_int_equal(((fn0)f_const)(), 4242);
        assert_int_equal(((fn2)f_add)(40, 2), 42);
        assert_int_equal(((fn1)f_sum)(100), 5050);
        assert_int_equal(((fn1)f_sum)(0), 0);
    } else {
        fprintf(stderr, "test_jit: not x86-64: the code is written and read back, not run\n");
    }
    /* rewrite in place: the new code runs */
    assert_int_equal(kmm_execmem_write(mm, f_const, buf, code_const(buf, 7)), 0);
    if (HAVE_X86)
        assert_int_equal(((fn0)f_const)(), 7);
    unsigned char *freed = f_sum;
    kmm_execmem_free(mm, f_sum);
    assert_true(all_trap(freed, 16));
    kmm_execmem_free(mm, f_add);
    kmm_execmem_free(mm, f_const);
    struct kmm_execmem_stats st;
    kmm_execmem_stats(mm, &st);
    assert_int_equal(st.allocations, 0);
    assert_int_equal(st.chunks, 0);
    assert_int_equal(st.pages, 0);
    assert_int_equal(st.writes, 4);
    check_ok(mm);
    kmm_destroy(mm);
}

static void test_batch(void **state)
{
    struct kmm *mm = kmm_test_create(kmm_test_param_ps(state), MEM);
    enum { N = 1000 };
    static void *fns[N];
    static unsigned char code[N][8];
    static struct kmm_execmem_piece pieces[N];
    for (size_t i = 0; i < N; i++) {
        fns[i] = kmm_execmem_alloc(mm, 6 + i % 40);
        assert_non_null(fns[i]);
        code_const(code[i], (uint32_t)(i * 7 + 1));
        /* reverse order: the batch sorts */
        pieces[N - 1 - i] = (struct kmm_execmem_piece){ fns[i], code[i], 6 };
    }
    struct kmm_execmem_stats before, after;
    kmm_execmem_stats(mm, &before);
    assert_int_equal(kmm_execmem_write_batch(mm, pieces, N), 0);
    kmm_execmem_stats(mm, &after);
    assert_int_equal(after.writes - before.writes, N);
    assert_int_equal(after.write_calls - before.write_calls, 1);
    for (size_t i = 0; i < N; i++) {
        assert_memory_equal(fns[i], code[i], 6);
        if (HAVE_X86)
            assert_int_equal(((fn0)fns[i])(), (int)(i * 7 + 1));
    }
    check_ok(mm);
    /* every other one by kmm_execmem_free_batch (one platform write), then
     * one at a time; a keeper holds the chunk so that the freed space stays
     * mapped and can be read */
    void *keep = kmm_execmem_alloc(mm, 16);
    static void *odd[N / 2];
    static size_t len[N];
    for (size_t i = 0; i < N; i++)
        len[i] = kmm_execmem_usable_size(mm, fns[i]);
    for (size_t i = 0; i < N / 2; i++)
        odd[i] = fns[2 * i + 1];
    odd[7] = NULL;   /* skipped */
    kmm_execmem_stats(mm, &before);
    kmm_execmem_free_batch(mm, odd, N / 2);
    kmm_execmem_stats(mm, &after);
    assert_int_equal(after.write_calls - before.write_calls, 1);
    assert_int_equal(after.frees - before.frees, N / 2 - 1);
    for (size_t i = 1; i < N; i += 2)
        if (i != 15)
            assert_true(all_trap(fns[i], len[i]));
    assert_memory_equal(fns[15], code[15], 6);
    check_ok(mm);
    for (size_t i = 0; i < N; i++) {
        if (i % 2 && i != 15)
            continue;
        kmm_execmem_free(mm, fns[i]);
        assert_true(all_trap(fns[i], len[i]));
    }
    kmm_execmem_free(mm, keep);
    kmm_execmem_stats(mm, &after);
    assert_int_equal(after.chunks, 0);
    check_ok(mm);
    kmm_destroy(mm);
}

static void test_refused_writes(void **state)
{
    struct kmm *mm = kmm_test_create(kmm_test_param_ps(state), MEM);
    unsigned char *a = kmm_execmem_alloc(mm, 32), *b = kmm_execmem_alloc(mm, 32), *c = kmm_execmem_alloc(mm, 48);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_ptr_equal(b, a + 32);   /* adjacent: a write spanning both must be refused */
    unsigned char ones[96];
    memset(ones, 0x90, sizeof ones);
    assert_int_equal(kmm_execmem_write(mm, a, ones, 32), 0);
    unsigned char snap[128];
    memcpy(snap, a, sizeof snap);
    struct kmm_test_capture cap;
    kmm_test_capture_begin(&cap);
    assert_int_equal(kmm_execmem_write(mm, a - 16, ones, 16), -KMM_EINVAL);   /* before */
    assert_int_equal(kmm_execmem_write(mm, a + 16, ones, 17), -KMM_EINVAL);   /* past a's end */
    assert_int_equal(kmm_execmem_write(mm, a, ones, 64), -KMM_EINVAL);        /* a and b */
    assert_int_equal(kmm_execmem_write(mm, c + 48, ones, 1), -KMM_EINVAL);    /* after the last */
    kmm_execmem_free(mm, b);
    memcpy(snap, a, sizeof snap);
    assert_int_equal(kmm_execmem_write(mm, b, ones, 8), -KMM_EINVAL);         /* freed */
    assert_int_equal(kmm_execmem_write(mm, ones, ones, 8), -KMM_EINVAL);      /* not execmem */
    struct kmm_execmem_piece batch[3] = { { a, ones, 8 }, { c, ones, 8 }, { b, ones, 8 } };
    assert_int_equal(kmm_execmem_write_batch(mm, batch, 3), -KMM_EINVAL);
    char *out = kmm_test_capture_end(&cap);
    assert_non_null(strstr(out, "kmm_execmem_write: not inside a live allocation"));
    assert_non_null(strstr(out, "past the end of its allocation"));
    assert_non_null(strstr(out, "kmm_execmem_write_batch: piece 2"));
    free(out);
    assert_memory_equal(a, snap, sizeof snap);   /* nothing changed, the freed space still traps */
    assert_true(all_trap(b, 32));
    assert_true(all_trap(c, 48));
    check_ok(mm);
    kmm_execmem_free(mm, a);
    kmm_execmem_free(mm, c);
    check_ok(mm);
    kmm_destroy(mm);
}

/* Any mapping of the process both writable and executable? */
static bool wx_mapping(char *line, size_t cap)
{
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    bool found = false;
    while (!found && fgets(line, (int)cap, f)) {
        char perms[8];
        if (sscanf(line, "%*x-%*x %7s", perms) == 1 && perms[1] == 'w' && perms[2] == 'x')
            found = true;
    }
    fclose(f);
    return found;
}

static void test_wx_random(void **state)
{
    struct kmm *mm = kmm_test_create(kmm_test_param_ps(state), MEM);
    uint64_t rng = kmm_test_seed("test_execmem wx");
    enum { SLOTS = 64 };
    void *live[SLOTS] = { 0 };
    unsigned char code[4096];
    char line[512];
    for (size_t i = 0; i < sizeof code; i++)
        code[i] = (unsigned char)(0x90 + i % 3);
    for (int step = 0; step < 400; step++) {
        size_t k = kmm_test_below(&rng, SLOTS);
        unsigned op = (unsigned)kmm_test_below(&rng, 4);
        if (op == 0 && !live[k]) {
            size_t size = kmm_test_below(&rng, 8) == 0 ? 1 + kmm_test_below(&rng, 300000) : 1 + kmm_test_below(&rng, 600);
            live[k] = kmm_execmem_alloc(mm, size);
            assert_non_null(live[k]);
        } else if (op == 1 && live[k]) {
            size_t len = kmm_execmem_usable_size(mm, live[k]);
            assert_int_equal(kmm_execmem_write(mm, live[k], code, len < sizeof code ? len : sizeof code), 0);
        } else if (op == 2 && live[k]) {
            kmm_execmem_free(mm, live[k]);
            live[k] = NULL;
        } else if (op == 3) {
            struct kmm_execmem_piece pc[SLOTS];
            size_t n = 0;
            for (size_t j = 0; j < SLOTS; j++)
                if (live[j])
                    pc[n++] = (struct kmm_execmem_piece){ live[j], code, 16 };
            assert_int_equal(kmm_execmem_write_batch(mm, pc, n), 0);
        }
        if (wx_mapping(line, sizeof line))
            fail_msg("step %d: a mapping is writable and executable: %s", step, line);
    }
    check_ok(mm);
    for (size_t j = 0; j < SLOTS; j++)
        kmm_execmem_free(mm, live[j]);
    check_ok(mm);
    kmm_destroy(mm);
}

struct fork_arg {
    struct kmm *mm;
    void *f;
};

static void fork_child_body(void *arg)
{
    struct fork_arg *a = arg;
    unsigned char buf[16];
    if (HAVE_X86 && ((fn0)a->f)() != 99)
        exit(2);
    void *g = kmm_execmem_alloc(a->mm, 6);
    if (!g || kmm_execmem_write(a->mm, g, buf, code_const(buf, 123)) != 0)
        exit(3);
    if (HAVE_X86 && ((fn0)g)() != 123)
        exit(4);
    kmm_execmem_free(a->mm, a->f);
    if (kmm_check(a->mm) != 0)
        exit(5);
    exit(0);
}

static void test_fork(void **state)
{
    struct kmm *mm = kmm_test_create(kmm_test_param_ps(state), MEM);
    unsigned char buf[16];
    void *f = kmm_execmem_alloc(mm, 6);
    assert_non_null(f);
    assert_int_equal(kmm_execmem_write(mm, f, buf, code_const(buf, 99)), 0);
    struct fork_arg a = { mm, f };
    char out[1024];
    int status = kmm_test_run_child(fork_child_body, &a, out, sizeof out);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        kmm_test_describe_child(status, out);
        fail();
    }
    if (HAVE_X86)
        assert_int_equal(((fn0)f)(), 99);   /* the parent's copy is untouched */
    check_ok(mm);
    kmm_execmem_free(mm, f);
    kmm_destroy(mm);
}

static void test_sizes(void **state)
{
    struct kmm *mm = kmm_test_create(kmm_test_param_ps(state), MEM);
    static const size_t sizes[] = { 1, 15, 16, 17, 4095, 4096, 65536, 65537, 1 << 20, (2u << 20) - 1, 2u << 20,
                                    (2u << 20) + 1, 3u << 20 };
    void *p[sizeof sizes / sizeof sizes[0]];
    unsigned char *src = malloc(3u << 20);
    assert_non_null(src);
    kmm_test_fill(src, 3u << 20, 5);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        p[i] = kmm_execmem_alloc(mm, sizes[i]);
        assert_non_null(p[i]);
        size_t usable = kmm_execmem_usable_size(mm, p[i]);
        assert_int_equal(usable, (sizes[i] + 15) & ~(size_t)15);
        assert_true(all_trap(p[i], usable));
        assert_int_equal(kmm_execmem_write(mm, p[i], src, sizes[i]), 0);
        assert_memory_equal(p[i], src, sizes[i]);
        check_ok(mm);
    }
    struct kmm_execmem_stats st;
    kmm_execmem_stats(mm, &st);
    assert_int_equal(st.allocations, sizeof sizes / sizeof sizes[0]);
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        total += sizes[i];
    assert_int_equal(st.bytes, total);
    /* all within 1 GiB of one another: rel32 reaches */
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        lo = (uintptr_t)p[i] < lo ? (uintptr_t)p[i] : lo;
        hi = (uintptr_t)p[i] > hi ? (uintptr_t)p[i] : hi;
    }
    assert_true(hi - lo < KMM_EXECMEM_REGION_BYTES);
    struct kmm_test_capture cap;
    kmm_test_capture_begin(&cap);
    assert_null(kmm_execmem_alloc(mm, 0));
    assert_int_equal(errno, EINVAL);
    char *out = kmm_test_capture_end(&cap);
    assert_non_null(strstr(out, "kmm_execmem_alloc: size 0"));
    free(out);
    /* more than the region can place (slots with a guard on each side): ENOMEM, nothing changed */
    errno = 0;
    assert_null(kmm_execmem_alloc(mm, KMM_EXECMEM_REGION_BYTES - (2u << 20)));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(kmm_execmem_alloc(mm, SIZE_MAX));
    assert_int_equal(errno, ENOMEM);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        kmm_execmem_free(mm, p[i]);
    kmm_execmem_stats(mm, &st);
    assert_int_equal(st.pages, 0);
    check_ok(mm);
    free(src);
    kmm_destroy(mm);
}

static void test_memory_per_byte(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = kmm_test_create(ps, MEM);
    enum { N = 10000 };
    static void *p[N];
    uint64_t rng = 12345;
    for (size_t i = 0; i < N; i++) {
        p[i] = kmm_execmem_alloc(mm, 64 + kmm_test_below(&rng, 449));
        assert_non_null(p[i]);
    }
    struct kmm_execmem_stats st;
    kmm_execmem_stats(mm, &st);
    double held = (double)st.pages * (double)ps / (double)st.bytes;
    fprintf(stderr, "memory per byte of code: %.3f (%zu pages of %zu, %zu bytes in %zu chunks; meta %zu)\n", held,
            st.pages, ps, st.bytes, st.chunks, st.meta_bytes);
    assert_true(held < 1.25);
    check_ok(mm);
    for (size_t i = 0; i < N; i += 2)   /* free half, refill: the holes are reused */
        kmm_execmem_free(mm, p[i]);
    for (size_t i = 0; i < N; i += 2) {
        p[i] = kmm_execmem_alloc(mm, 64 + kmm_test_below(&rng, 449));
        assert_non_null(p[i]);
    }
    kmm_execmem_stats(mm, &st);
    assert_true((double)st.pages * (double)ps / (double)st.bytes < 1.5);
    check_ok(mm);
    for (size_t i = 0; i < N; i++)
        kmm_execmem_free(mm, p[i]);
    kmm_execmem_stats(mm, &st);
    assert_int_equal(st.chunks, 0);
    check_ok(mm);
    kmm_destroy(mm);
}

/* kmm_vmap of a code frame, which would make the code writable at another
 * address, is refused; so is one of a secret's frames (mapped at its one
 * address only). The frames are found with kmm_page_kinds. */
static void test_vmap_refused(void **state)
{
    size_t ps = kmm_test_param_ps(state);
    struct kmm *mm = kmm_test_create(ps, MEM);
    void *code = kmm_execmem_alloc(mm, 100);
    void *secret = kmm_secret_alloc(mm, 100);
    assert_non_null(code);
    assert_non_null(secret);
    size_t npages = (size_t)(MEM / ps);
    uint8_t *kinds = malloc(npages);
    assert_non_null(kinds);
    assert_int_equal(kmm_page_kinds(mm, 0, npages, kinds), npages);
    int found = 0;
    for (size_t i = 0; i < npages; i++) {
        unsigned k = kinds[i] & ~KMM_PAGE_UNMAPPED_BIT;
        if (k != KMM_PAGE_EXECMEM && k != KMM_PAGE_SECRET)
            continue;
        assert_true(kinds[i] & KMM_PAGE_UNMAPPED_BIT);
        kmm_phys_t frame = (kmm_phys_t)i * ps;
        errno = 0;
        assert_null(kmm_vmap(mm, &frame, 1, KMM_PROT_READ | KMM_PROT_WRITE));
        assert_int_equal(errno, EINVAL);
        found |= k == KMM_PAGE_EXECMEM ? 1 : 2;
    }
    assert_int_equal(found, 3);
    free(kinds);
    kmm_secret_free(mm, secret);
    kmm_execmem_free(mm, code);
    check_ok(mm);
    kmm_destroy(mm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        KMM_TEST_PER_PAGE_SIZE(test_jit),
        KMM_TEST_SMALL_PAGES(test_batch),
        KMM_TEST_SMALL_PAGES(test_refused_writes),
        KMM_TEST_SMALL_PAGES(test_wx_random),
        KMM_TEST_SMALL_PAGES(test_fork),
        KMM_TEST_PER_PAGE_SIZE(test_sizes),
        KMM_TEST_PER_PAGE_SIZE(test_memory_per_byte),
        KMM_TEST_SMALL_PAGES(test_vmap_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
