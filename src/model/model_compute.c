/* model_compute.c — the activation arena, forward, the cross-entropy head and backward.
 *
 * One code path for both families; the differences are the norm (LayerNorm+bias vs RMSNorm),
 * positions (learned table vs RoPE applied to q and k in place), the MLP (GELU vs SwiGLU), the
 * weight layout ([in,out] vs [out,in], which only changes the sgemm transposes) and biases.
 *
 * Every tensor backward needs is kept per layer in the arena (N = B*T rows):
 *   resid (L+1, N, C)  residual stream: resid[0] = embeddings, resid[l+1] = layer l's output
 *   ln1   (L, N, C)    + mean, rstd (L, N)       first norm's output and statistics
 *   qkv   (L, N, QKV)  q|k|v after RoPE, QKV = (NH + 2 NKV) HS
 *   att   (L, B, NH, T, T)                      softmax probabilities
 *   atty  (L, N, NH HS)                         attention output, input of the out projection
 *   mid   (L, N, C)    residual after attention
 *   ln2   (L, N, C)    + mean, rstd (L, N)
 *   fch   (L, N, FH)   MLP pre-activation, FH = F (GPT-2) or 2F (gate|up, Llama)
 *   fact  (L, N, F)    MLP activation output
 *   lnf mean, rstd (N); hidden (N, C); logits (N, V)
 * plus scratch shared by all layers: the projection output of the forward and the gradient
 * buffers of the backward, which only ever hold one layer at a time. Per-layer blocks are
 * strided by the arena's capacity, so a smaller (B, T) uses a prefix of each block. */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/model/kernels.h"
#include "src/model/lora.h"
#include "src/model/model.h"

typedef struct {
    /* dimensions the arena was laid out for */
    model_family family;
    int L, C, NH, NKV, HS, F, V, QKV, FH;
    int K; /* num_labels: > 0 means no logits in the arena */
    size_t ncap; /* B*T capacity in rows */
    size_t attcap; /* B * NH * T * T capacity in floats per layer */
    float *resid, *ln1, *ln1_mean, *ln1_rstd, *qkv, *att, *atty, *mid, *ln2, *ln2_mean, *ln2_rstd, *fch, *fact;
    float *lnf_mean, *lnf_rstd;
    float *rope_cos, *rope_sin; /* (T, HS/2), Llama only */
    int32_t *tokens, *pos;      /* (N) copies, for the embedding backward */
    /* scratch */
    float *proj;  /* (N, C) projection output before the residual add */
    float *dres;  /* (N, C) gradient of the residual stream */
    float *dln;   /* (N, C) gradient of a norm's output */
    float *dqkv;  /* (N, QKV) */
    float *datty; /* (N, NH HS) */
    float *dfch;  /* (N, FH) */
    float *dfact; /* (N, F) */
    float *datt;  /* (B, NH, T, T) */
} acts_layout;

/* Carves consecutive 64-byte aligned blocks out of the arena (base NULL: only counts). */
typedef struct {
    float *base;
    size_t used;
} carver;

static float *carve(carver *cv, size_t n) {
    float *p = cv->base ? cv->base + cv->used : NULL;
    cv->used += (n + 15) / 16 * 16;
    return p;
}

static void acts_carve(acts_layout *ly, carver *cv, int B, int T) {
    const size_t N = ly->ncap, L = (size_t)ly->L, C = (size_t)ly->C;
    ly->resid = carve(cv, (L + 1) * N * C);
    ly->ln1 = carve(cv, L * N * C);
    ly->ln1_mean = carve(cv, L * N);
    ly->ln1_rstd = carve(cv, L * N);
    ly->qkv = carve(cv, L * N * ly->QKV);
    ly->att = carve(cv, L * ly->attcap);
    ly->atty = carve(cv, L * N * ly->NH * ly->HS);
    ly->mid = carve(cv, L * N * C);
    ly->ln2 = carve(cv, L * N * C);
    ly->ln2_mean = carve(cv, L * N);
    ly->ln2_rstd = carve(cv, L * N);
    ly->fch = carve(cv, L * N * ly->FH);
    ly->fact = carve(cv, L * N * ly->F);
    ly->lnf_mean = carve(cv, N);
    ly->lnf_rstd = carve(cv, N);
    if (ly->family == MODEL_FAMILY_LLAMA) {
        ly->rope_cos = carve(cv, (size_t)T * ly->HS / 2);
        ly->rope_sin = carve(cv, (size_t)T * ly->HS / 2);
    } else {
        ly->rope_cos = ly->rope_sin = NULL;
    }
    /* int32 arrays live in the float arena; they are only ever accessed as int32 */
    ly->tokens = (int32_t *)(void *)carve(cv, N);
    ly->pos = (int32_t *)(void *)carve(cv, N);
    ly->proj = carve(cv, N * C);
    ly->dres = carve(cv, N * C);
    ly->dln = carve(cv, N * C);
    ly->dqkv = carve(cv, N * ly->QKV);
    ly->datty = carve(cv, N * ly->NH * ly->HS);
    ly->dfch = carve(cv, N * ly->FH);
    ly->dfact = carve(cv, N * ly->F);
    ly->datt = carve(cv, ly->attcap);
    (void)B;
}

int model_acts_init(model_acts *a, const model_config *cfg, int B, int T, rlhf_error *err) {
    memset(a, 0, sizeof *a);
    int rc = model_config_validate(cfg, err);
    if (rc) return rc;
    if (B < 1 || T < 1 || T > cfg->context)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "activations: need B >= 1 and 1 <= T <= context %d (got B %d, T %d)",
                           cfg->context, B, T);
    acts_layout *ly = calloc(1, sizeof *ly);
    if (!ly) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    ly->family = cfg->family;
    ly->L = cfg->n_layers;
    ly->C = cfg->dim;
    ly->NH = cfg->n_heads;
    ly->NKV = cfg->n_kv_heads;
    ly->HS = cfg->dim / cfg->n_heads;
    ly->F = cfg->ffn_dim;
    ly->V = cfg->vocab_size;
    ly->K = cfg->num_labels;
    ly->QKV = (ly->NH + 2 * ly->NKV) * ly->HS;
    ly->FH = cfg->family == MODEL_FAMILY_LLAMA ? 2 * ly->F : ly->F;
    ly->ncap = (size_t)B * T;
    ly->attcap = (size_t)B * ly->NH * T * T;

    carver cv = {0};
    acts_carve(ly, &cv, B, T);
    size_t logits_at = cv.used;
    if (cfg->num_labels == 0) carve(&cv, ly->ncap * ly->V); /* a classifier has no LM head */
    size_t hidden_at = cv.used;
    carve(&cv, ly->ncap * ly->C);
    a->arena = aligned_alloc(64, cv.used * sizeof(float));
    if (!a->arena) {
        free(ly);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory allocating %.1f MB of activations for B %d, T %d",
                           (double)cv.used * sizeof(float) / 1e6, B, T);
    }
    a->arena_floats = cv.used;
    carver real = {a->arena, 0};
    acts_carve(ly, &real, B, T);
    a->logits = cfg->num_labels == 0 ? a->arena + logits_at : NULL;
    a->hidden = a->arena + hidden_at;
    if (ly->rope_cos) rope_table(ly->rope_cos, ly->rope_sin, T, ly->HS, cfg->rope_theta);
    a->B = B;
    a->T = T;
    a->priv = ly;
    return RLHF_OK;
}

void model_acts_free(model_acts *a) {
    free(a->arena);
    free(a->lora_arena);
    free(a->priv);
    memset(a, 0, sizeof *a);
}

/* The arena was laid out for a config; a model of another shape cannot use it. */
static int acts_check(const model *m, const model_acts *a, rlhf_error *err) {
    const acts_layout *ly = a->priv;
    const model_config *c = &m->config;
    if (!ly) return rlhf_errorf(err, RLHF_ERR_INVALID, "activations not initialised");
    if (ly->family != c->family || ly->L != c->n_layers || ly->C != c->dim || ly->NH != c->n_heads ||
        ly->NKV != c->n_kv_heads || ly->F != c->ffn_dim || ly->V != c->vocab_size || ly->K != c->num_labels)
        return rlhf_errorf(err, RLHF_ERR_SHAPE, "activations were sized for another model configuration");
    return RLHF_OK;
}

#define LAYER(ptr, l, width) ((ptr) + (size_t)(l) * ly->ncap * (width))

/* The attached adapter if it takes part (enabled, with at least one target), else NULL. */
static struct lora *active_lora(const model *m) {
    struct lora *lo = m->lora;
    return lo && lo->enabled && lo->n_sites > 0 ? lo : NULL;
}

/* Sizes the adapter's part of the arena for the activations' capacity: allocated by the first
 * forward with an adapter (once), grown only if a larger adapter comes. */
static int lora_acts_reserve(model_acts *a, const struct lora *lo, size_t rows, rlhf_error *err) {
    size_t need = lora_acts_floats(lo, rows);
    if (a->lora_arena && a->lora_arena_floats >= need) return RLHF_OK;
    free(a->lora_arena);
    a->lora_arena_floats = 0;
    a->lora_arena = aligned_alloc(64, (need * sizeof(float) + 63) / 64 * 64);
    if (!a->lora_arena) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory allocating LoRA activations");
    a->lora_arena_floats = need;
    return RLHF_OK;
}

int model_forward(const model *m, model_acts *a, const int32_t *tokens, int B, int T, rlhf_error *err) {
    int rc = acts_check(m, a, err);
    if (rc) return rc;
    acts_layout *ly = a->priv;
    const model_config *cfg = &m->config;
    if (B < 1 || T < 1 || B > a->B || T > a->T || T > cfg->context)
        return rlhf_errorf(err, RLHF_ERR_INVALID,
                           "forward: batch %d x %d does not fit the activations (%d x %d) or the context %d", B, T,
                           a->B, a->T, cfg->context);
    const int V = ly->V, C = ly->C, NH = ly->NH, NKV = ly->NKV, HS = ly->HS, F = ly->F, QKV = ly->QKV,
              FH = ly->FH;
    const int N = B * T;
    for (int n = 0; n < N; n++)
        if (tokens[n] < 0 || tokens[n] >= V)
            return rlhf_errorf(err, RLHF_ERR_INVALID,
                               "forward: token id %d at sequence %d position %d is outside the vocabulary [0, %d)",
                               (int)tokens[n], n / T, n % T, V);
    a->cur_B = 0;
    a->cur_T = 0;
    a->lora_active = 0;
    struct lora *lo = active_lora(m);
    lora_acts la = {0};
    if (lo) {
        if ((rc = lora_acts_reserve(a, lo, ly->ncap, err))) return rc;
        a->lora_seed = lora_next_seed(lo);
        la = (lora_acts){.arena = a->lora_arena, .rows = ly->ncap, .seed = a->lora_seed};
    }
    for (int n = 0; n < N; n++) {
        ly->tokens[n] = tokens[n];
        ly->pos[n] = n % T;
    }
    const int gpt2 = cfg->family == MODEL_FAMILY_GPT2;
    const kernel_w_layout wl = gpt2 ? KERNEL_W_IN_OUT : KERNEL_W_OUT_IN;
    const model_weights *w = &m->w;
    const float eps = cfg->norm_eps;

    embedding_forward(ly->resid, ly->tokens, ly->pos, w->tok_emb, w->pos_emb, N, C);

    attention_dims ad = {
        .B = B, .Tq = T, .Tk = T, .NH = NH, .NKV = NKV, .HS = HS,
        .q_stride = QKV, .kv_stride = QKV, .out_stride = NH * HS,
        .q_bstride = (size_t)T * QKV, .kv_bstride = (size_t)T * QKV, .out_bstride = (size_t)T * NH * HS,
    };
    for (int l = 0; l < ly->L; l++) {
        const model_layer_weights *lw = &w->layers[l];
        float *x = LAYER(ly->resid, l, C), *out = LAYER(ly->resid, l + 1, C);
        float *ln1 = LAYER(ly->ln1, l, C), *ln1m = LAYER(ly->ln1_mean, l, 1), *ln1r = LAYER(ly->ln1_rstd, l, 1);
        float *qkv = LAYER(ly->qkv, l, QKV), *atty = LAYER(ly->atty, l, NH * HS), *mid = LAYER(ly->mid, l, C);
        float *ln2 = LAYER(ly->ln2, l, C), *ln2m = LAYER(ly->ln2_mean, l, 1), *ln2r = LAYER(ly->ln2_rstd, l, 1);
        float *fch = LAYER(ly->fch, l, FH), *fact = LAYER(ly->fact, l, F);
        float *att = ly->att + (size_t)l * ly->attcap;

        if (gpt2)
            layernorm_forward(ln1, ln1m, ln1r, x, lw->ln1_w, lw->ln1_b, N, C, eps);
        else
            rmsnorm_forward(ln1, ln1r, x, lw->ln1_w, N, C, eps);
        matmul_forward(qkv, ln1, lw->qkv_w, lw->qkv_b, N, C, QKV, wl);
        if (lo) lora_forward_slot(lo, &la, l, LORA_SLOT_QKV, qkv, QKV, ln1, N);
        /* q and k are adjacent in each row, so one call rotates all NH + NKV heads */
        if (!gpt2) rope_forward(qkv, qkv, ly->pos, ly->rope_cos, ly->rope_sin, N, NH + NKV, HS, QKV, cfg->rope_layout);
        attention_forward(atty, att, qkv, qkv + (size_t)NH * HS, qkv + (size_t)(NH + NKV) * HS, &ad);
        matmul_forward(ly->proj, atty, lw->attn_out_w, lw->attn_out_b, N, NH * HS, C, wl);
        if (lo) lora_forward_slot(lo, &la, l, LORA_SLOT_ATTN_OUT, ly->proj, C, atty, N);
        residual_forward(mid, x, ly->proj, (size_t)N * C);

        if (gpt2) {
            layernorm_forward(ln2, ln2m, ln2r, mid, lw->ln2_w, lw->ln2_b, N, C, eps);
            matmul_forward(fch, ln2, lw->fc_w, lw->fc_b, N, C, F, wl);
            if (lo) lora_forward_slot(lo, &la, l, LORA_SLOT_FC, fch, F, ln2, N);
            gelu_forward(fact, fch, (size_t)N * F);
        } else {
            rmsnorm_forward(ln2, ln2r, mid, lw->ln2_w, N, C, eps);
            matmul_forward(fch, ln2, lw->fc_w, NULL, N, C, 2 * F, wl);
            if (lo) lora_forward_slot(lo, &la, l, LORA_SLOT_FC, fch, 2 * F, ln2, N);
            swiglu_forward(fact, fch, N, F);
        }
        matmul_forward(ly->proj, fact, lw->proj_w, lw->proj_b, N, F, C, wl);
        if (lo) lora_forward_slot(lo, &la, l, LORA_SLOT_PROJ, ly->proj, C, fact, N);
        residual_forward(out, mid, ly->proj, (size_t)N * C);
    }
    const float *xl = LAYER(ly->resid, ly->L, C);
    if (gpt2)
        layernorm_forward(a->hidden, ly->lnf_mean, ly->lnf_rstd, xl, w->lnf_w, w->lnf_b, N, C, eps);
    else
        rmsnorm_forward(a->hidden, ly->lnf_rstd, xl, w->lnf_w, N, C, eps);
    /* the head is stored (V, C) in both families (torch Linear / tied embedding); a classifier's
     * score head reads a->hidden itself */
    if (w->lm_head) matmul_forward(a->logits, a->hidden, w->lm_head, NULL, N, C, V, KERNEL_W_OUT_IN);
    a->cur_B = B;
    a->cur_T = T;
    a->lora_active = lo != NULL;
    return RLHF_OK;
}

/* Rows per block of the cross-entropy head: the backward pass over a block's logits finds them
 * still in cache from the forward pass (32 rows of a 50k vocabulary are 6 MB). */
#define XENT_BLOCK 32

double model_xent(const float *logits, const int32_t *targets, const float *weights, int B, int T, int V,
                  float *dlogits, float *losses) {
    const int N = B * T;
    double wsum = 0;
    for (int n = 0; n < N; n++) {
        assert(targets[n] < V);
        if (targets[n] >= 0) wsum += weights ? weights[n] : 1.0;
    }
    if (wsum == 0) {
        if (dlogits) memset(dlogits, 0, (size_t)N * V * sizeof(float));
        if (losses) memset(losses, 0, (size_t)N * sizeof(float));
        return NAN;
    }
    double total = 0;
    for (int n0 = 0; n0 < N; n0 += XENT_BLOCK) {
        const int nb = N - n0 < XENT_BLOCK ? N - n0 : XENT_BLOCK;
        float lse[XENT_BLOCK], loss[XENT_BLOCK], dl[XENT_BLOCK];
        crossentropy_forward(loss, lse, logits + (size_t)n0 * V, targets + n0, nb, V);
        for (int i = 0; i < nb; i++) {
            const double wi = targets[n0 + i] < 0 ? 0.0 : weights ? weights[n0 + i] : 1.0;
            total += wi * loss[i];
            dl[i] = (float)(wi / wsum);
            if (losses) losses[n0 + i] = loss[i];
        }
        if (dlogits)
            crossentropy_backward(dlogits + (size_t)n0 * V, logits + (size_t)n0 * V, lse, targets + n0, dl, nb, V);
    }
    return total / wsum;
}

int model_backward(model *m, model_acts *a, const float *dlogits, const float *dhidden, rlhf_error *err) {
    int rc = acts_check(m, a, err);
    if (rc) return rc;
    if (a->cur_B < 1 || a->cur_T < 1)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "backward: no forward pass to go back through");
    if (!dlogits && !dhidden) return rlhf_errorf(err, RLHF_ERR_INVALID, "backward: no gradient given");
    if (dlogits && !m->w.lm_head)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "backward: d(logits) given to a classifier, which has no LM head");
    const int frozen = m->frozen;
    if (!frozen && (rc = model_alloc_grads(m, err))) return rc;
    struct lora *lo = active_lora(m);
    if ((lo != NULL) != (a->lora_active != 0))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "backward: the LoRA adapter was %s since the forward pass",
                           lo ? "attached or enabled" : "detached or disabled");
    acts_layout *ly = a->priv;
    lora_acts la = {.arena = a->lora_arena, .rows = ly->ncap, .seed = a->lora_seed};
    const model_config *cfg = &m->config;
    const int B = a->cur_B, T = a->cur_T, N = B * T;
    const int V = ly->V, C = ly->C, NH = ly->NH, NKV = ly->NKV, HS = ly->HS, F = ly->F, QKV = ly->QKV,
              FH = ly->FH;
    const int gpt2 = cfg->family == MODEL_FAMILY_GPT2;
    const kernel_w_layout wl = gpt2 ? KERNEL_W_IN_OUT : KERNEL_W_OUT_IN;
    const model_weights *w = &m->w, *g = &m->g;
    /* a frozen base gets no gradients: every parameter-gradient pointer below is NULL, which the
     * kernels read as "skip", so backward runs only the input-gradient products */
    static const model_layer_weights no_grads;

    /* the head: dhidden_total = dlogits W_head (+ dhidden); dW_head += dlogits^T hidden, which
     * lands in the embedding's gradient when the head is tied (g->lm_head == g->tok_emb) */
    float *dhid = ly->dln;
    if (dlogits) {
        matmul_backward(dhid, frozen ? NULL : g->lm_head, NULL, dlogits, a->hidden, w->lm_head, N, C, V, KERNEL_W_OUT_IN);
        if (dhidden) residual_backward(dhid, NULL, dhidden, (size_t)N * C);
    } else {
        memcpy(dhid, dhidden, (size_t)N * C * sizeof(float));
    }
    memset(ly->dres, 0, (size_t)N * C * sizeof(float));
    const float *xl = LAYER(ly->resid, ly->L, C);
    if (gpt2)
        layernorm_backward(ly->dres, frozen ? NULL : g->lnf_w, frozen ? NULL : g->lnf_b, dhid, xl, w->lnf_w,
                           ly->lnf_mean, ly->lnf_rstd, N, C);
    else
        rmsnorm_backward(ly->dres, frozen ? NULL : g->lnf_w, dhid, xl, w->lnf_w, ly->lnf_rstd, N, C);

    attention_dims ad = {
        .B = B, .Tq = T, .Tk = T, .NH = NH, .NKV = NKV, .HS = HS,
        .q_stride = QKV, .kv_stride = QKV, .out_stride = NH * HS,
        .q_bstride = (size_t)T * QKV, .kv_bstride = (size_t)T * QKV, .out_bstride = (size_t)T * NH * HS,
    };
    for (int l = ly->L - 1; l >= 0; l--) {
        const model_layer_weights *lw = &w->layers[l], *lg = frozen ? &no_grads : &g->layers[l];
        /* with a frozen base, d(layer 0's input) would only feed the embedding gradient */
        const int need_din = !(frozen && l == 0);
        const float *x = LAYER(ly->resid, l, C);
        const float *ln1 = LAYER(ly->ln1, l, C), *ln1m = LAYER(ly->ln1_mean, l, 1), *ln1r = LAYER(ly->ln1_rstd, l, 1);
        const float *qkv = LAYER(ly->qkv, l, QKV), *atty = LAYER(ly->atty, l, NH * HS), *mid = LAYER(ly->mid, l, C);
        const float *ln2 = LAYER(ly->ln2, l, C), *ln2m = LAYER(ly->ln2_mean, l, 1), *ln2r = LAYER(ly->ln2_rstd, l, 1);
        const float *fch = LAYER(ly->fch, l, FH), *fact = LAYER(ly->fact, l, F);
        const float *att = ly->att + (size_t)l * ly->attcap;

        /* MLP: dres holds d(layer output); the residual passes it through to mid unchanged and
         * the norm backward adds the branch's contribution on top (+=). */
        matmul_backward(ly->dfact, lg->proj_w, lg->proj_b, ly->dres, fact, lw->proj_w, N, F, C, wl);
        if (lo) lora_backward_slot(lo, &la, l, LORA_SLOT_PROJ, ly->dfact, ly->dres, C, fact, N);
        if (gpt2) {
            gelu_backward(ly->dfch, ly->dfact, fch, (size_t)N * F);
            matmul_backward(ly->dln, lg->fc_w, lg->fc_b, ly->dfch, ln2, lw->fc_w, N, C, F, wl);
            if (lo) lora_backward_slot(lo, &la, l, LORA_SLOT_FC, ly->dln, ly->dfch, F, ln2, N);
            layernorm_backward(ly->dres, lg->ln2_w, lg->ln2_b, ly->dln, mid, lw->ln2_w, ln2m, ln2r, N, C);
        } else {
            swiglu_backward(ly->dfch, ly->dfact, fch, N, F);
            matmul_backward(ly->dln, lg->fc_w, NULL, ly->dfch, ln2, lw->fc_w, N, C, 2 * F, wl);
            if (lo) lora_backward_slot(lo, &la, l, LORA_SLOT_FC, ly->dln, ly->dfch, 2 * F, ln2, N);
            rmsnorm_backward(ly->dres, lg->ln2_w, ly->dln, mid, lw->ln2_w, ln2r, N, C);
        }
        /* attention: dres now holds d(mid) */
        matmul_backward(ly->datty, lg->attn_out_w, lg->attn_out_b, ly->dres, atty, lw->attn_out_w, N, NH * HS, C, wl);
        if (lo) lora_backward_slot(lo, &la, l, LORA_SLOT_ATTN_OUT, ly->datty, ly->dres, C, atty, N);
        float *dq = ly->dqkv, *dk = ly->dqkv + (size_t)NH * HS, *dv = ly->dqkv + (size_t)(NH + NKV) * HS;
        attention_backward(dq, dk, dv, ly->datt, ly->datty, qkv, qkv + (size_t)NH * HS,
                           qkv + (size_t)(NH + NKV) * HS, att, &ad);
        if (!gpt2)
            rope_backward(ly->dqkv, ly->dqkv, ly->pos, ly->rope_cos, ly->rope_sin, N, NH + NKV, HS, QKV,
                          cfg->rope_layout);
        matmul_backward(need_din ? ly->dln : NULL, lg->qkv_w, lg->qkv_b, ly->dqkv, ln1, lw->qkv_w, N, C, QKV, wl);
        if (lo) lora_backward_slot(lo, &la, l, LORA_SLOT_QKV, need_din ? ly->dln : NULL, ly->dqkv, QKV, ln1, N);
        if (!need_din) continue;
        if (gpt2)
            layernorm_backward(ly->dres, lg->ln1_w, lg->ln1_b, ly->dln, x, lw->ln1_w, ln1m, ln1r, N, C);
        else
            rmsnorm_backward(ly->dres, lg->ln1_w, ly->dln, x, lw->ln1_w, ln1r, N, C);
    }
    if (!frozen) embedding_backward(g->tok_emb, g->pos_emb, ly->dres, ly->tokens, ly->pos, N, C);

    if (lo) {
        ptrdiff_t lbad = kernel_find_nonfinite(lo->grads, lo->n_floats);
        for (int i = 0; lbad >= 0 && i < lo->n_tensors; i++) {
            const model_tensor *t = &lo->tensors[i];
            if ((size_t)lbad >= t->offset && (size_t)lbad < t->offset + t->numel)
                return rlhf_errorf(err, RLHF_ERR_NUMERIC, "backward: gradient of %s is %g at element %zu", t->name,
                                   (double)lo->grads[lbad], (size_t)lbad - t->offset);
        }
    }
    ptrdiff_t bad = frozen ? -1 : kernel_find_nonfinite(m->grads, m->n_floats);
    if (bad >= 0) {
        for (int i = 0; i < m->n_tensors; i++) {
            const model_tensor *t = &m->tensors[i];
            if ((size_t)bad >= t->offset && (size_t)bad < t->offset + t->numel)
                return rlhf_errorf(err, RLHF_ERR_NUMERIC, "backward: gradient of %s is %g at element %zu", t->name,
                                   (double)m->grads[bad], (size_t)bad - t->offset);
        }
        return rlhf_errorf(err, RLHF_ERR_NUMERIC, "backward: non-finite gradient at float %td", bad);
    }
    return RLHF_OK;
}
