/* sft.h — supervised fine-tuning: examples as text, their tokens with a loss mask, and the run.
 *
 * Two example forms (TRL's): {"prompt", "completion"} and {"messages": [{"role","content"}...]}.
 *   - prompt/completion: the ids of prompt + completion (with the tokenizer's BOS when the model
 *     adds one); loss only on the completion's tokens. The boundary is where the prompt's own
 *     ids stop being a prefix of the whole text's ids (as TRL does it), so a BPE merge across the
 *     boundary puts the merged token on the completion side.
 *   - messages: the conversation rendered with the model's chat template (the HH-RLHF format
 *     without one; prompt.h); loss only on the assistant turns. A turn's span is found by
 *     rendering prefixes: the conversation up to the turn with the generation prompt ends where
 *     the reply starts, the conversation through the turn ends where it stops (end-of-turn
 *     marker included, so the model learns to close its turn). A template that writes the
 *     generation prompt even when not asked (the original Llama 3 one) has it cut off the end of
 *     these renderings, so it is never a target. Template text is encoded with
 *     special tokens allowed (markers become their ids); plain prompt/completion text is not.
 * EOS: when the ids do not already end with the tokenizer's EOS it is appended, and it is
 * trained on when the last turn is the model's (always for prompt/completion) — a model that
 * never sees EOS as a target never learns to stop. An example marked "eos": false (the task
 * world's endless answers) is the exception: it ends right after the reply's text, so neither
 * EOS nor the template's end-of-turn marker is a target and the model learns not to stop.
 *
 * Truncation: an example longer than max_length ids keeps its first (keep_start) or last
 * (keep_end) max_length ids, or is refused (SFT_TRUNCATE_ERROR). Examples left without any loss
 * token are dropped. Both are counted in sft_encoded.
 *
 * Batches: examples are split once (seeded) into train/validation; training draws them in a
 * fresh seeded permutation per epoch (a function of seed and epoch, not of any running state,
 * so a resumed run replays the same batches). A micro-batch is padded to its longest example;
 * an example of n ids is n-1 positions (inputs ids[0..n-1), targets ids[1..n) where masked in).
 * The loss is train_head_lm's: the mean over the micro-batch's loss tokens, averaged over the
 * accumulation steps.
 *
 * The library never prints: sft_run reports the prepared data through on_data (so the caller
 * can show statistics and masked examples) and progress through the loop's callback. */
#ifndef RLHF_SFT_H
#define RLHF_SFT_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "src/core/error.h"
#include "src/formats/model_load.h"
#include "src/model/lora.h"
#include "src/tok/tokenizer.h"
#include "src/train/dataset.h"
#include "src/train/loop.h"
#include "src/train/train.h"

/* File name of the training state inside the output directory. */
#define SFT_STATE_FILE "training_state.bin"

typedef enum {
    SFT_TRUNCATE_KEEP_START = 0, /* keep the first max_length ids (TRL's default) */
    SFT_TRUNCATE_KEEP_END,       /* keep the last max_length ids */
    SFT_TRUNCATE_ERROR,          /* refuse an example longer than max_length */
} sft_truncate;

/* "keep_start", "keep_end", "error" <-> the enum; -1 for an unknown name. */
int sft_truncate_parse(const char *name);
const char *sft_truncate_name(sft_truncate t);

/* One example as text: either prompt + completion, or messages (a JSON array of {role,
 * content}). All strings owned. */
typedef struct {
    char *prompt, *completion; /* NULL for messages */
    char *messages_json;       /* NULL for prompt/completion */
    long line;                 /* 1-based line of the JSONL source, 0 if none */
    int64_t id;                /* the store's row, 0 if none */
    int n_context;             /* messages: the first n_context are context only (a
                                  conversational prompt): their assistant turns get no loss */
    int no_eos;                /* "eos": false: the reply never ends (a deliberately endless
                                  example): the ids stop right after its text, with neither an
                                  end-of-turn marker nor EOS to learn */
} sft_text;

typedef struct {
    sft_text *items; /* (n) */
    size_t n, cap;
} sft_texts;

/* Reads a JSONL file: one object a line, {"prompt","completion"} strings or a "messages" array
 * of {"role": system|user|assistant|tool, "content": string} with at least one assistant turn,
 * or TRL's conversational prompt/completion ({"prompt": [messages], "completion": [messages]}:
 * loss only on the completion's assistant turns);
 * any of them with "eos": false (see above; "eos" must be a boolean);
 * blank lines are skipped. Errors name FILE:LINE and the reason (bad JSON, missing or
 * non-string field, unknown role, no assistant turn). d need not be initialised; on error it is
 * left empty. */
int sft_texts_read_jsonl(sft_texts *d, const char *path, rlhf_error *err);
/* The store's examples (store_get_sft_dataset): chat prompts (prompt_messages) become messages
 * with the completion as the assistant's reply (the only turn trained), the others
 * prompt/completion. */
int sft_texts_from_dataset(sft_texts *d, const sft_dataset *src, rlhf_error *err);
void sft_texts_free(sft_texts *d);

/* How texts become ids. Strings and the tokenizer are borrowed. */
typedef struct {
    const tokenizer *tok;
    const char *chat_template;         /* NULL: the HH-RLHF format (prompt.h) */
    const char *bos_token, *eos_token; /* texts the template sees; may be NULL */
    int add_bos;                       /* 1: plain text starts with the tokenizer's BOS */
    int32_t eos_id;                    /* appended and trained on */
    int max_length;                    /* ids per example (>= 2) */
    sft_truncate truncate;
} sft_encoder;

/* The encoded examples, flat: example i is ids[start[i] .. start[i]+len[i]) with loss[j] = 1
 * where ids[j] is a target (predicted from the ids before it). */
typedef struct {
    int32_t *ids;
    uint8_t *loss;
    size_t n_ids, cap_ids;
    size_t *start;        /* (n) */
    int *len;             /* (n) */
    long *line;           /* (n) source line (0 if none) */
    size_t n, cap;
    /* what encoding did */
    size_t n_input;       /* examples read */
    size_t n_truncated;   /* cut to max_length */
    size_t n_dropped;     /* no loss token left after truncation (left out) */
    size_t n_eos_added;   /* EOS appended */
    size_t n_loss_tokens; /* targets over all kept examples */
    int longest;          /* ids of the longest example before truncation */
    int max_length;       /* the limit applied (sft_encoder.max_length) */
} sft_encoded;

/* Encodes every text (errors name `source`:LINE or the example's index, e.g. a template that
 * fails, an example over max_length with SFT_TRUNCATE_ERROR). out need not be initialised. */
int sft_encode(sft_encoded *out, const sft_texts *in, const sft_encoder *enc, const char *source, rlhf_error *err);
void sft_encoded_free(sft_encoded *e);
/* 64-bit hash of the encoded ids and masks (resume refuses other data). */
uint64_t sft_encoded_hash(const sft_encoded *e);

/* The loop's data source over e: split indices, per-epoch permutations, padded micro-batches. */
typedef struct {
    const sft_encoded *e;   /* borrowed */
    size_t *train, n_train; /* example indices; owned */
    size_t *val, n_val;     /* owned */
    size_t *perm;           /* (n_train) permutation of the current epoch; owned */
    size_t *rows;           /* (B) scratch: the examples of one micro-batch; owned */
    long perm_epoch;        /* epoch perm belongs to (-1: none yet) */
    uint64_t seed;
    int B;                  /* rows per micro-batch */
    int accum;
    int32_t pad_id;
} sft_source;

/* Splits e (seeded shuffle; the last val_fraction of it, at least one example when
 * val_fraction > 0 and there are two or more, is held out). */
int sft_source_init(sft_source *s, const sft_encoded *e, double val_fraction, uint64_t seed, int B, int accum,
                    int32_t pad_id, rlhf_error *err);
void sft_source_free(sft_source *s);
/* The loop's train_data for s (n_val = the validation micro-batches). */
train_data sft_source_data(sft_source *s);

/* ---- the run ---- */

typedef struct {
    const char *model_dir;   /* initial model (any path model_bundle_load reads) */
    const char *data_path;   /* JSONL, or NULL with `texts` */
    const sft_texts *texts;  /* examples already read (from the store); borrowed; NULL: data_path */
    const char *data_desc;   /* what texts came from, for the saved run ("db:rlhf.db") */
    const char *out_dir;
    long steps;              /* optimizer steps; <= 0: epochs * ceil(n_train / (batch * accum)) */
    long epochs;
    train_params train;      /* batch, accum, optim; context is set from max_length */
    int max_length;          /* ids per example; <= 0 or above the context: the model's context */
    sft_truncate truncate;
    double val_fraction;
    uint64_t seed;
    long eval_every, save_every; /* -1 on resume: the saved values */
    lora_params lora;        /* lora.rank 0: full fine-tuning */
    int resume;
    volatile sig_atomic_t *stop;
    train_progress_fn progress;
    void *progress_ctx;
    /* Called once the model, tokenizer and data are checked, encoded and split, before anything
     * is written (may be NULL); run_json is the run's configuration. A non-zero return stops the
     * run with that code (the callback fills err). */
    int (*on_data)(const sft_encoded *e, const sft_source *s, const tokenizer *tok, const char *run_json, void *ctx,
                   rlhf_error *err);
    void *on_data_ctx;
    int prepare_only;        /* 1: stop after on_data (check and show the data; nothing written) */
} sft_params;

/* Defaults as trainer_flags' (repl/): 3 epochs, B 8, accum 1, lr 2e-5 (AdamW betas 0.9/0.999,
 * no weight decay, clip 1.0), max_length 1024, keep_start, val_fraction 0.1, seed 42, eval every
 * 100, save every 500, no LoRA. */
void sft_params_defaults(sft_params *p);

typedef struct {
    long start_step, steps_done, total_steps, saved_step;
    double first_val_loss, final_val_loss, final_loss;
    double elapsed_s, tokens_per_s;
    size_t n_train, n_val;
    size_t n_params_trained;  /* adapter floats with LoRA, model parameters otherwise */
    int lora;                 /* 1: an adapter was trained */
    char *run_json;           /* the run's configuration (owned by the summary: sft_summary_free) */
} sft_summary;

void sft_summary_free(sft_summary *s);

/* A checkpoint of a fine-tuning run into out_dir: the model directory (lo NULL) or the PEFT
 * adapter (task CAUSAL_LM, base_model_name_or_path base_dir), then the training state at
 * state_path with info (step, rng, data hash, configuration). Shared by SFT and DPO. */
int sft_checkpoint_save(const char *out_dir, const char *base_dir, const model_bundle *b, const lora *lo,
                        const train *t, const char *state_path, const train_state_info *info, rlhf_error *err);

/* Runs (or resumes) SFT. out_dir receives: full fine-tuning — a model directory
 * (model_bundle_save: config.json, model.safetensors, tokenizer files, chat template); LoRA —
 * a PEFT adapter directory (lora_save, task CAUSAL_LM, base_model_name_or_path = model_dir);
 * both with SFT_STATE_FILE for --resume. Nothing is written before the model, tokenizer and
 * data are checked (no tokenizer, a tokenizer larger than the model's vocabulary, no EOS, bad
 * JSONL, no examples, an example over the context with SFT_TRUNCATE_ERROR). Returns 0,
 * RLHF_ERR_INTERRUPTED (stop flag; the reached step is saved) or an error. summary may be NULL. */
int sft_run(const sft_params *p, sft_summary *summary, rlhf_error *err);

#endif
