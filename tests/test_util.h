/* test_util.h — tiny assertion helpers shared by the C tests.
 *
 * CHECK(cond, fmt, ...) prints the property that failed (with file:line) and counts it;
 * test_finish() prints "name: N checks, M failed" and returns the exit status. Tests find the
 * reference fixtures through test_data_path(), which honours RLHF_SHARED_DATA (set by meson to
 * ../shared/data) and fails loudly if the file is missing, never skips. */
#ifndef RLHF_TEST_UTIL_H
#define RLHF_TEST_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int test_checks_, test_failures_;

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        test_checks_++;                                                           \
        if (!(cond)) {                                                            \
            test_failures_++;                                                     \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);      \
            fprintf(stderr, __VA_ARGS__);                                         \
            fputc('\n', stderr);                                                  \
        }                                                                         \
    } while (0)

/* |a-b| <= atol + rtol*|b| */
#define CHECK_CLOSE(a, b, atol, rtol, what)                                                   \
    do {                                                                                      \
        double a_ = (double)(a), b_ = (double)(b);                                            \
        CHECK(fabs(a_ - b_) <= (atol) + (rtol) * fabs(b_), "%s: %.9g vs %.9g (atol %g rtol %g)", \
              (what), a_, b_, (double)(atol), (double)(rtol));                                \
    } while (0)

static inline int test_finish(const char *name) {
    fprintf(stderr, "%s: %d checks, %d failed\n", name, test_checks_, test_failures_);
    return test_failures_ ? 1 : 0;
}

/* Path of a fixture under the shared data directory; exits 1 with a clear message if absent. */
static inline const char *test_data_path(const char *rel) {
    static char buf[4][4096];
    static int slot;
    const char *root = getenv("RLHF_SHARED_DATA");
    if (!root || !*root) root = "../shared/data";
    char *p = buf[slot++ & 3];
    snprintf(p, sizeof buf[0], "%s/%s", root, rel);
    struct stat st;
    if (stat(p, &st) != 0) {
        fprintf(stderr, "missing reference fixture %s (set RLHF_SHARED_DATA to the shared/data directory)\n", p);
        exit(1);
    }
    return p;
}

/* A fresh scratch directory for this test (under TMPDIR or /tmp), created on first call. */
static inline const char *test_tmpdir(void) {
    static char dir[4096];
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/rlhf-test-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            exit(1);
        }
    }
    return dir;
}

#endif
