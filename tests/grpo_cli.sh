#!/usr/bin/env bash
# `rlhf grpo` / `rlhf rloo` end to end on a reward built so that a random model can learn it:
# --reward-fn contains:e (a completion of 4 tokens that contains the letter e). The sampled
# reward of the last step must reach 0.9 from below 0.5 at the first, and the held-out greedy
# reward must not fall; the same for RLOO; --reward-fn toy on task-world prompts runs and
# refuses a prompt outside the world; bad usage exits 2.
# Usage: grpo_cli.sh RLHF_EXE
set -u
rlhf=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
export OMP_NUM_THREADS=2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rlhf-grpo-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
cd "$tmp" || exit 1
/usr/bin/python3 - <<'PY'
import json, random
r = random.Random(5)
L = "abcdefghij"
with open("prompts.jsonl", "w") as f:
    for i in range(64):
        p = "Q: " + " ".join(r.choice(L) * r.randint(1, 3) for _ in range(r.randint(2, 4))) + "\nA:"
        f.write(json.dumps({"prompt": p}) + "\n")
open("corpus.txt", "w").write(open("prompts.jsonl").read() * 4 + "good bad yes no " * 50)
PY
"$rlhf" tokenizer train --vocab-size 300 --special "<|endoftext|>" corpus.txt --out tok.json >/dev/null 2>&1
"$rlhf" model new --family llama --layers 2 --dim 32 --heads 4 --kv-heads 2 --vocab 300 --context 64 --seed 1 \
  --out llama >/dev/null && cp tok.json llama/tokenizer.json
for cmd in grpo rloo; do
  "$rlhf" $cmd --model llama --prompts prompts.jsonl --reward-fn contains:e --out "out-$cmd" --steps 60 --lr 1e-2 \
    --num-generations 8 --prompts-per-step 4 --max-new-tokens 4 --val-fraction 0.25 --seed 3 --runs-db runs.db \
    --json-log "$cmd.jsonl" > "$cmd.log" 2>&1; rc=$?
  check "$cmd: exit 0" "[ $rc -eq 0 ]" || cat "$cmd.log"
  read -r r0 r1 < <(sed -n 's/.*sampled reward \([0-9.]*\) (first step) -> \([0-9.]*\) (last step).*/\1 \2/p' "$cmd.log")
  read -r v0 v1 < <(sed -n 's/^held-out mean reward (greedy): \([0-9.]*\) before, \([0-9.]*\) after/\1 \2/p' "$cmd.log")
  echo "  $cmd: sampled reward ${r0:-?} -> ${r1:-?}, held-out greedy ${v0:-?} -> ${v1:-?}"
  check "$cmd: sampled reward rises from below 0.5 to at least 0.9" "awk -v a='${r0:-1}' -v b='${r1:-0}' 'BEGIN { exit !(a < 0.5 && b >= 0.9) }'"
  check "$cmd: held-out greedy reward does not fall" "awk -v a='${v0:-1}' -v b='${v1:-0}' 'BEGIN { exit !(b >= a) }'"
  check "$cmd: TRL's metric names in the log" "grep -q '\"frac_reward_zero_std\"' $cmd.jsonl && grep -q '\"completions/clipped_ratio\"' $cmd.jsonl && grep -q '\"clip_ratio/region_mean\"' $cmd.jsonl"
  check "$cmd: a model directory saved" "[ -f out-$cmd/model.safetensors ]"
done
check "both runs recorded" '[ "$(/usr/bin/python3 -c "import sqlite3; print(sqlite3.connect(\"runs.db\").execute(\"select count(*) from runs where kind in ('"'"'grpo'"'"', '"'"'rloo'"'"')\").fetchone()[0])")" = 2 ]'
# the task-world verifier as the reward
"$rlhf" world --family add --n 8 --split train --format prompts > world.jsonl
"$rlhf" grpo --model llama --prompts world.jsonl --reward-fn toy --out out-toy --steps 2 --num-generations 2 \
  --prompts-per-step 2 --max-new-tokens 4 --val-fraction 0 > toy.log 2>&1; rc=$?
check "toy verifier reward runs on task-world prompts" "[ $rc -eq 0 ]" || cat toy.log
"$rlhf" grpo --model llama --prompts prompts.jsonl --reward-fn toy --out out-toy2 --steps 1 --num-generations 2 \
  --max-new-tokens 2 > toy2.log 2>&1; rc=$?
check "toy reward on a prompt outside the world: exit 1 naming it" "[ $rc -eq 1 ] && grep -q 'not a task-world prompt' toy2.log"
"$rlhf" grpo --model llama --prompts prompts.jsonl --reward-fn nope --out x > u.log 2>&1; rc=$?
check "unknown reward function: exit 2" "[ $rc -eq 2 ] && grep -q 'toy or contains' u.log"
printf '{"prompt": 3}\n' > bad.jsonl
"$rlhf" grpo --model llama --prompts bad.jsonl --reward-fn toy --out x > b.log 2>&1; rc=$?
check "a bad prompts line: exit 1 naming FILE:LINE" "[ $rc -eq 1 ] && grep -q 'bad.jsonl:1' b.log"
exit $fail
