/* checkpoint.c — Hugging Face model directories: config.json parsing/formatting with
 * transformers' field names, and model.safetensors (single or sharded) loading and saving.
 *
 * Loading walks the tensors the FILES contain and maps each to the model's table, so both
 * directions of disagreement are caught: a file tensor the config does not describe (e.g. a
 * 12-layer file under a 6-layer config) and a config tensor the files lack. Saving stages both
 * files completely before renaming either (see checkpoint_save). */
#include "src/formats/checkpoint.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/core/fileio.h"
#include "src/formats/llama2c.h"
#include "src/formats/safetensors.h"

#define CKPT_WEIGHTS "model.safetensors"
#define CKPT_INDEX "model.safetensors.index.json"
#define CKPT_CONFIG "config.json"

/* ---- small helpers ---- */

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    int slash = *dir && dir[strlen(dir) - 1] == '/';
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s%s%s", dir, slash ? "" : "/", name);
    return p;
}

typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->oom = 1;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* The shortest %g text that reads back as exactly the same float, so 1e-5f is written "1e-05"
 * rather than its double expansion. */
static void format_float(char *buf, size_t n, float v) {
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, n, "%.*g", prec, (double)v);
        if ((float)strtod(buf, NULL) == v) return;
    }
}

/* ---- config.json ---- */

typedef struct {
    const cJSON *root;
    const char *path;
    rlhf_error *err;
} cfg_reader;

static const cJSON *cfg_get(const cfg_reader *r, const char *field) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(r->root, field);
    return j && !cJSON_IsNull(j) ? j : NULL;
}

/* Reads an integer field into *out. Absent or null: error if required, else *out unchanged. */
static int cfg_int(const cfg_reader *r, const char *field, int *out, int lo, int hi, int required) {
    const cJSON *j = cfg_get(r, field);
    if (!j) {
        if (required) return rlhf_errorf(r->err, RLHF_ERR_INVALID, "%s: required field \"%s\" is missing", r->path, field);
        return RLHF_OK;
    }
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble))
        return rlhf_errorf(r->err, RLHF_ERR_INVALID, "%s: field \"%s\" must be an integer", r->path, field);
    if (j->valuedouble < lo || j->valuedouble > hi)
        return rlhf_errorf(r->err, RLHF_ERR_INVALID, "%s: field \"%s\" must be in %d..%d (got %.17g)", r->path, field, lo, hi,
                           j->valuedouble);
    *out = (int)j->valuedouble;
    return RLHF_OK;
}

static int cfg_float(const cfg_reader *r, const char *field, float *out) {
    const cJSON *j = cfg_get(r, field);
    if (!j) return RLHF_OK;
    if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble) || !(j->valuedouble > 0) || !isfinite((float)j->valuedouble) ||
        (float)j->valuedouble == 0.0f)
        return rlhf_errorf(r->err, RLHF_ERR_INVALID, "%s: field \"%s\" must be a positive number", r->path, field);
    *out = (float)j->valuedouble;
    return RLHF_OK;
}

static int cfg_bool(const cfg_reader *r, const char *field, int *out) {
    const cJSON *j = cfg_get(r, field);
    if (!j) return RLHF_OK;
    if (!cJSON_IsBool(j)) return rlhf_errorf(r->err, RLHF_ERR_INVALID, "%s: field \"%s\" must be true or false", r->path, field);
    *out = cJSON_IsTrue(j);
    return RLHF_OK;
}

/* bos/eos: an integer, null (none) or a list (Llama 3 lists several eos ids; the first is used). */
static int cfg_token(const cfg_reader *r, const char *field, int32_t *out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(r->root, field);
    if (!j) return RLHF_OK;
    if (cJSON_IsNull(j)) {
        *out = -1;
        return RLHF_OK;
    }
    if (cJSON_IsArray(j)) j = j->child;
    if (!j || !cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) || j->valuedouble < 0 || j->valuedouble > 1 << 24)
        return rlhf_errorf(r->err, RLHF_ERR_INVALID, "%s: field \"%s\" must be a token id, a list of ids or null", r->path, field);
    *out = (int32_t)j->valuedouble;
    return RLHF_OK;
}

/* A string field that, when present, must be one of `allowed` (NULL-terminated). */
static int cfg_enum(const cfg_reader *r, const char *field, const char *const *allowed, const char **out) {
    const cJSON *j = cfg_get(r, field);
    if (!j) return RLHF_OK;
    if (!cJSON_IsString(j)) return rlhf_errorf(r->err, RLHF_ERR_INVALID, "%s: field \"%s\" must be a string", r->path, field);
    for (const char *const *a = allowed; *a; a++)
        if (strcmp(j->valuestring, *a) == 0) {
            if (out) *out = *a;
            return RLHF_OK;
        }
    return rlhf_errorf(r->err, RLHF_ERR_UNSUPPORTED, "%s: field \"%s\" is \"%s\", which this engine does not implement (supported: %s%s%s)",
                       r->path, field, j->valuestring, allowed[0], allowed[1] ? ", " : "", allowed[1] ? allowed[1] : "");
}

/* A field whose presence with anything but `ok_value` (false/null) changes the model's math. */
static int cfg_refuse_true(const cfg_reader *r, const char *field) {
    const cJSON *j = cfg_get(r, field);
    if (!j || cJSON_IsFalse(j)) return RLHF_OK;
    return rlhf_errorf(r->err, RLHF_ERR_UNSUPPORTED, "%s: field \"%s\" is set, which this engine does not implement", r->path, field);
}

static int cfg_parse_gpt2(const cfg_reader *r, model_config *c) {
    int rc;
    static const char *const gelu[] = {"gelu_new", "gelu_pytorch_tanh", "gelu_fast", NULL};
    if ((rc = cfg_int(r, "n_layer", &c->n_layers, 1, 1024, 1))) return rc;
    if ((rc = cfg_int(r, "n_embd", &c->dim, 1, 65536, 1))) return rc;
    if ((rc = cfg_int(r, "n_head", &c->n_heads, 1, 65536, 1))) return rc;
    if ((rc = cfg_int(r, "vocab_size", &c->vocab_size, 1, 1 << 24, 1))) return rc;
    c->context = 0;
    if ((rc = cfg_int(r, "n_ctx", &c->context, 1, 1 << 20, 0))) return rc;
    if ((rc = cfg_int(r, "n_positions", &c->context, 1, 1 << 20, c->context == 0))) return rc;
    c->ffn_dim = 4 * c->dim;
    if ((rc = cfg_int(r, "n_inner", &c->ffn_dim, 1, 1 << 20, 0))) return rc;
    if ((rc = cfg_float(r, "layer_norm_epsilon", &c->norm_eps))) return rc;
    if ((rc = cfg_bool(r, "tie_word_embeddings", &c->tied_embeddings))) return rc;
    if ((rc = cfg_enum(r, "activation_function", gelu, NULL))) return rc;
    if ((rc = cfg_refuse_true(r, "scale_attn_by_inverse_layer_idx"))) return rc;
    const cJSON *saw = cfg_get(r, "scale_attn_weights");
    if (saw && !cJSON_IsTrue(saw))
        return rlhf_errorf(r->err, RLHF_ERR_UNSUPPORTED, "%s: field \"scale_attn_weights\" must be true (unscaled attention is not implemented)",
                           r->path);
    c->n_kv_heads = c->n_heads;
    if (c->dim % c->n_heads)
        return rlhf_errorf(r->err, RLHF_ERR_INVALID, "%s: field \"n_embd\" (%d) must be a multiple of \"n_head\" (%d)", r->path, c->dim,
                           c->n_heads);
    return RLHF_OK;
}

static int cfg_parse_llama(const cfg_reader *r, model_config *c) {
    int rc;
    static const char *const silu[] = {"silu", NULL};
    if ((rc = cfg_int(r, "num_hidden_layers", &c->n_layers, 1, 1024, 1))) return rc;
    if ((rc = cfg_int(r, "hidden_size", &c->dim, 1, 65536, 1))) return rc;
    if ((rc = cfg_int(r, "num_attention_heads", &c->n_heads, 1, 65536, 1))) return rc;
    c->n_kv_heads = c->n_heads;
    if ((rc = cfg_int(r, "num_key_value_heads", &c->n_kv_heads, 1, 65536, 0))) return rc;
    if ((rc = cfg_int(r, "intermediate_size", &c->ffn_dim, 1, 1 << 20, 1))) return rc;
    if ((rc = cfg_int(r, "vocab_size", &c->vocab_size, 1, 1 << 24, 1))) return rc;
    c->context = 2048;
    if ((rc = cfg_int(r, "max_position_embeddings", &c->context, 1, 1 << 20, 0))) return rc;
    c->norm_eps = 1e-6f;
    if ((rc = cfg_float(r, "rms_norm_eps", &c->norm_eps))) return rc;
    if ((rc = cfg_float(r, "rope_theta", &c->rope_theta))) return rc;
    c->tied_embeddings = 0;
    if ((rc = cfg_bool(r, "tie_word_embeddings", &c->tied_embeddings))) return rc;
    if ((rc = cfg_enum(r, "hidden_act", silu, NULL))) return rc;
    if ((rc = cfg_refuse_true(r, "rope_scaling"))) return rc;
    if ((rc = cfg_refuse_true(r, "attention_bias"))) return rc;
    if ((rc = cfg_refuse_true(r, "mlp_bias"))) return rc;
    /* our own field: a value we do not know is a broken file, not an unimplemented feature */
    const cJSON *layout = cfg_get(r, "rlhf_rope_layout");
    if (layout && (!cJSON_IsString(layout) || (strcmp(layout->valuestring, "half") && strcmp(layout->valuestring, "interleaved"))))
        return rlhf_errorf(r->err, RLHF_ERR_INVALID, "%s: field \"rlhf_rope_layout\" must be \"half\" or \"interleaved\"", r->path);
    c->rope_layout = layout && strcmp(layout->valuestring, "interleaved") == 0 ? MODEL_ROPE_INTERLEAVED : MODEL_ROPE_HALF;
    if (c->vocab_size > 2) {
        c->bos_id = 1; /* LlamaConfig's defaults */
        c->eos_id = 2;
    }
    if (c->dim % c->n_heads)
        return rlhf_errorf(r->err, RLHF_ERR_INVALID, "%s: field \"hidden_size\" (%d) must be a multiple of \"num_attention_heads\" (%d)",
                           r->path, c->dim, c->n_heads);
    if (c->n_heads % c->n_kv_heads)
        return rlhf_errorf(r->err, RLHF_ERR_INVALID,
                           "%s: field \"num_key_value_heads\" (%d) must divide \"num_attention_heads\" (%d)", r->path, c->n_kv_heads,
                           c->n_heads);
    int head_dim = c->dim / c->n_heads;
    if ((rc = cfg_int(r, "head_dim", &head_dim, 1, 65536, 0))) return rc;
    if (head_dim != c->dim / c->n_heads)
        return rlhf_errorf(r->err, RLHF_ERR_UNSUPPORTED,
                           "%s: field \"head_dim\" (%d) differs from hidden_size / num_attention_heads (%d), which this engine does not implement",
                           r->path, head_dim, c->dim / c->n_heads);
    if (head_dim % 2)
        return rlhf_errorf(r->err, RLHF_ERR_INVALID, "%s: head size %d (\"hidden_size\" / \"num_attention_heads\") must be even for rotary embeddings",
                           r->path, head_dim);
    return RLHF_OK;
}

/* 1 if the first entry of "architectures" is a *ForSequenceClassification model. */
static int cfg_is_classifier(const cJSON *root) {
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *a0 = cJSON_IsArray(arch) ? arch->child : NULL;
    return cJSON_IsString(a0) && strstr(a0->valuestring, "ForSequenceClassification") != NULL;
}

/* Sequence classifiers: num_labels (the field, else the size of id2label, else transformers'
 * default 2) and pad_token_id. A language model's pad_token_id is only kept when it is a usable
 * id (real LM configs carry -1 or ids past the vocabulary, which change nothing for an LM). */
static int cfg_classifier(const cfg_reader *r, model_config *c) {
    const cJSON *pad = cfg_get(r, "pad_token_id");
    if (!cfg_is_classifier(r->root)) {
        if (cJSON_IsNumber(pad) && pad->valuedouble == floor(pad->valuedouble) && pad->valuedouble >= 0 &&
            pad->valuedouble < c->vocab_size)
            c->pad_id = (int32_t)pad->valuedouble;
        return RLHF_OK;
    }
    int rc;
    if (pad) {
        if (!cJSON_IsNumber(pad) || pad->valuedouble != floor(pad->valuedouble) || pad->valuedouble < 0 ||
            pad->valuedouble >= c->vocab_size)
            return rlhf_errorf(r->err, RLHF_ERR_INVALID, "%s: field \"pad_token_id\" must be a token id below vocab_size %d or null",
                               r->path, c->vocab_size);
        c->pad_id = (int32_t)pad->valuedouble;
    }
    const cJSON *id2label = cfg_get(r, "id2label");
    if (id2label && !cJSON_IsObject(id2label))
        return rlhf_errorf(r->err, RLHF_ERR_INVALID, "%s: field \"id2label\" must be an object", r->path);
    int n_map = id2label ? cJSON_GetArraySize(id2label) : 0;
    c->num_labels = n_map > 0 ? n_map : 2;
    if ((rc = cfg_int(r, "num_labels", &c->num_labels, 1, 65536, 0))) return rc;
    if (n_map > 0 && n_map != c->num_labels)
        return rlhf_errorf(r->err, RLHF_ERR_INVALID, "%s: field \"num_labels\" is %d but \"id2label\" has %d entries", r->path,
                           c->num_labels, n_map);
    for (int i = 0; i < n_map; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", i);
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(id2label, key)))
            return rlhf_errorf(r->err, RLHF_ERR_INVALID, "%s: field \"id2label\" has no string for label \"%s\" (ids must be 0..%d)",
                               r->path, key, n_map - 1);
    }
    return RLHF_OK;
}

int checkpoint_config_parse(model_config *cfg, const char *json, size_t len, const char *path, rlhf_error *err) {
    int rc = RLHF_OK;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: not a valid JSON object", path);
        goto done;
    }
    cfg_reader r = {root, path, err};
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    const char *type = cJSON_IsString(mt) ? mt->valuestring : NULL;
    if (mt && !type) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "%s: field \"model_type\" must be a string", path);
        goto done;
    }
    if (!type) {
        /* older files name only the architecture */
        const cJSON *arch = cJSON_GetObjectItemCaseSensitive(root, "architectures");
        const cJSON *a0 = cJSON_IsArray(arch) ? arch->child : NULL;
        if (cJSON_IsString(a0) && strncmp(a0->valuestring, "GPT2", 4) == 0) type = "gpt2";
        else if (cJSON_IsString(a0) && strncmp(a0->valuestring, "Llama", 5) == 0) type = "llama";
    }
    if (!type) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "%s: required field \"model_type\" is missing", path);
        goto done;
    }
    if (strcmp(type, "gpt2") == 0) {
        model_config_defaults(cfg, MODEL_FAMILY_GPT2);
        rc = cfg_parse_gpt2(&r, cfg);
    } else if (strcmp(type, "llama") == 0) {
        model_config_defaults(cfg, MODEL_FAMILY_LLAMA);
        rc = cfg_parse_llama(&r, cfg);
    } else {
        rc = rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "%s: field \"model_type\" is \"%s\"; supported model types are gpt2 and llama", path,
                         type);
    }
    if (rc) goto done;
    if ((rc = cfg_token(&r, "bos_token_id", &cfg->bos_id))) goto done;
    if ((rc = cfg_token(&r, "eos_token_id", &cfg->eos_id))) goto done;
    if (cfg->bos_id >= cfg->vocab_size) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "%s: field \"bos_token_id\" (%d) is outside the vocabulary (vocab_size %d)", path,
                         (int)cfg->bos_id, cfg->vocab_size);
        goto done;
    }
    if (cfg->eos_id >= cfg->vocab_size) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "%s: field \"eos_token_id\" (%d) is outside the vocabulary (vocab_size %d)", path,
                         (int)cfg->eos_id, cfg->vocab_size);
        goto done;
    }
    if ((rc = cfg_classifier(&r, cfg))) goto done;
    /* the per-field checks above should catch everything; this is the model's own backstop */
    if ((rc = model_config_validate(cfg, err))) rlhf_error_prefix(err, "%s: ", path);
done:
    cJSON_Delete(root);
    return rc;
}

int checkpoint_config_read(model_config *cfg, const char *path, rlhf_error *err) {
    char *text = NULL;
    size_t len = 0;
    int rc = file_read_all(path, &text, &len, err);
    if (rc == RLHF_ERR_IO && !file_exists(path)) rc = rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "%s: no such file", path);
    if (rc) return rc;
    rc = checkpoint_config_parse(cfg, text, len, path, err);
    free(text);
    return rc;
}

static void sb_token(strbuf *b, const char *field, int32_t id) {
    if (id < 0) sb_printf(b, "  \"%s\": null,\n", field);
    else sb_printf(b, "  \"%s\": %d,\n", field, (int)id);
}

/* A JSON string literal (quotes included) for s, or NULL when out of memory; free() it. */
static char *json_quote(const char *s) {
    cJSON *j = cJSON_CreateString(s);
    char *q = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    return q;
}

/* Classifier fields: pad_token_id, num_labels, id2label, label2id (labels NULL: LABEL_i as
 * transformers names them). */
static void sb_labels(strbuf *b, const model_config *c, const char *const *labels) {
    sb_printf(b, "  \"num_labels\": %d,\n", c->num_labels);
    if (c->num_labels > 1) sb_printf(b, "  \"problem_type\": \"single_label_classification\",\n");
    for (int pass = 0; pass < 2; pass++) {
        sb_printf(b, pass ? "  \"label2id\": {" : "  \"id2label\": {");
        for (int i = 0; i < c->num_labels; i++) {
            char def[32];
            snprintf(def, sizeof def, "LABEL_%d", i);
            char *q = json_quote(labels && labels[i] ? labels[i] : def);
            if (!q) {
                b->oom = 1;
                return;
            }
            if (pass) sb_printf(b, "%s%s: %d", i ? ", " : "", q, i);
            else sb_printf(b, "%s\"%d\": %s", i ? ", " : "", i, q);
            free(q);
        }
        sb_printf(b, "},\n");
    }
}

int checkpoint_config_format(const model_config *c, char **out, rlhf_error *err) {
    return checkpoint_config_format_labeled(c, NULL, out, err);
}

int checkpoint_config_format_labeled(const model_config *c, const char *const *labels, char **out, rlhf_error *err) {
    *out = NULL;
    int rc = model_config_validate(c, err);
    if (rc) return rc;
    strbuf b = {0};
    char eps[32], theta[32];
    format_float(eps, sizeof eps, c->norm_eps);
    format_float(theta, sizeof theta, c->rope_theta);
    sb_printf(&b, "{\n");
    if (c->family == MODEL_FAMILY_GPT2) {
        sb_printf(&b, "  \"architectures\": [\"%s\"],\n  \"model_type\": \"gpt2\",\n",
                  c->num_labels > 0 ? "GPT2ForSequenceClassification" : "GPT2LMHeadModel");
        sb_printf(&b, "  \"vocab_size\": %d,\n  \"n_positions\": %d,\n  \"n_ctx\": %d,\n", c->vocab_size, c->context, c->context);
        sb_printf(&b, "  \"n_embd\": %d,\n  \"n_layer\": %d,\n  \"n_head\": %d,\n", c->dim, c->n_layers, c->n_heads);
        if (c->ffn_dim == 4 * c->dim) sb_printf(&b, "  \"n_inner\": null,\n");
        else sb_printf(&b, "  \"n_inner\": %d,\n", c->ffn_dim);
        sb_printf(&b, "  \"activation_function\": \"gelu_new\",\n  \"layer_norm_epsilon\": %s,\n", eps);
    } else {
        sb_printf(&b, "  \"architectures\": [\"%s\"],\n  \"model_type\": \"llama\",\n",
                  c->num_labels > 0 ? "LlamaForSequenceClassification" : "LlamaForCausalLM");
        sb_printf(&b, "  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n", c->vocab_size, c->dim, c->ffn_dim);
        sb_printf(&b, "  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n", c->n_layers,
                  c->n_heads, c->n_kv_heads);
        sb_printf(&b, "  \"max_position_embeddings\": %d,\n  \"rms_norm_eps\": %s,\n  \"rope_theta\": %s,\n", c->context, eps, theta);
        sb_printf(&b, "  \"rope_scaling\": null,\n  \"hidden_act\": \"silu\",\n  \"attention_bias\": false,\n  \"mlp_bias\": false,\n");
        if (c->rope_layout == MODEL_ROPE_INTERLEAVED) sb_printf(&b, "  \"rlhf_rope_layout\": \"interleaved\",\n");
    }
    sb_printf(&b, "  \"tie_word_embeddings\": %s,\n", c->tied_embeddings ? "true" : "false");
    sb_token(&b, "bos_token_id", c->bos_id);
    sb_token(&b, "eos_token_id", c->eos_id);
    if (c->num_labels > 0 || c->pad_id >= 0) sb_token(&b, "pad_token_id", c->pad_id);
    if (c->num_labels > 0) sb_labels(&b, c, labels);
    sb_printf(&b, "  \"torch_dtype\": \"float32\"\n}\n");
    if (b.oom) {
        free(b.s);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory formatting config.json");
    }
    *out = b.s;
    return RLHF_OK;
}

/* ---- loading ---- */

typedef struct {
    char *dir;
    char *config_path;
    safetensors_file **files;  /* (n_files) */
    int n_files;
    char *index_path;          /* set when sharded */
    cJSON *index;              /* the parsed index (sharded only) */
    unsigned char *loaded;     /* (n_tensors of the model) */
} load_state;

static void load_state_free(load_state *s) {
    for (int i = 0; i < s->n_files; i++) safetensors_close(&s->files[i]);
    free(s->files);
    free(s->dir);
    free(s->config_path);
    free(s->index_path);
    cJSON_Delete(s->index);
    free(s->loaded);
    memset(s, 0, sizeof *s);
}

/* Buffers that HF checkpoints carry but that are not parameters. */
static int is_ignored_buffer(const char *name) {
    static const char *const suffixes[] = {".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t k = strlen(suffixes[i]);
        if (n >= k && strcmp(name + n - k, suffixes[i]) == 0) return 1;
    }
    return 0;
}

/* The model tensor a file tensor name refers to, or -1. GPT2Model files (the public `gpt2`
 * repository) name tensors without the "transformer." prefix. */
static int resolve_name(const model *m, const char *name) {
    const model_tensor *t = model_find_tensor(m, name);
    if (!t && m->config.family == MODEL_FAMILY_GPT2 && strncmp(name, "transformer.", 12) != 0 && strcmp(name, "lm_head.weight") != 0) {
        char full[MODEL_TENSOR_NAME_MAX + 16];
        snprintf(full, sizeof full, "transformer.%s", name);
        t = model_find_tensor(m, full);
    }
    return t ? (int)(t - m->tensors) : -1;
}

static void format_shape(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && k < n; d++) k += (size_t)snprintf(buf + k, n - k, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

static int shard_name_ok(const char *s) {
    return *s && *s != '.' && !strchr(s, '/');
}

/* Opens the shard files named by model.safetensors.index.json, each once, in order. */
static int open_sharded(load_state *s, rlhf_error *err) {
    char *text = NULL;
    size_t len = 0;
    int rc = file_read_all(s->index_path, &text, &len, err);
    if (rc) return rc;
    s->index = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *wm = s->index ? cJSON_GetObjectItemCaseSensitive(s->index, "weight_map") : NULL;
    if (!cJSON_IsObject(wm))
        return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: not valid JSON with a \"weight_map\" object", s->index_path);
    int n = cJSON_GetArraySize(wm);
    s->files = calloc((size_t)n + 1, sizeof *s->files);
    if (!s->files) return rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", s->index_path);
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !shard_name_ok(e->valuestring))
            return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: tensor \"%s\" maps to an invalid shard file name", s->index_path, e->string);
        int seen = 0;
        for (const cJSON *p = wm->child; p != e && !seen; p = p->next) seen = strcmp(p->valuestring, e->valuestring) == 0;
        if (seen) continue;
        char *p = path_join(s->dir, e->valuestring);
        if (!p) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
        rc = safetensors_open(&s->files[s->n_files], p, err);
        free(p);
        if (rc) return rlhf_error_prefix(err, "%s lists a shard that cannot be read: ", s->index_path);
        s->n_files++;
    }
    return RLHF_OK;
}

static int check_finite(const char *file, const char *name, const float *p, size_t n, rlhf_error *err) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) bad |= !isfinite(p[i]);
    if (!bad) return RLHF_OK;
    size_t i = 0;
    while (isfinite(p[i])) i++;
    return rlhf_errorf(err, RLHF_ERR_NUMERIC, "%s: tensor \"%s\" has a non-finite value (%s) at element %zu", file, name,
                       isnan(p[i]) ? "nan" : "inf", i);
}

static int load_file_tensors(model *m, load_state *s, const safetensors_file *f, rlhf_error *err) {
    const model_config *c = &m->config;
    char got[128], want[128];
    for (int i = 0; i < f->n_tensors; i++) {
        const safetensors_tensor *st = &f->tensors[i];
        int idx = resolve_name(m, st->name);
        if (idx < 0) {
            if (is_ignored_buffer(st->name)) continue;
            if (c->tied_embeddings && c->num_labels == 0 && strcmp(st->name, "lm_head.weight") == 0) {
                /* transformers saves the tied head in some versions; it is the embedding */
                if (st->ndim == 2 && st->shape[0] == c->vocab_size && st->shape[1] == c->dim) continue;
                format_shape(got, sizeof got, st->ndim, st->shape);
                return rlhf_errorf(err, RLHF_ERR_SHAPE,
                                   "%s: tensor \"lm_head.weight\" has shape %s, but %s ties it to the embedding (%d, %d)", f->path, got,
                                   s->config_path, c->vocab_size, c->dim);
            }
            return rlhf_errorf(err, RLHF_ERR_SHAPE,
                               "%s: tensor \"%s\" is not part of the %s model %s describes (%d layers, dim %d, %s head): config and "
                               "weights disagree",
                               f->path, st->name, model_family_name(c->family), s->config_path, c->n_layers, c->dim,
                               c->num_labels > 0 ? "score" : c->tied_embeddings ? "tied" : "untied");
        }
        const model_tensor *t = &m->tensors[idx];
        if (s->loaded[idx])
            return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: tensor \"%s\" is stored more than once (as \"%s\" here)", f->path, t->name,
                               st->name);
        int same = st->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = st->shape[d] == t->shape[d];
        if (!same) {
            format_shape(got, sizeof got, st->ndim, st->shape);
            format_shape(want, sizeof want, t->ndim, t->shape);
            return rlhf_errorf(err, RLHF_ERR_SHAPE, "%s: tensor \"%s\" has shape %s, but %s implies %s: config and weights disagree",
                               f->path, st->name, got, s->config_path, want);
        }
        float *dst = m->params + t->offset;
        int rc = safetensors_read_f32(f, st, dst, t->numel, err);
        if (rc) return rc;
        if ((rc = check_finite(f->path, st->name, dst, t->numel, err))) return rc;
        s->loaded[idx] = 1;
    }
    return RLHF_OK;
}

int checkpoint_load(model *m, const char *dir, rlhf_error *err) {
    memset(m, 0, sizeof *m);
    load_state s = {0};
    model_config cfg;
    char *weights = NULL;
    int rc = RLHF_OK;
    if (!file_is_dir(dir)) {
        rc = access(dir, F_OK) == 0 ? rlhf_errorf(err, RLHF_ERR_INVALID, "%s: not a model directory", dir)
                                    : rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "%s: no such model directory", dir);
        goto fail;
    }
    s.dir = malloc(strlen(dir) + 1);
    if (s.dir) strcpy(s.dir, dir);
    s.config_path = path_join(dir, CKPT_CONFIG);
    weights = path_join(dir, CKPT_WEIGHTS);
    s.index_path = path_join(dir, CKPT_INDEX);
    if (!s.dir || !s.config_path || !weights || !s.index_path) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = checkpoint_config_read(&cfg, s.config_path, err))) goto fail;
    if ((rc = model_init(m, &cfg, err))) {
        rlhf_error_prefix(err, "%s: ", s.config_path);
        goto fail;
    }
    if (!(s.loaded = calloc((size_t)m->n_tensors, 1))) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (file_exists(weights)) {
        free(s.index_path);
        s.index_path = NULL;
        if (!(s.files = calloc(1, sizeof *s.files))) {
            rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
            goto fail;
        }
        if ((rc = safetensors_open(&s.files[0], weights, err))) goto fail;
        s.n_files = 1;
    } else if (file_exists(s.index_path)) {
        if ((rc = open_sharded(&s, err))) goto fail;
    } else {
        char *bin = path_join(dir, "pytorch_model.bin");
        int has_bin = bin && file_exists(bin);
        free(bin);
        rc = has_bin ? rlhf_errorf(err, RLHF_ERR_UNSUPPORTED,
                                   "%s: only pytorch_model.bin is present; pickled PyTorch weights are not read (convert to "
                                   "model.safetensors)",
                                   dir)
                     : rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "%s: missing (and no %s either)", weights, CKPT_INDEX);
        goto fail;
    }
    for (int i = 0; i < s.n_files; i++)
        if ((rc = load_file_tensors(m, &s, s.files[i], err))) goto fail;
    for (int i = 0; i < m->n_tensors; i++) {
        if (s.loaded[i]) continue;
        const char *name = m->tensors[i].name;
        if (s.index) {
            const cJSON *wm = cJSON_GetObjectItemCaseSensitive(s.index, "weight_map");
            const cJSON *where = cJSON_GetObjectItemCaseSensitive(wm, name);
            if (cJSON_IsString(where))
                rc = rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "%s/%s: tensor \"%s\" is missing (%s lists it there)", dir, where->valuestring,
                                 name, s.index_path);
            else
                rc = rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "%s: tensor \"%s\" is missing (%s expects it)", s.index_path, name,
                                 s.config_path);
        } else {
            rc = rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "%s: tensor \"%s\" is missing (%s expects it)", weights, name, s.config_path);
        }
        goto fail;
    }
    free(weights);
    load_state_free(&s);
    return RLHF_OK;
fail:
    free(weights);
    load_state_free(&s);
    model_free(m);
    return rc;
}

int checkpoint_load_any(model *m, const char *path, rlhf_error *err) {
    if (file_is_dir(path)) return checkpoint_load(m, path, err);
    if (file_exists(path)) return llama2c_load(m, path, MODEL_ROPE_HALF, err);
    memset(m, 0, sizeof *m);
    return rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "%s: no such model directory or file", path);
}

/* ---- saving ---- */

int checkpoint_save(const model *m, const char *dir, rlhf_error *err) { return checkpoint_save_labeled(m, dir, NULL, err); }

int checkpoint_save_labeled(const model *m, const char *dir, const char *const *labels, rlhf_error *err) {
    file_atomic fw = {0}, fc = {0};
    safetensors_entry *entries = NULL;
    char *config = NULL, *weights = NULL, *config_path = NULL;
    int rc = RLHF_OK;
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        if ((rc = check_finite(dir, t->name, m->params + t->offset, t->numel, err))) {
            rlhf_error_prefix(err, "refusing to save: ");
            goto fail;
        }
    }
    if ((rc = checkpoint_config_format_labeled(&m->config, labels, &config, err))) goto fail;
    if ((rc = file_mkdir_p(dir, err))) goto fail;
    weights = path_join(dir, CKPT_WEIGHTS);
    config_path = path_join(dir, CKPT_CONFIG);
    entries = calloc((size_t)m->n_tensors + 1, sizeof *entries);
    if (!weights || !config_path || !entries) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        entries[i].name = t->name;
        entries[i].dtype = SAFETENSORS_DTYPE_F32;
        entries[i].ndim = t->ndim;
        entries[i].shape[0] = t->shape[0];
        entries[i].shape[1] = t->shape[1];
        entries[i].data = m->params + t->offset;
    }
    /* Stage both files completely (written, flushed, fsync'd) before renaming either, so the
     * only window in which a crash mixes old and new is between two renames. */
    if ((rc = file_atomic_open(&fw, weights, err))) goto fail;
    if ((rc = safetensors_write_stream(fw.fp, weights, entries, m->n_tensors, err))) goto fail;
    if (fflush(fw.fp) != 0 || fsync(fileno(fw.fp)) != 0) {
        rc = rlhf_errorf(err, RLHF_ERR_IO, "%s: write failed: %s", weights, strerror(errno));
        goto fail;
    }
    if ((rc = file_atomic_open(&fc, config_path, err))) goto fail;
    size_t clen = strlen(config);
    if (fwrite(config, 1, clen, fc.fp) != clen || fflush(fc.fp) != 0 || fsync(fileno(fc.fp)) != 0) {
        rc = rlhf_errorf(err, RLHF_ERR_IO, "%s: write failed: %s", config_path, strerror(errno));
        goto fail;
    }
    if ((rc = file_atomic_commit(&fw, err))) goto fail;
    if ((rc = file_atomic_commit(&fc, err))) goto fail;
    free(entries);
    free(config);
    free(weights);
    free(config_path);
    return RLHF_OK;
fail:
    file_atomic_abort(&fw);
    file_atomic_abort(&fc);
    free(entries);
    free(config);
    free(weights);
    free(config_path);
    return rc;
}

/* ---- classifier labels ---- */

void checkpoint_labels_free(char **labels, int n) {
    for (int i = 0; labels && i < n; i++) free(labels[i]);
    free(labels);
}

int checkpoint_labels_read(const char *dir, const model_config *cfg, char ***labels, rlhf_error *err) {
    *labels = NULL;
    const int K = cfg->num_labels;
    if (K <= 0) return rlhf_errorf(err, RLHF_ERR_INVALID, "%s: not a sequence classifier (no labels)", dir);
    char *path = path_join(dir, CKPT_CONFIG), *text = NULL;
    size_t len = 0;
    int rc = path ? file_read_all(path, &text, &len, err) : rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    cJSON *root = rc ? NULL : cJSON_ParseWithLength(text, len);
    char **out = rc ? NULL : calloc((size_t)K, sizeof *out);
    if (!rc && (!root || !out)) rc = rlhf_errorf(err, root ? RLHF_ERR_NOMEM : RLHF_ERR_FORMAT, "%s: cannot read id2label", path);
    const cJSON *map = root ? cJSON_GetObjectItemCaseSensitive(root, "id2label") : NULL;
    for (int i = 0; !rc && i < K; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", i);
        const cJSON *v = cJSON_IsObject(map) ? cJSON_GetObjectItemCaseSensitive(map, key) : NULL;
        char def[32];
        snprintf(def, sizeof def, "LABEL_%d", i);
        out[i] = strdup(cJSON_IsString(v) ? v->valuestring : def);
        if (!out[i]) rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    }
    cJSON_Delete(root);
    free(text);
    free(path);
    if (rc) {
        checkpoint_labels_free(out, K);
        return rc;
    }
    *labels = out;
    return RLHF_OK;
}
