/* cmd_generate.c — `rlhf generate`: one prompt through any decoding strategy, or several side
 * by side (--compare).
 *
 * The decoding flags come from the settings table of src/gen/settings.h (the same table the
 * REPL's /set and /compare use): their long options, their help lines, the value parser, the
 * refusal of settings that would be ignored, --compare specs and the resolution of defaults from
 * the model's generation_config all live there. This file parses the other flags (model, prompt,
 * output), assembles the prompt (prompt_assemble), runs gen_run and prints.
 *
 * The command is four steps: gen_cli_parse (flags → gen_cli), prompt_ids_from_cli (the prompt
 * as token ids), run_single / run_compare (generation) and the render_* functions (output).
 * Exit status: 0 done (also when stopped by Ctrl-C), 1 the work failed, 2 bad usage. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "repl/columns.h"
#include "repl/commands.h"
#include "repl/default_model.h"
#include "repl/out.h"
#include "src/core/fileio.h"
#include "src/formats/model_load.h"
#include "src/model/lora.h"
#include "src/gen/generate.h"
#include "src/gen/prompt.h"
#include "src/gen/settings.h"

/* Reads a prompt file ("-": standard input) into *out (NUL-terminated, caller frees). A NUL byte
 * inside is refused, since the prompt is handled as a C string from here on. */
static int read_prompt_file(const char *path, char **out, rlhf_error *err) {
    *out = NULL;
    size_t len = 0;
    if (strcmp(path, "-") == 0) {
        size_t cap = 4096;
        char *buf = malloc(cap + 1);
        if (!buf) return rlhf_errorf(err, RLHF_ERR_NOMEM, "standard input: out of memory");
        size_t got;
        while ((got = fread(buf + len, 1, cap - len, stdin)) > 0) {
            len += got;
            if (len == cap) {
                char *grown = realloc(buf, 2 * cap + 1);
                if (!grown) {
                    free(buf);
                    return rlhf_errorf(err, RLHF_ERR_NOMEM, "standard input: out of memory");
                }
                buf = grown;
                cap *= 2;
            }
        }
        if (ferror(stdin)) {
            free(buf);
            return rlhf_errorf(err, RLHF_ERR_IO, "standard input: read error");
        }
        buf[len] = 0;
        *out = buf;
        path = "standard input";
    } else {
        int rc = file_read_all(path, out, &len, err);
        if (rc) return rc;
    }
    if (strlen(*out) != len) {
        free(*out);
        *out = NULL;
        return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: the prompt contains a NUL byte", path);
    }
    return RLHF_OK;
}

static const char *const USAGE =
    "rlhf generate --model PATH (--prompt TEXT | --prompt-file FILE | --prompt-ids \"ID ...\") [--strategy greedy|beam|sample] "
    "[--beams N] [--temperature T] [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R] [--max-tokens N] "
    "[--seed S] [--candidates N] [--stop STR] [--examples FILE [--shots K]] [--instruction TEXT] [--chat] [--json] "
    "[--compare \"SPEC; SPEC...\"]";

/* The flags that are not decoding settings; the settings' lines come from gen_settings_help. */
static const char *const HELP_INTRO =
    "Generate a continuation of one prompt.\n"
    "\n"
    "  -m, --model PATH          a Hugging Face model directory, a llama2.c .bin or a .gguf file\n"
    "      --adapter DIR         a LoRA adapter (PEFT directory) for the model, merged into the\n"
    "                            weights at load (decoding then runs at the base model's speed)\n"
    "  -p, --prompt TEXT         the prompt, encoded with the model's tokenizer (special tokens\n"
    "                            such as <|im_start|> are recognised; BOS is added where the\n"
    "                            tokenizer adds it)\n"
    "      --prompt-file FILE    the prompt is the text of FILE (- reads standard input)\n"
    "      --prompt-ids \"ID ...\" the prompt as token ids (works without a tokenizer)\n"
    "      --chat                wrap the prompt as a user message in the model's chat template\n"
    "                            (the HH-RLHF \"\\n\\nHuman: ...\\n\\nAssistant:\" format when it\n"
    "                            has none)\n"
    "      --system TEXT         system message for --chat\n"
    "      --examples FILE       few-shot: solved examples, one JSON object a line with \"input\"\n"
    "                            and \"output\" (or \"prompt\" and \"completion\"); --prompt is\n"
    "                            then the query. Without --chat the prompt reads\n"
    "                            \"[INSTRUCTION\\n\\n]Input: X\\nOutput: Y\\n\\n...Input: PROMPT\\nOutput:\";\n"
    "                            with --chat each example is a user turn and an assistant turn\n"
    "      --shots K             use the first K examples (0 = zero-shot; default all)\n"
    "      --instruction TEXT    task description written before the examples (with --chat:\n"
    "                            the system message unless --system is given)\n"
    "      --show-prompt         print the prompt text that was built before generating\n"
    "      --no-bos              do not add BOS to --prompt\n"
    "      --json                one JSON object per candidate (ids, text, logprob,\n"
    "                            token_logprobs, finish, timing)\n"
    "      --compare SPECS       run several strategies on the same prompt and show them side by\n"
    "                            side, e.g. \"greedy; beam beams=4; sample top_k=40;\n"
    "                            sample top_p=0.9 temperature=0.8\" (a strategy or a preset --\n"
    "                            greedy, beam, balanced, creative -- then KEY=VALUE with the keys\n"
    "                            below, '-' or '_'); with --json a JSON array\n"
    "\n"
    "Decoding settings (the keys of --compare specs and of the REPL's /set):\n";

static const char *const HELP_OUTRO =
    "\n"
    "-n is --max-tokens (as in llama.cpp); the number of candidates is --candidates.\n"
    "Ctrl-C stops the generation; what was generated is printed with finish \"interrupted\".\n";

/* ---- output ---- */

static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig) {
    (void)sig;
    g_interrupted = 1;
}

typedef struct {
    int with_text;
} stream_state;

static int stream_token(void *user, int cand, int32_t id, const char *text, size_t len, float lp) {
    (void)cand, (void)lp;
    stream_state *st = user;
    if (st->with_text) {
        if (len) out_printf("%.*s", (int)len, text);
    } else {
        out_printf("%d ", (int)id);
    }
    fflush(out_stream());
    return 0;
}

static cJSON *candidate_json(const gen_candidate *c, const gen_result *r, const gen_params *p, const char *spec) {
    cJSON *o = cJSON_CreateObject();
    if (spec) cJSON_AddStringToObject(o, "spec", spec);
    cJSON_AddStringToObject(o, "strategy", gen_strategy_name(p->strategy));
    cJSON_AddNumberToObject(o, "index", c->index);
    if (p->strategy != GEN_STRATEGY_BEAM) {
        /* raw: a 64-bit seed does not survive a trip through a double */
        char seed[32];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)gen_candidate_seed(p->seed, c->index));
        cJSON_AddRawToObject(o, "seed", seed);
    }
    cJSON *ids = cJSON_AddArrayToObject(o, "ids");
    cJSON *lps = cJSON_CreateArray();
    for (int i = 0; i < c->n_ids; i++) {
        cJSON_AddItemToArray(ids, cJSON_CreateNumber(c->ids[i]));
        cJSON_AddItemToArray(lps, cJSON_CreateNumber(c->logprobs[i]));
    }
    if (c->text) cJSON_AddStringToObject(o, "text", c->text);
    else cJSON_AddNullToObject(o, "text");
    /* text is the decoded ids, stop string included; stop_at is the byte where it begins */
    if (c->text && c->finish == GEN_FINISH_STOP) cJSON_AddNumberToObject(o, "stop_at", (double)c->text_stop);
    cJSON_AddNumberToObject(o, "logprob", c->logprob);
    cJSON_AddNumberToObject(o, "mean_logprob", c->mean_logprob);
    if (p->strategy == GEN_STRATEGY_BEAM) cJSON_AddNumberToObject(o, "score", c->score);
    cJSON_AddItemToObject(o, "token_logprobs", lps);
    cJSON_AddStringToObject(o, "finish", gen_finish_name(c->finish));
    cJSON_AddNumberToObject(o, "n_tokens", c->n_ids);
    cJSON_AddNumberToObject(o, "prompt_tokens", r->n_prompt);
    if (r->n_dropped) cJSON_AddNumberToObject(o, "prompt_tokens_dropped", r->n_dropped);
    cJSON *t = cJSON_AddObjectToObject(o, "timing");
    cJSON_AddNumberToObject(t, "prefill_ms", round(r->prefill_ms * 1000) / 1000);
    cJSON_AddNumberToObject(t, "decode_ms", round(r->decode_ms * 1000) / 1000);
    cJSON_AddNumberToObject(t, "tokens_per_s", r->decode_ms > 0 ? round(r->n_generated / (r->decode_ms / 1e3) * 10) / 10 : 0);
    return o;
}

static void print_json(cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    if (s) out_printf("%s\n", s);
    free(s);
}

/* The text of a candidate for people: its decoded text before any stop string, or its ids
 * without a tokenizer. */
static char *candidate_display(const gen_candidate *c) {
    if (c->text) return strndup(c->text, c->text_stop);
    size_t cap = (size_t)c->n_ids * 12 + 1;
    char *s = malloc(cap);
    if (!s) return NULL;
    size_t n = 0;
    s[0] = 0;
    for (int i = 0; i < c->n_ids; i++) n += (size_t)snprintf(s + n, cap - n, i ? " %d" : "%d", (int)c->ids[i]);
    return s;
}

static void summary_line(char *buf, size_t n, const gen_candidate *c, const gen_params *p) {
    if (p->strategy == GEN_STRATEGY_BEAM)
        snprintf(buf, n, "%d tok · %s · score %.3f · logprob %.2f", c->n_ids, gen_finish_name(c->finish), c->score,
                 c->logprob);
    else
        snprintf(buf, n, "%d tok · %s · logprob %.2f (mean %.3f)", c->n_ids, gen_finish_name(c->finish), c->logprob,
                 c->mean_logprob);
}

/* ---- rendering a result ---- */

/* --json: one object per candidate printed (arr NULL), or appended to arr (--compare). Returns
 * 0, or RLHF_ERR_NOMEM. */
static int render_json(const gen_result *r, const gen_params *p, const char *spec, cJSON *arr) {
    for (int i = 0; i < r->n; i++) {
        cJSON *o = candidate_json(&r->cands[i], r, p, spec);
        if (!o) return RLHF_ERR_NOMEM;
        if (arr) {
            cJSON_AddItemToArray(arr, o);
        } else {
            print_json(o);
            cJSON_Delete(o);
        }
    }
    return 0;
}

/* After a streamed candidate: its summary and speed. */
static void render_stream_end(const gen_result *r, const gen_params *p) {
    char line[256];
    summary_line(line, sizeof line, &r->cands[0], p);
    out_printf("\n-- %s · %.1f tok/s\n", line, r->decode_ms > 0 ? r->n_generated / (r->decode_ms / 1e3) : 0.0);
}

/* Several candidates (or a beam search) one after another, then the timing line. */
static void render_list(const gen_result *r, const gen_params *p) {
    for (int i = 0; i < r->n; i++) {
        char line[256];
        summary_line(line, sizeof line, &r->cands[i], p);
        char *text = candidate_display(&r->cands[i]);
        out_printf("[%d] %s\n%s\n%s", r->cands[i].index, line, text ? text : "(out of memory)", i + 1 < r->n ? "\n" : "");
        free(text);
    }
    out_printf("-- %ld tokens in %.0f ms (%.1f tok/s), prompt %d tokens in %.0f ms\n", r->n_generated, r->decode_ms,
               r->decode_ms > 0 ? r->n_generated / (r->decode_ms / 1e3) : 0.0, r->n_prompt, r->prefill_ms);
}

/* One --compare column: every candidate of the spec one after another (*text), and the first
 * one's summary (*foot). Both new strings the caller frees. Returns 0 or RLHF_ERR_NOMEM. */
static int render_column(const gen_result *r, const gen_params *p, char **text, char **foot, rlhf_error *err) {
    size_t cap = 64, len = 0;
    char *col = malloc(cap);
    if (!col) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for a column");
    col[0] = 0;
    for (int i = 0; i < r->n; i++) {
        char *t = candidate_display(&r->cands[i]);
        char head[64] = "";
        if (r->n > 1) snprintf(head, sizeof head, "%s[%d] ", i ? "\n\n" : "", r->cands[i].index);
        size_t need = len + strlen(head) + (t ? strlen(t) : 0) + 1;
        if (!t || need > cap) {
            while (need > cap) cap *= 2;
            char *grown = t ? realloc(col, cap) : NULL;
            if (!grown) {
                free(t);
                free(col);
                return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for a column");
            }
            col = grown;
        }
        len += (size_t)sprintf(col + len, "%s%s", head, t);
        free(t);
    }
    char line[256];
    summary_line(line, sizeof line, &r->cands[0], p);
    *foot = strdup(line);
    if (!*foot) {
        free(col);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for a column");
    }
    *text = col;
    return 0;
}

/* ---- parsing ---- */

/* Everything the command line asks for. */
typedef struct {
    const char *model_path, *adapter_path, *prompt, *prompt_ids, *prompt_file, *compare, *system, *examples_path, *instruction;
    int json, no_bos, chat, shots, show_prompt;
    gen_settings base;         /* the decoding flags */
    gen_compare cmp;           /* --compare specs (cmp.n == 0 without --compare) */
    char *prompt_file_text;    /* --prompt-file's text; owned */
    prompt_examples examples;  /* --examples; owned */
} gen_cli;

static void gen_cli_free(gen_cli *o) {
    gen_settings_free(&o->base);
    gen_compare_free(&o->cmp);
    free(o->prompt_file_text);
    prompt_examples_free(&o->examples);
}

enum {
    OPT_PROMPT_IDS = 1000, OPT_ADAPTER, OPT_JSON, OPT_COMPARE, OPT_NO_BOS, OPT_CHAT, OPT_SYSTEM, OPT_EXAMPLES, OPT_SHOTS,
    OPT_INSTRUCTION, OPT_SHOW_PROMPT, OPT_PROMPT_FILE, OPT_RETIRED_N, OPT_SETTING
};

/* The options that are not decoding settings (those come from the settings table). */
static const struct option g_fixed_options[] = {
    {"model", required_argument, 0, 'm'},
    {"adapter", required_argument, 0, OPT_ADAPTER},
    {"prompt", required_argument, 0, 'p'},
    {"prompt-ids", required_argument, 0, OPT_PROMPT_IDS},
    {"prompt-file", required_argument, 0, OPT_PROMPT_FILE},
    {"json", no_argument, 0, OPT_JSON},
    {"compare", required_argument, 0, OPT_COMPARE},
    {"no-bos", no_argument, 0, OPT_NO_BOS},
    {"chat", no_argument, 0, OPT_CHAT},
    {"system", required_argument, 0, OPT_SYSTEM},
    {"examples", required_argument, 0, OPT_EXAMPLES},
    {"shots", required_argument, 0, OPT_SHOTS},
    {"instruction", required_argument, 0, OPT_INSTRUCTION},
    {"show-prompt", no_argument, 0, OPT_SHOW_PROMPT},
    /* --n used to mean candidates while -n means max tokens; old scripts must fail loudly */
    {"n", required_argument, 0, OPT_RETIRED_N},
};
#define N_FIXED_OPTIONS ((int)(sizeof g_fixed_options / sizeof g_fixed_options[0]))

static int usage_error(const char *fmt, const char *arg) {
    out_error(fmt, arg);
    return command_usage_error("generate");
}

/* Reads the flags into o (zeroed by the caller). Returns 0, or the exit status (2) after
 * printing why. */
static int gen_cli_flags(gen_cli *o, int argc, char **argv) {
    int n_set;
    const gen_setting *tab = gen_settings_table(&n_set);
    struct option longopts[N_FIXED_OPTIONS + GEN_SETTING_COUNT + 1];
    const gen_setting *setting_of[N_FIXED_OPTIONS + GEN_SETTING_COUNT + 1] = {0};
    char names[GEN_SETTING_COUNT][GEN_SETTINGS_KEY_MAX];
    char shorts[8 + 2 * GEN_SETTING_COUNT] = ":m:p:";
    size_t ns = strlen(shorts);
    memcpy(longopts, g_fixed_options, sizeof g_fixed_options);
    int n = N_FIXED_OPTIONS;
    for (int i = 0; i < n_set; i++) {
        const int arg = tab[i].type == GEN_SETTING_TYPE_BOOL ? no_argument : required_argument;
        gen_setting_flag(&tab[i], names[i], sizeof names[i]);
        longopts[n] = (struct option){names[i], arg, 0, OPT_SETTING};
        setting_of[n++] = &tab[i];
        if (tab[i].short_flag) {
            shorts[ns++] = tab[i].short_flag;
            if (arg == required_argument) shorts[ns++] = ':';
        }
    }
    shorts[ns] = 0;
    longopts[n] = (struct option){0, 0, 0, 0};
    o->shots = -1;
    optind = 0;
    opterr = 0;
    int c, li = -1;
    while ((c = getopt_long(argc, argv, shorts, longopts, &li)) != -1) {
        const gen_setting *s = NULL;
        switch (c) {
        case 'm': o->model_path = optarg; break;
        case 'p': o->prompt = optarg; break;
        case OPT_PROMPT_IDS: o->prompt_ids = optarg; break;
        case OPT_ADAPTER: o->adapter_path = optarg; break;
        case OPT_PROMPT_FILE: o->prompt_file = optarg; break;
        case OPT_JSON: o->json = 1; break;
        case OPT_COMPARE: o->compare = optarg; break;
        case OPT_NO_BOS: o->no_bos = 1; break;
        case OPT_CHAT: o->chat = 1; break;
        case OPT_SYSTEM: o->system = optarg; break;
        case OPT_EXAMPLES: o->examples_path = optarg; break;
        case OPT_INSTRUCTION: o->instruction = optarg; break;
        case OPT_SHOW_PROMPT: o->show_prompt = 1; break;
        case OPT_SHOTS: {
            char *end;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || v < 0 || v > 100000)
                return usage_error("--shots: expected a whole number >= 0, got '%s'", optarg);
            o->shots = (int)v;
            break;
        }
        case OPT_RETIRED_N:
            return usage_error("%s", "--n is no longer accepted: the number of candidates is --candidates N "
                                     "(-n is --max-tokens)");
        case OPT_SETTING: s = setting_of[li]; break;
        case ':': return usage_error("option '%s' needs a value", argv[optind - 1]);
        case '?': return usage_error("unknown option '%s'", argv[optind - 1]);
        default: s = gen_setting_find_short(c); break;
        }
        li = -1;
        if (!s) continue;
        char flag[GEN_SETTINGS_KEY_MAX], name[GEN_SETTINGS_KEY_MAX + 2];
        gen_setting_flag(s, flag, sizeof flag);
        snprintf(name, sizeof name, "--%s", flag);
        rlhf_error err = {0};
        if (gen_settings_set(&o->base, s, s->type == GEN_SETTING_TYPE_BOOL ? NULL : optarg, name, &err))
            return usage_error("%s", err.msg);
    }
    if (optind < argc) return usage_error("unexpected argument '%s'", argv[optind]);
    return 0;
}

/* Flags that exclude or need each other, and the --compare specs. Returns 0 or 2. */
static int gen_cli_check(gen_cli *o) {
    if (!o->model_path && !(o->model_path = default_model_path()))
        return usage_error("%s", "--model is required (no built-in default model found: models/default)");
    if (!!o->prompt + !!o->prompt_ids + !!o->prompt_file != 1)
        return usage_error("%s", o->prompt || o->prompt_ids || o->prompt_file
                                     ? "--prompt, --prompt-file and --prompt-ids exclude each other"
                                     : "one of --prompt, --prompt-file or --prompt-ids is required");
    const int text_prompt = o->prompt || o->prompt_file;
    if (o->chat && !text_prompt) return usage_error("%s", "--chat needs --prompt");
    if (o->system && !o->chat) return usage_error("%s", "--system is the system message of --chat: give --chat too");
    if ((o->examples_path || o->instruction || o->shots >= 0) && !text_prompt)
        return usage_error("%s", "--examples, --shots and --instruction build a text prompt: they need --prompt");
    if (o->shots > 0 && !o->examples_path) {
        out_error("--shots %d needs --examples FILE", o->shots);
        return command_usage_error("generate");
    }
    rlhf_error err = {0};
    if (!o->compare) {
        if (gen_settings_check(&o->base, 1, &err)) return usage_error("%s", err.msg);
        return 0;
    }
    /* flags outside --compare apply to the specs where they mean something */
    gen_presets presets;
    if (gen_presets_init(&presets, &err)) return out_fail(&err);
    int rc = gen_compare_parse(&o->cmp, o->compare, &o->base, &presets, &err);
    gen_presets_free(&presets);
    if (rc) return usage_error("--compare: %s", err.msg);
    return 0;
}

/* The files the flags name, read before the model is loaded so that a typo fails fast.
 * Returns 0 or 1 after printing. */
static int gen_cli_read_files(gen_cli *o) {
    rlhf_error err = {0};
    if (o->prompt_file) {
        if (read_prompt_file(o->prompt_file, &o->prompt_file_text, &err)) return out_fail(&err);
        o->prompt = o->prompt_file_text;
    }
    if (o->examples_path && prompt_examples_read(&o->examples, o->examples_path, o->shots, &err)) return out_fail(&err);
    return 0;
}

/* ---- the prompt ---- */

/* --prompt-ids "1 2 3" into *ids (caller frees). Returns 0, or an exit status after printing. */
static int prompt_ids_parse(const char *text, int vocab, int32_t **ids, int *n_ids) {
    size_t cap = strlen(text) / 2 + 2;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) {
        out_error("--prompt-ids: out of memory");
        return 1;
    }
    int n = 0;
    for (const char *q = text;;) {
        while (*q == ' ' || *q == '\t' || *q == '\n' || *q == ',') q++;
        if (!*q) break;
        char *end;
        errno = 0;
        long x = strtol(q, &end, 10);
        if (errno || end == q || x < 0 || x >= vocab || (*end && !strchr(" \t\n,", *end))) {
            out_error("--prompt-ids: '%.*s' is not a token id of this model (0..%d)", (int)strcspn(q, " \t\n,"), q,
                      vocab - 1);
            free(v);
            return 2;
        }
        v[n++] = (int32_t)x;
        q = end;
    }
    if (n == 0) {
        free(v);
        out_error("--prompt-ids: no token ids given");
        return 2;
    }
    *ids = v;
    *n_ids = n;
    return 0;
}

/* The prompt as token ids: --prompt-ids as given, or the text prompt assembled (chat template,
 * few-shot examples, instruction, BOS) and encoded. Returns 0, or an exit status after
 * printing. */
static int prompt_tokens(const gen_cli *o, const model_bundle *b, int32_t **ids, int *n_ids) {
    if (o->prompt_ids) return prompt_ids_parse(o->prompt_ids, b->m.config.vocab_size, ids, n_ids);
    if (!b->tok) {
        out_error("%s has no tokenizer: pass the prompt as --prompt-ids \"ID ...\"", o->model_path);
        return 2;
    }
    prompt_request req = {0};
    req.input = o->prompt;
    req.chat = o->chat;
    req.system = o->system;
    req.instruction = o->instruction;
    req.examples = o->examples.items;
    req.n_examples = o->examples.n;
    req.few_shot = o->examples_path || o->instruction || o->shots >= 0;
    req.chat_template = b->chat_template;
    req.bos_token = b->bos_token;
    req.eos_token = b->eos_token;
    req.add_bos = b->add_bos && !o->no_bos;
    rlhf_error err = {0};
    char *text = NULL;
    int bos = 0;
    if (prompt_assemble(&text, &bos, &req, &err)) {
        if (o->chat) rlhf_error_prefix(&err, "%s: ", o->model_path);
        return out_fail(&err);
    }
    if (o->show_prompt) out_printf("%s\n--\n", text);
    tok_ids enc = {0};
    unsigned flags = TOK_ENCODE_ALLOW_SPECIAL | (bos ? TOK_ENCODE_ADD_BOS : 0);
    int rc = tok_encode(b->tok, text, strlen(text), flags, &enc, &err);
    free(text);
    if (rc) return out_fail(&err);
    if (enc.n == 0) {
        tok_ids_free(&enc);
        out_error("--prompt: the prompt encodes to no tokens");
        return 2;
    }
    *ids = enc.ids; /* the encoder's array is a plain malloc'ed buffer the caller frees */
    *n_ids = (int)enc.n;
    return 0;
}

/* ---- running ---- */

/* A single run: streamed when one candidate is printed as text, else listed or as JSON.
 * Returns the exit status. */
static int run_single(const gen_cli *o, const model_bundle *b, const int32_t *ids, int n_ids) {
    gen_params p;
    gen_settings_resolve(&o->base, &b->defaults, b->m.config.context, n_ids, &p);
    p.stop_flag = &g_interrupted;
    stream_state st = {b->tok != NULL};
    const int streaming = !o->json && p.n == 1 && p.strategy != GEN_STRATEGY_BEAM;
    if (streaming) {
        p.on_token = stream_token;
        p.user = &st;
    }
    gen_result r;
    rlhf_error err = {0};
    if (gen_run(&b->m, b->tok, ids, n_ids, &p, &r, &err)) return out_fail(&err);
    if (o->json) render_json(&r, &p, NULL, NULL);
    else if (streaming) render_stream_end(&r, &p);
    else render_list(&r, &p);
    gen_result_free(&r);
    return 0;
}

/* Every --compare spec in turn (Ctrl-C stops after the current one), then the columns or one
 * JSON array. Returns the exit status. */
static int run_compare(const gen_cli *o, const model_bundle *b, const int32_t *ids, int n_ids) {
    const gen_compare *cmp = &o->cmp;
    cJSON *arr = NULL;
    char *texts[GEN_COMPARE_MAX] = {0}, *foot[GEN_COMPARE_MAX] = {0};
    int status = 1, n_done = 0;
    rlhf_error err = {0};
    gen_settings merged;
    gen_settings_init(&merged);
    gen_packed *packed = NULL; /* the step weights packed once for every spec */
    if (gen_packed_make(&packed, &b->m, &err)) goto fail;
    if (o->json && !(arr = cJSON_CreateArray())) {
        rlhf_errorf(&err, RLHF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int k = 0; k < cmp->n && !g_interrupted; k++, n_done++) {
        if (gen_settings_copy(&merged, &o->base, &err) || gen_settings_merge(&merged, &cmp->spec[k], &err)) goto fail;
        gen_params p;
        gen_settings_resolve(&merged, &b->defaults, b->m.config.context, n_ids, &p);
        p.stop_flag = &g_interrupted;
        p.packed = packed;
        gen_result r;
        if (gen_run(&b->m, b->tok, ids, n_ids, &p, &r, &err)) {
            rlhf_error_prefix(&err, "--compare \"%s\": ", cmp->text[k]);
            goto fail;
        }
        int rc = o->json ? render_json(&r, &p, cmp->text[k], arr) : render_column(&r, &p, &texts[k], &foot[k], &err);
        gen_result_free(&r);
        if (rc) {
            if (!err.msg[0]) rlhf_errorf(&err, RLHF_ERR_NOMEM, "out of memory");
            goto fail;
        }
    }
    if (o->json) print_json(arr);
    else if (n_done > 0) columns_print(cmp->text, texts, foot, n_done);
    if (n_done < cmp->n) out_error("interrupted: %d of %d strategies were run", n_done, cmp->n);
    status = 0;
fail:
    if (status) out_fail(&err);
    gen_settings_free(&merged);
    gen_packed_free(&packed);
    cJSON_Delete(arr);
    for (int k = 0; k < cmp->n; k++) {
        free(texts[k]);
        free(foot[k]);
    }
    return status;
}

/* ---- the command ---- */

static void print_help(void) {
    char *lines = NULL;
    rlhf_error err = {0};
    out_printf("usage: %s\n\n%s", USAGE, HELP_INTRO);
    if (gen_settings_help(&lines, &err) == 0) out_printf("%s", lines);
    free(lines);
    out_printf("%s", HELP_OUTRO);
}

int cmd_generate(int argc, char **argv) {
    if (command_wants_help(argc, argv)) {
        print_help();
        return 0;
    }
    gen_cli o;
    memset(&o, 0, sizeof o);
    model_bundle b;
    memset(&b, 0, sizeof b);
    int32_t *ids = NULL;
    int n_ids = 0;
    int status = gen_cli_flags(&o, argc, argv);
    if (!status) status = gen_cli_check(&o);
    if (!status) status = gen_cli_read_files(&o);
    if (status) goto done;
    rlhf_error err = {0};
    if (model_bundle_load_merged(&b, o.model_path, &err)) {
        status = out_fail(&err);
        goto done;
    }
    if (o.adapter_path) {
        lora lo;
        int rc = lora_load(&lo, &b.m, o.adapter_path, NULL, 0, NULL, &err);
        if (!rc) rc = lora_merge(&lo, &b.m, &err);
        lora_free(&lo);
        if (rc) {
            status = out_fail(&err);
            goto done;
        }
    }
    if ((status = prompt_tokens(&o, &b, &ids, &n_ids))) goto done;
    void (*old_handler)(int) = signal(SIGINT, on_sigint);
    g_interrupted = 0;
    status = o.cmp.n ? run_compare(&o, &b, ids, n_ids) : run_single(&o, &b, ids, n_ids);
    signal(SIGINT, old_handler);
done:
    free(ids);
    model_bundle_free(&b);
    gen_cli_free(&o);
    return status;
}
