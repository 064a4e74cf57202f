#!/usr/bin/env bash
# The Contoso scenario on an embedded local cluster (run via ./sphere demo).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DIR="$ROOT/.state/demo"
SHARDS=3
while (($#)); do
  case "$1" in
    --state-dir) DIR="$2"; shift 2 ;;
    --state-dir=*) DIR="${1#*=}"; shift ;;
    --shards) SHARDS="$2"; shift 2 ;;
    *) echo "demo: unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
# A demo starts from nothing: wipe what an earlier demo left.
rm -rf "$DIR"/{pki,images,shards,management,twins,logs,run,cluster.json}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Building"
bazel build //:local_cluster //securitysvc:shard //securitysvc/management \
  //securitysvc:os_builder //securitysvc/factory //cli:spherectl //twin:twin
BIN="$ROOT/bazel-bin"
CTL=("$BIN/cli/spherectl" --cluster "$DIR/cluster.json")
TWIN=("$BIN/twin/twin" --cluster "$DIR/cluster.json")
# The manufacturing line is platform-side: only it holds the manufacturing CA.
FACTORY=("$BIN/securitysvc/factory/factory" --cluster "$DIR/cluster.json")

step "Starting a local cluster: management + $SHARDS shards"
CLUSTER_LOG="$DIR/local_cluster.out"
"$BIN/securitysvc/local_cluster" --state-dir "$DIR" --shards "$SHARDS" \
  >"$CLUSTER_LOG" 2>&1 &
CLUSTER_PID=$!
cleanup() {
  if kill -0 "$CLUSTER_PID" 2>/dev/null; then
    kill -TERM "$CLUSTER_PID"; wait "$CLUSTER_PID" || true
  fi
}
trap cleanup EXIT
for _ in $(seq 1 600); do
  if grep -q '^ready' "$CLUSTER_LOG"; then break; fi
  if ! kill -0 "$CLUSTER_PID" 2>/dev/null; then
    echo "demo: local cluster failed to start:" >&2; cat "$CLUSTER_LOG" >&2; exit 1
  fi
  sleep 0.1
done
grep '^ready' "$CLUSTER_LOG" || { echo "demo: cluster not ready" >&2; exit 1; }

step "Platform operator creates tenant Contoso and issues its operator credential"
"${CTL[@]}" tenant create --name Contoso
"${CTL[@]}" tenant credential --name Contoso --operator contoso-admin
# From here on, --tenant Contoso authenticates as Contoso's own operator
# (DIR/pki/tenants/Contoso.pem, recorded in cluster.json), not the platform.
"${CTL[@]}" --tenant Contoso tenant list
step "Contoso creates product DW100 (five default device groups)"
"${CTL[@]}" --tenant Contoso product create --name DW100 --description "DW100 dishwasher"
"${CTL[@]}" --tenant Contoso device-group list --product DW100

step "Factory manufactures two DW100 twins (keys recorded in the factory registry)"
IDS=()
for n in dw100-0001 dw100-0002; do
  out=$("${FACTORY[@]}" --name "$n")
  echo "$out"
  IDS+=("$(echo "$out" | awk '{print $4}')")
done

step "Contoso claims the devices and assigns them to DW100's Production group"
GROUP=$("${CTL[@]}" --tenant Contoso --output json device-group list --product DW100 |
  python3 -c 'import json,sys; print([g["id"] for g in json.load(sys.stdin) if g["name"]=="Production"][0])')
for id in "${IDS[@]}"; do
  "${CTL[@]}" --tenant Contoso device claim --device "$id" >/dev/null
  "${CTL[@]}" --tenant Contoso device update --device "$id" --device-group "$GROUP" >/dev/null
done
"${CTL[@]}" --tenant Contoso device list

step "Twins boot, attest and receive device certificates"
# Attest against a catalog that includes the claims and group assignments.
REV=$("${CTL[@]}" --output json cluster status |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["catalog_revision"])')
for n in dw100-0001 dw100-0002; do
  "${TWIN[@]}" --name "$n" --min_catalog_revision "$REV" \
    --chain_out "$DIR/$n-chain.pem" attest
done

step "Anyone can check the chain: device -> Contoso CA -> platform root"
for n in dw100-0001 dw100-0002; do
  chain="$DIR/$n-chain.pem"
  openssl verify -CAfile "$DIR/pki/root.pem" -untrusted "$chain" "$chain"
  openssl x509 -in "$chain" -noout -subject -issuer
done

step "Platform builds OS 2 and releases it to the RetailEval feed only"
"$BIN/securitysvc/os_builder" --state-dir "$DIR" --version 2
"${CTL[@]}" os release --feed RetailEval --version 2 --images-dir "$DIR/images/os-2"

step "A third twin joins DW100's Production OS Evaluation group (RetailEval feed)"
out=$("${FACTORY[@]}" --name dw100-0003)
echo "$out"
EVAL_ID=$(echo "$out" | awk '{print $4}')
"${CTL[@]}" --tenant Contoso device claim --device "$EVAL_ID" >/dev/null
"${CTL[@]}" --tenant Contoso device update --device "$EVAL_ID" \
  --device-group "DW100/Production OS Evaluation"
IDS+=("$EVAL_ID")

step "The RetailEval twin runs OS 1: genuine but outdated, it gets an update-only certificate"
# Attest against a catalog that includes the release and the assignment.
REV=$("${CTL[@]}" --output json cluster status |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["catalog_revision"])')
out=$("${TWIN[@]}" --name dw100-0003 --min_catalog_revision "$REV" attest)
echo "$out"
grep -q 'outcome UPDATE_REQUIRED' <<<"$out" && grep -q 'scope=update-only' <<<"$out" ||
  { echo "demo: expected an update-only certificate for dw100-0003" >&2; exit 1; }

step "Production twins (Retail feed) stay UP_TO_DATE with full certificates"
for n in dw100-0001 dw100-0002; do
  out=$("${TWIN[@]}" --name "$n" --min_catalog_revision "$REV" attest)
  grep -E 'outcome|claims' <<<"$out"
  grep -q 'outcome UP_TO_DATE' <<<"$out" && grep -q 'scope=full' <<<"$out" ||
    { echo "demo: expected $n to stay UP_TO_DATE" >&2; exit 1; }
done

step "Cluster status (shards report their attested devices in their heartbeat)"
for _ in $(seq 1 50); do
  n=$("${CTL[@]}" --output json cluster status |
    python3 -c 'import json,sys; print(sum(s["device_count"] for s in json.load(sys.stdin)["shards"]))')
  [ "$n" -ge "${#IDS[@]}" ] && break
  sleep 0.1
done
"${CTL[@]}" cluster status

step "Demo complete (state in $DIR)"
