/* jinja.h — a Jinja interpreter for the chat templates Hugging Face keeps in
 * tokenizer_config.json ("chat_template"), rendering them as transformers' apply_chat_template
 * does (a sandboxed environment with trim_blocks and lstrip_blocks).
 *
 * How the pieces fit: jinja_render lexes the template (whitespace control, trim_blocks and
 * lstrip_blocks are applied there), parses it into statement and expression trees, and walks
 * them with the variables of a jinja_context; everything a render allocates lives in one arena
 * freed when it returns. prompt.c builds its chat prompts on this.
 *
 * The subset (what real models' templates use; tests/jinja_parity.py compares whole templates
 * with python3-jinja2): text, {{ }} expressions, {% if/elif/else %}, {% for %} (with loop.index/
 * index0/first/last/length/revindex/previtem/nextitem, tuple unpacking, `if` filters, `else`,
 * {% break %}/{% continue %}), {% set %} (also namespace attributes and block {% set x %}...
 * {% endset %}), {% macro %} (defaults, keyword arguments, varargs/kwargs, recursion),
 * {% call %} blocks with caller(), {% generation %} (renders its body), {% raw %}, comments, whitespace
 * control (-/+), Jinja's newline handling (\r\n read as \n, one final newline dropped);
 * expressions with literals, lists, tuples, dicts, attribute/index/slice access (x.0 too),
 * + - * / (also //) % ** ~, comparisons, and/or/not, in, `x if c else y`, calls with *args and **kwargs,
 * jinja2's tests (defined, none, string, number, mapping, iterable, sequence, callable, eq, gt,
 * in, ...), filters (trim, length, upper, lower, capitalize, title, default, first, last, join,
 * replace, tojson as transformers defines it, string, int, float, list, reverse, indent, items,
 * map, select/reject, selectattr/rejectattr, sort, unique, min, max, sum, abs) and the global
 * functions (raise_exception, range, namespace, dict, strftime_now), str methods (strip/lstrip/rstrip/split/startswith/endswith/
 * upper/lower/replace/...) and dict methods (items/keys/values/get). None is not iterable and
 * printing shows Python's str()/repr(), as in jinja2. {% include %}, {% import %}, {% extends %},
 * {% filter %} and other constructs are refused with a message naming them and the line.
 *
 * Templates come from untrusted model files, so rendering is bounded: nesting deeper than 256
 * (1000 at run time, where macros recurse), values nested deeper than 64, strings or output over 16 MiB, more than 2 million evaluation
 * steps and integer overflow are refused with an error naming the line, never a crash or hang.
 * The variables a template sees: messages (list of {role, content}), add_generation_prompt,
 * bos_token, eos_token, and tools and documents (None, as transformers passes them when the
 * caller has none). */
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
    /* Optional JSON, for conversations and variables beyond role/content (tool calls, tools,
     * documents, enable_thinking, ...). NULL: not used. */
    const char *messages_json; /* an array of message objects, used instead of messages */
    const char *vars_json;     /* an object whose members are more variables (after the others,
                                  so they can replace tools/documents or any other) */
} jinja_context;

/* Renders `tmpl` (Jinja source) with ctx's variables. On success *out is a new NUL-terminated
 * string the caller frees; on error *out is NULL and err names the template line
 * (RLHF_ERR_FORMAT for syntax, RLHF_ERR_UNSUPPORTED for Jinja this interpreter lacks or a
 * limit reached, RLHF_ERR_INVALID for raise_exception("...") with its message). */
int jinja_render(char **out, const char *tmpl, const jinja_context *ctx, rlhf_error *err);

#endif
