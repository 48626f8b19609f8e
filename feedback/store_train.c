/* store_train.c — what training runs keep in the store for themselves: DPO's cached reference
 * log-probabilities and the runs' health warnings (see store.h; the SQL is db/db_train.c). */
#include <stdlib.h>

#include "feedback/store_private.h"

/* The store's rows as db/'s (the same fields; db/ keeps its own struct like every table). */
static db_ref_logp_row *db_rows(const store_ref_logp *rows, size_t n) {
    db_ref_logp_row *d = calloc(n ? n : 1, sizeof *d);
    for (size_t i = 0; d && i < n; i++) d[i] = (db_ref_logp_row){rows[i].ids, rows[i].mask, rows[i].n, rows[i].logp, 0};
    return d;
}

int store_ref_logps_get(store *s, const char *fingerprint, store_ref_logp *rows, size_t n, rlhf_error *err) {
    if (!fingerprint || !*fingerprint) return rlhf_errorf(err, RLHF_ERR_INVALID, "a reference cache needs a fingerprint");
    db_ref_logp_row *d = db_rows(rows, n);
    if (!d) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory reading the reference cache");
    int rc = db_ref_logps_get(s->d, fingerprint, d, n, err);
    for (size_t i = 0; !rc && i < n; i++) {
        rows[i].found = d[i].found;
        if (d[i].found) rows[i].logp = d[i].logp;
    }
    free(d);
    return rc;
}

int store_ref_logps_put(store *s, const char *fingerprint, const store_ref_logp *rows, size_t n, rlhf_error *err) {
    if (!fingerprint || !*fingerprint) return rlhf_errorf(err, RLHF_ERR_INVALID, "a reference cache needs a fingerprint");
    db_ref_logp_row *d = db_rows(rows, n);
    if (!d) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory writing the reference cache");
    int rc = db_ref_logps_put(s->d, fingerprint, d, n, err);
    free(d);
    return rc;
}

int store_ref_logps_count(store *s, const char *fingerprint, int64_t *n, rlhf_error *err) {
    return db_ref_logps_count(s->d, fingerprint, n, err);
}

int store_add_run_warning(store *s, int64_t run_id, int64_t step, const char *code, const char *message,
                          rlhf_error *err) {
    if (!code || !*code) return rlhf_errorf(err, RLHF_ERR_INVALID, "a run warning needs a code");
    return db_run_warning_insert(s->d, run_id, step, code, message, err);
}

typedef struct {
    store_run_warning_fn fn;
    void *ctx;
} warning_relay_ctx;

static int warning_relay(void *ctx, const db_run_warning_view *v) {
    warning_relay_ctx *r = ctx;
    store_run_warning w = {v->step, v->code ? v->code : "", v->message ? v->message : "", v->created_at};
    return r->fn(r->ctx, &w);
}

int store_run_warnings_each(store *s, int64_t run_id, store_run_warning_fn fn, void *ctx, rlhf_error *err) {
    warning_relay_ctx r = {fn, ctx};
    return db_run_warnings_each(s->d, run_id, warning_relay, &r, err);
}
