/* ref_cache.c — the reference cache in the feedback database (see ref_cache.h). */
#include "repl/ref_cache.h"

#include <stdlib.h>

#include "repl/out.h"

static store_ref_logp *store_rows(const pref_ref_row *rows, size_t n) {
    store_ref_logp *s = calloc(n ? n : 1, sizeof *s);
    for (size_t i = 0; s && i < n; i++) s[i] = (store_ref_logp){rows[i].ids, rows[i].mask, (size_t)rows[i].len, rows[i].logp, 0};
    return s;
}

static int cache_get(void *ctx, const char *fp, pref_ref_row *rows, size_t n, rlhf_error *err) {
    store_ref_logp *s = store_rows(rows, n);
    if (!s) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory reading the reference cache");
    int rc = store_ref_logps_get(ctx, fp, s, n, err);
    for (size_t i = 0; !rc && i < n; i++) {
        rows[i].found = s[i].found;
        if (s[i].found) rows[i].logp = s[i].logp;
    }
    free(s);
    return rc;
}

static int cache_put(void *ctx, const char *fp, const pref_ref_row *rows, size_t n, rlhf_error *err) {
    store_ref_logp *s = store_rows(rows, n);
    if (!s) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory writing the reference cache");
    int rc = store_ref_logps_put(ctx, fp, s, n, err);
    free(s);
    return rc;
}

pref_ref_cache ref_cache_in_store(store *s) { return (pref_ref_cache){cache_get, cache_put, s}; }

void ref_cache_print(size_t cached, size_t computed, const char *db_path, const char *out_dir) {
    if (cached + computed == 0) return;
    if (db_path) out_printf("reference log-probs: %zu cached, %zu computed (database %s)\n", cached, computed, db_path);
    else out_printf("reference log-probs: %zu cached, %zu computed (%s/%s)\n", cached, computed, out_dir, PREF_REF_CACHE_FILE);
}
