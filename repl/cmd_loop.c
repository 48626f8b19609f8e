/* cmd_loop.c — `rlhf loop`: the whole feedback loop in one command, measured.
 *
 * SFT model -> oracle rankings of its candidates on val-split prompts (rlhf annotate --oracle;
 * the SFT model learnt the train split's prompts, the test split is kept for evaluation) -> a reward model
 * (rlhf reward train --db) on those rankings and the oracle's rankings of --rm-prompts train-split
 * prompts (OUT/rN/rm-data.db) -> DPO (rlhf dpo --db), GRPO with the verifier as reward
 * (rlhf grpo --reward-fn toy), GRPO with the reward model (rlhf grpo --reward) and PPO (rlhf ppo) —
 * each from the same SFT model — -> rlhf eval of every model on held-out test prompts, KL to the
 * SFT model included -> one table and an SVG chart. Round 2 (--rounds 2) ranks the candidates of
 * round 1's DPO model and trains DPO again from it.
 *
 * Every stage is a child process of this executable (like the REPL's /train): its progress line
 * shows, its stdout goes to OUT/logs/STAGE.out (the JSON of eval and annotate is read from
 * there), and it records its run in the round's database (OUT/rN/feedback.db: the rankings and
 * every run of the round). Resuming: OUT/loop_state.json lists the finished stages with their
 * results and wall times, written atomically after each; a second `rlhf loop` with the same
 * settings skips them, so Ctrl-C (the child saves and stops, the loop stops after it) or a kill
 * costs at most the stage that was running, which starts again from scratch. The rankings of a
 * round are written to a .partial database renamed into place when complete. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "repl/chat.h"
#include "repl/commands.h"
#include "repl/default_model.h"
#include "repl/out.h"
#include "repl/run_log.h"
#include "src/core/fileio.h"
#include "src/world/world.h"

static const char *const loop_usage =
    "rlhf loop [--model SFT_DIR] --out DIR [--rounds 1|2] [--families LIST] [--prompts N] [--candidates K] "
    "[--noise P] [--heldout N] [--eval-n N] [--eval-samples K] [--dpo-steps N] [--dpo-lr LR] [--rm-prompts N] [--rm-steps N] [--rm-lr LR] "
    "[--grpo-steps N] [--grpo-lr LR] [--grpo-generations G] [--grpo-rm-steps N] [--ppo-steps N] [--ppo-lr LR] [--seed S] [--json]";

/* The settings: every value as given (passed on to the stages as text, stored in the state). */
typedef struct {
    const char *name, *value, *help;
    int is_number;
} loop_opt;

enum { O_FAMILIES, O_ROUNDS, O_PROMPTS, O_CANDIDATES, O_NOISE, O_HELDOUT, O_EVAL_N, O_EVAL_SAMPLES, O_DPO_STEPS, O_DPO_LR, O_DPO_BETA,
       O_RPO, O_RM_PROMPTS, O_RM_STEPS, O_RM_LR, O_GRPO_STEPS, O_GRPO_LR, O_GRPO_GEN, O_GRPO_RM_STEPS, O_PPO_STEPS, O_PPO_LR,
       O_SEED, O_METHODS, O_COUNT };

static loop_opt g_opts[O_COUNT] = {
    {"--families", "all", "task-world families to annotate, train and evaluate on (comma list)", 0},
    {"--rounds", "1", "1, or 2: rank the round-1 DPO model's candidates and train DPO again", 1},
    {"--prompts", "1200", "val-split prompts ranked per round (and GRPO's/PPO's prompts)", 1},
    {"--candidates", "4", "candidates per prompt", 1},
    {"--noise", "0", "oracle noise: a ranking reversed with this probability", 1},
    {"--heldout", "120", "test-split prompts ranked for the reward model's held-out accuracy", 1},
    {"--eval-n", "20", "test-split prompts per family in each evaluation", 1},
    {"--eval-samples", "4", "answers sampled per test prompt as rlhf chat samples them (0: one greedy answer)", 1},
    {"--dpo-steps", "1500", "DPO optimizer steps", 1},
    {"--dpo-lr", "1e-4", "DPO learning rate", 1},
    {"--dpo-beta", "0.1", "DPO beta", 1},
    {"--rpo-alpha", "1", "DPO's RPO term (NLL of the chosen answers) that keeps them likely", 1},
    {"--rm-prompts", "4800", "train-split prompts whose candidates the oracle also ranks for the reward model only (0: none)", 1},
    {"--rm-steps", "2000", "reward-model optimizer steps", 1},
    {"--rm-lr", "1e-4", "reward-model learning rate", 1},
    {"--grpo-steps", "1200", "GRPO optimizer steps with the verifier", 1},
    {"--grpo-lr", "1e-4", "GRPO learning rate (both rewards)", 1},
    {"--grpo-generations", "16", "GRPO completions per prompt (both rewards)", 1},
    {"--grpo-rm-steps", "200", "GRPO optimizer steps with the reward model (longer runs learn to game it)", 1},
    {"--ppo-steps", "200", "PPO optimizer steps (4 completions per prompt, sampled at temperature 1)", 1},
    {"--ppo-lr", "5e-5", "PPO learning rate", 1},
    {"--seed", "1", "seed of the annotations and every trainer", 1},
    {"--methods", "dpo,grpo-verifier,grpo-rm,ppo", "the policy methods to run (comma list of those four)", 0},
};

typedef struct {
    const char *out, *model;
    int rounds, json;
    cJSON *state;  /* {"config": {...}, "stages": {name: {...}}} */
    char state_path[4096];
    volatile sig_atomic_t stop;
} loop_ctx;

/* ---- files ---- */

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f) {
    (void)st, (void)flag, (void)f;
    return remove(p) == 0 || errno == ENOENT ? 0 : -1;
}

static void rm_tree(const char *path) { nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

#define LOOP_PATH 4608 /* every path: --out is at most 3000 bytes */
static void path_join(char *buf, size_t n, const char *a, const char *b) { snprintf(buf, n, "%.4000s/%.500s", a, b); }

static int state_save(loop_ctx *L) {
    char *s = cJSON_Print(L->state);
    rlhf_error err = {0};
    int rc = s ? file_write_atomic(L->state_path, s, strlen(s), &err) : RLHF_ERR_NOMEM;
    free(s);
    if (rc) out_error("loop: cannot write %s: %s", L->state_path, err.msg[0] ? err.msg : "out of memory");
    return rc;
}

static cJSON *stage_get(loop_ctx *L, const char *name) {
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(L->state, "stages"), name);
}

static int stage_done(loop_ctx *L, const char *name) {
    cJSON *s = stage_get(L, name);
    const char *st = s ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "status")) : NULL;
    return st && strcmp(st, "done") == 0;
}

/* ---- running a stage ---- */

/* The last line of a file that parses as a JSON object, or NULL. */
static cJSON *last_json(const char *path) {
    char *text = NULL;
    size_t len = 0;
    if (file_read_all(path, &text, &len, NULL)) return NULL;
    cJSON *found = NULL;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] != '{') continue;
        cJSON *o = cJSON_Parse(line);
        if (o) {
            cJSON_Delete(found);
            found = o;
        }
    }
    free(text);
    return found;
}

#define STAGE_STOPPED 130

/* Runs one stage unless the state says it is done. argv[0] is "rlhf"; clean: a directory to
 * remove first (what an interrupted attempt left). Returns 0 (done or failed: the state says
 * which), STAGE_STOPPED, or 1 when the state cannot be written. */
static int stage_run(loop_ctx *L, const char *name, char **argv, const char *clean, int want_json) {
    if (stage_done(L, name)) {
        cJSON *s = stage_get(L, name);
        if (!L->json)
            out_printf("loop: %-22s done before (%.0fs), skipped\n", name,
                       cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(s, "seconds")));
        return 0;
    }
    if (clean) rm_tree(clean);
    char logs[LOOP_PATH], log[LOOP_PATH];
    path_join(logs, sizeof logs, L->out, "logs");
    file_mkdir_p(logs, NULL);
    snprintf(log, sizeof log, "%.4000s/%.500s.out", logs, name);
    for (char *p = log + strlen(logs) + 1; *p; p++)
        if (*p == '/') *p = '-';
    if (!L->json) {
        out_printf("loop: %-22s running:", name);
        for (int i = 0; argv[i]; i++) out_printf(" %s", argv[i]);
        out_printf("\n");
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int st = chat_run_self(argv, log);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (st == 130 || L->stop) return STAGE_STOPPED;
    cJSON *stages = cJSON_GetObjectItemCaseSensitive(L->state, "stages");
    cJSON_DeleteItemFromObjectCaseSensitive(stages, name);
    cJSON *s = cJSON_AddObjectToObject(stages, name);
    cJSON_AddStringToObject(s, "status", st == 0 ? "done" : "failed");
    cJSON_AddNumberToObject(s, "exit", st);
    cJSON_AddNumberToObject(s, "seconds", secs);
    cJSON_AddStringToObject(s, "log", log);
    if (st == 0 && want_json) {
        cJSON *r = last_json(log);
        if (r) cJSON_AddItemToObject(s, "result", r);
    }
    if (!L->json) {
        if (st == 0) out_printf("loop: %-22s done in %.0fs\n", name, secs);
        else out_error("loop: %s failed (exit %d); its output is in %s", name, st, log);
    }
    return state_save(L) ? 1 : 0;
}

/* ---- the table ---- */

typedef struct {
    const char *label;  /* DPO, GRPO (verifier), ... */
    const char *stage;  /* the training stage, NULL for the SFT row */
    const char *eval;   /* its evaluation stage */
    int available;
    const char *why;    /* when not available */
} loop_row;

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const cJSON *eval_result(loop_ctx *L, const char *eval_stage) {
    return stage_done(L, eval_stage) ? cJSON_GetObjectItemCaseSensitive(stage_get(L, eval_stage), "result") : NULL;
}

static double stage_secs(loop_ctx *L, const char *name) {
    return name && stage_get(L, name) ? num(stage_get(L, name), "seconds") : NAN;
}

static void fmt_pct(char *b, size_t n, double v) {
    if (isnan(v)) snprintf(b, n, "-");
    else snprintf(b, n, "%.1f", 100 * v);
}

/* Prints the table (and returns the summary JSON: one object per row). */
static cJSON *print_table(loop_ctx *L, const loop_row *rows, int n_rows, const int *fams, int nf) {
    cJSON *summary = cJSON_CreateArray();
    const cJSON *sft = eval_result(L, "r1/eval-sft");
    double base = sft ? num(sft, "accuracy") : NAN;
    if (!L->json) {
        out_printf("\n%-22s %8s %7s", "model", "accuracy", "vs SFT");
        for (int f = 0; f < nf; f++) out_printf(" %7.7s", world_family_name(fams[f]));
        out_printf(" %7s %8s %6s %7s %8s %7s %8s\n", "wrong", "rambling", "rude", "no EOS", "unwanted", "KL", "time");
    }
    for (int i = 0; i < n_rows; i++) {
        const loop_row *r = &rows[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", r->label);
        cJSON_AddItemToArray(summary, o);
        const cJSON *e = r->available ? eval_result(L, r->eval) : NULL;
        if (!r->available || !e) {
            const char *what = !r->available ? r->why
                               : r->stage && stage_get(L, r->stage) && !stage_done(L, r->stage) ? "failed (see its log)"
                                                                                                   : "not run";
            cJSON_AddStringToObject(o, "status", !r->available ? "not available" : what);
            if (!L->json) out_printf("%-22s %s\n", r->label, !r->available ? r->why : what);
            continue;
        }
        double acc = num(e, "accuracy"), kl = num(e, "kl");
        double secs = stage_secs(L, r->stage);
        cJSON_AddStringToObject(o, "status", "done");
        cJSON_AddNumberToObject(o, "accuracy", acc);
        cJSON_AddNumberToObject(o, "delta", acc - base);
        const char *keys[] = {"wrong", "rambling", "rude", "no_eos", "unwanted"};
        for (int k = 0; k < 5; k++) cJSON_AddNumberToObject(o, keys[k], num(e, keys[k]));
        if (!isnan(kl)) cJSON_AddNumberToObject(o, "kl", kl);
        if (!isnan(secs)) cJSON_AddNumberToObject(o, "seconds", secs);
        cJSON *pf = cJSON_AddObjectToObject(o, "families");
        const cJSON *ef = cJSON_GetObjectItemCaseSensitive(e, "families");
        for (int f = 0; f < nf; f++)
            cJSON_AddNumberToObject(pf, world_family_name(fams[f]),
                                    num(cJSON_GetObjectItemCaseSensitive(ef, world_family_name(fams[f])), "accuracy"));
        if (L->json) continue;
        char b[32], d[32];
        fmt_pct(b, sizeof b, acc);
        if (r->stage) snprintf(d, sizeof d, "%+.1f", 100 * (acc - base));
        else snprintf(d, sizeof d, "-");
        out_printf("%-22s %8s %7s", r->label, b, d);
        for (int f = 0; f < nf; f++) {
            double a = num(cJSON_GetObjectItemCaseSensitive(ef, world_family_name(fams[f])), "accuracy");
            fmt_pct(b, sizeof b, a);
            out_printf(" %7s", b);
        }
        for (int k = 0; k < 5; k++) {
            fmt_pct(b, sizeof b, num(e, keys[k]));
            out_printf(" %*s", k == 1 || k == 4 ? 8 : k == 3 ? 7 : k == 2 ? 6 : 7, b);
        }
        if (isnan(kl)) out_printf(" %7s", "-");
        else out_printf(" %7.4f", kl);
        if (isnan(secs)) out_printf(" %8s\n", "-");
        else {
            char t[32];
            run_log_duration(t, sizeof t, secs);
            out_printf(" %8s\n", t);
        }
    }
    return summary;
}

/* Grouped bars: accuracy and unwanted rate per model (percent). */
static int write_svg(loop_ctx *L, const cJSON *summary, const char *path) {
    int n = cJSON_GetArraySize(summary);
    const int W = 120 * (n ? n : 1) + 100, H = 320, top = 40, bottom = 260;
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    if (!fp) return -1;
    fprintf(fp, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
                "font-size=\"11\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H);
    fprintf(fp, "<text x=\"10\" y=\"20\" font-size=\"14\">rlhf loop: held-out accuracy (blue) and unwanted-behaviour rate "
                "(red), %%</text>\n");
    for (int g = 0; g <= 100; g += 25) {
        double y = bottom - (bottom - top) * g / 100.0;
        fprintf(fp, "<line x1=\"50\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/><text x=\"20\" y=\"%.1f\">%d</text>\n",
                W - 20, y, y, y + 4, g);
    }
    int i = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, summary) {
        double x = 60 + 120.0 * i++;
        const char *label = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "model"));
        double acc = num(o, "accuracy"), bad = num(o, "unwanted");
        if (!isnan(acc)) {
            double h = (bottom - top) * acc;
            fprintf(fp, "<rect x=\"%.1f\" y=\"%.1f\" width=\"40\" height=\"%.1f\" fill=\"#3b6fb6\"/>"
                        "<text x=\"%.1f\" y=\"%.1f\">%.1f</text>\n", x, bottom - h, h, x + 2, bottom - h - 3, 100 * acc);
            double hb = (bottom - top) * (isnan(bad) ? 0 : bad);
            fprintf(fp, "<rect x=\"%.1f\" y=\"%.1f\" width=\"40\" height=\"%.1f\" fill=\"#c0392b\"/>"
                        "<text x=\"%.1f\" y=\"%.1f\">%.1f</text>\n", x + 42, bottom - hb, hb, x + 44, bottom - hb - 3,
                    100 * (isnan(bad) ? 0 : bad));
        } else {
            fprintf(fp, "<text x=\"%.1f\" y=\"%d\" fill=\"#888\">not available</text>\n", x, bottom - 10);
        }
        fprintf(fp, "<text x=\"%.1f\" y=\"%d\">%s</text>\n", x, bottom + 18, label ? label : "?");
    }
    fprintf(fp, "</svg>\n");
    fclose(fp);
    rlhf_error err = {0};
    int rc = file_write_atomic(path, buf, len, &err);
    free(buf);
    (void)L;
    return rc;
}

/* ---- the loop ---- */

/* The GRPO/PPO prompts: val-split instances of the families, in turn, as JSON lines (the SFT
 * model was trained on train-split prompts; test-split prompts are kept for evaluation). */
static int write_prompts(const char *path, const int *fams, int nf, long n, long first) {
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    if (!fp) return -1;
    rlhf_error err = {0};
    int rc = 0;
    for (long j = 0; j < n && !rc; j++) {
        world_item it;
        if ((rc = world_item_make(fams[j % nf], WORLD_SPLIT_VAL, (uint64_t)(first + j / nf), &it, &err))) break;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "prompt", it.prompt);
        cJSON_AddStringToObject(o, "family", world_family_name(it.family));
        char *s = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!s) rc = -1;
        else fprintf(fp, "%s\n", s);
        free(s);
    }
    fclose(fp);
    if (!rc) rc = file_write_atomic(path, buf, len, &err);
    free(buf);
    return rc;
}

#define ARGV_MAX 64
typedef struct {
    char *v[ARGV_MAX];
    char store[ARGV_MAX][LOOP_PATH];
    int n;
} argv_buf;

static void av_reset(argv_buf *a) { a->n = 0; }
static void av_add(argv_buf *a, const char *s) {
    if (a->n >= ARGV_MAX - 1) return;
    snprintf(a->store[a->n], sizeof a->store[a->n], "%.4600s", s);
    a->v[a->n] = a->store[a->n];
    a->v[++a->n] = NULL;
}
static const char *opt(int k) { return g_opts[k].value; }

/* 1 if `m` is in --methods. */
static int method_on(const char *m) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", opt(O_METHODS));
    for (char *save = NULL, *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save))
        if (strcmp(w, m) == 0) return 1;
    return 0;
}

/* rlhf eval of one model on the test split, KL to the SFT model. */
static int eval_stage(loop_ctx *L, argv_buf *a, const char *name, const char *model, const char *db) {
    av_reset(a);
    const char *fixed[] = {"rlhf", "eval", "--tasks", "toy", "--split", "test", "--json", "--stories", "20", NULL};
    for (int i = 0; fixed[i]; i++) av_add(a, fixed[i]);
    av_add(a, "--model"), av_add(a, model);
    av_add(a, "--ref"), av_add(a, L->model);
    av_add(a, "--n"), av_add(a, opt(O_EVAL_N));
    if (strtol(opt(O_EVAL_SAMPLES), NULL, 10) > 0) /* the same draws' seed for every model: paired answers */
        av_add(a, "--samples"), av_add(a, opt(O_EVAL_SAMPLES)), av_add(a, "--seed"), av_add(a, opt(O_SEED));
    av_add(a, "--families"), av_add(a, opt(O_FAMILIES));
    av_add(a, "--runs-db"), av_add(a, db);
    return stage_run(L, name, a->v, NULL, 1);
}

/* A finished annotation's .partial database takes its final name (also when a kill came between
 * the stage's end and the rename). */
static int finish_partial(const char *partial, const char *final) {
    struct stat st;
    if (stat(partial, &st) != 0) return stat(final, &st) == 0 ? 0 : (out_error("loop: %s is missing", final), 1);
    if (rename(partial, final) == 0) return 0;
    out_error("loop: cannot rename %s to %s: %s", partial, final, strerror(errno));
    return 1;
}

/* Copies a closed database file (the round's rankings) to dst. */
static int copy_db(const char *src, const char *dst) {
    char *data = NULL;
    size_t len = 0;
    rlhf_error err = {0};
    int rc = file_read_all(src, &data, &len, &err);
    if (!rc) rc = file_write_atomic(dst, data, len, &err);
    free(data);
    if (rc) out_error("loop: cannot copy %s to %s: %s", src, dst, err.msg);
    return rc;
}

/* a's argv: the oracle ranks policy's candidates for n prompts of split into db (with --noise when
 * noise; from instance first when first is not NULL). */
static void annotate_argv(argv_buf *a, const char *policy, const char *db, const char *n, const char *split,
                          const char *first, const char *seed, int noise) {
    av_reset(a);
    av_add(a, "rlhf"), av_add(a, "annotate"), av_add(a, "--oracle"), av_add(a, "--json");
    av_add(a, "--model"), av_add(a, policy), av_add(a, "--db"), av_add(a, db);
    av_add(a, "--prompts"), av_add(a, n), av_add(a, "--candidates"), av_add(a, opt(O_CANDIDATES));
    if (noise) av_add(a, "--noise"), av_add(a, opt(O_NOISE));
    av_add(a, "--families"), av_add(a, opt(O_FAMILIES)), av_add(a, "--split"), av_add(a, split);
    if (first) av_add(a, "--first"), av_add(a, first);
    av_add(a, "--seed"), av_add(a, seed);
}

static int round_run(loop_ctx *L, int r, const int *fams, int nf) {
    char dir[LOOP_PATH], db[LOOP_PATH], partial[LOOP_PATH], held[LOOP_PATH], heldp[LOOP_PATH], rm[LOOP_PATH],
        rmdb[LOOP_PATH], rmdbp[LOOP_PATH], rm_first[32],
        dpo[LOOP_PATH], grpo[LOOP_PATH], grpo_r[LOOP_PATH], ppo_d[LOOP_PATH], prompts[LOOP_PATH], name[64], first[32],
        nheld[32], seed[32];
    snprintf(dir, sizeof dir, "%.3000s/r%d", L->out, r);
    file_mkdir_p(dir, NULL);
    path_join(db, sizeof db, dir, "feedback.db");
    snprintf(partial, sizeof partial, "%.4590s.partial", db);
    path_join(held, sizeof held, dir, "heldout.db");
    snprintf(heldp, sizeof heldp, "%.4590s.partial", held);
    path_join(rm, sizeof rm, dir, "rm");
    path_join(rmdb, sizeof rmdb, dir, "rm-data.db");
    snprintf(rmdbp, sizeof rmdbp, "%.4590s.partial", rmdb);
    const long rm_prompts = strtol(opt(O_RM_PROMPTS), NULL, 10);
    snprintf(rm_first, sizeof rm_first, "%ld", (long)(r - 1) * rm_prompts);
    path_join(dpo, sizeof dpo, dir, "dpo");
    path_join(grpo, sizeof grpo, dir, "grpo-verifier");
    path_join(grpo_r, sizeof grpo_r, dir, "grpo-rm");
    path_join(ppo_d, sizeof ppo_d, dir, "ppo");
    path_join(prompts, sizeof prompts, dir, "prompts.jsonl");
    /* round r ranks the round-1 DPO model's candidates from round 2 on */
    char policy[LOOP_PATH];
    if (r == 1) snprintf(policy, sizeof policy, "%.4500s", L->model);
    else snprintf(policy, sizeof policy, "%.3000s/r%d/dpo", L->out, r - 1);
    snprintf(first, sizeof first, "%ld", (long)(r - 1) * strtol(opt(O_PROMPTS), NULL, 10));
    snprintf(nheld, sizeof nheld, "%s", opt(O_HELDOUT));
    snprintf(seed, sizeof seed, "%ld", strtol(opt(O_SEED), NULL, 10) + r - 1);
    argv_buf *a = calloc(1, sizeof *a);
    if (!a) return 1;
    int rc = 0;
#define STAGE(stage_name, clean, want_json)                                         \
    do {                                                                            \
        snprintf(name, sizeof name, "r%d/%s", r, stage_name);                       \
        if ((rc = stage_run(L, name, a->v, clean, want_json))) goto done;           \
    } while (0)
    /* 1. the oracle ranks the policy's candidates (into a .partial database renamed when whole) */
    snprintf(name, sizeof name, "r%d/annotate", r);
    if (!stage_done(L, name)) remove(partial);
    annotate_argv(a, policy, partial, opt(O_PROMPTS), "val", first, seed, 1);
    if ((rc = stage_run(L, name, a->v, NULL, 1))) goto done;
    if (!stage_done(L, name) || finish_partial(partial, db)) {
        rc = 1; /* nothing to train on */
        goto done;
    }
    /* 1b. the reward model's data: the round's rankings and the oracle's rankings of the policy's
     * candidates for --rm-prompts train-split prompts (a reward model trained on the --prompts
     * rankings alone learns those prompts by heart; distinct prompts are what it needs, and
     * rankings are cheap) — in their own database (DPO reads it too; the round's database keeps
     * the --prompts rankings and every run) */
    if (rm_prompts > 0) {
        snprintf(name, sizeof name, "r%d/annotate-rm", r);
        if (!stage_done(L, name)) {
            remove(rmdbp);
            if (copy_db(db, rmdbp)) {
                rc = 1;
                goto done;
            }
        }
        annotate_argv(a, policy, rmdbp, opt(O_RM_PROMPTS), "train", rm_first, seed, 1);
        if ((rc = stage_run(L, name, a->v, NULL, 1))) goto done;
        if (!stage_done(L, name) || finish_partial(rmdbp, rmdb)) {
            rc = 1;
            goto done;
        }
    }
    /* 2. held-out rankings (test-split prompts, never trained on) for the reward model's accuracy */
    snprintf(name, sizeof name, "r%d/annotate-heldout", r);
    if (!stage_done(L, name)) remove(heldp);
    annotate_argv(a, policy, heldp, nheld, "test", NULL, seed, 0);
    if ((rc = stage_run(L, name, a->v, NULL, 1))) goto done;
    if (stage_done(L, name) && finish_partial(heldp, held)) {
        rc = 1;
        goto done;
    }
    /* 3. the SFT model's evaluation (once) */
    if (r == 1) {
        snprintf(name, sizeof name, "r1/eval-sft");
        if ((rc = eval_stage(L, a, name, L->model, db))) goto done;
    }
    /* 4. the reward model and its held-out ranking accuracy */
    av_reset(a);
    av_add(a, "rlhf"), av_add(a, "reward"), av_add(a, "train"), av_add(a, "--model"), av_add(a, L->model);
    av_add(a, "--db"), av_add(a, rm_prompts > 0 ? rmdb : db), av_add(a, "--runs-db"), av_add(a, db), av_add(a, "--out"), av_add(a, rm);
    av_add(a, "--steps"), av_add(a, opt(O_RM_STEPS)), av_add(a, "--lr"), av_add(a, opt(O_RM_LR));
    av_add(a, "--seed"), av_add(a, seed), av_add(a, "--eval-every"), av_add(a, "0"), av_add(a, "--save-every"), av_add(a, "0");
    av_add(a, "--truncate"), av_add(a, "left");
    STAGE("reward", rm, 0);
    snprintf(name, sizeof name, "r%d/reward", r);
    if (stage_done(L, name)) {
        av_reset(a);
        av_add(a, "rlhf"), av_add(a, "reward"), av_add(a, "eval"), av_add(a, "--model"), av_add(a, rm);
        av_add(a, "--db"), av_add(a, held), av_add(a, "--json"), av_add(a, "--truncate"), av_add(a, "left");
        STAGE("reward-heldout", NULL, 1);
    }
    /* 5. DPO from the policy of this round, on its rankings */
    if (method_on("dpo")) {
        av_reset(a);
        /* on every ranking of the round, the reward model's data too (more distinct prompts is what
         * moves DPO: full size +11.9 on the 1200 val prompts' rankings, +16.0 on all 6000); the run
         * and its reference log-probabilities are recorded in the round's database */
        av_add(a, "rlhf"), av_add(a, "dpo"), av_add(a, "--model"), av_add(a, policy);
        av_add(a, "--db"), av_add(a, rm_prompts > 0 ? rmdb : db), av_add(a, "--runs-db"), av_add(a, db);
        av_add(a, "--out"), av_add(a, dpo), av_add(a, "--steps"), av_add(a, opt(O_DPO_STEPS));
        av_add(a, "--lr"), av_add(a, opt(O_DPO_LR)), av_add(a, "--beta"), av_add(a, opt(O_DPO_BETA));
        av_add(a, "--rpo-alpha"), av_add(a, opt(O_RPO)), av_add(a, "--seed"), av_add(a, seed);
        av_add(a, "--eval-every"), av_add(a, "0"), av_add(a, "--save-every"), av_add(a, "0");
        STAGE("dpo", dpo, 0);
        snprintf(name, sizeof name, "r%d/dpo", r);
        if (stage_done(L, name)) {
            snprintf(name, sizeof name, "r%d/eval-dpo", r);
            if ((rc = eval_stage(L, a, name, dpo, db))) goto done;
        }
    }
    if (r > 1) goto done; /* round 2 retrains the preference learner only */
    /* 6. GRPO with the verifier, GRPO with the reward model, PPO: from the SFT model */
    if (write_prompts(prompts, fams, nf, strtol(opt(O_PROMPTS), NULL, 10), 0)) {
        out_error("loop: cannot write %s", prompts);
        rc = 1;
        goto done;
    }
    for (int m = 0; m < 3; m++) {
        static const char *const stage_names[] = {"grpo-verifier", "grpo-rm", "ppo"};
        static const char *const eval_names[] = {"eval-grpo-verifier", "eval-grpo-rm", "eval-ppo"};
        if (!method_on(stage_names[m])) continue;
        const char *dir_m = m == 0 ? grpo : m == 1 ? grpo_r : ppo_d;
        av_reset(a);
        av_add(a, "rlhf"), av_add(a, m == 2 ? "ppo" : "grpo"), av_add(a, "--model"), av_add(a, L->model);
        av_add(a, "--prompts"), av_add(a, prompts), av_add(a, "--out"), av_add(a, dir_m);
        if (m == 0) av_add(a, "--reward-fn"), av_add(a, "toy");
        else av_add(a, "--reward"), av_add(a, rm);
        av_add(a, "--steps"), av_add(a, opt(m == 2 ? O_PPO_STEPS : m == 1 ? O_GRPO_RM_STEPS : O_GRPO_STEPS));
        av_add(a, "--lr"), av_add(a, opt(m == 2 ? O_PPO_LR : O_GRPO_LR));
        if (m < 2) av_add(a, "--num-generations"), av_add(a, opt(O_GRPO_GEN));
        /* PPO samples its rollouts at temperature 1 (TRL's PPOConfig says 0.7), the temperature the
         * evaluation and rlhf chat sample at: trained at 0.7 the policy kept its unwanted answers
         * at 1 (13.6% against 9.3%), and 4 completions per prompt (measured, README.md) */
        else av_add(a, "--temperature"), av_add(a, "1"), av_add(a, "--num-generations"), av_add(a, "4");
        av_add(a, "--seed"), av_add(a, seed), av_add(a, "--runs-db"), av_add(a, db);
        STAGE(stage_names[m], dir_m, 0);
        snprintf(name, sizeof name, "r1/%s", stage_names[m]);
        if (stage_done(L, name)) {
            snprintf(name, sizeof name, "r1/%s", eval_names[m]);
            if ((rc = eval_stage(L, a, name, dir_m, db))) goto done;
        }
    }
#undef STAGE
done:
    free(a);
    return rc;
}

static int print_help(void) {
    out_printf("usage: %s\n\n", loop_usage);
    out_printf(
        "The closed feedback loop, measured: the SFT model (--model, default the built-in one) ->\n"
        "its candidates for --prompts val-split prompts ranked by the oracle (rlhf annotate --oracle;\n"
        "the SFT data is the train split, the evaluation the test split) -> a reward model (rlhf reward\n"
        "train --db) on those rankings and the oracle's rankings of --rm-prompts train-split prompts\n"
        "(OUT/rN/rm-data.db) -> DPO (rlhf dpo --db, on all those rankings), GRPO with the\n"
        "verifier (rlhf grpo --reward-fn toy), GRPO with the reward model (rlhf grpo --reward) and\n"
        "PPO (rlhf ppo; --methods picks among them), each from the SFT model -> rlhf eval of every\n"
        "model on --eval-n test prompts per family, with the KL to the SFT model -> one table\n"
        "(per-family accuracy, wrong / rambling / rude / never-ending / unwanted rates, KL, wall time\n"
        "of each stage), OUT/loop.svg and OUT/summary.json. --rounds 2 ranks round 1's DPO model's\n"
        "candidates and trains DPO again from it. Every stage is a child `rlhf` process recording its\n"
        "run in OUT/rN/feedback.db (the round's rankings too); OUT/loop_state.json lists the finished\n"
        "stages, so running the same command again after Ctrl-C or a kill resumes where it stopped.\n"
        "--json prints the summary.\n\n");
    for (int k = 0; k < O_COUNT; k++) out_printf("  %-20s %s (default %s)\n", g_opts[k].name, g_opts[k].help, g_opts[k].value);
    return 0;
}

int cmd_loop(int argc, char **argv) {
    if (command_wants_help(argc, argv)) return print_help();
    loop_ctx L = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            L.json = 1;
            continue;
        }
        if (!v) {
            out_error("%s needs a value", a);
            out_error("usage: %s", loop_usage);
            return 2;
        }
        i++;
        if (strcmp(a, "--model") == 0 || strcmp(a, "-m") == 0) {
            L.model = v;
            continue;
        }
        if (strcmp(a, "--out") == 0) {
            L.out = v;
            continue;
        }
        int k = 0;
        while (k < O_COUNT && strcmp(a, g_opts[k].name) != 0) k++;
        char *end = NULL;
        double x = k < O_COUNT && g_opts[k].is_number ? strtod(v, &end) : 0;
        if (k == O_COUNT || (g_opts[k].is_number && (*end || !*v || x < 0 || !isfinite(x)))) {
            out_error("%s: unknown flag or bad value '%s'", a, v);
            out_error("usage: %s", loop_usage);
            return 2;
        }
        g_opts[k].value = v;
    }
    if (!L.out || strlen(L.out) > 3000) {
        out_error("--out DIR is required (the loop's models, databases, logs and state go there)");
        return 2;
    }
    L.rounds = (int)strtol(opt(O_ROUNDS), NULL, 10);
    if (L.rounds < 1 || L.rounds > 2) return out_error("--rounds is 1 or 2, got %s", opt(O_ROUNDS)), 2;
    if (strtod(opt(O_NOISE), NULL) > 1) return out_error("--noise is a probability, got %s", opt(O_NOISE)), 2;
    long k_cand = strtol(opt(O_CANDIDATES), NULL, 10);
    if (k_cand < 2 || k_cand > 26) return out_error("--candidates is 2..26, got %s", opt(O_CANDIDATES)), 2;
    int fams[64], nf = 0;
    if (strcmp(opt(O_FAMILIES), "all") == 0) {
        for (int f = 0; f < world_family_count() && nf < 64; f++) fams[nf++] = f;
    } else {
        char buf[512];
        snprintf(buf, sizeof buf, "%s", opt(O_FAMILIES));
        for (char *save = NULL, *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
            int f = world_family_find(w);
            if (f < 0 || nf == 64) return out_error("--families: unknown family '%s' (rlhf world families)", w), 2;
            fams[nf++] = f;
        }
    }
    if (!nf) return out_error("--families: no family given"), 2;
    {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", opt(O_METHODS));
        for (char *save = NULL, *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save))
            if (strcmp(w, "dpo") && strcmp(w, "grpo-verifier") && strcmp(w, "grpo-rm") && strcmp(w, "ppo"))
                return out_error("--methods: unknown method '%s' (dpo, grpo-verifier, grpo-rm, ppo)", w), 2;
    }
    if (L.rounds == 2 && !method_on("dpo")) return out_error("--rounds 2 continues from round 1's DPO model: keep dpo in --methods"), 2;
    if (!L.model && !(L.model = default_model_path())) {
        out_error("--model is required (no built-in default model found)");
        return 2;
    }
    char model_abs[4096];
    if (!realpath(L.model, model_abs)) return out_error("--model %s: %s", L.model, strerror(errno)), 1;
    L.model = model_abs;
    rlhf_error err = {0};
    if (file_mkdir_p(L.out, &err)) return out_fail(&err);
    path_join(L.state_path, sizeof L.state_path, L.out, "loop_state.json");
    /* the settings: a state with other settings belongs to another loop */
    cJSON *cfg = cJSON_CreateObject();
    cJSON_AddStringToObject(cfg, "model", L.model);
    for (int k = 0; k < O_COUNT; k++)
        if (k != O_ROUNDS) cJSON_AddStringToObject(cfg, g_opts[k].name + 2, g_opts[k].value);
    char *text = NULL;
    size_t len = 0;
    if (file_read_all(L.state_path, &text, &len, NULL) == 0) {
        L.state = cJSON_Parse(text);
        free(text);
        if (!L.state || !cJSON_Compare(cJSON_GetObjectItemCaseSensitive(L.state, "config"), cfg, 1)) {
            cJSON_Delete(cfg);
            cJSON_Delete(L.state);
            out_error("loop: %s holds a loop with other settings (%s); run it with those or use another --out", L.out,
                      L.state_path);
            return 2;
        }
        cJSON_Delete(cfg);
        if (!L.json) out_printf("loop: resuming %s\n", L.out);
    } else {
        L.state = cJSON_CreateObject();
        cJSON_AddItemToObject(L.state, "config", cfg);
        cJSON_AddObjectToObject(L.state, "stages");
    }
    struct sigaction old;
    run_log_sigint_catch(&L.stop, &old);
    int rc = state_save(&L);
    for (int r = 1; r <= L.rounds && !rc; r++) {
        char dpo_name[32];
        snprintf(dpo_name, sizeof dpo_name, "r%d/dpo", r - 1);
        if (r > 1 && !stage_done(&L, dpo_name)) {
            out_error("loop: round %d needs round %d's DPO model, which did not finish", r, r - 1);
            break;
        }
        rc = round_run(&L, r, fams, nf);
    }
    run_log_sigint_restore(&old);
    if (rc == STAGE_STOPPED) {
        out_error("loop: stopped; what finished is kept in %s: run the same command to resume", L.state_path);
        cJSON_Delete(L.state);
        return 130;
    }
    loop_row rows[] = {
        {"SFT", NULL, "r1/eval-sft", 1, NULL},
        {"DPO", "r1/dpo", "r1/eval-dpo", 1, NULL},
        {"GRPO (verifier)", "r1/grpo-verifier", "r1/eval-grpo-verifier", 1, NULL},
        {"GRPO (reward model)", "r1/grpo-rm", "r1/eval-grpo-rm", 1, NULL},
        {"PPO", "r1/ppo", "r1/eval-ppo", 1, NULL},
        {"DPO round 2", "r2/dpo", "r2/eval-dpo", 1, NULL},
    };
    int n_rows = L.rounds == 2 ? 6 : 5;
    static const char *const row_methods[] = {NULL, "dpo", "grpo-verifier", "grpo-rm", "ppo", "dpo"};
    for (int i = 1; i < n_rows; i++)
        if (rows[i].available && !method_on(row_methods[i])) rows[i].available = 0, rows[i].why = "not run (--methods)";
    cJSON *summary = print_table(&L, rows, n_rows, fams, nf);
    /* the reward model's held-out ranking accuracy and the stage times */
    cJSON *root = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "models", summary);
    cJSON *rms = cJSON_AddArrayToObject(root, "reward_models");
    for (int r = 1; r <= L.rounds; r++) {
        char name[64];
        snprintf(name, sizeof name, "r%d/reward-heldout", r);
        const cJSON *res = stage_done(&L, name) ? cJSON_GetObjectItemCaseSensitive(stage_get(&L, name), "result") : NULL;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "round", r);
        if (res) {
            cJSON_AddNumberToObject(o, "heldout_accuracy", num(res, "accuracy"));
            cJSON_AddNumberToObject(o, "heldout_pairs", num(res, "pairs"));
            /* per family, and right-vs-wrong pairs apart from style-only ones (rlhf reward eval) */
            for (int k = 0; k < 2; k++) {
                const char *key = k ? "by_kind" : "by_family";
                const cJSON *by = cJSON_GetObjectItemCaseSensitive(res, key);
                if (by) cJSON_AddItemToObject(o, key, cJSON_Duplicate(by, 1));
            }
        }
        cJSON_AddItemToArray(rms, o);
        if (!L.json) {
            if (res) {
                out_printf("reward model (round %d): held-out ranking accuracy %.1f%% on %.0f pairs of test-split prompts\n", r,
                           100 * num(res, "accuracy"), num(res, "pairs"));
                const cJSON *by = cJSON_GetObjectItemCaseSensitive(res, "by_family"), *e;
                if (by) {
                    out_printf("  by family:");
                    cJSON_ArrayForEach(e, by) out_printf(" %s %.1f%%", e->string, 100 * num(e, "accuracy"));
                    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(res, "by_kind");
                    const cJSON *c = cJSON_GetObjectItemCaseSensitive(kind, "correctness"), *st = cJSON_GetObjectItemCaseSensitive(kind, "style");
                    if (c && st)
                        out_printf("; right vs wrong answers %.1f%% (%.0f pairs), style only %.1f%% (%.0f)", 100 * num(c, "accuracy"),
                                   num(c, "pairs"), 100 * num(st, "accuracy"), num(st, "pairs"));
                    out_printf("\n");
                }
            } else out_printf("reward model (round %d): not trained (see the stage log)\n", r);
        }
    }
    cJSON *times = cJSON_AddObjectToObject(root, "stage_seconds");
    const cJSON *s;
    double total = 0;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(L.state, "stages")) {
        cJSON_AddNumberToObject(times, s->string, num(s, "seconds"));
        total += num(s, "seconds");
    }
    if (!L.json) {
        out_printf("stage times:");
        cJSON_ArrayForEach(s, times) {
            char t[32];
            run_log_duration(t, sizeof t, s->valuedouble);
            out_printf(" %s %s;", s->string, t);
        }
        char t[32];
        run_log_duration(t, sizeof t, total);
        out_printf(" total %s\n", t);
    }
    char svg[LOOP_PATH], sum[LOOP_PATH];
    path_join(svg, sizeof svg, L.out, "loop.svg");
    path_join(sum, sizeof sum, L.out, "summary.json");
    int bad = write_svg(&L, summary, svg);
    char *js = cJSON_PrintUnformatted(root);
    if (js) {
        bad |= file_write_atomic(sum, js, strlen(js), &err);
        if (L.json) out_printf("%s\n", js);
    }
    if (!L.json) out_printf("chart: %s; summary: %s; runs and rankings: %s/r*/feedback.db\n", svg, sum, L.out);
    free(js);
    cJSON_Delete(root);
    int failed = rc != 0;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(L.state, "stages")) failed |= !stage_done(&L, s->string);
    cJSON_Delete(L.state);
    if (bad) return out_error("loop: cannot write %s or %s", svg, sum), 1;
    if (failed) out_error("loop: a stage failed (its row or line above says which; the logs are in %s/logs)", L.out);
    return failed ? 1 : 0;
}
