/* grpo_run.c — `rlhf grpo` / `rlhf rloo`: rollouts from the current policy (src/train/rollout.h:
 * one batched gen_run of G candidates per prompt), rewards, advantages, old (and reference)
 * log-probabilities from the training forward pass, and the loop with the GRPO head. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/fileio.h"
#include "src/core/rng.h"
#include "src/formats/model_load.h"
#include "src/gen/generate.h"
#include "src/gen/prompt.h"
#include "src/train/grpo.h"
#include "src/train/score_train.h"

void grpo_run_params_defaults(grpo_run_params *p) {
    memset(p, 0, sizeof *p);
    grpo_params_defaults(&p->grpo);
    p->advantage = GRPO_ADV_GROUP;
    p->scale = GRPO_SCALE_GROUP;
    p->num_generations = 8;
    p->prompts_per_step = 2;
    p->accum = 1;
    p->iterations = 1;
    p->max_new_tokens = 64;
    p->temperature = 1.0f;
    p->steps = 100;
    optim_params_defaults(&p->optim);
    p->optim.lr = 1e-6f;
    p->optim.min_lr = 0.0f;
    p->optim.warmup_steps = 0;
    p->optim.weight_decay = 0.0f;
    p->val_fraction = 0.1;
    p->seed = 42;
    p->save_every = 500;
    lora_params_defaults(&p->lora);
    p->lora.rank = 0;
}

typedef struct {
    const grpo_run_params *p;
    rollout_setup *su;      /* the policy, scorer, prompts, split */
    model *ref;             /* beta > 0: the starting policy's snapshot */
    train *t;
    grpo_head *h;
    rollout_batch rb;       /* one micro-batch's rows */
    int R, T;               /* rows per micro-batch, positions capacity */
    /* the current rollout batch: accum micro-batches of R rows */
    int32_t *tokens, *targets; /* (accum, R, T) */
    float *labels;             /* (accum, R) */
    float *old_lp, *ref_lp;    /* (accum, R, T) */
    int *mb_T;                 /* (accum) positions used by each micro-batch */
    long rollout_step;         /* step the rollout was generated for (-1: none) */
    double first_reward, last_reward;
    int have_first;
    rlhf_error gen_err;
} rollout_ctx;

/* Generates the rollout batch of `step`: for every micro-batch, prompts_per_step prompts with G
 * completions each; rewards, advantages, rows, old and reference log-probabilities. */
static int make_rollouts(rollout_ctx *c, long step, rlhf_error *err) {
    const grpo_run_params *p = c->p;
    const int G = p->num_generations, P = p->prompts_per_step, R = c->R, T = c->T;
    double *adv = malloc((size_t)R * sizeof *adv);
    size_t *idx = malloc((size_t)P * sizeof *idx);
    uint64_t *seeds = malloc((size_t)P * sizeof *seeds);
    int rc = adv && idx && seeds ? RLHF_OK : rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for rollouts");
    double sum = 0, sum2 = 0, len_sum = 0, zero_sum = 0;
    int n_all = 0, clipped = 0;
    const long rollout = step / p->iterations;
    const rollout_gen g = {p->temperature, p->max_new_tokens, G, NULL};
    for (int mb = 0; !rc && mb < p->accum; mb++) {
        int32_t *tok = c->tokens + (size_t)mb * R * T, *tg = c->targets + (size_t)mb * R * T;
        for (int j = 0; j < P; j++) {
            idx[j] = rollout_order_at(&c->su->order, ((uint64_t)rollout * p->accum + (uint64_t)mb) * P + (uint64_t)j);
            seeds[j] = p->seed ^ ((uint64_t)rollout * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)(mb * P + j) << 32);
        }
        if ((rc = rollout_sample_begin(c->su, err))) break;
        rc = rollout_make(&c->su->b, c->su->prompt_ids, p->prompts, idx, P, &g, seeds, &c->su->scorer, p->sink, p->sink_ctx, step,
                          &c->rb, err);
        rollout_sample_end(c->su);
        if (rc) break;
        const double *rewards = c->rb.rewards;
        const int maxT = c->rb.maxT;
        for (int r = 0; r < R; r++) {
            len_sum += c->rb.n_comp[r];
            clipped += !c->rb.eos[r];
        }
        double fz;
        grpo_advantages(rewards, P, G, p->advantage, p->scale, adv, &fz);
        zero_sum += fz;
        for (int r = 0; r < R; r++) {
            c->labels[(size_t)mb * R + r] = (float)adv[r];
            sum += rewards[r];
            sum2 += rewards[r] * rewards[r];
            n_all++;
        }
        /* the rows compacted to maxT positions: the loop's batches are (B, T) contiguous */
        for (int r = 0; r < R; r++) {
            memcpy(tok + (size_t)r * maxT, c->rb.tokens + (size_t)r * T, (size_t)maxT * sizeof *tok);
            memcpy(tg + (size_t)r * maxT, c->rb.targets + (size_t)r * T, (size_t)maxT * sizeof *tg);
        }
        c->mb_T[mb] = maxT;
        /* the sampling policy's log-probabilities, by the training forward pass */
        rollout_measure(c->su, 1); /* without LoRA dropout */
        rc = grpo_token_logps(&c->su->b.m, &c->t->acts, tok, tg, R, maxT, c->old_lp + (size_t)mb * R * T, err);
        if (!rc && p->grpo.beta > 0) { /* with LoRA the reference is the base: the adapter off */
            rollout_reference(c->su, 1);
            rc = grpo_token_logps(c->ref ? c->ref : &c->su->b.m, &c->t->acts, tok, tg, R, maxT,
                                  c->ref_lp + (size_t)mb * R * T, err);
            rollout_reference(c->su, 0);
        }
        rollout_measure(c->su, 0);
    }
    if (!rc) {
        double mean = sum / n_all, var = n_all > 1 ? (sum2 - n_all * mean * mean) / (n_all - 1) : 0;
        grpo_head_set_rollout_metrics(c->h, mean, sqrt(var > 0 ? var : 0), zero_sum / p->accum, len_sum / n_all,
                                      (double)clipped / n_all);
        if (!c->have_first) {
            c->first_reward = mean;
            c->have_first = 1;
        }
        c->last_reward = mean;
        c->rollout_step = step;
    }
    free(adv);
    free(idx);
    free(seeds);
    return rc;
}

static int fill(void *vctx, long step, int micro, rng_t *rng, train_batch *b, rlhf_error *err) {
    (void)rng;
    rollout_ctx *c = vctx;
    if (micro == 0 && (c->rollout_step < 0 || step / c->p->iterations != c->rollout_step / c->p->iterations)) {
        int rc = make_rollouts(c, step, err);
        if (rc) return rc;
    }
    const int R = c->R, T = c->mb_T[micro];
    b->B = R;
    b->T = T;
    memcpy(b->tokens, c->tokens + (size_t)micro * R * c->T, (size_t)R * T * sizeof(int32_t));
    memcpy(b->targets, c->targets + (size_t)micro * R * c->T, (size_t)R * T * sizeof(int32_t));
    memcpy(b->labels, c->labels + (size_t)micro * R, (size_t)R * sizeof(float));
    memcpy(c->h->old_lp, c->old_lp + (size_t)micro * R * c->T, (size_t)R * T * sizeof(float));
    if (c->p->grpo.beta > 0) memcpy(c->h->ref_lp, c->ref_lp + (size_t)micro * R * c->T, (size_t)R * T * sizeof(float));
    return RLHF_OK;
}

/* Mean reward of greedy completions of the held-out prompts. */
static int eval_val(rollout_ctx *c, double *out, rlhf_error *err) {
    int rc = rollout_sample_begin(c->su, err);
    if (!rc)
        rc = rollout_eval_greedy(&c->su->b, c->su->prompt_ids, c->p->prompts, c->su->val_idx, c->su->n_val,
                                 c->p->max_new_tokens, &c->su->scorer, out, err);
    rollout_sample_end(c->su);
    return rc;
}

/* What the next steps read that a step does not rebuild (see rollout.h, exact resume). */
static int state_io(void *vctx, rollout_blob *b) {
    rollout_ctx *c = vctx;
    const size_t A = (size_t)c->p->accum, cells = A * c->R * c->T;
    rollout_blob_io(b, c->tokens, cells * sizeof *c->tokens);
    rollout_blob_io(b, c->targets, cells * sizeof *c->targets);
    rollout_blob_io(b, c->labels, A * c->R * sizeof *c->labels);
    rollout_blob_io(b, c->old_lp, cells * sizeof *c->old_lp);
    if (c->ref_lp) rollout_blob_io(b, c->ref_lp, cells * sizeof *c->ref_lp);
    rollout_blob_io(b, c->mb_T, A * sizeof *c->mb_T);
    rollout_blob_io(b, &c->rollout_step, sizeof c->rollout_step);
    rollout_blob_io(b, &c->first_reward, sizeof c->first_reward);
    rollout_blob_io(b, &c->last_reward, sizeof c->last_reward);
    rollout_blob_io(b, &c->have_first, sizeof c->have_first);
    rollout_blob_io(b, c->h->rollout, sizeof c->h->rollout);
    rollout_blob_io(b, &c->h->have_rollout, sizeof c->h->have_rollout);
    if (c->su->use_lora) rollout_blob_io(b, &c->su->lo.rng, sizeof c->su->lo.rng);
    return RLHF_OK;
}

/* The run's settings as recorded in its training state. */
static char *settings_json(const grpo_run_params *p, const rollout_setup *su) {
    rollout_setting set[ROLLOUT_COMMON_SETTINGS + 20];
    char seed[24];
    int n = rollout_common_settings(set, &p->optim, &p->lora, p->seed, seed);
    const rollout_setting v[] = {
        {"trainer", 0, p->advantage == GRPO_ADV_RLOO ? "rloo" : "grpo"},
        {"steps", (double)p->steps, NULL},
        {"scale_rewards", p->scale, NULL},
        {"loss_type", 0, grpo_loss_agg_name(p->grpo.loss_agg)},
        {"epsilon", p->grpo.epsilon, NULL},
        {"epsilon_high", p->grpo.epsilon_high, NULL},
        {"beta", p->grpo.beta, NULL},
        {"missing_eos_penalty", p->missing_eos_penalty, NULL},
        {"num_generations", p->num_generations, NULL},
        {"prompts_per_step", p->prompts_per_step, NULL},
        {"accum", p->accum, NULL},
        {"iterations", p->iterations, NULL},
        {"max_new_tokens", p->max_new_tokens, NULL},
        {"temperature", p->temperature, NULL},
        {"val_fraction", p->val_fraction, NULL},
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) set[n++] = v[i];
    return rollout_run_json(su, set, n);
}

int grpo_run(const grpo_run_params *p, grpo_summary *sum, rlhf_error *err) {
    grpo_summary local;
    if (!sum) sum = &local;
    memset(sum, 0, sizeof *sum);
    sum->val_reward_before = sum->val_reward_after = NAN;
    if (!p->out_dir || !*p->out_dir) return rlhf_errorf(err, RLHF_ERR_INVALID, "no output directory given (--out)");
    if (p->n_prompts == 0) return rlhf_errorf(err, RLHF_ERR_INVALID, "no prompts to train on");
    if (p->num_generations < 2 || p->num_generations > 256)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "--num-generations must be 2..256 (a group needs two completions to compare)");
    if (p->prompts_per_step < 1 || p->accum < 1 || p->iterations < 1 || p->max_new_tokens < 1 || p->steps < 1)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "prompts per step, accum, iterations, max new tokens and steps must be >= 1");
    model ref = {0};
    train t = {0};
    grpo_head h = {0};
    rollout_setup su;
    rollout_ctx c;
    memset(&c, 0, sizeof c);
    c.p = p;
    c.rollout_step = -1;
    int rc = rollout_setup_open(&su, p->model_dir, &p->reward, p->reward_model, p->missing_eos_penalty, p->prompts,
                                p->n_prompts, p->max_new_tokens, p->val_fraction, p->seed, err);
    if (rc) return rc;
    c.su = &su;
    sum->n_train = su.n_train;
    sum->n_val = su.n_val;
    long start_step = 0;
    rng_t start_rng;
    char *run_json = settings_json(p, &su);
    if (!run_json) goto nomem;
    if ((rc = rollout_resume_check(p->out_dir, p->resume, run_json, &start_step, &start_rng, err))) goto done;
    c.R = p->prompts_per_step * p->num_generations;
    c.T = su.T;
    if ((rc = rollout_batch_init(&c.rb, c.R, c.T, err))) goto done;
    const size_t cells = (size_t)p->accum * c.R * c.T;
    c.tokens = malloc(cells * sizeof *c.tokens);
    c.targets = malloc(cells * sizeof *c.targets);
    c.old_lp = malloc(cells * sizeof *c.old_lp);
    c.ref_lp = p->grpo.beta > 0 ? malloc(cells * sizeof *c.ref_lp) : NULL;
    c.labels = malloc((size_t)p->accum * c.R * sizeof *c.labels);
    c.mb_T = malloc((size_t)p->accum * sizeof *c.mb_T);
    if (!c.tokens || !c.targets || !c.old_lp || (p->grpo.beta > 0 && !c.ref_lp) || !c.labels || !c.mb_T)
        goto nomem;

    /* the trainer */
    train_params tp;
    train_params_defaults(&tp);
    tp.batch = c.R;
    tp.accum = p->accum;
    tp.context = c.T;
    tp.optim = p->optim;
    tp.optim.total_steps = p->steps;
    if ((rc = optim_params_validate(&tp.optim, err))) goto done;
    if (p->grpo.beta > 0 && p->lora.rank <= 0) { /* the reference: a snapshot of the starting weights */
        if ((rc = model_init(&ref, &su.b.m.config, err))) goto done;
        memcpy(ref.params, su.b.m.params, su.b.m.n_floats * sizeof(float));
        c.ref = &ref;
    }
    if ((rc = rollout_train_init(&su, &t, &tp, &p->lora, p->seed, err))) goto done;
    c.t = &t;
    grpo_params gpar = p->grpo;
    gpar.max_completion = p->max_new_tokens;
    if ((rc = grpo_head_init(&h, &gpar, c.R, c.T, err))) goto done;
    c.h = &h;
    /* the held-out "before" from the starting weights, also on resume (loaded after it) */
    if ((rc = eval_val(&c, &sum->val_reward_before, err))) goto done;
    if (p->resume && (rc = rollout_resume_load(p->out_dir, &t, state_io, &c, err))) goto done;
    sum->start_step = start_step;
    if ((rc = file_mkdir_p(p->out_dir, err))) goto done;
    rollout_loop_params rlp;
    rollout_loop_params_init(&rlp, &su, p->model_dir, p->out_dir, p->steps, p->save_every, p->seed);
    rlp.save_extra_ctx = &c;
    rlp.run_json = run_json;
    rlp.state_io = state_io;
    rlp.start_step = start_step;
    rlp.start_rng = start_rng;
    rlp.stop = p->stop;
    rlp.progress = p->progress;
    rlp.progress_ctx = p->progress_ctx;
    rc = rollout_loop_run(&t, grpo_train_head(&h), (train_data){.fill = fill, .ctx = &c}, &rlp, &sum->steps_done, &sum->elapsed_s,
                          err);
    sum->first_reward = c.first_reward;
    sum->last_reward = c.last_reward;
    if (rc) goto done;
    rc = eval_val(&c, &sum->val_reward_after, err);
    goto done;
nomem:
    rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory setting up the GRPO run");
done:
    free(run_json);
    rollout_batch_free(&c.rb);
    free(c.tokens);
    free(c.targets);
    free(c.old_lp);
    free(c.ref_lp);
    free(c.labels);
    free(c.mb_T);
    grpo_head_free(&h);
    train_free(&t);
    model_free(&ref);
    rollout_setup_close(&su);
    return rc;
}
