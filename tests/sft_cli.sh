#!/usr/bin/env bash
# `rlhf sft` end to end: exact resume after SIGKILL (full fine-tuning of a Llama with GQA, and a
# GPT-2 LoRA adapter with dropout: the final loss, eval loss and saved files equal an
# uninterrupted run's byte for byte, one thread), --show-mask (completion and EOS marked, prompt
# not), truncation counted, --db data and the run recorded, and the input checks: each bad input
# exits 1 with a message naming the file and line or the reason, and writes nothing.
# Usage: sft_cli.sh RLHF_EXE
set -u
signal_at_step=$(cd "$(dirname "$0")" && pwd)/signal_at_step.py  # kills a run the moment its log reaches a step
rlhf=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rlhf-sft-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
cd "$tmp" || exit 1

# Data: arithmetic answers (prompt/completion) and short chats (messages).
/usr/bin/python3 - <<'PY'
import json, random
r = random.Random(3)
with open("sft.jsonl", "w") as f:
    for i in range(48):
        a, b = r.randint(0, 9), r.randint(0, 9)
        f.write(json.dumps({"prompt": f"Q: {a}+{b}?\nA:", "completion": f" {a + b}"}) + "\n")
    for i in range(16):
        f.write(json.dumps({"messages": [{"role": "user", "content": f"say {i}"},
                                         {"role": "assistant", "content": f"{i} {i}"}]}) + "\n")
open("corpus.txt", "w").write(open("sft.jsonl").read() * 2)
PY
"$rlhf" tokenizer train --vocab-size 300 --special "<|endoftext|>" corpus.txt --out tok.json >/dev/null 2>&1
"$rlhf" model new --family llama --layers 2 --dim 32 --heads 4 --kv-heads 2 --vocab 300 --context 64 --seed 1 \
  --out llama >/dev/null && cp tok.json llama/tokenizer.json
"$rlhf" model new --family gpt2 --layers 2 --dim 32 --heads 4 --vocab 300 --context 64 --seed 2 \
  --out gpt2 >/dev/null && cp tok.json gpt2/tokenizer.json
check "models with a BPE tokenizer made" '[ -f llama/tokenizer.json ] && [ -f gpt2/tokenizer.json ]'

# The value of field $3 on the last log line of step $2.
field() { grep "\"event\":\"step\",\"step\":$2," "$1" | tail -1 | sed -n "s/.*\"$3\":\([^,}]*\).*/\1/p"; }

N=60
for kind in full lora; do
  if [ $kind = full ]; then m=llama; extra=(); files=(model.safetensors training_state.bin)
  else m=gpt2; extra=(--lora-rank 4 --lora-targets c_attn,c_fc --lora-dropout 0.1); files=(adapter_model.safetensors training_state.bin); fi
  common=(--model $m --data sft.jsonl --steps $N --batch 4 --accum 2 --lr 3e-3 --warmup 5 --eval-every 20
          --save-every 5 "${extra[@]}")
  "$rlhf" sft "${common[@]}" --out $kind-A --json-log $kind-A.log >/dev/null 2>&1
  check "$kind: uninterrupted run succeeds" '[ $? -eq 0 ]'
  /usr/bin/python3 "$signal_at_step" --run $kind-C.log 23 KILL /dev/null -- "$rlhf" sft "${common[@]}" --out $kind-C \
    --json-log $kind-C.log
  rc=$?
  check "$kind: SIGKILL killed the run mid-way (exit $rc)" '[ $rc -eq 137 ] && ! grep -q "\"step\":$N," $kind-C.log'
  "$rlhf" sft --out $kind-C --resume --json-log $kind-C.log >$kind-C.out 2>&1
  check "$kind: resume after SIGKILL succeeds" '[ $? -eq 0 ]'
  a=$(field $kind-A.log $N loss); c=$(field $kind-C.log $N loss)
  check "$kind: loss at step $N identical: uninterrupted $a, SIGKILL+resume $c" '[ -n "$a" ] && [ "$a" = "$c" ]'
  a=$(field $kind-A.log $N eval_loss); c=$(field $kind-C.log $N eval_loss)
  check "$kind: eval loss at step $N identical ($a, $c)" '[ -n "$a" ] && [ "$a" = "$c" ]'
  for f in "${files[@]}"; do
    check "$kind: final $f identical byte for byte" 'cmp -s $kind-A/$f $kind-C/$f'
  done
  first=$(sed -n 's/.*"event":"eval","step":0,"eval_loss":\([^,}]*\).*/\1/p' $kind-A.log)
  last=$(field $kind-A.log $N eval_loss)
  check "$kind: eval loss falls ($first -> $last)" "/usr/bin/python3 -c 'import sys; sys.exit(not $last < $first)'"
done
check "LoRA output is a PEFT adapter" 'grep -q "\"peft_type\":.*\"LORA\"" lora-A/adapter_config.json && [ ! -f lora-A/model.safetensors ]'
check "full output is a model directory" '[ -f full-A/config.json ] && [ -f full-A/tokenizer.json ]'

# --show-mask: completion and EOS marked, the prompt not; nothing written.
"$rlhf" sft --model llama --data sft.jsonl --out shown --show-mask 2 >mask.out 2>&1
check "--show-mask exits 0 and writes nothing" '[ $? -eq 0 ] && [ ! -e shown ]'
check "--show-mask marks the answer and EOS: $(sed -n 3p mask.out | tr -d '\n')" \
  'grep -Eq "^A:\[\[ [0-9]+<\|endoftext\|>\]\]$" mask.out'
check "--show-mask does not mark the question" '! grep -q "\[\[Q:" mask.out'
"$rlhf" sft --model llama --data sft.jsonl --out shown --show-mask 40 >mask2.out 2>&1
check "--show-mask marks only the assistant's turn of a chat" \
  'grep -Eq "^Assistant:\[\[ [0-9]+ [0-9]+<\|endoftext\|>\]\]$" mask2.out && ! grep -q "\[\[say" mask2.out'
"$rlhf" sft --model llama --data sft.jsonl --out shown --max-length 8 --truncate keep_end --show-mask 1 >trunc.out 2>&1
check "truncation is counted and stated: $(grep truncation trunc.out)" \
  'grep -Eq "^truncation: [1-9][0-9]* of 64 examples longer than 8 tokens were cut \(keep_end\)" trunc.out'

# Input checks: exit 1, a message naming the place, nothing written.
bad() { # $1 what, $2 expected message (grep -E), then the data lines
  what=$1; want=$2; shift 2
  printf '%s\n' "$@" >bad.jsonl
  "$rlhf" sft --model llama --data bad.jsonl --out bad-out >/dev/null 2>bad.err
  rc=$?
  check "$what: exit 1, '$(head -1 bad.err)'" '[ $rc -eq 1 ] && grep -Eq "$want" bad.err && [ ! -e bad-out ]'
}
bad "bad JSON" 'bad.jsonl:2: not a JSON object' '{"prompt":"a","completion":"b"}' '{"prompt": oops' 
bad "missing completion" 'bad.jsonl:1: "completion" is missing' '{"prompt":"a"}'
bad "unknown role" 'bad.jsonl:1: messages\[1\] has role "robot"' \
  '{"messages":[{"role":"user","content":"hi"},{"role":"robot","content":"x"}]}'
bad "no assistant turn" 'bad.jsonl:2: "messages" has no assistant turn' '' '{"messages":[{"role":"user","content":"hi"}]}'
bad "empty dataset" 'no examples \(the dataset is empty\)' ''
long=$(/usr/bin/python3 -c 'import json; print(json.dumps({"prompt": "Q: " * 80, "completion": " 1"}))')
bad "example longer than the context" 'bad.jsonl:1: the example is [0-9]+ tokens, longer than the maximum of 64' "$long"
"$rlhf" model new --family llama --layers 1 --dim 16 --heads 2 --vocab 100 --context 32 --out small >/dev/null &&
  cp tok.json small/tokenizer.json
"$rlhf" sft --model small --data sft.jsonl --out bad-out >/dev/null 2>bad.err
rc=$?
check "tokenizer larger than the model's vocabulary: exit 1, '$(cat bad.err)'" \
  '[ $rc -eq 1 ] && grep -q "300 ids but the model.s vocabulary is 100" bad.err && [ ! -e bad-out ]'
"$rlhf" sft --model llama --data sft.jsonl --out full-A >/dev/null 2>bad.err
check "a fresh run into a run's directory: exit 1 suggesting --resume" '[ $? -eq 1 ] && grep -q -- "--resume" bad.err'
"$rlhf" sft --model llama --data sft.jsonl --out x --lr fast >/dev/null 2>bad.err
check "bad flag value: exit 2 naming it" '[ $? -eq 2 ] && grep -q -- "--lr: expected" bad.err'
"$rlhf" sft --out full-A --resume --batch 2 >/dev/null 2>bad.err
check "--resume with a changed setting: exit 2" '[ $? -eq 2 ]'

# --db: demonstrations from the database, and the run recorded there.
"$rlhf" db import --format sft --db fb.db sft.jsonl >/dev/null 2>&1
"$rlhf" sft --model llama --db fb.db --out from-db --steps 4 --batch 4 >db.out 2>&1
rc=$?
# (the import leaves out repeated prompts, so fewer than 64)
check "--db trains on the stored demonstrations: $(grep '^data:' db.out)" \
  '[ $rc -eq 0 ] && grep -Eq "^data: [1-9][0-9] examples" db.out'
exit $fail
