#!/usr/bin/env bash
# Runs check_manifests.py on the manifests with the built binaries.
set -euo pipefail
exec python3 deploy/check_manifests.py deploy \
  securitysvc/management/management securitysvc/shard
