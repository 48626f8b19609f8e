/* test_import.c — JSONL import and export on synthetic files: round trips of every format
 * (TRL strings and chat messages, HH dialogues, SFT prompt/completion and messages), every kind
 * of malformed input reported with its line number and reason while the database stays as it
 * was, --strict, duplicates, and redaction on export. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "feedback/store.h"
#include "src/core/fileio.h"
#include "tests/test_db_util.h"
#include "tests/test_util.h"

static rlhf_error g_err;

#define OK(expr)                                                                  \
    do {                                                                          \
        int rc_ = (expr);                                                         \
        CHECK(rc_ == 0, "%s returned %d: %s", #expr, rc_, g_err.msg);             \
    } while (0)

static char *tmp_path(const char *name) {
    static char buf[8][4200];
    static int slot;
    char *p = buf[slot++ & 7];
    snprintf(p, sizeof buf[0], "%s/%s", test_tmpdir(), name);
    return p;
}

static void write_file(const char *path, const char *data, size_t len) {
    if (file_write_atomic(path, data, len, NULL) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

static store *fresh_store(const char *name, char *path_out, size_t size) {
    snprintf(path_out, size, "%s", tmp_path(name));
    unlink(path_out);
    store *s = NULL;
    OK(store_open(&s, path_out, &g_err));
    return s;
}

/* Exports into a string. */
static char *export_all(store *s, store_format format, int redact, store_export_report *rep) {
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    store_export_params p = {format, redact, 0};
    store_export_report local;
    OK(store_export_jsonl(s, fp, &p, rep ? rep : &local, &g_err));
    fclose(fp);
    return buf;
}

/* Compares two JSONL texts line by line as parsed JSON values; returns the first differing
 * line (1-based) or 0 if they are equal. */
static size_t jsonl_diff(const char *a, const char *b) {
    size_t line = 1;
    for (;;) {
        const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');
        if (!ea && !*a && !eb && !*b) return 0;
        if (!ea || !eb) return line;
        cJSON *ja = cJSON_ParseWithLength(a, (size_t)(ea - a)), *jb = cJSON_ParseWithLength(b, (size_t)(eb - b));
        int same = ja && jb && cJSON_Compare(ja, jb, 1);
        cJSON_Delete(ja);
        cJSON_Delete(jb);
        if (!same) return line;
        a = ea + 1;
        b = eb + 1;
        line++;
    }
}

/* What a preference pair is, independent of row ids and times. */
static const char *k_pair_content =
    "SELECT q.text, q.messages_json, c.text, c.messages_json, r.text, r.messages_json, p.verdict, p.flags "
    "FROM pairs p JOIN prompts q ON q.id = p.prompt_id JOIN generations c ON c.id = p.chosen_id "
    "JOIN generations r ON r.id = p.rejected_id ORDER BY p.id";
static const char *k_demo_content =
    "SELECT q.text, q.messages_json, g.text, g.messages_json, g.record_layout, g.flags "
    "FROM generations g JOIN prompts q ON q.id = g.prompt_id WHERE g.origin = 'demo' ORDER BY g.id";

/* import FILE (as `format`) into a fresh db, export, compare with the file, import the export
 * into another fresh db, and compare the rows of the two databases. */
static void round_trip(const char *name, store_format format, const char *jsonl, size_t expect_records) {
    char in_path[4200], db1[4200], db2[4200], out_path[4300];
    snprintf(in_path, sizeof in_path, "%s", tmp_path(name));
    write_file(in_path, jsonl, strlen(jsonl));
    char dbname[128];
    snprintf(dbname, sizeof dbname, "%s.1.db", name);
    store *s = fresh_store(dbname, db1, sizeof db1);
    store_import_params p = {format, 1, NULL, 0};
    store_import_report rep;
    OK(store_import_jsonl(s, in_path, &p, &rep, &g_err));
    CHECK(rep.n_records == expect_records && rep.n_bad == 0, "%s: %zu records imported, %zu bad (expected %zu)", name,
          rep.n_records, rep.n_bad, expect_records);
    for (size_t i = 0; i < rep.n_issues; i++) fprintf(stderr, "  %s:%zu: %s\n", name, rep.issues[i].line, rep.issues[i].reason);
    store_import_report_free(&rep);
    char *exported = export_all(s, format, 0, NULL);
    size_t diff = jsonl_diff(jsonl, exported);
    CHECK(diff == 0, "%s: export gives back the same JSON values (first difference on line %zu)\n%s", name, diff, exported);
    store_close(&s);
    snprintf(out_path, sizeof out_path, "%s.export", in_path);
    write_file(out_path, exported, strlen(exported));
    snprintf(dbname, sizeof dbname, "%s.2.db", name);
    s = fresh_store(dbname, db2, sizeof db2);
    OK(store_import_jsonl(s, out_path, &p, &rep, &g_err));
    store_import_report_free(&rep);
    store_close(&s);
    const char *sql = format == STORE_FORMAT_SFT ? k_demo_content : k_pair_content;
    char *rows1 = test_query_rows(db1, sql), *rows2 = test_query_rows(db2, sql);
    CHECK(strcmp(rows1, rows2) == 0 && strlen(rows1) > 0, "%s: export then import gives the same rows", name);
    free(rows1);
    free(rows2);
    free(exported);
}

static void test_round_trips(void) {
    round_trip("trl-strings.jsonl", STORE_FORMAT_TRL,
               "{\"prompt\":\"What is 2+2?\",\"chosen\":\"4\",\"rejected\":\"5\"}\n"
               "{\"prompt\":\"Quote \\\"this\\\"\\\\ \\t tab\\n\",\"chosen\":\"\xc3\xa9t\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80\",\"rejected\":\"ctrl \\u0001 char\"}\n"
               "{\"prompt\":\"What is 2+2?\",\"chosen\":\"four\",\"rejected\":\"5\"}\n",
               3);
    round_trip("trl-chat.jsonl", STORE_FORMAT_TRL,
               "{\"prompt\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Capital of France?\"}],"
               "\"chosen\":[{\"role\":\"assistant\",\"content\":\"Paris.\"}],\"rejected\":[{\"role\":\"assistant\",\"content\":\"Lyon.\"}]}\n"
               "{\"prompt\":[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":\"Hello!\"},{\"role\":\"user\",\"content\":\"Bye\"}],"
               "\"chosen\":[{\"role\":\"assistant\",\"content\":\"Goodbye!\"}],\"rejected\":[{\"role\":\"assistant\",\"content\":\"No.\"}]}\n",
               2);
    round_trip("hh.jsonl", STORE_FORMAT_HH,
               "{\"chosen\":\"\\n\\nHuman: Hi\\n\\nAssistant: Hello! How can I help?\",\"rejected\":\"\\n\\nHuman: Hi\\n\\nAssistant: What.\"}\n"
               "{\"chosen\":\"\\n\\nHuman: a\\n\\nAssistant: b\\n\\nHuman: c\\n\\nAssistant: d\",\"rejected\":\"\\n\\nHuman: a\\n\\nAssistant: b\\n\\nHuman: c\\n\\nAssistant:  e \"}\n",
               2);
    round_trip("sft.jsonl", STORE_FORMAT_SFT,
               "{\"prompt\":\"Translate: chat\",\"completion\":\"cat\"}\n"
               "{\"messages\":[{\"role\":\"system\",\"content\":\"You are terse.\"},{\"role\":\"user\",\"content\":\"2+2?\"},{\"role\":\"assistant\",\"content\":\"4\"}]}\n"
               "{\"prompt\":[{\"role\":\"user\",\"content\":\"Name a color\"}],\"completion\":[{\"role\":\"assistant\",\"content\":\"Blue\"}]}\n"
               "{\"prompt\":\"Translate: chat\",\"completion\":\"cat\"}\n",
               4);
}

/* One malformed input: imported (non-strict) into a database that already holds data; the
 * import must fail, report `line` with `reason`, and leave every table as it was. */
static void malformed(store *s, const char *db_path, const char *name, store_format format, const char *data,
                      size_t len, size_t line, const char *reason) {
    const char *path = tmp_path(name);
    write_file(path, data, len);
    char *before = test_dump_db(db_path, "");
    store_import_params p = {format, 0, NULL, 0};
    store_import_report rep;
    int rc = store_import_jsonl(s, path, &p, &rep, &g_err);
    CHECK(rc == RLHF_ERR_FORMAT, "%s: import fails (rc %d: %s)", name, rc, g_err.msg);
    int found = 0;
    for (size_t i = 0; i < rep.n_issues; i++)
        if (rep.issues[i].line == line && rep.issues[i].is_error && strstr(rep.issues[i].reason, reason)) found = 1;
    if (line == 0) found = strstr(g_err.msg, reason) != NULL; /* whole-file problems are the error itself */
    CHECK(found, "%s: line %zu reported with \"%s\" (got: %s / %s)", name, line, reason,
          rep.n_issues ? rep.issues[0].reason : "(no issues)", g_err.msg);
    char *after = test_dump_db(db_path, "");
    CHECK(strcmp(before, after) == 0, "%s: database unchanged", name);
    free(before);
    free(after);
    store_import_report_free(&rep);
}

static void test_malformed(void) {
    char db_path[4200];
    store *s = fresh_store("malformed.db", db_path, sizeof db_path);
    /* some existing data, so "unchanged" means something */
    const char *good = "{\"prompt\":\"p\",\"chosen\":\"yes\",\"rejected\":\"no\"}\n";
    const char *good_path = tmp_path("good.jsonl");
    write_file(good_path, good, strlen(good));
    store_import_params p = {STORE_FORMAT_TRL, 0, NULL, 0};
    store_import_report rep;
    OK(store_import_jsonl(s, good_path, &p, &rep, &g_err));
    store_import_report_free(&rep);

#define BAD(name, fmt, text, line, reason) malformed(s, db_path, name, fmt, text, sizeof(text) - 1, line, reason)
    BAD("empty.jsonl", STORE_FORMAT_TRL, "", 0, "is empty");
    BAD("blank.jsonl", STORE_FORMAT_TRL, "\n  \n\n", 0, "only blank lines");
    BAD("truncated.jsonl", STORE_FORMAT_TRL, "\n{\"prompt\":\"a\",\"chosen\":\"b\"", 2, "bad JSON");
    BAD("badjson.jsonl", STORE_FORMAT_TRL, "{\"prompt\":\"a\" \"chosen\":\"b\",\"rejected\":\"c\"}\n", 1, "bad JSON at byte 15");
    BAD("trailing.jsonl", STORE_FORMAT_TRL, "{\"prompt\":\"a\",\"chosen\":\"b\",\"rejected\":\"c\"} {}\n", 1, "extra text");
    BAD("array.jsonl", STORE_FORMAT_TRL, "[1, 2]\n", 1, "expected a JSON object, got a list");
    BAD("missing.jsonl", STORE_FORMAT_TRL, "{\"prompt\":\"a\",\"chosen\":\"b\"}\n", 1, "missing field \"rejected\"");
    BAD("type.jsonl", STORE_FORMAT_TRL, "{\"prompt\":\"a\",\"chosen\":5,\"rejected\":\"c\"}\n", 1,
        "\"chosen\" must be a string or a list of {\"role\", \"content\"} messages, got a number");
    BAD("null.jsonl", STORE_FORMAT_TRL, "{\"prompt\":null,\"chosen\":\"b\",\"rejected\":\"c\"}\n", 1, "got null");
    BAD("mixed.jsonl", STORE_FORMAT_TRL,
        "{\"prompt\":\"a\",\"chosen\":[{\"role\":\"assistant\",\"content\":\"b\"}],\"rejected\":\"c\"}\n", 1, "mixes");
    BAD("message.jsonl", STORE_FORMAT_TRL,
        "{\"prompt\":[{\"role\":\"user\"}],\"chosen\":[{\"role\":\"assistant\",\"content\":\"b\"}],\"rejected\":[{\"role\":\"assistant\",\"content\":\"c\"}]}\n",
        1, "\"prompt\"[0] has no \"content\"");
    BAD("identical.jsonl", STORE_FORMAT_TRL, "{\"prompt\":\"a\",\"chosen\":\"same\",\"rejected\":\"same\"}\n", 1, "identical");
    BAD("utf8.jsonl", STORE_FORMAT_TRL, "{\"prompt\":\"a\",\"chosen\":\"b\xff\",\"rejected\":\"c\"}\n", 1, "invalid UTF-8 at byte 26 (0xff)");
    BAD("overlong.jsonl", STORE_FORMAT_TRL, "{\"prompt\":\"\xc0\xaf\",\"chosen\":\"b\",\"rejected\":\"c\"}\n", 1, "invalid UTF-8");
    BAD("surrogate.jsonl", STORE_FORMAT_TRL, "{\"prompt\":\"\xed\xa0\x80\",\"chosen\":\"b\",\"rejected\":\"c\"}\n", 1, "invalid UTF-8");
    BAD("escaped-surrogate.jsonl", STORE_FORMAT_TRL, "{\"prompt\":\"\\udc00\",\"chosen\":\"b\",\"rejected\":\"c\"}\n", 1, "bad JSON");
    BAD("nul.jsonl", STORE_FORMAT_TRL, "{\"prompt\":\"a\\u0000b\",\"chosen\":\"b\",\"rejected\":\"c\"}\n", 1, "NUL");
    BAD("rawnul.jsonl", STORE_FORMAT_TRL, "{\"prompt\":\"a\0b\",\"chosen\":\"b\",\"rejected\":\"c\"}\n", 1, "NUL byte");
    BAD("dupkey.jsonl", STORE_FORMAT_TRL, "{\"prompt\":\"a\",\"chosen\":\"b\",\"chosen\":\"x\",\"rejected\":\"c\"}\n", 1,
        "\"chosen\" appears twice");
    BAD("hh-split.jsonl", STORE_FORMAT_HH,
        "{\"chosen\":\"\\n\\nHuman: a\\n\\nAssistant: b\",\"rejected\":\"\\n\\nHuman: z\\n\\nAssistant: c\"}\n", 1,
        "share no dialogue through");
    BAD("hh-marker.jsonl", STORE_FORMAT_HH, "{\"chosen\":\"just text\",\"rejected\":\"\\n\\nHuman: z\\n\\nAssistant: c\"}\n",
        1, "no \"\\n\\nAssistant:\" turn");
    BAD("hh-type.jsonl", STORE_FORMAT_HH, "{\"chosen\":[],\"rejected\":\"x\"}\n", 1, "must be a string");
    BAD("sft-missing.jsonl", STORE_FORMAT_SFT, "{\"text\":\"hello\"}\n", 1, "missing fields");
    BAD("sft-last.jsonl", STORE_FORMAT_SFT,
        "{\"messages\":[{\"role\":\"assistant\",\"content\":\"hi\"},{\"role\":\"user\",\"content\":\"bye\"}]}\n", 1,
        "last message must be the assistant's");
    BAD("sft-both.jsonl", STORE_FORMAT_SFT,
        "{\"prompt\":\"a\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"}]}\n", 1,
        "both");
#undef BAD

    /* a 10 MB line: refused without being imported, with its size */
    size_t big = 10u << 20;
    char *huge = malloc(big + 64);
    int n = snprintf(huge, 64, "{\"prompt\":\"");
    memset(huge + n, 'a', big);
    n += (int)big;
    n += snprintf(huge + n, 64, "\",\"chosen\":\"b\",\"rejected\":\"c\"}\n");
    malformed(s, db_path, "huge.jsonl", STORE_FORMAT_TRL, huge, (size_t)n, 1, "longer than the 4194304-byte limit");
    free(huge);

    /* mixed good and bad lines: the good ones are imported, each bad one reported by number */
    const char *mixed = "{\"prompt\":\"q1\",\"chosen\":\"a\",\"rejected\":\"b\"}\n"
                        "\n"
                        "{\"prompt\":\"q2\",\"chosen\":\"a\"}\n"
                        "not json\n"
                        "{\"prompt\":\"q3\",\"chosen\":\"a\",\"rejected\":\"b\"}\r\n";
    const char *mixed_path = tmp_path("mixed-lines.jsonl");
    write_file(mixed_path, mixed, strlen(mixed));
    char *before = test_dump_db(db_path, "");
    p.strict = 1;
    CHECK(store_import_jsonl(s, mixed_path, &p, &rep, &g_err) == RLHF_ERR_FORMAT && strstr(g_err.msg, "strict") &&
              strstr(g_err.msg, "2 bad lines"),
          "strict: nothing imported when a line is bad: %s", g_err.msg);
    CHECK(rep.n_issues == 2 && rep.issues[0].line == 3 && rep.issues[1].line == 4, "strict still reports every bad line");
    store_import_report_free(&rep);
    char *after = test_dump_db(db_path, "");
    CHECK(strcmp(before, after) == 0, "strict: database unchanged");
    free(after);
    p.strict = 0;
    OK(store_import_jsonl(s, mixed_path, &p, &rep, &g_err));
    CHECK(rep.n_records == 2 && rep.n_bad == 2 && rep.n_blank == 1 && rep.n_lines == 5,
          "non-strict: 2 imported, 2 bad, 1 blank of 5 lines (%zu %zu %zu %zu)", rep.n_records, rep.n_bad, rep.n_blank,
          rep.n_lines);
    CHECK(rep.n_issues == 2 && rep.issues[0].line == 3 && strstr(rep.issues[0].reason, "missing field \"rejected\"") &&
              rep.issues[1].line == 4 && strstr(rep.issues[1].reason, "bad JSON"),
          "bad lines 3 and 4 reported with reasons");
    store_import_report_free(&rep);
    free(before);
    CHECK(test_query_int(db_path, "SELECT count(*) FROM pairs p JOIN generations r ON r.id = p.rejected_id WHERE r.text = 'b'") == 2,
          "a CRLF line end is not part of the text");

    CHECK(store_import_jsonl(s, tmp_path("no-such-file.jsonl"), &p, &rep, &g_err) == RLHF_ERR_IO &&
              strstr(g_err.msg, "no-such-file"),
          "a missing file is named: %s", g_err.msg);
    store_import_report_free(&rep);
    store_close(&s);
}

static void test_flags_and_redaction(void) {
    char db_path[4200];
    store *s = fresh_store("flags.db", db_path, sizeof db_path);
    const char *data = "{\"prompt\":\"Contact?\",\"chosen\":\"Mail jane@example.com or call 555-123-4567.\",\"rejected\":\"No.<|endoftext|>\"}\n"
                       "{\"prompt\":\"Hi\",\"chosen\":\"Hello\",\"rejected\":\"   \"}\n";
    const char *path = tmp_path("flags.jsonl");
    write_file(path, data, strlen(data));
    store_import_params p = {STORE_FORMAT_TRL, 0, "importer", 0};
    store_import_report rep;
    OK(store_import_jsonl(s, path, &p, &rep, &g_err));
    CHECK(rep.n_records == 2 && rep.n_flagged == 2, "both records imported, flagged (%zu)", rep.n_flagged);
    CHECK(rep.n_issues == 2 && !rep.issues[0].is_error && strstr(rep.issues[0].reason, "<|endoftext|>") &&
              strstr(rep.issues[1].reason, "rejected response is empty"),
          "flags reported as warnings with reasons");
    store_import_report_free(&rep);
    pref_dataset d;
    pref_dataset_init(&d);
    OK(store_get_pref_dataset(s, NULL, &d, &g_err));
    CHECK(d.n == 0, "flagged pairs stay out of training data by default");
    pref_dataset_free(&d);
    store_pref_query all = {.include_flagged = 1};
    OK(store_get_pref_dataset(s, &all, &d, &g_err));
    CHECK(d.n == 2 && strcmp(d.pairs[0].annotator, "importer") == 0, "... unless asked for");
    pref_dataset_free(&d);

    /* importing the same file again: each record is a duplicate of the first import's */
    OK(store_import_jsonl(s, path, &p, &rep, &g_err));
    CHECK(rep.n_records == 2 && rep.n_issues == 2 && strstr(rep.issues[0].reason, "duplicate of pair #1"),
          "a second import flags duplicates: %s", rep.n_issues ? rep.issues[0].reason : "");
    store_import_report_free(&rep);
    CHECK(test_query_int(db_path, "SELECT count(*) FROM generations") == 4, "identical texts of a prompt are stored once");

    store_export_report er;
    char *plain = export_all(s, STORE_FORMAT_TRL, 0, &er);
    CHECK(strstr(plain, "jane@example.com") && strstr(plain, "555-123-4567") && er.n_written == 4, "plain export keeps the text");
    char *masked = export_all(s, STORE_FORMAT_TRL, 1, &er);
    CHECK(!strstr(masked, "jane@") && !strstr(masked, "555-123") && strstr(masked, "Mail [EMAIL] or call [PHONE].") &&
              er.n_redacted == 4,
          "--redact masks e-mail and phone (%zu masks):\n%s", er.n_redacted, masked);
    free(plain);
    free(masked);
    store_close(&s);
}

int main(void) {
    test_round_trips();
    test_malformed();
    test_flags_and_redaction();
    return test_finish("test_import");
}
