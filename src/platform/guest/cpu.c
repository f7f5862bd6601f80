/* cpu.c - the processor: descriptor tables (GDT with a TSS whose IST
 * stacks every exception runs on, an IDT for the 32 exceptions) and the
 * exception handler, which resumes a probe at its fixup and explains
 * anything else before it panics. */
#include "guest.h"

/* ---- descriptor tables ------------------------------------------------------ */
struct tss64 {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3, iomap_base;
} __attribute__((packed));

struct idt_gate {
    uint16_t offset_low, selector;
    uint8_t ist, type;
    uint16_t offset_mid;
    uint32_t offset_high, zero;
} __attribute__((packed));

extern uint64_t guest_gdt_tss[2];
extern const uint64_t guest_trap_stubs[32];
extern char guest_exception_stack_top[], guest_double_fault_stack_top[];

static struct tss64 tss __attribute__((aligned(16)));
static struct idt_gate idt[32] __attribute__((aligned(16)));

static void tss_init(void)
{
    tss.ist[0] = (uint64_t)(uintptr_t)guest_exception_stack_top;       /* IST1: every exception */
    tss.ist[1] = (uint64_t)(uintptr_t)guest_double_fault_stack_top;    /* IST2: #DF, a fault in a handler */
    tss.iomap_base = sizeof tss;
    uint64_t base = (uint64_t)(uintptr_t)&tss, limit = sizeof tss - 1;
    guest_gdt_tss[0] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) |
                       ((limit >> 16 & 0xf) << 48) | ((base >> 24 & 0xff) << 56);
    guest_gdt_tss[1] = base >> 32;
    __asm__ volatile("ltr %w0" ::"r"(0x20));
}

static void idt_init(void)
{
    for (unsigned v = 0; v < 32; v++) {
        uint64_t at = guest_trap_stubs[v];
        idt[v] = (struct idt_gate){ .offset_low = (uint16_t)at, .selector = 0x08,
                                    .ist = v == 8 ? 2 : 1, .type = 0x8e,
                                    .offset_mid = (uint16_t)(at >> 16), .offset_high = (uint32_t)(at >> 32) };
    }
    struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) ptr = { sizeof idt - 1, (uint64_t)(uintptr_t)idt };
    __asm__ volatile("lidt %0" ::"m"(ptr));
}

void guest_cpu_init(void)
{
    tss_init();
    idt_init();
}

/* ---- exceptions ------------------------------------------------------------ */
struct guest_trap_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error;
    uint64_t rip, cs, rflags, rsp, ss;   /* pushed by the CPU */
};
void guest_trap(struct guest_trap_frame *f);

struct fixup {
    uint64_t at, resume;
};
extern const struct fixup guest_fixups_start[], guest_fixups_end[];

struct guest_fault guest_last_fault;
struct kmm *guest_fault_mm;

static const char *const vector_name[32] = {
    "divide error", "debug", "NMI", "breakpoint", "overflow", "bound range", "invalid opcode",
    "device not available", "double fault", "coprocessor overrun", "invalid TSS", "segment not present",
    "stack fault", "general protection", "page fault", "reserved", "x87 error", "alignment check",
    "machine check", "SIMD error", "virtualization", "control protection",
};

/* What the address is, in words. ask_kmm: no lock is held (one CPU), so
 * kmm's vmalloc lock is free to take. */
static void explain(char *buf, size_t size, uint64_t addr, bool ask_kmm)
{
    struct kmm *mm = guest_fault_mm;
    if (addr >= GUEST_VMALLOC_START && addr < GUEST_VMALLOC_END) {
        if (!ask_kmm || !mm || !kmm_is_vmalloc_addr(mm, (const void *)(uintptr_t)addr)) {
            guest_snprintf(buf, size, "in the vmalloc space");
            return;
        }
        struct kmm_vmalloc_area_info a;
        if (!kmm_vmalloc_area_at(mm, (const void *)(uintptr_t)addr, &a))
            guest_snprintf(buf, size, "in the vmalloc space, in no live area");
        else
            guest_snprintf(buf, size, "%s %s area at %p of %zu bytes",
                           addr >= a.guard ? "the guard page after the" : "inside the", a.kind, (void *)a.start,
                           a.size);
    } else if (addr >= GUEST_DIRECT_MAP && addr < GUEST_DIRECT_MAP + GUEST_DIRECT_MAX) {
        guest_snprintf(buf, size, "in the direct map at physical %p, not present (unmapped, or not memory)",
                       (void *)(uintptr_t)(addr - GUEST_DIRECT_MAP));
    } else if (addr >= GUEST_META_START && addr < GUEST_META_END) {
        guest_snprintf(buf, size, "in kmm's metadata space (a guard page after a piece, or freed metadata)");
    } else if (guest_is_stack_guard(addr)) {
        guest_snprintf(buf, size, "the guard page below a kernel stack (stack overflow)");
    } else {
        guest_snprintf(buf, size, "not mapped");
    }
}

/* Every exception starts at the top of its IST stack, so one taken inside
 * this handler (kmm asked about a destroyed or corrupted mm, say) has
 * overwritten the frame of the one being handled: it cannot return, and
 * asking kmm again could fault again, forever. */
static unsigned trap_depth;
static uint64_t trap_vector, trap_rip, trap_cr2;   /* the exception being handled, for that panic */

void guest_trap(struct guest_trap_frame *f)
{
    uint64_t cr2 = 0;
    if (f->vector == 14)
        __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
    if (trap_depth++)
        guest_panic("vector %u (error 0x%lx) at rip %p, address %p, inside the handler of vector %u at rip %p, "
                    "address %p",
                    (unsigned)f->vector, (unsigned long)f->error, (void *)(uintptr_t)f->rip, (void *)(uintptr_t)cr2,
                    (unsigned)trap_vector, (void *)(uintptr_t)trap_rip, (void *)(uintptr_t)trap_cr2);
    trap_vector = f->vector, trap_rip = f->rip, trap_cr2 = cr2;
    for (const struct fixup *x = guest_fixups_start; f->vector == 14 && x < guest_fixups_end; x++) {
        if (x->at != f->rip)
            continue;
        guest_last_fault.addr = cr2;
        guest_last_fault.rip = f->rip;
        guest_last_fault.error = f->error;
        guest_last_fault.count++;
        explain(guest_last_fault.explained, sizeof guest_last_fault.explained, cr2, guest_locks_held == 0);
        guest_printf("#PF at %p (%s): %s; resumed at the probe's fixup\n", (void *)(uintptr_t)cr2,
                     f->error & 2 ? "write" : "read", guest_last_fault.explained);
        f->rip = x->resume;
        trap_depth--;
        return;
    }
    const char *name = f->vector < 32 && vector_name[f->vector] ? vector_name[f->vector] : "reserved vector";
    if (f->vector != 14)
        guest_panic("%s (vector %u, error 0x%lx) at rip %p", name, (unsigned)f->vector, (unsigned long)f->error,
                    (void *)(uintptr_t)f->rip);
    char what[160] = "";
    explain(what, sizeof what, cr2, guest_locks_held == 0);   /* kmm is asked unless the fault came from inside one of its critical sections */
    guest_panic("%s (vector %u, error 0x%lx) at rip %p, address %p: %s", name, (unsigned)f->vector,
                (unsigned long)f->error, (void *)(uintptr_t)f->rip, (void *)(uintptr_t)cr2, what);
}
