/* test_tok_unicode.c — the generated Unicode classes and the strict UTF-8 decoder agree with PCRE2.
 *
 * The GPT-2 scanner must split exactly as PCRE2 runs the same pattern, so its class table
 * (src/tok/unicode_tables.c) is checked against PCRE2's \p{L}, \p{N} and \s (UTF + UCP) on every code
 * point, and utf8_decode's notion of valid UTF-8 against PCRE2's UTF check on random bytes. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "src/core/rng.h"
#include "src/tok/unicode_tables.h"
#include "src/core/utf8.h"
#include "tests/test_util.h"

static pcre2_code *compile(const char *pattern, uint32_t options) {
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, options, &code, &off, NULL);
    if (!re) {
        fprintf(stderr, "pattern %s does not compile\n", pattern);
        exit(1);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    return re;
}

int main(void) {
    pcre2_code *re = compile("^(?:(\\p{L})|(\\p{N})|(\\s))", PCRE2_UTF | PCRE2_UCP);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int mismatches = 0;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue; /* surrogates are not characters in UTF-8 */
        char buf[4];
        int n = utf8_encode(cp, buf);
        int rc = pcre2_match(re, (PCRE2_SPTR)buf, (size_t)n, 0, 0, md, NULL);
        int want = 0;
        if (rc > 1) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            for (int g = 1; g < rc; g++)
                if (ov[2 * g] != PCRE2_UNSET) want = g;
        }
        int got = (int)unicode_class_of(cp);
        if (got != want && mismatches++ < 10)
            fprintf(stderr, "U+%04X: table says class %d, PCRE2 says %d\n", (unsigned)cp, got, want);
        uint32_t back;
        if (utf8_decode((const unsigned char *)buf, (size_t)n, &back) != n || back != cp) mismatches++;
    }
    CHECK(mismatches == 0, "Unicode class table and UTF-8 round trip agree with PCRE2 on every code point (%d mismatches)",
          mismatches);

    /* validity of random byte strings: utf8_is_valid vs PCRE2's own UTF check */
    pcre2_code *any = compile("", PCRE2_UTF);
    pcre2_match_data *md2 = pcre2_match_data_create_from_pattern(any, NULL);
    rng_t r;
    rng_seed(&r, 7);
    int disagree = 0;
    for (int it = 0; it < 200000; it++) {
        unsigned char s[6];
        size_t n = 1 + rng_below(&r, 6);
        for (size_t i = 0; i < n; i++) {
            /* bias towards lead and continuation bytes so most strings are interesting */
            uint64_t k = rng_below(&r, 4);
            s[i] = (unsigned char)(k == 0 ? rng_below(&r, 256) : k == 1 ? 0x80 + rng_below(&r, 64) : 0xC0 + rng_below(&r, 64));
        }
        int pcre_valid = pcre2_match(any, s, n, 0, 0, md2, NULL) >= 0;
        if (pcre_valid != utf8_is_valid((const char *)s, n) && disagree++ < 5) {
            fprintf(stderr, "bytes");
            for (size_t i = 0; i < n; i++) fprintf(stderr, " %02x", s[i]);
            fprintf(stderr, ": PCRE2 valid=%d\n", pcre_valid);
        }
    }
    CHECK(disagree == 0, "strict UTF-8 validity agrees with PCRE2 on random bytes (%d disagreements)", disagree);
    pcre2_match_data_free(md);
    pcre2_match_data_free(md2);
    pcre2_code_free(re);
    pcre2_code_free(any);
    return test_finish("tok_unicode");
}
