/* db.h — the feedback database: opening, migrating, transactions and table-level functions.
 *
 * Every SQL statement of the project lives in db/: the schema as numbered migrations (embedded
 * at build time, see db/migrations.h) and one prepared statement per table operation below,
 * each with bound parameters, never SQL assembled from user text. db/ stores texts, numbers and
 * token arrays; it knows nothing of what a ranking means (feedback/ derives pairs and decides
 * what is a duplicate or a bad judgement).
 *
 * Opening sets WAL mode, foreign keys, synchronous=FULL (a committed judgement survives a power
 * cut, not only a crash) and a busy timeout; every write transaction starts with BEGIN
 * IMMEDIATE in a retry loop, so two processes writing the same file wait for each other instead
 * of failing with "database is locked". An older database is migrated forward on open, inside
 * one transaction, after a backup copy FILE.bak-vN; a newer one is refused and left untouched.
 *
 * Conventions for the row structs: ids are int64_t and 0 means "none" (SQL NULL); a NULL string
 * is SQL NULL; a NaN double is SQL NULL. Rows passed in are borrowed for the call. Rows handed
 * to a callback are borrowed for the duration of the callback only; a callback returns 0 to go
 * on or non-zero to stop (that value is then returned by the iterating function). */
#ifndef RLHF_DB_DB_H
#define RLHF_DB_DB_H

#include <stddef.h>
#include <stdint.h>

#include "src/core/error.h"

typedef struct db db;

typedef struct {
    int must_exist;   /* 1: a missing file is RLHF_ERR_NOT_FOUND instead of being created */
    int busy_wait_ms; /* how long a write waits for another process's transaction; 0 = 60000 */
} db_open_params;

typedef struct {
    int created;             /* this open created the schema in a new or empty file */
    int version_before;      /* user_version found on open (0 for a new database) */
    int version_after;       /* user_version now */
    const char *backup_path; /* the backup written before migrating, or NULL; owned by the db */
} db_open_info;

/* The schema version this program creates and understands (the last migration's number). */
int db_schema_version(void);

/* Opens (creating if allowed) and migrates the database at `path` (":memory:" works). `p` may
 * be NULL for defaults. On success *out is a handle the caller closes with db_close; on error
 * *out is NULL and nothing was changed in a database newer than this program. */
int db_open(db **out, const char *path, const db_open_params *p, rlhf_error *err);
/* Closes the handle and sets *d to NULL; safe on NULL and on an already closed handle. */
void db_close(db **d);
/* What the open found and did; strings are borrowed from the handle. */
void db_get_open_info(const db *d, db_open_info *info);
/* The path given to db_open (borrowed). */
const char *db_path(const db *d);

/* ---- transactions ---- */
/* BEGIN IMMEDIATE: takes the write lock now, retrying while another connection holds it (up
 * to busy_wait_ms), so that no statement inside can fail with SQLITE_BUSY. Not nestable. */
int db_begin(db *d, rlhf_error *err);
int db_commit(db *d, rlhf_error *err);
/* Rolls the open transaction back; a no-op when none is open. */
void db_rollback(db *d);
/* One savepoint level inside a transaction, for "all of this record or none of it". */
int db_savepoint(db *d, rlhf_error *err);
int db_release(db *d, rlhf_error *err);
void db_rollback_to(db *d);

/* ---- annotators and guidelines ---- */
/* *id = 0 when there is no such row (not an error). */
int db_annotator_find(db *d, const char *name, int64_t *id, rlhf_error *err);
int db_annotator_insert(db *d, const char *name, int64_t *id, rlhf_error *err);
int db_guideline_find(db *d, const char *version, const char *text, int64_t *id, rlhf_error *err);
int db_guideline_insert(db *d, const char *version, const char *text, int64_t *id, rlhf_error *err);
/* The name of annotator `id` copied into buf (truncated to size); "" if there is none. */
int db_annotator_name(db *d, int64_t id, char *buf, size_t size, rlhf_error *err);

/* ---- models, runs, metrics ---- */
typedef struct {
    const char *name;    /* unique */
    const char *path;    /* model directory or file, may be NULL */
    const char *family;  /* gpt2, llama, ... may be NULL */
    int64_t parent_id;   /* the model it was trained from, 0 if none */
    const char *made_by; /* external, pretrain, sft, classify, reward, dpo, ppo; NULL = external */
    int64_t run_id;      /* the run that made it, 0 if none */
} db_model_row;
int db_model_insert(db *d, const db_model_row *row, int64_t *id, rlhf_error *err);
int db_model_find(db *d, const char *name, int64_t *id, rlhf_error *err);

typedef struct {
    const char *kind;        /* pretrain, sft, classify, reward, dpo, ppo, eval */
    int64_t input_model_id;  /* 0 if none */
    int64_t output_model_id; /* 0 if none (yet) */
    const char *config_json; /* the full configuration, valid JSON; NULL = "{}" */
    const char *status;      /* running, done, failed, stopped; NULL = running */
} db_run_row;
int db_run_insert(db *d, const db_run_row *row, int64_t *id, rlhf_error *err);
/* Sets status and end time (and the output model when output_model_id != 0). */
int db_run_finish(db *d, int64_t id, const char *status, int64_t output_model_id, rlhf_error *err);
/* Inserts or replaces the value of (run, name, step). */
int db_metric_insert(db *d, int64_t run_id, int64_t step, const char *name, double value,
                     rlhf_error *err);

/* ---- prompts and generations ---- */
typedef struct {
    const char *text;          /* the rendered prompt */
    const char *template_text; /* the template that rendered it, may be NULL */
    const char *examples_json; /* few-shot examples as JSON, may be NULL */
    const char *messages_json; /* chat messages as JSON, may be NULL */
    const char *tags;          /* comma-separated, may be NULL */
} db_prompt_row;
/* Finds a prompt with the same text, template, examples and messages (tags are not compared). */
int db_prompt_find(db *d, const db_prompt_row *row, int64_t *id, rlhf_error *err);
int db_prompt_insert(db *d, const db_prompt_row *row, int64_t *id, rlhf_error *err);

typedef struct {
    int64_t prompt_id;
    int64_t model_id;          /* 0 if none (imported or written by a person) */
    const char *origin;        /* model, import, demo; NULL = model */
    const char *text;
    const char *messages_json; /* the chat form it was given in, may be NULL */
    const char *record_layout; /* prompt_completion, messages, or NULL */
    int64_t n_tokens;          /* -1 unknown */
    const int32_t *token_ids;  /* may be NULL */
    size_t n_token_ids;
    const char *decoding_json; /* full decoding settings, may be NULL */
    const char *strategy;      /* may be NULL */
    int has_seed;
    int64_t seed;
    double logprob;            /* NaN unknown */
    double latency_ms;         /* NaN unknown */
    int64_t import_id;         /* 0 if not imported */
    const char *flags;         /* check results, may be NULL */
} db_generation_row;
int db_generation_insert(db *d, const db_generation_row *row, int64_t *id, rlhf_error *err);
/* Finds a generation of the same prompt with the same origin, text, messages and layout. */
int db_generation_find(db *d, const db_generation_row *row, int64_t *id, rlhf_error *err);

/* A generation with the prompt it answers, as read back for checks, exports and datasets. */
typedef struct {
    int64_t generation_id;
    int64_t prompt_id;
    int64_t model_id;
    const char *origin;
    const char *text;
    const char *messages_json;
    const char *record_layout;
    const char *model;           /* model name, NULL if none */
    const char *strategy;
    const char *flags;
    const char *prompt_text;
    const char *prompt_messages_json;
} db_generation_view;
typedef int (*db_generation_fn)(void *ctx, const db_generation_view *row);
/* Calls fn once for generation `id`; RLHF_ERR_NOT_FOUND if there is none. */
int db_generation_get(db *d, int64_t id, db_generation_fn fn, void *ctx, rlhf_error *err);
/* Every generation of origin `origin`, in id order. */
int db_generations_each(db *d, const char *origin, db_generation_fn fn, void *ctx,
                        rlhf_error *err);

/* ---- judgements ---- */
typedef struct {
    int64_t prompt_id;
    int64_t annotator_id;
    int64_t guideline_id; /* 0 if none */
    int k;
    const char *items_key; /* an identity of the ranked set chosen by the caller */
    int n_tied_pairs;
    const char *flags;
    const char *comment;
} db_ranking_row;
int db_ranking_insert(db *d, const db_ranking_row *row, int64_t *id, rlhf_error *err);
int db_ranking_item_insert(db *d, int64_t ranking_id, int position, int64_t generation_id,
                           int rank, rlhf_error *err);
int db_ranking_find(db *d, int64_t annotator_id, const char *items_key, int64_t *id,
                    rlhf_error *err);
/* Deletes the ranking with its items and the pairs that name it (ON DELETE CASCADE). */
int db_ranking_delete(db *d, int64_t id, rlhf_error *err);

typedef struct {
    int64_t ranking_id;
    int64_t prompt_id;
    int64_t annotator_id;
    int k;
    int n_tied_pairs;
    int64_t n_pairs; /* pairs stored with this ranking_id */
    const char *annotator;
} db_ranking_view;
typedef int (*db_ranking_fn)(void *ctx, const db_ranking_view *row);
int db_rankings_each(db *d, db_ranking_fn fn, void *ctx, rlhf_error *err);

typedef struct {
    int64_t ranking_id;
    int64_t prompt_id;
    int64_t annotator_id;
    int64_t generation_id;
    int position;
    int rank;
    int k;
    const char *annotator;
    const char *model;    /* NULL if none */
    const char *strategy; /* NULL if none */
    const char *flags;    /* the ranking's flags */
} db_ranking_item_view;
typedef int (*db_ranking_item_fn)(void *ctx, const db_ranking_item_view *row);
/* Every ranked item, ordered by ranking id then position. */
int db_ranking_items_each(db *d, db_ranking_item_fn fn, void *ctx, rlhf_error *err);

typedef struct {
    int64_t prompt_id;
    int64_t chosen_id;
    int64_t rejected_id;
    const char *verdict; /* better, tie, both_bad */
    double margin;
    double weight;
    int64_t ranking_id;  /* 0 for a pair recorded directly */
    int64_t annotator_id;
    int64_t guideline_id;
    int64_t import_id;
    const char *flags;
    const char *comment;
} db_pair_row;
int db_pair_insert(db *d, const db_pair_row *row, int64_t *id, rlhf_error *err);
/* A pair recorded directly (not from a ranking) by this annotator on these two generations,
 * in either order; *id = 0 if none. */
int db_pair_find_direct(db *d, int64_t annotator_id, int64_t generation_a, int64_t generation_b,
                        int64_t *id, rlhf_error *err);
int db_pair_delete(db *d, int64_t id, rlhf_error *err);
/* Rewrites the judgement part of a pair (sides, verdict, margin, flags). */
int db_pair_update(db *d, int64_t id, const db_pair_row *row, rlhf_error *err);

/* A pair with its texts, models and annotator, as read for exports, datasets and statistics. */
typedef struct {
    int64_t pair_id;
    db_pair_row row;
    const char *annotator;
    int ranking_k;                 /* k of its ranking, 0 for a direct pair */
    const char *prompt_text;       /* the text fields are NULL when read without texts */
    const char *prompt_messages_json;
    const char *chosen_text;
    const char *chosen_messages_json;
    const char *rejected_text;
    const char *rejected_messages_json;
    int64_t chosen_model_id;
    int64_t rejected_model_id;
    const char *chosen_model;
    const char *rejected_model;
    const char *chosen_strategy;
    const char *rejected_strategy;
} db_pair_view;
typedef int (*db_pair_fn)(void *ctx, const db_pair_view *row);
/* Calls fn for pair `id`; RLHF_ERR_NOT_FOUND if there is none. */
int db_pair_get(db *d, int64_t id, db_pair_fn fn, void *ctx, rlhf_error *err);
/* Every pair in id order, with texts when with_text is 1 (slower). */
int db_pairs_each(db *d, int with_text, db_pair_fn fn, void *ctx, rlhf_error *err);

typedef struct {
    int64_t generation_id;
    int64_t annotator_id;
    int64_t guideline_id;
    int score;          /* 1..5, 0 = none */
    const char *labels; /* comma-separated, may be NULL */
    const char *comment;
} db_rating_row;
int db_rating_insert(db *d, const db_rating_row *row, int64_t *id, rlhf_error *err);
int db_rating_find(db *d, int64_t annotator_id, int64_t generation_id, int64_t *id,
                   rlhf_error *err);
typedef int (*db_rating_fn)(void *ctx, int64_t id, const db_rating_row *row);
int db_rating_get(db *d, int64_t id, db_rating_fn fn, void *ctx, rlhf_error *err);
/* Rewrites score, labels and comment. */
int db_rating_update(db *d, int64_t id, const db_rating_row *row, rlhf_error *err);
int db_rating_delete(db *d, int64_t id, rlhf_error *err);

/* Ratings with their texts (KTO's unpaired judgements), in id order. */
typedef struct {
    int64_t rating_id;
    int score;                        /* 1..5, 0 = none (a flag with labels only) */
    const char *labels;               /* may be NULL */
    const char *text;                 /* the rated generation */
    const char *prompt_text, *prompt_messages_json; /* messages may be NULL */
} db_rating_text_view;
typedef int (*db_rating_text_fn)(void *ctx, const db_rating_text_view *row);
int db_ratings_each_text(db *d, db_rating_text_fn fn, void *ctx, rlhf_error *err);

/* Every prompt's text and messages (messages may be NULL), in id order (db/db_rollout.c: the
 * online trainers' prompts). */
typedef int (*db_prompt_text_fn)(void *ctx, int64_t id, const char *text, const char *messages_json);
int db_prompts_each(db *d, db_prompt_text_fn fn, void *ctx, rlhf_error *err);

int db_skip_insert(db *d, int64_t prompt_id, int64_t annotator_id, int64_t guideline_id,
                   const char *reason, int64_t *id, rlhf_error *err);
int db_skip_delete(db *d, int64_t id, rlhf_error *err);

/* ---- audit log ---- */
typedef struct {
    int64_t annotator_id;
    const char *action;      /* add, change, undo */
    const char *kind;        /* ranking, pair, rating, skip */
    int64_t target_id;
    const char *detail_json; /* valid JSON */
    int64_t undone_by;       /* the undo entry that reverted this one, 0 if none */
    const char *at;          /* read only: when */
} db_audit_row;
int db_audit_insert(db *d, const db_audit_row *row, int64_t *id, rlhf_error *err);
typedef int (*db_audit_fn)(void *ctx, int64_t id, const db_audit_row *row);
/* Calls fn once with this annotator's newest 'add' or 'change' entry not undone yet;
 * RLHF_ERR_NOT_FOUND (with a message) if there is none. */
int db_audit_last_open(db *d, int64_t annotator_id, db_audit_fn fn, void *ctx, rlhf_error *err);
int db_audit_set_undone(db *d, int64_t id, int64_t undone_by, rlhf_error *err);

/* ---- imports ---- */
int db_import_insert(db *d, const char *format, const char *source, int64_t annotator_id,
                     int64_t *id, rlhf_error *err);
int db_import_finish(db *d, int64_t id, int64_t n_records, int64_t n_bad, int64_t n_flagged,
                     rlhf_error *err);

/* ---- whole-database questions ---- */
typedef struct {
    int schema_version;
    int64_t models, runs, metrics, prompts, generations, annotators, guidelines;
    int64_t rankings, ranking_items, pairs, pairs_direct, pairs_derived;
    int64_t pairs_better, pairs_tie, pairs_both_bad, pairs_flagged, tied_pairs_excluded;
    int64_t ratings, skips, audit, imports;
} db_counts;
int db_get_counts(db *d, db_counts *out, rlhf_error *err);

/* Runs PRAGMA integrity_check and foreign_key_check; fn gets each problem as one line. */
typedef int (*db_problem_fn)(void *ctx, const char *problem);
int db_check_integrity(db *d, db_problem_fn fn, void *ctx, rlhf_error *err);


/* ---- browsing: models, runs, the annotation queue (db/db_browse.c) ---- */
/* Rare, interactive reads (the REPL's /models, /runs, /next): prepared per call, not cached. */
typedef struct {
    int64_t id;
    const char *name, *path, *family, *made_by, *parent, *created_at; /* may be NULL */
} db_model_view;
typedef int (*db_model_fn)(void *ctx, const db_model_view *row);
int db_models_each(db *d, db_model_fn fn, void *ctx, rlhf_error *err);

typedef struct {
    int64_t id;
    const char *kind, *status, *input_model, *output_model, *started_at, *ended_at; /* may be NULL */
    int64_t n_metrics;
    const char *config_json; /* the run's configuration (JSON) */
} db_run_view;
typedef int (*db_run_fn)(void *ctx, const db_run_view *row);
int db_runs_each(db *d, db_run_fn fn, void *ctx, rlhf_error *err);

typedef struct {
    int64_t step;
    const char *name;
    double value; /* NaN when stored as NULL (not finite) */
} db_metric_view;
typedef int (*db_metric_fn)(void *ctx, const db_metric_view *row);
/* The metrics of run `run_id`, by name then step. */
int db_metrics_each(db *d, int64_t run_id, db_metric_fn fn, void *ctx, rlhf_error *err);

/* The queue of an annotator: prompts with two or more generations that the annotator has not
 * ranked, paired, rated or skipped. *prompt_id = 0 when none is left. annotator_id 0: an
 * annotator with no judgements yet. */
int db_queue_next(db *d, int64_t annotator_id, int64_t *prompt_id, rlhf_error *err);
int db_queue_progress(db *d, int64_t annotator_id, int64_t *done, int64_t *left, rlhf_error *err);

typedef struct {
    int64_t generation_id;
    const char *text, *model, *strategy, *decoding_json; /* may be NULL but text */
    const char *prompt_text, *prompt_messages_json;
    double logprob;   /* NaN unknown */
    int64_t n_tokens; /* -1 unknown */
} db_prompt_generation_view;
typedef int (*db_prompt_generation_fn)(void *ctx, const db_prompt_generation_view *row);
/* The generations of one prompt, in id order. */
int db_prompt_generations_each(db *d, int64_t prompt_id, db_prompt_generation_fn fn, void *ctx, rlhf_error *err);


/* ---- training caches and warnings (db/db_train.c) ---- */
/* DPO's reference log-probabilities, keyed by (reference fingerprint, the row's ids and loss
 * mask). The ids and mask are stored and compared on a hit, so a hash collision is a miss. */
typedef struct {
    const int32_t *ids;   /* the row's token ids */
    const uint8_t *mask;  /* (n) 1 where the id is scored */
    size_t n;
    double logp;          /* in for put, out for get */
    int found;            /* get: 1 when the cache held this very row */
} db_ref_logp_row;
/* Looks every row up (found, logp). */
int db_ref_logps_get(db *d, const char *fingerprint, db_ref_logp_row *rows, size_t n_rows, rlhf_error *err);
/* Stores the rows in one transaction; a row whose key is taken keeps the stored value. */
int db_ref_logps_put(db *d, const char *fingerprint, const db_ref_logp_row *rows, size_t n_rows, rlhf_error *err);
/* Rows cached for this fingerprint (NULL: all). */
int db_ref_logps_count(db *d, const char *fingerprint, int64_t *n, rlhf_error *err);

/* A health warning a run raised at `step` (code: a stable name such as dpo/chosen_logps_falling). */
int db_run_warning_insert(db *d, int64_t run_id, int64_t step, const char *code, const char *message,
                          rlhf_error *err);
typedef struct {
    int64_t step;
    const char *code, *message, *created_at;
} db_run_warning_view;
typedef int (*db_run_warning_fn)(void *ctx, const db_run_warning_view *row);
/* The warnings of run `run_id` by step. */
int db_run_warnings_each(db *d, int64_t run_id, db_run_warning_fn fn, void *ctx, rlhf_error *err);

#endif
