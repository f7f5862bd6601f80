/* A small object read after its free: the reads must see zeros (freed
 * objects zeroed), not the old contents or the allocator's free-list links.
 * Exits CASE_BROKEN when a byte is not zero. */
#include "../case.h"
#include <string.h>

int main(void)
{
    char *p = checked_malloc(SMALL_SIZE);
    memset(p, 'a', SMALL_SIZE);
    free(p);
    announce_misuse(p);
    for (int i = 0; i < SMALL_SIZE; i++) {
        if (((volatile char *)p)[i] != 0) {
            fprintf(stderr, "byte %d after free: %#x\n", i, (unsigned char)p[i]);
            return CASE_BROKEN;
        }
    }
    return 0;
}
