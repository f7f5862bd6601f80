/* malloc_usable_size() of a small object already freed. */
#include "../case.h"
#include <malloc.h>

int main(void)
{
    char *p = checked_malloc(SMALL_SIZE);
    free(p);
    announce_misuse(p);
    volatile size_t n = malloc_usable_size(p);
    (void)n;
    return 0;
}
