/* fuzz_chat_template — prompt_chat_render: the Jinja interpreter (lexer, parser, evaluator and
 * its budget) on a chat template, with a fixed small conversation as `messages`, both values of
 * add_generation_prompt, and BOS/EOS strings. */
#include "fuzz/fuzz_util.h"
#include "src/gen/prompt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const prompt_message conv[] = {
        {"system", "You are a helpful assistant."},
        {"user", "Hi! What's 2+2?"},
        {"assistant", "4."},
        {"user", "And in {{ Jinja }} {% raw %}?"},
    };
    if (memchr(data, '\0', size)) return 0; /* a template is a C string: NUL ends it */
    char *tmpl = fuzz_strndup(data, size);
    rlhf_error err = {0};
    for (int gen = 0; gen < 2; gen++) {
        char *out = NULL;
        if (prompt_chat_render(&out, tmpl, conv, gen ? 4 : 3, gen, "<s>", "</s>", &err) == RLHF_OK) free(out);
    }
    free(tmpl);
    return 0;
}
