/* trainer_flags.h — the flags every trainer shares (sft, classify, reward, dpo, ppo, ...):
 * one table parses them, one function prints their help with the defaults the trainer chose,
 * so the same flag means the same thing with the same spelling everywhere.
 *
 * A command sets its defaults (trainer_flags_defaults, then its own overrides: TRL's defaults
 * differ per trainer, e.g. SFT lr 2e-5, DPO lr 1e-6), then for each argv position asks
 * trainer_flags_parse whether the flag is a common one, and handles its own flags otherwise.
 *
 *   --model DIR  --data FILE.jsonl | --db FILE  --out DIR  --epochs N | --steps N  --lr LR
 *   --min-lr LR --warmup N --weight-decay W --grad-clip C --batch B --accum N --max-length T
 *   --val-fraction F --seed S --eval-every N --save-every N --resume --json-log FILE
 *   --runs-db FILE --lora-rank R --lora-alpha A --lora-dropout P --lora-targets LIST */
#ifndef RLHF_REPL_TRAINER_FLAGS_H
#define RLHF_REPL_TRAINER_FLAGS_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "src/model/lora.h"
#include "src/train/pref_run.h"
#include "src/train/optim.h"

typedef struct {
    const char *model;        /* --model DIR (initial model) */
    const char *data;         /* --data FILE.jsonl */
    const char *db;           /* --db FILE: training data from the feedback database (also gets
                                 the run's metrics) */
    const char *runs_db;      /* --runs-db FILE: record the run and its metrics there */
    const char *out;          /* --out DIR */
    const char *json_log;     /* --json-log FILE */
    long epochs;              /* --epochs N over offline data (used when steps is 0) */
    long steps;               /* --steps N optimizer steps; 0: from epochs */
    double lr, min_lr;        /* --lr (peak), --min-lr (end of the cosine) */
    long warmup;              /* --warmup N steps */
    double weight_decay;      /* --weight-decay */
    double grad_clip;         /* --grad-clip (0 disables) */
    int batch;                /* --batch B sequences per micro-batch */
    int accum;                /* --accum N micro-batches per optimizer step */
    int max_length;           /* --max-length T tokens per example (0: the model's context) */
    double val_fraction;      /* --val-fraction F held out for evaluation */
    uint64_t seed;            /* --seed S */
    long eval_every;          /* --eval-every N (0: only at the end) */
    long save_every;          /* --save-every N (0: only at the end) */
    int resume;               /* --resume */
    int lora_rank;            /* --lora-rank R (0: full fine-tuning) */
    double lora_alpha;        /* --lora-alpha A */
    double lora_dropout;      /* --lora-dropout P */
    const char *lora_targets; /* --lora-targets LIST (NULL: PEFT's default for the family) */
    unsigned given;           /* TRAINER_FLAG_* bits of the flags the user gave */
} trainer_flags;

/* Bits of trainer_flags.given (which flags appeared on the command line). */
enum {
    TRAINER_FLAG_STEPS = 1u << 0,
    TRAINER_FLAG_EPOCHS = 1u << 1,
    TRAINER_FLAG_LORA = 1u << 2,       /* any --lora-* flag */
    TRAINER_FLAG_SHAPE = 1u << 3,      /* anything that changes the numbers of a run (not allowed
                                          with --resume): lr, batch, seed, ... */
    TRAINER_FLAG_EVAL_EVERY = 1u << 4,
    TRAINER_FLAG_SAVE_EVERY = 1u << 5,
    TRAINER_FLAG_MAX_LENGTH = 1u << 6,
};

/* TRL-like defaults (transformers' TrainingArguments as SFTConfig sets them): 3 epochs, lr 2e-5,
 * min-lr 0, no warm-up, weight decay 0, clipping 1.0, batch 8, accum 1, max-length 1024 (clamped
 * to the model's context), val-fraction 0.1, seed 42, eval every 100 steps, save every 500,
 * LoRA off (rank 0; with a rank: PEFT's alpha 8, dropout 0, the family's default targets). */
void trainer_flags_defaults(trainer_flags *f);

/* Result of trainer_flags_parse. */
enum { TRAINER_FLAGS_NOT_MINE = 0, TRAINER_FLAGS_TAKEN = 1, TRAINER_FLAGS_ERROR = 2 };

/* Looks at argv[*i] ("--flag VALUE" or "--flag=VALUE"). A common flag is parsed into f, *i moves
 * past its value, and TRAINER_FLAGS_TAKEN is returned; anything else returns
 * TRAINER_FLAGS_NOT_MINE and leaves *i alone. A bad or missing value prints one message naming
 * the flag plus "usage: <usage>" and returns TRAINER_FLAGS_ERROR (the command exits 2). */
int trainer_flags_parse(trainer_flags *f, int argc, char **argv, int *i, const char *usage);

/* Splits argv[*i] into its name (written to name[size]) and value (*value: after '=' or the
 * next argument, *i advanced). Returns 0, or prints "FLAG needs a value" + usage and returns 2.
 * For commands' own flags that take a value. */
int trainer_flag_value(int argc, char **argv, int *i, char *name, size_t size, const char **value,
                       const char *usage);
/* Value parsers for commands' own flags: print "FLAG: expected ..., got 'V'" + usage and return
 * 2 on a bad value, 0 otherwise. */
int trainer_flag_long(const char *flag, const char *v, long min, long *out, const char *usage);
int trainer_flag_double(const char *flag, const char *v, double min, double max, double *out, const char *usage);

/* Prints the common flags' help, one line each, with the defaults found in `defaults` (the
 * command's defaults before parsing). */
void trainer_flags_print_help(const trainer_flags *defaults);

/* The optimizer these flags describe (betas 0.9/0.999 and eps 1e-8 as transformers' AdamW;
 * total_steps left to the trainer). */
void trainer_flags_optim(const trainer_flags *f, optim_params *o);
/* The LoRA configuration (only meaningful when f->lora_rank > 0). */
void trainer_flags_lora(const trainer_flags *f, lora_params *p);
/* Optimizer steps of a run over n_train examples: --steps when given, else
 * epochs * ceil(n_train / (batch * accum)) (at least 1). */
long trainer_flags_total_steps(const trainer_flags *f, long n_train);
/* Checks combinations every trainer refuses (with one message and return 2): no --out, neither
 * or both of --data/--db on a fresh run (data_required), --min-lr above --lr, numbers-changing
 * flags with --resume. */
int trainer_flags_check(const trainer_flags *f, int data_required, const char *usage);

/* A command's own flag at argv[*i]: *name and *value split as trainer_flag_value does. Anything
 * not starting with "--" prints "unexpected argument" + usage and returns 2. */
int trainer_flag_own(int argc, char **argv, int *i, char *name, size_t size, const char **value, const char *usage);

/* ---- the offline preference trainers (dpo, kto): pref_common_params ---- */

/* Their shared own flags: --ref DIR and --truncate keep_start|keep_end|error. Returns
 * TRAINER_FLAGS_TAKEN (set in c), TRAINER_FLAGS_NOT_MINE, or TRAINER_FLAGS_ERROR (printed). */
int trainer_flags_pref_parse(pref_common_params *c, const char *name, const char *value);
/* The common settings these flags describe into c (whose ref_dir and truncate the command's
 * parse set): model, out, data source description (data_desc, which the caller keeps), steps
 * (with --resume and no --steps: 0, the saved value), epochs, batch, accum, optimizer,
 * max_length (0 unless --max-length: the model's context, clamped), val_fraction, seed,
 * eval/save_every (with --resume and no flag: -1, the saved values), LoRA, resume. */
void trainer_flags_pref(const trainer_flags *f, const char *data_desc, pref_common_params *c);
/* --out DIR --resume: the saved run's model and data source into f (the data unless --data/--db
 * were given again; "db:FILE" is a database) and its data format into *format (unless given).
 * *saved = the parsed configuration (the caller deletes it last: f's strings point into it).
 * Prints what is wrong and returns the exit status, 0 when all is well. */
int trainer_flags_pref_resume(trainer_flags *f, const char **format, cJSON **saved);

#endif
