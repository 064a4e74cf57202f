#!/usr/bin/env bash
# ab_test_time.sh: wall time of the same test binaries from two builds, run
# alternately (A, B, A, B, ...) so that both see the same machine load.
#
#   tools/ab_test_time.sh BIN_A BIN_B ROUNDS LABEL...
#   tools/ab_test_time.sh /tmp/old/bazel-bin bazel-bin 2 \
#       common/rpc/rpc_test tests/restart_test
#
# BIN_A and BIN_B are bazel-bin directories (of two checkouts); each LABEL is
# a test's path under them (package/target). Each run gets a fresh
# TEST_TMPDIR and the target's runfiles, as under `bazel test`. Prints one
# line per run: label, side, round, exit code, seconds, load average.
set -uo pipefail
if (($# < 4)); then
  sed -n '2,13p' "$0" >&2; exit 2
fi
A="$1" B="$2" ROUNDS="$3"; shift 3
for t in "$@"; do
  for ((round = 1; round <= ROUNDS; round++)); do
    for side in A B; do
      d=${!side}
      tmp=$(mktemp -d)
      s=$(date +%s.%N)
      (cd "$tmp" && TEST_WORKSPACE=sphere TEST_TMPDIR="$tmp" \
        TEST_SRCDIR="$d/$t.runfiles" "$d/$t" >/dev/null 2>&1)
      rc=$?
      e=$(date +%s.%N)
      printf '%s %s round%d rc=%d %.1f s load=%s\n' "$t" "$side" "$round" "$rc" \
        "$(python3 -c "print($e - $s)")" "$(cut -d' ' -f1 /proc/loadavg)"
      rm -rf "$tmp"
    done
  done
done
