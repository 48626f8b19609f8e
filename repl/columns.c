/* columns.c — texts side by side, fitted to the terminal (see columns.h).
 *
 * Widths are display columns, not bytes or code points: a CJK character or an emoji takes two
 * columns, a combining mark none (cp_width), so the separators of every row line up. Text wraps at the last blank of a full line when there is
 * one; control characters show as blanks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "repl/columns.h"
#include "repl/out.h"
#include "src/core/utf8.h"

/* Display width of one code point, as terminals draw it (Unicode East Asian Width W/F: 2;
 * combining marks, zero-width format characters and variation selectors: 0; else 1). A table
 * here rather than wcwidth(), whose answer depends on the process locale (`rlhf generate` runs
 * in the C locale). Unprintable characters are shown as a blank: 1. */
static int cp_width(uint32_t cp) {
    static const uint32_t zero[][2] = {
        {0x0300, 0x036F}, {0x0483, 0x0489}, {0x0591, 0x05BD}, {0x0610, 0x061A}, {0x064B, 0x065F},
        {0x0E31, 0x0E31}, {0x0E34, 0x0E3A}, {0x0E47, 0x0E4E}, {0x1AB0, 0x1AFF}, {0x1DC0, 0x1DFF},
        {0x200B, 0x200F}, {0x202A, 0x202E}, {0x2060, 0x2064}, {0x20D0, 0x20FF}, {0xFE00, 0xFE0F},
        {0xFE20, 0xFE2F}, {0xFEFF, 0xFEFF}, {0xE0100, 0xE01EF},
    };
    static const uint32_t wide[][2] = {
        {0x1100, 0x115F}, {0x231A, 0x231B}, {0x2329, 0x232A}, {0x23E9, 0x23EC}, {0x23F0, 0x23F0},
        {0x23F3, 0x23F3}, {0x25FD, 0x25FE}, {0x2614, 0x2615}, {0x2648, 0x2653}, {0x267F, 0x267F},
        {0x2693, 0x2693}, {0x26A1, 0x26A1}, {0x26AA, 0x26AB}, {0x26BD, 0x26BE}, {0x26C4, 0x26C5},
        {0x26CE, 0x26CE}, {0x26D4, 0x26D4}, {0x26EA, 0x26EA}, {0x26F2, 0x26F3}, {0x26F5, 0x26F5},
        {0x26FA, 0x26FA}, {0x26FD, 0x26FD}, {0x2705, 0x2705}, {0x270A, 0x270B}, {0x2728, 0x2728},
        {0x274C, 0x274C}, {0x274E, 0x274E}, {0x2753, 0x2755}, {0x2757, 0x2757}, {0x2795, 0x2797},
        {0x27B0, 0x27B0}, {0x27BF, 0x27BF}, {0x2B1B, 0x2B1C}, {0x2B50, 0x2B50}, {0x2B55, 0x2B55},
        {0x2E80, 0x303E}, {0x3041, 0x33FF}, {0x3400, 0x4DBF}, {0x4E00, 0x9FFF}, {0xA000, 0xA4CF},
        {0xA960, 0xA97F}, {0xAC00, 0xD7A3}, {0xF900, 0xFAFF}, {0xFE10, 0xFE19}, {0xFE30, 0xFE6F},
        {0xFF00, 0xFF60}, {0xFFE0, 0xFFE6}, {0x16FE0, 0x16FE4}, {0x17000, 0x18CFF}, {0x1B000, 0x1B2FF},
        {0x1F004, 0x1F004}, {0x1F0CF, 0x1F0CF}, {0x1F18E, 0x1F18E}, {0x1F191, 0x1F19A}, {0x1F200, 0x1F251},
        {0x1F300, 0x1F320}, {0x1F32D, 0x1F335}, {0x1F337, 0x1F37C}, {0x1F37E, 0x1F393}, {0x1F3A0, 0x1F3CA},
        {0x1F3CF, 0x1F3D3}, {0x1F3E0, 0x1F3F0}, {0x1F3F4, 0x1F3F4}, {0x1F3F8, 0x1F43E}, {0x1F440, 0x1F440},
        {0x1F442, 0x1F4FC}, {0x1F4FF, 0x1F53D}, {0x1F54B, 0x1F54E}, {0x1F550, 0x1F567}, {0x1F57A, 0x1F57A},
        {0x1F595, 0x1F596}, {0x1F5A4, 0x1F5A4}, {0x1F5FB, 0x1F64F}, {0x1F680, 0x1F6C5}, {0x1F6CC, 0x1F6CC},
        {0x1F6D0, 0x1F6D2}, {0x1F6D5, 0x1F6D7}, {0x1F6EB, 0x1F6EC}, {0x1F6F4, 0x1F6FC}, {0x1F7E0, 0x1F7EB},
        {0x1F90C, 0x1F93A}, {0x1F93C, 0x1F945}, {0x1F947, 0x1F9FF}, {0x1FA70, 0x1FAFF}, {0x20000, 0x2FFFD},
        {0x30000, 0x3FFFD},
    };
    if (cp < 0x20 || cp == 0x7F) return 1;
    if (cp < 0x300) return 1;
    for (size_t i = 0; i < sizeof zero / sizeof zero[0]; i++)
        if (cp >= zero[i][0] && cp <= zero[i][1]) return 0;
    for (size_t i = 0; i < sizeof wide / sizeof wide[0]; i++)
        if (cp >= wide[i][0] && cp <= wide[i][1]) return 2;
    return 1;
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
