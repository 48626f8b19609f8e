/* line_read.h — where the REPL's input comes from: GNU readline on a terminal, plain reads
 * otherwise (a script file, a pipe), behind one function.
 *
 * One call returns one logical input: a physical line, several joined by a trailing `\`, or a
 * `"""` block (the lines between a line `"""` and the next line `"""`, joined with newlines).
 * On a terminal the input has history (kept in a file across sessions), tab completion (asked
 * of the caller through a callback) and line editing; Ctrl-C clears the line being typed and
 * never ends the session; Ctrl-D on an empty line is the end of input.
 *
 * Ctrl-C while something runs: line_read_install_signals() installs a SIGINT handler that sets
 * the flag line_read_interrupt_flag() points to, which long work checks (gen_params.stop_flag)
 * and the caller resets before starting it. The handler only sets the flag, so work that does
 * not check it simply finishes. */
#ifndef RLHF_REPL_LINE_READ_H
#define RLHF_REPL_LINE_READ_H

#include <signal.h>
#include <stdio.h>

#include "src/core/error.h"

/* Completion: the candidates for `word` (the text under the cursor, starting at byte `start` of
 * the line, whose first `start` bytes are `line`'s). Returns a NULL-terminated malloc'ed array
 * of malloc'ed strings, or NULL for none; *files = 1 asks for file-name completion instead. */
typedef char **(*line_complete_fn)(void *user, const char *line, int start, const char *word, int *files);

typedef struct {
    FILE *in;                  /* where to read; NULL: stdin */
    int force_plain;           /* 1: plain reads even on a terminal */
    const char *history_path;  /* NULL: $XDG_STATE_HOME/rlhf/history (~/.local/state/...);
                                  "" : no history file */
    line_complete_fn complete; /* may be NULL */
    void *user;
} line_read_params;

typedef struct line_reader line_reader;

/* Opens a reader (readline when `in` is a terminal and not force_plain). The history file's
 * directory is created when missing; a history file that cannot be read or written is not an
 * error (the session works without it). */
int line_read_open(line_reader **out, const line_read_params *p, rlhf_error *err);
/* Saves nothing more (every input is appended to the history file when it is read); frees. */
void line_read_close(line_reader **lr);

/* Reads one logical input into *line (malloc'ed, no trailing newline). Returns 1 for an input,
 * 0 at the end of input (Ctrl-D, end of file: *line NULL). Ctrl-C while typing on a terminal
 * discards the input and shows a fresh prompt. A `"""` block still open at the end of the
 * input is returned as it is. `prompt` is shown on a terminal only. */
int line_read(line_reader *lr, const char *prompt, char **line);
/* The physical line number (1-based) where the last input started. */
int line_read_line_no(const line_reader *lr);
/* 1 when reading through readline (a person at a terminal). */
int line_read_interactive(const line_reader *lr);
/* The history file in use, or NULL. */
const char *line_read_history_path(const line_reader *lr);

/* The flag SIGINT sets (see the top of the file). */
volatile sig_atomic_t *line_read_interrupt_flag(void);
/* Installs the SIGINT handler (without SA_RESTART, so a blocked read returns); idempotent. */
void line_read_install_signals(void);

#endif
