/* rollout_store.c — rollouts as generations in the database (rollout_store.h). */
#include "repl/rollout_store.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "repl/out.h"
#include "src/core/fileio.h"

int rollout_store_init(rollout_store *rs, store *db, const char *model, const char *const *prompts, size_t n_prompts,
                       const char *trainer, int64_t run_id, const char *reward_source) {
    memset(rs, 0, sizeof *rs);
    rs->db = db;
    rs->model = model;
    rs->prompts = prompts;
    rs->n_prompts = n_prompts;
    rs->trainer = trainer;
    rs->run_id = run_id;
    rs->reward_source = reward_source;
    rs->prompt_ids = calloc(n_prompts ? n_prompts : 1, sizeof *rs->prompt_ids);
    return rs->prompt_ids ? 0 : 1;
}

void rollout_store_free(rollout_store *rs) {
    free(rs->prompt_ids);
    rs->prompt_ids = NULL;
}

static int prompt_id(rollout_store *rs, size_t i, int chat, rlhf_error *err) {
    if (rs->prompt_ids[i]) return RLHF_OK;
    char *messages = NULL;
    if (chat) {
        cJSON *a = cJSON_CreateArray(), *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "role", "user");
        cJSON_AddStringToObject(o, "content", rs->prompts[i]);
        cJSON_AddItemToArray(a, o);
        messages = cJSON_PrintUnformatted(a);
        cJSON_Delete(a);
        if (!messages) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    }
    store_prompt p = {rs->prompts[i], NULL, NULL, messages, NULL};
    int rc = store_add_prompt(rs->db, &p, &rs->prompt_ids[i], err);
    free(messages);
    return rc;
}

int rollout_store_sink(void *ctx, const rollout_record *r, rlhf_error *err) {
    rollout_store *rs = ctx;
    if (!rs->db) return RLHF_OK;
    int rc = prompt_id(rs, r->prompt, r->chat, err);
    if (rc) return rlhf_error_prefix(err, "storing a rollout: ");
    cJSON *o = cJSON_CreateObject(), *ro = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "strategy", "sample");
    cJSON_AddNumberToObject(o, "temperature", round(r->temperature * 1e6) / 1e6); /* as given, not the float's digits */
    cJSON_AddNumberToObject(o, "max_new_tokens", r->max_new_tokens);
    cJSON_AddStringToObject(ro, "trainer", rs->trainer);
    cJSON_AddNumberToObject(ro, "run_id", (double)rs->run_id);
    cJSON_AddNumberToObject(ro, "step", (double)r->step);
    if (isfinite(r->reward)) cJSON_AddNumberToObject(ro, "reward", r->reward);
    else cJSON_AddNullToObject(ro, "reward");
    cJSON_AddStringToObject(ro, "reward_source", rs->reward_source ? rs->reward_source : "");
    cJSON_AddItemToObject(o, "rollout", ro);
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!json) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    store_generation g = {0};
    g.prompt_id = rs->prompt_ids[r->prompt];
    g.model = rs->model;
    g.text = r->completion;
    g.n_tokens = r->n_ids;
    g.token_ids = r->ids;
    g.n_token_ids = (size_t)r->n_ids;
    g.decoding_json = json;
    g.strategy = "sample";
    g.has_seed = 1;
    g.seed = r->seed;
    g.logprob = NAN;
    g.latency_ms = NAN;
    int64_t id = 0;
    rc = store_add_generation(rs->db, &g, &id, err);
    free(json);
    if (rc) return rlhf_error_prefix(err, "storing a rollout: ");
    rs->n_stored++;
    return RLHF_OK;
}

/* {"prompt": "..."} lines; errors name FILE:LINE. */
int rollout_prompts_read(const char *path, char ***out, size_t *n) {
    rlhf_error err = {0};
    char *text = NULL;
    size_t len = 0;
    *out = NULL;
    *n = 0;
    if (file_read_all(path, &text, &len, &err)) return out_fail(&err);
    size_t cap = 64, line_no = 0;
    char **v = malloc(cap * sizeof *v);
    int rc = v ? 0 : 1;
    for (char *line = text; !rc && line && *line;) {
        char *end = strchr(line, '\n');
        if (end) *end = 0;
        line_no++;
        const char *q = line;
        while (*q == ' ' || *q == '\t' || *q == '\r') q++;
        if (*q) {
            cJSON *o = cJSON_Parse(line);
            const cJSON *pr = cJSON_GetObjectItemCaseSensitive(o, "prompt");
            if (!o || !cJSON_IsString(pr) || !pr->valuestring[0]) {
                out_error("%s:%zu: %s", path, line_no, !o ? "not valid JSON" : "needs a non-empty \"prompt\" string");
                rc = 1;
            } else {
                if (*n == cap) {
                    char **g = realloc(v, 2 * cap * sizeof *v);
                    if (!g) rc = 1;
                    else v = g, cap *= 2;
                }
                if (!rc && !(v[(*n)++] = strdup(pr->valuestring))) rc = 1;
            }
            cJSON_Delete(o);
        }
        line = end ? end + 1 : NULL;
    }
    free(text);
    if (!rc && *n == 0) {
        out_error("%s: no prompts", path);
        rc = 1;
    }
    *out = v;
    return rc;
}

int rollout_prompts_load(const char *path, const char *db_path, char ***out, size_t *n) {
    if (path) return rollout_prompts_read(path, out, n);
    *out = NULL;
    *n = 0;
    store *db = NULL;
    rlhf_error err = {0};
    store_open_params op = {1, 0};
    int rc = store_open_ex(&db, db_path, &op, &err);
    if (!rc) rc = store_get_prompt_texts(db, out, n, &err);
    store_close(&db);
    if (rc) return out_fail(&err);
    if (*n == 0) {
        out_error("%s: no prompts stored (import some with rlhf db import, or give --prompts FILE.jsonl)", db_path);
        return 1;
    }
    return 0;
}

int rollout_session_open(rollout_session *s, const char *kind, const char *db_path, const char *json_log, const char *model,
                         const char *config, const char *const *prompts, size_t n_prompts, const char *reward_source,
                         unsigned health_kinds) {
    memset(s, 0, sizeof *s);
    health_init(&s->h, health_kinds, NULL);
    run_log_params rlp = {kind, db_path, json_log, 0, model, config};
    if (run_log_open(&s->rl, &rlp)) {
        health_free(&s->h);
        return 1;
    }
    if (s->rl.db && rollout_store_init(&s->rs, s->rl.db, model, prompts, n_prompts, kind, s->rl.run_id, reward_source)) {
        out_error("out of memory");
        run_log_finish(&s->rl, "failed", NULL);
        health_free(&s->h);
        return 1;
    }
    s->stop = 0;
    run_log_sigint_catch(&s->stop, &s->old);
    return 0;
}

/* The run log's progress, then the health rules on each step's metrics. */
static void session_progress(const train_progress *pg, void *ctx) {
    rollout_session *s = ctx;
    run_log_progress(pg, &s->rl);
    if (pg->event != TRAIN_EVENT_STEP) return;
    health_warning w[4];
    const int n = health_observe(&s->h, pg->step, &pg->train, w, 4);
    for (int i = 0; i < n; i++) run_log_warning(&s->rl, w[i].step, w[i].code, w[i].text);
}

void rollout_session_hooks(rollout_session *s, volatile sig_atomic_t **stop, train_progress_fn *progress,
                           void **progress_ctx, rollout_sink_fn *sink, void **sink_ctx) {
    *stop = &s->stop;
    *progress = session_progress;
    *progress_ctx = s;
    *sink = s->rl.db ? rollout_store_sink : NULL;
    *sink_ctx = s->rl.db ? &s->rs : NULL;
}

int rollout_session_end(rollout_session *s, int r, const rlhf_error *err, const char *out_dir) {
    run_log_sigint_restore(&s->old);
    out_progress_end();
    if (r == RLHF_ERR_INTERRUPTED) {
        run_log_finish(&s->rl, "stopped", out_dir);
        out_fail(err);
        return 130;
    }
    if (r) {
        run_log_finish(&s->rl, "failed", NULL);
        return out_fail(err);
    }
    run_log_finish(&s->rl, "done", out_dir);
    return -1;
}

void rollout_session_close(rollout_session *s, const char *db_path) {
    if (s->rs.n_stored) out_printf("%ld rollouts stored in %s\n", s->rs.n_stored, db_path);
    rollout_store_free(&s->rs);
    health_free(&s->h);
}
