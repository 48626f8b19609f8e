/* loop.h — the one training loop every objective uses: micro-batches through a head, gradient
 * accumulation, clipped AdamW with warmup + cosine, evaluation every N steps, periodic atomic
 * checkpoints, exact resume, interruption, a NaN/inf guard, and every metric through a callback.
 *
 * What differs between objectives is only
 *   - the head (train_head): turns the body's outputs for one micro-batch (logits and the final
 *     hidden state, model_acts) into a loss, metrics, and d(loss)/d(logits) or d(loss)/d(hidden)
 *     for the one shared model_backward;
 *   - the data (train_data): fills micro-batches of variable-length examples, padded to the
 *     loop's (B, T), with a per-token loss mask (targets < 0) or per-row labels;
 *   - the save callback (what goes into the output directory besides the training state).
 * pretrain_run, SFT, classification and the reward model are all users of train_loop_run.
 *
 * Determinism: the training batches of step s are a function of the data source and the loop's
 * rng_t only; the rng is saved in the training state with the parameters and the optimizer, so
 * a run resumed from any checkpoint replays the same batches and (one thread) reaches
 * bit-identical parameters. Evaluation batches never consume randomness.
 *
 * NaN/inf guard: a micro-batch whose loss or gradients are not finite makes the whole step a
 * skipped step: parameters and moments stay as they were, the schedule still advances (so the
 * step count and the data position stay in lock-step with an uninterrupted run), a
 * TRAIN_EVENT_SKIPPED progress event says so, and after `max_bad_steps` skipped steps in a row
 * the run stops with RLHF_ERR_NUMERIC (after saving the last good state). */
#ifndef RLHF_LOOP_H
#define RLHF_LOOP_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "src/core/error.h"
#include "src/core/rng.h"
#include "src/model/model.h"
#include "src/train/train.h"

#define TRAIN_MAX_METRICS 16

/* One micro-batch: B rows of at most T tokens each, padded (padding is any valid token id). */
typedef struct {
    int B, T;               /* rows and (padded) length of this micro-batch; B, T <= the loop's */
    int32_t *tokens;        /* (B, T) input ids */
    int32_t *targets;       /* (B, T) next-token targets, < 0 where no loss (the loss mask);
                               LM heads only */
    int32_t *lengths;       /* (B) tokens before the padding (score heads read position len-1) */
    float *labels;          /* (B) per-row labels or values (class id, margin, ...), head-defined */
    float *weights;         /* (B, T) or NULL: per-token loss weights */
} train_batch;

/* What a head reports for one micro-batch (or, averaged over the evaluation batches, for an
 * evaluation). Names are static strings (TRL's where one exists: "rewards/accuracies"). */
typedef struct {
    double loss;
    int n;                                  /* metrics set */
    const char *names[TRAIN_MAX_METRICS];
    double values[TRAIN_MAX_METRICS];
} train_head_out;

/* Adds or replaces a metric. */
void train_head_out_set(train_head_out *o, const char *name, double value);

/* An objective. `loss` is called after model_forward(b->tokens) on `a`; it fills out->loss and
 * the metrics, and when want_grad is set it points *dlogits ((B, T, V), may be a->logits,
 * consumed) and/or *dhidden ((B, T, C), in a buffer the head owns) at d(loss)/d(·) of this
 * micro-batch's loss; the loop then calls model_backward and averages the gradients over the
 * accumulation steps. A head with parameters of its own keeps them in the model's buffer. A
 * non-finite out->loss is the NaN guard's business, not an error. */
typedef struct {
    const char *name; /* "lm", "score", ... */
    int (*loss)(void *self, model *m, model_acts *a, const train_batch *b, int want_grad, const float **dlogits,
                const float **dhidden, train_head_out *out, rlhf_error *err);
    void *self;
} train_head;

/* The LM cross-entropy head: mean -log p(target) over positions with target >= 0 (weighted by
 * b->weights when given). Needs no state (self NULL). */
extern const train_head train_head_lm;

/* Where batches come from. `fill` writes training micro-batch `micro` of step `step` (0-based)
 * into *b (the buffers are the loop's, sized (B, T); set b->B, b->T), drawing any randomness
 * from rng. `fill_val` writes evaluation micro-batch i of n_val (no randomness). */
typedef struct {
    int (*fill)(void *ctx, long step, int micro, rng_t *rng, train_batch *b, rlhf_error *err);
    int (*fill_val)(void *ctx, int i, train_batch *b, rlhf_error *err);
    int n_val;  /* evaluation micro-batches (0: no evaluation) */
    void *ctx;
} train_data;

typedef enum {
    TRAIN_EVENT_STEP = 0, /* an optimizer step finished (val_loss set if it was evaluated) */
    TRAIN_EVENT_EVAL,     /* evaluation before the first step (step = the start step) */
    TRAIN_EVENT_SAVING,   /* a checkpoint is about to be written (it may take a while) */
    TRAIN_EVENT_SKIPPED,  /* a step was skipped by the NaN/inf guard (loss says what it was) */
} train_event;

typedef struct {
    train_event event;
    long step, total;     /* steps completed / steps of the run */
    double loss;          /* training loss of this step (NAN for EVAL / SAVING) */
    double val_loss;      /* validation loss if evaluated at this step, else NAN */
    float lr;
    double grad_norm;     /* before clipping */
    double tokens_per_s;  /* training throughput of this invocation so far (non-padding
                             tokens when the data says so, else B*T per micro-batch) */
    double elapsed_s;     /* wall time of this invocation */
    double eta_s;         /* estimate for the remaining steps */
    int saved;            /* 1 if a checkpoint was written after this step */
    train_head_out train; /* the head's metrics of this step (averaged over micro-batches) */
    train_head_out val;   /* evaluation metrics when evaluated (n = 0 otherwise) */
    int bad_in_row;       /* consecutive skipped steps (SKIPPED events) */
} train_progress;

typedef void (*train_progress_fn)(const train_progress *p, void *ctx);

/* Writes whatever a checkpoint of `step` is (model directory files plus the training state
 * with this rng). Called by the loop; must be atomic per file. */
typedef int (*train_save_fn)(void *ctx, long step, const rng_t *rng, rlhf_error *err);

typedef struct {
    train *t;                    /* borrowed: model, arena and optimizer, already set up (and
                                    restored from the state file on resume) */
    train_head head;
    train_data data;
    long start_step;             /* steps already done (resume) */
    long steps;                  /* the run's total optimizer steps */
    long eval_every;             /* evaluate every N steps (and at the end); 0: only at the end */
    long save_every;             /* save every N steps (and at the end); 0: only at the end */
    int max_bad_steps;           /* stop after this many skipped steps in a row (0: 5) */
    rng_t rng;                   /* data rng at start_step */
    train_save_fn save;          /* may be NULL (nothing saved) */
    void *save_ctx;
    volatile sig_atomic_t *stop; /* borrowed, may be NULL: non-zero asks the run to stop */
    train_progress_fn progress;  /* may be NULL */
    void *progress_ctx;
    long saved_step;             /* step of the checkpoint already on disk, -1 if none */
} train_loop_params;

typedef struct {
    long steps_done;         /* absolute */
    long saved_step;         /* step of the checkpoint on disk (-1 if none) */
    long skipped_steps;      /* steps the NaN guard skipped */
    double first_val_loss;   /* at start_step (NAN if no evaluation data) */
    double final_loss;       /* last training step's loss */
    double final_val_loss;   /* last evaluation (NAN if none) */
    train_head_out final_val;/* metrics of the last evaluation */
    double train_time_s;     /* time inside training steps */
    double tokens_per_s;
    double elapsed_s;
} train_loop_summary;

/* Evaluates the head over the data's n_val micro-batches; *out gets the mean loss and metrics. */
int train_loop_eval(train *t, const train_head *head, const train_data *data, train_batch *buf, train_head_out *out,
                    rlhf_error *err);

/* Runs steps start_step..steps-1. Returns 0 when all steps are done and saved,
 * RLHF_ERR_INTERRUPTED when stopped through p->stop (the checkpoint of the step reached is saved
 * first; the message says where), RLHF_ERR_NUMERIC after max_bad_steps skipped steps in a row,
 * or the first error of the data, head, backward or save. summary (may be NULL) is filled as
 * far as the run got. Allocates the batch buffers once, before the first step. */
int train_loop_run(const train_loop_params *p, train_loop_summary *summary, rlhf_error *err);

/* Allocates a batch buffer of capacity (B, T): tokens, targets, lengths, labels (weights NULL).
 * train_batch_free is safe on a zeroed struct and safe twice. */
int train_batch_alloc(train_batch *b, int B, int T, rlhf_error *err);
void train_batch_free(train_batch *b);

#endif
