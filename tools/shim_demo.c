/* shim_demo.c - the demo's section 6: real programs on libkmm-malloc.
 *
 * Runs a shell pipeline with libkmm-malloc.so preloaded (the programs'
 * malloc is kmm's), then a program that frees a pointer twice, in default
 * and hardened mode, and shows what kmm says. The library is looked for
 * beside the tool (the build tree) and in ../lib (an install). */
#include "tool.h"

#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* The shim's path, or NULL. */
static const char *find_shim(char *buf, size_t len)
{
    char exe[2048];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return NULL;
    *slash = '\0';
    const char *tries[] = { "", "/../lib", "/../lib/x86_64-linux-gnu" };
    for (unsigned i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        if ((size_t)snprintf(buf, len, "%s%s/libkmm-malloc.so", exe, tries[i]) >= len)
            return NULL;
        if (access(buf, R_OK) == 0)
            return buf;
    }
    return NULL;
}

/* Runs argv with LD_PRELOAD=shim and KMM_OPTIONS=options; prints its
 * output (stdout and stderr) indented; returns its wait status. */
static int run_preloaded(const char *shim, const char *options, char *const argv[])
{
    char preload[4200], opts[128];
    snprintf(preload, sizeof preload, "LD_PRELOAD=%s", shim);
    snprintf(opts, sizeof opts, "KMM_OPTIONS=%s", options);
    char path[] = "PATH=/usr/bin:/bin";
    char *env[] = { preload, opts, path, NULL };
    int out[2];
    if (pipe(out) != 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, out[1], 2);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    if (rc != 0) {
        close(out[0]);
        return -1;
    }
    FILE *f = fdopen(out[0], "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        printf("    %s", line);
    if (f)
        fclose(f);
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

static void say_status(int status)
{
    if (WIFSIGNALED(status))
        printf("  -> killed by signal %d (%s)\n", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        printf("  -> exit status %d\n", WEXITSTATUS(status));
}

/* `kmm double-free`: the misuse the section shows (run under the shim). */
int cmd_double_free(void)
{
    char *volatile p = malloc(24);
    strcpy(p, "freed twice");
    free(p);
    free(p);
    return 0;
}

void demo_shim(const char *self)
{
    char buf[4096];
    const char *shim = find_shim(buf, sizeof buf);
    if (!shim) {
        printf("libkmm-malloc.so not found beside the tool (it is not built under ASan or TSan): skipped\n");
        return;
    }
    printf("%s, preloaded into a shell pipeline (the programs' malloc is kmm's; KMM_OPTIONS=verbose says so):\n",
           shim);
    char sh[] = "/bin/sh", dash_c[] = "-c", script[] = "seq 1 20000 | sort -rn | head -n 2 | tr '\\n' ' '; echo";
    char *pipeline[] = { sh, dash_c, script, NULL };
    say_status(run_preloaded(shim, "verbose", pipeline));
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    char self_copy[4096], verb[] = "double-free";
    snprintf(self_copy, sizeof self_copy, "%s", n > 0 ? exe : self);
    char *misuse[] = { self_copy, verb, NULL };
    printf("a program that frees a pointer twice, on kmm (always caught, with the address):\n");
    say_status(run_preloaded(shim, "", misuse));
}
