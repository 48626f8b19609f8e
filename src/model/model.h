/* model.h — the GPT-2 / Llama transformer: configuration, parameter layout, forward, backward.
 *
 * One code path serves both families where they agree. Letters used in shape comments:
 *   B batch, T sequence length, C model dim, NH query heads, NKV key/value heads, HS head size
 *   (C / NH), F MLP hidden size, V vocabulary, L layers, TMAX context length (config.context).
 *
 * Parameters live in ONE contiguous float buffer (`params`), gradients in another of the same
 * size and layout (`grads`); a table of named tensors (Hugging Face names, shapes, offsets)
 * maps them to checkpoint files, and `model_weights` gives typed per-layer pointers into either
 * buffer. Zeroing gradients is one memset, saving is one loop over the table, snapshotting a
 * reference policy is one memcpy, and the optimizer is one loop over `n_floats`.
 *
 * Tensors are stored exactly in the layout of transformers' checkpoints so files load without
 * transposes: GPT-2's Conv1D weights are [in, out] (y = x W), Llama's Linear weights are
 * [out, in] (y = x W^T). Llama's q/k/v projections are laid out consecutively, so together they
 * form one ((NH + 2 NKV) HS, C) matrix and one sgemm computes all three; gate/up likewise form
 * one (2F, C) matrix.
 *
 * Losses are heads: model_forward produces logits (and the final hidden state); a head such as
 * model_xent computes the loss and d(loss)/d(logits) (or d(loss)/d(hidden) for scalar heads);
 * model_backward runs the one shared body backward from there. */
#ifndef RLHF_MODEL_H
#define RLHF_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "src/core/error.h"
#include "src/core/rng.h"

typedef enum {
    MODEL_FAMILY_GPT2 = 0,  /* learned positions, LayerNorm+bias, GELU(tanh), fused QKV, biases */
    MODEL_FAMILY_LLAMA = 1, /* RoPE, RMSNorm, SwiGLU, grouped-query attention, no biases */
} model_family;

typedef enum {
    /* Hugging Face `rotate_half`: dimension i pairs with i + HS/2. */
    MODEL_ROPE_HALF = 0,
    /* llama2.c / Meta original: dimension 2i pairs with 2i+1. */
    MODEL_ROPE_INTERLEAVED = 1,
} model_rope_layout;

typedef struct {
    model_family family;
    int n_layers;         /* L */
    int dim;              /* C */
    int n_heads;          /* NH; C % NH == 0 */
    int n_kv_heads;       /* NKV; NH % NKV == 0; always NH for GPT-2 */
    int ffn_dim;          /* F; 4C for GPT-2 by default */
    int vocab_size;       /* V */
    int context;          /* TMAX: positions the model supports */
    int tied_embeddings;  /* 1: the output head is the token embedding (V, C) */
    float norm_eps;       /* LayerNorm / RMSNorm epsilon (GPT-2 1e-5, Llama 1e-5 or 1e-6) */
    float rope_theta;     /* Llama only, usually 10000 */
    model_rope_layout rope_layout; /* Llama only */
    int32_t bos_id;       /* -1 if none */
    int32_t eos_id;       /* -1 if none */
    /* Sequence classifiers (reward models, classifiers): 0 for a causal LM. When > 0 the model
     * has no LM head: "score.weight" (num_labels, C), no bias, replaces lm_head.weight
     * (LlamaForSequenceClassification / GPT2ForSequenceClassification), model_forward computes
     * no logits, and the score is read by a head (src/train/score_head.h) at the last
     * non-padding token. */
    int num_labels;
    int32_t pad_id;       /* pad_token_id, -1 if none (classifiers find the last real token) */
} model_config;

/* Fills cfg with the defaults of a family (GPT-2: eps 1e-5, F = 4C, tied; Llama: eps 1e-5,
 * theta 10000, half-split RoPE, untied); shape fields are left 0 for the caller. */
void model_config_defaults(model_config *cfg, model_family family);
/* Checks every field for consistency; the message names the offending field. */
int model_config_validate(const model_config *cfg, rlhf_error *err);
/* "gpt2" / "llama". */
const char *model_family_name(model_family family);

typedef enum {
    MODEL_TENSOR_MATRIX = 0, /* a projection matrix: weight decay applies */
    MODEL_TENSOR_EMBEDDING,  /* token / position embeddings (and an untied output head) */
    MODEL_TENSOR_NORM,       /* LayerNorm / RMSNorm gains */
    MODEL_TENSOR_BIAS,
} model_tensor_kind;

#define MODEL_TENSOR_NAME_MAX 96

typedef struct {
    char name[MODEL_TENSOR_NAME_MAX]; /* Hugging Face name, e.g. "model.layers.3.mlp.up_proj.weight" */
    int ndim;                         /* 1 or 2 */
    int64_t shape[2];                 /* shape in the checkpoint's convention (see top of file) */
    size_t offset;                    /* in floats, into params / grads / optimizer buffers */
    size_t numel;
    model_tensor_kind kind;
    int layer;                        /* layer index, or -1 for embeddings / final norm / head */
} model_tensor;

/* Typed views into one buffer laid out by the tensor table (params, grads, AdamW moments). */
typedef struct {
    float *ln1_w, *ln1_b;           /* (C); ln1_b GPT-2 only */
    float *qkv_w;                   /* GPT-2: (C, 3C) [in,out]; Llama: (NH*HS + 2*NKV*HS, C) [out,in] */
    float *qkv_b;                   /* (3C) GPT-2 only */
    float *attn_out_w;              /* GPT-2: (C, C) [in,out]; Llama: (C, NH*HS) [out,in] */
    float *attn_out_b;              /* (C) GPT-2 only */
    float *ln2_w, *ln2_b;           /* (C); ln2_b GPT-2 only */
    float *fc_w;                    /* GPT-2: (C, F) [in,out]; Llama: gate then up, (2F, C) [out,in] */
    float *fc_b;                    /* (F) GPT-2 only */
    float *proj_w;                  /* GPT-2: (F, C) [in,out]; Llama down_proj: (C, F) [out,in] */
    float *proj_b;                  /* (C) GPT-2 only */
} model_layer_weights;

typedef struct {
    float *tok_emb;                 /* (V, C) */
    float *pos_emb;                 /* (TMAX, C) GPT-2 only, else NULL */
    model_layer_weights *layers;    /* (L) array owned by the model */
    float *lnf_w, *lnf_b;           /* (C); lnf_b GPT-2 only */
    float *lm_head;                 /* (V, C): == tok_emb when tied; NULL for a classifier */
    float *score;                   /* (num_labels, C) [out,in] for a classifier, else NULL */
} model_weights;

typedef struct model_acts model_acts;
struct lora;

typedef struct {
    model_config config;
    model_tensor *tensors;   /* (n_tensors) layout table in checkpoint order; owned */
    int n_tensors;
    size_t n_params;         /* sum of numel: the parameter count people quote */
    size_t n_floats;         /* buffer length (n_params plus alignment padding, which stays 0) */
    float *params;           /* (n_floats), 64-byte aligned; owned */
    float *grads;            /* (n_floats) or NULL until model_alloc_grads; owned */
    model_weights w;         /* views into params */
    model_weights g;         /* views into grads (NULLs until model_alloc_grads) */
    /* A LoRA adapter the forward and backward add (src/model/lora.h); borrowed, set by
     * lora_attach, NULL otherwise. */
    struct lora *lora;
    /* 1: model_backward computes no gradient of the base parameters (and allocates none), only
     * what flows to the activations and to an attached adapter. */
    int frozen;
} model;

/* Builds the layout for cfg and allocates zeroed parameters (no gradients). On error the
 * struct is left zeroed. model_free is safe on a zeroed struct and safe twice. */
int model_init(model *m, const model_config *cfg, rlhf_error *err);
void model_free(model *m);
/* Allocates the zeroed gradient buffer (idempotent). */
int model_alloc_grads(model *m, rlhf_error *err);
void model_zero_grads(model *m);
/* Points `out` at the tensors of `buffer`, a float array of n_floats laid out like params.
 * `layers` must hold n_layers entries; it is what out->layers will point to. */
void model_bind_weights(const model *m, float *buffer, model_weights *out, model_layer_weights *layers);
/* Initialises parameters as transformers does: N(0, 0.02) for matrices and embeddings, residual
 * output projections (GPT-2 attn/mlp c_proj) scaled by 1/sqrt(2L), norm gains 1, biases 0.
 * Draws in tensor-table order, so a seed fully determines the model. */
void model_init_random(model *m, rng_t *rng);
/* Looks a tensor up by its Hugging Face name; NULL if absent. */
const model_tensor *model_find_tensor(const model *m, const char *name);
/* Bytes of params + grads + AdamW moments, for `rlhf model info`. */
size_t model_param_bytes(const model *m);

/* ---- activations and compute (model_compute.c) ---- */

/* The activation arena: sized once for at most (B, T); forward keeps what backward needs.
 * Nothing is allocated inside a forward or backward call. */
struct model_acts {
    int B, T;        /* capacity the arena was sized for */
    int cur_B, cur_T;/* shape of the last forward */
    float *logits;   /* (B, T, V): written by model_forward; a head may overwrite it with dlogits;
                        NULL for a classifier (num_labels > 0: no LM head) */
    float *hidden;   /* (B, T, C): final normalised hidden state (the lm_head's input) */
    float *arena;    /* one allocation holding everything; owned */
    size_t arena_floats;
    void *priv;      /* layout of the saved activations; owned, defined in model_compute.c */
    /* LoRA's activations (src/model/lora.h), allocated by the first forward with an adapter
     * attached (once, not per step; grown if a larger adapter comes); owned */
    float *lora_arena;
    size_t lora_arena_floats;
    uint64_t lora_seed; /* dropout seed of the last forward */
    int lora_active;    /* 1: the last forward added an adapter (backward needs its activations) */
};

int model_acts_init(model_acts *a, const model_config *cfg, int B, int T, rlhf_error *err);
void model_acts_free(model_acts *a);

/* Runs the model over tokens (B, T), B <= a->B, T <= a->T and T <= context; fills a->logits
 * (LMs only) and a->hidden. Token ids outside [0, V) are refused with RLHF_ERR_INVALID (message names the
 * position). */
int model_forward(const model *m, model_acts *a, const int32_t *tokens, int B, int T, rlhf_error *err);

/* Cross-entropy head. loss = sum_{b,t} w[b,t] * -log softmax(logits[b,t])[targets[b,t]] / sum w,
 * over positions with targets >= 0 (weights NULL means 1 for every such position). If dlogits
 * is not NULL it receives d(loss)/d(logits) (B, T, V); it may alias logits (then the logits are
 * consumed). If losses is not NULL it receives the per-position loss (B, T) (0 where ignored).
 * Returns the loss (computed in double); NAN if no position counts. The per-position losses are
 * the unweighted -log p (a zero-weight position still reports its own); targets must be < V.
 * Rows are processed in blocks so the backward pass finds each block's logits still in cache. */
double model_xent(const float *logits, const int32_t *targets, const float *weights, int B, int T, int V,
                  float *dlogits, float *losses);

/* Backward through the body from d(loss)/d(logits) (B, T, V) and/or d(loss)/d(hidden) (B, T, C)
 * for the shape of the last model_forward on `a`. Either may be NULL (scalar heads pass only
 * dhidden; language-model heads only dlogits); dlogits may alias a->logits. ACCUMULATES into
 * m->grads (+=), so micro-batches add up; call model_zero_grads between optimizer steps.
 * Allocates the gradient buffer on first use if model_alloc_grads was not called (once, not
 * per step), unless m->frozen: then base gradients are neither computed nor touched, and an
 * attached LoRA adapter's gradients accumulate in its own buffer (lo->grads, += likewise). Returns RLHF_ERR_NUMERIC if a gradient is NaN/inf (message names the tensor and
 * element); the check scans the whole gradient buffer, so an earlier micro-batch's NaN is
 * reported too.
 *
 * Threads: forward and backward use the OpenMP team (OMP_NUM_THREADS) for everything, matrix
 * products included (split across the team, each part a single-threaded sgemm), so OpenBLAS's
 * own pool is held at one thread during those calls and never competes with OpenMP. */
int model_backward(model *m, model_acts *a, const float *dlogits, const float *dhidden, rlhf_error *err);

#endif
