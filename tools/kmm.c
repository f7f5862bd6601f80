/* kmm - the command-line tool: a tour of every layer, and stats.
 *
 *   kmm demo                  run a mixed workload through every layer, print each layer's stats
 *   kmm stats [--json] [options]
 *                             run the workload on a configured memory system and print its stats
 *   kmm map [options] [-o FILE.svg]
 *                             run the workload and draw physical memory, page by page (map.c)
 *   options: --page-size N  --mem-size N[K|M|G]  --areas L1,L2,...  (upper limits, bytes with K/M/G)
 *            --out-dir DIR (demo: where its picture goes)
 *   kmm zstore ...            what zram would hold for files or a process (zstore.c)
 */
#include "tool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* kmm_stats_print's layers below zsmalloc, and above it (`kmm stats` prints
 * the zsmalloc pools and the zstore between the two). */
#define LOWER_LAYERS (KMM_STATS_PAGES | KMM_STATS_SLAB | KMM_STATS_VMALLOC | KMM_STATS_META)
#define UPPER_LAYERS (KMM_STATS_UNMAPPED | KMM_STATS_SHRINKERS | KMM_STATS_SECRET | KMM_STATS_EXECMEM)

void print_kmm_stats(struct kmm *mm, unsigned flags)
{
    fflush(stdout);   /* the library writes to the descriptor, after what stdio holds */
    int rc = kmm_stats_print(mm, fileno(stdout), flags);
    if (rc != 0)
        fprintf(stderr, "kmm: cannot write the stats: %s\n", strerror(-rc));
}

double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

void print_size(FILE *f, uint64_t bytes)
{
    const char *unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    unsigned u = 0;
    double v = (double)bytes;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    fprintf(f, v == (double)(uint64_t)v ? "%.0f %s" : "%.1f %s", v, unit[u]);
}

/* ---- the workload ---------------------------------------------------------- */

struct workload {
    unsigned allocs, frees, exact, aligned, reserved, failed;
    double seconds;
};

struct thread_work {
    struct kmm *mm;
    unsigned seed;
    unsigned ops;
    unsigned allocs, frees;
};

/* Random orders 0..3 from a thread's cache, half of them freed again. */
static void *thread_churn(void *arg)
{
    struct thread_work *w = arg;
    void *live[256] = { 0 };
    for (unsigned i = 0; i < w->ops; i++) {
        unsigned slot = (unsigned)rand_r(&w->seed) % 256;
        if (live[slot]) {
            kmm_free_pages(w->mm, live[slot]);
            live[slot] = NULL;
            w->frees++;
        } else {
            live[slot] = kmm_alloc_pages(w->mm, (unsigned)rand_r(&w->seed) % 4, 0);
            w->allocs += live[slot] != NULL;
        }
    }
    for (unsigned i = 0; i < 256; i++) {
        w->frees += live[i] != NULL;
        kmm_free_pages(w->mm, live[i]);
    }
    return NULL;
}

/* Leaves a realistic picture behind: live blocks of many orders in every
 * area, exact and aligned allocations, a reservation, and free memory broken
 * into blocks of every order. Returns what it did. */
static struct workload run_workload(struct kmm *mm, void ***keep, size_t *nkeep)
{
    struct workload w = { 0 };
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t cap = 8192, n = 0;
    void **live = calloc(cap, sizeof(*live));
    unsigned seed = 42;
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);

    /* a reservation in the lowest area, like a firmware table */
    if (st.area[0].total_pages > 64 && kmm_reserve_pages(mm, st.area[0].start + 16 * st.page_size, 7) == 0)
        w.reserved = 7;

    for (unsigned i = 0; i < 6000; i++) {
        unsigned order = (unsigned)rand_r(&seed) % 11;
        /* mostly any area; some callers need low memory, a few the lowest (small blocks) */
        unsigned r = (unsigned)rand_r(&seed) % 8;
        unsigned flags = r == 0 ? KMM_AREAS_BELOW(1) : 0;
        if (r == 1) {
            flags = KMM_AREA_LOWEST;
            order %= 3;
        }
        void *p = kmm_alloc_pages(mm, order, flags);
        if (!p) {
            w.failed++;
            continue;
        }
        w.allocs++;
        memset(p, 0x5a, st.page_size);   /* touch the first page */
        if (n < cap)
            live[n++] = p;
        if (rand_r(&seed) % 2 && n) {   /* free a random live block */
            size_t victim = (size_t)rand_r(&seed) % n;
            kmm_free_pages(mm, live[victim]);
            live[victim] = live[--n];
            w.frees++;
        }
    }
    for (unsigned i = 0; i < 64 && n < cap; i++) {
        void *p = kmm_alloc_pages_exact(mm, (size_t)(1 + (unsigned)rand_r(&seed) % 40) * st.page_size, 0);
        if (p) {
            live[n++] = p;
            w.exact++;
        }
        p = kmm_alloc_pages_aligned(mm, 1 + (unsigned)rand_r(&seed) % 3, (size_t)1 << (20 + i % 3), 0);
        if (p && n < cap) {
            live[n++] = p;
            w.aligned++;
        }
    }
    pthread_t t[2];
    struct thread_work tw[2] = { { mm, 1, 200000, 0, 0 }, { mm, 2, 200000, 0, 0 } };
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, thread_churn, &tw[i]);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        w.allocs += tw[i].allocs;
        w.frees += tw[i].frees;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    w.seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    *keep = live;
    *nkeep = n;
    return w;
}

static void release_workload(struct kmm *mm, void **live, size_t n, unsigned reserved)
{
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    for (size_t i = 0; i < n; i++)
        kmm_free_pages(mm, live[i]);
    if (reserved)
        kmm_unreserve_pages(mm, st.area[0].start + 16 * st.page_size, reserved);
    free(live);
}

/* ---- the slab layer's workload ------------------------------------------------- */

struct slab_work {
    struct kmm *mm;
    struct kmm_cache *cache;              /* a kmem_cache-like cache with a constructor */
    void **live;                          /* kmm_malloc objects kept for the stats */
    size_t nlive;
    void **objs;                          /* cache objects kept */
    size_t nobjs;
    unsigned mallocs, frees, cross_frees;
    double seconds;
};

static void demo_ctor(void *p) { memset(p, 0x11, 48); }

/* Objects made by one thread and freed by another, through a ring. */
struct handoff {
    struct kmm *mm;
    void *ring[1024];
    _Atomic unsigned head, tail;
    unsigned count;
};

static void *consumer(void *arg)
{
    struct handoff *h = arg;
    for (unsigned done = 0; done < h->count;) {
        unsigned t = atomic_load(&h->tail);
        if (t == atomic_load(&h->head))
            continue;
        kmm_free(h->mm, h->ring[t % 1024]);
        atomic_store(&h->tail, t + 1);
        done++;
    }
    return NULL;
}

/* kmm_malloc of random sizes (most below a page, some above) with random
 * frees, a cache of 200-byte objects, and 100k objects freed by another
 * thread than the one that made them. Leaves a live set behind. */
static struct slab_work run_slab_workload(struct kmm *mm)
{
    struct slab_work w = { .mm = mm };
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned seed = 7;
    size_t cap = 20000;
    w.live = calloc(cap, sizeof(*w.live));
    w.objs = calloc(cap, sizeof(*w.objs));
    for (unsigned i = 0; i < 60000; i++) {
        size_t size = (unsigned)rand_r(&seed) % 16 ? 1 + (unsigned)rand_r(&seed) % 1024 : 1 + (unsigned)rand_r(&seed) % 12000;
        void *p = kmm_malloc(mm, size, 0);
        if (!p)
            continue;
        memset(p, 0xa5, size);
        w.mallocs++;
        if (w.nlive < cap)
            w.live[w.nlive++] = p;
        else
            kmm_free(mm, p), w.frees++;
        if (rand_r(&seed) % 2 && w.nlive) {
            size_t victim = (size_t)rand_r(&seed) % w.nlive;
            kmm_free(mm, w.live[victim]);
            w.live[victim] = w.live[--w.nlive];
            w.frees++;
        }
    }
    w.cache = kmm_cache_create(mm, "demo-inode", 200, 64, demo_ctor);
    for (unsigned i = 0; w.cache && i < 3000; i++) {
        void *p = kmm_cache_alloc(w.cache, 0);
        if (p && w.nobjs < cap)
            w.objs[w.nobjs++] = p;
    }
    struct handoff *h = calloc(1, sizeof(*h));
    h->mm = mm;
    h->count = 100000;
    pthread_t t;
    pthread_create(&t, NULL, consumer, h);
    for (unsigned i = 0; i < h->count; i++) {
        void *p = kmm_malloc(mm, 64 + (i % 8) * 32, 0);
        while (atomic_load(&h->head) - atomic_load(&h->tail) >= 1024)
            ;
        h->ring[atomic_load(&h->head) % 1024] = p;
        atomic_store(&h->head, atomic_load(&h->head) + 1);
    }
    pthread_join(t, NULL);
    w.mallocs += h->count;
    w.cross_frees = h->count;
    free(h);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    w.seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    return w;
}

static void release_slab_workload(struct slab_work *w)
{
    for (size_t i = 0; i < w->nlive; i++)
        kmm_free(w->mm, w->live[i]);
    for (size_t i = 0; i < w->nobjs; i++) {
        demo_ctor(w->objs[i]);   /* objects go back constructed */
        kmm_cache_free(w->cache, w->objs[i]);
    }
    kmm_cache_destroy(w->cache);
    free(w->live);
    free(w->objs);
}

/* ---- the vmalloc layer's workload ------------------------------------------------ */


struct vm_work {
    struct kmm *mm;
    void *area[112];
    size_t nareas;
    void *vmapped;
    kmm_phys_t vmap_pages[8];
    unsigned allocs, frees, kv_small, kv_large, grown_in_place;
    double seconds;
};

static struct vm_work run_vm_workload(struct kmm *mm, size_t page)
{
    struct vm_work w = { .mm = mm };
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t seed = 0x766d616c6c6f63ull;
    for (size_t i = 0; i < 96; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        size_t size = 1 + (size_t)(seed >> 33) % (64 * page);
        void *p = i % 3 == 2 ? kmm_kvmalloc(mm, size % (2 * page) + 1, 0) : kmm_vmalloc(mm, size, KMM_ZERO);
        if (i % 3 == 2 && size % (2 * page) + 1 <= page)
            w.kv_small++;
        else if (i % 3 == 2)
            w.kv_large++;
        if (!p)
            continue;
        memset(p, (int)i, i % 3 == 2 ? size % (2 * page) + 1 : size);
        w.area[w.nareas++] = p;
        w.allocs++;
    }
    if (w.nareas)
        kmm_vmalloc_set_tag(mm, w.area[0], "demo: tagged by its caller");
    /* every other area goes: lazily, so the listing shows them waiting */
    for (size_t i = 1; i < w.nareas; i += 2) {
        kmm_free(mm, w.area[i]);
        w.area[i] = NULL;
        w.frees++;
    }
    /* areas freed and asked for again at the same size come back mapped */
    void *again[8];
    for (unsigned i = 0; i < 8; i++)
        again[i] = kmm_vmalloc(mm, 16 * page, 0);
    for (unsigned i = 0; i < 8; i++)
        kmm_vfree(mm, again[i]);
    for (unsigned i = 0; i < 8; i++) {
        void *p = kmm_vmalloc(mm, 16 * page, 0);
        if (p && w.nareas < sizeof w.area / sizeof w.area[0])
            w.area[w.nareas++] = p;
        else
            kmm_vfree(mm, p);
    }
    /* a realloc that finds the range after it free grows in place */
    void *last = kmm_vmalloc(mm, 4 * page, 0);
    if (last) {
        void *q = kmm_realloc(mm, last, 80 * page, 0);
        w.grown_in_place += q == last;
        w.area[w.nareas++] = q ? q : last;
    }
    /* caller-given pages, mapped read-only */
    unsigned got = 0;
    for (unsigned i = 0; i < 8; i++) {
        void *v = kmm_alloc_pages(mm, 0, KMM_ZERO);
        w.vmap_pages[i] = v ? kmm_virt_to_phys(mm, v) : KMM_PHYS_NONE;
        got += v != NULL;
    }
    /* on a memory system the workload filled, some may be missing: kmm_vmap would refuse them aloud */
    if (got == 8)
        w.vmapped = kmm_vmap(mm, w.vmap_pages, 8, KMM_PROT_READ);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    w.seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    return w;
}

static void release_vm_workload(struct vm_work *w)
{
    for (size_t i = 0; i < w->nareas; i++)
        kmm_free(w->mm, w->area[i]);
    kmm_vunmap(w->mm, w->vmapped);
    for (unsigned i = 0; i < 8; i++)
        if (w->vmap_pages[i] != KMM_PHYS_NONE)
            kmm_free_pages(w->mm, kmm_phys_to_virt(w->mm, w->vmap_pages[i]));
}

/* ---- commands -------------------------------------------------------------- */

uint64_t parse_size(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    switch (*end) {
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': v <<= 20; end++; break;
    case 'g': case 'G': v <<= 30; end++; break;
    case 't': case 'T': v <<= 40; end++; break;
    default: break;
    }
    if (errno || *end) {
        fprintf(stderr, "kmm: bad size '%s'\n", s);
        exit(2);
    }
    return v;
}

struct options {
    struct kmm_config cfg;
    uint64_t limits[KMM_MAX_AREAS];
    bool json;
    const char *output;                   /* map: -o */
    const char *out_dir;                  /* demo: --out-dir */
};

static void parse_options(int argc, char **argv, struct options *o)
{
    memset(o, 0, sizeof(*o));
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            o->json = true;
        } else if (!strcmp(argv[i], "-o") && i + 1 < argc) {
            o->output = argv[++i];
        } else if (!strcmp(argv[i], "--out-dir") && i + 1 < argc) {
            o->out_dir = argv[++i];
        } else if (!strcmp(argv[i], "--page-size") && i + 1 < argc) {
            o->cfg.page_size = (size_t)parse_size(argv[++i]);
        } else if (!strcmp(argv[i], "--mem-size") && i + 1 < argc) {
            o->cfg.mem_size = parse_size(argv[++i]);
        } else if (!strcmp(argv[i], "--areas") && i + 1 < argc) {
            char *list = argv[++i], *save = NULL;
            for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                if (o->cfg.nr_areas == KMM_MAX_AREAS) {
                    fprintf(stderr, "kmm: at most %d areas\n", KMM_MAX_AREAS);
                    exit(2);
                }
                o->limits[o->cfg.nr_areas++] = parse_size(tok);
            }
            o->cfg.area_limits = o->limits;
        } else {
            fprintf(stderr, "kmm: unknown option '%s'\n", argv[i]);
            exit(2);
        }
    }
}

static struct kmm *create_or_die(const struct kmm_config *cfg)
{
    struct kmm *mm = kmm_create(cfg);
    if (!mm) {
        fprintf(stderr, "kmm: cannot create the memory system: %s\n", strerror(errno));
        exit(1);
    }
    return mm;
}

static int cmd_demo(int argc, char **argv)
{
    struct options o;
    parse_options(argc, argv, &o);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct kmm *mm = create_or_die(&o.cfg);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    printf("kmm demo: a memory system of ");
    print_size(stdout, (uint64_t)st.total_pages * st.page_size);
    printf(" (sparse memfd: costs nothing until touched), created in %.2f ms, %zu pages resident\n\n",
           (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-6, st.resident_pages);

    printf("== 1. Page allocator (buddy orders over areas, one metadata byte per page)\n");
    void **live;
    size_t n;
    struct workload w = run_workload(mm, &live, &n);
    printf("workload: %u allocations, %u frees (orders 0..10 over every area, two threads churning orders 0..3),\n"
           "          %u exact sizes (tail given back), %u aligned to 1-4 MiB (nothing wasted), %u pages reserved,\n"
           "          %u refused because the accepted areas were full; %.1f ms\n\n",
           w.allocs, w.frees, w.exact, w.aligned, w.reserved, w.failed, w.seconds * 1e3);
    kmm_page_stats(mm, &st);
    print_kmm_stats(mm, KMM_STATS_PAGES);

    void *p = kmm_alloc_pages_exact(mm, 20 << 10, 0);
    printf("\n  kmm_alloc_pages_exact(20 KiB) holds %zu pages of %zu bytes (a power-of-two block would hold %u)\n",
           kmm_page_alloc_size(mm, p), st.page_size, 1u << (unsigned)(64 - __builtin_clzll(((20u << 10) - 1) / st.page_size)));
    kmm_free_pages(mm, p);

    printf("\n== 2. Small objects (kmm_malloc: slabs below a page, exact pages above; kmm_cache)\n");
    struct slab_work sw = run_slab_workload(mm);
    printf("workload: %u kmm_malloc (1 B .. 12 KB), %u kmm_free, %u of them by another thread than the allocating one,\n"
           "          %zu objects of a cache with a constructor; %.1f ms\n\n",
           sw.mallocs, sw.frees + sw.cross_frees, sw.cross_frees, sw.nobjs, sw.seconds * 1e3);
    print_kmm_stats(mm, KMM_STATS_SLAB);
    p = kmm_malloc(mm, 20 << 10, 0);
    printf("\n  kmm_malloc(20 KiB) is physically contiguous and holds %zu bytes (%zu pages); kmm_malloc serves up to %zu bytes from slabs\n",
           kmm_usable_size(mm, p), kmm_usable_size(mm, p) / st.page_size, kmm_malloc_max_slab_size(mm));
    kmm_free(mm, p);

    printf("\n== 3. Virtual memory (kmm_vmalloc: pages mapped one run at a time behind a guard page; kmm_vmap; kmm_kvmalloc)\n");
    struct vm_work vw = run_vm_workload(mm, o.cfg.page_size ? o.cfg.page_size : 4096);
    printf("workload: %u areas made (%u kmm_kvmalloc: %u from kmm_malloc, %u from vmalloc), %u freed lazily,\n"
           "          a realloc to 80 pages %s, 8 caller pages mapped read-only; %.1f ms\n\n",
           vw.allocs, vw.kv_small + vw.kv_large, vw.kv_small, vw.kv_large, vw.frees,
           vw.grown_in_place ? "grew in place" : "moved", vw.seconds * 1e3);
    print_kmm_stats(mm, KMM_STATS_VMALLOC | KMM_STATS_META);
    size_t purged = kmm_vmalloc_purge(mm);
    struct kmm_vmalloc_stats vs;
    kmm_vmalloc_stats(mm, &vs);
    printf("\n  kmm_vmalloc_purge: %zu pages of lazily freed areas unmapped and given back (%llu unmap calls in all so far)\n",
           purged, (unsigned long long)vs.unmap_calls);
    release_vm_workload(&vw);
    release_slab_workload(&sw);

    printf("\n== 4. Compressed memory (kmm_zs: objects packed across page boundaries in zspages of order-0 pages;\n"
           "      kmm_zstore: a zram-like page store on a pool)\n");
    demo_zsmalloc(mm);

    release_workload(mm, live, n, w.reserved);
    kmm_drain(mm);
    kmm_page_stats(mm, &st);
    printf("\nafter freeing everything and kmm_drain: %zu of %zu pages free, %zu resident (",
           st.free_pages, st.total_pages, st.resident_pages);
    print_size(stdout, (uint64_t)st.resident_pages * st.page_size);
    printf(")\n");

    printf("\n== 5. Pages out of the direct map (kmm_unmapped_alloc: 2 MiB blocks unmapped whole; secret memory;\n"
           "      execmem for JITs)\n");
    int rc = demo_unmapped(o.cfg.page_size, o.out_dir);

    printf("\n== 6. Real programs on kmm (libkmm-malloc: malloc, free and C++ new/delete on kmm_default())\n");
    fflush(stdout);
    demo_shim(argv[0]);
    if (kmm_check(mm) != 0)
        rc = 1;
    printf("\nkmm_check: %s\n", rc == 0 ? "all invariants hold" : "VIOLATION (see above)");
    kmm_destroy(mm);
    return rc == 0 ? 0 : 1;
}

static int cmd_stats(int argc, char **argv)
{
    struct options o;
    parse_options(argc, argv, &o);
    struct kmm *mm = create_or_die(&o.cfg);
    void **live;
    size_t n;
    struct workload w = run_workload(mm, &live, &n);
    struct slab_work sw = run_slab_workload(mm);
    struct vm_work vw = run_vm_workload(mm, o.cfg.page_size ? o.cfg.page_size : 4096);
    struct zs_work zw = run_zs_workload(mm);
    struct unmapped_work uw = run_unmapped_workload(mm);
    int rc = kmm_check(mm);
    if (o.json) {
        unsigned json_members = KMM_STATS_JSON | KMM_STATS_JSON_MEMBERS;
        printf("{\"workload\":{\"allocs\":%u,\"frees\":%u,\"exact\":%u,\"aligned\":%u,\"reserved\":%u,\"failed\":%u},",
               w.allocs, w.frees, w.exact, w.aligned, w.reserved, w.failed);
        print_kmm_stats(mm, json_members | LOWER_LAYERS);
        printf(",\"zsmalloc\":");
        print_zs_stats_json(stdout, mm);
        printf(",\"zstore\":");
        if (zw.store)
            print_zstore_stats_json(stdout, zw.store);
        else
            printf("null");
        printf(",");
        print_kmm_stats(mm, json_members | UPPER_LAYERS);
        printf(",\"check\":%s}\n", rc == 0 ? "true" : "false");
    } else {
        printf("after the workload (%u allocations, %u frees, %u live blocks; %u kmm_malloc, %zu objects live):\n",
               w.allocs, w.frees, (unsigned)n, sw.mallocs, sw.nlive + sw.nobjs);
        print_kmm_stats(mm, LOWER_LAYERS);
        printf("compressed store workload: %llu pages of files under /usr/bin and /usr/share, %llu same-filled,\n"
               "  %llu random; %llu discarded, %zu pages compacted; a pool of raw objects with every other freed;\n"
               "  %.1f ms\n",
               (unsigned long long)zw.file_pages, (unsigned long long)zw.same_pages,
               (unsigned long long)zw.random_pages, (unsigned long long)zw.discarded, zw.compacted,
               zw.seconds * 1e3);
        print_zs_stats(stdout, mm);
        if (zw.store)
            print_zstore_stats(stdout, zw.store);
        printf("pages out of the direct map: %zu unmapped allocations live (orders 0..2, one taken alone), %s secret,\n"
               "  %zu execmem pieces; %u calls refused\n",
               uw.npages, uw.secret ? "a" : "no", uw.ncode, uw.refused);
        print_kmm_stats(mm, UPPER_LAYERS);
        printf("kmm_check: %s\n", rc == 0 ? "all invariants hold" : "VIOLATION");
    }
    release_unmapped_workload(&uw);
    release_zs_workload(&zw);
    release_vm_workload(&vw);
    release_slab_workload(&sw);
    release_workload(mm, live, n, w.reserved);
    kmm_destroy(mm);
    return rc == 0 ? 0 : 1;
}

/* Every layer's workload on a small memory system (so that a page is a
 * cell one can see), with every other page allocation freed again so free
 * memory lies between the rest, then the picture. */
static int cmd_map(int argc, char **argv)
{
    struct options o;
    parse_options(argc, argv, &o);
    if (!o.cfg.mem_size)
        o.cfg.mem_size = 256ull << 20;
    const char *path = o.output ? o.output : "kmm-map.svg";
    struct kmm *mm = create_or_die(&o.cfg);
    void **live;
    size_t n;
    struct workload w = run_workload(mm, &live, &n);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (i % 2)
            kmm_free_pages(mm, live[i]);
        else
            live[kept++] = live[i];
    }
    struct slab_work sw = run_slab_workload(mm);
    struct vm_work vw = run_vm_workload(mm, o.cfg.page_size ? o.cfg.page_size : 4096);
    struct zs_work zw = run_zs_workload(mm);
    struct unmapped_work uw = run_unmapped_workload(mm);

    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    char title[256];
    snprintf(title, sizeof(title), "kmm map: %llu MiB of physical memory after every layer's workload",
             (unsigned long long)(((uint64_t)st.total_pages * st.page_size) >> 20));
    struct map_panel panel = { .mm = mm, .label = "kmm stats' workload" };
    struct map_geometry geo;
    int rc = map_write_svg(path, title, &panel, 1, &geo);
    if (rc != 0) {
        fprintf(stderr, "kmm: cannot write %s: %s\n", path, strerror(errno));
    } else {
        printf("%s\n", path);
        printf("%zu pages of %zu bytes, %zu per cell, rows of ", panel.pages, geo.page_size, geo.pages_per_cell);
        print_size(stdout, geo.row_bytes);
        printf(": %zu free, %zu cached, %zu page allocations, %zu slab, %zu kmalloc, %zu vmalloc, %zu zsmalloc, "
               "%zu out of the direct map; %zu split points (direct map: %zu mappings)\n",
               panel.count[KMM_PAGE_FREE], panel.count[KMM_PAGE_CACHED], panel.count[KMM_PAGE_ALLOC],
               panel.count[KMM_PAGE_SLAB], panel.count[KMM_PAGE_KMALLOC], panel.count[KMM_PAGE_VMALLOC],
               panel.count[KMM_PAGE_ZSMALLOC],
               panel.count[KMM_PAGE_UNMAPPED_FREE] + panel.count[KMM_PAGE_UNMAPPED] + panel.count[KMM_PAGE_SECRET] +
                   panel.count[KMM_PAGE_EXECMEM],
               panel.splits, panel.mappings);
    }
    release_unmapped_workload(&uw);
    release_zs_workload(&zw);
    release_vm_workload(&vw);
    release_slab_workload(&sw);
    release_workload(mm, live, kept, w.reserved);
    if (kmm_check(mm) != 0)
        rc = -1;
    kmm_destroy(mm);
    return rc == 0 ? 0 : 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: kmm demo [options]\n"
               "       kmm stats [--json] [options]\n"
               "       kmm map [options] [-o FILE.svg]\n"
               "       kmm zstore [--algo lz4|zstd|both] [--limit BYTES] [--page-size N] PATH...\n"
               "       kmm zstore [--algo lz4|zstd|both] [--limit BYTES] --pid PID\n"
               "\n"
               "  demo    every layer at work on a mixed workload, with its stats: pages, small objects,\n"
               "          virtual memory, compressed memory (zsmalloc and the zram-like store)\n"
               "  stats   the same workloads on a memory system of your configuration; each layer's stats\n"
               "          (buddyinfo, slabinfo, vmallocinfo, zsmalloc classes, zram's mm_stat, the unmapped\n"
               "          cache's table, shrinkers, secret memory, execmem), or JSON\n"
               "  map     the same workloads on a small memory system (--mem-size 256M unless given), then a\n"
               "          picture of its physical memory, a cell per page coloured by what holds it, with the\n"
               "          direct map's split points in red: an SVG file (default kmm-map.svg)\n"
               "  zstore  what zram would hold for these files or this process's anonymous memory:\n"
               "          mm_stat, compression ratio, memory saved, density, time (kmm zstore --help)\n"
               "\n"
               "options of demo, stats and map: --page-size N  --mem-size N[K|M|G|T]  --areas LIMIT1,LIMIT2,...\n"
               "  demo: --out-dir DIR (where its picture goes; default the current directory)\n");
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "demo"))
        return cmd_demo(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "stats"))
        return cmd_stats(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "map"))
        return cmd_map(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "double-free"))
        return cmd_double_free();
    if (argc >= 2 && !strcmp(argv[1], "zstore"))
        return cmd_zstore(argc, argv);
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
