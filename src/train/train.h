/* train.h — the training step shared by the trainers, and the training-state file for resuming.
 *
 * A `train` binds a model (borrowed) to an activation arena sized once for (B, T) and an AdamW
 * optimizer over the model's parameter buffer. train_step runs `accum` micro-batches of forward,
 * cross-entropy head and backward (gradients accumulate in model.grads), then one clipped AdamW
 * update with grad_scale 1/accum, so the step equals one step on the mean loss of all
 * accum * B * T positions. Nothing is allocated inside a step.
 *
 * The training state is one binary file written atomically beside the model checkpoint, and it
 * is self-sufficient for resuming: the parameters themselves, the AdamW moments and step, the
 * data sampler's rng_t, a hash of the data, and the run's configuration as JSON:
 *   "RLHFTRN1" | u64 json_bytes | JSON | "RLHFPARM" u64 n | n floats | optimizer block
 *   (optim_write) | ["RLHFXTRA" u64 n | n bytes] | "RLHFEND1"
 * The JSON holds {"step", "rng": [4 hex u64], "data_hash", "params_hash", "run": {...}}. Keeping
 * the parameters in the same file (not only in model.safetensors) costs one more copy on disk but
 * means no crash between writing two files can pair parameters of one step with moments of
 * another: whatever state file is on disk resumes exactly. */
#ifndef RLHF_TRAIN_H
#define RLHF_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "src/core/error.h"
#include "src/model/model.h"
#include "src/train/optim.h"
#include "src/core/rng.h"

typedef struct {
    int batch;          /* B: sequences per micro-batch */
    int context;        /* T: tokens per sequence (inputs; targets are shifted by one) */
    int accum;          /* micro-batches per optimizer step (gradient accumulation) */
    optim_params optim; /* AdamW, clipping and schedule */
    /* train_init only: frozen[i] != 0 freezes the model's tensor i (optim_init_frozen: never
     * updated, no AdamW moments, not in the gradient norm); NULL trains everything. Borrowed. */
    const unsigned char *frozen;
} train_params;

/* B 8, T 128 (clamped to the model's context by the caller), accum 1, optim defaults. */
void train_params_defaults(train_params *p);

struct lora;

typedef struct {
    model *model;    /* borrowed; train_init allocates its gradients */
    model_acts acts; /* (B, T) arena; owned */
    optim opt;       /* moments over the trained buffer; owned */
    int B, T, accum;
    /* The buffer the optimizer steps and the training state saves: the model's parameters and
     * gradients (train_init), or an attached LoRA adapter's (train_init_lora, the base frozen).
     * Borrowed views. */
    float *params, *grads; /* (n_floats) each */
    size_t n_floats;
} train;

/* Sets up activations for (B, T) and the optimizer over m's buffer. T must not exceed the model's
 * context. On error the struct is zeroed; train_free is safe on a zeroed struct and safe twice. */
int train_init(train *t, model *m, const train_params *p, rlhf_error *err);
/* The same for training only the adapter lo, which must be attached to m (lora_attach): the
 * optimizer runs over lo's buffer (weight decay on lora_A/lora_B as matrices), no base gradient
 * buffer is allocated, and the training state holds the adapter's parameters. */
int train_init_lora(train *t, model *m, struct lora *lo, const train_params *p, rlhf_error *err);
void train_free(train *t);
/* Zeroes the trained buffer's gradients (model or adapter). */
void train_zero_grads(train *t);

typedef struct {
    double loss;     /* mean cross-entropy over the step's micro-batches */
    optim_stats opt; /* lr, gradient norm, clip factor */
} train_step_result;

/* One optimizer step on `accum` micro-batches: inputs and targets are (accum, B, T) token ids
 * (targets < 0 are ignored). Zeroes gradients first. On error the parameters may have been
 * left unchanged (non-finite gradients) and the message says which step. */
int train_step(train *t, const int32_t *inputs, const int32_t *targets, train_step_result *res,
               rlhf_error *err);

/* Mean loss over n_batches micro-batches (each (B, T)) without touching gradients. */
int train_eval(train *t, const int32_t *inputs, const int32_t *targets, int n_batches, double *loss,
               rlhf_error *err);

/* 64-bit FNV-1a over 8-byte words: identifies a parameter buffer or a token stream. */
uint64_t train_hash(const void *data, size_t bytes);

/* What the training-state file holds besides the parameters and the optimizer. */
typedef struct {
    long step;            /* optimizer steps completed */
    rng_t rng;            /* data sampler state after `step` steps */
    uint64_t data_hash;   /* train_hash of the token stream */
    uint64_t params_hash; /* train_hash of the parameters (filled in by train_state_save) */
    char *run_json;       /* the run's configuration, a JSON object; owned (free()) */
} train_state_info;

/* Writes t->params (the trained buffer), t->opt and info atomically to path (info->params_hash is computed
 * here, whatever the caller set). info->run_json may be NULL ({} is written). */
int train_state_save(const char *path, const train *t, const train_state_info *info, rlhf_error *err);
/* The same with the trainer's own state beyond the loop's (an online trainer's current rollout
 * batch, a value head and its optimizer, ...): n opaque bytes kept after the optimizer block
 * (none when n is 0). */
int train_state_save_extra(const char *path, const train *t, const train_state_info *info, const void *extra, size_t n,
                           rlhf_error *err);
/* Reads only the header of a state file (step, rng, hashes, run configuration) so a resume can
 * set up the run before the optimizer exists. info->run_json is newly allocated. */
int train_state_read_info(const char *path, train_state_info *info, rlhf_error *err);
/* Reads a state file into t->params (the trained buffer), t->opt and *info (info->run_json newly allocated,
 * the caller frees it). Errors name the file: bad magic, truncation, buffers of another model's
 * size, parameters that do not match their hash. */
int train_state_load(const char *path, train *t, train_state_info *info, rlhf_error *err);
/* The same, also returning the trainer's block: *extra newly allocated (free()) and *n its size,
 * or NULL and 0 when the file has none. */
int train_state_load_extra(const char *path, train *t, train_state_info *info, void **extra, size_t *n, rlhf_error *err);

#endif
