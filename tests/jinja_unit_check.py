#!/usr/bin/python3
"""jinja_unit_check.py — the expected strings of tests/test_jinja.c, checked against
python3-jinja2 (tests/reference/jinja_render.py), so the unit tests of each construct assert
what jinja2 does, not what someone believed it does.

Reads every check_render(WHAT, TEMPLATE, &plain, EXPECT) and check_refused(WHAT, TEMPLATE, ...)
call of test_jinja.c (C string literals, adjacent ones concatenated), renders TEMPLATE with
jinja2 and an empty context (as `plain` is: no messages, no tokens), and requires EXPECT, or a
refusal for check_refused (except RLHF_ERR_UNSUPPORTED ones: what ours lacks on purpose).

Usage: jinja_unit_check.py tests/test_jinja.c
"""
import ast
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
import jinja_render  # noqa: E402

STR = r'"(?:[^"\\]|\\.)*"'
CALL = re.compile(r'\b(check_render|check_refused)\(\s*((?:%s\s*)+),\s*((?:%s\s*)+),\s*([^,]+?)\s*,\s*((?:%s\s*)+|[A-Z_]+)'
                  % (STR, STR, STR), re.S)


def c_string(lits):
    """The value of adjacent C string literals (the escapes these tests use are Python's too)."""
    return "".join(ast.literal_eval(m) for m in re.findall(STR, lits))


def main():
    src = open(sys.argv[1], encoding="utf-8").read()
    ctx = {"messages": [], "add_generation_prompt": False, "bos_token": "", "eos_token": ""}
    n = bad = lacking = 0
    for kind, what, tmpl, ctx_arg, expect in CALL.findall(src):
        if kind == "check_render" and ctx_arg.strip() != "&plain":
            continue  # a context other than the empty one: not read here
        what, tmpl = c_string(what), c_string(tmpl)
        k, text = jinja_render.render(tmpl, ctx)
        n += 1
        if kind == "check_render" and (k != "ok" or text != c_string(expect)):
            bad += 1
            print("FAIL %s: test_jinja.c expects %r, jinja2 gives %s %r" % (what, c_string(expect), k, text))
        elif kind == "check_refused" and k == "ok" and ctx_arg.strip() == "RLHF_ERR_UNSUPPORTED":
            lacking += 1  # a construct ours refuses by design and says so; jinja2 has it
        elif kind == "check_refused" and k == "ok":
            bad += 1
            print("FAIL %s: test_jinja.c expects a refusal, jinja2 renders %r" % (what, text))
    print("%d expectations of test_jinja.c checked against jinja2, %d differ (%d refusals of what this subset "
          "lacks, which jinja2 renders)" % (n, bad, lacking))
    sys.exit(1 if bad or n == 0 else 0)


if __name__ == "__main__":
    main()
