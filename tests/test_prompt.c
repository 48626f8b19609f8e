/* test_prompt.c — text prompt templates and the Jinja subset for chat templates.
 *
 * Properties checked: zero/few-shot prompts are exactly the documented default; custom
 * templates expand {input}/{output} and refuse unknown placeholders; real chat templates (Llama
 * 3's from ../shared/data, ChatML/Qwen, Llama 2 with raise_exception, Zephyr's multi-line one
 * that depends on trim_blocks/lstrip_blocks) render exactly what transformers'
 * apply_chat_template renders; expression features (namespace, filters, tests, slices,
 * arithmetic, dict iteration, whitespace control) give Jinja's results; unsupported constructs
 * and syntax errors are refused with the line named. Hostile templates (they come from model
 * files) end in an error naming the line, never a crash, hang or runaway allocation: values
 * that contain themselves, nesting past the parser's limit, integer overflow, strings and
 * output past 16 MiB, working memory past its cap, and renders past the step budget; each of
 * those checks goes just past its limit and stays fast. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "src/core/fileio.h"
#include "src/formats/model_load.h"
#include "src/gen/prompt.h"
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
    model_bundle_free(&b);
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

    CHECK(prompt_chat_render(&out, "line1\n{% include 'other.jinja' %}", m, 1, 0, NULL, NULL, &err) == RLHF_ERR_UNSUPPORTED &&
              strstr(err.msg, "line 2") && strstr(err.msg, "include"),
          "include refused naming the line: %s", err.msg);
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

/* Renders tmpl expecting it refused with `code`, a message naming `what` and "line N". */
static void check_refused(const char *what_for, const char *tmpl, int code, const char *what, int line) {
    prompt_message m[1] = {{"user", "hi"}};
    char *out = NULL, at[32];
    rlhf_error err = {0};
    int rc = prompt_chat_render(&out, tmpl, m, 1, 0, NULL, NULL, &err);
    snprintf(at, sizeof at, "line %d:", line);
    CHECK(rc == code && strstr(err.msg, what) && strstr(err.msg, at) && out == NULL, "%s: rc %d (want %d): %s", what_for,
          rc, code, err.msg);
    free(out);
}

/* head + open*n + mid + close*n + tail, freed by the caller */
static char *nested(const char *head, const char *open, int n, const char *mid, const char *close, const char *tail) {
    size_t len = strlen(head) + (strlen(open) + strlen(close)) * (size_t)n + strlen(mid) + strlen(tail) + 1;
    char *s = malloc(len), *p = s;
    p += sprintf(p, "%s", head);
    for (int i = 0; i < n; i++) p += sprintf(p, "%s", open);
    p += sprintf(p, "%s", mid);
    for (int i = 0; i < n; i++) p += sprintf(p, "%s", close);
    sprintf(p, "%s", tail);
    return s;
}

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A namespace holding itself is printed, serialised and joined: an error, not endless recursion. */
static void test_self_containing(void) {
    const char *set = "{% set ns = namespace(a=1) %}{% set ns.a = ns %}\n";
    const char *uses[] = {"{{ ns }}", "{{ ns|tojson }}", "{{ [ns]|join(',') }}", "{{ 'x' ~ ns }}", "{{ ns|string|length }}"};
    for (int i = 0; i < 5; i++) {
        char t[256];
        snprintf(t, sizeof t, "%s%s", set, uses[i]);
        check_refused(uses[i], t, RLHF_ERR_UNSUPPORTED, "nested deeper than 64", 2);
    }
    /* two lists nested 100 deep compared element by element */
    check_refused("deep comparison",
                  "{% set ns = namespace(a=1, b=1) %}{% for i in range(100) %}{% set ns.a = [ns.a] %}"
                  "{% set ns.b = [ns.b] %}{% endfor %}{{ ns.a == ns.b }}",
                  RLHF_ERR_UNSUPPORTED, "nested deeper than 64", 1);
    prompt_message m[1] = {{"user", "hi"}};
    check_render("values nested 60 deep still print",
                 "{% set ns = namespace(a=1) %}{% for i in range(60) %}{% set ns.a = [ns.a] %}{% endfor %}"
                 "{{ (ns.a|string)[58:63] }}",
                 m, 1, 0, "[[1]]");
}

/* The parser and evaluator recurse; 5000-deep input must be refused, not overflow the stack. */
static void test_nesting(void) {
    struct {
        const char *what, *head, *open, *mid, *close, *tail;
    } deep[] = {
        {"lists", "\n{{ ", "[", "", "]", " }}"},
        {"parentheses", "\n{{ ", "(", "1", ")", " }}"},
        {"unary minus", "\n{{ ", "-", "1", "", " }}"},
        {"not", "\n{{ ", "not ", "1", "", " }}"},
        {"calls", "\n{{ ", "range(", "1", ")", " }}"},
        {"filter arguments", "\n{{ ", "x|default(", "1", ")", " }}"},
        {"indexing", "\n{{ x", "[0", "", "]", " }}"},
        {"conditional expressions", "\n{{ ", "1 if 1 else ", "1", "", " }}"},
        {"if blocks", "\n", "{% if 1 %}", "x", "{% endif %}", ""},
        {"for blocks", "\n", "{% for x in [1] %}", "x", "{% endfor %}", ""},
        {"a chain of +", "\n{{ 1", " + 1", "", "", " }}"},
        {"a chain of filters", "\n{{ 'a'", "|trim", "", "", " }}"},
        {"a chain of and", "\n{{ 1", " and 1", "", "", " }}"},
        {"a chain of attributes", "\n{{ x", ".a", "", "", " }}"},
    };
    for (size_t i = 0; i < sizeof deep / sizeof deep[0]; i++) {
        char *t = nested(deep[i].head, deep[i].open, 5000, deep[i].mid, deep[i].close, deep[i].tail);
        check_refused(deep[i].what, t, RLHF_ERR_UNSUPPORTED, "nesting deeper than 256", 2);
        free(t);
    }
    /* just inside the limit renders */
    prompt_message m[1] = {{"user", "hi"}};
    char *t = nested("{{ ", "(", 250, "-1", ")", " }}");
    check_render("250 parentheses", t, m, 1, 0, "-1");
    free(t);
    t = nested("{{ 0", " + 1", 255, "", "", " }}");
    check_render("255 additions", t, m, 1, 0, "255");
    free(t);
    t = nested("", "{% if 1 %}", 200, "deep", "{% endif %}", "");
    check_render("200 nested ifs", t, m, 1, 0, "deep");
    free(t);
    /* a long elif chain is a loop, not nesting */
    t = nested("{% if 0 %}", "{% elif 0 %}", 5000, "{% elif 1 %}E{% else %}F", "", "{% endif %}");
    check_render("5000 elifs", t, m, 1, 0, "E");
    free(t);
}

/* 64-bit integer arithmetic never overflows in C: Python's results or "integer out of range" (unsupported:
 * Python's integers have no bound). */
static void test_integers(void) {
    prompt_message m[1] = {{"user", "hi"}};
    check_render("LLONG_MIN % -1, divisibleby(-1)",
                 "{% set min = -9223372036854775807 - 1 %}{{ min % -1 }}|{{ min is divisibleby(-1) }}|{{ min % 7 }}|"
                 "{{ min // 2 }}|{{ 7 // -2 }}|{{ -7 % 3 }}|{{ 7 % -3 }}|{{ -7.5 % 2 }}",
                 m, 1, 0, "0|True|6|-4611686018427387904|-4|2|-2|0.5");
    const char *bad[] = {
        "{% set min = -9223372036854775807 - 1 %}\n{{ min // -1 }}",
        "{% set min = -9223372036854775807 - 1 %}\n{{ -min }}",
        "{% set min = -9223372036854775807 - 1 %}\n{{ min - 1 }}",
        "\n{{ 9223372036854775807 + 1 }}",
        "\n{{ 4294967296 * 4294967296 }}",
        "\n{{ 99999999999999999999 }}",
        "\n{{ (1e300 * 1e300)|int }}",
        "\n{{ 1e19|int }}",
        "\n{{ '1e30'|int }}",
        "\n{{ '99999999999999999999'|int }}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        check_refused(bad[i], bad[i], RLHF_ERR_UNSUPPORTED, "integer out of range", 2);
    check_render("float to int in range", "{{ (-2.9)|int }}|{{ 2.9|int }}|{{ 'nan'|int }}|{{ (9.2e18)|int }}", m, 1, 0,
                 "-2|2|0|9200000000000000000");
    check_render("range near the top of long long", "{{ range(9223372036854775800, 9223372036854775807, 100)|length }}",
                 m, 1, 0, "1");
    check_render("slice with a huge step", "{{ [1, 2, 3][::9223372036854775807] }}{{ 'abc'[::-9223372036854775807 - 1] }}",
                 m, 1, 0, "[1]c");
}

/* int/float parse only the string's own bytes (a split piece is not NUL-terminated). */
static void test_number_filters(void) {
    prompt_message m[1] = {{"user", "hi"}};
    check_render("int/float of a slice", "{{ '1234'.split('3')[0]|int }}|{{ '1234'.split('3')[0]|float }}|"
                 "{{ '12.5x'[:4]|float }}|{{ ('7' ~ '8')[:1]|int + 1 }}",
                 m, 1, 0, "12|12.0|12.5|8");
    check_render("int/float as Jinja's", "{{ ' 42 '|int }}|{{ '1.9'|int }}|{{ '12abc'|int }}|{{ 'x'|int(7) }}|"
                 "{{ 'abc'|float }}|{{ '-1.5e1'|float }}|{{ none|int }}|{{ true|int }}",
                 m, 1, 0, "42|1|0|7|0.0|-15.0|0|1");
}

/* Big strings, big output, memory and runaway loops all end in an error, quickly. */
static void test_resources(void) {
    prompt_message m[1] = {{"user", "hi"}};
    double t0 = seconds();
    check_render("repetition builds the whole string", "{{ ('ab' * 20000)|length }}|{{ (3 * 'ab') }}|{{ ('ab' * -2) }}",
                 m, 1, 0, "40000|ababab|");
    check_render("100-character string * 10000",
                 "{% set s = 'x' * 100 %}{{ (s * 10000)|length }}", m, 1, 0, "1000000");
    check_render("a string of exactly 16 MiB", "{{ ('x' * 16777216)|length }}", m, 1, 0, "16777216");
    check_refused("one byte over 16 MiB", "\n{{ ('x' * 16777217)|length }}", RLHF_ERR_UNSUPPORTED, "longer than 16 MiB", 2);
    check_refused("('x'*1000)*10000000", "\n{{ ('x' * 1000) * 10000000 }}", RLHF_ERR_UNSUPPORTED, "longer than 16 MiB", 2);
    check_refused("doubling concatenation",
                  "{% set ns = namespace(s='x') %}{% for i in range(40) %}\n{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
                  RLHF_ERR_UNSUPPORTED, "longer than 16 MiB", 2);
    check_refused("replace growing a string", "{% set s = 'x' * 6000 %}\n{{ ('ab' * 3000).replace('b', s) }}",
                  RLHF_ERR_UNSUPPORTED, "longer than 16 MiB", 2);
    check_refused("join growing a string", "{% set s = 'x' * 1000000 %}\n{{ [s] * 1 if false else [s, s, s, s, s, s, s, s, "
                  "s, s, s, s, s, s, s, s, s]|join }}",
                  RLHF_ERR_UNSUPPORTED, "longer than 16 MiB", 2);
    check_refused("output just over 16 MiB", "{% set s = 'x' * 8192 %}{% for i in range(2049) %}\n{{ s }}{% endfor %}",
                  RLHF_ERR_UNSUPPORTED, "rendered text is longer than 16 MiB", 2);
    check_refused("working memory", "{% for i in range(100) %}\n{% set x = 'x' * 400000 %}{% endfor %}",
                  RLHF_ERR_UNSUPPORTED, "MiB of memory", 2);
    check_refused("nested range loops", "\n{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                  RLHF_ERR_UNSUPPORTED, "MiB of memory", 2);
    check_refused("a billion iterations",
                  "{% set r = range(1000) %}\n{% for i in r %}{% for j in r %}{% for k in r %}{% endfor %}{% endfor %}"
                  "{% endfor %}",
                  RLHF_ERR_UNSUPPORTED, "step budget", 2);
    check_refused("rescanning a long string", "{% set s = 'x' * 4000000 %}{% for i in range(100000) %}\n"
                  "{% if s|length > 0 and 'y' not in s %}{% endif %}{% endfor %}",
                  RLHF_ERR_UNSUPPORTED, "step budget", 2);
    double dt = seconds() - t0;
    CHECK(dt < 5.0, "resource limits are reached quickly (%.2f s)", dt);

    /* ordinary long conversations stay well inside the limits */
    enum { N = 4000 };
    prompt_message *many = malloc(N * sizeof *many);
    for (int i = 0; i < N; i++) many[i] = (prompt_message){i % 2 ? "assistant" : "user", "some words here"};
    const char *chatml = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                         "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                         "{% endif %}";
    char *out = NULL;
    rlhf_error err = {0};
    CHECK(prompt_chat_render(&out, chatml, many, N, 1, NULL, NULL, &err) == 0 && out &&
              strlen(out) == (size_t)N / 2 * (strlen("<|im_start|>user\nsome words here<|im_end|>\n") +
                                              strlen("<|im_start|>assistant\nsome words here<|im_end|>\n")) +
                                 strlen("<|im_start|>assistant\n"),
          "4000-message ChatML render: %s", err.msg);
    free(out);
    free(many);
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
    test_self_containing();
    test_nesting();
    test_integers();
    test_number_filters();
    test_resources();
    return test_finish("prompt");
}
