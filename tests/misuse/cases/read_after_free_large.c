/* A large buffer read after its free. */
#include "../case.h"
#include <string.h>

int main(void)
{
    char *p = checked_malloc(LARGE_SIZE);
    memset(p, 'a', LARGE_SIZE);
    free(p);
    announce_misuse(p + LARGE_SIZE / 2);
    volatile char c = ((volatile char *)p)[LARGE_SIZE / 2];
    (void)c;
    return 0;
}
