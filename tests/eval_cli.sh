#!/usr/bin/env bash
# rlhf eval's BLEU, perplexity and KL on the default model (models/default):
#  - perplexity equals exp(mean loss) recomputed story by story with `rlhf tokenize` and
#    `rlhf loss` (relative tolerance 1e-4: float32 logits summed in a different order);
#  - BLEU is reported for translate (corpus BLEU's own arithmetic is tests/test_bleu.c) and
#    matches a recomputation from the answers `rlhf generate` gives (tolerance 1e-6);
#  - KL to itself is 0 (1e-6), to a different model of the same vocabulary > 0.01;
#  - --runs-db stores bleu, perplexity, kl and accuracy/FAMILY; bad flags exit 2, a reference
#    over another vocabulary exits 1.
# Usage: eval_cli.sh RLHF_EXE SOURCE_DIR
set -u
rlhf=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
src=$(cd "$2" && pwd)
d=$src/models/default
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rlhf-eval-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

js=$("$rlhf" eval --model "$d" --tasks toy --families translate,add --n 20 --stories 4 --ref "$d" --json \
     --runs-db "$tmp/runs.db" 2>"$tmp/err"); rc=$?
echo "$js" > "$tmp/eval.json"
check "eval --families translate,add --stories 4 --ref itself --json ($rc)" '[ $rc -eq 0 ]'
"$rlhf" world --family stories --split test --n 4 --format text --out "$tmp/stories.txt"
/usr/bin/python3 - "$rlhf" "$d" "$tmp" <<'PY' || fail=1
import json, math, re, subprocess, sys
rlhf, d, tmp = sys.argv[1:4]
e = json.load(open(f"{tmp}/eval.json"))
ok = True
def check(what, cond):
    global ok
    print(("ok: " if cond else "FAIL: ") + what)
    ok &= bool(cond)
check("only the two families asked for", sorted(e["families"]) == ["add", "translate"])
# perplexity recomputed: each story's tokens, rlhf loss = mean NLL of tokens 2..n
nll = tok = 0
for story in [s for s in open(f"{tmp}/stories.txt").read().split("\n\n") if s.strip()]:
    ids = subprocess.run([rlhf, "tokenize", "--tokenizer", d, "--ids"], input=story.strip("\n"), text=True,
                         check=True, stdout=subprocess.PIPE).stdout.split()
    out = subprocess.run([rlhf, "loss", "--model", d, "--tokens", " ".join(ids), "--json"], text=True, check=True,
                         stdout=subprocess.PIPE).stdout
    loss = json.loads(out)["loss"]
    nll += loss * (len(ids) - 1)
    tok += len(ids) - 1
ppl = math.exp(nll / tok)
p = e["perplexity"]
check(f"perplexity {p['value']:.5f} = exp(mean rlhf loss over {tok} tokens) {ppl:.5f} (rel 1e-4)",
      p["tokens"] == tok and abs(p["value"] - ppl) <= 1e-4 * ppl)
# BLEU recomputed from the greedy answers (the same decoding as eval's)
prompts = [json.loads(l) for l in subprocess.run([rlhf, "world", "--family", "translate", "--split", "test", "--n", "20",
           "--format", "sft"], text=True, check=True, stdout=subprocess.PIPE).stdout.splitlines()]
def toks(s):
    return re.findall(r"[A-Za-z0-9\x80-\U0010ffff]+|[^\sA-Za-z0-9\x80-\U0010ffff]", s.lower())
match, total, hl, rl = [0] * 4, [0] * 4, 0, 0
for r in prompts:
    g = json.loads(subprocess.run([rlhf, "generate", "--model", d, "--chat", "--prompt", r["prompt"], "--strategy",
                                   "greedy", "--max-tokens", "48", "--json"], text=True, check=True,
                                  stdout=subprocess.PIPE).stdout.splitlines()[0])["text"]
    h, ref = toks(g), toks(r["completion"])
    hl, rl = hl + len(h), rl + len(ref)
    for n in range(1, 5):
        hg = [tuple(h[i:i + n]) for i in range(len(h) - n + 1)]
        rg = [tuple(ref[i:i + n]) for i in range(len(ref) - n + 1)]
        total[n - 1] += len(hg)
        match[n - 1] += sum(min(hg.count(x), rg.count(x)) for x in set(hg))
smooth, logs = 1, 0
for n in range(4):
    if match[n] == 0:
        smooth *= 2
        logs += math.log(1 / (smooth * total[n]))
    else:
        logs += math.log(match[n] / total[n])
bp = 1 if hl > rl else math.exp(1 - rl / hl)
bleu = 100 * bp * math.exp(logs / 4)
b = e["families"]["translate"]["bleu"]
check(f"BLEU {b['score']:.4f} = recomputed from rlhf generate's answers {bleu:.4f} (1e-6)",
      abs(b["score"] - bleu) < 1e-6 and e["bleu"] == b["score"] and b["sentences"] == 20)
check(f"KL to itself is 0 ({e['kl']:.2e}, 1e-6)", abs(e["kl"]) < 1e-6)
sys.exit(0 if ok else 1)
PY
n=$(sqlite3 "$tmp/runs.db" "select count(*) from metrics where name in ('bleu','perplexity','kl','accuracy/translate','unwanted')" 2>/dev/null)
check "--runs-db: bleu, perplexity, kl, accuracy/translate and unwanted stored ($n)" '[ "$n" = 5 ]'

# a different model over the same vocabulary: KL > 0.01
"$rlhf" model new --family llama --layers 1 --dim 32 --heads 2 --kv-heads 1 --ffn 64 --vocab 1024 --context 256 --seed 3 \
    --out "$tmp/other" > /dev/null
cp "$d/tokenizer.json" "$d/tokenizer_config.json" "$tmp/other/"
kl=$("$rlhf" eval --model "$d" --tasks toy --families add --n 2 --stories 0 --ref "$tmp/other" --json 2>/dev/null |
     /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["kl"])')
check "KL to a random model of the same vocabulary > 0.01 ($kl)" '/usr/bin/python3 -c "import sys; sys.exit(not float(\"$kl\") > 0.01)"'
"$rlhf" model new --family llama --layers 1 --dim 32 --heads 2 --kv-heads 1 --ffn 64 --vocab 512 --context 256 --seed 3 \
    --out "$tmp/small" > /dev/null
out=$("$rlhf" eval --model "$d" --tasks toy --families add --n 1 --ref "$tmp/small" 2>&1); rc=$?
check "a reference over another vocabulary: exit 1, says why ($rc)" '[ $rc -eq 1 ] && grep -q "same vocabulary" <<<"$out"'
out=$("$rlhf" eval --model "$d" --tasks toy --families add,nope 2>&1); rc=$?
check "--families with an unknown family: exit 2 ($rc)" '[ $rc -eq 2 ] && grep -q "families" <<<"$out"'
out=$("$rlhf" eval --model "$d" --tasks toy --stories -1 2>&1); rc=$?
check "--stories -1: exit 2 ($rc)" '[ $rc -eq 2 ]'
exit $fail
