/* bench_common.h — what the training benchmarks share: the clock, the benchmark shapes and the
 * PyTorch side's runner. Header-only (each bench is one executable). */
#ifndef RLHF_BENCH_COMMON_H
#define RLHF_BENCH_COMMON_H

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "src/model/model.h"

static inline double bench_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A model shape and the micro-batch (B, T) it is benchmarked with. */
typedef struct {
    const char *name;
    model_family family;
    int L, C, NH, NKV, F, V, TMAX, tied, B, T;
} bench_shape;

/*   gpt2:  GPT-2 small: 12 layers, d 768, 12 heads, vocab 50257, tied, B 4, T 64
 *   llama: stories15M-sized: 6 layers, d 288, 6 heads, ffn 768, vocab 32000, untied, B 8, T 256 */
#define BENCH_SHAPE_GPT2 {"gpt2", MODEL_FAMILY_GPT2, 12, 768, 12, 12, 3072, 50257, 1024, 1, 4, 64}
#define BENCH_SHAPE_LLAMA {"llama", MODEL_FAMILY_LLAMA, 6, 288, 6, 6, 768, 32000, 256, 0, 8, 256}

static inline void bench_shape_config(const bench_shape *s, model_config *c) {
    model_config_defaults(c, s->family);
    c->n_layers = s->L;
    c->dim = s->C;
    c->n_heads = s->NH;
    c->n_kv_heads = s->NKV;
    c->ffn_dim = s->F;
    c->vocab_size = s->V;
    c->context = s->TMAX;
    c->tied_embeddings = s->tied;
}

/* Runs a PyTorch bench script's command line: its "tokens_per_s X" line is returned (NAN if none
 * or it failed), its "blas ..." line copied into blas (size n), anything else passed to stderr. */
static inline double bench_run_torch(const char *cmd, char *blas, size_t n) {
    FILE *p = popen(cmd, "r");
    if (!p) return NAN;
    char line[512];
    double tok_s = NAN;
    while (fgets(line, sizeof line, p)) {
        double x;
        if (sscanf(line, "tokens_per_s %lf", &x) == 1) tok_s = x;
        else if (strncmp(line, "blas ", 5) == 0) {
            line[strcspn(line, "\n")] = 0;
            snprintf(blas, n, "%s", line + 5);
        } else fputs(line, stderr);
    }
    if (pclose(p) != 0) return NAN;
    return tok_s;
}

#endif
