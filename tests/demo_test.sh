#!/usr/bin/env bash
# demo_test: `./sphere demo` keeps working. Runs tools/demo.sh on the built
# binaries (runfiles; no nested bazel build) in a fresh state directory and
# checks that it exits 0 and that every story step it can run happened (steps
# whose platform parts are not built must say so, never pass silently).
set -euo pipefail
RUNFILES="${RUNFILES_DIR:-$0.runfiles}/sphere"
DIR="${TEST_TMPDIR:-/tmp}/demo"
OUT="${TEST_TMPDIR:-/tmp}/demo.out"
if ! "$RUNFILES/tools/demo.sh" --no-build --bin "$RUNFILES" --state-dir "$DIR" \
    --shards 1 --time-scale 16000 >"$OUT" 2>&1; then
  echo "demo exited non-zero:"; cat "$OUT"; exit 1
fi
cat "$OUT"
fail() { echo "FAIL: $*"; exit 1; }
grep -q "Demo complete" "$OUT" || fail "no 'Demo complete'"
for want in \
  "\[done\] *cluster with the Contoso cloud and 4 dishwasher twins" \
  "\[done\] *attestation: 4 genuine dishwashers" \
  "\[done\] *heater failure: anomaly, diagnostics, customer notified, part reserved" \
  "\[done\] *rinse agent low: reorder offered" \
  "\[done\] *tampered dishwasher: revoked automatically by the platform, the Contoso cloud refuses it" \
  "catalog: REVOKED - automatic: tamper: device " \
  "reserved at Redmond Appliance Repair" \
  "\[done\] *web pages behind a login" \
  "support staff *support *password [0-9a-f]\{16\} *-> https://127.0.0.1:[0-9]*/support" \
  "owner of dw100-1 owner-dw100-1 *password [0-9a-f]\{16\}"; do
  grep -q -- "$want" "$OUT" || fail "missing: $want"
done
grep -q "\[done\] *OS 2 and app v2 installed" "$OUT" || fail "updates not installed"
grep -q "\[done\] *support timeline: Sphere attestation history and update results" "$OUT" ||
  fail "support timeline without attestation and update rows"
# The DW100 uploads its error ring: the crash is in the downloaded CSV.
grep -q "\[done\] *app crash: dw100-4 uploaded its error ring" "$OUT" || fail "no error upload"
grep -qE "\[done\] *error report downloaded \([0-9]+ rows, [1-9][0-9]* app crash\)" "$OUT" ||
  fail "error report without the crash row"
grep -q "APP_CRASH" "$DIR/errors.csv" || fail "errors.csv has no APP_CRASH row"
for n in 1 2 3 4; do
  chain="$DIR/twins/dw100-$n/device_chain.pem"
  openssl verify -CAfile "$DIR/pki/root.pem" -untrusted "$chain" "$chain" ||
    fail "dw100-$n chain does not verify"
done
echo "PASS"
