/* test_model_grad.c — the whole model: forward/backward against finite differences, training
 * signs of life, gradient accumulation, masks and weights, refusal of bad tokens.
 *
 * Models are tiny (2 layers, C 16) with weights drawn larger than the usual 0.02 so attention
 * and the nonlinearities are far from linear and every path carries gradient. Finite differences
 * are central, in float parameters with eps 1e-2 and the loss summed in double; the tolerance
 * (5e-3 of the tensor's largest gradient; observed up to 1.3e-3) covers float rounding of a
 * ~3-nat loss and still catches a 1% error in one term of one kernel. The exact
 * PyTorch comparison lives in tests/reference/torch_model.py. */
#include <stdlib.h>

#include "src/model/kernels.h"
#include "src/model/model.h"
#include "src/core/rng.h"
#include "tests/test_util.h"

typedef struct {
    const char *name;
    model_family family;
    int L, C, NH, NKV, F, V, TMAX, tied;
    model_rope_layout rope;
} tiny;

static const tiny configs[] = {
    {"gpt2 tied", MODEL_FAMILY_GPT2, 2, 16, 4, 4, 40, 37, 16, 1, MODEL_ROPE_HALF},
    {"gpt2 untied", MODEL_FAMILY_GPT2, 2, 12, 3, 3, 20, 29, 8, 0, MODEL_ROPE_HALF},
    {"llama gqa untied half", MODEL_FAMILY_LLAMA, 2, 16, 4, 2, 24, 37, 16, 0, MODEL_ROPE_HALF},
    {"llama gqa tied interleaved", MODEL_FAMILY_LLAMA, 2, 16, 4, 1, 20, 31, 16, 1, MODEL_ROPE_INTERLEAVED},
    {"llama mha untied interleaved", MODEL_FAMILY_LLAMA, 1, 12, 2, 2, 18, 23, 8, 0, MODEL_ROPE_INTERLEAVED},
};

static void make_model(model *m, const tiny *t, uint64_t seed) {
    model_config c;
    model_config_defaults(&c, t->family);
    c.n_layers = t->L, c.dim = t->C, c.n_heads = t->NH, c.n_kv_heads = t->NKV, c.ffn_dim = t->F;
    c.vocab_size = t->V, c.context = t->TMAX, c.tied_embeddings = t->tied, c.rope_layout = t->rope;
    rlhf_error err = {0};
    if (model_init(m, &c, &err) || model_alloc_grads(m, &err)) {
        fprintf(stderr, "model_init %s: %s\n", t->name, err.msg);
        exit(1);
    }
    rng_t r;
    rng_seed(&r, seed);
    model_init_random(m, &r);
    /* larger weights than the 0.02 init so the test sees nonlinear behaviour; norm gains and
     * biases moved off 1 and 0 so their gradients are exercised too */
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *tt = &m->tensors[i];
        float *p = m->params + tt->offset;
        for (size_t k = 0; k < tt->numel; k++) {
            if (tt->kind == MODEL_TENSOR_NORM) p[k] = 1.0f + 0.3f * rng_normal(&r);
            else if (tt->kind == MODEL_TENSOR_BIAS) p[k] = 0.1f * rng_normal(&r);
            else p[k] = (tt->kind == MODEL_TENSOR_EMBEDDING ? 0.7f : 0.35f) * rng_normal(&r);
        }
    }
}

static void next_token_targets(int32_t *targets, const int32_t *tokens, int B, int T) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) targets[b * T + t] = t + 1 < T ? tokens[b * T + t + 1] : -1;
}

/* forward + xent; NAN on error */
static double loss_of(const model *m, model_acts *a, const int32_t *tok, const int32_t *tgt, const float *w, int B,
                      int T) {
    rlhf_error err = {0};
    if (model_forward(m, a, tok, B, T, &err)) {
        fprintf(stderr, "forward: %s\n", err.msg);
        return NAN;
    }
    return model_xent(a->logits, tgt, w, B, T, m->config.vocab_size, NULL, NULL);
}

/* Gradient of the loss for every tensor against central differences on a few elements: the
 * tensor's largest-gradient element plus six random ones. */
static void check_model_fd(const tiny *t) {
    model m;
    make_model(&m, t, 11);
    const int B = 2, T = 6;
    model_acts a;
    rlhf_error err = {0};
    CHECK(model_acts_init(&a, &m.config, B, T, &err) == 0, "acts init: %s", err.msg);
    rng_t r;
    rng_seed(&r, 5);
    int32_t tok[12], tgt[12];
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)rng_below(&r, t->V);
    next_token_targets(tgt, tok, B, T);
    tgt[3] = -1; /* a masked position in the middle */
    float w[12];
    for (int i = 0; i < B * T; i++) w[i] = 0.5f + rng_float(&r);

    model_zero_grads(&m);
    loss_of(&m, &a, tok, tgt, w, B, T);
    model_xent(a.logits, tgt, w, B, T, t->V, a.logits, NULL);
    CHECK(model_backward(&m, &a, a.logits, NULL, &err) == 0, "%s backward: %s", t->name, err.msg);

    const float eps = 1e-2f;
    for (int i = 0; i < m.n_tensors; i++) {
        const model_tensor *tt = &m.tensors[i];
        const float *g = m.grads + tt->offset;
        size_t imax = 0;
        double gmax = 0;
        for (size_t k = 0; k < tt->numel; k++)
            if (fabs(g[k]) > gmax) gmax = fabs(g[k]), imax = k;
        CHECK(gmax > 0, "%s: %s has a nonzero gradient", t->name, tt->name);
        double maxerr = 0;
        size_t worst = 0;
        for (int s = 0; s < 7; s++) {
            size_t k = s == 0 ? imax : (size_t)rng_below(&r, tt->numel);
            float *p = m.params + tt->offset + k, p0 = *p;
            *p = p0 + eps;
            double lp = loss_of(&m, &a, tok, tgt, w, B, T);
            *p = p0 - eps;
            double lm = loss_of(&m, &a, tok, tgt, w, B, T);
            *p = p0;
            double num = (lp - lm) / (2.0 * eps);
            double e = fabs(num - g[k]);
            if (e > maxerr) maxerr = e, worst = k;
        }
        CHECK(maxerr <= 5e-3 * gmax + 1e-5, "%s: d loss / d %s[%zu]: analytic %g, error %.3g, max |grad| %.3g",
              t->name, tt->name, worst, (double)g[worst], maxerr, gmax);
    }

    /* a scalar head: L = sum r . hidden, backward from dhidden only */
    float *r_h = malloc((size_t)B * T * t->C * sizeof *r_h);
    for (int i = 0; i < B * T * t->C; i++) r_h[i] = rng_normal(&r);
    model_zero_grads(&m);
    model_forward(&m, &a, tok, B, T, &err);
    CHECK(model_backward(&m, &a, NULL, r_h, &err) == 0, "%s backward from dhidden: %s", t->name, err.msg);
    const model_tensor *probe[3] = {&m.tensors[0], &m.tensors[2], &m.tensors[m.n_tensors - 2]};
    for (int pi = 0; pi < 3; pi++) {
        const model_tensor *tt = probe[pi];
        double maxerr = 0, gmax = 0;
        for (size_t k = 0; k < tt->numel; k++) gmax = fmax(gmax, fabs(m.grads[tt->offset + k]));
        for (int s = 0; s < 5; s++) {
            size_t k = (size_t)rng_below(&r, tt->numel);
            float *p = m.params + tt->offset + k, p0 = *p;
            double l[2];
            for (int side = 0; side < 2; side++) {
                *p = p0 + (side ? -eps : eps);
                model_forward(&m, &a, tok, B, T, &err);
                l[side] = 0;
                for (int j = 0; j < B * T * t->C; j++) l[side] += (double)r_h[j] * a.hidden[j];
            }
            *p = p0;
            maxerr = fmax(maxerr, fabs((l[0] - l[1]) / (2.0 * eps) - m.grads[tt->offset + k]));
        }
        CHECK(maxerr <= 5e-3 * gmax + 1e-5, "%s: scalar head, d/d %s: error %.3g, max |grad| %.3g", t->name, tt->name,
              maxerr, gmax);
    }
    free(r_h);
    model_acts_free(&a);
    model_free(&m);
}

/* Plain SGD on one batch lowers the loss. */
static void check_sgd(const tiny *t) {
    model m;
    make_model(&m, t, 3);
    const int B = 2, T = 8;
    model_acts a;
    rlhf_error err = {0};
    model_acts_init(&a, &m.config, B, T, &err);
    int32_t tok[16], tgt[16];
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)((i * 7 + 3) % t->V);
    next_token_targets(tgt, tok, B, T);
    double first = 0, last = 0;
    for (int step = 0; step < 8; step++) {
        model_zero_grads(&m);
        double loss = loss_of(&m, &a, tok, tgt, NULL, B, T);
        model_xent(a.logits, tgt, NULL, B, T, t->V, a.logits, NULL);
        model_backward(&m, &a, a.logits, NULL, &err);
        for (size_t i = 0; i < m.n_floats; i++) m.params[i] -= 0.05f * m.grads[i];
        if (step == 0) first = loss;
        last = loss;
    }
    CHECK(last < 0.8 * first, "%s: 8 SGD steps lower the loss by 20%% (%.4f -> %.4f)", t->name, first, last);
    model_acts_free(&a);
    model_free(&m);
}

/* Two micro-batches of one sequence each, gradients accumulated, equal one batch of both (each
 * micro-batch's mean loss weighs half, so its dlogits are halved). Also: a smaller (B, T) than
 * the arena's capacity computes the same logits as an exactly sized arena. */
static void check_accumulation(const tiny *t) {
    model m;
    make_model(&m, t, 9);
    const int B = 2, T = 7, V = t->V;
    rlhf_error err = {0};
    model_acts a;
    model_acts_init(&a, &m.config, 3, t->TMAX, &err);
    int32_t tok[14], tgt[14];
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)((i * 5 + 1) % V);
    next_token_targets(tgt, tok, B, T);

    model_zero_grads(&m);
    loss_of(&m, &a, tok, tgt, NULL, B, T);
    model_xent(a.logits, tgt, NULL, B, T, V, a.logits, NULL);
    model_backward(&m, &a, a.logits, NULL, &err);
    float *whole = malloc(m.n_floats * sizeof *whole);
    memcpy(whole, m.grads, m.n_floats * sizeof *whole);

    model_zero_grads(&m);
    for (int b = 0; b < B; b++) {
        loss_of(&m, &a, tok + b * T, tgt + b * T, NULL, 1, T);
        model_xent(a.logits, tgt + b * T, NULL, 1, T, V, a.logits, NULL);
        for (int i = 0; i < T * V; i++) a.logits[i] *= 0.5f;
        CHECK(model_backward(&m, &a, a.logits, NULL, &err) == 0, "micro-batch backward");
    }
    double maxerr = 0, gmax = 0;
    for (size_t i = 0; i < m.n_floats; i++) {
        maxerr = fmax(maxerr, fabs((double)m.grads[i] - whole[i]));
        gmax = fmax(gmax, fabs(whole[i]));
    }
    CHECK(maxerr <= 1e-5 * gmax, "%s: accumulated micro-batches equal the whole batch (err %.3g of %.3g)", t->name,
          maxerr, gmax);

    /* the same sequence in an exactly sized arena */
    model_acts a2;
    model_acts_init(&a2, &m.config, 1, T, &err);
    model_forward(&m, &a, tok + T, 1, T, &err);
    model_forward(&m, &a2, tok + T, 1, T, &err);
    CHECK(memcmp(a.logits, a2.logits, (size_t)T * V * sizeof(float)) == 0,
          "%s: a prefix of a larger arena gives identical logits", t->name);
    /* causality: changing the last token leaves earlier logits unchanged */
    int32_t tok2[7];
    memcpy(tok2, tok + T, sizeof tok2);
    tok2[T - 1] = (tok2[T - 1] + 1) % V;
    model_forward(&m, &a2, tok2, 1, T, &err);
    CHECK(memcmp(a.logits, a2.logits, (size_t)(T - 1) * V * sizeof(float)) == 0 &&
              memcmp(a.logits + (T - 1) * V, a2.logits + (T - 1) * V, V * sizeof(float)) != 0,
          "%s: position t sees only tokens 0..t", t->name);
    model_acts_free(&a2);
    model_acts_free(&a);
    model_free(&m);
    free(whole);
}

/* Masked targets (-1) and weights: the loss is the weighted mean of the per-position losses,
 * masked and zero-weight positions get zero dlogits, and a zero weight equals a mask. */
static void check_mask_weights(const tiny *t) {
    model m;
    make_model(&m, t, 21);
    const int B = 2, T = 5, V = t->V, N = B * T;
    rlhf_error err = {0};
    model_acts a;
    model_acts_init(&a, &m.config, B, T, &err);
    int32_t tok[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, tgt[10];
    next_token_targets(tgt, tok, B, T);
    tgt[1] = -1;
    float w[10] = {1, 2, 0.5f, 0, 3, 1, 1, 2, 1, 0};
    float losses[10], *logits = malloc((size_t)N * V * sizeof *logits), *d = malloc((size_t)N * V * sizeof *d);
    model_forward(&m, &a, tok, B, T, &err);
    memcpy(logits, a.logits, (size_t)N * V * sizeof *logits);
    double loss = model_xent(logits, tgt, w, B, T, V, d, losses);
    double num = 0, den = 0;
    for (int i = 0; i < N; i++)
        if (tgt[i] >= 0) num += (double)w[i] * losses[i], den += w[i];
    CHECK_CLOSE(loss, num / den, 0, 1e-6, "weighted mean of per-position losses");
    CHECK(losses[1] == 0 && losses[4] == 0 && losses[9] == 0, "masked positions have loss 0");
    CHECK(losses[3] > 0, "a zero-weight position still reports its own loss");
    int zero_rows = 1;
    for (int i = 0; i < N; i++)
        if (tgt[i] < 0 || w[i] == 0)
            for (int j = 0; j < V; j++) zero_rows &= d[(size_t)i * V + j] == 0.0f;
    CHECK(zero_rows, "masked and zero-weight positions have zero dlogits");
    /* each counted row of dlogits sums to ~0 (softmax minus one-hot) and carries w/sum(w) */
    double s = 0, tgtd = d[2 * V + tgt[2]];
    for (int j = 0; j < V; j++) s += d[2 * V + j];
    CHECK(fabs(s) < 1e-6 && tgtd < 0, "a counted row of dlogits sums to zero (%g)", s);

    /* zero weight == mask, through the whole backward */
    model_zero_grads(&m);
    model_xent(a.logits, tgt, w, B, T, V, a.logits, NULL);
    model_backward(&m, &a, a.logits, NULL, &err);
    float *g1 = malloc(m.n_floats * sizeof *g1);
    memcpy(g1, m.grads, m.n_floats * sizeof *g1);
    int32_t tgt2[10];
    memcpy(tgt2, tgt, sizeof tgt2);
    tgt2[3] = -1;
    model_zero_grads(&m);
    model_forward(&m, &a, tok, B, T, &err);
    double loss2 = model_xent(a.logits, tgt2, w, B, T, V, a.logits, NULL);
    model_backward(&m, &a, a.logits, NULL, &err);
    CHECK_CLOSE(loss2, loss, 0, 1e-7, "zero weight and mask give the same loss");
    CHECK(memcmp(g1, m.grads, m.n_floats * sizeof *g1) == 0, "zero weight and mask give the same gradients");

    /* nothing counted: NAN and zero dlogits */
    int32_t none[10];
    for (int i = 0; i < N; i++) none[i] = -1;
    CHECK(isnan(model_xent(logits, none, NULL, B, T, V, d, NULL)) && d[0] == 0.0f, "no counted position gives NAN");
    free(g1), free(logits), free(d);
    model_acts_free(&a);
    model_free(&m);
}

static void check_refusals(const tiny *t) {
    model m;
    make_model(&m, t, 1);
    rlhf_error err = {0};
    model_acts a;
    model_acts_init(&a, &m.config, 2, 4, &err);
    int32_t tok[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    tok[6] = t->V;
    CHECK(model_forward(&m, &a, tok, 2, 4, &err) == RLHF_ERR_INVALID && strstr(err.msg, "position 2") &&
              strstr(err.msg, "sequence 1"),
          "token id V refused naming its place: %s", err.msg);
    tok[6] = -3;
    CHECK(model_forward(&m, &a, tok, 2, 4, &err) == RLHF_ERR_INVALID, "negative token refused");
    tok[6] = 0;
    CHECK(model_backward(&m, &a, a.logits, NULL, &err) == RLHF_ERR_INVALID, "backward after a refused forward refused");
    CHECK(model_forward(&m, &a, tok, 3, 4, &err) == RLHF_ERR_INVALID, "batch larger than the arena refused");
    CHECK(model_forward(&m, &a, tok, 1, 5, &err) == RLHF_ERR_INVALID, "sequence longer than the arena refused");
    model_acts too_long;
    CHECK(model_acts_init(&too_long, &m.config, 1, t->TMAX + 1, &err) == RLHF_ERR_INVALID,
          "arena longer than the context refused");
    model_acts_free(&too_long); /* safe on the zeroed struct a failed init leaves */
    model_acts_free(&a);
    model_acts_free(&a); /* safe twice */
    /* a NaN weight surfaces as a named non-finite gradient */
    model_acts_init(&a, &m.config, 1, 4, &err);
    m.w.layers[0].ln1_w[0] = NAN;
    model_forward(&m, &a, tok, 1, 4, &err);
    int32_t tgt[4] = {2, 3, 4, -1};
    model_xent(a.logits, tgt, NULL, 1, 4, t->V, a.logits, NULL);
    CHECK(model_backward(&m, &a, a.logits, NULL, &err) == RLHF_ERR_NUMERIC && strstr(err.msg, "gradient of "),
          "NaN caught after backward and the tensor named: %s", err.msg);
    model_acts_free(&a);
    model_free(&m);
}

int main(void) {
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) {
        check_model_fd(&configs[i]);
        check_sgd(&configs[i]);
        check_accumulation(&configs[i]);
        check_mask_weights(&configs[i]);
    }
    check_refusals(&configs[0]);
    check_refusals(&configs[2]);
    return test_finish("test_model_grad");
}
