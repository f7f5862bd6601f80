/* fuzz_zs.c - libFuzzer target for zsmalloc (kmm_zs_*).
 *
 * The input bytes are decoded into operations on a pool of a small memory
 * system (2 MiB of 4 KiB pages, created on first use and kept), so pages
 * run out. Each input makes a pool - its layout picked by the first byte:
 * the default, 8-byte steps with 4-page zspages, 64-byte steps with 64-page
 * zspages, or 1-page zspages - runs at most 512 operations on it under
 * libFuzzer (64 in the replay test, 32 under a sanitizer there), and
 * destroys it. Every result is checked against a model that keeps each live
 * object's bytes in a plain copy:
 *  - kmm_zs_malloc: a new handle not live already, its usable size at
 *    least the size asked (and that of a class from kmm_zs_class_stats);
 *    KMM_ZERO objects zero; sizes 0 and above a page refused with EINVAL;
 *    a 0 otherwise carries ENOMEM and is plausible (a failure was injected
 *    during the call, or the memory system has almost no free page), and
 *    leaves the pool's objects as they were;
 *  - kmm_zs_read, KMM_ZS_RO and KMM_ZS_RW mappings show the model's bytes;
 *    kmm_zs_write, WO and RW mappings change them; copies past the usable
 *    size return -KMM_EINVAL and change nothing (their report captured);
 *  - kmm_zs_compact: every object read back whole after it, and the pool's
 *    pages fell by what it returned;
 *  - kmm_check and the stats (objects, obj_bytes; classes summing to the
 *    pool's pages and zspages) on demand and at the end of every input.
 * At the end of every input everything is freed, injection turned off and
 * pages held released; after kmm_zs_destroy and kmm_drain, kmm_check must
 * pass and the page allocator's free pages be back at their value after the
 * memory system's first use. A mismatch prints what went wrong and aborts.
 *
 * Decoding: one byte chooses the operation (its value mod 13), the bytes
 * after it its arguments (missing bytes read as 0):
 *   0,1,2 kmm_zs_malloc   size (2 bytes: 0 -> 0, 1 -> a page + 1, else 1 + v % page), flags (bit 0: KMM_ZERO)
 *   3     kmm_zs_free     which (2 bytes)
 *   4     kmm_zs_write    which (2 bytes), offset (2 bytes), length (2 bytes), oob (bit 0 of a byte: past the end)
 *   5     kmm_zs_read     which, offset, length (2 bytes each)
 *   6     kmm_zs_map      which (2 bytes), mode (byte mod 3)
 *   7     nested maps     count (1 .. KMM_ZS_MAP_NEST), then per map which (2 bytes) and mode
 *   8     kmm_zs_compact
 *   9     free several    count
 *   10    fault injection nth (1 .. 16), times (0 .. 3); sites pages and metadata
 *   11    kmm_check and the stats
 *   12    hold / release  count (bit 7: release): pages taken from the page allocator
 *
 * Built with -fsanitize=fuzzer when KMM_FUZZ=ON, and with replay_main.c as an
 * ordinary program (test_zsmalloc_fuzz_replay).
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

#define PS       4096u
#define MEM      (2u << 20)
#define MAX_LIVE 1024u
#define MAX_HELD 512u
#define LOW_FREE 24u                /* free pages below which an ENOMEM is plausible */

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*cb)(const uint8_t *, size_t)) __attribute__((weak));
static unsigned max_ops(void)
{
    return LLVMFuzzerRunDriver ? 512u : KMM_TEST_SANITIZER ? 32u : 64u;
}

struct obj {
    uint64_t h;
    size_t usable, known;          /* bytes [0, known) hold the model's */
    unsigned char bytes[PS];
};

static struct kmm *mm;
static size_t base_free;
static struct kmm_zspool *pool;
static struct kmm_zs_class_stats classes[PS / 8];
static size_t nclasses;
static struct obj live[MAX_LIVE];
static unsigned nlive;
static void *held[MAX_HELD];
static unsigned nheld;
static unsigned long op_no;
static uint64_t fill_key;
static unsigned char scratch[2 * PS];

static void bug_head(FILE *f)
{
    fprintf(f, "fuzz_zs: op %lu: ", op_no);
}

#define bug(...) kmm_test_fail(__VA_ARGS__)

static size_t free_pages(void)
{
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    return st.free_pages;
}

static void compare(const struct obj *o, const unsigned char *got, size_t from, size_t to, const char *how)
{
    if (memcmp(got, o->bytes + from, to - from) == 0)
        return;
    for (size_t i = from; i < to; i++)
        if (got[i - from] != o->bytes[i])
            bug("%s of %#llx (usable %zu): byte %zu is %#x, the model says %#x", how, (unsigned long long)o->h,
                o->usable, i, got[i - from], o->bytes[i]);
}

static void verify_whole(const struct obj *o, const char *how)
{
    if (kmm_zs_read(pool, o->h, 0, scratch, o->known) != 0)
        bug("%s: kmm_zs_read of %#llx failed", how, (unsigned long long)o->h);
    compare(o, scratch, 0, o->known, how);
}

static void random_bytes(unsigned char *dst, size_t len)
{
    kmm_test_span_io(dst, ++fill_key, 0, len, true);
}

static struct obj *pick(struct kmm_test_reader *r)
{
    unsigned v = kmm_test_get16(r);
    return nlive ? &live[v % nlive] : NULL;
}

static void check_stats(void)
{
    if (kmm_check(mm) != 0)
        bug("kmm_check failed");
    struct kmm_zs_stats st;
    kmm_zs_stats(pool, &st);
    size_t bytes = 0;
    for (unsigned i = 0; i < nlive; i++)
        bytes += live[i].usable;
    if (st.objects != nlive || st.obj_bytes != bytes)
        bug("kmm_zs_stats: %zu objects of %zu bytes; the model has %u of %zu", st.objects, st.obj_bytes, nlive, bytes);
    kmm_zs_class_stats(pool, classes, nclasses);
    size_t objects = 0, pages = 0, zspages = 0;
    for (size_t i = 0; i < nclasses; i++) {
        objects += classes[i].objects;
        pages += classes[i].pages;
        zspages += classes[i].zspages;
    }
    if (objects != st.objects || pages != st.pages_used || zspages != st.zspages)
        bug("classes: %zu objects, %zu pages, %zu zspages; pool: %zu, %zu, %zu", objects, pages, zspages, st.objects,
            st.pages_used, st.zspages);
}

/* ---- operations ------------------------------------------------------------------------ */

static void op_malloc(struct kmm_test_reader *r)
{
    unsigned v = kmm_test_get16(r);
    bool zero = kmm_test_get8(r) & 1;
    size_t size = v == 0 ? 0 : v == 1 ? PS + 1 : 1 + v % PS;
    struct kmm_zs_stats before;
    kmm_zs_stats(pool, &before);
    unsigned long inj = kmm_fault_injected(mm);
    if (size == 0 || size > PS) {
        struct kmm_test_capture cap;   /* the refusal's report */
        kmm_test_capture_begin(&cap);
        errno = 0;
        uint64_t h = kmm_zs_malloc(pool, size, zero ? KMM_ZERO : 0);
        int err = errno;
        free(kmm_test_capture_end(&cap));
        if (h || err != EINVAL)
            bug("kmm_zs_malloc(%zu) gave %#llx, errno %d: not refused with EINVAL", size, (unsigned long long)h, err);
        return;
    }
    errno = 0;
    uint64_t h = nlive < MAX_LIVE ? kmm_zs_malloc(pool, size, zero ? KMM_ZERO : 0) : 0;
    if (nlive == MAX_LIVE)
        return;
    if (!h) {
        if (errno != ENOMEM)
            bug("kmm_zs_malloc(%zu) failed with errno %d", size, errno);
        size_t fp = free_pages();
        if (kmm_fault_injected(mm) == inj && fp >= LOW_FREE)
            bug("kmm_zs_malloc(%zu) failed with %zu free pages and no failure injected", size, fp);
        struct kmm_zs_stats after;
        kmm_zs_stats(pool, &after);
        if (after.objects != before.objects || after.obj_bytes != before.obj_bytes)
            bug("a failed kmm_zs_malloc changed the pool's objects");
        return;
    }
    for (unsigned i = 0; i < nlive; i++)
        if (live[i].h == h)
            bug("kmm_zs_malloc gave live handle %#llx", (unsigned long long)h);
    struct obj *o = &live[nlive++];
    o->h = h;
    o->usable = kmm_zs_usable_size(pool, h);
    bool a_class = false;
    for (size_t i = 0; i < nclasses; i++)
        a_class |= classes[i].size == o->usable;
    if (o->usable < size || !a_class)
        bug("usable size %zu of a %zu-byte object", o->usable, size);
    if (zero) {
        memset(o->bytes, 0, o->usable);
        o->known = o->usable;
        verify_whole(o, "a KMM_ZERO object");
    } else {
        o->known = 0;   /* uninitialised: the model knows nothing yet */
    }
}

static void free_one(unsigned i)
{
    verify_whole(&live[i], "before kmm_zs_free");
    kmm_zs_free(pool, live[i].h);
    live[i] = live[--nlive];
}

static void op_free(struct kmm_test_reader *r)
{
    struct obj *o = pick(r);
    if (o)
        free_one((unsigned)(o - live));
}

static void op_write(struct kmm_test_reader *r)
{
    struct obj *o = pick(r);
    size_t off = kmm_test_get16(r), len = kmm_test_get16(r);
    bool oob = kmm_test_get8(r) & 1;
    if (!o)
        return;
    if (oob) {
        /* past the end: refused, reported, nothing written */
        off = o->usable - off % (o->usable + 1);
        len = o->usable - off + 1 + len % PS;   /* at most 2 pages: fits scratch */
        random_bytes(scratch, len);
        struct kmm_test_capture cap;
        kmm_test_capture_begin(&cap);
        int rc = kmm_zs_write(pool, o->h, off, scratch, len);
        int rr = kmm_zs_read(pool, o->h, off, scratch, len);
        free(kmm_test_capture_end(&cap));
        if (rc != -KMM_EINVAL || rr != -KMM_EINVAL)
            bug("copies of [%zu, +%zu) of a %zu-byte object returned %d, %d", off, len, o->usable, rc, rr);
        verify_whole(o, "after refused copies");
        return;
    }
    off = off % (o->known + 1);
    if (off == o->usable)
        off--;
    len = 1 + len % (o->usable - off);
    random_bytes(scratch, len);
    if (kmm_zs_write(pool, o->h, off, scratch, len) != 0)
        bug("kmm_zs_write(%zu, %zu) of a %zu-byte object failed", off, len, o->usable);
    memcpy(o->bytes + off, scratch, len);
    if (off + len > o->known)
        o->known = off + len;
}

static void op_read(struct kmm_test_reader *r)
{
    struct obj *o = pick(r);
    size_t off = kmm_test_get16(r), len = kmm_test_get16(r);
    if (!o || !o->known)
        return;
    off %= o->known;
    len = 1 + len % (o->known - off);
    if (kmm_zs_read(pool, o->h, off, scratch, len) != 0)
        bug("kmm_zs_read failed");
    compare(o, scratch, off, off + len, "kmm_zs_read");
}

static int mode_of(unsigned b)
{
    static const int modes[3] = { KMM_ZS_RO, KMM_ZS_WO, KMM_ZS_RW };
    return modes[b % 3];
}

/* Uses a mapping as its mode says; returns nothing: the model follows. */
static void use_map(struct obj *o, unsigned char *p, int mode)
{
    if (!p)
        bug("kmm_zs_map returned NULL");
    if (mode != KMM_ZS_WO)
        compare(o, p, 0, o->known, mode == KMM_ZS_RO ? "kmm_zs_map(RO)" : "kmm_zs_map(RW)");
    if (mode == KMM_ZS_WO) {
        random_bytes(o->bytes, o->usable);
        memcpy(p, o->bytes, o->usable);
        o->known = o->usable;
    } else if (mode == KMM_ZS_RW) {
        size_t off = o->known / 3, len = o->usable - off;
        random_bytes(o->bytes + off, len);
        memcpy(p + off, o->bytes + off, len);
        o->known = o->usable;
    }
}

static void op_map(struct kmm_test_reader *r)
{
    struct obj *o = pick(r);
    int mode = mode_of(kmm_test_get8(r));
    if (!o)
        return;
    use_map(o, kmm_zs_map(pool, o->h, mode), mode);
    kmm_zs_unmap(pool, o->h);
}

static void op_nested(struct kmm_test_reader *r)
{
    unsigned n = 1 + kmm_test_get8(r) % KMM_ZS_MAP_NEST, got = 0;
    unsigned idx[KMM_ZS_MAP_NEST];
    for (unsigned k = 0; k < n; k++) {
        struct obj *o = pick(r);
        int mode = mode_of(kmm_test_get8(r));
        if (!o)
            break;
        bool dup = false;
        for (unsigned j = 0; j < got; j++)
            dup |= idx[j] == (unsigned)(o - live);
        if (dup)
            continue;
        use_map(o, kmm_zs_map(pool, o->h, mode), mode);
        idx[got++] = (unsigned)(o - live);
    }
    for (unsigned k = 0; k < got; k++)   /* in the order mapped, not nested */
        kmm_zs_unmap(pool, live[idx[k]].h);
}

static void op_compact(void)
{
    struct kmm_zs_stats before, after;
    kmm_zs_stats(pool, &before);
    size_t freed = kmm_zs_compact(pool);
    kmm_zs_stats(pool, &after);
    if (after.pages_used != before.pages_used - freed)
        bug("kmm_zs_compact returned %zu; pages %zu -> %zu", freed, before.pages_used, after.pages_used);
    for (unsigned i = 0; i < nlive; i++)
        verify_whole(&live[i], "after kmm_zs_compact");
}

static void op_free_several(struct kmm_test_reader *r)
{
    unsigned n = kmm_test_get8(r);
    for (unsigned k = 0; k < n && nlive; k++)
        free_one((k * 7919u) % nlive);
}

static void op_fault(struct kmm_test_reader *r)
{
    unsigned nth = 1 + kmm_test_get8(r) % 16, times = kmm_test_get8(r) % 4;
    kmm_fault_inject(mm, KMM_FAULT_PAGES | KMM_FAULT_META, nth, times);
}

static void op_hold(struct kmm_test_reader *r)
{
    unsigned v = kmm_test_get8(r), n = 1 + (v & 0x7f) * 4;
    if (v & 0x80) {
        while (n-- && nheld)
            kmm_free_pages(mm, held[--nheld]);
        return;
    }
    while (n-- && nheld < MAX_HELD) {
        void *p = kmm_alloc_pages(mm, 0, 0);
        if (!p)
            break;
        held[nheld++] = p;
    }
}

/* ---- an input ---------------------------------------------------------------------------- */

static void first_use(void)
{
    struct kmm_config cfg = { .page_size = PS, .mem_size = MEM };
    mm = kmm_create(&cfg);
    if (!mm)
        bug("kmm_create failed");
    /* the first pool and kmm_drain settle the memory system's own caches */
    struct kmm_zspool *p = kmm_zs_create(mm, "first");
    if (!p)
        bug("kmm_zs_create failed");
    kmm_zs_destroy(p);
    kmm_drain(mm);
    base_free = free_pages();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kmm_test_on_fail(bug_head, NULL, true);
    if (!mm)
        first_use();
    struct kmm_test_reader r = { data, size, 0 };
    static const struct kmm_zs_config layouts[3] = { { 8, 4 }, { 64, 64 }, { 16, 1 } };
    unsigned which = kmm_test_get8(&r) % 4;
    op_no = 0;
    pool = which ? kmm_zs_create_config(mm, "fuzz", &layouts[which - 1]) : kmm_zs_create(mm, "fuzz");
    if (!pool)
        bug("kmm_zs_create failed");
    nclasses = kmm_zs_class_stats(pool, classes, sizeof classes / sizeof classes[0]);
    if (nclasses > sizeof classes / sizeof classes[0])
        bug("%zu classes", nclasses);
    unsigned limit = max_ops();
    while (r.i < r.n && op_no < limit) {
        op_no++;
        switch (kmm_test_get8(&r) % 13) {
        case 0:
        case 1:
        case 2:
            op_malloc(&r);
            break;
        case 3:
            op_free(&r);
            break;
        case 4:
            op_write(&r);
            break;
        case 5:
            op_read(&r);
            break;
        case 6:
            op_map(&r);
            break;
        case 7:
            op_nested(&r);
            break;
        case 8:
            op_compact();
            break;
        case 9:
            op_free_several(&r);
            break;
        case 10:
            op_fault(&r);
            break;
        case 11:
            check_stats();
            break;
        case 12:
            op_hold(&r);
            break;
        }
    }
    kmm_fault_inject(mm, 0, 0, 0);
    check_stats();
    op_compact();
    while (nlive)
        free_one(nlive - 1);
    while (nheld)
        kmm_free_pages(mm, held[--nheld]);
    struct kmm_zs_stats st;
    kmm_zs_stats(pool, &st);
    if (st.objects || st.pages_used || st.zspages)
        bug("empty pool: %zu objects, %zu pages, %zu zspages", st.objects, st.pages_used, st.zspages);
    kmm_zs_destroy(pool);
    pool = NULL;
    kmm_drain(mm);
    if (kmm_check(mm) != 0)
        bug("kmm_check at the end of the input failed");
    size_t fp = free_pages();
    if (fp != base_free)
        bug("%zu free pages at the end of the input, %zu at the start", fp, base_free);
    return 0;
}
