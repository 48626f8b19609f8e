/* score_head.c — score head forward/backward and the classification and Bradley–Terry losses
 * (see score_head.h). K is small (1 for reward models), so the head's products are plain loops;
 * the body's cost dominates. */
#include "src/train/score_head.h"

#include <assert.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/model/lora.h"

int score_head_init(score_head *h, const model *m, int B, int T, rlhf_error *err) {
    memset(h, 0, sizeof *h);
    const int K = m->config.num_labels, C = m->config.dim;
    if (K <= 0) return rlhf_errorf(err, RLHF_ERR_INVALID, "score head: the model is a language model, not a classifier (num_labels 0)");
    if (B < 1 || T < 1) return rlhf_errorf(err, RLHF_ERR_INVALID, "score head: need B, T >= 1 (got %d, %d)", B, T);
    h->B = B;
    h->T = T;
    h->C = C;
    h->K = K;
    h->dhidden = malloc((size_t)B * T * C * sizeof(float));
    h->scores = malloc((size_t)B * K * sizeof(float));
    h->dscores = malloc((size_t)B * K * sizeof(float));
    if (!h->dhidden || !h->scores || !h->dscores) {
        score_head_free(h);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "score head: out of memory for (%d, %d)", B, T);
    }
    return RLHF_OK;
}

void score_head_free(score_head *h) {
    free(h->dhidden);
    free(h->scores);
    free(h->dscores);
    memset(h, 0, sizeof *h);
}

static int check_lengths(const int32_t *lengths, int B, int T, rlhf_error *err) {
    for (int b = 0; b < B; b++)
        if (lengths[b] < 1 || lengths[b] > T)
            return rlhf_errorf(err, RLHF_ERR_INVALID, "score head: row %d has length %d (must be 1..%d)", b, (int)lengths[b], T);
    return RLHF_OK;
}

static const float *last_hidden(const model_acts *a, const int32_t *lengths, int b, int C) {
    return a->hidden + ((size_t)b * (size_t)a->cur_T + (size_t)(lengths[b] - 1)) * (size_t)C;
}

int score_head_forward(const model *m, const model_acts *a, const int32_t *lengths, int B, float *scores,
                       rlhf_error *err) {
    const int K = m->config.num_labels, C = m->config.dim;
    if (K <= 0 || !m->w.score) return rlhf_errorf(err, RLHF_ERR_INVALID, "score head: the model has no score.weight");
    if (B > a->cur_B) return rlhf_errorf(err, RLHF_ERR_INVALID, "score head: %d rows but the forward had %d", B, a->cur_B);
    int rc = check_lengths(lengths, B, a->cur_T, err);
    if (rc) return rc;
    for (int b = 0; b < B; b++) {
        const float *x = last_hidden(a, lengths, b, C);
        for (int k = 0; k < K; k++) {
            const float *w = m->w.score + (size_t)k * C;
            double s = 0;
            for (int c = 0; c < C; c++) s += (double)w[c] * x[c];
            scores[(size_t)b * K + k] = (float)s;
        }
    }
    return RLHF_OK;
}

/* dhidden (zero except each row's last token) and d(score.weight) += from dscores (B, K). */
static int score_backward(score_head *h, model *m, const model_acts *a, const int32_t *lengths, int B, rlhf_error *err) {
    const int K = h->K, C = h->C, T = a->cur_T;
    /* the score's gradient is wanted even when the base is frozen: it lives in m->grads (a frozen
     * body) or, with LoRA, beside the adapter's (score_lora_attach set m->g.score) */
    int rc = m->g.score ? RLHF_OK : model_alloc_grads(m, err);
    if (rc) return rc;
    memset(h->dhidden, 0, (size_t)B * T * C * sizeof(float));
    for (int b = 0; b < B; b++) {
        const float *x = last_hidden(a, lengths, b, C);
        float *dx = h->dhidden + ((size_t)b * T + (size_t)(lengths[b] - 1)) * C;
        for (int k = 0; k < K; k++) {
            const float d = h->dscores[(size_t)b * K + k];
            const float *w = m->w.score + (size_t)k * C;
            float *gw = m->g.score + (size_t)k * C;
            for (int c = 0; c < C; c++) {
                dx[c] += d * w[c];
                gw[c] += d * x[c];
            }
        }
    }
    return RLHF_OK;
}

static int head_check(score_head *h, const model *m, const model_acts *a, const train_batch *b, rlhf_error *err) {
    if (m->config.num_labels != h->K || m->config.dim != h->C)
        return rlhf_errorf(err, RLHF_ERR_SHAPE, "score head: sized for %d labels, the model has %d", h->K, m->config.num_labels);
    if (b->B > h->B || a->cur_T > h->T || b->B != a->cur_B)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "score head: batch (%d, %d) does not fit its capacity (%d, %d)", b->B, a->cur_T,
                           h->B, h->T);
    return score_head_forward(m, a, b->lengths, b->B, h->scores, err);
}

/* ---- classification: cross-entropy over K classes ---- */

static int classify_loss(void *self, model *m, model_acts *a, const train_batch *b, int want_grad, const float **dlogits,
                         const float **dhidden, train_head_out *out, rlhf_error *err) {
    score_head *h = self;
    int rc = head_check(h, m, a, b, err);
    if (rc) return rc;
    const int B = b->B, K = h->K;
    double loss = 0;
    int correct = 0;
    for (int r = 0; r < B; r++) {
        const float *s = h->scores + (size_t)r * K;
        const int y = (int)b->labels[r];
        if (!(b->labels[r] >= 0) || y >= K || (float)y != b->labels[r])
            return rlhf_errorf(err, RLHF_ERR_INVALID, "classification: row %d has label %g (must be a class id 0..%d)", r,
                               (double)b->labels[r], K - 1);
        double mx = s[0];
        int arg = 0;
        for (int k = 1; k < K; k++)
            if (s[k] > mx) mx = s[k], arg = k;
        double z = 0;
        for (int k = 0; k < K; k++) z += exp((double)s[k] - mx);
        const double lse = mx + log(z);
        loss += lse - s[y];
        correct += arg == y;
        for (int k = 0; k < K; k++)
            h->dscores[(size_t)r * K + k] = (float)((exp((double)s[k] - lse) - (k == y)) / B);
    }
    out->loss = loss / B;
    train_head_out_set(out, "accuracy", (double)correct / B);
    if (want_grad) {
        if ((rc = score_backward(h, m, a, b->lengths, B, err))) return rc;
        *dlogits = NULL;
        *dhidden = h->dhidden;
    }
    return RLHF_OK;
}

/* ---- pairs: Bradley–Terry with margin and centring ---- */

/* -log σ(x) = softplus(-x), computed without overflow */
static double neg_log_sigmoid(double x) { return x >= 0 ? log1p(exp(-x)) : -x + log1p(exp(x)); }

static int pairs_loss(void *self, model *m, model_acts *a, const train_batch *b, int want_grad, const float **dlogits,
                      const float **dhidden, train_head_out *out, rlhf_error *err) {
    score_head *h = self;
    if (h->K != 1) return rlhf_errorf(err, RLHF_ERR_INVALID, "reward model: needs num_labels 1 (got %d)", h->K);
    if (b->B % 2) return rlhf_errorf(err, RLHF_ERR_INVALID, "reward model: a batch of pairs needs an even row count (got %d)", b->B);
    int rc = head_check(h, m, a, b, err);
    if (rc) return rc;
    const int P = b->B / 2;
    double loss = 0, acc = 0, margins = 0, chosen = 0, rejected = 0;
    const double coef = h->center_coef;
    for (int i = 0; i < P; i++) {
        const double rc_ = h->scores[2 * i], rr = h->scores[2 * i + 1], margin = b->labels[2 * i];
        const double d = rc_ - rr - margin;
        loss += neg_log_sigmoid(d) + coef * (rc_ + rr) * (rc_ + rr);
        acc += rc_ > rr;
        margins += rc_ - rr;
        chosen += rc_;
        rejected += rr;
        const double sig_neg = 1.0 / (1.0 + exp(d)); /* σ(-d) */
        const double centre = 2.0 * coef * (rc_ + rr);
        h->dscores[2 * i] = (float)((-sig_neg + centre) / P);
        h->dscores[2 * i + 1] = (float)((sig_neg + centre) / P);
    }
    out->loss = loss / P;
    train_head_out_set(out, "rewards/accuracies", acc / P);
    train_head_out_set(out, "rewards/margins", margins / P);
    train_head_out_set(out, "rewards/chosen", chosen / P);
    train_head_out_set(out, "rewards/rejected", rejected / P);
    if (want_grad) {
        if ((rc = score_backward(h, m, a, b->lengths, b->B, err))) return rc;
        *dlogits = NULL;
        *dhidden = h->dhidden;
    }
    return RLHF_OK;
}

train_head score_head_classify(score_head *h) { return (train_head){"classify", classify_loss, h}; }
train_head score_head_pairs(score_head *h) { return (train_head){"pairs", pairs_loss, h}; }

void score_head_init_weights(model *m, float std, rng_t *rng) {
    const size_t n = (size_t)m->config.num_labels * (size_t)m->config.dim;
    for (size_t i = 0; i < n; i++) m->w.score[i] = std * rng_normal(rng);
}

int score_model_from_lm(model *out, const model *lm, int K, int32_t pad_id, float std, rng_t *rng,
                        rlhf_error *err) {
    memset(out, 0, sizeof *out);
    if (lm->config.num_labels > 0)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "the initial model is already a classifier (%d labels); start from a language model",
                           lm->config.num_labels);
    model_config cfg = lm->config;
    cfg.num_labels = K;
    cfg.pad_id = pad_id;
    int rc = model_init(out, &cfg, err);
    if (rc) return rc;
    for (int i = 0; i < out->n_tensors; i++) {
        const model_tensor *t = &out->tensors[i];
        if (strcmp(t->name, "score.weight") == 0) continue;
        const model_tensor *s = model_find_tensor(lm, t->name);
        if (!s || s->numel != t->numel) {
            model_free(out);
            return rlhf_errorf(err, RLHF_ERR_SHAPE, "initial model: tensor %s missing or misshapen", t->name);
        }
        memcpy(out->params + t->offset, lm->params + s->offset, t->numel * sizeof(float));
    }
    score_head_init_weights(out, std, rng);
    return RLHF_OK;
}

int score_lora_attach(model *m, lora *lo, rlhf_error *err) {
    const model_tensor *t = model_find_tensor(m, "score.weight");
    if (!t || !m->w.score) return rlhf_errorf(err, RLHF_ERR_INVALID, "score head: the model has no score.weight");
    size_t off;
    int rc = lora_reserve_extra(lo, t->numel, &off, err);
    if (rc) return rc;
    memcpy(lo->params + off, m->params + t->offset, t->numel * sizeof(float));
    m->w.score = lo->params + off;
    m->g.score = lo->grads + off;
    lora_attach(lo, m);
    return RLHF_OK;
}

void score_lora_detach(model *m) {
    const model_tensor *t = model_find_tensor(m, "score.weight");
    assert(t && m->lora);
    float *home = m->params + t->offset;
    if (m->w.score != home) memcpy(home, m->w.score, t->numel * sizeof(float));
    m->w.score = home;
    m->g.score = m->grads ? m->grads + t->offset : NULL;
    lora_detach(m);
}
