#!/usr/bin/env bash
# `rlhf ppo` end to end on data built so that the reward is learnable (tests/rollout_data.py): a
# reward model is trained here on pairs whose chosen completion contains the letter e and whose
# rejected one never does (held-out accuracy >= 0.9 required), then PPO trains a random 2-layer
# Llama against it with 4-token completions and an adaptive KL coefficient (target 4). For each
# of 3 seeds: the mean reward-model score of 8 sampled completions (temperature 0.7, the same
# seeds before and after) of each held-out prompt must rise by at least 0.15 (one greedy answer
# per prompt is printed too; on 16 prompts it is too noisy to assert), and the measured KL to the starting model (objective/kl, summed over a
# completion, of every rollout batch) must stay under the target while being > 0 at the end
# (the policy moved). Also: TRL's metric names in --json-log; the run and every rollout (seed,
# reward) in --runs-db; prompts from --db (every stored prompt once; the run and rollouts recorded
# there); Ctrl-C saves and exits 130; the rollout/no_eos health warning fires (these completions never stop); --missing-eos-penalty lowers the scores of the same samples; a bad
# prompts line, a missing or non-reward --reward directory and missing flags are refused with
# nothing written.
# Usage: ppo_cli.sh RLHF_EXE
set -u
rlhf=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
here=$(cd "$(dirname "$0")" && pwd)
export OMP_NUM_THREADS=2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rlhf-ppo-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
cd "$tmp" || exit 1
/usr/bin/python3 "$here/rollout_data.py"
"$rlhf" tokenizer train --vocab-size 300 --special "<|endoftext|>" corpus.txt --out tok.json >/dev/null 2>&1
"$rlhf" model new --family llama --layers 2 --dim 32 --heads 4 --kv-heads 2 --vocab 300 --context 64 --seed 1 \
  --out llama >/dev/null && cp tok.json llama/tokenizer.json
"$rlhf" model new --family llama --layers 2 --dim 32 --heads 4 --kv-heads 2 --vocab 300 --context 64 --seed 2 \
  --out rm_lm >/dev/null && cp tok.json rm_lm/tokenizer.json
"$rlhf" reward train --model rm_lm --data rm_pairs.jsonl --out rm --lr 3e-3 --epochs 3 --batch 8 > rm.log 2>&1; rc=$?
acc=$(sed -n 's/^held-out accuracy \([0-9.]*\) on.*/\1/p' rm.log)
check "reward model trains (held-out accuracy ${acc:-?} >= 0.9)" "[ $rc -eq 0 ] && awk -v a='${acc:-0}' 'BEGIN { exit !(a >= 0.9) }'" || cat rm.log

target=4
run() { # SEED OUT [FLAGS...]
  local seed=$1 out=$2
  shift 2
  "$rlhf" ppo --model llama --reward rm --prompts prompts.jsonl --out "$out" --steps 120 --lr 2e-3 --batch 16 \
    --max-new-tokens 4 --val-fraction 0.25 --eval-samples 8 --target-kl $target --kl-horizon 200 --seed "$seed" "$@"
}
for seed in 1 2 3; do
  run $seed "out-$seed" --runs-db "runs-$seed.db" --json-log "ppo-$seed.jsonl" > "ppo-$seed.log" 2>&1; rc=$?
  check "seed $seed: exit 0" "[ $rc -eq 0 ]" || cat "ppo-$seed.log"
  read -r g0 g1 < <(sed -n 's/^held-out mean reward (greedy): \([-0-9.]*\) before, \([-0-9.]*\) after/\1 \2/p' "ppo-$seed.log")
  read -r v0 v1 < <(sed -n 's/^held-out mean reward (8 samples.*: \([-0-9.]*\) before, \([-0-9.]*\) after/\1 \2/p' "ppo-$seed.log")
  read -r k1 kmax < <(sed -n 's/.*objective\/kl [-0-9.]* -> \([-0-9.]*\) (largest \([-0-9.]*\)).*/\1 \2/p' "ppo-$seed.log")
  echo "  seed $seed: held-out reward sampled ${v0:-?} -> ${v1:-?} (greedy ${g0:-?} -> ${g1:-?}); objective/kl last ${k1:-?}, largest ${kmax:-?} (target $target)"
  check "seed $seed: held-out sampled reward rises by at least 0.15" "awk -v a='${v0:-1}' -v b='${v1:-0}' 'BEGIN { exit !(b >= a + 0.15) }'"
  check "seed $seed: measured KL stays under the target and the policy moved" \
    "awk -v k='${k1:-0}' -v m='${kmax:-99}' -v t=$target 'BEGIN { exit !(m < t && k > 0.01) }'"
done
check "TRL's metric names in the log" "for m in objective/kl objective/entropy objective/scores objective/rlhf_reward \
  policy/clipfrac_avg policy/approxkl_avg loss/policy_avg loss/value_avg val/ratio val/num_eos_tokens; do \
  grep -q \"\\\"\$m\\\"\" ppo-1.jsonl || exit 1; done"
db_q() { /usr/bin/python3 -c "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])" "$@"; }
check "the run recorded as kind ppo, done" "[ \"\$(db_q runs-1.db \"select count(*) from runs where kind = 'ppo' and status = 'done'\")\" = 1 ]"
n_gen=$(db_q runs-1.db "select count(*) from generations where seed is not null and json_extract(decoding_json, '$.rollout.trainer') = 'ppo' and json_extract(decoding_json, '$.rollout.reward') is not null")
check "every rollout stored as a generation with seed and reward (${n_gen:-?} of 30 batches x 16)" "[ '${n_gen:-0}' = 480 ]"
check "health warning rollout/no_eos (4-token completions never stop) printed, logged and stored" \
  "grep -q 'warning at step .* (rollout/no_eos)' ppo-1.log && grep -q '\"rollout/no_eos\"' ppo-1.jsonl && \
   [ \"\$(db_q runs-1.db \"select count(*) from run_warnings where code = 'rollout/no_eos'\")\" = 1 ]"
check "the trained policy saved" "[ -f out-1/model.safetensors ] && [ -f out-1/tokenizer.json ]"

# --missing-eos-penalty: the same seed samples the same first batch, whose clipped completions lose 1
"$rlhf" ppo --model llama --reward rm --prompts prompts.jsonl --out pen0 --steps 1 --batch 16 --max-new-tokens 4 \
  --seed 1 > pen0.log 2>&1
"$rlhf" ppo --model llama --reward rm --prompts prompts.jsonl --out pen1 --steps 1 --batch 16 --max-new-tokens 4 \
  --seed 1 --missing-eos-penalty 1 > pen1.log 2>&1
s0=$(sed -n 's/^objective\/scores \([-0-9.]*\) (first batch).*/\1/p' pen0.log)
s1=$(sed -n 's/^objective\/scores \([-0-9.]*\) (first batch).*/\1/p' pen1.log)
check "--missing-eos-penalty 1 lowers the first batch's mean score (${s0:-?} -> ${s1:-?}) by about 1" \
  "awk -v a='${s0:-0}' -v b='${s1:-0}' 'BEGIN { exit !(a - b > 0.5 && a - b <= 1.0001) }'"

# prompts from the database (--db): every stored prompt once, and the run and its rollouts recorded there
"$rlhf" db import --format trl --db pairs.db rm_pairs.jsonl > imp.log 2>&1
n_db=$(db_q pairs.db "select count(distinct text) from prompts")
"$rlhf" ppo --model llama --reward rm --db pairs.db --out out-db --steps 4 --batch 8 --max-new-tokens 4 > db.log 2>&1; rc=$?
read -r n_tr n_va < <(sed -n 's/^PPO on \([0-9]*\) prompts (\([0-9]*\) held out).*/\1 \2/p' db.log)
check "--db: trains on the ${n_db:-?} stored prompts (${n_tr:-?} + ${n_va:-?} held out)" "[ $rc -eq 0 ] && [ \$(( ${n_tr:-0} + ${n_va:-0} )) = '${n_db:-x}' ]" || cat db.log
check "--db: the run and its 8 rollouts recorded in the same database" \
  "[ \"\$(db_q pairs.db \"select count(*) from runs where kind = 'ppo' and status = 'done'\")\" = 1 ] && \
   [ \"\$(db_q pairs.db \"select count(*) from generations where json_extract(decoding_json, '\$.rollout.trainer') = 'ppo'\")\" = 8 ]"
"$rlhf" db init --db empty.db > /dev/null 2>&1
"$rlhf" ppo --model llama --reward rm --db empty.db --out x0 > e0.log 2>&1; rc=$?
check "--db without prompts: exit 1 saying so, nothing written" "[ $rc -eq 1 ] && grep -q 'no prompts stored' e0.log && [ ! -e x0 ]" || cat e0.log

# Ctrl-C: the run stops at the next step, saves the policy, records the run as stopped, exits 130
"$rlhf" ppo --model llama --reward rm --prompts prompts.jsonl --out out-int --steps 100000 --batch 16 --max-new-tokens 4 \
  --runs-db int.db > int.log 2>&1 &
pid=$!
sleep 3
kill -INT $pid
wait $pid; rc=$?
check "Ctrl-C: exit 130, the policy saved, the run stopped" "[ $rc -eq 130 ] && [ -f out-int/model.safetensors ] && \
  grep -q 'interrupted at step' int.log && [ \"\$(db_q int.db \"select status from runs where kind = 'ppo'\")\" = stopped ]" || cat int.log

# bad input: exit 1 (2 for usage) with nothing written
printf '{"prompt": "Q: a\\nA:"}\n{"prompt": 3}\n' > bad.jsonl
"$rlhf" ppo --model llama --reward rm --prompts bad.jsonl --out x1 > b.log 2>&1; rc=$?
check "a bad prompts line: exit 1 naming FILE:LINE, nothing written" "[ $rc -eq 1 ] && grep -q 'bad.jsonl:2' b.log && [ ! -e x1 ]" || cat b.log
"$rlhf" ppo --model llama --reward nowhere --prompts prompts.jsonl --out x2 > m.log 2>&1; rc=$?
check "a missing reward-model directory: exit 1 naming it, nothing written" "[ $rc -eq 1 ] && grep -q nowhere m.log && [ ! -e x2 ]" || cat m.log
"$rlhf" ppo --model llama --reward llama --prompts prompts.jsonl --out x3 > m2.log 2>&1; rc=$?
check "a language model as --reward: exit 1 (not a reward model)" "[ $rc -eq 1 ] && grep -q 'not a reward model' m2.log && [ ! -e x3 ]" || cat m2.log
"$rlhf" ppo --model llama --prompts prompts.jsonl --out x4 > u.log 2>&1; rc=$?
check "no --reward: exit 2 with the usage" "[ $rc -eq 2 ] && grep -q 'usage' u.log && [ ! -e x4 ]"
"$rlhf" ppo --model llama --reward rm --prompts prompts.jsonl --out x5 --kl-estimator k2 > e.log 2>&1; rc=$?
check "an unknown KL estimator: exit 2" "[ $rc -eq 2 ] && grep -q 'k1 or k3' e.log"
exit $fail
