/* test_jinja.c — the Jinja interpreter through its own API (jinja_render).
 *
 * Properties checked: the context's variables reach the template; strftime_now reads the
 * injected clock when one is given (so tests cannot flip at midnight). The larger template
 * and hostile-input checks go through prompt_chat_render in test_prompt.c. */
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

int main(void) {
    test_context();
    test_clock();
    return test_finish("jinja");
}
