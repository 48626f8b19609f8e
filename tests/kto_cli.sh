#!/usr/bin/env bash
# `rlhf kto` end to end on data built so that it can learn: prompts of random letters, each
# seen once, with one reply and its thumbs-up/down: replies of "good ..." are desirable, replies
# of "bad ..." undesirable. Measured from the saved weights (rlhf logits on held-out prompts that
# never appear in the training data, the log-probability of each reply's tokens after its
# prompt): KTO must raise the mean log-probability of the desirable replies and lower that of the
# undesirable ones, for 3 seeds, apo_zero_unpaired and a LoRA adapter (merged with rlhf model
# merge). Also: the reference pass is cached (in the runs database: a second run computes none;
# without one in OUT), preference pairs train unpaired, the database's
# ratings become examples (4-5 desirable, 1-2 undesirable, 3 left out, a flag undesirable), the
# run is recorded with TRL's metric names, --resume after kill -9 ends bit-identical to an
# uninterrupted run (one thread; full and LoRA) and refuses other data or settings, bad input
# exits 1 naming the line and writes nothing.
# Usage: kto_cli.sh RLHF_EXE
set -u
signal_at_step=$(cd "$(dirname "$0")" && pwd)/signal_at_step.py  # kills a run the moment its log reaches a step
heldout_py=$(cd "$(dirname "$0")" && pwd)/pref_heldout.py  # held-out log-probabilities from saved weights
. "$(dirname "$0")/pref_resume.sh"  # resume_matches: kill -9, --resume, compare with an uninterrupted run
rlhf=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
export OMP_NUM_THREADS=2 RLHF_DEFAULT_MODEL=
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rlhf-kto-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
cd "$tmp" || exit 1
/usr/bin/python3 - <<'PY'
import json, random
r = random.Random(5)
L = "abcdefghij"
seen = set()
def fresh():
    while True:
        p = "Q: " + " ".join(r.choice(L) * r.randint(1, 3) for _ in range(r.randint(2, 4))) + "\nA:"
        if p not in seen:
            seen.add(p)
            return p
with open("train.jsonl", "w") as f, open("pairs.jsonl", "w") as g:
    for i in range(200):
        n, good = r.randint(1, 3), r.random() < 0.5
        p = fresh()
        f.write(json.dumps({"prompt": p, "completion": (" good" if good else " bad") * n + " .", "label": good}) + "\n")
        g.write(json.dumps({"prompt": p, "chosen": " good" * n + " .", "rejected": " bad" * n + " ."}) + "\n")
with open("heldout.jsonl", "w") as f:
    for i in range(16):
        n = r.randint(1, 3)
        f.write(json.dumps({"prompt": fresh(), "good": " good" * n + " .", "bad": " bad" * n + " ."}) + "\n")
open("corpus.txt", "w").write(open("train.jsonl").read() * 2)
PY
"$rlhf" tokenizer train --vocab-size 300 --special "<|endoftext|>" corpus.txt --out tok.json >/dev/null 2>&1
"$rlhf" model new --family llama --layers 2 --dim 32 --heads 4 --kv-heads 2 --vocab 300 --context 64 --seed 1 \
  --out llama >/dev/null && cp tok.json llama/tokenizer.json
check "a model with a tokenizer" '[ -f llama/tokenizer.json ]'

# mean log-probability of the good and the bad replies after the held-out prompts, from MODEL's saved weights
measure() { /usr/bin/python3 "$heldout_py" "$rlhf" tok.json heldout.jsonl "$1"; }
read -r g0 b0 < <(measure llama)
echo "  base model: held-out log p(desirable reply) $g0, log p(undesirable reply) $b0"
run() { # name, extra flags
  "$rlhf" kto --model llama --data train.jsonl --out "out-$1" --steps 40 --lr 3e-3 --batch 8 --eval-every 40 \
    --val-fraction 0.2 --runs-db runs.db "${@:2}" > "$1.log" 2>&1
}
learned() { # name, model dir
  read -r g1 b1 < <(measure "$2")
  echo "  $1: held-out log p(desirable) $g0 -> ${g1:-?}, log p(undesirable) $b0 -> ${b1:-?}"
  check "$1: the desirable replies' held-out log-probability rose by > 1 nat" "awk -v a=$g0 -v b='${g1:-0}' 'BEGIN { exit !(b > a + 1) }'"
  check "$1: the undesirable replies' held-out log-probability fell by > 1 nat" "awk -v a=$b0 -v b='${b1:-0}' 'BEGIN { exit !(b < a - 1) }'"
}
refline() { grep -o "reference log-probs: [0-9]* cached, [0-9]* computed ([^)]*)" "$1"; }
for seed in 1 2 3; do
  run "seed$seed" --seed "$seed"; rc=$?
  check "seed $seed: exit 0" "[ $rc -eq 0 ]" || cat "seed$seed.log"
  learned "seed $seed" "out-seed$seed"
done
check "the run printed held-out metrics before and after" \
  'grep -q "^held out before: logps/chosen" seed1.log && grep -q "^held out after : logps/chosen" seed1.log'
run apo --seed 1 --loss-type apo_zero_unpaired
check "apo_zero_unpaired: exit 0" "[ $? -eq 0 ]" || cat apo.log
learned "apo_zero_unpaired" out-apo
run lora --seed 1 --lora-rank 8 --lora-alpha 16 --lora-targets all-linear --lr 1e-2
check "LoRA: exit 0 and a PEFT adapter saved" '[ $? -eq 0 ] && [ -f out-lora/adapter_config.json ] && [ -f out-lora/adapter_model.safetensors ]' || cat lora.log
"$rlhf" model merge --model llama --adapter out-lora --out lora-merged >/dev/null
learned "LoRA (merged)" lora-merged
check "a full run saved a model directory" '[ -f out-seed1/model.safetensors ] && [ -f out-seed1/config.json ]'
# the reference cache in the runs database: 200 example rows and 200 KL rows
check "the first run computed every reference log-prob ($(refline seed1.log))" \
  'refline seed1.log | grep -qx "reference log-probs: 0 cached, 400 computed (database runs.db)"'
read -r c2 n2 < <(refline seed2.log | sed 's/reference log-probs: \([0-9]*\) cached, \([0-9]*\) computed.*/\1 \2/')
check "seed 2 reuses the examples' rows and computes its own KL rows (another split pairs them otherwise: $(refline seed2.log))" \
  '[ "${c2:-0}" -ge 200 ] && [ "${n2:-0}" -ge 1 ] && [ $((c2 + n2)) -eq 400 ]'
check "apo_zero_unpaired (no KL rows) and LoRA (the base is the reference) compute none ($(refline apo.log); $(refline lora.log))" \
  'refline apo.log | grep -qx "reference log-probs: 200 cached, 0 computed (database runs.db)" &&
   refline lora.log | grep -qx "reference log-probs: 400 cached, 0 computed (database runs.db)"'
run seed1b --seed 1 --json-log seed1.jsonl
check "a second run on the same data computes none ($(refline seed1b.log))" \
  'refline seed1b.log | grep -qx "reference log-probs: 400 cached, 0 computed (database runs.db)"'
check "... and trains the same (held-out metrics after, to 4 decimals)" \
  '[ -n "$(grep "^held out after" seed1.log)" ] && [ "$(grep "^held out after" seed1b.log)" = "$(grep "^held out after" seed1.log)" ]'
check "--json-log has the steps' metrics under TRL's names" 'grep -q "\"rewards/chosen\"" seed1.jsonl && grep -q "\"eval_kl\"" seed1.jsonl'
check "runs recorded with TRL's metric names" \
  '[ "$(/usr/bin/python3 -c "import sqlite3; c = sqlite3.connect(\"runs.db\"); print(c.execute(\"select count(*) from runs where kind = '"'"'kto'"'"' and status = '"'"'done'"'"'\").fetchone()[0], c.execute(\"select count(distinct name) from metrics where name in ('"'"'rewards/chosen'"'"', '"'"'eval_rewards/margins'"'"', '"'"'kl'"'"', '"'"'eval_logps/rejected'"'"')\").fetchone()[0])")" = "6 4" ]'

# preference pairs, unpaired as TRL does (chosen desirable, rejected undesirable)
run pairs --seed 1 --data pairs.jsonl
check "pairs JSONL: exit 0, 400 examples (200 desirable)" '[ $? -eq 0 ] && grep -q "on 400 examples (200 desirable, 200 undesirable" pairs.log' || cat pairs.log

# TRL's conversational form (message lists; here mixed with a plain line): the KL rows splice
# one example's prompt messages with another's reply
/usr/bin/python3 - <<'PY'
import json
with open("chat.jsonl", "w") as f:
    for i in range(20):
        good = i % 2 == 0
        f.write(json.dumps({"prompt": [{"role": "user", "content": "hi %d" % i}],
                            "completion": [{"role": "assistant", "content": "good ." if good else "bad ."}],
                            "label": good}) + "\n")
    f.write(json.dumps({"prompt": "plain q", "completion": " good .", "label": True}) + "\n")
PY
"$rlhf" kto --model llama --data chat.jsonl --out out-chat --steps 2 --batch 4 > chat.log 2>&1; rc=$?
check "conversational lines train (21 examples, 11 desirable)" '[ $rc -eq 0 ] && grep -q "on 21 examples (11 desirable, 10 undesirable" chat.log' || cat chat.log
check "without a database the cache is OUT/ref_logps.bin ($(refline chat.log))" \
  '[ -f out-chat/ref_logps.bin ] && refline chat.log | grep -qx "reference log-probs: 0 cached, 42 computed (out-chat/ref_logps.bin)"'
printf '{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}], "label": true}\n' > msgs.jsonl
"$rlhf" kto --model llama --data msgs.jsonl --out out-bad > msgs.log 2>&1; rc=$?
check "a messages line: exit 1, refused by line" '[ $rc -eq 1 ] && grep -q "msgs.jsonl:1: KTO lines need" msgs.log && [ ! -e out-bad ]'

# the database: pairs only with --with-pairs (the ratings rule is tested through the REPL in repl_train.sh)
"$rlhf" db import --format trl --db fb.db pairs.jsonl >/dev/null 2>&1
"$rlhf" kto --model llama --db fb.db --out out-db --steps 2 --batch 8 > db0.log 2>&1; rc=$?
check "a database without ratings: exit 1, says so, writes nothing" '[ $rc -eq 1 ] && grep -q "holds no KTO examples" db0.log && [ ! -e out-db ]' || cat db0.log
"$rlhf" kto --model llama --db fb.db --with-pairs --out out-db --steps 2 --batch 8 > db1.log 2>&1; rc=$?
check "--db --with-pairs: the pairs' sides, 400 examples, reference cached in the database ($(refline db1.log))" \
  '[ $rc -eq 0 ] && grep -q "on 400 examples (200 desirable, 200 undesirable" db1.log &&
   refline db1.log | grep -qx "reference log-probs: 0 cached, 800 computed (database fb.db)"' || cat db1.log
"$rlhf" kto --model llama --db fb.db --with-pairs --out out-db2 --steps 2 --batch 8 > db2.log 2>&1; rc=$?
check "a second --db run computes none ($(refline db2.log))" \
  '[ $rc -eq 0 ] && refline db2.log | grep -qx "reference log-probs: 800 cached, 0 computed (database fb.db)"'

"$rlhf" kto --out out-db2 --resume --steps 4 > db3.log 2>&1; rc=$?
check "--resume of a --db --with-pairs run reads the same database's examples ($(refline db3.log))" \
  '[ $rc -eq 0 ] && grep -q "on 400 examples (200 desirable, 200 undesirable.*steps 2-4 of 4" db3.log &&
   refline db3.log | grep -qx "reference log-probs: 800 cached, 0 computed (database fb.db)"' || cat db3.log

# --resume after kill -9 reproduces an uninterrupted run (one thread), full and LoRA; without a
# database the reference comes back from OUT/ref_logps.bin
for kind in full lora; do
  resume_matches kto $kind 40 17 "reference log-probs: 400 cached, 0 computed (B-$kind/ref_logps.bin)" \
    --model llama --data train.jsonl --lr 3e-3 --batch 4 --save-every 5 --eval-every 20 --seed 5
done
"$rlhf" kto --model llama --data train.jsonl --out A-full --steps 2 > again.log 2>&1; rc=$?
check "a fresh run into a directory holding a run: exit 1 suggesting --resume" '[ $rc -eq 1 ] && grep -q -- "--resume" again.log'
"$rlhf" kto --out A-full --resume --beta 0.5 > rb.log 2>&1; rc=$?
check "--resume with a KTO setting: exit 2 naming it" '[ $rc -eq 2 ] && grep -q -- "--beta cannot be given" rb.log'
"$rlhf" kto --out A-full --resume --lr 1e-2 > rl.log 2>&1; rc=$?
check "--resume with a training setting: exit 2" '[ $rc -eq 2 ] && grep -q -- "--resume continues the saved run" rl.log'
head -100 train.jsonl > half.jsonl
"$rlhf" kto --out A-full --resume --data half.jsonl > rd.log 2>&1; rc=$?
check "--resume on other data: exit 1 saying so" '[ $rc -eq 1 ] && grep -q "not what the run in A-full was trained on" rd.log'
sed '1s/"label": true/"label": XX/; 1s/"label": false/"label": true/; 1s/"label": XX/"label": false/' train.jsonl > flipped.jsonl
"$rlhf" kto --out A-full --resume --data flipped.jsonl > rf.log 2>&1; rc=$?
check "--resume with one label flipped: exit 1 saying so" '[ $rc -eq 1 ] && grep -q "not what the run in A-full was trained on" rf.log'
"$rlhf" kto --out llama --resume > rn.log 2>&1; rc=$?
check "--resume without a training state: exit 1 naming the file" '[ $rc -eq 1 ] && grep -q "training_state.bin" rn.log'

# bad input: named by line, exit 1, nothing written
printf '{"prompt": "x", "completion": "a", "label": true}\n\n{"prompt": "y", "completion": "b", "label": "yes"}\n' > bad.jsonl
"$rlhf" kto --model llama --data bad.jsonl --out out-bad > bad.log 2>&1; rc=$?
check "a non-boolean label: exit 1 naming line 3 ($(head -c 100 bad.log))" '[ $rc -eq 1 ] && grep -q "bad.jsonl:3: \"label\" must be true" bad.log && [ ! -e out-bad ]'
printf '{"prompt": "x", "completion": "a"}\n' > nolabel.jsonl
"$rlhf" kto --model llama --data nolabel.jsonl --out out-bad > nolabel.log 2>&1; rc=$?
check "a missing label: exit 1 naming the line" '[ $rc -eq 1 ] && grep -q "nolabel.jsonl:1: \"label\" is missing" nolabel.log && [ ! -e out-bad ]'
printf '{"prompt": "x", "completion": 3, "label": false}\n' > badc.jsonl
"$rlhf" kto --model llama --data badc.jsonl --out out-bad > badc.log 2>&1; rc=$?
check "a non-string completion: exit 1 naming the line" '[ $rc -eq 1 ] && grep -q "badc.jsonl:1:" badc.log && [ ! -e out-bad ]'
: > empty.jsonl
"$rlhf" kto --model llama --data empty.jsonl --out out-bad > empty.log 2>&1; rc=$?
check "an empty file: exit 1, nothing written" '[ $rc -eq 1 ] && grep -q "no KTO examples" empty.log && [ ! -e out-bad ]'
head -20 train.jsonl | grep '"label": true' > good-only.jsonl
"$rlhf" kto --model llama --data good-only.jsonl --out out-good --steps 2 --batch 4 > good.log 2>&1; rc=$?
check "only desirable examples: trains with a warning" '[ $rc -eq 0 ] && grep -q "warning: all .* examples are desirable" good.log'
"$rlhf" kto --model llama --data train.jsonl --out out-bad --batch 1 > b1.log 2>&1; rc=$?
check "--batch 1 with the KL term: refused" '[ $rc -eq 1 ] && grep -q "the KL estimate needs another example" b1.log'
"$rlhf" kto --model llama --data train.jsonl --out out-x --loss-type sigmoid > lt.log 2>&1; rc=$?
check "an unknown loss type: exit 2" '[ $rc -eq 2 ] && grep -q "kto or apo_zero_unpaired" lt.log'
exit $fail
