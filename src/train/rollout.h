/* rollout.h — the online trainers' rollouts (GRPO, RLOO, PPO): prompts rendered and encoded
 * once, G completions per prompt sampled by one batched gen_run (one prefill shared by the G
 * candidates), training rows built from them (prompt + completion, next-token targets only on
 * the completion, EOS included when it ended with one), and the rewards:
 *   - a built-in programmatic reward (reward_fn: the task-world verifier, contains:TEXT), or
 *   - a reward model: a score-head directory as `rlhf reward train` writes it
 *     (*ForSequenceClassification, num_labels 1, or its LoRA adapter: score_model_load). It
 *     scores the prompt as the policy saw it (rendered through the policy's chat template when
 *     it has one: what the REPL stores as a prompt's text and `rlhf reward train --db` trains
 *     on; the plain prompt otherwise) followed by the completion, encoded by its own tokenizer
 *     (so a policy and a reward model need not share one), read at the last token; a text
 *     longer than its context keeps its last tokens (the score reads the end). A reward_fn
 *     (the verifier) reads the user prompt as given;
 * minus missing_eos_penalty for a completion that hit the length limit without EOS (TRL's
 * missing_eos_penalty). A sink callback sees every scored completion (the command stores them in
 * the database as generations). The engine's part knows nothing of SQLite. */
#ifndef RLHF_ROLLOUT_H
#define RLHF_ROLLOUT_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "src/core/error.h"
#include "src/formats/model_load.h"
#include "src/gen/generate.h"
#include "src/model/lora.h"
#include "src/model/model.h"
#include "src/train/loop.h"
#include "src/train/optim.h"
#include "src/train/train.h"

/* ---- built-in programmatic rewards (--reward-fn) ----
 *   toy            the task world's verifier (src/world/world.h): 1 right, 0 wrong, minus 0.5
 *                  rude, minus 0.25 rambling; a prompt outside the world is an error
 *   contains:TEXT  1 if the completion contains TEXT, else 0 */
typedef struct {
    int kind;          /* 0 toy, 1 contains */
    char text[128];
} reward_fn;

int reward_fn_parse(const char *spec, reward_fn *out, rlhf_error *err);
int reward_fn_score(const reward_fn *f, const char *prompt, const char *completion, double *reward, rlhf_error *err);

/* Where rewards come from: a reward_fn, or a reward model loaded by rollout_scorer_open. */
typedef struct {
    reward_fn fn;
    model_bundle rm;          /* loaded when use_rm */
    int use_rm;
    float missing_eos_penalty;/* subtracted from a completion without EOS (0: none) */
} rollout_scorer;

/* A scorer over reward model directory rm_dir (num_labels 1, with a tokenizer): errors name the
 * directory. rollout_scorer_free is safe on a zeroed scorer. */
int rollout_scorer_open_rm(rollout_scorer *s, const char *rm_dir, rlhf_error *err);
void rollout_scorer_free(rollout_scorer *s);
/* Rewards of n completions of prompts (user prompt texts, as given): rewards[i] for
 * prompts[i] + completions[i]; has_eos[i] = 0 takes the missing-EOS penalty. */
int rollout_score(rollout_scorer *s, const char *const *prompts, const char *const *completions, const int *has_eos,
                  int n, double *rewards, rlhf_error *err);

/* ---- prompts ---- */

typedef struct {
    int32_t *ids;
    int n;
    char *text;  /* the prompt as the policy sees it (rendered through its chat template) */
} rollout_ids;

/* Renders each prompt as a user turn through b's chat template (when it has one) and encodes it:
 * out[i] (free with rollout_prompts_free); *longest = the longest in tokens. An empty prompt is
 * an error naming its number. */
int rollout_prompts_encode(const model_bundle *b, const char *const *prompts, size_t n, rollout_ids **out, int *longest,
                           rlhf_error *err);
void rollout_prompts_free(rollout_ids *ids, size_t n);

/* ---- sampled groups ---- */

typedef struct {
    float temperature;   /* sampling temperature */
    int max_new_tokens;
    int G;               /* completions per prompt */
    const gen_packed *packed; /* the policy's packed step weights while they stay fixed, or NULL */
} rollout_gen;

/* What the sink sees of one scored completion. */
typedef struct {
    size_t prompt;           /* index into the run's prompts */
    const char *completion;  /* text as shown (up to a stop string) */
    const int32_t *ids;      /* generated ids, EOS included when it ended */
    int n_ids;
    uint64_t seed;           /* the candidate's own sampling seed (gen_candidate_seed) */
    float temperature;
    int max_new_tokens;
    double reward;
    long step;               /* the optimizer step the rollout was made for */
    int chat;                /* 1: the prompt was rendered as a user turn of the chat template */
} rollout_record;
typedef int (*rollout_sink_fn)(void *ctx, const rollout_record *r, rlhf_error *err);

/* A batch of n_prompts * G rows of capacity T positions each. */
typedef struct {
    int rows, T;
    int32_t *tokens, *targets; /* (rows, T): prompt + completion, targets on the completion */
    int *len;                  /* (rows) positions used (prompt + completion - 1) */
    int *n_comp;               /* (rows) completion tokens (EOS included) */
    int *eos;                  /* (rows) 1: ended with EOS (or a stop string) */
    double *rewards;           /* (rows) */
    size_t *prompt;            /* (rows) prompt index */
    int maxT;                  /* longest len */
} rollout_batch;

int rollout_batch_init(rollout_batch *rb, int rows, int T, rlhf_error *err);
void rollout_batch_free(rollout_batch *rb);

/* The decoding settings of a rollout's groups (sampling at g's temperature, G candidates,
 * max_new_tokens; every other setting gen_params_defaults'). */
void rollout_gen_params(const rollout_gen *g, gen_params *gp);

/* Samples G completions of each of the prompts idx[0..n) (prompt j with sampling seed seeds[j];
 * all prompts in one gen_run_batch), fills rows j*G + k of rb, scores them with s, and hands each to sink (may be NULL). */
int rollout_make(const model_bundle *b, const rollout_ids *prompt_ids, const char *const *prompt_texts,
                 const size_t *idx, int n, const rollout_gen *g, const uint64_t *seeds, rollout_scorer *s, rollout_sink_fn sink,
                 void *sink_ctx, long step, rollout_batch *rb, rlhf_error *err);

/* Mean reward of greedy completions of prompts idx[0..n) (NAN when n is 0). */
int rollout_eval_greedy(const model_bundle *b, const rollout_ids *prompt_ids, const char *const *prompt_texts,
                        const size_t *idx, size_t n, int max_new_tokens, rollout_scorer *s, double *mean, rlhf_error *err);
/* Mean reward of g->G sampled completions of each of prompts idx[0..n) (prompt i sampled with seed
 * + i, so the same call before and after training draws with the same seeds; NAN when n is 0):
 * the quantity the policy is trained to raise, with less variance than one greedy answer. */
int rollout_eval_sampled(const model_bundle *b, const rollout_ids *prompt_ids, const char *const *prompt_texts,
                         const size_t *idx, size_t n, const rollout_gen *g, uint64_t seed, rollout_scorer *s, double *mean,
                         rlhf_error *err);

/* The order the training prompts are visited in: a fresh permutation of train_idx per pass,
 * drawn from (seed, pass) alone, so rollout k's prompts are a function of k. */
typedef struct {
    const size_t *train_idx; /* borrowed */
    size_t n_train;
    uint64_t seed;
    size_t *perm;            /* owned */
    long pass;
} rollout_order;
/* What every online run sets up first: the policy (with its tokenizer), the scorer, the prompts
 * encoded, the train/held-out split (score_split) and the training prompts' order. */
typedef struct {
    model_bundle b;
    /* LoRA (rollout_train_init with a rank): the adapter attached to b.m, and while the decoder
     * samples (rollout_sample_begin .. _end) the targeted base matrices saved aside. */
    lora lo;
    int use_lora;
    float *base_saved;        /* (lora_merge_floats(&lo)) */
    int merged;
    rollout_scorer scorer;
    rollout_ids *prompt_ids;  /* (n_prompts) */
    size_t n_prompts;
    int T;                    /* longest prompt + max_new_tokens - 1: a row's positions */
    size_t *train_idx, n_train, *val_idx, n_val;
    rollout_order order;
} rollout_setup;

/* Loads model_dir (a language model with a tokenizer), the reward (reward_model's directory when
 * given, else fn), encodes the prompts (refusing any that with max_new_tokens exceeds the
 * context) and splits them. rollout_setup_close is safe on a zeroed setup. */
int rollout_setup_open(rollout_setup *s, const char *model_dir, const reward_fn *fn, const char *reward_model,
                       float missing_eos_penalty, const char *const *prompts, size_t n_prompts, int max_new_tokens,
                       double val_fraction, uint64_t seed, rlhf_error *err);
void rollout_setup_close(rollout_setup *s);

/* The trainer over s's policy: full weights (lp NULL or rank 0), or a fresh LoRA adapter
 * (PEFT's initialisation drawn from `seed`; lp->targets NULL: the family's PEFT default)
 * attached to s->b.m with only the adapter trained (train_init_lora). */
int rollout_train_init(rollout_setup *s, train *t, const train_params *tp, const lora_params *lp, uint64_t seed,
                       rlhf_error *err);

/* The policy the decoder samples from. The decoder reads plain weights, so with an adapter
 * rollout_sample_begin detaches it, saves the targeted base matrices (lora_base_save) and merges
 * the adapter into them; rollout_sample_end restores them bit for bit and attaches it again.
 * Why merge rather than teach the decoder LoRA: its step kernels are row-independent dot
 * products (a candidate's logits do not depend on the batch), and a LoRA path would need its own
 * such kernels in every slot of prefill and step; a merge is one rank-r product per target per
 * rollout batch plus a copy of the targeted matrices (no per-token work, no allocation, no
 * second model), and sampling then runs at the plain model's speed. The merged weights round
 * differently from the unmerged forward by float32 rounding only; the trainers take the old
 * log-probabilities from the training forward anyway. No-ops without an adapter. */
int rollout_sample_begin(rollout_setup *s, rlhf_error *err);
void rollout_sample_end(rollout_setup *s);
/* The reference policy for KL terms: with an adapter, the base with the adapter off
 * (lora_set_enabled; no second model); without one the caller keeps a snapshot. `on` 1 switches
 * the adapter off, 0 back on. Also the forward passes that measure a rollout (old log-probs,
 * values, reference) run without LoRA dropout: rollout_measure(s, 1) / (s, 0) around them. */
void rollout_reference(rollout_setup *s, int on);
void rollout_measure(rollout_setup *s, int on);

/* Entropy of softmax(x) over V logits (in double). */
double rollout_entropy(const float *x, int V);

int rollout_order_init(rollout_order *o, const size_t *train_idx, size_t n_train, uint64_t seed, rlhf_error *err);
void rollout_order_free(rollout_order *o);
/* The k-th training prompt of the run. */
size_t rollout_order_at(rollout_order *o, uint64_t k);

/* ---- exact resume ----
 * An online run keeps OUT/training_state.bin (train_state_save_extra) at every checkpoint: the
 * trained buffer (model or adapter) and its AdamW moments, the step and the loop's rng, the
 * run's settings as JSON (with hashes of the prompts, the starting weights and the reward
 * model), and the trainer's own block: what its next steps read that a step does not rebuild
 * (the current rollout batch and its log-probabilities, values and advantages, PPO's value head
 * and its AdamW, the adaptive KL coefficient, LoRA's dropout rng, the metrics so far). Rollouts
 * are functions of (seed, rollout index) and the weights, so with one thread a resumed run
 * replays the uninterrupted one exactly. */
#define ROLLOUT_STATE_FILE "training_state.bin"

/* The trainer's block, one function for both directions: the trainer lists its arrays once
 * (rollout_blob_io on each, in order) and the same code writes or reads them. */
typedef struct {
    FILE *fp;
    char *buf;        /* writing: the bytes (open_memstream) */
    size_t len;
    int writing, bad;
} rollout_blob;
void rollout_blob_io(rollout_blob *b, void *data, size_t bytes);
/* An optimizer's moments and step (optim_write / optim_read). */
void rollout_blob_optim(rollout_blob *b, optim *o);
typedef int (*rollout_state_io_fn)(void *ctx, rollout_blob *b);

/* One setting of the run, recorded in the state and compared on --resume. */
typedef struct {
    const char *name;
    double num;       /* when str is NULL */
    const char *str;
} rollout_setting;
/* The settings every online run shares (optimizer, LoRA, seed) into set (room for
 * ROLLOUT_COMMON_SETTINGS; seed_buf holds the seed's text); returns how many. */
#define ROLLOUT_COMMON_SETTINGS 14
int rollout_common_settings(rollout_setting *set, const optim_params *o, const lora_params *l, uint64_t seed,
                            char seed_buf[24]);
/* The settings (and "data": the hash of the prompts as encoded, "model": of the starting
 * weights, "reward": of the reward model's, as 16-digit hex) as a JSON object; NULL when out of
 * memory. free() it. */
char *rollout_run_json(const rollout_setup *s, const rollout_setting *set, int n);
/* Before any training: on a fresh run (resume 0) OUT must not hold a training state (pass
 * --resume or another --out); on --resume it must, and its settings must equal run_json's
 * (the message names the first that differs and both values); *start_step and *start_rng get
 * where the saved run stood. */
int rollout_resume_check(const char *out_dir, int resume, const char *run_json, long *start_step, rng_t *start_rng,
                         rlhf_error *err);
/* Loads the state into t (trained buffer and optimizer) and the trainer's block through io. */
int rollout_resume_load(const char *out_dir, train *t, rollout_state_io_fn io, void *ctx, rlhf_error *err);

/* The online trainers' loop: steps optimizer steps of head over data on t (from start_step; from
 * step 0 the data rng is seeded with seed), the policy (bundle b, or the adapter lo) saved to
 * out_dir every save_every steps and at the end (atomic files), then save_extra, then the
 * training state (ROLLOUT_STATE_FILE) with run_json and state_io's block. An interruption is RLHF_ERR_INTERRUPTED with a message naming the last
 * checkpoint. *steps_done and *elapsed_s are set as far as the run got. */
typedef struct {
    long steps, save_every;
    uint64_t seed;
    model_bundle *b;
    const lora *lo;              /* non-NULL: the adapter is what is saved (PEFT, unmerged) */
    const char *model_dir;       /* the base, named in a saved adapter's config */
    const char *out_dir;
    train_save_fn save_extra;    /* may be NULL: writes more of a checkpoint after the policy */
    void *save_extra_ctx;
    long start_step;             /* resume: steps already done, with the loop's rng */
    rng_t start_rng;
    const char *run_json;        /* the settings saved in the training state (rollout_run_json) */
    rollout_state_io_fn state_io;/* writes the trainer's block (ctx: save_extra_ctx); NULL: none */
    volatile sig_atomic_t *stop;
    train_progress_fn progress;
    void *progress_ctx;
} rollout_loop_params;
/* Zeroes lp and sets what comes from the run's set-up: the policy of su (its adapter when it
 * trains one), the base and output directories, steps, checkpoint interval and seed. */
void rollout_loop_params_init(rollout_loop_params *lp, rollout_setup *su, const char *model_dir, const char *out_dir,
                              long steps, long save_every, uint64_t seed);
int rollout_loop_run(train *t, train_head head, train_data data, const rollout_loop_params *lp, long *steps_done,
                     double *elapsed_s, rlhf_error *err);

/* Per-position log p(target) of rows (B, T) under m with the logits divided by temperature
 * (1: plain), targets < 0 give 0: one forward pass on a. */
int rollout_token_logps(model *m, model_acts *a, const int32_t *tokens, const int32_t *targets, int B, int T,
                        float temperature, float *out, rlhf_error *err);

#endif
