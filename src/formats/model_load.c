/* model_load.c — recognise a model path's format and delegate to its module; read the decoding
 * defaults and chat template that Hugging Face directories carry beside the weights. */
#include "src/formats/model_load.h"

#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "src/formats/checkpoint.h"
#include "src/core/fileio.h"
#include "src/formats/gguf.h"
#include "src/formats/llama2c.h"
#include "src/model/lora.h"

const char *model_format_name(model_format f) {
    switch (f) {
    case MODEL_FORMAT_HF_DIR: return "hf";
    case MODEL_FORMAT_LLAMA2C: return "llama2c";
    case MODEL_FORMAT_GGUF: return "gguf";
    }
    return "unknown";
}

void model_bundle_free(model_bundle *b) {
    checkpoint_labels_free(b->labels, b->m.config.num_labels);
    model_free(&b->m);
    tok_close(&b->tok);
    free(b->chat_template);
    free(b->bos_token);
    free(b->eos_token);
    memset(b, 0, sizeof *b);
}

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static char *dup_str(const char *s) { return s ? strdup(s) : NULL; }

/* eos_token_id: an int or a list of ints */
static void read_ids(const cJSON *v, int32_t *ids, int *n, int max) {
    *n = 0;
    if (cJSON_IsNumber(v)) {
        ids[(*n)++] = (int32_t)v->valuedouble;
    } else if (cJSON_IsArray(v)) {
        const cJSON *x;
        cJSON_ArrayForEach(x, v) if (cJSON_IsNumber(x) && *n < max) ids[(*n)++] = (int32_t)x->valuedouble;
    }
}

int model_load_parse_generation_config(model_gen_defaults *d, const char *json, const char *path, rlhf_error *err) {
    memset(d, 0, sizeof *d);
    cJSON *root = cJSON_Parse(json);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: not a JSON object", path);
    }
    const cJSON *v;
    if (cJSON_IsNumber(v = cJSON_GetObjectItem(root, "temperature"))) d->has_temperature = 1, d->temperature = (float)v->valuedouble;
    if (cJSON_IsNumber(v = cJSON_GetObjectItem(root, "top_k"))) d->has_top_k = 1, d->top_k = v->valueint;
    if (cJSON_IsNumber(v = cJSON_GetObjectItem(root, "top_p"))) d->has_top_p = 1, d->top_p = (float)v->valuedouble;
    if (cJSON_IsNumber(v = cJSON_GetObjectItem(root, "repetition_penalty")))
        d->has_repetition_penalty = 1, d->repetition_penalty = (float)v->valuedouble;
    if (cJSON_IsBool(v = cJSON_GetObjectItem(root, "do_sample"))) d->has_do_sample = 1, d->do_sample = cJSON_IsTrue(v);
    if (cJSON_IsNumber(v = cJSON_GetObjectItem(root, "max_new_tokens")))
        /* clamped: a huge value (INT_MAX from cJSON) would overflow prompt + max_tokens */
        d->has_max_new_tokens = 1, d->max_new_tokens = v->valuedouble > (1 << 20) ? (1 << 20) : v->valueint;
    read_ids(cJSON_GetObjectItem(root, "eos_token_id"), d->eos_ids, &d->n_eos, MODEL_LOAD_MAX_EOS);
    cJSON_Delete(root);
    return RLHF_OK;
}

/* A special token in tokenizer_config.json: "text" or {"content": "text", ...}. */
static char *token_text(const cJSON *v) {
    if (cJSON_IsString(v)) return strdup(v->valuestring);
    if (cJSON_IsObject(v)) {
        const cJSON *c = cJSON_GetObjectItem(v, "content");
        if (cJSON_IsString(c)) return strdup(c->valuestring);
    }
    return NULL;
}

int model_load_parse_tokenizer_config(model_bundle *b, const char *json, const char *path, rlhf_error *err) {
    cJSON *root = cJSON_Parse(json);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: not a JSON object", path);
    }
    const cJSON *t = cJSON_GetObjectItem(root, "chat_template");
    const char *tmpl = NULL;
    if (cJSON_IsString(t)) {
        tmpl = t->valuestring;
    } else if (cJSON_IsArray(t)) {
        /* a list of named templates: take "default" (else the first) */
        const cJSON *x;
        cJSON_ArrayForEach(x, t) {
            const cJSON *name = cJSON_GetObjectItem(x, "name"), *src = cJSON_GetObjectItem(x, "template");
            if (!cJSON_IsString(src)) continue;
            if (!tmpl || (cJSON_IsString(name) && strcmp(name->valuestring, "default") == 0)) tmpl = src->valuestring;
        }
    }
    if (tmpl) {
        free(b->chat_template);
        b->chat_template = strdup(tmpl);
    }
    char *bos = token_text(cJSON_GetObjectItem(root, "bos_token"));
    char *eos = token_text(cJSON_GetObjectItem(root, "eos_token"));
    if (bos) free(b->bos_token), b->bos_token = bos;
    if (eos) free(b->eos_token), b->eos_token = eos;
    const cJSON *ab = cJSON_GetObjectItem(root, "add_bos_token");
    if (cJSON_IsBool(ab)) b->add_bos = cJSON_IsTrue(ab);
    cJSON_Delete(root);
    return RLHF_OK;
}

/* Reads an optional JSON file beside the weights into the bundle with `parse`. */
static int read_optional(model_bundle *b, const char *dir, const char *name, int which, rlhf_error *err) {
    char *p = path_join(dir, name);
    if (!p) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    int rc = RLHF_OK;
    if (file_exists(p)) {
        char *json = NULL;
        size_t len;
        rc = file_read_all(p, &json, &len, err);
        if (!rc) {
            if (which == 0) rc = model_load_parse_generation_config(&b->defaults, json, p, err);
            else if (which == 1) rc = model_load_parse_tokenizer_config(b, json, p, err);
            else {
                free(b->chat_template);
                b->chat_template = json;
                json = NULL;
            }
        }
        free(json);
    }
    free(p);
    return rc;
}

static int load_hf(model_bundle *b, const char *dir, rlhf_error *err) {
    int rc = checkpoint_load(&b->m, dir, err);
    if (rc) return rc;
    if (b->m.config.num_labels > 0 && (rc = checkpoint_labels_read(dir, &b->m.config, &b->labels, err))) return rc;
    /* Llama-family SentencePiece tokenizers add BOS by default; tokenizer_config may say otherwise */
    b->add_bos = b->m.config.family == MODEL_FAMILY_LLAMA;
    char *tj = path_join(dir, "tokenizer.json"), *ej = path_join(dir, "encoder.json");
    if (!tj || !ej) rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    if (!rc && (file_exists(tj) || file_exists(ej))) rc = tok_load(&b->tok, dir, err);
    free(tj);
    free(ej);
    if (!rc) rc = read_optional(b, dir, "generation_config.json", 0, err);
    if (!rc) rc = read_optional(b, dir, "tokenizer_config.json", 1, err);
    if (!rc && !b->chat_template) rc = read_optional(b, dir, "chat_template.jinja", 2, err);
    if (!rc && b->tok && b->add_bos && tok_bos_id(b->tok) < 0) b->add_bos = 0;
    return rc;
}

static int load_llama2c_file(model_bundle *b, const char *path, rlhf_error *err) {
    int rc = llama2c_load(&b->m, path, MODEL_ROPE_HALF, err);
    if (rc) return rc;
    b->add_bos = 1;
    /* llama2.c keeps its tokenizer.bin beside the checkpoint */
    char *dir = strdup(path);
    if (!dir) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    char *tb = path_join(slash ? dir : ".", "tokenizer.bin");
    if (tb && file_exists(tb)) {
        rc = tok_load(&b->tok, tb, err);
        if (!rc && tok_vocab_size(b->tok) != b->m.config.vocab_size) {
            /* a tokenizer.bin of another model (llama2.c's default 32000-token one beside a
             * custom-vocabulary model): not this model's */
            tok_close(&b->tok);
        }
    }
    free(tb);
    free(dir);
    return rc;
}

static int load_gguf(model_bundle *b, const char *path, rlhf_error *err) {
    gguf_file *f = NULL;
    int rc = gguf_open(&f, path, err);
    if (rc) return rc;
    rc = gguf_load_model(&b->m, f, err);
    if (!rc) {
        rlhf_error terr = {0};
        int trc = gguf_load_tokenizer(&b->tok, f, &terr);
        if (trc && trc != RLHF_ERR_NOT_FOUND) {
            rc = trc;
            *err = terr;
            rlhf_error_prefix(err, "%s: tokenizer: ", path);
        } else if (b->tok && tok_vocab_size(b->tok) > b->m.config.vocab_size) {
            /* (a model may have more rows than tokens, padded; never fewer) */
            rc = rlhf_errorf(err, RLHF_ERR_SHAPE, "%s: the vocabulary has %d tokens but token_embd has %d rows", path,
                             tok_vocab_size(b->tok), b->m.config.vocab_size);
        }
    }
    if (!rc) {
        char *tmpl = NULL;
        if (gguf_get_string(f, "tokenizer.chat_template", &tmpl, NULL) == RLHF_OK) b->chat_template = tmpl;
        int64_t add_bos;
        b->add_bos = b->m.config.family == MODEL_FAMILY_LLAMA;
        if (gguf_get_int(f, "tokenizer.ggml.add_bos_token", &add_bos, NULL) == RLHF_OK) b->add_bos = add_bos != 0;
        if (b->tok) {
            int32_t bos = tok_bos_id(b->tok), eos = tok_eos_id(b->tok);
            if (bos >= 0 && tok_piece(b->tok, bos)) b->bos_token = dup_str(tok_piece(b->tok, bos));
            if (eos >= 0 && tok_piece(b->tok, eos)) b->eos_token = dup_str(tok_piece(b->tok, eos));
            if (b->add_bos && bos < 0) b->add_bos = 0;
        }
    }
    gguf_close(&f);
    return rc;
}

static int is_gguf(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    char magic[4] = {0};
    size_t n = fread(magic, 1, 4, fp);
    fclose(fp);
    return n == 4 && memcmp(magic, "GGUF", 4) == 0;
}

int model_bundle_load(model_bundle *b, const char *path, rlhf_error *err) {
    memset(b, 0, sizeof *b);
    int rc;
    if (file_is_dir(path)) {
        b->format = MODEL_FORMAT_HF_DIR;
        rc = load_hf(b, path, err);
    } else if (!file_exists(path)) {
        rc = rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "%s: no such model directory or file", path);
    } else if (is_gguf(path)) {
        b->format = MODEL_FORMAT_GGUF;
        rc = load_gguf(b, path, err);
    } else {
        b->format = MODEL_FORMAT_LLAMA2C;
        rc = load_llama2c_file(b, path, err);
    }
    if (rc) {
        model_bundle_free(b);
        return rc;
    }
    /* A bundle with a tokenizer but no template texts still names its specials for templates. */
    if (b->tok) {
        int32_t bos = tok_bos_id(b->tok), eos = tok_eos_id(b->tok);
        if (!b->bos_token && bos >= 0 && tok_piece(b->tok, bos)) b->bos_token = dup_str(tok_piece(b->tok, bos));
        if (!b->eos_token && eos >= 0 && tok_piece(b->tok, eos)) b->eos_token = dup_str(tok_piece(b->tok, eos));
    }
    return RLHF_OK;
}

int model_load_weights(model *m, const char *path, rlhf_error *err) {
    memset(m, 0, sizeof *m);
    if (file_is_dir(path)) return checkpoint_load(m, path, err);
    if (!file_exists(path)) return rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "%s: no such model directory or file", path);
    if (!is_gguf(path)) return llama2c_load(m, path, MODEL_ROPE_HALF, err);
    gguf_file *f = NULL;
    int rc = gguf_open(&f, path, err);
    if (!rc) rc = gguf_load_model(m, f, err);
    gguf_close(&f);
    return rc;
}

int model_load_tokenizer(tokenizer **out, const char *path, rlhf_error *err) {
    *out = NULL;
    if (file_is_dir(path) || !is_gguf(path)) return tok_load(out, path, err);
    gguf_file *f = NULL;
    int rc = gguf_open(&f, path, err);
    if (!rc) {
        rc = gguf_load_tokenizer(out, f, err);
        if (rc == RLHF_ERR_NOT_FOUND) rlhf_errorf(err, rc, "%s: this GGUF file carries no vocabulary", path);
    }
    gguf_close(&f);
    return rc;
}

int model_bundle_save(const model_bundle *b, const char *dir, rlhf_error *err) {
    int rc = checkpoint_save_labeled(&b->m, dir, (const char *const *)b->labels, err);
    if (rc) return rc;
    char *tj = path_join(dir, "tokenizer.json"), *tc = path_join(dir, "tokenizer_config.json");
    char *ej = path_join(dir, "encoder.json"), *vb = path_join(dir, "vocab.bpe");
    char *json = NULL;
    cJSON *root = NULL;
    if (!tj || !tc || !ej || !vb) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* tokenizer.json is what model_bundle_load reads first; an older encoder.json pair would be stale */
    unlink(ej);
    unlink(vb);
    if (b->tok) {
        if ((rc = tok_save(b->tok, tj, err))) goto done;
    } else {
        unlink(tj);
    }
    if (!b->chat_template && !b->bos_token && !b->eos_token && !b->tok) {
        unlink(tc);
        goto done;
    }
    root = cJSON_CreateObject();
    if (!root) goto nomem;
    if (b->chat_template && !cJSON_AddStringToObject(root, "chat_template", b->chat_template)) goto nomem;
    if (b->bos_token && !cJSON_AddStringToObject(root, "bos_token", b->bos_token)) goto nomem;
    if (b->eos_token && !cJSON_AddStringToObject(root, "eos_token", b->eos_token)) goto nomem;
    if (!cJSON_AddBoolToObject(root, "add_bos_token", b->add_bos)) goto nomem;
    json = cJSON_Print(root);
    if (!json) goto nomem;
    rc = file_write_atomic(tc, json, strlen(json), err);
    goto done;
nomem:
    rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
done:
    cJSON_Delete(root);
    free(json);
    free(tj);
    free(tc);
    free(ej);
    free(vb);
    return rc;
}

/* The directory part of path ("." when there is none), into buf. */
static void parent_dir(const char *path, char *buf, size_t cap) {
    snprintf(buf, cap, "%s", path);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/') buf[--n] = 0; /* "dir/" is dir */
    char *slash = strrchr(buf, '/');
    if (!slash) snprintf(buf, cap, ".");
    else if (slash == buf) buf[1] = 0;
    else *slash = 0;
}

int model_bundle_load_merged(model_bundle *b, const char *path, rlhf_error *err) {
    memset(b, 0, sizeof *b);
    char cfg[4096], acfg[4096];
    snprintf(cfg, sizeof cfg, "%s/config.json", path);
    snprintf(acfg, sizeof acfg, "%s/adapter_config.json", path);
    if (file_exists(cfg) || !file_exists(acfg)) return model_bundle_load(b, path, err);
    char *text = NULL;
    size_t len = 0;
    int rc = file_read_all(acfg, &text, &len, err);
    if (rc) return rc;
    cJSON *a = cJSON_Parse(text);
    free(text);
    const cJSON *base = cJSON_GetObjectItemCaseSensitive(a, "base_model_name_or_path");
    const cJSON *save = cJSON_GetObjectItemCaseSensitive(a, "modules_to_save");
    char bpath[8192 + 8] = "";
    if (!a)
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: not valid JSON", acfg);
    else if (save && !cJSON_IsNull(save))
        rc = rlhf_errorf(err, RLHF_ERR_INVALID,
                         "%s: a classifier's adapter (modules_to_save), not a language model's: rlhf score and rlhf "
                         "reward eval read it",
                         path);
    else if (!cJSON_IsString(base) || !base->valuestring[0])
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT,
                         "%s: base_model_name_or_path is missing: the base model is unknown (rlhf model merge "
                         "--model BASE --adapter %s)",
                         acfg, path);
    else {
        snprintf(bpath, sizeof bpath, "%s", base->valuestring);
        if (bpath[0] != '/' && !file_exists(bpath)) {
            char dir[4096];
            parent_dir(path, dir, sizeof dir);
            char rel[8192];
            snprintf(rel, sizeof rel, "%s/%s", dir, base->valuestring);
            if (file_exists(rel)) snprintf(bpath, sizeof bpath, "%s", rel);
        }
    }
    cJSON_Delete(a);
    if (rc) return rc;
    if ((rc = model_bundle_load(b, bpath, err))) return rlhf_error_prefix(err, "%s: its base model %s: ", path, bpath);
    return model_bundle_merge_adapter(b, path, err);
}

int model_bundle_merge_adapter(model_bundle *b, const char *adapter, rlhf_error *err) {
    lora lo;
    int rc = lora_load(&lo, &b->m, adapter, NULL, 0, NULL, err);
    if (!rc) rc = lora_merge(&lo, &b->m, err);
    lora_free(&lo);
    if (rc) model_bundle_free(b);
    return rc;
}
