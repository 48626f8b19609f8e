/* grpo.c — GRPO/RLOO: the clipped policy-gradient head, advantages, token log-probabilities,
 * (see grpo.h). */
#include "src/train/grpo.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


void grpo_params_defaults(grpo_params *p) {
    memset(p, 0, sizeof *p);
    p->epsilon = 0.2f;
    p->epsilon_high = 0.2f;
    p->beta = 0.0f;
    p->loss_agg = GRPO_AGG_GRPO;
    p->max_completion = 256;
}

static const char *const k_agg_names[] = {"grpo", "bnpo", "dr_grpo", "dapo"};
const char *grpo_loss_agg_name(grpo_loss_agg a) { return (unsigned)a < 4 ? k_agg_names[a] : "?"; }

int grpo_loss_agg_parse(const char *name, grpo_loss_agg *out, rlhf_error *err) {
    for (int i = 0; i < 4; i++)
        if (name && strcmp(name, k_agg_names[i]) == 0) {
            *out = (grpo_loss_agg)i;
            return RLHF_OK;
        }
    return rlhf_errorf(err, RLHF_ERR_INVALID, "unknown loss aggregation \"%s\" (use grpo, bnpo, dr_grpo or dapo)",
                       name ? name : "");
}

int grpo_scale_parse(const char *name, grpo_scale *out, rlhf_error *err) {
    static const char *const names[] = {"group", "batch", "none"};
    for (int i = 0; i < 3; i++)
        if (name && strcmp(name, names[i]) == 0) {
            *out = (grpo_scale)i;
            return RLHF_OK;
        }
    return rlhf_errorf(err, RLHF_ERR_INVALID, "unknown reward scaling \"%s\" (use group, batch or none)", name ? name : "");
}

int grpo_head_init(grpo_head *h, const grpo_params *p, int B, int T, rlhf_error *err) {
    memset(h, 0, sizeof *h);
    if (!(p->epsilon >= 0 && p->epsilon < 1) || !(p->epsilon_high >= 0) || !(p->beta >= 0) || p->max_completion < 1)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "GRPO: epsilon must be in [0, 1), epsilon_high and beta >= 0");
    h->p = *p;
    h->B = B;
    h->T = T;
    const size_t bt = (size_t)B * T;
    h->old_lp = calloc(bt, sizeof *h->old_lp);
    h->ref_lp = calloc(bt, sizeof *h->ref_lp);
    h->pos_loss = malloc(bt * sizeof *h->pos_loss);
    h->coef = malloc(bt * sizeof *h->coef);
    if (!h->old_lp || !h->ref_lp || !h->pos_loss || !h->coef) {
        grpo_head_free(h);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the GRPO head");
    }
    return RLHF_OK;
}

void grpo_head_free(grpo_head *h) {
    free(h->old_lp);
    free(h->ref_lp);
    free(h->pos_loss);
    free(h->coef);
    memset(h, 0, sizeof *h);
}

void grpo_head_set_rollout_metrics(grpo_head *h, double reward, double reward_std, double frac_zero_std,
                                   double mean_length, double clipped_ratio) {
    h->rollout[0] = reward;
    h->rollout[1] = reward_std;
    h->rollout[2] = frac_zero_std;
    h->rollout[3] = mean_length;
    h->rollout[4] = clipped_ratio;
    h->have_rollout = 1;
}

static int grpo_loss(void *self, model *m, model_acts *a, const train_batch *b, int want_grad, const float **dlogits,
                     const float **dhidden, train_head_out *out, rlhf_error *err) {
    grpo_head *h = self;
    const int B = b->B, T = b->T, V = m->config.vocab_size;
    if (B > h->B || T > h->T)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "GRPO micro-batch %d x %d exceeds the head's %d x %d", B, T, h->B, h->T);
    const grpo_params *p = &h->p;
    int N = 0;
    double ent = 0;
    for (size_t i = 0; i < (size_t)B * T; i++)
        if (b->targets[i] >= 0) {
            N++;
            ent += rollout_entropy(a->logits + i * V, V);
        }
    /* per-position -log p, and (softmax - onehot) / N in place of the logits */
    model_xent(a->logits, b->targets, NULL, B, T, V, want_grad ? a->logits : NULL, h->pos_loss);
    const double lo = 1.0 - p->epsilon, hi = 1.0 + p->epsilon_high;
    double loss = 0, kl_sum = 0;
    int clipped = 0;
    for (int r = 0; r < B; r++) {
        const double A = b->labels[r];
        int n_r = 0;
        for (int t = 0; t < T; t++) n_r += b->targets[(size_t)r * T + t] >= 0;
        double w; /* each token's weight in the loss */
        switch (p->loss_agg) {
        case GRPO_AGG_GRPO: w = n_r ? 1.0 / ((double)n_r * B) : 0; break;
        case GRPO_AGG_DR_GRPO: w = 1.0 / ((double)B * p->max_completion); break;
        default: w = N ? 1.0 / N : 0; break;
        }
        for (int t = 0; t < T; t++) {
            const size_t i = (size_t)r * T + t;
            if (b->targets[i] < 0) {
                h->coef[i] = 0;
                continue;
            }
            const double lp = -(double)h->pos_loss[i];
            const double ratio = exp(lp - h->old_lp[i]);
            const double c2 = ratio < lo ? lo : ratio > hi ? hi : ratio;
            const double l1 = ratio * A, l2 = c2 * A;
            double lt = -(l1 < l2 ? l1 : l2);
            /* the unclipped branch carries the gradient, unless the clipped one is smaller and clamped */
            double d = (l1 <= l2 || (ratio >= lo && ratio <= hi)) ? -A * ratio : 0.0;
            clipped += (ratio < lo && A < 0) || (ratio > hi && A > 0);
            if (p->beta > 0) {
                const double dr = h->ref_lp[i] - lp, k3 = exp(dr) - dr - 1.0;
                lt += p->beta * k3;
                d += p->beta * (1.0 - exp(dr));
                kl_sum += k3;
            }
            loss += w * lt;
            h->coef[i] = (float)(w * d);
        }
    }
    if (want_grad) {
        /* (softmax - onehot) / N  ->  coef * (onehot - softmax) */
        for (size_t i = 0; i < (size_t)B * T; i++) {
            const float s = -h->coef[i] * (float)N;
            float *dl = a->logits + i * V;
            if (b->targets[i] < 0) continue; /* already zero */
            for (int v = 0; v < V; v++) dl[v] *= s;
        }
        *dlogits = a->logits;
        *dhidden = NULL;
    }
    out->loss = loss;
    if (h->have_rollout) {
        train_head_out_set(out, "reward", h->rollout[0]);
        train_head_out_set(out, "reward_std", h->rollout[1]);
        train_head_out_set(out, "frac_reward_zero_std", h->rollout[2]);
        train_head_out_set(out, "completions/mean_length", h->rollout[3]);
        train_head_out_set(out, "completions/clipped_ratio", h->rollout[4]);
    }
    train_head_out_set(out, "clip_ratio/region_mean", N ? (double)clipped / N : 0.0);
    train_head_out_set(out, "entropy", N ? ent / N : 0.0);
    if (p->beta > 0) train_head_out_set(out, "kl", N ? kl_sum / N : 0.0);
    return RLHF_OK;
}

train_head grpo_train_head(grpo_head *h) { return (train_head){"grpo", grpo_loss, h}; }

void grpo_advantages(const double *rewards, int n_groups, int g, grpo_advantage kind, grpo_scale scale, double *adv,
                     double *frac_zero_std) {
    int zero = 0;
    const int n = n_groups * g;
    double bm = 0, bs = 0;
    for (int i = 0; i < n; i++) bm += rewards[i];
    bm /= n;
    for (int i = 0; i < n; i++) bs += (rewards[i] - bm) * (rewards[i] - bm);
    bs = n > 1 ? sqrt(bs / (n - 1)) : 0;
    for (int k = 0; k < n_groups; k++) {
        const double *r = rewards + (size_t)k * g;
        double m = 0, s = 0;
        for (int i = 0; i < g; i++) m += r[i];
        m /= g;
        for (int i = 0; i < g; i++) s += (r[i] - m) * (r[i] - m);
        s = g > 1 ? sqrt(s / (g - 1)) : 0;
        zero += s == 0;
        for (int i = 0; i < g; i++) {
            double a;
            if (kind == GRPO_ADV_RLOO) {
                a = g > 1 ? r[i] - (m * g - r[i]) / (g - 1) : 0;
            } else {
                a = r[i] - m;
                if (scale == GRPO_SCALE_GROUP) a /= s + 1e-4;
                else if (scale == GRPO_SCALE_BATCH) a /= bs + 1e-4;
            }
            adv[(size_t)k * g + i] = a;
        }
    }
    if (frac_zero_std) *frac_zero_std = n_groups ? (double)zero / n_groups : 0;
}

int grpo_token_logps(model *m, model_acts *a, const int32_t *tokens, const int32_t *targets, int B, int T, float *out,
                     rlhf_error *err) {
    return rollout_token_logps(m, a, tokens, targets, B, T, 1.0f, out, err);
}
