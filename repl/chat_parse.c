/* chat_parse.c — see chat_parse.h. */
#include "repl/chat_parse.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

void chat_input_free(chat_input *in) {
    for (int i = 0; i < in->n_words && i < CHAT_MAX_WORDS; i++) free(in->words[i]);
    in->n_words = 0;
    in->kind = CHAT_INPUT_EMPTY;
    in->rest = NULL;
    in->name[0] = 0;
}

int chat_is_ranking(const char *s) {
    int letters = 0, ops = 0, prev_letter = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (is_blank((char)c)) continue;
        if (isalpha(c) && c < 0x80) {
            if (prev_letter) return 0; /* "AB" is a word, not two candidates */
            letters++;
            prev_letter = 1;
        } else if (c == '>' || c == '=') {
            if (!prev_letter) return 0;
            ops++;
            prev_letter = 0;
        } else {
            return 0;
        }
    }
    return letters >= 2 && ops >= 1 && prev_letter;
}

/* Splits rest into words: blanks separate, quotes group (no escapes inside quotes). */
static int split_words(chat_input *in, const char *s, rlhf_error *err) {
    while (*s) {
        while (is_blank(*s)) s++;
        if (!*s) break;
        if (in->n_words == CHAT_MAX_WORDS)
            return rlhf_errorf(err, RLHF_ERR_INVALID, "too many words (at most %d)", CHAT_MAX_WORDS);
        size_t cap = strlen(s) + 1, n = 0;
        char *w = malloc(cap);
        if (!w) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
        while (*s && !is_blank(*s)) {
            if (*s == '"' || *s == '\'') {
                char q = *s++;
                const char *end = strchr(s, q);
                if (!end) {
                    free(w);
                    return rlhf_errorf(err, RLHF_ERR_INVALID, "unmatched %c quote", q);
                }
                memcpy(w + n, s, (size_t)(end - s));
                n += (size_t)(end - s);
                s = end + 1;
            } else {
                w[n++] = *s++;
            }
        }
        w[n] = 0;
        in->words[in->n_words++] = w;
    }
    return 0;
}

int chat_input_parse(chat_input *in, const char *line, rlhf_error *err) {
    memset(in, 0, sizeof *in);
    const char *s = line;
    while (is_blank(*s)) s++;
    if (!*s || *s == '#') return 0;
    if (*s != '/') {
        in->kind = chat_is_ranking(s) ? CHAT_INPUT_RANKING : CHAT_INPUT_PROMPT;
        in->rest = s;
        return 0;
    }
    s++;
    size_t n = 0;
    while (s[n] && !is_blank(s[n])) n++;
    if (n >= sizeof in->name) return rlhf_errorf(err, RLHF_ERR_INVALID, "unknown command '/%.*s'", 40, s);
    for (size_t i = 0; i < n; i++) in->name[i] = (char)tolower((unsigned char)s[i]);
    in->name[n] = 0;
    s += n;
    while (is_blank(*s)) s++;
    in->kind = CHAT_INPUT_COMMAND;
    in->rest = s;
    int rc = split_words(in, s, err);
    if (rc) chat_input_free(in);
    return rc;
}

static char *trimmed(const char *s, size_t n) {
    while (n && is_blank(*s)) s++, n--;
    while (n && is_blank(s[n - 1])) n--;
    return strndup(s, n);
}

int chat_split_shot(const char *s, char **input, char **output, rlhf_error *err) {
    *input = *output = NULL;
    const char *arrow = strstr(s, "=>");
    if (!arrow) return rlhf_errorf(err, RLHF_ERR_INVALID, "expected INPUT => OUTPUT");
    char *a = trimmed(s, (size_t)(arrow - s)), *b = trimmed(arrow + 2, strlen(arrow + 2));
    if (!a || !b) {
        free(a);
        free(b);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    }
    if (!a[0] || !b[0]) {
        int rc = rlhf_errorf(err, RLHF_ERR_INVALID, "the %s of INPUT => OUTPUT is empty", a[0] ? "output" : "input");
        free(a);
        free(b);
        return rc;
    }
    *input = a;
    *output = b;
    return 0;
}

int chat_label_index(const char *w, int n, int *index, rlhf_error *err) {
    if (w && w[0] && !w[1] && isalpha((unsigned char)w[0]) && (unsigned char)w[0] < 0x80) {
        int i = toupper((unsigned char)w[0]) - 'A';
        if (i < n) {
            *index = i;
            return 0;
        }
    }
    if (n <= 0) return rlhf_errorf(err, RLHF_ERR_INVALID, "no candidates are shown (/candidates N or /compare SPECS first)");
    return rlhf_errorf(err, RLHF_ERR_INVALID, "'%.20s' is not a candidate (A..%c)", w ? w : "", 'A' + n - 1);
}

int chat_edit_distance(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    if (na > 31) na = 31;
    if (nb > 31) nb = 31;
    int row[32];
    for (size_t j = 0; j <= nb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= nb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[nb];
}
