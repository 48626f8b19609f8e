/* utf8.h — strict UTF-8 decoding and repair.
 *
 * Tokenizers see arbitrary bytes (user input, files, a model's partial output). Decoding here is
 * strict (no overlong forms, no surrogates, nothing above U+10FFFF), the same definition PCRE2
 * uses for PCRE2_MATCH_INVALID_UTF, so the hand-written pre-tokenizer and PCRE2 agree on what is
 * a character. Repair replaces each maximal invalid subpart with U+FFFD (Unicode's recommended
 * practice, as Python's errors="replace" and Rust's from_utf8_lossy do). */
#ifndef RLHF_UTF8_H
#define RLHF_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* The replacement character U+FFFD in UTF-8. */
#define UTF8_REPLACEMENT "\xEF\xBF\xBD"

/* Decodes one character at s[0..n), n >= 1. Returns its length (1-4) and sets *cp; for an invalid
 * sequence returns the negated length of its maximal invalid subpart (-1..-3) and sets *cp to
 * 0xFFFD; returns 0 when s is a valid but incomplete prefix of a character cut by the end of
 * the buffer (only possible when n < 4). */
int utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* Encodes cp (<= 0x10FFFF, not a surrogate) into out (4 bytes of room); returns the length. */
int utf8_encode(uint32_t cp, char *out);

/* 1 if s[0..n) is entirely valid UTF-8. */
int utf8_is_valid(const char *s, size_t n);

#endif
