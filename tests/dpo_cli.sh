#!/usr/bin/env bash
# `rlhf dpo` end to end on data built so that it can learn: in every pair the chosen reply is
# made of the words "good ..." and the rejected of "bad ...", for prompts of random letters.
# DPO must raise the held-out preference accuracy (the implicit reward ranks chosen over
# rejected on pairs it never trained on) from chance to at least 0.9 with a positive margin,
# for the sigmoid and IPO losses and with a LoRA adapter; the reference pass is cached (a second
# run reads it); the run is recorded in the database with TRL's metric names; bad input exits
# with a message and writes nothing.
# Usage: dpo_cli.sh RLHF_EXE
set -u
rlhf=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
export OMP_NUM_THREADS=2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rlhf-dpo-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
cd "$tmp" || exit 1
/usr/bin/python3 - <<'PY'
import json, random
r = random.Random(5)
L = "abcdefghij"
with open("pairs.jsonl", "w") as f:
    for i in range(160):
        p = "Q: " + " ".join(r.choice(L) * r.randint(1, 3) for _ in range(r.randint(2, 4))) + "\nA:"
        n = r.randint(1, 3)
        f.write(json.dumps({"prompt": p, "chosen": " good" * n + " .", "rejected": " bad" * n + " ."}) + "\n")
open("corpus.txt", "w").write(open("pairs.jsonl").read() * 2)
PY
"$rlhf" tokenizer train --vocab-size 300 --special "<|endoftext|>" corpus.txt --out tok.json >/dev/null 2>&1
"$rlhf" model new --family llama --layers 2 --dim 32 --heads 4 --kv-heads 2 --vocab 300 --context 64 --seed 1 \
  --out llama >/dev/null && cp tok.json llama/tokenizer.json
check "a model with a tokenizer" '[ -f llama/tokenizer.json ]'

acc() { sed -n "s/^held out $2 *: rewards\/accuracies \([0-9.]*\) rewards\/margins \([-0-9.]*\).*/\1 \2/p" "$1"; }
run() { # name, extra flags
  "$rlhf" dpo --model llama --data pairs.jsonl --out "out-$1" --steps 40 --lr 3e-3 --batch 8 --eval-every 40 \
    --val-fraction 0.2 --seed 3 --runs-db runs.db "${@:2}" > "$1.log" 2>&1
}
for cfg in "sigmoid --loss-type sigmoid --beta 0.1" "ipo --loss-type ipo --beta 0.5" "lora --lora-rank 8 --lora-alpha 16 --beta 0.1"; do
  set -- $cfg
  name=$1; shift
  run "$name" "$@"; rc=$?
  check "$name: exit 0" "[ $rc -eq 0 ]" || cat "$name.log"
  read -r a0 m0 < <(acc "$name.log" before)
  read -r a1 m1 < <(acc "$name.log" after)
  echo "  $name: held-out accuracy ${a0:-?} -> ${a1:-?}, margin ${m0:-?} -> ${m1:-?}"
  check "$name: held-out accuracy >= 0.9 after (was ${a0:-?})" "awk -v a='${a1:-0}' 'BEGIN { exit !(a >= 0.9) }'"
  check "$name: the margin grew and is positive" "awk -v a='${m0:-0}' -v b='${m1:-0}' 'BEGIN { exit !(b > a && b > 0) }'"
done
check "full run saved a model directory" '[ -f out-sigmoid/model.safetensors ] && [ -f out-sigmoid/config.json ]'
check "LoRA run saved a PEFT adapter" '[ -f out-lora/adapter_config.json ] && [ -f out-lora/adapter_model.safetensors ]'
check "first run computed the reference log-probabilities" 'grep -q "computed and cached" sigmoid.log'
run sigmoid --loss-type sigmoid --beta 0.1
check "a second run on the same data reads them from the cache" 'grep -q "read from the cache" sigmoid.log'
check "runs recorded with TRL's metric names" \
  '[ "$(/usr/bin/python3 -c "import sqlite3; c = sqlite3.connect(\"runs.db\"); print(c.execute(\"select count(*) from runs where kind = '"'"'dpo'"'"'\").fetchone()[0], c.execute(\"select count(distinct name) from metrics where name in ('"'"'rewards/accuracies'"'"', '"'"'eval_rewards/margins'"'"')\").fetchone()[0])")" = "4 2" ]'
# bad input
printf '{"prompt": "x", "chosen": "a"}\n' > bad.jsonl
"$rlhf" dpo --model llama --data bad.jsonl --out out-bad > bad.log 2>&1; rc=$?
check "a line without rejected: exit 1 naming the line ($(head -c 120 bad.log))" '[ $rc -eq 1 ] && grep -q "bad.jsonl:1" bad.log && [ ! -e out-bad ]'
"$rlhf" dpo --model llama --data pairs.jsonl --out out-x --loss-type kto > lt.log 2>&1; rc=$?
check "an unknown loss type: exit 2" '[ $rc -eq 2 ] && grep -q "sigmoid, ipo, hinge or robust" lt.log'
exit $fail
