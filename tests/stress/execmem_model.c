/* execmem_model.c - randomized kmm_execmem_* against a model of bytes.
 *
 * Each live allocation has a plain copy of what it should hold: the trap
 * pattern when fresh, then what writes put there. Random allocations (1
 * byte .. 4 KiB mostly, now and then up to 3 MiB), single writes (inside,
 * and outside the allocation: refused, nothing changes), batches (one bad
 * piece now and then: nothing changes), frees and batch frees; after every step the
 * touched allocation is read back through its r-x mapping and compared,
 * every 64 steps all of them and kmm_check. Seeded ($KMM_SEED repeats a
 * run); 4 and 16 KiB pages.
 */
#include "kmm_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 128
#define STEPS 3000

struct obj {
    unsigned char *p;
    size_t size;
    unsigned char *model;
};

static struct obj objs[SLOTS];
static uint64_t seed, rng;
static size_t page_size;

static void head(FILE *f)
{
    fprintf(f, "execmem_model: page size %zu, seed %llu: ", page_size, (unsigned long long)seed);
}

static void compare(size_t k)
{
    struct obj *o = &objs[k];
    if (o->p && memcmp(o->p, o->model, o->size) != 0)
        for (size_t i = 0; i < o->size; i++)
            if (o->p[i] != o->model[i])
                kmm_test_fail("slot %zu (%p, %zu bytes): byte %zu is %#x, model %#x", k, (void *)o->p, o->size, i,
                              o->p[i], o->model[i]);
}

static void run(size_t ps)
{
    page_size = ps;
    struct kmm *mm = kmm_test_create(ps, 256ull << 20);
    unsigned char *src = malloc(3u << 20);
    for (size_t i = 0; i < (3u << 20); i++)
        src[i] = (unsigned char)kmm_test_rand(&rng);
    for (int step = 0; step < STEPS; step++) {
        size_t k = kmm_test_below(&rng, SLOTS);
        struct obj *o = &objs[k];
        unsigned op = (unsigned)kmm_test_below(&rng, 10);
        if (!o->p) {
            size_t size = kmm_test_below(&rng, 100) == 0 ? 1 + kmm_test_below(&rng, 3u << 20)
                                                          : 1 + kmm_test_below(&rng, 4096);
            o->p = kmm_execmem_alloc(mm, size);
            if (!o->p)
                kmm_test_fail("alloc of %zu failed", size);
            o->size = size;
            o->model = malloc(size);
            memset(o->model, 0xcc, size);
#if !defined(__x86_64__) && !defined(__i386__)
            memcpy(o->model, o->p, size);   /* the trap pattern is the architecture's */
#endif
        } else if (op < 4) {
            size_t off = kmm_test_below(&rng, o->size), len = 1 + kmm_test_below(&rng, o->size - off);
            size_t from = kmm_test_below(&rng, (3u << 20) - len);
            if (kmm_execmem_write(mm, o->p + off, src + from, len) != 0)
                kmm_test_fail("write [%zu, +%zu) of %zu refused", off, len, o->size);
            memcpy(o->model + off, src + from, len);
        } else if (op < 5) {
            /* past the usable size: refused */
            size_t usable = kmm_execmem_usable_size(mm, o->p);
            struct kmm_test_capture cap;
            kmm_test_capture_begin(&cap);
            int rc = kmm_execmem_write(mm, o->p + usable - 1, src, 2);
            free(kmm_test_capture_end(&cap));
            if (rc != -KMM_EINVAL)
                kmm_test_fail("write past the end returned %d", rc);
        } else if (op < 7) {
            struct kmm_execmem_piece pc[16];
            size_t n = 1 + kmm_test_below(&rng, 16), used[16];
            bool bad = kmm_test_below(&rng, 8) == 0;
            for (size_t i = 0; i < n; i++) {
                size_t j = kmm_test_below(&rng, SLOTS);
                while (!objs[j].p)
                    j = (j + 1) % SLOTS;
                used[i] = j;
                size_t off = kmm_test_below(&rng, objs[j].size);
                size_t len = 1 + kmm_test_below(&rng, objs[j].size - off < 512 ? objs[j].size - off : 512);
                pc[i] = (struct kmm_execmem_piece){ objs[j].p + off, src + kmm_test_below(&rng, 1u << 20), len };
            }
            if (bad) {
                size_t i = kmm_test_below(&rng, n);
                struct obj *t = &objs[used[i]];
                pc[i].len = kmm_execmem_usable_size(mm, t->p) - (size_t)((unsigned char *)pc[i].dst - t->p) + 1;
            }
            /* overlapping pieces are refused too */
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < n; j++)
                    if (i != j && (uintptr_t)pc[i].dst <= (uintptr_t)pc[j].dst &&
                        (uintptr_t)pc[i].dst + pc[i].len > (uintptr_t)pc[j].dst && (i < j || pc[i].dst != pc[j].dst))
                        bad = true;
            struct kmm_test_capture cap;
            kmm_test_capture_begin(&cap);
            int rc = kmm_execmem_write_batch(mm, pc, n);
            free(kmm_test_capture_end(&cap));
            if (rc == 0) {
                for (size_t i = 0; i < n; i++) {
                    struct obj *t = &objs[used[i]];
                    size_t off = (size_t)((unsigned char *)pc[i].dst - t->p);
                    if (off + pc[i].len > t->size)
                        kmm_test_fail("batch piece %zu past its object accepted", i);
                    memcpy(t->model + off, pc[i].src, pc[i].len);
                }
            } else if (rc != -KMM_EINVAL || !bad) {
                kmm_test_fail("batch returned %d (bad piece: %d)", rc, bad);
            }
            for (size_t i = 0; i < n; i++)
                compare(used[i]);
        } else if (op < 9) {
            kmm_execmem_free(mm, o->p);
            o->p = NULL;
            free(o->model);
        } else {
            /* kmm_execmem_free_batch of up to 8 slots from k on; the others
             * must keep their bytes */
            void *v[8];
            size_t nv = 0;
            for (size_t j = k; j < SLOTS && nv < 8; j++)
                if (objs[j].p) {
                    v[nv++] = objs[j].p;
                    objs[j].p = NULL;
                    free(objs[j].model);
                }
            kmm_execmem_free_batch(mm, v, nv);
            for (size_t j = 0; j < SLOTS; j++)
                compare(j);
        }
        compare(k);
        if (step % 64 == 0) {
            for (size_t j = 0; j < SLOTS; j++)
                compare(j);
            if (kmm_check(mm) != 0)
                kmm_test_fail("kmm_check failed at step %d", step);
        }
    }
    for (size_t j = 0; j < SLOTS; j++) {
        compare(j);
        if (objs[j].p) {
            kmm_execmem_free(mm, objs[j].p);
            free(objs[j].model);
            objs[j].p = NULL;
        }
    }
    struct kmm_execmem_stats st;
    kmm_execmem_stats(mm, &st);
    if (kmm_check(mm) != 0 || st.chunks || st.pages || st.allocations || st.bytes)
        kmm_test_fail("after freeing everything: %zu chunks, %zu pages, %zu allocations", st.chunks, st.pages,
                      st.allocations);
    free(src);
    kmm_destroy(mm);
}

int main(void)
{
    kmm_test_on_fail(head, NULL, false);
    seed = rng = kmm_test_seed("execmem_model");
    run(4096);
    run(16384);
    printf("execmem_model: %d steps at 4 and 16 KiB pages: ok\n", STEPS);
    return 0;
}
