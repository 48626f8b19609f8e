/* loop.c — the shared training loop (see loop.h): steps through a head, evaluation, checkpoints,
 * interruption and the NaN/inf guard. */
#include "src/train/loop.h"

#include "src/model/lora.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void train_head_out_set(train_head_out *o, const char *name, double value) {
    for (int i = 0; i < o->n; i++)
        if (strcmp(o->names[i], name) == 0) {
            o->values[i] = value;
            return;
        }
    if (o->n < TRAIN_MAX_METRICS) {
        o->names[o->n] = name;
        o->values[o->n++] = value;
    }
}

/* ---- the LM head ---- */

static int lm_loss(void *self, model *m, model_acts *a, const train_batch *b, int want_grad, const float **dlogits,
                   const float **dhidden, train_head_out *out, rlhf_error *err) {
    (void)self;
    (void)err;
    /* The gradient overwrites the logits in place: no second (B, T, V) buffer. */
    out->loss = model_xent(a->logits, b->targets, b->weights, b->B, b->T, m->config.vocab_size,
                           want_grad ? a->logits : NULL, NULL);
    if (want_grad) {
        *dlogits = a->logits;
        *dhidden = NULL;
    }
    return RLHF_OK;
}

const train_head train_head_lm = {"lm", lm_loss, NULL};

/* ---- batches ---- */

int train_batch_alloc(train_batch *b, int B, int T, rlhf_error *err) {
    memset(b, 0, sizeof *b);
    const size_t bt = (size_t)B * (size_t)T;
    b->tokens = malloc(bt * sizeof(int32_t));
    b->targets = malloc(bt * sizeof(int32_t));
    b->lengths = malloc((size_t)B * sizeof(int32_t));
    b->labels = malloc((size_t)B * sizeof(float));
    if (!b->tokens || !b->targets || !b->lengths || !b->labels) {
        train_batch_free(b);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for a (%d, %d) batch", B, T);
    }
    b->B = B;
    b->T = T;
    return RLHF_OK;
}

void train_batch_free(train_batch *b) {
    free(b->tokens);
    free(b->targets);
    free(b->lengths);
    free(b->labels);
    memset(b, 0, sizeof *b);
}

/* Resets the shape to the capacity so a data source sees the whole buffer each time. */
static void batch_reset(train_batch *b, const train *t) {
    b->B = t->B;
    b->T = t->T;
    b->weights = NULL;
}

/* Adds o's metrics into sum (same names accumulate). */
static void metrics_add(train_head_out *sum, const train_head_out *o) {
    sum->loss += o->loss;
    for (int i = 0; i < o->n; i++) {
        int j = 0;
        while (j < sum->n && strcmp(sum->names[j], o->names[i]) != 0) j++;
        if (j == sum->n) {
            if (sum->n == TRAIN_MAX_METRICS) continue;
            sum->names[sum->n] = o->names[i];
            sum->values[sum->n++] = 0.0;
        }
        sum->values[j] += o->values[i];
    }
}

static void metrics_scale(train_head_out *o, double s) {
    o->loss *= s;
    for (int i = 0; i < o->n; i++) o->values[i] *= s;
}

int train_loop_eval(train *t, const train_head *head, const train_data *data, train_batch *buf, train_head_out *out,
                    rlhf_error *err) {
    memset(out, 0, sizeof *out);
    if (data->n_val <= 0 || !data->fill_val) {
        out->loss = NAN;
        return RLHF_OK;
    }
    /* Evaluation runs without LoRA dropout, and so draws nothing from the adapter's rng: an
     * evaluation never changes the training that follows (exact resume depends on it). */
    lora *lo = t->model->lora;
    const int was_training = lo ? lo->training : 0;
    if (lo) lora_set_training(lo, 0);
    int rc = RLHF_OK;
    for (int i = 0; i < data->n_val && !rc; i++) {
        batch_reset(buf, t);
        rc = data->fill_val(data->ctx, i, buf, err);
        if (!rc) rc = model_forward(t->model, &t->acts, buf->tokens, buf->B, buf->T, err);
        train_head_out o;
        memset(&o, 0, sizeof o);
        if (!rc) rc = head->loss(head->self, t->model, &t->acts, buf, 0, NULL, NULL, &o, err);
        if (!rc) metrics_add(out, &o);
    }
    if (lo) lora_set_training(lo, was_training);
    if (rc) return rc;
    metrics_scale(out, 1.0 / data->n_val);
    return RLHF_OK;
}

/* One optimizer step. *skipped is set when the guard skipped it (non-finite loss or gradient):
 * parameters and moments untouched, the schedule advanced. */
static int loop_step(train *t, const train_loop_params *p, long step, rng_t *rng, train_batch *buf,
                     train_head_out *out, optim_stats *st, size_t *tokens, int *skipped, rlhf_error *err) {
    model *m = t->model;
    memset(out, 0, sizeof *out);
    *skipped = 0;
    train_zero_grads(t);
    for (int k = 0; k < t->accum; k++) {
        batch_reset(buf, t);
        int rc = p->data.fill(p->data.ctx, step, k, rng, buf, err);
        if (rc) return rc;
        /* Later micro-batches are still drawn when one went bad, so the data position after a
         * skipped step is the same as after a good one. */
        if (*skipped) continue;
        rc = model_forward(m, &t->acts, buf->tokens, buf->B, buf->T, err);
        if (rc) return rc;
        *tokens += (size_t)buf->B * (size_t)buf->T;
        train_head_out o;
        memset(&o, 0, sizeof o);
        const float *dl = NULL, *dh = NULL;
        rc = p->head.loss(p->head.self, m, &t->acts, buf, 1, &dl, &dh, &o, err);
        if (rc) return rc;
        metrics_add(out, &o);
        if (!isfinite(o.loss)) {
            *skipped = 1;
            continue;
        }
        rc = model_backward(m, &t->acts, dl, dh, err);
        if (rc == RLHF_ERR_NUMERIC) {
            *skipped = 1;
            continue;
        }
        if (rc) return rlhf_error_prefix(err, "step %ld: ", step + 1);
    }
    metrics_scale(out, 1.0 / t->accum);
    if (!*skipped) {
        int rc = optim_step(&t->opt, t->params, t->grads, 1.0f / (float)t->accum, st, err);
        if (rc == RLHF_ERR_NUMERIC) *skipped = 1;
        else if (rc) return rc;
    }
    if (*skipped) {
        /* The step still counts: the schedule and the saved step stay in lock-step with the data. */
        st->lr = optim_schedule_lr(&t->opt.params, t->opt.step);
        st->grad_norm = NAN;
        st->clip_coef = 1.0f;
        t->opt.step++;
    }
    return RLHF_OK;
}

static void emit(const train_loop_params *p, const train_progress *pg) {
    if (p->progress) p->progress(pg, p->progress_ctx);
}

int train_loop_run(const train_loop_params *p, train_loop_summary *sum_out, rlhf_error *err) {
    train *t = p->t;
    train_loop_summary sum;
    memset(&sum, 0, sizeof sum);
    sum.first_val_loss = sum.final_val_loss = sum.final_loss = NAN;
    sum.final_val.loss = NAN;
    sum.saved_step = p->saved_step;
    train_batch buf = {0};
    rng_t rng = p->rng;
    long step = p->start_step;
    const int max_bad = p->max_bad_steps > 0 ? p->max_bad_steps : 5;
    const double t_start = now_s();
    int rc = train_batch_alloc(&buf, t->B, t->T, err);
    if (rc) return rc;
    sum.steps_done = step;

    train_progress pg;
    memset(&pg, 0, sizeof pg);
    pg.total = p->steps;
    pg.loss = pg.val_loss = NAN;

    const int have_val = p->data.n_val > 0 && p->data.fill_val;
    if (have_val) {
        rc = train_loop_eval(t, &p->head, &p->data, &buf, &pg.val, err);
        if (rc) goto done;
        sum.first_val_loss = sum.final_val_loss = pg.val.loss;
        sum.final_val = pg.val;
        pg.event = TRAIN_EVENT_EVAL;
        pg.step = step;
        pg.val_loss = pg.val.loss;
        pg.lr = optim_schedule_lr(&t->opt.params, step);
        pg.elapsed_s = now_s() - t_start;
        emit(p, &pg);
    }

    double loop_start = now_s();
    size_t tokens = 0;
    long steps_this_call = 0;
    int interrupted = 0, bad_in_row = 0;
    while (step < p->steps) {
        if (p->stop && *p->stop) {
            interrupted = 1;
            break;
        }
        train_head_out out;
        optim_stats st;
        int skipped;
        double t0 = now_s();
        rc = loop_step(t, p, step, &rng, &buf, &out, &st, &tokens, &skipped, err);
        if (rc) goto done;
        sum.train_time_s += now_s() - t0;
        step++;
        steps_this_call++;
        sum.steps_done = step;
        memset(&pg.val, 0, sizeof pg.val);
        pg.step = step;
        pg.loss = out.loss;
        pg.train = out;
        pg.lr = st.lr;
        pg.grad_norm = st.grad_norm;
        pg.val_loss = NAN;
        pg.saved = 0;
        if (skipped) {
            sum.skipped_steps++;
            pg.bad_in_row = ++bad_in_row;
            pg.event = TRAIN_EVENT_SKIPPED;
            pg.elapsed_s = now_s() - t_start;
            emit(p, &pg);
            if (bad_in_row >= max_bad) {
                rc = rlhf_errorf(err, RLHF_ERR_NUMERIC,
                                 "stopped at step %ld: %d steps in a row had a non-finite loss or gradient (the "
                                 "learning rate may be too high); the last checkpoint on disk is step %ld",
                                 step, bad_in_row, sum.saved_step);
                goto done;
            }
            continue;
        }
        bad_in_row = 0;
        pg.bad_in_row = 0;
        sum.final_loss = out.loss;
        pg.event = TRAIN_EVENT_STEP;
        if (have_val && ((p->eval_every > 0 && step % p->eval_every == 0) || step == p->steps)) {
            rc = train_loop_eval(t, &p->head, &p->data, &buf, &pg.val, err);
            if (rc) goto done;
            pg.val_loss = sum.final_val_loss = pg.val.loss;
            sum.final_val = pg.val;
        }
        if (p->save && ((p->save_every > 0 && step % p->save_every == 0) || step == p->steps)) {
            train_progress sp = pg;
            sp.event = TRAIN_EVENT_SAVING;
            emit(p, &sp);
            rc = p->save(p->save_ctx, step, &rng, err);
            if (rc) goto done;
            sum.saved_step = step;
            pg.saved = 1;
        }
        double wall = now_s() - loop_start;
        pg.elapsed_s = now_s() - t_start;
        pg.tokens_per_s = (double)tokens / (sum.train_time_s > 0 ? sum.train_time_s : 1e-9);
        pg.eta_s = wall / (double)steps_this_call * (double)(p->steps - step);
        emit(p, &pg);
    }
    sum.tokens_per_s = steps_this_call > 0 && sum.train_time_s > 0 ? (double)tokens / sum.train_time_s : 0.0;
    if (p->save && sum.saved_step != step) {
        /* Interrupted (or resumed at/past the end): leave the directory complete at this step. */
        train_progress sp = pg;
        sp.event = TRAIN_EVENT_SAVING;
        sp.step = step;
        emit(p, &sp);
        rc = p->save(p->save_ctx, step, &rng, err);
        if (rc) goto done;
        sum.saved_step = step;
    }
    if (interrupted) rc = rlhf_errorf(err, RLHF_ERR_INTERRUPTED, "interrupted at step %ld of %ld", step, p->steps);
done:
    sum.elapsed_s = now_s() - t_start;
    if (sum_out) *sum_out = sum;
    train_batch_free(&buf);
    return rc;
}
