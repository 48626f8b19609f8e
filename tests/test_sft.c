/* test_sft.c — SFT encoding and batching (src/train/sft_data.c), checked on the decoded text of
 * the tokens that get loss:
 *   - prompt/completion: exactly the completion and the appended EOS; EOS not doubled;
 *   - messages through a Llama-3-style template with the real Llama 3 tokenizer (special tokens
 *     as single ids): exactly each assistant reply with its <|eot_id|>, no header, no user or
 *     system text; the template-less HH format likewise;
 *   - truncation keep_start / keep_end / error, and examples left without loss dropped;
 *   - the data source: split disjoint and complete, each epoch visits every training example
 *     once, a step's batch is the same whenever it is asked for (resume), padding has no loss;
 *   - "eos": false (endless examples): the ids stop after the reply, no end marker or EOS target;
 *   - JSONL errors by line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "src/tok/tokenizer.h"
#include "src/train/sft.h"
#include "test_util.h"

static void add_pc(sft_texts *t, const char *p, const char *c) {
    t->items = realloc(t->items, (t->n + 1) * sizeof *t->items);
    memset(&t->items[t->n], 0, sizeof t->items[0]);
    t->items[t->n].prompt = strdup(p);
    t->items[t->n].completion = strdup(c);
    t->n++;
    t->cap = t->n;
}

static void add_msgs(sft_texts *t, const char *json) {
    t->items = realloc(t->items, (t->n + 1) * sizeof *t->items);
    memset(&t->items[t->n], 0, sizeof t->items[0]);
    t->items[t->n].messages_json = strdup(json);
    t->n++;
    t->cap = t->n;
}

/* The loss runs of example i decoded and joined with "|". */
static void loss_text(const sft_encoded *e, size_t i, const tokenizer *tok, char *out, size_t size) {
    const int32_t *ids = e->ids + e->start[i];
    const uint8_t *loss = e->loss + e->start[i];
    size_t n = (size_t)e->len[i], a = 0, pos = 0;
    out[0] = 0;
    while (a < n) {
        size_t b = a;
        while (b < n && loss[b] == loss[a]) b++;
        if (loss[a]) {
            char *txt = NULL;
            size_t len = 0;
            if (tok_decode(tok, ids + a, b - a, &txt, &len, NULL) == 0) {
                pos += (size_t)snprintf(out + pos, size - pos, "%s%s", pos ? "|" : "", txt);
                free(txt);
            }
            if (pos >= size) return;
        }
        a = b;
    }
}

/* Llama 3's template with the generation prompt only when asked (the shared file's version
 * writes it always; see README). */
static const char *const k_llama3_tmpl =
    "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + "
    "m['content'] + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

static void test_llama3(void) {
    tokenizer *tok = NULL;
    int rc = tok_load(&tok, test_data_path("llama3-tokenizer/tokenizer.json"), NULL);
    CHECK(rc == 0 && tok, "llama3 tokenizer loads");
    if (rc) return;
    int32_t eos = tok_special_id(tok, "<|end_of_text|>");
    CHECK(eos >= 0, "llama3 has <|end_of_text|>");
    const char *tmpl = k_llama3_tmpl;
    sft_texts t = {0};
    add_msgs(&t, "[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hello there\"},"
                 "{\"role\":\"assistant\",\"content\":\"Hi! How can I help?\"},{\"role\":\"user\",\"content\":\"Add 2 "
                 "and 3\"},{\"role\":\"assistant\",\"content\":\"5\"}]");
    add_msgs(&t, "[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"},"
                 "{\"role\":\"user\",\"content\":\"no reply\"}]");
    add_pc(&t, "The capital of France is", " Paris.");
    add_pc(&t, "Say stop:", " stop<|end_of_text|>");
    /* A conversational prompt (TRL's prompt/completion as message lists): its own assistant
     * turn is context, only the completion's reply is trained. */
    add_msgs(&t, "[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"old\"},"
                 "{\"role\":\"user\",\"content\":\"c\"},{\"role\":\"assistant\",\"content\":\"new\"}]");
    t.items[t.n - 1].n_context = 3;
    sft_encoder enc = {tok, tmpl, "<|begin_of_text|>", "<|end_of_text|>", 0, eos, 512, SFT_TRUNCATE_KEEP_START};
    sft_encoded e;
    rc = sft_encode(&e, &t, &enc, "t", NULL);
    CHECK(rc == 0 && e.n == 5, "five examples encode (%d, %zu)", rc, e.n);
    if (rc == 0) {
        char buf[1024];
        loss_text(&e, 0, tok, buf, sizeof buf);
        CHECK(strcmp(buf, "Hi! How can I help?<|eot_id|>|5<|eot_id|><|end_of_text|>") == 0,
              "chat: loss on exactly the assistant replies, their end marker and EOS: '%s'", buf);
        loss_text(&e, 1, tok, buf, sizeof buf);
        CHECK(strcmp(buf, "b<|eot_id|>") == 0, "chat ending with a user turn: the reply only, EOS not trained: '%s'", buf);
        const int32_t *ids = e.ids + e.start[1];
        CHECK(ids[e.len[1] - 1] == eos && !e.loss[e.start[1] + (size_t)e.len[1] - 1], "EOS appended but not trained");
        CHECK(ids[0] == tok_special_id(tok, "<|begin_of_text|>"), "the template's BOS text is one id");
        loss_text(&e, 2, tok, buf, sizeof buf);
        CHECK(strcmp(buf, " Paris.<|end_of_text|>") == 0, "prompt/completion: completion and EOS: '%s'", buf);
        loss_text(&e, 3, tok, buf, sizeof buf);
        /* Plain text is encoded without special tokens: the typed "<|end_of_text|>" is text, EOS
         * is still appended. */
        CHECK(strstr(buf, "<|end_of_text|><|end_of_text|>") != NULL && e.ids[e.start[3] + (size_t)e.len[3] - 1] == eos,
              "a typed EOS in plain text stays text; the real EOS is appended: '%s'", buf);
        CHECK(e.n_eos_added == 5, "EOS appended to every example (%zu)", e.n_eos_added);
        loss_text(&e, 4, tok, buf, sizeof buf);
        CHECK(strcmp(buf, "new<|eot_id|><|end_of_text|>") == 0, "conversational prompt: only the completion: '%s'", buf);
    }
    sft_encoded_free(&e);
    /* The shared file's own Llama 3 template writes the generation prompt even when not asked:
     * it must not end up in the reply's loss. */
    FILE *f = fopen(test_data_path("llama3-tokenizer/tokenizer_config.json"), "rb");
    char *cfg = calloc(1, 1 << 20);
    size_t got = f && cfg ? fread(cfg, 1, (1 << 20) - 1, f) : 0;
    if (f) fclose(f);
    cJSON *root = got ? cJSON_Parse(cfg) : NULL;
    const char *real = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "chat_template"));
    CHECK(real != NULL, "the llama3 tokenizer_config has a chat template");
    if (real) {
        enc.chat_template = real;
        rc = sft_encode(&e, &t, &enc, "t", NULL);
        CHECK(rc == 0, "encode with the real template");
        if (!rc) {
            char buf[1024];
            loss_text(&e, 0, tok, buf, sizeof buf);
            CHECK(strcmp(buf, "Hi! How can I help?<|eot_id|>|5<|eot_id|><|end_of_text|>") == 0,
                  "a template that always writes the generation prompt: not in the loss, not before EOS: '%s'", buf);
        }
        sft_encoded_free(&e);
    }
    cJSON_Delete(root);
    free(cfg);
    sft_texts_free(&t);
    tok_close(&tok);
}

/* "eos": false (the task world's endless answers): the example stops right after the reply, so
 * neither the end-of-turn marker nor EOS is a target; the same reply without the mark keeps both. */
static void test_endless(void) {
    tokenizer *tok = NULL;
    int rc = tok_load(&tok, test_data_path("llama3-tokenizer/tokenizer.json"), NULL);
    CHECK(rc == 0 && tok, "llama3 tokenizer loads");
    if (rc) return;
    int32_t eos = tok_special_id(tok, "<|end_of_text|>"), eot = tok_special_id(tok, "<|eot_id|>");
    const char *tmpl = k_llama3_tmpl;
    const char *chat = "[{\"role\":\"user\",\"content\":\"Add 2 and 3\"},{\"role\":\"assistant\",\"content\":\"5\\nUser: "
                       "Hi\\nAssistant: Hello\"}]";
    sft_texts t = {0};
    add_msgs(&t, chat);
    t.items[0].no_eos = 1;
    add_msgs(&t, chat);
    add_pc(&t, "Add 2 and 3:", " 5 and 6 and 7");
    t.items[2].no_eos = 1;
    sft_encoder enc = {tok, tmpl, "<|begin_of_text|>", "<|end_of_text|>", 0, eos, 512, SFT_TRUNCATE_KEEP_START};
    sft_encoded e;
    rc = sft_encode(&e, &t, &enc, "t", NULL);
    CHECK(rc == 0 && e.n == 3, "three examples encode (%d, %zu)", rc, e.n);
    if (rc == 0) {
        char buf[1024];
        loss_text(&e, 0, tok, buf, sizeof buf);
        CHECK(strcmp(buf, "5\nUser: Hi\nAssistant: Hello") == 0, "endless chat: the reply is trained, nothing after: '%s'", buf);
        size_t last = e.start[0] + (size_t)e.len[0] - 1;
        CHECK(e.ids[last] != eos && e.ids[last] != eot && e.loss[last], "endless chat: the ids end with the reply's last token");
        loss_text(&e, 1, tok, buf, sizeof buf);
        CHECK(strcmp(buf, "5\nUser: Hi\nAssistant: Hello<|eot_id|><|end_of_text|>") == 0,
              "the same reply without \"eos\": false ends with its marker and EOS: '%s'", buf);
        loss_text(&e, 2, tok, buf, sizeof buf);
        CHECK(strcmp(buf, " 5 and 6 and 7") == 0 && e.ids[e.start[2] + (size_t)e.len[2] - 1] != eos,
              "endless prompt/completion: no EOS target: '%s'", buf);
        CHECK(e.n_eos_added == 1, "EOS appended only to the example that ends (%zu)", e.n_eos_added);
    }
    sft_encoded_free(&e);
    sft_texts_free(&t);
    tok_close(&tok);
}

static void test_bytes(void) {
    tokenizer *tok = NULL;
    CHECK(tok_new_bytes(&tok, NULL) == 0, "byte tokenizer");
    sft_texts t = {0};
    add_pc(&t, "abcdef", "XY");                /* 9 ids with EOS */
    add_pc(&t, "0123456789012345678901234567890123456789", "Z"); /* 42 ids: cut */
    add_msgs(&t, "[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"A\"}]");
    add_pc(&t, "p", "\x01");                   /* EOS id 1 here: already ends with EOS */
    sft_encoder enc = {tok, NULL, NULL, NULL, 0, 1, 28, SFT_TRUNCATE_KEEP_START};
    sft_encoded e;
    int rc = sft_encode(&e, &t, &enc, "b", NULL);
    CHECK(rc == 0, "encode");
    if (!rc) {
        /* keep_start cuts the completion of example 2 away: dropped. */
        CHECK(e.n == 3 && e.n_truncated == 1 && e.n_dropped == 1, "keep_start: 1 truncated, 1 dropped (%zu %zu %zu)",
              e.n, e.n_truncated, e.n_dropped);
        char buf[256];
        loss_text(&e, 1, tok, buf, sizeof buf);
        CHECK(strcmp(buf, " A\x01") == 0, "HH format: the reply (with its leading space, after the generation prompt \"\\n\\nAssistant:\") and EOS get loss ('%s')", buf);
        CHECK(e.len[2] == 2 && e.n_eos_added == 3, "an example ending with EOS gets no second one (len %d, added %zu)",
              e.len[2], e.n_eos_added);
    }
    sft_encoded_free(&e);
    enc.truncate = SFT_TRUNCATE_KEEP_END;
    rc = sft_encode(&e, &t, &enc, "b", NULL);
    CHECK(rc == 0 && e.n == 4 && e.n_dropped == 0, "keep_end keeps the completion of the long example");
    if (!rc) {
        CHECK(e.len[1] == 28 && e.ids[e.start[1] + 27] == 1 && e.ids[e.start[1] + 26] == 'Z' && !e.loss[e.start[1]],
              "keep_end: the last 28 ids, the first without loss");
    }
    sft_encoded_free(&e);
    enc.truncate = SFT_TRUNCATE_ERROR;
    rlhf_error err = {0};
    t.items[1].line = 7;
    rc = sft_encode(&e, &t, &enc, "data.jsonl", &err);
    CHECK(rc == RLHF_ERR_INVALID && strstr(err.msg, "data.jsonl:7:") && strstr(err.msg, "42 tokens"),
          "error mode names file:line and length: %s", err.msg);
    sft_texts_free(&t);

    /* The data source. */
    sft_texts many = {0};
    for (int i = 0; i < 23; i++) {
        char p[32], c[32];
        snprintf(p, sizeof p, "p%d", i);
        snprintf(c, sizeof c, "c%d", i % 7);
        add_pc(&many, p, c);
    }
    enc.truncate = SFT_TRUNCATE_KEEP_START;
    enc.max_length = 32;
    CHECK(sft_encode(&e, &many, &enc, "m", NULL) == 0 && e.n == 23, "23 examples");
    sft_source s;
    CHECK(sft_source_init(&s, &e, 0.2, 9, 4, 1, 0, NULL) == 0, "source");
    CHECK(s.n_train + s.n_val == 23 && s.n_val == 4, "split 19 + 4 (%zu + %zu)", s.n_train, s.n_val);
    int seen[23] = {0};
    for (size_t i = 0; i < s.n_train; i++) seen[s.train[i]]++;
    for (size_t i = 0; i < s.n_val; i++) seen[s.val[i]] += 10;
    int ok = 1;
    for (int i = 0; i < 23; i++) ok &= seen[i] == 1 || seen[i] == 10;
    CHECK(ok, "train and validation are disjoint and cover every example");
    train_data d = sft_source_data(&s);
    train_batch b;
    CHECK(train_batch_alloc(&b, 4, 31, NULL) == 0, "batch");
    /* Steps 0..18 draw 76 rows = 4 epochs of 19: each epoch is a permutation. */
    int count[4][23];
    memset(count, 0, sizeof count);
    int32_t first[4 * 31];
    int pad_ok = 1;
    for (long step = 0; step < 19; step++) {
        b.B = 4;
        b.T = 31;
        d.fill(d.ctx, step, 0, NULL, &b, NULL);
        if (step == 3) memcpy(first, b.tokens, sizeof first);
        for (int r = 0; r < 4; r++) {
            long g = step * 4 + r;
            /* recover the example from its tokens ("p<i>"): find it */
            for (size_t i = 0; i < e.n; i++)
                if (e.len[i] - 1 == b.lengths[r] && memcmp(e.ids + e.start[i], b.tokens + (size_t)r * b.T,
                                                           (size_t)b.lengths[r] * sizeof(int32_t)) == 0)
                    count[g / 19][i]++;
            for (int p = b.lengths[r]; p < b.T; p++) pad_ok &= b.targets[(size_t)r * b.T + p] < 0;
        }
    }
    int perm_ok = 1;
    for (int ep = 0; ep < 4; ep++)
        for (size_t i = 0; i < s.n_train; i++) perm_ok &= count[ep][s.train[i]] == 1;
    CHECK(perm_ok, "every epoch visits each training example exactly once");
    CHECK(pad_ok, "padding positions have no loss");
    b.B = 4;
    b.T = 31;
    d.fill(d.ctx, 3, 0, NULL, &b, NULL);
    CHECK(b.T <= 31 && memcmp(first, b.tokens, (size_t)b.B * (size_t)b.T * sizeof(int32_t)) == 0,
          "step 3's batch is the same when asked again after later steps (resume)");
    CHECK(d.n_val == 1, "4 validation examples in one micro-batch of 4 (%d)", d.n_val);
    train_batch_free(&b);
    sft_source_free(&s);
    sft_encoded_free(&e);
    sft_texts_free(&many);
    tok_close(&tok);
}

static void test_jsonl(void) {
    const char *path = "test_sft_tmp.jsonl";
    FILE *f = fopen(path, "w");
    fputs("{\"prompt\":\"a\",\"completion\":\"b\"}\n\n  \n{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},"
          "{\"role\":\"assistant\",\"content\":\"y\"}]}\n{\"prompt\":\"a\",\"completion\":3}\n",
          f);
    fclose(f);
    sft_texts t;
    rlhf_error err = {0};
    int rc = sft_texts_read_jsonl(&t, path, &err);
    CHECK(rc == RLHF_ERR_FORMAT && strstr(err.msg, "test_sft_tmp.jsonl:5:") && strstr(err.msg, "completion"),
          "a non-string completion is refused by line: %s", err.msg);
    CHECK(t.n == 0 && t.items == NULL, "nothing is kept on error");
    f = fopen(path, "w");
    fputs("{\"prompt\":\"a\",\"completion\":\"b\"}\n\n{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},"
          "{\"role\":\"assistant\",\"content\":\"y\"}]}",
          f);
    fclose(f);
    rc = sft_texts_read_jsonl(&t, path, &err);
    CHECK(rc == 0 && t.n == 2 && t.items[1].line == 3 && t.items[1].messages_json && t.items[0].completion,
          "two examples, blank lines skipped, line numbers kept");
    sft_texts_free(&t);
    f = fopen(path, "w");
    fputs("{\"prompt\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":\"y\"},"
          "{\"role\":\"user\",\"content\":\"z\"}],\"completion\":[{\"role\":\"assistant\",\"content\":\"w\"}]}\n",
          f);
    fclose(f);
    rc = sft_texts_read_jsonl(&t, path, &err);
    CHECK(rc == 0 && t.n == 1 && t.items[0].n_context == 3 && strstr(t.items[0].messages_json, "\"w\""),
          "conversational prompt/completion: one conversation, 3 context messages");
    sft_texts_free(&t);
    f = fopen(path, "w");
    fputs("{\"prompt\":[{\"role\":\"user\",\"content\":\"x\"}],\"completion\":\"w\"}\n"
          "{\"prompt\":[{\"role\":\"user\",\"content\":\"x\"}],\"completion\":[{\"role\":\"user\",\"content\":\"w\"}]}\n",
          f);
    fclose(f);
    rc = sft_texts_read_jsonl(&t, path, &err);
    CHECK(rc == RLHF_ERR_FORMAT && strstr(err.msg, ":1: \"prompt\" and \"completion\" must both be"),
          "a list prompt with a string completion is refused: %s", err.msg);
    f = fopen(path, "w");
    fputs("{\"prompt\":\"a\",\"completion\":\"b\",\"eos\":false}\n"
          "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":\"y\"}],\"eos\":false}\n"
          "{\"prompt\":\"a\",\"completion\":\"b\",\"eos\":true}\n",
          f);
    fclose(f);
    rc = sft_texts_read_jsonl(&t, path, &err);
    CHECK(rc == 0 && t.n == 3 && t.items[0].no_eos && t.items[1].no_eos && !t.items[2].no_eos,
          "\"eos\": false is read on both forms, true is the default");
    sft_texts_free(&t);
    f = fopen(path, "w");
    fputs("{\"prompt\":\"a\",\"completion\":\"b\"}\n{\"prompt\":\"a\",\"completion\":\"b\",\"eos\":\"no\"}\n", f);
    fclose(f);
    rc = sft_texts_read_jsonl(&t, path, &err);
    CHECK(rc == RLHF_ERR_FORMAT && strstr(err.msg, ":2: \"eos\" must be true or false"), "a non-boolean eos is refused by line: %s",
          err.msg);
    remove(path);
}

int main(void) {
    test_llama3();
    test_endless();
    test_bytes();
    test_jsonl();
    return test_finish("sft");
}
