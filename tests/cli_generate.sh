#!/usr/bin/env bash
# cli_generate.sh — transcript test of `rlhf generate`: runs each line of cli_generate.in in a
# fresh directory and compares what it prints (stdout and stderr, then "[exit N]" for a non-zero
# status) with cli_generate.out. Lines starting with '#' are copied as they are. Timings and
# speeds are masked. $DATA is the shared data directory, $S the stories260K model.
#   usage: cli_generate.sh RLHF cli_generate.in cli_generate.out
# RLHF_UPDATE_TRANSCRIPT=1 rewrites cli_generate.out from the current output instead of comparing.
set -u
. "$(dirname "$0")/transcript.sh"
RLHF_BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
script=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
expected=$(cd "$(dirname "$3")" && pwd)/$(basename "$3")
DATA=${RLHF_SHARED_DATA:-$(dirname "$script")/../../shared/data}
DATA=$(cd "$DATA" && pwd) || { echo "missing shared data directory $DATA"; exit 1; }
S=$DATA/stories260K/stories260K.bin
export DATA S COLUMNS=100
work=$(mktemp -d "${TMPDIR:-/tmp}/rlhf-cli-gen-XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/cwd" && cd "$work/cwd" || exit 1
rlhf() { "$RLHF_BIN" "$@"; }
actual=$work/transcript.out
transcript_run "$script" "$actual"
sed -i -E -e 's/ · [0-9.]+ tok\/s$/ · T tok\/s/' \
    -e 's/"timing":\{[^}]*\}/"timing":{T}/g' \
    -e 's/^-- ([0-9]+) tokens in [0-9]+ ms \([0-9.]+ tok\/s\), prompt ([0-9]+) tokens in [0-9]+ ms$/-- \1 tokens in T ms (T tok\/s), prompt \2 tokens in T ms/' \
    -e "s#$DATA#\$DATA#g" "$actual"
transcript_finish cli_generate "$actual" "$expected"
