/* quants.c — block dequantisers for GGUF tensors (see quants.h for the formats).
 *
 * Each dequantiser reads one block (`b`, little-endian) and writes its values to `y`. The k-quant
 * super-blocks are 256 values; their sub-block scales are unpacked first, then each group of
 * values is scale * q - min (or scale * (q - offset)). */
#include "src/model/quants.h"

#include <assert.h>
#include <string.h>

#include "src/formats/safetensors.h"

#define QK 32
#define QK_K 256

enum {
    QUANT_Q4_0 = 2,
    QUANT_Q4_1 = 3,
    QUANT_Q5_0 = 6,
    QUANT_Q5_1 = 7,
    QUANT_Q8_0 = 8,
    QUANT_Q2_K = 10,
    QUANT_Q3_K = 11,
    QUANT_Q4_K = 12,
    QUANT_Q5_K = 13,
    QUANT_Q6_K = 14,
};

static float half_at(const unsigned char *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return safetensors_f16_to_f32(h);
}

int quant_block_info(uint32_t type, int *elems, int *bytes) {
    int e, n;
    switch (type) {
    case QUANT_Q4_0: e = QK, n = 18; break;
    case QUANT_Q4_1: e = QK, n = 20; break;
    case QUANT_Q5_0: e = QK, n = 22; break;
    case QUANT_Q5_1: e = QK, n = 24; break;
    case QUANT_Q8_0: e = QK, n = 34; break;
    case QUANT_Q2_K: e = QK_K, n = 84; break;
    case QUANT_Q3_K: e = QK_K, n = 110; break;
    case QUANT_Q4_K: e = QK_K, n = 144; break;
    case QUANT_Q5_K: e = QK_K, n = 176; break;
    case QUANT_Q6_K: e = QK_K, n = 210; break;
    default: return 0;
    }
    if (elems) *elems = e;
    if (bytes) *bytes = n;
    return 1;
}

/* ---- 32-value blocks ---- */

/* q[j] for j < 16 is the low nibble of byte j, for j >= 16 the high nibble of byte j - 16;
 * with `high` (Q5), bit j of the 32-bit word adds 16. */
static int nibble_q(const unsigned char *qs, uint32_t high, int j, int with_high) {
    int q = j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
    if (with_high && ((high >> j) & 1u)) q += 16;
    return q;
}

static void dequant_32(uint32_t type, const unsigned char *b, float *y) {
    const float d = half_at(b);
    float m = 0.0f;
    const unsigned char *qs;
    uint32_t high = 0;
    int offset = 0, with_high = 0;
    switch (type) {
    case QUANT_Q4_0: qs = b + 2, offset = 8; break;
    case QUANT_Q4_1: m = half_at(b + 2), qs = b + 4; break;
    case QUANT_Q5_0: memcpy(&high, b + 2, 4), qs = b + 6, offset = 16, with_high = 1; break;
    case QUANT_Q5_1: m = half_at(b + 2), memcpy(&high, b + 4, 4), qs = b + 8, with_high = 1; break;
    default: /* Q8_0 */
        for (int j = 0; j < QK; j++) y[j] = d * (float)(int8_t)b[2 + j];
        return;
    }
    for (int j = 0; j < QK; j++) y[j] = d * (float)(nibble_q(qs, high, j, with_high) - offset) + m;
}

/* ---- k-quants ---- */

/* Q4_K / Q5_K: 8 sub-blocks of 32, each with a 6-bit scale and a 6-bit min packed into 12
 * bytes: sub-blocks 0-3 keep both in the low 6 bits of bytes 0-3 (scales) and 4-7 (mins);
 * sub-blocks 4-7 keep their low 4 bits in bytes 8-11 (scale low nibble, min high nibble) and
 * their top 2 bits in the top 2 bits of bytes 0-3 (scales) and 4-7 (mins). */
static void unpack_scale_min_6bit(const unsigned char *s, int j, int *scale, int *min) {
    if (j < 4) {
        *scale = s[j] & 63;
        *min = s[j + 4] & 63;
    } else {
        *scale = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        *min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Q2_K: scales[16] (low nibble scale, high nibble min), qs[64] 2-bit, f16 d, f16 dmin. The 256
 * values are two halves of 128; in each, 2-bit field k (shift 2k) of the 32 bytes gives values
 * 32k..32k+31, sub-block by sub-block of 16. */
static void dequant_q2_k(const unsigned char *b, float *y) {
    const unsigned char *scales = b, *qs = b + 16;
    const float d = half_at(b + 80), dmin = half_at(b + 82);
    int sub = 0;
    for (int half = 0; half < 2; half++) {
        const unsigned char *q = qs + 32 * half;
        for (int k = 0; k < 4; k++) {
            for (int part = 0; part < 2; part++, sub++) {
                const float dl = d * (float)(scales[sub] & 0x0F), ml = dmin * (float)(scales[sub] >> 4);
                for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[16 * part + l] >> (2 * k)) & 3) - ml;
            }
        }
    }
}

/* Q3_K: hmask[32], qs[64] 2-bit low parts, scales[12] (16 6-bit scales, offset 32), f16 d.
 * Value layout as Q2_K; the high bit of value (half, k, byte l) is bit 4*half + k of hmask[l],
 * and a cleared high bit subtracts 4. Scales: the low 4 bits of scale i are nibble (i % 8 < 4 ?
 * low : high) of byte i % 8 ... i.e. bytes 0-7 hold the low nibbles of scales 0-7 (low) and
 * 8-15 (high); bytes 8-11 hold the top 2 bits, scale i's in bits 2*(i/4) of byte 8 + i % 4. */
static void unpack_q3_scales(const unsigned char *s, int *out) {
    for (int i = 0; i < 16; i++) {
        const int low = i < 8 ? (s[i] & 0x0F) : (s[i - 8] >> 4);
        const int top = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        out[i] = (low | (top << 4)) - 32;
    }
}

static void dequant_q3_k(const unsigned char *b, float *y) {
    const unsigned char *hmask = b, *qs = b + 32;
    int sc[16];
    unpack_q3_scales(b + 96, sc);
    const float d = half_at(b + 108);
    int sub = 0;
    for (int half = 0; half < 2; half++) {
        const unsigned char *q = qs + 32 * half;
        for (int k = 0; k < 4; k++) {
            const unsigned bit = 1u << (4 * half + k);
            for (int part = 0; part < 2; part++, sub++) {
                const float dl = d * (float)sc[sub];
                for (int l = 16 * part; l < 16 * part + 16; l++) {
                    const int v = ((q[l] >> (2 * k)) & 3) - ((hmask[l] & bit) ? 0 : 4);
                    *y++ = dl * (float)v;
                }
            }
        }
    }
}

/* Q4_K: f16 d, f16 dmin, scales[12], qs[128]. Four groups of 64 values: 32 bytes whose low
 * nibbles are sub-block 2g and high nibbles sub-block 2g+1. Q5_K adds qh[32] before qs: bit 2g
 * (low nibbles) / 2g+1 (high nibbles) of qh[l] adds 16. */
static void dequant_q45_k(const unsigned char *b, float *y, int five) {
    const float d = half_at(b), dmin = half_at(b + 2);
    const unsigned char *scales = b + 4, *qh = five ? b + 16 : NULL, *qs = b + (five ? 48 : 16);
    for (int g = 0; g < 4; g++) {
        const unsigned char *q = qs + 32 * g;
        for (int part = 0; part < 2; part++) {
            int scale, min;
            unpack_scale_min_6bit(scales, 2 * g + part, &scale, &min);
            const float dl = d * (float)scale, ml = dmin * (float)min;
            for (int l = 0; l < 32; l++) {
                int v = part ? (q[l] >> 4) : (q[l] & 0x0F);
                if (five && ((qh[l] >> (2 * g + part)) & 1)) v += 16;
                *y++ = dl * (float)v - ml;
            }
        }
    }
}

/* Q6_K: ql[128] low 4 bits, qh[64] high 2 bits, scales[16] int8, f16 d. Two halves of 128: in
 * half h, values 32r + l (r = 0..3, l = 0..31) take the low (r even) or high (r odd) nibble of
 * ql[64h + 32*(r & 1) + l] and bits 2r..2r+1 of qh[32h + l], minus 32; the scale of value i is
 * scales[i / 16]. */
static void dequant_q6_k(const unsigned char *b, float *y) {
    const unsigned char *ql = b, *qh = b + 128;
    const int8_t *scales = (const int8_t *)(b + 192);
    const float d = half_at(b + 208);
    for (int h = 0; h < 2; h++)
        for (int r = 0; r < 4; r++)
            for (int l = 0; l < 32; l++) {
                const unsigned char lo = ql[64 * h + 32 * (r & 1) + l];
                const int low = (r < 2) ? (lo & 0x0F) : (lo >> 4);
                const int v = (low | (((qh[32 * h + l] >> (2 * r)) & 3) << 4)) - 32;
                const int i = 128 * h + 32 * r + l;
                y[i] = d * (float)scales[i / 16] * (float)v;
            }
}

void quant_dequantize(uint32_t type, const unsigned char *src, size_t n_blocks, float *out) {
    int elems = 0, bytes = 0;
    const int known = quant_block_info(type, &elems, &bytes);
    assert(known);
    (void)known;
    for (size_t i = 0; i < n_blocks; i++) {
        const unsigned char *b = src + i * (size_t)bytes;
        float *y = out + i * (size_t)elems;
        switch (type) {
        case QUANT_Q2_K: dequant_q2_k(b, y); break;
        case QUANT_Q3_K: dequant_q3_k(b, y); break;
        case QUANT_Q4_K: dequant_q45_k(b, y, 0); break;
        case QUANT_Q5_K: dequant_q45_k(b, y, 1); break;
        case QUANT_Q6_K: dequant_q6_k(b, y); break;
        default: dequant_32(type, b, y); break;
        }
    }
}
