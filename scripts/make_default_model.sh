#!/usr/bin/env bash
# make_default_model.sh — regenerates models/default from scratch with this project's own
# commands on its own task world (nothing downloaded):
#   1. the data: `rlhf world` train split as pre-training text (instructions with answers, and
#      narrative stories) and as chat SFT data with deliberately flawed answers (--flaws default:
#      20% wrong, 10% rambling, 10% rude, 10% endless);
#   2. a byte-level BPE tokenizer (`rlhf tokenizer train`) with the chat markers as specials;
#   3. a small Llama (`rlhf model new`), pre-trained (`rlhf pretrain`), then instruction-tuned
#      (`rlhf sft`) through its chat template;
#   4. its measured accuracy on the test split (`rlhf eval`: greedy answers, and 4 sampled answers
#      per prompt with its chat sampling) into models/default/README.md.
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
"$rlhf" world --family all --split train --n ${PRETRAIN_N:-1500} --format text --out "$work/pretrain.txt"
"$rlhf" world --family all --split train --n ${SFT_N:-800} --format chat --flaws default --seed 7 --out "$work/sft.jsonl"
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
"$rlhf" eval --model "$out" --tasks toy --n 50 --stories 0 --json > "$work/eval-greedy.json"
"$rlhf" eval --model "$out" --tasks toy --n 50 --stories 0 --samples 4 --seed 1 --json > "$work/eval-sampled.json"
"$rlhf" eval --model "$out" --tasks toy --n 50 --stories 0 --shots 3 --json > "$work/eval-3shot.json"
/usr/bin/python3 - "$out" "$work" "$pre_steps" "$sft_steps" "$t0" <<'PY'
import json, sys, time
out, work, pre, sft, t0 = sys.argv[1:6]
ev = {k: json.loads(open(f"{work}/eval-{k}.json").read().splitlines()[-1]) for k in ("greedy", "sampled", "3shot")}
pct = lambda x: f"{100 * x:.0f}%"
lines = ["# The default model", "",
         "A small chat model (Llama, 4 layers, dim 192, GQA 6/2 heads, vocabulary 1024, context 256) made by",
         "`bash scripts/make_default_model.sh` with this project's own commands on its own task world",
         "(`rlhf world`): a byte-level BPE tokenizer (`rlhf tokenizer train`), pre-training on the world's",
         f"instructions, answers and stories ({pre} steps), then chat SFT ({sft} steps) on answers that are",
         "deliberately imperfect (20% wrong, 10% rambling, 10% rude, 10% endless: the answer followed by an",
         "invented next turn, trained without an end), so that there is something for feedback to fix. Its",
         "chat template puts each turn between `<|role|>` and `<|end|>` (the EOS).", "",
         "Measured on the test split (`rlhf eval --tasks toy --n 50`, 50 prompts per family, 48 tokens at",
         "most): greedy zero-shot, greedy 3-shot (`--shots 3`), and sampled as `rlhf chat` samples",
         "(`--samples 4`: 4 answers per prompt at temperature 1, top-k 50; 200 answers per family).", "",
         "| family | greedy | 3-shot | sampled | sampled: rambling / rude / no EOS |", "| --- | --- | --- | --- | --- |"]
for fam in sorted(ev["greedy"]["families"]):
    g, k, s = (ev[m]["families"][fam] for m in ("greedy", "3shot", "sampled"))
    lines.append(f"| {fam} | {pct(g['accuracy'])} | {pct(k['accuracy'])} | {pct(s['accuracy'])} | "
                 f"{pct(s['rambling'])} / {pct(s['rude'])} / {pct(s['no_eos'])} |")
g, k, s = ev["greedy"], ev["3shot"], ev["sampled"]
lines += [f"| **all** | **{pct(g['accuracy'])}** | **{pct(k['accuracy'])}** | **{pct(s['accuracy'])}** | "
          f"{pct(s['rambling'])} / {pct(s['rude'])} / {pct(s['no_eos'])} |", "",
          f"Unwanted answers (rambling, rude or never ending): {pct(g['unwanted'])} greedy, {pct(s['unwanted'])} sampled.",
          f"Made in {(time.time() - float(t0)) / 60:.0f} minutes on a 2-core machine."]
open(f"{out}/README.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
echo "== done: $out"
