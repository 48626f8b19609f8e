#!/usr/bin/python3
"""jinja_render.py — the reference for our chat-template renderer: Debian's python3-jinja2
set up the way Hugging Face transformers' apply_chat_template sets it up.

That is: ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) with the
loopcontrols extension and a {% generation %} block that only renders its body (transformers
uses it to track assistant tokens); globals raise_exception(msg) (raises TemplateError(msg))
and strftime_now(fmt); the tojson filter as transformers defines it (json.dumps with
ensure_ascii=False); variables messages, tools and documents (None when absent),
add_generation_prompt, bos_token, eos_token.

The clock is the context's "now" ("YYYY-MM-DD HH:MM:SS"), so a date printed by a template does
not depend on when the test runs; tests/jinja_dump.c reads the same field.

A context is a JSON object {"messages": [...], "add_generation_prompt": bool, "bos_token": str,
"eos_token": str, "now": str}; any other member (tools, documents, enable_thinking, ...) is one
more variable. render() returns ("ok", text), ("raise", message) when the template
called raise_exception(message), or ("error", "Type: message") for any other exception.

Usage: jinja_render.py TEMPLATE_FILE CONTEXT_JSON_FILE   (prints the text; exit 1 on error)
"""
import datetime
import json
import sys

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment


class GenerationBlock(jinja2.ext.Extension):
    """{% generation %}...{% endgeneration %}: renders the body unchanged."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body, lineno=lineno)


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def make_env(now):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationBlock, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: now.strftime(fmt)
    return env


def render(template, ctx):
    now = datetime.datetime.strptime(ctx.get("now", "2024-07-26 09:05:03"), "%Y-%m-%d %H:%M:%S")
    try:
        t = make_env(now).from_string(template)
        variables = {"tools": None, "documents": None}
        variables.update({k: v for k, v in ctx.items() if k != "now"})
        variables.setdefault("add_generation_prompt", False)
        variables.setdefault("bos_token", "")
        variables.setdefault("eos_token", "")
        text = t.render(**variables)
    except Exception as e:  # any refusal: TemplateError, UndefinedError, TypeError, ...
        if type(e) is jinja2.exceptions.TemplateError:  # raise_exception's, not a subclass
            return "raise", str(e)
        return "error", "%s: %s" % (type(e).__name__, e)
    return "ok", text


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: jinja_render.py TEMPLATE_FILE CONTEXT_JSON_FILE")
    template = open(sys.argv[1], encoding="utf-8").read()
    ctx = json.load(open(sys.argv[2], encoding="utf-8"))
    kind, text = render(template, ctx)
    if kind != "ok":
        sys.stderr.write("error: %s\n" % text)
        sys.exit(1)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
