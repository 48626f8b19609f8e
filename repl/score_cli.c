/* score_cli.c — the run around score_train_run for `rlhf reward` and `rlhf classify` (see
 * score_cli.h). */
#include "repl/score_cli.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repl/out.h"
#include "repl/run_log.h"
#include "src/core/fileio.h"
#include "src/train/score_head.h"

static const char *const truncate_names[] = {"error", "left", "drop"};

int score_cli_truncate(const char *v, score_truncate *out, const char *usage) {
    for (int i = 0; i < 3; i++)
        if (strcmp(v, truncate_names[i]) == 0) {
            *out = (score_truncate)i;
            return 0;
        }
    out_error("--truncate: expected error, left or drop, got '%s'", v);
    out_error("usage: %s", usage);
    return 2;
}

const char *score_cli_truncate_name(score_truncate t) { return truncate_names[t]; }

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

int score_cli_load_model(const trainer_flags *f, int K, const char *const *labels, model_bundle *b) {
    rlhf_error err = {0};
    /* a LoRA run keeps only the adapter in --out: it resumes from the base it started from */
    const char *path = f->resume && f->lora_rank == 0 ? f->out : f->model;
    if (model_bundle_load(b, path, &err)) return out_fail(&err);
    if (!b->tok) {
        out_error("%s has no tokenizer (tokenizer.json): the texts cannot be encoded", path);
        model_bundle_free(b);
        return 1;
    }
    if (tok_vocab_size(b->tok) > b->m.config.vocab_size) {
        out_error("%s: the tokenizer has %d ids but the model's vocabulary has %d: they do not belong together", path,
                  tok_vocab_size(b->tok), b->m.config.vocab_size);
        model_bundle_free(b);
        return 1;
    }
    if (b->m.config.num_labels > 0) {
        if (b->m.config.num_labels != K) {
            out_error("%s is a classifier of %d labels; this run needs %d", path, b->m.config.num_labels, K);
            model_bundle_free(b);
            return 1;
        }
    } else {
        if (f->resume && f->lora_rank == 0) {
            out_error("%s is not a classifier: nothing to resume", path);
            model_bundle_free(b);
            return 1;
        }
        /* HF reads the score at the last token that is not pad_token_id: a pad id the texts never
         * end with (the tokenizer's pad, else EOS, which we never append) keeps both readings equal */
        int32_t pad = tok_pad_id(b->tok);
        if (pad < 0) pad = b->m.config.eos_id >= 0 ? b->m.config.eos_id : tok_eos_id(b->tok);
        if (pad < 0 || pad >= b->m.config.vocab_size) pad = 0;
        model lm = b->m, cls;
        rng_t rng;
        rng_seed(&rng, f->seed ^ 0x5c0feull);
        /* transformers initialises the score Linear with N(0, initializer_range = 0.02) */
        if (score_model_from_lm(&cls, &lm, K, pad, 0.02f, &rng, &err)) {
            model_bundle_free(b);
            return out_fail(&err);
        }
        model_free(&lm);
        b->m = cls;
    }
    if (labels && !b->labels) {
        b->labels = calloc((size_t)K, sizeof(char *));
        for (int i = 0; b->labels && i < K; i++) b->labels[i] = dup_or_null(labels[i]);
    }
    return 0;
}

int score_cli_own_flag(int argc, char **argv, int *i, char *name, size_t size, const char **value, const char *usage) {
    if (strncmp(argv[*i], "--", 2) != 0) {
        out_error("unexpected argument '%s'", argv[*i]);
        out_error("usage: %s", usage);
        return 2;
    }
    return trainer_flag_value(argc, argv, i, name, size, value, usage);
}

int score_cli_setup(const trainer_flags *f, score_task task, model_bundle *b, const score_data *d, size_t n_in,
                    int max_len, const char *what, score_train_params *p) {
    memset(p, 0, sizeof *p);
    size_t *train_idx = NULL, *val_idx = NULL, n_train = 0, n_val = 0;
    rlhf_error err = {0};
    if (score_split(d->n_examples, f->val_fraction, f->seed, &train_idx, &n_train, &val_idx, &n_val, &err)) return out_fail(&err);
    /* a label the model never sees in training cannot be learned: say so instead of training */
    for (int k = 0; task == SCORE_TASK_CLASSIFY && k < b->m.config.num_labels; k++) {
        size_t seen = 0;
        for (size_t i = 0; i < n_train; i++) seen += (int)d->labels[train_idx[i]] == k;
        if (!seen) {
            out_error("label \"%s\" has no example in the training split (it is only in the held-out part): add examples or "
                      "lower --val-fraction",
                      b->labels && b->labels[k] ? b->labels[k] : "?");
            free(train_idx);
            free(val_idx);
            return 1;
        }
    }
    out_printf("%zu %s (%zu training, %zu held out)", d->n_examples, what, n_train, n_val);
    if (d->n_truncated) out_printf(", %zu texts cut to their last %d tokens", d->n_truncated, max_len);
    if (d->n_dropped) out_printf(", %zu of %zu %s dropped (longer than %d tokens)", d->n_dropped, n_in, what, max_len);
    out_printf("; longest text %d tokens\n", d->max_len);
    p->task = task;
    p->bundle = b;
    p->data = d;
    p->train_idx = train_idx;
    p->n_train = n_train;
    p->val_idx = val_idx;
    p->n_val = n_val;
    train_params_defaults(&p->train);
    trainer_flags_optim(f, &p->train.optim);
    p->train.batch = f->batch;
    p->train.accum = f->accum;
    p->steps = trainer_flags_total_steps(f, (long)n_train);
    p->eval_every = f->eval_every;
    p->save_every = f->save_every;
    p->seed = f->seed;
    p->out_dir = f->out;
    p->resume = f->resume;
    trainer_flags_lora(f, &p->lora);
    p->base_model = f->model;
    return 0;
}

/* ---- configuration ---- */

char *score_cli_run_json(const trainer_flags *f, const char *kind, const char *extra) {
    cJSON *r = cJSON_CreateObject();
    if (!r) return NULL;
    cJSON_AddStringToObject(r, "kind", kind);
    if (f->model) cJSON_AddStringToObject(r, "initial_model", f->model);
    if (f->data) cJSON_AddStringToObject(r, "data", f->data);
    if (f->db) cJSON_AddStringToObject(r, "db", f->db);
    cJSON_AddNumberToObject(r, "steps", (double)f->steps);
    cJSON_AddNumberToObject(r, "epochs", (double)f->epochs);
    cJSON_AddNumberToObject(r, "lr", f->lr);
    cJSON_AddNumberToObject(r, "min_lr", f->min_lr);
    cJSON_AddNumberToObject(r, "warmup", (double)f->warmup);
    cJSON_AddNumberToObject(r, "weight_decay", f->weight_decay);
    cJSON_AddNumberToObject(r, "grad_clip", f->grad_clip);
    cJSON_AddNumberToObject(r, "batch", f->batch);
    cJSON_AddNumberToObject(r, "accum", f->accum);
    cJSON_AddNumberToObject(r, "max_length", f->max_length);
    cJSON_AddNumberToObject(r, "val_fraction", f->val_fraction);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)f->seed);
    cJSON_AddStringToObject(r, "seed", seed);
    cJSON_AddNumberToObject(r, "eval_every", (double)f->eval_every);
    cJSON_AddNumberToObject(r, "save_every", (double)f->save_every);
    if (f->lora_rank > 0) {
        cJSON *l = cJSON_AddObjectToObject(r, "lora");
        cJSON_AddNumberToObject(l, "rank", f->lora_rank);
        cJSON_AddNumberToObject(l, "alpha", f->lora_alpha);
        cJSON_AddNumberToObject(l, "dropout", f->lora_dropout);
        if (f->lora_targets) cJSON_AddStringToObject(l, "targets", f->lora_targets);
    }
    cJSON *x = extra ? cJSON_Parse(extra) : NULL;
    if (x) cJSON_AddItemToObject(r, "extra", x);
    char *s = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return s;
}

static double num(const cJSON *r, const char *k, double def) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(r, k);
    return cJSON_IsNumber(j) ? j->valuedouble : def;
}

/* Strings of the saved run live as long as the process (the flags point into them). */
static cJSON *g_saved_run;

int score_cli_restore(trainer_flags *f, char **extra) {
    *extra = NULL;
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", f->out, SCORE_STATE_FILE);
    train_state_info info;
    rlhf_error err = {0};
    if (!file_exists(path)) {
        out_error("%s: no training state to resume (run without --resume first)", path);
        return 1;
    }
    if (train_state_read_info(path, &info, &err)) return out_fail(&err);
    cJSON *r = cJSON_Parse(info.run_json);
    free(info.run_json);
    if (!r) {
        out_error("%s: the saved run configuration is not valid JSON", path);
        return 1;
    }
    cJSON_Delete(g_saved_run);
    g_saved_run = r;
    if (!(f->given & TRAINER_FLAG_STEPS)) f->steps = (long)num(r, "steps", (double)f->steps);
    f->epochs = (long)num(r, "epochs", (double)f->epochs);
    f->lr = num(r, "lr", f->lr);
    f->min_lr = num(r, "min_lr", f->min_lr);
    f->warmup = (long)num(r, "warmup", (double)f->warmup);
    f->weight_decay = num(r, "weight_decay", f->weight_decay);
    f->grad_clip = num(r, "grad_clip", f->grad_clip);
    f->batch = (int)num(r, "batch", f->batch);
    f->accum = (int)num(r, "accum", f->accum);
    f->max_length = (int)num(r, "max_length", f->max_length);
    f->val_fraction = num(r, "val_fraction", f->val_fraction);
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(r, "seed");
    if (cJSON_IsString(seed)) f->seed = strtoull(seed->valuestring, NULL, 10);
    if (!(f->given & TRAINER_FLAG_EVAL_EVERY)) f->eval_every = (long)num(r, "eval_every", (double)f->eval_every);
    if (!(f->given & TRAINER_FLAG_SAVE_EVERY)) f->save_every = (long)num(r, "save_every", (double)f->save_every);
    const cJSON *s;
    if (!f->data && !f->db) {
        if (cJSON_IsString(s = cJSON_GetObjectItemCaseSensitive(r, "data"))) f->data = s->valuestring;
        if (cJSON_IsString(s = cJSON_GetObjectItemCaseSensitive(r, "db"))) f->db = s->valuestring;
    }
    if (cJSON_IsString(s = cJSON_GetObjectItemCaseSensitive(r, "initial_model"))) f->model = s->valuestring;
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(r, "lora");
    f->lora_rank = (int)num(l, "rank", 0);
    f->lora_alpha = num(l, "alpha", f->lora_alpha);
    f->lora_dropout = num(l, "dropout", f->lora_dropout);
    f->lora_targets = cJSON_IsString(s = cJSON_GetObjectItemCaseSensitive(l, "targets")) ? s->valuestring : NULL;
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(r, "extra");
    if (x) *extra = cJSON_PrintUnformatted(x);
    return 0;
}

/* ---- the run ---- */

static volatile sig_atomic_t g_stop;

static void on_sigint(int sig) {
    (void)sig;
    g_stop = 1;
}

int score_cli_train(const char *kind, const trainer_flags *f, score_train_params *p) {
    run_log rl;
    const char *dbpath = f->runs_db ? f->runs_db : f->db;
    run_log_params rlp = {kind, dbpath, f->json_log, f->resume, f->model, p->run_json};
    if (run_log_open(&rl, &rlp)) return 1;
    p->progress = run_log_progress;
    p->progress_ctx = &rl;
    g_stop = 0;
    p->stop = &g_stop;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C kills as usual */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);
    train_loop_summary s;
    rlhf_error err = {0};
    int rc = score_train_run(p, &s, &err);
    sigaction(SIGINT, &old, NULL);
    out_progress_end();
    if (rc == RLHF_ERR_INTERRUPTED) {
        run_log_finish(&rl, "stopped", p->out_dir);
        out_printf("interrupted at step %ld of %ld: saved the model and training state (step %ld) to %s\n", s.steps_done,
                   p->steps, s.saved_step, p->out_dir);
        out_printf("continue with: rlhf %s train --out %s --resume\n", kind, p->out_dir);
        return 130;
    }
    if (rc) {
        run_log_finish(&rl, "failed", NULL);
        out_fail(&err);
        if (s.saved_step >= 0) out_error("the last checkpoint in %s is from step %ld", p->out_dir, s.saved_step);
        return 1;
    }
    run_log_finish(&rl, "done", p->out_dir);
    char el[32];
    run_log_duration(el, sizeof el, s.elapsed_s);
    out_printf("trained %zu parameters on %zu examples: %ld steps in %s (%.0f tok/s); final training loss %.4f\n",
               p->bundle->m.n_params, p->n_train, s.steps_done, el, s.tokens_per_s, s.final_loss);
    if (dbpath) out_printf("recorded the run in %s\n", dbpath);
    return 0;
}

void score_cli_print_saved(const trainer_flags *f) {
    if (f->lora_rank > 0)
        out_printf("saved %s: adapter_config.json, adapter_model.safetensors (LoRA + score.weight), %s, %s (base: %s)\n", f->out,
                   SCORE_CLASSIFIER_FILE, SCORE_STATE_FILE, f->model);
    else
        out_printf("saved %s: config.json, model.safetensors, tokenizer.json, %s\n", f->out, SCORE_STATE_FILE);
}
