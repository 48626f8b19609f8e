/* test_trainer_flags.c — the common trainer flags (repl/trainer_flags.c): every flag parses into
 * its field in both spellings, bad values and unknown flags are told apart, --help shows the
 * defaults, steps come from epochs, and the combination checks refuse what they promise to. */
#include <stdio.h>
#include <string.h>

#include "repl/out.h"
#include "repl/trainer_flags.h"
#include "test_util.h"

static int parse_all(trainer_flags *f, int argc, char **argv, int *unknown) {
    *unknown = 0;
    for (int i = 0; i < argc; i++) {
        int r = trainer_flags_parse(f, argc, argv, &i, "usage line");
        if (r == TRAINER_FLAGS_ERROR) return r;
        if (r == TRAINER_FLAGS_NOT_MINE) (*unknown)++;
    }
    return 0;
}

int main(void) {
    FILE *sink = tmpfile();
    out_set_sinks(sink, sink);

    trainer_flags f;
    trainer_flags_defaults(&f);
    CHECK(f.lr == 2e-5 && f.batch == 8 && f.epochs == 3 && f.seed == 42 && f.max_length == 1024 && f.lora_rank == 0,
          "TRL-like defaults");

    char *args[] = {"--model", "m", "--data=d.jsonl", "--out", "o", "--lr", "1e-3", "--batch=4", "--accum", "2",
                    "--max-length", "64", "--seed", "7", "--steps", "10", "--resume", "--lora-rank", "4",
                    "--lora-alpha", "16", "--lora-dropout", "0.1", "--lora-targets", "q_proj,k_proj",
                    "--json-log", "l.jsonl", "--show-mask", "--val-fraction", "0.25", "--runs-db", "r.db"};
    int argc = (int)(sizeof args / sizeof args[0]), unknown;
    CHECK(parse_all(&f, argc, args, &unknown) == 0, "a valid command line parses");
    CHECK(unknown == 1, "only --show-mask is left to the command (%d)", unknown);
    CHECK(strcmp(f.model, "m") == 0 && strcmp(f.data, "d.jsonl") == 0 && strcmp(f.out, "o") == 0, "strings");
    CHECK(f.lr == 1e-3 && f.batch == 4 && f.accum == 2 && f.max_length == 64 && f.seed == 7 && f.steps == 10,
          "numbers in both spellings");
    CHECK(f.resume == 1 && f.lora_rank == 4 && f.lora_alpha == 16 && f.lora_dropout == 0.1 &&
              strcmp(f.lora_targets, "q_proj,k_proj") == 0 && strcmp(f.json_log, "l.jsonl") == 0 &&
              f.val_fraction == 0.25 && strcmp(f.runs_db, "r.db") == 0,
          "resume, LoRA, log, split, runs db");
    CHECK((f.given & TRAINER_FLAG_STEPS) && (f.given & TRAINER_FLAG_LORA) && (f.given & TRAINER_FLAG_SHAPE),
          "given bits");
    CHECK(trainer_flags_check(&f, 1, "u") == TRAINER_FLAGS_ERROR, "--resume with numbers-changing flags is refused");

    lora_params lp;
    trainer_flags_lora(&f, &lp);
    CHECK(lp.rank == 4 && lp.alpha == 16.0f && strcmp(lp.targets, "q_proj,k_proj") == 0, "lora params");
    optim_params op;
    trainer_flags_optim(&f, &op);
    CHECK(op.lr == 1e-3f && op.beta2 == 0.999f && op.weight_decay == 0.0f && op.grad_clip == 1.0f, "optim params");

    /* Bad values: each is an error, not a silently ignored flag. */
    const char *bad[][2] = {{"--lr", "abc"}, {"--batch", "0"}, {"--val-fraction", "1.5"}, {"--seed", "-1"},
                            {"--max-length", "1"}, {"--lora-dropout", "1"}, {"--steps", "x"}, {"--out", ""}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        trainer_flags g;
        trainer_flags_defaults(&g);
        char *a[] = {(char *)bad[k][0], (char *)bad[k][1]};
        int i = 0;
        CHECK(trainer_flags_parse(&g, 2, a, &i, "u") == TRAINER_FLAGS_ERROR, "%s %s is refused", bad[k][0], bad[k][1]);
    }
    {
        trainer_flags g;
        trainer_flags_defaults(&g);
        char *a[] = {"--lr"};
        int i = 0;
        CHECK(trainer_flags_parse(&g, 1, a, &i, "u") == TRAINER_FLAGS_ERROR, "a missing value is refused");
        char *b[] = {"--lrx", "1"};
        CHECK(trainer_flags_parse(&g, 2, b, &i, "u") == TRAINER_FLAGS_NOT_MINE && i == 0, "a prefix is not a match");
    }

    /* Steps from epochs: ceil(n / (batch * accum)) per epoch. */
    trainer_flags e;
    trainer_flags_defaults(&e);
    e.batch = 4;
    e.accum = 2;
    e.epochs = 3;
    CHECK(trainer_flags_total_steps(&e, 17) == 9, "17 examples, 8 per step, 3 epochs: 9 steps (%ld)",
          trainer_flags_total_steps(&e, 17));
    CHECK(trainer_flags_total_steps(&e, 0) == 3, "at least one step per epoch");
    e.steps = 5;
    CHECK(trainer_flags_total_steps(&e, 17) == 5, "--steps wins");

    /* Combination checks. */
    trainer_flags c;
    trainer_flags_defaults(&c);
    c.out = "o";
    c.model = "m";
    CHECK(trainer_flags_check(&c, 1, "u") == TRAINER_FLAGS_ERROR, "no data is refused");
    c.data = "d";
    c.db = "x";
    CHECK(trainer_flags_check(&c, 1, "u") == TRAINER_FLAGS_ERROR, "--data and --db together are refused");
    c.db = NULL;
    CHECK(trainer_flags_check(&c, 1, "u") == 0, "model, data, out: fine");
    c.min_lr = 1;
    CHECK(trainer_flags_check(&c, 1, "u") == TRAINER_FLAGS_ERROR, "min-lr above lr is refused");

    /* Help lists every flag with the command's defaults. */
    FILE *h = tmpfile();
    out_set_sinks(h, h);
    trainer_flags d;
    trainer_flags_defaults(&d);
    d.lr = 1e-6;
    trainer_flags_print_help(&d);
    long n = ftell(h);
    rewind(h);
    char buf[8192];
    size_t got = fread(buf, 1, sizeof buf - 1, h);
    buf[got] = 0;
    CHECK(n > 0 && strstr(buf, "--lr LR") && strstr(buf, "(default 1e-06)") && strstr(buf, "--lora-targets LIST") &&
              strstr(buf, "(default from --epochs)") && strstr(buf, "--resume "),
          "help shows the flags and the command's defaults:\n%s", buf);
    fclose(h);
    fclose(sink);
    return test_finish("trainer_flags");
}
