/* fuzz_chat_template — jinja_render, the Jinja interpreter of chat templates (lexer, parser,
 * evaluator and its budget), with a fixed small conversation as `messages`, both values of
 * add_generation_prompt, BOS/EOS strings and a fixed clock (strftime_now), so a run depends
 * only on its input. */
#include "fuzz/fuzz_util.h"
#include "src/gen/jinja.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const jinja_message conv[] = {
        {"system", "You are a helpful assistant."},
        {"user", "Hi! What's 2+2?"},
        {"assistant", "4."},
        {"user", "And in {{ Jinja }} {% raw %}?"},
    };
    static const struct tm now = {.tm_year = 126, .tm_mon = 11, .tm_mday = 5, .tm_hour = 16};
    if (memchr(data, '\0', size)) return 0; /* a template is a C string: NUL ends it */
    char *tmpl = fuzz_strndup(data, size);
    rlhf_error err = {0};
    for (int gen = 0; gen < 2; gen++) {
        jinja_context ctx = {conv, gen ? 4 : 3, gen, "<s>", "</s>", &now};
        char *out = NULL;
        if (jinja_render(&out, tmpl, &ctx, &err) == RLHF_OK) free(out);
    }
    free(tmpl);
    return 0;
}
