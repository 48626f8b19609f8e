/* dpo_run.c — `rlhf dpo`'s run: pairs to rows, the cached reference pass, pair batches, the
 * loop with the DPO head, checkpoints and exact resume (see dpo.h). */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/fileio.h"
#include "src/core/rng.h"
#include "src/formats/model_load.h"
#include "src/train/dpo.h"

void dpo_run_params_defaults(dpo_run_params *p) {
    memset(p, 0, sizeof *p);
    dpo_params_defaults(&p->dpo);
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

/* ---- pairs as SFT texts: prompt + chosen, prompt + rejected ---- */

/* The prompt's messages plus the reply as the last assistant turn; *n_context = the prompt's
 * messages (context only: an earlier assistant turn of the prompt is not part of the reply). */
static char *messages_with_reply(const char *prompt_messages, const char *reply, int *n_context) {
    cJSON *arr = cJSON_Parse(prompt_messages);
    if (!cJSON_IsArray(arr)) {
        cJSON_Delete(arr);
        return NULL;
    }
    *n_context = cJSON_GetArraySize(arr);
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "assistant");
    cJSON_AddStringToObject(m, "content", reply);
    cJSON_AddItemToArray(arr, m);
    char *s = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    return s;
}

static int texts_from_pairs(sft_texts *t, const pref_dataset *d, rlhf_error *err) {
    memset(t, 0, sizeof *t);
    t->items = calloc(2 * d->n, sizeof *t->items);
    if (!t->items) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the pairs");
    t->cap = 2 * d->n;
    for (size_t i = 0; i < d->n; i++)
        for (int side = 0; side < 2; side++) {
            const pref_pair *pp = &d->pairs[i];
            sft_text *x = &t->items[t->n++];
            const char *reply = side ? pp->rejected : pp->chosen;
            if (pp->prompt_messages) {
                x->messages_json = messages_with_reply(pp->prompt_messages, reply, &x->n_context);
                if (!x->messages_json) return rlhf_errorf(err, RLHF_ERR_INVALID, "pair %zu: bad prompt messages", i + 1);
            } else {
                x->prompt = strdup(pp->prompt);
                x->completion = strdup(reply);
                if (!x->prompt || !x->completion) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the pairs");
            }
            x->line = (long)i + 1; /* both sides name their pair; encoding keeps the order */
            x->id = pp->id;
        }
    return RLHF_OK;
}

/* ---- the data source ---- */

typedef struct {
    const sft_encoded *e;
    const size_t *pair_row;  /* (n_pairs) index of the chosen row in e (rejected is next) */
    const double *ref;       /* (e->n) reference log-probability of each row */
    size_t *train, n_train, *val, n_val;
    size_t *perm;            /* (n_train) the permutation of perm_epoch */
    long perm_epoch;
    int batch, accum;
    int32_t pad;
    uint64_t seed;
} pair_source;

static size_t pair_at(pair_source *s, uint64_t c) {
    long epoch = (long)(c / s->n_train);
    if (epoch != s->perm_epoch) {
        rng_t r;
        rng_seed(&r, s->seed * 0x9e3779b97f4a7c15ull + (uint64_t)epoch + 1);
        for (size_t i = 0; i < s->n_train; i++) s->perm[i] = s->train[i];
        for (size_t i = s->n_train; i > 1; i--) {
            size_t j = (size_t)rng_below(&r, i);
            size_t tmp = s->perm[i - 1];
            s->perm[i - 1] = s->perm[j];
            s->perm[j] = tmp;
        }
        s->perm_epoch = epoch;
    }
    return s->perm[c % s->n_train];
}

/* Rows of pairs idx[0..n) into b, padded to the longest (positions = ids - 1). */
static void fill_pairs(const pair_source *s, const size_t *idx, int n, train_batch *b) {
    int T = 1;
    for (int k = 0; k < n; k++)
        for (int side = 0; side < 2; side++) {
            int len = s->e->len[s->pair_row[idx[k]] + (size_t)side] - 1;
            if (len > T) T = len;
        }
    b->B = 2 * n;
    b->T = T;
    for (int k = 0; k < n; k++)
        for (int side = 0; side < 2; side++) {
            const size_t ex = s->pair_row[idx[k]] + (size_t)side, row = 2 * (size_t)k + (size_t)side;
            const int32_t *ids = s->e->ids + s->e->start[ex];
            const uint8_t *loss = s->e->loss + s->e->start[ex];
            const int len = s->e->len[ex];
            for (int t = 0; t < T; t++) {
                b->tokens[row * T + t] = t < len - 1 ? ids[t] : s->pad;
                b->targets[row * T + t] = t < len - 1 && loss[t + 1] ? ids[t + 1] : -1;
            }
            b->labels[row] = (float)s->ref[ex];
            b->lengths[row] = len - 1;
        }
}

static int fill_train(void *ctx, long step, int micro, rng_t *rng, train_batch *b, rlhf_error *err) {
    (void)rng;
    (void)err;
    pair_source *s = ctx;
    size_t idx[1024];
    uint64_t c0 = ((uint64_t)step * (uint64_t)s->accum + (uint64_t)micro) * (uint64_t)s->batch;
    for (int k = 0; k < s->batch; k++) idx[k] = pair_at(s, c0 + (uint64_t)k);
    fill_pairs(s, idx, s->batch, b);
    return RLHF_OK;
}

static int fill_val(void *ctx, int i, train_batch *b, rlhf_error *err) {
    (void)err;
    pair_source *s = ctx;
    size_t from = (size_t)i * (size_t)s->batch;
    int n = (int)(s->n_val - from < (size_t)s->batch ? s->n_val - from : (size_t)s->batch);
    fill_pairs(s, s->val + from, n, b);
    return RLHF_OK;
}

/* ---- the reference: fingerprint, pass, caches ---- */

void dpo_ref_fingerprint(const model *m, char out[33]) {
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

/* Reference log-probabilities of the rows of pairs idx[0..n), batch by batch, into out (by row). */
static int ref_pass(model *m, const pair_source *s, const size_t *idx, size_t n_pairs, int rows_cap, int T,
                    double *out, rlhf_error *err) {
    model_acts a = {0};
    train_batch b = {0};
    double *lp = malloc((size_t)rows_cap * sizeof *lp);
    int rc = model_acts_init(&a, &m->config, rows_cap, T, err);
    if (!rc) rc = train_batch_alloc(&b, rows_cap, T, err);
    if (!rc && !lp) rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the reference pass");
    for (size_t i = 0; !rc && i < n_pairs; i += (size_t)(rows_cap / 2)) {
        int n = (int)(n_pairs - i < (size_t)(rows_cap / 2) ? n_pairs - i : (size_t)(rows_cap / 2));
        fill_pairs(s, idx + i, n, &b);
        rc = dpo_row_logps(m, &a, &b, lp, err);
        for (int k = 0; !rc && k < n; k++) {
            out[s->pair_row[idx[i + (size_t)k]]] = lp[2 * k];
            out[s->pair_row[idx[i + (size_t)k]] + 1] = lp[2 * k + 1];
        }
    }
    free(lp);
    train_batch_free(&b);
    model_acts_free(&a);
    return rc;
}

#define REF_CACHE_MAGIC 0x52454631u /* "REF1" */

static int ref_file_read(const char *path, uint64_t key, size_t n, double *out) {
    char *buf = NULL;
    size_t len = 0;
    rlhf_error e = {0};
    if (!file_exists(path) || file_read_all(path, &buf, &len, &e)) return 0;
    uint32_t magic;
    uint64_t k, cnt;
    int ok = len == 20 + n * sizeof(double);
    if (ok) {
        memcpy(&magic, buf, 4);
        memcpy(&k, buf + 4, 8);
        memcpy(&cnt, buf + 12, 8);
        ok = magic == REF_CACHE_MAGIC && k == key && cnt == n;
    }
    if (ok) memcpy(out, buf + 20, n * sizeof(double));
    free(buf);
    return ok;
}

static int ref_file_write(const char *path, uint64_t key, size_t n, const double *v, rlhf_error *err) {
    size_t len = 20 + n * sizeof(double);
    char *buf = malloc(len);
    if (!buf) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    uint32_t magic = REF_CACHE_MAGIC;
    uint64_t cnt = n;
    memcpy(buf, &magic, 4);
    memcpy(buf + 4, &key, 8);
    memcpy(buf + 12, &cnt, 8);
    memcpy(buf + 20, v, n * sizeof(double));
    int rc = file_write_atomic(path, buf, len, err);
    free(buf);
    return rc;
}

/* Fills ref_lp (by row) from the cache, computing only the pairs it lacks (a pair is computed
 * whole when either side is missing, so its rows share a batch as in training), and stores what
 * was computed. */
static int reference_logps(const dpo_run_params *p, model *refm, const pair_source *s, int T, const char *fp,
                           double *ref_lp, dpo_summary *sum, rlhf_error *err) {
    const sft_encoded *e = s->e;
    const size_t n_pairs = s->n_train + s->n_val;
    dpo_ref_row *rows = calloc(e->n ? e->n : 1, sizeof *rows);
    size_t *missing = malloc((n_pairs ? n_pairs : 1) * sizeof *missing);
    char *path = NULL;
    int rc = RLHF_OK;
    if (!rows || !missing) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the reference cache");
        goto done;
    }
    for (size_t i = 0; i < e->n; i++)
        rows[i] = (dpo_ref_row){e->ids + e->start[i], e->loss + e->start[i], e->len[i], 0, 0};
    uint64_t file_key = 0;
    if (p->ref_cache) {
        rc = p->ref_cache->get(p->ref_cache->ctx, fp, rows, e->n, err);
        if (rc) goto done;
    } else {
        size_t n = strlen(p->out_dir) + sizeof DPO_REF_CACHE_FILE + 2;
        path = malloc(n);
        if (!path) {
            rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
            goto done;
        }
        snprintf(path, n, "%s/%s", p->out_dir, DPO_REF_CACHE_FILE);
        uint64_t dh = sft_encoded_hash(e);
        file_key = train_hash(fp, strlen(fp)) ^ (dh * 0x9e3779b97f4a7c15ull);
        if (ref_file_read(path, file_key, e->n, ref_lp))
            for (size_t i = 0; i < e->n; i++) rows[i].found = 1, rows[i].logp = ref_lp[i];
    }
    size_t n_missing = 0;
    for (size_t k = 0; k < n_pairs; k++)
        if (!rows[s->pair_row[k]].found || !rows[s->pair_row[k] + 1].found) missing[n_missing++] = k;
    for (size_t i = 0; i < e->n; i++) ref_lp[i] = rows[i].logp;
    sum->ref_computed = 2 * n_missing;
    sum->ref_cached = 2 * (n_pairs - n_missing);
    if (n_missing == 0) goto done;
    rc = ref_pass(refm, s, missing, n_missing, 2 * (p->train.batch < 1 ? 1 : p->train.batch), T, ref_lp, err);
    if (rc) goto done;
    if (p->ref_cache) {
        size_t n_put = 0;
        for (size_t k = 0; k < n_missing; k++)
            for (size_t side = 0; side < 2; side++) {
                size_t r = s->pair_row[missing[k]] + side;
                rows[n_put] = (dpo_ref_row){e->ids + e->start[r], e->loss + e->start[r], e->len[r], ref_lp[r], 0};
                n_put++;
            }
        rc = p->ref_cache->put(p->ref_cache->ctx, fp, rows, n_put, err);
    } else {
        if (!(rc = file_mkdir_p(p->out_dir, err))) rc = ref_file_write(path, file_key, e->n, ref_lp, err);
    }
done:
    free(rows);
    free(missing);
    free(path);
    return rc;
}

/* The reference model of --ref: a causal LM reading the same token ids as the policy. */
static int load_ref(model_bundle *r, const char *dir, const model_bundle *policy, rlhf_error *err) {
    int rc = model_bundle_load(r, dir, err);
    if (rc) return rc;
    if (r->m.config.num_labels > 0)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "%s: the reference is a sequence classifier, not a language model", dir);
    if (r->m.config.vocab_size != policy->m.config.vocab_size)
        return rlhf_errorf(err, RLHF_ERR_SHAPE,
                           "%s: the reference's vocabulary (%d ids) is not the policy's (%d): DPO compares "
                           "log-probabilities of the same token ids, so both need the same tokenizer",
                           dir, r->m.config.vocab_size, policy->m.config.vocab_size);
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

/* ---- the run's configuration (saved in the training state; resume reads it back) ---- */

enum { F_INT, F_LONG, F_FLOAT, F_DOUBLE };
typedef struct {
    const char *name;
    int kind;
    size_t off;
} run_field;
#define RUN_FIELD(name, kind, member) {name, kind, offsetof(dpo_run_params, member)}
static const run_field k_run_fields[] = {
    RUN_FIELD("beta", F_FLOAT, dpo.beta),
    RUN_FIELD("label_smoothing", F_FLOAT, dpo.label_smoothing),
    RUN_FIELD("rpo_alpha", F_FLOAT, dpo.rpo_alpha),
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

static double field_get(const dpo_run_params *p, const run_field *f) {
    const char *at = (const char *)p + f->off;
    switch (f->kind) {
    case F_INT: return *(const int *)(const void *)at;
    case F_LONG: return (double)*(const long *)(const void *)at;
    case F_FLOAT: return *(const float *)(const void *)at; /* exact as a double: reads back the same float */
    default: return *(const double *)(const void *)at;
    }
}

static void field_set(dpo_run_params *p, const run_field *f, double v) {
    char *at = (char *)p + f->off;
    switch (f->kind) {
    case F_INT: *(int *)(void *)at = (int)v; break;
    case F_LONG: *(long *)(void *)at = (long)v; break;
    case F_FLOAT: *(float *)(void *)at = (float)v; break;
    default: *(double *)(void *)at = v; break;
    }
}

static void add_str(cJSON *o, const char *name, const char *v) { cJSON_AddStringToObject(o, name, v ? v : ""); }

static char *run_to_json(const dpo_run_params *p, const char *fp, const rng_t *lora_rng) {
    cJSON *r = cJSON_CreateObject();
    if (!r) return NULL;
    add_str(r, "model", p->model_dir);
    add_str(r, "ref", p->ref_dir);
    add_str(r, "data", p->data_desc);
    add_str(r, "format", p->data_format);
    add_str(r, "ref_fingerprint", fp);
    add_str(r, "loss_type", dpo_loss_type_name(p->dpo.loss_type));
    add_str(r, "truncate", sft_truncate_name(p->truncate));
    add_str(r, "lora_targets", p->lora.targets);
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, p->seed);
    add_str(r, "seed", buf);
    for (size_t i = 0; i < sizeof k_run_fields / sizeof *k_run_fields; i++)
        cJSON_AddNumberToObject(r, k_run_fields[i].name, field_get(p, &k_run_fields[i]));
    cJSON *a = cJSON_AddArrayToObject(r, "lora_rng");
    for (int i = 0; a && lora_rng && i < 4; i++) {
        snprintf(buf, sizeof buf, "%016" PRIx64, lora_rng->s[i]);
        cJSON_AddItemToArray(a, cJSON_CreateString(buf));
    }
    char *s = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return s;
}

/* The saved settings into p (strings point into r, which the caller keeps). The caller's steps
 * (> 0), eval_every and save_every (>= 0) win over the saved ones. */
static int run_from_json(dpo_run_params *p, const cJSON *r, const char *path, char fp[33], rng_t *lora_rng,
                         int *have_lora_rng, rlhf_error *err) {
    const long steps = p->steps, eval_every = p->eval_every, save_every = p->save_every;
    for (size_t i = 0; i < sizeof k_run_fields / sizeof *k_run_fields; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, k_run_fields[i].name);
        if (!cJSON_IsNumber(v))
            return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: the saved run has no number \"%s\"", path, k_run_fields[i].name);
        field_set(p, &k_run_fields[i], v->valuedouble);
    }
    const char *names[] = {"model", "ref", "data", "format", "ref_fingerprint", "loss_type", "truncate", "lora_targets", "seed"};
    const char *v[9];
    for (int i = 0; i < 9; i++)
        if (!(v[i] = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, names[i]))))
            return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: the saved run has no string \"%s\"", path, names[i]);
    p->model_dir = v[0];
    p->ref_dir = *v[1] ? v[1] : NULL;
    p->data_desc = v[2];
    p->data_format = *v[3] ? v[3] : NULL;
    snprintf(fp, 33, "%s", v[4]);
    int rc = dpo_loss_type_parse(v[5], &p->dpo.loss_type, err);
    if (rc) return rc;
    if (sft_truncate_parse(v[6]) < 0) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: bad saved truncate \"%s\"", path, v[6]);
    p->truncate = (sft_truncate)sft_truncate_parse(v[6]);
    p->lora.targets = *v[7] ? v[7] : NULL;
    p->seed = strtoull(v[8], NULL, 10);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(r, "lora_rng");
    *have_lora_rng = cJSON_GetArraySize(a) == 4;
    for (int i = 0; *have_lora_rng && i < 4; i++) {
        const char *h = cJSON_GetStringValue(cJSON_GetArrayItem(a, i));
        if (!h) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: the saved LoRA rng is malformed", path);
        lora_rng->s[i] = strtoull(h, NULL, 16);
    }
    if (steps > 0) p->steps = steps;
    if (eval_every >= 0) p->eval_every = eval_every;
    if (save_every >= 0) p->save_every = save_every;
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

int dpo_saved_run(const char *out_dir, char **run_json, rlhf_error *err) {
    *run_json = NULL;
    char *path = path_in(out_dir, DPO_STATE_FILE);
    if (!path) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    train_state_info info = {0};
    int rc = read_state(path, &info, err);
    if (!rc) *run_json = info.run_json;
    free(path);
    return rc;
}

/* ---- checkpoints ---- */

typedef struct {
    const dpo_run_params *p;
    model_bundle *b;
    lora *lo;
    train *t;
    const char *state_path, *fp;
    uint64_t data_hash;
} saver;

static int save_checkpoint(void *ctx, long step, const rng_t *rng, rlhf_error *err) {
    saver *s = ctx;
    train_state_info info = {step, *rng, s->data_hash, 0, run_to_json(s->p, s->fp, s->lo ? &s->lo->rng : NULL)};
    if (!info.run_json) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory saving the run");
    int rc = sft_checkpoint_save(s->p->out_dir, s->p->model_dir, s->b, s->lo, s->t, s->state_path, &info, err);
    free(info.run_json);
    return rc;
}

/* ---- the run ---- */

int dpo_run(const dpo_run_params *pin, dpo_summary *sum, rlhf_error *err) {
    dpo_run_params p = *pin;
    dpo_summary local;
    if (!sum) sum = &local;
    memset(sum, 0, sizeof *sum);
    sum->first_val_loss = sum->final_val_loss = sum->final_loss = NAN;
    model_bundle b = {0}, ref = {0};
    lora lo = {0};
    train t = {0};
    dpo_head h = {0};
    sft_texts texts = {0};
    sft_encoded enc = {0};
    pair_source src = {0};
    train_state_info info = {0};
    cJSON *saved = NULL;
    size_t *pair_row = NULL;
    double *ref_lp = NULL;
    char *state_path = NULL, saved_fp[33] = "";
    rng_t lora_rng;
    int have_lora_rng = 0, rc;
    if (!p.out_dir || !*p.out_dir) return rlhf_errorf(err, RLHF_ERR_INVALID, "no output directory given (--out)");
    if (!p.pairs || p.pairs->n == 0) return rlhf_errorf(err, RLHF_ERR_INVALID, "no preference pairs to train on");
    state_path = path_in(p.out_dir, DPO_STATE_FILE);
    if (!state_path) goto nomem;
    if (p.resume) {
        if ((rc = read_state(state_path, &info, err))) goto done;
        if (!(saved = cJSON_Parse(info.run_json))) {
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: the saved run is not valid JSON", state_path);
            goto done;
        }
        if ((rc = run_from_json(&p, saved, state_path, saved_fp, &lora_rng, &have_lora_rng, err))) goto done;
    } else if (file_exists(state_path)) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID,
                         "%s already holds a training run (%s); pass --resume to continue it or choose another --out",
                         p.out_dir, DPO_STATE_FILE);
        goto done;
    }
    if ((rc = dpo_params_validate(&p.dpo, err))) goto done;
    sum->dpo = p.dpo;
    if (p.train.batch < 1 || p.train.batch > 512) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "--batch must be 1..512 pairs (got %d)", p.train.batch);
        goto done;
    }

    /* the starting policy, also on resume: it is the reference (or its base), and the trained
     * numbers come from the training state */
    if ((rc = model_bundle_load(&b, p.model_dir, err))) goto done;
    if (!b.tok) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "%s: the model has no tokenizer (DPO reads text)", p.model_dir);
        goto done;
    }
    if (tok_vocab_size(b.tok) > b.m.config.vocab_size) {
        rc = rlhf_errorf(err, RLHF_ERR_SHAPE, "%s: the tokenizer has %d ids but the model's vocabulary is %d", p.model_dir,
                         tok_vocab_size(b.tok), b.m.config.vocab_size);
        goto done;
    }
    int32_t eos = tok_eos_id(b.tok);
    if (eos < 0 && b.defaults.n_eos > 0) eos = b.defaults.eos_ids[0];
    if (eos < 0) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "%s: the tokenizer has no EOS token (replies end with EOS)", p.model_dir);
        goto done;
    }
    if (p.max_length <= 0 || p.max_length > b.m.config.context) p.max_length = b.m.config.context;
    if (p.lora.rank > 0 && !p.lora.targets)
        p.lora.targets = b.m.config.family == MODEL_FAMILY_GPT2 ? "c_attn" : "q_proj,v_proj";

    /* ---- rows ---- */
    if ((rc = texts_from_pairs(&texts, p.pairs, err))) goto done;
    sft_encoder ec = {b.tok, b.chat_template, b.bos_token, b.eos_token, b.add_bos, eos, p.max_length, p.truncate};
    if ((rc = sft_encode(&enc, &texts, &ec, p.data_desc ? p.data_desc : "pairs", err))) goto done;
    const uint64_t data_hash = sft_encoded_hash(&enc);
    if (p.resume && data_hash != info.data_hash) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID,
                         "%s: these pairs (as encoded) are not what the run in %s was trained on; resume with the same data",
                         p.data_desc ? p.data_desc : "pairs", p.out_dir);
        goto done;
    }
    pair_row = malloc((enc.n + 1) * sizeof *pair_row);
    if (!pair_row) goto nomem;
    size_t n_pairs = 0;
    for (size_t k = 0; k + 1 < enc.n;) {
        if (enc.line[k] == enc.line[k + 1]) {
            pair_row[n_pairs++] = k;
            k += 2;
        } else {
            k++;
        }
    }
    sum->n_pairs = n_pairs;
    sum->n_dropped = p.pairs->n - n_pairs;
    if (n_pairs == 0) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "no pair keeps both replies within %d tokens (%zu dropped)", p.max_length,
                         sum->n_dropped);
        goto done;
    }
    /* split: a seeded shuffle, the last val_fraction held out */
    size_t *order = malloc(n_pairs * sizeof *order);
    if (!order) goto nomem;
    for (size_t i = 0; i < n_pairs; i++) order[i] = i;
    rng_t r;
    rng_seed(&r, p.seed);
    for (size_t i = n_pairs; i > 1; i--) {
        size_t j = (size_t)rng_below(&r, i), tmp = order[i - 1];
        order[i - 1] = order[j];
        order[j] = tmp;
    }
    size_t n_val = (size_t)llround((double)n_pairs * p.val_fraction);
    if (p.val_fraction > 0 && n_val == 0 && n_pairs >= 2) n_val = 1;
    if (n_val >= n_pairs) n_val = n_pairs - 1;
    src.e = &enc;
    src.pair_row = pair_row;
    src.train = order;
    src.n_train = n_pairs - n_val;
    src.val = order + src.n_train;
    src.n_val = n_val;
    src.perm = malloc(src.n_train * sizeof *src.perm);
    src.perm_epoch = -1;
    src.batch = p.train.batch;
    src.accum = p.train.accum < 1 ? 1 : p.train.accum;
    src.pad = tok_pad_id(b.tok) >= 0 ? tok_pad_id(b.tok) : eos;
    src.seed = p.seed;
    if (!src.perm) goto nomem;
    sum->n_train = src.n_train;
    sum->n_val = src.n_val;
    int longest = 2;
    for (size_t i = 0; i < enc.n; i++)
        if (enc.len[i] > longest) longest = enc.len[i];
    const int T = longest - 1;

    /* ---- the reference pass (cached) ---- */
    ref_lp = calloc(enc.n, sizeof *ref_lp);
    if (!ref_lp) goto nomem;
    src.ref = ref_lp;
    model *refm = &b.m;
    if (p.ref_dir) {
        if ((rc = load_ref(&ref, p.ref_dir, &b, err))) goto done;
        refm = &ref.m;
    }
    dpo_ref_fingerprint(refm, sum->ref_fingerprint);
    if (p.resume && strcmp(saved_fp, sum->ref_fingerprint) != 0) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID,
                         "%s: the reference model's weights are not those the run in %s started with (fingerprint %s, "
                         "saved %s); resuming would change the objective",
                         p.ref_dir ? p.ref_dir : p.model_dir, p.out_dir, sum->ref_fingerprint, saved_fp);
        goto done;
    }
    if ((rc = reference_logps(&p, refm, &src, T, sum->ref_fingerprint, ref_lp, sum, err))) goto done;
    model_bundle_free(&ref); /* never two models while training */

    /* ---- the trainer ---- */
    if (p.steps <= 0) {
        long per = (long)p.train.batch * src.accum;
        long per_epoch = ((long)src.n_train + per - 1) / per;
        p.steps = (per_epoch < 1 ? 1 : per_epoch) * (p.epochs < 1 ? 1 : p.epochs);
    }
    if (p.eval_every < 0) p.eval_every = 100;
    if (p.save_every < 0) p.save_every = 500;
    sum->total_steps = p.steps;
    train_params tp = p.train; /* p.train keeps pairs per micro-batch (saved); tp counts rows */
    tp.batch = 2 * p.train.batch;
    tp.accum = src.accum;
    tp.context = T;
    tp.optim.total_steps = p.steps;
    if ((rc = optim_params_validate(&tp.optim, err))) goto done;
    if (p.lora.rank > 0) {
        rng_t init;
        rng_seed(&init, p.seed);
        if ((rc = lora_init(&lo, &b.m, &p.lora, &init, err))) goto done;
        if (have_lora_rng) lo.rng = lora_rng;
        lora_attach(&lo, &b.m);
        rc = train_init_lora(&t, &b.m, &lo, &tp, err);
    } else {
        rc = train_init(&t, &b.m, &tp, err);
    }
    if (rc) goto done;
    if ((rc = dpo_head_init(&h, &p.dpo, tp.batch, T, err))) goto done;
    long step = 0;
    rng_t loop_rng;
    rng_seed(&loop_rng, p.seed);
    if (p.resume) {
        train_state_info full = {0};
        if ((rc = train_state_load(state_path, &t, &full, err))) goto done;
        free(full.run_json);
        loop_rng = full.rng;
        step = full.step;
    }
    sum->start_step = sum->steps_done = step;
    if ((rc = file_mkdir_p(p.out_dir, err))) goto done;
    saver sv = {&p, &b, p.lora.rank > 0 ? &lo : NULL, &t, state_path, sum->ref_fingerprint, data_hash};
    train_loop_params lp;
    memset(&lp, 0, sizeof lp);
    lp.t = &t;
    lp.head = dpo_train_head(&h);
    lp.data = (train_data){.fill = fill_train, .fill_val = fill_val,
                           .n_val = (int)((src.n_val + (size_t)src.batch - 1) / (size_t)src.batch), .ctx = &src};
    lp.start_step = step;
    lp.steps = p.steps;
    lp.eval_every = p.eval_every;
    lp.save_every = p.save_every;
    lp.rng = loop_rng;
    lp.save = save_checkpoint;
    lp.save_ctx = &sv;
    lp.stop = p.stop;
    lp.progress = p.progress;
    lp.progress_ctx = p.progress_ctx;
    lp.saved_step = p.resume ? step : -1;
    train_loop_summary ls;
    rc = train_loop_run(&lp, &ls, err);
    sum->steps_done = ls.steps_done;
    sum->first_val_loss = ls.first_val_loss;
    sum->final_val_loss = ls.final_val_loss;
    sum->final_loss = ls.final_loss;
    sum->final_val = ls.final_val;
    sum->tokens_per_s = ls.tokens_per_s;
    sum->elapsed_s = ls.elapsed_s;
    if (rc == RLHF_ERR_INTERRUPTED)
        rc = rlhf_errorf(err, RLHF_ERR_INTERRUPTED, "interrupted at step %ld of %ld; the last checkpoint is in %s",
                         ls.steps_done, p.steps, p.out_dir);
    goto done;
nomem:
    rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory setting up the DPO run");
done:
    free(src.perm);
    free((void *)src.train);
    free(pair_row);
    free(ref_lp);
    free(state_path);
    free(info.run_json);
    cJSON_Delete(saved);
    dpo_head_free(&h);
    train_free(&t);
    if (b.m.lora) lora_detach(&b.m);
    lora_free(&lo);
    model_bundle_free(&ref);
    model_bundle_free(&b);
    sft_encoded_free(&enc);
    sft_texts_free(&texts);
    return rc;
}
