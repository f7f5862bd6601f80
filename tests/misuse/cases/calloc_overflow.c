/* calloc() whose element count times size overflows: NULL with ENOMEM, not
 * a short buffer and not a crash. Exits CASE_BROKEN otherwise. */
#include "../case.h"
#include <errno.h>
#include <stdint.h>

int main(void)
{
    volatile size_t count = SIZE_MAX / 2 + 2, size = 2;
    errno = 0;
    void *p = calloc(count, size);
    if (p || errno != ENOMEM) {
        fprintf(stderr, "calloc overflow: %p, errno %d\n", p, errno);
        return CASE_BROKEN;
    }
    return 0;
}
