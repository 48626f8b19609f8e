/* db_private.h — what db.c (opening, migrating, transactions) shares with db_tables.c (the
 * table functions): the handle's layout and the cache of prepared statements. Not a public
 * header: nothing outside db/ includes it. */
#ifndef RLHF_DB_PRIVATE_H
#define RLHF_DB_PRIVATE_H

#include <sqlite3.h>

#include "db/db.h"
#include "src/core/rng.h"

/* Every statement the table functions run, prepared once on first use and kept (the SQL text
 * is in db_tables.c, in the same order). */
enum db_stmt_id {
    DB_STMT_ANNOTATOR_FIND,
    DB_STMT_ANNOTATOR_INSERT,
    DB_STMT_ANNOTATOR_NAME,
    DB_STMT_GUIDELINE_FIND,
    DB_STMT_GUIDELINE_INSERT,
    DB_STMT_MODEL_INSERT,
    DB_STMT_MODEL_FIND,
    DB_STMT_RUN_INSERT,
    DB_STMT_RUN_FINISH,
    DB_STMT_METRIC_INSERT,
    DB_STMT_PROMPT_FIND,
    DB_STMT_PROMPT_INSERT,
    DB_STMT_GENERATION_INSERT,
    DB_STMT_GENERATION_FIND,
    DB_STMT_GENERATION_GET,
    DB_STMT_GENERATIONS_EACH,
    DB_STMT_RANKING_INSERT,
    DB_STMT_RANKING_ITEM_INSERT,
    DB_STMT_RANKING_FIND,
    DB_STMT_RANKING_DELETE,
    DB_STMT_RANKINGS_EACH,
    DB_STMT_RANKING_ITEMS_EACH,
    DB_STMT_PAIR_INSERT,
    DB_STMT_PAIR_FIND_DIRECT,
    DB_STMT_PAIR_DELETE,
    DB_STMT_PAIR_UPDATE,
    DB_STMT_PAIR_GET,
    DB_STMT_PAIRS_EACH,
    DB_STMT_PAIRS_EACH_TEXT,
    DB_STMT_RATING_INSERT,
    DB_STMT_RATING_FIND,
    DB_STMT_RATING_GET,
    DB_STMT_RATING_UPDATE,
    DB_STMT_RATING_DELETE,
    DB_STMT_SKIP_INSERT,
    DB_STMT_SKIP_DELETE,
    DB_STMT_AUDIT_INSERT,
    DB_STMT_AUDIT_LAST_OPEN,
    DB_STMT_AUDIT_SET_UNDONE,
    DB_STMT_IMPORT_INSERT,
    DB_STMT_IMPORT_FINISH,
    DB_STMT_COUNTS,
    DB_STMT_COUNT
};

struct db {
    sqlite3 *conn;
    char *path;
    sqlite3_stmt *stmts[DB_STMT_COUNT];
    int in_transaction;
    int in_savepoint;
    int busy_wait_ms;
    rng_t rng; /* jitter for the busy retry loop, so two waiting processes do not collide again */
    db_open_info info;
    char *backup_path;
};

/* The SQL of each statement, indexed by enum db_stmt_id (db_tables.c). */
extern const char *const db_stmt_sql[DB_STMT_COUNT];

/* The cached statement `id`, reset and with bindings cleared; NULL with err set on failure. */
sqlite3_stmt *db_stmt(db *d, enum db_stmt_id id, rlhf_error *err);
/* sqlite3_step, retried while SQLITE_BUSY outside a write transaction (reads in WAL mode can
 * meet a checkpoint or a recovery in another process). */
int db_step(db *d, sqlite3_stmt *st);
/* Sets err from the connection's last error: "PATH: WHAT: sqlite message". Returns the code. */
int db_fail(db *d, rlhf_error *err, const char *what);
/* Sleeps a growing, jittered delay for attempt number `attempt`; returns 0 while the deadline
 * (ms since start) has not passed, -1 once it has. */
int db_busy_backoff(db *d, int attempt, double start_ms);
double db_now_ms(void);

#endif
