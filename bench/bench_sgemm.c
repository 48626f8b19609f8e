/* bench_sgemm — cblas_sgemm GFLOP/s of the OpenBLAS kernel this process runs, on a square
 * 2048^3 product and on the training step's own shapes, so the training bench can measure MFU
 * against the fastest kernel this machine has (bench/run_sgemm_bench.sh runs it once per
 * kernel with OPENBLAS_CORETYPE set; OpenBLAS reads that variable only at load).
 *
 * Usage: bench_sgemm [--reps N]      prints "kernel NAME" then one line per shape:
 *          sgemm M N K GFLOP/s
 *        bench_sgemm --supported NAME  exit 0 if this CPU can run kernel NAME (its tier is not
 *                                      above what the CPU features allow), 1 if not
 * No re-execution here: the kernel is whatever the environment asks for. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/core/blas_kernel.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Best GFLOP/s of C(M,N) = A(M,K) B(K,N) over reps, after one warm-up. */
static double best_gflops(int M, int N, int K, int reps) {
    float *a = malloc((size_t)M * K * sizeof *a), *b = malloc((size_t)K * N * sizeof *b),
          *c = malloc((size_t)M * N * sizeof *c);
    if (!a || !b || !c) {
        fprintf(stderr, "bench_sgemm: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; i < (size_t)K * N; i++) b[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
    double best = 0;
    for (int r = 0; r <= reps; r++) {
        /* enough calls for about 0.2 s, so the small shapes are not all timer noise */
        int calls = 1;
        double t0 = now_s(), dt;
        for (;;) {
            for (int i = 0; i < calls; i++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
            dt = now_s() - t0;
            if (dt > 0.2 || calls > 1 << 20) break;
            calls *= 2;
            t0 = now_s();
        }
        double g = 2.0 * M * N * K * calls / dt / 1e9;
        if (r > 0 && g > best) best = g;
    }
    free(a);
    free(b);
    free(c);
    return best;
}

int main(int argc, char **argv) {
    int reps = 3;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--supported") == 0 && i + 1 < argc) {
            blas_cpu_features f;
            blas_cpu_features_detect(&f);
            blas_tier t = blas_core_tier(argv[++i]);
            return t != BLAS_TIER_UNKNOWN && t <= blas_features_tier(&f) ? 0 : 1;
        } else {
            fprintf(stderr, "usage: bench_sgemm [--reps N] | --supported KERNEL\n");
            return 2;
        }
    }
    printf("kernel %s\n", openblas_get_corename());
    /* 2048^3; GPT-2 small's step at B4 T64 (256 rows: qkv, fc, lm head); the d288 Llama's
     * (B8 T256: 2048 rows, C 288, F 768, V 32000) */
    static const int shapes[][3] = {{2048, 2048, 2048}, {256, 2304, 768}, {256, 3072, 768}, {256, 768, 3072},
                                    {256, 50257, 768}, {2048, 864, 288}, {2048, 1536, 288}, {2048, 32000, 288}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        printf("sgemm %d %d %d %.1f\n", shapes[s][0], shapes[s][1], shapes[s][2],
               best_gflops(shapes[s][0], shapes[s][1], shapes[s][2], reps));
    return 0;
}
