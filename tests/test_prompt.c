/* test_prompt.c — text prompt templates and the Jinja subset for chat templates.
 *
 * Properties checked: zero/few-shot prompts are exactly the documented default; custom
 * templates expand {input}/{output} and refuse unknown placeholders; real chat templates (Llama
 * 3's from ../shared/data, ChatML/Qwen, Llama 2 with raise_exception, Zephyr's multi-line one
 * that depends on trim_blocks/lstrip_blocks) render exactly what transformers'
 * apply_chat_template renders; expression features (namespace, filters, tests, slices,
 * arithmetic, dict iteration, whitespace control) give Jinja's results; unsupported constructs
 * and syntax errors are refused with the line named. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "src/fileio.h"
#include "src/model_load.h"
#include "src/prompt.h"
#include "tests/test_util.h"

static void check_render(const char *what, const char *tmpl, const prompt_message *m, int n, int add_gen,
                         const char *expect) {
    char *out = NULL;
    rlhf_error err = {0};
    int rc = prompt_chat_render(&out, tmpl, m, n, add_gen, "<s>", "</s>", &err);
    CHECK(rc == 0, "%s: render: %s", what, err.msg);
    if (!rc) CHECK(strcmp(out, expect) == 0, "%s:\n got    [%s]\n expect [%s]", what, out, expect);
    free(out);
}

static void test_text_prompts(void) {
    char *out = NULL;
    rlhf_error err = {0};
    CHECK(prompt_build(&out, NULL, NULL, 0, "2+2", &err) == 0 && strcmp(out, "Input: 2+2\nOutput:") == 0,
          "zero-shot default: [%s]", out);
    free(out);
    prompt_example ex[2] = {{"1+1", "2"}, {"2+3", "5"}};
    CHECK(prompt_build(&out, NULL, ex, 2, "2+2", &err) == 0 &&
              strcmp(out, "Input: 1+1\nOutput: 2\n\nInput: 2+3\nOutput: 5\n\nInput: 2+2\nOutput:") == 0,
          "few-shot default: [%s]", out);
    free(out);
    prompt_template t = {"Add the numbers.", "Q: {input} A: {output} {{ok}}", "\n", "Q: {input} A:"};
    CHECK(prompt_build(&out, &t, ex, 1, "4+4", &err) == 0 &&
              strcmp(out, "Add the numbers.\nQ: 1+1 A: 2 {ok}\nQ: 4+4 A:") == 0,
          "custom template with instruction and literal braces: [%s]", out);
    free(out);
    prompt_template bad = {"", "{question}", "\n", "{input}"};
    CHECK(prompt_build(&out, &bad, ex, 1, "x", &err) == RLHF_ERR_FORMAT && strstr(err.msg, "{question}") &&
              strstr(err.msg, "example"),
          "unknown placeholder refused naming it and the part: %s", err.msg);
    CHECK(out == NULL, "no output on error");
}

static char *read_template(const char *rel) {
    char *json = NULL;
    size_t len;
    rlhf_error err = {0};
    if (file_read_all(test_data_path(rel), &json, &len, &err)) return NULL;
    model_bundle b;
    memset(&b, 0, sizeof b);
    CHECK(model_load_parse_tokenizer_config(&b, json, rel, &err) == 0, "parse %s: %s", rel, err.msg);
    free(json);
    char *t = b.chat_template;
    b.chat_template = NULL;
    if (strstr(rel, "llama3"))
        CHECK(b.bos_token && strcmp(b.bos_token, "<|begin_of_text|>") == 0 && b.eos_token &&
                  strcmp(b.eos_token, "<|end_of_text|>") == 0,
              "tokenizer_config bos/eos texts read");
    if (strstr(rel, "sp-bpe")) CHECK(b.add_bos == 1, "add_bos_token read");
    model_load_free(&b);
    return t;
}

static void test_llama3(void) {
    char *tmpl = read_template("llama3-tokenizer/tokenizer_config.json");
    CHECK(tmpl != NULL, "llama3 tokenizer_config has a chat template");
    if (!tmpl) return;
    prompt_message m[3] = {{"system", "You are helpful."}, {"user", "  Hi there!  \n"}, {"assistant", "Hello."}};
    char *out = NULL;
    rlhf_error err = {0};
    CHECK(prompt_chat_render(&out, tmpl, m, 2, 1, "<|begin_of_text|>", "<|end_of_text|>", &err) == 0, "render: %s",
          err.msg);
    const char *expect = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>"
                         "<|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|>"
                         "<|start_header_id|>assistant<|end_header_id|>\n\n";
    CHECK(out && strcmp(out, expect) == 0, "llama3 template (content trimmed, BOS once):\n got [%s]", out ? out : "");
    free(out);
    /* few-shot as a conversation through the same template */
    prompt_example ex[1] = {{"1+1", "2"}};
    CHECK(prompt_chat_fewshot(&out, tmpl, NULL, ex, 1, "2+2", "<|begin_of_text|>", "<|end_of_text|>", &err) == 0,
          "fewshot: %s", err.msg);
    const char *expect2 = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n1+1<|eot_id|>"
                          "<|start_header_id|>assistant<|end_header_id|>\n\n2<|eot_id|>"
                          "<|start_header_id|>user<|end_header_id|>\n\n2+2<|eot_id|>"
                          "<|start_header_id|>assistant<|end_header_id|>\n\n";
    CHECK(out && strcmp(out, expect2) == 0, "chat few-shot: [%s]", out ? out : "");
    free(out);
    free(tmpl);
    char *none = read_template("sp-bpe-32k/tokenizer_config.json");
    CHECK(none == NULL, "sp-bpe-32k has no chat template");
}

static void test_templates(void) {
    prompt_message m[3] = {{"system", "SYS"}, {"user", "Hello"}, {"assistant", "Hi!"}};
    prompt_message m4[4] = {{"system", "SYS"}, {"user", "Hello"}, {"assistant", "Hi!"}, {"user", "Again"}};
    const char *chatml =
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
        "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    check_render("chatml with system", chatml, m, 2, 1,
                 "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
    check_render("chatml default system", chatml, m + 1, 1, 0,
                 "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n");

    const char *llama2 =
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
        "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
        "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
        "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
        "{% if loop.index0 == 0 and system_message != false %}"
        "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
        "{% else %}{% set content = message['content'] %}{% endif %}"
        "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
        "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
    check_render("llama2", llama2, m4, 4, 1, "<s>[INST] <<SYS>>\nSYS\n<</SYS>>\n\nHello [/INST] Hi! </s><s>[INST] Again [/INST]");
    char *out = NULL;
    rlhf_error err = {0};
    prompt_message bad[2] = {{"user", "a"}, {"user", "b"}};
    CHECK(prompt_chat_render(&out, llama2, bad, 2, 1, "<s>", "</s>", &err) == RLHF_ERR_INVALID &&
              strstr(err.msg, "roles must alternate"),
          "raise_exception refuses with the template's message: %s", err.msg);

    const char *zephyr = "{% for message in messages %}\n"
                         "{% if message['role'] == 'user' %}\n"
                         "{{ '<|user|>\\n' + message['content'] + eos_token }}\n"
                         "{% elif message['role'] == 'system' %}\n"
                         "{{ '<|system|>\\n' + message['content'] + eos_token }}\n"
                         "{% elif message['role'] == 'assistant' %}\n"
                         "{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n"
                         "{% endif %}\n"
                         "{% if loop.last and add_generation_prompt %}\n"
                         "{{ '<|assistant|>' }}\n"
                         "{% endif %}\n"
                         "{% endfor %}";
    check_render("zephyr (trim_blocks + lstrip_blocks)", zephyr, m, 2, 1,
                 "<|system|>\nSYS</s>\n<|user|>\nHello</s>\n<|assistant|>\n");
    const char *indented = "{% for m in messages %}\n    {% if m.role == 'user' %}\n    [{{ m.content }}]\n    {% endif %}\n{% endfor %}";
    check_render("lstrip_blocks strips indentation before block tags", indented, m, 2, 0, "    [Hello]\n");

    const char *features =
        "{% set ns = namespace(found=false) %}{% for m in messages %}{% if m.role == 'system' %}"
        "{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.found }}|{{ messages|length }}|"
        "{{ messages|map(attribute='role')|join(',') }}|{{ 'a' ~ 1 ~ none }}|{{ [1,2,3][-1] }}|"
        "{{ 'x' if false else 'y' }}|{{ 'Hello'[1:3] }}|{{ 7 // 2 }}|{{ -7 % 3 }}|{{ {'a': 1, 'b': [true, none]}|tojson }}|"
        "{{ 'abc' is string }}|{{ undefinedvar is defined }}|{{ '  s  '|trim }}|"
        "{% for k, v in {'x': 1}.items() %}{{ k }}={{ v }}{% endfor %}|{{ messages[-1].content|upper }}|"
        "{{ 'a,b'.split(',')|last }}|{{ (messages|selectattr('role', 'equalto', 'user')|list|first).content }}|"
        "{{ 'q' in 'aqb' }}{{ 3 not in [1, 2] }}|{{ 2 * 3 + 1 }}|{{ undefinedvar|default('dflt') }}|"
        "{% for i in range(3) if i != 1 %}{{ i }}{{ ',' if not loop.last }}{% endfor %}|"
        "{{ 'Title case' | title }}|{{ messages[0]['role'] == 'system' and messages|length > 1 }}";
    check_render("expression features", features, m, 2, 0,
                 "True|2|system,user|a1None|3|y|el|3|2|{\"a\": 1, \"b\": [true, null]}|True|False|s|x=1|HELLO|b|Hello|"
                 "TrueTrue|7|dflt|0,2|Title Case|True");
    check_render("whitespace control", "a  {%- if true -%}  b  {%- endif %}\n c{# comment #}", m, 0, 0, "ab c");
    check_render("for else", "{% for x in [] %}x{% else %}empty{% endfor %}", m, 0, 0, "empty");

    CHECK(prompt_chat_render(&out, "line1\n{% macro f() %}{% endmacro %}", m, 1, 0, NULL, NULL, &err) == RLHF_ERR_UNSUPPORTED &&
              strstr(err.msg, "line 2") && strstr(err.msg, "macro"),
          "macro refused naming the line: %s", err.msg);
    CHECK(prompt_chat_render(&out, "a\nb\n{% if x %}never closed", m, 1, 0, NULL, NULL, &err) == RLHF_ERR_FORMAT &&
              strstr(err.msg, "line 3"),
          "unclosed if refused naming its line: %s", err.msg);
    CHECK(prompt_chat_render(&out, "{{ 1 + }}", m, 1, 0, NULL, NULL, &err) == RLHF_ERR_FORMAT, "syntax error: %s", err.msg);
    CHECK(out == NULL, "no output on error");

    /* default format (no template) */
    CHECK(prompt_chat_render(&out, NULL, m4, 4, 1, NULL, NULL, &err) == 0 &&
              strcmp(out, "SYS\n\nHuman: Hello\n\nAssistant: Hi!\n\nHuman: Again\n\nAssistant:") == 0,
          "default HH-RLHF format: [%s]", out);
    free(out);
}

static void test_generation_config(void) {
    model_gen_defaults d;
    rlhf_error err = {0};
    const char *json = "{\"bos_token_id\": 128000, \"do_sample\": true, \"eos_token_id\": [128001, 128009],"
                       " \"temperature\": 0.6, \"top_p\": 0.9, \"max_new_tokens\": 64}";
    CHECK(model_load_parse_generation_config(&d, json, "generation_config.json", &err) == 0, "parse: %s", err.msg);
    CHECK(d.has_temperature && d.temperature == 0.6f && d.has_top_p && d.top_p == 0.9f && !d.has_top_k &&
              d.has_do_sample && d.do_sample && d.has_max_new_tokens && d.max_new_tokens == 64,
          "generation_config decoding defaults");
    CHECK(d.n_eos == 2 && d.eos_ids[0] == 128001 && d.eos_ids[1] == 128009, "eos_token_id list");
    CHECK(model_load_parse_generation_config(&d, "{\"eos_token_id\": 2}", "g", &err) == 0 && d.n_eos == 1 && d.eos_ids[0] == 2,
          "eos_token_id int");
    CHECK(model_load_parse_generation_config(&d, "[1", "gc.json", &err) == RLHF_ERR_FORMAT && strstr(err.msg, "gc.json"),
          "malformed file named: %s", err.msg);
}

int main(void) {
    test_generation_config();
    test_text_prompts();
    test_llama3();
    test_templates();
    return test_finish("prompt");
}
