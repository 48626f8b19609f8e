/* prompt.c — building prompts: text templates with {input}/{output}, few-shot examples, and
 * chat prompts. Chat templates are rendered by the Jinja interpreter in jinja.c; this file only
 * turns the caller's messages into its context (and owns the default HH-RLHF format used when a
 * model has no template). */
#include "src/gen/prompt.h"
#include "src/core/strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

/* ---- text prompts ---- */

void prompt_template_defaults(prompt_template *t) {
    t->instruction = "";
    t->example = "Input: {input}\nOutput: {output}";
    t->separator = "\n\n";
    t->query = "Input: {input}\nOutput:";
}

/* Expands {input}/{output} of one template part. */
static int expand_part(strbuf *b, const char *part, const char *what, const char *input, const char *output,
                       rlhf_error *err) {
    for (const char *p = part; *p;) {
        if (p[0] == '{' && p[1] == '{') {
            strbuf_put(b, "{", 1);
            p += 2;
        } else if (p[0] == '}' && p[1] == '}') {
            strbuf_put(b, "}", 1);
            p += 2;
        } else if (*p == '{') {
            const char *e = strchr(p, '}');
            if (!e) return rlhf_errorf(err, RLHF_ERR_FORMAT, "prompt template %s: unmatched '{'", what);
            size_t n = (size_t)(e - p - 1);
            if (n == 5 && memcmp(p + 1, "input", 5) == 0 && input) strbuf_puts(b, input);
            else if (n == 6 && memcmp(p + 1, "output", 6) == 0 && output) strbuf_puts(b, output);
            else
                return rlhf_errorf(err, RLHF_ERR_FORMAT, "prompt template %s: unknown placeholder {%.*s}", what, (int)n,
                                   p + 1);
            p = e + 1;
        } else if (*p == '}') {
            return rlhf_errorf(err, RLHF_ERR_FORMAT, "prompt template %s: unmatched '}'", what);
        } else {
            strbuf_put(b, p, 1);
            p++;
        }
    }
    return RLHF_OK;
}

int prompt_build(char **out, const prompt_template *t, const prompt_example *ex, int n_ex, const char *input,
                 rlhf_error *err) {
    *out = NULL;
    prompt_template d;
    prompt_template_defaults(&d);
    if (!t) t = &d;
    const char *sep = t->separator ? t->separator : d.separator;
    strbuf b = {0};
    int rc = RLHF_OK, parts = 0;
    if (t->instruction && t->instruction[0]) {
        rc = expand_part(&b, t->instruction, "instruction", NULL, NULL, err);
        parts++;
    }
    for (int i = 0; i < n_ex && !rc; i++) {
        if (parts++) strbuf_puts(&b, sep);
        rc = expand_part(&b, t->example ? t->example : d.example, "example", ex[i].input, ex[i].output, err);
    }
    if (!rc) {
        if (parts++) strbuf_puts(&b, sep);
        rc = expand_part(&b, t->query ? t->query : d.query, "query", input ? input : "", NULL, err);
    }
    if (!rc && b.oom) rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory building a prompt");
    if (rc) {
        free(b.s);
        return rc;
    }
    if (!b.s) strbuf_put(&b, "", 0);
    *out = b.s;
    return RLHF_OK;
}


/* Default format when the model has no template (see prompt.h). */
static int render_default(char **out, const prompt_message *msgs, int n, int add_gen, rlhf_error *err) {
    strbuf b = {0};
    for (int i = 0; i < n; i++) {
        const char *role = msgs[i].role ? msgs[i].role : "user";
        const char *content = msgs[i].content ? msgs[i].content : "";
        if (strcmp(role, "system") == 0) {
            strbuf_puts(&b, content);
        } else if (strcmp(role, "assistant") == 0) {
            strbuf_puts(&b, "\n\nAssistant: ");
            strbuf_puts(&b, content);
        } else if (strcmp(role, "user") == 0) {
            strbuf_puts(&b, "\n\nHuman: ");
            strbuf_puts(&b, content);
        } else {
            free(b.s);
            return rlhf_errorf(err, RLHF_ERR_INVALID, "default chat format: unknown role '%s' (system, user, assistant)", role);
        }
    }
    if (add_gen) strbuf_puts(&b, "\n\nAssistant:");
    if (!b.s) strbuf_put(&b, "", 0);
    if (b.oom) {
        free(b.s);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    }
    *out = b.s;
    return RLHF_OK;
}
int prompt_chat_render(char **out, const char *tmpl, const prompt_message *msgs, int n, int add_gen,
                       const char *bos_token, const char *eos_token, rlhf_error *err) {
    *out = NULL;
    if (!tmpl) return render_default(out, msgs, n, add_gen, err);
    jinja_context ctx = {.messages = msgs, .n_messages = n, .add_generation_prompt = add_gen,
                         .bos_token = bos_token, .eos_token = eos_token, .now = NULL};
    return jinja_render(out, tmpl, &ctx, err);
}

int prompt_chat_fewshot(char **out, const char *tmpl, const char *system, const prompt_example *ex, int n_ex,
                        const char *input, const char *bos_token, const char *eos_token, rlhf_error *err) {
    *out = NULL;
    int n = 0;
    prompt_message *m = malloc((size_t)(2 * n_ex + 2) * sizeof *m);
    if (!m) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    if (system && system[0]) m[n++] = (prompt_message){"system", system};
    for (int i = 0; i < n_ex; i++) {
        m[n++] = (prompt_message){"user", ex[i].input};
        m[n++] = (prompt_message){"assistant", ex[i].output};
    }
    m[n++] = (prompt_message){"user", input};
    int rc = prompt_chat_render(out, tmpl, m, n, 1, bos_token, eos_token, err);
    free(m);
    return rc;
}

/* ---- the whole prompt of a generation ---- */

int prompt_assemble(char **out, int *add_bos, const prompt_request *r, rlhf_error *err) {
    *out = NULL;
    *add_bos = 0;
    int rc;
    if (r->chat) {
        /* system (with examples the instruction stands in for it), each example as a user and an
         * assistant turn, the earlier turns, then the input */
        const char *system = r->few_shot ? (r->system ? r->system : r->instruction) : r->system;
        int has_system = r->few_shot ? system && system[0] : system != NULL;
        int n_ex = r->few_shot ? r->n_examples : 0, n = 0;
        prompt_message *m = malloc((size_t)(2 * n_ex + r->n_history + 2) * sizeof *m);
        if (!m) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
        if (has_system) m[n++] = (prompt_message){"system", system};
        for (int i = 0; i < n_ex; i++) {
            m[n++] = (prompt_message){"user", r->examples[i].input};
            m[n++] = (prompt_message){"assistant", r->examples[i].output};
        }
        for (int i = 0; i < r->n_history; i++) m[n++] = r->history[i];
        m[n++] = (prompt_message){"user", r->input};
        rc = prompt_chat_render(out, r->chat_template, m, n, 1, r->bos_token, r->eos_token, err);
        free(m);
        if (rc) return rlhf_error_prefix(err, "chat template: "), rc;
        *add_bos = !r->chat_template && r->add_bos;
        return RLHF_OK;
    }
    if (r->few_shot) {
        prompt_template t;
        prompt_template_defaults(&t);
        if (r->instruction) t.instruction = r->instruction;
        if ((rc = prompt_build(out, &t, r->examples, r->n_examples, r->input, err))) return rc;
    } else if (!(*out = strdup(r->input))) {
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "prompt: out of memory");
    }
    *add_bos = r->add_bos;
    return RLHF_OK;
}

/* ---- examples from JSONL ---- */

static const char *example_field(const cJSON *o, const char *a, const char *b) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, a);
    if (!v) v = cJSON_GetObjectItemCaseSensitive(o, b);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

void prompt_examples_free(prompt_examples *ex) {
    for (int i = 0; ex->items && i < ex->n; i++) {
        free((char *)ex->items[i].input);
        free((char *)ex->items[i].output);
    }
    free(ex->items);
    ex->items = NULL;
    ex->n = 0;
}

int prompt_examples_read(prompt_examples *ex, const char *path, int max_examples, rlhf_error *err) {
    memset(ex, 0, sizeof *ex);
    FILE *f = fopen(path, "rb");
    if (!f) return rlhf_errorf(err, RLHF_ERR_IO, "%s: cannot open examples file", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, rc = RLHF_OK, ex_cap = 0;
    cJSON *o = NULL;
    while ((max_examples < 0 || ex->n < max_examples) && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t k = strspn(line, " \t\r\n");
        if ((ssize_t)k == len) continue;
        o = cJSON_ParseWithLength(line, (size_t)len);
        if (!cJSON_IsObject(o)) {
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s:%d: not a JSON object", path, lineno);
            goto fail;
        }
        const char *in = example_field(o, "input", "prompt"), *out = example_field(o, "output", "completion");
        if (!in || !out) {
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s:%d: needs string fields \"input\" and \"output\" "
                             "(or \"prompt\" and \"completion\")", path, lineno);
            goto fail;
        }
        if (ex->n == ex_cap) {
            ex_cap = ex_cap ? 2 * ex_cap : 8;
            prompt_example *grown = realloc(ex->items, (size_t)ex_cap * sizeof *grown);
            if (!grown) {
                rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", path);
                goto fail;
            }
            ex->items = grown;
        }
        char *a = strdup(in), *b = strdup(out);
        if (!a || !b) {
            free(a);
            free(b);
            rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        ex->items[ex->n++] = (prompt_example){a, b};
        cJSON_Delete(o);
        o = NULL;
    }
    if (ferror(f)) rc = rlhf_errorf(err, RLHF_ERR_IO, "%s: read error", path);
fail:
    cJSON_Delete(o);
    free(line);
    fclose(f);
    if (rc) prompt_examples_free(ex);
    return rc;
}
