/* ppo.c — the PPO head (clipped surrogate + clipped value loss on a value head sharing the
 * policy's body), KL-penalised rewards, GAE and whitening (see ppo.h). */
#include "src/train/ppo.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/formats/safetensors.h"

void ppo_params_defaults(ppo_params *p) {
    p->cliprange = 0.2f;
    p->cliprange_value = 0.2f;
    p->vf_coef = 0.1f;
    p->temperature = 0.7f;
}

int ppo_kl_estimator_parse(const char *name, ppo_kl_estimator *out, rlhf_error *err) {
    if (name && strcmp(name, "k1") == 0) *out = PPO_KL_K1;
    else if (name && strcmp(name, "k3") == 0) *out = PPO_KL_K3;
    else return rlhf_errorf(err, RLHF_ERR_INVALID, "unknown KL estimator \"%s\" (use k1 or k3)", name ? name : "");
    return RLHF_OK;
}

int ppo_head_init(ppo_head *h, const ppo_params *p, const model *m, int B, int T, const optim_params *optim, int accum,
                  rlhf_error *err) {
    memset(h, 0, sizeof *h);
    if (!(p->cliprange > 0 && p->cliprange < 1) || !(p->cliprange_value > 0) || !(p->vf_coef >= 0) || !(p->temperature > 0))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "PPO: cliprange must be in (0, 1), cliprange_value and temperature > 0, "
                                                  "vf_coef >= 0");
    if (m->config.num_labels > 0) return rlhf_errorf(err, RLHF_ERR_INVALID, "PPO: the policy must be a language model");
    h->p = *p;
    h->B = B;
    h->T = T;
    h->C = m->config.dim;
    h->accum = accum > 0 ? accum : 1;
    h->cur_step = h->grad_step = -1;
    const size_t bt = (size_t)B * T;
    h->old_lp = calloc(bt, sizeof(float));
    h->old_values = calloc(bt, sizeof(float));
    h->adv = calloc(bt, sizeof(float));
    h->returns = calloc(bt, sizeof(float));
    h->coef_v = calloc(bt, sizeof(float));
    h->coef_lp = calloc(bt, sizeof(float));
    h->dhidden = calloc(bt * h->C, sizeof(float));
    h->vparams = calloc((size_t)h->C + 1, sizeof(float));
    h->vgrads = calloc((size_t)h->C + 1, sizeof(float));
    if (!h->old_lp || !h->old_values || !h->adv || !h->returns || !h->coef_v || !h->coef_lp || !h->dhidden || !h->vparams ||
        !h->vgrads) {
        ppo_head_free(h);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the PPO head");
    }
    /* the value head as a two-tensor buffer, so AdamW's decay rules see a matrix and a bias */
    model_tensor vt[2];
    memset(vt, 0, sizeof vt);
    strcpy(vt[0].name, "v_head.summary.weight");
    vt[0].ndim = 2;
    vt[0].shape[0] = 1;
    vt[0].shape[1] = h->C;
    vt[0].numel = (size_t)h->C;
    vt[0].kind = MODEL_TENSOR_MATRIX;
    vt[0].layer = -1;
    strcpy(vt[1].name, "v_head.summary.bias");
    vt[1].ndim = 1;
    vt[1].shape[0] = 1;
    vt[1].offset = (size_t)h->C;
    vt[1].numel = 1;
    vt[1].kind = MODEL_TENSOR_BIAS;
    vt[1].layer = -1;
    int rc = optim_init(&h->vopt, optim, vt, 2, (size_t)h->C + 1, err);
    if (rc) ppo_head_free(h);
    return rc;
}

void ppo_head_free(ppo_head *h) {
    free(h->old_lp);
    free(h->old_values);
    free(h->adv);
    free(h->returns);
    free(h->coef_v);
    free(h->coef_lp);
    free(h->dhidden);
    free(h->vparams);
    free(h->vgrads);
    optim_free(&h->vopt);
    memset(h, 0, sizeof *h);
}

int ppo_head_set_step(ppo_head *h, long step, rlhf_error *err) {
    h->cur_step = step;
    /* the previous step's value-head update lands before anything reads the values again */
    return h->have_grads && step != h->grad_step ? ppo_head_flush(h, err) : RLHF_OK;
}

int ppo_head_flush(ppo_head *h, rlhf_error *err) {
    if (!h->have_grads) return RLHF_OK;
    h->have_grads = 0;
    int rc = optim_step(&h->vopt, h->vparams, h->vgrads, 1.0f / (float)h->accum, NULL, err);
    memset(h->vgrads, 0, ((size_t)h->C + 1) * sizeof(float));
    return rc == RLHF_ERR_NUMERIC ? RLHF_OK : rc; /* a non-finite step is skipped, as the loop does */
}

void ppo_head_set_rollout_metrics(ppo_head *h, double kl, double entropy, double non_score, double scores,
                                  double scores_std, double num_eos, double kl_coef) {
    h->rollout[0] = kl;
    h->rollout[1] = entropy;
    h->rollout[2] = non_score;
    h->rollout[3] = non_score + scores;
    h->rollout[4] = scores;
    h->rollout[5] = num_eos;
    h->rollout[6] = kl_coef;
    h->rollout[7] = scores_std;
    h->have_rollout = 1;
}

void ppo_head_values(const ppo_head *h, const model_acts *a, const int32_t *targets, int B, int T, float *values) {
    const int C = h->C;
    for (size_t i = 0; i < (size_t)B * T; i++) {
        if (targets[i] < 0) {
            values[i] = 0.0f;
            continue;
        }
        const float *x = a->hidden + i * C;
        double s = h->vparams[C];
        for (int c = 0; c < C; c++) s += (double)h->vparams[c] * x[c];
        values[i] = (float)s;
    }
}

static int ppo_loss(void *self, model *m, model_acts *a, const train_batch *b, int want_grad, const float **dlogits,
                    const float **dhidden, train_head_out *out, rlhf_error *err) {
    ppo_head *h = self;
    const int B = b->B, T = b->T, V = m->config.vocab_size, C = h->C;
    if (B > h->B || T > h->T)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "PPO micro-batch %d x %d exceeds the head's %d x %d", B, T, h->B, h->T);
    if (want_grad && h->have_grads && h->cur_step != h->grad_step) { /* a caller that did not call set_step */
        int rc = ppo_head_flush(h, err);
        if (rc) return rc;
    }
    const ppo_params *p = &h->p;
    const size_t bt = (size_t)B * T;
    const float inv_temp = 1.0f / p->temperature;
    int N = 0;
    double ent = 0;
    for (size_t i = 0; i < bt; i++)
        if (b->targets[i] >= 0) {
            float *x = a->logits + i * V;
            if (inv_temp != 1.0f)
                for (int v = 0; v < V; v++) x[v] *= inv_temp;
            N++;
            ent += rollout_entropy(x, V);
        }
    /* -log p per position into coef_lp; (softmax - onehot) / N in place of the logits */
    model_xent(a->logits, b->targets, NULL, B, T, V, want_grad ? a->logits : NULL, h->coef_lp);
    float *values = h->coef_v;
    ppo_head_values(h, a, b->targets, B, T, values);
    const double lo = 1.0 - p->cliprange, hi = 1.0 + p->cliprange, cv = p->cliprange_value;
    const double w = N ? 1.0 / N : 0.0;
    double pg = 0, vf = 0, approx = 0, pg_clip = 0, vf_clip = 0, ratio_sum = 0;
    for (size_t i = 0; i < bt; i++) {
        if (b->targets[i] < 0) {
            h->coef_lp[i] = h->coef_v[i] = 0.0f;
            continue;
        }
        const double lp = -(double)h->coef_lp[i], A = h->adv[i], diff = lp - h->old_lp[i], ratio = exp(diff);
        const double c = ratio < lo ? lo : ratio > hi ? hi : ratio;
        const double l1 = -A * ratio, l2 = -A * c;
        pg += w * (l1 > l2 ? l1 : l2);
        pg_clip += l2 > l1;
        /* the unclipped branch carries the gradient unless the clipped one is larger and clamped */
        const double dlp = (l1 >= l2 || (ratio >= lo && ratio <= hi)) ? -A * ratio : 0.0;
        approx += 0.5 * diff * diff;
        ratio_sum += ratio;
        const double v = values[i], ov = h->old_values[i], R = h->returns[i];
        const double dv = v - ov, vc = ov + (dv < -cv ? -cv : dv > cv ? cv : dv);
        const double v1 = (v - R) * (v - R), v2 = (vc - R) * (vc - R);
        vf += 0.5 * w * (v1 > v2 ? v1 : v2);
        vf_clip += v2 > v1;
        const double dvv = (v1 >= v2 || (dv >= -cv && dv <= cv)) ? (v - R) : 0.0;
        h->coef_lp[i] = (float)(w * dlp);
        h->coef_v[i] = (float)(p->vf_coef * w * dvv);
    }
    if (want_grad) {
        /* (softmax - onehot) / N  ->  coef * (onehot - softmax) / temperature */
        for (size_t i = 0; i < bt; i++) {
            if (b->targets[i] < 0) continue; /* already zero */
            const float s = -h->coef_lp[i] * (float)N * inv_temp;
            float *dl = a->logits + i * V;
            for (int v = 0; v < V; v++) dl[v] *= s;
        }
        /* the value head: d(hidden) = coef_v w; its own gradients, stepped when the next step starts */
        memset(h->dhidden, 0, bt * C * sizeof(float));
        for (size_t i = 0; i < bt; i++) {
            const float g = h->coef_v[i];
            if (g == 0.0f) continue;
            const float *x = a->hidden + i * C;
            float *dh = h->dhidden + i * C;
            for (int c = 0; c < C; c++) {
                dh[c] = g * h->vparams[c];
                h->vgrads[c] += g * x[c];
            }
            h->vgrads[C] += g;
        }
        h->have_grads = 1;
        h->grad_step = h->cur_step;
        *dlogits = a->logits;
        *dhidden = h->dhidden;
    }
    out->loss = pg + p->vf_coef * vf;
    train_head_out_set(out, "loss/policy_avg", pg);
    train_head_out_set(out, "loss/value_avg", vf);
    train_head_out_set(out, "policy/clipfrac_avg", pg_clip * w);
    train_head_out_set(out, "val/clipfrac_avg", vf_clip * w);
    train_head_out_set(out, "policy/approxkl_avg", approx * w);
    train_head_out_set(out, "policy/entropy_avg", ent * w);
    train_head_out_set(out, "val/ratio", ratio_sum * w);
    if (h->have_rollout) {
        static const char *const names[8] = {"objective/kl",          "objective/entropy", "objective/non_score_reward",
                                             "objective/rlhf_reward", "objective/scores",  "val/num_eos_tokens",
                                             "objective/kl_coef",     "objective/scores_std"};
        for (int k = 0; k < 8; k++) train_head_out_set(out, names[k], h->rollout[k]);
    }
    return RLHF_OK;
}

train_head ppo_train_head(ppo_head *h) { return (train_head){"ppo", ppo_loss, h}; }

void ppo_rollout_advantages(const float *lp, const float *ref, const float *values, const int32_t *targets,
                            const double *scores, int rows, int T, ppo_kl_estimator est, double kl_coef, double gamma,
                            double lam, int whiten, float *rewards, float *adv, float *returns, double *kl_sum) {
    const size_t n = (size_t)rows * T;
    for (int r = 0; r < rows; r++) {
        const size_t o = (size_t)r * T;
        int last = -1;
        double ks = 0;
        for (int t = 0; t < T; t++) {
            const size_t i = o + t;
            if (targets[i] < 0) {
                rewards[i] = adv[i] = returns[i] = 0.0f;
                continue;
            }
            const double logr = (double)ref[i] - lp[i];
            const double kl = est == PPO_KL_K1 ? -logr : exp(logr) - 1.0 - logr;
            ks += kl;
            rewards[i] = (float)(-kl_coef * kl);
            last = t;
        }
        if (kl_sum) kl_sum[r] = ks;
        if (last < 0) continue;
        rewards[o + last] += (float)scores[r];
        /* GAE backwards; the completion is contiguous and the episode ends after `last` */
        double gae = 0, next_v = 0;
        for (int t = last; t >= 0 && targets[o + t] >= 0; t--) {
            const size_t i = o + t;
            const double delta = rewards[i] + gamma * next_v - values[i];
            gae = delta + gamma * lam * gae;
            adv[i] = (float)gae;
            returns[i] = (float)(gae + values[i]);
            next_v = values[i];
        }
    }
    if (!whiten) return;
    double mean = 0, var = 0;
    size_t cnt = 0;
    for (size_t i = 0; i < n; i++)
        if (targets[i] >= 0) {
            mean += adv[i];
            cnt++;
        }
    if (cnt < 2) return;
    mean /= (double)cnt;
    for (size_t i = 0; i < n; i++)
        if (targets[i] >= 0) var += (adv[i] - mean) * (adv[i] - mean);
    var /= (double)(cnt - 1);
    const double inv = 1.0 / sqrt(var + 1e-8);
    for (size_t i = 0; i < n; i++)
        if (targets[i] >= 0) adv[i] = (float)((adv[i] - mean) * inv);
}

double ppo_adaptive_kl(double kl_coef, double kl, double target, double n_episodes, double horizon) {
    double e = kl / target - 1.0;
    e = e < -0.2 ? -0.2 : e > 0.2 ? 0.2 : e;
    return kl_coef * (1.0 + e * n_episodes / horizon);
}

/* TRL's AutoModelForCausalLMWithValueHead names: v_head.summary.weight (1, C), .bias (1). */
int ppo_head_save(const ppo_head *h, const char *path, rlhf_error *err) {
    const safetensors_entry e[2] = {
        {.name = "v_head.summary.weight", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 2, .shape = {1, h->C}, .data = h->vparams},
        {.name = "v_head.summary.bias", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 1, .shape = {1}, .data = h->vparams + h->C},
    };
    for (int i = 0; i <= h->C; i++)
        if (!isfinite(h->vparams[i]))
            return rlhf_errorf(err, RLHF_ERR_NUMERIC, "%s: value head entry %d is %g", path, i, (double)h->vparams[i]);
    return safetensors_write(path, e, 2, err);
}

int ppo_head_load(ppo_head *h, const char *path, rlhf_error *err) {
    safetensors_file *f = NULL;
    int rc = safetensors_open(&f, path, err);
    if (rc) return rc;
    const safetensors_tensor *w = safetensors_find(f, "v_head.summary.weight");
    const safetensors_tensor *b = safetensors_find(f, "v_head.summary.bias");
    if (!w || !b) rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: no v_head.summary.weight and v_head.summary.bias", path);
    else if (w->numel != (size_t)h->C || b->numel != 1)
        rc = rlhf_errorf(err, RLHF_ERR_SHAPE, "%s: a value head of %zu inputs, but the policy's hidden size is %d", path,
                         w->numel, h->C);
    if (!rc) rc = safetensors_read_f32(f, w, h->vparams, (size_t)h->C, err);
    if (!rc) rc = safetensors_read_f32(f, b, h->vparams + h->C, 1, err);
    safetensors_close(&f);
    return rc;
}
