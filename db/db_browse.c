/* db_browse.c — reads for browsing (see "browsing" in db.h): the model registry, runs, and the
 * annotation queue. Each statement is prepared per call: these run once per user command, so
 * the statement cache of db_tables.c would only grow its shared enum. */
#include <math.h>
#include <string.h>

#include "db/db_private.h"

static const char *text_at(sqlite3_stmt *st, int i) { return (const char *)sqlite3_column_text(st, i); }

/* Prepares sql, binds up to two integer parameters (n of them), and calls row(st, fn, ctx) for
 * each result row. */
typedef void (*any_fn)(void); /* the caller's callback, cast back by its row reader */
typedef int (*row_fn)(sqlite3_stmt *st, any_fn fn, void *ctx);

static int each(db *d, const char *what, const char *sql, const int64_t *args, int n_args, row_fn row, any_fn fn,
                void *ctx, rlhf_error *err) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(d->conn, sql, -1, &st, NULL) != SQLITE_OK) return db_fail(d, err, what);
    for (int i = 0; i < n_args; i++) sqlite3_bind_int64(st, i + 1, args[i]);
    int rc, ret = 0;
    while ((rc = db_step(d, st)) == SQLITE_ROW)
        if ((ret = row(st, fn, ctx))) break;
    if (!ret && rc != SQLITE_DONE && rc != SQLITE_ROW) ret = db_fail(d, err, what);
    sqlite3_finalize(st);
    return ret;
}

static int model_row(sqlite3_stmt *st, any_fn fn, void *ctx) {
    db_model_view v = {sqlite3_column_int64(st, 0), text_at(st, 1), text_at(st, 2), text_at(st, 3),
                       text_at(st, 4), text_at(st, 5), text_at(st, 6)};
    return ((db_model_fn)fn)(ctx, &v);
}

int db_models_each(db *d, db_model_fn fn, void *ctx, rlhf_error *err) {
    return each(d, "listing models",
                "SELECT m.id, m.name, m.path, m.family, m.made_by, p.name, m.created_at FROM models m "
                "LEFT JOIN models p ON p.id = m.parent_id ORDER BY m.id",
                NULL, 0, model_row, (any_fn)fn, ctx, err);
}

static int run_row(sqlite3_stmt *st, any_fn fn, void *ctx) {
    db_run_view v = {sqlite3_column_int64(st, 0), text_at(st, 1), text_at(st, 2), text_at(st, 3), text_at(st, 4),
                     text_at(st, 5), text_at(st, 6), sqlite3_column_int64(st, 7), text_at(st, 8)};
    return ((db_run_fn)fn)(ctx, &v);
}

int db_runs_each(db *d, db_run_fn fn, void *ctx, rlhf_error *err) {
    return each(d, "listing runs",
                "SELECT r.id, r.kind, r.status, i.name, o.name, r.started_at, r.ended_at, "
                "(SELECT count(*) FROM metrics x WHERE x.run_id = r.id), r.config_json FROM runs r "
                "LEFT JOIN models i ON i.id = r.input_model_id LEFT JOIN models o ON o.id = r.output_model_id "
                "ORDER BY r.id",
                NULL, 0, run_row, (any_fn)fn, ctx, err);
}

static int metric_row(sqlite3_stmt *st, any_fn fn, void *ctx) {
    db_metric_view v = {sqlite3_column_int64(st, 0), text_at(st, 1),
                        sqlite3_column_type(st, 2) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 2)};
    return ((db_metric_fn)fn)(ctx, &v);
}

int db_metrics_each(db *d, int64_t run_id, db_metric_fn fn, void *ctx, rlhf_error *err) {
    return each(d, "reading metrics", "SELECT step, name, value FROM metrics WHERE run_id = ?1 ORDER BY name, step",
                &run_id, 1, metric_row, (any_fn)fn, ctx, err);
}

/* A prompt in the queue: two or more generations. Judged by ?1: a ranking, a pair, a skip, or a
 * rating of one of its generations. */
#define QUEUED "(SELECT count(*) FROM generations g WHERE g.prompt_id = p.id) >= 2"
#define JUDGED                                                                                              \
    "(EXISTS (SELECT 1 FROM rankings r WHERE r.prompt_id = p.id AND r.annotator_id = ?1) "                \
    "OR EXISTS (SELECT 1 FROM pairs x WHERE x.prompt_id = p.id AND x.annotator_id = ?1) "                 \
    "OR EXISTS (SELECT 1 FROM skips k WHERE k.prompt_id = p.id AND k.annotator_id = ?1) "                 \
    "OR EXISTS (SELECT 1 FROM ratings t JOIN generations g ON g.id = t.generation_id "                   \
    "WHERE g.prompt_id = p.id AND t.annotator_id = ?1))"

static int id_row(sqlite3_stmt *st, any_fn fn, void *ctx) {
    (void)fn;
    int64_t *out = ctx;
    out[0] = sqlite3_column_int64(st, 0);
    out[1] = sqlite3_column_count(st) > 1 ? sqlite3_column_int64(st, 1) : 0;
    return 1; /* one row is all */
}

int db_queue_next(db *d, int64_t annotator_id, int64_t *prompt_id, rlhf_error *err) {
    int64_t got[2] = {0, 0};
    int rc = each(d, "finding the next queued prompt",
                  "SELECT p.id FROM prompts p WHERE " QUEUED " AND NOT " JUDGED " ORDER BY p.id LIMIT 1",
                  &annotator_id, 1, id_row, NULL, got, err);
    if (rc < 0) return rc;
    *prompt_id = got[0];
    return 0;
}

int db_queue_progress(db *d, int64_t annotator_id, int64_t *done, int64_t *left, rlhf_error *err) {
    int64_t got[2] = {0, 0};
    int rc = each(d, "counting the queue",
                  "SELECT coalesce(sum(" JUDGED "), 0), coalesce(sum(NOT " JUDGED "), 0) FROM prompts p WHERE " QUEUED,
                  &annotator_id, 1, id_row, NULL, got, err);
    if (rc < 0) return rc;
    *done = got[0];
    *left = got[1];
    return 0;
}

static int generation_row(sqlite3_stmt *st, any_fn fn, void *ctx) {
    db_prompt_generation_view v;
    v.generation_id = sqlite3_column_int64(st, 0);
    v.text = text_at(st, 1);
    v.model = text_at(st, 2);
    v.strategy = text_at(st, 3);
    v.decoding_json = text_at(st, 4);
    v.prompt_text = text_at(st, 5);
    v.prompt_messages_json = text_at(st, 6);
    v.logprob = sqlite3_column_type(st, 7) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 7);
    v.n_tokens = sqlite3_column_type(st, 8) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 8);
    if (!v.text) v.text = "";
    return ((db_prompt_generation_fn)fn)(ctx, &v);
}

int db_prompt_generations_each(db *d, int64_t prompt_id, db_prompt_generation_fn fn, void *ctx, rlhf_error *err) {
    return each(d, "reading a prompt's generations",
                "SELECT g.id, g.text, m.name, g.strategy, g.decoding_json, p.text, p.messages_json, g.logprob, "
                "g.n_tokens FROM generations g JOIN prompts p ON p.id = g.prompt_id "
                "LEFT JOIN models m ON m.id = g.model_id WHERE g.prompt_id = ?1 ORDER BY g.id",
                &prompt_id, 1, generation_row, (any_fn)fn, ctx, err);
}
