/* test_gguf.c — GGUF files load to the same model as the Hugging Face directory of the same
 * weights, and their vocabularies to the same tokenizer.
 *
 * A small GGUF writer here converts a model the way llama.cpp's convert_hf_to_gguf.py does:
 * [out, in] matrices (GPT-2's Conv1D transposed), Llama's q/k rows permuted for interleaved
 * RoPE, norms kept F32, GPT-2's tied output written as a copy of the embedding. Properties:
 *  - F32: the GGUF model's parameters and logits are bit-identical to the HF directory's
 *    (checkpoint_save + model_bundle_load), for Llama (GQA, untied) and GPT-2 (tied);
 *  - F16, BF16, Q8_0: bit-identical to the HF directory of the same weights rounded through
 *    that type, and within the type's error of the float model (max |dlogit| <= 2e-3 for
 *    F16, 1e-2 BF16, 1e-2 Q8_0 on these small random models);
 *  - unknown architectures, unsupported tensor types, truncated files and bad magic are
 *    refused with messages naming them;
 *  - tokenizers built from tokenizer.ggml.* metadata (GPT-2 byte-level BPE, Llama 3's
 *    llama-bpe, SentencePiece with scores) encode the reference texts to the reference ids. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "src/formats/checkpoint.h"
#include "src/core/fileio.h"
#include "src/gen/generate.h"
#include "src/formats/gguf.h"
#include "src/formats/model_load.h"
#include "src/formats/safetensors.h"
#include "tests/test_util.h"

/* ---- a minimal GGUF writer ---- */

typedef struct {
    unsigned char *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *x, size_t n) {
    if (n == 0) return;
    if (b->n + n > b->cap) {
        size_t c = b->cap ? b->cap : 4096;
        while (b->n + n > c) c *= 2;
        b->p = realloc(b->p, c);
        b->cap = c;
    }
    memcpy(b->p + b->n, x, n);
    b->n += n;
}
static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(buf *b, const char *s, size_t n) {
    put_u64(b, n);
    put(b, s, n);
}

typedef struct {
    buf kv, ti, data;
    uint64_t n_kv, n_t;
} gguf_writer;

static void kv_key(gguf_writer *w, const char *key, uint32_t type) {
    put_str(&w->kv, key, strlen(key));
    put_u32(&w->kv, type);
    w->n_kv++;
}
static void kv_str(gguf_writer *w, const char *key, const char *v) {
    kv_key(w, key, GGUF_TYPE_STRING);
    put_str(&w->kv, v, strlen(v));
}
static void kv_u32(gguf_writer *w, const char *key, uint32_t v) {
    kv_key(w, key, GGUF_TYPE_UINT32);
    put_u32(&w->kv, v);
}
static void kv_f32(gguf_writer *w, const char *key, float v) {
    kv_key(w, key, GGUF_TYPE_FLOAT32);
    put(&w->kv, &v, 4);
}
static void kv_strs(gguf_writer *w, const char *key, char **s, int n) {
    kv_key(w, key, GGUF_TYPE_ARRAY);
    put_u32(&w->kv, GGUF_TYPE_STRING);
    put_u64(&w->kv, (uint64_t)n);
    for (int i = 0; i < n; i++) put_str(&w->kv, s[i], strlen(s[i]));
}
static void kv_nums(gguf_writer *w, const char *key, uint32_t type, const void *v, int n) {
    kv_key(w, key, GGUF_TYPE_ARRAY);
    put_u32(&w->kv, type);
    put_u64(&w->kv, (uint64_t)n);
    put(&w->kv, v, (size_t)n * 4);
}

static uint16_t to_f16(float x) { return safetensors_f32_to_f16(x); }

/* Rounds x through `type` as the writer stores it (the reference for the exactness checks). */
static void round_through(float *x, size_t n, uint32_t type) {
    if (type == GGUF_TENSOR_F16)
        for (size_t i = 0; i < n; i++) x[i] = safetensors_f16_to_f32(to_f16(x[i]));
    else if (type == GGUF_TENSOR_BF16)
        for (size_t i = 0; i < n; i++) x[i] = safetensors_bf16_to_f32(safetensors_f32_to_bf16(x[i]));
    else if (type == GGUF_TENSOR_Q8_0)
        for (size_t b = 0; b < n / 32; b++) {
            float amax = 0;
            for (int k = 0; k < 32; k++) amax = fmaxf(amax, fabsf(x[b * 32 + k]));
            const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
            const float dh = safetensors_f16_to_f32(to_f16(d));
            for (int k = 0; k < 32; k++) x[b * 32 + k] = dh * (float)(int8_t)roundf(x[b * 32 + k] * id);
        }
}

/* Tensor with ggml shape (ne0, ne1) (ne1 == 0: 1-D) from row-major data of ne1 rows of ne0. */
static void tensor(gguf_writer *w, const char *name, const float *x, uint64_t ne0, uint64_t ne1, uint32_t type) {
    if (ne1 == 0) type = GGUF_TENSOR_F32; /* llama.cpp keeps norms and biases in F32 */
    while (w->data.n % 32) put(&w->data, "", 1);
    put_str(&w->ti, name, strlen(name));
    put_u32(&w->ti, ne1 ? 2 : 1);
    put_u64(&w->ti, ne0);
    if (ne1) put_u64(&w->ti, ne1);
    put_u32(&w->ti, type);
    put_u64(&w->ti, w->data.n);
    w->n_t++;
    const size_t n = (size_t)ne0 * (ne1 ? ne1 : 1);
    if (type == GGUF_TENSOR_F32) {
        put(&w->data, x, n * 4);
    } else if (type == GGUF_TENSOR_F16 || type == GGUF_TENSOR_BF16) {
        for (size_t i = 0; i < n; i++) {
            uint16_t h = type == GGUF_TENSOR_F16 ? to_f16(x[i]) : safetensors_f32_to_bf16(x[i]);
            put(&w->data, &h, 2);
        }
    } else if (type == GGUF_TENSOR_Q8_0) {
        for (size_t b = 0; b < n / 32; b++) {
            float amax = 0;
            for (int k = 0; k < 32; k++) amax = fmaxf(amax, fabsf(x[b * 32 + k]));
            const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
            uint16_t dh = to_f16(d);
            put(&w->data, &dh, 2);
            for (int k = 0; k < 32; k++) {
                int8_t q = (int8_t)roundf(x[b * 32 + k] * id);
                put(&w->data, &q, 1);
            }
        }
    } else { /* an unsupported type: fake bytes, the reader must refuse it by name */
        for (size_t i = 0; i < n; i++) put(&w->data, "\0", 1);
    }
}

static int gw_write(gguf_writer *w, const char *path, size_t truncate_to) {
    buf out = {0};
    put(&out, "GGUF", 4);
    put_u32(&out, 3);
    put_u64(&out, w->n_t);
    put_u64(&out, w->n_kv);
    put(&out, w->kv.p, w->kv.n);
    put(&out, w->ti.p, w->ti.n);
    while (out.n % 32) put(&out, "", 1);
    put(&out, w->data.p, w->data.n);
    rlhf_error err = {0};
    int rc = file_write_atomic(path, out.p, truncate_to ? truncate_to : out.n, &err);
    free(out.p);
    free(w->kv.p);
    free(w->ti.p);
    free(w->data.p);
    memset(w, 0, sizeof *w);
    return rc;
}

/* Converts m as llama.cpp's converter does. */
/* Deliberate defects write_model_gguf can put in a file (for the refusal tests). */
enum { DEFECT_NONE = 0, DEFECT_EMBD_SHAPE, DEFECT_ROPE_FREQS, DEFECT_ROPE_SCALING };
static int g_defect;

static void write_model_gguf(const model *m, const char *path, uint32_t type, const char *arch_override) {
    const model_config *c = &m->config;
    const int gpt2 = c->family == MODEL_FAMILY_GPT2;
    const int C = c->dim, F = c->ffn_dim, V = c->vocab_size, NH = c->n_heads, NKV = c->n_kv_heads, HS = C / NH;
    const char *arch = arch_override ? arch_override : gpt2 ? "gpt2" : "llama";
    gguf_writer w = {0};
    char key[128];
    kv_str(&w, "general.architecture", arch);
    kv_str(&w, "general.name", "test");
    kv_str(&w, "tokenizer.chat_template", "{{ messages[0]['content'] }}");
#define K(suffix) (snprintf(key, sizeof key, "%s.%s", arch, suffix), key)
    kv_u32(&w, K("block_count"), (uint32_t)c->n_layers);
    kv_u32(&w, K("embedding_length"), (uint32_t)C);
    kv_u32(&w, K("feed_forward_length"), (uint32_t)F);
    kv_u32(&w, K("attention.head_count"), (uint32_t)NH);
    kv_u32(&w, K("context_length"), (uint32_t)c->context);
    if (gpt2) {
        kv_f32(&w, K("attention.layer_norm_epsilon"), c->norm_eps);
    } else {
        kv_u32(&w, K("attention.head_count_kv"), (uint32_t)NKV);
        kv_f32(&w, K("attention.layer_norm_rms_epsilon"), c->norm_eps);
        kv_f32(&w, K("rope.freq_base"), c->rope_theta);
        kv_u32(&w, K("rope.dimension_count"), (uint32_t)HS);
        if (g_defect == DEFECT_ROPE_SCALING) kv_str(&w, K("rope.scaling.type"), "linear");
    }
#undef K
    float *tmp = malloc((size_t)(3 * C + 2 * F) * (size_t)(C > F ? C : F) * sizeof(float) + (size_t)V * C * 4);
    const model_weights *wt = &m->w;
    if (g_defect == DEFECT_EMBD_SHAPE) /* the same bytes declared (2C, V/2): a wrong width */
        tensor(&w, "token_embd.weight", wt->tok_emb, (uint64_t)(2 * C), (uint64_t)(V / 2), type);
    else
        tensor(&w, "token_embd.weight", wt->tok_emb, (uint64_t)C, (uint64_t)V, type);
    if (g_defect == DEFECT_ROPE_FREQS) tensor(&w, "rope_freqs.weight", wt->lnf_w, (uint64_t)(HS / 2), 0, type);
    if (gpt2) tensor(&w, "position_embd.weight", wt->pos_emb, (uint64_t)C, (uint64_t)c->context, type);
    char n[96];
#define T(suffix, x, ne0, ne1) (snprintf(n, sizeof n, "blk.%d.%s", l, suffix), tensor(&w, n, (x), (ne0), (ne1), type))
    for (int l = 0; l < c->n_layers; l++) {
        const model_layer_weights *lw = &wt->layers[l];
        if (gpt2) {
            T("attn_norm.weight", lw->ln1_w, C, 0);
            T("attn_norm.bias", lw->ln1_b, C, 0);
            for (int o = 0; o < 3 * C; o++) for (int i = 0; i < C; i++) tmp[(size_t)o * C + i] = lw->qkv_w[(size_t)i * 3 * C + o];
            T("attn_qkv.weight", tmp, C, 3 * C);
            T("attn_qkv.bias", lw->qkv_b, 3 * C, 0);
            for (int o = 0; o < C; o++) for (int i = 0; i < C; i++) tmp[(size_t)o * C + i] = lw->attn_out_w[(size_t)i * C + o];
            T("attn_output.weight", tmp, C, C);
            T("attn_output.bias", lw->attn_out_b, C, 0);
            T("ffn_norm.weight", lw->ln2_w, C, 0);
            T("ffn_norm.bias", lw->ln2_b, C, 0);
            for (int o = 0; o < F; o++) for (int i = 0; i < C; i++) tmp[(size_t)o * C + i] = lw->fc_w[(size_t)i * F + o];
            T("ffn_up.weight", tmp, C, F);
            T("ffn_up.bias", lw->fc_b, F, 0);
            for (int o = 0; o < C; o++) for (int i = 0; i < F; i++) tmp[(size_t)o * F + i] = lw->proj_w[(size_t)i * C + o];
            T("ffn_down.weight", tmp, F, C);
            T("ffn_down.bias", lw->proj_b, C, 0);
        } else {
            T("attn_norm.weight", lw->ln1_w, C, 0);
            /* llama.cpp's permute: HF row a*HS/2 + i of a head -> GGUF row 2i + a */
            for (int part = 0; part < 2; part++) {
                const int heads = part ? NKV : NH;
                const float *src = lw->qkv_w + (part ? (size_t)NH * HS * C : 0);
                for (int h = 0; h < heads; h++)
                    for (int i = 0; i < HS / 2; i++)
                        for (int a = 0; a < 2; a++)
                            memcpy(tmp + ((size_t)h * HS + 2 * i + a) * C, src + ((size_t)h * HS + a * HS / 2 + i) * C,
                                   (size_t)C * sizeof(float));
                T(part ? "attn_k.weight" : "attn_q.weight", tmp, C, heads * HS);
            }
            T("attn_v.weight", lw->qkv_w + (size_t)(NH + NKV) * HS * C, C, NKV * HS);
            T("attn_output.weight", lw->attn_out_w, NH * HS, C);
            T("ffn_norm.weight", lw->ln2_w, C, 0);
            T("ffn_gate.weight", lw->fc_w, C, F);
            T("ffn_up.weight", lw->fc_w + (size_t)F * C, C, F);
            T("ffn_down.weight", lw->proj_w, F, C);
        }
    }
#undef T
    tensor(&w, "output_norm.weight", wt->lnf_w, (uint64_t)C, 0, type);
    if (gpt2) tensor(&w, "output_norm.bias", wt->lnf_b, (uint64_t)C, 0, type);
    /* GPT-2's converter writes the tied head as a copy; an untied Llama has its own */
    if (gpt2 || !c->tied_embeddings) tensor(&w, "output.weight", wt->lm_head, (uint64_t)C, (uint64_t)V, type);
    free(tmp);
    CHECK(gw_write(&w, path, 0) == 0, "write %s", path);
}

/* ---- model equality ---- */

static void random_model(model *m, model_family fam) {
    model_config c;
    model_config_defaults(&c, fam);
    c.n_layers = 2;
    c.dim = 64;
    c.n_heads = 4;
    c.n_kv_heads = fam == MODEL_FAMILY_LLAMA ? 2 : 4;
    c.ffn_dim = fam == MODEL_FAMILY_LLAMA ? 96 : 256;
    c.vocab_size = 320;
    c.context = 64;
    c.tied_embeddings = fam == MODEL_FAMILY_GPT2;
    c.bos_id = fam == MODEL_FAMILY_LLAMA ? 1 : -1;
    c.eos_id = fam == MODEL_FAMILY_LLAMA ? 2 : 0;
    rlhf_error err = {0};
    if (model_init(m, &c, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    rng_t r;
    rng_seed(&r, 100 + (uint64_t)fam);
    model_init_random(m, &r);
    /* non-trivial norm gains and biases so their mapping matters */
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].kind == MODEL_TENSOR_NORM || m->tensors[i].kind == MODEL_TENSOR_BIAS)
            for (size_t k = 0; k < m->tensors[i].numel; k++) m->params[m->tensors[i].offset + k] += 0.1f * rng_normal(&r);
}

static void logits_of(const model *m, float *out) {
    gen_decoder d;
    rlhf_error err = {0};
    CHECK(gen_decoder_init(&d, m, 1, 16, &err) == 0, "decoder: %s", err.msg);
    int32_t toks[6] = {1, 17, 250, 3, 99, 318};
    CHECK(gen_decoder_prefill(&d, 0, toks, 5, &err) == 0, "prefill: %s", err.msg);
    int s0 = 0;
    CHECK(gen_decoder_step(&d, &s0, &toks[5], 1, &err) == 0, "step: %s", err.msg);
    memcpy(out, gen_decoder_logits(&d, 0), (size_t)m->config.vocab_size * sizeof(float));
    gen_decoder_free(&d);
}

static void test_model(model_family fam, uint32_t type, double tol) {
    const char *fname = fam == MODEL_FAMILY_GPT2 ? "gpt2" : "llama";
    const char *tname = gguf_tensor_type_name(type);
    model orig;
    random_model(&orig, fam);
    char path[4096], dir[4096];
    snprintf(path, sizeof path, "%s/%s-%s.gguf", test_tmpdir(), fname, tname);
    snprintf(dir, sizeof dir, "%s/%s-%s-hf", test_tmpdir(), fname, tname);
    write_model_gguf(&orig, path, type, NULL);
    /* the HF directory of the same weights rounded through the GGUF type (2-D tensors only) */
    model rt;
    rlhf_error err = {0};
    CHECK(model_init(&rt, &orig.config, &err) == 0, "init");
    memcpy(rt.params, orig.params, orig.n_floats * sizeof(float));
    for (int i = 0; i < rt.n_tensors; i++) {
        const model_tensor *t = &rt.tensors[i];
        if (t->ndim != 2) continue;
        float *p = rt.params + t->offset;
        /* GPT-2's Conv1D matrices are stored transposed, so their blocks run along columns */
        if (fam == MODEL_FAMILY_GPT2 && t->kind == MODEL_TENSOR_MATRIX) {
            const int64_t IN = t->shape[0], OUT = t->shape[1];
            float *tr = malloc(t->numel * sizeof *tr);
            for (int64_t o = 0; o < OUT; o++) for (int64_t k = 0; k < IN; k++) tr[o * IN + k] = p[k * OUT + o];
            round_through(tr, t->numel, type);
            for (int64_t o = 0; o < OUT; o++) for (int64_t k = 0; k < IN; k++) p[k * OUT + o] = tr[o * IN + k];
            free(tr);
        } else {
            round_through(p, t->numel, type);
        }
    }
    CHECK(checkpoint_save(&rt, dir, &err) == 0, "save hf dir: %s", err.msg);

    model_bundle g, h;
    int rc = model_bundle_load(&g, path, &err);
    CHECK(rc == 0, "%s %s: load gguf: %s", fname, tname, err.msg);
    int rc2 = model_bundle_load(&h, dir, &err);
    CHECK(rc2 == 0, "load hf: %s", err.msg);
    if (!rc && !rc2) {
        CHECK(g.format == MODEL_FORMAT_GGUF && h.format == MODEL_FORMAT_HF_DIR, "formats recognised");
        CHECK(g.chat_template && strcmp(g.chat_template, "{{ messages[0]['content'] }}") == 0 && !g.tok,
              "chat template read from GGUF metadata; no vocabulary, no tokenizer");
        const model_config *a = &g.m.config, *b = &h.m.config;
        CHECK(a->family == b->family && a->n_layers == b->n_layers && a->dim == b->dim && a->n_heads == b->n_heads &&
                  a->n_kv_heads == b->n_kv_heads && a->ffn_dim == b->ffn_dim && a->vocab_size == b->vocab_size &&
                  a->context == b->context && a->tied_embeddings == b->tied_embeddings && a->norm_eps == b->norm_eps,
              "%s %s: GGUF config == HF config (tied %d vs %d)", fname, tname, a->tied_embeddings, b->tied_embeddings);
        CHECK(g.m.n_floats == h.m.n_floats && memcmp(g.m.params, h.m.params, g.m.n_floats * sizeof(float)) == 0,
              "%s %s: GGUF parameters bit-identical to the HF directory's", fname, tname);
        float *lg = malloc(320 * sizeof(float)), *lh = malloc(320 * sizeof(float)), *lo = malloc(320 * sizeof(float));
        logits_of(&g.m, lg);
        logits_of(&h.m, lh);
        logits_of(&orig, lo);
        CHECK(memcmp(lg, lh, 320 * sizeof(float)) == 0, "%s %s: GGUF logits == HF directory logits (bitwise)", fname, tname);
        double worst = 0;
        for (int v = 0; v < 320; v++) worst = fmax(worst, fabs((double)lg[v] - lo[v]));
        CHECK(worst <= tol, "%s %s: logits within the type's error of the float model (%g <= %g)", fname, tname, worst, tol);
        free(lg), free(lh), free(lo);
        /* `rlhf model convert --from gguf`: the bundle saved as an HF directory loads back the same */
        char conv[4096];
        snprintf(conv, sizeof conv, "%s/%s-%s-converted", test_tmpdir(), fname, tname);
        CHECK(model_bundle_save(&g, conv, &err) == 0, "%s %s: save the GGUF bundle as HF: %s", fname, tname, err.msg);
        model_bundle cb;
        if (model_bundle_load(&cb, conv, &err) == 0) {
            CHECK(cb.m.n_floats == g.m.n_floats && memcmp(cb.m.params, g.m.params, g.m.n_floats * sizeof(float)) == 0 &&
                      cb.m.config.family == g.m.config.family && cb.m.config.tied_embeddings == g.m.config.tied_embeddings,
                  "%s %s: converted directory has the GGUF's weights and config", fname, tname);
            CHECK(cb.chat_template && strcmp(cb.chat_template, g.chat_template) == 0 && !cb.tok,
                  "%s %s: converted directory keeps the chat template (tokenizer_config.json)", fname, tname);
            model_bundle_free(&cb);
        } else {
            CHECK(0, "%s %s: load the converted directory: %s", fname, tname, err.msg);
        }
        /* the weights-only loader of `rlhf model info / loss / logits / pretrain --model` */
        model w;
        CHECK(model_load_weights(&w, path, &err) == 0, "%s %s: model_load_weights reads GGUF: %s", fname, tname, err.msg);
        CHECK(w.n_floats == g.m.n_floats && memcmp(w.params, g.m.params, w.n_floats * sizeof(float)) == 0,
              "%s %s: model_load_weights == model_bundle_load's weights", fname, tname);
        model_free(&w);
    }
    model_bundle_free(&g);
    model_bundle_free(&h);
    model_free(&rt);
    model_free(&orig);
}

static void test_refusals(void) {
    model m;
    random_model(&m, MODEL_FAMILY_LLAMA);
    char path[4096];
    rlhf_error err = {0};
    model_bundle b;
    snprintf(path, sizeof path, "%s/falcon.gguf", test_tmpdir());
    write_model_gguf(&m, path, GGUF_TENSOR_F32, "falcon");
    CHECK(model_bundle_load(&b, path, &err) == RLHF_ERR_UNSUPPORTED && strstr(err.msg, "falcon"), "unknown architecture: %s", err.msg);
    snprintf(path, sizeof path, "%s/iq2.gguf", test_tmpdir());
    write_model_gguf(&m, path, 16 /* IQ2_XXS */, NULL);
    CHECK(model_bundle_load(&b, path, &err) == RLHF_ERR_UNSUPPORTED && strstr(err.msg, "IQ2_XXS") && strstr(err.msg, "token_embd"),
          "unsupported tensor type named: %s", err.msg);
    /* a k-quant needs rows of whole 256-value super-blocks; this model's rows are 64 long */
    snprintf(path, sizeof path, "%s/q4k.gguf", test_tmpdir());
    write_model_gguf(&m, path, 12 /* Q4_K */, NULL);
    CHECK(model_bundle_load(&b, path, &err) == RLHF_ERR_FORMAT && strstr(err.msg, "Q4_K") && strstr(err.msg, "whole number of blocks"),
          "rows that are not whole blocks refused: %s", err.msg);
    /* defects that must be refused by name, never loaded (an embedding of the wrong width used
     * to overflow a buffer sized from it when the model has an output matrix) */
    model u;
    random_model(&u, MODEL_FAMILY_GPT2);
    const struct {
        int defect;
        const model *m;
        const char *needle;
        int code;
    } defects[] = {
        {DEFECT_EMBD_SHAPE, &u, "token_embd.weight", RLHF_ERR_SHAPE},
        {DEFECT_EMBD_SHAPE, &m, "token_embd.weight", RLHF_ERR_SHAPE},
        {DEFECT_ROPE_FREQS, &m, "rope_freqs", RLHF_ERR_UNSUPPORTED},
        {DEFECT_ROPE_SCALING, &m, "linear", RLHF_ERR_UNSUPPORTED},
    };
    for (size_t k = 0; k < sizeof defects / sizeof defects[0]; k++) {
        char dpath[4096 + 32]; /* room for the longest temporary directory plus the name */
        snprintf(dpath, sizeof dpath, "%s/defect-%c.gguf", test_tmpdir(), (char)('a' + k));
        g_defect = defects[k].defect;
        write_model_gguf(defects[k].m, dpath, GGUF_TENSOR_F32, NULL);
        g_defect = DEFECT_NONE;
        CHECK(model_bundle_load(&b, dpath, &err) == defects[k].code && strstr(err.msg, defects[k].needle),
              "defect %zu refused naming '%s': %s", k, defects[k].needle, err.msg);
    }
    model_free(&u);
    /* truncated: the last tensor runs past the end */
    gguf_writer w = {0};
    kv_str(&w, "general.architecture", "llama");
    float x[64] = {0};
    tensor(&w, "token_embd.weight", x, 32, 2, GGUF_TENSOR_F32);
    snprintf(path, sizeof path, "%s/trunc.gguf", test_tmpdir());
    gw_write(&w, path, 200);
    gguf_file *f = NULL;
    CHECK(gguf_open(&f, path, &err) == RLHF_ERR_FORMAT && strstr(err.msg, "token_embd") && f == NULL,
          "truncated file refused: %s", err.msg);
    snprintf(path, sizeof path, "%s/bad.gguf", test_tmpdir());
    file_write_atomic(path, "GGUX0000000000000000000000000000", 32, &err);
    CHECK(gguf_open(&f, path, &err) == RLHF_ERR_FORMAT && strstr(err.msg, "magic"), "bad magic: %s", err.msg);
    model_free(&m);
}

/* ---- tokenizers from metadata ---- */

static char *dup_s(const char *s) { return strdup(s); }

static cJSON *read_json(const char *rel) {
    char *text = NULL;
    size_t len;
    rlhf_error err = {0};
    if (file_read_all(test_data_path(rel), &text, &len, &err)) return NULL;
    cJSON *j = cJSON_Parse(text);
    free(text);
    return j;
}

/* Encodes the first `n_cases` texts of an encode-cases.jsonl and compares with its ids. */
static void check_cases(tokenizer *t, const char *rel, int n_cases, const char *what) {
    char *text = NULL;
    size_t len;
    rlhf_error err = {0};
    if (file_read_all(test_data_path(rel), &text, &len, &err)) return;
    int total = 0, bad = 0;
    tok_ids ids = {0};
    for (char *line = strtok(text, "\n"); line && total < n_cases; line = strtok(NULL, "\n")) {
        cJSON *c = cJSON_Parse(line);
        const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(c, "text"));
        cJSON *want = cJSON_GetObjectItem(c, "ids");
        if (s && tok_encode(t, s, strlen(s), 0, &ids, &err) == 0) {
            int ok = (int)ids.n == cJSON_GetArraySize(want);
            for (int i = 0; ok && i < (int)ids.n; i++) ok = ids.ids[i] == cJSON_GetArrayItem(want, i)->valueint;
            bad += !ok;
            if (!ok && bad <= 3) fprintf(stderr, "  %s mismatch on %.60s\n", what, s);
        } else {
            bad++;
        }
        total++;
        cJSON_Delete(c);
    }
    tok_ids_free(&ids);
    free(text);
    CHECK(total == n_cases && bad == 0, "%s: %d of %d reference encodings differ", what, bad, total);
}

static void free_strs(char **s, int n) {
    for (int i = 0; i < n; i++) free(s[i]);
    free(s);
}

static void test_tokenizer_gpt2(void) {
    cJSON *enc = read_json("gpt2/encoder.json");
    CHECK(enc != NULL, "encoder.json");
    if (!enc) return;
    int V = cJSON_GetArraySize(enc);
    char **toks = calloc((size_t)V, sizeof *toks);
    int32_t *types = malloc((size_t)V * sizeof *types);
    cJSON *it;
    cJSON_ArrayForEach(it, enc) if (it->valueint >= 0 && it->valueint < V) toks[it->valueint] = dup_s(it->string);
    for (int i = 0; i < V; i++) types[i] = strcmp(toks[i], "<|endoftext|>") == 0 ? 3 : 1;
    cJSON_Delete(enc);
    char *bpe = NULL;
    size_t len;
    rlhf_error err = {0};
    file_read_all(test_data_path("gpt2/vocab.bpe"), &bpe, &len, &err);
    int nm = 0, cap = 60000;
    char **merges = malloc((size_t)cap * sizeof *merges);
    for (char *line = strtok(bpe, "\n"); line; line = strtok(NULL, "\n"))
        if (line[0] != '#' && nm < cap) merges[nm++] = dup_s(line);
    free(bpe);
    gguf_writer w = {0};
    kv_str(&w, "general.architecture", "gpt2");
    kv_str(&w, "tokenizer.ggml.model", "gpt2");
    kv_str(&w, "tokenizer.ggml.pre", "gpt-2");
    kv_strs(&w, "tokenizer.ggml.tokens", toks, V);
    kv_nums(&w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, V);
    kv_strs(&w, "tokenizer.ggml.merges", merges, nm);
    kv_u32(&w, "tokenizer.ggml.bos_token_id", 50256);
    kv_u32(&w, "tokenizer.ggml.eos_token_id", 50256);
    char path[4096];
    snprintf(path, sizeof path, "%s/gpt2-tok.gguf", test_tmpdir());
    gw_write(&w, path, 0);
    free_strs(toks, V);
    free_strs(merges, nm);
    free(types);
    gguf_file *f = NULL;
    tokenizer *t = NULL;
    CHECK(gguf_open(&f, path, &err) == 0, "open: %s", err.msg);
    if (!f) return;
    CHECK(gguf_load_tokenizer(&t, f, &err) == 0, "gpt2 tokenizer from GGUF: %s", err.msg);
    if (t) {
        CHECK(tok_vocab_size(t) == 50257 && tok_eos_id(t) == 50256, "vocabulary size and EOS (%d, %d)", tok_vocab_size(t),
              (int)tok_eos_id(t));
        check_cases(t, "gpt2/encode-cases.jsonl", 400, "gpt2 tokenizer from GGUF");
        tok_close(&t);
    }
    gguf_close(&f);
}

/* piece text -> id (open addressing), so scoring 59k merges is not quadratic */
typedef struct {
    int *slot;
    size_t cap;
} piece_map;

static size_t piece_hash(const char *s) {
    size_t h = 5381;
    while (*s) h = h * 33 + (unsigned char)*s++;
    return h;
}

static void piece_map_init(piece_map *pm, char **toks, int V) {
    pm->cap = 1;
    while (pm->cap < 2 * (size_t)V) pm->cap *= 2;
    pm->slot = malloc(pm->cap * sizeof *pm->slot);
    for (size_t i = 0; i < pm->cap; i++) pm->slot[i] = -1;
    for (int id = 0; id < V; id++) {
        size_t i = piece_hash(toks[id]) & (pm->cap - 1);
        while (pm->slot[i] >= 0 && strcmp(toks[pm->slot[i]], toks[id]) != 0) i = (i + 1) & (pm->cap - 1);
        if (pm->slot[i] < 0) pm->slot[i] = id;
    }
}

static int piece_find(const piece_map *pm, char **toks, const char *s) {
    size_t i = piece_hash(s) & (pm->cap - 1);
    while (pm->slot[i] >= 0) {
        if (strcmp(toks[pm->slot[i]], s) == 0) return pm->slot[i];
        i = (i + 1) & (pm->cap - 1);
    }
    return -1;
}

/* A tokenizer.json's vocab/merges/added tokens as GGUF metadata. */
static void write_tokenizer_gguf(const char *rel, const char *model_kind, const char *pre, const char *path) {
    cJSON *j = read_json(rel);
    cJSON *model = cJSON_GetObjectItem(j, "model"), *vocab = cJSON_GetObjectItem(model, "vocab");
    cJSON *mg = cJSON_GetObjectItem(model, "merges"), *added = cJSON_GetObjectItem(j, "added_tokens");
    int V = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, vocab) if (it->valueint + 1 > V) V = it->valueint + 1;
    cJSON_ArrayForEach(it, added) if (cJSON_GetObjectItem(it, "id")->valueint + 1 > V) V = cJSON_GetObjectItem(it, "id")->valueint + 1;
    char **toks = calloc((size_t)V, sizeof *toks);
    int32_t *types = malloc((size_t)V * sizeof *types);
    float *scores = malloc((size_t)V * sizeof *scores);
    for (int i = 0; i < V; i++) types[i] = 1;
    cJSON_ArrayForEach(it, vocab) toks[it->valueint] = dup_s(it->string);
    int bos = -1, eos = -1;
    cJSON_ArrayForEach(it, added) {
        int id = cJSON_GetObjectItem(it, "id")->valueint;
        const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(it, "content"));
        free(toks[id]);
        toks[id] = dup_s(s);
        types[id] = 3;
        if (!strcmp(s, "<s>") || !strcmp(s, "<|begin_of_text|>")) bos = id;
        if (!strcmp(s, "</s>") || !strcmp(s, "<|end_of_text|>")) eos = id;
    }
    for (int i = 0; i < V; i++) {
        if (!toks[i]) toks[i] = dup_s("");
        int byte = strlen(toks[i]) == 6 && !strncmp(toks[i], "<0x", 3);
        if (byte) types[i] = 6;
        /* pieces no merge produces never win a merge (tokenizer.model gives them -1e9) */
        scores[i] = types[i] == 1 ? -1e9f : 0.0f;
    }
    int nm = cJSON_GetArraySize(mg);
    char **merges = malloc((size_t)(nm ? nm : 1) * sizeof *merges);
    int k = 0;
    piece_map pm;
    piece_map_init(&pm, toks, V);
    cJSON_ArrayForEach(it, mg) {
        if (cJSON_IsString(it)) merges[k++] = dup_s(it->valuestring);
        else { /* ["a", "b"] pairs in newer files */
            const char *a = cJSON_GetArrayItem(it, 0)->valuestring, *b = cJSON_GetArrayItem(it, 1)->valuestring;
            merges[k] = malloc(strlen(a) + strlen(b) + 2);
            sprintf(merges[k++], "%s %s", a, b);
        }
        /* SentencePiece scores as Llama's tokenizer.model has them: the piece made by merge r
         * scores -r, so score order is merge order */
        char joined[512];
        const char *sp = strchr(merges[k - 1], ' ');
        if (sp && strlen(merges[k - 1]) < sizeof joined) {
            size_t la = (size_t)(sp - merges[k - 1]);
            memcpy(joined, merges[k - 1], la);
            strcpy(joined + la, sp + 1);
            int id = piece_find(&pm, toks, joined);
            if (id >= 0 && scores[id] == -1e9f) scores[id] = -(float)(k - 1);
        }
    }
    gguf_writer w = {0};
    kv_str(&w, "tokenizer.ggml.model", model_kind);
    if (pre) kv_str(&w, "tokenizer.ggml.pre", pre);
    kv_strs(&w, "tokenizer.ggml.tokens", toks, V);
    kv_nums(&w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, V);
    if (!strcmp(model_kind, "llama")) kv_nums(&w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, V);
    else kv_strs(&w, "tokenizer.ggml.merges", merges, k);
    if (bos >= 0) kv_u32(&w, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
    if (eos >= 0) kv_u32(&w, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
    gw_write(&w, path, 0);
    free_strs(toks, V);
    free_strs(merges, k);
    free(types);
    free(scores);
    free(pm.slot);
    cJSON_Delete(j);
}

static void test_tokenizer_file(const char *rel, const char *kind, const char *pre, const char *cases, int n_bos,
                                int expect_vocab) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s-tok.gguf", test_tmpdir(), kind);
    write_tokenizer_gguf(rel, kind, pre, path);
    gguf_file *f = NULL;
    tokenizer *t = NULL;
    rlhf_error err = {0};
    CHECK(gguf_open(&f, path, &err) == 0, "open: %s", err.msg);
    if (!f) return;
    int rc = gguf_load_tokenizer(&t, f, &err);
    CHECK(rc == 0, "%s tokenizer from GGUF: %s", kind, err.msg);
    if (t) {
        CHECK(tok_vocab_size(t) == expect_vocab && tok_bos_id(t) == n_bos, "%s: vocabulary %d, BOS %d", kind,
              tok_vocab_size(t), (int)tok_bos_id(t));
        char what[64];
        snprintf(what, sizeof what, "%s tokenizer (%s) from GGUF", kind, pre ? pre : "spm");
        check_cases(t, cases, 400, what);
        tok_close(&t);
    }
    gguf_close(&f);
    /* the loader of `rlhf tokenize --tokenizer FILE.gguf` */
    CHECK(model_load_tokenizer(&t, path, &err) == 0 && tok_vocab_size(t) == expect_vocab,
          "%s: model_load_tokenizer reads the GGUF vocabulary: %s", kind, err.msg);
    tok_close(&t);
}

/* A SentencePiece-type GGUF whose vocabulary holds control tokens beyond <s>/</s> (chat
 * models' <|im_start|>): token_type 3 makes them special — one id in text only when special
 * tokens are allowed, never assembled from pieces otherwise — and type 4 a user-defined piece
 * matched whole. (The loader used to ignore token_type for this kind.) */
static void test_tokenizer_spm_control(void) {
    char *toks[] = {"<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "[USER]", "\xe2\x96\x81", "h", "i",
                    "\xe2\x96\x81h", "\xe2\x96\x81hi", "<", "|", ">", "m", "s", "t", "a", "r", "_", "[", "]", "U", "S", "E", "R"};
    const int V = (int)(sizeof toks / sizeof *toks);
    int32_t types[64];
    float scores[64];
    for (int i = 0; i < V; i++) {
        types[i] = i < 3 ? 3 : i < 5 ? 3 : i == 5 ? 4 : 1;
        scores[i] = i == 9 ? -1.0f : i == 10 ? -2.0f : -100.0f - (float)i;
    }
    types[0] = 2;
    gguf_writer w = {0};
    kv_str(&w, "tokenizer.ggml.model", "llama");
    kv_strs(&w, "tokenizer.ggml.tokens", toks, V);
    kv_nums(&w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, V);
    kv_nums(&w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, V);
    kv_u32(&w, "tokenizer.ggml.bos_token_id", 1);
    kv_u32(&w, "tokenizer.ggml.eos_token_id", 2);
    char path[4096];
    snprintf(path, sizeof path, "%s/spm-control.gguf", test_tmpdir());
    gw_write(&w, path, 0);
    tokenizer *t = NULL;
    rlhf_error err = {0};
    CHECK(model_load_tokenizer(&t, path, &err) == 0, "SPM GGUF with control tokens loads: %s", err.msg);
    if (!t) return;
    CHECK(tok_id_is_special(t, 3) && tok_id_is_special(t, 4) && !tok_id_is_special(t, 5),
          "token_type 3 ids are special, type 4 is not");
    tok_ids ids = {0};
    const char *text = "<|im_start|> hi<|im_end|>";
    CHECK(tok_encode(t, text, strlen(text), TOK_ENCODE_ALLOW_SPECIAL, &ids, &err) == 0, "encode: %s", err.msg);
    CHECK(ids.n >= 3 && ids.ids[0] == 3 && ids.ids[ids.n - 1] == 4, "allowed: <|im_start|> and <|im_end|> are one id each (%d ids, first %d)",
          (int)ids.n, ids.n ? (int)ids.ids[0] : -1);
    CHECK(tok_encode(t, text, strlen(text), 0, &ids, &err) == 0, "encode: %s", err.msg);
    int has_control = 0;
    for (size_t i = 0; i < ids.n; i++) has_control |= ids.ids[i] == 3 || ids.ids[i] == 4;
    CHECK(!has_control, "not allowed: control tokens are not matched in text");
    CHECK(tok_encode(t, "hi[USER]", 8, 0, &ids, &err) == 0 && ids.n >= 2 && ids.ids[ids.n - 1] == 5,
          "a user-defined piece is matched whole");
    int32_t one = 3;
    char *back = NULL;
    size_t blen;
    CHECK(tok_decode(t, &one, 1, &back, &blen, &err) == 0 && back && strcmp(back, "<|im_start|>") == 0,
          "a control token decodes to its name: %s", back ? back : err.msg);
    free(back);
    tok_ids_free(&ids);
    tok_close(&t);
}

int main(void) {
    test_model(MODEL_FAMILY_LLAMA, GGUF_TENSOR_F32, 0.0);
    test_model(MODEL_FAMILY_GPT2, GGUF_TENSOR_F32, 0.0);
    test_model(MODEL_FAMILY_LLAMA, GGUF_TENSOR_F16, 2e-3);
    test_model(MODEL_FAMILY_GPT2, GGUF_TENSOR_F16, 2e-3);
    test_model(MODEL_FAMILY_LLAMA, GGUF_TENSOR_BF16, 1e-2);
    test_model(MODEL_FAMILY_GPT2, GGUF_TENSOR_BF16, 1e-2);
    test_model(MODEL_FAMILY_LLAMA, GGUF_TENSOR_Q8_0, 1e-2);
    test_model(MODEL_FAMILY_GPT2, GGUF_TENSOR_Q8_0, 1e-2);
    test_refusals();
    {
        /* tok_load_buffer (what the GGUF tokenizer is built through) names its source on errors */
        tokenizer *t = NULL;
        rlhf_error err = {0};
        const char enc[] = "{\"hello\": 0}";
        CHECK(tok_load_buffer(&t, "mem", enc, strlen(enc), NULL, &err) == RLHF_ERR_FORMAT && !t && strstr(err.msg, "mem:"),
              "an encoder.json in memory is refused (its vocab.bpe cannot be found): %s", err.msg);
        CHECK(tok_load_buffer(&t, "mem", "{", 1, NULL, &err) == RLHF_ERR_FORMAT && !t && strstr(err.msg, "mem"),
              "bad JSON in memory refused: %s", err.msg);
    }
    {
        /* a GGUF model without a vocabulary: the tokenizer loader says so */
        char path[4096];
        snprintf(path, sizeof path, "%s/llama-F32.gguf", test_tmpdir());
        tokenizer *t = NULL;
        rlhf_error err = {0};
        CHECK(model_load_tokenizer(&t, path, &err) == RLHF_ERR_NOT_FOUND && !t && strstr(err.msg, "no vocabulary"),
              "GGUF without a vocabulary: %s", err.msg);
    }
    test_tokenizer_gpt2();
    test_tokenizer_spm_control();
    test_tokenizer_file("llama3-tokenizer/tokenizer.json", "gpt2", "llama-bpe", "llama3-tokenizer/encode-cases.jsonl", 128000,
                        128256);
    test_tokenizer_file("sp-bpe-32k/tokenizer.json", "llama", NULL, "sp-bpe-32k/encode-cases.jsonl", 1, 32000);
    return test_finish("gguf");
}
