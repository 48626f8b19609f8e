/* checkpoint.h — Hugging Face model directories: config.json <-> model_config, model.safetensors
 * <-> the parameter buffer.
 *
 * A model directory is what transformers' save_pretrained writes for GPT2LMHeadModel or
 * LlamaForCausalLM: `config.json` with transformers' own field names and `model.safetensors`
 * with its tensor names and layouts (the names in model.h's table; a tied model has no
 * lm_head.weight). Other files in the directory (tokenizer.json, generation_config.json,
 * training state) belong to other modules and are neither read nor touched here.
 *
 * Loading also accepts what real checkpoints on people's disks look like: GPT-2 weights saved
 * from GPT2Model (names without the "transformer." prefix, like the public `gpt2` repository),
 * buffers that are not parameters (`.attn.bias`, `.attn.masked_bias`, `rotary_emb.inv_freq`;
 * ignored), an `lm_head.weight` in a tied model (ignored when it has the embedding's shape),
 * F16/BF16 tensors (converted to float32), and sharded checkpoints
 * (`model.safetensors.index.json` + `model-0000x-of-0000y.safetensors`). Anything else that
 * does not fit — a bad header, a missing or extra tensor, a wrong shape, a NaN/inf weight, a
 * config field that is missing, mistyped or out of range — is refused with one message naming
 * the file and the tensor or field, never loaded as a silently wrong model.
 *
 * Hugging Face Llama checkpoints use the half-split (rotate_half) RoPE layout. A model whose
 * q/k rows expect llama2.c's interleaved pairs records it in the project-specific config field
 * "rlhf_rope_layout": "interleaved" (transformers ignores unknown fields, so such a directory
 * still loads there, but computes a different function; llama2c_load permutes q/k instead so
 * its conversions are plain HF Llama directories). */
#ifndef RLHF_CHECKPOINT_H
#define RLHF_CHECKPOINT_H

#include <stddef.h>

#include "src/core/error.h"
#include "src/model/model.h"

/* Parses config.json text (len bytes) into cfg. `path` only names the file in messages, which
 * also name the offending field ("n_embd", "num_key_value_heads", ...). Missing optional fields
 * take transformers' defaults (GPT-2: n_inner null = 4C, layer_norm_epsilon 1e-5, tied;
 * Llama: num_key_value_heads = num_attention_heads, rms_norm_eps 1e-6, rope_theta 10000,
 * untied, bos 1, eos 2). On success cfg passes model_config_validate. */
int checkpoint_config_parse(model_config *cfg, const char *json, size_t len, const char *path, rlhf_error *err);
/* Reads and parses the config.json file at `path`. */
int checkpoint_config_read(model_config *cfg, const char *path, rlhf_error *err);
/* Formats cfg as config.json text (2-space indented, trailing newline). On success *out is a
 * NUL-terminated string the caller frees with free(); on error *out is NULL. */
int checkpoint_config_format(const model_config *cfg, char **out, rlhf_error *err);

/* Loads the model directory `dir` into m (m need not be initialised). On success m owns its
 * parameters (release with model_free); on error m is left zeroed and err names the file and
 * the tensor or config field. */
int checkpoint_load(model *m, const char *dir, rlhf_error *err);
/* Loads `path`: a model directory, or a llama2.c legacy checkpoint file (converted to a
 * half-split HF Llama by llama2c_load). Same ownership as checkpoint_load. */
int checkpoint_load_any(model *m, const char *path, rlhf_error *err);

/* Saves m into `dir` (created with its parents if missing) as config.json + model.safetensors
 * (float32). Refuses non-finite weights (RLHF_ERR_NUMERIC naming the tensor) before touching the
 * disk. Both files are staged as temporaries, written and fsync'd completely, and only then
 * renamed over the old ones, so a failure or crash while writing leaves the previous checkpoint
 * intact. m is only read. */
int checkpoint_save(const model *m, const char *dir, rlhf_error *err);

/* Sequence classifiers (model_config.num_labels > 0): the directory is what transformers writes
 * for GPT2ForSequenceClassification / LlamaForSequenceClassification (and TRL's RewardTrainer):
 * "architectures", "num_labels", "id2label"/"label2id" and "pad_token_id" in config.json,
 * score.weight (num_labels, C) instead of lm_head.weight in model.safetensors. A config is a
 * classifier when its first architecture ends in ForSequenceClassification; num_labels comes
 * from the field, else id2label's size, else 2 (transformers' default).
 * checkpoint_save_labeled writes labels[i] as label i (labels NULL: "LABEL_i"). */
int checkpoint_save_labeled(const model *m, const char *dir, const char *const *labels, rlhf_error *err);
int checkpoint_config_format_labeled(const model_config *cfg, const char *const *labels, char **out, rlhf_error *err);
/* The num_labels label names of classifier directory dir (id2label; "LABEL_i" where absent),
 * newly allocated: free with checkpoint_labels_free(labels, cfg->num_labels). */
int checkpoint_labels_read(const char *dir, const model_config *cfg, char ***labels, rlhf_error *err);
void checkpoint_labels_free(char **labels, int n);

#endif
