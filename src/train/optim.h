/* optim.h — AdamW over the whole parameter buffer, global-norm clipping, warmup + cosine schedule.
 *
 * The optimizer never looks at individual tensors while stepping: its moments m and v are two
 * float buffers with exactly the layout of model.params (one allocation each), and the weight
 * decay groups are precomputed once from the model's tensor table as a short list of contiguous
 * segments of that buffer. A step is then one OpenMP-parallel, vectorisable pass over the buffer
 * (plus one pass for the gradient norm).
 *
 * The update is torch.optim.AdamW's (decoupled weight decay, bias-corrected moments):
 *   p <- p * (1 - lr * wd)                       (decayed segments only)
 *   m <- beta1 m + (1 - beta1) g,   v <- beta2 v + (1 - beta2) g^2
 *   p <- p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * where g = grad * grad_scale * clip_coef: grad_scale lets a caller that summed the gradients of
 * `accum` micro-batches pass 1/accum, and clip_coef = min(1, max_norm / (||grad_scale*grad|| + 1e-6))
 * as in torch.nn.utils.clip_grad_norm_. Norms are accumulated in double.
 *
 * Schedule (0-based step s, S total steps, W warmup steps):
 *   s <  W: lr * (s + 1) / W
 *   s >= W: min_lr + (lr - min_lr) * 0.5 * (1 + cos(pi * (s - W) / max(1, S - W)))   (s clamped to S) */
#ifndef RLHF_OPTIM_H
#define RLHF_OPTIM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "src/core/error.h"
#include "src/model/model.h"

/* Bit of a tensor kind in optim_params.decay_kinds. */
#define OPTIM_DECAY_KIND(kind) (1u << (unsigned)(kind))

typedef struct {
    float lr;            /* peak learning rate */
    float min_lr;        /* floor of the cosine schedule */
    long warmup_steps;   /* W: linear warm-up steps */
    long total_steps;    /* S: schedule length (the run's step count) */
    float beta1, beta2;  /* 0.9, 0.95 by default */
    float eps;           /* 1e-8 */
    float weight_decay;  /* decoupled, applied only to the kinds in decay_kinds */
    float grad_clip;     /* max global gradient norm; <= 0 disables clipping */
    unsigned decay_kinds;/* OPTIM_DECAY_KIND bits; default: matrices only (no decay on norms,
                            biases or embeddings) */
} optim_params;

/* Defaults: lr 3e-4, min_lr 3e-5, warmup 0, total 1, betas (0.9, 0.95), eps 1e-8, wd 0.1,
 * clip 1.0, decay on MODEL_TENSOR_MATRIX only. */
void optim_params_defaults(optim_params *p);
/* Checks ranges; the message names the offending field. */
int optim_params_validate(const optim_params *p, rlhf_error *err);

/* A contiguous range of the parameter buffer with one weight-decay setting. */
typedef struct {
    size_t begin, end; /* [begin, end) in floats */
    int decay;         /* 1: weight decay applies */
    int frozen;        /* 1: never updated, no moments, not in the gradient norm */
    size_t moff;       /* where the segment's moments start in m / v (trainable segments) */
} optim_segment;

typedef struct {
    optim_params params;
    size_t n;               /* floats in the buffer (model.n_floats) */
    size_t n_moments;       /* floats of trainable segments (n when nothing is frozen) */
    float *m, *v;           /* (n_moments) each, 64-byte aligned, zero at start; owned */
    optim_segment *segments;/* (n_segments) covering [0, n) in order; owned */
    int n_segments;
    long step;              /* optimizer steps taken (t - 1 of the bias correction) */
} optim;

/* What one step did, for progress lines and logs. */
typedef struct {
    float lr;          /* learning rate used */
    double grad_norm;  /* global norm of grad * grad_scale, before clipping */
    float clip_coef;   /* factor applied by clipping (1 if none) */
} optim_stats;

/* Allocates zeroed moments for a buffer of n floats laid out by `tensors` (a model's table) and
 * derives the decay segments from the tensor kinds. Floats not covered by any tensor (alignment
 * padding) join the preceding segment; they stay zero through every update. On error the struct
 * is zeroed. optim_free is safe on a zeroed struct and safe twice. */
int optim_init(optim *o, const optim_params *p, const model_tensor *tensors, int n_tensors, size_t n,
               rlhf_error *err);
/* The same with frozen tensors (frozen[i] != 0 for tensors[i]; NULL: none): their segments are
 * never updated, get no AdamW moments (memory: a frozen body with a trained head costs moments
 * for the head only) and do not count in the gradient norm, as parameters without
 * requires_grad in torch. The snapshot records the trainable layout, so a state saved with one
 * freezing is refused by an optimizer with another. */
int optim_init_frozen(optim *o, const optim_params *p, const model_tensor *tensors, int n_tensors, size_t n,
                      const unsigned char *frozen, rlhf_error *err);
void optim_free(optim *o);

/* Learning rate of 0-based step `step` (see the schedule at the top). */
float optim_schedule_lr(const optim_params *p, long step);

/* Global L2 norm of grad * scale over n floats, accumulated in double (OpenMP reduction). */
double optim_grad_norm(const float *grads, size_t n, float scale);

/* One AdamW step at the schedule's lr for o->step, then o->step++. params and grads have o->n
 * floats; grads is only read. A non-finite gradient norm leaves params and moments untouched and
 * returns RLHF_ERR_NUMERIC. stats may be NULL. */
int optim_step(optim *o, float *params, const float *grads, float grad_scale, optim_stats *stats,
               rlhf_error *err);

/* Snapshot of the moments and step for resuming: writes n, step, m, v (little-endian binary) to
 * fp / reads them back. Reading checks that n matches this optimizer's buffer and that the data
 * is complete; `what` names the file in messages. */
int optim_write(const optim *o, FILE *fp, const char *what, rlhf_error *err);
int optim_read(optim *o, FILE *fp, const char *what, rlhf_error *err);
/* Bytes optim_write produces. */
size_t optim_state_bytes(const optim *o);

#endif
