/* free() of a pointer one byte into a small object. */
#include "../case.h"

int main(void)
{
    char *p = checked_malloc(SMALL_SIZE);
    announce_misuse(p + 1);
    free(p + 1);
    return 0;
}
