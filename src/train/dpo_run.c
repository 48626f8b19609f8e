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
    pref_common_params_defaults(&p->c);
    dpo_params_defaults(&p->dpo);
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
    int32_t pad;
} pair_source;

/* Rows of pairs idx[0..n) into b, padded to the longest (positions = ids - 1). */
static void fill_pairs(void *ctx, const size_t *idx, int n, train_batch *b) {
    const pair_source *s = ctx;
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
            const size_t ex = s->pair_row[idx[k]] + (size_t)side;
            pref_put_row(b, 2 * k + side, s->e->ids + s->e->start[ex], s->e->loss + s->e->start[ex], s->e->len[ex], s->pad,
                         (float)s->ref[ex]);
        }
}

/* The reference log-probabilities of every pair's rows into ref_lp (by row of e). */
static int reference_logps(const dpo_run_params *p, model *refm, const pair_source *s, size_t n_pairs, const char *fp,
                           double *ref_lp, dpo_summary *sum, rlhf_error *err) {
    const sft_encoded *e = s->e;
    pref_ref_row *rows = calloc(2 * n_pairs, sizeof *rows);
    if (!rows) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the reference cache");
    for (size_t k = 0; k < 2 * n_pairs; k++) {
        const size_t r = s->pair_row[k / 2] + k % 2;
        rows[k] = (pref_ref_row){e->ids + e->start[r], e->loss + e->start[r], e->len[r], 0, 0};
    }
    pref_ref_counts counts;
    int rc = pref_ref_logps(&p->c, refm, fp, sft_encoded_hash(e), rows, 2 * n_pairs, 2,
                            2 * (p->c.train.batch < 1 ? 1 : p->c.train.batch), s->pad, &counts, err);
    for (size_t k = 0; !rc && k < 2 * n_pairs; k++) ref_lp[s->pair_row[k / 2] + k % 2] = rows[k].logp;
    sum->ref_cached = counts.cached;
    sum->ref_computed = counts.computed;
    free(rows);
    return rc;
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
    RUN_FIELD("steps", F_LONG, c.steps),
    RUN_FIELD("epochs", F_LONG, c.epochs),
    RUN_FIELD("batch", F_INT, c.train.batch),
    RUN_FIELD("accum", F_INT, c.train.accum),
    RUN_FIELD("max_length", F_INT, c.max_length),
    RUN_FIELD("lr", F_FLOAT, c.train.optim.lr),
    RUN_FIELD("min_lr", F_FLOAT, c.train.optim.min_lr),
    RUN_FIELD("warmup", F_LONG, c.train.optim.warmup_steps),
    RUN_FIELD("beta1", F_FLOAT, c.train.optim.beta1),
    RUN_FIELD("beta2", F_FLOAT, c.train.optim.beta2),
    RUN_FIELD("eps", F_FLOAT, c.train.optim.eps),
    RUN_FIELD("weight_decay", F_FLOAT, c.train.optim.weight_decay),
    RUN_FIELD("grad_clip", F_FLOAT, c.train.optim.grad_clip),
    RUN_FIELD("val_fraction", F_DOUBLE, c.val_fraction),
    RUN_FIELD("eval_every", F_LONG, c.eval_every),
    RUN_FIELD("save_every", F_LONG, c.save_every),
    RUN_FIELD("lora_rank", F_INT, c.lora.rank),
    RUN_FIELD("lora_alpha", F_FLOAT, c.lora.alpha),
    RUN_FIELD("lora_dropout", F_FLOAT, c.lora.dropout),
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
    add_str(r, "model", p->c.model_dir);
    add_str(r, "ref", p->c.ref_dir);
    add_str(r, "data", p->c.data_desc);
    add_str(r, "format", p->data_format);
    add_str(r, "ref_fingerprint", fp);
    add_str(r, "loss_type", dpo_loss_type_name(p->dpo.loss_type));
    add_str(r, "truncate", sft_truncate_name(p->c.truncate));
    add_str(r, "lora_targets", p->c.lora.targets);
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, p->c.seed);
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
    const long steps = p->c.steps, eval_every = p->c.eval_every, save_every = p->c.save_every;
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
    p->c.model_dir = v[0];
    p->c.ref_dir = *v[1] ? v[1] : NULL;
    p->c.data_desc = v[2];
    p->data_format = *v[3] ? v[3] : NULL;
    snprintf(fp, 33, "%s", v[4]);
    int rc = dpo_loss_type_parse(v[5], &p->dpo.loss_type, err);
    if (rc) return rc;
    if (sft_truncate_parse(v[6]) < 0) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: bad saved truncate \"%s\"", path, v[6]);
    p->c.truncate = (sft_truncate)sft_truncate_parse(v[6]);
    p->c.lora.targets = *v[7] ? v[7] : NULL;
    p->c.seed = strtoull(v[8], NULL, 10);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(r, "lora_rng");
    *have_lora_rng = cJSON_GetArraySize(a) == 4;
    for (int i = 0; *have_lora_rng && i < 4; i++) {
        const char *h = cJSON_GetStringValue(cJSON_GetArrayItem(a, i));
        if (!h) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: the saved LoRA rng is malformed", path);
        lora_rng->s[i] = strtoull(h, NULL, 16);
    }
    if (steps > 0) p->c.steps = steps;
    if (eval_every >= 0) p->c.eval_every = eval_every;
    if (save_every >= 0) p->c.save_every = save_every;
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
    int rc = sft_checkpoint_save(s->p->c.out_dir, s->p->c.model_dir, s->b, s->lo, s->t, s->state_path, &info, err);
    free(info.run_json);
    return rc;
}

/* ---- the run ---- */

int dpo_run(const dpo_run_params *pin, dpo_summary *sum, rlhf_error *err) {
    dpo_run_params p = *pin;
    pref_common_params *c = &p.c;
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
    pair_source ps = {0};
    pref_source src = {0};
    train_state_info info = {0};
    cJSON *saved = NULL;
    size_t *pair_row = NULL, *order = NULL;
    double *ref_lp = NULL;
    char *state_path = NULL, saved_fp[33] = "";
    rng_t lora_rng;
    int have_lora_rng = 0, rc;
    if (!c->out_dir || !*c->out_dir) return rlhf_errorf(err, RLHF_ERR_INVALID, "no output directory given (--out)");
    if (!p.pairs || p.pairs->n == 0) return rlhf_errorf(err, RLHF_ERR_INVALID, "no preference pairs to train on");
    state_path = path_in(c->out_dir, DPO_STATE_FILE);
    if (!state_path) goto nomem;
    if (c->resume) {
        if ((rc = read_state(state_path, &info, err))) goto done;
        if (!(saved = cJSON_Parse(info.run_json))) {
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: the saved run is not valid JSON", state_path);
            goto done;
        }
        if ((rc = run_from_json(&p, saved, state_path, saved_fp, &lora_rng, &have_lora_rng, err))) goto done;
    } else if (file_exists(state_path)) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID,
                         "%s already holds a training run (%s); pass --resume to continue it or choose another --out",
                         c->out_dir, DPO_STATE_FILE);
        goto done;
    }
    if ((rc = dpo_params_validate(&p.dpo, err))) goto done;
    sum->dpo = p.dpo;
    if (c->train.batch < 1 || c->train.batch > 512) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "--batch must be 1..512 pairs (got %d)", c->train.batch);
        goto done;
    }

    /* the starting policy, also on resume: it is the reference (or its base), and the trained
     * numbers come from the training state */
    int32_t eos;
    if ((rc = pref_policy_load(&b, c->model_dir, "DPO", &eos, err))) goto done;
    if (c->max_length <= 0 || c->max_length > b.m.config.context) c->max_length = b.m.config.context;
    if (c->lora.rank > 0 && !c->lora.targets)
        c->lora.targets = b.m.config.family == MODEL_FAMILY_GPT2 ? "c_attn" : "q_proj,v_proj";

    /* ---- rows ---- */
    if ((rc = texts_from_pairs(&texts, p.pairs, err))) goto done;
    sft_encoder ec = {b.tok, b.chat_template, b.bos_token, b.eos_token, b.add_bos, eos, c->max_length, c->truncate};
    if ((rc = sft_encode(&enc, &texts, &ec, c->data_desc ? c->data_desc : "pairs", err))) goto done;
    const uint64_t data_hash = sft_encoded_hash(&enc);
    if (c->resume && data_hash != info.data_hash) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID,
                         "%s: these pairs (as encoded) are not what the run in %s was trained on; resume with the same data",
                         c->data_desc ? c->data_desc : "pairs", c->out_dir);
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
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "no pair keeps both replies within %d tokens (%zu dropped)", c->max_length,
                         sum->n_dropped);
        goto done;
    }
    /* split: a seeded shuffle, the last val_fraction held out */
    if (!(order = malloc(n_pairs * sizeof *order))) goto nomem;
    const size_t n_val = pref_split(order, n_pairs, c->val_fraction, c->seed);
    ps.e = &enc;
    ps.pair_row = pair_row;
    ps.pad = tok_pad_id(b.tok) >= 0 ? tok_pad_id(b.tok) : eos;
    src.val = order + (n_pairs - n_val);
    src.n_val = n_val;
    src.fill = fill_pairs;
    src.ctx = &ps;
    if ((rc = pref_order_init(&src.order, order, n_pairs - n_val, c->train.batch, c->train.accum, c->seed, err))) goto done;
    sum->n_train = n_pairs - n_val;
    sum->n_val = n_val;
    int longest = 2;
    for (size_t i = 0; i < enc.n; i++)
        if (enc.len[i] > longest) longest = enc.len[i];
    const int T = longest - 1;

    /* ---- the reference pass (cached) ---- */
    ref_lp = calloc(enc.n, sizeof *ref_lp);
    if (!ref_lp) goto nomem;
    ps.ref = ref_lp;
    model *refm;
    if ((rc = pref_reference(&ref, &refm, c->ref_dir, &b, "DPO", err))) goto done;
    pref_ref_fingerprint(refm, sum->ref_fingerprint);
    if (c->resume && strcmp(saved_fp, sum->ref_fingerprint) != 0) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID,
                         "%s: the reference model's weights are not those the run in %s started with (fingerprint %s, "
                         "saved %s); resuming would change the objective",
                         c->ref_dir ? c->ref_dir : c->model_dir, c->out_dir, sum->ref_fingerprint, saved_fp);
        goto done;
    }
    if ((rc = reference_logps(&p, refm, &ps, n_pairs, sum->ref_fingerprint, ref_lp, sum, err))) goto done;
    model_bundle_free(&ref); /* never two models while training */

    /* ---- the trainer ---- */
    c->steps = pref_total_steps(c->steps, c->epochs, sum->n_train, c->train.batch, src.order.accum);
    if (c->eval_every < 0) c->eval_every = 100;
    if (c->save_every < 0) c->save_every = 500;
    sum->total_steps = c->steps;
    train_params tp = c->train; /* c->train keeps pairs per micro-batch (saved); tp counts rows */
    tp.batch = 2 * c->train.batch;
    tp.accum = src.order.accum;
    tp.context = T;
    tp.optim.total_steps = c->steps;
    if ((rc = optim_params_validate(&tp.optim, err))) goto done;
    if (c->lora.rank > 0) {
        rng_t init;
        rng_seed(&init, c->seed);
        if ((rc = lora_init(&lo, &b.m, &c->lora, &init, err))) goto done;
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
    rng_seed(&loop_rng, c->seed);
    if (c->resume) {
        train_state_info full = {0};
        if ((rc = train_state_load(state_path, &t, &full, err))) goto done;
        free(full.run_json);
        loop_rng = full.rng;
        step = full.step;
    }
    sum->start_step = sum->steps_done = step;
    if ((rc = file_mkdir_p(c->out_dir, err))) goto done;
    saver sv = {&p, &b, c->lora.rank > 0 ? &lo : NULL, &t, state_path, sum->ref_fingerprint, data_hash};
    train_loop_params lp;
    memset(&lp, 0, sizeof lp);
    lp.t = &t;
    lp.head = dpo_train_head(&h);
    lp.data = pref_source_data(&src);
    lp.start_step = step;
    lp.steps = c->steps;
    lp.eval_every = c->eval_every;
    lp.save_every = c->save_every;
    lp.rng = loop_rng;
    lp.save = save_checkpoint;
    lp.save_ctx = &sv;
    lp.stop = c->stop;
    lp.progress = c->progress;
    lp.progress_ctx = c->progress_ctx;
    lp.saved_step = c->resume ? step : -1;
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
                         ls.steps_done, c->steps, c->out_dir);
    goto done;
nomem:
    rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory setting up the DPO run");
done:
    pref_order_free(&src.order);
    free(order);
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
