#!/usr/bin/env bash
# checkpoint_kill.sh — a checkpoint survives SIGKILL at any moment of a save.
# Runs `rlhf pretrain --save-every 1` on a model big enough that saving takes a noticeable part of
# each step, kills it with SIGKILL at pseudo-random moments (seeded), and after every kill checks
# that whatever --out holds is a whole checkpoint: `rlhf model info` and `rlhf logits` load it
# (no truncated or half-renamed file is ever read) and `--resume` continues from it.
#   usage: checkpoint_kill.sh RLHF
set -u
RLHF=$1
DATA=${RLHF_SHARED_DATA:-$(dirname "$0")/../../shared/data}
corpus=$DATA/tinyshakespeare/input.txt
[ -f "$corpus" ] || { echo "missing $corpus (set RLHF_SHARED_DATA)"; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/rlhf-ckpt-kill-XXXXXX")
trap 'rm -rf "$work"' EXIT
fails=0 checks=0
check() { # check DESCRIPTION COMMAND...
    local what=$1; shift
    checks=$((checks + 1))
    if ! "$@" >"$work/check.out" 2>&1; then
        fails=$((fails + 1))
        echo "FAIL: $what"; sed 's/^/    /' "$work/check.out" | head -5
    fi
}

# ~2.4M parameters: a save writes ~10 MB (model.safetensors) plus ~29 MB (training_state.bin).
"$RLHF" model new --family llama --layers 2 --dim 192 --heads 4 --vocab 256 --context 64 --seed 1 \
    --out "$work/init" >/dev/null || { echo "model new failed"; exit 1; }
head -c 200000 "$corpus" > "$work/corpus.txt"
out=$work/run
RANDOM=7
kills=0 saved=0 mid_save=0
for i in $(seq 1 12); do
    if [ -f "$out/training_state.bin" ]; then
        args=(--out "$out" --resume --steps 100000)
    else
        args=(--model "$work/init" --data "$work/corpus.txt" --out "$out" --steps 100000 --batch 2 --context 32
              --save-every 1 --eval-every 0)
    fi
    "$RLHF" pretrain "${args[@]}" >"$work/log.$i" 2>&1 &
    pid=$!
    # a first kill lands early (perhaps before any save), later ones mid-run
    sleep "0.$((RANDOM % 9 + 1))$((RANDOM % 10))"
    [ "$i" -gt 1 ] && sleep 0.3
    kill -9 $pid 2>/dev/null && kills=$((kills + 1))
    wait $pid 2>/dev/null
    # a resumed run that refused its checkpoint says so on a line starting "rlhf:"
    [ "${args[1]}" = "$out" ] && check "run $i resumed from the checkpoint the previous kill left" \
        bash -c "! grep -a '^rlhf:' '$work/log.$i'"
    [ -n "${CKPT_DEBUG:-}" ] && ls -a "$out" && tail -c 300 "$work/log.$i"
    # a temporary file left behind means the kill landed in the middle of a save
    ls -a "$out" 2>/dev/null | grep -qv -e '^config.json$' -e '^model.safetensors$' -e '^tokenizer.json$' \
        -e '^training_state.bin$' -e '^\.\.\?$' && mid_save=$((mid_save + 1))
    if [ -f "$out/model.safetensors" ]; then
        saved=$((saved + 1))
        check "kill $i: the checkpoint in --out loads (model info)" "$RLHF" model info "$out"
        check "kill $i: its weights give logits" "$RLHF" logits --model "$out" --tokens "1 2 3" --json
    fi
done
check "the runs were really killed ($kills kills)" [ "$kills" -ge 10 ]
check "checkpoints were written between kills ($saved of 12)" [ "$saved" -ge 8 ]
check "some kills landed in the middle of a save ($mid_save of 12 left a temporary file)" [ "$mid_save" -ge 1 ]
# the last checkpoint resumes and completes
check "the last checkpoint resumes and finishes cleanly" \
    "$RLHF" pretrain --out "$out" --resume --steps "$(( $(grep -a -o '"step": *[0-9]*' -m1 "$out/training_state.bin" | grep -o '[0-9]*$') + 2 ))"
check "after a complete save no temporary file of a killed writer is left" \
    bash -c "! ls -a '$out' | grep '\.tmp\.'"
echo "checkpoint_kill: $checks checks, $fails failed ($kills kills, $mid_save mid-save, $saved checkpoints inspected)"
[ $fails -eq 0 ]
