#include "securitysvc/management/limits.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sphere::management::limits {
namespace {

bool IsControl(char c) {
  const unsigned char u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

absl::Status Invalid(absl::string_view field, absl::string_view input,
                     absl::string_view rule) {
  return absl::InvalidArgumentError(absl::StrFormat(
      "%s \"%s\" is invalid: %s", field, EscapedPrefix(input), rule));
}

absl::Status TooLong(absl::string_view field, absl::string_view input,
                     size_t max) {
  return absl::InvalidArgumentError(
      absl::StrFormat("%s \"%s\" is %d bytes; the limit is %d", field,
                      EscapedPrefix(input), input.size(), max));
}

}  // namespace

std::string EscapedPrefix(absl::string_view input) {
  if (input.size() <= kMaxEchoedInputBytes) return absl::CHexEscape(input);
  return absl::StrCat(absl::CHexEscape(input.substr(0, kMaxEchoedInputBytes)),
                      "...(", input.size(), " bytes)");
}

absl::Status ValidateName(absl::string_view field, absl::string_view name) {
  if (name.empty()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s is empty; give a name such as \"%s\"", field,
        absl::StrContains(field, "product") ? "DW100" : "Contoso"));
  }
  if (name.size() > kMaxNameLength) return TooLong(field, name, kMaxNameLength);
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != ' ' && c != '.' && c != '_' &&
        c != '-') {
      return Invalid(field, name,
                     "use letters, digits, space, '.', '_' or '-'");
    }
  }
  if (name.front() == ' ' || name.back() == ' ') {
    return Invalid(field, name, "it starts or ends with a space");
  }
  return absl::OkStatus();
}

absl::Status ValidateDescription(absl::string_view field,
                                 absl::string_view text) {
  if (text.size() > kMaxDescriptionLength) {
    return TooLong(field, text, kMaxDescriptionLength);
  }
  for (char c : text) {
    if (IsControl(c) || static_cast<unsigned char>(c) > 0x7e) {
      return Invalid(field, text, "use printable ASCII characters only");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateComponentId(absl::string_view field,
                                 absl::string_view component) {
  if (component.empty()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s is empty; components are named like \"kernel\" or \"app:dw100\"",
        field));
  }
  if (component.size() > kMaxComponentIdLength) {
    return TooLong(field, component, kMaxComponentIdLength);
  }
  for (char c : component) {
    if (!(c >= 'a' && c <= 'z') && !absl::ascii_isdigit(c) && c != '.' &&
        c != '_' && c != ':' && c != '-') {
      return Invalid(field, component,
                     "component ids use only [a-z0-9._:-] (at most 64)");
    }
  }
  if (absl::StrContains(component, "..") || component.front() == '.') {
    return Invalid(field, component,
                   "component ids may not contain \"..\" or start with '.'");
  }
  return absl::OkStatus();
}

absl::Status ValidateReference(absl::string_view field,
                               absl::string_view reference) {
  if (reference.size() > kMaxReferenceLength) {
    return TooLong(field, reference, kMaxReferenceLength);
  }
  for (char c : reference) {
    if (IsControl(c)) {
      return Invalid(field, reference, "it contains control characters");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateDeviceId(absl::string_view field, absl::string_view id) {
  bool ok = id.size() == kDeviceIdLength;
  for (char c : id) {
    if (!absl::ascii_isdigit(c) && !(c >= 'a' && c <= 'f')) ok = false;
  }
  if (!ok) {
    return Invalid(field, id,
                   "a device id is 64 lowercase hex characters (the SHA-256 "
                   "of the device public key)");
  }
  return absl::OkStatus();
}

absl::Status ValidateVersion(absl::string_view field,
                             absl::string_view version) {
  if (version.empty()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s is empty; give a version such as \"24.10\"", field));
  }
  if (version.size() > kMaxVersionLength) {
    return TooLong(field, version, kMaxVersionLength);
  }
  for (char c : version) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '_' && c != '-') {
      return Invalid(field, version, "use letters, digits, '.', '_' or '-'");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateCount(absl::string_view field, size_t n, size_t max) {
  if (n > max) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s has %d entries; the limit is %d", field, n, max));
  }
  return absl::OkStatus();
}

absl::Status ValidateSize(absl::string_view field, size_t bytes, size_t max) {
  if (bytes > max) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s is %d bytes; the limit is %d bytes", field, bytes, max));
  }
  return absl::OkStatus();
}

}  // namespace sphere::management::limits
