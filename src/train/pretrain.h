/* pretrain.h — next-token pre-training on raw text, with periodic validation, checkpoints, exact
 * resume and clean interruption.
 *
 * pretrain_run tokenises the corpus once (the tokenizer given, else the model directory's
 * tokenizer.json, else the built-in byte tokenizer), holds out its tail for validation, and
 * trains with train_step on micro-batches of random windows drawn from the run's own rng_t
 * (seeded with `seed`; nothing else consumes it, so the data position is the rng state).
 *
 * The output directory is a complete Hugging Face model directory (config.json,
 * model.safetensors, tokenizer.json) plus `training_state.bin` (train.h: a second copy of the
 * parameters, AdamW moments, step, rng state, data hash, the run's configuration — everything a
 * resume needs, in one file so no crash can leave a mismatched pair). Every file is written
 * atomically. A run resumed from that directory continues exactly: the same batches, the same
 * schedule, bit-identical parameters when the kernels are deterministic (one thread).
 *
 * The library never prints: progress goes to a callback, and the caller's `stop` flag (set from a
 * SIGINT handler, say) is checked between steps; when it is set the run saves a consistent
 * checkpoint and returns RLHF_ERR_INTERRUPTED. */
#ifndef RLHF_PRETRAIN_H
#define RLHF_PRETRAIN_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "src/core/error.h"
#include "src/train/loop.h"
#include "src/train/train.h"

/* File name of the training state inside the output directory. */
#define PRETRAIN_STATE_FILE "training_state.bin"

/* Progress is the shared loop's (loop.h); these names are kept for pretrain's callers. */
typedef train_event pretrain_event;
#define PRETRAIN_EVENT_STEP TRAIN_EVENT_STEP       /* an optimizer step finished */
#define PRETRAIN_EVENT_EVAL TRAIN_EVENT_EVAL       /* validation before the first step */
#define PRETRAIN_EVENT_SAVING TRAIN_EVENT_SAVING   /* a checkpoint is about to be written */
#define PRETRAIN_EVENT_SKIPPED TRAIN_EVENT_SKIPPED /* the NaN/inf guard skipped a step */
typedef train_progress pretrain_progress;

typedef void (*pretrain_progress_fn)(const pretrain_progress *p, void *ctx);

typedef struct {
    const char *model_dir;      /* initial model: HF directory or llama2.c .bin (not read on resume) */
    const char *data_path;      /* raw text corpus (on resume, NULL means the run's saved path) */
    const char *tokenizer_path; /* NULL: model_dir/tokenizer.json if present, else bytes */
    const char *out_dir;        /* checkpoint directory (created) */
    long steps;                 /* optimizer steps of the run; <= 0 on resume: the saved value */
    train_params train;         /* batch, context, accum, AdamW; optim.total_steps is set to steps */
    long eval_every;            /* validate every N steps (and at the end); 0: only at the end;
                                   -1: 100, or on resume the run's saved value */
    int eval_batches;           /* validation micro-batches of (B, T) per evaluation */
    long save_every;            /* checkpoint every N steps (and at the end); 0: only at the end;
                                   -1: 500, or on resume the run's saved value */
    double val_fraction;        /* held-out tail of the token stream, [0, 1) */
    uint64_t seed;              /* data-sampling rng seed */
    int resume;                 /* continue the run saved in out_dir; its saved configuration
                                   replaces train, val_fraction, seed and the tokenizer */
    volatile sig_atomic_t *stop;/* borrowed, may be NULL: non-zero asks the run to stop */
    pretrain_progress_fn progress; /* may be NULL */
    void *progress_ctx;
} pretrain_params;

/* Defaults: 1000 steps, B 8, T 256 (clamped to the model's context), accum 1, lr 1e-3 with
 * min_lr 1e-4, warmup 100 (clamped to steps/10 when shorter), weight decay 0.1, clip 1.0,
 * eval every 100 steps (-1) over 8 batches, save every 500 (-1), val_fraction 0.1, seed 1337. */
void pretrain_params_defaults(pretrain_params *p);

typedef struct {
    long start_step;         /* 0, or the step resumed from */
    long steps_done;         /* steps completed (absolute, = start_step + steps of this call) */
    long total_steps;
    double first_val_loss;   /* at start_step (NAN if no validation split) */
    double final_loss;       /* last training step's loss */
    double final_val_loss;   /* last evaluation (NAN if none) */
    double elapsed_s;
    double tokens_per_s;     /* training tokens / training time of this call */
    size_t n_train_tokens, n_val_tokens;
    int vocab_size;          /* of the tokenizer */
    size_t n_params;
    long saved_step;         /* step of the checkpoint on disk (-1 if none was written) */
} pretrain_summary;

/* Runs (or resumes) the training described by p. summary may be NULL and is filled as far as the
 * run got, also on error. Returns 0 when all steps are done and saved, RLHF_ERR_INTERRUPTED when
 * stopped through p->stop (the checkpoint of the step reached is saved first), or another code
 * with a message naming the file, flag or step at fault. */
int pretrain_run(const pretrain_params *p, pretrain_summary *summary, rlhf_error *err);

#endif
