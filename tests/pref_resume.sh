# pref_resume.sh — sourced by dpo_cli.sh and kto_cli.sh (the preference trainers' --resume):
# resume_matches TRAINER KIND STEPS KILL_AT REF_LINE ARGS... runs `rlhf TRAINER ARGS --steps
# STEPS` twice with one thread (KIND full, or lora: a rank-4 adapter with dropout), kills the
# second with SIGKILL the moment its log reaches step KILL_AT, resumes it, and checks: the kill
# landed mid-way, the resumed run exits 0 printing REF_LINE (its reference cache line) and
# continuing from a checkpoint, and the loss and held-out margin at the last step, the final
# weights and training_state.bin are identical to the uninterrupted run's.
# Needs check(), refline(), $rlhf and $signal_at_step from the sourcing script; writes A-KIND*,
# B-KIND*, R-KIND.log in the current directory.
resume_field() { grep "\"event\":\"step\",\"step\":$2," "$1" | tail -1 | sed -n "s|.*\"$3\":\([^,}]*\).*|\1|p"; }
resume_matches() {
  local trainer=$1 kind=$2 steps=$3 kill_at=$4 ref_line=$5
  shift 5
  local extra=() files=(model.safetensors training_state.bin)
  [ "$kind" = lora ] && extra=(--lora-rank 4 --lora-alpha 8 --lora-dropout 0.1) && files=(adapter_model.safetensors training_state.bin)
  local one=(env OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$rlhf" "$trainer")
  local args=("$@" --steps "$steps" "${extra[@]}")
  "${one[@]}" "${args[@]}" --out "A-$kind" --json-log "A-$kind.jsonl" > "A-$kind.log" 2>&1
  local rc a b ea eb fl
  /usr/bin/python3 "$signal_at_step" --run "B-$kind.jsonl" "$kill_at" KILL "B-$kind.log" -- \
    "${one[@]}" "${args[@]}" --out "B-$kind" --json-log "B-$kind.jsonl"; rc=$?
  check "$kind: kill -9 stopped the run mid-way (exit $rc, last step $(grep -c '"event":"step"' "B-$kind.jsonl"))" \
    '[ $rc -eq 137 ] && ! grep -q "\"step\":$steps," "B-$kind.jsonl"'
  "${one[@]}" --out "B-$kind" --resume --json-log "B-$kind.jsonl" > "R-$kind.log" 2>&1; rc=$?
  check "$kind: --resume exits 0, continues from a checkpoint and reads the cached reference ($(refline "R-$kind.log"))" \
    '[ $rc -eq 0 ] && refline "R-$kind.log" | grep -qxF "$ref_line" && grep -q "steps [1-9][0-9]*-$steps of $steps" "R-$kind.log"' ||
    cat "R-$kind.log"
  a=$(resume_field "A-$kind.jsonl" "$steps" loss); b=$(resume_field "B-$kind.jsonl" "$steps" loss)
  ea=$(resume_field "A-$kind.jsonl" "$steps" eval_rewards/margins); eb=$(resume_field "B-$kind.jsonl" "$steps" eval_rewards/margins)
  check "$kind: the loss at step $steps is identical to the uninterrupted run's ($a vs $b; eval margin $ea vs $eb)" \
    '[ -n "$a" ] && [ "$a" = "$b" ] && [ -n "$ea" ] && [ "$ea" = "$eb" ]'
  for fl in "${files[@]}"; do
    check "$kind: final $fl identical byte for byte" 'cmp -s "A-$kind/$fl" "B-$kind/$fl"'
  done
}
