#!/usr/bin/env bash
# `rlhf pretrain` with a real BPE tokenizer and its progress output:
#  - a 512-id BPE vocabulary trained on the first 100 KB of tinyshakespeare drives a 512-vocab
#    model given with --tokenizer, or found as the model directory's tokenizer.json; the output
#    directory carries that tokenizer byte for byte, the run reports vocabulary 512 and fewer
#    tokens than the byte tokenizer, and the losses are finite;
#  - a vocabulary mismatch (512-id tokenizer with a 256-vocab model, by flag or from the model
#    directory; the GPT-2 tokenizer with a 512-vocab model) exits 1 naming both sizes and leaves
#    no output directory (and an existing empty --out stays empty);
#  - the progress lines carry step/total, loss, tok/s and ETA, the validation loss every
#    --eval-every steps (and not mid-run without it), on a terminal as a live \r line;
#    --json-log writes one valid JSON object per line, one step event per step with a finite loss.
# Usage: pretrain_cli.sh RLHF_EXE   (RLHF_SHARED_DATA: the shared data dir)
set -u
rlhf=$1
shared=${RLHF_SHARED_DATA:-../shared/data}
data=$shared/tinyshakespeare/input.txt
[ -f "$data" ] || { echo "missing fixture $data"; exit 1; }
[ -f "$shared/gpt2/vocab.bpe" ] || { echo "missing fixture $shared/gpt2"; exit 1; }
py=/usr/bin/python3
[ -x "$py" ] || py=python3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rlhf-pretrain-cli-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0 passed=0
check() {
  if eval "$2"; then echo "ok: $1"; passed=$((passed + 1)); else echo "FAIL: $1"; fail=1; return 1; fi
}
# Prints a file's contents under a failed check, so the log shows what the command said.
show() { sed 's/^/    | /' "$1" | head -20; }

head -c 100000 "$data" >"$tmp/corpus.txt"
small=(--data "$tmp/corpus.txt" --batch 4 --context 32 --lr 1e-3 --warmup 2)

"$rlhf" tokenizer train --vocab-size 512 "$tmp/corpus.txt" --out "$tmp/tok.json" >"$tmp/out" 2>&1
check "tokenizer train --vocab-size 512 succeeds" '[ $? -eq 0 ] && [ -s "$tmp/tok.json" ]' || show "$tmp/out"
for v in 512 256; do
  "$rlhf" model new --family gpt2 --layers 1 --dim 32 --heads 2 --vocab $v --context 32 --seed 1 \
    --out "$tmp/m$v" >"$tmp/out" 2>&1 || { echo "FAIL: cannot make the vocab-$v model"; show "$tmp/out"; exit 1; }
done

# The number of training tokens and the vocabulary from the summary line
# "pretrained P parameters on N tokens (vocabulary V): ...".
summary() { sed -n 's/^pretrained [0-9]* parameters on \([0-9]*\) tokens (vocabulary \([0-9]*\)).*/\1 \2/p' "$1"; }
# True when every number after "final training loss" / "validation loss" is finite.
finite_losses() {
  "$py" -c '
import math, re, sys
t = open(sys.argv[1]).read()
m = re.search(r"final training loss (\S+), validation loss (\S+) \(was (\S+) at step 0\)", t)
sys.exit(0 if m and all(math.isfinite(float(x)) for x in m.groups()) else 1)' "$1"
}

# ---- 1a: --tokenizer FILE ----
"$rlhf" pretrain --model "$tmp/m512" --tokenizer "$tmp/tok.json" "${small[@]}" --steps 20 --eval-every 5 \
  --out "$tmp/a" --json-log "$tmp/a.log" >"$tmp/a.out" 2>"$tmp/a.err"
rc=$?
check "pretrain --tokenizer tok.json succeeds (exit $rc)" '[ $rc -eq 0 ]' || show "$tmp/a.err"
check "--tokenizer: the output directory carries tokenizer.json identical to tok.json" \
  'cmp -s "$tmp/tok.json" "$tmp/a/tokenizer.json"'
check "--tokenizer: the output directory is a complete checkpoint" \
  '[ -f "$tmp/a/config.json" ] && [ -f "$tmp/a/model.safetensors" ] && [ -f "$tmp/a/training_state.bin" ]'
read -r a_tokens a_vocab <<<"$(summary "$tmp/a.out")"
check "--tokenizer: the run reports vocabulary 512 (got '${a_vocab:-}')" '[ "${a_vocab:-}" = 512 ]' || show "$tmp/a.out"
check "--tokenizer: final training and validation losses are finite" 'finite_losses "$tmp/a.out"' || show "$tmp/a.out"
check "--tokenizer: 20 steps lower the validation loss" \
  '"$py" -c "
import re, sys
m = re.search(r\"validation loss (\S+) \(was (\S+) at step 0\)\", open(sys.argv[1]).read())
sys.exit(0 if m and float(m.group(1)) < float(m.group(2)) else 1)" "$tmp/a.out"' || show "$tmp/a.out"

# Baseline with the byte tokenizer (a model directory without tokenizer.json; 256 ids fit a 512 vocab).
"$rlhf" pretrain --model "$tmp/m512" "${small[@]}" --steps 2 --out "$tmp/byte" >"$tmp/byte.out" 2>&1
rc=$?
read -r byte_tokens byte_vocab <<<"$(summary "$tmp/byte.out")"
check "byte-tokenizer baseline runs with vocabulary 256 (exit $rc, vocabulary '${byte_vocab:-}')" \
  '[ $rc -eq 0 ] && [ "${byte_vocab:-}" = 256 ]' || show "$tmp/byte.out"
check "BPE encodes the corpus into fewer training tokens than bytes (${a_tokens:-?} < ${byte_tokens:-?})" \
  '[ -n "${a_tokens:-}" ] && [ -n "${byte_tokens:-}" ] && [ "$a_tokens" -lt "$byte_tokens" ]'

# ---- 1b: the model directory's tokenizer.json, no --tokenizer ----
cp -r "$tmp/m512" "$tmp/m512t" && cp "$tmp/tok.json" "$tmp/m512t/tokenizer.json"
"$rlhf" pretrain --model "$tmp/m512t" "${small[@]}" --steps 5 --out "$tmp/b" >"$tmp/b.out" 2>"$tmp/b.err"
rc=$?
check "pretrain with the model directory's tokenizer.json succeeds (exit $rc)" '[ $rc -eq 0 ]' || show "$tmp/b.err"
read -r b_tokens b_vocab <<<"$(summary "$tmp/b.out")"
check "model-dir tokenizer: used — vocabulary 512 and the same token count as --tokenizer (${b_tokens:-?} = ${a_tokens:-?})" \
  '[ "${b_vocab:-}" = 512 ] && [ "${b_tokens:-}" = "${a_tokens:-x}" ]' || show "$tmp/b.out"
check "model-dir tokenizer: saved tokenizer.json identical to it" 'cmp -s "$tmp/tok.json" "$tmp/b/tokenizer.json"'
check "model-dir tokenizer: losses finite" 'finite_losses "$tmp/b.out"' || show "$tmp/b.out"
# Without --eval-every (default 100 > 5 steps) no validation is shown mid-run.
check "no --eval-every: no validation loss between step 0 and the last step" \
  '! tr "\r" "\n" <"$tmp/b.err" | grep -Eq "^step [1-4]/5 .*val"' || show "$tmp/b.err"

# ---- 1c: vocabulary mismatches are refused before anything is written ----
mismatch() { # name, expected "A ids ... B" sizes, out dir, pretrain args...
  local name=$1 want=$2 have=$3 out=$4; shift 4
  "$rlhf" pretrain "$@" "${small[@]}" --steps 3 --out "$out" >"$tmp/mm.out" 2>"$tmp/mm.err"
  local rc=$?
  check "$name: refused with exit 1 (got $rc)" '[ $rc -eq 1 ]' || show "$tmp/mm.err"
  check "$name: the message names both sizes ($want tokenizer ids, vocabulary $have)" \
    'grep -q "tokenizer" "$tmp/mm.err" && grep -q "\b$want\b" "$tmp/mm.err" && grep -q "vocabulary.*\b$have\b" "$tmp/mm.err"' \
    || show "$tmp/mm.err"
}
mismatch "512-id --tokenizer, 256-vocab model" 512 256 "$tmp/c1" --model "$tmp/m256" --tokenizer "$tmp/tok.json"
check "512-id --tokenizer, 256-vocab model: no output directory left" '[ ! -e "$tmp/c1" ]'
cp -r "$tmp/m256" "$tmp/m256t" && cp "$tmp/tok.json" "$tmp/m256t/tokenizer.json"
mismatch "512-id tokenizer.json in a 256-vocab model directory" 512 256 "$tmp/c2" --model "$tmp/m256t"
check "512-id model-dir tokenizer, 256-vocab model: message names the tokenizer file" \
  'grep -q "m256t/tokenizer.json" "$tmp/mm.err"'
check "512-id model-dir tokenizer, 256-vocab model: no output directory left" '[ ! -e "$tmp/c2" ]'
mismatch "GPT-2 tokenizer, 512-vocab model" 50257 512 "$tmp/c3/sub" --model "$tmp/m512" --tokenizer "$shared/gpt2"
check "GPT-2 tokenizer, 512-vocab model: no output directory (nor parent) left" '[ ! -e "$tmp/c3" ]'
mkdir "$tmp/c4"
mismatch "mismatch into an existing empty --out" 512 256 "$tmp/c4" --model "$tmp/m256" --tokenizer "$tmp/tok.json"
check "mismatch into an existing empty --out: it stays empty" '[ -z "$(ls -A "$tmp/c4")" ]' || ls -A "$tmp/c4"

# ---- 2: progress output of run 1a (stderr not a terminal: one line per update) ----
tr '\r' '\n' <"$tmp/a.err" >"$tmp/a.lines"
step_re='^step ([0-9]+)/20 \| loss [0-9]+\.[0-9]+( \| val [0-9]+\.[0-9]+)? \| lr [0-9.e+-]+ \| [0-9]+ tok/s \| ETA [0-9]+(h[0-9]{2}m|m[0-9]{2}s|s)$'
check "progress: step lines with step/total, loss, lr, tok/s and ETA" 'grep -Eq "$step_re" "$tmp/a.lines"' \
  || show "$tmp/a.lines"
check "progress: the last step (20/20) is shown with its loss" 'grep -Eq "^step 20/20 \| loss " "$tmp/a.lines"'
check "progress: tok/s is positive" 'grep -E "$step_re" "$tmp/a.lines" | grep -Eq "\| [1-9][0-9]* tok/s"'
val_shown() { # file, steps...: a progress line with "val" for each step
  local f=$1 s; shift
  for s in "$@"; do grep -Eq "^step $s/20 \| loss [0-9.]+ \| val [0-9]+\.[0-9]+ " "$f" || return 1; done
}
check "progress: --eval-every 5 shows the validation loss at steps 5, 10, 15 and 20" \
  'val_shown "$tmp/a.lines" 5 10 15 20' || show "$tmp/a.lines"
check "progress: the validation loss before training (step 0)" 'grep -Eq "^step 0/20 \| val loss [0-9]+\.[0-9]+$" "$tmp/a.lines"'
check "progress: no nan/inf in the progress lines" '! grep -Eqi "nan|inf" "$tmp/a.lines"'
final_loss=$(sed -n 's/^final training loss \([0-9.]*\),.*/\1/p' "$tmp/a.out")
check "progress: the summary's final loss ($final_loss) is the step-20 line's" \
  '[ -n "$final_loss" ] && grep -Eq "^step 20/20 \| loss $final_loss " "$tmp/a.lines"'

# ---- 2: --json-log of run 1a ----
check "json-log: every line is a JSON object; steps 1..20 once each with a finite loss; val_loss at 5,10,15,20" \
  '"$py" - "$tmp/a.log" <<"EOF"
import json, math, sys
steps, vals, bad = [], [], []
for n, line in enumerate(open(sys.argv[1]), 1):
    try:
        o = json.loads(line)
    except ValueError as e:
        bad.append("line %d not JSON: %s" % (n, e)); continue
    if not isinstance(o, dict) or "step" not in o:
        bad.append("line %d lacks step: %s" % (n, line.strip())); continue
    if o.get("event") == "step":
        if not (isinstance(o.get("loss"), float) and math.isfinite(o["loss"])):
            bad.append("line %d: loss not finite: %s" % (n, line.strip()))
        steps.append(o["step"])
        if "val_loss" in o: vals.append(o["step"])
    elif o.get("event") == "eval":
        if not math.isfinite(o.get("val_loss", float("nan"))): bad.append("line %d: bad val_loss" % n)
    else:
        bad.append("line %d: unknown event %r" % (n, o.get("event")))
if steps != list(range(1, 21)): bad.append("step events %s, want 1..20" % steps)
if vals != [5, 10, 15, 20]: bad.append("val_loss at steps %s, want [5, 10, 15, 20]" % vals)
for b in bad: print("    |", b)
sys.exit(1 if bad else 0)
EOF'

# ---- 2: on a terminal the live line is redrawn in place with \r (script(1), from bsdutils, which
# scripts/bootstrap.sh installs: a missing script(1) fails this check instead of skipping it) ----
check "script(1) is installed for the terminal check" 'command -v script >/dev/null 2>&1'
if command -v script >/dev/null 2>&1; then
  COLUMNS=100 script -qec "'$rlhf' pretrain --model '$tmp/m512' --tokenizer '$tmp/tok.json' --data '$tmp/corpus.txt' \
    --batch 4 --context 32 --steps 10 --eval-every 5 --out '$tmp/tty'" /dev/null >"$tmp/tty.raw" 2>&1 </dev/null
  rc=$?
  check "terminal run succeeds (exit $rc)" '[ $rc -eq 0 ]' || show "$tmp/tty.raw"
  live=$'\r\033'"\\[Kstep 5/10 | loss"
  check "terminal: progress redrawn in place (\\r + erase-line before each update)" 'grep -q "$live" "$tmp/tty.raw"'
  tr '\r' '\n' <"$tmp/tty.raw" | sed 's/^\x1b\[K//' >"$tmp/tty.lines"
  check "terminal: the live line has step/total, loss, val, tok/s and ETA" \
    'grep -Eq "^step 10/10 \| loss [0-9.]+ \| val [0-9.]+ \| lr [0-9.e+-]+ \| [0-9]+ tok/s \| ETA [0-9]" "$tmp/tty.lines"' \
    || show "$tmp/tty.lines"
fi

# ---- 3: --resume keeps the run's save/eval cadence unless given again ----
"$rlhf" pretrain --model "$tmp/m512" --tokenizer "$tmp/tok.json" --data "$tmp/corpus.txt" --batch 2 --context 16 \
  --steps 4 --save-every 1 --eval-every 2 --out "$tmp/cad" >"$tmp/cad1.out" 2>&1
"$rlhf" pretrain --out "$tmp/cad" --resume --steps 8 >"$tmp/cad2.out" 2>&1
rc=$?
check "resume of a --save-every 1 --eval-every 2 run succeeds (exit $rc)" '[ $rc -eq 0 ]' || show "$tmp/cad2.out"
check "resume keeps --save-every 1: saves at steps 5, 6, 7 and 8" \
  '[ "$(tr "\r" "\n" <"$tmp/cad2.out" | grep -Eo "^step [0-9]+/8 \| saving" | sort -u | wc -l)" = 4 ]' || show "$tmp/cad2.out"
check "resume keeps --eval-every 2: validation at steps 6 and 8 only" \
  '[ "$(tr "\r" "\n" <"$tmp/cad2.out" | grep -Eo "^step [0-9]+/8 \| loss [0-9.]+ \| val" | grep -Eo "^step [0-9]+" | tr "\n" " ")" = "step 6 step 8 " ]' \
  || show "$tmp/cad2.out"
"$rlhf" pretrain --out "$tmp/cad" --resume --steps 10 --save-every 0 >"$tmp/cad3.out" 2>&1
check "a cadence given again on --resume wins (--save-every 0: one save, at the end)" \
  '[ "$(tr "\r" "\n" <"$tmp/cad3.out" | grep -Ec "^step [0-9]+/10 \| saving")" = 1 ]' || show "$tmp/cad3.out"

echo "pretrain_cli: $passed checks passed$([ $fail -ne 0 ] && echo ', some FAILED')"
exit $fail
