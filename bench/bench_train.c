/* bench_train.c — a full training step (forward, cross-entropy, backward, AdamW) in tokens/s
 * for two shapes, against PyTorch doing the same step on the same shapes in the same run.
 *
 *   GPT-2 small: 12 layers, d 768, 12 heads, vocab 50257, tied, B 4, T 64
 *   Llama:       6 layers, d 288, 6 heads, ffn 768, vocab 32000, untied, B 8, T 256
 *
 * Usage: bench_train [--steps N] [--shape gpt2|llama|all] [--torch SCRIPT|--no-torch]
 *
 * Prints per shape: our tokens/s (best of N timed steps after one warm-up step) with a
 * per-phase breakdown, PyTorch's tokens/s (bench/torch_train.py run with the same thread
 * count), the ratio, and model-FLOP utilisation against a cblas_sgemm peak measured in the same
 * run. FLOPs per step = 6 * N * tokens + attention (12 * L * T * C per token for the QK^T and
 * AV products, forward+backward, full T x T as is customary), where N counts the parameters
 * that do matrix work: the token embedding only as the (tied) output head, no position table. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_common.h"
#include "src/core/blas_kernel.h"
#include "src/model/model.h"
#include "src/train/optim.h"
#include "src/core/rng.h"
#include "src/train/train.h"

#ifndef TORCH_SCRIPT
#define TORCH_SCRIPT "bench/torch_train.py"
#endif

typedef bench_shape shape;

static const shape g_shapes[] = {BENCH_SHAPE_GPT2, BENCH_SHAPE_LLAMA};

/* Best GFLOP/s of an n x n x n sgemm, the peak MFU is measured against. */
static double sgemm_peak(int n, int reps) {
    float *a = malloc((size_t)n * n * sizeof(float)), *b = malloc((size_t)n * n * sizeof(float)),
          *c = malloc((size_t)n * n * sizeof(float));
    if (!a || !b || !c) return NAN;
    for (size_t i = 0; i < (size_t)n * n; i++) {
        a[i] = (float)(i % 7) * 0.01f;
        b[i] = (float)(i % 5) * 0.02f;
    }
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double dt = bench_now_s() - t0;
        if (dt < best) best = dt;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * n * (double)n * n / best / 1e9;
}

static double step_flops(const model *m, const shape *s) {
    double n = (double)m->n_params;
    const model_config *c = &m->config;
    if (c->family == MODEL_FAMILY_GPT2) n -= (double)c->context * c->dim; /* position table: a lookup */
    if (!c->tied_embeddings) n -= (double)c->vocab_size * c->dim;         /* input embedding: a lookup */
    double tokens = (double)s->B * s->T;
    return 6.0 * n * tokens + 12.0 * c->n_layers * (double)s->T * c->dim * tokens;
}

typedef struct {
    double tok_s, fwd, xent, bwd, opt, step;
} result;

static int bench_ours(const shape *s, int steps, result *res, double *flops) {
    model_config c;
    bench_shape_config(s, &c);
    rlhf_error err = {0};
    model m;
    train t;
    train_params tp;
    train_params_defaults(&tp);
    tp.batch = s->B;
    tp.context = s->T;
    tp.optim.total_steps = 1000;
    tp.optim.warmup_steps = 10;
    if (model_init(&m, &c, &err)) goto fail;
    rng_t rng;
    rng_seed(&rng, 42);
    model_init_random(&m, &rng);
    if (train_init(&t, &m, &tp, &err)) goto fail;
    const size_t bt = (size_t)s->B * s->T;
    int32_t *in = malloc(bt * sizeof(int32_t)), *tg = malloc(bt * sizeof(int32_t));
    if (!in || !tg) return -1;
    for (size_t i = 0; i < bt; i++) {
        in[i] = (int32_t)rng_below(&rng, (uint64_t)s->V);
        tg[i] = (int32_t)rng_below(&rng, (uint64_t)s->V);
    }
    memset(res, 0, sizeof *res);
    res->step = 1e30;
    /* The same step as train_step (accum 1), with a timer between the phases. */
    for (int k = 0; k <= steps; k++) {
        double t0 = bench_now_s();
        model_zero_grads(&m);
        if (model_forward(&m, &t.acts, in, s->B, s->T, &err)) goto fail;
        double t1 = bench_now_s();
        model_xent(t.acts.logits, tg, NULL, s->B, s->T, s->V, t.acts.logits, NULL);
        double t2 = bench_now_s();
        if (model_backward(&m, &t.acts, t.acts.logits, NULL, &err)) goto fail;
        double t3 = bench_now_s();
        if (optim_step(&t.opt, m.params, m.grads, 1.0f, NULL, &err)) goto fail;
        double t4 = bench_now_s();
        if (k == 0) continue; /* warm-up: page faults, OpenBLAS buffers */
        if (t4 - t0 < res->step) {
            res->step = t4 - t0;
            res->fwd = t1 - t0;
            res->xent = t2 - t1;
            res->bwd = t3 - t2;
            res->opt = t4 - t3;
        }
    }
    res->tok_s = (double)bt / res->step;
    *flops = step_flops(&m, s);
    free(in);
    free(tg);
    train_free(&t);
    model_free(&m);
    return 0;
fail:
    fprintf(stderr, "bench_train: %s: %s\n", s->name, err.msg);
    return -1;
}

static char g_torch_blas[512] = "?"; /* what torch_train.py says its BLAS is */

/* Runs the PyTorch side; returns its tokens/s or NAN. */
static double bench_torch(const char *script, const shape *s, int steps, int threads) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s --shape %s --steps %d --threads %d", script, s->name, steps,
             threads);
    return bench_run_torch(cmd, g_torch_blas, sizeof g_torch_blas);
}

int main(int argc, char **argv) {
    /* the kernel a user of rlhf gets (the same start-up as repl/main.c) */
    blas_kernel_startup(argv);
    int steps = 5;
    const char *which = "all";
    const char *script = TORCH_SCRIPT;
    double best_peak = 0;
    const char *best_kernel = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) steps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--peak") == 0 && i + 2 < argc) {
            best_peak = atof(argv[++i]);
            best_kernel = argv[++i];
        }
        else if (strcmp(argv[i], "--shape") == 0 && i + 1 < argc) which = argv[++i];
        else if (strcmp(argv[i], "--torch") == 0 && i + 1 < argc) script = argv[++i];
        else if (strcmp(argv[i], "--no-torch") == 0) script = NULL;
        else {
            fprintf(stderr, "usage: bench_train [--steps N] [--shape gpt2|llama|all] [--torch SCRIPT|--no-torch] "
                            "[--peak GFLOPS KERNEL]\n");
            return 2;
        }
    }
    const int threads = omp_get_max_threads();
    const int blas_threads = openblas_get_num_threads();
    /* The peak is the best of this measurement and one after every shape, so a burst of load
     * from elsewhere during one of them does not inflate the MFU figures. */
    double peak = sgemm_peak(2048, 5);
    printf("threads: OpenMP %d, OpenBLAS %d (%s)\n", threads, blas_threads, openblas_get_config());
    int rc = 0;
    enum { MAXS = sizeof g_shapes / sizeof g_shapes[0] };
    result rs[MAXS];
    double fl[MAXS], tt[MAXS];
    int done[MAXS] = {0};
    for (size_t k = 0; k < MAXS; k++) {
        const shape *s = &g_shapes[k];
        if (strcmp(which, "all") != 0 && strcmp(which, s->name) != 0) continue;
        if (bench_ours(s, steps, &rs[k], &fl[k])) {
            rc = 1;
            continue;
        }
        tt[k] = script ? bench_torch(script, s, steps, threads) : NAN;
        double again = sgemm_peak(2048, 5);
        if (again > peak) peak = again;
        done[k] = 1;
    }
    const char *env = getenv("OPENBLAS_CORETYPE"), *own = getenv(BLAS_ENV_OWN_PICK);
    printf("kernel: ours %s (OPENBLAS_CORETYPE=%s%s%s); torch %s\n", openblas_get_corename(), env ? env : "(unset)",
           own ? ", set by rlhf's start-up over OpenBLAS's own pick " : "", own ? own : "",
           script ? g_torch_blas : "(not run)");
    printf("sgemm peak (2048^3, best of 5, before and after each shape): %.1f GFLOP/s\n", peak);
    /* MFU against the fastest sgemm this machine reaches under any kernel (run_sgemm_bench.sh),
     * not the running kernel's: a weak kernel must not make its own MFU look good */
    if (best_peak > peak) {
        printf("MFU below is against %.1f GFLOP/s, the fastest kernel's (%s) sgemm peak\n", best_peak, best_kernel);
        peak = best_peak;
    }
    printf("%-6s %6s %10s %11s %7s %8s %9s  %s\n", "shape", "tokens", "ours tok/s", "torch tok/s", "ratio",
           "MFU ours", "MFU torch", "ours: forward / xent / backward / adamw (ms)");
    for (size_t k = 0; k < MAXS; k++) {
        if (!done[k]) continue;
        const shape *s = &g_shapes[k];
        const result *r = &rs[k];
        double tokens = (double)s->B * s->T, torch = tt[k];
        double mfu = fl[k] / r->step / 1e9 / peak;
        double mfu_t = isnan(torch) ? NAN : fl[k] / (tokens / torch) / 1e9 / peak;
        printf("%-6s %6.0f %10.0f %11.0f %7.2f %7.1f%% %8.1f%%   %.0f / %.0f / %.0f / %.0f (step %.0f, %.1f GFLOP)\n",
               s->name, tokens, r->tok_s, torch, torch > 0 ? r->tok_s / torch : NAN, 100 * mfu, 100 * mfu_t,
               1e3 * r->fwd, 1e3 * r->xent, 1e3 * r->bwd, 1e3 * r->opt, 1e3 * r->step, fl[k] / 1e9);
    }
    return rc;
}
