/* A large buffer written after its free, once another buffer of its size
 * has been allocated (an allocator that reuses the address at once lets the
 * write land in the new buffer). */
#include "../case.h"

int main(void)
{
    char *p = checked_malloc(LARGE_SIZE);
    free(p);
    char *volatile next = checked_malloc(LARGE_SIZE);
    announce_misuse(p + LARGE_SIZE / 4 + 1);
    ((volatile char *)p)[LARGE_SIZE / 4 + 1] = 'x';
    (void)next;
    return 0;
}
