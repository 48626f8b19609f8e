/* test_quants.c — every GGUF block format against llama.cpp's own dequantiser.
 *
 * tests/reference/quant_blocks.txt holds random blocks of each type with the values llama.cpp's
 * gguf-py (gguf.quants.dequantize) computes for them (made by make_quant_fixture.py). Each
 * value of quant_dequantize must equal gguf-py's to 1e-6 relative (the two may round a
 * scale-times-quant product in a different order). Also: the block geometry, and that a
 * wrong layout would be caught (a byte flipped in each block's data changes the output). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/model/quants.h"
#include "tests/test_util.h"

#ifndef QUANT_FIXTURE
#error "QUANT_FIXTURE (the path of tests/reference/quant_blocks.txt) must be defined by the build"
#endif

static int hexval(int c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

int main(void) {
    FILE *f = fopen(QUANT_FIXTURE, "r");
    CHECK(f != NULL, "open %s", QUANT_FIXTURE);
    if (!f) return test_finish("quants");
    char *line = NULL;
    size_t cap = 0;
    unsigned type = 0, n_blocks = 0;
    char name[32] = "";
    unsigned char *bytes = NULL;
    size_t n_bytes = 0;
    int types_seen = 0;
    while (getline(&line, &cap, f) > 0) {
        if (line[0] == '#') continue;
        if (sscanf(line, "TYPE %u %31s %u", &type, name, &n_blocks) == 3) continue;
        if (strncmp(line, "bytes ", 6) == 0) {
            const char *h = line + 6;
            size_t len = strcspn(h, "\n") / 2;
            free(bytes);
            bytes = malloc(len);
            for (size_t i = 0; i < len; i++) bytes[i] = (unsigned char)(hexval(h[2 * i]) * 16 + hexval(h[2 * i + 1]));
            n_bytes = len;
            continue;
        }
        if (strncmp(line, "values ", 7) != 0) continue;
        int elems = 0, bsize = 0;
        CHECK(quant_block_info(type, &elems, &bsize), "%s (type %u) is a known block format", name, type);
        if (!elems) continue;
        CHECK((size_t)bsize * n_blocks == n_bytes, "%s: %u blocks of %d bytes (fixture has %zu bytes)", name, n_blocks, bsize,
              n_bytes);
        const size_t n = (size_t)elems * n_blocks;
        float *want = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
        char *p = line + 7;
        for (size_t i = 0; i < n; i++) {
            uint32_t bits = (uint32_t)strtoul(p, &p, 16);
            memcpy(&want[i], &bits, 4);
        }
        for (size_t i = 0; i < n; i++) got[i] = NAN;
        quant_dequantize(type, bytes, n_blocks, got);
        size_t bad = 0, first_bad = 0;
        double worst = 0;
        for (size_t i = 0; i < n; i++) {
            const double err = fabs((double)got[i] - want[i]), tol = 1e-6 * fabs((double)want[i]) + 1e-30;
            if (!(err <= tol)) {
                if (!bad) first_bad = i;
                bad++;
            }
            if (err > worst) worst = err;
        }
        CHECK(bad == 0, "%s: %zu of %zu values differ from llama.cpp's gguf-py (first at %zu: %.9g vs %.9g; worst %g)", name,
              bad, n, first_bad, (double)got[first_bad], (double)want[first_bad], worst);
        /* flipping a byte of each block changes the result: the test compares real layouts */
        for (unsigned b = 0; b < n_blocks; b++) bytes[(size_t)b * bsize + (size_t)bsize / 2] ^= 0x5A;
        quant_dequantize(type, bytes, n_blocks, got);
        CHECK(memcmp(got, want, n * sizeof(float)) != 0, "%s: a flipped byte changes the values", name);
        types_seen++;
        free(want);
        free(got);
    }
    CHECK(types_seen == 10, "fixture covers the 10 block formats (%d)", types_seen);
    int e, b;
    CHECK(!quant_block_info(0, &e, &b) && !quant_block_info(1, &e, &b) && !quant_block_info(16, &e, &b),
          "F32, F16 and IQ2_XXS are not block formats here");
    free(bytes);
    free(line);
    fclose(f);
    return test_finish("quants");
}
