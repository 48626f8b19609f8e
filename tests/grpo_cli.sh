#!/usr/bin/env bash
# `rlhf grpo` / `rlhf rloo` end to end on a reward built so that a random model can learn it:
# --reward-fn contains:e (a completion of 4 tokens that contains the letter e). The sampled
# reward of the last step must reach 0.9 from below 0.5 at the first, and the held-out greedy
# reward must not fall; the same for RLOO; --reward-fn toy on task-world prompts runs and
# refuses a prompt outside the world; bad usage exits 2. With --reward RM_DIR: a reward model
# trained here on learnable pairs (the chosen completion has an "e", the rejected none) scores the
# rollouts, and GRPO raises its mean on held-out prompts; every rollout is stored in --runs-db
# as a generation with its seed and reward; a missing reward-model directory is refused.
# Usage: grpo_cli.sh RLHF_EXE
set -u
rlhf=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
here=$(cd "$(dirname "$0")" && pwd)
export OMP_NUM_THREADS=2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rlhf-grpo-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
cd "$tmp" || exit 1
/usr/bin/python3 "$here/rollout_data.py"
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
# a reward model trained on learnable pairs as the reward
"$rlhf" model new --family llama --layers 2 --dim 32 --heads 4 --kv-heads 2 --vocab 300 --context 64 --seed 2 \
  --out rm_lm >/dev/null && cp tok.json rm_lm/tokenizer.json
"$rlhf" reward train --model rm_lm --data rm_pairs.jsonl --out rm --lr 3e-3 --epochs 3 --batch 8 > rm.log 2>&1; rc=$?
acc=$(sed -n 's/^held-out accuracy \([0-9.]*\) on.*/\1/p' rm.log)
check "reward model trains (held-out accuracy ${acc:-?} >= 0.9)" "[ $rc -eq 0 ] && awk -v a='${acc:-0}' 'BEGIN { exit !(a >= 0.9) }'" || cat rm.log
"$rlhf" grpo --model llama --prompts prompts.jsonl --reward rm --out out-rm --steps 40 --lr 1e-2 \
  --num-generations 8 --prompts-per-step 4 --max-new-tokens 4 --val-fraction 0.25 --seed 3 --runs-db rm_runs.db \
  > grpo-rm.log 2>&1; rc=$?
check "grpo --reward RM_DIR: exit 0" "[ $rc -eq 0 ]" || cat grpo-rm.log
read -r v0 v1 < <(sed -n 's/^held-out mean reward (greedy): \([-0-9.]*\) before, \([-0-9.]*\) after/\1 \2/p' grpo-rm.log)
echo "  grpo with the reward model: held-out greedy reward ${v0:-?} -> ${v1:-?}"
check "grpo --reward RM_DIR: held-out reward-model score rises by at least 0.5" "awk -v a='${v0:-1}' -v b='${v1:-0}' 'BEGIN { exit !(b >= a + 0.5) }'"
n_gen=$(/usr/bin/python3 -c "import sqlite3; c = sqlite3.connect('rm_runs.db'); print(c.execute(\"select count(*) from generations where seed is not null and json_extract(decoding_json, '$.rollout.reward') is not null and json_extract(decoding_json, '$.rollout.trainer') = 'grpo'\").fetchone()[0])")
check "every rollout stored as a generation with seed and reward (${n_gen:-?} of 40 x 32)" "[ '${n_gen:-0}' = 1280 ]"
"$rlhf" grpo --model llama --prompts prompts.jsonl --reward nowhere --out x > m.log 2>&1; rc=$?
check "a missing reward-model directory: exit 1 naming it" "[ $rc -eq 1 ] && grep -q nowhere m.log" || cat m.log
"$rlhf" grpo --model llama --prompts prompts.jsonl --reward llama --out x > m2.log 2>&1; rc=$?
check "a language model as --reward: exit 1 saying it is not a reward model" "[ $rc -eq 1 ] && grep -q 'not a reward model' m2.log" || cat m2.log
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
