/* execmem_fault.c - kmm_execmem_* with failures injected at every nth call
 * of the pages, metadata, mapping and direct-map sites (KMM_FAULT_PAGES |
 * META | MAP | DIRECT), for nth = 1 .. 60:
 *  - an allocation fails cleanly (NULL), or succeeds and reads as traps;
 *  - a write returns 0 (the bytes are there) or -KMM_EIO; either way its
 *    neighbours (a guard allocation on each side) are unchanged;
 *  - a free always frees (a failed trap fill quarantines the range), one
 *    at a time or by kmm_execmem_free_batch;
 *  - after everything is freed and injection stopped: kmm_check passes, the
 *    stats are empty and, once the unmapped cache is shrunk, the page
 *    allocator has every page back (no leak).
 */
#include "kmm_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 24

static unsigned long cur_nth;
static void head(FILE *f)
{
    fprintf(f, "execmem_fault: nth %lu: ", cur_nth);
}

static bool all(const unsigned char *p, size_t len, unsigned char v)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != v)
            return false;
    return true;
}

int main(void)
{
    kmm_test_on_fail(head, NULL, false);
    unsigned char code[8192];
    memset(code, 0x90, sizeof code);
    struct kmm *mm = kmm_test_create(4096, 128ull << 20);
    struct kmm_page_stats ps0;
    kmm_page_stats(mm, &ps0);
    unsigned long injected = 0;
    for (cur_nth = 1; cur_nth <= 60; cur_nth++) {
        unsigned char *p[N] = { 0 };
        size_t size[N];
        kmm_fault_inject(mm, KMM_FAULT_PAGES | KMM_FAULT_META | KMM_FAULT_MAP | KMM_FAULT_DIRECT, cur_nth, 1000);
        struct kmm_test_capture cap;
        kmm_test_capture_begin(&cap);
        for (size_t i = 0; i < N; i++) {
            size[i] = i % 8 == 7 ? (2u << 20) + 4096 * i : 16 + 200 * i;
            p[i] = kmm_execmem_alloc(mm, size[i]);
            if (p[i] && !all(p[i], size[i] < 4096 ? size[i] : 4096, 0xcc))
                kmm_test_fail("allocation %zu does not read as traps", i);
        }
        for (size_t i = 1; i + 1 < N; i++) {
            if (!p[i])
                continue;
            size_t len = size[i] < sizeof code ? size[i] : sizeof code;
            int rc = kmm_execmem_write(mm, p[i], code, len);
            if (rc == 0 && !all(p[i], len, 0x90))
                kmm_test_fail("write %zu returned 0 but the bytes are not there", i);
            if (rc != 0 && rc != -KMM_EIO)
                kmm_test_fail("write %zu returned %d", i, rc);
        }
        /* neighbours never written: p[0] and p[N - 1] still traps */
        if ((p[0] && !all(p[0], size[0], 0xcc)) || (p[N - 1] && !all(p[N - 1], 4096, 0xcc)))
            kmm_test_fail("a write reached an allocation it was not for");
        void *even[N / 2];
        for (size_t i = 0; i < N; i += 2)
            even[i / 2] = p[i];
        kmm_execmem_free_batch(mm, even, N / 2);   /* its sort's metadata may fail: then one by one */
        for (size_t i = 1; i < N; i += 2)
            kmm_execmem_free(mm, p[i]);
        free(kmm_test_capture_end(&cap));
        injected += kmm_fault_injected(mm);
        kmm_fault_inject(mm, 0, 0, 0);
        struct kmm_execmem_stats st;
        kmm_execmem_stats(mm, &st);
        if (st.allocations || st.chunks || st.pages || st.bytes)
            kmm_test_fail("left: %zu allocations, %zu chunks, %zu pages", st.allocations, st.chunks, st.pages);
        if (kmm_check(mm) != 0)
            kmm_test_fail("kmm_check");
        kmm_drain(mm);
        kmm_unmapped_shrink(mm, 0);   /* the cache's blocks back to the page allocator */
        struct kmm_page_stats ps;
        kmm_page_stats(mm, &ps);
        if (ps.free_pages != ps0.free_pages)
            kmm_test_fail("free pages %zu, %zu at the start: leaked", ps.free_pages, ps0.free_pages);
    }
    if (!injected)
        kmm_test_fail("no failure was injected");
    printf("execmem_fault: %lu failures injected over 60 rounds: clean\n", injected);
    kmm_destroy(mm);
    return 0;
}
