/* columns.c — texts side by side, fitted to the terminal (see columns.h).
 *
 * Widths are display columns, not bytes or code points: a CJK character or an emoji takes two
 * columns, a combining mark none (wcwidth under the UTF-8 locale `rlhf chat` sets), so the
 * separators of every row line up. Text wraps at the last blank of a full line when there is
 * one; control characters show as blanks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <wchar.h>

#include "repl/columns.h"
#include "repl/out.h"
#include "src/core/utf8.h"

/* Display width of one code point: wcwidth, with unprintable characters (shown as a blank or
 * U+FFFD) counted as one column. */
static int cp_width(uint32_t cp) {
    if (cp < 0x20 || cp == 0x7F) return 1;
    int w = wcwidth((wchar_t)cp);
    return w < 0 ? 1 : w;
}

/* Decodes the character at s[0..n): its byte length (>= 1) and code point (U+FFFD if invalid). */
static int next_char(const char *s, size_t n, uint32_t *cp) {
    int len = utf8_decode((const unsigned char *)s, n, cp);
    if (len <= 0) {
        *cp = 0xFFFD;
        return len < 0 ? -len : (int)n;
    }
    return len;
}

int columns_text_width(const char *s, size_t n) {
    int w = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += (size_t)next_char(s + i, n - i, &cp);
        w += cp_width(cp);
    }
    return w;
}

static int term_width(void) {
    struct winsize ws;
    if (isatty(fileno(out_stream())) && ioctl(fileno(out_stream()), TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
        return ws.ws_col;
    const char *c = getenv("COLUMNS");
    int w = c ? atoi(c) : 0;
    return w >= 20 ? w : 100;
}

typedef struct {
    const char *s;
    int len;
} span;

/* Wraps text to `width` columns; returns the number of lines (at most max). */
static int wrap(const char *text, int width, span *lines, int max) {
    int n = 0;
    const char *p = text;
    size_t left = strlen(text);
    while (left && n < max) {
        const char *start = p, *brk = NULL;
        int cols = 0;
        while (left && *p != '\n') {
            uint32_t cp;
            int len = next_char(p, left, &cp);
            int w = cp_width(cp);
            if (cols + w > width) break;
            if (*p == ' ') brk = p;
            cols += w;
            p += len;
            left -= (size_t)len;
        }
        if (left && *p != '\n' && *p != ' ' && brk && brk > start) {
            left += (size_t)(p - (brk + 1));
            p = brk + 1;
        }
        lines[n].s = start;
        lines[n].len = (int)(p - start);
        n++;
        if (left && (*p == '\n' || *p == ' ')) {
            p++;
            left--;
        }
    }
    if (n == 0) {
        lines[0].s = "";
        lines[0].len = 0;
        n = 1;
    }
    return n;
}

static void cell(const char *s, int len, int width) {
    int cols = 0;
    for (int i = 0; i < len;) {
        uint32_t cp;
        int l = next_char(s + i, (size_t)(len - i), &cp);
        if (cp < 0x20 || cp == 0x7F) out_printf(" ");
        else out_printf("%.*s", l, s + i);
        cols += cp_width(cp);
        i += l;
    }
    for (; cols < width; cols++) out_printf(" ");
}

#define MAX_LINES 2000

static void band(char *const *cells, int k, int cw, int max_lines) {
    static span lines[COLUMNS_MAX][MAX_LINES];
    int nl[COLUMNS_MAX], most = 0;
    for (int c = 0; c < k; c++) {
        nl[c] = wrap(cells[c] ? cells[c] : "", cw, lines[c], max_lines);
        if (nl[c] > most) most = nl[c];
    }
    for (int l = 0; l < most; l++)
        for (int c = 0; c < k; c++) {
            if (l < nl[c]) cell(lines[c][l].s, lines[c][l].len, cw);
            else cell("", 0, cw);
            out_printf(c + 1 < k ? " | " : "\n");
        }
}

static void rule(int k, int cw) {
    for (int c = 0; c < k; c++) {
        for (int i = 0; i < cw; i++) out_printf("-");
        out_printf(c + 1 < k ? "-+-" : "\n");
    }
}

void columns_print(char *const *titles, char *const *texts, char *const *foots, int k) {
    if (k <= 0) return;
    if (k > COLUMNS_MAX) k = COLUMNS_MAX;
    int w = term_width();
    /* columns narrower than 18 are unreadable: fall back to fewer per band */
    int per = k;
    while (per > 1 && (w - 3 * (per - 1)) / per < 18) per--;
    for (int first = 0; first < k; first += per) {
        int n = k - first < per ? k - first : per;
        int cw = (w - 3 * (n - 1)) / n;
        if (first) out_printf("\n");
        band(titles + first, n, cw, 4);
        rule(n, cw);
        band(texts + first, n, cw, MAX_LINES);
        rule(n, cw);
        band(foots + first, n, cw, 8);
    }
}
