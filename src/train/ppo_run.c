/* ppo_run.c — `rlhf ppo`: rollout batches from the current policy (src/train/rollout.h) scored by
 * a reward model, old log-probabilities, values and the reference's log-probabilities from the
 * training forward pass, KL-penalised rewards, GAE, then ppo_epochs x num_mini_batches optimizer
 * steps of the PPO head per rollout batch through the shared loop (see ppo.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/fileio.h"
#include "src/core/rng.h"
#include "src/formats/model_load.h"
#include "src/train/ppo.h"
#include "src/train/score_train.h"

void ppo_run_params_defaults(ppo_run_params *p) {
    memset(p, 0, sizeof *p);
    ppo_params_defaults(&p->ppo);
    p->kl_estimator = PPO_KL_K1;
    p->kl_coef = 0.05f;
    p->target_kl = 0.0f;
    p->kl_horizon = 10000.0f;
    p->gamma = 1.0f;
    p->lam = 0.95f;
    p->whiten_advantages = 1;
    p->batch = 8;
    p->accum = 1;
    p->num_mini_batches = 1;
    p->ppo_epochs = 4;
    p->num_generations = 1;
    p->max_new_tokens = 53;
    p->steps = 100;
    optim_params_defaults(&p->optim);
    p->optim.lr = 3e-6f;
    p->optim.min_lr = 0.0f;
    p->optim.warmup_steps = 0;
    p->optim.weight_decay = 0.0f;
    p->val_fraction = 0.1;
    p->eval_samples = 4;
    p->seed = 42;
    p->save_every = 500;
    lora_params_defaults(&p->lora);
    p->lora.rank = 0;
}

typedef struct {
    const ppo_run_params *p;
    rollout_setup *su;     /* the policy, scorer, prompts, split */
    model *ref;
    train *t;
    ppo_head *h;
    int rows, T;           /* rows of a rollout batch, positions capacity */
    rollout_batch rb;
    float *lp, *ref_lp, *values, *rewards, *adv, *returns; /* (rows, T) */
    double *kl_sum;        /* (rows) */
    int32_t *chunk_tok, *chunk_tg; /* (batch, T) contiguous forward input */
    float *chunk_out;      /* (batch, T) */
    int *row_perm;         /* (rows) minibatch order of the current epoch */
    long row_perm_key;
    long rollout_id;
    double kl_coef;
    ppo_summary *sum;
} ppo_ctx;

/* Per-position log-probabilities (and the policy's values) of the rollout rows, `batch` rows per
 * forward on the trainer's arena. */
static int rollout_forward(ppo_ctx *c, model *m, float *lp_out, float *values_out, rlhf_error *err) {
    const int T = c->T, maxT = c->rb.maxT, Bm = c->p->batch;
    for (int r0 = 0; r0 < c->rows; r0 += Bm) {
        const int nb = c->rows - r0 < Bm ? c->rows - r0 : Bm;
        for (int r = 0; r < nb; r++) {
            memcpy(c->chunk_tok + (size_t)r * maxT, c->rb.tokens + (size_t)(r0 + r) * T, (size_t)maxT * sizeof(int32_t));
            memcpy(c->chunk_tg + (size_t)r * maxT, c->rb.targets + (size_t)(r0 + r) * T, (size_t)maxT * sizeof(int32_t));
        }
        int rc = rollout_token_logps(m, &c->t->acts, c->chunk_tok, c->chunk_tg, nb, maxT, c->p->ppo.temperature,
                                     c->chunk_out, err);
        if (rc) return rc;
        for (int r = 0; r < nb; r++)
            memcpy(lp_out + (size_t)(r0 + r) * T, c->chunk_out + (size_t)r * maxT, (size_t)maxT * sizeof(float));
        if (values_out) {
            ppo_head_values(c->h, &c->t->acts, c->chunk_tg, nb, maxT, c->chunk_out);
            for (int r = 0; r < nb; r++)
                memcpy(values_out + (size_t)(r0 + r) * T, c->chunk_out + (size_t)r * maxT, (size_t)maxT * sizeof(float));
        }
    }
    return RLHF_OK;
}

/* Rollout batch `ro`: sample, score, forward passes, KL rewards, GAE, metrics, adaptive KL. */
static int make_rollout(ppo_ctx *c, long ro, long step, rlhf_error *err) {
    const ppo_run_params *p = c->p;
    const int G = p->num_generations, P = c->rows / G;
    size_t *idx = malloc((size_t)P * sizeof *idx);
    uint64_t *seeds = malloc((size_t)P * sizeof *seeds);
    int rc = idx && seeds ? RLHF_OK : rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for rollouts");
    for (int j = 0; !rc && j < P; j++) {
        idx[j] = rollout_order_at(&c->su->order, (uint64_t)ro * P + (uint64_t)j);
        seeds[j] = p->seed ^ ((uint64_t)ro * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)j << 32);
    }
    const rollout_gen g = {p->ppo.temperature, p->max_new_tokens, G, NULL};
    if (!rc) rc = rollout_sample_begin(c->su, err);
    if (!rc) {
        rc = rollout_make(&c->su->b, c->su->prompt_ids, p->prompts, idx, P, &g, seeds, &c->su->scorer, p->sink, p->sink_ctx, step, &c->rb,
                          err);
        rollout_sample_end(c->su);
    }
    free(idx);
    free(seeds);
    if (rc) return rc;
    /* targets beyond maxT are -1 already (rollout_make fills every row to T) */
    const size_t cells = (size_t)c->rows * c->T;
    memset(c->lp, 0, cells * sizeof(float));
    memset(c->values, 0, cells * sizeof(float));
    memset(c->ref_lp, 0, cells * sizeof(float));
    /* measured without LoRA dropout; with LoRA the reference is the base with the adapter off */
    rollout_measure(c->su, 1);
    rc = rollout_forward(c, &c->su->b.m, c->lp, c->values, err);
    if (!rc) {
        rollout_reference(c->su, 1);
        rc = rollout_forward(c, c->ref ? c->ref : &c->su->b.m, c->ref_lp, NULL, err);
        rollout_reference(c->su, 0);
    }
    rollout_measure(c->su, 0);
    if (rc) return rc;
    ppo_rollout_advantages(c->lp, c->ref_lp, c->values, c->rb.targets, c->rb.rewards, c->rows, c->T, p->kl_estimator,
                           c->kl_coef, p->gamma, p->lam, p->whiten_advantages, c->rewards, c->adv, c->returns, c->kl_sum);
    double kl = 0, ent = 0, score = 0, score2 = 0;
    int n_eos = 0;
    for (int r = 0; r < c->rows; r++) {
        kl += c->kl_sum[r];
        score += c->rb.rewards[r];
        score2 += c->rb.rewards[r] * c->rb.rewards[r];
        n_eos += c->rb.eos[r];
        for (int t = 0; t < c->T; t++)
            if (c->rb.targets[(size_t)r * c->T + t] >= 0) ent -= c->lp[(size_t)r * c->T + t];
    }
    kl /= c->rows;
    ent /= c->rows;
    const double var = c->rows > 1 ? (score2 - score * score / c->rows) / (c->rows - 1) : 0;
    score /= c->rows;
    ppo_head_set_rollout_metrics(c->h, kl, ent, -c->kl_coef * kl, score, sqrt(var > 0 ? var : 0), n_eos, c->kl_coef);
    ppo_summary *s = c->sum;
    if (s->rollouts == 0) {
        s->first_score = score;
        s->first_kl = kl;
        s->max_kl = kl;
    }
    s->last_score = score;
    s->last_kl = kl;
    if (kl > s->max_kl) s->max_kl = kl;
    s->rollouts++;
    if (p->target_kl > 0) c->kl_coef = ppo_adaptive_kl(c->kl_coef, kl, p->target_kl, c->rows, p->kl_horizon);
    s->kl_coef = c->kl_coef;
    c->rollout_id = ro;
    return RLHF_OK;
}

static int fill(void *vctx, long step, int micro, rng_t *rng, train_batch *b, rlhf_error *err) {
    (void)rng;
    ppo_ctx *c = vctx;
    const ppo_run_params *p = c->p;
    const long per = (long)p->ppo_epochs * p->num_mini_batches;
    const long ro = step / per, k = step % per, epoch = k / p->num_mini_batches, mb = k % p->num_mini_batches;
    int rc = ppo_head_set_step(c->h, step, err); /* first: the new rollout's values use the updated head */
    if (rc) return rc;
    if (ro != c->rollout_id && (rc = make_rollout(c, ro, step, err))) return rc;
    if (c->row_perm_key != ro * per + epoch) { /* a fresh order of the rows for every epoch */
        rng_t r;
        rng_seed(&r, p->seed ^ ((uint64_t)ro * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)epoch * 0xbf58476d1ce4e5b9ull) ^ 0x55);
        for (int i = 0; i < c->rows; i++) c->row_perm[i] = i;
        for (int i = c->rows; i > 1; i--) {
            int j = (int)rng_below(&r, (uint64_t)i), tmp = c->row_perm[i - 1];
            c->row_perm[i - 1] = c->row_perm[j];
            c->row_perm[j] = tmp;
        }
        c->row_perm_key = ro * per + epoch;
    }
    const int B = p->batch, T = c->rb.maxT;
    b->B = B;
    b->T = T;
    for (int i = 0; i < B; i++) {
        const int row = c->row_perm[(mb * p->accum + micro) * B + i];
        const size_t src = (size_t)row * c->T, dst = (size_t)i * T;
        memcpy(b->tokens + dst, c->rb.tokens + src, (size_t)T * sizeof(int32_t));
        memcpy(b->targets + dst, c->rb.targets + src, (size_t)T * sizeof(int32_t));
        memcpy(c->h->old_lp + dst, c->lp + src, (size_t)T * sizeof(float));
        memcpy(c->h->old_values + dst, c->values + src, (size_t)T * sizeof(float));
        memcpy(c->h->adv + dst, c->adv + src, (size_t)T * sizeof(float));
        memcpy(c->h->returns + dst, c->returns + src, (size_t)T * sizeof(float));
        b->labels[i] = 0.0f;
    }
    return RLHF_OK;
}

/* The held-out prompts' mean reward: greedy, and over eval_samples samples each (same seeds
 * before and after training). */
static int eval_val(ppo_ctx *c, double *greedy, double *sampled, rlhf_error *err) {
    const ppo_run_params *p = c->p;
    rollout_setup *su = c->su;
    int rc = rollout_sample_begin(su, err);
    if (!rc)
        rc = rollout_eval_greedy(&su->b, su->prompt_ids, p->prompts, su->val_idx, su->n_val, p->max_new_tokens,
                                 &c->su->scorer, greedy, err);
    if (!rc && p->eval_samples >= 1) {
        const rollout_gen g = {p->ppo.temperature, p->max_new_tokens, p->eval_samples, NULL};
        rc = rollout_eval_sampled(&su->b, su->prompt_ids, p->prompts, su->val_idx, su->n_val, &g, p->seed ^ 0xe7a1ull,
                                  &c->su->scorer, sampled, err);
    }
    rollout_sample_end(su);
    return rc;
}

/* After the policy (or adapter) of a checkpoint: the value head, its pending step applied first
 * (the same update the next step would apply before reading a value). */
static int save_value_head(void *vctx, long step, const rng_t *rng, rlhf_error *err) {
    (void)step;
    (void)rng;
    ppo_ctx *c = vctx;
    int rc = ppo_head_flush(c->h, err);
    char path[4096];
    if (!rc && (size_t)snprintf(path, sizeof path, "%s/%s", c->p->out_dir, PPO_VALUE_HEAD_FILE) >= sizeof path)
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "output path too long");
    return rc ? rc : ppo_head_save(c->h, path, err);
}

/* What the next steps read that a step does not rebuild (see rollout.h, exact resume). */
static int state_io(void *vctx, rollout_blob *b) {
    ppo_ctx *c = vctx;
    ppo_head *h = c->h;
    ppo_summary *s = c->sum;
    const size_t rows = (size_t)c->rows, cells = rows * c->T;
    rollout_blob_io(b, h->vparams, ((size_t)h->C + 1) * sizeof(float));
    rollout_blob_optim(b, &h->vopt);
    rollout_blob_io(b, h->rollout, sizeof h->rollout);
    rollout_blob_io(b, &h->have_rollout, sizeof h->have_rollout);
    rollout_blob_io(b, &c->kl_coef, sizeof c->kl_coef);
    rollout_blob_io(b, &c->rollout_id, sizeof c->rollout_id);
    rollout_blob_io(b, c->rb.tokens, cells * sizeof(int32_t));
    rollout_blob_io(b, c->rb.targets, cells * sizeof(int32_t));
    rollout_blob_io(b, c->rb.len, rows * sizeof(int));
    rollout_blob_io(b, c->rb.n_comp, rows * sizeof(int));
    rollout_blob_io(b, c->rb.eos, rows * sizeof(int));
    rollout_blob_io(b, c->rb.rewards, rows * sizeof(double));
    rollout_blob_io(b, c->rb.prompt, rows * sizeof(size_t));
    rollout_blob_io(b, &c->rb.maxT, sizeof c->rb.maxT);
    float *arrays[4] = {c->lp, c->values, c->adv, c->returns};
    for (int i = 0; i < 4; i++) rollout_blob_io(b, arrays[i], cells * sizeof(float));
    double *sums[6] = {&s->first_score, &s->last_score, &s->first_kl, &s->last_kl, &s->max_kl, &s->kl_coef};
    for (int i = 0; i < 6; i++) rollout_blob_io(b, sums[i], sizeof(double));
    rollout_blob_io(b, &s->rollouts, sizeof s->rollouts);
    if (c->su->use_lora) rollout_blob_io(b, &c->su->lo.rng, sizeof c->su->lo.rng);
    return RLHF_OK;
}

/* The run's settings as recorded in its training state. */
static char *settings_json(const ppo_run_params *p, const rollout_setup *su) {
    rollout_setting set[ROLLOUT_COMMON_SETTINGS + 24];
    char seed[24];
    int n = rollout_common_settings(set, &p->optim, &p->lora, p->seed, seed);
    const rollout_setting v[] = {
        {"trainer", 0, "ppo"},
        {"steps", (double)p->steps, NULL},
        {"batch", p->batch, NULL},
        {"accum", p->accum, NULL},
        {"num_mini_batches", p->num_mini_batches, NULL},
        {"ppo_epochs", p->ppo_epochs, NULL},
        {"num_generations", p->num_generations, NULL},
        {"max_new_tokens", p->max_new_tokens, NULL},
        {"temperature", p->ppo.temperature, NULL},
        {"cliprange", p->ppo.cliprange, NULL},
        {"cliprange_value", p->ppo.cliprange_value, NULL},
        {"vf_coef", p->ppo.vf_coef, NULL},
        {"kl_estimator", p->kl_estimator, NULL},
        {"kl_coef", p->kl_coef, NULL},
        {"target_kl", p->target_kl, NULL},
        {"kl_horizon", p->kl_horizon, NULL},
        {"gamma", p->gamma, NULL},
        {"lam", p->lam, NULL},
        {"whiten_advantages", p->whiten_advantages, NULL},
        {"missing_eos_penalty", p->missing_eos_penalty, NULL},
        {"val_fraction", p->val_fraction, NULL},
        {"eval_samples", p->eval_samples, NULL},
        {"value_head", 0, p->value_head ? p->value_head : ""},
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) set[n++] = v[i];
    return rollout_run_json(su, set, n);
}

int ppo_run(const ppo_run_params *p, ppo_summary *sum, rlhf_error *err) {
    ppo_summary local;
    if (!sum) sum = &local;
    memset(sum, 0, sizeof *sum);
    sum->val_reward_before = sum->val_reward_after = sum->val_sampled_before = sum->val_sampled_after = NAN;
    if (!p->out_dir || !*p->out_dir) return rlhf_errorf(err, RLHF_ERR_INVALID, "no output directory given (--out)");
    if (!p->reward_model) return rlhf_errorf(err, RLHF_ERR_INVALID, "PPO needs a reward model (--reward RM_DIR)");
    if (p->n_prompts == 0) return rlhf_errorf(err, RLHF_ERR_INVALID, "no prompts to train on");
    if (p->batch < 1 || p->accum < 1 || p->num_mini_batches < 1 || p->ppo_epochs < 1 || p->num_generations < 1 ||
        p->max_new_tokens < 1 || p->steps < 1)
        return rlhf_errorf(err, RLHF_ERR_INVALID,
                           "batch, accum, mini-batches, PPO epochs, generations, max new tokens and steps must be >= 1");
    const int rows = p->batch * p->accum * p->num_mini_batches;
    if (rows % p->num_generations)
        return rlhf_errorf(err, RLHF_ERR_INVALID,
                           "a rollout batch of %d completions (batch x accum x mini-batches) is not a whole number of "
                           "groups of --num-generations %d",
                           rows, p->num_generations);
    if (!(p->gamma >= 0 && p->gamma <= 1) || !(p->lam >= 0 && p->lam <= 1) || !(p->kl_coef >= 0) || !(p->target_kl >= 0) ||
        !(p->kl_horizon > 0))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "gamma and lambda must be in [0, 1], kl_coef and target_kl >= 0, "
                                                  "the KL horizon > 0");
    model ref = {0};
    train t = {0};
    ppo_head h = {0};
    rollout_setup su;
    ppo_ctx c;
    memset(&c, 0, sizeof c);
    c.p = p;
    c.sum = sum;
    c.rollout_id = -1;
    c.row_perm_key = -1;
    c.kl_coef = p->kl_coef;
    sum->kl_coef = p->kl_coef;
    int rc = rollout_setup_open(&su, p->model_dir, NULL, p->reward_model, p->missing_eos_penalty, p->prompts, p->n_prompts,
                                p->max_new_tokens, p->val_fraction, p->seed, err);
    if (rc) return rc;
    c.su = &su;
    sum->n_train = su.n_train;
    sum->n_val = su.n_val;
    long start_step = 0;
    rng_t start_rng;
    char *run_json = settings_json(p, &su);
    if (!run_json) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory setting up the PPO run");
        goto done;
    }
    if ((rc = rollout_resume_check(p->out_dir, p->resume, run_json, &start_step, &start_rng, err))) goto done;
    c.rows = rows;
    c.T = su.T;
    const size_t cells = (size_t)rows * c.T;
    c.lp = malloc(cells * sizeof(float));
    c.ref_lp = malloc(cells * sizeof(float));
    c.values = malloc(cells * sizeof(float));
    c.rewards = malloc(cells * sizeof(float));
    c.adv = malloc(cells * sizeof(float));
    c.returns = malloc(cells * sizeof(float));
    c.kl_sum = malloc((size_t)rows * sizeof(double));
    c.chunk_tok = malloc((size_t)p->batch * c.T * sizeof(int32_t));
    c.chunk_tg = malloc((size_t)p->batch * c.T * sizeof(int32_t));
    c.chunk_out = malloc((size_t)p->batch * c.T * sizeof(float));
    c.row_perm = malloc((size_t)rows * sizeof(int));
    if (!c.lp || !c.ref_lp || !c.values || !c.rewards || !c.adv || !c.returns || !c.kl_sum || !c.chunk_tok ||
        !c.chunk_tg || !c.chunk_out || !c.row_perm) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory setting up the PPO run");
        goto done;
    }
    if ((rc = rollout_batch_init(&c.rb, rows, c.T, err))) goto done;

    train_params tp;
    train_params_defaults(&tp);
    tp.batch = p->batch;
    tp.accum = p->accum;
    tp.context = c.T;
    tp.optim = p->optim;
    tp.optim.total_steps = p->steps;
    if ((rc = optim_params_validate(&tp.optim, err))) goto done;
    /* the reference: a snapshot of the starting weights, or with LoRA the base (adapter off) */
    if (p->lora.rank <= 0) {
        if ((rc = model_init(&ref, &su.b.m.config, err))) goto done;
        memcpy(ref.params, su.b.m.params, su.b.m.n_floats * sizeof(float));
        c.ref = &ref;
    }
    if ((rc = rollout_train_init(&su, &t, &tp, &p->lora, p->seed, err))) goto done;
    c.t = &t;
    if ((rc = ppo_head_init(&h, &p->ppo, &su.b.m, p->batch, c.T, &tp.optim, p->accum, err))) goto done;
    c.h = &h;
    if (p->value_head && (rc = ppo_head_load(&h, p->value_head, err))) goto done;
    /* the held-out "before" from the starting weights, also on resume (loaded after it) */
    if ((rc = eval_val(&c, &sum->val_reward_before, &sum->val_sampled_before, err))) goto done;
    if (p->resume && (rc = rollout_resume_load(p->out_dir, &t, state_io, &c, err))) goto done;
    sum->start_step = start_step;
    if ((rc = file_mkdir_p(p->out_dir, err))) goto done;
    rollout_loop_params rlp;
    rollout_loop_params_init(&rlp, &su, p->model_dir, p->out_dir, p->steps, p->save_every, p->seed);
    rlp.save_extra = save_value_head;
    rlp.save_extra_ctx = &c;
    rlp.run_json = run_json;
    rlp.state_io = state_io;
    rlp.start_step = start_step;
    rlp.start_rng = start_rng;
    rlp.stop = p->stop;
    rlp.progress = p->progress;
    rlp.progress_ctx = p->progress_ctx;
    rc = rollout_loop_run(&t, ppo_train_head(&h), (train_data){.fill = fill, .ctx = &c}, &rlp, &sum->steps_done, &sum->elapsed_s,
                          err);
    if (!rc) rc = ppo_head_flush(&h, err);
    if (!rc) rc = eval_val(&c, &sum->val_reward_after, &sum->val_sampled_after, err);
done:
    free(run_json);
    rollout_batch_free(&c.rb);
    free(c.lp);
    free(c.ref_lp);
    free(c.values);
    free(c.rewards);
    free(c.adv);
    free(c.returns);
    free(c.kl_sum);
    free(c.chunk_tok);
    free(c.chunk_tg);
    free(c.chunk_out);
    free(c.row_perm);
    ppo_head_free(&h);
    train_free(&t);
    model_free(&ref);
    rollout_setup_close(&su);
    return rc;
}
