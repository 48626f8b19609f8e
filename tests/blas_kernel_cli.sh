#!/usr/bin/env bash
# blas_kernel_cli.sh — `rlhf version --verbose` reports the OpenBLAS kernel rlhf runs:
#   1. a user's OPENBLAS_CORETYPE is kept;
#   2. when OpenBLAS's own pick is weaker than the CPU allows (simulated through the test seam
#      RLHF_TEST_OPENBLAS_PICK=Prescott, since this machine's OpenBLAS may already pick well),
#      rlhf re-executes itself with the best kernel the CPU's flags allow — the expectation is
#      derived here independently, from /proc/cpuinfo's flags;
#   3. without the variable, the kernel that runs is at least as good as that expectation's tier.
set -u
rlhf=$1
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }

out=$(OPENBLAS_CORETYPE=Haswell "$rlhf" version --verbose)
check "user's OPENBLAS_CORETYPE=Haswell is kept" 'grep -q "^kernel: Haswell$" <<<"$out" && grep -q "set by the user" <<<"$out"'
out=$(OPENBLAS_CORETYPE=Prescott "$rlhf" version --verbose)
check "user's OPENBLAS_CORETYPE=Prescott is kept" 'grep -q "^kernel: Prescott$" <<<"$out"'

flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
has() { for f in "$@"; do [[ $flags == *" $f "* ]] || return 1; done; }
if has avx512f avx512bw avx512vl avx512dq avx512cd avx2 fma; then
  if has avx512_bf16; then want=Cooperlake; else want=SkylakeX; fi
elif has avx2 fma; then want=Haswell
else want=""
fi
echo "cpu flags say: ${want:-no kernel to force}"

out=$(env -u OPENBLAS_CORETYPE RLHF_TEST_OPENBLAS_PICK=Prescott "$rlhf" version --verbose)
echo "$out" | sed 's/^/  | /'
if [ -n "$want" ]; then
  check "a weak pick is replaced by $want" 'grep -q "^kernel: $want$" <<<"$out"'
  check "it says what OpenBLAS picked and why" 'grep -q "^OpenBLAS.s own pick: Prescott$" <<<"$out" && grep -q "^why: .*running $want" <<<"$out"'
else
  check "no better kernel on this CPU: Prescott kept" 'grep -q "^kernel: Prescott$" <<<"$out"'
fi

out=$(env -u OPENBLAS_CORETYPE "$rlhf" version --verbose)
kernel=$(sed -n 's/^kernel: //p' <<<"$out")
tier() { case $1 in Cooperlake|SapphireRapids) echo 4;; SkylakeX) echo 3;; Haswell|Zen) echo 2;; "") echo 0;; *) echo 1;; esac; }
check "started plainly, the kernel ($kernel) is at least the tier of $want" '[ "$(tier "$kernel")" -ge "$(tier "$want")" ]'
exit $fail
