/* dpo_steps.c — test helper for the PyTorch check of the DPO head (tests/reference/dpo_torch.py).
 *
 * Usage: dpo_steps (model shape and training flags as tests/step_args.h) --loss-type TYPE
 *        [--beta B] [--label-smoothing LS] [--rpo-alpha A] --seed N --out DIR
 *
 * Makes a random policy (DIR/policy) and a different random reference model (DIR/ref), both
 * written as model directories; draws S steps of A micro-batches of B rows (B/2 pairs): row 2i
 * prompt + chosen, row 2i+1 the same prompt + rejected, ids 1..V-1, padded with 0, next-token
 * targets only on the reply (-1 elsewhere). The reference log-probabilities come from
 * dpo_row_logps on DIR/ref and go in the labels. DIR/batches.bin: int32 tokens (S, A, B, T),
 * int32 targets (S, A, B, T), float32 labels (S, A, B). Then:
 *   1. one forward + DPO head + backward on micro-batch (0, 0): its loss and every parameter's
 *      gradient go to DIR/grads.safetensors ("loss", "grad.NAME");
 *   2. S optimizer steps through train_loop_run.
 * stdout: one JSON object {"losses", "lrs", "grad_norms", "metrics" (of step 1: name -> value),
 * "first_loss", "final_loss"}. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/fileio.h"
#include "src/core/rng.h"
#include "src/formats/checkpoint.h"
#include "src/formats/safetensors.h"
#include "src/model/model.h"
#include "src/train/dpo.h"
#include "src/train/loop.h"
#include "src/train/train.h"
#include "tests/head_steps.h"
#include "tests/step_args.h"

typedef struct {
    int A, B, T;
    const int32_t *tokens, *targets;
    const float *labels;
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
    return RLHF_OK;
}

int main(int argc, char **argv) {
    const char *out = arg(argc, argv, "--out", NULL);
    if (!out) {
        fprintf(stderr, "dpo_steps: --out DIR is required\n");
        return 2;
    }
    model_config c;
    step_args_config(argc, argv, &c);
    train_params tp;
    const int S = step_args_train(argc, argv, &tp);
    const uint64_t seed = strtoull(arg(argc, argv, "--seed", "1"), NULL, 10);
    dpo_params dp;
    dpo_params_defaults(&dp);
    rlhf_error err = {0};
    if (dpo_loss_type_parse(arg(argc, argv, "--loss-type", "sigmoid"), &dp.loss_type, &err)) {
        fprintf(stderr, "dpo_steps: %s\n", err.msg);
        return 2;
    }
    dp.beta = (float)atof(arg(argc, argv, "--beta", "0.1"));
    dp.label_smoothing = (float)atof(arg(argc, argv, "--label-smoothing", "0"));
    dp.rpo_alpha = (float)atof(arg(argc, argv, "--rpo-alpha", "0"));
    const int A = tp.accum, B = tp.batch, T = tp.context;

    model m = {0}, ref = {0};
    train t = {0};
    dpo_head h = {0};
    train_batch buf = {0};
    int32_t *tokens = NULL;
    double *ref_lp = NULL;
    char path[4096];
    rng_t rng;
    rng_seed(&rng, seed);
    int rc = model_init(&m, &c, &err);
    if (!rc) rc = model_init(&ref, &c, &err);
    if (rc) goto done;
    model_init_random(&m, &rng);
    model_init_random(&ref, &rng);
    snprintf(path, sizeof path, "%s/policy", out);
    if ((rc = checkpoint_save(&m, path, &err))) goto done;
    snprintf(path, sizeof path, "%s/ref", out);
    if ((rc = checkpoint_save(&ref, path, &err))) goto done;

    const size_t rows = (size_t)S * A * B;
    tokens = malloc(2 * rows * T * sizeof(int32_t) + rows * sizeof(float));
    ref_lp = malloc((size_t)B * sizeof *ref_lp);
    if (!tokens || !ref_lp) {
        rc = rlhf_errorf(&err, RLHF_ERR_NOMEM, "out of memory");
        goto done;
    }
    int32_t *targets = tokens + rows * T;
    float *labels = (float *)(targets + rows * T);
    for (size_t r = 0; r < rows; r += 2) {
        /* a shared prompt, then two replies of their own lengths */
        const int np = 1 + (int)rng_below(&rng, (uint64_t)(T / 2));
        for (int side = 0; side < 2; side++) {
            const size_t row = r + (size_t)side;
            const int nr = 1 + (int)rng_below(&rng, (uint64_t)(T - np));
            const int len = r % (size_t)B == 0 && side == 0 ? T : np + nr; /* one full row per micro-batch */
            for (int k = 0; k < T; k++) {
                if (side == 1 && k < np) tokens[row * T + k] = tokens[(row - 1) * T + k];
                else tokens[row * T + k] = k < len ? 1 + (int32_t)rng_below(&rng, (uint64_t)(c.vocab_size - 1)) : 0;
            }
            for (int k = 0; k < T; k++)
                targets[row * T + k] = k + 1 >= np && k + 1 < len ? tokens[row * T + k + 1] : -1;
        }
    }
    if ((rc = train_init(&t, &m, &tp, &err))) goto done;
    if ((rc = dpo_head_init(&h, &dp, B, T, &err))) goto done;
    if ((rc = train_batch_alloc(&buf, B, T, &err))) goto done;
    /* the reference pass: every row's reply log-probability under DIR/ref */
    for (size_t r0 = 0; r0 < rows; r0 += (size_t)B) {
        memcpy(buf.tokens, tokens + r0 * T, (size_t)B * T * sizeof(int32_t));
        memcpy(buf.targets, targets + r0 * T, (size_t)B * T * sizeof(int32_t));
        buf.B = B;
        buf.T = T;
        if ((rc = dpo_row_logps(&ref, &t.acts, &buf, ref_lp, &err))) goto done;
        for (int i = 0; i < B; i++) labels[r0 + (size_t)i] = (float)ref_lp[i];
    }
    snprintf(path, sizeof path, "%s/batches.bin", out);
    if ((rc = file_write_atomic(path, tokens, 2 * rows * T * sizeof(int32_t) + rows * sizeof(float), &err))) goto done;

    data_ctx dc = {A, B, T, tokens, targets, labels};
    train_head head = dpo_train_head(&h);
    rc = head_steps_run(&m, &t, head, (train_data){.fill = fill, .ctx = &dc}, &buf, S, out, &err);
done:
    if (rc) fprintf(stderr, "dpo_steps: %s\n", err.msg);
    train_batch_free(&buf);
    free(ref_lp);
    dpo_head_free(&h);
    train_free(&t);
    model_free(&m);
    model_free(&ref);
    free(tokens);
    return rc ? 1 : 0;
}
