/* cmd_runs.c — `rlhf runs list|show ID [--svg FILE]`: the training runs recorded in the database
 * (repl/run_log.h writes them) with their kind, models, status and configuration, and their
 * metric curves: sparklines in the terminal (Unicode blocks on a terminal, an ASCII ramp
 * otherwise, so logs and tests read plainly) and the same panels as an SVG file. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "feedback/store.h"
#include "repl/commands.h"
#include "repl/out.h"
#include "src/core/fileio.h"

static const char *const runs_usage = "rlhf runs [list] [--db FILE] [--json] | rlhf runs show ID [--db FILE] "
                                      "[--svg FILE] [--width N] [--json]";

static const char *const runs_help =
    "Training runs recorded in the feedback database (trainers given --db or --runs-db record theirs).\n"
    "\n"
    "  list            every run: id, kind, status, input -> output model, metric rows, configuration\n"
    "  show ID         the run's details, one sparkline per metric (first, last, min, max) and its\n"
    "                  health warnings (what a trainer saw going wrong, and what to try)\n"
    "  --db FILE       the database (default: $RLHF_DB, else rlhf.db)\n"
    "  --svg FILE      (show) write the same curves as an SVG chart, one panel per metric\n"
    "  --width N       (show) sparkline width in characters (default 60)\n"
    "  --json          machine-readable output\n"
    "Sparklines use Unicode blocks on a terminal and an ASCII ramp otherwise.";

/* ---- list ---- */

typedef struct {
    int json;
    int n;
    cJSON *arr;
} list_ctx;

static int print_run(void *vctx, const store_run_info *r) {
    list_ctx *c = vctx;
    c->n++;
    if (c->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", (double)r->id);
        cJSON_AddStringToObject(o, "kind", r->kind ? r->kind : "");
        cJSON_AddStringToObject(o, "status", r->status ? r->status : "");
        if (r->input_model) cJSON_AddStringToObject(o, "input_model", r->input_model);
        else cJSON_AddNullToObject(o, "input_model");
        if (r->output_model) cJSON_AddStringToObject(o, "output_model", r->output_model);
        else cJSON_AddNullToObject(o, "output_model");
        cJSON_AddStringToObject(o, "started_at", r->started_at ? r->started_at : "");
        if (r->ended_at) cJSON_AddStringToObject(o, "ended_at", r->ended_at);
        else cJSON_AddNullToObject(o, "ended_at");
        cJSON_AddNumberToObject(o, "metrics", (double)r->n_metrics);
        cJSON *cfg = cJSON_Parse(r->config_json ? r->config_json : "{}");
        cJSON_AddItemToObject(o, "config", cfg ? cfg : cJSON_CreateObject());
        cJSON_AddItemToArray(c->arr, o);
        return 0;
    }
    if (c->n == 1) out_printf("%-4s %-9s %-8s %-20s %s\n", "id", "kind", "status", "started", "input -> output");
    char started[20];
    snprintf(started, sizeof started, "%.19s", r->started_at ? r->started_at : "");
    out_printf("%-4lld %-9s %-8s %-20s %s -> %s (%lld metric rows)\n", (long long)r->id, r->kind ? r->kind : "?",
               r->status ? r->status : "?", started, r->input_model ? r->input_model : "-",
               r->output_model ? r->output_model : "-", (long long)r->n_metrics);
    out_printf("     config %s\n", r->config_json ? r->config_json : "{}");
    return 0;
}

/* ---- show ---- */

typedef struct {
    char name[64];
    long *step;
    double *value;
    size_t n, cap;
} series;

typedef struct {
    series *s;
    int n, cap;
    int oom;
} series_set;

static int collect_metric(void *vctx, const store_metric_info *m) {
    series_set *set = vctx;
    series *s = set->n ? &set->s[set->n - 1] : NULL;
    if (!s || strcmp(s->name, m->name) != 0) {
        if (set->n == set->cap) {
            int cap = set->cap ? 2 * set->cap : 8;
            series *p = realloc(set->s, (size_t)cap * sizeof *p);
            if (!p) return set->oom = 1;
            set->s = p;
            set->cap = cap;
        }
        s = &set->s[set->n++];
        memset(s, 0, sizeof *s);
        snprintf(s->name, sizeof s->name, "%s", m->name);
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        long *st = realloc(s->step, cap * sizeof *st);
        if (!st) return set->oom = 1;
        s->step = st;
        double *v = realloc(s->value, cap * sizeof *v);
        if (!v) return set->oom = 1;
        s->value = v;
        s->cap = cap;
    }
    s->step[s->n] = (long)m->step;
    s->value[s->n++] = m->value;
    return 0;
}

static void series_free(series_set *set) {
    for (int i = 0; i < set->n; i++) {
        free(set->s[i].step);
        free(set->s[i].value);
    }
    free(set->s);
    memset(set, 0, sizeof *set);
}

/* Finite min/max of a series; 0 if it has no finite value. */
static int range(const series *s, double *lo, double *hi) {
    int any = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (!isfinite(s->value[i])) continue;
        if (!any || s->value[i] < *lo) *lo = s->value[i];
        if (!any || s->value[i] > *hi) *hi = s->value[i];
        any = 1;
    }
    return any;
}

/* One character per column: the mean of the points whose step falls into the column. */
static void sparkline(const series *s, int width, int unicode, char *out, size_t size) {
    static const char *blocks[] = {"\u2581", "\u2582", "\u2583", "\u2584", "\u2585", "\u2586", "\u2587", "\u2588"};
    static const char ramp[] = "_.-:=+*#";
    double lo = 0, hi = 0;
    size_t pos = 0;
    out[0] = 0;
    if (!range(s, &lo, &hi)) return;
    long first = s->step[0], last = s->step[0];
    for (size_t i = 0; i < s->n; i++) {
        if (s->step[i] < first) first = s->step[i];
        if (s->step[i] > last) last = s->step[i];
    }
    int cols = (int)(s->n < (size_t)width ? s->n : (size_t)width);
    if (cols < 1) cols = 1;
    for (int c = 0; c < cols; c++) {
        double sum = 0;
        int k = 0;
        for (size_t i = 0; i < s->n; i++) {
            int col = last > first ? (int)((double)(s->step[i] - first) * (cols - 1) / (double)(last - first) + 0.5) : 0;
            if (col == c && isfinite(s->value[i])) {
                sum += s->value[i];
                k++;
            }
        }
        const char *ch = " ";
        char one[2] = {0, 0};
        if (k) {
            int level = hi > lo ? (int)((sum / k - lo) / (hi - lo) * 7.0 + 0.5) : 3;
            if (level < 0) level = 0;
            if (level > 7) level = 7;
            if (unicode) ch = blocks[level];
            else {
                one[0] = ramp[level];
                ch = one;
            }
        }
        size_t l = strlen(ch);
        if (pos + l + 1 > size) break;
        memcpy(out + pos, ch, l);
        pos += l;
        out[pos] = 0;
    }
}

/* The SVG: one panel per metric (polyline over step, axis labels with the value range). */
static int write_svg(const char *path, const series_set *set, long run_id, const char *kind, rlhf_error *err) {
    const int W = 640, PH = 150, PAD = 50, TOP = 30;
    int H = TOP + set->n * (PH + 20) + 10;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
#define EMIT(...)                                                                   \
    do {                                                                            \
        int need_ = snprintf(NULL, 0, __VA_ARGS__);                                 \
        if (len + (size_t)need_ + 1 > cap) {                                        \
            while (len + (size_t)need_ + 1 > cap) cap *= 2;                         \
            char *p_ = realloc(buf, cap);                                           \
            if (!p_) {                                                              \
                free(buf);                                                          \
                return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");           \
            }                                                                       \
            buf = p_;                                                               \
        }                                                                           \
        len += (size_t)snprintf(buf + len, cap - len, __VA_ARGS__);                 \
    } while (0)
    EMIT("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    EMIT("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
         "font-family=\"sans-serif\" font-size=\"11\">\n",
         W, H, W, H);
    EMIT("<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    EMIT("<text x=\"10\" y=\"18\" font-size=\"14\">run %ld (%s)</text>\n", run_id, kind);
    for (int k = 0; k < set->n; k++) {
        const series *s = &set->s[k];
        double lo = 0, hi = 0;
        int y0 = TOP + k * (PH + 20);
        EMIT("<g class=\"metric\" id=\"metric-%d\">\n", k);
        EMIT("<text x=\"%d\" y=\"%d\">%s</text>\n", PAD, y0 + 12, s->name);
        EMIT("<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#999\"/>\n", PAD, y0 + 18,
             W - PAD - 10, PH - 30);
        if (!range(s, &lo, &hi)) {
            EMIT("</g>\n");
            continue;
        }
        long first = s->step[0], last = s->step[0];
        for (size_t i = 0; i < s->n; i++) {
            if (s->step[i] < first) first = s->step[i];
            if (s->step[i] > last) last = s->step[i];
        }
        EMIT("<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.4g</text>\n", PAD - 4, y0 + 26, hi);
        EMIT("<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.4g</text>\n", PAD - 4, y0 + PH - 12, lo);
        EMIT("<text x=\"%d\" y=\"%d\">step %ld</text>\n", PAD, y0 + PH + 2, first);
        EMIT("<text x=\"%d\" y=\"%d\" text-anchor=\"end\">step %ld</text>\n", W - 10, y0 + PH + 2, last);
        EMIT("<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"");
        const double pw = W - PAD - 10, ph = PH - 30;
        for (size_t i = 0; i < s->n; i++) {
            if (!isfinite(s->value[i])) continue;
            double x = PAD + (last > first ? (double)(s->step[i] - first) / (double)(last - first) : 0.5) * pw;
            double y = y0 + 18 + (hi > lo ? (hi - s->value[i]) / (hi - lo) : 0.5) * ph;
            EMIT("%.1f,%.1f ", x, y);
        }
        EMIT("\"/>\n</g>\n");
    }
    EMIT("</svg>\n");
#undef EMIT
    int rc = file_write_atomic(path, buf, len, err);
    free(buf);
    return rc;
}

typedef struct {
    int64_t id;
    int found;
    char *kind, *status, *input, *output, *started, *ended, *config;
} run_find;

static char *dup_or_null(const char *s) {
    if (!s) return NULL;
    char *d = malloc(strlen(s) + 1);
    if (d) strcpy(d, s);
    return d;
}

static int find_run(void *vctx, const store_run_info *r) {
    run_find *f = vctx;
    if (r->id != f->id) return 0;
    f->found = 1;
    f->kind = dup_or_null(r->kind);
    f->status = dup_or_null(r->status);
    f->input = dup_or_null(r->input_model);
    f->output = dup_or_null(r->output_model);
    f->started = dup_or_null(r->started_at);
    f->ended = dup_or_null(r->ended_at);
    f->config = dup_or_null(r->config_json);
    return 1;
}

static void run_find_free(run_find *f) {
    free(f->kind);
    free(f->status);
    free(f->input);
    free(f->output);
    free(f->started);
    free(f->ended);
    free(f->config);
}

/* The run's health warnings (src/train/health.h), as text lines or into a JSON array. */
static int print_warning(void *ctx, const store_run_warning *w) {
    (void)ctx;
    out_printf("warning at step %lld (%s): %s\n", (long long)w->step, w->code, w->message);
    return 0;
}

static int json_warning(void *ctx, const store_run_warning *w) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", (double)w->step);
    cJSON_AddStringToObject(o, "code", w->code);
    cJSON_AddStringToObject(o, "message", w->message);
    cJSON_AddItemToArray(ctx, o);
    return 0;
}

static int show(store *db, int64_t id, const char *svg, int width, int json) {
    rlhf_error err = {0};
    run_find f = {0};
    f.id = id;
    series_set set = {0};
    int rc = store_runs_each(db, find_run, &f, &err);
    if (rc < 0) return out_fail(&err);
    if (!f.found) {
        out_error("there is no run %lld in the database (see 'rlhf runs list')", (long long)id);
        run_find_free(&f);
        return 1;
    }
    rc = store_metrics_each(db, id, collect_metric, &set, &err);
    if (rc < 0 || set.oom) {
        if (set.oom) rlhf_errorf(&err, RLHF_ERR_NOMEM, "out of memory reading the metrics");
        out_fail(&err);
        goto fail;
    }
    if (svg && write_svg(svg, &set, (long)id, f.kind ? f.kind : "?", &err)) {
        out_fail(&err);
        goto fail;
    }
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", (double)id);
        cJSON_AddStringToObject(o, "kind", f.kind ? f.kind : "");
        cJSON_AddStringToObject(o, "status", f.status ? f.status : "");
        cJSON *cfg = cJSON_Parse(f.config ? f.config : "{}");
        cJSON_AddItemToObject(o, "config", cfg ? cfg : cJSON_CreateObject());
        cJSON *ms = cJSON_AddObjectToObject(o, "metrics");
        for (int k = 0; k < set.n; k++) {
            cJSON *pts = cJSON_AddArrayToObject(ms, set.s[k].name);
            for (size_t i = 0; i < set.s[k].n; i++) {
                cJSON *pt = cJSON_CreateArray();
                cJSON_AddItemToArray(pt, cJSON_CreateNumber((double)set.s[k].step[i]));
                cJSON_AddItemToArray(pt, isfinite(set.s[k].value[i]) ? cJSON_CreateNumber(set.s[k].value[i])
                                                                      : cJSON_CreateNull());
                cJSON_AddItemToArray(pts, pt);
            }
        }
        cJSON *ws = cJSON_CreateArray();
        if (store_run_warnings_each(db, id, json_warning, ws, &err) == 0 && cJSON_GetArraySize(ws) > 0)
            cJSON_AddItemToObject(o, "warnings", ws);
        else
            cJSON_Delete(ws);
        char *s = cJSON_PrintUnformatted(o);
        out_printf("%s\n", s ? s : "{}");
        free(s);
        cJSON_Delete(o);
    } else {
        out_printf("run %lld: %s, %s\n", (long long)id, f.kind ? f.kind : "?", f.status ? f.status : "?");
        out_printf("models: %s -> %s\n", f.input ? f.input : "-", f.output ? f.output : "-");
        out_printf("started %s, ended %s\n", f.started ? f.started : "?", f.ended ? f.ended : "(not ended)");
        out_printf("config %s\n", f.config ? f.config : "{}");
        if (!set.n) out_printf("no metrics recorded\n");
        const int unicode = isatty(fileno(out_stream()));
        char line[1024];
        for (int k = 0; k < set.n; k++) {
            const series *s = &set.s[k];
            double lo = 0, hi = 0;
            if (!range(s, &lo, &hi)) {
                out_printf("%-16s %zu points, none finite\n", s->name, s->n);
                continue;
            }
            sparkline(s, width, unicode, line, sizeof line);
            /* first / last finite values */
            double first = NAN, last = NAN;
            for (size_t i = 0; i < s->n; i++)
                if (isfinite(s->value[i])) {
                    if (isnan(first)) first = s->value[i];
                    last = s->value[i];
                }
            out_printf("%-16s %s  steps %ld..%ld: %.5g -> %.5g (min %.5g, max %.5g)\n", s->name, line, s->step[0],
                       s->step[s->n - 1], first, last, lo, hi);
        }
        if (store_run_warnings_each(db, id, print_warning, NULL, &err) < 0) out_fail(&err);
        if (svg) out_printf("wrote %s (%d panels)\n", svg, set.n);
    }
    series_free(&set);
    run_find_free(&f);
    return 0;
fail:
    series_free(&set);
    run_find_free(&f);
    return 1;
}

int cmd_runs(int argc, char **argv) {
    if (command_wants_help(argc, argv)) {
        out_printf("usage: %s\n\n%s\n", runs_usage, runs_help);
        return 0;
    }
    const char *dbp = NULL, *svg = NULL, *sub = NULL, *id_text = NULL;
    int json = 0;
    long width = 60;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) json = 1;
        else if ((strcmp(a, "--db") == 0 || strcmp(a, "--svg") == 0 || strcmp(a, "--width") == 0) && i + 1 < argc) {
            const char *v = argv[++i];
            if (a[2] == 'd') dbp = v;
            else if (a[2] == 's') svg = v;
            else {
                char *end;
                width = strtol(v, &end, 10);
                if (*end || width < 1 || width > 400) {
                    out_error("--width: expected an integer in 1..400, got '%s'", v);
                    return 2;
                }
            }
        } else if (a[0] == '-') {
            out_error("%s '%s'", i + 1 >= argc && a[1] == '-' ? "missing value or unknown flag" : "unknown flag", a);
            out_error("usage: %s", runs_usage);
            return 2;
        } else if (!sub) sub = a;
        else if (!id_text) id_text = a;
        else {
            out_error("unexpected argument '%s'", a);
            out_error("usage: %s", runs_usage);
            return 2;
        }
    }
    if (!sub) sub = "list";
    long long id = 0;
    if (strcmp(sub, "show") == 0) {
        char *end;
        if (!id_text || (id = strtoll(id_text, &end, 10), *end) || id < 1) {
            out_error("runs show needs a run id (a positive integer; see 'rlhf runs list')");
            out_error("usage: %s", runs_usage);
            return 2;
        }
    } else if (strcmp(sub, "list") != 0 || id_text || svg) {
        out_error(strcmp(sub, "list") != 0 ? "unknown subcommand '%s' (list or show)" : "runs list takes no id or --svg",
                  sub);
        out_error("usage: %s", runs_usage);
        return 2;
    }
    if (!dbp) dbp = getenv("RLHF_DB");
    if (!dbp || !*dbp) dbp = "rlhf.db";
    store *db = NULL;
    rlhf_error err = {0};
    store_open_params op = {1, 0};
    if (store_open_ex(&db, dbp, &op, &err)) return out_fail(&err);
    int rc;
    if (strcmp(sub, "show") == 0) {
        rc = show(db, (int64_t)id, svg, (int)width, json);
    } else {
        list_ctx c = {json, 0, json ? cJSON_CreateArray() : NULL};
        rc = store_runs_each(db, print_run, &c, &err) < 0 ? out_fail(&err) : 0;
        if (!rc && json) {
            char *s = cJSON_PrintUnformatted(c.arr);
            out_printf("%s\n", s ? s : "[]");
            free(s);
        } else if (!rc && c.n == 0) {
            out_printf("no training runs recorded in %s\n", dbp);
        }
        cJSON_Delete(c.arr);
    }
    store_close(&db);
    return rc;
}
