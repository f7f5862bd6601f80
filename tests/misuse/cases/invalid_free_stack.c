/* free() of a local variable. */
#include "../case.h"

int main(void)
{
    char local[64];
    char *volatile p = local;
    announce_misuse(p);
    free(p);
    return 0;
}
