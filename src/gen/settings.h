/* settings.h — decoding settings: one table shared by `rlhf generate`'s flags, the REPL's
 * `/set KEY VALUE`, `/settings`, `/strategy PRESET` and `--compare` / `/compare` specs.
 *
 * The pieces:
 *  - the table (gen_settings_table): every decoding setting once, with its key (`top_p`, as
 *    `/set` and specs write it), its long flag (derived: `--top-p`), an optional short flag,
 *    its type and range, what its default is, and a line of help. Flags, spec keys, help text
 *    and `/settings` are all generated from it, so a setting added here appears everywhere.
 *  - gen_settings: the values given for one run, each with a "was set" mark, since most
 *    defaults depend on the strategy and the model (an unset temperature takes
 *    generation_config's). gen_settings_set parses one value (the only value parser);
 *    gen_settings_check refuses combinations where a setting would be silently ignored.
 *  - specs: "sample top_k=40 temperature=0.8" — a strategy or a preset name, then KEY=VALUE
 *    words (a boolean may stand alone). A compare list is specs separated by ';'.
 *  - presets: named specs (greedy, beam, balanced, creative built in; more added at run time).
 *  - resolution: gen_settings_resolve turns the given values plus the model's
 *    generation_config defaults into gen_params for gen_run.
 *  - rendering: gen_settings_render (the values in force, one line each, for `/settings`) and
 *    gen_settings_help (the flag lines of `--help`).
 * Nothing here prints; errors come back in rlhf_error with the key named. */
#ifndef RLHF_SETTINGS_H
#define RLHF_SETTINGS_H

#include <stddef.h>
#include <stdint.h>

#include "src/core/error.h"
#include "src/formats/model_load.h"
#include "src/gen/generate.h"

typedef enum {
    GEN_SETTING_STRATEGY = 0,
    GEN_SETTING_TEMPERATURE,
    GEN_SETTING_TOP_K,
    GEN_SETTING_TOP_P,
    GEN_SETTING_MIN_P,
    GEN_SETTING_REPEAT_PENALTY,
    GEN_SETTING_PRESENCE_PENALTY,
    GEN_SETTING_FREQUENCY_PENALTY,
    GEN_SETTING_NO_REPEAT_NGRAM,
    GEN_SETTING_BEAMS,
    GEN_SETTING_LENGTH_PENALTY,
    GEN_SETTING_EARLY_STOPPING,
    GEN_SETTING_MAX_TOKENS,
    GEN_SETTING_CANDIDATES,
    GEN_SETTING_SEED,
    GEN_SETTING_STOP,
    GEN_SETTING_IGNORE_EOS,
    GEN_SETTING_TRUNCATE,
    GEN_SETTING_COUNT
} gen_setting_id;

typedef enum {
    GEN_SETTING_TYPE_FLOAT,   /* a finite number in [lo, hi] */
    GEN_SETTING_TYPE_INT,     /* a whole number in lo..hi */
    GEN_SETTING_TYPE_U64,     /* a whole number in 0..2^64-1 (the seed) */
    GEN_SETTING_TYPE_BOOL,    /* on when given alone; or =1/0, true/false, on/off */
    GEN_SETTING_TYPE_CHOICE,  /* one of a fixed list of words (the strategy) */
    GEN_SETTING_TYPE_STRINGS, /* a non-empty string; each value given adds one (stop strings) */
} gen_setting_type;

/* One row of the table. */
typedef struct {
    gen_setting_id id;
    const char *key;          /* "top_p"; its long flag is "--" + key with '_' as '-' */
    char short_flag;          /* 'k' for -k, or 0 */
    gen_setting_type type;
    double lo, hi;            /* FLOAT and INT ranges (inclusive) */
    const char *metavar;      /* "P" in "--top-p P"; NULL for BOOL */
    const char *default_text; /* what applies when unset, for people */
    const char *help;         /* one line */
    long params_offset;       /* where gen_settings_resolve stores an explicit value in gen_params
                                 (float for FLOAT, int otherwise); -1: the strategy, the seed,
                                 stop strings and ignore_eos, which take more than a store */
} gen_setting;

#define GEN_SETTINGS_MAX_STOP 16
#define GEN_SETTINGS_KEY_MAX 32

/* Values given for one run. Unset values are resolved by gen_settings_resolve. Storage is the
 * caller's: gen_settings_init / gen_settings_free (safe on a zeroed struct and twice). */
typedef struct {
    unsigned char set[GEN_SETTING_COUNT]; /* 1: given explicitly */
    double value[GEN_SETTING_COUNT];      /* FLOAT, INT, BOOL, CHOICE (strategy as gen_strategy) */
    uint64_t seed;                        /* GEN_SETTING_SEED */
    char *stop[GEN_SETTINGS_MAX_STOP];    /* (n_stop) owned copies */
    int n_stop;
} gen_settings;

/* The table: *n rows, in the order help and /settings show them. Row i has id i. */
const gen_setting *gen_settings_table(int *n);
/* The row of a key, accepting '-' for '_' ("top-p" or "top_p"; not "--top-p"); NULL if none. */
const gen_setting *gen_setting_find(const char *key, size_t len);
/* The row whose short flag is c; NULL if none. */
const gen_setting *gen_setting_find_short(int c);
/* Writes the long flag name without dashes ("top-p") into buf (GEN_SETTINGS_KEY_MAX bytes). */
void gen_setting_flag(const gen_setting *s, char *buf, size_t n);
/* For a name that is no longer a setting ("n"), the message that says what replaced it;
 * NULL otherwise. */
const char *gen_setting_retired(const char *key, size_t len);

void gen_settings_init(gen_settings *s);
void gen_settings_free(gen_settings *s);
/* dst (initialised, or zeroed) becomes a deep copy of src. RLHF_ERR_NOMEM possible. */
int gen_settings_copy(gen_settings *dst, const gen_settings *src, rlhf_error *err);
/* The values set in `over` replace dst's (stop strings: over's, when it has any). */
int gen_settings_merge(gen_settings *dst, const gen_settings *over, rlhf_error *err);

/* Parses `value` for setting `s` and stores it (value NULL: a BOOL alone, i.e. on). The
 * value "default" unsets it (stop: removes every stop string). Errors are RLHF_ERR_INVALID with
 * a message "NAME: expected ..., got 'VALUE'", NAME being `name` when given (e.g. "--top-p"),
 * else the key. */
int gen_settings_set(gen_settings *st, const gen_setting *s, const char *value, const char *name, rlhf_error *err);
/* gen_settings_set by key ("top_p"); an unknown or retired key is RLHF_ERR_INVALID naming it. */
int gen_settings_set_key(gen_settings *st, const char *key, const char *value, rlhf_error *err);
/* Forgets a value (back to its default). */
void gen_settings_unset(gen_settings *st, gen_setting_id id);

/* The strategy these settings select before the model is consulted: the one given, else beam
 * when beams is given, sample when a sampling filter is given, else greedy (the model's
 * generation_config may still turn an unset strategy into sampling; see resolve). */
gen_strategy gen_settings_strategy(const gen_settings *s);

/* Refuses settings that would be silently ignored: beams / length_penalty / early_stopping
 * without beam search; sampling filters (temperature, top_k, top_p, min_p) with greedy or beam;
 * penalties or stop strings with beam search; more candidates than beams. RLHF_ERR_INVALID with
 * a message naming the key (as "--key-flag" when `flags` is 1, else as "key"). */
int gen_settings_check(const gen_settings *s, int flags, rlhf_error *err);

/* ---- presets ---- */

typedef struct {
    char *name; /* owned */
    char *spec; /* owned; a spec whose first word is a strategy */
} gen_preset;

/* Built-in presets (greedy, beam, balanced, creative) followed by user-defined ones.
 * gen_presets_init / gen_presets_free (safe on a zeroed struct and twice). */
typedef struct {
    gen_preset *items; /* (n) owned */
    int n;
} gen_presets;

int gen_presets_init(gen_presets *p, rlhf_error *err);
void gen_presets_free(gen_presets *p);
/* Adds (or replaces) a preset. The name is a word of letters, digits, '_' or '-' that is not a
 * strategy; the spec must parse and pass gen_settings_check. The strings are copied. */
int gen_presets_add(gen_presets *p, const char *name, const char *spec, rlhf_error *err);
/* The preset of a name; NULL if none. */
const gen_preset *gen_presets_find(const gen_presets *p, const char *name, size_t len);

/* ---- specs ---- */

/* Parses one spec ("sample top_k=40", "creative seed=3") into out (initialised by the call):
 * the first word is a strategy (greedy, sample, beam) or, when presets is not NULL, a preset,
 * whose settings the later words override. The result passes gen_settings_check. Errors are
 * RLHF_ERR_INVALID quoting the spec. */
int gen_settings_parse_spec(gen_settings *out, const char *spec, const gen_presets *presets, rlhf_error *err);

#define GEN_COMPARE_MAX 8

/* A compare list: specs separated by ';' (empty ones skipped). */
typedef struct {
    char *text[GEN_COMPARE_MAX]; /* each spec's text, trimmed; owned */
    gen_settings spec[GEN_COMPARE_MAX];
    int n;
} gen_compare;

/* Parses "greedy; beam beams=4; sample top_k=40" into out (initialised by the call). `base`
 * (may be NULL) holds the settings outside the list, which apply to every spec where they mean
 * something; its stop strings are refused for a beam spec. At most GEN_COMPARE_MAX specs; none
 * is an error. gen_compare_free is safe on a zeroed struct and twice. */
int gen_compare_parse(gen_compare *out, const char *list, const gen_settings *base, const gen_presets *presets,
                      rlhf_error *err);
void gen_compare_free(gen_compare *c);

/* ---- resolution and rendering ---- */

/* Fills p from the settings, the model's generation_config defaults d (NULL: none), its
 * context and the prompt length: strategy as gen_settings_strategy (or sample when unset and d
 * says do_sample); temperature / top_k / top_p / repeat_penalty from d when unset (else 1, 50,
 * 1, 1); max_tokens 128 (or d's max_new_tokens), cut to what the context leaves after the
 * prompt when not given; beams 4 for beam search; seed 0; EOS from d unless ignore_eos. The stop
 * strings of p are borrowed from s. */
void gen_settings_resolve(const gen_settings *s, const model_gen_defaults *d, int context, int n_prompt,
                          gen_params *p);

/* The settings in force, one line per table row: "top_p 0.9" followed by "(default)" when
 * not given, resolved as gen_settings_resolve does with d (may be NULL). *out is a new
 * NUL-terminated string the caller frees. */
int gen_settings_render(const gen_settings *s, const model_gen_defaults *d, char **out, rlhf_error *err);
/* The flag lines of --help: "  -k, --top-k K   help (default: ...)", one row each. */
int gen_settings_help(char **out, rlhf_error *err);

#endif
