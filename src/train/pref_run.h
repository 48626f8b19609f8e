/* pref_run.h — what the offline preference runs (rlhf kto; rlhf dpo could share it) have in
 * common around their own data and head:
 *   - the policy: a model with a tokenizer that fits its vocabulary and an EOS token;
 *   - the reference: the starting policy, or another model's weights (same vocabulary); its
 *     log-probabilities computed once before training and kept in OUT/ref_logps.bin keyed by a
 *     hash of the reference's weights and of the encoded rows, so a second run on the same data
 *     and reference computes none (a missing, damaged or other-key file is a miss, never an
 *     error; the file is rewritten atomically);
 *   - the training: full or a fresh LoRA adapter (seeded), the loop with the caller's head and
 *     data, saving a model directory or a PEFT adapter (base_model_name_or_path = model_dir). */
#ifndef RLHF_PREF_RUN_H
#define RLHF_PREF_RUN_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "src/core/error.h"
#include "src/formats/model_load.h"
#include "src/model/lora.h"
#include "src/model/model.h"
#include "src/train/loop.h"
#include "src/train/train.h"

/* Loads dir into b and checks it can train on text (`what`: the trainer's name for messages);
 * *eos = the EOS id replies end with. */
int pref_policy_load(model_bundle *b, const char *dir, const char *what, int32_t *eos, rlhf_error *err);
/* The reference: ref_dir's weights loaded into *ref (vocabulary checked against policy), or with
 * ref_dir NULL the policy itself; *out points at the one to use. */
int pref_reference(model *ref, const model **out, const char *ref_dir, const model *policy, rlhf_error *err);

/* FNV-1a over the reference's parameters, then over each of n data hashes (sft_encoded_hash). */
uint64_t pref_ref_cache_key(const model *ref, const uint64_t *data_hashes, int n);
/* 1 and out (n doubles) filled when out_dir's cache holds exactly key and n values; 0 otherwise. */
int pref_ref_cache_read(const char *out_dir, uint64_t key, size_t n, double *out);
/* Writes key and the n values atomically (out_dir created if missing). */
int pref_ref_cache_write(const char *out_dir, uint64_t key, size_t n, const double *v, rlhf_error *err);

/* Optimizer steps: steps when > 0, else epochs (at least 1) x ceil(n_train / (batch x accum)). */
long pref_total_steps(long steps, long epochs, size_t n_train, int batch, int accum);

typedef struct {
    const char *model_dir;       /* named in a saved adapter */
    const char *out_dir;
    train_params train;          /* batch = rows, accum, context set; optim (total_steps set here) */
    long steps, eval_every, save_every;
    uint64_t seed;               /* the adapter's initialisation and the loop's rng */
    lora_params lora;            /* rank 0: full fine-tuning */
    volatile sig_atomic_t *stop;
    train_progress_fn progress;
    void *progress_ctx;
} pref_train_params;

/* Trains b's model with head and data for p->steps steps, saving every save_every and at the
 * end. Returns 0, RLHF_ERR_INTERRUPTED (the message says where the checkpoint is) or an error;
 * *ls is filled as far as the run got. b's model is left without the adapter. */
int pref_train_run(const pref_train_params *p, model_bundle *b, train_head head, train_data data, train_loop_summary *ls,
                   rlhf_error *err);

#endif
