#!/usr/bin/env bash
# sgemm under every OpenBLAS kernel this CPU can run: bench_sgemm once per kernel with
# OPENBLAS_CORETYPE set (OpenBLAS reads it only when it loads), then a table of GFLOP/s per
# shape and kernel, OpenBLAS's own pick for this CPU, rlhf's pick, and the fastest kernel.
# The last line is machine-readable: "best KERNEL GFLOPS" (2048^3).
# Usage: bench/run_sgemm_bench.sh [BUILD_DIR]   (env: THREADS=2 REPS=3 MAX_LOAD=0.5 KERNELS="...")
set -eu
build=${1:-build}
threads=${THREADS:-2}
reps=${REPS:-3}
max_load=${MAX_LOAD:-0.5}
kernels=${KERNELS:-"Prescott Sandybridge Haswell Zen SkylakeX Cooperlake"}
exe="$build/bench/bench_sgemm"
[ -x "$exe" ] || { echo "no $exe: build first (meson setup $build --buildtype=release && ninja -C $build)"; exit 1; }
. "$(dirname "$0")/wait_quiet.sh"

own=$(env -u OPENBLAS_CORETYPE "$exe" --reps 0 2>/dev/null | awk '$1 == "kernel" { print $2; exit }' || true)
picked=$(env -u OPENBLAS_CORETYPE -u RLHF_OPENBLAS_OWN_PICK "$build/repl/rlhf" version --verbose 2>/dev/null | grep -i 'kernel' | head -3 || true)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for k in $kernels; do
  if ! "$exe" --supported "$k"; then echo "$k: not supported by this CPU's features, skipped"; continue; fi
  OPENBLAS_CORETYPE=$k OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads "$exe" --reps "$reps" |
    awk -v want="$k" '$1 == "kernel" { got = $2; if (tolower(got) != tolower(want)) print "note: asked " want ", OpenBLAS runs " got > "/dev/stderr" }
                      $1 == "sgemm" { print want, $2 "x" $3 "x" $4, $5 }' >> "$out"
done
echo "OpenBLAS's own pick on this CPU (OPENBLAS_CORETYPE unset): ${own:-?}"
[ -n "$picked" ] && echo "rlhf version --verbose (OPENBLAS_CORETYPE unset):" && echo "$picked" | sed 's/^/  /'
awk '{ g[$1 " " $2] = $3; if (!($1 in seenk)) { seenk[$1] = 1; ks[nk++] = $1 } if (!($2 in seens)) { seens[$2] = 1; ss[ns++] = $2 } }
     END {
       printf "%-16s", "GFLOP/s"; for (i = 0; i < nk; i++) printf " %11s", ks[i]; printf "\n"
       for (j = 0; j < ns; j++) { printf "%-16s", ss[j]; for (i = 0; i < nk; i++) printf " %11.1f", g[ks[i] " " ss[j]]; printf "\n" }
       best = ""; bg = 0
       for (i = 0; i < nk; i++) if (g[ks[i] " 2048x2048x2048"] > bg) { bg = g[ks[i] " 2048x2048x2048"]; best = ks[i] }
       printf "best %s %.1f\n", best, bg
     }' "$out"
