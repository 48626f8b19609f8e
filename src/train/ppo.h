/* ppo.h — PPO as TRL's PPOTrainer computes it: rollouts from the policy (src/train/rollout.h)
 * scored by a reward model at the end of each completion, a per-token KL penalty against the
 * starting policy, GAE, whitened advantages, and several epochs of minibatches of the clipped
 * surrogate plus a clipped value loss.
 *
 * The value head SHARES THE POLICY'S BODY: v[b,t] = w . h[b,t] + c on the final normalised hidden
 * state h (the LM head's input), as TRL's older AutoModelForCausalLMWithValueHead did, not TRL's
 * current separate value model initialised from the reward model. Why: on a 2-core CPU the
 * separate model doubles every rollout and training forward/backward and holds a second set of
 * parameters and AdamW moments; sharing gives the values from the same forward pass as the
 * log-probabilities and one backward (the head hands the loop both d(logits) and d(hidden)).
 * The price is interference: the value loss's gradient reaches the body. It is weighted by
 * vf_coef (0.1, TRL's default), which is what that design relied on. The head's C + 1 floats
 * have their own AdamW (same learning-rate schedule and clipping threshold as the policy,
 * clipped on their own), stepped when the next step begins (ppo_head_set_step, before any value
 * is read) and once more by ppo_head_flush; they start at zero (values 0, or a saved head:
 * ppo_run_params.value_head) and are saved beside the policy (PPO_VALUE_HEAD_FILE).
 * With LoRA the body is frozen: the adapter (which the policy and value losses both reach
 * through the shared body) and the value head are what trains.
 *
 * Per rollout batch (ppo_rollout_advantages), over completion positions (targets >= 0) of rows
 * whose log-probabilities lp (policy), ref (reference) and values v come from the training
 * forward pass at the sampling temperature (logits / temperature, as TRL):
 *   kl_t = lp - ref (k1) or exp(ref - lp) - (ref - lp) - 1 (k3)
 *   r_t  = -kl_coef * kl_t, plus the row's score at its last completion token
 *   GAE:   delta_t = r_t + gamma v_{t+1} - v_t,  A_t = delta_t + gamma lambda A_{t+1}, with v and
 *          A zero after the last completion token (the episode ends there; TRL reads one value
 *          past it), returns R_t = A_t + v_t
 *   A whitened over the batch's completion tokens: (A - mean) / sqrt(var + 1e-8), var unbiased.
 * The head (a train_head) on a micro-batch, with N its completion tokens and r = exp(lp - old):
 *   pg  = mean_N max(-A r, -A clip(r, 1 - cliprange, 1 + cliprange))
 *   vc  = old_v + clip(v - old_v, -cliprange_value, cliprange_value)
 *   vf  = 0.5 mean_N max((v - R)^2, (vc - R)^2)
 *   loss = pg + vf_coef vf
 * Metrics (TRL's names): loss/policy_avg, loss/value_avg, policy/clipfrac_avg, val/clipfrac_avg,
 * policy/approxkl_avg (0.5 mean (lp - old)^2), policy/entropy_avg, val/ratio; per rollout
 * (ppo_head_set_rollout_metrics): objective/kl (sum over a completion, mean over rows),
 * objective/entropy (sum of -lp of the sampled tokens), objective/non_score_reward,
 * objective/rlhf_reward, objective/scores, objective/scores_std (for the health rule that spots a
 * reward model scoring everything alike), val/num_eos_tokens, objective/kl_coef.
 * Adaptive KL (TRL's AdaptiveKLController): after each rollout batch
 *   kl_coef *= 1 + clip(kl / target - 1, -0.2, 0.2) * n / horizon     (n: the batch's episodes). */
#ifndef RLHF_PPO_H
#define RLHF_PPO_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "src/core/error.h"
#include "src/model/lora.h"
#include "src/model/model.h"
#include "src/train/loop.h"
#include "src/train/optim.h"
#include "src/train/rollout.h"

typedef enum { PPO_KL_K1 = 0, PPO_KL_K3 } ppo_kl_estimator;

int ppo_kl_estimator_parse(const char *name, ppo_kl_estimator *out, rlhf_error *err);

typedef struct {
    float cliprange;       /* 0.2 */
    float cliprange_value; /* 0.2 */
    float vf_coef;         /* 0.1 */
    float temperature;     /* 0.7: log-probabilities of logits / temperature */
} ppo_params;

void ppo_params_defaults(ppo_params *p);

typedef struct {
    ppo_params p;
    int B, T, C;
    /* (B, T) per position, filled by the data side for the current micro-batch */
    float *old_lp, *old_values, *adv, *returns;
    float *coef_v;   /* (B, T) scratch: d(loss)/d(value) */
    float *coef_lp;  /* (B, T) scratch: d(loss)/d(log p) */
    float *dhidden;  /* (B, T, C) handed to model_backward */
    /* the value head: w (C) then c, gradients, its own AdamW */
    float *vparams, *vgrads;
    optim vopt;
    int have_grads;  /* vgrads hold a step not yet applied */
    long cur_step, grad_step;
    int accum;
    double rollout[8];
    int have_rollout;
} ppo_head;

/* Buffers for micro-batches up to (B, T) of model m; the value head's optimizer from optim
 * (accum: micro-batches per step, for the gradient average). */
int ppo_head_init(ppo_head *h, const ppo_params *p, const model *m, int B, int T, const optim_params *optim, int accum,
                  rlhf_error *err);
void ppo_head_free(ppo_head *h);
train_head ppo_train_head(ppo_head *h);
/* The optimizer step the next micro-batches belong to (the data side calls it before it reads
 * any value: a value-head update pending from the previous step is applied here). */
int ppo_head_set_step(ppo_head *h, long step, rlhf_error *err);
/* Applies a pending value-head step (after the loop's last step). */
int ppo_head_flush(ppo_head *h, rlhf_error *err);
/* The value head as a safetensors file (PPO_VALUE_HEAD_FILE in the output directory), TRL's
 * AutoModelForCausalLMWithValueHead names: v_head.summary.weight (1, C) and v_head.summary.bias
 * (1). Loading checks the hidden size and replaces the head's parameters (not its optimizer). */
#define PPO_VALUE_HEAD_FILE "value_head.safetensors"
int ppo_head_save(const ppo_head *h, const char *path, rlhf_error *err);
int ppo_head_load(ppo_head *h, const char *path, rlhf_error *err);
/* Values of a forward's rows (B, T) on a: v[b,t] = w . hidden[b,t] + c (0 where targets < 0). */
void ppo_head_values(const ppo_head *h, const model_acts *a, const int32_t *targets, int B, int T, float *values);
void ppo_head_set_rollout_metrics(ppo_head *h, double kl, double entropy, double non_score, double scores,
                                  double scores_std, double num_eos, double kl_coef);

/* Per-token rewards, advantages and returns of a rollout batch of `rows` rows of T positions
 * (see the top of the file). lp, ref, values, targets: (rows, T); scores: (rows). Outputs
 * (rows, T), 0 off the completion; kl_sum (rows) each row's summed KL. */
void ppo_rollout_advantages(const float *lp, const float *ref, const float *values, const int32_t *targets,
                            const double *scores, int rows, int T, ppo_kl_estimator est, double kl_coef, double gamma,
                            double lam, int whiten, float *rewards, float *adv, float *returns, double *kl_sum);

/* TRL's AdaptiveKLController.update. */
double ppo_adaptive_kl(double kl_coef, double kl, double target, double n_episodes, double horizon);

/* ---- the run (rlhf ppo) ---- */

typedef struct {
    const char *model_dir;
    const char *reward_model;     /* reward model directory (required) */
    const char *const *prompts;   /* user prompts; borrowed */
    size_t n_prompts;
    const char *out_dir;
    ppo_params ppo;
    ppo_kl_estimator kl_estimator;/* k1 */
    float kl_coef;                /* 0.05 */
    float target_kl;              /* > 0: adaptive coefficient towards this KL (0: fixed) */
    float kl_horizon;             /* 10000 */
    float gamma, lam;             /* 1.0, 0.95 */
    int whiten_advantages;        /* 1 */
    float missing_eos_penalty;    /* 0: off */
    int batch;                    /* rows per micro-batch */
    int accum;                    /* micro-batches per optimizer step (a minibatch) */
    int num_mini_batches;         /* minibatches per rollout batch (1) */
    int ppo_epochs;               /* passes over each rollout batch (4) */
    int num_generations;          /* completions per prompt (1) */
    int max_new_tokens;           /* 53 (TRL's response_length) */
    long steps;                   /* optimizer steps */
    optim_params optim;
    double val_fraction;
    int eval_samples;             /* held-out prompts: also this many sampled completions each at
                                     the temperature, scored before and after (0: greedy only) */
    uint64_t seed;
    long save_every;
    lora_params lora;             /* rank 0: full fine-tuning; else a fresh adapter (seeded by
                                     seed), saved unmerged; the reference is the base with the
                                     adapter off; the adapter and the value head train */
    const char *value_head;       /* a saved PPO_VALUE_HEAD_FILE to start the value head from, or NULL */
    int resume;                   /* continue the run in out_dir exactly (same settings, refused otherwise) */
    volatile sig_atomic_t *stop;
    train_progress_fn progress;
    void *progress_ctx;
    rollout_sink_fn sink;
    void *sink_ctx;
} ppo_run_params;

void ppo_run_params_defaults(ppo_run_params *p);

typedef struct {
    size_t n_train, n_val;
    long steps_done, rollouts;
    double val_reward_before, val_reward_after; /* mean greedy reward-model score, held-out prompts */
    double val_sampled_before, val_sampled_after; /* mean score of eval_samples samples per held-out prompt */
    double first_score, last_score;             /* objective/scores of the first / last rollout */
    double first_kl, last_kl;                   /* objective/kl of the first / last rollout */
    double max_kl;                              /* the largest objective/kl of any rollout */
    double kl_coef;                             /* at the end */
    long start_step;                            /* > 0: resumed from this step */
    double elapsed_s;
} ppo_summary;

int ppo_run(const ppo_run_params *p, ppo_summary *summary, rlhf_error *err);

#endif
