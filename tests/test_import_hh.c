/* test_import_hh.c — records whose replies carry turn markers (written here), then the real
 * Anthropic HH-RLHF file (../shared/data/hh-rlhf/harmless-base-test-300.jsonl): it imports as 300 pairs split into the shared prompt (through
 * the last "\n\nAssistant:") and the two final replies, multi-turn dialogues included; exporting
 * as hh gives back every original record (the same JSON values, line by line, in order); and a
 * TRL export re-imports to the same rows. Prints the import speed. */
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

#define MARKER "\n\nAssistant:"

static int starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static size_t count(const char *s, const char *needle) {
    size_t n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

/* Records whose replies carry turn markers (as about 1 in 400 real HH records do: the model
 * wrote the next "Human:" / "Assistant:" turns itself). Written here, not taken from the data.
 * Each must import, split at the last "\n\nAssistant:" inside the dialogue both sides share,
 * be flagged for its template text, and export back unchanged. */
static const char *const k_marker_records[] = {
    /* chosen's reply runs on into a new human and assistant turn */
    "{\"chosen\":\"\\n\\nHuman: Hi there\\n\\nAssistant: Hello! How can I help?\\n\\nHuman: Tell me a joke\\n\\nAssistant: Why did the chicken cross the road?\",\"rejected\":\"\\n\\nHuman: Hi there\\n\\nAssistant: Go away.\"}",
    /* both replies carry markers, at different places */
    "{\"chosen\":\"\\n\\nHuman: Name a fruit\\n\\nAssistant: Apple.\\n\\nAssistant: Or pear.\",\"rejected\":\"\\n\\nHuman: Name a fruit\\n\\nAssistant: I cannot.\\n\\nHuman: why\\n\\nAssistant: Policy.\\n\\nAssistant: Sorry.\"}",
    /* a multi-turn dialogue whose rejected reply quotes \"Human:\" without the blank line */
    "{\"chosen\":\"\\n\\nHuman: a\\n\\nAssistant: b\\n\\nHuman: c\\n\\nAssistant: Sure, here it is.\",\"rejected\":\"\\n\\nHuman: a\\n\\nAssistant: b\\n\\nHuman: c\\n\\nAssistant: Human: c Assistant: d\"}",
    /* the replies share their first words, which hold a marker too */
    "{\"chosen\":\"\\n\\nHuman: q\\n\\nAssistant: x\\n\\nAssistant: yes\",\"rejected\":\"\\n\\nHuman: q\\n\\nAssistant: x\\n\\nAssistant: no\"}",
};
static const char *const k_marker_prompts[] = {
    "\n\nHuman: Hi there\n\nAssistant:",
    "\n\nHuman: Name a fruit\n\nAssistant:",
    "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:",
    "\n\nHuman: q\n\nAssistant: x\n\nAssistant:",
};

static void test_replies_with_markers(void) {
    size_t n_rec = sizeof k_marker_records / sizeof *k_marker_records;
    char src[4200], db_path[4200];
    snprintf(src, sizeof src, "%s/hh-markers.jsonl", test_tmpdir());
    snprintf(db_path, sizeof db_path, "%s/hh-markers.db", test_tmpdir());
    unlink(db_path);
    FILE *fp = fopen(src, "w");
    for (size_t i = 0; fp && i < n_rec; i++) fprintf(fp, "%s\n", k_marker_records[i]);
    CHECK(fp && fclose(fp) == 0, "write %s", src);
    store *s = NULL;
    OK(store_open(&s, db_path, &g_err));
    store_import_params p = {STORE_FORMAT_HH, 1, NULL, 0};
    store_import_report rep;
    OK(store_import_jsonl(s, src, &p, &rep, &g_err));
    CHECK(rep.n_records == n_rec && rep.n_bad == 0, "records with markers in replies: %zu of %zu import, %zu refused",
          rep.n_records, n_rec, rep.n_bad);
    CHECK(rep.n_flagged >= 3, "replies carrying template text are flagged (%zu)", rep.n_flagged);
    store_import_report_free(&rep);
    pref_dataset d;
    pref_dataset_init(&d);
    store_pref_query all = {.include_flagged = 1};
    OK(store_get_pref_dataset(s, &all, &d, &g_err));
    CHECK(d.n == n_rec, "%zu pairs read back (%zu)", n_rec, d.n);
    for (size_t i = 0; i < d.n && i < n_rec; i++) {
        cJSON *rec = cJSON_Parse(k_marker_records[i]);
        const char *chosen = cJSON_GetStringValue(cJSON_GetObjectItem(rec, "chosen"));
        const char *rejected = cJSON_GetStringValue(cJSON_GetObjectItem(rec, "rejected"));
        const pref_pair *pp = &d.pairs[i];
        size_t plen = strlen(pp->prompt);
        CHECK(strcmp(pp->prompt, k_marker_prompts[i]) == 0, "record %zu: prompt \"%s\"", i + 1, pp->prompt);
        CHECK(strncmp(chosen, pp->prompt, plen) == 0 && strcmp(chosen + plen, pp->chosen) == 0 &&
                  strncmp(rejected, pp->prompt, plen) == 0 && strcmp(rejected + plen, pp->rejected) == 0,
              "record %zu: prompt + reply rebuilds both sides", i + 1);
        cJSON_Delete(rec);
    }
    pref_dataset_free(&d);
    char *exported = NULL;
    size_t exported_len = 0;
    FILE *mf = open_memstream(&exported, &exported_len);
    store_export_params ep = {STORE_FORMAT_HH, 0, 0};
    store_export_report er;
    OK(store_export_jsonl(s, mf, &ep, &er, &g_err));
    fclose(mf);
    CHECK(er.n_written == n_rec, "every record exported (%zu)", er.n_written);
    const char *b = exported;
    for (size_t i = 0; i < n_rec && *b; i++) {
        const char *eb = strchr(b, '\n');
        size_t lb = eb ? (size_t)(eb - b) : strlen(b);
        cJSON *ja = cJSON_Parse(k_marker_records[i]), *jb = cJSON_ParseWithLength(b, lb);
        CHECK(ja && jb && cJSON_Compare(ja, jb, 1), "record %zu exports unchanged", i + 1);
        cJSON_Delete(ja);
        cJSON_Delete(jb);
        b += lb + (eb != NULL);
    }
    free(exported);
    store_close(&s);
    unlink(src);
}

int main(void) {
    test_replies_with_markers();
    const char *src = test_data_path("hh-rlhf/harmless-base-test-300.jsonl");
    char *original = NULL;
    size_t len = 0;
    if (file_read_all(src, &original, &len, &g_err) != 0) {
        fprintf(stderr, "%s\n", g_err.msg);
        return 1;
    }
    char db_path[4200], db2_path[4200], trl_path[4200];
    snprintf(db_path, sizeof db_path, "%s/hh.db", test_tmpdir());
    snprintf(db2_path, sizeof db2_path, "%s/hh-trl.db", test_tmpdir());
    snprintf(trl_path, sizeof trl_path, "%s/hh-as-trl.jsonl", test_tmpdir());
    unlink(db_path);
    unlink(db2_path);
    store *s = NULL;
    OK(store_open(&s, db_path, &g_err));
    store_import_params p = {STORE_FORMAT_HH, 1, NULL, 0};
    store_import_report rep;
    OK(store_import_jsonl(s, src, &p, &rep, &g_err));
    CHECK(rep.n_records == 300 && rep.n_bad == 0 && rep.n_lines == 300, "300 records, no bad line (%zu, %zu)",
          rep.n_records, rep.n_bad);
    fprintf(stderr, "imported %zu HH records in %.3f s (%.0f records/s); %zu flagged\n", rep.n_records, rep.seconds,
            rep.n_records / (rep.seconds > 0 ? rep.seconds : 1e-9), rep.n_flagged);
    store_import_report_free(&rep);
    store_counts c;
    OK(store_get_counts(s, &c, &g_err));
    CHECK(c.pairs == 300 && c.pairs_better == 300 && c.prompts == 300 && c.generations == 600, "300 pairs of 300 prompts");

    /* the split, record by record, against the original strings */
    pref_dataset d;
    pref_dataset_init(&d);
    store_pref_query all = {.include_flagged = 1};
    OK(store_get_pref_dataset(s, &all, &d, &g_err));
    CHECK(d.n == 300, "300 pairs read back");
    size_t line_no = 0, good = 0, multi = 0;
    for (char *line = original; *line && line_no < d.n; line_no++) {
        char *end = strchr(line, '\n');
        cJSON *rec = cJSON_ParseWithLength(line, end ? (size_t)(end - line) : strlen(line));
        const char *chosen = cJSON_GetStringValue(cJSON_GetObjectItem(rec, "chosen"));
        const char *rejected = cJSON_GetStringValue(cJSON_GetObjectItem(rec, "rejected"));
        const pref_pair *pp = &d.pairs[line_no];
        size_t plen = strlen(pp->prompt);
        int ok = chosen && rejected && plen >= strlen(MARKER) &&
                 strcmp(pp->prompt + plen - strlen(MARKER), MARKER) == 0 && /* prompt ends with the marker */
                 strncmp(chosen, pp->prompt, plen) == 0 && strcmp(chosen + plen, pp->chosen) == 0 &&
                 strncmp(rejected, pp->prompt, plen) == 0 && strcmp(rejected + plen, pp->rejected) == 0 &&
                 !strstr(pp->chosen, MARKER) && !strstr(pp->rejected, MARKER); /* split at the last one */
        good += ok;
        if (!ok) CHECK(0, "line %zu: prompt + reply does not rebuild the record", line_no + 1);
        if (count(pp->prompt, "\n\nHuman:") > 1) multi++;
        cJSON_Delete(rec);
        line = end ? end + 1 : line + strlen(line);
    }
    CHECK(good == 300, "every record splits into prompt + chosen / prompt + rejected (%zu)", good);
    CHECK(multi == 213, "213 of the dialogues are multi-turn (%zu)", multi);
    /* the first record, a multi-turn dialogue, explicitly */
    const pref_pair *first = &d.pairs[0];
    CHECK(starts_with(first->prompt, "\n\nHuman: what are some pranks with a pen i can do?\n\nAssistant: Are you looking for practical joke ideas?\n\nHuman: yep\n\nAssistant:"),
          "record 1: the prompt keeps the earlier turns");
    CHECK(ends_with(first->prompt, "\n\nHuman: okay some of these do not have anything to do with pens\n\nAssistant:"),
          "record 1: the prompt ends with the last human turn and the open assistant turn");
    CHECK(count(first->prompt, "\n\nHuman:") == 3, "record 1: three human turns in the prompt");
    CHECK(strcmp(first->chosen, " No, sorry!  All of these involve a pen, the point is that you can get funny results by doing pranks with pens.") == 0,
          "record 1: chosen is the final reply, leading space kept: \"%s\"", first->chosen);
    CHECK(starts_with(first->rejected, " There are lots of funny things you can do with pens"),
          "record 1: rejected is the other final reply: \"%.60s\"", first->rejected);
    pref_dataset_free(&d);

    /* HH export gives back the file, value for value, line by line */
    char *exported = NULL;
    size_t exported_len = 0;
    FILE *fp = open_memstream(&exported, &exported_len);
    store_export_params ep = {STORE_FORMAT_HH, 0, 0};
    store_export_report er;
    OK(store_export_jsonl(s, fp, &ep, &er, &g_err));
    fclose(fp);
    CHECK(er.n_written == 300, "300 records exported");
    size_t same = 0, n = 0;
    const char *a = original, *b = exported;
    while (*a && *b) {
        const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');
        size_t la = ea ? (size_t)(ea - a) : strlen(a), lb = eb ? (size_t)(eb - b) : strlen(b);
        cJSON *ja = cJSON_ParseWithLength(a, la), *jb = cJSON_ParseWithLength(b, lb);
        n++;
        if (ja && jb && cJSON_Compare(ja, jb, 1)) same++;
        else CHECK(0, "export line %zu differs from the original", n);
        cJSON_Delete(ja);
        cJSON_Delete(jb);
        a += la + (ea != NULL);
        b += lb + (eb != NULL);
    }
    CHECK(n == 300 && same == 300 && !*a && !*b, "every original record comes back, in order (%zu of %zu)", same, n);
    free(exported);

    /* TRL export -> import gives the same rows */
    FILE *tf = fopen(trl_path, "w");
    ep.format = STORE_FORMAT_TRL;
    OK(store_export_jsonl(s, tf, &ep, &er, &g_err));
    fclose(tf);
    store_close(&s);
    OK(store_open(&s, db2_path, &g_err));
    p.format = STORE_FORMAT_TRL;
    OK(store_import_jsonl(s, trl_path, &p, &rep, &g_err));
    store_import_report_free(&rep);
    store_close(&s);
    const char *sql = "SELECT q.text, c.text, r.text, p.flags FROM pairs p JOIN prompts q ON q.id = p.prompt_id "
                      "JOIN generations c ON c.id = p.chosen_id JOIN generations r ON r.id = p.rejected_id ORDER BY p.id";
    char *rows1 = test_query_rows(db_path, sql), *rows2 = test_query_rows(db2_path, sql);
    CHECK(strcmp(rows1, rows2) == 0, "HH -> TRL export -> import: the same rows");
    free(rows1);
    free(rows2);
    free(original);
    return test_finish("test_import_hh");
}
