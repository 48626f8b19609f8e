/* kto.c — the KTO losses as a training-loop head (see kto.h). */
#include "src/train/kto.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const k_loss_names[] = {"kto", "apo_zero_unpaired"};

void kto_params_defaults(kto_params *p) {
    memset(p, 0, sizeof *p);
    p->loss_type = KTO_LOSS_KTO;
    p->beta = 0.1f;
    p->desirable_weight = 1.0f;
    p->undesirable_weight = 1.0f;
}

const char *kto_loss_type_name(kto_loss_type t) {
    return (unsigned)t < sizeof k_loss_names / sizeof *k_loss_names ? k_loss_names[t] : "?";
}

int kto_loss_type_parse(const char *name, kto_loss_type *out, rlhf_error *err) {
    for (int i = 0; i < (int)(sizeof k_loss_names / sizeof *k_loss_names); i++)
        if (name && strcmp(name, k_loss_names[i]) == 0) {
            *out = (kto_loss_type)i;
            return RLHF_OK;
        }
    return rlhf_errorf(err, RLHF_ERR_INVALID, "unknown KTO loss type \"%s\" (use kto or apo_zero_unpaired)",
                       name ? name : "");
}

int kto_params_validate(const kto_params *p, rlhf_error *err) {
    if (!(p->beta > 0) || !isfinite(p->beta)) return rlhf_errorf(err, RLHF_ERR_INVALID, "beta must be > 0 (got %g)", p->beta);
    if (!(p->desirable_weight > 0) || !isfinite(p->desirable_weight))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "desirable weight must be > 0 (got %g)", p->desirable_weight);
    if (!(p->undesirable_weight > 0) || !isfinite(p->undesirable_weight))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "undesirable weight must be > 0 (got %g)", p->undesirable_weight);
    if ((unsigned)p->loss_type > KTO_LOSS_APO_ZERO_UNPAIRED) return rlhf_errorf(err, RLHF_ERR_INVALID, "unknown KTO loss type");
    return RLHF_OK;
}

int kto_uses_kl(const kto_params *p) { return p->loss_type == KTO_LOSS_KTO; }

int kto_head_init(kto_head *h, const kto_params *p, const model_config *c, int B, int T, rlhf_error *err) {
    memset(h, 0, sizeof *h);
    int rc = kto_params_validate(p, err);
    if (rc) return rc;
    if (B < 1) return rlhf_errorf(err, RLHF_ERR_INVALID, "KTO micro-batches hold at least one example (got %d)", B);
    h->p = *p;
    h->B = B;
    h->T = T;
    h->desirable = calloc((size_t)B, 1);
    h->pos_loss = malloc((size_t)B * T * sizeof *h->pos_loss);
    h->logp = malloc((size_t)B * sizeof *h->logp);
    h->grad = malloc((size_t)B * sizeof *h->grad);
    if (kto_uses_kl(p)) {
        h->kl_tokens = calloc((size_t)B * T, sizeof *h->kl_tokens);
        h->kl_targets = calloc((size_t)B * T, sizeof *h->kl_targets);
        h->kl_ref = calloc((size_t)B, sizeof *h->kl_ref);
    }
    if (!h->desirable || !h->pos_loss || !h->logp || !h->grad ||
        (kto_uses_kl(p) && (!h->kl_tokens || !h->kl_targets || !h->kl_ref))) {
        kto_head_free(h);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the KTO head");
    }
    if (kto_uses_kl(p) && (rc = model_acts_init(&h->kl_acts, c, B, T, err))) {
        kto_head_free(h);
        return rc;
    }
    return RLHF_OK;
}

void kto_head_free(kto_head *h) {
    free(h->desirable);
    free(h->kl_tokens);
    free(h->kl_targets);
    free(h->kl_ref);
    model_acts_free(&h->kl_acts);
    free(h->pos_loss);
    free(h->logp);
    free(h->grad);
    memset(h, 0, sizeof *h);
}

/* Each row's completion log-probability from the per-position losses: the sum over its target
 * positions; RLHF_ERR_INVALID for a row without any. */
static int row_logps(const float *pos_loss, const int32_t *targets, int B, int T, double *logp, rlhf_error *err) {
    for (int r = 0; r < B; r++) {
        double s = 0;
        int cnt = 0;
        for (int t = 0; t < T; t++)
            if (targets[(size_t)r * T + t] >= 0) {
                s -= pos_loss[(size_t)r * T + t];
                cnt++;
            }
        if (cnt == 0) return rlhf_errorf(err, RLHF_ERR_INVALID, "KTO row %d has an empty completion (no target positions)", r);
        logp[r] = s;
    }
    return RLHF_OK;
}

/* The KL estimate: the KL rows' mean (policy - reference) log-probability, from their own forward
 * pass without gradient, clamped at 0 (TRL). */
static int kl_estimate(kto_head *h, const model *m, int n, double *z, rlhf_error *err) {
    const int T = h->kl_T, V = m->config.vocab_size;
    if (T < 1 || T > h->T) return rlhf_errorf(err, RLHF_ERR_INVALID, "KTO KL rows of %d positions (at most %d)", T, h->T);
    int rc = model_forward(m, &h->kl_acts, h->kl_tokens, n, T, err);
    if (rc) return rc;
    model_xent(h->kl_acts.logits, h->kl_targets, NULL, n, T, V, NULL, h->pos_loss);
    if ((rc = row_logps(h->pos_loss, h->kl_targets, n, T, h->logp, err))) return rc;
    double s = 0;
    for (int i = 0; i < n; i++) s += h->logp[i] - h->kl_ref[i];
    *z = s / n > 0 ? s / n : 0;
    return RLHF_OK;
}

static double sigmoid(double x) { return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x)); }

static int kto_loss(void *self, model *m, model_acts *a, const train_batch *b, int want_grad, const float **dlogits,
                    const float **dhidden, train_head_out *out, rlhf_error *err) {
    kto_head *h = self;
    const kto_params *p = &h->p;
    const int n = b->B, T = b->T, V = m->config.vocab_size;
    if (n > h->B || T > h->T)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "KTO micro-batch of %d x %d rows does not fit %d x %d", n, T, h->B, h->T);
    double z = 0;
    int rc = kto_uses_kl(p) ? kl_estimate(h, m, n, &z, err) : RLHF_OK;
    if (rc) return rc;
    int N = 0;
    for (size_t i = 0; i < (size_t)n * T; i++) N += b->targets[i] >= 0;
    model_xent(a->logits, b->targets, NULL, n, T, V, want_grad ? a->logits : NULL, h->pos_loss);
    if ((rc = row_logps(h->pos_loss, b->targets, n, T, h->logp, err))) return rc;
    const double beta = p->beta;
    double loss = 0, rew[2] = {0, 0}, lps[2] = {0, 0};
    int cnt[2] = {0, 0};
    for (int i = 0; i < n; i++) {
        const int d = h->desirable[i] != 0;
        const double r = h->logp[i] - b->labels[i];
        const double s = sigmoid(beta * (r - z));
        /* desirable: w_d (1 - s); undesirable: w_u s (= 1 - σ(beta (z - r)), and APO's σ(beta r) with z = 0) */
        const double w = d ? p->desirable_weight : p->undesirable_weight;
        loss += w * (d ? 1.0 - s : s) / n;
        const double dr = w * beta * s * (1.0 - s) * (d ? -1.0 : 1.0);
        h->grad[i] = dr / n;
        rew[d] += beta * r;
        lps[d] += h->logp[i];
        cnt[d]++;
    }
    if (want_grad) {
        /* (softmax - onehot) / N  ->  g_row (onehot - softmax) */
        for (int row = 0; row < n; row++) {
            const float s = (float)(-h->grad[row] * N);
            float *dd = a->logits + (size_t)row * T * V;
            for (size_t k = 0; k < (size_t)T * V; k++) dd[k] *= s;
        }
        *dlogits = a->logits;
        *dhidden = NULL;
    }
    out->loss = loss;
    if (cnt[1]) {
        train_head_out_set(out, "rewards/chosen", rew[1] / cnt[1]);
        train_head_out_set(out, "logps/chosen", lps[1] / cnt[1]);
    }
    if (cnt[0]) {
        train_head_out_set(out, "rewards/rejected", rew[0] / cnt[0]);
        train_head_out_set(out, "logps/rejected", lps[0] / cnt[0]);
    }
    if (cnt[0] && cnt[1]) train_head_out_set(out, "rewards/margins", rew[1] / cnt[1] - rew[0] / cnt[0]);
    train_head_out_set(out, "kl", z);
    train_head_out_set(out, "count/chosen", cnt[1]);
    train_head_out_set(out, "count/rejected", cnt[0]);
    return RLHF_OK;
}

train_head kto_train_head(kto_head *h) { return (train_head){"kto", kto_loss, h}; }
