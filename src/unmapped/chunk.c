/* chunk.c - the unmapped cache's chunk records: a buddy allocator whose
 * state lives beside the pages, in metadata memory (the pages are not
 * mapped: a free list could not link through them), the chunks sorted by
 * address, and the direct map's mapping count computed from them.
 *
 * A record is one metadata object: the struct, then per order o <= the
 * chunk's order a bitmap of the FREE heads of order o (2^(order - o)
 * bits), the dirty bitmap (a bit per page), and the state bytes (one per
 * page). For a 2 MiB chunk of 4 KiB pages: 168 + 64 + 512 bytes after the
 * struct. Finding a free block of order o is a scan of its bitmap: 8 words
 * at most for order 0 of a 2 MiB chunk.
 */
#include "unmapped_internal.h"

static size_t bitmap_words(unsigned chunk_order, unsigned o) { return (((size_t)1 << (chunk_order - o)) + 63) / 64; }

static size_t free_bits_words(unsigned order)
{
    size_t words = 0;
    for (unsigned o = 0; o <= order; o++)
        words += bitmap_words(order, o);
    return words;
}

size_t um_chunk_bytes(unsigned order)
{
    return sizeof(struct um_chunk) + (free_bits_words(order) + bitmap_words(order, 0)) * sizeof(uint64_t) +
           ((size_t)1 << order);
}

uint64_t *um_bits_at(const struct um_chunk *c, unsigned o)
{
    uint64_t *p = c->free_bits;
    for (unsigned j = 0; j < o; j++)
        p += bitmap_words(c->order, j);
    return p;
}

bool um_bit(const uint64_t *bits, size_t i) { return (bits[i / 64] >> (i % 64)) & 1; }
static void bit_set(uint64_t *bits, size_t i) { bits[i / 64] |= (uint64_t)1 << (i % 64); }
static void bit_clear(uint64_t *bits, size_t i) { bits[i / 64] &= ~((uint64_t)1 << (i % 64)); }

void um_dirty_set(struct um_chunk *c, size_t off, size_t n, bool dirty)
{
    while (n) {
        size_t bit = off % 64, take = 64 - bit < n ? 64 - bit : n;
        uint64_t mask = (take == 64 ? ~(uint64_t)0 : (((uint64_t)1 << take) - 1)) << bit;
        if (dirty)
            __atomic_fetch_or(&c->dirty[off / 64], mask, __ATOMIC_RELAXED);
        else
            __atomic_fetch_and(&c->dirty[off / 64], ~mask, __ATOMIC_RELAXED);
        off += take, n -= take;
    }
}

struct um_chunk *um_chunk_new(struct kmm *mm, uint64_t base_pfn, unsigned order, bool nocache, enum um_kind kind)
{
    size_t bytes = um_chunk_bytes(order);
    struct um_chunk *c = kmm__meta_obj_alloc(mm, bytes);   /* zeroed */
    if (!c)
        return NULL;
    c->base_pfn = base_pfn;
    c->order = order;
    c->nocache = nocache;
    c->bytes = bytes;
    c->free_bits = (uint64_t *)(void *)(c + 1);
    c->dirty = c->free_bits + free_bits_words(order);
    c->state = (uint8_t *)(c->dirty + bitmap_words(order, 0));
    c->held = (size_t)1 << order;
    /* the pages held someone's data: all dirty */
    um_dirty_set(c, 0, (size_t)1 << order, true);
    if (nocache) {
        c->state[0] = um_state(kind, order);
    } else {
        c->state[0] = um_state(UM_FREE, order);
        bit_set(um_bits_at(c, order), 0);
        c->nfree[order] = 1;
        c->free_pages = (size_t)1 << order;
    }
    return c;
}

void um_chunk_free(struct kmm *mm, struct um_chunk *c) { kmm__meta_obj_free(mm, c, c->bytes); }

/* ---- the per-order lists ---- */

static void list_add(struct kmm_unmapped *u, struct um_chunk *c, unsigned o)
{
    c->prev[o] = NULL;
    c->next[o] = u->list[o];
    if (u->list[o])
        u->list[o]->prev[o] = c;
    u->list[o] = c;
}

static void list_del(struct kmm_unmapped *u, struct um_chunk *c, unsigned o)
{
    if (c->prev[o])
        c->prev[o]->next[o] = c->next[o];
    else
        u->list[o] = c->next[o];
    if (c->next[o])
        c->next[o]->prev[o] = c->prev[o];
    c->next[o] = c->prev[o] = NULL;
}

static void free_mark(struct kmm_unmapped *u, struct um_chunk *c, size_t off, unsigned o)
{
    c->state[off] = um_state(UM_FREE, o);
    bit_set(um_bits_at(c, o), off >> o);
    if (c->nfree[o]++ == 0)
        list_add(u, c, o);
    c->free_pages += (size_t)1 << o;
    u->pages_free += (size_t)1 << o;
}

static void free_unmark(struct kmm_unmapped *u, struct um_chunk *c, size_t off, unsigned o)
{
    c->state[off] = 0;
    bit_clear(um_bits_at(c, o), off >> o);
    if (--c->nfree[o] == 0)
        list_del(u, c, o);
    c->free_pages -= (size_t)1 << o;
    u->pages_free -= (size_t)1 << o;
}

/* ---- buddy operations inside a chunk ---- */

size_t um_block_take(struct kmm_unmapped *u, struct um_chunk *c, unsigned o, enum um_kind kind)
{
    unsigned k = o;
    while (!c->nfree[k])
        k++;
    const uint64_t *bits = um_bits_at(c, k);
    size_t w = 0;
    while (!bits[w])
        w++;
    size_t off = (w * 64 + (size_t)__builtin_ctzll(bits[w])) << k;
    free_unmark(u, c, off, k);
    while (k > o) {
        k--;
        free_mark(u, c, off + ((size_t)1 << k), k);   /* the upper half stays free */
    }
    c->state[off] = um_state(kind, o);
    u->pages_by_kind[kind] += (size_t)1 << o;
    return off;
}

void um_block_put(struct kmm_unmapped *u, struct um_chunk *c, size_t off, unsigned o)
{
    enum um_kind old = um_kind_of(c->state[off]);
    if (old != UM_RELEASED)
        u->pages_by_kind[old] -= (size_t)1 << o;
    c->state[off] = 0;
    while (o < c->order) {
        size_t buddy = off ^ ((size_t)1 << o);
        if (c->state[buddy] != um_state(UM_FREE, o))
            break;
        free_unmark(u, c, buddy, o);
        off &= ~((size_t)1 << o);
        o++;
    }
    free_mark(u, c, off, o);
}

void um_block_unfree(struct kmm_unmapped *u, struct um_chunk *c, size_t off, unsigned o, enum um_kind kind)
{
    free_unmark(u, c, off, o);
    c->state[off] = um_state(kind, o);
    if (kind != UM_RELEASED)
        u->pages_by_kind[kind] += (size_t)1 << o;
}

/* ---- chunks by address ---- */

/* Index of the first chunk whose base is above pfn. */
static size_t upper_bound(const struct kmm_unmapped *u, uint64_t pfn)
{
    size_t lo = 0, hi = u->nr_chunks;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (u->sorted[mid]->base_pfn <= pfn)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Chunks nest: a block a shrink gave back from a chunk may come back in a
 * later (smaller) chunk, which then lies inside the first one's RELEASED
 * block. The innermost chunk holding pfn is the one with the largest base
 * (an inner one is newer, and insert puts it after equal bases), so the
 * search walks back from the last base <= pfn to the first chunk holding
 * pfn; no chunk further back can reach pfn once its base is a largest
 * chunk's length before it. O(log chunks) without nesting. */
struct um_chunk *um_chunk_find(struct kmm_unmapped *u, uint64_t pfn)
{
    for (size_t i = upper_bound(u, pfn); i-- > 0;) {
        struct um_chunk *c = u->sorted[i];
        if (pfn - c->base_pfn < um_chunk_pages(c))
            return c;
        if (c->base_pfn + u->max_chunk_pages <= pfn)
            break;
    }
    return NULL;
}

uint8_t um_block_at(const struct um_chunk *c, size_t off, size_t *head)
{
    size_t h = off;
    for (unsigned k = 1; c->state[h] == 0 && k <= c->order; k++)
        h = off & ~(((size_t)1 << k) - 1);
    if (head)
        *head = h;
    return c->state[h];
}

void um_chunk_insert(struct kmm_unmapped *u, struct um_chunk *c)
{
    size_t i = upper_bound(u, c->base_pfn);
    for (size_t j = u->nr_chunks; j > i; j--)
        u->sorted[j] = u->sorted[j - 1];
    u->sorted[i] = c;
    u->nr_chunks++;
    if (um_chunk_pages(c) > u->max_chunk_pages)
        u->max_chunk_pages = um_chunk_pages(c);
    if (c->nocache) {
        u->pages_nocache += um_chunk_pages(c);
        return;
    }
    u->pages_held += c->held;
    u->pages_free += c->free_pages;
    for (unsigned o = 0; o <= c->order; o++)
        if (c->nfree[o])
            list_add(u, c, o);
    u->cached[c->order]++;
}

void um_chunk_remove(struct kmm_unmapped *u, struct um_chunk *c)
{
    size_t i = upper_bound(u, c->base_pfn) - 1;
    while (u->sorted[i] != c)   /* a chunk nested at the same base came later */
        i--;
    for (; i + 1 < u->nr_chunks; i++)
        u->sorted[i] = u->sorted[i + 1];
    u->nr_chunks--;
    if (c->nocache) {
        u->pages_nocache -= um_chunk_pages(c);
        return;
    }
    u->pages_held -= c->held;
    u->pages_free -= c->free_pages;
    for (unsigned o = 0; o <= c->order; o++)
        if (c->nfree[o])
            list_del(u, c, o);
}

/* ---- the direct map's mappings ---- */

/* What an unmapped block [a, b) of frames adds to its memory range's one
 * mapping: a boundary at each end that is not the range's and whose
 * neighbour is mapped. */
static size_t run_splits(struct kmm *mm, uint64_t a, uint64_t b, bool mapped_before, bool mapped_after)
{
    for (unsigned r = 0; r < mm->mem.nr_ranges; r++) {
        uint64_t s = mm->mem.ranges[r].start >> mm->page_shift, e = mm->mem.ranges[r].end >> mm->page_shift;
        if (a >= s && a < e)
            return (a > s && mapped_before) + (b < e && mapped_after);
    }
    return 0;
}

/* Is frame pfn out of the direct map (in a chunk, in no RELEASED block)? */
static bool pfn_unmapped(struct kmm_unmapped *u, uint64_t pfn)
{
    const struct um_chunk *c = um_chunk_find(u, pfn);
    return c && um_kind_of(um_block_at(c, (size_t)(pfn - c->base_pfn), NULL)) != UM_RELEASED;
}

/* Each unmapped block (a whole chunk, or each block of a chunk that gave
 * some back) adds a boundary at each end where its neighbour is mapped
 * and is not the end of its memory range; the blocks are disjoint, so
 * every boundary of a maximal run is counted once. */
size_t um_direct_map_mappings(struct kmm *mm, struct kmm_unmapped *u)
{
    size_t n = mm->mem.nr_ranges;
    for (size_t i = 0; u && i < u->nr_chunks; i++) {
        const struct um_chunk *c = u->sorted[i];
        size_t pages = (size_t)um_chunk_pages(c);
        bool whole = c->held == pages && !c->carved;
        for (size_t off = 0; off < pages;) {
            uint8_t s = c->state[off];
            size_t len = whole ? pages : (size_t)1 << um_order_of(s);
            if (whole || um_kind_of(s) != UM_RELEASED) {
                uint64_t a = c->base_pfn + off, b = a + len;
                n += run_splits(mm, a, b, !pfn_unmapped(u, a - 1), !pfn_unmapped(u, b));
            }
            off += len;
        }
    }
    return n;
}
