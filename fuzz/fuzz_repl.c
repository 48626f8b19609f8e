/* fuzz_repl — the REPL's command line (repl/chat*.c): every input line goes through
 * chat_execute, the same function `rlhf chat` runs for each line typed, against a session with
 * three candidates on screen and a private in-memory feedback store. The input is lines
 * separated by '\n'. After the last one the store must pass store_check: nothing typed may
 * corrupt the database (abort otherwise).
 *
 * Left out: commands that open files by name (/model, /adapter, /shots load, /guideline,
 * /import, /export: a fuzzer must not write files or read /dev/zero; their file parsers have
 * harnesses of their own), commands that start `rlhf` as a child process (/train, /run: here
 * that would be the fuzzer itself), and plain prompts need a model, which is not loaded. */
#include "fuzz/fuzz_util.h"
#include "repl/chat.h"
#include "repl/commands.h"
#include "repl/out.h"

/* chat.c's `rlhf chat` uses these two helpers of repl/main.c, which is not linked here */
int command_usage_error(const char *name) {
    (void)name;
    return 2;
}
int command_wants_help(int argc, char **argv) {
    (void)argc, (void)argv;
    return 0;
}

static int left_out(const char *line) {
    chat_input in;
    if (chat_input_parse(&in, line, NULL) != 0) return 0;
    int bad = in.kind == CHAT_INPUT_COMMAND &&
              (!strcmp(in.name, "model") || !strcmp(in.name, "adapter") || !strcmp(in.name, "guideline") ||
               !strcmp(in.name, "import") || !strcmp(in.name, "export") || !strcmp(in.name, "train") ||
               !strcmp(in.name, "run") ||
               (!strcmp(in.name, "shots") && in.n_words && !strcmp(in.words[0], "load")));
    chat_input_free(&in);
    return bad;
}

static void add_cand(chat_session *s, const char *text, const char *origin) {
    chat_cand *c = &s->cands[s->n_cands++];
    memset(c, 0, sizeof *c);
    c->text = strdup(text);
    c->ids = calloc(1, sizeof *c->ids);
    c->origin = strdup(origin);
    c->strategy = strdup(origin);
    c->decoding_json = strdup("{\"strategy\":\"greedy\"}");
    c->ms = 1;
    if (!c->text || !c->ids || !c->origin || !c->strategy || !c->decoding_json) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static FILE *devnull;
    if (!devnull && !(devnull = fopen("/dev/null", "w"))) abort();
    out_set_sinks(devnull, devnull);
    if (size > 4096) return 0;
    char *text = fuzz_strndup(data, size);
    chat_session s;
    rlhf_error err = {0};
    if (chat_session_init(&s, &err) != 0) abort();
    s.db_path = strdup(":memory:");
    s.prompt_text = strdup("What is 2+2?");
    if (!s.db_path || !s.prompt_text) abort();
    add_cand(&s, "4", "greedy");
    add_cand(&s, "four", "sample top_k=40");
    add_cand(&s, "5", "beam beams=2");
    s.input = strdup("What is 2+2?");
    for (char *line = text, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        if (!left_out(line)) chat_execute(&s, line);
        if (s.quit) break;
    }
    if (s.db) {
        store_check_report rep = {0};
        if (store_check(s.db, &rep, &err) != 0) abort();
        if (rep.n) {
            for (size_t i = 0; i < rep.n; i++) fprintf(stderr, "store_check: %s\n", rep.problems[i]);
            abort();
        }
        store_check_report_free(&rep);
    }
    chat_session_free(&s);
    free(text);
    return 0;
}
