/* tok_test_cases.h — reading the reference encode cases (JSONL lines {"text", "ids"}) shared by
 * the tokenizer tests. */
#ifndef RLHF_TOK_TEST_CASES_H
#define RLHF_TOK_TEST_CASES_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/fileio.h"

typedef struct {
    char *text;
    size_t len;
    int32_t *ids;
    size_t n_ids;
} tok_case;

/* Reads every line of a JSONL file of cases; exits 1 with a message on malformed input. */
static inline tok_case *tok_cases_read(const char *path, size_t *n_cases) {
    char *data;
    size_t len;
    rlhf_error err = {0};
    if (file_read_all(path, &data, &len, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    size_t cap = 512, n = 0;
    tok_case *cases = malloc(cap * sizeof *cases);
    size_t line_no = 0;
    for (char *line = data; line < data + len;) {
        char *nl = memchr(line, '\n', (size_t)(data + len - line));
        size_t l = nl ? (size_t)(nl - line) : (size_t)(data + len - line);
        line_no++;
        if (l > 0) {
            cJSON *o = cJSON_ParseWithLength(line, l);
            cJSON *text = cJSON_GetObjectItemCaseSensitive(o, "text"), *ids = cJSON_GetObjectItemCaseSensitive(o, "ids");
            if (!cJSON_IsString(text) || !cJSON_IsArray(ids)) {
                fprintf(stderr, "%s:%zu: not a {text, ids} case\n", path, line_no);
                exit(1);
            }
            if (n == cap) cases = realloc(cases, (cap *= 2) * sizeof *cases);
            tok_case *c = &cases[n++];
            c->len = strlen(text->valuestring); /* the texts hold no NUL */
            c->text = malloc(c->len + 1);
            memcpy(c->text, text->valuestring, c->len + 1);
            c->n_ids = (size_t)cJSON_GetArraySize(ids);
            c->ids = malloc((c->n_ids + 1) * sizeof *c->ids);
            size_t k = 0;
            const cJSON *v;
            cJSON_ArrayForEach(v, ids) c->ids[k++] = (int32_t)v->valuedouble;
            cJSON_Delete(o);
        }
        line = nl ? nl + 1 : data + len;
    }
    free(data);
    *n_cases = n;
    return cases;
}

static inline void tok_cases_free(tok_case *cases, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(cases[i].text);
        free(cases[i].ids);
    }
    free(cases);
}

#endif
