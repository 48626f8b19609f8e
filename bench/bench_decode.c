/* bench_decode.c — decoding speed: tokens/s at batch 1 and candidates/s for N = 4, on a
 * d 288 / 6-layer / vocab 32000 Llama (stories15M's shape) with random weights, next to
 * llama2.c's run.c on the same weights file in the same run.
 *
 * Usage: bench_decode [--tokens N] [--reps R] [--dir DIR] [--runc EXE]... [--tokenizer FILE] [--keep]
 *   --tokens N     tokens generated per sequence (default 255: run.c's 256 steps from BOS)
 *   --reps R       repetitions; every number is the best of R (default 3)
 *   --dir DIR      where the weights file (model.bin, llama2.c format) is written (default TMPDIR)
 *   --runc EXE     a run.c binary to measure on the same file (repeatable; e.g. -O3 and -Ofast
 *                  builds); it needs llama2.c's 32000-token tokenizer.bin (--tokenizer)
 *   --keep         keep the weights file (DIR/bench-decode-model.bin) for manual runs
 * bench/run_decode_bench.sh builds run.c from the llama2.c mirror and passes it here.
 *
 * Ours goes through the same path as `rlhf generate`: model_bundle_load of the .bin, then gen_run.
 * Batch-1 tokens/s counts every generated token over prefill + decode time (run.c's "achieved
 * tok/s" excludes its first step, which favours it slightly). Both generate --tokens tokens
 * after BOS; with --tokenizer the two greedy texts are compared (same weights, same text). Candidates: N sequences of
 * --tokens tokens sampled with temperature 1 and top-p 0.9 (run.c's defaults) from one prompt
 * in one batched pass; the time of N = 4 is compared with the time of N = 1 (target <= 2x). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/gen/generate.h"
#include "src/model/model.h"
#include "src/formats/model_load.h"
#include "src/core/rng.h"
#include "src/tok/tokenizer.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + 1e-6 * (double)ts.tv_nsec;
}

/* Writes m as a llama2.c legacy checkpoint with a shared classifier. */
static int write_llama2c(const model *m, const char *path) {
    const model_config *c = &m->config;
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    int hdr[7] = {c->dim, c->ffn_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size, c->context};
    fwrite(hdr, sizeof hdr, 1, fp);
    const int C = c->dim, F = c->ffn_dim, L = c->n_layers, HS = C / c->n_heads, KVD = c->n_kv_heads * HS;
    const model_weights *w = &m->w;
    fwrite(w->tok_emb, sizeof(float), (size_t)c->vocab_size * C, fp);
    for (int l = 0; l < L; l++) fwrite(w->layers[l].ln1_w, sizeof(float), (size_t)C, fp);
    for (int l = 0; l < L; l++) fwrite(w->layers[l].qkv_w, sizeof(float), (size_t)C * C, fp);
    for (int l = 0; l < L; l++) fwrite(w->layers[l].qkv_w + (size_t)C * C, sizeof(float), (size_t)KVD * C, fp);
    for (int l = 0; l < L; l++) fwrite(w->layers[l].qkv_w + (size_t)(C + KVD) * C, sizeof(float), (size_t)KVD * C, fp);
    for (int l = 0; l < L; l++) fwrite(w->layers[l].attn_out_w, sizeof(float), (size_t)C * C, fp);
    for (int l = 0; l < L; l++) fwrite(w->layers[l].ln2_w, sizeof(float), (size_t)C, fp);
    for (int l = 0; l < L; l++) fwrite(w->layers[l].fc_w, sizeof(float), (size_t)F * C, fp);           /* w1 gate */
    for (int l = 0; l < L; l++) fwrite(w->layers[l].proj_w, sizeof(float), (size_t)C * F, fp);         /* w2 down */
    for (int l = 0; l < L; l++) fwrite(w->layers[l].fc_w + (size_t)F * C, sizeof(float), (size_t)F * C, fp); /* w3 up */
    fwrite(w->lnf_w, sizeof(float), (size_t)C, fp);
    float *rope = calloc((size_t)c->context * HS / 2, sizeof(float));
    fwrite(rope, sizeof(float), (size_t)c->context * HS / 2, fp);
    fwrite(rope, sizeof(float), (size_t)c->context * HS / 2, fp);
    free(rope);
    return fclose(fp);
}

/* Runs run.c and returns its "achieved tok/s" (0 on failure); its generated text goes to
 * `text` (cap bytes) when not NULL. run.c -n STEPS generates STEPS tokens after BOS. */
static double run_runc(const char *exe, const char *model_path, const char *tokenizer, double temperature, int steps,
                       char *text, size_t cap) {
    char out_path[4200], cmd[8192];
    snprintf(out_path, sizeof out_path, "%s.out", model_path);
    snprintf(cmd, sizeof cmd, "'%s' '%s' -z '%s' -t %g -p 0.9 -s 1 -n %d -i '' 2>&1 >'%s'", exe, model_path, tokenizer,
             temperature, steps, out_path);
    FILE *p = popen(cmd, "r");
    if (!p) return 0;
    char line[1024];
    double tps = 0;
    while (fgets(line, sizeof line, p))
        if (strncmp(line, "achieved tok/s:", 15) == 0) tps = atof(line + 15);
    pclose(p);
    if (text) {
        FILE *f = fopen(out_path, "rb");
        size_t n = f ? fread(text, 1, cap - 1, f) : 0;
        text[n] = 0;
        while (n > 0 && text[n - 1] == '\n') text[--n] = 0;
        if (f) fclose(f);
    }
    remove(out_path);
    return tps;
}

int main(int argc, char **argv) {
    int tokens = 255, reps = 3;
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    const char *runc[4];
    int n_runc = 0;
    const char *tok_path = NULL;
    int keep = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokens") && i + 1 < argc) tokens = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--runc") && i + 1 < argc && n_runc < 4) runc[n_runc++] = argv[++i];
        else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tok_path = argv[++i];
        else if (!strcmp(argv[i], "--keep")) keep = 1;
        else {
            fprintf(stderr, "usage: bench_decode [--tokens N] [--reps R] [--dir DIR] [--runc EXE]... [--tokenizer FILE] [--keep]\n");
            return 2;
        }
    }
    if (tokens < 2 || tokens > 255 || reps < 1) {
        fprintf(stderr, "bench_decode: --tokens must be in 2..255 and --reps >= 1\n");
        return 2;
    }
    model_config c;
    model_config_defaults(&c, MODEL_FAMILY_LLAMA);
    c.n_layers = 6;
    c.dim = 288;
    c.n_heads = 6;
    c.n_kv_heads = 6;
    c.ffn_dim = 768;
    c.vocab_size = 32000;
    c.context = 256;
    c.tied_embeddings = 1;
    model m;
    rlhf_error err = {0};
    if (model_init(&m, &c, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    rng_t r;
    rng_seed(&r, 1);
    model_init_random(&m, &r);
    char path[4096];
    snprintf(path, sizeof path, "%s/bench-decode-model.bin", dir);
    if (write_llama2c(&m, path)) {
        fprintf(stderr, "bench_decode: cannot write %s\n", path);
        return 1;
    }
    model_free(&m);
    model_bundle b;
    if (model_bundle_load(&b, path, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }

    int32_t bos = 1;
    gen_params p;
    gen_params_defaults(&p);
    p.max_tokens = tokens;
    p.n_eos = 0;
    /* the step weights packed once, as the REPL does for a loaded model */
    gen_packed *packed = NULL;
    if (gen_packed_make(&packed, &b.m, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    p.packed = packed;
    double best_greedy = 0, best_sample = 0, best_t1 = 1e30, best_t4 = 1e30;
    for (int rep = 0; rep < reps; rep++) {
        gen_result res;
        p.strategy = GEN_STRATEGY_GREEDY;
        p.n = 1;
        if (gen_run(&b.m, NULL, &bos, 1, &p, &res, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        best_greedy = fmax(best_greedy, res.n_generated / ((res.prefill_ms + res.decode_ms) / 1e3));
        gen_result_free(&res);
        p.strategy = GEN_STRATEGY_SAMPLE;
        p.sampling.temperature = 1.0f;
        p.sampling.top_p = 0.9f;
        p.seed = 1;
        for (int n = 1; n <= 4; n += 3) {
            p.n = n;
            double t0 = now_ms();
            if (gen_run(&b.m, NULL, &bos, 1, &p, &res, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            double t = now_ms() - t0;
            if (n == 1) {
                best_t1 = fmin(best_t1, t);
                best_sample = fmax(best_sample, res.n_generated / ((res.prefill_ms + res.decode_ms) / 1e3));
            } else {
                best_t4 = fmin(best_t4, t);
            }
            gen_result_free(&res);
        }
    }
    double runc_greedy[4] = {0}, runc_sample[4] = {0};
    static char runc_text[4][65536];
    for (int k = 0; k < n_runc; k++)
        for (int rep = 0; rep < reps; rep++) {
            runc_greedy[k] = fmax(runc_greedy[k], run_runc(runc[k], path, tok_path ? tok_path : "tokenizer.bin", 0.0, tokens,
                                                           runc_text[k], sizeof runc_text[k]));
            runc_sample[k] = fmax(runc_sample[k], run_runc(runc[k], path, tok_path ? tok_path : "tokenizer.bin", 1.0, tokens,
                                                           NULL, 0));
        }
    /* the same weights give the same greedy text: decode ours with llama2.c's tokenizer */
    char *our_text = NULL;
    if (tok_path && n_runc > 0) {
        tokenizer *tok = NULL;
        if (tok_load(&tok, tok_path, &err) == 0) {
            gen_result res;
            p.strategy = GEN_STRATEGY_GREEDY;
            p.n = 1;
            if (gen_run(&b.m, tok, &bos, 1, &p, &res, &err) == 0) {
                our_text = res.cands[0].text ? strdup(res.cands[0].text) : NULL;
                gen_result_free(&res);
            }
            tok_close(&tok);
        }
    }

    printf("decode: d 288 / 6 layers / 6 heads / ffn 768 / vocab 32000 Llama (random weights, llama2.c .bin),\n");
    printf("%d tokens from BOS, best of %d, OMP_NUM_THREADS=%d\n\n", tokens, reps, omp_get_max_threads());
    printf("%-40s %12s %12s\n", "batch 1", "greedy tok/s", "top-p tok/s");
    printf("%-40s %12.1f %12.1f\n", "rlhf.c (model_bundle_load + gen_run)", best_greedy, best_sample);
    for (int k = 0; k < n_runc; k++) {
        const char *name = strrchr(runc[k], '/') ? strrchr(runc[k], '/') + 1 : runc[k];
        char label[64];
        snprintf(label, sizeof label, "llama2.c %s", name);
        if (runc_greedy[k] > 0)
            printf("%-40s %12.1f %12.1f   (ours %.2fx / %.2fx)\n", label, runc_greedy[k], runc_sample[k],
                   best_greedy / runc_greedy[k], runc_sample[k] > 0 ? best_sample / runc_sample[k] : 0.0);
        else
            printf("%-40s %12s %12s   (did not run: check the binary and --tokenizer)\n", label, "-", "-");
    }
    if (n_runc == 0) printf("%-40s (not measured: pass --runc, see bench/run_decode_bench.sh)\n", "llama2.c run.c");
    for (int k = 0; k < n_runc && our_text; k++)
        printf("greedy text of rlhf.c and %s on these weights: %s\n", strrchr(runc[k], '/') ? strrchr(runc[k], '/') + 1 : runc[k],
               strcmp(our_text, runc_text[k]) == 0 ? "identical" : "DIFFERENT");
    free(our_text);
    printf("\ncandidates (temperature 1, top-p 0.9, %d tokens each, one batched pass)\n", tokens);
    printf("%-40s %12s %12s\n", "", "time ms", "cand/s");
    printf("%-40s %12.1f %12.2f\n", "N = 1", best_t1, 1e3 / best_t1);
    printf("%-40s %12.1f %12.2f\n", "N = 4", best_t4, 4e3 / best_t4);
    printf("time(N=4) / time(N=1) = %.2f   (target <= 2.00)\n", best_t4 / best_t1);
    gen_packed_free(&packed);
    model_bundle_free(&b);
    if (!keep) remove(path);
    return 0;
}
