/* test_db_util.h — helpers for the db/feedback tests: a full text dump of a database file (to
 * compare states before and after an undo or a failed import) and a small seeded store.
 *
 * The dump reads the file with its own read-only SQLite connection, lists every table except
 * those named in `skip`, and renders each row as "table|col|col|..." (NULL as \N, blobs in hex),
 * rows sorted, so two dumps are equal exactly when the stored data is. */
#ifndef RLHF_TEST_DB_UTIL_H
#define RLHF_TEST_DB_UTIL_H

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *buf;
    size_t n, cap;
} test_text;

static inline void test_text_add(test_text *t, const char *s, size_t len) {
    if (t->n + len + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 1024;
        while (cap < t->n + len + 1) cap *= 2;
        t->buf = realloc(t->buf, cap);
        if (!t->buf) abort();
        t->cap = cap;
    }
    memcpy(t->buf + t->n, s, len);
    t->n += len;
    t->buf[t->n] = '\0';
}

static inline int test_cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every row of every table but those listed in `skip` (comma-separated), sorted; malloc'd. */
static inline char *test_dump_db(const char *path, const char *skip) {
    sqlite3 *c = NULL;
    if (sqlite3_open_v2(path, &c, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fprintf(stderr, "dump: cannot open %s\n", path);
        exit(1);
    }
    sqlite3_stmt *tables = NULL;
    sqlite3_prepare_v2(c, "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
                       -1, &tables, NULL);
    test_text out = {0};
    test_text_add(&out, "", 0);
    while (sqlite3_step(tables) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(tables, 0);
        char padded[128];
        snprintf(padded, sizeof padded, ",%s,", name);
        char skip_list[512];
        snprintf(skip_list, sizeof skip_list, ",%s,", skip ? skip : "");
        if (strstr(skip_list, padded)) continue;
        char sql[256];
        snprintf(sql, sizeof sql, "SELECT * FROM \"%s\"", name);
        sqlite3_stmt *rows = NULL;
        if (sqlite3_prepare_v2(c, sql, -1, &rows, NULL) != SQLITE_OK) abort();
        char **lines = NULL;
        size_t n_lines = 0;
        while (sqlite3_step(rows) == SQLITE_ROW) {
            test_text line = {0};
            test_text_add(&line, name, strlen(name));
            for (int i = 0; i < sqlite3_column_count(rows); i++) {
                test_text_add(&line, "|", 1);
                int type = sqlite3_column_type(rows, i);
                if (type == SQLITE_NULL) {
                    test_text_add(&line, "\\N", 2);
                } else if (type == SQLITE_BLOB) {
                    const unsigned char *b = sqlite3_column_blob(rows, i);
                    for (int k = 0; k < sqlite3_column_bytes(rows, i); k++) {
                        char hex[3];
                        snprintf(hex, sizeof hex, "%02x", b[k]);
                        test_text_add(&line, hex, 2);
                    }
                } else {
                    const char *v = (const char *)sqlite3_column_text(rows, i);
                    test_text_add(&line, v, strlen(v));
                }
            }
            lines = realloc(lines, (n_lines + 1) * sizeof *lines);
            lines[n_lines++] = line.buf;
        }
        sqlite3_finalize(rows);
        if (n_lines > 1) qsort(lines, n_lines, sizeof *lines, test_cmp_str);
        for (size_t i = 0; i < n_lines; i++) {
            test_text_add(&out, lines[i], strlen(lines[i]));
            test_text_add(&out, "\n", 1);
            free(lines[i]);
        }
        free(lines);
    }
    sqlite3_finalize(tables);
    sqlite3_close(c);
    return out.buf;
}

/* Number of rows of a query's first column (a count), via a private connection. */
static inline long long test_query_int(const char *path, const char *sql) {
    sqlite3 *c = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -1;
    if (sqlite3_open_v2(path, &c, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(c, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(c);
    return v;
}

/* Every row of a query as "v|v|...\n" lines in the query's order (NULL as \N); malloc'd. */
static inline char *test_query_rows(const char *path, const char *sql) {
    sqlite3 *c = NULL;
    sqlite3_stmt *st = NULL;
    test_text out = {0};
    test_text_add(&out, "", 0);
    if (sqlite3_open_v2(path, &c, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(c, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "query failed: %s: %s\n", sql, sqlite3_errmsg(c));
        exit(1);
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        for (int i = 0; i < sqlite3_column_count(st); i++) {
            const char *v = (const char *)sqlite3_column_text(st, i);
            if (i) test_text_add(&out, "|", 1);
            if (v) test_text_add(&out, v, strlen(v));
            else test_text_add(&out, "\\N", 2);
        }
        test_text_add(&out, "\n", 1);
    }
    sqlite3_finalize(st);
    sqlite3_close(c);
    return out.buf;
}

#endif
