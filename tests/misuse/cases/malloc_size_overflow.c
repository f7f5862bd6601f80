/* malloc() of a size that wraps around when the allocator adds its own
 * rounding or header: NULL with ENOMEM. Exits CASE_BROKEN otherwise. */
#include "../case.h"
#include <errno.h>
#include <stdint.h>

int main(void)
{
    static const size_t sizes[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 15, SIZE_MAX - 4095};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        errno = 0;
        void *p = malloc(sizes[i]);
        if (p || errno != ENOMEM) {
            fprintf(stderr, "malloc(%#zx): %p, errno %d\n", sizes[i], p, errno);
            return CASE_BROKEN;
        }
    }
    return 0;
}
