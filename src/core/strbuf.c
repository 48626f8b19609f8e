/* strbuf.c — see strbuf.h. Doubling growth: appends are amortised O(1). */
#include "src/core/strbuf.h"

#include <stdlib.h>
#include <string.h>

void strbuf_put(strbuf *b, const char *s, size_t n) {
    if (b->oom || b->too_big) return;
    if (b->limit && (n > b->limit || b->n > b->limit - n)) {
        b->too_big = 1;
        return;
    }
    if (n > ((size_t)1 << 40)) { /* a length that can only come from a bug; never write it */
        b->oom = 1;
        return;
    }
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (b->n + n + 1 > c) c *= 2;
        char *ns = realloc(b->s, c);
        if (!ns) {
            b->oom = 1;
            return;
        }
        b->s = ns;
        b->cap = c;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

void strbuf_puts(strbuf *b, const char *s) { strbuf_put(b, s, strlen(s)); }

void strbuf_free(strbuf *b) {
    free(b->s);
    memset(b, 0, sizeof *b);
}
