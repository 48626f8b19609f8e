#!/usr/bin/env bash
# The built-in default model (models/default) as a new user meets it: it is a normal model
# directory under 10 MB with a tokenizer and a chat template; `rlhf generate` and `rlhf chat`
# load it when --model is left out, answer a task-world prompt through the chat template and
# stop at EOS; its README states its measured accuracy.
# Usage: default_model.sh RLHF_EXE SOURCE_DIR
set -u
rlhf=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
src=$(cd "$2" && pwd)
export RLHF_DEFAULT_MODEL=$src/models/default
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
d=$RLHF_DEFAULT_MODEL
check "models/default is a model directory with tokenizer and chat template" \
  '[ -f $d/config.json ] && [ -f $d/model.safetensors ] && [ -f $d/tokenizer.json ] && grep -q chat_template $d/tokenizer_config.json'
check "its weights are at most 10 MB ($(stat -c %s $d/model.safetensors) bytes)" '[ $(stat -c %s $d/model.safetensors) -le 10485760 ]'
check "its README states how it was made and its accuracy" 'grep -q make_default_model.sh $d/README.md && grep -q "\*\*all\*\*" $d/README.md'
out=$("$rlhf" generate --chat --prompt "What is 2 plus 3?" --strategy greedy --max-tokens 40 --json 2>&1); rc=$?
check "rlhf generate without --model uses it ($rc)" '[ $rc -eq 0 ] && grep -q "\"finish\"" <<<"$out"'
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rlhf-default-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
out=$(cd "$tmp" && printf 'What is 2 plus 3?\n/model info\n' | "$rlhf" chat 2>&1); rc=$?
check "rlhf chat without --model loads it and replies ($rc)" '[ $rc -eq 0 ] && grep -q "tok/s" <<<"$out" && grep -q "models/default" <<<"$out"'
check "the chat template is in use" 'grep -q "chat template" <<<"$out"'
js=$("$rlhf" eval --tasks toy --n 3 --shots 1 --json 2>&1); rc=$?
check "rlhf eval --tasks toy on it: 12 families, accuracies in [0, 1], P/R/F1 for spam and sentiment ($rc)" \
  '[ $rc -eq 0 ] && /usr/bin/python3 -c "
import json, sys
r = json.loads(sys.argv[1])
f = r[\"families\"]
assert len(f) == 12 and all(0 <= v[\"accuracy\"] <= 1 and v[\"n\"] == 3 for v in f.values())
assert \"f1\" in f[\"spam\"][\"not spam\"] and \"precision\" in f[\"sentiment\"][\"positive\"]
" "$js"'
out2=$("$rlhf" eval --tasks nope 2>&1); rc=$?
check "rlhf eval with unknown tasks: exit 2" '[ $rc -eq 2 ] && grep -q "tasks toy" <<<"$out2"'
[ $fail -eq 0 ] || echo "$out"
exit $fail
