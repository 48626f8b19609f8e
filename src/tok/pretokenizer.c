/* pretokenizer.c — the GPT-2 pre-token scanner and the PCRE2 splitter (see the header).
 *
 * The scanner walks the alternatives of the GPT-2 pattern in order, as a backtracking regex
 * engine would, using the Unicode classes of src/tok/unicode_tables.h. The only backtracking in the
 * pattern is "\s+(?!\S)": a whitespace run followed by a non-space gives back its last
 * character, so that " word" keeps its leading space. */
#include "src/tok/pretokenizer.h"

#include <string.h>

#include "src/tok/unicode_tables.h"
#include "src/core/utf8.h"

/* A class the Unicode table has no need for: a byte that is not part of valid UTF-8. */
#define CLASS_INVALID 4

static const unsigned char ascii_class[128] = {
    /* \t \n \v \f \r are white space; NUL and the other controls are "other" */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 3, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
};

/* Class of the character at s[i] (i < n); *len receives its length (1 for an invalid byte, so a
 * run of invalid bytes is walked byte by byte and PCRE2's resynchronisation is reproduced). */
static inline int class_at(const unsigned char *s, size_t n, size_t i, size_t *len) {
    unsigned c = s[i];
    if (c < 0x80) {
        *len = 1;
        return ascii_class[c];
    }
    uint32_t cp;
    int k = utf8_decode(s + i, n - i, &cp);
    if (k <= 0) {
        *len = 1;
        return CLASS_INVALID;
    }
    *len = (size_t)k;
    return (int)unicode_class_of(cp);
}

/* End of the run of characters of class `cls` starting at i. */
static inline size_t run_of(const unsigned char *s, size_t n, size_t i, int cls) {
    while (i < n) {
        if (s[i] < 0x80) {
            if (ascii_class[s[i]] != cls) break;
            i++;
            continue;
        }
        size_t len;
        if (class_at(s, n, i, &len) != cls) break;
        i += len;
    }
    return i;
}

size_t pretokenizer_gpt2_next(const unsigned char *s, size_t n, size_t pos) {
    unsigned c = s[pos];
    /* 's|'t|'re|'ve|'m|'ll|'d  (case-sensitive, first alternative wins) */
    if (c == '\'' && pos + 1 < n) {
        unsigned d = s[pos + 1];
        if (d == 's' || d == 't' || d == 'm' || d == 'd') return pos + 2;
        if (pos + 2 < n) {
            unsigned e = s[pos + 2];
            if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l')) return pos + 3;
        }
    }
    size_t len;
    int cls = class_at(s, n, pos, &len);
    /* ' ?\p{L}+' ' ?\p{N}+' ' ?[^\s\p{L}\p{N}]+': an optional literal space, then a run */
    if (c == ' ' && pos + 1 < n) {
        size_t len2;
        int next = class_at(s, n, pos + 1, &len2);
        if (next == UNICODE_CLASS_LETTER || next == UNICODE_CLASS_NUMBER || next == UNICODE_CLASS_OTHER)
            return run_of(s, n, pos + 1 + len2, next);
    }
    if (cls == UNICODE_CLASS_LETTER || cls == UNICODE_CLASS_NUMBER || cls == UNICODE_CLASS_OTHER)
        return run_of(s, n, pos + len, cls);
    if (cls == CLASS_INVALID) return run_of(s, n, pos + len, CLASS_INVALID);
    /* '\s+(?!\S)|\s+': the whole run when nothing (or an invalid byte, which \S cannot match)
     * follows it; otherwise all but the last character, unless that leaves nothing. */
    size_t last = pos, i = pos + len;
    while (i < n) {
        size_t l;
        if (class_at(s, n, i, &l) != UNICODE_CLASS_SPACE) break;
        last = i;
        i += l;
    }
    if (i == n) return i;
    size_t l;
    if (class_at(s, n, i, &l) == CLASS_INVALID) return i;
    return last > pos ? last : i;
}

int pretokenizer_regex_compile(pretokenizer_regex *re, const char *pattern, rlhf_error *err) {
    int code;
    PCRE2_SIZE offset;
    re->code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                             PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code, &offset, NULL);
    if (!re->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return rlhf_errorf(err, RLHF_ERR_FORMAT, "pre-tokenizer regex does not compile at offset %zu: %s",
                           (size_t)offset, (const char *)msg);
    }
    /* JIT is an optimisation: without it (an unsupported CPU) the interpreter gives the same splits */
    (void)pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);
    return RLHF_OK;
}

void pretokenizer_regex_free(pretokenizer_regex *re) {
    if (re->code) pcre2_code_free(re->code);
    re->code = NULL;
}

void pretokenizer_match_state_free(pretokenizer_match_state *st) {
    if (st->match_data) pcre2_match_data_free(st->match_data);
    if (st->context) pcre2_match_context_free(st->context);
    if (st->jit_stack) pcre2_jit_stack_free(st->jit_stack);
    memset(st, 0, sizeof *st);
}

int pretokenizer_regex_find(const pretokenizer_regex *re, pretokenizer_match_state *st, const unsigned char *s,
                      size_t n, size_t pos, size_t *start, size_t *end, rlhf_error *err) {
    if (st->for_code != re->code) {
        if (st->match_data) pcre2_match_data_free(st->match_data);
        st->match_data = pcre2_match_data_create_from_pattern(re->code, NULL);
        st->for_code = st->match_data ? re->code : NULL;
        if (!st->match_data) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for regex match data");
    }
    if (!st->context) {
        /* the default 32 KiB JIT stack overflows on whitespace runs of a few thousand
         * characters under "\s+(?!\S)"; 8 MiB covers runs of millions */
        st->context = pcre2_match_context_create(NULL);
        st->jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
        if (!st->context || !st->jit_stack) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for regex state");
        pcre2_jit_stack_assign(st->context, NULL, st->jit_stack);
    }
    /* the subject is passed with a NULL-safe pointer even when empty */
    static const unsigned char empty[1] = {0};
    int rc = pcre2_match(re->code, n ? (PCRE2_SPTR)s : (PCRE2_SPTR)empty, n, pos, PCRE2_NOTEMPTY,
                         st->match_data, st->context);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        return rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "pre-tokenizer regex failed at byte %zu: %s", pos,
                           (const char *)msg);
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(st->match_data);
    *start = ov[0];
    *end = ov[1];
    return 1;
}
