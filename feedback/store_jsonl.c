/* store_jsonl.c — importing and exporting JSONL: TRL preferences, Anthropic HH dialogues, SFT.
 *
 * Import reads one line at a time (a line longer than the limit is skipped without being held
 * in memory), checks it is UTF-8, parses it with cJSON, turns it into a record (prompt and two
 * sides, or prompt and completion) and stores that record under a savepoint inside one
 * transaction for the whole file: a record is stored whole or not at all, a bad line is
 * reported with its number and reason, and --strict (or a file with no good line) rolls
 * everything back, leaving the database exactly as it was.
 *
 * Round trips: an HH dialogue is split at its last "\n\nAssistant:"; the prompt keeps the
 * marker and each reply keeps everything after it (leading space included), so prompt + reply
 * is the original string and export rebuilds each record exactly. Chat-form records keep their
 * message lists as JSON (prompts.messages_json, generations.messages_json), so TRL and SFT
 * exports give back the same JSON values. */
#include "feedback/store_private.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "feedback/pair_check.h"
#include "feedback/redact.h"

#define IMPORT_MAX_ISSUES 1000
#define IMPORT_DEFAULT_MAX_LINE ((size_t)4 << 20)
#define HH_MARKER "\n\nAssistant:"

static const char *const k_format_names[] = {"trl", "hh", "sft"};

int store_format_parse(const char *name, store_format *out, rlhf_error *err) {
    for (int i = 0; i < 3; i++)
        if (name && strcmp(name, k_format_names[i]) == 0) {
            *out = (store_format)i;
            return 0;
        }
    return rlhf_errorf(err, RLHF_ERR_INVALID, "unknown format \"%s\" (use trl, hh or sft)", name ? name : "");
}

const char *store_format_name(store_format f) {
    return (unsigned)f < 3 ? k_format_names[f] : "?";
}

/* ---- chat messages ---- */

static const char *role_label(const char *role) {
    if (strcmp(role, "user") == 0 || strcmp(role, "human") == 0) return "Human";
    if (strcmp(role, "assistant") == 0 || strcmp(role, "gpt") == 0) return "Assistant";
    if (strcmp(role, "system") == 0) return "System";
    return role;
}

char *store_render_messages(const void *cjson_array, int open_turn) {
    const cJSON *arr = cjson_array;
    size_t size = 1 + (open_turn ? strlen(HH_MARKER) : 0);
    const cJSON *m;
    cJSON_ArrayForEach(m, arr) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsString(role) || !cJSON_IsString(content)) return NULL;
        size += 4 + strlen(role_label(role->valuestring)) + 2 + strlen(content->valuestring);
    }
    char *out = malloc(size), *p = out;
    if (!out) return NULL;
    cJSON_ArrayForEach(m, arr) {
        const char *role = role_label(cJSON_GetObjectItemCaseSensitive(m, "role")->valuestring);
        const char *content = cJSON_GetObjectItemCaseSensitive(m, "content")->valuestring;
        p += sprintf(p, "\n\n%s: %s", role, content);
    }
    if (open_turn) p += sprintf(p, "%s", HH_MARKER);
    *p = '\0';
    return out;
}

/* ---- reading lines ---- */

typedef struct {
    FILE *fp;
    char *buf;
    size_t cap;
} line_reader;

/* Reads one line without its "\n" (or "\r\n"). Returns 1 with a line, 0 at the end of the
 * file, RLHF_ERR_IO or RLHF_ERR_NOMEM. A line longer than max is read to its end but not kept
 * (*too_long = 1); *total is its length either way. */
static int read_line(line_reader *r, size_t max, size_t *len, size_t *total, int *too_long,
                     int *has_nul) {
    size_t n = 0, all = 0;
    int c;
    *too_long = *has_nul = 0;
    while ((c = getc_unlocked(r->fp)) != EOF && c != '\n') {
        all++;
        if (c == 0) *has_nul = 1;
        if (all > max) {
            *too_long = 1;
            continue;
        }
        if (n + 2 > r->cap) {
            size_t cap = r->cap ? r->cap * 2 : 4096;
            char *p = realloc(r->buf, cap);
            if (!p) return RLHF_ERR_NOMEM;
            r->buf = p;
            r->cap = cap;
        }
        r->buf[n++] = (char)c;
    }
    if (c == EOF && ferror(r->fp)) return RLHF_ERR_IO;
    if (c == EOF && all == 0) return 0;
    if (!r->buf) {
        if (!(r->buf = malloc(4096))) return RLHF_ERR_NOMEM;
        r->cap = 4096;
    }
    if (!*too_long && n && r->buf[n - 1] == '\r') n--;
    r->buf[*too_long ? 0 : n] = '\0';
    *len = *too_long ? 0 : n;
    *total = all;
    return 1;
}

/* Offset of the first byte that is not valid UTF-8 (overlong forms, surrogates and code
 * points above U+10FFFF are invalid), or n if all is well. */
static size_t utf8_invalid_at(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c == 0xE0) need = 2, lo = 0xA0;
        else if (c == 0xED) need = 2, hi = 0x9F;
        else if (c >= 0xE1 && c <= 0xEF) need = 2;
        else if (c == 0xF0) need = 3, lo = 0x90;
        else if (c >= 0xF1 && c <= 0xF3) need = 3;
        else if (c == 0xF4) need = 3, hi = 0x8F;
        else return i;
        if (i + need >= n) return i; /* truncated sequence */
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k <= need; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return i;
        i += need + 1;
    }
    return n;
}

/* 1 if a JSON string in the line contains the escape \u0000, which cJSON would silently cut
 * the string at. */
static int has_nul_escape(const char *s, size_t n) {
    int in_string = 0;
    for (size_t i = 0; i < n; i++) {
        if (!in_string) {
            if (s[i] == '"') in_string = 1;
            continue;
        }
        if (s[i] == '"') in_string = 0;
        else if (s[i] == '\\' && i + 1 < n) {
            if (s[i + 1] == 'u' && i + 5 < n && strncmp(s + i + 2, "0000", 4) == 0) return 1;
            i++;
        }
    }
    return 0;
}

static const char *json_type_name(const cJSON *v) {
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsArray(v)) return "a list";
    if (cJSON_IsObject(v)) return "an object";
    return "invalid";
}

/* ---- records ---- */

typedef struct {
    char *text;     /* owned */
    char *messages; /* owned JSON array text, or NULL for a plain string */
} side;

typedef struct {
    side prompt, a, b; /* a, b: chosen, rejected; or a = completion */
    const char *layout;
} record;

static void side_free(side *s) {
    free(s->text);
    free(s->messages);
    s->text = s->messages = NULL;
}

static void record_free(record *r) {
    side_free(&r->prompt);
    side_free(&r->a);
    side_free(&r->b);
}

static int why(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int why(char *buf, size_t size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return -1;
}

static int check_messages(const cJSON *arr, const char *field, char *reason, size_t size) {
    int n = cJSON_GetArraySize(arr);
    if (n == 0) return why(reason, size, "field \"%s\" is an empty list of messages", field);
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, arr) {
        if (!cJSON_IsObject(m))
            return why(reason, size, "\"%s\"[%d] is %s, expected a {\"role\", \"content\"} message", field, i,
                       json_type_name(m));
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!role) return why(reason, size, "\"%s\"[%d] has no \"role\"", field, i);
        if (!cJSON_IsString(role))
            return why(reason, size, "\"%s\"[%d].role must be a string, got %s", field, i, json_type_name(role));
        if (!content) return why(reason, size, "\"%s\"[%d] has no \"content\"", field, i);
        if (!cJSON_IsString(content))
            return why(reason, size, "\"%s\"[%d].content must be a string, got %s", field, i, json_type_name(content));
        i++;
    }
    return 0;
}

/* Reads a string-or-messages field into a side. For a prompt, a message list's text is the
 * rendered dialogue with an open assistant turn; for a response, the content of its single
 * message (or the rendered messages if there are several). */
static int read_side(const cJSON *obj, const char *field, int is_prompt, side *out, char *reason,
                     size_t size) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, field);
    if (!v) return why(reason, size, "missing field \"%s\"", field);
    if (cJSON_IsString(v)) {
        out->text = strdup(v->valuestring);
        return out->text ? 0 : why(reason, size, "out of memory");
    }
    if (!cJSON_IsArray(v))
        return why(reason, size, "field \"%s\" must be a string or a list of {\"role\", \"content\"} messages, got %s",
                   field, json_type_name(v));
    if (check_messages(v, field, reason, size)) return -1;
    out->messages = cJSON_PrintUnformatted(v);
    if (!is_prompt && cJSON_GetArraySize(v) == 1)
        out->text = strdup(cJSON_GetObjectItemCaseSensitive(v->child, "content")->valuestring);
    else
        out->text = store_render_messages(v, is_prompt);
    return out->messages && out->text ? 0 : why(reason, size, "out of memory");
}

static int same_form(const side *x, const side *y) { return (x->messages != NULL) == (y->messages != NULL); }

static int parse_trl(const cJSON *obj, record *r, char *reason, size_t size) {
    if (read_side(obj, "prompt", 1, &r->prompt, reason, size) ||
        read_side(obj, "chosen", 0, &r->a, reason, size) ||
        read_side(obj, "rejected", 0, &r->b, reason, size))
        return -1;
    if (!same_form(&r->prompt, &r->a) || !same_form(&r->prompt, &r->b))
        return why(reason, size, "mixes plain strings and message lists; use one form for prompt, chosen and rejected");
    return 0;
}

/* Splits an HH record: prompt = the dialogue both sides share, through the last
 * "\n\nAssistant:" that lies inside their common prefix; the replies are what follows. Taking
 * each side's own last marker is wrong when a reply itself carries "\n\nAssistant:" (a model
 * writing the next turns): about 1 record in 400 of the real data. Such a reply is flagged by
 * pair_check (template text), not refused. */
static int parse_hh(const cJSON *obj, record *r, char *reason, size_t size) {
    const char *names[2] = {"chosen", "rejected"};
    const char *texts[2];
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, names[i]);
        if (!v) return why(reason, size, "missing field \"%s\"", names[i]);
        if (!cJSON_IsString(v))
            return why(reason, size, "field \"%s\" must be a string (a whole \"\\n\\nHuman: ... \\n\\nAssistant: ...\" dialogue), got %s",
                       names[i], json_type_name(v));
        texts[i] = v->valuestring;
        if (!strstr(texts[i], HH_MARKER))
            return why(reason, size, "\"%s\" has no \"\\n\\nAssistant:\" turn to split at", names[i]);
    }
    size_t common = 0;
    while (texts[0][common] && texts[0][common] == texts[1][common]) common++;
    /* identical dialogues: both replies are the text after the last marker */
    const char *cut = NULL;
    size_t mlen = strlen(HH_MARKER);
    for (const char *p = strstr(texts[0], HH_MARKER); p && (size_t)(p - texts[0]) + mlen <= common;
         p = strstr(p + 1, HH_MARKER))
        cut = p + mlen;
    if (!cut)
        return why(reason, size, "\"chosen\" and \"rejected\" share no dialogue through a \"\\n\\nAssistant:\" turn (they differ from byte %zu)",
                   common);
    size_t len = (size_t)(cut - texts[0]);
    r->prompt.text = strndup(texts[0], len);
    r->a.text = strdup(texts[0] + len);
    r->b.text = strdup(texts[1] + len);
    return r->prompt.text && r->a.text && r->b.text ? 0 : why(reason, size, "out of memory");
}

static int parse_sft(const cJSON *obj, record *r, char *reason, size_t size) {
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(obj, "messages");
    if (messages) {
        if (cJSON_GetObjectItemCaseSensitive(obj, "prompt") || cJSON_GetObjectItemCaseSensitive(obj, "completion"))
            return why(reason, size, "has both \"messages\" and \"prompt\"/\"completion\"; use one form");
        if (!cJSON_IsArray(messages))
            return why(reason, size, "field \"messages\" must be a list of {\"role\", \"content\"} messages, got %s",
                       json_type_name(messages));
        if (check_messages(messages, "messages", reason, size)) return -1;
        int n = cJSON_GetArraySize(messages);
        if (n < 2) return why(reason, size, "\"messages\" needs at least a prompt message and the assistant's reply");
        const cJSON *last = cJSON_GetArrayItem(messages, n - 1);
        const char *role = cJSON_GetObjectItemCaseSensitive(last, "role")->valuestring;
        if (strcmp(role, "assistant") != 0)
            return why(reason, size, "the last message must be the assistant's reply to learn (it is \"%s\")", role);
        cJSON *prompt = cJSON_Duplicate(messages, 1), *reply = cJSON_CreateArray();
        if (prompt) cJSON_DeleteItemFromArray(prompt, n - 1);
        if (reply) cJSON_AddItemToArray(reply, cJSON_Duplicate(last, 1));
        r->prompt.messages = prompt ? cJSON_PrintUnformatted(prompt) : NULL;
        r->prompt.text = prompt ? store_render_messages(prompt, 1) : NULL;
        r->a.messages = reply ? cJSON_PrintUnformatted(reply) : NULL;
        r->a.text = strdup(cJSON_GetObjectItemCaseSensitive(last, "content")->valuestring);
        cJSON_Delete(prompt);
        cJSON_Delete(reply);
        r->layout = "messages";
        return r->prompt.messages && r->prompt.text && r->a.messages && r->a.text ? 0 : why(reason, size, "out of memory");
    }
    if (!cJSON_GetObjectItemCaseSensitive(obj, "prompt") && !cJSON_GetObjectItemCaseSensitive(obj, "completion"))
        return why(reason, size, "missing fields: an SFT record has \"prompt\" and \"completion\", or \"messages\"");
    if (read_side(obj, "prompt", 1, &r->prompt, reason, size) ||
        read_side(obj, "completion", 0, &r->a, reason, size))
        return -1;
    if (!same_form(&r->prompt, &r->a))
        return why(reason, size, "mixes a plain string and a message list; use one form for prompt and completion");
    r->layout = "prompt_completion";
    return 0;
}

/* ---- import ---- */

typedef struct {
    store *s;
    store_import_report *rep;
    const store_import_params *params;
    int64_t annotator_id, import_id;
} importer;

static void add_issue(store_import_report *rep, size_t line, int is_error, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add_issue(store_import_report *rep, size_t line, int is_error, const char *fmt, ...) {
    rep->n_issues_total++;
    if (rep->n_issues >= IMPORT_MAX_ISSUES) return;
    if (rep->n_issues % 64 == 0) {
        store_import_issue *p = realloc(rep->issues, (rep->n_issues + 64) * sizeof *p);
        if (!p) return; /* the count above still says how many there were */
        rep->issues = p;
    }
    store_import_issue *is = &rep->issues[rep->n_issues++];
    is->line = line;
    is->is_error = is_error;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(is->reason, sizeof is->reason, fmt, ap);
    va_end(ap);
}

/* Find-or-add an imported generation (the same text of the same prompt is one row). */
static int import_generation(importer *im, int64_t prompt_id, const side *sd, int64_t *id,
                             rlhf_error *err) {
    db_generation_row row = {
        .prompt_id = prompt_id, .origin = "import", .text = sd->text, .messages_json = sd->messages,
        .n_tokens = -1, .logprob = NAN, .latency_ms = NAN, .import_id = im->import_id,
    };
    int rc = db_generation_find(im->s->d, &row, id, err);
    if (rc == 0 && *id == 0) rc = db_generation_insert(im->s->d, &row, id, err);
    return rc;
}

/* Stores one parsed record under a savepoint (all of it or none); a flagged record is
 * reported as a warning. */
static int store_record(importer *im, size_t line_no, const record *r, rlhf_error *err) {
    char reason[512] = "", flags[256] = "";
    int64_t prompt_id = 0;
    store_prompt p = {.text = r->prompt.text, .messages_json = r->prompt.messages};
    int rc = db_savepoint(im->s->d, err);
    if (rc) return rc;
    if ((rc = store_prompt_id_tx(im->s, &p, &prompt_id, err))) goto fail;
    if (im->params->format == STORE_FORMAT_SFT) {
        pair_check_text(r->a.text, "the completion", "completion", reason, sizeof reason, flags, sizeof flags);
        db_generation_row row = {
            .prompt_id = prompt_id, .origin = "demo", .text = r->a.text, .messages_json = r->a.messages,
            .record_layout = r->layout, .n_tokens = -1, .logprob = NAN, .latency_ms = NAN,
            .import_id = im->import_id,
        };
        int64_t existing = 0, id = 0;
        if ((rc = db_generation_find(im->s->d, &row, &existing, err))) goto fail;
        if (existing) {
            char msg[120];
            snprintf(msg, sizeof msg, "duplicate of demonstration #%lld", (long long)existing);
            strncat(reason, reason[0] ? "; " : "", sizeof reason - strlen(reason) - 1);
            strncat(reason, msg, sizeof reason - strlen(reason) - 1);
            strncat(flags, flags[0] ? ",duplicate" : "duplicate", sizeof flags - strlen(flags) - 1);
        }
        row.flags = flags[0] ? flags : NULL;
        if ((rc = db_generation_insert(im->s->d, &row, &id, err))) goto fail;
    } else {
        int64_t chosen = 0, rejected = 0, existing = 0;
        if ((rc = import_generation(im, prompt_id, &r->a, &chosen, err)) ||
            (rc = import_generation(im, prompt_id, &r->b, &rejected, err)))
            goto fail;
        pair_check_text(r->a.text, "the chosen response", "chosen", reason, sizeof reason, flags, sizeof flags);
        pair_check_text(r->b.text, "the rejected response", "rejected", reason, sizeof reason, flags, sizeof flags);
        if ((rc = db_pair_find_direct(im->s->d, im->annotator_id, chosen, rejected, &existing, err))) goto fail;
        if (existing) {
            char msg[120];
            snprintf(msg, sizeof msg, "duplicate of pair #%lld", (long long)existing);
            strncat(reason, reason[0] ? "; " : "", sizeof reason - strlen(reason) - 1);
            strncat(reason, msg, sizeof reason - strlen(reason) - 1);
            strncat(flags, flags[0] ? ",duplicate" : "duplicate", sizeof flags - strlen(flags) - 1);
        }
        db_pair_row row = {
            .prompt_id = prompt_id, .chosen_id = chosen, .rejected_id = rejected, .verdict = "better",
            .margin = 1.0, .weight = 1.0, .annotator_id = im->annotator_id, .import_id = im->import_id,
            .flags = flags[0] ? flags : NULL,
        };
        if ((rc = db_pair_insert(im->s->d, &row, NULL, err))) goto fail;
    }
    if ((rc = db_release(im->s->d, err))) goto fail;
    im->rep->n_records++;
    if (flags[0]) {
        im->rep->n_flagged++;
        add_issue(im->rep, line_no, 0, "stored flagged (%s): %s", flags, reason);
    }
    return 0;
fail:
    db_rollback_to(im->s->d);
    rlhf_error_prefix(err, "line %zu: ", line_no);
    return rc;
}

/* A short excerpt of the line at byte `at`, for "bad JSON near ..." (whole UTF-8 characters,
 * control characters as spaces). */
static void excerpt(const char *line, size_t len, size_t at, char *out, size_t size) {
    size_t n = 0;
    if (at > len) at = len;
    while (at > 0 && ((unsigned char)line[at] & 0xC0) == 0x80) at--;
    for (size_t i = at; i < len && n + 1 < size && n < 24; i++) {
        unsigned char c = (unsigned char)line[i];
        out[n++] = c < 0x20 ? ' ' : (char)c;
    }
    while (n > 0 && ((unsigned char)out[n - 1] & 0xC0) == 0x80) n--; /* no cut character */
    if (n > 0 && ((unsigned char)out[n - 1] & 0xC0) == 0xC0) n--;
    out[n] = '\0';
}

/* Checks, parses and stores one line; a bad line is reported and skipped. Returns a negative
 * code only for failures of the database itself, which stop the import. */
static int import_line(importer *im, size_t line_no, const char *line, size_t len, rlhf_error *err) {
    store_import_report *rep = im->rep;
    size_t bad_at = utf8_invalid_at((const unsigned char *)line, len);
    if (bad_at < len) {
        rep->n_bad++;
        add_issue(rep, line_no, 1, "invalid UTF-8 at byte %zu (0x%02x)", bad_at + 1, (unsigned char)line[bad_at]);
        return 0;
    }
    if (has_nul_escape(line, len)) {
        rep->n_bad++;
        add_issue(rep, line_no, 1, "a string contains the NUL character \\u0000, which text fields cannot hold");
        return 0;
    }
    const char *end = NULL;
    cJSON *obj = cJSON_ParseWithLengthOpts(line, len, &end, 0);
    if (!obj) {
        size_t at = end && end >= line ? (size_t)(end - line) : 0;
        char near[64];
        excerpt(line, len, at, near, sizeof near);
        rep->n_bad++;
        if (at >= len) add_issue(rep, line_no, 1, "bad JSON: the line ends inside a value (truncated?)");
        else add_issue(rep, line_no, 1, "bad JSON at byte %zu near \"%s\"", at + 1, near);
        return 0;
    }
    size_t rest = end ? (size_t)(end - line) : len;
    while (rest < len && (line[rest] == ' ' || line[rest] == '\t')) rest++;
    if (rest < len) {
        rep->n_bad++;
        add_issue(rep, line_no, 1, "bad JSON: extra text after the value at byte %zu (one record per line)", rest + 1);
        cJSON_Delete(obj);
        return 0;
    }
    if (!cJSON_IsObject(obj)) {
        rep->n_bad++;
        add_issue(rep, line_no, 1, "expected a JSON object, got %s", json_type_name(obj));
        cJSON_Delete(obj);
        return 0;
    }
    /* cJSON keeps both copies of a repeated key; say so rather than pick one silently */
    for (const cJSON *a = obj->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (a->string && b->string && strcmp(a->string, b->string) == 0) {
                rep->n_bad++;
                add_issue(rep, line_no, 1, "field \"%s\" appears twice", a->string);
                cJSON_Delete(obj);
                return 0;
            }
    record r = {{NULL, NULL}, {NULL, NULL}, {NULL, NULL}, NULL};
    char reason[240];
    int parsed = im->params->format == STORE_FORMAT_TRL ? parse_trl(obj, &r, reason, sizeof reason)
                 : im->params->format == STORE_FORMAT_HH ? parse_hh(obj, &r, reason, sizeof reason)
                                                         : parse_sft(obj, &r, reason, sizeof reason);
    cJSON_Delete(obj);
    int rc = 0;
    if (parsed != 0) {
        rep->n_bad++;
        add_issue(rep, line_no, 1, "%s", reason);
    } else if (im->params->format != STORE_FORMAT_SFT && strcmp(r.a.text, r.b.text) == 0) {
        rep->n_bad++;
        add_issue(rep, line_no, 1, "chosen and rejected are identical; a preference between them teaches nothing");
    } else {
        rc = store_record(im, line_no, &r, err);
    }
    record_free(&r);
    return rc;
}

int store_import_jsonl(store *s, const char *path, const store_import_params *params,
                       store_import_report *rep, rlhf_error *err) {
    memset(rep, 0, sizeof *rep);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    store_import_params defaults = {STORE_FORMAT_TRL, 0, NULL, 0};
    if (!params) params = &defaults;
    if ((unsigned)params->format > STORE_FORMAT_SFT)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "import: unknown format %d", (int)params->format);
    size_t max_line = params->max_line_bytes ? params->max_line_bytes : IMPORT_DEFAULT_MAX_LINE;
    int from_stdin = strcmp(path, "-") == 0;
    FILE *fp = from_stdin ? stdin : fopen(path, "rb");
    if (!fp) return rlhf_errorf(err, RLHF_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    line_reader lr = {fp, NULL, 0};
    importer im = {s, rep, params, 0, 0};
    int rc = db_begin(s->d, err);
    if (rc) goto done;
    if ((rc = store_annotator_id_tx(s, params->annotator ? params->annotator : "import", &im.annotator_id, err)) ||
        (rc = db_import_insert(s->d, store_format_name(params->format), path, im.annotator_id, &im.import_id, err)))
        goto done;
    for (;;) {
        size_t len = 0, total = 0;
        int too_long = 0, has_nul = 0;
        int got = read_line(&lr, max_line, &len, &total, &too_long, &has_nul);
        if (got == 0) break;
        if (got < 0) {
            rc = got == RLHF_ERR_NOMEM ? rlhf_errorf(err, got, "%s: line %zu: out of memory", path, rep->n_lines + 1)
                                       : rlhf_errorf(err, got, "reading %s failed at line %zu: %s", path, rep->n_lines + 1, strerror(errno));
            goto done;
        }
        size_t line_no = ++rep->n_lines;
        if (too_long) {
            rep->n_bad++;
            add_issue(rep, line_no, 1, "line is %zu bytes, longer than the %zu-byte limit", total, max_line);
            continue;
        }
        if (has_nul) {
            rep->n_bad++;
            add_issue(rep, line_no, 1, "the line contains a NUL byte (binary data, not JSONL)");
            continue;
        }
        size_t k = 0;
        while (k < len && (lr.buf[k] == ' ' || lr.buf[k] == '\t')) k++;
        if (k == len) {
            rep->n_blank++;
            continue;
        }
        if ((rc = import_line(&im, line_no, lr.buf, len, err))) goto done;
    }
    if (rep->n_lines == 0) {
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s is empty: no records to import", path);
    } else if (rep->n_records == 0) {
        rc = rep->n_bad ? rlhf_errorf(err, RLHF_ERR_FORMAT, "no valid record in %s (%zu bad line%s); nothing imported",
                                      path, rep->n_bad, rep->n_bad == 1 ? "" : "s")
                        : rlhf_errorf(err, RLHF_ERR_FORMAT, "%s has only blank lines: no records to import", path);
    } else if (params->strict && rep->n_bad) {
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%zu bad line%s in %s; nothing imported (strict)", rep->n_bad,
                         rep->n_bad == 1 ? "" : "s", path);
    } else {
        rc = db_import_finish(s->d, im.import_id, (int64_t)rep->n_records, (int64_t)rep->n_bad,
                              (int64_t)rep->n_flagged, err);
        if (!rc) rc = db_commit(s->d, err);
        if (!rc) rep->import_id = im.import_id;
    }
done:
    if (rc) {
        db_rollback(s->d);
        rep->n_records = 0; /* nothing of it stayed */
        rep->n_flagged = 0;
    }
    free(lr.buf);
    if (!from_stdin) fclose(fp);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    rep->seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    return rc;
}

void store_import_report_free(store_import_report *r) {
    if (!r) return;
    free(r->issues);
    memset(r, 0, sizeof *r);
}

/* ---- export ---- */

typedef struct {
    store *s;
    FILE *fp;
    const store_export_params *params;
    store_export_report *rep;
    rlhf_error *err;
} exporter;

/* Masks identifiers in every string of a JSON value (in place). */
static int redact_json(cJSON *v, size_t *n_masked) {
    if (cJSON_IsString(v)) {
        char *r = redact_text(v->valuestring, n_masked);
        if (!r) return RLHF_ERR_NOMEM;
        char *set = cJSON_SetValuestring(v, r);
        free(r);
        return set ? 0 : RLHF_ERR_NOMEM;
    }
    for (cJSON *c = v->child; c; c = c->next)
        if (redact_json(c, n_masked)) return RLHF_ERR_NOMEM;
    return 0;
}

/* Writes one object as a line (after redaction if asked); takes ownership of obj. */
static int write_record(exporter *ex, cJSON *obj) {
    if (!obj) return rlhf_errorf(ex->err, RLHF_ERR_NOMEM, "export: out of memory");
    if (ex->params->redact && redact_json(obj, &ex->rep->n_redacted)) {
        cJSON_Delete(obj);
        return rlhf_errorf(ex->err, RLHF_ERR_NOMEM, "export: out of memory");
    }
    char *line = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (!line) return rlhf_errorf(ex->err, RLHF_ERR_NOMEM, "export: out of memory");
    int bad = fputs(line, ex->fp) == EOF || fputc('\n', ex->fp) == EOF;
    free(line);
    if (bad) return rlhf_errorf(ex->err, RLHF_ERR_IO, "export: write failed: %s", strerror(errno));
    ex->rep->n_written++;
    return 0;
}

/* A response as a message list: its stored list, or one assistant message. */
static cJSON *response_messages(const char *messages_json, const char *text) {
    if (messages_json) return cJSON_Parse(messages_json);
    cJSON *arr = cJSON_CreateArray(), *m = cJSON_CreateObject();
    if (!arr || !m) {
        cJSON_Delete(arr);
        cJSON_Delete(m);
        return NULL;
    }
    cJSON_AddStringToObject(m, "role", "assistant");
    cJSON_AddStringToObject(m, "content", text ? text : "");
    cJSON_AddItemToArray(arr, m);
    return arr;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

/* prompt + reply as one HH dialogue string (malloc'd). */
static char *hh_dialogue(const char *prompt_hh, int wrap, const char *reply) {
    const char *space = reply[0] == ' ' || reply[0] == '\n' || reply[0] == '\0' ? "" : " ";
    if (!wrap) space = "";
    size_t n = strlen(prompt_hh) + strlen(space) + strlen(reply) + 1;
    char *out = malloc(n);
    if (out) snprintf(out, n, "%s%s%s", prompt_hh, space, reply);
    return out;
}

static int export_pair(void *ctx, const db_pair_view *v) {
    exporter *ex = ctx;
    if (strcmp(v->row.verdict, "better") != 0 || (v->row.flags && ex->params->skip_flagged)) {
        ex->rep->n_skipped++;
        return 0;
    }
    cJSON *obj = cJSON_CreateObject();
    if (!obj) return rlhf_errorf(ex->err, RLHF_ERR_NOMEM, "export: out of memory");
    if (ex->params->format == STORE_FORMAT_TRL) {
        if (v->prompt_messages_json) {
            cJSON_AddItemToObject(obj, "prompt", cJSON_Parse(v->prompt_messages_json));
            cJSON_AddItemToObject(obj, "chosen", response_messages(v->chosen_messages_json, v->chosen_text));
            cJSON_AddItemToObject(obj, "rejected", response_messages(v->rejected_messages_json, v->rejected_text));
        } else {
            cJSON_AddStringToObject(obj, "prompt", v->prompt_text);
            cJSON_AddStringToObject(obj, "chosen", v->chosen_text);
            cJSON_AddStringToObject(obj, "rejected", v->rejected_text);
        }
    } else {
        /* HH: an imported HH prompt ends with the marker and its replies keep their leading
         * space, so concatenation is exact; other prompts are wrapped as one Human turn. */
        char *prompt_hh = NULL;
        int wrap = 1;
        if (v->prompt_messages_json) {
            cJSON *msgs = cJSON_Parse(v->prompt_messages_json);
            prompt_hh = msgs ? store_render_messages(msgs, 1) : NULL;
            cJSON_Delete(msgs);
        } else if (ends_with(v->prompt_text, HH_MARKER)) {
            prompt_hh = strdup(v->prompt_text);
            wrap = 0;
        } else {
            size_t n = strlen(v->prompt_text) + 32;
            if ((prompt_hh = malloc(n))) snprintf(prompt_hh, n, "\n\nHuman: %s%s", v->prompt_text, HH_MARKER);
        }
        char *c = prompt_hh ? hh_dialogue(prompt_hh, wrap, v->chosen_text) : NULL;
        char *r = prompt_hh ? hh_dialogue(prompt_hh, wrap, v->rejected_text) : NULL;
        if (c && r) {
            cJSON_AddStringToObject(obj, "chosen", c);
            cJSON_AddStringToObject(obj, "rejected", r);
        }
        int ok = c && r;
        free(prompt_hh);
        free(c);
        free(r);
        if (!ok) {
            cJSON_Delete(obj);
            return rlhf_errorf(ex->err, RLHF_ERR_NOMEM, "export: out of memory");
        }
    }
    return write_record(ex, obj);
}

static int export_sft(void *ctx, const db_generation_view *v) {
    exporter *ex = ctx;
    if (v->flags && ex->params->skip_flagged) {
        ex->rep->n_skipped++;
        return 0;
    }
    cJSON *obj = cJSON_CreateObject();
    if (!obj) return rlhf_errorf(ex->err, RLHF_ERR_NOMEM, "export: out of memory");
    if (v->prompt_messages_json && v->record_layout && strcmp(v->record_layout, "messages") == 0) {
        cJSON *all = cJSON_Parse(v->prompt_messages_json), *reply = response_messages(v->messages_json, v->text);
        if (all && reply)
            while (reply->child) cJSON_AddItemToArray(all, cJSON_DetachItemViaPointer(reply, reply->child));
        cJSON_Delete(reply);
        cJSON_AddItemToObject(obj, "messages", all);
    } else if (v->prompt_messages_json) {
        cJSON_AddItemToObject(obj, "prompt", cJSON_Parse(v->prompt_messages_json));
        cJSON_AddItemToObject(obj, "completion", response_messages(v->messages_json, v->text));
    } else {
        cJSON_AddStringToObject(obj, "prompt", v->prompt_text);
        cJSON_AddStringToObject(obj, "completion", v->text);
    }
    return write_record(ex, obj);
}

int store_export_jsonl(store *s, FILE *fp, const store_export_params *params,
                       store_export_report *rep, rlhf_error *err) {
    store_export_report local;
    if (!rep) rep = &local;
    memset(rep, 0, sizeof *rep);
    store_export_params defaults = {STORE_FORMAT_TRL, 0, 0};
    if (!params) params = &defaults;
    exporter ex = {s, fp, params, rep, err};
    int rc = 0;
    if (params->format == STORE_FORMAT_SFT) {
        rc = db_generations_each(s->d, "demo", export_sft, &ex, err);
        int64_t *ids = NULL;
        size_t n = 0;
        if (!rc) rc = store_best_ranked(s, &ids, &n, err);
        for (size_t i = 0; i < n && !rc; i++) rc = db_generation_get(s->d, ids[i], export_sft, &ex, err);
        free(ids);
    } else if (params->format == STORE_FORMAT_TRL || params->format == STORE_FORMAT_HH) {
        rc = db_pairs_each(s->d, 1, export_pair, &ex, err);
    } else {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "export: unknown format %d", (int)params->format);
    }
    if (!rc && fflush(fp) != 0) rc = rlhf_errorf(err, RLHF_ERR_IO, "export: write failed: %s", strerror(errno));
    return rc;
}
