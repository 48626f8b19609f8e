/* kto.h — KTO (Kahneman-Tversky optimisation, Ethayarajh et al. 2024) as a head of the training
 * loop (loop.h): unpaired thumbs-up / thumbs-down judgements train the policy, no pairs needed.
 *
 * A micro-batch holds n examples, as TRL's KTOTrainer batches them:
 *   rows 0..n-1 of the batch: prompt_i + completion_i, targets only on the completion's tokens
 *     (EOS included), labels[i] = the reference's log-probability of that completion;
 *   (KTO loss only) n KL rows, written by the data side into the head (kto_head.kl_*), not into
 *     the batch: prompt_i + a completion that belongs to another example (TRL's mismatched
 *     pairs) with the reference's log-probability. The head runs them through its own forward
 *     pass without gradient, as TRL does under no_grad, so the backward pass covers only the
 *     n example rows.
 * Which example rows are desirable is set by the data side in kto_head.desirable. The loop calls
 * fill, forward, head in that order for each micro-batch, so what fill writes into the head
 * belongs to the micro-batch the head then sees.
 * With r_i = policy logp_i - reference logp_i and, for the KTO loss, the KL estimate
 *   z = max(0, mean over the KL rows of (policy logp - reference logp)), detached,
 * the losses are TRL's (trl/trainer/kto_trainer.py, kto_loss):
 *   kto               desirable   w_d (1 - σ(beta (r - z)))   undesirable  w_u (1 - σ(beta (z - r)))
 *   apo_zero_unpaired desirable   w_d (1 - σ(beta r))         undesirable  w_u σ(beta r)  (z = 0)
 * averaged over the n examples (TRL's losses.nanmean()). The KL rows get no gradient (TRL
 * computes them under no_grad).
 * Metrics under TRL's names: rewards/chosen = mean beta r over the desirable examples,
 * rewards/rejected (undesirable), rewards/margins (their difference, when both are present),
 * logps/chosen, logps/rejected (policy log-probabilities), kl (z), count/chosen, count/rejected.
 * A micro-batch without desirable (or undesirable) examples reports none of the chosen (rejected)
 * metrics. */
#ifndef RLHF_KTO_H
#define RLHF_KTO_H

#include <signal.h>
#include <stdint.h>

#include "src/core/error.h"
#include "src/model/lora.h"
#include "src/model/model.h"
#include "src/train/dataset.h"
#include "src/train/loop.h"
#include "src/train/pref_run.h"
#include "src/train/sft.h"

typedef enum { KTO_LOSS_KTO = 0, KTO_LOSS_APO_ZERO_UNPAIRED } kto_loss_type;

typedef struct {
    kto_loss_type loss_type;
    float beta;               /* 0.1 (TRL) */
    float desirable_weight;   /* 1.0 */
    float undesirable_weight; /* 1.0 */
} kto_params;

void kto_params_defaults(kto_params *p);
/* "kto", "apo_zero_unpaired"; RLHF_ERR_INVALID naming the choices otherwise. */
int kto_loss_type_parse(const char *name, kto_loss_type *out, rlhf_error *err);
const char *kto_loss_type_name(kto_loss_type t);
/* beta > 0, weights > 0, all finite. */
int kto_params_validate(const kto_params *p, rlhf_error *err);
/* 1 when the loss uses the KL estimate (kto), so examples need KL rows. */
int kto_uses_kl(const kto_params *p);

typedef struct {
    kto_params p;
    int B, T;
    uint8_t *desirable; /* (B) 1: example row i is a thumbs-up; set by the data side */
    int32_t *kl_tokens;  /* (B, T) the KL rows' ids, rows of kl_T positions; set by the data side */
    int32_t *kl_targets; /* (B, T) their targets (< 0: no loss) */
    float *kl_ref;       /* (B) the reference's log-probabilities of the KL rows */
    int kl_T;            /* positions of this micro-batch's KL rows (<= T) */
    model_acts kl_acts;  /* the KL rows' forward pass */
    float *pos_loss;     /* (B, T) per-position -log p */
    double *logp;        /* (B) row log-probabilities of the last micro-batch */
    double *grad;        /* (B) d(loss)/d(row log-probability) */
} kto_head;

/* Scratch for micro-batches of up to B examples of up to T positions (their KL rows too), for
 * models of configuration c. */
int kto_head_init(kto_head *h, const kto_params *p, const model_config *c, int B, int T, rlhf_error *err);
void kto_head_free(kto_head *h);
train_head kto_train_head(kto_head *h);

/* ---- the data ----
 * Examples are SFT texts (prompt + completion, or a chat prompt whose completion is the
 * assistant's reply: sft.h) with one thumbs-up/down each. */

/* TRL's unpaired format, one JSON object a line: {"prompt": "...", "completion": "...",
 * "label": true|false}, or the conversational form ("prompt": [messages], "completion":
 * [assistant messages]). Errors name FILE:LINE and the field (bad JSON, a missing or non-boolean
 * "label", a "messages" line, which holds no single judged completion). On success *desirable
 * (t->n bytes, owned by the caller) holds each example's label. */
int kto_texts_read_jsonl(sft_texts *t, uint8_t **desirable, const char *path, rlhf_error *err);
/* The same from a kto_dataset (the store's ratings, or unpaired pairs). */
int kto_texts_from_dataset(sft_texts *t, uint8_t **desirable, const kto_dataset *d, rlhf_error *err);

/* ---- the run (rlhf kto) ----
 *
 * Each example becomes prompt + completion + EOS (chat prompts through the model's template;
 * loss mask on the completion: sft_encode), and so does its KL row. Examples are split once
 * (seeded) into train / held-out; within each split, in its order, chunks of `batch` examples
 * pair each prompt with the previous example's completion (the first with the last): TRL's
 * _get_kl_dataset on a batched map. The pairing is fixed for the run, so the reference
 * log-probabilities of both rows are computed once, before training (by the starting policy,
 * or ref_dir's model loaded and freed; with LoRA the base with the adapter off) and cached as
 * DPO's are (pref_ref_logps: the caller's row cache, or out_dir/PREF_REF_CACHE_FILE). An
 * example whose completion does not survive truncation is dropped and counted. Output: a model
 * directory, or a PEFT adapter with LoRA, and pref_run.h's training state: `resume` continues
 * the run bit-identically (one thread) with its saved settings (loss type, beta, both weights,
 * ...), the same examples and labels (hash checked) and the same reference (fingerprint). */
typedef struct {
    pref_common_params c;        /* model, reference, out, training settings, callbacks; batch =
                                    examples per micro-batch (>= 2 with the KTO loss) */
    const sft_texts *texts;      /* borrowed: the examples */
    const uint8_t *desirable;    /* (texts->n) borrowed: 1 thumbs up, 0 thumbs down */
    kto_params kto;
} kto_run_params;

/* The common defaults (pref_common_params_defaults: TRL's KTOConfig) and TRL's KTO loss: beta
 * 0.1, weights 1. */
void kto_run_params_defaults(kto_run_params *p);

typedef struct {
    size_t n_examples, n_desirable, n_undesirable; /* kept after truncation */
    size_t n_train, n_val, n_dropped;
    size_t ref_cached, ref_computed;               /* reference log-probabilities (rows) read / computed */
    kto_params kto;                                /* the loss as run (the saved one on resume) */
    long start_step, steps_done, total_steps;
    double first_val_loss, final_val_loss, final_loss, tokens_per_s, elapsed_s;
    train_head_out first_val, final_val;
} kto_summary;

int kto_run(const kto_run_params *p, kto_summary *summary, rlhf_error *err);

#endif
