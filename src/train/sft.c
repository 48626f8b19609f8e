/* sft.c — the SFT run: set-up (fresh or resumed, full or LoRA), checkpoints, the loop. See sft.h.
 *
 * Exact resume rests on what training_state.bin holds (train.h): the trained buffer (the model's
 * parameters, or the adapter's), the AdamW moments and step, and the run's configuration, which
 * replaces whatever the resuming command passed; the data is re-read and re-encoded and must
 * hash to the saved value; LoRA's dropout rng is saved in the configuration at every checkpoint.
 * Batches are a pure function of the step (sft_data.c), so nothing else needs saving. */
#include "src/train/sft.h"

#include <cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/core/fileio.h"
#include "src/formats/model_load.h"

void sft_params_defaults(sft_params *p) {
    memset(p, 0, sizeof *p);
    p->epochs = 3;
    train_params_defaults(&p->train);
    p->train.batch = 8;
    p->train.accum = 1;
    p->train.optim.lr = 2e-5f;
    p->train.optim.min_lr = 0.0f;
    p->train.optim.beta2 = 0.999f;
    p->train.optim.weight_decay = 0.0f;
    p->max_length = 1024;
    p->truncate = SFT_TRUNCATE_KEEP_START;
    p->val_fraction = 0.1;
    p->seed = 42;
    p->eval_every = 100;
    p->save_every = 500;
    lora_params_defaults(&p->lora);
    p->lora.rank = 0;
}

void sft_summary_free(sft_summary *s) {
    free(s->run_json);
    s->run_json = NULL;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", dir, name);
    return s;
}

/* ---- the run's configuration ---- */

static void add_u64(cJSON *o, const char *name, uint64_t x) {
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, x);
    cJSON_AddStringToObject(o, name, buf);
}

/* A float setting as the shortest decimal that reads back as the same float (0.003, not
 * 0.0030000000260770321): readable in `rlhf runs`, and exact for --resume. */
static double short_float(float x) {
    char buf[32];
    for (int digits = 6; digits < 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)x);
        if ((float)strtod(buf, NULL) == x) return strtod(buf, NULL);
    }
    return (double)x;
}

static char *run_to_json(const sft_params *p, const rng_t *lora_rng) {
    cJSON *r = cJSON_CreateObject();
    if (!r) return NULL;
    const optim_params *o = &p->train.optim;
    cJSON_AddStringToObject(r, "model", p->model_dir ? p->model_dir : "");
    cJSON_AddStringToObject(r, "data", p->data_path ? p->data_path : (p->data_desc ? p->data_desc : ""));
    cJSON_AddNumberToObject(r, "steps", (double)p->steps);
    cJSON_AddNumberToObject(r, "epochs", (double)p->epochs);
    cJSON_AddNumberToObject(r, "batch", p->train.batch);
    cJSON_AddNumberToObject(r, "accum", p->train.accum);
    cJSON_AddNumberToObject(r, "max_length", p->max_length);
    cJSON_AddStringToObject(r, "truncate", sft_truncate_name(p->truncate));
    cJSON_AddNumberToObject(r, "lr", short_float(o->lr));
    cJSON_AddNumberToObject(r, "min_lr", short_float(o->min_lr));
    cJSON_AddNumberToObject(r, "warmup", (double)o->warmup_steps);
    cJSON_AddNumberToObject(r, "beta1", short_float(o->beta1));
    cJSON_AddNumberToObject(r, "beta2", short_float(o->beta2));
    cJSON_AddNumberToObject(r, "eps", short_float(o->eps));
    cJSON_AddNumberToObject(r, "weight_decay", short_float(o->weight_decay));
    cJSON_AddNumberToObject(r, "grad_clip", short_float(o->grad_clip));
    cJSON_AddNumberToObject(r, "val_fraction", p->val_fraction);
    add_u64(r, "seed", p->seed);
    cJSON_AddNumberToObject(r, "eval_every", (double)p->eval_every);
    cJSON_AddNumberToObject(r, "save_every", (double)p->save_every);
    if (p->lora.rank > 0) {
        cJSON *l = cJSON_AddObjectToObject(r, "lora");
        if (l) {
            cJSON_AddNumberToObject(l, "rank", p->lora.rank);
            cJSON_AddNumberToObject(l, "alpha", short_float(p->lora.alpha));
            cJSON_AddNumberToObject(l, "dropout", short_float(p->lora.dropout));
            cJSON_AddStringToObject(l, "targets", p->lora.targets ? p->lora.targets : "");
            if (lora_rng) {
                cJSON *a = cJSON_AddArrayToObject(l, "rng");
                for (int i = 0; i < 4 && a; i++) {
                    char buf[24];
                    snprintf(buf, sizeof buf, "%016" PRIx64, lora_rng->s[i]);
                    cJSON_AddItemToArray(a, cJSON_CreateString(buf));
                }
            }
        }
    }
    char *s = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return s;
}

/* Applies a saved configuration to p (strings point into r, which the caller keeps). */
static int run_from_json(sft_params *p, const cJSON *r, const char *path, rng_t *lora_rng, const char **saved_data,
                         rlhf_error *err) {
#define NUM(name) cJSON_GetObjectItemCaseSensitive(r, name)
    const char *nums[] = {"steps", "epochs", "batch", "accum", "max_length", "lr", "min_lr", "warmup", "beta1",
                          "beta2", "eps", "weight_decay", "grad_clip", "val_fraction", "eval_every", "save_every"};
    for (size_t k = 0; k < sizeof nums / sizeof nums[0]; k++)
        if (!cJSON_IsNumber(NUM(nums[k])))
            return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: saved run has no number \"%s\"", path, nums[k]);
    const cJSON *model = NUM("model"), *data = NUM("data"), *seed = NUM("seed"), *trunc = NUM("truncate");
    if (!cJSON_IsString(model) || !cJSON_IsString(data) || !cJSON_IsString(seed) || !cJSON_IsString(trunc) ||
        sft_truncate_parse(trunc->valuestring) < 0)
        return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: saved run lacks model, data, seed or truncate", path);
    p->model_dir = model->valuestring;
    *saved_data = data->valuestring;
    long steps = (long)NUM("steps")->valuedouble;
    if (p->steps <= 0) p->steps = steps;
    p->epochs = (long)NUM("epochs")->valuedouble;
    p->train.batch = (int)NUM("batch")->valuedouble;
    p->train.accum = (int)NUM("accum")->valuedouble;
    p->max_length = (int)NUM("max_length")->valuedouble;
    p->truncate = (sft_truncate)sft_truncate_parse(trunc->valuestring);
    optim_params *o = &p->train.optim;
    o->lr = (float)NUM("lr")->valuedouble;
    o->min_lr = (float)NUM("min_lr")->valuedouble;
    o->warmup_steps = (long)NUM("warmup")->valuedouble;
    o->beta1 = (float)NUM("beta1")->valuedouble;
    o->beta2 = (float)NUM("beta2")->valuedouble;
    o->eps = (float)NUM("eps")->valuedouble;
    o->weight_decay = (float)NUM("weight_decay")->valuedouble;
    o->grad_clip = (float)NUM("grad_clip")->valuedouble;
    p->val_fraction = NUM("val_fraction")->valuedouble;
    p->seed = strtoull(seed->valuestring, NULL, 10);
    if (p->eval_every < 0) p->eval_every = (long)NUM("eval_every")->valuedouble;
    if (p->save_every < 0) p->save_every = (long)NUM("save_every")->valuedouble;
    const cJSON *l = NUM("lora");
    p->lora.rank = 0;
    if (l) {
        const cJSON *rank = cJSON_GetObjectItemCaseSensitive(l, "rank");
        const cJSON *alpha = cJSON_GetObjectItemCaseSensitive(l, "alpha");
        const cJSON *drop = cJSON_GetObjectItemCaseSensitive(l, "dropout");
        const cJSON *tg = cJSON_GetObjectItemCaseSensitive(l, "targets");
        const cJSON *rng = cJSON_GetObjectItemCaseSensitive(l, "rng");
        if (!cJSON_IsNumber(rank) || !cJSON_IsNumber(alpha) || !cJSON_IsNumber(drop) || !cJSON_IsString(tg) ||
            cJSON_GetArraySize(rng) != 4)
            return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: saved run's \"lora\" lacks rank, alpha, dropout, targets or rng",
                               path);
        p->lora.rank = (int)rank->valuedouble;
        p->lora.alpha = (float)alpha->valuedouble;
        p->lora.dropout = (float)drop->valuedouble;
        p->lora.targets = *tg->valuestring ? tg->valuestring : NULL;
        for (int i = 0; i < 4; i++) {
            const char *h = cJSON_GetStringValue(cJSON_GetArrayItem(rng, i));
            if (!h) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: saved LoRA rng is malformed", path);
            lora_rng->s[i] = strtoull(h, NULL, 16);
        }
    }
#undef NUM
    return RLHF_OK;
}

/* ---- checkpoints ---- */

typedef struct {
    const sft_params *p;
    model_bundle *b;
    lora *lo;          /* NULL: full fine-tuning */
    train *t;
    const char *state_path;
    uint64_t data_hash;
} saver;

int sft_checkpoint_save(const char *out_dir, const char *base_dir, const model_bundle *b, const lora *lo,
                        const train *t, const char *state_path, const train_state_info *info, rlhf_error *err) {
    int rc;
    if (lo) {
        lora_save_info li = {base_dir, "CAUSAL_LM"};
        rc = lora_save(lo, out_dir, &li, NULL, 0, err);
    } else {
        rc = model_bundle_save(b, out_dir, err);
    }
    return rc ? rc : train_state_save(state_path, t, info, err);
}

static int save_checkpoint(void *ctx, long step, const rng_t *rng, rlhf_error *err) {
    saver *s = ctx;
    train_state_info info = {step, *rng, s->data_hash, 0, run_to_json(s->p, s->lo ? &s->lo->rng : NULL)};
    if (!info.run_json) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory saving the run");
    int rc = sft_checkpoint_save(s->p->out_dir, s->p->model_dir, s->b, s->lo, s->t, s->state_path, &info, err);
    free(info.run_json);
    return rc;
}

/* ---- the run ---- */

int sft_run(const sft_params *pin, sft_summary *sum_out, rlhf_error *err) {
    sft_params p = *pin;
    sft_summary sum;
    memset(&sum, 0, sizeof sum);
    sum.first_val_loss = sum.final_val_loss = sum.final_loss = NAN;
    sum.saved_step = -1;
    model_bundle b = {0};
    lora lo = {0};
    train t = {0};
    sft_texts texts_owned = {0};
    sft_encoded enc = {0};
    sft_source src = {0};
    train_state_info info = {0};
    cJSON *saved_run = NULL;
    char *state_path = NULL;
    rng_t lora_rng;
    int have_lora_rng = 0, rc = RLHF_OK;
    const double t_start = now_s();

    if (!p.out_dir || !*p.out_dir) return rlhf_errorf(err, RLHF_ERR_INVALID, "no output directory given (--out)");
    state_path = path_join(p.out_dir, SFT_STATE_FILE);
    if (!state_path) goto nomem;

    /* ---- configuration ---- */
    if (p.resume) {
        if (!file_exists(state_path)) {
            rc = rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "%s: no training state to resume (run without --resume first)",
                             state_path);
            goto done;
        }
        rc = train_state_read_info(state_path, &info, err);
        if (rc) goto done;
        saved_run = cJSON_Parse(info.run_json);
        if (!saved_run) {
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: saved run is not valid JSON", state_path);
            goto done;
        }
        const char *saved_data = NULL;
        rc = run_from_json(&p, saved_run, state_path, &lora_rng, &saved_data, err);
        if (rc) goto done;
        have_lora_rng = p.lora.rank > 0;
        if (!p.texts && (!p.data_path || !*p.data_path)) {
            if (strncmp(saved_data, "db:", 3) == 0) {
                rc = rlhf_errorf(err, RLHF_ERR_INVALID, "the run in %s was trained on the database %s: resume with --db %s",
                                 p.out_dir, saved_data + 3, saved_data + 3);
                goto done;
            }
            p.data_path = saved_data;
        }
    } else {
        if (!p.model_dir || !*p.model_dir) {
            rc = rlhf_errorf(err, RLHF_ERR_INVALID, "no model given (--model DIR)");
            goto done;
        }
        if (!p.texts && (!p.data_path || !*p.data_path)) {
            rc = rlhf_errorf(err, RLHF_ERR_INVALID, "no training data given (--data FILE.jsonl or --db FILE)");
            goto done;
        }
        if (file_exists(state_path)) {
            rc = rlhf_errorf(err, RLHF_ERR_INVALID,
                             "%s already holds a training run (%s); pass --resume to continue it or choose another --out",
                             p.out_dir, SFT_STATE_FILE);
            goto done;
        }
    }

    /* ---- model and tokenizer (full fine-tuning resumes from out_dir's model, LoRA from the base) ---- */
    const char *load_from = p.resume && p.lora.rank == 0 ? p.out_dir : p.model_dir;
    rc = model_bundle_load(&b, load_from, err);
    if (rc) goto done;
    if (!b.tok) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "%s: the model has no tokenizer (SFT needs one to read text)", load_from);
        goto done;
    }
    if (tok_vocab_size(b.tok) > b.m.config.vocab_size) {
        rc = rlhf_errorf(err, RLHF_ERR_SHAPE,
                         "%s: the tokenizer has %d ids but the model's vocabulary is %d: they do not belong together",
                         load_from, tok_vocab_size(b.tok), b.m.config.vocab_size);
        goto done;
    }
    int32_t eos = tok_eos_id(b.tok);
    if (eos < 0 && b.defaults.n_eos > 0) eos = b.defaults.eos_ids[0];
    if (eos < 0) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID,
                         "%s: the tokenizer has no EOS token; SFT appends EOS to every example so the model learns to "
                         "stop (add one to tokenizer_config.json's eos_token)",
                         load_from);
        goto done;
    }
    if (p.max_length <= 0 || p.max_length > b.m.config.context) p.max_length = b.m.config.context;
    /* The default targets written out, so the recorded configuration says what trained. */
    if (p.lora.rank > 0 && !p.lora.targets)
        p.lora.targets = b.m.config.family == MODEL_FAMILY_GPT2 ? "c_attn" : "q_proj,v_proj";

    /* ---- data ---- */
    const sft_texts *texts = p.texts;
    const char *source = p.data_path ? p.data_path : (p.data_desc ? p.data_desc : "database");
    if (!texts) {
        rc = sft_texts_read_jsonl(&texts_owned, p.data_path, err);
        if (rc) goto done;
        texts = &texts_owned;
    }
    if (texts->n == 0) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "%s: no examples (the dataset is empty)", source);
        goto done;
    }
    sft_encoder ec = {b.tok, b.chat_template, b.bos_token, b.eos_token, b.add_bos, eos, p.max_length, p.truncate};
    rc = sft_encode(&enc, texts, &ec, source, err);
    if (rc) goto done;
    if (enc.n == 0) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID,
                         "%s: no example has a token to learn from after truncation to %d tokens (%zu dropped)", source,
                         p.max_length, enc.n_dropped);
        goto done;
    }
    uint64_t data_hash = sft_encoded_hash(&enc);
    if (p.resume && data_hash != info.data_hash) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID,
                         "%s: this data (as encoded) is not what the run in %s was trained on; resume with the same data",
                         source, p.out_dir);
        goto done;
    }
    int32_t pad = tok_pad_id(b.tok);
    if (pad < 0) pad = eos;
    rc = sft_source_init(&src, &enc, p.val_fraction, p.seed, p.train.batch, p.train.accum, pad, err);
    if (rc) goto done;
    sum.n_train = src.n_train;
    sum.n_val = src.n_val;
    if (p.steps <= 0) {
        long per = (long)p.train.batch * p.train.accum;
        long per_epoch = ((long)src.n_train + per - 1) / per;
        p.steps = (per_epoch < 1 ? 1 : per_epoch) * (p.epochs < 1 ? 1 : p.epochs);
    }
    if (p.eval_every < 0) p.eval_every = 100;
    if (p.save_every < 0) p.save_every = 500;
    sum.total_steps = p.steps;
    sum.run_json = run_to_json(&p, NULL);
    if (!sum.run_json) goto nomem;
    if (p.on_data && (rc = p.on_data(&enc, &src, b.tok, sum.run_json, p.on_data_ctx, err))) goto done;
    if (p.prepare_only) goto done;

    /* ---- trainer ---- */
    int longest = 2;
    for (size_t i = 0; i < enc.n; i++)
        if (enc.len[i] > longest) longest = enc.len[i];
    p.train.context = longest - 1;
    p.train.optim.total_steps = p.steps;
    rc = optim_params_validate(&p.train.optim, err);
    if (rc) goto done;
    if (p.lora.rank > 0) {
        rng_t init;
        rng_seed(&init, p.seed);
        rc = lora_init(&lo, &b.m, &p.lora, &init, err);
        if (rc) goto done;
        if (have_lora_rng) lo.rng = lora_rng;
        lora_attach(&lo, &b.m);
        rc = train_init_lora(&t, &b.m, &lo, &p.train, err);
        sum.lora = 1;
        sum.n_params_trained = 0;
        for (int i = 0; i < lo.n_tensors; i++) sum.n_params_trained += (size_t)lo.tensors[i].numel;
    } else {
        rc = train_init(&t, &b.m, &p.train, err);
        sum.n_params_trained = b.m.n_params;
    }
    if (rc) goto done;
    long step = 0;
    rng_t rng;
    rng_seed(&rng, p.seed);
    if (p.resume) {
        train_state_info full;
        rc = train_state_load(state_path, &t, &full, err);
        if (rc) goto done;
        free(full.run_json);
        rng = full.rng;
        step = full.step;
        sum.saved_step = step;
    }
    sum.start_step = sum.steps_done = step;
    rc = file_mkdir_p(p.out_dir, err);
    if (rc) goto done;

    saver sv = {&p, &b, p.lora.rank > 0 ? &lo : NULL, &t, state_path, data_hash};
    train_loop_params lp;
    memset(&lp, 0, sizeof lp);
    lp.t = &t;
    lp.head = train_head_lm;
    lp.data = sft_source_data(&src);
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
    rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory setting up the SFT run");
done:
    sum.elapsed_s = now_s() - t_start;
    if (sum_out) *sum_out = sum;
    else sft_summary_free(&sum);
    train_free(&t);
    if (b.m.lora) lora_detach(&b.m);
    lora_free(&lo);
    model_bundle_free(&b);
    sft_source_free(&src);
    sft_encoded_free(&enc);
    sft_texts_free(&texts_owned);
    free(info.run_json);
    cJSON_Delete(saved_run);
    free(state_path);
    return rc;
}
