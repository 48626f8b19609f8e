#!/usr/bin/env bash
# `rlhf pretrain --resume` continues exactly: for a GPT-2 and a Llama (GQA) model, a run stopped
# with Ctrl-C (SIGINT) and a run killed with SIGKILL after a checkpoint, each resumed, reach
# the same loss and validation loss at the last step as an uninterrupted run — compared as
# printed numbers (%.17g), and the final model.safetensors and training_state.bin byte for byte
# (one thread: OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1). Also: the flag and file errors of the
# command (exit 2 for bad usage, 1 for bad files), each naming the flag or file.
# Usage: pretrain_resume.sh RLHF_EXE TRAIN_STEPS_EXE   (RLHF_SHARED_DATA: the shared data dir)
set -u
signal_at_step=$(cd "$(dirname "$0")" && pwd)/signal_at_step.py  # kills a run the moment its log reaches a step
rlhf=$1
mk=$2
data=${RLHF_SHARED_DATA:-../shared/data}/tinyshakespeare/input.txt
[ -f "$data" ] || { echo "missing fixture $data"; exit 1; }
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rlhf-resume-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }

N=120
common=(--data "$data" --steps $N --batch 8 --context 64 --save-every 20 --eval-every 40 --lr 3e-3 --warmup 10)

# The value of field $3 on the last log line of step $2.
field() { grep "\"event\":\"step\",\"step\":$2," "$1" | tail -1 | sed -n "s/.*\"$3\":\([^,}]*\).*/\1/p"; }

for fam in gpt2 llama; do
  kv=4; [ $fam = llama ] && kv=2
  "$mk" --init-only --family $fam --layers 2 --dim 64 --heads 4 --kv-heads $kv --ffn 128 --vocab 256 \
    --context 64 --seed 7 --out "$tmp/$fam-init" >/dev/null || { echo "FAIL: cannot make the $fam model"; exit 1; }

  # A: uninterrupted.
  "$rlhf" pretrain --model "$tmp/$fam-init" "${common[@]}" --out "$tmp/$fam-A" --json-log "$tmp/$fam-A.log" \
    >/dev/null 2>&1
  check "$fam: uninterrupted run succeeds" '[ $? -eq 0 ]'

  # B: Ctrl-C after step 30, then --resume.
  /usr/bin/python3 "$signal_at_step" --run "$tmp/$fam-B.log" 30 INT "$tmp/$fam-B.out" -- \
    "$rlhf" pretrain --model "$tmp/$fam-init" "${common[@]}" --out "$tmp/$fam-B" --json-log "$tmp/$fam-B.log"
  rc=$?
  check "$fam: SIGINT stops the run with exit 130 (got $rc)" '[ $rc -eq 130 ]'
  check "$fam: SIGINT says what was saved" 'grep -q "saved the model and training state" "$tmp/$fam-B.out"'
  stopped=$(tail -1 "$tmp/$fam-B.log" | sed -n 's/.*"step":\([0-9]*\).*/\1/p')
  check "$fam: SIGINT stopped before the end (step $stopped)" '[ "${stopped:-$N}" -lt $N ]'
  "$rlhf" pretrain --out "$tmp/$fam-B" --resume --json-log "$tmp/$fam-B.log" >/dev/null 2>&1
  check "$fam: resume after SIGINT succeeds" '[ $? -eq 0 ]'

  # C: SIGKILL after the step-40 checkpoint is on disk, then --resume (redoes the lost steps).
  /usr/bin/python3 "$signal_at_step" --run "$tmp/$fam-C.log" 45 KILL /dev/null -- \
    "$rlhf" pretrain --model "$tmp/$fam-init" "${common[@]}" --out "$tmp/$fam-C" --json-log "$tmp/$fam-C.log"
  rc=$?
  check "$fam: SIGKILL killed the run mid-way (exit $rc)" '[ $rc -eq 137 ]'
  "$rlhf" pretrain --out "$tmp/$fam-C" --resume --json-log "$tmp/$fam-C.log" >/dev/null 2>&1
  check "$fam: resume after SIGKILL succeeds" '[ $? -eq 0 ]'

  a=$(field "$tmp/$fam-A.log" $N loss); b=$(field "$tmp/$fam-B.log" $N loss); c=$(field "$tmp/$fam-C.log" $N loss)
  check "$fam: loss at step $N identical: uninterrupted $a, SIGINT+resume $b, SIGKILL+resume $c" \
    '[ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" = "$c" ]'
  a=$(field "$tmp/$fam-A.log" $N val_loss); b=$(field "$tmp/$fam-B.log" $N val_loss); c=$(field "$tmp/$fam-C.log" $N val_loss)
  check "$fam: validation loss at step $N identical ($a, $b, $c)" '[ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" = "$c" ]'
  check "$fam: final model.safetensors identical byte for byte" \
    'cmp -s "$tmp/$fam-A/model.safetensors" "$tmp/$fam-B/model.safetensors" && cmp -s "$tmp/$fam-A/model.safetensors" "$tmp/$fam-C/model.safetensors"'
  check "$fam: final training_state.bin identical byte for byte" \
    'cmp -s "$tmp/$fam-A/training_state.bin" "$tmp/$fam-B/training_state.bin" && cmp -s "$tmp/$fam-A/training_state.bin" "$tmp/$fam-C/training_state.bin"'
  check "$fam: the output directory is a model directory with a tokenizer" \
    '[ -f "$tmp/$fam-A/config.json" ] && [ -f "$tmp/$fam-A/tokenizer.json" ]'
done

# Errors: bad usage exits 2 naming the flag, bad files exit 1 naming the file.
err() { "$rlhf" pretrain "$@" >/dev/null 2>"$tmp/err"; echo $?; }
rc=$(err --model "$tmp/gpt2-init" --data "$data" --out "$tmp/x" --steps zero)
check "bad --steps: exit 2 naming the flag" '[ $rc -eq 2 ] && grep -q -- "--steps" "$tmp/err"'
rc=$(err --model "$tmp/gpt2-init" --data "$data" --out "$tmp/x" --bogus 1)
check "unknown flag: exit 2 naming it" '[ $rc -eq 2 ] && grep -q -- "--bogus" "$tmp/err"'
rc=$(err --model "$tmp/gpt2-init" --out "$tmp/x")
check "missing --data: exit 2" '[ $rc -eq 2 ] && grep -q -- "--data" "$tmp/err"'
rc=$(err --model "$tmp/gpt2-init" --data "$tmp/no-such.txt" --out "$tmp/x")
check "missing data file: exit 1 naming it" '[ $rc -eq 1 ] && grep -q "no-such.txt" "$tmp/err"'
rc=$(err --model "$tmp/no-such-model" --data "$data" --out "$tmp/x")
check "missing model: exit 1 naming it" '[ $rc -eq 1 ] && grep -q "no-such-model" "$tmp/err"'
rc=$(err --model "$tmp/gpt2-init" --data "$data" --out "$tmp/gpt2-A")
check "fresh run into a directory holding a run: exit 1 suggesting --resume" '[ $rc -eq 1 ] && grep -q -- "--resume" "$tmp/err"'
rc=$(err --out "$tmp/gpt2-A" --resume --lr 1)
check "--resume with a changed optimizer flag: exit 2" '[ $rc -eq 2 ]'
rc=$(err --out "$tmp/gpt2-init" --resume)
check "--resume without a training state: exit 1 naming the file" '[ $rc -eq 1 ] && grep -q "training_state.bin" "$tmp/err"'
rc=$(err --model "$tmp/gpt2-init" --data "$data" --out "$tmp/x" --context 1000)
check "context beyond the model's: exit 1 naming both" '[ $rc -eq 1 ] && grep -q "context 1000" "$tmp/err"'
head -c 100 "$tmp/gpt2-A/training_state.bin" >"$tmp/trunc.bin" && cp -r "$tmp/gpt2-A" "$tmp/gpt2-T" &&
  mv "$tmp/trunc.bin" "$tmp/gpt2-T/training_state.bin"
rc=$(err --out "$tmp/gpt2-T" --resume)
check "truncated training state: exit 1 naming the file" '[ $rc -eq 1 ] && grep -q "training_state.bin" "$tmp/err"'
exit $fail
