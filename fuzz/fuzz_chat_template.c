/* fuzz_chat_template — jinja_render, the Jinja interpreter of chat templates (lexer, parser,
 * evaluator and its budget), with a fixed small conversation as `messages`, both values of
 * add_generation_prompt, BOS/EOS strings and a fixed clock (strftime_now), and once more with
 * a tool-call conversation, tools and documents given as JSON (messages_json / vars_json), so
 * a run depends only on its input. */
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
    jinja_context tools = {conv, 0, 1, "<s>", "</s>", &now,
        "[{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"Weather?\"}]},"
        " {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"id\": \"abc123def\", \"type\": \"function\","
        " \"function\": {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}}]},"
        " {\"role\": \"tool\", \"tool_call_id\": \"abc123def\", \"content\": \"21.5\"}]",
        "{\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\":"
        " {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}],"
        " \"documents\": [{\"title\": \"T\", \"text\": \"D\"}], \"enable_thinking\": false}"};
    char *out = NULL;
    if (jinja_render(&out, tmpl, &tools, &err) == RLHF_OK) free(out);
    free(tmpl);
    return 0;
}
