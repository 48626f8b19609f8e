#!/usr/bin/env bash
# demo.sh — the main job for a new user, until the REPL and the built-in default model land:
# the closest real thing. It makes a small Llama, pre-trains it for about half a minute on a text
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
    cat README.md LICENSE src/*/*.h src/*/*.c > "$corpus"
fi

echo "rlhf.c demo: the chat REPL and the default model are not built yet (later issues)."
echo "This makes a small model, pre-trains it on $corpus (about half a minute)"
echo "and generates from it with four decoding strategies side by side, then three sampled candidates."
echo

if [ ! -f "$demo/trained/model.safetensors" ]; then
    "$rlhf" model new --family llama --layers 4 --dim 128 --heads 4 --vocab 256 --context 128 \
        --seed 1 --out "$demo/init"
    "$rlhf" pretrain --model "$demo/init" --data "$corpus" --out "$demo/trained" \
        --steps 300 --batch 16 --context 128 --lr 3e-3 --min-lr 3e-4 --warmup 20 \
        --eval-every 100 --save-every 300 --seed 1
fi
echo
"$rlhf" model info "$demo/trained"
echo
prompt="${1:-ROMEO:}"
echo "\$ rlhf generate --model $demo/trained --prompt \"$prompt\" --compare ..."
"$rlhf" generate --model "$demo/trained" --prompt "$prompt" --max-tokens 100 \
    --compare "greedy; beam beams=4 no_repeat_ngram=3; sample top_k=40 seed=1; sample top_p=0.9 temperature=0.8 seed=1"
echo
echo "\$ rlhf generate --model $demo/trained --prompt \"$prompt\" --temperature 0.8 --candidates 3 --max-tokens 60"
"$rlhf" generate --model "$demo/trained" --prompt "$prompt" --temperature 0.8 --candidates 3 --max-tokens 60
echo
echo "Next: rlhf generate --help, rlhf tokenize --help, rlhf db --help (the chat REPL comes with a later issue)."
