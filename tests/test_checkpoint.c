/* test_checkpoint.c — Hugging Face model directories: bit-identical save/load round trips for
 * both families; each corruption of the issue (tensor missing, wrong shape, NaN weight, config
 * disagreeing with the shapes, bad config field, bad header) refused with one message naming
 * the file and the tensor or field; atomic saves (a save that fails midway leaves the previous
 * checkpoint byte-identical and loadable); and the real-world variants that must load: GPT2Model
 * names without the "transformer." prefix, non-parameter buffers, a tied lm_head, BF16 weights,
 * sharded checkpoints. */
#include "src/formats/checkpoint.h"

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <time.h>
#include <ftw.h>
#include <unistd.h>

#include "src/core/fileio.h"
#include "src/formats/safetensors.h"
#include "tests/test_util.h"

/* Removes this test's scratch directory when everything passed (kept for inspection otherwise). */
static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void cleanup_tmpdir(void) {
    if (!test_failures_) nftw(test_tmpdir(), remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *tmp_path(const char *name) {
    static char buf[16][8192];
    static int slot;
    char *p = buf[slot++ & 15];
    snprintf(p, sizeof buf[0], "%s/%s", test_tmpdir(), name);
    return p;
}

static char *join(const char *dir, const char *name) {
    static char buf[16][4096];
    static int slot;
    char *p = buf[slot++ & 15];
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}

static model_config gpt2_config(int tied) {
    model_config c;
    model_config_defaults(&c, MODEL_FAMILY_GPT2);
    c.n_layers = 2; c.dim = 16; c.n_heads = 4; c.n_kv_heads = 4; c.ffn_dim = 64;
    c.vocab_size = 37; c.context = 12; c.tied_embeddings = tied;
    c.bos_id = 36; c.eos_id = 36;
    return c;
}

static model_config llama_config(int tied) {
    model_config c;
    model_config_defaults(&c, MODEL_FAMILY_LLAMA);
    c.n_layers = 3; c.dim = 24; c.n_heads = 6; c.n_kv_heads = 2; c.ffn_dim = 40;
    c.vocab_size = 29; c.context = 16; c.tied_embeddings = tied; c.norm_eps = 1e-6f; c.rope_theta = 500000.0f;
    c.bos_id = 1; c.eos_id = 2;
    return c;
}

static void make_model(model *m, const model_config *c, uint64_t seed) {
    rlhf_error err = {0};
    if (model_init(m, c, &err)) {
        fprintf(stderr, "model_init: %s\n", err.msg);
        exit(1);
    }
    rng_t r;
    rng_seed(&r, seed);
    model_init_random(m, &r);
    /* norms and biases away from their init so a mix-up between tensors shows */
    for (int t = 0; t < m->n_tensors; t++)
        for (size_t k = 0; k < m->tensors[t].numel; k++) m->params[m->tensors[t].offset + k] += 1e-3f * (float)(k % 7);
}

static int same_config(const model_config *a, const model_config *b) {
    return a->family == b->family && a->n_layers == b->n_layers && a->dim == b->dim && a->n_heads == b->n_heads &&
           a->n_kv_heads == b->n_kv_heads && a->ffn_dim == b->ffn_dim && a->vocab_size == b->vocab_size &&
           a->context == b->context && a->tied_embeddings == b->tied_embeddings && a->norm_eps == b->norm_eps &&
           (a->family == MODEL_FAMILY_GPT2 || (a->rope_theta == b->rope_theta && a->rope_layout == b->rope_layout)) &&
           a->bos_id == b->bos_id && a->eos_id == b->eos_id;
}

static int same_params(const model *a, const model *b) {
    return a->n_floats == b->n_floats && memcmp(a->params, b->params, a->n_floats * sizeof(float)) == 0;
}

/* Writes m's tensors to path: names optionally stripped of `strip`, one optionally skipped or
 * reshaped, extra entries appended, all in `dtype`. */
typedef struct {
    const char *strip;
    const char *skip;
    const char *reshape;       /* this tensor is written as (numel) 1-D */
    safetensors_dtype dtype;
    const safetensors_entry *extra;
    int n_extra;
    int first, last;           /* tensor range [first, last); last 0 = all */
} write_opts;

static int write_tensors(const model *m, const char *path, const write_opts *o) {
    safetensors_entry *e = calloc((size_t)m->n_tensors + (size_t)o->n_extra + 1, sizeof *e);
    int n = 0, last = o->last ? o->last : m->n_tensors;
    for (int i = o->first; i < last; i++) {
        const model_tensor *t = &m->tensors[i];
        if (o->skip && strcmp(t->name, o->skip) == 0) continue;
        const char *name = t->name;
        if (o->strip && strncmp(name, o->strip, strlen(o->strip)) == 0) name += strlen(o->strip);
        e[n] = (safetensors_entry){.name = name, .dtype = o->dtype, .ndim = t->ndim, .shape = {t->shape[0], t->shape[1]},
                                   .data = m->params + t->offset};
        if (o->reshape && strcmp(t->name, o->reshape) == 0) {
            e[n].ndim = 1;
            e[n].shape[0] = (int64_t)t->numel;
        }
        n++;
    }
    for (int i = 0; i < o->n_extra; i++) e[n++] = o->extra[i];
    rlhf_error err = {0};
    int rc = safetensors_write(path, e, n, &err);
    if (rc) fprintf(stderr, "write_tensors: %s\n", err.msg);
    free(e);
    return rc;
}

static void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "wb");
    fputs(text, fp);
    fclose(fp);
}

static char *read_text(const char *path, size_t *len) {
    char *s = NULL;
    if (file_read_all(path, &s, len, NULL)) return NULL;
    return s;
}

/* Loading dir must fail with `code`, naming `file` (a path suffix) and `what` (tensor/field). */
static void expect_load_fail(const char *label, const char *dir, int code, const char *file, const char *what) {
    model m;
    rlhf_error err = {0};
    int rc = checkpoint_load(&m, dir, &err);
    CHECK(rc == code, "%s: code %d (%s), expected %d (%s): %s", label, rc, rlhf_strerror(rc), code, rlhf_strerror(code), err.msg);
    CHECK(m.params == NULL && m.n_tensors == 0, "%s: model left zeroed", label);
    if (file) CHECK(strstr(err.msg, file) != NULL, "%s: message names the file %s: %s", label, file, err.msg);
    if (what) CHECK(strstr(err.msg, what) != NULL, "%s: message names %s: %s", label, what, err.msg);
    model_free(&m);
}

static void check_round_trip(const model_config *c, const char *label) {
    model a, b;
    make_model(&a, c, 1234);
    char dname[256];
    snprintf(dname, sizeof dname, "rt-%s/nested/dir", label);
    const char *dir = tmp_path(dname);
    rlhf_error err = {0};
    CHECK(checkpoint_save(&a, dir, &err) == 0, "%s: save: %s", label, err.msg);
    CHECK(checkpoint_load(&b, dir, &err) == 0, "%s: load: %s", label, err.msg);
    if (b.params) {
        CHECK(same_config(&a.config, &b.config), "%s: config round-trips", label);
        CHECK(same_params(&a, &b), "%s: parameters bit-identical", label);
        CHECK(b.w.lm_head == (c->tied_embeddings ? b.w.tok_emb : b.params + model_find_tensor(&b, "lm_head.weight")->offset),
              "%s: typed views bound after loading", label);
    }
    /* what transformers needs to see */
    char *cfg = read_text(join(dir, "config.json"), NULL);
    CHECK(cfg != NULL, "%s: config.json written", label);
    if (cfg) {
        const char *arch = c->family == MODEL_FAMILY_GPT2 ? "\"GPT2LMHeadModel\"" : "\"LlamaForCausalLM\"";
        CHECK(strstr(cfg, arch) != NULL, "%s: architectures names %s", label, arch);
        CHECK(strstr(cfg, c->tied_embeddings ? "\"tie_word_embeddings\": true" : "\"tie_word_embeddings\": false") != NULL,
              "%s: tie_word_embeddings written", label);
        if (c->family == MODEL_FAMILY_LLAMA) {
            char kv[64];
            snprintf(kv, sizeof kv, "\"num_key_value_heads\": %d", c->n_kv_heads);
            CHECK(strstr(cfg, kv) && strstr(cfg, "\"rms_norm_eps\": 1e-06") &&
                      strstr(cfg, "\"rope_theta\": 500000") && !strstr(cfg, "rlhf_rope_layout"),
                  "%s: llama fields with transformers' names: %s", label, cfg);
        } else {
            CHECK(strstr(cfg, c->ffn_dim == 4 * c->dim ? "\"n_inner\": null" : "\"n_inner\": 40") && strstr(cfg, "\"n_layer\": 2") &&
                      strstr(cfg, "\"layer_norm_epsilon\": 1e-05"),
                  "%s: gpt2 fields with transformers' names: %s", label, cfg);
        }
        free(cfg);
    }
    safetensors_file *f = NULL;
    CHECK(safetensors_open(&f, join(dir, "model.safetensors"), &err) == 0, "%s: model.safetensors readable: %s", label, err.msg);
    if (f) {
        CHECK(f->n_tensors == a.n_tensors, "%s: one safetensors entry per parameter tensor", label);
        CHECK((safetensors_find(f, "lm_head.weight") != NULL) == !c->tied_embeddings, "%s: lm_head.weight only when untied", label);
        for (int i = 0; i < f->n_tensors; i++)
            CHECK(strcmp(f->tensors[i].name, a.tensors[i].name) == 0 && f->tensors[i].dtype == SAFETENSORS_DTYPE_F32,
                  "%s: tensor %d in table order as F32", label, i);
        safetensors_close(&f);
    }
    model_free(&a);
    model_free(&b);
}

/* A fresh saved directory of the small gpt2 / llama model to corrupt. */
static const char *fresh_dir(const char *name, const model_config *c, model *keep) {
    const char *dir = tmp_path(name);
    model m;
    make_model(&m, c, 99);
    rlhf_error err = {0};
    if (checkpoint_save(&m, dir, &err)) {
        fprintf(stderr, "save %s: %s\n", dir, err.msg);
        exit(1);
    }
    if (keep) *keep = m;
    else model_free(&m);
    return dir;
}

/* Replaces `from` by `to` in dir/config.json. */
static void edit_config(const char *dir, const char *from, const char *to) {
    char *s = read_text(join(dir, "config.json"), NULL);
    char *at = s ? strstr(s, from) : NULL;
    if (!at) {
        fprintf(stderr, "edit_config: \"%s\" not in config\n", from);
        exit(1);
    }
    size_t n = strlen(s) - strlen(from) + strlen(to) + 1;
    char *out = malloc(n);
    snprintf(out, n, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
    write_text(join(dir, "config.json"), out);
    free(out);
    free(s);
}

static void check_corruptions(void) {
    model_config g = gpt2_config(1), l = llama_config(0);
    model m;
    const char *dir;

    expect_load_fail("missing directory", tmp_path("no-such-dir"), RLHF_ERR_NOT_FOUND, "no-such-dir", NULL);

    dir = fresh_dir("c-no-weights", &g, NULL);
    unlink(join(dir, "model.safetensors"));
    expect_load_fail("missing model.safetensors", dir, RLHF_ERR_NOT_FOUND, "model.safetensors", NULL);

    dir = fresh_dir("c-no-config", &g, NULL);
    unlink(join(dir, "config.json"));
    expect_load_fail("missing config.json", dir, RLHF_ERR_NOT_FOUND, "config.json", NULL);

    /* tensor missing */
    dir = fresh_dir("c-missing", &g, &m);
    write_tensors(&m, join(dir, "model.safetensors"), &(write_opts){.skip = "transformer.h.1.mlp.c_fc.bias"});
    expect_load_fail("tensor missing", dir, RLHF_ERR_NOT_FOUND, "model.safetensors", "\"transformer.h.1.mlp.c_fc.bias\" is missing");
    model_free(&m);

    /* wrong shape */
    dir = fresh_dir("c-shape", &l, &m);
    write_tensors(&m, join(dir, "model.safetensors"), &(write_opts){.reshape = "model.layers.2.self_attn.k_proj.weight"});
    expect_load_fail("wrong shape", dir, RLHF_ERR_SHAPE, "model.safetensors", "model.layers.2.self_attn.k_proj.weight");
    model_free(&m);

    /* NaN weight (written behind checkpoint_save's back, which refuses NaN) */
    dir = fresh_dir("c-nan", &l, &m);
    const model_tensor *t = model_find_tensor(&m, "model.layers.1.mlp.up_proj.weight");
    m.params[t->offset + 17] = NAN;
    write_tensors(&m, join(dir, "model.safetensors"), &(write_opts){0});
    expect_load_fail("NaN weight", dir, RLHF_ERR_NUMERIC, "model.safetensors", "model.layers.1.mlp.up_proj.weight");
    m.params[t->offset + 17] = INFINITY;
    write_tensors(&m, join(dir, "model.safetensors"), &(write_opts){0});
    expect_load_fail("inf weight", dir, RLHF_ERR_NUMERIC, "model.safetensors", "model.layers.1.mlp.up_proj.weight");
    model_free(&m);

    /* config disagreeing with the tensor shapes, three ways */
    dir = fresh_dir("c-cfg-dim", &g, NULL);
    edit_config(dir, "\"vocab_size\": 37", "\"vocab_size\": 40");
    expect_load_fail("config vocab_size disagrees", dir, RLHF_ERR_SHAPE, "config.json", "transformer.wte.weight");
    dir = fresh_dir("c-cfg-fewer-layers", &l, NULL);
    edit_config(dir, "\"num_hidden_layers\": 3", "\"num_hidden_layers\": 2");
    expect_load_fail("config has fewer layers than the file", dir, RLHF_ERR_SHAPE, "model.safetensors", "model.layers.2.");
    dir = fresh_dir("c-cfg-more-layers", &l, NULL);
    edit_config(dir, "\"num_hidden_layers\": 3", "\"num_hidden_layers\": 4");
    expect_load_fail("config has more layers than the file", dir, RLHF_ERR_NOT_FOUND, "model.safetensors", "model.layers.3.");
    dir = fresh_dir("c-cfg-kv", &l, NULL);
    edit_config(dir, "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3");
    expect_load_fail("config kv heads disagree", dir, RLHF_ERR_SHAPE, "model.safetensors", "k_proj.weight");
    dir = fresh_dir("c-cfg-untie", &g, NULL);
    edit_config(dir, "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false");
    expect_load_fail("config says untied, file has no head", dir, RLHF_ERR_NOT_FOUND, "model.safetensors", "lm_head.weight");

    /* invalid config fields, each named */
    static const struct {
        const char *from, *to, *field;
        int code;
        int llama;
    } bad[] = {
        {"\"n_head\": 4", "\"n_head\": 0", "\"n_head\"", RLHF_ERR_INVALID, 0},
        {"\"n_head\": 4", "\"n_head\": 5", "\"n_head\"", RLHF_ERR_INVALID, 0},
        {"\"n_layer\": 2", "\"n_layer\": \"two\"", "\"n_layer\"", RLHF_ERR_INVALID, 0},
        {"\"n_layer\": 2", "\"n_layer\": 2.5", "\"n_layer\"", RLHF_ERR_INVALID, 0},
        {"\"n_embd\": 16,", "", "\"n_embd\"", RLHF_ERR_INVALID, 0},
        {"\"layer_norm_epsilon\": 1e-05", "\"layer_norm_epsilon\": -1", "\"layer_norm_epsilon\"", RLHF_ERR_INVALID, 0},
        {"\"tie_word_embeddings\": true", "\"tie_word_embeddings\": 1", "\"tie_word_embeddings\"", RLHF_ERR_INVALID, 0},
        {"\"bos_token_id\": 36", "\"bos_token_id\": 37", "\"bos_token_id\"", RLHF_ERR_INVALID, 0},
        {"\"activation_function\": \"gelu_new\"", "\"activation_function\": \"relu\"", "\"activation_function\"", RLHF_ERR_UNSUPPORTED, 0},
        {"\"model_type\": \"gpt2\"", "\"model_type\": \"bert\"", "\"model_type\"", RLHF_ERR_UNSUPPORTED, 0},
        {"\"num_key_value_heads\": 2", "\"num_key_value_heads\": 4", "\"num_key_value_heads\"", RLHF_ERR_INVALID, 1},
        {"\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2}", "\"rope_scaling\"", RLHF_ERR_UNSUPPORTED, 1},
        {"\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", "\"hidden_act\"", RLHF_ERR_UNSUPPORTED, 1},
        {"\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": 0", "\"rms_norm_eps\"", RLHF_ERR_INVALID, 1},
        {"\"max_position_embeddings\": 16", "\"max_position_embeddings\": -16", "\"max_position_embeddings\"", RLHF_ERR_INVALID, 1},
        {"\"intermediate_size\": 40", "\"intermediate_size\": null", "\"intermediate_size\"", RLHF_ERR_INVALID, 1},
        {"\"mlp_bias\": false", "\"mlp_bias\": true", "\"mlp_bias\"", RLHF_ERR_UNSUPPORTED, 1},
        {"\"torch_dtype\"", "\"rlhf_rope_layout\": \"sideways\", \"torch_dtype\"", "\"rlhf_rope_layout\"", RLHF_ERR_INVALID, 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[64], label[256];
        snprintf(name, sizeof name, "c-field-%zu", i);
        dir = fresh_dir(name, bad[i].llama ? &l : &g, NULL);
        edit_config(dir, bad[i].from, bad[i].to);
        snprintf(label, sizeof label, "bad config field %s (%s)", bad[i].field, bad[i].to);
        expect_load_fail(label, dir, bad[i].code, "config.json", bad[i].field);
    }
    dir = fresh_dir("c-cfg-json", &g, NULL);
    write_text(join(dir, "config.json"), "{\"model_type\": \"gpt2\", \"n_layer\": ");
    expect_load_fail("config.json not JSON", dir, RLHF_ERR_FORMAT, "config.json", NULL);

    /* bad / truncated safetensors header */
    dir = fresh_dir("c-header", &g, NULL);
    FILE *fp = fopen(join(dir, "model.safetensors"), "r+b");
    fwrite("\xff\xff\xff\x00\x00\x00\x00\x00", 1, 8, fp);
    fclose(fp);
    expect_load_fail("bad header length", dir, RLHF_ERR_FORMAT, "model.safetensors", NULL);
    dir = fresh_dir("c-truncated", &g, NULL);
    struct stat st;
    stat(join(dir, "model.safetensors"), &st);
    CHECK(truncate(join(dir, "model.safetensors"), st.st_size - 30) == 0, "truncate");
    expect_load_fail("truncated weights", dir, RLHF_ERR_FORMAT, "model.safetensors", "transformer.ln_f.bias");

    /* a tensor the model does not have */
    dir = fresh_dir("c-extra", &g, &m);
    float one = 1.0f;
    safetensors_entry extra = {.name = "transformer.h.0.attn.surprise", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 1, .shape = {1}, .data = &one};
    write_tensors(&m, join(dir, "model.safetensors"), &(write_opts){.extra = &extra, .n_extra = 1});
    expect_load_fail("unexpected tensor", dir, RLHF_ERR_SHAPE, "model.safetensors", "transformer.h.0.attn.surprise");
    model_free(&m);

    /* a tied lm_head of the wrong shape */
    dir = fresh_dir("c-lmhead", &g, &m);
    safetensors_entry head = {.name = "lm_head.weight", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 2, .shape = {36, 16}, .data = m.params};
    write_tensors(&m, join(dir, "model.safetensors"), &(write_opts){.extra = &head, .n_extra = 1});
    expect_load_fail("tied lm_head of the wrong shape", dir, RLHF_ERR_SHAPE, "model.safetensors", "lm_head.weight");
    model_free(&m);
}

static int count_tmp_files(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    while (d && (de = readdir(d))) n += strstr(de->d_name, ".tmp.") != NULL;
    if (d) closedir(d);
    return n;
}

static void check_atomic(void) {
    model_config c = llama_config(0);
    model a, b;
    make_model(&a, &c, 5);
    make_model(&b, &c, 6);
    const char *dir = tmp_path("atomic");
    rlhf_error err = {0};
    CHECK(checkpoint_save(&a, dir, &err) == 0, "first save: %s", err.msg);
    size_t wlen = 0, clen = 0, len;
    char *w0 = read_text(join(dir, "model.safetensors"), &wlen), *c0 = read_text(join(dir, "config.json"), &clen);

    /* 1. the disk "fills up" halfway through the weights: RLIMIT_FSIZE makes write() fail with
     *    EFBIG (SIGXFSZ ignored), exactly like a full disk from the writer's point of view */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = wlen / 2;
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit");
    int rc = checkpoint_save(&b, dir, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    CHECK(rc == RLHF_ERR_IO && strstr(err.msg, "model.safetensors"), "save into a full disk fails with an i/o error: %s", err.msg);

    /* 2. the config's temporary cannot be created after the weights were fully staged */
    char blocker[4200];
    snprintf(blocker, sizeof blocker, "%s/config.json.tmp.%ld", dir, (long)getpid());
    mkdir(blocker, 0755);
    rc = checkpoint_save(&b, dir, &err);
    rmdir(blocker);
    CHECK(rc == RLHF_ERR_IO && strstr(err.msg, "config.json"), "save whose second file fails is refused: %s", err.msg);

    /* 3. non-finite weights are refused before the disk is touched */
    b.params[model_find_tensor(&b, "model.norm.weight")->offset] = NAN;
    rc = checkpoint_save(&b, dir, &err);
    CHECK(rc == RLHF_ERR_NUMERIC && strstr(err.msg, "model.norm.weight"), "NaN weights refused, tensor named: %s", err.msg);

    char *w1 = read_text(join(dir, "model.safetensors"), &len);
    CHECK(w1 && len == wlen && memcmp(w0, w1, len) == 0, "weights byte-identical after the failed saves");
    free(w1);
    char *c1 = read_text(join(dir, "config.json"), &len);
    CHECK(c1 && len == clen && memcmp(c0, c1, len) == 0, "config byte-identical after the failed saves");
    free(c1);
    CHECK(count_tmp_files(dir) == 0, "no temporary files left behind");
    model back;
    CHECK(checkpoint_load(&back, dir, &err) == 0 && same_params(&a, &back), "previous checkpoint still loads: %s", err.msg);
    model_free(&back);

    /* a later good save replaces both files and keeps files owned by others */
    write_text(join(dir, "generation_config.json"), "{\"do_sample\": false}\n");
    b.params[model_find_tensor(&b, "model.norm.weight")->offset] = 1.0f;
    CHECK(checkpoint_save(&b, dir, &err) == 0, "good save: %s", err.msg);
    CHECK(checkpoint_load(&back, dir, &err) == 0 && same_params(&b, &back), "new checkpoint loads with generation_config.json present: %s",
          err.msg);
    CHECK(file_exists(join(dir, "generation_config.json")), "generation_config.json left alone");
    model_free(&back);
    free(w0);
    free(c0);
    model_free(&a);
    model_free(&b);
}

static void check_real_world_variants(void) {
    rlhf_error err = {0};
    model g, back;
    model_config gc = gpt2_config(1);
    make_model(&g, &gc, 11);

    /* GPT2Model names without the prefix, plus its attention-mask buffers, plus a tied lm_head */
    const char *dir = tmp_path("v-gpt2model");
    CHECK(checkpoint_save(&g, dir, &err) == 0, "save: %s", err.msg);
    static float mask[12 * 12];
    float masked = -1e4f;
    safetensors_entry bufs[] = {
        {.name = "h.0.attn.bias", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 4, .shape = {1, 1, 12, 12}, .data = mask},
        {.name = "h.1.attn.bias", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 4, .shape = {1, 1, 12, 12}, .data = mask},
        {.name = "h.0.attn.masked_bias", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 0, .data = &masked},
        {.name = "lm_head.weight", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 2, .shape = {37, 16}, .data = g.params},
    };
    write_tensors(&g, join(dir, "model.safetensors"), &(write_opts){.strip = "transformer.", .extra = bufs, .n_extra = 4});
    CHECK(checkpoint_load(&back, dir, &err) == 0 && same_params(&g, &back), "GPT2Model-style names and buffers load: %s", err.msg);
    model_free(&back);

    /* the same tensor under both names is ambiguous */
    safetensors_entry both = {.name = "transformer.wpe.weight", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 2, .shape = {12, 16},
                              .data = g.params + model_find_tensor(&g, "transformer.wpe.weight")->offset};
    write_tensors(&g, join(dir, "model.safetensors"), &(write_opts){.strip = "transformer.", .extra = &both, .n_extra = 1});
    expect_load_fail("a tensor stored twice", dir, RLHF_ERR_FORMAT, "model.safetensors", "transformer.wpe.weight");

    /* BF16 weights convert (to the BF16-rounded values) */
    dir = tmp_path("v-bf16");
    CHECK(checkpoint_save(&g, dir, &err) == 0, "save: %s", err.msg);
    write_tensors(&g, join(dir, "model.safetensors"), &(write_opts){.dtype = SAFETENSORS_DTYPE_BF16});
    CHECK(checkpoint_load(&back, dir, &err) == 0, "BF16 checkpoint loads: %s", err.msg);
    int bad = 0;
    for (int i = 0; back.params && i < g.n_tensors; i++) {
        const model_tensor *t = &g.tensors[i];
        for (size_t k = 0; k < t->numel; k++)
            bad += back.params[t->offset + k] != safetensors_bf16_to_f32(safetensors_f32_to_bf16(g.params[t->offset + k]));
    }
    CHECK(back.params && bad == 0, "BF16 values exact after conversion (%d differ)", bad);
    model_free(&back);

    /* Llama with rotary inv_freq buffers, sharded into 3 files by an index */
    model l;
    model_config lc = llama_config(0);
    make_model(&l, &lc, 12);
    dir = tmp_path("v-sharded");
    CHECK(checkpoint_save(&l, dir, &err) == 0, "save: %s", err.msg);
    unlink(join(dir, "model.safetensors"));
    float inv_freq[2] = {1.0f, 0.01f};
    safetensors_entry rot = {.name = "model.layers.0.self_attn.rotary_emb.inv_freq", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 1,
                             .shape = {2}, .data = inv_freq};
    int cut1 = l.n_tensors / 3, cut2 = 2 * l.n_tensors / 3;
    write_tensors(&l, join(dir, "model-00001-of-00003.safetensors"), &(write_opts){.first = 0, .last = cut1, .extra = &rot, .n_extra = 1});
    write_tensors(&l, join(dir, "model-00002-of-00003.safetensors"), &(write_opts){.first = cut1, .last = cut2});
    write_tensors(&l, join(dir, "model-00003-of-00003.safetensors"), &(write_opts){.first = cut2});
    FILE *fp = fopen(join(dir, "model.safetensors.index.json"), "wb");
    fprintf(fp, "{\n  \"metadata\": {\"total_size\": %zu},\n  \"weight_map\": {\n", l.n_params * 4);
    for (int i = 0; i < l.n_tensors; i++)
        fprintf(fp, "    \"%s\": \"model-0000%d-of-00003.safetensors\",\n", l.tensors[i].name, i < cut1 ? 1 : i < cut2 ? 2 : 3);
    fprintf(fp, "    \"%s\": \"model-00001-of-00003.safetensors\"\n  }\n}\n", rot.name);
    fclose(fp);
    CHECK(checkpoint_load(&back, dir, &err) == 0 && same_params(&l, &back), "sharded checkpoint loads: %s", err.msg);
    model_free(&back);
    /* a shard missing one of its tensors names the shard */
    write_tensors(&l, join(dir, "model-00002-of-00003.safetensors"),
                  &(write_opts){.first = cut1, .last = cut2, .skip = l.tensors[cut1 + 1].name});
    expect_load_fail("tensor missing from a shard", dir, RLHF_ERR_NOT_FOUND, "model-00002-of-00003.safetensors", l.tensors[cut1 + 1].name);
    unlink(join(dir, "model-00003-of-00003.safetensors"));
    expect_load_fail("missing shard file", dir, RLHF_ERR_NOT_FOUND, "model-00003-of-00003.safetensors", NULL);

    /* the interleaved RoPE layout is recorded in our own field and read back */
    l.config.rope_layout = MODEL_ROPE_INTERLEAVED;
    dir = tmp_path("v-interleaved");
    CHECK(checkpoint_save(&l, dir, &err) == 0, "save: %s", err.msg);
    char *cfg = read_text(join(dir, "config.json"), NULL);
    CHECK(cfg && strstr(cfg, "\"rlhf_rope_layout\": \"interleaved\""), "interleaved layout recorded");
    free(cfg);
    CHECK(checkpoint_load(&back, dir, &err) == 0 && back.config.rope_layout == MODEL_ROPE_INTERLEAVED, "interleaved layout read back");
    model_free(&back);

    /* a minimal hand-written Llama config takes transformers' defaults */
    model_config mc;
    const char *minimal = "{\"model_type\": \"llama\", \"hidden_size\": 24, \"intermediate_size\": 40, \"num_attention_heads\": 6, "
                          "\"num_hidden_layers\": 3, \"vocab_size\": 29, \"eos_token_id\": [2, 7], \"pretraining_tp\": 1}";
    CHECK(checkpoint_config_parse(&mc, minimal, strlen(minimal), "minimal.json", &err) == 0, "minimal llama config parses: %s", err.msg);
    CHECK(mc.n_kv_heads == 6 && mc.context == 2048 && mc.norm_eps == 1e-6f && mc.rope_theta == 10000.0f && !mc.tied_embeddings &&
              mc.bos_id == 1 && mc.eos_id == 2,
          "llama defaults: kv heads = heads, context 2048, eps 1e-6, theta 1e4, untied, bos 1, eos first of list");
    /* the public gpt2 config.json (abridged) */
    const char *gpt2 = "{\"activation_function\": \"gelu_new\", \"architectures\": [\"GPT2LMHeadModel\"], \"attn_pdrop\": 0.1, "
                       "\"bos_token_id\": 50256, \"embd_pdrop\": 0.1, \"eos_token_id\": 50256, \"initializer_range\": 0.02, "
                       "\"layer_norm_epsilon\": 1e-05, \"model_type\": \"gpt2\", \"n_ctx\": 1024, \"n_embd\": 768, \"n_head\": 12, "
                       "\"n_layer\": 12, \"n_positions\": 1024, \"resid_pdrop\": 0.1, \"summary_type\": \"cls_index\", "
                       "\"task_specific_params\": {\"text-generation\": {\"do_sample\": true, \"max_length\": 50}}, \"vocab_size\": 50257}";
    CHECK(checkpoint_config_parse(&mc, gpt2, strlen(gpt2), "gpt2/config.json", &err) == 0, "public gpt2 config parses: %s", err.msg);
    CHECK(mc.family == MODEL_FAMILY_GPT2 && mc.n_layers == 12 && mc.dim == 768 && mc.ffn_dim == 3072 && mc.context == 1024 &&
              mc.tied_embeddings && mc.bos_id == 50256 && mc.norm_eps == 1e-5f,
          "public gpt2 config: 12 layers, 768, n_inner absent = 3072, tied");
    model_free(&l);
    model_free(&g);
}

/* Load time of a GPT-2-small-sized random checkpoint (reported, not a pass/fail criterion). */
static void report_gpt2_small(void) {
    if (!getenv("RLHF_CKPT_BENCH")) return;
    model_config c;
    model_config_defaults(&c, MODEL_FAMILY_GPT2);
    c.n_layers = 12; c.dim = 768; c.n_heads = 12; c.n_kv_heads = 12; c.ffn_dim = 3072; c.vocab_size = 50257; c.context = 1024;
    model m, back;
    make_model(&m, &c, 3);
    const char *dir = tmp_path("gpt2-small");
    rlhf_error err = {0};
    struct timespec t0, t1, t2;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK(checkpoint_save(&m, dir, &err) == 0, "save gpt2-small: %s", err.msg);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(checkpoint_load(&back, dir, &err) == 0 && same_params(&m, &back), "load gpt2-small: %s", err.msg);
    clock_gettime(CLOCK_MONOTONIC, &t2);
    struct stat st;
    stat(join(dir, "model.safetensors"), &st);
    fprintf(stderr, "gpt2-small: model.safetensors %lld bytes, save %.3f s, load %.3f s\n", (long long)st.st_size,
            (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec),
            (double)(t2.tv_sec - t1.tv_sec) + 1e-9 * (double)(t2.tv_nsec - t1.tv_nsec));
    unlink(join(dir, "model.safetensors"));
    unlink(join(dir, "config.json"));
    rmdir(dir);
    model_free(&m);
    model_free(&back);
}

int main(void) {
    model_config c;
    c = gpt2_config(1);
    check_round_trip(&c, "gpt2-tied");
    c = gpt2_config(0);
    c.ffn_dim = 40;
    c.bos_id = -1;
    check_round_trip(&c, "gpt2-untied");
    c = llama_config(0);
    check_round_trip(&c, "llama-gqa-untied");
    c = llama_config(1);
    c.n_kv_heads = 6;
    check_round_trip(&c, "llama-tied");
    check_corruptions();
    check_atomic();
    check_real_world_variants();
    report_gpt2_small();
    cleanup_tmpdir();
    return test_finish("test_checkpoint");
}
