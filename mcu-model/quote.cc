#include "mcu-model/quote.h"

#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"

namespace sphere::mcu {
namespace {

void AppendU32(std::string* out, uint32_t v) {
  out->push_back(static_cast<char>((v >> 24) & 0xff));
  out->push_back(static_cast<char>((v >> 16) & 0xff));
  out->push_back(static_cast<char>((v >> 8) & 0xff));
  out->push_back(static_cast<char>(v & 0xff));
}

}  // namespace

std::string EventDigest(const v1::BootEvent& event) {
  std::string buf;
  buf.reserve(12 + event.component().size() + event.image_hash().size());
  AppendU32(&buf, event.register_index());
  AppendU32(&buf, static_cast<uint32_t>(event.component().size()));
  buf.append(event.component());
  AppendU32(&buf, event.version());
  buf.append(event.image_hash());
  return crypto::Sha256(buf);
}

std::string EventLogDigest(
    const google::protobuf::RepeatedPtrField<v1::BootEvent>& log) {
  std::string concat;
  concat.reserve(32 * log.size());
  for (const v1::BootEvent& e : log) concat.append(EventDigest(e));
  return crypto::Sha256(concat);
}

std::string ExtendRegister(absl::string_view reg,
                           absl::string_view event_digest) {
  return crypto::Sha256(absl::StrCat(reg, event_digest));
}

std::vector<std::string> ReplayEventLog(
    const google::protobuf::RepeatedPtrField<v1::BootEvent>& log,
    int num_registers) {
  std::vector<std::string> regs(num_registers < 0 ? 0 : num_registers,
                                std::string(32, '\0'));
  for (const v1::BootEvent& e : log) {
    if (e.register_index() >= regs.size()) continue;
    std::string& r = regs[e.register_index()];
    r = ExtendRegister(r, EventDigest(e));
  }
  return regs;
}

absl::StatusOr<v1::QuoteBody> ParseAndVerifyQuote(
    const v1::Quote& quote, absl::string_view device_public_key) {
  if (device_public_key.size() != 65 || device_public_key[0] != 0x04) {
    return absl::InvalidArgumentError(
        "device public key is not a 65-byte SEC1 uncompressed point");
  }
  if (quote.signature().empty()) {
    return absl::InvalidArgumentError("quote has no signature");
  }
  absl::Status s = crypto::EcdsaVerify(
      device_public_key, absl::StrCat(kQuoteContext, quote.body()),
      quote.signature());
  if (!s.ok()) {
    if (s.code() == absl::StatusCode::kInvalidArgument) {
      return absl::InvalidArgumentError(
          absl::StrCat("malformed quote signature: ", s.message()));
    }
    return absl::UnauthenticatedError(
        "quote signature does not verify under the device key");
  }
  v1::QuoteBody body;
  if (!body.ParseFromString(quote.body())) {
    return absl::InvalidArgumentError("quote body does not parse");
  }
  if (body.format_version() != kQuoteFormatVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unsupported quote format_version ", body.format_version()));
  }
  return body;
}

absl::Status CheckQuoteConsistency(const v1::QuoteBody& body) {
  const int n = body.registers_size();
  for (int i = 0; i < n; ++i) {
    if (body.registers(i).size() != 32) {
      return absl::InvalidArgumentError(
          absl::StrCat("register ", i, " is not 32 bytes"));
    }
  }
  for (const v1::BootEvent& e : body.event_log()) {
    // Compare unsigned: an index >= 2^31 must not wrap to a negative int.
    if (e.register_index() >= static_cast<uint32_t>(n)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "event for component '", e.component(), "' names register ",
          e.register_index(), " but the quote has ", n, " registers"));
    }
  }
  // Replay and event_log_digest in one pass, hashing each event once (the
  // same result as ReplayEventLog + EventLogDigest; every index is < n here).
  std::vector<std::string> replayed(n, std::string(32, '\0'));
  std::string concat;
  concat.reserve(32 * body.event_log_size());
  for (const v1::BootEvent& e : body.event_log()) {
    std::string digest = EventDigest(e);
    std::string& reg = replayed[e.register_index()];
    reg = ExtendRegister(reg, digest);
    concat.append(digest);
  }
  for (int i = 0; i < n; ++i) {
    if (replayed[i] != body.registers(i)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "register ", i, " does not match the replayed event log"));
    }
  }
  if (crypto::Sha256(concat) != body.event_log_digest()) {
    return absl::InvalidArgumentError(
        "event_log_digest does not match the event log");
  }
  return absl::OkStatus();
}

}  // namespace sphere::mcu
