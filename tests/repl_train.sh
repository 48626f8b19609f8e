#!/usr/bin/env bash
# The REPL's /train and /run show on a scripted session: the stored feedback (pairs and
# demonstrations imported into the database) trains through the same `rlhf` subcommands a user
# types, the result is loaded back into the session, the runs are listed and charted, and
# a trainer missing what it needs says so; /train kto trains on ratings made in the session.
# Usage: repl_train.sh RLHF_EXE
set -u
rlhf=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
export OMP_NUM_THREADS=2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rlhf-repl-train-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
cd "$tmp" || exit 1
/usr/bin/python3 - <<'PY'
import json, random
r = random.Random(2)
with open("pairs.jsonl", "w") as f, open("sft.jsonl", "w") as g:
    for i in range(40):
        p = "Q: " + " ".join(r.choice("abcdef") * r.randint(1, 3) for _ in range(3)) + "\nA:"
        f.write(json.dumps({"prompt": p, "chosen": " good .", "rejected": " bad ."}) + "\n")
        g.write(json.dumps({"prompt": p, "completion": " good ."}) + "\n")
open("corpus.txt", "w").write(open("pairs.jsonl").read() * 2)
PY
"$rlhf" tokenizer train --vocab-size 300 --special "<|endoftext|>" corpus.txt --out tok.json >/dev/null 2>&1
"$rlhf" model new --family llama --layers 2 --dim 32 --heads 4 --kv-heads 2 --vocab 300 --context 64 --seed 1 \
  --out llama >/dev/null && cp tok.json llama/tokenizer.json
"$rlhf" db import --format trl --db fb.db pairs.jsonl >/dev/null && "$rlhf" db import --format sft --db fb.db sft.jsonl >/dev/null
check "feedback imported" '[ -f fb.db ]'
cat > session.txt <<'S'
/train dpo --steps 4 --lr 1e-3 --batch 4 --out dpo-out --eval-every 2
/model info
/train sft --steps 3 --lr 1e-3 --batch 4 --out sft-out
/runs
/run show 1
/train ppo
/train reward --steps 4 --lr 1e-3 --batch 4 --out rm-out
/train ppo --steps 2 --batch 4 --max-new-tokens 6 --out ppo-out
/train nonsense
S
"$rlhf" chat --model llama --db fb.db --script session.txt > out.txt 2>&1; rc=$?
check "the script ran (exit $rc: a failing line does not stop it without --bail)" '[ -f out.txt ]'
check "/train dpo ran rlhf dpo and loaded its model" 'grep -q "running: rlhf dpo --model llama --db fb.db .*--out dpo-out" out.txt && grep -q "loaded the trained model from dpo-out" out.txt && [ -f dpo-out/model.safetensors ]'
check "/model info shows the DPO model" 'grep -q "^path: dpo-out" out.txt'
check "/train sft trained from the loaded DPO model" 'grep -q "running: rlhf sft --model dpo-out --db fb.db .*--out sft-out" out.txt && [ -f sft-out/model.safetensors ]'
check "/runs lists both runs" 'grep -E -q "#1 +dpo +done" out.txt && grep -E -q "#2 +sft +done" out.txt'
check "/run show 1 charts the DPO run" 'grep -q "rewards/accuracies" out.txt'
check "/train ppo without a reward model says what it needs" 'grep -q "/train ppo: needs a reward: --reward RM_DIR, /train reward first" out.txt'
check "/train reward remembers its model for ppo" 'grep -q "reward model saved to rm-out; /train ppo|grpo|rloo use it" out.txt && [ -f rm-out/model.safetensors ]'
check "/train ppo trains on the session's stored prompts with that reward model and loads the policy" \
  'grep -q "running: rlhf ppo --model sft-out --db fb.db --reward rm-out .*--out ppo-out" out.txt && grep -q "loaded the trained model from ppo-out" out.txt && [ -f ppo-out/model.safetensors ]'
check "its rollouts are stored in the session database" '[ "$(sqlite3 fb.db "SELECT count(*) FROM generations WHERE json_extract(decoding_json, '"'"'\$.rollout.reward'"'"') IS NOT NULL" 2>/dev/null || /usr/bin/python3 -c "import sqlite3;print(sqlite3.connect('"'"'fb.db'"'"').execute('"'"'SELECT count(*) FROM generations WHERE json_extract(decoding_json, \"\$.rollout.reward\") IS NOT NULL'"'"').fetchone()[0])")" -gt 0 ]'
check "/train nonsense gets the usage" 'grep -q "usage: /train" out.txt'
[ $fail -eq 0 ] || cat out.txt

# /train kto on ratings made in the session: 5 and 4 desirable, 1 and a flag undesirable, 3 left out
cat > rate.txt <<'S'
Q: aa bb
/candidates 3
/rate A 5
/rate B 1
/rate C 3
/candidates 2
/rate A 4
/flag B unsafe
/train kto --steps 2 --batch 2 --out kto-out --eval-every 1
S
"$rlhf" chat --model llama --db rated.db --script rate.txt > kto.txt 2>&1
check "/train kto ran rlhf kto on the session's ratings (4 of 5: the 3 is neither)" \
  'grep -q "running: rlhf kto --model llama --db rated.db .*--out kto-out" kto.txt && grep -q "on 4 examples (2 desirable, 2 undesirable" kto.txt'
check "/train kto loaded its model" 'grep -q "loaded the trained model from kto-out" kto.txt && [ -f kto-out/model.safetensors ]' || cat kto.txt
exit $fail
