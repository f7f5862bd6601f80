/* Misuse of secret memory (include/kmm/secret.h) must abort with the
 * address and the reason, one report line "kmm: kmm_secret_free: <addr>:
 * <reason>":
 *  - a double free (also with other secrets allocated in between);
 *  - an interior pointer, a pointer into a guard page;
 *  - a kmm_malloc pointer, the direct-map address of an unmapped-cache
 *    frame, a kmm_vmalloc pointer, an address never handed out (also
 *    before the layer was ever used), an execmem pointer (skipped while
 *    execmem is not built);
 *  - kmm_unmapped_free of a secret's frame aborts naming secret memory (the
 *    unmapped cache's ownership check).
 * Each child says "misuse of <addr>" just before its misuse; one whose
 * set-up failed exits with 3 (reported as a failure), or with 77 for a
 * case to skip. */
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
#include "secret/secret_internal.h"

#define PS  ((size_t)4096)
#define MEM (64ull << 20)

static void misuse_of(const void *p)
{
    fprintf(stderr, "misuse of %p\n", p);
    fflush(stderr);
}

static void *secret_or_exit(struct kmm *mm, size_t size)
{
    void *p = kmm_secret_alloc(mm, size);
    if (!p)
        exit(3);
    return p;
}

enum bad {
    B_DOUBLE,
    B_DOUBLE_LATER,      /* freed, then other secrets allocated and freed */
    B_INTERIOR,
    B_INTERIOR_PAGE,     /* page aligned, the second page */
    B_GUARD_BEFORE,
    B_GUARD_AFTER,
    B_KMALLOC,
    B_UNMAPPED_FRAME,    /* kmm_unmapped_alloc's frame, by its direct-map address */
    B_VMALLOC,
    B_NEVER,
    B_NEVER_FIRST_USE,   /* before any secret was allocated */
    B_EXECMEM,
};

struct misuse {
    enum bad bad;
    const char *why;
};

static void child_bad_free(void *arg)
{
    const struct misuse *c = arg;
    struct kmm *mm = kmm_test_create(PS, MEM);
    char *keep = c->bad == B_NEVER_FIRST_USE ? NULL : secret_or_exit(mm, 3 * PS);
    char *p = NULL;
    static char never[64];
    switch (c->bad) {
    case B_DOUBLE:
        p = secret_or_exit(mm, 100);
        kmm_secret_free(mm, p);
        break;
    case B_DOUBLE_LATER:
        p = secret_or_exit(mm, 100);
        kmm_secret_free(mm, p);
        for (int i = 0; i < 4; i++)
            kmm_secret_free(mm, secret_or_exit(mm, 5000));
        break;
    case B_INTERIOR:
        p = keep + 100;
        break;
    case B_INTERIOR_PAGE:
        p = keep + PS;
        break;
    case B_GUARD_BEFORE:
        p = keep - PS;
        break;
    case B_GUARD_AFTER:
        p = keep + 3 * PS;
        break;
    case B_KMALLOC:
        p = kmm_malloc(mm, 64, 0);
        break;
    case B_UNMAPPED_FRAME: {
        kmm_phys_t phys = kmm_unmapped_alloc(mm, 0, 0);
        if (phys == KMM_PHYS_NONE)
            exit(3);
        p = kmm_phys_to_virt(mm, phys);
        break;
    }
    case B_VMALLOC:
        p = kmm_vmalloc(mm, 3 * PS, 0);
        break;
    case B_NEVER:
    case B_NEVER_FIRST_USE:
        p = never;
        break;
    case B_EXECMEM:
        p = kmm_execmem_alloc(mm, 64);
        if (!p)
            exit(77);
        break;
    }
    if (!p)
        exit(3);
    misuse_of(p);
    kmm_secret_free(mm, p);
}

/* The child aborts, and its report line names kmm_secret_free, the reason
 * and the address it said. */
static void expect_report(void (*fn)(void *), void *arg, const char *who, const char *why)
{
    char out[8192];
    int status = kmm_test_run_child(fn, arg, out, sizeof out);
    assert_true(status != -1);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
        printf("note: skipped (%s): the layer it needs is not built yet\n", why);
        return;
    }
    char value[64] = "";
    const char *at = strstr(out, "misuse of ");
    if (at)
        sscanf(at, "misuse of %63s", value);
    char head[128];
    snprintf(head, sizeof head, "kmm: %s", who);
    const char *line = strstr(out, head);
    char report[1024] = "";
    if (line) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        snprintf(report, sizeof report, "%.*s", (int)(len < sizeof report ? len : sizeof report - 1), line);
    }
    bool ok = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT && value[0] && report[0] && strstr(report, why) &&
              strstr(report, value);
    if (!ok) {
        fprintf(stderr, "expected \"%s...%s...%s\"\n", head, why, value[0] ? value : "(the child said nothing)");
        kmm_test_describe_child(status, out);
    }
    assert_true(ok);
}

static const struct misuse cases[] = {
    { B_DOUBLE, "not a live secret allocation (freed already: a double free)" },
    { B_DOUBLE_LATER, "not a live secret allocation (freed already: a double free)" },
    { B_INTERIOR, "not a live secret allocation: an interior pointer of the one at" },
    { B_INTERIOR_PAGE, "not a live secret allocation: an interior pointer of the one at" },
    { B_GUARD_BEFORE, "not a live secret allocation: in a guard page of the one at" },
    { B_GUARD_AFTER, "not a live secret allocation: in a guard page of the one at" },
    { B_KMALLOC, "not a live secret allocation: an address in kmm's direct map" },
    { B_UNMAPPED_FRAME, "not a live secret allocation: an address in kmm's direct map" },
    { B_VMALLOC, "not a live secret allocation: a kmm_vmalloc address" },
    { B_NEVER, "not a live secret allocation (never allocated, freed already, or another allocator's" },
    { B_NEVER_FIRST_USE, "not a live secret allocation (never allocated" },
    { B_EXECMEM, "not a live secret allocation" },
};

static void test_bad_free(void **state)
{
    const struct misuse *c = *state;
    expect_report(child_bad_free, (void *)c, "kmm_secret_free", c->why);
}

/* ---- a secret's frame freed through the unmapped cache ---- */

static void child_unmapped_free_of_secret(void *arg)
{
    (void)arg;
    struct kmm *mm = kmm_test_create(PS, MEM);
    void *p = secret_or_exit(mm, 2 * PS);
    struct secret_run run;
    if (kmm__secret_runs(mm, p, &run, 1) != 1)
        exit(3);
    misuse_of(kmm_phys_to_virt(mm, run.phys));
    kmm_unmapped_free(mm, run.phys);
    exit(4);   /* the cache took it */
}

static void test_unmapped_free_of_secret(void **state)
{
    (void)state;
    char out[8192];
    int status = kmm_test_run_child(child_unmapped_free_of_secret, NULL, out, sizeof out);
    bool ok = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT && strstr(out, "kmm_unmapped_free") &&
              strstr(out, "secret memory");
    if (!ok) {
        fprintf(stderr, "expected kmm_unmapped_free of a secret's frame to abort naming secret memory\n");
        kmm_test_describe_child(status, out);
    }
    assert_true(ok);
}

int main(void)
{
    struct CMUnitTest tests[sizeof cases / sizeof cases[0] + 1];
    static const char *names[] = { "double_free",    "double_free_later", "interior",        "interior_page",
                                   "guard_before",   "guard_after",       "kmalloc_pointer", "unmapped_frame",
                                   "vmalloc_pointer", "never_allocated",  "never_first_use", "execmem_pointer" };
    _Static_assert(sizeof names / sizeof names[0] == sizeof cases / sizeof cases[0], "a name per case");
    size_t n = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        tests[n++] = (struct CMUnitTest){ names[i], test_bad_free, NULL, NULL, (void *)&cases[i] };
    tests[n++] = (struct CMUnitTest){ "unmapped_free_of_secret", test_unmapped_free_of_secret, NULL, NULL, NULL };
    return _cmocka_run_group_tests("test_secret_abuse", tests, n, NULL, NULL);
}
