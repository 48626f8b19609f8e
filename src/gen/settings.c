/* settings.c — the decoding settings table and everything derived from it (see settings.h).
 *
 * Each row says where its value lands in gen_params (params_offset), so resolving explicit
 * values is one loop over the table rather than a line per setting. */
#include "src/gen/settings.h"

#include <errno.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GP(member) ((long)offsetof(gen_params, member))

static const gen_setting g_rows[GEN_SETTING_COUNT] = {
    {GEN_SETTING_STRATEGY, "strategy", 's', GEN_SETTING_TYPE_CHOICE, 0, 2, "S",
      "greedy (sample with a sampling flag or do_sample; beam with beams)",
      "greedy, sample or beam", -1},
    {GEN_SETTING_TEMPERATURE, "temperature", 't', GEN_SETTING_TYPE_FLOAT, 0, 100, "T",
      "generation_config's, else 1", "sampling temperature (0 = greedy); implies sampling", GP(sampling.temperature)},
    {GEN_SETTING_TOP_K, "top_k", 'k', GEN_SETTING_TYPE_INT, 0, 1 << 24, "K", "generation_config's, else 50",
      "keep the K most likely tokens (0 = off); implies sampling", GP(sampling.top_k)},
    {GEN_SETTING_TOP_P, "top_p", 0, GEN_SETTING_TYPE_FLOAT, 1e-9, 1, "P", "generation_config's, else 1 (off)",
      "nucleus sampling: smallest set with probability >= P; implies sampling", GP(sampling.top_p)},
    {GEN_SETTING_MIN_P, "min_p", 0, GEN_SETTING_TYPE_FLOAT, 0, 1, "P", "0 (off)",
      "drop tokens below P times the top probability; implies sampling", GP(sampling.min_p)},
    {GEN_SETTING_REPEAT_PENALTY, "repeat_penalty", 0, GEN_SETTING_TYPE_FLOAT, 1e-6, 100, "R",
      "generation_config's, else 1 (off)", "divide positive / multiply negative logits of seen tokens", GP(sampling.repeat_penalty)},
    {GEN_SETTING_PRESENCE_PENALTY, "presence_penalty", 0, GEN_SETTING_TYPE_FLOAT, -100, 100, "X", "0 (off)",
      "subtract X from the logits of seen tokens", GP(sampling.presence_penalty)},
    {GEN_SETTING_FREQUENCY_PENALTY, "frequency_penalty", 0, GEN_SETTING_TYPE_FLOAT, -100, 100, "X", "0 (off)",
      "subtract X times the count of seen tokens", GP(sampling.frequency_penalty)},
    {GEN_SETTING_NO_REPEAT_NGRAM, "no_repeat_ngram", 0, GEN_SETTING_TYPE_INT, 0, 64, "N", "0 (off)",
      "never repeat an N-gram (all strategies)", GP(sampling.no_repeat_ngram_size)},
    {GEN_SETTING_BEAMS, "beams", 0, GEN_SETTING_TYPE_INT, 1, 256, "N", "4 with beam search",
      "beam search width; implies beam search", GP(num_beams)},
    {GEN_SETTING_LENGTH_PENALTY, "length_penalty", 0, GEN_SETTING_TYPE_FLOAT, -100, 100, "X", "1",
      "beam score = sum logprob / length^X", GP(length_penalty)},
    {GEN_SETTING_EARLY_STOPPING, "early_stopping", 0, GEN_SETTING_TYPE_BOOL, 0, 1, NULL, "off",
      "stop beam search once beams hypotheses are finished", GP(early_stopping)},
    {GEN_SETTING_MAX_TOKENS, "max_tokens", 'n', GEN_SETTING_TYPE_INT, 1, 1 << 20, "N",
      "generation_config's max_new_tokens, else 128, cut to what the context leaves",
      "tokens to generate at most", GP(max_tokens)},
    {GEN_SETTING_CANDIDATES, "candidates", 0, GEN_SETTING_TYPE_INT, 1, 1024, "N", "1",
      "candidates from the same prompt (one batched pass; beam search: the best beams)", GP(n)},
    {GEN_SETTING_SEED, "seed", 0, GEN_SETTING_TYPE_U64, 0, 0, "S", "0",
      "random seed; candidate i uses (S, i)", -1},
    {GEN_SETTING_STOP, "stop", 0, GEN_SETTING_TYPE_STRINGS, 0, 0, "STR", "none",
      "stop when STR appears (repeatable; needs a tokenizer; not with beam search)", -1},
    {GEN_SETTING_IGNORE_EOS, "ignore_eos", 0, GEN_SETTING_TYPE_BOOL, 0, 1, NULL, "off",
      "do not stop at end-of-sequence tokens", -1},
    {GEN_SETTING_TRUNCATE, "truncate", 0, GEN_SETTING_TYPE_BOOL, 0, 1, NULL, "off",
      "drop the oldest prompt tokens if the prompt does not fit the context", GP(truncate_prompt)},
};

static const char *const g_strategies[] = {"greedy", "sample", "beam"}; /* gen_strategy order */

const gen_setting *gen_settings_table(int *n) {
    if (n) *n = GEN_SETTING_COUNT;
    return g_rows;
}

static int key_equal(const char *key, const char *name, size_t len) {
    if (strlen(key) != len) return 0;
    for (size_t i = 0; i < len; i++) {
        char a = key[i], b = name[i] == '-' ? '_' : name[i];
        if (a != b) return 0;
    }
    return 1;
}

const gen_setting *gen_setting_find(const char *key, size_t len) {
    const gen_setting *t = gen_settings_table(NULL);
    for (int i = 0; i < GEN_SETTING_COUNT; i++)
        if (key_equal(t[i].key, key, len)) return &t[i];
    return NULL;
}

const gen_setting *gen_setting_find_short(int c) {
    const gen_setting *t = gen_settings_table(NULL);
    for (int i = 0; i < GEN_SETTING_COUNT; i++)
        if (c && t[i].short_flag == c) return &t[i];
    return NULL;
}

void gen_setting_flag(const gen_setting *s, char *buf, size_t n) {
    size_t i = 0;
    for (; s->key[i] && i + 1 < n; i++) buf[i] = s->key[i] == '_' ? '-' : s->key[i];
    if (n) buf[i < n ? i : n - 1] = 0;
}

const char *gen_setting_retired(const char *key, size_t len) {
    if (key_equal("n", key, len))
        return "'n' is no longer a setting: the number of candidates is --candidates N (candidates=N in a spec); "
               "-n is --max-tokens";
    return NULL;
}

/* How a setting is named in messages: "--top-p" for flags, "top_p" otherwise. */
static const char *setting_name(const gen_setting *s, int flags, char *buf, size_t n) {
    if (!flags) return s->key;
    char f[GEN_SETTINGS_KEY_MAX];
    gen_setting_flag(s, f, sizeof f);
    snprintf(buf, n, "--%s", f);
    return buf;
}

/* ---- values ---- */

void gen_settings_init(gen_settings *s) { memset(s, 0, sizeof *s); }

static void stops_clear(gen_settings *s) {
    for (int i = 0; i < s->n_stop; i++) free(s->stop[i]);
    memset(s->stop, 0, sizeof s->stop);
    s->n_stop = 0;
}

void gen_settings_free(gen_settings *s) {
    stops_clear(s);
    memset(s, 0, sizeof *s);
}

static int stops_copy(gen_settings *dst, const gen_settings *src, rlhf_error *err) {
    stops_clear(dst);
    for (int i = 0; i < src->n_stop; i++) {
        dst->stop[i] = strdup(src->stop[i]);
        if (!dst->stop[i]) {
            stops_clear(dst);
            return rlhf_errorf(err, RLHF_ERR_NOMEM, "settings: out of memory");
        }
        dst->n_stop = i + 1;
    }
    dst->set[GEN_SETTING_STOP] = src->set[GEN_SETTING_STOP];
    return RLHF_OK;
}

int gen_settings_copy(gen_settings *dst, const gen_settings *src, rlhf_error *err) {
    if (dst == src) return RLHF_OK;
    stops_clear(dst);
    memcpy(dst->set, src->set, sizeof dst->set);
    memcpy(dst->value, src->value, sizeof dst->value);
    dst->seed = src->seed;
    return stops_copy(dst, src, err);
}

int gen_settings_merge(gen_settings *dst, const gen_settings *over, rlhf_error *err) {
    for (int k = 0; k < GEN_SETTING_COUNT; k++) {
        if (!over->set[k] || k == GEN_SETTING_STOP) continue;
        dst->set[k] = 1;
        dst->value[k] = over->value[k];
        if (k == GEN_SETTING_SEED) dst->seed = over->seed;
    }
    if (over->set[GEN_SETTING_STOP] && over != dst) return stops_copy(dst, over, err);
    return RLHF_OK;
}

void gen_settings_unset(gen_settings *st, gen_setting_id id) {
    if (id < 0 || id >= GEN_SETTING_COUNT) return;
    if (id == GEN_SETTING_STOP) stops_clear(st);
    if (id == GEN_SETTING_SEED) st->seed = 0;
    st->set[id] = 0;
    st->value[id] = 0;
}

static int parse_bool(const char *v, int *out) {
    static const char *const on[] = {"1", "true", "on", "yes"}, *const off[] = {"0", "false", "off", "no"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(v, on[i]) == 0) return *out = 1, 1;
        if (strcmp(v, off[i]) == 0) return *out = 0, 1;
    }
    return 0;
}

int gen_settings_set(gen_settings *st, const gen_setting *s, const char *value, const char *name, rlhf_error *err) {
    const char *who = name ? name : s->key;
    if (value && strcmp(value, "default") == 0) {
        gen_settings_unset(st, s->id);
        return RLHF_OK;
    }
    if (!value && s->type != GEN_SETTING_TYPE_BOOL)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "%s: needs a value", who);
    switch (s->type) {
    case GEN_SETTING_TYPE_BOOL: {
        int b = 1;
        if (value && !parse_bool(value, &b))
            return rlhf_errorf(err, RLHF_ERR_INVALID, "%s: expected on or off (1/0, true/false), got '%s'", who, value);
        st->value[s->id] = b;
        break;
    }
    case GEN_SETTING_TYPE_CHOICE: {
        int k = 0;
        while (k < 3 && strcmp(value, g_strategies[k]) != 0) k++;
        if (k == 3)
            return rlhf_errorf(err, RLHF_ERR_INVALID, "%s: expected greedy, sample or beam, got '%s'", who, value);
        st->value[s->id] = k;
        break;
    }
    case GEN_SETTING_TYPE_U64: {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(value, &end, 0);
        if (errno || end == value || *end || value[0] == '-' || value[0] == ' ')
            return rlhf_errorf(err, RLHF_ERR_INVALID, "%s: expected a whole number >= 0, got '%s'", who, value);
        st->seed = (uint64_t)x;
        break;
    }
    case GEN_SETTING_TYPE_STRINGS: {
        if (!value[0]) return rlhf_errorf(err, RLHF_ERR_INVALID, "%s: the string is empty", who);
        if (st->n_stop == GEN_SETTINGS_MAX_STOP)
            return rlhf_errorf(err, RLHF_ERR_INVALID, "%s: at most %d strings", who, GEN_SETTINGS_MAX_STOP);
        char *c = strdup(value);
        if (!c) return rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", who);
        st->stop[st->n_stop++] = c;
        break;
    }
    case GEN_SETTING_TYPE_FLOAT:
    case GEN_SETTING_TYPE_INT: {
        char *end;
        errno = 0;
        double x = strtod(value, &end);
        const int whole = s->type == GEN_SETTING_TYPE_INT;
        if (errno || end == value || *end || !isfinite(x) || x < s->lo || x > s->hi || (whole && x != floor(x))) {
            if (whole)
                return rlhf_errorf(err, RLHF_ERR_INVALID, "%s: expected a whole number in %.0f..%.0f, got '%s'", who,
                                   s->lo, s->hi, value);
            return rlhf_errorf(err, RLHF_ERR_INVALID, "%s: expected a number in [%g, %g], got '%s'", who, s->lo, s->hi,
                               value);
        }
        st->value[s->id] = x;
        break;
    }
    }
    st->set[s->id] = 1;
    return RLHF_OK;
}

int gen_settings_set_key(gen_settings *st, const char *key, const char *value, rlhf_error *err) {
    const gen_setting *s = gen_setting_find(key, strlen(key));
    if (!s) {
        const char *why = gen_setting_retired(key, strlen(key));
        if (why) return rlhf_errorf(err, RLHF_ERR_INVALID, "%s", why);
        return rlhf_errorf(err, RLHF_ERR_INVALID, "unknown setting '%s'", key);
    }
    return gen_settings_set(st, s, value, NULL, err);
}

/* ---- strategy and validation ---- */

static int given(const gen_settings *s, gen_setting_id id) {
    if (!s->set[id]) return 0;
    /* a boolean set to off asks for nothing, so it cannot be ignored */
    return g_rows[id].type == GEN_SETTING_TYPE_BOOL ? s->value[id] != 0 : 1;
}

static int sampling_given(const gen_settings *s) {
    return given(s, GEN_SETTING_TEMPERATURE) || given(s, GEN_SETTING_TOP_K) || given(s, GEN_SETTING_TOP_P) ||
           given(s, GEN_SETTING_MIN_P);
}

gen_strategy gen_settings_strategy(const gen_settings *s) {
    if (s->set[GEN_SETTING_STRATEGY]) return (gen_strategy)(int)s->value[GEN_SETTING_STRATEGY];
    /* beams alone implies beam search, as num_beams > 1 does in Hugging Face's generate */
    if (s->set[GEN_SETTING_BEAMS]) return GEN_STRATEGY_BEAM;
    return sampling_given(s) ? GEN_STRATEGY_SAMPLE : GEN_STRATEGY_GREEDY;
}

int gen_settings_check(const gen_settings *s, int flags, rlhf_error *err) {
    char nb[GEN_SETTINGS_KEY_MAX + 2];
    const gen_strategy strat = gen_settings_strategy(s);
    if (strat != GEN_STRATEGY_BEAM) {
        static const gen_setting_id beam_only[] = {GEN_SETTING_BEAMS, GEN_SETTING_LENGTH_PENALTY,
                                                   GEN_SETTING_EARLY_STOPPING};
        for (size_t i = 0; i < sizeof beam_only / sizeof beam_only[0]; i++)
            if (given(s, beam_only[i]))
                return rlhf_errorf(err, RLHF_ERR_INVALID, "%s needs beam search (the strategy is %s)",
                                   setting_name(&g_rows[beam_only[i]], flags, nb, sizeof nb), gen_strategy_name(strat));
    }
    if (strat == GEN_STRATEGY_GREEDY) {
        /* greedy keeps the penalties (they change the argmax) but not the sampling filters */
        static const gen_setting_id filters[] = {GEN_SETTING_TEMPERATURE, GEN_SETTING_TOP_K, GEN_SETTING_TOP_P,
                                                 GEN_SETTING_MIN_P};
        for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++)
            if (given(s, filters[i]))
                return rlhf_errorf(err, RLHF_ERR_INVALID, "%s has no effect on greedy decoding (it applies to sampling)",
                                   setting_name(&g_rows[filters[i]], flags, nb, sizeof nb));
    }
    if (strat == GEN_STRATEGY_BEAM) {
        static const gen_setting_id ignored[] = {GEN_SETTING_TEMPERATURE,      GEN_SETTING_TOP_K,
                                                 GEN_SETTING_TOP_P,            GEN_SETTING_MIN_P,
                                                 GEN_SETTING_REPEAT_PENALTY,   GEN_SETTING_PRESENCE_PENALTY,
                                                 GEN_SETTING_FREQUENCY_PENALTY};
        for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++)
            if (given(s, ignored[i]))
                return rlhf_errorf(err, RLHF_ERR_INVALID,
                                   "%s has no effect on beam search (it applies to greedy and sampling)",
                                   setting_name(&g_rows[ignored[i]], flags, nb, sizeof nb));
        if (s->n_stop > 0)
            return rlhf_errorf(err, RLHF_ERR_INVALID, "%s is not supported with beam search",
                               setting_name(&g_rows[GEN_SETTING_STOP], flags, nb, sizeof nb));
        const int beams = s->set[GEN_SETTING_BEAMS] ? (int)s->value[GEN_SETTING_BEAMS] : 4;
        if (s->set[GEN_SETTING_CANDIDATES] && (int)s->value[GEN_SETTING_CANDIDATES] > beams) {
            char nc[GEN_SETTINGS_KEY_MAX + 2];
            return rlhf_errorf(err, RLHF_ERR_INVALID, "beam search returns at most %s (%d) candidates; %s %d asks for more",
                               setting_name(&g_rows[GEN_SETTING_BEAMS], flags, nb, sizeof nb), beams,
                               setting_name(&g_rows[GEN_SETTING_CANDIDATES], flags, nc, sizeof nc),
                               (int)s->value[GEN_SETTING_CANDIDATES]);
        }
    }
    return RLHF_OK;
}

/* ---- specs ---- */

static int is_strategy(const char *w, size_t len, gen_strategy *out) {
    for (int k = 0; k < 3; k++)
        if (strlen(g_strategies[k]) == len && memcmp(w, g_strategies[k], len) == 0) {
            *out = (gen_strategy)k;
            return 1;
        }
    return 0;
}

static int spec_parse(gen_settings *out, const char *spec, const gen_presets *presets, rlhf_error *err) {
    gen_settings_init(out);
    const char *p = spec;
    int first = 1, rc = RLHF_OK;
    char word[512];
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        size_t len = strcspn(p, " \t\n");
        if (len >= sizeof word) {
            rc = rlhf_errorf(err, RLHF_ERR_INVALID, "\"%s\": a word is too long", spec);
            goto fail;
        }
        memcpy(word, p, len);
        word[len] = 0;
        p += len;
        char *eq = strchr(word, '=');
        if (first) {
            first = 0;
            gen_strategy st;
            const gen_preset *pr = presets && !eq ? gen_presets_find(presets, word, len) : NULL;
            if (!eq && is_strategy(word, len, &st)) {
                out->set[GEN_SETTING_STRATEGY] = 1;
                out->value[GEN_SETTING_STRATEGY] = st;
                continue;
            }
            if (pr) {
                /* a preset's own spec starts with a strategy, so this does not recurse further */
                gen_settings base;
                if ((rc = spec_parse(&base, pr->spec, NULL, err))) goto fail;
                rc = gen_settings_merge(out, &base, err);
                gen_settings_free(&base);
                if (rc) goto fail;
                continue;
            }
            if (!eq) {
                rc = rlhf_errorf(err, RLHF_ERR_INVALID, "\"%s\": unknown strategy%s '%s' (greedy, sample, beam%s)", spec,
                                 presets ? " or preset" : "", word, presets ? ", or a preset" : "");
                goto fail;
            }
            rc = rlhf_errorf(err, RLHF_ERR_INVALID, "\"%s\": does not start with a strategy (greedy, sample, beam)",
                             spec);
            goto fail;
        }
        size_t klen = eq ? (size_t)(eq - word) : len;
        const gen_setting *s = gen_setting_find(word, klen);
        if (!s) {
            const char *why = gen_setting_retired(word, klen);
            if (why) rc = rlhf_errorf(err, RLHF_ERR_INVALID, "\"%s\": %s", spec, why);
            else rc = rlhf_errorf(err, RLHF_ERR_INVALID, "\"%s\": unknown setting '%.*s'", spec, (int)klen, word);
            goto fail;
        }
        if (!eq && s->type != GEN_SETTING_TYPE_BOOL) {
            rc = rlhf_errorf(err, RLHF_ERR_INVALID, "\"%s\": %s needs a value (%s=%s)", spec, s->key, s->key, s->metavar);
            goto fail;
        }
        if ((rc = gen_settings_set(out, s, eq ? eq + 1 : NULL, NULL, err))) {
            rlhf_error_prefix(err, "\"%s\": ", spec);
            goto fail;
        }
    }
    if (first) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "\"%s\": empty spec", spec);
        goto fail;
    }
    if ((rc = gen_settings_check(out, 0, err))) {
        rlhf_error_prefix(err, "\"%s\": ", spec);
        goto fail;
    }
    return RLHF_OK;
fail:
    gen_settings_free(out);
    return rc;
}

int gen_settings_parse_spec(gen_settings *out, const char *spec, const gen_presets *presets, rlhf_error *err) {
    return spec_parse(out, spec, presets, err);
}

void gen_compare_free(gen_compare *c) {
    for (int i = 0; i < c->n; i++) {
        free(c->text[i]);
        gen_settings_free(&c->spec[i]);
    }
    memset(c, 0, sizeof *c);
}

int gen_compare_parse(gen_compare *out, const char *list, const gen_settings *base, const gen_presets *presets,
                      rlhf_error *err) {
    memset(out, 0, sizeof *out);
    int rc = RLHF_OK;
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ";");
        const char *a = p, *b = p + len;
        p = *b ? b + 1 : b;
        while (a < b && (*a == ' ' || *a == '\t' || *a == '\n')) a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\n')) b--;
        if (a == b) continue;
        if (out->n == GEN_COMPARE_MAX) {
            rc = rlhf_errorf(err, RLHF_ERR_INVALID, "at most %d strategies", GEN_COMPARE_MAX);
            goto fail;
        }
        char *text = strndup(a, (size_t)(b - a));
        if (!text) {
            rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "compare: out of memory");
            goto fail;
        }
        if ((rc = spec_parse(&out->spec[out->n], text, presets, err))) {
            free(text);
            goto fail;
        }
        out->text[out->n++] = text;
        if (base && base->n_stop > 0 && gen_settings_strategy(&out->spec[out->n - 1]) == GEN_STRATEGY_BEAM) {
            rc = rlhf_errorf(err, RLHF_ERR_INVALID, "\"%s\": stop strings are not supported with beam search", text);
            goto fail;
        }
    }
    if (out->n == 0) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "no strategies in \"%s\"", list);
        goto fail;
    }
    return RLHF_OK;
fail:
    gen_compare_free(out);
    return rc;
}

/* ---- presets ---- */

static const struct {
    const char *name, *spec;
} g_builtin_presets[] = {
    {"greedy", "greedy"},
    {"beam", "beam beams=4"},
    /* the common "chat" setting: a little cooler than the model, the long tail cut */
    {"balanced", "sample temperature=0.7 top_p=0.9"},
    /* the model's own distribution, only its far tail cut */
    {"creative", "sample temperature=1.0 top_p=0.98"},
};

void gen_presets_free(gen_presets *p) {
    for (int i = 0; i < p->n; i++) {
        free(p->items[i].name);
        free(p->items[i].spec);
    }
    free(p->items);
    memset(p, 0, sizeof *p);
}

const gen_preset *gen_presets_find(const gen_presets *p, const char *name, size_t len) {
    for (int i = 0; i < p->n; i++)
        if (strlen(p->items[i].name) == len && memcmp(p->items[i].name, name, len) == 0) return &p->items[i];
    return NULL;
}

static int preset_store(gen_presets *p, const char *name, const char *spec, rlhf_error *err) {
    char *n = strdup(name), *s = strdup(spec);
    if (!n || !s) goto nomem;
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->items[i].name, name) == 0) {
            free(p->items[i].name);
            free(p->items[i].spec);
            p->items[i].name = n;
            p->items[i].spec = s;
            return RLHF_OK;
        }
    gen_preset *grown = realloc(p->items, (size_t)(p->n + 1) * sizeof *grown);
    if (!grown) goto nomem;
    p->items = grown;
    p->items[p->n].name = n;
    p->items[p->n].spec = s;
    p->n++;
    return RLHF_OK;
nomem:
    free(n);
    free(s);
    return rlhf_errorf(err, RLHF_ERR_NOMEM, "presets: out of memory");
}

int gen_presets_init(gen_presets *p, rlhf_error *err) {
    memset(p, 0, sizeof *p);
    for (size_t i = 0; i < sizeof g_builtin_presets / sizeof g_builtin_presets[0]; i++) {
        int rc = preset_store(p, g_builtin_presets[i].name, g_builtin_presets[i].spec, err);
        if (rc) {
            gen_presets_free(p);
            return rc;
        }
    }
    return RLHF_OK;
}

int gen_presets_add(gen_presets *p, const char *name, const char *spec, rlhf_error *err) {
    size_t len = strlen(name);
    gen_strategy st;
    if (len == 0 || len > 64 || strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != len)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "preset name '%s': use 1-64 letters, digits, '_' or '-'", name);
    if (is_strategy(name, len, &st))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "preset name '%s' is a strategy; choose another", name);
    /* presets may build on presets, but are stored as written; check they parse now */
    gen_settings probe;
    int rc = spec_parse(&probe, spec, p, err);
    if (rc) return rlhf_error_prefix(err, "preset '%s': ", name), rc;
    gen_settings_free(&probe);
    /* a spec naming another preset is stored expanded to a strategy spec, so lookups never chain */
    const char *first_end = spec + strspn(spec, " \t\n");
    size_t wl = strcspn(first_end, " \t\n");
    const gen_preset *base = is_strategy(first_end, wl, &st) ? NULL : gen_presets_find(p, first_end, wl);
    if (!base) return preset_store(p, name, spec, err);
    size_t n = strlen(base->spec) + strlen(first_end + wl) + 2;
    char *joined = malloc(n);
    if (!joined) return rlhf_errorf(err, RLHF_ERR_NOMEM, "presets: out of memory");
    snprintf(joined, n, "%s %s", base->spec, first_end + wl);
    rc = preset_store(p, name, joined, err);
    free(joined);
    return rc;
}

/* ---- resolution ---- */

void gen_settings_resolve(const gen_settings *s, const model_gen_defaults *d, int context, int n_prompt,
                          gen_params *p) {
    static const model_gen_defaults none;
    if (!d) d = &none;
    gen_params_defaults(p);
    p->strategy = gen_settings_strategy(s);
    if (!s->set[GEN_SETTING_STRATEGY] && p->strategy == GEN_STRATEGY_GREEDY && d->has_do_sample && d->do_sample)
        p->strategy = GEN_STRATEGY_SAMPLE;
    sampler_params *sp = &p->sampling;
    sp->temperature = d->has_temperature ? d->temperature : 1.0f;
    sp->top_k = d->has_top_k ? d->top_k : 50;
    sp->top_p = d->has_top_p ? d->top_p : 1.0f;
    sp->repeat_penalty = d->has_repetition_penalty ? d->repetition_penalty : 1.0f;
    p->num_beams = p->strategy == GEN_STRATEGY_BEAM ? 4 : 1;
    p->max_tokens = d->has_max_new_tokens && d->max_new_tokens > 0 ? d->max_new_tokens : 128;
    /* explicit values: stored where the table says */
    for (int k = 0; k < GEN_SETTING_COUNT; k++) {
        if (!s->set[k] || g_rows[k].params_offset < 0) continue;
        char *at = (char *)p + g_rows[k].params_offset;
        if (g_rows[k].type == GEN_SETTING_TYPE_FLOAT) {
            float f = (float)s->value[k];
            memcpy(at, &f, sizeof f);
        } else {
            int i = (int)s->value[k];
            memcpy(at, &i, sizeof i);
        }
    }
    if (s->set[GEN_SETTING_SEED]) p->seed = s->seed;
    if (p->strategy == GEN_STRATEGY_BEAM && p->n > p->num_beams) p->n = p->num_beams;
    /* not asked for: fit what the context leaves after the prompt */
    if (!s->set[GEN_SETTING_MAX_TOKENS] && n_prompt + p->max_tokens > context && context - n_prompt >= 1)
        p->max_tokens = context - n_prompt;
    if (given(s, GEN_SETTING_IGNORE_EOS)) {
        p->n_eos = 0;
    } else if (d->n_eos > 0) {
        p->n_eos = d->n_eos < GEN_MAX_EOS ? d->n_eos : GEN_MAX_EOS;
        memcpy(p->eos_ids, d->eos_ids, (size_t)p->n_eos * sizeof(int32_t));
    }
    p->stop = (const char *const *)s->stop;
    p->n_stop = s->n_stop;
}

/* ---- rendering ---- */

/* Text is written to a memory stream (open_memstream), which grows as needed. */
typedef struct {
    FILE *f;
    char *buf;
    size_t len;
} text_out;

static int text_open(text_out *t, rlhf_error *err) {
    t->buf = NULL;
    t->f = open_memstream(&t->buf, &t->len);
    return t->f ? RLHF_OK : rlhf_errorf(err, RLHF_ERR_NOMEM, "settings: out of memory");
}

static int text_close(text_out *t, char **out, rlhf_error *err) {
    const int bad = ferror(t->f);
    if (fclose(t->f) != 0 || bad) {
        free(t->buf);
        *out = NULL;
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "settings: out of memory");
    }
    *out = t->buf;
    return RLHF_OK;
}

int gen_settings_render(const gen_settings *s, const model_gen_defaults *d, char **out, rlhf_error *err) {
    gen_params p;
    /* a context with room for anything: what max_tokens resolves to before a prompt is known */
    gen_settings_resolve(s, d, 1 << 30, 0, &p);
    text_out t;
    int rc = text_open(&t, err);
    if (rc) return rc;
    FILE *b = t.f;
    for (int k = 0; k < GEN_SETTING_COUNT; k++) {
        const gen_setting *r = &g_rows[k];
        char v[64];
        if (k == GEN_SETTING_STRATEGY) {
            snprintf(v, sizeof v, "%s", gen_strategy_name(p.strategy));
        } else if (k == GEN_SETTING_SEED) {
            snprintf(v, sizeof v, "%llu", (unsigned long long)p.seed);
        } else if (k == GEN_SETTING_IGNORE_EOS) {
            snprintf(v, sizeof v, "%s", given(s, GEN_SETTING_IGNORE_EOS) ? "on" : "off");
        } else if (k == GEN_SETTING_STOP) {
            fprintf(b, "%-18s", r->key);
            for (int i = 0; i < s->n_stop; i++) fprintf(b, "%s\"%s\"", i ? ", " : "", s->stop[i]);
            fprintf(b, "%s\n", s->n_stop ? "" : "none (default)");
            continue;
        } else {
            const char *at = (const char *)&p + r->params_offset;
            if (r->type == GEN_SETTING_TYPE_FLOAT) {
                float f;
                memcpy(&f, at, sizeof f);
                snprintf(v, sizeof v, "%g", f);
            } else {
                int i;
                memcpy(&i, at, sizeof i);
                if (r->type == GEN_SETTING_TYPE_BOOL) snprintf(v, sizeof v, "%s", i ? "on" : "off");
                else snprintf(v, sizeof v, "%d", i);
            }
        }
        fprintf(b, "%-18s%s%s\n", r->key, v, s->set[k] ? "" : " (default)");
    }
    return text_close(&t, out, err);
}

int gen_settings_help(char **out, rlhf_error *err) {
    text_out t;
    int rc = text_open(&t, err);
    if (rc) return rc;
    FILE *b = t.f;
    for (int k = 0; k < GEN_SETTING_COUNT; k++) {
        const gen_setting *s = &g_rows[k];
        char flag[GEN_SETTINGS_KEY_MAX], left[96];
        gen_setting_flag(s, flag, sizeof flag);
        if (s->short_flag)
            snprintf(left, sizeof left, "  -%c, --%s%s%s", s->short_flag, flag, s->metavar ? " " : "",
                     s->metavar ? s->metavar : "");
        else
            snprintf(left, sizeof left, "      --%s%s%s", flag, s->metavar ? " " : "", s->metavar ? s->metavar : "");
        fprintf(b, "%-28s%s\n%-28s(default: %s)\n", left, s->help, "", s->default_text);
    }
    return text_close(&t, out, err);
}
