/* vm_fault.c - injected failures of the vmalloc layer's page, metadata and mapping calls.
 *
 * kmm_fault_inject(mm, sites, k, times) makes the k-th call at the chosen
 * sites fail - KMM_FAULT_PAGES (the pages of an area), KMM_FAULT_META (area
 * nodes, run arrays, the space's own structures) and KMM_FAULT_MAP (the
 * platform's map calls) - only that one (times 1), or every one from the k-th
 * on (times 0). For each of the sites together and each alone, in both modes,
 * k runs over 1, 2, ... 32 (16 for a site alone, 8 under a sanitizer) and
 * then grows by a quarter (a third) each step, until a run injects nothing; odd k run in strict mode, even k lazy. Each run is a
 * fresh memory system of 8 MiB (areas below 2 MiB and above) that runs a
 * fixed script:
 *
 *  - contiguous memory: kmm_vmalloc of 1 byte .. 400 KiB (KMM_ZERO, area
 *    mask), kmm_vmalloc_aligned (64 KiB, 2 MiB), kmm_kvmalloc on both sides
 *    of the one-page rule, kmm_vmap of caller pages read-write and read-only,
 *    an area grown and shrunk by kmm_realloc in place and one that must move,
 *    frees by kmm_vfree / kmm_free / kmm_kvfree, kmm_vmalloc_purge, a lazily
 *    freed area taken back by an allocation of its size;
 *  - then every free page is taken and every other one given back, so that
 *    free memory is single pages: areas of 40 and 60 pages (one run per page:
 *    run arrays of 128 runs, 2 KiB, mapped whole as metadata), a kmm_kvmalloc that
 *    kmm_malloc cannot serve, a realloc growing a fragmented area, a vmap of
 *    24 scattered pages, an aligned area.
 *
 * Every call either succeeds fully or returns NULL leaving everything as it
 * was:
 *  - a NULL has errno ENOMEM and comes only when a failure was injected
 *    during that very call; kmm_vmalloc_stats (areas, pages, vmap areas and
 *    pages, mappings) is as before it, kmm_check passes, and with one failure
 *    only (times 1) the same call made again succeeds; a failed kmm_realloc
 *    leaves the area, its contents and its size as they were (it may keep
 *    the larger run array it made on the way - an internal vmalloc area on a
 *    platform without meta_alloc - which goes with the area: counted, not a leak);
 *  - a success is a whole area: page aligned, aligned as asked, every page
 *    behind a frame (kmm_vmalloc_to_phys), the guard page not, KMM_ZERO
 *    memory zero, the caller's pages for a vmap; it is filled with a pattern
 *    checked before it is freed; kmm_vmalloc_stats and kmm_vmalloc_info agree
 *    with what the script holds (plus the layer's internal run-array areas);
 *  - at the end, injection off, everything freed, kmm_vmalloc_purge and
 *    kmm_drain: kmm_check passes, no area, page, vmap or lazy area is left,
 *    one mapping (the reservation) and one free range, and the page
 *    allocator's free pages are back at their value before the script; the
 *    layer still works. kmm_fault_injected() > 0 for every k up to 8: the
 *    failure was really hit.
 *
 * Then the first use of the vmalloc space itself (its creation) under
 * injection, k = 1, 2, ... until nothing is injected: NULL or a working
 * area, no pages lost.
 */
#include "kmm_test.h"

#include <kmm.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PS        4096u
#define MEM       (8ull << 20)      /* small: fragmenting it touches every page */
#define AREA0_END (2ull << 20)      /* two areas: below 2 MiB, and the rest */

static const uint64_t area_limits[2] = { AREA0_END, UINT64_MAX };
#define MAX_OBJS  64
#define NHELD     48                 /* caller pages for kmm_vmap */

enum okind { O_VMALLOC, O_VMAP, O_KVSMALL };

struct obj {
    unsigned char *p;
    size_t size;                     /* asked (vmap: pages * PS) */
    size_t pages;                    /* 0: kmm_malloc memory */
    uint64_t tag;                    /* the pattern's seed (vmap: none, the caller pages carry theirs) */
    enum okind kind;
    const size_t *held;              /* vmap: indices of the caller pages, in order */
};

struct run {
    struct kmm *mm;
    unsigned sites;
    unsigned long k, times;
    bool strict;
    struct obj objs[MAX_OBJS];
    size_t n;
    uint64_t tag;
    void *held[NHELD];               /* caller pages, each filled with its own pattern */
    void **frag;                     /* the pages that fragment memory */
    size_t nfrag;
    size_t base_free;
    unsigned long calls, nulls, retried, kept_run_arrays;
};

static const char *run_mode;
static unsigned long run_k;

/* What a failure report (kmm_test_fail) starts with. */
static void die_head(FILE *f)
{
    fprintf(f, "vm_fault FAILED (%s, k = %lu): ", run_mode, run_k);
}

#define die(...) kmm_test_fail(__VA_ARGS__)

/* ---- patterns ------------------------------------------------------------------------ */

/* The bytes that carry the pattern: every byte up to 8 KiB; beyond, the
 * first and last 64 bytes of every page and the last 64 bytes. */
static const struct kmm_test_sampling sampled = { PS, 8192, 64 };

static void fill(unsigned char *p, uint64_t tag, size_t size)
{
    kmm_test_fill_sampled(p, tag, size, &sampled);
}

/* The first len bytes of a fill of size bytes with tag. */
static void verify(const unsigned char *p, uint64_t tag, size_t size, size_t len, const char *when)
{
    size_t bad = kmm_test_find_unlike(p, tag, size, len, &sampled);
    if (bad != SIZE_MAX)
        die("%s: %p (%zu bytes): byte %zu is 0x%02x, expected 0x%02x", when, (const void *)p, size, bad, p[bad],
            kmm_test_pat(tag, bad));
}

/* Bytes [from, size) zero (sampled as the pattern is)? */
static void verify_zero(const unsigned char *p, size_t from, size_t size, const char *when)
{
    size_t bad = kmm_test_find_nonzero(p, from, size, &sampled);
    if (bad != SIZE_MAX)
        die("%s returned %p: byte %zu is 0x%02x, not zeroed", when, (const void *)p, bad, p[bad]);
}

static void held_fill(struct run *r, size_t i)
{
    fill(r->held[i], 0xc0ffee00u + i, PS);
}

static void held_verify(struct run *r, size_t i, const unsigned char *at, const char *when)
{
    verify(at, 0xc0ffee00u + i, PS, PS, when);
    (void)r;
}

/* ---- the layer's view -------------------------------------------------------------------- */

struct listing {
    size_t areas, pages, internal, internal_pages, lazy, runs;
};

static void list_cb(void *arg, const struct kmm_vmalloc_area_info *a)
{
    struct listing *l = arg;
    if (strcmp(a->kind, "lazy-free") == 0) {
        l->lazy++;
    } else if (strcmp(a->kind, "vmalloc") == 0 && a->tag && strstr(a->tag, "run array")) {
        l->internal++;
        l->internal_pages += a->pages;
    } else {
        l->areas++;
        l->pages += a->pages;
    }
    l->runs += a->runs + 1;
}

/* The stats against what the script holds and kmm_vmalloc_info lists. */
static void check_view(struct run *r, const char *when)
{
    size_t areas = 0, pages = 0, vmaps = 0, vmap_pages = 0;
    for (size_t i = 0; i < r->n; i++) {
        const struct obj *o = &r->objs[i];
        if (o->kind == O_VMAP) {
            vmaps++;
            vmap_pages += o->pages;
        } else if (o->pages) {
            areas++;
            pages += o->pages;
        }
    }
    struct listing l = { 0, 0, 0, 0, 0, 0 };
    kmm_vmalloc_info(r->mm, list_cb, &l);
    struct kmm_vmalloc_stats st;
    kmm_vmalloc_stats(r->mm, &st);
    if (st.areas != areas + l.internal || st.pages != pages + l.internal_pages || st.vmap_areas != vmaps ||
        st.vmap_pages != vmap_pages || l.areas != areas + vmaps || st.lazy_areas != l.lazy)
        die("%s: kmm_vmalloc_stats: %zu areas of %zu pages, %zu vmap areas of %zu pages, %zu lazy; the script holds "
            "%zu areas of %zu pages and %zu vmap areas of %zu pages; kmm_vmalloc_info lists %zu areas, %zu internal "
            "(%zu pages), %zu lazy", when, st.areas, st.pages, st.vmap_areas, st.vmap_pages, st.lazy_areas, areas,
            pages, vmaps, vmap_pages, l.areas, l.internal, l.internal_pages, l.lazy);
    if (st.space_bytes && st.mappings != l.runs + 1)
        die("%s: %zu mappings counted, the areas listed hold %zu", when, st.mappings, l.runs + 1);
    if (r->strict && st.lazy_areas)
        die("%s: strict mode, yet %zu lazy areas", when, st.lazy_areas);
}

/* ---- one call, checked ------------------------------------------------------------------- */

enum op { OP_VMALLOC, OP_ALIGNED, OP_KVMALLOC, OP_VMAP };

struct call {
    enum op op;
    size_t size, align;
    unsigned flags;                  /* vmap: prot */
    const size_t *held;              /* vmap: caller pages (indices), size = how many */
};

static void describe(const struct call *c, char *buf, size_t len)
{
    static const char *const names[] = { "kmm_vmalloc", "kmm_vmalloc_aligned", "kmm_kvmalloc", "kmm_vmap" };
    if (c->op == OP_VMAP)
        snprintf(buf, len, "kmm_vmap(%zu pages, prot %u)", c->size, c->flags);
    else
        snprintf(buf, len, "%s(%zu, align %zu, flags 0x%x)", names[c->op], c->size, c->align, c->flags);
}

static void *do_call(struct run *r, const struct call *c)
{
    switch (c->op) {
    case OP_VMALLOC:
        return kmm_vmalloc(r->mm, c->size, c->flags);
    case OP_ALIGNED:
        return kmm_vmalloc_aligned(r->mm, c->size, c->align, c->flags);
    case OP_KVMALLOC:
        return kmm_kvmalloc(r->mm, c->size, c->flags);
    default: {
        kmm_phys_t phys[64];
        for (size_t i = 0; i < c->size; i++)
            phys[i] = kmm_virt_to_phys(r->mm, r->held[c->held[i]]);
        return kmm_vmap(r->mm, phys, c->size, c->flags);
    }
    }
}

struct snap {
    struct kmm_vmalloc_stats st;
    struct listing l;
    unsigned long injected;
};

static void take_snap(struct run *r, struct snap *s)
{
    memset(&s->l, 0, sizeof(s->l));
    kmm_vmalloc_info(r->mm, list_cb, &s->l);
    kmm_vmalloc_stats(r->mm, &s->st);
    s->injected = kmm_fault_injected(r->mm);
}

/* A NULL: ENOMEM, injected during the call, nothing changed, kmm_check
 * passes. A failed kmm_realloc (grow_ok) may leave the area's run array
 * larger - a vmalloc'd internal area - which its free gives back. */
static void check_null(struct run *r, const struct snap *before, int err, const char *what, bool grow_ok)
{
    r->nulls++;
    if (kmm_fault_injected(r->mm) == before->injected)
        die("%s returned NULL (errno %d) without an injected failure", what, err);
    if (err != ENOMEM)
        die("%s returned NULL with errno %d, expected ENOMEM", what, err);
    struct snap now;
    take_snap(r, &now);
    /* a failed call may have purged lazily freed areas (their mappings go), nothing else */
    const struct kmm_vmalloc_stats *b = &before->st, *a = &now.st;
    bool internal_ok = grow_ok ? now.l.internal >= before->l.internal : now.l.internal == before->l.internal;
    if (now.l.areas != before->l.areas || now.l.pages != before->l.pages || !internal_ok ||
        a->vmap_areas != b->vmap_areas || a->vmap_pages != b->vmap_pages || a->lazy_areas > b->lazy_areas ||
        (!grow_ok && a->mappings > b->mappings))
        die("%s returned NULL but changed the stats: %zu -> %zu areas (%zu -> %zu pages; internal %zu -> %zu), "
            "%zu -> %zu vmap areas, %zu -> %zu mappings, %zu -> %zu lazy areas", what, before->l.areas, now.l.areas,
            before->l.pages, now.l.pages, before->l.internal, now.l.internal, b->vmap_areas, a->vmap_areas,
            b->mappings, a->mappings, b->lazy_areas, a->lazy_areas);
    if (now.l.internal > before->l.internal)
        r->kept_run_arrays++;
    if (kmm_check(r->mm) != 0)
        die("kmm_check failed after %s returned NULL", what);
    check_view(r, "after a NULL");
}

static void adopt(struct run *r, unsigned char *p, const struct call *c, const char *what)
{
    if (r->n == MAX_OBJS)
        die("test: too many objects");
    struct obj *o = &r->objs[r->n++];
    memset(o, 0, sizeof(*o));
    o->p = p;
    o->size = c->op == OP_VMAP ? c->size * PS : c->size;
    o->kind = c->op == OP_VMAP ? O_VMAP : O_VMALLOC;
    o->held = c->held;
    if (!kmm_is_vmalloc_addr(r->mm, p)) {
        if (c->op != OP_KVMALLOC || c->size > PS)
            die("%s returned %p, not in the vmalloc space", what, (void *)p);
        o->kind = O_KVSMALL;
        o->pages = 0;
    } else {
        o->pages = c->op == OP_VMAP ? c->size : (c->size + PS - 1) / PS;
        size_t align = c->op == OP_ALIGNED && c->align > PS ? c->align : PS;
        if ((uintptr_t)p & (align - 1))
            die("%s returned %p, not aligned to %zu", what, (void *)p, align);
        for (size_t i = 0; i < o->pages; i++) {
            kmm_phys_t ph = kmm_vmalloc_to_phys(r->mm, p + i * PS + 8);
            if (ph == KMM_PHYS_NONE)
                die("%s returned %p: page %zu is not mapped", what, (void *)p, i);
            if (c->op == OP_VMAP && ph != kmm_virt_to_phys(r->mm, r->held[c->held[i]]) + 8)
                die("%s returned %p: page %zu is not the caller's", what, (void *)p, i);
            if ((c->flags & KMM_AREA_MASK) == KMM_AREA(0) && c->op != OP_VMAP && ph >= AREA0_END)
                die("%s returned %p: page %zu at %#llx, not in area 0", what, (void *)p, i, (unsigned long long)ph);
            if ((c->flags & KMM_AREA_MASK) == KMM_AREA(1) && c->op != OP_VMAP && ph < AREA0_END)
                die("%s returned %p: page %zu at %#llx, not in area 1", what, (void *)p, i, (unsigned long long)ph);
        }
        if (kmm_vmalloc_to_phys(r->mm, p + o->pages * PS) != KMM_PHYS_NONE)
            die("%s returned %p: its guard page is mapped", what, (void *)p);
    }
    if (c->op == OP_VMAP) {
        for (size_t i = 0; i < o->pages; i++)
            held_verify(r, c->held[i], p + i * PS, what);
        return;
    }
    if (c->flags & KMM_ZERO)
        verify_zero(p, 0, o->size, what);
    o->tag = ++r->tag;
    fill(p, o->tag, o->size);
}

/* Makes the call; a NULL is checked and, with one failure only, retried
 * (the retry must succeed). Returns the object recorded, or NULL. */
static struct obj *call(struct run *r, const struct call *c)
{
    char what[128];
    describe(c, what, sizeof(what));
    struct snap before;
    take_snap(r, &before);
    errno = 0;
    unsigned char *p = do_call(r, c);
    r->calls++;
    if (!p) {
        check_null(r, &before, errno, what, false);
        if (r->times != 1)
            return NULL;
        r->retried++;
        errno = 0;
        p = do_call(r, c);
        if (!p)
            die("%s failed again (errno %d) after its one injected failure", what, errno);
    }
    adopt(r, p, c, what);
    check_view(r, what);
    return &r->objs[r->n - 1];
}

static struct obj *vmalloc_call(struct run *r, size_t size, unsigned flags)
{
    struct call c = { OP_VMALLOC, size, 0, flags, NULL };
    return call(r, &c);
}

/* Frees object i (verified) in one of the ways the contract allows. */
static void free_obj(struct run *r, size_t i, unsigned how)
{
    struct obj o = r->objs[i];
    r->objs[i] = r->objs[--r->n];
    if (o.kind == O_VMAP) {
        for (size_t k = 0; k < o.pages; k++)
            held_verify(r, o.held[k], o.p + k * PS, "before kmm_vunmap");
        kmm_vunmap(r->mm, o.p);
        return;
    }
    verify(o.p, o.tag, o.size, o.size, "before the free");
    if (o.kind == O_KVSMALL || how % 3 == 1)
        kmm_kvfree(r->mm, o.p);
    else if (how % 3 == 0)
        kmm_vfree(r->mm, o.p);
    else
        kmm_free(r->mm, o.p);
    check_view(r, "after a free");
}

static size_t find_obj(struct run *r, const unsigned char *p)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->objs[i].p == p)
            return i;
    die("test: lost an object");
}

/* kmm_realloc of object i to size; NULL leaves it as it was (checked). */
static void realloc_obj(struct run *r, size_t i, size_t size, unsigned flags)
{
    struct obj *o = &r->objs[i];
    char what[96];
    snprintf(what, sizeof(what), "kmm_realloc(%zu -> %zu bytes, 0x%x)", o->size, size, flags);
    size_t old_usable = kmm_usable_size(r->mm, o->p);
    kmm_phys_t old_phys = kmm_vmalloc_to_phys(r->mm, o->p);
    struct snap before;
    take_snap(r, &before);
    errno = 0;
    unsigned char *p = kmm_realloc(r->mm, o->p, size, flags);
    r->calls++;
    if (!p) {
        check_null(r, &before, errno, what, true);
        verify(o->p, o->tag, o->size, o->size, "after a failed kmm_realloc");
        if (kmm_usable_size(r->mm, o->p) != old_usable || kmm_vmalloc_to_phys(r->mm, o->p) != old_phys)
            die("%s failed and changed the area", what);
        if (r->times != 1)
            return;
        r->retried++;
        errno = 0;
        p = kmm_realloc(r->mm, o->p, size, flags);
        if (!p)
            die("%s failed again (errno %d) after its one injected failure", what, errno);
    }
    verify(p, o->tag, o->size, o->size < size ? o->size : size, what);
    if ((flags & KMM_ZERO) && size > o->size)
        verify_zero(p, o->size, size, what);
    if (!kmm_is_vmalloc_addr(r->mm, p) || kmm_usable_size(r->mm, p) != (size + PS - 1) / PS * PS)
        die("%s = %p: usable size %zu", what, (void *)p, kmm_usable_size(r->mm, p));
    o->p = p;
    o->size = size;
    o->pages = (size + PS - 1) / PS;
    o->tag = ++r->tag;
    fill(p, o->tag, size);
    check_view(r, what);
}

/* ---- the script ---------------------------------------------------------------------------- */

static const size_t vmap_rw[8] = { 0, 2, 4, 6, 1, 3, 5, 7 };
static const size_t vmap_ro[3] = { 10, 9, 11 };
static size_t vmap_frag[24];

static void phase_contiguous(struct run *r)
{
    static const size_t sizes[] = { 1, PS, 3 * PS + 5, 17 * PS, 150 * PS, (400u << 10) + 1 };
    static const unsigned flags[] = { 0, KMM_ZERO, KMM_AREA(1), KMM_AREA(0) | KMM_ZERO };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        vmalloc_call(r, sizes[i], flags[i % 4]);
    struct call al[] = { { OP_ALIGNED, 5 * PS, 64 << 10, 0, NULL }, { OP_ALIGNED, PS, 2u << 20, KMM_ZERO, NULL },
                         { OP_ALIGNED, 100, 8 << 10, 0, NULL } };
    for (size_t i = 0; i < 3; i++)
        call(r, &al[i]);
    static const size_t kv[] = { 100, 3000, PS, PS + 1, 40 * PS };
    for (size_t i = 0; i < 5; i++) {
        struct call c = { OP_KVMALLOC, kv[i], 0, i == 1 ? KMM_ZERO : 0, NULL };
        call(r, &c);
    }
    struct call vm1 = { OP_VMAP, 8, 0, KMM_PROT_READ | KMM_PROT_WRITE, vmap_rw };
    struct call vm2 = { OP_VMAP, 3, 0, KMM_PROT_READ, vmap_ro };
    struct obj *v1 = call(r, &vm1);
    call(r, &vm2);
    if (v1) {                       /* writes through it reach the caller's page (seen in the direct map) */
        fill(v1->p + 3 * PS, 0xabcdefu, PS);
        verify(r->held[vmap_rw[3]], 0xabcdefu, PS, PS, "a caller page written through kmm_vmap");
        fill(v1->p + 3 * PS, 0xc0ffee00u + vmap_rw[3], PS);   /* its own pattern back */
        held_verify(r, vmap_rw[3], r->held[vmap_rw[3]], "a caller page written back through kmm_vmap");
    }

    /* one area grown and shrunk: it is the last, so it grows in place */
    struct obj *o = vmalloc_call(r, PS, 0);
    if (o) {
        unsigned char *p = o->p;
        static const size_t steps[] = { 5 * PS, 40 * PS + 7, 3 * PS, 120 * PS, 2 * PS - 1, 9 * PS };
        for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
            size_t i = find_obj(r, p);
            realloc_obj(r, i, steps[s], s % 2 ? KMM_ZERO : 0);
            p = r->objs[i].p;
        }
    }
    /* one that must move: another area right after it */
    struct obj *x = vmalloc_call(r, 2 * PS, 0);
    unsigned char *xp = x ? x->p : NULL;
    vmalloc_call(r, PS, 0);
    if (xp)
        realloc_obj(r, find_obj(r, xp), 30 * PS, KMM_ZERO);

    /* frees of every kind, a purge, and a lazily freed area taken back */
    for (unsigned i = 0; i < 4 && r->n; i++)
        free_obj(r, 0, i);
    kmm_vmalloc_purge(r->mm);
    struct obj *w = vmalloc_call(r, 3 * PS, 0);
    if (w) {
        free_obj(r, find_obj(r, w->p), 0);
        vmalloc_call(r, 3 * PS - 100, KMM_ZERO);   /* the same pages: lazily freed, taken back (zeroed) */
    }
    if (kmm_check(r->mm) != 0)
        die("kmm_check failed after the contiguous phase");
}

/* Takes every free page and gives every other one back. */
static void fragment(struct run *r)
{
    struct kmm_page_stats st;
    kmm_page_stats(r->mm, &st);
    r->frag = malloc((st.free_pages + 16) * sizeof(void *));
    if (!r->frag)
        die("out of memory");
    size_t n = 0;
    void *p;
    while (n < st.free_pages + 16 && (p = kmm_alloc_pages(r->mm, 0, 0)) != NULL)
        r->frag[n++] = p;
    r->nfrag = 0;
    for (size_t i = 0; i < n; i++) {
        if (i % 2)
            kmm_free_pages(r->mm, r->frag[i]);
        else
            r->frag[r->nfrag++] = r->frag[i];
    }
}

static void unfragment(struct run *r)
{
    for (size_t i = 0; i < r->nfrag; i++)
        kmm_free_pages(r->mm, r->frag[i]);
    free(r->frag);
    r->frag = NULL;
    r->nfrag = 0;
}

static void phase_fragmented(struct run *r)
{
    vmalloc_call(r, 40 * PS, 0);
    vmalloc_call(r, 60 * PS - 3, KMM_ZERO);
    struct call kv = { OP_KVMALLOC, 2000, 0, 0, NULL };
    call(r, &kv);
    struct obj *o = vmalloc_call(r, 10 * PS, 0);
    if (o)
        realloc_obj(r, find_obj(r, o->p), 60 * PS, 0);
    struct call vm = { OP_VMAP, 24, 0, KMM_PROT_READ | KMM_PROT_WRITE, vmap_frag };
    call(r, &vm);
    struct call al = { OP_ALIGNED, 20 * PS, 256 << 10, 0, NULL };
    call(r, &al);
    if (kmm_check(r->mm) != 0)
        die("kmm_check failed after the fragmented phase");
}

struct totals {
    unsigned long calls, nulls, retried, kept_run_arrays;
};

/* One run; returns the failures injected. */
static unsigned long one_run(unsigned sites, unsigned long k, unsigned long times, struct totals *t)
{
    struct run *r = calloc(1, sizeof(*r));
    if (!r)
        die("out of memory");
    r->sites = sites;
    r->k = k;
    r->times = times;
    r->strict = k % 2;
    struct kmm_config cfg = { .page_size = PS, .mem_size = MEM, .area_limits = area_limits, .nr_areas = 2,
                              .vmalloc_flags = r->strict ? KMM_VMALLOC_STRICT : 0 };
    r->mm = kmm_create(&cfg);
    if (!r->mm)
        die("kmm_create failed");
    /* the space exists (its creation is tested apart); caller pages, filled */
    kmm_vfree(r->mm, kmm_vmalloc(r->mm, PS, 0));
    kmm_vmalloc_purge(r->mm);
    kmm_drain(r->mm);
    struct kmm_page_stats ps;
    kmm_page_stats(r->mm, &ps);
    r->base_free = ps.free_pages;
    for (size_t i = 0; i < NHELD; i++) {
        r->held[i] = kmm_alloc_pages(r->mm, 0, 0);
        if (!r->held[i])
            die("kmm_alloc_pages failed");
        held_fill(r, i);
    }

    kmm_fault_inject(r->mm, sites, k, times);
    phase_contiguous(r);
    fragment(r);
    phase_fragmented(r);
    unsigned long injected = kmm_fault_injected(r->mm);
    kmm_fault_inject(r->mm, 0, 0, 0);

    /* everything back */
    if (kmm_check(r->mm) != 0)
        die("kmm_check failed at the end of the script");
    while (r->n)
        free_obj(r, r->n - 1, (unsigned)r->n);
    unfragment(r);
    for (size_t i = 0; i < NHELD; i++) {
        held_verify(r, i, r->held[i], "a caller page at the end");
        kmm_free_pages(r->mm, r->held[i]);
    }
    kmm_vmalloc_purge(r->mm);
    kmm_drain(r->mm);
    if (kmm_check(r->mm) != 0)
        die("kmm_check failed after everything was freed");
    struct kmm_vmalloc_stats st;
    kmm_vmalloc_stats(r->mm, &st);
    if (st.areas || st.pages || st.vmap_areas || st.vmap_pages || st.lazy_areas || st.lazy_pages ||
        st.mappings != 1 || st.free_ranges != 1 || st.free_bytes != st.space_bytes)
        die("everything freed: %zu areas (%zu pages), %zu vmap areas (%zu pages), %zu lazy (%zu pages), %zu "
            "mappings, %zu free ranges, %zu of %zu bytes free", st.areas, st.pages, st.vmap_areas, st.vmap_pages,
            st.lazy_areas, st.lazy_pages, st.mappings, st.free_ranges, st.free_bytes, st.space_bytes);
    kmm_page_stats(r->mm, &ps);
    if (ps.free_pages != r->base_free)
        die("everything freed, purged and drained: %zu pages free, %zu before the script (%ld lost)", ps.free_pages,
            r->base_free, (long)(r->base_free - ps.free_pages));
    /* the layer still works */
    unsigned char *p = kmm_vmalloc(r->mm, 5 * PS, KMM_ZERO);
    if (!p || p[5 * PS - 1])
        die("kmm_vmalloc after the run failed");
    kmm_vfree(r->mm, p);
    t->calls += r->calls;
    t->nulls += r->nulls;
    t->retried += r->retried;
    t->kept_run_arrays += r->kept_run_arrays;
    kmm_destroy(r->mm);
    free(r);
    return injected;
}

/* The vmalloc space made under injection. */
static void first_use(unsigned long *runs, unsigned long *nulls)
{
    run_mode = "first use of the space";
    /* free pages once the space exists and its only area is freed (its node cache keeps a slab) */
    size_t with_space[2];
    for (unsigned strict = 0; strict < 2; strict++) {
        struct kmm_config cfg = { .page_size = PS, .mem_size = MEM, .area_limits = area_limits, .nr_areas = 2,
                                  .vmalloc_flags = strict ? KMM_VMALLOC_STRICT : 0 };
        struct kmm *mm = kmm_create(&cfg);
        if (!mm)
            die("kmm_create failed");
        kmm_vfree(mm, kmm_vmalloc(mm, 3 * PS, 0));
        kmm_vmalloc_purge(mm);
        kmm_drain(mm);
        struct kmm_page_stats ps;
        kmm_page_stats(mm, &ps);
        with_space[strict] = ps.free_pages;
        kmm_destroy(mm);
    }
    for (unsigned long k = 1;; k++) {
        run_k = k;
        struct kmm_config cfg = { .page_size = PS, .mem_size = MEM, .area_limits = area_limits, .nr_areas = 2,
                                  .vmalloc_flags = k % 2 ? KMM_VMALLOC_STRICT : 0 };
        struct kmm *mm = kmm_create(&cfg);
        if (!mm)
            die("kmm_create failed");
        struct kmm_page_stats ps;
        size_t base = with_space[k % 2];
        kmm_fault_inject(mm, KMM_FAULT_PAGES | KMM_FAULT_META | KMM_FAULT_MAP, k, 1);
        errno = 0;
        unsigned char *p = kmm_vmalloc(mm, 3 * PS, KMM_ZERO);
        int err = errno;
        unsigned long injected = kmm_fault_injected(mm);
        kmm_fault_inject(mm, 0, 0, 0);
        if (!p && (err != ENOMEM || !injected))
            die("the first kmm_vmalloc returned NULL with errno %d, %lu failures injected", err, injected);
        if (p) {
            if (p[0] || p[3 * PS - 1])
                die("the first kmm_vmalloc's memory is not zeroed");
            memset(p, 0x5a, 3 * PS);
        } else {
            (*nulls)++;
            p = kmm_vmalloc(mm, 3 * PS, 0);     /* made now */
            if (!p)
                die("kmm_vmalloc failed after the injected failure of the first one");
        }
        kmm_vfree(mm, p);
        kmm_vmalloc_purge(mm);
        kmm_drain(mm);
        if (kmm_check(mm) != 0)
            die("kmm_check failed");
        struct kmm_vmalloc_stats st;
        kmm_vmalloc_stats(mm, &st);
        kmm_page_stats(mm, &ps);
        if (st.areas || st.mappings != 1 || st.free_ranges != 1 || ps.free_pages != base)
            die("after the first use: %zu areas, %zu mappings, %zu free ranges; %zu pages free, %zu before", st.areas,
                st.mappings, st.free_ranges, ps.free_pages, base);
        kmm_destroy(mm);
        (*runs)++;
        if (!injected)
            break;
    }
}

int main(void)
{
    kmm_test_on_fail(die_head, NULL, false);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = 0; i < 24; i++)
        vmap_frag[i] = 12 + (i * 7) % 24;    /* scattered caller pages, in no order */
    static const struct {
        unsigned sites;
        const char *name;
    } site_sets[] = {
        { KMM_FAULT_PAGES | KMM_FAULT_META | KMM_FAULT_MAP, "pages+meta+map" },
        { KMM_FAULT_PAGES, "pages" },
        { KMM_FAULT_META, "meta" },
        { KMM_FAULT_MAP, "map" },
    };
    unsigned long total_runs = 0;
    struct totals all = { 0, 0, 0, 0 };
    char mode[96];
    for (size_t s = 0; s < sizeof(site_sets) / sizeof(site_sets[0]); s++) {
        for (unsigned long times = 1; times != 2; times = times ? 0 : 2) {
            snprintf(mode, sizeof(mode), "%s, %s", site_sets[s].name,
                     times ? "the k-th call fails" : "every call from the k-th fails");
            run_mode = mode;
            unsigned long runs = 0, last = 0;
            struct totals t = { 0, 0, 0, 0 };
            /* every k up to dense, then 25% more each step (a third under a sanitizer) */
            unsigned long dense = KMM_TEST_SANITIZER ? 8 : s == 0 ? 32 : 16;
            for (unsigned long k = 1;; k = k < dense ? k + 1 : k + k / (KMM_TEST_SANITIZER ? 3 : 4)) {
                run_k = k;
                unsigned long injected = one_run(site_sets[s].sites, k, times, &t);
                runs++;
                if (k <= 8 && !injected)
                    die("no failure was injected (the script makes fewer than %lu calls at these sites)", k);
                if (!injected) {
                    last = k;
                    break;
                }
            }
            printf("  %-15s %-31s %3lu runs (k up to %3lu): %6lu calls, %5lu NULLs, %4lu retried, %3lu failed "
                   "reallocs kept a larger run array\n", site_sets[s].name,
                   times ? "the k-th call fails" : "every call from the k-th fails", runs, last, t.calls, t.nulls,
                   t.retried, t.kept_run_arrays);
            fflush(stdout);
            total_runs += runs;
            all.calls += t.calls;
            all.nulls += t.nulls;
        }
    }
    unsigned long fu_runs = 0, fu_nulls = 0;
    first_use(&fu_runs, &fu_nulls);
    printf("  first use of the space: %lu runs, %lu NULLs\n", fu_runs, fu_nulls);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("vm_fault: OK, %lu runs, %lu calls, %lu NULLs, %.1f s\n", total_runs + fu_runs, all.calls,
           all.nulls + fu_nulls, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
