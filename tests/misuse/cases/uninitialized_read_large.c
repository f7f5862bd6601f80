/* A large buffer's memory, read before any write, after the program freed
 * a buffer of that size full of data: must be zero. Exits CASE_BROKEN
 * otherwise. */
#include "../case.h"
#include <string.h>

int main(void)
{
    char *old = checked_malloc(LARGE_SIZE);
    memset(old, 'a', LARGE_SIZE);
    free(old);
    char *p = checked_malloc(LARGE_SIZE);
    for (size_t b = 0; b < LARGE_SIZE; b++)
        if (((volatile char *)p)[b] != 0)
            return CASE_BROKEN;
    return 0;
}
