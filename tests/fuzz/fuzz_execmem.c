/* fuzz_execmem.c - libFuzzer target for executable memory (kmm_execmem_*).
 *
 * One memory system (64 MiB of 4 KiB pages) made on first use and kept.
 * The input is decoded into at most 256 operations on 32 slots, each
 * checked against a model holding every live allocation's bytes:
 *   0,1 alloc   slot, size (2 bytes; see below; 0 is refused)
 *   2,3 write   slot, offset, length (2 bytes each): inside -> 0 and the model changes; past the
 *               usable size -> -KMM_EINVAL and nothing changes
 *   4   batch   count (1..8), then slot/offset/length per piece: 0 and all written, or -KMM_EINVAL
 *               (a piece outside or overlapping) and nothing written
 *   5   free    slot
 *   6   fault   nth (1..16): KMM_FAULT_PAGES|META|MAP|DIRECT, one failure (a batch may
 *               then fail with -KMM_ENOMEM: its sort's metadata)
 *   7   check   kmm_check and the stats against the model
 * Every allocation is compared with its model after each operation that
 * touched it; at the end everything is freed and the layer must be empty.
 * The size of an alloc: the 2-byte value v & 0x1fff (up to 8 KiB); with the
 * top three bits set, that times 512 (up to 4 MiB: chunks of their own).
 * Built with -fsanitize=fuzzer when KMM_FUZZ=ON, and with replay_main.c as
 * an ordinary program (test_execmem_fuzz_replay).
 */
#include "kmm_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 32

struct obj {
    unsigned char *p;
    size_t size;
    unsigned char *model;
};

static struct kmm *mm;
static struct obj objs[SLOTS];
static unsigned char src[1 << 16];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* kmm's reports of refused calls are captured during an input; a failure
 * ends the capture first, so that its message is seen. */
static struct kmm_test_capture cap;
static bool capturing;
static void uncapture(FILE *f)
{
    (void)f;
    if (capturing)
        free(kmm_test_capture_end(&cap));
    capturing = false;
}

static void compare(size_t k, const char *after)
{
    struct obj *o = &objs[k];
    if (o->p && memcmp(o->p, o->model, o->size) != 0)
        kmm_test_fail("fuzz_execmem: slot %zu (%zu bytes) differs from the model after %s", k, o->size, after);
}

static bool inside(const struct obj *o, size_t off, size_t len)
{
    size_t usable = (o->size + 15) & ~(size_t)15;
    return off < usable && len <= usable - off;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!mm) {
        kmm_test_on_fail(uncapture, NULL, true);
        mm = kmm_test_create(4096, 64ull << 20);
        for (size_t i = 0; i < sizeof src; i++)
            src[i] = (unsigned char)(i * 131 + 7);
    }
    struct kmm_test_reader r = { data, size, 0 };
    kmm_test_capture_begin(&cap);
    capturing = true;
    bool injecting = false;
    for (int op = 0; op < 256 && r.i < r.n; op++) {
        unsigned code = kmm_test_get8(&r) % 8;
        size_t k = kmm_test_get8(&r) % SLOTS;
        struct obj *o = &objs[k];
        if (code <= 1) {
            unsigned v = kmm_test_get16(&r);
            size_t sz = (v & 0xe000) == 0xe000 ? (size_t)(v & 0x1fff) * 512 : v & 0x1fff;
            if (o->p)
                continue;
            void *p = kmm_execmem_alloc(mm, sz);
            if (!sz && p)
                kmm_test_fail("fuzz_execmem: size 0 allocated");
            if (!p)
                continue;   /* size 0, or an injected failure */
            o->p = p, o->size = sz;
            o->model = malloc(sz);
            memcpy(o->model, p, sz);
#if defined(__x86_64__) || defined(__i386__)
            for (size_t i = 0; i < sz; i++)
                if (o->model[i] != 0xcc)
                    kmm_test_fail("fuzz_execmem: fresh allocation of %zu: byte %zu is not a trap", sz, i);
#endif
            compare(k, "alloc");
        } else if (code <= 3) {
            size_t off = kmm_test_get16(&r), len = kmm_test_get16(&r);
            if (!o->p)
                continue;
            off %= o->size + 32;
            unsigned char *dst = o->p + off;
            int rc = kmm_execmem_write(mm, dst, src, len);
            size_t j = SLOTS;   /* the allocation it lands in (past the slot's end: perhaps a neighbour's) */
            for (size_t i = 0; i < SLOTS; i++)
                if (objs[i].p && dst >= objs[i].p && inside(&objs[i], (size_t)(dst - objs[i].p), len))
                    j = i;
            if (len && j < SLOTS && rc == 0) {
                size_t at = (size_t)(dst - objs[j].p);
                size_t n = at + len > objs[j].size ? (at < objs[j].size ? objs[j].size - at : 0) : len;
                memcpy(objs[j].model + at, src, n);
                compare(j, "write");
            } else if (len && j < SLOTS && rc != -KMM_EIO) {
                kmm_test_fail("fuzz_execmem: write inside refused: %d", rc);
            } else if (len && j == SLOTS && rc != -KMM_EINVAL) {
                kmm_test_fail("fuzz_execmem: write outside returned %d", rc);
            }
            compare(k, "write");
        } else if (code == 4) {
            struct kmm_execmem_piece pc[8];
            size_t n = 1 + k % 8, which[8];
            bool ok = true;
            for (size_t i = 0; i < n; i++) {
                which[i] = kmm_test_get8(&r) % SLOTS;
                size_t off = kmm_test_get16(&r) % 600, len = kmm_test_get8(&r) + 1u;
                struct obj *t = &objs[which[i]];
                pc[i] = (struct kmm_execmem_piece){ t->p ? t->p + off : (void *)src, src + i * 256, len };
                /* the allocation the piece lands in: past its slot's end it may be a neighbour's */
                which[i] = SLOTS;
                for (size_t j = 0; j < SLOTS; j++)
                    if (objs[j].p && (unsigned char *)pc[i].dst >= objs[j].p &&
                        inside(&objs[j], (size_t)((unsigned char *)pc[i].dst - objs[j].p), len))
                        which[i] = j;
                ok = ok && which[i] < SLOTS;
            }
            for (size_t i = 0; ok && i < n; i++)
                for (size_t j = 0; j < n; j++)
                    if (i != j && (uintptr_t)pc[i].dst <= (uintptr_t)pc[j].dst &&
                        (uintptr_t)pc[i].dst + pc[i].len > (uintptr_t)pc[j].dst)
                        ok = false;
            int rc = kmm_execmem_write_batch(mm, pc, n);
            if (ok && rc == 0) {
                for (size_t i = 0; i < n; i++) {
                    struct obj *t = &objs[which[i]];
                    size_t off = (size_t)((unsigned char *)pc[i].dst - t->p);
                    size_t len = off + pc[i].len > t->size ? (off < t->size ? t->size - off : 0) : pc[i].len;
                    memcpy(t->model + off, pc[i].src, len);
                }
            } else if (!(rc == -KMM_ENOMEM && injecting) && (ok ? rc != -KMM_EIO : rc != -KMM_EINVAL)) {
            {
                uncapture(NULL);
                for (size_t i = 0; i < n; i++)
                    fprintf(stderr, "piece %zu: in slot %zu, dst %p len %zu\n", i, which[i], pc[i].dst, pc[i].len);
                kmm_test_fail("fuzz_execmem: batch (valid %d) returned %d", ok, rc);
            }
            }
            for (size_t i = 0; i < n; i++)
                if (which[i] < SLOTS)
                    compare(which[i], "batch");
        } else if (code == 5) {
            if (o->p) {
                kmm_execmem_free(mm, o->p);
                free(o->model);
                o->p = NULL;
            }
        } else if (code == 6) {
            injecting = true;
            kmm_fault_inject(mm, KMM_FAULT_PAGES | KMM_FAULT_META | KMM_FAULT_MAP | KMM_FAULT_DIRECT,
                             1 + kmm_test_get8(&r) % 16, 1);
        } else {
            if (kmm_check(mm) != 0)
                kmm_test_fail("fuzz_execmem: kmm_check");
            struct kmm_execmem_stats st;
            kmm_execmem_stats(mm, &st);
            size_t live = 0, bytes = 0;
            for (size_t i = 0; i < SLOTS; i++)
                if (objs[i].p)
                    live++, bytes += objs[i].size;
            if (st.allocations != live || st.bytes != bytes)
                kmm_test_fail("fuzz_execmem: stats %zu allocations %zu bytes, model %zu %zu", st.allocations, st.bytes,
                              live, bytes);
        }
    }
    kmm_fault_inject(mm, 0, 0, 0);
    for (size_t i = 0; i < SLOTS; i++) {
        compare(i, "the input");
        if (objs[i].p) {
            kmm_execmem_free(mm, objs[i].p);
            free(objs[i].model);
            objs[i].p = NULL;
        }
    }
    uncapture(NULL);
    struct kmm_execmem_stats st;
    kmm_execmem_stats(mm, &st);
    if (kmm_check(mm) != 0 || st.allocations || st.chunks || st.pages)
        kmm_test_fail("fuzz_execmem: left %zu allocations, %zu chunks, %zu pages", st.allocations, st.chunks, st.pages);
    return 0;
}
