/* print.c - formatted output for the serial console: the subset of printf
 * the guest's tests and figures use, with no allocation and no libc. */
#include "guest.h"

struct out {
    char *buf;
    size_t size, len;
};

static void put(struct out *o, char c)
{
    if (o->len + 1 < o->size)
        o->buf[o->len] = c;
    o->len++;
}

static void put_str(struct out *o, const char *s, int width, bool left)
{
    int n = 0;
    while (s[n])
        n++;
    for (int i = n; !left && i < width; i++)
        put(o, ' ');
    for (int i = 0; i < n; i++)
        put(o, s[i]);
    for (int i = n; left && i < width; i++)
        put(o, ' ');
}

static void put_num(struct out *o, uint64_t v, unsigned base, bool neg, int width, bool left, char pad)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    if (neg)
        tmp[n++] = '-';
    char s[25];
    for (int i = 0; i < n; i++)
        s[i] = tmp[n - 1 - i];
    s[n] = '\0';
    if (pad == '0' && !left) {   /* the sign before the zeros, as printf's "-0042" */
        if (neg)
            put(o, '-');
        for (int i = n; i < width; i++)
            put(o, '0');
        put_str(o, s + neg, 0, false);
        return;
    }
    put_str(o, s, width, left);
}

size_t guest_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct out o = { buf, size, 0 };
    for (const char *f = fmt; *f; f++) {
        if (*f != '%') {
            put(&o, *f);
            continue;
        }
        f++;
        bool left = false;
        char pad = ' ';
        if (*f == '-')
            left = true, f++;
        if (*f == '0')
            pad = '0', f++;
        int width = 0;
        while (*f >= '0' && *f <= '9')
            width = width * 10 + (*f++ - '0');
        int longs = 0;
        while (*f == 'l' || *f == 'z')
            longs += *f++ == 'z' ? 2 : 1;
        switch (*f) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            put_str(&o, s ? s : "(null)", width, left);   /* a panic message must not fault on it */
            break;
        }
        case 'c': put(&o, (char)va_arg(ap, int)); break;
        case 'd': {
            int64_t v = longs ? va_arg(ap, int64_t) : va_arg(ap, int);
            put_num(&o, v < 0 ? -(uint64_t)v : (uint64_t)v, 10, v < 0, width, left, pad);
            break;
        }
        case 'u':
        case 'x': {
            uint64_t v = longs ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
            put_num(&o, v, *f == 'x' ? 16 : 10, false, width, left, pad);
            break;
        }
        case 'p':
            put(&o, '0'), put(&o, 'x');
            put_num(&o, (uint64_t)(uintptr_t)va_arg(ap, void *), 16, false, width, left, pad);
            break;
        case '%': put(&o, '%'); break;
        default:
            put(&o, '%');
            if (*f)   /* a '%' that ends the format is printed as such, not followed by its NUL */
                put(&o, *f);
            break;
        }
        if (!*f)
            break;
    }
    if (size)
        buf[o.len < size ? o.len : size - 1] = '\0';
    return o.len;
}

size_t guest_snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t n = guest_vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}
