// event_log_fuzzer: the boot event log of a quote (which component, version
// and image hash each measurement register was extended with).
//
// Input: a serialized v1::QuoteBody (only its event_log, registers and digest
// matter). The target runs the verifier's replay (EventDigest,
// ReplayEventLog, EventLogDigest, CheckQuoteConsistency) on the log as sent,
// then builds the body a genuine device would send for the same log (registers
// replayed, digest computed) and requires CheckQuoteConsistency to accept it,
// and to refuse it once any register or the digest is changed.
#include <cstdint>

#include "fuzz/fuzz_support.h"
#include "mcu-model/quote.h"
#include "protos/device.pb.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sphere::v1::QuoteBody body;
  if (!body.ParseFromString(std::string(sphere::fuzz::Bytes(data, size)))) {
    return 0;
  }
  // As sent: must never crash, whatever the register count or indexes.
  (void)sphere::mcu::CheckQuoteConsistency(body);
  (void)sphere::mcu::ReplayEventLog(body.event_log(), body.registers_size());
  (void)sphere::mcu::ReplayEventLog(body.event_log(), -1);

  // The genuine form: only events naming one of the four registers.
  sphere::v1::QuoteBody genuine;
  for (const sphere::v1::BootEvent& e : body.event_log()) {
    if (e.register_index() < sphere::mcu::kNumRegisters) {
      *genuine.add_event_log() = e;
    }
  }
  for (std::string& reg : sphere::mcu::ReplayEventLog(
           genuine.event_log(), sphere::mcu::kNumRegisters)) {
    sphere::fuzz::Check(reg.size() == 32, "replayed register is not 32 bytes");
    genuine.add_registers(std::move(reg));
  }
  genuine.set_event_log_digest(
      sphere::mcu::EventLogDigest(genuine.event_log()));
  sphere::fuzz::Check(sphere::mcu::CheckQuoteConsistency(genuine).ok(),
                      "a log replayed by the verifier's own rules is refused");

  // Any changed register or digest is refused.
  const uint8_t flip = size > 0 ? data[0] | 1 : 1;
  const int which = size > 1 ? data[1] % (sphere::mcu::kNumRegisters + 1) : 0;
  sphere::v1::QuoteBody tampered = genuine;
  std::string* target = which == sphere::mcu::kNumRegisters
                            ? tampered.mutable_event_log_digest()
                            : tampered.mutable_registers(which);
  (*target)[size > 2 ? data[2] % 32 : 0] ^= static_cast<char>(flip);
  sphere::fuzz::Check(sphere::mcu::CheckQuoteConsistency(tampered).code() ==
                          absl::StatusCode::kInvalidArgument,
                      "a tampered register or digest was accepted");
  return 0;
}
