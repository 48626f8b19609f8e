/* store_browse.c — the store's browsing reads (see "browsing" in store.h), over db_browse.c. */
#include <stdlib.h>
#include <string.h>

#include "feedback/store_private.h"

/* The db/ rows have the same fields as the store's: one adapter per row kind. */
typedef struct {
    store_model_fn model;
    store_run_fn run;
    store_prompt_generation_fn generation;
    void *ctx;
} relay;

static int model_relay(void *ctx, const db_model_view *v) {
    relay *r = ctx;
    store_model_info m = {v->id, v->name, v->path, v->family, v->made_by, v->parent, v->created_at};
    return r->model(r->ctx, &m);
}

int store_models_each(store *s, store_model_fn fn, void *ctx, rlhf_error *err) {
    relay r = {.model = fn, .ctx = ctx};
    return db_models_each(s->d, model_relay, &r, err);
}

typedef struct {
    const char *name;
    char *path;
    int found;
} path_find;

static int path_of(void *ctx, const store_model_info *m) {
    path_find *f = ctx;
    if (strcmp(m->name, f->name) != 0) return 0;
    f->found = 1;
    f->path = m->path ? strdup(m->path) : NULL;
    return 1;
}

int store_model_path(store *s, const char *name, char **path, rlhf_error *err) {
    *path = NULL;
    path_find f = {name, NULL, 0};
    int rc = store_models_each(s, path_of, &f, err);
    if (rc < 0) return rc;
    if (!f.found) return rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "no model named '%s' in the database (see /models)", name);
    if (!f.path) return rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "model '%s' has no path in the database", name);
    *path = f.path;
    return 0;
}

static int run_relay(void *ctx, const db_run_view *v) {
    relay *r = ctx;
    store_run_info i = {v->id, v->kind, v->status, v->input_model, v->output_model, v->started_at, v->ended_at,
                        v->n_metrics, v->config_json};
    return r->run(r->ctx, &i);
}

int store_runs_each(store *s, store_run_fn fn, void *ctx, rlhf_error *err) {
    relay r = {.run = fn, .ctx = ctx};
    return db_runs_each(s->d, run_relay, &r, err);
}

typedef struct {
    store_metric_fn fn;
    void *ctx;
} metric_relay_ctx;

static int metric_relay(void *ctx, const db_metric_view *v) {
    metric_relay_ctx *r = ctx;
    store_metric_info m = {v->step, v->name, v->value};
    return r->fn(r->ctx, &m);
}

int store_metrics_each(store *s, int64_t run_id, store_metric_fn fn, void *ctx, rlhf_error *err) {
    metric_relay_ctx r = {fn, ctx};
    return db_metrics_each(s->d, run_id, metric_relay, &r, err);
}

int store_queue_next(store *s, const char *annotator, int64_t *prompt_id, rlhf_error *err) {
    int64_t a = 0;
    int rc = db_annotator_find(s->d, annotator, &a, err);
    if (rc < 0) return rc;
    return db_queue_next(s->d, a, prompt_id, err);
}

int store_queue_progress(store *s, const char *annotator, int64_t *done, int64_t *left, rlhf_error *err) {
    int64_t a = 0;
    int rc = db_annotator_find(s->d, annotator, &a, err);
    if (rc < 0) return rc;
    return db_queue_progress(s->d, a, done, left, err);
}

static int generation_relay(void *ctx, const db_prompt_generation_view *v) {
    relay *r = ctx;
    store_prompt_generation g = {v->generation_id, v->text, v->model, v->strategy, v->decoding_json,
                                 v->prompt_text, v->prompt_messages_json, v->logprob, v->n_tokens};
    return r->generation(r->ctx, &g);
}

int store_prompt_generations_each(store *s, int64_t prompt_id, store_prompt_generation_fn fn, void *ctx,
                                  rlhf_error *err) {
    relay r = {.generation = fn, .ctx = ctx};
    return db_prompt_generations_each(s->d, prompt_id, generation_relay, &r, err);
}
