/* store.h — the feedback store: where human judgement lives.
 *
 * An opaque `store` handle over one SQLite file (db/ holds the SQL). It records models, runs and
 * their metrics, prompts and the generations made for them, and every judgement — rankings of
 * k >= 2 generations with ties, pairwise preferences, 1-5 ratings with labels, skips — each in
 * one transaction together with its audit entry, so an annotation is either wholly saved or not
 * at all, and a process killed at any moment loses nothing it had reported as saved.
 *
 * A judgement carries its annotator and the guideline they worked under (store_judge). Before
 * writing, the store checks it: identical sides are refused; an empty side, template or
 * special-token text in a response, or a repeat of the same annotator's earlier judgement are
 * refused with a clear message, or stored with flags when judge->allow_flagged is set (imports
 * do this). store_undo_last really removes an annotator's last judgement (or reverts their last
 * change) and logs the undo. Queries turn stored judgements into the engine's plain dataset
 * structs (src/train/dataset.h); agreement and Bradley–Terry leaderboards are computed on demand.
 *
 * Every function returns 0 or a negative RLHF_ERR_* code and fills `err` (may be NULL) with a
 * one-line message; strings passed in are borrowed for the call. */
#ifndef RLHF_FEEDBACK_STORE_H
#define RLHF_FEEDBACK_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "src/train/dataset.h"
#include "src/core/error.h"

typedef struct store store;

/* ---- opening ---- */

typedef struct {
    int must_exist;   /* 1: refuse to create a missing file (RLHF_ERR_NOT_FOUND) */
    int busy_wait_ms; /* how long a write waits for another process; 0 = 60000 */
} store_open_params;

typedef struct {
    int created;             /* the schema was created by this open */
    int version_before;      /* schema version found (0 for a new file) */
    int version_after;       /* schema version now */
    const char *backup_path; /* backup made before migrating, or NULL (owned by the store) */
} store_open_info;

/* Opens the database at `path` (":memory:" for a private in-memory one), creating it if
 * missing and migrating an older schema forward (after a backup copy PATH.bak-vN). A database
 * newer than this program is refused and left untouched. On success *out is the caller's, to
 * close with store_close; on error *out is NULL. */
int store_open(store **out, const char *path, rlhf_error *err);
/* The same with options; `params` may be NULL. */
int store_open_ex(store **out, const char *path, const store_open_params *params,
                  rlhf_error *err);
/* Closes and sets *s to NULL; safe on NULL. */
void store_close(store **s);
void store_get_open_info(const store *s, store_open_info *info);
/* The schema version this program creates. */
int store_schema_version(void);

/* ---- models, runs, metrics ---- */

typedef struct {
    const char *name;    /* unique, required */
    const char *path;    /* model directory or file, may be NULL */
    const char *family;  /* gpt2, llama, ... may be NULL */
    const char *parent;  /* name of the model it was trained from, may be NULL (must exist) */
    const char *made_by; /* external (NULL), pretrain, sft, classify, reward, dpo, ppo */
    int64_t run_id;      /* the run that made it, 0 if none */
} store_model;
int store_add_model(store *s, const store_model *m, int64_t *id, rlhf_error *err);
/* *id = 0 if there is no model of that name. */
int store_find_model(store *s, const char *name, int64_t *id, rlhf_error *err);

typedef struct {
    const char *kind;         /* pretrain, sft, classify, reward, dpo, ppo, eval */
    const char *input_model;  /* name, may be NULL */
    const char *config_json;  /* the full configuration as JSON, may be NULL */
} store_run;
int store_add_run(store *s, const store_run *r, int64_t *id, rlhf_error *err);
/* status: done, failed or stopped; output_model may be NULL. */
int store_finish_run(store *s, int64_t run_id, const char *status, const char *output_model,
                     rlhf_error *err);
int store_add_metric(store *s, int64_t run_id, int64_t step, const char *name, double value,
                     rlhf_error *err);

/* ---- prompts and generations ---- */

typedef struct {
    const char *text;          /* the rendered prompt, required */
    const char *template_text; /* the template that rendered it, may be NULL */
    const char *examples_json; /* few-shot examples as a JSON array, may be NULL */
    const char *messages_json; /* chat messages as a JSON array of {"role","content"}, may be NULL */
    const char *tags;          /* comma-separated, may be NULL */
} store_prompt;
/* Returns the id of an identical prompt if one exists (same text, template, examples and
 * messages), else adds it. JSON fields must be valid JSON. */
int store_add_prompt(store *s, const store_prompt *p, int64_t *id, rlhf_error *err);

typedef struct {
    int64_t prompt_id;         /* required */
    const char *model;         /* model name (must exist), NULL for none */
    const char *text;          /* required */
    int64_t n_tokens;          /* -1 unknown */
    const int32_t *token_ids;  /* optional (n_token_ids of them) */
    size_t n_token_ids;
    const char *decoding_json; /* the full decoding settings as JSON, may be NULL */
    const char *strategy;      /* greedy, beam, top-p, ... (for leaderboards), may be NULL */
    int has_seed;
    uint64_t seed;
    double logprob;            /* NaN unknown */
    double latency_ms;         /* NaN unknown */
} store_generation;
/* Adds a model generation (always a new row). */
int store_add_generation(store *s, const store_generation *g, int64_t *id, rlhf_error *err);

/* ---- judgements ---- */

typedef struct {
    const char *annotator;         /* who judges, required (created on first use) */
    const char *guideline_version; /* the guideline worked under, may be NULL */
    const char *guideline_text;    /* its text, may be NULL */
    const char *comment;           /* stored with the judgement, may be NULL */
    int allow_flagged;             /* 1: store a judgement failing a check with flags instead
                                      of refusing it (identical sides are always refused) */
} store_judge;

typedef enum {
    STORE_VERDICT_BETTER = 0, /* the first side (chosen) is better */
    STORE_VERDICT_TIE,        /* equally good */
    STORE_VERDICT_BOTH_BAD,   /* neither is acceptable */
} store_verdict;
/* "better", "tie", "both_bad". */
const char *store_verdict_name(store_verdict v);

/* What a judgement call stored. */
typedef struct {
    int64_t id;          /* the new row (ranking, pair, rating or skip) */
    size_t n_pairs;      /* rankings: pairs derived */
    size_t n_tied;       /* rankings: tied pairs excluded */
    char flags[256];     /* flags it was stored with ("" if clean) */
    char warning[512];   /* why it was flagged ("" if clean) */
} store_added;

/* Records a ranking of k generations of one prompt: ranks[i] (1 best, equal = tie, any
 * positive values; stored dense) for generation_ids[i]. Stores the ranking, its items and its
 * derived pairs (k(k-1)/2 minus ties) in one transaction. */
int store_add_ranking(store *s, const store_judge *j, const int64_t *generation_ids,
                      const int *ranks, int k, store_added *out, rlhf_error *err);
/* Records one pairwise judgement between two generations of one prompt: with
 * STORE_VERDICT_BETTER `chosen_id` beat `rejected_id`; otherwise the order is the order shown.
 * margin: preference strength (> 0, 1 if unsure). */
int store_add_pair(store *s, const store_judge *j, int64_t chosen_id, int64_t rejected_id,
                   store_verdict verdict, double margin, store_added *out, rlhf_error *err);
/* Records a rating: score 1..5 (0 = none) and/or labels ("unsafe,incorrect,off-topic":
 * comma-separated words of [a-z0-9_-]); at least one of them. */
int store_add_rating(store *s, const store_judge *j, int64_t generation_id, int score,
                     const char *labels, store_added *out, rlhf_error *err);
/* Records that the annotator skipped a prompt (reason may be NULL). */
int store_add_skip(store *s, const store_judge *j, int64_t prompt_id, const char *reason,
                   store_added *out, rlhf_error *err);
/* Changes the annotator's own direct pair (not one derived from a ranking: undo the ranking
 * and rank again). The old values go to the audit log so store_undo_last can restore them. */
int store_change_pair(store *s, const store_judge *j, int64_t pair_id, int64_t chosen_id,
                      int64_t rejected_id, store_verdict verdict, double margin,
                      rlhf_error *err);
/* Changes the annotator's own rating (same rules as store_add_rating). */
int store_change_rating(store *s, const store_judge *j, int64_t rating_id, int score,
                        const char *labels, rlhf_error *err);

typedef struct {
    char action[16];     /* what was undone: add or change */
    char kind[16];       /* ranking, pair, rating, skip */
    int64_t target_id;   /* its id */
    char at[40];         /* when it had been done */
} store_undone;
/* Undoes the annotator's most recent judgement or change that is not undone yet: an added
 * row is deleted (a ranking with its items and derived pairs), a change is reverted. One
 * transaction, logged in the audit. RLHF_ERR_NOT_FOUND if there is nothing to undo. */
int store_undo_last(store *s, const char *annotator, store_undone *out, rlhf_error *err);

/* ---- training data ---- */

typedef struct {
    int include_flagged;    /* 1: also pairs flagged at write time (excluded by default) */
    int normalize_rankings; /* 1: weight each pair derived from a ranking of k by 1/(k(k-1)/2)
                               (as InstructGPT does), so one ranking weighs at most as much as
                               one direct pair */
    const char *annotator;  /* only this annotator's pairs, NULL for all */
} store_pref_query;
/* Appends every strict preference (verdict better) to `out` (initialised by the caller), in
 * id order; ties and both-bad judgements carry no chosen/rejected and are left out. */
int store_get_pref_dataset(store *s, const store_pref_query *q, pref_dataset *out,
                           rlhf_error *err);

/* KTO's unpaired judgements: every rating with a score, score >= 4 of 5 desirable, score <= 2
 * undesirable, 3 left out (neither); a rating without a score (a flag: labels such as unsafe,
 * incorrect, off-topic) undesirable. With with_pairs, also every strict preference (as
 * store_get_pref_dataset gives them): its chosen reply desirable, its rejected undesirable.
 * Appended to `out` (initialised by the caller): ratings in id order, then pairs. */
typedef struct {
    int with_pairs;      /* 1: add the strict preference pairs' sides */
    int include_flagged; /* pairs flagged at write time too */
} store_kto_query;
int store_get_kto_dataset(store *s, const store_kto_query *q, kto_dataset *out, rlhf_error *err);

/* The user prompts of every stored prompt, for the online trainers (ppo, grpo, rloo) to sample
 * answers to (feedback/store_rollout.c): a chat prompt gives its last user message, a plain one
 * its text; each distinct prompt once, in id order. *out (n) new strings (free each, then the
 * array); an empty database gives n = 0. */
int store_get_prompt_texts(store *s, char ***out, size_t *n, rlhf_error *err);
/* The content of the last user message of a JSON array of {"role","content"} (a new string), or
 * NULL (none, or not such an array). */
char *store_last_user_message(const char *messages_json);

typedef struct {
    int skip_demos;       /* 1: leave out demonstrations (imported or written SFT data) */
    int skip_best_ranked; /* 1: leave out the best-ranked generation of each ranked prompt */
} store_sft_query;
/* Appends SFT examples to `out`: every demonstration (imported or written SFT data) in id
 * order, then for each prompt that was ranked the generation ranked first most often (ties:
 * the better mean rank, then the lower id). Demonstrations and rankings flagged at write time
 * (empty, leaking template text, duplicate) are left out. */
int store_get_sft_dataset(store *s, const store_sft_query *q, sft_dataset *out, rlhf_error *err);

/* ---- statistics ---- */

typedef struct {
    int schema_version;
    int64_t models, runs, metrics, prompts, generations, annotators, guidelines;
    int64_t rankings, ranking_items, pairs, pairs_direct, pairs_derived;
    int64_t pairs_better, pairs_tie, pairs_both_bad, pairs_flagged, tied_pairs_excluded;
    int64_t ratings, skips, audit, imports;
} store_counts;
int store_get_counts(store *s, store_counts *out, rlhf_error *err);

/* Integrity report: SQLite's integrity and foreign-key checks plus the store's own invariants
 * (pair sides answer the pair's prompt, each ranking has k items and k(k-1)/2 - ties pairs). */
typedef struct {
    char **problems; /* (n) one line each, owned */
    size_t n;
} store_check_report;
int store_check(store *s, store_check_report *out, rlhf_error *err);
void store_check_report_free(store_check_report *r);

/* Leaderboards: Bradley–Terry over every pairwise judgement between generations of different
 * models (or decoding strategies): direct pairs, pairs derived from rankings, and tied pairs
 * of rankings; ties and both-bad count as half a win each. One judgement per annotator and pair
 * of generations counts: a direct pair over one derived from a ranking, then the newest. Flags
 * do not matter here (an empty answer losing is a real loss). */
typedef enum { STORE_BY_MODEL = 0, STORE_BY_STRATEGY } store_by;

typedef struct {
    store_by by;
    int n_bootstrap; /* resamples for the intervals; 0 = 1000 */
    uint64_t seed;   /* bootstrap seed (deterministic output) */
    double prior;    /* virtual tied games per player (see feedback/leaderboard.h); < 0 = 1 */
} store_leaderboard_params;

typedef struct {
    char *name;      /* model or strategy (owned) */
    double games;    /* judgements it took part in */
    double wins;     /* wins, ties and both-bad counting half */
    double win_rate; /* wins / games */
    double theta;    /* centred log-strength */
    double elo;      /* 1000 + 400 log10 strength */
    double elo_lo;   /* 95% bootstrap interval */
    double elo_hi;
} store_leaderboard_row;

typedef struct {
    store_leaderboard_row *rows; /* (n) best first, owned */
    size_t n;
    size_t n_games;   /* judgements used */
    size_t n_ignored; /* judgements between one player and itself or without a model/strategy */
} store_leaderboard;
/* Fills `out` (rows best first, only players with games); free it with store_leaderboard_free. */
int store_get_leaderboard(store *s, const store_leaderboard_params *p, store_leaderboard *out,
                          rlhf_error *err);
void store_leaderboard_free(store_leaderboard *l);

/* Agreement over items (a pair of generations) judged by two or more annotators, one judgement
 * per annotator and item as for leaderboards. Labels: first better, second better, tie, both bad
 * (tied pairs of rankings count as tie). */
typedef struct {
    char *annotator_a, *annotator_b; /* owned */
    size_t n_items;                  /* items both judged */
    double observed;                 /* raw agreement */
    double kappa;                    /* Cohen's kappa, NaN if undefined */
} store_kappa;

typedef struct {
    store_kappa *pairs;  /* (n_pairs) owned, one per annotator pair with shared items */
    size_t n_pairs;
    double alpha;        /* Krippendorff's alpha (nominal), NaN if undefined */
    size_t n_items;      /* items judged by >= 2 annotators */
    size_t n_judgements; /* judgements on those items */
    size_t n_annotators;
} store_agreement;
int store_get_agreement(store *s, store_agreement *out, rlhf_error *err);
void store_agreement_free(store_agreement *a);

/* ---- JSONL import / export ---- */

typedef enum {
    STORE_FORMAT_TRL = 0, /* {"prompt","chosen","rejected"}: strings or lists of messages */
    STORE_FORMAT_HH,      /* {"chosen","rejected"}: whole "\n\nHuman: ... \n\nAssistant: ..." dialogues */
    STORE_FORMAT_SFT,     /* {"prompt","completion"} (strings or messages) or {"messages":[...]} */
} store_format;
/* "trl", "hh", "sft" -> format; RLHF_ERR_INVALID for anything else. */
int store_format_parse(const char *name, store_format *out, rlhf_error *err);
const char *store_format_name(store_format f);

typedef struct {
    store_format format;
    int strict;            /* 1: any bad line and nothing is imported */
    const char *annotator; /* who the imported judgements are attributed to; NULL = "import" */
    size_t max_line_bytes; /* longer lines are bad lines; 0 = 4 MiB */
} store_import_params;

typedef struct {
    size_t line;      /* 1-based line number */
    int is_error;     /* 1: the line was not imported; 0: imported with a flag (a warning) */
    char reason[240];
} store_import_issue;

typedef struct {
    size_t n_lines;      /* lines read (blank ones included) */
    size_t n_records;    /* records imported */
    size_t n_bad;        /* lines refused */
    size_t n_flagged;    /* records imported with flags */
    size_t n_blank;      /* blank lines skipped */
    store_import_issue *issues; /* the first 1000 issues, in line order (owned) */
    size_t n_issues;     /* kept in `issues` */
    size_t n_issues_total;
    int64_t import_id;   /* the imports row, 0 if nothing was committed */
    double seconds;      /* wall time */
} store_import_report;

/* Imports a JSONL file ("-" reads stdin) in one transaction: each record with its prompt,
 * generations and pair (or demonstration) under a savepoint, so a record is imported whole or
 * not at all. Bad lines (bad JSON, missing fields, wrong types, invalid UTF-8, too long,
 * identical sides, dialogues that do not share a prompt) are reported with line number and
 * reason and skipped; with params->strict, or when no line is good, nothing is imported and
 * RLHF_ERR_FORMAT is returned. An empty file is RLHF_ERR_FORMAT. `report` is filled in every
 * case (free it with store_import_report_free). */
int store_import_jsonl(store *s, const char *path, const store_import_params *params,
                       store_import_report *report, rlhf_error *err);
void store_import_report_free(store_import_report *r);

typedef struct {
    store_format format;
    int redact;       /* 1: mask e-mails, phone numbers, IPs, card numbers (feedback/redact.h) */
    int skip_flagged; /* 1: leave out pairs flagged at write time */
} store_export_params;

typedef struct {
    size_t n_written;  /* records written */
    size_t n_skipped;  /* pairs that format cannot express (tie, both bad) or flagged ones */
    size_t n_redacted; /* masks applied */
} store_export_report;

/* Writes every strict preference pair (trl, hh) or SFT example (sft: demonstrations, then the
 * best-ranked generation of each ranked prompt) to fp, one JSON object a line, in id order.
 * Flagged rows are written too unless params->skip_flagged, so an imported file comes back
 * whole: a record imported from JSONL is written back as it was read (the same JSON values), a
 * chat prompt in message form. An HH export of a prompt that did not come from HH wraps it as
 * one "\n\nHuman: ..." turn. */
int store_export_jsonl(store *s, FILE *fp, const store_export_params *params,
                       store_export_report *report, rlhf_error *err);


/* ---- browsing: the model registry, runs, the annotation queue (feedback/store_browse.c) ---- */

typedef struct {
    int64_t id;
    const char *name, *path, *family, *made_by, *parent, *created_at; /* may be NULL but name */
} store_model_info;
typedef int (*store_model_fn)(void *ctx, const store_model_info *m);
/* Every registered model, in id order (rows borrowed for the callback). */
int store_models_each(store *s, store_model_fn fn, void *ctx, rlhf_error *err);
/* *path = a new copy of the path of model `name`; RLHF_ERR_NOT_FOUND when there is no such
 * model or it has no path. */
int store_model_path(store *s, const char *name, char **path, rlhf_error *err);

typedef struct {
    int64_t id;
    const char *kind, *status, *input_model, *output_model, *started_at, *ended_at; /* may be NULL */
    int64_t n_metrics;
    const char *config_json; /* the run's configuration (JSON) */
} store_run_info;
typedef int (*store_run_fn)(void *ctx, const store_run_info *r);
int store_runs_each(store *s, store_run_fn fn, void *ctx, rlhf_error *err);

typedef struct {
    int64_t step;
    const char *name;
    double value; /* NaN when it was not finite */
} store_metric_info;
typedef int (*store_metric_fn)(void *ctx, const store_metric_info *m);
/* The metrics of run `run_id`, by name then step (rows borrowed for the callback). */
int store_metrics_each(store *s, int64_t run_id, store_metric_fn fn, void *ctx, rlhf_error *err);

/* The annotation queue of `annotator`: prompts with two or more generations that they have not
 * ranked, paired, rated or skipped, oldest first. *prompt_id = 0 when none is left. */
int store_queue_next(store *s, const char *annotator, int64_t *prompt_id, rlhf_error *err);
/* Queued prompts the annotator has judged (*done) and not yet (*left). */
int store_queue_progress(store *s, const char *annotator, int64_t *done, int64_t *left, rlhf_error *err);

typedef struct {
    int64_t generation_id;
    const char *text;                      /* never NULL */
    const char *model, *strategy, *decoding_json; /* may be NULL */
    const char *prompt_text, *prompt_messages_json;
    double logprob;                        /* NaN unknown */
    int64_t n_tokens;                      /* -1 unknown */
} store_prompt_generation;
typedef int (*store_prompt_generation_fn)(void *ctx, const store_prompt_generation *g);
/* The generations of one prompt, in id order. */
int store_prompt_generations_each(store *s, int64_t prompt_id, store_prompt_generation_fn fn, void *ctx,
                                  rlhf_error *err);


/* ---- what training runs keep for themselves (feedback/store_train.c) ---- */

/* The preference trainers' (DPO, KTO) reference log-probabilities, cached across runs: one value per (reference model
 * fingerprint, exact token ids and loss mask of a row). A hit requires the very same ids and
 * mask (they are stored and compared), so a hash collision can never feed a wrong value. */
typedef struct {
    const int32_t *ids;  /* the row's token ids (borrowed) */
    const uint8_t *mask; /* (n) 1 where the id is scored */
    size_t n;
    double logp;         /* put: the value; get: set on a hit */
    int found;           /* get: 1 on a hit */
} store_ref_logp;
int store_ref_logps_get(store *s, const char *fingerprint, store_ref_logp *rows, size_t n, rlhf_error *err);
/* All rows in one transaction; a row already cached keeps its stored value. */
int store_ref_logps_put(store *s, const char *fingerprint, const store_ref_logp *rows, size_t n, rlhf_error *err);
/* Rows cached under this fingerprint (NULL: under any). */
int store_ref_logps_count(store *s, const char *fingerprint, int64_t *n, rlhf_error *err);

/* Health warnings of a run (src/train/health.h): the step, a stable code, the text shown. */
int store_add_run_warning(store *s, int64_t run_id, int64_t step, const char *code, const char *message,
                          rlhf_error *err);
typedef struct {
    int64_t step;
    const char *code, *message, *created_at;
} store_run_warning;
typedef int (*store_run_warning_fn)(void *ctx, const store_run_warning *w);
int store_run_warnings_each(store *s, int64_t run_id, store_run_warning_fn fn, void *ctx, rlhf_error *err);

#endif
