/* test_store_train.c — what training runs keep in the store (feedback/store_train.c,
 * db/db_train.c): DPO's reference log-probability cache (exact values back, misses for other
 * ids, masks or reference fingerprints, a hash collision never returns the other row's value,
 * values survive reopening) and run warnings (stored and listed by run and step). */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "feedback/store.h"
#include "tests/test_util.h"

static rlhf_error g_err;

#define OK(expr)                                                                  \
    do {                                                                          \
        int rc_ = (expr);                                                         \
        CHECK(rc_ == 0, "%s returned %d: %s", #expr, rc_, g_err.msg);             \
    } while (0)

typedef struct {
    int n;
    int64_t steps[4];
    char codes[4][64];
} warnings_seen;

static int collect(void *ctx, const store_run_warning *w) {
    warnings_seen *s = ctx;
    if (s->n < 4) {
        s->steps[s->n] = w->step;
        snprintf(s->codes[s->n], sizeof s->codes[0], "%s", w->code);
    }
    s->n++;
    return 0;
}

int main(void) {
    char path[4200];
    snprintf(path, sizeof path, "%s/cache.db", test_tmpdir());
    store *s = NULL;
    OK(store_open(&s, path, &g_err));

    const int32_t a[] = {1, 5, 9, 300000, 2}, b[] = {1, 5, 9, 300000, 3};
    const uint8_t ma[] = {0, 0, 1, 1, 1}, mb[] = {0, 1, 1, 1, 1};
    store_ref_logp put[2] = {{a, ma, 5, -3.25, 0}, {b, ma, 5, -7.0 / 3.0, 0}};
    OK(store_ref_logps_put(s, "fp-one", put, 2, &g_err));
    /* the same rows again keep their values (a second run stores nothing new) */
    store_ref_logp again = {a, ma, 5, 99.0, 0};
    OK(store_ref_logps_put(s, "fp-one", &again, 1, &g_err));
    int64_t n = 0;
    OK(store_ref_logps_count(s, "fp-one", &n, &g_err));
    CHECK(n == 2, "two rows cached (%lld)", (long long)n);

    store_ref_logp get[4] = {{a, ma, 5, 0, 0}, {b, ma, 5, 0, 0}, {a, mb, 5, 0, 0}, {a, ma, 4, 0, 0}};
    OK(store_ref_logps_get(s, "fp-one", get, 4, &g_err));
    /* doubles are stored as REAL (8 bytes): the very same value comes back */
    CHECK(get[0].found && get[0].logp == -3.25, "row a found with its value (%d, %.17g)", get[0].found, get[0].logp);
    CHECK(get[1].found && get[1].logp == -7.0 / 3.0, "row b found with its exact value (%.17g)", get[1].logp);
    CHECK(!get[2].found, "the same ids with another mask are a miss");
    CHECK(!get[3].found, "a prefix of the ids is a miss");
    store_ref_logp other = {a, ma, 5, 0, 0};
    OK(store_ref_logps_get(s, "fp-two", &other, 1, &g_err));
    CHECK(!other.found, "another reference model's fingerprint is a miss");

    /* A collision: make the stored row under a's key hold other ids (as a colliding row would).
     * The lookup of a must then miss rather than return that row's value. */
    sqlite3 *raw = NULL;
    CHECK(sqlite3_open(path, &raw) == SQLITE_OK, "raw open");
    const unsigned char other_ids[20] = {7};
    sqlite3_stmt *st = NULL;
    CHECK(sqlite3_prepare_v2(raw, "UPDATE ref_logps SET token_ids = ?1 WHERE logp = -3.25", -1, &st, NULL) == SQLITE_OK,
          "prepare update");
    sqlite3_bind_blob(st, 1, other_ids, sizeof other_ids, SQLITE_STATIC);
    CHECK(sqlite3_step(st) == SQLITE_DONE && sqlite3_changes(raw) == 1, "stored row altered");
    sqlite3_finalize(st);
    sqlite3_close(raw);
    store_ref_logp coll = {a, ma, 5, 0, 0};
    OK(store_ref_logps_get(s, "fp-one", &coll, 1, &g_err));
    CHECK(!coll.found, "a row under the same key with other ids is a miss, not a wrong value");

    /* warnings */
    store_run r = {"dpo", NULL, NULL};
    int64_t run = 0;
    OK(store_add_run(s, &r, &run, &g_err));
    OK(store_add_run_warning(s, run, 12, "dpo/accuracies_at_chance", "stuck at chance", &g_err));
    OK(store_add_run_warning(s, run, 3, "dpo/accuracies_pinned", "pinned at 1", &g_err));
    CHECK(store_add_run_warning(s, run, 3, "", "x", &g_err) != 0, "a warning without a code is refused");
    store_close(&s);

    /* reopened: the cache and the warnings are still there */
    OK(store_open(&s, path, &g_err));
    store_ref_logp b2 = {b, ma, 5, 0, 0};
    OK(store_ref_logps_get(s, "fp-one", &b2, 1, &g_err));
    CHECK(b2.found && b2.logp == -7.0 / 3.0, "row b read back after reopening");
    warnings_seen w = {0};
    OK(store_run_warnings_each(s, run, collect, &w, &g_err));
    CHECK(w.n == 2 && w.steps[0] == 3 && strcmp(w.codes[0], "dpo/accuracies_pinned") == 0 && w.steps[1] == 12,
          "two warnings in step order (%d)", w.n);
    store_close(&s);
    return test_finish("store_train");
}
