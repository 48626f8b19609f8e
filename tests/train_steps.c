/* train_steps.c — test helper for the PyTorch AdamW check (tests/reference/test_train_torch.py).
 *
 * Usage: train_steps --family gpt2|llama --layers L --dim C --heads NH --kv-heads NKV --ffn F
 *        --vocab V --context TMAX [--untied] --batch B --seq T --accum A --steps S --lr LR
 *        --min-lr LR --warmup W --weight-decay WD --grad-clip C --seed N --out DIR [--init-only]
 *
 * Creates a random model (model_init_random with the seed), saves it to DIR with checkpoint_save
 * (the initial weights the torch side loads), draws S steps of (A, B, T) random token batches
 * from an rng_t and writes them to DIR/batches.bin (int32: inputs (S, A, B, T) then targets
 * (S, A, B, T)), then runs S train_step calls and prints one JSON object on stdout:
 *   {"losses": [S], "lrs": [S], "grad_norms": [S], "clip": [S], "final_loss": x}
 * where final_loss is the loss of the first step's batches after the last update. With
 * --init-only it only writes the random model directory (used by the pretrain tests). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/formats/checkpoint.h"
#include "src/core/fileio.h"
#include "src/model/model.h"
#include "src/core/rng.h"
#include "src/train/train.h"
#include "tests/step_args.h"


int main(int argc, char **argv) {
    const char *out = arg(argc, argv, "--out", NULL);
    if (!out) {
        fprintf(stderr, "train_steps: --out DIR is required\n");
        return 2;
    }
    model_config c;
    step_args_config(argc, argv, &c);
    train_params tp;
    const int steps = step_args_train(argc, argv, &tp);
    const uint64_t seed = strtoull(arg(argc, argv, "--seed", "1"), NULL, 10);

    rlhf_error err = {0};
    model m = {0};
    train t = {0};
    int32_t *tokens = NULL;
    int rc = model_init(&m, &c, &err);
    if (rc) goto fail;
    rng_t rng;
    rng_seed(&rng, seed);
    model_init_random(&m, &rng);
    rc = checkpoint_save(&m, out, &err);
    if (rc) goto fail;
    if (flag(argc, argv, "--init-only")) { /* just the random model directory */
        model_free(&m);
        return 0;
    }

    const size_t per_step = (size_t)tp.accum * tp.batch * tp.context;
    tokens = malloc(2 * (size_t)steps * per_step * sizeof(int32_t));
    if (!tokens) {
        rc = rlhf_errorf(&err, RLHF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    int32_t *inputs = tokens, *targets = tokens + (size_t)steps * per_step;
    /* Windows of a token stream that mostly follows a fixed successor rule (so the loss has
     * something to learn and moves visibly in 10 steps); targets are the next inputs. */
    for (size_t r = 0; r < (size_t)steps * tp.accum * tp.batch; r++) {
        int32_t prev = (int32_t)rng_below(&rng, (uint64_t)c.vocab_size);
        for (int k = 0; k < tp.context; k++) {
            int32_t next = rng_float(&rng) < 0.8f ? (int32_t)((prev * 7 + 3) % c.vocab_size)
                                                  : (int32_t)rng_below(&rng, (uint64_t)c.vocab_size);
            inputs[r * tp.context + k] = prev;
            targets[r * tp.context + k] = next;
            prev = next;
        }
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/batches.bin", out);
    rc = file_write_atomic(path, tokens, 2 * (size_t)steps * per_step * sizeof(int32_t), &err);
    if (rc) goto fail;

    rc = train_init(&t, &m, &tp, &err);
    if (rc) goto fail;
    printf("{\"losses\": [");
    double *lr = calloc((size_t)steps, sizeof(double) * 3);
    if (!lr) {
        rc = rlhf_errorf(&err, RLHF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int s = 0; s < steps; s++) {
        train_step_result res;
        rc = train_step(&t, inputs + (size_t)s * per_step, targets + (size_t)s * per_step, &res, &err);
        if (rc) {
            free(lr);
            goto fail;
        }
        printf("%s%.9g", s ? ", " : "", res.loss);
        lr[s] = res.opt.lr;
        lr[steps + s] = res.opt.grad_norm;
        lr[2 * steps + s] = res.opt.clip_coef;
    }
    const char *names[3] = {"lrs", "grad_norms", "clip"};
    for (int k = 0; k < 3; k++) {
        printf("], \"%s\": [", names[k]);
        for (int s = 0; s < steps; s++) printf("%s%.9g", s ? ", " : "", lr[k * steps + s]);
    }
    free(lr);
    double final_loss;
    rc = train_eval(&t, inputs, targets, 1, &final_loss, &err);
    if (rc) goto fail;
    printf("], \"final_loss\": %.9g}\n", final_loss);
    train_free(&t);
    model_free(&m);
    free(tokens);
    return 0;
fail:
    fprintf(stderr, "train_steps: %s\n", err.msg);
    train_free(&t);
    model_free(&m);
    free(tokens);
    return 1;
}
