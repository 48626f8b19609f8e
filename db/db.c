/* db.c — opening the feedback database, migrating it forward, and transactions.
 *
 * Opening goes: refuse a missing file if asked, open, foreign keys on, read the header
 * (application_id, user_version) and refuse a file that is not ours or is newer than this
 * program *before* anything writes to it, then WAL mode and synchronous=FULL, then migrate: an
 * existing database is first copied to FILE.bak-vN with SQLite's online backup API, then all
 * missing migrations run inside one BEGIN IMMEDIATE transaction that re-reads the version after
 * taking the lock (two processes opening an old file at once migrate it exactly once).
 *
 * Busy handling: sqlite's busy timeout covers most waits, but a BEGIN IMMEDIATE or a first read
 * can still return SQLITE_BUSY without waiting (WAL recovery, a checkpoint, a journal mode
 * change in another process), so those are retried here with a jittered, growing sleep until
 * busy_wait_ms has passed. A caller therefore only ever sees RLHF_ERR_BUSY after a long wait,
 * never "database is locked". */
#include "db/db_private.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db/migrations.h"
#include "src/core/fileio.h"

#define DB_APPLICATION_ID 1380730952 /* 'RLHF' */
#define DB_BUSY_TIMEOUT_MS 5000

int db_schema_version(void) { return db_migrations_count; }

double db_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int db_busy_backoff(db *d, int attempt, double start_ms) {
    if (db_now_ms() - start_ms > (double)d->busy_wait_ms) return -1;
    double base = attempt < 7 ? (double)(1 << attempt) : 100.0; /* ms: 1, 2, 4 ... 64, 100 */
    if (base > 100.0) base = 100.0;
    double ms = base * (0.5 + rng_double(&d->rng));
    struct timespec ts = {(time_t)(ms / 1e3), (long)(ms * 1e6) % 1000000000L};
    nanosleep(&ts, NULL);
    return 0;
}

int db_fail(db *d, rlhf_error *err, const char *what) {
    int rc = sqlite3_extended_errcode(d->conn) & 0xff;
    int code = RLHF_ERR_DB;
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) code = RLHF_ERR_BUSY;
    else if (rc == SQLITE_NOMEM) code = RLHF_ERR_NOMEM;
    else if (rc == SQLITE_IOERR || rc == SQLITE_FULL || rc == SQLITE_CANTOPEN) code = RLHF_ERR_IO;
    return rlhf_errorf(err, code, "%s: %s: %s", d->path, what, sqlite3_errmsg(d->conn));
}

int db_step(db *d, sqlite3_stmt *st) {
    double start = 0;
    for (int attempt = 0;; attempt++) {
        int rc = sqlite3_step(st);
        /* Inside our own write transaction we hold the lock, so BUSY cannot be cured by
         * waiting; outside one, a read statement that met BUSY has not returned rows yet. */
        if ((rc & 0xff) != SQLITE_BUSY || d->in_transaction) return rc;
        if (attempt == 0) start = db_now_ms();
        sqlite3_reset(st);
        if (db_busy_backoff(d, attempt, start) != 0) return rc;
    }
}

sqlite3_stmt *db_stmt(db *d, enum db_stmt_id id, rlhf_error *err) {
    assert(id >= 0 && id < DB_STMT_COUNT);
    sqlite3_stmt *st = d->stmts[id];
    if (!st) {
        if (sqlite3_prepare_v3(d->conn, db_stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &st,
                               NULL) != SQLITE_OK) {
            db_fail(d, err, "preparing a statement");
            return NULL;
        }
        d->stmts[id] = st;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

/* Runs a constant statement (no user text ever reaches here), retrying while busy. */
static int exec_retry(db *d, const char *sql, const char *what, rlhf_error *err) {
    double start = db_now_ms();
    for (int attempt = 0;; attempt++) {
        int rc = sqlite3_exec(d->conn, sql, NULL, NULL, NULL);
        if (rc == SQLITE_OK) return 0;
        if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED) return db_fail(d, err, what);
        if (db_busy_backoff(d, attempt, start) != 0)
            return rlhf_errorf(err, RLHF_ERR_BUSY,
                               "%s: %s: another process kept the database busy for %d s; try again",
                               d->path, what, d->busy_wait_ms / 1000);
    }
}

/* One integer from a constant query such as "PRAGMA user_version". */
static int query_int(db *d, const char *sql, int64_t *out, rlhf_error *err) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(d->conn, sql, -1, &st, NULL) != SQLITE_OK)
        return db_fail(d, err, "reading the database header");
    int rc = db_step(d, st);
    if (rc != SQLITE_ROW) {
        db_fail(d, err, "reading the database header");
        sqlite3_finalize(st);
        return err ? err->code : RLHF_ERR_DB;
    }
    *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return 0;
}

int db_begin(db *d, rlhf_error *err) {
    assert(!d->in_transaction);
    int rc = exec_retry(d, "BEGIN IMMEDIATE", "starting a write transaction", err);
    if (rc == 0) d->in_transaction = 1;
    return rc;
}

int db_commit(db *d, rlhf_error *err) {
    assert(d->in_transaction);
    int rc = exec_retry(d, "COMMIT", "committing", err);
    if (rc != 0) {
        db_rollback(d);
        return rc;
    }
    d->in_transaction = 0;
    d->in_savepoint = 0;
    return 0;
}

void db_rollback(db *d) {
    if (!d || !d->conn) return;
    if (!sqlite3_get_autocommit(d->conn)) sqlite3_exec(d->conn, "ROLLBACK", NULL, NULL, NULL);
    d->in_transaction = 0;
    d->in_savepoint = 0;
}

int db_savepoint(db *d, rlhf_error *err) {
    assert(d->in_transaction && !d->in_savepoint);
    if (sqlite3_exec(d->conn, "SAVEPOINT record", NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(d, err, "savepoint");
    d->in_savepoint = 1;
    return 0;
}

int db_release(db *d, rlhf_error *err) {
    assert(d->in_savepoint);
    d->in_savepoint = 0;
    if (sqlite3_exec(d->conn, "RELEASE record", NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(d, err, "releasing a savepoint");
    return 0;
}

void db_rollback_to(db *d) {
    if (!d->in_savepoint) return;
    sqlite3_exec(d->conn, "ROLLBACK TO record", NULL, NULL, NULL);
    sqlite3_exec(d->conn, "RELEASE record", NULL, NULL, NULL);
    d->in_savepoint = 0;
}

static int fsync_dir_of(const char *path) {
    char *dir = strdup(path);
    if (!dir) return -1;
    char *slash = strrchr(dir, '/');
    if (slash) {
        if (slash == dir) slash[1] = '\0';
        else *slash = '\0';
    } else {
        strcpy(dir, ".");
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    free(dir);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Copies the whole database to PATH.bak-vN (or .bak-vN.1, .2, ... if that exists: an earlier
 * backup is never overwritten) through a temporary file, so a crash leaves no half backup
 * under the final name. */
static int backup_copy(db *d, int version, rlhf_error *err) {
    size_t n = strlen(d->path) + 64;
    char *tmp = malloc(n), *name = malloc(n);
    sqlite3 *dst = NULL;
    sqlite3_backup *bk = NULL;
    int rc = RLHF_ERR_NOMEM;
    if (!tmp || !name) goto fail;
    snprintf(tmp, n, "%s.bak-v%d.tmp.%ld", d->path, version, (long)getpid());
    unlink(tmp);
    if (sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        rc = rlhf_errorf(err, RLHF_ERR_IO, "%s: cannot create backup %s: %s", d->path, tmp,
                         dst ? sqlite3_errmsg(dst) : "out of memory");
        goto fail;
    }
    bk = sqlite3_backup_init(dst, "main", d->conn, "main");
    if (!bk) {
        rc = rlhf_errorf(err, RLHF_ERR_IO, "%s: backup to %s: %s", d->path, tmp, sqlite3_errmsg(dst));
        goto fail;
    }
    double start = db_now_ms();
    int step;
    for (int attempt = 0;; attempt++) {
        step = sqlite3_backup_step(bk, -1);
        if (step != SQLITE_BUSY && step != SQLITE_LOCKED) break;
        if (db_busy_backoff(d, attempt, start) != 0) break;
    }
    int finished = sqlite3_backup_finish(bk);
    bk = NULL;
    if (step == SQLITE_DONE) step = finished;
    if (step != SQLITE_OK) {
        rc = rlhf_errorf(err, RLHF_ERR_IO, "%s: backup to %s failed: %s", d->path, tmp,
                         sqlite3_errstr(step));
        goto fail;
    }
    if (sqlite3_close(dst) != SQLITE_OK) {
        rc = rlhf_errorf(err, RLHF_ERR_IO, "%s: closing backup %s failed", d->path, tmp);
        dst = NULL;
        goto fail;
    }
    dst = NULL;
    for (int i = 0;; i++) {
        if (i == 0) snprintf(name, n, "%s.bak-v%d", d->path, version);
        else snprintf(name, n, "%s.bak-v%d.%d", d->path, version, i);
        if (link(tmp, name) == 0) break;
        if (errno == EEXIST && i < 1000) continue;
        if (errno != EEXIST && !file_exists(name) && rename(tmp, name) == 0) break; /* no hard links here */
        rc = rlhf_errorf(err, RLHF_ERR_IO, "%s: cannot name the backup %s: %s", d->path, name,
                         strerror(errno));
        goto fail;
    }
    unlink(tmp);
    fsync_dir_of(name);
    free(tmp);
    d->backup_path = name;
    return 0;
fail:
    if (bk) sqlite3_backup_finish(bk);
    if (dst) sqlite3_close(dst);
    if (tmp) unlink(tmp);
    free(tmp);
    free(name);
    return rc;
}

/* Runs migrations from the version found after taking the write lock up to the newest, in one
 * transaction. */
static int migrate(db *d, rlhf_error *err) {
    int rc = db_begin(d, err);
    if (rc) return rc;
    int64_t version = 0;
    if ((rc = query_int(d, "PRAGMA user_version", &version, err))) goto fail;
    if (version > db_migrations_count) {
        rc = rlhf_errorf(err, RLHF_ERR_DB, "%s: another program upgraded it to schema version %lld meanwhile",
                         d->path, (long long)version);
        goto fail;
    }
    for (int v = (int)version + 1; v <= db_migrations_count; v++) {
        const db_migration *m = &db_migrations[v - 1];
        if (sqlite3_exec(d->conn, m->sql, NULL, NULL, NULL) != SQLITE_OK) {
            rc = db_fail(d, err, "applying migration");
            rlhf_error_prefix(err, "%s: ", m->name);
            goto fail;
        }
    }
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", db_migrations_count);
    if (sqlite3_exec(d->conn, sql, NULL, NULL, NULL) != SQLITE_OK) {
        rc = db_fail(d, err, "setting the schema version");
        goto fail;
    }
    return db_commit(d, err);
fail:
    db_rollback(d);
    return rc;
}

int db_open(db **out, const char *path, const db_open_params *p, rlhf_error *err) {
    *out = NULL;
    int rc = RLHF_ERR_NOMEM;
    db *d = calloc(1, sizeof *d);
    if (!d || !(d->path = strdup(path))) goto fail;
    d->busy_wait_ms = p && p->busy_wait_ms > 0 ? p->busy_wait_ms : 60000;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    rng_seed(&d->rng, (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_nsec);
    int memory = strcmp(path, ":memory:") == 0 || path[0] == '\0';
    int must_exist = p && p->must_exist;
    if (must_exist && !memory && !file_exists(path)) {
        rc = rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "no database at %s", path);
        goto fail;
    }
    int flags = SQLITE_OPEN_READWRITE | (must_exist ? 0 : SQLITE_OPEN_CREATE);
    if (sqlite3_open_v2(path, &d->conn, flags, NULL) != SQLITE_OK) {
        rc = rlhf_errorf(err, RLHF_ERR_IO, "cannot open database %s: %s", path,
                         d->conn ? sqlite3_errmsg(d->conn) : "out of memory");
        goto fail;
    }
    sqlite3_extended_result_codes(d->conn, 1);
    sqlite3_busy_timeout(d->conn, d->busy_wait_ms < DB_BUSY_TIMEOUT_MS ? d->busy_wait_ms : DB_BUSY_TIMEOUT_MS);
    if ((rc = exec_retry(d, "PRAGMA foreign_keys = ON", "enabling foreign keys", err))) goto fail;

    /* Decide from the header whether we may touch this file at all, before any write. */
    int64_t app_id = 0, version = 0, n_objects = 0;
    if ((rc = query_int(d, "PRAGMA application_id", &app_id, err)) ||
        (rc = query_int(d, "PRAGMA user_version", &version, err)) ||
        (rc = query_int(d, "SELECT count(*) FROM sqlite_schema", &n_objects, err))) {
        rlhf_error_prefix(err, "%s is not a readable SQLite database: ", path);
        goto fail;
    }
    if (app_id != 0 && app_id != DB_APPLICATION_ID) {
        rc = rlhf_errorf(err, RLHF_ERR_DB, "%s is an SQLite database of another program (application_id %lld), not an rlhf.c one",
                         path, (long long)app_id);
        goto fail;
    }
    if (version == 0 && n_objects > 0) {
        rc = rlhf_errorf(err, RLHF_ERR_DB, "%s is an SQLite database with tables but no rlhf.c schema version; refusing to touch it",
                         path);
        goto fail;
    }
    if (version > db_migrations_count) {
        rc = rlhf_errorf(err, RLHF_ERR_DB, "%s has schema version %lld, newer than this rlhf.c understands (%d); use a newer rlhf.c (the file was not changed)",
                         path, (long long)version, db_migrations_count);
        goto fail;
    }
    d->info.version_before = (int)version;

    if ((rc = exec_retry(d, "PRAGMA journal_mode = WAL", "switching to WAL mode", err))) goto fail;
    if ((rc = exec_retry(d, "PRAGMA synchronous = FULL", "setting synchronous mode", err))) goto fail;
    /* An import is one transaction; with SQLite's default 2 MB cache its dirty pages spill to
     * the WAL again and again (hundreds of thousands of writes for a 15 MB import). 64 MB is
     * only allocated as it is used. */
    if ((rc = exec_retry(d, "PRAGMA cache_size = -65536", "setting the cache size", err))) goto fail;
    /* The savepoint around each imported record keeps a sub-journal of the pages it touches;
     * in a temporary file that is one write() per page per record. */
    if ((rc = exec_retry(d, "PRAGMA temp_store = MEMORY", "setting temp storage", err))) goto fail;

    if (version < db_migrations_count) {
        if (version > 0 && !memory && (rc = backup_copy(d, (int)version, err))) {
            rlhf_error_prefix(err, "not migrating (backup failed): ");
            goto fail;
        }
        if ((rc = migrate(d, err))) {
            if (d->backup_path) rlhf_error_prefix(err, "migration failed, database unchanged (backup %s): ", d->backup_path);
            goto fail;
        }
    }
    int64_t now_version = 0;
    if ((rc = query_int(d, "PRAGMA user_version", &now_version, err))) goto fail;
    d->info.created = version == 0;
    d->info.version_after = (int)now_version;
    d->info.backup_path = d->backup_path;
    *out = d;
    return 0;
fail:
    if (rc == RLHF_ERR_NOMEM) rlhf_errorf(err, rc, "opening %s: out of memory", path);
    db_close(&d);
    return rc;
}

void db_close(db **dp) {
    if (!dp || !*dp) return;
    db *d = *dp;
    if (d->conn) {
        db_rollback(d);
        for (int i = 0; i < DB_STMT_COUNT; i++) sqlite3_finalize(d->stmts[i]);
        sqlite3_close(d->conn);
    }
    free(d->path);
    free(d->backup_path);
    free(d);
    *dp = NULL;
}

void db_get_open_info(const db *d, db_open_info *info) { *info = d->info; }

const char *db_path(const db *d) { return d->path; }

int db_check_integrity(db *d, db_problem_fn fn, void *ctx, rlhf_error *err) {
    static const char *const checks[] = {
        "PRAGMA integrity_check",
        "SELECT 'foreign key: ' || \"table\" || ' row ' || ifnull(rowid, '?') || ' names a missing ' || parent "
        "FROM pragma_foreign_key_check",
        "SELECT 'pair ' || p.id || ': a side answers another prompt' FROM pairs p "
        "JOIN generations c ON c.id = p.chosen_id JOIN generations r ON r.id = p.rejected_id "
        "WHERE c.prompt_id <> p.prompt_id OR r.prompt_id <> p.prompt_id",
        "SELECT 'ranking ' || ri.ranking_id || ': item answers another prompt' FROM ranking_items ri "
        "JOIN rankings k ON k.id = ri.ranking_id JOIN generations g ON g.id = ri.generation_id "
        "WHERE g.prompt_id <> k.prompt_id",
        "SELECT 'ranking ' || k.id || ': has ' || count(ri.generation_id) || ' items, k = ' || k.k FROM rankings k "
        "LEFT JOIN ranking_items ri ON ri.ranking_id = k.id GROUP BY k.id HAVING count(ri.generation_id) <> k.k",
    };
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(d->conn, checks[i], -1, &st, NULL) != SQLITE_OK)
            return db_fail(d, err, "checking the database");
        int rc;
        while ((rc = db_step(d, st)) == SQLITE_ROW) {
            const char *line = (const char *)sqlite3_column_text(st, 0);
            if (i == 0 && line && strcmp(line, "ok") == 0) continue;
            int stop = fn(ctx, line ? line : "(null)");
            if (stop) {
                sqlite3_finalize(st);
                return stop;
            }
        }
        if (rc != SQLITE_DONE) {
            int code = db_fail(d, err, "checking the database");
            sqlite3_finalize(st);
            return code;
        }
        sqlite3_finalize(st);
    }
    return 0;
}
