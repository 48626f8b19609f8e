/* model_load.h — one entry point that loads any model path the project reads.
 *
 *   a Hugging Face directory  config.json + model.safetensors (or sharded, with its index) via
 *                             checkpoint_load; tokenizer.json (or encoder.json + vocab.bpe) via
 *                             tok_load; generation_config.json for decoding defaults and EOS
 *                             ids; tokenizer_config.json (or chat_template.jinja) for the chat
 *                             template, the BOS/EOS token texts and add_bos_token;
 *   a llama2.c .bin           llama2c_load (q/k permuted to the half-split RoPE layout, so it is
 *                             a plain HF Llama); a llama2.c tokenizer.bin beside it is loaded
 *                             when present, otherwise the model has no tokenizer;
 *   a .gguf file              gguf_load (llama / gpt2 architectures; weights dequantised to
 *                             float32; tokenizer and chat template from the metadata).
 * The format is recognised from the path (a directory, the GGUF magic, else llama2.c). This
 * module only delegates: every format's parsing lives in its own module. */
#ifndef RLHF_MODEL_LOAD_H
#define RLHF_MODEL_LOAD_H

#include <stdint.h>

#include "src/core/error.h"
#include "src/model/model.h"
#include "src/tok/tokenizer.h"

typedef enum {
    MODEL_FORMAT_HF_DIR = 0,
    MODEL_FORMAT_LLAMA2C = 1,
    MODEL_FORMAT_GGUF = 2,
} model_format;

/* "hf", "llama2c", "gguf". */
const char *model_format_name(model_format f);

#define MODEL_LOAD_MAX_EOS 8

/* Decoding defaults a model directory ships (generation_config.json). A field is meaningful
 * only when its has_ flag is set. */
typedef struct {
    int has_temperature, has_top_k, has_top_p, has_repetition_penalty, has_do_sample, has_max_new_tokens;
    float temperature;
    int top_k;
    float top_p;
    float repetition_penalty;
    int do_sample;
    int max_new_tokens;
    int32_t eos_ids[MODEL_LOAD_MAX_EOS]; /* generation_config's eos_token_id (int or list) */
    int n_eos;                           /* 0: none given */
} model_gen_defaults;

typedef struct {
    model m;                    /* the weights; owned */
    tokenizer *tok;             /* NULL when the model comes without a tokenizer; owned */
    model_format format;
    model_gen_defaults defaults;
    char *chat_template;        /* Jinja source, NULL if none; owned */
    char *bos_token, *eos_token;/* token texts for chat templates ("<s>"), NULL if unknown; owned */
    int add_bos;                /* 1: plain prompts start with BOS (SentencePiece Llama) */
    char **labels;              /* classifiers (m.config.num_labels > 0): id2label, num_labels
                                   strings, or NULL ("LABEL_i"); owned (checkpoint_labels_free) */
} model_bundle;

/* Loads `path` (see the top of the file). On success the bundle owns everything in it
 * (model_bundle_free); on error it is left zeroed and err names the file. */
int model_bundle_load(model_bundle *b, const char *path, rlhf_error *err);
/* Frees everything; safe on a zeroed bundle and safe twice. */
void model_bundle_free(model_bundle *b);
/* model_bundle_load, or, when `path` is a language model's PEFT LoRA adapter directory
 * (adapter_config.json, adapter_model.safetensors, no config.json): its base model
 * (base_model_name_or_path; a relative one is looked up from the current directory, then from
 * the adapter's parent directory) with the adapter merged in. A classifier's adapter (a reward
 * model's) is refused: rlhf score / reward eval read those. */
int model_bundle_load_merged(model_bundle *b, const char *path, rlhf_error *err);
/* Merges the LoRA adapter directory `adapter` into b's model; on error b is freed. */
int model_bundle_merge_adapter(model_bundle *b, const char *adapter, rlhf_error *err);

/* Only the weights of `path` (any format above), for commands that need no tokenizer or decoding
 * defaults (model info, loss, logits, the initial model of pre-training). On success m owns its
 * parameters (model_free); on error m is zeroed and err names the file. */
int model_load_weights(model *m, const char *path, rlhf_error *err);
/* A tokenizer from any path tok_load reads (tokenizer.json, a directory, encoder.json +
 * vocab.bpe, llama2.c tokenizer.bin) or from a GGUF file's metadata. On success *out is the
 * caller's (tok_close); RLHF_ERR_NOT_FOUND for a GGUF file without a vocabulary. */
int model_load_tokenizer(tokenizer **out, const char *path, rlhf_error *err);

/* Writes the bundle as a Hugging Face directory `dir`: config.json + model.safetensors
 * (checkpoint_save), tokenizer.json when it has a tokenizer (tok_save), and tokenizer_config.json
 * with the chat template, BOS/EOS texts and add_bos_token when it has any of them, so that
 * model_bundle_load(dir) gives back the same model, tokenizer and template. Every file is written
 * atomically; a file of another model already in dir that this bundle lacks (a tokenizer.json
 * when it has no tokenizer) is removed, so the directory never pairs two models' parts. */
int model_bundle_save(const model_bundle *b, const char *dir, rlhf_error *err);

/* Reads generation_config.json text into d (fields absent stay unset). `path` names the file in
 * messages. */
int model_load_parse_generation_config(model_gen_defaults *d, const char *json, const char *path, rlhf_error *err);
/* Reads the chat template, bos/eos texts and add_bos_token from tokenizer_config.json text. */
int model_load_parse_tokenizer_config(model_bundle *b, const char *json, const char *path, rlhf_error *err);

#endif
