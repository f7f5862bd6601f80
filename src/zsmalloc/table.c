/* table.c - the id tables of a pool (handles, zspages): ids to 64-bit
 * entries in chunks of metadata memory, with a FIFO list of free ids.
 * Growth is allocated without the pool lock and installed under it. */
#include "zs_internal.h"

#define ENTRY_LINK_MASK 0xffffffffull

uint32_t kmm__table_get(struct zs_table *t)
{
    uint32_t id = t->free_head;
    if (id == ZS_NO_ID)
        return ZS_NO_ID;
    uint64_t *e = table_entry(t, id);
    t->free_head = (uint32_t)(*e & ENTRY_LINK_MASK);
    if (t->free_head == ZS_NO_ID)
        t->free_tail = ZS_NO_ID;
    t->used++;
    return id;
}

void kmm__table_put(struct zs_table *t, uint32_t id)
{
    uint64_t *e = table_entry(t, id);
    *e = (*e & ~(ZS_ENTRY_USED | ENTRY_LINK_MASK)) | ZS_NO_ID;
    if (t->free_tail == ZS_NO_ID)
        t->free_head = id;
    else
        *table_entry(t, t->free_tail) = (*table_entry(t, t->free_tail) & ~ENTRY_LINK_MASK) | id;
    t->free_tail = id;
    t->used--;
}

bool kmm__table_growth_alloc(struct kmm *mm, const struct zs_table *t, struct zs_table_growth *g)
{
    g->dir = NULL;
    g->dir_cap = 0;
    g->chunk = kmm__meta_obj_alloc(mm, ZS_CHUNK_ENTRIES * sizeof(uint64_t));
    if (!g->chunk)
        return false;
    /* read without the lock: a stale value only makes a directory too
     * small (the install then leaves the chunk for the next round) */
    uint32_t nr = load_relaxed(&t->nr_chunks), cap = load_relaxed(&t->dir_cap);
    if (nr == cap) {
        g->dir_cap = cap ? cap * 2 : 8;
        g->dir = kmm__meta_obj_alloc(mm, g->dir_cap * sizeof(uint64_t *));
        if (!g->dir) {
            kmm__meta_obj_free(mm, g->chunk, ZS_CHUNK_ENTRIES * sizeof(uint64_t));
            g->chunk = NULL;
            return false;
        }
    }
    return true;
}

void kmm__table_grow(struct zs_table *t, struct zs_table_growth *g)
{
    if (t->free_head != ZS_NO_ID)
        return;   /* another thread grew it: g is freed whole */
    if (t->nr_chunks == t->dir_cap) {
        if (!g->dir || g->dir_cap <= t->dir_cap)
            return;
        for (uint32_t i = 0; i < t->nr_chunks; i++)
            g->dir[i] = t->dir[i];
        uint64_t **old = t->dir;
        uint32_t old_cap = t->dir_cap;
        t->dir = g->dir;
        store_relaxed(&t->dir_cap, g->dir_cap);   /* read without the lock by kmm__table_growth_alloc */
        g->dir = old;   /* freed after the lock */
        g->dir_cap = old_cap;
    }
    uint32_t base = t->nr_chunks * ZS_CHUNK_ENTRIES;
    uint64_t *c = g->chunk;
    g->chunk = NULL;
    for (uint32_t i = 0; i < ZS_CHUNK_ENTRIES; i++)
        c[i] = i + 1 < ZS_CHUNK_ENTRIES ? base + i + 1 : ZS_NO_ID;
    t->dir[t->nr_chunks] = c;
    store_relaxed(&t->nr_chunks, t->nr_chunks + 1);
    t->free_head = base;
    t->free_tail = base + ZS_CHUNK_ENTRIES - 1;
}

void kmm__table_growth_free(struct kmm *mm, struct zs_table_growth *g)
{
    if (g->chunk)
        kmm__meta_obj_free(mm, g->chunk, ZS_CHUNK_ENTRIES * sizeof(uint64_t));
    if (g->dir)
        kmm__meta_obj_free(mm, g->dir, g->dir_cap * sizeof(uint64_t *));
    g->chunk = NULL;
    g->dir = NULL;
}

void kmm__table_destroy(struct kmm *mm, struct zs_table *t)
{
    for (uint32_t i = 0; i < t->nr_chunks; i++)
        kmm__meta_obj_free(mm, t->dir[i], ZS_CHUNK_ENTRIES * sizeof(uint64_t));
    if (t->dir)
        kmm__meta_obj_free(mm, t->dir, t->dir_cap * sizeof(uint64_t *));
    __builtin_memset(t, 0, sizeof(*t));
    t->free_head = t->free_tail = ZS_NO_ID;
}

size_t kmm__table_bytes(const struct zs_table *t)
{
    return (size_t)t->nr_chunks * ZS_CHUNK_ENTRIES * sizeof(uint64_t) + (size_t)t->dir_cap * sizeof(uint64_t *);
}

int kmm__table_check(struct kmm *mm, const struct zs_table *t, const char *what)
{
    uint32_t cap = table_capacity(t), nfree = 0, last = ZS_NO_ID;
    if (t->nr_chunks > t->dir_cap || t->used > cap)
        return kmm__check_fail(mm, what, t->used);
    for (uint32_t id = t->free_head; id != ZS_NO_ID; id = (uint32_t)(*table_entry(t, id) & ENTRY_LINK_MASK)) {
        if (id >= cap || nfree >= cap - t->used || (*table_entry(t, id) & ZS_ENTRY_USED))
            return kmm__check_fail(mm, what, id);
        nfree++;
        last = id;
    }
    if (nfree != cap - t->used || last != t->free_tail)
        return kmm__check_fail(mm, what, nfree);
    uint32_t used = 0;
    for (uint32_t id = 0; id < cap; id++)
        used += (*table_entry(t, id) & ZS_ENTRY_USED) != 0;
    return used == t->used ? 0 : kmm__check_fail(mm, what, used);
}
