/* pair_check.h — checks made on a judgement's texts before it is stored.
 *
 * Bad pairs poison training, so a side that is empty or whitespace, or that leaks template or
 * special-token text (<|endoftext|>, <|im_start|>, "\n\nHuman:", [INST], <s>, ...), is caught
 * at write time: the store refuses it, or stores it with a flag when told to (imports do, so a
 * dataset round-trips whole and the flagged rows stay out of training by default). Identical
 * sides are always refused. Pure functions on text. */
#ifndef RLHF_FEEDBACK_PAIR_CHECK_H
#define RLHF_FEEDBACK_PAIR_CHECK_H

#include <stddef.h>

enum pair_check_issue {
    PAIR_CHECK_EMPTY = 1, /* empty or only whitespace */
    PAIR_CHECK_LEAK = 2,  /* contains special-token or dialogue-template text */
};

/* The template or special-token text found first in `text` ("<|im_start|>", "\n\nHuman:", or
 * the role marker "Human:" at its very start), or NULL. The result is a static string. */
const char *pair_check_leak(const char *text);

/* Issues of one response text as a mask of pair_check_issue. For each issue a one-line reason
 * naming the response by `label` (e.g. "the chosen response leaks template text
 * \"<|im_start|>\"") is appended to `reason` ("; "-separated, truncated to size) and a flag
 * naming it by `tag` ("empty:chosen", "leak:B") to `flags` (","-separated). Either buffer may
 * be NULL. */
int pair_check_text(const char *text, const char *label, const char *tag, char *reason,
                    size_t reason_size, char *flags, size_t flags_size);

/* 1 if the two texts are byte-identical. */
int pair_check_identical(const char *a, const char *b);

#endif
