/* dpo.h — the DPO family of preference losses as a head of the training loop (loop.h).
 *
 * A micro-batch holds pairs: row 2i is prompt + chosen reply, row 2i+1 prompt + rejected reply,
 * with next-token targets only on the reply's tokens (EOS included; targets < 0 elsewhere) and
 * labels[row] = the reference model's log-probability of that row's reply (the sum over the
 * same positions), computed once before training (dpo_row_logps). With
 *   pc, pr = the policy's reply log-probabilities (chosen, rejected), rc, rr the reference's,
 *   z = (pc - rc) - (pr - rr),  h = beta * z,
 * the losses are TRL's (trl/trainer/dpo_trainer.py, loss_type):
 *   sigmoid  -(1 - ls) log σ(h) - ls log σ(-h)                 (DPO; ls = label smoothing: cDPO)
 *   robust   (-(1 - ls) log σ(h) + ls log σ(-h)) / (1 - 2 ls)    (unbiased under label noise)
 *   hinge    max(0, 1 - h)                                       (SLiC)
 *   ipo      (z - 1 / (2 beta))^2, with every log-probability averaged over its reply's tokens
 * averaged over the pairs, plus rpo_alpha * the mean NLL of the chosen replies' tokens (RPO).
 * Metrics under TRL's names: rewards/chosen = beta (pc - rc), rewards/rejected,
 * rewards/accuracies (chosen reward > rejected), rewards/margins, logps/chosen, logps/rejected
 * (means over the pairs), and nll_loss when rpo_alpha > 0.
 *
 * The gradient needs no second (B, T, V) buffer: model_xent writes (softmax - onehot) / N in
 * place of the logits, and each row is scaled by -N dL/d(logp_row). */
#ifndef RLHF_DPO_H
#define RLHF_DPO_H

#include <signal.h>

#include "src/core/error.h"
#include "src/model/lora.h"
#include "src/model/model.h"
#include "src/train/dataset.h"
#include "src/train/loop.h"
#include "src/train/pref_run.h"
#include "src/train/sft.h"

typedef enum { DPO_LOSS_SIGMOID = 0, DPO_LOSS_IPO, DPO_LOSS_HINGE, DPO_LOSS_ROBUST } dpo_loss_type;

typedef struct {
    dpo_loss_type loss_type;
    float beta;            /* 0.1 (TRL) */
    float label_smoothing; /* 0; in [0, 0.5) */
    float rpo_alpha;       /* 0: off */
} dpo_params;

void dpo_params_defaults(dpo_params *p);
/* "sigmoid", "ipo", "hinge", "robust"; RLHF_ERR_INVALID naming the choices otherwise. */
int dpo_loss_type_parse(const char *name, dpo_loss_type *out, rlhf_error *err);
const char *dpo_loss_type_name(dpo_loss_type t);
/* beta > 0 and finite, 0 <= label_smoothing < 0.5, rpo_alpha >= 0. */
int dpo_params_validate(const dpo_params *p, rlhf_error *err);

typedef struct {
    dpo_params p;
    int B, T;
    float *pos_loss; /* (B, T) per-position -log p */
    double *logp;    /* (B) the policy's row log-probabilities of the last micro-batch */
    int *count;      /* (B) reply tokens per row */
    double *grad;    /* (B) d(loss)/d(row log-probability) */
} dpo_head;

/* Scratch for micro-batches of up to B rows (B even) of T positions. */
int dpo_head_init(dpo_head *h, const dpo_params *p, int B, int T, rlhf_error *err);
void dpo_head_free(dpo_head *h);
train_head dpo_train_head(dpo_head *h);

/* Sum of log p(target) over the positions with target >= 0 of each row (out: B doubles), for
 * the batch's tokens under m: one forward pass, no gradient. The reference pass of DPO. */
int dpo_row_logps(model *m, model_acts *a, const train_batch *b, double *out, rlhf_error *err);

/* ---- the run (rlhf dpo) ----
 *
 * Pairs become two SFT examples each (prompt + chosen, prompt + rejected: encoded by sft_encode,
 * so chat prompts go through the model's template, EOS is appended and trained on, and the loss
 * mask covers exactly the reply); a pair that loses a side to truncation is dropped and counted.
 *
 * The reference log-probabilities of every row are computed before training by the reference
 * model: the starting policy (with LoRA: the base with no adapter, the same weights), or
 * ref_dir's model (same tokenizer, checked; loaded, used and freed, so never two models in
 * memory while training), and cached (pref_ref_logps: in the caller's row cache, so a second
 * run computes none and changed data computes only the pairs not seen before, or in
 * out_dir/PREF_REF_CACHE_FILE, which serves --resume).
 *
 * Micro-batches hold `batch` pairs (2 * batch rows), padded to their longest row; pairs are split
 * once (seeded) into train / held-out, and drawn per epoch in a seeded permutation of (seed,
 * epoch), so the batches of a step are a function of the step. Checkpoints and `resume` are
 * pref_run.h's (PREF_STATE_FILE; the saved run holds the loss type, beta, label_smoothing and
 * rpo_alpha, and the data's format): bit-identical continuation (one thread) with the saved
 * settings, the same data (hash checked) and reference (fingerprint checked). */

typedef struct {
    pref_common_params c;        /* model, reference, out, training settings, resume, callbacks */
    const pref_dataset *pairs;   /* borrowed */
    dpo_params dpo;
} dpo_run_params;

/* The common defaults (pref_common_params_defaults: TRL's DPOConfig) and TRL's DPO loss:
 * beta 0.1, sigmoid. */
void dpo_run_params_defaults(dpo_run_params *p);

typedef struct {
    size_t n_pairs, n_train, n_val, n_dropped; /* pairs kept, split, dropped by truncation */
    size_t ref_cached, ref_computed;           /* reference log-probabilities (rows) read / computed */
    char ref_fingerprint[33];
    dpo_params dpo;                            /* the loss as run (the saved one on resume) */
    long start_step, steps_done, total_steps;
    double first_val_loss, final_val_loss, final_loss, tokens_per_s, elapsed_s;
    train_head_out first_val, final_val;       /* held-out metrics before and after */
} dpo_summary;

int dpo_run(const dpo_run_params *p, dpo_summary *summary, rlhf_error *err);

#endif
