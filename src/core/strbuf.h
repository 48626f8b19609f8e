/* strbuf.h — a growable, NUL-terminated byte buffer for building text (rendered templates,
 * prompts).
 *
 * Errors are sticky instead of returned at each append: a renderer appends in hundreds of places,
 * and checking `oom` / `too_big` once at the end keeps every one of them a single line. `limit`
 * lets a caller bound the output (a hostile template that would render gigabytes is refused). */
#ifndef RLHF_STRBUF_H
#define RLHF_STRBUF_H

#include <stddef.h>

typedef struct {
    char *s;       /* the text, NUL-terminated once anything was appended; owned by the buffer */
    size_t n, cap; /* bytes used (without the NUL), bytes allocated */
    int oom;       /* an allocation failed: later appends do nothing */
    size_t limit;  /* when not 0: refuse to grow past this many bytes and set too_big */
    int too_big;
} strbuf;

/* Appends n bytes of s (which may hold NULs). */
void strbuf_put(strbuf *b, const char *s, size_t n);
/* Appends a NUL-terminated string. */
void strbuf_puts(strbuf *b, const char *s);
/* Frees the text and zeroes the buffer; safe on a zeroed buffer and twice. */
void strbuf_free(strbuf *b);

#endif
