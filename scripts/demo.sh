#!/usr/bin/env bash
# demo.sh — the main job for a new user. Until the REPL and the built-in default model land,
# this shows the closest real thing the build can do, and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "rlhf.c: the REPL and the default model are not built yet; here is what the engine offers:"
./build/repl/rlhf help
