/* test_tokenizer.c — the tokenizers give exactly the reference ids and decode back.
 *
 * Reference ids: GPT-2 from OpenAI's tiktoken (encoder.json + vocab.bpe), the Llama-2-style
 * SentencePiece BPE and Llama 3 from transformers.js (tokenizer.json), 400 texts each. Also:
 * byte-for-byte round trips of whole files, special tokens with and without the flag, streaming
 * decode = whole decode, U+FFFD repair, tokenizer.json save/load, llama2.c tokenizer.bin,
 * the byte tokenizer, the two merge algorithms agreeing, and concurrent encoding. */
#include <pthread.h>

#include "src/core/rng.h"
#include "src/tok/tok_internal.h"
#include "src/tok/tokenizer.h"
#include "src/core/utf8.h"
#include "tests/test_util.h"
#include "tests/tok_test_cases.h"

static rlhf_error g_err;

static tokenizer *load(const char *path) {
    tokenizer *t = NULL;
    int rc = tok_load(&t, path, &g_err);
    CHECK(rc == 0 && t, "load %s: %s", path, g_err.msg);
    if (!t) exit(1);
    return t;
}

static int same_ids(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

/* Every case encodes to the reference ids and the reference ids decode to the text. */
static void check_cases(const char *name, const tokenizer *t, const tok_case *cases, size_t n) {
    tok_ids ids = {0};
    int wrong = 0, wrong_text = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = tok_encode(t, cases[i].text, cases[i].len, 0, &ids, &g_err);
        if (rc || !same_ids(ids.ids, ids.n, cases[i].ids, cases[i].n_ids)) {
            if (wrong++ < 3) fprintf(stderr, "%s case %zu: ids differ for \"%.60s\"\n", name, i + 1, cases[i].text);
        }
        char *text = NULL;
        size_t len = 0;
        rc = tok_decode(t, cases[i].ids, cases[i].n_ids, &text, &len, &g_err);
        if (rc || len != cases[i].len || memcmp(text, cases[i].text, len) != 0) {
            if (wrong_text++ < 3) fprintf(stderr, "%s case %zu: decodes to \"%.60s\"\n", name, i + 1, text ? text : "");
        }
        free(text);
    }
    CHECK(wrong == 0, "%s: all %zu cases give the reference ids (%d differ)", name, n, wrong);
    CHECK(wrong_text == 0, "%s: all %zu cases decode back to their text (%d differ)", name, n, wrong_text);
    tok_ids_free(&ids);
}

/* decode(encode(text)) == text byte for byte, and the streaming decoder agrees. */
static void check_round_trip(const char *name, const tokenizer *t, const char *text, size_t len) {
    tok_ids ids = {0};
    CHECK(tok_encode(t, text, len, 0, &ids, &g_err) == 0, "%s: encode: %s", name, g_err.msg);
    char *back = NULL;
    size_t back_len = 0;
    CHECK(tok_decode(t, ids.ids, ids.n, &back, &back_len, &g_err) == 0, "%s: decode: %s", name, g_err.msg);
    CHECK(back && back_len == len && memcmp(back, text, len) == 0, "%s: round trip is byte-for-byte (%zu vs %zu bytes)", name,
          back_len, len);
    /* streaming: the pieces concatenate to the same text and each is complete UTF-8 */
    tok_stream s;
    tok_stream_init(&s, t, 0, &g_err);
    char *joined = malloc(len + 16);
    size_t jn = 0;
    int complete = 1, overflow = 0;
    for (size_t i = 0; i <= ids.n; i++) {
        const char *piece;
        size_t pl;
        if (i < ids.n) tok_stream_push(&s, ids.ids[i], &piece, &pl, &g_err);
        else tok_stream_flush(&s, &piece, &pl, &g_err);
        complete &= utf8_is_valid(piece, pl);
        if (jn + pl > len + 16) overflow = 1;
        else memcpy(joined + jn, piece, pl);
        jn += pl;
    }
    CHECK(!overflow && jn == len && memcmp(joined, text, len) == 0, "%s: streaming decode = text", name);
    CHECK(complete, "%s: every streamed piece is complete UTF-8", name);
    tok_stream_free(&s);
    free(joined);
    free(back);
    tok_ids_free(&ids);
}

static void check_specials(void) {
    tokenizer *g = load(test_data_path("gpt2"));
    tok_ids ids = {0};
    const char *text = "Hi<|endoftext|>there";
    tok_encode(g, text, strlen(text), 0, &ids, &g_err);
    int plain = ids.n > 3;
    for (size_t i = 0; i < ids.n; i++) plain &= ids.ids[i] != 50256;
    CHECK(plain, "gpt2: without the flag <|endoftext|> is ordinary text (%zu ids, no 50256)", ids.n);
    int32_t want[] = {17250, 50256, 8117};
    tok_encode(g, text, strlen(text), TOK_ENCODE_ALLOW_SPECIAL, &ids, &g_err);
    CHECK(same_ids(ids.ids, ids.n, want, 3), "gpt2: with the flag <|endoftext|> is one id 50256");
    CHECK(tok_eos_id(g) == 50256 && tok_bos_id(g) == 50256, "gpt2: BOS = EOS = <|endoftext|>");
    CHECK(tok_special_id(g, "<|endoftext|>") == 50256 && tok_id_is_special(g, 50256) && !tok_id_is_special(g, 11),
          "gpt2: special lookups");
    CHECK(strcmp(tok_piece(g, 11), ",") == 0 && strcmp(tok_piece(g, 995), "\xC4\xA0world") == 0, "gpt2: pieces");
    tok_encode(g, "a", 1, TOK_ENCODE_ADD_BOS, &ids, &g_err);
    CHECK(ids.n == 2 && ids.ids[0] == 50256 && ids.ids[1] == 64, "gpt2: ADD_BOS");
    tok_encode(g, "b", 1, TOK_ENCODE_APPEND, &ids, &g_err);
    CHECK(ids.n == 3 && ids.ids[2] == 65, "gpt2: APPEND keeps earlier ids");
    char *out;
    size_t len;
    tok_decode(g, want, 3, &out, &len, &g_err);
    CHECK(strcmp(out, text) == 0, "gpt2: specials decode to their text");
    free(out);
    tok_close(&g);

    tokenizer *l3 = load(test_data_path("llama3-tokenizer"));
    CHECK(tok_bos_id(l3) == 128000 && tok_eos_id(l3) == 128001, "llama3: BOS/EOS from tokenizer_config.json");
    const char *chat = "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
    tok_encode(l3, chat, strlen(chat), TOK_ENCODE_ALLOW_SPECIAL | TOK_ENCODE_ADD_BOS, &ids, &g_err);
    CHECK(ids.n >= 6 && ids.ids[0] == 128000 && ids.ids[1] == tok_special_id(l3, "<|start_header_id|>") &&
              ids.ids[ids.n - 1] == tok_special_id(l3, "<|eot_id|>"),
          "llama3: chat markers are single ids with the flag");
    tok_encode(l3, chat, strlen(chat), 0, &ids, &g_err);
    int none = 1;
    for (size_t i = 0; i < ids.n; i++) none &= !tok_id_is_special(l3, ids.ids[i]);
    CHECK(none, "llama3: without the flag no special id appears");
    tok_close(&l3);

    tokenizer *sp = load(test_data_path("sp-bpe-32k"));
    CHECK(tok_bos_id(sp) == 1 && tok_eos_id(sp) == 2, "sp: BOS 1, EOS 2");
    tok_encode(sp, "<s>Hi", 5, TOK_ENCODE_ALLOW_SPECIAL, &ids, &g_err);
    CHECK(ids.n >= 2 && ids.ids[0] == 1, "sp: <s> is id 1 with the flag");
    tok_encode(sp, "<s>Hi", 5, 0, &ids, &g_err);
    CHECK(ids.n >= 2 && ids.ids[0] != 1, "sp: <s> is text without the flag");
    tok_encode(sp, "Hello", 5, TOK_ENCODE_ADD_BOS, &ids, &g_err);
    tok_decode(sp, ids.ids, ids.n, &out, &len, &g_err);
    CHECK(strcmp(out, "<s>Hello") == 0, "sp: the dummy-prefix space is dropped after BOS (got \"%s\")", out);
    free(out);
    tok_close(&sp);
    tok_ids_free(&ids);
}

/* Byte-level ids of raw bytes (GPT-2 byte tokens) so invalid UTF-8 can be decoded on purpose. */
static void check_repair(void) {
    tokenizer *g = load(test_data_path("gpt2"));
    struct {
        const char *bytes;
        const char *want;
    } cases[] = {
        {"a\x80z", "a" UTF8_REPLACEMENT "z"},
        {"\xE6\x97", UTF8_REPLACEMENT},
        {"\xE6\x97" "a", UTF8_REPLACEMENT "a"},
        {"\xF0\x9F\x98\x80", "\xF0\x9F\x98\x80"},
        {"\xC0\x80", UTF8_REPLACEMENT UTF8_REPLACEMENT},
        {"\xED\xA0\x80", UTF8_REPLACEMENT UTF8_REPLACEMENT UTF8_REPLACEMENT},
        {"\xF4\x90\x80\x80", UTF8_REPLACEMENT UTF8_REPLACEMENT UTF8_REPLACEMENT UTF8_REPLACEMENT},
        {"\xFF\xFE", UTF8_REPLACEMENT UTF8_REPLACEMENT},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int32_t ids[8];
        size_t n = strlen(cases[c].bytes);
        for (size_t i = 0; i < n; i++) ids[i] = g->byte_id[(unsigned char)cases[c].bytes[i]];
        char *out;
        size_t len;
        tok_decode(g, ids, n, &out, &len, &g_err);
        CHECK(strcmp(out, cases[c].want) == 0, "repair case %zu: maximal invalid subparts become U+FFFD", c);
        free(out);
        /* streamed one byte token at a time: the same */
        tok_stream s;
        tok_stream_init(&s, g, 0, &g_err);
        char joined[64];
        size_t jn = 0;
        for (size_t i = 0; i <= n; i++) {
            const char *p;
            size_t pl;
            if (i < n) tok_stream_push(&s, ids[i], &p, &pl, &g_err);
            else tok_stream_flush(&s, &p, &pl, &g_err);
            memcpy(joined + jn, p, pl);
            jn += pl;
        }
        joined[jn] = '\0';
        CHECK(strcmp(joined, cases[c].want) == 0, "repair case %zu streamed", c);
        tok_stream_free(&s);
    }
    /* a character cut across tokens is held back until complete */
    tok_stream s;
    tok_stream_init(&s, g, 0, &g_err);
    const char *p;
    size_t pl;
    tok_stream_push(&s, g->byte_id[0xE6], &p, &pl, &g_err);
    CHECK(pl == 0, "stream holds back a lead byte");
    tok_stream_push(&s, g->byte_id[0x97], &p, &pl, &g_err);
    CHECK(pl == 0, "stream holds back an incomplete character");
    tok_stream_push(&s, g->byte_id[0xA5], &p, &pl, &g_err);
    CHECK(pl == 3 && memcmp(p, "\xE6\x97\xA5", 3) == 0, "stream emits the character when complete");
    CHECK(tok_stream_push(&s, 999999, &p, &pl, &g_err) == RLHF_ERR_INVALID, "stream refuses an out-of-range id");
    tok_stream_free(&s);
    tok_stream_free(&s);
    int32_t bad = -1;
    char *out = NULL;
    size_t len;
    CHECK(tok_decode(g, &bad, 1, &out, &len, &g_err) == RLHF_ERR_INVALID && !out, "decode refuses id -1");
    tok_close(&g);
}

/* `stable`: the file written from the reloaded tokenizer must equal the first file (not so for
 * llama2.c vocabularies, whose scores become a merges list on the first save). */
static void check_save_load(const char *name, const tokenizer *t, const tok_case *cases, size_t n, int stable) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.json", test_tmpdir(), name);
    CHECK(tok_save(t, path, &g_err) == 0, "%s: save: %s", name, g_err.msg);
    tokenizer *u = load(path);
    CHECK(tok_vocab_size(u) == tok_vocab_size(t) && tok_bos_id(u) == tok_bos_id(t) && tok_eos_id(u) == tok_eos_id(t),
          "%s: reloaded vocabulary size and BOS/EOS agree", name);
    tok_ids a = {0}, b = {0};
    int differ = 0;
    for (size_t i = 0; i < n; i++) {
        tok_encode(t, cases[i].text, cases[i].len, 0, &a, &g_err);
        tok_encode(u, cases[i].text, cases[i].len, 0, &b, &g_err);
        differ += !same_ids(a.ids, a.n, b.ids, b.n);
    }
    CHECK(differ == 0, "%s: saved tokenizer.json encodes all cases the same (%d differ)", name, differ);
    /* saving the reloaded one gives the same file */
    char path2[4300];
    snprintf(path2, sizeof path2, "%s.again.json", path);
    tok_save(u, path2, &g_err);
    char *x, *y;
    size_t xl, yl;
    file_read_all(path, &x, &xl, &g_err);
    file_read_all(path2, &y, &yl, &g_err);
    if (stable) CHECK(xl == yl && memcmp(x, y, xl) == 0, "%s: save(load(save(t))) = save(t)", name);
    free(x);
    free(y);
    tok_ids_free(&a);
    tok_ids_free(&b);
    tok_close(&u);
}

/* llama2.c's tokenizer.bin made from the SentencePiece tokenizer.json: a token's score is minus
 * the rank of the first merge that makes it, so score order is merge order. */
static void check_llama2c_bin(const tokenizer *sp, const tok_case *cases, size_t n) {
    int32_t v = tok_vocab_size(sp);
    float *score = calloc((size_t)v, sizeof *score);
    for (size_t i = 0; i < sp->merges.cap; i++)
        if (sp->merges.keys[i] != UINT64_MAX) {
            int32_t r = sp->merges.result[i];
            float s = -(float)sp->merges.rank[i];
            if (score[r] == 0 || s > score[r]) score[r] = s;
        }
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer.bin", test_tmpdir());
    FILE *fp = fopen(path, "wb");
    int32_t max_len = 64;
    fwrite(&max_len, 4, 1, fp);
    for (int32_t id = 0; id < v; id++) {
        /* llama2.c's export: "▁" becomes ' ', BOS/EOS are written with newlines around them */
        const char *p = tok_piece(sp, id);
        char buf[256];
        size_t m = 0;
        if (id == 1) m = (size_t)snprintf(buf, sizeof buf, "\n<s>\n");
        else if (id == 2) m = (size_t)snprintf(buf, sizeof buf, "\n</s>\n");
        else
            for (size_t i = 0; p[i]; i++) {
                if (memcmp(p + i, "\xE2\x96\x81", 3) == 0) {
                    buf[m++] = ' ';
                    i += 2;
                } else {
                    buf[m++] = p[i];
                }
            }
        int32_t len = (int32_t)m;
        fwrite(&score[id], 4, 1, fp);
        fwrite(&len, 4, 1, fp);
        fwrite(buf, 1, m, fp);
    }
    fclose(fp);
    free(score);
    tokenizer *bin = load(path);
    CHECK(tok_vocab_size(bin) == v && tok_bos_id(bin) == 1 && tok_eos_id(bin) == 2, "llama2.c bin: %d ids, BOS 1, EOS 2", (int)v);
    CHECK(strcmp(tok_piece(bin, 1), "<s>") == 0 && strcmp(tok_piece(bin, 13), "<0x0A>") == 0, "llama2.c bin: pieces");
    check_cases("llama2.c tokenizer.bin", bin, cases, n);
    check_save_load("llama2c-as-json", bin, cases, n, 0);
    tok_close(&bin);
}

static void check_bytes(void) {
    tokenizer *b;
    CHECK(tok_new_bytes(&b, &g_err) == 0, "byte tokenizer");
    CHECK(tok_vocab_size(b) == 256 && tok_bos_id(b) == -1 && tok_eos_id(b) == -1, "byte tokenizer: 256 ids, no specials");
    const char text[] = "h\xC3\xA9llo\0\xFF";
    tok_ids ids = {0};
    tok_encode(b, text, sizeof text - 1, 0, &ids, &g_err);
    int ok = ids.n == sizeof text - 1;
    for (size_t i = 0; ok && i < ids.n; i++) ok = ids.ids[i] == (unsigned char)text[i];
    CHECK(ok, "byte tokenizer: id = byte");
    CHECK(tok_encode(b, "x", 1, TOK_ENCODE_ADD_BOS, &ids, &g_err) == RLHF_ERR_INVALID, "byte tokenizer: ADD_BOS is an error");
    tok_case c = {(char *)"Hello, world! 123", 17, NULL, 0};
    check_save_load("bytes", b, &c, 1, 1);
    const char valid[] = "h\xC3\xA9llo\0!";
    check_round_trip("bytes", b, valid, sizeof valid - 1);
    tok_ids_free(&ids);
    tok_close(&b);
}

/* The quadratic merge loop (short words) and the heap (long words) give the same tokens. */
static void check_merge_algorithms(const tokenizer *t, int sentencepiece) {
    tok_workspace *ws = tok_workspace_get(t);
    rng_t r;
    rng_seed(&r, 99);
    static const char *const bits[] = {"the", " ", "  ", "e", "th", "in", "g", "ing", " a", "\n", "ll", "o", "'s", "x", "er"};
    int differ = 0;
    int32_t *a = malloc(4096 * sizeof *a), *b = malloc(4096 * sizeof *b);
    for (int it = 0; it < 2000; it++) {
        size_t n = 0, k = 1 + rng_below(&r, 40);
        char word[1024];
        size_t wl = 0;
        for (size_t j = 0; j < k; j++) {
            const char *p = bits[rng_below(&r, sizeof bits / sizeof bits[0])];
            memcpy(word + wl, p, strlen(p));
            wl += strlen(p);
        }
        for (size_t i = 0; i < wl; i++) {
            int32_t id = sentencepiece ? tok_text_map_find(&t->by_text, t, word + i, 1) : t->byte_id[(unsigned char)word[i]];
            if (id < 0) id = t->byte_id[(unsigned char)word[i]];
            a[n] = b[n] = id;
            n++;
        }
        size_t na = tok_bpe_merge(t, ws, a, n, 0), nb = tok_bpe_merge(t, ws, b, n, 1);
        differ += !same_ids(a, na, b, nb);
    }
    CHECK(differ == 0, "%s: short-word and heap merge loops agree on 2000 words", sentencepiece ? "sp" : "gpt2");
    free(a);
    free(b);
}

typedef struct {
    const tokenizer *t;
    const char *text;
    size_t len;
    tok_ids ids;
} thread_job;

static void *encode_job(void *p) {
    thread_job *j = p;
    rlhf_error err = {0};
    for (int r = 0; r < 3; r++) tok_encode(j->t, j->text, j->len, 0, &j->ids, &err);
    return NULL;
}

int main(void) {
    size_t n_gpt2, n_sp, n_l3;
    tok_case *gpt2_cases = tok_cases_read(test_data_path("gpt2/encode-cases.jsonl"), &n_gpt2);
    tok_case *sp_cases = tok_cases_read(test_data_path("sp-bpe-32k/encode-cases.jsonl"), &n_sp);
    tok_case *l3_cases = tok_cases_read(test_data_path("llama3-tokenizer/encode-cases.jsonl"), &n_l3);
    CHECK(n_gpt2 == 400 && n_sp == 400 && n_l3 == 400, "400 cases in each reference file");

    char *shakespeare, *hh;
    size_t shakespeare_len, hh_len;
    CHECK(file_read_all(test_data_path("tinyshakespeare/input.txt"), &shakespeare, &shakespeare_len, &g_err) == 0, "read");
    CHECK(file_read_all(test_data_path("hh-rlhf/harmless-base-test-300.jsonl"), &hh, &hh_len, &g_err) == 0, "read");

    /* GPT-2 as OpenAI shipped it: encoder.json + vocab.bpe, by directory and by file */
    tokenizer *gpt2 = load(test_data_path("gpt2"));
    CHECK(tok_vocab_size(gpt2) == 50257, "gpt2: 50257 ids");
    check_cases("gpt2", gpt2, gpt2_cases, n_gpt2);
    check_round_trip("gpt2 tinyshakespeare", gpt2, shakespeare, shakespeare_len);
    check_round_trip("gpt2 hh-rlhf", gpt2, hh, hh_len);
    check_merge_algorithms(gpt2, 0);
    check_save_load("gpt2", gpt2, gpt2_cases, n_gpt2, 1);
    tokenizer *gpt2_file = load(test_data_path("gpt2/encoder.json"));
    check_cases("gpt2 (encoder.json path)", gpt2_file, gpt2_cases, 50);
    tok_close(&gpt2_file);

    /* concurrent encoding of one tokenizer from two threads gives the single-thread ids */
    tok_ids single = {0};
    tok_encode(gpt2, shakespeare, shakespeare_len, 0, &single, &g_err);
    thread_job jobs[2] = {{gpt2, shakespeare, shakespeare_len, {0}}, {gpt2, shakespeare, shakespeare_len, {0}}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, encode_job, &jobs[i]);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        CHECK(same_ids(jobs[i].ids.ids, jobs[i].ids.n, single.ids, single.n), "thread %d encodes the same ids", i);
        tok_ids_free(&jobs[i].ids);
    }
    tok_ids_free(&single);
    tok_close(&gpt2);

    tokenizer *sp = load(test_data_path("sp-bpe-32k/tokenizer.json"));
    check_cases("sp-bpe-32k", sp, sp_cases, n_sp);
    check_round_trip("sp tinyshakespeare", sp, shakespeare, shakespeare_len);
    check_round_trip("sp hh-rlhf", sp, hh, hh_len);
    check_merge_algorithms(sp, 1);
    check_save_load("sp-bpe-32k", sp, sp_cases, n_sp, 1);
    check_llama2c_bin(sp, sp_cases, n_sp);
    tok_close(&sp);

    tokenizer *l3 = load(test_data_path("llama3-tokenizer"));
    CHECK(tok_vocab_size(l3) == 128256, "llama3: 128256 ids");
    check_cases("llama3", l3, l3_cases, n_l3);
    check_round_trip("llama3 tinyshakespeare", l3, shakespeare, shakespeare_len);
    check_round_trip("llama3 hh-rlhf", l3, hh, hh_len);
    check_save_load("llama3", l3, l3_cases, 100, 1);
    tok_close(&l3);

    check_specials();
    check_repair();
    check_bytes();

    /* errors name the file */
    tokenizer *t = NULL;
    CHECK(tok_load(&t, "/nonexistent/tokenizer.json", &g_err) == RLHF_ERR_IO && strstr(g_err.msg, "/nonexistent") && !t,
          "missing file: IO error naming it (%s)", g_err.msg);
    char path[4200];
    snprintf(path, sizeof path, "%s/bad.json", test_tmpdir());
    file_write_atomic(path, "{\n  \"model\": {\n    \"vocab\": {\"a\": 0,,}\n}", 40, &g_err);
    CHECK(tok_load(&t, path, &g_err) == RLHF_ERR_FORMAT && strstr(g_err.msg, "bad.json:3:"), "malformed JSON: file:line (%s)",
          g_err.msg);
    snprintf(path, sizeof path, "%s/wordpiece.json", test_tmpdir());
    const char *wp = "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}";
    file_write_atomic(path, wp, strlen(wp), &g_err);
    CHECK(tok_load(&t, path, &g_err) == RLHF_ERR_UNSUPPORTED && strstr(g_err.msg, "WordPiece"), "WordPiece: unsupported (%s)",
          g_err.msg);
    snprintf(path, sizeof path, "%s/empty", test_tmpdir());
    file_mkdir_p(path, &g_err);
    CHECK(tok_load(&t, path, &g_err) == RLHF_ERR_NOT_FOUND, "a directory without a tokenizer: not found");
    tok_close(&t);
    tok_close(&t);

    free(shakespeare);
    free(hh);
    tok_cases_free(gpt2_cases, n_gpt2);
    tok_cases_free(sp_cases, n_sp);
    tok_cases_free(l3_cases, n_l3);
    return test_finish("tokenizer");
}
