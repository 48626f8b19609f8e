/* kto_steps.c — test helper for the PyTorch check of the KTO head (tests/reference/kto_torch.py).
 *
 * Usage: kto_steps (model shape and training flags as tests/step_args.h; --batch = rows)
 *        [--loss-type kto|apo_zero_unpaired] [--beta B] [--desirable-weight W] [--undesirable-weight W]
 *        [--lora-rank R --lora-alpha A --lora-targets LIST] --seed N --out DIR
 *
 * Makes a random policy (DIR/policy, a model directory) and its reference: a second random model
 * (DIR/ref) for full fine-tuning, or with LoRA the base with the adapter off (the adapter's B is
 * drawn nonzero, DIR/adapter, so the two differ and A's gradients are tested). Draws S steps of A
 * micro-batches of n examples (B = 2n rows with the KTO loss, n otherwise): row i prompt_i +
 * completion_i, row n+i prompt_i + completion_{i-1} (the first takes the last's: TRL's KL rows),
 * ids 1..V-1, padded with 0, targets only on the completion; a random thumbs-up/down per example
 * (micro-batch (0, 0) has both). labels = the reference's row log-probabilities (dpo_row_logps).
 * DIR/batches.bin: int32 tokens (S, A, B, T), int32 targets (S, A, B, T), float32 labels
 * (S, A, B), int32 desirable (S, A, B; rows >= n are 0). Micro-batches give the example rows to
 * the loop and the KL rows to the head (kto_head.kl_*). Then:
 *   1. one forward + KTO head + backward on micro-batch (0, 0): DIR/grads.safetensors holds
 *      "loss" and the gradient of every trained tensor under its own name (model or PEFT names);
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
#include "src/model/lora.h"
#include "src/model/model.h"
#include "src/train/dpo.h"
#include "src/train/kto.h"
#include "src/train/loop.h"
#include "src/train/train.h"
#include "tests/step_args.h"

typedef struct {
    int A, B, T;
    const int32_t *tokens, *targets, *desirable;
    const float *labels;
    kto_head *h;
} data_ctx;

static int fill(void *vctx, long step, int micro, rng_t *rng, train_batch *b, rlhf_error *err) {
    (void)rng;
    (void)err;
    const data_ctx *d = vctx;
    const size_t row0 = ((size_t)step * d->A + (size_t)micro) * d->B;
    const int n = kto_uses_kl(&d->h->p) ? d->B / 2 : d->B;
    b->B = n;
    b->T = d->T;
    memcpy(b->tokens, d->tokens + row0 * d->T, (size_t)n * d->T * sizeof(int32_t));
    memcpy(b->targets, d->targets + row0 * d->T, (size_t)n * d->T * sizeof(int32_t));
    memcpy(b->labels, d->labels + row0, (size_t)n * sizeof(float));
    for (int i = 0; i < n; i++) d->h->desirable[i] = (uint8_t)d->desirable[row0 + (size_t)i];
    if (n < d->B) {
        const size_t kl0 = row0 + (size_t)n;
        memcpy(d->h->kl_tokens, d->tokens + kl0 * d->T, (size_t)n * d->T * sizeof(int32_t));
        memcpy(d->h->kl_targets, d->targets + kl0 * d->T, (size_t)n * d->T * sizeof(int32_t));
        memcpy(d->h->kl_ref, d->labels + kl0, (size_t)n * sizeof(float));
        d->h->kl_T = d->T;
    }
    return RLHF_OK;
}

typedef struct {
    double *log; /* (3, S): losses, lrs, gradient norms */
    int S;
    train_head_out first;
} steps_log;

static void on_progress(const train_progress *p, void *ctx) {
    steps_log *pc = ctx;
    if (p->event != TRAIN_EVENT_STEP || p->step < 1 || p->step > pc->S) return;
    pc->log[p->step - 1] = p->loss;
    pc->log[pc->S + p->step - 1] = p->lr;
    pc->log[2 * pc->S + p->step - 1] = p->grad_norm;
    if (p->step == 1) pc->first = p->train;
}

/* The loss and the trained tensors' gradients of micro-batch (0, 0). */
static int write_grads(const char *path, const model_tensor *tt, int n, const float *grads, float loss, rlhf_error *err) {
    safetensors_entry *e = calloc((size_t)n + 1, sizeof *e);
    if (!e) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    e[0] = (safetensors_entry){.name = "loss", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 1, .shape = {1}, .data = &loss};
    for (int i = 0; i < n; i++)
        e[1 + i] = (safetensors_entry){.name = tt[i].name, .dtype = SAFETENSORS_DTYPE_F32, .ndim = tt[i].ndim,
                                       .shape = {tt[i].shape[0], tt[i].shape[1]}, .data = (float *)grads + tt[i].offset};
    int rc = safetensors_write(path, e, n + 1, err);
    free(e);
    return rc;
}

int main(int argc, char **argv) {
    const char *out = arg(argc, argv, "--out", NULL);
    if (!out) {
        fprintf(stderr, "kto_steps: --out DIR is required\n");
        return 2;
    }
    model_config c;
    step_args_config(argc, argv, &c);
    train_params tp;
    const int S = step_args_train(argc, argv, &tp);
    const uint64_t seed = strtoull(arg(argc, argv, "--seed", "1"), NULL, 10);
    kto_params kp;
    kto_params_defaults(&kp);
    rlhf_error err = {0};
    if (kto_loss_type_parse(arg(argc, argv, "--loss-type", "kto"), &kp.loss_type, &err)) {
        fprintf(stderr, "kto_steps: %s\n", err.msg);
        return 2;
    }
    kp.beta = (float)atof(arg(argc, argv, "--beta", "0.1"));
    kp.desirable_weight = (float)atof(arg(argc, argv, "--desirable-weight", "1"));
    kp.undesirable_weight = (float)atof(arg(argc, argv, "--undesirable-weight", "1"));
    lora_params lp;
    lora_params_defaults(&lp);
    lp.rank = atoi(arg(argc, argv, "--lora-rank", "0"));
    lp.alpha = (float)atof(arg(argc, argv, "--lora-alpha", "8"));
    lp.targets = arg(argc, argv, "--lora-targets", NULL);
    const int A = tp.accum, B = tp.batch, T = tp.context, n = kto_uses_kl(&kp) ? B / 2 : B;
    tp.batch = n; /* the loop's rows: the examples (the KL rows go to the head) */

    model m = {0}, ref = {0};
    lora lo = {0};
    train t = {0};
    kto_head h = {0};
    train_batch buf = {0};
    int32_t *tokens = NULL;
    double *ref_lp = NULL;
    double *log = NULL;
    char path[4096];
    rng_t rng;
    rng_seed(&rng, seed);
    int rc = model_init(&m, &c, &err);
    if (!rc && lp.rank == 0) rc = model_init(&ref, &c, &err);
    if (rc) goto done;
    model_init_random(&m, &rng);
    snprintf(path, sizeof path, "%s/policy", out);
    if ((rc = checkpoint_save(&m, path, &err))) goto done;
    if (lp.rank == 0) {
        model_init_random(&ref, &rng);
        snprintf(path, sizeof path, "%s/ref", out);
        if ((rc = checkpoint_save(&ref, path, &err))) goto done;
    }

    const size_t rows = (size_t)S * A * B;
    tokens = malloc(3 * rows * T * sizeof(int32_t) + rows * sizeof(float) + rows * sizeof(int32_t));
    ref_lp = malloc((size_t)B * sizeof *ref_lp);
    log = calloc((size_t)S * 3, sizeof *log);
    if (!tokens || !ref_lp || !log) {
        rc = rlhf_errorf(&err, RLHF_ERR_NOMEM, "out of memory");
        goto done;
    }
    int32_t *targets = tokens + rows * T;
    float *labels = (float *)(targets + rows * T);
    int32_t *desirable = (int32_t *)(labels + rows);
    int32_t comp[64 * 64]; /* the completions of one micro-batch (n <= 64, T <= 64) */
    if (n > 64 || T > 64) {
        rc = rlhf_errorf(&err, RLHF_ERR_INVALID, "kto_steps: at most 64 examples of 64 positions");
        goto done;
    }
    memset(desirable, 0, rows * sizeof *desirable);
    for (size_t r0 = 0; r0 < rows; r0 += (size_t)B) {
        int np[64], nc[64];
        for (int i = 0; i < n; i++) {
            np[i] = 1 + (int)rng_below(&rng, (uint64_t)(T / 2));
            nc[i] = 1 + (int)rng_below(&rng, (uint64_t)(T / 2 - 1));
            for (int k = 0; k < T; k++) comp[i * T + k] = 1 + (int32_t)rng_below(&rng, (uint64_t)(c.vocab_size - 1));
            desirable[r0 + (size_t)i] = (int32_t)rng_below(&rng, 2);
        }
        if (r0 == 0 && n >= 2) {
            desirable[0] = 1;
            desirable[1] = 0;
        }
        if (r0 % ((size_t)B * A * 2) == 0) nc[0] = T - np[0]; /* a full row now and then */
        for (int row = 0; row < B; row++) {
            const int i = row % n, j = row < n ? i : (i + n - 1) % n; /* whose prompt, whose completion */
            int32_t *tk = tokens + (r0 + (size_t)row) * T, *tg = targets + (r0 + (size_t)row) * T;
            const int len = np[i] + nc[j] < T ? np[i] + nc[j] : T;
            /* the prompt's ids: drawn once per example, from the row of example i */
            for (int k = 0; k < T; k++) {
                if (k < np[i]) tk[k] = row < n ? 1 + (int32_t)rng_below(&rng, (uint64_t)(c.vocab_size - 1))
                                               : tokens[(r0 + (size_t)i) * T + k];
                else tk[k] = k < len ? comp[j * T + (k - np[i])] : 0;
            }
            for (int k = 0; k < T; k++) tg[k] = k + 1 >= np[i] && k + 1 < len ? tk[k + 1] : -1;
        }
    }
    if (lp.rank > 0) {
        if ((rc = lora_init(&lo, &m, &lp, &rng, &err))) goto done;
        for (int i = 0; i < lo.n_tensors; i++)
            if (strstr(lo.tensors[i].name, "lora_B"))
                for (size_t k = 0; k < lo.tensors[i].numel; k++) lo.params[lo.tensors[i].offset + k] = 0.1f * rng_normal(&rng);
        lora_save_info info = {"tiny-random", NULL};
        snprintf(path, sizeof path, "%s/adapter", out);
        if ((rc = lora_save(&lo, path, &info, NULL, 0, &err))) goto done;
        lora_attach(&lo, &m);
        rc = train_init_lora(&t, &m, &lo, &tp, &err);
    } else {
        rc = train_init(&t, &m, &tp, &err);
    }
    if (rc) goto done;
    if ((rc = kto_head_init(&h, &kp, &c, n, T, &err))) goto done;
    if ((rc = train_batch_alloc(&buf, n, T, &err))) goto done;
    /* the reference pass: every row's completion log-probability */
    if (lp.rank > 0) lora_set_enabled(&lo, 0);
    for (size_t r0 = 0; r0 < rows; r0 += (size_t)n) { /* n rows at a time: the trainer's arena */
        memcpy(buf.tokens, tokens + r0 * T, (size_t)n * T * sizeof(int32_t));
        memcpy(buf.targets, targets + r0 * T, (size_t)n * T * sizeof(int32_t));
        buf.B = n;
        buf.T = T;
        if ((rc = dpo_row_logps(lp.rank > 0 ? &m : &ref, &t.acts, &buf, ref_lp, &err))) goto done;
        for (int i = 0; i < n; i++) labels[r0 + (size_t)i] = (float)ref_lp[i];
    }
    if (lp.rank > 0) lora_set_enabled(&lo, 1);
    snprintf(path, sizeof path, "%s/batches.bin", out);
    if ((rc = file_write_atomic(path, tokens, 2 * rows * T * sizeof(int32_t) + rows * (sizeof(float) + sizeof(int32_t)),
                                &err)))
        goto done;

    data_ctx dc = {A, B, T, tokens, targets, desirable, labels, &h};
    const train_data data = {.fill = fill, .ctx = &dc};
    const train_head head = kto_train_head(&h);
    const model_tensor *tt = lp.rank > 0 ? lo.tensors : m.tensors;
    const int ntt = lp.rank > 0 ? lo.n_tensors : m.n_tensors;
    train_head_out ho = {0};
    const float *dl = NULL, *dh = NULL;
    if ((rc = fill(&dc, 0, 0, NULL, &buf, &err))) goto done;
    train_zero_grads(&t);
    if ((rc = model_forward(&m, &t.acts, buf.tokens, buf.B, buf.T, &err))) goto done;
    if ((rc = head.loss(head.self, &m, &t.acts, &buf, 1, &dl, &dh, &ho, &err))) goto done;
    if ((rc = model_backward(&m, &t.acts, dl, dh, &err))) goto done;
    const float loss0 = (float)ho.loss;
    snprintf(path, sizeof path, "%s/grads.safetensors", out);
    if ((rc = write_grads(path, tt, ntt, t.grads, loss0, &err))) goto done;
    train_zero_grads(&t);

    steps_log pc = {.log = log, .S = S};
    train_loop_params lpm = {0};
    lpm.t = &t;
    lpm.head = head;
    lpm.data = data;
    lpm.steps = S;
    lpm.saved_step = -1;
    rng_seed(&lpm.rng, 1);
    lpm.progress = on_progress;
    lpm.progress_ctx = &pc;
    if ((rc = train_loop_run(&lpm, NULL, &err))) goto done;
    ho = (train_head_out){0};
    if ((rc = fill(&dc, 0, 0, NULL, &buf, &err))) goto done;
    if ((rc = model_forward(&m, &t.acts, buf.tokens, buf.B, buf.T, &err))) goto done;
    if ((rc = head.loss(head.self, &m, &t.acts, &buf, 0, NULL, NULL, &ho, &err))) goto done;
    const char *keys[3] = {"losses", "lrs", "grad_norms"};
    printf("{");
    for (int k = 0; k < 3; k++) {
        printf("%s\"%s\": [", k ? "], " : "", keys[k]);
        for (int s = 0; s < S; s++) printf("%s%.9g", s ? ", " : "", log[k * S + s]);
    }
    printf("], \"metrics\": {");
    for (int i = 0; i < pc.first.n; i++) printf("%s\"%s\": %.9g", i ? ", " : "", pc.first.names[i], pc.first.values[i]);
    printf("}, \"first_loss\": %.9g, \"final_loss\": %.9g}\n", (double)loss0, ho.loss);
done:
    if (rc) fprintf(stderr, "kto_steps: %s\n", err.msg);
    train_batch_free(&buf);
    free(ref_lp);
    free(log);
    kto_head_free(&h);
    train_free(&t);
    if (m.lora) lora_detach(&m);
    lora_free(&lo);
    model_free(&m);
    model_free(&ref);
    free(tokens);
    return rc ? 1 : 0;
}
