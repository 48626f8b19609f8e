/* model_dump.c — test-only: builds a random model from a config on the command line, runs
 * forward, the cross-entropy head and backward on given tokens, and writes everything the
 * PyTorch reference (torch_model.py) needs to check the engine:
 *
 *   OUT/params.safetensors   every parameter under its Hugging Face name
 *   OUT/grads.safetensors    d(loss)/d(parameter), same names
 *   OUT/outputs.safetensors  "logits" (B, T, V), "hidden" (B, T, C), "losses" (B, T), "loss" (1)
 *
 * Usage: model_dump key=value ... with keys family (gpt2|llama), layers, dim, heads, kv_heads,
 * ffn, vocab, context, tied (0|1), rope (half|interleaved), theta, eps, seed, batch, tokens
 * (comma-separated, batch*T ids), targets (comma-separated, -1 = masked), weights (optional,
 * comma-separated) and out (a directory that exists). Weights are drawn larger than the usual
 * 0.02 init, with norm gains and biases off 1 and 0, so every path carries signal. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/model/model.h"
#include "src/core/rng.h"
#include "src/formats/safetensors.h"

static int parse_list(const char *s, double *out, int max) {
    int n = 0;
    while (s && *s && n < max) {
        char *end;
        out[n++] = strtod(s, &end);
        if (end == s) return -1;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

static int write_named(const char *path, const model *m, const float *buf, rlhf_error *err) {
    safetensors_entry *e = calloc((size_t)m->n_tensors, sizeof *e);
    if (!e) return RLHF_ERR_NOMEM;
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        e[i].name = t->name;
        e[i].dtype = SAFETENSORS_DTYPE_F32;
        e[i].ndim = t->ndim;
        e[i].shape[0] = t->shape[0];
        e[i].shape[1] = t->shape[1];
        e[i].data = buf + t->offset;
    }
    int rc = safetensors_write(path, e, m->n_tensors, err);
    free(e);
    return rc;
}

int main(int argc, char **argv) {
    model_config c;
    const char *family = "gpt2", *rope = "half", *out = NULL, *tokens_s = NULL, *targets_s = NULL, *weights_s = NULL;
    int layers = 2, dim = 16, heads = 4, kv_heads = 0, ffn = 0, vocab = 50, context = 32, tied = -1, batch = 1;
    double theta = 10000, eps = 1e-5;
    unsigned long long seed = 1;
    for (int i = 1; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq) {
            fprintf(stderr, "model_dump: expected key=value, got %s\n", argv[i]);
            return 2;
        }
        *eq = 0;
        const char *k = argv[i], *v = eq + 1;
        if (!strcmp(k, "family")) family = v;
        else if (!strcmp(k, "layers")) layers = atoi(v);
        else if (!strcmp(k, "dim")) dim = atoi(v);
        else if (!strcmp(k, "heads")) heads = atoi(v);
        else if (!strcmp(k, "kv_heads")) kv_heads = atoi(v);
        else if (!strcmp(k, "ffn")) ffn = atoi(v);
        else if (!strcmp(k, "vocab")) vocab = atoi(v);
        else if (!strcmp(k, "context")) context = atoi(v);
        else if (!strcmp(k, "tied")) tied = atoi(v);
        else if (!strcmp(k, "rope")) rope = v;
        else if (!strcmp(k, "theta")) theta = atof(v);
        else if (!strcmp(k, "eps")) eps = atof(v);
        else if (!strcmp(k, "seed")) seed = strtoull(v, NULL, 10);
        else if (!strcmp(k, "batch")) batch = atoi(v);
        else if (!strcmp(k, "tokens")) tokens_s = v;
        else if (!strcmp(k, "targets")) targets_s = v;
        else if (!strcmp(k, "weights")) weights_s = v;
        else if (!strcmp(k, "out")) out = v;
        else {
            fprintf(stderr, "model_dump: unknown key %s\n", k);
            return 2;
        }
    }
    model_config_defaults(&c, strcmp(family, "llama") == 0 ? MODEL_FAMILY_LLAMA : MODEL_FAMILY_GPT2);
    c.n_layers = layers, c.dim = dim, c.n_heads = heads, c.n_kv_heads = kv_heads ? kv_heads : heads;
    c.ffn_dim = ffn ? ffn : 4 * dim, c.vocab_size = vocab, c.context = context;
    if (tied >= 0) c.tied_embeddings = tied;
    c.rope_layout = strcmp(rope, "interleaved") == 0 ? MODEL_ROPE_INTERLEAVED : MODEL_ROPE_HALF;
    c.rope_theta = (float)theta, c.norm_eps = (float)eps;

    enum { MAXN = 1 << 16 };
    static double tok_d[MAXN], tgt_d[MAXN], w_d[MAXN];
    int n = parse_list(tokens_s, tok_d, MAXN), nt = parse_list(targets_s, tgt_d, MAXN);
    int nw = weights_s ? parse_list(weights_s, w_d, MAXN) : 0;
    if (!out || n <= 0 || batch < 1 || n % batch || nt != n || (weights_s && nw != n)) {
        fprintf(stderr, "model_dump: need out=DIR and tokens/targets(/weights) of equal length, a multiple of batch\n");
        return 2;
    }
    const int B = batch, T = n / batch;
    int32_t *tok = malloc(n * sizeof *tok), *tgt = malloc(n * sizeof *tgt);
    float *w = weights_s ? malloc(n * sizeof *w) : NULL, *losses = malloc(n * sizeof *losses);
    for (int i = 0; i < n; i++) {
        tok[i] = (int32_t)tok_d[i];
        tgt[i] = (int32_t)tgt_d[i];
        if (w) w[i] = (float)w_d[i];
    }

    model m;
    model_acts a;
    rlhf_error err = {0};
    char path[4096];
    int rc = model_init(&m, &c, &err);
    if (!rc) rc = model_alloc_grads(&m, &err);
    if (!rc) rc = model_acts_init(&a, &c, B, T, &err);
    if (rc) goto fail;
    rng_t r;
    rng_seed(&r, seed);
    for (int i = 0; i < m.n_tensors; i++) {
        const model_tensor *t = &m.tensors[i];
        float *p = m.params + t->offset;
        for (size_t k = 0; k < t->numel; k++) {
            if (t->kind == MODEL_TENSOR_NORM) p[k] = 1.0f + 0.3f * rng_normal(&r);
            else if (t->kind == MODEL_TENSOR_BIAS) p[k] = 0.1f * rng_normal(&r);
            else p[k] = (t->kind == MODEL_TENSOR_EMBEDDING ? 0.7f : 0.35f) * rng_normal(&r);
        }
    }
    if ((rc = model_forward(&m, &a, tok, B, T, &err))) goto fail;
    const int V = c.vocab_size;
    float *logits = malloc((size_t)n * V * sizeof *logits), *hidden = malloc((size_t)n * dim * sizeof *hidden);
    memcpy(logits, a.logits, (size_t)n * V * sizeof *logits);
    memcpy(hidden, a.hidden, (size_t)n * dim * sizeof *hidden);
    float loss = (float)model_xent(a.logits, tgt, w, B, T, V, a.logits, losses);
    if ((rc = model_backward(&m, &a, a.logits, NULL, &err))) goto fail;

    snprintf(path, sizeof path, "%s/params.safetensors", out);
    if ((rc = write_named(path, &m, m.params, &err))) goto fail;
    snprintf(path, sizeof path, "%s/grads.safetensors", out);
    if ((rc = write_named(path, &m, m.grads, &err))) goto fail;
    safetensors_entry e[4] = {
        {.name = "logits", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 3, .shape = {B, T, V}, .data = logits},
        {.name = "hidden", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 3, .shape = {B, T, dim}, .data = hidden},
        {.name = "losses", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 2, .shape = {B, T}, .data = losses},
        {.name = "loss", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 1, .shape = {1}, .data = &loss},
    };
    snprintf(path, sizeof path, "%s/outputs.safetensors", out);
    if ((rc = safetensors_write(path, e, 4, &err))) goto fail;
    free(logits), free(hidden);
    model_acts_free(&a);
    model_free(&m);
    free(tok), free(tgt), free(w), free(losses);
    return 0;
fail:
    fprintf(stderr, "model_dump: %s\n", err.msg);
    return 1;
}
