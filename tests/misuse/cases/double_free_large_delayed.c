/* A large buffer freed twice with another large free in between. */
#include "../case.h"

int main(void)
{
    char *p = checked_malloc(LARGE_SIZE);
    char *other = checked_malloc(LARGE_SIZE);
    free(p);
    free(other);
    announce_misuse(p);
    free(p);
    return 0;
}
