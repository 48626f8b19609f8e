/* grpo.h — group-relative policy optimisation (GRPO) and RLOO: sampled groups of completions,
 * programmatic rewards, group-normalised (or leave-one-out) advantages, and the clipped
 * policy-gradient head of TRL's GRPOTrainer.
 *
 * The head. A micro-batch holds completion rows: prompt + completion, next-token targets only on
 * the completion's tokens (EOS included when the completion ended with it), labels[row] = the
 * row's advantage A. The head holds, for the same (B, T) positions, the old log-probabilities
 * (the policy that sampled, recomputed by the training forward pass: the decoder's kernels
 * differ) and, when beta > 0, the reference's. Per completion token, with r = exp(lp - old):
 *   loss_t = -min(r A, clip(r, 1 - epsilon, 1 + epsilon_high) A) + beta * k3,
 *   k3 = exp(ref - lp) - (ref - lp) - 1
 * aggregated as TRL's loss_type: grpo (mean over each completion's tokens, then over
 * completions), bnpo / dapo (mean over all completion tokens of the micro-batch), dr_grpo (sum
 * over tokens / (rows * max_completion_length)).
 * Metrics (TRL's names): reward, reward_std, frac_reward_zero_std, completions/mean_length,
 * completions/clipped_ratio (set by the data side through grpo_head_set_rollout_metrics),
 * clip_ratio/region_mean, kl (beta > 0), entropy (mean over completion tokens). */
#ifndef RLHF_GRPO_H
#define RLHF_GRPO_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "src/core/error.h"
#include "src/model/lora.h"
#include "src/model/model.h"
#include "src/train/loop.h"
#include "src/train/rollout.h"

typedef enum { GRPO_AGG_GRPO = 0, GRPO_AGG_BNPO, GRPO_AGG_DR_GRPO, GRPO_AGG_DAPO } grpo_loss_agg;
typedef enum { GRPO_SCALE_GROUP = 0, GRPO_SCALE_BATCH, GRPO_SCALE_NONE } grpo_scale;
typedef enum { GRPO_ADV_GROUP = 0, GRPO_ADV_RLOO } grpo_advantage;

typedef struct {
    float epsilon;          /* 0.2 */
    float epsilon_high;     /* 0.2 (DAPO's clip-higher uses 0.28) */
    float beta;             /* 0: no KL term (TRL's default) */
    grpo_loss_agg loss_agg; /* TRL's default in recent versions: dapo; here grpo unless asked */
    int max_completion;     /* dr_grpo's normaliser */
} grpo_params;

void grpo_params_defaults(grpo_params *p);
int grpo_loss_agg_parse(const char *name, grpo_loss_agg *out, rlhf_error *err);
const char *grpo_loss_agg_name(grpo_loss_agg a);
int grpo_scale_parse(const char *name, grpo_scale *out, rlhf_error *err);

typedef struct {
    grpo_params p;
    int B, T;
    float *old_lp;   /* (B, T) the sampling policy's log p(target) (filled by the data side) */
    float *ref_lp;   /* (B, T) the reference's, when beta > 0 */
    float *pos_loss; /* (B, T) scratch */
    float *coef;     /* (B, T) scratch: d(loss)/d(log p) per position */
    double rollout[5]; /* reward, reward_std, frac_reward_zero_std, mean_length, clipped_ratio */
    int have_rollout;
} grpo_head;

int grpo_head_init(grpo_head *h, const grpo_params *p, int B, int T, rlhf_error *err);
void grpo_head_free(grpo_head *h);
train_head grpo_train_head(grpo_head *h);
void grpo_head_set_rollout_metrics(grpo_head *h, double reward, double reward_std, double frac_zero_std,
                                   double mean_length, double clipped_ratio);

/* Advantages of n_groups groups of g rewards each (in order): GROUP — r - mean(group), divided
 * by the group's std (scale GROUP), the batch's std (BATCH) or nothing (NONE), std as torch's
 * (unbiased) plus 1e-4 as TRL adds; RLOO — r - mean of the other g - 1 rewards of the group
 * (g >= 2). Also the share of groups whose rewards are all equal. */
void grpo_advantages(const double *rewards, int n_groups, int g, grpo_advantage kind, grpo_scale scale, double *adv,
                     double *frac_zero_std);

/* Per-position log p(target) of rows (B, T) under m (targets < 0 give 0): one forward pass
 * (rollout_token_logps at temperature 1). */
int grpo_token_logps(model *m, model_acts *a, const int32_t *tokens, const int32_t *targets, int B, int T, float *out,
                     rlhf_error *err);

/* ---- the run (rlhf grpo / rlhf rloo) ---- */

typedef struct {
    const char *model_dir;
    const char *const *prompts;  /* (n_prompts) user prompts (rendered through the chat template
                                    when the model has one); borrowed */
    size_t n_prompts;
    const char *out_dir;
    grpo_params grpo;
    grpo_advantage advantage;
    grpo_scale scale;
    reward_fn reward;
    const char *reward_model;    /* a reward model directory (score head, num_labels 1) instead of
                                    `reward`, or NULL */
    float missing_eos_penalty;   /* subtracted from the reward of a completion without EOS */
    int num_generations;         /* G completions per prompt (>= 2) */
    int prompts_per_step;        /* prompts per micro-batch */
    int accum;
    int iterations;              /* optimizer steps on each rollout batch (TRL num_iterations) */
    int max_new_tokens;
    float temperature;           /* 1.0 */
    long steps;
    optim_params optim;
    double val_fraction;         /* held-out prompts, evaluated greedily before and after */
    uint64_t seed;
    long save_every;
    lora_params lora;
    int resume;                  /* continue the run in out_dir exactly (same settings, refused otherwise) */
    volatile sig_atomic_t *stop;
    train_progress_fn progress;
    void *progress_ctx;
    rollout_sink_fn sink;        /* sees every scored completion (may be NULL) */
    void *sink_ctx;
} grpo_run_params;

void grpo_run_params_defaults(grpo_run_params *p);

typedef struct {
    size_t n_train, n_val;
    long steps_done;
    double val_reward_before, val_reward_after; /* mean greedy reward on held-out prompts */
    double first_reward, last_reward;           /* mean sampled reward of the first/last step */
    long start_step;                            /* > 0: resumed from this step */
    double elapsed_s;
} grpo_summary;

int grpo_run(const grpo_run_params *p, grpo_summary *summary, rlhf_error *err);

#endif
