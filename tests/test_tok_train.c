/* test_tok_train.c — training a byte-level BPE vocabulary.
 *
 * On tinyshakespeare, 4096 ids: fewer than 0.45 tokens per byte; the written tokenizer.json loads
 * back with identical encodings; training twice gives byte-identical files; progress is reported
 * and a progress callback can stop it. On a tiny corpus the first merges are the expected ones.
 * The written file has the structure Hugging Face's tokenizers expects of a ByteLevel BPE
 * tokenizer.json (check_hf_structure). */
#include <cjson/cJSON.h>

#include "src/tok/tok_internal.h"
#include "src/tok/tokenizer.h"
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

/* ---- the structure Hugging Face's tokenizers expects of a ByteLevel BPE tokenizer.json ---- */

typedef struct {
    const char *key;
    int id;
} vocab_entry;

static int vocab_entry_cmp(const void *a, const void *b) {
    return strcmp(((const vocab_entry *)a)->key, ((const vocab_entry *)b)->key);
}

/* id of key in the sorted vocabulary, or -1 */
static int vocab_find(const vocab_entry *v, size_t n, const char *key) {
    vocab_entry k = {key, 0};
    const vocab_entry *e = bsearch(&k, v, n, sizeof *v, vocab_entry_cmp);
    return e ? e->id : -1;
}

static int is_type(const cJSON *o, const char *type) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsObject(o) && cJSON_IsString(ty) && strcmp(ty->valuestring, type) == 0;
}

/* GPT-2's bytes_to_unicode: the character byte b stands for, as UTF-8 (2 or fewer bytes + NUL) */
static void byte_char(int b, char out[4]) {
    int cp = b;
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) {
        int n = 0;
        for (int c = 0; c < b; c++) n += !((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255));
        cp = 256 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = 0;
    }
}

/* Checks path against what tokenizers' TokenizerImpl/BPE deserialisers need: "version"; a BPE
 * "model" whose "vocab" maps distinct strings onto exactly 0..n_ids-1, holding every ByteLevel
 * byte character; "merges" ("a b" or ["a", "b"]) whose parts and results are all in the vocab,
 * one per id that is neither a byte nor a special; a ByteLevel pre-tokenizer (alone or inside a
 * Sequence) and decoder; and each special in "added_tokens" with "special": true and its vocab id. */
static void check_hf_structure(const char *path, int n_ids, const char *const *specials, int n_specials) {
    size_t len;
    char *text = slurp(path, &len);
    cJSON *root = text ? cJSON_ParseWithLength(text, len) : NULL;
    CHECK(cJSON_IsObject(root), "hf: %s parses as a JSON object", path);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return;
    }
    CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(root, "version")), "hf: top-level \"version\" string");
    cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    CHECK(is_type(model, "BPE"), "hf: \"model\" is an object with \"type\": \"BPE\"");
    cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    CHECK(cJSON_IsObject(vocab), "hf: model.vocab is an object");
    CHECK(cJSON_IsArray(merges), "hf: model.merges is an array");
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges)) {
        cJSON_Delete(root);
        return;
    }

    /* vocab: n_ids entries, ids 0..n_ids-1 each exactly once, keys distinct */
    size_t n = (size_t)cJSON_GetArraySize(vocab);
    CHECK(n == (size_t)n_ids, "hf: vocab has %d entries (got %zu)", n_ids, n);
    vocab_entry *v = calloc(n ? n : 1, sizeof *v);
    char *seen = calloc(n ? n : 1, 1);
    size_t i = 0;
    int bad_id = 0, dup_id = 0, dup_key = 0, gaps = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        double d = cJSON_IsNumber(e) ? e->valuedouble : -1;
        int id = (int)d;
        if (d != (double)id || id < 0 || (size_t)id >= n) {
            bad_id++;
            id = -1;
        } else {
            dup_id += seen[id];
            seen[id] = 1;
        }
        v[i++] = (vocab_entry){e->string, id};
    }
    for (size_t j = 0; j < n; j++) gaps += !seen[j];
    qsort(v, n, sizeof *v, vocab_entry_cmp);
    for (size_t j = 1; j < n; j++) dup_key += strcmp(v[j - 1].key, v[j].key) == 0;
    CHECK(bad_id == 0, "hf: every vocab id is an integer in 0..%zu (%d are not)", n - 1, bad_id);
    CHECK(dup_id == 0 && gaps == 0, "hf: vocab ids have no duplicates (%d) and no gaps (%d)", dup_id, gaps);
    CHECK(dup_key == 0, "hf: vocab strings are distinct (%d repeated)", dup_key);
    int missing_bytes = 0;
    for (int b = 0; b < 256; b++) {
        char c[4];
        byte_char(b, c);
        missing_bytes += vocab_find(v, n, c) < 0;
    }
    CHECK(missing_bytes == 0, "hf: all 256 ByteLevel byte characters are in the vocab (%d missing)", missing_bytes);

    /* merges: "a b" with exactly one space, or ["a", "b"]; a, b and ab in the vocab */
    int n_merges = cJSON_GetArraySize(merges), bad_form = 0, not_in_vocab = 0;
    const char *first_bad = NULL;
    char *ab = NULL;
    size_t ab_cap = 0;
    cJSON_ArrayForEach(e, merges) {
        const char *a = NULL, *b = NULL;
        size_t la = 0;
        if (cJSON_IsString(e)) {
            const char *sp = strchr(e->valuestring, ' ');
            if (sp && !strchr(sp + 1, ' ') && sp != e->valuestring && sp[1]) {
                a = e->valuestring;
                la = (size_t)(sp - a);
                b = sp + 1;
            }
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            a = cJSON_GetArrayItem(e, 0)->valuestring;
            la = strlen(a);
            b = cJSON_GetArrayItem(e, 1)->valuestring;
        }
        if (!a) {
            bad_form++;
            continue;
        }
        size_t lb = strlen(b);
        if (ab_cap < la + lb + 1) {
            ab_cap = 2 * (la + lb + 1);
            ab = realloc(ab, ab_cap);
        }
        memcpy(ab, a, la);
        ab[la] = 0;
        int ok = vocab_find(v, n, ab) >= 0 && vocab_find(v, n, b) >= 0;
        memcpy(ab + la, b, lb + 1);
        ok = ok && vocab_find(v, n, ab) >= 0;
        if (!ok && !not_in_vocab++) first_bad = cJSON_IsString(e) ? e->valuestring : a;
    }
    free(ab);
    CHECK(bad_form == 0, "hf: every merge is \"a b\" or [\"a\", \"b\"] (%d are not)", bad_form);
    CHECK(not_in_vocab == 0, "hf: both parts of every merge and their concatenation are in the vocab (%d not, first %s)",
          not_in_vocab, first_bad ? first_bad : "");
    CHECK(n_merges == n_ids - 256 - n_specials, "hf: one merge per learned token (%d merges for %d ids)", n_merges, n_ids);

    /* pre-tokenizer and decoder */
    cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    int pre_ok = is_type(pre, "ByteLevel");
    if (is_type(pre, "Sequence")) {
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(pre, "pretokenizers")) pre_ok |= is_type(e, "ByteLevel");
    }
    CHECK(pre_ok, "hf: pre_tokenizer is ByteLevel or a Sequence holding one");
    CHECK(is_type(cJSON_GetObjectItemCaseSensitive(root, "decoder"), "ByteLevel"), "hf: decoder is ByteLevel");

    /* added_tokens: each special, "special": true, its id the vocab's */
    cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    CHECK(cJSON_IsArray(added), "hf: added_tokens is an array");
    for (int s = 0; s < n_specials; s++) {
        int found = 0;
        cJSON_ArrayForEach(e, added) {
            cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content"), *id = cJSON_GetObjectItemCaseSensitive(e, "id");
            if (!cJSON_IsString(content) || strcmp(content->valuestring, specials[s]) != 0) continue;
            found++;
            CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "special")), "hf: added token %s has \"special\": true",
                  specials[s]);
            CHECK(cJSON_IsNumber(id) && id->valueint == vocab_find(v, n, specials[s]),
                  "hf: added token %s has its vocab id (%d vs %d)", specials[s], cJSON_IsNumber(id) ? id->valueint : -1,
                  vocab_find(v, n, specials[s]));
        }
        CHECK(found == 1, "hf: special %s listed once in added_tokens (%d)", specials[s], found);
    }
    free(v);
    free(seen);
    cJSON_Delete(root);
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
    check_hf_structure(p1, 4096, specials, 2);
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
