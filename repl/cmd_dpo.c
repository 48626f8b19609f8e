/* cmd_dpo.c — `rlhf dpo`: the common trainer flags plus the DPO family's own (loss type, beta,
 * label smoothing, RPO, reference model), pairs from JSONL or the feedback database
 * (repl/pairs_load.h), the reference cache in the database, --resume, Ctrl-C, the run's record
 * (repl/run_log.h), health warnings, and the held-out preference metrics before and after. The
 * training itself is src/train/dpo_run.c. */
#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repl/commands.h"
#include "repl/default_model.h"
#include "repl/out.h"
#include "repl/pairs_load.h"
#include "repl/ref_cache.h"
#include "repl/run_log.h"
#include "repl/trainer_flags.h"
#include "src/train/dpo.h"
#include "src/train/health.h"

static const char *const dpo_usage =
    "rlhf dpo --model DIR (--data FILE.jsonl | --db FILE) --out DIR [--ref DIR] [--loss-type sigmoid|ipo|hinge|robust] "
    "[--beta B] [--label-smoothing LS] [--rpo-alpha A] [--format trl|hh] [--truncate keep_start|keep_end|error] "
    "[--epochs N | --steps N] [--lr LR] [--batch PAIRS] [--lora-rank R ...] [--json-log FILE] [--runs-db FILE]\n"
    "       rlhf dpo --out DIR --resume [--steps N] [--db FILE | --data FILE.jsonl] [--runs-db FILE]";

static const char *const dpo_help =
    "Direct preference optimisation: the policy learns to prefer each pair's chosen reply over the\n"
    "rejected one, relative to a reference model, without a reward model.\n"
    "\n"
    "Data: TRL's {\"prompt\",\"chosen\",\"rejected\"} (strings or message lists) or Anthropic HH's\n"
    "{\"chosen\",\"rejected\"} JSON lines (--format, else guessed from the first line), or --db FILE:\n"
    "the database's strict preferences. Ties and both-bad judgements are not pairs (they say neither\n"
    "reply is better) and are left out; so is a pair whose reply does not fit --max-length.\n"
    "Each side is prompt + reply + EOS; only the reply's tokens (and EOS) count.\n"
    "\n"
    "  --loss-type T        sigmoid (DPO, default), ipo (length-averaged log-probabilities), hinge\n"
    "                       (SLiC), robust (unbiased under label noise); TRL's formulas\n"
    "  --beta B             strength of the KL regulariser (default 0.1, TRL's)\n"
    "  --label-smoothing LS conservative DPO / robust: the chance a label is flipped (default 0)\n"
    "  --rpo-alpha A        add A x the chosen replies' NLL (RPO; default 0: off)\n"
    "  --ref DIR            the reference model (default: the starting policy; with LoRA the base\n"
    "                       with the adapter off, which is the same model). It must read the same\n"
    "                       token ids: a different vocabulary or tokenizer is refused.\n"
    "\n"
    "Reference log-probabilities are computed once, before training, and cached keyed by the\n"
    "reference's fingerprint (a hash of its configuration and weights) and each row's exact token ids:\n"
    "  with --db FILE (or --runs-db FILE) in that database, row by row: a second run on the same data\n"
    "  computes none, and changed data computes only the new pairs;\n"
    "  with --data alone in OUT/ref_logps.bin (all rows or none), which serves --resume.\n"
    "The run prints \"reference log-probs: N cached, M computed\". No second model stays in memory.\n"
    "\n"
    "--resume continues the run in --out exactly (bit-identical with one thread) from its last\n"
    "checkpoint (every --save-every steps, and Ctrl-C saves one): the saved model, data, reference\n"
    "and settings are used; the same data must be readable (checked by hash) and the reference's\n"
    "weights unchanged (checked by fingerprint). Only --steps, --eval-every, --save-every, --data/--db,\n"
    "--runs-db and --json-log may be given with it.\n"
    "\n"
    "Health warnings, printed when they happen and stored with the run (--json-log, the database):\n"
    "  dpo/chosen_logps_falling  logps/chosen falling fast together with logps/rejected\n"
    "  dpo/accuracies_pinned     rewards/accuracies 1.0 on every step from the first steps on\n"
    "  dpo/accuracies_at_chance  rewards/accuracies near 0.5 after 30 steps\n"
    "each with what it usually means and what to try.\n"
    "\n"
    "Metrics (TRL's names, training and eval_): loss, rewards/chosen, rewards/rejected,\n"
    "rewards/accuracies, rewards/margins, logps/chosen, logps/rejected (nll_loss with RPO).\n"
    "Output: a model directory, or with --lora-rank a PEFT adapter directory, plus training_state.bin.";

static volatile sig_atomic_t g_stop;

static void print_metrics(const char *what, const train_head_out *o) {
    static const char *const names[] = {"rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected"};
    out_printf("%s:", what);
    for (size_t k = 0; k < sizeof names / sizeof *names; k++)
        for (int i = 0; i < o->n; i++)
            if (strcmp(o->names[i], names[k]) == 0) out_printf(" %s %.4f", names[k], o->values[i]);
    out_printf("\n");
}

typedef struct {
    run_log *rl;
    health h;
    train_head_out first_val;
    int have_first;
} progress_ctx;

static void progress(const train_progress *pg, void *ctx) {
    progress_ctx *pc = ctx;
    if (pg->event == TRAIN_EVENT_EVAL && !pc->have_first) {
        pc->first_val = pg->val;
        pc->have_first = 1;
    }
    run_log_progress(pg, pc->rl);
    if (pg->event != TRAIN_EVENT_STEP) return;
    health_warning w[4];
    int n = health_observe(&pc->h, pg->step, &pg->train, w, 4);
    for (int i = 0; i < n; i++) run_log_warning(pc->rl, w[i].step, w[i].code, w[i].text);
}

static int report(run_log *rl, const trainer_flags *fl, const char *cache_db, int rc, const rlhf_error *err,
                  const dpo_summary *sp, const progress_ctx *pcp);

int cmd_dpo(int argc, char **argv) {
    trainer_flags f;
    trainer_flags_defaults(&f);
    f.lr = 1e-6; /* TRL's DPOConfig */
    f.epochs = 3;
    if (command_wants_help(argc, argv)) {
        out_printf("usage: %s\n\n%s\n\n", dpo_usage, dpo_help);
        trainer_flags_print_help(&f);
        return 0;
    }
    dpo_run_params p;
    dpo_run_params_defaults(&p);
    const char *format = NULL, *dpo_flag = NULL;
    for (int i = 1; i < argc; i++) {
        int r = trainer_flags_parse(&f, argc, argv, &i, dpo_usage);
        if (r == TRAINER_FLAGS_ERROR) return 2;
        if (r == TRAINER_FLAGS_TAKEN) continue;
        const char *a = argv[i];
        char name[32];
        const char *v;
        if (trainer_flag_own(argc, argv, &i, name, sizeof name, &v, dpo_usage)) return 2;
        double d;
        rlhf_error err = {0};
        if (strcmp(name, "--format") != 0) dpo_flag = a;
        if ((r = trainer_flags_pref_parse(&p.c, name, v)) == TRAINER_FLAGS_ERROR) return 2;
        if (r == TRAINER_FLAGS_TAKEN) continue;
        if (strcmp(name, "--format") == 0) format = v;
        else if (strcmp(name, "--loss-type") == 0) {
            if (dpo_loss_type_parse(v, &p.dpo.loss_type, &err)) {
                out_error("--loss-type: %s", err.msg);
                return 2;
            }
        } else if (strcmp(name, "--beta") == 0) {
            if (trainer_flag_double("--beta", v, 1e-9, 1e9, &d, dpo_usage)) return 2;
            p.dpo.beta = (float)d;
        } else if (strcmp(name, "--label-smoothing") == 0) {
            if (trainer_flag_double("--label-smoothing", v, 0, 0.4999, &d, dpo_usage)) return 2;
            p.dpo.label_smoothing = (float)d;
        } else if (strcmp(name, "--rpo-alpha") == 0) {
            if (trainer_flag_double("--rpo-alpha", v, 0, 1e9, &d, dpo_usage)) return 2;
            p.dpo.rpo_alpha = (float)d;
        } else {
            out_error("unknown flag '%s'", a);
            out_error("usage: %s", dpo_usage);
            return 2;
        }
    }
    if (f.resume && dpo_flag) {
        out_error("--resume continues the saved run with its own settings: %s cannot be given with it", dpo_flag);
        return 2;
    }
    if (!f.model && !f.resume) f.model = default_model_path(); /* the built-in default model, when there is one */
    if (trainer_flags_check(&f, 1, dpo_usage)) return 2;
    cJSON *saved = NULL;
    if (f.resume) {
        int rc = trainer_flags_pref_resume(&f, &format, &saved);
        if (rc) {
            cJSON_Delete(saved);
            return rc;
        }
    }
    pref_dataset pairs;
    int rc = pairs_load(f.data, f.db, format, &pairs);
    if (rc) {
        cJSON_Delete(saved);
        return rc;
    }
    char desc[4200];
    if (f.db) snprintf(desc, sizeof desc, "db:%s", f.db);
    else snprintf(desc, sizeof desc, "%s", f.data);
    trainer_flags_pref(&f, desc, &p.c);
    p.pairs = &pairs;
    p.c.data_format = format;

    run_log rl;
    memset(&rl, 0, sizeof rl);
    char config[768];
    char *saved_config = saved ? cJSON_PrintUnformatted(saved) : NULL;
    const char *model_name = f.model;
    if (saved) model_name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(saved, "model"));
    snprintf(config, sizeof config, "{\"loss_type\":\"%s\",\"beta\":%g,\"label_smoothing\":%g,\"rpo_alpha\":%g,\"lr\":%g,"
             "\"batch\":%d,\"pairs\":%zu,\"ref\":\"%s\"}", dpo_loss_type_name(p.dpo.loss_type), p.dpo.beta,
             p.dpo.label_smoothing, p.dpo.rpo_alpha, f.lr, f.batch, pairs.n, p.c.ref_dir ? p.c.ref_dir : f.model);
    const char *cache_db = f.runs_db ? f.runs_db : f.db;
    run_log_params rlp = {"dpo", cache_db, f.json_log, f.resume, model_name, saved_config ? saved_config : config};
    if (run_log_open(&rl, &rlp)) {
        pref_dataset_free(&pairs);
        free(saved_config);
        cJSON_Delete(saved);
        return 1;
    }
    pref_ref_cache cache = ref_cache_in_store(rl.db);
    if (rl.db) p.c.ref_cache = &cache;
    progress_ctx pc = {.rl = &rl};
    health_init(&pc.h, HEALTH_DPO, NULL);
    g_stop = 0;
    p.c.stop = &g_stop;
    p.c.progress = progress;
    p.c.progress_ctx = &pc;
    struct sigaction old;
    run_log_sigint_catch(&g_stop, &old);
    dpo_summary s;
    rlhf_error err = {0};
    rc = dpo_run(&p, &s, &err);
    run_log_sigint_restore(&old);
    out_progress_end();
    health_free(&pc.h);
    pref_dataset_free(&pairs);
    free(saved_config);
    rc = report(&rl, &f, cache_db, rc, &err, &s, &pc);
    cJSON_Delete(saved); /* last: f.data, f.db and the run's model name may point into it */
    return rc;
}

/* Ends the run's record and prints the outcome; returns the exit status. */
static int report(run_log *rl, const trainer_flags *fl, const char *cache_db, int rc, const rlhf_error *err,
                  const dpo_summary *sp, const progress_ctx *pcp) {
    ref_cache_print(sp->ref_cached, sp->ref_computed, rl->db ? cache_db : NULL, fl->out);
    if (rc == RLHF_ERR_INTERRUPTED) {
        run_log_finish(rl, "stopped", fl->out);
        out_fail(err);
        out_printf("continue with: rlhf dpo --out %s --resume\n", fl->out);
        return 130;
    }
    if (rc) {
        run_log_finish(rl, "failed", NULL);
        return out_fail(err);
    }
    run_log_finish(rl, "done", fl->out);
    char el[32];
    run_log_duration(el, sizeof el, sp->elapsed_s);
    out_printf("DPO (%s, beta %g) on %zu pairs (%zu train, %zu held out, %zu dropped by --max-length): steps %ld-%ld of "
               "%ld in %s (%.0f tok/s)\n",
               dpo_loss_type_name(sp->dpo.loss_type), sp->dpo.beta, sp->n_pairs, sp->n_train, sp->n_val, sp->n_dropped,
               sp->start_step, sp->steps_done, sp->total_steps, el, sp->tokens_per_s);
    if (pcp->have_first && pcp->first_val.n) print_metrics("held out before", &pcp->first_val);
    if (sp->final_val.n) print_metrics("held out after ", &sp->final_val);
    out_printf("final training loss %.4f", sp->final_loss);
    if (!isnan(sp->final_val_loss)) out_printf(", eval loss %.4f (was %.4f)", sp->final_val_loss, sp->first_val_loss);
    out_printf("\nsaved %s\n", fl->out);
    return 0;
}
