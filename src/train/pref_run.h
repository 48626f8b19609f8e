/* pref_run.h — what the offline preference runs (rlhf dpo, rlhf kto) have in common around
 * their own data and head:
 *   - the settings (pref_common_params, embedded first in dpo_run_params and kto_run_params);
 *   - the policy: a model with a tokenizer that fits its vocabulary and an EOS token;
 *   - the reference: the starting policy, or another model reading the same token ids; its
 *     log-probabilities computed once before training and cached, keyed by the reference's
 *     fingerprint (its configuration and weights) and each row's exact ids and loss mask: in the
 *     caller's row cache (the repl keeps it in the feedback database) or, without one, in
 *     OUT/PREF_REF_CACHE_FILE (all rows or none; a missing, damaged or other-key file is a miss,
 *     never an error; rewritten atomically);
 *   - the data's order: a seeded train / held-out split and a seeded permutation per epoch, so
 *     the examples of a step are a function of the step;
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
#include "src/train/sft.h"
#include "src/train/train.h"

#define PREF_REF_CACHE_FILE "ref_logps.bin"

/* ---- the reference cache ---- */

/* One row of the reference pass as a cache sees it. */
typedef struct {
    const int32_t *ids;  /* the row: prompt + reply + EOS */
    const uint8_t *mask; /* (len) 1 where the id is scored (the reply and EOS) */
    int len;
    double logp;         /* sum of log p(id) over the masked ids, under the reference */
    int found;           /* get: set to 1 for rows the cache held (logp filled) */
} pref_ref_row;

/* A row-level cache of reference log-probabilities, provided by the caller. */
typedef struct {
    int (*get)(void *ctx, const char *fingerprint, pref_ref_row *rows, size_t n, rlhf_error *err);
    int (*put)(void *ctx, const char *fingerprint, const pref_ref_row *rows, size_t n, rlhf_error *err);
    void *ctx;
} pref_ref_cache;

/* A stable identity of a model's numbers: a 128-bit hash (hex, 32 characters + NUL) of the
 * configuration fields that change the logits and of every parameter. */
void pref_ref_fingerprint(const model *m, char out[33]);

/* ---- the settings every offline preference run shares ---- */

typedef struct {
    const char *model_dir;       /* the starting policy (resume: NULL takes the saved one) */
    const char *ref_dir;         /* NULL: the starting policy is the reference */
    const char *data_desc;       /* where the data came from (messages, the run's record) */
    const char *data_format;     /* the caller's note of how it was read (saved, may be NULL) */
    const char *out_dir;
    const pref_ref_cache *ref_cache; /* NULL: out_dir/PREF_REF_CACHE_FILE */
    train_params train;          /* batch = pairs / examples per micro-batch, accum, optim */
    long steps, epochs;          /* steps <= 0: epochs over the training split */
    int max_length;              /* ids per row; <= 0: the model's context */
    sft_truncate truncate;
    double val_fraction;
    uint64_t seed;               /* the split, the order, LoRA's initialisation, the loop's rng */
    long eval_every, save_every; /* resume: < 0 takes the saved values */
    lora_params lora;            /* rank 0: full fine-tuning */
    int resume;                  /* 1: continue the run in out_dir (its saved settings win) */
    volatile sig_atomic_t *stop;
    train_progress_fn progress;
    void *progress_ctx;
} pref_common_params;

/* What TRL's DPOConfig and KTOConfig share: lr 1e-6 (no warm-up, weight decay 0, clipping 1.0),
 * batch 8, 3 epochs, max_length 1024 (clamped to the context), keep_start; val_fraction 0.1,
 * seed 42, eval every 100, save every 500, full fine-tuning. */
void pref_common_params_defaults(pref_common_params *p);

/* ---- models ---- */

/* Loads dir into b and checks it can train on text (`what`: the trainer's name for messages);
 * *eos = the EOS id replies end with. On error b is freed. */
int pref_policy_load(model_bundle *b, const char *dir, const char *what, int32_t *eos, rlhf_error *err);
/* The reference: with ref_dir, that directory loaded into *ref and checked to be a language
 * model reading the policy's token ids (same vocabulary; the same tokenizer when it has one),
 * else the policy itself; *out points at the one to use. `what` names the trainer in messages. */
int pref_reference(model_bundle *ref, model **out, const char *ref_dir, model_bundle *policy, const char *what,
                   rlhf_error *err);

/* ---- the data ---- */

/* A seeded shuffle of 0..n-1 into order (n entries); returns how many of its last entries are
 * held out: round(n x val_fraction), at least 1 when val_fraction > 0 and n >= 2, at most n - 1. */
size_t pref_split(size_t *order, size_t n, double val_fraction, uint64_t seed);

/* The training split drawn epoch after epoch, each epoch in its own seeded permutation. */
typedef struct {
    const size_t *train; /* (n_train) borrowed */
    size_t n_train;
    size_t *perm;        /* (n_train) the permutation of perm_epoch */
    long perm_epoch;
    int batch, accum;
    uint64_t seed;
} pref_order;

int pref_order_init(pref_order *o, const size_t *train, size_t n_train, int batch, int accum, uint64_t seed,
                    rlhf_error *err);
void pref_order_free(pref_order *o);
/* The examples of micro-batch `micro` of optimizer step `step` (o->batch of them) into idx. */
void pref_order_batch(pref_order *o, long step, int micro, size_t *idx);

/* The loop's data over examples: the training order, the held-out list, and how the caller turns
 * examples into a micro-batch (fill: examples idx[0..n), n <= order.batch <= 1024). */
typedef struct {
    pref_order order;
    const size_t *val;   /* (n_val) borrowed */
    size_t n_val;
    void (*fill)(void *ctx, const size_t *idx, int n, train_batch *b);
    void *ctx;
} pref_source;

/* train_data (fill, fill_val, n_val in batches of order.batch) reading s, which must outlive it. */
train_data pref_source_data(pref_source *s);

/* Row `row` of b (b->T positions) from a row of ids with its loss mask: inputs ids[0..len-1)
 * then pad, targets the next id where it is scored, -1 elsewhere; labels[row] = label. */
void pref_put_row(train_batch *b, int row, const int32_t *ids, const uint8_t *mask, int len, int32_t pad, float label);

/* ---- the reference pass ---- */

typedef struct {
    size_t cached, computed; /* rows */
} pref_ref_counts;

/* Fills rows[i].logp for all n rows under the reference ref (fingerprint fp): from p->ref_cache,
 * row by row, or without one from out_dir/PREF_REF_CACHE_FILE keyed by fp and data_hash; the
 * rows neither holds are computed by ref in micro-batches of rows_cap rows padded with pad, and
 * stored. Rows come in groups of `group` consecutive rows computed whole when any of them is
 * missing (a DPO pair's two sides share a batch as in training). */
int pref_ref_logps(const pref_common_params *p, model *ref, const char *fp, uint64_t data_hash, pref_ref_row *rows,
                   size_t n, int group, int rows_cap, int32_t pad, pref_ref_counts *counts, rlhf_error *err);

/* ---- the run's state: checkpoints and exact resume ----
 *
 * Checkpoints (every save_every steps, at the end, on Ctrl-C) write the model directory (or the
 * PEFT adapter with LoRA) and PREF_STATE_FILE: the trained buffer, AdamW moments, the loop's rng,
 * the data hash and the run's configuration as JSON (model, reference and its fingerprint, data
 * source and format, the trainer's loss and settings, optimizer, LoRA and its dropout rng). A
 * resumed run takes those settings (only steps, eval_every and save_every may change), needs the
 * same encoded data (hash checked) and reference (fingerprint checked), and since batches are a
 * function of (seed, step) continues bit-identically (one thread). */
#define PREF_STATE_FILE "training_state.bin"

/* One of a trainer's own float settings saved with the run (beta, ...). */
typedef struct {
    const char *name;
    float *value;
} pref_setting;

/* A trainer's own settings, saved and (on resume) read back through these pointers. */
typedef struct {
    const char **loss_type;   /* the loss's name (resume: points into the saved run) */
    pref_setting *values;
    int n;
} pref_own;

typedef struct {
    char *path;            /* out_dir/PREF_STATE_FILE */
    train_state_info info; /* resume: step, rng, data hash and the run's JSON */
    void *saved;           /* resume: the parsed run (cJSON); strings of c and own point into it */
    char fp[33];           /* resume: the saved reference fingerprint */
    rng_t lora_rng;        /* resume: the adapters' dropout rng, when have_lora_rng */
    int have_lora_rng;
} pref_state;

/* A fresh run (c->resume 0): refuses no out_dir and an out_dir that holds a run. Resume: reads the state's
 * header and puts the saved settings into c and own (the caller's steps > 0 and eval_every,
 * save_every >= 0 win). pref_state_free in every case. */
int pref_state_open(pref_state *st, pref_common_params *c, const pref_own *own, rlhf_error *err);
/* Resume only (else 0): the data (as encoded; `what` names it) and the reference are the saved ones. */
int pref_state_check(const pref_state *st, const pref_common_params *c, uint64_t data_hash, const char *fp,
                     const char *what, rlhf_error *err);
void pref_state_free(pref_state *st);
/* The configuration of the run saved in out_dir (*run_json: JSON with "data", "format", "model",
 * "ref" and the settings; free()), for a resuming caller that must load the same data first. */
int pref_saved_run(const char *out_dir, char **run_json, rlhf_error *err);

/* ---- training ---- */

/* Optimizer steps: steps when > 0, else epochs (at least 1) x ceil(n_train / (batch x accum)). */
long pref_total_steps(long steps, long epochs, size_t n_train, int batch, int accum);

typedef struct {
    const pref_common_params *c; /* steps > 0, eval_every and save_every >= 0 */
    train_params train;          /* rows per micro-batch, accum, context; optim (total_steps set here) */
    pref_state *state;           /* where checkpoints go; on resume where the run continues */
    const pref_own *own;         /* saved with each checkpoint */
    uint64_t data_hash;
    const char *fp;              /* the reference's fingerprint */
} pref_train_params;

/* Trains b's model (full, or a fresh LoRA adapter seeded by c->seed, on resume the saved one)
 * with head and data from step 0 or the saved step to c->steps. Returns 0,
 * RLHF_ERR_INTERRUPTED (the message says where the checkpoint is) or an error; *ls is filled as
 * far as the run got, *start_step is where it began. b's model is left without the adapter. */
int pref_train_run(const pref_train_params *p, model_bundle *b, train_head head, train_data data, long *start_step,
                   train_loop_summary *ls, rlhf_error *err);

#endif
