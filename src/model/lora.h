/* lora.h — LoRA adapters (Hu et al. 2021) on the model's linear layers, in PEFT's layout.
 *
 * A target linear y = W x (+ b) becomes y = W x (+ b) + scale * B (A (dropout(x))), with A (r, in)
 * drawn like PEFT (kaiming-uniform, bound 1/sqrt(in)), B (out, r) zero, scale = alpha / r
 * (alpha / sqrt(r) with rsLoRA). It is computed without merging: model_forward and
 * model_backward call the hooks below right after each target's product, two thin sgemms per
 * target, with a per-target column slice of the fused q|k|v and gate|up outputs. The base stays
 * frozen: lora_attach sets model.frozen, so model_backward computes no base-parameter gradient
 * at all (no gradient buffer for the base, half the backward's products) — that is where
 * LoRA's speed-up comes from.
 *
 * Targets are PEFT's `target_modules` on Hugging Face module names: Llama q_proj k_proj v_proj
 * o_proj gate_proj up_proj down_proj; GPT-2 c_attn c_proj c_fc (c_proj names both the attention
 * and the MLP output projection, as in PEFT: a key selects every module whose name equals it or
 * ends with "." + key, so "attn.c_proj" selects only the attention one; "all-linear" is every
 * one of them). PEFT writes A (r, in) and B (out, r) for both families: GPT-2's Conv1D weights are
 * stored (in, out), so PEFT sets fan_in_fan_out and transposes only when merging; lora_merge
 * does the same.
 *
 * Storage follows DESIGN.md rule 6: all adapter parameters in ONE float buffer (`params`), their
 * gradients in another of the same layout (`grads`), described by a table of named tensors
 * (`tensors`, model_tensor entries with PEFT's names, e.g.
 * "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"), so an optimizer is
 * optim_init(&o, &p, lo->tensors, lo->n_tensors, lo->n_floats) and steps (lo->params,
 * lo->grads); zeroing is one memset; a reference snapshot is one memcpy.
 *
 * Files (a PEFT adapter directory): adapter_config.json (peft_type "LORA", r, lora_alpha,
 * lora_dropout, target_modules, base_model_name_or_path, task_type, fan_in_fan_out, bias
 * "none", use_rslora, modules_to_save) + adapter_model.safetensors (the tensors above, plus
 * optional extra trained tensors such as a classifier's "base_model.model.score.weight").
 * Both files are staged and renamed together. Loading reads ours and PEFT's, and refuses what
 * it does not implement (DoRA, rank_pattern, bias other than "none", layers_to_transform,
 * regex target_modules) with a message naming the field, and bad tensors (missing, unknown
 * module, rank or shape that does not fit the base) naming the tensor.
 *
 * Dropout (training mode only, lora_set_training) uses a counter-based hash of (seed, target,
 * row, column), one seed per forward drawn from the adapter's rng_t, so backward regenerates
 * the masks instead of storing the dropped inputs; each target has its own mask, as PEFT's
 * per-module nn.Dropout. */
#ifndef RLHF_LORA_H
#define RLHF_LORA_H

#include <stddef.h>
#include <stdint.h>

#include "src/core/error.h"
#include "src/core/rng.h"
#include "src/model/model.h"

/* The four products of a layer a target can sit on (model_compute.c's order). */
typedef enum {
    LORA_SLOT_QKV = 0,  /* input ln1 (N, C); output q|k|v (N, QKV) */
    LORA_SLOT_ATTN_OUT, /* input attention output (N, NH HS); output (N, C) */
    LORA_SLOT_FC,       /* input ln2 (N, C); output GPT-2 (N, F), Llama gate|up (N, 2F) */
    LORA_SLOT_PROJ,     /* input MLP activation (N, F); output (N, C) */
    LORA_SLOT_COUNT
} lora_slot;

typedef struct {
    int rank;            /* r >= 1 */
    float alpha;         /* lora_alpha; scale = alpha / r */
    float dropout;       /* lora_dropout in [0, 1) */
    int use_rslora;      /* 1: scale = alpha / sqrt(r) (PEFT use_rslora) */
    const char *targets; /* comma/space-separated target_modules, "all-linear", or NULL for PEFT's
                            default of the family (Llama q_proj,v_proj; GPT-2 c_attn); borrowed */
} lora_params;

/* PEFT's LoraConfig defaults: r 8, alpha 8, dropout 0, no rsLoRA, family default targets. */
void lora_params_defaults(lora_params *p);

/* One adapted linear of one layer. */
typedef struct {
    int layer;
    int module;            /* index into the family's module table (lora_module_name) */
    lora_slot slot;
    int in, out;           /* the linear's input and output widths */
    int col;               /* first column of this linear inside the slot's (fused) output */
    size_t a_offset;       /* A (r, in), in floats into params / grads */
    size_t b_offset;       /* B (out, r) */
} lora_site;

typedef struct lora {
    model_family family;   /* of the base it was made for */
    model_config base;     /* the base's configuration (shapes are checked against it) */
    int rank;
    float alpha, dropout, scale;
    int use_rslora;
    char *target_modules;  /* the target keys, comma-separated, as saved in adapter_config.json; owned */
    lora_site *sites;      /* (n_sites) layer-major, module order within a layer; owned */
    int n_sites;
    model_tensor *tensors; /* (2 n_sites) lora_A then lora_B per site, PEFT names; owned */
    int n_tensors;
    size_t n_floats;       /* buffer length (tensors padded to 16 floats; padding stays 0) */
    float *params;         /* (n_floats), 64-byte aligned; owned */
    float *grads;          /* (n_floats), same layout; owned */
    int enabled;           /* 0: forward/backward skip the adapter (base model exactly) */
    int training;          /* 1: dropout applies (lora_init: 1; lora_load: 0) */
    rng_t rng;             /* dropout seeds; seeded by lora_init/lora_load, save it with checkpoints */
    int (*slot_first)[LORA_SLOT_COUNT]; /* (L) first site index of (layer, slot), -1 if none; owned */
} lora;

/* Builds an adapter for m (only its configuration is read) with PEFT's initialisation drawn from
 * rng: A kaiming-uniform, B zero. Allocates params and grads (zeroed). Enabled, training mode.
 * On error (unknown target module, bad rank/alpha/dropout: the message names it) lo is zeroed.
 * lora_free is safe on a zeroed struct and safe twice. */
int lora_init(lora *lo, const model *m, const lora_params *p, rng_t *rng, rlhf_error *err);
void lora_free(lora *lo);

/* Makes model_forward/model_backward use lo and freezes the base (m->lora = lo, m->frozen = 1).
 * The model borrows lo: it must outlive the attachment; lora_detach(m) undoes both. lo must have
 * been made for m's configuration (asserted). */
void lora_attach(lora *lo, model *m);
void lora_detach(model *m);
/* 0: the attached adapter is skipped (the reference policy of DPO, base logits exactly);
 * 1: used again. */
void lora_set_enabled(lora *lo, int enabled);
/* 1: dropout applies in forward (training); 0: it does not (evaluation, generation). */
void lora_set_training(lora *lo, int training);
void lora_zero_grads(lora *lo);

/* Room for extra trained floats in the adapter's own buffers, after its tensors: PEFT's
 * modules_to_save (a classifier's score head trains as a copy beside the adapter), so one
 * optimizer, one gradient buffer and one training state cover both. Grows params and grads by
 * `floats` (zeroed; the adapter's values kept) and sets *offset to where they start; n_floats
 * grows with them. The extra floats are not in `tensors`: lora_save writes them only as extras,
 * and the optimizer (optim_init) counts them in the last adapter tensor's segment (a matrix,
 * decayed — as HF's Trainer decays a score.weight). Call it before training starts. */
int lora_reserve_extra(lora *lo, size_t floats, size_t *offset, rlhf_error *err);

/* "q_proj", ... / "c_attn", "c_proj" (the short PEFT name) and the module path inside a layer
 * ("self_attn.q_proj", "attn.c_proj", "mlp.c_proj"); NULL past the family's table. */
const char *lora_module_name(model_family family, int module);
const char *lora_module_path(model_family family, int module);
/* The site of (layer, module), or NULL if that linear is not adapted. */
const lora_site *lora_find_site(const lora *lo, int layer, int module);
/* The tensor called `name` (PEFT name), or NULL. */
const model_tensor *lora_find_tensor(const lora *lo, const char *name);

/* W += scale * B A for every site, in W's layout (GPT-2's (in, out) weights get the transpose):
 * afterwards m computes what m with lo attached computed. m must have lo's configuration
 * (RLHF_ERR_SHAPE otherwise). lo is only read; m must not have lo attached (asserted). */
int lora_merge(const lora *lo, model *m, rlhf_error *err);

/* The base floats lora_merge writes: every (layer, slot) weight matrix a site sits on, once.
 * lora_base_save copies them out of m into save (lora_merge_floats(lo) floats) and
 * lora_base_restore puts them back bit for bit, so a merge for sampling (the online trainers'
 * rollouts: the decoder reads plain weights) is undone exactly, with no second full model. */
size_t lora_merge_floats(const lora *lo);
void lora_base_save(const lora *lo, const model *m, float *save);
void lora_base_restore(const lora *lo, model *m, const float *save);

/* An extra trained tensor saved with the adapter (PEFT's modules_to_save), e.g. a score head. */
typedef struct {
    const char *name;   /* Hugging Face name inside the model, e.g. "score.weight" */
    int ndim;           /* 1 or 2 */
    int64_t shape[2];
    float *data;        /* saving: read; loading: filled (numel floats); borrowed */
} lora_extra;

/* What adapter_config.json says besides the adapter's own fields. */
typedef struct {
    const char *base_model;  /* base_model_name_or_path (NULL: null) */
    const char *task_type;   /* "CAUSAL_LM" (NULL), "SEQ_CLS", ... */
} lora_save_info;

/* Writes adapter_config.json and adapter_model.safetensors (float32) into dir (created if
 * missing), both staged and renamed together. extras (n_extras may be 0) are saved as
 * "base_model.model." + name, with modules_to_save listing their module ("score"). Refuses
 * non-finite values before touching the disk. info may be NULL. */
int lora_save(const lora *lo, const char *dir, const lora_save_info *info, const lora_extra *extras, int n_extras,
              rlhf_error *err);

/* Loads the adapter directory dir for base m (its configuration is read) into lo (need not be
 * initialised). Extras listed are filled when present in the file and must have their shape;
 * extras absent from the file are left untouched (*found, if not NULL, gets how many were
 * read). Any tensor that is neither a site of the config's target_modules nor an extra is
 * refused. On success lo is enabled, evaluation mode, and owns its buffers; on error lo is zeroed
 * and err names the file and the field or tensor. */
int lora_load(lora *lo, const model *m, const char *dir, const lora_extra *extras, int n_extras, int *found,
              rlhf_error *err);

/* ---- hooks for model_compute.c (not for trainers) ---- */

/* Floats of LoRA activations for `rows` rows: per site u = A dropout(x) (rows, r), plus scratch. */
size_t lora_acts_floats(const lora *lo, size_t rows);
/* Where one forward keeps its LoRA activations: `arena` of lora_acts_floats(lo, rows) floats. */
typedef struct {
    float *arena;
    size_t rows;   /* capacity in rows the arena is laid out for */
    uint64_t seed; /* dropout seed of this forward (0 = no dropout) */
} lora_acts;
/* Draws the dropout seed of a forward (0 when not training or dropout is 0). */
uint64_t lora_next_seed(lora *lo);
/* out[:, col:col+out] (row stride ldo) += scale B A dropout(in) for every site of (layer, slot);
 * in (N, in) rows contiguous. */
void lora_forward_slot(const lora *lo, const lora_acts *la, int layer, lora_slot slot, float *out, int ldo,
                       const float *in, int N);
/* Gradients of the sites of (layer, slot) from dout (N, ldo): dA, dB += into lo->grads; din
 * (N, in) += the adapter's share of d(in) (skipped if din is NULL). */
void lora_backward_slot(lora *lo, const lora_acts *la, int layer, lora_slot slot, float *din, const float *dout,
                        int ldo, const float *in, int N);

#endif
