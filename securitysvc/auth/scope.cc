#include "securitysvc/auth/scope.h"

namespace sphere::auth {
namespace {

struct ScopeSpelling {
  Scope scope;
  absl::string_view name;
};
constexpr ScopeSpelling kSpellings[] = {
    {Scope::kManufacturing, "manufacturing"},
    {Scope::kFull, "full"},
    {Scope::kUpdateOnly, "update-only"},
    {Scope::kGateway, "gateway"},
    {Scope::kPlatformOperator, "platform-operator"},
    {Scope::kShard, "shard"},
};

}  // namespace

Scope ParseScope(absl::string_view name) {
  if (name.empty()) return Scope::kNone;
  for (const auto& s : kSpellings) {
    if (s.name == name) return s.scope;
  }
  return Scope::kUnknown;
}

absl::string_view ScopeName(Scope scope) {
  for (const auto& s : kSpellings) {
    if (s.scope == scope) return s.name;
  }
  return "";
}

bool IsDeviceScope(Scope scope) {
  return scope == Scope::kManufacturing || scope == Scope::kFull ||
         scope == Scope::kUpdateOnly;
}

}  // namespace sphere::auth
