/* fuzz_util.h — what the libFuzzer harnesses share: the entry point's prototype and a way to
 * hand the input to loaders that only take a path.
 *
 * Path loaders read the input from an in-memory file (memfd) named /proc/self/fd/N, so a run
 * touches no disk and leaves nothing behind. One memfd per process, rewritten each run. */
#ifndef RLHF_FUZZ_UTIL_H
#define RLHF_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes data to this process's memfd and returns its path (static storage). Aborts on a
 * system error: that is the harness's failure, not the parser's. */
static inline const char *fuzz_memfd_path(const uint8_t *data, size_t size) {
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("fuzz-input", 0);
        if (fd < 0) abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0) abort();
    size_t done = 0;
    while (done < size) {
        ssize_t w = pwrite(fd, data + done, size - done, (off_t)done);
        if (w <= 0) abort();
        done += (size_t)w;
    }
    return path;
}

/* A NUL-terminated copy of data[0..size) (the caller frees). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

#endif
