/* fuzz_page.c - libFuzzer target for the page allocator.
 *
 * The input bytes are decoded into page allocator operations (allocations of
 * every kind with area masks and KMM_ZERO, frees, reservations, partial
 * unreservations, drains) on one small memory system, created on the first
 * call, and every result is checked against a model of page owners as in
 * tests/stress/page_model.c; a mismatch prints what went wrong and aborts.
 *
 * At the end of every input everything is freed and unreserved and the
 * thread's cache drained; the free block counts must then equal the initial
 * ones. The memory is laid out so that each area is then one free block
 * (areas of 1, 1 and 2 MiB of 4 KiB pages: orders 8, 8 and 9), so every
 * input starts from the same state and a crash reproduces on its own. It is
 * small so that inputs run out of memory often (every failure is checked
 * against the model) and cheap: each input's final kmm_drain gives the
 * memory back to the OS, and the next one faults it in again.
 *
 * Decoding: one byte chooses the operation, the bytes after it its
 * arguments (missing bytes read as 0):
 *   0,1  kmm_alloc_pages        order (bit 7 clear: 0..3 only), flags
 *   2    kmm_alloc_pages_aligned npages (2 bytes), alignment, flags
 *   3    kmm_alloc_pages_exact  pages (2 bytes), bytes short of them (2 bytes), flags
 *   4,5  kmm_free_pages         which live allocation (2 bytes)
 *   6    kmm_reserve_pages      first page (2 bytes), count, kind
 *   7    kmm_unreserve_pages / kmm_drain / kmm_check   selector, which, offset, length
 * flags byte: bits 0-5 area mask (bit 6 set: used as is, else only the
 * existing areas 0-2); KMM_ZERO when bits 7, 6, 3 are 1, 0, 1.
 *
 * Built with -fsanitize=fuzzer when KMM_FUZZ=ON, and with replay_main.c as an
 * ordinary program (tests/fuzz/replay_main.c).
 */
#include "kmm_test.h"

#include <kmm.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PS          4096u
#define SHIFT       12u
#define NPAGES      1024u          /* 4 MiB */
#define NR_AREAS    3u
#define MAX_LIVE    1024u
#define MAX_TOUCH   8u
#define OWNER_FREE  0u
#define OWNER_RESV  UINT32_MAX

struct alloc {
    uint32_t pfn, npages, id;
};

static const uint64_t limits[NR_AREAS] = { 1ull << 20, 2ull << 20, UINT64_MAX };
static const uint32_t astart[NR_AREAS] = { 0, 256, 512 };
static const uint32_t aend[NR_AREAS] = { 256, 512, NPAGES };

static struct kmm *mm;
static size_t init_nr_free[KMM_MAX_AREAS][KMM_MAX_ORDER + 1];
static uint32_t owner[NPAGES];
static struct alloc live[MAX_LIVE];
static unsigned nlive;
static uint32_t resv_pages;
static uint32_t next_id;
static unsigned long op_no;
static bool cache_clean;            /* the thread's caches are known to be empty */

/* What a failure report (kmm_test_fail) starts with. */
static void bug_head(FILE *f)
{
    fprintf(f, "fuzz_page: op %lu: ", op_no);
}

#define bug(...) kmm_test_fail(__VA_ARGS__)

static unsigned ceil_log2_u(uint64_t v)
{
    unsigned o = 0;
    while (((uint64_t)1 << o) < v)
        o++;
    return o;
}

static unsigned area_of(uint32_t pfn)
{
    for (unsigned a = 0; a < NR_AREAS; a++)
        if (pfn >= astart[a] && pfn < aend[a])
            return a;
    return KMM_MAX_AREAS;
}

static bool fit_exists(unsigned a, unsigned order)
{
    uint32_t size = (uint32_t)1 << order;
    if (order > 12)
        return false;
    for (uint32_t p = (astart[a] + size - 1) & ~(size - 1); p + size <= aend[a]; p += size) {
        uint32_t i = 0;
        while (i < size && owner[p + i] == OWNER_FREE)
            i++;
        if (i == size)
            return true;
    }
    return false;
}

static void *virt(uint32_t pfn)
{
    return kmm_phys_to_virt(mm, (kmm_phys_t)pfn << SHIFT);
}

static uint64_t pattern(uint32_t id, uint32_t page, unsigned w)
{
    uint64_t x = ((uint64_t)id << 32) ^ ((uint64_t)page << 2) ^ w;
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    return x | 1;
}

static uint32_t touched(const struct alloc *al, unsigned j)
{
    return al->npages <= MAX_TOUCH ? j : (uint32_t)((uint64_t)j * (al->npages - 1) / (MAX_TOUCH - 1));
}

static uint64_t *word(uint32_t pfn, unsigned w)
{
    return (uint64_t *)(void *)((char *)virt(pfn) + (w ? PS - 8 : 0));
}

static void write_pattern(const struct alloc *al)
{
    unsigned n = al->npages < MAX_TOUCH ? al->npages : MAX_TOUCH;
    for (unsigned j = 0; j < n; j++)
        for (unsigned w = 0; w < 2; w++)
            *word(al->pfn + touched(al, j), w) = pattern(al->id, touched(al, j), w);
}

static void verify_pattern(const struct alloc *al)
{
    unsigned n = al->npages < MAX_TOUCH ? al->npages : MAX_TOUCH;
    for (unsigned j = 0; j < n; j++)
        for (unsigned w = 0; w < 2; w++)
            if (*word(al->pfn + touched(al, j), w) != pattern(al->id, touched(al, j), w))
                bug("allocation at phys 0x%llx (%u pages): page %u word %u was overwritten",
                    (unsigned long long)al->pfn << SHIFT, al->npages, touched(al, j), w);
}

static unsigned decode_flags(unsigned b)
{
    unsigned mask = b & 0x40 ? b & KMM_AREA_MASK : b & 7u;
    /* KMM_ZERO 1 time in 8: zeroing faults in every page, and kmm_drain punches them out again */
    return mask | ((b & 0xc8) == 0x88 ? KMM_ZERO : 0);
}

/* 1..1024 pages, mostly small: bits 0-9 a count, bits 10-12 how far to shift it down */
static uint32_t decode_npages(unsigned v)
{
    return 1 + ((v & 0x3ffu) >> ((v >> 10) & 7u));
}

enum kind { K_ORDER, K_ALIGNED, K_EXACT };

struct req {
    enum kind kind;
    unsigned order;
    uint32_t npages;
    size_t align, size;
    unsigned flags;
};

static void *do_req(const struct req *rq)
{
    switch (rq->kind) {
    case K_ORDER:
        return kmm_alloc_pages(mm, rq->order, rq->flags);
    case K_ALIGNED:
        return kmm_alloc_pages_aligned(mm, rq->npages, rq->align, rq->flags);
    case K_EXACT:
    default:
        return kmm_alloc_pages_exact(mm, rq->size, rq->flags);
    }
}

/* need: the order of the block the request takes; npages kept; align in pages */
static void alloc_op(const struct req *rq, uint32_t npages, unsigned need, uint32_t align)
{
    unsigned acc = rq->flags & KMM_AREA_MASK ? rq->flags & KMM_AREA_MASK : KMM_AREA_MASK;
    bool was_clean = cache_clean;
    void *p = do_req(rq);
    if (npages <= (1u << KMM_PCP_MAX_ORDER))
        cache_clean = false;
    if (!p) {
        for (unsigned a = 0; a < NR_AREAS; a++) {
            if ((acc & (1u << a)) && fit_exists(a, need)) {
                kmm_drain(mm);
                p = do_req(rq);
                bug("allocation (kind %d, %u pages, block order %u, flags 0x%x) failed though area %u has a free "
                    "aligned block of order %u (after kmm_drain it %s)", (int)rq->kind, npages, need, rq->flags, a,
                    need, p ? "succeeds: the block was in the thread's cache" : "fails too");
            }
        }
        return;
    }
    kmm_phys_t phys = kmm_virt_to_phys(mm, p);
    if (phys == KMM_PHYS_NONE || (phys & (PS - 1)))
        bug("allocation returned %p (phys 0x%llx): not a page of the direct map", p, (unsigned long long)phys);
    uint32_t pfn = (uint32_t)(phys >> SHIFT);
    if ((uint64_t)pfn + npages > NPAGES)
        bug("allocation at pfn %u + %u pages runs beyond memory", pfn, npages);
    if (pfn & (align - 1))
        bug("allocation at pfn %u not aligned to %u pages", pfn, align);
    unsigned a = area_of(pfn);
    if (!(acc & (1u << a)) || area_of(pfn + npages - 1) != a)
        bug("allocation at pfn %u + %u pages (flags 0x%x) not inside one accepted area", pfn, npages, rq->flags);
    for (uint32_t i = 0; i < npages; i++)
        if (owner[pfn + i] != OWNER_FREE)
            bug("allocation at pfn %u + %u pages overlaps %s at pfn %u", pfn, npages,
                owner[pfn + i] == OWNER_RESV ? "a reservation" : "a live allocation", pfn + i);
    /* with no cached blocks about, the highest accepted area that has a fitting block is taken */
    for (unsigned b = a + 1; was_clean && b < NR_AREAS; b++)
        if ((acc & (1u << b)) && fit_exists(b, need))
            bug("allocation (flags 0x%x) took area %u though the preferred area %u has a free block of order %u",
                rq->flags, a, b, need);
    if (kmm_page_alloc_size(mm, p) != npages)
        bug("kmm_page_alloc_size = %zu, expected %u", kmm_page_alloc_size(mm, p), npages);
    if (nlive == MAX_LIVE) {   /* the model is full: give it back at once */
        kmm_free_pages(mm, p);
        return;
    }
    struct alloc *al = &live[nlive++];
    al->pfn = pfn;
    al->npages = npages;
    al->id = ++next_id;
    for (uint32_t i = 0; i < npages; i++)
        owner[pfn + i] = al->id;
    if (rq->flags & KMM_ZERO) {
        unsigned n = npages < MAX_TOUCH ? npages : MAX_TOUCH;
        for (unsigned j = 0; j < n; j++)
            for (unsigned w = 0; w < 2; w++)
                if (*word(pfn + touched(al, j), w))
                    bug("KMM_ZERO allocation at pfn %u: page %u is not zero", pfn, touched(al, j));
    }
    write_pattern(al);
}

static void free_one(unsigned idx)
{
    struct alloc al = live[idx];
    verify_pattern(&al);
    if (kmm_page_alloc_size(mm, virt(al.pfn)) != al.npages)
        bug("kmm_page_alloc_size before free = %zu, expected %u", kmm_page_alloc_size(mm, virt(al.pfn)), al.npages);
    kmm_free_pages(mm, virt(al.pfn));
    if (al.npages <= (1u << KMM_PCP_MAX_ORDER))
        cache_clean = false;
    for (uint32_t i = 0; i < al.npages; i++)
        owner[al.pfn + i] = OWNER_FREE;
    live[idx] = live[--nlive];
}

static void unreserve_range(uint32_t pfn, uint32_t len)
{
    kmm_unreserve_pages(mm, (kmm_phys_t)pfn << SHIFT, len);
    for (uint32_t i = 0; i < len; i++)
        owner[pfn + i] = OWNER_FREE;
    resv_pages -= len;
}

/* Part of the run of reserved pages around the which-th reserved page: part
 * of one reservation or pieces of adjacent ones. */
static void unreserve_op(unsigned which, unsigned off, unsigned len)
{
    if (!resv_pages)
        return;
    uint32_t k = which % resv_pages, p = 0;
    for (;; p++)
        if (owner[p] == OWNER_RESV && k-- == 0)
            break;
    uint32_t lo = p, hi = p + 1;
    while (lo > 0 && owner[lo - 1] == OWNER_RESV)
        lo--;
    while (hi < NPAGES && owner[hi] == OWNER_RESV)
        hi++;
    uint32_t start = lo + off % (p - lo + 1), end = p + 1 + len % (hi - p);
    unreserve_range(start, end - start);
}

static void reserve_op(struct kmm_test_reader *r)
{
    uint32_t pfn = kmm_test_get16(r) % (NPAGES + 16);
    unsigned cb = kmm_test_get8(r), kind = kmm_test_get8(r);
    uint64_t n = 1 + (kind & 1 ? (uint64_t)cb * 8 : cb);
    kmm_phys_t phys = (kmm_phys_t)pfn << SHIFT;
    if (kind & 2)
        phys += 1 + (kind >> 2);                 /* misaligned */
    int expect;
    if ((phys & (PS - 1)) || pfn >= NPAGES || pfn + n > NPAGES) {
        expect = -KMM_EINVAL;
    } else {
        expect = 0;
        for (uint32_t i = 0; i < n; i++)
            if (owner[pfn + i] != OWNER_FREE)
                expect = -KMM_EBUSY;
    }
    int rc = kmm_reserve_pages(mm, phys, (size_t)n);
    if (rc == 0 || rc == -KMM_EBUSY)
        cache_clean = true;                      /* it drains the calling thread's caches first */
    if (rc != expect)
        bug("kmm_reserve_pages(phys 0x%llx, %llu pages) = %d, expected %d", (unsigned long long)phys,
            (unsigned long long)n, rc, expect);
    if (rc == 0) {
        for (uint32_t i = 0; i < n; i++)
            owner[pfn + i] = OWNER_RESV;
        resv_pages += (uint32_t)n;
    }
}

static void setup(void)
{
    struct kmm_config cfg = { .page_size = PS, .mem_size = (uint64_t)NPAGES * PS, .area_limits = limits,
                              .nr_areas = NR_AREAS };
    mm = kmm_create(&cfg);
    if (!mm)
        bug("kmm_create failed");
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    memcpy(init_nr_free, st.nr_free, sizeof(init_nr_free));
    if (st.total_pages != NPAGES)
        bug("total_pages %zu", st.total_pages);
}

static void finish(void)
{
    while (nlive)
        free_one(nlive - 1);
    for (uint32_t p = 0; p < NPAGES;) {    /* every maximal run of reserved pages at once */
        uint32_t q = p;
        while (q < NPAGES && owner[q] == OWNER_RESV)
            q++;
        if (q > p)
            unreserve_range(p, q - p);
        p = q + 1;
    }
    if (resv_pages)
        bug("model: %u reserved pages left", resv_pages);
    kmm_drain(mm);
    if (kmm_check(mm) != 0)
        bug("kmm_check failed at the end of the input");
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    if (st.free_pages != NPAGES || st.reserved_pages || st.cached_pages)
        bug("at the end: %zu free pages, %zu reserved, %zu cached", st.free_pages, st.reserved_pages, st.cached_pages);
    if (memcmp(st.nr_free, init_nr_free, sizeof(init_nr_free)) != 0)
        bug("at the end the free block counts differ from the initial ones");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kmm_test_on_fail(bug_head, NULL, true);
    if (!mm)
        setup();
    struct kmm_test_reader r = { data, size, 0 };
    op_no = 0;
    cache_clean = true;                          /* finish() drained */
    while (r.i < r.n) {
        op_no++;
        unsigned op = kmm_test_get8(&r) % 8;
        struct req rq;
        memset(&rq, 0, sizeof(rq));
        switch (op) {
        case 0:
        case 1:
            rq.kind = K_ORDER;
            rq.order = kmm_test_get8(&r);
            rq.order = rq.order & 0x80 ? (rq.order & 0x7f) % 12 : rq.order % (KMM_PCP_MAX_ORDER + 1);   /* 9: area 2 only; 10, 11: none */
            rq.flags = decode_flags(kmm_test_get8(&r));
            alloc_op(&rq, (uint32_t)1 << rq.order, rq.order, (uint32_t)1 << rq.order);
            break;
        case 2: {
            rq.kind = K_ALIGNED;
            rq.npages = decode_npages(kmm_test_get16(&r));
            unsigned a = kmm_test_get8(&r) % 16;
            rq.align = a == 0 ? 0 : a == 1 ? 512 : (size_t)PS << (a - 2);
            rq.flags = decode_flags(kmm_test_get8(&r));
            uint32_t align = rq.align > PS ? (uint32_t)(rq.align / PS) : 1;
            unsigned need = ceil_log2_u(rq.npages);
            if (((uint32_t)1 << need) < align)
                need = ceil_log2_u(align);
            alloc_op(&rq, rq.npages, need, align);
            break;
        }
        case 3: {
            rq.kind = K_EXACT;
            uint32_t pages = decode_npages(kmm_test_get16(&r));
            unsigned less = kmm_test_get16(&r) % PS;      /* a partial last page */
            rq.size = (size_t)pages * PS - less;   /* still needs all the pages */
            rq.flags = decode_flags(kmm_test_get8(&r));
            uint32_t npages = (uint32_t)((rq.size + PS - 1) / PS);
            alloc_op(&rq, npages, ceil_log2_u(npages), 1);
            break;
        }
        case 4:
        case 5: {
            unsigned v = kmm_test_get16(&r);
            if (nlive)
                free_one(v % nlive);
            break;
        }
        case 6:
            reserve_op(&r);
            break;
        default: {
            unsigned sel = kmm_test_get8(&r), which = kmm_test_get16(&r), off = kmm_test_get16(&r), len = kmm_test_get16(&r);
            if (sel % 4 == 0) {
                kmm_drain(mm);
                cache_clean = true;
            } else if (sel % 4 == 1) {
                if (kmm_check(mm) != 0)
                    bug("kmm_check failed");
            } else {
                unreserve_op(which, off, len);
            }
            break;
        }
        }
    }
    finish();
    return 0;
}
