/* A small object freed twice with a hundred other frees of its size in
 * between: long enough to have left a small quarantine, so only the
 * allocator's own record of what is free can tell. */
#include "../case.h"

#define OTHERS 100

int main(void)
{
    char *p = checked_malloc(SMALL_SIZE);
    char *others[OTHERS];
    for (int i = 0; i < OTHERS; i++)
        others[i] = checked_malloc(SMALL_SIZE);
    free(p);
    for (int i = 0; i < OTHERS; i++)
        free(others[i]);
    announce_misuse(p);
    free(p);
    return 0;
}
