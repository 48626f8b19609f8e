/* run_log.c — progress line, JSON lines and database metrics of a training run (run_log.h). */
#include "repl/run_log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "repl/out.h"

void run_log_duration(char *buf, size_t n, double s) {
    if (!isfinite(s) || s < 0) s = 0;
    long x = (long)(s + 0.5);
    if (x >= 3600) snprintf(buf, n, "%ldh%02ldm", x / 3600, x / 60 % 60);
    else if (x >= 60) snprintf(buf, n, "%ldm%02lds", x / 60, x % 60);
    else snprintf(buf, n, "%lds", x);
}

/* The model row named after its path, added if the database lacks it. */
static int ensure_model(store *s, const char *path, const char *parent, const char *made_by, int64_t run_id,
                        rlhf_error *err) {
    int64_t id = 0;
    int rc = store_find_model(s, path, &id, err);
    if (rc || id) return rc;
    store_model m = {path, path, NULL, parent, made_by, run_id};
    return store_add_model(s, &m, &id, err);
}

int run_log_open(run_log *rl, const run_log_params *p) {
    memset(rl, 0, sizeof *rl);
    rl->kind = p->kind;
    rl->input_model = p->input_model;
    rl->last_shown = -1e9;
    if (p->json_log) {
        rl->json = fopen(p->json_log, p->append ? "a" : "w");
        if (!rl->json) {
            out_error("--json-log %s: cannot open for writing: %s", p->json_log, strerror(errno));
            return 1;
        }
    }
    if (p->db_path) {
        rlhf_error err = {0};
        int rc = store_open(&rl->db, p->db_path, &err);
        if (!rc && p->input_model) rc = ensure_model(rl->db, p->input_model, NULL, NULL, 0, &err);
        store_run r = {p->kind, p->input_model, p->config_json};
        if (!rc) rc = store_add_run(rl->db, &r, &rl->run_id, &err);
        if (rc) {
            out_error("%s: cannot record the run: %s", p->db_path, err.msg);
            run_log_finish(rl, NULL, NULL);
            return 1;
        }
    }
    return 0;
}

static void metric(run_log *rl, long step, const char *name, double v) {
    if (!rl->db || rl->db_failed) return;
    rlhf_error err = {0};
    if (store_add_metric(rl->db, rl->run_id, step, name, v, &err)) {
        out_error("run %lld: metrics are no longer recorded: %s", (long long)rl->run_id, err.msg);
        rl->db_failed = 1;
    }
}

static void json_num(FILE *f, const char *name, double v) {
    if (isfinite(v)) fprintf(f, ",\"%s\":%.17g", name, v);
    else fprintf(f, ",\"%s\":null", name);
}

void run_log_print_metrics(const char *what, const train_head_out *o, const char *const *names, int n) {
    out_printf("%s:", what);
    for (int k = 0; k < n; k++)
        for (int i = 0; i < o->n; i++)
            if (strcmp(o->names[i], names[k]) == 0) out_printf(" %s %.4f", names[k], o->values[i]);
    out_printf("\n");
}

void run_log_progress(const train_progress *pg, void *ctx) {
    run_log *rl = ctx;
    if (pg->event == TRAIN_EVENT_SAVING) {
        out_progress("step %ld/%ld | saving checkpoint...", pg->step, pg->total);
        return;
    }
    if (pg->event == TRAIN_EVENT_SKIPPED) {
        out_progress_end();
        out_error("step %ld: skipped (loss %g or a gradient is not finite; %d in a row)", pg->step, pg->loss,
                  pg->bad_in_row);
        if (rl->json) {
            fprintf(rl->json, "{\"event\":\"skipped\",\"step\":%ld}\n", pg->step);
            fflush(rl->json);
        }
        metric(rl, pg->step, "skipped", 1);
        return;
    }
    if (pg->val.n > 0 && rl->first_val.n == 0) rl->first_val = pg->val;
    char name[64];
    /* The metrics of this event: evaluations (also the one before the first step), then the step. */
    if (pg->val.n > 0 || !isnan(pg->val_loss)) {
        metric(rl, pg->step, "eval_loss", pg->val_loss);
        for (int i = 0; i < pg->val.n; i++) {
            snprintf(name, sizeof name, "eval_%s", pg->val.names[i]);
            metric(rl, pg->step, name, pg->val.values[i]);
        }
    }
    if (pg->event == TRAIN_EVENT_STEP) {
        metric(rl, pg->step, "loss", pg->loss);
        metric(rl, pg->step, "learning_rate", (double)pg->lr);
        metric(rl, pg->step, "grad_norm", pg->grad_norm);
        metric(rl, pg->step, "tokens_per_s", pg->tokens_per_s);
        for (int i = 0; i < pg->train.n; i++) metric(rl, pg->step, pg->train.names[i], pg->train.values[i]);
    }
    if (rl->json) {
        FILE *f = rl->json;
        fprintf(f, "{\"event\":\"%s\",\"step\":%ld", pg->event == TRAIN_EVENT_EVAL ? "eval" : "step", pg->step);
        if (pg->event == TRAIN_EVENT_STEP) {
            json_num(f, "loss", pg->loss);
            json_num(f, "learning_rate", (double)pg->lr);
            json_num(f, "grad_norm", pg->grad_norm);
            fprintf(f, ",\"tokens_per_s\":%.1f,\"elapsed_s\":%.3f", pg->tokens_per_s, pg->elapsed_s);
            for (int i = 0; i < pg->train.n; i++) json_num(f, pg->train.names[i], pg->train.values[i]);
        }
        if (!isnan(pg->val_loss)) {
            json_num(f, "eval_loss", pg->val_loss);
            for (int i = 0; i < pg->val.n; i++) {
                snprintf(name, sizeof name, "eval_%s", pg->val.names[i]);
                json_num(f, name, pg->val.values[i]);
            }
        }
        if (pg->saved) fprintf(f, ",\"saved\":true");
        fprintf(f, "}\n");
        fflush(f);
    }
    if (pg->event == TRAIN_EVENT_EVAL) {
        out_progress("step %ld/%ld | eval loss %.4f", pg->step, pg->total, pg->val_loss);
        return;
    }
    /* At most four lines a second, but always evaluations, checkpoints and the last step. */
    if (isnan(pg->val_loss) && !pg->saved && pg->step < pg->total && pg->elapsed_s - rl->last_shown < 0.25) return;
    rl->last_shown = pg->elapsed_s;
    char eta[32], val[48] = "";
    run_log_duration(eta, sizeof eta, pg->eta_s);
    if (!isnan(pg->val_loss)) snprintf(val, sizeof val, " | eval %.4f", pg->val_loss);
    out_progress("step %ld/%ld | loss %.4f%s | lr %.2e | %.0f tok/s | ETA %s", pg->step, pg->total, pg->loss, val,
                 (double)pg->lr, pg->tokens_per_s, eta);
}

void run_log_warning(run_log *rl, long step, const char *code, const char *text) {
    out_error("warning at step %ld (%s): %s", step, code, text);
    if (rl->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "event", "warning");
        cJSON_AddNumberToObject(o, "step", (double)step);
        cJSON_AddStringToObject(o, "code", code);
        cJSON_AddStringToObject(o, "message", text);
        char *line = cJSON_PrintUnformatted(o);
        if (line) fprintf(rl->json, "%s\n", line);
        fflush(rl->json);
        free(line);
        cJSON_Delete(o);
    }
    rlhf_error err = {0};
    if (rl->db && !rl->db_failed && store_add_run_warning(rl->db, rl->run_id, step, code, text, &err)) {
        out_error("run %lld: warnings are no longer recorded: %s", (long long)rl->run_id, err.msg);
        rl->db_failed = 1;
    }
}

void run_log_finish(run_log *rl, const char *status, const char *output_model) {
    if (rl->db && status) {
        rlhf_error err = {0};
        int rc = 0;
        if (output_model) rc = ensure_model(rl->db, output_model, rl->input_model, rl->kind, rl->run_id, &err);
        if (!rc) rc = store_finish_run(rl->db, rl->run_id, status, output_model, &err);
        if (rc) out_error("run %lld: cannot record its end: %s", (long long)rl->run_id, err.msg);
    }
    store_close(&rl->db);
    if (rl->json) fclose(rl->json);
    rl->json = NULL;
}

static volatile sig_atomic_t *g_sigint_flag;

static void on_sigint(int sig) {
    (void)sig;
    if (g_sigint_flag) *g_sigint_flag = 1;
}

void run_log_sigint_catch(volatile sig_atomic_t *flag, struct sigaction *old) {
    g_sigint_flag = flag;
    *flag = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, old);
}

void run_log_sigint_restore(const struct sigaction *old) { sigaction(SIGINT, old, NULL); }
