/* chat_parse.h — the REPL's command-line parser: what one input line means, without acting.
 *
 * An input is a command ("/set top_p 0.9", "/rank B > A = C"), a bare ranking ("B>A=C", only
 * meaningful when candidates are shown), or a prompt (anything else). Command arguments are
 * words separated by blanks; single or double quotes group a word ("/shot add \"a b\" => c"
 * keeps its text as typed: commands that take free text read the rest of the line instead).
 * Pure functions over strings, so the fuzzer can drive them (fuzz/fuzz_repl.c). */
#ifndef RLHF_REPL_CHAT_PARSE_H
#define RLHF_REPL_CHAT_PARSE_H

#include <stddef.h>

#include "src/core/error.h"

#define CHAT_MAX_WORDS 64

typedef enum {
    CHAT_INPUT_EMPTY = 0, /* blank, or a comment line starting with '#' */
    CHAT_INPUT_COMMAND,   /* starts with '/' */
    CHAT_INPUT_RANKING,   /* letters joined by '>' and '=' (at least one '>' or '='), e.g. B>A=C */
    CHAT_INPUT_PROMPT,    /* anything else */
} chat_input_kind;

typedef struct {
    chat_input_kind kind;
    char name[32];        /* COMMAND: the name without '/', lower case ("" for a lone '/') */
    const char *rest;     /* COMMAND: the text after the name, blanks skipped (into the line) */
    char *words[CHAT_MAX_WORDS]; /* COMMAND: rest split into words (quotes removed); owned */
    int n_words;
} chat_input;

/* Classifies `line` (not modified; `rest` points into it). RLHF_ERR_INVALID for an unmatched
 * quote or more than CHAT_MAX_WORDS words, naming the problem; RLHF_ERR_NOMEM. On error *in
 * is left empty. chat_input_free is safe on a zeroed struct and twice. */
int chat_input_parse(chat_input *in, const char *line, rlhf_error *err);
void chat_input_free(chat_input *in);

/* 1 if s looks like a bare ranking of candidate letters: "B > A = C" (letters, '>', '=',
 * blanks; at least two letters and one operator). */
int chat_is_ranking(const char *s);

/* Splits "INPUT => OUTPUT" at the first "=>" and trims both sides into new strings.
 * RLHF_ERR_INVALID when there is no "=>" or a side is empty. */
int chat_split_shot(const char *s, char **input, char **output, rlhf_error *err);

/* A candidate label ("A", "b") to its index 0..n-1; RLHF_ERR_INVALID naming the label when it
 * is not one of the n shown. */
int chat_label_index(const char *word, int n, int *index, rlhf_error *err);

/* Damerau-free Levenshtein distance of two short strings (for "did you mean"). */
int chat_edit_distance(const char *a, const char *b);

#endif
