/* fuzz_settings — the decoding-spec parser of `rlhf generate --compare` and the REPL's /set
 * (src/gen/settings.c). First byte: 0 a spec (gen_settings_parse_spec with the built-in
 * presets), 1 a compare list (gen_compare_parse), 2 a user preset "NAME SPEC..." added with
 * gen_presets_add and then used; the rest is the text. Whatever parses is resolved and
 * rendered. */
#include "fuzz/fuzz_util.h"
#include "src/gen/settings.h"

static void use(const gen_settings *s) {
    gen_params p;
    char *text = NULL;
    rlhf_error err = {0};
    gen_settings_resolve(s, NULL, 64, 5, &p);
    if (gen_settings_render(s, NULL, &text, &err) == RLHF_OK) free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || memchr(data, '\0', size)) return 0;
    char *text = fuzz_strndup(data + 1, size - 1);
    gen_presets presets = {0};
    rlhf_error err = {0};
    if (gen_presets_init(&presets, &err) != RLHF_OK) abort();
    switch (data[0] % 3) {
    case 0: {
        gen_settings s;
        if (gen_settings_parse_spec(&s, text, &presets, &err) == RLHF_OK) use(&s);
        gen_settings_free(&s);
        break;
    }
    case 1: {
        gen_compare c = {0};
        if (gen_compare_parse(&c, text, NULL, &presets, &err) == RLHF_OK)
            for (int i = 0; i < c.n; i++) use(&c.spec[i]);
        gen_compare_free(&c);
        break;
    }
    default: {
        char *sp = strchr(text, ' ');
        if (!sp) break;
        *sp = '\0';
        if (gen_presets_add(&presets, text, sp + 1, &err) == RLHF_OK) {
            gen_settings s;
            if (gen_settings_parse_spec(&s, text, &presets, &err) == RLHF_OK) use(&s);
            gen_settings_free(&s);
        }
        break;
    }
    }
    gen_presets_free(&presets);
    free(text);
    return 0;
}
