/* cmd_sft.c — `rlhf sft`: the common trainer flags plus --truncate and --show-mask, data from a
 * JSONL file or the feedback database, the data report (counts, truncation, masked examples),
 * Ctrl-C, and the run's record (repl/run_log.h). The training itself is src/train/sft.c. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "feedback/store.h"
#include "repl/commands.h"
#include "repl/out.h"
#include "repl/run_log.h"
#include "repl/trainer_flags.h"
#include "src/train/sft.h"

static const char *const sft_usage =
    "rlhf sft --model DIR (--data FILE.jsonl | --db FILE) --out DIR [--epochs N | --steps N] [--lr LR] [--batch B] "
    "[--accum N] [--max-length T] [--truncate keep_start|keep_end|error] [--lora-rank R ...] [--show-mask [N]] "
    "[--resume] [--json-log FILE] [--runs-db FILE]";

static const char *const sft_help =
    "Supervised fine-tuning on demonstrations: the model learns to write the completion (or the\n"
    "assistant's turns) and to end it with EOS.\n"
    "\n"
    "Data (JSON lines, one example a line):\n"
    "  {\"prompt\": \"...\", \"completion\": \"...\"}     loss on the completion only\n"
    "  {\"messages\": [{\"role\": \"user\", \"content\": \"...\"}, {\"role\": \"assistant\", ...}]}\n"
    "      rendered with the model's chat template (the HH-RLHF format without one); loss on the\n"
    "      assistant turns only (end-of-turn marker included)\n"
    "  {\"prompt\": [messages], \"completion\": [messages]}   loss on the completion's assistant turns\n"
    "  --db FILE: the database's demonstrations and best-ranked responses.\n"
    "EOS is appended to every example that does not end with it, and trained on.\n"
    "\n"
    "  --truncate MODE      an example longer than --max-length tokens keeps its first (keep_start)\n"
    "                       or last (keep_end) tokens, or is refused (error). Default: error when\n"
    "                       --max-length is not given (the limit is then the model's context), else\n"
    "                       keep_start. Truncated and dropped (no completion token left) examples are\n"
    "                       counted in the report.\n"
    "  --show-mask [N]      print N (default 3) training examples with the tokens that get loss\n"
    "                       marked ([[...]], or green on a colour terminal unless NO_COLOR), then stop\n"
    "                       without training\n"
    "\n"
    "Output: a model directory (config.json, model.safetensors, tokenizer files, chat template),\n"
    "or with --lora-rank a PEFT adapter directory (adapter_config.json, adapter_model.safetensors)\n"
    "for `rlhf generate --model BASE --adapter DIR` or `rlhf model merge`; plus training_state.bin\n"
    "for --resume. Ctrl-C stops at the next step and saves a checkpoint --resume continues.\n"
    "Loss: mean cross-entropy over the micro-batch's loss tokens, averaged over --accum.\n"
    "Schedule: linear warm-up (--warmup) then cosine decay to --min-lr.";

static volatile sig_atomic_t g_stop;

typedef struct {
    int show_mask;         /* examples to show; 0: none */
    int color;
    sft_truncate truncate;
    int max_length;
    run_log *rl;           /* opened once the data is known good (nothing is written before) */
    run_log_params rlp;
} report_ctx;

/* Prints ids[from, to) as text, highlighted when `loss`. */
static void print_run(const tokenizer *tok, const int32_t *ids, size_t n, int loss, int color) {
    char *text = NULL;
    size_t len = 0;
    rlhf_error err = {0};
    if (tok_decode(tok, ids, n, &text, &len, &err)) {
        out_printf("<cannot decode: %s>", err.msg);
        return;
    }
    if (loss) out_printf("%s", color ? "\033[1;32m" : "[[");
    out_printf("%s", text);
    if (loss) out_printf("%s", color ? "\033[0m" : "]]");
    free(text);
}

static int on_data(const sft_encoded *e, const sft_source *s, const tokenizer *tok, const char *run_json, void *vctx,
                   rlhf_error *err) {
    report_ctx *ctx = vctx;
    out_printf("data: %zu examples (%zu train, %zu eval), %zu loss tokens; %zu EOS appended; longest %d tokens\n",
               e->n, s->n_train, s->n_val, e->n_loss_tokens, e->n_eos_added, e->longest);
    out_printf("truncation: %zu of %zu examples longer than %d tokens were cut (%s); %zu dropped with no loss token "
               "left\n",
               e->n_truncated, e->n_input, e->max_length, sft_truncate_name(ctx->truncate), e->n_dropped);
    for (int k = 0; k < ctx->show_mask && (size_t)k < s->n_train; k++) {
        size_t i = s->train[k];
        const int32_t *ids = e->ids + e->start[i];
        const uint8_t *loss = e->loss + e->start[i];
        size_t n = (size_t)e->len[i], nl = 0;
        for (size_t j = 0; j < n; j++) nl += loss[j];
        out_printf("--- example %d", k + 1);
        if (e->line[i] > 0) out_printf(" (line %ld)", e->line[i]);
        out_printf(": %zu tokens, %zu with loss%s\n", n, nl, ctx->color ? " (green)" : " [[marked]]");
        size_t a = 0;
        while (a < n) {
            size_t b = a;
            while (b < n && loss[b] == loss[a]) b++;
            print_run(tok, ids + a, b - a, loss[a], ctx->color);
            a = b;
        }
        out_printf("\n");
    }
    if (ctx->show_mask) return RLHF_OK;
    ctx->rlp.config_json = run_json;
    if (run_log_open(ctx->rl, &ctx->rlp))
        return rlhf_errorf(err, RLHF_ERR_IO, "stopped before training: the run could not be logged");
    return RLHF_OK;
}

int cmd_sft(int argc, char **argv) {
    trainer_flags f;
    trainer_flags_defaults(&f);
    if (command_wants_help(argc, argv)) {
        out_printf("usage: %s\n\n%s\n\n", sft_usage, sft_help);
        trainer_flags_print_help(&f);
        return 0;
    }
    int truncate = -1, show_mask = 0;
    for (int i = 1; i < argc; i++) {
        int r = trainer_flags_parse(&f, argc, argv, &i, sft_usage);
        if (r == TRAINER_FLAGS_ERROR) return 2;
        if (r == TRAINER_FLAGS_TAKEN) continue;
        const char *a = argv[i];
        if (strcmp(a, "--show-mask") == 0) {
            show_mask = 3;
            long n;
            if (i + 1 < argc && argv[i + 1][0] != '-') {
                if (trainer_flag_long("--show-mask", argv[i + 1], 1, &n, sft_usage)) return 2;
                show_mask = n > 1000 ? 1000 : (int)n;
                i++;
            }
            continue;
        }
        if (strncmp(a, "--truncate", 10) == 0 && (a[10] == 0 || a[10] == '=')) {
            char name[32];
            const char *v;
            if (trainer_flag_value(argc, argv, &i, name, sizeof name, &v, sft_usage)) return 2;
            truncate = sft_truncate_parse(v);
            if (truncate < 0) {
                out_error("--truncate: expected keep_start, keep_end or error, got '%s'", v);
                return 2;
            }
            f.given |= TRAINER_FLAG_SHAPE;
            continue;
        }
        out_error("%s '%s'", strncmp(a, "--", 2) == 0 ? "unknown flag" : "unexpected argument", a);
        out_error("usage: %s", sft_usage);
        return 2;
    }
    if (trainer_flags_check(&f, 1, sft_usage)) return 2;

    sft_params p;
    sft_params_defaults(&p);
    p.model_dir = f.model;
    p.data_path = f.data;
    p.out_dir = f.out;
    p.steps = f.steps;
    p.epochs = f.epochs;
    p.train.batch = f.batch;
    p.train.accum = f.accum;
    trainer_flags_optim(&f, &p.train.optim);
    /* Without --max-length the limit is the model's context and a longer example is an error
     * (the rule); asking for a length means asking for truncation to it. */
    int max_given = 0;
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], "--max-length", 12) == 0) max_given = 1;
    p.max_length = max_given ? f.max_length : 0;
    p.truncate = truncate >= 0 ? (sft_truncate)truncate : max_given ? SFT_TRUNCATE_KEEP_START : SFT_TRUNCATE_ERROR;
    p.val_fraction = f.val_fraction;
    p.seed = f.seed;
    p.eval_every = f.resume && !(f.given & TRAINER_FLAG_EVAL_EVERY) ? -1 : f.eval_every;
    p.save_every = f.resume && !(f.given & TRAINER_FLAG_SAVE_EVERY) ? -1 : f.save_every;
    trainer_flags_lora(&f, &p.lora);
    p.resume = f.resume;
    if (f.resume && !(f.given & TRAINER_FLAG_STEPS)) p.steps = 0;

    run_log rl;
    memset(&rl, 0, sizeof rl);
    report_ctx rep = {show_mask, 0, p.truncate, p.max_length, &rl, {0}};
    const char *no_color = getenv("NO_COLOR");
    rep.color = show_mask && isatty(fileno(out_stream())) && !(no_color && *no_color);
    p.on_data = on_data;
    p.on_data_ctx = &rep;
    p.prepare_only = show_mask > 0;

    /* Data from the database. */
    sft_texts texts = {0};
    char desc[4096];
    if (f.db) {
        store *db = NULL;
        rlhf_error err = {0};
        store_open_params op = {1, 0};
        sft_dataset ds;
        sft_dataset_init(&ds);
        store_sft_query q = {0, 0};
        int rc = store_open_ex(&db, f.db, &op, &err);
        if (!rc) rc = store_get_sft_dataset(db, &q, &ds, &err);
        if (!rc) rc = sft_texts_from_dataset(&texts, &ds, &err);
        sft_dataset_free(&ds);
        store_close(&db);
        if (rc) return out_fail(&err);
        snprintf(desc, sizeof desc, "db:%s", f.db);
        p.texts = &texts;
        p.data_desc = desc;
    }

    g_stop = 0;
    p.stop = &g_stop;
    int logging = !show_mask;
    p.progress = logging ? run_log_progress : NULL;
    p.progress_ctx = &rl;
    struct sigaction old;
    run_log_sigint_catch(&g_stop, &old);

    run_log_params rlp = {"sft", f.runs_db ? f.runs_db : f.db, f.json_log, f.resume, f.model, NULL};
    rep.rlp = rlp;
    sft_summary s;
    rlhf_error err = {0};
    int rc = sft_run(&p, &s, &err);
    run_log_sigint_restore(&old);
    out_progress_end();
    sft_texts_free(&texts);
    if (show_mask) {
        sft_summary_free(&s);
        return rc ? out_fail(&err) : 0;
    }
    if (rc == RLHF_ERR_INTERRUPTED) {
        run_log_finish(&rl, "stopped", f.out);
        out_printf("interrupted at step %ld of %ld: saved the %s and training state (step %ld) to %s\n", s.steps_done,
                   s.total_steps, s.lora ? "adapter" : "model", s.saved_step, f.out);
        out_printf("continue with: rlhf sft --out %s --resume%s%s\n", f.out, f.db ? " --db " : "", f.db ? f.db : "");
        sft_summary_free(&s);
        return 130;
    }
    if (rc) {
        run_log_finish(&rl, "failed", NULL);
        out_fail(&err);
        if (s.saved_step >= 0) out_error("the last checkpoint in %s is from step %ld", f.out, s.saved_step);
        sft_summary_free(&s);
        return 1;
    }
    run_log_finish(&rl, "done", f.out);
    char el[32];
    run_log_duration(el, sizeof el, s.elapsed_s);
    out_printf("fine-tuned %zu %s on %zu examples: steps %ld..%ld of %ld in %s (%.0f tok/s)\n", s.n_params_trained,
               s.lora ? "adapter parameters" : "parameters", s.n_train, s.start_step, s.steps_done, s.total_steps, el,
               s.tokens_per_s);
    out_printf("final training loss %.4f", s.final_loss);
    if (!isnan(s.final_val_loss))
        out_printf(", eval loss %.4f (was %.4f at step %ld)", s.final_val_loss, s.first_val_loss, s.start_step);
    out_printf("\nsaved %s: %s, %s (step %ld)\n", f.out,
               s.lora ? "adapter_config.json, adapter_model.safetensors" : "config.json, model.safetensors, tokenizer",
               SFT_STATE_FILE, s.saved_step);
    sft_summary_free(&s);
    return 0;
}
