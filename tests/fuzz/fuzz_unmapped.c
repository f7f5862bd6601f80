/* fuzz_unmapped.c - libFuzzer target for the unmapped cache
 * (kmm_unmapped_*).
 *
 * The input bytes are decoded into operations on a small memory system (8
 * MiB of 4 KiB pages, created on first use and kept), so pages run out and
 * refills fall back to smaller blocks. At most 512 operations per input
 * under libFuzzer (96 in the replay test, 32 under a sanitizer there).
 * Every result is checked against a model of live blocks:
 *  - kmm_unmapped_alloc: naturally aligned, overlapping no live block; zero
 *    (its first page, through kmm_vmap) unless KMM_NOZERO; its first page
 *    then gets the block's pattern, checked at its free; KMM_PHYS_NONE
 *    carries ENOMEM and is plausible: a failure was injected during the
 *    call, or neither the page allocator nor the cache has a free block of
 *    that order;
 *  - kmm_unmapped_shrink gives back at most what it was asked and exactly
 *    what the cache's free pages fell by;
 *  - kmm_check and the stats (handed-out pages as in the model) on demand
 *    and at the end of every input.
 * At the end of every input: injection off, everything freed, held pages
 * released, a full shrink: the cache holds nothing, the direct map is one
 * mapping, and after kmm_drain the page allocator's free pages are back at
 * their value after the memory system's first use.
 *
 * Decoding: one byte chooses the operation (its value mod 9), the bytes
 * after it its arguments (missing bytes read as 0):
 *   0,1,2 alloc        order (byte mod 11), flags (bit 0 NOZERO, bit 1..3 == 0: NOCACHE, bit 4: lowest area)
 *   3     free         which (2 bytes)
 *   4     shrink       nr (2 bytes; 0 = all)
 *   5     injection    nth (1 .. 16), times (0 .. 3); pages, metadata, direct-map calls
 *   6     kmm_check and the stats
 *   7     hold/release pages of the page allocator: order (byte mod 4; bit 7: release one)
 *   8     free several count
 *
 * Built with -fsanitize=fuzzer when KMM_FUZZ=ON, and with replay_main.c as
 * an ordinary program (test_unmapped_fuzz_replay).
 */
#include "kmm_test.h"

#include <kmm.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PS       4096u
#define MEM      (8u << 20)
#define MAX_LIVE 256u
#define MAX_HELD 256u

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*cb)(const uint8_t *, size_t)) __attribute__((weak));
static unsigned max_ops(void)
{
    return LLVMFuzzerRunDriver ? 512u : KMM_TEST_SANITIZER ? 32u : 96u;
}

struct blk {
    kmm_phys_t phys;
    unsigned order;
    uint64_t key;
};

static struct kmm *mm;
static size_t base_free;
static struct blk live[MAX_LIVE];
static unsigned nlive;
static void *held[MAX_HELD];
static unsigned nheld;
static unsigned long op_no;
static uint64_t next_key = 1;

static void bug_head(FILE *f) { fprintf(f, "fuzz_unmapped: op %lu: ", op_no); }

#define bug(...) kmm_test_fail(__VA_ARGS__)

static size_t free_pages(void)
{
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    return st.free_pages;
}

/* The first page of b: its pattern written, checked, or (zero) checked
 * zero. false when the mapping met an injected failure (nothing seen). */
static bool first_page(const struct blk *b, bool write, bool zero)
{
    kmm_phys_t phys = b->phys;
    if (!write && !zero && !b->key)
        return true;   /* its pattern could not be written */
    unsigned char *p = kmm_vmap(mm, &phys, 1, KMM_PROT_READ | KMM_PROT_WRITE);
    if (!p) {
        if (kmm_fault_injected(mm))
            return false;
        bug("kmm_vmap of 0x%llx failed", (unsigned long long)phys);
    }
    if (zero) {
        for (size_t i = 0; i < PS; i++)
            if (p[i])
                bug("block 0x%llx of order %u not zero at byte %zu", (unsigned long long)b->phys, b->order, i);
    } else {
        size_t bad = kmm_test_span_io(p, b->key, 0, PS, write);
        if (!write && bad != SIZE_MAX)
            bug("block 0x%llx of order %u lost its pattern at byte %zu", (unsigned long long)b->phys, b->order, bad);
    }
    kmm_vunmap(mm, p);
    return true;
}

/* Is there a free block of order >= o in the page allocator, or (cache)
 * in the cache? */
static bool block_available(unsigned o, bool cache)
{
    struct kmm_page_stats ps;
    kmm_page_stats(mm, &ps);
    struct kmm_unmapped_stats us;
    kmm_unmapped_stats(mm, &us);
    for (unsigned k = o; k <= KMM_MAX_ORDER; k++) {
        if (cache && us.free[k])
            return true;
        for (unsigned a = 0; a < ps.nr_areas; a++)
            if (ps.nr_free[a][k])
                return true;
    }
    return false;
}

static void op_alloc(struct kmm_test_reader *r)
{
    unsigned order = kmm_test_get8(r) % 11, f = kmm_test_get8(r);
    unsigned flags = (f & 1 ? KMM_NOZERO : 0) | ((f & 0xe) == 0 ? KMM_UNMAPPED_NOCACHE : 0) |
                     (f & 0x10 ? KMM_AREA_LOWEST : 0);
    unsigned long injected = kmm_fault_injected(mm);
    errno = 0;
    kmm_phys_t p = kmm_unmapped_alloc(mm, order, flags);
    if (p == KMM_PHYS_NONE) {
        if (errno != ENOMEM)
            bug("order %u failed with errno %d", order, errno);
        if (kmm_fault_injected(mm) == injected && !(flags & KMM_AREA_LOWEST) && block_available(order, !(flags & KMM_UNMAPPED_NOCACHE)))
            bug("order %u failed with a free block of that order available", order);
        return;
    }
    uint64_t len = (uint64_t)PS << order;
    if (p % len)
        bug("order %u at 0x%llx misaligned", order, (unsigned long long)p);
    for (unsigned i = 0; i < nlive; i++) {
        uint64_t l = (uint64_t)PS << live[i].order;
        if (p < live[i].phys + l && live[i].phys < p + len)
            bug("0x%llx order %u overlaps live 0x%llx order %u", (unsigned long long)p, order,
                (unsigned long long)live[i].phys, live[i].order);
    }
    struct blk b = { p, order, next_key++ };
    if (!(flags & KMM_NOZERO))
        first_page(&b, false, true);
    if (!first_page(&b, true, false))
        b.key = 0;
    if (nlive < MAX_LIVE)
        live[nlive++] = b;
    else
        kmm_unmapped_free(mm, p);
}

static void free_one(unsigned i)
{
    first_page(&live[i], false, false);
    kmm_unmapped_free(mm, live[i].phys);
    live[i] = live[--nlive];
}

static void op_check(void)
{
    if (kmm_check(mm) != 0)
        bug("kmm_check failed");
    struct kmm_unmapped_stats st;
    kmm_unmapped_stats(mm, &st);
    size_t pages = 0;
    for (unsigned i = 0; i < nlive; i++)
        pages += (size_t)1 << live[i].order;
    if (st.pages_used + st.pages_nocache != pages || st.pages_held != st.pages_free + st.pages_used)
        bug("stats: used %zu + nocache %zu, model %zu; held %zu, free %zu", st.pages_used, st.pages_nocache, pages,
            st.pages_held, st.pages_free);
}

static void first_use(void)
{
    struct kmm_config cfg = { .page_size = PS, .mem_size = MEM };
    mm = kmm_create(&cfg);
    if (!mm)
        bug("kmm_create failed");
    /* the first allocation makes the cache's records; kmm_drain settles the caches */
    kmm_phys_t p = kmm_unmapped_alloc(mm, 0, 0);
    if (p == KMM_PHYS_NONE)
        bug("first allocation failed");
    kmm_unmapped_free(mm, p);
    kmm_unmapped_shrink(mm, 0);
    kmm_drain(mm);
    base_free = free_pages();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kmm_test_on_fail(bug_head, NULL, true);
    if (!mm)
        first_use();
    struct kmm_test_reader r = { data, size, 0 };
    op_no = 0;
    unsigned limit = max_ops();
    while (r.i < r.n && op_no < limit) {
        op_no++;
        unsigned op = kmm_test_get8(&r) % 9;
        switch (op) {
        case 0:
        case 1:
        case 2:
            op_alloc(&r);
            break;
        case 3: {
            unsigned which = kmm_test_get16(&r);
            if (nlive)
                free_one(which % nlive);
            break;
        }
        case 4: {
            size_t nr = kmm_test_get16(&r);
            struct kmm_unmapped_stats a, b;
            kmm_unmapped_stats(mm, &a);
            size_t given = kmm_unmapped_shrink(mm, nr);
            kmm_unmapped_stats(mm, &b);
            if ((nr && given > nr) || a.pages_free - b.pages_free + a.pages_beside - b.pages_beside != given)
                bug("shrink of %zu gave %zu, free pages %zu -> %zu", nr, given, a.pages_free, b.pages_free);
            break;
        }
        case 5: {
            unsigned nth = 1 + kmm_test_get8(&r) % 16, times = kmm_test_get8(&r) % 4;
            kmm_fault_inject(mm, KMM_FAULT_PAGES | KMM_FAULT_META | KMM_FAULT_DIRECT, nth, times);
            break;
        }
        case 6:
            op_check();
            break;
        case 7: {
            unsigned v = kmm_test_get8(&r);
            if (v & 0x80) {
                if (nheld)
                    kmm_free_pages(mm, held[--nheld]);
            } else if (nheld < MAX_HELD) {
                void *p = kmm_alloc_pages(mm, v % 4, 0);
                if (p)
                    held[nheld++] = p;
            }
            break;
        }
        case 8: {
            unsigned n = kmm_test_get8(&r) % 16;
            while (n-- && nlive)
                free_one(nlive - 1);
            break;
        }
        }
    }
    kmm_fault_inject(mm, 0, 0, 0);
    op_check();
    while (nlive)
        free_one(nlive - 1);
    while (nheld)
        kmm_free_pages(mm, held[--nheld]);
    kmm_unmapped_shrink(mm, 0);
    struct kmm_unmapped_stats st;
    kmm_unmapped_stats(mm, &st);
    if (st.pages_held || st.chunks || st.pages_nocache || st.direct_map_mappings != 1)
        bug("at the end: held %zu, chunks %zu, nocache %zu, mappings %zu", st.pages_held, st.chunks, st.pages_nocache,
            st.direct_map_mappings);
    kmm_drain(mm);
    if (kmm_check(mm) != 0)
        bug("kmm_check failed at the end");
    if (free_pages() != base_free)
        bug("free pages %zu at the end, %zu at the start", free_pages(), base_free);
    return 0;
}
