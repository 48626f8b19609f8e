/* test_db.c — the database layer: creating, migrating an older schema forward with a backup,
 * refusing newer or foreign files untouched, transactions and savepoints, waiting for another
 * process's write lock instead of failing, and how values are stored. */
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "db/db.h"
#include "db/migrations.h"
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

/* FNV-1a of a whole file, to show a file was not touched. */
static uint64_t file_hash(const char *path) {
    char *data = NULL;
    size_t len = 0;
    if (file_read_all(path, &data, &len, NULL) != 0) return 0;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)data[i]) * 1099511628211ull;
    free(data);
    return h;
}

static int raw_exec(const char *path, const char *sql) {
    sqlite3 *c = NULL;
    int rc = sqlite3_open(path, &c);
    if (rc == SQLITE_OK) rc = sqlite3_exec(c, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK) fprintf(stderr, "raw_exec: %s\n", sqlite3_errmsg(c));
    sqlite3_close(c);
    return rc;
}

static void test_create(void) {
    db *d = NULL;
    db_open_info info;
    OK(db_open(&d, ":memory:", NULL, &g_err));
    db_get_open_info(d, &info);
    CHECK(info.created && info.version_before == 0 && info.version_after == db_schema_version(),
          "a new database gets the newest schema (%d)", info.version_after);
    CHECK(db_schema_version() == db_migrations_count && db_schema_version() >= 2, "migrations are embedded (%d)",
          db_migrations_count);
    db_counts c;
    OK(db_get_counts(d, &c, &g_err));
    CHECK(c.schema_version == db_schema_version() && c.pairs == 0, "counts of an empty database");
    db_close(&d);
    CHECK(d == NULL, "db_close clears the handle");
    db_close(&d); /* safe twice */

    const char *path = tmp_path("create.db");
    db_open_params must = {1, 0};
    CHECK(db_open(&d, path, &must, &g_err) == RLHF_ERR_NOT_FOUND && strstr(g_err.msg, path) && !file_exists(path),
          "must_exist: a missing file is named and not created (%s)", g_err.msg);
    OK(db_open(&d, path, NULL, &g_err));
    db_close(&d);
    OK(db_open(&d, path, &must, &g_err));
    db_get_open_info(d, &info);
    CHECK(!info.created && info.version_before == db_schema_version() && !info.backup_path, "reopening changes nothing");
    char *mode = test_query_rows(path, "PRAGMA journal_mode");
    CHECK(strcmp(mode, "wal\n") == 0, "WAL mode: %s", mode);
    free(mode);
    db_close(&d);
}

/* A database as version 1 of the schema made it, with a little data in it. */
static void make_v1(const char *path) {
    unlink(path);
    char sql[256];
    snprintf(sql, sizeof sql, "PRAGMA user_version = 1;");
    CHECK(raw_exec(path, db_migrations[0].sql) == SQLITE_OK, "version 1 schema applies");
    CHECK(raw_exec(path, sql) == SQLITE_OK, "user_version 1");
    CHECK(raw_exec(path,
                   "INSERT INTO annotators(name) VALUES ('alice');"
                   "INSERT INTO prompts(text) VALUES ('Why is the sky blue?');"
                   "INSERT INTO generations(prompt_id, text) VALUES (1, 'Rayleigh scattering.'), (1, 'Because.');"
                   "INSERT INTO pairs(prompt_id, chosen_id, rejected_id, verdict, annotator_id) VALUES (1, 1, 2, 'better', 1);"
                   "INSERT INTO runs(kind) VALUES ('sft');"
                   "INSERT INTO metrics(run_id, step, name, value) VALUES (1, 1, 'loss', 2.5), (1, 2, 'loss', 2.0);") == SQLITE_OK,
          "version 1 data");
}

static void test_migrate(void) {
    const char *path = tmp_path("old.db");
    char bak[4300], bak1[4300];
    snprintf(bak, sizeof bak, "%s.bak-v1", path);
    snprintf(bak1, sizeof bak1, "%s.bak-v1.1", path);
    unlink(bak);
    unlink(bak1);
    make_v1(path);
    char *before = test_dump_db(path, "");
    db *d = NULL;
    OK(db_open(&d, path, NULL, &g_err));
    db_open_info info;
    if (!d) return;
    db_get_open_info(d, &info);
    CHECK(info.version_before == 1 && info.version_after == db_schema_version() && !info.created,
          "migrated from 1 to %d", info.version_after);
    CHECK(info.backup_path && strcmp(info.backup_path, bak) == 0, "backup named FILE.bak-v1 (%s)",
          info.backup_path ? info.backup_path : "none");
    db_close(&d);
    CHECK(test_query_int(bak, "PRAGMA user_version") == 1, "the backup is the version 1 database");
    char *backup = test_dump_db(bak, "");
    CHECK(strcmp(before, backup) == 0, "the backup holds exactly the old data");
    free(backup);
    CHECK(test_query_int(path, "PRAGMA user_version") == db_schema_version(), "user_version updated");
    CHECK(test_query_int(path, "SELECT count(*) FROM pairs WHERE import_id IS NULL AND chosen_id = 1") == 1,
          "old rows survive, new columns are NULL");
    CHECK(test_query_int(path, "SELECT count(*) FROM imports") == 0, "new tables exist");
    CHECK(test_query_int(path, "SELECT count(*) FROM metrics WHERE run_id = 1") == 2,
          "a run's metrics survive migration 3 (its CHECK widened in place, no table rebuilt)");
    CHECK(raw_exec(path, "INSERT INTO runs(kind) VALUES ('grpo'), ('rloo'), ('kto');"
                         "INSERT INTO models(name, made_by) VALUES ('m-grpo', 'grpo');") == SQLITE_OK,
          "runs and models of the new kinds are accepted after migrating");
    CHECK(raw_exec(path, "INSERT INTO runs(kind) VALUES ('bogus');") != SQLITE_OK, "the CHECK still refuses other kinds");
    char *ok = test_query_rows(path, "PRAGMA integrity_check");
    CHECK(strcmp(ok, "ok\n") == 0, "integrity after migration: %s", ok);
    free(ok);
    free(before);

    /* a second migration of an old file keeps the first backup */
    make_v1(path);
    OK(db_open(&d, path, NULL, &g_err));
    if (!d) return;
    db_get_open_info(d, &info);
    CHECK(info.backup_path && strcmp(info.backup_path, bak1) == 0, "an existing backup is not overwritten (%s)",
          info.backup_path ? info.backup_path : "none");
    db_close(&d);

    /* the failing-migration path: a v1 file whose data breaks migration 2 rolls back whole */
    make_v1(path);
    CHECK(raw_exec(path, "CREATE TABLE imports(x);") == SQLITE_OK, "sabotage: a table named like migration 2's");
    char *sabotaged = test_dump_db(path, "");
    CHECK(db_open(&d, path, NULL, &g_err) == RLHF_ERR_DB && strstr(g_err.msg, "0002") && strstr(g_err.msg, "unchanged"),
          "a failing migration is reported with its file name: %s", g_err.msg);
    char *after = test_dump_db(path, "");
    CHECK(test_query_int(path, "PRAGMA user_version") == 1 && strcmp(sabotaged, after) == 0,
          "and the database is left at version 1 with every row as it was");
    free(sabotaged);
    free(after);
}

static void test_refuse(void) {
    const char *path = tmp_path("newer.db");
    unlink(path);
    db *d = NULL;
    OK(db_open(&d, path, NULL, &g_err));
    db_close(&d);
    CHECK(raw_exec(path, "PRAGMA user_version = 99;") == SQLITE_OK, "pretend a newer program wrote it");
    uint64_t h = file_hash(path);
    CHECK(h != 0, "hash");
    CHECK(db_open(&d, path, NULL, &g_err) == RLHF_ERR_DB && strstr(g_err.msg, "99") && strstr(g_err.msg, "newer") &&
              strstr(g_err.msg, "not changed"),
          "a newer database is refused clearly: %s", g_err.msg);
    CHECK(d == NULL, "no handle on error");
    CHECK(file_hash(path) == h, "and its file is byte for byte untouched");
    CHECK(test_query_int(path, "PRAGMA user_version") == 99, "still version 99");

    const char *other = tmp_path("other.db");
    unlink(other);
    CHECK(raw_exec(other, "CREATE TABLE t(x); INSERT INTO t VALUES (1);") == SQLITE_OK, "someone else's database");
    h = file_hash(other);
    CHECK(db_open(&d, other, NULL, &g_err) == RLHF_ERR_DB && strstr(g_err.msg, "no rlhf.c schema version"),
          "a foreign SQLite database is refused: %s", g_err.msg);
    CHECK(file_hash(other) == h, "and left untouched");
    unlink(other);
    CHECK(raw_exec(other, "PRAGMA application_id = 7; CREATE TABLE t(x);") == SQLITE_OK, "another program's id");
    CHECK(db_open(&d, other, NULL, &g_err) == RLHF_ERR_DB && strstr(g_err.msg, "another program"),
          "a database with another application_id is refused: %s", g_err.msg);

    const char *text = tmp_path("text.db");
    CHECK(file_write_atomic(text, "hello, this is not a database at all, just some text.\n", 55, NULL) == 0, "text file");
    CHECK(db_open(&d, text, NULL, &g_err) != 0 && strstr(g_err.msg, "not a readable SQLite database"),
          "a text file is refused: %s", g_err.msg);
}

static void test_transactions(void) {
    db *d = NULL;
    OK(db_open(&d, ":memory:", NULL, &g_err));
    int64_t id = 0;
    OK(db_begin(d, &g_err));
    OK(db_annotator_insert(d, "ghost", &id, &g_err));
    db_rollback(d);
    OK(db_annotator_find(d, "ghost", &id, &g_err));
    CHECK(id == 0, "a rolled back insert is gone");
    OK(db_begin(d, &g_err));
    OK(db_annotator_insert(d, "kept", &id, &g_err));
    OK(db_savepoint(d, &g_err));
    OK(db_annotator_insert(d, "dropped", &id, &g_err));
    db_rollback_to(d);
    OK(db_savepoint(d, &g_err));
    OK(db_annotator_insert(d, "also kept", &id, &g_err));
    OK(db_release(d, &g_err));
    OK(db_commit(d, &g_err));
    int64_t a = 0, b = 0, c = 0;
    OK(db_annotator_find(d, "kept", &a, &g_err));
    OK(db_annotator_find(d, "dropped", &b, &g_err));
    OK(db_annotator_find(d, "also kept", &c, &g_err));
    CHECK(a && !b && c, "a savepoint rolls back only its own rows");
    char name[16];
    OK(db_annotator_name(d, a, name, sizeof name, &g_err));
    CHECK(strcmp(name, "kept") == 0, "annotator name");

    /* constraint errors come back as RLHF_ERR_DB with the statement named */
    db_pair_row bad = {.prompt_id = 1, .chosen_id = 5, .rejected_id = 5, .verdict = "better", .annotator_id = a};
    CHECK(db_pair_insert(d, &bad, &id, &g_err) == RLHF_ERR_DB && strstr(g_err.msg, "adding a pair"),
          "a constraint failure names the operation: %s", g_err.msg);

    /* token ids are little-endian int32 whatever the host */
    int64_t prompt = 0, gen = 0;
    db_prompt_row pr = {.text = "p"};
    OK(db_prompt_insert(d, &pr, &prompt, &g_err));
    int32_t ids[3] = {1, 256, -1};
    db_generation_row g = {.prompt_id = prompt, .text = "t", .n_tokens = 3, .token_ids = ids, .n_token_ids = 3,
                           .logprob = NAN, .latency_ms = NAN, .has_seed = 1, .seed = -5};
    OK(db_generation_insert(d, &g, &gen, &g_err));
    db_close(&d);

    const char *path = tmp_path("blob.db");
    unlink(path);
    OK(db_open(&d, path, NULL, &g_err));
    OK(db_prompt_insert(d, &pr, &prompt, &g_err));
    g.prompt_id = prompt;
    OK(db_generation_insert(d, &g, &gen, &g_err));
    db_close(&d);
    char *row = test_query_rows(path, "SELECT hex(token_ids), n_tokens, seed, logprob IS NULL FROM generations");
    CHECK(strcmp(row, "0100000000010000FFFFFFFF|3|-5|1\n") == 0, "stored as %s", row);
    free(row);
}

/* Another process holds the write lock: db_begin waits for it rather than failing, and a
 * wait longer than busy_wait_ms ends in RLHF_ERR_BUSY with a message that says so. */
static void test_busy(void) {
    const char *path = tmp_path("busy.db");
    unlink(path);
    db *d = NULL;
    OK(db_open(&d, path, NULL, &g_err));
    db_close(&d);
    int ready[2];
    if (pipe(ready) != 0) return;
    pid_t child = fork();
    if (child == 0) {
        db *c = NULL;
        rlhf_error e = {0};
        if (db_open(&c, path, NULL, &e) || db_begin(c, &e)) _exit(3);
        int64_t id;
        db_annotator_insert(c, "holder", &id, &e);
        if (write(ready[1], "x", 1) != 1) _exit(4);
        usleep(700 * 1000); /* hold the lock */
        _exit(db_commit(c, &e) ? 5 : 0);
    }
    char x;
    CHECK(read(ready[0], &x, 1) == 1, "child holds the lock");
    db_open_params quick = {0, 200};
    OK(db_open(&d, path, &quick, &g_err));
    double t0 = 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    t0 = (double)ts.tv_sec + ts.tv_nsec / 1e9;
    int rc = d ? db_begin(d, &g_err) : -1;
    CHECK(rc == RLHF_ERR_BUSY && strstr(g_err.msg, "busy") && !strstr(g_err.msg, "locked"),
          "a short wait gives up with a clear message: %s", g_err.msg);
    db_close(&d);
    OK(db_open(&d, path, NULL, &g_err)); /* default wait: 60 s */
    rc = d ? db_begin(d, &g_err) : -1;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double waited = (double)ts.tv_sec + ts.tv_nsec / 1e9 - t0;
    CHECK(rc == 0, "the default wait outlasts the other transaction: %s", g_err.msg);
    CHECK(waited > 0.3, "and it did wait (%.2f s)", waited);
    int64_t id = 0;
    if (rc == 0) {
        OK(db_annotator_find(d, "holder", &id, &g_err));
        CHECK(id != 0, "the other process's row is visible after its commit");
        OK(db_commit(d, &g_err));
    }
    db_close(&d);
    int status = 0;
    waitpid(child, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "holder exited cleanly (%d)", status);
    close(ready[0]);
    close(ready[1]);
}

static int collect_problem(void *ctx, const char *line) {
    (*(int *)ctx)++;
    fprintf(stderr, "  (expected) problem: %s\n", line);
    return 0;
}

static void test_check(void) {
    const char *path = tmp_path("check.db");
    make_v1(path);
    db *d = NULL;
    OK(db_open(&d, path, NULL, &g_err));
    int problems = 0;
    OK(db_check_integrity(d, collect_problem, &problems, &g_err));
    CHECK(problems == 0, "a sound database has no problems");
    db_close(&d);
    /* break a foreign key behind the program's back */
    CHECK(raw_exec(path, "PRAGMA foreign_keys = OFF; INSERT INTO pairs(prompt_id, chosen_id, rejected_id, verdict, annotator_id) VALUES (1, 1, 77, 'better', 1);") == SQLITE_OK,
          "corrupt a reference");
    OK(db_open(&d, path, NULL, &g_err));
    problems = 0;
    OK(db_check_integrity(d, collect_problem, &problems, &g_err));
    CHECK(problems >= 1, "a dangling reference is reported (%d)", problems);
    db_close(&d);
}

int main(void) {
    test_create();
    test_migrate();
    test_refuse();
    test_transactions();
    test_busy();
    test_check();
    return test_finish("test_db");
}
