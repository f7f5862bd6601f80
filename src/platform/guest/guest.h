/* guest.h - the guest platform: kmm as the memory manager of a small x86-64
 * kernel booted by QEMU (multiboot), on real page tables.
 *
 * This folder is the example to copy for running kmm in your own kernel
 * (each file uses only those above it):
 *  - print.c    formatting (snprintf), no devices;
 *  - string.c   memcpy and friends, which compilers call even in freestanding code;
 *  - console.c  the serial port, printf, exit through isa-debug-exit, panic;
 *  - machine.c  the multiboot information: e820 map, usable memory, metadata pool;
 *  - paging.c   4-level page tables: kernel image, direct map, vmalloc and metadata spaces;
 *  - platform.c struct kmm_platform over all of it;
 *  - cpu.c      GDT/TSS/IDT and the fault handler (which asks kmm what an address is);
 *  - start.c    the order of it all at boot;
 *  - boot.S     multiboot entry, long mode, exception stubs, probes.
 * The allocators themselves are libkmm_freestanding.a, the same archive the
 * user-space freestanding test links: nothing here is compiled into it.
 *
 * One CPU, interrupts never enabled: exceptions only. */
#ifndef KMM_GUEST_H
#define KMM_GUEST_H

#include <kmm.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- the address space (x86-64, 4-level paging, Linux's layout) ---------- */
#define GUEST_DIRECT_MAP   0xffff888000000000ull   /* physical address 0 in the direct map */
#define GUEST_DIRECT_MAX   (64ull << 40)            /* the direct map covers up to 64 TiB */
#define GUEST_VMALLOC_START 0xffffc90000000000ull  /* vm_reserve hands out addresses from here */
#define GUEST_VMALLOC_END   0xffffe90000000000ull  /* 32 TiB */
#define GUEST_META_START    0xffffd00000000000ull  /* kmm's metadata (meta_alloc): its own frames, */
#define GUEST_META_END      0xffffd10000000000ull  /* a guard page after each piece; 1 TiB */
#define GUEST_META_POOL_MAX_FRAMES (1u << 18)      /* the metadata pool: 1 GiB at most */
#define GUEST_SCRATCH_VA    0xffffff0000000000ull  /* one 2 MiB window for frames_zero/frames_write */
#define GUEST_SCRATCH_BYTES (2ull << 20)

/* ---- the machine, as the boot loader described it ------------------------ */
#define GUEST_MAX_E820 32
struct guest_e820 {
    uint64_t start, end;       /* [start, end) */
    uint32_t type;             /* 1 = usable RAM */
};
struct guest_machine {
    unsigned nr_e820;
    struct guest_e820 e820[GUEST_MAX_E820];
    char cmdline[256];
    unsigned nr_boot_pieces;                   /* multiboot structures: reserved from kmm */
    struct guest_e820 boot_pieces[4];          /* (the information, its memory map, the command line) */
    uint64_t image_start, image_end;           /* the kernel image (identity mapped) */
    /* Frames for kmm's metadata: the top of the largest usable range, taken
     * out of kmm's memory and out of the direct map, mapped only at
     * GUEST_META_START (platform.c), so no overflow of a buffer kmm hands
     * out can reach them. */
    uint64_t meta_pool_start, meta_pool_end;
};
/* The usable memory as kmm and the direct map see it: the e820 map's usable
 * ranges (sorted, merged), minus the metadata pool, rounded inward to align.
 * Returns how many ranges it wrote (at most max). */
unsigned guest_memory_ranges(struct guest_e820 *out, unsigned max, uint64_t align);
/* Filled by guest_main from the multiboot information, before anything else. */
extern struct guest_machine guest_machine;

/* ---- console.c ------------------------------------------------------------- */
/* Sets up the serial port (115200 8N1, no interrupts). */
void guest_console_init(void);
/* Writes len bytes to COM1, waiting for the transmitter (bounded). */
void guest_serial_write(const char *s, size_t len);
/* Ends the run: QEMU exits with status (code << 1) | 1 (isa-debug-exit). */
#define GUEST_EXIT_PASS  0x10   /* QEMU exits 33 */
#define GUEST_EXIT_FAIL  0x11   /* 35 */
#define GUEST_EXIT_PANIC 0x12   /* 37 */
_Noreturn void guest_exit(unsigned code);
/* Prints "kmm guest panic: ..." and exits with GUEST_EXIT_PANIC. */
_Noreturn void guest_panic(const char *fmt, ...);
/* printf for the serial port: %s %c %d %u %x %p, with l, ll and z, '-' and
 * '0' flags and widths. One call writes at most 511 bytes (a longer line is
 * cut, keeping its newline); no allocation. */
void guest_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void guest_vprintf(const char *fmt, va_list ap);

/* ---- machine.c ------------------------------------------------------------- */
/* Reads the multiboot information (magic and info as the loader left them in
 * eax and ebx) into guest_machine, sorts the e820 map and chooses the
 * metadata pool. Before guest_paging_init: it reads through the boot page
 * tables. Panics if the loader was not multiboot or gave no memory map. */
void guest_machine_init(uint32_t magic, uint32_t info);

/* ---- cpu.c ----------------------------------------------------------------- */
/* Loads the GDT's TSS and the IDT; after it, exceptions are handled. */
void guest_cpu_init(void);
/* The time-stamp counter, fenced so that it is read after what came before
 * and before what follows. Under TCG it counts emulated time. */
static inline uint64_t guest_rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("lfence; rdtsc; lfence" : "=a"(lo), "=d"(hi)::"memory");
    return ((uint64_t)hi << 32) | lo;
}
/* A single access that may fault: 0, or -1 when it faulted (the fault
 * handler resumes at the probe's fixup; boot.S). */
int guest_probe_write(void *p);
int guest_probe_read(const void *p);
/* The last page fault taken by a probe: address, and the fault handler's
 * words on it ("guard page after the vmalloc area at ..."). */
struct guest_fault {
    uint64_t addr, rip, error;
    unsigned count;
    char explained[160];
};
extern struct guest_fault guest_last_fault;
/* The memory system whose vmalloc space the fault handler explains. */
extern struct kmm *guest_fault_mm;

/* ---- paging.c ------------------------------------------------------------- */
/* Builds the real page tables (kernel image identity mapped, the direct map
 * of every usable range with 2 MiB entries where possible) and loads them. */
void guest_paging_init(const struct guest_machine *m);
/* Maps [va, va + len) to [pa, pa + len) with 4 KiB entries; flags: KMM_PROT_*.
 * Page tables come from a pool in the kernel image. 0, or -KMM_ENOMEM with
 * [va, va + len) left unmapped (what it replaced included: kmm maps over
 * nothing but its own unmapped ranges). */
int  guest_map(uint64_t va, uint64_t pa, uint64_t len, unsigned prot);
/* Clears the 4 KiB or 2 MiB entries of [va, va + len) (splitting 2 MiB ones
 * that are cut) and flushes the TLB for them. */
int  guest_unmap(uint64_t va, uint64_t len);
/* The direct map of [pa, pa + len): present or not. Whole aligned 2 MiB
 * pieces flip their 2 MiB entry; the rest split it into 4 KiB entries, as
 * set_memory_np() does in Linux (and, like Linux, never merge back). */
int  guest_direct_set_present(uint64_t pa, uint64_t len, bool present);
struct guest_direct_counts {
    uint64_t pages_4k, pages_2m;     /* present leaf entries in the direct map */
    uint64_t tables_4k;              /* page tables of 4 KiB entries under it (split or built so) */
};
/* Counts the direct map's entries by walking its page tables: O(tables). */
void guest_direct_counts(struct guest_direct_counts *c);
/* TLB invalidation: invlpg for up to this many pages, a full flush (CR3
 * reload) above it. Tunable for the figures. */
extern unsigned guest_flush_ceiling;
struct guest_paging_stats {
    uint64_t tables_used, tables_total;
    uint64_t invlpg, full_flushes;
};
/* The page-table pool's use and the TLB flushes since boot: O(1). */
void guest_paging_stats(struct guest_paging_stats *st);
/* The physical address va is mapped to (4 KiB or 2 MiB entry), or
 * UINT64_MAX when it is not mapped. */
uint64_t guest_translate(uint64_t va);
/* Whether va lies in the unmapped page below one of the kernel's stacks. */
bool guest_is_stack_guard(uint64_t va);

/* ---- start.c --------------------------------------------------------------- */
/* The kernel's own entry, called by guest_start (start.c) once the console,
 * the CPU's tables, the machine's description and the page tables are set
 * up; its return value is the exit code (GUEST_EXIT_*). */
unsigned guest_kernel_main(void);

/* ---- platform.c ------------------------------------------------------------ */
/* Locks held now by the (one) CPU: kmm's and the platform's spinlocks. */
extern unsigned guest_locks_held;
/* The last refused call's KMM_E* number (the platform's error hook). */
extern int guest_errno;
/* The kmm platform over this machine: memory from the e820 map, locks as
 * spinlocks, virtual memory and the direct map as page tables. */
extern const struct kmm_platform kmm_platform_guest;
/* Reserves, in mm, every page of the kernel image and of the boot
 * structures that lies in a usable range (kmm_reserve_pages). 0, or the
 * first error. */
int guest_reserve_boot_memory(struct kmm *mm);
struct guest_platform_stats {
    uint64_t meta_pool_bytes, meta_bytes_in_use;   /* kmm's metadata frames */
    uint64_t vmalloc_free_ranges, vmalloc_dropped_bytes;
};
/* The metadata pool's and the vmalloc address space's state: O(1). */
void guest_platform_stats(struct guest_platform_stats *st);

/* ---- print.c -------------------------------------------------------------- */
/* Formats into buf (guest_printf's formats): at most size - 1 bytes and a
 * NUL; returns the length the whole output would have had, as snprintf does. */
size_t guest_snprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
size_t guest_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);

#endif
