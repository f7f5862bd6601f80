/* malloc_usable_size() of a pointer one byte into a small object. */
#include "../case.h"
#include <malloc.h>

int main(void)
{
    char *p = checked_malloc(SMALL_SIZE);
    announce_misuse(p + 1);
    volatile size_t n = malloc_usable_size(p + 1);
    (void)n;
    return 0;
}
