// The device ids ingest_crash_writer uses, shared with ingest_crash_test.
#include <string>

#include "absl/strings/str_cat.h"

namespace contoso::appsvc {

// CrashDeviceId: the fixed device id of writer thread `i` (64 hex digits).
std::string CrashDeviceId(int i) {
  std::string id(64, 'a');
  const std::string n = absl::StrCat(i);
  id.replace(64 - n.size(), n.size(), n);
  return id;
}

}  // namespace contoso::appsvc
