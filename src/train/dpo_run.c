/* dpo_run.c — `rlhf dpo`'s run: pairs to rows, the cached reference pass, pair batches, the
 * loop with the DPO head, saving (see dpo.h). */
#include <cjson/cJSON.h>
#include <math.h>
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

static char *messages_with_reply(const char *prompt_messages, const char *reply) {
    cJSON *arr = cJSON_Parse(prompt_messages);
    if (!cJSON_IsArray(arr)) {
        cJSON_Delete(arr);
        return NULL;
    }
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
                x->messages_json = messages_with_reply(pp->prompt_messages, reply);
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

/* ---- the reference pass and its cache ---- */

#define REF_CACHE_MAGIC 0x52454631u /* "REF1" */

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static int ref_pass(model *m, const pair_source *s, int rows_cap, int T, double *out, rlhf_error *err) {
    model_acts a = {0};
    train_batch b = {0};
    double *lp = malloc((size_t)rows_cap * sizeof *lp);
    int rc = model_acts_init(&a, &m->config, rows_cap, T, err);
    if (!rc) rc = train_batch_alloc(&b, rows_cap, T, err);
    if (!rc && !lp) rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the reference pass");
    size_t n_pairs = s->n_train + s->n_val;
    size_t *all = rc ? NULL : malloc(n_pairs * sizeof *all);
    if (!rc && !all) rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the reference pass");
    for (size_t i = 0; !rc && i < n_pairs; i++) all[i] = i;
    for (size_t i = 0; !rc && i < n_pairs; i += (size_t)(rows_cap / 2)) {
        int n = (int)(n_pairs - i < (size_t)(rows_cap / 2) ? n_pairs - i : (size_t)(rows_cap / 2));
        fill_pairs(s, all + i, n, &b);
        rc = dpo_row_logps(m, &a, &b, lp, err);
        for (int k = 0; !rc && k < n; k++) {
            out[s->pair_row[i + (size_t)k]] = lp[2 * k];
            out[s->pair_row[i + (size_t)k] + 1] = lp[2 * k + 1];
        }
    }
    free(all);
    free(lp);
    train_batch_free(&b);
    model_acts_free(&a);
    return rc;
}

static int ref_cache_read(const char *path, uint64_t key, size_t n, double *out) {
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

static int ref_cache_write(const char *path, uint64_t key, size_t n, const double *v, rlhf_error *err) {
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

/* ---- saving ---- */

typedef struct {
    const dpo_run_params *p;
    model_bundle *b;
    lora *lo;
} saver;

static int save_model(void *ctx, long step, const rng_t *rng, rlhf_error *err) {
    (void)step;
    (void)rng;
    saver *s = ctx;
    if (s->lo) {
        lora_save_info info = {s->p->model_dir, "CAUSAL_LM"};
        return lora_save(s->lo, s->p->out_dir, &info, NULL, 0, err);
    }
    return model_bundle_save(s->b, s->p->out_dir, err);
}

static char *path_in(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", dir, name);
    return s;
}

int dpo_run(const dpo_run_params *pin, dpo_summary *sum, rlhf_error *err) {
    dpo_run_params p = *pin;
    dpo_summary local;
    if (!sum) sum = &local;
    memset(sum, 0, sizeof *sum);
    sum->first_val_loss = sum->final_val_loss = sum->final_loss = NAN;
    model_bundle b = {0};
    model ref = {0};
    lora lo = {0};
    train t = {0};
    dpo_head h = {0};
    sft_texts texts = {0};
    sft_encoded enc = {0};
    pair_source src = {0};
    size_t *pair_row = NULL;
    double *ref_lp = NULL;
    char *cache_path = NULL;
    int rc;
    if (!p.out_dir || !*p.out_dir) return rlhf_errorf(err, RLHF_ERR_INVALID, "no output directory given (--out)");
    if (!p.pairs || p.pairs->n == 0) return rlhf_errorf(err, RLHF_ERR_INVALID, "no preference pairs to train on");
    if ((rc = dpo_params_validate(&p.dpo, err))) return rc;
    if (p.train.batch < 1 || p.train.batch > 512)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "--batch must be 1..512 pairs (got %d)", p.train.batch);

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

    /* ---- rows ---- */
    if ((rc = texts_from_pairs(&texts, p.pairs, err))) goto done;
    sft_encoder ec = {b.tok, b.chat_template, b.bos_token, b.eos_token, b.add_bos, eos, p.max_length, p.truncate};
    if ((rc = sft_encode(&enc, &texts, &ec, p.data_desc ? p.data_desc : "pairs", err))) goto done;
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
    if ((rc = file_mkdir_p(p.out_dir, err))) goto done;
    cache_path = path_in(p.out_dir, "ref_logps.bin");
    if (!cache_path) goto nomem;
    const model *refm = &b.m;
    if (p.ref_dir) {
        if ((rc = model_load_weights(&ref, p.ref_dir, err))) goto done;
        if (ref.config.vocab_size != b.m.config.vocab_size) {
            rc = rlhf_errorf(err, RLHF_ERR_SHAPE, "%s: the reference's vocabulary (%d) is not the policy's (%d)", p.ref_dir,
                             ref.config.vocab_size, b.m.config.vocab_size);
            goto done;
        }
        refm = &ref;
    }
    uint64_t key = hash_bytes(1469598103934665603ull, refm->params, refm->n_floats * sizeof(float));
    uint64_t dh = sft_encoded_hash(&enc);
    key = hash_bytes(key, &dh, sizeof dh);
    sum->ref_cached = ref_cache_read(cache_path, key, enc.n, ref_lp);
    if (!sum->ref_cached) {
        if ((rc = ref_pass((model *)refm, &src, 2 * p.train.batch, T, ref_lp, err))) goto done;
        if ((rc = ref_cache_write(cache_path, key, enc.n, ref_lp, err))) goto done;
    }
    model_free(&ref); /* never two models while training */

    /* ---- the trainer ---- */
    if (p.steps <= 0) {
        long per = (long)p.train.batch * src.accum;
        long per_epoch = ((long)src.n_train + per - 1) / per;
        p.steps = (per_epoch < 1 ? 1 : per_epoch) * (p.epochs < 1 ? 1 : p.epochs);
    }
    sum->total_steps = p.steps;
    p.train.batch = 2 * p.train.batch; /* rows */
    p.train.accum = src.accum;
    p.train.context = T;
    p.train.optim.total_steps = p.steps;
    if ((rc = optim_params_validate(&p.train.optim, err))) goto done;
    if (p.lora.rank > 0) {
        rng_t init;
        rng_seed(&init, p.seed);
        if ((rc = lora_init(&lo, &b.m, &p.lora, &init, err))) goto done;
        lora_attach(&lo, &b.m);
        rc = train_init_lora(&t, &b.m, &lo, &p.train, err);
    } else {
        rc = train_init(&t, &b.m, &p.train, err);
    }
    if (rc) goto done;
    if ((rc = dpo_head_init(&h, &p.dpo, p.train.batch, T, err))) goto done;
    saver sv = {&p, &b, p.lora.rank > 0 ? &lo : NULL};
    train_loop_params lp;
    memset(&lp, 0, sizeof lp);
    lp.t = &t;
    lp.head = dpo_train_head(&h);
    lp.data = (train_data){.fill = fill_train, .fill_val = fill_val,
                           .n_val = (int)((src.n_val + (size_t)src.batch - 1) / (size_t)src.batch), .ctx = &src};
    lp.steps = p.steps;
    lp.eval_every = p.eval_every;
    lp.save_every = p.save_every;
    rng_seed(&lp.rng, p.seed);
    lp.save = save_model;
    lp.save_ctx = &sv;
    lp.stop = p.stop;
    lp.progress = p.progress;
    lp.progress_ctx = p.progress_ctx;
    lp.saved_step = -1;
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
    free(cache_path);
    dpo_head_free(&h);
    train_free(&t);
    if (b.m.lora) lora_detach(&b.m);
    lora_free(&lo);
    model_free(&ref);
    model_bundle_free(&b);
    sft_encoded_free(&enc);
    sft_texts_free(&texts);
    return rc;
}
