/* chat.h — the REPL (`rlhf chat`): one session, its command table, and the pieces the chat*.c
 * files share. Internal to repl/.
 *
 *   chat.c        the session, the command table (from which /help and completion come), the
 *                 read-dispatch loop, `rlhf chat` itself
 *   chat_parse.c  what an input line means (pure; fuzzed)
 *   chat_gen.c    models, prompts, settings, streaming replies, /compare, /candidates
 *   chat_judge.c  the feedback store: candidates saved with their settings, judgements, blind
 *                 mode, the annotation queue, statistics, import/export, training commands
 * (side-by-side columns: repl/columns.h, shared with `rlhf generate --compare`)
 *
 * A command handler gets the parsed input and returns 0 or a negative RLHF_ERR_* code after
 * printing its own message through chat_fail; the loop counts failures for --bail. */
#ifndef RLHF_REPL_CHAT_H
#define RLHF_REPL_CHAT_H

#include <stdint.h>

#include "feedback/store.h"
#include "repl/chat_parse.h"
#include "repl/line_read.h"
#include "src/core/rng.h"
#include "src/formats/model_load.h"
#include "src/gen/prompt.h"
#include "src/gen/settings.h"

#define CHAT_MAX_CANDS 26 /* labelled A..Z */

/* One answer on screen, with what it takes to store and regenerate it. */
typedef struct {
    char *text;            /* owned */
    int32_t *ids;          /* (n_ids) owned */
    int n_ids;
    double logprob;
    double ms;             /* wall time of the generation that made it */
    gen_finish finish;
    char *origin;          /* how it was made, for people: "greedy", "sample top_k=40"; owned */
    char *strategy;        /* for the strategy leaderboard: the spec text or strategy; owned */
    char *decoding_json;   /* every setting that regenerates it (keys of the settings table); owned */
    uint64_t seed;         /* its own seed (candidate 0 of a run with this seed) */
    int has_seed;
    char *model;           /* model name in the store; owned (NULL: none) */
    int64_t generation_id; /* 0 until stored */
} chat_cand;

typedef struct chat_loader chat_loader; /* a model loading on a thread (chat_gen.c) */

typedef struct chat_session {
    line_reader *lr;
    int color;               /* ANSI colour on (a terminal, NO_COLOR unset) */
    int bail;                /* --bail: stop a script at its first failing line */
    const char *script;      /* the script's name in messages, NULL when interactive/stdin */
    int quit;

    /* the model */
    model_bundle b;
    gen_packed *packed;      /* b's step weights packed once for every generation (or NULL) */
    int loaded;
    char *model_path, *model_name, *adapter_path;
    chat_loader *loader;     /* the start-up model still loading, or NULL */

    /* the store (opened on first use) */
    store *db;
    char *db_path;
    char *reward_path;       /* the reward model the last /train reward made (ppo/grpo use it), or NULL */
    char *annotator, *guideline_version, *guideline_text, *comment;

    /* decoding */
    gen_settings settings;
    gen_presets presets;

    /* the prompt */
    char *system, *instruction;
    prompt_example *shots;   /* (n_shots) strings owned */
    int n_shots, cap_shots;
    prompt_message *history; /* (n_history) finished turns of the conversation; strings owned */
    int n_history, cap_history;
    int chat_mode;           /* -1: chat when the model has a chat template; 0 off; 1 on */
    char *input;             /* the current prompt (what /regen, /compare, /candidates answer) */

    /* candidates on screen */
    chat_cand cands[CHAT_MAX_CANDS];
    int n_cands;
    int blind;               /* -1 auto (on when origins differ), 0 off, 1 on */
    int hidden;              /* origins of the shown candidates are hidden */
    int judged;              /* a judgement was saved for the shown candidates */
    int64_t prompt_id;       /* their prompt in the store, 0 until stored */
    char *prompt_text, *prompt_messages_json, *prompt_examples_json, *prompt_template; /* owned */
    int from_queue;          /* the candidates came from /next */
    int reply_index;         /* the candidate that continues the conversation (best judged) */
    rng_t shuffle;
} chat_session;

/* ---- chat.c ---- */
typedef int (*chat_handler)(chat_session *s, const chat_input *in);
typedef enum {
    CHAT_COMPLETE_NONE = 0,
    CHAT_COMPLETE_FILE,     /* file names */
    CHAT_COMPLETE_SETTING,  /* a setting key, then its values (strategy) */
    CHAT_COMPLETE_PRESET,   /* a preset name */
    CHAT_COMPLETE_WORDS,    /* the words of `words` (first argument) */
    CHAT_COMPLETE_COMMAND,  /* a command name (/help) */
    CHAT_COMPLETE_MODEL,    /* /model: subcommands, then files or model names */
    CHAT_COMPLETE_LABEL,    /* candidate labels */
} chat_completer;

typedef struct {
    const char *name;     /* without '/' */
    const char *usage;    /* "/set KEY VALUE" */
    const char *help;     /* one line */
    chat_handler handler;
    chat_completer completer;
    const char *words;    /* CHAT_COMPLETE_WORDS / MODEL: space-separated choices */
} chat_command;

const chat_command *chat_commands(int *n);
/* Prints "rlhf: [SCRIPT:LINE: ]message" and returns code (RLHF_ERR_INVALID when 0). */
int chat_fail(chat_session *s, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int chat_fail_err(chat_session *s, const rlhf_error *err);
/* Colour escapes when colour is on, "" otherwise. */
const char *chat_dim(const chat_session *s);
const char *chat_bold(const chat_session *s);
const char *chat_reset(const chat_session *s);
/* Runs one input line (what the loop does for each line read). */
int chat_execute(chat_session *s, const char *line);
int chat_session_init(chat_session *s, rlhf_error *err);
void chat_session_free(chat_session *s);

/* ---- chat_gen.c ---- */
int chat_model_load(chat_session *s, const char *path, const char *adapter);
/* Starts loading on a thread (start-up on a terminal: the prompt shows at once); the next
 * chat_execute (or chat_model_wait) joins it and installs the model. */
int chat_model_load_async(chat_session *s, const char *path, const char *adapter);
/* Joins a pending start-up load (no-op without one): 0, or the load's error after printing. */
int chat_model_wait(chat_session *s);
void chat_cands_clear(chat_session *s);
/* The settings that regenerate candidate `candidate_index` of a generation with params p (JSON,
 * the caller frees): the keys of the settings table that mean something for its strategy, with
 * its own seed. Stored with every generation (the REPL's and rlhf annotate's). */
char *chat_decoding_json(const gen_params *p, uint64_t seed, int add_bos, int candidate_index);
int chat_prompt(chat_session *s, const char *text);  /* a plain line: stream a reply */
int chat_cmd_regen(chat_session *s, const chat_input *in);
int chat_cmd_compare(chat_session *s, const chat_input *in);
int chat_cmd_candidates(chat_session *s, const chat_input *in);
int chat_cmd_prompt(chat_session *s, const chat_input *in);
int chat_cmd_set(chat_session *s, const chat_input *in);
int chat_cmd_settings(chat_session *s, const chat_input *in);
int chat_cmd_strategy(chat_session *s, const chat_input *in);
int chat_cmd_model(chat_session *s, const chat_input *in);
int chat_cmd_adapter(chat_session *s, const chat_input *in);
int chat_cmd_show(chat_session *s, const chat_input *in);
int chat_cmd_reset(chat_session *s, const chat_input *in); /* in may be NULL: silent */
int chat_cmd_system(chat_session *s, const chat_input *in);
int chat_cmd_instruction(chat_session *s, const chat_input *in);
int chat_cmd_shot(chat_session *s, const chat_input *in);
int chat_cmd_shots(chat_session *s, const chat_input *in);
int chat_cmd_chat(chat_session *s, const chat_input *in);
/* Shows the candidates side by side (origins unless hidden). */
void chat_show_cands(chat_session *s);

/* ---- chat_judge.c ---- */
int chat_store_open(chat_session *s);
int chat_cmd_rank(chat_session *s, const chat_input *in);
int chat_rank_text(chat_session *s, const char *spec);
int chat_cmd_pair(chat_session *s, const chat_input *in); /* /prefer /tie /bothbad */
int chat_cmd_rate(chat_session *s, const chat_input *in);
int chat_cmd_flag(chat_session *s, const chat_input *in);
int chat_cmd_comment(chat_session *s, const chat_input *in);
int chat_cmd_skip(chat_session *s, const chat_input *in);
int chat_cmd_undo(chat_session *s, const chat_input *in);
int chat_cmd_annotator(chat_session *s, const chat_input *in);
int chat_cmd_guideline(chat_session *s, const chat_input *in);
int chat_cmd_blind(chat_session *s, const chat_input *in);
int chat_cmd_next(chat_session *s, const chat_input *in);
int chat_cmd_progress(chat_session *s, const chat_input *in);
int chat_cmd_stats(chat_session *s, const chat_input *in);
int chat_cmd_leaderboard(chat_session *s, const chat_input *in);
int chat_cmd_import(chat_session *s, const chat_input *in);
int chat_cmd_export(chat_session *s, const chat_input *in);
int chat_cmd_models(chat_session *s, const chat_input *in);
int chat_cmd_train(chat_session *s, const chat_input *in);
int chat_cmd_runs(chat_session *s, const chat_input *in);
int chat_cmd_run(chat_session *s, const chat_input *in);
/* After new candidates: hide origins and shuffle when blind mode applies. */
void chat_blind_apply(chat_session *s);

/* ---- chat_train.c ---- */
/* Runs `rlhf ARGV...` (this executable) as a child and waits: its exit status, 128 + signal, or
 * -1 if it could not start; stdout_path (or NULL: inherited) receives its standard output. */
int chat_run_self(char **argv, const char *stdout_path);

#endif
