/* cmd_classify.c — `rlhf classify train|eval`: a sequence classifier (score head over a language
 * model's body, cross-entropy over labels) on {"text","label"} JSON lines. Labels are strings;
 * training maps them to ids in order of first appearance and saves them as id2label. The training
 * is src/train/score_train.c. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repl/commands.h"
#include "repl/out.h"
#include "repl/score_cli.h"
#include "src/core/fileio.h"

static const char *const classify_usage =
    "rlhf classify train --model DIR --data FILE.jsonl --out DIR [--freeze-body] [--truncate error|left|drop] [common trainer flags]\n"
    "       rlhf classify eval --model DIR --data FILE.jsonl [--max-length T] [--truncate ...] [--json]";

static const char *const classify_help =
    "Train (or evaluate) a sequence classifier: a language model's body with a score head of one output\n"
    "per label, read at the last token of the text, trained with cross-entropy. The output is a Hugging\n"
    "Face *ForSequenceClassification directory (num_labels, id2label/label2id, score.weight) with the\n"
    "tokenizer, plus training_state.bin for --resume. With --lora-rank R the body gets a LoRA adapter\n"
    "and the score head trains fully (PEFT's modules_to_save = [\"score\"]): the output is a PEFT adapter\n"
    "directory (task_type SEQ_CLS) plus classifier_config.json (labels), loaded with its base model.\n"
    "\n"
    "  --data FILE.jsonl      one object a line: {\"text\": \"...\", \"label\": \"spam\"} (labels are strings,\n"
    "                         or numbers taken as their text); bad lines are reported by number\n"
    "  --freeze-body          train only the score head (a linear probe on the frozen body)\n"
    "  --truncate P           a text longer than --max-length: error (default), left (keep its last\n"
    "                         tokens) or drop (leave it out)\n"
    "  --json                 eval: accuracy, per-class precision/recall/F1 and the confusion matrix as JSON\n"
    "\n"
    "Train holds out --val-fraction of the examples and prints the same report on them. Eval refuses a\n"
    "label the model does not know.\n";

typedef struct {
    char **text;
    char **label;
    size_t *line;
    size_t n;
} records;

static void records_free(records *r) {
    for (size_t i = 0; i < r->n; i++) {
        free(r->text[i]);
        free(r->label[i]);
    }
    free(r->text);
    free(r->label);
    free(r->line);
    memset(r, 0, sizeof *r);
}

/* Reads {"text","label"} lines; every bad line is reported, and any makes it fail. */
static int read_records(const char *path, records *r) {
    memset(r, 0, sizeof *r);
    char *buf = NULL;
    size_t len = 0, line = 0, bad = 0;
    rlhf_error err = {0};
    if (file_read_all(path, &buf, &len, &err)) return out_fail(&err);
    for (char *p = buf; p && *p;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        line++;
        char *q = p;
        while (*q == ' ' || *q == '\r' || *q == '\t') q++;
        p = nl ? nl + 1 : NULL;
        if (!*q) continue;
        cJSON *o = cJSON_Parse(q);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "text");
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(o, "label");
        const char *why = !o ? "not valid JSON" : !cJSON_IsString(t) ? "\"text\" must be a string"
                          : !*t->valuestring                    ? "\"text\" is empty"
                          : !(cJSON_IsString(l) || cJSON_IsNumber(l)) ? "\"label\" must be a string (or a number)"
                          : cJSON_IsString(l) && !*l->valuestring   ? "\"label\" is empty"
                                                                    : NULL;
        if (why) {
            if (bad++ < 10) out_error("%s:%zu: %s", path, line, why);
            cJSON_Delete(o);
            continue;
        }
        char num[64];
        if (cJSON_IsNumber(l)) snprintf(num, sizeof num, "%.17g", l->valuedouble);
        char **nt = realloc(r->text, (r->n + 1) * sizeof *nt);
        if (nt) r->text = nt;
        char **nl2 = realloc(r->label, (r->n + 1) * sizeof *nl2);
        if (nl2) r->label = nl2;
        size_t *nli = realloc(r->line, (r->n + 1) * sizeof *nli);
        if (nli) r->line = nli;
        if (!nt || !nl2 || !nli) {
            cJSON_Delete(o);
            free(buf);
            records_free(r);
            out_error("out of memory");
            return 1;
        }
        r->text[r->n] = strdup(t->valuestring);
        r->label[r->n] = strdup(cJSON_IsString(l) ? l->valuestring : num);
        r->line[r->n++] = line;
        cJSON_Delete(o);
    }
    free(buf);
    if (bad) {
        if (bad > 10) out_error("... %zu more bad lines", bad - 10);
        out_error("%s: %zu bad line%s; nothing was trained or evaluated", path, bad, bad == 1 ? "" : "s");
        records_free(r);
        return 1;
    }
    if (r->n == 0) {
        out_error("%s: no examples (empty dataset)", path);
        records_free(r);
        return 1;
    }
    return 0;
}

static int label_index(char *const *labels, int K, const char *s) {
    for (int k = 0; k < K; k++)
        if (labels[k] && strcmp(labels[k], s) == 0) return k;
    return -1;
}

static int encode_records(const records *r, const model_bundle *b, char *const *labels, int K, int max_length,
                          score_truncate tr, const char *path, score_data *d) {
    score_data_init(d, 1);
    rlhf_error err = {0};
    for (size_t i = 0; i < r->n; i++) {
        int k = label_index(labels, K, r->label[i]);
        if (k < 0) {
            out_error("%s:%zu: label \"%s\" is not one of the model's %d labels", path, r->line[i], r->label[i], K);
            score_data_free(d);
            return 1;
        }
        float y = (float)k;
        const char *texts[1] = {r->text[i]};
        if (score_data_add(d, b->tok, b->add_bos, texts, &y, r->line[i], max_length, tr, b->m.config.vocab_size, &err)) {
            out_error("%s: %s", path, err.msg);
            score_data_free(d);
            return 1;
        }
    }
    if (d->n_examples == 0) {
        out_error("%s: every text is longer than --max-length %d (all dropped)", path, max_length);
        score_data_free(d);
        return 1;
    }
    return 0;
}

/* Accuracy, per-class P/R/F1 and the confusion matrix of examples idx (all when idx NULL). */
static int report(const model_bundle *b, const score_data *d, const size_t *idx, size_t n, int json, const char *what) {
    const int K = b->m.config.num_labels;
    float *scores = malloc(n * (size_t)K * sizeof(float)), *labels = malloc(n * sizeof(float));
    size_t *all = idx ? NULL : malloc(n * sizeof(size_t));
    rlhf_error err = {0};
    score_class_metrics cm = {0};
    int rc = 0;
    if (!scores || !labels || (!idx && !all)) {
        out_error("out of memory");
        rc = 1;
        goto done;
    }
    for (size_t i = 0; !idx && i < n; i++) all[i] = i;
    if (!idx) idx = all;
    for (size_t i = 0; i < n; i++) labels[i] = d->labels[idx[i]];
    if (score_predict((model *)&b->m, d, idx, n, 16, scores, &err) || score_class_eval(scores, labels, n, K, &cm, &err)) {
        rc = out_fail(&err);
        goto done;
    }
    if (json) {
        out_printf("{\"examples\": %zu, \"accuracy\": ", n);
        out_json_float(cm.accuracy);
        out_printf(", \"macro_f1\": ");
        out_json_float(cm.macro_f1);
        out_printf(", \"labels\": [");
        for (int k = 0; k < K; k++) {
            out_printf(k ? ", " : "");
            out_json_string(b->labels[k]);
        }
        out_printf("], \"per_class\": {");
        for (int k = 0; k < K; k++) {
            out_printf(k ? ", " : "");
            out_json_string(b->labels[k]);
            out_printf(": {\"precision\": ");
            out_json_float(cm.precision[k]);
            out_printf(", \"recall\": ");
            out_json_float(cm.recall[k]);
            out_printf(", \"f1\": ");
            out_json_float(cm.f1[k]);
            out_printf("}");
        }
        out_printf("}, \"confusion\": [");
        for (int k = 0; k < K; k++) {
            out_printf("%s[", k ? ", " : "");
            for (int j = 0; j < K; j++) out_printf("%s%zu", j ? ", " : "", cm.confusion[(size_t)k * K + j]);
            out_printf("]");
        }
        out_printf("]}\n");
        goto done;
    }
    out_printf("%s: %zu examples, accuracy %.4f, macro F1 %.4f\n", what, n, cm.accuracy, cm.macro_f1);
    int w = 5;
    for (int k = 0; k < K; k++)
        if ((int)strlen(b->labels[k]) > w) w = (int)strlen(b->labels[k]);
    if (w > 24) w = 24;
    out_printf("  %-*s  precision  recall     f1\n", w, "label");
    for (int k = 0; k < K; k++)
        out_printf("  %-*.*s  %9.4f  %6.4f  %.4f\n", w, w, b->labels[k], cm.precision[k], cm.recall[k], cm.f1[k]);
    out_printf("  confusion (rows: true label, columns: predicted)\n  %-*s", w, "");
    for (int j = 0; j < K; j++) out_printf(" %8.8s", b->labels[j]);
    out_printf("\n");
    for (int k = 0; k < K; k++) {
        out_printf("  %-*.*s", w, w, b->labels[k]);
        for (int j = 0; j < K; j++) out_printf(" %8zu", cm.confusion[(size_t)k * K + j]);
        out_printf("\n");
    }
done:
    score_class_metrics_free(&cm);
    free(scores);
    free(labels);
    free(all);
    return rc;
}

static int parse_own(int argc, char **argv, int *i, score_truncate *tr, long *max_length, int *json, const char **model,
                     const char **data) {
    if (strcmp(argv[*i], "--json") == 0 && json) {
        *json = 1;
        return 0;
    }
    char name[64];
    const char *v;
    if (score_cli_own_flag(argc, argv, i, name, sizeof name, &v, classify_usage)) return 2;
    if (strcmp(name, "--truncate") == 0) return score_cli_truncate(v, tr, classify_usage);
    if (max_length && strcmp(name, "--max-length") == 0) return trainer_flag_long(name, v, 2, max_length, classify_usage);
    if (model && strcmp(name, "--model") == 0) *model = v;
    else if (data && strcmp(name, "--data") == 0) *data = v;
    else {
        out_error("unknown flag '%s'", name);
        out_error("usage: %s", classify_usage);
        return 2;
    }
    return 0;
}

static int clamp_length(int max_length, const model *m) {
    return max_length > 0 && max_length < m->config.context ? max_length : m->config.context;
}

static int classify_train(int argc, char **argv) {
    trainer_flags f;
    trainer_flags_defaults(&f);
    f.lr = 1e-4;
    score_truncate tr = SCORE_TRUNCATE_ERROR;
    int truncate_given = 0, freeze = 0;
    for (int i = 2; i < argc; i++) {
        int r = trainer_flags_parse(&f, argc, argv, &i, classify_usage);
        if (r == TRAINER_FLAGS_ERROR) return 2;
        if (r == TRAINER_FLAGS_TAKEN) continue;
        if (strcmp(argv[i], "--freeze-body") == 0) {
            freeze = truncate_given = 1;
            continue;
        }
        if (parse_own(argc, argv, &i, &tr, NULL, NULL, NULL, NULL)) return 2;
        truncate_given = 1;
    }
    if (f.db) {
        out_error("--db: classification data come from --data FILE.jsonl (use --runs-db FILE to record the run)");
        return 2;
    }
    if (trainer_flags_check(&f, !f.resume, classify_usage)) return 2;
    if (f.lora_rank > 0 && freeze) {
        out_error("--freeze-body and --lora-rank exclude each other (the adapter trains the body)");
        return 2;
    }
    char *extra = NULL;
    if (f.resume) {
        if (truncate_given) {
            out_error("--resume continues the saved run with its own --truncate and --freeze-body");
            return 2;
        }
        if (score_cli_restore(&f, &extra)) return 1;
        cJSON *x = cJSON_Parse(extra);
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(x, "truncate");
        if (cJSON_IsString(j)) score_cli_truncate(j->valuestring, &tr, classify_usage);
        freeze = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(x, "freeze_body"));
        cJSON_Delete(x);
        free(extra);
    }
    records r;
    if (read_records(f.data, &r)) return 1;
    /* labels in order of first appearance (on resume: the saved directory's) */
    char **labels = calloc(r.n, sizeof(char *));
    int K = 0;
    for (size_t i = 0; labels && i < r.n; i++)
        if (label_index(labels, K, r.label[i]) < 0) labels[K++] = r.label[i];
    if (!labels || K < 2) {
        out_error("%s: %s", f.data, labels ? "needs at least 2 different labels" : "out of memory");
        free(labels);
        records_free(&r);
        return 1;
    }
    model_bundle b = {0};
    if (score_cli_load_model(&f, K, (const char *const *)labels, &b)) {
        free(labels);
        records_free(&r);
        return 1;
    }
    free(labels);
    for (int k = 0; k < K; k++)
        if (!b.labels || !b.labels[k]) {
            out_error("out of memory");
            model_bundle_free(&b);
            records_free(&r);
            return 1;
        }
    const int max_len = clamp_length(f.max_length, &b.m);
    score_data d;
    int rc = encode_records(&r, &b, b.labels, K, max_len, tr, f.data, &d);
    const size_t n_records = r.n;
    records_free(&r);
    if (rc) {
        model_bundle_free(&b);
        return rc;
    }
    score_train_params p;
    if ((rc = score_cli_setup(&f, SCORE_TASK_CLASSIFY, &b, &d, n_records, max_len, "examples", &p))) goto done;
    char ex[64];
    snprintf(ex, sizeof ex, "{\"truncate\":\"%s\",\"freeze_body\":%s}", score_cli_truncate_name(tr), freeze ? "true" : "false");
    char *run_json = score_cli_run_json(&f, "classify", ex);
    p.run_json = run_json;
    p.freeze_body = freeze;
    rc = score_cli_train("classify", &f, &p);
    if (rc == 0 && p.n_val > 0) rc = report(&b, &d, p.val_idx, p.n_val, 0, "held out");
    if (rc == 0) score_cli_print_saved(&f);
    free(run_json);
    free((void *)p.train_idx);
    free((void *)p.val_idx);
done:
    score_data_free(&d);
    model_bundle_free(&b);
    return rc;
}

static int classify_eval(int argc, char **argv) {
    const char *model_path = NULL, *data = NULL;
    long max_length = 0;
    int json = 0;
    score_truncate tr = SCORE_TRUNCATE_ERROR;
    for (int i = 2; i < argc; i++)
        if (parse_own(argc, argv, &i, &tr, &max_length, &json, &model_path, &data)) return 2;
    if (!model_path || !data) {
        out_error("%s is required", !model_path ? "--model DIR" : "--data FILE.jsonl");
        out_error("usage: %s", classify_usage);
        return 2;
    }
    model_bundle b = {0};
    rlhf_error err = {0};
    if (score_model_load(&b, model_path, &err)) return out_fail(&err);
    if (b.m.config.num_labels < 2 || !b.tok || !b.labels) {
        out_error("%s is not a classifier with labels and a tokenizer (num_labels %d)", model_path, b.m.config.num_labels);
        model_bundle_free(&b);
        return 1;
    }
    records r;
    score_data d = {0};
    int rc = read_records(data, &r);
    if (!rc) {
        rc = encode_records(&r, &b, b.labels, b.m.config.num_labels, clamp_length((int)max_length, &b.m), tr, data, &d);
        records_free(&r);
    }
    if (!rc) rc = report(&b, &d, NULL, d.n_examples, json, data);
    score_data_free(&d);
    model_bundle_free(&b);
    return rc;
}

int cmd_classify(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || command_wants_help(argc, argv)) {
        out_printf("usage: %s\n\n%s\n", classify_usage, classify_help);
        trainer_flags d;
        trainer_flags_defaults(&d);
        d.lr = 1e-4;
        trainer_flags_print_help(&d);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "train") == 0) return classify_train(argc, argv);
    if (strcmp(argv[1], "eval") == 0) return classify_eval(argc, argv);
    out_error("unknown subcommand 'classify %s' (train or eval)", argv[1]);
    out_error("usage: %s", classify_usage);
    return 2;
}
