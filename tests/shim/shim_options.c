/* KMM_OPTIONS as the shim reads it: prints kmm_shim_options() and exits 0
 * only if it is the mask in argv[1] (the tests also check what the shim
 * printed: unknown words, verbose's line, the stats at exit). Linked with
 * libkmm-malloc directly. */
#include <stdio.h>
#include <stdlib.h>

#include <kmm/shim.h>

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    void *p = malloc(100);   /* the shim is up, options read */
    free(p);
    unsigned want = (unsigned)strtoul(argv[1], NULL, 0), got = kmm_shim_options();
    printf("kmm_shim_options: %#x%s%s%s\n", got, got & KMM_SHIM_HARDENED ? " hardened" : "",
           got & KMM_SHIM_STATS ? " stats" : "", got & KMM_SHIM_VERBOSE ? " verbose" : "");
    fflush(stdout);
    return got == want ? 0 : 1;
}
