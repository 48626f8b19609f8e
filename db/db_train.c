/* db_train.c — tables training runs write for their own use (see "training caches and
 * warnings" in db.h): DPO's reference log-probabilities and the health warnings of runs. The
 * statements are prepared once per call (a call handles a whole batch of rows), so the shared
 * statement cache of db_tables.c does not grow. */
#include <stdlib.h>
#include <string.h>

#include "db/db_private.h"

/* 64-bit FNV-1a over the ids (little-endian) and the mask: the lookup key of a row. */
static int64_t row_key(const int32_t *ids, const uint8_t *mask, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)ids[i];
        for (int k = 0; k < 4; k++) h = (h ^ ((v >> (8 * k)) & 0xff)) * 1099511628211ull;
        h = (h ^ (mask[i] ? 1u : 0u)) * 1099511628211ull;
    }
    return (int64_t)h;
}

/* The ids as stored: int32 little-endian whatever the host's order. */
static unsigned char *ids_blob(const int32_t *ids, size_t n) {
    unsigned char *b = malloc(n * 4 + 1);
    for (size_t i = 0; b && i < n; i++) {
        uint32_t v = (uint32_t)ids[i];
        for (int k = 0; k < 4; k++) b[4 * i + (size_t)k] = (unsigned char)(v >> (8 * k));
    }
    return b;
}

static unsigned char *mask_blob(const uint8_t *mask, size_t n) {
    unsigned char *b = malloc(n + 1);
    for (size_t i = 0; b && i < n; i++) b[i] = mask[i] ? 1 : 0;
    return b;
}

/* Both blobs of a row (freed by the caller, or by SQLite when bound with free). */
static int row_blobs(const db_ref_logp_row *x, unsigned char **ids, unsigned char **mask, rlhf_error *err) {
    *ids = ids_blob(x->ids, x->n);
    *mask = mask_blob(x->mask, x->n);
    if (*ids && *mask) return 0;
    free(*ids);
    free(*mask);
    return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the reference cache");
}

int db_ref_logps_get(db *d, const char *fingerprint, db_ref_logp_row *rows, size_t n_rows, rlhf_error *err) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(d->conn,
                           "SELECT token_ids, loss_mask, logp FROM ref_logps WHERE fingerprint = ?1 AND key = ?2", -1,
                           &st, NULL) != SQLITE_OK)
        return db_fail(d, err, "reading cached reference log-probabilities");
    int ret = 0;
    for (size_t r = 0; r < n_rows && !ret; r++) {
        db_ref_logp_row *x = &rows[r];
        x->found = 0;
        unsigned char *ids, *mask;
        if ((ret = row_blobs(x, &ids, &mask, err))) break;
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, fingerprint, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, row_key(x->ids, x->mask, x->n));
        int rc = db_step(d, st);
        if (rc == SQLITE_ROW) {
            /* a hit counts only for the very same ids and mask: a hash collision is a miss */
            const void *si = sqlite3_column_blob(st, 0);
            size_t ni = (size_t)sqlite3_column_bytes(st, 0);
            const void *sm = sqlite3_column_blob(st, 1);
            size_t nm = (size_t)sqlite3_column_bytes(st, 1);
            if (ni == 4 * x->n && nm == x->n && (x->n == 0 || (memcmp(si, ids, ni) == 0 && memcmp(sm, mask, nm) == 0))) {
                x->logp = sqlite3_column_double(st, 2);
                x->found = 1;
            }
        } else if (rc != SQLITE_DONE) {
            ret = db_fail(d, err, "reading cached reference log-probabilities");
        }
        free(ids);
        free(mask);
    }
    sqlite3_finalize(st);
    return ret;
}

int db_ref_logps_put(db *d, const char *fingerprint, const db_ref_logp_row *rows, size_t n_rows, rlhf_error *err) {
    sqlite3_stmt *st = NULL;
    int ret = db_begin(d, err);
    if (ret) return ret;
    /* OR IGNORE: a key already taken (the same row, or a colliding one) keeps its value */
    if (sqlite3_prepare_v2(d->conn,
                           "INSERT OR IGNORE INTO ref_logps(fingerprint, key, token_ids, loss_mask, logp) "
                           "VALUES (?1, ?2, ?3, ?4, ?5)",
                           -1, &st, NULL) != SQLITE_OK) {
        ret = db_fail(d, err, "caching reference log-probabilities");
        db_rollback(d);
        return ret;
    }
    for (size_t r = 0; r < n_rows && !ret; r++) {
        const db_ref_logp_row *x = &rows[r];
        unsigned char *ids, *mask;
        if ((ret = row_blobs(x, &ids, &mask, err))) break;
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, fingerprint, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, row_key(x->ids, x->mask, x->n));
        sqlite3_bind_blob64(st, 3, ids, (sqlite3_uint64)x->n * 4, free);
        sqlite3_bind_blob64(st, 4, mask, (sqlite3_uint64)x->n, free);
        sqlite3_bind_double(st, 5, x->logp);
        if (db_step(d, st) != SQLITE_DONE) ret = db_fail(d, err, "caching reference log-probabilities");
    }
    sqlite3_finalize(st);
    if (ret) {
        db_rollback(d);
        return ret;
    }
    return db_commit(d, err);
}

int db_ref_logps_count(db *d, const char *fingerprint, int64_t *n, rlhf_error *err) {
    sqlite3_stmt *st = NULL;
    *n = 0;
    if (sqlite3_prepare_v2(d->conn, "SELECT count(*) FROM ref_logps WHERE ?1 IS NULL OR fingerprint = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return db_fail(d, err, "counting cached reference log-probabilities");
    sqlite3_bind_text(st, 1, fingerprint, -1, SQLITE_STATIC);
    int ret = 0;
    if (db_step(d, st) == SQLITE_ROW) *n = sqlite3_column_int64(st, 0);
    else ret = db_fail(d, err, "counting cached reference log-probabilities");
    sqlite3_finalize(st);
    return ret;
}

int db_run_warning_insert(db *d, int64_t run_id, int64_t step, const char *code, const char *message,
                          rlhf_error *err) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(d->conn, "INSERT INTO run_warnings(run_id, step, code, message) VALUES (?1, ?2, ?3, ?4)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(d, err, "recording a run warning");
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_int64(st, 2, step);
    sqlite3_bind_text(st, 3, code, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, message ? message : "", -1, SQLITE_STATIC);
    int ret = db_step(d, st) == SQLITE_DONE ? 0 : db_fail(d, err, "recording a run warning");
    sqlite3_finalize(st);
    return ret;
}

int db_run_warnings_each(db *d, int64_t run_id, db_run_warning_fn fn, void *ctx, rlhf_error *err) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(d->conn,
                           "SELECT step, code, message, created_at FROM run_warnings WHERE run_id = ?1 ORDER BY step, id",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(d, err, "reading run warnings");
    sqlite3_bind_int64(st, 1, run_id);
    int rc, ret = 0;
    while ((rc = db_step(d, st)) == SQLITE_ROW) {
        db_run_warning_view v = {sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1),
                                 (const char *)sqlite3_column_text(st, 2), (const char *)sqlite3_column_text(st, 3)};
        if ((ret = fn(ctx, &v))) break;
    }
    if (!ret && rc != SQLITE_DONE && rc != SQLITE_ROW) ret = db_fail(d, err, "reading run warnings");
    sqlite3_finalize(st);
    return ret;
}
