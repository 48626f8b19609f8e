#!/usr/bin/env bash
# make_seeds.sh [BUILD_DIR] — builds the seed corpora of the harnesses into BUILD_DIR/seeds/NAME
# (default build-fuzz) from the reference fixtures in ../shared/data (RLHF_SHARED_DATA), cut
# down to a few KB each so a mutation runs fast, and from small files made here (safetensors,
# GGUF, llama2.c, quant blocks). Nothing from ../shared/data is committed; hand-made seeds live
# in fuzz/seeds/NAME. Safe to run again (the seeds are rebuilt).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-fuzz}
data=${RLHF_SHARED_DATA:-../shared/data}
[ -d "$data" ] || { echo "make_seeds.sh: no shared data at $data" >&2; exit 1; }
rm -rf "$build/seeds"
mkdir -p "$build/seeds"
exec /usr/bin/python3 fuzz/make_seeds.py "$data" "$build/seeds"
