/* reallocarray() whose count times size overflows: NULL with ENOMEM, and
 * the old object left intact. Exits CASE_BROKEN otherwise. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "../case.h"
#include <errno.h>
#include <stdint.h>
#include <string.h>

int main(void)
{
    char *p = checked_malloc(SMALL_SIZE);
    memset(p, 'k', SMALL_SIZE);
    volatile size_t count = SIZE_MAX / 4 + 1, size = 8;
    errno = 0;
    void *q = reallocarray(p, count, size);
    if (q || errno != ENOMEM) {
        fprintf(stderr, "reallocarray overflow: %p, errno %d\n", q, errno);
        return CASE_BROKEN;
    }
    for (int i = 0; i < SMALL_SIZE; i++)
        if (p[i] != 'k')
            return CASE_BROKEN;
    free(p);
    return 0;
}
