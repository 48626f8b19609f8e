#!/usr/bin/env bash
# rlhf annotate --oracle on the default model (models/default):
#  - stored counts: N prompts, N rankings of K generations by annotator "oracle", pairs =
#    strict pairs of the rankings, every generation with its decoding settings and seed;
#  - noise 0: every stored pair agrees with the verifier's order (right before wrong, then fewer
#    flaws; answers equal in both tie: no pair), re-judged here with `rlhf world verify`;
#  - --noise 0.25: the share of rankings (with any strict pair) stored reversed is 0.25 within
#    3 binomial standard deviations, and so is the share of pairs against the verifier;
#  - Ctrl-C stops between prompts: exit 130, every stored ranking complete, db check clean;
#  - bad flags exit 2 and write nothing.
# Usage: annotate_cli.sh RLHF_EXE SOURCE_DIR
set -u
rlhf=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
src=$(cd "$2" && pwd)
d=$src/models/default
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rlhf-annotate-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

js=$("$rlhf" annotate --oracle --prompts 24 --candidates 4 --model "$d" --db "$tmp/a.db" --first 1000 --json 2>&1); rc=$?
check "annotate --oracle --prompts 24 --candidates 4 ($rc)" '[ $rc -eq 0 ]'
echo "$js" > "$tmp/a.json"
"$rlhf" annotate --oracle --prompts 240 --candidates 4 --noise 0.25 --model "$d" --db "$tmp/n.db" --first 1000 --seed 7 \
    --json > "$tmp/n.json" 2>&1 || { echo "FAIL: annotate --noise 0.25"; fail=1; }
eos=$(printf '<|end|>' | "$rlhf" tokenize --tokenizer "$d" --special --ids)
/usr/bin/python3 - "$rlhf" "$tmp" "$eos" <<'PY' || fail=1
import json, math, sqlite3, struct, subprocess, sys
rlhf, tmp, eos = sys.argv[1], sys.argv[2], int(sys.argv[3])
ok = True
def check(what, cond):
    global ok
    print(("ok: " if cond else "FAIL: ") + what)
    ok &= bool(cond)
verdicts = {}
def key(db, gid):
    """The oracle's key recomputed: (right, flaws); smaller is better, equal keys tie."""
    prompt, text, ids, dj = db.execute("select p.messages_json, g.text, g.token_ids, g.decoding_json from generations g "
                                       "join prompts p on p.id = g.prompt_id where g.id = ?", (gid,)).fetchone()
    user = json.loads(prompt)[0]["content"]
    if (user, text) not in verdicts:
        verdicts[(user, text)] = json.loads(subprocess.run([rlhf, "world", "verify", "--prompt", user, "--response", text,
                                            "--json"], check=True, stdout=subprocess.PIPE, text=True).stdout)
    v = verdicts[(user, text)]
    toks = struct.unpack(f"<{len(ids) // 4}i", ids)
    flaws = sum(f in v["flaws"].split(",") for f in ("rude", "rambling")) + (not toks or toks[-1] != eos)
    return (-int(v["correct"]), flaws)
def pairs(db):
    return db.execute("select chosen_id, rejected_id, ranking_id from pairs").fetchall()

a = json.load(open(f"{tmp}/a.json"))
db = sqlite3.connect(f"{tmp}/a.db")
n = lambda q: db.execute(q).fetchone()[0]
check(f"24 prompts, 24 rankings of 4, 96 generations ({n('select count(*) from prompts')}, "
      f"{n('select count(*) from rankings')}, {n('select count(*) from generations')})",
      n("select count(*) from prompts") == 24 and n("select count(*) from rankings where k = 4") == 24
      and n("select count(*) from generations") == 96 and a["rankings"] == 24)
check("annotator oracle with guideline oracle-v2",
      n("select count(*) from rankings r join annotators a on a.id = r.annotator_id where a.name = 'oracle'") == 24
      and n("select count(*) from guidelines where version = 'oracle-v2'") == 1)
strict = n("select count(*) from pairs")
check(f"pairs = the strict pairs of the rankings ({strict} + {a['tied_pairs']} tied = 24 x 6)",
      strict == a["pairs"] and strict + a["tied_pairs"] == 24 * 6)
dj = [json.loads(r[0]) for r in db.execute("select decoding_json from generations")]
check("every generation has its decoding settings, seed and model",
      all(d["strategy"] == "sample" and "seed" in d and d["temperature"] == 1 for d in dj)
      and n("select count(*) from generations where seed is null or model_id is null") == 0)
bad = [(c, r) for c, r, _ in pairs(db) if key(db, c) >= key(db, r)]
check(f"noise 0: all {strict} pairs agree with the verifier's order ({len(bad)} do not)", strict > 20 and not bad)
items = {}
for rid, gid in db.execute("select ranking_id, generation_id from ranking_items"):
    items.setdefault(rid, []).append(key(db, gid))
unequal = sum(ks[i] != ks[j] for ks in items.values() for i in range(len(ks)) for j in range(i))
check(f"noise 0: a pair for every two candidates whose keys differ ({unequal}), none for equal keys", unequal == strict)

db = sqlite3.connect(f"{tmp}/n.db")
by_ranking = {}
for c, r, rid in pairs(db):
    by_ranking.setdefault(rid, []).append(key(db, c) < key(db, r))
agree = [all(v) for v in by_ranking.values()]
against = [not any(v) for v in by_ranking.values()]
check("each ranking is either the verifier's order or its reverse", all(x or y for x, y in zip(agree, against)))
m, flipped = len(by_ranking), sum(against)
sd = math.sqrt(0.25 * 0.75 / m)
check(f"--noise 0.25: {flipped}/{m} rankings reversed = {flipped / m:.3f} (0.25 +- 3 sd = {3 * sd:.3f})",
      abs(flipped / m - 0.25) <= 3 * sd)
allp = [x for v in by_ranking.values() for x in v]
share = 1 - sum(allp) / len(allp)
check(f"--noise 0.25: {share:.3f} of {len(allp)} pairs against the verifier (0.25 +- {3 * sd:.3f})",
      abs(share - 0.25) <= 3 * sd)
check("--json counts the reversed rankings", json.load(open(f"{tmp}/n.json"))["reversed"] == flipped)
sys.exit(0 if ok else 1)
PY

# Ctrl-C: stops between prompts, everything stored is whole
"$rlhf" annotate --oracle --prompts 5000 --candidates 3 --model "$d" --db "$tmp/c.db" > /dev/null 2>"$tmp/c.err" &
pid=$!
for _ in $(seq 100); do
  [ -f "$tmp/c.db" ] && [ "$(sqlite3 "$tmp/c.db" 'select count(*) from rankings' 2>/dev/null || echo 0)" -ge 3 ] && break
  sleep 0.1
done
kill -INT $pid
wait $pid; rc=$?
r=$(sqlite3 "$tmp/c.db" 'select count(*) from rankings'); g=$(sqlite3 "$tmp/c.db" 'select count(*) from generations')
check "Ctrl-C: exit 130, says so ($rc)" '[ $rc -eq 130 ] && grep -q "stopped" "$tmp/c.err"'
check "Ctrl-C: $r rankings of 3, $g generations: none left unranked" '[ "$r" -ge 3 ] && [ "$g" -eq $((3 * r)) ]'
check "Ctrl-C: rlhf db check is clean" '"$rlhf" db check --db "$tmp/c.db" > /dev/null 2>&1'

for args in "--prompts 3" "--oracle --candidates 1" "--oracle --candidates 27" "--oracle --noise 1.5" \
            "--oracle --families add,nope" "--oracle --prompts 0" "--oracle --split dev" "--oracle --bogus 1"; do
  out=$("$rlhf" annotate $args --model "$d" --db "$tmp/bad.db" 2>&1); rc=$?
  check "annotate $args: exit 2, nothing written ($rc)" '[ $rc -eq 2 ] && [ ! -e "$tmp/bad.db" ] && [ -n "$out" ]'
done
exit $fail
