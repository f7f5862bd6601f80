/* space.c - the sub-page allocator of a packed chunk: bitmaps of 16-byte
 * granules (used, head, dead; see execmem_internal.h), next-fit search,
 * and the class lists that find a chunk with room without visiting all. */
#include "execmem_internal.h"

bool kmm__exec_bit(const uint64_t *map, size_t i)
{
    return (map[i / EXEC_WORD_BITS] >> (i % EXEC_WORD_BITS)) & 1;
}

/* The bits [from, to) of word w's range, as a mask of that word. */
static uint64_t word_mask(size_t w, size_t from, size_t to)
{
    size_t lo = w * EXEC_WORD_BITS, hi = lo + EXEC_WORD_BITS;
    uint64_t m = ~0ull;
    if (from > lo)
        m &= ~0ull << (from - lo);
    if (to < hi)
        m &= ~0ull >> (hi - to);
    return m;
}

void kmm__exec_set(uint64_t *map, size_t from, size_t to)
{
    for (size_t w = from / EXEC_WORD_BITS; from < to && w * EXEC_WORD_BITS < to; w++)
        map[w] |= word_mask(w, from, to);
}

void kmm__exec_clear(uint64_t *map, size_t from, size_t to)
{
    for (size_t w = from / EXEC_WORD_BITS; from < to && w * EXEC_WORD_BITS < to; w++)
        map[w] &= ~word_mask(w, from, to);
}

size_t kmm__exec_next(const uint64_t *map, size_t from, size_t to, bool one)
{
    for (size_t w = from / EXEC_WORD_BITS; from < to && w * EXEC_WORD_BITS < to; w++) {
        uint64_t bits = (one ? map[w] : ~map[w]) & word_mask(w, from, to);
        if (bits)
            return w * EXEC_WORD_BITS + (size_t)__builtin_ctzll(bits);
    }
    return to;
}

size_t kmm__exec_prev_one(const uint64_t *map, size_t i)
{
    if (i == 0)
        return SIZE_MAX;
    for (size_t w = (i - 1) / EXEC_WORD_BITS;; w--) {
        uint64_t bits = map[w] & word_mask(w, 0, i);
        if (bits)
            return w * EXEC_WORD_BITS + 63 - (size_t)__builtin_clzll(bits);
        if (w == 0)
            return SIZE_MAX;
    }
}

size_t kmm__exec_count(const uint64_t *map, size_t from, size_t to)
{
    size_t n = 0;
    for (size_t w = from / EXEC_WORD_BITS; from < to && w * EXEC_WORD_BITS < to; w++)
        n += (size_t)__builtin_popcountll(map[w] & word_mask(w, from, to));
    return n;
}

size_t kmm__exec_find_run(const uint64_t *map, size_t from, size_t to, size_t n)
{
    size_t i = from;
    while (i < to && to - i >= n) {
        i = kmm__exec_next(map, i, to, false);
        if (i >= to || to - i < n)
            break;
        size_t end = kmm__exec_next(map, i, i + n, true);
        if (end == i + n)
            return i;
        i = end;
    }
    return SIZE_MAX;
}

/* One pass over both bitmaps, stopping at the first granule that is a
 * head or not used: O(the allocation's length / 64), not O(chunk). */
size_t kmm__exec_extent_end(const struct exec_chunk *c, size_t g)
{
    size_t from = g + 1;
    for (size_t w = from / EXEC_WORD_BITS; w < EXEC_CHUNK_WORDS; w++) {
        uint64_t bits = (c->head[w] | ~c->used[w]) & word_mask(w, from, EXEC_CHUNK_GRANULES);
        if (bits)
            return w * EXEC_WORD_BITS + (size_t)__builtin_ctzll(bits);
    }
    return EXEC_CHUNK_GRANULES;
}

unsigned kmm__exec_tail_get(const struct exec_chunk *c, size_t g)
{
    return (unsigned)(c->tail[g / 2] >> (g % 2 * 4)) & 15u;
}

void kmm__exec_tail_set(struct exec_chunk *c, size_t g, unsigned v)
{
    unsigned shift = (unsigned)(g % 2 * 4);
    c->tail[g / 2] = (uint8_t)((c->tail[g / 2] & ~(15u << shift)) | (v << shift));
}

size_t kmm__exec_search(const struct exec_chunk *c, size_t mapped_granules, size_t n)
{
    size_t hint = c->hint < mapped_granules ? c->hint : 0;
    size_t at = kmm__exec_find_run(c->used, hint, mapped_granules, n);
    if (at == SIZE_MAX && hint)
        at = kmm__exec_find_run(c->used, 0, hint + n - 1 < mapped_granules ? hint + n - 1 : mapped_granules, n);
    return at;
}

unsigned kmm__exec_class_of(size_t free_granules)
{
    return free_granules ? 63u - (unsigned)__builtin_clzll(free_granules) : EXEC_CLASSES;
}

void kmm__exec_class_remove(struct kmm_execmem *x, struct exec_chunk *c)
{
    if (c->cls >= EXEC_CLASSES)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        x->cls[c->cls] = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->cls = EXEC_CLASSES;
}

/* A chunk with no free granule is on no list; the others on the list of
 * their free count's log2, so a search for n granules starts at log2(n)
 * and every chunk it visits from log2(n) + 1 up has room by count. */
void kmm__exec_class_update(struct kmm_execmem *x, struct exec_chunk *c)
{
    unsigned cls = kmm__exec_class_of(EXEC_CHUNK_GRANULES - c->used_granules);
    if (cls == c->cls)
        return;
    kmm__exec_class_remove(x, c);
    if (cls >= EXEC_CLASSES)
        return;
    c->cls = cls;
    c->next = x->cls[cls];
    if (c->next)
        c->next->prev = c;
    x->cls[cls] = c;
}

static void swap_bytes(unsigned char *a, unsigned char *b, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        unsigned char t = a[i];
        a[i] = b[i];
        b[i] = t;
    }
}

void kmm__exec_sort(void *base, size_t n, size_t size, bool (*before)(const void *ctx, const void *a, const void *b),
                    const void *ctx)
{
    unsigned char *e = base;
#define AT(i) (e + (i) * size)
    size_t sorted = 1;
    while (sorted < n && !before(ctx, AT(sorted), AT(sorted - 1)))
        sorted++;
    if (sorted >= n)
        return;
    for (size_t end = n, start = n / 2;;) {
        if (start > 0) {
            start--;
        } else {
            if (end <= 1)
                return;
            end--;
            swap_bytes(AT(0), AT(end), size);
        }
        for (size_t root = start; 2 * root + 1 < end;) {
            size_t child = 2 * root + 1;
            if (child + 1 < end && before(ctx, AT(child), AT(child + 1)))
                child++;
            if (!before(ctx, AT(root), AT(child)))
                break;
            swap_bytes(AT(root), AT(child), size);
            root = child;
        }
    }
#undef AT
}
