#!/usr/bin/env bash
# world_cli.sh — `rlhf world` as a user runs it: every family's sft lines verify as correct
# unless flagged flawed, the flawed share matches --flaws within sampling error, endless lines
# carry "eos": false, train/val/test share no prompt, bad usage exits 2 naming the flag, and a
# prompt from outside the world is refused (exit 1).
set -u
RLHF=$1
work=$(mktemp -d "${TMPDIR:-/tmp}/rlhf-world-XXXXXX")
trap 'rm -rf "$work"' EXIT
fail=0
"$RLHF" world --n 200 --format sft --flaws default --seed 3 --out "$work/train.jsonl" || fail=1
"$RLHF" world --n 200 --split test --format prompts > "$work/test.jsonl" || fail=1
"$RLHF" world --n 200 --split val --format prompts > "$work/val.jsonl" || fail=1
"$RLHF" world --n 200 --format sft --flaws default --seed 3 | cmp -s - "$work/train.jsonl" || { echo "FAIL: same seed, different output"; fail=1; }
/usr/bin/python3 - "$RLHF" "$work" <<'PY' || fail=1
import json, subprocess, sys, collections
rlhf, work = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(f"{work}/train.jsonl")]
fams = collections.Counter(r["family"] for r in rows)
bad = []
assert len(fams) >= 10, fams
flawed = [r for r in rows if "flaw" in r]
rate = len(flawed) / len(rows)
# default rates sum to 0.50; 2400 lines: standard error ~0.010
if not 0.45 <= rate <= 0.55: bad.append(f"flawed share {rate:.3f}, expected 0.50")
if any(("eos" in r) != (r.get("flaw") == "endless") for r in rows): bad.append("eos:false exactly on endless lines")
# every line through the verifier (a sample of each kind, to keep the test quick)
seen = collections.Counter()
for r in rows:
    kind = r.get("flaw", "good")
    if seen[(r["family"], kind)] >= 2 or kind == "endless": continue
    seen[(r["family"], kind)] += 1
    v = json.loads(subprocess.run([rlhf, "world", "verify", "--prompt", r["prompt"], "--response", r["completion"], "--json"],
                                  check=True, stdout=subprocess.PIPE, text=True).stdout)
    ok = v["correct"] and not v["flaws"] if kind == "good" else (kind in v["flaws"].split(","))
    if not ok: bad.append(f"{r['family']} {kind}: {r['completion']!r} -> {v}")
train = {r["prompt"] for r in rows}
test = {json.loads(l)["prompt"] for l in open(f"{work}/test.jsonl")}
val = {json.loads(l)["prompt"] for l in open(f"{work}/val.jsonl")}
if train & test or train & val or test & val: bad.append("splits share prompts")
for b in bad: print("FAIL:", b)
print(f"world: {len(rows)} sft lines in {len(fams)} families, {rate:.1%} flawed, {sum(seen.values())} verified, "
      f"{len(test)} test / {len(val)} val prompts disjoint from train")
sys.exit(1 if bad else 0)
PY
out=$("$RLHF" world --n 0 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q -- '--n' <<<"$out" || { echo "FAIL: --n 0 exits 2 naming --n (rc $rc: $out)"; fail=1; }
out=$("$RLHF" world --flaws 0.5,0.5,0,0 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q -- '--flaws' <<<"$out" || { echo "FAIL: rates summing to 1 refused (rc $rc)"; fail=1; }
out=$("$RLHF" world verify --prompt "Write a poem" --response x 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q 'not a task-world prompt' <<<"$out" || { echo "FAIL: outside prompt refused (rc $rc: $out)"; fail=1; }
[ $fail -eq 0 ] && echo "world cli: ok"
exit $fail
