/* fb_seed.c — test-only tool that prepares databases for the `rlhf db` transcript test (there
 * is no user command to record rankings outside the REPL yet).
 *
 *   fb_seed arena FILE     3 models x 3 strategies, 6 prompts ranked by alice, 4 by bob, pairs by carol
 *   fb_seed v1 FILE        a database at schema version 1 with a little data (for `db migrate`)
 *   fb_seed newer FILE     a current database whose user_version says 99 (must be refused) */
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "db/migrations.h"
#include "feedback/ranking.h"
#include "feedback/store.h"

static int fail(const rlhf_error *err) {
    fprintf(stderr, "fb_seed: %s\n", err->msg);
    return 1;
}

static int arena(const char *path) {
    rlhf_error err = {0};
    store *s = NULL;
    if (store_open(&s, path, &err)) return fail(&err);
    const char *models[3] = {"base", "sft", "dpo"};
    const char *strategies[3] = {"greedy", "top-p", "beam"};
    for (int m = 0; m < 3; m++) {
        store_model sm = {.name = models[m], .family = "gpt2", .parent = m ? models[m - 1] : NULL,
                          .made_by = m == 0 ? "pretrain" : models[m]};
        if (store_add_model(s, &sm, NULL, &err)) return fail(&err);
    }
    int64_t gen[6][3];
    for (int p = 0; p < 6; p++) {
        char text[64];
        snprintf(text, sizeof text, "Tell me fact number %d.", p);
        store_prompt sp = {.text = text};
        int64_t prompt;
        if (store_add_prompt(s, &sp, &prompt, &err)) return fail(&err);
        for (int i = 0; i < 3; i++) {
            char answer[80];
            snprintf(answer, sizeof answer, "Fact %d as told by %s with %s decoding.", p, models[i], strategies[(i + p) % 3]);
            store_generation g = {.prompt_id = prompt, .model = models[i], .text = answer, .n_tokens = 12,
                                  .decoding_json = "{\"temperature\":0.8}", .strategy = strategies[(i + p) % 3],
                                  .has_seed = 1, .seed = (uint64_t)p, .logprob = -10.0, .latency_ms = 30.0};
            if (store_add_generation(s, &g, &gen[p][i], &err)) return fail(&err);
        }
    }
    /* alice: dpo > sft > base mostly; bob agrees on 3 of 4; carol judges pairs directly */
    static const char *alice[6] = {"C > B > A", "C > B > A", "C > A = B", "B > C > A", "C > B > A", "C > B > A"};
    static const char *bob[4] = {"C > B > A", "B > C > A", "C > A > B", "B > C > A"};
    store_judge ja = {.annotator = "alice", .guideline_version = "v1", .guideline_text = "Prefer true, short facts."};
    store_judge jb = {.annotator = "bob", .guideline_version = "v1", .guideline_text = "Prefer true, short facts."};
    store_judge jc = {.annotator = "carol"};
    for (int p = 0; p < 6; p++) {
        int ranks[3];
        if (ranking_parse(alice[p], 3, ranks, &err)) return fail(&err);
        if (store_add_ranking(s, &ja, gen[p], ranks, 3, NULL, &err)) return fail(&err);
    }
    for (int p = 0; p < 4; p++) {
        int ranks[3];
        if (ranking_parse(bob[p], 3, ranks, &err)) return fail(&err);
        if (store_add_ranking(s, &jb, gen[p], ranks, 3, NULL, &err)) return fail(&err);
    }
    if (store_add_pair(s, &jc, gen[0][2], gen[0][0], STORE_VERDICT_BETTER, 1, NULL, &err) ||
        store_add_pair(s, &jc, gen[1][1], gen[1][0], STORE_VERDICT_TIE, 1, NULL, &err) ||
        store_add_pair(s, &jc, gen[2][0], gen[2][1], STORE_VERDICT_BOTH_BAD, 1, NULL, &err))
        return fail(&err);
    store_close(&s);
    return 0;
}

static int raw(const char *path, const char *sql) {
    sqlite3 *c = NULL;
    int rc = sqlite3_open(path, &c);
    if (rc == SQLITE_OK) rc = sqlite3_exec(c, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK) fprintf(stderr, "fb_seed: %s\n", sqlite3_errmsg(c));
    sqlite3_close(c);
    return rc != SQLITE_OK;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: fb_seed arena|v1|newer FILE\n");
        return 2;
    }
    const char *path = argv[2];
    unlink(path);
    if (strcmp(argv[1], "arena") == 0) return arena(path);
    if (strcmp(argv[1], "v1") == 0)
        return raw(path, db_migrations[0].sql) ||
               raw(path, "PRAGMA user_version = 1; INSERT INTO annotators(name) VALUES ('alice');"
                         "INSERT INTO prompts(text) VALUES ('Why is the sky blue?');"
                         "INSERT INTO generations(prompt_id, text) VALUES (1, ' Rayleigh scattering.'), (1, ' Because.');"
                         "INSERT INTO pairs(prompt_id, chosen_id, rejected_id, verdict, annotator_id) VALUES (1, 1, 2, 'better', 1);");
    if (strcmp(argv[1], "newer") == 0) {
        rlhf_error err = {0};
        store *s = NULL;
        if (store_open(&s, path, &err)) return fail(&err);
        store_close(&s);
        return raw(path, "PRAGMA user_version = 99;");
    }
    fprintf(stderr, "fb_seed: unknown mode %s\n", argv[1]);
    return 2;
}
