#!/usr/bin/env bash
# runs_cli.sh — transcript test of `rlhf runs` (list, show with sparklines, --svg, --json, errors)
# over two short `rlhf sft` runs recorded with --runs-db. Compared with runs_cli.out by
# transcript_compare.py (floats within its stated tolerance); timestamps and the tokens/s curve
# are masked, and so are the sparkline characters of the loss and gradient curves (a value on
# a level boundary may print one level off on another CPU; their numbers are compared instead;
# the learning-rate curve is exact and kept). The SVG is parsed as XML (well-formed, one panel and one curve per metric).
#   usage: runs_cli.sh RLHF runs_cli.in runs_cli.out   (RLHF_UPDATE_TRANSCRIPT=1 rewrites .out)
set -u
. "$(dirname "$0")/transcript.sh"
RLHF_BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
script=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
expected=$(cd "$(dirname "$3")" && pwd)/$(basename "$3")
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
work=$(mktemp -d "${TMPDIR:-/tmp}/rlhf-runs-XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
rlhf() { "$RLHF_BIN" "$@"; }
/usr/bin/python3 - <<'PY'
import json, random
r = random.Random(4)
with open("sft.jsonl", "w") as f:
    for i in range(40):
        a, b = r.randint(0, 9), r.randint(0, 9)
        f.write(json.dumps({"prompt": f"Q: {a}+{b}?\nA:", "completion": f" {a + b}"}) + "\n")
open("corpus.txt", "w").write(open("sft.jsonl").read() * 2)
PY
rlhf tokenizer train --vocab-size 280 --special "<|endoftext|>" corpus.txt --out tok.json >/dev/null 2>&1
rlhf model new --family llama --layers 2 --dim 32 --heads 4 --kv-heads 2 --vocab 280 --context 64 --seed 3 \
  --out m >/dev/null && cp tok.json m/tokenizer.json
actual=$work/transcript.out
transcript_run "$script" "$actual"
sed -i -E -e 's/[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z?/TIME/g' \
    -e 's/^(tokens_per_s +).*/\1(masked)/' \
    -e 's/^((loss|eval_loss|grad_norm) +)[^ ]+(  steps)/\1(curve)\3/' "$actual"
transcript_finish runs_cli "$actual" "$expected"
