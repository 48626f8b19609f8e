/* jinja.h — a Jinja interpreter for the chat templates Hugging Face keeps in
 * tokenizer_config.json ("chat_template"), rendering them as transformers' apply_chat_template
 * does (a sandboxed environment with trim_blocks and lstrip_blocks).
 *
 * How the pieces fit: jinja_render lexes the template (whitespace control, trim_blocks and
 * lstrip_blocks are applied there), parses it into statement and expression trees, and walks
 * them with the variables of a jinja_context; everything a render allocates lives in one arena
 * freed when it returns. prompt.c builds its chat prompts on this.
 *
 * The subset: text, {{ }} expressions, {% if/elif/else %}, {% for %} (with loop.index/index0/
 * first/last/length/revindex, tuple unpacking, `if` filters and `else`), {% set %} (also
 * namespace attributes), comments, whitespace control (-); expressions with literals, lists,
 * dicts, attribute/index/slice access, + - * / // % ~, comparisons, and/or/not, in,
 * `x if c else y`, tests (defined, none, string, number, mapping, iterable, true/false...),
 * filters (trim, length, upper, lower, capitalize, title, default, first, last, join, replace,
 * tojson, string, int, list, reverse, map(attribute=), selectattr/rejectattr) and the calls
 * templates use (raise_exception, range, namespace, strftime_now, str methods strip/lstrip/
 * rstrip/split/startswith/endswith/upper/lower/replace, dict items/keys/values/get). Macros,
 * call blocks, includes and imports are refused with a message naming the line.
 *
 * Templates come from untrusted model files, so rendering is bounded: nesting deeper than 256,
 * values nested deeper than 64, strings or output over 16 MiB, more than 2 million evaluation
 * steps and integer overflow are refused with an error naming the line, never a crash or hang.
 * The variables a template sees: messages (list of {role, content}), add_generation_prompt,
 * bos_token, eos_token. */
#ifndef RLHF_JINJA_H
#define RLHF_JINJA_H

#include <time.h>

#include "src/core/error.h"

typedef struct {
    const char *role;    /* "system", "user", "assistant" (any string the template handles) */
    const char *content;
} jinja_message;

/* What a render sees. All strings are borrowed for the call. */
typedef struct {
    const jinja_message *messages; /* (n_messages) */
    int n_messages;
    int add_generation_prompt;
    const char *bos_token; /* NULL: "" */
    const char *eos_token; /* NULL: "" */
    const struct tm *now;  /* the clock strftime_now reads; NULL: the real local time */
} jinja_context;

/* Renders `tmpl` (Jinja source) with ctx's variables. On success *out is a new NUL-terminated
 * string the caller frees; on error *out is NULL and err names the template line
 * (RLHF_ERR_FORMAT for syntax, RLHF_ERR_UNSUPPORTED for Jinja this interpreter lacks or a
 * limit reached, RLHF_ERR_INVALID for raise_exception("...") with its message). */
int jinja_render(char **out, const char *tmpl, const jinja_context *ctx, rlhf_error *err);

#endif
