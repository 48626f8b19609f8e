/* cmd_annotate.c — `rlhf annotate --oracle`: a simulated annotator. For each of N task-world
 * prompts the model draws K candidates (one batched, sampled generation), the world's verifier
 * ranks them — right before wrong; among equals, fewer flaws (rude, rambling, never ends) first;
 * answers equal in both tie (oracle-v2: oracle-v1 also put the shorter of two such answers first,
 * but that carried no preference — "1 time" before "4 times" when both are wrong, two rambling
 * answers cut at --max-tokens by their characters — and a person would call them equal; being
 * concise is the rambling and never-ends flaws) — and with probability --noise the ranking is reversed (a fallible person who
 * got this one backwards: exactly that share of the preference pairs then disagrees with the
 * verifier, in expectation). Everything is stored as the REPL stores a person's work: the prompt
 * (rendered text, chat messages and template), each generation with its model, decoding
 * settings and seed, and the ranking under annotator "oracle" with its derived pairs in one
 * transaction, so agreement with real annotators can be measured on the same database. */
#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "feedback/ranking.h"
#include "feedback/store.h"
#include "repl/chat.h"
#include "repl/commands.h"
#include "repl/default_model.h"
#include "repl/out.h"
#include "repl/run_log.h"
#include "repl/world_prompt.h"
#include "src/core/rng.h"
#include "src/gen/generate.h"
#include "src/world/world.h"

#define MAX_FAMILIES 32

static const char *const annotate_usage =
    "rlhf annotate --oracle [--prompts N] [--candidates K] [--noise P] [--model DIR] [--db FILE] [--seed S] "
    "[--families LIST] [--split train|val|test] [--first I] [--temperature T] [--max-tokens N] [--json]";

static const char *const oracle_guideline =
    "oracle-v2: the task world's verifier ranks the candidates: a right answer before a wrong one; "
    "among equals, fewer flaws (rude, rambling, never ends) first; answers equal in both tie. With "
    "noise P a ranking is reversed with probability P.";

/* How good a candidate is for the oracle: compared field by field. */
typedef struct {
    int correct;
    int n_flaws; /* rude + rambling + never ends */
} oracle_key;

static int key_cmp(const oracle_key *a, const oracle_key *b) { /* < 0: a is better */
    if (a->correct != b->correct) return b->correct - a->correct;
    return a->n_flaws - b->n_flaws;
}

/* Dense ranks (1 best, equal keys tie) of k keys. */
static void oracle_ranks(const oracle_key *keys, int k, int *ranks) {
    for (int i = 0; i < k; i++) {
        int better = 0; /* distinct keys better than i's */
        for (int j = 0; j < k; j++) {
            if (key_cmp(&keys[j], &keys[i]) >= 0) continue;
            int first = 1; /* count each distinct better key once */
            for (int m = 0; m < j && first; m++) first = !(key_cmp(&keys[m], &keys[j]) == 0);
            better += first;
        }
        ranks[i] = better + 1;
    }
}

static void base_name(const char *path, char *buf, size_t n) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && path[start - 1] != '/') start--;
    snprintf(buf, n, "%.*s", (int)(len - start), path + start);
}

typedef struct {
    long prompts, rankings, pairs, tied, flagged, reversed, skipped, candidates;
    long correct, flawed; /* candidates right / with a flaw */
} annotate_counts;

/* Stores one prompt's candidates and their ranking. */
/* Prompts decoded together (one gen_run_batch). */
#define ANNOTATE_BATCH 8

static int store_prompt_ranking(store *db, const model_bundle *b, const char *model_name, const char *prompt,
                                const char *rendered, const gen_params *gp, int add_bos, const gen_result *r,
                                const int *ranks, annotate_counts *c, rlhf_error *err) {
    cJSON *arr = cJSON_CreateArray(), *u = cJSON_CreateObject();
    cJSON_AddStringToObject(u, "role", "user");
    cJSON_AddStringToObject(u, "content", prompt);
    cJSON_AddItemToArray(arr, u);
    char *messages = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    if (!messages) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    store_prompt sp = {rendered, b->chat_template, NULL, b->chat_template ? messages : NULL, NULL};
    int64_t pid = 0, ids[RANKING_MAX_ITEMS];
    int rc = store_add_prompt(db, &sp, &pid, err);
    free(messages);
    for (int i = 0; i < r->n && !rc; i++) {
        const gen_candidate *g = &r->cands[i];
        char *dj = chat_decoding_json(gp, gen_candidate_seed(gp->seed, g->index), add_bos, g->index);
        if (!dj) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
        store_generation sg = {0};
        sg.prompt_id = pid;
        sg.model = model_name;
        sg.text = g->text ? g->text : "";
        sg.n_tokens = g->n_ids;
        sg.token_ids = g->ids;
        sg.n_token_ids = (size_t)g->n_ids;
        sg.decoding_json = dj;
        sg.strategy = gen_strategy_name(gp->strategy);
        sg.has_seed = 1;
        sg.seed = gen_candidate_seed(gp->seed, g->index);
        sg.logprob = g->logprob;
        sg.latency_ms = NAN;
        rc = store_add_generation(db, &sg, &ids[i], err);
        free(dj);
    }
    if (rc) return rc;
    store_judge j = {0};
    j.annotator = "oracle";
    j.guideline_version = "oracle-v2";
    j.guideline_text = oracle_guideline;
    /* an empty answer or one leaking template text is stored flagged (left out of training by
     * default) rather than lost: the oracle has no one to ask */
    j.allow_flagged = 1;
    store_added a;
    if ((rc = store_add_ranking(db, &j, ids, ranks, r->n, &a, err))) return rc;
    c->rankings++;
    c->pairs += (long)a.n_pairs;
    c->tied += (long)a.n_tied;
    c->flagged += a.flags[0] != 0;
    return RLHF_OK;
}

int cmd_annotate(int argc, char **argv) {
    if (command_wants_help(argc, argv)) {
        out_printf("usage: %s\n\n", annotate_usage);
        out_printf(
            "A simulated annotator (--oracle; a person ranks in rlhf chat with /candidates, /rank, /next).\n"
            "For --prompts N prompts of the task world (default 100; --split, default train; the families\n"
            "of --families in turn, default all; instances from --first, default 0) the model (--model,\n"
            "default the built-in one) samples --candidates K answers (default 4; --temperature 1,\n"
            "--max-tokens 48, seeds from --seed, default 42) in one batched pass. The verifier ranks\n"
            "them: right before wrong; among equals fewer flaws (rude, rambling, never ends); answers\n"
            "equal in both tie (no pair: neither is preferred). --noise P (default 0) reverses a\n"
            "ranking with probability P, so P of the preference pairs disagree with the verifier.\n"
            "Stored in --db (default $RLHF_DB or rlhf.db) exactly as the REPL stores a person's\n"
            "ranking: prompt, generations with their decoding settings and seeds, the ranking by\n"
            "annotator \"oracle\" (guideline oracle-v2) with its derived pairs in one transaction.\n"
            "Ctrl-C stops after the current prompt; what was stored stays. --json prints the counts as\n"
            "one JSON object.\n");
        return 0;
    }
    const char *model_path = NULL, *db_path = NULL, *split_name = "train", *families = NULL;
    long n_prompts = 100, k = 4, max_tokens = 48, first = 0;
    double noise = 0, temperature = 1.0;
    unsigned long long seed = 42;
    int oracle = 0, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (strcmp(a, "--oracle") == 0) {
            oracle = 1;
            continue;
        }
        if (strcmp(a, "--json") == 0) {
            json = 1;
            continue;
        }
        if (!v) {
            out_error("%s needs a value", a);
            out_error("usage: %s", annotate_usage);
            return 2;
        }
        i++;
        if (strcmp(a, "--model") == 0 || strcmp(a, "-m") == 0) model_path = v;
        else if (strcmp(a, "--db") == 0) db_path = v;
        else if (strcmp(a, "--split") == 0) split_name = v;
        else if (strcmp(a, "--families") == 0) families = v;
        else if (strcmp(a, "--prompts") == 0 && (n_prompts = strtol(v, &end, 10), !*end && n_prompts >= 1)) continue;
        else if (strcmp(a, "--candidates") == 0 && (k = strtol(v, &end, 10), !*end && k >= 2 && k <= RANKING_MAX_ITEMS))
            continue;
        else if (strcmp(a, "--max-tokens") == 0 && (max_tokens = strtol(v, &end, 10), !*end && max_tokens >= 1)) continue;
        else if (strcmp(a, "--first") == 0 && (first = strtol(v, &end, 10), !*end && first >= 0)) continue;
        else if (strcmp(a, "--noise") == 0 && (noise = strtod(v, &end), !*end && noise >= 0 && noise <= 1)) continue;
        else if (strcmp(a, "--temperature") == 0 && (temperature = strtod(v, &end), !*end && temperature > 0)) continue;
        else if (strcmp(a, "--seed") == 0 && *v != '-' && (seed = strtoull(v, &end, 10), !*end && *v)) continue;
        else {
            out_error("%s: unknown flag or bad value '%s' (--candidates is 2..%d, --noise 0..1)", a, v, RANKING_MAX_ITEMS);
            out_error("usage: %s", annotate_usage);
            return 2;
        }
    }
    if (!oracle) {
        out_error("annotate needs --oracle (the simulated annotator; a person ranks in rlhf chat: /candidates, "
                  "/rank, /next)");
        return 2;
    }
    rlhf_error err = {0};
    world_split split;
    if (world_split_parse(split_name, &split, &err)) return out_error("--split: %s", err.msg), 2;
    int fams[MAX_FAMILIES], nf = 0;
    if (families && strcmp(families, "all") != 0) {
        char buf[512];
        snprintf(buf, sizeof buf, "%s", families);
        for (char *save = NULL, *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
            int f = world_family_find(w);
            if (f < 0 || nf == MAX_FAMILIES)
                return out_error("--families: unknown family '%s' (rlhf world families lists them)", w), 2;
            fams[nf++] = f;
        }
    } else {
        for (int f = 0; f < world_family_count() && nf < MAX_FAMILIES; f++) fams[nf++] = f;
    }
    if (!nf) return out_error("--families: no family given"), 2;
    if (!db_path) db_path = getenv("RLHF_DB") && *getenv("RLHF_DB") ? getenv("RLHF_DB") : "rlhf.db";
    if (!model_path && !(model_path = default_model_path())) {
        out_error("--model is required (no built-in default model found)");
        return 2;
    }
    model_bundle b = {0};
    if (model_bundle_load(&b, model_path, &err)) return out_fail(&err);
    if (!b.tok || b.m.config.num_labels) {
        model_bundle_free(&b);
        out_error("%s: annotate needs a language model with a tokenizer", model_path);
        return 1;
    }
    store *db = NULL;
    if (store_open(&db, db_path, &err)) {
        model_bundle_free(&b);
        return out_fail(&err);
    }
    /* the model is registered by its directory's name, as the REPL does */
    char model_name[256];
    base_name(model_path, model_name, sizeof model_name);
    int64_t mid = 0;
    int rc = store_find_model(db, model_name, &mid, &err);
    if (!rc && !mid) {
        store_model m = {model_name, model_path, model_family_name(b.m.config.family), NULL, NULL, 0};
        rc = store_add_model(db, &m, &mid, &err);
    }
    volatile sig_atomic_t stop = 0;
    struct sigaction old;
    run_log_sigint_catch(&stop, &old);
    rng_t noise_rng;
    rng_seed(&noise_rng, (uint64_t)seed ^ 0x6f7261636c65ull); /* "oracle" */
    annotate_counts c = {0};
    /* ANNOTATE_BATCH prompts per gen_run_batch (each prompt's candidates are bit-for-bit what a
     * gen_run of it alone gives), from weights packed once */
    gen_packed *packed = NULL;
    if (!rc) rc = gen_packed_make(&packed, &b.m, &err);
    for (long j0 = 0; j0 < n_prompts && !rc && !stop; j0 += ANNOTATE_BATCH) {
        const int nb = n_prompts - j0 < ANNOTATE_BATCH ? (int)(n_prompts - j0) : ANNOTATE_BATCH;
        world_item items[ANNOTATE_BATCH];
        char *rendered[ANNOTATE_BATCH] = {0};
        tok_ids ids[ANNOTATE_BATCH];
        const int32_t *pids[ANNOTATE_BATCH];
        int plen[ANNOTATE_BATCH], add_bos[ANNOTATE_BATCH], n_enc = 0;
        uint64_t seeds[ANNOTATE_BATCH];
        for (; n_enc < nb && !rc; n_enc++) {
            const long j = j0 + n_enc;
            int chat = 0;
            if ((rc = world_item_make(fams[j % nf], split, (uint64_t)(first + j / nf), &items[n_enc], &err))) break;
            if ((rc = world_prompt_encode(&b, items[n_enc].prompt, NULL, 0, &rendered[n_enc], &ids[n_enc], &chat, &err)))
                break;
            pids[n_enc] = ids[n_enc].ids;
            plen[n_enc] = (int)ids[n_enc].n;
            add_bos[n_enc] = ids[n_enc].n > 0 && tok_bos_id(b.tok) >= 0 && ids[n_enc].ids[0] == tok_bos_id(b.tok) && !chat;
            seeds[n_enc] = (uint64_t)seed * 1000003u + (uint64_t)(first + j);
        }
        gen_params gp;
        gen_params_defaults(&gp);
        gp.strategy = GEN_STRATEGY_SAMPLE;
        gp.sampling.temperature = (float)temperature;
        gp.sampling.top_k = 0;
        gp.sampling.top_p = 1.0f;
        gp.n = (int)k;
        gp.max_tokens = (int)max_tokens;
        gp.truncate_prompt = 1;
        gp.stop_flag = &stop;
        gp.packed = packed;
        gen_result res[ANNOTATE_BATCH];
        int ran = 0;
        if (!rc) {
            rc = gen_run_batch(&b.m, b.tok, pids, plen, nb, &gp, seeds, res, &err);
            ran = !rc;
        }
        for (int q = 0; q < n_enc; q++) tok_ids_free(&ids[q]);
        for (int q = 0; q < nb && ran && !rc; q++) {
            const long j = j0 + q;
            const world_item *it = &items[q];
            const gen_result *r = &res[q];
            gp.seed = seeds[q];
            int interrupted = 0;
            oracle_key keys[RANKING_MAX_ITEMS];
            for (int i = 0; i < r->n && !rc; i++) {
                const gen_candidate *g = &r->cands[i];
                interrupted |= g->finish == GEN_FINISH_INTERRUPTED;
                world_verdict v;
                rc = world_verify(it->prompt, g->text ? g->text : "", &v, &err);
                int endless = g->finish != GEN_FINISH_EOS;
                keys[i] = (oracle_key){v.correct, !!(v.flaws & WORLD_FLAW_RUDE) + !!(v.flaws & WORLD_FLAW_RAMBLING) + endless};
            }
            if (!rc && !interrupted) {
                int ranks[RANKING_MAX_ITEMS];
                oracle_ranks(keys, r->n, ranks);
                int distinct = 0;
                for (int i = 0; i < r->n; i++) distinct |= ranks[i] != 1;
                if (noise > 0 && rng_float(&noise_rng) < noise) { /* reversed: the worst ranked first */
                    int worst = 0;
                    for (int i = 0; i < r->n; i++) worst = ranks[i] > worst ? ranks[i] : worst;
                    for (int i = 0; i < r->n; i++) ranks[i] = worst + 1 - ranks[i];
                    c.reversed += distinct;
                }
                for (int i = 0; i < r->n; i++) c.correct += keys[i].correct, c.flawed += keys[i].n_flaws > 0;
                c.candidates += r->n;
                rc = store_prompt_ranking(db, &b, model_name, it->prompt, rendered[q], &gp, add_bos[q], r, ranks, &c, &err);
                c.prompts++;
            }
            if (!json && !rc && (c.prompts % 10 == 0 || j + 1 == n_prompts))
                out_progress("annotate: %ld/%ld prompts, %ld pairs (%.0f%% of candidates right)", c.prompts, n_prompts,
                             c.pairs, c.candidates ? 100.0 * (double)c.correct / (double)c.candidates : 0.0);
        }
        for (int q = 0; q < nb && ran; q++) gen_result_free(&res[q]);
        for (int q = 0; q < nb; q++) free(rendered[q]);
    }
    gen_packed_free(&packed);
    run_log_sigint_restore(&old);
    if (!json) out_progress_end();
    store_close(&db);
    model_bundle_free(&b);
    if (rc) return out_fail(&err);
    if (json) {
        out_printf("{\"prompts\":%ld,\"rankings\":%ld,\"pairs\":%ld,\"tied_pairs\":%ld,\"flagged_rankings\":%ld,"
                   "\"reversed\":%ld,\"candidates\":%ld,\"candidates_correct\":%ld,\"candidates_flawed\":%ld,"
                   "\"stopped\":%s}\n",
                   c.prompts, c.rankings, c.pairs, c.tied, c.flagged, c.reversed, c.candidates, c.correct, c.flawed,
                   stop ? "true" : "false");
    } else {
        out_printf("annotate: %ld prompts ranked by the oracle into %s: %ld rankings, %ld pairs (%ld tied pairs left "
                   "out), %ld rankings reversed by noise, %ld flagged; %ld of %ld candidates right, %ld with a flaw\n",
                   c.prompts, db_path, c.rankings, c.pairs, c.tied, c.reversed, c.flagged, c.correct, c.candidates,
                   c.flawed);
    }
    if (stop) {
        out_error("annotate: stopped by Ctrl-C after %ld prompts; every stored ranking is complete", c.prompts);
        return 130;
    }
    return 0;
}
