/* test_fuzz_regressions — every crash the libFuzzer harnesses of fuzz/ found, replayed through
 * the same entry point (the input as bytes here, minimised by hand where that kept the crash),
 * with the answer the parser must give now: a clean error, never a crash. Under the sanitizer
 * build these fail loudly if the bug comes back. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/formats/safetensors.h"
#include "tests/test_util.h"

/* Writes n bytes to a fresh file in the test's scratch directory; returns its path (static). */
static const char *scratch_file(const char *name, const void *data, size_t n) {
    static char path[4200];
    snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(data, 1, n, fp) != n || fclose(fp) != 0) {
        perror(path);
        exit(1);
    }
    return path;
}

/* A safetensors file: 8-byte little-endian header length, then the header (no tensor data). */
static const char *safetensors_bytes(const char *name, const char *header) {
    static unsigned char buf[512];
    uint64_t n = strlen(header);
    memcpy(buf, &n, 8); /* little-endian host, as the format assumes */
    memcpy(buf + 8, header, n);
    return scratch_file(name, buf, 8 + n);
}

/* fuzz_safetensors, crash 08a0bcfe: "__metadata__" twice. The second object replaced the key
 * arrays but the count went on from the first, so a smaller second object was written past its
 * end (heap overflow) and a lookup read a NULL key. A repeated key is now refused, as a
 * repeated tensor name already was. */
static void test_safetensors_metadata_twice(void) {
    static const char *const headers[] = {
        "{\"__metadata__\":{\"a\":\"b\"},\"__metadata__\":{\"c\":\"d\"}}",
        "{\"__metadata__\":{\"a\":\"b\",\"c\":\"d\",\"e\":\"f\"},\"__metadata__\":{\"g\":\"h\"}}",
    };
    for (size_t k = 0; k < sizeof headers / sizeof *headers; k++) {
        const char *path = safetensors_bytes("meta_twice.safetensors", headers[k]);
        safetensors_file *f = NULL;
        rlhf_error err = {0};
        int rc = safetensors_open(&f, path, &err);
        CHECK(rc == RLHF_ERR_FORMAT, "case %zu: rc %d (%s)", k, rc, err.msg);
        CHECK(f == NULL, "case %zu: no handle on error", k);
        CHECK(strstr(err.msg, "__metadata__") != NULL, "case %zu: message names the key: %s", k, err.msg);
        safetensors_close(&f);
        unlink(path);
    }
}

int main(void) {
    test_safetensors_metadata_twice();
    rmdir(test_tmpdir());
    return test_finish("fuzz regressions");
}
