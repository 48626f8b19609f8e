/* quants.h — dequantising the block formats of llama.cpp's GGUF files to float32.
 *
 * A quantised tensor is a sequence of fixed-size blocks, each holding `block_elems` values of a
 * row (a row's length must be a multiple of it). Supported (ggml type id: elements / bytes):
 *   Q4_0 (2): 32 / 18    f16 d, 16 bytes of 4-bit q:            x = d * (q - 8)
 *   Q4_1 (3): 32 / 20    f16 d, f16 m, 4-bit q:                 x = d * q + m
 *   Q5_0 (6): 32 / 22    f16 d, 32 high bits, 4-bit low parts:  x = d * (q - 16)
 *   Q5_1 (7): 32 / 24    f16 d, f16 m, high bits, low parts:    x = d * q + m
 *   Q8_0 (8): 32 / 34    f16 d, 32 int8 q:                      x = d * q
 *   Q2_K (10), Q3_K (11), Q4_K (12), Q5_K (13), Q6_K (14): "k-quants", super-blocks of 256 values
 *   in 16 or 8 sub-blocks, each with its own scale (and min) quantised to 4, 6 or 8 bits against
 *   the super-block's f16 d (and dmin).
 * In the 32-value formats the low nibbles of the 16 q bytes hold values 0..15 and the high
 * nibbles values 16..31. Layouts and formulas are checked value for value against llama.cpp's
 * own gguf-py on random blocks (tests/test_quants.c, tests/reference/quant_blocks.txt).
 *
 * Pure functions: no allocation, no I/O. */
#ifndef RLHF_QUANTS_H
#define RLHF_QUANTS_H

#include <stddef.h>
#include <stdint.h>

/* Block geometry of ggml type `type`: 1 with *elems and *bytes set for the types above, 0 for
 * any other type (including F32/F16/BF16, which are not block formats). */
int quant_block_info(uint32_t type, int *elems, int *bytes);

/* Dequantises n_blocks blocks of `type` from src into out (n_blocks * elems floats). The type
 * must be one quant_block_info knows (asserted). */
void quant_dequantize(uint32_t type, const unsigned char *src, size_t n_blocks, float *out);

#endif
