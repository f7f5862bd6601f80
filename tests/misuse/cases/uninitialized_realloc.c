/* realloc() of a garbage pointer. */
#include "../case.h"
#include <stdint.h>

int main(void)
{
    void *volatile garbage = (void *)(uintptr_t)0x10;
    announce_misuse(garbage);
    void *q = realloc(garbage, 64);
    (void)q;
    return 0;
}
