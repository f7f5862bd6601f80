/* free() of an address a gigabyte past a small object: likely in memory
 * the allocator reserved but never used. */
#include "../case.h"
#include <stdint.h>

int main(void)
{
    char *p = checked_malloc(SMALL_SIZE);
    char *bad = (char *)((uintptr_t)p + ((uintptr_t)1 << 30));
    announce_misuse(bad);
    free(bad);
    return 0;
}
