/* White-box tests of the slab layer's slot arithmetic (src/internal.h:
 * slot_product, slot_of, slot_started_by and the free fast path's test
 * with SLOT_START_BITS), at every page size kmm_create accepts.
 *
 * One multiply by the cache's reciprocal gives a pointer's slot and whether
 * the pointer starts it; the proof next to slot_product bounds the offsets,
 * slot sizes and slot counts it holds for. These tests check it against
 * plain division:
 *  - for every page size (4 KiB .. 1 MiB) and every slot size a cache can
 *    have there (8 .. 8 pages, in steps of 8), with the slab orders
 *    kmm__cache_init chooses (slab_order and the min_order fallback): at
 *    every slot start, the bytes after it and before the next, and in the
 *    slab's tail;
 *  - at the largest page sizes, every offset of the slabs of every kmm_malloc
 *    class and of caches of chosen sizes (the reviewer's 200000 bytes at
 *    256 KiB and 400000 at 1 MiB among them).
 * On 56bd589 (RECIP_SHIFT 44, offsets assumed below 2^20) slot starts past
 * 1 MiB into a slab were taken for the middle of a slot. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "page/page_internal.h"
#include "slab/slab_internal.h"
#include "kmm_test.h"

#define BASE ((uintptr_t)0x7f1234000000ull)   /* a slab's base: the arithmetic uses only offsets */

static unsigned long long checked;

/* The slot arithmetic at offset off of a slab with slots of d bytes, objects
 * of them, against division. Returns false (after printing) if it is wrong. */
static bool check_offset(const struct kmm_slab *s, uint64_t d, uint64_t off)
{
    uint64_t q = off / d, r = off % d;
    uintptr_t p = s->base + (uintptr_t)off;
    uint64_t want = r == 0 && q < s->objects ? q : UINT64_MAX;
    uint64_t t = slot_product(s, p);
    /* the free fast path: a start iff no bit of SLOT_START_BITS, its held
     * byte at index t >> RECIP_SHIFT, which must stay within objects + 1 */
    bool fast_start = !(t & SLOT_START_BITS);
    checked++;
    if (slot_of(s, p) != q || slot_started_by(s, p) != want || fast_start != (r == 0) ||
        (t >> RECIP_SHIFT) > s->objects) {
        fprintf(stderr,
                "slot size %llu, %u slots, offset %llu (slot %llu + %llu): slot_of %llu, slot_started_by %lld "
                "(want %lld), fast path says %s\n",
                (unsigned long long)d, s->objects, (unsigned long long)off, (unsigned long long)q,
                (unsigned long long)r, (unsigned long long)slot_of(s, p), (long long)slot_started_by(s, p),
                (long long)want, fast_start ? "start" : "not a start");
        return false;
    }
    return true;
}

static struct kmm_slab *fake_slab(struct kmm_slab *s, const struct kmm_cache *c, size_t ps, unsigned order)
{
    memset(s, 0, sizeof(*s));
    s->base = BASE;
    s->recip = c->recip;
    s->objects = (uint32_t)((ps << order) / c->slot_size);
    s->order = order;
    return s;
}

/* Slot starts, the bytes around them and the tail, for both orders of c. */
static bool check_cache_boundaries(const struct kmm_cache *c, size_t ps)
{
    uint64_t d = c->slot_size;
    unsigned orders[2] = { c->slab_order, c->min_order };
    for (unsigned k = 0; k < 2; k++) {
        struct kmm_slab s;
        fake_slab(&s, c, ps, orders[k]);
        uint64_t bytes = (uint64_t)ps << orders[k];
        if (s.objects == 0) {
            fprintf(stderr, "slot size %llu: a slab of order %u holds no slot\n", (unsigned long long)d, orders[k]);
            return false;
        }
        for (uint64_t start = 0; start < bytes; start += d) {
            uint64_t rs[] = { 0, 1, 7, 8, d / 2, d - 8, d - 1 };
            for (size_t i = 0; i < sizeof(rs) / sizeof(rs[0]); i++)
                if (rs[i] < d && start + rs[i] < bytes && !check_offset(&s, d, start + rs[i]))
                    return false;
        }
        if (!check_offset(&s, d, bytes - 1))
            return false;
    }
    return true;
}

/* Every offset of a slab of each order of c. */
static bool check_cache_every_offset(const struct kmm_cache *c, size_t ps)
{
    unsigned orders[2] = { c->slab_order, c->min_order };
    for (unsigned k = 0; k < (c->min_order != c->slab_order ? 2u : 1u); k++) {
        struct kmm_slab s;
        fake_slab(&s, c, ps, orders[k]);
        uint64_t bytes = (uint64_t)ps << orders[k];
        for (uint64_t off = 0; off < bytes; off++)
            if (!check_offset(&s, c->slot_size, off))
                return false;
    }
    return true;
}

static struct kmm *create_at(size_t ps)
{
    struct kmm_config cfg = { .page_size = ps, .mem_size = 64 * (uint64_t)ps };
    struct kmm *mm = kmm_create(&cfg);
    assert_non_null(mm);
    return mm;
}

/* Every page size, every slot size a cache can have there. */
static void test_every_slot_size(void **state)
{
    (void)state;
    checked = 0;
    for (unsigned shift = 12; shift <= 20; shift++) {
        size_t ps = (size_t)1 << shift;
        struct kmm *mm = create_at(ps);
        static struct kmm_cache c;
        for (size_t size = 8; size <= 8 * ps; size += 8) {
            memset(&c, 0, sizeof(c));
            assert_int_equal(kmm__cache_init(mm, &c, "slots", size, 8, NULL, 0, UINT32_MAX), 0);
            assert_int_equal(c.slot_size, size);
            bool ok = check_cache_boundaries(&c, ps);
            kmm__cache_fini(&c);
            if (!ok)
                fprintf(stderr, "page size %zu, cache of %zu-byte objects\n", ps, size);
            assert_true(ok);
        }
        assert_int_equal(kmm_check(mm), 0);
        kmm_destroy(mm);
    }
    printf("  %llu offsets checked\n", checked);
}

/* The largest page sizes: every offset of every kmm_malloc class's slabs,
 * and of caches of chosen sizes. */
static void test_every_offset_large_pages(void **state)
{
    (void)state;
    checked = 0;
    const size_t pss[] = { 256 << 10, 1 << 20 };
    for (size_t k = 0; k < sizeof(pss) / sizeof(pss[0]); k++) {
        size_t ps = pss[k];
        struct kmm *mm = create_at(ps);
        struct kmm_slab_root *r = slab_root(mm);
        assert_non_null(r);
        for (unsigned i = 0; i < r->nr_classes; i++) {
            bool ok = check_cache_every_offset(&r->kmalloc[0][i], ps);
            if (!ok)
                fprintf(stderr, "page size %zu, class %u (%zu bytes)\n", ps, i, r->class_size[i]);
            assert_true(ok);
        }
        const size_t sizes[] = { 8, 24, 4000, 200000, 400000, ps / 2 + 8, ps - 8, ps, ps + 8, 3 * ps - 8,
                                 8 * ps / 9 & ~(size_t)7, 8 * ps / 7 & ~(size_t)7, 4 * ps, 8 * ps - 8, 8 * ps };
        static struct kmm_cache c;
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            memset(&c, 0, sizeof(c));
            assert_int_equal(kmm__cache_init(mm, &c, "offsets", sizes[i], 8, NULL, 0, UINT32_MAX), 0);
            bool ok = check_cache_every_offset(&c, ps);
            kmm__cache_fini(&c);
            if (!ok)
                fprintf(stderr, "page size %zu, cache of %zu-byte objects\n", ps, sizes[i]);
            assert_true(ok);
        }
        assert_int_equal(kmm_check(mm), 0);
        kmm_destroy(mm);
    }
    printf("  %llu offsets checked\n", checked);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_slot_size),
        cmocka_unit_test(test_every_offset_large_pages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
