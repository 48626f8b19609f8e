#!/usr/bin/env python3
"""sft_learn.py - SFT teaches a model to end its answers.

Usage: sft_learn.py RLHF_EXE

Builds a small instruction set here (repeat a word, count up to N, add two digits: answers of
different lengths), a byte-level BPE tokenizer with <|endoftext|> as EOS, and a random Llama
(d64, 2 layers, GQA). For 40 held-out prompts it generates greedily with `rlhf generate` (at most
24 new tokens) and counts the answers that end with EOS before the limit ("finish": "eos"),
before and after `rlhf sft` on the 400 training examples (EOS appended and trained on). Reported:
both fractions and the exact-answer rate after. Asserted: the fraction after is at least 0.9 and
above the fraction before (a random model almost never stops).
"""
import json
import os
import random
import subprocess
import sys
import tempfile

RLHF = os.path.abspath(sys.argv[1])
MAX_TOKENS = 24
WORDS = ["cat", "dog", "tree", "blue", "stone", "river", "apple", "cloud", "music", "light", "green", "house"]


def task(r):
    kind = r.randrange(3)
    if kind == 0:
        w = " ".join(r.choice(WORDS) for _ in range(r.randint(1, 3)))
        return f"Repeat: {w}\nAnswer:", f" {w}"
    if kind == 1:
        n = r.randint(1, 7)
        return f"Count to {n}\nAnswer:", " " + " ".join(str(i) for i in range(1, n + 1))
    a, b = r.randint(0, 9), r.randint(0, 9)
    return f"Add {a} and {b}\nAnswer:", f" {a + b}"


def run(*args, **kw):
    return subprocess.run([RLHF, *args], check=True, capture_output=True, text=True, **kw)


def evaluate(model, held_out):
    ended = exact = 0
    for prompt, answer in held_out:
        out = json.loads(run("generate", "--model", model, "--prompt", prompt, "-n", str(MAX_TOKENS), "--json").stdout)
        ended += out["finish"] == "eos"
        exact += out["finish"] == "eos" and out["text"] == answer
    return ended / len(held_out), exact / len(held_out)


def main():
    r = random.Random(7)
    seen, train, held = set(), [], []
    while len(train) < 400 or len(held) < 40:
        p, c = task(r)
        if p in seen:
            continue
        seen.add(p)
        if len(held) < 40 and r.random() < 0.2:
            held.append((p, c))
        elif len(train) < 400:
            train.append((p, c))
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        with open("train.jsonl", "w") as f:
            for p, c in train:
                f.write(json.dumps({"prompt": p, "completion": c}) + "\n")
        with open("corpus.txt", "w") as f:
            f.write("".join(p + c + "\n" for p, c in train) * 2)
        run("tokenizer", "train", "--vocab-size", "320", "--special", "<|endoftext|>", "corpus.txt", "--out", "tok.json")
        run("model", "new", "--family", "llama", "--layers", "2", "--dim", "64", "--heads", "4", "--kv-heads", "2",
            "--vocab", "320", "--context", "64", "--seed", "5", "--out", "base")
        os.replace("tok.json", os.path.join("base", "tokenizer.json"))
        before, _ = evaluate("base", held)
        sft = run("sft", "--model", "base", "--data", "train.jsonl", "--out", "tuned", "--steps", "400", "--batch", "16",
                  "--lr", "3e-3", "--warmup", "20", "--min-lr", "3e-4", "--val-fraction", "0.05", "--eval-every", "0")
        after, exact = evaluate("tuned", held)
    summary = [line for line in sft.stdout.splitlines() if line.startswith("final")]
    print(f"held-out answers ending with EOS within {MAX_TOKENS} tokens: before SFT {before:.2f}, after {after:.2f} "
          f"(exact answers after: {exact:.2f}); {summary[0] if summary else ''}")
    ok = after >= 0.9 and after > before
    if not ok:
        print(f"FAIL: expected the fraction after SFT >= 0.9 and above the fraction before ({before:.2f} -> {after:.2f})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
