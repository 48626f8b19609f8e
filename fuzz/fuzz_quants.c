/* fuzz_quants — quant_dequantize on raw blocks of every block format (the first byte picks the
 * ggml type); every value written is read back, so a block left partly unwritten or a read past
 * the last block shows up under ASan. */
#include "fuzz/fuzz_util.h"
#include "src/model/quants.h"

static const uint32_t types[] = {2, 3, 6, 7, 8, 10, 11, 12, 13, 14};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint32_t type = types[data[0] % (sizeof types / sizeof *types)];
    int elems, bytes;
    if (!quant_block_info(type, &elems, &bytes)) abort();
    size_t n_blocks = (size - 1) / (size_t)bytes;
    if (n_blocks == 0 || n_blocks > 64) return 0;
    /* exact-size copies so a read past the last block is caught */
    unsigned char *src = malloc(n_blocks * (size_t)bytes);
    float *out = malloc(n_blocks * (size_t)elems * sizeof *out);
    if (!src || !out) abort();
    memcpy(src, data + 1, n_blocks * (size_t)bytes);
    quant_dequantize(type, src, n_blocks, out);
    volatile float sum = 0;
    for (size_t i = 0; i < n_blocks * (size_t)elems; i++) sum += out[i];
    (void)sum;
    free(src);
    free(out);
    return 0;
}
