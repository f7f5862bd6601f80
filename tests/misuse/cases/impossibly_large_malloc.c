/* malloc() of more than the address space can hold, yet far from wrapping:
 * NULL with ENOMEM. Exits CASE_BROKEN otherwise. */
#include "../case.h"
#include <errno.h>
#include <stdint.h>

int main(void)
{
    volatile size_t size = (size_t)PTRDIFF_MAX;
    errno = 0;
    void *p = malloc(size);
    if (p || errno != ENOMEM) {
        fprintf(stderr, "malloc(%#zx): %p, errno %d\n", (size_t)size, p, errno);
        return CASE_BROKEN;
    }
    return 0;
}
