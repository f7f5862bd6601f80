/* realloc() to more than the address space can hold: NULL with ENOMEM, and
 * the old object left intact. Exits CASE_BROKEN otherwise. */
#include "../case.h"
#include <errno.h>
#include <stdint.h>
#include <string.h>

int main(void)
{
    static const size_t from[] = {SMALL_SIZE, LARGE_SIZE};
    for (size_t i = 0; i < 2; i++) {
        char *p = checked_malloc(from[i]);
        memset(p, 'k', from[i]);
        volatile size_t huge = (size_t)PTRDIFF_MAX;
        errno = 0;
        void *q = realloc(p, huge);
        if (q || errno != ENOMEM) {
            fprintf(stderr, "realloc(%zu bytes, %#zx): %p, errno %d\n", from[i], (size_t)huge, q, errno);
            return CASE_BROKEN;
        }
        for (size_t b = 0; b < from[i]; b++)
            if (p[b] != 'k')
                return CASE_BROKEN;
        free(p);
    }
    return 0;
}
