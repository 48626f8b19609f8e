#!/usr/bin/env bash
# cli_db.sh — transcript test of `rlhf db`: runs each line of cli_db.in in a fresh directory and
# compares what it prints (stdout and stderr, then "[exit N]" for a non-zero status) with
# cli_db.out. Lines starting with '#' are copied as they are. Timings are masked.
#   usage: cli_db.sh RLHF FB_SEED cli_db.in cli_db.out
# RLHF_UPDATE_TRANSCRIPT=1 rewrites cli_db.out from the current output instead of comparing.
set -u
. "$(dirname "$0")/transcript.sh"
RLHF_BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
FB_SEED=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
script=$(cd "$(dirname "$3")" && pwd)/$(basename "$3")
expected=$(cd "$(dirname "$4")" && pwd)/$(basename "$4")
work=$(mktemp -d "${TMPDIR:-/tmp}/rlhf-cli-db-XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/cwd" && cd "$work/cwd" || exit 1
unset RLHF_DB
rlhf() { "$RLHF_BIN" "$@"; }
fb_seed() { "$FB_SEED" "$@"; }
actual=$work/transcript.out
transcript_run "$script" "$actual"
sed -i -E 's/ in [0-9]+\.[0-9]+ s$/ in T s/' "$actual"
transcript_finish cli_db "$actual" "$expected"
