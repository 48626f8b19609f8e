/* health.h — health warnings of a training run: patterns in the logged metrics that users of
 * other tools learned to dread, recognised as they happen.
 *
 * The engine side only decides: a `health` watches the metrics of each step (by their TRL names)
 * and returns a warning the first time a rule fires; the caller (repl/) prints it and stores it
 * with the run. Each warning has a stable code, the step, and a text that says what was seen,
 * what it usually means and what to try. Every rule fires at most once per run (a resumed run
 * starts watching afresh).
 *
 * Rules, by the metrics they read (a rule whose metrics a trainer does not log never fires):
 *   dpo/chosen_logps_falling   logps/chosen and logps/rejected both fell by more than
 *                              logps_drop_frac of their starting magnitude (and logps_drop_min
 *                              nats): the margin grows only because rejected falls faster
 *   dpo/accuracies_pinned      rewards/accuracies >= 0.999 on pinned_steps steps in a row within
 *                              the first early_steps steps: separated at once (a shortcut in the
 *                              data, or a step size that throws the policy far)
 *   dpo/accuracies_at_chance   rewards/accuracies averaged <= chance_max over the last
 *                              chance_window steps, after chance_after steps
 *   ppo/ratio_far              val/ratio off 1 by more than ratio_tol on ratio_steps steps in a row
 *   ppo/negative_kl            objective/kl < 0 on kl_steps steps in a row (k1 estimator)
 *   rollout/no_eos             val/num_eos_tokens == 0, or completions/clipped_ratio >= 0.999, on
 *                              eos_steps steps in a row
 *   reward/constant            objective/scores_std (or reward_std) <= const_std on const_steps
 *                              steps in a row, with a reward model
 *   grpo/zero_spread           frac_reward_zero_std >= 0.999 on zero_spread_steps steps in a row
 * A trainer enables the rules that apply to it (health_init's kinds) and feeds every step's
 * metrics (health_observe, or health_observe_value for values outside a train_head_out). */
#ifndef RLHF_HEALTH_H
#define RLHF_HEALTH_H

#include <stddef.h>

#include "src/train/loop.h"

/* Which rule families a trainer enables (bits). */
enum {
    HEALTH_DPO = 1u << 0,      /* the dpo/ rules */
    HEALTH_PPO = 1u << 1,      /* ppo/ratio_far, ppo/negative_kl */
    HEALTH_ROLLOUT = 1u << 2,  /* rollout/no_eos */
    HEALTH_REWARD_MODEL = 1u << 3, /* reward/constant (online trainers scored by a reward model) */
    HEALTH_GRPO = 1u << 4,     /* grpo/zero_spread */
};

typedef struct {
    double logps_drop_frac;  /* 0.3 */
    double logps_drop_min;   /* 2.0 nats */
    int logps_window;        /* 5: steps averaged at the start and at the end */
    int early_steps;         /* 10 */
    int pinned_steps;        /* 5 */
    int chance_after;        /* 30 */
    int chance_window;       /* 20 */
    double chance_max;       /* 0.6 */
    double ratio_tol;        /* 0.2 */
    int ratio_steps;         /* 3 */
    int kl_steps;            /* 10 */
    int eos_steps;           /* 5 */
    double const_std;        /* 1e-3 */
    int const_steps;         /* 5 */
    int zero_spread_steps;   /* 3 */
} health_params;

void health_params_defaults(health_params *p);

#define HEALTH_MAX_SERIES 12
#define HEALTH_TEXT_MAX 640

typedef struct {
    const char *code;            /* static: "dpo/chosen_logps_falling", ... */
    long step;
    char text[HEALTH_TEXT_MAX];  /* what was seen, what it means, what to try */
} health_warning;

/* The recent values of one metric (all of them: runs are thousands of steps, not millions). */
typedef struct {
    const char *name;
    double *v;
    long *step;
    size_t n, cap;
} health_series;

typedef struct {
    health_params p;
    unsigned kinds;
    unsigned fired;              /* bit per rule */
    health_series s[HEALTH_MAX_SERIES];
    int n_series;
} health;

/* kinds: HEALTH_* bits; p may be NULL for the defaults. */
void health_init(health *h, unsigned kinds, const health_params *p);
void health_free(health *h);

/* Records one step's metrics (names as logged: "rewards/accuracies", ...; others are ignored)
 * and checks the rules: returns how many new warnings were written to out (at most max_out;
 * a rule beyond max_out fires on a later call). */
int health_observe(health *h, long step, const train_head_out *metrics, health_warning *out, int max_out);
/* Records one value (for metrics kept outside a train_head_out); health_check then decides. */
void health_observe_value(health *h, long step, const char *name, double value);
int health_check(health *h, long step, health_warning *out, int max_out);

#endif
