/* Unit tests of kmm_stats_print (src/stats/print.c): which layers it prints
 * by default and when named, valid JSON (checked by a small parser here),
 * caller names escaped, a vmalloc listing longer than its buffer written in
 * several passes, a failed write returned, and (outside sanitizer builds,
 * which own malloc) not one call to malloc while it prints: it runs inside
 * the malloc shim at exit. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <kmm.h>

#include "kmm_test.h"

#define MiB ((uint64_t)1 << 20)

/* ---- malloc counted while kmm_stats_print runs -------------------------------- */

#ifdef STATS_COUNT_MALLOC
/* This executable's malloc family wins over libc's for every caller in the
 * process (libc's own calls too) and hands on to glibc's implementation. */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static _Thread_local bool counting;
static _Thread_local unsigned malloc_calls;

void *malloc(size_t n)
{
    malloc_calls += counting;
    return __libc_malloc(n);
}
void *calloc(size_t n, size_t size)
{
    malloc_calls += counting;
    return __libc_calloc(n, size);
}
void *realloc(void *p, size_t n)
{
    malloc_calls += counting;
    return __libc_realloc(p, n);
}
void *memalign(size_t align, size_t n)
{
    malloc_calls += counting;
    return __libc_memalign(align, n);
}
void *aligned_alloc(size_t align, size_t n)
{
    return memalign(align, n);
}
int posix_memalign(void **out, size_t align, size_t n)
{
    void *p = memalign(align, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}
void free(void *p)
{
    __libc_free(p);
}
#endif

/* ---- a small JSON checker (RFC 8259 grammar; numbers loosely) ------------------ */

struct json {
    const char *s;
    unsigned depth;
};

static void json_ws(struct json *j)
{
    while (*j->s == ' ' || *j->s == '\n' || *j->s == '\t' || *j->s == '\r')
        j->s++;
}

static bool json_value(struct json *j);

static bool json_string(struct json *j)
{
    if (*j->s++ != '"')
        return false;
    for (; *j->s != '"'; j->s++) {
        if ((unsigned char)*j->s < 0x20)
            return false;
        if (*j->s == '\\') {
            j->s++;
            if (*j->s == 'u') {
                for (int i = 0; i < 4; i++)
                    if (!strchr("0123456789abcdefABCDEF", *++j->s) || !*j->s)
                        return false;
            } else if (!*j->s || !strchr("\"\\/bfnrt", *j->s)) {
                return false;
            }
        }
    }
    j->s++;
    return true;
}

static bool json_list(struct json *j, char close, bool members)
{
    j->s++;
    json_ws(j);
    if (*j->s == close) {
        j->s++;
        return true;
    }
    for (;;) {
        json_ws(j);
        if (members) {
            if (!json_string(j))
                return false;
            json_ws(j);
            if (*j->s++ != ':')
                return false;
        }
        if (!json_value(j))
            return false;
        json_ws(j);
        if (*j->s == close) {
            j->s++;
            return true;
        }
        if (*j->s++ != ',')
            return false;
    }
}

static bool json_value(struct json *j)
{
    json_ws(j);
    if (++j->depth > 64)
        return false;
    bool ok;
    if (*j->s == '{')
        ok = json_list(j, '}', true);
    else if (*j->s == '[')
        ok = json_list(j, ']', false);
    else if (*j->s == '"')
        ok = json_string(j);
    else if (!strncmp(j->s, "true", 4) || !strncmp(j->s, "null", 4))
        ok = (j->s += 4, true);
    else if (!strncmp(j->s, "false", 5))
        ok = (j->s += 5, true);
    else {
        const char *start = j->s;
        j->s += *j->s == '-';
        while (strchr("0123456789.eE+-", *j->s) && *j->s)
            j->s++;
        ok = j->s > start;
    }
    j->depth--;
    return ok;
}

/* One JSON object and a newline, nothing else. */
static bool json_document(const char *s)
{
    struct json j = { s, 0 };
    json_ws(&j);
    if (*j.s != '{' || !json_value(&j))
        return false;
    return !strcmp(j.s, "\n");
}

/* ---- helpers --------------------------------------------------------------------- */

/* What kmm_stats_print writes, as a string (free it); rc gets its result. */
static char *printed(struct kmm *mm, unsigned flags, int *rc)
{
    int fd = memfd_create("stats", 0);
    assert_true(fd >= 0);
#ifdef STATS_COUNT_MALLOC
    malloc_calls = 0;
    counting = true;
#endif
    *rc = kmm_stats_print(mm, fd, flags);
#ifdef STATS_COUNT_MALLOC
    counting = false;
    assert_int_equal(malloc_calls, 0);
#endif
    off_t len = lseek(fd, 0, SEEK_CUR);
    char *s = calloc(1, (size_t)len + 1);
    assert_non_null(s);
    assert_int_equal(pread(fd, s, (size_t)len, 0), len);
    close(fd);
    return s;
}

static char *printed_ok(struct kmm *mm, unsigned flags)
{
    int rc;
    char *s = printed(mm, flags, &rc);
    assert_int_equal(rc, 0);
    return s;
}

static size_t count_of(const char *s, const char *needle)
{
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* Objects in a cache whose name needs escaping, kmm_malloc of a few sizes,
 * nareas vmalloc areas (one tagged with a quote); the pointers to free. */
struct load {
    struct kmm *mm;
    struct kmm_cache *cache;
    void *obj[16];
    void *small[64];
    void *area[300];
    size_t nareas;
};

static void load(struct load *l, struct kmm *mm, size_t nareas)
{
    memset(l, 0, sizeof(*l));
    l->mm = mm;
    l->cache = kmm_cache_create(mm, "say \"cheese\"\\", 72, 8, NULL);
    assert_non_null(l->cache);
    for (size_t i = 0; i < 16; i++)
        assert_non_null(l->obj[i] = kmm_cache_alloc(l->cache, 0));
    for (size_t i = 0; i < 64; i++)
        assert_non_null(l->small[i] = kmm_malloc(mm, 8 + 40 * i, 0));
    for (l->nareas = 0; l->nareas < nareas; l->nareas++)
        assert_non_null(l->area[l->nareas] = kmm_vmalloc(mm, 4096 * (1 + l->nareas % 5), 0));
    if (nareas)
        kmm_vmalloc_set_tag(mm, l->area[0], "a \"quoted\" tag\twith a tab");
}

static void unload(struct load *l)
{
    for (size_t i = 0; i < l->nareas; i++)
        kmm_vfree(l->mm, l->area[i]);
    for (size_t i = 0; i < 64; i++)
        kmm_free(l->mm, l->small[i]);
    for (size_t i = 0; i < 16; i++)
        kmm_cache_free(l->cache, l->obj[i]);
    kmm_cache_destroy(l->cache);
    assert_int_equal(kmm_check(l->mm), 0);
}

/* ---- tests ----------------------------------------------------------------------- */

/* With no layer named: the layers below always, the unused ones above not. */
static void test_default_text(void **state)
{
    (void)state;
    struct kmm *mm = kmm_test_create(4096, 256 * MiB);
    struct load l;
    load(&l, mm, 20);
    char *s = printed_ok(mm, 0);
    assert_non_null(strstr(s, "Page allocator: page size 4096, 65536 pages (256 MiB)"));
    assert_non_null(strstr(s, "free blocks per order (like /proc/buddyinfo)"));
    assert_non_null(strstr(s, "  0 LOWEST "));
    assert_non_null(strstr(s, "slabinfo: cache"));
    assert_non_null(strstr(s, "say \"cheese\"\\"));
    assert_int_equal(count_of(s, "vmallocinfo: 0x"), 14);
    assert_non_null(strstr(s, "vmallocinfo: ... and "));
    assert_non_null(strstr(s, "vmalloc: space "));
    assert_non_null(strstr(s, "metadata objects: "));
    assert_non_null(strstr(s, "shrinkers (asked in this order when an allocation fails):"));
    assert_null(strstr(s, "unmapped cache"));
    assert_null(strstr(s, "secret memory"));
    assert_null(strstr(s, "execmem"));
    free(s);
    unload(&l);
    kmm_destroy(mm);
}

/* A layer named is printed even unused, and alone. */
static void test_named_layers(void **state)
{
    (void)state;
    struct kmm *mm = kmm_test_create(4096, 64 * MiB);
    char *s = printed_ok(mm, KMM_STATS_UNMAPPED | KMM_STATS_EXECMEM);
    assert_true(!strncmp(s, "unmapped cache (direct map: ", 28));
    assert_non_null(strstr(s, "\nexecmem: 0 allocations live"));
    assert_null(strstr(s, "Page allocator"));
    assert_null(strstr(s, "shrinkers"));
    free(s);
    s = printed_ok(mm, KMM_STATS_JSON | KMM_STATS_META);
    assert_true(!strncmp(s, "{\"meta\":{\"objects\":", 19));
    assert_true(json_document(s));
    free(s);
    /* members alone go inside the caller's object */
    s = printed_ok(mm, KMM_STATS_JSON | KMM_STATS_JSON_MEMBERS | KMM_STATS_PAGES | KMM_STATS_SHRINKERS);
    assert_true(!strncmp(s, "\"pages\":{", 9));
    assert_non_null(strstr(s, "},\"shrinkers\":["));
    assert_int_equal(s[strlen(s) - 1], ']');
    free(s);
    kmm_destroy(mm);
}

/* Every layer, used: valid JSON with every member, caller strings escaped,
 * a vmalloc listing of several buffers complete. */
static void test_json_every_layer(void **state)
{
    (void)state;
    struct kmm *mm = kmm_test_create(4096, 512 * MiB);
    struct load l;
    load(&l, mm, 300);
    kmm_phys_t page = kmm_unmapped_alloc(mm, 0, 0);
    void *secret = kmm_secret_alloc(mm, 32);
    void *code = kmm_execmem_alloc(mm, 64);
    char *s = printed_ok(mm, KMM_STATS_JSON);
    assert_true(json_document(s));
    assert_true(strlen(s) > 3 * 4096);   /* written in several passes over the vmalloc areas */
    const char *members[] = { "{\"pages\":{", ",\"slab\":[", ",\"vmalloc\":{", ",\"meta\":{", ",\"shrinkers\":[" };
    for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++)
        assert_non_null(strstr(s, members[i]));
    if (page != KMM_PHYS_NONE)
        assert_non_null(strstr(s, ",\"unmapped\":{"));
    if (secret)
        assert_non_null(strstr(s, ",\"secret\":{"));
    if (code)
        assert_non_null(strstr(s, ",\"execmem\":{"));
    struct kmm_vmalloc_stats vs;
    kmm_vmalloc_stats(mm, &vs);
    assert_int_equal(count_of(s, "\"kind\":"), vs.areas + vs.vmap_areas + vs.lazy_areas);
    assert_non_null(strstr(s, "\"name\":\"say \\\"cheese\\\"\\\\\""));
    assert_non_null(strstr(s, "\"tag\":\"a \\\"quoted\\\" tag\\u0009with a tab\""));
    free(s);
    kmm_execmem_free(mm, code);
    kmm_secret_free(mm, secret);
    if (page != KMM_PHYS_NONE)
        kmm_unmapped_free(mm, page);
    unload(&l);
    kmm_destroy(mm);
}

/* Areas other than the default ones get no names. */
static void test_custom_areas_unnamed(void **state)
{
    (void)state;
    uint64_t limits[] = { 8 * MiB, 32 * MiB };
    struct kmm_config cfg = { .mem_size = 64 * MiB, .area_limits = limits, .nr_areas = 2 };
    struct kmm *mm = kmm_create(&cfg);
    assert_non_null(mm);
    char *s = printed_ok(mm, KMM_STATS_PAGES);
    assert_null(strstr(s, "LOWEST"));
    assert_non_null(strstr(s, "\n  0                     "));
    free(s);
    kmm_destroy(mm);
}

/* A write that fails is the result; nothing is written after it. */
static void test_write_error(void **state)
{
    (void)state;
    struct kmm *mm = kmm_test_create(4096, 64 * MiB);
    assert_int_equal(kmm_stats_print(mm, -1, 0), -EBADF);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    close(fds[0]);
    void (*old)(int) = signal(SIGPIPE, SIG_IGN);
    assert_int_equal(kmm_stats_print(mm, fds[1], KMM_STATS_JSON), -EPIPE);
    signal(SIGPIPE, old);
    close(fds[1]);
    kmm_destroy(mm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_text),
        cmocka_unit_test(test_named_layers),
        cmocka_unit_test(test_json_every_layer),
        cmocka_unit_test(test_custom_areas_unnamed),
        cmocka_unit_test(test_write_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
