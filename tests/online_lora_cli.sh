#!/usr/bin/env bash
# LoRA for the online trainers end to end (rlhf grpo, rloo, ppo --lora-rank): a tiny Llama is
# first pre-trained on prompts answered with and without the letter e (so it starts from peaked,
# not uniform, distributions, as a real run starts from an SFT model: an adapter on a random
# model can hardly move its near-uniform logits), then only a fresh adapter trains on
#   - GRPO (3 seeds) and RLOO with --reward-fn contains:e: the sampled reward of the last step
#     reaches 0.9 from below 0.5 at the first, the held-out greedy reward rises;
#   - PPO (3 seeds) against a reward model trained here on learnable pairs: the held-out mean
#     reward of 8 samples per prompt (same seeds before and after) rises by at least 1.
# The outputs are PEFT adapter directories (no full model), mergeable with rlhf model merge; PPO
# also saves its value head (value_head.safetensors, with or without LoRA), which --value-head
# loads into a later run (a head of another width is refused).
# Usage: online_lora_cli.sh RLHF_EXE
set -u
rlhf=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
here=$(cd "$(dirname "$0")" && pwd)
export OMP_NUM_THREADS=1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rlhf-online-lora-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
cd "$tmp" || exit 1
/usr/bin/python3 "$here/rollout_data.py"
/usr/bin/python3 - <<'PY'
import json
with open("base.txt", "w") as out:  # a quarter of the answers carry an e
    for i, line in enumerate(open("rm_pairs.jsonl")):
        d = json.loads(line)
        for k in range(3):
            out.write(d["prompt"] + (d["chosen"] if (i * 3 + k) % 4 == 0 else d["rejected"]) + "<|endoftext|>\n")
PY
"$rlhf" tokenizer train --vocab-size 300 --special "<|endoftext|>" corpus.txt --out tok.json >/dev/null 2>&1
"$rlhf" model new --family llama --layers 2 --dim 32 --heads 4 --kv-heads 2 --vocab 300 --context 64 --seed 1 \
  --out llama >/dev/null && cp tok.json llama/tokenizer.json
"$rlhf" pretrain --model llama --data base.txt --out base --steps 200 --batch 8 --context 32 --lr 3e-3 > pre.log 2>&1
check "the base pre-trains" "[ -f base/model.safetensors ]" || cat pre.log
base_sum=$(sha256sum base/model.safetensors)
lora=(--lora-rank 8 --lora-alpha 16 --lora-targets all-linear)

for cmd in "grpo 1" "grpo 2" "grpo 3" "rloo 3"; do
  set -- $cmd
  "$rlhf" $1 --model base --prompts prompts.jsonl --reward-fn contains:e --out "out-$1-$2" --steps 60 --lr 1e-2 \
    --num-generations 8 --prompts-per-step 4 --max-new-tokens 4 --val-fraction 0.25 --seed $2 "${lora[@]}" \
    > "$1-$2.log" 2>&1; rc=$?
  check "$1 seed $2 LoRA: exit 0" "[ $rc -eq 0 ]" || cat "$1-$2.log"
  read -r r0 r1 < <(sed -n 's/.*sampled reward \([0-9.]*\) (first step) -> \([0-9.]*\) (last step).*/\1 \2/p' "$1-$2.log")
  read -r v0 v1 < <(sed -n 's/^held-out mean reward (greedy): \([0-9.]*\) before, \([0-9.]*\) after/\1 \2/p' "$1-$2.log")
  echo "  $1 seed $2 LoRA: sampled reward ${r0:-?} -> ${r1:-?}, held-out greedy ${v0:-?} -> ${v1:-?}"
  check "$1 seed $2 LoRA: sampled reward rises from below 0.5 to at least 0.9" \
    "awk -v a='${r0:-1}' -v b='${r1:-0}' 'BEGIN { exit !(a < 0.5 && b >= 0.9) }'"
  check "$1 seed $2 LoRA: held-out greedy reward rises" "awk -v a='${v0:-1}' -v b='${v1:-0}' 'BEGIN { exit !(b > a) }'"
  check "$1 seed $2 LoRA: a PEFT adapter saved, not a full model" \
    "grep -q '\"peft_type\":.*\"LORA\"' out-$1-$2/adapter_config.json && [ -f out-$1-$2/adapter_model.safetensors ] && [ ! -f out-$1-$2/model.safetensors ]"
done
"$rlhf" model merge --model base --adapter out-grpo-1 --out merged > merge.log 2>&1; rc=$?
check "rlhf model merge takes the GRPO adapter" "[ $rc -eq 0 ] && [ -f merged/model.safetensors ]" || cat merge.log
# the adapter directory itself is a model for rlhf generate (its base merged on load)
"$rlhf" generate --model out-grpo-1 --prompt-ids "1 5 9" -n 6 --candidates 3 --strategy sample --seed 4 --json > gen-ad.json 2> gen-ad.err; rc=$?
"$rlhf" generate --model merged --prompt-ids "1 5 9" -n 6 --candidates 3 --strategy sample --seed 4 --json > gen-m.json 2>&1
ids() { /usr/bin/python3 -c 'import json,sys; print([json.loads(l)["ids"] for l in open(sys.argv[1]) if l.strip()])' "$1"; }
check "rlhf generate --model ADAPTER_DIR samples what the merged model samples" \
  "[ $rc -eq 0 ] && [ \"\$(ids gen-ad.json)\" = \"\$(ids gen-m.json)\" ] && [ \$(grep -c ids gen-m.json) -eq 3 ]" || cat gen-ad.err

"$rlhf" model new --family llama --layers 2 --dim 32 --heads 4 --kv-heads 2 --vocab 300 --context 64 --seed 2 \
  --out rm_lm >/dev/null && cp tok.json rm_lm/tokenizer.json
"$rlhf" reward train --model rm_lm --data rm_pairs.jsonl --out rm --lr 3e-3 --epochs 3 --batch 8 > rm.log 2>&1; rc=$?
acc=$(sed -n 's/^held-out accuracy \([0-9.]*\) on.*/\1/p' rm.log)
check "reward model trains (held-out accuracy ${acc:-?} >= 0.9)" "[ $rc -eq 0 ] && awk -v a='${acc:-0}' 'BEGIN { exit !(a >= 0.9) }'" || cat rm.log
for seed in 1 2 3; do
  "$rlhf" ppo --model base --reward rm --prompts prompts.jsonl --out "ppo-$seed" --steps 120 --lr 3e-3 --batch 16 \
    --max-new-tokens 4 --val-fraction 0.25 --eval-samples 8 --target-kl 4 --kl-horizon 200 --seed $seed "${lora[@]}" \
    > "ppo-$seed.log" 2>&1; rc=$?
  check "ppo seed $seed LoRA: exit 0" "[ $rc -eq 0 ]" || cat "ppo-$seed.log"
  read -r v0 v1 < <(sed -n 's/^held-out mean reward (8 samples.*: \([-0-9.]*\) before, \([-0-9.]*\) after/\1 \2/p' "ppo-$seed.log")
  read -r k1 kmax < <(sed -n 's/.*objective\/kl [-0-9.]* -> \([-0-9.]*\) (largest \([-0-9.]*\)).*/\1 \2/p' "ppo-$seed.log")
  echo "  ppo seed $seed LoRA: held-out sampled reward ${v0:-?} -> ${v1:-?}; objective/kl last ${k1:-?}, largest ${kmax:-?}"
  check "ppo seed $seed LoRA: held-out sampled reward rises by at least 1" \
    "awk -v a='${v0:-1}' -v b='${v1:-0}' 'BEGIN { exit !(b >= a + 1) }'"
  check "ppo seed $seed LoRA: adapter and value head saved, no full model" \
    "[ -f ppo-$seed/adapter_model.safetensors ] && [ -f ppo-$seed/value_head.safetensors ] && [ ! -f ppo-$seed/model.safetensors ]"
done
check "the base model's files are untouched" "[ \"\$(sha256sum base/model.safetensors)\" = \"$base_sum\" ]"
/usr/bin/python3 - ppo-1/value_head.safetensors > vh.txt <<'PY'
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n])
w = h["v_head.summary.weight"]
print(w["shape"], h["v_head.summary.bias"]["shape"], any(b for b in raw[8 + n:]))
PY
check "value_head.safetensors: TRL's v_head.summary.weight (1, 32) and .bias (1), trained (non-zero)" \
  "[ \"\$(cat vh.txt)\" = '[1, 32] [1] True' ]" || cat vh.txt
# a full PPO run saves its value head too; a later run starts from it
"$rlhf" ppo --model base --reward rm --prompts prompts.jsonl --out ppo-full --steps 4 --batch 8 --max-new-tokens 4 \
  --seed 1 > full.log 2>&1; rc=$?
check "full PPO saves the policy and value_head.safetensors" "[ $rc -eq 0 ] && [ -f ppo-full/model.safetensors ] && [ -f ppo-full/value_head.safetensors ]" || cat full.log
"$rlhf" ppo --model base --reward rm --prompts prompts.jsonl --out ppo-vh --steps 1 --batch 8 --max-new-tokens 4 \
  --seed 1 --value-head ppo-1/value_head.safetensors --json-log vh.jsonl > vh.log 2>&1; rc=$?
"$rlhf" ppo --model base --reward rm --prompts prompts.jsonl --out ppo-vh0 --steps 1 --batch 8 --max-new-tokens 4 \
  --seed 1 --json-log vh0.jsonl > vh0.log 2>&1
lv=$(grep -o '"loss/value_avg":[-0-9.e]*' vh.jsonl | head -1); lv0=$(grep -o '"loss/value_avg":[-0-9.e]*' vh0.jsonl | head -1)
check "--value-head starts from the saved head (value loss of the same first step differs: ${lv#*:} vs ${lv0#*:} from zero)" \
  "[ $rc -eq 0 ] && [ -n '$lv' ] && [ '$lv' != '$lv0' ]" || cat vh.log
"$rlhf" model new --family llama --layers 2 --dim 16 --heads 4 --kv-heads 2 --vocab 300 --context 64 --seed 1 \
  --out narrow >/dev/null && cp tok.json narrow/tokenizer.json
"$rlhf" ppo --model narrow --reward rm --prompts prompts.jsonl --out ppo-bad --steps 1 --batch 8 --max-new-tokens 4 \
  --value-head ppo-1/value_head.safetensors > bad.log 2>&1; rc=$?
check "--value-head of another hidden size: exit 1 saying so" "[ $rc -eq 1 ] && grep -q 'hidden size is 16' bad.log" || cat bad.log
exit $fail
