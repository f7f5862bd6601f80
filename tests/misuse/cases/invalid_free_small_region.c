/* free() of an address a few pages past a small object: inside the
 * allocator's own memory, but not an object it handed out. */
#include "../case.h"

int main(void)
{
    char *p = checked_malloc(SMALL_SIZE);
    char *bad = p + 4 * 4096;
    announce_misuse(bad);
    free(bad);
    return 0;
}
