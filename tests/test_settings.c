/* test_settings.c — the decoding settings table, its value parser and validation, --compare
 * specs, presets, resolution into gen_params and rendering (src/gen/settings.h).
 *
 * Properties checked:
 *  - one table: row i has id i, keys are unique, each long flag is its key with '-' for '_',
 *    finding by key or by flag gives the same row, short flags map back to their row;
 *  - every numeric row accepts its boundary values and refuses values just outside, garbage and
 *    (whole-number rows) fractions, with a message naming the key (or the name given);
 *    booleans, the seed, the strategy and stop strings likewise; "default" unsets;
 *  - gen_settings_check refuses each kind of ignored setting, naming it, and accepts
 *    meaningful combinations;
 *  - specs: good ones parse to the right values (presets overridden by later words); each kind
 *    of bad spec is refused with a message quoting it; compare lists split, trim, and are
 *    bounded;
 *  - presets: the four built-ins parse, user presets are added, replaced, chained (stored
 *    expanded) and refused when malformed;
 *  - resolution: defaults, generation_config defaults, explicit values, the context cut;
 *  - rendering shows values and marks defaults; help lists every flag. */
#include <stdlib.h>
#include <string.h>

#include "src/gen/settings.h"
#include "tests/test_util.h"

static void test_table(void) {
    int n;
    const gen_setting *t = gen_settings_table(&n);
    CHECK(n == GEN_SETTING_COUNT, "table has every setting (%d)", n);
    for (int i = 0; i < n; i++) {
        CHECK((int)t[i].id == i, "row %d has id %d", i, (int)t[i].id);
        char flag[GEN_SETTINGS_KEY_MAX];
        gen_setting_flag(&t[i], flag, sizeof flag);
        for (size_t k = 0; k <= strlen(t[i].key); k++)
            CHECK(flag[k] == (t[i].key[k] == '_' ? '-' : t[i].key[k]), "flag of %s is its key with dashes", t[i].key);
        CHECK(gen_setting_find(t[i].key, strlen(t[i].key)) == &t[i], "find by key %s", t[i].key);
        CHECK(gen_setting_find(flag, strlen(flag)) == &t[i], "find by flag %s", flag);
        if (t[i].short_flag) CHECK(gen_setting_find_short(t[i].short_flag) == &t[i], "short flag of %s", t[i].key);
        CHECK(t[i].help && t[i].help[0] && t[i].default_text, "%s has help and a default", t[i].key);
        CHECK((t[i].metavar == NULL) == (t[i].type == GEN_SETTING_TYPE_BOOL), "%s: a metavar unless boolean", t[i].key);
        for (int j = 0; j < i; j++) {
            CHECK(strcmp(t[i].key, t[j].key) != 0, "keys unique: %s", t[i].key);
            CHECK(!t[i].short_flag || t[i].short_flag != t[j].short_flag, "short flags unique: %c", t[i].short_flag);
        }
    }
    CHECK(gen_setting_find("top_q", 5) == NULL && gen_setting_find("n", 1) == NULL, "unknown keys are not found");
    CHECK(gen_setting_retired("n", 1) && strstr(gen_setting_retired("n", 1), "candidates"),
          "'n' is retired, pointing at candidates");
    CHECK(gen_setting_find_short('n') == &t[GEN_SETTING_MAX_TOKENS], "-n is max_tokens");
}

/* Sets `value` on a fresh struct: 0 or the error, with the message in msg. */
static int try_set(const gen_setting *s, const char *value, const char *name, char *msg, gen_settings *out) {
    gen_settings st;
    gen_settings_init(&st);
    rlhf_error err = {0};
    int rc = gen_settings_set(&st, s, value, name, &err);
    snprintf(msg, 1024, "%s", err.msg);
    if (out) *out = st;
    else gen_settings_free(&st);
    return rc;
}

static void test_values(void) {
    int n;
    const gen_setting *t = gen_settings_table(&n);
    char msg[1024], v[64];
    gen_settings st;
    for (int i = 0; i < n; i++) {
        const gen_setting *s = &t[i];
        if (s->type != GEN_SETTING_TYPE_FLOAT && s->type != GEN_SETTING_TYPE_INT) continue;
        snprintf(v, sizeof v, "%.17g", s->lo);
        CHECK(try_set(s, v, NULL, msg, &st) == 0 && st.set[s->id] && st.value[s->id] == s->lo,
              "%s accepts its lower bound %s: %s", s->key, v, msg);
        gen_settings_free(&st);
        snprintf(v, sizeof v, "%.17g", s->hi);
        CHECK(try_set(s, v, NULL, msg, &st) == 0 && st.value[s->id] == s->hi, "%s accepts its upper bound %s: %s",
              s->key, v, msg);
        gen_settings_free(&st);
        /* just outside: a relative step well above double rounding, or 1 for whole numbers */
        const double step = s->type == GEN_SETTING_TYPE_INT ? 1 : (s->lo != 0 ? fabs(s->lo) * 1e-3 : 1e-6);
        snprintf(v, sizeof v, "%.17g", s->lo - step);
        CHECK(try_set(s, v, NULL, msg, NULL) == RLHF_ERR_INVALID && strstr(msg, s->key),
              "%s refuses %s below its range, naming it: %s", s->key, v, msg);
        const double hstep = s->type == GEN_SETTING_TYPE_INT ? 1 : fabs(s->hi) * 1e-3;
        snprintf(v, sizeof v, "%.17g", s->hi + hstep);
        CHECK(try_set(s, v, NULL, msg, NULL) == RLHF_ERR_INVALID && strstr(msg, s->key),
              "%s refuses %s above its range, naming it: %s", s->key, v, msg);
        CHECK(try_set(s, "abc", NULL, msg, NULL) == RLHF_ERR_INVALID && strstr(msg, s->key) && strstr(msg, "abc"),
              "%s refuses garbage: %s", s->key, msg);
        CHECK(try_set(s, "1x", NULL, msg, NULL) == RLHF_ERR_INVALID, "%s refuses trailing characters", s->key);
        CHECK(try_set(s, "nan", NULL, msg, NULL) == RLHF_ERR_INVALID, "%s refuses nan", s->key);
        CHECK(try_set(s, NULL, NULL, msg, NULL) == RLHF_ERR_INVALID, "%s needs a value", s->key);
        if (s->type == GEN_SETTING_TYPE_INT) {
            snprintf(v, sizeof v, "%.17g", s->lo + 0.5);
            CHECK(try_set(s, v, NULL, msg, NULL) == RLHF_ERR_INVALID && strstr(msg, "whole"),
                  "%s refuses a fraction: %s", s->key, msg);
        }
    }
    CHECK(try_set(&t[GEN_SETTING_TOP_P], "1.5", "--top-p", msg, NULL) == RLHF_ERR_INVALID &&
              strncmp(msg, "--top-p:", 8) == 0,
          "the caller's name replaces the key: %s", msg);
    /* booleans */
    const gen_setting *b = &t[GEN_SETTING_EARLY_STOPPING];
    CHECK(try_set(b, NULL, NULL, msg, &st) == 0 && st.value[b->id] == 1, "a boolean alone is on");
    gen_settings_free(&st);
    CHECK(try_set(b, "off", NULL, msg, &st) == 0 && st.set[b->id] && st.value[b->id] == 0, "early_stopping=off");
    gen_settings_free(&st);
    CHECK(try_set(b, "maybe", NULL, msg, NULL) == RLHF_ERR_INVALID && strstr(msg, "early_stopping"),
          "a boolean refuses other words: %s", msg);
    /* the seed: all 64 bits */
    const gen_setting *sd = &t[GEN_SETTING_SEED];
    CHECK(try_set(sd, "18446744073709551615", NULL, msg, &st) == 0 && st.seed == UINT64_MAX, "seed 2^64-1");
    gen_settings_free(&st);
    CHECK(try_set(sd, "0", NULL, msg, &st) == 0 && st.seed == 0 && st.set[GEN_SETTING_SEED], "seed 0");
    gen_settings_free(&st);
    CHECK(try_set(sd, "18446744073709551616", NULL, msg, NULL) == RLHF_ERR_INVALID && strstr(msg, "seed"),
          "seed 2^64 refused: %s", msg);
    CHECK(try_set(sd, "-1", NULL, msg, NULL) == RLHF_ERR_INVALID, "negative seed refused");
    /* the strategy */
    const gen_setting *sg = &t[GEN_SETTING_STRATEGY];
    CHECK(try_set(sg, "beam", NULL, msg, &st) == 0 && gen_settings_strategy(&st) == GEN_STRATEGY_BEAM, "strategy beam");
    gen_settings_free(&st);
    CHECK(try_set(sg, "nucleus", NULL, msg, NULL) == RLHF_ERR_INVALID && strstr(msg, "strategy"),
          "unknown strategy refused: %s", msg);
    /* stop strings: each value adds one, at most GEN_SETTINGS_MAX_STOP, never empty */
    const gen_setting *sp = &t[GEN_SETTING_STOP];
    gen_settings_init(&st);
    rlhf_error err = {0};
    int ok = 1;
    for (int i = 0; i < GEN_SETTINGS_MAX_STOP; i++) ok &= gen_settings_set(&st, sp, "x", NULL, &err) == 0;
    CHECK(ok && st.n_stop == GEN_SETTINGS_MAX_STOP, "%d stop strings", GEN_SETTINGS_MAX_STOP);
    CHECK(gen_settings_set(&st, sp, "y", NULL, &err) == RLHF_ERR_INVALID && strstr(err.msg, "stop"),
          "one more is refused: %s", err.msg);
    CHECK(gen_settings_set(&st, sp, "default", NULL, &err) == 0 && st.n_stop == 0 && !st.set[GEN_SETTING_STOP],
          "stop=default removes them");
    CHECK(try_set(sp, "", NULL, msg, NULL) == RLHF_ERR_INVALID, "an empty stop string is refused");
    /* "default" unsets; by key; unknown and retired keys */
    CHECK(gen_settings_set_key(&st, "top-p", "0.5", &err) == 0 && st.set[GEN_SETTING_TOP_P], "set by key");
    CHECK(gen_settings_set_key(&st, "top_p", "default", &err) == 0 && !st.set[GEN_SETTING_TOP_P], "default unsets");
    CHECK(gen_settings_set_key(&st, "top_q", "1", &err) == RLHF_ERR_INVALID && strstr(err.msg, "top_q"),
          "unknown key named: %s", err.msg);
    CHECK(gen_settings_set_key(&st, "n", "2", &err) == RLHF_ERR_INVALID && strstr(err.msg, "candidates"),
          "retired key points at its successor: %s", err.msg);
    gen_settings_free(&st);
    gen_settings_free(&st); /* safe twice */
}

/* Checks a settings struct built from "key=value" pairs (NULL-terminated). */
static int check_of(const char *const *kv, int flags, char *msg) {
    gen_settings st;
    gen_settings_init(&st);
    rlhf_error err = {0};
    int rc = 0;
    for (int i = 0; kv[i] && !rc; i += 2) rc = gen_settings_set_key(&st, kv[i], kv[i + 1], &err);
    if (!rc) rc = gen_settings_check(&st, flags, &err);
    snprintf(msg, 1024, "%s", err.msg);
    gen_settings_free(&st);
    return rc;
}

static void test_check(void) {
    char msg[1024];
    static const struct {
        const char *kv[10];
        const char *needle; /* NULL: accepted */
    } cases[] = {
        {{"strategy", "beam", "temperature", "0.7", NULL}, "temperature has no effect on beam search"},
        {{"beams", "2", "top_p", "0.9", NULL}, "top_p has no effect on beam search"},
        {{"strategy", "beam", "repeat_penalty", "1.2", NULL}, "repeat_penalty"},
        {{"strategy", "beam", "stop", "x", NULL}, "stop is not supported with beam search"},
        {{"strategy", "beam", "beams", "2", "candidates", "3", NULL}, "at most beams (2)"},
        {{"strategy", "beam", "candidates", "5", NULL}, "at most beams (4)"},
        {{"strategy", "greedy", "top_k", "5", NULL}, "top_k has no effect on greedy"},
        {{"strategy", "sample", "beams", "3", NULL}, "beams needs beam search"},
        {{"length_penalty", "0.5", NULL}, "length_penalty needs beam search"},
        {{"early_stopping", "on", NULL}, "early_stopping needs beam search"},
        {{"early_stopping", "off", NULL}, NULL},
        {{"top_k", "40", NULL}, NULL},
        {{"strategy", "greedy", "repeat_penalty", "1.3", "no_repeat_ngram", "2", NULL}, NULL},
        {{"strategy", "beam", "beams", "4", "candidates", "4", "no_repeat_ngram", "2", NULL}, NULL},
        {{"strategy", "sample", "stop", "x", "candidates", "3", NULL}, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = check_of(cases[i].kv, 0, msg);
        if (cases[i].needle)
            CHECK(rc == RLHF_ERR_INVALID && strstr(msg, cases[i].needle), "case %zu refused with '%s': %s", i,
                  cases[i].needle, msg);
        else
            CHECK(rc == 0, "case %zu accepted: %s", i, msg);
    }
    static const char *const kv[] = {"strategy", "beam", "top_k", "3", NULL};
    CHECK(check_of(kv, 1, msg) && strstr(msg, "--top-k"), "flags style names the flag: %s", msg);
}

static void test_specs(void) {
    gen_presets pr;
    rlhf_error err = {0};
    CHECK(gen_presets_init(&pr, &err) == 0, "presets: %s", err.msg);
    gen_settings s;
    CHECK(gen_settings_parse_spec(&s, "sample top_k=40 temperature=0.8", NULL, &err) == 0, "spec: %s", err.msg);
    CHECK(gen_settings_strategy(&s) == GEN_STRATEGY_SAMPLE && s.value[GEN_SETTING_TOP_K] == 40 &&
              s.value[GEN_SETTING_TEMPERATURE] == 0.8 && !s.set[GEN_SETTING_TOP_P],
          "sample top_k=40 temperature=0.8");
    gen_settings_free(&s);
    CHECK(gen_settings_parse_spec(&s, "  beam beams=3\tearly_stopping no-repeat-ngram=2 ", NULL, &err) == 0, "%s", err.msg);
    CHECK(gen_settings_strategy(&s) == GEN_STRATEGY_BEAM && s.value[GEN_SETTING_BEAMS] == 3 &&
              s.value[GEN_SETTING_EARLY_STOPPING] == 1 && s.value[GEN_SETTING_NO_REPEAT_NGRAM] == 2,
          "beam, a lone boolean, a dashed key");
    gen_settings_free(&s);
    CHECK(gen_settings_parse_spec(&s, "creative seed=3 temperature=0.5", &pr, &err) == 0, "%s", err.msg);
    CHECK(gen_settings_strategy(&s) == GEN_STRATEGY_SAMPLE && s.value[GEN_SETTING_TEMPERATURE] == 0.5 &&
              fabs(s.value[GEN_SETTING_TOP_P] - 0.98) < 1e-12 && s.seed == 3,
          "a preset, overridden by later words (top_p from the preset)");
    gen_settings_free(&s);
    static const struct {
        const char *spec, *needle;
    } bad[] = {
        {"", "empty spec"},
        {"topk k=3", "unknown strategy or preset 'topk'"},
        {"top_k=3", "does not start with a strategy"},
        {"sample bogus=1", "unknown setting 'bogus'"},
        {"sample top_k", "top_k needs a value"},
        {"sample top_k=abc", "top_k: expected a whole number"},
        {"sample top_p=2", "top_p: expected a number in"},
        {"beam top_k=5", "top_k has no effect on beam search"},
        {"sample n=2", "candidates"},
        {"greedy temperature=0.5", "no effect on greedy"},
        {"creative beams=2", "beams needs beam search"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = gen_settings_parse_spec(&s, bad[i].spec, &pr, &err);
        CHECK(rc == RLHF_ERR_INVALID && strstr(err.msg, bad[i].needle) &&
                  (!bad[i].spec[0] || strstr(err.msg, bad[i].spec)),
              "bad spec \"%s\": '%s' in: %s", bad[i].spec, bad[i].needle, err.msg);
    }
    CHECK(gen_settings_parse_spec(&s, "creative", NULL, &err) == RLHF_ERR_INVALID, "no presets: a preset is unknown");

    /* compare lists */
    gen_compare c;
    CHECK(gen_compare_parse(&c, " greedy; beam beams=4 ;; sample top_k=40;", NULL, &pr, &err) == 0, "%s", err.msg);
    CHECK(c.n == 3 && strcmp(c.text[0], "greedy") == 0 && strcmp(c.text[1], "beam beams=4") == 0 &&
              gen_settings_strategy(&c.spec[2]) == GEN_STRATEGY_SAMPLE,
          "three specs, trimmed, empty ones skipped (%d)", c.n);
    gen_compare_free(&c);
    gen_compare_free(&c);
    CHECK(gen_compare_parse(&c, " ; ;", NULL, &pr, &err) == RLHF_ERR_INVALID && strstr(err.msg, "no strategies"),
          "no specs: %s", err.msg);
    CHECK(gen_compare_parse(&c, "greedy;greedy;greedy;greedy;greedy;greedy;greedy;greedy;greedy", NULL, &pr, &err) ==
                  RLHF_ERR_INVALID && strstr(err.msg, "at most 8"),
          "more than 8: %s", err.msg);
    CHECK(gen_compare_parse(&c, "greedy; sample top_q=1", NULL, &pr, &err) == RLHF_ERR_INVALID &&
              strstr(err.msg, "\"sample top_q=1\"") && c.n == 0,
          "a bad spec names itself and leaves nothing: %s", err.msg);
    gen_settings base;
    gen_settings_init(&base);
    gen_settings_set_key(&base, "stop", "x", &err);
    CHECK(gen_compare_parse(&c, "sample; beam", &base, &pr, &err) == RLHF_ERR_INVALID && strstr(err.msg, "\"beam\"") &&
              strstr(err.msg, "stop"),
          "base stop strings refused for a beam spec: %s", err.msg);
    gen_settings_free(&base);
    gen_presets_free(&pr);
}

static void test_presets(void) {
    gen_presets pr;
    rlhf_error err = {0};
    CHECK(gen_presets_init(&pr, &err) == 0, "init");
    static const char *const builtin[] = {"greedy", "beam", "balanced", "creative"};
    for (int i = 0; i < 4; i++) {
        const gen_preset *p = gen_presets_find(&pr, builtin[i], strlen(builtin[i]));
        CHECK(p != NULL, "built-in preset %s", builtin[i]);
        gen_settings s;
        CHECK(p && gen_settings_parse_spec(&s, p->spec, NULL, &err) == 0, "%s parses on its own: %s", builtin[i], err.msg);
        if (p) gen_settings_free(&s);
    }
    CHECK(gen_presets_add(&pr, "mine", "sample top_k=5", &err) == 0, "add: %s", err.msg);
    gen_settings s;
    CHECK(gen_settings_parse_spec(&s, "mine seed=1", &pr, &err) == 0 && s.value[GEN_SETTING_TOP_K] == 5 && s.seed == 1,
          "a user preset in a spec: %s", err.msg);
    gen_settings_free(&s);
    CHECK(gen_presets_add(&pr, "mine", "sample top_k=7", &err) == 0 && pr.n == 5 &&
              strcmp(gen_presets_find(&pr, "mine", 4)->spec, "sample top_k=7") == 0,
          "adding a name again replaces it");
    CHECK(gen_presets_add(&pr, "hot", "creative temperature=1.5", &err) == 0, "%s", err.msg);
    const gen_preset *hot = gen_presets_find(&pr, "hot", 3);
    CHECK(hot && strncmp(hot->spec, "sample ", 7) == 0 && strstr(hot->spec, "temperature=1.5"),
          "a preset on a preset is stored expanded: %s", hot ? hot->spec : "(none)");
    CHECK(gen_presets_add(&pr, "x", "beam top_p=0.5", &err) == RLHF_ERR_INVALID && strstr(err.msg, "preset 'x'"),
          "a preset whose spec fails the check is refused: %s", err.msg);
    CHECK(gen_presets_add(&pr, "sample", "sample", &err) == RLHF_ERR_INVALID, "a strategy name is refused");
    CHECK(gen_presets_add(&pr, "a b", "sample", &err) == RLHF_ERR_INVALID, "a name with a space is refused");
    CHECK(gen_presets_add(&pr, "", "sample", &err) == RLHF_ERR_INVALID, "an empty name is refused");
    gen_presets_free(&pr);
    gen_presets_free(&pr);
}

static void test_resolve_render(void) {
    gen_settings s;
    gen_settings_init(&s);
    gen_params p;
    gen_settings_resolve(&s, NULL, 512, 10, &p);
    CHECK(p.strategy == GEN_STRATEGY_GREEDY && p.sampling.temperature == 1.0f && p.sampling.top_k == 50 &&
              p.max_tokens == 128 && p.n == 1 && p.num_beams == 1 && p.seed == 0 && p.n_eos == -1,
          "defaults without a generation_config");
    model_gen_defaults d = {0};
    d.has_do_sample = d.do_sample = 1;
    d.has_temperature = 1;
    d.temperature = 0.6f;
    d.has_max_new_tokens = 1;
    d.max_new_tokens = 300;
    d.n_eos = 1;
    d.eos_ids[0] = 7;
    gen_settings_resolve(&s, &d, 256, 50, &p);
    CHECK(p.strategy == GEN_STRATEGY_SAMPLE && p.sampling.temperature == 0.6f && p.max_tokens == 206 && p.n_eos == 1 &&
              p.eos_ids[0] == 7,
          "generation_config: do_sample, temperature, max_new_tokens cut to the context, eos");
    rlhf_error err = {0};
    gen_settings_set_key(&s, "top_p", "0.9", &err);
    gen_settings_set_key(&s, "max_tokens", "250", &err);
    gen_settings_set_key(&s, "candidates", "3", &err);
    gen_settings_set_key(&s, "seed", "42", &err);
    gen_settings_set_key(&s, "ignore_eos", NULL, &err);
    gen_settings_set_key(&s, "truncate", NULL, &err);
    gen_settings_set_key(&s, "stop", "END", &err);
    gen_settings_resolve(&s, &d, 256, 50, &p);
    CHECK(p.sampling.top_p == 0.9f && p.max_tokens == 250 && p.n == 3 && p.seed == 42 && p.n_eos == 0 &&
              p.truncate_prompt == 1 && p.n_stop == 1 && strcmp(p.stop[0], "END") == 0,
          "explicit values land in gen_params; an explicit max_tokens is not cut");
    gen_settings_set_key(&s, "strategy", "greedy", &err);
    gen_settings_resolve(&s, &d, 256, 50, &p);
    CHECK(p.strategy == GEN_STRATEGY_GREEDY, "an explicit greedy beats do_sample");
    char *text = NULL;
    CHECK(gen_settings_render(&s, &d, &text, &err) == 0 && text, "render");
    if (text) {
        CHECK(strstr(text, "top_p             0.9\n") != NULL, "top_p shown as set:\n%s", text);
        CHECK(strstr(text, "temperature       0.6 (default)\n") != NULL, "temperature from generation_config, marked");
        CHECK(strstr(text, "stop              \"END\"\n") != NULL, "stop strings quoted");
        int lines = 0;
        for (const char *q = text; *q; q++) lines += *q == '\n';
        CHECK(lines == GEN_SETTING_COUNT, "one line per setting (%d)", lines);
    }
    free(text);
    gen_settings copy = {0};
    CHECK(gen_settings_copy(&copy, &s, &err) == 0 && copy.n_stop == 1 && copy.stop[0] != s.stop[0] &&
              copy.seed == 42,
          "a deep copy");
    gen_settings over;
    gen_settings_init(&over);
    gen_settings_set_key(&over, "top_p", "0.5", &err);
    gen_settings_set_key(&over, "stop", "Q", &err);
    CHECK(gen_settings_merge(&copy, &over, &err) == 0 && copy.value[GEN_SETTING_TOP_P] == 0.5 && copy.n_stop == 1 &&
              strcmp(copy.stop[0], "Q") == 0 && copy.value[GEN_SETTING_CANDIDATES] == 3,
          "merge: over's values win, the rest stays");
    gen_settings_free(&over);
    gen_settings_free(&copy);
    gen_settings_free(&s);
    CHECK(gen_settings_help(&text, &err) == 0 && text, "help");
    if (text) {
        int n;
        const gen_setting *t = gen_settings_table(&n);
        for (int i = 0; i < n; i++) {
            char flag[GEN_SETTINGS_KEY_MAX], want[64];
            gen_setting_flag(&t[i], flag, sizeof flag);
            snprintf(want, sizeof want, "--%s%s%s", flag, t[i].metavar ? " " : "", t[i].metavar ? t[i].metavar : "");
            CHECK(strstr(text, want) != NULL, "help lists %s", want);
        }
        CHECK(strstr(text, "-k, --top-k K") != NULL, "help shows short flags");
    }
    free(text);
}

int main(void) {
    test_table();
    test_values();
    test_check();
    test_specs();
    test_presets();
    test_resolve_render();
    return test_finish("settings");
}
