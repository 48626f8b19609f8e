#!/usr/bin/env python3
"""repl_script.py — scripted sessions of `rlhf chat` (--script FILE and commands on stdin).

A session loads a tiny GPT-2 (random weights, the real GPT-2 tokenizer from ../shared/data), adds
shots, compares strategies, draws candidates, ranks with ties, undoes, re-ranks, rates, flags,
skips, uses blind mode and the /next queue. Afterwards the database must hold exactly those
judgements (read with Python's sqlite3, not through rlhf), and every stored candidate must come
back token for token from `rlhf generate` given its stored decoding settings and seed.
Also: errors name the script line and the script goes on (exit 1), --bail stops at the first,
a chat-template model keeps the conversation, /reset forgets it.

usage: repl_script.py RLHF_EXE
"""
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile

RLHF = os.path.abspath(sys.argv[1])
DATA = os.environ.get("RLHF_SHARED_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILS.append(what)


def run(args, stdin=None, env_extra=None):
    env = dict(os.environ, COLUMNS="100", RLHF_CHAT_SHUFFLE_SEED="5", USER="tester")
    env.pop("NO_COLOR", None)
    if env_extra:
        env.update(env_extra)
    p = subprocess.run([RLHF] + args, input=stdin, capture_output=True, text=True, env=env, timeout=300)
    return p.returncode, p.stdout, p.stderr


def make_model(work):
    tiny = os.path.join(work, "tiny")
    rc, out, err = run(["model", "new", "--family", "gpt2", "--layers", "1", "--dim", "32", "--heads", "2",
                        "--vocab", "50257", "--context", "96", "--seed", "3", "--out", tiny])
    assert rc == 0, err
    for f in ("encoder.json", "vocab.bpe"):
        shutil.copy(os.path.join(DATA, "gpt2", f), tiny)
    return tiny


SESSION = """\
/model load {tiny}
/annotator alice
/set max_tokens 8
/set seed 11
/shot add 2+2 => 4
/shot add 3+3 => 6
/shots
/instruction Add the numbers.
5+5
/strategy balanced
/candidates 3
B > A = C
/undo
/rank C > B > A
/rate A 4 fluent
/flag B unsafe
/comment close call
/blind on
/compare greedy; beam beams=3; sample top_k=40
/prefer A B
/tie B C
/skip
/next
/progress
/nosuch
/rank A > Z
"""


def labels_revealed(out):
    """The last 'revealed:' line as {label: origin}."""
    lines = [l for l in out.splitlines() if l.startswith("revealed:")]
    if not lines:
        return {}
    return {m.group(1): m.group(2).strip() for m in re.finditer(r" ([A-Z]) = (.*?) \[", lines[-1])}


def regenerate(tiny, prompt_text, dec):
    """rlhf generate with a stored candidate's settings: its ids."""
    args = ["generate", "--model", tiny, "--prompt", prompt_text, "--json", "--strategy", dec["strategy"],
            "--max-tokens", str(dec["max_tokens"]), "--no-repeat-ngram", str(dec["no_repeat_ngram"])]
    if dec["strategy"] == "sample":
        args += ["--temperature", repr(dec["temperature"]), "--top-k", str(dec["top_k"]),
                 "--top-p", repr(dec["top_p"]), "--min-p", repr(dec["min_p"])]
    if dec["strategy"] != "beam":
        args += ["--seed", str(dec["seed"]), "--repeat-penalty", repr(dec["repeat_penalty"]),
                 "--presence-penalty", repr(dec["presence_penalty"]),
                 "--frequency-penalty", repr(dec["frequency_penalty"])]
        for s in dec["stop"]:
            args += ["--stop", s]
    else:
        args += ["--beams", str(dec["beams"]), "--length-penalty", repr(dec["length_penalty"]),
                 "--candidates", str(dec["candidates"])]
        if dec["early_stopping"]:
            args.append("--early-stopping")
    if dec["ignore_eos"]:
        args.append("--ignore-eos")
    if not dec["add_bos"]:
        args.append("--no-bos")
    rc, out, err = run(args)
    assert rc == 0, err
    objs = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    return objs[dec.get("beam_rank", 0)]["ids"]


def main():
    if not os.path.isdir(os.path.join(DATA, "gpt2")):
        print("missing shared data directory %s (set RLHF_SHARED_DATA)" % DATA)
        return 1
    work = tempfile.mkdtemp(prefix="rlhf-repl-")
    try:
        tiny = make_model(work)
        db = os.path.join(work, "s.db")
        script = os.path.join(work, "session.txt")
        with open(script, "w") as f:
            f.write(SESSION.format(tiny=tiny))
        rc, out, err = run(["chat", "--db", db, "--script", script])
        print(out)
        print(err)
        check(rc == 1, "a script with failing lines exits 1 (got %d)" % rc)
        check("session.txt:25: unknown command '/nosuch'" in err, "an unknown command names the script line")
        check("session.txt:26:" in err and "/rank" in err, "a bad ranking names its line and the script went on")
        check(re.search(r"saved ranking #1 \(B > A = C\), 2 pairs", out) is not None, "ranking with a tie: 2 pairs")
        check("undone: ranking #1" in out, "undo reports the ranking it removed")
        check(re.search(r"saved ranking #2 \(C > B > A\), 3 pairs", out) is not None, "re-rank saved")
        check("saved rating" in out and "saved flag" in out and "saved skip" in out, "rate, flag and skip saved")
        check("blind: origins hidden" in out, "blind mode hides the origins of /compare")
        revealed = labels_revealed(out)
        check(sorted(revealed.values()) == ["beam beams=3", "greedy", "sample top_k=40"],
              "origins revealed after the judgement: %s" % revealed)
        check("the queue is empty" in out, "/next: everything alice saw is judged")

        con = sqlite3.connect(db)
        q = lambda sql, *a: con.execute(sql, a).fetchall()
        check(q("SELECT count(*) FROM rankings") == [(1,)], "exactly one ranking left after undo")
        items = q("SELECT ri.position, ri.rank FROM ranking_items ri JOIN rankings r ON r.id = ri.ranking_id "
                  "ORDER BY ri.position")
        check(items == [(0, 3), (1, 2), (2, 1)], "ranking items C > B > A: %s" % items)
        check(q("SELECT count(*) FROM pairs WHERE ranking_id IS NOT NULL") == [(3,)], "3 pairs derived")
        ratings = q("SELECT score, labels FROM ratings ORDER BY id")
        check(ratings == [(4, "fluent"), (None, "unsafe")], "rating and flag: %s" % ratings)
        direct = q("SELECT c.strategy, r.strategy, p.verdict, p.comment FROM pairs p "
                   "JOIN generations c ON c.id = p.chosen_id JOIN generations r ON r.id = p.rejected_id "
                   "WHERE p.ranking_id IS NULL ORDER BY p.id")
        want = [(revealed.get("A"), revealed.get("B"), "better", "close call"), (revealed.get("B"), revealed.get("C"), "tie", None)]
        check(direct == want, "the direct pairs are the labels shown: %s == %s" % (direct, want))
        check(q("SELECT count(*) FROM skips") == [(1,)], "one skip")
        check(q("SELECT DISTINCT name FROM annotators") == [("alice",)], "annotator alice")
        check(q("SELECT count(*) FROM audit WHERE action = 'undo'") == [(1,)], "the undo is in the audit log")
        gens = q("SELECT g.id, g.token_ids, g.decoding_json, p.text FROM generations g JOIN prompts p ON p.id = g.prompt_id")
        check(len(gens) == 6, "6 candidates stored (3 drawn, 3 compared): %d" % len(gens))
        check(all(p.startswith("Add the numbers.\n\nInput: 2+2\nOutput: 4") for *_, p in gens), "prompts hold the shots")
        for gid, blob, dec, prompt in gens:
            dec = json.loads(dec)
            stored = [int.from_bytes(blob[i:i + 4], "little", signed=True) for i in range(0, len(blob), 4)]
            again = regenerate(tiny, prompt, dec)
            check(stored == again, "generation %d (%s) regenerates from its settings and seed" % (gid, dec["strategy"]))
        con.close()

        # the queue: imported pairs are someone else's candidates
        imp = os.path.join(work, "pairs.jsonl")
        with open(imp, "w") as f:
            f.write(json.dumps({"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Seven."}) + "\n")
            f.write(json.dumps({"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Rome."}) + "\n")
        # bob's queue: alice's prompt (6 candidates), then the two imported ones
        stdin = ("/annotator bob\n/import %s\n/progress\n/next\n/skip\n/next\nA > B\n/progress\n/next\n/flag A off-topic\n"
                 "/next\n/progress\n" % imp)
        rc, out, err = run(["chat", "--db", db], stdin=stdin)
        print(out)
        print(err)
        check(rc == 0, "commands on stdin: exit 0 (%s)" % err.strip())
        check("imported 2 records (trl)" in out, "/import guesses the TRL format")
        check("bob: 0 of 3 prompts with candidates judged, 3 left" in out, "/progress before: 3 left")
        check("Name a colour." in out and "Capital of France?" in out, "/next shows the queued prompts in order")
        check("bob: 2 of 3 prompts with candidates judged, 1 left" in out, "a bare A > B ranks a queued prompt")
        check("bob: 3 of 3 prompts with candidates judged, 0 left" in out, "/progress after: done")
        con = sqlite3.connect(db)
        bob = con.execute("SELECT count(*) FROM rankings r JOIN annotators a ON a.id = r.annotator_id "
                          "WHERE a.name = 'bob'").fetchall()
        check(bob == [(1,)], "bob's ranking stored")
        con.close()

        # --bail stops at the first failing line
        rc, out, err = run(["chat", "--db", db, "--bail"], stdin="/nosuch\n/stats\n")
        check(rc == 1 and "stdin:1:" in err and "prompts" not in out, "--bail stops at line 1")

        # a chat template keeps the conversation; /reset forgets it
        chat = os.path.join(work, "chatty")
        shutil.copytree(tiny, chat)
        tmpl = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
                "{% if add_generation_prompt %}<|assistant|>{% endif %}")
        with open(os.path.join(chat, "tokenizer_config.json"), "w") as f:
            json.dump({"chat_template": tmpl}, f)
        stdin = ("/model load %s\n/set max_tokens 4\n/set seed 1\n/system Be brief.\nHi there\nSecond question\n"
                 "/prompt\n/reset\n/prompt Third\nThird\n/regen\n" % chat)
        rc, out, err = run(["chat", "--db", db], stdin=stdin)
        print(out)
        print(err)
        check(rc == 0, "chat session exit 0 (%s)" % err.strip())
        check("chat template (conversation kept)" in out, "the model's chat template is used")
        m = re.search(r"<\|system\|>Be brief\.\n<\|user\|>Hi there\n<\|assistant\|>(.*?)\n<\|user\|>Second question\n<\|assistant\|>", out, re.S)
        check(m is not None, "/prompt shows the whole conversation through the template")
        check("<|system|>Be brief.\n<|user|>Third\n<|assistant|>" in out, "/reset starts a new conversation")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("%d checks failed" % len(FAILS) if FAILS else "all checks passed")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
