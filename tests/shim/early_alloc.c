/* Allocations before main: a constructor of the highest priority (run before
 * most of libc's users have started) allocates, reallocates and frees; it
 * calls dlsym, whose error path allocates (dlerror's message), and dlopen()s
 * a library whose own constructor allocates. main then checks everything the
 * early calls made and frees it: memory from before main is ordinary memory.
 * argv[1]: the plugin's path. */
#include <dlfcn.h>
#include <errno.h>
#include <string.h>

#include "shim_prog.h"

static char *early_small, *early_large, *early_grown, *early_dlerror;
static void *early_calloc;
static void *early_next_malloc;

__attribute__((constructor(101))) static void before_everything(void)
{
    early_small = malloc(40);
    if (early_small)
        strcpy(early_small, "made by a constructor of priority 101");
    early_large = malloc(300000);
    if (early_large)
        prog_fill(early_large, 300000, 101);
    early_grown = realloc(NULL, 10);
    for (size_t n = 20; early_grown && n <= 20000; n *= 3) {
        early_grown = realloc(early_grown, n);
        if (early_grown)
            early_grown[n - 1] = 'g';
    }
    early_calloc = calloc(1000, 8);
    free(malloc(1));
    /* a lookup that fails: dlerror's message is allocated inside the loader */
    if (!dlsym(RTLD_DEFAULT, "kmm_no_such_symbol_anywhere")) {
        const char *e = dlerror();
        early_dlerror = e ? strdup(e) : NULL;
    }
    early_next_malloc = dlsym(RTLD_NEXT, "malloc");
}

int main(int argc, char **argv)
{
    CHECK(argc == 2, "usage: early_alloc PLUGIN.so");
    CHECK(early_small && !strcmp(early_small, "made by a constructor of priority 101"), "early small");
    CHECK(early_large && prog_verify(early_large, 300000, 101) == 300000, "early large");
    CHECK(early_grown && early_grown[19] == 'g' && early_grown[539] == 'g' && early_grown[4859] == 'g', "early realloc");
    const unsigned char *z = early_calloc;
    CHECK(z != NULL, "early calloc");
    for (size_t i = 0; i < 8000; i++)
        CHECK(z[i] == 0, "early calloc not zero at %zu", i);
    CHECK(early_dlerror && strstr(early_dlerror, "kmm_no_such_symbol_anywhere"), "dlerror: %s",
          early_dlerror ? early_dlerror : "(none)");
    (void)early_next_malloc;   /* glibc's or NULL: only the call mattered */
    free(early_small);
    free(early_large);
    free(early_grown);
    free(early_calloc);
    free(early_dlerror);

    /* now load a library whose constructor allocates, use and unload it */
    for (int round = 0; round < 3; round++) {
        void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        CHECK(h != NULL, "dlopen %s: %s", argv[1], dlerror());
        char **greeting = dlsym(h, "early_plugin_greeting");
        char *(*make)(size_t) = (char *(*)(size_t))dlsym(h, "early_plugin_make");
        CHECK(greeting && *greeting && make, "plugin symbols");
        CHECK(!strcmp(*greeting, "allocated in a dlopen()ed library's constructor"), "plugin greeting");
        char *p = make(5000);
        CHECK(p && p[0] == 'p' && p[4999] == 'p', "plugin allocation");
        free(p);
        free(*greeting);
        CHECK(dlclose(h) == 0, "dlclose");
    }
    /* a failing dlopen allocates its message too */
    errno = 0;
    CHECK(dlopen("/nonexistent/libkmm-none.so", RTLD_NOW) == NULL, "dlopen of nothing");
    CHECK(dlerror() != NULL, "dlerror after a failed dlopen");
    puts("early_alloc: constructor, dlsym and dlopen allocations all intact");
    return 0;
}
