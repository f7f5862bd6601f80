/* A large buffer written after its free. */
#include "../case.h"

int main(void)
{
    char *p = checked_malloc(LARGE_SIZE);
    free(p);
    announce_misuse(p + LARGE_SIZE / 2);
    ((volatile char *)p)[LARGE_SIZE / 2] = 'x';
    return 0;
}
