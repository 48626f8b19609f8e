/* test_feedback.c — the judgement domain: rankings and their derived pairs, write-time checks,
 * undo, change, datasets, agreement, Bradley–Terry leaderboards and redaction.
 *
 * Reference values: Cohen's kappa 0.4 is the 50-application example of the Wikipedia article
 * (20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no); Krippendorff's alpha 0.743 is the nominal result
 * of the 4-observer, 12-unit example in Krippendorff (2011), "Computing Krippendorff's
 * Alpha-Reliability"; the small store case (kappa 7/11, alpha 2/3) was computed by hand and
 * checked with a direct Python implementation of both formulas. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "feedback/agreement.h"
#include "feedback/leaderboard.h"
#include "feedback/pair_check.h"
#include "feedback/ranking.h"
#include "feedback/redact.h"
#include "feedback/store.h"
#include "src/core/rng.h"
#include "tests/test_db_util.h"
#include "tests/test_util.h"

static rlhf_error g_err;

#define OK(expr)                                                                  \
    do {                                                                          \
        int rc_ = (expr);                                                         \
        CHECK(rc_ == 0, "%s returned %d: %s", #expr, rc_, g_err.msg);             \
    } while (0)

/* ---- rankings ---- */

static void test_ranking_parse(void) {
    int r[4];
    CHECK(ranking_parse("B > A = C > D", 4, r, &g_err) == 0, "parse: %s", g_err.msg);
    CHECK(r[0] == 2 && r[1] == 1 && r[2] == 2 && r[3] == 3, "B > A = C > D -> ranks %d %d %d %d", r[0], r[1], r[2], r[3]);
    CHECK(ranking_parse("b>a=c>d", 4, r, &g_err) == 0 && r[1] == 1, "lower case and no spaces parse");
    CHECK(ranking_parse("B > A > C", 4, r, &g_err) == RLHF_ERR_INVALID && strstr(g_err.msg, "D is missing"),
          "a missing candidate is named: %s", g_err.msg);
    CHECK(ranking_parse("A > A > B", 2, r, &g_err) == RLHF_ERR_INVALID && strstr(g_err.msg, "twice"), "a repeat is refused");
    CHECK(ranking_parse("A > E", 2, r, &g_err) == RLHF_ERR_INVALID, "an unknown label is refused");
    CHECK(ranking_parse("A >", 2, r, &g_err) == RLHF_ERR_INVALID, "a dangling '>' is refused");
    CHECK(ranking_parse("A < B", 2, r, &g_err) == RLHF_ERR_INVALID, "'<' is refused (rankings read best first)");
    char shown[64];
    int ranks[4] = {2, 1, 2, 3};
    ranking_format(ranks, 4, shown, sizeof shown);
    CHECK(strcmp(shown, "B > A = C > D") == 0, "format gives back the spec: %s", shown);
    int sparse[4] = {1, 7, 3, 3};
    CHECK(ranking_normalize(sparse, 4, &g_err) == 0 && sparse[0] == 1 && sparse[1] == 3 && sparse[2] == 2 && sparse[3] == 2,
          "normalize: 1 7 3 3 -> 1 3 2 2");
}

/* For every weak ordering of k = 1..5 candidates (every rank vector in 1..k), the derived
 * pairs are exactly the untied pairs, oriented by rank, with margin = rank distance, and
 * pairs + ties = k(k-1)/2. */
static void test_ranking_enumerate(void) {
    size_t checked = 0;
    for (int k = 2; k <= 5; k++) {
        int total = 1;
        for (int i = 0; i < k; i++) total *= k;
        for (int code = 0; code < total; code++) {
            int ranks[5], c = code;
            for (int i = 0; i < k; i++) {
                ranks[i] = 1 + c % k;
                c /= k;
            }
            int dense[5];
            memcpy(dense, ranks, sizeof dense);
            if (ranking_normalize(dense, k, NULL) != 0) continue;
            ranking_pair pairs[10];
            size_t tied = 0, n = ranking_derive_pairs(dense, k, pairs, &tied);
            size_t expect_pairs = 0, expect_tied = 0, p = 0;
            int good = 1;
            for (int i = 0; i < k; i++)
                for (int j = i + 1; j < k; j++) {
                    if (dense[i] == dense[j]) {
                        expect_tied++;
                        continue;
                    }
                    expect_pairs++;
                    int better = dense[i] < dense[j] ? i : j, worse = better == i ? j : i;
                    if (p >= n || pairs[p].chosen != better || pairs[p].rejected != worse ||
                        pairs[p].margin != dense[worse] - dense[better])
                        good = 0;
                    p++;
                }
            checked++;
            if (!good || n != expect_pairs || tied != expect_tied || n + tied != (size_t)(k * (k - 1) / 2)) {
                CHECK(0, "k=%d code=%d: derived %zu pairs %zu tied, expected %zu %zu", k, code, n, tied,
                      expect_pairs, expect_tied);
                return;
            }
        }
    }
    CHECK(checked > 3000, "enumerated %zu rankings", checked);
}

/* ---- a store with a few prompts and generations ---- */

typedef struct {
    store *s;
    char path[4200];
    int64_t prompt[3];
    int64_t gen[3][4]; /* gen[p][i]: generation i of prompt p */
} fixture;

static void fixture_open(fixture *f, const char *name) {
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s/%s", test_tmpdir(), name);
    unlink(f->path);
    OK(store_open(&f->s, f->path, &g_err));
    store_model models[] = {{"base", "models/base", "gpt2", NULL, NULL, 0},
                            {"sft-1", "models/sft-1", "gpt2", "base", "sft", 0},
                            {"dpo-1", "models/dpo-1", "gpt2", "sft-1", "dpo", 0}};
    for (int i = 0; i < 3; i++) OK(store_add_model(f->s, &models[i], NULL, &g_err));
    const char *strategies[4] = {"greedy", "top-p", "beam", "top-p"};
    const char *model_of[4] = {"base", "sft-1", "dpo-1", "base"};
    for (int p = 0; p < 3; p++) {
        char text[64];
        snprintf(text, sizeof text, "Question %d: what is %d + %d?", p, p, p);
        store_prompt pr = {.text = text, .tags = "math"};
        OK(store_add_prompt(f->s, &pr, &f->prompt[p], &g_err));
        for (int i = 0; i < 4; i++) {
            char answer[64];
            snprintf(answer, sizeof answer, "The answer is %d (candidate %c).", 2 * p, 'A' + i);
            int32_t ids[3] = {464, 3280, 318 + i};
            store_generation g = {
                .prompt_id = f->prompt[p], .model = model_of[i], .text = answer, .n_tokens = 3,
                .token_ids = ids, .n_token_ids = 3, .decoding_json = "{\"temperature\":0.7,\"top_p\":0.9}",
                .strategy = strategies[i], .has_seed = 1, .seed = 42u + (uint64_t)i, .logprob = -3.5,
                .latency_ms = 12.5,
            };
            OK(store_add_generation(f->s, &g, &f->gen[p][i], &g_err));
        }
    }
}

/* Every row of every table, for "undo restores the previous state exactly". Two are left out on
 * purpose: `audit`, which records the judgement and its undo (that is its job), and SQLite's
 * internal sqlite_sequence, which remembers the highest id handed out so that an undone
 * judgement's id is never reused (the audit log keeps naming it). */
static char *dump(const fixture *f) { return test_dump_db(f->path, "audit"); }

/* Pairs stored for a ranking as "chosen>rejected:margin" generation indices, sorted. */
static void ranking_pairs(const fixture *f, int p, int64_t ranking_id, char *out, size_t size) {
    char sql[256];
    out[0] = '\0';
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
            snprintf(sql, sizeof sql,
                     "SELECT margin FROM pairs WHERE ranking_id = %lld AND chosen_id = %lld AND rejected_id = %lld AND verdict = 'better'",
                     (long long)ranking_id, (long long)f->gen[p][a], (long long)f->gen[p][b]);
            long long m = test_query_int(f->path, sql);
            if (m > 0) {
                char one[40];
                snprintf(one, sizeof one, "%s%c>%c:%lld", out[0] ? " " : "", 'A' + a, 'A' + b, m);
                strncat(out, one, size - strlen(out) - 1);
            }
        }
}

static void test_store_ranking(void) {
    fixture f;
    fixture_open(&f, "ranking.db");
    store_judge alice = {.annotator = "alice", .guideline_version = "v1", .guideline_text = "prefer correct answers"};
    int ranks[4];
    CHECK(ranking_parse("B > A = C > D", 4, ranks, &g_err) == 0, "parse");
    store_added added;
    OK(store_add_ranking(f.s, &alice, f.gen[0], ranks, 4, &added, &g_err));
    CHECK(added.n_pairs == 5 && added.n_tied == 1, "B > A = C > D: 5 pairs, 1 tie (got %zu, %zu)", added.n_pairs, added.n_tied);
    char got[256];
    ranking_pairs(&f, 0, added.id, got, sizeof got);
    /* every untied pair oriented by rank, margin = rank distance; A = C absent */
    CHECK(strcmp(got, "A>D:1 B>A:1 B>C:1 B>D:2 C>D:1") == 0, "derived pairs of B > A = C > D: %s", got);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM ranking_items WHERE ranking_id = %lld", (long long)added.id);
    CHECK(test_query_int(f.path, sql) == 4, "4 ranking items stored");
    snprintf(sql, sizeof sql, "SELECT n_tied_pairs FROM rankings WHERE id = %lld", (long long)added.id);
    CHECK(test_query_int(f.path, sql) == 1, "the tie is counted on the ranking");
    snprintf(sql, sizeof sql, "SELECT count(*) FROM rankings r JOIN guidelines g ON g.id = r.guideline_id WHERE r.id = %lld AND g.version = 'v1'",
             (long long)added.id);
    CHECK(test_query_int(f.path, sql) == 1, "the guideline is stored with the judgement");
    CHECK(test_query_int(f.path, "SELECT count(*) FROM audit WHERE action = 'add' AND kind = 'ranking'") == 1,
          "the ranking is in the audit log");

    /* an all-tied ranking derives nothing */
    int tied[3] = {1, 1, 1};
    OK(store_add_ranking(f.s, &alice, f.gen[1], tied, 3, &added, &g_err));
    CHECK(added.n_pairs == 0 && added.n_tied == 3, "A = B = C: 0 pairs, 3 ties");

    /* duplicate: the same set again by the same annotator */
    int again[4] = {1, 2, 3, 4};
    CHECK(store_add_ranking(f.s, &alice, f.gen[0], again, 4, &added, &g_err) == RLHF_ERR_INVALID &&
              strstr(g_err.msg, "duplicate") && strstr(g_err.msg, "alice"),
          "a repeated ranking is refused with a clear message: %s", g_err.msg);
    store_judge bob = {.annotator = "bob"};
    OK(store_add_ranking(f.s, &bob, f.gen[0], again, 4, &added, &g_err));
    store_judge alice_force = alice;
    alice_force.allow_flagged = 1;
    OK(store_add_ranking(f.s, &alice_force, f.gen[0], again, 4, &added, &g_err));
    CHECK(strstr(added.flags, "duplicate") != NULL, "stored flagged when allowed: %s", added.flags);

    /* generations of two prompts cannot be ranked together */
    int64_t mixed[2] = {f.gen[0][0], f.gen[1][0]};
    int two[2] = {1, 2};
    CHECK(store_add_ranking(f.s, &alice, mixed, two, 2, &added, &g_err) == RLHF_ERR_INVALID && strstr(g_err.msg, "one prompt"),
          "ranking across prompts refused: %s", g_err.msg);
    int64_t missing[2] = {f.gen[0][0], 99999};
    CHECK(store_add_ranking(f.s, &alice, missing, two, 2, &added, &g_err) == RLHF_ERR_NOT_FOUND && strstr(g_err.msg, "99999"),
          "unknown generation named: %s", g_err.msg);
    store_close(&f.s);
}

static void test_pair_checks(void) {
    CHECK(pair_check_leak("Sure!<|endoftext|>") && strcmp(pair_check_leak("x<|im_start|>user"), "<|im_start|>") == 0,
          "special tokens are found");
    CHECK(pair_check_leak("fine.\n\nHuman: and now?") != NULL, "a dialogue marker inside a reply is found");
    CHECK(pair_check_leak(" Human: I think") != NULL, "a reply opening with another role is found");
    CHECK(pair_check_leak("[INST] do it [/INST]") && pair_check_leak("<s>hello"), "Llama markers are found");
    CHECK(pair_check_leak("I like <b>bold</b> text and humans: they're nice.") == NULL, "ordinary text passes");
    char reason[256] = "", flags[64] = "";
    CHECK(pair_check_text(" \n\t", "the chosen response", "chosen", reason, sizeof reason, flags, sizeof flags) == PAIR_CHECK_EMPTY,
          "whitespace-only is empty");
    CHECK(strcmp(flags, "empty:chosen") == 0 && strstr(reason, "chosen response is empty"), "flag and reason: %s / %s", flags, reason);

    fixture f;
    fixture_open(&f, "checks.db");
    store_judge j = {.annotator = "carol"};
    /* a prompt whose candidates are broken in each way */
    store_prompt pr = {.text = "Say hi."};
    int64_t prompt, same1, same2, empty, leak, good;
    OK(store_add_prompt(f.s, &pr, &prompt, &g_err));
    store_generation g = {.prompt_id = prompt, .text = "Hi!", .n_tokens = -1, .logprob = NAN, .latency_ms = NAN};
    OK(store_add_generation(f.s, &g, &same1, &g_err));
    OK(store_add_generation(f.s, &g, &same2, &g_err));
    g.text = "   ";
    OK(store_add_generation(f.s, &g, &empty, &g_err));
    g.text = "Hi!<|im_end|>\n<|im_start|>user";
    OK(store_add_generation(f.s, &g, &leak, &g_err));
    g.text = "Hello there.";
    OK(store_add_generation(f.s, &g, &good, &g_err));
    char *before = dump(&f);
    store_added a;
    CHECK(store_add_pair(f.s, &j, same1, same2, STORE_VERDICT_BETTER, 1, &a, &g_err) == RLHF_ERR_INVALID &&
              strstr(g_err.msg, "identical"),
          "identical sides refused: %s", g_err.msg);
    CHECK(store_add_pair(f.s, &j, good, empty, STORE_VERDICT_BETTER, 1, &a, &g_err) == RLHF_ERR_INVALID &&
              strstr(g_err.msg, "rejected response is empty"),
          "empty side refused: %s", g_err.msg);
    CHECK(store_add_pair(f.s, &j, leak, good, STORE_VERDICT_BETTER, 1, &a, &g_err) == RLHF_ERR_INVALID &&
              strstr(g_err.msg, "<|im_end|>"),
          "leaking special token refused and named: %s", g_err.msg);
    CHECK(store_add_pair(f.s, &j, good, good, STORE_VERDICT_BETTER, 1, &a, &g_err) == RLHF_ERR_INVALID,
          "a generation against itself is refused");
    char *after = dump(&f);
    CHECK(strcmp(before, after) == 0, "refused judgements leave no trace");
    free(before);
    free(after);
    /* both-bad is how an annotator marks exactly such a pair */
    OK(store_add_pair(f.s, &j, good, empty, STORE_VERDICT_BOTH_BAD, 1, &a, &g_err));
    CHECK(a.flags[0] == '\0', "both-bad with an empty side is not flagged");
    j.allow_flagged = 1;
    OK(store_add_pair(f.s, &j, leak, good, STORE_VERDICT_BETTER, 1, &a, &g_err));
    CHECK(strcmp(a.flags, "leak:chosen") == 0, "stored with a flag when allowed: %s", a.flags);
    j.allow_flagged = 0;
    CHECK(store_add_pair(f.s, &j, good, leak, STORE_VERDICT_BETTER, 1, &a, &g_err) == RLHF_ERR_INVALID &&
              strstr(g_err.msg, "duplicate") && strstr(g_err.msg, "carol"),
          "the same pair again by the same annotator (either order) is a duplicate: %s", g_err.msg);
    OK(store_add_rating(f.s, &j, good, 4, "helpful", &a, &g_err));
    CHECK(store_add_rating(f.s, &j, good, 5, NULL, &a, &g_err) == RLHF_ERR_INVALID && strstr(g_err.msg, "already rated"),
          "a second rating of one generation is a duplicate: %s", g_err.msg);
    CHECK(store_add_rating(f.s, &j, empty, 6, NULL, &a, &g_err) == RLHF_ERR_INVALID, "score 6 refused");
    CHECK(store_add_rating(f.s, &j, empty, 0, "Unsafe!", &a, &g_err) == RLHF_ERR_INVALID, "malformed labels refused");
    OK(store_add_rating(f.s, &j, empty, 1, "unsafe,incorrect,off-topic", &a, &g_err));
    store_close(&f.s);
}

/* ---- undo and change ---- */

static void test_undo(void) {
    fixture f;
    fixture_open(&f, "undo.db");
    store_judge alice = {.annotator = "alice", .guideline_version = "v2", .guideline_text = "be strict", .comment = "first pass"};
    store_judge bob = {.annotator = "bob"};
    store_added a;
    /* both annotators and the guideline exist before the states compared */
    OK(store_add_skip(f.s, &alice, f.prompt[2], "not sure", &a, &g_err));
    OK(store_add_pair(f.s, &bob, f.gen[2][0], f.gen[2][1], STORE_VERDICT_TIE, 1, &a, &g_err));
    char *s0 = dump(&f);

    int ranks[4] = {2, 1, 2, 3};
    OK(store_add_ranking(f.s, &alice, f.gen[0], ranks, 4, &a, &g_err));
    int64_t ranking = a.id;
    store_undone u;
    OK(store_undo_last(f.s, "alice", &u, &g_err));
    CHECK(strcmp(u.kind, "ranking") == 0 && strcmp(u.action, "add") == 0 && u.target_id == ranking, "undo names the ranking");
    char *s1 = dump(&f);
    CHECK(strcmp(s0, s1) == 0, "undo of a ranking restores every table exactly (items and derived pairs gone)");
    free(s1);
    CHECK(test_query_int(f.path, "SELECT count(*) FROM audit WHERE action = 'undo' AND kind = 'ranking'") == 1,
          "the undo is in the audit log");

    /* several actions undo last-first, and bob's judgements are not touched */
    OK(store_add_pair(f.s, &alice, f.gen[1][0], f.gen[1][1], STORE_VERDICT_BETTER, 2, &a, &g_err));
    OK(store_add_rating(f.s, &alice, f.gen[1][0], 5, "helpful", &a, &g_err));
    OK(store_add_skip(f.s, &alice, f.prompt[1], NULL, &a, &g_err));
    OK(store_add_pair(f.s, &bob, f.gen[1][2], f.gen[1][3], STORE_VERDICT_BETTER, 1, &a, &g_err));
    OK(store_undo_last(f.s, "alice", &u, &g_err));
    CHECK(strcmp(u.kind, "skip") == 0, "last first: the skip (%s)", u.kind);
    OK(store_undo_last(f.s, "alice", &u, &g_err));
    CHECK(strcmp(u.kind, "rating") == 0, "then the rating (%s)", u.kind);
    OK(store_undo_last(f.s, "alice", &u, &g_err));
    CHECK(strcmp(u.kind, "pair") == 0, "then the pair (%s)", u.kind);
    OK(store_undo_last(f.s, "bob", &u, &g_err));
    char *s2 = dump(&f);
    CHECK(strcmp(s0, s2) == 0, "after undoing everything since, every table is as it was");
    free(s2);

    /* a change is reverted to the exact previous values */
    OK(store_add_pair(f.s, &alice, f.gen[1][0], f.gen[1][1], STORE_VERDICT_BETTER, 2, &a, &g_err));
    int64_t pair = a.id;
    OK(store_add_rating(f.s, &alice, f.gen[1][1], 2, "incorrect", &a, &g_err));
    int64_t rating = a.id;
    char *s3 = dump(&f);
    store_judge alice2 = alice;
    alice2.comment = "changed my mind";
    OK(store_change_pair(f.s, &alice2, pair, f.gen[1][1], f.gen[1][0], STORE_VERDICT_BETTER, 1, &g_err));
    OK(store_change_rating(f.s, &alice2, rating, 4, NULL, &g_err));
    char *s4 = dump(&f);
    CHECK(strcmp(s3, s4) != 0, "the changes changed something");
    free(s4);
    CHECK(store_change_pair(f.s, &bob, pair, f.gen[1][0], f.gen[1][1], STORE_VERDICT_TIE, 1, &g_err) == RLHF_ERR_INVALID &&
              strstr(g_err.msg, "own"),
          "bob cannot change alice's pair: %s", g_err.msg);
    OK(store_undo_last(f.s, "alice", &u, &g_err));
    CHECK(strcmp(u.action, "change") == 0 && strcmp(u.kind, "rating") == 0, "undo reverts the rating change first");
    OK(store_undo_last(f.s, "alice", &u, &g_err));
    CHECK(strcmp(u.action, "change") == 0 && strcmp(u.kind, "pair") == 0, "then the pair change");
    char *s5 = dump(&f);
    CHECK(strcmp(s3, s5) == 0, "undoing changes restores the exact previous values");
    free(s5);
    OK(store_undo_last(f.s, "alice", &u, &g_err));
    OK(store_undo_last(f.s, "alice", &u, &g_err));
    OK(store_undo_last(f.s, "alice", &u, &g_err)); /* the very first skip */
    CHECK(store_undo_last(f.s, "alice", &u, &g_err) == RLHF_ERR_NOT_FOUND && strstr(g_err.msg, "nothing to undo"),
          "nothing left to undo: %s", g_err.msg);
    CHECK(store_undo_last(f.s, "nobody", &u, &g_err) == RLHF_ERR_NOT_FOUND, "unknown annotator: nothing to undo");
    /* a derived pair cannot be changed on its own */
    OK(store_add_ranking(f.s, &alice, f.gen[0], ranks, 4, &a, &g_err));
    long long derived = test_query_int(f.path, "SELECT min(id) FROM pairs WHERE ranking_id IS NOT NULL");
    CHECK(store_change_pair(f.s, &alice, derived, f.gen[0][0], f.gen[0][1], STORE_VERDICT_TIE, 1, &g_err) == RLHF_ERR_INVALID &&
              strstr(g_err.msg, "ranking"),
          "changing a derived pair is refused: %s", g_err.msg);
    free(s0);
    free(s3);
    store_close(&f.s);
}

/* ---- datasets ---- */

static void test_datasets(void) {
    fixture f;
    fixture_open(&f, "datasets.db");
    store_judge alice = {.annotator = "alice"}, bob = {.annotator = "bob"};
    store_added a;
    int r1[4] = {2, 1, 2, 3}; /* B > A = C > D */
    OK(store_add_ranking(f.s, &alice, f.gen[0], r1, 4, &a, &g_err));
    int r2[4] = {1, 2, 3, 4}; /* A > B > C > D */
    OK(store_add_ranking(f.s, &bob, f.gen[0], r2, 4, &a, &g_err));
    int r3[3] = {3, 1, 2};    /* B > C > A, prompt 1 */
    OK(store_add_ranking(f.s, &bob, f.gen[1], r3, 3, &a, &g_err));
    OK(store_add_pair(f.s, &alice, f.gen[2][0], f.gen[2][1], STORE_VERDICT_BETTER, 1, &a, &g_err));
    OK(store_add_pair(f.s, &alice, f.gen[2][2], f.gen[2][3], STORE_VERDICT_TIE, 1, &a, &g_err));
    OK(store_add_pair(f.s, &bob, f.gen[2][2], f.gen[2][3], STORE_VERDICT_BOTH_BAD, 1, &a, &g_err));

    pref_dataset d;
    pref_dataset_init(&d);
    OK(store_get_pref_dataset(f.s, NULL, &d, &g_err));
    CHECK(d.n == 5 + 6 + 3 + 1, "5 + 6 + 3 derived pairs and 1 direct preference; ties and both-bad left out (got %zu)", d.n);
    int found = 0;
    for (size_t i = 0; i < d.n; i++)
        if (strstr(d.pairs[i].chosen, "candidate B") && strstr(d.pairs[i].rejected, "candidate D") &&
            strcmp(d.pairs[i].annotator, "alice") == 0 && strstr(d.pairs[i].prompt, "Question 0"))
            found += d.pairs[i].margin == 2.0 && d.pairs[i].weight == 1.0;
    CHECK(found == 1, "alice's B > D pair carries prompt, texts, annotator and margin 2");
    pref_dataset_free(&d);
    pref_dataset_free(&d); /* safe twice */
    store_pref_query q = {.normalize_rankings = 1, .annotator = "bob"};
    OK(store_get_pref_dataset(f.s, &q, &d, &g_err));
    CHECK(d.n == 9, "bob's 9 pairs (got %zu)", d.n);
    double total = 0;
    for (size_t i = 0; i < d.n; i++) total += d.pairs[i].weight;
    CHECK_CLOSE(total, 2.0, 1e-12, 0, "normalised weights: each untied ranking sums to 1");
    pref_dataset_free(&d);

    sft_dataset sft;
    sft_dataset_init(&sft);
    OK(store_get_sft_dataset(f.s, NULL, &sft, &g_err));
    /* prompt 0: A first once (bob), B first once (alice); mean ranks A 1.5, B 1.5 -> lower id A.
     * prompt 1: B first. */
    CHECK(sft.n == 2, "one best-ranked example per ranked prompt (got %zu)", sft.n);
    if (sft.n == 2) {
        CHECK(strstr(sft.examples[0].completion, "candidate A") != NULL, "prompt 0 best: %s", sft.examples[0].completion);
        CHECK(strstr(sft.examples[1].completion, "candidate B") != NULL, "prompt 1 best: %s", sft.examples[1].completion);
    }
    sft_dataset_free(&sft);

    store_counts c;
    OK(store_get_counts(f.s, &c, &g_err));
    CHECK(c.rankings == 3 && c.pairs == 5 + 6 + 3 + 3 && c.pairs_derived == 14 && c.tied_pairs_excluded == 1 &&
              c.pairs_tie == 1 && c.pairs_both_bad == 1 && c.annotators == 2 && c.models == 3 && c.generations == 12,
          "counts add up");
    store_check_report rep;
    OK(store_check(f.s, &rep, &g_err));
    CHECK(rep.n == 0, "check finds nothing wrong (%zu: %s)", rep.n, rep.n ? rep.problems[0] : "");
    store_check_report_free(&rep);

    /* runs and metrics */
    int64_t run;
    store_run rr = {.kind = "dpo", .input_model = "sft-1", .config_json = "{\"beta\":0.1}"};
    OK(store_add_run(f.s, &rr, &run, &g_err));
    for (int step = 0; step < 3; step++) OK(store_add_metric(f.s, run, step, "loss", 0.7 - 0.1 * step, &g_err));
    OK(store_add_metric(f.s, run, 3, "loss", NAN, &g_err));
    store_model m = {.name = "dpo-2", .path = "models/dpo-2", .parent = "sft-1", .made_by = "dpo", .run_id = run};
    OK(store_add_model(f.s, &m, NULL, &g_err));
    OK(store_finish_run(f.s, run, "done", "dpo-2", &g_err));
    CHECK(test_query_int(f.path, "SELECT count(*) FROM runs r JOIN models m ON m.id = r.output_model_id WHERE r.status = 'done' AND m.name = 'dpo-2' AND r.ended_at IS NOT NULL") == 1,
          "a finished run names its output model");
    CHECK(store_add_run(f.s, &(store_run){.kind = "magic"}, NULL, &g_err) == RLHF_ERR_INVALID, "unknown run kind refused");
    CHECK(store_add_model(f.s, &(store_model){.name = "x", .parent = "nope"}, NULL, &g_err) == RLHF_ERR_NOT_FOUND &&
              strstr(g_err.msg, "nope"),
          "unknown parent model named: %s", g_err.msg);
    store_close(&f.s);
}

/* ---- agreement ---- */

static void test_agreement_math(void) {
    /* Wikipedia: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> kappa 0.4, observed 0.7 */
    int a[50], b[50], n = 0;
    for (int i = 0; i < 20; i++, n++) a[n] = 1, b[n] = 1;
    for (int i = 0; i < 5; i++, n++) a[n] = 1, b[n] = 0;
    for (int i = 0; i < 10; i++, n++) a[n] = 0, b[n] = 1;
    for (int i = 0; i < 15; i++, n++) a[n] = 0, b[n] = 0;
    double observed;
    CHECK_CLOSE(agreement_cohen_kappa(a, b, 50, 2, &observed), 0.4, 1e-12, 0, "kappa of the Wikipedia example");
    CHECK_CLOSE(observed, 0.7, 1e-12, 0, "observed agreement");
    int same[3] = {1, 1, 1};
    CHECK(isnan(agreement_cohen_kappa(same, same, 3, 2, NULL)), "kappa undefined when chance agreement is 1");
    /* Krippendorff (2011): 4 observers, 12 units, values 1..5 (0 = missing) */
    static const int obs[4][12] = {{1, 2, 3, 3, 2, 1, 4, 1, 2, 0, 0, 0},
                                   {1, 2, 3, 3, 2, 2, 4, 1, 2, 5, 0, 3},
                                   {0, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, 0},
                                   {1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, 0}};
    agreement_value v[48];
    size_t nv = 0, pairable = 0;
    for (int o = 0; o < 4; o++)
        for (int u = 0; u < 12; u++)
            if (obs[o][u]) v[nv++] = (agreement_value){(size_t)u, obs[o][u] - 1};
    double alpha = agreement_krippendorff_alpha(v, nv, 5, &pairable);
    CHECK_CLOSE(alpha, 0.743421052631579, 1e-12, 0, "alpha of Krippendorff's nominal example (0.743)");
    CHECK(pairable == 40, "unit 12 has one value and is not pairable: %zu", pairable);
}

static void test_agreement_store(void) {
    fixture f;
    fixture_open(&f, "agreement.db");
    store_judge alice = {.annotator = "alice"}, bob = {.annotator = "bob"};
    store_added a;
    /* items on prompt 2: (g0,g1) (g2,g3); prompt 1: (g0,g1) (g2,g3); labels over the lower id:
     * alice 0 1 0 2, bob 0 1 1 2 -> kappa 7/11, alpha 2/3 */
    int64_t (*g)[4] = f.gen;
    OK(store_add_pair(f.s, &alice, g[2][0], g[2][1], STORE_VERDICT_BETTER, 1, &a, &g_err));
    OK(store_add_pair(f.s, &alice, g[2][3], g[2][2], STORE_VERDICT_BETTER, 1, &a, &g_err));
    OK(store_add_pair(f.s, &alice, g[1][0], g[1][1], STORE_VERDICT_BETTER, 1, &a, &g_err));
    OK(store_add_pair(f.s, &alice, g[1][2], g[1][3], STORE_VERDICT_TIE, 1, &a, &g_err));
    int r_bob[2] = {1, 2};
    OK(store_add_ranking(f.s, &bob, g[2], r_bob, 2, &a, &g_err)); /* g0 > g1: label 0 via a ranking */
    OK(store_add_pair(f.s, &bob, g[2][3], g[2][2], STORE_VERDICT_BETTER, 1, &a, &g_err));
    OK(store_add_pair(f.s, &bob, g[1][1], g[1][0], STORE_VERDICT_BETTER, 1, &a, &g_err));
    int r_tie[2] = {1, 1};
    OK(store_add_ranking(f.s, &bob, &g[1][2], r_tie, 2, &a, &g_err)); /* a tie from a ranking counts as tie */
    store_judge carol = {.annotator = "carol"};
    OK(store_add_pair(f.s, &carol, g[0][0], g[0][1], STORE_VERDICT_BETTER, 1, &a, &g_err)); /* judged once: unpaired */
    store_agreement ag;
    OK(store_get_agreement(f.s, &ag, &g_err));
    CHECK(ag.n_items == 4 && ag.n_judgements == 8 && ag.n_annotators == 2, "4 items judged twice (%zu, %zu, %zu)",
          ag.n_items, ag.n_judgements, ag.n_annotators);
    CHECK(ag.n_pairs == 1, "one annotator pair (%zu)", ag.n_pairs);
    if (ag.n_pairs == 1) {
        CHECK(strcmp(ag.pairs[0].annotator_a, "alice") == 0 && strcmp(ag.pairs[0].annotator_b, "bob") == 0, "alice / bob");
        CHECK_CLOSE(ag.pairs[0].kappa, 7.0 / 11.0, 1e-12, 0, "kappa alice/bob");
        CHECK_CLOSE(ag.pairs[0].observed, 0.75, 1e-12, 0, "observed alice/bob");
    }
    CHECK_CLOSE(ag.alpha, 2.0 / 3.0, 1e-12, 0, "alpha over the store");
    store_agreement_free(&ag);
    store_close(&f.s);
}

/* ---- Bradley-Terry ---- */

static void test_bradley_terry(void) {
    /* two players, 3 wins to 1: the MLE ratio is 3, so theta = +-ln(3)/2 */
    leaderboard_game g2[4] = {{0, 1, 1}, {0, 1, 1}, {1, 0, 0}, {1, 0, 1}};
    double theta[4], lo[4], hi[4], lo2[4], hi2[4];
    CHECK(leaderboard_fit(g2, 4, 2, 0.0, theta, &g_err) == 0, "fit");
    CHECK_CLOSE(theta[0], log(3.0) / 2, 1e-8, 0, "3:1 record gives strength ratio 3");
    /* a tie counts half: 1 win + 2 ties vs 0 wins -> 2 : 1 */
    leaderboard_game g3[3] = {{0, 1, 1}, {0, 1, 0.5}, {0, 1, 0.5}};
    CHECK(leaderboard_fit(g3, 3, 2, 0.0, theta, &g_err) == 0, "fit with ties");
    CHECK_CLOSE(theta[0] - theta[1], log(2.0), 1e-8, 0, "1 win + 2 half-wins : 1 half-win -> ratio 2");

    /* synthetic: known strengths, 4000 games between random pairs */
    const double truth[4] = {-1.0, -0.3, 0.2, 1.1}; /* mean 0, as fitted thetas are */
    enum { N = 4000 };
    static leaderboard_game games[N];
    rng_t r;
    rng_seed(&r, 7);
    for (int i = 0; i < N; i++) {
        int a = (int)rng_below(&r, 4), b = (int)rng_below(&r, 3);
        if (b >= a) b++;
        double p = 1.0 / (1.0 + exp(truth[b] - truth[a]));
        games[i] = (leaderboard_game){a, b, rng_double(&r) < p ? 1.0 : 0.0};
    }
    CHECK(leaderboard_fit(games, N, 4, 1.0, theta, &g_err) == 0, "fit synthetic");
    CHECK(theta[0] < theta[1] && theta[1] < theta[2] && theta[2] < theta[3], "order recovered: %.3f %.3f %.3f %.3f",
          theta[0], theta[1], theta[2], theta[3]);
    /* level 0.99 so that all four intervals covering the truth is the expected outcome (about 96%
     * for independent intervals) rather than a coin flip; the seed makes it reproducible */
    CHECK(leaderboard_bootstrap(games, N, 4, 1.0, 300, 11, 0.99, lo, hi, &g_err) == 0, "bootstrap");
    for (int i = 0; i < 4; i++) {
        CHECK(lo[i] <= truth[i] && truth[i] <= hi[i], "player %d: 99%% interval [%.3f, %.3f] contains %.2f", i, lo[i],
              hi[i], truth[i]);
        CHECK(hi[i] - lo[i] < 0.5, "player %d: interval narrower than 0.5 with 4000 games (%.3f)", i, hi[i] - lo[i]);
        CHECK(lo[i] <= theta[i] && theta[i] <= hi[i], "player %d: the fit lies inside its interval", i);
    }
    CHECK(leaderboard_bootstrap(games, N, 4, 1.0, 300, 11, 0.99, lo2, hi2, &g_err) == 0 &&
              memcmp(lo, lo2, sizeof lo) == 0 && memcmp(hi, hi2, sizeof hi) == 0,
          "the bootstrap is deterministic for a seed");
    CHECK_CLOSE(leaderboard_elo(log(10.0)), 1400.0, 1e-9, 0, "elo scale: 10x strength = +400");
}

static void test_leaderboard_store(void) {
    fixture f;
    fixture_open(&f, "leaderboard.db");
    store_judge alice = {.annotator = "alice"}, bob = {.annotator = "bob"};
    store_added a;
    /* candidates: A base/greedy, B sft-1/top-p, C dpo-1/beam, D base/top-p; dpo > sft > base */
    int ranks[4] = {3, 2, 1, 3}; /* C > B > A = D */
    for (int p = 0; p < 3; p++) OK(store_add_ranking(f.s, &alice, f.gen[p], ranks, 4, &a, &g_err));
    int ranks_bob[4] = {3, 1, 2, 4}; /* B > C > A > D */
    OK(store_add_ranking(f.s, &bob, f.gen[0], ranks_bob, 4, &a, &g_err));
    store_leaderboard lb;
    store_leaderboard_params p = {STORE_BY_MODEL, 200, 5, -1};
    OK(store_get_leaderboard(f.s, &p, &lb, &g_err));
    CHECK(lb.n == 3 && strcmp(lb.rows[0].name, "dpo-1") == 0 && strcmp(lb.rows[1].name, "sft-1") == 0 &&
              strcmp(lb.rows[2].name, "base") == 0,
          "models ordered dpo-1 > sft-1 > base");
    /* A vs D (both base) never counts; alice's A = D tie is base vs base too */
    CHECK(lb.n_games == 4 * 5 && lb.n_ignored == 4, "20 games between different models, 4 ignored (got %zu, %zu)",
          lb.n_games, lb.n_ignored);
    if (lb.n == 3) {
        /* dpo-1: vs sft-1 3 wins 1 loss; vs base 8 wins -> 11 of 12 */
        CHECK(lb.rows[0].games == 12 && lb.rows[0].wins == 11, "dpo-1 record %.0f/%.0f", lb.rows[0].wins, lb.rows[0].games);
        CHECK(lb.rows[0].elo_lo <= lb.rows[0].elo && lb.rows[0].elo <= lb.rows[0].elo_hi, "estimate inside its interval");
    }
    store_leaderboard_free(&lb);
    p.by = STORE_BY_STRATEGY;
    OK(store_get_leaderboard(f.s, &p, &lb, &g_err));
    CHECK(lb.n == 3 && strcmp(lb.rows[0].name, "beam") == 0, "strategies: beam first (%s)", lb.n ? lb.rows[0].name : "");
    store_leaderboard_free(&lb);
    store_close(&f.s);
}

/* ---- redaction ---- */

static void test_redact(void) {
    static const char *const cases[][2] = {
        {"write to jane.doe+rlhf@example.co.uk today", "write to [EMAIL] today"},
        {"call 555-123-4567 or (555) 123-4567 or +1 (555) 123-4567", "call [PHONE] or [PHONE] or [PHONE]"},
        {"UK: +44 20 7946 0958, local 555-1234, toll free 1-800-555-1234", "UK: [PHONE], local [PHONE], toll free [PHONE]"},
        {"server 192.168.10.1 and 10.0.0.255.", "server [IP] and [IP]."},
        {"card 4111 1111 1111 1111 / 4111-1111-1111-1111 / 4111111111111111", "card [CARD] / [CARD] / [CARD]"},
        {"ssn 123-45-6789", "ssn [ID]"},
        {"on 2024-01-15 in 1999-2005, pi 3.14159265358979, v1.2.3, 1500000 people, 42",
         "on 2024-01-15 in 1999-2005, pi 3.14159265358979, v1.2.3, 1500000 people, 42"},
        {"not an address: a@b, user@localhost, 999.1.1.1", "not an address: a@b, user@localhost, 999.1.1.1"},
        {"caf\xc3\xa9 \xe2\x80\x94 bob@mail.org \xe2\x80\x94 555.123.4567", "caf\xc3\xa9 \xe2\x80\x94 [EMAIL] \xe2\x80\x94 [PHONE]"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = 0;
        char *r = redact_text(cases[i][0], &n);
        CHECK(r && strcmp(r, cases[i][1]) == 0, "redact \"%s\" -> \"%s\" (expected \"%s\")", cases[i][0], r ? r : "(null)",
              cases[i][1]);
        free(r);
    }
}

int main(void) {
    test_ranking_parse();
    test_ranking_enumerate();
    test_store_ranking();
    test_pair_checks();
    test_undo();
    test_datasets();
    test_agreement_math();
    test_agreement_store();
    test_bradley_terry();
    test_leaderboard_store();
    test_redact();
    return test_finish("test_feedback");
}
