#!/usr/bin/env bash
# The seed's story (issue 13) on real processes (run via ./sphere demo):
# a local cluster with the Contoso cloud (appsvc) and four DW100 dishwasher
# twins, then, step by step: updates, a failing heater (anomaly ->
# diagnostics -> customer notified -> warranty part reserved), low rinse
# agent (reorder offer), a tampered dishwasher (fails attestation, revoked
# automatically by the platform, then refused by the Contoso cloud), error
# reports. Steps whose platform
# parts are not in this build say so; nothing is faked.
#
#   tools/demo.sh [--state-dir DIR] [--shards N] [--no-build] [--bin DIR]
#                 [--time-scale X]
#
# --no-build uses binaries already built; --bin DIR is where they are
# (default bazel-bin; tests pass their runfiles). --time-scale: device time
# per real time of the dishwashers (default 4000: a wash cycle every ~7 s). Exits 0 when every
# available step happened, 1 otherwise.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DIR="$ROOT/.state/demo"
SHARDS=2
BUILD=1
BIN="$ROOT/bazel-bin"
TIME_SCALE=4000
while (($#)); do
  case "$1" in
    --state-dir) DIR="$2"; shift 2 ;;
    --state-dir=*) DIR="${1#*=}"; shift ;;
    --shards) SHARDS="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --bin) BIN="$2"; shift 2 ;;
    --time-scale) TIME_SCALE="$2"; shift 2 ;;
    *) echo "demo: unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
# A demo starts from nothing: wipe what an earlier demo left.
rm -rf "$DIR"/{pki,images,shards,management,twins,logs,run,appsvc,cluster.json}

bold() { printf '\033[1m%s\033[0m\n' "$*"; }
step() { printf '\n'; bold "== $*"; }
say() { printf '   %s\n' "$*"; }
SUMMARY=()
done_() { SUMMARY+=("  [done]          $*"); }
na() { SUMMARY+=("  [not available] $*"); }
FAILED=0
failed() { SUMMARY+=("  [FAILED]        $*"); FAILED=1; }

if ((BUILD)); then
  step "Building"
  bazel build //:local_cluster //appsvc //cli:spherectl //twin:twin //securitysvc:os_builder
fi
CTL=("$BIN/cli/spherectl" --cluster "$DIR/cluster.json")
TWIN=("$BIN/twin/twin" --cluster "$DIR/cluster.json")
JSON() {  # JSON EXPR: a Python expression over cluster.json as d
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' \
    "$DIR/cluster.json" "$1"
}

step "Starting the local cluster: management, $SHARDS Security Service shards, the Contoso cloud and four DW100 dishwashers"
say "Each dishwasher is its own process: an MCU model with Pluton, the DW100 app and its"
say "real-time sensor app, a wash-cycle physics model (time runs ${TIME_SCALE}x: a cycle every ~$((28800 / TIME_SCALE)) s)."
CLUSTER_LOG="$DIR/local_cluster.out"
"$BIN/securitysvc/local_cluster" --state-dir "$DIR" --shards "$SHARDS" \
  --twins 4 --twin_time_scale "$TIME_SCALE" >"$CLUSTER_LOG" 2>&1 &
CLUSTER_PID=$!
cleanup() {
  rm -f "${JAR:-}"
  if kill -0 "$CLUSTER_PID" 2>/dev/null; then
    kill -TERM "$CLUSTER_PID"; wait "$CLUSTER_PID" || true
  fi
}
trap cleanup EXIT
for _ in $(seq 1 1200); do
  if grep -q '^ready' "$CLUSTER_LOG"; then break; fi
  if ! kill -0 "$CLUSTER_PID" 2>/dev/null; then
    echo "demo: local cluster failed to start:" >&2; cat "$CLUSTER_LOG" >&2; exit 1
  fi
  sleep 0.1
done
grep -q '^ready' "$CLUSTER_LOG" || { echo "demo: cluster not ready" >&2; exit 1; }
WEB=$(JSON 'd.get("appsvc_web","")')
if [[ -z "$WEB" ]]; then
  echo "demo: the Contoso cloud did not start (see $DIR/logs)" >&2; exit 1
fi
say "management      $(JSON 'd["management"]')"
say "shards          $(JSON '" ".join(s["address"] for s in d["shards"])')"
say "Contoso cloud   $(JSON 'd["appsvc"]') (gRPC), $WEB (web pages)"
say "dishwashers     $(JSON '" ".join(f"{k}={v}" for k,v in sorted(d["twins"].items()))') (TwinControl)"
say "everything is in $DIR/cluster.json; logs in $DIR/logs/"
done_ "cluster with the Contoso cloud and 4 dishwasher twins"

# The demo reads the Contoso cloud's view as support staff do: logged in
# (login form token in a cookie + the page, then the session cookie).
ACCOUNTS="$DIR/appsvc/web-accounts.txt"
JAR="$DIR/run/web-cookies.txt"
support_login() {
  local pw form
  pw=$(awk '$1 == "support" {print $2}' "$ACCOUNTS" 2>/dev/null || true)
  form=$(curl -sk --max-time 10 -c "$JAR" "${WEB}login" |
    grep -o 'login-csrf" content="[0-9a-f]*' | grep -o '[0-9a-f]\{64\}' || true)
  curl -sk --max-time 10 -b "$JAR" -c "$JAR" -o /dev/null -H 'Content-Type: application/json' \
    -d "{\"user\": \"support\", \"password\": \"$pw\", \"csrf\": \"$form\"}" "${WEB}login" || true
}
support_login
ID() { "${TWIN[@]}" --name "$1" status | awk 'NR==1 {print $3}'; }
ID1=$(ID dw100-1); ID2=$(ID dw100-2); ID3=$(ID dw100-3)

step "What Contoso has set up: tenant, product DW100, device groups, app v1 deployed, four devices"
"${CTL[@]}" --tenant Contoso device-group list --product DW100
"${CTL[@]}" --tenant Contoso deployment list
"${CTL[@]}" --tenant Contoso device list --product DW100

step "Every dishwasher booted securely, attested, and runs app v1 with a certificate from Sphere"
for n in dw100-1 dw100-2 dw100-3 dw100-4; do "${TWIN[@]}" --name "$n" status; done
say "Anyone can check a chain (device -> Contoso CA -> platform root):"
for n in dw100-1 dw100-2 dw100-3 dw100-4; do
  chain="$DIR/twins/$n/device_chain.pem"
  printf '   %s: ' "$n"; openssl verify -CAfile "$DIR/pki/root.pem" -untrusted "$chain" "$chain"
done
done_ "attestation: 4 genuine dishwashers, chains verified with openssl"

step "The platform releases an OS update; Contoso deploys DW100 app v2 (Field Test first, then Production)"
# update_twin NAME: one update check through the running twin's TwinControl.
update_twin() {
  local out
  if out=$("${TWIN[@]}" --name "$1" check-updates 2>&1); then
    grep -E 'running:|attestation:' <<<"$out" | sed "s/^/   $1 /"
    grep -q 'app:dw100=v2' <<<"$out" && grep -q 'kernel=v2' <<<"$out"
  else
    echo "   $1: $out"; return 1
  fi
}
if { "${TWIN[@]}" --help 2>&1 || true; } | grep -q 'check-updates' &&
    [[ -x "$BIN/securitysvc/os_builder" ]]; then
  say "The platform builds OS 2 and releases it on the Retail feed:"
  "$BIN/securitysvc/os_builder" --state-dir "$DIR" --version 2 | tail -n 1
  "${CTL[@]}" os release --feed Retail --version 2 --images-dir "$DIR/images/os-2" | tail -n 1
  say "Contoso uploads its build of app v2 (the platform re-signs it) and deploys it to Field Test:"
  V2=()
  for f in "$DIR"/contoso/build/app-v2/*.pkg; do
    V2+=(--image "$("${CTL[@]}" --tenant Contoso --output json image upload --file "$f" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')")
  done
  "${CTL[@]}" --tenant Contoso deployment create --device-group "DW100/Field Test" "${V2[@]}" >/dev/null
  UPDATED=1
  say "dw100-1 (Field Test) checks for updates: verifies the signed metadata, downloads, installs"
  say "to the inactive slot, reboots, attests again:"
  update_twin dw100-1 || UPDATED=0
  say "Field Test looks good: Contoso deploys app v2 to Production."
  "${CTL[@]}" --tenant Contoso deployment create --device-group "DW100/Production" "${V2[@]}" >/dev/null
  for n in dw100-2 dw100-3 dw100-4; do update_twin "$n" || UPDATED=0; done
  if ((UPDATED)); then
    done_ "OS 2 and app v2 installed: Field Test first, then Production"
  else
    failed "updates: not every dishwasher installed OS 2 and app v2 (see $DIR/logs)"
  fi
else
  say "NOT AVAILABLE YET in this build: the update service and the dishwashers' update"
  say "agent (issue 11) are not built here, so no image can be downloaded and installed."
  na "OS update + app v2 rollout (update service not in this build)"
fi

step "dw100-1's drying heater starts failing"
"${TWIN[@]}" --name dw100-1 fault DRYING_HEATER_DRIFT | head -1
step "...and meanwhile dw100-2 runs low on rinse agent"
"${TWIN[@]}" --name dw100-2 fault RINSE_AGENT_LOW | head -1
say "The Contoso cloud summarises every wash cycle: the mean drying temperature of a"
say "healthy DW100 is 65 C. Three abnormal cycles in a row raise an anomaly (one noisy"
say "cycle does not). Waiting for dw100-1's next cycles..."

# wait_log FILE PATTERN SECONDS: until a line of FILE matches PATTERN.
wait_log() {
  local deadline=$((SECONDS + $3))
  while ((SECONDS < deadline)); do
    if grep -q -- "$2" "$1" 2>/dev/null; then return 0; fi
    sleep 0.1  # poll of a child process's log, with a deadline
  done
  return 1
}
insight() {  # insight ID FIELD...: print the cloud's view of a device
  curl -sk --max-time 10 -b "$JAR" "${WEB}api/devices/$1" | python3 -c '
import json, sys
d = json.load(sys.stdin)
ins = d.get("insights", {})
means = ", ".join("%.1f" % m for m in d.get("cycle_drying_means", [])[-6:])
fields = sys.argv[1:]
if "means" in fields: print("   drying means of the last cycles: %s C" % means)
for f in fields:
    if f == "means": continue
    for v in ins.get(f, []): print("   %-15s %s" % (f.replace("_", " ") + ":", v))
' "${@:2}"
}

step "Anomaly -> remote diagnostics -> customer notified -> warranty part reserved"
if wait_log "$DIR/logs/dw100-1.log" '"healthy":"false"' 120; then
  say "The cloud sent dw100-1 a RUN_DIAGNOSTICS command; the DW100 ran its heater self-test:"
  insight "$ID1" means anomalies diagnostics notifications reservations
  done_ "heater failure: anomaly, diagnostics, customer notified, part reserved at the local shop"
else
  failed "heater failure: no diagnostics within 120 s (see $DIR/logs/dw100-1.log)"
fi

step "Low rinse agent -> the owner gets a one-click reorder offer"
if wait_log "$DIR/logs/dw100-2.log" 'reorder-offered' 60; then
  insight "$ID2" reorder_offers notifications
  done_ "rinse agent low: reorder offered to the owner"
else
  failed "rinse agent: no reorder offer within 60 s (see $DIR/logs/dw100-2.log)"
fi

step "Someone opens dw100-3 and tampers with it"
"${TWIN[@]}" --name dw100-3 fault TAMPER | sed -n '1p;3,4p'
say "Pluton latched the tamper and reports it in the quote it signs: Sphere refuses"
say "dw100-3's attestation and revokes the device by itself. Nobody at Contoso acts."
if wait_log "$DIR/logs/dw100-3.log" 'contoso cloud call failed.*revoked' 60; then
  "${CTL[@]}" --tenant Contoso --output json device show --device "$ID3" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print("   catalog:", d.get("state"), "-", d.get("revocation_reason", ""))' || true
  say "The Contoso cloud (following Sphere's catalog Watch) now refuses dw100-3:"
  grep -h 'contoso cloud call failed.*revoked' "$DIR/logs/dw100-3.log" | head -1 |
    python3 -c 'import json,sys; print("   refused:", json.loads(sys.stdin.readline())["error"])'
  done_ "tampered dishwasher: revoked automatically by the platform, the Contoso cloud refuses it"
else
  failed "tampered dishwasher: not revoked and refused within 60 s (see $DIR/logs/dw100-3.log)"
fi

step "dw100-4's high-level app crashes"
# Wait for this very event: an APP_CRASH of dw100-4 that Sphere's error
# reporting holds, counted from the service before and after the fault. (An
# upload counted in the twin's log could be an older one, e.g. of the
# update's planned restarts, landing after the count.)
ID4=$(ID dw100-4)
crashes_reported() {  # APP_CRASH rows Sphere holds for dw100-4
  "${CTL[@]}" --tenant Contoso tenant download-error-report --device "$ID4" \
    --output "$DIR/dw100-4-errors.csv" >/dev/null 2>&1 || { echo 0; return; }
  grep -c 'APP_CRASH' "$DIR/dw100-4-errors.csv" || true
}
CRASHES_BEFORE=$(crashes_reported)
"${TWIN[@]}" --name dw100-4 fault APP_CRASH | head -1
say "The OS records the crash in the device's error ring and restarts the app; the DW100"
say "uploads its ring to Sphere's error reporting with its session token, on its own."
uploaded_after_crash() {
  local deadline=$((SECONDS + 60)) n
  while ((SECONDS < deadline)); do
    n=$(crashes_reported)
    if ((${n:-0} > ${CRASHES_BEFORE:-0})); then return 0; fi
    sleep 0.2  # poll of the service, with a deadline
  done
  return 1
}
if uploaded_after_crash; then
  grep -h '"msg":"error events uploaded"' "$DIR/logs/dw100-4.log" | tail -1 |
    python3 -c 'import json,sys; print("   uploaded:", json.loads(sys.stdin.readline())["events"], "error event(s)")'
  done_ "app crash: dw100-4 uploaded its error ring (the crash is in Sphere's error reports)"
else
  failed "app crash: dw100-4's crash did not reach Sphere's error reports within 60 s (see $DIR/logs/dw100-4.log)"
fi

step "Contoso support downloads the error report"
if "${CTL[@]}" --tenant Contoso tenant download-error-report --output "$DIR/errors.csv"; then
  ROWS=$(($(wc -l < "$DIR/errors.csv") - 1))
  say "errors.csv: $ROWS report rows from every shard (Azure Sphere's columns):"
  head -1 "$DIR/errors.csv" | cut -c1-150 | sed 's/^/   /'
  tail -n +2 "$DIR/errors.csv" | head -5 | cut -c1-150 | sed 's/^/   /'
  CRASHES=$(grep -c 'APP_CRASH' "$DIR/errors.csv" || true)
  if ((CRASHES > 0)); then
    done_ "error report downloaded ($ROWS rows, $CRASHES app crash) to $DIR/errors.csv"
  else
    failed "error report: no APP_CRASH row among $ROWS rows in $DIR/errors.csv"
  fi
else
  failed "error report download"
fi

step "Contoso support opens dw100-1's timeline: Sphere's attestation history and update results"
say "One call joins what Sphere recorded for the device (fetched over gRPC with Contoso's"
say "tenant credential) with the Contoso cloud's own entries, in time order:"
TIMELINE=$(curl -sk --max-time 20 -b "$JAR" "${WEB}api/devices/$ID1/timeline" | python3 -c '
import json, sys, time
t = json.load(sys.stdin)
rows = t.get("entries", [])
kinds = {}
for e in rows:
    kinds[(e["source"], e["kind"])] = kinds.get((e["source"], e["kind"]), 0) + 1
shown = sorted([e for e in rows if e["source"] == "sphere" and e["kind"] == "attestation"][-2:] +
               [e for e in rows if e["source"] == "sphere" and e["kind"] == "update"][-2:] +
               [e for e in rows if e["source"] == "contoso"][-2:],
               key=lambda e: int(e.get("time_unix_ms", 0)))
for e in shown:
    ts = time.strftime("%H:%M:%S", time.gmtime(int(e.get("time_unix_ms", 0)) / 1000))
    print("   %s %-7s %-12s %s" % (ts, e["source"], e["kind"], e["summary"][:110]))
print("counts attestation=%d update=%d contoso=%d" % (
    kinds.get(("sphere", "attestation"), 0), kinds.get(("sphere", "update"), 0),
    sum(v for (s, _), v in kinds.items() if s == "contoso")))
' 2>/dev/null || true)
grep -v '^counts' <<<"$TIMELINE" || true
if grep -qE '^counts attestation=[1-9][0-9]* update=[1-9]' <<<"$TIMELINE"; then
  done_ "support timeline: Sphere attestation history and update results joined with Contoso's entries"
elif ((${UPDATED:-0})); then
  failed "support timeline: no attestation or update rows for dw100-1 ($(grep '^counts' <<<"$TIMELINE"))"
else
  na "support timeline update rows (no update was installed in this build)"
fi

step "Web pages (HTTPS; the certificate is the cluster's own: accept it in the browser)"
say "log in at ${WEB}login (passwords are random per cluster, stored by the Contoso"
say "cloud only as salted PBKDF2 hashes; this list is $DIR/appsvc/web-accounts.txt):"
if [[ -r "$ACCOUNTS" ]]; then
  awk '!/^#/ && $1 == "support" {printf "   support staff   %-20s password %s  -> %ssupport\n", $1, $2, web}
       !/^#/ && $1 != "support" && n++ < 2 {printf "   owner of %-7s %-20s password %s  -> %sowner\n", $3, $1, $2, web}' \
    web="$WEB" "$ACCOUNTS"
  ANON=$(curl -sk -o /dev/null -w '%{http_code}' "${WEB}api/devices" || true)
  FLEET=$(curl -sk -b "$JAR" "${WEB}api/devices" |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)["devices"]))' 2>/dev/null || echo "?")
  if [[ "$ANON" == 401 && "$FLEET" =~ ^[0-9]+$ ]]; then
    say "without a session the fleet API answers $ANON; logged in as support it lists $FLEET dishwashers"
    done_ "web pages behind a login (support and owner accounts printed above)"
  else
    failed "web login: anonymous fleet call answered $ANON, support login listed '$FLEET'"
  fi
else
  failed "web accounts file $ACCOUNTS missing"
fi

step "Summary"
printf '%s\n' "${SUMMARY[@]}"
say "state and logs: $DIR; each dishwasher's chain: $DIR/twins/<name>/device_chain.pem"
if ((FAILED)); then exit 1; fi
bold "Demo complete"
