/* pairs_load.c — preference pairs from JSONL or the database (see pairs_load.h). */
#include "repl/pairs_load.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "feedback/store.h"
#include "repl/out.h"
#include "src/core/fileio.h"

/* TRL when the first non-blank line has a "prompt", else HH. */
static int guess_format(const char *path, store_format *fmt) {
    rlhf_error err = {0};
    char *text = NULL;
    size_t len = 0;
    if (file_read_all(path, &text, &len, &err)) return out_fail(&err);
    const char *line = text;
    while (*line == '\n' || *line == '\r' || *line == ' ') line++;
    const char *end = strchr(line, '\n');
    cJSON *first = cJSON_ParseWithLength(line, end ? (size_t)(end - line) : strlen(line));
    *fmt = cJSON_GetObjectItemCaseSensitive(first, "prompt") ? STORE_FORMAT_TRL : STORE_FORMAT_HH;
    cJSON_Delete(first);
    free(text);
    return 0;
}

int pairs_load(const char *data, const char *db, const char *format, pref_dataset *out) {
    store *s = NULL;
    rlhf_error err = {0};
    pref_dataset_init(out);
    store_pref_query q = {0};
    if (data) {
        store_format fmt;
        if (format) {
            if (store_format_parse(format, &fmt, &err) || fmt == STORE_FORMAT_SFT) {
                out_error("--format: expected trl or hh, got '%s'", format);
                return 2;
            }
        } else if (guess_format(data, &fmt)) {
            return 1;
        }
        if (store_open(&s, ":memory:", &err)) return out_fail(&err);
        store_import_params ip = {fmt, 1, "import", 0};
        store_import_report rep = {0};
        if (store_import_jsonl(s, data, &ip, &rep, &err)) {
            for (size_t i = 0; i < rep.n_issues && i < 10; i++)
                if (rep.issues[i].is_error) out_error("%s:%zu: %s", data, rep.issues[i].line, rep.issues[i].reason);
            if (rep.n_issues_total > 10) out_error("... %zu more issues", rep.n_issues_total - 10);
            out_fail(&err);
            store_import_report_free(&rep);
            store_close(&s);
            return 1;
        }
        store_import_report_free(&rep);
        q.include_flagged = 1; /* the user chose this file: its flagged-but-imported records count */
    } else {
        store_open_params op = {1, 0};
        if (store_open_ex(&s, db, &op, &err)) return out_fail(&err);
    }
    int rc = store_get_pref_dataset(s, &q, out, &err);
    store_close(&s);
    if (rc) return out_fail(&err);
    if (out->n == 0) {
        out_error("%s holds no preference pairs (ties and both-bad judgements carry no chosen/rejected)", data ? data : db);
        return 1;
    }
    return 0;
}
