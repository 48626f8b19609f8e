/* bleu.c — corpus BLEU-4 with sacrebleu's exp smoothing (see bleu.h). */
#include "src/world/bleu.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

#define MAX_TOKENS 256
#define MAX_TOKEN_LEN 48

typedef struct {
    char tok[MAX_TOKENS][MAX_TOKEN_LEN];
    int n;
} token_list;

static int is_word_byte(unsigned char c) { return isalnum(c) || c >= 0x80; }

static void tokenize(const char *s, token_list *out) {
    out->n = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p && out->n < MAX_TOKENS) {
        if (isspace(*p)) {
            p++;
            continue;
        }
        char *t = out->tok[out->n++];
        int len = 0;
        if (is_word_byte(*p)) {
            for (; *p && is_word_byte(*p); p++)
                if (len < MAX_TOKEN_LEN - 1) t[len++] = (char)tolower(*p);
        } else {
            t[len++] = (char)*p++; /* one punctuation character */
        }
        t[len] = '\0';
    }
}

static int ngram_eq(const token_list *a, int i, const token_list *b, int j, int n) {
    for (int k = 0; k < n; k++)
        if (strcmp(a->tok[i + k], b->tok[j + k]) != 0) return 0;
    return 1;
}

/* Occurrences of the n-gram at a[i..i+n) in list b. */
static int count_in(const token_list *a, int i, const token_list *b, int n) {
    int c = 0;
    for (int j = 0; j + n <= b->n; j++) c += ngram_eq(a, i, b, j, n);
    return c;
}

void bleu_add(bleu_stats *s, const char *hypothesis, const char *reference) {
    static _Thread_local token_list h, r; /* 24 KB each: kept off the stack */
    tokenize(hypothesis, &h);
    tokenize(reference, &r);
    s->hyp_len += h.n;
    s->ref_len += r.n;
    s->sentences++;
    for (int n = 1; n <= BLEU_MAX_ORDER; n++) {
        if (h.n < n) continue;
        s->totals[n - 1] += h.n - n + 1;
        /* clipped: each distinct hypothesis n-gram counts at most as often as the reference has it;
         * counted at its first occurrence only */
        for (int i = 0; i + n <= h.n; i++) {
            int first = 1;
            for (int j = 0; j < i && first; j++) first = !ngram_eq(&h, i, &h, j, n);
            if (!first) continue;
            int in_h = count_in(&h, i, &h, n), in_r = count_in(&h, i, &r, n);
            s->matches[n - 1] += in_h < in_r ? in_h : in_r;
        }
    }
}

double bleu_score(const bleu_stats *s, double *precisions, double *brevity_penalty) {
    double p[BLEU_MAX_ORDER] = {0}, smooth = 1, log_sum = 0;
    int zero_total = 0;
    for (int n = 0; n < BLEU_MAX_ORDER; n++) {
        if (s->totals[n] == 0) {
            zero_total = 1;
            continue;
        }
        if (s->matches[n] == 0) {
            smooth *= 2;
            p[n] = 100.0 / (smooth * (double)s->totals[n]);
        } else {
            p[n] = 100.0 * (double)s->matches[n] / (double)s->totals[n];
        }
        log_sum += log(p[n] / 100.0);
    }
    double bp = s->hyp_len == 0 ? 0 : s->hyp_len < s->ref_len ? exp(1.0 - (double)s->ref_len / (double)s->hyp_len) : 1;
    if (precisions) memcpy(precisions, p, sizeof p);
    if (brevity_penalty) *brevity_penalty = bp;
    if (zero_total || s->sentences == 0) return 0;
    return 100.0 * bp * exp(log_sum / BLEU_MAX_ORDER);
}
