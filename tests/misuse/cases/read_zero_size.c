/* A read of a zero-size allocation. */
#include "../case.h"

int main(void)
{
    char *p = malloc(0);
    if (!p)
        return CASE_SETUP_FAILED;
    announce_misuse(p);
    volatile char c = *(volatile char *)p;
    (void)c;
    return 0;
}
