/* pretrain.c — the pre-training run: set-up (fresh or resumed), the step loop, validation,
 * checkpoints and interruption. See pretrain.h for the files and guarantees.
 *
 * Exactness of resume rests on four things saved together in one atomically written file
 * (training_state.bin): the parameters, the AdamW moments and step, the data rng, and the run's
 * configuration, which replaces whatever the resuming command passed for batch, context,
 * accumulation, optimizer, validation split and seed. model.safetensors beside it is the same
 * parameters as a Hugging Face checkpoint, for everything else that reads the directory. The
 * token stream is hashed so a resume against other data is refused rather than silently
 * continued. */
#include "src/train/pretrain.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/formats/checkpoint.h"
#include "src/train/dataset_text.h"
#include "src/core/fileio.h"
#include "src/formats/model_load.h"
#include "src/tok/tokenizer.h"

void pretrain_params_defaults(pretrain_params *p) {
    memset(p, 0, sizeof *p);
    p->steps = 1000;
    train_params_defaults(&p->train);
    p->train.batch = 8;
    p->train.context = 0; /* 0: min(256, the model's context) */
    p->train.optim.lr = 1e-3f;
    p->train.optim.min_lr = 1e-4f;
    p->train.optim.warmup_steps = -1; /* -1: min(100, steps / 10) */
    p->eval_every = -1; /* -1: 100 for a new run, the saved cadence on resume */
    p->eval_batches = 8;
    p->save_every = -1; /* -1: 500 for a new run, the saved cadence on resume */
    p->val_fraction = 0.1;
    p->seed = 1337;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the run's configuration, saved in the training state ---- */

static const char *kind_names[] = {"matrix", "embedding", "norm", "bias"};

static char *run_to_json(const pretrain_params *p, const char *tokenizer_desc) {
    cJSON *r = cJSON_CreateObject();
    if (!r) return NULL;
    const train_params *t = &p->train;
    const optim_params *o = &t->optim;
    cJSON_AddNumberToObject(r, "steps", (double)p->steps);
    cJSON_AddNumberToObject(r, "batch", t->batch);
    cJSON_AddNumberToObject(r, "context", t->context);
    cJSON_AddNumberToObject(r, "accum", t->accum);
    cJSON_AddNumberToObject(r, "lr", (double)o->lr);
    cJSON_AddNumberToObject(r, "min_lr", (double)o->min_lr);
    cJSON_AddNumberToObject(r, "warmup", (double)o->warmup_steps);
    cJSON_AddNumberToObject(r, "beta1", (double)o->beta1);
    cJSON_AddNumberToObject(r, "beta2", (double)o->beta2);
    cJSON_AddNumberToObject(r, "eps", (double)o->eps);
    cJSON_AddNumberToObject(r, "weight_decay", (double)o->weight_decay);
    cJSON_AddNumberToObject(r, "grad_clip", (double)o->grad_clip);
    cJSON *kinds = cJSON_AddArrayToObject(r, "decay_kinds");
    for (unsigned k = 0; k < 4 && kinds; k++)
        if (o->decay_kinds & (1u << k)) cJSON_AddItemToArray(kinds, cJSON_CreateString(kind_names[k]));
    cJSON_AddNumberToObject(r, "val_fraction", p->val_fraction);
    char seed[24];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)p->seed);
    cJSON_AddStringToObject(r, "seed", seed);
    cJSON_AddNumberToObject(r, "eval_batches", p->eval_batches);
    cJSON_AddNumberToObject(r, "eval_every", (double)p->eval_every);
    cJSON_AddNumberToObject(r, "save_every", (double)p->save_every);
    cJSON_AddStringToObject(r, "data", p->data_path ? p->data_path : "");
    cJSON_AddStringToObject(r, "tokenizer", tokenizer_desc);
    cJSON_AddStringToObject(r, "initial_model", p->model_dir ? p->model_dir : "");
    char *s = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return s;
}

/* Applies a saved run to p. Strings are copied into `strings` (owned by the caller's cJSON). */
static int run_from_json(pretrain_params *p, cJSON *r, const char *path, const char **data_path, rlhf_error *err) {
    struct {
        const char *name;
        double *d;
        float *f;
        int *i;
        long *l;
    } fields[] = {
        {"batch", NULL, NULL, &p->train.batch, NULL},
        {"context", NULL, NULL, &p->train.context, NULL},
        {"accum", NULL, NULL, &p->train.accum, NULL},
        {"lr", NULL, &p->train.optim.lr, NULL, NULL},
        {"min_lr", NULL, &p->train.optim.min_lr, NULL, NULL},
        {"warmup", NULL, NULL, NULL, &p->train.optim.warmup_steps},
        {"beta1", NULL, &p->train.optim.beta1, NULL, NULL},
        {"beta2", NULL, &p->train.optim.beta2, NULL, NULL},
        {"eps", NULL, &p->train.optim.eps, NULL, NULL},
        {"weight_decay", NULL, &p->train.optim.weight_decay, NULL, NULL},
        {"grad_clip", NULL, &p->train.optim.grad_clip, NULL, NULL},
        {"val_fraction", &p->val_fraction, NULL, NULL, NULL},
        {"eval_batches", NULL, NULL, &p->eval_batches, NULL},
    };
    long saved_steps = 0;
    for (size_t k = 0; k < sizeof fields / sizeof fields[0]; k++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(r, fields[k].name);
        if (!cJSON_IsNumber(it))
            return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: saved run has no number \"%s\"", path, fields[k].name);
        double v = it->valuedouble;
        if (fields[k].d) *fields[k].d = v;
        if (fields[k].f) *fields[k].f = (float)v;
        if (fields[k].i) *fields[k].i = (int)v;
        if (fields[k].l) *fields[k].l = (long)v;
    }
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(r, "steps");
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(r, "seed");
    const cJSON *kinds = cJSON_GetObjectItemCaseSensitive(r, "decay_kinds");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(r, "data");
    if (!cJSON_IsNumber(steps) || !cJSON_IsString(seed) || !cJSON_IsArray(kinds) || !cJSON_IsString(data))
        return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: saved run lacks steps, seed, decay_kinds or data", path);
    saved_steps = (long)steps->valuedouble;
    /* The cadence is kept unless given again (optional: state files before it was saved lack it). */
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(r, "eval_every");
    const cJSON *sv = cJSON_GetObjectItemCaseSensitive(r, "save_every");
    if (p->eval_every < 0 && cJSON_IsNumber(ev)) p->eval_every = (long)ev->valuedouble;
    if (p->save_every < 0 && cJSON_IsNumber(sv)) p->save_every = (long)sv->valuedouble;
    if (p->steps <= 0) p->steps = saved_steps;
    p->seed = strtoull(seed->valuestring, NULL, 10);
    p->train.optim.decay_kinds = 0;
    const cJSON *k;
    cJSON_ArrayForEach(k, kinds) {
        for (unsigned i = 0; i < 4; i++)
            if (cJSON_IsString(k) && strcmp(k->valuestring, kind_names[i]) == 0) p->train.optim.decay_kinds |= 1u << i;
    }
    *data_path = data->valuestring;
    return RLHF_OK;
}

/* ---- corpus ---- */

static int load_corpus(dataset_text *d, const char *path, const tokenizer *tok, double val_fraction, int T,
                       rlhf_error *err) {
    char *text = NULL;
    size_t len = 0;
    tok_ids ids = {0};
    int rc = file_read_all(path, &text, &len, err);
    if (rc) return rc;
    if (len == 0) {
        free(text);
        return rlhf_errorf(err, RLHF_ERR_INVALID, "%s: the training data is empty", path);
    }
    rc = tok_encode(tok, text, len, 0, &ids, err);
    free(text);
    if (rc) {
        tok_ids_free(&ids);
        return rlhf_error_prefix(err, "tokenising %s: ", path);
    }
    /* dataset_text takes the id array; tok_ids' buffer is a plain malloc'd int32 array. */
    int32_t *tokens = ids.ids;
    size_t n = ids.n;
    ids.ids = NULL;
    return dataset_text_init(d, tokens, n, val_fraction, T, path, err);
}

/* ---- checkpoints ---- */

typedef struct {
    const pretrain_params *p;
    model *m;
    train *t;
    tokenizer *tok;
    const char *state_path;
    char *tok_path;
    const char *run_json;
    uint64_t data_hash;
    int tok_saved;
} saver;

static int save_checkpoint(void *ctx, long step, const rng_t *rng, rlhf_error *err) {
    saver *s = ctx;
    int rc = checkpoint_save(s->m, s->p->out_dir, err);
    if (rc) return rc;
    if (!s->tok_saved) {
        rc = tok_save(s->tok, s->tok_path, err);
        if (rc) return rc;
        s->tok_saved = 1;
    }
    train_state_info info = {0};
    info.step = step;
    info.rng = *rng;
    info.data_hash = s->data_hash;
    info.run_json = (char *)s->run_json;
    return train_state_save(s->state_path, s->t, &info, err);
}

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", dir, name);
    return s;
}

/* The loop's data source: random training windows from the loop's rng, fixed validation
 * windows prepared once. */
typedef struct {
    const dataset_text *data;
    int32_t *val_in, *val_tg; /* (eval_batches, B, T) each */
} text_source;

static int text_fill(void *ctx, long step, int micro, rng_t *rng, train_batch *b, rlhf_error *err) {
    (void)step;
    (void)micro;
    (void)err;
    const text_source *s = ctx;
    dataset_text_sample(s->data, rng, b->B, b->T, b->tokens, b->targets);
    return RLHF_OK;
}

static int text_fill_val(void *ctx, int i, train_batch *b, rlhf_error *err) {
    (void)err;
    const text_source *s = ctx;
    const size_t bt = (size_t)b->B * (size_t)b->T;
    memcpy(b->tokens, s->val_in + (size_t)i * bt, bt * sizeof(int32_t));
    memcpy(b->targets, s->val_tg + (size_t)i * bt, bt * sizeof(int32_t));
    return RLHF_OK;
}

int pretrain_run(const pretrain_params *pin, pretrain_summary *sum_out, rlhf_error *err) {
    pretrain_params p = *pin;
    pretrain_summary sum;
    memset(&sum, 0, sizeof sum);
    sum.first_val_loss = sum.final_val_loss = sum.final_loss = NAN;
    sum.saved_step = -1;
    model m = {0};
    train t = {0};
    tokenizer *tok = NULL;
    dataset_text data = {0};
    int32_t *val = NULL;
    char *state_path = NULL, *tok_path = NULL, *run_json = NULL;
    char *tok_desc_owned = NULL;
    const char *tok_desc = "bytes";
    train_state_info info = {0};
    cJSON *saved_run = NULL;
    rng_t rng;
    int rc = RLHF_OK;
    const double t_start = now_s();

    if (!p.out_dir || !*p.out_dir) return rlhf_errorf(err, RLHF_ERR_INVALID, "no output directory given (--out)");
    state_path = path_join(p.out_dir, PRETRAIN_STATE_FILE);
    tok_path = path_join(p.out_dir, "tokenizer.json");
    if (!state_path || !tok_path) goto nomem;

    /* ---- model, tokenizer and configuration ---- */
    if (p.resume) {
        if (!file_exists(state_path)) {
            rc = rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "%s: no training state to resume (run without --resume first)",
                             state_path);
            goto done;
        }
        rc = train_state_read_info(state_path, &info, err);
        if (rc) goto done;
        saved_run = cJSON_Parse(info.run_json);
        const char *saved_data = NULL;
        if (!saved_run) {
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: saved run is not valid JSON", state_path);
            goto done;
        }
        rc = run_from_json(&p, saved_run, state_path, &saved_data, err);
        if (rc) goto done;
        if (!p.data_path || !*p.data_path) p.data_path = saved_data;
        /* The directory gives the configuration and layout; the parameters themselves come from
         * the state file below (train_state_load), which is what makes the pair consistent. */
        rc = checkpoint_load(&m, p.out_dir, err);
        if (rc) goto done;
        const cJSON *im = cJSON_GetObjectItemCaseSensitive(saved_run, "initial_model");
        if (cJSON_IsString(im)) p.model_dir = im->valuestring;
        rc = tok_load(&tok, tok_path, err);
        if (rc) goto done;
        const cJSON *td = cJSON_GetObjectItemCaseSensitive(saved_run, "tokenizer");
        if (cJSON_IsString(td)) tok_desc = td->valuestring;
    } else {
        if (!p.model_dir || !*p.model_dir) {
            rc = rlhf_errorf(err, RLHF_ERR_INVALID, "no model given (--model DIR)");
            goto done;
        }
        if (!p.data_path || !*p.data_path) {
            rc = rlhf_errorf(err, RLHF_ERR_INVALID, "no training data given (--data FILE.txt)");
            goto done;
        }
        if (file_exists(state_path)) {
            rc = rlhf_errorf(err, RLHF_ERR_INVALID,
                             "%s already holds a training run (%s); pass --resume to continue it or choose another --out",
                             p.out_dir, PRETRAIN_STATE_FILE);
            goto done;
        }
        rc = model_load_weights(&m, p.model_dir, err);
        if (rc) goto done;
        const char *tp = p.tokenizer_path;
        char *dir_tok = NULL;
        if (!tp && file_is_dir(p.model_dir)) {
            dir_tok = path_join(p.model_dir, "tokenizer.json");
            if (!dir_tok) goto nomem;
            if (file_exists(dir_tok)) tp = dir_tok;
        }
        if (tp) {
            rc = model_load_tokenizer(&tok, tp, err);
            tok_desc_owned = malloc(strlen(tp) + 1);
            if (tok_desc_owned) {
                strcpy(tok_desc_owned, tp);
                tok_desc = tok_desc_owned;
            }
        } else {
            rc = tok_new_bytes(&tok, err);
        }
        free(dir_tok);
        if (rc) goto done;
        if (p.train.context <= 0) p.train.context = m.config.context < 256 ? m.config.context : 256;
        if (p.train.optim.warmup_steps < 0) p.train.optim.warmup_steps = p.steps / 10 < 100 ? p.steps / 10 : 100;
    }
    if (p.steps < 1) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "steps must be >= 1 (got %ld)", p.steps);
        goto done;
    }
    if (p.eval_batches < 1) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "evaluation batches must be >= 1 (got %d)", p.eval_batches);
        goto done;
    }
    if (p.eval_every < 0) p.eval_every = 100;
    if (p.save_every < 0) p.save_every = 500;
    if (p.eval_every < 0 || p.save_every < 0) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "eval/save intervals must be >= 0");
        goto done;
    }
    if (tok_vocab_size(tok) > m.config.vocab_size) {
        rc = rlhf_errorf(err, RLHF_ERR_SHAPE, "the tokenizer (%s) has %d ids but the model's vocabulary is %d", tok_desc,
                         tok_vocab_size(tok), m.config.vocab_size);
        goto done;
    }
    p.train.optim.total_steps = p.steps;
    sum.total_steps = p.steps;
    sum.vocab_size = tok_vocab_size(tok);
    sum.n_params = m.n_params;

    /* ---- data ---- */
    if (p.train.context > m.config.context) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "context %d exceeds the model's context %d", p.train.context,
                         m.config.context);
        goto done;
    }
    rc = load_corpus(&data, p.data_path, tok, p.val_fraction, p.train.context, err);
    if (rc) goto done;
    sum.n_train_tokens = data.n_train;
    sum.n_val_tokens = data.n_tokens - data.n_train;
    if (p.resume && data.hash != info.data_hash) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID,
                         "%s: this text (as tokenised) is not the data the run in %s was trained on; resume with the "
                         "same --data",
                         p.data_path, p.out_dir);
        goto done;
    }

    /* ---- trainer ---- */
    rc = train_init(&t, &m, &p.train, err);
    if (rc) goto done;
    long step = 0;
    if (p.resume) {
        train_state_info full;
        rc = train_state_load(state_path, &t, &full, err);
        if (rc) goto done;
        free(full.run_json);
        rng = full.rng;
        step = full.step;
        sum.saved_step = step;
    } else {
        rng_seed(&rng, p.seed);
    }
    sum.start_step = sum.steps_done = step;
    run_json = run_to_json(&p, tok_desc);
    if (!run_json) goto nomem;
    rc = file_mkdir_p(p.out_dir, err);
    if (rc) goto done;

    const int B = t.B, T = t.T;
    const size_t bt = (size_t)B * (size_t)T;
    const int have_val = dataset_text_val_windows(&data, T) > 0;
    val = have_val ? malloc(2 * (size_t)p.eval_batches * bt * sizeof(int32_t)) : NULL;
    if (have_val && !val) goto nomem;
    text_source src = {&data, val, have_val ? val + (size_t)p.eval_batches * bt : NULL};
    if (have_val) dataset_text_val_batches(&data, p.eval_batches, B, T, src.val_in, src.val_tg);

    saver sv = {&p, &m, &t, tok, state_path, tok_path, run_json, data.hash, 0};
    train_loop_params lp;
    memset(&lp, 0, sizeof lp);
    lp.t = &t;
    lp.head = train_head_lm;
    lp.data.fill = text_fill;
    lp.data.fill_val = text_fill_val;
    lp.data.n_val = have_val ? p.eval_batches : 0;
    lp.data.ctx = &src;
    lp.start_step = step;
    lp.steps = p.steps;
    lp.eval_every = p.eval_every;
    lp.save_every = p.save_every;
    lp.rng = rng;
    lp.save = save_checkpoint;
    lp.save_ctx = &sv;
    lp.stop = p.stop;
    lp.progress = p.progress;
    lp.progress_ctx = p.progress_ctx;
    lp.saved_step = sum.saved_step;
    train_loop_summary ls;
    rc = train_loop_run(&lp, &ls, err);
    sum.steps_done = ls.steps_done;
    sum.saved_step = ls.saved_step;
    sum.first_val_loss = ls.first_val_loss;
    sum.final_val_loss = ls.final_val_loss;
    sum.final_loss = ls.final_loss;
    sum.tokens_per_s = ls.tokens_per_s;
    if (rc == RLHF_ERR_INTERRUPTED)
        rc = rlhf_errorf(err, RLHF_ERR_INTERRUPTED, "interrupted at step %ld of %ld; saved to %s", ls.steps_done,
                         p.steps, p.out_dir);
    goto done;
nomem:
    rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory setting up the training run");
done:
    sum.elapsed_s = now_s() - t_start;
    if (sum_out) *sum_out = sum;
    free(val);
    train_free(&t);
    model_free(&m);
    dataset_text_free(&data);
    tok_close(&tok);
    free(info.run_json);
    cJSON_Delete(saved_run);
    free(state_path);
    free(tok_path);
    free(run_json);
    free(tok_desc_owned);
    return rc;
}
