/* main.c — the `rlhf` executable: one table of subcommands, from which `rlhf help` is printed.
 *
 * Commands that later issues will build are listed with their planned usage and answer
 * plainly that they are not implemented yet, so the surface a user sees is honest. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "repl/commands.h"
#include "repl/out.h"
#include "src/core/blas_kernel.h"

#include <cblas.h>

static int cmd_help(int argc, char **argv);
static int cmd_version(int argc, char **argv);
static int cmd_planned(int argc, char **argv) { return command_placeholder(argc, argv); }

static const command g_commands[] = {
    {"chat", "rlhf chat [--model PATH] [--db FILE] [--script FILE] [--bail]", "interactive REPL: chat, few-shot, compare strategies, rank candidates", cmd_chat},
    {"generate", "rlhf generate --model PATH (--prompt TEXT | --prompt-file FILE | --prompt-ids \"ID ...\") [--strategy S] [--json]", "generate from a model with any decoding strategy", cmd_generate},
    {"tokenize", "rlhf tokenize --tokenizer PATH [--ids|--pieces] [--special]", "text on stdin to token ids or pieces", cmd_tokenize},
    {"detokenize", "rlhf detokenize --tokenizer PATH", "token ids on stdin to text", cmd_detokenize},
    {"tokenizer", "rlhf tokenizer train --vocab-size N [--special TOK ...] CORPUS... --out tokenizer.json", "train a byte-level BPE vocabulary", cmd_tokenizer},
    {"model", "rlhf model new|convert|info ...", "create, convert and inspect model directories", cmd_model},
    {"loss", "rlhf loss --model DIR --tokens \"ID ID ...\" [--grads OUT.safetensors]", "next-token cross-entropy of one sequence (and its gradients)", cmd_loss},
    {"logits", "rlhf logits --model DIR|FILE.bin --tokens \"ID ...\" --json", "logits at every position of one sequence", cmd_logits},
    {"pretrain", "rlhf pretrain --model DIR --data FILE.txt --out DIR [--steps N --batch B --context T --lr LR --resume]", "next-token pre-training on raw text", cmd_pretrain},
    {"sft", "rlhf sft --model DIR (--data FILE.jsonl | --db FILE) --out DIR [--lora-rank R] [--resume]", "supervised fine-tuning on prompt/completion or chat data (completion-only loss, LoRA)", cmd_sft},
    {"classify", "rlhf classify train|eval --model DIR --data FILE.jsonl [--out DIR]", "train or evaluate a sequence classifier", cmd_classify},
    {"reward", "rlhf reward train|eval --model DIR (--data FILE.jsonl | --db FILE) [--out DIR]", "train or evaluate a reward model on preference pairs", cmd_reward},
    {"score", "rlhf score --model RM (--prompt TEXT --response TEXT | --data FILE.jsonl)", "score responses with a reward model", cmd_score},
    {"dpo", "rlhf dpo --model DIR (--data FILE.jsonl | --db FILE) --out DIR [--loss-type T] [--beta B] [--ref DIR]", "direct preference optimisation (DPO, IPO, hinge, robust, RPO) on preference pairs", cmd_dpo},
    {"kto", "rlhf kto --model DIR (--data FILE.jsonl | --db FILE) --out DIR [--beta B] [--desirable-weight W] [--undesirable-weight W]", "KTO: train on unpaired thumbs-up/down judgements (ratings) relative to a reference", cmd_kto},
    {"grpo", "rlhf grpo --model DIR --prompts FILE.jsonl (--reward-fn toy|contains:TEXT | --reward RM_DIR) --out DIR [--num-generations G]", "group-relative policy optimisation with a verifier or a reward model (TRL's GRPO)", cmd_grpo},
    {"rloo", "rlhf rloo --model DIR --prompts FILE.jsonl (--reward-fn toy|contains:TEXT | --reward RM_DIR) --out DIR [--num-generations K]", "REINFORCE leave-one-out with a verifier or a reward model (TRL's RLOO)", cmd_grpo},
    {"ppo", "rlhf ppo --model DIR --reward RM_DIR --prompts FILE.jsonl --out DIR [--target-kl KL]", "PPO against a reward model (TRL's PPOTrainer: KL penalty, GAE, clipped policy and value losses)", cmd_ppo},
    {"eval", "rlhf eval [--model PATH] --tasks toy [--split test] [--n N] [--shots K] [--ref DIR] [--json]", "per-family accuracy, P/R/F1, BLEU, unwanted-behaviour rates, perplexity on the task world", cmd_eval},
    {"annotate", "rlhf annotate --oracle [--prompts N] [--candidates K] [--noise P] [--model DIR] [--db FILE] [--seed S]", "a simulated annotator: the verifier ranks the model's candidates, stored as a person's rankings", cmd_annotate},
    {"loop", "rlhf loop [--model SFT_DIR] --out DIR [--rounds 1|2] [--families LIST] [--prompts N] ...", "the closed feedback loop: oracle rankings, reward model, DPO/GRPO/PPO, evaluation before and after", cmd_loop},
    {"world", "rlhf world [--family NAME|all|stories] [--split S] [--n N] [--format sft|prompts|text] | verify | families", "the task world: checkable instruction data, its verifier, narrative text", cmd_world},
    {"db", "rlhf db init|migrate|stats|check|import|export|leaderboard|agreement [--db FILE]", "the feedback database", cmd_db},
    {"runs", "rlhf runs [list] | rlhf runs show ID [--svg FILE] [--db FILE]", "training runs recorded in the database: configuration and metric curves", cmd_runs},
    {"version", "rlhf version [--verbose]", "print the version (--verbose: the BLAS kernel and why)", cmd_version},
    {"help", "rlhf help [CMD]", "list commands, or show one command's usage", cmd_help},
};

#define N_COMMANDS (sizeof g_commands / sizeof g_commands[0])

const command *command_find(const char *name) {
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(g_commands[i].name, name) == 0) return &g_commands[i];
    return NULL;
}

int command_usage_error(const char *name) {
    const command *c = command_find(name);
    if (c) out_error("usage: %s", c->usage);
    out_error("run 'rlhf %s --help' for details", name);
    return 2;
}

int command_not_implemented(const char *name) {
    out_error("'%s' is not implemented yet in this version of rlhf.c", name);
    return 2;
}

int command_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) return 1;
    }
    return 0;
}

int command_placeholder(int argc, char **argv) {
    const command *c = command_find(argv[0]);
    if (c && command_wants_help(argc, argv)) {
        out_printf("usage: %s\n  %s (not implemented yet)\n", c->usage, c->help);
        return 0;
    }
    return command_not_implemented(argv[0]);
}

static int is_planned(const command *c) { return c->handler == cmd_planned; }

static int cmd_help(int argc, char **argv) {
    if (argc > 1 && !command_wants_help(argc, argv)) {
        const command *c = command_find(argv[1]);
        if (!c) {
            out_error("unknown command '%s' (see 'rlhf help')", argv[1]);
            return 2;
        }
        out_printf("usage: %s\n  %s%s\n", c->usage, c->help, is_planned(c) ? " (not implemented yet)" : "");
        return 0;
    }
    out_printf("usage: rlhf COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        out_printf("  %-11s %s%s\n", g_commands[i].name, g_commands[i].help,
                   is_planned(&g_commands[i]) ? " (not implemented yet)" : "");
    out_printf("\n'rlhf COMMAND --help' documents each command.\n");
    return 0;
}

/* Set by startup_environment when it forces a kernel: what OpenBLAS had picked by itself. */

static void print_blas_kernel(void) {
    blas_cpu_features f;
    blas_cpu_features_detect(&f);
    const char *running = openblas_get_corename();
    const char *own = getenv(BLAS_ENV_OWN_PICK);
    const char *user = getenv("OPENBLAS_CORETYPE");
    blas_kernel_choice ch;
    out_printf("BLAS: %s\n", openblas_get_config());
    out_printf("kernel: %s\n", running);
    if (own && user && strcmp(user, running) == 0) {
        /* This process was re-executed with our choice: decide again as the first run did. */
        blas_kernel_decide(own, &f, NULL, &ch);
        out_printf("OpenBLAS's own pick: %s\nwhy: %s\n", own, ch.reason);
    } else {
        blas_kernel_decide(running, &f, user, &ch);
        out_printf("why: %s\n", ch.reason);
    }
    out_printf("cpu features:%s%s%s%s%s%s%s%s%s%s\n", f.avx ? " avx" : "", f.avx2 ? " avx2" : "",
               f.fma ? " fma" : "", f.avx512f ? " avx512f" : "", f.avx512bw ? " avx512bw" : "",
               f.avx512vl ? " avx512vl" : "", f.avx512dq ? " avx512dq" : "", f.avx512cd ? " avx512cd" : "",
               f.avx512_bf16 ? " avx512_bf16" : "", f.os_avx512 ? " (the OS saves AVX-512 state)" : "");
}

static int cmd_version(int argc, char **argv) {
    if (command_wants_help(argc, argv)) {
        out_printf("usage: rlhf version [--verbose]\n  print the version; --verbose also says which OpenBLAS\n"
                   "  kernel runs, what OpenBLAS picked by itself, and why\n");
        return 0;
    }
    int verbose = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--verbose") == 0 || strcmp(argv[i], "-v") == 0) verbose = 1;
        else return command_usage_error("version");
    }
    out_printf("rlhf.c %s\n", RLHF_VERSION);
    if (verbose) print_blas_kernel();
    return 0;
}

int main(int argc, char **argv) {
    blas_kernel_startup(argv);
    if (argc < 2 && isatty(STDIN_FILENO) && isatty(STDOUT_FILENO)) return cmd_chat(1, (char *[]){"chat", NULL});
    if (argc < 2) {
        cmd_help(1, argv);
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) return cmd_help(1, argv);
    if (strcmp(name, "--version") == 0) return cmd_version(1, argv);
    const command *c = command_find(name);
    if (!c) {
        out_error("unknown command '%s' (see 'rlhf help')", name);
        return 2;
    }
    return c->handler(argc - 1, argv + 1);
}
