/* model.c — configuration checks, the parameter layout table, allocation and initialisation.
 *
 * The layout table is the single source of truth for where every tensor lives: checkpoints,
 * the optimizer, weight-decay groups and the typed views all derive from it. Compute lives in
 * model_compute.c. */
#include "src/model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Each tensor starts on a 64-byte boundary so vectorised loops see aligned rows. */
#define MODEL_ALIGN_FLOATS 16

void model_config_defaults(model_config *cfg, model_family family) {
    memset(cfg, 0, sizeof *cfg);
    cfg->family = family;
    cfg->norm_eps = 1e-5f;
    cfg->rope_theta = 10000.0f;
    cfg->rope_layout = MODEL_ROPE_HALF;
    cfg->tied_embeddings = family == MODEL_FAMILY_GPT2;
    cfg->bos_id = -1;
    cfg->eos_id = -1;
    cfg->pad_id = -1;
}

const char *model_family_name(model_family family) {
    switch (family) {
    case MODEL_FAMILY_GPT2: return "gpt2";
    case MODEL_FAMILY_LLAMA: return "llama";
    }
    return "unknown";
}

int model_config_validate(const model_config *c, rlhf_error *err) {
    if (c->family != MODEL_FAMILY_GPT2 && c->family != MODEL_FAMILY_LLAMA)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "config: unknown model family %d", (int)c->family);
#define NEED(cond, ...) \
    if (!(cond)) return rlhf_errorf(err, RLHF_ERR_INVALID, "config: " __VA_ARGS__)
    NEED(c->n_layers >= 1 && c->n_layers <= 1024, "n_layers must be in 1..1024 (got %d)", c->n_layers);
    NEED(c->dim >= 1 && c->dim <= 65536, "dim must be in 1..65536 (got %d)", c->dim);
    NEED(c->n_heads >= 1 && c->dim % c->n_heads == 0, "dim %d must be a multiple of n_heads %d", c->dim, c->n_heads);
    NEED(c->n_kv_heads >= 1 && c->n_heads % c->n_kv_heads == 0, "n_kv_heads %d must divide n_heads %d",
         c->n_kv_heads, c->n_heads);
    NEED(c->family == MODEL_FAMILY_LLAMA || c->n_kv_heads == c->n_heads,
         "gpt2 needs n_kv_heads == n_heads (got %d and %d)", c->n_kv_heads, c->n_heads);
    NEED(c->family == MODEL_FAMILY_GPT2 || (c->dim / c->n_heads) % 2 == 0,
         "llama head size %d must be even for rotary embeddings", c->dim / c->n_heads);
    NEED(c->ffn_dim >= 1 && c->ffn_dim <= 1 << 20, "ffn_dim must be in 1..1048576 (got %d)", c->ffn_dim);
    NEED(c->vocab_size >= 1 && c->vocab_size <= 1 << 24, "vocab_size must be in 1..16777216 (got %d)", c->vocab_size);
    NEED(c->context >= 1 && c->context <= 1 << 20, "context must be in 1..1048576 (got %d)", c->context);
    NEED(isfinite(c->norm_eps) && c->norm_eps > 0, "norm_eps must be positive (got %g)", (double)c->norm_eps);
    NEED(c->family == MODEL_FAMILY_GPT2 || (isfinite(c->rope_theta) && c->rope_theta > 0),
         "rope_theta must be positive (got %g)", (double)c->rope_theta);
    NEED(c->rope_layout == MODEL_ROPE_HALF || c->rope_layout == MODEL_ROPE_INTERLEAVED, "unknown rope layout %d",
         (int)c->rope_layout);
    NEED(c->bos_id >= -1 && c->bos_id < c->vocab_size, "bos_id %d outside the vocabulary", (int)c->bos_id);
    NEED(c->eos_id >= -1 && c->eos_id < c->vocab_size, "eos_id %d outside the vocabulary", (int)c->eos_id);
    NEED(c->pad_id >= -1 && c->pad_id < c->vocab_size, "pad_id %d outside the vocabulary", (int)c->pad_id);
    NEED(c->num_labels >= 0 && c->num_labels <= 65536, "num_labels must be in 0..65536 (got %d)", c->num_labels);
#undef NEED
    return RLHF_OK;
}

/* ---- layout ---- */

typedef struct {
    model_tensor *t;
    int n, cap;
    size_t next; /* next free float offset */
} layout_builder;

/* packed: the next tensor follows this one with no padding (fused q/k/v and gate/up groups). */
static int layout_add_ex(layout_builder *lb, const char *name, int64_t d0, int64_t d1, model_tensor_kind kind,
                         int layer, int packed) {
    if (lb->n == lb->cap) {
        int cap = lb->cap ? lb->cap * 2 : 64;
        model_tensor *nt = realloc(lb->t, (size_t)cap * sizeof *nt);
        if (!nt) return RLHF_ERR_NOMEM;
        lb->t = nt;
        lb->cap = cap;
    }
    model_tensor *t = &lb->t[lb->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = d1 > 0 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1 > 0 ? d1 : 0;
    t->numel = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1);
    t->kind = kind;
    t->layer = layer;
    t->offset = lb->next;
    lb->next += packed ? t->numel : (t->numel + MODEL_ALIGN_FLOATS - 1) / MODEL_ALIGN_FLOATS * MODEL_ALIGN_FLOATS;
    return RLHF_OK;
}

static int layout_add(layout_builder *lb, const char *name, int64_t d0, int64_t d1, model_tensor_kind kind,
                      int layer) {
    return layout_add_ex(lb, name, d0, d1, kind, layer, 0);
}

static int layout_gpt2(layout_builder *lb, const model_config *c) {
    const int64_t C = c->dim, F = c->ffn_dim, V = c->vocab_size, TMAX = c->context;
    char n[MODEL_TENSOR_NAME_MAX];
    int rc = 0;
    rc |= layout_add(lb, "transformer.wte.weight", V, C, MODEL_TENSOR_EMBEDDING, -1);
    rc |= layout_add(lb, "transformer.wpe.weight", TMAX, C, MODEL_TENSOR_EMBEDDING, -1);
    for (int l = 0; l < c->n_layers && !rc; l++) {
#define ADD(suffix, d0, d1, kind) \
    (snprintf(n, sizeof n, "transformer.h.%d.%s", l, suffix), layout_add(lb, n, d0, d1, kind, l))
        rc |= ADD("ln_1.weight", C, 0, MODEL_TENSOR_NORM);
        rc |= ADD("ln_1.bias", C, 0, MODEL_TENSOR_BIAS);
        rc |= ADD("attn.c_attn.weight", C, 3 * C, MODEL_TENSOR_MATRIX);
        rc |= ADD("attn.c_attn.bias", 3 * C, 0, MODEL_TENSOR_BIAS);
        rc |= ADD("attn.c_proj.weight", C, C, MODEL_TENSOR_MATRIX);
        rc |= ADD("attn.c_proj.bias", C, 0, MODEL_TENSOR_BIAS);
        rc |= ADD("ln_2.weight", C, 0, MODEL_TENSOR_NORM);
        rc |= ADD("ln_2.bias", C, 0, MODEL_TENSOR_BIAS);
        rc |= ADD("mlp.c_fc.weight", C, F, MODEL_TENSOR_MATRIX);
        rc |= ADD("mlp.c_fc.bias", F, 0, MODEL_TENSOR_BIAS);
        rc |= ADD("mlp.c_proj.weight", F, C, MODEL_TENSOR_MATRIX);
        rc |= ADD("mlp.c_proj.bias", C, 0, MODEL_TENSOR_BIAS);
#undef ADD
    }
    rc |= layout_add(lb, "transformer.ln_f.weight", C, 0, MODEL_TENSOR_NORM, -1);
    rc |= layout_add(lb, "transformer.ln_f.bias", C, 0, MODEL_TENSOR_BIAS, -1);
    return rc ? RLHF_ERR_NOMEM : RLHF_OK;
}

static int layout_llama(layout_builder *lb, const model_config *c) {
    const int64_t C = c->dim, F = c->ffn_dim, V = c->vocab_size;
    const int64_t HS = c->dim / c->n_heads, QD = c->n_heads * HS, KVD = c->n_kv_heads * HS;
    char n[MODEL_TENSOR_NAME_MAX];
    int rc = 0;
    rc |= layout_add(lb, "model.embed_tokens.weight", V, C, MODEL_TENSOR_EMBEDDING, -1);
    for (int l = 0; l < c->n_layers && !rc; l++) {
#define ADD(suffix, d0, d1, kind, packed) \
    (snprintf(n, sizeof n, "model.layers.%d.%s", l, suffix), layout_add_ex(lb, n, d0, d1, kind, l, packed))
        rc |= ADD("input_layernorm.weight", C, 0, MODEL_TENSOR_NORM, 0);
        rc |= ADD("self_attn.q_proj.weight", QD, C, MODEL_TENSOR_MATRIX, 1);
        rc |= ADD("self_attn.k_proj.weight", KVD, C, MODEL_TENSOR_MATRIX, 1);
        rc |= ADD("self_attn.v_proj.weight", KVD, C, MODEL_TENSOR_MATRIX, 0);
        rc |= ADD("self_attn.o_proj.weight", C, QD, MODEL_TENSOR_MATRIX, 0);
        rc |= ADD("post_attention_layernorm.weight", C, 0, MODEL_TENSOR_NORM, 0);
        rc |= ADD("mlp.gate_proj.weight", F, C, MODEL_TENSOR_MATRIX, 1);
        rc |= ADD("mlp.up_proj.weight", F, C, MODEL_TENSOR_MATRIX, 0);
        rc |= ADD("mlp.down_proj.weight", C, F, MODEL_TENSOR_MATRIX, 0);
#undef ADD
    }
    rc |= layout_add(lb, "model.norm.weight", C, 0, MODEL_TENSOR_NORM, -1);
    return rc ? RLHF_ERR_NOMEM : RLHF_OK;
}

/* q/k/v and gate/up are packed without padding between them so each group is one matrix for
 * one fused sgemm (see layout_llama). */
static int layout_build(layout_builder *lb, const model_config *c) {
    int rc = c->family == MODEL_FAMILY_GPT2 ? layout_gpt2(lb, c) : layout_llama(lb, c);
    if (rc) return rc;
    /* the head is last in both families: an LM's untied lm_head, or a classifier's score */
    if (c->num_labels > 0) return layout_add(lb, "score.weight", c->num_labels, c->dim, MODEL_TENSOR_MATRIX, -1);
    if (!c->tied_embeddings) return layout_add(lb, "lm_head.weight", c->vocab_size, c->dim, MODEL_TENSOR_EMBEDDING, -1);
    return RLHF_OK;
}

int model_init(model *m, const model_config *cfg, rlhf_error *err) {
    memset(m, 0, sizeof *m);
    int rc = model_config_validate(cfg, err);
    if (rc) return rc;
    layout_builder lb = {0};
    if (layout_build(&lb, cfg)) {
        free(lb.t);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory building the model layout");
    }
    m->config = *cfg;
    m->tensors = lb.t;
    m->n_tensors = lb.n;
    for (int i = 0; i < lb.n; i++) m->n_params += lb.t[i].numel;
    m->n_floats = lb.next;
    m->w.layers = calloc((size_t)cfg->n_layers, sizeof(model_layer_weights));
    m->g.layers = calloc((size_t)cfg->n_layers, sizeof(model_layer_weights));
    m->params = aligned_alloc(64, (m->n_floats * sizeof(float) + 63) / 64 * 64);
    if (!m->w.layers || !m->g.layers || !m->params) {
        model_free(m);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory allocating %zu parameters", lb.next);
    }
    memset(m->params, 0, m->n_floats * sizeof(float));
    model_bind_weights(m, m->params, &m->w, m->w.layers);
    return RLHF_OK;
}

void model_free(model *m) {
    free(m->tensors);
    free(m->params);
    free(m->grads);
    free(m->w.layers);
    free(m->g.layers);
    memset(m, 0, sizeof *m);
}

int model_alloc_grads(model *m, rlhf_error *err) {
    if (m->grads) return RLHF_OK;
    m->grads = aligned_alloc(64, (m->n_floats * sizeof(float) + 63) / 64 * 64);
    if (!m->grads) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory allocating gradients");
    memset(m->grads, 0, m->n_floats * sizeof(float));
    model_bind_weights(m, m->grads, &m->g, m->g.layers);
    return RLHF_OK;
}

void model_zero_grads(model *m) {
    if (m->grads) memset(m->grads, 0, m->n_floats * sizeof(float));
}

const model_tensor *model_find_tensor(const model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

/* The tensor-table order is fixed by layout_*, so binding walks it in the same order. */
void model_bind_weights(const model *m, float *buf, model_weights *out, model_layer_weights *layers) {
    const model_config *c = &m->config;
    memset(out, 0, sizeof *out);
    out->layers = layers;
    memset(layers, 0, (size_t)c->n_layers * sizeof *layers);
    const model_tensor *t = m->tensors;
    int i = 0;
#define NEXT() (buf + t[i++].offset)
    out->tok_emb = NEXT();
    if (c->family == MODEL_FAMILY_GPT2) {
        out->pos_emb = NEXT();
        for (int l = 0; l < c->n_layers; l++) {
            model_layer_weights *lw = &layers[l];
            lw->ln1_w = NEXT();
            lw->ln1_b = NEXT();
            lw->qkv_w = NEXT();
            lw->qkv_b = NEXT();
            lw->attn_out_w = NEXT();
            lw->attn_out_b = NEXT();
            lw->ln2_w = NEXT();
            lw->ln2_b = NEXT();
            lw->fc_w = NEXT();
            lw->fc_b = NEXT();
            lw->proj_w = NEXT();
            lw->proj_b = NEXT();
        }
        out->lnf_w = NEXT();
        out->lnf_b = NEXT();
    } else {
        for (int l = 0; l < c->n_layers; l++) {
            model_layer_weights *lw = &layers[l];
            lw->ln1_w = NEXT();
            lw->qkv_w = NEXT();
            i += 2; /* k_proj, v_proj follow q_proj contiguously */
            lw->attn_out_w = NEXT();
            lw->ln2_w = NEXT();
            lw->fc_w = NEXT();
            i += 1; /* up_proj follows gate_proj contiguously */
            lw->proj_w = NEXT();
        }
        out->lnf_w = NEXT();
    }
    if (c->num_labels > 0) out->score = NEXT();
    else out->lm_head = c->tied_embeddings ? out->tok_emb : NEXT();
#undef NEXT
}

void model_init_random(model *m, rng_t *rng) {
    const float std = 0.02f;
    const float resid_std = std / sqrtf(2.0f * (float)m->config.n_layers);
    memset(m->params, 0, m->n_floats * sizeof(float));
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        float *p = m->params + t->offset;
        if (t->kind == MODEL_TENSOR_NORM) {
            for (size_t k = 0; k < t->numel; k++) p[k] = 1.0f;
        } else if (t->kind == MODEL_TENSOR_BIAS) {
            /* zero, already */
        } else {
            /* GPT-2's residual projections are scaled down so the residual stream's variance
             * does not grow with depth (GPT-2 paper, section 2.3). */
            const char *s = strstr(t->name, "c_proj.weight");
            float sd = s ? resid_std : std;
            for (size_t k = 0; k < t->numel; k++) p[k] = sd * rng_normal(rng);
        }
    }
}

size_t model_param_bytes(const model *m) { return m->n_floats * sizeof(float); }
