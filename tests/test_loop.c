/* test_loop.c — the shared training loop (src/train/loop.h).
 *
 * Checks: (1) the loop with the LM head gives exactly (bit for bit, same thread count) the
 * parameters of train_step on the same batches; (2) the NaN/inf guard skips a step whose loss is
 * not finite (parameters and moments unchanged, the step still counted) and stops the run with
 * RLHF_ERR_NUMERIC after max_bad_steps in a row; (3) the stop flag ends the run with
 * RLHF_ERR_INTERRUPTED after saving; (4) evaluation averages the head's metrics over batches. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/train/loop.h"
#include "test_util.h"

static void tiny_model(model *m) {
    model_config c;
    model_config_defaults(&c, MODEL_FAMILY_LLAMA);
    c.n_layers = 1;
    c.dim = 16;
    c.n_heads = 2;
    c.n_kv_heads = 1;
    c.ffn_dim = 24;
    c.vocab_size = 19;
    c.context = 8;
    rlhf_error err = {0};
    CHECK(model_init(m, &c, &err) == 0, "%s", err.msg);
    rng_t r;
    rng_seed(&r, 7);
    model_init_random(m, &r);
}

typedef struct {
    int32_t *in, *tg; /* (steps, accum, B, T) */
    int B, T, accum;
} fixed_data;

static int fixed_fill(void *ctx, long step, int micro, rng_t *rng, train_batch *b, rlhf_error *err) {
    (void)rng;
    (void)err;
    fixed_data *d = ctx;
    size_t bt = (size_t)d->B * d->T, off = ((size_t)step * d->accum + micro) * bt;
    memcpy(b->tokens, d->in + off, bt * sizeof(int32_t));
    memcpy(b->targets, d->tg + off, bt * sizeof(int32_t));
    return 0;
}

static int fixed_val(void *ctx, int i, train_batch *b, rlhf_error *err) {
    return fixed_fill(ctx, i, 0, NULL, b, err);
}

/* A head that is the LM head except that steps listed in `bad` report a NaN loss. */
typedef struct {
    long *bad;
    int n_bad;
    long calls;
} nan_head_state;

static int nan_loss(void *self, model *m, model_acts *a, const train_batch *b, int want_grad, const float **dl,
                    const float **dh, train_head_out *out, rlhf_error *err) {
    nan_head_state *s = self;
    int rc = train_head_lm.loss(NULL, m, a, b, want_grad, dl, dh, out, err);
    if (want_grad) {
        for (int i = 0; i < s->n_bad; i++)
            if (s->bad[i] == s->calls) out->loss = NAN;
        s->calls++;
    }
    train_head_out_set(out, "const", 2.0);
    return rc;
}

static int saves;
static int count_save(void *ctx, long step, const rng_t *rng, rlhf_error *err) {
    (void)ctx;
    (void)step;
    (void)rng;
    (void)err;
    saves++;
    return 0;
}

static volatile sig_atomic_t stop_flag;
static void stop_after(const train_progress *p, void *ctx) {
    long *at = ctx;
    if (p->event == TRAIN_EVENT_STEP && p->step == *at) stop_flag = 1;
}

int main(void) {
    rlhf_error err = {0};
    const int B = 2, T = 8, A = 2, S = 6;
    fixed_data d = {malloc(sizeof(int32_t) * S * A * B * T), malloc(sizeof(int32_t) * S * A * B * T), B, T, A};
    rng_t r;
    rng_seed(&r, 3);
    for (int i = 0; i < S * A * B * T; i++) {
        d.in[i] = (int32_t)(rng_u64(&r) % 19);
        d.tg[i] = (i % 5 == 0) ? -1 : (int32_t)(rng_u64(&r) % 19);
    }
    train_params tp;
    train_params_defaults(&tp);
    tp.batch = B;
    tp.context = T;
    tp.accum = A;
    tp.optim.lr = 1e-2f;
    tp.optim.min_lr = 1e-3f;
    tp.optim.warmup_steps = 2;
    tp.optim.total_steps = S;

    /* (1) loop == train_step */
    model m1 = {0}, m2 = {0};
    tiny_model(&m1);
    tiny_model(&m2);
    train t1 = {0}, t2 = {0};
    CHECK(train_init(&t1, &m1, &tp, &err) == 0, "%s", err.msg);
    CHECK(train_init(&t2, &m2, &tp, &err) == 0, "%s", err.msg);
    for (int s = 0; s < S; s++) {
        train_step_result res;
        size_t off = (size_t)s * A * B * T;
        CHECK(train_step(&t1, d.in + off, d.tg + off, &res, &err) == 0, "%s", err.msg);
    }
    train_loop_params lp;
    memset(&lp, 0, sizeof lp);
    lp.t = &t2;
    lp.head = train_head_lm;
    lp.data = (train_data){fixed_fill, fixed_val, 2, &d};
    lp.steps = S;
    lp.saved_step = -1;
    lp.save = count_save;
    train_loop_summary sum;
    saves = 0;
    CHECK(train_loop_run(&lp, &sum, &err) == 0, "%s", err.msg);
    CHECK(sum.steps_done == S && sum.saved_step == S && saves == 1 && sum.skipped_steps == 0, "%s", err.msg);
    CHECK(memcmp(m1.params, m2.params, m1.n_floats * sizeof(float)) == 0, "loop and train_step differ"); /* bit-identical, same kernels */
    CHECK(isfinite(sum.first_val_loss) && sum.final_val_loss < sum.first_val_loss, "%s", err.msg);
    train_free(&t1);
    train_free(&t2);
    model_free(&m1);
    model_free(&m2);

    /* (2) NaN guard: step 2 (micro-batch calls 2, 3) is skipped; the run completes. */
    model m3 = {0};
    tiny_model(&m3);
    train t3 = {0};
    CHECK(train_init(&t3, &m3, &tp, &err) == 0, "%s", err.msg);
    long bad1[] = {2};
    nan_head_state hs = {bad1, 1, 0};
    lp.t = &t3;
    lp.head = (train_head){"nan", nan_loss, &hs};
    lp.save = NULL;
    CHECK(train_loop_run(&lp, &sum, &err) == 0, "%s", err.msg);
    CHECK(sum.skipped_steps == 1 && sum.steps_done == S && t3.opt.step == S, "%s", err.msg);
    CHECK(sum.final_val.n == 1 && fabs(sum.final_val.values[0] - 2.0) < 1e-12, "metric mean"); /* exact: mean of a constant */

    /* Five bad steps in a row stop the run, parameters untouched by them. */
    float *before = malloc(m3.n_floats * sizeof(float));
    memcpy(before, m3.params, m3.n_floats * sizeof(float));
    long bad2[] = {0, 2, 4, 6, 8};
    hs = (nan_head_state){bad2, 5, 0};
    t3.opt.step = 0;
    lp.max_bad_steps = 3;
    int rc = train_loop_run(&lp, &sum, &err);
    CHECK(rc == RLHF_ERR_NUMERIC && sum.steps_done == 3 && sum.skipped_steps == 3, "%s", err.msg);
    CHECK(strstr(err.msg, "3 steps in a row") != NULL, "%s", err.msg);
    CHECK(memcmp(before, m3.params, m3.n_floats * sizeof(float)) == 0, "%s", err.msg);
    free(before);
    lp.max_bad_steps = 0;

    /* (3) stop flag: saved at the step reached, RLHF_ERR_INTERRUPTED. */
    hs = (nan_head_state){NULL, 0, 0};
    t3.opt.step = 0;
    long at = 2;
    stop_flag = 0;
    lp.stop = &stop_flag;
    lp.progress = stop_after;
    lp.progress_ctx = &at;
    lp.save = count_save;
    saves = 0;
    rc = train_loop_run(&lp, &sum, &err);
    CHECK(rc == RLHF_ERR_INTERRUPTED && sum.steps_done == 2 && sum.saved_step == 2 && saves == 1, "%s", err.msg);
    train_free(&t3);
    model_free(&m3);
    free(d.in);
    free(d.tg);
    return test_finish("loop");
}
