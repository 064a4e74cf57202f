#!/usr/bin/env bash
# run_corpus.sh FUZZER CORPUS_DIR MAX_LEN: replays every input of CORPUS_DIR
# through FUZZER once (libFuzzer: -runs=0; standalone build: the same flags are
# ignored). Fails when the corpus is empty or any input crashes, leaks or trips
# a sanitizer.
set -euo pipefail
fuzzer="$1"
corpus="$2"
max_len="$3"
n=$(find -L "$corpus" -maxdepth 1 -type f 2>/dev/null | wc -l)
if ((n == 0)); then
  echo "run_corpus: no inputs in $corpus" >&2
  exit 1
fi
echo "run_corpus: replaying $n inputs from $corpus"
exec "$fuzzer" -runs=0 -max_len="$max_len" "$corpus"
