/* The page allocator and kmm_malloc as a hypervisor or test framework would use it: the
 * core built with -ffreestanding and no libc (the kmm_freestanding library),
 * over memory the caller hands over (a static buffer with a hole in it),
 * identity mapped, through the static platform. This program itself is
 * hosted only to print and to catch the fatal hook. */
#include <kmm.h>

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

static void run(size_t page_size)
{
    uintptr_t base = (uintptr_t)memory;
    /* two ranges with a 1 MiB hole; three areas at +2 MiB and +5 MiB */
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

    void *blocks[64];
    unsigned n = 0;
    for (unsigned order = 0; order < 6 && (page_size << order) <= (1u << 20); order++) {
        void *p = kmm_alloc_pages(mm, order, 0);
        EXPECT(p != NULL);
        if (!p)
            continue;
        EXPECT(kmm_virt_to_phys(mm, p) == (kmm_phys_t)(uintptr_t)p);   /* identity mapped */
        EXPECT(((uintptr_t)p & ((page_size << order) - 1)) == 0);
        memset(p, 0xa5, page_size << order);
        blocks[n++] = p;
    }
    void *low = kmm_alloc_pages(mm, 0, KMM_AREA(0));
    EXPECT(low != NULL && (uintptr_t)low < limits[0]);
    blocks[n++] = low;
    void *exact = kmm_alloc_pages_exact(mm, 5 * page_size, KMM_ZERO);
    EXPECT(exact != NULL && kmm_page_alloc_size(mm, exact) == 5);
    blocks[n++] = exact;
    void *aligned = kmm_alloc_pages_aligned(mm, 1, 1u << 20, 0);
    EXPECT(aligned != NULL && ((uintptr_t)aligned & ((1u << 20) - 1)) == 0);
    blocks[n++] = aligned;
    /* the hole is not memory: reserving it is refused */
    EXPECT(kmm_reserve_pages(mm, base + (3u << 20), 1) == -KMM_EBUSY);
    EXPECT(kmm_reserve_pages(mm, base + (4u << 20) + page_size, 3) == 0);
    EXPECT(kmm_check(mm) == 0);
    for (unsigned i = n; i-- > 0;)
        kmm_free_pages(mm, blocks[i]);
    kmm_unreserve_pages(mm, base + (4u << 20) + page_size, 3);
    EXPECT(kmm_check(mm) == 0);
    kmm_page_stats(mm, &after);
    EXPECT(memcmp(before.nr_free, after.nr_free, sizeof(before.nr_free)) == 0);
    EXPECT(after.free_pages == before.free_pages);

    /* kmm_malloc with no meta_alloc hook and no thread caches: its metadata
     * comes from the page allocator; two rounds of the same work must not
     * hold more pages than one */
    size_t rounds_pages[2] = { 0, 0 };
    unsigned objects = 0;
    for (unsigned round = 0; round < 2; round++) {
        void *obj[200];
        static const size_t sizes[] = { 24, 100, 200, 1000, 2000 };   /* few classes: 64 KiB pages are few */
        for (unsigned i = 0; i < 200; i++) {
            size_t size = sizes[i % 5];
            obj[i] = kmm_malloc(mm, size, i % 3 ? 0 : KMM_AREA(0));
            EXPECT(obj[i] != NULL);
            if (!obj[i])
                continue;
            EXPECT(kmm_usable_size(mm, obj[i]) >= size);
            EXPECT(i % 3 || (uintptr_t)obj[i] < limits[0]);
            memset(obj[i], (int)i, size);
            objects++;
        }
        void *big = kmm_malloc(mm, 3 * page_size + 1, 0);
        EXPECT(big != NULL && kmm_usable_size(mm, big) == 4 * page_size);
        EXPECT(kmm_check(mm) == 0);
        for (unsigned i = 0; i < 200; i++)
            kmm_free(mm, obj[i]);
        kmm_free(mm, big);
        kmm_drain(mm);
        EXPECT(kmm_check(mm) == 0);
        kmm_page_stats(mm, &after);
        rounds_pages[round] = after.allocated_pages;
    }
    EXPECT(rounds_pages[1] == rounds_pages[0]);
    kmm_destroy(mm);
    printf("freestanding, page size %zu: %zu pages in 3 areas, %u allocations freed and coalesced back, "
           "%u kmm_malloc objects (metadata: %zu pages)\n",
           page_size, before.total_pages, n, objects, rounds_pages[1]);
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
