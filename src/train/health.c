/* health.c — the health rules over a run's metrics (see health.h). */
#include "src/train/health.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void health_params_defaults(health_params *p) {
    *p = (health_params){.logps_drop_frac = 0.3, .logps_drop_min = 2.0, .logps_window = 5, .early_steps = 10,
                         .pinned_steps = 5, .chance_after = 30, .chance_window = 20, .chance_max = 0.6,
                         .ratio_tol = 0.2, .ratio_steps = 3, .kl_steps = 10, .eos_steps = 5, .const_std = 1e-3,
                         .const_steps = 5, .zero_spread_steps = 3};
}

/* The metrics any rule reads; others are not kept. */
static const char *const k_watched[] = {"logps/chosen",         "logps/rejected",       "rewards/accuracies",
                                        "val/ratio",            "objective/kl",         "val/num_eos_tokens",
                                        "completions/clipped_ratio", "objective/scores_std", "reward_std",
                                        "frac_reward_zero_std"};

void health_init(health *h, unsigned kinds, const health_params *p) {
    memset(h, 0, sizeof *h);
    if (p) h->p = *p;
    else health_params_defaults(&h->p);
    h->kinds = kinds;
}

void health_free(health *h) {
    for (int i = 0; i < h->n_series; i++) {
        free(h->s[i].v);
        free(h->s[i].step);
    }
    memset(h, 0, sizeof *h);
}

static health_series *series(health *h, const char *name) {
    for (int i = 0; i < h->n_series; i++)
        if (strcmp(h->s[i].name, name) == 0) return &h->s[i];
    return NULL;
}

void health_observe_value(health *h, long step, const char *name, double value) {
    const char *watched = NULL;
    for (size_t i = 0; i < sizeof k_watched / sizeof *k_watched && !watched; i++)
        if (strcmp(k_watched[i], name) == 0) watched = k_watched[i];
    if (!watched || !isfinite(value)) return;
    health_series *s = series(h, watched);
    if (!s) {
        if (h->n_series == HEALTH_MAX_SERIES) return;
        s = &h->s[h->n_series++];
        s->name = watched;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        double *v = realloc(s->v, cap * sizeof *v);
        if (v) s->v = v;
        long *st = realloc(s->step, cap * sizeof *st);
        if (st) s->step = st;
        if (!v || !st) return; /* a warning missed, never a failed run */
        s->cap = cap;
    }
    s->v[s->n] = value;
    s->step[s->n] = step;
    s->n++;
}

/* Mean of values [from, from + n). */
static double mean(const health_series *s, size_t from, size_t n) {
    double m = 0;
    for (size_t i = from; i < from + n; i++) m += s->v[i];
    return m / (double)n;
}

/* How many of the last values, in a row, satisfy lo <= v <= hi. */
static size_t trailing(const health_series *s, double lo, double hi) {
    size_t k = 0;
    while (k < s->n && s->v[s->n - 1 - k] >= lo && s->v[s->n - 1 - k] <= hi) k++;
    return k;
}

/* Each rule: 1 and the text when it fires now. */
typedef int (*rule_fn)(health *h, char *text, size_t size);

static int dpo_logps_falling(health *h, char *text, size_t size) {
    const health_series *c = series(h, "logps/chosen"), *r = series(h, "logps/rejected");
    const size_t w = (size_t)h->p.logps_window;
    if (!c || !r || c->n < 2 * w || r->n < 2 * w) return 0;
    const double c0 = mean(c, 0, w), c1 = mean(c, c->n - w, w), r0 = mean(r, 0, w), r1 = mean(r, r->n - w, w);
    const double tc = fmax(h->p.logps_drop_min, h->p.logps_drop_frac * fabs(c0));
    const double tr = fmax(h->p.logps_drop_min, h->p.logps_drop_frac * fabs(r0));
    if (!(c0 - c1 > tc && r0 - r1 > tr)) return 0;
    snprintf(text, size,
             "logps/chosen fell from %.2f to %.2f and logps/rejected from %.2f to %.2f (means of the first and last %zu "
             "steps): the policy is making the chosen replies less likely too, and the margin grows only because the "
             "rejected ones fall faster; left alone it drifts toward text neither reply resembles (likelihood "
             "displacement). Try a lower --lr, a larger --beta, or --rpo-alpha 1 (an NLL term that keeps the chosen "
             "replies likely).",
             c0, c1, r0, r1, w);
    return 1;
}

static int dpo_accuracies_pinned(health *h, char *text, size_t size) {
    const health_series *a = series(h, "rewards/accuracies");
    if (!a || a->n == 0) return 0;
    size_t k = trailing(a, 0.999, INFINITY);
    if (k < (size_t)h->p.pinned_steps || a->step[a->n - k] > h->p.early_steps) return 0;
    snprintf(text, size,
             "rewards/accuracies has been 1.0 on every step since step %ld: the pairs separated almost at once. "
             "Usually the chosen replies carry a tell the model picks up without learning the preference (length, a "
             "closing phrase, formatting, EOS), or the learning rate throws the policy far from the reference. Check "
             "what tells chosen from rejected in the data; try a lower --lr or a larger --beta; judge by "
             "eval_rewards/accuracies on held-out pairs, not the training value.",
             a->step[a->n - k]);
    return 1;
}

static int dpo_accuracies_at_chance(health *h, char *text, size_t size) {
    const health_series *a = series(h, "rewards/accuracies");
    const size_t w = (size_t)h->p.chance_window;
    if (!a || a->n < w || a->step[a->n - 1] < h->p.chance_after) return 0;
    const double m = mean(a, a->n - w, w);
    if (m > h->p.chance_max) return 0;
    snprintf(text, size,
             "rewards/accuracies has averaged %.2f over the last %zu steps (0.5 is chance): the policy is not learning "
             "to rank the chosen replies above the rejected ones. Common causes: a learning rate too small for this "
             "model (TRL's 1e-6 suits large pretrained models; small ones need more), pairs that contradict each other "
             "(check `rlhf db agreement`), or replies cut away by --max-length. Try a higher --lr or more steps, or "
             "check the data.",
             m, w);
    return 1;
}

static int ppo_ratio_far(health *h, char *text, size_t size) {
    const health_series *s = series(h, "val/ratio");
    if (!s || s->n == 0) return 0;
    const double tol = h->p.ratio_tol;
    const size_t k = trailing(s, -INFINITY, 1 - tol) + trailing(s, 1 + tol, INFINITY);
    if (k < (size_t)h->p.ratio_steps) return 0;
    snprintf(text, size,
             "val/ratio has been %.3f (off 1 by more than %.2f) for %zu steps: the policy being updated has moved far "
             "from the one that sampled the rollouts, so the clipped objective is mostly clipping. Usual causes: too "
             "many epochs or too large a learning rate per rollout batch, or old log-probabilities from a different "
             "forward pass than the new ones. Try fewer epochs or minibatches per rollout or a lower learning rate.",
             s->v[s->n - 1], tol, k);
    return 1;
}

static int ppo_negative_kl(health *h, char *text, size_t size) {
    const health_series *s = series(h, "objective/kl");
    if (!s) return 0;
    const size_t k = trailing(s, -INFINITY, -1e-12);
    if (k < (size_t)h->p.kl_steps) return 0;
    snprintf(text, size,
             "objective/kl has been negative for %zu steps (now %.4f): the k1 estimator (log p - log p_ref of the "
             "sampled tokens) is negative on average only when the samples are not drawn from the policy itself, "
             "usually because of a sampling temperature, top-k/top-p, or another model's log-probabilities. Try "
             "sampling from the policy (temperature 1, no truncation) or the k3 estimator, which is never negative.",
             k, s->v[s->n - 1]);
    return 1;
}

static int rollout_no_eos(health *h, char *text, size_t size) {
    const health_series *e = series(h, "val/num_eos_tokens"), *c = series(h, "completions/clipped_ratio");
    size_t k = 0;
    const char *what = "";
    if (e && (k = trailing(e, -INFINITY, 0)) >= (size_t)h->p.eos_steps) what = "val/num_eos_tokens 0";
    else if (c && (k = trailing(c, 0.999, INFINITY)) >= (size_t)h->p.eos_steps) what = "completions/clipped_ratio 1";
    else return 0;
    snprintf(text, size,
             "No response has ended with EOS for %zu steps (%s): the policy runs to the length limit, so the rewards "
             "judge cut-off text and the model can learn to ramble. Try --missing-eos-penalty, a longer completion "
             "limit, or start from a model fine-tuned to stop (SFT appends EOS).",
             k, what);
    return 1;
}

static int reward_constant(health *h, char *text, size_t size) {
    const health_series *s = series(h, "objective/scores_std");
    if (!s) s = series(h, "reward_std");
    if (!s) return 0;
    const size_t k = trailing(s, -INFINITY, h->p.const_std);
    if (k < (size_t)h->p.const_steps) return 0;
    snprintf(text, size,
             "The reward model's scores have spread by %.2g or less for %zu steps (%s): it gives (nearly) the same "
             "score to every response, so there is nothing to learn from. Try it on held-out pairs (`rlhf reward "
             "eval`), check that it reads prompt and response in the format it was trained on, and that the responses are "
             "not all cut off or empty.",
             h->p.const_std, k, s->name);
    return 1;
}

static int grpo_zero_spread(health *h, char *text, size_t size) {
    const health_series *s = series(h, "frac_reward_zero_std");
    if (!s) return 0;
    const size_t k = trailing(s, 0.999, INFINITY);
    if (k < (size_t)h->p.zero_spread_steps) return 0;
    snprintf(text, size,
             "Every group has given all its completions the same reward for %zu steps (frac_reward_zero_std 1): the "
             "advantages are all zero, so there is no gradient. The prompts are too hard (all fail) or too easy (all "
             "pass) for this model, or the reward cannot tell completions apart. Try more completions per group, a "
             "higher sampling temperature, other prompts, or a graded reward.",
             k);
    return 1;
}

static const struct {
    const char *code;
    unsigned kind;
    rule_fn fn;
} k_rules[] = {
    {"dpo/chosen_logps_falling", HEALTH_DPO, dpo_logps_falling},
    {"dpo/accuracies_pinned", HEALTH_DPO, dpo_accuracies_pinned},
    {"dpo/accuracies_at_chance", HEALTH_DPO, dpo_accuracies_at_chance},
    {"ppo/ratio_far", HEALTH_PPO, ppo_ratio_far},
    {"ppo/negative_kl", HEALTH_PPO, ppo_negative_kl},
    {"rollout/no_eos", HEALTH_ROLLOUT, rollout_no_eos},
    {"reward/constant", HEALTH_REWARD_MODEL, reward_constant},
    {"grpo/zero_spread", HEALTH_GRPO, grpo_zero_spread},
};

int health_check(health *h, long step, health_warning *out, int max_out) {
    int n = 0;
    for (unsigned i = 0; i < sizeof k_rules / sizeof *k_rules && n < max_out; i++) {
        if (!(h->kinds & k_rules[i].kind) || (h->fired & (1u << i))) continue;
        if (!k_rules[i].fn(h, out[n].text, sizeof out[n].text)) continue;
        h->fired |= 1u << i;
        out[n].code = k_rules[i].code;
        out[n].step = step;
        n++;
    }
    return n;
}

int health_observe(health *h, long step, const train_head_out *m, health_warning *out, int max_out) {
    for (int i = 0; i < m->n; i++) health_observe_value(h, step, m->names[i], m->values[i]);
    return health_check(h, step, out, max_out);
}
