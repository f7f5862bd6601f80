/* A write to a zero-size allocation. */
#include "../case.h"

int main(void)
{
    char *p = malloc(0);
    if (!p)
        return CASE_SETUP_FAILED;
    announce_misuse(p);
    *(volatile char *)p = 'x';
    return 0;
}
