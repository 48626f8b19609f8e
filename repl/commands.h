/* commands.h — the handlers behind `rlhf CMD`.
 *
 * Each handler gets argv with argv[0] = the command name and returns the process exit status
 * (0 success, 1 failure of the work, 2 bad usage). Handlers print through repl/out.h only. */
#ifndef RLHF_REPL_COMMANDS_H
#define RLHF_REPL_COMMANDS_H

typedef int (*command_fn)(int argc, char **argv);

typedef struct {
    const char *name;  /* what the user types after `rlhf` */
    const char *usage; /* one line: "rlhf NAME [flags]" */
    const char *help;  /* one sentence for `rlhf help` */
    command_fn handler;
} command;

/* Looks a command up in the top-level table; NULL if unknown. */
const command *command_find(const char *name);
/* Prints "usage: ..." for the named command to stderr and returns 2. */
int command_usage_error(const char *name);
/* For commands not built yet: says so plainly and returns 2. */
int command_not_implemented(const char *name);
/* For a command whose handler is not built yet: --help prints its usage (exit 0), anything
 * else says it is not implemented (exit 2). */
int command_placeholder(int argc, char **argv);
/* 1 if argv has -h or --help anywhere (handlers print their help and return 0). */
int command_wants_help(int argc, char **argv);

/* repl/cmd_model.c */
int cmd_model(int argc, char **argv);
int cmd_loss(int argc, char **argv);
int cmd_logits(int argc, char **argv);
/* repl/cmd_pretrain.c */
int cmd_pretrain(int argc, char **argv);
/* repl/cmd_tokenize.c */
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
/* repl/cmd_db.c */
int cmd_db(int argc, char **argv);
/* repl/cmd_generate.c */
int cmd_generate(int argc, char **argv);
/* repl/chat.c */
int cmd_chat(int argc, char **argv);
/* repl/cmd_sft.c */
int cmd_sft(int argc, char **argv);
/* repl/cmd_world.c */
int cmd_world(int argc, char **argv);
/* repl/cmd_runs.c */
int cmd_runs(int argc, char **argv);
/* repl/cmd_dpo.c */
int cmd_dpo(int argc, char **argv);
/* repl/cmd_kto.c */
int cmd_kto(int argc, char **argv);
/* repl/cmd_eval.c */
int cmd_eval(int argc, char **argv);
/* repl/cmd_grpo.c (grpo and rloo) */
int cmd_grpo(int argc, char **argv);
/* repl/cmd_ppo.c */
int cmd_ppo(int argc, char **argv);
/* repl/cmd_reward.c */
int cmd_reward(int argc, char **argv);
int cmd_score(int argc, char **argv);
/* repl/cmd_classify.c */
int cmd_classify(int argc, char **argv);
/* repl/cmd_annotate.c */
int cmd_annotate(int argc, char **argv);
/* repl/cmd_loop.c */
int cmd_loop(int argc, char **argv);

#endif
