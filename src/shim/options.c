/* options.c - KMM_OPTIONS, and what the options do at exit.
 *
 * One environment variable, comma-separated words (README, "The malloc
 * shim"). Parsed once, at the first allocation, without allocating. */
#include "shim_internal.h"

static const struct {
    const char *word;
    unsigned bit;
} options[] = {
    { "hardened", KMM_SHIM_HARDENED },
    { "stats", KMM_SHIM_STATS },
    { "verbose", KMM_SHIM_VERBOSE },
};

unsigned kmm__shim_parse_options(const char *s)
{
    unsigned opts = 0;
    while (s && *s) {
        const char *end = s;
        while (*end && *end != ',')
            end++;
        size_t len = (size_t)(end - s);
        bool known = len == 0;
        for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
            if (__builtin_strlen(options[i].word) == len && !__builtin_memcmp(options[i].word, s, len)) {
                opts |= options[i].bit;
                known = true;
            }
        }
        if (!known) {
            struct kmm_msg m = { .len = 0 };
            kmm__msg_str(&m, "kmm: KMM_OPTIONS: unknown option '");
            for (const char *c = s; c < end && m.len + 3 < sizeof(m.buf); c++)
                m.buf[m.len++] = *c;
            m.buf[m.len] = '\0';
            kmm__msg_str(&m, "' ignored (known: hardened, stats, verbose)");
            kmm__os_say(m.buf);
        }
        s = *end ? end + 1 : end;
    }
    return opts;
}

/* To a copy of stderr taken at start: programs close stderr before they
 * exit (coreutils' close_stdout does). */
void kmm__shim_exit_stats(struct kmm *mm, int fd)
{
    struct kmm_msg m = { .len = 0 };
    kmm__msg_str(&m, "kmm stats of process ");
    kmm__msg_dec(&m, (uint64_t)kmm__os_pid());
    kmm__msg_str(&m, " at exit (KMM_OPTIONS=");
    const char *opts = kmm__os_getenv("KMM_OPTIONS");
    kmm__msg_str(&m, opts ? opts : "");
    kmm__msg_str(&m, "):\n");
    kmm__os_write(fd, m.buf);
    kmm_stats_print(mm, fd, 0);
}
