/* score_steps.c — test helper for the PyTorch check of the score heads
 * (tests/reference/score_torch.py).
 *
 * Usage: score_steps --family gpt2|llama --layers L --dim C --heads NH [--kv-heads NKV] --ffn F
 *        --vocab V --context TMAX [--untied] --objective classify|pairs [--labels K]
 *        [--center COEF] [--margins] --batch B --seq T --accum A --steps S --lr LR --min-lr LR
 *        --warmup W --weight-decay WD --grad-clip C --seed N --out DIR
 *
 * Makes a random language model, turns it into a classifier with score_model_from_lm (pad id 0),
 * saves it to DIR/init (checkpoint_save_labeled), draws S steps of A micro-batches of B rows of
 * variable length (content ids 1..V-1, padded with 0 after each row's length; for pairs, rows
 * 2i/2i+1 are chosen/rejected) and writes DIR/batches.bin: int32 tokens (S, A, B, T), int32
 * lengths (S, A, B), float32 labels (S, A, B) (class ids, or margins on even rows). Then:
 *   1. one forward + head + backward on micro-batch (0, 0): its loss, the scores and every
 *      parameter's gradient go to DIR/grads.safetensors ("loss", "scores", "grad.NAME");
 *   2. S optimizer steps through train_loop_run with that data;
 *   3. the trained model is saved to DIR/final and the scores of micro-batch (0, 0) printed.
 * With --lora-rank R [--lora-alpha A --lora-targets LIST] the body gets a LoRA adapter and the
 * score head trains with it (score_lora_attach, PEFT's modules_to_save): the adapter starts from
 * random A and B (B nonzero, so every adapter gradient is too) and is saved to DIR/init_adapter
 * (lora_save, with base_model.model.score.weight); the gradients dumped are the adapter's
 * ("grad." + PEFT name) and "grad.score.weight"; after training DIR/final_adapter holds the
 * trained adapter and score, and DIR/final the model with it merged (what rlhf score loads).
 * stdout: one JSON object {"losses": [S], "lrs": [S], "grad_norms": [S], "final_loss": x,
 * "final_scores": [B*K]}. */
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
#include "src/train/loop.h"
#include "src/train/score_head.h"
#include "src/train/train.h"
#include "tests/step_args.h"


typedef struct {
    int A, B, T;
    const int32_t *tokens, *lengths;
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
    memcpy(b->lengths, d->lengths + row0, (size_t)d->B * sizeof(int32_t));
    memcpy(b->labels, d->labels + row0, (size_t)d->B * sizeof(float));
    for (size_t i = 0; i < (size_t)d->B * d->T; i++) b->targets[i] = -1;
    return RLHF_OK;
}

typedef struct {
    double *log; /* (3, S): losses, lrs, gradient norms */
    int S;
} prog_ctx;

static void progress(const train_progress *p, void *ctx);

int main(int argc, char **argv) {
    const char *out = arg(argc, argv, "--out", NULL);
    const int pairs = strcmp(arg(argc, argv, "--objective", "classify"), "pairs") == 0;
    if (!out) {
        fprintf(stderr, "score_steps: --out DIR is required\n");
        return 2;
    }
    model_config c;
    step_args_config(argc, argv, &c);
    const int K = pairs ? 1 : atoi(arg(argc, argv, "--labels", "3"));
    train_params tp;
    const int S = step_args_train(argc, argv, &tp);
    const uint64_t seed = strtoull(arg(argc, argv, "--seed", "1"), NULL, 10);
    const float center = (float)atof(arg(argc, argv, "--center", "0"));
    const int margins = flag(argc, argv, "--margins");
    const int A = tp.accum, B = tp.batch, T = tp.context;
    lora_params lop;
    lora_params_defaults(&lop);
    lop.rank = atoi(arg(argc, argv, "--lora-rank", "0"));
    lop.alpha = (float)atof(arg(argc, argv, "--lora-alpha", "8"));
    lop.targets = arg(argc, argv, "--lora-targets", NULL);
    lora lo = {0};

    rlhf_error err = {0};
    model lm = {0}, m = {0};
    train t = {0};
    score_head h = {0};
    train_batch buf = {0};
    int32_t *tokens = NULL;
    float *dump = NULL;
    double *log = NULL;
    safetensors_entry *ents = NULL;
    char (*names)[MODEL_TENSOR_NAME_MAX + 8] = NULL;
    char path[4096];
    int rc = model_init(&lm, &c, &err);
    if (rc) goto done;
    rng_t rng;
    rng_seed(&rng, seed);
    model_init_random(&lm, &rng);
    /* a larger score init than transformers' 0.02 so the scores (and the losses) differ visibly */
    if ((rc = score_model_from_lm(&m, &lm, K, 0, 0.5f, &rng, &err))) goto done;
    snprintf(path, sizeof path, "%s/init", out);
    if ((rc = checkpoint_save_labeled(&m, path, NULL, &err))) goto done;

    const size_t rows = (size_t)S * A * B;
    tokens = malloc(rows * T * sizeof(int32_t) + rows * sizeof(int32_t) + rows * sizeof(float));
    dump = malloc((1 + (size_t)B * K) * sizeof(float));
    log = calloc((size_t)S * 3, sizeof(double));
    if (lop.rank > 0) {
        if ((rc = lora_init(&lo, &m, &lop, &rng, &err))) goto done;
        for (size_t i = 0; i < lo.n_floats; i++) lo.params[i] = 0.3f * (2.0f * rng_float(&rng) - 1.0f);
        lora_extra x = {"score.weight", 2, {K, c.dim}, m.w.score};
        lora_save_info li = {"init", "SEQ_CLS"};
        snprintf(path, sizeof path, "%s/init_adapter", out);
        if ((rc = lora_save(&lo, path, &li, &x, 1, &err))) goto done;
    }
    const int n_dump = lop.rank > 0 ? lo.n_tensors + 1 : m.n_tensors;
    ents = calloc((size_t)n_dump + 2, sizeof *ents);
    names = calloc((size_t)n_dump, sizeof *names);
    if (!tokens || !dump || !log || !ents || !names) {
        rc = rlhf_errorf(&err, RLHF_ERR_NOMEM, "out of memory");
        goto done;
    }
    int32_t *lengths = tokens + rows * T;
    float *labels = (float *)(lengths + rows);
    for (size_t r = 0; r < rows; r++) {
        lengths[r] = 1 + (int32_t)rng_below(&rng, (uint64_t)T);
        if (r % (size_t)B == 0) lengths[r] = T; /* one full row per micro-batch */
        for (int k = 0; k < T; k++)
            tokens[r * T + k] = k < lengths[r] ? 1 + (int32_t)rng_below(&rng, (uint64_t)(c.vocab_size - 1)) : 0;
        if (pairs) labels[r] = margins && r % 2 == 0 ? (float)(rng_float(&rng) - 0.5) : 0.0f;
        else labels[r] = (float)rng_below(&rng, (uint64_t)K);
    }
    snprintf(path, sizeof path, "%s/batches.bin", out);
    if ((rc = file_write_atomic(path, tokens, rows * T * sizeof(int32_t) + rows * (sizeof(int32_t) + sizeof(float)), &err)))
        goto done;

    if (lop.rank > 0) {
        if ((rc = score_lora_attach(&m, &lo, &err))) goto done;
        rc = train_init_lora(&t, &m, &lo, &tp, &err);
    } else {
        rc = train_init(&t, &m, &tp, &err);
    }
    if (rc) goto done;
    if ((rc = score_head_init(&h, &m, B, T, &err))) goto done;
    if ((rc = train_batch_alloc(&buf, B, T, &err))) goto done;
    h.center_coef = center;
    data_ctx dc = {A, B, T, tokens, lengths, labels};
    train_head head = pairs ? score_head_pairs(&h) : score_head_classify(&h);

    /* 1. gradients of micro-batch (0, 0) */
    fill(&dc, 0, 0, NULL, &buf, &err);
    train_zero_grads(&t);
    train_head_out ho = {0};
    const float *dl = NULL, *dh = NULL;
    if ((rc = model_forward(&m, &t.acts, buf.tokens, B, T, &err))) goto done;
    if ((rc = head.loss(head.self, &m, &t.acts, &buf, 1, &dl, &dh, &ho, &err))) goto done;
    if ((rc = model_backward(&m, &t.acts, dl, dh, &err))) goto done;
    dump[0] = (float)ho.loss;
    memcpy(dump + 1, h.scores, (size_t)B * K * sizeof(float));
    ents[0] = (safetensors_entry){.name = "loss", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 1, .shape = {1}, .data = dump};
    ents[1] = (safetensors_entry){.name = "scores", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 2, .shape = {B, K}, .data = dump + 1};
    for (int i = 0; i < n_dump; i++) {
        /* with LoRA: the adapter's tensors, then the score's gradient (beside them in lo.grads) */
        const model_tensor *mt = lop.rank > 0 ? (i < lo.n_tensors ? &lo.tensors[i] : model_find_tensor(&m, "score.weight"))
                                             : &m.tensors[i];
        const float *g = lop.rank > 0 ? (i < lo.n_tensors ? lo.grads + mt->offset : m.g.score) : m.grads + mt->offset;
        snprintf(names[i], sizeof names[i], "grad.%s", mt->name);
        ents[2 + i] = (safetensors_entry){.name = names[i], .dtype = SAFETENSORS_DTYPE_F32, .ndim = mt->ndim,
                                           .shape = {mt->shape[0], mt->shape[1]}, .data = g};
    }
    snprintf(path, sizeof path, "%s/grads.safetensors", out);
    if ((rc = safetensors_write(path, ents, n_dump + 2, &err))) goto done;

    /* 2. the optimizer steps, through the loop */
    train_loop_params lp = {0};
    lp.t = &t;
    lp.head = head;
    lp.data = (train_data){.fill = fill, .ctx = &dc};
    lp.steps = S;
    lp.saved_step = -1;
    rng_seed(&lp.rng, 1);
    prog_ctx pc = {log, S};
    lp.progress = progress;
    lp.progress_ctx = &pc;
    if ((rc = train_loop_run(&lp, NULL, &err))) goto done;

    /* 3. the trained model and its scores */
    if (lop.rank > 0) {
        lora_extra x = {"score.weight", 2, {K, c.dim}, m.w.score};
        lora_save_info li = {"init", "SEQ_CLS"};
        snprintf(path, sizeof path, "%s/final_adapter", out);
        if ((rc = lora_save(&lo, path, &li, &x, 1, &err))) goto done;
        /* the merged classifier: what score_model_load makes of the adapter directory */
        score_lora_detach(&m);
        if ((rc = lora_merge(&lo, &m, &err))) goto done;
    }
    snprintf(path, sizeof path, "%s/final", out);
    if ((rc = checkpoint_save_labeled(&m, path, NULL, &err))) goto done;
    fill(&dc, 0, 0, NULL, &buf, &err);
    ho = (train_head_out){0};
    if ((rc = model_forward(&m, &t.acts, buf.tokens, B, T, &err))) goto done;
    if ((rc = head.loss(head.self, &m, &t.acts, &buf, 0, NULL, NULL, &ho, &err))) goto done;
    const char *keys[3] = {"losses", "lrs", "grad_norms"};
    printf("{");
    for (int k = 0; k < 3; k++) {
        printf("%s\"%s\": [", k ? "], " : "", keys[k]);
        for (int s = 0; s < S; s++) printf("%s%.9g", s ? ", " : "", log[k * S + s]);
    }
    printf("], \"first_loss\": %.9g, \"final_loss\": %.9g, \"final_scores\": [", (double)dump[0], ho.loss);
    for (int i = 0; i < B * K; i++) printf("%s%.9g", i ? ", " : "", (double)h.scores[i]);
    printf("]}\n");
done:
    if (rc) fprintf(stderr, "score_steps: %s\n", err.msg);
    train_batch_free(&buf);
    free(names);
    free(log);
    free(dump);
    free(ents);
    score_head_free(&h);
    train_free(&t);
    if (m.lora) score_lora_detach(&m);
    lora_free(&lo);
    model_free(&m);
    model_free(&lm);
    free(tokens);
    return rc ? 1 : 0;
}

/* Records loss, lr and gradient norm of every step. */
static void progress(const train_progress *p, void *ctx) {
    prog_ctx *pc = ctx;
    if (p->event != TRAIN_EVENT_STEP || p->step < 1 || p->step > pc->S) return;
    pc->log[p->step - 1] = p->loss;
    pc->log[pc->S + p->step - 1] = p->lr;
    pc->log[2 * pc->S + p->step - 1] = p->grad_norm;
}
