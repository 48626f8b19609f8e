/* test_score.c — sequence classifiers: the score head's properties and classifier directories.
 * (Numerical agreement with PyTorch is tests/reference/score_torch.py.) */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "src/core/fileio.h"
#include "src/formats/checkpoint.h"
#include "src/gen/generate.h"
#include "src/train/score_head.h"
#include "src/train/score_train.h"
#include "tests/test_util.h"

static void make_lm(model *m, model_family f, int vocab) {
    model_config c;
    model_config_defaults(&c, f);
    c.n_layers = 2;
    c.dim = 16;
    c.n_heads = 2;
    c.n_kv_heads = f == MODEL_FAMILY_LLAMA ? 1 : 2;
    c.ffn_dim = 32;
    c.vocab_size = vocab;
    c.context = 32;
    rlhf_error err = {0};
    CHECK(model_init(m, &c, &err) == 0, "%s", err.msg);
    rng_t r;
    rng_seed(&r, 3);
    model_init_random(m, &r);
}

static void write_text(const char *path, const char *text) {
    rlhf_error err = {0};
    CHECK(file_write_atomic(path, text, strlen(text), &err) == 0, "%s", err.msg);
}

/* Replaces the first occurrence of `from` in dir/config.json by `to`. */
static void edit_config(const char *dir, const char *from, const char *to) {
    char path[4300], *text = NULL, out[16384];
    size_t len = 0;
    rlhf_error err = {0};
    snprintf(path, sizeof path, "%s/config.json", dir);
    CHECK(file_read_all(path, &text, &len, &err) == 0, "%s", err.msg);
    char *at = text ? strstr(text, from) : NULL;
    CHECK(at != NULL, "config has %s", from);
    if (at) {
        snprintf(out, sizeof out, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
        write_text(path, out);
    }
    free(text);
}

static void test_directory(model_family f) {
    model lm, m, back;
    rlhf_error err = {0};
    make_lm(&lm, f, 40);
    rng_t r;
    rng_seed(&r, 9);
    CHECK(score_model_from_lm(&m, &lm, 3, 5, 0.02f, &r, &err) == 0, "%s", err.msg);
    CHECK(model_find_tensor(&m, "score.weight") && !model_find_tensor(&m, "lm_head.weight"), "score, no lm_head");
    CHECK(m.w.lm_head == NULL && m.w.score != NULL, "weights view: score only");
    const model_tensor *emb = model_find_tensor(&m, f == MODEL_FAMILY_GPT2 ? "transformer.wte.weight" : "model.embed_tokens.weight");
    CHECK(emb && memcmp(m.params + emb->offset, lm.params + emb->offset, emb->numel * sizeof(float)) == 0, "body copied");
    CHECK(score_model_from_lm(&back, &m, 2, 0, 0.02f, &r, &err) == RLHF_ERR_INVALID, "a classifier is not an initial LM");

    char dir[4200];
    snprintf(dir, sizeof dir, "%s/cls-%s", test_tmpdir(), model_family_name(f));
    const char *labels[3] = {"spam", "ham \"quoted\"", "other"};
    CHECK(checkpoint_save_labeled(&m, dir, labels, &err) == 0, "%s", err.msg);
    CHECK(checkpoint_load(&back, dir, &err) == 0, "%s", err.msg);
    CHECK(back.config.num_labels == 3 && back.config.pad_id == 5, "num_labels %d pad %d", back.config.num_labels,
          (int)back.config.pad_id);
    CHECK(back.n_floats == m.n_floats && memcmp(back.params, m.params, m.n_floats * sizeof(float)) == 0, "weights round-trip");
    char **got = NULL;
    CHECK(checkpoint_labels_read(dir, &back.config, &got, &err) == 0, "%s", err.msg);
    for (int i = 0; got && i < 3; i++) CHECK(strcmp(got[i], labels[i]) == 0, "label %d: %s", i, got[i]);
    checkpoint_labels_free(got, 3);

    /* a classifier computes no logits and cannot generate */
    model_acts a;
    CHECK(model_acts_init(&a, &back.config, 2, 8, &err) == 0, "%s", err.msg);
    CHECK(a.logits == NULL, "no logits buffer");
    int32_t toks[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    CHECK(model_forward(&back, &a, toks, 2, 8, &err) == 0, "%s", err.msg);
    float s1[6], s2[3];
    int32_t lens[2] = {8, 3};
    CHECK(score_head_forward(&back, &a, lens, 2, s1, &err) == 0, "%s", err.msg);
    /* causal: row 1 read at position 2 equals a forward over its first 3 tokens alone */
    CHECK(model_forward(&back, &a, toks + 8, 1, 3, &err) == 0, "%s", err.msg);
    int32_t l3 = 3;
    CHECK(score_head_forward(&back, &a, &l3, 1, s2, &err) == 0, "%s", err.msg);
    for (int k = 0; k < 3; k++) CHECK_CLOSE(s1[3 + k], s2[k], 1e-5, 1e-4, "padding does not change the score");
    int32_t bad = 9;
    CHECK(score_head_forward(&back, &a, &bad, 1, s2, &err) == RLHF_ERR_INVALID, "a length past the forward is refused");
    float dummy = 0;
    CHECK(model_backward(&back, &a, &dummy, NULL, &err) == RLHF_ERR_INVALID, "no d(logits) for a classifier");
    gen_decoder d;
    CHECK(gen_decoder_init(&d, &back, 1, 8, &err) == RLHF_ERR_INVALID && strstr(err.msg, "classifier"), "generation refused: %s",
          err.msg);
    model_acts_free(&a);
    model_free(&back);

    /* config.json checks name the field */
    edit_config(dir, "\"num_labels\": 3", "\"num_labels\": 4");
    CHECK(checkpoint_load(&back, dir, &err) != 0 && strstr(err.msg, "num_labels") && strstr(err.msg, "id2label"),
          "num_labels vs id2label: %s", err.msg);
    edit_config(dir, "\"num_labels\": 4", "\"num_labels\": 3");
    edit_config(dir, "\"pad_token_id\": 5", "\"pad_token_id\": 400");
    CHECK(checkpoint_load(&back, dir, &err) != 0 && strstr(err.msg, "pad_token_id"), "bad pad: %s", err.msg);
    edit_config(dir, "\"pad_token_id\": 400", "\"pad_token_id\": 5");
    /* the same weights under an LM config: score.weight is not part of an LM */
    edit_config(dir, "ForSequenceClassification", f == MODEL_FAMILY_GPT2 ? "LMHeadModelX" : "ForCausalLMX");
    CHECK(checkpoint_load(&back, dir, &err) != 0 && strstr(err.msg, "score.weight"), "LM config refuses score.weight: %s", err.msg);
    model_free(&m);
    model_free(&lm);
}

/* The classification loss by hand on known scores: the head's loss equals -log softmax. */
static void test_losses(void) {
    model lm, m;
    rlhf_error err = {0};
    make_lm(&lm, MODEL_FAMILY_LLAMA, 40);
    rng_t r;
    rng_seed(&r, 4);
    CHECK(score_model_from_lm(&m, &lm, 1, 0, 0.5f, &r, &err) == 0, "%s", err.msg);
    model_acts a;
    CHECK(model_acts_init(&a, &m.config, 4, 8, &err) == 0, "%s", err.msg);
    score_head h;
    CHECK(score_head_init(&h, &m, 4, 8, &err) == 0, "%s", err.msg);
    train_batch b;
    CHECK(train_batch_alloc(&b, 4, 8, &err) == 0, "%s", err.msg);
    for (int i = 0; i < 32; i++) b.tokens[i] = 1 + (i * 7) % 39;
    int32_t lens[4] = {8, 5, 6, 2};
    memcpy(b.lengths, lens, sizeof lens);
    b.labels[0] = 0.3f; /* margin of pair 0 */
    b.labels[2] = 0.0f;
    CHECK(model_forward(&m, &a, b.tokens, 4, 8, &err) == 0, "%s", err.msg);
    float s[4];
    CHECK(score_head_forward(&m, &a, b.lengths, 4, s, &err) == 0, "%s", err.msg);
    train_head head = score_head_pairs(&h);
    h.center_coef = 0.1f;
    train_head_out o = {0};
    const float *dl = NULL, *dh = NULL;
    CHECK(head.loss(head.self, &m, &a, &b, 1, &dl, &dh, &o, &err) == 0, "%s", err.msg);
    double want = 0;
    for (int i = 0; i < 2; i++) {
        double d = (double)s[2 * i] - s[2 * i + 1] - b.labels[2 * i];
        want += log1p(exp(-d)) + 0.1 * pow((double)s[2 * i] + s[2 * i + 1], 2);
    }
    CHECK_CLOSE(o.loss, want / 2, 1e-6, 1e-5, "Bradley-Terry with margin and centring");
    CHECK(dl == NULL && dh == h.dhidden, "the head hands back d(hidden)");
    /* odd rows are refused */
    b.B = 3;
    CHECK(head.loss(head.self, &m, &a, &b, 0, NULL, NULL, &o, &err) == RLHF_ERR_INVALID, "odd pair batch refused");
    score_head_free(&h);
    train_batch_free(&b);
    model_acts_free(&a);
    model_free(&m);
    model_free(&lm);
}

/* A 2-label classifier from a random Llama and 8 learnable texts, and a 5-step run over them. */
typedef struct {
    model lm;
    model_bundle b;
    score_data d;
    size_t idx[8];
    score_train_params p;
    char dir[4200];
} small_run;

static void small_run_init(small_run *s, const char *name) {
    rlhf_error err = {0};
    memset(s, 0, sizeof *s);
    make_lm(&s->lm, MODEL_FAMILY_LLAMA, 256);
    rng_t r;
    rng_seed(&r, 5);
    CHECK(score_model_from_lm(&s->b.m, &s->lm, 2, 0, 0.5f, &r, &err) == 0, "%s", err.msg);
    CHECK(tok_new_bytes(&s->b.tok, &err) == 0, "%s", err.msg);
    score_data_init(&s->d, 1);
    const char *texts[2] = {"good morning", "buy cheap pills"};
    for (int i = 0; i < 8; i++) {
        float y = (float)(i % 2);
        CHECK(score_data_add(&s->d, s->b.tok, 0, &texts[i % 2], &y, (size_t)i + 1, 32, SCORE_TRUNCATE_ERROR, 256, &err) == 0,
              "%s", err.msg);
        s->idx[i] = (size_t)i;
    }
    score_train_params *p = &s->p;
    p->task = SCORE_TASK_CLASSIFY;
    p->bundle = &s->b;
    p->data = &s->d;
    p->train_idx = s->idx;
    p->n_train = 8;
    train_params_defaults(&p->train);
    p->train.batch = 4;
    p->train.optim.lr = 1e-2f;
    p->train.optim.min_lr = 1e-3f;
    p->steps = 5;
    p->seed = 1;
    snprintf(s->dir, sizeof s->dir, "%s/%s", test_tmpdir(), name);
    p->out_dir = s->dir;
}

static void small_run_free(small_run *s) {
    score_data_free(&s->d);
    model_bundle_free(&s->b);
    model_free(&s->lm);
}

/* --freeze-body: only score.weight moves; the body stays bit-identical; the model is unfrozen after. */
static void test_freeze_body(void) {
    rlhf_error err = {0};
    small_run s;
    small_run_init(&s, "frozen-run");
    model *m = &s.b.m;
    float *before = malloc(m->n_floats * sizeof(float));
    memcpy(before, m->params, m->n_floats * sizeof(float));
    s.p.freeze_body = 1;
    train_loop_summary sum;
    CHECK(score_train_run(&s.p, &sum, &err) == 0, "%s", err.msg);
    const model_tensor *st = model_find_tensor(m, "score.weight");
    int body_same = 1, score_moved = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        int same = memcmp(before + t->offset, m->params + t->offset, t->numel * sizeof(float)) == 0;
        if (t == st) score_moved = !same;
        else body_same &= same;
    }
    CHECK(body_same, "the frozen body is bit-identical after training");
    CHECK(score_moved, "score.weight trained");
    CHECK(m->frozen == 0, "the model is not left frozen");
    free(before);
    small_run_free(&s);
}

/* LoRA (PEFT modules_to_save = ["score"]): no base gradient buffer, the score trains in the
 * adapter's buffer and comes home, only the targeted linears change (the merge), the adapter
 * directory loads (base given) as exactly the model the run ended with. */
static void test_lora(void) {
    rlhf_error err = {0};
    small_run s;
    small_run_init(&s, "lora-run");
    model *m = &s.b.m;
    char base[4300];
    snprintf(base, sizeof base, "%s/lora-base", test_tmpdir());
    model_bundle lmb = {0};
    lmb.m = s.lm;
    lmb.tok = s.b.tok;
    CHECK(model_bundle_save(&lmb, base, &err) == 0, "%s", err.msg);
    float *before = malloc(m->n_floats * sizeof(float));
    memcpy(before, m->params, m->n_floats * sizeof(float));
    lora_params_defaults(&s.p.lora);
    s.p.lora.rank = 4;
    s.p.lora.targets = "q_proj,down_proj";
    s.p.base_model = base;
    train_loop_summary sum;
    CHECK(score_train_run(&s.p, &sum, &err) == 0, "%s", err.msg);
    CHECK(m->grads == NULL, "no gradient buffer for the base (LoRA)");
    CHECK(m->lora == NULL && m->frozen == 0, "the adapter is detached and the model unfrozen after");
    const model_tensor *st = model_find_tensor(m, "score.weight");
    CHECK(m->w.score == m->params + st->offset, "score.weight points into the model's own buffer again");
    int others_same = 1, targets_moved = 1, score_moved = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        const int same = memcmp(before + t->offset, m->params + t->offset, t->numel * sizeof(float)) == 0;
        if (t == st) score_moved = !same;
        else if (strstr(t->name, "q_proj") || strstr(t->name, "down_proj")) targets_moved &= !same;
        else others_same &= same;
    }
    CHECK(score_moved, "score.weight trained");
    CHECK(targets_moved, "every targeted linear changed (the adapter merged into it)");
    CHECK(others_same, "every other tensor (embeddings, norms, k/v/o, gate/up) is bit-identical");
    model_bundle back = {0};
    CHECK(score_model_load_adapter(&back, s.dir, base, &err) == 0, "%s", err.msg);
    double worst = 0;
    for (size_t i = 0; back.m.n_floats == m->n_floats && i < m->n_floats; i++)
        worst = fmax(worst, fabs((double)back.m.params[i] - m->params[i]));
    CHECK(back.m.n_floats == m->n_floats && worst <= 1e-6, "the adapter directory loads as the trained model (max diff %g, "
          "tolerance 1e-6)", worst);
    CHECK(back.labels && back.m.config.num_labels == 2, "labels come back from %s", SCORE_CLASSIFIER_FILE);
    model_bundle_free(&back);
    free(before);
    small_run_free(&s);
}

int main(void) {
    test_freeze_body();
    test_lora();
    test_directory(MODEL_FAMILY_GPT2);
    test_directory(MODEL_FAMILY_LLAMA);
    test_losses();
    return test_finish("score");
}
