/* boot.S - the guest kernel's first instructions: from the multiboot loader's
 * 32-bit protected mode to 64-bit long mode, then guest_main().
 *
 * The image is linked as an ELF64 at 1 MiB and converted to ELF32 with
 * objcopy (QEMU's -kernel multiboot loader takes no ELF64), so the entry is
 * 32-bit code inside a 64-bit object, as kvm-unit-tests does it. Boot page
 * tables identity-map the first 1 GiB with 2 MiB pages; paging.c replaces
 * them with the real ones (kernel image, direct map, vmalloc space).
 *
 * Every exception runs on a stack of its own (the TSS's IST), never on the
 * interrupted one: kmm's core is built for user space and keeps data in the
 * 128-byte red zone below its stack pointer, which an exception frame pushed
 * on the same stack would overwrite. No interrupts are ever enabled. */

#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003          /* modules page aligned; memory map wanted */

    .section .multiboot, "a"
    .balign 4
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)

    .section .boot.bss, "aw", @nobits
    .balign 4096
boot_pml4: .skip 4096
boot_pdpt: .skip 4096
boot_pd:   .skip 4096
    /* each stack has an unmapped page below it (paging.c leaves the
     * *_guard pages out of the page tables): running off a stack faults */
    .globl guest_boot_stack_guard, guest_boot_stack_top
guest_boot_stack_guard: .skip 4096
boot_stack: .skip 65536
guest_boot_stack_top:
    .globl guest_exception_stack_guard, guest_exception_stack_top
guest_exception_stack_guard: .skip 4096
exception_stack: .skip 16384
guest_exception_stack_top:
    .globl guest_double_fault_stack_guard, guest_double_fault_stack_top
guest_double_fault_stack_guard: .skip 4096
double_fault_stack: .skip 8192
guest_double_fault_stack_top:

    .section .boot.data, "aw"
    .balign 16
    .globl guest_gdt
guest_gdt:
    .quad 0                          /* null */
    .quad 0x00af9a000000ffff         /* 0x08: 64-bit code, ring 0 */
    .quad 0x00cf92000000ffff         /* 0x10: data, ring 0 */
    .quad 0x00cf9a000000ffff         /* 0x18: 32-bit code, for the jump to long mode only */
    .globl guest_gdt_tss
guest_gdt_tss:                       /* 0x20: the TSS (16 bytes), filled in by cpu.c */
    .quad 0, 0
guest_gdt_end:
    .globl guest_gdt_ptr
guest_gdt_ptr:
    .word guest_gdt_end - guest_gdt - 1
    .quad guest_gdt
mb_magic: .long 0
mb_info:  .long 0

    .section .boot.text, "ax"
    .code32
    .globl start32
start32:
    cli
    mov %eax, mb_magic
    mov %ebx, mb_info
    mov $guest_boot_stack_top, %esp

    /* boot page tables: PML4[0] -> PDPT[0] -> PD of 512 x 2 MiB */
    mov $boot_pdpt + 3, %eax
    mov %eax, boot_pml4
    mov $boot_pd + 3, %eax
    mov %eax, boot_pdpt
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax                   /* present, writable, 2 MiB */
    mov %eax, boot_pd(,%ecx,8)
    inc %ecx
    cmp $512, %ecx
    jne 1b

    /* CR4: PAE, SSE (OSFXSR, OSXMMEXCPT) */
    mov %cr4, %eax
    or $((1 << 5) | (1 << 9) | (1 << 10)), %eax
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3

    /* EFER: long mode, and no-execute where the CPU has it */
    mov $0x80000001, %eax
    cpuid
    mov %edx, %esi
    mov $0xC0000080, %ecx
    rdmsr
    or $(1 << 8), %eax
    bt $20, %esi
    jnc 2f
    or $(1 << 11), %eax
2:  wrmsr

    /* CR0: paging, write protect in ring 0, FPU without emulation and
     * without a task-switch trap (EM, TS off), x87 errors as exceptions (NE) */
    mov %cr0, %eax
    and $~((1 << 2) | (1 << 3)), %eax
    or $((1 << 31) | (1 << 16) | (1 << 5) | (1 << 1) | 1), %eax
    mov %eax, %cr0

    lgdt guest_gdt_ptr
    ljmp $0x08, $start64

    .code64
start64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    mov $guest_boot_stack_top, %rsp
    xor %ebp, %ebp
    mov mb_magic(%rip), %edi
    mov mb_info(%rip), %esi
    call guest_start
3:  cli
    hlt
    jmp 3b

/* ---- exceptions: one stub per vector, then one common path -------------- */

    .text
.macro trap_stub vector, has_error
    .balign 16
trap_\vector:
    .if \has_error == 0
    pushq $0
    .endif
    pushq $\vector
    jmp trap_common
.endm

trap_stub 0, 0
trap_stub 1, 0
trap_stub 2, 0
trap_stub 3, 0
trap_stub 4, 0
trap_stub 5, 0
trap_stub 6, 0
trap_stub 7, 0
trap_stub 8, 1
trap_stub 9, 0
trap_stub 10, 1
trap_stub 11, 1
trap_stub 12, 1
trap_stub 13, 1
trap_stub 14, 1
trap_stub 15, 0
trap_stub 16, 0
trap_stub 17, 1
trap_stub 18, 0
trap_stub 19, 0
trap_stub 20, 0
trap_stub 21, 1
trap_stub 22, 0
trap_stub 23, 0
trap_stub 24, 0
trap_stub 25, 0
trap_stub 26, 0
trap_stub 27, 0
trap_stub 28, 0
trap_stub 29, 1
trap_stub 30, 1
trap_stub 31, 0

    .section .rodata
    .balign 8
    .globl guest_trap_stubs
guest_trap_stubs:
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad trap_\v
    .endr

    .text
/* The frame, as struct guest_trap_frame in cpu.c lays it out: the general
 * registers, then vector, error code, and what the CPU pushed. The handler
 * may change rip (an exception-table fixup) and rax. */
trap_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %rdi
    cld
    call guest_trap
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp                    /* vector, error code */
    iretq

/* ---- probes: one access that may fault, with a fixup (exception table) --
 * int guest_probe_write(void *p): writes a byte at p; 0, or -1 after a
 * fault. guest_probe_read likewise reads one. The fault handler sees rip at
 * the access, finds it in __guest_fixups and resumes at the fixup. */
    .globl guest_probe_write
guest_probe_write:
    xor %eax, %eax
probe_write_at:
    movb $0x5a, (%rdi)
    ret
    .globl guest_probe_read
guest_probe_read:
    xor %eax, %eax
probe_read_at:
    movb (%rdi), %cl
    ret
probe_fixup:
    mov $-1, %eax
    ret

    .section .guest_fixups, "a"
    .balign 8
    .quad probe_write_at, probe_fixup
    .quad probe_read_at, probe_fixup
    .section .note.GNU-stack,"",@progbits
