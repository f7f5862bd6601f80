/* fuzz_secret.c - libFuzzer target for secret memory (kmm_secret_*).
 *
 * The input bytes are decoded into operations on a small memory system (4
 * MiB of 4 KiB pages, created on first use and kept), so pages run out. At
 * most 256 operations per input under libFuzzer (48 in the replay test, 24
 * under a sanitizer there). Every result is checked against a model of the
 * live secrets (address, size, backing, pattern key):
 *  - kmm_secret_alloc: zeroed, page aligned, overlapping no live secret or
 *    its guards; size 0 refused with EINVAL; a NULL otherwise carries ENOMEM
 *    and is plausible (a failure was injected during the call, or the
 *    memory system is nearly out of free pages) and changes no stat;
 *  - rewrites and checks of a live secret's pattern; frees check it first;
 *  - kmm_check and kmm_secret_stats against the model on demand and at the
 *    end of every input.
 * At the end of every input everything is freed, injection turned off and
 * held pages released; after kmm_unmapped_shrink and kmm_drain, kmm_check
 * must pass and the page allocator's free pages be back at their value
 * after the memory system's first use. A mismatch prints what went wrong
 * and aborts.
 *
 * Decoding: one byte chooses the operation (its value mod 9), the bytes
 * after it its arguments (missing bytes read as 0):
 *   0,1,2 kmm_secret_alloc  size (2 bytes: 0 -> 0, else 1 + v * 7 % 96 KiB), backing (bit 0 of a byte: memfd_secret)
 *   3     kmm_secret_free   which (byte)
 *   4     rewrite           which (byte)
 *   5     check one         which (byte)
 *   6     fault injection   nth (1 .. 16), times (0 .. 3); pages, metadata, map and direct-map sites
 *   7     kmm_check and the stats
 *   8     hold / release    count (bit 7: release): pages taken from the page allocator
 *
 * Built with -fsanitize=fuzzer when KMM_FUZZ=ON, and with replay_main.c as an
 * ordinary program (test_secret_fuzz_replay).
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
#define MEM      (4u << 20)
#define MAX_LIVE 64u
#define MAX_HELD 512u
#define LOW_FREE 64u                /* free pages below which an ENOMEM is plausible */
#define SITES    (KMM_FAULT_PAGES | KMM_FAULT_META | KMM_FAULT_MAP | KMM_FAULT_DIRECT)

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*cb)(const uint8_t *, size_t)) __attribute__((weak));
static unsigned max_ops(void)
{
    return LLVMFuzzerRunDriver ? 256u : KMM_TEST_SANITIZER ? 24u : 48u;
}

struct secret_m {
    unsigned char *p;
    size_t size;
    uint64_t key;
    bool memfd;
};

static struct kmm *mm;
static size_t base_free;
static bool memfd_ok;
static struct secret_m live[MAX_LIVE];
static unsigned nlive;
static void *held[MAX_HELD];
static unsigned nheld;
static unsigned long op_no;
static uint64_t next_key;
static size_t m_bytes, m_pages, m_memfd;

static void bug_head(FILE *f) { fprintf(f, "fuzz_secret: op %lu: ", op_no); }

#define bug(...) kmm_test_fail(__VA_ARGS__)

static size_t free_pages(void)
{
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    return st.free_pages;
}

static size_t pages_of(size_t size) { return (size + PS - 1) / PS; }

static void check_one(const struct secret_m *s)
{
    size_t at = kmm_test_span_io(s->p, s->key, 0, s->size, false);
    if (at != SIZE_MAX)
        bug("secret %p of %zu bytes lost its pattern at byte %zu", (void *)s->p, s->size, at);
}

static void check_stats(void)
{
    if (kmm_check(mm) != 0)
        bug("kmm_check failed");
    struct kmm_secret_stats st;
    kmm_secret_stats(mm, &st);
    if (st.allocations != nlive || st.bytes != m_bytes || st.pages != m_pages || st.locked_bytes != m_pages * PS ||
        st.memfd_allocations != m_memfd)
        bug("stats %zu allocations, %zu bytes, %zu pages, %zu locked, %zu memfd; model %u, %zu, %zu, %zu, %zu",
            st.allocations, st.bytes, st.pages, st.locked_bytes, st.memfd_allocations, nlive, m_bytes, m_pages,
            m_pages * PS, m_memfd);
}

static struct secret_m *pick(struct kmm_test_reader *r)
{
    unsigned v = kmm_test_get8(r);
    return nlive ? &live[v % nlive] : NULL;
}

static void op_alloc(struct kmm_test_reader *r)
{
    unsigned v = kmm_test_get16(r);
    bool memfd = (kmm_test_get8(r) & 1) && memfd_ok;
    if (nlive == MAX_LIVE)
        return;
    size_t size = v ? 1 + (size_t)v * 7 % (96u << 10) : 0;
    if (kmm_secret_set_backing(mm, memfd ? KMM_SECRET_MEMFD : KMM_SECRET_UNMAPPED) != 0)
        bug("kmm_secret_set_backing failed");
    struct kmm_secret_stats before, after;
    kmm_secret_stats(mm, &before);
    unsigned long inj = kmm_fault_injected(mm);
    errno = 0;
    unsigned char *p = kmm_secret_alloc(mm, size);
    if (!p) {
        int err = errno;
        kmm_secret_stats(mm, &after);
        if (after.allocations != before.allocations || after.bytes != before.bytes || after.allocs != before.allocs)
            bug("a failed kmm_secret_alloc(%zu) changed the stats", size);
        if (size == 0) {
            if (err != EINVAL)
                bug("kmm_secret_alloc(0): errno %d, not EINVAL", err);
            return;
        }
        if (err != ENOMEM)
            bug("kmm_secret_alloc(%zu) returned NULL with errno %d, not ENOMEM", size, err);
        if (kmm_fault_injected(mm) == inj && free_pages() > LOW_FREE + pages_of(size) * 2)
            bug("kmm_secret_alloc(%zu) failed with %zu free pages and no failure injected", size, free_pages());
        return;
    }
    if (size == 0)
        bug("kmm_secret_alloc(0) did not fail");
    if ((uintptr_t)p % PS)
        bug("secret %p not page aligned", (void *)p);
    size_t bytes = pages_of(size) * PS;
    uintptr_t lo = (uintptr_t)p - PS, hi = (uintptr_t)p + bytes + PS;
    for (unsigned i = 0; i < nlive; i++) {
        uintptr_t a = (uintptr_t)live[i].p;
        if (a < hi && lo < a + pages_of(live[i].size) * PS)
            bug("secret %p (+guards) overlaps the live one at %p", (void *)p, (void *)live[i].p);
    }
    for (size_t i = 0; i < bytes; i++)
        if (p[i])
            bug("new secret %p of %zu bytes not zero at byte %zu", (void *)p, size, i);
    struct secret_m *s = &live[nlive++];
    *s = (struct secret_m){ p, size, ++next_key, memfd };
    kmm_test_span_io(p, s->key, 0, size, true);
    m_bytes += size;
    m_pages += bytes / PS;
    m_memfd += memfd;
}

static void free_one(unsigned i)
{
    struct secret_m s = live[i];
    check_one(&s);
    kmm_secret_free(mm, s.p);
    live[i] = live[--nlive];
    m_bytes -= s.size;
    m_pages -= pages_of(s.size);
    m_memfd -= s.memfd;
}

static void op_hold(struct kmm_test_reader *r)
{
    unsigned v = kmm_test_get8(r);
    unsigned count = 1 + (v & 0x7f);
    if (v & 0x80) {
        while (count-- && nheld)
            kmm_free_pages(mm, held[--nheld]);
        return;
    }
    while (count-- && nheld < MAX_HELD) {
        void *p = kmm_alloc_pages(mm, 0, 0);
        if (!p)
            break;
        held[nheld++] = p;
    }
}

static void first_use(void)
{
    struct kmm_config cfg = { .page_size = PS, .mem_size = MEM };
    mm = kmm_create(&cfg);
    if (!mm)
        bug("kmm_create failed");
    memfd_ok = kmm_secret_backing_available(mm, KMM_SECRET_MEMFD);
    /* the first secret makes the layer's state and table for good */
    void *p = kmm_secret_alloc(mm, 1);
    if (!p)
        bug("the first kmm_secret_alloc failed");
    kmm_secret_free(mm, p);
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
        struct secret_m *s;
        switch (kmm_test_get8(&r) % 9) {
        case 0:
        case 1:
        case 2:
            op_alloc(&r);
            break;
        case 3:
            if ((s = pick(&r)) != NULL)
                free_one((unsigned)(s - live));
            break;
        case 4:
            if ((s = pick(&r)) != NULL) {
                check_one(s);
                s->key = ++next_key;
                kmm_test_span_io(s->p, s->key, 0, s->size, true);
            }
            break;
        case 5:
            if ((s = pick(&r)) != NULL)
                check_one(s);
            break;
        case 6: {
            unsigned nth = 1 + kmm_test_get8(&r) % 16, times = kmm_test_get8(&r) % 4;
            kmm_fault_inject(mm, SITES, nth, times);
            break;
        }
        case 7:
            check_stats();
            break;
        case 8:
            op_hold(&r);
            break;
        }
    }
    kmm_fault_inject(mm, 0, 0, 0);
    check_stats();
    while (nlive)
        free_one(nlive - 1);
    while (nheld)
        kmm_free_pages(mm, held[--nheld]);
    check_stats();
    kmm_unmapped_shrink(mm, 0);
    kmm_drain(mm);
    if (kmm_check(mm) != 0)
        bug("kmm_check at the end of the input failed");
    size_t fp = free_pages();
    if (fp != base_free)
        bug("%zu free pages at the end of the input, %zu at the start", fp, base_free);
    return 0;
}
