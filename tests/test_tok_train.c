/* test_tok_train.c — training a byte-level BPE vocabulary.
 *
 * On tinyshakespeare, 4096 ids: fewer than 0.45 tokens per byte; the written tokenizer.json loads
 * back with identical encodings; training twice gives byte-identical files; progress is reported
 * and a progress callback can stop it. On a tiny corpus the first merges are the expected ones. */
#include "src/tok_internal.h"
#include "src/tokenizer.h"
#include "tests/test_util.h"
#include "tests/tok_test_cases.h"

static rlhf_error g_err;
static int g_calls;

static int count_progress(void *ctx, const char *phase, long long done, long long total) {
    (void)ctx;
    (void)phase;
    g_calls++;
    return done > total; /* never: done never passes total */
}

static int stop_progress(void *ctx, const char *phase, long long done, long long total) {
    (void)ctx;
    (void)total;
    return strcmp(phase, "merge") == 0 && done >= 64;
}

static char *slurp(const char *path, size_t *len) {
    char *d = NULL;
    file_read_all(path, &d, len, &g_err);
    return d;
}

int main(void) {
    const char *corpus[] = {test_data_path("tinyshakespeare/input.txt")};
    const char *specials[] = {"<|endoftext|>", "<pad>"};
    tokenizer *t = NULL;
    CHECK(tok_train_bpe(&t, corpus, 1, 4096, specials, 2, count_progress, NULL, &g_err) == 0, "train: %s", g_err.msg);
    CHECK(t && tok_vocab_size(t) == 4096, "4096 ids");
    CHECK(g_calls > 10, "progress was reported (%d calls)", g_calls);
    CHECK(tok_special_id(t, "<|endoftext|>") == 0 && tok_special_id(t, "<pad>") == 1, "specials take the first ids");
    CHECK(tok_eos_id(t) == 0 && tok_pad_id(t) == 1, "EOS and PAD recognised by name");

    size_t len;
    char *text = slurp(corpus[0], &len);
    tok_ids ids = {0}, again = {0};
    tok_encode(t, text, len, 0, &ids, &g_err);
    double per_byte = (double)ids.n / (double)len;
    fprintf(stderr, "tinyshakespeare: %zu tokens, %.4f per byte\n", ids.n, per_byte);
    CHECK(per_byte < 0.45, "fewer than 0.45 tokens per byte (%.4f)", per_byte);
    char *back;
    size_t back_len;
    tok_decode(t, ids.ids, ids.n, &back, &back_len, &g_err);
    CHECK(back_len == len && memcmp(back, text, len) == 0, "trained tokenizer round-trips the corpus");
    free(back);

    char p1[4200], p2[4200];
    snprintf(p1, sizeof p1, "%s/trained1.json", test_tmpdir());
    snprintf(p2, sizeof p2, "%s/trained2.json", test_tmpdir());
    CHECK(tok_save(t, p1, &g_err) == 0, "save: %s", g_err.msg);
    tokenizer *u = NULL;
    CHECK(tok_load(&u, p1, &g_err) == 0, "load back: %s", g_err.msg);
    tok_encode(u, text, len, 0, &again, &g_err);
    CHECK(again.n == ids.n && memcmp(again.ids, ids.ids, ids.n * sizeof *ids.ids) == 0, "reloaded: identical encoding of the corpus");
    size_t n_cases;
    tok_case *cases = tok_cases_read(test_data_path("gpt2/encode-cases.jsonl"), &n_cases);
    int differ = 0;
    for (size_t i = 0; i < n_cases; i++) {
        tok_encode(t, cases[i].text, cases[i].len, TOK_ENCODE_ALLOW_SPECIAL, &ids, &g_err);
        tok_encode(u, cases[i].text, cases[i].len, TOK_ENCODE_ALLOW_SPECIAL, &again, &g_err);
        differ += ids.n != again.n || memcmp(ids.ids, again.ids, ids.n * sizeof *ids.ids) != 0;
    }
    CHECK(differ == 0, "reloaded: identical encodings of the 400 reference texts (%d differ)", differ);
    tok_cases_free(cases, n_cases);
    tok_close(&u);

    tokenizer *t2 = NULL;
    CHECK(tok_train_bpe(&t2, corpus, 1, 4096, specials, 2, NULL, NULL, &g_err) == 0, "train again");
    tok_save(t2, p2, &g_err);
    size_t l1, l2;
    char *f1 = slurp(p1, &l1), *f2 = slurp(p2, &l2);
    CHECK(f1 && f2 && l1 == l2 && memcmp(f1, f2, l1) == 0, "training twice gives byte-identical files");
    free(f1);
    free(f2);
    tok_close(&t2);
    tok_close(&t);

    CHECK(tok_train_bpe(&t, corpus, 1, 4096, NULL, 0, stop_progress, NULL, &g_err) == RLHF_ERR_INTERRUPTED && !t,
          "a progress callback can stop training");
    CHECK(tok_train_bpe(&t, corpus, 1, 100, NULL, 0, NULL, NULL, &g_err) == RLHF_ERR_INVALID, "vocab below 256: invalid");
    const char *missing[] = {"/nonexistent/corpus.txt"};
    CHECK(tok_train_bpe(&t, missing, 1, 300, NULL, 0, NULL, NULL, &g_err) == RLHF_ERR_IO && strstr(g_err.msg, "/nonexistent"),
          "a missing corpus is named");

    /* tiny corpus: "low" x5, "lower" x2, "newest" x6, "widest" x3 (the classic example) */
    char tiny[4200];
    snprintf(tiny, sizeof tiny, "%s/tiny.txt", test_tmpdir());
    FILE *fp = fopen(tiny, "w");
    for (int i = 0; i < 5; i++) fputs("low ", fp);
    for (int i = 0; i < 2; i++) fputs("lower ", fp);
    for (int i = 0; i < 6; i++) fputs("newest ", fp);
    for (int i = 0; i < 3; i++) fputs("widest ", fp);
    fclose(fp);
    const char *tiny_corpus[] = {tiny};
    CHECK(tok_train_bpe(&t, tiny_corpus, 1, 256 + 3, NULL, 0, NULL, NULL, &g_err) == 0, "train tiny");
    /* "e s" and "s t" lead with 9 (newest, widest); the tie goes to the pair of smaller ids
     * ("e" is 68, "s" 82), then "es t" (9), then "l o" and "o w" tie at 7 and "l" (75) wins. */
    CHECK(t && strcmp(tok_piece(t, 256), "es") == 0 && strcmp(tok_piece(t, 257), "est") == 0 && strcmp(tok_piece(t, 258), "lo") == 0,
          "tiny corpus: merges es, est, lo (got %s %s %s)", t ? tok_piece(t, 256) : "", t ? tok_piece(t, 257) : "",
          t ? tok_piece(t, 258) : "");
    tok_close(&t);
    tok_ids_free(&ids);
    tok_ids_free(&again);
    free(text);
    return test_finish("tok_train");
}
