/* kernels.c — forward/backward kernels of the transformer, each beside its reference version.
 *
 * The optimized kernels differ from the references in three ways only: matrix products go
 * through cblas_sgemm, loops are OpenMP-parallel over rows (or column strips, for parameter
 * gradients, so no two threads add into the same float), and exponentials use kernel_expf,
 * a branch-free exp that gcc vectorises (libm's expf stays scalar without -ffast-math).
 * References are plain loops with double accumulators and libm; tests compare the two.
 *
 * Sums over a row (norm statistics, softmax denominators, column sums) accumulate in double.
 * Letters as in kernels.h. */
/* Without this gcc refuses to if-convert the clamps inside kernel_expf (a comparison "may trap"),
 * and every exp loop stays scalar: about 8x slower softmax, GELU and SwiGLU. No code here
 * relies on floating-point exceptions; results are unchanged. Must precede the includes. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include "src/model/kernels.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* Below this many floats of work a loop runs on one thread: forking costs a few microseconds. */
#define KERNEL_OMP_MIN 32768
/* Parameter-gradient reductions run over strips of this many columns, one strip per task, so
 * each thread owns its output floats and accumulates them in double on the stack. */
#define KERNEL_STRIP 64

/* ---- vectorisable exp ---- */

/* exp(x) to about 2 ulp: x = n ln2 + r with |r| <= ln2/2, a degree-6 polynomial for e^r
 * (Cephes expf coefficients), then scaling by 2^n through the exponent bits. Written without
 * branches or libm calls so loops calling it vectorise. Inputs above 88 give exp(88); inputs
 * below -87 give 0 (so exp(-inf) is exactly 0); NaN stays NaN. */
static inline float kernel_expf(float x) {
    float xc = x > 88.0f ? 88.0f : x;
    xc = xc < -87.0f ? -87.0f : xc;
    /* round to nearest through the 1.5 * 2^23 trick (exact for |x log2 e| < 2^22) */
    float n = xc * 1.44269504088896341f + 12582912.0f;
    n -= 12582912.0f;
    float r = xc - n * 0.693359375f;
    r += n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* NaN would make the float->int conversion undefined; its p is NaN anyway */
    float nn = n == n ? n : 0.0f;
    int32_t bits = ((int32_t)nn + 127) * (1 << 23);
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    /* below -87 the true value is under 1.7e-38: flush to 0 so exp(-inf) (a masked logit) is 0 */
    return x < -87.0f ? 0.0f : p * scale;
}

/* Threads OpenMP would use for a loop of `work` floats. */
static inline int kernel_threads(size_t work) {
#ifdef _OPENMP
    return work >= KERNEL_OMP_MIN ? omp_get_max_threads() : 1;
#else
    (void)work;
    return 1;
#endif
}

/* Adds column sums of x (N, C) into out (C), in double, strip by strip (parallel over strips). */
static void column_sums_add(float *out, const float *x, int N, int C) {
    int strips = (C + KERNEL_STRIP - 1) / KERNEL_STRIP;
#pragma omp parallel for schedule(static) num_threads(kernel_threads((size_t)N * C)) if (strips > 1)
    for (int s = 0; s < strips; s++) {
        int c0 = s * KERNEL_STRIP, w = C - c0 < KERNEL_STRIP ? C - c0 : KERNEL_STRIP;
        double acc[KERNEL_STRIP] = {0};
        for (int n = 0; n < N; n++) {
            const float *row = x + (size_t)n * C + c0;
#pragma omp simd
            for (int j = 0; j < w; j++) acc[j] += row[j];
        }
        for (int j = 0; j < w; j++) out[c0 + j] += (float)acc[j];
    }
}

/* ---- matmul ---- */

/* OpenBLAS's pthread pool and OpenMP's team would otherwise take turns on the same cores, each
 * spinning while the other works (measured: a quarter of a training step lost to libgomp spin
 * and sched_yield on 2 cores). So large products are split here across the OpenMP team, each
 * thread running a single-threaded sgemm on its share, with OpenBLAS held at one thread for the
 * duration; only one thread pool ever runs. */
static int blas_threads_enter(int parallel) {
    int saved = openblas_get_num_threads();
    if (parallel && saved > 1) openblas_set_num_threads(1);
    return saved;
}

static void blas_threads_leave(int saved) {
    if (openblas_get_num_threads() != saved) openblas_set_num_threads(saved);
}

/* Below this many multiply-adds a product runs as one sgemm call on the calling thread. */
#define KERNEL_GEMM_SPLIT_MIN (1 << 20)

/* Row-major C (M, N) = alpha op(A) op(B) + beta C, split over the OpenMP threads along the
 * larger of M and N in multiples of 16 (the sgemm kernels' register blocking). */
static void gemm_alpha(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha, const float *A,
                       int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    int nt = 1;
#ifdef _OPENMP
    nt = omp_get_max_threads();
#endif
    if (nt == 1 || (double)M * N * K < KERNEL_GEMM_SPLIT_MIN) {
        cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    const int split_m = M >= N;
    const int dim = split_m ? M : N;
    int chunk = (dim + nt - 1) / nt;
    chunk = (chunk + 15) / 16 * 16;
    const int parts = (dim + chunk - 1) / chunk;
    int saved = blas_threads_enter(1);
#pragma omp parallel for schedule(static, 1) num_threads(parts)
    for (int p = 0; p < parts; p++) {
        const int o = p * chunk, len = dim - o < chunk ? dim - o : chunk;
        if (split_m) {
            const float *a = ta == CblasNoTrans ? A + (size_t)o * lda : A + o;
            cblas_sgemm(CblasRowMajor, ta, tb, len, N, K, alpha, a, lda, B, ldb, beta, C + (size_t)o * ldc, ldc);
        } else {
            const float *b = tb == CblasNoTrans ? B + o : B + (size_t)o * ldb;
            cblas_sgemm(CblasRowMajor, ta, tb, M, len, K, alpha, A, lda, b, ldb, beta, C + o, ldc);
        }
    }
    blas_threads_leave(saved);
}

static void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc) {
    gemm_alpha(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}

void kernel_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                  int ldb, float beta, float *C, int ldc) {
    gemm_alpha(trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B,
               ldb, beta, C, ldc);
}

void matmul_forward(float *out, const float *in, const float *w, const float *bias, int N, int IN, int OUT,
                    kernel_w_layout layout) {
    if (N <= 0) return;
    float beta = 0.0f;
    if (bias) {
        /* OpenBLAS scales C by beta in a separate pass anyway, so starting from the bias and
         * accumulating (beta 1) costs the same as beta 0 and saves a pass afterwards. */
#pragma omp parallel for schedule(static) num_threads(kernel_threads((size_t)N * OUT))
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OUT, bias, (size_t)OUT * sizeof(float));
        beta = 1.0f;
    }
    if (layout == KERNEL_W_IN_OUT)
        gemm(CblasNoTrans, CblasNoTrans, N, OUT, IN, in, IN, w, OUT, beta, out, OUT);
    else
        gemm(CblasNoTrans, CblasTrans, N, OUT, IN, in, IN, w, IN, beta, out, OUT);
}

void matmul_backward(float *din, float *dw, float *dbias, const float *dout, const float *in, const float *w, int N,
                     int IN, int OUT, kernel_w_layout layout) {
    if (N <= 0) return;
    if (layout == KERNEL_W_IN_OUT) {
        if (din) gemm(CblasNoTrans, CblasTrans, N, IN, OUT, dout, OUT, w, OUT, 0.0f, din, IN);
        if (dw) gemm(CblasTrans, CblasNoTrans, IN, OUT, N, in, IN, dout, OUT, 1.0f, dw, OUT);
    } else {
        if (din) gemm(CblasNoTrans, CblasNoTrans, N, IN, OUT, dout, OUT, w, IN, 0.0f, din, IN);
        if (dw) gemm(CblasTrans, CblasNoTrans, OUT, IN, N, dout, OUT, in, IN, 1.0f, dw, IN);
    }
    if (dbias) column_sums_add(dbias, dout, N, OUT);
}

void matmul_forward_ref(float *out, const float *in, const float *w, const float *bias, int N, int IN, int OUT,
                        kernel_w_layout layout) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OUT; o++) {
            double s = bias ? bias[o] : 0.0;
            for (int i = 0; i < IN; i++) {
                float wv = layout == KERNEL_W_IN_OUT ? w[(size_t)i * OUT + o] : w[(size_t)o * IN + i];
                s += (double)in[(size_t)n * IN + i] * wv;
            }
            out[(size_t)n * OUT + o] = (float)s;
        }
}

void matmul_backward_ref(float *din, float *dw, float *dbias, const float *dout, const float *in, const float *w,
                         int N, int IN, int OUT, kernel_w_layout layout) {
    for (int n = 0; n < N && din; n++)
        for (int i = 0; i < IN; i++) {
            double s = 0;
            for (int o = 0; o < OUT; o++) {
                float wv = layout == KERNEL_W_IN_OUT ? w[(size_t)i * OUT + o] : w[(size_t)o * IN + i];
                s += (double)dout[(size_t)n * OUT + o] * wv;
            }
            din[(size_t)n * IN + i] = (float)s;
        }
    for (int i = 0; i < IN && dw; i++)
        for (int o = 0; o < OUT; o++) {
            double s = 0;
            for (int n = 0; n < N; n++) s += (double)in[(size_t)n * IN + i] * dout[(size_t)n * OUT + o];
            size_t idx = layout == KERNEL_W_IN_OUT ? (size_t)i * OUT + o : (size_t)o * IN + i;
            dw[idx] += (float)s;
        }
    for (int o = 0; o < OUT && dbias; o++) {
        double s = 0;
        for (int n = 0; n < N; n++) s += dout[(size_t)n * OUT + o];
        dbias[o] += (float)s;
    }
}

/* ---- embedding ---- */

void embedding_forward(float *out, const int32_t *tokens, const int32_t *pos, const float *tok_emb,
                       const float *pos_emb, int N, int C) {
#pragma omp parallel for schedule(static) num_threads(kernel_threads((size_t)N * C))
    for (int n = 0; n < N; n++) {
        float *o = out + (size_t)n * C;
        const float *t = tok_emb + (size_t)tokens[n] * C;
        if (pos_emb) {
            const float *p = pos_emb + (size_t)pos[n] * C;
#pragma omp simd
            for (int c = 0; c < C; c++) o[c] = t[c] + p[c];
        } else {
            memcpy(o, t, (size_t)C * sizeof(float));
        }
    }
}

/* Rows of dtable are chosen by idx, so two rows n may hit the same table row: threads split the
 * COLUMNS instead, each adding its strip of every row. */
static void scatter_rows_add(float *dtable, const float *dout, const int32_t *idx, int N, int C) {
    int strips = (C + KERNEL_STRIP - 1) / KERNEL_STRIP;
#pragma omp parallel for schedule(static) num_threads(kernel_threads((size_t)N * C)) if (strips > 1)
    for (int s = 0; s < strips; s++) {
        int c0 = s * KERNEL_STRIP, w = C - c0 < KERNEL_STRIP ? C - c0 : KERNEL_STRIP;
        for (int n = 0; n < N; n++) {
            float *d = dtable + (size_t)idx[n] * C + c0;
            const float *g = dout + (size_t)n * C + c0;
#pragma omp simd
            for (int j = 0; j < w; j++) d[j] += g[j];
        }
    }
}

void embedding_backward(float *dtok_emb, float *dpos_emb, const float *dout, const int32_t *tokens,
                        const int32_t *pos, int N, int C) {
    if (dtok_emb) scatter_rows_add(dtok_emb, dout, tokens, N, C);
    if (dpos_emb) scatter_rows_add(dpos_emb, dout, pos, N, C);
}

void embedding_forward_ref(float *out, const int32_t *tokens, const int32_t *pos, const float *tok_emb,
                           const float *pos_emb, int N, int C) {
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            out[(size_t)n * C + c] =
                tok_emb[(size_t)tokens[n] * C + c] + (pos_emb ? pos_emb[(size_t)pos[n] * C + c] : 0.0f);
}

void embedding_backward_ref(float *dtok_emb, float *dpos_emb, const float *dout, const int32_t *tokens,
                            const int32_t *pos, int N, int C) {
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            if (dtok_emb) dtok_emb[(size_t)tokens[n] * C + c] += dout[(size_t)n * C + c];
            if (dpos_emb) dpos_emb[(size_t)pos[n] * C + c] += dout[(size_t)n * C + c];
        }
}

/* ---- layernorm ---- */

void layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b,
                       int N, int C, float eps) {
#pragma omp parallel for schedule(static) num_threads(kernel_threads((size_t)N * C))
    for (int n = 0; n < N; n++) {
        const float *x = in + (size_t)n * C;
        float *o = out + (size_t)n * C;
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (int c = 0; c < C; c++) s += x[c];
        float m = (float)(s / C);
        double v = 0;
#pragma omp simd reduction(+ : v)
        for (int c = 0; c < C; c++) {
            float d = x[c] - m;
            v += (double)(d * d);
        }
        float r = (float)(1.0 / sqrt(v / C + eps));
#pragma omp simd
        for (int c = 0; c < C; c++) o[c] = (x[c] - m) * r * w[c] + b[c];
        if (mean) mean[n] = m;
        if (rstd) rstd[n] = r;
    }
}

void layernorm_backward(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                        const float *mean, const float *rstd, int N, int C) {
    int nt = kernel_threads((size_t)N * C);
#pragma omp parallel num_threads(nt)
    {
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *x = in + (size_t)n * C, *g = dout + (size_t)n * C;
            float *d = din + (size_t)n * C;
            const float m = mean[n], r = rstd[n];
            double sd = 0, sdx = 0;
#pragma omp simd reduction(+ : sd, sdx)
            for (int c = 0; c < C; c++) {
                float dn = g[c] * w[c];
                sd += dn;
                sdx += (double)(dn * ((x[c] - m) * r));
            }
            const float md = (float)(sd / C), mdx = (float)(sdx / C);
#pragma omp simd
            for (int c = 0; c < C; c++) {
                float xh = (x[c] - m) * r;
                d[c] += (g[c] * w[c] - md - xh * mdx) * r;
            }
        }
        /* dw NULL: a frozen norm (LoRA training) needs only din */
        int strips = dw ? (C + KERNEL_STRIP - 1) / KERNEL_STRIP : 0;
#pragma omp for schedule(static)
        for (int s = 0; s < strips; s++) {
            int c0 = s * KERNEL_STRIP, wd = C - c0 < KERNEL_STRIP ? C - c0 : KERNEL_STRIP;
            double aw[KERNEL_STRIP] = {0}, ab[KERNEL_STRIP] = {0};
            for (int n = 0; n < N; n++) {
                const float *x = in + (size_t)n * C + c0, *g = dout + (size_t)n * C + c0;
                const float m = mean[n], r = rstd[n];
#pragma omp simd
                for (int j = 0; j < wd; j++) {
                    aw[j] += (double)(g[j] * ((x[j] - m) * r));
                    ab[j] += g[j];
                }
            }
            for (int j = 0; j < wd; j++) {
                dw[c0 + j] += (float)aw[j];
                if (db) db[c0 + j] += (float)ab[j];
            }
        }
    }
}

void layernorm_forward_ref(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b,
                           int N, int C, float eps) {
    for (int n = 0; n < N; n++) {
        const float *x = in + (size_t)n * C;
        double s = 0, v = 0;
        for (int c = 0; c < C; c++) s += x[c];
        double m = s / C;
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        double r = 1.0 / sqrt(v / C + eps);
        for (int c = 0; c < C; c++) out[(size_t)n * C + c] = (float)((x[c] - m) * r * w[c] + b[c]);
        if (mean) mean[n] = (float)m;
        if (rstd) rstd[n] = (float)r;
    }
}

void layernorm_backward_ref(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                            const float *mean, const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = in + (size_t)n * C, *g = dout + (size_t)n * C;
        double sd = 0, sdx = 0;
        for (int c = 0; c < C; c++) {
            double xh = (x[c] - (double)mean[n]) * rstd[n];
            sd += (double)g[c] * w[c];
            sdx += (double)g[c] * w[c] * xh;
            dw[c] += (float)(g[c] * xh);
            if (db) db[c] += g[c];
        }
        for (int c = 0; c < C; c++) {
            double xh = (x[c] - (double)mean[n]) * rstd[n];
            din[(size_t)n * C + c] += (float)(((double)g[c] * w[c] - sd / C - xh * sdx / C) * rstd[n]);
        }
    }
}

/* ---- rmsnorm ---- */

void rmsnorm_forward(float *out, float *rstd, const float *in, const float *w, int N, int C, float eps) {
#pragma omp parallel for schedule(static) num_threads(kernel_threads((size_t)N * C))
    for (int n = 0; n < N; n++) {
        const float *x = in + (size_t)n * C;
        float *o = out + (size_t)n * C;
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (int c = 0; c < C; c++) s += (double)(x[c] * x[c]);
        float r = (float)(1.0 / sqrt(s / C + eps));
#pragma omp simd
        for (int c = 0; c < C; c++) o[c] = x[c] * r * w[c];
        if (rstd) rstd[n] = r;
    }
}

void rmsnorm_backward(float *din, float *dw, const float *dout, const float *in, const float *w, const float *rstd,
                      int N, int C) {
    int nt = kernel_threads((size_t)N * C);
#pragma omp parallel num_threads(nt)
    {
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *x = in + (size_t)n * C, *g = dout + (size_t)n * C;
            float *d = din + (size_t)n * C;
            const float r = rstd[n];
            double sdx = 0;
#pragma omp simd reduction(+ : sdx)
            for (int c = 0; c < C; c++) sdx += (double)(g[c] * w[c] * (x[c] * r));
            const float mdx = (float)(sdx / C);
#pragma omp simd
            for (int c = 0; c < C; c++) d[c] += (g[c] * w[c] - x[c] * r * mdx) * r;
        }
        int strips = dw ? (C + KERNEL_STRIP - 1) / KERNEL_STRIP : 0;
#pragma omp for schedule(static)
        for (int s = 0; s < strips; s++) {
            int c0 = s * KERNEL_STRIP, wd = C - c0 < KERNEL_STRIP ? C - c0 : KERNEL_STRIP;
            double aw[KERNEL_STRIP] = {0};
            for (int n = 0; n < N; n++) {
                const float *x = in + (size_t)n * C + c0, *g = dout + (size_t)n * C + c0;
                const float r = rstd[n];
#pragma omp simd
                for (int j = 0; j < wd; j++) aw[j] += (double)(g[j] * (x[j] * r));
            }
            for (int j = 0; j < wd; j++) dw[c0 + j] += (float)aw[j];
        }
    }
}

void rmsnorm_forward_ref(float *out, float *rstd, const float *in, const float *w, int N, int C, float eps) {
    for (int n = 0; n < N; n++) {
        const float *x = in + (size_t)n * C;
        double s = 0;
        for (int c = 0; c < C; c++) s += (double)x[c] * x[c];
        double r = 1.0 / sqrt(s / C + eps);
        for (int c = 0; c < C; c++) out[(size_t)n * C + c] = (float)(x[c] * r * w[c]);
        if (rstd) rstd[n] = (float)r;
    }
}

void rmsnorm_backward_ref(float *din, float *dw, const float *dout, const float *in, const float *w,
                          const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = in + (size_t)n * C, *g = dout + (size_t)n * C;
        double r = rstd[n], sdx = 0;
        for (int c = 0; c < C; c++) {
            sdx += (double)g[c] * w[c] * x[c] * r;
            dw[c] += (float)(g[c] * x[c] * r);
        }
        for (int c = 0; c < C; c++)
            din[(size_t)n * C + c] += (float)(((double)g[c] * w[c] - x[c] * r * sdx / C) * r);
    }
}

/* ---- rope ---- */

void rope_table(float *cos_tab, float *sin_tab, int P, int HS, float theta) {
    const int H2 = HS / 2;
    for (int p = 0; p < P; p++)
        for (int i = 0; i < H2; i++) {
            double freq = pow((double)theta, -2.0 * i / HS);
            double a = (double)p * freq;
            cos_tab[(size_t)p * H2 + i] = (float)cos(a);
            sin_tab[(size_t)p * H2 + i] = (float)sin(a);
        }
}

/* sign +1 rotates forward, -1 backward (the transpose). */
static void rope_rotate(float *out, const float *in, const int32_t *pos, const float *cos_tab, const float *sin_tab,
                        int N, int n_heads, int HS, int stride, model_rope_layout layout, float sign) {
    const int H2 = HS / 2;
#pragma omp parallel for schedule(static) num_threads(kernel_threads((size_t)N * n_heads * HS))
    for (int n = 0; n < N; n++) {
        const float *cs = cos_tab + (size_t)pos[n] * H2, *sn = sin_tab + (size_t)pos[n] * H2;
        for (int h = 0; h < n_heads; h++) {
            const float *x = in + (size_t)n * stride + (size_t)h * HS;
            float *o = out + (size_t)n * stride + (size_t)h * HS;
            if (layout == MODEL_ROPE_HALF) {
#pragma omp simd
                for (int i = 0; i < H2; i++) {
                    float a = x[i], b = x[i + H2], c = cs[i], s = sign * sn[i];
                    o[i] = a * c - b * s;
                    o[i + H2] = b * c + a * s;
                }
            } else {
                for (int i = 0; i < H2; i++) {
                    float a = x[2 * i], b = x[2 * i + 1], c = cs[i], s = sign * sn[i];
                    o[2 * i] = a * c - b * s;
                    o[2 * i + 1] = b * c + a * s;
                }
            }
        }
    }
}

void rope_forward(float *out, const float *in, const int32_t *pos, const float *cos_tab, const float *sin_tab,
                  int N, int n_heads, int HS, int stride, model_rope_layout layout) {
    rope_rotate(out, in, pos, cos_tab, sin_tab, N, n_heads, HS, stride, layout, 1.0f);
}

void rope_backward(float *din, const float *dout, const int32_t *pos, const float *cos_tab, const float *sin_tab,
                   int N, int n_heads, int HS, int stride, model_rope_layout layout) {
    rope_rotate(din, dout, pos, cos_tab, sin_tab, N, n_heads, HS, stride, layout, -1.0f);
}

static void rope_rotate_ref(float *out, const float *in, const int32_t *pos, float theta, int N, int n_heads,
                            int HS, int stride, model_rope_layout layout, double sign) {
    const int H2 = HS / 2;
    for (int n = 0; n < N; n++)
        for (int h = 0; h < n_heads; h++)
            for (int i = 0; i < H2; i++) {
                double a = (double)pos[n] * pow((double)theta, -2.0 * i / HS);
                double c = cos(a), s = sign * sin(a);
                size_t base = (size_t)n * stride + (size_t)h * HS;
                size_t i0 = layout == MODEL_ROPE_HALF ? base + i : base + 2 * i;
                size_t i1 = layout == MODEL_ROPE_HALF ? base + i + H2 : base + 2 * i + 1;
                double x0 = in[i0], x1 = in[i1];
                out[i0] = (float)(x0 * c - x1 * s);
                out[i1] = (float)(x1 * c + x0 * s);
            }
}

void rope_forward_ref(float *out, const float *in, const int32_t *pos, float theta, int N, int n_heads, int HS,
                      int stride, model_rope_layout layout) {
    rope_rotate_ref(out, in, pos, theta, N, n_heads, HS, stride, layout, 1.0);
}

void rope_backward_ref(float *din, const float *dout, const int32_t *pos, float theta, int N, int n_heads, int HS,
                       int stride, model_rope_layout layout) {
    rope_rotate_ref(din, dout, pos, theta, N, n_heads, HS, stride, layout, -1.0);
}

/* ---- attention ---- */

/* Query rows per block of the causal products: block [t0, t0 + 64) only needs keys up to its
 * last row, so about half of the square is never computed for Tq == Tk. 64 balanced sgemm
 * efficiency against the skipped work best at the benchmark shapes (T 64 and 256). */
#define ATTENTION_QBLOCK 64

void attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                       const attention_dims *d) {
    const int B = d->B, Tq = d->Tq, Tk = d->Tk, NH = d->NH, HS = d->HS, rep = d->NH / d->NKV;
    assert(Tq <= Tk && d->NH % d->NKV == 0);
    if (B <= 0 || Tq <= 0) return;
    const float scale = 1.0f / sqrtf((float)HS);
    const int items = B * NH;
    int saved = blas_threads_enter(items > 1);
#pragma omp parallel for schedule(dynamic, 1) if (items > 1 && (size_t)Tq * Tk * HS >= 4096)
    for (int it = 0; it < items; it++) {
        const int b = it / NH, h = it % NH, g = h / rep;
        const float *qh = q + b * d->q_bstride + (size_t)h * HS;
        const float *kh = k + b * d->kv_bstride + (size_t)g * HS;
        const float *vh = v + b * d->kv_bstride + (size_t)g * HS;
        float *oh = out + b * d->out_bstride + (size_t)h * HS;
        float *S = att + (size_t)it * Tq * Tk;
        /* Causal: query row t sees keys [0, Tk - Tq + t]. Only the first `kmax` columns of the
         * scores are ever needed, and for Tq == Tk the upper triangle is skipped in blocks of
         * query rows so the products do about half the work of a full square. */
        const int QB = ATTENTION_QBLOCK;
        for (int t0 = 0; t0 < Tq; t0 += QB) {
            int tq = Tq - t0 < QB ? Tq - t0 : QB;
            int kmax = Tk - Tq + t0 + tq; /* keys seen by the last row of this block */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tq, kmax, HS, scale, qh + (size_t)t0 * d->q_stride,
                        d->q_stride, kh, d->kv_stride, 0.0f, S + (size_t)t0 * Tk, Tk);
            for (int t = t0; t < t0 + tq; t++) {
                float *row = S + (size_t)t * Tk;
                const int L = Tk - Tq + t + 1;
                softmax_row(row, row, L);
                for (int j = L; j < Tk; j++) row[j] = 0.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tq, HS, kmax, 1.0f, S + (size_t)t0 * Tk, Tk, vh,
                        d->kv_stride, 0.0f, oh + (size_t)t0 * d->out_stride, d->out_stride);
        }
    }
    blas_threads_leave(saved);
}

void attention_backward(float *dq, float *dk, float *dv, float *datt, const float *dout, const float *q,
                        const float *k, const float *v, const float *att, const attention_dims *d) {
    const int B = d->B, Tq = d->Tq, Tk = d->Tk, NH = d->NH, NKV = d->NKV, HS = d->HS, rep = NH / NKV;
    assert(Tq <= Tk && NH % NKV == 0);
    if (B <= 0 || Tq <= 0) return;
    const float scale = 1.0f / sqrtf((float)HS);
    /* Heads sharing a key/value head add into the same dk, dv rows: one task per (b, kv head)
     * keeps those additions in one thread. */
    const int items = B * NKV;
    int saved = blas_threads_enter(items > 1);
#pragma omp parallel for schedule(dynamic, 1) if (items > 1 && (size_t)Tq * Tk * HS * rep >= 4096)
    for (int it = 0; it < items; it++) {
        const int b = it / NKV, g = it % NKV;
        const float *kh = k + b * d->kv_bstride + (size_t)g * HS;
        const float *vh = v + b * d->kv_bstride + (size_t)g * HS;
        float *dkh = dk + b * d->kv_bstride + (size_t)g * HS;
        float *dvh = dv + b * d->kv_bstride + (size_t)g * HS;
        /* dk, dv are sums over query blocks and grouped heads: start from zero */
        for (int j = 0; j < Tk; j++) {
            memset(dkh + (size_t)j * d->kv_stride, 0, (size_t)HS * sizeof(float));
            memset(dvh + (size_t)j * d->kv_stride, 0, (size_t)HS * sizeof(float));
        }
        for (int r = 0; r < rep; r++) {
            const int h = g * rep + r;
            const float *qh = q + b * d->q_bstride + (size_t)h * HS;
            const float *doh = dout + b * d->out_bstride + (size_t)h * HS;
            float *dqh = dq + b * d->q_bstride + (size_t)h * HS;
            const float *P = att + ((size_t)b * NH + h) * Tq * Tk;
            float *dS = datt + ((size_t)b * NH + h) * Tq * Tk;
            /* the same causal blocks as the forward: block rows see keys [0, kmax) */
            for (int t0 = 0; t0 < Tq; t0 += ATTENTION_QBLOCK) {
                const int tq = Tq - t0 < ATTENTION_QBLOCK ? Tq - t0 : ATTENTION_QBLOCK;
                const int kmax = Tk - Tq + t0 + tq;
                const float *Pb = P + (size_t)t0 * Tk, *dOb = doh + (size_t)t0 * d->out_stride;
                const float *Qb = qh + (size_t)t0 * d->q_stride;
                float *dSb = dS + (size_t)t0 * Tk;
                /* dP = dO V^T */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tq, kmax, HS, 1.0f, dOb, d->out_stride, vh,
                            d->kv_stride, 0.0f, dSb, Tk);
                /* dS = P (dP - rowsum(P dP)) * scale; beyond the causal limit P is 0, so is dS */
                for (int t = 0; t < tq; t++) {
                    const float *p = Pb + (size_t)t * Tk;
                    float *ds = dSb + (size_t)t * Tk;
                    const int L = Tk - Tq + t0 + t + 1;
                    double dot = 0;
#pragma omp simd reduction(+ : dot)
                    for (int j = 0; j < L; j++) dot += (double)(p[j] * ds[j]);
                    const float fd = (float)dot;
#pragma omp simd
                    for (int j = 0; j < L; j++) ds[j] = p[j] * (ds[j] - fd) * scale;
                    for (int j = L; j < kmax; j++) ds[j] = 0.0f;
                }
                /* dQ = dS K;  dK += dS^T Q;  dV += P^T dO */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tq, HS, kmax, 1.0f, dSb, Tk, kh, d->kv_stride,
                            0.0f, dqh + (size_t)t0 * d->q_stride, d->q_stride);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kmax, HS, tq, 1.0f, dSb, Tk, Qb, d->q_stride, 1.0f,
                            dkh, d->kv_stride);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kmax, HS, tq, 1.0f, Pb, Tk, dOb, d->out_stride,
                            1.0f, dvh, d->kv_stride);
            }
        }
    }
    blas_threads_leave(saved);
}

void attention_forward_ref(float *out, float *att, const float *q, const float *k, const float *v,
                           const attention_dims *d) {
    const int rep = d->NH / d->NKV, HS = d->HS;
    const double scale = 1.0 / sqrt((double)HS);
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->NH; h++) {
            const int g = h / rep;
            float *P = att + ((size_t)b * d->NH + h) * d->Tq * d->Tk;
            for (int t = 0; t < d->Tq; t++) {
                const float *qr = q + b * d->q_bstride + (size_t)t * d->q_stride + (size_t)h * HS;
                const int L = d->Tk - d->Tq + t + 1;
                double mx = -INFINITY, sum = 0;
                double s[d->Tk > 0 ? d->Tk : 1];
                for (int j = 0; j < L; j++) {
                    const float *kr = k + b * d->kv_bstride + (size_t)j * d->kv_stride + (size_t)g * HS;
                    double dot = 0;
                    for (int i = 0; i < HS; i++) dot += (double)qr[i] * kr[i];
                    s[j] = dot * scale;
                    if (s[j] > mx) mx = s[j];
                }
                for (int j = 0; j < L; j++) sum += s[j] = exp(s[j] - mx);
                for (int j = 0; j < d->Tk; j++) P[(size_t)t * d->Tk + j] = j < L ? (float)(s[j] / sum) : 0.0f;
                float *o = out + b * d->out_bstride + (size_t)t * d->out_stride + (size_t)h * HS;
                for (int i = 0; i < HS; i++) {
                    double acc = 0;
                    for (int j = 0; j < L; j++)
                        acc += s[j] / sum * v[b * d->kv_bstride + (size_t)j * d->kv_stride + (size_t)g * HS + i];
                    o[i] = (float)acc;
                }
            }
        }
}

void attention_backward_ref(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                            const float *v, const float *att, const attention_dims *d) {
    const int rep = d->NH / d->NKV, HS = d->HS, Tq = d->Tq, Tk = d->Tk;
    const double scale = 1.0 / sqrt((double)HS);
    for (int b = 0; b < d->B; b++) {
        for (int j = 0; j < Tk; j++)
            for (int g = 0; g < d->NKV; g++)
                for (int i = 0; i < HS; i++) {
                    size_t o = b * d->kv_bstride + (size_t)j * d->kv_stride + (size_t)g * HS + i;
                    dk[o] = 0.0f;
                    dv[o] = 0.0f;
                }
        for (int h = 0; h < d->NH; h++) {
            const int g = h / rep;
            const float *P = att + ((size_t)b * d->NH + h) * Tq * Tk;
            for (int t = 0; t < Tq; t++) {
                const float *dor = dout + b * d->out_bstride + (size_t)t * d->out_stride + (size_t)h * HS;
                const float *qr = q + b * d->q_bstride + (size_t)t * d->q_stride + (size_t)h * HS;
                float *dqr = dq + b * d->q_bstride + (size_t)t * d->q_stride + (size_t)h * HS;
                const int L = Tk - Tq + t + 1;
                double dp[Tk > 0 ? Tk : 1], dot = 0;
                for (int j = 0; j < L; j++) {
                    const float *vr = v + b * d->kv_bstride + (size_t)j * d->kv_stride + (size_t)g * HS;
                    float *dvr = dv + b * d->kv_bstride + (size_t)j * d->kv_stride + (size_t)g * HS;
                    double s = 0;
                    for (int i = 0; i < HS; i++) {
                        s += (double)dor[i] * vr[i];
                        dvr[i] += (float)((double)P[(size_t)t * Tk + j] * dor[i]);
                    }
                    dp[j] = s;
                    dot += s * P[(size_t)t * Tk + j];
                }
                double acc[HS];
                for (int i = 0; i < HS; i++) acc[i] = 0;
                for (int j = 0; j < L; j++) {
                    double ds = P[(size_t)t * Tk + j] * (dp[j] - dot) * scale;
                    const float *kr = k + b * d->kv_bstride + (size_t)j * d->kv_stride + (size_t)g * HS;
                    float *dkr = dk + b * d->kv_bstride + (size_t)j * d->kv_stride + (size_t)g * HS;
                    for (int i = 0; i < HS; i++) {
                        acc[i] += ds * kr[i];
                        dkr[i] += (float)(ds * qr[i]);
                    }
                }
                for (int i = 0; i < HS; i++) dqr[i] = (float)acc[i];
            }
        }
    }
}

/* ---- gelu (tanh form) ----
 * 0.5 x (1 + tanh(u)) == x * sigmoid(2u) exactly, u = sqrt(2/pi) (x + 0.044715 x^3); the
 * sigmoid form needs one exp and has no cancellation near u = 0. */

#define GELU_K0 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_K1 0.044715f

void gelu_forward(float *out, const float *in, size_t n) {
#pragma omp parallel for simd schedule(static) num_threads(kernel_threads(n))
    for (size_t i = 0; i < n; i++) {
        float x = in[i];
        float u = GELU_K0 * (x + GELU_K1 * x * x * x);
        out[i] = x / (1.0f + kernel_expf(-2.0f * u));
    }
}

void gelu_backward(float *din, const float *dout, const float *in, size_t n) {
#pragma omp parallel for simd schedule(static) num_threads(kernel_threads(n))
    for (size_t i = 0; i < n; i++) {
        float x = in[i];
        float u = GELU_K0 * (x + GELU_K1 * x * x * x);
        float s = 1.0f / (1.0f + kernel_expf(-2.0f * u));
        float du = GELU_K0 * (1.0f + 3.0f * GELU_K1 * x * x);
        din[i] = dout[i] * (s + x * s * (1.0f - s) * 2.0f * du);
    }
}

void gelu_forward_ref(float *out, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double x = in[i];
        out[i] = (float)(0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))));
    }
}

void gelu_backward_ref(float *din, const float *dout, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double x = in[i];
        double th = tanh(0.7978845608028654 * (x + 0.044715 * x * x * x));
        double d = 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x * x);
        din[i] = (float)(dout[i] * d);
    }
}

/* ---- swiglu ---- */

void swiglu_forward(float *out, const float *in, int N, int F) {
#pragma omp parallel for schedule(static) num_threads(kernel_threads((size_t)N * F))
    for (int n = 0; n < N; n++) {
        const float *g = in + (size_t)n * 2 * F, *u = g + F;
        float *o = out + (size_t)n * F;
#pragma omp simd
        for (int i = 0; i < F; i++) o[i] = g[i] / (1.0f + kernel_expf(-g[i])) * u[i];
    }
}

void swiglu_backward(float *din, const float *dout, const float *in, int N, int F) {
#pragma omp parallel for schedule(static) num_threads(kernel_threads((size_t)N * F))
    for (int n = 0; n < N; n++) {
        const float *g = in + (size_t)n * 2 * F, *u = g + F, *d = dout + (size_t)n * F;
        float *dg = din + (size_t)n * 2 * F, *du = dg + F;
#pragma omp simd
        for (int i = 0; i < F; i++) {
            float s = 1.0f / (1.0f + kernel_expf(-g[i]));
            float gs = g[i] * s;
            dg[i] = d[i] * u[i] * (s + gs * (1.0f - s));
            du[i] = d[i] * gs;
        }
    }
}

void swiglu_forward_ref(float *out, const float *in, int N, int F) {
    for (int n = 0; n < N; n++)
        for (int i = 0; i < F; i++) {
            double g = in[(size_t)n * 2 * F + i], u = in[(size_t)n * 2 * F + F + i];
            out[(size_t)n * F + i] = (float)(g / (1.0 + exp(-g)) * u);
        }
}

void swiglu_backward_ref(float *din, const float *dout, const float *in, int N, int F) {
    for (int n = 0; n < N; n++)
        for (int i = 0; i < F; i++) {
            double g = in[(size_t)n * 2 * F + i], u = in[(size_t)n * 2 * F + F + i], d = dout[(size_t)n * F + i];
            double s = 1.0 / (1.0 + exp(-g));
            din[(size_t)n * 2 * F + i] = (float)(d * u * (s + g * s * (1.0 - s)));
            din[(size_t)n * 2 * F + F + i] = (float)(d * g * s);
        }
}

/* ---- residual ---- */

void residual_forward(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for simd schedule(static) num_threads(kernel_threads(n))
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void residual_backward(float *da, float *db, const float *dout, size_t n) {
#pragma omp parallel for simd schedule(static) num_threads(kernel_threads(n))
    for (size_t i = 0; i < n; i++) {
        if (da) da[i] += dout[i];
        if (db) db[i] += dout[i];
    }
}

void residual_forward_ref(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void residual_backward_ref(float *da, float *db, const float *dout, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (da) da[i] += dout[i];
        if (db) db[i] += dout[i];
    }
}

/* ---- softmax ---- */

static inline float row_max(const float *x, int V) {
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < V; j++) mx = x[j] > mx ? x[j] : mx;
    return mx;
}

void softmax_row(float *p, const float *x, int V) {
    const float mx = row_max(x, V);
    double sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < V; j++) {
        float e = kernel_expf(x[j] - mx);
        p[j] = e;
        sum += e;
    }
    const float inv = (float)(1.0 / sum);
#pragma omp simd
    for (int j = 0; j < V; j++) p[j] *= inv;
}

void softmax_forward(float *probs, const float *logits, int N, int V) {
#pragma omp parallel for schedule(static) num_threads(kernel_threads((size_t)N * V))
    for (int n = 0; n < N; n++) softmax_row(probs + (size_t)n * V, logits + (size_t)n * V, V);
}

void softmax_backward(float *dlogits, const float *dprobs, const float *probs, int N, int V) {
#pragma omp parallel for schedule(static) num_threads(kernel_threads((size_t)N * V))
    for (int n = 0; n < N; n++) {
        const float *dp = dprobs + (size_t)n * V, *p = probs + (size_t)n * V;
        float *dl = dlogits + (size_t)n * V;
        double dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int j = 0; j < V; j++) dot += (double)(p[j] * dp[j]);
        const float fd = (float)dot;
#pragma omp simd
        for (int j = 0; j < V; j++) dl[j] = p[j] * (dp[j] - fd);
    }
}

void softmax_forward_ref(float *probs, const float *logits, int N, int V) {
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < V; j++) mx = x[j] > mx ? x[j] : mx;
        for (int j = 0; j < V; j++) sum += exp(x[j] - mx);
        for (int j = 0; j < V; j++) probs[(size_t)n * V + j] = (float)(exp(x[j] - mx) / sum);
    }
}

void softmax_backward_ref(float *dlogits, const float *dprobs, const float *probs, int N, int V) {
    for (int n = 0; n < N; n++) {
        double dot = 0;
        for (int j = 0; j < V; j++) dot += (double)probs[(size_t)n * V + j] * dprobs[(size_t)n * V + j];
        for (int j = 0; j < V; j++)
            dlogits[(size_t)n * V + j] = (float)(probs[(size_t)n * V + j] * (dprobs[(size_t)n * V + j] - dot));
    }
}

/* ---- softmax + cross-entropy ---- */

void crossentropy_forward(float *losses, float *lse, const float *logits, const int32_t *targets, int N, int V) {
#pragma omp parallel for schedule(static) num_threads(kernel_threads((size_t)N * V))
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) {
            losses[n] = 0.0f;
            lse[n] = 0.0f;
            continue;
        }
        const float *x = logits + (size_t)n * V;
        const float mx = row_max(x, V);
        double sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < V; j++) sum += kernel_expf(x[j] - mx);
        const double l = mx + log(sum);
        lse[n] = (float)l;
        losses[n] = (float)(l - x[targets[n]]);
    }
}

void crossentropy_backward(float *dlogits, const float *logits, const float *lse, const int32_t *targets,
                           const float *dlosses, int N, int V) {
#pragma omp parallel for schedule(static) num_threads(kernel_threads((size_t)N * V))
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        float *d = dlogits + (size_t)n * V;
        const int32_t y = targets[n];
        if (y < 0) {
            memset(d, 0, (size_t)V * sizeof(float));
            continue;
        }
        const float dl = dlosses[n], l = lse[n];
#pragma omp simd
        for (int j = 0; j < V; j++) d[j] = dl * kernel_expf(x[j] - l);
        d[y] -= dl;
    }
}

void crossentropy_forward_ref(float *losses, float *lse, const float *logits, const int32_t *targets, int N,
                              int V) {
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) {
            losses[n] = lse[n] = 0.0f;
            continue;
        }
        const float *x = logits + (size_t)n * V;
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < V; j++) mx = x[j] > mx ? x[j] : mx;
        for (int j = 0; j < V; j++) sum += exp(x[j] - mx);
        lse[n] = (float)(mx + log(sum));
        losses[n] = (float)(mx + log(sum) - x[targets[n]]);
    }
}

void crossentropy_backward_ref(float *dlogits, const float *logits, const float *lse, const int32_t *targets,
                               const float *dlosses, int N, int V) {
    for (int n = 0; n < N; n++)
        for (int j = 0; j < V; j++) {
            size_t i = (size_t)n * V + j;
            if (targets[n] < 0) {
                dlogits[i] = 0.0f;
                continue;
            }
            double p = exp((double)logits[i] - lse[n]);
            dlogits[i] = (float)(dlosses[n] * (p - (j == targets[n] ? 1.0 : 0.0)));
        }
}

/* ---- checks ---- */

ptrdiff_t kernel_find_nonfinite(const float *x, size_t n) {
    const size_t chunk = 1 << 14;
    const size_t nch = (n + chunk - 1) / chunk;
    size_t first = nch;
#pragma omp parallel for schedule(static) reduction(min : first) num_threads(kernel_threads(n / 4))
    for (size_t c = 0; c < nch; c++) {
        const size_t end = (c + 1) * chunk < n ? (c + 1) * chunk : n;
        uint32_t bad = 0;
#pragma omp simd reduction(| : bad)
        for (size_t i = c * chunk; i < end; i++) {
            uint32_t u;
            memcpy(&u, &x[i], sizeof u);
            bad |= (u & 0x7f800000u) == 0x7f800000u;
        }
        if (bad && c < first) first = c;
    }
    if (first == nch) return -1;
    for (size_t i = first * chunk; i < n; i++)
        if (!isfinite(x[i])) return (ptrdiff_t)i;
    return -1;
}
