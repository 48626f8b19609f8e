/* cmd_pretrain.c — `rlhf pretrain`: flags to pretrain_params, a SIGINT handler that asks the run
 * to stop at the next step boundary, the live progress line, an optional JSON-lines log and the
 * final summary. The training itself is src/train/pretrain.c. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repl/commands.h"
#include "repl/out.h"
#include "repl/run_log.h"
#include "src/train/pretrain.h"

static const char *const pretrain_usage =
    "rlhf pretrain --model DIR --data FILE.txt [--tokenizer PATH] --out DIR [--steps N --batch B --context T "
    "--lr LR --min-lr LR --warmup N --weight-decay W --grad-clip C --accum N --eval-every N --save-every N "
    "--val-fraction F --seed S --resume --json-log FILE]";

static const char *const pretrain_help =
    "Next-token pre-training of a model directory on raw text.\n"
    "\n"
    "  --model DIR         initial model (HF directory, llama2.c .bin or GGUF); not needed with --resume\n"
    "  --data FILE.txt     training text; its last --val-fraction is held out for validation\n"
    "  --tokenizer PATH    tokenizer.json (or a directory holding one); default: the model directory's\n"
    "                      tokenizer.json, else the byte tokenizer (256 ids)\n"
    "  --out DIR           checkpoint directory: config.json, model.safetensors, tokenizer.json,\n"
    "                      training_state.bin (parameters, AdamW moments, step, rng, run configuration)\n"
    "  --steps N           optimizer steps (default 1000; with --resume: the saved value)\n"
    "  --batch B           sequences per micro-batch (default 8)\n"
    "  --context T         tokens per sequence (default min(256, the model's context))\n"
    "  --accum N           micro-batches per optimizer step (default 1)\n"
    "  --lr LR             peak learning rate (default 1e-3)\n"
    "  --min-lr LR         end of the cosine schedule (default 1e-4)\n"
    "  --warmup N          linear warm-up steps (default min(100, steps/10))\n"
    "  --weight-decay W    AdamW decoupled weight decay (default 0.1)\n"
    "  --decay KINDS       tensor kinds that decay: comma list of matrix,embedding,norm,bias (default matrix)\n"
    "  --grad-clip C       clip the global gradient norm to C; 0 disables (default 1.0)\n"
    "  --eval-every N      validation loss every N steps and at the end; 0: only at the end\n"
    "                      (default 100; with --resume: the saved value)\n"
    "  --eval-batches N    validation micro-batches per evaluation (default 8)\n"
    "  --save-every N      checkpoint every N steps and at the end; 0: only at the end\n"
    "                      (default 500; with --resume: the saved value)\n"
    "  --val-fraction F    held-out tail of the tokens, 0 <= F < 1 (default 0.1)\n"
    "  --seed S            seed of the data sampler (default 1337)\n"
    "  --resume            continue the run saved in --out exactly (its saved batch, context, optimizer,\n"
    "                      split and seed are used; --steps may extend it)\n"
    "  --json-log FILE     append one JSON object per step/evaluation to FILE\n"
    "\n"
    "Ctrl-C stops at the next step boundary and saves a checkpoint that --resume continues.";

static volatile sig_atomic_t g_stop;

typedef struct {
    FILE *log;
    double last_shown; /* elapsed_s of the last progress line */
} progress_ctx;

static void on_progress(const pretrain_progress *pg, void *vctx) {
    progress_ctx *ctx = vctx;
    if (pg->event == PRETRAIN_EVENT_SAVING) {
        out_progress("step %ld/%ld | saving checkpoint...", pg->step, pg->total);
        return;
    }
    if (pg->event == PRETRAIN_EVENT_SKIPPED) {
        out_progress_end();
        out_error("step %ld: skipped (loss %g or a gradient is not finite; %d in a row)", pg->step, pg->loss,
                  pg->bad_in_row);
        if (ctx->log) {
            fprintf(ctx->log, "{\"event\":\"skipped\",\"step\":%ld}\n", pg->step);
            fflush(ctx->log);
        }
        return;
    }
    if (ctx->log) {
        if (pg->event == PRETRAIN_EVENT_EVAL)
            fprintf(ctx->log, "{\"event\":\"eval\",\"step\":%ld,\"val_loss\":%.17g}\n", pg->step, pg->val_loss);
        else {
            fprintf(ctx->log,
                    "{\"event\":\"step\",\"step\":%ld,\"loss\":%.17g,\"lr\":%.9g,\"grad_norm\":%.17g,"
                    "\"tokens_per_s\":%.1f,\"elapsed_s\":%.3f",
                    pg->step, pg->loss, (double)pg->lr, pg->grad_norm, pg->tokens_per_s, pg->elapsed_s);
            if (!isnan(pg->val_loss)) fprintf(ctx->log, ",\"val_loss\":%.17g", pg->val_loss);
            if (pg->saved) fprintf(ctx->log, ",\"saved\":true");
            fprintf(ctx->log, "}\n");
        }
        fflush(ctx->log);
    }
    if (pg->event == PRETRAIN_EVENT_EVAL) {
        out_progress("step %ld/%ld | val loss %.4f", pg->step, pg->total, pg->val_loss);
        return;
    }
    /* At most four lines a second, but always the evaluations, checkpoints and the last step. */
    if (isnan(pg->val_loss) && !pg->saved && pg->step < pg->total && pg->elapsed_s - ctx->last_shown < 0.25) return;
    ctx->last_shown = pg->elapsed_s;
    char eta[32], val[48] = "";
    run_log_duration(eta, sizeof eta, pg->eta_s);
    if (!isnan(pg->val_loss)) snprintf(val, sizeof val, " | val %.4f", pg->val_loss);
    out_progress("step %ld/%ld | loss %.4f%s | lr %.2e | %.0f tok/s | ETA %s", pg->step, pg->total, pg->loss, val,
                 (double)pg->lr, pg->tokens_per_s, eta);
}

/* ---- flag parsing ---- */

static int bad_value(const char *flag, const char *value, const char *want) {
    out_error("%s: expected %s, got '%s'", flag, want, value);
    out_error("usage: %s", pretrain_usage);
    return 2;
}

static int parse_long(const char *flag, const char *v, long min, long *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < min) {
        char want[64];
        snprintf(want, sizeof want, "an integer >= %ld", min);
        return bad_value(flag, v, want);
    }
    *out = x;
    return 0;
}

static int parse_int(const char *flag, const char *v, int min, int *out) {
    long x;
    int rc = parse_long(flag, v, min, &x);
    if (rc) return rc;
    if (x > 1 << 30) return bad_value(flag, v, "a smaller integer");
    *out = (int)x;
    return 0;
}

static int parse_float(const char *flag, const char *v, double min, double max, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x) || x < min || x > max) {
        char want[96];
        snprintf(want, sizeof want, "a number in [%g, %g]", min, max);
        return bad_value(flag, v, want);
    }
    *out = x;
    return 0;
}

static int parse_kinds(const char *flag, const char *v, unsigned *out) {
    static const char *names[] = {"matrix", "embedding", "norm", "bias"};
    unsigned mask = 0;
    const char *s = v;
    while (*s) {
        size_t n = strcspn(s, ",");
        int found = 0;
        for (unsigned k = 0; k < 4; k++)
            if (strlen(names[k]) == n && strncmp(s, names[k], n) == 0) {
                mask |= 1u << k;
                found = 1;
            }
        if (!found && !(n == 4 && strncmp(s, "none", 4) == 0))
            return bad_value(flag, v, "a comma list of matrix, embedding, norm, bias (or none)");
        s += n;
        if (*s == ',') s++;
    }
    *out = mask;
    return 0;
}

int cmd_pretrain(int argc, char **argv) {
    if (command_wants_help(argc, argv)) {
        out_printf("usage: %s\n\n%s\n", pretrain_usage, pretrain_help);
        return 0;
    }
    pretrain_params p;
    pretrain_params_defaults(&p);
    const char *json_log = NULL;
    int steps_given = 0, data_flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--resume") == 0) {
            p.resume = 1;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            out_error("unexpected argument '%s'", a);
            out_error("usage: %s", pretrain_usage);
            return 2;
        }
        /* --flag VALUE or --flag=VALUE */
        char name[64];
        const char *v = NULL;
        const char *eq = strchr(a, '=');
        if (eq) {
            snprintf(name, sizeof name, "%.*s", (int)(eq - a), a);
            v = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", a);
            if (i + 1 >= argc) {
                out_error("%s needs a value", a);
                out_error("usage: %s", pretrain_usage);
                return 2;
            }
            v = argv[++i];
        }
        int rc = 0;
        double d;
        long l;
        if (strcmp(name, "--model") == 0) p.model_dir = v;
        else if (strcmp(name, "--data") == 0) p.data_path = v;
        else if (strcmp(name, "--tokenizer") == 0) p.tokenizer_path = v, data_flags++;
        else if (strcmp(name, "--out") == 0) p.out_dir = v;
        else if (strcmp(name, "--json-log") == 0) json_log = v;
        else if (strcmp(name, "--steps") == 0) rc = parse_long(name, v, 1, &p.steps), steps_given = 1;
        else if (strcmp(name, "--batch") == 0) rc = parse_int(name, v, 1, &p.train.batch), data_flags++;
        else if (strcmp(name, "--context") == 0) rc = parse_int(name, v, 1, &p.train.context), data_flags++;
        else if (strcmp(name, "--accum") == 0) rc = parse_int(name, v, 1, &p.train.accum), data_flags++;
        else if (strcmp(name, "--eval-every") == 0) rc = parse_long(name, v, 0, &p.eval_every);
        else if (strcmp(name, "--save-every") == 0) rc = parse_long(name, v, 0, &p.save_every);
        else if (strcmp(name, "--eval-batches") == 0) rc = parse_int(name, v, 1, &p.eval_batches), data_flags++;
        else if (strcmp(name, "--warmup") == 0) rc = parse_long(name, v, 0, &p.train.optim.warmup_steps), data_flags++;
        else if (strcmp(name, "--decay") == 0) rc = parse_kinds(name, v, &p.train.optim.decay_kinds), data_flags++;
        else if (strcmp(name, "--seed") == 0) {
            rc = parse_long(name, v, 0, &l);
            p.seed = (uint64_t)l;
            data_flags++;
        } else if (strcmp(name, "--lr") == 0) {
            rc = parse_float(name, v, 0, 10, &d);
            p.train.optim.lr = (float)d;
            data_flags++;
        } else if (strcmp(name, "--min-lr") == 0) {
            rc = parse_float(name, v, 0, 10, &d);
            p.train.optim.min_lr = (float)d;
            data_flags++;
        } else if (strcmp(name, "--weight-decay") == 0) {
            rc = parse_float(name, v, 0, 1e3, &d);
            p.train.optim.weight_decay = (float)d;
            data_flags++;
        } else if (strcmp(name, "--grad-clip") == 0) {
            rc = parse_float(name, v, 0, 1e9, &d);
            p.train.optim.grad_clip = (float)d;
            data_flags++;
        } else if (strcmp(name, "--val-fraction") == 0) {
            rc = parse_float(name, v, 0, 0.99, &d);
            p.val_fraction = d;
            data_flags++;
        } else {
            out_error("unknown flag '%s'", name);
            out_error("usage: %s", pretrain_usage);
            return 2;
        }
        if (rc) return rc;
    }
    if (!p.out_dir) {
        out_error("--out DIR is required");
        out_error("usage: %s", pretrain_usage);
        return 2;
    }
    if (p.resume) {
        /* The saved run fixes everything that shapes the numbers; refusing a changed value is
         * clearer than silently ignoring it. */
        if (data_flags) {
            out_error("--resume continues the saved run with its own batch, context, optimizer, split, seed and "
                      "tokenizer; only --steps, --eval-every, --save-every, --data and --json-log may be given");
            return 2;
        }
        if (!steps_given) p.steps = 0;
    } else {
        if (!p.model_dir || !p.data_path) {
            out_error("%s is required", !p.model_dir ? "--model DIR" : "--data FILE.txt");
            out_error("usage: %s", pretrain_usage);
            return 2;
        }
        if (p.train.optim.min_lr > p.train.optim.lr) {
            out_error("--min-lr %g is larger than --lr %g", (double)p.train.optim.min_lr, (double)p.train.optim.lr);
            return 2;
        }
    }

    progress_ctx ctx = {0};
    if (json_log) {
        ctx.log = fopen(json_log, p.resume ? "a" : "w");
        if (!ctx.log) {
            out_error("--json-log %s: cannot open for writing: %s", json_log, strerror(errno));
            return 1;
        }
    }
    p.progress = on_progress;
    p.progress_ctx = &ctx;
    g_stop = 0;
    p.stop = &g_stop;
    struct sigaction old;
    run_log_sigint_catch(&g_stop, &old);

    pretrain_summary s;
    rlhf_error err = {0};
    int rc = pretrain_run(&p, &s, &err);
    run_log_sigint_restore(&old);
    out_progress_end();
    if (ctx.log) fclose(ctx.log);

    if (rc == RLHF_ERR_INTERRUPTED) {
        out_printf("interrupted at step %ld of %ld: saved the model and training state (step %ld) to %s\n",
                   s.steps_done, s.total_steps, s.saved_step, p.out_dir);
        out_printf("continue with: rlhf pretrain --out %s --resume\n", p.out_dir);
        return 130;
    }
    if (rc) {
        out_fail(&err);
        if (s.saved_step >= 0)
            out_error("the last checkpoint in %s is from step %ld", p.out_dir, s.saved_step);
        return 1;
    }
    char el[32];
    run_log_duration(el, sizeof el, s.elapsed_s);
    out_printf("pretrained %zu parameters on %zu tokens (vocabulary %d): steps %ld..%ld of %ld in %s (%.0f tok/s)\n",
               s.n_params, s.n_train_tokens, s.vocab_size, s.start_step, s.steps_done, s.total_steps, el,
               s.tokens_per_s);
    out_printf("final training loss %.4f", s.final_loss);
    if (!isnan(s.final_val_loss))
        out_printf(", validation loss %.4f (was %.4f at step %ld)", s.final_val_loss, s.first_val_loss, s.start_step);
    out_printf("\nsaved %s: config.json, model.safetensors, tokenizer.json, %s (step %ld)\n", p.out_dir,
               PRETRAIN_STATE_FILE, s.saved_step);
    return 0;
}
