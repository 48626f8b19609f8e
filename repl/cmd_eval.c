/* cmd_eval.c — `rlhf eval --tasks toy`: a model on the task world's held-out prompts, judged by
 * the world's verifier (src/world/world.h): exact-match accuracy per family, zero-shot or
 * K-shot, precision / recall / F1 for the classification families, and the rate of each unwanted
 * behaviour (wrong, rambling, rude, never stops). A table, or --json; --runs-db records it as a
 * run of kind eval. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feedback/store.h"
#include "repl/commands.h"
#include "repl/default_model.h"
#include "repl/out.h"
#include "src/formats/model_load.h"
#include "src/gen/generate.h"
#include "src/gen/prompt.h"
#include "src/world/world.h"

static const char *const eval_usage =
    "rlhf eval [--model PATH] --tasks toy [--split test|val|train] [--n N] [--shots K] [--max-tokens N] [--json] "
    "[--runs-db FILE]";

#define MAX_FAMILIES 32
#define MAX_LABELS 4

typedef struct {
    int n, correct, wrong, rambling, rude, endless;
    int conf[MAX_LABELS][MAX_LABELS + 1]; /* [true][predicted]; the last column: no label read */
} fam_stats;

static int label_index(const char *const *labels, const char *s) {
    for (int i = 0; labels && labels[i]; i++)
        if (strcmp(labels[i], s) == 0) return i;
    return -1;
}

/* Greedy answer of one prompt (chat template when the model has one), text before any stop. */
static int answer(model_bundle *b, const char *prompt, const prompt_example *shots, int n_shots, int max_tokens,
                  char **text, gen_finish *finish, rlhf_error *err) {
    prompt_request rq = {0};
    rq.input = prompt;
    rq.chat = b->chat_template != NULL;
    rq.chat_template = b->chat_template;
    rq.bos_token = b->bos_token;
    rq.eos_token = b->eos_token;
    rq.add_bos = b->add_bos;
    rq.examples = shots;
    rq.n_examples = n_shots;
    rq.few_shot = n_shots > 0;
    char *full = NULL;
    int add_bos = 0;
    int rc = prompt_assemble(&full, &add_bos, &rq, err);
    if (rc) return rc;
    tok_ids ids = {0};
    rc = tok_encode(b->tok, full, strlen(full), (add_bos ? TOK_ENCODE_ADD_BOS : 0) | (rq.chat ? TOK_ENCODE_ALLOW_SPECIAL : 0),
                    &ids, err);
    free(full);
    if (rc) return rc;
    gen_params gp;
    gen_params_defaults(&gp);
    gp.strategy = GEN_STRATEGY_GREEDY;
    gp.max_tokens = max_tokens;
    gp.truncate_prompt = 1;
    gen_result r;
    rc = gen_run(&b->m, b->tok, ids.ids, (int)ids.n, &gp, &r, err);
    tok_ids_free(&ids);
    if (rc) return rc;
    *text = strndup(r.cands[0].text ? r.cands[0].text : "", r.cands[0].text ? r.cands[0].text_stop : 0);
    *finish = r.cands[0].finish;
    gen_result_free(&r);
    return *text ? RLHF_OK : rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
}

int cmd_eval(int argc, char **argv) {
    if (command_wants_help(argc, argv)) {
        out_printf("usage: %s\n\n", eval_usage);
        out_printf("Evaluates a model on the task world (rlhf world): --n prompts per family of --split (default\n"
                   "test, 20), answered greedily (--max-tokens, default 48), zero-shot or with --shots K solved\n"
                   "examples from the train split, judged by the world's verifier. Prints per family the\n"
                   "exact-match accuracy and the rate of wrong, rambling, rude and never-ending answers (no EOS\n"
                   "within --max-tokens), and precision / recall / F1 per label of the classification families.\n"
                   "--model defaults to the built-in default model. --runs-db FILE records the result as a run.\n");
        return 0;
    }
    const char *model_path = NULL, *tasks = NULL, *split_name = "test", *runs_db = NULL;
    long n = 20, shots = 0, max_tokens = 48;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (strcmp(a, "--json") == 0) {
            json = 1;
            continue;
        }
        if (!v) {
            out_error("%s needs a value", a);
            out_error("usage: %s", eval_usage);
            return 2;
        }
        i++;
        if (strcmp(a, "--model") == 0 || strcmp(a, "-m") == 0) model_path = v;
        else if (strcmp(a, "--tasks") == 0) tasks = v;
        else if (strcmp(a, "--split") == 0) split_name = v;
        else if (strcmp(a, "--runs-db") == 0) runs_db = v;
        else if (strcmp(a, "--n") == 0 && (n = strtol(v, &end, 10), !*end && n >= 1)) continue;
        else if (strcmp(a, "--shots") == 0 && (shots = strtol(v, &end, 10), !*end && shots >= 0 && shots <= 16)) continue;
        else if (strcmp(a, "--max-tokens") == 0 && (max_tokens = strtol(v, &end, 10), !*end && max_tokens >= 1)) continue;
        else {
            out_error("%s: unknown flag or bad value '%s'", a, v);
            out_error("usage: %s", eval_usage);
            return 2;
        }
    }
    if (!tasks || strcmp(tasks, "toy") != 0) {
        out_error("--tasks toy is required (the task world; other task sets are not implemented yet)");
        out_error("usage: %s", eval_usage);
        return 2;
    }
    rlhf_error err = {0};
    world_split split;
    if (world_split_parse(split_name, &split, &err)) return out_error("--split: %s", err.msg), 2;
    if (!model_path && !(model_path = default_model_path())) {
        out_error("--model is required (no built-in default model found)");
        return 2;
    }
    model_bundle b = {0};
    if (model_bundle_load(&b, model_path, &err)) return out_fail(&err);
    if (!b.tok) {
        model_bundle_free(&b);
        out_error("%s: the model has no tokenizer", model_path);
        return 1;
    }
    const int F = world_family_count() < MAX_FAMILIES ? world_family_count() : MAX_FAMILIES;
    fam_stats st[MAX_FAMILIES];
    memset(st, 0, sizeof st);
    int rc = 0;
    long done = 0, total = (long)F * n;
    for (int f = 0; f < F && !rc; f++) {
        /* K solved examples of the same family from the train split (never the evaluated split) */
        world_item ex[16];
        prompt_example pe[16];
        for (long k = 0; k < shots && !rc; k++) {
            rc = world_item_make(f, WORLD_SPLIT_TRAIN, 1000000 + (uint64_t)k, &ex[k], &err);
            pe[k] = (prompt_example){ex[k].prompt, ex[k].answer};
        }
        const char *const *labels = world_family_labels(f);
        for (long i = 0; i < n && !rc; i++) {
            world_item it;
            if ((rc = world_item_make(f, split, (uint64_t)i, &it, &err))) break;
            char *text = NULL;
            gen_finish fin;
            if ((rc = answer(&b, it.prompt, pe, (int)shots, (int)max_tokens, &text, &fin, &err))) break;
            world_verdict v;
            rc = world_verify(it.prompt, text, &v, &err);
            free(text);
            if (rc) break;
            fam_stats *s = &st[f];
            s->n++;
            s->correct += v.correct;
            s->wrong += !v.correct;
            s->rambling += !!(v.flaws & WORLD_FLAW_RAMBLING);
            s->rude += !!(v.flaws & WORLD_FLAW_RUDE);
            s->endless += fin != GEN_FINISH_EOS;
            if (labels) {
                int t = label_index(labels, v.expected), p = label_index(labels, v.got);
                if (t >= 0 && t < MAX_LABELS) s->conf[t][p >= 0 && p < MAX_LABELS ? p : MAX_LABELS]++;
            }
            if (!json && (++done % 10 == 0 || done == total)) out_progress("eval: %ld/%ld answers", done, total);
        }
    }
    if (!json) out_progress_end();
    if (rc) {
        model_bundle_free(&b);
        return out_fail(&err);
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", model_path);
    cJSON_AddStringToObject(root, "split", split_name);
    cJSON_AddNumberToObject(root, "shots", (double)shots);
    cJSON *fams = cJSON_AddObjectToObject(root, "families");
    fam_stats all = {0};
    if (!json)
        out_printf("%-13s %5s %8s %7s %9s %6s %10s\n", "family", "n", "accuracy", "wrong", "rambling", "rude", "no EOS");
    for (int f = 0; f < F; f++) {
        const fam_stats *s = &st[f];
        all.n += s->n, all.correct += s->correct, all.wrong += s->wrong, all.rambling += s->rambling;
        all.rude += s->rude, all.endless += s->endless;
        cJSON *o = cJSON_AddObjectToObject(fams, world_family_name(f));
        cJSON_AddNumberToObject(o, "n", s->n);
        cJSON_AddNumberToObject(o, "accuracy", (double)s->correct / s->n);
        cJSON_AddNumberToObject(o, "rambling", (double)s->rambling / s->n);
        cJSON_AddNumberToObject(o, "rude", (double)s->rude / s->n);
        cJSON_AddNumberToObject(o, "no_eos", (double)s->endless / s->n);
        if (!json)
            out_printf("%-13s %5d %7.1f%% %6.1f%% %8.1f%% %5.1f%% %9.1f%%\n", world_family_name(f), s->n,
                       100.0 * s->correct / s->n, 100.0 * s->wrong / s->n, 100.0 * s->rambling / s->n,
                       100.0 * s->rude / s->n, 100.0 * s->endless / s->n);
        const char *const *labels = world_family_labels(f);
        for (int l = 0; labels && labels[l] && l < MAX_LABELS; l++) {
            int tp = s->conf[l][l], fp = 0, fn = 0;
            for (int k = 0; k < MAX_LABELS; k++)
                if (k != l) fp += s->conf[k][l];
            for (int k = 0; k <= MAX_LABELS; k++)
                if (k != l) fn += s->conf[l][k];
            double p = tp + fp ? (double)tp / (tp + fp) : 0, r = tp + fn ? (double)tp / (tp + fn) : 0;
            double f1 = p + r > 0 ? 2 * p * r / (p + r) : 0;
            cJSON *lo = cJSON_AddObjectToObject(o, labels[l]);
            cJSON_AddNumberToObject(lo, "precision", p);
            cJSON_AddNumberToObject(lo, "recall", r);
            cJSON_AddNumberToObject(lo, "f1", f1);
            if (!json) out_printf("  %-11s precision %.2f recall %.2f F1 %.2f\n", labels[l], p, r, f1);
        }
    }
    cJSON_AddNumberToObject(root, "accuracy", all.n ? (double)all.correct / all.n : 0);
    cJSON_AddNumberToObject(root, "rambling", all.n ? (double)all.rambling / all.n : 0);
    cJSON_AddNumberToObject(root, "rude", all.n ? (double)all.rude / all.n : 0);
    cJSON_AddNumberToObject(root, "no_eos", all.n ? (double)all.endless / all.n : 0);
    if (!json)
        out_printf("%-13s %5d %7.1f%% %6.1f%% %8.1f%% %5.1f%% %9.1f%%\n", "all", all.n, 100.0 * all.correct / all.n,
                   100.0 * all.wrong / all.n, 100.0 * all.rambling / all.n, 100.0 * all.rude / all.n,
                   100.0 * all.endless / all.n);
    char *s = cJSON_PrintUnformatted(root);
    if (json && s) out_printf("%s\n", s);
    if (runs_db && s) { /* the result as a run of kind eval, its numbers as metrics at step 0 */
        store *db = NULL;
        store_open_params op = {0};
        store_run r = {0};
        r.kind = "eval";
        r.config_json = s;
        int64_t id = 0;
        if (store_open_ex(&db, runs_db, &op, &err) || store_add_run(db, &r, &id, &err) ||
            store_add_metric(db, id, 0, "accuracy", all.n ? (double)all.correct / all.n : 0, &err) ||
            store_finish_run(db, id, "done", NULL, &err))
            rc = out_fail(&err);
        store_close(&db);
    }
    free(s);
    cJSON_Delete(root);
    model_bundle_free(&b);
    return rc;
}
