/* A small object written after its free; then the same size is allocated
 * and freed many times, so that the object leaves any quarantine and is
 * checked (or handed out again). */
#include "../case.h"

#define OBJECT 128

int main(void)
{
    char *p = checked_malloc(OBJECT);
    free(p);
    announce_misuse(p);
    p[OBJECT / 2 + 1] = 'x';
    for (int i = 0; i < 100000; i++)
        free(checked_malloc(OBJECT));
    return 0;
}
