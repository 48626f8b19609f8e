/* chat.c — the REPL session, its command table and loop, and `rlhf chat` (see chat.h).
 *
 * Every command is one row of g_table: /help and tab completion are generated from it, and a
 * mistyped name is answered with the row nearest to it. */
#include "repl/chat.h"
#include "repl/default_model.h"

#include <getopt.h>
#include <locale.h>
#include <langinfo.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "repl/commands.h"
#include "repl/out.h"

/* handlers kept here: they only touch session state */
static int cmd_help(chat_session *s, const chat_input *in);
static int cmd_quit(chat_session *s, const chat_input *in);

static const chat_command g_table[] = {
    {"help", "/help [COMMAND]", "list the commands, or explain one", cmd_help, CHAT_COMPLETE_COMMAND, NULL},
    {"quit", "/quit", "leave the REPL (also Ctrl-D, /exit)", cmd_quit, CHAT_COMPLETE_NONE, NULL},
    {"model", "/model load PATH | info | use NAME", "load a model (directory, .bin or .gguf), describe it, or load one of /models by name",
     chat_cmd_model, CHAT_COMPLETE_MODEL, "load info use"},
    {"models", "/models", "the models registered in the database", chat_cmd_models, CHAT_COMPLETE_NONE, NULL},
    {"adapter", "/adapter load DIR", "merge a LoRA adapter (PEFT directory) into the loaded model", chat_cmd_adapter,
     CHAT_COMPLETE_WORDS, "load"},
    {"reset", "/reset", "forget the conversation (shots, system and settings stay)", chat_cmd_reset, CHAT_COMPLETE_NONE, NULL},
    {"system", "/system [TEXT]", "set the system message of chat prompts (no TEXT: clear it)", chat_cmd_system,
     CHAT_COMPLETE_NONE, NULL},
    {"chat", "/chat on|off|auto", "keep a conversation through the chat template (auto: when the model has one)",
     chat_cmd_chat, CHAT_COMPLETE_WORDS, "on off auto"},
    {"regen", "/regen", "draw a new reply to the last prompt", chat_cmd_regen, CHAT_COMPLETE_NONE, NULL},
    {"shot", "/shot add INPUT => OUTPUT | rm N", "add a solved example, or remove example N", chat_cmd_shot,
     CHAT_COMPLETE_WORDS, "add rm"},
    {"shots", "/shots [clear | load FILE.jsonl]", "list the examples, clear them, or load {\"input\",\"output\"} lines",
     chat_cmd_shots, CHAT_COMPLETE_WORDS, "clear load"},
    {"instruction", "/instruction [TEXT]", "task description written before the examples (no TEXT: clear it)",
     chat_cmd_instruction, CHAT_COMPLETE_NONE, NULL},
    {"prompt", "/prompt [TEXT]", "show the exact text and token count sent for TEXT (default: the last prompt)",
     chat_cmd_prompt, CHAT_COMPLETE_NONE, NULL},
    {"set", "/set KEY VALUE", "set a decoding setting (VALUE default unsets it); keys as in /settings", chat_cmd_set,
     CHAT_COMPLETE_SETTING, NULL},
    {"settings", "/settings", "the decoding settings in force", chat_cmd_settings, CHAT_COMPLETE_NONE, NULL},
    {"strategy", "/strategy NAME | NAME = SPEC", "use a preset (greedy, beam, balanced, creative), or define one",
     chat_cmd_strategy, CHAT_COMPLETE_PRESET, NULL},
    {"compare", "/compare SPEC; SPEC; ...", "run the prompt through each spec; answers side by side become candidates",
     chat_cmd_compare, CHAT_COMPLETE_PRESET, NULL},
    {"candidates", "/candidates N", "draw N candidates (A, B, ...) with the current settings in one batched pass",
     chat_cmd_candidates, CHAT_COMPLETE_NONE, NULL},
    {"show", "/show", "show the candidates again", chat_cmd_show, CHAT_COMPLETE_NONE, NULL},
    {"rank", "/rank B > A = C > D", "rank the candidates (ties with =); a bare B>A>C works too", chat_cmd_rank,
     CHAT_COMPLETE_LABEL, NULL},
    {"prefer", "/prefer A B", "A is better than B", chat_cmd_pair, CHAT_COMPLETE_LABEL, NULL},
    {"tie", "/tie A B", "A and B are equally good", chat_cmd_pair, CHAT_COMPLETE_LABEL, NULL},
    {"bothbad", "/bothbad A B", "neither A nor B is acceptable", chat_cmd_pair, CHAT_COMPLETE_LABEL, NULL},
    {"rate", "/rate A SCORE [LABEL ...]", "rate a candidate 1-5, optionally with labels", chat_cmd_rate,
     CHAT_COMPLETE_LABEL, NULL},
    {"flag", "/flag A LABEL [LABEL ...]", "flag a candidate: unsafe, incorrect, off-topic, ...", chat_cmd_flag,
     CHAT_COMPLETE_LABEL, NULL},
    {"comment", "/comment TEXT", "a comment saved with the next judgement", chat_cmd_comment, CHAT_COMPLETE_NONE, NULL},
    {"skip", "/skip [REASON]", "skip this prompt (recorded)", chat_cmd_skip, CHAT_COMPLETE_NONE, NULL},
    {"undo", "/undo", "undo your last judgement (in the database)", chat_cmd_undo, CHAT_COMPLETE_NONE, NULL},
    {"annotator", "/annotator [NAME]", "who is judging (default: the login name)", chat_cmd_annotator,
     CHAT_COMPLETE_NONE, NULL},
    {"guideline", "/guideline FILE", "the guideline saved with each judgement (its file name is the version)",
     chat_cmd_guideline, CHAT_COMPLETE_FILE, NULL},
    {"blind", "/blind on|off|auto", "hide and shuffle candidates' origins until judged (auto: when origins differ)",
     chat_cmd_blind, CHAT_COMPLETE_WORDS, "on off auto"},
    {"next", "/next", "the next stored prompt whose candidates you have not judged", chat_cmd_next,
     CHAT_COMPLETE_NONE, NULL},
    {"progress", "/progress", "how many queued prompts you have judged, and how many are left", chat_cmd_progress,
     CHAT_COMPLETE_NONE, NULL},
    {"stats", "/stats", "what the database holds, and annotator agreement", chat_cmd_stats, CHAT_COMPLETE_NONE, NULL},
    {"leaderboard", "/leaderboard [models|strategies]", "Bradley-Terry ratings from every judgement", chat_cmd_leaderboard,
     CHAT_COMPLETE_WORDS, "models strategies"},
    {"import", "/import [--format trl|hh|sft] FILE.jsonl", "import judgements or demonstrations", chat_cmd_import,
     CHAT_COMPLETE_FILE, NULL},
    {"export", "/export [--format trl|hh|sft] FILE.jsonl", "export preference pairs or SFT data (atomic write)",
     chat_cmd_export, CHAT_COMPLETE_FILE, NULL},
    {"train", "/train sft|dpo|kto|reward|ppo|grpo|rloo [--out DIR] [FLAGS]", "train on the stored feedback and load the result",
     chat_cmd_train, CHAT_COMPLETE_WORDS, "sft dpo grpo rloo reward ppo kto"},
    {"runs", "/runs", "training runs recorded in the database", chat_cmd_runs, CHAT_COMPLETE_NONE, NULL},
    {"run", "/run show ID", "one run's metrics as a chart", chat_cmd_run, CHAT_COMPLETE_WORDS, "show"},
};
#define N_TABLE ((int)(sizeof g_table / sizeof g_table[0]))

const chat_command *chat_commands(int *n) {
    *n = N_TABLE;
    return g_table;
}

static const chat_command *find_command(const char *name) {
    if (strcmp(name, "exit") == 0 || strcmp(name, "q") == 0) name = "quit";
    if (strcmp(name, "h") == 0 || strcmp(name, "?") == 0) name = "help";
    for (int i = 0; i < N_TABLE; i++)
        if (strcmp(g_table[i].name, name) == 0) return &g_table[i];
    return NULL;
}

/* ---- messages ---- */

int chat_fail(chat_session *s, int code, const char *fmt, ...) {
    char msg[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (s->lr && !line_read_interactive(s->lr))
        out_error("%s:%d: %s", s->script ? s->script : "stdin", line_read_line_no(s->lr), msg);
    else
        out_error("%s", msg);
    return code ? code : RLHF_ERR_INVALID;
}

int chat_fail_err(chat_session *s, const rlhf_error *err) {
    return chat_fail(s, err->code ? err->code : RLHF_ERR_INVALID, "%s",
                     err->msg[0] ? err->msg : rlhf_strerror(err->code));
}

const char *chat_dim(const chat_session *s) { return s->color ? "\033[2m" : ""; }
const char *chat_bold(const chat_session *s) { return s->color ? "\033[1m" : ""; }
const char *chat_reset(const chat_session *s) { return s->color ? "\033[0m" : ""; }

/* ---- help ---- */

static int cmd_help(chat_session *s, const chat_input *in) {
    if (in->n_words > 0) {
        const char *name = in->words[0][0] == '/' ? in->words[0] + 1 : in->words[0];
        const chat_command *c = find_command(name);
        if (!c) return chat_fail(s, RLHF_ERR_NOT_FOUND, "no command '/%s' (see /help)", name);
        out_printf("%s\n  %s\n", c->usage, c->help);
        if (strcmp(c->name, "set") == 0) {
            char *txt = NULL;
            rlhf_error err = {0};
            if (gen_settings_help(&txt, &err) == 0) out_printf("keys (as flags of rlhf generate):\n%s", txt);
            free(txt);
        }
        return 0;
    }
    out_printf("A line that is not a command is a prompt. Commands:\n");
    for (int i = 0; i < N_TABLE; i++) out_printf("  %-40s %s\n", g_table[i].usage, g_table[i].help);
    out_printf("Multi-line input: end a line with \\ to continue it, or put the text between two lines \"\"\".\n"
               "Ctrl-C stops a generation; Ctrl-D (or /quit) leaves.\n");
    return 0;
}

static int cmd_quit(chat_session *s, const chat_input *in) {
    (void)in;
    s->quit = 1;
    return 0;
}

/* ---- completion ---- */

typedef struct {
    char **v;
    size_t n, cap;
} strlist;

static void sl_add(strlist *l, const char *s) {
    if (l->n + 2 > l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        char **g = realloc(l->v, cap * sizeof *g);
        if (!g) return;
        l->v = g;
        l->cap = cap;
    }
    char *d = strdup(s);
    if (!d) return;
    l->v[l->n++] = d;
    l->v[l->n] = NULL;
}

static void sl_words(strlist *l, const char *words) {
    while (words && *words) {
        size_t n = strcspn(words, " ");
        char w[64];
        snprintf(w, sizeof w, "%.*s", (int)(n < 63 ? n : 63), words);
        sl_add(l, w);
        words += n;
        while (*words == ' ') words++;
    }
}

static int add_model_name(void *ctx, const store_model_info *m) {
    sl_add(ctx, m->name);
    return 0;
}

static char **complete(void *user, const char *line, int start, const char *word, int *files) {
    chat_session *s = user;
    (void)start;
    strlist l = {0};
    chat_input in;
    if (chat_input_parse(&in, line, NULL) != 0) return NULL;
    if (in.kind == CHAT_INPUT_EMPTY) {
        if (word[0] == '/')
            for (int i = 0; i < N_TABLE; i++) {
                char w[48];
                snprintf(w, sizeof w, "/%s", g_table[i].name);
                sl_add(&l, w);
            }
        chat_input_free(&in);
        return l.v;
    }
    if (in.kind != CHAT_INPUT_COMMAND) {
        chat_input_free(&in);
        return NULL;
    }
    const chat_command *c = find_command(in.name);
    int arg = in.n_words; /* index of the word being completed */
    const char *first = in.n_words > 0 ? in.words[0] : "";
    if (c) switch (c->completer) {
        case CHAT_COMPLETE_FILE: *files = 1; break;
        case CHAT_COMPLETE_COMMAND:
            if (arg == 0)
                for (int i = 0; i < N_TABLE; i++) sl_add(&l, g_table[i].name);
            break;
        case CHAT_COMPLETE_SETTING: {
            int n;
            const gen_setting *t = gen_settings_table(&n);
            if (arg == 0) {
                for (int i = 0; i < n; i++) sl_add(&l, t[i].key);
            } else if (arg == 1) {
                const gen_setting *g = gen_setting_find(first, strlen(first));
                if (g && g->type == GEN_SETTING_TYPE_CHOICE) sl_words(&l, "greedy sample beam");
                else if (g && g->type == GEN_SETTING_TYPE_BOOL) sl_words(&l, "on off");
                if (g) sl_add(&l, "default");
            }
            break;
        }
        case CHAT_COMPLETE_PRESET:
            for (int i = 0; i < s->presets.n; i++) sl_add(&l, s->presets.items[i].name);
            if (strcmp(c->name, "compare") == 0) {
                int n;
                const gen_setting *t = gen_settings_table(&n);
                sl_words(&l, "sample");
                for (int i = 0; i < n; i++) {
                    char w[48];
                    snprintf(w, sizeof w, "%s=", t[i].key);
                    sl_add(&l, w);
                }
            }
            break;
        case CHAT_COMPLETE_WORDS:
        case CHAT_COMPLETE_MODEL:
            if (arg == 0) sl_words(&l, c->words);
            else if (arg == 1 && (strcmp(first, "load") == 0)) *files = 1;
            else if (arg == 1 && c->completer == CHAT_COMPLETE_MODEL && strcmp(first, "use") == 0 && s->db)
                store_models_each(s->db, add_model_name, &l, NULL); /* the registry, if open */
            break;
        case CHAT_COMPLETE_LABEL:
            for (int i = 0; i < s->n_cands; i++) {
                char w[2] = {(char)('A' + i), 0};
                sl_add(&l, w);
            }
            break;
        case CHAT_COMPLETE_NONE: break;
        }
    chat_input_free(&in);
    return l.v;
}

/* ---- the session ---- */

static char *login_name(void) {
    const char *u = getenv("USER");
    if (!u || !*u) u = getlogin();
    return strdup(u && *u ? u : "user");
}

int chat_session_init(chat_session *s, rlhf_error *err) {
    memset(s, 0, sizeof *s);
    s->chat_mode = -1;
    s->blind = -1;
    gen_settings_init(&s->settings);
    int rc = gen_presets_init(&s->presets, err);
    if (rc) return rc;
    s->annotator = login_name();
    if (!s->annotator) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    /* the blind shuffle must not be predictable from the session; a test may pin it */
    const char *pin = getenv("RLHF_CHAT_SHUFFLE_SEED");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t seed = pin ? strtoull(pin, NULL, 10) : ((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid());
    rng_seed(&s->shuffle, seed);
    return 0;
}

void chat_session_free(chat_session *s) {
    chat_model_wait(s);
    chat_cands_clear(s);
    gen_packed_free(&s->packed);
    model_bundle_free(&s->b);
    store_close(&s->db);
    gen_settings_free(&s->settings);
    gen_presets_free(&s->presets);
    for (int i = 0; i < s->n_shots; i++) {
        free((char *)s->shots[i].input);
        free((char *)s->shots[i].output);
    }
    free(s->shots);
    for (int i = 0; i < s->n_history; i++) {
        free((char *)s->history[i].role);
        free((char *)s->history[i].content);
    }
    free(s->history);
    free(s->model_path);
    free(s->model_name);
    free(s->adapter_path);
    free(s->reward_path);
    free(s->db_path);
    free(s->annotator);
    free(s->guideline_version);
    free(s->guideline_text);
    free(s->comment);
    free(s->system);
    free(s->instruction);
    free(s->input);
    line_read_close(&s->lr);
    memset(s, 0, sizeof *s);
}

int chat_execute(chat_session *s, const char *line) {
    chat_input in;
    rlhf_error err = {0};
    if (s->loader) chat_model_wait(s); /* a failed load is reported; the input still runs */
    if (chat_input_parse(&in, line, &err)) return chat_fail_err(s, &err);
    int rc = 0;
    switch (in.kind) {
    case CHAT_INPUT_EMPTY: break;
    case CHAT_INPUT_RANKING:
        if (s->n_cands >= 2) {
            rc = chat_rank_text(s, in.rest);
            break;
        }
        rc = chat_fail(s, RLHF_ERR_INVALID, "'%s' is a ranking, but no candidates are shown (/candidates N, /compare "
                                            "SPECS or /next first)", in.rest);
        break;
    case CHAT_INPUT_PROMPT: rc = chat_prompt(s, in.rest); break;
    case CHAT_INPUT_COMMAND: {
        const chat_command *c = find_command(in.name);
        if (c) {
            rc = c->handler(s, &in);
            break;
        }
        int best = -1, best_d = 1 << 20;
        for (int i = 0; i < N_TABLE; i++) {
            int d = chat_edit_distance(in.name, g_table[i].name);
            /* a prefix is the likeliest intent ("/cand" for /candidates) */
            if (in.name[0] && strncmp(g_table[i].name, in.name, strlen(in.name)) == 0) d = 0;
            if (d < best_d) best_d = d, best = i;
        }
        if (!in.name[0]) rc = chat_fail(s, RLHF_ERR_INVALID, "a command name follows '/' (see /help)");
        else if (best >= 0 && best_d <= 3)
            rc = chat_fail(s, RLHF_ERR_NOT_FOUND, "unknown command '/%s'; did you mean %s? (%s)", in.name,
                           g_table[best].usage, g_table[best].help);
        else rc = chat_fail(s, RLHF_ERR_NOT_FOUND, "unknown command '/%s' (see /help)", in.name);
        break;
    }
    }
    chat_input_free(&in);
    return rc;
}

/* ---- `rlhf chat` ---- */

static const char *const USAGE = "rlhf chat [--model PATH] [--adapter DIR] [--db FILE] [--annotator NAME] "
                                 "[--script FILE] [--bail] [--echo]";

static void print_usage(void) {
    out_printf("usage: %s\n\n"
               "The REPL: chat with a model, prompt it few-shot, compare decoding strategies side by side,\n"
               "rank candidate answers (saved at once in the feedback database) and train on them.\n\n"
               "  -m, --model PATH    load a model at start (/model load PATH later)\n"
               "      --adapter DIR   merge a LoRA adapter into it\n"
               "      --db FILE       the feedback database (default $RLHF_DB, else rlhf.db here)\n"
               "      --annotator N   who judges (default: the login name)\n"
               "      --script FILE   run the commands of FILE (plain output), then exit\n"
               "      --bail          stop a script at its first failing line (exit 1)\n"
               "      --echo          print each script line after \"> \" before running it (transcripts)\n\n"
               "Commands on a non-terminal standard input run as a script. Inside, /help lists\n"
               "every command. Exit status of a script: 0, or 1 when a line failed.\n",
               USAGE);
}

static void setup_locale(void) {
    /* readline needs a UTF-8 locale to edit multi-byte text and wcwidth to measure it */
    if (!setlocale(LC_CTYPE, "") || strcmp(nl_langinfo(CODESET), "UTF-8") != 0) setlocale(LC_CTYPE, "C.UTF-8");
}

int cmd_chat(int argc, char **argv) {
    if (command_wants_help(argc, argv)) {
        print_usage();
        return 0;
    }
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"adapter", required_argument, 0, 'a'},
        {"db", required_argument, 0, 'd'},    {"script", required_argument, 0, 's'},
        {"bail", no_argument, 0, 'b'},        {"annotator", required_argument, 0, 'n'},
        {"echo", no_argument, 0, 'e'},
        {0, 0, 0, 0},
    };
    const char *model = NULL, *adapter = NULL, *db = NULL, *script = NULL, *annotator = NULL;
    int bail = 0, echo = 0, c;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'a': adapter = optarg; break;
        case 'd': db = optarg; break;
        case 's': script = optarg; break;
        case 'b': bail = 1; break;
        case 'e': echo = 1; break;
        case 'n': annotator = optarg; break;
        case ':': out_error("option '%s' needs a value", argv[optind - 1]); return command_usage_error("chat");
        default: out_error("unknown option '%s'", argv[optind - 1]); return command_usage_error("chat");
        }
    }
    if (optind < argc) {
        out_error("unexpected argument '%s'", argv[optind]);
        return command_usage_error("chat");
    }
    if (adapter && !model) {
        out_error("--adapter needs --model");
        return command_usage_error("chat");
    }
    setup_locale();
    FILE *in = stdin;
    if (script && !(in = fopen(script, "r"))) {
        out_error("%s: cannot open the script", script);
        return 1;
    }
    chat_session s;
    rlhf_error err = {0};
    if (chat_session_init(&s, &err)) {
        if (in != stdin) fclose(in);
        return out_fail(&err);
    }
    s.bail = bail;
    s.script = script;
    if (annotator) {
        free(s.annotator);
        s.annotator = strdup(annotator);
    }
    const char *dbp = db ? db : getenv("RLHF_DB");
    s.db_path = strdup(dbp && *dbp ? dbp : "rlhf.db");
    line_read_params lp = {.in = in, .force_plain = script != NULL, .complete = complete, .user = &s};
    int status = 0;
    if (!s.annotator || !s.db_path || line_read_open(&s.lr, &lp, &err)) {
        status = out_fail(&err);
        goto done;
    }
    int interactive = line_read_interactive(s.lr);
    const char *nc = getenv("NO_COLOR");
    s.color = interactive && !(nc && *nc);
    line_read_install_signals();
    if (interactive)
        out_printf("%srlhf chat%s — type a prompt, or /help for commands; Ctrl-D leaves.\n", chat_bold(&s),
                   chat_reset(&s));
    if (!model && (model = default_model_path()) != NULL && interactive)
        out_printf("%sthe built-in default model (%s; --model PATH for another)%s\n", chat_dim(&s), model, chat_reset(&s));
    if (model && (interactive ? chat_model_load_async(&s, model, adapter) : chat_model_load(&s, model, adapter))) {
        if (!interactive) {
            status = 1;
            goto done;
        }
    }
    int failures = 0;
    char prompt[64];
    snprintf(prompt, sizeof prompt, "%s> %s", s.color ? "\001\033[1;36m\002" : "", s.color ? "\001\033[0m\002" : "");
    while (!s.quit) {
        char *line = NULL;
        fflush(out_stream());
        if (!line_read(s.lr, prompt, &line)) {
            if (interactive) out_printf("\n");
            break;
        }
        if (echo && !interactive) {
            out_printf("> ");
            for (const char *p = line; *p; p++) out_printf(*p == '\n' ? "\n... " : "%c", *p);
            out_printf("\n");
            fflush(out_stream()); /* before any message on stderr */
        }
        int rc = chat_execute(&s, line);
        free(line);
        fflush(out_stream());
        if (rc) {
            failures++;
            if (bail && !interactive) break;
        }
    }
    status = failures && !interactive ? 1 : 0;
done:
    chat_session_free(&s);
    if (in != stdin) fclose(in);
    return status;
}
