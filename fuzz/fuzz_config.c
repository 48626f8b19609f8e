/* fuzz_config — checkpoint_config_parse: a model's config.json (GPT-2 and Llama field names),
 * then the formatter on whatever was accepted. */
#include "fuzz/fuzz_util.h"
#include "src/formats/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    model_config cfg;
    rlhf_error err = {0};
    /* exactly `size` bytes, no terminator: the parser must respect the length */
    char *json = malloc(size ? size : 1);
    if (!json) abort();
    memcpy(json, data, size);
    if (checkpoint_config_parse(&cfg, json, size, "config.json", &err) == RLHF_OK) {
        char *text = NULL;
        if (checkpoint_config_format(&cfg, &text, &err) == RLHF_OK) {
            /* what was accepted and written back must parse again */
            model_config again;
            if (checkpoint_config_parse(&again, text, strlen(text), "config.json", &err) != RLHF_OK) abort();
        }
        free(text);
    }
    free(json);
    return 0;
}
