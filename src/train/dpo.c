/* dpo.c — the DPO family of preference losses as a training-loop head (see dpo.h). */
#include "src/train/dpo.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const k_loss_names[] = {"sigmoid", "ipo", "hinge", "robust"};

void dpo_params_defaults(dpo_params *p) {
    memset(p, 0, sizeof *p);
    p->loss_type = DPO_LOSS_SIGMOID;
    p->beta = 0.1f;
}

const char *dpo_loss_type_name(dpo_loss_type t) {
    return (unsigned)t < sizeof k_loss_names / sizeof *k_loss_names ? k_loss_names[t] : "?";
}

int dpo_loss_type_parse(const char *name, dpo_loss_type *out, rlhf_error *err) {
    for (int i = 0; i < (int)(sizeof k_loss_names / sizeof *k_loss_names); i++)
        if (name && strcmp(name, k_loss_names[i]) == 0) {
            *out = (dpo_loss_type)i;
            return RLHF_OK;
        }
    return rlhf_errorf(err, RLHF_ERR_INVALID, "unknown DPO loss type \"%s\" (use sigmoid, ipo, hinge or robust)",
                       name ? name : "");
}

int dpo_params_validate(const dpo_params *p, rlhf_error *err) {
    if (!(p->beta > 0) || !isfinite(p->beta)) return rlhf_errorf(err, RLHF_ERR_INVALID, "beta must be > 0 (got %g)", p->beta);
    if (!(p->label_smoothing >= 0 && p->label_smoothing < 0.5f))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "label smoothing must be in [0, 0.5) (got %g)", p->label_smoothing);
    if (!(p->rpo_alpha >= 0) || !isfinite(p->rpo_alpha))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "rpo alpha must be >= 0 (got %g)", p->rpo_alpha);
    if ((unsigned)p->loss_type > DPO_LOSS_ROBUST) return rlhf_errorf(err, RLHF_ERR_INVALID, "unknown DPO loss type");
    return RLHF_OK;
}

int dpo_head_init(dpo_head *h, const dpo_params *p, int B, int T, rlhf_error *err) {
    memset(h, 0, sizeof *h);
    int rc = dpo_params_validate(p, err);
    if (rc) return rc;
    if (B < 2 || B % 2) return rlhf_errorf(err, RLHF_ERR_INVALID, "DPO micro-batches hold pairs: B must be even (got %d)", B);
    h->p = *p;
    h->B = B;
    h->T = T;
    h->pos_loss = malloc((size_t)B * T * sizeof *h->pos_loss);
    h->logp = malloc((size_t)B * sizeof *h->logp);
    h->count = malloc((size_t)B * sizeof *h->count);
    h->grad = malloc((size_t)B * sizeof *h->grad);
    if (!h->pos_loss || !h->logp || !h->count || !h->grad) {
        dpo_head_free(h);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the DPO head");
    }
    return RLHF_OK;
}

void dpo_head_free(dpo_head *h) {
    free(h->pos_loss);
    free(h->logp);
    free(h->count);
    free(h->grad);
    memset(h, 0, sizeof *h);
}

/* log σ(x), stable for large |x| */
static double log_sigmoid(double x) { return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)); }
static double sigmoid(double x) { return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x)); }

/* Row sums of -pos_loss over the reply positions, and the positions counted. */
static void row_sums(const float *pos_loss, const int32_t *targets, int B, int T, double *logp, int *count) {
    for (int r = 0; r < B; r++) {
        double s = 0;
        int n = 0;
        for (int t = 0; t < T; t++)
            if (targets[(size_t)r * T + t] >= 0) {
                s -= pos_loss[(size_t)r * T + t];
                n++;
            }
        logp[r] = s;
        count[r] = n;
    }
}

int dpo_row_logps(model *m, model_acts *a, const train_batch *b, double *out, rlhf_error *err) {
    int rc = model_forward(m, a, b->tokens, b->B, b->T, err);
    if (rc) return rc;
    const size_t bt = (size_t)b->B * b->T;
    float *pos = malloc(bt * sizeof *pos);
    int *count = malloc((size_t)b->B * sizeof *count);
    if (!pos || !count) {
        free(pos);
        free(count);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for reference log-probabilities");
    }
    model_xent(a->logits, b->targets, NULL, b->B, b->T, m->config.vocab_size, NULL, pos);
    row_sums(pos, b->targets, b->B, b->T, out, count);
    free(pos);
    free(count);
    return RLHF_OK;
}

static int dpo_loss(void *self, model *m, model_acts *a, const train_batch *b, int want_grad, const float **dlogits,
                    const float **dhidden, train_head_out *out, rlhf_error *err) {
    dpo_head *h = self;
    const int B = b->B, T = b->T, V = m->config.vocab_size, P = B / 2;
    if (B % 2 || B > h->B || T > h->T)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "DPO micro-batch of %d x %d rows does not hold pairs within %d x %d", B,
                           T, h->B, h->T);
    /* one pass: per-position losses, and (softmax - onehot) / N in place of the logits */
    int N = 0;
    for (size_t i = 0; i < (size_t)B * T; i++) N += b->targets[i] >= 0;
    model_xent(a->logits, b->targets, NULL, B, T, V, want_grad ? a->logits : NULL, h->pos_loss);
    row_sums(h->pos_loss, b->targets, B, T, h->logp, h->count);
    const dpo_params *p = &h->p;
    const double beta = p->beta, ls = p->label_smoothing;
    double loss = 0, rc_sum = 0, rr_sum = 0, acc = 0, pc_sum = 0, pr_sum = 0;
    int chosen_tokens = 0;
    double *g = h->grad; /* dL/d(logp_row) */
    for (int i = 0; i < P; i++) chosen_tokens += h->count[2 * i];
    for (int i = 0; i < P; i++) {
        const int c = 2 * i, r = 2 * i + 1;
        if (h->count[c] == 0 || h->count[r] == 0)
            return rlhf_errorf(err, RLHF_ERR_INVALID, "DPO pair %d has an empty reply (no target positions)", i);
        /* IPO compares average log-probabilities; the others sums */
        const double sc = p->loss_type == DPO_LOSS_IPO ? 1.0 / h->count[c] : 1.0;
        const double sr = p->loss_type == DPO_LOSS_IPO ? 1.0 / h->count[r] : 1.0;
        const double pc = h->logp[c] * sc, pr = h->logp[r] * sr;
        const double rc = b->labels[c] * sc, rr = b->labels[r] * sr;
        const double z = (pc - rc) - (pr - rr), hz = beta * z;
        double li, dz; /* the pair's loss and d(li)/dz */
        switch (p->loss_type) {
        case DPO_LOSS_IPO: {
            const double d = z - 1.0 / (2.0 * beta);
            li = d * d;
            dz = 2.0 * d;
            break;
        }
        case DPO_LOSS_HINGE:
            li = hz < 1.0 ? 1.0 - hz : 0.0;
            dz = hz < 1.0 ? -beta : 0.0;
            break;
        case DPO_LOSS_ROBUST:
            li = (-(1 - ls) * log_sigmoid(hz) + ls * log_sigmoid(-hz)) / (1 - 2 * ls);
            dz = beta * (-(1 - ls) * (1 - sigmoid(hz)) - ls * sigmoid(hz)) / (1 - 2 * ls);
            break;
        default:
            li = -(1 - ls) * log_sigmoid(hz) - ls * log_sigmoid(-hz);
            dz = beta * (-(1 - ls) * (1 - sigmoid(hz)) + ls * sigmoid(hz));
            break;
        }
        loss += li / P;
        g[c] = dz * sc / P;
        g[r] = -dz * sr / P;
        if (p->rpo_alpha > 0) g[c] -= p->rpo_alpha / chosen_tokens;
        const double cr = beta * (pc - rc), rj = beta * (pr - rr);
        rc_sum += cr;
        rr_sum += rj;
        acc += cr > rj;
        pc_sum += pc;
        pr_sum += pr;
    }
    double nll = 0;
    if (p->rpo_alpha > 0) {
        for (int i = 0; i < P; i++) nll -= h->logp[2 * i];
        nll /= chosen_tokens;
        loss += p->rpo_alpha * nll;
    }
    if (want_grad) {
        /* (softmax - onehot) / N  ->  g_row (onehot - softmax) */
        for (int row = 0; row < B; row++) {
            const float s = (float)(-g[row] * N);
            float *d = a->logits + (size_t)row * T * V;
            for (size_t k = 0; k < (size_t)T * V; k++) d[k] *= s;
        }
        *dlogits = a->logits;
        *dhidden = NULL;
    }
    out->loss = loss;
    train_head_out_set(out, "rewards/chosen", rc_sum / P);
    train_head_out_set(out, "rewards/rejected", rr_sum / P);
    train_head_out_set(out, "rewards/accuracies", acc / P);
    train_head_out_set(out, "rewards/margins", (rc_sum - rr_sum) / P);
    train_head_out_set(out, "logps/chosen", pc_sum / P);
    train_head_out_set(out, "logps/rejected", pr_sum / P);
    if (p->rpo_alpha > 0) train_head_out_set(out, "nll_loss", nll);
    return RLHF_OK;
}

train_head dpo_train_head(dpo_head *h) { return (train_head){"dpo", dpo_loss, h}; }
