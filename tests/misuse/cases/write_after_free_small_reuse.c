/* A small object written after its free, once the next allocation of its
 * size has been made (an allocator without quarantine hands the same slot
 * back, and the write lands in the new object). */
#include "../case.h"

#define OBJECT 128

int main(void)
{
    char *p = checked_malloc(OBJECT);
    free(p);
    char *volatile next = checked_malloc(OBJECT);
    announce_misuse(p);
    p[OBJECT / 2 + 1] = 'x';
    for (int i = 0; i < 100000; i++)
        free(checked_malloc(OBJECT));
    (void)next;
    return 0;
}
