/* run_log.h — where every trainer's progress goes: the live progress line, the --json-log file
 * and the database's runs/metrics tables. One helper for all trainers (sft, classify, reward,
 * dpo, ...): open it with the run's kind and configuration, pass run_log_progress as the loop's
 * progress callback (train_progress_fn) with the run_log as its context, finish it with the
 * outcome.
 *
 * Metric names (TRL's where they exist): loss, learning_rate, grad_norm, tokens_per_s, eval_loss,
 * the head's own metrics under their names (training) and with "eval_" in front (evaluation).
 * The database gets a run row (kind, input model, configuration JSON, status running -> done,
 * stopped or failed) and one metric row per (step, name); the input and output models are
 * registered by their paths when the database does not know them yet. A metric that cannot be
 * written is reported once and the run goes on (the metrics are a record, not the training). */
#ifndef RLHF_REPL_RUN_LOG_H
#define RLHF_REPL_RUN_LOG_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "feedback/store.h"
#include "src/train/loop.h"

typedef struct {
    const char *kind;        /* pretrain, sft, classify, reward, dpo, ppo */
    const char *db_path;     /* record the run here, or NULL */
    const char *json_log;    /* append JSON lines here, or NULL */
    int append;              /* 1: the json log is continued (resume), 0: truncated */
    const char *input_model; /* path of the initial model (registered by that name), or NULL */
    const char *config_json; /* the run's configuration, or NULL */
} run_log_params;

typedef struct {
    FILE *json;
    store *db;
    int64_t run_id;
    double last_shown; /* elapsed_s of the last progress line */
    int db_failed;
    const char *kind;
    const char *input_model;
    train_head_out first_val; /* the head's metrics of the first evaluation (n = 0 until then) */
} run_log;

/* Opens the log file and the database and adds the run row. Prints what fails and returns the
 * exit status (1), or 0. rl need not be initialised. */
int run_log_open(run_log *rl, const run_log_params *p);
/* train_progress_fn: ctx is the run_log. */
void run_log_progress(const train_progress *pg, void *ctx);
/* Prints "WHAT: name value ..." for those of names[0..n) that o holds, in that order (a trainer's
 * held-out metrics before and after). */
void run_log_print_metrics(const char *what, const train_head_out *o, const char *const *names, int n);
/* Ends the run: status done, stopped or failed; output_model is the path of what the run wrote
 * (registered with made_by = kind), may be NULL. Closes everything; safe on a zeroed run_log. */
void run_log_finish(run_log *rl, const char *status, const char *output_model);

/* A health warning (src/train/health.h) of the run at `step`: printed on its own line
 * ("rlhf: warning at step N (code): text"), written to the JSON log as {"event":"warning",
 * "step","code","message"} and stored with the run in the database (run_warnings). */
void run_log_warning(run_log *rl, long step, const char *code, const char *text);

/* Ctrl-C during a training run: the first one sets *flag (the loop stops at the next step
 * boundary and saves); the handler is one-shot, so a second Ctrl-C kills as usual. The previous
 * action goes to *old for run_log_sigint_restore. Every trainer command uses this pair. */
void run_log_sigint_catch(volatile sig_atomic_t *flag, struct sigaction *old);
void run_log_sigint_restore(const struct sigaction *old);

/* "1h02m", "3m05s", "42s". */
void run_log_duration(char *buf, size_t n, double seconds);

#endif
