/* pref_run.c — the pieces the offline preference runs share (see pref_run.h). */
#include "src/train/pref_run.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/fileio.h"
#include "src/core/rng.h"
#include "src/train/dpo.h"

void pref_common_params_defaults(pref_common_params *p) {
    memset(p, 0, sizeof *p);
    train_params_defaults(&p->train);
    p->train.batch = 8;
    p->train.accum = 1;
    p->train.optim.lr = 1e-6f;
    p->train.optim.min_lr = 0.0f;
    p->train.optim.warmup_steps = 0;
    p->train.optim.weight_decay = 0.0f;
    p->train.optim.grad_clip = 1.0f;
    p->epochs = 3;
    p->max_length = 1024;
    p->truncate = SFT_TRUNCATE_KEEP_START;
    p->val_fraction = 0.1;
    p->seed = 42;
    p->eval_every = 100;
    p->save_every = 500;
    lora_params_defaults(&p->lora);
    p->lora.rank = 0;
}

/* ---- models ---- */

int pref_policy_load(model_bundle *b, const char *dir, const char *what, int32_t *eos, rlhf_error *err) {
    int rc = model_bundle_load(b, dir, err);
    if (rc) return rc;
    if (!b->tok)
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "%s: the model has no tokenizer (%s reads text)", dir, what);
    else if (tok_vocab_size(b->tok) > b->m.config.vocab_size)
        rc = rlhf_errorf(err, RLHF_ERR_SHAPE, "%s: the tokenizer has %d ids but the model's vocabulary is %d", dir,
                         tok_vocab_size(b->tok), b->m.config.vocab_size);
    if (!rc) {
        *eos = tok_eos_id(b->tok);
        if (*eos < 0 && b->defaults.n_eos > 0) *eos = b->defaults.eos_ids[0];
        if (*eos < 0) rc = rlhf_errorf(err, RLHF_ERR_INVALID, "%s: the tokenizer has no EOS token (replies end with EOS)", dir);
    }
    if (rc) model_bundle_free(b);
    return rc;
}

/* The reference model of --ref: a causal LM reading the same token ids as the policy. */
static int check_ref(const model_bundle *r, const char *dir, const model_bundle *policy, const char *what, rlhf_error *err) {
    if (r->m.config.num_labels > 0)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "%s: the reference is a sequence classifier, not a language model", dir);
    if (r->m.config.vocab_size != policy->m.config.vocab_size)
        return rlhf_errorf(err, RLHF_ERR_SHAPE,
                           "%s: the reference's vocabulary (%d ids) is not the policy's (%d): %s compares "
                           "log-probabilities of the same token ids, so both need the same tokenizer",
                           dir, r->m.config.vocab_size, policy->m.config.vocab_size, what);
    if (!r->tok) return RLHF_OK; /* nothing more to compare: the ids are the policy's */
    int n = tok_vocab_size(policy->tok);
    if (tok_vocab_size(r->tok) != n)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "%s: the reference's tokenizer has %d ids, the policy's %d: not the same tokenizer",
                           dir, tok_vocab_size(r->tok), n);
    for (int32_t id = 0; id < n; id++) {
        const char *a = tok_piece(r->tok, id), *b = tok_piece(policy->tok, id);
        if ((a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0))
            return rlhf_errorf(err, RLHF_ERR_INVALID,
                               "%s: the reference's tokenizer differs from the policy's at id %d (\"%s\" vs \"%s\"): "
                               "not the same tokenizer",
                               dir, id, a ? a : "(none)", b ? b : "(none)");
    }
    return RLHF_OK;
}

int pref_reference(model_bundle *ref, model **out, const char *ref_dir, model_bundle *policy, const char *what,
                   rlhf_error *err) {
    *out = &policy->m;
    if (!ref_dir) return RLHF_OK;
    int rc = model_bundle_load(ref, ref_dir, err);
    if (!rc) rc = check_ref(ref, ref_dir, policy, what, err);
    if (rc) {
        model_bundle_free(ref);
        return rc;
    }
    *out = &ref->m;
    return RLHF_OK;
}

void pref_ref_fingerprint(const model *m, char out[33]) {
    const model_config *c = &m->config;
    /* the fields that change the logits, as fixed-width words (no struct padding hashed) */
    uint64_t cfg[12] = {(uint64_t)c->family,      (uint64_t)c->n_layers,   (uint64_t)c->dim,
                        (uint64_t)c->n_heads,     (uint64_t)c->n_kv_heads, (uint64_t)c->ffn_dim,
                        (uint64_t)c->vocab_size,  (uint64_t)c->context,    (uint64_t)c->tied_embeddings,
                        (uint64_t)c->rope_layout, 0,                       (uint64_t)m->n_floats};
    uint32_t eps, theta;
    memcpy(&eps, &c->norm_eps, 4);
    memcpy(&theta, &c->rope_theta, 4);
    cfg[10] = (uint64_t)eps << 32 | theta;
    /* two independent 64-bit hashes: FNV-1a over words, and a multiply-rotate mix */
    uint64_t h1 = train_hash(cfg, sizeof cfg), h2 = 0x9e3779b97f4a7c15ull;
    h1 ^= train_hash(m->params, m->n_floats * sizeof(float));
    const unsigned char *bytes = (const unsigned char *)m->params;
    const size_t nb = m->n_floats * sizeof(float);
    for (size_t i = 0; i < 12; i++) h2 = ((h2 ^ cfg[i]) * 0xff51afd7ed558ccdull) ^ (h2 >> 29);
    for (size_t i = 0; i + 8 <= nb; i += 8) {
        uint64_t w;
        memcpy(&w, bytes + i, 8);
        h2 = (h2 ^ (w * 0xc4ceb9fe1a85ec53ull));
        h2 = (h2 << 31 | h2 >> 33) * 0x87c37b91114253d5ull;
    }
    for (size_t i = nb & ~(size_t)7; i < nb; i++) h2 = (h2 ^ bytes[i]) * 0x100000001b3ull;
    snprintf(out, 33, "%016" PRIx64 "%016" PRIx64, h1, h2);
}

/* ---- the data ---- */

size_t pref_split(size_t *order, size_t n, double val_fraction, uint64_t seed) {
    rng_t r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) order[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)rng_below(&r, i), tmp = order[i - 1];
        order[i - 1] = order[j];
        order[j] = tmp;
    }
    size_t n_val = (size_t)llround((double)n * val_fraction);
    if (val_fraction > 0 && n_val == 0 && n >= 2) n_val = 1;
    if (n > 0 && n_val >= n) n_val = n - 1;
    return n_val;
}

int pref_order_init(pref_order *o, const size_t *train, size_t n_train, int batch, int accum, uint64_t seed,
                    rlhf_error *err) {
    memset(o, 0, sizeof *o);
    o->train = train;
    o->n_train = n_train;
    o->perm_epoch = -1;
    o->batch = batch;
    o->accum = accum < 1 ? 1 : accum;
    o->seed = seed;
    o->perm = malloc((n_train ? n_train : 1) * sizeof *o->perm);
    return o->perm ? RLHF_OK : rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the data order");
}

void pref_order_free(pref_order *o) {
    free(o->perm);
    o->perm = NULL;
}

static size_t order_at(pref_order *o, uint64_t c) {
    long epoch = (long)(c / o->n_train);
    if (epoch != o->perm_epoch) {
        rng_t r;
        rng_seed(&r, o->seed * 0x9e3779b97f4a7c15ull + (uint64_t)epoch + 1);
        memcpy(o->perm, o->train, o->n_train * sizeof *o->perm);
        for (size_t i = o->n_train; i > 1; i--) {
            size_t j = (size_t)rng_below(&r, i), tmp = o->perm[i - 1];
            o->perm[i - 1] = o->perm[j];
            o->perm[j] = tmp;
        }
        o->perm_epoch = epoch;
    }
    return o->perm[c % o->n_train];
}

void pref_order_batch(pref_order *o, long step, int micro, size_t *idx) {
    const uint64_t c0 = ((uint64_t)step * (uint64_t)o->accum + (uint64_t)micro) * (uint64_t)o->batch;
    for (int k = 0; k < o->batch; k++) idx[k] = order_at(o, c0 + (uint64_t)k);
}

static int source_fill_train(void *ctx, long step, int micro, rng_t *rng, train_batch *b, rlhf_error *err) {
    (void)rng;
    (void)err;
    pref_source *s = ctx;
    size_t idx[1024];
    pref_order_batch(&s->order, step, micro, idx);
    s->fill(s->ctx, idx, s->order.batch, b);
    return RLHF_OK;
}

static int source_fill_val(void *ctx, int i, train_batch *b, rlhf_error *err) {
    (void)err;
    pref_source *s = ctx;
    const size_t from = (size_t)i * (size_t)s->order.batch;
    const int n = (int)(s->n_val - from < (size_t)s->order.batch ? s->n_val - from : (size_t)s->order.batch);
    s->fill(s->ctx, s->val + from, n, b);
    return RLHF_OK;
}

train_data pref_source_data(pref_source *s) {
    const size_t per = (size_t)(s->order.batch < 1 ? 1 : s->order.batch);
    return (train_data){.fill = source_fill_train, .fill_val = source_fill_val, .n_val = (int)((s->n_val + per - 1) / per),
                        .ctx = s};
}

void pref_put_row(train_batch *b, int row, const int32_t *ids, const uint8_t *mask, int len, int32_t pad, float label) {
    const int T = b->T;
    for (int t = 0; t < T; t++) {
        b->tokens[(size_t)row * T + t] = t < len - 1 ? ids[t] : pad;
        b->targets[(size_t)row * T + t] = t < len - 1 && mask[t + 1] ? ids[t + 1] : -1;
    }
    b->labels[row] = label;
    b->lengths[row] = len - 1;
}

/* ---- the reference pass ---- */

/* Log-probabilities of rows[which[0..n)] under m, rows_cap rows a batch, into their logp. */
static int ref_pass(model *m, pref_ref_row *rows, const size_t *which, size_t n, int rows_cap, int32_t pad,
                    rlhf_error *err) {
    int longest = 2;
    for (size_t k = 0; k < n; k++)
        if (rows[which[k]].len > longest) longest = rows[which[k]].len;
    model_acts a = {0};
    train_batch b = {0};
    double *lp = malloc((size_t)rows_cap * sizeof *lp);
    int rc = model_acts_init(&a, &m->config, rows_cap, longest - 1, err);
    if (!rc) rc = train_batch_alloc(&b, rows_cap, longest - 1, err);
    if (!rc && !lp) rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the reference pass");
    for (size_t k0 = 0; !rc && k0 < n; k0 += (size_t)rows_cap) {
        const int nb = (int)(n - k0 < (size_t)rows_cap ? n - k0 : (size_t)rows_cap);
        int T = 1;
        for (int q = 0; q < nb; q++)
            if (rows[which[k0 + (size_t)q]].len - 1 > T) T = rows[which[k0 + (size_t)q]].len - 1;
        b.B = nb;
        b.T = T;
        for (int q = 0; q < nb; q++) {
            const pref_ref_row *r = &rows[which[k0 + (size_t)q]];
            pref_put_row(&b, q, r->ids, r->mask, r->len, pad, 0.0f);
        }
        rc = dpo_row_logps(m, &a, &b, lp, err);
        for (int q = 0; !rc && q < nb; q++) rows[which[k0 + (size_t)q]].logp = lp[q];
    }
    free(lp);
    train_batch_free(&b);
    model_acts_free(&a);
    return rc;
}

/* the cache file: "REF1" (u32), key (u64), count (u64), count doubles; host byte order (the
 * cache belongs to the machine that wrote it) */
#define REF_CACHE_MAGIC 0x52454631u

static int ref_file_read(const char *path, uint64_t key, size_t n, pref_ref_row *rows) {
    char *buf = NULL;
    size_t len = 0;
    rlhf_error e = {0};
    int ok = file_exists(path) && !file_read_all(path, &buf, &len, &e) && len == 20 + n * sizeof(double);
    if (ok) {
        uint32_t magic;
        uint64_t k, cnt;
        memcpy(&magic, buf, 4);
        memcpy(&k, buf + 4, 8);
        memcpy(&cnt, buf + 12, 8);
        ok = magic == REF_CACHE_MAGIC && k == key && cnt == n;
    }
    for (size_t i = 0; ok && i < n; i++) {
        memcpy(&rows[i].logp, buf + 20 + i * sizeof(double), sizeof(double));
        rows[i].found = 1;
    }
    free(buf);
    return ok;
}

static int ref_file_write(const char *out_dir, const char *path, uint64_t key, size_t n, const pref_ref_row *rows,
                          rlhf_error *err) {
    int rc = file_mkdir_p(out_dir, err);
    if (rc) return rc;
    const size_t len = 20 + n * sizeof(double);
    char *buf = malloc(len);
    if (!buf) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the reference cache");
    const uint32_t magic = REF_CACHE_MAGIC;
    const uint64_t cnt = n;
    memcpy(buf, &magic, 4);
    memcpy(buf + 4, &key, 8);
    memcpy(buf + 12, &cnt, 8);
    for (size_t i = 0; i < n; i++) memcpy(buf + 20 + i * sizeof(double), &rows[i].logp, sizeof(double));
    rc = file_write_atomic(path, buf, len, err);
    free(buf);
    return rc;
}

int pref_ref_logps(const pref_common_params *p, model *ref, const char *fp, uint64_t data_hash, pref_ref_row *rows,
                   size_t n, int group, int rows_cap, int32_t pad, pref_ref_counts *counts, rlhf_error *err) {
    counts->cached = counts->computed = 0;
    size_t *missing = malloc((n ? n : 1) * sizeof *missing);
    char *path = NULL;
    int rc = RLHF_OK;
    if (!missing) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the reference cache");
    for (size_t i = 0; i < n; i++) rows[i].found = 0, rows[i].logp = 0;
    const uint64_t file_key = train_hash(fp, strlen(fp)) ^ (data_hash * 0x9e3779b97f4a7c15ull);
    if (p->ref_cache) {
        rc = p->ref_cache->get(p->ref_cache->ctx, fp, rows, n, err);
    } else {
        const size_t len = strlen(p->out_dir) + sizeof PREF_REF_CACHE_FILE + 2;
        if (!(path = malloc(len))) rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
        else snprintf(path, len, "%s/%s", p->out_dir, PREF_REF_CACHE_FILE);
        if (path) ref_file_read(path, file_key, n, rows);
    }
    size_t n_missing = 0;
    for (size_t g = 0; !rc && g < n; g += (size_t)group) {
        int whole = 1;
        for (size_t i = g; i < g + (size_t)group && i < n; i++) whole &= rows[i].found;
        for (size_t i = g; !whole && i < g + (size_t)group && i < n; i++) missing[n_missing++] = i;
    }
    counts->computed = n_missing;
    counts->cached = n - n_missing;
    if (!rc && n_missing > 0) rc = ref_pass(ref, rows, missing, n_missing, rows_cap, pad, err);
    if (!rc && n_missing > 0) {
        if (p->ref_cache) {
            /* only what was computed: rows the cache holds stay as they are */
            pref_ref_row *put = malloc(n_missing * sizeof *put);
            if (!put) rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the reference cache");
            for (size_t k = 0; put && k < n_missing; k++) put[k] = rows[missing[k]];
            if (put) rc = p->ref_cache->put(p->ref_cache->ctx, fp, put, n_missing, err);
            free(put);
        } else {
            rc = ref_file_write(p->out_dir, path, file_key, n, rows, err);
        }
    }
    free(missing);
    free(path);
    return rc;
}

/* ---- the run's configuration (saved in the training state; resume reads it back) ---- */

enum { F_INT, F_LONG, F_FLOAT, F_DOUBLE };
typedef struct {
    const char *name;
    int kind;
    size_t off;
} run_field;
#define RUN_FIELD(name, kind, member) {name, kind, offsetof(pref_common_params, member)}
static const run_field k_run_fields[] = {
    RUN_FIELD("steps", F_LONG, steps),
    RUN_FIELD("epochs", F_LONG, epochs),
    RUN_FIELD("batch", F_INT, train.batch),
    RUN_FIELD("accum", F_INT, train.accum),
    RUN_FIELD("max_length", F_INT, max_length),
    RUN_FIELD("lr", F_FLOAT, train.optim.lr),
    RUN_FIELD("min_lr", F_FLOAT, train.optim.min_lr),
    RUN_FIELD("warmup", F_LONG, train.optim.warmup_steps),
    RUN_FIELD("beta1", F_FLOAT, train.optim.beta1),
    RUN_FIELD("beta2", F_FLOAT, train.optim.beta2),
    RUN_FIELD("eps", F_FLOAT, train.optim.eps),
    RUN_FIELD("weight_decay", F_FLOAT, train.optim.weight_decay),
    RUN_FIELD("grad_clip", F_FLOAT, train.optim.grad_clip),
    RUN_FIELD("val_fraction", F_DOUBLE, val_fraction),
    RUN_FIELD("eval_every", F_LONG, eval_every),
    RUN_FIELD("save_every", F_LONG, save_every),
    RUN_FIELD("lora_rank", F_INT, lora.rank),
    RUN_FIELD("lora_alpha", F_FLOAT, lora.alpha),
    RUN_FIELD("lora_dropout", F_FLOAT, lora.dropout),
};
#define N_RUN_FIELDS (sizeof k_run_fields / sizeof *k_run_fields)

static double field_get(const pref_common_params *c, const run_field *f) {
    const char *at = (const char *)c + f->off;
    switch (f->kind) {
    case F_INT: return *(const int *)(const void *)at;
    case F_LONG: return (double)*(const long *)(const void *)at;
    case F_FLOAT: return *(const float *)(const void *)at; /* exact as a double: reads back the same float */
    default: return *(const double *)(const void *)at;
    }
}

static void field_set(pref_common_params *c, const run_field *f, double v) {
    char *at = (char *)c + f->off;
    switch (f->kind) {
    case F_INT: *(int *)(void *)at = (int)v; break;
    case F_LONG: *(long *)(void *)at = (long)v; break;
    case F_FLOAT: *(float *)(void *)at = (float)v; break;
    default: *(double *)(void *)at = v; break;
    }
}

static void add_str(cJSON *o, const char *name, const char *v) { cJSON_AddStringToObject(o, name, v ? v : ""); }

static char *run_to_json(const pref_common_params *c, const pref_own *own, const char *fp, const rng_t *lora_rng) {
    cJSON *r = cJSON_CreateObject();
    if (!r) return NULL;
    add_str(r, "model", c->model_dir);
    add_str(r, "ref", c->ref_dir);
    add_str(r, "data", c->data_desc);
    add_str(r, "format", c->data_format);
    add_str(r, "ref_fingerprint", fp);
    add_str(r, "loss_type", *own->loss_type);
    add_str(r, "truncate", sft_truncate_name(c->truncate));
    add_str(r, "lora_targets", c->lora.targets);
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, c->seed);
    add_str(r, "seed", buf);
    for (int i = 0; i < own->n; i++) cJSON_AddNumberToObject(r, own->values[i].name, *own->values[i].value);
    for (size_t i = 0; i < N_RUN_FIELDS; i++) cJSON_AddNumberToObject(r, k_run_fields[i].name, field_get(c, &k_run_fields[i]));
    cJSON *a = cJSON_AddArrayToObject(r, "lora_rng");
    for (int i = 0; a && lora_rng && i < 4; i++) {
        snprintf(buf, sizeof buf, "%016" PRIx64, lora_rng->s[i]);
        cJSON_AddItemToArray(a, cJSON_CreateString(buf));
    }
    char *s = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return s;
}

/* The saved settings into c and own (strings point into r, which st keeps). */
static int run_from_json(pref_state *st, pref_common_params *c, const pref_own *own, const cJSON *r, rlhf_error *err) {
    const char *path = st->path;
    const long steps = c->steps, eval_every = c->eval_every, save_every = c->save_every;
    for (int i = 0; i < own->n; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, own->values[i].name);
        if (!cJSON_IsNumber(v))
            return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: the saved run has no number \"%s\"", path, own->values[i].name);
        *own->values[i].value = (float)v->valuedouble;
    }
    for (size_t i = 0; i < N_RUN_FIELDS; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, k_run_fields[i].name);
        if (!cJSON_IsNumber(v))
            return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: the saved run has no number \"%s\"", path, k_run_fields[i].name);
        field_set(c, &k_run_fields[i], v->valuedouble);
    }
    const char *names[] = {"model", "ref", "data", "format", "ref_fingerprint", "loss_type", "truncate", "lora_targets", "seed"};
    const char *v[9];
    for (int i = 0; i < 9; i++)
        if (!(v[i] = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, names[i]))))
            return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: the saved run has no string \"%s\"", path, names[i]);
    c->model_dir = v[0];
    c->ref_dir = *v[1] ? v[1] : NULL;
    c->data_desc = v[2];
    c->data_format = *v[3] ? v[3] : NULL;
    snprintf(st->fp, sizeof st->fp, "%s", v[4]);
    *own->loss_type = v[5];
    if (sft_truncate_parse(v[6]) < 0) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: bad saved truncate \"%s\"", path, v[6]);
    c->truncate = (sft_truncate)sft_truncate_parse(v[6]);
    c->lora.targets = *v[7] ? v[7] : NULL;
    c->seed = strtoull(v[8], NULL, 10);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(r, "lora_rng");
    st->have_lora_rng = cJSON_GetArraySize(a) == 4;
    for (int i = 0; st->have_lora_rng && i < 4; i++) {
        const char *h = cJSON_GetStringValue(cJSON_GetArrayItem(a, i));
        if (!h) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: the saved LoRA rng is malformed", path);
        st->lora_rng.s[i] = strtoull(h, NULL, 16);
    }
    if (steps > 0) c->steps = steps;
    if (eval_every >= 0) c->eval_every = eval_every;
    if (save_every >= 0) c->save_every = save_every;
    return RLHF_OK;
}

static char *path_in(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", dir, name);
    return s;
}

/* The state file's header (the run's settings, data hash, step), or a message saying there is none. */
static int read_state(const char *path, train_state_info *info, rlhf_error *err) {
    if (!file_exists(path))
        return rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "%s: no training state to resume (run without --resume first)", path);
    return train_state_read_info(path, info, err);
}

int pref_saved_run(const char *out_dir, char **run_json, rlhf_error *err) {
    *run_json = NULL;
    char *path = path_in(out_dir, PREF_STATE_FILE);
    if (!path) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    train_state_info info = {0};
    int rc = read_state(path, &info, err);
    if (!rc) *run_json = info.run_json;
    free(path);
    return rc;
}

int pref_state_open(pref_state *st, pref_common_params *c, const pref_own *own, rlhf_error *err) {
    memset(st, 0, sizeof *st);
    if (!c->out_dir || !*c->out_dir) return rlhf_errorf(err, RLHF_ERR_INVALID, "no output directory given (--out)");
    if (!(st->path = path_in(c->out_dir, PREF_STATE_FILE))) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    if (!c->resume) {
        if (file_exists(st->path))
            return rlhf_errorf(err, RLHF_ERR_INVALID,
                               "%s already holds a training run (%s); pass --resume to continue it or choose another --out",
                               c->out_dir, PREF_STATE_FILE);
        return RLHF_OK;
    }
    int rc = read_state(st->path, &st->info, err);
    if (rc) return rc;
    cJSON *saved = cJSON_Parse(st->info.run_json);
    st->saved = saved;
    if (!saved) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: the saved run is not valid JSON", st->path);
    return run_from_json(st, c, own, saved, err);
}

int pref_state_check(const pref_state *st, const pref_common_params *c, uint64_t data_hash, const char *fp,
                     const char *what, rlhf_error *err) {
    if (!c->resume) return RLHF_OK;
    if (data_hash != st->info.data_hash)
        return rlhf_errorf(err, RLHF_ERR_INVALID,
                           "%s: these %s (as encoded) are not what the run in %s was trained on; resume with the same data",
                           c->data_desc ? c->data_desc : what, what, c->out_dir);
    if (strcmp(fp, st->fp) != 0)
        return rlhf_errorf(err, RLHF_ERR_INVALID,
                           "%s: the reference model's weights are not those the run in %s started with (fingerprint %s, "
                           "saved %s); resuming would change the objective",
                           c->ref_dir ? c->ref_dir : c->model_dir, c->out_dir, fp, st->fp);
    return RLHF_OK;
}

void pref_state_free(pref_state *st) {
    free(st->path);
    free(st->info.run_json);
    cJSON_Delete(st->saved);
    memset(st, 0, sizeof *st);
}

long pref_total_steps(long steps, long epochs, size_t n_train, int batch, int accum) {
    if (steps > 0) return steps;
    const long per_step = (long)batch * (accum < 1 ? 1 : accum);
    const long per_epoch = ((long)n_train + per_step - 1) / per_step;
    return (per_epoch < 1 ? 1 : per_epoch) * (epochs < 1 ? 1 : epochs);
}

/* ---- training ---- */

typedef struct {
    const pref_train_params *p;
    const pref_common_params *c; /* with the LoRA targets the adapter was made with */
    model_bundle *b;
    lora *lo;
    train *t;
} saver;

static int save_checkpoint(void *ctx, long step, const rng_t *rng, rlhf_error *err) {
    saver *s = ctx;
    train_state_info info = {step, *rng, s->p->data_hash, 0, run_to_json(s->c, s->p->own, s->p->fp, s->lo ? &s->lo->rng : NULL)};
    if (!info.run_json) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory saving the run");
    int rc = sft_checkpoint_save(s->c->out_dir, s->c->model_dir, s->b, s->lo, s->t, s->p->state->path, &info, err);
    free(info.run_json);
    return rc;
}

int pref_train_run(const pref_train_params *p, model_bundle *b, train_head head, train_data data, long *start_step,
                   train_loop_summary *ls, rlhf_error *err) {
    memset(ls, 0, sizeof *ls);
    ls->first_val_loss = ls->final_val_loss = ls->final_loss = NAN;
    pref_common_params c = *p->c;
    if (c.lora.rank > 0 && !c.lora.targets)
        c.lora.targets = b->m.config.family == MODEL_FAMILY_GPT2 ? "c_attn" : "q_proj,v_proj";
    const int resume = c.resume;
    train_params tp = p->train;
    tp.optim.total_steps = c.steps;
    lora lo = {0};
    train t = {0};
    int rc = optim_params_validate(&tp.optim, err);
    if (!rc && c.lora.rank > 0) {
        rng_t init;
        rng_seed(&init, c.seed);
        if (!(rc = lora_init(&lo, &b->m, &c.lora, &init, err))) {
            if (resume && p->state->have_lora_rng) lo.rng = p->state->lora_rng;
            lora_attach(&lo, &b->m);
            rc = train_init_lora(&t, &b->m, &lo, &tp, err);
        }
    } else if (!rc) {
        rc = train_init(&t, &b->m, &tp, err);
    }
    train_loop_params lp;
    memset(&lp, 0, sizeof lp);
    rng_seed(&lp.rng, c.seed);
    if (!rc && resume) {
        train_state_info full = {0};
        if (!(rc = train_state_load(p->state->path, &t, &full, err))) {
            lp.rng = full.rng;
            lp.start_step = full.step;
        }
        free(full.run_json);
    }
    *start_step = ls->steps_done = lp.start_step;
    if (!rc) rc = file_mkdir_p(c.out_dir, err);
    if (!rc) {
        saver sv = {p, &c, b, c.lora.rank > 0 ? &lo : NULL, &t};
        lp.t = &t;
        lp.head = head;
        lp.data = data;
        lp.steps = c.steps;
        lp.eval_every = c.eval_every;
        lp.save_every = c.save_every;
        lp.save = save_checkpoint;
        lp.save_ctx = &sv;
        lp.stop = c.stop;
        lp.progress = c.progress;
        lp.progress_ctx = c.progress_ctx;
        lp.saved_step = resume ? lp.start_step : -1;
        rc = train_loop_run(&lp, ls, err);
        if (rc == RLHF_ERR_INTERRUPTED)
            rc = rlhf_errorf(err, RLHF_ERR_INTERRUPTED, "interrupted at step %ld of %ld; the last checkpoint is in %s",
                             ls->steps_done, c.steps, c.out_dir);
    }
    train_free(&t);
    if (b->m.lora) lora_detach(&b->m);
    lora_free(&lo);
    return rc;
}
