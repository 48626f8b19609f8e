/* redact.c — finds identifier spans with small scanners, then rebuilds the text with masks.
 *
 * Each scanner reports [start, end) spans; overlapping spans are resolved by taking the one
 * that starts first (the longer one on a tie), so "bob.555-1234@x.org" is one e-mail, not an
 * e-mail with a phone number inside. Works on bytes: every pattern is ASCII, and UTF-8
 * continuation bytes are never ASCII letters or digits, so multi-byte text is never split. */
#include "feedback/redact.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    size_t start, end;
    const char *mask;
} span;

typedef struct {
    span *items;
    size_t n, cap;
    int failed;
} span_list;

static void add_span(span_list *l, size_t start, size_t end, const char *mask) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        span *p = realloc(l->items, cap * sizeof *p);
        if (!p) {
            l->failed = 1;
            return;
        }
        l->items = p;
        l->cap = cap;
    }
    l->items[l->n++] = (span){start, end, mask};
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int is_alnum(char c) { return is_digit(c) || is_alpha(c); }
static int is_local_char(char c) { return is_alnum(c) || (c && strchr("._%+-", c)); }
static int is_domain_char(char c) { return is_alnum(c) || c == '-' || c == '.'; }

static void find_emails(const char *s, size_t n, span_list *l) {
    for (size_t at = 0; at < n; at++) {
        if (s[at] != '@') continue;
        size_t start = at;
        while (start > 0 && is_local_char(s[start - 1])) start--;
        while (start < at && s[start] == '.') start++;
        size_t end = at + 1;
        while (end < n && is_domain_char(s[end])) end++;
        while (end > at + 1 && (s[end - 1] == '.' || s[end - 1] == '-')) end--;
        if (start == at || end == at + 1) continue;
        /* the domain needs a dot and a top-level label of >= 2 letters */
        size_t last_dot = 0;
        for (size_t i = at + 1; i < end; i++)
            if (s[i] == '.') last_dot = i;
        if (!last_dot || last_dot == at + 1 || end - last_dot - 1 < 2) continue;
        int tld_ok = 1;
        for (size_t i = last_dot + 1; i < end; i++) tld_ok &= is_alpha(s[i]);
        if (!tld_ok) continue;
        add_span(l, start, end, "[EMAIL]");
        at = end - 1;
    }
}

/* Reads 1-3 digits of an octet <= 255 at s[*i]; returns 0 if there is none. */
static int read_octet(const char *s, size_t n, size_t *i) {
    size_t j = *i;
    int value = 0, digits = 0;
    while (j < n && is_digit(s[j]) && digits < 4) {
        value = value * 10 + (s[j] - '0');
        digits++;
        j++;
    }
    if (digits == 0 || digits > 3 || value > 255) return 0;
    *i = j;
    return 1;
}

static void find_ipv4(const char *s, size_t n, span_list *l) {
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]) || (i > 0 && (is_alnum(s[i - 1]) || s[i - 1] == '.'))) continue;
        size_t j = i;
        int ok = 1;
        for (int octet = 0; octet < 4 && ok; octet++) {
            if (octet > 0) {
                if (j < n && s[j] == '.') j++;
                else ok = 0;
            }
            if (ok) ok = read_octet(s, n, &j);
        }
        if (!ok) continue;
        if (j < n && (is_alnum(s[j]) || (s[j] == '.' && j + 1 < n && is_digit(s[j + 1])))) continue;
        add_span(l, i, j, "[IP]");
        i = j - 1;
    }
}

/* A run of digit groups joined by single separators, as phone and card numbers are written. */
typedef struct {
    size_t end;
    int digits;      /* total digits */
    int groups;      /* number of digit groups */
    int group[20];   /* digits per group (first 20) */
    char sep[20];    /* separator before group i (sep[0] unused) */
    int plus, parens;
} number_run;

static int scan_number(const char *s, size_t n, size_t i, number_run *r) {
    memset(r, 0, sizeof *r);
    size_t j = i;
    if (s[j] == '+') {
        r->plus = 1;
        j++;
    }
    char sep = 0;
    for (;;) {
        int paren = 0;
        if (j < n && s[j] == '(') {
            paren = 1;
            j++;
        }
        int g = 0;
        while (j < n && is_digit(s[j])) {
            g++;
            j++;
        }
        if (g == 0 || (paren && (j >= n || s[j] != ')')))
            break; /* an unclosed "(" ends the run before it (r->end is unchanged) */
        if (paren) {
            r->parens = 1;
            j++;
        }
        if (r->groups < 20) {
            r->group[r->groups] = g;
            r->sep[r->groups] = paren && r->groups ? '(' : sep;
        }
        r->groups++;
        r->digits += g;
        r->end = j;
        /* one separator (or none after ")"), then another group, continues the run */
        if (j + 1 < n && (s[j] == ' ' || s[j] == '-' || s[j] == '.') &&
            (is_digit(s[j + 1]) || (s[j + 1] == '(' && j + 2 < n && is_digit(s[j + 2])))) {
            sep = s[j];
            j++;
            continue;
        }
        if (paren && j < n && is_digit(s[j])) {
            sep = ')';
            continue;
        }
        break;
    }
    return r->digits > 0;
}

static int seps_only(const number_run *r, const char *allowed) {
    for (int g = 1; g < r->groups && g < 20; g++)
        if (!strchr(allowed, r->sep[g])) return 0;
    return 1;
}

static const char *classify_number(const number_run *r) {
    int D = r->digits, G = r->groups;
    if (G > 20) return NULL;
    if (r->plus) return D >= 8 && D <= 15 ? "[PHONE]" : NULL;
    if (r->parens) return D >= 10 && D <= 11 ? "[PHONE]" : NULL;
    if (G == 3 && r->group[0] == 3 && r->group[1] == 2 && r->group[2] == 4 && seps_only(r, "-"))
        return "[ID]";
    if (D >= 13 && D <= 19 && seps_only(r, " -")) return "[CARD]";
    if (G >= 2 && r->group[G - 1] == 4 && D >= 10 && D <= 13) {
        int ok = 1;
        for (int g = 0; g < G - 1; g++)
            ok &= (r->group[g] >= 2 && r->group[g] <= 4) || (g == 0 && r->group[g] == 1);
        if (ok && seps_only(r, " -.")) return "[PHONE]";
    }
    if (G == 2 && r->group[0] == 3 && r->group[1] == 4 && seps_only(r, "-.")) return "[PHONE]";
    return NULL;
}

static void find_numbers(const char *s, size_t n, span_list *l) {
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!(is_digit(c) || ((c == '+' || c == '(') && i + 1 < n && (is_digit(s[i + 1]) || s[i + 1] == '('))))
            continue;
        if (i > 0 && (is_alnum(s[i - 1]) || s[i - 1] == '.' || s[i - 1] == ',' || s[i - 1] == '-' ||
                      s[i - 1] == '+' || s[i - 1] == '/' || s[i - 1] == '_'))
            continue;
        number_run r;
        if (!scan_number(s, n, i, &r)) continue;
        size_t end = r.end;
        /* glued to a letter or to more digits after a dot: a version, a decimal, a code */
        if (end < n && (is_alpha(s[end]) || s[end] == '_' ||
                        ((s[end] == '.' || s[end] == ',') && end + 1 < n && is_digit(s[end + 1]))))
            continue;
        const char *mask = classify_number(&r);
        if (mask) {
            add_span(l, i, end, mask);
            i = end - 1;
        } else {
            while (i + 1 < n && (is_digit(s[i + 1]))) i++; /* do not restart inside the run */
        }
    }
}

static int by_start(const void *x, const void *y) {
    const span *a = x, *b = y;
    if (a->start != b->start) return a->start < b->start ? -1 : 1;
    return (a->end < b->end) - (a->end > b->end); /* longer first */
}

char *redact_text(const char *text, size_t *n_masked) {
    if (!text) text = "";
    size_t n = strlen(text);
    span_list l = {0};
    find_emails(text, n, &l);
    find_ipv4(text, n, &l);
    find_numbers(text, n, &l);
    if (l.failed) {
        free(l.items);
        return NULL;
    }
    if (l.n > 1) qsort(l.items, l.n, sizeof *l.items, by_start);
    /* the output never grows by more than the longest mask per masked span */
    char *out = malloc(n + l.n * 8 + 1);
    if (!out) {
        free(l.items);
        return NULL;
    }
    size_t pos = 0, used = 0, masked = 0;
    for (size_t k = 0; k < l.n; k++) {
        const span *sp = &l.items[k];
        if (sp->start < pos) continue; /* overlaps a span already taken */
        memcpy(out + used, text + pos, sp->start - pos);
        used += sp->start - pos;
        size_t m = strlen(sp->mask);
        memcpy(out + used, sp->mask, m);
        used += m;
        pos = sp->end;
        masked++;
    }
    memcpy(out + used, text + pos, n - pos);
    used += n - pos;
    out[used] = '\0';
    free(l.items);
    if (n_masked) *n_masked += masked;
    return out;
}
