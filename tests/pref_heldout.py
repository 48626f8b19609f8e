#!/usr/bin/env python3
"""pref_heldout.py RLHF TOKENIZER HELDOUT.jsonl MODEL [REF]: the preference trainers' learning
measured from saved weights, shared by dpo_cli.sh and kto_cli.sh.

HELDOUT has one {"prompt", "good", "bad"} object a line (prompts never trained on). For each,
the log-probability of the reply's tokens after the prompt (the reply's ids are those of
prompt + reply after the prompt's own ids; EOS not included) under MODEL, computed from
`rlhf logits` in double precision. Prints "GOOD BAD": the mean over the lines of the good and
of the bad replies' log-probabilities. With REF (the reference model) also "ACC MARGIN": the
implicit-reward accuracy (the share of lines where (good under MODEL - good under REF) >
(bad under MODEL - bad under REF), DPO's rewards/accuracies without beta, which does not change
the order) and the mean of that difference in nats."""
import json
import math
import subprocess
import sys

rlhf, tok, heldout, model = sys.argv[1:5]
ref = sys.argv[5] if len(sys.argv) > 5 else None


def ids(text):
    out = subprocess.run([rlhf, "tokenize", "--tokenizer", tok], input=text, capture_output=True, text=True, check=True)
    return [int(x) for x in out.stdout.split()]


def reply_logp(m, p, full):
    out = subprocess.run([rlhf, "logits", "--model", m, "--tokens", " ".join(map(str, full)), "--json"],
                         capture_output=True, text=True, check=True)
    logits = json.loads(out.stdout)["logits"]
    s = 0.0
    for t in range(len(p), len(full)):  # token t predicted at position t - 1
        row = logits[t - 1]
        top = max(row)
        s += row[full[t]] - top - math.log(sum(math.exp(x - top) for x in row))
    return s


rows = [json.loads(l) for l in open(heldout)]
good = bad = 0.0
right = 0
margin = 0.0
for r in rows:
    p = ids(r["prompt"])
    g_ids, b_ids = ids(r["prompt"] + r["good"]), ids(r["prompt"] + r["bad"])
    assert g_ids[:len(p)] == p and b_ids[:len(p)] == p, "the prompt's ids are not a prefix"
    g, b = reply_logp(model, p, g_ids), reply_logp(model, p, b_ids)
    good += g / len(rows)
    bad += b / len(rows)
    if ref:
        z = (g - reply_logp(ref, p, g_ids)) - (b - reply_logp(ref, p, b_ids))
        right += z > 0
        margin += z / len(rows)
print(f"{good:.4f} {bad:.4f}" + (f" {right / len(rows):.4f} {margin:.4f}" if ref else ""))
