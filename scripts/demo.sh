#!/usr/bin/env bash
# demo.sh — the main job for a new user, until the REPL and the built-in default model land:
# the closest real thing. It makes a small Llama, pre-trains it for about a minute on a text
# corpus (tinyshakespeare from ../shared/data when present, else this project's own text),
# then generates from it with several decoding strategies side by side.
# A second run reuses the trained model (delete build/demo to start over).
set -euo pipefail
cd "$(dirname "$0")/.."
rlhf=./build/repl/rlhf
demo=build/demo
mkdir -p "$demo"

corpus="${RLHF_SHARED_DATA:-../shared/data}/tinyshakespeare/input.txt"
if [ ! -f "$corpus" ]; then
    corpus="$demo/corpus.txt"
    cat README.md LICENSE src/*.h src/*.c > "$corpus"
fi

echo "rlhf.c demo: the chat REPL and the default model are not built yet (later issues)."
echo "This makes a small model, pre-trains it on $corpus and generates from it."
echo

if [ ! -f "$demo/trained/model.safetensors" ]; then
    "$rlhf" model new --family llama --layers 4 --dim 128 --heads 4 --vocab 256 --context 128 \
        --seed 1 --out "$demo/init"
    "$rlhf" pretrain --model "$demo/init" --data "$corpus" --out "$demo/trained" \
        --steps 150 --batch 16 --context 128 --lr 3e-3 --min-lr 3e-4 --warmup 20 \
        --eval-every 50 --save-every 150 --seed 1
fi
echo
"$rlhf" model info "$demo/trained"
