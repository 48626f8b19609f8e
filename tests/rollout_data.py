#!/usr/bin/env python3
"""Data for the online trainers' end-to-end tests (grpo_cli.sh, ppo_cli.sh), written to the
current directory: prompts.jsonl (64 "Q: <letter runs>\nA:" prompts), corpus.txt (for a small
BPE tokenizer) and rm_pairs.jsonl (400 preference pairs for a reward model whose property is
learnable: the chosen completion contains the letter e, the rejected one never does; completions
are made of the words a policy of that tokenizer says)."""
import json, random
r = random.Random(5)
L = "abcdefghij"
with open("prompts.jsonl", "w") as f:
    for i in range(64):
        p = "Q: " + " ".join(r.choice(L) * r.randint(1, 3) for _ in range(r.randint(2, 4))) + "\nA:"
        f.write(json.dumps({"prompt": p}) + "\n")
open("corpus.txt", "w").write(open("prompts.jsonl").read() * 4 + "good bad yes no " * 50)
# reward-model pairs: completions made of the words a policy of this tokenizer says; the chosen
# one contains the letter e, the rejected one never does
ws = [c * k for c in L for k in (1, 2, 3)] + ["good", "bad", "yes", "no", "Q:", "A:"]
with_e = [w for w in ws if "e" in w]
without = [w for w in ws if "e" not in w]
with open("rm_pairs.jsonl", "w") as f:
    for i in range(400):
        p = "Q: " + " ".join(r.choice(L) * r.randint(1, 3) for _ in range(r.randint(2, 4))) + "\nA:"
        c = [r.choice(ws) for _ in range(r.randint(1, 4))]
        c[r.randrange(len(c))] = r.choice(with_e)
        j = [r.choice(without) for _ in range(r.randint(1, 4))]
        f.write(json.dumps({"prompt": p, "chosen": " " + " ".join(c), "rejected": " " + " ".join(j)}) + "\n")
