/* Helpers shared by kmm's tests (unit, stress and fuzz). Nothing here uses
 * cmocka: the libFuzzer binaries link this too. */
#ifndef KMM_TEST_H
#define KMM_TEST_H

#include <kmm.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- sanitizers ---------------------------------------------------------------- */

/* KMM_TEST_ASAN / KMM_TEST_TSAN: 1 in a build with that sanitizer (gcc or
 * clang), else 0; KMM_TEST_SANITIZER: either. */
#if defined(__SANITIZE_ADDRESS__)
#define KMM_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KMM_TEST_ASAN 1
#endif
#endif
#ifndef KMM_TEST_ASAN
#define KMM_TEST_ASAN 0
#endif
#if defined(__SANITIZE_THREAD__)
#define KMM_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KMM_TEST_TSAN 1
#endif
#endif
#ifndef KMM_TEST_TSAN
#define KMM_TEST_TSAN 0
#endif
#define KMM_TEST_SANITIZER (KMM_TEST_ASAN || KMM_TEST_TSAN)

/* Marks a function whose accesses ASan must not instrument. */
#if KMM_TEST_ASAN
#define KMM_TEST_NO_ASAN __attribute__((no_sanitize_address))
#else
#define KMM_TEST_NO_ASAN
#endif

/* ---- child processes ------------------------------------------------------------ */

/* Runs fn(arg) in a child process with its stderr captured into out (at most
 * outsz - 1 bytes, NUL-terminated). In the child a fault is fatal (the
 * default action, also under ASan, whose handler would turn it into an exit)
 * and leaves no core. Returns the child's wait status, or -1 if it could not
 * be started. */
int kmm_test_run_child(void (*fn)(void *arg), void *arg, char *out, size_t outsz);

/* Prints to stderr how a child ended (its wait status) and what it wrote. */
void kmm_test_describe_child(int status, const char *out);

/* Runs fn(arg) in a child process and checks that it aborts (SIGABRT) and
 * that what it wrote to stderr contains needle. Returns 0 if so; otherwise
 * prints what happened instead and returns -1. */
int kmm_test_expect_abort(void (*fn)(void *arg), void *arg, const char *needle);

/* ---- memory systems --------------------------------------------------------------- */

/* A hosted memory system with the given page size and memory (0 = default)
 * and the default areas; aborts the test program if it cannot be made. */
struct kmm *kmm_test_create(size_t page_size, uint64_t mem_size);

/* Resident set size of this process in bytes (from /proc/self/statm). */
size_t kmm_test_rss(void);

/* The page sizes the unit tests run at: 4, 16 and 64 KiB. */
extern size_t kmm_test_page_sizes[3];

/* cmocka test entries of fn for each page size (named fn_4k, fn_16k, fn_64k),
 * or for the small ones only; the test reads its size with kmm_test_param_ps. */
#define KMM_TEST_SMALL_PAGES(fn)                                      \
    { #fn "_4k", fn, NULL, NULL, &kmm_test_page_sizes[0] },           \
    { #fn "_16k", fn, NULL, NULL, &kmm_test_page_sizes[1] }
#define KMM_TEST_PER_PAGE_SIZE(fn)                                    \
    KMM_TEST_SMALL_PAGES(fn),                                         \
    { #fn "_64k", fn, NULL, NULL, &kmm_test_page_sizes[2] }

/* The page size of a test entry made by KMM_TEST_PER_PAGE_SIZE. */
static inline size_t kmm_test_param_ps(void **state)
{
    return *(const size_t *)*state;
}

/* ---- failures ----------------------------------------------------------------------- */

/* How kmm_test_fail reports and ends. head(f), if set, prints the program's
 * context before the message (name, seed, operation), tail(f) anything
 * after it; the program then ends with abort() if use_abort (a core, a crash
 * libFuzzer keeps), else with exit(1). The default: no head, exit(1). */
void kmm_test_on_fail(void (*head)(FILE *f), void (*tail)(FILE *f), bool use_abort);

/* Fails the test program: flushes stdout, writes head, the message, a
 * newline and tail to stderr, and ends as kmm_test_on_fail said. */
void kmm_test_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* ---- random numbers ---------------------------------------------------------------- */

/* A seed for randomized tests: $KMM_SEED if set, else the time; printed. */
uint64_t kmm_test_seed(const char *test_name);

/* xorshift64* */
static inline uint64_t kmm_test_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* A random number below n (0 if n is 0). */
static inline uint64_t kmm_test_below(uint64_t *state, uint64_t n)
{
    return n ? kmm_test_rand(state) % n : 0;
}

/* splitmix64's finalizer: mixes every bit of x into every bit of the result. */
static inline uint64_t kmm_test_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* ---- a cheap pattern for unit tests ------------------------------------------------------ */

/* Byte i of the fill pattern seed: differs between neighbouring bytes, pages and seeds. */
static inline unsigned char kmm_test_fill_byte(size_t i, unsigned seed)
{
    return (unsigned char)(((i ^ (i >> 8) ^ (i >> 16)) * 0x9du) + seed * 0x3bu + 1);
}
/* Writes the fill pattern seed over [p, p + len). */
void kmm_test_fill(void *p, size_t len, unsigned seed);
/* Checks it: true if every byte holds it; else prints the first that does
 * not (address, offset, value, expected) to stderr and returns false. */
bool kmm_test_filled(const void *p, size_t len, unsigned seed);

/* ---- what a call writes to stderr (kmm's reports when hosted) ------------------------ */

struct kmm_test_capture {
    FILE *f;
    int saved;
};
/* Sends stderr to a temporary file until kmm_test_capture_end. */
void kmm_test_capture_begin(struct kmm_test_capture *c);
/* Restores stderr; returns the text captured, NUL-terminated (free it). */
char *kmm_test_capture_end(struct kmm_test_capture *c);

/* ---- patterns -------------------------------------------------------------------------- */

/* Word wi (bytes 8 wi .. 8 wi + 7) of the pattern named key. */
static inline uint64_t kmm_test_pat_word(uint64_t key, size_t wi)
{
    return kmm_test_mix64(key * 0x9E3779B97F4A7C15ULL ^ (uint64_t)wi);
}

/* Byte i of the pattern named key: byte i % 8 of a mix of key and i / 8, so
 * a prefix carries the same bytes whatever the length written. */
static inline unsigned char kmm_test_pat(uint64_t key, size_t i)
{
    return (unsigned char)(kmm_test_pat_word(key, i >> 3) >> (8 * (i & 7)));
}

/* Writes (write true) or checks bytes [from, to) of the pattern named key
 * at p, a word at a time where aligned. Returns the first offset that does
 * not hold its byte, or SIZE_MAX (always SIZE_MAX when writing). */
size_t kmm_test_span_io(unsigned char *p, uint64_t key, size_t from, size_t to, bool write);

/* Sampled patterns: the bytes of a size-byte object that carry one are all
 * of them up to full; beyond, the first and last edge bytes of every page
 * of ps bytes (ps a power of two), and the last edge bytes. Returns the
 * first such byte at or after i. */
static inline size_t kmm_test_next_sampled(size_t size, size_t i, size_t ps, size_t full, size_t edge)
{
    if (size <= full || (i & (ps - 1)) < edge || (i & (ps - 1)) >= ps - edge || i + edge >= size)
        return i;
    size_t n = (i | (ps - 1)) + 1 - edge;
    return n < size - edge ? n : size - edge;
}

/* How a sampled pattern is laid: see kmm_test_next_sampled. */
struct kmm_test_sampling {
    size_t ps, full, edge;
};

/* Writes pattern key into the sampled bytes of the size bytes at p. */
void kmm_test_fill_sampled(unsigned char *p, uint64_t key, size_t size, const struct kmm_test_sampling *s);

/* The first sampled byte below len (and size) of an object of size bytes
 * at p filled with pattern key that does not hold it; SIZE_MAX if none. */
size_t kmm_test_find_unlike(const unsigned char *p, uint64_t key, size_t size, size_t len,
                            const struct kmm_test_sampling *s);

/* The first byte in [from, to) that is not zero, of the bytes an object of
 * to bytes at p has sampled; SIZE_MAX if none. */
size_t kmm_test_find_nonzero(const unsigned char *p, size_t from, size_t to, const struct kmm_test_sampling *s);

/* ---- fuzz input -------------------------------------------------------------------------- */

/* A fuzz input read from the front; past its end every byte reads 0. */
struct kmm_test_reader {
    const uint8_t *d;
    size_t n, i;
};

/* The next byte of the input. */
static inline unsigned kmm_test_get8(struct kmm_test_reader *r)
{
    return r->i < r->n ? r->d[r->i++] : 0;
}

/* The next two bytes of the input, little-endian. */
static inline unsigned kmm_test_get16(struct kmm_test_reader *r)
{
    unsigned v = kmm_test_get8(r);
    return v | kmm_test_get8(r) << 8;
}

/* ---- the direct map ------------------------------------------------------------------------- */

/* How many mappings (VMAs of this process, /proc/self/maps) overlap the
 * direct map of mm's memory: what kmm_unmapped_stats' direct_map_mappings
 * must say. Fails the test when /proc/self/maps cannot be read. */
size_t kmm_test_direct_map_vmas(struct kmm *mm);

/* ---- threads ------------------------------------------------------------------------------- */

/* Starts fn(args + i * stride) on th[i] for i below n (args an array of n
 * elements of stride bytes); a thread that cannot be started fails the
 * test ("pthread_create failed"). */
void kmm_test_start_threads(pthread_t *th, unsigned n, void *(*fn)(void *), void *args, size_t stride);

/* Waits for the threads th[0..n). */
void kmm_test_join_threads(const pthread_t *th, unsigned n);

#endif
