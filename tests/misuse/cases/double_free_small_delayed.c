/* A small object freed twice with another free in between, so that the
 * first one is no longer at the head of a free list (glibc's fasttop check
 * misses this). */
#include "../case.h"

int main(void)
{
    char *p = checked_malloc(SMALL_SIZE);
    char *other = checked_malloc(SMALL_SIZE);
    free(p);
    free(other);
    announce_misuse(p);
    free(p);
    return 0;
}
