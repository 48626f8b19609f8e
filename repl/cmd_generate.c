/* cmd_generate.c — `rlhf generate`: one prompt through any decoding strategy, or several side
 * by side (--compare).
 *
 * Flags and --compare specs share one settings table (`g_settings`), so every key a spec
 * accepts is also a flag and the other way round. The model is loaded with model_bundle_load (HF
 * directory, llama2.c .bin, GGUF), the prompt encoded with its tokenizer (or taken as ids),
 * and the work done by gen_run; this file only parses, resolves defaults and prints.
 *
 * Defaults (documented in --help): the strategy is greedy unless a sampling flag is given or
 * the model's generation_config.json says do_sample; sampling uses generation_config's
 * temperature / top_k / top_p / repetition_penalty where present, else Hugging Face's defaults
 * (1.0, 50, 1.0, 1.0); max_tokens is 128 (or max_new_tokens), cut to what the context leaves
 * when not given explicitly; the seed is 0; beam search without --beams uses 4 beams.
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

#include "repl/commands.h"
#include "repl/out.h"
#include "src/core/fileio.h"
#include "src/gen/generate.h"
#include "src/formats/model_load.h"
#include "src/gen/prompt.h"

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
    "[--seed S] [--n N] [--stop STR] [--examples FILE [--shots K]] [--instruction TEXT] [--chat] [--json] "
    "[--compare \"SPEC; SPEC...\"]";

static const char *const HELP =
    "Generate a continuation of one prompt.\n"
    "\n"
    "  -m, --model PATH          a Hugging Face model directory, a llama2.c .bin or a .gguf file\n"
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
    "  -s, --strategy S          greedy (default), sample, or beam\n"
    "      --beams N             beam search width (default 4 with --strategy beam; implies it)\n"
    "      --length-penalty X    beam score = sum logprob / length^X (default 1)\n"
    "      --early-stopping      stop beam search once --beams hypotheses are finished\n"
    "  -t, --temperature T       sampling temperature (0 = greedy); implies --strategy sample\n"
    "  -k, --top-k K             keep the K most likely tokens (default 50 when sampling)\n"
    "      --top-p P             nucleus sampling: smallest set with probability >= P\n"
    "      --min-p P             drop tokens below P times the top probability\n"
    "      --repeat-penalty R    divide positive / multiply negative logits of seen tokens\n"
    "      --presence-penalty X  subtract X from the logits of seen tokens\n"
    "      --frequency-penalty X subtract X times the count of seen tokens\n"
    "      --no-repeat-ngram N   never repeat an N-gram (all strategies)\n"
    "  -n, --max-tokens N        tokens to generate at most (default 128)\n"
    "      --n N                 candidates from the same prompt (one batched pass)\n"
    "      --seed S              random seed (default 0); candidate i uses (S, i)\n"
    "      --stop STR            stop when STR appears (repeatable; needs a tokenizer)\n"
    "      --ignore-eos          do not stop at end-of-sequence tokens\n"
    "      --truncate            drop the oldest prompt tokens if the prompt does not fit\n"
    "      --no-bos              do not add BOS to --prompt\n"
    "      --json                one JSON object per candidate (ids, text, logprob,\n"
    "                            token_logprobs, finish, timing)\n"
    "      --compare SPECS       run several strategies on the same prompt and show them side by\n"
    "                            side, e.g. \"greedy; beam beams=4; sample top_k=40;\n"
    "                            sample top_p=0.9 temperature=0.8\" (keys: any flag above without\n"
    "                            dashes, '-' or '_'); with --json a JSON array\n"
    "\n"
    "Ctrl-C stops the generation; what was generated is printed with finish \"interrupted\".\n";

/* ---- settings shared by flags and --compare specs ---- */

typedef enum { SET_FLOAT, SET_INT, SET_U64, SET_BOOL } set_kind;

typedef enum {
    K_TEMPERATURE, K_TOP_K, K_TOP_P, K_MIN_P, K_REPEAT, K_PRESENCE, K_FREQUENCY, K_NGRAM, K_BEAMS, K_LENGTH_PENALTY,
    K_EARLY_STOPPING, K_MAX_TOKENS, K_SEED, K_N, K_COUNT
} setting_key;

typedef struct {
    const char *name; /* flag name, and (with '-' as '_') the spec key */
    setting_key key;
    set_kind kind;
    double lo, hi;
} setting;

static const setting g_settings[] = {
    {"temperature", K_TEMPERATURE, SET_FLOAT, 0, 100},
    {"top-k", K_TOP_K, SET_INT, 0, 1 << 24},
    {"top-p", K_TOP_P, SET_FLOAT, 1e-9, 1},
    {"min-p", K_MIN_P, SET_FLOAT, 0, 1},
    {"repeat-penalty", K_REPEAT, SET_FLOAT, 1e-6, 100},
    {"presence-penalty", K_PRESENCE, SET_FLOAT, -100, 100},
    {"frequency-penalty", K_FREQUENCY, SET_FLOAT, -100, 100},
    {"no-repeat-ngram", K_NGRAM, SET_INT, 0, 64},
    {"beams", K_BEAMS, SET_INT, 1, 256},
    {"length-penalty", K_LENGTH_PENALTY, SET_FLOAT, -100, 100},
    {"early-stopping", K_EARLY_STOPPING, SET_BOOL, 0, 1},
    {"max-tokens", K_MAX_TOKENS, SET_INT, 1, 1 << 20},
    {"seed", K_SEED, SET_U64, 0, 0},
    {"n", K_N, SET_INT, 1, 1024},
};
#define N_SETTINGS ((int)(sizeof g_settings / sizeof g_settings[0]))

/* The values given for one run, with which ones were set explicitly. */
typedef struct {
    int set[K_COUNT];
    double f[K_COUNT];
    uint64_t seed;
    gen_strategy strategy;
    int strategy_set;
} run_settings;

static const setting *setting_find(const char *name, size_t len) {
    for (int i = 0; i < N_SETTINGS; i++) {
        const char *a = g_settings[i].name;
        if (strlen(a) != len) continue;
        size_t k = 0;
        for (; k < len; k++) {
            char x = a[k] == '-' ? '_' : a[k], y = name[k] == '-' ? '_' : name[k];
            if (x != y) break;
        }
        if (k == len) return &g_settings[i];
    }
    return NULL;
}

/* Parses `value` for setting s; on error prints a message naming `what` and returns 2. */
static int setting_apply(run_settings *rs, const setting *s, const char *value, const char *what) {
    char *end;
    errno = 0;
    if (s->kind == SET_BOOL && !value) {
        rs->set[s->key] = 1;
        rs->f[s->key] = 1;
        return 0;
    }
    if (s->kind == SET_U64) {
        unsigned long long x = strtoull(value, &end, 0);
        if (errno || end == value || *end || value[0] == '-') {
            out_error("%s: expected a non-negative integer, got '%s'", what, value);
            return 2;
        }
        rs->seed = (uint64_t)x;
        rs->set[s->key] = 1;
        return 0;
    }
    double x = strtod(value, &end);
    if (errno || end == value || *end || !isfinite(x) || x < s->lo || x > s->hi ||
        ((s->kind == SET_INT || s->kind == SET_BOOL) && x != floor(x))) {
        if (s->kind == SET_FLOAT)
            out_error("%s: expected a number in [%g, %g], got '%s'", what, s->lo, s->hi, value);
        else
            out_error("%s: expected an integer in %g..%g, got '%s'", what, s->lo, s->hi, value);
        return 2;
    }
    rs->set[s->key] = 1;
    rs->f[s->key] = x;
    return 0;
}

static int strategy_parse(const char *s, gen_strategy *out) {
    if (strcmp(s, "greedy") == 0) *out = GEN_STRATEGY_GREEDY;
    else if (strcmp(s, "sample") == 0) *out = GEN_STRATEGY_SAMPLE;
    else if (strcmp(s, "beam") == 0) *out = GEN_STRATEGY_BEAM;
    else return 0;
    return 1;
}

/* Later settings override earlier ones: `over` on top of `base`. */
static void settings_merge(run_settings *dst, const run_settings *base, const run_settings *over) {
    *dst = *base;
    for (int k = 0; k < K_COUNT; k++)
        if (over->set[k]) {
            dst->set[k] = 1;
            dst->f[k] = over->f[k];
        }
    if (over->set[K_SEED]) dst->seed = over->seed;
    if (over->strategy_set) {
        dst->strategy = over->strategy;
        dst->strategy_set = 1;
    }
}

/* One --compare spec: "sample top_k=40 temperature=0.8". Returns 0, or 2 after printing. */
static int spec_parse(const char *spec, run_settings *rs) {
    memset(rs, 0, sizeof *rs);
    char buf[512];
    snprintf(buf, sizeof buf, "%s", spec);
    char *save = NULL;
    int first = 1;
    for (char *w = strtok_r(buf, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save), first = 0) {
        char *eq = strchr(w, '=');
        if (first && !eq) {
            if (!strategy_parse(w, &rs->strategy)) {
                out_error("--compare: unknown strategy '%s' in \"%s\" (greedy, sample, beam)", w, spec);
                return 2;
            }
            rs->strategy_set = 1;
            continue;
        }
        const setting *s = setting_find(w, eq ? (size_t)(eq - w) : strlen(w));
        if (!s || (!eq && s->kind != SET_BOOL)) {
            out_error("--compare: unknown setting '%s' in \"%s\"", w, spec);
            return 2;
        }
        char what[600];
        snprintf(what, sizeof what, "--compare \"%s\": %s", spec, s->name);
        if (setting_apply(rs, s, eq ? eq + 1 : NULL, what)) return 2;
    }
    if (!rs->strategy_set) {
        out_error("--compare: \"%s\" does not start with a strategy (greedy, sample, beam)", spec);
        return 2;
    }
    return 0;
}

/* Settings that would be silently ignored are refused instead: beam search uses neither the
 * sampling filters nor penalties nor stop strings, and returns at most --beams candidates.
 * Prints the reason (prefixed with `where`, e.g. the --compare spec) and returns 2, else 0. */
static int settings_check(const run_settings *rs, int n_stop, const char *where) {
    /* --beams alone implies beam search, as num_beams > 1 does in Hugging Face's generate */
    const int beam = rs->strategy_set ? rs->strategy == GEN_STRATEGY_BEAM : rs->set[K_BEAMS];
    if (!beam) {
        if (rs->set[K_BEAMS] || rs->set[K_LENGTH_PENALTY] || rs->set[K_EARLY_STOPPING]) {
            out_error("%s--beams, --length-penalty and --early-stopping need --strategy beam", where);
            return 2;
        }
        return 0;
    }
    static const int ignored[] = {K_TEMPERATURE, K_TOP_K, K_TOP_P, K_MIN_P, K_REPEAT, K_PRESENCE, K_FREQUENCY};
    for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++)
        if (rs->set[ignored[i]]) {
            for (int k = 0; k < N_SETTINGS; k++)
                if ((int)g_settings[k].key == ignored[i])
                    out_error("%s--%s has no effect on beam search (it applies to greedy and sampling)", where,
                              g_settings[k].name);
            return 2;
        }
    if (n_stop > 0) {
        out_error("%s--stop is not supported with beam search", where);
        return 2;
    }
    const int beams = rs->set[K_BEAMS] ? (int)rs->f[K_BEAMS] : 4;
    if (rs->set[K_N] && (int)rs->f[K_N] > beams) {
        out_error("%sbeam search returns at most --beams (%d) candidates; --n %d asks for more", where, beams,
                  (int)rs->f[K_N]);
        return 2;
    }
    return 0;
}

/* ---- resolving a run's gen_params ---- */

typedef struct {
    model_bundle *b;
    int ignore_eos, truncate;
    const char *const *stops;
    int n_stop;
    int n_prompt;
} run_context;

static void resolve_params(const run_context *rc, const run_settings *rs, gen_params *p) {
    const model_gen_defaults *d = &rc->b->defaults;
    gen_params_defaults(p);
    const int sampling_flag = rs->set[K_TEMPERATURE] || rs->set[K_TOP_K] || rs->set[K_TOP_P] || rs->set[K_MIN_P];
    if (rs->strategy_set) p->strategy = rs->strategy;
    else if (rs->set[K_BEAMS]) p->strategy = GEN_STRATEGY_BEAM;
    else if (sampling_flag || (d->has_do_sample && d->do_sample)) p->strategy = GEN_STRATEGY_SAMPLE;
    else p->strategy = GEN_STRATEGY_GREEDY;
    sampler_params *sp = &p->sampling;
    sp->temperature = d->has_temperature ? d->temperature : 1.0f;
    sp->top_k = d->has_top_k ? d->top_k : 50;
    sp->top_p = d->has_top_p ? d->top_p : 1.0f;
    sp->repeat_penalty = d->has_repetition_penalty ? d->repetition_penalty : 1.0f;
    if (rs->set[K_TEMPERATURE]) sp->temperature = (float)rs->f[K_TEMPERATURE];
    if (rs->set[K_TOP_K]) sp->top_k = (int)rs->f[K_TOP_K];
    if (rs->set[K_TOP_P]) sp->top_p = (float)rs->f[K_TOP_P];
    if (rs->set[K_MIN_P]) sp->min_p = (float)rs->f[K_MIN_P];
    if (rs->set[K_REPEAT]) sp->repeat_penalty = (float)rs->f[K_REPEAT];
    if (rs->set[K_PRESENCE]) sp->presence_penalty = (float)rs->f[K_PRESENCE];
    if (rs->set[K_FREQUENCY]) sp->frequency_penalty = (float)rs->f[K_FREQUENCY];
    if (rs->set[K_NGRAM]) sp->no_repeat_ngram_size = (int)rs->f[K_NGRAM];
    p->num_beams = rs->set[K_BEAMS] ? (int)rs->f[K_BEAMS] : (p->strategy == GEN_STRATEGY_BEAM ? 4 : 1);
    if (rs->set[K_LENGTH_PENALTY]) p->length_penalty = (float)rs->f[K_LENGTH_PENALTY];
    p->early_stopping = rs->set[K_EARLY_STOPPING] && rs->f[K_EARLY_STOPPING] != 0;
    p->seed = rs->set[K_SEED] ? rs->seed : 0;
    p->n = rs->set[K_N] ? (int)rs->f[K_N] : 1;
    if (p->strategy == GEN_STRATEGY_BEAM && p->n > p->num_beams) p->n = p->num_beams;
    const int ctx = rc->b->m.config.context;
    if (rs->set[K_MAX_TOKENS]) {
        p->max_tokens = (int)rs->f[K_MAX_TOKENS];
    } else {
        p->max_tokens = d->has_max_new_tokens && d->max_new_tokens > 0 ? d->max_new_tokens : 128;
        /* not asked for: fit what the context leaves after the prompt */
        if (rc->n_prompt + p->max_tokens > ctx && ctx - rc->n_prompt >= 1) p->max_tokens = ctx - rc->n_prompt;
    }
    p->truncate_prompt = rc->truncate;
    if (rc->ignore_eos) {
        p->n_eos = 0;
    } else if (d->n_eos > 0) {
        p->n_eos = d->n_eos < GEN_MAX_EOS ? d->n_eos : GEN_MAX_EOS;
        memcpy(p->eos_ids, d->eos_ids, (size_t)p->n_eos * sizeof(int32_t));
    }
    p->stop = rc->stops;
    p->n_stop = rc->n_stop;
}

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

/* The text of a candidate for people: its decoded text, or its ids without a tokenizer. */
static char *candidate_display(const gen_candidate *c) {
    if (c->text) return strdup(c->text);
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

static int term_width(void) {
    struct winsize ws;
    if (isatty(fileno(out_stream())) && ioctl(fileno(out_stream()), TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40)
        return ws.ws_col;
    const char *c = getenv("COLUMNS");
    int w = c ? atoi(c) : 0;
    return w >= 40 ? w : 100;
}

/* Wrapped lines of a text for a column: split at newlines, then every `width` characters
 * (UTF-8 code points; control characters shown as spaces). Returns the number of lines; each
 * line is (start, byte length) into text. */
typedef struct {
    const char *s;
    int len;
} line_ref;

static int wrap_text(const char *text, int width, line_ref *lines, int max_lines) {
    int n = 0;
    const char *p = text;
    while (*p && n < max_lines) {
        const char *start = p, *last_space = NULL;
        int cols = 0;
        while (*p && *p != '\n' && cols < width) {
            if (*p == ' ') last_space = p;
            p++;
            while ((*p & 0xC0) == 0x80) p++;
            cols++;
        }
        /* break after the last space of a full line rather than inside a word */
        if (*p && *p != '\n' && *p != ' ' && last_space && last_space > start) p = last_space + 1;
        lines[n].s = start;
        lines[n].len = (int)(p - start);
        n++;
        if (*p == '\n') p++;
        else if (*p == ' ' && cols >= width) p++;
    }
    if (n == 0 && max_lines > 0) {
        lines[0].s = text;
        lines[0].len = 0;
        n = 1;
    }
    return n;
}

static void print_cell(const char *s, int len, int width) {
    int cols = 0;
    for (int i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch & 0xC0) != 0x80) cols++;
        out_printf("%c", ch < 0x20 ? ' ' : ch);
    }
    for (; cols < width; cols++) out_printf(" ");
}

#define MAX_COLS 8
#define MAX_LINES 400

/* One band of cells side by side: each cell's text wrapped to the column width. */
static void print_band(char *const *cells, int k, int cw, int max_lines) {
    static line_ref lines[MAX_COLS][MAX_LINES];
    int nl[MAX_COLS], max_nl = 0;
    for (int c = 0; c < k; c++) {
        nl[c] = wrap_text(cells[c] ? cells[c] : "", cw, lines[c], max_lines);
        if (nl[c] > max_nl) max_nl = nl[c];
    }
    for (int l = 0; l < max_nl; l++)
        for (int c = 0; c < k; c++) {
            if (l < nl[c]) print_cell(lines[c][l].s, lines[c][l].len, cw);
            else print_cell("", 0, cw);
            out_printf(c + 1 < k ? " | " : "\n");
        }
}

static void print_rule(int k, int cw) {
    for (int c = 0; c < k; c++) {
        for (int i = 0; i < cw; i++) out_printf("-");
        out_printf(c + 1 < k ? "-+-" : "\n");
    }
}

/* Columns side by side: a header per spec, the candidates' wrapped texts, a summary each. */
static void print_columns(char *const *titles, char **texts, char **foot, int k) {
    int w = term_width();
    int cw = (w - 3 * (k - 1)) / k;
    if (cw < 16) cw = 16;
    print_band(titles, k, cw, 4);
    print_rule(k, cw);
    print_band(texts, k, cw, MAX_LINES);
    print_rule(k, cw);
    print_band(foot, k, cw, 8);
}

/* ---- the command ---- */

#define MAX_STOPS 16
#define MAX_SPECS MAX_COLS

enum {
    OPT_PROMPT_IDS = 1000, OPT_JSON, OPT_COMPARE, OPT_STOP, OPT_IGNORE_EOS, OPT_TRUNCATE, OPT_NO_BOS, OPT_CHAT,
    OPT_SYSTEM, OPT_EXAMPLES, OPT_SHOTS, OPT_INSTRUCTION, OPT_SHOW_PROMPT, OPT_PROMPT_FILE, OPT_SETTING_BASE = 2000
};

int cmd_generate(int argc, char **argv) {
    if (command_wants_help(argc, argv)) {
        out_printf("usage: %s\n\n%s", USAGE, HELP);
        return 0;
    }
    static struct option longopts[] = {
        {"model", required_argument, 0, 'm'},
        {"prompt", required_argument, 0, 'p'},
        {"prompt-ids", required_argument, 0, OPT_PROMPT_IDS},
        {"prompt-file", required_argument, 0, OPT_PROMPT_FILE},
        {"strategy", required_argument, 0, 's'},
        {"json", no_argument, 0, OPT_JSON},
        {"compare", required_argument, 0, OPT_COMPARE},
        {"stop", required_argument, 0, OPT_STOP},
        {"ignore-eos", no_argument, 0, OPT_IGNORE_EOS},
        {"truncate", no_argument, 0, OPT_TRUNCATE},
        {"no-bos", no_argument, 0, OPT_NO_BOS},
        {"chat", no_argument, 0, OPT_CHAT},
        {"system", required_argument, 0, OPT_SYSTEM},
        {"examples", required_argument, 0, OPT_EXAMPLES},
        {"shots", required_argument, 0, OPT_SHOTS},
        {"instruction", required_argument, 0, OPT_INSTRUCTION},
        {"show-prompt", no_argument, 0, OPT_SHOW_PROMPT},
        /* the settings table, in g_settings order */
        {"temperature", required_argument, 0, OPT_SETTING_BASE + 0},
        {"top-k", required_argument, 0, OPT_SETTING_BASE + 1},
        {"top-p", required_argument, 0, OPT_SETTING_BASE + 2},
        {"min-p", required_argument, 0, OPT_SETTING_BASE + 3},
        {"repeat-penalty", required_argument, 0, OPT_SETTING_BASE + 4},
        {"presence-penalty", required_argument, 0, OPT_SETTING_BASE + 5},
        {"frequency-penalty", required_argument, 0, OPT_SETTING_BASE + 6},
        {"no-repeat-ngram", required_argument, 0, OPT_SETTING_BASE + 7},
        {"beams", required_argument, 0, OPT_SETTING_BASE + 8},
        {"length-penalty", required_argument, 0, OPT_SETTING_BASE + 9},
        {"early-stopping", no_argument, 0, OPT_SETTING_BASE + 10},
        {"max-tokens", required_argument, 0, OPT_SETTING_BASE + 11},
        {"seed", required_argument, 0, OPT_SETTING_BASE + 12},
        {"n", required_argument, 0, OPT_SETTING_BASE + 13},
        {0, 0, 0, 0},
    };
    const char *model_path = NULL, *prompt = NULL, *prompt_ids = NULL, *compare = NULL, *system = NULL;
    const char *stops[MAX_STOPS];
    int n_stop = 0, json = 0, ignore_eos = 0, truncate = 0, no_bos = 0, chat = 0, shots = -1, show_prompt = 0;
    const char *examples_path = NULL, *instruction = NULL, *prompt_file = NULL;
    run_settings base;
    memset(&base, 0, sizeof base);
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":m:p:s:t:k:n:", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'p': prompt = optarg; break;
        case OPT_PROMPT_IDS: prompt_ids = optarg; break;
        case OPT_PROMPT_FILE: prompt_file = optarg; break;
        case 's':
            if (!strategy_parse(optarg, &base.strategy)) {
                out_error("--strategy: expected greedy, sample or beam, got '%s'", optarg);
                return command_usage_error("generate");
            }
            base.strategy_set = 1;
            break;
        case 't': c = OPT_SETTING_BASE + 0; goto setting;
        case 'k': c = OPT_SETTING_BASE + 1; goto setting;
        case 'n': c = OPT_SETTING_BASE + 11; goto setting;
        case OPT_JSON: json = 1; break;
        case OPT_COMPARE: compare = optarg; break;
        case OPT_STOP:
            if (n_stop == MAX_STOPS) {
                out_error("--stop: at most %d stop strings", MAX_STOPS);
                return 2;
            }
            if (!optarg[0]) {
                out_error("--stop: the stop string is empty");
                return 2;
            }
            stops[n_stop++] = optarg;
            break;
        case OPT_IGNORE_EOS: ignore_eos = 1; break;
        case OPT_TRUNCATE: truncate = 1; break;
        case OPT_NO_BOS: no_bos = 1; break;
        case OPT_CHAT: chat = 1; break;
        case OPT_SYSTEM: system = optarg; break;
        case OPT_EXAMPLES: examples_path = optarg; break;
        case OPT_INSTRUCTION: instruction = optarg; break;
        case OPT_SHOW_PROMPT: show_prompt = 1; break;
        case OPT_SHOTS: {
            char *end;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || v < 0 || v > 100000) {
                out_error("--shots: expected a whole number >= 0, got '%s'", optarg);
                return command_usage_error("generate");
            }
            shots = (int)v;
            break;
        }
        case ':':
            out_error("option '%s' needs a value", argv[optind - 1]);
            return command_usage_error("generate");
        case '?':
            out_error("unknown option '%s'", argv[optind - 1]);
            return command_usage_error("generate");
        default:
        setting:
            if (c >= OPT_SETTING_BASE && c < OPT_SETTING_BASE + N_SETTINGS) {
                const setting *s = &g_settings[c - OPT_SETTING_BASE];
                char what[64];
                snprintf(what, sizeof what, "--%s", s->name);
                if (setting_apply(&base, s, s->kind == SET_BOOL ? NULL : optarg, what)) return command_usage_error("generate");
            }
            break;
        }
    }
    if (optind < argc) {
        out_error("unexpected argument '%s'", argv[optind]);
        return command_usage_error("generate");
    }
    if (!model_path) {
        out_error("--model is required");
        return command_usage_error("generate");
    }
    if (!!prompt + !!prompt_ids + !!prompt_file != 1) {
        out_error(prompt || prompt_ids || prompt_file ? "--prompt, --prompt-file and --prompt-ids exclude each other"
                                                      : "one of --prompt, --prompt-file or --prompt-ids is required");
        return command_usage_error("generate");
    }
    /* the file's text stands for --prompt (read once the flags are known to be good) */
    if (prompt_file) prompt = "";
    if (chat && !prompt) {
        out_error("--chat needs --prompt");
        return command_usage_error("generate");
    }
    if (system && !chat) {
        out_error("--system is the system message of --chat: give --chat too");
        return command_usage_error("generate");
    }
    if (!compare && settings_check(&base, n_stop, "")) return command_usage_error("generate");
    if ((examples_path || instruction || shots >= 0) && !prompt) {
        out_error("--examples, --shots and --instruction build a text prompt: they need --prompt");
        return command_usage_error("generate");
    }
    if (shots > 0 && !examples_path) {
        out_error("--shots %d needs --examples FILE", shots);
        return command_usage_error("generate");
    }
    /* parse --compare before loading anything */
    run_settings specs[MAX_SPECS];
    char *spec_text[MAX_SPECS];
    int n_specs = 0;
    char *compare_buf = compare ? strdup(compare) : NULL;
    if (compare) {
        char *save = NULL;
        for (char *sp = strtok_r(compare_buf, ";", &save); sp; sp = strtok_r(NULL, ";", &save)) {
            while (*sp == ' ' || *sp == '\t') sp++;
            char *e = sp + strlen(sp);
            while (e > sp && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n')) *--e = 0;
            if (!*sp) continue;
            if (n_specs == MAX_SPECS) {
                out_error("--compare: at most %d strategies", MAX_SPECS);
                free(compare_buf);
                return 2;
            }
            if (spec_parse(sp, &specs[n_specs])) {
                free(compare_buf);
                return command_usage_error("generate");
            }
            /* a spec's own keys must mean something for its strategy (flags outside --compare
             * apply to the specs where they do) */
            char where[160];
            snprintf(where, sizeof where, "--compare \"%.120s\": ", sp);
            if (settings_check(&specs[n_specs], specs[n_specs].strategy == GEN_STRATEGY_BEAM ? n_stop : 0, where)) {
                free(compare_buf);
                return command_usage_error("generate");
            }
            spec_text[n_specs++] = sp;
        }
        if (n_specs == 0) {
            out_error("--compare: no strategies in \"%s\"", compare);
            free(compare_buf);
            return command_usage_error("generate");
        }
    }

    int status = 1;
    rlhf_error err = {0};
    model_bundle b;
    int32_t *ids = NULL;
    int n_ids = 0;
    char *chat_text = NULL;
    tok_ids enc = {0};
    prompt_examples examples = {0};
    char *prompt_file_text = NULL;
    if (prompt_file) {
        if (read_prompt_file(prompt_file, &prompt_file_text, &err)) {
            free(compare_buf);
            return out_fail(&err);
        }
        prompt = prompt_file_text;
    }
    if (examples_path && prompt_examples_read(&examples, examples_path, shots, &err)) {
        free(compare_buf);
        free(prompt_file_text);
        return out_fail(&err);
    }
    const int few_shot = examples_path || instruction || shots >= 0;
    if (model_bundle_load(&b, model_path, &err)) {
        free(compare_buf);
        free(prompt_file_text);
        prompt_examples_free(&examples);
        return out_fail(&err);
    }
    if (prompt_ids) {
        size_t cap = strlen(prompt_ids) / 2 + 2;
        ids = malloc(cap * sizeof *ids);
        const char *q = prompt_ids;
        for (;;) {
            while (*q == ' ' || *q == '\t' || *q == '\n' || *q == ',') q++;
            if (!*q) break;
            char *end;
            errno = 0;
            long x = strtol(q, &end, 10);
            if (errno || end == q || x < 0 || x >= b.m.config.vocab_size || (*end && !strchr(" \t\n,", *end))) {
                int len = (int)strcspn(q, " \t\n,");
                out_error("--prompt-ids: '%.*s' is not a token id of this model (0..%d)", len, q, b.m.config.vocab_size - 1);
                status = 2;
                goto done;
            }
            ids[n_ids++] = (int32_t)x;
            q = end;
        }
        if (n_ids == 0) {
            out_error("--prompt-ids: no token ids given");
            status = 2;
            goto done;
        }
    } else {
        if (!b.tok) {
            out_error("%s has no tokenizer: pass the prompt as --prompt-ids \"ID ...\"", model_path);
            status = 2;
            goto done;
        }
        const char *text = prompt;
        unsigned flags = TOK_ENCODE_ALLOW_SPECIAL;
        if (chat && few_shot) {
            if (prompt_chat_fewshot(&chat_text, b.chat_template, system ? system : instruction, examples.items,
                                    examples.n, prompt, b.bos_token, b.eos_token, &err)) {
                rlhf_error_prefix(&err, "%s: chat template: ", model_path);
                out_fail(&err);
                goto done;
            }
            text = chat_text;
            if (!b.chat_template && b.add_bos && !no_bos) flags |= TOK_ENCODE_ADD_BOS;
        } else if (few_shot) {
            prompt_template t;
            prompt_template_defaults(&t);
            if (instruction) t.instruction = instruction;
            if (prompt_build(&chat_text, &t, examples.items, examples.n, prompt, &err)) {
                out_fail(&err);
                goto done;
            }
            text = chat_text;
            if (b.add_bos && !no_bos) flags |= TOK_ENCODE_ADD_BOS;
        } else if (chat) {
            prompt_message msgs[2];
            int nm = 0;
            if (system) msgs[nm++] = (prompt_message){"system", system};
            msgs[nm++] = (prompt_message){"user", prompt};
            if (prompt_chat_render(&chat_text, b.chat_template, msgs, nm, 1, b.bos_token, b.eos_token, &err)) {
                rlhf_error_prefix(&err, "%s: chat template: ", model_path);
                out_fail(&err);
                goto done;
            }
            text = chat_text;
            /* a template writes its own BOS text; without one the default format gets BOS */
            if (!b.chat_template && b.add_bos && !no_bos) flags |= TOK_ENCODE_ADD_BOS;
        } else if (b.add_bos && !no_bos) {
            flags |= TOK_ENCODE_ADD_BOS;
        }
        if (show_prompt) out_printf("%s\n--\n", text);
        if (tok_encode(b.tok, text, strlen(text), flags, &enc, &err)) {
            out_fail(&err);
            goto done;
        }
        if (enc.n == 0) {
            out_error("--prompt: the prompt encodes to no tokens");
            status = 2;
            goto done;
        }
        ids = enc.ids;
        n_ids = (int)enc.n;
    }

    run_context rc = {&b, ignore_eos, truncate, stops, n_stop, n_ids};
    void (*old_handler)(int) = signal(SIGINT, on_sigint);
    g_interrupted = 0;
    if (!compare) {
        gen_params p;
        resolve_params(&rc, &base, &p);
        p.stop_flag = &g_interrupted;
        stream_state st = {b.tok != NULL};
        const int streaming = !json && p.n == 1 && p.strategy != GEN_STRATEGY_BEAM;
        if (streaming) {
            p.on_token = stream_token;
            p.user = &st;
        }
        gen_result r;
        if (gen_run(&b.m, b.tok, ids, n_ids, &p, &r, &err)) {
            out_fail(&err);
            signal(SIGINT, old_handler);
            goto done;
        }
        if (json) {
            for (int i = 0; i < r.n; i++) {
                cJSON *o = candidate_json(&r.cands[i], &r, &p, NULL);
                print_json(o);
                cJSON_Delete(o);
            }
        } else if (streaming) {
            char line[256];
            summary_line(line, sizeof line, &r.cands[0], &p);
            out_printf("\n-- %s · %.1f tok/s\n", line, r.decode_ms > 0 ? r.n_generated / (r.decode_ms / 1e3) : 0.0);
        } else {
            for (int i = 0; i < r.n; i++) {
                char line[256];
                summary_line(line, sizeof line, &r.cands[i], &p);
                char *text = candidate_display(&r.cands[i]);
                out_printf("[%d] %s\n%s\n%s", r.cands[i].index, line, text ? text : "", i + 1 < r.n ? "\n" : "");
                free(text);
            }
            out_printf("-- %ld tokens in %.0f ms (%.1f tok/s), prompt %d tokens in %.0f ms\n", r.n_generated,
                       r.decode_ms, r.decode_ms > 0 ? r.n_generated / (r.decode_ms / 1e3) : 0.0, r.n_prompt, r.prefill_ms);
        }
        gen_result_free(&r);
        status = 0;
    } else {
        cJSON *arr = json ? cJSON_CreateArray() : NULL;
        char *texts[MAX_SPECS] = {0}, *foot[MAX_SPECS] = {0};
        int ok = 1;
        int n_done = 0;
        for (int k = 0; k < n_specs && ok && !g_interrupted; k++, n_done++) {
            run_settings merged;
            settings_merge(&merged, &base, &specs[k]);
            gen_params p;
            resolve_params(&rc, &merged, &p);
            p.stop_flag = &g_interrupted;
            gen_result r;
            if (gen_run(&b.m, b.tok, ids, n_ids, &p, &r, &err)) {
                rlhf_error_prefix(&err, "--compare \"%s\": ", spec_text[k]);
                out_fail(&err);
                ok = 0;
                break;
            }
            if (json) {
                for (int i = 0; i < r.n; i++) cJSON_AddItemToArray(arr, candidate_json(&r.cands[i], &r, &p, spec_text[k]));
            } else {
                /* the column holds every candidate of the spec, one after another */
                size_t cap = 64, len = 0;
                char *col = malloc(cap);
                if (!col) abort(); /* out of memory while printing: nothing sensible is left to do */
                col[0] = 0;
                for (int i = 0; i < r.n; i++) {
                    char *t = candidate_display(&r.cands[i]);
                    char head[64] = "";
                    if (r.n > 1) snprintf(head, sizeof head, "%s[%d] ", i ? "\n\n" : "", r.cands[i].index);
                    size_t need = len + strlen(head) + (t ? strlen(t) : 0) + 1;
                    if (need > cap) {
                        while (need > cap) cap *= 2;
                        char *grown = realloc(col, cap);
                        if (!grown) abort();
                        col = grown;
                    }
                    len += (size_t)sprintf(col + len, "%s%s", head, t ? t : "");
                    free(t);
                }
                texts[k] = col;
                char line[256];
                summary_line(line, sizeof line, &r.cands[0], &p);
                foot[k] = strdup(line);
            }
            gen_result_free(&r);
        }
        if (ok) {
            if (json) print_json(arr);
            else if (n_done > 0) print_columns(spec_text, texts, foot, n_done);
            if (n_done < n_specs) out_error("interrupted: %d of %d strategies were run", n_done, n_specs);
            status = 0;
        }
        cJSON_Delete(arr);
        for (int k = 0; k < n_specs; k++) {
            free(texts[k]);
            free(foot[k]);
        }
    }
    signal(SIGINT, old_handler);
done:
    if (ids != enc.ids) free(ids);
    tok_ids_free(&enc);
    free(chat_text);
    free(compare_buf);
    free(prompt_file_text);
    prompt_examples_free(&examples);
    model_bundle_free(&b);
    return status;
}
