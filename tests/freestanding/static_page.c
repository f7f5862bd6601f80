/* The page allocator and kmm_malloc as a hypervisor or test framework would use it: the
 * core built with -ffreestanding and no libc (the kmm_freestanding library),
 * over memory the caller hands over (a static buffer with a hole in it),
 * identity mapped, through the static platform. This program itself is
 * hosted only to print and to catch the fatal hook. */
#include <kmm.h>

#include "ktest.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MEM_BYTES (8u << 20)
static _Alignas(1 << 22) unsigned char memory[MEM_BYTES];

static int failures;
#define EXPECT(cond)                                                              \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);   \
            failures++;                                                           \
        }                                                                         \
    } while (0)

static int case_failures;

void ktest_fail(const char *file, int line, const char *expr)
{
    fprintf(stderr, "    %s:%d: expected %s\n", file, line, expr);
    case_failures++;
}

static void fatal(void *ctx, const char *msg)
{
    (void)ctx;
    fprintf(stderr, "fatal: %s\n", msg);
    abort();
}

static void report(void *ctx, const char *line)
{
    (void)ctx;
    fprintf(stderr, "report: %s\n", line);
}

/* The shared freestanding cases (ktest.h) over a static buffer: two ranges
 * with a 1 MiB hole, three areas at +2 MiB and +5 MiB, identity mapped. The
 * guest kernel runs the same cases over the firmware's memory. */
static void run(size_t page_size)
{
    uintptr_t base = (uintptr_t)memory;
    struct kmm_memory mem = { .direct_map = 0, .nr_ranges = 2,
                              .ranges = { { base, base + (3u << 20) }, { base + (4u << 20), base + MEM_BYTES } } };
    uint64_t limits[] = { base + (2u << 20), base + (5u << 20), UINT64_MAX };
    struct kmm_platform pf;
    kmm_platform_static(&pf, &mem, fatal, report);
    struct kmm_config cfg = { .page_size = page_size, .area_limits = limits, .nr_areas = 3, .platform = &pf };
    struct kmm *mm = kmm_create(&cfg);
    EXPECT(mm != NULL);
    if (!mm)
        return;
    struct kmm_page_stats before, after;
    kmm_page_stats(mm, &before);
    EXPECT(before.total_pages > 0 && before.free_pages == before.total_pages);
    EXPECT(before.total_pages < (7u << 20) / page_size);   /* hole and metadata are not memory */
    EXPECT(kmm_check(mm) == 0);
    /* no virtual memory hooks: vmalloc refuses, cleanly */
    EXPECT(kmm_vmalloc(mm, page_size, 0) == NULL);

    struct ktest_env env = { .mm = mm, .page_size = page_size, .area_limits = limits, .nr_areas = 3,
                             .direct_map = 0, .hole_start = base + (3u << 20), .hole_end = base + (4u << 20) };
    unsigned cases = 0, failed = 0;
    for (const struct ktest *const *s = ktest_suites; *s; s++) {
        for (const struct ktest *c = *s; c->name; c++) {
            if (c->guest_only || (c->needs_vm && !env.has_vm))
                continue;
            case_failures = 0;
            c->run(&env);
            kmm_drain(mm);
            if (kmm_check(mm) != 0)
                ktest_fail(__FILE__, __LINE__, "kmm_check(mm) == 0 after the case");
            cases++;
            if (case_failures) {
                failed++;
                fprintf(stderr, "FAIL %s (page size %zu)\n", c->name, page_size);
            }
        }
    }
    failures += (int)failed;
    kmm_page_stats(mm, &after);
    EXPECT(after.reserved_pages == before.reserved_pages);
    kmm_destroy(mm);
    printf("freestanding, page size %zu: %zu pages in 3 areas, %u shared cases, %u failed\n", page_size,
           before.total_pages, cases, failed);
}

/* A call on a destroyed memory system, in a child: the carved struct is a
 * tombstone in the caller's memory, so the call must reach the fatal hook
 * with "kmm: <call>: memory system 0x... was destroyed". */
enum late_call { LATE_MALLOC, LATE_FREE, LATE_ALLOC_PAGES, LATE_FREE_PAGES, LATE_VMALLOC, LATE_CHECK, LATE_DESTROY };
static const char *const late_name[] = { "kmm_malloc", "kmm_free", "kmm_alloc_pages", "kmm_free_pages",
                                         "kmm_vmalloc", "kmm_check", "kmm_destroy" };

static void late_child(enum late_call call)
{
    uintptr_t base = (uintptr_t)memory;
    struct kmm_memory mem = { .direct_map = 0, .nr_ranges = 1, .ranges = { { base, base + MEM_BYTES } } };
    struct kmm_platform pf;
    kmm_platform_static(&pf, &mem, fatal, report);
    struct kmm_config cfg = { .platform = &pf };
    struct kmm *mm = kmm_create(&cfg);
    void *obj = mm ? kmm_malloc(mm, 64, 0) : NULL, *page = mm ? kmm_alloc_pages(mm, 0, 0) : NULL;
    if (!obj || !page)
        _exit(3);
    kmm_destroy(mm);
    switch (call) {
    case LATE_MALLOC: kmm_malloc(mm, 64, 0); break;
    case LATE_FREE: kmm_free(mm, obj); break;
    case LATE_ALLOC_PAGES: kmm_alloc_pages(mm, 0, 0); break;
    case LATE_FREE_PAGES: kmm_free_pages(mm, page); break;
    case LATE_VMALLOC: kmm_vmalloc(mm, 4096, 0); break;
    case LATE_CHECK: kmm_check(mm); break;
    case LATE_DESTROY: kmm_destroy(mm); break;
    }
    _exit(0);   /* not stopped: the parent reports it */
}

static void use_after_destroy(enum late_call call)
{
    int fds[2];
    EXPECT(pipe(fds) == 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        late_child(call);
    }
    close(fds[1]);
    char out[2048];
    size_t len = 0;
    ssize_t n;
    while (len + 1 < sizeof out && (n = read(fds[0], out + len, sizeof out - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    char needle[96];
    snprintf(needle, sizeof needle, "fatal: kmm: %s: memory system 0x", late_name[call]);
    bool ok = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT && strstr(out, needle) && strstr(out, " was destroyed");
    if (!ok)
        fprintf(stderr, "use after destroy, %s: expected an abort with \"%s... was destroyed\"; status %#x, stderr: %s\n",
                late_name[call], needle, status, out);
    EXPECT(ok);
}

int main(void)
{
    run(4096);
    run(16384);
    run(65536);
    for (enum late_call c = LATE_MALLOC; c <= LATE_DESTROY; c++)
        use_after_destroy(c);
    printf("%d passed, %d failed\n", failures ? 0 : 3, failures ? 1 : 0);
    return failures ? 1 : 0;
}
