/* store_rollout.c — the stored prompts as the online trainers' user prompts (see
 * store_get_prompt_texts in store.h). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "feedback/store_private.h"

typedef struct {
    char **v;
    size_t n, cap;
    rlhf_error *err;
} texts_ctx;

char *store_last_user_message(const char *messages_json) {
    cJSON *a = messages_json ? cJSON_Parse(messages_json) : NULL, *m;
    char *out = NULL;
    cJSON_ArrayForEach(m, a) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role"), *c = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (cJSON_IsString(role) && strcmp(role->valuestring, "user") == 0 && cJSON_IsString(c)) {
            free(out);
            out = strdup(c->valuestring);
        }
    }
    cJSON_Delete(a);
    return out;
}

static int add_prompt(void *ctx, int64_t id, const char *text, const char *messages_json) {
    (void)id;
    texts_ctx *c = ctx;
    char *t = store_last_user_message(messages_json);
    if (!t && text) t = strdup(text);
    if (!t) return 0;
    int seen = !*t;
    for (size_t i = 0; i < c->n && !seen; i++) seen = strcmp(c->v[i], t) == 0; /* one prompt, several templates */
    if (seen) {
        free(t);
        return 0;
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        char **g = realloc(c->v, cap * sizeof *g);
        if (!g) {
            free(t);
            return rlhf_errorf(c->err, RLHF_ERR_NOMEM, "out of memory reading prompts");
        }
        c->v = g;
        c->cap = cap;
    }
    c->v[c->n++] = t;
    return 0;
}

int store_get_prompt_texts(store *s, char ***out, size_t *n, rlhf_error *err) {
    texts_ctx c = {NULL, 0, 0, err};
    int rc = db_prompts_each(s->d, add_prompt, &c, err);
    if (rc) {
        for (size_t i = 0; i < c.n; i++) free(c.v[i]);
        free(c.v);
        c.v = NULL;
        c.n = 0;
    }
    *out = c.v;
    *n = c.n;
    return rc;
}
