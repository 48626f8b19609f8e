#!/usr/bin/env bash
# Transcript of the tokenizer commands: tokenize / detokenize / tokenizer train, including errors.
set -u
rlhf=$1
data=${RLHF_SHARED_DATA:-../shared/data}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }

out=$(printf 'Hello, world!' | "$rlhf" tokenize --tokenizer "$data/gpt2")
check "tokenize prints GPT-2 ids (got '$out')" '[ "$out" = "15496 11 995 0" ]'
out=$(printf 'Hello world' | "$rlhf" tokenize --tokenizer "$data/gpt2" --pieces)
check "tokenize --pieces (got '$out')" '[ "$out" = "Hello Ġworld" ]'
out=$(printf 'a<|endoftext|>' | "$rlhf" tokenize -t "$data/gpt2")
check "specials are text without --special (got '$out')" '[ "$out" = "64 27 91 437 1659 5239 91 29" ]'
out=$(printf 'a<|endoftext|>' | "$rlhf" tokenize -t "$data/gpt2" --special)
check "--special makes one id (got '$out')" '[ "$out" = "64 50256" ]'
out=$(echo "15496 11 995 0" | "$rlhf" detokenize --tokenizer "$data/gpt2")
check "detokenize (got '$out')" '[ "$out" = "Hello, world!" ]'
out=$(printf 'naïve café 😀\n' | "$rlhf" tokenize -t "$data/llama3-tokenizer" | "$rlhf" detokenize -t "$data/llama3-tokenizer")
check "llama3 round trip through the CLI (got '$out')" '[ "$out" = "naïve café 😀" ]'
out=$(printf 'Hello world' | "$rlhf" tokenize -t "$data/sp-bpe-32k" --bos)
check "sp-bpe-32k with --bos (got '$out')" '[ "$out" = "1 22557 1526" ]'

# errors: bad id names the line (exit 1), missing tokenizer (exit 1), usage (exit 2)
printf '15496\n11 abc\n' | "$rlhf" detokenize -t "$data/gpt2" >"$tmp/o" 2>"$tmp/e"; rc=$?
check "bad id exits 1 (got $rc)" '[ $rc -eq 1 ]'
check "bad id names stdin:2 ($(cat "$tmp/e"))" 'grep -q "stdin:2: .abc. is not a token id" "$tmp/e"'
echo 99999 | "$rlhf" detokenize -t "$data/gpt2" >/dev/null 2>"$tmp/e"; rc=$?
check "out-of-range id exits 1" '[ $rc -eq 1 ] && grep -q "not in the vocabulary" "$tmp/e"'
echo hi | "$rlhf" tokenize -t "$tmp/none.json" >/dev/null 2>"$tmp/e"; rc=$?
check "missing tokenizer exits 1 naming it" '[ $rc -eq 1 ] && grep -q "none.json" "$tmp/e"'
printf '{\n "model": {\n' >"$tmp/broken.json"
echo hi | "$rlhf" tokenize -t "$tmp/broken.json" >/dev/null 2>"$tmp/e"; rc=$?
check "malformed tokenizer.json names file:line ($(cat "$tmp/e"))" '[ $rc -eq 1 ] && grep -q "broken.json:[0-9]*: malformed JSON" "$tmp/e"'
"$rlhf" tokenize </dev/null >/dev/null 2>&1; rc=$?
check "tokenize without --tokenizer exits 2" '[ $rc -eq 2 ]'
"$rlhf" detokenize --bogus </dev/null >/dev/null 2>&1; rc=$?
check "unknown flag exits 2" '[ $rc -eq 2 ]'
"$rlhf" tokenizer train --vocab-size 10 x --out y >/dev/null 2>&1; rc=$?
check "vocab size below 256 exits 2" '[ $rc -eq 2 ]'
"$rlhf" tokenizer frobnicate >/dev/null 2>&1; rc=$?
check "unknown subcommand exits 2" '[ $rc -eq 2 ]'
for c in tokenize detokenize tokenizer; do
  "$rlhf" $c --help | grep -q "usage: rlhf $c" || { echo "FAIL: $c --help"; fail=1; }
done

# train, then use the result
"$rlhf" tokenizer train --vocab-size 1000 --special '<|endoftext|>' "$data/tinyshakespeare/input.txt" \
  --out "$tmp/tok.json" >"$tmp/o" 2>"$tmp/e"; rc=$?
check "train exits 0 ($(cat "$tmp/e"))" '[ $rc -eq 0 ]'
check "train reports what it wrote" 'grep -q "1000 ids (1 specials, 256 bytes, 743 merges)" "$tmp/o"'
check "train shows progress" 'grep -q "merges: 743 / 743" "$tmp/e"'
out=$(printf 'ROMEO: O<|endoftext|>' | "$rlhf" tokenize -t "$tmp/tok.json" --special | "$rlhf" detokenize -t "$tmp/tok.json")
check "trained tokenizer round-trips through the CLI (got '$out')" '[ "$out" = "ROMEO: O<|endoftext|>" ]'
mkdir "$tmp/model"
"$rlhf" tokenizer train --vocab-size 300 "$data/tinyshakespeare/input.txt" --out "$tmp/model" >/dev/null 2>&1
check "--out DIR writes DIR/tokenizer.json" '[ -f "$tmp/model/tokenizer.json" ]'
out=$(printf 'abc' | "$rlhf" tokenize -t "$tmp/model")
check "a model directory loads its tokenizer.json (got '$out')" '[ -n "$out" ]'
"$rlhf" tokenizer train --vocab-size 300 "$tmp/no-such-corpus.txt" --out "$tmp/x.json" >/dev/null 2>"$tmp/e"; rc=$?
check "missing corpus exits 1 naming it" '[ $rc -eq 1 ] && grep -q "no-such-corpus.txt" "$tmp/e" && [ ! -e "$tmp/x.json" ]'
[ $fail -eq 0 ] && echo "tokenizer cli: all checks passed"
exit $fail
