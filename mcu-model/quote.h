// mcu-model/quote: pure helpers for VERIFIERS of Pluton quotes (the Security
// Service links this; it has no gRPC and no device state).
//
// Measurement contract (shared by the device model and every verifier):
//   registers start as 32 zero bytes;
//   EventDigest(e) = SHA256(u32be(register_index) || u32be(len(component)) ||
//                           component || u32be(version) || image_hash)
//   extend:            reg[i] = SHA256(reg[i] || EventDigest(e))
//   event_log_digest = SHA256(EventDigest(e0) || EventDigest(e1) || ...)
// Register use: 0 = Pluton runtime + Security Monitor, 1 = bootloader +
// kernel, 2 = OS services, 3 = applications (high-level and real-time).
//
// Quote contract: Quote.body is a serialized QuoteBody (format_version 1);
// Quote.signature is a DER ECDSA P-256 signature by the device key over
// SHA-256("sphere-quote-v1" || body).
//
// Example (verifier):
//   absl::StatusOr<v1::QuoteBody> body =
//       mcu::ParseAndVerifyQuote(quote, registered_public_key);
//   if (!body.ok()) return body.status();
//   RETURN_IF_ERROR(mcu::CheckQuoteConsistency(*body));
//   // then: nonce freshness, approved image hashes, versions.
#ifndef SPHERE_MCU_MODEL_QUOTE_H_
#define SPHERE_MCU_MODEL_QUOTE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/repeated_field.h"
#include "protos/device.pb.h"

namespace sphere::mcu {

// kQuoteContext prefixes the body before signing (domain separation).
inline constexpr absl::string_view kQuoteContext = "sphere-quote-v1";
inline constexpr uint32_t kQuoteFormatVersion = 1;
inline constexpr int kNumRegisters = 4;
inline constexpr int kRegisterSecureWorld = 0;  // pluton-runtime, secmon
inline constexpr int kRegisterKernel = 1;       // bootloader, kernel
inline constexpr int kRegisterOsServices = 2;   // os-services
inline constexpr int kRegisterApps = 3;         // applications

// EventDigest returns the 32-byte digest of one boot event (see above).
std::string EventDigest(const v1::BootEvent& event);

// EventLogDigest returns SHA256 over the concatenated event digests.
std::string EventLogDigest(
    const google::protobuf::RepeatedPtrField<v1::BootEvent>& log);

// ExtendRegister returns SHA256(reg || event_digest).
std::string ExtendRegister(absl::string_view reg,
                           absl::string_view event_digest);

// ReplayEventLog replays `log` from zeroed registers and returns
// `num_registers` 32-byte values. Events naming a register >= num_registers
// are ignored here (CheckQuoteConsistency rejects them).
std::vector<std::string> ReplayEventLog(
    const google::protobuf::RepeatedPtrField<v1::BootEvent>& log,
    int num_registers);

// ParseAndVerifyQuote checks `quote.signature` with the 65-byte SEC1
// `device_public_key` and parses the body. Errors: Unauthenticated (signature
// does not verify under that key), InvalidArgument (malformed key, signature
// or body, or unsupported format_version).
absl::StatusOr<v1::QuoteBody> ParseAndVerifyQuote(
    const v1::Quote& quote, absl::string_view device_public_key);

// CheckQuoteConsistency checks that the event log replays to the quoted
// registers and that event_log_digest matches. Errors: InvalidArgument naming
// the first mismatching register ("register 1 ..."), a bad register index, or
// the digest mismatch.
absl::Status CheckQuoteConsistency(const v1::QuoteBody& body);

}  // namespace sphere::mcu

#endif  // SPHERE_MCU_MODEL_QUOTE_H_
