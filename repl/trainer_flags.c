/* trainer_flags.c — the common trainer flags: one table gives each flag's name, value kind,
 * range, help line and where it lands in trainer_flags, so parsing and --help cannot drift. */
#include "repl/trainer_flags.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "repl/out.h"

void trainer_flags_defaults(trainer_flags *f) {
    memset(f, 0, sizeof *f);
    f->epochs = 3;
    f->lr = 2e-5;
    f->min_lr = 0;
    f->warmup = 0;
    f->weight_decay = 0;
    f->grad_clip = 1.0;
    f->batch = 8;
    f->accum = 1;
    f->max_length = 1024;
    f->val_fraction = 0.1;
    f->seed = 42;
    f->eval_every = 100;
    f->save_every = 500;
    lora_params lp;
    lora_params_defaults(&lp);
    f->lora_alpha = lp.alpha;
    f->lora_dropout = lp.dropout;
}

typedef enum { FLAG_STR, FLAG_LONG, FLAG_INT, FLAG_DOUBLE, FLAG_U64, FLAG_BOOL } flag_kind;

typedef struct {
    const char *name;
    flag_kind kind;
    size_t offset;     /* into trainer_flags */
    double min, max;   /* numeric range */
    unsigned given;    /* TRAINER_FLAG_* bits set when the flag appears */
    const char *arg;   /* value placeholder in help */
    const char *help;  /* one line; the default is appended */
} flag_spec;

#define OFF(field) offsetof(trainer_flags, field)
static const flag_spec g_flags[] = {
    {"--model", FLAG_STR, OFF(model), 0, 0, 0, "DIR", "initial model (HF directory); not needed with --resume"},
    {"--data", FLAG_STR, OFF(data), 0, 0, 0, "FILE.jsonl", "training data (JSON lines)"},
    {"--db", FLAG_STR, OFF(db), 0, 0, 0, "FILE", "training data from the feedback database; the run and its metrics are recorded there"},
    {"--runs-db", FLAG_STR, OFF(runs_db), 0, 0, 0, "FILE", "record the run and its metrics in this database (with --data)"},
    {"--out", FLAG_STR, OFF(out), 0, 0, 0, "DIR", "output directory (model or adapter, training_state.bin)"},
    {"--json-log", FLAG_STR, OFF(json_log), 0, 0, 0, "FILE", "append one JSON object per step/evaluation"},
    {"--epochs", FLAG_LONG, OFF(epochs), 1, 1e6, TRAINER_FLAG_EPOCHS | TRAINER_FLAG_SHAPE, "N", "passes over the training split (when --steps is not given)"},
    {"--steps", FLAG_LONG, OFF(steps), 1, 1e12, TRAINER_FLAG_STEPS, "N", "optimizer steps (overrides --epochs; with --resume may extend the run)"},
    {"--lr", FLAG_DOUBLE, OFF(lr), 0, 10, TRAINER_FLAG_SHAPE, "LR", "peak learning rate"},
    {"--min-lr", FLAG_DOUBLE, OFF(min_lr), 0, 10, TRAINER_FLAG_SHAPE, "LR", "end of the cosine decay"},
    {"--warmup", FLAG_LONG, OFF(warmup), 0, 1e12, TRAINER_FLAG_SHAPE, "N", "linear warm-up steps"},
    {"--weight-decay", FLAG_DOUBLE, OFF(weight_decay), 0, 1e3, TRAINER_FLAG_SHAPE, "W", "AdamW decoupled weight decay (matrices only)"},
    {"--grad-clip", FLAG_DOUBLE, OFF(grad_clip), 0, 1e9, TRAINER_FLAG_SHAPE, "C", "clip the global gradient norm; 0 disables"},
    {"--batch", FLAG_INT, OFF(batch), 1, 1 << 20, TRAINER_FLAG_SHAPE, "B", "examples per micro-batch"},
    {"--accum", FLAG_INT, OFF(accum), 1, 1 << 20, TRAINER_FLAG_SHAPE, "N", "micro-batches per optimizer step"},
    {"--max-length", FLAG_INT, OFF(max_length), 2, 1 << 24, TRAINER_FLAG_SHAPE | TRAINER_FLAG_MAX_LENGTH, "T", "tokens per example, clamped to the model's context"},
    {"--val-fraction", FLAG_DOUBLE, OFF(val_fraction), 0, 0.9, TRAINER_FLAG_SHAPE, "F", "share of the examples held out for evaluation"},
    {"--seed", FLAG_U64, OFF(seed), 0, 0, TRAINER_FLAG_SHAPE, "S", "seed of the split, the shuffling and LoRA's initialisation"},
    {"--eval-every", FLAG_LONG, OFF(eval_every), 0, 1e12, TRAINER_FLAG_EVAL_EVERY, "N", "evaluate every N steps and at the end; 0: only at the end"},
    {"--save-every", FLAG_LONG, OFF(save_every), 0, 1e12, TRAINER_FLAG_SAVE_EVERY, "N", "checkpoint every N steps and at the end; 0: only at the end"},
    {"--resume", FLAG_BOOL, OFF(resume), 0, 0, 0, NULL, "continue the run saved in --out exactly"},
    {"--lora-rank", FLAG_INT, OFF(lora_rank), 0, 4096, TRAINER_FLAG_LORA | TRAINER_FLAG_SHAPE, "R", "train a LoRA adapter of rank R instead of every weight; 0: full fine-tuning"},
    {"--lora-alpha", FLAG_DOUBLE, OFF(lora_alpha), 1e-6, 1e6, TRAINER_FLAG_LORA | TRAINER_FLAG_SHAPE, "A", "LoRA scale is alpha / rank"},
    {"--lora-dropout", FLAG_DOUBLE, OFF(lora_dropout), 0, 0.99, TRAINER_FLAG_LORA | TRAINER_FLAG_SHAPE, "P", "dropout on the adapters' inputs"},
    {"--lora-targets", FLAG_STR, OFF(lora_targets), 0, 0, TRAINER_FLAG_LORA | TRAINER_FLAG_SHAPE, "LIST", "target modules, comma list or all-linear (default: q_proj,v_proj / c_attn)"},
};
#define N_FLAGS (sizeof g_flags / sizeof g_flags[0])

static int usage_line(const char *usage) {
    if (usage) out_error("usage: %s", usage);
    return TRAINER_FLAGS_ERROR;
}

int trainer_flag_value(int argc, char **argv, int *i, char *name, size_t size, const char **value,
                       const char *usage) {
    const char *a = argv[*i];
    const char *eq = strchr(a, '=');
    if (eq) {
        snprintf(name, size, "%.*s", (int)(eq - a), a);
        *value = eq + 1;
        return 0;
    }
    snprintf(name, size, "%s", a);
    if (*i + 1 >= argc) {
        out_error("%s needs a value", a);
        return usage_line(usage);
    }
    *value = argv[++*i];
    return 0;
}

int trainer_flag_long(const char *flag, const char *v, long min, long *out, const char *usage) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < min) {
        out_error("%s: expected an integer >= %ld, got '%s'", flag, min, v);
        return usage_line(usage);
    }
    *out = x;
    return 0;
}

int trainer_flag_double(const char *flag, const char *v, double min, double max, double *out, const char *usage) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x) || x < min || x > max) {
        out_error("%s: expected a number in [%g, %g], got '%s'", flag, min, max, v);
        return usage_line(usage);
    }
    *out = x;
    return 0;
}

int trainer_flags_parse(trainer_flags *f, int argc, char **argv, int *i, const char *usage) {
    const char *a = argv[*i];
    size_t n = strcspn(a, "=");
    const flag_spec *s = NULL;
    for (size_t k = 0; k < N_FLAGS && !s; k++)
        if (strlen(g_flags[k].name) == n && strncmp(a, g_flags[k].name, n) == 0) s = &g_flags[k];
    if (!s) return TRAINER_FLAGS_NOT_MINE;
    char *field = (char *)f + s->offset;
    if (s->kind == FLAG_BOOL) {
        if (a[n] == '=') {
            out_error("%s takes no value", s->name);
            return usage_line(usage);
        }
        *(int *)field = 1;
        f->given |= s->given;
        return TRAINER_FLAGS_TAKEN;
    }
    char name[64];
    const char *v;
    int j = *i;
    if (trainer_flag_value(argc, argv, &j, name, sizeof name, &v, usage)) return TRAINER_FLAGS_ERROR;
    long l;
    double d;
    switch (s->kind) {
    case FLAG_STR:
        if (!*v) {
            out_error("%s: expected %s, got an empty value", s->name, s->arg);
            return usage_line(usage);
        }
        *(const char **)field = v;
        break;
    case FLAG_LONG:
        if (trainer_flag_long(s->name, v, (long)s->min, &l, usage)) return TRAINER_FLAGS_ERROR;
        if ((double)l > s->max) {
            out_error("%s: expected at most %.0f, got '%s'", s->name, s->max, v);
            return usage_line(usage);
        }
        *(long *)field = l;
        break;
    case FLAG_INT:
        if (trainer_flag_long(s->name, v, (long)s->min, &l, usage)) return TRAINER_FLAGS_ERROR;
        if ((double)l > s->max) {
            out_error("%s: expected at most %.0f, got '%s'", s->name, s->max, v);
            return usage_line(usage);
        }
        *(int *)field = (int)l;
        break;
    case FLAG_DOUBLE:
        if (trainer_flag_double(s->name, v, s->min, s->max, &d, usage)) return TRAINER_FLAGS_ERROR;
        *(double *)field = d;
        break;
    case FLAG_U64: {
        char *end;
        errno = 0;
        unsigned long long u = strtoull(v, &end, 10);
        if (errno || end == v || *end || *v == '-') {
            out_error("%s: expected an integer >= 0, got '%s'", s->name, v);
            return usage_line(usage);
        }
        *(uint64_t *)field = (uint64_t)u;
        break;
    }
    case FLAG_BOOL:
        break;
    }
    f->given |= s->given;
    *i = j;
    return TRAINER_FLAGS_TAKEN;
}

static void default_text(const flag_spec *s, const trainer_flags *d, char *buf, size_t size) {
    const char *field = (const char *)d + s->offset;
    buf[0] = 0;
    switch (s->kind) {
    case FLAG_STR: {
        const char *v = *(const char *const *)field;
        if (v) snprintf(buf, size, "%s", v);
        break;
    }
    case FLAG_LONG: snprintf(buf, size, "%ld", *(const long *)field); break;
    case FLAG_INT: snprintf(buf, size, "%d", *(const int *)field); break;
    case FLAG_DOUBLE: snprintf(buf, size, "%g", *(const double *)field); break;
    case FLAG_U64: snprintf(buf, size, "%llu", (unsigned long long)*(const uint64_t *)field); break;
    case FLAG_BOOL: break;
    }
}

void trainer_flags_print_help(const trainer_flags *defaults) {
    out_printf("common trainer flags (the same on every trainer):\n");
    for (size_t k = 0; k < N_FLAGS; k++) {
        const flag_spec *s = &g_flags[k];
        char left[48], def[48];
        snprintf(left, sizeof left, "%s%s%s", s->name, s->arg ? " " : "", s->arg ? s->arg : "");
        default_text(s, defaults, def, sizeof def);
        /* --steps 0 means "from --epochs"; a rank of 0 means LoRA is off: say so, not "0". */
        if (strcmp(s->name, "--steps") == 0 && defaults->steps == 0) snprintf(def, sizeof def, "from --epochs");
        if (strcmp(s->name, "--lora-rank") == 0 && defaults->lora_rank == 0) snprintf(def, sizeof def, "0, off");
        out_printf("  %-22s %s%s%s%s\n", left, s->help, def[0] ? " (default " : "", def, def[0] ? ")" : "");
    }
}

void trainer_flags_optim(const trainer_flags *f, optim_params *o) {
    optim_params_defaults(o);
    o->lr = (float)f->lr;
    o->min_lr = (float)f->min_lr;
    o->warmup_steps = f->warmup;
    o->beta2 = 0.999f;
    o->weight_decay = (float)f->weight_decay;
    o->grad_clip = (float)f->grad_clip;
}

void trainer_flags_lora(const trainer_flags *f, lora_params *p) {
    lora_params_defaults(p);
    p->rank = f->lora_rank;
    p->alpha = (float)f->lora_alpha;
    p->dropout = (float)f->lora_dropout;
    p->targets = f->lora_targets;
}

long trainer_flags_total_steps(const trainer_flags *f, long n_train) {
    if (f->steps > 0) return f->steps;
    long per = (long)f->batch * f->accum;
    long per_epoch = (n_train + per - 1) / per;
    if (per_epoch < 1) per_epoch = 1;
    return per_epoch * f->epochs;
}

int trainer_flags_check(const trainer_flags *f, int data_required, const char *usage) {
    if (!f->out) {
        out_error("--out DIR is required");
        return usage_line(usage);
    }
    if (f->resume) {
        if (f->given & TRAINER_FLAG_SHAPE) {
            out_error("--resume continues the saved run with its own settings; only --steps, --eval-every, "
                      "--save-every, --data/--db, --runs-db and --json-log may be given");
            return TRAINER_FLAGS_ERROR;
        }
        return 0;
    }
    if (!f->model) {
        out_error("--model DIR is required");
        return usage_line(usage);
    }
    if (data_required && !f->data == !f->db) {
        out_error(f->data ? "give either --data or --db, not both (use --runs-db to record a --data run)"
                          : "--data FILE.jsonl or --db FILE is required");
        return usage_line(usage);
    }
    if (f->min_lr > f->lr) {
        out_error("--min-lr %g is larger than --lr %g", f->min_lr, f->lr);
        return TRAINER_FLAGS_ERROR;
    }
    if ((f->given & TRAINER_FLAG_LORA) && f->lora_rank == 0) {
        out_error("--lora-alpha/--lora-dropout/--lora-targets need --lora-rank R (R >= 1)");
        return TRAINER_FLAGS_ERROR;
    }
    return 0;
}

int trainer_flag_own(int argc, char **argv, int *i, char *name, size_t size, const char **value, const char *usage) {
    if (strncmp(argv[*i], "--", 2) != 0) {
        out_error("unexpected argument '%s'", argv[*i]);
        return usage_line(usage);
    }
    return trainer_flag_value(argc, argv, i, name, size, value, usage);
}

int trainer_flags_pref_parse(pref_common_params *c, const char *name, const char *value) {
    if (strcmp(name, "--ref") == 0) {
        c->ref_dir = value;
        return TRAINER_FLAGS_TAKEN;
    }
    if (strcmp(name, "--truncate") != 0) return TRAINER_FLAGS_NOT_MINE;
    const int t = sft_truncate_parse(value);
    if (t < 0) {
        out_error("--truncate: expected keep_start, keep_end or error, got '%s'", value);
        return TRAINER_FLAGS_ERROR;
    }
    c->truncate = (sft_truncate)t;
    return TRAINER_FLAGS_TAKEN;
}

void trainer_flags_pref(const trainer_flags *f, const char *data_desc, pref_common_params *c) {
    c->model_dir = f->model;
    c->data_desc = data_desc;
    c->out_dir = f->out;
    c->steps = f->resume && !(f->given & TRAINER_FLAG_STEPS) ? 0 : f->steps;
    c->epochs = f->epochs;
    c->train.batch = f->batch;
    c->train.accum = f->accum;
    trainer_flags_optim(f, &c->train.optim);
    c->max_length = f->given & TRAINER_FLAG_MAX_LENGTH ? f->max_length : 0;
    c->val_fraction = f->val_fraction;
    c->seed = f->seed;
    c->eval_every = f->resume && !(f->given & TRAINER_FLAG_EVAL_EVERY) ? -1 : f->eval_every;
    c->save_every = f->resume && !(f->given & TRAINER_FLAG_SAVE_EVERY) ? -1 : f->save_every;
    c->resume = f->resume;
    trainer_flags_lora(f, &c->lora);
}

int trainer_flags_pref_resume(trainer_flags *f, const char **format, cJSON **saved) {
    char *json = NULL;
    rlhf_error err = {0};
    *saved = NULL;
    if (pref_saved_run(f->out, &json, &err)) return out_fail(&err);
    *saved = cJSON_Parse(json);
    free(json);
    const char *data = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(*saved, "data"));
    const char *fmt = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(*saved, "format"));
    const char *model = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(*saved, "model"));
    if (!data || !*data) {
        out_error("%s/%s: the saved run does not say what data it trained on", f->out, PREF_STATE_FILE);
        return 1;
    }
    if (!f->data && !f->db) {
        if (strncmp(data, "db:", 3) == 0) f->db = data + 3;
        else f->data = data;
    }
    if (!*format && fmt && *fmt) *format = fmt;
    if (!f->model && model && *model) f->model = model;
    return 0;
}
