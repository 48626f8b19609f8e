/* generate.c — the KV-cache decoder and greedy / sampled / beam-search generation.
 *
 * The decoder runs the model's forward pass over a set of rows: the rows of one prompt chunk
 * (prefill: matrix products by cblas_sgemm through matmul_forward, causal attention by
 * attention_forward over the cache plus the chunk) or one new token for each of several
 * sequences (step: matrix products by gen_matmul_rows, attention per sequence over its own
 * cache by decode_attention). Both reuse the forward kernels of kernels.h (embedding, norms,
 * rope, softmax, gelu, swiglu, residual); the row-independent matrix product and the
 * single-query attention loop are this file's own (see generate.h and decode_attention for
 * why).
 *
 * Generation keeps everything it needs in buffers sized before the first token: the decoder,
 * the sampler chain, and per candidate its history (prompt + generated), ids, log-probabilities
 * and text. Text grows by doubling when a candidate produces more bytes than estimated. */
#include "src/gen/generate.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#include "src/model/kernels.h"

#define ALIGN_FLOATS 16
#define ROUND_UP(n) (((n) + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS)

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* ---- the row-independent matrix product ---- */

#define ROW_LANES 32
_Static_assert(ROW_LANES == 32, "dot_row_tail folds exactly 32 partial sums");

/* The dot products of one weight row with two input rows, and with one: each row's sum is
 * the same sequence of operations in both (ROW_LANES interleaved fmaf partial sums, added left
 * to right, then the tail), so pairing rows changes no bits; it only loads the weight row once
 * for both and gives the core twice as many independent accumulators. fmaf is explicit because
 * C11 mode never contracts a*b+c on its own; the vectoriser turns it into packed FMA. */
/* Folds the partial sums in halves (a fixed tree, so still one order of operations), which
 * vectorises; a left-to-right scalar chain of ROW_LANES dependent adds would cost more than
 * the products themselves at the model widths we decode with. */
static inline float dot_row_tail(float *acc, const float *restrict a, const float *restrict w, int i, int n) {
    /* the same tree written out: as a loop over `half`, GCC kept dot_row4's four accumulator
     * arrays on the stack and folded them with scalar adds chained through memory */
    for (int k = 0; k < 16; k++) acc[k] += acc[k + 16];
    for (int k = 0; k < 8; k++) acc[k] += acc[k + 8];
    for (int k = 0; k < 4; k++) acc[k] += acc[k + 4];
    for (int k = 0; k < 2; k++) acc[k] += acc[k + 2];
    acc[0] += acc[1];
    float s = acc[0];
    for (; i < n; i++) s = fmaf(a[i], w[i], s);
    return s;
}

static inline float dot_row1(const float *restrict a, const float *restrict w, int n) {
    float acc[ROW_LANES] = {0};
    int i = 0;
    for (; i + ROW_LANES <= n; i += ROW_LANES)
        for (int k = 0; k < ROW_LANES; k++) acc[k] = fmaf(a[i + k], w[i + k], acc[k]);
    return dot_row_tail(acc, a, w, i, n);
}

static inline void dot_row2(float *s0, float *s1, const float *restrict a0, const float *restrict a1,
                            const float *restrict w, int n) {
    float acc0[ROW_LANES] = {0}, acc1[ROW_LANES] = {0};
    int i = 0;
    for (; i + ROW_LANES <= n; i += ROW_LANES)
        for (int k = 0; k < ROW_LANES; k++) {
            acc0[k] = fmaf(a0[i + k], w[i + k], acc0[k]);
            acc1[k] = fmaf(a1[i + k], w[i + k], acc1[k]);
        }
    *s0 = dot_row_tail(acc0, a0, w, i, n);
    *s1 = dot_row_tail(acc1, a1, w, i, n);
}

static inline void dot_row4(float *s, const float *restrict a, size_t lda, const float *restrict w, int n) {
    float acc0[ROW_LANES] = {0}, acc1[ROW_LANES] = {0}, acc2[ROW_LANES] = {0}, acc3[ROW_LANES] = {0};
    const float *a0 = a, *a1 = a + lda, *a2 = a + 2 * lda, *a3 = a + 3 * lda;
    int i = 0;
    for (; i + ROW_LANES <= n; i += ROW_LANES)
        for (int k = 0; k < ROW_LANES; k++) {
            acc0[k] = fmaf(a0[i + k], w[i + k], acc0[k]);
            acc1[k] = fmaf(a1[i + k], w[i + k], acc1[k]);
            acc2[k] = fmaf(a2[i + k], w[i + k], acc2[k]);
            acc3[k] = fmaf(a3[i + k], w[i + k], acc3[k]);
        }
    s[0] = dot_row_tail(acc0, a0, w, i, n);
    s[1] = dot_row_tail(acc1, a1, w, i, n);
    s[2] = dot_row_tail(acc2, a2, w, i, n);
    s[3] = dot_row_tail(acc3, a3, w, i, n);
}

/* W (IN, OUT) kernels: out[j] = fmaf chain over i of x[i] * W[i, j], i ascending, for a block of
 * TCOLS columns of 4 rows or 1 (the weights' panel read once per 4 rows, no horizontal sums).
 * A fused multiply-add is exactly rounded whether it is fmaf or a vector FMA lane, so the
 * intrinsics, the scalar fallback and tcols_any give an element the same bits: a row's result
 * does not depend on how many rows share the call. Intrinsics because GCC kept the
 * accumulator arrays of the plain-C version in memory. */
#if defined(__AVX512F__)
#include <immintrin.h>
typedef __m512 vf;
#define VW 16
#define TVEC 4
#define VLOAD _mm512_loadu_ps
#define VSTORE _mm512_storeu_ps
#define VSET1 _mm512_set1_ps
#define VFMA _mm512_fmadd_ps
#define VZERO _mm512_setzero_ps
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
typedef __m256 vf;
#define VW 8
#define TVEC 2
#define VLOAD _mm256_loadu_ps
#define VSTORE _mm256_storeu_ps
#define VSET1 _mm256_set1_ps
#define VFMA _mm256_fmadd_ps
#define VZERO _mm256_setzero_ps
#endif

/* Unoptimised (debug and sanitizer) builds would call every intrinsic out of line, which made
 * the test suite's decoding 3x slower there; these few loops are always optimised. */
#if defined(__GNUC__) && !defined(__clang__) && !defined(__OPTIMIZE__)
#define KERNEL_OPT __attribute__((optimize("O2")))
#else
#define KERNEL_OPT
#endif

#ifdef VW
#define TCOLS (VW * TVEC)
KERNEL_OPT static inline void tcols4(float *restrict o, size_t ldo, const float *restrict x, size_t ldx, const float *restrict w,
                          size_t ldw, int IN) {
    vf a[4][TVEC];
    for (int q = 0; q < 4; q++)
        for (int v = 0; v < TVEC; v++) a[q][v] = VZERO();
    for (int i = 0; i < IN; i++) {
        const float *restrict wi = w + (size_t)i * ldw;
        vf wv[TVEC];
        for (int v = 0; v < TVEC; v++) wv[v] = VLOAD(wi + v * VW);
        for (int q = 0; q < 4; q++) {
            const vf xq = VSET1(x[(size_t)q * ldx + i]);
            for (int v = 0; v < TVEC; v++) a[q][v] = VFMA(xq, wv[v], a[q][v]);
        }
    }
    for (int q = 0; q < 4; q++)
        for (int v = 0; v < TVEC; v++) VSTORE(o + (size_t)q * ldo + v * VW, a[q][v]);
}

KERNEL_OPT static inline void tcols1(float *restrict o, const float *restrict x, const float *restrict w, size_t ldw, int IN) {
    vf a[TVEC];
    for (int v = 0; v < TVEC; v++) a[v] = VZERO();
    for (int i = 0; i < IN; i++) {
        const float *restrict wi = w + (size_t)i * ldw;
        const vf xq = VSET1(x[i]);
        for (int v = 0; v < TVEC; v++) a[v] = VFMA(xq, VLOAD(wi + v * VW), a[v]);
    }
    for (int v = 0; v < TVEC; v++) VSTORE(o + v * VW, a[v]);
}
#else
#define TCOLS 32
static inline void tcols1(float *restrict o, const float *restrict x, const float *restrict w, size_t ldw, int IN) {
    float a0[TCOLS] = {0};
    for (int i = 0; i < IN; i++)
        for (int c = 0; c < TCOLS; c++) a0[c] = fmaf(x[i], w[(size_t)i * ldw + c], a0[c]);
    for (int c = 0; c < TCOLS; c++) o[c] = a0[c];
}
static inline void tcols4(float *restrict o, size_t ldo, const float *restrict x, size_t ldx, const float *restrict w,
                          size_t ldw, int IN) {
    for (int q = 0; q < 4; q++) tcols1(o + (size_t)q * ldo, x + (size_t)q * ldx, w, ldw, IN);
}
#endif

static inline void tcols_any(float *restrict o, const float *restrict x, const float *restrict w, size_t ldw, int IN,
                             int nj) {
    float a0[TCOLS] = {0};
    for (int i = 0; i < IN; i++) {
        const float *restrict wi = w + (size_t)i * ldw;
        const float v0 = x[i];
        for (int c = 0; c < nj; c++) a0[c] = fmaf(v0, wi[c], a0[c]);
    }
    for (int c = 0; c < nj; c++) o[c] = a0[c];
}

/* out (M, OUT) = x (M, IN) . W (+ b) for W [in,out]: plain (IN, OUT) rows (panels = 0), or
 * packed by pack_panels (panels = 1: the TCOLS columns of each block stored together, so a
 * block's weights are one contiguous run that prefetches, instead of IN rows a page apart). A
 * block of TCOLS output columns of up to 4 rows accumulates x[r, i] * W[i, block] over i in
 * order (the panel is read once per 4 rows, no horizontal sums); each element is one fmaf chain
 * in i, whatever the blocking, the layout or the thread. Work items are (column block, group of
 * 4 rows), so that a few wide blocks (OUT = 192 is three) still spread over the threads when
 * there are many rows. */
static void matmul_tcols(float *out, const float *x, const float *w, const float *b, int M, int IN, int OUT, int panels) {
    const size_t work = (size_t)M * IN * OUT;
    const int n_blocks = (OUT + TCOLS - 1) / TCOLS, n_groups = (M + 3) / 4;
#pragma omp parallel for schedule(static) if (work >= 65536)
    for (int it = 0; it < n_blocks * n_groups; it++) {
        const int jb = it % n_blocks, r0 = it / n_blocks * 4, r1 = r0 + 4 < M ? r0 + 4 : M;
        const int j0 = jb * TCOLS;
        const int nj = OUT - j0 < TCOLS ? OUT - j0 : TCOLS;
        const float *wb = panels ? w + (size_t)j0 * IN : w + j0;
        const size_t ldw = panels ? (size_t)nj : (size_t)OUT;
        float *ob = out + j0;
        if (nj == TCOLS && r1 - r0 == 4)
            tcols4(ob + (size_t)r0 * OUT, (size_t)OUT, x + (size_t)r0 * IN, (size_t)IN, wb, ldw, IN);
        else if (nj == TCOLS)
            for (int r = r0; r < r1; r++) tcols1(ob + (size_t)r * OUT, x + (size_t)r * IN, wb, ldw, IN);
        else
            for (int r = r0; r < r1; r++) tcols_any(ob + (size_t)r * OUT, x + (size_t)r * IN, wb, ldw, IN, nj);
        if (b)
            for (int r = r0; r < r1; r++)
                for (int j = 0; j < nj; j++) ob[(size_t)r * OUT + j] += b[j0 + j];
    }
}

/* dst = W packed for matmul_tcols(panels = 1): block jb (columns j0 = jb*TCOLS .. j0+nj) at
 * dst + j0*IN, element (i, j0 + c) at i*nj + c. src is W as (OUT, IN) [out,in] (in_out = 0) or
 * (IN, OUT) [in,out]. */
static void pack_panels(float *restrict dst, const float *restrict src, int OUT, int IN, int in_out) {
    const int n_blocks = (OUT + TCOLS - 1) / TCOLS;
#pragma omp parallel for schedule(static) if ((size_t)OUT * IN >= 65536)
    for (int jb = 0; jb < n_blocks; jb++) {
        const int j0 = jb * TCOLS, nj = OUT - j0 < TCOLS ? OUT - j0 : TCOLS;
        float *pb = dst + (size_t)j0 * IN;
        if (in_out) {
            for (int i = 0; i < IN; i++) memcpy(pb + (size_t)i * nj, src + (size_t)i * OUT + j0, (size_t)nj * sizeof(float));
        } else {
            /* 16 input columns at a time, so each weight row is read in cache lines */
            for (int i0 = 0; i0 < IN; i0 += 16)
                for (int c = 0; c < nj; c++)
                    for (int i = i0; i < IN && i < i0 + 16; i++) pb[(size_t)i * nj + c] = src[(size_t)(j0 + c) * IN + i];
        }
    }
}

void gen_matmul_rows(float *out, const float *x, const float *w, const float *b, int M, int IN, int OUT,
                     int in_out) {
    const size_t work = (size_t)M * IN * OUT;
    if (!in_out) {
        /* W (OUT, IN): each output is a dot product of an input row with a weight row; the
         * weight row is loaded once and used for all M rows, two at a time. */
#pragma omp parallel for schedule(static) if (work >= 65536)
        for (int j = 0; j < OUT; j++) {
            const float *wr = w + (size_t)j * IN;
            const float bj = b ? b[j] : 0.0f;
            int r = 0;
            for (; r + 4 <= M; r += 4) {
                float s4[4];
                dot_row4(s4, x + (size_t)r * IN, (size_t)IN, wr, IN);
                for (int q = 0; q < 4; q++) out[(size_t)(r + q) * OUT + j] = b ? s4[q] + bj : s4[q];
            }
            for (; r + 2 <= M; r += 2) {
                float s0, s1;
                dot_row2(&s0, &s1, x + (size_t)r * IN, x + (size_t)(r + 1) * IN, wr, IN);
                out[(size_t)r * OUT + j] = b ? s0 + bj : s0;
                out[(size_t)(r + 1) * OUT + j] = b ? s1 + bj : s1;
            }
            if (r < M) {
                float s = dot_row1(x + (size_t)r * IN, wr, IN);
                out[(size_t)r * OUT + j] = b ? s + bj : s;
            }
        }
    } else {
        matmul_tcols(out, x, w, b, M, IN, OUT, 0);
    }
}

/* ---- decoder ---- */

typedef struct {
    int C, L, NH, NKV, HS, KVD, QKV, F, V, FC;
} dims_t;

static dims_t dims_of(const model_config *c) {
    dims_t d;
    d.C = c->dim;
    d.L = c->n_layers;
    d.NH = c->n_heads;
    d.NKV = c->n_kv_heads;
    d.HS = c->dim / c->n_heads;
    d.KVD = d.NKV * d.HS;
    d.QKV = d.NH * d.HS + 2 * d.KVD;
    d.F = c->ffn_dim;
    d.V = c->vocab_size;
    d.FC = c->family == MODEL_FAMILY_LLAMA ? 2 * d.F : d.F;
    return d;
}

struct gen_packed {
    const model *m;
    float *wt;           /* every packed matrix */
    const float **layer; /* (L, 4): qkv, attn_out, fc, proj */
    const float *head;
};

void gen_packed_free(gen_packed **pp) {
    if (!pp || !*pp) return;
    free((*pp)->wt);
    free((void *)(*pp)->layer);
    free(*pp);
    *pp = NULL;
}

/* The copy costs about what a few decoding steps of a few rows do. */
int gen_packed_make(gen_packed **out, const model *m, rlhf_error *err) {
    *out = NULL;
    const model_config *c = &m->config;
    if (!m->w.lm_head) return RLHF_OK; /* a classifier: gen_decoder_init refuses it */
    const dims_t D = dims_of(c);
    const int gpt2 = c->family == MODEL_FAMILY_GPT2, QD = D.NH * D.HS;
    const int outs[4] = {D.QKV, D.C, D.FC, D.C}, ins[4] = {D.C, QD, D.C, D.F};
    size_t total = (size_t)D.V * D.C;
    for (int k = 0; k < 4; k++) total += (size_t)outs[k] * ins[k] * D.L;
    if (total * sizeof(float) > GEN_PACKED_MAX_BYTES) return RLHF_OK;
    gen_packed *p = calloc(1, sizeof *p);
    if (p) {
        p->m = m;
        p->wt = aligned_alloc(64, ROUND_UP(total) * sizeof(float));
        p->layer = calloc((size_t)D.L * 4, sizeof *p->layer);
    }
    if (!p || !p->wt || !p->layer) {
        gen_packed_free(&p);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "decoder: out of memory for the step weights (%zu MB)",
                           total * sizeof(float) >> 20);
    }
    float *w = p->wt;
    for (int l = 0; l < D.L; l++) {
        const model_layer_weights *lw = &m->w.layers[l];
        const float *src[4] = {lw->qkv_w, lw->attn_out_w, lw->fc_w, lw->proj_w};
        for (int k = 0; k < 4; k++) {
            pack_panels(w, src[k], outs[k], ins[k], gpt2); /* GPT-2's are [in,out], Llama's [out,in] */
            p->layer[l * 4 + k] = w;
            w += (size_t)outs[k] * ins[k];
        }
    }
    pack_panels(w, m->w.lm_head, D.V, D.C, 0);
    p->head = w;
    *out = p;
    return RLHF_OK;
}

int gen_decoder_init(gen_decoder *d, const model *m, int n_seq, int max_len, rlhf_error *err) {
    return gen_decoder_init_packed(d, m, n_seq, max_len, NULL, err);
}

int gen_decoder_init_packed(gen_decoder *d, const model *m, int n_seq, int max_len, const gen_packed *packed,
                            rlhf_error *err) {
    memset(d, 0, sizeof *d);
    const model_config *c = &m->config;
    if (n_seq < 1) return rlhf_errorf(err, RLHF_ERR_INVALID, "decoder: n_seq must be >= 1 (got %d)", n_seq);
    if (!m->w.lm_head)
        return rlhf_errorf(err, RLHF_ERR_INVALID,
                           "this is a sequence classifier (score head, %d labels), not a language model: it cannot generate",
                           c->num_labels);
    if (max_len < 1 || max_len > c->context)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "decoder: max_len %d outside 1..%d (the model's context)", max_len,
                           c->context);
    const dims_t D = dims_of(c);
    d->m = m;
    d->n_seq = n_seq;
    d->max_len = max_len;
    /* A prefill chunk needs NH * R * max_len floats of attention scores; keep that near 64 MB. */
    long R = max_len < 512 ? max_len : 512;
    long cap = (1L << 24) / ((long)D.NH * max_len);
    if (R > cap) R = cap;
    if (R < 1) R = 1;
    if (R < n_seq) R = n_seq;
    d->prefill_rows = (int)R;

    const size_t cache = (size_t)D.L * n_seq * max_len * D.KVD;
    size_t n_att = (size_t)D.NH * (size_t)R * (size_t)max_len;
    size_t total = ROUND_UP((size_t)R * D.C) * 3 /* x, xb, att_out */ + ROUND_UP((size_t)R * D.QKV) +
                   ROUND_UP((size_t)R * D.FC) + ROUND_UP((size_t)R * D.F) + ROUND_UP(n_att) +
                   ROUND_UP((size_t)n_seq * D.V);
    d->k_cache = aligned_alloc(64, ROUND_UP(cache) * sizeof(float));
    d->v_cache = aligned_alloc(64, ROUND_UP(cache) * sizeof(float));
    d->kt_cache = aligned_alloc(64, ROUND_UP(cache) * sizeof(float));
    d->logits = aligned_alloc(64, ROUND_UP((size_t)n_seq * D.V) * sizeof(float));
    d->arena = aligned_alloc(64, total * sizeof(float));
    d->len = calloc((size_t)n_seq, sizeof *d->len);
    d->tok = malloc((size_t)R * sizeof *d->tok);
    d->pos = malloc((size_t)R * sizeof *d->pos);
    if (c->family == MODEL_FAMILY_LLAMA) {
        d->rope_cos = malloc((size_t)max_len * (D.HS / 2) * sizeof(float));
        d->rope_sin = malloc((size_t)max_len * (D.HS / 2) * sizeof(float));
    }
    if (!d->k_cache || !d->v_cache || !d->kt_cache || !d->logits || !d->arena || !d->len || !d->tok || !d->pos ||
        (c->family == MODEL_FAMILY_LLAMA && (!d->rope_cos || !d->rope_sin))) {
        gen_decoder_free(d);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "decoder: out of memory for a cache of %d x %d positions (%zu MB)",
                           n_seq, max_len, 3 * cache * sizeof(float) >> 20);
    }
    float *p = d->arena;
    d->x = p, p += ROUND_UP((size_t)R * D.C);
    d->xb = p, p += ROUND_UP((size_t)R * D.C);
    d->att_out = p, p += ROUND_UP((size_t)R * D.C);
    d->qkv = p, p += ROUND_UP((size_t)R * D.QKV);
    d->fc = p, p += ROUND_UP((size_t)R * D.FC);
    d->h = p, p += ROUND_UP((size_t)R * D.F);
    d->att = p, p += ROUND_UP(n_att);
    d->step_logits = p;
    if (d->rope_cos) rope_table(d->rope_cos, d->rope_sin, max_len, D.HS, c->rope_theta);
    memset(d->logits, 0, (size_t)n_seq * D.V * sizeof(float));
    if (packed) {
        if (packed->m != m) {
            gen_decoder_free(d);
            return rlhf_errorf(err, RLHF_ERR_INVALID, "decoder: the packed weights were made from another model");
        }
        d->packed = packed;
        return RLHF_OK;
    }
    gen_packed *own = NULL;
    int rc = gen_packed_make(&own, m, err);
    if (rc) {
        gen_decoder_free(d);
        return rc;
    }
    d->packed = own;
    d->packed_owned = 1;
    return RLHF_OK;
}

void gen_decoder_free(gen_decoder *d) {
    free(d->k_cache);
    free(d->v_cache);
    free(d->kt_cache);
    free(d->logits);
    free(d->arena);
    free(d->len);
    free(d->tok);
    free(d->pos);
    free(d->rope_cos);
    free(d->rope_sin);
    if (d->packed_owned) {
        gen_packed *own = (gen_packed *)d->packed;
        gen_packed_free(&own);
    }
    memset(d, 0, sizeof *d);
}

void gen_decoder_reset(gen_decoder *d) {
    if (d->len) memset(d->len, 0, (size_t)d->n_seq * sizeof *d->len);
}

static inline float *cache_at(const gen_decoder *d, float *cache, int l, int seq, int pos, int KVD) {
    return cache + (((size_t)l * d->n_seq + seq) * d->max_len + pos) * KVD;
}

/* Row r (= kv head * HS + i) of sequence seq's transposed keys in layer l: max_len positions. */
static inline float *kt_at(const gen_decoder *d, int l, int seq, int r) {
    const int KVD = d->m->config.n_kv_heads * (d->m->config.dim / d->m->config.n_heads);
    return d->kt_cache + (((size_t)l * d->n_seq + seq) * KVD + r) * d->max_len;
}

void gen_decoder_copy(gen_decoder *d, int dst, int src) {
    if (dst == src) return;
    const dims_t D = dims_of(&d->m->config);
    const size_t n = (size_t)d->len[src] * D.KVD * sizeof(float);
    for (int l = 0; l < D.L; l++) {
        memcpy(cache_at(d, d->k_cache, l, dst, 0, D.KVD), cache_at(d, d->k_cache, l, src, 0, D.KVD), n);
        memcpy(cache_at(d, d->v_cache, l, dst, 0, D.KVD), cache_at(d, d->v_cache, l, src, 0, D.KVD), n);
        for (int r = 0; r < D.KVD; r++)
            memcpy(kt_at(d, l, dst, r), kt_at(d, l, src, r), (size_t)d->len[src] * sizeof(float));
    }
    d->len[dst] = d->len[src];
    memcpy(gen_decoder_logits(d, dst), gen_decoder_logits(d, src), (size_t)D.V * sizeof(float));
}

/* Attention of one new query row per sequence over that sequence's cache, into d->att_out.
 * Per (row, head), on one thread: scores q.k_t / sqrt(HS) for t <= pos, each an fmaf chain over
 * the head's dimensions in order, computed for VW positions at a time from the transposed keys
 * (kt_cache); softmax_row (softmax_forward's bits); then sum_t p_t v_t, t ascending, as fmaf.
 * attention_forward computes the same through two sgemm calls per head, which pack K and V
 * afresh for a single query row, so steps use this loop and prefill keeps attention_forward.
 * Each (row, head) is computed alone in a fixed order: a sequence's result cannot depend on
 * which other sequences share the step. One parallel loop over (row, head). */
static void decode_attention(gen_decoder *d, int l, int n, const int *seqs) {
    const dims_t D = dims_of(&d->m->config);
    const int QD = D.NH * D.HS, rep = D.NH / D.NKV, items = n * D.NH, HS = D.HS;
    const float scale = 1.0f / sqrtf((float)HS);
    size_t work = 0;
    for (int r = 0; r < n; r++) work += (size_t)(d->pos[r] + 1) * HS * D.NH;
#pragma omp parallel for schedule(static) if (work >= 32768)
    for (int it = 0; it < items; it++) {
        const int r = it / D.NH, h = it % D.NH, g = h / rep, Tk = d->pos[r] + 1;
        const float *q = d->qkv + (size_t)r * D.QKV + (size_t)h * HS;
        const float *kt = kt_at(d, l, seqs[r], g * HS);
        float *sc = d->att + (size_t)it * d->max_len;
        int t = 0;
#ifdef __AVX512F__
        for (; t + 16 <= Tk; t += 16) {
            __m512 acc = _mm512_setzero_ps();
            for (int i = 0; i < HS; i++)
                acc = _mm512_fmadd_ps(_mm512_set1_ps(q[i]), _mm512_loadu_ps(kt + (size_t)i * d->max_len + t), acc);
            _mm512_storeu_ps(sc + t, _mm512_mul_ps(acc, _mm512_set1_ps(scale)));
        }
#endif
        for (; t < Tk; t++) {
            float acc = 0.0f;
            for (int i = 0; i < HS; i++) acc = fmaf(q[i], kt[(size_t)i * d->max_len + t], acc);
            sc[t] = acc * scale;
        }
        softmax_row(sc, sc, Tk);
        const float *v = cache_at(d, d->v_cache, l, seqs[r], 0, D.KVD) + (size_t)g * HS;
        float *o = d->att_out + (size_t)r * QD + (size_t)h * HS;
        int i0 = 0;
#ifdef __AVX512F__
        for (; i0 + 32 <= HS; i0 += 32) {
            __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
            for (int u = 0; u < Tk; u++) {
                const __m512 p = _mm512_set1_ps(sc[u]);
                const float *vt = v + (size_t)u * D.KVD + i0;
                a0 = _mm512_fmadd_ps(p, _mm512_loadu_ps(vt), a0);
                a1 = _mm512_fmadd_ps(p, _mm512_loadu_ps(vt + 16), a1);
            }
            _mm512_storeu_ps(o + i0, a0);
            _mm512_storeu_ps(o + i0 + 16, a1);
        }
#endif
        for (int i = i0; i < HS; i++) {
            float acc = 0.0f;
            for (int u = 0; u < Tk; u++) acc = fmaf(sc[u], v[(size_t)u * D.KVD + i], acc);
            o[i] = acc;
        }
    }
}

/* wt: the packed copy of w (pack_panels), or NULL. */
static void linear(int prefill, float *out, const float *in, const float *w, const float *wt, const float *b, int n, int IN,
                   int OUT, int in_out) {
    if (prefill)
        matmul_forward(out, in, w, b, n, IN, OUT, in_out ? KERNEL_W_IN_OUT : KERNEL_W_OUT_IN);
    else if (wt)
        matmul_tcols(out, in, wt, b, n, IN, OUT, 1);
    else
        gen_matmul_rows(out, in, w, b, n, IN, OUT, in_out);
}

/* The logits of n rows: the LM head through its [in,out] copy when there is one. */
static void head_rows(const gen_decoder *d, float *out, const float *x, int n) {
    const model_config *c = &d->m->config;
    if (d->packed)
        matmul_tcols(out, x, d->packed->head, NULL, n, c->dim, c->vocab_size, 1);
    else
        gen_matmul_rows(out, x, d->m->w.lm_head, NULL, n, c->dim, c->vocab_size, 0);
}

/* The forward pass over n rows. Prefill: rows are consecutive positions of sequence `seq`
 * starting at d->len[seq] (seqs == NULL). Step: row r is the next position of seqs[r].
 * Positions and tokens are already validated. Logits: prefill writes only the last row's into
 * seq's row; a step writes every row's into its sequence's row (through d->step_logits). */
/* Embedding rows past the tokenizer's vocabulary (padding a model was given for speed) are no
 * tokens: their logits become -inf so no strategy can pick one. */
static void mask_padding(gen_decoder *d, int seq) {
    const int V = d->m->config.vocab_size;
    if (d->n_valid <= 0 || d->n_valid >= V) return;
    float *lg = gen_decoder_logits(d, seq);
    for (int i = d->n_valid; i < V; i++) lg[i] = -INFINITY;
}

static void decoder_forward(gen_decoder *d, int n, const int32_t *tokens, const int *seqs, int seq) {
    const model *m = d->m;
    const model_config *c = &m->config;
    const dims_t D = dims_of(c);
    const int prefill = seqs == NULL;
    const int gpt2 = c->family == MODEL_FAMILY_GPT2;
    const int QD = D.NH * D.HS;
    for (int r = 0; r < n; r++) d->pos[r] = prefill ? d->len[seq] + r : d->len[seqs[r]];
    embedding_forward(d->x, tokens, d->pos, m->w.tok_emb, gpt2 ? m->w.pos_emb : NULL, n, D.C);
    for (int l = 0; l < D.L; l++) {
        const model_layer_weights *lw = &m->w.layers[l];
#define WT(k) (d->packed ? d->packed->layer[l * 4 + (k)] : NULL)
        if (gpt2)
            layernorm_forward(d->xb, NULL, NULL, d->x, lw->ln1_w, lw->ln1_b, n, D.C, c->norm_eps);
        else
            rmsnorm_forward(d->xb, NULL, d->x, lw->ln1_w, n, D.C, c->norm_eps);
        linear(prefill, d->qkv, d->xb, lw->qkv_w, WT(0), lw->qkv_b, n, D.C, D.QKV, gpt2);
        if (!gpt2) {
            rope_forward(d->qkv, d->qkv, d->pos, d->rope_cos, d->rope_sin, n, D.NH, D.HS, D.QKV, c->rope_layout);
            rope_forward(d->qkv + QD, d->qkv + QD, d->pos, d->rope_cos, d->rope_sin, n, D.NKV, D.HS, D.QKV,
                         c->rope_layout);
        }
        for (int r = 0; r < n; r++) {
            const int s = prefill ? seq : seqs[r];
            const float *row = d->qkv + (size_t)r * D.QKV;
            memcpy(cache_at(d, d->k_cache, l, s, d->pos[r], D.KVD), row + QD, (size_t)D.KVD * sizeof(float));
            memcpy(cache_at(d, d->v_cache, l, s, d->pos[r], D.KVD), row + QD + D.KVD, (size_t)D.KVD * sizeof(float));
            for (int i = 0; i < D.KVD; i++) kt_at(d, l, s, i)[d->pos[r]] = row[QD + i];
        }
        attention_dims ad = {0};
        ad.B = 1;
        ad.NH = D.NH;
        ad.NKV = D.NKV;
        ad.HS = D.HS;
        ad.q_stride = D.QKV;
        ad.kv_stride = D.KVD;
        ad.out_stride = QD;
        if (prefill) {
            ad.Tq = n;
            ad.Tk = d->pos[0] + n;
            attention_forward(d->att_out, d->att, d->qkv, cache_at(d, d->k_cache, l, seq, 0, D.KVD),
                              cache_at(d, d->v_cache, l, seq, 0, D.KVD), &ad);
        } else {
            decode_attention(d, l, n, seqs);
        }
        linear(prefill, d->xb, d->att_out, lw->attn_out_w, WT(1), lw->attn_out_b, n, QD, D.C, gpt2);
        residual_forward(d->x, d->x, d->xb, (size_t)n * D.C);
        if (gpt2) {
            layernorm_forward(d->xb, NULL, NULL, d->x, lw->ln2_w, lw->ln2_b, n, D.C, c->norm_eps);
            linear(prefill, d->fc, d->xb, lw->fc_w, WT(2), lw->fc_b, n, D.C, D.F, 1);
            gelu_forward(d->fc, d->fc, (size_t)n * D.F);
            linear(prefill, d->xb, d->fc, lw->proj_w, WT(3), lw->proj_b, n, D.F, D.C, 1);
        } else {
            rmsnorm_forward(d->xb, NULL, d->x, lw->ln2_w, n, D.C, c->norm_eps);
            linear(prefill, d->fc, d->xb, lw->fc_w, WT(2), NULL, n, D.C, 2 * D.F, 0);
            swiglu_forward(d->h, d->fc, n, D.F);
            linear(prefill, d->xb, d->h, lw->proj_w, WT(3), NULL, n, D.F, D.C, 0);
        }
        residual_forward(d->x, d->x, d->xb, (size_t)n * D.C);
#undef WT
    }
    if (prefill) {
        const float *last = d->x + (size_t)(n - 1) * D.C;
        if (gpt2)
            layernorm_forward(d->xb, NULL, NULL, last, m->w.lnf_w, m->w.lnf_b, 1, D.C, c->norm_eps);
        else
            rmsnorm_forward(d->xb, NULL, last, m->w.lnf_w, 1, D.C, c->norm_eps);
        head_rows(d, gen_decoder_logits(d, seq), d->xb, 1);
        mask_padding(d, seq);
        d->len[seq] += n;
    } else {
        if (gpt2)
            layernorm_forward(d->xb, NULL, NULL, d->x, m->w.lnf_w, m->w.lnf_b, n, D.C, c->norm_eps);
        else
            rmsnorm_forward(d->xb, NULL, d->x, m->w.lnf_w, n, D.C, c->norm_eps);
        if (n == 1) {
            head_rows(d, gen_decoder_logits(d, seqs[0]), d->xb, 1);
        } else {
            float *tmp = d->step_logits;
            head_rows(d, tmp, d->xb, n);
            for (int r = 0; r < n; r++)
                memcpy(gen_decoder_logits(d, seqs[r]), tmp + (size_t)r * D.V, (size_t)D.V * sizeof(float));
        }
        for (int r = 0; r < n; r++) {
            mask_padding(d, seqs[r]);
            d->len[seqs[r]]++;
        }
    }
}

static int check_tokens(const gen_decoder *d, const int32_t *tokens, int n, rlhf_error *err) {
    const int V = d->m->config.vocab_size;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return rlhf_errorf(err, RLHF_ERR_INVALID, "token %d at index %d is outside the vocabulary (0..%d)",
                               (int)tokens[i], i, V - 1);
    return RLHF_OK;
}

int gen_decoder_prefill(gen_decoder *d, int seq, const int32_t *tokens, int n, rlhf_error *err) {
    if (seq < 0 || seq >= d->n_seq) return rlhf_errorf(err, RLHF_ERR_INVALID, "prefill: no sequence %d", seq);
    if (n < 1) return rlhf_errorf(err, RLHF_ERR_INVALID, "prefill: empty prompt");
    if (d->len[seq] + n > d->max_len)
        return rlhf_errorf(err, RLHF_ERR_INVALID,
                           "prefill: %d tokens after %d cached exceed the cache of %d positions by %d", n,
                           d->len[seq], d->max_len, d->len[seq] + n - d->max_len);
    int rc = check_tokens(d, tokens, n, err);
    if (rc) return rc;
    for (int done = 0; done < n; done += d->prefill_rows) {
        int chunk = n - done < d->prefill_rows ? n - done : d->prefill_rows;
        decoder_forward(d, chunk, tokens + done, NULL, seq);
    }
    return RLHF_OK;
}

int gen_decoder_step(gen_decoder *d, const int *seqs, const int32_t *tokens, int n, rlhf_error *err) {
    if (n < 1) return RLHF_OK;
    if (n > d->n_seq) return rlhf_errorf(err, RLHF_ERR_INVALID, "step: %d rows for %d sequences", n, d->n_seq);
    for (int r = 0; r < n; r++) {
        if (seqs[r] < 0 || seqs[r] >= d->n_seq) return rlhf_errorf(err, RLHF_ERR_INVALID, "step: no sequence %d", seqs[r]);
        if (d->len[seqs[r]] >= d->max_len)
            return rlhf_errorf(err, RLHF_ERR_INVALID, "step: sequence %d is full (%d positions)", seqs[r], d->max_len);
        if (d->len[seqs[r]] == 0)
            return rlhf_errorf(err, RLHF_ERR_INVALID, "step: sequence %d has no prompt (prefill it first)", seqs[r]);
    }
    int rc = check_tokens(d, tokens, n, err);
    if (rc) return rc;
    decoder_forward(d, n, tokens, seqs, -1);
    return RLHF_OK;
}

/* ---- generation: shared parts ---- */

const char *gen_finish_name(gen_finish f) {
    switch (f) {
    case GEN_FINISH_NONE: return "none";
    case GEN_FINISH_EOS: return "eos";
    case GEN_FINISH_STOP: return "stop";
    case GEN_FINISH_LENGTH: return "max_tokens";
    case GEN_FINISH_INTERRUPTED: return "interrupted";
    }
    return "none";
}

const char *gen_strategy_name(gen_strategy s) {
    switch (s) {
    case GEN_STRATEGY_GREEDY: return "greedy";
    case GEN_STRATEGY_SAMPLE: return "sample";
    case GEN_STRATEGY_BEAM: return "beam";
    }
    return "unknown";
}

void gen_params_defaults(gen_params *p) {
    memset(p, 0, sizeof *p);
    p->strategy = GEN_STRATEGY_SAMPLE;
    sampler_params_defaults(&p->sampling);
    p->n = 1;
    p->max_tokens = 128;
    p->num_beams = 1;
    p->length_penalty = 1.0f;
    p->n_eos = -1;
}

uint64_t gen_candidate_seed(uint64_t seed, int index) {
    if (index == 0) return seed;
    /* A Weyl step per index, then rng_seed's splitmix64 expansion decorrelates the streams. */
    return seed ^ ((uint64_t)(uint32_t)index * 0x9E3779B97F4A7C15ull);
}

void gen_result_free(gen_result *r) {
    if (r->cands)
        for (int i = 0; i < r->n; i++) {
            free(r->cands[i].ids);
            free(r->cands[i].logprobs);
            free(r->cands[i].text);
        }
    free(r->cands);
    memset(r, 0, sizeof *r);
}

static int is_eos(const int32_t *eos, int n_eos, int32_t id) {
    for (int i = 0; i < n_eos; i++)
        if (eos[i] == id) return 1;
    return 0;
}

/* Everything gen_run decided before decoding. */
typedef struct {
    const int32_t *prompt; /* the used part of the caller's prompt */
    int n_prompt;
    int32_t eos[GEN_MAX_EOS + 2];
    int n_eos;
    int mid_sequence; /* the generated text continues visible prompt text */
    size_t max_stop;  /* longest stop string */
    int n_valid;      /* ids below this are tokens (the tokenizer's vocabulary); 0: all */
} run_setup;

static int run_prepare(const model *m, const tokenizer *tok, const int32_t *prompt, int n_prompt,
                       const gen_params *p, run_setup *s, gen_result *out, rlhf_error *err) {
    memset(s, 0, sizeof *s);
    const model_config *c = &m->config;
    if (n_prompt < 1 || !prompt) return rlhf_errorf(err, RLHF_ERR_INVALID, "generate: the prompt is empty");
    if (p->max_tokens < 1) return rlhf_errorf(err, RLHF_ERR_INVALID, "max_tokens must be >= 1 (got %d)", p->max_tokens);
    if (p->n < 1 || p->n > 1024) return rlhf_errorf(err, RLHF_ERR_INVALID, "n must be in 1..1024 (got %d)", p->n);
    if (p->strategy == GEN_STRATEGY_BEAM) {
        if (p->num_beams < 1 || p->num_beams > 256)
            return rlhf_errorf(err, RLHF_ERR_INVALID, "num_beams must be in 1..256 (got %d)", p->num_beams);
        if (p->n > p->num_beams)
            return rlhf_errorf(err, RLHF_ERR_INVALID, "beam search returns at most num_beams (%d) sequences, not %d",
                               p->num_beams, p->n);
        if (!isfinite(p->length_penalty))
            return rlhf_errorf(err, RLHF_ERR_INVALID, "length_penalty must be finite");
        /* beams are only final at the end, so a stop string could not cut them consistently */
        if (p->n_stop > 0) return rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "stop strings are not supported with beam search");
    }
    int rc = sampler_params_validate(&p->sampling, err);
    if (rc) return rc;
    if (p->n_stop > 0 && !tok)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "stop strings need a tokenizer (this model has none)");
    for (int i = 0; i < p->n_stop; i++) {
        if (!p->stop[i] || !p->stop[i][0]) return rlhf_errorf(err, RLHF_ERR_INVALID, "stop string %d is empty", i);
        size_t l = strlen(p->stop[i]);
        if (l > s->max_stop) s->max_stop = l;
    }
    if (p->max_tokens >= c->context)
        return rlhf_errorf(err, RLHF_ERR_INVALID,
                           "max_tokens %d leaves no room for a prompt in the model's context of %d positions",
                           p->max_tokens, c->context);
    int drop = 0;
    if (n_prompt + p->max_tokens > c->context) {
        if (!p->truncate_prompt)
            return rlhf_errorf(err, RLHF_ERR_INVALID,
                               "prompt of %d tokens + max_tokens %d exceeds the model's context of %d positions "
                               "(shorten the prompt, lower max_tokens, or ask for left truncation)",
                               n_prompt, p->max_tokens, c->context);
        drop = n_prompt + p->max_tokens - c->context;
    }
    s->prompt = prompt + drop;
    s->n_prompt = n_prompt - drop;
    out->n_prompt = s->n_prompt;
    out->n_dropped = drop;
    for (int i = 0; i < s->n_prompt; i++)
        if (s->prompt[i] < 0 || s->prompt[i] >= c->vocab_size)
            return rlhf_errorf(err, RLHF_ERR_INVALID, "prompt token %d at index %d is outside the vocabulary (0..%d)",
                               (int)s->prompt[i], i + drop, c->vocab_size - 1);
    if (p->n_eos >= 0) {
        if (p->n_eos > GEN_MAX_EOS) return rlhf_errorf(err, RLHF_ERR_INVALID, "at most %d eos ids", GEN_MAX_EOS);
        for (int i = 0; i < p->n_eos; i++) s->eos[s->n_eos++] = p->eos_ids[i];
    } else {
        if (c->eos_id >= 0) s->eos[s->n_eos++] = c->eos_id;
        int32_t te = tok ? tok_eos_id(tok) : -1;
        if (te >= 0 && !is_eos(s->eos, s->n_eos, te)) s->eos[s->n_eos++] = te;
    }
    if (tok && tok_vocab_size(tok) < c->vocab_size) s->n_valid = tok_vocab_size(tok);
    if (tok)
        for (int i = 0; i < s->n_prompt && !s->mid_sequence; i++)
            if (!tok_id_is_special(tok, s->prompt[i])) s->mid_sequence = 1;
    return RLHF_OK;
}

/* Text is sized for 8 bytes a token up front, so it rarely grows while decoding. */
static int cand_alloc(gen_candidate *c, int max_tokens, size_t *text_cap, rlhf_error *err) {
    const int with_text = text_cap != NULL;
    c->ids = malloc((size_t)max_tokens * sizeof *c->ids);
    c->logprobs = malloc((size_t)max_tokens * sizeof *c->logprobs);
    if (with_text) {
        *text_cap = (size_t)max_tokens * 8 + 64;
        c->text = malloc(*text_cap);
        if (c->text) c->text[0] = 0;
    }
    if (!c->ids || !c->logprobs || (with_text && !c->text))
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "generate: out of memory for candidates");
    return RLHF_OK;
}

static void cand_totals(gen_candidate *c) {
    double s = 0;
    for (int i = 0; i < c->n_ids; i++) s += c->logprobs[i];
    c->logprob = s;
    c->mean_logprob = c->n_ids ? s / c->n_ids : 0.0;
}

/* Appends bytes to a candidate's text, growing its buffer by doubling. */
static int text_append(gen_candidate *c, size_t *cap, const char *t, size_t n, rlhf_error *err) {
    if (c->text_len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 64;
        while (c->text_len + n + 1 > nc) nc *= 2;
        char *nt = realloc(c->text, nc);
        if (!nt) return rlhf_errorf(err, RLHF_ERR_NOMEM, "generate: out of memory for text");
        c->text = nt;
        *cap = nc;
    }
    memcpy(c->text + c->text_len, t, n);
    c->text_len += n;
    c->text[c->text_len] = 0;
    return RLHF_OK;
}

/* Earliest occurrence of any stop string starting at or after `from`; -1 if none. */
static long find_stop(const char *text, size_t len, size_t from, const char *const *stop, int n_stop) {
    long best = -1;
    for (int i = 0; i < n_stop; i++) {
        size_t sl = strlen(stop[i]);
        if (sl > len) continue;
        const char *hit = memmem(text + from, len - from, stop[i], sl);
        if (hit && (best < 0 || hit - text < best)) best = hit - text;
    }
    return best;
}

/* Bytes at the end of text that could still grow into a stop string (held back from streaming). */
static size_t stop_partial(const char *text, size_t len, const char *const *stop, int n_stop) {
    size_t hold = 0;
    for (int i = 0; i < n_stop; i++) {
        size_t sl = strlen(stop[i]);
        for (size_t k = sl - 1 < len ? sl - 1 : len; k > hold; k--)
            if (memcmp(text + len - k, stop[i], k) == 0) {
                hold = k;
                break;
            }
    }
    return hold;
}

/* ---- greedy and sampling: N candidates in lockstep ---- */

typedef struct {
    rng_t rng;
    int32_t *hist;   /* (n_prompt + max_tokens) prompt then generated */
    int n_hist;
    tok_stream ts;
    size_t text_cap;
    size_t emitted;  /* text bytes already given to the callback */
    int done;
} cand_state;

/* P prompts (su[j], results out[j], sampling seed seeds[j]) of p->n candidates each, decoded
 * together: candidate k of prompt j is sequence j*N + k of one decoder. gen_run is P = 1. */
static int run_sampling(const model *m, const tokenizer *tok, const gen_params *p, const run_setup *su,
                        const uint64_t *seeds, int P, gen_result *out, rlhf_error *err) {
    const int N = p->n, V = m->config.vocab_size, T = p->max_tokens, NT = P * N;
    gen_decoder d = {0};
    /* one chain per thread: candidates are sampled in parallel, each with its own rng, so the
     * thread that samples a candidate does not change its draw */
    int n_chains = omp_get_max_threads();
    if (n_chains > NT) n_chains = NT;
    if (n_chains < 1) n_chains = 1;
    sampler_chain *chains = calloc((size_t)n_chains, sizeof *chains);
    int32_t *drawn = malloc((size_t)NT * sizeof *drawn);
    float *drawn_lp = malloc((size_t)NT * sizeof *drawn_lp);
    int *todo = malloc((size_t)NT * sizeof *todo);
    cand_state *cs = calloc((size_t)NT, sizeof *cs);
    int *seqs = malloc((size_t)NT * sizeof *seqs);
    int32_t *next = malloc((size_t)NT * sizeof *next);
    int rc = RLHF_OK;
    if (!cs || !seqs || !next || !chains || !drawn || !drawn_lp || !todo) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "generate: out of memory");
        goto done;
    }
    sampler_params sp = p->sampling;
    if (p->strategy == GEN_STRATEGY_GREEDY) sp.temperature = 0.0f;
    for (int i = 0; i < n_chains; i++)
        if ((rc = sampler_chain_init_params(&chains[i], V, &sp, err))) goto done;
    int longest = 0;
    for (int j = 0; j < P; j++)
        if (su[j].n_prompt > longest) longest = su[j].n_prompt;
    if ((rc = gen_decoder_init_packed(&d, m, NT, longest + T, p->packed, err))) goto done;
    d.n_valid = su[0].n_valid; /* one tokenizer for every prompt */
    for (int g = 0; g < NT; g++) {
        const run_setup *s = &su[g / N];
        gen_candidate *c = &out[g / N].cands[g % N];
        c->index = p->first_index + g % N;
        if ((rc = cand_alloc(c, T, tok ? &cs[g].text_cap : NULL, err))) goto done;
        cs[g].hist = malloc((size_t)(s->n_prompt + T) * sizeof(int32_t));
        if (!cs[g].hist) {
            rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "generate: out of memory");
            goto done;
        }
        memcpy(cs[g].hist, s->prompt, (size_t)s->n_prompt * sizeof(int32_t));
        cs[g].n_hist = s->n_prompt;
        rng_seed(&cs[g].rng, gen_candidate_seed(seeds[g / N], c->index));
        if (tok && (rc = tok_stream_init(&cs[g].ts, tok, s->mid_sequence ? TOK_STREAM_MID_SEQUENCE : 0, err)))
            goto done;
    }

    for (int j = 0; j < P; j++) {
        const double t0 = now_ms();
        if ((rc = gen_decoder_prefill(&d, j * N, su[j].prompt, su[j].n_prompt, err))) goto done;
        for (int k = 1; k < N; k++) gen_decoder_copy(&d, j * N + k, j * N);
        out[j].prefill_ms = now_ms() - t0;
    }
    const double t1 = now_ms();

    int interrupted = 0;
    for (int step = 0; step < T; step++) {
        if (p->stop_flag && *p->stop_flag) interrupted = 1;
        /* draw every active candidate's token (in parallel: each reads only its own logits,
         * history and rng), then do the bookkeeping in candidate order */
        int n_todo = 0;
        for (int g = 0; g < NT && !interrupted; g++)
            if (!cs[g].done) todo[n_todo++] = g;
        /* num_threads: exactly one chain per thread; a larger team would share chains[0] */
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_chains) if (n_todo > 1 && n_chains > 1)
        for (int i = 0; i < n_todo; i++) {
            const int g = todo[i];
            const float *logits = gen_decoder_logits(&d, g);
            sampler_context ctx = {cs[g].hist, cs[g].n_hist, &cs[g].rng};
            int tid = omp_get_thread_num();
            assert(tid < n_chains);
            const int32_t id = sampler_chain_sample(&chains[tid], logits, &ctx);
            float loss, lse;
            crossentropy_forward(&loss, &lse, logits, &id, 1, V); /* log p = -(lse - logit) */
            drawn[g] = id;
            drawn_lp[g] = -loss;
        }
        for (int i = 0; i < n_todo && !interrupted; i++) {
            const int g = todo[i];
            const run_setup *s = &su[g / N];
            cand_state *st = &cs[g];
            gen_candidate *c = &out[g / N].cands[g % N];
            const int32_t id = drawn[g];
            const float lp = drawn_lp[g];
            c->ids[c->n_ids] = id;
            c->logprobs[c->n_ids] = lp;
            c->n_ids++;
            st->hist[st->n_hist++] = id;
            out[g / N].n_generated++;
            size_t release = c->text_len;
            if (is_eos(s->eos, s->n_eos, id)) c->finish = GEN_FINISH_EOS;
            if (tok && c->finish == GEN_FINISH_NONE) {
                const char *piece;
                size_t plen;
                if ((rc = tok_stream_push(&st->ts, id, &piece, &plen, err))) goto done;
                size_t old = c->text_len;
                if ((rc = text_append(c, &st->text_cap, piece, plen, err))) goto done;
                if (p->n_stop > 0) {
                    size_t from = old > s->max_stop ? old - s->max_stop : 0;
                    long at = find_stop(c->text, c->text_len, from, p->stop, p->n_stop);
                    if (at >= 0) {
                        /* the candidate keeps the tokens through this one (its text stays the
                         * decoded ids); people are shown, and the stream releases, the text
                         * before the stop string */
                        const char *rest;
                        size_t rlen;
                        if ((rc = tok_stream_flush(&st->ts, &rest, &rlen, err))) goto done;
                        if ((rc = text_append(c, &st->text_cap, rest, rlen, err))) goto done;
                        c->text_stop = (size_t)at;
                        c->finish = GEN_FINISH_STOP;
                    }
                }
                release = c->finish == GEN_FINISH_STOP ? c->text_stop : c->text_len;
                if (c->finish == GEN_FINISH_NONE && p->n_stop > 0)
                    release -= stop_partial(c->text, c->text_len, p->stop, p->n_stop);
            }
            if (c->finish == GEN_FINISH_NONE && c->n_ids == T) c->finish = GEN_FINISH_LENGTH;
            if (tok && (c->finish == GEN_FINISH_EOS || c->finish == GEN_FINISH_LENGTH)) {
                const char *piece;
                size_t plen;
                if ((rc = tok_stream_flush(&st->ts, &piece, &plen, err))) goto done;
                if ((rc = text_append(c, &st->text_cap, piece, plen, err))) goto done;
                release = c->text_len;
            }
            if (c->finish != GEN_FINISH_NONE) st->done = 1;
            if (p->on_token) {
                const char *t = tok ? c->text + st->emitted : NULL;
                size_t tl = tok && release > st->emitted ? release - st->emitted : 0;
                if (p->on_token(p->user, (g / N) * N + c->index, id, t, tl, lp)) interrupted = 1;
                if (tok && release > st->emitted) st->emitted = release;
            }
        }
        if (interrupted) break;
        /* only unfinished candidates step: a finished one costs nothing while the others go on */
        int n_active = 0;
        for (int g = 0; g < NT; g++)
            if (!cs[g].done) {
                const gen_candidate *c = &out[g / N].cands[g % N];
                seqs[n_active] = g;
                next[n_active] = c->ids[c->n_ids - 1];
                n_active++;
            }
        if (n_active == 0) break;
        if ((rc = gen_decoder_step(&d, seqs, next, n_active, err))) goto done;
    }
    if (interrupted)
        for (int g = 0; g < NT; g++)
            if (!cs[g].done) {
                gen_candidate *c = &out[g / N].cands[g % N];
                c->finish = GEN_FINISH_INTERRUPTED;
                if (tok) {
                    const char *piece;
                    size_t plen;
                    if ((rc = tok_stream_flush(&cs[g].ts, &piece, &plen, err))) goto done;
                    if ((rc = text_append(c, &cs[g].text_cap, piece, plen, err))) goto done;
                }
            }
    const double decode_ms = now_ms() - t1;
    for (int g = 0; g < NT; g++) {
        gen_candidate *c = &out[g / N].cands[g % N];
        out[g / N].decode_ms = decode_ms;
        cand_totals(c);
        c->score = c->logprob;
        if (c->finish != GEN_FINISH_STOP) c->text_stop = c->text_len;
    }
done:
    if (cs)
        for (int g = 0; g < NT; g++) {
            free(cs[g].hist);
            tok_stream_free(&cs[g].ts);
        }
    free(cs);
    free(seqs);
    free(next);
    if (chains)
        for (int i = 0; i < n_chains; i++) sampler_chain_free(&chains[i]);
    free(chains);
    free(drawn);
    free(drawn_lp);
    free(todo);
    gen_decoder_free(&d);
    return rc;
}

/* ---- beam search (Hugging Face BeamSearchScorer semantics, one prompt) ----
 *
 * Each step scores every (beam, token) as beam_score + log p(token), keeps the 2B best (ties:
 * lower beam, then lower token), and walks them in order: an EOS candidate among the first B
 * becomes a finished hypothesis scored sum / length^length_penalty; other candidates become
 * the next beams until B are found. The search ends when B hypotheses are finished and either
 * early_stopping is set or no running beam can beat the worst of them, or at max_tokens (the
 * running beams then join the hypotheses). The cache holds 2B sequences: the beams of a step
 * live in one half and are copied from their parents into the other half for the next. */

typedef struct {
    double score;  /* cumulative log-probability */
    int beam;      /* parent beam */
    int32_t token;
} beam_cand;

typedef struct {
    int32_t *ids;
    float *lps;
    int n;
    double score;  /* length-penalised */
    double sum;
    gen_finish finish;
    long order;    /* insertion order, for stable ranking */
} beam_hyp;

/* b before a? (higher score first; ties by flat index) */
static int beam_before(const beam_cand *a, const beam_cand *b, int V) {
    if (a->score != b->score) return a->score > b->score;
    return (long)a->beam * V + a->token < (long)b->beam * V + b->token;
}

static double length_norm(double sum, int len, float lp) { return sum / pow((double)len, (double)lp); }

typedef struct {
    beam_hyp *h; /* (B + 1) storage */
    int n, B;
    long counter;
} hyp_set;

static int hyp_worst(const hyp_set *hs) {
    int w = 0;
    for (int i = 1; i < hs->n; i++)
        if (hs->h[i].score < hs->h[w].score || (hs->h[i].score == hs->h[w].score && hs->h[i].order > hs->h[w].order))
            w = i;
    return w;
}

/* HF BeamHypotheses.add: keep at most B, the best by score. */
static void hyp_add(hyp_set *hs, const int32_t *ids, const float *lps, int n, int32_t last, float last_lp, double sum,
                    float length_penalty, gen_finish finish) {
    double score = length_norm(sum, n + 1, length_penalty);
    int slot;
    if (hs->n < hs->B) {
        slot = hs->n++;
    } else {
        slot = hyp_worst(hs);
        if (!(score > hs->h[slot].score)) return;
    }
    beam_hyp *h = &hs->h[slot];
    memcpy(h->ids, ids, (size_t)n * sizeof *ids);
    memcpy(h->lps, lps, (size_t)n * sizeof *lps);
    h->ids[n] = last;
    h->lps[n] = last_lp;
    h->n = n + 1;
    h->score = score;
    h->sum = sum;
    h->finish = finish;
    h->order = hs->counter++;
}

static int run_beam(const model *m, const tokenizer *tok, const gen_params *p, const run_setup *su, gen_result *out,
                    rlhf_error *err) {
    const int B = p->num_beams, V = m->config.vocab_size, T = p->max_tokens, P = su->n_prompt;
    const int K = 2 * B;
    const int H = P + T; /* history length */
    gen_decoder d = {0};
    hyp_set hs = {0};
    int rc = RLHF_OK;
    /* ping-pong beam state: history (prompt + tokens) and per-token logprobs, 2B slots */
    int32_t *hist = malloc((size_t)2 * B * H * sizeof *hist);
    float *lps = malloc((size_t)2 * B * T * sizeof *lps);
    double *bscore = malloc((size_t)2 * B * sizeof *bscore);
    beam_cand *top = malloc((size_t)K * sizeof *top);
    beam_cand *nextb = malloc((size_t)B * sizeof *nextb);
    int32_t *banned = malloc((size_t)H * sizeof *banned);
    int *seqs = malloc((size_t)B * sizeof *seqs);
    int32_t *toks = malloc((size_t)B * sizeof *toks);
    hs.h = calloc((size_t)B + 1, sizeof *hs.h);
    hs.B = B;
    if (!hist || !lps || !bscore || !top || !nextb || !banned || !seqs || !toks || !hs.h) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "beam search: out of memory");
        goto done;
    }
    for (int i = 0; i <= B; i++) {
        hs.h[i].ids = malloc((size_t)T * sizeof(int32_t));
        hs.h[i].lps = malloc((size_t)T * sizeof(float));
        if (!hs.h[i].ids || !hs.h[i].lps) {
            rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "beam search: out of memory");
            goto done;
        }
    }
    if ((rc = gen_decoder_init_packed(&d, m, 2 * B, P + T, p->packed, err))) goto done;
    d.n_valid = su->n_valid;

    double t0 = now_ms();
    if ((rc = gen_decoder_prefill(&d, 0, su->prompt, P, err))) goto done;
    double t1 = now_ms();
    out->prefill_ms = t1 - t0;
    memcpy(hist, su->prompt, (size_t)P * sizeof *hist);
    bscore[0] = 0.0;
    int cur = 0;  /* half holding the running beams: slots cur*B .. cur*B + nb */
    int nb = 1;
    int finished = 0;
    const int ngram = p->sampling.no_repeat_ngram_size;
    for (int t = 0; t < T && !finished; t++) {
        if (p->stop_flag && *p->stop_flag) {
            for (int b = 0; b < nb; b++) {
                const int slot = cur * B + b;
                /* an interrupted beam joins as it is (its last token is already counted) */
                if (t > 0)
                    hyp_add(&hs, hist + (size_t)slot * H + P, lps + (size_t)slot * T, t - 1,
                            hist[(size_t)slot * H + P + t - 1], lps[(size_t)slot * T + t - 1], bscore[slot],
                            p->length_penalty, GEN_FINISH_INTERRUPTED);
            }
            break;
        }
        /* top 2B over all (beam, token) */
        int nt = 0;
        for (int b = 0; b < nb; b++) {
            const int slot = cur * B + b;
            const float *lg = gen_decoder_logits(&d, slot);
            float loss0, lse_f;
            const int32_t any = 0;
            crossentropy_forward(&loss0, &lse_f, lg, &any, 1, V);
            const double lse = lse_f;
            int n_ban = ngram > 0 ? sampler_ngram_banned(hist + (size_t)slot * H, P + t, ngram, banned, H) : 0;
            for (int v = 0; v < V; v++) {
                beam_cand c = {bscore[slot] + ((double)lg[v] - lse), b, v};
                if (nt == K && !beam_before(&c, &top[K - 1], V)) continue;
                int skip = 0;
                for (int i = 0; i < n_ban && !skip; i++) skip = banned[i] == v;
                if (skip) continue;
                int at = nt < K ? nt++ : K - 1;
                while (at > 0 && beam_before(&c, &top[at - 1], V)) {
                    top[at] = top[at - 1];
                    at--;
                }
                top[at] = c;
            }
        }
        /* walk the candidates */
        int nn = 0;
        for (int r = 0; r < nt && nn < B; r++) {
            const beam_cand *c = &top[r];
            const int slot = cur * B + c->beam;
            const float *lg = gen_decoder_logits(&d, slot);
            const float lp = (float)(c->score - bscore[slot]);
            (void)lg;
            if (is_eos(su->eos, su->n_eos, c->token)) {
                if (r >= B) continue;
                hyp_add(&hs, hist + (size_t)slot * H + P, lps + (size_t)slot * T, t, c->token, lp, c->score,
                        p->length_penalty, GEN_FINISH_EOS);
            } else {
                nextb[nn++] = *c;
            }
        }
        out->n_generated += nn;
        /* done? (HF BeamHypotheses.is_done with the best candidate score of this step) */
        if (hs.n >= B && nt > 0) {
            if (p->early_stopping)
                finished = 1;
            else
                finished = hs.h[hyp_worst(&hs)].score >= length_norm(top[0].score, t + 1, p->length_penalty);
        }
        if (finished || nn == 0) break;
        const int nxt = 1 - cur;
        if (t + 1 == T) {
            for (int k = 0; k < nn; k++) {
                const int slot = cur * B + nextb[k].beam;
                hyp_add(&hs, hist + (size_t)slot * H + P, lps + (size_t)slot * T, t, nextb[k].token,
                        (float)(nextb[k].score - bscore[slot]), nextb[k].score, p->length_penalty, GEN_FINISH_LENGTH);
            }
            break;
        }
        for (int k = 0; k < nn; k++) {
            const int src = cur * B + nextb[k].beam, dst = nxt * B + k;
            gen_decoder_copy(&d, dst, src);
            memcpy(hist + (size_t)dst * H, hist + (size_t)src * H, (size_t)(P + t) * sizeof *hist);
            memcpy(lps + (size_t)dst * T, lps + (size_t)src * T, (size_t)t * sizeof *lps);
            hist[(size_t)dst * H + P + t] = nextb[k].token;
            lps[(size_t)dst * T + t] = (float)(nextb[k].score - bscore[src]);
            seqs[k] = dst;
            toks[k] = nextb[k].token;
        }
        for (int k = 0; k < nn; k++) bscore[nxt * B + k] = nextb[k].score;
        if ((rc = gen_decoder_step(&d, seqs, toks, nn, err))) goto done;
        cur = nxt;
        nb = nn;
    }
    out->decode_ms = now_ms() - t1;

    /* rank the hypotheses: score desc, then insertion order */
    for (int i = 1; i < hs.n; i++)
        for (int j = i; j > 0; j--) {
            beam_hyp *a = &hs.h[j - 1], *b = &hs.h[j];
            if (b->score > a->score || (b->score == a->score && b->order < a->order)) {
                beam_hyp tmp = *a;
                *a = *b;
                *b = tmp;
            } else {
                break;
            }
        }
    out->n = p->n < hs.n ? p->n : hs.n;
    for (int k = 0; k < out->n; k++) {
        gen_candidate *c = &out->cands[k];
        beam_hyp *h = &hs.h[k];
        if ((rc = cand_alloc(c, T, NULL, err))) goto done;
        memcpy(c->ids, h->ids, (size_t)h->n * sizeof *c->ids);
        memcpy(c->logprobs, h->lps, (size_t)h->n * sizeof *c->logprobs);
        c->n_ids = h->n;
        c->finish = h->finish;
        c->index = k;
        cand_totals(c);
        c->score = h->score;
        if (tok) {
            int n_text = c->n_ids - (c->finish == GEN_FINISH_EOS ? 1 : 0);
            tok_stream ts = {0};
            size_t cap = 0;
            const char *piece;
            size_t plen;
            c->text = NULL;
            c->text_len = 0;
            if ((rc = tok_stream_init(&ts, tok, su->mid_sequence ? TOK_STREAM_MID_SEQUENCE : 0, err))) goto done;
            for (int i = 0; i <= n_text && !rc; i++) {
                rc = i < n_text ? tok_stream_push(&ts, c->ids[i], &piece, &plen, err)
                                : tok_stream_flush(&ts, &piece, &plen, err);
                if (!rc) rc = text_append(c, &cap, piece, plen, err);
            }
            tok_stream_free(&ts);
            if (rc) goto done;
            c->text_stop = c->text_len; /* beam search takes no stop strings */
        }
    }
done:
    if (hs.h)
        for (int i = 0; i <= B; i++) {
            free(hs.h[i].ids);
            free(hs.h[i].lps);
        }
    free(hs.h);
    free(hist);
    free(lps);
    free(bscore);
    free(top);
    free(nextb);
    free(banned);
    free(seqs);
    free(toks);
    gen_decoder_free(&d);
    return rc;
}

int gen_run(const model *m, const tokenizer *tok, const int32_t *prompt, int n_prompt, const gen_params *p,
            gen_result *out, rlhf_error *err) {
    memset(out, 0, sizeof *out);
    run_setup su;
    int rc = run_prepare(m, tok, prompt, n_prompt, p, &su, out, err);
    if (rc) goto fail;
    const int n_alloc = p->n;
    out->cands = calloc((size_t)n_alloc, sizeof *out->cands);
    if (!out->cands) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "generate: out of memory");
        goto fail;
    }
    out->n = n_alloc;
    if (p->strategy == GEN_STRATEGY_BEAM)
        rc = run_beam(m, tok, p, &su, out, err);
    else
        rc = run_sampling(m, tok, p, &su, &p->seed, 1, out, err);
    if (rc) goto fail;
    return RLHF_OK;
fail:
    gen_result_free(out);
    return rc;
}

int gen_run_batch(const model *m, const tokenizer *tok, const int32_t *const *prompts, const int *n_prompts, int n_batch,
                  const gen_params *p, const uint64_t *seeds, gen_result *out, rlhf_error *err) {
    if (n_batch < 1) return rlhf_errorf(err, RLHF_ERR_INVALID, "generate: a batch needs at least one prompt");
    memset(out, 0, (size_t)n_batch * sizeof *out);
    int rc = RLHF_OK;
    run_setup *su = calloc((size_t)n_batch, sizeof *su);
    uint64_t *sd = malloc((size_t)n_batch * sizeof *sd);
    if (!su || !sd) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "generate: out of memory");
        goto fail;
    }
    if (p->strategy == GEN_STRATEGY_BEAM) {
        rc = rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "generate: beam search runs one prompt at a time (gen_run)");
        goto fail;
    }
    for (int j = 0; j < n_batch && !rc; j++) {
        if ((rc = run_prepare(m, tok, prompts[j], n_prompts[j], p, &su[j], &out[j], err))) {
            rlhf_error_prefix(err, "prompt %d of the batch: ", j);
            break;
        }
        sd[j] = seeds ? seeds[j] : p->seed;
        if (!(out[j].cands = calloc((size_t)p->n, sizeof *out[j].cands)))
            rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "generate: out of memory");
        else
            out[j].n = p->n;
    }
    if (!rc) rc = run_sampling(m, tok, p, su, sd, n_batch, out, err);
fail:
    if (rc)
        for (int j = 0; j < n_batch; j++) gen_result_free(&out[j]);
    free(su);
    free(sd);
    return rc;
}
