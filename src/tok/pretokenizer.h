/* pretokenizer.h — splitting text into pre-tokens before BPE (engine-internal).
 *
 * Two splitters with one contract: given a position, say where the piece starting there ends.
 *  - The GPT-2 pattern  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *    by a hand-written scanner (the fast path; GPT-2 and every tokenizer trained here use it).
 *  - Any other pattern from a tokenizer file (Llama 3's Split regex...) by PCRE2 in UTF + UCP
 *    mode with JIT, with Hugging Face's "Isolated" behaviour: matches and the gaps between them
 *    are both pieces.
 * Invalid UTF-8 follows PCRE2_MATCH_INVALID_UTF: no piece of the pattern spans an invalid byte;
 * a run of invalid bytes is a piece of its own. tests/test_pretokenizer.c checks that the
 * scanner splits exactly as PCRE2 does on every test text and on random input. */
#ifndef RLHF_PRETOKENIZER_H
#define RLHF_PRETOKENIZER_H

#include <stddef.h>

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include "src/core/error.h"

/* The GPT-2 pattern exactly as tiktoken and Hugging Face's ByteLevel pre-tokenizer spell it. */
#define PRETOKENIZER_GPT2_PATTERN \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

/* End of the GPT-2 pre-token that starts at s[pos] (pos < n); always > pos. */
size_t pretokenizer_gpt2_next(const unsigned char *s, size_t n, size_t pos);

/* A compiled pattern, shared read-only between threads. */
typedef struct {
    pcre2_code *code;
} pretokenizer_regex;

/* Compiles `pattern` (UTF-8, NUL-terminated) with UTF, UCP and MATCH_INVALID_UTF, JIT if the
 * platform has it. */
int pretokenizer_regex_compile(pretokenizer_regex *re, const char *pattern, rlhf_error *err);
void pretokenizer_regex_free(pretokenizer_regex *re);

/* Per-thread match state: PCRE2 match data and a JIT stack big enough for long whitespace runs.
 * Zero-initialise; pretokenizer_match_state_free releases it (safe on zeroed, safe twice). */
typedef struct {
    pcre2_match_data *match_data;
    pcre2_match_context *context;
    pcre2_jit_stack *jit_stack;
    const pcre2_code *for_code; /* the pattern match_data was sized for */
} pretokenizer_match_state;

void pretokenizer_match_state_free(pretokenizer_match_state *st);

/* Finds the next match at or after pos: sets [*start, *end) and returns 1, returns 0 when there is
 * none, or a negative code (match limits exceeded, out of memory). Empty matches are skipped. */
int pretokenizer_regex_find(const pretokenizer_regex *re, pretokenizer_match_state *st, const unsigned char *s,
                      size_t n, size_t pos, size_t *start, size_t *end, rlhf_error *err);

#endif
