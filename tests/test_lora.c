/* test_lora.c — LoRA adapters (src/model/lora.h): properties checked without PyTorch, and a
 * dump mode for the PyTorch reference (tests/reference/lora_torch.py).
 *
 * Without arguments, on tiny random GPT-2 and Llama (GQA, untied head) models:
 *   - a fresh adapter (B = 0) and a disabled adapter give the base logits exactly (bitwise);
 *   - save -> load -> merge gives the unmerged logits within 1e-5 x max |logit|;
 *   - LoRA training steps leave every base weight bitwise unchanged and allocate no base
 *     gradient buffer (frozen base);
 *   - an SGD step of size lr along -grad lowers the loss by about lr |grad|^2 (first order;
 *     within 30%), so an update that does nothing or goes the wrong way fails; 30 AdamW steps
 *     (src/train/optim.h over the adapter buffer) lower it by at least 20%;
 *   - with dropout, the directional derivative along the gradient matches central differences
 *     of the same masks (2%, float32);
 *   - bad adapter directories are refused with a message naming the field or tensor.
 *
 * `test_lora dump key=value ...` builds a random model and adapter (or loads the adapter at
 * adapter_in=DIR), runs forward, cross-entropy and backward, and writes to out=DIR:
 * params.safetensors (base, HF names), adapter/ (lora_save), grads.safetensors (adapter
 * gradients, PEFT names), outputs.safetensors (logits, loss). Keys as in
 * tests/reference/model_dump.c, plus rank, alpha, targets, bscale (B ~ N(0, bscale) instead
 * of 0, so gradients of A carry signal). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/fileio.h"
#include "src/core/rng.h"
#include "src/formats/safetensors.h"
#include "src/model/lora.h"
#include "src/model/model.h"
#include "src/train/optim.h"
#include "tests/test_util.h"

static void random_base(model *m, uint64_t seed) {
    rng_t r;
    rng_seed(&r, seed);
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        float *p = m->params + t->offset;
        for (size_t k = 0; k < t->numel; k++) {
            if (t->kind == MODEL_TENSOR_NORM) p[k] = 1.0f + 0.3f * rng_normal(&r);
            else if (t->kind == MODEL_TENSOR_BIAS) p[k] = 0.1f * rng_normal(&r);
            else p[k] = (t->kind == MODEL_TENSOR_EMBEDDING ? 0.7f : 0.35f) * rng_normal(&r);
        }
    }
}

static void fill_b(lora *lo, float sd, uint64_t seed) {
    rng_t r;
    rng_seed(&r, seed);
    for (int s = 0; s < lo->n_sites; s++) {
        float *b = lo->params + lo->sites[s].b_offset;
        for (size_t k = 0; k < (size_t)lo->sites[s].out * lo->rank; k++) b[k] = sd * rng_normal(&r);
    }
}

static model_config tiny(model_family f) {
    model_config c;
    model_config_defaults(&c, f);
    c.n_layers = 2, c.dim = 16, c.n_heads = 4, c.vocab_size = 37, c.context = 16;
    if (f == MODEL_FAMILY_LLAMA) {
        c.n_kv_heads = 2, c.ffn_dim = 24, c.tied_embeddings = 0;
    } else {
        c.n_kv_heads = 4, c.ffn_dim = 64;
    }
    return c;
}

enum { TB = 2, TT = 8 };

/* forward + xent (+ backward when grads) on fixed tokens; returns the loss */
static double run(model *m, model_acts *a, const int32_t *tok, const int32_t *tgt, int backward) {
    rlhf_error err = {0};
    if (model_forward(m, a, tok, TB, TT, &err)) {
        fprintf(stderr, "forward: %s\n", err.msg);
        exit(1);
    }
    double loss = model_xent(a->logits, tgt, NULL, TB, TT, m->config.vocab_size, backward ? a->logits : NULL, NULL);
    if (backward && model_backward(m, a, a->logits, NULL, &err)) {
        fprintf(stderr, "backward: %s\n", err.msg);
        exit(1);
    }
    return loss;
}

static double max_abs_diff(const float *a, const float *b, size_t n, double *scale) {
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        d = e > d ? e : d;
        s = fabs(b[i]) > s ? fabs(b[i]) : s;
    }
    if (scale) *scale = s;
    return d;
}

static void test_family(model_family f) {
    const char *fam = model_family_name(f);
    model_config c = tiny(f);
    model m;
    model_acts a;
    rlhf_error err = {0};
    CHECK(model_init(&m, &c, &err) == 0, "%s", err.msg);
    CHECK(model_acts_init(&a, &c, TB, TT, &err) == 0, "%s", err.msg);
    random_base(&m, 7);
    int32_t tok[TB * TT], tgt[TB * TT];
    rng_t r;
    rng_seed(&r, 3);
    for (int i = 0; i < TB * TT; i++) tok[i] = (int32_t)rng_below(&r, (uint64_t)c.vocab_size);
    for (int i = 0; i < TB * TT; i++) tgt[i] = (i + 1) % TT ? tok[i + 1] : -1;
    const size_t NL = (size_t)TB * TT * c.vocab_size;
    float *base_logits = malloc(NL * sizeof(float)), *lora_logits = malloc(NL * sizeof(float));
    float *base_params = malloc(m.n_floats * sizeof(float));
    run(&m, &a, tok, tgt, 0);
    memcpy(base_logits, a.logits, NL * sizeof(float));
    memcpy(base_params, m.params, m.n_floats * sizeof(float));

    lora lo;
    lora_params p;
    lora_params_defaults(&p);
    p.rank = 4, p.alpha = 8;
    p.targets = "all-linear";
    rng_t lr;
    rng_seed(&lr, 11);
    CHECK(lora_init(&lo, &m, &p, &lr, &err) == 0, "%s", err.msg);
    CHECK(lo.n_sites == c.n_layers * (f == MODEL_FAMILY_GPT2 ? 4 : 7), "%s: every linear adapted (%d sites)", fam,
          lo.n_sites);
    lora_attach(&lo, &m);
    run(&m, &a, tok, tgt, 0);
    CHECK(memcmp(a.logits, base_logits, NL * sizeof(float)) == 0, "%s: fresh adapter (B = 0) gives base logits exactly", fam);

    fill_b(&lo, 0.3f, 5);
    run(&m, &a, tok, tgt, 0);
    memcpy(lora_logits, a.logits, NL * sizeof(float));
    CHECK(max_abs_diff(lora_logits, base_logits, NL, NULL) > 1e-3, "%s: a nonzero adapter changes the logits", fam);
    lora_set_enabled(&lo, 0);
    run(&m, &a, tok, tgt, 0);
    CHECK(memcmp(a.logits, base_logits, NL * sizeof(float)) == 0, "%s: disabled adapter gives base logits exactly", fam);
    lora_set_enabled(&lo, 1);

    /* save, reload, merge: same function (1e-5 of the largest logit) */
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s-adapter", test_tmpdir(), fam);
    lora_save_info info = {.base_model = "tiny-base", .task_type = "CAUSAL_LM"};
    CHECK(lora_save(&lo, dir, &info, NULL, 0, &err) == 0, "%s", err.msg);
    lora lo2;
    CHECK(lora_load(&lo2, &m, dir, NULL, 0, NULL, &err) == 0, "%s", err.msg);
    CHECK(lo2.n_floats == lo.n_floats && memcmp(lo2.params, lo.params, lo.n_floats * sizeof(float)) == 0,
          "%s: reloaded adapter is bitwise the saved one", fam);
    CHECK(lo2.rank == 4 && lo2.alpha == 8 && lo2.training == 0, "%s: reloaded r/alpha/mode", fam);
    lora_detach(&m);
    model merged;
    CHECK(model_init(&merged, &c, &err) == 0, "%s", err.msg);
    memcpy(merged.params, m.params, m.n_floats * sizeof(float));
    CHECK(lora_merge(&lo2, &merged, &err) == 0, "%s", err.msg);
    run(&merged, &a, tok, tgt, 0);
    double scale, d = max_abs_diff(a.logits, lora_logits, NL, &scale);
    CHECK(d <= 1e-5 * scale, "%s: merged logits vs unmerged: max err %.3g vs max |logit| %.3g (1e-5 relative)", fam, d,
          scale);
    model_free(&merged);
    lora_free(&lo2);
    lora_free(&lo2); /* safe twice */

    /* training steps: base untouched, no base gradients; SGD lowers the loss as predicted */
    lora_attach(&lo, &m);
    lora_zero_grads(&lo);
    double l0 = run(&m, &a, tok, tgt, 1);
    CHECK(m.grads == NULL, "%s: frozen base allocates no gradient buffer", fam);
    double g2 = 0;
    for (size_t i = 0; i < lo.n_floats; i++) g2 += (double)lo.grads[i] * lo.grads[i];
    CHECK(g2 > 0, "%s: adapter gradients are nonzero", fam);
    const float step = (float)(0.02 * l0 / g2); /* a 2% first-order decrease */
    for (size_t i = 0; i < lo.n_floats; i++) lo.params[i] -= step * lo.grads[i];
    double l1 = run(&m, &a, tok, tgt, 0);
    double predicted = step * g2;
    CHECK(l1 < l0 && fabs((l0 - l1) - predicted) <= 0.3 * predicted,
          "%s: SGD step: loss %.6f -> %.6f, decrease %.3g vs first-order %.3g (30%%)", fam, l0, l1, l0 - l1, predicted);
    optim o;
    optim_params op;
    optim_params_defaults(&op);
    op.lr = 1e-2f, op.min_lr = 1e-2f, op.total_steps = 30, op.weight_decay = 0;
    CHECK(optim_init(&o, &op, lo.tensors, lo.n_tensors, lo.n_floats, &err) == 0, "%s", err.msg);
    double la = l1;
    for (int s = 0; s < 30; s++) {
        lora_zero_grads(&lo);
        la = run(&m, &a, tok, tgt, 1);
        CHECK(optim_step(&o, lo.params, lo.grads, 1.0f, NULL, &err) == 0, "%s", err.msg);
    }
    la = run(&m, &a, tok, tgt, 0);
    CHECK(la < 0.8 * l1, "%s: 30 AdamW steps on the adapter: loss %.4f -> %.4f (at least 20%% lower)", fam, l1, la);
    optim_free(&o);
    CHECK(memcmp(m.params, base_params, m.n_floats * sizeof(float)) == 0, "%s: base weights bitwise unchanged", fam);
    CHECK(m.grads == NULL, "%s: still no base gradients", fam);

    /* dropout: the masks of a forward are regenerated by its backward */
    lora_detach(&m);
    lora_free(&lo);
    p.dropout = 0.3f;
    p.targets = f == MODEL_FAMILY_GPT2 ? "c_attn,mlp.c_proj" : "q_proj,k_proj,down_proj";
    CHECK(lora_init(&lo, &m, &p, &lr, &err) == 0, "%s", err.msg);
    fill_b(&lo, 0.3f, 9);
    lora_attach(&lo, &m);
    rng_t saved = lo.rng;
    lora_zero_grads(&lo);
    run(&m, &a, tok, tgt, 1);
    double gn = 0;
    for (size_t i = 0; i < lo.n_floats; i++) gn += (double)lo.grads[i] * lo.grads[i];
    gn = sqrt(gn);
    float *p0 = malloc(lo.n_floats * sizeof(float)), *dir_v = malloc(lo.n_floats * sizeof(float));
    memcpy(p0, lo.params, lo.n_floats * sizeof(float));
    for (size_t i = 0; i < lo.n_floats; i++) dir_v[i] = (float)(lo.grads[i] / gn);
    const float h = 2e-3f; /* central differences: curvature error below 1% here, float32 noise far below */
    double lp, lm;
    for (size_t i = 0; i < lo.n_floats; i++) lo.params[i] = p0[i] + h * dir_v[i];
    lo.rng = saved;
    lp = run(&m, &a, tok, tgt, 0);
    for (size_t i = 0; i < lo.n_floats; i++) lo.params[i] = p0[i] - h * dir_v[i];
    lo.rng = saved;
    lm = run(&m, &a, tok, tgt, 0);
    double fd = (lp - lm) / (2 * h);
    CHECK(fabs(fd - gn) <= 0.02 * gn, "%s: dropout: directional derivative %.6g vs central difference %.6g (2%%)", fam,
          gn, fd);
    memcpy(lo.params, p0, lo.n_floats * sizeof(float));
    lo.rng = saved;
    run(&m, &a, tok, tgt, 0);
    memcpy(lora_logits, a.logits, NL * sizeof(float));
    run(&m, &a, tok, tgt, 0);
    CHECK(memcmp(lora_logits, a.logits, NL * sizeof(float)) != 0, "%s: dropout draws new masks per forward", fam);
    lora_set_training(&lo, 0);
    run(&m, &a, tok, tgt, 0);
    memcpy(lora_logits, a.logits, NL * sizeof(float));
    run(&m, &a, tok, tgt, 0);
    CHECK(memcmp(lora_logits, a.logits, NL * sizeof(float)) == 0, "%s: no dropout in evaluation mode", fam);
    free(p0);
    free(dir_v);
    lora_detach(&m);
    lora_free(&lo);

    free(base_logits);
    free(lora_logits);
    free(base_params);
    model_acts_free(&a);
    model_free(&m);
}

/* Writes a (doctored) adapter_config.json. */
static void write_file(const char *path, const char *text) {
    rlhf_error err = {0};
    if (file_write_atomic(path, text, strlen(text), &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
}

static void expect_load_error(const model *m, const char *dir, const char *needle, const char *what) {
    lora lo;
    rlhf_error err = {0};
    int rc = lora_load(&lo, m, dir, NULL, 0, NULL, &err);
    CHECK(rc != 0 && strstr(err.msg, needle) != NULL, "%s: expected an error mentioning '%s', got %d '%s'", what,
          needle, rc, err.msg);
    CHECK(lo.params == NULL, "%s: failed load leaves the struct zeroed", what);
}

static void test_bad_files(void) {
    model_config c = tiny(MODEL_FAMILY_LLAMA);
    model m, other;
    rlhf_error err = {0};
    CHECK(model_init(&m, &c, &err) == 0, "%s", err.msg);
    model_config c2 = c;
    c2.dim = 32, c2.n_heads = 4;
    CHECK(model_init(&other, &c2, &err) == 0, "%s", err.msg);
    lora lo;
    lora_params p;
    lora_params_defaults(&p);
    rng_t r;
    rng_seed(&r, 1);
    p.targets = "q_proj,c_attn";
    CHECK(lora_init(&lo, &m, &p, &r, &err) != 0 && strstr(err.msg, "c_attn") && strstr(err.msg, "unknown"),
          "unknown target module named: %s", err.msg);
    p.targets = "q_proj,v_proj";
    p.rank = 0;
    CHECK(lora_init(&lo, &m, &p, &r, &err) != 0 && strstr(err.msg, "rank"), "rank 0 refused: %s", err.msg);
    p.rank = 4;
    CHECK(lora_init(&lo, &m, &p, &r, &err) == 0, "%s", err.msg);
    char dir[4200], cfg[4300], tmp[4300];
    snprintf(dir, sizeof dir, "%s/bad-adapter", test_tmpdir());
    snprintf(cfg, sizeof cfg, "%s/adapter_config.json", dir);
    CHECK(lora_save(&lo, dir, NULL, NULL, 0, &err) == 0, "%s", err.msg);
    char *good = NULL;
    size_t len;
    CHECK(file_read_all(cfg, &good, &len, &err) == 0, "%s", err.msg);

    /* rank in the config disagrees with the tensors */
    {
        char text[4096];
        const char *rpos = strstr(good, "\"r\":");
        size_t pre = rpos ? (size_t)(rpos - good) : 0;
        const char *after = rpos ? strchr(rpos, ',') : NULL;
        snprintf(text, sizeof text, "%.*s\"r\": 8%s", (int)pre, good, after ? after : "");
        write_file(cfg, text);
        expect_load_error(&m, dir, "has rank 4 but adapter_config.json says r = 8", "rank mismatch");
    }
    /* a target the family does not have */
    {
        char text[4096];
        const char *t = strstr(good, "\"target_modules\":");
        const char *end = t ? strchr(t, ']') : NULL;
        snprintf(text, sizeof text, "%.*s\"target_modules\": [\"q_proj\", \"wq\"%s", (int)(t - good), good, end);
        write_file(cfg, text);
        expect_load_error(&m, dir, "unknown target module 'wq'", "unknown module");
        /* target list narrower than the tensors: v_proj tensors are unknown to it */
        snprintf(text, sizeof text, "%.*s\"target_modules\": [\"q_proj\"%s", (int)(t - good), good, end);
        write_file(cfg, text);
        expect_load_error(&m, dir, "model.layers.0.self_attn.v_proj.lora_A.weight is not an adapter", "extra tensor");
        /* wider: k_proj tensors are missing */
        snprintf(text, sizeof text, "%.*s\"target_modules\": [\"q_proj\", \"k_proj\", \"v_proj\"%s", (int)(t - good),
                 good, end);
        write_file(cfg, text);
        expect_load_error(&m, dir, "self_attn.k_proj.lora_A.weight is missing", "missing tensor");
    }
    /* features we do not implement are named, not ignored */
    {
        char text[4096];
        const char *t = strstr(good, "\"use_dora\":");
        const char *end = t ? strchr(t, ',') : NULL;
        snprintf(text, sizeof text, "%.*s\"use_dora\": true%s", (int)(t - good), good, end);
        write_file(cfg, text);
        expect_load_error(&m, dir, "use_dora", "DoRA refused");
        t = strstr(good, "\"peft_type\":");
        end = t ? strchr(t, ',') : NULL;
        snprintf(text, sizeof text, "%.*s\"peft_type\": \"IA3\"%s", (int)(t - good), good, end);
        write_file(cfg, text);
        expect_load_error(&m, dir, "peft_type", "other PEFT types refused");
        t = strstr(good, "\"target_modules\":");
        end = t ? strchr(t, ']') : NULL;
        snprintf(text, sizeof text, "%.*s\"target_modules\": \".*proj\"%s", (int)(t - good), good, end + 1);
        write_file(cfg, text);
        expect_load_error(&m, dir, "regular expression", "regex targets refused");
    }
    write_file(cfg, good);
    /* the adapter of a wider model: shapes do not fit this base */
    lora big;
    CHECK(lora_init(&big, &other, &p, &r, &err) == 0, "%s", err.msg);
    snprintf(tmp, sizeof tmp, "%s/wide-adapter", test_tmpdir());
    CHECK(lora_save(&big, tmp, NULL, NULL, 0, &err) == 0, "%s", err.msg);
    expect_load_error(&m, tmp, "but the base model's layer needs (4, 16)", "shape mismatch with the base");
    expect_load_error(&m, "/nonexistent/adapter", "no such adapter directory", "missing directory");
    /* the good one loads; a score head rides along as an extra */
    float score[3 * 16], back[3 * 16];
    for (int i = 0; i < 48; i++) score[i] = (float)i / 7.0f;
    lora_extra ex = {.name = "score.weight", .ndim = 2, .shape = {3, 16}, .data = score};
    CHECK(lora_save(&lo, dir, &(lora_save_info){.task_type = "SEQ_CLS"}, &ex, 1, &err) == 0, "%s", err.msg);
    expect_load_error(&m, dir, "unexpected tensor base_model.model.score.weight", "extra tensor nobody asked for");
    lora lo3;
    int found = -1;
    ex.data = back;
    CHECK(lora_load(&lo3, &m, dir, &ex, 1, &found, &err) == 0 && found == 1, "load with a score head: %s", err.msg);
    CHECK(memcmp(back, score, sizeof score) == 0, "score head round trip");
    lora_free(&lo3);
    free(good);
    lora_free(&big);
    lora_free(&lo);
    model_free(&m);
    model_free(&other);
}

/* ---- dump mode for tests/reference/lora_torch.py ---- */

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

static int write_named(const char *path, const model_tensor *t, int n, const float *buf, rlhf_error *err) {
    safetensors_entry *e = calloc((size_t)n, sizeof *e);
    if (!e) return RLHF_ERR_NOMEM;
    for (int i = 0; i < n; i++)
        e[i] = (safetensors_entry){.name = t[i].name, .dtype = SAFETENSORS_DTYPE_F32, .ndim = t[i].ndim,
                                   .shape = {t[i].shape[0], t[i].shape[1]}, .data = buf + t[i].offset};
    int rc = safetensors_write(path, e, n, err);
    free(e);
    return rc;
}

static int dump(int argc, char **argv) {
    model_config c;
    const char *family = "gpt2", *out = NULL, *tokens_s = NULL, *targets_s = NULL, *targets = NULL,
               *adapter_in = NULL;
    int layers = 2, dim = 16, heads = 4, kv_heads = 0, ffn = 0, vocab = 50, context = 32, tied = -1, batch = 1, rank = 4;
    double alpha = 8, bscale = 0.3;
    unsigned long long seed = 1;
    for (int i = 2; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq) return fprintf(stderr, "test_lora dump: expected key=value, got %s\n", argv[i]), 2;
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
        else if (!strcmp(k, "seed")) seed = strtoull(v, NULL, 10);
        else if (!strcmp(k, "batch")) batch = atoi(v);
        else if (!strcmp(k, "tokens")) tokens_s = v;
        else if (!strcmp(k, "targets")) targets_s = v;
        else if (!strcmp(k, "modules")) targets = v;
        else if (!strcmp(k, "rank")) rank = atoi(v);
        else if (!strcmp(k, "alpha")) alpha = atof(v);
        else if (!strcmp(k, "bscale")) bscale = atof(v);
        else if (!strcmp(k, "adapter_in")) adapter_in = v;
        else if (!strcmp(k, "out")) out = v;
        else return fprintf(stderr, "test_lora dump: unknown key %s\n", k), 2;
    }
    model_config_defaults(&c, strcmp(family, "llama") == 0 ? MODEL_FAMILY_LLAMA : MODEL_FAMILY_GPT2);
    c.n_layers = layers, c.dim = dim, c.n_heads = heads, c.n_kv_heads = kv_heads ? kv_heads : heads;
    c.ffn_dim = ffn ? ffn : 4 * dim, c.vocab_size = vocab, c.context = context;
    if (tied >= 0) c.tied_embeddings = tied;
    enum { MAXN = 4096 };
    static double tok_d[MAXN], tgt_d[MAXN];
    int n = parse_list(tokens_s, tok_d, MAXN), nt = parse_list(targets_s, tgt_d, MAXN);
    if (!out || n <= 0 || n % batch || nt != n)
        return fprintf(stderr, "test_lora dump: need out=DIR and tokens/targets of equal length\n"), 2;
    const int B = batch, T = n / batch;
    int32_t tok[MAXN], tgt[MAXN];
    for (int i = 0; i < n; i++) tok[i] = (int32_t)tok_d[i], tgt[i] = (int32_t)tgt_d[i];
    model m;
    model_acts a;
    lora lo;
    rlhf_error err = {0};
    char path[4200];
    int rc = model_init(&m, &c, &err);
    if (!rc) rc = model_acts_init(&a, &c, B, T, &err);
    if (rc) goto fail;
    random_base(&m, seed);
    if (adapter_in) {
        if ((rc = lora_load(&lo, &m, adapter_in, NULL, 0, NULL, &err))) goto fail;
    } else {
        lora_params p;
        lora_params_defaults(&p);
        p.rank = rank, p.alpha = (float)alpha, p.targets = targets;
        rng_t r;
        rng_seed(&r, seed + 1);
        if ((rc = lora_init(&lo, &m, &p, &r, &err))) goto fail;
        fill_b(&lo, (float)bscale, seed + 2);
    }
    lora_attach(&lo, &m);
    if ((rc = model_forward(&m, &a, tok, B, T, &err))) goto fail;
    float *logits = malloc((size_t)n * vocab * sizeof *logits);
    memcpy(logits, a.logits, (size_t)n * vocab * sizeof *logits);
    float loss = (float)model_xent(a.logits, tgt, NULL, B, T, vocab, a.logits, NULL);
    if ((rc = model_backward(&m, &a, a.logits, NULL, &err))) goto fail;
    snprintf(path, sizeof path, "%s/params.safetensors", out);
    if ((rc = write_named(path, m.tensors, m.n_tensors, m.params, &err))) goto fail;
    snprintf(path, sizeof path, "%s/grads.safetensors", out);
    if ((rc = write_named(path, lo.tensors, lo.n_tensors, lo.grads, &err))) goto fail;
    snprintf(path, sizeof path, "%s/adapter", out);
    if ((rc = lora_save(&lo, path, &(lora_save_info){.base_model = "tiny-random"}, NULL, 0, &err))) goto fail;
    safetensors_entry e[2] = {
        {.name = "logits", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 3, .shape = {B, T, vocab}, .data = logits},
        {.name = "loss", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 1, .shape = {1}, .data = &loss},
    };
    snprintf(path, sizeof path, "%s/outputs.safetensors", out);
    if ((rc = safetensors_write(path, e, 2, &err))) goto fail;
    free(logits);
    lora_detach(&m);
    lora_free(&lo);
    model_acts_free(&a);
    model_free(&m);
    return 0;
fail:
    fprintf(stderr, "test_lora dump: %s\n", err.msg);
    return 1;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "dump") == 0) return dump(argc, argv);
    test_family(MODEL_FAMILY_GPT2);
    test_family(MODEL_FAMILY_LLAMA);
    test_bad_files();
    return test_finish("lora");
}
