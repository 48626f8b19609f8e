/* score_cli.h — what `rlhf reward` and `rlhf classify` share: starting from a language model or
 * a classifier directory, the run around score_train_run (Ctrl-C, the live progress line,
 * --json-log, the runs/metrics tables of --db/--runs-db, the saved configuration for --resume)
 * and the end-of-run summary. */
#ifndef RLHF_REPL_SCORE_CLI_H
#define RLHF_REPL_SCORE_CLI_H

#include "repl/trainer_flags.h"
#include "src/formats/model_load.h"
#include "src/train/score_train.h"

/* --truncate error|left|drop; returns 2 (after printing usage) on a bad value. */
int score_cli_truncate(const char *v, score_truncate *out, const char *usage);
const char *score_cli_truncate_name(score_truncate t);

/* Loads --model (fresh run: a language model becomes a classifier of K labels with a small
 * random score head; a classifier of K labels is trained further) or, with --resume, the
 * classifier in --out. labels (K strings, may be NULL) are copied into the bundle. Prints the
 * error and returns 1 on failure. */
int score_cli_load_model(const trainer_flags *f, int K, const char *const *labels, model_bundle *b);

/* The run's configuration as JSON: the trainer flags plus `extra` (a JSON object text or NULL);
 * newly allocated. */
char *score_cli_run_json(const trainer_flags *f, const char *kind, const char *extra);
/* --resume: the saved run's flags from out/training_state.bin replace those that shape the
 * numbers (lr, batch, seed, ...); *extra gets the saved extra object (free()) or NULL. Prints the
 * error and returns 1 on failure. */
int score_cli_restore(trainer_flags *f, char **extra);

/* The next argument of a command's own flags: "--flag VALUE" or "--flag=VALUE" into name/value;
 * anything not starting with "--" is refused. Returns 0, or prints (with usage) and returns 2. */
int score_cli_own_flag(int argc, char **argv, int *i, char *name, size_t size, const char **value, const char *usage);

/* Splits d by --val-fraction and --seed, refuses a class with no training example
 * (classification), prints the counts ("N pairs (T training, V held out), ..."; n_in: records read
 * before dropping; `what`: "pairs" / "examples") and fills p from the flags (task, bundle, data,
 * split, optimizer, batch, steps, cadence, seed, out, resume). p->train_idx / p->val_idx are the
 * caller's to free(). Returns 0, or prints and returns 1. */
int score_cli_setup(const trainer_flags *f, score_task task, model_bundle *b, const score_data *d, size_t n_in,
                    int max_len, const char *what, score_train_params *p);

/* Runs score_train_run with the progress line, the JSON log and the database records, then prints
 * the summary line. Returns the exit status (0, 1, or 130 when interrupted). */
int score_cli_train(const char *kind, const trainer_flags *f, score_train_params *p);

/* "saved DIR: ..." naming the files a run wrote (a classifier directory, or with LoRA the adapter's). */
void score_cli_print_saved(const trainer_flags *f);

#endif
