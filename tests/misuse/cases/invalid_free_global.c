/* free() of a global array. */
#include "../case.h"

static char global_buffer[256];

int main(void)
{
    char *volatile p = global_buffer;
    announce_misuse(p);
    free(p);
    return 0;
}
