/* test_llama2c.c — llama2.c import against llama2.c's own outputs (suite 'reference').
 *
 * stories260K.bin loads directly (with q/k permuted to the half-split RoPE layout, and kept
 * interleaved) and through a converted Hugging Face directory; all three give the logits that
 * llama2.c's run.c printed at positions 0..7 within 1e-4 absolute (the reference is printed
 * with 6 significant digits, so 5e-5 of that is rounding), and argmax decoding from [BOS]
 * (full forward each step, no KV cache) reproduces its 200 ids exactly. Truncated, oversized and
 * corrupted copies are refused with a message naming the file and the tensor. */
#include "src/formats/checkpoint.h"
#include "src/formats/llama2c.h"

#include <cjson/cJSON.h>
#include <ftw.h>
#include <unistd.h>

#include "src/core/fileio.h"
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

#define LOGIT_TOL 1e-4

static char *tmp_path(const char *name) {
    static char buf[8][8192];
    static int slot;
    char *p = buf[slot++ & 7];
    snprintf(p, sizeof buf[0], "%s/%s", test_tmpdir(), name);
    return p;
}

typedef struct {
    int32_t ids[256];
    int n_ids;
    int pos[8], token[8];
    float logits[8][512];
    int n_pos;
} reference;

static void load_reference(reference *r) {
    char *text = NULL;
    size_t len = 0;
    const char *path = test_data_path("stories260K/greedy-from-bos.json");
    if (file_read_all(path, &text, &len, NULL)) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(1);
    }
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *gen = cJSON_GetObjectItemCaseSensitive(root, "generated_ids");
    memset(r, 0, sizeof *r);
    for (const cJSON *g = gen ? gen->child : NULL; g && r->n_ids < 256; g = g->next) r->ids[r->n_ids++] = (int32_t)g->valuedouble;
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(root, "logits_first_positions");
    for (const cJSON *p = lp ? lp->child : NULL; p && r->n_pos < 8; p = p->next) {
        r->pos[r->n_pos] = (int)cJSON_GetObjectItemCaseSensitive(p, "pos")->valuedouble;
        r->token[r->n_pos] = (int)cJSON_GetObjectItemCaseSensitive(p, "token")->valuedouble;
        int k = 0;
        for (const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, "logits")->child; v && k < 512; v = v->next)
            r->logits[r->n_pos][k++] = (float)v->valuedouble;
        r->n_pos++;
    }
    cJSON_Delete(root);
    if (r->n_ids != 200 || r->n_pos != 8) {
        fprintf(stderr, "%s: expected 200 ids and 8 logit rows (got %d, %d)\n", path, r->n_ids, r->n_pos);
        exit(1);
    }
}

/* Logits at positions 0..7 of the reference's own input, and greedy decoding from [1]. */
static void check_against_reference(const model *m, const reference *r, const char *label, int greedy) {
    rlhf_error err = {0};
    model_acts a = {0};
    const int T = 1 + r->n_ids;
    CHECK(model_acts_init(&a, &m->config, 1, T, &err) == 0, "%s: acts: %s", label, err.msg);
    if (!a.logits) return;
    const int V = m->config.vocab_size;
    int32_t toks[8];
    for (int i = 0; i < r->n_pos; i++) toks[i] = r->token[i];
    CHECK(model_forward(m, &a, toks, 1, r->n_pos, &err) == 0, "%s: forward: %s", label, err.msg);
    double worst = 0;
    for (int p = 0; p < r->n_pos; p++)
        for (int v = 0; v < V; v++) {
            double d = fabs((double)a.logits[(size_t)r->pos[p] * V + v] - r->logits[p][v]);
            if (d > worst) worst = d;
        }
    CHECK(worst <= LOGIT_TOL, "%s: logits at positions 0..7 within %g of llama2.c (max abs diff %.3g)", label, LOGIT_TOL, worst);
    fprintf(stderr, "%s: max |logit - llama2.c| over positions 0..7: %.3g\n", label, worst);

    /* greedy, recomputing the whole prefix each step (no KV cache) */
    int32_t seq[256] = {1};
    int n = 1, first_diff = -1;
    for (int step = 0; greedy && step < r->n_ids; step++) {
        if (model_forward(m, &a, seq, 1, n, &err)) {
            CHECK(0, "%s: forward at step %d: %s", label, step, err.msg);
            break;
        }
        const float *row = a.logits + (size_t)(n - 1) * V;
        int best = 0;
        for (int v = 1; v < V; v++)
            if (row[v] > row[best]) best = v;
        seq[n++] = best;
        if (best != r->ids[step] && first_diff < 0) first_diff = step;
    }
    if (greedy)
        CHECK(first_diff < 0, "%s: greedy decoding from [1] reproduces llama2.c's 200 ids (first difference at step %d)",
              label, first_diff);
    model_acts_free(&a);
}

static void copy_prefix(const char *src, const char *dst, long n, const void *append, size_t append_n) {
    char *buf = NULL;
    size_t len = 0;
    if (file_read_all(src, &buf, &len, NULL)) exit(1);
    FILE *fp = fopen(dst, "wb");
    fwrite(buf, 1, (size_t)n < len ? (size_t)n : len, fp);
    if (append_n) fwrite(append, 1, append_n, fp);
    fclose(fp);
    free(buf);
}

static void expect_fail(const char *label, const char *path, int code, const char *phrase, const char *phrase2) {
    model m;
    rlhf_error err = {0};
    int rc = llama2c_load(&m, path, MODEL_ROPE_HALF, &err);
    CHECK(rc == code, "%s: code %d (%s), expected %d: %s", label, rc, rlhf_strerror(rc), code, err.msg);
    CHECK(strstr(err.msg, path) != NULL, "%s: message names the file: %s", label, err.msg);
    if (phrase) CHECK(strstr(err.msg, phrase) != NULL, "%s: message says %s: %s", label, phrase, err.msg);
    if (phrase2) CHECK(strstr(err.msg, phrase2) != NULL, "%s: message says %s: %s", label, phrase2, err.msg);
    CHECK(m.params == NULL, "%s: model left zeroed", label);
    model_free(&m);
}

static void check_corrupt(const char *bin) {
    const long size = 1056540;
    const char *p = tmp_path("cut.bin");
    copy_prefix(bin, p, 20, NULL, 0);
    expect_fail("file shorter than the header", p, RLHF_ERR_FORMAT, "too small", NULL);
    copy_prefix(bin, p, 28, NULL, 0);
    expect_fail("header only", p, RLHF_ERR_FORMAT, "truncated", "\"token_embedding\" (model.embed_tokens.weight)");
    /* bytes 28 + 4*(32768 + 320 + 3*4096) + 100 fall in wq of layer 3 */
    copy_prefix(bin, p, 28 + 4 * (32768 + 320 + 3 * 4096) + 100, NULL, 0);
    expect_fail("cut inside wq of layer 3", p, RLHF_ERR_FORMAT, "\"wq\" of layer 3", "model.layers.3.self_attn.q_proj.weight");
    copy_prefix(bin, p, size - 1, NULL, 0);
    expect_fail("last byte missing", p, RLHF_ERR_FORMAT, "truncated", "freq_cis_imag");
    float four = 0;
    copy_prefix(bin, p, size, &four, 4);
    expect_fail("4 extra bytes", p, RLHF_ERR_FORMAT, "4 extra bytes", NULL);
    static float cls[512 * 64];
    copy_prefix(bin, p, size, cls, sizeof cls);
    expect_fail("an unshared classifier with a positive vocab_size", p, RLHF_ERR_FORMAT, "classifier", "negative");

    /* a NaN inside w2 of layer 4 */
    char *buf = NULL;
    size_t len = 0;
    file_read_all(bin, &buf, &len, NULL);
    size_t w2_l4 = 28 + 4 * (32768 + 320 + 5 * 4096 + 2 * 5 * 2048 + 5 * 4096 + 320 + 5 * 11008 + 4 * 11008);
    float nan = NAN;
    memcpy(buf + w2_l4 + 4 * 10, &nan, 4);
    FILE *fp = fopen(p, "wb");
    fwrite(buf, 1, len, fp);
    fclose(fp);
    expect_fail("NaN weight", p, RLHF_ERR_NUMERIC, "\"w2\" of layer 4", "model.layers.4.mlp.down_proj.weight");
    /* a header with 7 heads for dim 64 */
    int32_t seven = 7;
    memcpy(buf + 12, &seven, 4);
    fp = fopen(p, "wb");
    fwrite(buf, 1, len, fp);
    fclose(fp);
    expect_fail("impossible header", p, RLHF_ERR_FORMAT, "n_heads", NULL);
    int32_t zero = 0;
    memcpy(buf + 12, &zero, 4);
    fp = fopen(p, "wb");
    fwrite(buf, 1, len, fp);
    fclose(fp);
    expect_fail("zero heads", p, RLHF_ERR_FORMAT, "n_heads = 0", NULL);
    free(buf);
    expect_fail("missing file", tmp_path("nope.bin"), RLHF_ERR_NOT_FOUND, NULL, NULL);
}

int main(void) {
    const char *bin = test_data_path("stories260K/stories260K.bin");
    reference ref;
    load_reference(&ref);
    rlhf_error err = {0};
    model half, inter, conv;
    CHECK(llama2c_load(&half, bin, MODEL_ROPE_HALF, &err) == 0, "load (half-split): %s", err.msg);
    CHECK(llama2c_load(&inter, bin, MODEL_ROPE_INTERLEAVED, &err) == 0, "load (interleaved): %s", err.msg);
    if (!half.params || !inter.params) return test_finish("test_llama2c");
    const model_config *c = &half.config;
    CHECK(c->family == MODEL_FAMILY_LLAMA && c->dim == 64 && c->n_layers == 5 && c->n_heads == 8 && c->n_kv_heads == 4 &&
              c->ffn_dim == 172 && c->vocab_size == 512 && c->context == 512 && c->tied_embeddings && c->bos_id == 1,
          "stories260K config: dim 64, 5 layers, 8 heads, 4 kv heads, ffn 172, vocab 512, context 512, tied");
    CHECK(half.n_params == 260032, "260032 parameters (got %zu)", half.n_params);
    CHECK(half.config.rope_layout == MODEL_ROPE_HALF && inter.config.rope_layout == MODEL_ROPE_INTERLEAVED, "layouts recorded");

    /* the permutation: half row h*HS + t*HS/2 + i is interleaved row h*HS + 2i + t */
    int bad = 0;
    const int HS = 8;
    for (int l = 0; l < 5; l++) {
        const char *names[2] = {"q_proj", "k_proj"};
        for (int w = 0; w < 2; w++) {
            char name[96];
            snprintf(name, sizeof name, "model.layers.%d.self_attn.%s.weight", l, names[w]);
            const model_tensor *t = model_find_tensor(&half, name);
            const float *ph = half.params + t->offset, *pi = inter.params + t->offset;
            for (int h = 0; h < (int)t->shape[0] / HS; h++)
                for (int tt = 0; tt < 2; tt++)
                    for (int i = 0; i < HS / 2; i++)
                        bad += memcmp(ph + (size_t)(h * HS + tt * HS / 2 + i) * 64, pi + (size_t)(h * HS + 2 * i + tt) * 64,
                                      64 * sizeof(float)) != 0;
        }
    }
    CHECK(bad == 0, "q/k rows permuted from interleaved pairs to half-split (%d rows misplaced)", bad);
    const model_tensor *v0 = model_find_tensor(&half, "model.layers.0.self_attn.v_proj.weight");
    CHECK(memcmp(half.params + v0->offset, inter.params + v0->offset, v0->numel * 4) == 0, "v_proj is not permuted");

    /* converted to a Hugging Face directory and back: bit-identical, plain HF Llama config */
    const char *dir = tmp_path("stories260K-hf");
    CHECK(checkpoint_save(&half, dir, &err) == 0, "save converted: %s", err.msg);
    CHECK(checkpoint_load(&conv, dir, &err) == 0, "reload converted: %s", err.msg);
    CHECK(conv.params && memcmp(conv.params, half.params, half.n_floats * 4) == 0, "converted directory reloads bit-identical");
    model any;
    CHECK(checkpoint_load_any(&any, bin, &err) == 0 && any.config.rope_layout == MODEL_ROPE_HALF &&
              memcmp(any.params, half.params, half.n_floats * 4) == 0,
          "checkpoint_load_any reads a .bin as the half-split conversion: %s", err.msg);
    model_free(&any);

    /* greedy decoding once, on the load every command uses; the converted directory is
     * bit-identical to it and the interleaved load is checked on the logits */
    check_against_reference(&half, &ref, "stories260K.bin (q/k permuted, half-split RoPE)", 1);
    check_against_reference(&inter, &ref, "stories260K.bin (interleaved RoPE)", 0);
    if (conv.params) check_against_reference(&conv, &ref, "converted HF directory", 0);

    check_corrupt(bin);
    model_free(&half);
    model_free(&inter);
    model_free(&conv);
    cleanup_tmpdir();
    return test_finish("test_llama2c");
}
