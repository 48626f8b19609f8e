#!/usr/bin/env bash
# `rlhf reward train|eval`, `rlhf score` and `rlhf classify train|eval` end to end on data made
# here, where the answer is learnable: every chosen reply has a property the rejected one lacks
# (it thanks the user), and spam texts share words ham texts never use. Checks: the reward model
# reaches >= 95% held-out accuracy and scores a thanking reply above a plain one; the classifier
# reaches >= 95% held-out accuracy with a report and --json; bad input (a bad JSONL line, an empty
# file, an unseen label, a text too long, a tokenizer that does not fit the model) gives one
# message naming the line or record, exit 1, and nothing written; a run killed with SIGKILL and
# resumed ends bit-identical to an uninterrupted one (one thread); --db records the run. LoRA
# (--lora-rank, the score head trained fully): the reward model and a GPT-2 classifier reach
# >= 95% held-out accuracy, the adapter directory holds only PEFT-named tensors with trained
# lora_B (zero at the start), reward eval / score / classify eval load it with its base, and a
# killed LoRA run with dropout resumes bit-identical.
# Usage: reward_cli.sh RLHF
set -u
rlhf=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
py=/usr/bin/python3
[ -x "$py" ] || py=python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; else echo "ok: $1"; fi; }

"$py" - <<'EOF'
import json, random
r = random.Random(7)
words = "apple river stone cloud green blue quick slow happy tired music paper light dark ocean field".split()
with open("pairs.jsonl", "w") as f:
    for i in range(240):
        prompt = "Q: " + " ".join(r.choice(words) for _ in range(r.randint(2, 5))) + "?\nA:"
        a = " " + " ".join(r.choice(words) for _ in range(r.randint(3, 8)))
        b = " " + " ".join(r.choice(words) for _ in range(r.randint(3, 8)))
        if r.random() < 0.5:  # the property, not the length, decides: rejected replies get padding words
            b += " " + " ".join(r.choice(words) for _ in range(2))
        f.write(json.dumps({"prompt": prompt, "chosen": a + " thank you", "rejected": b}) + "\n")
ham = "meeting lunch report friday project team schedule notes call review".split()
spam = "free winner prize cash click offer urgent claim money now".split()
with open("spam.jsonl", "w") as f:
    for i in range(200):
        if r.random() < 0.5:
            f.write(json.dumps({"text": "hi, " + " ".join(r.choice(ham) for _ in range(r.randint(4, 8))), "label": "ham"}) + "\n")
        else:
            t = " ".join(r.choice(spam + ham) for _ in range(r.randint(3, 7))) + " " + r.choice(spam) + "!"
            f.write(json.dumps({"text": t, "label": "spam"}) + "\n")
with open("corpus.txt", "w") as f:
    for i in range(300):
        f.write(" ".join(r.choice(words + ham + spam) for _ in range(10)) + " thank you Q: A: hi,\n")
EOF
"$rlhf" tokenizer train --vocab-size 300 corpus.txt --out tok.json >/dev/null 2>&1
"$rlhf" model new --family llama --layers 2 --dim 64 --heads 4 --kv-heads 2 --vocab 300 --context 128 --seed 3 --out lm >/dev/null
cp tok.json lm/tokenizer.json
"$rlhf" model new --family gpt2 --layers 2 --dim 64 --heads 4 --vocab 300 --context 128 --seed 4 --out gpt >/dev/null
cp tok.json gpt/tokenizer.json

# --- reward model ---
"$rlhf" reward train --model lm --data pairs.jsonl --out rm --lr 1e-3 --epochs 3 --batch 8 --eval-every 20 \
  --json-log rm.jsonl >out.txt 2>err.txt; rc=$?
check "reward train exits 0 (rc $rc: $(tail -1 err.txt))" '[ $rc -eq 0 ]'
acc=$(sed -n 's/^held-out accuracy \([0-9.]*\) on \([0-9]*\) pairs.*/\1/p' out.txt)
check "reward model: held-out accuracy ${acc:-none} >= 0.95" '[ -n "$acc" ] && awk -v a="$acc" "BEGIN{exit !(a >= 0.95)}"'
check "json log has eval rewards/accuracies" 'grep -q "\"eval_rewards/accuracies\"" rm.jsonl'
check "the directory is a reward model" 'grep -q LlamaForSequenceClassification rm/config.json && grep -q "\"num_labels\": 1" rm/config.json'
hi=$("$rlhf" score --model rm --prompt $'Q: apple river?\nA:' --response " stone cloud thank you")
lo=$("$rlhf" score --model rm --prompt $'Q: apple river?\nA:' --response " stone cloud green blue")
check "score: thanking reply $hi above plain reply $lo" 'awk -v a="$hi" -v b="$lo" "BEGIN{exit !(a > b)}"'
printf '{"prompt":"Q: x?\\nA:","response":" y thank you"}\n\n{"text":"Q: x?\\nA: y"}\n' >s.jsonl
"$rlhf" score --model rm --data s.jsonl --json >s.out; rc=$?
check "score --data: one JSON object per record with its line" '[ $rc -eq 0 ] && [ $(grep -c "\"reward\"" s.out) -eq 2 ] && grep -q "\"line\": 3" s.out'
"$rlhf" reward eval --model rm --data pairs.jsonl --json >e.out; rc=$?
check "reward eval --json" '[ $rc -eq 0 ] && grep -q "\"pairs\": 240" e.out'

# --- GPT-2 body with centring and margins runs too ---
"$rlhf" reward train --model gpt --data pairs.jsonl --out rm2 --lr 1e-3 --steps 10 --batch 4 --center 0.01 --use-margins >/dev/null 2>err.txt
check "gpt2 reward model with --center --use-margins ($(tail -1 err.txt))" 'grep -q GPT2ForSequenceClassification rm2/config.json'

"$rlhf" reward train --model lm --data pairs.jsonl --out probe --lr 1e-2 --steps 10 --batch 8 --freeze-body >out.txt 2>err.txt; rc=$?
check "reward train --freeze-body (a linear probe) runs ($(tail -1 err.txt))" '[ $rc -eq 0 ] && grep -q "held-out accuracy" out.txt'

# --- LoRA on the body, the score head trained fully (PEFT modules_to_save), saved unmerged ---
"$rlhf" reward train --model lm --data pairs.jsonl --out rml --lr 2e-3 --epochs 3 --batch 8 --lora-rank 8 \
  --lora-targets all-linear >out.txt 2>err.txt; rc=$?
check "LoRA reward train exits 0 (rc $rc: $(tail -1 err.txt))" '[ $rc -eq 0 ]'
acc=$(sed -n 's/^held-out accuracy \([0-9.]*\) on \([0-9]*\) pairs.*/\1/p' out.txt)
check "LoRA reward model: held-out accuracy ${acc:-none} >= 0.95" '[ -n "$acc" ] && awk -v a="$acc" "BEGIN{exit !(a >= 0.95)}"'
check "LoRA output is a PEFT SEQ_CLS adapter with the score, no full model" '[ -f rml/adapter_model.safetensors ] && [ ! -e rml/model.safetensors ] && grep -q "\"SEQ_CLS\"" rml/adapter_config.json && grep -q "\"score\"" rml/adapter_config.json'
"$py" - rml/adapter_model.safetensors lm <<'EOF2' >st.txt
import json, struct, sys
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); body = f.read()
def t(k):
    a, b = h[k]["data_offsets"]; return struct.unpack(f"<{(b - a) // 4}f", body[a:b])
names = [k for k in h if k != "__metadata__"]
bmax = max(max(abs(x) for x in t(k)) for k in names if k.endswith("lora_B.weight"))
print(len(names), "score" if "base_model.model.score.weight" in names else "noscore", "%.3g" % bmax,
      "all" if all(k.endswith(("lora_A.weight", "lora_B.weight")) or k == "base_model.model.score.weight" for k in names) else "extra")
EOF2
read nt sc bmax kind <st.txt
check "adapter: $nt tensors, PEFT names only ($kind), score.weight ($sc), trained lora_B (max |B| ${bmax:-?} > 0: the body learned too)" '[ "$sc" = score ] && [ "$kind" = all ] && awk -v b="$bmax" "BEGIN{exit !(b > 0)}"'
"$rlhf" reward eval --model rml --data pairs.jsonl --json >e.out; rc=$?
eacc=$(sed -n 's/.*"accuracy": \([0-9.e-]*\),.*/\1/p' e.out)
check "reward eval loads the adapter with its base: accuracy ${eacc:-none} on all pairs >= 0.95" '[ $rc -eq 0 ] && awk -v a="$eacc" "BEGIN{exit !(a >= 0.95)}"'
hi=$("$rlhf" score --model rml --prompt $'Q: apple river?\nA:' --response " stone cloud thank you")
lo=$("$rlhf" score --model rml --prompt $'Q: apple river?\nA:' --response " stone cloud green blue")
check "score with the adapter: thanking reply $hi above plain reply $lo" 'awk -v a="$hi" -v b="$lo" "BEGIN{exit !(a > b)}"'
"$rlhf" model merge --model lm --adapter rml --out rml_merged >/dev/null 2>err.txt; rc=$?
mhi=$("$rlhf" score --model rml_merged --prompt $'Q: apple river?\nA:' --response " stone cloud thank you")
check "model merge makes the adapter a full reward model: score $mhi == adapter's $hi (1e-5; rc $rc $(head -1 err.txt))" '[ $rc -eq 0 ] && grep -q "\"num_labels\": 1" rml_merged/config.json && awk -v a="$mhi" -v b="$hi" "BEGIN{d = a - b; exit !(d < 1e-5 && d > -1e-5)}"'
"$rlhf" reward train --model lm --data pairs.jsonl --out bad7 --lora-rank 4 --freeze-body >/dev/null 2>err.txt; rc=$?
check "--lora-rank with --freeze-body is refused, nothing written" '[ $rc -eq 2 ] && [ ! -e bad7 ]'
"$rlhf" classify train --model gpt --data spam.jsonl --out clsl --lr 2e-3 --epochs 3 --batch 8 --lora-rank 4 >out.txt 2>err.txt; rc=$?
acc=$(sed -n 's/^held out: [0-9]* examples, accuracy \([0-9.]*\).*/\1/p' out.txt)
check "LoRA classifier (gpt2, c_attn): held-out accuracy ${acc:-none} >= 0.95 (rc $rc $(tail -1 err.txt))" '[ -n "$acc" ] && awk -v a="$acc" "BEGIN{exit !(a >= 0.95)}"'
"$rlhf" classify eval --model clsl --data spam.jsonl --json >c.json; rc=$?
check "classify eval reads the adapter's labels" '[ $rc -eq 0 ] && grep -q "\"spam\"" c.json'

# --- bad input: one message, exit 1, nothing written ---
{ echo '{"prompt":"x","chosen":"a"}'; head -3 pairs.jsonl; } >bad.jsonl
"$rlhf" reward train --model lm --data bad.jsonl --out bad1 >/dev/null 2>err.txt; rc=$?
check "bad JSONL line: exit 1, names line 1, nothing written" '[ $rc -eq 1 ] && grep -q "bad.jsonl:1:" err.txt && [ ! -e bad1 ]'
: >empty.jsonl
"$rlhf" reward train --model lm --data empty.jsonl --out bad2 >/dev/null 2>err.txt; rc=$?
check "empty dataset: exit 1, nothing written ($(head -1 err.txt))" '[ $rc -eq 1 ] && [ ! -e bad2 ]'
"$py" -c 'import json; print(json.dumps({"prompt": "Q:" + " apple" * 150, "chosen": " a thank you", "rejected": " b"}))' >long.jsonl
head -5 pairs.jsonl >>long.jsonl
"$rlhf" reward train --model lm --data long.jsonl --out bad3 >/dev/null 2>err.txt; rc=$?
check "too long: exit 1 names record 1 ($(head -1 err.txt))" '[ $rc -eq 1 ] && grep -q "record 1:" err.txt && [ ! -e bad3 ]'
"$rlhf" reward train --model lm --data long.jsonl --out drop --truncate drop --steps 1 --val-fraction 0 >out.txt 2>&1
check "--truncate drop leaves the long pair out" 'grep -q "1 of 6 pairs dropped" out.txt'
"$rlhf" model new --family llama --layers 1 --dim 32 --heads 2 --vocab 200 --context 64 --out small >/dev/null
cp tok.json small/tokenizer.json
"$rlhf" reward train --model small --data pairs.jsonl --out bad4 >/dev/null 2>err.txt; rc=$?
check "tokenizer/model mismatch: exit 1 ($(head -1 err.txt))" '[ $rc -eq 1 ] && grep -q "do not belong together" err.txt && [ ! -e bad4 ]'
"$rlhf" reward train --model lm --data pairs.jsonl --out rm --steps 1 >/dev/null 2>err.txt; rc=$?
check "an existing run is not overwritten without --resume" '[ $rc -eq 1 ] && grep -q -- "--resume" err.txt'
"$rlhf" score --model lm --text hi >/dev/null 2>err.txt; rc=$?
check "score refuses a language model" '[ $rc -eq 1 ] && grep -q "not a reward model" err.txt'

# --- resume after kill -9 reproduces the uninterrupted run (one thread) ---
export OMP_NUM_THREADS=1
# kill_resume FULL CUT ARGS...: an uninterrupted run into FULL, the same run into CUT killed after
# its first checkpoint and resumed
kill_resume() {
  local full=$1 cut=$2 pid i
  shift 2
  "$rlhf" reward train --model lm "$@" --out "$full" >/dev/null 2>&1
  "$rlhf" reward train --model lm "$@" --out "$cut" >/dev/null 2>&1 &
  pid=$!
  for i in $(seq 1 500); do [ -f "$cut/training_state.bin" ] && break; sleep 0.01; done
  kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  "$rlhf" reward train --out "$cut" --resume >/dev/null 2>err.txt
}
args=(--data pairs.jsonl --lr 1e-3 --steps 30 --batch 8 --save-every 10 --eval-every 10)
kill_resume full cut "${args[@]}"; rc=$?
check "resumed run exits 0 ($(tail -1 err.txt))" '[ $rc -eq 0 ]'
check "resumed after kill -9 == uninterrupted (model.safetensors bit-identical)" 'cmp -s full/model.safetensors cut/model.safetensors'
kill_resume lfull lcut "${args[@]}" --lr 2e-3 --lora-rank 4 --lora-dropout 0.1; rc=$?
check "LoRA (dropout 0.1) resumed after kill -9 == uninterrupted (adapter bit-identical; rc $rc $(tail -1 err.txt))" '[ $rc -eq 0 ] && cmp -s lfull/adapter_model.safetensors lcut/adapter_model.safetensors'
unset OMP_NUM_THREADS

# --- the database: pairs from it, run and metrics recorded ---
"$rlhf" db import --db fb.db --format trl pairs.jsonl >/dev/null 2>&1
"$rlhf" reward train --model lm --db fb.db --out rmdb --lr 1e-3 --steps 5 --batch 8 >out.txt 2>err.txt; rc=$?
check "reward train --db records its run ($(tail -1 err.txt))" '[ $rc -eq 0 ] && grep -q "recorded the run in fb.db" out.txt'

# --- classifier ---
"$rlhf" classify train --model lm --data spam.jsonl --out cls --lr 1e-3 --epochs 3 --batch 8 >out.txt 2>err.txt; rc=$?
check "classify train exits 0 ($(tail -1 err.txt))" '[ $rc -eq 0 ]'
acc=$(sed -n 's/^held out: [0-9]* examples, accuracy \([0-9.]*\).*/\1/p' out.txt)
check "classifier: held-out accuracy ${acc:-none} >= 0.95" '[ -n "$acc" ] && awk -v a="$acc" "BEGIN{exit !(a >= 0.95)}"'
check "report has per-class rows and the confusion matrix" 'grep -q "^  spam " out.txt && grep -q "confusion" out.txt'
check "id2label saved" 'grep -q "\"id2label\": {\"0\": \"ham\", \"1\": \"spam\"}" cls/config.json || grep -q "\"id2label\": {\"0\": \"spam\", \"1\": \"ham\"}" cls/config.json'
"$rlhf" classify eval --model cls --data spam.jsonl --json >c.json; rc=$?
check "classify eval --json" '[ $rc -eq 0 ] && grep -q "\"confusion\": \[\[" c.json && grep -q "\"per_class\"" c.json'
echo '{"text":"hello there","label":"other"}' >unseen.jsonl
"$rlhf" classify eval --model cls --data unseen.jsonl >/dev/null 2>err.txt; rc=$?
check "unseen label: exit 1 naming line and label" '[ $rc -eq 1 ] && grep -q "unseen.jsonl:1: label \"other\"" err.txt'
{ head -3 spam.jsonl; echo '{"text": 5, "label": "ham"}'; echo 'nope'; } >badc.jsonl
"$rlhf" classify train --model lm --data badc.jsonl --out bad5 >/dev/null 2>err.txt; rc=$?
check "classify bad lines: exit 1 naming lines 4 and 5, nothing written" '[ $rc -eq 1 ] && grep -q "badc.jsonl:4:" err.txt && grep -q "badc.jsonl:5:" err.txt && [ ! -e bad5 ]'
printf '{"text":"a b","label":"x"}\n{"text":"c d","label":"x"}\n{"text":"e f","label":"y"}\n' >onlyval.jsonl
# one of the three examples is held out; some seed holds out the only "y"
refused=0
for seed in $(seq 1 20); do
  "$rlhf" classify train --model lm --data onlyval.jsonl --out bad6 --val-fraction 0.34 --seed $seed --steps 1 >/dev/null 2>err.txt
  if grep -q 'label "y" has no example in the training split' err.txt; then refused=1; break; fi
  rm -rf bad6
done
check "a label only in the held-out split is refused, nothing written" '[ $refused -eq 1 ] && [ ! -e bad6 ]'
"$rlhf" score --model cls --text "free cash now!" --json >sc.json
check "score with a classifier prints one score per label" 'grep -q "\"spam\"" sc.json'
exit $fail
