/* paging.c - the guest's 4-level page tables.
 *
 * Four regions: the kernel image, identity mapped with 4 KiB entries (and
 * nothing else below the direct map, so that a frame kmm hands out is
 * reachable only through the direct map and the mappings kmm asks for); the
 * direct map of every usable range at GUEST_DIRECT_MAP, in 2 MiB entries
 * where the range allows (not the metadata pool); the vmalloc space and the
 * metadata space, filled by guest_map.
 *
 * Entries: 0 is empty; a leaf has PS set at the 2 MiB level; an entry that
 * is not present but not 0 is a leaf taken out of the direct map, kept
 * whole so that making it present again is one write. Page tables come from
 * a pool in the kernel image (identity mapped, so their physical address is
 * their address) and are never freed: like Linux's kernel page tables. */
#include "guest.h"

#define PTE_P   0x1ull
#define PTE_W   0x2ull
#define PTE_PS  0x80ull
#define PTE_NX  (1ull << 63)
#define PTE_ADDR 0x000ffffffffff000ull
#define SIZE_4K 0x1000ull
#define SIZE_2M 0x200000ull

#define POOL_TABLES 1024   /* 4 MiB: maps 2 GiB of vmalloc space in 4 KiB pages, or splits 1024 2 MiB entries */

static uint64_t table_pool[POOL_TABLES][512] __attribute__((aligned(4096)));
static unsigned tables_used;
static uint64_t *pml4;
static uint64_t nx_bit;
static uint64_t invlpg_count, full_flushes;
unsigned guest_flush_ceiling = 32;   /* as Linux's tlb_single_page_flush_ceiling (33) */

static uint64_t *table_new(void)
{
    if (tables_used == POOL_TABLES)
        return NULL;
    uint64_t *t = table_pool[tables_used++];
    __builtin_memset(t, 0, 4096);
    return t;
}

static inline uint64_t *table_of(uint64_t entry)
{
    return (uint64_t *)(uintptr_t)(entry & PTE_ADDR);
}

static inline unsigned index_at(uint64_t va, int level)
{
    return (unsigned)(va >> (12 + 9 * (level - 1))) & 511;
}

/* A 2 MiB leaf becomes a table of 512 4 KiB leaves with the same frames,
 * permissions and presence. Needs one table from the pool. */
static int split_2m(uint64_t *e, uint64_t va)
{
    uint64_t *t = table_new();
    if (!t)
        return -KMM_ENOMEM;
    uint64_t base = *e & PTE_ADDR & ~(SIZE_2M - 1), flags = *e & (PTE_P | PTE_W | PTE_NX);
    for (unsigned i = 0; i < 512; i++)
        t[i] = (base + i * SIZE_4K) | flags;
    *e = (uint64_t)(uintptr_t)t | PTE_P | PTE_W;   /* upper levels permit all; the leaves decide */
    /* The TLB may hold the 2 MiB translation: drop it now, before a 4 KiB
     * entry under it changes, so that no two sizes of translation with
     * different permissions are ever cached for one address (Intel SDM
     * 4.10.2: undefined; Linux flushes here too). */
    __asm__ volatile("invlpg (%0)" ::"r"(va & ~(SIZE_2M - 1)) : "memory");
    return 0;
}

/* The entry for va at level (1: 4 KiB, 2: 2 MiB). create: make missing
 * tables, and split a 2 MiB leaf on the way to level 1. NULL when it is
 * missing (or a leaf is in the way) and create is false, or the pool is
 * empty. */
static uint64_t *entry_at(uint64_t va, int level, bool create)
{
    uint64_t *t = pml4;
    for (int l = 4; l > level; l--) {
        uint64_t *e = &t[index_at(va, l)];
        if (*e == 0) {
            uint64_t *n = create ? table_new() : NULL;
            if (!n)
                return NULL;
            *e = (uint64_t)(uintptr_t)n | PTE_P | PTE_W;
        } else if (*e & PTE_PS) {
            if (!create || l != 2 || split_2m(e, va) != 0)
                return NULL;
        }
        t = table_of(*e);
    }
    return &t[index_at(va, level)];
}

static inline void write_cr3(uint64_t v) { __asm__ volatile("mov %0, %%cr3" ::"r"(v) : "memory"); }
static inline uint64_t read_cr3(void)
{
    uint64_t v;
    __asm__ volatile("mov %%cr3, %0" : "=r"(v));
    return v;
}

/* The TLB forgets [va, va + len): one invlpg per page, or, past the ceiling,
 * one reload of CR3 (the kernel uses no global pages, so that flushes all). */
static void flush_range(uint64_t va, uint64_t len)
{
    uint64_t pages = len / SIZE_4K;
    if (pages > guest_flush_ceiling) {
        write_cr3(read_cr3());
        full_flushes++;
        return;
    }
    for (uint64_t i = 0; i < pages; i++)
        __asm__ volatile("invlpg (%0)" ::"r"(va + i * SIZE_4K) : "memory");
    invlpg_count += pages;
}

static uint64_t leaf_flags(unsigned prot)
{
    return PTE_P | (prot & KMM_PROT_WRITE ? PTE_W : 0) | (prot & KMM_PROT_EXEC ? 0 : nx_bit);
}

int guest_map(uint64_t va, uint64_t pa, uint64_t len, unsigned prot)
{
    uint64_t flags = leaf_flags(prot);
    bool replaced = false;
    for (uint64_t off = 0; off < len; off += SIZE_4K) {
        uint64_t *e = entry_at(va + off, 1, true);
        if (!e) {
            guest_unmap(va, off);
            return -KMM_ENOMEM;
        }
        replaced |= (*e & PTE_P) != 0;
        *e = (pa + off) | flags;
    }
    /* x86 caches no entry that was not present: only a replaced one is stale */
    if (replaced)
        flush_range(va, len);
    return 0;
}

int guest_unmap(uint64_t va, uint64_t len)
{
    for (uint64_t off = 0; off < len;) {
        uint64_t at = va + off;
        uint64_t *pd = entry_at(at, 2, false);
        if (pd && (*pd & PTE_PS) && !(at & (SIZE_2M - 1)) && len - off >= SIZE_2M) {
            *pd = 0;
            off += SIZE_2M;
            continue;
        }
        if (pd && *pd == 0) {   /* nothing mapped in this 2 MiB */
            off += SIZE_2M - (at & (SIZE_2M - 1));
            continue;
        }
        uint64_t *e = entry_at(at, 1, pd && (*pd & PTE_PS));
        if (e)
            *e = 0;
        off += SIZE_4K;
    }
    flush_range(va, len);
    return 0;
}

/* One pass of guest_direct_set_present. check: change nothing, count the
 * 2 MiB entries that would be split; 0 or -KMM_EINVAL (not memory). */
static int direct_walk(uint64_t va, uint64_t len, bool present, bool check, unsigned *splits)
{
    for (uint64_t off = 0; off < len;) {
        uint64_t at = va + off;
        uint64_t *pd = entry_at(at, 2, false);
        if (!pd || *pd == 0)
            return -KMM_EINVAL;   /* not memory: no direct map here */
        if (*pd & PTE_PS) {
            uint64_t into = at & (SIZE_2M - 1);
            if (!into && len - off >= SIZE_2M) {   /* a whole 2 MiB entry flips */
                if (!check)
                    *pd = present ? *pd | PTE_P : *pd & ~PTE_P;
                off += SIZE_2M;
                continue;
            }
            if (check) {   /* this entry will be split; skip what it covers */
                (*splits)++;
                off += SIZE_2M - into;
                continue;
            }
        }
        uint64_t *e = check ? entry_at(at, 1, false) : entry_at(at, 1, true);
        if (!e || *e == 0)
            return check ? -KMM_EINVAL : -KMM_ENOMEM;   /* (the check pass counted the tables needed) */
        if (!check)
            *e = present ? *e | PTE_P : *e & ~PTE_P;
        off += SIZE_4K;
    }
    return 0;
}

int guest_direct_set_present(uint64_t pa, uint64_t len, bool present)
{
    uint64_t va = GUEST_DIRECT_MAP + pa;
    unsigned splits = 0;
    /* all or nothing, as the platform contract asks: check the whole range
     * and the page tables its splits need before changing an entry */
    int rc = direct_walk(va, len, present, true, &splits);
    if (rc != 0)
        return rc;
    if (splits > POOL_TABLES - tables_used)
        return -KMM_ENOMEM;
    rc = direct_walk(va, len, present, false, &splits);
    flush_range(va, len);
    return rc;
}

void guest_direct_counts(struct guest_direct_counts *c)
{
    *c = (struct guest_direct_counts){ 0 };
    unsigned first = index_at(GUEST_DIRECT_MAP, 4), last = index_at(GUEST_DIRECT_MAP + GUEST_DIRECT_MAX - 1, 4);
    for (unsigned i4 = first; i4 <= last; i4++) {
        if (!pml4[i4])
            continue;
        uint64_t *pdpt = table_of(pml4[i4]);
        for (unsigned i3 = 0; i3 < 512; i3++) {
            if (!pdpt[i3])
                continue;
            uint64_t *pd = table_of(pdpt[i3]);
            for (unsigned i2 = 0; i2 < 512; i2++) {
                if (!pd[i2])
                    continue;
                if (pd[i2] & PTE_PS) {
                    c->pages_2m += (pd[i2] & PTE_P) != 0;
                    continue;
                }
                c->tables_4k++;
                uint64_t *pt = table_of(pd[i2]);
                for (unsigned i1 = 0; i1 < 512; i1++)
                    c->pages_4k += (pt[i1] & PTE_P) != 0;
            }
        }
    }
}

uint64_t guest_translate(uint64_t va)
{
    uint64_t *pd = entry_at(va, 2, false);
    if (!pd || !(*pd & PTE_P))
        return UINT64_MAX;
    if (*pd & PTE_PS)
        return (*pd & PTE_ADDR & ~(SIZE_2M - 1)) + (va & (SIZE_2M - 1));
    uint64_t *e = entry_at(va, 1, false);
    return e && (*e & PTE_P) ? (*e & PTE_ADDR) + (va & (SIZE_4K - 1)) : UINT64_MAX;
}

void guest_paging_stats(struct guest_paging_stats *st)
{
    st->tables_used = tables_used;
    st->tables_total = POOL_TABLES;
    st->invlpg = invlpg_count;
    st->full_flushes = full_flushes;
}

/* [va, va + len) to [pa, ...): 2 MiB entries where both are aligned and a
 * whole 2 MiB remains, 4 KiB entries for the rest. Boot only: out of
 * tables here is fatal. */
static void map_large(uint64_t va, uint64_t pa, uint64_t len, uint64_t flags)
{
    for (uint64_t off = 0; off < len;) {
        bool big = !((va + off) & (SIZE_2M - 1)) && !((pa + off) & (SIZE_2M - 1)) && len - off >= SIZE_2M;
        uint64_t *e = entry_at(va + off, big ? 2 : 1, true);
        if (!e)
            guest_panic("paging: out of page tables while building the direct map");
        *e = (pa + off) | flags | (big ? PTE_PS : 0);
        off += big ? SIZE_2M : SIZE_4K;
    }
}

extern char guest_text_end[], guest_rodata_end[];
extern char guest_boot_stack_guard[], guest_exception_stack_guard[], guest_double_fault_stack_guard[];

static bool is_stack_guard(uint64_t a)
{
    return a == (uint64_t)(uintptr_t)guest_boot_stack_guard || a == (uint64_t)(uintptr_t)guest_exception_stack_guard ||
           a == (uint64_t)(uintptr_t)guest_double_fault_stack_guard;
}

bool guest_is_stack_guard(uint64_t va)
{
    return is_stack_guard(va & ~(SIZE_4K - 1));
}

void guest_paging_init(const struct guest_machine *m)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(0xc0000080u));
    nx_bit = lo & (1u << 11) ? PTE_NX : 0;
    pml4 = table_new();
    /* the kernel image, where it was loaded: code read-only and executable,
     * read-only data, then data, stacks and this pool writable and not
     * executable; the page below each stack left out, so that running off
     * a stack faults instead of writing over what lies below it */
    for (uint64_t a = m->image_start; a < m->image_end; a += SIZE_4K) {
        if (is_stack_guard(a))
            continue;
        uint64_t flags = a < (uint64_t)(uintptr_t)guest_text_end     ? PTE_P
                         : a < (uint64_t)(uintptr_t)guest_rodata_end ? PTE_P | nx_bit
                                                                      : PTE_P | PTE_W | nx_bit;
        uint64_t *e = entry_at(a, 1, true);
        if (!e)
            guest_panic("paging: out of page tables while mapping the kernel image");
        *e = a | flags;
    }
    struct guest_e820 r[GUEST_MAX_E820];
    unsigned n = guest_memory_ranges(r, GUEST_MAX_E820, SIZE_4K);
    for (unsigned i = 0; i < n; i++)
        map_large(GUEST_DIRECT_MAP + r[i].start, r[i].start, r[i].end - r[i].start, PTE_P | PTE_W | nx_bit);
    write_cr3((uint64_t)(uintptr_t)pml4);
}
