#!/usr/bin/python3
"""jinja_parity.py — every chat template of ../shared/data/chat-templates/templates.json, and
the real models' templates in tests/jinja_templates/, rendered by our Jinja module
(tests/jinja_dump.c --batch) and by python3-jinja2 set up as transformers sets it up
(tests/reference/jinja_render.py), for a three-turn conversation with and without a system
message, add_generation_prompt true and false, and for conversations with tools, a tool call,
documents and reasoning (see contexts()). Each pair must be byte-identical, or both must
refuse: with raise_exception's message in ours when the template raised, and never because
ours lacks a construct (RLHF_ERR_UNSUPPORTED) when jinja2 failed for another reason.

No expected output is written here: both sides render the same template and context.

Usage: jinja_parity.py JINJA_DUMP_EXE   (RLHF_SHARED_DATA names ../shared/data)
"""
import glob
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))
import jinja_render  # noqa: E402

# Templates that do not render as jinja2 renders them yet, by first model id, with the reason.
# Reported on every run; the test fails if one of these passes (so the list stays true).
KNOWN_FAILURES = {
}

SYSTEM = "You are a helpful assistant. Answer briefly."
TURNS = [
    ("user", "Hello! What is 2+2?"),
    ("assistant", "2+2 = 4.\nAnything else?"),
    ("user", "Tell me a joke about \"quotes\" — and café ünïcode."),
]


TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "add", "description": "Adds two numbers.",
        "parameters": {"type": "object", "properties": {
            "a": {"type": "number"}, "b": {"type": "integer", "minimum": 0.5}}, "required": ["a", "b"]}}},
]
TOOL_TURNS = [
    {"role": "user", "content": "What's the weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "abc123def", "type": "function",
         "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]},
    {"role": "tool", "tool_call_id": "abc123def", "name": "get_weather", "content": "{\"temperature\": 21.5}"},
    {"role": "assistant", "content": "It is 21.5 °C in Paris."},
    {"role": "user", "content": "Thanks!"},
]


def contexts():
    """(label, context) for every conversation variant: the three-turn conversation with and
    without a system message, add_generation_prompt true and false; then the same with tools,
    with a tool call and its result (arguments as an object, then as a JSON string), with
    documents, with content given as a list of parts (multimodal style), with content that has
    Unicode spaces, template syntax and CR LF, and with reasoning in the assistant turn and
    enable_thinking false."""
    base = {"bos_token": "<s>", "eos_token": "</s>", "now": "2025-03-14 17:45:09"}
    for sys_msg in (True, False):
        msgs = ([{"role": "system", "content": SYSTEM}] if sys_msg else []) + \
            [{"role": r, "content": c} for r, c in TURNS]
        for gen in (True, False):
            yield ("%s, add_generation_prompt=%s" % ("system" if sys_msg else "no system", gen),
                   dict(base, messages=msgs, add_generation_prompt=gen))
    plain = [{"role": r, "content": c} for r, c in TURNS]
    yield "tools", dict(base, messages=plain, add_generation_prompt=True, tools=TOOLS)
    yield "tool call and result", dict(base, messages=TOOL_TURNS, add_generation_prompt=True, tools=TOOLS)
    yield "documents", dict(base, messages=plain, add_generation_prompt=True, documents=[
        {"title": "Paris", "text": "Paris is the capital of France."},
        {"title": "Jokes", "text": "Why did the chicken cross the road?"}])
    thinking = [dict(m) for m in plain]
    thinking[1]["content"] = "<think>\nThe user adds numbers.\n</think>\n\n  2+2 = 4.  "
    string_args = [dict(m) for m in TOOL_TURNS]
    string_args[1] = dict(string_args[1], tool_calls=[
        {"id": "abc123def", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}])
    yield "tool call with string arguments", dict(base, messages=string_args, add_generation_prompt=False, tools=TOOLS)
    parts = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " Describe this image. "}]},
             {"role": "assistant", "content": [{"type": "text", "text": "A cat on a mat."}]},
             {"role": "user", "content": [{"type": "text", "text": "What colour is the cat?"}]}]
    yield "content as a list of parts", dict(base, messages=parts, add_generation_prompt=True)
    odd = [{"role": "system", "content": "\u3000 Be terse.\r\n"},
           {"role": "user", "content": "\u00a0 Is {{ 1 + 1 }} or {% raw %} printed?\t\n"},
           {"role": "assistant", "content": "  It is text: {{ x }}</think>\u2028ok \u0085"},
           {"role": "user", "content": "Strip me.  \u2003"}]
    yield "unusual content (Unicode spaces, template syntax, CR LF)", dict(base, messages=odd, add_generation_prompt=True)
    yield "reasoning, enable_thinking=False", dict(base, messages=[{"role": "system", "content": SYSTEM}] + thinking,
                                                   add_generation_prompt=True, enable_thinking=False)


def templates():
    """(name, template) of the fixture file, then of tests/jinja_templates/*.jinja."""
    data = os.environ.get("RLHF_SHARED_DATA", os.path.join(HERE, "..", "..", "shared", "data"))
    path = os.path.join(data, "chat-templates", "templates.json")
    for t in json.load(open(path, encoding="utf-8")):
        yield t["models"][0], t["chat_template"]
    for p in sorted(glob.glob(os.path.join(HERE, "jinja_templates", "*.jinja"))):
        yield "tests/jinja_templates/" + os.path.basename(p), open(p, encoding="utf-8").read()


def first_diff(a, b):
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    return "at char %d: ours %r, jinja2 %r" % (i, a[max(0, i - 20):i + 40], b[max(0, i - 20):i + 40])


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: jinja_parity.py JINJA_DUMP_EXE")
    tmpls = list(templates())
    ctxs = list(contexts())
    cases = [{"template": t, "context": c} for _, t in tmpls for _, c in ctxs]
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8", delete=False) as f:
        json.dump(cases, f, ensure_ascii=False)
    try:
        p = subprocess.run([sys.argv[1], "--batch", f.name], capture_output=True)
    finally:
        os.unlink(f.name)
    if p.returncode != 0:
        sys.exit("jinja_dump failed (exit %d): %s" % (p.returncode, p.stderr.decode(errors="replace")))
    ours = json.loads(p.stdout.decode("utf-8"))
    assert len(ours) == len(cases), "jinja_dump returned %d results for %d cases" % (len(ours), len(cases))

    agree, failed, known, fixed = 0, [], [], []
    same = refused = 0  # contexts rendered byte-identical / refused by both
    k = 0
    for name, tmpl in tmpls:
        problems = []
        for label, ctx in ctxs:
            kind, text = jinja_render.render(tmpl, ctx)
            o = ours[k]
            k += 1
            if kind == "ok":
                if o["kind"] != "ok":
                    problems.append("%s: ours refused (%s), jinja2 renders" % (label, o["text"]))
                elif o["text"] != text:
                    problems.append("%s: differs %s" % (label, first_diff(o["text"], text)))
                else:
                    same += 1
            elif o["kind"] == "ok":
                problems.append("%s: jinja2 refuses (%s), ours renders" % (label, text))
            elif o["kind"] == "unsupported":
                problems.append("%s: jinja2 refuses (%s), ours lacks a construct (%s)" % (label, text, o["text"]))
            elif kind == "raise" and text not in o["text"]:
                problems.append("%s: raise_exception(%r), ours refused with %r" % (label, text, o["text"]))
            else:
                refused += 1
        if not problems:
            agree += 1
            if name in KNOWN_FAILURES:
                fixed.append(name)
        elif name in KNOWN_FAILURES:
            known.append((name, problems))
        else:
            failed.append((name, problems))
    for name, problems in failed:
        print("FAIL %s" % name)
        for pr in problems:
            print("    " + pr)
    for name, problems in known:
        print("KNOWN FAILURE %s (%s)" % (name, KNOWN_FAILURES[name]))
        print("    " + problems[0])
    for name in fixed:
        print("FIXED %s: now renders as jinja2; remove it from KNOWN_FAILURES" % name)
    print("%d of %d templates render as python3-jinja2 renders them (%d contexts each: %d renders byte-identical, "
          "%d refused by both); %d known failures, %d unexpected"
          % (agree, len(tmpls), len(ctxs), same, refused, len(known), len(failed)))
    sys.exit(1 if failed or fixed else 0)


if __name__ == "__main__":
    main()
