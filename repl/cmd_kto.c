/* cmd_kto.c — `rlhf kto`: the common trainer flags plus KTO's own (loss type, beta, the two
 * weights, reference model), thumbs-up/down examples from JSONL (or pairs, unpaired) or from the
 * feedback database's ratings, Ctrl-C, the run's record (repl/run_log.h) and the held-out
 * metrics before and after. The training itself is src/train/kto_run.c. */
#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feedback/store.h"
#include "repl/commands.h"
#include "repl/default_model.h"
#include "repl/out.h"
#include "repl/pairs_load.h"
#include "repl/ref_cache.h"
#include "repl/run_log.h"
#include "repl/trainer_flags.h"
#include "src/core/fileio.h"
#include "src/train/kto.h"

static const char *const kto_usage =
    "rlhf kto --model DIR (--data FILE.jsonl | --db FILE [--with-pairs]) --out DIR [--ref DIR] "
    "[--loss-type kto|apo_zero_unpaired] [--beta B] [--desirable-weight W] [--undesirable-weight W] "
    "[--format kto|pairs] [--truncate keep_start|keep_end|error] [--epochs N | --steps N] [--lr LR] [--batch N] "
    "[--lora-rank R ...] [--json-log FILE] [--runs-db FILE]\n"
    "       rlhf kto --out DIR --resume [--steps N] [--db FILE | --data FILE.jsonl] [--runs-db FILE]";

static const char *const kto_help =
    "Kahneman-Tversky optimisation: unpaired judgements (a thumbs up or down per reply) train the\n"
    "policy relative to a reference model; nothing has to be ranked against anything.\n"
    "\n"
    "Data: TRL's {\"prompt\", \"completion\", \"label\": true|false} JSON lines (prompt and completion\n"
    "strings, or message lists: the conversational form), or preference pairs {\"prompt\",\n"
    "\"chosen\", \"rejected\"} unpaired as TRL does (chosen desirable, rejected undesirable)\n"
    "(--format, else guessed from the first line), or --db FILE: the database's ratings, where a\n"
    "score of 4 or 5 (of 5) is desirable, 1 or 2 undesirable, 3 left out, and a flag without a\n"
    "score (/flag A unsafe) undesirable; --with-pairs adds the strict preference pairs' sides.\n"
    "Each example is prompt + reply + EOS; only the reply's tokens (and EOS) count. A set with only\n"
    "one kind of label trains (with a warning: KTO then only pushes those replies against the KL\n"
    "baseline); an empty set is refused.\n"
    "\n"
    "  --loss-type T           kto (default) or apo_zero_unpaired (no KL term); TRL's formulas\n"
    "  --beta B                strength of the KL regulariser (default 0.1, TRL's)\n"
    "  --desirable-weight W    weight of the desirable examples' losses (default 1.0)\n"
    "  --undesirable-weight W  weight of the undesirable ones' (default 1.0); as TRL, a warning\n"
    "                          when desirable_weight x #desirable / (undesirable_weight x\n"
    "                          #undesirable) is outside [1, 4/3] (the KTO paper's advice)\n"
    "  --ref DIR               the reference model (default: the starting policy; with LoRA the base\n"
    "                          with the adapter off)\n"
    "The KL estimate z_ref is TRL's: each prompt with the previous example's completion within\n"
    "chunks of --batch examples (fixed for the run), mean(policy - reference log-probability),\n"
    "detached, clamped at 0; --batch must be at least 2. The reference log-probabilities of every\n"
    "row (examples and KL rows) are computed once before training and cached as rlhf dpo's, keyed\n"
    "by the reference's fingerprint and each row's exact token ids: with --db FILE (or --runs-db\n"
    "FILE) in that database, row by row (a second run on the same data computes none; another seed\n"
    "computes only its new KL rows), with --data alone in OUT/ref_logps.bin (all rows or none).\n"
    "The run prints \"reference log-probs: N cached, M computed\".\n"
    "Metrics (TRL's names, training and eval_): loss, rewards/chosen, rewards/rejected,\n"
    "rewards/margins, logps/chosen, logps/rejected, kl, count/chosen, count/rejected.\n"
    "\n"
    "--resume continues the run in --out exactly (bit-identical with one thread) from its last\n"
    "checkpoint (every --save-every steps, and Ctrl-C saves one): the saved model, data, reference\n"
    "and settings are used; the same examples and labels must be readable (checked by hash) and the\n"
    "reference's weights unchanged (checked by fingerprint). Only --steps, --eval-every,\n"
    "--save-every, --data/--db, --runs-db and --json-log may be given with it.\n"
    "Output: a model directory, or with --lora-rank a PEFT adapter directory, plus training_state.bin.";

static volatile sig_atomic_t g_stop;

/* The held-out metrics printed before and after. */
static const char *const shown[] = {"logps/chosen", "logps/rejected", "rewards/chosen", "rewards/rejected",
                                    "rewards/margins", "kl"};

/* A float setting as the user wrote it (0.1, not 0.10000000149011612). */
static double as_given(float x) {
    char buf[32];
    snprintf(buf, sizeof buf, "%g", (double)x);
    return strtod(buf, NULL);
}

/* "pairs" when the first non-blank line has "chosen" and no "label", else "kto". */
static int guess_format(const char *path, const char **format) {
    rlhf_error err = {0};
    char *text = NULL;
    size_t len = 0;
    if (file_read_all(path, &text, &len, &err)) return out_fail(&err);
    const char *line = text;
    while (*line == '\n' || *line == '\r' || *line == ' ' || *line == '\t') line++;
    const char *end = strchr(line, '\n');
    cJSON *first = cJSON_ParseWithLength(line, end ? (size_t)(end - line) : strlen(line));
    *format = cJSON_GetObjectItemCaseSensitive(first, "chosen") && !cJSON_GetObjectItemCaseSensitive(first, "label")
                  ? "pairs" : "kto";
    cJSON_Delete(first);
    free(text);
    return 0;
}

/* The examples as texts and labels (*format: the data file's, guessed when NULL); prints what is
 * wrong and returns the exit status. */
static int load_examples(const trainer_flags *f, const char **format_io, int with_pairs, sft_texts *texts, uint8_t **des) {
    rlhf_error err = {0};
    kto_dataset kd;
    kto_dataset_init(&kd);
    int rc = 0;
    if (f->data) {
        if (!*format_io && guess_format(f->data, format_io)) return 1;
        const char *format = *format_io;
        if (strcmp(format, "kto") == 0) {
            if (kto_texts_read_jsonl(texts, des, f->data, &err)) return out_fail(&err);
            goto loaded;
        }
        if (strcmp(format, "pairs") != 0) {
            out_error("--format: expected kto or pairs, got '%s'", format);
            return 2;
        }
        pref_dataset pairs;
        if ((rc = pairs_load(f->data, NULL, "trl", &pairs))) return rc;
        rc = kto_dataset_from_pairs(&kd, &pairs, &err);
        pref_dataset_free(&pairs);
    } else {
        store *s = NULL;
        store_open_params op = {1, 0};
        store_kto_query q = {with_pairs, 0};
        rc = store_open_ex(&s, f->db, &op, &err);
        if (!rc) rc = store_get_kto_dataset(s, &q, &kd, &err);
        store_close(&s);
    }
    if (!rc) rc = kto_texts_from_dataset(texts, des, &kd, &err);
    kto_dataset_free(&kd);
    if (rc) return out_fail(&err);
loaded:
    if (texts->n == 0) {
        out_error("%s holds no KTO examples (%s)", f->data ? f->data : f->db,
                  f->data ? "no lines" : "no rating of 1, 2, 4 or 5, no flag; --with-pairs adds preference pairs");
        sft_texts_free(texts);
        free(*des);
        *des = NULL;
        return 1;
    }
    return 0;
}

static int report(run_log *rl, const trainer_flags *f, int rc, const rlhf_error *err, const kto_summary *sp);

int cmd_kto(int argc, char **argv) {
    trainer_flags f;
    trainer_flags_defaults(&f);
    f.lr = 1e-6; /* TRL's KTOConfig */
    f.epochs = 3;
    if (command_wants_help(argc, argv)) {
        out_printf("usage: %s\n\n%s\n\n", kto_usage, kto_help);
        trainer_flags_print_help(&f);
        return 0;
    }
    kto_run_params p;
    kto_run_params_defaults(&p);
    const char *format = NULL, *kto_flag = NULL;
    int with_pairs = 0;
    for (int i = 1; i < argc; i++) {
        int r = trainer_flags_parse(&f, argc, argv, &i, kto_usage);
        if (r == TRAINER_FLAGS_ERROR) return 2;
        if (r == TRAINER_FLAGS_TAKEN) continue;
        const char *a = argv[i];
        if (strcmp(a, "--with-pairs") == 0) {
            with_pairs = 1;
            kto_flag = a;
            continue;
        }
        char name[32];
        const char *v;
        if (trainer_flag_own(argc, argv, &i, name, sizeof name, &v, kto_usage)) return 2;
        double d;
        rlhf_error err = {0};
        if (strcmp(name, "--format") != 0) kto_flag = a;
        if ((r = trainer_flags_pref_parse(&p.c, name, v)) == TRAINER_FLAGS_ERROR) return 2;
        if (r == TRAINER_FLAGS_TAKEN) continue;
        if (strcmp(name, "--format") == 0) format = v;
        else if (strcmp(name, "--loss-type") == 0) {
            if (kto_loss_type_parse(v, &p.kto.loss_type, &err)) {
                out_error("--loss-type: %s", err.msg);
                return 2;
            }
        } else if (strcmp(name, "--beta") == 0) {
            if (trainer_flag_double("--beta", v, 1e-9, 1e9, &d, kto_usage)) return 2;
            p.kto.beta = (float)d;
        } else if (strcmp(name, "--desirable-weight") == 0) {
            if (trainer_flag_double("--desirable-weight", v, 1e-9, 1e9, &d, kto_usage)) return 2;
            p.kto.desirable_weight = (float)d;
        } else if (strcmp(name, "--undesirable-weight") == 0) {
            if (trainer_flag_double("--undesirable-weight", v, 1e-9, 1e9, &d, kto_usage)) return 2;
            p.kto.undesirable_weight = (float)d;
        } else {
            out_error("unknown flag '%s'", a);
            out_error("usage: %s", kto_usage);
            return 2;
        }
    }
    if (f.resume && kto_flag) {
        out_error("--resume continues the saved run with its own settings: %s cannot be given with it", kto_flag);
        return 2;
    }
    if (!f.model && !f.resume) f.model = default_model_path(); /* the built-in default model, when there is one */
    if (trainer_flags_check(&f, 1, kto_usage)) return 2;
    if (with_pairs && !f.db) {
        out_error("--with-pairs reads the database's pairs (--db); for a file of pairs use --data with --format pairs");
        return 2;
    }
    cJSON *saved = NULL;
    if (f.resume) {
        int rc = trainer_flags_pref_resume(&f, &format, &saved);
        if (!rc && format && strcmp(format, "with-pairs") == 0) with_pairs = 1;
        if (!rc && f.db) format = NULL;
        if (rc) {
            cJSON_Delete(saved);
            return rc;
        }
    }
    sft_texts texts;
    uint8_t *des = NULL;
    int rc = load_examples(&f, &format, with_pairs, &texts, &des);
    if (rc) {
        cJSON_Delete(saved);
        return rc;
    }
    size_t n_d = 0;
    for (size_t i = 0; i < texts.n; i++) n_d += des[i];
    const size_t n_u = texts.n - n_d;
    if (n_d == 0 || n_u == 0)
        out_error("warning: all %zu examples are %s: KTO trains, but only pushes them %s relative to the KL baseline",
                  texts.n, n_d ? "desirable" : "undesirable", n_d ? "up" : "down");
    else if (n_d != n_u) {
        /* TRL's advice (KTOTrainer, from eq. 8 of the KTO paper): the weighted desirable share within
         * [1, 4/3] of the undesirable, through either weight (bounds rounded to 2 places as TRL) */
        const double dw = p.kto.desirable_weight, uw = p.kto.undesirable_weight;
        const double d_lo = round(100.0 * n_u * uw / n_d) / 100, d_hi = round(133.0 * n_u * uw / n_d) / 100;
        const double u_lo = round(100.0 * n_d * dw / n_u / 1.33) / 100, u_hi = round(100.0 * n_d * dw / n_u) / 100;
        if (!(d_lo <= dw && dw <= d_hi) && !(u_lo <= uw && uw <= u_hi))
            out_error("warning: %zu desirable and %zu undesirable examples: TRL advises --desirable-weight in [%.2f, %.2f] "
                      "or --undesirable-weight in [%.2f, %.2f] (not both)", n_d, n_u, d_lo, d_hi, u_lo, u_hi);
    }
    char desc[4200];
    if (f.db) snprintf(desc, sizeof desc, "db:%s", f.db);
    else snprintf(desc, sizeof desc, "%s", f.data);
    trainer_flags_pref(&f, desc, &p.c);
    p.c.data_format = f.db ? (with_pairs ? "with-pairs" : NULL) : format;
    p.texts = &texts;
    p.desirable = des;

    run_log rl;
    memset(&rl, 0, sizeof rl);
    /* the run's configuration, built as JSON (paths may hold any character) */
    cJSON *cfg = cJSON_CreateObject();
    cJSON_AddStringToObject(cfg, "loss_type", kto_loss_type_name(p.kto.loss_type));
    cJSON_AddNumberToObject(cfg, "beta", as_given(p.kto.beta));
    cJSON_AddNumberToObject(cfg, "desirable_weight", as_given(p.kto.desirable_weight));
    cJSON_AddNumberToObject(cfg, "undesirable_weight", as_given(p.kto.undesirable_weight));
    cJSON_AddNumberToObject(cfg, "lr", f.lr);
    cJSON_AddNumberToObject(cfg, "batch", f.batch);
    cJSON_AddNumberToObject(cfg, "examples", (double)texts.n);
    cJSON_AddNumberToObject(cfg, "desirable", (double)n_d);
    cJSON_AddStringToObject(cfg, "data", p.c.data_desc);
    cJSON_AddStringToObject(cfg, "ref", p.c.ref_dir ? p.c.ref_dir : f.model);
    char *config = cJSON_PrintUnformatted(saved ? saved : cfg);
    cJSON_Delete(cfg);
    const char *cache_db = f.runs_db ? f.runs_db : f.db;
    run_log_params rlp = {"kto", cache_db, f.json_log, f.resume, f.model, config};
    rc = run_log_open(&rl, &rlp);
    free(config);
    if (rc) {
        sft_texts_free(&texts);
        free(des);
        cJSON_Delete(saved);
        return 1;
    }
    pref_ref_cache cache = ref_cache_in_store(rl.db);
    if (rl.db) p.c.ref_cache = &cache;
    g_stop = 0;
    p.c.stop = &g_stop;
    p.c.progress = run_log_progress;
    p.c.progress_ctx = &rl;
    struct sigaction old;
    run_log_sigint_catch(&g_stop, &old);
    kto_summary s;
    rlhf_error err = {0};
    rc = kto_run(&p, &s, &err);
    run_log_sigint_restore(&old);
    out_progress_end();
    sft_texts_free(&texts);
    free(des);
    ref_cache_print(s.ref_cached, s.ref_computed, rl.db ? cache_db : NULL, f.out);
    rc = report(&rl, &f, rc, &err, &s);
    cJSON_Delete(saved); /* last: f's model and data may point into it */
    return rc;
}

/* Ends the run's record and prints the outcome; returns the exit status. */
static int report(run_log *rl, const trainer_flags *f, int rc, const rlhf_error *err, const kto_summary *sp) {
    const kto_summary s = *sp;
    if (rc == RLHF_ERR_INTERRUPTED) {
        run_log_finish(rl, "stopped", f->out);
        out_fail(err);
        out_printf("continue with: rlhf kto --out %s --resume\n", f->out);
        return 130;
    }
    if (rc) {
        run_log_finish(rl, "failed", NULL);
        return out_fail(err);
    }
    const train_head_out before = rl->first_val;
    run_log_finish(rl, "done", f->out);
    char el[32];
    run_log_duration(el, sizeof el, s.elapsed_s);
    out_printf("KTO (%s, beta %g) on %zu examples (%zu desirable, %zu undesirable; %zu train, %zu held out; %zu dropped "
               "by --max-length): steps %ld-%ld of %ld in %s (%.0f tok/s)\n",
               kto_loss_type_name(s.kto.loss_type), s.kto.beta, s.n_examples, s.n_desirable, s.n_undesirable, s.n_train,
               s.n_val, s.n_dropped, s.start_step, s.steps_done, s.total_steps, el, s.tokens_per_s);
    const int n_shown = (int)(sizeof shown / sizeof *shown);
    if (before.n) run_log_print_metrics("held out before", &before, shown, n_shown);
    if (s.final_val.n) run_log_print_metrics("held out after ", &s.final_val, shown, n_shown);
    out_printf("final training loss %.4f", s.final_loss);
    if (!isnan(s.final_val_loss)) out_printf(", eval loss %.4f (was %.4f)", s.final_val_loss, s.first_val_loss);
    out_printf("\nsaved %s\n", f->out);
    return 0;
}
