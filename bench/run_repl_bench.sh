#!/usr/bin/env bash
# run_repl_bench.sh BUILD [RUNS] — REPL latency on a d288 Llama (6 layers, 6 heads, vocabulary
# 32000 with the SentencePiece-BPE tokenizer of ../shared/data, random weights: latency does not
# depend on what the weights say). Makes the model once in BUILD/bench-repl-model.
set -eu
build=${1:-build}
runs=${2:-7}
data=${RLHF_SHARED_DATA:-$(dirname "$0")/../../shared/data}
model=$build/bench-repl-model
if [ ! -f "$model/model.safetensors" ]; then
    "$build/repl/rlhf" model new --family llama --layers 6 --dim 288 --heads 6 --vocab 32000 --context 256 \
        --seed 1 --out "$model" > /dev/null
    cp "$data/sp-bpe-32k/tokenizer.json" "$data/sp-bpe-32k/tokenizer_config.json" "$model/"
fi
ninja -C "$build" bench/bench_repl > /dev/null
"$build/bench/bench_repl" "$(cd "$build/repl" && pwd)/rlhf" "$model" "$runs"
