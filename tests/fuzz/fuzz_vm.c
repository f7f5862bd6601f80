/* fuzz_vm.c - libFuzzer target for the vmalloc layer (kmm_vmalloc, kmm_vmap, kmm_kvmalloc).
 *
 * The input bytes are decoded into operations of the vmalloc layer on one of
 * two small memory systems (4 MiB of 4 KiB pages in three areas of 1, 1 and
 * 2 MiB; an 8 MiB vmalloc space; at most 256 mappings - so pages, addresses
 * and mappings all run out), one lazy and one strict (KMM_VMALLOC_STRICT),
 * picked by the first byte and created on first use (at most 512
 * operations per input under libFuzzer, 48 in the replay test, 24 under a
 * sanitizer there): kmm_vmalloc,
 * kmm_vmalloc_aligned, kmm_kvmalloc with area masks and KMM_ZERO,
 * kmm_realloc growing and shrinking, frees by kmm_vfree / kmm_free /
 * kmm_kvfree / kmm_realloc(p, 0), kmm_vmap of caller pages (read-write or
 * read-only, any order, repeats) and kmm_vunmap, kmm_vmalloc_to_phys,
 * kmm_vmalloc_set_tag, kmm_vmalloc_purge, kmm_drain, kmm_check, the stats
 * and listing, single pages held and released (fragmenting memory), and
 * armed fault injection (pages, metadata, map calls). Every result is
 * checked against a model of the live areas, as in tests/stress/vm_model.c:
 * alignment, the area and its guard page overlapping no live area (a sorted
 * array of ranges), the pattern of every area intact until it is freed and
 * across kmm_realloc, KMM_ZERO memory zeroed, kmm_vmalloc_to_phys of every
 * page the frame behind it (the caller's for a vmap) and of the guard page
 * KMM_PHYS_NONE, frames in the areas asked, kmm_vmalloc_stats and
 * kmm_vmalloc_info agreeing with the model (the layer's internal run-array
 * areas aside). A NULL must carry errno ENOMEM (EINVAL for bad arguments) and
 * be plausible: a failure was injected during the call, the mapping limit
 * refused it, no free or lazily freed range of the space holds it, or the
 * areas asked lack the pages (free or lazily freed). A mismatch prints what
 * went wrong and aborts.
 *
 * At the end of every input everything is freed, injection turned off,
 * kmm_vmalloc_purge and kmm_drain called: kmm_check must pass, the stats
 * must show no area, and the page allocator's free pages must be back at
 * their value after the memory system's first use, so every input starts
 * from the same state.
 *
 * Decoding: one byte chooses the operation (its value mod 16), the bytes
 * after it its arguments (missing bytes read as 0):
 *   0,1  kmm_vmalloc          size (1 + 2 bytes), flags
 *   2    kmm_vmalloc_aligned  alignment, size (1 + 2 bytes), flags
 *   3    kmm_kvmalloc         size (1 + 2 bytes), flags
 *   4    kmm_realloc          which (2 bytes), size (1 + 2 bytes), flags
 *   5,6  free                 which (2 bytes): how by its top bits
 *   7    kmm_vmap             count, prot, then one byte per page (the caller page)
 *   8    kmm_vunmap           which (2 bytes)
 *   9    kmm_vmalloc_to_phys  which (2 bytes), offset (2 bytes)
 *   10   purge / drain / check / stats and listing   selector
 *   11   kmm_fault_inject     sites, nth, times
 *   12   hold / release pages count (bit 7: release)
 *   13   kmm_vmalloc_set_tag  which (2 bytes)
 *   14   free several         count
 *   15   a write through a vmap area, checked in the direct map   which (2 bytes)
 * size: the first byte picks a range (mod 16: 0-5 up to a page, 6-10 up to 8
 * pages, 11-13 up to 64 pages, 14 with bit 4 set up to 512 pages, 15 with
 * bits 4 and 5 set up to 2048 pages: more than memory; 14 and 15 otherwise
 * up to 64 pages), the two after it the size in it. flags byte: bits 0-2 an
 * area mask when bits 4-5 are set; KMM_ZERO when bit 7 is set.
 *
 * Built with -fsanitize=fuzzer when KMM_FUZZ=ON, and with replay_main.c as an
 * ordinary program (test_vmalloc_fuzz_replay).
 */
#include "kmm_test.h"

#include <kmm.h>

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PS         4096u
#define NPAGES     1024u             /* 4 MiB */
#define NR_AREAS   3u
#define SPACE      (8u << 20)        /* the vmalloc space */
#define MAX_MAPS   256u
#define MAX_LIVE   64u
#define NHELD      32u               /* caller pages for kmm_vmap, held for good */
#define MAX_FRAG   256u              /* pages held to fragment memory */
#define MAX_VMAP   16u
#define FULL_LIMIT 1024u
#define SLACK      16u               /* pages the layer may need beside an area's own */

/* Operations per input. Under libFuzzer (its LLVMFuzzerRunDriver is linked
 * in) long sequences reach deep states; the replay test runs thousands of
 * random inputs, each paying for platform map calls, a purge and a drain,
 * so it keeps them short (shorter still under a sanitizer). */
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*cb)(const uint8_t *, size_t)) __attribute__((weak));
static unsigned max_ops(void)
{
    return LLVMFuzzerRunDriver ? 512u : KMM_TEST_SANITIZER ? 24u : 48u;
}

enum kind { K_VMALLOC, K_VMAP, K_KVSMALL };

struct area {
    unsigned char *p;
    size_t size, pages;              /* size asked (vmap: pages * PS); pages mapped (kvsmall: 0) */
    uint32_t id;                     /* the pattern (vmalloc, kvsmall) */
    uint8_t kind, prot;
    unsigned mask;                   /* area mask of its pages (0: any) */
    const char *tag;                 /* set by kmm_vmalloc_set_tag */
    uint8_t held[MAX_VMAP];          /* vmap: caller pages */
};

struct range {
    uintptr_t lo, hi;                /* the area and its guard page */
};

struct sys {
    struct kmm *mm;
    bool strict;
    uintptr_t lo, hi;                /* the space */
    size_t base_free;
    unsigned char *held[NHELD];
    uint32_t held_id[NHELD];
};

static const uint64_t limits[NR_AREAS] = { 1ull << 20, 2ull << 20, UINT64_MAX };
static struct sys systems[2];
static struct sys *S;                /* the one this input uses */
static struct kmm *mm;
static struct area live[MAX_LIVE];
static unsigned nlive;
static struct range sorted[MAX_LIVE];
static unsigned nsorted;
static void *frag[MAX_FRAG];
static unsigned nfrag;
static uint32_t next_id;
static unsigned long op_no;
static bool fault_armed;

/* What a failure report starts with (kmm_test_fail, which aborts here). */
static void bug_head(FILE *f)
{
    fprintf(f, "fuzz_vm (%s): op %lu: ", S && S->strict ? "strict" : "lazy", op_no);
}

#define bug(...) kmm_test_fail(__VA_ARGS__)

/* ---- patterns ------------------------------------------------------------------------- */

/* Which bytes carry the pattern of `written` bytes: all up to FULL_LIMIT;
 * beyond, the first and last 32 bytes of every page and the last 32. The
 * first and last bytes of every page are the ones a wrong mapping, an
 * overlap or a missing guard page would spoil. */
static const struct kmm_test_sampling carriers = { PS, FULL_LIMIT, 32 };

static void write_pattern(unsigned char *p, uint32_t id, size_t written)
{
    kmm_test_fill_sampled(p, id, written, &carriers);
}

static void verify_pattern(const unsigned char *p, uint32_t id, size_t written, size_t len, const char *when)
{
    size_t i = kmm_test_find_unlike(p, id, written, len, &carriers);
    if (i != SIZE_MAX)
        bug("%s: area %u at %p: byte %zu is 0x%02x, expected 0x%02x (overlap or corruption)", when, id,
            (const void *)p, i, p[i], kmm_test_pat(id, i));
}

static void verify_zero(const unsigned char *p, size_t from, size_t to, const char *what)
{
    size_t i = kmm_test_find_nonzero(p, from, to, &carriers);
    if (i != SIZE_MAX)
        bug("%s returned %p: byte %zu is 0x%02x, not zeroed", what, (const void *)p, i, p[i]);
}

/* A caller page's pattern: its first and last 32 bytes and the word in its middle. */
static bool page_carrier(size_t i)
{
    return i < 32 || i >= PS - 32 || (i >= PS / 2 && i < PS / 2 + 8);
}

static void held_write_at(unsigned char *at, uint32_t id)
{
    for (size_t i = 0; i < PS; i++)
        if (page_carrier(i))
            at[i] = kmm_test_pat(id, i);
}

static void held_write(unsigned h)
{
    S->held_id[h] = ++next_id;
    held_write_at(S->held[h], S->held_id[h]);
}

static void held_verify(unsigned h, const unsigned char *at, const char *when)
{
    for (size_t i = 0; i < PS; i++)
        if (page_carrier(i) && at[i] != kmm_test_pat(S->held_id[h], i))
            bug("%s: caller page %u seen at %p: byte %zu is 0x%02x, expected 0x%02x", when, h, (const void *)at, i,
                at[i], kmm_test_pat(S->held_id[h], i));
}

/* ---- the model ------------------------------------------------------------------------- */

static unsigned lower_bound(uintptr_t lo)
{
    unsigned a = 0, b = nsorted;
    while (a < b) {
        unsigned m = a + (b - a) / 2;
        if (sorted[m].lo < lo)
            a = m + 1;
        else
            b = m;
    }
    return a;
}

static void range_add(const struct area *a, const char *what)
{
    uintptr_t lo = (uintptr_t)a->p, hi = lo + (a->pages + 1) * PS;
    unsigned i = lower_bound(lo);
    if ((i < nsorted && sorted[i].lo < hi) || (i > 0 && sorted[i - 1].hi > lo))
        bug("%s returned %p (%zu pages + guard), overlapping a live area or its guard page", what, (void *)a->p,
            a->pages);
    if (lo < S->lo || hi > S->hi)
        bug("%s returned %p (%zu pages + guard), outside the vmalloc space", what, (void *)a->p, a->pages);
    memmove(&sorted[i + 1], &sorted[i], (nsorted - i) * sizeof(sorted[0]));
    sorted[i] = (struct range){ lo, hi };
    nsorted++;
}

static void range_del(const struct area *a)
{
    unsigned i = lower_bound((uintptr_t)a->p);
    if (i >= nsorted || sorted[i].lo != (uintptr_t)a->p)
        bug("model: area at %p not in the ranges", (void *)a->p);
    memmove(&sorted[i], &sorted[i + 1], (nsorted - i - 1) * sizeof(sorted[0]));
    nsorted--;
}

static bool in_live_range(uintptr_t x)
{
    unsigned i = lower_bound(x + 1);
    return i > 0 && sorted[i - 1].hi > x;
}

static unsigned area_of(kmm_phys_t ph)
{
    for (unsigned a = 0; a < NR_AREAS; a++)
        if (ph < limits[a])
            return a;
    return NR_AREAS;
}

/* ---- the layer's listing --------------------------------------------------------------------- */

#define INFO_CAP (3 * MAX_LIVE + 16)
static struct kmm_vmalloc_area_info info[INFO_CAP];
static unsigned ninfo;
static bool info_overflow;

static void info_cb(void *arg, const struct kmm_vmalloc_area_info *a)
{
    (void)arg;
    if (ninfo == INFO_CAP)
        info_overflow = true;
    else
        info[ninfo++] = *a;
}

static void list_areas(void)
{
    ninfo = 0;
    info_overflow = false;
    kmm_vmalloc_info(mm, info_cb, NULL);
    if (info_overflow)
        bug("kmm_vmalloc_info lists more than %u areas", INFO_CAP);
}

static bool is_internal(const struct kmm_vmalloc_area_info *e)
{
    return strcmp(e->kind, "vmalloc") == 0 && e->tag && strstr(e->tag, "run array");
}

/* Would pages (guard included) fit at align in a range where no live area is listed? */
static bool listing_fits(size_t pages, size_t align)
{
    list_areas();
    if (align < PS)
        align = PS;
    uintptr_t len = pages * PS, from = S->lo;
    for (unsigned i = 0; i <= ninfo; i++) {
        if (i < ninfo && strcmp(info[i].kind, "lazy-free") == 0)
            continue;
        uintptr_t to = i < ninfo ? info[i].start : S->hi;
        uintptr_t a = (from + align - 1) & ~(uintptr_t)(align - 1);
        if (a >= from && a <= to && to - a >= len)
            return true;
        if (i < ninfo)
            from = info[i].end;
    }
    return false;
}

/* The stats and the listing against the model. */
static void check_stats(void)
{
    struct kmm_vmalloc_stats st;
    list_areas();
    kmm_vmalloc_stats(mm, &st);
    size_t areas = 0, pages = 0, vmaps = 0, vmap_pages = 0, int_areas = 0, int_pages = 0, lazy = 0, maps = 1;
    for (unsigned i = 0; i < nlive; i++) {
        if (live[i].kind == K_VMAP) {
            vmaps++;
            vmap_pages += live[i].pages;
        } else if (live[i].kind == K_VMALLOC) {
            areas++;
            pages += live[i].pages;
        }
    }
    unsigned listed_live = 0;
    for (unsigned i = 0; i < ninfo; i++) {
        const struct kmm_vmalloc_area_info *e = &info[i];
        if ((i && e->start < info[i - 1].end) || e->end - e->start != (e->pages + 1) * PS || e->runs < 1 ||
            e->runs > e->pages || e->start < S->lo || e->end > S->hi)
            bug("kmm_vmalloc_info: area %#lx..%#lx (%zu pages, %zu runs) malformed or overlapping",
                (unsigned long)e->start, (unsigned long)e->end, e->pages, e->runs);
        maps += e->runs + 1;
        if (strcmp(e->kind, "lazy-free") == 0) {
            if (S->strict || in_live_range(e->start))
                bug("kmm_vmalloc_info lists a lazily freed area at %#lx (strict %d)", (unsigned long)e->start,
                    S->strict);
            lazy++;
            continue;
        }
        unsigned r = lower_bound(e->start);
        if (r < nsorted && sorted[r].lo == e->start) {
            if (sorted[r].hi != e->end)
                bug("kmm_vmalloc_info: area at %#lx ends at %#lx; the model's at %#lx", (unsigned long)e->start,
                    (unsigned long)e->end, (unsigned long)sorted[r].hi);
            listed_live++;
            for (unsigned k = 0; k < nlive; k++)
                if ((uintptr_t)live[k].p == e->start) {
                    const struct area *a = &live[k];
                    const char *kind = a->kind == K_VMAP ? (a->prot & KMM_PROT_WRITE ? "vmap" : "vmap-ro") : "vmalloc";
                    if (strcmp(kind, e->kind) != 0 || e->size != a->size || e->pages != a->pages ||
                        (a->tag && (!e->tag || strcmp(a->tag, e->tag) != 0)))
                        bug("kmm_vmalloc_info: %s %#lx, %zu bytes, %zu pages, tag %s; the model: %s, %zu bytes, %zu "
                            "pages, tag %s", e->kind, (unsigned long)e->start, e->size, e->pages, e->tag, kind,
                            a->size, a->pages, a->tag ? a->tag : "-");
                }
        } else if (is_internal(e) && !in_live_range(e->start)) {
            int_areas++;
            int_pages += e->pages;
        } else {
            bug("kmm_vmalloc_info lists a %s area \"%s\" at %#lx the model does not have", e->kind,
                e->tag ? e->tag : "-", (unsigned long)e->start);
        }
    }
    if (listed_live != nsorted || st.areas != areas + int_areas || st.pages != pages + int_pages ||
        st.vmap_areas != vmaps || st.vmap_pages != vmap_pages || st.lazy_areas != lazy || st.mappings != maps ||
        st.mappings > st.max_mappings || st.free_bytes > st.space_bytes || st.largest_free_bytes > st.free_bytes)
        bug("kmm_vmalloc_stats: %zu areas (%zu pages), %zu vmap (%zu pages), %zu lazy, %zu mappings (limit %zu), "
            "free %zu of %zu; the model: %zu (%zu) + %zu internal (%zu), %zu (%zu), listed %u of %u live, %zu lazy, "
            "%zu mappings", st.areas, st.pages, st.vmap_areas, st.vmap_pages, st.lazy_areas, st.mappings,
            st.max_mappings, st.free_bytes, st.space_bytes, areas, pages, int_areas, int_pages, vmaps, vmap_pages,
            listed_live, nsorted, lazy, maps);
}

/* Free pages in the areas a mask accepts, plus those of lazily freed areas. */
static size_t pages_available(unsigned mask)
{
    struct kmm_page_stats st;
    struct kmm_vmalloc_stats vs;
    kmm_page_stats(mm, &st);
    kmm_vmalloc_stats(mm, &vs);
    unsigned acc = mask ? mask : KMM_AREA_MASK;
    size_t n = st.cached_pages + vs.lazy_pages;
    for (unsigned a = 0; a < st.nr_areas; a++)
        if (acc & KMM_AREA(a))
            n += st.area[a].free_pages;
    return n;
}

/* A NULL result of an allocation of pages (0: a kmm_malloc object) at align. */
static void check_failure(int err, unsigned long injected_before, unsigned long refused_before, size_t pages,
                          size_t align, unsigned mask, const char *what)
{
    if (err != ENOMEM)
        bug("%s returned NULL with errno %d, expected ENOMEM", what, err);
    check_stats();
    if (fault_armed && kmm_fault_injected(mm) != injected_before)
        return;
    struct kmm_vmalloc_stats st;
    kmm_vmalloc_stats(mm, &st);
    if (st.refused_mappings != refused_before)
        return;
    size_t run_array = (4 * pages * 16 + PS - 1) / PS + 2;
    if (pages && !listing_fits(pages + 1 + run_array, align))
        return;
    size_t avail = pages_available(mask);
    if (avail < pages + run_array + SLACK)
        return;
    bug("%s returned NULL: no failure injected, no mapping refused, the space has room and %zu pages are free "
        "(or lazily freed) in the areas asked (0x%x)", what, avail, mask);
}

/* Checks a new area (p, size, pages, kind, mask, prot, held filled in), records it and writes its pattern. */
static void adopt(struct area *a, size_t align, size_t zero_from, const char *what)
{
    if (a->kind == K_KVSMALL) {
        if (((uintptr_t)a->p & 15) || kmm_usable_size(mm, a->p) < a->size)
            bug("%s returned %p, misaligned or too small", what, (void *)a->p);
    } else {
        if (align < PS)
            align = PS;
        if (((uintptr_t)a->p & (align - 1)) || !kmm_is_vmalloc_addr(mm, a->p))
            bug("%s returned %p, not aligned to %zu or not in the vmalloc space", what, (void *)a->p, align);
        if (a->kind == K_VMALLOC && kmm_usable_size(mm, a->p) != a->pages * PS)
            bug("%s returned %p: usable size %zu, expected %zu pages", what, (void *)a->p, kmm_usable_size(mm, a->p),
                a->pages);
        for (size_t i = 0; i < a->pages; i++) {
            kmm_phys_t ph = kmm_vmalloc_to_phys(mm, a->p + i * PS + 40);
            if (ph == KMM_PHYS_NONE || (ph & (PS - 1)) != 40)
                bug("%s returned %p: page %zu not mapped (%#llx)", what, (void *)a->p, i, (unsigned long long)ph);
            if (a->kind == K_VMAP && ph != kmm_virt_to_phys(mm, S->held[a->held[i]]) + 40)
                bug("%s returned %p: page %zu is not the caller's", what, (void *)a->p, i);
            if (a->kind == K_VMALLOC && a->mask && !(a->mask & KMM_AREA(area_of(ph))))
                bug("%s (areas 0x%x) returned %p: page %zu at %#llx is outside them", what, a->mask, (void *)a->p, i,
                    (unsigned long long)ph);
        }
        if (kmm_vmalloc_to_phys(mm, a->p + a->pages * PS) != KMM_PHYS_NONE)
            bug("%s returned %p: its guard page is mapped", what, (void *)a->p);
    }
    if (zero_from < a->size)
        verify_zero(a->p, zero_from, a->size, what);
    if (nlive == MAX_LIVE) {                      /* the model is full: give it back */
        if (a->kind == K_VMAP)
            kmm_vunmap(mm, a->p);
        else
            kmm_kvfree(mm, a->p);
        return;
    }
    if (a->kind != K_KVSMALL)
        range_add(a, what);
    if (a->kind == K_VMAP) {
        for (size_t i = 0; i < a->pages; i++)
            held_verify(a->held[i], a->p + i * PS, what);
    } else {
        a->id = ++next_id;
        write_pattern(a->p, a->id, a->size);
    }
    live[nlive++] = *a;
}

static void verify_area(const struct area *a, const char *when)
{
    if (a->kind == K_VMAP)
        for (size_t i = 0; i < a->pages; i++)
            held_verify(a->held[i], a->p + i * PS, when);
    else
        verify_pattern(a->p, a->id, a->size, a->size, when);
}

static void free_index(unsigned idx, unsigned how)
{
    struct area a = live[idx];
    verify_area(&a, "before the free");
    live[idx] = live[--nlive];
    if (a.kind != K_KVSMALL)
        range_del(&a);
    if (a.kind == K_VMAP) {
        kmm_vunmap(mm, a.p);
    } else if (a.kind == K_KVSMALL || how % 4 == 0) {
        kmm_kvfree(mm, a.p);
    } else if (how % 4 == 1) {
        kmm_free(mm, a.p);
    } else if (how % 4 == 2) {
        if (kmm_realloc(mm, a.p, 0, 0) != NULL)
            bug("kmm_realloc(p, 0) did not return NULL");
    } else {
        kmm_vfree(mm, a.p);
    }
    if (a.kind != K_KVSMALL && !in_live_range((uintptr_t)a.p) && kmm_vmalloc_to_phys(mm, a.p) != KMM_PHYS_NONE) {
        list_areas();                            /* an internal area may have taken the range at once */
        bool internal = false;
        for (unsigned i = 0; i < ninfo; i++)
            internal |= is_internal(&info[i]) && info[i].start <= (uintptr_t)a.p && (uintptr_t)a.p < info[i].end;
        if (!internal)
            bug("kmm_vmalloc_to_phys(%p) of a freed area is not KMM_PHYS_NONE", (void *)a.p);
    }
}

/* ---- decoding -------------------------------------------------------------------------------- */

static size_t decode_size(struct kmm_test_reader *r)
{
    unsigned b = kmm_test_get8(r), sel = b % 16, v = kmm_test_get16(r);
    if (sel < 6)
        return 1 + v % PS;
    if (sel < 11)
        return 1 + v % (8 * PS);
    if (sel < 14 || (sel == 14 && !(b & 0x10)) || (sel == 15 && (b & 0x30) != 0x30))
        return 1 + (size_t)v * 4 % (64 * PS);
    if (sel == 14)
        return 1 + (size_t)v * 32 % (512 * PS);
    return 1 + (size_t)v * 128 % (2048 * PS);
}

static unsigned decode_flags(unsigned b)
{
    unsigned mask = (b & 0x30) == 0x30 ? b & 7u : 0;
    return mask | (b & 0x80 ? KMM_ZERO : 0);
}

static unsigned pick(unsigned w, bool (*ok)(const struct area *))
{
    for (unsigned t = 0; t < nlive; t++) {
        unsigned i = (w + t * 7) % nlive;
        if (ok(&live[i]))
            return i;
    }
    return MAX_LIVE;
}

static bool is_vmalloc(const struct area *a) { return a->kind == K_VMALLOC; }
static bool is_vmap(const struct area *a) { return a->kind == K_VMAP; }
static bool in_space(const struct area *a) { return a->kind != K_KVSMALL; }

/* ---- operations --------------------------------------------------------------------------------- */

static void op_alloc(struct kmm_test_reader *r, unsigned kind)
{
    size_t align = 0;
    unsigned ab = kind == 1 ? kmm_test_get8(r) : 0;
    size_t size = decode_size(r);
    unsigned flags = decode_flags(kmm_test_get8(r));
    char what[96];
    struct kmm_vmalloc_stats st;
    kmm_vmalloc_stats(mm, &st);
    unsigned long injected = kmm_fault_injected(mm);
    unsigned char *p;
    errno = 0;
    if (kind == 0) {
        p = kmm_vmalloc(mm, size, flags);
        snprintf(what, sizeof(what), "kmm_vmalloc(%zu, 0x%x)", size, flags);
    } else if (kind == 1) {
        align = (size_t)1 << (ab % 24);                 /* up to 8 MiB: the whole space */
        if (ab & 0x80)
            align = ab & 0x40 ? 0 : align * 3;         /* not a power of two */
        p = kmm_vmalloc_aligned(mm, size, align, flags);
        snprintf(what, sizeof(what), "kmm_vmalloc_aligned(%zu, %zu, 0x%x)", size, align, flags);
        if (align & (align - 1)) {
            if (p || errno != EINVAL)
                bug("%s = %p, errno %d: expected NULL, EINVAL", what, (void *)p, errno);
            return;
        }
    } else {
        p = kmm_kvmalloc(mm, size, flags);
        snprintf(what, sizeof(what), "kmm_kvmalloc(%zu, 0x%x)", size, flags);
    }
    struct area a;
    memset(&a, 0, sizeof(a));
    a.size = size;
    a.mask = flags & KMM_AREA_MASK;
    a.kind = kind == 2 && size <= PS && p && !kmm_is_vmalloc_addr(mm, p) ? K_KVSMALL : K_VMALLOC;
    a.pages = a.kind == K_KVSMALL ? 0 : (size + PS - 1) / PS;
    if (!p) {
        /* kvmalloc up to a page: a slab of up to 8 pages, or one vmalloc page */
        check_failure(errno, injected, st.refused_mappings, kind == 2 && size <= PS ? 8 : a.pages, align, a.mask,
                      what);
        return;
    }
    a.p = p;
    adopt(&a, align, flags & KMM_ZERO ? 0 : SIZE_MAX, what);
}

static void op_realloc(struct kmm_test_reader *r)
{
    unsigned w = kmm_test_get16(r);
    size_t size = decode_size(r);
    unsigned flags = decode_flags(kmm_test_get8(r));
    unsigned idx = pick(w, is_vmalloc);
    if (idx == MAX_LIVE)
        return;
    struct area old = live[idx];
    char what[128];
    snprintf(what, sizeof(what), "kmm_realloc(%p [%zu bytes], %zu, 0x%x)", (void *)old.p, old.size, size, flags);
    verify_area(&old, what);
    struct kmm_vmalloc_stats st;
    kmm_vmalloc_stats(mm, &st);
    unsigned long injected = kmm_fault_injected(mm);
    errno = 0;
    unsigned char *p = kmm_realloc(mm, old.p, size, flags);
    if (!p) {
        check_failure(errno, injected, st.refused_mappings, (size + PS - 1) / PS, 0, flags & KMM_AREA_MASK, what);
        verify_area(&old, "after a failed kmm_realloc");
        if (kmm_usable_size(mm, old.p) != old.pages * PS)
            bug("%s failed and changed the usable size", what);
        return;
    }
    size_t keep = old.size < size ? old.size : size;
    verify_pattern(p, old.id, old.size, keep, what);
    live[idx] = live[--nlive];
    range_del(&old);
    struct area a = old;
    a.p = p;
    a.size = size;
    a.pages = (size + PS - 1) / PS;
    /* moved: all pages from the realloc's areas; in place: the old pages, and any new ones from the realloc's */
    unsigned rmask = flags & KMM_AREA_MASK;
    if (p != old.p)
        a.mask = rmask;
    else if (a.pages > old.pages && old.mask != rmask)
        a.mask = 0;                               /* pages of two masks: none to check */
    if (p != old.p)
        a.tag = NULL;
    adopt(&a, 0, flags & KMM_ZERO ? old.size : SIZE_MAX, what);
}

static void op_vmap(struct kmm_test_reader *r)
{
    unsigned n = 1 + kmm_test_get8(r) % MAX_VMAP, pb = kmm_test_get8(r);
    struct area a;
    memset(&a, 0, sizeof(a));
    kmm_phys_t phys[MAX_VMAP];
    for (unsigned i = 0; i < n; i++) {
        a.held[i] = (uint8_t)(kmm_test_get8(r) % NHELD);
        phys[i] = kmm_virt_to_phys(mm, S->held[a.held[i]]);
    }
    unsigned prot = pb & 1 ? KMM_PROT_READ : KMM_PROT_READ | KMM_PROT_WRITE;
    if ((pb & 0xe0) == 0xe0)
        prot = pb & 2 ? KMM_PROT_WRITE : 0;       /* bad: no read */
    char what[64];
    snprintf(what, sizeof(what), "kmm_vmap(%u pages, prot %u)", n, prot);
    struct kmm_vmalloc_stats st;
    kmm_vmalloc_stats(mm, &st);
    unsigned long injected = kmm_fault_injected(mm);
    errno = 0;
    a.p = kmm_vmap(mm, phys, n, prot);
    if (!(prot & KMM_PROT_READ)) {
        if (a.p || errno != EINVAL)
            bug("%s = %p, errno %d: expected NULL, EINVAL", what, (void *)a.p, errno);
        return;
    }
    if (!a.p) {
        check_failure(errno, injected, st.refused_mappings, n, 0, 0, what);
        return;
    }
    a.size = n * PS;
    a.pages = n;
    a.kind = K_VMAP;
    a.prot = (uint8_t)prot;
    adopt(&a, 0, SIZE_MAX, what);
}

static void op_phys(struct kmm_test_reader *r)
{
    unsigned w = kmm_test_get16(r), off = kmm_test_get16(r);
    unsigned idx = pick(w, in_space);
    if (idx == MAX_LIVE) {
        uintptr_t x = S->lo + (uintptr_t)off * 128;      /* an address of no live area */
        if (!in_live_range(x) && kmm_vmalloc_to_phys(mm, (void *)x) != KMM_PHYS_NONE) {
            list_areas();
            for (unsigned i = 0; i < ninfo; i++)
                if (is_internal(&info[i]) && info[i].start <= x && x < info[i].end)
                    return;
            bug("kmm_vmalloc_to_phys(%#lx), of no live area, is not KMM_PHYS_NONE", (unsigned long)x);
        }
        return;
    }
    const struct area *a = &live[idx];
    size_t o = off % (a->pages * PS + PS);                /* the guard page too */
    kmm_phys_t ph = kmm_vmalloc_to_phys(mm, a->p + o);
    if (o >= a->pages * PS) {
        if (ph != KMM_PHYS_NONE)
            bug("kmm_vmalloc_to_phys of the guard page of %p = %#llx", (void *)a->p, (unsigned long long)ph);
        return;
    }
    const unsigned char *d = ph == KMM_PHYS_NONE ? NULL : kmm_phys_to_virt(mm, ph);
    if (!d || (ph & (PS - 1)) != (o & (PS - 1)) || *d != a->p[o])
        bug("kmm_vmalloc_to_phys(%p + %zu) = %#llx: not the frame behind it", (void *)a->p, o, (unsigned long long)ph);
}

static void op_vmap_write(struct kmm_test_reader *r)
{
    unsigned w = kmm_test_get16(r);
    unsigned idx = pick(w, is_vmap);
    if (idx == MAX_LIVE || !(live[idx].prot & KMM_PROT_WRITE))
        return;
    const struct area *a = &live[idx];
    unsigned i = w % a->pages, h = a->held[i];
    S->held_id[h] = ++next_id;                          /* written through the vmap area... */
    held_write_at(a->p + i * PS, S->held_id[h]);
    held_verify(h, S->held[h], "a caller page written through kmm_vmap");   /* ...seen in the direct map */
}

static void op_misc(struct kmm_test_reader *r)
{
    unsigned sel = kmm_test_get8(r) % 5;
    if (sel == 0) {
        struct kmm_vmalloc_stats st;
        kmm_vmalloc_stats(mm, &st);
        size_t got = kmm_vmalloc_purge(mm);
        if (got != st.lazy_pages)
            bug("kmm_vmalloc_purge returned %zu; %zu pages were lazily freed", got, st.lazy_pages);
        kmm_vmalloc_stats(mm, &st);
        if (st.lazy_areas)
            bug("%zu lazy areas after kmm_vmalloc_purge", st.lazy_areas);
    } else if (sel == 1) {
        kmm_drain(mm);
    } else if (sel == 2) {
        if (kmm_check(mm) != 0)
            bug("kmm_check failed");
    } else {
        check_stats();
    }
}

static void op_frag(struct kmm_test_reader *r)
{
    unsigned c = kmm_test_get8(r);
    if (c & 0x80) {
        for (unsigned n = c & 0x7f; n-- && nfrag;)
            kmm_free_pages(mm, frag[--nfrag]);
        return;
    }
    for (unsigned n = c; n-- && nfrag < MAX_FRAG;) {    /* take two, keep one */
        void *a = kmm_alloc_pages(mm, 0, 0), *b = kmm_alloc_pages(mm, 0, 0);
        if (a)
            frag[nfrag++] = a;
        if (b)
            kmm_free_pages(mm, b);
        if (!a)
            break;
    }
}

static void op_tag(struct kmm_test_reader *r)
{
    static const char *const tags[] = { "fuzz-a", "fuzz-b" };
    unsigned w = kmm_test_get16(r);
    unsigned idx = pick(w, in_space);
    if (idx == MAX_LIVE)
        return;
    kmm_vmalloc_set_tag(mm, live[idx].p, tags[w & 1]);
    live[idx].tag = tags[w & 1];
}

/* ---- set-up and the end of an input --------------------------------------------------------------- */

static void setup(struct sys *s, bool strict)
{
    struct kmm_config cfg = { .page_size = PS, .mem_size = (uint64_t)NPAGES * PS, .area_limits = limits,
                              .nr_areas = NR_AREAS, .vmalloc_size = SPACE, .vmalloc_max_mappings = MAX_MAPS,
                              .vmalloc_flags = strict ? KMM_VMALLOC_STRICT : 0 };
    s->mm = mm = kmm_create(&cfg);
    if (!mm)
        bug("kmm_create failed");
    s->strict = strict;
    void *first = kmm_vmalloc(mm, PS, 0);             /* the first area starts the space */
    struct kmm_vmalloc_stats st;
    kmm_vmalloc_stats(mm, &st);
    if (!first || st.space_bytes != SPACE || st.max_mappings != MAX_MAPS)
        bug("the first kmm_vmalloc = %p; space %zu, %zu mappings at most", first, st.space_bytes, st.max_mappings);
    s->lo = (uintptr_t)first;
    s->hi = s->lo + SPACE;
    kmm_vfree(mm, first);
    for (unsigned i = 0; i < NHELD; i++) {
        s->held[i] = kmm_alloc_pages(mm, 0, 0);
        if (!s->held[i])
            bug("kmm_alloc_pages failed");
    }
    kmm_vmalloc_purge(mm);
    kmm_drain(mm);
    struct kmm_page_stats ps;
    kmm_page_stats(mm, &ps);
    s->base_free = ps.free_pages;
}

static void finish(void)
{
    if (fault_armed) {
        kmm_fault_inject(mm, 0, 0, 0);
        fault_armed = false;
    }
    check_stats();
    while (nlive)
        free_index(nlive - 1, nlive);
    while (nfrag)
        kmm_free_pages(mm, frag[--nfrag]);
    kmm_vmalloc_purge(mm);
    kmm_drain(mm);
    if (kmm_check(mm) != 0)
        bug("kmm_check failed at the end of the input");
    check_stats();
    struct kmm_vmalloc_stats st;
    kmm_vmalloc_stats(mm, &st);
    if (st.areas || st.vmap_areas || st.lazy_areas || st.mappings != 1 || st.free_ranges != 1)
        bug("at the end: %zu areas, %zu vmap areas, %zu lazy, %zu mappings, %zu free ranges", st.areas, st.vmap_areas,
            st.lazy_areas, st.mappings, st.free_ranges);
    struct kmm_page_stats ps;
    kmm_page_stats(mm, &ps);
    if (ps.free_pages != S->base_free)
        bug("at the end, everything freed and drained, %zu pages are free (%zu after the first use)", ps.free_pages,
            S->base_free);
    for (unsigned i = 0; i < NHELD; i++)
        held_verify(i, S->held[i], "a caller page at the end");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kmm_test_on_fail(bug_head, NULL, true);
    struct kmm_test_reader r = { data, size, 0 };
    unsigned which = kmm_test_get8(&r) & 1;
    S = &systems[which];
    if (!S->mm) {
        setup(S, which == 1);
        for (unsigned i = 0; i < NHELD; i++)
            held_write(i);
    }
    mm = S->mm;
    op_no = 0;
    unsigned limit = max_ops();
    while (r.i < r.n && op_no < limit) {
        op_no++;
        unsigned op = kmm_test_get8(&r) % 16;
        switch (op) {
        case 0:
        case 1:
            op_alloc(&r, 0);
            break;
        case 2:
            op_alloc(&r, 1);
            break;
        case 3:
            op_alloc(&r, 2);
            break;
        case 4:
            op_realloc(&r);
            break;
        case 5:
        case 6: {
            unsigned w = kmm_test_get16(&r);
            if (nlive)
                free_index(w % nlive, w >> 12);
            break;
        }
        case 7:
            op_vmap(&r);
            break;
        case 8: {
            unsigned idx = pick(kmm_test_get16(&r), is_vmap);
            if (idx != MAX_LIVE)
                free_index(idx, 0);
            break;
        }
        case 9:
            op_phys(&r);
            break;
        case 10:
            op_misc(&r);
            break;
        case 11: {
            unsigned sites = 1 + kmm_test_get8(&r) % 7, nth = kmm_test_get8(&r), times = kmm_test_get8(&r) % 4;
            if (nth % 4 == 0) {
                kmm_fault_inject(mm, 0, 0, 0);
                fault_armed = false;
            } else {
                kmm_fault_inject(mm, sites, 1 + nth % 32, times);
                fault_armed = true;
            }
            break;
        }
        case 12:
            op_frag(&r);
            break;
        case 13:
            op_tag(&r);
            break;
        case 14: {
            unsigned cnt = kmm_test_get8(&r) % 16;
            while (cnt-- && nlive)
                free_index(nlive - 1, cnt);
            break;
        }
        default:
            op_vmap_write(&r);
            break;
        }
    }
    finish();
    return 0;
}
