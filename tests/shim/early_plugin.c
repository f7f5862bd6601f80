/* A library that early_alloc dlopen()s: its constructor allocates (while the
 * loader holds its lock), and it hands out memory its caller frees. */
#include <stdlib.h>
#include <string.h>

extern char *early_plugin_greeting;
char *early_plugin_make(size_t n);

char *early_plugin_greeting;

__attribute__((constructor)) static void plugin_init(void)
{
    early_plugin_greeting = strdup("allocated in a dlopen()ed library's constructor");
}

char *early_plugin_make(size_t n)
{
    char *p = malloc(n);
    if (p)
        memset(p, 'p', n);
    return p;
}
