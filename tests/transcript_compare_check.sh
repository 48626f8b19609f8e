#!/usr/bin/env bash
# transcript_compare_check.sh — the transcript comparator accepts what another CPU changes and
# rejects what a real change changes: floats moved by 3e-6 relative (the AVX2 vs AVX-512 drift
# seen on generation log-probabilities) match; a float moved by 1% or more, an integer (a token
# id), a word or a missing line do not.
set -u
cmp_py=$(dirname "$0")/transcript_compare.py
work=$(mktemp -d "${TMPDIR:-/tmp}/rlhf-tc-XXXXXX"); trap 'rm -rf "$work"' EXIT
cat > "$work/exp" <<'T'
{"ids":[306,330,343],"logprob":-24.477069601416588,"token_logprobs":[-1.9460327625274658,-0.5]}
-- 20 tok · max_tokens · logprob -21.43 (mean -1.071) · T tok/s
Krippendorff's alpha (nominal): 0.409 over 12 items
T
fail=0
check() { # name expect(0|1) file
    /usr/bin/python3 "$cmp_py" "$work/exp" "$3" > /dev/null; rc=$?
    if [ "$rc" -ne "$2" ]; then echo "FAIL: $1 (comparator exit $rc, wanted $2)"; fail=1; else echo "ok: $1"; fi
}
sed -e 's/-24.477069601416588/-24.477143033/; s/-1.9460327625274658/-1.94604/; s/-21.43/-21.44/; s/-1.071/-1.072/' "$work/exp" > "$work/drift"
check "floats within tolerance match" 0 "$work/drift"
sed 's/-24.477069601416588/-24.73/' "$work/exp" > "$work/a"; check "a float 1% off differs" 1 "$work/a"
sed 's/-21.43/-21.45/' "$work/exp" > "$work/b"; check "two printed units off differs" 1 "$work/b"
sed 's/330/331/' "$work/exp" > "$work/c"; check "a token id differs" 1 "$work/c"
sed 's/max_tokens/stop/' "$work/exp" > "$work/d"; check "a finish reason differs" 1 "$work/d"
head -2 "$work/exp" > "$work/e"; check "a missing line differs" 1 "$work/e"
exit $fail
