#include "mcu-model/quote.h"

#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"
#include "gtest/gtest.h"

namespace sphere::mcu {
namespace {

v1::BootEvent Event(uint32_t reg, const std::string& component,
                    uint32_t version) {
  v1::BootEvent e;
  e.set_register_index(reg);
  e.set_component(component);
  e.set_version(version);
  e.set_image_hash(crypto::Sha256(component));
  return e;
}

v1::QuoteBody ConsistentBody() {
  v1::QuoteBody body;
  body.set_format_version(1);
  body.set_nonce("nonce");
  *body.add_event_log() = Event(0, "pluton-runtime", 1);
  *body.add_event_log() = Event(0, "security-monitor", 1);
  *body.add_event_log() = Event(1, "kernel", 2);
  for (const std::string& r : ReplayEventLog(body.event_log(), 4)) {
    body.add_registers(r);
  }
  body.set_event_log_digest(EventLogDigest(body.event_log()));
  return body;
}

v1::Quote SignQuote(const crypto::EcPrivateKey& key,
                    const v1::QuoteBody& body) {
  v1::Quote q;
  body.SerializeToString(q.mutable_body());
  q.set_signature(*key.Sign(absl::StrCat(kQuoteContext, q.body())));
  return q;
}

TEST(EventDigestTest, MatchesContractEncoding) {
  v1::BootEvent e = Event(1, "kernel", 0x01020304);
  std::string expected;
  expected.append(std::string("\0\0\0\1", 4));
  expected.append(std::string("\0\0\0\6", 4));
  expected.append("kernel");
  expected.append("\x01\x02\x03\x04");
  expected.append(e.image_hash());
  EXPECT_EQ(EventDigest(e), crypto::Sha256(expected));
}

TEST(ReplayEventLogTest, ExtendsFromZero) {
  v1::QuoteBody body = ConsistentBody();
  std::vector<std::string> regs = ReplayEventLog(body.event_log(), 4);
  ASSERT_EQ(regs.size(), 4u);
  std::string r0 =
      ExtendRegister(std::string(32, '\0'), EventDigest(body.event_log(0)));
  r0 = ExtendRegister(r0, EventDigest(body.event_log(1)));
  EXPECT_EQ(regs[0], r0);
  EXPECT_EQ(regs[2], std::string(32, '\0'));
}

TEST(ParseAndVerifyQuoteTest, AcceptsValidQuote) {
  auto key = crypto::EcPrivateKey::Generate();
  v1::QuoteBody body = ConsistentBody();
  absl::StatusOr<v1::QuoteBody> got =
      ParseAndVerifyQuote(SignQuote(key, body), key.PublicKey());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->nonce(), "nonce");
  EXPECT_TRUE(CheckQuoteConsistency(*got).ok());
}

TEST(ParseAndVerifyQuoteTest, OtherKeyIsUnauthenticated) {
  auto key = crypto::EcPrivateKey::Generate();
  auto other = crypto::EcPrivateKey::Generate();
  absl::StatusOr<v1::QuoteBody> got =
      ParseAndVerifyQuote(SignQuote(key, ConsistentBody()), other.PublicKey());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnauthenticated);
}

TEST(ParseAndVerifyQuoteTest, ModifiedBodyIsUnauthenticated) {
  auto key = crypto::EcPrivateKey::Generate();
  v1::Quote q = SignQuote(key, ConsistentBody());
  q.mutable_body()->back() ^= 1;
  EXPECT_EQ(ParseAndVerifyQuote(q, key.PublicKey()).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(ParseAndVerifyQuoteTest, MalformedIsInvalidArgument) {
  auto key = crypto::EcPrivateKey::Generate();
  v1::Quote q = SignQuote(key, ConsistentBody());
  EXPECT_EQ(ParseAndVerifyQuote(q, "short").status().code(),
            absl::StatusCode::kInvalidArgument);
  q.clear_signature();
  EXPECT_EQ(ParseAndVerifyQuote(q, key.PublicKey()).status().code(),
            absl::StatusCode::kInvalidArgument);
  v1::Quote garbage;
  garbage.set_body("\xff\xff\xff");
  garbage.set_signature(*key.Sign(absl::StrCat(kQuoteContext, garbage.body())));
  EXPECT_EQ(ParseAndVerifyQuote(garbage, key.PublicKey()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CheckQuoteConsistencyTest, NamesFirstMismatchingRegister) {
  v1::QuoteBody body = ConsistentBody();
  body.mutable_event_log(2)->set_version(3);  // kernel event edited
  absl::Status s = CheckQuoteConsistency(body);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("register 1"), absl::string_view::npos) << s;
}

TEST(CheckQuoteConsistencyTest, DigestMismatch) {
  v1::QuoteBody body = ConsistentBody();
  body.set_event_log_digest(std::string(32, 'x'));
  absl::Status s = CheckQuoteConsistency(body);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("event_log_digest"), absl::string_view::npos);
}

TEST(CheckQuoteConsistencyTest, BadRegisterIndex) {
  v1::QuoteBody body = ConsistentBody();
  body.mutable_event_log(0)->set_register_index(9);
  EXPECT_EQ(CheckQuoteConsistency(body).code(),
            absl::StatusCode::kInvalidArgument);
}

// An event naming register 0x80000000 or above used to turn negative in the
// bounds check (int cast) and then index the replay vector far out of range:
// a quote signed by a device key could crash (or corrupt) the verifier.
TEST(CheckQuoteConsistencyTest, Attack_RegisterIndexAboveIntMaxIsRejected) {
  for (uint32_t index : {0x80000000u, 0xffffffffu}) {
    SCOPED_TRACE(index);
    v1::QuoteBody body = ConsistentBody();
    body.mutable_event_log(2)->set_register_index(index);
    const v1::QuoteBody before = body;
    absl::Status s = CheckQuoteConsistency(body);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(absl::StrCat("names register ", index)),
              absl::string_view::npos)
        << s;
    EXPECT_EQ(body.SerializeAsString(), before.SerializeAsString());
  }
}

}  // namespace
}  // namespace sphere::mcu
