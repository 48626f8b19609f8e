#!/usr/bin/env bash
# `rlhf dpo` end to end on data built so that it can learn: in every pair the chosen reply is
# made of the words "good ..." and the rejected of "bad ...", for prompts of random letters.
# DPO must raise the held-out preference accuracy (the implicit reward ranks chosen over
# rejected on pairs it never trained on) from chance to at least 0.9 with a positive margin,
# for the sigmoid and IPO losses and with a LoRA adapter, and measured from the saved weights on
# 32 held-out prompts (tests/pref_heldout.py) for seeds 1-3; the reference log-probabilities are
# cached in the runs database (a second run computes none, changed data only the new pairs, the
# IPO and LoRA runs share the first run's reference) or in OUT without one; --ref uses another
# model and refuses one with another tokenizer; --resume after kill -9 ends bit-identical to an
# uninterrupted run (one thread; full and LoRA); the health warning of a shortcut the data
# offers (accuracies pinned at 1.0 from the first steps) is printed and stored with the run; the
# run is recorded in the database with TRL's metric names; bad input exits with a message and
# writes nothing.
# Usage: dpo_cli.sh RLHF_EXE
set -u
signal_at_step=$(cd "$(dirname "$0")" && pwd)/signal_at_step.py  # kills a run the moment its log reaches a step
heldout_py=$(cd "$(dirname "$0")" && pwd)/pref_heldout.py  # held-out log-probabilities from saved weights
. "$(dirname "$0")/pref_resume.sh"  # resume_matches: kill -9, --resume, compare with an uninterrupted run
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
seen = set()
with open("pairs.jsonl", "w") as f:
    for i in range(160):
        p = "Q: " + " ".join(r.choice(L) * r.randint(1, 3) for _ in range(r.randint(2, 4))) + "\nA:"
        seen.add(p)
        n = r.randint(1, 3)
        f.write(json.dumps({"prompt": p, "chosen": " good" * n + " .", "rejected": " bad" * n + " ."}) + "\n")
open("corpus.txt", "w").write(open("pairs.jsonl").read() * 2)
with open("heldout.jsonl", "w") as f:  # 32 prompts no run trains on
    while len(seen) < 160 + 32:
        p = "Q: " + " ".join(r.choice(L) * r.randint(1, 3) for _ in range(r.randint(2, 4))) + "\nA:"
        if p in seen:
            continue
        seen.add(p)
        n = r.randint(1, 3)
        f.write(json.dumps({"prompt": p, "good": " good" * n + " .", "bad": " bad" * n + " ."}) + "\n")
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
# the implicit reward measured from the saved weights on 32 held-out prompts, for seeds 1-3 (the
# sigmoid run above is seed 3; seeds 1 and 2 read its cached reference)
run s1 --loss-type sigmoid --beta 0.1 --seed 1
run s2 --loss-type sigmoid --beta 0.1 --seed 2
accs=""
for s in 1 2 3; do
  dir=out-s$s; [ $s = 3 ] && dir=out-sigmoid
  read -r _ _ ha hm < <(/usr/bin/python3 "$heldout_py" "$rlhf" tok.json heldout.jsonl "$dir" llama)
  echo "  seed $s: saved weights' held-out implicit-reward accuracy ${ha:-?}, mean margin ${hm:-?} nats (32 prompts)"
  check "seed $s: implicit-reward accuracy from the saved weights >= 0.9 on held-out prompts" "awk -v a='${ha:-0}' 'BEGIN { exit !(a >= 0.9) }'"
  accs="$accs ${ha:-0}"
done
echo "  held-out accuracy over seeds 1-3:$accs ($(echo $accs | awk '{ m = ($1 + $2 + $3) / 3; v = (($1 - m)^2 + ($2 - m)^2 + ($3 - m)^2) / 2; printf "mean %.3f, sd %.3f", m, sqrt(v) }'))"
check "full run saved a model directory" '[ -f out-sigmoid/model.safetensors ] && [ -f out-sigmoid/config.json ]'
check "LoRA run saved a PEFT adapter" '[ -f out-lora/adapter_config.json ] && [ -f out-lora/adapter_model.safetensors ]'
refline() { grep -o "reference log-probs: [0-9]* cached, [0-9]* computed" "$1"; }
check "first run computed every reference log-prob ($(refline sigmoid.log))" \
  'refline sigmoid.log | grep -qx "reference log-probs: 0 cached, 320 computed"'
check "the IPO and LoRA runs reuse them: same reference, same rows ($(refline ipo.log); $(refline lora.log))" \
  'refline ipo.log | grep -qx "reference log-probs: 320 cached, 0 computed" && refline lora.log | grep -qx "reference log-probs: 320 cached, 0 computed"'
run sigmoid2 --loss-type sigmoid --beta 0.1
check "a second run on the same data computes none ($(refline sigmoid2.log))" \
  'refline sigmoid2.log | grep -qx "reference log-probs: 320 cached, 0 computed" && grep -q "(database runs.db)" sigmoid2.log'
check "... and trains the same: held-out accuracy >= 0.9" '[ "$(acc sigmoid2.log after | cut -d" " -f1)" = "$(acc sigmoid.log after | cut -d" " -f1)" ]'
head -40 pairs.jsonl > changed.jsonl
/usr/bin/python3 -c '
import json
with open("changed.jsonl", "a") as f:
    for i in range(5): f.write(json.dumps({"prompt": "Q: new %d\nA:" % i, "chosen": " good .", "rejected": " bad ."}) + "\n")'
"$rlhf" dpo --model llama --data changed.jsonl --out out-changed --steps 2 --lr 3e-3 --runs-db runs.db > changed.log 2>&1
check "changed data computes only the 5 new pairs ($(refline changed.log))" \
  'refline changed.log | grep -qx "reference log-probs: 80 cached, 10 computed"'
# --ref: another model (other weights, same tokenizer) is another fingerprint
"$rlhf" model new --family llama --layers 2 --dim 32 --heads 4 --kv-heads 2 --vocab 300 --context 64 --seed 2 \
  --out ref2 >/dev/null && cp tok.json ref2/tokenizer.json
"$rlhf" dpo --model llama --ref ref2 --data changed.jsonl --out out-ref --steps 2 --lr 3e-3 --runs-db runs.db > ref.log 2>&1; rc=$?
check "--ref DIR: another reference computes its own log-probs ($(refline ref.log))" \
  '[ $rc -eq 0 ] && refline ref.log | grep -qx "reference log-probs: 0 cached, 90 computed"'
"$rlhf" model new --family llama --layers 2 --dim 32 --heads 4 --kv-heads 2 --vocab 256 --context 64 --seed 2 \
  --out ref-v256 >/dev/null
"$rlhf" dpo --model llama --ref ref-v256 --data changed.jsonl --out out-refbad --steps 2 > refbad.log 2>&1; rc=$?
check "--ref with another vocabulary: exit 1 saying so ($(head -c 150 refbad.log))" \
  '[ $rc -eq 1 ] && grep -q "vocabulary" refbad.log && [ ! -e out-refbad ]'
"$rlhf" tokenizer train --vocab-size 300 --special "<|endoftext|>" changed.jsonl --out tok2.json >/dev/null 2>&1
cp -r ref2 ref-tok && cp tok2.json ref-tok/tokenizer.json
"$rlhf" dpo --model llama --ref ref-tok --data changed.jsonl --out out-reftok --steps 2 > reftok.log 2>&1; rc=$?
check "--ref with another tokenizer of the same size: exit 1 naming the first differing id ($(head -c 150 reftok.log))" \
  '[ $rc -eq 1 ] && grep -q "differs from the policy.s at id" reftok.log'
# without a database: OUT/ref_logps.bin
"$rlhf" dpo --model llama --data changed.jsonl --out out-file --steps 2 --lr 3e-3 > file.log 2>&1
check "--data alone caches in OUT/ref_logps.bin ($(refline file.log))" \
  '[ -f out-file/ref_logps.bin ] && refline file.log | grep -qx "reference log-probs: 0 cached, 90 computed" && grep -q "out-file/ref_logps.bin" file.log'
"$rlhf" dpo --model llama --data changed.jsonl --out out-file --steps 2 > again.log 2>&1; rc=$?
check "a fresh run into a directory holding a run: exit 1 suggesting --resume" '[ $rc -eq 1 ] && grep -q -- "--resume" again.log'
# health: the data's shortcut separates the pairs at once, which the run says and records
check "the accuracies-pinned warning is printed" 'grep -q "warning at step [0-9]* (dpo/accuracies_pinned)" sigmoid.log'
"$rlhf" runs show 1 --db runs.db > show.txt 2>&1
check "rlhf runs show lists the run's warning" 'grep -q "^warning at step [0-9]* (dpo/accuracies_pinned): rewards/accuracies has been 1.0" show.txt'
check "runs recorded with TRL's metric names and the warning" \
  '[ "$(/usr/bin/python3 -c "import sqlite3; c = sqlite3.connect(\"runs.db\"); print(c.execute(\"select count(*) from runs where kind = '"'"'dpo'"'"'\").fetchone()[0], c.execute(\"select count(distinct name) from metrics where name in ('"'"'rewards/accuracies'"'"', '"'"'eval_rewards/margins'"'"')\").fetchone()[0], c.execute(\"select count(*) from run_warnings where code = '"'"'dpo/accuracies_pinned'"'"'\").fetchone()[0] >= 1)")" = "8 2 True" ]'

# --resume after kill -9 reproduces an uninterrupted run (one thread)
for kind in full lora; do
  resume_matches dpo $kind 80 35 "reference log-probs: 320 cached, 0 computed" \
    --model llama --data pairs.jsonl --lr 1e-3 --batch 4 --save-every 10 --eval-every 20 --seed 5
done
# pairs from the database: the cache is that database; a finished run continues to more steps
"$rlhf" db import --db fb.db --format trl changed.jsonl > /dev/null 2>&1
"$rlhf" dpo --model llama --db fb.db --out D --steps 4 --lr 1e-3 > D.log 2>&1; rc=$?
check "--db: trains on the database's pairs, cache in it ($(refline D.log))" \
  '[ $rc -eq 0 ] && refline D.log | grep -qx "reference log-probs: 0 cached, 90 computed" && grep -q "(database fb.db)" D.log'
"$rlhf" dpo --out D --resume --steps 6 > D2.log 2>&1; rc=$?
check "--resume of a --db run reads the same database ($(refline D2.log))" \
  '[ $rc -eq 0 ] && refline D2.log | grep -qx "reference log-probs: 90 cached, 0 computed" && grep -q "steps 4-6 of 6" D2.log'
check "both --db runs recorded in it" \
  '[ "$(/usr/bin/python3 -c "import sqlite3; print(sqlite3.connect(\"fb.db\").execute(\"select count(*) from runs where kind = '"'"'dpo'"'"' and status = '"'"'done'"'"'\").fetchone()[0])")" = 2 ]'
"$rlhf" dpo --out A-full --resume --beta 0.5 > rb.log 2>&1; rc=$?
check "--resume with a DPO setting: exit 2 naming it" '[ $rc -eq 2 ] && grep -q -- "--beta" rb.log'
"$rlhf" dpo --out A-full --resume --data changed.jsonl > rd.log 2>&1; rc=$?
check "--resume on other data: exit 1 saying so" '[ $rc -eq 1 ] && grep -q "not what the run" rd.log'
"$rlhf" dpo --out llama --resume > rn.log 2>&1; rc=$?
check "--resume without a training state: exit 1 naming the file" '[ $rc -eq 1 ] && grep -q "training_state.bin" rn.log'
# chat prompts with an earlier assistant turn: only the reply is scored, not the earlier turn
# (its tokens would add ~5 nats each to logps/chosen of this random model)
/usr/bin/python3 - <<'PY'
import json
for name, earlier in (("ctx-short", "abc"), ("ctx-long", "abc abc abc")):
    with open(name + ".jsonl", "w") as f:
        for i in range(8):
            p = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": earlier}, {"role": "user", "content": "q?"}]
            f.write(json.dumps({"prompt": p, "chosen": [{"role": "assistant", "content": "good ."}],
                                "rejected": [{"role": "assistant", "content": "bad ."}]}) + "\n")
PY
for n in ctx-short ctx-long; do
  "$rlhf" dpo --model llama --data $n.jsonl --out $n --steps 1 --json-log $n.jsonl.log > /dev/null 2>&1
done
lc_s=$(grep '"step":1,' ctx-short.jsonl.log | sed -n 's|.*"logps/chosen":\([^,}]*\).*|\1|p')
lc_l=$(grep '"step":1,' ctx-long.jsonl.log | sed -n 's|.*"logps/chosen":\([^,}]*\).*|\1|p')
check "an earlier assistant turn of a chat prompt is not scored (logps/chosen $lc_s vs $lc_l with a longer one; within 2 nats)" \
  "awk -v a='${lc_s:-0}' -v b='${lc_l:-99}' 'BEGIN { d = a - b; exit !(a < 0 && (d < 0 ? -d : d) < 2) }'"
# bad input
printf '{"prompt": "x", "chosen": "a"}\n' > bad.jsonl
"$rlhf" dpo --model llama --data bad.jsonl --out out-bad > bad.log 2>&1; rc=$?
check "a line without rejected: exit 1 naming the line ($(head -c 120 bad.log))" '[ $rc -eq 1 ] && grep -q "bad.jsonl:1" bad.log && [ ! -e out-bad ]'
"$rlhf" dpo --model llama --data pairs.jsonl --out out-x --loss-type kto > lt.log 2>&1; rc=$?
check "an unknown loss type: exit 2" '[ $rc -eq 2 ] && grep -q "sigmoid, ipo, hinge or robust" lt.log'
exit $fail
