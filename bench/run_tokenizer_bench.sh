#!/usr/bin/env bash
# Builds and runs bench_tokenizer against tiktoken, installing the npm package tiktoken into the
# build directory (never into the source tree) the first time.
#   bash bench/run_tokenizer_bench.sh [BUILD_DIR [RUNS]]
set -eu
build=${1:-build}
shift || true
here=$(cd "$(dirname "$0")" && pwd)
node_dir="$build/tiktoken-node"
if [ ! -d "$node_dir/node_modules/tiktoken" ]; then
  mkdir -p "$node_dir"
  (cd "$node_dir" && npm init -y >/dev/null && npm install --no-audit --no-fund tiktoken >/dev/null)
fi
ninja -C "$build" bench/bench_tokenizer >/dev/null
NODE_PATH="$(cd "$node_dir" && pwd)/node_modules" "$build/bench/bench_tokenizer" "$@"
