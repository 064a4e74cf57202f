// session_token_fuzzer: the session token a gateway call carries in metadata
// "sphere-session-token" (securitysvc/auth SessionTokens).
//
// Input: records [token, device, tenant, product, group, scope, serial] and
// two bytes (epoch, expiry offset). The target
//  * verifies `token` as sent (MAC, hex, fields, expiry);
//  * verifies `token` + "|" + its genuine MAC, so mutated bodies reach the
//    field parser behind the MAC;
//  * issues a token for a context built from the other records and verifies
//    it: what the service issued must come back field for field, or be
//    refused; it must never verify as another context.
#include <cstdint>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"
#include "fuzz/fuzz_support.h"
#include "securitysvc/auth/device_context.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string* key =
      new std::string(sphere::crypto::Sha256("sphere-fuzz-session-key"));
  static const auto* tokens = new sphere::auth::SessionTokens(*key);
  const absl::Time now = sphere::fuzz::FuzzNow();

  sphere::fuzz::RecordReader in(sphere::fuzz::Bytes(data, size));
  absl::string_view token;
  in.Next(&token);
  (void)tokens->Verify(token, now);
  const std::string remac = absl::StrCat(
      token, "|",
      sphere::crypto::HexEncode(sphere::crypto::HmacSha256(*key, token)));
  absl::StatusOr<sphere::auth::DeviceContext> parsed =
      tokens->Verify(remac, now);
  if (parsed.ok()) {
    // Re-issuing a parsed context gives a token that verifies to it.
    absl::StatusOr<sphere::auth::DeviceContext> again =
        tokens->Verify(tokens->Issue(*parsed), now);
    sphere::fuzz::Check(again.ok() && again->device_id == parsed->device_id &&
                            again->tenant_id == parsed->tenant_id &&
                            again->scope == parsed->scope,
                        "a re-issued token does not verify to its context");
  }

  sphere::auth::DeviceContext ctx;
  absl::string_view f;
  std::string scope_name;
  std::string* fields[] = {&ctx.device_id,  &ctx.tenant_id,
                           &ctx.product_id, &ctx.device_group_id,
                           &scope_name,     &ctx.certificate_serial};
  for (std::string* field : fields) {
    if (in.Next(&f)) *field = std::string(f);
  }
  ctx.scope = sphere::auth::ParseScope(scope_name);
  ctx.ownership_epoch = in.NextByte();
  ctx.not_after = now + absl::Seconds(in.NextByte()) - absl::Seconds(16);
  absl::StatusOr<sphere::auth::DeviceContext> back =
      tokens->Verify(tokens->Issue(ctx), now);
  if (back.ok()) {
    sphere::fuzz::Check(
        back->device_id == ctx.device_id && back->tenant_id == ctx.tenant_id &&
            back->product_id == ctx.product_id &&
            back->device_group_id == ctx.device_group_id &&
            back->scope == ctx.scope &&
            back->certificate_serial == ctx.certificate_serial &&
            back->ownership_epoch == ctx.ownership_epoch &&
            back->not_after == ctx.not_after,
        "an issued token verifies as a different device context");
  }
  return 0;
}
