/* bench_model_step.c — forward, cross-entropy head and backward of the model alone (no
 * optimizer), per phase, for the two benchmark shapes; a tool for working on model_compute.c
 * and kernels.c. The full training step against PyTorch is bench_train.
 *
 *   GPT-2 small: 12 layers, d 768, 12 heads, vocab 50257, tied, B 4, T 64
 *   Llama:       6 layers, d 288, 6 heads, ffn 768, vocab 32000, untied, B 8, T 256
 *
 * Usage: bench_model_step [gpt2|llama|all] [steps]   (best of `steps` after one warm-up) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_common.h"
#include "src/model/model.h"
#include "src/core/rng.h"

/* CPU time of all threads: on a shared, loaded machine it moves far less than wall time, and
 * it counts spinning threads, which is what oversubscription wastes. */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef bench_shape shape;

static const shape shapes[] = {BENCH_SHAPE_GPT2, BENCH_SHAPE_LLAMA};

static int run(const shape *s, int steps) {
    model_config c;
    bench_shape_config(s, &c);
    model m;
    model_acts a;
    rlhf_error err = {0};
    if (model_init(&m, &c, &err) || model_alloc_grads(&m, &err) || model_acts_init(&a, &c, s->B, s->T, &err)) {
        fprintf(stderr, "%s: %s\n", s->name, err.msg);
        return 1;
    }
    rng_t r;
    rng_seed(&r, 1);
    model_init_random(&m, &r);
    const int N = s->B * s->T;
    int32_t *tok = malloc(N * sizeof *tok), *tgt = malloc(N * sizeof *tgt);
    for (int i = 0; i < N; i++) tok[i] = (int32_t)rng_below(&r, s->V), tgt[i] = (int32_t)rng_below(&r, s->V);
    double best[4] = {1e30, 1e30, 1e30, 1e30}, best_cpu = 1e30;
    for (int it = 0; it <= steps; it++) {
        model_zero_grads(&m);
        double c0 = cpu_s(), t0 = bench_now_s();
        if (model_forward(&m, &a, tok, s->B, s->T, &err)) break;
        double t1 = bench_now_s();
        model_xent(a.logits, tgt, NULL, s->B, s->T, s->V, a.logits, NULL);
        double t2 = bench_now_s();
        if (model_backward(&m, &a, a.logits, NULL, &err)) break;
        double t3 = bench_now_s(), c3 = cpu_s();
        if (it == 0) continue;
        best_cpu = c3 - c0 < best_cpu ? c3 - c0 : best_cpu;
        double t[4] = {t1 - t0, t2 - t1, t3 - t2, t3 - t0};
        for (int k = 0; k < 4; k++) best[k] = t[k] < best[k] ? t[k] : best[k];
    }
    if (err.code) fprintf(stderr, "%s: %s\n", s->name, err.msg);
    printf("%-6s B%d T%-4d forward %7.1f ms  xent %6.1f ms  backward %7.1f ms  total %7.1f ms  %8.0f tok/s"
           "  (cpu %7.1f ms)\n",
           s->name, s->B, s->T, best[0] * 1e3, best[1] * 1e3, best[2] * 1e3, best[3] * 1e3, N / best[3],
           best_cpu * 1e3);
    free(tok), free(tgt);
    model_acts_free(&a);
    model_free(&m);
    return 0;
}

int main(int argc, char **argv) {
    const char *which = argc > 1 ? argv[1] : "all";
    int steps = argc > 2 ? atoi(argv[2]) : 3;
    int rc = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (!strcmp(which, "all") || !strcmp(which, shapes[i].name)) rc |= run(&shapes[i], steps);
    return rc;
}
