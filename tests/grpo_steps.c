/* grpo_steps.c — test helper for the PyTorch check of the GRPO head (tests/reference/grpo_torch.py).
 *
 * Usage: grpo_steps (model shape and training flags as tests/step_args.h) --loss-type AGG
 *        [--beta B] [--epsilon E] [--epsilon-high E] [--max-completion N]
 *        [--advantage group|rloo --group G] [--lora-rank R --lora-alpha A --lora-targets LIST]
 *        --seed N --out DIR
 *
 * --advantage: the labels are not drawn but computed by grpo_advantages (scale group) from
 * rewards drawn in groups of G rows (0/1 and in-between values), which DIR/batches.bin then
 * carries after everything else as float32 rewards (S, A, B). With --lora-rank the policy is a
 * LoRA adapter on DIR/policy (tests/lora_steps.h: B random, saved to DIR/adapter), the
 * reference is the base with the adapter off (no DIR/ref) and the gradients are the adapter's.
 *
 * Makes a random policy (DIR/policy) and a different random reference model (DIR/ref); draws S
 * steps of A micro-batches of B completion rows (prompt then completion, ids 1..V-1, padded with
 * 0, targets only on the completion), an advantage per row (labels), and per position the old
 * log-probabilities: the policy's own (grpo_token_logps) plus noise of +-0.3, so the clipping
 * engages, and the reference's (grpo_token_logps on DIR/ref). DIR/batches.bin: int32 tokens,
 * int32 targets (S, A, B, T), float32 labels (S, A, B), float32 old and ref (S, A, B, T). Then:
 *   1. one forward + GRPO head + backward on micro-batch (0, 0): loss and every gradient to
 *      DIR/grads.safetensors;
 *   2. S optimizer steps through train_loop_run.
 * stdout: {"losses", "lrs", "grad_norms", "metrics" (step 1), "first_loss", "final_loss"}. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/fileio.h"
#include "src/core/rng.h"
#include "src/formats/checkpoint.h"
#include "src/formats/safetensors.h"
#include "src/model/model.h"
#include "src/train/grpo.h"
#include "src/train/loop.h"
#include "src/train/train.h"
#include "tests/head_steps.h"
#include "tests/lora_steps.h"
#include "tests/step_args.h"

typedef struct {
    int A, B, T;
    const int32_t *tokens, *targets;
    const float *labels, *old, *ref;
    grpo_head *h;
} data_ctx;

static int fill(void *vctx, long step, int micro, rng_t *rng, train_batch *b, rlhf_error *err) {
    (void)rng;
    (void)err;
    const data_ctx *d = vctx;
    const size_t row0 = ((size_t)step * d->A + (size_t)micro) * d->B;
    b->B = d->B;
    b->T = d->T;
    memcpy(b->tokens, d->tokens + row0 * d->T, (size_t)d->B * d->T * sizeof(int32_t));
    memcpy(b->targets, d->targets + row0 * d->T, (size_t)d->B * d->T * sizeof(int32_t));
    memcpy(b->labels, d->labels + row0, (size_t)d->B * sizeof(float));
    memcpy(d->h->old_lp, d->old + row0 * d->T, (size_t)d->B * d->T * sizeof(float));
    memcpy(d->h->ref_lp, d->ref + row0 * d->T, (size_t)d->B * d->T * sizeof(float));
    return RLHF_OK;
}

int main(int argc, char **argv) {
    const char *out = arg(argc, argv, "--out", NULL);
    if (!out) {
        fprintf(stderr, "grpo_steps: --out DIR is required\n");
        return 2;
    }
    model_config c;
    step_args_config(argc, argv, &c);
    train_params tp;
    const int S = step_args_train(argc, argv, &tp);
    const uint64_t seed = strtoull(arg(argc, argv, "--seed", "1"), NULL, 10);
    grpo_params gp;
    grpo_params_defaults(&gp);
    rlhf_error err = {0};
    if (grpo_loss_agg_parse(arg(argc, argv, "--loss-type", "grpo"), &gp.loss_agg, &err)) {
        fprintf(stderr, "grpo_steps: %s\n", err.msg);
        return 2;
    }
    gp.beta = (float)atof(arg(argc, argv, "--beta", "0"));
    gp.epsilon = (float)atof(arg(argc, argv, "--epsilon", "0.2"));
    gp.epsilon_high = (float)atof(arg(argc, argv, "--epsilon-high", arg(argc, argv, "--epsilon", "0.2")));
    gp.max_completion = atoi(arg(argc, argv, "--max-completion", "16"));
    const int A = tp.accum, B = tp.batch, T = tp.context;

    lora_params lrp;
    lora_steps_args(argc, argv, &lrp);
    const char *adv_kind = arg(argc, argv, "--advantage", NULL);
    const int G = atoi(arg(argc, argv, "--group", "2"));
    if (adv_kind && (G < 2 || B % G)) {
        fprintf(stderr, "grpo_steps: --group must be >= 2 and divide --batch\n");
        return 2;
    }
    model m = {0}, ref = {0};
    lora lo = {0};
    train t = {0};
    grpo_head h = {0};
    train_batch buf = {0};
    int32_t *tokens = NULL;
    float *old = NULL, *reflp = NULL;
    char path[4096];
    rng_t rng;
    rng_seed(&rng, seed);
    int rc = model_init(&m, &c, &err);
    if (!rc && lrp.rank == 0) rc = model_init(&ref, &c, &err);
    if (rc) goto done;
    model_init_random(&m, &rng);
    snprintf(path, sizeof path, "%s/policy", out);
    if ((rc = checkpoint_save(&m, path, &err))) goto done;
    if (lrp.rank == 0) {
        model_init_random(&ref, &rng);
        snprintf(path, sizeof path, "%s/ref", out);
        if ((rc = checkpoint_save(&ref, path, &err))) goto done;
    }

    const size_t rows = (size_t)S * A * B;
    const size_t bytes = 2 * rows * T * sizeof(int32_t) + rows * sizeof(float) + 2 * rows * T * sizeof(float);
    tokens = malloc(bytes + rows * sizeof(float));
    if (!tokens) {
        rc = rlhf_errorf(&err, RLHF_ERR_NOMEM, "out of memory");
        goto done;
    }
    int32_t *targets = tokens + rows * T;
    float *labels = (float *)(targets + rows * T);
    old = (float *)(labels + rows);
    reflp = old + rows * T;
    for (size_t r = 0; r < rows; r++) {
        const int np = 1 + (int)rng_below(&rng, (uint64_t)(T / 2));
        const int len = r % (size_t)B == 0 ? T : np + 1 + (int)rng_below(&rng, (uint64_t)(T - np));
        for (int k = 0; k < T; k++)
            tokens[r * T + k] = k < len ? 1 + (int32_t)rng_below(&rng, (uint64_t)(c.vocab_size - 1)) : 0;
        for (int k = 0; k < T; k++) targets[r * T + k] = k + 1 >= np && k + 1 < len ? tokens[r * T + k + 1] : -1;
        labels[r] = (float)(2.0 * rng_float(&rng) - 1.0);
    }
    float *rewards = reflp + rows * T; /* --advantage: after everything else in batches.bin */
    if (adv_kind) {
        double rw[256], adv[256], fz;
        if (B > 256) {
            rc = rlhf_errorf(&err, RLHF_ERR_INVALID, "grpo_steps: at most 256 rows per micro-batch");
            goto done;
        }
        for (size_t r0 = 0; r0 < rows; r0 += (size_t)B) {
            for (int i = 0; i < B; i++) {
                const uint64_t k = rng_below(&rng, 3);
                rw[i] = k == 2 ? rng_float(&rng) : (double)k;
                rewards[r0 + (size_t)i] = (float)rw[i];
            }
            grpo_advantages(rw, B / G, G, strcmp(adv_kind, "rloo") == 0 ? GRPO_ADV_RLOO : GRPO_ADV_GROUP, GRPO_SCALE_GROUP,
                            adv, &fz);
            for (int i = 0; i < B; i++) labels[r0 + (size_t)i] = (float)adv[i];
        }
    }
    if (lrp.rank > 0) rc = lora_steps_init(&m, &lo, &lrp, &rng, out, &t, &tp, &err);
    else rc = train_init(&t, &m, &tp, &err);
    if (rc) goto done;
    if ((rc = grpo_head_init(&h, &gp, B, T, &err))) goto done;
    if ((rc = train_batch_alloc(&buf, B, T, &err))) goto done;
    /* old = the policy's own log-probabilities, perturbed; ref = DIR/ref's */
    for (size_t r0 = 0; r0 < rows; r0 += (size_t)B) {
        if ((rc = grpo_token_logps(&m, &t.acts, tokens + r0 * T, targets + r0 * T, B, T, old + r0 * T, &err))) goto done;
        if (lrp.rank > 0) lora_set_enabled(&lo, 0); /* the reference: the base with the adapter off */
        rc = grpo_token_logps(lrp.rank > 0 ? &m : &ref, &t.acts, tokens + r0 * T, targets + r0 * T, B, T, reflp + r0 * T, &err);
        if (lrp.rank > 0) lora_set_enabled(&lo, 1);
        if (rc) goto done;
    }
    for (size_t i = 0; i < rows * T; i++) old[i] += targets[i] >= 0 ? (float)(0.6 * rng_float(&rng) - 0.3) : 0.0f;
    snprintf(path, sizeof path, "%s/batches.bin", out);
    if ((rc = file_write_atomic(path, tokens, bytes + (adv_kind ? rows * sizeof(float) : 0), &err))) goto done;

    data_ctx dc = {A, B, T, tokens, targets, labels, old, reflp, &h};
    train_head head = grpo_train_head(&h);
    rc = head_steps_run(&m, &t, head, (train_data){.fill = fill, .ctx = &dc}, &buf, S, out, &err);
done:
    if (rc) fprintf(stderr, "grpo_steps: %s\n", err.msg);
    train_batch_free(&buf);
    grpo_head_free(&h);
    train_free(&t);
    if (m.lora) lora_detach(&m);
    lora_free(&lo);
    model_free(&m);
    model_free(&ref);
    free(tokens);
    return rc ? 1 : 0;
}
