/* test_kernels.c — every optimized kernel against its reference, every backward against
 * central finite differences.
 *
 * For each kernel: (1) optimized and reference forward on random input, outputs prefilled with
 * NaN so an unwritten element fails; (2) optimized and reference backward, parameter gradients
 * starting from random values so "+=" is checked; (3) the optimized backward against central
 * differences of a double-precision forward written here (L = sum r . out for a random r),
 * eps 1e-6, so the finite differences are accurate to ~1e-9 and the tolerance only has to
 * absorb the kernels' float32 arithmetic. Sizes are chosen so both the one-thread and the
 * OpenMP paths run (above 32768 floats of work) and widths are not multiples of the vector
 * width or the 64-column strips. */
#include <float.h>
#include <stdlib.h>

#include "src/model/kernels.h"
#include "src/core/rng.h"
#include "tests/test_util.h"

static rng_t rng;

static float *fnew(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) abort();
    return p;
}
static double *dnew(size_t n) {
    double *p = calloc(n ? n : 1, sizeof *p);
    if (!p) abort();
    return p;
}
static float *frand(size_t n, float scale) {
    float *p = fnew(n);
    for (size_t i = 0; i < n; i++) p[i] = scale * rng_normal(&rng);
    return p;
}
static float *fnan(size_t n) {
    float *p = fnew(n);
    for (size_t i = 0; i < n; i++) p[i] = NAN;
    return p;
}
static float *fcopy(const float *x, size_t n) {
    float *p = fnew(n);
    memcpy(p, x, n * sizeof *p);
    return p;
}
static double *dfrom(const float *x, size_t n) {
    double *p = dnew(n);
    for (size_t i = 0; i < n; i++) p[i] = x[i];
    return p;
}

/* max |a - b| <= atol + rtol * max |b|, NaN fails */
static void check_arrays(const char *what, const float *a, const float *b, size_t n, double atol, double rtol) {
    double maxerr = 0, maxb = 0;
    size_t at = 0;
    int nan = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) {
            nan = 1;
            at = i;
            break;
        }
        double e = fabs((double)a[i] - b[i]);
        if (e > maxerr) maxerr = e, at = i;
        if (fabs(b[i]) > maxb) maxb = fabs(b[i]);
    }
    CHECK(!nan && maxerr <= atol + rtol * maxb, "%s: max err %.3g at %zu (%g vs %g), max |ref| %.3g, atol %g rtol %g%s",
          what, maxerr, at, (double)a[at], (double)b[at], maxb, atol, rtol, nan ? " (non-finite)" : "");
}

static void check_grad(const char *what, const float *analytic, const double *numeric, size_t n, double rtol) {
    double maxerr = 0, maxn = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(analytic[i] - numeric[i]);
        if (!(e <= maxerr)) maxerr = e, at = i;
        if (fabs(numeric[i]) > maxn) maxn = fabs(numeric[i]);
    }
    CHECK(maxerr <= rtol * maxn + 1e-7, "%s vs finite differences: max err %.3g at %zu (%g vs %g), max |grad| %.3g",
          what, maxerr, at, (double)analytic[at], numeric[at], maxn);
}

/* A double-precision forward: writes out (n_out) from the current inputs in ctx. */
typedef void (*dforward)(double *out, void *ctx);

/* numeric[i] = dL/dx[i] with L = sum r . out, by central differences on x (which the forward
 * reads through ctx). */
static void fd(double *numeric, double *x, size_t n, dforward f, void *ctx, const double *r, size_t n_out) {
    const double eps = 1e-6;
    double *out = dnew(n_out);
    for (size_t i = 0; i < n; i++) {
        double x0 = x[i], lp = 0, lm = 0;
        x[i] = x0 + eps;
        f(out, ctx);
        for (size_t j = 0; j < n_out; j++) lp += r[j] * out[j];
        x[i] = x0 - eps;
        f(out, ctx);
        for (size_t j = 0; j < n_out; j++) lm += r[j] * out[j];
        x[i] = x0;
        numeric[i] = (lp - lm) / (2 * eps);
    }
    free(out);
}

/* ---- matmul ---- */

typedef struct {
    double *in, *w, *b;
    int N, IN, OUT;
    kernel_w_layout layout;
} mm_ctx;

static void mm_d(double *out, void *vc) {
    mm_ctx *c = vc;
    for (int n = 0; n < c->N; n++)
        for (int o = 0; o < c->OUT; o++) {
            double s = c->b ? c->b[o] : 0;
            for (int i = 0; i < c->IN; i++)
                s += c->in[n * c->IN + i] *
                     (c->layout == KERNEL_W_IN_OUT ? c->w[i * c->OUT + o] : c->w[o * c->IN + i]);
            out[n * c->OUT + o] = s;
        }
}

static void test_matmul(int N, int IN, int OUT, kernel_w_layout layout, int bias, int do_fd) {
    char what[128];
    snprintf(what, sizeof what, "matmul N%d IN%d OUT%d %s%s", N, IN, OUT,
             layout == KERNEL_W_IN_OUT ? "[in,out]" : "[out,in]", bias ? " +bias" : "");
    size_t nin = (size_t)N * IN, nw = (size_t)IN * OUT, nout = (size_t)N * OUT;
    float *in = frand(nin, 1), *w = frand(nw, 0.3f), *b = bias ? frand(OUT, 1) : NULL;
    float *o1 = fnan(nout), *o2 = fnan(nout);
    matmul_forward(o1, in, w, b, N, IN, OUT, layout);
    matmul_forward_ref(o2, in, w, b, N, IN, OUT, layout);
    check_arrays(what, o1, o2, nout, 1e-5, 1e-5);

    float *dout = frand(nout, 1);
    float *din1 = fnan(nin), *din2 = fnan(nin);
    float *dw1 = frand(nw, 1), *dw2 = fcopy(dw1, nw);
    float *db1 = bias ? frand(OUT, 1) : NULL, *db2 = bias ? fcopy(db1, OUT) : NULL;
    float *dw0 = fcopy(dw1, nw), *db0 = bias ? fcopy(db1, OUT) : NULL;
    matmul_backward(din1, dw1, db1, dout, in, w, N, IN, OUT, layout);
    matmul_backward_ref(din2, dw2, db2, dout, in, w, N, IN, OUT, layout);
    check_arrays("matmul din", din1, din2, nin, 1e-5, 1e-5);
    check_arrays("matmul dw (+=)", dw1, dw2, nw, 1e-5, 1e-5);
    if (bias) check_arrays("matmul dbias (+=)", db1, db2, OUT, 1e-5, 1e-5);

    if (do_fd) {
        mm_ctx c = {dfrom(in, nin), dfrom(w, nw), bias ? dfrom(b, OUT) : NULL, N, IN, OUT, layout};
        double *r = dfrom(dout, nout), *num = dnew(nw > nin ? nw : nin);
        fd(num, c.in, nin, mm_d, &c, r, nout);
        check_grad("matmul din", din1, num, nin, 1e-5);
        for (size_t i = 0; i < nw; i++) dw1[i] -= dw0[i];
        fd(num, c.w, nw, mm_d, &c, r, nout);
        check_grad("matmul dw", dw1, num, nw, 1e-5);
        if (bias) {
            for (int i = 0; i < OUT; i++) db1[i] -= db0[i];
            fd(num, c.b, OUT, mm_d, &c, r, nout);
            check_grad("matmul dbias", db1, num, OUT, 1e-5);
        }
        free(c.in), free(c.w), free(c.b), free(r), free(num);
    }
    free(in), free(w), free(b), free(o1), free(o2), free(dout), free(din1), free(din2), free(dw1), free(dw2);
    free(db1), free(db2), free(dw0), free(db0);
}

/* ---- embedding ---- */

static void test_embedding(int N, int C, int V, int P, int with_pos) {
    int32_t *tok = malloc(N * sizeof *tok), *pos = malloc(N * sizeof *pos);
    for (int n = 0; n < N; n++) {
        tok[n] = (int32_t)rng_below(&rng, V); /* V small: repeats exercise the scatter-add */
        pos[n] = (int32_t)rng_below(&rng, P);
    }
    float *te = frand((size_t)V * C, 1), *pe = with_pos ? frand((size_t)P * C, 1) : NULL;
    float *o1 = fnan((size_t)N * C), *o2 = fnan((size_t)N * C);
    embedding_forward(o1, tok, pos, te, pe, N, C);
    embedding_forward_ref(o2, tok, pos, te, pe, N, C);
    check_arrays("embedding forward", o1, o2, (size_t)N * C, 0, 0);
    float *dout = frand((size_t)N * C, 1);
    float *dt1 = frand((size_t)V * C, 1), *dt2 = fcopy(dt1, (size_t)V * C);
    float *dp1 = with_pos ? frand((size_t)P * C, 1) : NULL, *dp2 = with_pos ? fcopy(dp1, (size_t)P * C) : NULL;
    embedding_backward(dt1, dp1, dout, tok, pos, N, C);
    embedding_backward_ref(dt2, dp2, dout, tok, pos, N, C);
    check_arrays("embedding dtok (+=)", dt1, dt2, (size_t)V * C, 1e-6, 1e-6);
    if (with_pos) check_arrays("embedding dpos (+=)", dp1, dp2, (size_t)P * C, 1e-6, 1e-6);
    /* the gradient of a sum of gathered rows is exact: compare with a double scatter */
    double *num = dnew((size_t)V * C);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) num[(size_t)tok[n] * C + c] += dout[(size_t)n * C + c];
    float *dt0 = fnew((size_t)V * C);
    embedding_backward(memset(dt0, 0, (size_t)V * C * sizeof(float)), NULL, dout, tok, pos, N, C);
    check_grad("embedding dtok", dt0, num, (size_t)V * C, 1e-6);
    free(tok), free(pos), free(te), free(pe), free(o1), free(o2), free(dout), free(dt1), free(dt2), free(dp1);
    free(dp2), free(num), free(dt0);
}

/* ---- layernorm / rmsnorm ---- */

typedef struct {
    double *in, *w, *b;
    int N, C;
    double eps;
    int rms;
} norm_ctx;

static void norm_d(double *out, void *vc) {
    norm_ctx *c = vc;
    for (int n = 0; n < c->N; n++) {
        const double *x = c->in + (size_t)n * c->C;
        double m = 0, v = 0;
        if (!c->rms) {
            for (int i = 0; i < c->C; i++) m += x[i];
            m /= c->C;
        }
        for (int i = 0; i < c->C; i++) v += (x[i] - m) * (x[i] - m);
        double r = 1 / sqrt(v / c->C + c->eps);
        for (int i = 0; i < c->C; i++) out[(size_t)n * c->C + i] = (x[i] - m) * r * c->w[i] + (c->rms ? 0 : c->b[i]);
    }
}

static void test_norm(int rms, int N, int C, int do_fd) {
    const char *name = rms ? "rmsnorm" : "layernorm";
    char what[96];
    size_t n = (size_t)N * C;
    const float eps = 1e-5f;
    float *in = frand(n, 2), *w = frand(C, 1), *b = frand(C, 1);
    for (size_t i = 0; i < n; i++) in[i] += 0.5f; /* a nonzero mean */
    float *o1 = fnan(n), *o2 = fnan(n), *m1 = fnan(N), *m2 = fnan(N), *r1 = fnan(N), *r2 = fnan(N);
    if (rms) {
        rmsnorm_forward(o1, r1, in, w, N, C, eps);
        rmsnorm_forward_ref(o2, r2, in, w, N, C, eps);
    } else {
        layernorm_forward(o1, m1, r1, in, w, b, N, C, eps);
        layernorm_forward_ref(o2, m2, r2, in, w, b, N, C, eps);
        snprintf(what, sizeof what, "%s mean", name);
        check_arrays(what, m1, m2, N, 1e-6, 1e-6);
    }
    snprintf(what, sizeof what, "%s forward N%d C%d", name, N, C);
    check_arrays(what, o1, o2, n, 1e-5, 1e-5);
    snprintf(what, sizeof what, "%s rstd", name);
    check_arrays(what, r1, r2, N, 1e-6, 1e-5);

    float *dout = frand(n, 1);
    float *din1 = frand(n, 1), *din2 = fcopy(din1, n), *din0 = fcopy(din1, n);
    float *dw1 = frand(C, 1), *dw2 = fcopy(dw1, C), *dw0 = fcopy(dw1, C);
    float *db1 = frand(C, 1), *db2 = fcopy(db1, C), *db0 = fcopy(db1, C);
    if (rms) {
        rmsnorm_backward(din1, dw1, dout, in, w, r2, N, C);
        rmsnorm_backward_ref(din2, dw2, dout, in, w, r2, N, C);
    } else {
        layernorm_backward(din1, dw1, db1, dout, in, w, m2, r2, N, C);
        layernorm_backward_ref(din2, dw2, db2, dout, in, w, m2, r2, N, C);
        snprintf(what, sizeof what, "%s db (+=)", name);
        check_arrays(what, db1, db2, C, 1e-5, 1e-5);
    }
    snprintf(what, sizeof what, "%s din (+=)", name);
    check_arrays(what, din1, din2, n, 1e-5, 1e-5);
    snprintf(what, sizeof what, "%s dw (+=)", name);
    check_arrays(what, dw1, dw2, C, 1e-5, 1e-5);
    if (do_fd) {
        norm_ctx c = {dfrom(in, n), dfrom(w, C), dfrom(b, C), N, C, eps, rms};
        double *r = dfrom(dout, n), *num = dnew(n);
        for (size_t i = 0; i < n; i++) din1[i] -= din0[i];
        for (int i = 0; i < C; i++) dw1[i] -= dw0[i], db1[i] -= db0[i];
        fd(num, c.in, n, norm_d, &c, r, n);
        snprintf(what, sizeof what, "%s din", name);
        check_grad(what, din1, num, n, 1e-4);
        fd(num, c.w, C, norm_d, &c, r, n);
        snprintf(what, sizeof what, "%s dw", name);
        check_grad(what, dw1, num, C, 1e-4);
        if (!rms) {
            fd(num, c.b, C, norm_d, &c, r, n);
            check_grad("layernorm db", db1, num, C, 1e-4);
        }
        free(c.in), free(c.w), free(c.b), free(r), free(num);
    }
    free(in), free(w), free(b), free(o1), free(o2), free(m1), free(m2), free(r1), free(r2), free(dout);
    free(din1), free(din2), free(din0), free(dw1), free(dw2), free(dw0), free(db1), free(db2), free(db0);
}

/* ---- rope ---- */

typedef struct {
    double *in;
    const int32_t *pos;
    double theta;
    int N, H, HS, stride;
    model_rope_layout layout;
} rope_ctx;

static void rope_d(double *out, void *vc) {
    rope_ctx *c = vc;
    const int H2 = c->HS / 2;
    memcpy(out, c->in, (size_t)c->N * c->stride * sizeof *out); /* untouched columns pass through */
    for (int n = 0; n < c->N; n++)
        for (int h = 0; h < c->H; h++)
            for (int i = 0; i < H2; i++) {
                double a = c->pos[n] * pow(c->theta, -2.0 * i / c->HS);
                size_t base = (size_t)n * c->stride + (size_t)h * c->HS;
                size_t i0 = c->layout == MODEL_ROPE_HALF ? base + i : base + 2 * i;
                size_t i1 = c->layout == MODEL_ROPE_HALF ? base + i + H2 : base + 2 * i + 1;
                out[i0] = c->in[i0] * cos(a) - c->in[i1] * sin(a);
                out[i1] = c->in[i1] * cos(a) + c->in[i0] * sin(a);
            }
}

static void test_rope(model_rope_layout layout, int N, int H, int HS, int extra, int P, int do_fd) {
    const char *name = layout == MODEL_ROPE_HALF ? "rope half" : "rope interleaved";
    char what[96];
    const int stride = H * HS + extra;
    const size_t n = (size_t)N * stride;
    const float theta = 10000.0f;
    int32_t *pos = malloc(N * sizeof *pos);
    for (int i = 0; i < N; i++) pos[i] = (int32_t)rng_below(&rng, P);
    float *ct = fnew((size_t)P * HS / 2), *st = fnew((size_t)P * HS / 2);
    rope_table(ct, st, P, HS, theta);
    float *in = frand(n, 1), *o1 = fcopy(in, n), *o2 = fcopy(in, n);
    rope_forward(o1, in, pos, ct, st, N, H, HS, stride, layout);
    rope_forward_ref(o2, in, pos, theta, N, H, HS, stride, layout);
    snprintf(what, sizeof what, "%s forward", name);
    check_arrays(what, o1, o2, n, 1e-5, 1e-5);
    float *inplace = fcopy(in, n);
    rope_forward(inplace, inplace, pos, ct, st, N, H, HS, stride, layout);
    snprintf(what, sizeof what, "%s forward in place", name);
    check_arrays(what, inplace, o1, n, 0, 0);
    float *dout = frand(n, 1), *d1 = fcopy(dout, n), *d2 = fcopy(dout, n);
    rope_backward(d1, d1, pos, ct, st, N, H, HS, stride, layout);
    rope_backward_ref(d2, dout, pos, theta, N, H, HS, stride, layout);
    snprintf(what, sizeof what, "%s backward (in place)", name);
    check_arrays(what, d1, d2, n, 1e-5, 1e-5);
    /* the rotation undone: backward of forward is the identity */
    rope_backward(inplace, inplace, pos, ct, st, N, H, HS, stride, layout);
    snprintf(what, sizeof what, "%s backward inverts forward", name);
    check_arrays(what, inplace, in, n, 1e-5, 1e-5);
    if (do_fd) {
        rope_ctx c = {dfrom(in, n), pos, theta, N, H, HS, stride, layout};
        double *r = dfrom(dout, n), *num = dnew(n);
        fd(num, c.in, n, rope_d, &c, r, n);
        /* columns outside the heads pass the gradient through: the kernel leaves them as
         * they were (din aliases dout), i.e. equal to dout */
        snprintf(what, sizeof what, "%s backward", name);
        check_grad(what, d1, num, n, 1e-5);
        free(c.in), free(r), free(num);
    }
    free(pos), free(ct), free(st), free(in), free(o1), free(o2), free(inplace), free(dout), free(d1), free(d2);
}

/* ---- attention ---- */

typedef struct {
    double *q, *k, *v;
    attention_dims d;
    size_t nout;
} att_ctx;

static void att_d(double *out, void *vc) {
    att_ctx *c = vc;
    const attention_dims *d = &c->d;
    const int rep = d->NH / d->NKV, HS = d->HS;
    memset(out, 0, c->nout * sizeof *out);
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->NH; h++)
            for (int t = 0; t < d->Tq; t++) {
                const int L = d->Tk - d->Tq + t + 1, g = h / rep;
                double s[512], mx = -INFINITY, sum = 0;
                const double *q = c->q + b * d->q_bstride + (size_t)t * d->q_stride + (size_t)h * HS;
                for (int j = 0; j < L; j++) {
                    const double *k = c->k + b * d->kv_bstride + (size_t)j * d->kv_stride + (size_t)g * HS;
                    s[j] = 0;
                    for (int i = 0; i < HS; i++) s[j] += q[i] * k[i];
                    s[j] /= sqrt((double)HS);
                    if (s[j] > mx) mx = s[j];
                }
                for (int j = 0; j < L; j++) sum += s[j] = exp(s[j] - mx);
                double *o = out + b * d->out_bstride + (size_t)t * d->out_stride + (size_t)h * HS;
                for (int j = 0; j < L; j++) {
                    const double *v = c->v + b * d->kv_bstride + (size_t)j * d->kv_stride + (size_t)g * HS;
                    for (int i = 0; i < HS; i++) o[i] += s[j] / sum * v[i];
                }
            }
}

/* q, k, v in separate buffers with padded strides (as a KV cache would have them) or fused in
 * one qkv buffer (as in training). */
static void test_attention(int B, int Tq, int Tk, int NH, int NKV, int HS, int fused, int do_fd) {
    char what[160];
    snprintf(what, sizeof what, "attention B%d Tq%d Tk%d NH%d NKV%d HS%d %s", B, Tq, Tk, NH, NKV, HS,
             fused ? "fused qkv" : "separate");
    attention_dims d = {.B = B, .Tq = Tq, .Tk = Tk, .NH = NH, .NKV = NKV, .HS = HS};
    size_t nq, nkv, nout = 0;
    float *qb, *kb, *vb, *q, *k, *v;
    if (fused) {
        int QKV = (NH + 2 * NKV) * HS;
        d.q_stride = d.kv_stride = QKV;
        d.q_bstride = d.kv_bstride = (size_t)Tk * QKV;
        nq = nkv = (size_t)B * Tk * QKV;
        qb = frand(nq, 1);
        kb = vb = qb;
        q = qb, k = qb + NH * HS, v = qb + (NH + NKV) * HS;
    } else {
        d.q_stride = NH * HS + 3;
        d.kv_stride = NKV * HS + 5;
        d.q_bstride = (size_t)Tq * d.q_stride + 7;
        d.kv_bstride = (size_t)(Tk + 2) * d.kv_stride;
        nq = B * d.q_bstride;
        nkv = B * d.kv_bstride;
        qb = frand(nq, 1), kb = frand(nkv, 1), vb = frand(nkv, 1);
        q = qb, k = kb, v = vb;
    }
    d.out_stride = NH * HS + 1;
    d.out_bstride = (size_t)Tq * d.out_stride;
    nout = B * d.out_bstride;
    const size_t natt = (size_t)B * NH * Tq * Tk;
    float *o1 = fnan(nout), *o2 = fnan(nout), *a1 = fnan(natt), *a2 = fnan(natt);
    /* padding columns of out are never written: give both the same value there */
    for (size_t i = 0; i < nout; i++)
        if (i % d.out_stride == (size_t)NH * HS || (i % d.out_bstride) >= (size_t)Tq * d.out_stride) o1[i] = o2[i] = 0;
    attention_forward(o1, a1, q, k, v, &d);
    attention_forward_ref(o2, a2, q, k, v, &d);
    check_arrays(what, o1, o2, nout, 1e-5, 1e-5);
    check_arrays("attention probabilities", a1, a2, natt, 1e-6, 1e-5);

    float *dout = frand(nout, 1);
    float *dq1 = fnan(nq), *dq2 = fnan(nq), *dk1 = fused ? dq1 : fnan(nkv), *dk2 = fused ? dq2 : fnan(nkv);
    float *dv1 = fused ? dq1 : fnan(nkv), *dv2 = fused ? dq2 : fnan(nkv), *datt = fnan(natt);
    const ptrdiff_t ko = k - kb, vo = v - vb;
    attention_backward(dq1, dk1 + ko, dv1 + vo, datt, dout, q, k, v, a2, &d);
    attention_backward_ref(dq2, dk2 + ko, dv2 + vo, dout, q, k, v, a2, &d);
    /* compare only the elements the kernels own (padding stays NaN in both) */
    float *gq1 = fnew(nq), *gq2 = fnew(nq);
    size_t m = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < Tq; t++)
            for (int i = 0; i < NH * HS; i++) {
                size_t at = b * d.q_bstride + (size_t)t * d.q_stride + i;
                gq1[m] = dq1[at], gq2[m++] = dq2[at];
            }
    check_arrays("attention dq", gq1, gq2, m, 1e-5, 1e-5);
    float *gk1 = fnew(2 * nkv), *gk2 = fnew(2 * nkv);
    size_t mk = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < Tk; t++)
            for (int i = 0; i < NKV * HS; i++) {
                size_t at = b * d.kv_bstride + (size_t)t * d.kv_stride + i;
                gk1[mk] = dk1[ko + at], gk2[mk++] = dk2[ko + at];
            }
    size_t mv = mk;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < Tk; t++)
            for (int i = 0; i < NKV * HS; i++) {
                size_t at = b * d.kv_bstride + (size_t)t * d.kv_stride + i;
                gk1[mv] = dv1[vo + at], gk2[mv++] = dv2[vo + at];
            }
    check_arrays("attention dk", gk1, gk2, mk, 1e-5, 1e-5);
    check_arrays("attention dv", gk1 + mk, gk2 + mk, mv - mk, 1e-5, 1e-5);

    if (do_fd) {
        att_ctx c = {dfrom(qb, nq), NULL, NULL, d, nout};
        double *kd = fused ? c.q : dfrom(kb, nkv), *vd = fused ? c.q : dfrom(vb, nkv);
        c.q = c.q + (q - qb);
        c.k = kd + ko;
        c.v = vd + vo;
        double *r = dfrom(dout, nout), *num = dnew(nq > nkv ? nq : nkv);
        float *ga = fnew(nq > nkv ? nq : nkv);
        /* numeric gradient over whole buffers; compare on the owned elements only */
        double *base_q = c.q - (q - qb);
        fd(num, base_q, nq, att_d, &c, r, nout);
        m = 0;
        double *nq_own = dnew(nq);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < Tq; t++)
                for (int i = 0; i < NH * HS; i++) {
                    size_t at = b * d.q_bstride + (size_t)t * d.q_stride + i;
                    ga[m] = dq1[at];
                    nq_own[m++] = num[at];
                }
        check_grad("attention dq", ga, nq_own, m, 1e-4);
        if (fused) {
            size_t mm = 0;
            for (int b = 0; b < B; b++)
                for (int t = 0; t < Tk; t++)
                    for (int i = 0; i < 2 * NKV * HS; i++) {
                        size_t at = b * d.kv_bstride + (size_t)t * d.kv_stride + NH * HS + i;
                        ga[mm] = dq1[at];
                        nq_own[mm++] = num[at];
                    }
            check_grad("attention dk|dv (fused)", ga, nq_own, mm, 1e-4);
        } else {
            for (int which = 0; which < 2; which++) {
                fd(num, which ? vd : kd, nkv, att_d, &c, r, nout);
                size_t mm = 0;
                double *own = dnew(nkv);
                for (int b = 0; b < B; b++)
                    for (int t = 0; t < Tk; t++)
                        for (int i = 0; i < NKV * HS; i++) {
                            size_t at = b * d.kv_bstride + (size_t)t * d.kv_stride + i;
                            ga[mm] = which ? dv1[at] : dk1[at];
                            own[mm++] = num[at];
                        }
                check_grad(which ? "attention dv" : "attention dk", ga, own, mm, 1e-4);
                free(own);
            }
            free(kd), free(vd);
        }
        free(base_q), free(r), free(num), free(ga), free(nq_own);
    }
    free(qb);
    if (!fused) free(kb), free(vb), free(dk1), free(dk2), free(dv1), free(dv2);
    free(o1), free(o2), free(a1), free(a2), free(dout), free(dq1), free(dq2), free(datt), free(gq1), free(gq2);
    free(gk1), free(gk2);
}

/* ---- element-wise: gelu, swiglu, residual ---- */

typedef struct {
    double *in;
    size_t n;
    int F;
} ew_ctx;

static void gelu_d(double *out, void *vc) {
    ew_ctx *c = vc;
    for (size_t i = 0; i < c->n; i++) {
        double x = c->in[i];
        out[i] = 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    }
}

static void swiglu_d(double *out, void *vc) {
    ew_ctx *c = vc;
    size_t N = c->n / (2 * c->F);
    for (size_t n = 0; n < N; n++)
        for (int i = 0; i < c->F; i++) {
            double g = c->in[n * 2 * c->F + i], u = c->in[n * 2 * c->F + c->F + i];
            out[n * c->F + i] = g / (1 + exp(-g)) * u;
        }
}

static void test_gelu(size_t n, int do_fd) {
    float *in = frand(n, 3), *o1 = fnan(n), *o2 = fnan(n);
    in[0] = 0, in[1 % n] = -30, in[2 % n] = 30, in[3 % n] = 1e-4f; /* tails and the origin */
    gelu_forward(o1, in, n);
    gelu_forward_ref(o2, in, n);
    check_arrays("gelu forward", o1, o2, n, 1e-6, 1e-6);
    float *dout = frand(n, 1), *d1 = fcopy(dout, n), *d2 = fnan(n);
    gelu_backward(d1, d1, in, n); /* in place */
    gelu_backward_ref(d2, dout, in, n);
    check_arrays("gelu backward", d1, d2, n, 1e-6, 1e-6);
    if (do_fd) {
        ew_ctx c = {dfrom(in, n), n, 0};
        double *r = dfrom(dout, n), *num = dnew(n);
        fd(num, c.in, n, gelu_d, &c, r, n);
        check_grad("gelu", d1, num, n, 1e-5);
        free(c.in), free(r), free(num);
    }
    free(in), free(o1), free(o2), free(dout), free(d1), free(d2);
}

static void test_swiglu(int N, int F, int do_fd) {
    size_t ni = (size_t)N * 2 * F, no = (size_t)N * F;
    float *in = frand(ni, 3), *o1 = fnan(no), *o2 = fnan(no);
    in[0] = -40, in[1] = 40;
    swiglu_forward(o1, in, N, F);
    swiglu_forward_ref(o2, in, N, F);
    check_arrays("swiglu forward", o1, o2, no, 1e-6, 1e-6);
    float *dout = frand(no, 1), *d1 = fnan(ni), *d2 = fnan(ni);
    swiglu_backward(d1, dout, in, N, F);
    swiglu_backward_ref(d2, dout, in, N, F);
    check_arrays("swiglu backward", d1, d2, ni, 1e-6, 1e-6);
    if (do_fd) {
        ew_ctx c = {dfrom(in, ni), ni, F};
        double *r = dfrom(dout, no), *num = dnew(ni);
        fd(num, c.in, ni, swiglu_d, &c, r, no);
        check_grad("swiglu", d1, num, ni, 1e-5);
        free(c.in), free(r), free(num);
    }
    free(in), free(o1), free(o2), free(dout), free(d1), free(d2);
}

static void test_residual(size_t n) {
    float *a = frand(n, 1), *b = frand(n, 1), *o1 = fnan(n), *o2 = fnan(n);
    residual_forward(o1, a, b, n);
    residual_forward_ref(o2, a, b, n);
    check_arrays("residual forward", o1, o2, n, 0, 0);
    float *dout = frand(n, 1), *da1 = frand(n, 1), *db1 = frand(n, 1), *da2 = fcopy(da1, n), *db2 = fcopy(db1, n);
    float *da0 = fcopy(da1, n);
    residual_backward(da1, db1, dout, n);
    residual_backward_ref(da2, db2, dout, n);
    check_arrays("residual backward da (+=)", da1, da2, n, 0, 0);
    check_arrays("residual backward db (+=)", db1, db2, n, 0, 0);
    /* d(a+b)/da = 1 exactly */
    for (size_t i = 0; i < n; i++) da1[i] -= da0[i];
    check_arrays("residual gradient is dout", da1, dout, n, 1e-6, 1e-6);
    free(a), free(b), free(o1), free(o2), free(dout), free(da1), free(db1), free(da2), free(db2), free(da0);
}

/* ---- softmax, cross-entropy ---- */

typedef struct {
    double *x;
    const int32_t *targets;
    int N, V;
} sm_ctx;

static void softmax_d(double *out, void *vc) {
    sm_ctx *c = vc;
    for (int n = 0; n < c->N; n++) {
        const double *x = c->x + (size_t)n * c->V;
        double mx = -INFINITY, s = 0;
        for (int j = 0; j < c->V; j++) mx = x[j] > mx ? x[j] : mx;
        for (int j = 0; j < c->V; j++) s += exp(x[j] - mx);
        for (int j = 0; j < c->V; j++) out[(size_t)n * c->V + j] = exp(x[j] - mx) / s;
    }
}

static void xent_d(double *out, void *vc) {
    sm_ctx *c = vc;
    for (int n = 0; n < c->N; n++) {
        const double *x = c->x + (size_t)n * c->V;
        double mx = -INFINITY, s = 0;
        for (int j = 0; j < c->V; j++) mx = x[j] > mx ? x[j] : mx;
        for (int j = 0; j < c->V; j++) s += exp(x[j] - mx);
        out[n] = c->targets[n] < 0 ? 0 : mx + log(s) - x[c->targets[n]];
    }
}

static void test_softmax(int N, int V, int do_fd) {
    size_t n = (size_t)N * V;
    float *x = frand(n, 4), *p1 = fnan(n), *p2 = fnan(n);
    x[1] = -INFINITY; /* a masked logit, as a sampler might set */
    softmax_forward(p1, x, N, V);
    softmax_forward_ref(p2, x, N, V);
    check_arrays("softmax forward", p1, p2, n, 1e-7, 1e-5);
    CHECK(p1[1] == 0.0f, "softmax of -inf is exactly 0 (got %g)", (double)p1[1]);
    x[1] = 0.5f;
    softmax_forward_ref(p2, x, N, V);
    float *dp = frand(n, 1), *d1 = fcopy(dp, n), *d2 = fnan(n);
    softmax_backward(d1, d1, p2, N, V);
    softmax_backward_ref(d2, dp, p2, N, V);
    check_arrays("softmax backward", d1, d2, n, 1e-6, 1e-5);
    if (do_fd) {
        sm_ctx c = {dfrom(x, n), NULL, N, V};
        double *r = dfrom(dp, n), *num = dnew(n);
        fd(num, c.x, n, softmax_d, &c, r, n);
        check_grad("softmax", d1, num, n, 1e-5);
        free(c.x), free(r), free(num);
    }
    free(x), free(p1), free(p2), free(dp), free(d1), free(d2);
}

static void test_crossentropy(int N, int V, int do_fd) {
    size_t n = (size_t)N * V;
    float *x = frand(n, 4);
    int32_t *y = malloc(N * sizeof *y);
    for (int i = 0; i < N; i++) y[i] = i % 3 == 2 ? -1 : (int32_t)rng_below(&rng, V);
    float *l1 = fnan(N), *l2 = fnan(N), *s1 = fnan(N), *s2 = fnan(N);
    crossentropy_forward(l1, s1, x, y, N, V);
    crossentropy_forward_ref(l2, s2, x, y, N, V);
    check_arrays("crossentropy losses", l1, l2, N, 1e-5, 1e-5);
    check_arrays("crossentropy logsumexp", s1, s2, N, 1e-5, 1e-6);
    float *dl = frand(N, 1), *d1 = fcopy(x, n), *d2 = fnan(n);
    crossentropy_backward(d1, d1, s2, y, dl, N, V); /* in place, as model_xent uses it */
    crossentropy_backward_ref(d2, x, s2, y, dl, N, V);
    check_arrays("crossentropy backward (in place)", d1, d2, n, 1e-6, 1e-5);
    if (do_fd) {
        sm_ctx c = {dfrom(x, n), y, N, V};
        double *r = dfrom(dl, N), *num = dnew(n);
        fd(num, c.x, n, xent_d, &c, r, N);
        check_grad("crossentropy", d1, num, n, 1e-5);
        free(c.x), free(r), free(num);
    }
    free(x), free(y), free(l1), free(l2), free(s1), free(s2), free(dl), free(d1), free(d2);
}

static void test_nonfinite(void) {
    size_t n = 100000;
    float *x = frand(n, 1);
    CHECK(kernel_find_nonfinite(x, n) == -1, "finite array reported clean");
    x[77777] = INFINITY;
    x[99999] = NAN;
    CHECK(kernel_find_nonfinite(x, n) == 77777, "first non-finite found (%td)", kernel_find_nonfinite(x, n));
    x[77777] = 1;
    CHECK(kernel_find_nonfinite(x, n) == 99999, "NaN in the tail found");
    CHECK(kernel_find_nonfinite(x, 5) == -1, "short prefix clean");
    free(x);
}

int main(void) {
    rng_seed(&rng, 1234);
    /* matmul: tiny with finite differences, larger for the threaded paths */
    for (int lay = 0; lay < 2; lay++) {
        test_matmul(3, 5, 7, (kernel_w_layout)lay, 1, 1);
        test_matmul(4, 6, 3, (kernel_w_layout)lay, 0, 1);
        test_matmul(67, 45, 130, (kernel_w_layout)lay, 1, 0);
        test_matmul(130, 100, 97, (kernel_w_layout)lay, 1, 0); /* split over threads by rows */
        test_matmul(40, 150, 300, (kernel_w_layout)lay, 1, 0); /* split by columns */
    }
    test_embedding(9, 13, 4, 6, 1);
    test_embedding(300, 131, 17, 300, 1);
    test_embedding(300, 131, 17, 300, 0);
    for (int rms = 0; rms < 2; rms++) {
        test_norm(rms, 4, 11, 1);
        test_norm(rms, 130, 515, 0);
    }
    for (int lay = 0; lay < 2; lay++) {
        test_rope((model_rope_layout)lay, 5, 3, 8, 6, 40, 1);
        test_rope((model_rope_layout)lay, 300, 6, 48, 96, 1024, 0);
    }
    test_attention(2, 5, 5, 4, 2, 6, 1, 1);    /* training shape, GQA, fused qkv */
    test_attention(2, 3, 7, 4, 1, 4, 0, 1);    /* decode-like: 3 new rows on a cache of 7 */
    test_attention(1, 4, 4, 2, 2, 3, 0, 1);    /* plain multi-head, odd head size */
    test_attention(2, 150, 150, 4, 2, 16, 1, 0); /* several 64-row causal blocks */
    test_attention(3, 1, 70, 6, 3, 8, 0, 0);   /* one decoded row */
    test_gelu(37, 1);
    test_gelu(100003, 0);
    test_swiglu(3, 7, 1);
    test_swiglu(130, 301, 0);
    test_residual(100003);
    test_softmax(3, 9, 1);
    test_softmax(70, 1001, 0);
    test_crossentropy(4, 11, 1);
    test_crossentropy(40, 5003, 0);
    test_nonfinite();
    return test_finish("test_kernels");
}
