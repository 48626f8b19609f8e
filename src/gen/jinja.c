/* jinja.c — the Jinja interpreter that renders chat templates (see jinja.h for the subset).
 *
 * The interpreter works in three passes over one render: the lexer cuts the template into
 * text and tag tokens (applying whitespace control, trim_blocks and lstrip_blocks as Hugging
 * Face's environment does), a recursive-descent parser builds statement and expression trees,
 * and the evaluator walks them. Every value, tree node and intermediate string lives in one
 * arena freed at the end of the render, so there is no reference counting: values are
 * immutable except lists/dicts being built and namespace attributes. */
#include "src/gen/jinja.h"
#include "src/core/strbuf.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the Jinja subset: limits, arena and values ---- */

/* Templates come from model files, so a render is bounded whatever the template does: every
 * limit below ends the render with an error naming the template line, never a crash or a hang.
 *   JINJA_MAX_NEST         recursion in the parser and depth of expression trees and of
 *                          nested blocks (so parsing and evaluation stay within the C stack);
 *   JINJA_MAX_DEPTH        nesting of evaluation at run time, where macros can call
 *                          themselves (each level a few hundred bytes of C stack);
 *   JINJA_MAX_VALUE_DEPTH  lists/dicts nested inside each other when printed or compared (a
 *                          namespace can hold itself: {% set ns.a = ns %});
 *   JINJA_MAX_STR          bytes in any one string the template builds;
 *   JINJA_MAX_OUTPUT       bytes of rendered text;
 *   JINJA_ARENA_BASE       working memory of the evaluation: this plus JINJA_ARENA_PER_INPUT
 *                          times the bytes of the template and the messages (lexing and
 *                          parsing take memory linear in the template, capped at this plus
 *                          JINJA_PARSE_PER_BYTE times its size);
 *   JINJA_STEP_BUDGET      steps per render: one per expression evaluated, statement run and
 *                          loop iteration, plus one per JINJA_STEP_BYTES bytes scanned or
 *                          entries searched by string and container operations. Real chat
 *                          templates spend 25-40 steps a message, so 2M is ~50k messages;
 *                          spending it all takes well under a second.
 * (Allocation is not charged: the memory limit bounds it.) */
enum {
    JINJA_MAX_NEST = 256,
    JINJA_MAX_VALUE_DEPTH = 64,
    JINJA_STEP_BYTES = 64,
    JINJA_ARENA_PER_INPUT = 8,
    JINJA_PARSE_PER_BYTE = 512,
    JINJA_MAX_DEPTH = 1000,
};
#define JINJA_MAX_STR ((size_t)16 << 20)
#define JINJA_MAX_OUTPUT ((size_t)16 << 20)
#define JINJA_ARENA_BASE ((size_t)32 << 20)
#define JINJA_STEP_BUDGET 2000000LL

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    max_align_t data[];
} arena_block;

typedef struct {
    arena_block *head;
    size_t total; /* bytes malloc'd for blocks */
} arena;

static void *arena_alloc(arena *a, size_t n) {
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (!a->head || a->head->used + n > a->head->cap) {
        size_t cap = n > 65536 ? n : 65536;
        arena_block *b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
        a->total += sizeof *b + cap;
    }
    void *p = (char *)a->head->data + a->head->used;
    a->head->used += n;
    memset(p, 0, n);
    return p;
}

static void arena_free(arena *a) {
    while (a->head) {
        arena_block *n = a->head->next;
        free(a->head);
        a->head = n;
    }
}

/* V_FUNC is one of the global functions (raise_exception, range, ...; u.i its index in
 * global_funcs), V_MACRO a {% macro %} or the `caller` of a {% call %} block. */
typedef enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_FUNC, V_MACRO } vtype;

typedef struct value value;
typedef struct vlist vlist;
typedef struct vdict vdict;
typedef struct jmacro jmacro;

struct value {
    vtype t;
    union {
        int b;
        long long i;
        double f;
        struct {
            const char *s;
            size_t n;
        } s;
        vlist *l;
        vdict *d;
        const jmacro *m;
    } u;
};

struct vlist {
    value *items;
    int n, cap;
    int is_tuple; /* printed (a, b) as Python prints a tuple */
};

struct vdict {
    value *keys; /* strings */
    value *vals;
    int n, cap;
    int is_namespace;
};

/* What v_list_new/v_dict_new hand out when an allocation failed: the error is already set, and
 * nothing writes to a list or dict once it is (list_push, dict_set check J->rc), so these stay
 * empty and callers never see a NULL list or dict. */
static vlist empty_list;
static vdict empty_dict;

/* ---- interpreter state and errors ---- */

typedef struct {
    arena A;
    size_t arena_limit;
    long long steps; /* spent of JINJA_STEP_BUDGET */
    rlhf_error *err;
    int rc;       /* first error */
    int line;     /* line of the construct being parsed/evaluated */
    strbuf out;
    const struct tm *now; /* strftime_now's clock; NULL: the real local time */
    int depth;    /* eval and exec_body calls open (macros recurse at run time), at most JINJA_MAX_DEPTH */
    int loop_ctl; /* a {% break %} (1) or {% continue %} (2) is unwinding to its loop */
} jinja;

static int jerr(jinja *J, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int jerr(jinja *J, int code, const char *fmt, ...) {
    if (J->rc) return J->rc;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    J->rc = rlhf_errorf(J->err, code, "line %d: %s", J->line, msg);
    return J->rc;
}

/* Every allocation of a render goes through here: NULL (with the error set) past the memory
 * limit or when malloc fails. */
static void *jalloc(jinja *J, size_t n) {
    if (J->rc) return NULL;
    if (n > J->arena_limit || J->A.total > J->arena_limit - n) {
        jerr(J, RLHF_ERR_UNSUPPORTED, "the template needs more than %zu MiB of memory", J->arena_limit >> 20);
        return NULL;
    }
    void *p = arena_alloc(&J->A, n);
    if (!p) jerr(J, RLHF_ERR_NOMEM, "out of memory");
    return p;
}

/* A copy of n bytes in the arena (never NULL-sized: n 0 still gives a pointer), or NULL with
 * the error set. */
static void *jdup(jinja *J, const void *src, size_t n) {
    void *p = jalloc(J, n ? n : 1);
    if (p && n) memcpy(p, src, n);
    return p;
}

/* Charges `steps` to the render's budget; nonzero once it is exhausted (or on any error). */
static int spend(jinja *J, long long steps) {
    J->steps += steps;
    if (J->steps > JINJA_STEP_BUDGET && !J->rc)
        jerr(J, RLHF_ERR_UNSUPPORTED, "the template exceeds the step budget (%lld steps)", (long long)JINJA_STEP_BUDGET);
    return J->rc;
}

/* Charges a scan over n bytes (or entries). */
static int spend_bytes(jinja *J, size_t n) { return spend(J, (long long)(n / JINJA_STEP_BYTES)); }

static int err_too_long(jinja *J) {
    return jerr(J, RLHF_ERR_UNSUPPORTED, "a string longer than %zu MiB", JINJA_MAX_STR >> 20);
}

/* Python integers have no bound; ours stop at 64 bits, and say so. */
static int err_int_range(jinja *J) { return jerr(J, RLHF_ERR_UNSUPPORTED, "integer out of range (beyond 64 bits)"); }

static value v_undef(void) { value v = {V_UNDEF, {0}}; return v; }
static value v_none(void) { value v = {V_NONE, {0}}; return v; }
static value v_bool(int b) { value v = {V_BOOL, {0}}; v.u.b = !!b; return v; }
static value v_int(long long i) { value v = {V_INT, {0}}; v.u.i = i; return v; }
static value v_float(double f) { value v = {V_FLOAT, {0}}; v.u.f = f; return v; }
static value v_strn(const char *s, size_t n) {
    value v = {V_STR, {0}};
    v.u.s.s = s;
    v.u.s.n = n;
    return v;
}

/* Room for a string of n bytes plus a NUL (NULL with the error set past JINJA_MAX_STR). */
static char *str_alloc(jinja *J, size_t n) {
    if (n > JINJA_MAX_STR) {
        err_too_long(J);
        return NULL;
    }
    return jalloc(J, n + 1);
}

static value v_str_copy(jinja *J, const char *s, size_t n) {
    char *p = str_alloc(J, n);
    if (!p) return v_strn("", 0);
    if (n) memcpy(p, s, n);
    return v_strn(p, n);
}

/* A bounded buffer for building one string. */
static strbuf str_buf(void) {
    strbuf b = {0};
    b.limit = JINJA_MAX_STR;
    return b;
}

/* The string built in b as a value (or "" with the error set); frees b's memory. */
static value str_buf_finish(jinja *J, strbuf *b) {
    value r = v_strn("", 0);
    if (b->too_big) err_too_long(J);
    else if (b->oom) jerr(J, RLHF_ERR_NOMEM, "out of memory");
    else r = v_str_copy(J, b->s ? b->s : "", b->n);
    free(b->s);
    memset(b, 0, sizeof *b);
    return r;
}

static value v_list_new(jinja *J) {
    value v = {V_LIST, {0}};
    v.u.l = jalloc(J, sizeof(vlist));
    if (!v.u.l) v.u.l = &empty_list;
    return v;
}

static void list_push(jinja *J, vlist *l, value x) {
    if (J->rc) return;
    if (l->n == l->cap) {
        if (l->cap > INT_MAX / 2) {
            jerr(J, RLHF_ERR_UNSUPPORTED, "a list too long");
            return;
        }
        int cap = l->cap ? l->cap * 2 : 8;
        value *ni = jalloc(J, (size_t)cap * sizeof *ni);
        if (!ni) return;
        if (l->n) memcpy(ni, l->items, (size_t)l->n * sizeof *ni);
        l->items = ni;
        l->cap = cap;
    }
    l->items[l->n++] = x;
}

static value v_dict_new(jinja *J) {
    value v = {V_DICT, {0}};
    v.u.d = jalloc(J, sizeof(vdict));
    if (!v.u.d) v.u.d = &empty_dict;
    return v;
}

static int str_eq(value a, const char *s, size_t n) { return a.t == V_STR && a.u.s.n == n && memcmp(a.u.s.s, s, n) == 0; }

/* The entry for key k, or NULL; the search is charged to the step budget. */
static value *dict_get(jinja *J, vdict *d, const char *k, size_t n) {
    spend_bytes(J, (size_t)d->n * 4);
    for (int i = 0; i < d->n; i++)
        if (str_eq(d->keys[i], k, n)) return &d->vals[i];
    return NULL;
}

static void dict_set(jinja *J, vdict *d, value key, value v) {
    if (J->rc) return;
    if (key.t == V_STR) {
        value *e = dict_get(J, d, key.u.s.s, key.u.s.n);
        if (e) {
            *e = v;
            return;
        }
    }
    if (d->n == d->cap) {
        if (d->cap > INT_MAX / 2) {
            jerr(J, RLHF_ERR_UNSUPPORTED, "a dict too large");
            return;
        }
        int cap = d->cap ? d->cap * 2 : 8;
        value *nk = jalloc(J, (size_t)cap * sizeof *nk), *nv = jalloc(J, (size_t)cap * sizeof *nv);
        if (!nk || !nv) return;
        if (d->n) {
            memcpy(nk, d->keys, (size_t)d->n * sizeof *nk);
            memcpy(nv, d->vals, (size_t)d->n * sizeof *nv);
        }
        d->keys = nk;
        d->vals = nv;
        d->cap = cap;
    }
    d->keys[d->n] = key;
    d->vals[d->n] = v;
    d->n++;
}

static int truthy(value v) {
    switch (v.t) {
    case V_UNDEF: case V_NONE: return 0;
    case V_BOOL: return v.u.b;
    case V_INT: return v.u.i != 0;
    case V_FLOAT: return v.u.f != 0.0;
    case V_STR: return v.u.s.n > 0;
    case V_LIST: return v.u.l->n > 0;
    case V_DICT: return v.u.d->n > 0;
    case V_FUNC: case V_MACRO: return 1;
    }
    return 0;
}

static const char *type_name(vtype t) {
    static const char *const n[] = {"undefined", "none", "boolean", "integer", "float", "string", "list", "dict",
                                    "function", "macro"};
    return n[t];
}

static int err_too_deep(jinja *J) {
    return jerr(J, RLHF_ERR_UNSUPPORTED, "a value nested deeper than %d levels (a namespace that contains itself?)",
                JINJA_MAX_VALUE_DEPTH);
}

/* The code point of the UTF-8 sequence at s[*i] (advancing *i past it); a byte that does not
 * start a valid sequence reads as itself. */
static unsigned utf8_decode(const char *s, size_t n, size_t *i) {
    const unsigned char *u = (const unsigned char *)s + *i;
    const size_t left = n - *i;
    const unsigned c = u[0];
    const int k = c >= 0xf0 && c < 0xf8 ? 3 : c >= 0xe0 && c < 0xf0 ? 2 : c >= 0xc0 && c < 0xe0 ? 1 : 0;
    if (k == 0 || (size_t)k >= left) return (*i)++, c;
    unsigned cp = c & (0x3fu >> k);
    for (int j = 1; j <= k; j++) {
        if ((u[j] & 0xc0) != 0x80) return (*i)++, c;
        cp = cp << 6 | (u[j] & 0x3fu);
    }
    *i += (size_t)k + 1;
    return cp;
}

/* A string as json.dumps writes it (ensure_ascii: non-ASCII as \\uXXXX, UTF-16 pairs past
 * U+FFFF). */
static void print_str_json(strbuf *b, const char *s, size_t n, int ascii) {
    strbuf_put(b, "\"", 1);
    for (size_t i = 0; i < n && !b->too_big; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[8];
        if (c == '"') strbuf_put(b, "\\\"", 2);
        else if (c == '\\') strbuf_put(b, "\\\\", 2);
        else if (c == '\n') strbuf_put(b, "\\n", 2);
        else if (c == '\r') strbuf_put(b, "\\r", 2);
        else if (c == '\t') strbuf_put(b, "\\t", 2);
        else if (c == '\b') strbuf_put(b, "\\b", 2);
        else if (c == '\f') strbuf_put(b, "\\f", 2);
        else if (c < 0x20) {
            snprintf(tmp, sizeof tmp, "\\u%04x", c);
            strbuf_puts(b, tmp);
        } else if (c >= 0x80 && ascii) {
            unsigned cp = utf8_decode(s, n, &i);
            i--;
            char t2[16];
            if (cp >= 0x10000) snprintf(t2, sizeof t2, "\\u%04x\\u%04x", 0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + (cp & 0x3ff));
            else snprintf(t2, sizeof t2, "\\u%04x", cp);
            strbuf_puts(b, t2);
        } else strbuf_put(b, (const char *)&c, 1);
    }
    strbuf_put(b, "\"", 1);
}

/* A string as Python's repr() writes it (how str() of a list or dict shows its strings):
 * single quotes unless the string holds ' and no ", control characters escaped. */
static void print_str_repr(strbuf *b, const char *s, size_t n) {
    const char q = memchr(s, '\'', n) && !memchr(s, '"', n) ? '"' : '\'';
    strbuf_put(b, &q, 1);
    for (size_t i = 0; i < n && !b->too_big; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[8];
        if (c == (unsigned char)q || c == '\\') {
            strbuf_put(b, "\\", 1);
            strbuf_put(b, (const char *)&c, 1);
        } else if (c == '\n') strbuf_put(b, "\\n", 2);
        else if (c == '\r') strbuf_put(b, "\\r", 2);
        else if (c == '\t') strbuf_put(b, "\\t", 2);
        else if (c < 0x20 || c == 0x7f) {
            snprintf(tmp, sizeof tmp, "\\x%02x", c);
            strbuf_puts(b, tmp);
        } else if (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 && (unsigned char)s[i + 1] < 0xa0) {
            snprintf(tmp, sizeof tmp, "\\x%02x", (unsigned char)s[++i]); /* C1 controls U+0080..U+009F */
            strbuf_puts(b, tmp);
        } else strbuf_put(b, (const char *)&c, 1);
    }
    strbuf_put(b, &q, 1);
}

/* A float as Python's repr(): the shortest digits that read back to the same double, in
 * fixed notation with at least one decimal when the exponent is in [-4, 16). */
static void print_float(strbuf *b, double f, int json) {
    char tmp[64];
    if (f != f) {
        strbuf_puts(b, json ? "NaN" : "nan");
        return;
    }
    if (isinf(f)) {
        strbuf_puts(b, f > 0 ? (json ? "Infinity" : "inf") : (json ? "-Infinity" : "-inf"));
        return;
    }
    int p = 1;
    for (; p < 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, f);
        if (strtod(tmp, NULL) == f) break;
    }
    snprintf(tmp, sizeof tmp, "%.*e", p - 1, f);
    const int exp10 = atoi(strchr(tmp, 'e') + 1);
    if (exp10 >= -4 && exp10 < 16) {
        const int decimals = p - 1 - exp10 > 0 ? p - 1 - exp10 : 0;
        snprintf(tmp, sizeof tmp, "%.*f", decimals, f);
        if (!strchr(tmp, '.')) strcat(tmp, ".0");
    }
    strbuf_puts(b, tmp);
}

/* How v_print writes a value: str() (json 0), or json.dumps (json 1) with `indent` spaces
 * per level (-1: on one line), its separators (NULL: json.dumps' defaults) and ensure_ascii. */
typedef struct {
    int json, indent;
    value item_sep, key_sep; /* strings, or V_UNDEF */
    int ascii;
} vfmt;

static void v_print_d(jinja *J, strbuf *b, value v, vfmt fm, int depth);

/* An item of a printed list/dict: strings as repr() shows them. */
static void print_item(jinja *J, strbuf *b, value x, vfmt fm, int depth) {
    if (x.t == V_STR && !fm.json) print_str_repr(b, x.u.s.s, x.u.s.n);
    else v_print_d(J, b, x, fm, depth);
}

/* The separator before item i of a JSON container printed with an indent (and, with
 * i == -1, the line that closes it). */
static void json_break(strbuf *b, vfmt fm, int i, int depth) {
    if (i > 0 && fm.item_sep.t == V_STR) strbuf_put(b, fm.item_sep.u.s.s, fm.item_sep.u.s.n);
    else if (i > 0) strbuf_puts(b, fm.indent < 0 ? ", " : ",");
    if (fm.indent < 0) return;
    strbuf_puts(b, "\n");
    for (long k = 0; k < (long)fm.indent * (i < 0 ? depth : depth + 1) && !b->too_big; k++) strbuf_put(b, " ", 1);
}

/* Appends the printed form of v (Jinja/Python str(), or json.dumps). Stops when b reaches its
 * limit (the caller checks b->too_big), and with an error past JINJA_MAX_VALUE_DEPTH levels of
 * lists/dicts (a value can contain itself). */
static void v_print_d(jinja *J, strbuf *b, value v, vfmt fm, int depth) {
    char tmp[64];
    const int json = fm.json;
    if (J->rc || b->too_big || b->oom) return;
    switch (v.t) {
    case V_UNDEF:
        if (json) jerr(J, RLHF_ERR_INVALID, "tojson: an undefined value is not JSON serializable");
        break;
    case V_NONE: strbuf_puts(b, json ? "null" : "None"); break;
    case V_BOOL: strbuf_puts(b, v.u.b ? (json ? "true" : "True") : (json ? "false" : "False")); break;
    case V_INT: snprintf(tmp, sizeof tmp, "%lld", v.u.i); strbuf_puts(b, tmp); break;
    case V_FLOAT: print_float(b, v.u.f, json); break;
    case V_STR:
        if (json) print_str_json(b, v.u.s.s, v.u.s.n, fm.ascii);
        else strbuf_put(b, v.u.s.s, v.u.s.n);
        break;
    case V_FUNC:
    case V_MACRO:
        if (json) jerr(J, RLHF_ERR_INVALID, "tojson: a %s is not JSON serializable", type_name(v.t));
        else strbuf_puts(b, v.t == V_FUNC ? "<function>" : "<macro>");
        break;
    case V_LIST:
    case V_DICT: {
        if (depth >= JINJA_MAX_VALUE_DEPTH) {
            err_too_deep(J);
            return;
        }
        const int dict = v.t == V_DICT, n = dict ? v.u.d->n : v.u.l->n;
        const int tuple = !json && !dict && v.u.l->is_tuple;
        strbuf_puts(b, dict ? "{" : tuple ? "(" : "[");
        if (!json) fm.indent = -1;
        for (int i = 0; i < n && !J->rc && !b->too_big && !spend(J, 1); i++) {
            if (json) json_break(b, fm, i, depth);
            else if (i) strbuf_puts(b, ", ");
            if (dict) {
                value k = v.u.d->keys[i];
                if (json) print_str_json(b, k.u.s.s, k.u.s.n, fm.ascii);
                else print_item(J, b, k, fm, depth + 1);
                if (json && fm.key_sep.t == V_STR) strbuf_put(b, fm.key_sep.u.s.s, fm.key_sep.u.s.n);
                else strbuf_puts(b, ": ");
            }
            print_item(J, b, dict ? v.u.d->vals[i] : v.u.l->items[i], fm, depth + 1);
        }
        if (json && n && fm.indent >= 0) json_break(b, fm, -1, depth);
        strbuf_puts(b, dict ? "}" : !tuple ? "]" : n == 1 ? ",)" : ")");
        break;
    }
    }
}

static void v_print(jinja *J, strbuf *b, value v, int json) {
    vfmt fm = {json, -1, {V_UNDEF, {0}}, {V_UNDEF, {0}}, 0};
    v_print_d(J, b, v, fm, 0);
}

/* v printed into a new string (json: as tojson does). */
static value v_format(jinja *J, value v, int json) {
    strbuf b = str_buf();
    v_print(J, &b, v, json);
    return str_buf_finish(J, &b);
}

static value v_to_str(jinja *J, value v) { return v.t == V_STR ? v : v_format(J, v, 0); }

/* ---- lexer ---- */

typedef enum {
    T_TEXT, T_OUT_BEGIN, T_STMT_BEGIN, T_END, /* tag boundaries */
    T_NAME, T_STR, T_INT, T_FLOAT, T_OP, T_EOF
} tok_type;

typedef struct {
    tok_type t;
    const char *s; /* text / name / op; for T_STR the unescaped string */
    size_t n;
    double num;
    int line;
    long long ival; /* T_INT */
} jtok;

typedef struct {
    jtok *v;
    int n, cap;
} tok_vec;

static int push_tok(jinja *J, tok_vec *tv, jtok t) {
    if (tv->n == tv->cap) {
        if (tv->cap > INT_MAX / 2) return jerr(J, RLHF_ERR_UNSUPPORTED, "template too long");
        int cap = tv->cap ? tv->cap * 2 : 256;
        jtok *nv = jalloc(J, (size_t)cap * sizeof *nv);
        if (!nv) return J->rc;
        if (tv->n) memcpy(nv, tv->v, (size_t)tv->n * sizeof *nv);
        tv->v = nv;
        tv->cap = cap;
    }
    tv->v[tv->n++] = t;
    return 0;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static int is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }

static void put_utf8(strbuf *b, unsigned cp);

/* One escape of a string literal at *pp (its backslash), decoded as Python's unicode-escape
 * decodes it (jinja2 does): \\ \' \" \a \b \f \n \r \t \v, octal \ooo, \xhh, \uXXXX,
 * \UXXXXXXXX, a backslash-newline dropped; any other escape stays as written. */
static int lex_escape(jinja *J, strbuf *b, const char **pp, int *line) {
    const char *p = *pp + 1;
    static const char from[] = "\\'\"abfnrtv", to[] = "\\'\"\a\b\f\n\r\t\v";
    const char *k = strchr(from, *p);
    if (k) {
        strbuf_put(b, &to[k - from], 1);
        *pp = p + 1;
        return 0;
    }
    if (*p == '\n') {
        ++*line;
        *pp = p + 1;
        return 0;
    }
    if (*p >= '0' && *p <= '7') {
        unsigned v = 0;
        int n = 0;
        for (; n < 3 && p[n] >= '0' && p[n] <= '7'; n++) v = v * 8 + (unsigned)(p[n] - '0');
        put_utf8(b, v);
        *pp = p + n;
        return 0;
    }
    const int digits = *p == 'x' ? 2 : *p == 'u' ? 4 : *p == 'U' ? 8 : 0;
    if (digits) {
        unsigned long v = 0;
        for (int i = 1; i <= digits; i++) {
            if (!isxdigit((unsigned char)p[i]))
                return jerr(J, RLHF_ERR_FORMAT, "truncated \\%c escape in a string", *p);
            v = v * 16 + (unsigned long)(isdigit((unsigned char)p[i]) ? p[i] - '0' : tolower((unsigned char)p[i]) - 'a' + 10);
        }
        if (v > 0x10ffff) return jerr(J, RLHF_ERR_FORMAT, "illegal Unicode character in a string escape");
        put_utf8(b, (unsigned)v);
        *pp = p + 1 + digits;
        return 0;
    }
    if (*p == 'N') return jerr(J, RLHF_ERR_UNSUPPORTED, "\\N{...} escapes are not supported");
    strbuf_put(b, p - 1, 2); /* unknown: Python keeps the backslash */
    *pp = p + 1;
    return 0;
}

static int is_space(char c);
static int is_name_char(char c);

/* At p (just inside a {% tag): a {% raw %}...{% endraw %} block becomes one text token, as
 * jinja2 lexes it (no trim_blocks after the opening tag; '-' and lstrip_blocks before the
 * closing one; trim_blocks after it). Returns where lexing goes on, or NULL when the tag is
 * not raw (or on error, with J->rc set). */
static const char *lex_raw(jinja *J, tok_vec *tv, const char *p, int *line, int *strip_next, int *trim_nl) {
    const char *x = p;
    while (is_space(*x)) x++;
    if (strncmp(x, "raw", 3) != 0 || is_name_char(x[3])) return NULL;
    for (x += 3; is_space(*x);) x++;
    const int dash = *x == '-';
    if (strncmp(x + dash, "%}", 2) != 0) return NULL;
    const char *body = x + dash + 2;
    if (dash) while (is_space(*body)) body++;
    const int begin_nl = body > p && body[-1] == '\n';
    for (const char *c = p; c < body; c++) *line += *c == '\n';
    for (const char *t = body; (t = strstr(t, "{%")) != NULL; t += 2) {
        const char *y = t + 2, sign = *y == '-' || *y == '+' ? *y++ : 0;
        while (is_space(*y)) y++;
        if (strncmp(y, "endraw", 6) != 0) continue;
        for (y += 6; is_space(*y);) y++;
        const char close = *y == '-' || *y == '+' ? *y++ : 0;
        if (strncmp(y, "%}", 2) != 0) continue;
        const char *te = t;
        if (sign == '-') {
            while (te > body && is_space(te[-1])) te--;
        } else if (sign != '+') { /* lstrip_blocks */
            const char *c = te;
            while (c > body && c[-1] != '\n' && is_space(c[-1])) c--;
            if (c < te && ((c > body && c[-1] == '\n') || (c == body && begin_nl))) te = c;
        }
        if (te > body) {
            jtok tt = {T_TEXT, body, (size_t)(te - body), 0, *line, 0};
            if (push_tok(J, tv, tt)) return NULL;
        }
        for (const char *c = body; c < y; c++) *line += *c == '\n';
        *strip_next = close == '-';
        *trim_nl = close == 0;
        return y + 2;
    }
    jerr(J, RLHF_ERR_FORMAT, "{%% raw %%} is never closed by {%% endraw %%}");
    return NULL;
}

static int lex(jinja *J, const char *src, tok_vec *tv) {
    const char *p = src;
    int line = 1;
    int strip_next = 0; /* a '-' closed the previous tag: drop leading whitespace */
    int trim_nl = 0;    /* a %} closed the previous tag: trim_blocks drops one newline */
    while (*p) {
        /* text up to the next tag */
        const char *q = p;
        while (*q && !(q[0] == '{' && (q[1] == '{' || q[1] == '%' || q[1] == '#'))) q++;
        const char *ts = p, *te = q;
        if (strip_next) while (ts < te && is_space(*ts)) ts++;
        else if (trim_nl && ts < te && *ts == '\n') ts++;
        else if (trim_nl && ts + 1 < te && ts[0] == '\r' && ts[1] == '\n') ts += 2;
        strip_next = trim_nl = 0;
        int text_line = line;
        for (const char *c = p; c < q; c++) line += *c == '\n';
        if (*q) {
            const char kind = q[1];
            const int minus = q[2] == '-';
            const int plus = q[2] == '+';
            if (minus) {
                while (te > ts && is_space(te[-1])) te--;
            } else if ((kind == '%' || kind == '#') && !plus) {
                /* lstrip_blocks: spaces and tabs from the start of a line up to a block tag */
                const char *c = te;
                while (c > ts && (c[-1] == ' ' || c[-1] == '\t')) c--;
                if (c == src || c[-1] == '\n') te = c;
            }
        }
        if (te > ts) {
            jtok t = {T_TEXT, ts, (size_t)(te - ts), 0, text_line, 0};
            if (push_tok(J, tv, t)) return J->rc;
        }
        if (!*q) break;
        const char kind = q[1];
        p = q + 2;
        if (*p == '-' || *p == '+') p++;
        J->line = line;
        if (kind == '#') {
            const char *e = strstr(p, "#}");
            if (!e) return jerr(J, RLHF_ERR_FORMAT, "unclosed comment");
            for (const char *c = p; c < e; c++) line += *c == '\n';
            strip_next = e > p && e[-1] == '-';
            trim_nl = !strip_next && !(e > p && e[-1] == '+');
            p = e + 2;
            continue;
        }
        if (kind == '%') {
            const char *r = lex_raw(J, tv, p, &line, &strip_next, &trim_nl);
            if (J->rc) return J->rc;
            if (r) {
                p = r;
                continue;
            }
        }
        jtok begin = {kind == '{' ? T_OUT_BEGIN : T_STMT_BEGIN, q, 2, 0, line, 0};
        if (push_tok(J, tv, begin)) return J->rc;
        const char close = kind == '{' ? '}' : '%';
        for (;;) {
            while (is_space(*p)) line += *p++ == '\n';
            J->line = line;
            if (!*p) return jerr(J, RLHF_ERR_FORMAT, "unclosed tag");
            if ((p[0] == '-' || p[0] == '+') && p[1] == close && p[2] == '}') {
                strip_next = p[0] == '-';
                p += 3;
                trim_nl = kind == '%' && !strip_next;
                break;
            }
            if (p[0] == close && p[1] == '}') {
                p += 2;
                trim_nl = kind == '%';
                break;
            }
            jtok t = {T_OP, p, 1, 0, line, 0};
            if (is_name_start(*p)) {
                const char *s = p;
                while (is_name_char(*p)) p++;
                t.t = T_NAME;
                t.s = s;
                t.n = (size_t)(p - s);
            } else if (*p >= '0' && *p <= '9') {
                /* Jinja's number syntax: 0x hex, digits, a fraction only with digits after the
                 * point and never right after a '.' (m.content.0.type indexes twice), an exponent */
                const char *e = p;
                int is_float = 0, hex = p[0] == '0' && (p[1] == 'x' || p[1] == 'X') && isxdigit((unsigned char)p[2]);
                const int after_dot = tv->n > 0 && tv->v[tv->n - 1].t == T_OP && tv->v[tv->n - 1].s[0] == '.';
                if (hex) {
                    for (e = p + 2; isxdigit((unsigned char)*e);) e++;
                } else {
                    while (*e >= '0' && *e <= '9') e++;
                    if (!after_dot && e[0] == '.' && e[1] >= '0' && e[1] <= '9')
                        for (is_float = 1, e++; *e >= '0' && *e <= '9';) e++;
                    const char *x = e + 1 + (e[1] == '+' || e[1] == '-');
                    if (!after_dot && (e[0] == 'e' || e[0] == 'E') && *x >= '0' && *x <= '9')
                        for (is_float = 1, e = x; *e >= '0' && *e <= '9';) e++;
                }
                char nb[400];
                if (e - p >= (long)sizeof nb) return jerr(J, RLHF_ERR_UNSUPPORTED, "a number too long");
                memcpy(nb, p, (size_t)(e - p));
                nb[e - p] = 0;
                double x = strtod(nb, NULL);
                if (!is_float) {
                    errno = 0;
                    t.ival = strtoll(nb, NULL, hex ? 16 : 10);
                    if (errno == ERANGE)
                        return jerr(J, RLHF_ERR_UNSUPPORTED, "integer out of range (beyond 64 bits): %.*s", (int)(e - p < 40 ? e - p : 40), p);
                }
                t.t = is_float ? T_FLOAT : T_INT;
                t.num = x;
                t.s = p;
                t.n = (size_t)(e - p);
                p = e;
            } else if (*p == '\'' || *p == '"') {
                const char qc = *p++;
                strbuf b = str_buf();
                while (*p && *p != qc) {
                    if (*p == '\\' && p[1]) {
                        if (lex_escape(J, &b, &p, &line)) {
                            free(b.s);
                            return J->rc;
                        }
                    } else {
                        line += *p == '\n';
                        strbuf_put(&b, p++, 1);
                    }
                }
                if (!*p) {
                    free(b.s);
                    return jerr(J, RLHF_ERR_FORMAT, "unterminated string");
                }
                p++;
                value sv = str_buf_finish(J, &b);
                if (J->rc) return J->rc;
                t.t = T_STR;
                t.s = sv.u.s.s;
                t.n = sv.u.s.n;
            } else {
                static const char *const ops2[] = {"==", "!=", "<=", ">=", "//", "**"};
                t.n = 1;
                for (int i = 0; i < 6; i++)
                    if (p[0] == ops2[i][0] && p[1] == ops2[i][1]) t.n = 2;
                if (!strchr("+-*/%~()[]{},.:|=<>!", *p)) return jerr(J, RLHF_ERR_FORMAT, "unexpected character '%c'", *p);
                p += t.n;
            }
            if (push_tok(J, tv, t)) return J->rc;
        }
        jtok end = {T_END, p, 0, 0, line, 0};
        if (push_tok(J, tv, end)) return J->rc;
    }
    jtok eof = {T_EOF, p, 0, 0, line, 0};
    return push_tok(J, tv, eof);
}

/* ---- syntax trees ---- */

typedef enum {
    E_LIT, E_NAME, E_ATTR, E_INDEX, E_SLICE, E_CALL, E_FILTER, E_TEST, E_NOT, E_NEG, E_BIN, E_AND, E_OR, E_TERNARY,
    E_LIST, E_DICT
} expr_kind;

typedef struct expr expr;
struct expr {
    expr_kind k;
    int line;
    value lit;          /* E_LIT */
    const char *name;   /* E_NAME, E_ATTR, E_FILTER, E_TEST, E_BIN (op) */
    size_t name_n;
    expr *a, *b, *c;    /* operands */
    expr **args;        /* E_CALL / E_FILTER / E_TEST arguments, E_LIST items, E_DICT keys then values,
                           E_SLICE step (NULL when absent) */
    const char **kw;    /* keyword names of args (NULL for positional) */
    size_t *kw_n;
    int n_args;
    int negate;         /* E_TEST: "is not"; E_LIST: a tuple */
};

typedef enum { S_TEXT, S_OUT, S_IF, S_FOR, S_SET, S_NOP, S_MACRO, S_CALLBLOCK, S_BREAK, S_CONTINUE } stmt_kind;

typedef struct stmt stmt;
struct stmt {
    stmt_kind k;
    int line;
    const char *text;   /* S_TEXT */
    size_t text_n;
    expr *e;            /* S_OUT, S_SET value (NULL: a block set, its body captured), S_FOR iterable,
                           S_IF condition, S_CALLBLOCK the call */
    expr *filter;       /* S_FOR "if" */
    const char *vars[2];/* S_FOR loop variables / S_SET target (vars[0]) and attribute (vars[1]) */
    size_t var_n[2];
    int n_vars;
    stmt *body;         /* S_IF then / S_FOR, S_MACRO, S_CALLBLOCK, block S_SET body: a linked list */
    stmt *other;        /* S_IF else / S_FOR else */
    int elif;           /* S_IF: `other` is the next {% elif %} (one S_IF), not an else body */
    const char *name;   /* S_MACRO */
    size_t name_n;
    const char **params; /* S_MACRO, S_CALLBLOCK (caller's): names and defaults (NULL: none) */
    size_t *param_n;
    expr **defaults;
    int n_params;
    int var_args;       /* S_MACRO: the body reads varargs / kwargs (then extra arguments go there) */
    stmt *next;
};

typedef struct {
    jinja *J;
    jtok *t;
    int i, n;
    int depth; /* recursion of the parse functions (enter/leave), at most JINJA_MAX_NEST */
    int loops; /* {% for %} bodies open around the statement being parsed (in the current macro) */
    int var_args; /* names `varargs` / `kwargs` read so far */
} parser;

static jtok *peek(parser *P) { return &P->t[P->i]; }
static int is_op(const jtok *t, const char *op) { return t->t == T_OP && t->n == strlen(op) && memcmp(t->s, op, t->n) == 0; }
static int is_kw(const jtok *t, const char *kw) { return t->t == T_NAME && t->n == strlen(kw) && memcmp(t->s, kw, t->n) == 0; }

static int err_nest(jinja *J) { return jerr(J, RLHF_ERR_UNSUPPORTED, "nesting deeper than %d", JINJA_MAX_NEST); }

/* One more level of parser recursion: nonzero (error set) past JINJA_MAX_NEST, else pair it
 * with leave(). Every recursive path of the parser goes through parse_expr, parse_unary's '-',
 * parse_not's 'not' or a nested parse_body, and those count. */
static int enter(parser *P) {
    if (P->depth >= JINJA_MAX_NEST) {
        P->J->line = peek(P)->line;
        return err_nest(P->J);
    }
    P->depth++;
    return 0;
}

static void leave(parser *P) { P->depth--; }

/* min(depth of the tree e, limit + 1), walking no deeper than that. */
static int expr_depth(const expr *e, int limit) {
    if (!e) return 0;
    if (limit <= 0) return 1;
    int d = 0;
    const expr *kids[3] = {e->a, e->b, e->c};
    for (int i = 0; i < 3 && d < limit; i++) {
        int k = expr_depth(kids[i], limit - 1);
        if (k > d) d = k;
    }
    for (int i = 0; i < e->n_args && d < limit; i++) {
        int k = expr_depth(e->args[i], limit - 1);
        if (k > d) d = k;
    }
    return d + 1;
}

/* A whole expression of a tag: refused when its tree is deeper than JINJA_MAX_NEST, which is
 * what bounds the evaluator's recursion (a + b + c ... parses in a loop but nests). */
static expr *checked(parser *P, expr *e) {
    if (e && expr_depth(e, JINJA_MAX_NEST) > JINJA_MAX_NEST) {
        P->J->line = e->line;
        err_nest(P->J);
        return NULL;
    }
    return e;
}

typedef struct {
    expr **v;
    int n, cap;
} expr_vec;

static int ev_push(parser *P, expr_vec *v, expr *e) {
    if (v->n == v->cap) {
        if (v->cap > INT_MAX / 2) return jerr(P->J, RLHF_ERR_UNSUPPORTED, "a literal too long");
        int cap = v->cap ? v->cap * 2 : 8;
        expr **nv = jalloc(P->J, (size_t)cap * sizeof *nv);
        if (!nv) return P->J->rc;
        if (v->n) memcpy(nv, v->v, (size_t)v->n * sizeof *nv);
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = e;
    return 0;
}

static expr *new_expr(parser *P, expr_kind k) {
    expr *e = jalloc(P->J, sizeof *e);
    if (!e) return NULL;
    e->k = k;
    e->line = peek(P)->line;
    return e;
}

static int expect_op(parser *P, const char *op) {
    if (!is_op(peek(P), op)) {
        P->J->line = peek(P)->line;
        return jerr(P->J, RLHF_ERR_FORMAT, "expected '%s'", op);
    }
    P->i++;
    return 0;
}

static expr *parse_expr(parser *P);
static expr *parse_or(parser *P);

/* Markers in expr.kw of the arguments written *x and **x. */
static const char splat_list[] = "*", splat_dict[] = "**";

/* Arguments of a call or filter: (a, b, key=value, *list, **dict). */
static int parse_args(parser *P, expr *e) {
    if (expect_op(P, "(")) return -1;
    expr *args[32];
    const char *kw[32];
    size_t kwn[32];
    int n = 0;
    while (!is_op(peek(P), ")")) {
        if (n == 32) return jerr(P->J, RLHF_ERR_UNSUPPORTED, "too many arguments");
        kw[n] = NULL;
        kwn[n] = 0;
        if (is_op(peek(P), "*") || is_op(peek(P), "**")) { /* f(*list) / f(**dict): see eval_args */
            kw[n] = is_op(peek(P), "*") ? splat_list : splat_dict;
            P->i++;
        } else if (peek(P)->t == T_NAME && is_op(&P->t[P->i + 1], "=")) {
            kw[n] = peek(P)->s;
            kwn[n] = peek(P)->n;
            P->i += 2;
        }
        if (!(args[n] = parse_expr(P))) return -1;
        n++;
        if (is_op(peek(P), ",")) P->i++;
        else if (!is_op(peek(P), ")")) return jerr(P->J, RLHF_ERR_FORMAT, "expected ',' or ')' in arguments");
    }
    P->i++;
    e->n_args = n;
    e->args = jdup(P->J, args, (size_t)n * sizeof *args);
    e->kw = jdup(P->J, kw, (size_t)n * sizeof *kw);
    e->kw_n = jdup(P->J, kwn, (size_t)n * sizeof *kwn);
    return P->J->rc;
}

static expr *parse_primary(parser *P) {
    jtok *t = peek(P);
    P->J->line = t->line;
    expr *e = NULL;
    if (t->t == T_STR) {
        e = new_expr(P, E_LIT);
        if (!e) return NULL;
        P->i++;
        if (peek(P)->t != T_STR) {
            e->lit = v_strn(t->s, t->n);
        } else { /* adjacent string literals concatenate, copied once */
            strbuf b = str_buf();
            strbuf_put(&b, t->s, t->n);
            for (; peek(P)->t == T_STR; P->i++) strbuf_put(&b, peek(P)->s, peek(P)->n);
            e->lit = str_buf_finish(P->J, &b);
            if (P->J->rc) return NULL;
        }
    } else if (t->t == T_INT || t->t == T_FLOAT) {
        e = new_expr(P, E_LIT);
        if (e) e->lit = t->t == T_INT ? v_int(t->ival) : v_float(t->num);
        P->i++;
    } else if (t->t == T_NAME) {
        if (is_kw(t, "true") || is_kw(t, "True")) e = new_expr(P, E_LIT), e ? e->lit = v_bool(1) : v_none();
        else if (is_kw(t, "false") || is_kw(t, "False")) e = new_expr(P, E_LIT), e ? e->lit = v_bool(0) : v_none();
        else if (is_kw(t, "none") || is_kw(t, "None")) e = new_expr(P, E_LIT), e ? e->lit = v_none() : v_none();
        else {
            e = new_expr(P, E_NAME);
            if (e) e->name = t->s, e->name_n = t->n;
            P->var_args += is_kw(t, "varargs") || is_kw(t, "kwargs");
        }
        P->i++;
    } else if (is_op(t, "(")) {
        P->i++;
        e = parse_expr(P);
        if (!e) return NULL;
        if (is_op(peek(P), ",")) { /* a tuple: treat as a list */
            expr *l = new_expr(P, E_LIST);
            expr_vec items = {0};
            if (!l || ev_push(P, &items, e)) return NULL;
            while (is_op(peek(P), ",")) {
                P->i++;
                if (is_op(peek(P), ")")) break;
                expr *x = parse_expr(P);
                if (!x || ev_push(P, &items, x)) return NULL;
            }
            l->n_args = items.n;
            l->args = items.v;
            l->negate = 1; /* a tuple */
            e = l;
        }
        if (expect_op(P, ")")) return NULL;
    } else if (is_op(t, "[") || is_op(t, "{")) {
        const int dict = is_op(t, "{");
        P->i++;
        e = new_expr(P, dict ? E_DICT : E_LIST);
        if (!e) return NULL;
        expr_vec items = {0};
        while (!is_op(peek(P), dict ? "}" : "]")) {
            expr *x = parse_expr(P);
            if (!x || ev_push(P, &items, x)) return NULL;
            if (dict) {
                if (expect_op(P, ":")) return NULL;
                x = parse_expr(P);
                if (!x || ev_push(P, &items, x)) return NULL;
            }
            if (is_op(peek(P), ",")) P->i++;
            else if (!is_op(peek(P), dict ? "}" : "]")) return jerr(P->J, RLHF_ERR_FORMAT, "expected ',' in a literal"), NULL;
        }
        P->i++;
        e->n_args = items.n;
        e->args = items.v;
    } else {
        jerr(P->J, RLHF_ERR_FORMAT, "unexpected '%.*s' in an expression", (int)(t->n ? t->n : 3), t->n ? t->s : "end");
        return NULL;
    }
    /* postfix: .attr, [index], [a:b], (call) */
    while (e && !P->J->rc) {
        if (is_op(peek(P), ".")) {
            P->i++;
            if (peek(P)->t == T_INT) { /* x.0 is x[0] */
                expr *x = new_expr(P, E_INDEX), *k = new_expr(P, E_LIT);
                if (!x || !k) return NULL;
                k->lit = v_int(peek(P)->ival);
                x->a = e;
                x->b = k;
                P->i++;
                e = x;
                continue;
            }
            if (peek(P)->t != T_NAME) return jerr(P->J, RLHF_ERR_FORMAT, "expected a name after '.'"), NULL;
            expr *a = new_expr(P, E_ATTR);
            if (!a) return NULL;
            a->a = e;
            a->name = peek(P)->s;
            a->name_n = peek(P)->n;
            P->i++;
            e = a;
        } else if (is_op(peek(P), "[")) {
            P->i++;
            expr *lo = NULL, *hi = NULL, *step = NULL;
            int slice = 0;
            if (!is_op(peek(P), ":")) lo = parse_expr(P);
            if (is_op(peek(P), ":")) {
                slice = 1;
                P->i++;
                if (!is_op(peek(P), "]") && !is_op(peek(P), ":")) hi = parse_expr(P);
                if (is_op(peek(P), ":")) {
                    P->i++;
                    if (!is_op(peek(P), "]")) step = parse_expr(P);
                }
            }
            if (expect_op(P, "]")) return NULL;
            expr *x = new_expr(P, slice ? E_SLICE : E_INDEX);
            if (!x) return NULL;
            x->a = e;
            x->b = lo;
            x->c = hi;
            if (slice) {
                x->args = jalloc(P->J, sizeof *x->args);
                if (!x->args) return NULL;
                x->args[0] = step;
                x->n_args = 1;
            }
            e = x;
        } else if (is_op(peek(P), "(")) {
            expr *c = new_expr(P, E_CALL);
            if (!c) return NULL;
            c->a = e;
            if (parse_args(P, c)) return NULL;
            e = c;
        } else {
            break;
        }
    }
    return P->J->rc ? NULL : e;
}

/* filters bind tighter than any operator: a + b | trim == a + (b | trim) */
static expr *parse_concat(parser *P);

/* `x is [not] test`, `x is test(args)` or `x is test arg` (one primary argument). */
static expr *parse_test(parser *P, expr *e) {
    expr *x = new_expr(P, E_TEST);
    if (!x) return NULL;
    if (is_kw(peek(P), "not")) {
        x->negate = 1;
        P->i++;
    }
    if (peek(P)->t != T_NAME) return jerr(P->J, RLHF_ERR_FORMAT, "expected a test name after 'is'"), NULL;
    x->a = e;
    x->name = peek(P)->s;
    x->name_n = peek(P)->n;
    P->i++;
    const jtok *t = peek(P);
    if (is_op(t, "(")) {
        if (parse_args(P, x)) return NULL;
    } else if (t->t == T_STR || t->t == T_INT || t->t == T_FLOAT || is_op(t, "[") || is_op(t, "{") ||
               (t->t == T_NAME && !is_kw(t, "and") && !is_kw(t, "or") && !is_kw(t, "else"))) {
        /* "is sameas x" / "is divisibleby 3": one argument without parentheses */
        if (is_kw(t, "is")) return jerr(P->J, RLHF_ERR_FORMAT, "you cannot chain multiple tests with 'is'"), NULL;
        expr *arg = parse_primary(P);
        if (!arg) return NULL;
        x->n_args = 1;
        x->args = jdup(P->J, &arg, sizeof arg);
        const char *no_kw = NULL;
        size_t no_n = 0;
        x->kw = jdup(P->J, &no_kw, sizeof no_kw);
        x->kw_n = jdup(P->J, &no_n, sizeof no_n);
        if (P->J->rc) return NULL;
    }
    return x;
}

/* Filters and tests bind tighter than any binary operator, as in jinja2:
 * a + b | trim == a + (b | trim), and 1 + 1 is number == 1 + (1 is number). */
static expr *parse_filters_tests(parser *P, expr *e) {
    while (e) {
        if (is_kw(peek(P), "is")) {
            P->i++;
            e = parse_test(P, e);
            continue;
        }
        if (!is_op(peek(P), "|")) break;
        P->i++;
        if (peek(P)->t != T_NAME) return jerr(P->J, RLHF_ERR_FORMAT, "expected a filter name after '|'"), NULL;
        expr *f = new_expr(P, E_FILTER);
        if (!f) return NULL;
        f->a = e;
        f->name = peek(P)->s;
        f->name_n = peek(P)->n;
        P->i++;
        if (is_op(peek(P), "(") && parse_args(P, f)) return NULL;
        e = f;
    }
    return e;
}

/* -x and +x apply before the filters (-1|abs is abs(-1)), as jinja2 parses them. */
static expr *parse_unary_f(parser *P, int with_filters) {
    expr *e;
    if (is_op(peek(P), "-")) {
        P->i++;
        e = new_expr(P, E_NEG);
        if (!e || enter(P)) return NULL;
        e->a = parse_unary_f(P, 0);
        leave(P);
        if (!e->a) return NULL;
    } else if (is_op(peek(P), "+")) {
        P->i++;
        if (enter(P)) return NULL;
        e = parse_unary_f(P, 0);
        leave(P);
    } else {
        e = parse_primary(P);
    }
    return with_filters ? parse_filters_tests(P, e) : e;
}

static expr *parse_unary(parser *P) { return parse_unary_f(P, 1); }

static expr *binary(parser *P, const char *op, size_t n, expr *a, expr *b) {
    if (!a || !b) return NULL;
    expr *e = new_expr(P, E_BIN);
    if (!e) return NULL;
    e->name = op;
    e->name_n = n;
    e->a = a;
    e->b = b;
    return e;
}

static expr *parse_pow(parser *P) {
    expr *e = parse_unary(P);
    while (e && is_op(peek(P), "**")) {
        P->i++;
        e = binary(P, "**", 2, e, parse_unary(P));
    }
    return e;
}

static expr *parse_mul(parser *P) {
    expr *e = parse_pow(P);
    while (e && (is_op(peek(P), "*") || is_op(peek(P), "/") || is_op(peek(P), "//") || is_op(peek(P), "%"))) {
        jtok *op = peek(P);
        P->i++;
        e = binary(P, op->s, op->n, e, parse_pow(P));
    }
    return e;
}

static expr *parse_add(parser *P) {
    expr *e = parse_mul(P);
    while (e && (is_op(peek(P), "+") || is_op(peek(P), "-"))) {
        jtok *op = peek(P);
        P->i++;
        e = binary(P, op->s, op->n, e, parse_mul(P));
    }
    return e;
}

static expr *parse_concat(parser *P) {
    expr *e = parse_add(P);
    while (e && is_op(peek(P), "~")) {
        P->i++;
        e = binary(P, "~", 1, e, parse_add(P));
    }
    return e;
}

static expr *parse_compare(parser *P) {
    expr *e = parse_concat(P);
    while (e) {
        jtok *t = peek(P);
        if (is_op(t, "==") || is_op(t, "!=") || is_op(t, "<") || is_op(t, ">") || is_op(t, "<=") || is_op(t, ">=")) {
            P->i++;
            e = binary(P, t->s, t->n, e, parse_concat(P));
        } else if (is_kw(t, "in")) {
            P->i++;
            e = binary(P, "in", 2, e, parse_concat(P));
        } else if (is_kw(t, "not") && is_kw(&P->t[P->i + 1], "in")) {
            P->i += 2;
            expr *n = new_expr(P, E_NOT);
            if (!n) return NULL;
            n->a = binary(P, "in", 2, e, parse_concat(P));
            e = n->a ? n : NULL;
        } else {
            break;
        }
    }
    return e;
}

static expr *parse_not(parser *P) {
    if (is_kw(peek(P), "not")) {
        P->i++;
        expr *e = new_expr(P, E_NOT);
        if (!e || enter(P)) return NULL;
        e->a = parse_not(P);
        leave(P);
        return e->a ? e : NULL;
    }
    return parse_compare(P);
}

static expr *parse_and(parser *P) {
    expr *e = parse_not(P);
    while (e && is_kw(peek(P), "and")) {
        P->i++;
        expr *x = new_expr(P, E_AND);
        if (!x) return NULL;
        x->a = e;
        if (!(x->b = parse_not(P))) return NULL;
        e = x;
    }
    return e;
}

static expr *parse_or(parser *P) {
    expr *e = parse_and(P);
    while (e && is_kw(peek(P), "or")) {
        P->i++;
        expr *x = new_expr(P, E_OR);
        if (!x) return NULL;
        x->a = e;
        if (!(x->b = parse_and(P))) return NULL;
        e = x;
    }
    return e;
}

static expr *parse_expr_in(parser *P) {
    expr *e = parse_or(P);
    if (e && is_kw(peek(P), "if")) {
        P->i++;
        expr *t = new_expr(P, E_TERNARY);
        if (!t) return NULL;
        t->b = e;
        if (!(t->a = parse_or(P))) return NULL;
        if (is_kw(peek(P), "else")) {
            P->i++;
            if (!(t->c = parse_expr(P))) return NULL;
        }
        e = t;
    }
    return e;
}

static expr *parse_expr(parser *P) {
    if (enter(P)) return NULL;
    expr *e = parse_expr_in(P);
    leave(P);
    return e;
}

static stmt *new_stmt(parser *P, stmt_kind k) {
    stmt *s = jalloc(P->J, sizeof *s);
    if (!s) return NULL;
    s->k = k;
    s->line = peek(P)->line;
    return s;
}

static int expect_end(parser *P) {
    if (peek(P)->t != T_END) {
        P->J->line = peek(P)->line;
        return jerr(P->J, RLHF_ERR_FORMAT, "unexpected '%.*s' before the end of the tag", (int)peek(P)->n, peek(P)->s);
    }
    P->i++;
    return 0;
}

/* Parses statements until a {% NAME %} whose name is in `stops` (not consumed: P->i points at
 * its name token) or EOF. */
static stmt *parse_body(parser *P, const char *const *stops, int n_stops);

/* {% if %} with its {% elif %} chain, which is parsed (and run) in a loop, not by recursion. */
static stmt *parse_if(parser *P) {
    stmt *first = NULL, *s = NULL;
    for (;;) {
        stmt *c = new_stmt(P, S_IF);
        if (!c || !(c->e = checked(P, parse_expr(P))) || expect_end(P)) return NULL;
        if (s) {
            s->other = c;
            s->elif = 1;
        } else {
            first = c;
        }
        s = c;
        static const char *const stops[] = {"elif", "else", "endif"};
        s->body = parse_body(P, stops, 3);
        if (P->J->rc) return NULL;
        if (peek(P)->t != T_NAME) {
            jerr(P->J, RLHF_ERR_FORMAT, "{%% if %%} opened on line %d is never closed", first->line);
            return NULL;
        }
        if (!is_kw(peek(P), "elif")) break;
        P->i++;
    }
    if (is_kw(peek(P), "else")) {
        P->i++;
        if (expect_end(P)) return NULL;
        static const char *const end[] = {"endif"};
        s->other = parse_body(P, end, 1);
        if (P->J->rc) return NULL;
        if (!is_kw(peek(P), "endif")) {
            jerr(P->J, RLHF_ERR_FORMAT, "{%% if %%} opened on line %d is never closed", first->line);
            return NULL;
        }
    }
    P->i++; /* endif */
    if (expect_end(P)) return NULL;
    return first;
}

static stmt *parse_for(parser *P) {
    stmt *s = new_stmt(P, S_FOR);
    if (!s) return NULL;
    do {
        if (peek(P)->t != T_NAME || s->n_vars == 2) {
            jerr(P->J, RLHF_ERR_FORMAT, "expected one or two loop variable names");
            return NULL;
        }
        s->vars[s->n_vars] = peek(P)->s;
        s->var_n[s->n_vars++] = peek(P)->n;
        P->i++;
    } while (is_op(peek(P), ",") && (P->i++, 1));
    if (!is_kw(peek(P), "in")) {
        jerr(P->J, RLHF_ERR_FORMAT, "expected 'in' in {%% for %%}");
        return NULL;
    }
    P->i++;
    if (!(s->e = checked(P, parse_or(P)))) return NULL;
    if (is_kw(peek(P), "if")) {
        P->i++;
        if (!(s->filter = checked(P, parse_or(P)))) return NULL;
    }
    if (is_kw(peek(P), "recursive")) {
        jerr(P->J, RLHF_ERR_UNSUPPORTED, "recursive loops are not supported");
        return NULL;
    }
    if (expect_end(P)) return NULL;
    static const char *const stops[] = {"else", "endfor"};
    P->loops++;
    s->body = parse_body(P, stops, 2);
    P->loops--;
    if (P->J->rc) return NULL;
    if (is_kw(peek(P), "else")) {
        P->i++;
        if (expect_end(P)) return NULL;
        static const char *const end[] = {"endfor"};
        s->other = parse_body(P, end, 1);
        if (P->J->rc) return NULL;
    }
    if (!is_kw(peek(P), "endfor")) {
        jerr(P->J, RLHF_ERR_FORMAT, "{%% for %%} opened on line %d is never closed", s->line);
        return NULL;
    }
    P->i++;
    if (expect_end(P)) return NULL;
    return s;
}

static stmt *parse_set(parser *P) {
    stmt *s = new_stmt(P, S_SET);
    if (!s) return NULL;
    if (peek(P)->t != T_NAME) {
        jerr(P->J, RLHF_ERR_FORMAT, "expected a name after 'set'");
        return NULL;
    }
    s->vars[0] = peek(P)->s;
    s->var_n[0] = peek(P)->n;
    s->n_vars = 1;
    P->i++;
    if (is_op(peek(P), ".")) {
        P->i++;
        if (peek(P)->t != T_NAME) {
            jerr(P->J, RLHF_ERR_FORMAT, "expected an attribute name");
            return NULL;
        }
        s->vars[1] = peek(P)->s;
        s->var_n[1] = peek(P)->n;
        s->n_vars = 2;
        P->i++;
    }
    if (peek(P)->t == T_END && s->n_vars == 1) { /* {% set x %}...{% endset %}: x is the body's output */
        P->i++;
        static const char *const end[] = {"endset"};
        s->body = parse_body(P, end, 1);
        if (P->J->rc) return NULL;
        P->i++;
        return expect_end(P) ? NULL : s;
    }
    if (!is_op(peek(P), "=")) {
        jerr(P->J, is_op(peek(P), "|") || is_op(peek(P), ",") ? RLHF_ERR_UNSUPPORTED : RLHF_ERR_FORMAT,
             "{%% set %%}: expected '=' or the end of the tag (a filtered block set or several targets are not "
             "supported)");
        return NULL;
    }
    P->i++;
    if (!(s->e = checked(P, parse_expr(P))) || expect_end(P)) return NULL;
    return s;
}

/* The parameters of a macro or of a call block's caller: (a, b=default, ...). */
static int parse_params(parser *P, stmt *s) {
    if (expect_op(P, "(")) return -1;
    const char *names[32];
    size_t nn[32];
    expr *defs[32];
    int n = 0;
    while (!is_op(peek(P), ")")) {
        if (n == 32) return jerr(P->J, RLHF_ERR_UNSUPPORTED, "more than 32 parameters");
        if (peek(P)->t != T_NAME) return jerr(P->J, RLHF_ERR_FORMAT, "expected a parameter name");
        names[n] = peek(P)->s;
        nn[n] = peek(P)->n;
        defs[n] = NULL;
        P->i++;
        if (is_op(peek(P), "=")) {
            P->i++;
            if (!(defs[n] = checked(P, parse_expr(P)))) return -1;
        } else if (n > 0 && defs[n - 1]) {
            return jerr(P->J, RLHF_ERR_FORMAT, "non-default argument follows default argument");
        }
        n++;
        if (is_op(peek(P), ",")) P->i++;
        else if (!is_op(peek(P), ")")) return jerr(P->J, RLHF_ERR_FORMAT, "expected ',' or ')' in parameters");
    }
    P->i++;
    s->n_params = n;
    s->params = jdup(P->J, names, (size_t)n * sizeof *names);
    s->param_n = jdup(P->J, nn, (size_t)n * sizeof *nn);
    s->defaults = jdup(P->J, defs, (size_t)n * sizeof *defs);
    return P->J->rc ? -1 : 0;
}

/* The body of a macro or call block up to {% END %}: loop controls do not reach through it. */
static int parse_callable_body(parser *P, stmt *s, const char *end, int opened) {
    const int loops = P->loops;
    P->loops = 0;
    const char *const stops[] = {end};
    s->body = parse_body(P, stops, 1);
    P->loops = loops;
    if (P->J->rc) return -1;
    P->i++;
    if (peek(P)->t == T_NAME && peek(P)->n == s->name_n && s->name && memcmp(peek(P)->s, s->name, s->name_n) == 0)
        P->i++; /* {% endmacro name %} */
    (void)opened;
    return expect_end(P);
}

/* {% macro name(params) %}body{% endmacro %} */
static stmt *parse_macro(parser *P) {
    stmt *s = new_stmt(P, S_MACRO);
    if (!s) return NULL;
    if (peek(P)->t != T_NAME) {
        jerr(P->J, RLHF_ERR_FORMAT, "expected a macro name");
        return NULL;
    }
    s->name = peek(P)->s;
    s->name_n = peek(P)->n;
    P->i++;
    const int var_args = P->var_args;
    if (parse_params(P, s) || expect_end(P) || parse_callable_body(P, s, "endmacro", s->line)) return NULL;
    s->var_args = P->var_args > var_args;
    return s;
}

/* {% call(params) macro(args) %}body{% endcall %}: the macro runs with `caller` = the body. */
static stmt *parse_callblock(parser *P) {
    stmt *s = new_stmt(P, S_CALLBLOCK);
    if (!s) return NULL;
    if (is_op(peek(P), "(") && parse_params(P, s)) return NULL;
    if (!(s->e = checked(P, parse_expr(P)))) return NULL;
    if (s->e->k != E_CALL) {
        P->J->line = s->line;
        jerr(P->J, RLHF_ERR_FORMAT, "{%% call %%} needs a macro call");
        return NULL;
    }
    if (expect_end(P) || parse_callable_body(P, s, "endcall", s->line)) return NULL;
    return s;
}

static stmt *parse_body_in(parser *P, const char *const *stops, int n_stops) {
    stmt head = {0}, *tail = &head;
    while (!P->J->rc) {
        jtok *t = peek(P);
        P->J->line = t->line;
        if (t->t == T_EOF) break;
        stmt *s = NULL;
        if (t->t == T_TEXT) {
            s = new_stmt(P, S_TEXT);
            if (s) s->text = t->s, s->text_n = t->n;
            P->i++;
        } else if (t->t == T_OUT_BEGIN) {
            P->i++;
            s = new_stmt(P, S_OUT);
            if (s && (!(s->e = checked(P, parse_expr(P))) || expect_end(P))) return NULL;
        } else if (t->t == T_STMT_BEGIN) {
            P->i++;
            jtok *kw = peek(P);
            P->J->line = kw->line;
            for (int i = 0; i < n_stops; i++)
                if (is_kw(kw, stops[i])) return head.next;
            P->i++;
            if (is_kw(kw, "if")) s = parse_if(P);
            else if (is_kw(kw, "for")) s = parse_for(P);
            else if (is_kw(kw, "set")) s = parse_set(P);
            else if (is_kw(kw, "macro")) s = parse_macro(P);
            else if (is_kw(kw, "call")) s = parse_callblock(P);
            else if (is_kw(kw, "break") || is_kw(kw, "continue")) {
                if (!P->loops) {
                    jerr(P->J, RLHF_ERR_FORMAT, "{%% %.*s %%} outside of a loop", (int)kw->n, kw->s);
                    return NULL;
                }
                s = new_stmt(P, is_kw(kw, "break") ? S_BREAK : S_CONTINUE);
                if (expect_end(P)) return NULL;
            }
            else if (is_kw(kw, "generation") || is_kw(kw, "endgeneration")) {
                s = new_stmt(P, S_NOP);
                if (expect_end(P)) return NULL;
            } else if (is_kw(kw, "include") || is_kw(kw, "import") ||
                       is_kw(kw, "from") || is_kw(kw, "block") || is_kw(kw, "extends") || is_kw(kw, "filter") ||
                       is_kw(kw, "with") || is_kw(kw, "raw")) {
                jerr(P->J, RLHF_ERR_UNSUPPORTED, "{%% %.*s %%} is not supported by this Jinja subset", (int)kw->n, kw->s);
                return NULL;
            } else {
                jerr(P->J, RLHF_ERR_FORMAT, "unexpected {%% %.*s %%}", (int)kw->n, kw->s);
                return NULL;
            }
        } else {
            jerr(P->J, RLHF_ERR_FORMAT, "unexpected token");
            return NULL;
        }
        if (!s) return NULL;
        tail->next = s;
        tail = s;
    }
    if (n_stops > 0 && !P->J->rc) jerr(P->J, RLHF_ERR_FORMAT, "missing {%% %s %%}", stops[n_stops - 1]);
    return head.next;
}

static stmt *parse_body(parser *P, const char *const *stops, int n_stops) {
    if (enter(P)) return NULL;
    stmt *s = parse_body_in(P, stops, n_stops);
    leave(P);
    return s;
}

/* ---- evaluation ---- */

/* A scope. Frames live in the arena (not on the C stack) because a macro keeps the frame it
 * was defined in, and can be called after that block has ended. */
typedef struct frame {
    vdict vars;
    struct frame *parent;
} frame;

static frame *new_frame(jinja *J, frame *parent) {
    frame *f = jalloc(J, sizeof *f);
    if (f) f->parent = parent;
    return f;
}

/* A macro, or the caller of a {% call %} block: its definition and the scope it sees. */
struct jmacro {
    const stmt *def; /* S_MACRO or S_CALLBLOCK */
    frame *closure;
};

/* The global functions every template sees (as transformers' environment has them). */
static const char *const global_funcs[] = {"raise_exception", "strftime_now", "range", "namespace", "dict"};
enum { N_GLOBAL_FUNCS = (int)(sizeof global_funcs / sizeof global_funcs[0]) };

static value lookup(jinja *J, frame *f, const char *name, size_t n) {
    value r = v_undef();
    int hops = 0;
    for (; f; f = f->parent, hops++) {
        value *v = dict_get(J, &f->vars, name, n);
        if (v) {
            r = *v;
            break;
        }
    }
    spend(J, hops / 8); /* frames nest as deep as the loops */
    for (int i = 0; !f && i < N_GLOBAL_FUNCS; i++)
        if (strlen(global_funcs[i]) == n && memcmp(global_funcs[i], name, n) == 0) r.t = V_FUNC, r.u.i = i;
    return r;
}

static value eval(jinja *J, frame *f, const expr *e);

static int is_num(value v) { return v.t == V_INT || v.t == V_FLOAT || v.t == V_BOOL; }
static double num(value v) { return v.t == V_INT ? (double)v.u.i : v.t == V_FLOAT ? v.u.f : v.t == V_BOOL ? v.u.b : 0; }

/* A float as an integer, toward zero: 0 with *out set, 1 for NaN, or the error (out of range). */
static int float_to_int(jinja *J, double f, long long *out) {
    if (f != f) return 1;
    if (!(f < 9223372036854775808.0 && f >= -9223372036854775808.0)) return err_int_range(J);
    *out = (long long)f;
    return 0;
}

/* v as an integer where a number is expected: floats truncate and saturate, NaN and non-numbers
 * give 0 (no undefined conversion). */
static long long inum(value v) {
    if (v.t == V_INT) return v.u.i;
    if (v.t == V_BOOL) return v.u.b;
    if (v.t == V_FLOAT) {
        if (v.u.f != v.u.f) return 0;
        if (v.u.f >= 9223372036854775808.0) return LLONG_MAX;
        if (v.u.f <= -9223372036854775808.0) return LLONG_MIN;
        return (long long)v.u.f;
    }
    return 0;
}

static int v_equal_d(jinja *J, value a, value b, int depth) {
    if (a.t == V_INT && b.t == V_INT) return a.u.i == b.u.i;
    if (is_num(a) && is_num(b)) return num(a) == num(b);
    if (a.t != b.t) return 0;
    switch (a.t) {
    case V_UNDEF: case V_NONE: return 1;
    case V_STR:
        if (a.u.s.n != b.u.s.n) return 0;
        spend_bytes(J, a.u.s.n);
        return memcmp(a.u.s.s, b.u.s.s, a.u.s.n) == 0;
    case V_LIST:
        if (a.u.l == b.u.l) return 1;
        if (a.u.l->n != b.u.l->n) return 0;
        if (depth >= JINJA_MAX_VALUE_DEPTH) return err_too_deep(J), 0;
        for (int i = 0; i < a.u.l->n; i++)
            if (spend(J, 1) || !v_equal_d(J, a.u.l->items[i], b.u.l->items[i], depth + 1)) return 0;
        return 1;
    case V_DICT: return a.u.d == b.u.d;
    default: return 0;
    }
}

static int v_equal(jinja *J, value a, value b) { return v_equal_d(J, a, b, 0); }

static int v_compare(jinja *J, value a, value b, int *cmp) {
    if (a.t == V_INT && b.t == V_INT) {
        *cmp = (a.u.i > b.u.i) - (a.u.i < b.u.i);
        return 0;
    }
    if (is_num(a) && is_num(b)) {
        *cmp = num(a) < num(b) ? -1 : num(a) > num(b);
        return 0;
    }
    if (a.t == V_STR && b.t == V_STR) {
        size_t n = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
        spend_bytes(J, n);
        int c = memcmp(a.u.s.s, b.u.s.s, n);
        *cmp = c ? (c > 0) - (c < 0) : (a.u.s.n > b.u.s.n) - (a.u.s.n < b.u.s.n);
        return 0;
    }
    return jerr(J, RLHF_ERR_INVALID, "cannot compare %s with %s", type_name(a.t), type_name(b.t));
}

/* UTF-8 characters as the interpreter splits strings: a character starts at byte 0 and at
 * every byte that is not a continuation byte. */
static int is_cont(char c) { return ((unsigned char)c & 0xC0) == 0x80; }

static size_t u8_next(const char *s, size_t n, size_t i) {
    for (i++; i < n && is_cont(s[i]);) i++;
    return i;
}

static size_t u8_prev(const char *s, size_t i) { /* i > 0 */
    for (i--; i > 0 && is_cont(s[i]);) i--;
    return i;
}

static size_t u8_count(jinja *J, const char *s, size_t n) {
    spend_bytes(J, n);
    size_t c = n > 0 && is_cont(s[0]);
    for (size_t i = 0; i < n; i++) c += !is_cont(s[i]);
    return c;
}

static long long v_len(jinja *J, value v) {
    switch (v.t) {
    case V_STR: return (long long)u8_count(J, v.u.s.s, v.u.s.n);
    case V_LIST: return v.u.l->n;
    case V_DICT: return v.u.d->n;
    case V_UNDEF: return 0;
    default: return jerr(J, RLHF_ERR_INVALID, "%s has no length", type_name(v.t)), 0;
    }
}

/* Character i of a string (Python indexing, negative from the end), undefined when out of
 * range. A view, no copy. */
static value str_index(jinja *J, value o, long long i) {
    const char *s = o.u.s.s;
    const int from_end = i < 0;
    size_t n = o.u.s.n, p;
    if (!from_end) {
        for (p = 0; i > 0 && p < n; i--) p = u8_next(s, n, p);
        if (p >= n) return v_undef();
    } else {
        for (p = n; i < 0 && p > 0; i++) p = u8_prev(s, p);
        if (i < 0) return v_undef();
    }
    size_t e = u8_next(s, n, p);
    spend_bytes(J, from_end ? n - p : e);
    return v_strn(s + p, e - p);
}

/* The characters a0, a0+step, ... before b0 (bounds already clipped as for lists). */
static value str_slice(jinja *J, value o, long long a0, long long b0, long long step) {
    const char *s = o.u.s.s;
    size_t n = o.u.s.n, p = 0;
    if (step > 0 ? a0 >= b0 : a0 <= b0) return v_strn("", 0);
    spend_bytes(J, n);
    for (long long c = 0; c < a0 && p < n; c++) p = u8_next(s, n, p);
    if (step == 1) { /* a view */
        size_t q = p;
        for (long long c = a0; c < b0 && q < n; c++) q = u8_next(s, n, q);
        return v_strn(s + p, q - p);
    }
    strbuf b = str_buf();
    for (long long i = a0; p < n && !b.too_big;) {
        strbuf_put(&b, s + p, u8_next(s, n, p) - p);
        if (__builtin_add_overflow(i, step, &i) || (step > 0 ? i >= b0 : i <= b0)) break;
        if (step > 0)
            for (long long c = 0; c < step && p < n; c++) p = u8_next(s, n, p);
        else
            for (long long c = 0; c > step && p > 0; c--) p = u8_prev(s, p);
    }
    return str_buf_finish(J, &b);
}

/* A list view of anything iterable (strings give their characters, dicts their keys). */
static value v_as_list(jinja *J, value v) {
    if (v.t == V_LIST) return v;
    value l = v_list_new(J);
    if (v.t == V_DICT) {
        for (int i = 0; i < v.u.d->n; i++) list_push(J, l.u.l, v.u.d->keys[i]);
    } else if (v.t == V_STR) {
        size_t nc = u8_count(J, v.u.s.s, v.u.s.n);
        if (nc > (size_t)INT_MAX / 2) {
            jerr(J, RLHF_ERR_UNSUPPORTED, "a string too long to split into characters");
            return l;
        }
        if (nc && !J->rc) { /* sized once */
            l.u.l->items = jalloc(J, nc * sizeof(value));
            if (!l.u.l->items) return l;
            l.u.l->cap = (int)nc;
        }
        for (size_t i = 0; i < v.u.s.n && !J->rc;) {
            size_t k = u8_next(v.u.s.s, v.u.s.n, i);
            list_push(J, l.u.l, v_strn(v.u.s.s + i, k - i));
            i = k;
        }
    } else if (v.t != V_UNDEF) { /* undefined iterates as empty; none does not, as in Python */
        jerr(J, RLHF_ERR_INVALID, "%s is not iterable", type_name(v.t));
    }
    return l;
}

static value concat(jinja *J, value a, value b) {
    a = v_to_str(J, a);
    b = v_to_str(J, b);
    if (J->rc) return v_strn("", 0);
    if (!b.u.s.n) return a;
    if (!a.u.s.n) return b;
    if (a.u.s.n > JINJA_MAX_STR || b.u.s.n > JINJA_MAX_STR - a.u.s.n) {
        err_too_long(J);
        return v_strn("", 0);
    }
    char *p = str_alloc(J, a.u.s.n + b.u.s.n);
    if (!p) return v_strn("", 0);
    memcpy(p, a.u.s.s, a.u.s.n);
    memcpy(p + a.u.s.n, b.u.s.s, b.u.s.n);
    return v_strn(p, a.u.s.n + b.u.s.n);
}

/* s * k as Python: one allocation of the final size, refused past JINJA_MAX_STR. */
static value str_repeat(jinja *J, value s, long long k) {
    const size_t n = s.u.s.n;
    if (k <= 0 || n == 0) return v_strn("", 0);
    if (k == 1) return s;
    if ((unsigned long long)k > JINJA_MAX_STR / n) {
        err_too_long(J);
        return v_strn("", 0);
    }
    const size_t total = n * (size_t)k;
    char *p = str_alloc(J, total);
    if (!p) return v_strn("", 0);
    memcpy(p, s.u.s.s, n);
    for (size_t have = n; have < total;) {
        size_t c = have < total - have ? have : total - have;
        memcpy(p + have, p, c);
        have += c;
    }
    return v_strn(p, total);
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* The first needle (m > 0 bytes) in hay[0..n), or NULL. memchr finds the candidates; each
 * comparison is charged to the step budget (the callers charge the scan itself). Not memmem:
 * called again and again on what is left of a long string, sanitizer builds re-check the
 * whole rest on every call. */
static const char *find(jinja *J, const char *hay, size_t n, const char *nd, size_t m) {
    if (m > n) return NULL;
    if (m == 1) return memchr(hay, nd[0], n);
    const char *last = hay + (n - m);
    for (const char *p = hay; p <= last && !spend_bytes(J, m); p++) {
        p = memchr(p, nd[0], (size_t)(last - p) + 1);
        if (!p) return NULL;
        if (memcmp(p + 1, nd + 1, m - 1) == 0) return p;
    }
    return NULL;
}

/* Python's str.isspace() for one code point. */
static int is_py_space(unsigned c) {
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* The code point that ends at s[end] (s[start..end) non-empty), with its length in *len. */
static unsigned cp_before(const char *s, size_t start, size_t end, size_t *len) {
    size_t i = end - 1;
    while (i > start && end - i < 4 && is_cont(s[i])) i--;
    size_t k = i;
    unsigned cp = utf8_decode(s, end, &k);
    if (k != end) { /* not one whole sequence: the last byte alone */
        i = end - 1;
        cp = (unsigned char)s[i];
    }
    *len = end - i;
    return cp;
}

/* Whether cp is stripped: one of `chars` (code points), or whitespace when chars is not a string. */
static int strip_hit(jinja *J, unsigned cp, value chars) {
    if (chars.t != V_STR) return is_py_space(cp);
    spend_bytes(J, chars.u.s.n);
    for (size_t i = 0; i < chars.u.s.n;)
        if (utf8_decode(chars.u.s.s, chars.u.s.n, &i) == cp) return 1;
    return 0;
}

/* str.strip/lstrip/rstrip: whitespace as Python's (Unicode), or the characters of `chars`. */
static value str_strip(jinja *J, value s, value chars, int left, int right) {
    const char *p = s.u.s.s;
    size_t a = 0, b = s.u.s.n, len;
    if (left)
        for (size_t k = a; a < b && (k = a, strip_hit(J, utf8_decode(p, b, &k), chars));) a = k;
    if (right)
        while (b > a && strip_hit(J, cp_before(p, a, b, &len), chars)) b -= len;
    spend_bytes(J, s.u.s.n - (b - a));
    return v_strn(p + a, b - a);
}

static value str_map(jinja *J, value s, int mode) { /* 0 upper, 1 lower, 2 capitalize, 3 title */
    value r = v_str_copy(J, s.u.s.s, s.u.s.n);
    char *p = (char *)r.u.s.s;
    int start = 1;
    for (size_t i = 0; i < r.u.s.n; i++) {
        char c = p[i];
        int up = mode == 0 || (mode == 2 && i == 0) || (mode == 3 && start);
        if (up && c >= 'a' && c <= 'z') p[i] = (char)(c - 32);
        else if (!up && mode != 0 && c >= 'A' && c <= 'Z') p[i] = (char)(c + 32);
        start = !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'));
    }
    return r;
}

static value str_replace(jinja *J, value s, value a, value b) {
    if (s.t != V_STR || a.t != V_STR || b.t != V_STR || a.u.s.n == 0) return s;
    spend_bytes(J, s.u.s.n);
    strbuf o = str_buf();
    const char *p = s.u.s.s, *end = s.u.s.s + s.u.s.n;
    while (p < end && !o.too_big && !J->rc) {
        const char *hit = find(J, p, (size_t)(end - p), a.u.s.s, a.u.s.n);
        if (!hit) break;
        strbuf_put(&o, p, (size_t)(hit - p));
        strbuf_put(&o, b.u.s.s, b.u.s.n);
        spend_bytes(J, b.u.s.n);
        p = hit + a.u.s.n;
    }
    strbuf_put(&o, p, (size_t)(end - p));
    return str_buf_finish(J, &o);
}

static int str_starts1(jinja *J, value s, value p, int end) {
    if (s.t != V_STR || p.t != V_STR || p.u.s.n > s.u.s.n) return 0;
    spend_bytes(J, p.u.s.n);
    return memcmp(end ? s.u.s.s + s.u.s.n - p.u.s.n : s.u.s.s, p.u.s.s, p.u.s.n) == 0;
}

/* startswith/endswith with one prefix or a list of them */
static int str_starts(jinja *J, value s, value p, int end) {
    if (p.t != V_LIST) return str_starts1(J, s, p, end);
    for (int i = 0; i < p.u.l->n && !spend(J, 1); i++)
        if (str_starts1(J, s, p.u.l->items[i], end)) return 1;
    return 0;
}

static value str_split(jinja *J, value s, value sep) {
    value l = v_list_new(J);
    const char *p = s.u.s.s, *end = s.u.s.s + s.u.s.n;
    spend_bytes(J, s.u.s.n);
    if (sep.t != V_STR) { /* runs of (Unicode) whitespace separate */
        const size_t n = s.u.s.n;
        size_t i = 0, k;
        while (i < n && !J->rc) {
            while (i < n && (k = i, is_py_space(utf8_decode(p, n, &k)))) i = k;
            size_t q = i;
            while (q < n && (k = q, !is_py_space(utf8_decode(p, n, &k)))) q = k;
            if (q > i) list_push(J, l.u.l, v_strn(p + i, q - i));
            i = q;
        }
        return l;
    }
    if (sep.u.s.n == 0) {
        jerr(J, RLHF_ERR_INVALID, "split: empty separator");
        return l;
    }
    while (!J->rc) {
        const char *hit = find(J, p, (size_t)(end - p), sep.u.s.s, sep.u.s.n);
        if (!hit) break;
        list_push(J, l.u.l, v_strn(p, (size_t)(hit - p)));
        p = hit + sep.u.s.n;
    }
    list_push(J, l.u.l, v_strn(p, (size_t)(end - p)));
    return l;
}

static value join(jinja *J, value list, value sep) {
    list = v_as_list(J, list);
    strbuf o = str_buf();
    for (int i = 0; i < list.u.l->n && !J->rc && !o.too_big && !spend(J, 1); i++) {
        if (i && sep.t == V_STR) strbuf_put(&o, sep.u.s.s, sep.u.s.n);
        v_print(J, &o, list.u.l->items[i], 0);
    }
    return str_buf_finish(J, &o);
}

static value attr_of(jinja *J, value obj, const char *name, size_t n) {
    if (obj.t == V_DICT) {
        value *v = dict_get(J, obj.u.d, name, n);
        if (v) return *v;
    }
    return v_undef();
}

/* Positional and keyword arguments evaluated. */
typedef struct {
    value v[32];
    const char *kw[32];
    size_t kw_n[32];
    int n;
} arglist;

static int arg_push(jinja *J, arglist *a, value v, const char *kw, size_t kw_n) {
    if (a->n == 32) return jerr(J, RLHF_ERR_UNSUPPORTED, "a call with more than 32 arguments");
    a->v[a->n] = v;
    a->kw[a->n] = kw;
    a->kw_n[a->n++] = kw_n;
    return 0;
}

/* The arguments of e evaluated, *list and **dict spread into positional and keyword ones. */
static void eval_args(jinja *J, frame *f, const expr *e, arglist *a) {
    a->n = 0;
    for (int i = 0; i < e->n_args && !J->rc; i++) {
        value v = eval(J, f, e->args[i]);
        const char *kw = e->kw ? e->kw[i] : NULL;
        if (kw == splat_list) {
            if (v.t != V_LIST) {
                jerr(J, RLHF_ERR_INVALID, "*%s: a list is needed", type_name(v.t));
                return;
            }
            for (int k = 0; k < v.u.l->n && !arg_push(J, a, v.u.l->items[k], NULL, 0); k++) {}
        } else if (kw == splat_dict) {
            if (v.t != V_DICT) {
                jerr(J, RLHF_ERR_INVALID, "**%s: a dict is needed", type_name(v.t));
                return;
            }
            for (int k = 0; k < v.u.d->n; k++)
                if (arg_push(J, a, v.u.d->vals[k], v.u.d->keys[k].u.s.s, v.u.d->keys[k].u.s.n)) return;
        } else {
            arg_push(J, a, v, kw, kw ? e->kw_n[i] : 0);
        }
    }
}

/* Argument `pos` (positional index among positional ones) or keyword `name`. */
static value arg(const arglist *a, int pos, const char *name) {
    int p = 0;
    for (int i = 0; i < a->n; i++) {
        if (a->kw[i]) {
            if (name && strlen(name) == a->kw_n[i] && memcmp(a->kw[i], name, a->kw_n[i]) == 0) return a->v[i];
        } else if (p++ == pos) {
            return a->v[i];
        }
    }
    return v_undef();
}

static int name_is(const char *s, size_t n, const char *lit) { return strlen(lit) == n && memcmp(s, lit, n) == 0; }

static value call_method(jinja *J, value obj, const char *m, size_t mn, const arglist *a) {
    if (J->rc) return v_undef();
    if (obj.t == V_STR) {
        if (name_is(m, mn, "strip")) return str_strip(J, obj, arg(a, 0, "chars"), 1, 1);
        if (name_is(m, mn, "lstrip")) return str_strip(J, obj, arg(a, 0, "chars"), 1, 0);
        if (name_is(m, mn, "rstrip")) return str_strip(J, obj, arg(a, 0, "chars"), 0, 1);
        if (name_is(m, mn, "upper")) return str_map(J, obj, 0);
        if (name_is(m, mn, "lower")) return str_map(J, obj, 1);
        if (name_is(m, mn, "capitalize")) return str_map(J, obj, 2);
        if (name_is(m, mn, "title")) return str_map(J, obj, 3);
        if (name_is(m, mn, "startswith")) return v_bool(str_starts(J, obj, arg(a, 0, NULL), 0));
        if (name_is(m, mn, "endswith")) return v_bool(str_starts(J, obj, arg(a, 0, NULL), 1));
        if (name_is(m, mn, "split")) return str_split(J, obj, arg(a, 0, "sep"));
        if (name_is(m, mn, "replace")) return str_replace(J, obj, arg(a, 0, NULL), arg(a, 1, NULL));
        if (name_is(m, mn, "join")) return join(J, arg(a, 0, NULL), obj);
    } else if (obj.t == V_DICT) {
        if (name_is(m, mn, "items") || name_is(m, mn, "keys") || name_is(m, mn, "values")) {
            value l = v_list_new(J);
            for (int i = 0; i < obj.u.d->n && !J->rc; i++) {
                if (name_is(m, mn, "keys")) list_push(J, l.u.l, obj.u.d->keys[i]);
                else if (name_is(m, mn, "values")) list_push(J, l.u.l, obj.u.d->vals[i]);
                else {
                    value pair = v_list_new(J);
                    if (!J->rc) pair.u.l->is_tuple = 1;
                    list_push(J, pair.u.l, obj.u.d->keys[i]);
                    list_push(J, pair.u.l, obj.u.d->vals[i]);
                    list_push(J, l.u.l, pair);
                }
            }
            return l;
        }
        if (name_is(m, mn, "get")) {
            value k = arg(a, 0, NULL);
            value *v = k.t == V_STR ? dict_get(J, obj.u.d, k.u.s.s, k.u.s.n) : NULL;
            if (v) return *v;
            value d = arg(a, 1, "default");
            return d.t == V_UNDEF ? v_none() : d;
        }
    }
    /* A method Python has but this interpreter lacks is unsupported; any other name is an error
     * in jinja2 too (calling an undefined attribute). */
    static const char *const py_methods[3] = {
        " capitalize casefold center count encode endswith expandtabs find format format_map index isalnum isalpha "
        "isascii isdecimal isdigit isidentifier islower isnumeric isprintable isspace istitle isupper join ljust lower "
        "lstrip partition removeprefix removesuffix replace rfind rindex rjust rpartition rsplit rstrip split "
        "splitlines startswith strip swapcase title translate upper zfill ",
        " append clear copy count extend index insert pop remove reverse sort ",
        " clear copy fromkeys get items keys pop popitem setdefault update values "};
    const char *names = obj.t == V_STR ? py_methods[0] : obj.t == V_LIST ? py_methods[1] : obj.t == V_DICT ? py_methods[2] : " ";
    char key[64];
    snprintf(key, sizeof key, " %.*s ", (int)(mn < 60 ? mn : 60), m);
    if (strstr(names, key))
        jerr(J, RLHF_ERR_UNSUPPORTED, "%s method '%.*s' is not supported by this Jinja subset", type_name(obj.t), (int)mn, m);
    else
        jerr(J, RLHF_ERR_INVALID, "%s has no attribute '%.*s'", type_name(obj.t), (int)mn, m);
    return v_undef();
}

static value call_function(jinja *J, const char *n, size_t nn, const arglist *a) {
    if (J->rc) return v_undef();
    if (name_is(n, nn, "raise_exception")) {
        value m = v_to_str(J, arg(a, 0, NULL));
        jerr(J, RLHF_ERR_INVALID, "the chat template refused the messages: %.*s", (int)(m.u.s.n > 600 ? 600 : m.u.s.n),
             m.u.s.s);
        return v_undef();
    }
    if (name_is(n, nn, "range")) {
        long long lo = 0, hi, step = 1;
        if (a->n == 1) hi = inum(a->v[0]);
        else {
            lo = inum(arg(a, 0, NULL));
            hi = inum(arg(a, 1, NULL));
            if (a->n > 2) step = inum(arg(a, 2, NULL));
        }
        value l = v_list_new(J);
        if (step == 0) return jerr(J, RLHF_ERR_INVALID, "range: step 0"), l;
        for (long long i = lo; (step > 0 ? i < hi : i > hi) && !J->rc;) {
            if (l.u.l->n >= 100000) return jerr(J, RLHF_ERR_INVALID, "range too long"), l;
            list_push(J, l.u.l, v_int(i));
            if (__builtin_add_overflow(i, step, &i)) break;
        }
        return l;
    }
    if (name_is(n, nn, "namespace") || name_is(n, nn, "dict")) {
        value d = v_dict_new(J);
        if (J->rc) return d;
        d.u.d->is_namespace = name_is(n, nn, "namespace");
        for (int i = 0; i < a->n; i++)
            if (a->kw[i]) dict_set(J, d.u.d, v_str_copy(J, a->kw[i], a->kw_n[i]), a->v[i]);
        return d;
    }
    if (name_is(n, nn, "strftime_now")) {
        value fmt = v_to_str(J, arg(a, 0, NULL));
        char fbuf[128], obuf[256];
        snprintf(fbuf, sizeof fbuf, "%.*s", (int)(fmt.u.s.n < sizeof fbuf ? fmt.u.s.n : sizeof fbuf - 1), fmt.u.s.s);
        struct tm tmv;
        if (J->now) tmv = *J->now;
        else {
            time_t now = time(NULL);
            localtime_r(&now, &tmv);
        }
        size_t k = strftime(obuf, sizeof obuf, fbuf, &tmv);
        return v_str_copy(J, obuf, k);
    }
    jerr(J, RLHF_ERR_UNSUPPORTED, "unknown function '%.*s'", (int)nn, n);
    return v_undef();
}

/* s[0..n) without surrounding whitespace, as a C string in buf; 0 when empty or too long to
 * be a number this interpreter handles. */
static int num_text(const char *s, size_t n, char *buf, size_t size) {
    while (n && is_ws(*s)) s++, n--;
    while (n && is_ws(s[n - 1])) n--;
    if (n == 0 || n >= size || memchr(s, 'x', n) || memchr(s, 'X', n)) return 0; /* no hex: Python's int()/float() refuse it */
    memcpy(buf, s, n);
    buf[n] = 0;
    return 1;
}

/* The `int` filter: Python's int(), then int(float()), else the default (0). */
static value filter_int(jinja *J, value x, value dflt) {
    long long r = 0;
    if (x.t == V_INT || x.t == V_BOOL) return v_int(inum(x));
    if (x.t == V_FLOAT) {
        int rc = float_to_int(J, x.u.f, &r);
        return rc < 0 ? v_undef() : rc == 0 ? v_int(r) : dflt.t == V_UNDEF ? v_int(0) : dflt;
    }
    char buf[400], *end;
    if (x.t == V_STR && num_text(x.u.s.s, x.u.s.n, buf, sizeof buf)) {
        errno = 0;
        r = strtoll(buf, &end, 10);
        if (*end == 0) return errno == ERANGE ? (err_int_range(J), v_undef()) : v_int(r);
        double d = strtod(buf, &end);
        if (*end == 0) {
            int rc = float_to_int(J, d, &r);
            if (rc < 0) return v_undef();
            if (rc == 0) return v_int(r);
        }
    }
    return dflt.t == V_UNDEF ? v_int(0) : dflt;
}

/* The `float` filter: Python's float(), else the default (0.0). */
static value filter_float(value x, value dflt) {
    if (is_num(x)) return v_float(num(x));
    char buf[400], *end;
    if (x.t == V_STR && num_text(x.u.s.s, x.u.s.n, buf, sizeof buf)) {
        double d = strtod(buf, &end);
        if (*end == 0) return v_float(d);
    }
    return dflt.t == V_UNDEF ? v_float(0) : dflt;
}

static int test_named(jinja *J, const char *n, size_t nn, value x, const arglist *a);
static value in_op(jinja *J, value x, value c);
static value arith(jinja *J, char op, int floor_div, value a, value b);

/* The arguments of a after the first `skip` positional ones (select('gt', 1) passes 1 on). */
static void args_after(const arglist *a, int skip, arglist *rest) {
    rest->n = 0;
    for (int i = 0, pos = 0; i < a->n; i++) {
        if (!a->kw[i] && pos++ < skip) continue;
        rest->v[rest->n] = a->v[i];
        rest->kw[rest->n] = a->kw[i];
        rest->kw_n[rest->n++] = a->kw_n[i];
    }
}

/* select/reject (attr NULL) and selectattr/rejectattr: the items whose value (or attribute)
 * passes the test named by the next positional argument (with the arguments after it), or is
 * true when no test is named. */
static value filter_select(jinja *J, value x, const arglist *a, int reject, int by_attr) {
    value at = by_attr ? arg(a, 0, NULL) : v_undef(), test = arg(a, by_attr, NULL);
    value l = v_as_list(J, x), r = v_list_new(J);
    if (by_attr && at.t != V_STR) return jerr(J, RLHF_ERR_INVALID, "selectattr/rejectattr: needs an attribute name"), r;
    if (test.t != V_UNDEF && test.t != V_STR) return jerr(J, RLHF_ERR_INVALID, "select: the test must be named by a string"), r;
    arglist rest;
    args_after(a, by_attr + 1, &rest);
    for (int i = 0; i < l.u.l->n && !J->rc && !spend(J, 1); i++) {
        value v = by_attr ? attr_of(J, l.u.l->items[i], at.u.s.s, at.u.s.n) : l.u.l->items[i];
        int ok = test.t == V_UNDEF ? truthy(v) : test_named(J, test.u.s.s, test.u.s.n, v, &rest);
        if (ok != reject) list_push(J, r.u.l, l.u.l->items[i]);
    }
    return r;
}

/* |indent(width=4, first=False, blank=False) as jinja2's: lines after the first (and the
 * first with `first`) get the indent, empty ones only with `blank`. Line breaks are Python's
 * str.splitlines ones. */
static size_t line_break_len(const char *s, size_t n, size_t i) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\r') return i + 1 < n && s[i + 1] == '\n' ? 2 : 1;
    if (c == '\n' || c == '\v' || c == '\f' || (c >= 0x1c && c <= 0x1e)) return 1;
    if (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] == 0x85) return 2;
    if (c == 0xe2 && i + 2 < n && (unsigned char)s[i + 1] == 0x80 && ((unsigned char)s[i + 2] & 0xfe) == 0xa8) return 3;
    return 0;
}

static value filter_indent(jinja *J, value x, const arglist *a) {
    value w = arg(a, 0, "width"), ind;
    if (w.t == V_STR) ind = w;
    else ind = str_repeat(J, v_strn(" ", 1), w.t == V_UNDEF ? 4 : inum(w));
    const int first = truthy(arg(a, 1, "first")), blank = truthy(arg(a, 2, "blank"));
    x = v_to_str(J, x);
    if (J->rc) return v_undef();
    spend_bytes(J, x.u.s.n);
    strbuf o = str_buf();
    const char *s = x.u.s.s;
    const size_t n = x.u.s.n;
    /* the lines of splitlines(s + "\n"): s cut at every line break, except that a final \r
     * joins the appended \n */
    for (size_t i = 0, line = 0; !o.too_big; line++) {
        size_t e = i, br = 0;
        while (e < n && !(br = line_break_len(s, n, e))) e++;
        if (line > 0) strbuf_put(&o, "\n", 1);
        if (line == 0 ? first : blank || e > i) strbuf_put(&o, ind.u.s.s, ind.u.s.n);
        strbuf_put(&o, s + i, e - i);
        if (e == n || (e + br == n && s[e] == '\r' && br == 1)) break;
        i = e + br;
    }
    return str_buf_finish(J, &o);
}

/* The key |sort, |unique, |min and |max compare an item by: its attribute when given, strings
 * lower-cased unless case_sensitive (jinja2's defaults). */
static value sort_key(jinja *J, value x, value attr, int case_sensitive) {
    if (attr.t == V_STR) x = attr_of(J, x, attr.u.s.s, attr.u.s.n);
    return x.t == V_STR && !case_sensitive ? str_map(J, x, 1) : x;
}

/* Stable merge sort of items by keys (n entries each), Python's order (mixed types refused). */
static void sort_values(jinja *J, value *keys, value *items, int n, int reverse) {
    if (n < 2 || J->rc) return;
    const int h = n / 2;
    sort_values(J, keys, items, h, reverse);
    sort_values(J, keys + h, items + h, n - h, reverse);
    value *tk = jalloc(J, (size_t)n * sizeof *tk), *ti = jalloc(J, (size_t)n * sizeof *ti);
    if (!tk || !ti) return;
    int i = 0, j = h, k = 0, cmp = 0;
    while (i < h && j < n && !spend(J, 1)) {
        if (v_compare(J, keys[j], keys[i], &cmp)) return;
        const int take_right = reverse ? cmp > 0 : cmp < 0; /* ties keep the left one first: stable */
        tk[k] = take_right ? keys[j] : keys[i];
        ti[k++] = take_right ? items[j++] : items[i++];
    }
    for (; i < h; k++, i++) tk[k] = keys[i], ti[k] = items[i];
    for (; j < n; k++, j++) tk[k] = keys[j], ti[k] = items[j];
    memcpy(keys, tk, (size_t)n * sizeof *tk);
    memcpy(items, ti, (size_t)n * sizeof *ti);
}

/* |sort(reverse, case_sensitive, attribute), |unique(case_sensitive, attribute),
 * |min / |max(case_sensitive, attribute). */
static value filter_order(jinja *J, const char *n, size_t nn, value x, const arglist *a) {
    const int sort = name_is(n, nn, "sort"), unique = name_is(n, nn, "unique");
    const int reverse = sort && truthy(arg(a, 0, "reverse"));
    const int cs = truthy(arg(a, sort ? 1 : 0, "case_sensitive"));
    value attr = arg(a, sort ? 2 : 1, "attribute"), l = v_as_list(J, x), r = v_list_new(J);
    if (J->rc) return v_undef();
    if (unique) { /* first occurrences, in order */
        vlist keys = {0};
        for (int i = 0; i < l.u.l->n && !J->rc && !spend(J, 1); i++) {
            value k = sort_key(J, l.u.l->items[i], attr, cs);
            int seen = 0;
            for (int j = 0; j < keys.n && !seen && !spend_bytes(J, 64); j++) seen = v_equal(J, keys.items[j], k);
            if (!seen) list_push(J, &keys, k), list_push(J, r.u.l, l.u.l->items[i]);
        }
        return r;
    }
    const int m = l.u.l->n;
    value *keys = jalloc(J, (size_t)(m ? m : 1) * sizeof *keys);
    for (int i = 0; i < m && !J->rc; i++) {
        keys[i] = sort_key(J, l.u.l->items[i], attr, cs);
        list_push(J, r.u.l, l.u.l->items[i]);
    }
    if (J->rc) return v_undef();
    sort_values(J, keys, r.u.l->items, m, reverse);
    if (sort || J->rc) return r;
    if (m == 0) return v_undef(); /* jinja2: min/max of nothing is undefined */
    if (name_is(n, nn, "min")) return r.u.l->items[0];
    /* max: the first of the largest, as Python's max() */
    int i = m - 1, cmp = 0;
    while (i > 0 && !v_compare(J, keys[i - 1], keys[m - 1], &cmp) && cmp == 0) i--;
    return r.u.l->items[i];
}

/* Applies the filter named n to x with the arguments a. */
static value filter_named(jinja *J, const char *n, size_t nn, value x, const arglist *a_) {
    const arglist a = *a_;
    if (name_is(n, nn, "trim")) return str_strip(J, v_to_str(J, x), arg(&a, 0, "chars"), 1, 1);
    if (name_is(n, nn, "length") || name_is(n, nn, "count")) return v_int(v_len(J, x));
    if (name_is(n, nn, "upper")) return str_map(J, v_to_str(J, x), 0);
    if (name_is(n, nn, "lower")) return str_map(J, v_to_str(J, x), 1);
    if (name_is(n, nn, "capitalize")) return str_map(J, v_to_str(J, x), 2);
    if (name_is(n, nn, "title")) return str_map(J, v_to_str(J, x), 3);
    if (name_is(n, nn, "default") || name_is(n, nn, "d")) {
        int boolean = truthy(arg(&a, 1, "boolean"));
        if (x.t == V_UNDEF || (boolean && !truthy(x))) return arg(&a, 0, "default_value");
        return x;
    }
    if (name_is(n, nn, "first") || name_is(n, nn, "last")) {
        const int first = name_is(n, nn, "first");
        if (x.t == V_STR) { /* no list of characters */
            if (!x.u.s.n) return v_undef();
            size_t p = first ? 0 : u8_prev(x.u.s.s, x.u.s.n), q = u8_next(x.u.s.s, x.u.s.n, p);
            spend_bytes(J, first ? q : x.u.s.n - p);
            return v_strn(x.u.s.s + p, q - p);
        }
        value l = v_as_list(J, x);
        if (l.u.l->n == 0) return v_undef();
        return first ? l.u.l->items[0] : l.u.l->items[l.u.l->n - 1];
    }
    if (name_is(n, nn, "join")) return join(J, x, arg(&a, 0, "d"));
    if (name_is(n, nn, "replace")) return str_replace(J, v_to_str(J, x), arg(&a, 0, NULL), arg(&a, 1, NULL));
    if (name_is(n, nn, "string")) return v_to_str(J, x);
    if (name_is(n, nn, "safe") || name_is(n, nn, "e") || name_is(n, nn, "escape")) return x;
    if (name_is(n, nn, "int")) return filter_int(J, x, arg(&a, 0, "default"));
    if (name_is(n, nn, "float")) return filter_float(x, arg(&a, 0, "default"));
    if (name_is(n, nn, "list")) return v_as_list(J, x);
    if (name_is(n, nn, "tojson")) { /* transformers' tojson: json.dumps(x, ensure_ascii=False, ...) */
        value ind = arg(&a, 0, "indent"), seps = arg(&a, 2, "separators");
        vfmt fm = {1, ind.t == V_INT || ind.t == V_BOOL ? (int)(inum(ind) < 0 ? 0 : inum(ind) > 256 ? 256 : inum(ind)) : -1,
                   {V_UNDEF, {0}}, {V_UNDEF, {0}}, truthy(arg(&a, 1, "ensure_ascii"))};
        if (ind.t != V_UNDEF && ind.t != V_NONE && ind.t != V_INT && ind.t != V_BOOL)
            return jerr(J, RLHF_ERR_UNSUPPORTED, "tojson: indent must be a number"), v_undef();
        if (seps.t == V_LIST && seps.u.l->n == 2 && seps.u.l->items[0].t == V_STR && seps.u.l->items[1].t == V_STR) {
            fm.item_sep = seps.u.l->items[0];
            fm.key_sep = seps.u.l->items[1];
        } else if (seps.t != V_UNDEF && seps.t != V_NONE) {
            return jerr(J, RLHF_ERR_INVALID, "tojson: separators must be two strings"), v_undef();
        }
        if (truthy(arg(&a, 3, "sort_keys"))) return jerr(J, RLHF_ERR_UNSUPPORTED, "tojson: sort_keys is not supported"), v_undef();
        strbuf b = str_buf();
        v_print_d(J, &b, x, fm, 0);
        return str_buf_finish(J, &b);
    }
    if (name_is(n, nn, "reverse")) {
        value l = v_as_list(J, x), r = v_list_new(J);
        for (int i = l.u.l->n - 1; i >= 0 && !J->rc; i--) list_push(J, r.u.l, l.u.l->items[i]);
        if (x.t == V_STR) return join(J, r, v_strn("", 0));
        return r;
    }
    if (name_is(n, nn, "map")) { /* map(attribute='a', default=d) or map('filter', args...) */
        value at = arg(&a, -1, "attribute"), fname = arg(&a, 0, NULL), l = v_as_list(J, x), r = v_list_new(J);
        if (at.t == V_UNDEF && fname.t != V_STR)
            return jerr(J, RLHF_ERR_INVALID, "map: needs attribute= or a filter name"), r;
        value dflt = arg(&a, -1, "default");
        arglist rest;
        args_after(&a, 1, &rest);
        for (int i = 0; i < l.u.l->n && !J->rc && !spend(J, 1); i++) {
            value v;
            if (at.t != V_UNDEF) {
                at = v_to_str(J, at);
                v = attr_of(J, l.u.l->items[i], at.u.s.s, at.u.s.n);
                if (v.t == V_UNDEF && dflt.t != V_UNDEF) v = dflt;
            } else {
                v = filter_named(J, fname.u.s.s, fname.u.s.n, l.u.l->items[i], &rest);
            }
            list_push(J, r.u.l, v);
        }
        return r;
    }
    if (name_is(n, nn, "select") || name_is(n, nn, "reject")) return filter_select(J, x, &a, name_is(n, nn, "reject"), 0);
    if (name_is(n, nn, "selectattr") || name_is(n, nn, "rejectattr"))
        return filter_select(J, x, &a, name_is(n, nn, "rejectattr"), 1);
    if (name_is(n, nn, "indent")) return filter_indent(J, x, &a);
    if (name_is(n, nn, "sort") || name_is(n, nn, "unique") || name_is(n, nn, "min") || name_is(n, nn, "max"))
        return filter_order(J, n, nn, x, &a);
    if (name_is(n, nn, "abs")) {
        if (x.t == V_FLOAT) return v_float(fabs(x.u.f));
        if (x.t != V_INT && x.t != V_BOOL) return jerr(J, RLHF_ERR_INVALID, "abs: %s is not a number", type_name(x.t)), v_undef();
        if (inum(x) == LLONG_MIN) return err_int_range(J), v_undef();
        return v_int(llabs(inum(x)));
    }
    if (name_is(n, nn, "sum")) { /* sum(attribute=None, start=0) */
        value attr = arg(&a, 0, "attribute"), total = arg(&a, 1, "start"), l = v_as_list(J, x);
        if (total.t == V_UNDEF) total = v_int(0);
        for (int i = 0; i < l.u.l->n && !J->rc && !spend(J, 1); i++)
            total = arith(J, '+', 0, total, attr.t == V_STR ? attr_of(J, l.u.l->items[i], attr.u.s.s, attr.u.s.n)
                                                            : l.u.l->items[i]);
        return total;
    }
    if (name_is(n, nn, "items")) { /* a mapping's (key, value) pairs; undefined gives none */
        if (x.t == V_UNDEF) return v_list_new(J);
        if (x.t != V_DICT) return jerr(J, RLHF_ERR_INVALID, "items: can only get item pairs from a mapping"), v_undef();
        return call_method(J, x, "items", 5, &a);
    }
    jerr(J, RLHF_ERR_UNSUPPORTED, "filter '%.*s' is not supported by this Jinja subset", (int)nn, n);
    return v_undef();
}

static value apply_filter(jinja *J, frame *f, value x, const expr *e) {
    arglist a = {0};
    eval_args(J, f, e, &a);
    if (J->rc) return v_undef();
    return filter_named(J, e->name, e->name_n, x, &a);
}

static int apply_test(jinja *J, frame *f, value x, const expr *e) {
    arglist a = {0};
    eval_args(J, f, e, &a);
    if (J->rc) return 0;
    return test_named(J, e->name, e->name_n, x, &a);
}

/* Applies the test named n to x with the arguments a_ (jinja2's tests and their aliases). */
static int test_named(jinja *J, const char *n, size_t nn, value x, const arglist *a_) {
    const arglist a = *a_;
    if (J->rc) return 0;
    int cmp = 0;
    value y = arg(&a, 0, NULL);
    if (name_is(n, nn, "eq") || name_is(n, nn, "equalto") || name_is(n, nn, "==") || name_is(n, nn, "sameas"))
        return v_equal(J, x, y);
    if (name_is(n, nn, "ne") || name_is(n, nn, "!=")) return !v_equal(J, x, y);
    if (name_is(n, nn, "lt") || name_is(n, nn, "lessthan") || name_is(n, nn, "<")) return !v_compare(J, x, y, &cmp) && cmp < 0;
    if (name_is(n, nn, "le") || name_is(n, nn, "<=")) return !v_compare(J, x, y, &cmp) && cmp <= 0;
    if (name_is(n, nn, "gt") || name_is(n, nn, "greaterthan") || name_is(n, nn, ">")) return !v_compare(J, x, y, &cmp) && cmp > 0;
    if (name_is(n, nn, "ge") || name_is(n, nn, ">=")) return !v_compare(J, x, y, &cmp) && cmp >= 0;
    if (name_is(n, nn, "in")) return truthy(in_op(J, x, y));
    if (name_is(n, nn, "defined")) return x.t != V_UNDEF;
    if (name_is(n, nn, "undefined")) return x.t == V_UNDEF;
    if (name_is(n, nn, "none")) return x.t == V_NONE;
    if (name_is(n, nn, "string")) return x.t == V_STR;
    if (name_is(n, nn, "number")) return x.t == V_INT || x.t == V_FLOAT || x.t == V_BOOL; /* Python's bool is a Number */
    if (name_is(n, nn, "integer")) return x.t == V_INT;
    if (name_is(n, nn, "float")) return x.t == V_FLOAT;
    if (name_is(n, nn, "boolean")) return x.t == V_BOOL;
    if (name_is(n, nn, "true")) return x.t == V_BOOL && x.u.b;
    if (name_is(n, nn, "false")) return x.t == V_BOOL && !x.u.b;
    if (name_is(n, nn, "mapping")) return x.t == V_DICT;
    /* jinja2's Undefined iterates (as empty); a dict has len() and [] so it is a sequence */
    if (name_is(n, nn, "iterable")) return x.t == V_LIST || x.t == V_DICT || x.t == V_STR || x.t == V_UNDEF;
    if (name_is(n, nn, "sequence")) return x.t == V_LIST || x.t == V_STR || x.t == V_DICT;
    if (name_is(n, nn, "callable")) return x.t == V_FUNC || x.t == V_MACRO;
    if (name_is(n, nn, "odd")) return inum(x) % 2 != 0;
    if (name_is(n, nn, "even")) return inum(x) % 2 == 0;
    if (name_is(n, nn, "divisibleby")) {
        long long d = inum(arg(&a, 0, NULL));
        return d != 0 && (d == -1 || inum(x) % d == 0); /* LLONG_MIN % -1 overflows */
    }
    if (name_is(n, nn, "lower") || name_is(n, nn, "upper")) { /* str.islower(): some cased letter, none of the other case */
        if (x.t != V_STR) return 0;
        spend_bytes(J, x.u.s.n);
        int cased = 0;
        for (size_t i = 0; i < x.u.s.n; i++) {
            char c = x.u.s.s[i];
            if (name_is(n, nn, "lower") ? (c >= 'A' && c <= 'Z') : (c >= 'a' && c <= 'z')) return 0;
            cased |= (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
        }
        return cased;
    }
    jerr(J, RLHF_ERR_UNSUPPORTED, "test '%.*s' is not supported by this Jinja subset", (int)nn, n);
    return 0;
}

static value in_op(jinja *J, value x, value c) {
    if (c.t == V_STR) {
        value s = v_to_str(J, x);
        if (J->rc) return v_bool(0);
        spend_bytes(J, c.u.s.n);
        return v_bool(s.u.s.n == 0 || find(J, c.u.s.s, c.u.s.n, s.u.s.s, s.u.s.n) != NULL);
    }
    if (c.t == V_LIST) {
        for (int i = 0; i < c.u.l->n && !spend(J, 1); i++)
            if (v_equal(J, x, c.u.l->items[i])) return v_bool(1);
        return v_bool(0);
    }
    if (c.t == V_DICT) return v_bool(x.t == V_STR && dict_get(J, c.u.d, x.u.s.s, x.u.s.n) != NULL);
    if (c.t == V_UNDEF) return v_bool(0);
    jerr(J, RLHF_ERR_INVALID, "'in' needs a string, list or dict, not %s", type_name(c.t));
    return v_bool(0);
}


/* fmt % args, Python's printf-style formatting for %s %r %d %i %%; a tuple gives several
 * arguments. Flags, widths and the other conversions are refused as unsupported. */
static value str_percent(jinja *J, value fmt, value args) {
    const int many = args.t == V_LIST && args.u.l->is_tuple;
    const int n_args = many ? args.u.l->n : 1;
    int used = 0;
    strbuf o = str_buf();
    spend_bytes(J, fmt.u.s.n);
    for (size_t i = 0; i < fmt.u.s.n && !J->rc && !o.too_big; i++) {
        const char c = fmt.u.s.s[i];
        if (c != '%') {
            strbuf_put(&o, &c, 1);
            continue;
        }
        const char conv = ++i < fmt.u.s.n ? fmt.u.s.s[i] : 0;
        if (conv == '%') {
            strbuf_put(&o, "%", 1);
            continue;
        }
        if (!conv || !strchr("srdi", conv)) {
            jerr(J, RLHF_ERR_UNSUPPORTED, "string formatting: only %%s %%r %%d %%i %%%% are supported");
            break;
        }
        if (used == n_args) {
            jerr(J, RLHF_ERR_INVALID, "not enough arguments for format string");
            break;
        }
        value v = many ? args.u.l->items[used] : args;
        used++;
        if (conv == 'd' || conv == 'i') {
            if (!is_num(v)) {
                jerr(J, RLHF_ERR_INVALID, "%%%c format: a number is required, not %s", conv, type_name(v.t));
                break;
            }
            long long k = 0;
            if (v.t == V_FLOAT ? float_to_int(J, v.u.f, &k) : (k = inum(v), 0)) break;
            v = v_int(k);
        }
        if (conv == 'r' && v.t == V_STR) print_str_repr(&o, v.u.s.s, v.u.s.n);
        else v_print(J, &o, v, 0);
    }
    if (!J->rc && used < n_args) jerr(J, RLHF_ERR_INVALID, "not all arguments converted during string formatting");
    if (J->rc) {
        free(o.s);
        return v_undef();
    }
    return str_buf_finish(J, &o);
}

static value arith(jinja *J, char op, int floor_div, value a, value b) {
    if (op == '+' && a.t == V_STR && b.t == V_STR) return concat(J, a, b);
    if (op == '+' && a.t == V_LIST && b.t == V_LIST) {
        value r = v_list_new(J);
        for (int i = 0; i < a.u.l->n && !J->rc; i++) list_push(J, r.u.l, a.u.l->items[i]);
        for (int i = 0; i < b.u.l->n && !J->rc; i++) list_push(J, r.u.l, b.u.l->items[i]);
        return r;
    }
    if (op == '*' && !floor_div && a.t == V_STR && (b.t == V_INT || b.t == V_BOOL)) return str_repeat(J, a, inum(b));
    if (op == '%' && a.t == V_STR) return str_percent(J, a, b);
    if (op == '*' && !floor_div && b.t == V_STR && (a.t == V_INT || a.t == V_BOOL)) return str_repeat(J, b, inum(a));
    if (!is_num(a) || !is_num(b)) {
        jerr(J, RLHF_ERR_INVALID, "unsupported operand types for '%c': %s and %s", op, type_name(a.t), type_name(b.t));
        return v_undef();
    }
    const int ints = a.t != V_FLOAT && b.t != V_FLOAT;
    const long long x = inum(a), y = inum(b);
    long long r;
    switch (op) {
    case '+':
    case '-':
    case '*':
        if (!ints) return v_float(op == '+' ? num(a) + num(b) : op == '-' ? num(a) - num(b) : num(a) * num(b));
        if (op == '+' ? __builtin_add_overflow(x, y, &r) : op == '-' ? __builtin_sub_overflow(x, y, &r)
                                                         : __builtin_mul_overflow(x, y, &r))
            return err_int_range(J), v_undef();
        return v_int(r);
    case '/':
        if (num(b) == 0) return jerr(J, RLHF_ERR_INVALID, "division by zero"), v_undef();
        if (!floor_div) return v_float(num(a) / num(b));
        if (!ints) return v_float(floor(num(a) / num(b)));
        if (x == LLONG_MIN && y == -1) return err_int_range(J), v_undef();
        r = x / y;
        if (x % y != 0 && ((x < 0) != (y < 0))) r--; /* Python floors */
        return v_int(r);
    case '%':
        if (ints) {
            if (y == 0) return jerr(J, RLHF_ERR_INVALID, "modulo by zero"), v_undef();
            if (y == -1) return v_int(0); /* LLONG_MIN % -1 overflows in C */
            r = x % y;
            if (r != 0 && ((r < 0) != (y < 0))) r += y; /* Python's sign */
            return v_int(r);
        } else {
            if (num(b) == 0) return jerr(J, RLHF_ERR_INVALID, "modulo by zero"), v_undef();
            double m = fmod(num(a), num(b));
            if (m != 0 && ((m < 0) != (num(b) < 0))) m += num(b);
            return v_float(m);
        }
    }
    return v_undef();
}

static value eval_in(jinja *J, frame *f, const expr *e);

static value eval(jinja *J, frame *f, const expr *e) {
    if (J->rc || !e || spend(J, 1)) return v_undef();
    if (J->depth >= JINJA_MAX_DEPTH) {
        J->line = e->line;
        jerr(J, RLHF_ERR_UNSUPPORTED, "evaluation nested deeper than %d (a macro calling itself without end?)",
             JINJA_MAX_DEPTH);
        return v_undef();
    }
    J->depth++;
    value r = eval_in(J, f, e);
    J->depth--;
    return r;
}

static void exec_body(jinja *J, frame *f, const stmt *s);

/* Runs body in frame f with the output captured: the text it printed as a string value. */
static value capture(jinja *J, frame *f, const stmt *body) {
    strbuf saved = J->out;
    J->out = str_buf();
    exec_body(J, f, body);
    value r = v_strn("", 0);
    if (!J->rc) r = str_buf_finish(J, &J->out);
    free(J->out.s);
    J->out = saved;
    return r;
}

static int param_index(const stmt *d, const char *name, size_t n) {
    for (int i = 0; i < d->n_params; i++)
        if (d->param_n[i] == n && memcmp(d->params[i], name, n) == 0) return i;
    return -1;
}

/* Calls a macro: arguments bound to its parameters (missing ones take their default, or are
 * undefined, as in Jinja), extra ones go to varargs/kwargs when the body reads them, and
 * `caller` (when not undefined) is the body of the {% call %} block that called it. */
static value call_macro(jinja *J, const jmacro *m, const arglist *a, value caller) {
    const stmt *d = m->def;
    const char *name = d->k == S_MACRO ? d->name : "caller";
    const int name_n = d->k == S_MACRO ? (int)d->name_n : 6;
    frame *fr = new_frame(J, m->closure);
    if (!fr) return v_undef();
    value bound[32], varargs = v_list_new(J), kwargs = v_dict_new(J);
    if (!J->rc) varargs.u.l->is_tuple = 1;
    int have[32] = {0}, pos = 0;
    for (int i = 0; i < a->n && !J->rc; i++) {
        int k = a->kw[i] ? param_index(d, a->kw[i], a->kw_n[i]) : pos++;
        if (a->kw[i] && k < 0) {
            if (!d->var_args)
                return jerr(J, RLHF_ERR_INVALID, "macro '%.*s' takes no keyword argument '%.*s'", name_n, name,
                            (int)a->kw_n[i], a->kw[i]), v_undef();
            dict_set(J, kwargs.u.d, v_strn(a->kw[i], a->kw_n[i]), a->v[i]);
        } else if (k >= d->n_params) {
            if (!d->var_args)
                return jerr(J, RLHF_ERR_INVALID, "macro '%.*s' takes not more than %d argument(s)", name_n, name,
                            d->n_params), v_undef();
            list_push(J, varargs.u.l, a->v[i]);
        } else if (have[k]) {
            return jerr(J, RLHF_ERR_INVALID, "macro '%.*s' got multiple values for argument '%.*s'", name_n, name,
                        (int)d->param_n[k], d->params[k]), v_undef();
        } else {
            bound[k] = a->v[i];
            have[k] = 1;
        }
    }
    /* defaults are evaluated in the macro's scope, in order, so they see earlier parameters */
    for (int k = 0; k < d->n_params && !J->rc; k++) {
        value v = have[k] ? bound[k] : d->defaults[k] ? eval(J, fr, d->defaults[k]) : v_undef();
        dict_set(J, &fr->vars, v_strn(d->params[k], d->param_n[k]), v);
    }
    dict_set(J, &fr->vars, v_strn("varargs", 7), varargs);
    dict_set(J, &fr->vars, v_strn("kwargs", 6), kwargs);
    if (caller.t != V_UNDEF) dict_set(J, &fr->vars, v_strn("caller", 6), caller);
    const int line = J->line;
    value r = capture(J, fr, d->body);
    J->line = line;
    return r;
}

/* Jinja's undefined values print as "" and iterate as empty, but reading an attribute, an item
 * or a method of one is an error, as in jinja2. */
static int err_undefined(jinja *J, const expr *of, const char *what) {
    if (of->k == E_NAME) return jerr(J, RLHF_ERR_INVALID, "'%.*s' is undefined", (int)of->name_n, of->name);
    if (of->k == E_ATTR)
        return jerr(J, RLHF_ERR_INVALID, "no attribute '%.*s' (an undefined value has no %s)", (int)of->name_n, of->name, what);
    return jerr(J, RLHF_ERR_INVALID, "an undefined value has no %s", what);
}

/* A call expression; `caller` is passed to a macro called by a {% call %} block. */
static value eval_call(jinja *J, frame *f, const expr *e, value caller) {
    arglist a = {0};
    eval_args(J, f, e, &a);
    if (J->rc) return v_undef();
    if (e->a->k == E_ATTR) {
        value o = eval(J, f, e->a->a);
        if (o.t == V_UNDEF && !J->rc) return err_undefined(J, e->a->a, "method"), v_undef();
        return call_method(J, o, e->a->name, e->a->name_n, &a);
    }
    value fn = eval(J, f, e->a);
    J->line = e->line;
    if (fn.t == V_MACRO) return call_macro(J, fn.u.m, &a, caller);
    if (fn.t == V_FUNC) return call_function(J, global_funcs[fn.u.i], strlen(global_funcs[fn.u.i]), &a);
    if (fn.t == V_UNDEF && e->a->k == E_NAME)
        return jerr(J, RLHF_ERR_INVALID, "'%.*s' is undefined", (int)e->a->name_n, e->a->name), v_undef();
    jerr(J, RLHF_ERR_INVALID, "%s is not callable", type_name(fn.t));
    return v_undef();
}

/* a ** b as Python: an integer for integers with b >= 0 (refused past 64 bits), else a float. */
static value power(jinja *J, value a, value b) {
    if (!is_num(a) || !is_num(b))
        return jerr(J, RLHF_ERR_INVALID, "unsupported operand types for '**': %s and %s", type_name(a.t), type_name(b.t)),
               v_undef();
    if (a.t == V_FLOAT || b.t == V_FLOAT || inum(b) < 0) {
        if (num(a) == 0 && num(b) < 0) return jerr(J, RLHF_ERR_INVALID, "0 cannot be raised to a negative power"), v_undef();
        return v_float(pow(num(a), num(b)));
    }
    long long r = 1, x = inum(a), k = inum(b);
    for (; k > 0 && !spend(J, 1); k--) /* at most 64 steps before the result overflows, unless x is 0, 1 or -1 */
        if (__builtin_mul_overflow(r, x, &r)) return err_int_range(J), v_undef();
        else if (r == 0 || r == 1) break;
        else if (r == -1) {
            r = (k - 1) % 2 ? 1 : -1;
            break;
        }
    return v_int(r);
}

static value eval_in(jinja *J, frame *f, const expr *e) {
    J->line = e->line;
    switch (e->k) {
    case E_LIT: return e->lit;
    case E_NAME: return lookup(J, f, e->name, e->name_n);
    case E_ATTR: {
        value o = eval(J, f, e->a);
        if (o.t == V_UNDEF && !J->rc) return err_undefined(J, e->a, "attribute"), v_undef();
        return attr_of(J, o, e->name, e->name_n);
    }
    case E_INDEX: {
        value o = eval(J, f, e->a), k = eval(J, f, e->b);
        if (J->rc) return v_undef();
        if (o.t == V_UNDEF) return err_undefined(J, e->a, "item"), v_undef();
        if (o.t == V_DICT && k.t == V_STR) return attr_of(J, o, k.u.s.s, k.u.s.n);
        if (k.t != V_INT && k.t != V_BOOL) return v_undef();
        if (o.t == V_STR) return str_index(J, o, inum(k));
        if (o.t == V_LIST) {
            long long i = inum(k);
            if (i < 0) i += o.u.l->n;
            if (i < 0 || i >= o.u.l->n) return v_undef();
            return o.u.l->items[i];
        }
        return v_undef();
    }
    case E_SLICE: {
        value o = eval(J, f, e->a);
        value lo = e->b ? eval(J, f, e->b) : v_none(), hi = e->c ? eval(J, f, e->c) : v_none();
        value st = e->args && e->args[0] ? eval(J, f, e->args[0]) : v_none();
        if (J->rc) return v_undef();
        value l = o.t == V_STR ? o : v_as_list(J, o);
        long long n = o.t == V_STR ? (long long)u8_count(J, o.u.s.s, o.u.s.n) : l.u.l->n;
        long long step = st.t == V_NONE ? 1 : inum(st);
        if (step == 0) return jerr(J, RLHF_ERR_INVALID, "slice step 0"), v_undef();
        long long a0 = lo.t == V_NONE ? (step > 0 ? 0 : n - 1) : inum(lo);
        long long b0 = hi.t == V_NONE ? (step > 0 ? n : -n - 1) : inum(hi);
        if (a0 < 0) a0 += n;
        if (b0 < 0) b0 += n;
        if (step > 0) {
            if (a0 < 0) a0 = 0;
            if (b0 > n) b0 = n;
        } else {
            if (a0 > n - 1) a0 = n - 1;
            if (b0 < -1) b0 = -1;
        }
        if (J->rc) return v_undef();
        if (o.t == V_STR) return str_slice(J, o, a0, b0, step);
        value r = v_list_new(J);
        for (long long i = a0; (step > 0 ? i < b0 : i > b0) && !J->rc;) {
            list_push(J, r.u.l, l.u.l->items[i]);
            if (__builtin_add_overflow(i, step, &i)) break;
        }
        return r;
    }
    case E_CALL: return eval_call(J, f, e, v_undef());
    case E_FILTER: return apply_filter(J, f, eval(J, f, e->a), e);
    case E_TEST: {
        int r = apply_test(J, f, eval(J, f, e->a), e);
        return v_bool(e->negate ? !r : r);
    }
    case E_NOT: return v_bool(!truthy(eval(J, f, e->a)));
    case E_NEG: {
        value x = eval(J, f, e->a);
        if (x.t == V_FLOAT) return v_float(-x.u.f);
        long long i = inum(x);
        if (i == LLONG_MIN) return err_int_range(J), v_undef();
        return v_int(-i);
    }
    case E_AND: {
        value x = eval(J, f, e->a);
        return truthy(x) ? eval(J, f, e->b) : x;
    }
    case E_OR: {
        value x = eval(J, f, e->a);
        return truthy(x) ? x : eval(J, f, e->b);
    }
    case E_TERNARY: return truthy(eval(J, f, e->a)) ? eval(J, f, e->b) : (e->c ? eval(J, f, e->c) : v_undef());
    case E_BIN: {
        value a = eval(J, f, e->a), b = eval(J, f, e->b);
        if (J->rc) return v_undef();
        const char *op = e->name;
        int cmp = 0;
        if (name_is(op, e->name_n, "~")) return concat(J, a, b);
        if (name_is(op, e->name_n, "==")) return v_bool(v_equal(J, a, b));
        if (name_is(op, e->name_n, "!=")) return v_bool(!v_equal(J, a, b));
        if (name_is(op, e->name_n, "in")) return in_op(J, a, b);
        if (op[0] == '<' || op[0] == '>') {
            if (v_compare(J, a, b, &cmp)) return v_undef();
            if (name_is(op, e->name_n, "<")) return v_bool(cmp < 0);
            if (name_is(op, e->name_n, ">")) return v_bool(cmp > 0);
            if (name_is(op, e->name_n, "<=")) return v_bool(cmp <= 0);
            return v_bool(cmp >= 0);
        }
        if (name_is(op, e->name_n, "**")) return power(J, a, b);
        return arith(J, op[0], e->name_n == 2, a, b);
    }
    case E_LIST: {
        value l = v_list_new(J);
        if (!J->rc) l.u.l->is_tuple = e->negate;
        for (int i = 0; i < e->n_args && !J->rc; i++) list_push(J, l.u.l, eval(J, f, e->args[i]));
        return l;
    }
    case E_DICT: {
        value d = v_dict_new(J);
        for (int i = 0; i + 1 < e->n_args && !J->rc; i += 2) {
            value k = v_to_str(J, eval(J, f, e->args[i]));
            dict_set(J, d.u.d, k, eval(J, f, e->args[i + 1]));
        }
        return d;
    }
    }
    return v_undef();
}

/* Binds the loop variable(s) of `s` to x in fr; `strict` refuses an item that does not unpack. */
static int bind_loop_vars(jinja *J, frame *fr, const stmt *s, value x, int strict) {
    if (s->n_vars == 1) {
        dict_set(J, &fr->vars, v_strn(s->vars[0], s->var_n[0]), x);
    } else if (x.t == V_LIST && (strict ? x.u.l->n == 2 : x.u.l->n >= 2)) {
        dict_set(J, &fr->vars, v_strn(s->vars[0], s->var_n[0]), x.u.l->items[0]);
        dict_set(J, &fr->vars, v_strn(s->vars[1], s->var_n[1]), x.u.l->items[1]);
    } else if (strict) {
        return jerr(J, RLHF_ERR_INVALID, "cannot unpack %s into two loop variables", type_name(x.t));
    }
    return J->rc;
}

static void exec_for(jinja *J, frame *f, const stmt *s) {
    value it = v_as_list(J, eval(J, f, s->e));
    if (J->rc) return;
    /* One frame for all iterations: emptied each time (a fresh scope), its storage reused. */
    frame *fr = new_frame(J, f);
    if (!fr) return;
    /* the `if` filter runs before the loop so loop.length/last count only kept items */
    value items = it;
    if (s->filter) {
        items = v_list_new(J);
        for (int i = 0; i < it.u.l->n && !J->rc; i++) {
            fr->vars.n = 0;
            value x = it.u.l->items[i];
            if (bind_loop_vars(J, fr, s, x, 0)) return;
            if (truthy(eval(J, fr, s->filter))) list_push(J, items.u.l, x);
        }
    }
    const int n = items.u.l->n;
    if (n == 0) {
        if (s->other) exec_body(J, f, s->other);
        return;
    }
    /* One loop object for the whole loop, as Jinja's: its values change with each iteration. */
    static const char *const keys[] = {"index", "index0", "revindex", "revindex0", "first",
                                       "last", "length", "previtem", "nextitem"};
    value loop = v_dict_new(J);
    for (int k = 0; k < 9; k++) dict_set(J, loop.u.d, v_strn(keys[k], strlen(keys[k])), v_undef());
    for (int i = 0; i < n && !J->rc && !spend(J, 1); i++) {
        fr->vars.n = 0;
        if (bind_loop_vars(J, fr, s, items.u.l->items[i], 1)) return;
        value *lv = loop.u.d->vals; /* nothing can add keys to it: it is not a namespace */
        lv[0] = v_int(i + 1);
        lv[1] = v_int(i);
        lv[2] = v_int(n - i);
        lv[3] = v_int(n - i - 1);
        lv[4] = v_bool(i == 0);
        lv[5] = v_bool(i == n - 1);
        lv[6] = v_int(n);
        lv[7] = i > 0 ? items.u.l->items[i - 1] : v_undef();
        lv[8] = i + 1 < n ? items.u.l->items[i + 1] : v_undef();
        dict_set(J, &fr->vars, v_strn("loop", 4), loop);
        exec_body(J, fr, s->body);
        const int ctl = J->loop_ctl;
        J->loop_ctl = 0;
        if (ctl == 1) break;
    }
}

static void exec_body_in(jinja *J, frame *f, const stmt *s);

static void exec_body(jinja *J, frame *f, const stmt *s) {
    if (J->depth >= JINJA_MAX_DEPTH) {
        if (s) J->line = s->line;
        jerr(J, RLHF_ERR_UNSUPPORTED, "evaluation nested deeper than %d (a macro calling itself without end?)",
             JINJA_MAX_DEPTH);
        return;
    }
    J->depth++;
    exec_body_in(J, f, s);
    J->depth--;
}

static void exec_body_in(jinja *J, frame *f, const stmt *s) {
    for (; s && !J->rc && !J->loop_ctl && !spend(J, 1); s = s->next) {
        J->line = s->line;
        switch (s->k) {
        case S_TEXT: strbuf_put(&J->out, s->text, s->text_n); break;
        case S_OUT: v_print(J, &J->out, eval(J, f, s->e), 0); break;
        case S_IF:
            for (const stmt *c = s; !J->rc;) { /* the if, then each elif */
                if (truthy(eval(J, f, c->e))) {
                    exec_body(J, f, c->body);
                    break;
                }
                if (!c->elif) {
                    if (c->other) exec_body(J, f, c->other);
                    break;
                }
                c = c->other;
            }
            break;
        case S_FOR: exec_for(J, f, s); break;
        case S_MACRO: {
            jmacro *m = jalloc(J, sizeof *m);
            if (!m) return;
            m->def = s;
            m->closure = f;
            value v = {V_MACRO, {0}};
            v.u.m = m;
            dict_set(J, &f->vars, v_strn(s->name, s->name_n), v);
            break;
        }
        case S_CALLBLOCK: {
            jmacro *m = jalloc(J, sizeof *m);
            if (!m) return;
            m->def = s;
            m->closure = f;
            value caller = {V_MACRO, {0}};
            caller.u.m = m;
            v_print(J, &J->out, eval_call(J, f, s->e, caller), 0);
            break;
        }
        case S_BREAK: J->loop_ctl = 1; break;
        case S_CONTINUE: J->loop_ctl = 2; break;
        case S_SET: {
            value v = s->e ? eval(J, f, s->e) : capture(J, f, s->body);
            if (J->rc) return;
            if (s->n_vars == 1) {
                dict_set(J, &f->vars, v_strn(s->vars[0], s->var_n[0]), v);
            } else {
                value ns = lookup(J, f, s->vars[0], s->var_n[0]);
                if (ns.t != V_DICT || !ns.u.d->is_namespace) {
                    jerr(J, RLHF_ERR_INVALID, "'%.*s' is not a namespace", (int)s->var_n[0], s->vars[0]);
                    return;
                }
                dict_set(J, ns.u.d, v_strn(s->vars[1], s->var_n[1]), v);
            }
            break;
        }
        case S_NOP: break;
        }
        if (J->out.too_big) jerr(J, RLHF_ERR_UNSUPPORTED, "the rendered text is longer than %zu MiB", JINJA_MAX_OUTPUT >> 20);
        else if (J->out.oom) jerr(J, RLHF_ERR_NOMEM, "out of memory");
    }
}

/* ---- JSON variables (jinja_context.messages_json / vars_json) ---- */

/* A JSON reader straight into values: integers stay integers and floats floats (as Python's
 * json module reads them), object members keep their order. */
typedef struct {
    jinja *J;
    const char *what; /* "messages_json" or "vars_json", for errors */
    const char *s, *p;
} jreader;

static value json_fail(jreader *r, const char *msg) {
    jerr(r->J, RLHF_ERR_FORMAT, "%s: %s at byte %ld", r->what, msg, (long)(r->p - r->s));
    return v_undef();
}

static void json_ws(jreader *r) {
    while (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r') r->p++;
}

static int json_hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        if (!isxdigit((unsigned char)p[i])) return -1;
        v = v * 16 + (unsigned)(isdigit((unsigned char)p[i]) ? p[i] - '0' : (tolower((unsigned char)p[i]) - 'a' + 10));
    }
    *out = v;
    return 0;
}

/* Appends code point cp as UTF-8. */
static void put_utf8(strbuf *b, unsigned cp) {
    char u[4];
    int n;
    if (cp < 0x80) u[0] = (char)cp, n = 1;
    else if (cp < 0x800) u[0] = (char)(0xc0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
    else if (cp < 0x10000)
        u[0] = (char)(0xe0 | cp >> 12), u[1] = (char)(0x80 | (cp >> 6 & 0x3f)), u[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
    else
        u[0] = (char)(0xf0 | cp >> 18), u[1] = (char)(0x80 | (cp >> 12 & 0x3f)), u[2] = (char)(0x80 | (cp >> 6 & 0x3f)),
        u[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
    strbuf_put(b, u, (size_t)n);
}

static value json_string(jreader *r) {
    strbuf b = str_buf();
    for (r->p++; *r->p != '"'; r->p++) {
        if (!*r->p || (unsigned char)*r->p < 0x20) {
            free(b.s);
            return json_fail(r, "unterminated string");
        }
        if (*r->p != '\\') {
            strbuf_put(&b, r->p, 1);
            continue;
        }
        const char c = *++r->p;
        static const char esc[] = "\"\\/bfnrt", out[] = "\"\\/\b\f\n\r\t";
        const char *simple = c ? strchr(esc, c) : NULL;
        if (simple) {
            strbuf_put(&b, &out[simple - esc], 1);
        } else if (c == 'u') {
            unsigned cp, lo;
            if (json_hex4(r->p + 1, &cp)) break;
            r->p += 4;
            if (cp >= 0xd800 && cp < 0xdc00 && r->p[1] == '\\' && r->p[2] == 'u' && !json_hex4(r->p + 3, &lo) &&
                lo >= 0xdc00 && lo < 0xe000) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                r->p += 6;
            }
            put_utf8(&b, cp);
        } else {
            break;
        }
    }
    if (*r->p != '"') {
        free(b.s);
        return json_fail(r, "bad escape in a string");
    }
    r->p++;
    return str_buf_finish(r->J, &b);
}

static value json_value(jreader *r, int depth) {
    json_ws(r);
    if (r->J->rc) return v_undef();
    if (depth > JINJA_MAX_VALUE_DEPTH) return json_fail(r, "nested too deep");
    const char c = *r->p;
    if (c == '"') return json_string(r);
    if (c == '[' || c == '{') {
        value v = c == '[' ? v_list_new(r->J) : v_dict_new(r->J);
        const char close = c == '[' ? ']' : '}';
        r->p++;
        json_ws(r);
        if (*r->p == close) return r->p++, v;
        for (;;) {
            value k = v_undef();
            if (c == '{') {
                json_ws(r);
                if (*r->p != '"') return json_fail(r, "expected a member name");
                k = json_string(r);
                json_ws(r);
                if (*r->p != ':') return json_fail(r, "expected ':'");
                r->p++;
            }
            value x = json_value(r, depth + 1);
            if (r->J->rc) return v_undef();
            if (c == '[') list_push(r->J, v.u.l, x);
            else dict_set(r->J, v.u.d, k, x);
            json_ws(r);
            if (*r->p == ',') r->p++;
            else if (*r->p == close) return r->p++, v;
            else return json_fail(r, c == '[' ? "expected ',' or ']'" : "expected ',' or '}'");
        }
    }
    if (strncmp(r->p, "true", 4) == 0) return r->p += 4, v_bool(1);
    if (strncmp(r->p, "false", 5) == 0) return r->p += 5, v_bool(0);
    if (strncmp(r->p, "null", 4) == 0) return r->p += 4, v_none();
    if (c == '-' || (c >= '0' && c <= '9')) {
        const char *q = r->p + (c == '-');
        int is_float = 0;
        while (isdigit((unsigned char)*q) || *q == '.' || *q == 'e' || *q == 'E' || *q == '+' || *q == '-')
            is_float |= !isdigit((unsigned char)*q), q++;
        char *end;
        errno = 0;
        if (!is_float) {
            long long i = strtoll(r->p, &end, 10);
            if (end == q && errno != ERANGE) return r->p = q, v_int(i);
        }
        double f = strtod(r->p, &end);
        if (end != q) return json_fail(r, "bad number");
        return r->p = q, v_float(f);
    }
    return json_fail(r, "expected a JSON value");
}

/* The JSON text s as a value (with the error set, naming `what`, when it is not JSON). */
static value json_read(jinja *J, const char *what, const char *s) {
    jreader r = {J, what, s, s};
    value v = json_value(&r, 0);
    json_ws(&r);
    if (!J->rc && *r.p) json_fail(&r, "text after the JSON value");
    return v;
}

/* The template as Jinja's lexer sees it: \r\n and \r read as \n, and one newline at the very
 * end dropped (keep_trailing_newline=False). */
static const char *normalize_newlines(jinja *J, const char *t, size_t n) {
    char *s = jalloc(J, n + 1), *o = s;
    if (!s) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (t[i] != '\r') *o++ = t[i];
        else if (t[i + 1] != '\n') *o++ = '\n';
    }
    if (o > s && o[-1] == '\n') o--;
    *o = 0;
    return s;
}

int jinja_render(char **out, const char *tmpl, const jinja_context *ctx, rlhf_error *err) {
    *out = NULL;
    const jinja_message *msgs = ctx->messages;
    const int n = ctx->n_messages, add_gen = ctx->add_generation_prompt;
    const char *bos_token = ctx->bos_token, *eos_token = ctx->eos_token;
    jinja J = {0};
    J.now = ctx->now;
    J.err = err;
    J.line = 1;
    J.out.limit = JINJA_MAX_OUTPUT;
    /* memory: lexing and parsing linear in the template; evaluation a fixed allowance plus a
     * multiple of what the render reads */
    const size_t tmpl_n = strlen(tmpl);
    size_t input = tmpl_n;
    for (int i = 0; i < n; i++) {
        input += msgs[i].role ? strlen(msgs[i].role) : 0;
        input += msgs[i].content ? strlen(msgs[i].content) : 0;
    }
    input += (ctx->messages_json ? strlen(ctx->messages_json) : 0) + (ctx->vars_json ? strlen(ctx->vars_json) : 0);
    J.arena_limit = tmpl_n < (SIZE_MAX - JINJA_ARENA_BASE) / JINJA_PARSE_PER_BYTE
                        ? JINJA_ARENA_BASE + JINJA_PARSE_PER_BYTE * tmpl_n
                        : SIZE_MAX;
    tok_vec tv = {0};
    const char *src = normalize_newlines(&J, tmpl, tmpl_n);
    if (src && lex(&J, src, &tv) == 0) {
        parser P = {&J, tv.v, 0, tv.n, 0, 0, 0};
        stmt *prog = parse_body(&P, NULL, 0);
        const size_t parsed = J.A.total;
        J.arena_limit = input < (SIZE_MAX - JINJA_ARENA_BASE - parsed) / JINJA_ARENA_PER_INPUT
                            ? parsed + JINJA_ARENA_BASE + JINJA_ARENA_PER_INPUT * input
                            : SIZE_MAX;
        if (!J.rc) {
            frame *top = new_frame(&J, NULL);
            if (!top) goto done;
            value ml = v_list_new(&J);
            if (ctx->messages_json) {
                ml = json_read(&J, "messages_json", ctx->messages_json);
                if (!J.rc && ml.t != V_LIST) jerr(&J, RLHF_ERR_FORMAT, "messages_json: not a JSON array");
            }
            for (int i = 0; i < n && !J.rc && !ctx->messages_json; i++) {
                value m = v_dict_new(&J);
                dict_set(&J, m.u.d, v_strn("role", 4), v_strn(msgs[i].role ? msgs[i].role : "", strlen(msgs[i].role ? msgs[i].role : "")));
                dict_set(&J, m.u.d, v_strn("content", 7),
                         v_strn(msgs[i].content ? msgs[i].content : "", strlen(msgs[i].content ? msgs[i].content : "")));
                list_push(&J, ml.u.l, m);
            }
            const char *bos = bos_token ? bos_token : "", *eos = eos_token ? eos_token : "";
            dict_set(&J, &top->vars, v_strn("messages", 8), ml);
            dict_set(&J, &top->vars, v_strn("add_generation_prompt", 21), v_bool(add_gen));
            dict_set(&J, &top->vars, v_strn("bos_token", 9), v_strn(bos, strlen(bos)));
            dict_set(&J, &top->vars, v_strn("eos_token", 9), v_strn(eos, strlen(eos)));
            /* transformers passes these as None when the caller gives none */
            dict_set(&J, &top->vars, v_strn("tools", 5), v_none());
            dict_set(&J, &top->vars, v_strn("documents", 9), v_none());
            if (ctx->vars_json) {
                value vars = json_read(&J, "vars_json", ctx->vars_json);
                if (!J.rc && vars.t != V_DICT) jerr(&J, RLHF_ERR_FORMAT, "vars_json: not a JSON object");
                for (int i = 0; !J.rc && i < vars.u.d->n; i++) dict_set(&J, &top->vars, vars.u.d->keys[i], vars.u.d->vals[i]);
            }
            if (!J.rc) exec_body(&J, top, prog);
        }
    }
done:;
    int rc = J.rc;
    if (!rc) {
        if (!J.out.s) strbuf_put(&J.out, "", 0);
        if (J.out.too_big) rc = jerr(&J, RLHF_ERR_UNSUPPORTED, "the rendered text is longer than %zu MiB", JINJA_MAX_OUTPUT >> 20);
        else if (J.out.oom) rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    }
    if (rc) free(J.out.s);
    else *out = J.out.s;
    arena_free(&J.A);
    return rc;
}
