/* head_steps.h — the common part of the reference step helpers of the training heads
 * (dpo_steps.c, grpo_steps.c): given a model, its trainer, a head and a data source whose
 * micro-batch (0, 0) is fixed,
 *   1. one forward + head + backward on micro-batch (0, 0): the loss and every trained tensor's
 *      gradient (the model's, or an attached LoRA adapter's under PEFT's names) go to
 *      OUT/grads.safetensors ("loss", "grad.NAME");
 *   2. S optimizer steps through train_loop_run;
 *   3. stdout: {"losses", "lrs", "grad_norms", "metrics" (of step 1), "first_loss",
 *      "final_loss" (micro-batch (0, 0) after the last step)}. */
#ifndef RLHF_TEST_HEAD_STEPS_H
#define RLHF_TEST_HEAD_STEPS_H

#include <stdio.h>
#include <stdlib.h>

#include "src/formats/safetensors.h"
#include "src/model/lora.h"
#include "src/model/model.h"
#include "src/train/loop.h"
#include "src/train/train.h"

typedef struct {
    double *log; /* (3, S): losses, lrs, gradient norms */
    int S;
    train_head_out first;
} head_steps_log;

static void head_steps_progress(const train_progress *p, void *ctx) {
    head_steps_log *pc = ctx;
    if (p->event != TRAIN_EVENT_STEP || p->step < 1 || p->step > pc->S) return;
    pc->log[p->step - 1] = p->loss;
    pc->log[pc->S + p->step - 1] = p->lr;
    pc->log[2 * pc->S + p->step - 1] = p->grad_norm;
    if (p->step == 1) pc->first = p->train;
}

static int head_steps_run(model *m, train *t, train_head head, train_data data, train_batch *buf, int S, const char *out,
                          rlhf_error *err) {
    double *log = calloc((size_t)S * 3, sizeof *log);
    /* the trained tensors: the model's, or an attached LoRA adapter's */
    const model_tensor *tt = m->lora ? m->lora->tensors : m->tensors;
    const int ntt = m->lora ? m->lora->n_tensors : m->n_tensors;
    safetensors_entry *ents = calloc((size_t)ntt + 1, sizeof *ents);
    char (*names)[MODEL_TENSOR_NAME_MAX + 8] = calloc((size_t)ntt, sizeof *names);
    float loss_f = 0;
    char path[4096];
    int rc = log && ents && names ? RLHF_OK : rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    train_head_out ho = {0};
    const float *dl = NULL, *dh = NULL;
    if (!rc) rc = data.fill(data.ctx, 0, 0, NULL, buf, err);
    if (!rc) {
        train_zero_grads(t);
        rc = model_forward(m, &t->acts, buf->tokens, buf->B, buf->T, err);
    }
    if (!rc) rc = head.loss(head.self, m, &t->acts, buf, 1, &dl, &dh, &ho, err);
    if (!rc) rc = model_backward(m, &t->acts, dl, dh, err);
    if (!rc) {
        loss_f = (float)ho.loss;
        ents[0] = (safetensors_entry){.name = "loss", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 1, .shape = {1}, .data = &loss_f};
        for (int i = 0; i < ntt; i++) {
            const model_tensor *mt = &tt[i];
            snprintf(names[i], sizeof names[i], "grad.%s", mt->name);
            ents[1 + i] = (safetensors_entry){.name = names[i], .dtype = SAFETENSORS_DTYPE_F32, .ndim = mt->ndim,
                                               .shape = {mt->shape[0], mt->shape[1]}, .data = t->grads + mt->offset};
        }
        snprintf(path, sizeof path, "%s/grads.safetensors", out);
        rc = safetensors_write(path, ents, ntt + 1, err);
    }
    head_steps_log pc = {.log = log, .S = S};
    if (!rc) {
        train_loop_params lp = {0};
        lp.t = t;
        lp.head = head;
        lp.data = data;
        lp.steps = S;
        lp.saved_step = -1;
        rng_seed(&lp.rng, 1);
        lp.progress = head_steps_progress;
        lp.progress_ctx = &pc;
        rc = train_loop_run(&lp, NULL, err);
    }
    ho = (train_head_out){0};
    if (!rc) rc = data.fill(data.ctx, 0, 0, NULL, buf, err);
    if (!rc) rc = model_forward(m, &t->acts, buf->tokens, buf->B, buf->T, err);
    if (!rc) rc = head.loss(head.self, m, &t->acts, buf, 0, NULL, NULL, &ho, err);
    if (!rc) {
        const char *keys[3] = {"losses", "lrs", "grad_norms"};
        printf("{");
        for (int k = 0; k < 3; k++) {
            printf("%s\"%s\": [", k ? "], " : "", keys[k]);
            for (int s = 0; s < S; s++) printf("%s%.9g", s ? ", " : "", log[k * S + s]);
        }
        printf("], \"metrics\": {");
        for (int i = 0; i < pc.first.n; i++) printf("%s\"%s\": %.9g", i ? ", " : "", pc.first.names[i], pc.first.values[i]);
        printf("}, \"first_loss\": %.9g, \"final_loss\": %.9g}\n", (double)loss_f, ho.loss);
    }
    free(log);
    free(ents);
    free(names);
    return rc;
}

#endif
