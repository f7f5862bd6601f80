/* console.c - the two devices the guest talks to: the serial port (COM1,
 * 0x3f8), where every line goes, and QEMU's isa-debug-exit device (port
 * 0xf4), which ends the run with a status; and the panic that uses both. */
#include "guest.h"

/* ---- port I/O ------------------------------------------------------------ */
static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

#define COM1 0x3f8
#define DEBUG_EXIT_PORT 0xf4

void guest_console_init(void)
{
    outb(COM1 + 1, 0x00);   /* no interrupts */
    outb(COM1 + 3, 0x80);   /* divisor latch */
    outb(COM1 + 0, 0x01);   /* 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);   /* 8 bits, no parity, one stop bit */
    outb(COM1 + 2, 0xc7);   /* FIFO on, cleared */
    outb(COM1 + 4, 0x03);   /* DTR, RTS */
}

void guest_serial_write(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        for (unsigned spin = 0; !(inb(COM1 + 5) & 0x20) && spin < 100000; spin++)
            __builtin_ia32_pause();
        outb(COM1, (uint8_t)s[i]);
    }
}

_Noreturn void guest_exit(unsigned code)
{
    outb(DEBUG_EXIT_PORT, (uint8_t)code);
    /* no isa-debug-exit device: stop here; the host's timeout ends the run */
    for (;;)
        __asm__ volatile("cli; hlt");
}

_Noreturn void guest_panic(const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    guest_vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    guest_printf("kmm guest panic: %s\n", msg);
    guest_exit(GUEST_EXIT_PANIC);
}

void guest_vprintf(const char *fmt, va_list ap)
{
    char line[512];
    size_t n = guest_vsnprintf(line, sizeof line, fmt, ap);
    if (n >= sizeof line) {   /* cut short: still end the line, or the next one (the verdict line) joins it */
        n = sizeof line - 1;
        line[n - 1] = '\n';
    }
    guest_serial_write(line, n);
}

void guest_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    guest_vprintf(fmt, ap);
    va_end(ap);
}
