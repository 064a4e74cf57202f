// quote_fuzzer: a Pluton quote as the attestation service receives it.
//
// Input: a serialized v1::Quote. The target
//  1. verifies it as sent under the fixed device key (DER signature parsing,
//     body parsing, format check) and, when that passes, checks consistency;
//  2. re-signs the body with the device key and verifies again, so mutated
//     bodies reach QuoteBody parsing and CheckQuoteConsistency (event-log
//     replay against the registers) instead of stopping at the signature.
// Invariants: a quote re-signed by the key always verifies unless its body is
// malformed (InvalidArgument); a body that passes CheckQuoteConsistency has
// an event log that replays (ReplayEventLog) to its registers.
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "fuzz/fuzz_support.h"
#include "mcu-model/quote.h"
#include "protos/device.pb.h"

namespace {

const sphere::crypto::EcPrivateKey& DeviceKey() {
  static const auto* key =
      new sphere::crypto::EcPrivateKey(sphere::fuzz::FuzzKey("device"));
  return *key;
}

void CheckBody(const sphere::v1::QuoteBody& body) {
  absl::Status consistent = sphere::mcu::CheckQuoteConsistency(body);
  if (!consistent.ok()) return;
  std::vector<std::string> replayed =
      sphere::mcu::ReplayEventLog(body.event_log(), body.registers_size());
  sphere::fuzz::Check(
      static_cast<int>(replayed.size()) == body.registers_size(),
      "replay returned the wrong number of registers");
  for (int i = 0; i < body.registers_size(); ++i) {
    sphere::fuzz::Check(replayed[i] == body.registers(i),
                        "consistent quote does not replay to its registers");
  }
  sphere::fuzz::Check(
      sphere::mcu::EventLogDigest(body.event_log()) == body.event_log_digest(),
      "consistent quote has a different event_log_digest");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sphere::v1::Quote quote;
  if (!quote.ParseFromString(std::string(sphere::fuzz::Bytes(data, size)))) {
    return 0;
  }
  const std::string public_key = DeviceKey().PublicKey();

  absl::StatusOr<sphere::v1::QuoteBody> as_sent =
      sphere::mcu::ParseAndVerifyQuote(quote, public_key);
  if (as_sent.ok()) CheckBody(*as_sent);
  // A key that is not a SEC1 point is refused, never read past its end.
  (void)sphere::mcu::ParseAndVerifyQuote(quote, quote.signature());

  sphere::v1::Quote resigned;
  resigned.set_body(quote.body());
  absl::StatusOr<std::string> sig =
      DeviceKey().Sign(absl::StrCat(sphere::mcu::kQuoteContext, quote.body()));
  sphere::fuzz::Check(sig.ok(), "signing failed");
  resigned.set_signature(*sig);
  absl::StatusOr<sphere::v1::QuoteBody> body =
      sphere::mcu::ParseAndVerifyQuote(resigned, public_key);
  sphere::fuzz::Check(
      body.ok() || body.status().code() == absl::StatusCode::kInvalidArgument,
      "a quote signed by the device key failed other than as malformed");
  if (body.ok()) CheckBody(*body);
  return 0;
}
