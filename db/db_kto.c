/* db_kto.c — the ratings as KTO's unpaired judgements (see "ratings with their texts" in db.h).
 * Prepared per call like db_browse.c: it runs once per training run. */
#include <string.h>

#include "db/db_private.h"

int db_ratings_each_text(db *d, db_rating_text_fn fn, void *ctx, rlhf_error *err) {
    static const char sql[] =
        "SELECT t.id, ifnull(t.score, 0), t.labels, g.text, p.text, p.messages_json FROM ratings t "
        "JOIN generations g ON g.id = t.generation_id JOIN prompts p ON p.id = g.prompt_id ORDER BY t.id";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(d->conn, sql, -1, &st, NULL) != SQLITE_OK) return db_fail(d, err, "reading ratings");
    int rc, ret = 0;
    while ((rc = db_step(d, st)) == SQLITE_ROW) {
        db_rating_text_view v;
        memset(&v, 0, sizeof v);
        v.rating_id = sqlite3_column_int64(st, 0);
        v.score = sqlite3_column_int(st, 1);
        v.labels = (const char *)sqlite3_column_text(st, 2);
        v.text = (const char *)sqlite3_column_text(st, 3);
        v.prompt_text = (const char *)sqlite3_column_text(st, 4);
        v.prompt_messages_json = (const char *)sqlite3_column_text(st, 5);
        if ((ret = fn(ctx, &v))) break;
    }
    if (!ret && rc != SQLITE_DONE && rc != SQLITE_ROW) ret = db_fail(d, err, "reading ratings");
    sqlite3_finalize(st);
    return ret;
}
