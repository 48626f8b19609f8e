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

#include "feedback/store.h"
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

#endif
