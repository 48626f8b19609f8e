/* rollout_store.h — every rollout of the online trainers (grpo, rloo, ppo) stored in the
 * database as a generation of its prompt, so a person can open them in the REPL and rank them:
 * the prompt (the user prompt as given, with its message form when the policy has a chat
 * template), the policy's model row, the completion's text and ids, the candidate's own seed,
 * and decoding_json = {"strategy":"sample","temperature","max_new_tokens","rollout":
 * {"trainer","run_id","step","reward","reward_source"}} (the reward lives with the decoding
 * settings so no schema change is needed; json_extract(decoding_json, '$.rollout.reward') reads
 * it). A rollout_sink_fn (src/train/rollout.h). */
#ifndef RLHF_REPL_ROLLOUT_STORE_H
#define RLHF_REPL_ROLLOUT_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <signal.h>

#include "feedback/store.h"
#include "repl/run_log.h"
#include "src/train/health.h"
#include "src/train/rollout.h"

typedef struct {
    store *db;                   /* borrowed (the run log's) */
    const char *model;           /* the policy's model row name (registered by run_log_open) */
    const char *const *prompts;  /* the run's prompts; borrowed */
    size_t n_prompts;
    const char *trainer;         /* grpo, rloo, ppo */
    int64_t run_id;
    const char *reward_source;   /* the reward model's path or the --reward-fn spec */
    int64_t *prompt_ids;         /* (n_prompts) cache, 0 until stored; owned */
    long n_stored;
} rollout_store;

/* rs borrows everything given; rollout_store_free releases the cache. */
int rollout_store_init(rollout_store *rs, store *db, const char *model, const char *const *prompts, size_t n_prompts,
                       const char *trainer, int64_t run_id, const char *reward_source);
void rollout_store_free(rollout_store *rs);
/* rollout_sink_fn: ctx is the rollout_store. */
int rollout_store_sink(void *ctx, const rollout_record *r, rlhf_error *err);

/* Prompts of a JSONL file of {"prompt": "..."} lines (blank lines skipped): *out (n) new strings
 * (free each, then the array). Errors name FILE:LINE (printed); returns 0 or 1. */
int rollout_prompts_read(const char *path, char ***out, size_t *n);
/* The online trainers' prompts: from the JSONL file `path` when given, else the user prompts
 * stored in database db_path (store_get_prompt_texts; the file must exist and hold some). Errors
 * are printed; returns 0 or 1. */
int rollout_prompts_load(const char *path, const char *db_path, char ***out, size_t *n);

/* What an online trainer command (grpo, rloo, ppo) holds while it runs: the run's record, the
 * rollout store over the same database, the health warnings it watches for, and the Ctrl-C
 * flag. */
typedef struct {
    run_log rl;
    rollout_store rs;
    health h;
    volatile sig_atomic_t stop;
    struct sigaction old;
} rollout_session;

/* Opens the run log (kind, database or NULL, --json-log or NULL, the initial model, the run's
 * configuration JSON) and, with a database, the rollout store; watches the health rules
 * health_kinds (HEALTH_* bits: printed, logged and stored as they fire); then catches Ctrl-C.
 * The caller points its run's stop flag, progress callback and sink at what *s holds
 * (rollout_session_hooks). Returns 0, or the exit status (1) after printing why. */
int rollout_session_open(rollout_session *s, const char *kind, const char *db_path, const char *json_log, const char *model,
                         const char *config, const char *const *prompts, size_t n_prompts, const char *reward_source,
                         unsigned health_kinds);
/* The hooks of an open session. */
void rollout_session_hooks(rollout_session *s, volatile sig_atomic_t **stop, train_progress_fn *progress,
                           void **progress_ctx, rollout_sink_fn *sink, void **sink_ctx);
/* Ends the run with the trainer's return code r (err its message): restores Ctrl-C, records the
 * outcome. Returns -1 when the run is done (the caller prints its summary, then calls
 * rollout_session_close), else the exit status (130 stopped, 1 failed) after printing why. */
int rollout_session_end(rollout_session *s, int r, const rlhf_error *err, const char *out_dir);
/* Prints how many rollouts were stored, and releases the session. */
void rollout_session_close(rollout_session *s, const char *db_path);

#endif
