#!/bin/sh
# Fails when the dependency list in $1 (a genquery output) names any gRPC
# target: code that only reads or writes files must not link gRPC.
set -eu
deps="$1"
if [ ! -s "$deps" ]; then
  echo "empty dependency list $deps" >&2
  exit 1
fi
if grep -i 'grpc' "$deps"; then
  echo "FAIL: the targets above are gRPC dependencies of a file-only target" >&2
  exit 1
fi
echo "OK: $(wc -l < "$deps") dependencies, none of them gRPC"
