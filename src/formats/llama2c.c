/* llama2c.c — llama2.c legacy checkpoint import.
 *
 * The whole file layout follows from the 7-int header, so the expected size is computed first
 * and compared with the real one: a truncated file is reported with the tensor the file ends
 * inside, an oversized one with the number of extra bytes, before any weight is read. */
#include "src/formats/llama2c.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* One stored array: per layer (L consecutive matrices) or global. hf is a printf pattern of
 * the Hugging Face name (with %d for the layer), NULL for the skipped RoPE tables. */
typedef struct {
    const char *name; /* llama2.c's name */
    const char *hf;
    int per_layer;
    uint64_t rows, cols;
    int permute_heads; /* number of heads whose rows are re-ordered for half-split RoPE; 0 = none */
} l2c_section;

enum { L2C_MAX_SECTIONS = 16 };

static int build_sections(l2c_section *s, const model_config *c, int shared) {
    const uint64_t C = (uint64_t)c->dim, F = (uint64_t)c->ffn_dim, V = (uint64_t)c->vocab_size;
    const uint64_t HS = C / (uint64_t)c->n_heads, QD = (uint64_t)c->n_heads * HS, KVD = (uint64_t)c->n_kv_heads * HS;
    const uint64_t rope = (uint64_t)c->context * HS / 2;
    int n = 0;
    s[n++] = (l2c_section){"token_embedding", "model.embed_tokens.weight", 0, V, C, 0};
    s[n++] = (l2c_section){"rms_att", "model.layers.%d.input_layernorm.weight", 1, C, 1, 0};
    s[n++] = (l2c_section){"wq", "model.layers.%d.self_attn.q_proj.weight", 1, QD, C, c->n_heads};
    s[n++] = (l2c_section){"wk", "model.layers.%d.self_attn.k_proj.weight", 1, KVD, C, c->n_kv_heads};
    s[n++] = (l2c_section){"wv", "model.layers.%d.self_attn.v_proj.weight", 1, KVD, C, 0};
    s[n++] = (l2c_section){"wo", "model.layers.%d.self_attn.o_proj.weight", 1, C, QD, 0};
    s[n++] = (l2c_section){"rms_ffn", "model.layers.%d.post_attention_layernorm.weight", 1, C, 1, 0};
    s[n++] = (l2c_section){"w1", "model.layers.%d.mlp.gate_proj.weight", 1, F, C, 0};
    s[n++] = (l2c_section){"w2", "model.layers.%d.mlp.down_proj.weight", 1, C, F, 0};
    s[n++] = (l2c_section){"w3", "model.layers.%d.mlp.up_proj.weight", 1, F, C, 0};
    s[n++] = (l2c_section){"rms_final", "model.norm.weight", 0, C, 1, 0};
    s[n++] = (l2c_section){"freq_cis_real", NULL, 0, rope, 1, 0};
    s[n++] = (l2c_section){"freq_cis_imag", NULL, 0, rope, 1, 0};
    if (!shared) s[n++] = (l2c_section){"wcls", "lm_head.weight", 0, V, C, 0};
    return n;
}

/* "wq" of layer 3 (model.layers.3.self_attn.q_proj.weight), for messages. */
static void section_label(char *buf, size_t n, const l2c_section *s, int layer) {
    char hf[MODEL_TENSOR_NAME_MAX] = "skipped: RoPE is computed";
    if (s->hf) snprintf(hf, sizeof hf, s->hf, layer);
    if (s->per_layer) snprintf(buf, n, "\"%s\" of layer %d (%s)", s->name, layer, hf);
    else snprintf(buf, n, "\"%s\" (%s)", s->name, hf);
}

/* Re-orders the rows of one projection from interleaved pairs to half-split: within each head
 * of hs rows, row 2i goes to i and row 2i+1 to i + hs/2 (transformers' convert_llama_weights_to_hf
 * permute). Applying it to both q and k permutes the dimensions of every q.k dot product the
 * same way, so attention scores are unchanged while the rotation pairs become (i, i + hs/2). */
static void permute_rows(float *dst, const float *src, int heads, size_t hs, size_t cols) {
    for (int h = 0; h < heads; h++)
        for (size_t i = 0; i < hs / 2; i++)
            for (size_t t = 0; t < 2; t++)
                memcpy(dst + ((size_t)h * hs + t * (hs / 2) + i) * cols, src + ((size_t)h * hs + 2 * i + t) * cols, cols * sizeof(float));
}

int llama2c_load(model *m, const char *path, model_rope_layout layout, rlhf_error *err) {
    memset(m, 0, sizeof *m);
    FILE *fp = NULL;
    float *tmp = NULL;
    int rc = RLHF_OK;
    fp = fopen(path, "rb");
    if (!fp) {
        int e = errno;
        rc = rlhf_errorf(err, e == ENOENT ? RLHF_ERR_NOT_FOUND : RLHF_ERR_IO, "%s: cannot open: %s", path, strerror(e));
        goto fail;
    }
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = rlhf_errorf(err, RLHF_ERR_IO, "%s: not a regular file", path);
        goto fail;
    }
    const uint64_t size = (uint64_t)st.st_size;
    unsigned char hb[28];
    if (size < sizeof hb || fread(hb, 1, sizeof hb, fp) != sizeof hb) {
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: %llu bytes is too small for the 28-byte llama2.c header", path, (unsigned long long)size);
        goto fail;
    }
    if (memcmp(hb, "GGUF", 4) == 0) {
        rc = rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "%s: is a GGUF file, not a llama2.c checkpoint", path);
        goto fail;
    }
    if (memcmp(hb, "24ka", 4) == 0) { /* 0x616b3432 little-endian: llama2.c export.py version 1/2 */
        rc = rlhf_errorf(err, RLHF_ERR_UNSUPPORTED,
                         "%s: is a llama2.c version-1/2 export (magic \"ak42\"); only the legacy (version 0) format is read", path);
        goto fail;
    }
    int32_t h[7];
    for (int i = 0; i < 7; i++)
        h[i] = (int32_t)((uint32_t)hb[4 * i] | (uint32_t)hb[4 * i + 1] << 8 | (uint32_t)hb[4 * i + 2] << 16 | (uint32_t)hb[4 * i + 3] << 24);
    static const char *const fields[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
    for (int i = 0; i < 7; i++) {
        int32_t v = i == 5 && h[i] < 0 && h[i] != INT32_MIN ? -h[i] : h[i];
        if (v <= 0) {
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: header field %s = %d is not a positive size: not a llama2.c checkpoint?", path,
                             fields[i], (int)h[i]);
            goto fail;
        }
    }
    model_config cfg;
    model_config_defaults(&cfg, MODEL_FAMILY_LLAMA);
    cfg.dim = h[0];
    cfg.ffn_dim = h[1];
    cfg.n_layers = h[2];
    cfg.n_heads = h[3];
    cfg.n_kv_heads = h[4];
    cfg.vocab_size = h[5] < 0 ? -h[5] : h[5];
    cfg.context = h[6];
    cfg.tied_embeddings = h[5] > 0;
    cfg.norm_eps = 1e-5f;      /* run.c's rmsnorm */
    cfg.rope_theta = 10000.0f; /* run.c's RoPE */
    cfg.rope_layout = layout;
    if (cfg.vocab_size > 2) {
        cfg.bos_id = 1; /* llama2.c's tokenizers: BOS 1, EOS 2 */
        cfg.eos_id = 2;
    }
    rlhf_error why = {0};
    if (model_config_validate(&cfg, &why)) {
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: header describes an impossible model (%s): not a llama2.c checkpoint?", path, why.msg);
        goto fail;
    }

    l2c_section sec[L2C_MAX_SECTIONS];
    int n_sec = build_sections(sec, &cfg, cfg.tied_embeddings);
    uint64_t expect = sizeof hb;
    for (int i = 0; i < n_sec; i++) expect += (sec[i].per_layer ? (uint64_t)cfg.n_layers : 1) * sec[i].rows * sec[i].cols * 4;
    if (size < expect) {
        /* name the array the file ends inside */
        uint64_t at = sizeof hb;
        for (int i = 0; i < n_sec; i++) {
            uint64_t one = sec[i].rows * sec[i].cols * 4;
            for (int l = 0; l < (sec[i].per_layer ? cfg.n_layers : 1); l++) {
                if (size < at + one) {
                    char label[2 * MODEL_TENSOR_NAME_MAX];
                    section_label(label, sizeof label, &sec[i], l);
                    rc = rlhf_errorf(err, RLHF_ERR_FORMAT,
                                     "%s: truncated: the file ends inside tensor %s at byte %llu, but its header implies %llu bytes", path,
                                     label, (unsigned long long)size, (unsigned long long)expect);
                    goto fail;
                }
                at += one;
            }
        }
    }
    if (size > expect) {
        uint64_t extra = size - expect, cls = (uint64_t)cfg.vocab_size * (uint64_t)cfg.dim * 4;
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: %llu bytes, but its header implies %llu: %llu extra bytes after the last tensor%s", path,
                         (unsigned long long)size, (unsigned long long)expect, (unsigned long long)extra,
                         extra == cls ? " (exactly an output classifier: the header's vocab_size should be negative)"
                                      : " (wrong header or not a llama2.c checkpoint?)");
        goto fail;
    }

    if ((rc = model_init(m, &cfg, err))) goto fail;
    size_t tmp_floats = 0;
    for (int i = 0; i < n_sec; i++)
        if (sec[i].permute_heads && sec[i].rows * sec[i].cols > tmp_floats) tmp_floats = (size_t)(sec[i].rows * sec[i].cols);
    if (tmp_floats && !(tmp = malloc(tmp_floats * sizeof(float)))) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    const size_t HS = (size_t)(cfg.dim / cfg.n_heads);
    for (int i = 0; i < n_sec; i++) {
        const l2c_section *s = &sec[i];
        const size_t numel = (size_t)(s->rows * s->cols);
        for (int l = 0; l < (s->per_layer ? cfg.n_layers : 1); l++) {
            if (!s->hf) {
                if (fseek(fp, (long)(numel * 4), SEEK_CUR) != 0) {
                    rc = rlhf_errorf(err, RLHF_ERR_IO, "%s: seek failed: %s", path, strerror(errno));
                    goto fail;
                }
                continue;
            }
            char hf[MODEL_TENSOR_NAME_MAX];
            snprintf(hf, sizeof hf, s->hf, l);
            const model_tensor *t = model_find_tensor(m, hf);
            if (!t || t->numel != numel) {
                rc = rlhf_errorf(err, RLHF_ERR_SHAPE, "%s: internal layout mismatch for tensor \"%s\" (%s)", path, s->name, hf);
                goto fail;
            }
            float *dst = m->params + t->offset;
            int permute = s->permute_heads && layout == MODEL_ROPE_HALF;
            float *into = permute ? tmp : dst;
            if (fread(into, sizeof(float), numel, fp) != numel) {
                rc = rlhf_errorf(err, RLHF_ERR_IO, "%s: reading tensor \"%s\" (%s) failed: %s", path, s->name, hf,
                                 ferror(fp) ? strerror(errno) : "unexpected end of file");
                goto fail;
            }
            if (permute) permute_rows(dst, tmp, s->permute_heads, HS, (size_t)s->cols);
            for (size_t k = 0; k < numel; k++) {
                if (!isfinite(dst[k])) {
                    char label[2 * MODEL_TENSOR_NAME_MAX];
                    section_label(label, sizeof label, s, l);
                    rc = rlhf_errorf(err, RLHF_ERR_NUMERIC, "%s: tensor %s has a non-finite value (%s) at element %zu", path, label,
                                     isnan(dst[k]) ? "nan" : "inf", k);
                    goto fail;
                }
            }
        }
    }
    free(tmp);
    fclose(fp);
    return RLHF_OK;
fail:
    free(tmp);
    if (fp) fclose(fp);
    model_free(m);
    return rc;
}
