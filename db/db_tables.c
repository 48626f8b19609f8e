/* db_tables.c — the table-level functions: one prepared statement each, bound parameters only.
 *
 * The SQL of every statement is in db_stmt_sql[] below, in the order of enum db_stmt_id, so the
 * whole vocabulary of the database can be read in one place. Each function fetches its cached
 * statement, binds, steps, and resets it before returning (a statement left mid-read would keep
 * a read snapshot open and stop WAL checkpoints). */
#include "db/db_private.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOW "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"

#define PAIR_VIEW_COLUMNS                                                                        \
    "SELECT p.id, p.prompt_id, p.chosen_id, p.rejected_id, p.verdict, p.margin, p.weight, "     \
    "p.ranking_id, p.annotator_id, p.guideline_id, p.import_id, p.flags, p.comment, a.name, "    \
    "ifnull(k.k, 0), c.model_id, r.model_id, mc.name, mr.name, c.strategy, r.strategy"
#define PAIR_VIEW_JOINS                                                                          \
    " FROM pairs p JOIN annotators a ON a.id = p.annotator_id "                                  \
    "JOIN generations c ON c.id = p.chosen_id JOIN generations r ON r.id = p.rejected_id "       \
    "LEFT JOIN rankings k ON k.id = p.ranking_id LEFT JOIN models mc ON mc.id = c.model_id "     \
    "LEFT JOIN models mr ON mr.id = r.model_id"

#define GENERATION_VIEW                                                                          \
    "SELECT g.id, g.prompt_id, g.model_id, g.origin, g.text, g.messages_json, g.record_layout, " \
    "m.name, g.strategy, g.flags, p.text, p.messages_json FROM generations g "                            \
    "JOIN prompts p ON p.id = g.prompt_id LEFT JOIN models m ON m.id = g.model_id"

const char *const db_stmt_sql[DB_STMT_COUNT] = {
    [DB_STMT_ANNOTATOR_FIND] = "SELECT id FROM annotators WHERE name = ?1",
    [DB_STMT_ANNOTATOR_INSERT] = "INSERT INTO annotators(name) VALUES (?1)",
    [DB_STMT_ANNOTATOR_NAME] = "SELECT name FROM annotators WHERE id = ?1",
    [DB_STMT_GUIDELINE_FIND] = "SELECT id FROM guidelines WHERE version = ?1 AND text = ?2",
    [DB_STMT_GUIDELINE_INSERT] = "INSERT INTO guidelines(version, text) VALUES (?1, ?2)",
    [DB_STMT_MODEL_INSERT] =
        "INSERT INTO models(name, path, family, parent_id, made_by, run_id) "
        "VALUES (?1, ?2, ?3, ?4, ifnull(?5, 'external'), ?6)",
    [DB_STMT_MODEL_FIND] = "SELECT id FROM models WHERE name = ?1",
    [DB_STMT_RUN_INSERT] =
        "INSERT INTO runs(kind, input_model_id, output_model_id, config_json, status) "
        "VALUES (?1, ?2, ?3, ifnull(?4, '{}'), ifnull(?5, 'running'))",
    [DB_STMT_RUN_FINISH] =
        "UPDATE runs SET status = ?2, ended_at = " NOW ", "
        "output_model_id = ifnull(?3, output_model_id) WHERE id = ?1",
    [DB_STMT_METRIC_INSERT] =
        "INSERT OR REPLACE INTO metrics(run_id, step, name, value) VALUES (?1, ?2, ?3, ?4)",
    [DB_STMT_PROMPT_FIND] =
        "SELECT id FROM prompts WHERE text_hash = ?5 AND text = ?1 AND template IS ?2 "
        "AND examples_json IS ?3 AND messages_json IS ?4 ORDER BY id LIMIT 1",
    [DB_STMT_PROMPT_INSERT] =
        "INSERT INTO prompts(text, template, examples_json, messages_json, tags, text_hash) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [DB_STMT_GENERATION_INSERT] =
        "INSERT INTO generations(prompt_id, model_id, origin, text, messages_json, record_layout, "
        "n_tokens, token_ids, decoding_json, strategy, seed, logprob, latency_ms, import_id, flags, "
        "text_hash) VALUES (?1, ?2, ifnull(?3, 'model'), ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, "
        "?14, ?15, ?16)",
    [DB_STMT_GENERATION_FIND] =
        "SELECT id FROM generations WHERE prompt_id = ?1 AND text_hash = ?6 AND text = ?2 "
        "AND origin = ifnull(?3, 'model') AND messages_json IS ?4 AND record_layout IS ?5 "
        "ORDER BY id LIMIT 1",
    [DB_STMT_GENERATION_GET] = GENERATION_VIEW " WHERE g.id = ?1",
    [DB_STMT_GENERATIONS_EACH] = GENERATION_VIEW " WHERE g.origin = ?1 ORDER BY g.id",
    [DB_STMT_RANKING_INSERT] =
        "INSERT INTO rankings(prompt_id, annotator_id, guideline_id, k, items_key, n_tied_pairs, "
        "flags, comment) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [DB_STMT_RANKING_ITEM_INSERT] =
        "INSERT INTO ranking_items(ranking_id, position, generation_id, rank) "
        "VALUES (?1, ?2, ?3, ?4)",
    [DB_STMT_RANKING_FIND] =
        "SELECT id FROM rankings WHERE annotator_id = ?1 AND items_key = ?2 ORDER BY id LIMIT 1",
    [DB_STMT_RANKING_DELETE] = "DELETE FROM rankings WHERE id = ?1",
    [DB_STMT_RANKINGS_EACH] =
        "SELECT k.id, k.prompt_id, k.annotator_id, k.k, k.n_tied_pairs, "
        "(SELECT count(*) FROM pairs p WHERE p.ranking_id = k.id), a.name "
        "FROM rankings k JOIN annotators a ON a.id = k.annotator_id ORDER BY k.id",
    [DB_STMT_RANKING_ITEMS_EACH] =
        "SELECT ri.ranking_id, k.prompt_id, k.annotator_id, ri.generation_id, ri.position, "
        "ri.rank, k.k, a.name, m.name, g.strategy, k.flags FROM ranking_items ri "
        "JOIN rankings k ON k.id = ri.ranking_id JOIN annotators a ON a.id = k.annotator_id "
        "JOIN generations g ON g.id = ri.generation_id LEFT JOIN models m ON m.id = g.model_id "
        "ORDER BY ri.ranking_id, ri.position",
    [DB_STMT_PAIR_INSERT] =
        "INSERT INTO pairs(prompt_id, chosen_id, rejected_id, verdict, margin, weight, ranking_id, "
        "annotator_id, guideline_id, import_id, flags, comment) "
        "VALUES (?1, ?2, ?3, ?4, ifnull(?5, 1), ifnull(?6, 1), ?7, ?8, ?9, ?10, ?11, ?12)",
    /* Two lookups on pairs_by_annotator rather than one OR, which the planner answers by
     * scanning every direct pair (an import then turns quadratic); the unary + keeps it from
     * picking pairs_by_ranking for "ranking_id IS NULL". */
    [DB_STMT_PAIR_FIND_DIRECT] =
        "SELECT min(id) FROM ("
        "SELECT id FROM pairs WHERE annotator_id = ?1 AND chosen_id = ?2 AND rejected_id = ?3 "
        "AND +ranking_id IS NULL UNION ALL "
        "SELECT id FROM pairs WHERE annotator_id = ?1 AND chosen_id = ?3 AND rejected_id = ?2 "
        "AND +ranking_id IS NULL)",
    [DB_STMT_PAIR_DELETE] = "DELETE FROM pairs WHERE id = ?1",
    [DB_STMT_PAIR_UPDATE] =
        "UPDATE pairs SET chosen_id = ?2, rejected_id = ?3, verdict = ?4, margin = ifnull(?5, 1), "
        "weight = ifnull(?6, 1), flags = ?7, comment = ?8 WHERE id = ?1",
    [DB_STMT_PAIR_GET] = PAIR_VIEW_COLUMNS PAIR_VIEW_JOINS " WHERE p.id = ?1",
    [DB_STMT_PAIRS_EACH] = PAIR_VIEW_COLUMNS PAIR_VIEW_JOINS " ORDER BY p.id",
    [DB_STMT_PAIRS_EACH_TEXT] =
        PAIR_VIEW_COLUMNS ", q.text, q.messages_json, c.text, c.messages_json, r.text, "
        "r.messages_json" PAIR_VIEW_JOINS " JOIN prompts q ON q.id = p.prompt_id ORDER BY p.id",
    [DB_STMT_RATING_INSERT] =
        "INSERT INTO ratings(generation_id, annotator_id, guideline_id, score, labels, comment) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [DB_STMT_RATING_FIND] =
        "SELECT id FROM ratings WHERE annotator_id = ?1 AND generation_id = ?2 ORDER BY id LIMIT 1",
    [DB_STMT_RATING_GET] =
        "SELECT id, generation_id, annotator_id, guideline_id, score, labels, comment "
        "FROM ratings WHERE id = ?1",
    [DB_STMT_RATING_UPDATE] = "UPDATE ratings SET score = ?2, labels = ?3, comment = ?4 WHERE id = ?1",
    [DB_STMT_RATING_DELETE] = "DELETE FROM ratings WHERE id = ?1",
    [DB_STMT_SKIP_INSERT] =
        "INSERT INTO skips(prompt_id, annotator_id, guideline_id, reason) VALUES (?1, ?2, ?3, ?4)",
    [DB_STMT_SKIP_DELETE] = "DELETE FROM skips WHERE id = ?1",
    [DB_STMT_AUDIT_INSERT] =
        "INSERT INTO audit(annotator_id, action, kind, target_id, detail_json, undone_by) "
        "VALUES (?1, ?2, ?3, ?4, ifnull(?5, '{}'), ?6)",
    [DB_STMT_AUDIT_LAST_OPEN] =
        "SELECT id, annotator_id, action, kind, target_id, detail_json, undone_by, at FROM audit "
        "WHERE annotator_id = ?1 AND action IN ('add', 'change') AND undone_by IS NULL "
        "ORDER BY id DESC LIMIT 1",
    [DB_STMT_AUDIT_SET_UNDONE] = "UPDATE audit SET undone_by = ?2 WHERE id = ?1",
    [DB_STMT_IMPORT_INSERT] = "INSERT INTO imports(format, source, annotator_id) VALUES (?1, ?2, ?3)",
    [DB_STMT_IMPORT_FINISH] =
        "UPDATE imports SET n_records = ?2, n_bad = ?3, n_flagged = ?4 WHERE id = ?1",
    [DB_STMT_COUNTS] =
        "SELECT (SELECT user_version FROM pragma_user_version), "
        "(SELECT count(*) FROM models), (SELECT count(*) FROM runs), "
        "(SELECT count(*) FROM metrics), (SELECT count(*) FROM prompts), "
        "(SELECT count(*) FROM generations), (SELECT count(*) FROM annotators), "
        "(SELECT count(*) FROM guidelines), (SELECT count(*) FROM rankings), "
        "(SELECT count(*) FROM ranking_items), (SELECT count(*) FROM pairs), "
        "(SELECT count(*) FROM pairs WHERE ranking_id IS NULL), "
        "(SELECT count(*) FROM pairs WHERE ranking_id IS NOT NULL), "
        "(SELECT count(*) FROM pairs WHERE verdict = 'better'), "
        "(SELECT count(*) FROM pairs WHERE verdict = 'tie'), "
        "(SELECT count(*) FROM pairs WHERE verdict = 'both_bad'), "
        "(SELECT count(*) FROM pairs WHERE flags IS NOT NULL), "
        "(SELECT ifnull(sum(n_tied_pairs), 0) FROM rankings), "
        "(SELECT count(*) FROM ratings), (SELECT count(*) FROM skips), "
        "(SELECT count(*) FROM audit), (SELECT count(*) FROM imports)",
};

/* ---- binding and stepping helpers ---- */

static void bind_text(sqlite3_stmt *st, int i, const char *s) {
    if (s) sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else sqlite3_bind_null(st, i);
}

static void bind_id(sqlite3_stmt *st, int i, int64_t id) {
    if (id) sqlite3_bind_int64(st, i, id);
    else sqlite3_bind_null(st, i);
}

static void bind_real(sqlite3_stmt *st, int i, double v) {
    if (isnan(v)) sqlite3_bind_null(st, i);
    else sqlite3_bind_double(st, i, v);
}

/* 64-bit FNV-1a of a text, as a signed SQLite integer: the key of the text lookups. */
static int64_t text_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) h = (h ^ *p) * 1099511628211ull;
    return (int64_t)h;
}

static const char *col_text(sqlite3_stmt *st, int i) {
    return (const char *)sqlite3_column_text(st, i);
}

static void finish(sqlite3_stmt *st) {
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Steps a write statement once; *id (if given) gets the new rowid. With must_change, a write
 * that changed no row is RLHF_ERR_NOT_FOUND. */
static int run_write(db *d, sqlite3_stmt *st, const char *what, int64_t *id, int must_change,
                     rlhf_error *err) {
    int rc = db_step(d, st), ret = 0;
    if (rc != SQLITE_DONE) ret = db_fail(d, err, what);
    else if (must_change && sqlite3_changes(d->conn) == 0)
        ret = rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "%s: %s: no such row", d->path, what);
    else if (id) *id = sqlite3_last_insert_rowid(d->conn);
    finish(st);
    return ret;
}

/* Steps a query returning one id at most; *id = 0 when there is no row. */
static int run_find(db *d, sqlite3_stmt *st, const char *what, int64_t *id, rlhf_error *err) {
    *id = 0;
    int rc = db_step(d, st), ret = 0;
    if (rc == SQLITE_ROW) *id = sqlite3_column_int64(st, 0);
    else if (rc != SQLITE_DONE) ret = db_fail(d, err, what);
    finish(st);
    return ret;
}

#define STMT(d, id, err)                                   \
    sqlite3_stmt *st = db_stmt((d), (id), (err));          \
    if (!st) return (err) ? (err)->code : RLHF_ERR_DB

/* ---- annotators and guidelines ---- */

int db_annotator_find(db *d, const char *name, int64_t *id, rlhf_error *err) {
    STMT(d, DB_STMT_ANNOTATOR_FIND, err);
    bind_text(st, 1, name);
    return run_find(d, st, "finding an annotator", id, err);
}

int db_annotator_insert(db *d, const char *name, int64_t *id, rlhf_error *err) {
    STMT(d, DB_STMT_ANNOTATOR_INSERT, err);
    bind_text(st, 1, name);
    return run_write(d, st, "adding an annotator", id, 0, err);
}

int db_annotator_name(db *d, int64_t id, char *buf, size_t size, rlhf_error *err) {
    STMT(d, DB_STMT_ANNOTATOR_NAME, err);
    sqlite3_bind_int64(st, 1, id);
    int rc = db_step(d, st), ret = 0;
    if (size) buf[0] = '\0';
    if (rc == SQLITE_ROW) {
        const char *name = col_text(st, 0);
        if (name && size) snprintf(buf, size, "%s", name);
    } else if (rc != SQLITE_DONE) {
        ret = db_fail(d, err, "reading an annotator");
    }
    finish(st);
    return ret;
}

int db_guideline_find(db *d, const char *version, const char *text, int64_t *id, rlhf_error *err) {
    STMT(d, DB_STMT_GUIDELINE_FIND, err);
    bind_text(st, 1, version);
    bind_text(st, 2, text ? text : "");
    return run_find(d, st, "finding a guideline", id, err);
}

int db_guideline_insert(db *d, const char *version, const char *text, int64_t *id,
                        rlhf_error *err) {
    STMT(d, DB_STMT_GUIDELINE_INSERT, err);
    bind_text(st, 1, version);
    bind_text(st, 2, text ? text : "");
    return run_write(d, st, "adding a guideline", id, 0, err);
}

/* ---- models, runs, metrics ---- */

int db_model_insert(db *d, const db_model_row *row, int64_t *id, rlhf_error *err) {
    STMT(d, DB_STMT_MODEL_INSERT, err);
    bind_text(st, 1, row->name);
    bind_text(st, 2, row->path);
    bind_text(st, 3, row->family);
    bind_id(st, 4, row->parent_id);
    bind_text(st, 5, row->made_by);
    bind_id(st, 6, row->run_id);
    return run_write(d, st, "adding a model", id, 0, err);
}

int db_model_find(db *d, const char *name, int64_t *id, rlhf_error *err) {
    STMT(d, DB_STMT_MODEL_FIND, err);
    bind_text(st, 1, name);
    return run_find(d, st, "finding a model", id, err);
}

int db_run_insert(db *d, const db_run_row *row, int64_t *id, rlhf_error *err) {
    STMT(d, DB_STMT_RUN_INSERT, err);
    bind_text(st, 1, row->kind);
    bind_id(st, 2, row->input_model_id);
    bind_id(st, 3, row->output_model_id);
    bind_text(st, 4, row->config_json);
    bind_text(st, 5, row->status);
    return run_write(d, st, "adding a run", id, 0, err);
}

int db_run_finish(db *d, int64_t id, const char *status, int64_t output_model_id, rlhf_error *err) {
    STMT(d, DB_STMT_RUN_FINISH, err);
    sqlite3_bind_int64(st, 1, id);
    bind_text(st, 2, status);
    bind_id(st, 3, output_model_id);
    return run_write(d, st, "finishing a run", NULL, 1, err);
}

int db_metric_insert(db *d, int64_t run_id, int64_t step, const char *name, double value,
                     rlhf_error *err) {
    STMT(d, DB_STMT_METRIC_INSERT, err);
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_int64(st, 2, step);
    bind_text(st, 3, name);
    bind_real(st, 4, isfinite(value) ? value : NAN);
    return run_write(d, st, "adding a metric", NULL, 0, err);
}

/* ---- prompts and generations ---- */

int db_prompt_find(db *d, const db_prompt_row *row, int64_t *id, rlhf_error *err) {
    STMT(d, DB_STMT_PROMPT_FIND, err);
    bind_text(st, 1, row->text);
    bind_text(st, 2, row->template_text);
    bind_text(st, 3, row->examples_json);
    bind_text(st, 4, row->messages_json);
    sqlite3_bind_int64(st, 5, text_hash(row->text));
    return run_find(d, st, "finding a prompt", id, err);
}

int db_prompt_insert(db *d, const db_prompt_row *row, int64_t *id, rlhf_error *err) {
    STMT(d, DB_STMT_PROMPT_INSERT, err);
    bind_text(st, 1, row->text);
    bind_text(st, 2, row->template_text);
    bind_text(st, 3, row->examples_json);
    bind_text(st, 4, row->messages_json);
    bind_text(st, 5, row->tags);
    sqlite3_bind_int64(st, 6, text_hash(row->text));
    return run_write(d, st, "adding a prompt", id, 0, err);
}

int db_generation_insert(db *d, const db_generation_row *row, int64_t *id, rlhf_error *err) {
    STMT(d, DB_STMT_GENERATION_INSERT, err);
    sqlite3_bind_int64(st, 1, row->prompt_id);
    bind_id(st, 2, row->model_id);
    bind_text(st, 3, row->origin);
    bind_text(st, 4, row->text);
    bind_text(st, 5, row->messages_json);
    bind_text(st, 6, row->record_layout);
    if (row->n_tokens >= 0) sqlite3_bind_int64(st, 7, row->n_tokens);
    if (row->token_ids && row->n_token_ids) {
        /* Little-endian int32 whatever the host, so a file moves between machines. */
        unsigned char *blob = malloc(row->n_token_ids * 4);
        if (!blob) {
            finish(st);
            return rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: adding a generation: out of memory", d->path);
        }
        for (size_t i = 0; i < row->n_token_ids; i++) {
            uint32_t v = (uint32_t)row->token_ids[i];
            for (int b = 0; b < 4; b++) blob[4 * i + (size_t)b] = (unsigned char)(v >> (8 * b));
        }
        sqlite3_bind_blob64(st, 8, blob, (sqlite3_uint64)row->n_token_ids * 4, free);
    }
    bind_text(st, 9, row->decoding_json);
    bind_text(st, 10, row->strategy);
    if (row->has_seed) sqlite3_bind_int64(st, 11, row->seed);
    bind_real(st, 12, row->logprob);
    bind_real(st, 13, row->latency_ms);
    bind_id(st, 14, row->import_id);
    bind_text(st, 15, row->flags);
    sqlite3_bind_int64(st, 16, text_hash(row->text));
    return run_write(d, st, "adding a generation", id, 0, err);
}

int db_generation_find(db *d, const db_generation_row *row, int64_t *id, rlhf_error *err) {
    STMT(d, DB_STMT_GENERATION_FIND, err);
    sqlite3_bind_int64(st, 1, row->prompt_id);
    bind_text(st, 2, row->text);
    bind_text(st, 3, row->origin);
    bind_text(st, 4, row->messages_json);
    bind_text(st, 5, row->record_layout);
    sqlite3_bind_int64(st, 6, text_hash(row->text));
    return run_find(d, st, "finding a generation", id, err);
}

static void read_generation_view(sqlite3_stmt *st, db_generation_view *v) {
    v->generation_id = sqlite3_column_int64(st, 0);
    v->prompt_id = sqlite3_column_int64(st, 1);
    v->model_id = sqlite3_column_int64(st, 2);
    v->origin = col_text(st, 3);
    v->text = col_text(st, 4);
    v->messages_json = col_text(st, 5);
    v->record_layout = col_text(st, 6);
    v->model = col_text(st, 7);
    v->strategy = col_text(st, 8);
    v->flags = col_text(st, 9);
    v->prompt_text = col_text(st, 10);
    v->prompt_messages_json = col_text(st, 11);
}

/* Room for any one row handed to a callback. */
union row_buf {
    db_generation_view generation;
    db_ranking_view ranking;
    db_ranking_item_view ranking_item;
    db_pair_view pair;
    db_rating_row rating;
    db_audit_row audit;
};

/* Callbacks travel as a generic function pointer (converting between function pointer types
 * is defined; to void * it is not) and are cast back to their own type by the reader. */
typedef void (*any_fn)(void);

/* Runs an iterating statement, converting each row with `read` and calling the callback. */
typedef int (*row_reader)(sqlite3_stmt *st, union row_buf *buf, any_fn fn, void *ctx);

static int run_each(db *d, sqlite3_stmt *st, const char *what, row_reader read, any_fn fn,
                    void *ctx, int must_find, rlhf_error *err) {
    int rc, ret = 0, n = 0;
    union row_buf row_buf;
    while ((rc = db_step(d, st)) == SQLITE_ROW) {
        n++;
        ret = read(st, &row_buf, fn, ctx);
        if (ret) break;
    }
    if (!ret && rc != SQLITE_DONE && rc != SQLITE_ROW) ret = db_fail(d, err, what);
    else if (!ret && must_find && n == 0)
        ret = rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "%s: %s: no such row", d->path, what);
    finish(st);
    return ret;
}

static int call_generation(sqlite3_stmt *st, union row_buf *buf, any_fn fn, void *ctx) {
    db_generation_view *v = &buf->generation;
    memset(v, 0, sizeof *v);
    read_generation_view(st, v);
    return ((db_generation_fn)fn)(ctx, v);
}

int db_generation_get(db *d, int64_t id, db_generation_fn fn, void *ctx, rlhf_error *err) {
    STMT(d, DB_STMT_GENERATION_GET, err);
    sqlite3_bind_int64(st, 1, id);
    return run_each(d, st, "reading a generation", call_generation, (any_fn)fn, ctx, 1, err);
}

int db_generations_each(db *d, const char *origin, db_generation_fn fn, void *ctx,
                        rlhf_error *err) {
    STMT(d, DB_STMT_GENERATIONS_EACH, err);
    bind_text(st, 1, origin);
    return run_each(d, st, "reading generations", call_generation, (any_fn)fn, ctx, 0, err);
}

/* ---- rankings ---- */

int db_ranking_insert(db *d, const db_ranking_row *row, int64_t *id, rlhf_error *err) {
    STMT(d, DB_STMT_RANKING_INSERT, err);
    sqlite3_bind_int64(st, 1, row->prompt_id);
    sqlite3_bind_int64(st, 2, row->annotator_id);
    bind_id(st, 3, row->guideline_id);
    sqlite3_bind_int(st, 4, row->k);
    bind_text(st, 5, row->items_key);
    sqlite3_bind_int(st, 6, row->n_tied_pairs);
    bind_text(st, 7, row->flags);
    bind_text(st, 8, row->comment);
    return run_write(d, st, "adding a ranking", id, 0, err);
}

int db_ranking_item_insert(db *d, int64_t ranking_id, int position, int64_t generation_id,
                           int rank, rlhf_error *err) {
    STMT(d, DB_STMT_RANKING_ITEM_INSERT, err);
    sqlite3_bind_int64(st, 1, ranking_id);
    sqlite3_bind_int(st, 2, position);
    sqlite3_bind_int64(st, 3, generation_id);
    sqlite3_bind_int(st, 4, rank);
    return run_write(d, st, "adding a ranked item", NULL, 0, err);
}

int db_ranking_find(db *d, int64_t annotator_id, const char *items_key, int64_t *id,
                    rlhf_error *err) {
    STMT(d, DB_STMT_RANKING_FIND, err);
    sqlite3_bind_int64(st, 1, annotator_id);
    bind_text(st, 2, items_key);
    return run_find(d, st, "finding a ranking", id, err);
}

int db_ranking_delete(db *d, int64_t id, rlhf_error *err) {
    STMT(d, DB_STMT_RANKING_DELETE, err);
    sqlite3_bind_int64(st, 1, id);
    return run_write(d, st, "deleting a ranking", NULL, 1, err);
}

static int call_ranking(sqlite3_stmt *st, union row_buf *buf, any_fn fn, void *ctx) {
    db_ranking_view *v = &buf->ranking;
    memset(v, 0, sizeof *v);
    v->ranking_id = sqlite3_column_int64(st, 0);
    v->prompt_id = sqlite3_column_int64(st, 1);
    v->annotator_id = sqlite3_column_int64(st, 2);
    v->k = sqlite3_column_int(st, 3);
    v->n_tied_pairs = sqlite3_column_int(st, 4);
    v->n_pairs = sqlite3_column_int64(st, 5);
    v->annotator = col_text(st, 6);
    return ((db_ranking_fn)fn)(ctx, v);
}

int db_rankings_each(db *d, db_ranking_fn fn, void *ctx, rlhf_error *err) {
    STMT(d, DB_STMT_RANKINGS_EACH, err);
    return run_each(d, st, "reading rankings", call_ranking, (any_fn)fn, ctx, 0, err);
}

static int call_ranking_item(sqlite3_stmt *st, union row_buf *buf, any_fn fn, void *ctx) {
    db_ranking_item_view *v = &buf->ranking_item;
    memset(v, 0, sizeof *v);
    v->ranking_id = sqlite3_column_int64(st, 0);
    v->prompt_id = sqlite3_column_int64(st, 1);
    v->annotator_id = sqlite3_column_int64(st, 2);
    v->generation_id = sqlite3_column_int64(st, 3);
    v->position = sqlite3_column_int(st, 4);
    v->rank = sqlite3_column_int(st, 5);
    v->k = sqlite3_column_int(st, 6);
    v->annotator = col_text(st, 7);
    v->model = col_text(st, 8);
    v->strategy = col_text(st, 9);
    v->flags = col_text(st, 10);
    return ((db_ranking_item_fn)fn)(ctx, v);
}

int db_ranking_items_each(db *d, db_ranking_item_fn fn, void *ctx, rlhf_error *err) {
    STMT(d, DB_STMT_RANKING_ITEMS_EACH, err);
    return run_each(d, st, "reading ranked items", call_ranking_item, (any_fn)fn, ctx, 0, err);
}

/* ---- pairs ---- */

static void bind_pair(sqlite3_stmt *st, int first, const db_pair_row *row) {
    /* chosen, rejected, verdict, margin, weight in this order from `first` */
    sqlite3_bind_int64(st, first, row->chosen_id);
    sqlite3_bind_int64(st, first + 1, row->rejected_id);
    bind_text(st, first + 2, row->verdict);
    bind_real(st, first + 3, row->margin);
    bind_real(st, first + 4, row->weight);
}

int db_pair_insert(db *d, const db_pair_row *row, int64_t *id, rlhf_error *err) {
    STMT(d, DB_STMT_PAIR_INSERT, err);
    sqlite3_bind_int64(st, 1, row->prompt_id);
    bind_pair(st, 2, row);
    bind_id(st, 7, row->ranking_id);
    sqlite3_bind_int64(st, 8, row->annotator_id);
    bind_id(st, 9, row->guideline_id);
    bind_id(st, 10, row->import_id);
    bind_text(st, 11, row->flags);
    bind_text(st, 12, row->comment);
    return run_write(d, st, "adding a pair", id, 0, err);
}

int db_pair_find_direct(db *d, int64_t annotator_id, int64_t generation_a, int64_t generation_b,
                        int64_t *id, rlhf_error *err) {
    STMT(d, DB_STMT_PAIR_FIND_DIRECT, err);
    sqlite3_bind_int64(st, 1, annotator_id);
    sqlite3_bind_int64(st, 2, generation_a);
    sqlite3_bind_int64(st, 3, generation_b);
    return run_find(d, st, "finding a pair", id, err);
}

int db_pair_delete(db *d, int64_t id, rlhf_error *err) {
    STMT(d, DB_STMT_PAIR_DELETE, err);
    sqlite3_bind_int64(st, 1, id);
    return run_write(d, st, "deleting a pair", NULL, 1, err);
}

int db_pair_update(db *d, int64_t id, const db_pair_row *row, rlhf_error *err) {
    STMT(d, DB_STMT_PAIR_UPDATE, err);
    sqlite3_bind_int64(st, 1, id);
    bind_pair(st, 2, row);
    bind_text(st, 7, row->flags);
    bind_text(st, 8, row->comment);
    return run_write(d, st, "changing a pair", NULL, 1, err);
}

static int call_pair(sqlite3_stmt *st, union row_buf *buf, any_fn fn, void *ctx) {
    db_pair_view *v = &buf->pair;
    memset(v, 0, sizeof *v);
    v->pair_id = sqlite3_column_int64(st, 0);
    v->row.prompt_id = sqlite3_column_int64(st, 1);
    v->row.chosen_id = sqlite3_column_int64(st, 2);
    v->row.rejected_id = sqlite3_column_int64(st, 3);
    v->row.verdict = col_text(st, 4);
    v->row.margin = sqlite3_column_double(st, 5);
    v->row.weight = sqlite3_column_double(st, 6);
    v->row.ranking_id = sqlite3_column_int64(st, 7);
    v->row.annotator_id = sqlite3_column_int64(st, 8);
    v->row.guideline_id = sqlite3_column_int64(st, 9);
    v->row.import_id = sqlite3_column_int64(st, 10);
    v->row.flags = col_text(st, 11);
    v->row.comment = col_text(st, 12);
    v->annotator = col_text(st, 13);
    v->ranking_k = sqlite3_column_int(st, 14);
    v->chosen_model_id = sqlite3_column_int64(st, 15);
    v->rejected_model_id = sqlite3_column_int64(st, 16);
    v->chosen_model = col_text(st, 17);
    v->rejected_model = col_text(st, 18);
    v->chosen_strategy = col_text(st, 19);
    v->rejected_strategy = col_text(st, 20);
    if (sqlite3_column_count(st) > 21) {
        v->prompt_text = col_text(st, 21);
        v->prompt_messages_json = col_text(st, 22);
        v->chosen_text = col_text(st, 23);
        v->chosen_messages_json = col_text(st, 24);
        v->rejected_text = col_text(st, 25);
        v->rejected_messages_json = col_text(st, 26);
    }
    return ((db_pair_fn)fn)(ctx, v);
}

int db_pair_get(db *d, int64_t id, db_pair_fn fn, void *ctx, rlhf_error *err) {
    STMT(d, DB_STMT_PAIR_GET, err);
    sqlite3_bind_int64(st, 1, id);
    return run_each(d, st, "reading a pair", call_pair, (any_fn)fn, ctx, 1, err);
}

int db_pairs_each(db *d, int with_text, db_pair_fn fn, void *ctx, rlhf_error *err) {
    STMT(d, with_text ? DB_STMT_PAIRS_EACH_TEXT : DB_STMT_PAIRS_EACH, err);
    return run_each(d, st, "reading pairs", call_pair, (any_fn)fn, ctx, 0, err);
}

/* ---- ratings and skips ---- */

int db_rating_insert(db *d, const db_rating_row *row, int64_t *id, rlhf_error *err) {
    STMT(d, DB_STMT_RATING_INSERT, err);
    sqlite3_bind_int64(st, 1, row->generation_id);
    sqlite3_bind_int64(st, 2, row->annotator_id);
    bind_id(st, 3, row->guideline_id);
    if (row->score) sqlite3_bind_int(st, 4, row->score);
    bind_text(st, 5, row->labels);
    bind_text(st, 6, row->comment);
    return run_write(d, st, "adding a rating", id, 0, err);
}

int db_rating_find(db *d, int64_t annotator_id, int64_t generation_id, int64_t *id,
                   rlhf_error *err) {
    STMT(d, DB_STMT_RATING_FIND, err);
    sqlite3_bind_int64(st, 1, annotator_id);
    sqlite3_bind_int64(st, 2, generation_id);
    return run_find(d, st, "finding a rating", id, err);
}

static int call_rating(sqlite3_stmt *st, union row_buf *buf, any_fn fn, void *ctx) {
    db_rating_row *r = &buf->rating;
    memset(r, 0, sizeof *r);
    int64_t id = sqlite3_column_int64(st, 0);
    r->generation_id = sqlite3_column_int64(st, 1);
    r->annotator_id = sqlite3_column_int64(st, 2);
    r->guideline_id = sqlite3_column_int64(st, 3);
    r->score = sqlite3_column_int(st, 4);
    r->labels = col_text(st, 5);
    r->comment = col_text(st, 6);
    return ((db_rating_fn)fn)(ctx, id, r);
}

int db_rating_get(db *d, int64_t id, db_rating_fn fn, void *ctx, rlhf_error *err) {
    STMT(d, DB_STMT_RATING_GET, err);
    sqlite3_bind_int64(st, 1, id);
    return run_each(d, st, "reading a rating", call_rating, (any_fn)fn, ctx, 1, err);
}

int db_rating_update(db *d, int64_t id, const db_rating_row *row, rlhf_error *err) {
    STMT(d, DB_STMT_RATING_UPDATE, err);
    sqlite3_bind_int64(st, 1, id);
    if (row->score) sqlite3_bind_int(st, 2, row->score);
    bind_text(st, 3, row->labels);
    bind_text(st, 4, row->comment);
    return run_write(d, st, "changing a rating", NULL, 1, err);
}

int db_rating_delete(db *d, int64_t id, rlhf_error *err) {
    STMT(d, DB_STMT_RATING_DELETE, err);
    sqlite3_bind_int64(st, 1, id);
    return run_write(d, st, "deleting a rating", NULL, 1, err);
}

int db_skip_insert(db *d, int64_t prompt_id, int64_t annotator_id, int64_t guideline_id,
                   const char *reason, int64_t *id, rlhf_error *err) {
    STMT(d, DB_STMT_SKIP_INSERT, err);
    sqlite3_bind_int64(st, 1, prompt_id);
    sqlite3_bind_int64(st, 2, annotator_id);
    bind_id(st, 3, guideline_id);
    bind_text(st, 4, reason);
    return run_write(d, st, "adding a skip", id, 0, err);
}

int db_skip_delete(db *d, int64_t id, rlhf_error *err) {
    STMT(d, DB_STMT_SKIP_DELETE, err);
    sqlite3_bind_int64(st, 1, id);
    return run_write(d, st, "deleting a skip", NULL, 1, err);
}

/* ---- audit ---- */

int db_audit_insert(db *d, const db_audit_row *row, int64_t *id, rlhf_error *err) {
    STMT(d, DB_STMT_AUDIT_INSERT, err);
    sqlite3_bind_int64(st, 1, row->annotator_id);
    bind_text(st, 2, row->action);
    bind_text(st, 3, row->kind);
    sqlite3_bind_int64(st, 4, row->target_id);
    bind_text(st, 5, row->detail_json);
    bind_id(st, 6, row->undone_by);
    return run_write(d, st, "writing the audit log", id, 0, err);
}

static int call_audit(sqlite3_stmt *st, union row_buf *buf, any_fn fn, void *ctx) {
    db_audit_row *r = &buf->audit;
    memset(r, 0, sizeof *r);
    int64_t id = sqlite3_column_int64(st, 0);
    r->annotator_id = sqlite3_column_int64(st, 1);
    r->action = col_text(st, 2);
    r->kind = col_text(st, 3);
    r->target_id = sqlite3_column_int64(st, 4);
    r->detail_json = col_text(st, 5);
    r->undone_by = sqlite3_column_int64(st, 6);
    r->at = col_text(st, 7);
    return ((db_audit_fn)fn)(ctx, id, r);
}

int db_audit_last_open(db *d, int64_t annotator_id, db_audit_fn fn, void *ctx, rlhf_error *err) {
    STMT(d, DB_STMT_AUDIT_LAST_OPEN, err);
    sqlite3_bind_int64(st, 1, annotator_id);
    return run_each(d, st, "reading the audit log", call_audit, (any_fn)fn, ctx, 1, err);
}

int db_audit_set_undone(db *d, int64_t id, int64_t undone_by, rlhf_error *err) {
    STMT(d, DB_STMT_AUDIT_SET_UNDONE, err);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, undone_by);
    return run_write(d, st, "marking an audit entry undone", NULL, 1, err);
}

/* ---- imports ---- */

int db_import_insert(db *d, const char *format, const char *source, int64_t annotator_id,
                     int64_t *id, rlhf_error *err) {
    STMT(d, DB_STMT_IMPORT_INSERT, err);
    bind_text(st, 1, format);
    bind_text(st, 2, source);
    sqlite3_bind_int64(st, 3, annotator_id);
    return run_write(d, st, "recording an import", id, 0, err);
}

int db_import_finish(db *d, int64_t id, int64_t n_records, int64_t n_bad, int64_t n_flagged,
                     rlhf_error *err) {
    STMT(d, DB_STMT_IMPORT_FINISH, err);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, n_records);
    sqlite3_bind_int64(st, 3, n_bad);
    sqlite3_bind_int64(st, 4, n_flagged);
    return run_write(d, st, "recording an import", NULL, 1, err);
}

/* ---- counts ---- */

int db_get_counts(db *d, db_counts *out, rlhf_error *err) {
    memset(out, 0, sizeof *out);
    STMT(d, DB_STMT_COUNTS, err);
    int rc = db_step(d, st), ret = 0;
    if (rc == SQLITE_ROW) {
        int64_t *fields[] = {
            &out->models, &out->runs, &out->metrics, &out->prompts, &out->generations,
            &out->annotators, &out->guidelines, &out->rankings, &out->ranking_items, &out->pairs,
            &out->pairs_direct, &out->pairs_derived, &out->pairs_better, &out->pairs_tie,
            &out->pairs_both_bad, &out->pairs_flagged, &out->tied_pairs_excluded, &out->ratings,
            &out->skips, &out->audit, &out->imports,
        };
        out->schema_version = sqlite3_column_int(st, 0);
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
            *fields[i] = sqlite3_column_int64(st, (int)i + 1);
    } else {
        ret = db_fail(d, err, "counting rows");
    }
    finish(st);
    return ret;
}
