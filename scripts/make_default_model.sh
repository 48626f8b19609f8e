#!/usr/bin/env bash
# make_default_model.sh — regenerates models/default from scratch with this project's own
# commands on its own task world (nothing downloaded):
#   1. the data: `rlhf world` train split as pre-training text (instructions with answers, and
#      narrative stories) and as chat SFT data with deliberately flawed answers (--flaws default:
#      10% wrong, 5% rambling, 5% rude, 5% endless);
#   2. a byte-level BPE tokenizer (`rlhf tokenizer train`) with the chat markers as specials;
#   3. a small Llama (`rlhf model new`), pre-trained (`rlhf pretrain`), then instruction-tuned
#      (`rlhf sft`) through its chat template;
#   4. its measured accuracy on the test split (`rlhf world verify` on greedy answers) into
#      models/default/README.md.
# Deterministic for a given build and machine (seeded data, sampler and initialisation).
# Usage: bash scripts/make_default_model.sh [OUT_DIR]   (env: PRETRAIN_STEPS, SFT_STEPS, THREADS)
set -euo pipefail
cd "$(dirname "$0")/.."
rlhf=${RLHF:-./build/repl/rlhf}
out=${1:-models/default}
work=${WORK:-build/default-model}
pre_steps=${PRETRAIN_STEPS:-3000}
sft_steps=${SFT_STEPS:-1500}
export OMP_NUM_THREADS=${THREADS:-2}
[ -x "$rlhf" ] || { echo "no $rlhf: build first (bash scripts/bootstrap.sh build)"; exit 1; }
rm -rf "$work"
mkdir -p "$work"
t0=$(date +%s)

echo "== 1. data (rlhf world)"
"$rlhf" world --family all --split train --n 400 --format text --out "$work/pretrain.txt"
"$rlhf" world --family all --split train --n 300 --format chat --flaws default --seed 7 --out "$work/sft.jsonl"
wc -c "$work/pretrain.txt" | awk '{ printf "pre-training text: %.1f MB\n", $1 / 1e6 }'
wc -l < "$work/sft.jsonl" | awk '{ print "SFT examples: " $1 }'

echo "== 2. tokenizer"
"$rlhf" tokenizer train --vocab-size 1024 --special "<|end|>" --special "<|user|>" --special "<|assistant|>" \
    --special "<|system|>" "$work/pretrain.txt" --out "$work/tokenizer.json"

echo "== 3. model, pre-training, SFT"
"$rlhf" model new --family llama --layers 4 --dim 192 --heads 6 --kv-heads 2 --ffn 512 --vocab 1024 --context 256 \
    --seed 1 --out "$work/init" > /dev/null
cp "$work/tokenizer.json" "$work/init/"
# The chat template: every turn between its role marker and <|end|> (also the EOS token), so a
# reply ends when the model writes <|end|>.
cat > "$work/init/tokenizer_config.json" <<'JSON'
{"eos_token": "<|end|>", "pad_token": "<|end|>",
 "chat_template": "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"}
JSON
"$rlhf" pretrain --model "$work/init" --data "$work/pretrain.txt" --out "$work/pretrained" --steps "$pre_steps" \
    --batch 16 --context 128 --lr 3e-3 --min-lr 3e-4 --warmup 100 --eval-every 500 --save-every 1000 --seed 1
cp "$work/init/tokenizer_config.json" "$work/pretrained/"
"$rlhf" sft --model "$work/pretrained" --data "$work/sft.jsonl" --out "$work/sft" --steps "$sft_steps" --batch 16 \
    --lr 1e-3 --min-lr 1e-4 --warmup 50 --max-length 128 --truncate keep_start --eval-every 500 --save-every 1500 \
    --seed 1

echo "== 4. evaluation on the test split"
mkdir -p "$out"
cp "$work/sft/config.json" "$work/sft/model.safetensors" "$work/sft/tokenizer.json" "$out/"
cp "$work/init/tokenizer_config.json" "$out/"
[ -f "$work/sft/generation_config.json" ] && cp "$work/sft/generation_config.json" "$out/"
"$rlhf" world --family all --split test --n 20 --format prompts --out "$work/test.jsonl"
/usr/bin/python3 - "$rlhf" "$out" "$work/test.jsonl" "$pre_steps" "$sft_steps" "$t0" <<'PY'
import collections, json, subprocess, sys, time
rlhf, out, test, pre, sft, t0 = sys.argv[1:7]
rows = [json.loads(l) for l in open(test)]
acc = collections.defaultdict(lambda: [0, 0])
flaws = collections.Counter()
stops = 0
for r in rows:
    g = json.loads(subprocess.run([rlhf, "generate", "--model", out, "--chat", "--prompt", r["prompt"],
                                   "--strategy", "greedy", "--max-tokens", "48", "--json"],
                                  check=True, stdout=subprocess.PIPE, text=True).stdout.splitlines()[0])
    v = json.loads(subprocess.run([rlhf, "world", "verify", "--prompt", r["prompt"], "--response", g["text"], "--json"],
                                  check=True, stdout=subprocess.PIPE, text=True).stdout)
    a = acc[r["family"]]
    a[0] += v["correct"]
    a[1] += 1
    for f in filter(None, v["flaws"].split(",")):
        flaws[f] += 1
    stops += g["finish"] == "eos"
n = len(rows)
total = sum(a[0] for a in acc.values())
lines = ["# The default model", "",
         "A small chat model (Llama, 4 layers, dim 192, GQA 6/2 heads, vocabulary 1024, context 256) made by",
         "`bash scripts/make_default_model.sh` with this project's own commands on its own task world",
         "(`rlhf world`): a byte-level BPE tokenizer (`rlhf tokenizer train`), pre-training on the world's",
         f"instructions, answers and stories ({pre} steps), then chat SFT ({sft} steps) on answers that are",
         "deliberately imperfect (10% wrong, 5% rambling, 5% rude, 5% endless), so that there is something",
         "for feedback to fix. Its chat template puts each turn between `<|role|>` and `<|end|>` (the EOS).",
         "", f"Measured on the test split ({n} prompts, greedy, 48 tokens at most; "
         f"`rlhf world verify` as the judge):", "",
         "| family | correct |", "| --- | --- |"]
for fam, (c, t) in sorted(acc.items()):
    lines.append(f"| {fam} | {c}/{t} |")
lines += [f"| **all** | **{total}/{n} ({100 * total / n:.0f}%)** |", "",
          f"Answers that end with EOS before 48 tokens: {stops}/{n}. Flaws seen: " +
          (", ".join(f"{k} {v}" for k, v in sorted(flaws.items())) or "none") + ".",
          f"Made in {(time.time() - float(t0)) / 60:.0f} minutes on a 2-core machine."]
open(f"{out}/README.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
echo "== done: $out"
