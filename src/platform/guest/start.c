/* start.c - where boot.S lands in 64-bit mode: the console, the CPU's
 * tables, the machine's description, the real page tables, in that order
 * (each needs the one before: a panic needs the console, reading the boot
 * information needs the boot page tables still in place); then the kernel. */
#include "guest.h"

void guest_start(uint32_t magic, uint32_t info);

void guest_start(uint32_t magic, uint32_t info)
{
    guest_console_init();
    guest_cpu_init();
    guest_machine_init(magic, info);
    guest_paging_init(&guest_machine);
    guest_exit(guest_kernel_main());
}
