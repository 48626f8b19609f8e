/* columns.h — texts side by side, fitted to the terminal width: `rlhf generate --compare` and
 * the REPL's candidates.
 *
 * Widths are display columns (a CJK character or an emoji takes two, a combining mark none),
 * so every row's separators line up; text wraps at the last blank of a full line. Output goes
 * through repl/out.h. The width is the terminal's (stdout), else $COLUMNS, else 100. */
#ifndef RLHF_REPL_COLUMNS_H
#define RLHF_REPL_COLUMNS_H

#include <stddef.h>

#define COLUMNS_MAX 26

/* Prints k cells (k <= COLUMNS_MAX): a band of titles, a rule, the texts, a rule, the footers
 * (NULL cells are empty). Columns narrower than 18 are not drawn: the cells then come in
 * several bands. */
void columns_print(char *const *titles, char *const *texts, char *const *foots, int k);
/* Display width of UTF-8 text s[0..n) (invalid bytes count one column each run). */
int columns_text_width(const char *s, size_t n);

#endif
