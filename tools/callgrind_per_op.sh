#!/bin/bash
# callgrind_per_op.sh BINARY BENCH_FILTER TOGGLE_FUNCTION
#
# Instructions (Ir) per call of TOGGLE_FUNCTION while running a Google
# Benchmark binary, counted by callgrind (repeatable on a noisy machine).
# Runs the filter once with 1 repetition and once with 21, each repetition at
# --benchmark_min_time=1e-6 (one iteration under valgrind), and prints
# (Ir_21 - Ir_1) / (iterations_21 - iterations_1): one-off setup (static
# fixtures, lazy library init) cancels out. Only code inside TOGGLE_FUNCTION
# (callgrind --toggle-collect pattern; * and ? are wildcards, so write
# "Sign?abi:cxx11?(*" for "Sign[abi:cxx11](...)") is counted.
#
#   tools/callgrind_per_op.sh bazel-bin/securitysvc/attestation_benchmark \
#     BM_AttestOnly 'sphere::attestation::Attestor::Attest(*'
set -euo pipefail
bin=$1 filter=$2 toggle=$3
tmp=$(mktemp -d)
run() {
  valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$1" \
    "--toggle-collect=$toggle" "$bin" --benchmark_filter="$filter" \
    --benchmark_min_time=0.000001 --benchmark_repetitions="$1" \
    --benchmark_report_aggregates_only=false >"$tmp/log.$1" 2>&1
  local ir iters
  ir=$(grep Collected "$tmp/log.$1" | awk '{print $4}')
  iters=$(grep -E '^BM_' "$tmp/log.$1" |
    grep -v -E '_(mean|median|stddev|cv) ' |
    awk '{s += $6} END {print s}')
  echo "$ir $iters"
}
read -r i1 n1 < <(run 1)
read -r i2 n2 < <(run 21)
echo "$filter [$toggle]: $(( (i2 - i1) / (n2 - n1) )) Ir/op" \
  "(1 rep: $i1 Ir/$n1 it; 21 reps: $i2 Ir/$n2 it)"
rm -rf "$tmp"
