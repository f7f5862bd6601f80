/* A large buffer freed twice in a row. */
#include "../case.h"

int main(void)
{
    char *p = checked_malloc(LARGE_SIZE);
    free(p);
    announce_misuse(p);
    free(p);
    return 0;
}
