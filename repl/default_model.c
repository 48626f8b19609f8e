/* default_model.c — locating the built-in default model (see default_model.h). */
#include "repl/default_model.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef RLHF_SOURCE_DIR
#define RLHF_SOURCE_DIR "."
#endif

static int holds_model(const char *dir) {
    char p[PATH_MAX + 32];
    struct stat st;
    snprintf(p, sizeof p, "%s/config.json", dir);
    return stat(p, &st) == 0;
}

const char *default_model_path(void) {
    static char path[PATH_MAX];
    const char *env = getenv("RLHF_DEFAULT_MODEL");
    if (env) return *env && holds_model(env) ? env : NULL;
    snprintf(path, sizeof path, "%s/models/default", RLHF_SOURCE_DIR);
    if (holds_model(path)) return path;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        for (int up = 0; up < 3; up++) { /* build/repl/rlhf -> the clone */
            char *slash = strrchr(exe, '/');
            if (!slash) break;
            *slash = 0;
        }
        if (strlen(exe) + 16 < sizeof path) {
            snprintf(path, sizeof path, "%s/models/default", exe);
            if (holds_model(path)) return path;
        }
    }
    return NULL;
}
