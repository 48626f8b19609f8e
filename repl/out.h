/* out.h — the one place the program writes to the user.
 *
 * All normal output goes through out_printf (stdout by default) and all diagnostics through
 * out_error (stderr, prefixed "rlhf: "), so transcript tests can capture both by redirecting
 * the sinks. */
#ifndef RLHF_REPL_OUT_H
#define RLHF_REPL_OUT_H

#include <stdio.h>

#include "src/core/error.h"

void out_set_sinks(FILE *out, FILE *err);
FILE *out_stream(void);
void out_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void out_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "rlhf: <message of err>" (or the code's name when the message is empty); returns
 * the exit status a command should return for that code (1). */
int out_fail(const rlhf_error *err);
/* Prints a live progress line that overwrites itself on a terminal ("\r"), or one line per
 * call when stderr is not a terminal. */
void out_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Ends the live progress line (newline if one is showing). */
void out_progress_end(void);
/* A JSON string literal (quotes, escapes) / a number as JSON (null when not finite; a float
 * value gets the shortest text that reads back as that float), through out_printf. */
void out_json_string(const char *s);
void out_json_float(double v);

#endif
