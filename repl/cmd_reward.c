/* cmd_reward.c — `rlhf reward train|eval` (a Bradley–Terry reward model on preference pairs) and
 * `rlhf score` (rewards of texts under a reward model). The training is src/train/score_train.c;
 * pairs come from a TRL/HH JSONL file (read through the feedback store's importer, in memory, so
 * the file is checked line by line exactly as `rlhf db import` checks it) or from the database. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feedback/store.h"
#include "repl/commands.h"
#include "repl/out.h"
#include "repl/pairs_load.h"
#include "repl/score_cli.h"
#include "src/core/fileio.h"
#include "src/world/world.h"

static const char *const reward_usage =
    "rlhf reward train --model DIR (--data FILE.jsonl | --db FILE) --out DIR [--format trl|hh] [--center C] "
    "[--use-margins] [--freeze-body] [--truncate error|left|drop] [common trainer flags]\n"
    "       rlhf reward eval --model RM (--data FILE.jsonl | --db FILE) [--max-length T] [--truncate ...] [--json]";

static const char *const reward_help =
    "Train (or evaluate) a reward model: a language model's body with a score head, trained with the\n"
    "Bradley-Terry loss -log sigmoid(r_chosen - r_rejected - margin) (+ C * mean((r_chosen + r_rejected)^2),\n"
    "TRL's center_rewards_coefficient). The reward of a pair's side is read at the last token of\n"
    "prompt + response. The output is a Hugging Face *ForSequenceClassification directory (num_labels 1,\n"
    "score.weight) with the tokenizer, plus training_state.bin for --resume. With --lora-rank R the body\n"
    "gets a LoRA adapter and the score head trains fully (PEFT's modules_to_save = [\"score\"]); the output\n"
    "is then a PEFT adapter directory (task_type SEQ_CLS, the score in adapter_model.safetensors) plus\n"
    "classifier_config.json, not merged; rlhf score / reward eval load it with its base model.\n"
    "\n"
    "  --data FILE.jsonl      preference pairs: TRL {\"prompt\",\"chosen\",\"rejected\"} or Anthropic HH\n"
    "                         {\"chosen\",\"rejected\"} dialogues; every line is checked (bad lines are\n"
    "                         reported by number and nothing is trained)\n"
    "  --db FILE              the database's strict preferences (flagged pairs left out); the run and\n"
    "                         its metrics are recorded there\n"
    "  --format trl|hh        the file's format (default: TRL when the first record has \"prompt\")\n"
    "  --center C             center_rewards_coefficient (default 0: off)\n"
    "  --use-margins          use each pair's margin in the loss (the database's rank distance or the\n"
    "                         file's; default: margin 0, plain Bradley-Terry)\n"
    "  --freeze-body          train only the score head (a linear probe on the frozen body: no body\n"
    "                         gradients, AdamW moments for score.weight only)\n"
    "  --truncate P           a text longer than --max-length: error (default), left (keep its last\n"
    "                         tokens: the reward reads the end) or drop (leave the pair out)\n"
    "  --json                 eval: print the metrics as one JSON object\n"
    "\n"
    "Train prints the held-out accuracy (the share of pairs with r_chosen > r_rejected) and the mean margin.\n"
    "Ctrl-C stops at the next step, saves, and says how to continue.\n";

static const char *const score_usage =
    "rlhf score --model RM (--prompt TEXT --response TEXT | --text TEXT | --data FILE.jsonl) [--json]";

/* prompt + response, the text a reward is read from. */
static char *concat(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s%s", a, b);
    return s;
}

static int encode_pairs(const pref_dataset *ds, const model_bundle *b, int max_length, score_truncate tr, int margins,
                        score_data *d) {
    score_data_init(d, 2);
    rlhf_error err = {0};
    for (size_t i = 0; i < ds->n; i++) {
        const pref_pair *pp = &ds->pairs[i];
        char *c = concat(pp->prompt, pp->chosen), *r = concat(pp->prompt, pp->rejected);
        const char *texts[2] = {c, r};
        float labels[2] = {margins ? (float)pp->margin : 0.0f, 0.0f};
        int rc = c && r ? score_data_add(d, b->tok, b->add_bos, texts, labels, i + 1, max_length, tr, b->m.config.vocab_size, &err)
                        : rlhf_errorf(&err, RLHF_ERR_NOMEM, "out of memory");
        free(c);
        free(r);
        if (rc) {
            score_data_free(d);
            out_error("%s", err.msg);
            return 1;
        }
    }
    if (d->n_examples == 0) {
        out_error("every pair is longer than --max-length %d (all dropped)", max_length);
        score_data_free(d);
        return 1;
    }
    return 0;
}

static int clamp_length(const trainer_flags *f, const model *m) {
    return f->max_length > 0 && f->max_length < m->config.context ? f->max_length : m->config.context;
}

/* ---- reward train ---- */

static int reward_train(int argc, char **argv) {
    trainer_flags f;
    trainer_flags_defaults(&f);
    f.lr = 1e-4; /* a fresh score head needs more than SFT's 2e-5 */
    f.epochs = 1;
    f.max_length = 1024;
    trainer_flags defaults = f;
    const char *format = NULL;
    double center = 0;
    int margins = 0, freeze = 0;
    score_truncate tr = SCORE_TRUNCATE_ERROR;
    int given_own = 0;
    for (int i = 2; i < argc; i++) {
        int r = trainer_flags_parse(&f, argc, argv, &i, reward_usage);
        if (r == TRAINER_FLAGS_ERROR) return 2;
        if (r == TRAINER_FLAGS_TAKEN) continue;
        if (strcmp(argv[i], "--use-margins") == 0 || strcmp(argv[i], "--freeze-body") == 0) {
            *(argv[i][2] == 'u' ? &margins : &freeze) = 1;
            given_own = 1;
            continue;
        }
        char name[64];
        const char *v;
        if (score_cli_own_flag(argc, argv, &i, name, sizeof name, &v, reward_usage)) return 2;
        if (strcmp(name, "--format") == 0) format = v;
        else if (strcmp(name, "--center") == 0) {
            if (trainer_flag_double(name, v, 0, 1e6, &center, reward_usage)) return 2;
            given_own = 1;
        } else if (strcmp(name, "--truncate") == 0) {
            if (score_cli_truncate(v, &tr, reward_usage)) return 2;
            given_own = 1;
        } else {
            out_error("unknown flag '%s'", name);
            out_error("usage: %s", reward_usage);
            return 2;
        }
    }
    (void)defaults;
    if (trainer_flags_check(&f, !f.resume, reward_usage)) return 2;
    char *extra = NULL;
    if (f.resume) {
        if (given_own) {
            out_error("--resume continues the saved run with its own --center, --use-margins, --freeze-body and --truncate");
            return 2;
        }
        if (score_cli_restore(&f, &extra)) return 1;
        cJSON *x = cJSON_Parse(extra);
        const cJSON *j;
        if (cJSON_IsNumber(j = cJSON_GetObjectItemCaseSensitive(x, "center"))) center = j->valuedouble;
        if (cJSON_IsBool(j = cJSON_GetObjectItemCaseSensitive(x, "use_margins"))) margins = cJSON_IsTrue(j);
        if (cJSON_IsBool(j = cJSON_GetObjectItemCaseSensitive(x, "freeze_body"))) freeze = cJSON_IsTrue(j);
        if (cJSON_IsString(j = cJSON_GetObjectItemCaseSensitive(x, "truncate"))) score_cli_truncate(j->valuestring, &tr, reward_usage);
        if (!format && cJSON_IsString(j = cJSON_GetObjectItemCaseSensitive(x, "format"))) format = j->valuestring;
        cJSON_Delete(x);
        free(extra);
        extra = NULL;
    }
    if (f.lora_rank > 0 && freeze) {
        out_error("--freeze-body and --lora-rank exclude each other (the adapter trains the body)");
        return 2;
    }

    /* everything is read and checked before anything is written */
    pref_dataset ds;
    int rc = pairs_load(f.data, f.db, format, &ds);
    if (rc) return rc;
    model_bundle b = {0};
    if (score_cli_load_model(&f, 1, NULL, &b)) {
        pref_dataset_free(&ds);
        return 1;
    }
    const int max_len = clamp_length(&f, &b.m);
    score_data d;
    rc = encode_pairs(&ds, &b, max_len, tr, margins, &d);
    const size_t n_pairs = ds.n;
    pref_dataset_free(&ds);
    if (rc) {
        model_bundle_free(&b);
        return rc;
    }
    score_train_params p;
    rlhf_error err = {0};
    if ((rc = score_cli_setup(&f, SCORE_TASK_PAIRS, &b, &d, n_pairs, max_len, "pairs", &p))) goto done;
    char ex[256];
    snprintf(ex, sizeof ex, "{\"center\":%.17g,\"use_margins\":%s,\"freeze_body\":%s,\"truncate\":\"%s\"%s%s%s}", center,
             margins ? "true" : "false", freeze ? "true" : "false", score_cli_truncate_name(tr), format ? ",\"format\":\"" : "", format ? format : "", format ? "\"" : "");
    char *run_json = score_cli_run_json(&f, "reward", ex);
    p.center_coef = (float)center;
    p.freeze_body = freeze;
    p.run_json = run_json;
    rc = score_cli_train("reward", &f, &p);
    if (rc == 0 && p.n_val > 0) {
        float *scores = malloc(2 * p.n_val * sizeof(float));
        score_pair_metrics pm;
        if (!scores || score_predict(&b.m, &d, p.val_idx, p.n_val, 2 * f.batch, scores, &err)) {
            rc = scores ? out_fail(&err) : 1;
        } else {
            score_pair_eval(scores, p.n_val, &pm);
            out_printf("held-out accuracy %.4f on %zu pairs (r_chosen > r_rejected), mean margin %.4f (chosen %.4f, rejected "
                       "%.4f)\n",
                       pm.accuracy, pm.n, pm.mean_margin, pm.mean_chosen, pm.mean_rejected);
        }
        free(scores);
    }
    if (rc == 0) score_cli_print_saved(&f);
    free(run_json);
    free((void *)p.train_idx);
    free((void *)p.val_idx);
done:
    score_data_free(&d);
    model_bundle_free(&b);
    return rc;
}

/* ---- reward eval ---- */

/* The held-out accuracy broken down where the pairs' prompts are the task world's (rlhf world,
 * the oracle's rankings): per family, and by what separates the two answers for the verifier —
 * "correctness" (one is right, the other not: the reward model must know the answer) or "style"
 * (both right or both wrong: conciseness, politeness, ending). A reward model is only as good as
 * what its body can tell apart; this shows where it is not. */
typedef struct {
    size_t n, right;
} tally;
typedef struct {
    tally fam[64], kind[2];
    int any;
} world_breakdown;

/* The last user message of a chat prompt (a JSON array of messages), or the plain prompt. */
static char *user_text(const pref_pair *pp) {
    return pp->prompt_messages ? store_last_user_message(pp->prompt_messages) : strdup(pp->prompt);
}

static void world_breakdown_add(world_breakdown *w, const pref_pair *pp, int right) {
    char *u = user_text(pp);
    int f = u ? world_prompt_family(u) : -1;
    world_verdict vc, vr;
    rlhf_error e = {0};
    if (f >= 0 && f < 64 && !world_verify(u, pp->chosen, &vc, &e) && !world_verify(u, pp->rejected, &vr, &e)) {
        int k = vc.correct != vr.correct ? 0 : 1;
        w->fam[f].n++, w->fam[f].right += (size_t)right;
        w->kind[k].n++, w->kind[k].right += (size_t)right;
        w->any = 1;
    }
    free(u);
}

static const char *const k_kind_names[2] = {"correctness", "style"};

static void world_breakdown_print(const world_breakdown *w, int json) {
    if (!w->any) return;
    if (json) {
        out_printf(", \"by_family\": {");
        int first = 1;
        for (int f = 0; f < world_family_count() && f < 64; f++)
            if (w->fam[f].n) {
                out_printf("%s\"%s\": {\"pairs\": %zu, \"accuracy\": %.9g}", first ? "" : ", ", world_family_name(f), w->fam[f].n,
                           (double)w->fam[f].right / (double)w->fam[f].n);
                first = 0;
            }
        out_printf("}, \"by_kind\": {");
        for (int k = 0; k < 2; k++)
            out_printf("%s\"%s\": {\"pairs\": %zu, \"accuracy\": %.9g}", k ? ", " : "", k_kind_names[k], w->kind[k].n,
                       w->kind[k].n ? (double)w->kind[k].right / (double)w->kind[k].n : 0.0);
        out_printf("}");
        return;
    }
    out_printf("task-world pairs by family:");
    for (int f = 0; f < world_family_count() && f < 64; f++)
        if (w->fam[f].n)
            out_printf(" %s %.1f%% (%zu)", world_family_name(f), 100.0 * (double)w->fam[f].right / (double)w->fam[f].n, w->fam[f].n);
    out_printf("\nby what separates the answers: ");
    for (int k = 0; k < 2; k++)
        out_printf("%s%s %.1f%% (%zu)", k ? ", " : "", k == 0 ? "right vs wrong" : "style only (both right or both wrong)",
                   w->kind[k].n ? 100.0 * (double)w->kind[k].right / (double)w->kind[k].n : 0.0, w->kind[k].n);
    out_printf("\n");
}

static int reward_eval(int argc, char **argv) {
    const char *model_path = NULL, *data = NULL, *db = NULL, *format = NULL;
    int json = 0, margins = 0;
    long max_length = 0;
    score_truncate tr = SCORE_TRUNCATE_ERROR;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
            continue;
        }
        char name[64];
        const char *v;
        if (score_cli_own_flag(argc, argv, &i, name, sizeof name, &v, reward_usage)) return 2;
        if (strcmp(name, "--model") == 0) model_path = v;
        else if (strcmp(name, "--data") == 0) data = v;
        else if (strcmp(name, "--db") == 0) db = v;
        else if (strcmp(name, "--format") == 0) format = v;
        else if (strcmp(name, "--max-length") == 0) {
            if (trainer_flag_long(name, v, 2, &max_length, reward_usage)) return 2;
        } else if (strcmp(name, "--truncate") == 0) {
            if (score_cli_truncate(v, &tr, reward_usage)) return 2;
        } else {
            out_error("unknown flag '%s'", name);
            out_error("usage: %s", reward_usage);
            return 2;
        }
    }
    if (!model_path || (!data == !db)) {
        out_error("%s", !model_path ? "--model RM is required" : "give one of --data FILE.jsonl or --db FILE");
        out_error("usage: %s", reward_usage);
        return 2;
    }
    trainer_flags f;
    trainer_flags_defaults(&f);
    f.model = model_path;
    f.max_length = (int)max_length;
    model_bundle b = {0};
    rlhf_error err = {0};
    if (score_model_load(&b, model_path, &err)) return out_fail(&err);
    if (b.m.config.num_labels != 1 || !b.tok) {
        out_error("%s is not a reward model with a tokenizer (num_labels %d)", model_path, b.m.config.num_labels);
        model_bundle_free(&b);
        return 1;
    }
    pref_dataset ds;
    pref_dataset_init(&ds);
    int rc = pairs_load(data, db, format, &ds);
    score_data d = {0};
    if (!rc) rc = encode_pairs(&ds, &b, clamp_length(&f, &b.m), tr, margins, &d);
    float *scores = NULL;
    size_t *idx = NULL;
    if (!rc) {
        scores = malloc(2 * d.n_examples * sizeof(float));
        idx = malloc(d.n_examples * sizeof(size_t));
        for (size_t i = 0; idx && i < d.n_examples; i++) idx[i] = i;
        if (!scores || !idx) {
            out_error("out of memory");
            rc = 1;
        }
        else if (score_predict(&b.m, &d, idx, d.n_examples, 16, scores, &err)) rc = out_fail(&err);
    }
    if (!rc) {
        score_pair_metrics pm;
        score_pair_eval(scores, d.n_examples, &pm);
        world_breakdown wb;
        memset(&wb, 0, sizeof wb);
        for (size_t e = 0; e < d.n_examples; e++) /* source is the pair's 1-based record number */
            world_breakdown_add(&wb, &ds.pairs[d.source[e] - 1], scores[2 * e] > scores[2 * e + 1]);
        if (json) {
            out_printf("{\"pairs\": %zu, \"accuracy\": %.9g, \"mean_margin\": %.9g, \"mean_chosen\": %.9g, \"mean_rejected\": %.9g, "
                       "\"truncated\": %zu, \"dropped\": %zu",
                       pm.n, pm.accuracy, pm.mean_margin, pm.mean_chosen, pm.mean_rejected, d.n_truncated, d.n_dropped);
            world_breakdown_print(&wb, 1);
            out_printf("}\n");
        } else {
            out_printf("%zu pairs: accuracy %.4f (r_chosen > r_rejected), mean margin %.4f (chosen %.4f, rejected %.4f)%s\n", pm.n,
                       pm.accuracy, pm.mean_margin, pm.mean_chosen, pm.mean_rejected,
                       d.n_dropped ? " (some pairs dropped: longer than --max-length)" : "");
            world_breakdown_print(&wb, 0);
        }
    }
    pref_dataset_free(&ds);
    free(scores);
    free(idx);
    score_data_free(&d);
    model_bundle_free(&b);
    return rc;
}

int cmd_reward(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        (command_wants_help(argc, argv) && argc >= 2 && (strcmp(argv[1], "train") == 0 || strcmp(argv[1], "eval") == 0))) {
        out_printf("usage: %s\n\n%s\n", reward_usage, reward_help);
        trainer_flags d;
        trainer_flags_defaults(&d);
        d.lr = 1e-4;
        d.epochs = 1;
        trainer_flags_print_help(&d);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "train") == 0) return reward_train(argc, argv);
    if (strcmp(argv[1], "eval") == 0) return reward_eval(argc, argv);
    out_error("unknown subcommand 'reward %s' (train or eval)", argv[1]);
    out_error("usage: %s", reward_usage);
    return 2;
}

/* ---- rlhf score ---- */

static int score_texts(const model_bundle *b, const char *const *texts, size_t n, int json, const size_t *lines) {
    score_data d;
    score_data_init(&d, 1);
    rlhf_error err = {0};
    int rc = 0;
    const int K = b->m.config.num_labels;
    for (size_t i = 0; i < n && !rc; i++) {
        float zero = 0;
        if (score_data_add(&d, b->tok, b->add_bos, &texts[i], &zero, lines ? lines[i] : i + 1, b->m.config.context,
                           SCORE_TRUNCATE_LEFT, b->m.config.vocab_size, &err))
            rc = out_fail(&err);
    }
    float *scores = rc ? NULL : malloc(n * (size_t)K * sizeof(float));
    size_t *idx = rc ? NULL : malloc(n * sizeof(size_t));
    if (!rc && (!scores || !idx)) {
        out_error("out of memory");
        rc = 1;
    }
    for (size_t i = 0; !rc && i < n; i++) idx[i] = i;
    if (!rc && score_predict((model *)&b->m, &d, idx, n, 16, scores, &err)) rc = out_fail(&err);
    for (size_t i = 0; !rc && i < n; i++) {
        const float *s = scores + i * (size_t)K;
        if (json) {
            out_printf("{");
            if (lines) out_printf("\"line\": %zu, ", lines[i]);
            if (K == 1) {
                out_printf("\"reward\": ");
                out_json_float(s[0]);
            } else {
                out_printf("\"scores\": {");
                for (int k = 0; k < K; k++) {
                    out_printf(k ? ", " : "");
                    out_json_string(b->labels ? b->labels[k] : "");
                    out_printf(": ");
                    out_json_float(s[k]);
                }
                out_printf("}");
            }
            out_printf("}\n");
        } else if (K == 1) {
            if (lines) out_printf("line %zu: ", lines[i]);
            out_printf("%.6f\n", (double)s[0]);
        } else {
            if (lines) out_printf("line %zu: ", lines[i]);
            for (int k = 0; k < K; k++) out_printf("%s%s %.6f", k ? "  " : "", b->labels ? b->labels[k] : "?", (double)s[k]);
            out_printf("\n");
        }
    }
    if (!rc && d.n_truncated)
        out_error("%zu texts were longer than the model's context %d: scored on their last tokens", d.n_truncated,
                  b->m.config.context);
    free(scores);
    free(idx);
    score_data_free(&d);
    return rc;
}

int cmd_score(int argc, char **argv) {
    if (command_wants_help(argc, argv)) {
        out_printf("usage: %s\n\n"
                   "Scores texts with a reward model (or a classifier: one score per label), read at the last token of\n"
                   "prompt + response exactly as `rlhf reward train` trained it.\n\n"
                   "  --prompt TEXT --response TEXT   one text, prompt + response\n"
                   "  --text TEXT                     one text as it is\n"
                   "  --data FILE.jsonl               one object a line: {\"prompt\",\"response\"} (or \"completion\"), or {\"text\"}\n"
                   "  --json                          one JSON object per text\n",
                   score_usage);
        return 0;
    }
    const char *model_path = NULL, *prompt = NULL, *response = NULL, *text = NULL, *data = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
            continue;
        }
        char name[64];
        const char *v;
        if (score_cli_own_flag(argc, argv, &i, name, sizeof name, &v, score_usage)) return 2;
        if (strcmp(name, "--model") == 0) model_path = v;
        else if (strcmp(name, "--prompt") == 0) prompt = v;
        else if (strcmp(name, "--response") == 0) response = v;
        else if (strcmp(name, "--text") == 0) text = v;
        else if (strcmp(name, "--data") == 0) data = v;
        else {
            out_error("unknown flag '%s'", name);
            out_error("usage: %s", score_usage);
            return 2;
        }
    }
    const int modes = (prompt || response) + (text != NULL) + (data != NULL);
    if (!model_path || modes != 1 || (prompt && !response) || (response && !prompt)) {
        out_error("%s", !model_path ? "--model RM is required" : "give --prompt with --response, or --text, or --data");
        out_error("usage: %s", score_usage);
        return 2;
    }
    model_bundle b = {0};
    rlhf_error err = {0};
    if (score_model_load(&b, model_path, &err)) return out_fail(&err);
    int rc = 0;
    if (b.m.config.num_labels <= 0 || !b.tok) {
        out_error("%s is %s", model_path, b.tok ? "a language model, not a reward model or classifier" : "missing its tokenizer");
        model_bundle_free(&b);
        return 1;
    }
    if (!data) {
        char *t = text ? strdup(text) : concat(prompt, response);
        const char *texts[1] = {t};
        if (t) rc = score_texts(&b, texts, 1, json, NULL);
        else {
            out_error("out of memory");
            rc = 1;
        }
        free(t);
        model_bundle_free(&b);
        return rc;
    }
    char *buf = NULL;
    size_t len = 0;
    if (file_read_all(data, &buf, &len, &err)) {
        model_bundle_free(&b);
        return out_fail(&err);
    }
    char **texts = NULL;
    size_t *lines = NULL, n = 0, line = 0;
    for (char *p = buf; !rc && p && *p;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        line++;
        char *q = p;
        while (*q == ' ' || *q == '\r' || *q == '\t') q++;
        if (*q) {
            cJSON *o = cJSON_Parse(q);
            const cJSON *pj = cJSON_GetObjectItemCaseSensitive(o, "prompt");
            const cJSON *rj = cJSON_GetObjectItemCaseSensitive(o, "response");
            if (!rj) rj = cJSON_GetObjectItemCaseSensitive(o, "completion");
            const cJSON *tj = cJSON_GetObjectItemCaseSensitive(o, "text");
            char *t = NULL;
            if (!o) {
                out_error("%s:%zu: not valid JSON", data, line);
                rc = 1;
            } else if (cJSON_IsString(pj) && cJSON_IsString(rj)) {
                t = concat(pj->valuestring, rj->valuestring);
            } else if (cJSON_IsString(tj)) {
                t = strdup(tj->valuestring);
            } else {
                out_error("%s:%zu: needs string fields \"prompt\" and \"response\" (or \"completion\"), or \"text\"", data, line);
                rc = 1;
            }
            cJSON_Delete(o);
            if (t) {
                char **nt = realloc(texts, (n + 1) * sizeof *texts);
                size_t *nlines = realloc(lines, (n + 1) * sizeof *lines);
                if (nt) texts = nt;
                if (nlines) lines = nlines;
                if (!nt || !nlines) {
                    free(t);
                    out_error("out of memory");
                    rc = 1;
                } else {
                    texts[n] = t;
                    lines[n++] = line;
                }
            }
        }
        p = nl ? nl + 1 : NULL;
    }
    if (!rc && n == 0) {
        out_error("%s: no records", data);
        rc = 1;
    }
    if (!rc) rc = score_texts(&b, (const char *const *)texts, n, json, lines);
    for (size_t i = 0; i < n; i++) free(texts[i]);
    free(texts);
    free(lines);
    free(buf);
    model_bundle_free(&b);
    return rc;
}
