/* machine.c - the machine as the boot loader described it: the multiboot
 * information (command line, the firmware's e820 memory map, where the
 * structures themselves lie), read once at start, and what follows from
 * it: the usable memory, and the pool kmm's metadata will live in. */
#include "guest.h"

struct guest_machine guest_machine;


extern char guest_image_start[], guest_image_end[];

#define MULTIBOOT_LOADER_MAGIC 0x2badb002u

static void note_boot_bytes(struct guest_machine *m, uint64_t start, uint64_t len)
{
    if (m->nr_boot_pieces < sizeof m->boot_pieces / sizeof m->boot_pieces[0])
        m->boot_pieces[m->nr_boot_pieces++] = (struct guest_e820){ start, start + len, 2 };
}

/* The multiboot information, read through the boot page tables (it lies
 * below 1 GiB) before the real ones replace them. */
static void read_multiboot(struct guest_machine *m, const uint8_t *info)
{
    uint32_t flags = *(const uint32_t *)info;
    note_boot_bytes(m, (uint64_t)(uintptr_t)info, 52);
    if (flags & (1u << 2)) {
        const char *cmd = (const char *)(uintptr_t) * (const uint32_t *)(info + 16);
        size_t n = 0;
        while (cmd[n] && n + 1 < sizeof m->cmdline) {
            m->cmdline[n] = cmd[n];
            n++;
        }
        m->cmdline[n] = '\0';
        note_boot_bytes(m, (uint64_t)(uintptr_t)cmd, n + 1);
    }
    if (!(flags & (1u << 6)))
        guest_panic("the boot loader gave no memory map (multiboot flag 6)");
    uint32_t len = *(const uint32_t *)(info + 44), addr = *(const uint32_t *)(info + 48);
    note_boot_bytes(m, addr, len);
    for (uint32_t off = 0; off < len && m->nr_e820 < GUEST_MAX_E820;) {
        const uint8_t *e = (const uint8_t *)(uintptr_t)(addr + off);
        uint32_t size = *(const uint32_t *)e;
        uint64_t base, length;
        __builtin_memcpy(&base, e + 4, 8);
        __builtin_memcpy(&length, e + 12, 8);
        uint32_t type = *(const uint32_t *)(e + 20);
        m->e820[m->nr_e820++] = (struct guest_e820){ base, base + length, type };
        off += size + 4;
    }
}

/* Firmware maps come in any order, and may list one RAM range in pieces. */
static void sort_e820(struct guest_machine *m)
{
    for (unsigned i = 1; i < m->nr_e820; i++)
        for (unsigned j = i; j > 0 && m->e820[j].start < m->e820[j - 1].start; j--) {
            struct guest_e820 t = m->e820[j];
            m->e820[j] = m->e820[j - 1];
            m->e820[j - 1] = t;
        }
}

/* The usable ranges, merged where they touch or overlap. */
static unsigned usable_ranges(struct guest_e820 *out, unsigned max)
{
    unsigned n = 0;
    for (unsigned i = 0; i < guest_machine.nr_e820; i++) {
        const struct guest_e820 *r = &guest_machine.e820[i];
        if (r->type != 1 || r->end <= r->start || r->start >= GUEST_DIRECT_MAX)
            continue;
        uint64_t end = r->end < GUEST_DIRECT_MAX ? r->end : GUEST_DIRECT_MAX;
        if (n && r->start <= out[n - 1].end) {
            if (end > out[n - 1].end)
                out[n - 1].end = end;
        } else if (n < max) {
            out[n++] = (struct guest_e820){ r->start, end, 1 };
        }
    }
    return n;
}

unsigned guest_memory_ranges(struct guest_e820 *out, unsigned max, uint64_t align)
{
    struct guest_e820 all[GUEST_MAX_E820];
    unsigned nr_all = usable_ranges(all, GUEST_MAX_E820), n = 0;
    const struct guest_machine *m = &guest_machine;
    for (unsigned i = 0; i < nr_all; i++) {
        /* at most two pieces: below and above the metadata pool */
        struct guest_e820 piece[2] = { all[i], { 0, 0, 1 } };
        if (m->meta_pool_end > all[i].start && m->meta_pool_start < all[i].end) {
            piece[0].end = m->meta_pool_start > all[i].start ? m->meta_pool_start : all[i].start;
            piece[1] = (struct guest_e820){ m->meta_pool_end < all[i].end ? m->meta_pool_end : all[i].end, all[i].end, 1 };
        }
        for (unsigned k = 0; k < 2; k++) {
            uint64_t start = (piece[k].start + align - 1) & ~(align - 1), end = piece[k].end & ~(align - 1);
            if (end > start && n < max)
                out[n++] = (struct guest_e820){ start, end, 1 };
        }
    }
    return n;
}

/* The metadata pool: 1/64 of memory (kmm's metadata is about 1/100 at 4 KiB
 * pages: the page-to-slab map's 32 bytes per page, one byte per page, and
 * what the layers grow), at least 8 MiB, from the top of the largest usable
 * range, in whole 2 MiB so that the direct map around it keeps 2 MiB
 * entries. */
static void choose_meta_pool(struct guest_machine *m)
{
    struct guest_e820 r[GUEST_MAX_E820];
    unsigned n = usable_ranges(r, GUEST_MAX_E820), largest = 0;
    uint64_t total = 0;
    for (unsigned i = 0; i < n; i++) {
        total += r[i].end - r[i].start;
        if (r[i].end - r[i].start > r[largest].end - r[largest].start)
            largest = i;
    }
    uint64_t size = total / 64;
    if (size < (8ull << 20))
        size = 8ull << 20;
    if (size > (uint64_t)GUEST_META_POOL_MAX_FRAMES << 12)   /* what the frame bitmap covers */
        size = (uint64_t)GUEST_META_POOL_MAX_FRAMES << 12;
    size = (size + (2ull << 20) - 1) & ~((2ull << 20) - 1);
    uint64_t top = r[largest].end & ~((2ull << 20) - 1);
    if (!n || top < r[largest].start + 2 * size)
        guest_panic("no usable range can hold the metadata pool of %lu MiB", (unsigned long)(size >> 20));
    m->meta_pool_start = top - size;
    m->meta_pool_end = top;
}

void guest_machine_init(uint32_t magic, uint32_t info)
{
    if (magic != MULTIBOOT_LOADER_MAGIC)
        guest_panic("not started by a multiboot loader (eax 0x%x)", magic);
    struct guest_machine *m = &guest_machine;
    read_multiboot(m, (const uint8_t *)(uintptr_t)info);
    m->image_start = (uint64_t)(uintptr_t)guest_image_start;
    m->image_end = (uint64_t)(uintptr_t)guest_image_end;
    sort_e820(m);
    choose_meta_pool(m);
}
