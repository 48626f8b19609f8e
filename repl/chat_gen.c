/* chat_gen.c — the REPL's generation side: the model, the prompt (conversation, shots,
 * instruction, system), decoding settings (through src/gen/settings.h, the same table and
 * parser as `rlhf generate`), streamed replies, /compare and /candidates.
 *
 * Every answer shown becomes a candidate (chat.h) carrying the settings that regenerate it:
 * its strategy's keys from the settings table, its own seed (candidate k of a run with seed S
 * is candidate 0 of a run with seed gen_candidate_seed(S, k)), max_tokens and whether BOS was
 * added. Without an explicit /set seed each generation draws a fresh seed, so a repeated prompt
 * gives a new answer; the seed used is stored all the same. */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "repl/chat.h"
#include "repl/columns.h"
#include "repl/out.h"
#include "src/core/fileio.h"

/* ---- candidates ---- */

static void cand_free(chat_cand *c) {
    free(c->text);
    free(c->ids);
    free(c->origin);
    free(c->strategy);
    free(c->decoding_json);
    free(c->model);
    memset(c, 0, sizeof *c);
}

void chat_cands_clear(chat_session *s) {
    for (int i = 0; i < s->n_cands; i++) cand_free(&s->cands[i]);
    s->n_cands = 0;
    s->hidden = 0;
    s->judged = 0;
    s->prompt_id = 0;
    s->from_queue = 0;
    free(s->prompt_text);
    free(s->prompt_messages_json);
    free(s->prompt_examples_json);
    free(s->prompt_template);
    s->prompt_text = s->prompt_messages_json = s->prompt_examples_json = s->prompt_template = NULL;
}

/* ---- the model ---- */

static const char *base_name(const char *path, char *buf, size_t n) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && path[start - 1] != '/') start--;
    snprintf(buf, n, "%.*s", (int)(len - start), path + start);
    return buf;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void print_model_line(chat_session *s) {
    const model_config *c = &s->b.m.config;
    out_printf("%s: %s, %d layers, dim %d, %d heads, vocab %d, context %d, %.2fM parameters; %s; %s\n", s->model_name,
               model_family_name(c->family), c->n_layers, c->dim, c->n_heads, c->vocab_size, c->context,
               (double)model_param_bytes(&s->b.m) / 4e6, s->b.tok ? "tokenizer" : "no tokenizer",
               s->b.chat_template ? "chat template (conversation kept)" : "no chat template (text continues)");
}

/* Loads path (and merges the adapter) into *b. Touches no session state and prints nothing, so
 * it can run on the start-up loader thread. */
static int bundle_load(model_bundle *b, const char *path, const char *adapter, rlhf_error *err) {
    int rc = model_bundle_load_merged(b, path, err);
    if (rc || !adapter) return rc;
    return model_bundle_merge_adapter(b, adapter, err);
}

/* Makes b the session's model (taking it) and says so. */
static int bundle_install(chat_session *s, model_bundle *b, const char *path, const char *adapter, double ms) {
    char name[256], aname[256], full[520];
    base_name(path, name, sizeof name);
    if (adapter) snprintf(full, sizeof full, "%s+%s", name, base_name(adapter, aname, sizeof aname));
    else snprintf(full, sizeof full, "%s", name);
    char *p = strdup(path), *n = strdup(full), *a = adapter ? strdup(adapter) : NULL;
    if (!p || !n || (adapter && !a)) {
        free(p), free(n), free(a);
        model_bundle_free(b);
        return chat_fail(s, RLHF_ERR_NOMEM, "out of memory");
    }
    gen_packed_free(&s->packed);
    model_bundle_free(&s->b);
    s->b = *b;
    rlhf_error perr = {0};
    if (gen_packed_make(&s->packed, &s->b.m, &perr)) s->packed = NULL; /* each generation then packs its own */
    s->loaded = 1;
    free(s->model_path), free(s->model_name), free(s->adapter_path);
    s->model_path = p, s->model_name = n, s->adapter_path = a;
    /* a new model starts a new conversation (the old turns were another model's answers) but
     * keeps the current prompt, so /compare or /candidates can ask the new model the same */
    char *keep = s->input;
    s->input = NULL;
    chat_cmd_reset(s, NULL);
    s->input = keep;
    out_printf("loaded ");
    print_model_line(s);
    out_printf("%s(%.0f ms)%s\n", chat_dim(s), ms, chat_reset(s));
    return 0;
}

int chat_model_load(chat_session *s, const char *path, const char *adapter) {
    chat_model_wait(s); /* a start-up load still running finishes first */
    model_bundle b;
    rlhf_error err = {0};
    double t0 = now_ms();
    if (bundle_load(&b, path, adapter, &err)) return chat_fail_err(s, &err);
    return bundle_install(s, &b, path, adapter, now_ms() - t0);
}

/* ---- loading at start-up while the prompt is already shown ---- */

struct chat_loader {
    pthread_t thread;
    char *path, *adapter;
    model_bundle b;
    rlhf_error err;
    int rc;
    double t0, t1;
};

static void *loader_main(void *arg) {
    chat_loader *l = arg;
    l->rc = bundle_load(&l->b, l->path, l->adapter, &l->err);
    l->t1 = now_ms();
    return NULL;
}

int chat_model_load_async(chat_session *s, const char *path, const char *adapter) {
    chat_loader *l = calloc(1, sizeof *l);
    if (!l || !(l->path = strdup(path)) || (adapter && !(l->adapter = strdup(adapter)))) {
        if (l) free(l->path);
        free(l);
        return chat_model_load(s, path, adapter);
    }
    l->t0 = now_ms();
    /* Ctrl-C and resizes belong to the reading thread: the loader starts with them blocked */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGWINCH);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int rc = pthread_create(&l->thread, NULL, loader_main, l);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        free(l->path), free(l->adapter), free(l);
        return chat_model_load(s, path, adapter);
    }
    s->loader = l;
    out_printf("%sloading %s in the background: type now, the first input waits for it%s\n", chat_dim(s), path,
               chat_reset(s));
    return 0;
}

int chat_model_wait(chat_session *s) {
    chat_loader *l = s->loader;
    if (!l) return 0;
    s->loader = NULL;
    double waited = now_ms();
    pthread_join(l->thread, NULL);
    waited = now_ms() - waited;
    int rc = l->rc ? chat_fail_err(s, &l->err) : bundle_install(s, &l->b, l->path, l->adapter, l->t1 - l->t0);
    if (!l->rc && waited >= 1)
        out_printf("%s(waited %.0f ms for it)%s\n", chat_dim(s), waited, chat_reset(s));
    free(l->path), free(l->adapter), free(l);
    return rc;
}

static int need_model(chat_session *s) {
    if (!s->loaded) return chat_fail(s, RLHF_ERR_INVALID, "no model loaded: /model load PATH (or rlhf chat --model PATH)");
    if (!s->b.tok) return chat_fail(s, RLHF_ERR_UNSUPPORTED, "%s has no tokenizer: the REPL needs one to turn text into tokens", s->model_name);
    return 0;
}

int chat_cmd_model(chat_session *s, const chat_input *in) {
    const char *sub = in->n_words ? in->words[0] : "info";
    if (strcmp(sub, "load") == 0) {
        if (in->n_words != 2) return chat_fail(s, RLHF_ERR_INVALID, "usage: /model load PATH");
        return chat_model_load(s, in->words[1], NULL);
    }
    if (strcmp(sub, "info") == 0) {
        if (!s->loaded) return chat_fail(s, RLHF_ERR_INVALID, "no model loaded: /model load PATH");
        print_model_line(s);
        out_printf("path: %s%s%s\n", s->model_path, s->adapter_path ? ", adapter " : "", s->adapter_path ? s->adapter_path : "");
        return 0;
    }
    if (strcmp(sub, "use") == 0) {
        if (in->n_words != 2) return chat_fail(s, RLHF_ERR_INVALID, "usage: /model use NAME (see /models)");
        char *path = NULL;
        int rc = chat_store_open(s);
        if (rc) return rc;
        rlhf_error err = {0};
        if (store_model_path(s->db, in->words[1], &path, &err)) return chat_fail_err(s, &err);
        rc = chat_model_load(s, path, NULL);
        free(path);
        return rc;
    }
    return chat_fail(s, RLHF_ERR_INVALID, "usage: /model load PATH | info | use NAME");
}

int chat_cmd_adapter(chat_session *s, const chat_input *in) {
    if (in->n_words != 2 || strcmp(in->words[0], "load") != 0) return chat_fail(s, RLHF_ERR_INVALID, "usage: /adapter load DIR");
    if (!s->loaded) return chat_fail(s, RLHF_ERR_INVALID, "no model loaded: /model load PATH first");
    char *path = strdup(s->model_path);
    if (!path) return chat_fail(s, RLHF_ERR_NOMEM, "out of memory");
    /* reloaded from its files, so adapters never stack on an already merged one */
    int rc = chat_model_load(s, path, in->words[1]);
    free(path);
    return rc;
}

/* ---- prompt state ---- */

static int set_text(chat_session *s, char **dst, const char *text) {
    char *d = text && text[0] ? strdup(text) : NULL;
    if (text && text[0] && !d) return chat_fail(s, RLHF_ERR_NOMEM, "out of memory");
    free(*dst);
    *dst = d;
    return 0;
}

static int chat_on(const chat_session *s) { return s->chat_mode < 0 ? s->loaded && s->b.chat_template : s->chat_mode; }

int chat_cmd_reset(chat_session *s, const chat_input *in) {
    (void)in;
    for (int i = 0; i < s->n_history; i++) {
        free((char *)s->history[i].role);
        free((char *)s->history[i].content);
    }
    s->n_history = 0;
    free(s->input);
    s->input = NULL;
    chat_cands_clear(s);
    if (in) out_printf("conversation cleared\n");
    return 0;
}

int chat_cmd_system(chat_session *s, const chat_input *in) {
    if (set_text(s, &s->system, in->rest)) return RLHF_ERR_NOMEM;
    out_printf(s->system ? "system message set%s\n" : "system message cleared%s\n",
               s->loaded && !chat_on(s) ? " (used in chat mode: this model has no chat template, see /chat on)" : "");
    return 0;
}

int chat_cmd_instruction(chat_session *s, const chat_input *in) {
    if (set_text(s, &s->instruction, in->rest)) return RLHF_ERR_NOMEM;
    out_printf(s->instruction ? "instruction set\n" : "instruction cleared\n");
    return 0;
}

int chat_cmd_chat(chat_session *s, const chat_input *in) {
    const char *w = in->n_words == 1 ? in->words[0] : "";
    if (strcmp(w, "on") == 0) s->chat_mode = 1;
    else if (strcmp(w, "off") == 0) s->chat_mode = 0;
    else if (strcmp(w, "auto") == 0) s->chat_mode = -1;
    else return chat_fail(s, RLHF_ERR_INVALID, "usage: /chat on|off|auto");
    out_printf("chat mode %s\n", chat_on(s) ? "on: prompts are user turns of a conversation" : "off: prompts are text the model continues");
    return 0;
}

static int shot_add(chat_session *s, char *input, char *output) {
    if (s->n_shots == s->cap_shots) {
        int cap = s->cap_shots ? 2 * s->cap_shots : 8;
        prompt_example *g = realloc(s->shots, (size_t)cap * sizeof *g);
        if (!g) {
            free(input), free(output);
            return chat_fail(s, RLHF_ERR_NOMEM, "out of memory");
        }
        s->shots = g;
        s->cap_shots = cap;
    }
    s->shots[s->n_shots++] = (prompt_example){input, output};
    return 0;
}

static void shots_clear(chat_session *s) {
    for (int i = 0; i < s->n_shots; i++) {
        free((char *)s->shots[i].input);
        free((char *)s->shots[i].output);
    }
    s->n_shots = 0;
}

int chat_cmd_shot(chat_session *s, const chat_input *in) {
    const char *sub = in->n_words ? in->words[0] : "";
    rlhf_error err = {0};
    if (strcmp(sub, "add") == 0) {
        char *a, *b;
        const char *text = in->rest + 3; /* after "add" */
        if (chat_split_shot(text, &a, &b, &err)) return chat_fail(s, err.code, "/shot add: %s", err.msg);
        if (shot_add(s, a, b)) return RLHF_ERR_NOMEM;
        out_printf("shot %d added (%d in all)\n", s->n_shots, s->n_shots);
        return 0;
    }
    if (strcmp(sub, "rm") == 0 && in->n_words == 2) {
        char *end;
        long k = strtol(in->words[1], &end, 10);
        if (*end || k < 1 || k > s->n_shots)
            return chat_fail(s, RLHF_ERR_INVALID, "/shot rm: '%s' is not a shot number (1..%d)", in->words[1], s->n_shots);
        free((char *)s->shots[k - 1].input);
        free((char *)s->shots[k - 1].output);
        memmove(&s->shots[k - 1], &s->shots[k], (size_t)(s->n_shots - k) * sizeof *s->shots);
        s->n_shots--;
        out_printf("shot %ld removed (%d left)\n", k, s->n_shots);
        return 0;
    }
    return chat_fail(s, RLHF_ERR_INVALID, "usage: /shot add INPUT => OUTPUT | /shot rm N");
}

int chat_cmd_shots(chat_session *s, const chat_input *in) {
    const char *sub = in->n_words ? in->words[0] : "";
    if (in->n_words == 0) {
        if (!s->n_shots) out_printf("no shots (zero-shot); /shot add INPUT => OUTPUT adds one\n");
        for (int i = 0; i < s->n_shots; i++) out_printf("%d. %s => %s\n", i + 1, s->shots[i].input, s->shots[i].output);
        if (s->instruction) out_printf("instruction: %s\n", s->instruction);
        return 0;
    }
    if (strcmp(sub, "clear") == 0 && in->n_words == 1) {
        shots_clear(s);
        out_printf("shots cleared\n");
        return 0;
    }
    if (strcmp(sub, "load") == 0 && in->n_words == 2) {
        prompt_examples ex;
        rlhf_error err = {0};
        if (prompt_examples_read(&ex, in->words[1], -1, &err)) return chat_fail_err(s, &err);
        int n = ex.n;
        for (int i = 0; i < ex.n; i++) {
            if (shot_add(s, (char *)ex.items[i].input, (char *)ex.items[i].output)) {
                for (int j = i + 1; j < ex.n; j++) free((char *)ex.items[j].input), free((char *)ex.items[j].output);
                free(ex.items);
                return RLHF_ERR_NOMEM;
            }
        }
        free(ex.items); /* the strings now belong to the session */
        out_printf("%d shots loaded from %s (%d in all)\n", n, in->words[1], s->n_shots);
        return 0;
    }
    return chat_fail(s, RLHF_ERR_INVALID, "usage: /shots [clear | load FILE.jsonl]");
}

/* ---- building the prompt ---- */

/* The prompt text of `input` as the session would send it, its token ids and whether BOS was
 * added. Returns 0 or a code after printing. */
static int build_prompt(chat_session *s, const char *input, char **text, int32_t **ids, int *n_ids, int *bos) {
    *text = NULL;
    *ids = NULL;
    *n_ids = 0;
    int rc = need_model(s);
    if (rc) return rc;
    prompt_request r = {0};
    r.input = input;
    r.chat = chat_on(s);
    r.system = s->system;
    r.instruction = s->instruction;
    r.examples = s->shots;
    r.n_examples = s->n_shots;
    r.few_shot = s->n_shots > 0 || s->instruction;
    r.history = r.chat ? s->history : NULL;
    r.n_history = r.chat ? s->n_history : 0;
    r.chat_template = s->b.chat_template;
    r.bos_token = s->b.bos_token;
    r.eos_token = s->b.eos_token;
    r.add_bos = s->b.add_bos;
    rlhf_error err = {0};
    if (prompt_assemble(text, bos, &r, &err)) return chat_fail_err(s, &err);
    tok_ids enc = {0};
    unsigned flags = TOK_ENCODE_ALLOW_SPECIAL | (*bos ? TOK_ENCODE_ADD_BOS : 0);
    if (tok_encode(s->b.tok, *text, strlen(*text), flags, &enc, &err)) {
        free(*text);
        *text = NULL;
        return chat_fail_err(s, &err);
    }
    if (enc.n == 0) {
        tok_ids_free(&enc);
        free(*text);
        *text = NULL;
        return chat_fail(s, RLHF_ERR_INVALID, "the prompt encodes to no tokens");
    }
    *ids = enc.ids;
    *n_ids = (int)enc.n;
    return 0;
}

static char *json_of_examples(const chat_session *s) {
    if (!s->n_shots) return NULL;
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < s->n_shots; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "input", s->shots[i].input);
        cJSON_AddStringToObject(o, "output", s->shots[i].output);
        cJSON_AddItemToArray(a, o);
    }
    char *t = a ? cJSON_PrintUnformatted(a) : NULL;
    cJSON_Delete(a);
    return t;
}

static char *json_of_messages(const chat_session *s, const char *input) {
    if (!chat_on(s)) return NULL;
    cJSON *a = cJSON_CreateArray();
    const char *system = s->system ? s->system : (s->n_shots || s->instruction ? s->instruction : NULL);
    if (a && system) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "role", "system");
        cJSON_AddStringToObject(o, "content", system);
        cJSON_AddItemToArray(a, o);
    }
    for (int i = 0; a && i < s->n_history + 1; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "role", i < s->n_history ? s->history[i].role : "user");
        cJSON_AddStringToObject(o, "content", i < s->n_history ? s->history[i].content : input);
        cJSON_AddItemToArray(a, o);
    }
    char *t = a ? cJSON_PrintUnformatted(a) : NULL;
    cJSON_Delete(a);
    return t;
}

/* Remembers the prompt the shown candidates answer (stored with them when judged). */
static int keep_prompt(chat_session *s, const char *text, const char *input) {
    s->prompt_text = strdup(text);
    s->prompt_messages_json = json_of_messages(s, input);
    s->prompt_examples_json = json_of_examples(s);
    s->prompt_template = chat_on(s) && s->b.chat_template ? strdup(s->b.chat_template) : NULL;
    if (!s->prompt_text) return chat_fail(s, RLHF_ERR_NOMEM, "out of memory");
    return 0;
}

int chat_cmd_prompt(chat_session *s, const chat_input *in) {
    const char *input = in->rest[0] ? in->rest : s->input;
    if (!input) return chat_fail(s, RLHF_ERR_INVALID, "no prompt yet: /prompt TEXT shows what TEXT would send");
    char *text;
    int32_t *ids;
    int n, bos;
    int rc = build_prompt(s, input, &text, &ids, &n, &bos);
    if (rc) return rc;
    out_printf("%s%s%s\n%s-- %d tokens%s, %s%s\n", bos ? "[BOS]" : "", text, text[0] && text[strlen(text) - 1] == '\n' ? "" : "",
               chat_dim(s), n, bos ? " (BOS included)" : "", chat_on(s) ? "chat template" : (s->n_shots || s->instruction) ? "few-shot text prompt" : "plain text", chat_reset(s));
    free(text);
    free(ids);
    return 0;
}

/* ---- settings ---- */

int chat_cmd_set(chat_session *s, const chat_input *in) {
    if (in->n_words < 2) return chat_fail(s, RLHF_ERR_INVALID, "usage: /set KEY VALUE (keys: /settings; VALUE default unsets)");
    /* the value is the rest of the line after the key, so a stop string may hold blanks */
    const char *v = in->rest + strcspn(in->rest, " \t");
    v += strspn(v, " \t");
    char *value = strdup(in->words[1]);
    if (in->n_words > 2 || (v[0] == '"' || v[0] == '\'')) {
        free(value);
        value = strdup(in->n_words == 2 ? in->words[1] : v);
    }
    if (!value) return chat_fail(s, RLHF_ERR_NOMEM, "out of memory");
    gen_settings next;
    gen_settings_init(&next);
    rlhf_error err = {0};
    int rc = gen_settings_copy(&next, &s->settings, &err);
    if (!rc) {
        const char *key = in->words[0];
        const gen_setting *g = gen_setting_find(key, strlen(key));
        if (g && g->type == GEN_SETTING_TYPE_STRINGS && strcmp(value, "default") != 0) gen_settings_unset(&next, g->id);
        rc = gen_settings_set_key(&next, key, value, &err);
    }
    if (!rc) rc = gen_settings_check(&next, 0, &err);
    free(value);
    if (rc) {
        gen_settings_free(&next);
        return chat_fail(s, rc, "/set: %s", err.msg);
    }
    gen_settings_free(&s->settings);
    s->settings = next;
    out_printf("%s = %s\n", in->words[0], in->n_words > 2 ? v : in->words[1]);
    return 0;
}

int chat_cmd_settings(chat_session *s, const chat_input *in) {
    (void)in;
    char *text = NULL;
    rlhf_error err = {0};
    if (gen_settings_render(&s->settings, s->loaded ? &s->b.defaults : NULL, &text, &err)) return chat_fail_err(s, &err);
    out_printf("%s", text);
    free(text);
    out_printf("%spresets: ", chat_dim(s));
    for (int i = 0; i < s->presets.n; i++) out_printf("%s%s", i ? ", " : "", s->presets.items[i].name);
    out_printf("%s\n", chat_reset(s));
    return 0;
}

int chat_cmd_strategy(chat_session *s, const chat_input *in) {
    rlhf_error err = {0};
    const char *eq = strchr(in->rest, '=');
    if (in->n_words >= 3 && strcmp(in->words[1], "=") == 0 && eq) {
        /* /strategy NAME = SPEC defines a preset */
        const char *spec = eq + 1 + strspn(eq + 1, " \t");
        if (gen_presets_add(&s->presets, in->words[0], spec, &err)) return chat_fail(s, err.code, "/strategy: %s", err.msg);
        out_printf("preset %s = %s\n", in->words[0], spec);
        return 0;
    }
    if (in->n_words != 1) return chat_fail(s, RLHF_ERR_INVALID, "usage: /strategy NAME, or /strategy NAME = SPEC to define one");
    gen_settings p;
    if (gen_settings_parse_spec(&p, in->words[0], &s->presets, &err)) {
        gen_settings_free(&p);
        return chat_fail(s, err.code, "/strategy: %s", err.msg);
    }
    /* a preset replaces how tokens are chosen; the length, seed and stop strings stay */
    static const gen_setting_id keep[] = {GEN_SETTING_MAX_TOKENS, GEN_SETTING_SEED, GEN_SETTING_STOP,
                                          GEN_SETTING_IGNORE_EOS, GEN_SETTING_TRUNCATE};
    gen_settings kept;
    gen_settings_init(&kept);
    int rc = gen_settings_copy(&kept, &s->settings, &err);
    for (int i = 0; !rc && i < GEN_SETTING_COUNT; i++) {
        int k = 0;
        for (size_t j = 0; j < sizeof keep / sizeof keep[0]; j++) k |= keep[j] == (gen_setting_id)i;
        if (!k) gen_settings_unset(&kept, (gen_setting_id)i);
    }
    if (!rc) rc = gen_settings_merge(&p, &kept, &err);
    if (!rc) rc = gen_settings_check(&p, 0, &err);
    gen_settings_free(&kept);
    if (rc) {
        gen_settings_free(&p);
        return chat_fail(s, rc, "/strategy: %s", err.msg);
    }
    gen_settings_free(&s->settings);
    s->settings = p;
    const gen_preset *pr = gen_presets_find(&s->presets, in->words[0], strlen(in->words[0]));
    out_printf("strategy %s%s%s\n", in->words[0], pr ? ": " : "", pr ? pr->spec : "");
    return 0;
}

/* ---- running ---- */

static uint64_t fresh_seed(chat_session *s) { return rng_u64(&s->shuffle) >> 11; }

char *chat_decoding_json(const gen_params *p, uint64_t seed, int add_bos, int candidate_index) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "strategy", gen_strategy_name(p->strategy));
    const sampler_params *sp = &p->sampling;
    if (p->strategy == GEN_STRATEGY_SAMPLE) {
        cJSON_AddNumberToObject(o, "temperature", sp->temperature);
        cJSON_AddNumberToObject(o, "top_k", sp->top_k);
        cJSON_AddNumberToObject(o, "top_p", sp->top_p);
        cJSON_AddNumberToObject(o, "min_p", sp->min_p);
    }
    if (p->strategy != GEN_STRATEGY_BEAM) {
        cJSON_AddNumberToObject(o, "repeat_penalty", sp->repeat_penalty);
        cJSON_AddNumberToObject(o, "presence_penalty", sp->presence_penalty);
        cJSON_AddNumberToObject(o, "frequency_penalty", sp->frequency_penalty);
        char raw[32];
        snprintf(raw, sizeof raw, "%llu", (unsigned long long)seed); /* a double would round it */
        cJSON_AddRawToObject(o, "seed", raw);
        cJSON *st = cJSON_AddArrayToObject(o, "stop");
        for (int i = 0; st && i < p->n_stop; i++) cJSON_AddItemToArray(st, cJSON_CreateString(p->stop[i]));
    } else {
        cJSON_AddNumberToObject(o, "beams", p->num_beams);
        cJSON_AddNumberToObject(o, "length_penalty", p->length_penalty);
        cJSON_AddBoolToObject(o, "early_stopping", p->early_stopping);
        cJSON_AddNumberToObject(o, "candidates", candidate_index + 1); /* beam rank k: the k-th of k+1 */
    }
    cJSON_AddNumberToObject(o, "no_repeat_ngram", sp->no_repeat_ngram_size);
    cJSON_AddNumberToObject(o, "max_tokens", p->max_tokens);
    cJSON_AddBoolToObject(o, "ignore_eos", p->n_eos == 0);
    cJSON_AddBoolToObject(o, "truncate", p->truncate_prompt);
    cJSON_AddBoolToObject(o, "add_bos", add_bos);
    if (p->strategy == GEN_STRATEGY_BEAM) cJSON_AddNumberToObject(o, "beam_rank", candidate_index);
    char *t = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return t;
}

/* Appends the candidates of r as new cands. Returns 0 or a code after printing. */
static int add_cands(chat_session *s, const gen_result *r, const gen_params *p, const char *origin, int bos,
                     double ms) {
    for (int i = 0; i < r->n; i++) {
        if (s->n_cands == CHAT_MAX_CANDS) return chat_fail(s, RLHF_ERR_INVALID, "at most %d candidates", CHAT_MAX_CANDS);
        const gen_candidate *g = &r->cands[i];
        chat_cand *c = &s->cands[s->n_cands];
        memset(c, 0, sizeof *c);
        c->text = strdup(g->text ? g->text : "");
        c->ids = malloc((size_t)(g->n_ids ? g->n_ids : 1) * sizeof *c->ids);
        if (c->ids) memcpy(c->ids, g->ids, (size_t)g->n_ids * sizeof *c->ids);
        c->n_ids = g->n_ids;
        c->logprob = g->logprob;
        c->ms = ms;
        c->finish = g->finish;
        c->has_seed = p->strategy != GEN_STRATEGY_BEAM;
        c->seed = c->has_seed ? gen_candidate_seed(p->seed, g->index) : 0;
        char o[300];
        if (r->n > 1 && p->strategy == GEN_STRATEGY_BEAM) snprintf(o, sizeof o, "%s (beam %d)", origin, g->index + 1);
        else if (r->n > 1) snprintf(o, sizeof o, "%s (seed %llu)", origin, (unsigned long long)c->seed);
        else snprintf(o, sizeof o, "%s", origin);
        c->origin = strdup(o);
        c->strategy = strdup(origin);
        c->decoding_json = chat_decoding_json(p, c->seed, bos, g->index);
        c->model = s->model_name ? strdup(s->model_name) : NULL;
        s->n_cands++;
        if (!c->text || !c->ids || !c->origin || !c->strategy || !c->decoding_json || (s->model_name && !c->model))
            return chat_fail(s, RLHF_ERR_NOMEM, "out of memory");
    }
    return 0;
}

/* A short description of resolved params for people ("sample temperature=0.8 top_k=40"). */
static void describe(const gen_params *p, char *buf, size_t n) {
    const sampler_params *sp = &p->sampling;
    if (p->strategy == GEN_STRATEGY_BEAM) snprintf(buf, n, "beam beams=%d", p->num_beams);
    else if (p->strategy == GEN_STRATEGY_GREEDY) snprintf(buf, n, "greedy");
    else snprintf(buf, n, "sample temperature=%g top_k=%d top_p=%g%s", sp->temperature, sp->top_k, sp->top_p,
                  sp->min_p > 0 ? " min_p" : "");
}

typedef struct {
    chat_session *s;
    int any;
} stream_ctx;

static int on_token(void *user, int cand, int32_t id, const char *text, size_t len, float lp) {
    (void)cand, (void)id, (void)lp;
    stream_ctx *st = user;
    if (len) {
        out_printf("%.*s", (int)len, text);
        fflush(out_stream());
        st->any = 1;
    }
    return 0;
}

static void closing_line(chat_session *s, const gen_result *r, const gen_candidate *c) {
    double tps = r->decode_ms > 0 ? r->n_generated / (r->decode_ms / 1e3) : 0.0;
    out_printf("%s-- %d tokens · %.1f tok/s · %s · logprob %.2f%s\n", chat_dim(s), c->n_ids, tps, gen_finish_name(c->finish),
               c->logprob, chat_reset(s));
}

/* Generates one reply to s->input, streamed; it becomes candidate A. */
static int reply(chat_session *s, int first_index) {
    char *text;
    int32_t *ids;
    int n_ids, bos;
    int rc = build_prompt(s, s->input, &text, &ids, &n_ids, &bos);
    if (rc) return rc;
    gen_params p;
    gen_settings_resolve(&s->settings, &s->b.defaults, s->b.m.config.context, n_ids, &p);
    if (!s->settings.set[GEN_SETTING_SEED]) p.seed = fresh_seed(s);
    if (p.strategy != GEN_STRATEGY_BEAM) p.n = 1;
    p.first_index = first_index;
    stream_ctx st = {s, 0};
    if (p.strategy != GEN_STRATEGY_BEAM) {
        p.on_token = on_token;
        p.user = &st;
    } else {
        p.n = 1;
    }
    volatile sig_atomic_t *flag = line_read_interrupt_flag();
    *flag = 0;
    p.stop_flag = flag;
    gen_result r;
    rlhf_error err = {0};
    double t0 = now_ms();
    p.packed = s->packed;
    rc = gen_run(&s->b.m, s->b.tok, ids, n_ids, &p, &r, &err);
    free(ids);
    if (rc) {
        free(text);
        return chat_fail_err(s, &err);
    }
    *flag = 0;
    chat_cands_clear(s);
    if (p.strategy == GEN_STRATEGY_BEAM && r.n) out_printf("%s", r.cands[0].text ? r.cands[0].text : "");
    out_printf("\n");
    if (r.n) closing_line(s, &r, &r.cands[0]);
    char origin[200];
    describe(&p, origin, sizeof origin);
    rc = keep_prompt(s, text, s->input);
    if (!rc) rc = add_cands(s, &r, &p, origin, bos, now_ms() - t0);
    gen_result_free(&r);
    free(text);
    return rc;
}

/* The conversation moves on: the last prompt and its chosen answer become history. */
static int push_turn(chat_session *s) {
    if (!chat_on(s) || !s->input || s->n_cands < 1) return 0;
    const char *answer = s->cands[s->reply_index < s->n_cands ? s->reply_index : 0].text;
    if (s->n_history + 2 > s->cap_history) {
        int cap = s->cap_history ? 2 * s->cap_history : 16;
        prompt_message *g = realloc(s->history, (size_t)cap * sizeof *g);
        if (!g) return chat_fail(s, RLHF_ERR_NOMEM, "out of memory");
        s->history = g;
        s->cap_history = cap;
    }
    char *r1 = strdup("user"), *c1 = strdup(s->input), *r2 = strdup("assistant"), *c2 = strdup(answer);
    if (!r1 || !c1 || !r2 || !c2) {
        free(r1), free(c1), free(r2), free(c2);
        return chat_fail(s, RLHF_ERR_NOMEM, "out of memory");
    }
    s->history[s->n_history++] = (prompt_message){r1, c1};
    s->history[s->n_history++] = (prompt_message){r2, c2};
    return 0;
}

int chat_prompt(chat_session *s, const char *text) {
    int rc = need_model(s);
    if (rc) return rc;
    /* in a conversation the shown answer (the best ranked one after a ranking) is the reply */
    if (!s->from_queue && (rc = push_turn(s))) return rc;
    char *in = strdup(text);
    if (!in) return chat_fail(s, RLHF_ERR_NOMEM, "out of memory");
    free(s->input);
    s->input = in;
    return reply(s, 0);
}

int chat_cmd_regen(chat_session *s, const chat_input *in) {
    (void)in;
    if (!s->input) return chat_fail(s, RLHF_ERR_INVALID, "no prompt yet: type one first");
    static int regen_index;
    /* with a fixed seed a redraw takes the next candidate index, so it differs and reproduces */
    return reply(s, ++regen_index);
}

static int need_input(chat_session *s) {
    int rc = need_model(s);
    if (rc) return rc;
    if (!s->input) return chat_fail(s, RLHF_ERR_INVALID, "no prompt yet: type a prompt first, then /compare or /candidates");
    if (s->from_queue) return chat_fail(s, RLHF_ERR_INVALID, "these candidates came from /next: type a prompt of your own first");
    return 0;
}

int chat_cmd_compare(chat_session *s, const chat_input *in) {
    int rc = need_input(s);
    if (rc) return rc;
    gen_compare cmp;
    rlhf_error err = {0};
    if (gen_compare_parse(&cmp, in->rest, &s->settings, &s->presets, &err)) {
        gen_compare_free(&cmp);
        return chat_fail(s, err.code, "/compare: %s", err.msg);
    }
    char *text;
    int32_t *ids;
    int n_ids, bos;
    if ((rc = build_prompt(s, s->input, &text, &ids, &n_ids, &bos))) {
        gen_compare_free(&cmp);
        return rc;
    }
    chat_cands_clear(s);
    rc = keep_prompt(s, text, s->input);
    volatile sig_atomic_t *flag = line_read_interrupt_flag();
    *flag = 0;
    gen_settings merged;
    gen_settings_init(&merged);
    int done = 0;
    for (int k = 0; !rc && k < cmp.n && !*flag; k++, done++) {
        if (gen_settings_copy(&merged, &s->settings, &err) || gen_settings_merge(&merged, &cmp.spec[k], &err)) {
            rc = chat_fail_err(s, &err);
            break;
        }
        gen_params p;
        gen_settings_resolve(&merged, &s->b.defaults, s->b.m.config.context, n_ids, &p);
        if (!merged.set[GEN_SETTING_SEED]) p.seed = fresh_seed(s);
        p.stop_flag = flag;
        out_progress("running %d/%d: %s", k + 1, cmp.n, cmp.text[k]);
        gen_result r;
        double t0 = now_ms();
        p.packed = s->packed;
        if (gen_run(&s->b.m, s->b.tok, ids, n_ids, &p, &r, &err)) {
            rlhf_error_prefix(&err, "/compare \"%s\": ", cmp.text[k]);
            rc = chat_fail_err(s, &err);
            break;
        }
        rc = add_cands(s, &r, &p, cmp.text[k], bos, now_ms() - t0);
        gen_result_free(&r);
    }
    out_progress_end();
    if (*flag) out_printf("interrupted: %d of %d specs ran\n", done, cmp.n);
    *flag = 0;
    gen_settings_free(&merged);
    gen_compare_free(&cmp);
    free(text);
    free(ids);
    if (!rc && s->n_cands) {
        chat_blind_apply(s);
        chat_show_cands(s);
    }
    return rc;
}

int chat_cmd_candidates(chat_session *s, const chat_input *in) {
    char *end = NULL;
    long n = in->n_words == 1 ? strtol(in->words[0], &end, 10) : 0;
    if (in->n_words != 1 || *end || n < 2 || n > CHAT_MAX_CANDS)
        return chat_fail(s, RLHF_ERR_INVALID, "usage: /candidates N (2..%d)", CHAT_MAX_CANDS);
    int rc = need_input(s);
    if (rc) return rc;
    gen_settings st;
    gen_settings_init(&st);
    rlhf_error err = {0};
    char num[16];
    snprintf(num, sizeof num, "%ld", n);
    if (gen_settings_copy(&st, &s->settings, &err) || gen_settings_set_key(&st, "candidates", num, &err) ||
        gen_settings_check(&st, 0, &err)) {
        gen_settings_free(&st);
        return chat_fail(s, err.code, "/candidates: %s", err.msg);
    }
    char *text;
    int32_t *ids;
    int n_ids, bos;
    if ((rc = build_prompt(s, s->input, &text, &ids, &n_ids, &bos))) {
        gen_settings_free(&st);
        return rc;
    }
    gen_params p;
    gen_settings_resolve(&st, &s->b.defaults, s->b.m.config.context, n_ids, &p);
    if (!st.set[GEN_SETTING_SEED]) p.seed = fresh_seed(s);
    if (p.strategy == GEN_STRATEGY_GREEDY)
        out_printf("note: greedy decoding gives %ld identical answers; /strategy balanced or /set temperature 0.8 "
                   "samples different ones\n", n);
    volatile sig_atomic_t *flag = line_read_interrupt_flag();
    *flag = 0;
    p.stop_flag = flag;
    gen_result r;
    double t0 = now_ms();
    p.packed = s->packed;
    rc = gen_run(&s->b.m, s->b.tok, ids, n_ids, &p, &r, &err);
    *flag = 0;
    free(ids);
    if (rc) {
        free(text);
        gen_settings_free(&st);
        return chat_fail_err(s, &err);
    }
    chat_cands_clear(s);
    char origin[200];
    describe(&p, origin, sizeof origin);
    rc = keep_prompt(s, text, s->input);
    if (!rc) rc = add_cands(s, &r, &p, origin, bos, now_ms() - t0);
    out_printf("%s%ld candidates, %ld tokens in %.0f ms (%.1f tok/s), one batched pass%s\n", chat_dim(s), n, r.n_generated,
               r.prefill_ms + r.decode_ms, r.decode_ms > 0 ? r.n_generated / (r.decode_ms / 1e3) : 0.0, chat_reset(s));
    gen_result_free(&r);
    free(text);
    gen_settings_free(&st);
    if (!rc) {
        chat_blind_apply(s);
        chat_show_cands(s);
    }
    return rc;
}

/* ---- showing candidates ---- */

void chat_show_cands(chat_session *s) {
    int k = s->n_cands;
    char *titles[CHAT_MAX_CANDS] = {0}, *texts[CHAT_MAX_CANDS] = {0}, *foots[CHAT_MAX_CANDS] = {0};
    for (int i = 0; i < k; i++) {
        const chat_cand *c = &s->cands[i];
        char t[400], f[200];
        if (s->hidden || !c->origin) snprintf(t, sizeof t, "%c", 'A' + i);
        else snprintf(t, sizeof t, "%c · %s", 'A' + i, c->origin);
        if (c->ms >= 0)
            snprintf(f, sizeof f, "%d tok · %s\nlogprob %.2f · %.0f ms", c->n_ids, gen_finish_name(c->finish), c->logprob, c->ms);
        else if (!isnan(c->logprob)) snprintf(f, sizeof f, "%d tok · logprob %.2f", c->n_ids, c->logprob);
        else snprintf(f, sizeof f, "stored");
        titles[i] = strdup(t);
        texts[i] = c->text;
        foots[i] = strdup(f);
    }
    columns_print(titles, texts, foots, k);
    for (int i = 0; i < k; i++) free(titles[i]), free(foots[i]);
    out_printf("%srank with e.g. %s, or /prefer A B, /tie A B, /bothbad A B, /rate A 4, /flag A unsafe, /skip%s\n",
               chat_dim(s), k >= 3 ? "B > A = C" : "B > A", chat_reset(s));
}

int chat_cmd_show(chat_session *s, const chat_input *in) {
    (void)in;
    if (!s->n_cands) return chat_fail(s, RLHF_ERR_INVALID, "no candidates (/candidates N or /compare SPECS)");
    chat_show_cands(s);
    return 0;
}
