/* unmapped.c - pages out of the direct map in `kmm demo`, `kmm stats` and
 * `kmm map`: the unmapped cache (kmm/unmapped.h), secret memory
 * (kmm/secret.h) and execmem (kmm/execmem.h); their stats are
 * kmm_stats_print's.
 *
 * Every call here may be refused (a platform without direct_unmap, a layer
 * refusing with ENOSYS, RLIMIT_MEMLOCK): the refusal is printed as one
 * line with the reason and the rest goes on.
 */
#include "tool.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the workload for `kmm stats` and `kmm map` ----------------------------------- */

/* A trivial function: `mov eax, 42; ret` (x86-64), `mov w0, #42; ret`
 * (arm64). Empty elsewhere: the demo then says it cannot run code here. */
#if defined(__x86_64__)
static const unsigned char answer_code[] = { 0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3 };
#elif defined(__aarch64__)
static const unsigned char answer_code[] = { 0x40, 0x05, 0x80, 0x52, 0xc0, 0x03, 0x5f, 0xd6 };
#else
static const unsigned char answer_code[] = { 0 };
#define NO_ANSWER_CODE 1
#endif

struct unmapped_work run_unmapped_workload(struct kmm *mm)
{
    struct unmapped_work w = { .mm = mm };
    /* single pages and small blocks out of the direct map, every third given back */
    for (unsigned i = 0; i < UNMAPPED_WORK_PAGES; i++) {
        kmm_phys_t p = kmm_unmapped_alloc(mm, i % 3, 0);
        if (p == KMM_PHYS_NONE) {
            w.refused++;
            break;
        }
        if (i % 3 == 2)
            kmm_unmapped_free(mm, p);
        else
            w.pages[w.npages++] = p;
    }
    kmm_phys_t naive = kmm_unmapped_alloc(mm, 0, KMM_UNMAPPED_NOCACHE);
    if (naive != KMM_PHYS_NONE)
        w.pages[w.npages++] = naive;
    w.secret = kmm_secret_alloc(mm, 100);
    w.refused += w.secret == NULL;
    for (unsigned i = 0; i < UNMAPPED_WORK_CODE; i++) {
        void *code = kmm_execmem_alloc(mm, 24 + 40 * i);
        if (!code) {
            w.refused++;
            break;
        }
        if (kmm_execmem_write(mm, code, answer_code, sizeof(answer_code)) != 0)
            w.refused++;
        if (i % 4 == 3)
            kmm_execmem_free(mm, code);
        else
            w.code[w.ncode++] = code;
    }
    return w;
}

void release_unmapped_workload(struct unmapped_work *w)
{
    for (size_t i = 0; i < w->ncode; i++)
        kmm_execmem_free(w->mm, w->code[i]);
    kmm_secret_free(w->mm, w->secret);
    for (size_t i = 0; i < w->npages; i++)
        kmm_unmapped_free(w->mm, w->pages[i]);
    w->ncode = w->npages = 0;
    w->secret = NULL;
}

/* ---- kmm demo, section 5 ---------------------------------------------------------- */

#define DEMO_MEM (256ull << 20)
#define DEMO_CHURN (64ull << 20)     /* memory broken into single pages, every other one free */
#define DEMO_PAGES 256               /* single pages taken out of the direct map */

/* Breaks the first DEMO_CHURN of memory into single pages, every other one
 * left allocated: the free pages a single-page allocation gets are
 * scattered, as in a system that has run for a while. Returns the pages
 * kept (to free at the end), or NULL. */
static void **churn(struct kmm *mm, size_t page_size, size_t *nkept)
{
    size_t n = (size_t)(DEMO_CHURN / page_size), got = 0, kept = 0;
    void **pages = calloc(n, sizeof(*pages));
    /* all first, then every other one freed: freed at once, each page would
     * come straight back from the thread's cache */
    while (pages && got < n && (pages[got] = kmm_alloc_pages(mm, 0, 0)))
        got++;
    for (size_t i = 0; i < got; i++) {
        if (i % 2)
            kmm_free_pages(mm, pages[i]);
        else
            pages[kept++] = pages[i];
    }
    *nkept = kept;
    return pages;
}

/* Does reading (or writing) the byte at p fault? Asked of a child process,
 * so that the demo survives the answer. */
static bool access_faults(volatile unsigned char *p, bool write)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit no_core = { 0, 0 };
        setrlimit(RLIMIT_CORE, &no_core);
        signal(SIGSEGV, SIG_DFL);   /* a sanitizer's handler would turn the fault into an exit and a report */
        signal(SIGBUS, SIG_DFL);
        if (write)
            *p = 0;
        else
            (void)*p;
        _exit(0);
    }
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return false;
    return WIFSIGNALED(status);
}

static void refused(const char *call)
{
    printf("  %s refused: %s\n", call, strerror(errno));
}

struct side {
    struct kmm *mm;
    const char *label;
    void **churned;
    size_t nchurned;
    kmm_phys_t pages[DEMO_PAGES];
    size_t npages;
};

static void take_pages(struct side *s, unsigned flags)
{
    for (s->npages = 0; s->npages < DEMO_PAGES; s->npages++) {
        kmm_phys_t p = kmm_unmapped_alloc(s->mm, 0, flags);
        if (p == KMM_PHYS_NONE)
            break;
        s->pages[s->npages] = p;
    }
}

/* Secret memory and a small JIT on mm, with their stats. */
static void demo_secret_and_jit(struct kmm *mm, size_t page_size)
{
    printf("\n(b) secret memory and executable memory\n");
    unsigned char *secret = kmm_secret_alloc(mm, 64);
    if (!secret) {
        refused("kmm_secret_alloc(64)");
    } else {
        memcpy(secret, "correct horse battery staple", 29);
        bool before = access_faults(secret - 1, false), after = access_faults(secret + page_size, false);
        printf("  kmm_secret_alloc(64) = %p: backing \"%s\", a key written and read back (\"%s\");\n"
               "  the page before it %s, the page after it %s\n",
               (void *)secret, kmm_secret_backing_name(kmm_secret_backing(mm)), (char *)secret,
               before ? "faults (guard page)" : "DOES NOT FAULT", after ? "faults (guard page)" : "DOES NOT FAULT");
    }
    print_kmm_stats(mm, KMM_STATS_SECRET);

    void *code = kmm_execmem_alloc(mm, sizeof(answer_code));
    if (!code) {
        refused("kmm_execmem_alloc");
    } else if (kmm_execmem_write(mm, code, answer_code, sizeof(answer_code)) != 0) {
        printf("  kmm_execmem_write refused: %s\n", strerror(errno));
    } else {
#ifdef NO_ANSWER_CODE
        printf("  kmm_execmem_alloc = %p; no code to run on this architecture\n", code);
#else
        int (*answer)(void);
        memcpy(&answer, &code, sizeof(answer));
        printf("  kmm_execmem_alloc = %p, `%s; ret` written through the frames (never a writable mapping),\n"
               "  called: it returns %d; a write to the code %s\n",
               code,
#if defined(__x86_64__)
               "mov eax, 42",
#else
               "mov w0, #42",
#endif
               answer(), access_faults(code, true) ? "faults (read+execute only)" : "DOES NOT FAULT");
#endif
    }
    print_kmm_stats(mm, KMM_STATS_EXECMEM);
    if (code)
        kmm_execmem_free(mm, code);
    kmm_secret_free(mm, secret);
}

int demo_unmapped(size_t page_size, const char *out_dir)
{
    struct kmm_config cfg = { .page_size = page_size, .mem_size = DEMO_MEM };
    struct side side[2] = { { .label = "naive (KMM_UNMAPPED_NOCACHE)" }, { .label = "through the unmapped cache" } };
    for (unsigned i = 0; i < 2; i++) {
        side[i].mm = kmm_create(&cfg);
        if (!side[i].mm) {
            printf("  cannot create a memory system of %llu MiB: %s\n", DEMO_MEM >> 20, strerror(errno));
            for (unsigned j = 0; j < i; j++)
                kmm_destroy(side[j].mm);
            return 1;
        }
    }
    struct kmm_page_stats st;
    kmm_page_stats(side[0].mm, &st);
    printf("(a) %u single pages taken out of the direct map on two memory systems of ", DEMO_PAGES);
    print_size(stdout, DEMO_MEM);
    printf(" in which ");
    print_size(stdout, DEMO_CHURN);
    printf(" was broken\n    into single pages, every other one free: one page at a time from the page allocator"
           " (as without\n    the cache: each split the direct map), and through the cache (2 MiB blocks unmapped"
           " whole)\n");
    for (unsigned i = 0; i < 2; i++) {
        side[i].churned = churn(side[i].mm, st.page_size, &side[i].nchurned);
        take_pages(&side[i], i == 0 ? KMM_UNMAPPED_NOCACHE : 0);
        if (side[i].npages < DEMO_PAGES)
            printf("  %s: kmm_unmapped_alloc refused after %zu pages: %s\n", side[i].label, side[i].npages,
                   strerror(errno));
    }

    struct map_panel panel[2];
    for (unsigned i = 0; i < 2; i++)
        panel[i] = (struct map_panel){ .mm = side[i].mm, .label = side[i].label };
    char path[4096];
    snprintf(path, sizeof(path), "%s/demo-unmapped.svg", out_dir ? out_dir : ".");
    int wrote = map_write_svg(path, "kmm demo: single pages out of the direct map, without and with the cache", panel,
                              2, NULL);
    struct kmm_unmapped_stats us[2];
    for (unsigned i = 0; i < 2; i++)
        kmm_unmapped_stats(side[i].mm, &us[i]);
    printf("\n  %-38s %30s %30s\n", "", side[0].label, side[1].label);
    printf("  %-38s %30zu %30zu\n", "pages out of the direct map", side[0].npages, side[1].npages);
    printf("  %-38s %30zu %30zu\n", "direct map mappings (kmm_unmapped_stats)", us[0].direct_map_mappings,
           us[1].direct_map_mappings);
    if (wrote == 0)
        printf("  %-38s %30zu %30zu\n", "split points seen in the picture", panel[0].splits, panel[1].splits);
    printf("  %-38s %30zu %30zu\n", "direct_unmap calls", us[0].unmap_calls, us[1].unmap_calls);
    printf("\n  the cache's table (%s):\n", side[1].label);
    print_kmm_stats(side[1].mm, KMM_STATS_UNMAPPED);
    if (wrote == 0)
        printf("\n  picture: %s (the two memory systems side by side; open it in a browser)\n", path);
    else
        printf("\n  cannot write %s: %s\n", path, strerror(errno));

    demo_secret_and_jit(side[1].mm, st.page_size);

    printf("\n(c) the pages given back to the cache, then kmm_unmapped_shrink(mm, 0): its free blocks mapped back"
           " and returned\n");
    for (unsigned i = 0; i < 2; i++) {
        for (size_t j = 0; j < side[i].npages; j++)
            kmm_unmapped_free(side[i].mm, side[i].pages[j]);
        side[i].npages = 0;
    }
    size_t given = kmm_unmapped_shrink(side[1].mm, 0);
    printf("  %zu pages given back to the page allocator\n", given);
    print_kmm_stats(side[1].mm, KMM_STATS_UNMAPPED);

    int rc = 0;
    for (unsigned i = 0; i < 2; i++) {
        for (size_t j = 0; j < side[i].nchurned; j++)
            kmm_free_pages(side[i].mm, side[i].churned[j]);
        free(side[i].churned);
        if (kmm_check(side[i].mm) != 0) {
            printf("  kmm_check of the %s memory system: VIOLATION\n", side[i].label);
            rc = 1;
        }
        kmm_destroy(side[i].mm);
    }
    return rc;
}
