/* test_tok_fuzz.c — random bytes (invalid UTF-8, NULs, stray specials) never break encode or decode.
 *
 * For every kind of tokenizer (GPT-2 encoder.json, SentencePiece tokenizer.json, Llama 3 with its
 * PCRE2 regex, the byte tokenizer, a freshly trained one): encoding random input succeeds with ids
 * in range; byte-level tokenizers give the input back byte for byte; every decode is valid UTF-8
 * and equals the streamed decode; random ids decode without error. Sized to run in a few seconds
 * under AddressSanitizer. */
#include "src/core/rng.h"
#include "src/tok/tokenizer.h"
#include "src/core/utf8.h"
#include "tests/test_util.h"

static rlhf_error g_err;

static void fuzz(const char *name, const tokenizer *t, int byte_exact, int iterations, uint64_t seed) {
    rng_t r;
    rng_seed(&r, seed);
    tok_ids ids = {0};
    char buf[300];
    int encode_fail = 0, range_fail = 0, exact_fail = 0, utf8_fail = 0, stream_fail = 0, decode_fail = 0;
    static const char *const chunks[] = {"<|endoftext|>", "<s>", "</s>", "<|begin_of_text|>", "\xE2\x96\x81", " ", "  ",
                                         "\n", "'s", "\xF0\x9F\x98\x80", "\xE6\x97", "\xC3", "\r\n", "123456"};
    for (int it = 0; it < iterations; it++) {
        size_t n = rng_below(&r, sizeof buf - 20);
        for (size_t i = 0; i < n; i++) {
            if (rng_below(&r, 8) == 0) {
                const char *c = chunks[rng_below(&r, sizeof chunks / sizeof chunks[0])];
                size_t l = strlen(c);
                if (i + l <= n) {
                    memcpy(buf + i, c, l);
                    i += l - 1;
                    continue;
                }
            }
            buf[i] = (char)rng_below(&r, 256);
        }
        unsigned flags = rng_below(&r, 2) ? TOK_ENCODE_ALLOW_SPECIAL : 0;
        if (tok_encode(t, buf, n, flags, &ids, &g_err)) {
            encode_fail++;
            continue;
        }
        for (size_t i = 0; i < ids.n; i++) range_fail += ids.ids[i] < 0 || ids.ids[i] >= tok_vocab_size(t);
        char *text = NULL;
        size_t len = 0;
        if (tok_decode(t, ids.ids, ids.n, &text, &len, &g_err)) {
            decode_fail++;
            continue;
        }
        utf8_fail += !utf8_is_valid(text, len);
        if (byte_exact && utf8_is_valid(buf, n)) exact_fail += len != n || memcmp(text, buf, n) != 0;
        tok_stream s;
        tok_stream_init(&s, t, 0, &g_err);
        size_t off = 0;
        int same = 1;
        for (size_t i = 0; i <= ids.n; i++) {
            const char *p;
            size_t pl;
            if (i < ids.n) tok_stream_push(&s, ids.ids[i], &p, &pl, &g_err);
            else tok_stream_flush(&s, &p, &pl, &g_err);
            same &= off + pl <= len && memcmp(text + off, p, pl) == 0;
            off += pl;
        }
        stream_fail += !same || off != len;
        tok_stream_free(&s);
        free(text);
        /* random ids */
        int32_t rid[16];
        for (int k = 0; k < 16; k++) rid[k] = (int32_t)rng_below(&r, (uint64_t)tok_vocab_size(t));
        if (tok_decode(t, rid, 16, &text, &len, &g_err) == 0) {
            utf8_fail += !utf8_is_valid(text, len);
            free(text);
        }
    }
    CHECK(encode_fail == 0 && decode_fail == 0, "%s: encode/decode of random bytes succeed (%d, %d failed)", name, encode_fail,
          decode_fail);
    CHECK(range_fail == 0, "%s: ids in range", name);
    CHECK(utf8_fail == 0, "%s: decoded text is valid UTF-8", name);
    CHECK(stream_fail == 0, "%s: streamed decode = decode", name);
    if (byte_exact) CHECK(exact_fail == 0, "%s: valid UTF-8 input round-trips exactly (%d differ)", name, exact_fail);
    /* fully invalid input round-trips too on byte-level tokenizers (bytes are tokens) */
    if (byte_exact) {
        char raw[64];
        for (int i = 0; i < 64; i++) raw[i] = (char)(0x80 + i * 2);
        tok_encode(t, raw, sizeof raw, 0, &ids, &g_err);
        tok_stream s;
        tok_stream_init(&s, t, 0, &g_err);
        char *text;
        size_t len;
        tok_decode(t, ids.ids, ids.n, &text, &len, &g_err);
        CHECK(utf8_is_valid(text, len), "%s: invalid bytes decode to U+FFFD", name);
        free(text);
        tok_stream_free(&s);
    }
    tok_ids_free(&ids);
}

int main(void) {
    struct {
        const char *name, *path;
        int byte_exact;
    } kinds[] = {
        {"gpt2", "gpt2", 1},
        {"sp-bpe-32k", "sp-bpe-32k", 0},
        {"llama3", "llama3-tokenizer", 1},
    };
    for (int k = 0; k < 3; k++) {
        tokenizer *t = NULL;
        CHECK(tok_load(&t, test_data_path(kinds[k].path), &g_err) == 0, "load %s: %s", kinds[k].name, g_err.msg);
        if (t) fuzz(kinds[k].name, t, kinds[k].byte_exact, 1500, (uint64_t)k + 1);
        tok_close(&t);
    }
    tokenizer *b = NULL;
    tok_new_bytes(&b, &g_err);
    fuzz("bytes", b, 1, 1500, 11);
    tok_close(&b);
    const char *corpus[] = {test_data_path("hh-rlhf/harmless-base-test-300.jsonl")};
    const char *specials[] = {"<|endoftext|>"};
    tokenizer *trained = NULL;
    CHECK(tok_train_bpe(&trained, corpus, 1, 600, specials, 1, NULL, NULL, &g_err) == 0, "train: %s", g_err.msg);
    if (trained) fuzz("trained", trained, 1, 1500, 12);
    tok_close(&trained);
    return test_finish("tok_fuzz");
}
