/* kernels.h — the transformer's compute kernels as forward/backward pairs.
 *
 * Each kernel has one job and is a pure function: outputs first, inputs const, no allocation,
 * no I/O, no globals (the one exception: matmul and attention run their sgemms from OpenMP
 * threads and therefore hold OpenBLAS at one thread for the duration of the call, restoring its
 * setting on return). Every kernel has a plain reference implementation (`*_ref`) beside it;
 * tests run both on random input and check every backward against finite differences.
 *
 * Letters (as in model.h): N rows (positions; B*T in training, anything in decoding), C model
 * dim, NH query heads, NKV key/value heads, HS head size, F MLP hidden size, V vocabulary,
 * B sequences, T positions per sequence, P rows of a rotary table (positions it covers).
 * Every forward kernel works on any number of rows N >= 0, so a KV-cache decoder can call them
 * on one new position at a time.
 *
 * Conventions of the backward kernels: gradients of INPUTS (activations) are written (=),
 * unless the comment says "+="; gradients of PARAMETERS (weights, biases, gains, embeddings)
 * are always accumulated (+=), so micro-batches add up. "May alias" is stated where an output
 * may be the same buffer as an input; otherwise buffers must not overlap.
 *
 * Threading: everything runs on the OpenMP team. Element-wise and row-wise kernels use
 * `parallel for` when the work is large enough to pay for it; matmul_* split large products
 * across the team (rows or columns, each part one single-threaded sgemm) and attention runs one
 * (sequence, head) per task. OpenBLAS's own thread pool is never used alongside OpenMP: with
 * both, each pool spins while the other works (a quarter of a step lost on 2 cores). */
#ifndef RLHF_KERNELS_H
#define RLHF_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "src/model/model.h"

/* ---- matmul: y = x W (+ b), every product a cblas_sgemm ---- */

typedef enum {
    KERNEL_W_IN_OUT = 0, /* W stored (IN, OUT), y = x W   (GPT-2 Conv1D) */
    KERNEL_W_OUT_IN = 1, /* W stored (OUT, IN), y = x W^T (Llama / torch Linear) */
} kernel_w_layout;

/* out (N, OUT) = in (N, IN) · W (+ bias (OUT), or no bias if NULL). */
void matmul_forward(float *out, const float *in, const float *w, const float *bias, int N, int IN, int OUT,
                    kernel_w_layout layout);
/* din (N, IN) = dout · W^T (skipped if din is NULL; "=" not "+="); dw (W's shape) += x^T dout
 * (transposed to W's layout); dbias (OUT) += column sums of dout (skipped if NULL). */
void matmul_backward(float *din, float *dw, float *dbias, const float *dout, const float *in, const float *w, int N,
                     int IN, int OUT, kernel_w_layout layout);
/* Row-major C (M, N) = alpha op(A) op(B) + beta C (op transposes when trans_* is 1), on the
 * OpenMP team like matmul_*: for products that are not a plain layer, such as LoRA's low-rank
 * terms written into a column slice of a fused projection's output (ldc > N). */
void kernel_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                  int ldb, float beta, float *C, int ldc);
void matmul_forward_ref(float *out, const float *in, const float *w, const float *bias, int N, int IN, int OUT,
                        kernel_w_layout layout);
void matmul_backward_ref(float *din, float *dw, float *dbias, const float *dout, const float *in, const float *w,
                         int N, int IN, int OUT, kernel_w_layout layout);

/* ---- embedding: token rows plus (GPT-2) learned position rows ---- */

/* out (N, C) = tok_emb[tokens[n]] + pos_emb[pos[n]]. pos_emb (P, C) may be NULL (Llama: no
 * learned positions; pos is then ignored and may be NULL). Tokens must be in range (the caller
 * validates: model_forward refuses bad ids with a message). */
void embedding_forward(float *out, const int32_t *tokens, const int32_t *pos, const float *tok_emb,
                       const float *pos_emb, int N, int C);
/* dtok_emb (V, C) += scatter of dout rows by token; dpos_emb (P, C) += by position (skipped if
 * NULL). */
void embedding_backward(float *dtok_emb, float *dpos_emb, const float *dout, const int32_t *tokens,
                        const int32_t *pos, int N, int C);
void embedding_forward_ref(float *out, const int32_t *tokens, const int32_t *pos, const float *tok_emb,
                           const float *pos_emb, int N, int C);
void embedding_backward_ref(float *dtok_emb, float *dpos_emb, const float *dout, const int32_t *tokens,
                            const int32_t *pos, int N, int C);

/* ---- layernorm (with bias): y = (x - mean) / sqrt(var + eps) * w + b ---- */

/* out (N, C); mean, rstd (N) are saved for backward (either may be NULL when only decoding). */
void layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b,
                       int N, int C, float eps);
/* din (N, C) += (so the residual stream's gradient flows straight through); dw, db (C) +=
 * (dw NULL: neither is computed, for a frozen norm). */
void layernorm_backward(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                        const float *mean, const float *rstd, int N, int C);
void layernorm_forward_ref(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b,
                           int N, int C, float eps);
void layernorm_backward_ref(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                            const float *mean, const float *rstd, int N, int C);

/* ---- rmsnorm: y = x / sqrt(mean(x^2) + eps) * w ---- */

/* out (N, C); rstd (N) saved for backward (may be NULL). */
void rmsnorm_forward(float *out, float *rstd, const float *in, const float *w, int N, int C, float eps);
/* din (N, C) +=; dw (C) += (skipped if NULL). */
void rmsnorm_backward(float *din, float *dw, const float *dout, const float *in, const float *w, const float *rstd,
                      int N, int C);
void rmsnorm_forward_ref(float *out, float *rstd, const float *in, const float *w, int N, int C, float eps);
void rmsnorm_backward_ref(float *din, float *dw, const float *dout, const float *in, const float *w,
                          const float *rstd, int N, int C);

/* ---- rope: rotary position embeddings at explicit positions ---- */

/* cos_tab, sin_tab (P, HS/2): angle(p, i) = p * theta^(-2i/HS), computed in double and
 * rounded once. Build once per (P, HS, theta); decoding builds it for the whole context. */
void rope_table(float *cos_tab, float *sin_tab, int P, int HS, float theta);
/* Rotates n_heads heads of HS values in each of N rows, row n at position pos[n] (< P):
 *   MODEL_ROPE_HALF:        pairs (i, i + HS/2)  (Hugging Face rotate_half)
 *   MODEL_ROPE_INTERLEAVED: pairs (2i, 2i + 1)   (llama2.c / Meta)
 * with pair i turned by angle(pos[n], i). Row n's heads start at in + n*stride (head h at
 * h*HS), so q or k can be rotated in place inside a fused qkv buffer. out may alias in. */
void rope_forward(float *out, const float *in, const int32_t *pos, const float *cos_tab, const float *sin_tab,
                  int N, int n_heads, int HS, int stride, model_rope_layout layout);
/* din = rotation by -angle of dout (the rotation's transpose); same layout; din may alias dout. */
void rope_backward(float *din, const float *dout, const int32_t *pos, const float *cos_tab, const float *sin_tab,
                   int N, int n_heads, int HS, int stride, model_rope_layout layout);
void rope_forward_ref(float *out, const float *in, const int32_t *pos, float theta, int N, int n_heads, int HS,
                      int stride, model_rope_layout layout);
void rope_backward_ref(float *din, const float *dout, const int32_t *pos, float theta, int N, int n_heads, int HS,
                       int stride, model_rope_layout layout);

/* ---- causal multi-head attention with grouped-query heads ---- */

/* Where q, k, v and the output live. Query head h uses key/value head h / (NH / NKV). Row t of
 * sequence b for head h: q + b*q_bstride + t*q_stride + h*HS (k, v, out likewise with their own
 * strides; k and v share kv_stride/kv_bstride). Query row t sits at absolute position
 * Tk - Tq + t and attends to keys 0 .. Tk - Tq + t (causal): training has Tq == Tk == T; a
 * decoder with a KV cache passes the cache as k, v with Tk = cached length and Tq new rows.
 * The gradient buffers of attention_backward use the same strides as their inputs. */
typedef struct {
    int B, Tq, Tk;
    int NH, NKV, HS;
    int q_stride, kv_stride, out_stride;
    size_t q_bstride, kv_bstride, out_bstride;
} attention_dims;

/* out: the attention output (rows as described); att (B, NH, Tq, Tk): softmax probabilities
 * with zeros where masked, kept for backward. Scores are q.k / sqrt(HS). Runs per (b, h) in
 * OpenMP threads with OpenBLAS held at one thread (restored on return); causal blocks of 64
 * query rows skip the masked part of the products. */
void attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                       const attention_dims *d);
/* dq, dk, dv ("=", with q's and k/v's strides; only the head columns are written, so they can
 * be slices of one dqkv buffer) from dout; datt (B, NH, Tq, Tk) is scratch. */
void attention_backward(float *dq, float *dk, float *dv, float *datt, const float *dout, const float *q,
                        const float *k, const float *v, const float *att, const attention_dims *d);
void attention_forward_ref(float *out, float *att, const float *q, const float *k, const float *v,
                           const attention_dims *d);
void attention_backward_ref(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                            const float *v, const float *att, const attention_dims *d);

/* ---- gelu, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) ---- */

/* out (n) may alias in. */
void gelu_forward(float *out, const float *in, size_t n);
/* din (n) = dout * gelu'(in); din may alias dout. */
void gelu_backward(float *din, const float *dout, const float *in, size_t n);
void gelu_forward_ref(float *out, const float *in, size_t n);
void gelu_backward_ref(float *din, const float *dout, const float *in, size_t n);

/* ---- swiglu: out = silu(gate) * up ---- */

/* in (N, 2F): gate in columns [0, F), up in [F, 2F) (the fused gate/up projection's output);
 * out (N, F). */
void swiglu_forward(float *out, const float *in, int N, int F);
/* din (N, 2F) "=" from dout (N, F). */
void swiglu_backward(float *din, const float *dout, const float *in, int N, int F);
void swiglu_forward_ref(float *out, const float *in, int N, int F);
void swiglu_backward_ref(float *din, const float *dout, const float *in, int N, int F);

/* ---- residual: out = a + b ---- */

/* out (n) may alias a or b. */
void residual_forward(float *out, const float *a, const float *b, size_t n);
/* da += dout, db += dout (either may be NULL). */
void residual_backward(float *da, float *db, const float *dout, size_t n);
void residual_forward_ref(float *out, const float *a, const float *b, size_t n);
void residual_backward_ref(float *da, float *db, const float *dout, size_t n);

/* ---- softmax over rows ---- */

/* probs (N, V) = softmax(logits) row by row; may alias logits. */
void softmax_forward(float *probs, const float *logits, int N, int V);
/* One row of softmax_forward, on the calling thread (the same bits; p may alias x): for callers
 * already inside a parallel loop. */
void softmax_row(float *p, const float *x, int V);
/* dlogits (N, V) = p * (dprobs - sum(p * dprobs)); may alias dprobs. */
void softmax_backward(float *dlogits, const float *dprobs, const float *probs, int N, int V);
void softmax_forward_ref(float *probs, const float *logits, int N, int V);
void softmax_backward_ref(float *dlogits, const float *dprobs, const float *probs, int N, int V);

/* ---- softmax + cross-entropy ---- */

/* For each row n with targets[n] >= 0: losses[n] = logsumexp(logits[n]) - logits[n][targets[n]]
 * (nats), lse[n] = logsumexp(logits[n]); rows with targets[n] < 0 get 0 in both.
 * targets must be < V. */
void crossentropy_forward(float *losses, float *lse, const float *logits, const int32_t *targets, int N, int V);
/* dlogits (N, V) = dlosses[n] * (softmax(logits[n]) - onehot(targets[n])); rows with
 * targets[n] < 0 are zeroed. dlogits may alias logits. */
void crossentropy_backward(float *dlogits, const float *logits, const float *lse, const int32_t *targets,
                           const float *dlosses, int N, int V);
void crossentropy_forward_ref(float *losses, float *lse, const float *logits, const int32_t *targets, int N, int V);
void crossentropy_backward_ref(float *dlogits, const float *logits, const float *lse, const int32_t *targets,
                               const float *dlosses, int N, int V);

/* ---- checks ---- */

/* Index of the first non-finite value in x (n), or -1 if all are finite. */
ptrdiff_t kernel_find_nonfinite(const float *x, size_t n);

#endif
