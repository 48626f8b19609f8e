/* test_pretokenizer.c — the hand-written GPT-2 scanner splits exactly as PCRE2 runs the GPT-2
 * pattern: on every reference test text, on the whole Shakespeare and HH-RLHF files, and on random
 * strings built from the characters that matter (every kind of space, letters and numbers beyond
 * ASCII, apostrophes, invalid UTF-8, NUL). */
#include "src/core/rng.h"
#include "src/tok/pretokenizer.h"
#include "tests/test_util.h"
#include "tests/tok_test_cases.h"

static pretokenizer_regex g_re;
static pretokenizer_match_state g_st;
static size_t g_compared;

/* Piece boundaries of both splitters; returns 1 if equal (prints the first difference). */
static int same_split(const unsigned char *s, size_t n, const char *what) {
    size_t a = 0, b = 0, pend_start = 0, pend_end = 0;
    int pending = 0;
    while (a < n || b < n) {
        size_t ea = a < n ? pretokenizer_gpt2_next(s, n, a) : n;
        size_t eb = n;
        if (b < n) {
            if (pending) {
                eb = pend_end;
                pending = 0;
            } else {
                size_t ms, me;
                rlhf_error err = {0};
                int found = pretokenizer_regex_find(&g_re, &g_st, s, n, b, &ms, &me, &err);
                if (found < 0) {
                    fprintf(stderr, "%s: PCRE2 failed: %s\n", what, err.msg);
                    return 0;
                }
                if (!found) ms = me = n;
                if (ms > b) {
                    eb = ms; /* the gap first, then the match */
                    pending = me > ms;
                    pend_start = ms;
                    pend_end = me;
                } else {
                    eb = me;
                }
            }
        }
        (void)pend_start;
        if (ea != eb || a != b) {
            fprintf(stderr, "%s: scanner piece [%zu,%zu) vs PCRE2 [%zu,%zu): \"%.*s\"\n", what, a, ea, b, eb,
                    (int)(ea > a ? ea - a : 1), (const char *)s + a);
            return 0;
        }
        a = ea;
        b = eb;
        g_compared++;
    }
    return 1;
}

int main(void) {
    rlhf_error err = {0};
    if (pretokenizer_regex_compile(&g_re, PRETOKENIZER_GPT2_PATTERN, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    size_t n_cases;
    tok_case *cases = tok_cases_read(test_data_path("gpt2/encode-cases.jsonl"), &n_cases);
    int bad = 0;
    for (size_t i = 0; i < n_cases; i++) bad += !same_split((const unsigned char *)cases[i].text, cases[i].len, "case");
    CHECK(bad == 0, "scanner = PCRE2 on all %zu reference texts (%d differ)", n_cases, bad);
    tok_cases_free(cases, n_cases);

    const char *files[] = {"tinyshakespeare/input.txt", "hh-rlhf/harmless-base-test-300.jsonl"};
    for (int f = 0; f < 2; f++) {
        char *data;
        size_t len;
        CHECK(file_read_all(test_data_path(files[f]), &data, &len, &err) == 0, "read %s", files[f]);
        CHECK(same_split((const unsigned char *)data, len, files[f]), "scanner = PCRE2 on all of %s", files[f]);
        free(data);
    }

    /* random strings over an alphabet of the interesting characters */
    static const char *const alphabet[] = {
        "a", "Z", "s", "t", "re", "ve", "ll", "d", "m", "'", "'", "0", "9", " ", " ", " ", "\t", "\n", "\r", "\v", "\f",
        "\xC2\xA0", "\xC2\x85", "\xE1\xA0\x8E", "\xE2\x80\x80", "\xE3\x80\x80", "\xE2\x80\x8B", "\xE2\x80\xA8",
        "\xC3\xA9", "\xE6\x97\xA5", "\xCE\xA9", "\xD9\xA3", "\xC2\xB2", "\xE2\x85\xAB", "!", ".", "-", "\xE2\x80\x99",
        "\xF0\x9F\x98\x80", "\x80", "\xFF", "\xE6\x97", "\xC0\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\x01", "\x1C",
        "<|endoftext|>", "\xEF\xBB\xBF", "_", "\xCC\x81",
    };
    const size_t n_alpha = sizeof alphabet / sizeof alphabet[0];
    rng_t r;
    rng_seed(&r, 1234);
    unsigned char buf[512];
    int fuzz_bad = 0;
    for (int it = 0; it < 30000 && fuzz_bad < 3; it++) {
        size_t n = 0, pieces = rng_below(&r, 24);
        for (size_t k = 0; k < pieces; k++) {
            const char *p = alphabet[rng_below(&r, n_alpha)];
            size_t l = strlen(p);
            memcpy(buf + n, p, l);
            n += l;
        }
        fuzz_bad += !same_split(buf, n, "alphabet fuzz");
    }
    for (int it = 0; it < 30000 && fuzz_bad < 3; it++) {
        size_t n = rng_below(&r, 32);
        for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)rng_below(&r, 256);
        fuzz_bad += !same_split(buf, n, "byte fuzz");
    }
    CHECK(fuzz_bad == 0, "scanner = PCRE2 on 60000 random strings");
    fprintf(stderr, "compared %zu pieces\n", g_compared);
    pretokenizer_match_state_free(&g_st);
    pretokenizer_regex_free(&g_re);
    return test_finish("pretokenizer");
}
