/* bench_grpo.c — one GRPO iteration timed by phase, for G = 1, 2, 4, 8 completions per prompt on
 * the same P prompts (issue 15: "G = 8 candidates taking at most 2.5x the time of one"):
 *
 *   generation  rollout_make: one gen_run_batch of every prompt's G sampled candidates (each
 *               prompt prefilled once, all candidates stepping together, finished ones dropping
 *               out: what rlhf grpo runs), rows built from them; its own reward is a
 *               substring test that costs nothing, so the verifier / reward model is timed apart
 *   scoring     rollout_score on the same completions: the verifier (--reward-fn, default toy) and,
 *               with --reward DIR, the reward model (its own tokenizer, prompt as the policy saw it)
 *   update      group advantages, the old log-probabilities by the training forward pass
 *               (grpo_token_logps, as grpo_run computes them) and one optimizer step: forward, the
 *               GRPO head, backward, AdamW (TRL's num_iterations = 1, one micro-batch of P*G rows)
 *
 * Generation ends at EOS as in a real run, so the batch runs until its longest candidate ends:
 * the table prints the tokens generated (row-steps) and the decoding steps (the longest
 * completion). A second measurement, "decoder at fixed length", runs the same gen_run_batch
 * call with EOS disabled (every candidate max-new-tokens long): the batched decoder's cost of
 * P*G rows against P, without the longest-of-G effect.
 *
 * The PASS/FAIL line judges generation (the decoder's batching is what G changes there; scoring
 * and the update do G times the work by construction) and the whole iteration's ratio is
 * printed beside it. The fixed-length ratio is a diagnostic: it shows what P*G rows per step
 * cost against P when every row runs to the end, which on a model whose weights stay in cache
 * is compute and grows with the rows.
 *
 * Fixed seeds (prompt j is sampled with seed ^ j<<32, so candidate 0 of every G is the same
 * sample); the parameters are restored after every update so every iteration samples from the
 * same policy; one warm-up round of every G is not counted; every phase is the best of --repeats
 * rounds (each round runs G = 1, 2, 4, 8 in turn, so load drift hits all of them alike).
 *
 * Usage: bench_grpo [--model PATH] [--reward RM_DIR] [--reward-fn toy|contains:TEXT] [--prompts P]
 *                   [--max-new-tokens N] [--groups 1,2,4,8] [--repeats R] [--temperature T]
 *                   [--seed S] [--no-fixed]
 *   --model  an HF directory (default: models/default) or a llama2.c .bin / .gguf file; a model
 *            without a tokenizer (stories260K.bin) gets prompts of made-up token ids and its
 *            completions score as empty texts
 * Prompts are task-world prompts (src/world/world.h, the verifier's), one per family in turn. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_common.h"
#include "src/core/blas_kernel.h"
#include "src/formats/model_load.h"
#include "src/gen/generate.h"
#include "src/train/grpo.h"
#include "src/train/loop.h"
#include "src/train/rollout.h"
#include "src/train/train.h"
#include "src/world/world.h"

#ifndef DEFAULT_MODEL
#define DEFAULT_MODEL "models/default"
#endif

#define MAX_GROUPS 8
#define TARGET_RATIO 2.5

/* One iteration's phases (seconds) and what generation produced. */
typedef struct {
    double gen, fixed, fixed_prefill, fixed_decode, score_fn, score_rm, old_lp, step;
    long tokens, dec_steps;
} phases;

static double total_of(const phases *p) { return p->gen + p->score_fn + p->score_rm + p->old_lp + p->step; }

/* The completions rollout_make hands its sink, in row order. */
typedef struct {
    char **texts;
    int n, cap;
} capture;

static int capture_sink(void *ctx, const rollout_record *r, rlhf_error *err) {
    capture *c = ctx;
    if (c->n >= c->cap) return rlhf_errorf(err, RLHF_ERR_INVALID, "more completions than rows");
    if (!(c->texts[c->n] = strdup(r->completion))) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    c->n++;
    return RLHF_OK;
}

static void capture_clear(capture *c) {
    for (int i = 0; i < c->n; i++) free(c->texts[i]);
    c->n = 0;
}

typedef struct {
    model_bundle b;
    int P, max_new, T, Rmax, fixed;
    float temperature;
    uint64_t seed;
    char **user;                 /* (P) world prompts as given */
    rollout_ids *ids;            /* (P) as the policy sees them */
    size_t *idx;                 /* 0..P-1 */
    uint64_t *seeds;             /* (P) */
    rollout_scorer gen_scorer;   /* the free reward used inside rollout_make */
    rollout_scorer fn_scorer;    /* the verifier */
    rollout_scorer rm_scorer;    /* --reward */
    rollout_batch rb;
    capture cap;
    const char **pt_fn, **pt_rm; /* (Rmax) prompt texts per row */
    double *r_fn, *r_rm, *adv;   /* (Rmax) */
    train t;
    train_batch tb;
    grpo_head h;
    float *snapshot;             /* the policy's starting parameters */
} bench;

/* Prompt ids for a model without a tokenizer: BOS (id 1 when there is one) then a few ids drawn
 * from the prompt's bytes. */
static int synth_ids(const bench *B, int j, rollout_ids *out, rlhf_error *err) {
    const int V = B->b.m.config.vocab_size, n = 8;
    out->ids = malloc(n * sizeof *out->ids);
    out->text = strdup(B->user[j]);
    if (!out->ids || !out->text) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    out->ids[0] = V > 1 ? 1 : 0;
    for (int k = 1; k < n; k++) out->ids[k] = (int32_t)((unsigned char)B->user[j][k % strlen(B->user[j])] % V);
    out->n = n;
    return RLHF_OK;
}

static int bench_open(bench *B, const char *model_path, const char *reward_dir, const char *reward_spec, int Gmax,
                      rlhf_error *err) {
    int rc = model_bundle_load(&B->b, model_path, err);
    if (rc) return rc;
    if (B->b.m.config.num_labels > 0) return rlhf_errorf(err, RLHF_ERR_INVALID, "%s is a classifier, not a policy", model_path);
    B->user = calloc((size_t)B->P, sizeof *B->user);
    B->idx = malloc((size_t)B->P * sizeof *B->idx);
    B->seeds = malloc((size_t)B->P * sizeof *B->seeds);
    if (!B->user || !B->idx || !B->seeds) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    const int nf = world_family_count();
    for (int j = 0; j < B->P; j++) {
        world_item it;
        if ((rc = world_item_make(j % nf, WORLD_SPLIT_TRAIN, (uint64_t)(j / nf), &it, err))) return rc;
        if (!(B->user[j] = strdup(it.prompt))) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
        B->idx[j] = (size_t)j;
        B->seeds[j] = B->seed ^ ((uint64_t)j << 32);
    }
    int longest = 1;
    if (B->b.tok) {
        if ((rc = rollout_prompts_encode(&B->b, (const char *const *)B->user, (size_t)B->P, &B->ids, &longest, err))) return rc;
    } else {
        if (!(B->ids = calloc((size_t)B->P, sizeof *B->ids))) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
        for (int j = 0; j < B->P; j++) {
            if ((rc = synth_ids(B, j, &B->ids[j], err))) return rc;
            if (B->ids[j].n > longest) longest = B->ids[j].n;
        }
    }
    if (longest + B->max_new > B->b.m.config.context)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "the longest prompt (%d tokens) + max-new-tokens %d exceeds the context %d",
                           longest, B->max_new, B->b.m.config.context);
    B->T = longest + B->max_new - 1;
    B->Rmax = B->P * Gmax;
    /* the rewards: a free one inside rollout_make, the verifier and the reward model timed apart */
    B->gen_scorer.fn.kind = 1;
    snprintf(B->gen_scorer.fn.text, sizeof B->gen_scorer.fn.text, "%s", "\x1f");
    if ((rc = reward_fn_parse(reward_spec, &B->fn_scorer.fn, err))) return rc;
    if (reward_dir && (rc = rollout_scorer_open_rm(&B->rm_scorer, reward_dir, err))) return rc;
    if ((rc = rollout_batch_init(&B->rb, B->Rmax, B->T, err))) return rc;
    B->cap.cap = B->Rmax;
    B->cap.texts = calloc((size_t)B->Rmax, sizeof *B->cap.texts);
    B->pt_fn = calloc((size_t)B->Rmax, sizeof *B->pt_fn);
    B->pt_rm = calloc((size_t)B->Rmax, sizeof *B->pt_rm);
    B->r_fn = calloc((size_t)B->Rmax, sizeof *B->r_fn);
    B->r_rm = calloc((size_t)B->Rmax, sizeof *B->r_rm);
    B->adv = calloc((size_t)B->Rmax, sizeof *B->adv);
    B->snapshot = malloc(B->b.m.n_floats * sizeof *B->snapshot);
    if (!B->cap.texts || !B->pt_fn || !B->pt_rm || !B->r_fn || !B->r_rm || !B->adv || !B->snapshot)
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    memcpy(B->snapshot, B->b.m.params, B->b.m.n_floats * sizeof *B->snapshot);
    /* the trainer as grpo_run sets it up: one micro-batch of P*G rows, lr 1e-6, no decay */
    train_params tp;
    train_params_defaults(&tp);
    tp.batch = B->Rmax;
    tp.context = B->T;
    tp.optim.lr = 1e-6f;
    tp.optim.min_lr = 0.0f;
    tp.optim.warmup_steps = 0;
    tp.optim.weight_decay = 0.0f;
    tp.optim.total_steps = 1000000;
    if ((rc = train_init(&B->t, &B->b.m, &tp, err))) return rc;
    if ((rc = train_batch_alloc(&B->tb, B->Rmax, B->T, err))) return rc;
    grpo_params gp;
    grpo_params_defaults(&gp);
    gp.max_completion = B->max_new;
    return grpo_head_init(&B->h, &gp, B->Rmax, B->T, err);
}

static void bench_close(bench *B) {
    grpo_head_free(&B->h);
    train_batch_free(&B->tb);
    train_free(&B->t);
    capture_clear(&B->cap);
    free(B->cap.texts);
    free((void *)B->pt_fn);
    free((void *)B->pt_rm);
    free(B->r_fn);
    free(B->r_rm);
    free(B->adv);
    free(B->snapshot);
    rollout_batch_free(&B->rb);
    rollout_scorer_free(&B->rm_scorer);
    rollout_prompts_free(B->ids, (size_t)B->P);
    for (int j = 0; B->user && j < B->P; j++) free(B->user[j]);
    free(B->user);
    free(B->idx);
    free(B->seeds);
    model_bundle_free(&B->b);
}

/* The rollout's gen_run_batch call again with EOS disabled: every candidate max_new tokens long;
 * the total and the prefill and decoding-step times it reports (seconds). */
static int decode_fixed(bench *B, int G, phases *ph, rlhf_error *err) {
    const int P = B->P;
    const int32_t **pids = calloc((size_t)P, sizeof *pids);
    int *plen = calloc((size_t)P, sizeof *plen);
    gen_result *res = calloc((size_t)P, sizeof *res);
    if (!pids || !plen || !res) {
        free(pids);
        free(plen);
        free(res);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    }
    for (int j = 0; j < P; j++) {
        pids[j] = B->ids[j].ids;
        plen[j] = B->ids[j].n;
    }
    const rollout_gen g = {B->temperature, B->max_new, G, NULL};
    gen_params gp;
    rollout_gen_params(&g, &gp);
    gp.n_eos = 0;
    const double t0 = bench_now_s();
    int rc = gen_run_batch(&B->b.m, B->b.tok, pids, plen, P, &gp, B->seeds, res, err);
    ph->fixed = bench_now_s() - t0;
    if (!rc) {
        for (int j = 0; j < P; j++) ph->fixed_prefill += 1e-3 * res[j].prefill_ms;
        ph->fixed_decode = 1e-3 * res[0].decode_ms;
    }
    for (int j = 0; j < P; j++) gen_result_free(&res[j]);
    free(pids);
    free(plen);
    free(res);
    return rc;
}

/* One GRPO iteration with G completions per prompt, timed by phase. */
static int iteration(bench *B, int G, phases *ph, rlhf_error *err) {
    const int P = B->P, R = P * G;
    const rollout_gen g = {B->temperature, B->max_new, G, NULL};
    memset(ph, 0, sizeof *ph);
    capture_clear(&B->cap);
    /* generation */
    double t0 = bench_now_s();
    int rc = rollout_make(&B->b, B->ids, (const char *const *)B->user, B->idx, P, &g, B->seeds, &B->gen_scorer, capture_sink,
                          &B->cap, 0, &B->rb, err);
    ph->gen = bench_now_s() - t0;
    if (rc) return rc;
    if (B->cap.n != R) return rlhf_errorf(err, RLHF_ERR_INVALID, "%d completions for %d rows", B->cap.n, R);
    for (int r = 0; r < R; r++) {
        const int n = B->rb.n_comp[r];
        ph->tokens += n;
        if (n > ph->dec_steps) ph->dec_steps = n; /* one batch: it steps until its longest ends */
    }
    if (B->fixed && (rc = decode_fixed(B, G, ph, err))) return rc;
    /* scoring: the verifier reads the user prompt, a reward model the prompt as the policy saw it */
    for (int r = 0; r < R; r++) {
        B->pt_fn[r] = B->user[B->rb.prompt[r]];
        B->pt_rm[r] = B->ids[B->rb.prompt[r]].text;
    }
    const char *const *comps = (const char *const *)B->cap.texts;
    t0 = bench_now_s();
    if ((rc = rollout_score(&B->fn_scorer, B->pt_fn, comps, B->rb.eos, R, B->r_fn, err))) return rc;
    ph->score_fn = bench_now_s() - t0;
    if (B->rm_scorer.use_rm) {
        t0 = bench_now_s();
        if ((rc = rollout_score(&B->rm_scorer, B->pt_rm, comps, B->rb.eos, R, B->r_rm, err))) return rc;
        ph->score_rm = bench_now_s() - t0;
    }
    /* update: advantages, rows compacted to the longest, old log-probabilities, one step */
    t0 = bench_now_s();
    grpo_advantages(B->rm_scorer.use_rm ? B->r_rm : B->r_fn, P, G, GRPO_ADV_GROUP, GRPO_SCALE_GROUP, B->adv, NULL);
    const int T = B->rb.maxT;
    train_batch *tb = &B->tb;
    tb->B = R;
    tb->T = T;
    for (int r = 0; r < R; r++) {
        memcpy(tb->tokens + (size_t)r * T, B->rb.tokens + (size_t)r * B->T, (size_t)T * sizeof *tb->tokens);
        memcpy(tb->targets + (size_t)r * T, B->rb.targets + (size_t)r * B->T, (size_t)T * sizeof *tb->targets);
        tb->labels[r] = (float)B->adv[r];
    }
    model *m = &B->b.m;
    if ((rc = grpo_token_logps(m, &B->t.acts, tb->tokens, tb->targets, R, T, B->h.old_lp, err))) return rc;
    const double t1 = bench_now_s();
    ph->old_lp = t1 - t0;
    const train_head head = grpo_train_head(&B->h);
    const float *dl = NULL, *dh = NULL;
    train_head_out ho = {0};
    train_zero_grads(&B->t);
    if ((rc = model_forward(m, &B->t.acts, tb->tokens, R, T, err))) return rc;
    if ((rc = head.loss(head.self, m, &B->t.acts, tb, 1, &dl, &dh, &ho, err))) return rc;
    if ((rc = model_backward(m, &B->t.acts, dl, dh, err))) return rc;
    if ((rc = optim_step(&B->t.opt, B->t.params, B->t.grads, 1.0f, NULL, err))) return rc;
    ph->step = bench_now_s() - t1;
    if (!isfinite(ho.loss)) return rlhf_errorf(err, RLHF_ERR_NUMERIC, "G %d: the GRPO loss is not finite", G);
    /* the next iteration samples from the same policy */
    memcpy(m->params, B->snapshot, m->n_floats * sizeof *m->params);
    return RLHF_OK;
}

static void keep_best(phases *best, const phases *p, int first) {
    if (first) {
        *best = *p;
        return;
    }
    /* each phase does the same work every round (same seeds, same policy): its best is its own */
    best->gen = fmin(best->gen, p->gen);
    best->fixed = fmin(best->fixed, p->fixed);
    best->fixed_prefill = fmin(best->fixed_prefill, p->fixed_prefill);
    best->fixed_decode = fmin(best->fixed_decode, p->fixed_decode);
    best->score_fn = fmin(best->score_fn, p->score_fn);
    best->score_rm = fmin(best->score_rm, p->score_rm);
    best->old_lp = fmin(best->old_lp, p->old_lp);
    best->step = fmin(best->step, p->step);
}

static void usage(void) {
    fprintf(stderr, "usage: bench_grpo [--model PATH] [--reward RM_DIR] [--reward-fn toy|contains:TEXT] [--prompts P] "
                    "[--max-new-tokens N] [--groups 1,2,4,8] [--repeats R] [--temperature T] [--seed S] [--no-fixed]\n");
}

int main(int argc, char **argv) {
    blas_kernel_startup(argv);
    const char *model_path = DEFAULT_MODEL, *reward_dir = NULL, *reward_spec = "toy", *groups_s = "1,2,4,8";
    bench B;
    memset(&B, 0, sizeof B);
    B.P = 4;
    B.max_new = 64;
    B.temperature = 1.0f;
    B.seed = 42;
    B.fixed = 1;
    int repeats = 5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--no-fixed") == 0) {
            B.fixed = 0;
            continue;
        }
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (strcmp(a, "--model") == 0) model_path = v;
        else if (strcmp(a, "--reward") == 0) reward_dir = v;
        else if (strcmp(a, "--reward-fn") == 0) reward_spec = v;
        else if (strcmp(a, "--prompts") == 0) B.P = atoi(v);
        else if (strcmp(a, "--max-new-tokens") == 0) B.max_new = atoi(v);
        else if (strcmp(a, "--groups") == 0) groups_s = v;
        else if (strcmp(a, "--repeats") == 0) repeats = atoi(v);
        else if (strcmp(a, "--temperature") == 0) B.temperature = (float)atof(v);
        else if (strcmp(a, "--seed") == 0) B.seed = strtoull(v, NULL, 10);
        else {
            usage();
            return 2;
        }
    }
    int groups[MAX_GROUPS], n_groups = 0, Gmax = 1;
    for (const char *p = groups_s; *p && n_groups < MAX_GROUPS;) {
        char *end;
        const long g = strtol(p, &end, 10);
        if (end == p || g < 1 || g > 256) break;
        groups[n_groups++] = (int)g;
        if (g > Gmax) Gmax = (int)g;
        p = *end == ',' ? end + 1 : end;
    }
    if (n_groups == 0 || B.P < 1 || B.max_new < 1 || repeats < 1 || !(B.temperature > 0)) {
        usage();
        return 2;
    }
    rlhf_error err = {0};
    if (bench_open(&B, model_path, reward_dir, reward_spec, Gmax, &err)) {
        fprintf(stderr, "bench_grpo: %s\n", err.msg);
        bench_close(&B);
        return 1;
    }
    const model_config *c = &B.b.m.config;
    printf("threads: OpenMP %d, OpenBLAS %d (%s, kernel %s)\n", omp_get_max_threads(), openblas_get_num_threads(),
           openblas_get_config(), openblas_get_corename());
    printf("model: %s (%s d%d L%d V%d%s); reward: %s%s%s\n", model_path, model_family_name(c->family), c->dim, c->n_layers,
           c->vocab_size, B.b.tok ? "" : ", no tokenizer: made-up prompt ids", reward_spec,
           reward_dir ? " + reward model " : "", reward_dir ? reward_dir : "");
    printf("GRPO iteration: %d prompts x G, max-new-tokens %d, temperature %g, seed %llu; best of %d rounds after a "
           "warm-up round\n",
           B.P, B.max_new, B.temperature, (unsigned long long)B.seed, repeats);
    phases best[MAX_GROUPS];
    int rc = 0;
    for (int round = 0; round <= repeats && !rc; round++)
        for (int k = 0; k < n_groups && !rc; k++) {
            phases p;
            if ((rc = iteration(&B, groups[k], &p, &err))) fprintf(stderr, "bench_grpo: G %d: %s\n", groups[k], err.msg);
            else if (round > 0) keep_best(&best[k], &p, round == 1); /* round 0: the warm-up */
        }
    if (rc) {
        bench_close(&B);
        return 1;
    }
    printf("%3s %5s %7s %6s %11s %8s %11s %9s %11s %9s %12s\n", "G", "rows", "tokens", "steps", "generate s", "tok/s",
           "verifier s", "reward s", "old-logp s", "step s", "iteration s");
    for (int k = 0; k < n_groups; k++) {
        const phases *p = &best[k];
        printf("%3d %5d %7ld %6ld %11.4f %8.0f %11.5f %9.4f %11.4f %9.4f %12.4f\n", groups[k], B.P * groups[k], p->tokens,
               p->dec_steps, p->gen, p->tokens / p->gen, p->score_fn, p->score_rm, p->old_lp, p->step, total_of(p));
    }
    if (B.fixed) {
        printf("decoder at fixed length (the same gen_run_batch call, EOS off: every candidate %d tokens)\n", B.max_new);
        printf("%3s %7s %9s %10s %9s %12s %8s\n", "G", "tokens", "total s", "prefill s", "decode s", "ms per step", "tok/s");
        for (int k = 0; k < n_groups; k++) {
            const phases *p = &best[k];
            const long tokens = (long)B.P * groups[k] * B.max_new;
            printf("%3d %7ld %9.4f %10.4f %9.4f %12.3f %8.0f\n", groups[k], tokens, p->fixed, p->fixed_prefill, p->fixed_decode,
                   1e3 * p->fixed_decode / (double)B.max_new, tokens / p->fixed);
        }
    }
    int i1 = -1, i8 = -1;
    for (int k = 0; k < n_groups; k++) {
        if (groups[k] == 1) i1 = k;
        if (groups[k] == 8) i8 = k;
    }
    if (i1 >= 0 && i8 >= 0) {
        const phases *a = &best[i1], *z = &best[i8];
        const double rg = z->gen / a->gen, rs = (double)z->dec_steps / (double)a->dec_steps;
        printf("G=8 / G=1, the iteration: generation %.2fx (target <= %.1fx: %s) with %.2fx the decoding steps (the batch "
               "runs until its longest completion ends), %.2fx the time per step; scoring %.2fx; update %.2fx (8x the rows); "
               "iteration %.2fx\n",
               rg, TARGET_RATIO, rg <= TARGET_RATIO ? "PASS" : "FAIL", rs, rg / rs,
               (z->score_fn + z->score_rm) / (a->score_fn + a->score_rm), (z->old_lp + z->step) / (a->old_lp + a->step),
               total_of(z) / total_of(a));
        if (B.fixed) {
            const double rf = z->fixed / a->fixed;
            printf("G=8 / G=1, decoder at fixed length (diagnostic: %d rows per step against %d, every row %d tokens): %.2fx; "
                   "prefill %.2fx, decoding steps %.2fx\n",
                   B.P * 8, B.P, B.max_new, rf, z->fixed_prefill / a->fixed_prefill, z->fixed_decode / a->fixed_decode);
        }
    }
    bench_close(&B);
    return 0;
}
