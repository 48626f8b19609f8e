/* store.c — opening the feedback store and recording: models, runs, prompts, generations, and
 * the judgements (rankings, pairs, ratings, skips) with their checks, audit entries and undo.
 *
 * Every recording function is one BEGIN IMMEDIATE ... COMMIT: the judgement, the rows derived
 * from it (a ranking's pairs) and its audit entry become visible together or not at all. Checks
 * run inside the transaction, after the write lock is taken, so a duplicate check cannot race
 * with another process writing the same judgement. */
#include "feedback/store_private.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "feedback/pair_check.h"
#include "feedback/ranking.h"

/* ---- opening ---- */

int store_schema_version(void) { return db_schema_version(); }

int store_open_ex(store **out, const char *path, const store_open_params *params,
                  rlhf_error *err) {
    *out = NULL;
    if (!path) return rlhf_errorf(err, RLHF_ERR_INVALID, "store_open: no path");
    store *s = calloc(1, sizeof *s);
    if (!s) return rlhf_errorf(err, RLHF_ERR_NOMEM, "opening %s: out of memory", path);
    db_open_params dp = {params ? params->must_exist : 0, params ? params->busy_wait_ms : 0};
    int rc = db_open(&s->d, path, &dp, err);
    if (rc) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int store_open(store **out, const char *path, rlhf_error *err) {
    return store_open_ex(out, path, NULL, err);
}

void store_close(store **sp) {
    if (!sp || !*sp) return;
    db_close(&(*sp)->d);
    free(*sp);
    *sp = NULL;
}

void store_get_open_info(const store *s, store_open_info *info) {
    db_open_info di;
    db_get_open_info(s->d, &di);
    info->created = di.created;
    info->version_before = di.version_before;
    info->version_after = di.version_after;
    info->backup_path = di.backup_path;
}

const char *store_verdict_name(store_verdict v) {
    switch (v) {
    case STORE_VERDICT_BETTER: return "better";
    case STORE_VERDICT_TIE: return "tie";
    case STORE_VERDICT_BOTH_BAD: return "both_bad";
    }
    return "better";
}

static int verdict_parse(const char *name, store_verdict *v) {
    if (!name) return -1;
    if (strcmp(name, "better") == 0) *v = STORE_VERDICT_BETTER;
    else if (strcmp(name, "tie") == 0) *v = STORE_VERDICT_TIE;
    else if (strcmp(name, "both_bad") == 0) *v = STORE_VERDICT_BOTH_BAD;
    else return -1;
    return 0;
}

/* ---- small shared helpers ---- */

int store_json_is_array(const char *json) {
    if (!json) return 0;
    cJSON *j = cJSON_Parse(json);
    int ok = cJSON_IsArray(j);
    cJSON_Delete(j);
    return ok;
}

static int json_is_valid(const char *json) {
    if (!json) return 1;
    cJSON *j = cJSON_Parse(json);
    cJSON_Delete(j);
    return j != NULL;
}

int store_annotator_id_tx(store *s, const char *name, int64_t *id, rlhf_error *err) {
    if (!name || !*name) return rlhf_errorf(err, RLHF_ERR_INVALID, "a judgement needs an annotator name");
    int rc = db_annotator_find(s->d, name, id, err);
    if (rc == 0 && *id == 0) rc = db_annotator_insert(s->d, name, id, err);
    return rc;
}

int store_prompt_id_tx(store *s, const store_prompt *p, int64_t *id, rlhf_error *err) {
    db_prompt_row row = {p->text, p->template_text, p->examples_json, p->messages_json, p->tags};
    int rc = db_prompt_find(s->d, &row, id, err);
    if (rc == 0 && *id == 0) rc = db_prompt_insert(s->d, &row, id, err);
    return rc;
}

/* The annotator's id (created on first use) and the guideline's (0 when none was given). */
static int judge_ids(store *s, const store_judge *j, int64_t *annotator_id, int64_t *guideline_id,
                     rlhf_error *err) {
    *guideline_id = 0;
    int rc = store_annotator_id_tx(s, j->annotator, annotator_id, err);
    if (rc || (!j->guideline_version && !j->guideline_text)) return rc;
    const char *version = j->guideline_version ? j->guideline_version : "";
    rc = db_guideline_find(s->d, version, j->guideline_text, guideline_id, err);
    if (rc == 0 && *guideline_id == 0)
        rc = db_guideline_insert(s->d, version, j->guideline_text, guideline_id, err);
    return rc;
}

static int check_judge(const store_judge *j, rlhf_error *err) {
    if (!j || !j->annotator || !*j->annotator)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "a judgement needs an annotator name");
    return 0;
}

/* A generation's prompt and text, copied out of the database. */
typedef struct {
    int64_t prompt_id;
    char *text;
} gen_copy;

static int copy_generation(void *ctx, const db_generation_view *v) {
    gen_copy *g = ctx;
    g->prompt_id = v->prompt_id;
    g->text = strdup(v->text ? v->text : "");
    return g->text ? 0 : RLHF_ERR_NOMEM;
}

static int get_generation(store *s, int64_t id, gen_copy *g, rlhf_error *err) {
    memset(g, 0, sizeof *g);
    int rc = db_generation_get(s->d, id, copy_generation, g, err);
    if (rc == RLHF_ERR_NOT_FOUND) return rlhf_errorf(err, rc, "there is no generation %lld", (long long)id);
    if (rc == RLHF_ERR_NOMEM) return rlhf_errorf(err, rc, "reading generation %lld: out of memory", (long long)id);
    return rc;
}

/* Prints a cJSON detail object for the audit log and writes the entry. */
static int audit(store *s, int64_t annotator_id, const char *action, const char *kind,
                 int64_t target_id, cJSON *detail, int64_t *audit_id, rlhf_error *err) {
    char *json = detail ? cJSON_PrintUnformatted(detail) : NULL;
    if (detail && !json) return rlhf_errorf(err, RLHF_ERR_NOMEM, "audit: out of memory");
    db_audit_row row = {annotator_id, action, kind, target_id, json ? json : "{}", 0, NULL};
    int rc = db_audit_insert(s->d, &row, audit_id, err);
    free(json);
    return rc;
}

static void append(char *buf, size_t size, const char *sep, const char *text) {
    size_t used = strlen(buf);
    if (used + 1 >= size) return;
    snprintf(buf + used, size - used, "%s%s", used ? sep : "", text);
}

static int refused(rlhf_error *err, const char *what, const char *reason) {
    return rlhf_errorf(err, RLHF_ERR_INVALID, "%s refused: %s (allow flagged judgements to keep it anyway)",
                       what, reason);
}

static void add_json_string(cJSON *o, const char *name, const char *value) {
    if (value) cJSON_AddStringToObject(o, name, value);
    else cJSON_AddNullToObject(o, name);
}

/* ---- models, runs, metrics ---- */

static int model_id_by_name(store *s, const char *name, const char *role, int64_t *id,
                            rlhf_error *err) {
    *id = 0;
    if (!name) return 0;
    int rc = db_model_find(s->d, name, id, err);
    if (rc == 0 && *id == 0)
        rc = rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "%s model \"%s\" is not registered (add it first)", role, name);
    return rc;
}

static int one_of(const char *value, const char *const *allowed) {
    for (; *allowed; allowed++)
        if (strcmp(value, *allowed) == 0) return 1;
    return 0;
}

int store_add_model(store *s, const store_model *m, int64_t *id, rlhf_error *err) {
    static const char *const made_by[] = {"external", "pretrain", "sft", "classify", "reward", "dpo", "ppo", "grpo", "rloo", "kto", NULL};
    if (!m->name || !*m->name) return rlhf_errorf(err, RLHF_ERR_INVALID, "a model needs a name");
    if (m->made_by && !one_of(m->made_by, made_by))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "model \"%s\": made_by \"%s\" is not one of external, pretrain, sft, classify, reward, dpo, ppo, grpo, rloo, kto",
                           m->name, m->made_by);
    int64_t local = 0, existing = 0, parent = 0;
    if (!id) id = &local;
    int rc = db_begin(s->d, err);
    if (rc) return rc;
    if ((rc = db_model_find(s->d, m->name, &existing, err))) goto fail;
    if (existing) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "a model named \"%s\" is already registered (#%lld)", m->name,
                         (long long)existing);
        goto fail;
    }
    if ((rc = model_id_by_name(s, m->parent, "parent", &parent, err))) goto fail;
    db_model_row row = {m->name, m->path, m->family, parent, m->made_by, m->run_id};
    if ((rc = db_model_insert(s->d, &row, id, err))) goto fail;
    return db_commit(s->d, err);
fail:
    db_rollback(s->d);
    return rc;
}

int store_find_model(store *s, const char *name, int64_t *id, rlhf_error *err) {
    return db_model_find(s->d, name, id, err);
}

int store_add_run(store *s, const store_run *r, int64_t *id, rlhf_error *err) {
    static const char *const kinds[] = {"pretrain", "sft", "classify", "reward", "dpo", "ppo", "eval", "grpo", "rloo", "kto", NULL};
    if (!r->kind || !one_of(r->kind, kinds))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "run kind \"%s\" is not one of pretrain, sft, classify, reward, dpo, ppo, eval, grpo, rloo, kto",
                           r->kind ? r->kind : "");
    if (!json_is_valid(r->config_json))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "run config is not valid JSON");
    int64_t local = 0, input = 0;
    if (!id) id = &local;
    int rc = db_begin(s->d, err);
    if (rc) return rc;
    if ((rc = model_id_by_name(s, r->input_model, "input", &input, err))) goto fail;
    db_run_row row = {r->kind, input, 0, r->config_json, "running"};
    if ((rc = db_run_insert(s->d, &row, id, err))) goto fail;
    return db_commit(s->d, err);
fail:
    db_rollback(s->d);
    return rc;
}

int store_finish_run(store *s, int64_t run_id, const char *status, const char *output_model,
                     rlhf_error *err) {
    static const char *const statuses[] = {"done", "failed", "stopped", NULL};
    if (!status || !one_of(status, statuses))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "run status \"%s\" is not one of done, failed, stopped",
                           status ? status : "");
    int64_t output = 0;
    int rc = db_begin(s->d, err);
    if (rc) return rc;
    if ((rc = model_id_by_name(s, output_model, "output", &output, err))) goto fail;
    if ((rc = db_run_finish(s->d, run_id, status, output, err))) {
        if (rc == RLHF_ERR_NOT_FOUND) rlhf_errorf(err, rc, "there is no run %lld", (long long)run_id);
        goto fail;
    }
    return db_commit(s->d, err);
fail:
    db_rollback(s->d);
    return rc;
}

int store_add_metric(store *s, int64_t run_id, int64_t step, const char *name, double value,
                     rlhf_error *err) {
    if (!name || !*name) return rlhf_errorf(err, RLHF_ERR_INVALID, "a metric needs a name");
    return db_metric_insert(s->d, run_id, step, name, value, err);
}

/* ---- prompts and generations ---- */

int store_add_prompt(store *s, const store_prompt *p, int64_t *id, rlhf_error *err) {
    if (!p->text) return rlhf_errorf(err, RLHF_ERR_INVALID, "a prompt needs its text");
    if (!json_is_valid(p->examples_json) || (p->messages_json && !store_json_is_array(p->messages_json)))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "prompt examples/messages are not valid JSON (messages must be an array)");
    int64_t local = 0;
    if (!id) id = &local;
    int rc = db_begin(s->d, err);
    if (rc) return rc;
    if ((rc = store_prompt_id_tx(s, p, id, err))) goto fail;
    return db_commit(s->d, err);
fail:
    db_rollback(s->d);
    return rc;
}

int store_add_generation(store *s, const store_generation *g, int64_t *id, rlhf_error *err) {
    if (!g->text) return rlhf_errorf(err, RLHF_ERR_INVALID, "a generation needs its text");
    if (!json_is_valid(g->decoding_json))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "decoding settings are not valid JSON");
    int64_t local = 0, model = 0;
    if (!id) id = &local;
    int rc = db_begin(s->d, err);
    if (rc) return rc;
    if ((rc = model_id_by_name(s, g->model, "generating", &model, err))) goto fail;
    db_generation_row row = {
        .prompt_id = g->prompt_id,
        .model_id = model,
        .origin = "model",
        .text = g->text,
        .n_tokens = g->n_tokens,
        .token_ids = g->token_ids,
        .n_token_ids = g->n_token_ids,
        .decoding_json = g->decoding_json,
        .strategy = g->strategy,
        .has_seed = g->has_seed,
        .seed = (int64_t)g->seed,
        .logprob = g->logprob,
        .latency_ms = g->latency_ms,
    };
    if ((rc = db_generation_insert(s->d, &row, id, err))) {
        if (strstr(err ? err->msg : "", "FOREIGN KEY"))
            rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "there is no prompt %lld", (long long)g->prompt_id);
        goto fail;
    }
    return db_commit(s->d, err);
fail:
    db_rollback(s->d);
    return rc;
}

/* ---- rankings ---- */

static int cmp_int64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* "3,5,9": the sorted generation ids, the identity of "the same set ranked again". */
static void items_key(const int64_t *ids, int k, char *buf, size_t size) {
    int64_t sorted[RANKING_MAX_ITEMS];
    memcpy(sorted, ids, (size_t)k * sizeof *ids);
    qsort(sorted, (size_t)k, sizeof *sorted, cmp_int64);
    buf[0] = '\0';
    for (int i = 0; i < k; i++) {
        char one[32];
        snprintf(one, sizeof one, "%lld", (long long)sorted[i]);
        append(buf, size, ",", one);
    }
}

int store_add_ranking(store *s, const store_judge *j, const int64_t *generation_ids,
                      const int *ranks_in, int k, store_added *out, rlhf_error *err) {
    store_added local;
    if (!out) out = &local;
    memset(out, 0, sizeof *out);
    int rc = check_judge(j, err);
    if (rc) return rc;
    if (k < 2 || k > RANKING_MAX_ITEMS)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "a ranking needs 2 to %d generations (got %d)", RANKING_MAX_ITEMS, k);
    int ranks[RANKING_MAX_ITEMS];
    memcpy(ranks, ranks_in, (size_t)k * sizeof *ranks);
    if ((rc = ranking_normalize(ranks, k, err))) return rc;
    for (int a = 0; a < k; a++) {
        if (generation_ids[a] <= 0) return rlhf_errorf(err, RLHF_ERR_INVALID, "ranking: candidate %c has no generation id", 'A' + a);
        for (int b = a + 1; b < k; b++)
            if (generation_ids[a] == generation_ids[b])
                return rlhf_errorf(err, RLHF_ERR_INVALID, "ranking: generation %lld appears twice", (long long)generation_ids[a]);
    }
    gen_copy g[RANKING_MAX_ITEMS] = {{0, NULL}};
    ranking_pair pairs[RANKING_MAX_ITEMS * (RANKING_MAX_ITEMS - 1) / 2];
    char key[RANKING_MAX_ITEMS * 24], reason[sizeof out->warning] = "", flags[sizeof out->flags] = "";
    cJSON *detail = NULL;
    int64_t annotator_id = 0, guideline_id = 0, ranking_id = 0, existing = 0;
    if ((rc = db_begin(s->d, err))) return rc;
    if ((rc = judge_ids(s, j, &annotator_id, &guideline_id, err))) goto fail;
    for (int i = 0; i < k; i++) {
        if ((rc = get_generation(s, generation_ids[i], &g[i], err))) goto fail;
        if (g[i].prompt_id != g[0].prompt_id) {
            rc = rlhf_errorf(err, RLHF_ERR_INVALID, "ranking: generation %lld answers prompt %lld, but %lld answers prompt %lld; rank generations of one prompt",
                             (long long)generation_ids[i], (long long)g[i].prompt_id,
                             (long long)generation_ids[0], (long long)g[0].prompt_id);
            goto fail;
        }
    }
    for (int a = 0; a < k; a++)
        for (int b = a + 1; b < k; b++)
            if (ranks[a] != ranks[b] && pair_check_identical(g[a].text, g[b].text)) {
                rc = rlhf_errorf(err, RLHF_ERR_INVALID, "ranking refused: responses %c and %c are identical but ranked differently",
                                 'A' + a, 'A' + b);
                goto fail;
            }
    for (int i = 0; i < k; i++) {
        char label[32], tag[4] = {(char)('A' + i), 0};
        snprintf(label, sizeof label, "response %c", 'A' + i);
        pair_check_text(g[i].text, label, tag, reason, sizeof reason, flags, sizeof flags);
    }
    items_key(generation_ids, k, key, sizeof key);
    if ((rc = db_ranking_find(s->d, annotator_id, key, &existing, err))) goto fail;
    int duplicate = existing != 0;
    if (duplicate) {
        char msg[160];
        snprintf(msg, sizeof msg, "duplicate: %s already ranked these generations (ranking #%lld)", j->annotator,
                 (long long)existing);
        append(reason, sizeof reason, "; ", msg);
        append(flags, sizeof flags, ",", "duplicate");
    }
    if (reason[0] && !j->allow_flagged) {
        rc = refused(err, "ranking", reason);
        goto fail;
    }
    size_t n_tied = 0, n_pairs = ranking_derive_pairs(ranks, k, pairs, &n_tied);
    db_ranking_row row = {g[0].prompt_id, annotator_id, guideline_id, k, key, (int)n_tied,
                          flags[0] ? flags : NULL, j->comment};
    if ((rc = db_ranking_insert(s->d, &row, &ranking_id, err))) goto fail;
    for (int i = 0; i < k; i++)
        if ((rc = db_ranking_item_insert(s->d, ranking_id, i, generation_ids[i], ranks[i], err))) goto fail;
    for (size_t p = 0; p < n_pairs; p++) {
        char pair_flags[sizeof flags] = "";
        pair_check_text(g[pairs[p].chosen].text, "", "chosen", NULL, 0, pair_flags, sizeof pair_flags);
        pair_check_text(g[pairs[p].rejected].text, "", "rejected", NULL, 0, pair_flags, sizeof pair_flags);
        if (duplicate) append(pair_flags, sizeof pair_flags, ",", "duplicate");
        db_pair_row pr = {
            .prompt_id = g[0].prompt_id,
            .chosen_id = generation_ids[pairs[p].chosen],
            .rejected_id = generation_ids[pairs[p].rejected],
            .verdict = "better",
            .margin = pairs[p].margin,
            .weight = 1.0,
            .ranking_id = ranking_id,
            .annotator_id = annotator_id,
            .guideline_id = guideline_id,
            .flags = pair_flags[0] ? pair_flags : NULL,
        };
        if ((rc = db_pair_insert(s->d, &pr, NULL, err))) goto fail;
    }
    char shown[RANKING_MAX_ITEMS * 4 + 8];
    ranking_format(ranks, k, shown, sizeof shown);
    detail = cJSON_CreateObject();
    cJSON *items = detail ? cJSON_AddArrayToObject(detail, "items") : NULL;
    if (!items) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "ranking: out of memory");
        goto fail;
    }
    cJSON_AddNumberToObject(detail, "prompt_id", (double)g[0].prompt_id);
    cJSON_AddStringToObject(detail, "ranking", shown);
    for (int i = 0; i < k; i++) {
        cJSON *it = cJSON_CreateObject();
        cJSON_AddNumberToObject(it, "generation_id", (double)generation_ids[i]);
        cJSON_AddNumberToObject(it, "rank", ranks[i]);
        cJSON_AddItemToArray(items, it);
    }
    cJSON_AddNumberToObject(detail, "pairs", (double)n_pairs);
    cJSON_AddNumberToObject(detail, "tied", (double)n_tied);
    add_json_string(detail, "flags", flags[0] ? flags : NULL);
    if ((rc = audit(s, annotator_id, "add", "ranking", ranking_id, detail, NULL, err))) goto fail;
    if ((rc = db_commit(s->d, err))) goto fail;
    out->id = ranking_id;
    out->n_pairs = n_pairs;
    out->n_tied = n_tied;
    snprintf(out->flags, sizeof out->flags, "%s", flags);
    snprintf(out->warning, sizeof out->warning, "%s", reason);
    cJSON_Delete(detail);
    for (int i = 0; i < k; i++) free(g[i].text);
    return 0;
fail:
    db_rollback(s->d);
    cJSON_Delete(detail);
    for (int i = 0; i < k; i++) free(g[i].text);
    return rc;
}

/* ---- pairs ---- */

/* Checks two sides of one prompt for a pair judgement; appends reasons and flags. */
static int check_pair_sides(store *s, int64_t chosen_id, int64_t rejected_id, store_verdict verdict,
                            int64_t *prompt_id, char *reason, size_t reason_size, char *flags,
                            size_t flags_size, rlhf_error *err) {
    gen_copy c, r;
    int rc = get_generation(s, chosen_id, &c, err);
    if (rc) return rc;
    if ((rc = get_generation(s, rejected_id, &r, err))) {
        free(c.text);
        return rc;
    }
    if (c.prompt_id != r.prompt_id) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "pair: generation %lld answers prompt %lld but %lld answers prompt %lld; compare answers to one prompt",
                         (long long)chosen_id, (long long)c.prompt_id, (long long)rejected_id, (long long)r.prompt_id);
    } else if (pair_check_identical(c.text, r.text)) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "pair refused: the two responses are identical, so a preference between them teaches nothing");
    } else if (verdict != STORE_VERDICT_BOTH_BAD) {
        /* "both bad" is exactly how an annotator marks an empty or broken pair */
        pair_check_text(c.text, verdict == STORE_VERDICT_BETTER ? "the chosen response" : "the first response",
                        "chosen", reason, reason_size, flags, flags_size);
        pair_check_text(r.text, verdict == STORE_VERDICT_BETTER ? "the rejected response" : "the second response",
                        "rejected", reason, reason_size, flags, flags_size);
    }
    *prompt_id = c.prompt_id;
    free(c.text);
    free(r.text);
    return rc;
}

static int check_verdict_margin(store_verdict verdict, double *margin, rlhf_error *err) {
    if (verdict != STORE_VERDICT_BETTER && verdict != STORE_VERDICT_TIE && verdict != STORE_VERDICT_BOTH_BAD)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "pair: unknown verdict %d", (int)verdict);
    if (isnan(*margin)) *margin = 1.0;
    if (!(*margin > 0.0) || !isfinite(*margin))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "pair: margin must be a positive number (got %g)", *margin);
    return 0;
}

int store_add_pair(store *s, const store_judge *j, int64_t chosen_id, int64_t rejected_id,
                   store_verdict verdict, double margin, store_added *out, rlhf_error *err) {
    store_added local;
    if (!out) out = &local;
    memset(out, 0, sizeof *out);
    int rc = check_judge(j, err);
    if (rc || (rc = check_verdict_margin(verdict, &margin, err))) return rc;
    if (chosen_id == rejected_id)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "pair refused: both sides are generation %lld", (long long)chosen_id);
    char reason[sizeof out->warning] = "", flags[sizeof out->flags] = "";
    int64_t annotator_id = 0, guideline_id = 0, prompt_id = 0, existing = 0, pair_id = 0;
    cJSON *detail = NULL;
    if ((rc = db_begin(s->d, err))) return rc;
    if ((rc = judge_ids(s, j, &annotator_id, &guideline_id, err))) goto fail;
    if ((rc = check_pair_sides(s, chosen_id, rejected_id, verdict, &prompt_id, reason, sizeof reason,
                               flags, sizeof flags, err)))
        goto fail;
    if ((rc = db_pair_find_direct(s->d, annotator_id, chosen_id, rejected_id, &existing, err))) goto fail;
    if (existing) {
        char msg[200];
        snprintf(msg, sizeof msg, "duplicate: %s already judged these two generations (pair #%lld; change that one instead)",
                 j->annotator, (long long)existing);
        append(reason, sizeof reason, "; ", msg);
        append(flags, sizeof flags, ",", "duplicate");
    }
    if (reason[0] && !j->allow_flagged) {
        rc = refused(err, "pair", reason);
        goto fail;
    }
    db_pair_row row = {
        .prompt_id = prompt_id,
        .chosen_id = chosen_id,
        .rejected_id = rejected_id,
        .verdict = store_verdict_name(verdict),
        .margin = margin,
        .weight = 1.0,
        .annotator_id = annotator_id,
        .guideline_id = guideline_id,
        .flags = flags[0] ? flags : NULL,
        .comment = j->comment,
    };
    if ((rc = db_pair_insert(s->d, &row, &pair_id, err))) goto fail;
    if (!(detail = cJSON_CreateObject())) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "pair: out of memory");
        goto fail;
    }
    cJSON_AddNumberToObject(detail, "prompt_id", (double)prompt_id);
    cJSON_AddNumberToObject(detail, "chosen_id", (double)chosen_id);
    cJSON_AddNumberToObject(detail, "rejected_id", (double)rejected_id);
    cJSON_AddStringToObject(detail, "verdict", row.verdict);
    cJSON_AddNumberToObject(detail, "margin", margin);
    add_json_string(detail, "flags", row.flags);
    if ((rc = audit(s, annotator_id, "add", "pair", pair_id, detail, NULL, err))) goto fail;
    if ((rc = db_commit(s->d, err))) goto fail;
    cJSON_Delete(detail);
    out->id = pair_id;
    snprintf(out->flags, sizeof out->flags, "%s", flags);
    snprintf(out->warning, sizeof out->warning, "%s", reason);
    return 0;
fail:
    db_rollback(s->d);
    cJSON_Delete(detail);
    return rc;
}

/* A pair row copied out of the database (strings owned). */
typedef struct {
    db_pair_row row;
    char *flags, *comment;
    char verdict[16];
} pair_copy;

static int copy_pair(void *ctx, const db_pair_view *v) {
    pair_copy *p = ctx;
    p->row = v->row;
    snprintf(p->verdict, sizeof p->verdict, "%s", v->row.verdict ? v->row.verdict : "better");
    p->row.verdict = p->verdict;
    p->flags = v->row.flags ? strdup(v->row.flags) : NULL;
    p->comment = v->row.comment ? strdup(v->row.comment) : NULL;
    p->row.flags = p->flags;
    p->row.comment = p->comment;
    return (v->row.flags && !p->flags) || (v->row.comment && !p->comment) ? RLHF_ERR_NOMEM : 0;
}

static void pair_copy_free(pair_copy *p) {
    free(p->flags);
    free(p->comment);
    p->flags = p->comment = NULL;
}

static cJSON *pair_json(const db_pair_row *r) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "chosen_id", (double)r->chosen_id);
    cJSON_AddNumberToObject(o, "rejected_id", (double)r->rejected_id);
    cJSON_AddStringToObject(o, "verdict", r->verdict);
    cJSON_AddNumberToObject(o, "margin", r->margin);
    cJSON_AddNumberToObject(o, "weight", r->weight);
    add_json_string(o, "flags", r->flags);
    add_json_string(o, "comment", r->comment);
    return o;
}

int store_change_pair(store *s, const store_judge *j, int64_t pair_id, int64_t chosen_id,
                      int64_t rejected_id, store_verdict verdict, double margin, rlhf_error *err) {
    int rc = check_judge(j, err);
    if (rc || (rc = check_verdict_margin(verdict, &margin, err))) return rc;
    if (chosen_id == rejected_id)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "pair refused: both sides are generation %lld", (long long)chosen_id);
    pair_copy old = {0};
    char reason[512] = "", flags[256] = "";
    int64_t annotator_id = 0, guideline_id = 0, prompt_id = 0;
    cJSON *detail = NULL;
    if ((rc = db_begin(s->d, err))) return rc;
    if ((rc = judge_ids(s, j, &annotator_id, &guideline_id, err))) goto fail;
    if ((rc = db_pair_get(s->d, pair_id, copy_pair, &old, err))) {
        if (rc == RLHF_ERR_NOT_FOUND) rlhf_errorf(err, rc, "there is no pair %lld", (long long)pair_id);
        goto fail;
    }
    if (old.row.annotator_id != annotator_id) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "pair %lld was judged by another annotator; %s can only change their own",
                         (long long)pair_id, j->annotator);
        goto fail;
    }
    if (old.row.ranking_id) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "pair %lld comes from ranking %lld; undo the ranking and rank again",
                         (long long)pair_id, (long long)old.row.ranking_id);
        goto fail;
    }
    if ((rc = check_pair_sides(s, chosen_id, rejected_id, verdict, &prompt_id, reason, sizeof reason, flags,
                               sizeof flags, err)))
        goto fail;
    if (prompt_id != old.row.prompt_id) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "pair %lld is about prompt %lld; the new sides answer prompt %lld",
                         (long long)pair_id, (long long)old.row.prompt_id, (long long)prompt_id);
        goto fail;
    }
    if (reason[0] && !j->allow_flagged) {
        rc = refused(err, "pair change", reason);
        goto fail;
    }
    if (old.flags && strstr(old.flags, "duplicate")) append(flags, sizeof flags, ",", "duplicate");
    db_pair_row now = old.row;
    now.chosen_id = chosen_id;
    now.rejected_id = rejected_id;
    now.verdict = store_verdict_name(verdict);
    now.margin = margin;
    now.flags = flags[0] ? flags : NULL;
    if (j->comment) now.comment = j->comment;
    if ((rc = db_pair_update(s->d, pair_id, &now, err))) goto fail;
    detail = cJSON_CreateObject();
    cJSON *before = pair_json(&old.row), *after = pair_json(&now);
    if (!detail || !before || !after) {
        cJSON_Delete(before);
        cJSON_Delete(after);
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "pair change: out of memory");
        goto fail;
    }
    cJSON_AddItemToObject(detail, "before", before);
    cJSON_AddItemToObject(detail, "after", after);
    if ((rc = audit(s, annotator_id, "change", "pair", pair_id, detail, NULL, err))) goto fail;
    if ((rc = db_commit(s->d, err))) goto fail;
    cJSON_Delete(detail);
    pair_copy_free(&old);
    return 0;
fail:
    db_rollback(s->d);
    cJSON_Delete(detail);
    pair_copy_free(&old);
    return rc;
}

/* ---- ratings and skips ---- */

/* Labels: comma-separated words of [a-z0-9_-], none empty. */
static int check_rating(int score, const char *labels, rlhf_error *err) {
    if (score < 0 || score > 5)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "rating: score must be 1 to 5 (got %d)", score);
    if (labels && !*labels) labels = NULL;
    if (!score && !labels) return rlhf_errorf(err, RLHF_ERR_INVALID, "rating: give a score 1-5, labels, or both");
    if (labels) {
        int word = 0;
        for (const char *p = labels;; p++) {
            char c = *p;
            if (c == ',' || c == '\0') {
                if (!word)
                    return rlhf_errorf(err, RLHF_ERR_INVALID, "rating: labels \"%s\" has an empty label", labels);
                if (!c) break;
                word = 0;
            } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-') {
                word++;
            } else {
                return rlhf_errorf(err, RLHF_ERR_INVALID, "rating: labels \"%s\": use lower-case words of a-z, 0-9, _ and - separated by commas",
                                   labels);
            }
        }
    }
    return 0;
}

int store_add_rating(store *s, const store_judge *j, int64_t generation_id, int score,
                     const char *labels, store_added *out, rlhf_error *err) {
    store_added local;
    if (!out) out = &local;
    memset(out, 0, sizeof *out);
    int rc = check_judge(j, err);
    if (rc || (rc = check_rating(score, labels, err))) return rc;
    if (labels && !*labels) labels = NULL;
    int64_t annotator_id = 0, guideline_id = 0, existing = 0, rating_id = 0;
    gen_copy g = {0, NULL};
    cJSON *detail = NULL;
    if ((rc = db_begin(s->d, err))) return rc;
    if ((rc = judge_ids(s, j, &annotator_id, &guideline_id, err))) goto fail;
    if ((rc = get_generation(s, generation_id, &g, err))) goto fail;
    if ((rc = db_rating_find(s->d, annotator_id, generation_id, &existing, err))) goto fail;
    if (existing) {
        snprintf(out->warning, sizeof out->warning, "duplicate: %s already rated generation %lld (rating #%lld; change that one instead)",
                 j->annotator, (long long)generation_id, (long long)existing);
        if (!j->allow_flagged) {
            rc = refused(err, "rating", out->warning);
            goto fail;
        }
    }
    db_rating_row row = {generation_id, annotator_id, guideline_id, score, labels, j->comment};
    if ((rc = db_rating_insert(s->d, &row, &rating_id, err))) goto fail;
    if (!(detail = cJSON_CreateObject())) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "rating: out of memory");
        goto fail;
    }
    cJSON_AddNumberToObject(detail, "generation_id", (double)generation_id);
    if (score) cJSON_AddNumberToObject(detail, "score", score);
    else cJSON_AddNullToObject(detail, "score");
    add_json_string(detail, "labels", labels);
    add_json_string(detail, "comment", j->comment);
    if ((rc = audit(s, annotator_id, "add", "rating", rating_id, detail, NULL, err))) goto fail;
    if ((rc = db_commit(s->d, err))) goto fail;
    out->id = rating_id;
    free(g.text);
    cJSON_Delete(detail);
    return 0;
fail:
    db_rollback(s->d);
    free(g.text);
    cJSON_Delete(detail);
    return rc;
}

typedef struct {
    db_rating_row row;
    char *labels, *comment;
} rating_copy;

static int copy_rating(void *ctx, int64_t id, const db_rating_row *r) {
    (void)id;
    rating_copy *c = ctx;
    c->row = *r;
    c->labels = r->labels ? strdup(r->labels) : NULL;
    c->comment = r->comment ? strdup(r->comment) : NULL;
    c->row.labels = c->labels;
    c->row.comment = c->comment;
    return (r->labels && !c->labels) || (r->comment && !c->comment) ? RLHF_ERR_NOMEM : 0;
}

static cJSON *rating_json(const db_rating_row *r) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    if (r->score) cJSON_AddNumberToObject(o, "score", r->score);
    else cJSON_AddNullToObject(o, "score");
    add_json_string(o, "labels", r->labels);
    add_json_string(o, "comment", r->comment);
    return o;
}

int store_change_rating(store *s, const store_judge *j, int64_t rating_id, int score,
                        const char *labels, rlhf_error *err) {
    int rc = check_judge(j, err);
    if (rc || (rc = check_rating(score, labels, err))) return rc;
    if (labels && !*labels) labels = NULL;
    rating_copy old = {0};
    int64_t annotator_id = 0, guideline_id = 0;
    cJSON *detail = NULL;
    if ((rc = db_begin(s->d, err))) return rc;
    if ((rc = judge_ids(s, j, &annotator_id, &guideline_id, err))) goto fail;
    if ((rc = db_rating_get(s->d, rating_id, copy_rating, &old, err))) {
        if (rc == RLHF_ERR_NOT_FOUND) rlhf_errorf(err, rc, "there is no rating %lld", (long long)rating_id);
        goto fail;
    }
    if (old.row.annotator_id != annotator_id) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "rating %lld was made by another annotator; %s can only change their own",
                         (long long)rating_id, j->annotator);
        goto fail;
    }
    db_rating_row now = old.row;
    now.score = score;
    now.labels = labels;
    if (j->comment) now.comment = j->comment;
    if ((rc = db_rating_update(s->d, rating_id, &now, err))) goto fail;
    detail = cJSON_CreateObject();
    cJSON *before = rating_json(&old.row), *after = rating_json(&now);
    if (!detail || !before || !after) {
        cJSON_Delete(before);
        cJSON_Delete(after);
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "rating change: out of memory");
        goto fail;
    }
    cJSON_AddItemToObject(detail, "before", before);
    cJSON_AddItemToObject(detail, "after", after);
    if ((rc = audit(s, annotator_id, "change", "rating", rating_id, detail, NULL, err))) goto fail;
    if ((rc = db_commit(s->d, err))) goto fail;
    cJSON_Delete(detail);
    free(old.labels);
    free(old.comment);
    return 0;
fail:
    db_rollback(s->d);
    cJSON_Delete(detail);
    free(old.labels);
    free(old.comment);
    return rc;
}

int store_add_skip(store *s, const store_judge *j, int64_t prompt_id, const char *reason,
                   store_added *out, rlhf_error *err) {
    store_added local;
    if (!out) out = &local;
    memset(out, 0, sizeof *out);
    int rc = check_judge(j, err);
    if (rc) return rc;
    int64_t annotator_id = 0, guideline_id = 0, skip_id = 0;
    cJSON *detail = NULL;
    if ((rc = db_begin(s->d, err))) return rc;
    if ((rc = judge_ids(s, j, &annotator_id, &guideline_id, err))) goto fail;
    if ((rc = db_skip_insert(s->d, prompt_id, annotator_id, guideline_id, reason, &skip_id, err))) {
        if (strstr(err ? err->msg : "", "FOREIGN KEY"))
            rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "there is no prompt %lld", (long long)prompt_id);
        goto fail;
    }
    if (!(detail = cJSON_CreateObject())) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "skip: out of memory");
        goto fail;
    }
    cJSON_AddNumberToObject(detail, "prompt_id", (double)prompt_id);
    add_json_string(detail, "reason", reason);
    if ((rc = audit(s, annotator_id, "add", "skip", skip_id, detail, NULL, err))) goto fail;
    if ((rc = db_commit(s->d, err))) goto fail;
    cJSON_Delete(detail);
    out->id = skip_id;
    return 0;
fail:
    db_rollback(s->d);
    cJSON_Delete(detail);
    return rc;
}

/* ---- undo ---- */

typedef struct {
    int64_t id, target_id;
    char action[16], kind[16], at[40];
    char *detail_json;
} audit_copy;

static int copy_audit(void *ctx, int64_t id, const db_audit_row *r) {
    audit_copy *a = ctx;
    a->id = id;
    a->target_id = r->target_id;
    snprintf(a->action, sizeof a->action, "%s", r->action ? r->action : "");
    snprintf(a->kind, sizeof a->kind, "%s", r->kind ? r->kind : "");
    snprintf(a->at, sizeof a->at, "%s", r->at ? r->at : "");
    a->detail_json = strdup(r->detail_json ? r->detail_json : "{}");
    return a->detail_json ? 0 : RLHF_ERR_NOMEM;
}

static const char *json_string_or_null(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double json_number(const cJSON *o, const char *name, double fallback) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(v) ? v->valuedouble : fallback;
}

/* Puts back the values a 'change' entry recorded under "before". */
static int revert_change(store *s, const audit_copy *a, rlhf_error *err) {
    cJSON *detail = cJSON_Parse(a->detail_json);
    const cJSON *before = cJSON_GetObjectItemCaseSensitive(detail, "before");
    int rc = 0;
    if (!cJSON_IsObject(before)) {
        rc = rlhf_errorf(err, RLHF_ERR_DB, "audit entry %lld has no \"before\" values to restore", (long long)a->id);
    } else if (strcmp(a->kind, "pair") == 0) {
        store_verdict v;
        const char *verdict = json_string_or_null(before, "verdict");
        if (verdict_parse(verdict, &v) != 0) {
            rc = rlhf_errorf(err, RLHF_ERR_DB, "audit entry %lld: bad verdict", (long long)a->id);
        } else {
            db_pair_row row = {
                .chosen_id = (int64_t)json_number(before, "chosen_id", 0),
                .rejected_id = (int64_t)json_number(before, "rejected_id", 0),
                .verdict = store_verdict_name(v),
                .margin = json_number(before, "margin", 1.0),
                .weight = json_number(before, "weight", 1.0),
                .flags = json_string_or_null(before, "flags"),
                .comment = json_string_or_null(before, "comment"),
            };
            rc = db_pair_update(s->d, a->target_id, &row, err);
        }
    } else if (strcmp(a->kind, "rating") == 0) {
        db_rating_row row = {
            .score = (int)json_number(before, "score", 0),
            .labels = json_string_or_null(before, "labels"),
            .comment = json_string_or_null(before, "comment"),
        };
        rc = db_rating_update(s->d, a->target_id, &row, err);
    } else {
        rc = rlhf_errorf(err, RLHF_ERR_DB, "audit entry %lld: cannot revert a change of a %s", (long long)a->id, a->kind);
    }
    cJSON_Delete(detail);
    return rc;
}

int store_undo_last(store *s, const char *annotator, store_undone *out, rlhf_error *err) {
    store_undone local;
    if (!out) out = &local;
    memset(out, 0, sizeof *out);
    if (!annotator || !*annotator) return rlhf_errorf(err, RLHF_ERR_INVALID, "undo: which annotator?");
    audit_copy a = {0};
    int64_t annotator_id = 0, undo_id = 0;
    cJSON *detail = NULL;
    int rc = db_begin(s->d, err);
    if (rc) return rc;
    if ((rc = db_annotator_find(s->d, annotator, &annotator_id, err))) goto fail;
    if (!annotator_id) {
        rc = rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "nothing to undo: %s has made no judgements", annotator);
        goto fail;
    }
    if ((rc = db_audit_last_open(s->d, annotator_id, copy_audit, &a, err))) {
        if (rc == RLHF_ERR_NOT_FOUND) rlhf_errorf(err, rc, "nothing to undo for %s", annotator);
        goto fail;
    }
    if (strcmp(a.action, "add") == 0) {
        if (strcmp(a.kind, "ranking") == 0) rc = db_ranking_delete(s->d, a.target_id, err);
        else if (strcmp(a.kind, "pair") == 0) rc = db_pair_delete(s->d, a.target_id, err);
        else if (strcmp(a.kind, "rating") == 0) rc = db_rating_delete(s->d, a.target_id, err);
        else if (strcmp(a.kind, "skip") == 0) rc = db_skip_delete(s->d, a.target_id, err);
        else rc = rlhf_errorf(err, RLHF_ERR_DB, "audit entry %lld: unknown kind %s", (long long)a.id, a.kind);
    } else {
        rc = revert_change(s, &a, err);
    }
    if (rc) goto fail;
    if (!(detail = cJSON_CreateObject())) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "undo: out of memory");
        goto fail;
    }
    cJSON_AddNumberToObject(detail, "undid", (double)a.id);
    cJSON_AddStringToObject(detail, "action", a.action);
    cJSON *what = cJSON_Parse(a.detail_json);
    if (what) cJSON_AddItemToObject(detail, "detail", what);
    if ((rc = audit(s, annotator_id, "undo", a.kind, a.target_id, detail, &undo_id, err))) goto fail;
    if ((rc = db_audit_set_undone(s->d, a.id, undo_id, err))) goto fail;
    if ((rc = db_commit(s->d, err))) goto fail;
    snprintf(out->action, sizeof out->action, "%s", a.action);
    snprintf(out->kind, sizeof out->kind, "%s", a.kind);
    snprintf(out->at, sizeof out->at, "%s", a.at);
    out->target_id = a.target_id;
    free(a.detail_json);
    cJSON_Delete(detail);
    return 0;
fail:
    db_rollback(s->d);
    free(a.detail_json);
    cJSON_Delete(detail);
    return rc;
}
