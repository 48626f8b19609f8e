/* score_head.h — the score head of sequence classifiers and reward models, and its two losses.
 *
 * A classifier model (model_config.num_labels = K > 0) ends in score.weight (K, C), no bias,
 * inside the model's own parameter buffer (so the optimizer, checkpoints and the training state
 * treat it like any other tensor). Its output for row b is
 *     r[b] = score.weight · hidden[b, len_b - 1]          (K numbers)
 * where hidden is the final normalised hidden state and len_b the row's length before padding:
 * the last non-padding token, as transformers' *ForSequenceClassification reads it (it finds that
 * position as the last token != pad_token_id; the two agree whenever the text does not itself end
 * with the pad token).
 *
 * Two train_heads (src/train/loop.h) use it:
 *   - classification: cross-entropy over K classes, labels[b] = class id; metric "accuracy";
 *   - pairs (Bradley–Terry, K = 1): rows come in pairs (2i chosen, 2i+1 rejected), labels[2i] the
 *     pair's margin (0 without margins), loss = mean_i -log σ(r_c - r_r - margin)
 *     + center_coef * mean_i (r_c + r_r)^2 (TRL's RewardTrainer, center_rewards_coefficient);
 *     metrics "rewards/accuracies" (r_c > r_r), "rewards/margins", "rewards/chosen",
 *     "rewards/rejected".
 * Backward: d(loss)/d(score.weight) is added into m->grads (allocated if needed) and d(hidden) is
 * handed to model_backward, zero except at each row's last token. */
#ifndef RLHF_SCORE_HEAD_H
#define RLHF_SCORE_HEAD_H

#include <stdint.h>

#include "src/core/error.h"
#include "src/model/model.h"
#include "src/train/loop.h"

typedef struct {
    int B, T, C, K;     /* capacity */
    float *dhidden;     /* (B, T, C) handed to model_backward; owned */
    float *scores;      /* (B, K) of the last call; owned */
    float *dscores;     /* (B, K) scratch; owned */
    float center_coef;  /* pairs: TRL's center_rewards_coefficient (0: off) */
} score_head;

/* Buffers for micro-batches up to (B, T) of classifier m. */
int score_head_init(score_head *h, const model *m, int B, int T, rlhf_error *err);
void score_head_free(score_head *h);

/* scores (B, K) of the last model_forward on a: row b read at position lengths[b] - 1 (lengths
 * must be in 1..T of that forward). */
int score_head_forward(const model *m, const model_acts *a, const int32_t *lengths, int B, float *scores,
                       rlhf_error *err);

/* train_heads over h (h must outlive them). */
train_head score_head_classify(score_head *h);
train_head score_head_pairs(score_head *h);

/* Initialises score.weight for a classifier made from a language model: N(0, std) (transformers'
 * initializer_range 0.02 is the usual std). */
void score_head_init_weights(model *m, float std, rng_t *rng);

/* Makes classifier `out` (num_labels K, pad_id) from language model lm: every body tensor copied,
 * score.weight drawn N(0, std) from rng. out need not be initialised; on error it is zeroed. */
int score_model_from_lm(model *out, const model *lm, int K, int32_t pad_id, float std, rng_t *rng,
                        rlhf_error *err);

/* LoRA on a classifier, PEFT's modules_to_save = ["score"]: the body's linears get the adapter lo
 * (made for m) and the score head trains fully, as a copy in lo's buffers (lora_reserve_extra)
 * that m->w.score / m->g.score point to while attached — so train_init_lora's optimizer, gradient
 * zeroing and training state cover adapter and score together, and the base has no gradient
 * buffer at all. Attaches lo (lora_attach). */
struct lora;
int score_lora_attach(model *m, struct lora *lo, rlhf_error *err);
/* Copies the trained score back into m's own buffer, points m->w.score there again and detaches
 * the adapter (the body stays the base: merge with lora_merge if wanted). */
void score_lora_detach(model *m);

#endif
