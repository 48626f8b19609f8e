/* test_jinja.c — the Jinja interpreter through its own API (jinja_render).
 *
 * Properties checked: the context's variables reach the template; strftime_now reads the
 * injected clock when one is given (so tests cannot flip at midnight); each construct real
 * chat templates use beyond the basics (macros with defaults, keyword and spread arguments,
 * call blocks and caller(), block set, loop controls, the filters and tests, Jinja's
 * whitespace rules, None and undefined as jinja2 treats them). Every expected string here was
 * checked against python3-jinja2 (tests/reference/jinja_render.py); whole real templates are
 * compared with it by tests/jinja_parity.py. The larger template and hostile-input checks go
 * through prompt_chat_render in test_prompt.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/gen/jinja.h"
#include "tests/test_util.h"

static void check_render(const char *what, const char *tmpl, const jinja_context *ctx, const char *expect) {
    char *out = NULL;
    rlhf_error err = {0};
    int rc = jinja_render(&out, tmpl, ctx, &err);
    CHECK(rc == 0, "%s: render: %s", what, err.msg);
    if (!rc) CHECK(strcmp(out, expect) == 0, "%s:\n got    [%s]\n expect [%s]", what, out, expect);
    free(out);
}

static void test_context(void) {
    jinja_message m[2] = {{"system", "S"}, {"user", "U"}};
    jinja_context ctx = {.messages = m, .n_messages = 2, .add_generation_prompt = 1, .bos_token = "<s>"};
    check_render("context variables",
                 "{{ bos_token }}{% for x in messages %}[{{ x.role }}:{{ x.content }}]{% endfor %}"
                 "{{ add_generation_prompt }}|{{ eos_token }}|",
                 &ctx, "<s>[system:S][user:U]True||");
}

static void test_clock(void) {
    struct tm t = {0};
    t.tm_year = 2024 - 1900;
    t.tm_mon = 6; /* July */
    t.tm_mday = 26;
    t.tm_hour = 9;
    jinja_context ctx = {.now = &t};
    check_render("strftime_now reads the injected clock", "{{ strftime_now('%d %b %Y %H') }}", &ctx, "26 Jul 2024 09");
}

static const jinja_context plain = {0};

/* Renders tmpl expecting a refusal with `code` and a message containing `what`. */
static void check_refused(const char *what_for, const char *tmpl, int code, const char *what) {
    char *out = NULL;
    rlhf_error err = {0};
    int rc = jinja_render(&out, tmpl, &plain, &err);
    CHECK(rc == code && strstr(err.msg, what) && !out, "%s: rc %d (want %d): %s", what_for, rc, code, err.msg);
    free(out);
}

static void test_macros(void) {
    check_render("macro with defaults and keyword arguments",
                 "{% macro m(a, b='B', c=none) %}[{{ a }}|{{ b }}|{{ c }}]{% endmacro %}"
                 "{{ m(1) }}{{ m(1, 2) }}{{ m(1, c=3) }}{{ m(c='x', a='y') }}{{ m() }}",
                 &plain, "[1|B|None][1|2|None][1|B|3][y|B|x][|B|None]");
    check_render("defaults see earlier parameters", "{% macro m(a, b=a * 2) %}{{ b }}{% endmacro %}{{ m(4) }}", &plain,
                 "8");
    check_render("a macro's output is a string", "{% macro m() %} x {% endmacro %}{{ m()|trim|length }}", &plain, "1");
    check_render("macros see the variables of their scope",
                 "{% set g = 'G' %}{% macro m() %}{{ g }}{% set g = 'local' %}{{ g }}{% endmacro %}{{ m() }}{{ g }}",
                 &plain, "GlocalG");
    check_render("recursive macro",
                 "{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n }}*{{ fact(n - 1) }}{% endif %}{% endmacro %}"
                 "{{ fact(4) }}",
                 &plain, "4*3*2*1");
    check_render("varargs and kwargs", "{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, k=4) }}",
                 &plain, "1(2, 3){'k': 4}");
    check_render("spread arguments", "{% macro m(a, b, c) %}{{ a }}{{ b }}{{ c }}{% endmacro %}{{ m(*[1, 2], **{'c': 3}) }}",
                 &plain, "123");
    check_render("call block and caller()",
                 "{% macro box(t) %}<{{ t }}>{{ caller() }}</{{ t }}>{% endmacro %}"
                 "{% call box('b') %}inner{% endcall %}",
                 &plain, "<b>inner</b>");
    check_render("caller with arguments",
                 "{% macro each(xs) %}{% for x in xs %}{{ caller(x, loop.index) }}{% endfor %}{% endmacro %}"
                 "{% call(item, i) each(['a', 'b']) %}{{ i }}={{ item }};{% endcall %}",
                 &plain, "1=a;2=b;");
    check_render("globals are defined and callable",
                 "{{ raise_exception is defined }}{{ strftime_now is defined }}{{ range is defined }}"
                 "{{ namespace is defined }}{{ nosuch is defined }}{{ range is callable }}",
                 &plain, "TrueTrueTrueTrueFalseTrue");
    check_refused("too many arguments", "{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", RLHF_ERR_INVALID,
                  "takes not more than 1 argument");
    check_refused("unknown keyword", "{% macro m(a) %}{% endmacro %}{{ m(b=1) }}", RLHF_ERR_INVALID,
                  "no keyword argument 'b'");
    check_refused("calling an undefined name", "{{ nosuch(1) }}", RLHF_ERR_INVALID, "'nosuch' is undefined");
    check_refused("endless recursion", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", RLHF_ERR_UNSUPPORTED,
                  "nested deeper");
}

static void test_statements(void) {
    check_render("block set", "{% set x %}a{{ 1 + 1 }}b{% endset %}[{{ x }}]{{ x|length }}", &plain, "[a2b]3");
    check_render("break and continue",
                 "{% for i in range(10) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}"
                 "{{ i }}{% endfor %}",
                 &plain, "023");
    check_refused("break outside a loop", "{% break %}", RLHF_ERR_FORMAT, "outside of a loop");
    check_refused("a loop control does not reach out of a macro",
                  "{% for i in [1] %}{% macro m() %}{% break %}{% endmacro %}{% endfor %}", RLHF_ERR_FORMAT,
                  "outside of a loop");
    check_render("raw blocks", "a {% raw %}{{ x }}{% if %}\n  {% endraw %}\nb|{%- raw -%}  {{ y }}  {%- endraw -%}  |"
                 "{% raw %}\n  \n{% endraw +%}\nc|  {% raw %}z{% endraw %}|{# c +#}\nd",
                 &plain, "a {{ x }}{% if %}\nb|{{ y }}|\n  \n\nc|  z|\nd");
    check_refused("an unclosed raw block", "{% raw %}x{% endraw", RLHF_ERR_FORMAT, "never closed");
    check_render("one final newline dropped", "a\n", &plain, "a");
    check_render("only one", "a\n\n", &plain, "a\n");
    check_render("CR LF and CR read as LF", "a\r\nb\rc{% if true %}\r\nd{% endif %}", &plain, "a\nb\ncd");
    check_render("x.0 indexes", "{% set m = {'c': [{'t': 'T'}]} %}{{ m.c.0.t }}{{ [5, 6].1 }}", &plain, "T6");
    check_render("string escapes as Python's unicode-escape",
                 "{{ '\\x41\\u00e9\\U0001F600\\101|\\d\\'\\\"\\\\|\\t' }}|{{ \"a\\\nb\" }}",
                 &plain, "Aé😀A|\\d'\"\\|\t|ab");
    check_refused("a truncated escape", "{{ '\\x4' }}", RLHF_ERR_FORMAT, "truncated");
    check_render("precedence of tests, filters, unary minus and **",
                 "{{ 1 + 1 is number }}|{{ -1|abs if false else -3|string }}|{{ 2 ** 3 ** 2 }}|{{ -2 ** 2 }}|{{ 2 ** -1 }}|"
                 "{{ (-1) ** 7 }}|{{ 2.0 ** 2 }}|{{ 'ab' ~ 'c' is string }}|{{ 7 is divisibleby 3 + 1 }}",
                 &plain, "2|-3|64|4|0.5|-1|4.0|abTrue|1");
    check_refused("chained tests", "{{ 1 is number is string }}", RLHF_ERR_FORMAT, "chain");
    check_refused("** past 64 bits", "{{ 2 ** 64 }}", RLHF_ERR_UNSUPPORTED, "out of range");
    check_render("printf-style formatting", "{{ '%s is %d%%, %r' % ('x', 42.9, 'q') }}|{{ 'one %s' % [1] }}", &plain,
                 "x is 42%, 'q'|one [1]");
    check_refused("formatting with too few arguments", "{{ '%s %s' % ('a',) }}", RLHF_ERR_INVALID, "not enough");
    check_refused("a conversion not supported", "{{ '%5.2f' % 1.0 }}", RLHF_ERR_UNSUPPORTED, "only %s");
    check_render("float literals", "{{ 1.5 + 1 }}|{{ 1e3 }}|{{ 0.1 + 0.2 }}|{{ 10 / 4 }}|{{ 3 / 3 }}", &plain,
                 "2.5|1000.0|0.30000000000000004|2.5|1.0");
    check_render("tools and documents are none", "{{ tools }}|{{ documents is none }}|{{ tools is defined }}", &plain,
                 "None|True|True");
    check_refused("attribute of undefined", "{{ nosuch.x }}", RLHF_ERR_INVALID, "'nosuch' is undefined");
    check_refused("item of undefined", "{% set d = {} %}{{ d.a[0] }}", RLHF_ERR_INVALID, "no attribute 'a'");
    check_refused("method of undefined", "{{ ''[0].strip() }}", RLHF_ERR_INVALID, "undefined value has no method");
    check_render("what undefined allows", "[{{ nosuch }}]{{ nosuch|length }}{{ nosuch|trim }}{{ 'a' ~ nosuch }}"
                 "{{ nosuch == 1 }}{{ none.x is defined }}{{ 'str'.x is defined }}{% for x in nosuch %}x{% endfor %}",
                 &plain, "[]0aFalseFalseFalse");
    check_refused("a method no Python type has", "{{ [1].strip() }}", RLHF_ERR_INVALID, "list has no attribute 'strip'");
    check_refused("a Python method this subset lacks", "{{ 'a'.zfill(3) }}", RLHF_ERR_UNSUPPORTED, "'zfill' is not supported");
    check_refused("iterating none", "{% for t in tools %}{% endfor %}", RLHF_ERR_INVALID, "not iterable");
    check_refused("length of none", "{{ none|length }}", RLHF_ERR_INVALID, "no length");
}

/* Messages and variables given as JSON (tool calls, tools, documents, ...). */
static void test_json_variables(void) {
    jinja_context ctx = {.messages_json = "[{\"role\": \"assistant\", \"tool_calls\": [{\"function\": "
                                          "{\"name\": \"f\", \"arguments\": {\"x\": 1, \"y\": 2.0, \"s\": \"\\u00e9\\ud83d\\ude00\\n\"}}}]}]",
                         .vars_json = "{\"tools\": [{\"name\": \"f\"}], \"enable_thinking\": false, \"n\": -3e2}"};
    check_render("messages_json and vars_json",
                 "{% for m in messages %}{{ m.role }}:{{ m.content is defined }}:"
                 "{{ m.tool_calls[0].function.arguments|tojson }}{% endfor %}|{{ tools|map(attribute='name')|list }}|"
                 "{{ enable_thinking }}|{{ n }}",
                 &ctx, "assistant:False:{\"x\": 1, \"y\": 2.0, \"s\": \"é😀\\n\"}|['f']|False|-300.0");
    static const char *const bad[] = {"[", "{\"a\" 1}", "[1,]", "\"\\x\"", "[1] 2", "{\"a\": tru}"};
    for (int i = 0; i < 6; i++) {
        jinja_context c = {.vars_json = i % 2 ? bad[i] : "{}", .messages_json = i % 2 ? NULL : bad[i]};
        char *out = NULL;
        rlhf_error err = {0};
        int rc = jinja_render(&out, "x", &c, &err);
        CHECK(rc == RLHF_ERR_FORMAT && strstr(err.msg, i % 2 ? "vars_json" : "messages_json") && strstr(err.msg, "byte"),
              "bad JSON %s refused naming the field and byte: %s", bad[i], err.msg);
        free(out);
    }
    jinja_context c = {.vars_json = "[1]"};
    char *out = NULL;
    rlhf_error err = {0};
    CHECK(jinja_render(&out, "x", &c, &err) == RLHF_ERR_FORMAT && strstr(err.msg, "not a JSON object"), "%s", err.msg);
    free(out);
}

static void test_filters(void) {
    check_render("indent", "{{ 'a\\nb\\n\\nc'|indent }}|{{ 'a\\nb\\n'|indent(2, true) }}|{{ 'a\\n\\nb'|indent(2, blank=true) }}|"
                 "{{ 'x\\r\\ny'|indent('>>', first=true) }}|{{ ''|indent(first=true) }}",
                 &plain, "a\n    b\n\n    c|  a\n  b\n|a\n  \n  b|>>x\n>>y|    ");
    check_render("items", "{% for k, v in {'a': 1, 'b': [2]}|items %}{{ k }}={{ v }};{% endfor %}{{ nosuch|items|list }}",
                 &plain, "a=1;b=[2];[]");
    check_refused("comparing undefined", "{{ [{}]|selectattr('n', 'ge', 2)|list }}", RLHF_ERR_INVALID, "compare");
    check_refused("items of a list", "{{ [1]|items|list }}", RLHF_ERR_INVALID, "mapping");
    check_render("select and reject with tests",
                 "{{ [1, 0, 2]|select|list }}{{ [1, 2, 3, 4]|reject('odd')|list }}{{ [1, 2, 3]|select('gt', 1)|list }}"
                 "{{ ['a', 1, none]|reject('string')|list }}{{ [1, 2, 3]|select('in', [2, 3])|list }}",
                 &plain, "[1, 2][2, 4][2, 3][1, None][2, 3]");
    check_render("selectattr and rejectattr with tests",
                 "{% set xs = [{'r': 'a', 'n': 1}, {'r': 'b'}, {'r': 'a', 'n': 3}] %}"
                 "{{ xs|selectattr('r', 'equalto', 'a')|map(attribute='n')|list }}"
                 "{{ xs|rejectattr('n', 'defined')|map(attribute='r')|list }}{{ xs|selectattr('n', 'defined')|selectattr('n', 'ge', 2)|list|length }}"
                 "{{ xs|map(attribute='n', default=0)|list }}",
                 &plain, "[1, 3]['b']1[1, 0, 3]");
    check_render("strip and split as Python's (Unicode whitespace, characters not bytes)",
                 "[{{ '\\u00a0 a b\\u3000'|trim }}][{{ ' x\\u2003'.strip() }}][{{ 'éaé'.strip('é') }}][{{ 'Ãa'.strip('é') }}]"
                 "{{ 'a\\u00a0b  c\\u2028d'.split() }}[{{ 'xxaxx'.lstrip('x') }}][{{ 'xxaxx'.rstrip('x') }}]",
                 &plain, "[a b][x][a][Ãa]['a', 'b', 'c', 'd'][axx][xxa]");
    check_render("sort, unique, min, max, sum, abs",
                 "{{ ['b', 'A', 'a', 'C']|sort }}{{ ['b', 'A', 'a']|sort(case_sensitive=true) }}{{ [3, 1, 2]|sort(true) }}"
                 "{{ [{'n': 2, 'k': 'x'}, {'n': 1, 'k': 'y'}, {'n': 2, 'k': 'z'}]|sort(attribute='n')|map(attribute='k')|list }}"
                 "{{ ['a', 'A', 'b', 'a']|unique|list }}{{ ['b', 'A', 'a']|min }}{{ ['b', 'A', 'B']|max }}{{ []|max is defined }}"
                 "{{ [1, 2.5]|sum }}{{ [{'v': 1}, {'v': 2}]|sum(attribute='v', start=10) }}{{ -3|abs }}{{ (-2.5)|abs }}",
                 &plain, "['A', 'a', 'b', 'C']['A', 'a', 'b'][3, 2, 1]['y', 'x', 'z']['a', 'b']Ab"
                 "False3.51332.5");
    check_refused("sorting mixed types", "{{ [1, 'a']|sort }}", RLHF_ERR_INVALID, "compare");
    check_render("map with a filter", "{{ [' a ', 'b ']|map('trim')|join(',') }}|{{ [1, 2]|map('string')|map('length')|list }}",
                 &plain, "a,b|[1, 1]");
    check_render("tests as jinja2 defines them",
                 "{{ true is number }}{{ nosuch is iterable }}{{ {} is sequence }}{{ none is iterable }}{{ '1' is lower }}"
                 "{{ 'a1' is lower }}{{ 3 is ge 3 }}{{ 2 is in [1, 2] }}",
                 &plain, "TrueTrueTrueFalseFalseTrueTrueTrue");
}

static void test_printing(void) {
    check_render("str() of lists and dicts uses repr for strings",
                 "{{ ['a', \"it's\", 'q\"\\'', 'l\\n', 1.0, none, true] }}|{{ {'k': 'v'} }}", &plain,
                 "['a', \"it's\", 'q\"\\'', 'l\\n', 1.0, None, True]|{'k': 'v'}");
    check_render("tojson as transformers' (ensure_ascii off)",
                 "{{ {'a': 'é\"\\n', 'b': [1, 2.5, none, false]}|tojson }}", &plain,
                 "{\"a\": \"é\\\"\\n\", \"b\": [1, 2.5, null, false]}");
    check_render("tojson with an indent", "{{ {'a': [1, {}], 'b': []}|tojson(indent=2) }}", &plain,
                 "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": []\n}");
    check_render("tojson's other arguments",
                 "{{ ['é', '😀', {'a': 1}]|tojson(ensure_ascii=true) }}|{{ {'a': [1, 2]}|tojson(separators=(',', ':')) }}",
                 &plain, "[\"\\u00e9\", \"\\ud83d\\ude00\", {\"a\": 1}]|{\"a\":[1,2]}");
    check_refused("tojson of undefined", "{{ nosuch|tojson }}", RLHF_ERR_INVALID, "not JSON serializable");
}

int main(void) {
    test_context();
    test_clock();
    test_macros();
    test_statements();
    test_filters();
    test_json_variables();
    test_printing();
    return test_finish("jinja");
}
