/* score_train.c — data, splits, the loop's data source, checkpoints and metrics of score-head
 * training (see score_train.h). The loss and gradients are score_head.c's. */
#include "src/train/score_train.h"

#include <cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/fileio.h"
#include "src/core/rng.h"
#include "src/formats/checkpoint.h"
#include "src/train/score_head.h"

/* ---- data ---- */

void score_data_init(score_data *d, int group) {
    memset(d, 0, sizeof *d);
    d->group = group;
}

void score_data_free(score_data *d) {
    free(d->tokens);
    free(d->start);
    free(d->labels);
    free(d->source);
    int g = d->group;
    memset(d, 0, sizeof *d);
    d->group = g;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *np = realloc(*p, c * elem);
    if (!np) return -1;
    *p = np;
    *cap = c;
    return 0;
}

int score_data_add(score_data *d, const tokenizer *tok, int add_bos, const char *const *texts, const float *labels,
                   size_t source, int max_length, score_truncate policy, int vocab_size, rlhf_error *err) {
    tok_ids ids[2] = {{0}, {0}};
    int rc = RLHF_OK;
    size_t off[2] = {0, 0}, len[2] = {0, 0};
    if (d->group < 1 || d->group > 2) return rlhf_errorf(err, RLHF_ERR_INVALID, "score data: group must be 1 or 2");
    for (int r = 0; r < d->group && !rc; r++) {
        rc = tok_encode(tok, texts[r], strlen(texts[r]), add_bos ? TOK_ENCODE_ADD_BOS : 0, &ids[r], err);
        if (rc) {
            rlhf_error_prefix(err, "record %zu: ", source);
            break;
        }
        if (ids[r].n == 0 || !*texts[r]) {
            rc = rlhf_errorf(err, RLHF_ERR_INVALID, "record %zu: the %s is empty", source,
                             d->group == 2 ? (r ? "rejected text" : "chosen text") : "text");
            break;
        }
        for (size_t i = 0; i < ids[r].n; i++)
            if (ids[r].ids[i] < 0 || ids[r].ids[i] >= vocab_size) {
                rc = rlhf_errorf(err, RLHF_ERR_INVALID,
                                 "record %zu: token id %d is outside the model's vocabulary (%d ids): the tokenizer does "
                                 "not belong to this model",
                                 source, (int)ids[r].ids[i], vocab_size);
                break;
            }
        len[r] = ids[r].n;
        if (len[r] > (size_t)max_length) {
            if (policy == SCORE_TRUNCATE_ERROR) {
                rc = rlhf_errorf(err, RLHF_ERR_INVALID,
                                 "record %zu: %zu tokens, longer than the limit of %d (--max-length, at most the model's context; pass --truncate left to keep the "
                                 "last %d tokens, or --truncate drop to leave such examples out)",
                                 source, len[r], max_length, max_length);
            } else if (policy == SCORE_TRUNCATE_LEFT) {
                off[r] = len[r] - (size_t)max_length;
                len[r] = (size_t)max_length;
            }
        }
    }
    if (rc) goto done;
    if (policy == SCORE_TRUNCATE_DROP)
        for (int r = 0; r < d->group; r++)
            if (len[r] > (size_t)max_length) {
                d->n_dropped++;
                goto done;
            }
    size_t ntok = len[0] + (d->group == 2 ? len[1] : 0);
    if (grow((void **)&d->tokens, &d->cap_tokens, d->n_tokens + ntok, sizeof(int32_t)) ||
        grow((void **)&d->labels, &d->cap_rows, d->n_rows + 2, sizeof(float)) ||
        grow((void **)&d->start, &d->cap_start, d->n_rows + 3, sizeof(size_t)) ||
        grow((void **)&d->source, &d->cap_examples, d->n_examples + 1, sizeof(size_t))) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the encoded data");
        goto done;
    }
    for (int r = 0; r < d->group; r++) {
        d->start[d->n_rows] = d->n_tokens;
        memcpy(d->tokens + d->n_tokens, ids[r].ids + off[r], len[r] * sizeof(int32_t));
        d->n_tokens += len[r];
        d->labels[d->n_rows] = labels[r];
        d->n_rows++;
        d->start[d->n_rows] = d->n_tokens;
        if (off[r]) d->n_truncated++;
        if ((int)len[r] > d->max_len) d->max_len = (int)len[r];
    }
    d->source[d->n_examples++] = source;
done:
    tok_ids_free(&ids[0]);
    tok_ids_free(&ids[1]);
    return rc;
}

uint64_t score_data_hash(const score_data *d) {
    uint64_t h[3] = {train_hash(d->tokens, d->n_tokens * sizeof(int32_t)),
                     d->start ? train_hash(d->start, (d->n_rows + 1) * sizeof(size_t)) : 0,
                     train_hash(d->labels, d->n_rows * sizeof(float))};
    return train_hash(h, sizeof h);
}

int score_split(size_t n, double val_fraction, uint64_t seed, size_t **train, size_t *n_train, size_t **val,
                size_t *n_val, rlhf_error *err) {
    *train = *val = NULL;
    size_t *perm = malloc((n ? n : 1) * sizeof(size_t));
    size_t nv = (size_t)llround((double)n * val_fraction);
    if (val_fraction > 0 && nv == 0 && n >= 2) nv = 1;
    if (nv >= n) nv = n > 0 ? n - 1 : 0;
    size_t *v = malloc((nv ? nv : 1) * sizeof(size_t));
    if (!perm || !v) {
        free(perm);
        free(v);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) perm[i] = i;
    rng_t r;
    rng_seed(&r, seed);
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)rng_below(&r, (uint64_t)i);
        size_t x = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = x;
    }
    memcpy(v, perm + (n - nv), nv * sizeof(size_t));
    *train = perm;
    *n_train = n - nv;
    *val = v;
    *n_val = nv;
    return RLHF_OK;
}

/* ---- the loop's data source ---- */

typedef struct {
    const score_data *d;
    const size_t *train, *val;
    size_t n_train, n_val;
    int E, accum; /* examples per micro-batch, micro-batches per step */
    int32_t pad;
    uint64_t seed;
    size_t *perm;     /* (n_train) permutation of the current epoch */
    long perm_epoch;  /* -1: none yet */
} source;

static void epoch_perm(source *s, long epoch) {
    if (s->perm_epoch == epoch) return;
    rng_t r;
    rng_seed(&r, s->seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(epoch + 1)));
    for (size_t i = 0; i < s->n_train; i++) s->perm[i] = i;
    for (size_t i = s->n_train; i > 1; i--) {
        size_t j = (size_t)rng_below(&r, (uint64_t)i);
        size_t x = s->perm[i - 1];
        s->perm[i - 1] = s->perm[j];
        s->perm[j] = x;
    }
    s->perm_epoch = epoch;
}

/* Rows of examples ex[0..n) into b, padded to their longest row. */
static void fill_rows(const score_data *d, const size_t *ex, int n, int32_t pad, train_batch *b) {
    const int G = d->group;
    int T = 1;
    for (int e = 0; e < n; e++)
        for (int g = 0; g < G; g++) {
            size_t row = ex[e] * (size_t)G + (size_t)g;
            int len = (int)(d->start[row + 1] - d->start[row]);
            if (len > T) T = len;
        }
    b->B = n * G;
    b->T = T;
    for (int e = 0; e < n; e++)
        for (int g = 0; g < G; g++) {
            const size_t row = ex[e] * (size_t)G + (size_t)g;
            const int r = e * G + g, len = (int)(d->start[row + 1] - d->start[row]);
            int32_t *dst = b->tokens + (size_t)r * T;
            memcpy(dst, d->tokens + d->start[row], (size_t)len * sizeof(int32_t));
            for (int k = len; k < T; k++) dst[k] = pad;
            for (int k = 0; k < T; k++) b->targets[(size_t)r * T + k] = -1;
            b->lengths[r] = len;
            b->labels[r] = d->labels[row];
        }
}

static int src_fill(void *ctx, long step, int micro, rng_t *rng, train_batch *b, rlhf_error *err) {
    (void)rng;
    (void)err;
    source *s = ctx;
    size_t ex[4096];
    const size_t base = ((size_t)step * (size_t)s->accum + (size_t)micro) * (size_t)s->E;
    for (int e = 0; e < s->E; e++) {
        const size_t g = base + (size_t)e;
        epoch_perm(s, (long)(g / s->n_train));
        ex[e] = s->train[s->perm[g % s->n_train]];
    }
    fill_rows(s->d, ex, s->E, s->pad, b);
    return RLHF_OK;
}

static int src_fill_val(void *ctx, int i, train_batch *b, rlhf_error *err) {
    (void)err;
    const source *s = ctx;
    size_t first = (size_t)i * (size_t)s->E;
    int n = (int)(s->n_val - first < (size_t)s->E ? s->n_val - first : (size_t)s->E);
    fill_rows(s->d, s->val + first, n, s->pad, b);
    return RLHF_OK;
}

/* ---- checkpoints ---- */

typedef struct {
    const score_train_params *p;
    train *t;
    char *state_path;
    uint64_t data_hash;
    lora *lo; /* NULL: every weight trains */
} saver;

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", dir, name);
    return s;
}

/* SCORE_CLASSIFIER_FILE: what a PEFT adapter does not say about its classifier (transformers'
 * config.json names for them). */
static int save_classifier_config(const model_bundle *b, const char *dir, const char *base, rlhf_error *err) {
    const model_config *c = &b->m.config;
    cJSON *r = cJSON_CreateObject(), *id2 = cJSON_AddObjectToObject(r, "id2label");
    int rc = RLHF_OK;
    char *json = NULL, *path = join(dir, SCORE_CLASSIFIER_FILE);
    if (!r || !id2 || !path) goto nomem;
    cJSON_AddNumberToObject(r, "num_labels", c->num_labels);
    for (int k = 0; k < c->num_labels; k++) {
        char key[16], def[24];
        snprintf(key, sizeof key, "%d", k);
        snprintf(def, sizeof def, "LABEL_%d", k);
        cJSON_AddStringToObject(id2, key, b->labels && b->labels[k] ? b->labels[k] : def);
    }
    cJSON_AddNumberToObject(r, "pad_token_id", c->pad_id);
    cJSON_AddStringToObject(r, "base_model_name_or_path", base ? base : "");
    if (!(json = cJSON_Print(r))) goto nomem;
    if (!(rc = file_mkdir_p(dir, err))) rc = file_write_atomic(path, json, strlen(json), err);
    goto done;
nomem:
    rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
done:
    cJSON_Delete(r);
    free(json);
    free(path);
    return rc;
}

/* The run's configuration plus, with LoRA, the adapter's dropout rng ("lora_rng"), so a resumed
 * run draws the same dropout masks. */
static char *state_json(const char *run_json, const lora *lo) {
    cJSON *r = cJSON_Parse(run_json ? run_json : "{}");
    if (!r) r = cJSON_CreateObject();
    cJSON *a = lo ? cJSON_AddArrayToObject(r, "lora_rng") : NULL;
    for (int i = 0; a && i < 4; i++) {
        char h[20];
        snprintf(h, sizeof h, "%016" PRIx64, lo->rng.s[i]);
        cJSON_AddItemToArray(a, cJSON_CreateString(h));
    }
    char *s = r ? cJSON_PrintUnformatted(r) : NULL;
    cJSON_Delete(r);
    return s;
}

static int read_lora_rng(const char *run_json, rng_t *rng, const char *path, rlhf_error *err) {
    cJSON *r = cJSON_Parse(run_json ? run_json : "");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(r, "lora_rng");
    int ok = cJSON_IsArray(a) && cJSON_GetArraySize(a) == 4;
    for (int i = 0; ok && i < 4; i++) {
        const cJSON *h = cJSON_GetArrayItem(a, i);
        ok = cJSON_IsString(h);
        if (ok) rng->s[i] = strtoull(h->valuestring, NULL, 16);
    }
    cJSON_Delete(r);
    return ok ? RLHF_OK
              : rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: the saved run has no LoRA state (was it trained with --lora-rank?)", path);
}

static int save_checkpoint(void *ctx, long step, const rng_t *rng, rlhf_error *err) {
    saver *s = ctx;
    const model *m = &s->p->bundle->m;
    int rc;
    if (s->lo) {
        lora_save_info li = {s->p->base_model, "SEQ_CLS"};
        lora_extra x = {"score.weight", 2, {m->config.num_labels, m->config.dim}, m->w.score};
        rc = save_classifier_config(s->p->bundle, s->p->out_dir, s->p->base_model, err);
        if (!rc) rc = lora_save(s->lo, s->p->out_dir, &li, &x, 1, err);
    } else {
        rc = model_bundle_save(s->p->bundle, s->p->out_dir, err);
    }
    if (rc) return rc;
    train_state_info info = {0};
    info.step = step;
    info.rng = *rng;
    info.data_hash = s->data_hash;
    info.run_json = state_json(s->p->run_json, s->lo);
    if (!info.run_json) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    rc = train_state_save(s->state_path, s->t, &info, err);
    free(info.run_json);
    return rc;
}

static int32_t pad_of(const model *m) { return m->config.pad_id >= 0 ? m->config.pad_id : 0; }

int score_train_run(const score_train_params *p, train_loop_summary *summary, rlhf_error *err) {
    model *m = &p->bundle->m;
    const score_data *d = p->data;
    train t = {0};
    score_head h = {0};
    source src = {0};
    saver sv = {0};
    unsigned char *frozen = NULL;
    lora lo = {0};
    const int was_frozen = m->frozen, use_lora = p->lora.rank > 0;
    int rc = RLHF_OK;
    if (summary) memset(summary, 0, sizeof *summary);
    if (m->config.num_labels <= 0) return rlhf_errorf(err, RLHF_ERR_INVALID, "the model is not a classifier");
    if (p->task == SCORE_TASK_PAIRS && (m->config.num_labels != 1 || d->group != 2))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "a reward model needs num_labels 1 and pairs");
    if (p->n_train == 0) return rlhf_errorf(err, RLHF_ERR_INVALID, "no training examples");
    if (p->train.batch < 1 || p->train.batch > 4096)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "batch must be in 1..4096 (got %d)", p->train.batch);
    train_params tp = p->train;
    tp.batch = p->train.batch * d->group;
    tp.context = d->max_len;
    tp.optim.total_steps = p->steps;
    size_t slen = strlen(p->out_dir) + sizeof SCORE_STATE_FILE + 2;
    sv.state_path = malloc(slen);
    src.perm = malloc(p->n_train * sizeof(size_t));
    if (!sv.state_path || !src.perm) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
        goto done;
    }
    snprintf(sv.state_path, slen, "%s/%s", p->out_dir, SCORE_STATE_FILE);
    if (use_lora && p->freeze_body) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "LoRA and a frozen body exclude each other (the adapter trains the body)");
        goto done;
    }
    if (use_lora) {
        rng_t init;
        rng_seed(&init, p->seed);
        if ((rc = lora_init(&lo, m, &p->lora, &init, err))) goto done;
        if ((rc = score_lora_attach(m, &lo, err))) goto done;
    }
    if (p->freeze_body) {
        if (!(frozen = malloc((size_t)m->n_tensors))) {
            rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
            goto done;
        }
        for (int i = 0; i < m->n_tensors; i++) frozen[i] = strcmp(m->tensors[i].name, "score.weight") != 0;
        tp.frozen = frozen;
        m->frozen = 1; /* backward computes no body gradient; the head still writes the score's */
    }
    if ((rc = use_lora ? train_init_lora(&t, m, &lo, &tp, err) : train_init(&t, m, &tp, err))) goto done;
    if ((rc = score_head_init(&h, m, tp.batch, tp.context, err))) goto done;
    h.center_coef = p->center_coef;

    train_loop_params lp = {0};
    lp.saved_step = -1;
    rng_seed(&lp.rng, p->seed);
    sv.data_hash = score_data_hash(d);
    if (p->resume) {
        train_state_info info;
        if ((rc = train_state_load(sv.state_path, &t, &info, err))) goto done;
        if (use_lora) rc = read_lora_rng(info.run_json, &lo.rng, sv.state_path, err);
        free(info.run_json);
        if (rc) goto done;
        if (info.data_hash != sv.data_hash) {
            rc = rlhf_errorf(err, RLHF_ERR_INVALID,
                             "%s: the training data differ from the run being resumed (give the same --data/--db and "
                             "--max-length)",
                             sv.state_path);
            goto done;
        }
        lp.start_step = lp.saved_step = info.step;
        lp.rng = info.rng;
    } else if (file_exists(sv.state_path)) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "%s already holds a training run; pass --resume to continue it or choose another --out",
                         p->out_dir);
        goto done;
    }
    src = (source){d, p->train_idx, p->val_idx, p->n_train, p->n_val, p->train.batch, tp.accum, pad_of(m), p->seed,
                   src.perm, -1};
    sv.p = p;
    sv.t = &t;
    sv.lo = use_lora ? &lo : NULL;
    lp.t = &t;
    lp.head = p->task == SCORE_TASK_PAIRS ? score_head_pairs(&h) : score_head_classify(&h);
    lp.data = (train_data){src_fill, src_fill_val, (int)((p->n_val + (size_t)p->train.batch - 1) / (size_t)p->train.batch),
                           &src};
    lp.steps = p->steps;
    lp.eval_every = p->eval_every;
    lp.save_every = p->save_every;
    lp.save = save_checkpoint;
    lp.save_ctx = &sv;
    lp.stop = p->stop;
    lp.progress = p->progress;
    lp.progress_ctx = p->progress_ctx;
    rc = train_loop_run(&lp, summary, err);
done:
    if (m->lora) {
        score_lora_detach(m);
        /* the caller evaluates the model it handed in: make it what the adapter directory loads as */
        if (rc == RLHF_OK || rc == RLHF_ERR_INTERRUPTED) {
            rlhf_error e2 = {0};
            int mrc = lora_merge(&lo, m, &e2);
            if (mrc && rc == RLHF_OK) {
                *err = e2;
                rc = mrc;
            }
        }
    }
    lora_free(&lo);
    m->frozen = was_frozen;
    free(frozen);
    score_head_free(&h);
    train_free(&t);
    free(src.perm);
    free(sv.state_path);
    return rc;
}

/* ---- loading ---- */

static const char *json_str(const cJSON *o, const char *k) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(j) ? j->valuestring : NULL;
}

int score_model_load_adapter(model_bundle *b, const char *dir, const char *base_path, rlhf_error *err) {
    memset(b, 0, sizeof *b);
    char *cpath = join(dir, SCORE_CLASSIFIER_FILE), *apath = join(dir, "adapter_config.json"), *buf = NULL, *abuf = NULL;
    size_t len;
    cJSON *c = NULL, *a = NULL;
    lora lo = {0};
    int rc = cpath && apath ? RLHF_OK : rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    if (!rc && !file_exists(cpath))
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "%s: a LoRA adapter without %s is not a classifier's (rlhf score and "
                         "eval read reward models and classifiers; merge a language model's adapter with rlhf model merge)",
                         dir, SCORE_CLASSIFIER_FILE);
    if (!rc) rc = file_read_all(cpath, &buf, &len, err);
    if (!rc) rc = file_read_all(apath, &abuf, &len, err);
    if (!rc && (!(c = cJSON_Parse(buf)) || !(a = cJSON_Parse(abuf))))
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: not valid JSON", c ? apath : cpath);
    const cJSON *nl = cJSON_GetObjectItemCaseSensitive(c, "num_labels"), *pad = cJSON_GetObjectItemCaseSensitive(c, "pad_token_id");
    const cJSON *id2 = cJSON_GetObjectItemCaseSensitive(c, "id2label");
    const char *base = base_path ? base_path : json_str(a, "base_model_name_or_path");
    if (!rc && (!cJSON_IsNumber(nl) || nl->valuedouble < 1 || nl->valuedouble > 65536 || !cJSON_IsNumber(pad)))
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: needs num_labels (>= 1) and pad_token_id", cpath);
    if (!rc && (!base || !*base))
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: base_model_name_or_path is missing: the base model is unknown", apath);
    const int K = rc ? 0 : (int)nl->valuedouble;
    if (!rc && (rc = model_bundle_load(b, base, err)))
        rlhf_error_prefix(err, "%s: the base model (%s): ", dir, base_path ? "--model" : "base_model_name_or_path");
    if (!rc && b->m.config.num_labels == 0) {
        model cls;
        rng_t r;
        rng_seed(&r, 0);
        if (!(rc = score_model_from_lm(&cls, &b->m, K, (int32_t)pad->valuedouble, 0.0f, &r, err))) {
            model_free(&b->m);
            b->m = cls;
        }
    } else if (!rc && b->m.config.num_labels != K) {
        rc = rlhf_errorf(err, RLHF_ERR_SHAPE, "%s: the base %s has %d labels, the adapter's classifier %d", dir, base,
                         b->m.config.num_labels, K);
    }
    if (!rc) {
        int found = 0;
        lora_extra x = {"score.weight", 2, {K, b->m.config.dim}, b->m.w.score};
        b->m.config.pad_id = (int32_t)pad->valuedouble;
        rc = lora_load(&lo, &b->m, dir, &x, 1, &found, err);
        if (!rc && found != 1)
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: the adapter holds no base_model.model.score.weight (the trained head)", dir);
        if (!rc) rc = lora_merge(&lo, &b->m, err);
    }
    if (!rc) {
        if (b->labels) checkpoint_labels_free(b->labels, K);
        b->labels = calloc((size_t)K, sizeof(char *));
        for (int k = 0; b->labels && k < K; k++) {
            char key[16];
            snprintf(key, sizeof key, "%d", k);
            const char *v = json_str(id2, key);
            char def[24];
            snprintf(def, sizeof def, "LABEL_%d", k);
            b->labels[k] = strdup(v ? v : def);
            if (!b->labels[k]) rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
        }
        if (!b->labels) rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    }
    if (rc) model_bundle_free(b);
    lora_free(&lo);
    cJSON_Delete(c);
    cJSON_Delete(a);
    free(buf);
    free(abuf);
    free(cpath);
    free(apath);
    return rc;
}

int score_model_load(model_bundle *b, const char *path, rlhf_error *err) {
    memset(b, 0, sizeof *b);
    char *ap = join(path, "adapter_config.json");
    if (!ap) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    const int adapter = file_exists(ap);
    free(ap);
    return adapter ? score_model_load_adapter(b, path, NULL, err) : model_bundle_load(b, path, err);
}

int score_predict(model *m, const score_data *d, const size_t *idx, size_t n, int batch_rows, float *scores,
                  rlhf_error *err) {
    const int G = d->group, K = m->config.num_labels;
    int E = batch_rows / G;
    if (E < 1) E = 1;
    if (n == 0) return RLHF_OK;
    if (d->max_len > m->config.context)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "rows of %d tokens exceed the model's context %d", d->max_len,
                           m->config.context);
    model_acts a = {0};
    train_batch b = {0};
    int rc = model_acts_init(&a, &m->config, E * G, d->max_len, err);
    if (!rc) rc = train_batch_alloc(&b, E * G, d->max_len, err);
    for (size_t first = 0; !rc && first < n; first += (size_t)E) {
        int ne = (int)(n - first < (size_t)E ? n - first : (size_t)E);
        fill_rows(d, idx + first, ne, pad_of(m), &b);
        rc = model_forward(m, &a, b.tokens, b.B, b.T, err);
        if (!rc) rc = score_head_forward(m, &a, b.lengths, b.B, scores + first * (size_t)G * (size_t)K, err);
    }
    train_batch_free(&b);
    model_acts_free(&a);
    return rc;
}

/* ---- metrics ---- */

void score_pair_eval(const float *scores, size_t n, score_pair_metrics *o) {
    memset(o, 0, sizeof *o);
    o->n = n;
    if (n == 0) {
        o->accuracy = o->mean_margin = o->mean_chosen = o->mean_rejected = NAN;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const double c = scores[2 * i], r = scores[2 * i + 1];
        o->accuracy += c > r;
        o->mean_margin += c - r;
        o->mean_chosen += c;
        o->mean_rejected += r;
    }
    o->accuracy /= (double)n;
    o->mean_margin /= (double)n;
    o->mean_chosen /= (double)n;
    o->mean_rejected /= (double)n;
}

void score_class_metrics_free(score_class_metrics *m) {
    free(m->confusion);
    free(m->precision);
    free(m->recall);
    free(m->f1);
    memset(m, 0, sizeof *m);
}

int score_class_eval(const float *scores, const float *labels, size_t n, int K, score_class_metrics *o, rlhf_error *err) {
    memset(o, 0, sizeof *o);
    o->n = n;
    o->K = K;
    o->confusion = calloc((size_t)K * K, sizeof(size_t));
    o->precision = calloc((size_t)K, sizeof(double));
    o->recall = calloc((size_t)K, sizeof(double));
    o->f1 = calloc((size_t)K, sizeof(double));
    if (!o->confusion || !o->precision || !o->recall || !o->f1) {
        score_class_metrics_free(o);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    }
    size_t correct = 0;
    for (size_t i = 0; i < n; i++) {
        const float *s = scores + i * (size_t)K;
        int arg = 0;
        for (int k = 1; k < K; k++)
            if (s[k] > s[arg]) arg = k;
        int y = (int)labels[i];
        o->confusion[(size_t)y * K + arg]++;
        correct += arg == y;
    }
    o->accuracy = n ? (double)correct / (double)n : NAN;
    for (int k = 0; k < K; k++) {
        size_t tp = o->confusion[(size_t)k * K + k], pred = 0, truth = 0;
        for (int j = 0; j < K; j++) {
            pred += o->confusion[(size_t)j * K + k];
            truth += o->confusion[(size_t)k * K + j];
        }
        o->precision[k] = pred ? (double)tp / (double)pred : 0.0;
        o->recall[k] = truth ? (double)tp / (double)truth : 0.0;
        double pr = o->precision[k] + o->recall[k];
        o->f1[k] = pr > 0 ? 2 * o->precision[k] * o->recall[k] / pr : 0.0;
        o->macro_f1 += o->f1[k] / K;
    }
    return RLHF_OK;
}
