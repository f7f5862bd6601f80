/* A small object's memory, read before any write, after the program freed
 * objects of that size full of data: must be zero (no old contents leak).
 * Exits CASE_BROKEN otherwise. */
#include "../case.h"
#include <string.h>

int main(void)
{
    for (int i = 0; i < 64; i++) {
        char *old = checked_malloc(SMALL_SIZE);
        memset(old, 'a', SMALL_SIZE);
        free(old);
    }
    for (int i = 0; i < 64; i++) {
        char *p = checked_malloc(SMALL_SIZE);
        for (int b = 0; b < SMALL_SIZE; b++)
            if (((volatile char *)p)[b] != 0)
                return CASE_BROKEN;
    }
    return 0;
}
