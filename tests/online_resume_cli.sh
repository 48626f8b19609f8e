#!/usr/bin/env bash
# --resume for the online trainers: for rlhf ppo and rlhf grpo, full and LoRA (with dropout), a
# run killed with SIGKILL mid-way (tests/signal_at_step.py, at a step inside a rollout batch:
# PPO's 4 steps per batch, GRPO's --iterations 2) and resumed from its last checkpoint (not from
# the start: the resumed log begins after it) with the same command plus --resume
# (checkpoints every 5 PPO steps, every 7 GRPO steps: the one resumed from lies inside a batch)
# ends with the policy (model.safetensors or adapter_model.safetensors), PPO's value head and the
# training state byte for byte equal to an uninterrupted run's (one thread), and the same loss at
# the last step. Also: a resume with another setting is refused naming it, a fresh run into an OUT
# holding a training state is refused, --resume without a state is refused.
# Usage: online_resume_cli.sh RLHF_EXE
set -u
rlhf=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
here=$(cd "$(dirname "$0")" && pwd)
signal_at_step="$here/signal_at_step.py"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rlhf-online-resume-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
cd "$tmp" || exit 1
/usr/bin/python3 "$here/rollout_data.py"
"$rlhf" tokenizer train --vocab-size 300 --special "<|endoftext|>" corpus.txt --out tok.json >/dev/null 2>&1
for s in 1 2; do
  "$rlhf" model new --family llama --layers 2 --dim 32 --heads 4 --kv-heads 2 --vocab 300 --context 64 --seed $s \
    --out "m$s" >/dev/null && cp tok.json "m$s/tokenizer.json"
done
"$rlhf" reward train --model m2 --data rm_pairs.jsonl --out rm --lr 3e-3 --epochs 1 --batch 8 > rm.log 2>&1 || cat rm.log
field() { grep "\"event\":\"step\",\"step\":$2," "$1" | tail -1 | sed -n "s|.*\"$3\":\([^,}]*\).*|\1|p"; }

steps=40
for run in "ppo full" "ppo lora" "grpo full" "grpo lora"; do
  set -- $run
  trainer=$1 kind=$2
  if [ $trainer = ppo ]; then
    args=(ppo --model m1 --reward rm --prompts prompts.jsonl --steps $steps --lr 2e-3 --batch 8 --max-new-tokens 4
          --target-kl 4 --kl-horizon 200 --eval-samples 2 --save-every 5 --seed 3)
    files=(value_head.safetensors training_state.bin)
  else
    args=(grpo --model m1 --prompts prompts.jsonl --reward-fn contains:e --steps $steps --lr 1e-2 --num-generations 4
          --prompts-per-step 2 --iterations 2 --max-new-tokens 4 --beta 0.04 --save-every 7 --seed 3)
    files=(training_state.bin)
  fi
  if [ $kind = lora ]; then
    args+=(--lora-rank 4 --lora-alpha 8 --lora-dropout 0.1 --lora-targets all-linear); files+=(adapter_model.safetensors)
  else
    files+=(model.safetensors)
  fi
  "$rlhf" "${args[@]}" --out "A-$run" --json-log "A-$trainer-$kind.jsonl" > "A-$trainer-$kind.log" 2>&1 || cat "A-$trainer-$kind.log"
  /usr/bin/python3 "$signal_at_step" --run "B-$trainer-$kind.jsonl" 13 KILL "B-$trainer-$kind.log" -- \
    "$rlhf" "${args[@]}" --out "B-$run" --json-log "B-$trainer-$kind.jsonl"; rc=$?
  check "$trainer $kind: kill -9 stopped the run mid-way (exit $rc, last step $(grep -c '"event":"step"' "B-$trainer-$kind.jsonl"))" \
    "[ $rc -eq 137 ] && ! grep -q '\"step\":$steps,' 'B-$trainer-$kind.jsonl'"
  "$rlhf" "${args[@]}" --out "B-$run" --resume --json-log "B-$trainer-$kind.jsonl" > "R-$trainer-$kind.log" 2>&1; rc=$?
  from=$(sed -n 's/^resumed from the checkpoint of step \([0-9]*\)$/\1/p' "R-$trainer-$kind.log")
  first=$(grep -o '"event":"step","step":[0-9]*' "B-$trainer-$kind.jsonl" | head -1 | sed 's/.*://')
  check "$trainer $kind: --resume exits 0, continuing from the checkpoint of step ${from:-?} (first step logged ${first:-?})" \
    "[ $rc -eq 0 ] && [ '${from:-0}' -gt 0 ] && [ '${from:-0}' -lt $steps ] && [ '${first:-0}' = \$(( ${from:-0} + 1 )) ]" \
    || cat "R-$trainer-$kind.log"
  a=$(field "A-$trainer-$kind.jsonl" $steps loss); b=$(field "B-$trainer-$kind.jsonl" $steps loss)
  check "$trainer $kind: the loss at step $steps equals the uninterrupted run's ($a vs $b)" '[ -n "$a" ] && [ "$a" = "$b" ]'
  for fl in "${files[@]}"; do
    check "$trainer $kind: final $fl identical byte for byte" "cmp -s 'A-$run/$fl' 'B-$run/$fl'"
  done
done

"$rlhf" grpo --model m1 --prompts prompts.jsonl --reward-fn contains:e --steps $steps --lr 3e-2 --num-generations 4 \
  --prompts-per-step 2 --iterations 2 --max-new-tokens 4 --beta 0.04 --save-every 7 --seed 3 --out "A-grpo full" --resume \
  > other.log 2>&1; rc=$?
check "--resume with another --lr: exit 1 naming lr and both values" \
  "[ $rc -eq 1 ] && grep -q 'other settings or data: lr was 0.00999999977648258, now 0.029999999329447746' other.log" || cat other.log
head -40 prompts.jsonl > fewer.jsonl
"$rlhf" grpo --model m1 --prompts fewer.jsonl --reward-fn contains:e --steps $steps --lr 1e-2 --num-generations 4 \
  --prompts-per-step 2 --iterations 2 --max-new-tokens 4 --beta 0.04 --save-every 7 --seed 3 --out "A-grpo full" --resume \
  > data.log 2>&1; rc=$?
check "--resume with other prompts: exit 1 naming the prompts" "[ $rc -eq 1 ] && grep -q 'data (the prompts as encoded) was' data.log" || cat data.log
"$rlhf" ppo --model m1 --reward rm --prompts prompts.jsonl --steps 2 --batch 8 --max-new-tokens 4 --out "A-ppo full" > fresh.log 2>&1; rc=$?
check "a fresh run into an OUT holding a training state: exit 1 saying to pass --resume" \
  "[ $rc -eq 1 ] && grep -q 'already holds a training run' fresh.log" || cat fresh.log
"$rlhf" ppo --model m1 --reward rm --prompts prompts.jsonl --steps 2 --batch 8 --max-new-tokens 4 --out none --resume > none.log 2>&1; rc=$?
check "--resume without a training state: exit 1 saying so" "[ $rc -eq 1 ] && grep -q 'no training state to resume' none.log" || cat none.log
exit $fail
