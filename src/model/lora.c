/* lora.c — LoRA adapters: target selection, the parameter layout, the forward/backward hooks
 * model_compute.c calls, merging, and PEFT adapter directories (see lora.h).
 *
 * Letters: N rows, r rank, IN / OUT a target linear's widths. Per site the forward keeps
 * u = dropout(x) A^T (N, r) for the backward:
 *   y[:, col:col+OUT] += scale u B^T
 *   dB += scale dy^T u,  du = scale dy B,  dA += du^T dropout(x),  dx += dropout'(du A)
 * Every product is one kernel_sgemm; nothing is allocated per call. */
#include "src/model/lora.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/fileio.h"
#include "src/formats/safetensors.h"
#include "src/model/kernels.h"

#define LORA_ALIGN_FLOATS 16
#define LORA_CONFIG "adapter_config.json"
#define LORA_WEIGHTS "adapter_model.safetensors"
#define LORA_PREFIX "base_model.model."

typedef struct {
    const char *name; /* PEFT's short name */
    const char *path; /* module path inside a layer */
    lora_slot slot;
} lora_module;

static const lora_module llama_modules[] = {
    {"q_proj", "self_attn.q_proj", LORA_SLOT_QKV},      {"k_proj", "self_attn.k_proj", LORA_SLOT_QKV},
    {"v_proj", "self_attn.v_proj", LORA_SLOT_QKV},      {"o_proj", "self_attn.o_proj", LORA_SLOT_ATTN_OUT},
    {"gate_proj", "mlp.gate_proj", LORA_SLOT_FC},       {"up_proj", "mlp.up_proj", LORA_SLOT_FC},
    {"down_proj", "mlp.down_proj", LORA_SLOT_PROJ},
};
static const lora_module gpt2_modules[] = {
    {"c_attn", "attn.c_attn", LORA_SLOT_QKV},
    {"c_proj", "attn.c_proj", LORA_SLOT_ATTN_OUT},
    {"c_fc", "mlp.c_fc", LORA_SLOT_FC},
    {"c_proj", "mlp.c_proj", LORA_SLOT_PROJ},
};
#define N_LLAMA ((int)(sizeof llama_modules / sizeof llama_modules[0]))
#define N_GPT2 ((int)(sizeof gpt2_modules / sizeof gpt2_modules[0]))

static const lora_module *modules_of(model_family f, int *n) {
    *n = f == MODEL_FAMILY_GPT2 ? N_GPT2 : N_LLAMA;
    return f == MODEL_FAMILY_GPT2 ? gpt2_modules : llama_modules;
}

const char *lora_module_name(model_family family, int module) {
    int n;
    const lora_module *t = modules_of(family, &n);
    return module >= 0 && module < n ? t[module].name : NULL;
}

const char *lora_module_path(model_family family, int module) {
    int n;
    const lora_module *t = modules_of(family, &n);
    return module >= 0 && module < n ? t[module].path : NULL;
}

void lora_params_defaults(lora_params *p) {
    memset(p, 0, sizeof *p);
    p->rank = 8;
    p->alpha = 8.0f;
    p->dropout = 0.0f;
    p->use_rslora = 0;
    p->targets = NULL;
}

/* Input width, output width and first output column of a module inside its slot's product. */
static void module_dims(const model_config *c, model_family f, int module, int *in, int *out, int *col) {
    const int C = c->dim, F = c->ffn_dim, HS = c->dim / c->n_heads;
    const int QD = c->n_heads * HS, KVD = c->n_kv_heads * HS;
    if (f == MODEL_FAMILY_GPT2) {
        switch (module) {
        case 0: *in = C, *out = 3 * C, *col = 0; return;
        case 1: *in = C, *out = C, *col = 0; return;
        case 2: *in = C, *out = F, *col = 0; return;
        default: *in = F, *out = C, *col = 0; return;
        }
    }
    switch (module) {
    case 0: *in = C, *out = QD, *col = 0; return;
    case 1: *in = C, *out = KVD, *col = QD; return;
    case 2: *in = C, *out = KVD, *col = QD + KVD; return;
    case 3: *in = QD, *out = C, *col = 0; return;
    case 4: *in = C, *out = F, *col = 0; return;
    case 5: *in = C, *out = F, *col = F; return;
    default: *in = F, *out = C, *col = 0; return;
    }
}

/* Row stride of a slot's output (the fused product's width). */
static int slot_width(const model_config *c, lora_slot s) {
    const int HS = c->dim / c->n_heads;
    switch (s) {
    case LORA_SLOT_QKV: return (c->n_heads + 2 * c->n_kv_heads) * HS;
    case LORA_SLOT_FC: return c->family == MODEL_FAMILY_LLAMA ? 2 * c->ffn_dim : c->ffn_dim;
    default: return c->dim;
    }
}

static void module_full_name(char *buf, size_t n, model_family f, int layer, int module) {
    snprintf(buf, n, "%s%d.%s", f == MODEL_FAMILY_GPT2 ? "transformer.h." : "model.layers.", layer,
             lora_module_path(f, module));
}

/* PEFT's rule for a list of target keys: the module's full name equals the key or ends with
 * "." + key. */
static int key_matches(const char *full, const char *key, size_t klen) {
    size_t fl = strlen(full);
    if (fl == klen && memcmp(full, key, klen) == 0) return 1;
    return fl > klen && full[fl - klen - 1] == '.' && memcmp(full + fl - klen, key, klen) == 0;
}

/* Splits a comma/space separated list; calls fn(key, len) for each non-empty key. */
#define FOR_EACH_KEY(list, k, klen)                                                               \
    for (const char *k = (list), *k##_end; *k; k = *k##_end ? k##_end + 1 : k##_end)              \
        for (size_t klen = (k##_end = k + strcspn(k, ", "), (size_t)(k##_end - k)); klen; klen = 0)

void lora_free(lora *lo) {
    free(lo->sites);
    free(lo->tensors);
    free(lo->params);
    free(lo->grads);
    free(lo->slot_first);
    free(lo->target_modules);
    memset(lo, 0, sizeof *lo);
}

static int layout_add(lora *lo, const char *name, int64_t d0, int64_t d1, int layer, size_t *next) {
    size_t len = strlen(name);
    if (len >= MODEL_TENSOR_NAME_MAX) return RLHF_ERR_INVALID;
    model_tensor *t = &lo->tensors[lo->n_tensors++];
    memset(t, 0, sizeof *t);
    memcpy(t->name, name, len + 1);
    t->ndim = 2;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->numel = (size_t)d0 * (size_t)d1;
    t->kind = MODEL_TENSOR_MATRIX;
    t->layer = layer;
    t->offset = *next;
    *next += (t->numel + LORA_ALIGN_FLOATS - 1) / LORA_ALIGN_FLOATS * LORA_ALIGN_FLOATS;
    return RLHF_OK;
}

/* Builds sites, tensors and buffers (zeroed) for targets on m's configuration. */
static int lora_build(lora *lo, const model_config *c, const lora_params *p, rlhf_error *err) {
    memset(lo, 0, sizeof *lo);
    int rc;
    if (p->rank < 1 || p->rank > 65536)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "lora: rank must be in 1..65536 (got %d)", p->rank);
    if (!isfinite(p->alpha) || p->alpha <= 0)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "lora: alpha must be positive (got %g)", (double)p->alpha);
    if (!(p->dropout >= 0 && p->dropout < 1))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "lora: dropout must be in [0, 1) (got %g)", (double)p->dropout);
    const model_family f = c->family;
    int nm;
    const lora_module *mods = modules_of(f, &nm);
    const char *targets = p->targets && *p->targets ? p->targets : f == MODEL_FAMILY_GPT2 ? "c_attn" : "q_proj,v_proj";
    int all = strcmp(targets, "all-linear") == 0;
    /* every key must name at least one module (PEFT refuses targets it cannot find too) */
    char full[MODEL_TENSOR_NAME_MAX];
    size_t tlen = 0;
    if (!all) {
        FOR_EACH_KEY(targets, k, klen) {
            int hit = 0;
            for (int l = 0; l < c->n_layers && !hit; l++)
                for (int i = 0; i < nm && !hit; i++) {
                    module_full_name(full, sizeof full, f, l, i);
                    hit = key_matches(full, k, klen);
                }
            if (!hit) {
                char known[160] = "";
                for (int i = 0; i < nm; i++)
                    if (!strstr(known, mods[i].name))
                        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", *known ? " " : "",
                                 mods[i].name);
                return rlhf_errorf(err, RLHF_ERR_INVALID, "lora: unknown target module '%.*s' for %s (modules: %s)",
                                   (int)klen, k, model_family_name(f), known);
            }
            tlen += klen + 1;
        }
    }
    if (all) {
        for (int i = 0; i < nm; i++) tlen += strlen(mods[i].name) + 1;
    }
    lo->family = f;
    lo->base = *c;
    lo->rank = p->rank;
    lo->alpha = p->alpha;
    lo->dropout = p->dropout;
    lo->use_rslora = p->use_rslora;
    lo->scale = p->use_rslora ? p->alpha / sqrtf((float)p->rank) : p->alpha / (float)p->rank;
    lo->enabled = 1;
    lo->target_modules = calloc(tlen + 1, 1);
    lo->sites = calloc((size_t)c->n_layers * nm, sizeof *lo->sites);
    lo->tensors = calloc((size_t)c->n_layers * nm * 2, sizeof *lo->tensors);
    lo->slot_first = malloc((size_t)c->n_layers * sizeof *lo->slot_first);
    if (!lo->target_modules || !lo->sites || !lo->tensors || !lo->slot_first) goto nomem;
    /* the normalised key list, as saved in adapter_config.json */
    if (all) {
        for (int i = 0; i < nm; i++)
            if (!strstr(lo->target_modules, mods[i].name)) {
                if (*lo->target_modules) strcat(lo->target_modules, ",");
                strcat(lo->target_modules, mods[i].name);
            }
    } else {
        FOR_EACH_KEY(targets, k, klen) {
            if (*lo->target_modules) strcat(lo->target_modules, ",");
            strncat(lo->target_modules, k, klen);
        }
    }
    size_t next = 0;
    const int r = p->rank;
    for (int l = 0; l < c->n_layers; l++) {
        for (int s = 0; s < LORA_SLOT_COUNT; s++) lo->slot_first[l][s] = -1;
        for (int i = 0; i < nm; i++) {
            module_full_name(full, sizeof full, f, l, i);
            int hit = all;
            FOR_EACH_KEY(targets, k, klen) if (!all && key_matches(full, k, klen)) hit = 1;
            if (!hit) continue;
            lora_site *st = &lo->sites[lo->n_sites];
            st->layer = l;
            st->module = i;
            st->slot = mods[i].slot;
            module_dims(c, f, i, &st->in, &st->out, &st->col);
            if (lo->slot_first[l][st->slot] < 0) lo->slot_first[l][st->slot] = lo->n_sites;
            char name[MODEL_TENSOR_NAME_MAX + 32];
            snprintf(name, sizeof name, LORA_PREFIX "%s.lora_A.weight", full);
            if (layout_add(lo, name, r, st->in, l, &next)) goto toolong;
            st->a_offset = lo->tensors[lo->n_tensors - 1].offset;
            snprintf(name, sizeof name, LORA_PREFIX "%s.lora_B.weight", full);
            if (layout_add(lo, name, st->out, r, l, &next)) goto toolong;
            st->b_offset = lo->tensors[lo->n_tensors - 1].offset;
            lo->n_sites++;
        }
    }
    lo->n_floats = next;
    size_t bytes = (next * sizeof(float) + 63) / 64 * 64;
    lo->params = aligned_alloc(64, bytes ? bytes : 64);
    lo->grads = aligned_alloc(64, bytes ? bytes : 64);
    if (!lo->params || !lo->grads) goto nomem;
    memset(lo->params, 0, next * sizeof(float));
    memset(lo->grads, 0, next * sizeof(float));
    return RLHF_OK;
nomem:
    lora_free(lo);
    return rlhf_errorf(err, RLHF_ERR_NOMEM, "lora: out of memory");
toolong:
    rc = rlhf_errorf(err, RLHF_ERR_INVALID, "lora: tensor name of layer %d too long", lo->sites[lo->n_sites].layer);
    lora_free(lo);
    return rc;
}

int lora_init(lora *lo, const model *m, const lora_params *p, rng_t *rng, rlhf_error *err) {
    int rc = lora_build(lo, &m->config, p, err);
    if (rc) return rc;
    /* PEFT: A ~ kaiming_uniform(a = sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)); B = 0, so the
     * adapted model starts exactly at the base. */
    for (int s = 0; s < lo->n_sites; s++) {
        const lora_site *st = &lo->sites[s];
        float *a = lo->params + st->a_offset;
        const float bound = 1.0f / sqrtf((float)st->in);
        for (size_t k = 0; k < (size_t)lo->rank * st->in; k++) a[k] = bound * (2.0f * rng_float(rng) - 1.0f);
    }
    rng_seed(&lo->rng, rng_u64(rng));
    lo->training = 1;
    return RLHF_OK;
}

void lora_attach(lora *lo, model *m) {
    assert(lo->family == m->config.family && lo->base.n_layers == m->config.n_layers &&
           lo->base.dim == m->config.dim && lo->base.ffn_dim == m->config.ffn_dim &&
           lo->base.n_heads == m->config.n_heads && lo->base.n_kv_heads == m->config.n_kv_heads);
    m->lora = lo;
    m->frozen = 1;
}

void lora_detach(model *m) {
    m->lora = NULL;
    m->frozen = 0;
}

void lora_set_enabled(lora *lo, int enabled) { lo->enabled = enabled != 0; }
void lora_set_training(lora *lo, int training) { lo->training = training != 0; }
void lora_zero_grads(lora *lo) {
    if (lo->grads) memset(lo->grads, 0, lo->n_floats * sizeof(float));
}

int lora_reserve_extra(lora *lo, size_t floats, size_t *offset, rlhf_error *err) {
    const size_t off = (lo->n_floats + LORA_ALIGN_FLOATS - 1) / LORA_ALIGN_FLOATS * LORA_ALIGN_FLOATS;
    const size_t n = off + floats, bytes = (n * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes ? bytes : 64), *g = aligned_alloc(64, bytes ? bytes : 64);
    if (!p || !g) {
        free(p);
        free(g);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "lora: out of memory for %zu extra trained floats", floats);
    }
    memset(p, 0, n * sizeof(float));
    memset(g, 0, n * sizeof(float));
    if (lo->n_floats) {
        memcpy(p, lo->params, lo->n_floats * sizeof(float));
        memcpy(g, lo->grads, lo->n_floats * sizeof(float));
    }
    free(lo->params);
    free(lo->grads);
    lo->params = p;
    lo->grads = g;
    lo->n_floats = n;
    *offset = off;
    return RLHF_OK;
}

const lora_site *lora_find_site(const lora *lo, int layer, int module) {
    for (int s = 0; s < lo->n_sites; s++)
        if (lo->sites[s].layer == layer && lo->sites[s].module == module) return &lo->sites[s];
    return NULL;
}

const model_tensor *lora_find_tensor(const lora *lo, const char *name) {
    for (int i = 0; i < lo->n_tensors; i++)
        if (strcmp(lo->tensors[i].name, name) == 0) return &lo->tensors[i];
    return NULL;
}

static int same_shape(const model_config *a, const model_config *b) {
    return a->family == b->family && a->n_layers == b->n_layers && a->dim == b->dim && a->n_heads == b->n_heads &&
           a->n_kv_heads == b->n_kv_heads && a->ffn_dim == b->ffn_dim;
}

/* ---- compute hooks ---- */

static size_t pad16(size_t n) { return (n + 15) / 16 * 16; }

static int max_in(const lora *lo) {
    int mx = 0;
    for (int s = 0; s < lo->n_sites; s++) mx = lo->sites[s].in > mx ? lo->sites[s].in : mx;
    return mx;
}

size_t lora_acts_floats(const lora *lo, size_t rows) {
    size_t n = pad16(rows * lo->rank) * (size_t)(lo->n_sites + 1);
    if (lo->dropout > 0) n += 2 * pad16(rows * max_in(lo));
    return n;
}

uint64_t lora_next_seed(lora *lo) {
    if (!lo->training || lo->dropout <= 0) return 0;
    uint64_t s = rng_u64(&lo->rng);
    return s ? s : 1;
}

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* xd (N, IN) = x * mask / (1 - p), mask(site, n, c) from a hash, so backward can regenerate it. */
static void dropout_apply(float *xd, const float *x, int N, int IN, uint64_t seed, int site, float p) {
    const float inv = 1.0f / (1.0f - p);
    const uint64_t thresh = (uint64_t)((double)p * 16777216.0);
#pragma omp parallel for schedule(static) if ((size_t)N * IN >= 32768)
    for (int n = 0; n < N; n++) {
        const uint64_t rowkey = mix64(seed ^ mix64(((uint64_t)site << 32) + (uint64_t)n));
        const float *xr = x + (size_t)n * IN;
        float *o = xd + (size_t)n * IN;
        for (int c = 0; c < IN; c++) {
            uint64_t h = mix64(rowkey + (uint64_t)c * 0x9e3779b97f4a7c15ULL) >> 40;
            o[c] = h >= thresh ? xr[c] * inv : 0.0f;
        }
    }
}

static float *site_u(const lora *lo, const lora_acts *la, int s) {
    return la->arena + (size_t)s * pad16(la->rows * lo->rank);
}

void lora_forward_slot(const lora *lo, const lora_acts *la, int layer, lora_slot slot, float *out, int ldo,
                       const float *in, int N) {
    const int first = lo->slot_first[layer][slot];
    if (first < 0 || !lo->enabled) return;
    const int r = lo->rank;
    float *xd = la->arena + (size_t)(lo->n_sites + 1) * pad16(la->rows * r);
    for (int s = first; s < lo->n_sites && lo->sites[s].layer == layer && lo->sites[s].slot == slot; s++) {
        const lora_site *st = &lo->sites[s];
        const float *x = in;
        if (la->seed) {
            dropout_apply(xd, in, N, st->in, la->seed, s, lo->dropout);
            x = xd;
        }
        float *u = site_u(lo, la, s);
        kernel_sgemm(0, 1, N, r, st->in, 1.0f, x, st->in, lo->params + st->a_offset, st->in, 0.0f, u, r);
        kernel_sgemm(0, 1, N, st->out, r, lo->scale, u, r, lo->params + st->b_offset, r, 1.0f, out + st->col, ldo);
    }
}

void lora_backward_slot(lora *lo, const lora_acts *la, int layer, lora_slot slot, float *din, const float *dout,
                        int ldo, const float *in, int N) {
    const int first = lo->slot_first[layer][slot];
    if (first < 0 || !lo->enabled) return;
    const int r = lo->rank;
    float *du = la->arena + (size_t)lo->n_sites * pad16(la->rows * r);
    float *xd = du + pad16(la->rows * r);
    float *dxd = xd + pad16(la->rows * max_in(lo));
    for (int s = first; s < lo->n_sites && lo->sites[s].layer == layer && lo->sites[s].slot == slot; s++) {
        const lora_site *st = &lo->sites[s];
        const float *dy = dout + st->col, *u = site_u(lo, la, s);
        const float *A = lo->params + st->a_offset, *B = lo->params + st->b_offset;
        float *dA = lo->grads + st->a_offset, *dB = lo->grads + st->b_offset;
        kernel_sgemm(1, 0, st->out, r, N, lo->scale, dy, ldo, u, r, 1.0f, dB, r);
        kernel_sgemm(0, 0, N, r, st->out, lo->scale, dy, ldo, B, r, 0.0f, du, r);
        const float *x = in;
        if (la->seed) {
            dropout_apply(xd, in, N, st->in, la->seed, s, lo->dropout);
            x = xd;
        }
        kernel_sgemm(1, 0, r, st->in, N, 1.0f, du, r, x, st->in, 1.0f, dA, st->in);
        if (!din) continue;
        if (!la->seed) {
            kernel_sgemm(0, 0, N, st->in, r, 1.0f, du, r, A, st->in, 1.0f, din, st->in);
        } else {
            /* d(dropout(x))/dx is the same mask and scale: regenerate it on du A */
            kernel_sgemm(0, 0, N, st->in, r, 1.0f, du, r, A, st->in, 0.0f, dxd, st->in);
            dropout_apply(dxd, dxd, N, st->in, la->seed, s, lo->dropout);
            const size_t n = (size_t)N * st->in;
#pragma omp parallel for schedule(static) if (n >= 32768)
            for (size_t i = 0; i < n; i++) din[i] += dxd[i];
        }
    }
}

/* ---- merge ---- */

static float *slot_weight(const model *m, int layer, lora_slot slot) {
    const model_layer_weights *lw = &m->w.layers[layer];
    switch (slot) {
    case LORA_SLOT_QKV: return lw->qkv_w;
    case LORA_SLOT_ATTN_OUT: return lw->attn_out_w;
    case LORA_SLOT_FC: return lw->fc_w;
    default: return lw->proj_w;
    }
}

int lora_merge(const lora *lo, model *m, rlhf_error *err) {
    assert(m->lora != lo);
    if (!same_shape(&lo->base, &m->config))
        return rlhf_errorf(err, RLHF_ERR_SHAPE, "lora merge: the adapter was made for another model configuration");
    const int r = lo->rank;
    for (int s = 0; s < lo->n_sites; s++) {
        const lora_site *st = &lo->sites[s];
        const float *A = lo->params + st->a_offset, *B = lo->params + st->b_offset;
        float *W = slot_weight(m, st->layer, st->slot);
        if (lo->family == MODEL_FAMILY_GPT2) {
            /* Conv1D (in, out_total): W[:, col:col+out] += scale A^T B^T (PEFT's fan_in_fan_out) */
            const int ld = slot_width(&m->config, st->slot);
            kernel_sgemm(1, 1, st->in, st->out, r, lo->scale, A, st->in, B, r, 1.0f, W + st->col, ld);
        } else {
            /* Linear (out, in); the fused q|k|v and gate|up matrices stack modules by rows */
            kernel_sgemm(0, 0, st->out, st->in, r, lo->scale, B, r, A, st->in, 1.0f, W + (size_t)st->col * st->in,
                         st->in);
        }
    }
    return RLHF_OK;
}

/* Each (layer, slot) weight matrix a site sits on, once: lora_merge's whole footprint on the base. */
static size_t merged_matrix_floats(const lora *lo, const model_config *c, int layer, lora_slot slot) {
    const int first = lo->slot_first[layer][slot];
    return first < 0 ? 0 : (size_t)lo->sites[first].in * (size_t)slot_width(c, slot);
}

size_t lora_merge_floats(const lora *lo) {
    size_t n = 0;
    for (int l = 0; l < lo->base.n_layers; l++)
        for (int s = 0; s < LORA_SLOT_COUNT; s++) n += merged_matrix_floats(lo, &lo->base, l, (lora_slot)s);
    return n;
}

static void base_copy(const lora *lo, model *m, float *save, int restore) {
    size_t at = 0;
    for (int l = 0; l < lo->base.n_layers; l++)
        for (int s = 0; s < LORA_SLOT_COUNT; s++) {
            const size_t n = merged_matrix_floats(lo, &m->config, l, (lora_slot)s);
            if (!n) continue;
            float *W = slot_weight(m, l, (lora_slot)s);
            if (restore) memcpy(W, save + at, n * sizeof(float));
            else memcpy(save + at, W, n * sizeof(float));
            at += n;
        }
}

void lora_base_save(const lora *lo, const model *m, float *save) { base_copy(lo, (model *)m, save, 0); }

void lora_base_restore(const lora *lo, model *m, const float *save) { base_copy(lo, m, (float *)save, 1); }

/* ---- files ---- */

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* "score.weight" -> "score" (the module modules_to_save names). */
static void extra_module(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s", name);
    char *dot = strrchr(buf, '.');
    if (dot) *dot = 0;
}

int lora_save(const lora *lo, const char *dir, const lora_save_info *info, const lora_extra *extras, int n_extras,
              rlhf_error *err) {
    int rc = RLHF_OK, n = lo->n_tensors + n_extras;
    file_atomic fw = {0}, fc = {0};
    char *wpath = NULL, *cpath = NULL, *json = NULL;
    char **names = NULL;
    safetensors_entry *e = calloc((size_t)(n ? n : 1), sizeof *e);
    names = calloc((size_t)(n_extras ? n_extras : 1), sizeof *names);
    cJSON *root = cJSON_CreateObject();
    if (!e || !names || !root) goto nomem;
    ptrdiff_t bad = kernel_find_nonfinite(lo->params, lo->n_floats);
    if (bad >= 0) {
        rc = rlhf_errorf(err, RLHF_ERR_NUMERIC, "lora save: adapter parameter %td is %g", bad, (double)lo->params[bad]);
        goto fail;
    }
    for (int i = 0; i < lo->n_tensors; i++) {
        const model_tensor *t = &lo->tensors[i];
        e[i] = (safetensors_entry){.name = t->name, .dtype = SAFETENSORS_DTYPE_F32, .ndim = 2,
                                   .shape = {t->shape[0], t->shape[1]}, .data = lo->params + t->offset};
    }
    cJSON *mts = NULL;
    for (int j = 0; j < n_extras; j++) {
        const lora_extra *x = &extras[j];
        size_t numel = (size_t)x->shape[0] * (size_t)(x->ndim == 2 ? x->shape[1] : 1);
        if (kernel_find_nonfinite(x->data, numel) >= 0) {
            rc = rlhf_errorf(err, RLHF_ERR_NUMERIC, "lora save: %s has a non-finite value", x->name);
            goto fail;
        }
        size_t len = strlen(LORA_PREFIX) + strlen(x->name) + 1;
        if (!(names[j] = malloc(len))) goto nomem;
        snprintf(names[j], len, LORA_PREFIX "%s", x->name);
        e[lo->n_tensors + j] = (safetensors_entry){.name = names[j], .dtype = SAFETENSORS_DTYPE_F32, .ndim = x->ndim,
                                                   .shape = {x->shape[0], x->ndim == 2 ? x->shape[1] : 0},
                                                   .data = x->data};
        char mod[MODEL_TENSOR_NAME_MAX];
        extra_module(mod, sizeof mod, x->name);
        if (!mts && !(mts = cJSON_AddArrayToObject(root, "modules_to_save"))) goto nomem;
        int dup = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, mts) dup |= strcmp(it->valuestring, mod) == 0;
        if (!dup) cJSON_AddItemToArray(mts, cJSON_CreateString(mod));
    }
    if (!mts) cJSON_AddNullToObject(root, "modules_to_save");
    /* adapter_config.json: the LoraConfig fields PEFT reads */
    const char *base = info && info->base_model ? info->base_model : NULL;
    if (base) cJSON_AddStringToObject(root, "base_model_name_or_path", base);
    else cJSON_AddNullToObject(root, "base_model_name_or_path");
    cJSON_AddStringToObject(root, "bias", "none");
    cJSON_AddBoolToObject(root, "fan_in_fan_out", lo->family == MODEL_FAMILY_GPT2);
    cJSON_AddBoolToObject(root, "inference_mode", 1);
    cJSON_AddBoolToObject(root, "init_lora_weights", 1);
    cJSON_AddNullToObject(root, "layers_to_transform");
    cJSON_AddNumberToObject(root, "lora_alpha", lo->alpha);
    cJSON_AddNumberToObject(root, "lora_dropout", lo->dropout);
    cJSON_AddStringToObject(root, "peft_type", "LORA");
    cJSON_AddNumberToObject(root, "r", lo->rank);
    cJSON *tm = cJSON_AddArrayToObject(root, "target_modules");
    if (!tm) goto nomem;
    FOR_EACH_KEY(lo->target_modules, k, klen) {
        char key[MODEL_TENSOR_NAME_MAX];
        snprintf(key, sizeof key, "%.*s", (int)klen, k);
        cJSON_AddItemToArray(tm, cJSON_CreateString(key));
    }
    cJSON_AddStringToObject(root, "task_type", info && info->task_type ? info->task_type : "CAUSAL_LM");
    cJSON_AddBoolToObject(root, "use_dora", 0);
    cJSON_AddBoolToObject(root, "use_rslora", lo->use_rslora);
    if (!(json = cJSON_Print(root))) goto nomem;
    if ((rc = file_mkdir_p(dir, err))) goto fail;
    if (!(wpath = path_join(dir, LORA_WEIGHTS)) || !(cpath = path_join(dir, LORA_CONFIG))) goto nomem;
    /* both staged completely before either is renamed, so a crash never pairs one adapter's
     * tensors with another's config */
    if ((rc = file_atomic_open(&fw, wpath, err))) goto fail;
    if ((rc = safetensors_write_stream(fw.fp, wpath, e, n, err))) goto fail;
    if ((rc = file_atomic_open(&fc, cpath, err))) goto fail;
    if (fputs(json, fc.fp) < 0 || fputc('\n', fc.fp) < 0) {
        rc = rlhf_errorf(err, RLHF_ERR_IO, "%s: write failed", cpath);
        goto fail;
    }
    if ((rc = file_atomic_commit(&fw, err))) goto fail;
    if ((rc = file_atomic_commit(&fc, err))) goto fail;
    goto done;
nomem:
    rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "lora save: out of memory");
fail:
    file_atomic_abort(&fw);
    file_atomic_abort(&fc);
done:
    if (names)
        for (int j = 0; j < n_extras; j++) free(names[j]);
    free(names);
    free(e);
    free(json);
    free(wpath);
    free(cpath);
    cJSON_Delete(root);
    return rc;
}

/* Reads the LoraConfig fields we implement; refuses the ones we do not (naming them). */
static int config_parse(const char *path, const char *text, lora_params *p, char **targets, rlhf_error *err) {
    cJSON *root = cJSON_Parse(text);
    int rc = RLHF_OK;
    *targets = NULL;
    if (!root || !cJSON_IsObject(root)) {
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: not a JSON object", path);
        goto done;
    }
#define BAD(...)                                                      \
    do {                                                              \
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: " __VA_ARGS__);   \
        goto done;                                                    \
    } while (0)
#define UNSUP(...)                                                       \
    do {                                                                 \
        rc = rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "%s: " __VA_ARGS__); \
        goto done;                                                       \
    } while (0)
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "peft_type");
    if (!cJSON_IsString(v)) BAD("field \"peft_type\" is missing (expected \"LORA\")", path);
    if (strcmp(v->valuestring, "LORA") != 0) UNSUP("field \"peft_type\" is \"%s\"; only \"LORA\" is read", path, v->valuestring);
    v = cJSON_GetObjectItemCaseSensitive(root, "r");
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 1 || v->valuedouble > 65536)
        BAD("field \"r\" must be an integer in 1..65536", path);
    p->rank = (int)v->valuedouble;
    v = cJSON_GetObjectItemCaseSensitive(root, "lora_alpha");
    if (v && !cJSON_IsNumber(v)) BAD("field \"lora_alpha\" must be a number", path);
    p->alpha = v ? (float)v->valuedouble : 8.0f;
    if (!(p->alpha > 0)) BAD("field \"lora_alpha\" must be positive (got %g)", path, (double)p->alpha);
    v = cJSON_GetObjectItemCaseSensitive(root, "lora_dropout");
    if (v && !cJSON_IsNumber(v)) BAD("field \"lora_dropout\" must be a number", path);
    p->dropout = v ? (float)v->valuedouble : 0.0f;
    if (!(p->dropout >= 0 && p->dropout < 1)) BAD("field \"lora_dropout\" must be in [0, 1)", path);
    v = cJSON_GetObjectItemCaseSensitive(root, "use_rslora");
    p->use_rslora = cJSON_IsTrue(v);
    v = cJSON_GetObjectItemCaseSensitive(root, "use_dora");
    if (cJSON_IsTrue(v)) UNSUP("field \"use_dora\" is true; DoRA adapters are not implemented", path);
    v = cJSON_GetObjectItemCaseSensitive(root, "bias");
    if (v && !cJSON_IsNull(v) && (!cJSON_IsString(v) || strcmp(v->valuestring, "none") != 0))
        UNSUP("field \"bias\" must be \"none\" (trained biases are not implemented)", path);
    static const char *const empty_maps[] = {"rank_pattern", "alpha_pattern"};
    for (int i = 0; i < 2; i++) {
        v = cJSON_GetObjectItemCaseSensitive(root, empty_maps[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsObject(v) && !v->child))
            UNSUP("field \"%s\" is not empty; per-module ranks are not implemented", path, empty_maps[i]);
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "layers_to_transform");
    if (v && !cJSON_IsNull(v)) UNSUP("field \"layers_to_transform\" is set; only adapters on every layer are read", path);
    v = cJSON_GetObjectItemCaseSensitive(root, "target_modules");
    if (cJSON_IsString(v)) {
        if (strcmp(v->valuestring, "all-linear") != 0)
            UNSUP("field \"target_modules\" is the regular expression \"%s\"; give a list of module names", path,
                  v->valuestring);
        *targets = strdup("all-linear");
    } else if (cJSON_IsArray(v) && cJSON_GetArraySize(v) > 0) {
        size_t len = 1;
        const cJSON *it;
        cJSON_ArrayForEach(it, v) {
            if (!cJSON_IsString(it) || !*it->valuestring || strcspn(it->valuestring, ", ") != strlen(it->valuestring))
                BAD("field \"target_modules\" must list module names", path);
            len += strlen(it->valuestring) + 1;
        }
        if ((*targets = calloc(len, 1)))
            cJSON_ArrayForEach(it, v) {
                if (**targets) strcat(*targets, ",");
                strcat(*targets, it->valuestring);
            }
    } else {
        BAD("field \"target_modules\" is missing or empty", path);
    }
    if (!*targets) rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
#undef BAD
#undef UNSUP
done:
    cJSON_Delete(root);
    return rc;
}

int lora_load(lora *lo, const model *m, const char *dir, const lora_extra *extras, int n_extras, int *found,
              rlhf_error *err) {
    memset(lo, 0, sizeof *lo);
    if (found) *found = 0;
    char *cpath = path_join(dir, LORA_CONFIG), *wpath = path_join(dir, LORA_WEIGHTS), *text = NULL, *targets = NULL;
    safetensors_file *sf = NULL;
    char *seen = NULL;
    size_t len;
    int rc = RLHF_OK, n_found = 0;
    lora_params p;
    lora_params_defaults(&p);
    if (!cpath || !wpath) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (!file_is_dir(dir)) {
        rc = rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "%s: no such adapter directory", dir);
        goto fail;
    }
    if ((rc = file_read_all(cpath, &text, &len, err))) goto fail;
    if ((rc = config_parse(cpath, text, &p, &targets, err))) goto fail;
    p.targets = targets;
    if ((rc = lora_build(lo, &m->config, &p, err))) {
        rlhf_error_prefix(err, "%s: ", cpath);
        goto fail;
    }
    if ((rc = safetensors_open(&sf, wpath, err))) goto fail;
    if (!(seen = calloc((size_t)lo->n_tensors + 1, 1))) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < sf->n_tensors; i++) {
        const safetensors_tensor *t = &sf->tensors[i];
        const model_tensor *mt = lora_find_tensor(lo, t->name);
        if (mt) {
            const int is_a = strstr(t->name, ".lora_A.") != NULL;
            if (t->ndim != 2)
                rc = rlhf_errorf(err, RLHF_ERR_SHAPE, "%s: tensor %s has %d dimensions, expected 2", wpath, t->name, t->ndim);
            else if ((is_a ? t->shape[0] : t->shape[1]) != lo->rank)
                rc = rlhf_errorf(err, RLHF_ERR_SHAPE, "%s: tensor %s has rank %lld but %s says r = %d", wpath, t->name,
                                 (long long)(is_a ? t->shape[0] : t->shape[1]), LORA_CONFIG, lo->rank);
            else if (t->shape[0] != mt->shape[0] || t->shape[1] != mt->shape[1])
                rc = rlhf_errorf(err, RLHF_ERR_SHAPE,
                                 "%s: tensor %s is (%lld, %lld) but the base model's layer needs (%lld, %lld)", wpath,
                                 t->name, (long long)t->shape[0], (long long)t->shape[1], (long long)mt->shape[0],
                                 (long long)mt->shape[1]);
            if (rc) goto fail;
            if ((rc = safetensors_read_f32(sf, t, lo->params + mt->offset, mt->numel, err))) goto fail;
            if (kernel_find_nonfinite(lo->params + mt->offset, mt->numel) >= 0) {
                rc = rlhf_errorf(err, RLHF_ERR_NUMERIC, "%s: tensor %s has a non-finite value", wpath, t->name);
                goto fail;
            }
            seen[mt - lo->tensors] = 1;
            continue;
        }
        int ex = -1;
        if (strncmp(t->name, LORA_PREFIX, strlen(LORA_PREFIX)) == 0)
            for (int j = 0; j < n_extras && ex < 0; j++)
                if (strcmp(t->name + strlen(LORA_PREFIX), extras[j].name) == 0) ex = j;
        if (ex >= 0) {
            const lora_extra *x = &extras[ex];
            size_t numel = (size_t)x->shape[0] * (size_t)(x->ndim == 2 ? x->shape[1] : 1);
            if (t->ndim != x->ndim || t->shape[0] != x->shape[0] || (x->ndim == 2 && t->shape[1] != x->shape[1])) {
                rc = rlhf_errorf(err, RLHF_ERR_SHAPE, "%s: tensor %s does not have the expected shape (%lld%s%lld)", wpath,
                                 t->name, (long long)x->shape[0], x->ndim == 2 ? ", " : "",
                                 x->ndim == 2 ? (long long)x->shape[1] : 0LL);
                goto fail;
            }
            if ((rc = safetensors_read_f32(sf, t, x->data, numel, err))) goto fail;
            n_found++;
            continue;
        }
        if (strstr(t->name, ".lora_A.") || strstr(t->name, ".lora_B."))
            rc = rlhf_errorf(err, RLHF_ERR_SHAPE,
                             "%s: tensor %s is not an adapter of this %s model under target_modules [%s] (unknown "
                             "module or layer)",
                             wpath, t->name, model_family_name(lo->family), lo->target_modules);
        else
            rc = rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "%s: unexpected tensor %s (not a LoRA weight)", wpath, t->name);
        goto fail;
    }
    for (int i = 0; i < lo->n_tensors; i++)
        if (!seen[i]) {
            rc = rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "%s: tensor %s is missing (target_modules [%s] in %s)", wpath,
                             lo->tensors[i].name, lo->target_modules, LORA_CONFIG);
            goto fail;
        }
    rng_seed(&lo->rng, 0x10a4);
    lo->training = 0;
    if (found) *found = n_found;
    goto done;
fail:
    lora_free(lo);
done:
    safetensors_close(&sf);
    free(seen);
    free(cpath);
    free(wpath);
    free(text);
    free(targets);
    return rc;
}
