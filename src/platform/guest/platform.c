/* platform.c - struct kmm_platform for the guest kernel, and its start.
 *
 * Physical memory: the usable (type 1) ranges of the firmware's e820 map,
 * as the multiboot loader passes it. The kernel image and the boot
 * structures are in those ranges; guest_reserve_boot_memory takes them out
 * with kmm_reserve_pages, the way a kernel reserves what it was loaded into.
 * Direct map, vmalloc space, and pages out of the direct map: paging.c.
 * Locks: spinlocks (one CPU today; they are real so that the code is right
 * the day a second CPU runs). */
#include "guest.h"

struct guest_machine guest_machine;
int guest_errno;

extern char guest_image_start[], guest_image_end[];

/* ---- start --------------------------------------------------------------------- */
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

void guest_start(uint32_t magic, uint32_t info);

void guest_start(uint32_t magic, uint32_t info)
{
    guest_cpu_init();
    if (magic != MULTIBOOT_LOADER_MAGIC)
        guest_panic("not started by a multiboot loader (eax 0x%x)", magic);
    struct guest_machine *m = &guest_machine;
    read_multiboot(m, (const uint8_t *)(uintptr_t)info);
    m->image_start = (uint64_t)(uintptr_t)guest_image_start;
    m->image_end = (uint64_t)(uintptr_t)guest_image_end;
    guest_paging_init(m);
    guest_exit(guest_kernel_main());
}

/* ---- the platform hooks ---------------------------------------------------------- */
static int guest_open(const struct kmm_platform *pf, const struct kmm_config *cfg, struct kmm_memory *mem,
                      void **ctx)
{
    (void)pf;
    uint64_t ps = cfg->page_size ? cfg->page_size : 4096;
    *mem = (struct kmm_memory){ .direct_map = (uintptr_t)GUEST_DIRECT_MAP };
    for (unsigned i = 0; i < guest_machine.nr_e820; i++) {
        const struct guest_e820 *r = &guest_machine.e820[i];
        uint64_t start = (r->start + ps - 1) & ~(ps - 1), end = r->end & ~(ps - 1);
        if (r->type != 1 || end <= start || end > GUEST_DIRECT_MAX)
            continue;
        if (mem->nr_ranges == KMM_MAX_RANGES)
            break;
        mem->ranges[mem->nr_ranges++] = (struct kmm_range){ start, end };
    }
    *ctx = &guest_machine;
    return mem->nr_ranges ? 0 : -KMM_ENOMEM;
}

static void guest_close(void *ctx) { (void)ctx; }

/* A test-and-set lock; pause while it is held. guest_locks_held counts the
 * locks this (only) CPU holds: at 0, a fault did not come from inside a
 * critical section of kmm, and the fault handler may call kmm to explain it. */
unsigned guest_locks_held;

static void spin_init(struct kmm_lock *l) { __atomic_store_n((int *)l->opaque, 0, __ATOMIC_RELAXED); }
static void spin_lock(struct kmm_lock *l)
{
    int *word = (int *)l->opaque;
    while (__atomic_exchange_n(word, 1, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(word, __ATOMIC_RELAXED))
            __builtin_ia32_pause();
    guest_locks_held++;
}
static void spin_unlock(struct kmm_lock *l)
{
    guest_locks_held--;
    __atomic_store_n((int *)l->opaque, 0, __ATOMIC_RELEASE);
}

static void guest_report(void *ctx, const char *line)
{
    (void)ctx;
    guest_printf("kmm: %s\n", line);
}

static void guest_error(int err) { guest_errno = err; }

static void guest_fatal(void *ctx, const char *msg)
{
    (void)ctx;
    guest_panic("%s", msg);
}

static int guest_barrier_all(void *ctx)
{
    (void)ctx;   /* one CPU */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    return 0;
}

/* The vmalloc space: reservations handed out upwards. A reservation given
 * back at the top is reused; one below it is left as a hole (the space is
 * 32 TiB, and a kernel makes few memory systems). */
static uint64_t vm_next = GUEST_VMALLOC_START;

static void *guest_vm_reserve(void *ctx, size_t len, size_t align)
{
    (void)ctx;
    uint64_t at = (vm_next + align - 1) & ~((uint64_t)align - 1);
    if (at + len > GUEST_VMALLOC_END || at + len < at)
        return NULL;
    vm_next = at + len;
    return (void *)(uintptr_t)at;
}

static int guest_vm_unmap(void *ctx, void *va, size_t len)
{
    (void)ctx;
    return guest_unmap((uint64_t)(uintptr_t)va, len);
}

static void guest_vm_unreserve(void *ctx, void *va, size_t len)
{
    guest_vm_unmap(ctx, va, len);
    if ((uint64_t)(uintptr_t)va + len == vm_next)
        vm_next = (uint64_t)(uintptr_t)va;
}

/* KMM_MAP_SECRET needs nothing more here: no swap, no core dump, no fork.
 * KMM_MAP_NOPOPULATE neither: entries are written now either way. */
static int guest_vm_map(void *ctx, void *va, kmm_phys_t phys, size_t len, unsigned prot)
{
    (void)ctx;
    return guest_map((uint64_t)(uintptr_t)va, phys, len, prot & (KMM_PROT_READ | KMM_PROT_WRITE | KMM_PROT_EXEC));
}

static int guest_direct_unmap(void *ctx, kmm_phys_t addr, uint64_t len)
{
    (void)ctx;
    return guest_direct_set_present(addr, len, false);
}

static int guest_direct_restore(void *ctx, kmm_phys_t addr, uint64_t len)
{
    (void)ctx;
    return guest_direct_set_present(addr, len, true);
}

/* Frames outside the direct map are reached through a scratch window of
 * the kernel's own, mapped writable (never executable) for the copy and
 * unmapped at once: the way Linux's text_poke writes code. Nothing else can
 * reach the window, and no executable mapping is ever writable. */
static struct kmm_lock scratch_lock;

static int through_scratch(kmm_phys_t pa, uint64_t len, const unsigned char *src)
{
    while (len) {
        uint64_t off = pa & 4095, n = len < GUEST_SCRATCH_BYTES - off ? len : GUEST_SCRATCH_BYTES - off;
        uint64_t span = (off + n + 4095) & ~4095ull;
        if (guest_map(GUEST_SCRATCH_VA, pa - off, span, KMM_PROT_READ | KMM_PROT_WRITE) != 0)
            return -KMM_ENOMEM;
        void *dst = (void *)(uintptr_t)(GUEST_SCRATCH_VA + off);
        if (src)
            __builtin_memcpy(dst, src, n), src += n;
        else
            __builtin_memset(dst, 0, n);
        guest_unmap(GUEST_SCRATCH_VA, span);
        pa += n, len -= n;
    }
    return 0;
}

static int guest_frames_zero(void *ctx, kmm_phys_t addr, uint64_t len)
{
    (void)ctx;
    spin_lock(&scratch_lock);
    int rc = through_scratch(addr, len, NULL);
    spin_unlock(&scratch_lock);
    return rc;
}

static int guest_frames_write(void *ctx, const struct kmm_frame_write *pieces, size_t n)
{
    (void)ctx;
    int rc = 0;
    spin_lock(&scratch_lock);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = through_scratch(pieces[i].phys, pieces[i].len, pieces[i].src);
    spin_unlock(&scratch_lock);
    return rc;
}

const struct kmm_platform kmm_platform_guest = {
    .name = "guest",
    .open = guest_open,
    .close = guest_close,
    .lock_init = spin_init,
    .lock_fini = spin_init,
    .lock = spin_lock,
    .unlock = spin_unlock,
    .report = guest_report,
    .error = guest_error,
    .fatal = guest_fatal,
    .barrier_all = guest_barrier_all,
    .vm_reserve = guest_vm_reserve,
    .vm_unreserve = guest_vm_unreserve,
    .vm_map = guest_vm_map,
    .vm_unmap = guest_vm_unmap,
    .direct_unmap = guest_direct_unmap,
    .direct_restore = guest_direct_restore,
    .frames_zero = guest_frames_zero,
    .frames_write = guest_frames_write,
};

/* Reserves [start, end) in mm where it lies in memory (kmm's ranges are the
 * usable ones, rounded inward to pages). */
static int reserve_in_memory(struct kmm *mm, uint64_t ps, uint64_t start, uint64_t end)
{
    for (unsigned i = 0; i < guest_machine.nr_e820; i++) {
        const struct guest_e820 *r = &guest_machine.e820[i];
        uint64_t lo = r->start > start ? r->start : start, hi = r->end < end ? r->end : end;
        lo = (lo + ps - 1) & ~(ps - 1);
        hi &= ~(ps - 1);
        if (r->type != 1 || hi <= lo)
            continue;
        int rc = kmm_reserve_pages(mm, lo, (size_t)((hi - lo) / ps));
        if (rc != 0)
            return rc;
    }
    return 0;
}

int guest_reserve_boot_memory(struct kmm *mm)
{
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    uint64_t ps = st.page_size;
    /* the pieces rounded out to whole pages, sorted, and merged where they
     * touch: two pieces in one page must not reserve it twice */
    struct guest_e820 piece[1 + sizeof guest_machine.boot_pieces / sizeof guest_machine.boot_pieces[0]];
    unsigned n = 0;
    piece[n++] = (struct guest_e820){ guest_machine.image_start, guest_machine.image_end, 2 };
    for (unsigned i = 0; i < guest_machine.nr_boot_pieces; i++)
        piece[n++] = guest_machine.boot_pieces[i];
    for (unsigned i = 0; i < n; i++) {
        piece[i].start &= ~(ps - 1);
        piece[i].end = (piece[i].end + ps - 1) & ~(ps - 1);
        for (unsigned j = i; j > 0 && piece[j].start < piece[j - 1].start; j--) {
            struct guest_e820 t = piece[j];
            piece[j] = piece[j - 1];
            piece[j - 1] = t;
        }
    }
    for (unsigned i = 0; i < n;) {
        uint64_t start = piece[i].start, end = piece[i].end;
        for (i++; i < n && piece[i].start <= end; i++)
            end = piece[i].end > end ? piece[i].end : end;
        int rc = reserve_in_memory(mm, ps, start, end);
        if (rc != 0)
            return rc;
    }
    return 0;
}
