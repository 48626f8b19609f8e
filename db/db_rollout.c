/* db_rollout.c — the prompts the online trainers (ppo, grpo, rloo) sample from (see
 * db_prompts_each in db.h). Prepared per call like db_browse.c: it runs once per training run. */
#include "db/db_private.h"

int db_prompts_each(db *d, db_prompt_text_fn fn, void *ctx, rlhf_error *err) {
    static const char sql[] = "SELECT id, text, messages_json FROM prompts ORDER BY id";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(d->conn, sql, -1, &st, NULL) != SQLITE_OK) return db_fail(d, err, "reading prompts");
    int rc, ret = 0;
    while ((rc = db_step(d, st)) == SQLITE_ROW)
        if ((ret = fn(ctx, sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1),
                      (const char *)sqlite3_column_text(st, 2))))
            break;
    if (!ret && rc != SQLITE_DONE && rc != SQLITE_ROW) ret = db_fail(d, err, "reading prompts");
    sqlite3_finalize(st);
    return ret;
}
