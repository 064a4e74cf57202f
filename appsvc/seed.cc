#include "appsvc/seed.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace contoso::appsvc {
namespace {

absl::StatusOr<std::string> Str(const nlohmann::json& j, const char* key,
                                size_t max, bool required,
                                const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": \"", key, "\" is required"));
    }
    return std::string();
  }
  if (!it->is_string() || it->get<std::string>().size() > max) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": \"", key, "\" must be a string of at most ", max, " bytes"));
  }
  return it->get<std::string>();
}

}  // namespace

absl::StatusOr<SeedData> ParseSeed(const std::string& text) {
  if (text.size() > kMaxSeedBytes) {
    return absl::InvalidArgumentError("seed file is over 4 MiB");
  }
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("seed file is not a JSON object");
  }
  SeedData seed;
  if (j.contains("customers")) {
    if (!j["customers"].is_array()) {
      return absl::InvalidArgumentError("seed \"customers\" must be a list");
    }
    int i = 0;
    for (const auto& c : j["customers"]) {
      const std::string where = absl::StrCat("customers[", i++, "]");
      if (!c.is_object()) {
        return absl::InvalidArgumentError(where + " must be an object");
      }
      records::Customer out;
      auto id = Str(c, "device_id", 64, true, where);
      if (!id.ok()) return id.status();
      if (auto s = ValidateDeviceId(*id); !s.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": ", s.message()));
      }
      out.set_device_id(*id);
      for (auto [key, setter] : std::initializer_list<std::pair<
               const char*, void (records::Customer::*)(const std::string&)>>{
               {"name", &records::Customer::set_name},
               {"email", &records::Customer::set_email},
               {"shop", &records::Customer::set_shop_id}}) {
        auto v = Str(c, key, 256, false, where);
        if (!v.ok()) return v.status();
        (out.*setter)(*v);
      }
      auto until = Str(c, "warranty_until", 64, false, where);
      if (!until.ok()) return until.status();
      if (!until->empty()) {
        absl::Time t;
        std::string err;
        if (!absl::ParseTime(absl::RFC3339_full, *until, &t, &err)) {
          return absl::InvalidArgumentError(
              absl::StrCat(where, ": warranty_until \"", *until,
                           "\" is not RFC 3339: ", err));
        }
        out.set_warranty_until_unix_ms(absl::ToUnixMillis(t));
      }
      seed.customers.push_back(std::move(out));
    }
  }
  if (j.contains("shops")) {
    if (!j["shops"].is_array()) {
      return absl::InvalidArgumentError("seed \"shops\" must be a list");
    }
    int i = 0;
    for (const auto& s : j["shops"]) {
      const std::string where = absl::StrCat("shops[", i++, "]");
      if (!s.is_object()) {
        return absl::InvalidArgumentError(where + " must be an object");
      }
      records::Shop out;
      auto id = Str(s, "id", 64, true, where);
      if (!id.ok()) return id.status();
      out.set_id(*id);
      auto name = Str(s, "name", 256, false, where);
      if (!name.ok()) return name.status();
      out.set_name(name->empty() ? *id : *name);
      if (s.contains("inventory")) {
        if (!s["inventory"].is_object()) {
          return absl::InvalidArgumentError(where +
                                            ": inventory must be an object");
        }
        for (const auto& [part, count] : s["inventory"].items()) {
          if (part.size() > 64 || !count.is_number_integer() ||
              count.get<int64_t>() < 0) {
            return absl::InvalidArgumentError(absl::StrCat(
                where, ": inventory \"", part.substr(0, 64),
                "\" must be a part number (<= 64 bytes) with a count >= 0"));
          }
          (*out.mutable_inventory())[part] = count.get<int64_t>();
        }
      }
      seed.shops.push_back(std::move(out));
    }
  }
  return seed;
}

absl::StatusOr<std::vector<WebAccount>> ParseSeedAccounts(
    const std::string& text) {
  if (text.size() > kMaxSeedBytes) {
    return absl::InvalidArgumentError("seed file is over 4 MiB");
  }
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("seed file is not a JSON object");
  }
  std::vector<WebAccount> out;
  if (!j.contains("accounts")) return out;
  if (!j["accounts"].is_array()) {
    return absl::InvalidArgumentError("seed \"accounts\" must be a list");
  }
  if (j["accounts"].size() > kMaxWebAccounts) {
    return absl::InvalidArgumentError(
        absl::StrCat("seed lists more than ", kMaxWebAccounts, " accounts"));
  }
  int i = 0;
  for (const auto& a : j["accounts"]) {
    const std::string where = absl::StrCat("accounts[", i++, "]");
    if (!a.is_object()) {
      return absl::InvalidArgumentError(where + " must be an object");
    }
    if (a.contains("password")) {
      return absl::InvalidArgumentError(
          where +
          ": plaintext \"password\" is not accepted; give "
          "\"password_hash\" (appsvc/password.h)");
    }
    WebAccount out_a;
    auto user = Str(a, "user", kMaxAccountNameBytes, true, where);
    if (!user.ok()) return user.status();
    out_a.user = *user;
    auto role = Str(a, "role", 16, true, where);
    if (!role.ok()) return role.status();
    if (*role == "support") {
      out_a.role = WebRole::kSupport;
    } else if (*role == "owner") {
      out_a.role = WebRole::kOwner;
    } else {
      return absl::InvalidArgumentError(
          where + ": role must be \"support\" or \"owner\"");
    }
    auto device = Str(a, "device_id", 64, false, where);
    if (!device.ok()) return device.status();
    out_a.device_id = *device;
    auto hash = Str(a, "password_hash", 256, true, where);
    if (!hash.ok()) return hash.status();
    out_a.password_hash = *hash;
    if (auto s = ValidateWebAccount(out_a); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", s.message()));
    }
    out.push_back(std::move(out_a));
  }
  return out;
}

}  // namespace contoso::appsvc
