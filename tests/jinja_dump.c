/* jinja_dump.c — renders chat templates through jinja_render for the parity test against
 * python3-jinja2 (tests/jinja_parity.py, reference tests/reference/jinja_render.py).
 *
 *   jinja_dump TEMPLATE_FILE CONTEXT_JSON   prints the rendered text (exit 1 and "error: ..."
 *                                           on stderr when the template refuses)
 *   jinja_dump --batch CASES_JSON           CASES_JSON is [{"template": str, "context": {...}}];
 *                                           prints [{"kind": K, "text": str}, ...], K "ok",
 *                                           "error" or "unsupported" (RLHF_ERR_UNSUPPORTED)
 *
 * A context is {"messages": [{"role","content"}...], "add_generation_prompt": bool,
 * "bos_token": str, "eos_token": str, "now": "YYYY-MM-DD HH:MM:SS", ...} — the same object the
 * reference reads; "now" is strftime_now's clock, so dates agree with the reference. Messages
 * of only string role and content go through jinja_context.messages, others (tool calls, ...)
 * through messages_json; any other member (tools, documents, ...) through vars_json. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "src/gen/jinja.h"

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "jinja_dump: %s: cannot open\n", path);
        exit(2);
    }
    size_t n = 0, cap = 1 << 16;
    char *s = malloc(cap);
    for (size_t k; s && (k = fread(s + n, 1, cap - n - 1, f)) > 0;) {
        n += k;
        if (n + 1 == cap) s = realloc(s, cap *= 2);
    }
    fclose(f);
    if (!s) exit(2);
    s[n] = 0;
    return s;
}

static const char *str_field(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Renders one template with a context object; *out the text or the error message (malloc'd). */
static int render(char **out, const char *tmpl, const cJSON *ctx) {
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(ctx, "messages");
    int n = cJSON_GetArraySize(msgs), plain = 1;
    jinja_message *m = calloc((size_t)(n ? n : 1), sizeof *m);
    for (int i = 0; i < n; i++) {
        const cJSON *x = cJSON_GetArrayItem(msgs, i);
        m[i].role = str_field(x, "role");
        m[i].content = str_field(x, "content");
        plain &= m[i].role && m[i].content && cJSON_GetArraySize(x) == 2;
    }
    cJSON *vars = cJSON_CreateObject();
    const cJSON *it;
    static const char *const known[] = {"messages", "add_generation_prompt", "bos_token", "eos_token", "now"};
    cJSON_ArrayForEach(it, ctx) {
        int k = 0;
        while (k < 5 && strcmp(it->string, known[k])) k++;
        if (k == 5) cJSON_AddItemToObject(vars, it->string, cJSON_Duplicate(it, 1));
    }
    char *messages_json = plain ? NULL : cJSON_PrintUnformatted(msgs);
    char *vars_json = cJSON_GetArraySize(vars) ? cJSON_PrintUnformatted(vars) : NULL;
    cJSON_Delete(vars);
    struct tm now = {0};
    const char *ns = str_field(ctx, "now");
    if (!ns || sscanf(ns, "%d-%d-%d %d:%d:%d", &now.tm_year, &now.tm_mon, &now.tm_mday, &now.tm_hour, &now.tm_min,
                      &now.tm_sec) != 6) {
        fprintf(stderr, "jinja_dump: context needs \"now\": \"YYYY-MM-DD HH:MM:SS\"\n");
        exit(2);
    }
    now.tm_year -= 1900;
    now.tm_mon -= 1;
    time_t t = timegm(&now); /* fills in the weekday and day of the year */
    gmtime_r(&t, &now);
    jinja_context c = {.messages = m, .n_messages = n,
                       .add_generation_prompt = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ctx, "add_generation_prompt")),
                       .bos_token = str_field(ctx, "bos_token"), .eos_token = str_field(ctx, "eos_token"), .now = &now,
                       .messages_json = messages_json, .vars_json = vars_json};
    rlhf_error err = {0};
    int rc = jinja_render(out, tmpl, &c, &err);
    if (rc) *out = strdup(err.msg);
    free(m);
    free(messages_json);
    free(vars_json);
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--batch") == 0) {
        char *text = read_all(argv[2]);
        cJSON *cases = cJSON_Parse(text), *res = cJSON_CreateArray();
        if (!cJSON_IsArray(cases)) {
            fprintf(stderr, "jinja_dump: %s: not a JSON array\n", argv[2]);
            return 2;
        }
        const cJSON *c;
        cJSON_ArrayForEach(c, cases) {
            const char *tmpl = str_field(c, "template");
            char *out = NULL;
            int rc = render(&out, tmpl ? tmpl : "", cJSON_GetObjectItemCaseSensitive(c, "context"));
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "kind", !rc ? "ok" : rc == RLHF_ERR_UNSUPPORTED ? "unsupported" : "error");
            cJSON_AddStringToObject(r, "text", out);
            cJSON_AddItemToArray(res, r);
            free(out);
        }
        char *s = cJSON_PrintUnformatted(res);
        fputs(s, stdout);
        free(s);
        cJSON_Delete(res);
        cJSON_Delete(cases);
        free(text);
        return 0;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: jinja_dump TEMPLATE_FILE CONTEXT_JSON | jinja_dump --batch CASES_JSON\n");
        return 2;
    }
    char *tmpl = read_all(argv[1]), *ctext = read_all(argv[2]), *out = NULL;
    cJSON *ctx = cJSON_Parse(ctext);
    if (!cJSON_IsObject(ctx)) {
        fprintf(stderr, "jinja_dump: %s: not a JSON object\n", argv[2]);
        return 2;
    }
    int rc = render(&out, tmpl, ctx);
    if (rc) fprintf(stderr, "error: %s\n", out);
    else fputs(out, stdout);
    free(out);
    cJSON_Delete(ctx);
    free(tmpl);
    free(ctext);
    return rc ? 1 : 0;
}
