/* score_train.h — training and evaluating score-head models: reward models (Bradley–Terry over
 * chosen/rejected pairs) and sequence classifiers (cross-entropy over labels), on the shared loop.
 *
 * Data: every example is `group` token rows (2 for a pair: chosen then rejected; 1 for a
 * classification text) with one float label per row (a pair's margin on its chosen row; a class
 * id). Texts are encoded once; a row longer than max_length is refused (naming the record),
 * cut to its last max_length tokens (the score reads the last token, so the end is what must
 * stay) or the example is dropped, as the caller chooses; the counts are reported.
 *
 * Batches: `batch` examples per micro-batch (so 2*batch rows for pairs, as TRL counts pairs),
 * padded only to the longest row of the micro-batch. The training order is a permutation of the
 * training examples per epoch drawn from (seed, epoch) alone, so a resumed run replays the same
 * batches without any rng state; evaluation walks the held-out examples in order.
 *
 * The output directory is a Hugging Face *ForSequenceClassification directory (the bundle:
 * config.json with labels, model.safetensors, tokenizer.json) plus training_state.bin (train.h),
 * written atomically at every checkpoint; a run resumed from it continues exactly.
 *
 * With LoRA (score_train_params.lora) the body's linears get an adapter and the score head trains
 * fully (PEFT's modules_to_save = ["score"], score_lora_attach). The output is then a PEFT adapter
 * directory, not merged: adapter_config.json (task_type SEQ_CLS, base_model_name_or_path = the
 * initial model) + adapter_model.safetensors (the lora_A/lora_B tensors and
 * "base_model.model.score.weight", PEFT's names) — what PEFT's AutoPeftModelForSequenceClassification
 * loads — plus SCORE_CLASSIFIER_FILE with what PEFT leaves to the caller (num_labels, id2label,
 * pad_token_id) and training_state.bin. Kept unmerged because it is the small artefact (the
 * adapter and head, not a copy of the body), resumes from the adapter's own buffer, and is the
 * layout PEFT users expect; score_model_load merges it at load time. */
#ifndef RLHF_SCORE_TRAIN_H
#define RLHF_SCORE_TRAIN_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "src/core/error.h"
#include "src/formats/model_load.h"
#include "src/model/lora.h"
#include "src/tok/tokenizer.h"
#include "src/train/loop.h"
#include "src/train/train.h"

#define SCORE_STATE_FILE "training_state.bin"

typedef enum { SCORE_TASK_PAIRS = 0, SCORE_TASK_CLASSIFY = 1 } score_task;

typedef enum {
    SCORE_TRUNCATE_ERROR = 0, /* a row longer than max_length is an error naming the record */
    SCORE_TRUNCATE_LEFT,      /* keep its last max_length tokens */
    SCORE_TRUNCATE_DROP,      /* leave the example out (TRL's RewardTrainer filter) */
} score_truncate;

typedef struct {
    int group;              /* rows per example */
    int32_t *tokens;        /* every row's ids, concatenated; owned */
    size_t n_tokens, cap_tokens;
    size_t *start;          /* (n_rows + 1) row offsets into tokens; owned */
    size_t cap_start, cap_examples;
    float *labels;          /* (n_rows); owned */
    size_t n_rows, cap_rows;
    size_t *source;         /* (n_examples) the caller's record number of each example; owned */
    size_t n_examples;
    size_t n_truncated;     /* rows cut by SCORE_TRUNCATE_LEFT */
    size_t n_dropped;       /* examples left out by SCORE_TRUNCATE_DROP */
    int max_len;            /* longest row kept */
} score_data;

void score_data_init(score_data *d, int group);
void score_data_free(score_data *d);

/* Encodes one example of d->group texts (ALLOW_SPECIAL off; BOS first when add_bos) with one label
 * per row; `source` names it in messages ("record 12"). Ids must be below vocab_size (the
 * model's; a tokenizer with more ids is the caller's error to report). An empty text is
 * refused. */
int score_data_add(score_data *d, const tokenizer *tok, int add_bos, const char *const *texts, const float *labels,
                   size_t source, int max_length, score_truncate policy, int vocab_size, rlhf_error *err);
/* Identifies the encoded data (tokens, row bounds, labels) for resume checks. */
uint64_t score_data_hash(const score_data *d);

/* Shuffles 0..n-1 with seed and holds out the last round(n * val_fraction) (at least 1 when
 * val_fraction > 0 and n >= 2); *train and *val are new arrays (free()). */
int score_split(size_t n, double val_fraction, uint64_t seed, size_t **train, size_t *n_train, size_t **val,
                size_t *n_val, rlhf_error *err);

typedef struct {
    score_task task;
    model_bundle *bundle;        /* the classifier (trained in place), its tokenizer and labels */
    const score_data *data;
    const size_t *train_idx, *val_idx;
    size_t n_train, n_val;
    train_params train;          /* batch = examples per micro-batch, context = longest row (<= the
                                    model's context), accum, AdamW (total_steps = steps) */
    long steps;                  /* optimizer steps of the run */
    long eval_every, save_every; /* 0: only at the end */
    float center_coef;           /* pairs: TRL's center_rewards_coefficient */
    lora_params lora;            /* rank > 0: a LoRA adapter on the body plus the full score head
                                    (rank 0, as a zeroed struct has it: every weight) */
    const char *base_model;      /* LoRA: the initial model's path, saved as base_model_name_or_path */
    int freeze_body;             /* 1: only score.weight trains (a linear probe): the body gets no
                                    gradients and no AdamW moments */
    uint64_t seed;               /* the epoch permutations */
    const char *out_dir;
    const char *run_json;        /* the run's configuration, kept in the training state */
    int resume;                  /* restore out_dir/training_state.bin (same data required) */
    volatile sig_atomic_t *stop; /* borrowed, may be NULL */
    train_progress_fn progress;  /* may be NULL */
    void *progress_ctx;
} score_train_params;

#define SCORE_CLASSIFIER_FILE "classifier_config.json"

/* Trains (or resumes) as p describes; with LoRA the bundle's model ends as the trained classifier
 * with the adapter merged into its body (what the saved adapter directory loads as); summary (may be NULL) as train_loop_run fills it. Returns
 * 0, RLHF_ERR_INTERRUPTED (saved first) or the error. */
int score_train_run(const score_train_params *p, train_loop_summary *summary, rlhf_error *err);

/* Loads a classifier or reward model: a Hugging Face classifier directory (model_bundle_load) or a
 * LoRA adapter directory written by score_train_run (its base loaded from
 * base_model_name_or_path, made a classifier with SCORE_CLASSIFIER_FILE's labels and pad id, the
 * trained score read from the adapter and the adapter merged). On error b is zeroed and err
 * names the file. */
int score_model_load(model_bundle *b, const char *path, rlhf_error *err);
/* The adapter case of score_model_load with the base given (base_path; NULL: the adapter's
 * base_model_name_or_path). dir must hold SCORE_CLASSIFIER_FILE (a classifier's adapter). */
int score_model_load_adapter(model_bundle *b, const char *dir, const char *base_path, rlhf_error *err);

/* Scores of the rows of examples idx[0..n) (n * group rows of num_labels floats each, in that
 * order), batch_rows rows per forward. */
int score_predict(model *m, const score_data *d, const size_t *idx, size_t n, int batch_rows, float *scores,
                  rlhf_error *err);

/* Held-out metrics of a reward model from score_predict's scores of n pairs (chosen, rejected). */
typedef struct {
    size_t n;
    double accuracy;      /* fraction with r_chosen > r_rejected */
    double mean_margin;   /* mean r_chosen - r_rejected */
    double mean_chosen, mean_rejected;
} score_pair_metrics;
void score_pair_eval(const float *scores, size_t n, score_pair_metrics *out);

/* Classification metrics from scores (n, K) and true labels (n). confusion is (K, K), row = true
 * class, column = predicted; precision/recall/f1 (K) are 0 where undefined (no predictions / no
 * examples of the class). */
typedef struct {
    size_t n;
    int K;
    double accuracy;
    size_t *confusion;
    double *precision, *recall, *f1;
    double macro_f1;
} score_class_metrics;
int score_class_eval(const float *scores, const float *labels, size_t n, int K, score_class_metrics *out,
                     rlhf_error *err);
void score_class_metrics_free(score_class_metrics *m);

#endif
